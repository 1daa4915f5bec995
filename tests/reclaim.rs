//! Reclaiming WALs nothing live points into (`Storage::reclaim`, issue 15
//! item 3) on the standalone file, memory and cloud variants: what goes,
//! what stays and why, and that a reader of a retiring WAL finishes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use protobase::backends::fs::FileBlockProvider;
use protobase::backends::memory::MemoryBlockProvider;
use protobase::{
    AtomPointer, Error, KeptBecause, NewWal, ReclaimOptions, Result, RootLock, RootRecord,
    RootRegister, RootVersion, Storage, StorageBuilder, VersionedRoot, WalId, WalInfo, WalStore,
};

/// Retire at once (no minimum age).
fn now() -> ReclaimOptions {
    ReclaimOptions::new().min_age(Duration::ZERO)
}

/// Records of 5,000 bytes with WALs of at most 4 KiB: one WAL per record, each
/// full (never continued by a later writer).
fn record(i: u8) -> Vec<u8> {
    vec![i; 5_000]
}

/// Pushes `n` records (one WAL each), publishes the last; returns the
/// pointers.
async fn fill(storage: &Storage, n: u8) -> Vec<AtomPointer> {
    let mut ptrs = Vec::new();
    for i in 0..n {
        ptrs.push(storage.push_bytes(&record(i)).await.unwrap());
    }
    storage.set_root(*ptrs.last().unwrap()).await.unwrap();
    ptrs
}

fn wals_of(ptrs: &[AtomPointer]) -> HashSet<WalId> {
    ptrs.iter().map(|p| p.wal_id).collect()
}

fn files(dir: &std::path::Path) -> HashSet<WalId> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect()
}

