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
//!
//! A page goes to memory at once and to disk in the background: the reader
//! that fetched it does not wait for a file to be written and the index to
//! be renamed (that made a page read from a peer cost several times the
//! fetch). Disk writes keep their order; a removal cancels a queued write
//! of its page and waits for one in progress; `close` writes what is queued.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

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

/// Most pages waiting for the disk tier; more are cached in memory only.
const MAX_QUEUED: usize = 256;

/// Memory and disk page cache of one cloud-cluster node.
#[derive(Debug)]
pub struct CloudPageCache {
    memory: MemoryPageCache,
    disk: Arc<SlotCache>,
    writes: Arc<DiskWrites>,
}

/// Pages on their way to the disk tier, in order.
#[derive(Debug, Default)]
struct DiskWrites {
    queue: Mutex<Queue>,
    /// Held while a page is written or removed: a write taken from the
    /// queue is on disk before a removal of its page goes on.
    writing: Mutex<()>,
}

#[derive(Debug, Default)]
struct Queue {
    pages: VecDeque<(String, Bytes)>,
    /// A background task is writing the queue.
    draining: bool,
}

impl DiskWrites {
    /// Writes queued pages until none is left, then the index once.
    fn drain(&self, disk: &SlotCache) {
        let mut wrote = false;
        loop {
            let _writing = self.writing.lock();
            let next = {
                let mut q = self.queue.lock();
                let next = q.pages.pop_front();
                if next.is_none() {
                    q.draining = false;
                }
                next
            };
            match next {
                Some((name, page)) => {
                    disk.insert_unpersisted(&name, &page);
                    wrote = true;
                }
                None => {
                    if wrote {
                        disk.persist_index();
                    }
                    return;
                }
            }
        }
    }
}

/// Ends a background drain's claim even when its task never ran (a runtime
/// shutting down drops it): the next insert starts another.
struct Draining(Arc<DiskWrites>);

impl Drop for Draining {
    fn drop(&mut self) {
        self.0.queue.lock().draining = false;
    }
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
            writes: Arc::default(),
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

    /// Writes the pages still queued for the disk, the mappings, and
    /// releases the directory (also done on drop, without the queue).
    pub async fn close(&self) -> Result<()> {
        let (disk, writes) = (self.disk.clone(), self.writes.clone());
        blocking(move || {
            writes.drain(&disk);
            disk.close()
        })
        .await
    }

