//! [`CacheAwareHandler`]: answers peers' page requests from the node's page
//! cache before the default handler.
//!
//! A cluster node's default handler ([`ClusterHandler`](super::ClusterHandler))
//! reads pages from the node's own provider: its WAL files, or for a cloud
//! node its staging area, cache directory and finally the object store. In a
//! cloud cluster the cheapest copy of a page is often one a node already read
//! — its page cache (the on-disk
//! [`CloudPageCache`](crate::backends::cloud::CloudPageCache) there) — so this
//! wrapper answers from the cache when it holds every requested byte, and
//! otherwise falls back to the default handler, caching the whole pages that
//! handler read so that repeated requests from any peer stop at this node.
//! Every other message goes to the default handler unchanged.
//!
//! A page in the cache is a prefix of its WAL at the page's offset (WALs are
//! append-only), so a cached page is only used for bytes it contains: a
//! request reaching past a short (not yet full) page goes to the default
//! handler, which knows whether the WAL has grown.
//!
//! What this handler serves is never a peer's unchecked say-so: the pages it
//! keeps here come from the node's own storage (the default handler never
//! asks peers), and the pages the node's reader caches passed their check
//! ([`crate::page_check`]) before entering the cache; a cached page whose
//! record later fails its CRC is evicted by the reader. The requesting node
//! checks what it receives the same way.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::cluster::peer_tier::MAX_REMOTE_READ;
use crate::network::{MessageHandler, PeerId};
use crate::page_cache::{PageCache, PageKey};
use crate::protocol::Message;
use crate::types::WalId;

/// Serves page requests from a [`PageCache`], then from `inner`.
pub struct CacheAwareHandler {
    cache: Arc<dyn PageCache>,
    page_size: u64,
    inner: Arc<dyn MessageHandler>,
}

impl std::fmt::Debug for CacheAwareHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheAwareHandler")
            .field("cache", &self.cache)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl CacheAwareHandler {
    /// Wraps the default handler `inner`; `page_size` is the page size the
    /// cache is filled with (the storage's `page_size`, at least 1).
    pub fn new(cache: Arc<dyn PageCache>, page_size: u64, inner: Arc<dyn MessageHandler>) -> Self {
        CacheAwareHandler {
            cache,
            page_size: page_size.max(1),
            inner,
        }
    }

    /// The requested bytes if cached pages hold all of them.
    async fn cached_range(&self, wal: WalId, offset: u64, len: u64) -> Option<Bytes> {
        if len == 0 || self.cache.capacity() == 0 {
            return None;
        }
        let end = offset.checked_add(len)?;
        let ps = self.page_size;
        let mut out = BytesMut::new();
        let mut pos = offset;
        while pos < end {
            let page_no = pos / ps;
            let page = self.cache.get(&PageKey { wal, page: page_no }).await?;
            let start = page_no * ps;
            let have_end = start + page.len() as u64;
            let upto = end.min(start + ps);
            if have_end < upto {
                return None; // a short page: the WAL may have grown since
            }
            out.extend_from_slice(&page[(pos - start) as usize..(upto - start) as usize]);
            pos = upto;
        }
        Some(out.freeze())
    }

    /// Caches the whole pages inside an answer the default handler gave.
    async fn keep_pages(&self, wal: WalId, offset: u64, data: &Bytes) {
        let ps = self.page_size;
        let Some(end) = offset.checked_add(data.len() as u64) else {
            return;
        };
        let Some(mut start) = offset.div_ceil(ps).checked_mul(ps) else {
            return;
        };
        while let Some(page_end) = start.checked_add(ps)
            && page_end <= end
        {
            let (Ok(at), Ok(to)) = (
                usize::try_from(start - offset),
                usize::try_from(page_end - offset),
            ) else {
                return;
            };
            let page = data.slice(at..to);
            self.cache
                .insert(
                    PageKey {
                        wal,
                        page: start / ps,
                    },
                    page,
                )
                .await;
            start = page_end;
        }
    }
}

