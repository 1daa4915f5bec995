//! The read side of the WAL engine: memory → page cache → provider.
//!
//! Reads of records still in the writer's memory are served from there.
//! Other reads go through the [`PageCache`] in pages of `page_size` bytes; a
//! record that runs past its page is read in one piece from the provider.
//! When the cache cannot hold a page (capacity below the page size), records
//! are read directly with a small read-ahead instead of whole pages.
//!
//! Every read below the cache carries a check ([`crate::page_check`]): the
//! provider's sources (own files, peers, the object store) answer only
//! bytes that pass it, so only checked pages enter the cache. A cached page
//! whose record fails its CRC (or whose page 0 fails the header check) is
//! evicted and read again, checked, from the sources.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use tracing::warn;

use crate::error::{Error, FormatError, Result};
use crate::page_cache::{PageCache, PageKey};
use crate::page_check::{HeaderCheck, RecordCheck};
use crate::record::{self, WAL_HEADER_LEN, WalKind};
use crate::types::{AtomPointer, Format, WalId};
use crate::wal_store::WalStore;
use crate::wal_writer::{MemoryRead, WalWriter};

/// Bytes read at once when records are read without the page cache.
const READ_AHEAD: u64 = 512;

pub(crate) struct Reader {
    provider: Arc<dyn WalStore>,
    cache: Arc<dyn PageCache>,
    writer: Arc<WalWriter>,
    page_size: u64,
    limit: u64,
    /// Layouts of the WALs read so far (looked up on every read: a fast
    /// hash; WAL ids are random, not chosen by whoever reads).
    kinds: RwLock<HashMap<WalId, WalKind, foldhash::fast::RandomState>>,
}

impl Reader {
    pub(crate) fn new(
        provider: Arc<dyn WalStore>,
        cache: Arc<dyn PageCache>,
        writer: Arc<WalWriter>,
        page_size: u64,
        limit: u64,
    ) -> Self {
        Reader {
            provider,
            cache,
            writer,
            page_size,
            limit,
            kinds: RwLock::default(),
        }
    }

    fn corrupt(ptr: AtomPointer, source: FormatError) -> Error {
        Error::Corrupt {
            wal: ptr.wal_id,
            offset: ptr.offset,
            source,
        }
    }

    /// Reads the record at `ptr` if that needs no waiting: from the
    /// writer's memory, or from a page the cache has at hand. `None` when
    /// [`read`](Self::read) must do it (which also reports every error).
    pub(crate) fn read_now(&self, ptr: AtomPointer) -> Option<(Format, Bytes)> {
        let (kind, bytes) = match self.writer.read_memory(ptr).ok()? {
            MemoryRead::Found(bytes) => (WalKind::Native, bytes),
            MemoryRead::NotHere => {
                let kind = *self.kinds.read().get(&ptr.wal_id)?;
                if ptr.offset < kind.first_record() || self.cache.capacity() < self.page_size {
                    return None;
                }
                let (key, in_page) = self.page_of(ptr);
                let page = self.cache.try_get(&key)?;
                if in_page >= page.len() {
                    return None;
                }
                (kind, page.slice(in_page..))
            }
        };
        // A record that fails, or runs past the page: `read` decides.
        let (format, payload, _) = record::decode_record(kind, &bytes, self.limit).ok()?;
        Some((format, payload))
    }

    /// Reads and validates the record at `ptr`.
    pub(crate) async fn read(&self, ptr: AtomPointer) -> Result<(Format, Bytes)> {
        if let MemoryRead::Found(bytes) = self.writer.read_memory(ptr)? {
            let (format, payload, _) = record::decode_record(WalKind::Native, &bytes, self.limit)
                .map_err(|e| Self::corrupt(ptr, e))?;
            return Ok((format, payload));
        }
        let stored = async {
            let kind = self.kind(ptr.wal_id).await?;
            if ptr.offset < kind.first_record() {
                return Err(Self::corrupt(ptr, FormatError::InsideHeader));
            }
            if self.cache.capacity() >= self.page_size {
                self.read_paged(kind, ptr).await
            } else {
                self.read_direct(kind, ptr).await
            }
        };
        // The provider reports the offset it was asked for (a page start,
        // or 0 while detecting the layout); the caller asked for `ptr`.
        stored.await.map_err(|e| match e {
            Error::OffsetOutOfRange { wal, len, .. } => Error::OffsetOutOfRange {
                wal,
                offset: ptr.offset,
                len,
            },
            e => e,
        })
    }