    /// Queues `page` for the disk tier; starts a background writer unless
    /// one runs. Without a runtime the page is written here.
    fn write_behind(&self, name: String, page: Bytes) {
        let start = {
            let mut q = self.writes.queue.lock();
            if q.pages.len() >= MAX_QUEUED {
                tracing::debug!(page = %name, "disk tier behind: page cached in memory only");
                return;
            }
            q.pages.push_back((name, page));
            !std::mem::replace(&mut q.draining, true)
        };
        if !start {
            return;
        }
        let (disk, writes) = (self.disk.clone(), self.writes.clone());
        let claim = Draining(writes.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || {
                    writes.drain(&disk);
                    drop(claim);
                });
            }
            Err(_) => {
                writes.drain(&disk);
                drop(claim);
            }
        }
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
        let name = Self::name(key);
        // Written a moment ago, not on disk yet.
        let queued = {
            let q = self.writes.queue.lock();
            q.pages
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| p.clone())
        };
        if let Some(page) = queued {
            return Some(page);
        }
        let disk = self.disk.clone();
        let page = blocking(move || Ok(disk.get_whole(&name))).await.ok()??;
        self.memory.insert(*key, page.clone()).await;
        Some(page)
    }

    fn try_get(&self, key: &PageKey) -> Option<Bytes> {
        self.memory.try_get(key)
    }

    async fn insert(&self, key: PageKey, page: Bytes) {
        self.memory.insert(key, page.clone()).await;
        self.write_behind(Self::name(&key), page);
    }

    async fn remove(&self, key: &PageKey) {
        self.memory.remove(key).await;
        let (disk, writes, name) = (self.disk.clone(), self.writes.clone(), Self::name(key));
        let _ = blocking(move || {
            writes.queue.lock().pages.retain(|(n, _)| *n != name);
            let _writing = writes.writing.lock();
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
        c.close().await.unwrap();
        assert!(c.disk_stats().bytes <= 3000);
        assert!(dir.join(MAPPINGS_FILE).is_file());
        assert_eq!(c.dir(), dir.as_path());
    }

    /// The disk tier is written behind the reader: a page is readable at
    /// once, a removal wins over a queued write of its page, and `close`
    /// writes what is queued (a restart finds it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_written_behind_are_readable_removable_and_kept_at_close() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("behind");
        let wal = WalId::new_random();
        let page = |p: u64| Bytes::from(vec![p as u8; 4096]);
        {
            // No memory tier: every get goes past it.
            let c = CloudPageCache::open(&dir, 1 << 20, 0, 4096).await.unwrap();
            for p in 0..50 {
                c.insert(key(wal, p), page(p)).await;
                assert_eq!(c.get(&key(wal, p)).await, Some(page(p)), "page {p}");
            }
            for p in (0..50).step_by(2) {
                c.remove(&key(wal, p)).await;
                assert_eq!(c.get(&key(wal, p)).await, None, "page {p} removed");
            }
            c.close().await.unwrap();
        }
        let c = CloudPageCache::open(&dir, 1 << 20, 0, 4096).await.unwrap();
        for p in 0..50 {
            let want = (p % 2 == 1).then(|| page(p));
            assert_eq!(
                c.get(&key(wal, p)).await,
                want,
                "page {p} after the restart"
            );
        }
        c.close().await.unwrap();
    }

    /// A removal drops a queued write of its page (else the write, done
    /// after the removal, would bring the page back) and waits for a write
    /// in progress.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    // The test holds the writer's lock across awaits on purpose: the
    // background writer must not take a page meanwhile.
    #[allow(clippy::await_holding_lock)]
    async fn a_removal_cancels_a_queued_write_of_its_page() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cancel");
        let c = Arc::new(CloudPageCache::open(&dir, 1 << 20, 0, 4096).await.unwrap());
        let wal = WalId::new_random();
        let queued = |c: &CloudPageCache, p: u64| {
            let name = CloudPageCache::name(&key(wal, p));
            c.writes.queue.lock().pages.iter().any(|(n, _)| *n == name)
        };
        let writing = c.writes.writing.lock();
        c.insert(key(wal, 1), Bytes::from_static(b"one")).await;
        c.insert(key(wal, 2), Bytes::from_static(b"two")).await;
        // The background writer waits for the lock before taking a page.
        assert!(queued(&c, 1) && queued(&c, 2));
        let removing = tokio::spawn({
            let c = c.clone();
            async move { c.remove(&key(wal, 1)).await }
        });
        let purged = async {
            while queued(&c, 1) {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), purged)
            .await
            .expect("the removal never dropped the queued write of its page");
        assert!(queued(&c, 2), "only the removed page leaves the queue");
        assert!(!removing.is_finished(), "the removal waits for the writer");
        drop(writing);
        removing.await.unwrap();
        c.close().await.unwrap();
        drop(c);
        let c = CloudPageCache::open(&dir, 1 << 20, 0, 4096).await.unwrap();
        assert_eq!(c.get(&key(wal, 1)).await, None);
        assert_eq!(c.get(&key(wal, 2)).await, Some(Bytes::from_static(b"two")));
    }

    /// Without a runtime the page is written by the inserting thread.
    #[test]
    fn without_a_runtime_the_inserter_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("no-runtime");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let c = rt
            .block_on(CloudPageCache::open(&dir, 1 << 20, 0, 4096))
            .unwrap();
        let wal = WalId::new_random();
        c.write_behind(
            CloudPageCache::name(&key(wal, 1)),
            Bytes::from_static(b"page"),
        );
        assert!(c.writes.queue.lock().pages.is_empty());
        assert_eq!(
            c.disk
                .get_whole(&CloudPageCache::name(&key(wal, 1)))
                .as_deref(),
            Some(&b"page"[..])
        );
    }
}
