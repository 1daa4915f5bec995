//! [`PageCache`]: fixed-size pages of WALs kept close to the reader.
//!
//! Pages are immutable once complete (WALs are append-only), so a cached page
//! never goes stale; a page read near the end of a WAL that is still growing
//! may be shorter than the page size, and the reader re-reads it when a record
//! runs past its end.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::types::WalId;

/// Key of one page: page `page` covers offsets `page * page_size ..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    /// The WAL.
    pub wal: WalId,
    /// Page number within the WAL.
    pub page: u64,
}

/// Counters of a cache: a [`PageCache`], the cloud provider's cache
/// directory ([`SlotCache`](crate::backends::cloud::SlotCache)) or the disk
/// tier of a cloud page cache. Counters a cache does not keep stay 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Entries (pages, objects) inserted.
    pub inserts: u64,
    /// Bytes currently held.
    pub bytes: u64,
    /// Byte budget.
    pub capacity: u64,
    /// Entries held now (where counted).
    pub objects: u64,
    /// Entries evicted for the budget (where counted).
    pub evicted: u64,
    /// Entries dropped because they failed validation (missing, short or a
    /// bad CRC; disk caches).
    pub corrupt: u64,
}

impl CacheStats {
    /// Counters with the given hits, misses, inserts, bytes and capacity
    /// (the others 0), for [`PageCache`] implementations.
    pub fn new(hits: u64, misses: u64, inserts: u64, bytes: u64, capacity: u64) -> Self {
        CacheStats {
            hits,
            misses,
            inserts,
            bytes,
            capacity,
            ..Default::default()
        }
    }
}

/// A cache of WAL pages with a byte budget.
///
/// # Contract
///
/// `get` returns exactly the bytes last inserted under the key (or nothing);
/// the cache evicts to stay within [`capacity`](Self::capacity) bytes. A
/// capacity of zero disables caching and the engine then reads records
/// directly from the provider.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PageCache: Send + Sync + fmt::Debug {
    /// The cached page, counting a hit or a miss.
    async fn get(&self, key: &PageKey) -> Option<Bytes>;
    /// The cached page if the cache has it at hand, without waiting (the
    /// engine's fast path for reads). `None` does not mean absent: the
    /// caller then asks [`get`](Self::get), which alone counts the miss. A
    /// page returned is one `get` would return, and counts as a hit. The
    /// default never answers.
    fn try_get(&self, _key: &PageKey) -> Option<Bytes> {
        None
    }
    /// Caches a page (evicting others if needed).
    async fn insert(&self, key: PageKey, page: Bytes);
    /// Drops a page.
    async fn remove(&self, key: &PageKey);
    /// Current counters.
    fn stats(&self) -> CacheStats;
    /// Byte budget.
    fn capacity(&self) -> u64;
}

#[derive(Clone)]
struct PageWeighter;

impl quick_cache::Weighter<PageKey, Bytes> for PageWeighter {
    fn weight(&self, _key: &PageKey, page: &Bytes) -> u64 {
        page.len().max(1) as u64
    }
}

/// In-memory [`PageCache`] on [`quick_cache`] (S3-FIFO eviction, weighted by
/// page length).
///
/// Its hasher has a fixed seed, so eviction is the same from run to run
/// (simulations replay exactly); keys are WAL ids and page numbers, not
/// chosen by anyone who could flood it.
pub struct MemoryPageCache {
    cache: Option<
        quick_cache::sync::Cache<PageKey, Bytes, PageWeighter, foldhash::quality::FixedState>,
    >,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    counters: crate::metrics::CacheCounters,
}

impl MemoryPageCache {
    /// A cache holding at most `capacity` bytes of pages of about `page_size`
    /// bytes. `capacity == 0` disables it.
    pub fn new(capacity: u64, page_size: u64) -> Self {
        let cache = (capacity > 0).then(|| {
            let items = (capacity / page_size.max(1)).clamp(16, 1 << 20) as usize;
            quick_cache::sync::Cache::with(
                items,
                capacity,
                PageWeighter,
                foldhash::quality::FixedState::with_seed(0x5eed_ca5e),
                Default::default(),
            )
        });
        MemoryPageCache {
            cache,
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            counters: crate::metrics::CacheCounters::new("memory"),
        }
    }
}

impl fmt::Debug for MemoryPageCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPageCache")
            .field("stats", &self.stats())
            .finish()
    }
}

#[async_trait]
impl PageCache for MemoryPageCache {
    async fn get(&self, key: &PageKey) -> Option<Bytes> {
        let found = self.cache.as_ref().and_then(|c| c.get(key));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.counters.record(found.is_some());
        found
    }

    fn try_get(&self, key: &PageKey) -> Option<Bytes> {
        let found = self.cache.as_ref()?.get(key)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.counters.record(true);
        Some(found)
    }

    async fn insert(&self, key: PageKey, page: Bytes) {
        if let Some(c) = &self.cache {
            self.inserts.fetch_add(1, Ordering::Relaxed);
            c.insert(key, page);
        }
    }

    async fn remove(&self, key: &PageKey) {
        if let Some(c) = &self.cache {
            c.remove(key);
        }
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
            bytes: self.cache.as_ref().map_or(0, |c| c.weight()),
            capacity: self.capacity,
            objects: self.cache.as_ref().map_or(0, |c| c.len() as u64),
            ..CacheStats::default()
        }
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(page: u64) -> PageKey {
        PageKey {
            wal: WalId(uuid::Uuid::nil()),
            page,
        }
    }

    #[tokio::test]
    async fn counts_hits_and_misses() {
        let c = MemoryPageCache::new(1 << 20, 1024);
        assert!(c.get(&key(1)).await.is_none());
        c.insert(key(1), Bytes::from_static(b"abc")).await;
        assert_eq!(c.get(&key(1)).await.unwrap(), Bytes::from_static(b"abc"));
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.inserts, s.bytes), (1, 1, 1, 3));
        c.remove(&key(1)).await;
        assert!(c.get(&key(1)).await.is_none());
    }

    #[tokio::test]
    async fn stays_within_budget() {
        let c = MemoryPageCache::new(10 * 1024, 1024);
        for i in 0..100 {
            c.insert(key(i), Bytes::from(vec![0u8; 1024])).await;
        }
        assert!(c.stats().bytes <= 10 * 1024, "{:?}", c.stats());
        let held = futures_count(&c).await;
        assert!(held > 0 && held <= 10, "held {held}");
    }

    async fn futures_count(c: &MemoryPageCache) -> usize {
        let mut n = 0;
        for i in 0..100 {
            if c.get(&key(i)).await.is_some() {
                n += 1;
            }
        }
        n
    }

    #[tokio::test]
    async fn zero_capacity_disables() {
        let c = MemoryPageCache::new(0, 1024);
        c.insert(key(1), Bytes::from_static(b"abc")).await;
        assert!(c.get(&key(1)).await.is_none());
        assert_eq!(c.stats().inserts, 0);
    }
}
