//! [`CloudPageCache`]: the per-node page cache of the cloud-cluster variant,
//! in memory and on disk, whose pages survive restarts and are served to
//! peers.
//!
//! Why: in a cloud cluster every page of an uploaded WAL can be fetched from
//! the object store, but a GET costs milliseconds and money, while a peer on
//! the same network answers in tens of microseconds. Each node therefore
//! keeps the pages it read — from its own staging, a peer or the store — in
//! a bounded directory, answers peers' page requests from it
//! ([`CacheAwareHandler`](crate::cluster::CacheAwareHandler)), and reuses it
//! after a restart.
//!
//! Two tiers behind the one [`PageCache`] the `Storage` reads through: a
//! [`MemoryPageCache`] in front of a directory managed by [`SlotCache`] (the
//! same component as the cloud provider's cache directory: one file per
//! page, a byte budget with least-recently-used eviction, CRC32C checked on
//! first use after a restart). Its key→file mappings are persisted in
//! `cache_mappings.json`, the name the reference implementation uses.
//!
//! The directory defaults to `cloud_page_cache/server_<server_id>` under a
//! base directory ([`default_dir`](CloudPageCache::default_dir)), so nodes
//! (or tests) sharing a machine never share a cache; an explicit directory
//! is used as given. A directory is used by one process at a time.
//!
//! A cached page is a prefix of the WAL's bytes at its offset (WALs are
//! append-only); a page cached short, near a growing WAL's end, is replaced
//! when the reader finds a record running past it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::cache_dir::SlotCache;
use crate::backends::file_io::blocking;
use crate::error::{Error, Result};
use crate::page_cache::{CacheStats, MemoryPageCache, PageCache, PageKey};

/// Directory of the cloud page caches under a base directory.
pub const DEFAULT_PAGE_CACHE_DIR: &str = "cloud_page_cache";
/// File of the persisted key→file mappings.
pub const MAPPINGS_FILE: &str = "cache_mappings.json";

/// Memory and disk page cache of one cloud-cluster node.
#[derive(Debug)]
pub struct CloudPageCache {
    memory: MemoryPageCache,
    disk: Arc<SlotCache>,
}

impl CloudPageCache {
    /// `<base>/cloud_page_cache/server_<server_id>`. A server id that is not
    /// a plain file name (letters, digits, `.`, `_`, `-`) is refused.
    pub fn default_dir(base: impl AsRef<Path>, server_id: &str) -> Result<PathBuf> {
        let plain = !server_id.is_empty()
            && server_id != "."
            && server_id != ".."
            && server_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !plain {
            return Err(Error::invalid(
                "server_id",
                format!("{server_id:?} cannot name a cache directory (use letters, digits, . _ -)"),
            ));
        }
        Ok(base
            .as_ref()
            .join(DEFAULT_PAGE_CACHE_DIR)
            .join(format!("server_{server_id}")))
    }

