//! Each defect of the root-safety issue, reproduced through the public API
//! exactly as it was reported; every test failed before its fix.

#[path = "support/history.rs"]
mod history;
#[path = "support/members.rs"]
mod members;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use protobase::backends::fs::FileBlockProvider;
use protobase::backends::memory::MemoryBlockProvider;
use protobase::cluster::{
    AcceptorState, AcceptorStore, ClusterConfig, MemoryAcceptorStore, PeerAddress,
};
use protobase::protocol::Message;
use protobase::transports::InProcessHub;
use protobase::{
    Error, NetworkManager, NewWal, Result, RootLock, RootRecord, RootRegister, RootVersion,
    Storage, StorageBuilder, VersionedRoot, WalId, WalInfo, WalStore,
};

// ---------------------------------------------------------------------------
// Defect 1: a cancelled publish wedged the space.

/// A file space whose root writes take 20 ms.
#[derive(Debug)]
struct SlowRoot(FileBlockProvider);

#[async_trait]
impl WalStore for SlowRoot {
    async fn create_wal(&self) -> Result<NewWal> {
        self.0.create_wal().await
    }
    async fn append(&self, wal: WalId, offset: u64, data: Bytes) -> Result<()> {
        self.0.append(wal, offset, data).await
    }
    async fn sync(&self, wal: WalId, upto: u64) -> Result<()> {
        self.0.sync(wal, upto).await
    }
    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes> {
        self.0.read(wal, offset, len).await
    }
    async fn list_wals(&self) -> Result<Vec<WalInfo>> {
        self.0.list_wals().await
    }
    async fn close_wal(&self, wal: WalId) -> Result<()> {
        self.0.close_wal(wal).await
    }
    async fn read_config(&self) -> Result<Option<Bytes>> {
        self.0.read_config().await
    }
    async fn close(&self) -> Result<()> {
        WalStore::close(&self.0).await
    }
}

#[async_trait]
impl RootRegister for SlowRoot {
    async fn read_root(&self) -> Result<Option<VersionedRoot>> {
        self.0.read_root().await
    }
    async fn write_root(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
    ) -> Result<RootVersion> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.0.write_root(root, expected).await
    }
    async fn lock_root(&self) -> Result<RootLock> {
        self.0.lock_root().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_publish_releases_the_space() {
    let dir = tempfile::tempdir().unwrap();
    let slow = Arc::new(SlowRoot(FileBlockProvider::open(dir.path()).unwrap()));
    let storage = StorageBuilder::new()
        .with_block_provider(slow)
        .build()
        .await
        .unwrap();
    let p = storage.push_bytes(b"first").await.unwrap();
    // The caller gives up while the durable root write is under way.
    let cancelled = tokio::time::timeout(Duration::from_millis(5), storage.set_root(p)).await;
    assert!(cancelled.is_err(), "the root write takes 20 ms");
    // The same storage publishes...
    let p2 = storage.push_bytes(b"second").await.unwrap();
    let r2 = storage.set_root(p2).await.unwrap();
    // ...and the cancelled root was finished on its own (r2 builds on it).
    assert_eq!(r2.sequence, 2);
    // A second storage on the directory gets the root lock. (The timeout
    // only turns the old hang into a failure.)
    let other = Storage::open(dir.path()).await.unwrap();
    let p3 = other.push_bytes(b"third").await.unwrap();
    let r3 = tokio::time::timeout(Duration::from_secs(20), other.set_root(p3))
        .await
        .expect("the second storage never got the root lock")
        .unwrap();
    assert_eq!(r3.sequence, 3);
    other.close().await.unwrap();
    storage.close().await.unwrap();
}

/// Cancelling at every await point of an update leaves nothing held: a
/// sweep of cancellation delays over begin / publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_cancelled_anywhere_hold_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let slow = Arc::new(SlowRoot(FileBlockProvider::open(dir.path()).unwrap()));
    let storage = StorageBuilder::new()
        .with_block_provider(slow)
        .build()
        .await
        .unwrap();
    let p = storage.push_bytes(b"x").await.unwrap();
    for micros in [0u64, 10, 100, 1_000, 5_000, 15_000, 25_000] {
        let _ = tokio::time::timeout(Duration::from_micros(micros), async {
            let u = storage.begin_root_update().await?;
            u.publish(p).await
        })
        .await;
    }
    let other = Storage::open(dir.path()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), other.set_root(p))
        .await
        .expect("a cancelled update kept the root lock")
        .unwrap();
    other.close().await.unwrap();
    storage.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// Defect 3: a failed fsync was forgotten.

/// A memory space whose next sync fails with EIO after the kernel dropped
/// every unsynced page.
#[derive(Debug)]
struct FailingSync {
    inner: MemoryBlockProvider,
    fail_next: AtomicBool,
}