    /// The layout of `wal`, read from its first bytes once and remembered.
    pub(crate) async fn kind(&self, wal: WalId) -> Result<WalKind> {
        if let Some(k) = self.kinds.read().get(&wal) {
            return Ok(*k);
        }
        if self.writer.owns(wal) {
            self.kinds.write().insert(wal, WalKind::Native);
            return Ok(WalKind::Native);
        }
        // The header is in page 0: a cached copy saves a provider read (for
        // a cloud node, perhaps a GET). The layout is decided strictly: a
        // damaged native header, or one naming another WAL, is corruption,
        // never a reference WAL. A cached page 0 that fails is evicted.
        let key = PageKey { wal, page: 0 };
        if let Some(p) = self.cache.get(&key).await
            && p.len() as u64 >= WAL_HEADER_LEN
        {
            let first = p.slice(..p.len().min(record::DETECT_LEN as usize));
            match record::detect_wal_kind(wal, &first, None, self.limit) {
                Ok(Some(kind)) => {
                    self.kinds.write().insert(wal, kind);
                    return Ok(kind);
                }
                Ok(None) => {}
                Err(e) => self.evict(key, 0, &e).await,
            }
        }
        let check = HeaderCheck { limit: self.limit };
        let first = self
            .provider
            .read_checked(wal, 0, record::DETECT_LEN, &check)
            .await?;
        let kind = record::detect_wal_kind(wal, &first, None, self.limit)
            .map_err(|e| Self::corrupt(AtomPointer::new(wal, 0), e))?
            .ok_or(Error::OffsetOutOfRange {
                wal,
                offset: 0,
                len: 0,
            })?;
        self.kinds.write().insert(wal, kind);
        Ok(kind)
    }

    /// Drops a cached page that failed a check at `offset` (it is read again
    /// from the provider, checked).
    async fn evict(&self, key: PageKey, offset: u64, error: &FormatError) {
        warn!(wal = %key.wal, page = key.page, offset, %error,
            "a cached page failed its check: evicted, reading it again");
        ::metrics::counter!(crate::metrics::PAGES_REJECTED, "tier" => "cache").increment(1);
        self.cache.remove(&key).await;
    }

    /// The page holding `ptr`, and `ptr`'s position in it.
    fn page_of(&self, ptr: AtomPointer) -> (PageKey, usize) {
        let key = PageKey {
            wal: ptr.wal_id,
            page: ptr.offset / self.page_size,
        };
        // Below `page_size`, which the cache's pages fit in memory.
        (key, (ptr.offset % self.page_size) as usize)
    }

    /// The check of a read made for the record at `ptr`; `anchor_only`
    /// when nothing but that record is used (the read is not cached).
    fn record_check(&self, kind: WalKind, ptr: AtomPointer, anchor_only: bool) -> RecordCheck {
        RecordCheck {
            kind,
            limit: self.limit,
            anchor: ptr.offset,
            anchor_only,
        }
    }

    async fn read_paged(&self, kind: WalKind, ptr: AtomPointer) -> Result<(Format, Bytes)> {
        let (key, in_page) = self.page_of(ptr);
        let mut cached = self.cache.get(&key).await;
        loop {
            let fresh = cached.is_none();
            let page = match cached.take() {
                Some(p) => p,
                None => self.load_page(kind, key, ptr).await?,
            };
            let short = (page.len() as u64) < self.page_size;
            if page.len() > in_page {
                let rest = page.slice(in_page..);
                let failed = match record::record_total_len(kind, &rest, self.limit) {
                    Ok(total) if total <= rest.len() as u64 => {
                        match record::decode_record(kind, &rest, self.limit) {
                            Ok((f, p, _)) => return Ok((f, p)),
                            Err(e) => e,
                        }
                    }
                    // Runs past the page: read it in one piece below.
                    Ok(_) | Err(FormatError::Truncated { .. }) => {
                        if !fresh && short {
                            // Cached while the WAL was shorter: read the
                            // page again.
                            self.cache.remove(&key).await;
                            continue;
                        }
                        return self.read_direct(kind, ptr).await;
                    }
                    Err(e) => e,
                };
                if fresh {
                    return Err(Self::corrupt(ptr, failed));
                }
                // A cached page that fails its check is never trusted
                // again: evicted, and read again (checked) from the
                // provider's sources.
                self.evict(key, ptr.offset, &failed).await;
                continue;
            }
            if !fresh && short {
                // Cached while the WAL was shorter: read the page again.
                self.cache.remove(&key).await;
                continue;
            }
            return self.read_direct(kind, ptr).await;
        }
    }

    async fn load_page(&self, kind: WalKind, key: PageKey, ptr: AtomPointer) -> Result<Bytes> {
        let start = key.page * self.page_size;
        // Only bytes that passed the check reach the cache (and, through a
        // node's cache-aware handler, other peers).
        let page = self
            .provider
            .read_checked(
                key.wal,
                start,
                self.page_size,
                &self.record_check(kind, ptr, false),
            )
            .await?;
        if (page.len() as u64) <= ptr.offset - start {
            return Err(Error::OffsetOutOfRange {
                wal: ptr.wal_id,
                offset: ptr.offset,
                len: start + page.len() as u64,
            });
        }
        self.cache.insert(key, page.clone()).await;
        Ok(page)
    }

    async fn read_direct(&self, kind: WalKind, ptr: AtomPointer) -> Result<(Format, Bytes)> {
        let check = self.record_check(kind, ptr, true);
        let head = self
            .provider
            .read_checked(ptr.wal_id, ptr.offset, READ_AHEAD, &check)
            .await?;
        let total =
            record::record_total_len(kind, &head, self.limit).map_err(|e| Self::corrupt(ptr, e))?;
        let bytes = if total <= head.len() as u64 {
            head
        } else {
            self.provider
                .read_checked(ptr.wal_id, ptr.offset, total, &check)
                .await?
        };
        let (f, p, _) =
            record::decode_record(kind, &bytes, self.limit).map_err(|e| Self::corrupt(ptr, e))?;
        Ok((f, p))
    }
}