    /// Opens (creating) the cache in `dir`: `disk_budget` bytes of pages on
    /// disk, the most used `memory_budget` bytes also in memory, pages of
    /// about `page_size` bytes. Pages cached by a previous process are
    /// reused. Fails with [`ErrorKind::Conflict`](crate::ErrorKind::Conflict)
    /// when another process or cache holds `dir`.
    pub async fn open(
        dir: impl Into<PathBuf>,
        disk_budget: u64,
        memory_budget: u64,
        page_size: u64,
    ) -> Result<Self> {
        let dir = dir.into();
        let d = dir.clone();
        let disk = blocking(move || SlotCache::open_with_index(d, disk_budget, MAPPINGS_FILE))
            .await?
            .ok_or_else(|| Error::Locked { path: dir.clone() })?;
        Ok(CloudPageCache {
            memory: MemoryPageCache::new(memory_budget, page_size),
            disk: Arc::new(disk),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.disk.dir()
    }

    /// Counters of the disk tier (hits, misses, corrupt files dropped...).
    pub fn disk_stats(&self) -> CacheStats {
        self.disk.stats()
    }

    /// Writes the mappings and releases the directory (also done on drop).
    pub async fn close(&self) -> Result<()> {
        let disk = self.disk.clone();
        blocking(move || disk.close()).await
    }

    fn name(key: &PageKey) -> String {
        format!("page/{}/{}", key.wal, key.page)
    }
}

#[async_trait]
impl PageCache for CloudPageCache {
    async fn get(&self, key: &PageKey) -> Option<Bytes> {
        if let Some(p) = self.memory.get(key).await {
            return Some(p);
        }
        let (disk, name) = (self.disk.clone(), Self::name(key));
        let page = blocking(move || Ok(disk.get_whole(&name))).await.ok()??;
        self.memory.insert(*key, page.clone()).await;
        Some(page)
    }

    fn try_get(&self, key: &PageKey) -> Option<Bytes> {
        self.memory.try_get(key)
    }

    async fn insert(&self, key: PageKey, page: Bytes) {
        self.memory.insert(key, page.clone()).await;
        let (disk, name) = (self.disk.clone(), Self::name(&key));
        let _ = blocking(move || {
            disk.insert(&name, &page);
            Ok(())
        })
        .await;
    }

    async fn remove(&self, key: &PageKey) {
        self.memory.remove(key).await;
        let (disk, name) = (self.disk.clone(), Self::name(key));
        let _ = blocking(move || {
            disk.remove(&name);
            Ok(())
        })
        .await;
    }

    fn stats(&self) -> CacheStats {
        let m = self.memory.stats();
        let d = self.disk.stats();
        CacheStats {
            // A lookup is a hit if either tier had the page.
            hits: m.hits + d.hits,
            misses: d.misses,
            inserts: m.inserts,
            bytes: d.bytes,
            capacity: self.capacity(),
            objects: d.objects,
            evicted: d.evicted,
            corrupt: d.corrupt,
        }
    }

    fn capacity(&self) -> u64 {
        self.disk.budget().max(self.memory.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::WalId;

    fn key(wal: WalId, page: u64) -> PageKey {
        PageKey { wal, page }
    }

    #[test]
    fn default_dir_is_namespaced_by_server_and_refuses_paths() {
        let d = CloudPageCache::default_dir("/var/lib/pb", "server-1").unwrap();
        assert_eq!(d, Path::new("/var/lib/pb/cloud_page_cache/server_server-1"));
        for bad in ["", "..", "a/b", "x y", "../etc"] {
            let err = CloudPageCache::default_dir("/b", bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Invalid, "{bad:?}: {err}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_survive_a_restart_through_the_mappings_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CloudPageCache::default_dir(tmp.path(), "n1").unwrap();
        let wal = WalId::new_random();
        let page = Bytes::from(vec![7u8; 4096]);
        {
            let c = CloudPageCache::open(&dir, 1 << 20, 1 << 20, 4096)
                .await
                .unwrap();
            c.insert(key(wal, 3), page.clone()).await;
            assert_eq!(c.get(&key(wal, 3)).await, Some(page.clone()));
            // One directory, one cache.
            let err = CloudPageCache::open(&dir, 1 << 20, 0, 4096)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Conflict, "{err}");
            c.close().await.unwrap();
        }
        assert!(dir.join(MAPPINGS_FILE).is_file());
        let c = CloudPageCache::open(&dir, 1 << 20, 1 << 20, 4096)
            .await
            .unwrap();
        assert_eq!(c.get(&key(wal, 3)).await, Some(page));
        assert_eq!(c.disk_stats().hits, 1, "served from disk after the restart");
        assert_eq!(c.get(&key(wal, 4)).await, None);
        c.remove(&key(wal, 3)).await;
        assert_eq!(c.get(&key(wal, 3)).await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_explicit_directory_is_used_as_given_and_budget_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("my-cache");
        let c = CloudPageCache::open(&dir, 3 * 1000, 0, 1000).await.unwrap();
        let wal = WalId::new_random();
        for p in 0..10 {
            c.insert(key(wal, p), Bytes::from(vec![p as u8; 1000]))
                .await;
        }
        assert!(c.disk_stats().bytes <= 3000);
        assert!(c.get(&key(wal, 9)).await.is_some(), "the newest page stays");
        assert!(dir.join(MAPPINGS_FILE).is_file());
        assert_eq!(c.dir(), dir.as_path());
    }
}
