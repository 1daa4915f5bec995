//! The read side of the WAL engine: memory → page cache → provider.
//!
//! Reads of records still in the writer's memory are served from there.
//! Other reads go through the [`PageCache`] in pages of `page_size` bytes; a
//! record that runs past its page is read in one piece from the provider.
//! When the cache cannot hold a page (capacity below the page size), records
//! are read directly with a small read-ahead instead of whole pages.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::error::{Error, FormatError, Result};
use crate::page_cache::{PageCache, PageKey};
use crate::record::{self, WAL_HEADER_LEN, WalKind};
use crate::types::{AtomPointer, Format, WalId};
use crate::wal_store::WalStore;
use crate::wal_writer::{MemoryRead, WalWriter};

/// Bytes read at once when records are read without the page cache.
const READ_AHEAD: u64 = 4096;

pub(crate) struct Reader {
    provider: Arc<dyn WalStore>,
    cache: Arc<dyn PageCache>,
    writer: Arc<WalWriter>,
    page_size: u64,
    limit: u64,
    kinds: RwLock<HashMap<WalId, WalKind>>,
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
        // damaged native header is corruption, never a reference WAL.
        let first = match self.cache.get(&PageKey { wal, page: 0 }).await {
            Some(p) if p.len() as u64 >= WAL_HEADER_LEN => {
                p.slice(..p.len().min(record::DETECT_LEN as usize))
            }
            _ => self.provider.read(wal, 0, record::DETECT_LEN).await?,
        };
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

    async fn read_paged(&self, kind: WalKind, ptr: AtomPointer) -> Result<(Format, Bytes)> {
        let key = PageKey {
            wal: ptr.wal_id,
            page: ptr.offset / self.page_size,
        };
        let in_page = (ptr.offset % self.page_size) as usize;
        let mut cached = self.cache.get(&key).await;
        loop {
            let fresh = cached.is_none();
            let page = match cached.take() {
                Some(p) => p,
                None => self.load_page(key, ptr).await?,
            };
            let short = (page.len() as u64) < self.page_size;
            if page.len() > in_page {
                let rest = page.slice(in_page..);
                match record::record_total_len(kind, &rest, self.limit) {
                    Ok(total) if total <= rest.len() as u64 => {
                        let (f, p, _) = record::decode_record(kind, &rest, self.limit)
                            .map_err(|e| Self::corrupt(ptr, e))?;
                        return Ok((f, p));
                    }
                    // Runs past the page: read it in one piece below.
                    Ok(_) | Err(FormatError::Truncated { .. }) => {}
                    Err(e) if fresh || !short => return Err(Self::corrupt(ptr, e)),
                    Err(_) => {}
                }
            }
            if !fresh && short {
                // Cached while the WAL was shorter: read the page again.
                self.cache.remove(&key).await;
                continue;
            }
            return self.read_direct(kind, ptr).await;
        }
    }

    async fn load_page(&self, key: PageKey, ptr: AtomPointer) -> Result<Bytes> {
        let start = key.page * self.page_size;
        let page = self.provider.read(key.wal, start, self.page_size).await?;
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
        let head = self
            .provider
            .read(ptr.wal_id, ptr.offset, READ_AHEAD)
            .await?;
        let total =
            record::record_total_len(kind, &head, self.limit).map_err(|e| Self::corrupt(ptr, e))?;
        let bytes = if total <= head.len() as u64 {
            head
        } else {
            self.provider.read(ptr.wal_id, ptr.offset, total).await?
        };
        let (f, p, _) =
            record::decode_record(kind, &bytes, self.limit).map_err(|e| Self::corrupt(ptr, e))?;
        Ok((f, p))
    }
}