#[async_trait]
impl WalStore for FailingSync {
    async fn create_wal(&self) -> Result<NewWal> {
        self.inner.create_wal().await
    }
    async fn append(&self, wal: WalId, offset: u64, data: Bytes) -> Result<()> {
        self.inner.append(wal, offset, data).await
    }
    async fn sync(&self, wal: WalId, upto: u64) -> Result<()> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            self.inner.drop_unsynced();
            return Err(Error::io(
                format!("syncing WAL {wal}"),
                std::io::Error::from_raw_os_error(5),
            ));
        }
        self.inner.sync(wal, upto).await
    }
    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes> {
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
}

#[async_trait]
impl RootRegister for FailingSync {
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

#[tokio::test]
async fn a_root_is_never_acknowledged_over_bytes_a_failed_fsync_dropped() {
    let disk = MemoryBlockProvider::new();
    let provider = Arc::new(FailingSync {
        inner: disk.clone(),
        fail_next: AtomicBool::new(true),
    });
    let storage = StorageBuilder::new()
        .with_block_provider(provider)
        .build()
        .await
        .unwrap();
    let p = storage.push_bytes(b"survives EIO").await.unwrap();
    let err = storage.set_root(p).await.unwrap_err();
    assert_eq!(err.kind(), protobase::ErrorKind::Unavailable, "{err}");
    // The retry succeeds: the bytes were written again before its sync.
    let root = storage.set_root(p).await.unwrap();
    // Power loss: only synced bytes remain.
    let after = StorageBuilder::new()
        .with_block_provider(Arc::new(disk.simulate_crash()))
        .build()
        .await
        .unwrap();
    assert_eq!(after.read_current_root().await.unwrap(), Some(root));
    assert_eq!(&after.get_bytes(p).await.unwrap()[..], b"survives EIO");
    after.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// Cluster defects on the in-process transport.

fn member_config(id: &str, ids: &[&str], lease_ms: u64) -> ClusterConfig {
    ClusterConfig::new(id)
        .with_servers(ids.iter().map(|p| PeerAddress::new(*p, format!("{p}:1"))))
        // Requests wait long enough for a slow acceptor (1 s writes).
        .with_read_timeout_ms(3_000)
        .with_vote_timeout_ms(10_000)
        .with_retry_interval_ms(20)
        .with_lease_ms(lease_ms)
        .with_heartbeat_ms(0)
}

async fn member(
    hub: &InProcessHub,
    id: &str,
    ids: &[&str],
    lease_ms: u64,
    acceptor: Arc<dyn AcceptorStore>,
) -> Storage {
    members::in_memory_member(hub, member_config(id, ids, lease_ms), acceptor).await
}

/// An acceptor store whose saves take `delay` once armed.
#[derive(Debug, Default)]
struct SlowAcceptorStore {
    inner: MemoryAcceptorStore,
    slow: AtomicBool,
}

#[async_trait]
impl AcceptorStore for SlowAcceptorStore {
    async fn load(&self) -> Result<AcceptorState> {
        self.inner.load().await
    }
    async fn save(&self, state: &AcceptorState) -> Result<()> {
        if self.slow.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.inner.save(state).await
    }
}

/// Defect 4, as reported: nodes a, b, x; the a–b link cut, x reaching both;
/// x's durable writes take 1 s; leases 300 ms. a publishes R1 (acknowledged
/// by a and x); while x is still writing it, a's lease expires and b asks x
/// for a promise. x must report R1 (promise and accept are decided under one
/// lock, durably), so b builds on R1 and R1 stays in the history.
#[tokio::test(start_paused = true)]
async fn promise_and_accept_are_one_decision() {
    let hub = InProcessHub::new(4);
    let ids = ["a", "b", "x"];
    let slow = Arc::new(SlowAcceptorStore::default());
    let a = member(
        &hub,
        "a",
        &ids,
        300,
        Arc::new(MemoryAcceptorStore::default()),
    )
    .await;
    let b = member(
        &hub,
        "b",
        &ids,
        300,
        Arc::new(MemoryAcceptorStore::default()),
    )
    .await;
    let x = member(&hub, "x", &ids, 300, slow.clone()).await;
    hub.cut("a", "b");
    slow.slow.store(true, Ordering::SeqCst);
    let ta = tokio::spawn({
        let a = a.clone();
        async move { history::publish(&a, "a", 1).await }
    });
    // a's lease ends while x is still storing R1; then b publishes.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let tb = tokio::spawn({
        let b = b.clone();
        async move { history::publish(&b, "b", 1).await }
    });
    let r1 = ta.await.unwrap().expect("R1 acknowledged by a and x");
    let r2 = tb.await.unwrap().expect("R2 acknowledged by b and x");
    hub.heal();
    slow.slow.store(false, Ordering::SeqCst);
    assert!(r2.is_newer_than(&r1));
    let fin = x.read_current_root().await.unwrap().unwrap();
    assert_eq!(fin, r2);
    // R1 is on the chain the final root reaches.
    assert_eq!(history::check_chain(&x, &fin, &[r1, r2]).await, 2);
    for s in [a, b, x] {
        s.close().await.unwrap();
    }
}