async fn standalone(dir: &std::path::Path) -> Storage {
    StorageBuilder::standalone(dir)
        .max_wal_size(4096)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wals_nothing_live_reaches_go_and_everything_live_reads_back() {
    let t = tempfile::tempdir().unwrap();
    let s = standalone(t.path()).await;
    let ptrs = fill(&s, 5).await;
    assert_eq!(wals_of(&ptrs).len(), 5, "one WAL per record");
    s.close().await.unwrap();

    let s = standalone(t.path()).await;
    // Live: records 1 and 3 (the root's WAL, 4, is kept whatever the set).
    let live = [ptrs[1].wal_id, ptrs[3].wal_id];
    let dry = s.reclaim(live, now().dry_run(true)).await.unwrap();
    assert!(dry.dry_run);
    let would: HashSet<WalId> = dry.retired.iter().map(|w| w.wal).collect();
    assert_eq!(would, HashSet::from([ptrs[0].wal_id, ptrs[2].wal_id]));
    assert!(dry.retired_bytes() >= 10_000, "{dry:?}");
    assert_eq!(files(t.path()), wals_of(&ptrs), "a dry run removed files");

    let report = s.reclaim(live, now()).await.unwrap();
    assert!(!report.dry_run);
    let gone: HashSet<WalId> = report.retired.iter().map(|w| w.wal).collect();
    assert_eq!(gone, would, "{report:?}");
    assert_eq!(report.live, 2);
    assert!(
        report
            .kept
            .iter()
            .any(|(w, why)| w.wal == ptrs[4].wal_id && *why == KeptBecause::CurrentRoot),
        "{report:?}"
    );
    let left = files(t.path());
    assert!(left.is_disjoint(&gone), "removed WALs still on disk");
    for i in [1usize, 3, 4] {
        assert_eq!(s.get_bytes(ptrs[i]).await.unwrap(), record(i as u8));
    }
    for i in [0usize, 2] {
        assert!(
            matches!(s.get_bytes(ptrs[i]).await, Err(Error::WalNotFound { .. })),
            "record {i} of a removed WAL still reads"
        );
    }
    // Nothing left to do: a second run retires nothing.
    let again = s.reclaim(live, now()).await.unwrap();
    assert!(again.retired.is_empty(), "{again:?}");
    s.close().await.unwrap();
    // A fresh process sees the same.
    let s = standalone(t.path()).await;
    assert_eq!(
        s.read_current_root().await.unwrap().unwrap().pointer,
        ptrs[4]
    );
    assert_eq!(s.get_bytes(ptrs[3]).await.unwrap(), record(3));
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn young_wals_active_wals_and_other_writers_wals_stay() {
    let t = tempfile::tempdir().unwrap();
    let a = standalone(t.path()).await;
    let ptrs = fill(&a, 3).await;
    // Another process's writer holds a WAL of its own (not yet published).
    let b = standalone(t.path()).await;
    let theirs = b.push_bytes(b"not published yet").await.unwrap();
    b.flush_wal().await.unwrap();
    // An unpublished record of this storage's own active WAL.
    let mine = a.push_bytes(b"mine, not published yet").await.unwrap();

    // The default minimum age (an hour) keeps every WAL written just now.
    let r = a.reclaim([], ReclaimOptions::new()).await.unwrap();
    assert!(r.retired.is_empty(), "{r:?}");
    assert!(r.kept.iter().all(|(_, why)| matches!(
        why,
        KeptBecause::Recent | KeptBecause::CurrentRoot | KeptBecause::Writing
    )));

    let r = a.reclaim([], now()).await.unwrap();
    let why = |wal: WalId| {
        r.kept
            .iter()
            .find(|(w, _)| w.wal == wal)
            .map(|(_, why)| why.clone())
    };
    assert!(
        matches!(why(theirs.wal_id), Some(KeptBecause::InUse(_))),
        "another writer's WAL: {r:?}"
    );
    assert_eq!(why(mine.wal_id), Some(KeptBecause::Writing), "{r:?}");
    assert_eq!(why(ptrs[2].wal_id), Some(KeptBecause::CurrentRoot));
    let gone: HashSet<WalId> = r.retired.iter().map(|w| w.wal).collect();
    assert_eq!(gone, HashSet::from([ptrs[0].wal_id, ptrs[1].wal_id]));
    assert_eq!(
        b.get_bytes(theirs).await.unwrap(),
        &b"not published yet"[..]
    );
    assert_eq!(
        a.get_bytes(mine).await.unwrap(),
        &b"mine, not published yet"[..]
    );
    // Published afterwards, both read back.
    b.set_root(theirs).await.unwrap();
    a.set_root(mine).await.unwrap();
    assert_eq!(
        a.get_bytes(theirs).await.unwrap(),
        &b"not published yet"[..]
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_space_only_reports() {
    let t = tempfile::tempdir().unwrap();
    let s = standalone(t.path()).await;
    let ptrs = fill(&s, 3).await;
    s.close().await.unwrap();
    let ro = StorageBuilder::standalone(t.path())
        .read_only(true)
        .build()
        .await
        .unwrap();
    assert!(matches!(ro.reclaim([], now()).await, Err(Error::ReadOnly)));
    let dry = ro.reclaim([], now().dry_run(true)).await.unwrap();
    assert_eq!(dry.retired.len(), 2, "{dry:?}");
    assert_eq!(files(t.path()), wals_of(&ptrs));
    // A live WAL the space does not hold is reported.
    let stranger = WalId::new_random();
    let dry = ro.reclaim([stranger], now().dry_run(true)).await.unwrap();
    assert_eq!(dry.missing_live, vec![stranger]);
    ro.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stores_keep_wals_of_unknown_age_unless_told() {
    let s = StorageBuilder::new()
        .with_block_provider(Arc::new(MemoryBlockProvider::new()))
        .max_wal_size(4096)
        .build()
        .await
        .unwrap();
    let ptrs = fill(&s, 3).await;
    s.flush_wal().await.unwrap();
    let r = s.reclaim([], ReclaimOptions::new()).await.unwrap();
    assert!(r.retired.is_empty(), "{r:?}");
    let r = s.reclaim([], now()).await.unwrap();
    let gone: HashSet<WalId> = r.retired.iter().map(|w| w.wal).collect();
    assert_eq!(gone, HashSet::from([ptrs[0].wal_id, ptrs[1].wal_id]));
    assert_eq!(s.get_bytes(ptrs[2]).await.unwrap(), record(2));
    assert!(s.get_bytes(ptrs[0]).await.is_err());
    s.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// A reader in the middle of a retiring WAL.

/// A file space whose reads of one WAL wait until released.
#[derive(Debug)]
struct HeldReads {
    inner: FileBlockProvider,
    held: parking_lot::Mutex<Option<WalId>>,
    started: tokio::sync::mpsc::UnboundedSender<()>,
    release: tokio::sync::Semaphore,
    /// Notified when a removal starts.
    deleting: tokio::sync::Notify,
}

#[async_trait]
impl WalStore for HeldReads {
    async fn create_wal(&self) -> Result<NewWal> {
        self.inner.create_wal().await
    }
    async fn append(&self, wal: WalId, offset: u64, data: Bytes) -> Result<()> {
        self.inner.append(wal, offset, data).await
    }
    async fn sync(&self, wal: WalId, upto: u64) -> Result<()> {
        self.inner.sync(wal, upto).await
    }
    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes> {
        if *self.held.lock() == Some(wal) {
            let _ = self.started.send(());
            let permit = self.release.acquire().await.unwrap();
            permit.forget();
        }
        self.inner.read(wal, offset, len).await
    }
    async fn list_wals(&self) -> Result<Vec<WalInfo>> {
        self.inner.list_wals().await
    }
    async fn close_wal(&self, wal: WalId) -> Result<()> {
        self.inner.close_wal(wal).await
    }
    async fn read_config(&self) -> Result<Option<Bytes>> {
        self.inner.read_config().await
    }
    async fn close(&self) -> Result<()> {
        WalStore::close(&self.inner).await
    }
    async fn delete_wal(&self, wal: WalId) -> Result<()> {
        self.deleting.notify_one();
        self.inner.delete_wal(wal).await
    }
    async fn wal_modified(&self, wal: WalId) -> Result<Option<std::time::SystemTime>> {
        self.inner.wal_modified(wal).await
    }
}

#[async_trait]
impl RootRegister for HeldReads {
    async fn read_root(&self) -> Result<Option<VersionedRoot>> {
        self.inner.read_root().await
    }
    async fn write_root(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
    ) -> Result<RootVersion> {
        self.inner.write_root(root, expected).await
    }
    async fn lock_root(&self) -> Result<RootLock> {
        self.inner.lock_root().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_a_retiring_wal_finishes_its_read() {
    let t = tempfile::tempdir().unwrap();
    let s = standalone(t.path()).await;
    let ptrs = fill(&s, 2).await;
    s.close().await.unwrap();

    let (started, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let provider = Arc::new(HeldReads {
        inner: FileBlockProvider::open(t.path()).unwrap(),
        held: parking_lot::Mutex::new(Some(ptrs[0].wal_id)),
        started,
        release: tokio::sync::Semaphore::new(0),
        deleting: tokio::sync::Notify::new(),
    });
    let s = StorageBuilder::new()
        .with_block_provider(provider.clone())
        .page_cache_size(0)
        .build()
        .await
        .unwrap();
    let reader = tokio::spawn({
        let (s, p) = (s.clone(), ptrs[0]);
        async move { s.get_bytes(p).await }
    });
    started_rx.recv().await.unwrap();
    let reclaim = tokio::spawn({
        let s = s.clone();
        async move { s.reclaim([], now()).await }
    });
    // The retirement waits for the read: no removal while it runs (a
    // bounded wait for something that must not happen).
    let removed = tokio::time::timeout(Duration::from_millis(500), provider.deleting.notified());
    assert!(
        removed.await.is_err(),
        "a WAL was removed under a running read"
    );
    assert!(!reclaim.is_finished());
    assert!(files(t.path()).contains(&ptrs[0].wal_id));
    *provider.held.lock() = None;
    provider.release.add_permits(100);
    assert_eq!(reader.await.unwrap().unwrap(), record(0));
    let report = reclaim.await.unwrap().unwrap();
    assert_eq!(report.retired.len(), 1, "{report:?}");
    assert_eq!(report.retired[0].wal, ptrs[0].wal_id);
    assert!(!files(t.path()).contains(&ptrs[0].wal_id));
    assert_eq!(s.get_bytes(ptrs[1]).await.unwrap(), record(1));
    s.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// Cloud: objects and cached copies go.

#[cfg(feature = "cloud")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_wals_leave_the_store_and_the_cache() {
    use futures_util::TryStreamExt;
    use object_store::ObjectStore;
    use protobase::backends::cloud::CloudBlockProvider;

    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let staging = tempfile::tempdir().unwrap();
    let open = |dir: std::path::PathBuf| {
        let store = store.clone();
        async move {
            let p = Arc::new(
                CloudBlockProvider::builder(store, dir)
                    .object_size(4096)
                    .build()
                    .await
                    .unwrap(),
            );
            let s = StorageBuilder::cloud(p.clone())
                .max_wal_size(4096)
                .build()
                .await
                .unwrap();
            (p, s)
        }
    };
    let (p, s) = open(staging.path().join("a")).await;
    let ptrs = fill(&s, 3).await;
    p.flush_uploads().await.unwrap();
    s.close().await.unwrap();
    let keys = || async {
        store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
    };
    let (p, s) = open(staging.path().join("b")).await;
    // Read the doomed record first, so its slot is in the cache directory.
    assert_eq!(s.get_bytes(ptrs[0]).await.unwrap(), record(0));
    let cached_before = p.cache().map(|c| c.stats().bytes).unwrap_or(0);
    let r = s.reclaim([ptrs[1].wal_id], now()).await.unwrap();
    assert_eq!(r.retired.len(), 1, "{r:?}");
    assert_eq!(r.retired[0].wal, ptrs[0].wal_id);
    let left = keys().await;
    assert!(
        left.iter()
            .all(|k| !k.contains(&ptrs[0].wal_id.to_string())),
        "{left:?}"
    );
    assert!(left.iter().any(|k| k.contains(&ptrs[1].wal_id.to_string())));
    if let Some(c) = p.cache() {
        assert!(c.stats().bytes < cached_before.max(1), "cached copy kept");
    }
    assert!(matches!(
        s.get_bytes(ptrs[0]).await,
        Err(Error::WalNotFound { .. })
    ));
    assert_eq!(s.get_bytes(ptrs[1]).await.unwrap(), record(1));
    assert_eq!(s.get_bytes(ptrs[2]).await.unwrap(), record(2));
    s.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// Clusters: every member is asked first.

fn member(id: &str, ids: &[&str]) -> protobase::cluster::ClusterConfig {
    use protobase::cluster::{ClusterConfig, PeerAddress};
    ClusterConfig::new(id)
        .with_servers(ids.iter().map(|p| PeerAddress::new(*p, format!("{p}:1"))))
        .with_read_timeout_ms(500)
        .with_heartbeat_ms(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_reclaims_only_with_every_member() {
    use protobase::transports::InProcessHub;
    let hub = InProcessHub::new(1);
    let ids = ["a", "b", "c"];
    let mut nodes = Vec::new();
    for id in ids {
        nodes.push(
            StorageBuilder::in_memory()
                .cluster(member(id, &ids))
                .with_network_manager(Arc::new(hub.node(id)))
                .with_acceptor_store(Arc::new(protobase::cluster::MemoryAcceptorStore::default()))
                .max_wal_size(4096)
                .build()
                .await
                .unwrap(),
        );
    }
    let ptrs = fill(&nodes[0], 3).await;
    nodes[0].flush_wal().await.unwrap();
    let r = nodes[0].reclaim([], now()).await.unwrap();
    let gone: HashSet<WalId> = r.retired.iter().map(|w| w.wal).collect();
    assert_eq!(
        gone,
        HashSet::from([ptrs[0].wal_id, ptrs[1].wal_id]),
        "{r:?}"
    );
    assert_eq!(nodes[1].get_bytes(ptrs[2]).await.unwrap(), record(2));
    // A member that does not answer stops the run: nothing goes.
    let more = nodes[0].push_bytes(&record(7)).await.unwrap();
    nodes[0].set_root(more).await.unwrap();
    hub.kill("c");
    let r = nodes[0]
        .reclaim([], now().member_timeout(Duration::from_millis(500)))
        .await;
    assert!(
        matches!(&r, Err(Error::NoMajority(m)) if m.contains("member c")),
        "{r:?}"
    );
    assert_eq!(nodes[0].get_bytes(ptrs[2]).await.unwrap(), record(2));
    hub.restart("c");
    for n in nodes {
        n.close().await.unwrap();
    }
}

/// On a shared object store a node lists every node's WALs: the one
/// another member is writing stays, because that member says so.
#[cfg(feature = "cloud")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_cluster_members_keep_the_wals_they_write() {
    use object_store::ObjectStore;
    use protobase::backends::cloud::CloudBlockProvider;
    use protobase::transports::InProcessHub;

    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let hub = InProcessHub::new(2);
    let ids = ["a", "b", "c"];
    let staging = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for id in ids {
        let p = Arc::new(
            CloudBlockProvider::builder(store.clone(), staging.path().join(id))
                .object_size(4096)
                .build()
                .await
                .unwrap(),
        );
        let s = StorageBuilder::cloud(p.clone())
            .cluster(member(id, &ids))
            .with_network_manager(Arc::new(hub.node(id)))
            .max_wal_size(4096)
            .build()
            .await
            .unwrap();
        nodes.push((p, s));
    }
    let (pa, a) = &nodes[0];
    let ptrs = fill(a, 3).await;
    pa.flush_uploads().await.unwrap();
    let (pb, b) = &nodes[1];
    let theirs = b.push_bytes(&record(9)).await.unwrap();
    b.flush_wal().await.unwrap();
    pb.flush_uploads().await.unwrap();
    assert!(
        a.list_wals()
            .await
            .unwrap()
            .iter()
            .any(|w| w.id == theirs.wal_id)
    );

    let r = a.reclaim([], now()).await.unwrap();
    let gone: HashSet<WalId> = r.retired.iter().map(|w| w.wal).collect();
    assert_eq!(
        gone,
        HashSet::from([ptrs[0].wal_id, ptrs[1].wal_id]),
        "{r:?}"
    );
    let kept_by_b = r.kept.iter().find(|(w, _)| w.wal == theirs.wal_id);
    assert!(
        matches!(kept_by_b, Some((_, KeptBecause::Member(m))) if m.starts_with("b:")),
        "{r:?}"
    );
    b.set_root(theirs).await.unwrap();
    assert_eq!(a.get_bytes(theirs).await.unwrap(), record(9));
    assert_eq!(nodes[2].1.get_bytes(ptrs[2]).await.unwrap(), record(2));
    for (_, s) in nodes {
        s.close().await.unwrap();
    }
}