#[async_trait]
impl MessageHandler for CacheAwareHandler {
    async fn handle(&self, from: PeerId, message: Message) -> Option<Message> {
        let Message::PageRequest { wal, offset, len } = message else {
            return self.inner.handle(from, message).await;
        };
        let len = len.min(MAX_REMOTE_READ);
        if let Some(data) = self.cached_range(wal, offset, len).await {
            return Some(Message::PageResponse {
                wal,
                offset,
                data: Some(data),
            });
        }
        let answer = self
            .inner
            .handle(from, Message::PageRequest { wal, offset, len })
            .await;
        if let Some(Message::PageResponse {
            data: Some(d),
            wal: w,
            offset: o,
        }) = &answer
            && *w == wal
            && *o == offset
        {
            self.keep_pages(wal, offset, d).await;
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::page_cache::{MemoryPageCache, MockPageCache};

    /// The default handler: records what it was asked, answers `data`.
    #[derive(Default)]
    struct Default {
        asked: Mutex<Vec<Message>>,
        data: Option<Bytes>,
    }

    #[async_trait]
    impl MessageHandler for Default {
        async fn handle(&self, _from: PeerId, message: Message) -> Option<Message> {
            self.asked.lock().unwrap().push(message.clone());
            match message {
                Message::PageRequest { wal, offset, .. } => Some(Message::PageResponse {
                    wal,
                    offset,
                    data: self.data.clone(),
                }),
                _ => Some(Message::Ack),
            }
        }
    }

    fn request(wal: WalId, offset: u64, len: u64) -> Message {
        Message::PageRequest { wal, offset, len }
    }

    fn data_of(m: Option<Message>) -> Option<Bytes> {
        match m {
            Some(Message::PageResponse { data, .. }) => data,
            other => panic!("not a page response: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_hit_is_served_from_the_cache_without_the_default_handler() {
        let wal = WalId::new_random();
        let page = Bytes::from((0..100u8).collect::<Vec<_>>());
        let mut cache = MockPageCache::new();
        cache.expect_capacity().return_const(1000u64);
        let p = page.clone();
        cache
            .expect_get()
            .withf(move |k| k.wal == wal && k.page == 2)
            .times(1)
            .returning(move |_| Some(p.clone()));
        let inner = Arc::new(Default::default());
        let h = CacheAwareHandler::new(Arc::new(cache), 100, inner.clone());
        let got = data_of(h.handle("peer".into(), request(wal, 210, 30)).await);
        assert_eq!(got.as_deref(), Some(&page[10..40]));
        assert!(inner.asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_miss_goes_to_the_default_handler_and_its_full_pages_are_kept() {
        let wal = WalId::new_random();
        let mut cache = MockPageCache::new();
        cache.expect_capacity().return_const(1000u64);
        cache.expect_get().times(1).returning(|_| None);
        // The answer covers offsets 100..350: pages 1 and 2 are whole.
        cache
            .expect_insert()
            .withf(|k, p| (k.page == 1 || k.page == 2) && p.len() == 100)
            .times(2)
            .returning(|_, _| ());
        let inner = Arc::new(Default {
            data: Some(Bytes::from(vec![5u8; 250])),
            ..Default::default()
        });
        let h = CacheAwareHandler::new(Arc::new(cache), 100, inner.clone());
        let got = data_of(h.handle("peer".into(), request(wal, 100, 250)).await);
        assert_eq!(got.map(|b| b.len()), Some(250));
        assert_eq!(inner.asked.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn short_pages_and_other_messages_go_to_the_default_handler() {
        let wal = WalId::new_random();
        let cache = Arc::new(MemoryPageCache::new(1 << 20, 100));
        // Page 0 is short (the WAL had 60 bytes when it was cached).
        cache
            .insert(PageKey { wal, page: 0 }, Bytes::from(vec![1u8; 60]))
            .await;
        let inner = Arc::new(Default {
            data: Some(Bytes::from(vec![2u8; 80])),
            ..Default::default()
        });
        let h = CacheAwareHandler::new(cache.clone(), 100, inner.clone());
        // Within the short page: served from the cache.
        let got = data_of(h.handle("p".into(), request(wal, 10, 40)).await);
        assert_eq!(got, Some(Bytes::from(vec![1u8; 40])));
        // Past its end: the default handler decides.
        let got = data_of(h.handle("p".into(), request(wal, 10, 80)).await);
        assert_eq!(got, Some(Bytes::from(vec![2u8; 80])));
        assert_eq!(h.handle("p".into(), Message::Ack).await, Some(Message::Ack));
        assert_eq!(inner.asked.lock().unwrap().len(), 2);
    }
}