/// Defect 5: a root the holder stored locally, but that no majority
/// accepted, was returned by reads (and later vanished). Reads are now
/// quorum reads: they never return it.
#[tokio::test(start_paused = true)]
async fn reads_never_return_a_root_no_majority_accepted() {
    let hub = InProcessHub::new(5);
    let ids = ["a", "b", "c"];
    let mut nodes = Vec::new();
    for id in ids {
        nodes.push(
            member(
                &hub,
                id,
                &ids,
                300,
                Arc::new(MemoryAcceptorStore::default()),
            )
            .await,
        );
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let p = a.push_bytes(b"never acknowledged").await.unwrap();
    // a holds the grant, then loses its peers before publishing.
    let update = a.begin_root_update().await.unwrap();
    hub.partition(&[&["a"], &["b", "c"]]);
    let err = update.publish(p).await.unwrap_err();
    // Its peers are gone (not fenced): no majority stored it in time.
    assert_eq!(err.kind(), protobase::ErrorKind::Unavailable, "{err}");
    // a's acceptor holds the root, but a read on a cannot claim it.
    match a.read_current_root().await {
        Ok(r) => assert_eq!(r, None, "a returned a root no majority accepted"),
        Err(e) => assert_eq!(e.kind(), protobase::ErrorKind::Unavailable, "{e}"),
    }
    assert_eq!(b.read_current_root().await.unwrap(), None);
    // The majority side moves on; after healing, every node agrees.
    let q = b.push_bytes(b"acknowledged").await.unwrap();
    let r = b.set_root(q).await.unwrap();
    hub.heal();
    for n in &nodes {
        assert_eq!(n.read_current_root().await.unwrap(), Some(r.clone()));
    }
    for n in nodes {
        n.close().await.unwrap();
    }
}

/// Defect 2 at the storage level: a member's prepare with a huge term and an
/// unbounded lease blocks the others for at most the voters' own lease.
#[tokio::test(start_paused = true)]
async fn a_hostile_member_cannot_wedge_the_cluster() {
    let hub = InProcessHub::new(6);
    let ids = ["a", "b", "m"];
    let a = member(
        &hub,
        "a",
        &ids,
        300,
        Arc::new(MemoryAcceptorStore::default()),
    )
    .await;
    let b = member(
        &hub,
        "b",
        &ids,
        300,
        Arc::new(MemoryAcceptorStore::default()),
    )
    .await;
    let m = hub.node("m");
    for target in ["a", "b"] {
        for term in [u64::MAX - 1, 1 << 31] {
            let _ = m
                .request(
                    &target.to_string(),
                    Message::Prepare {
                        term,
                        lease_ms: u64::MAX,
                    },
                    Duration::from_millis(100),
                )
                .await;
        }
    }
    let started = tokio::time::Instant::now();
    let mut roots = Vec::new();
    for n in 0..3u32 {
        roots.push(history::publish(&a, "a", n).await.unwrap());
    }
    assert!(
        started.elapsed() < Duration::from_millis(300 + 1_000),
        "honest publishes waited {:?}",
        started.elapsed()
    );
    let fin = b.read_current_root().await.unwrap().unwrap();
    assert_eq!(history::check_chain(&b, &fin, &roots).await, 3);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// Defect 6 (one of the smaller ones): a standalone writer on a bucket last
// written by a cluster.

#[cfg(feature = "cloud")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_writer_continues_a_space_a_cluster_wrote() {
    use protobase::AtomPointer;
    use protobase::backends::cloud::CloudBlockProvider;
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let staging = tempfile::tempdir().unwrap();
    let provider = Arc::new(
        CloudBlockProvider::builder(store.clone(), staging.path())
            .build()
            .await
            .unwrap(),
    );
    // The last root came from a cluster grant of term 7.
    let clustered = RootRecord::new(
        AtomPointer::new(WalId::new_random(), 32),
        41,
        7,
        Some("node-2".into()),
    );
    provider.write_root(&clustered, None).await.unwrap();
    let storage = StorageBuilder::cloud(provider).build().await.unwrap();
    let p = storage.push_bytes(b"standalone now").await.unwrap();
    let r = storage.set_root(p).await.unwrap();
    assert_eq!((r.sequence, r.term), (42, 7), "continues the root's order");
    assert!(r.is_newer_than(&clustered));
    storage.close().await.unwrap();
}
