//! Checkpoints (issue 15 item 5): a root pinned by name survives reclamation
//! and history pruning, and the space opens read-only at it (or at a
//! retained root) on every variant.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use protobase::backends::cloud::CloudBlockProvider;
use protobase::{
    AtomPointer, Error, KeptBecause, ReclaimOptions, RootRetention, Storage, StorageBuilder, WalId,
};

fn now() -> ReclaimOptions {
    ReclaimOptions::new().min_age(Duration::ZERO)
}

/// A record that fills a 4 KiB WAL: one WAL per record.
fn record(i: u8) -> Vec<u8> {
    vec![i; 5_000]
}

/// How to open one space again and again.
enum Space {
    Files(tempfile::TempDir),
    Memory(protobase::backends::memory::MemoryBlockProvider),
    Cloud(Arc<dyn ObjectStore>, tempfile::TempDir),
}

impl Space {
    async fn open(
        &self,
        read_only: bool,
        tune: impl FnOnce(StorageBuilder) -> StorageBuilder,
    ) -> protobase::Result<Storage> {
        let b = match self {
            Space::Files(d) => StorageBuilder::standalone(d.path()),
            Space::Memory(p) => StorageBuilder::new().with_block_provider(Arc::new(p.clone())),
            Space::Cloud(store, staging) => {
                let dir = staging
                    .path()
                    .join(uuid::Uuid::new_v4().simple().to_string());
                StorageBuilder::cloud(Arc::new(
                    CloudBlockProvider::builder(store.clone(), dir)
                        .object_size(4096)
                        .build()
                        .await?,
                ))
            }
        };
        tune(b.max_wal_size(4096).read_only(read_only))
            .build()
            .await
    }
}

async fn checkpoint_round(space: Space) {
    let s = space.open(false, |b| b).await.unwrap();
    let a = s.push_bytes(&record(1)).await.unwrap();
    let b = s.push_bytes(&record(2)).await.unwrap();
    let pinned = s.set_root(a).await.unwrap();
    assert!(matches!(
        s.checkpoint("bad/name").await,
        Err(Error::Invalid { .. })
    ));
    let cp = s.checkpoint("before").await.unwrap();
    assert_eq!(cp.root, pinned);
    assert!(matches!(
        s.checkpoint("before").await,
        Err(Error::CheckpointExists { .. })
    ));
    let c = s.push_bytes(&record(3)).await.unwrap();
    s.set_root(c).await.unwrap();
    s.flush_wal().await.unwrap();
    s.close().await.unwrap();

    let s = space.open(false, |b| b).await.unwrap();
    let cps = s.checkpoints().await.unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!((cps[0].name.as_str(), &cps[0].root), ("before", &pinned));
    // A walk that forgot the checkpoint is refused, and nothing goes.
    let forgot = s.reclaim([c.wal_id], now()).await;
    assert!(
        matches!(&forgot, Err(Error::Invalid { reason, .. }) if reason.contains("before")),
        "{forgot:?}"
    );
    assert_eq!(s.get_bytes(b).await.unwrap(), record(2));
    // With it: only what nothing reaches goes.
    let r = s.reclaim([c.wal_id, a.wal_id], now()).await.unwrap();
    let gone: HashSet<WalId> = r.retired.iter().map(|w| w.wal).collect();
    assert!(
        gone.contains(&b.wal_id) && !gone.contains(&a.wal_id),
        "{r:?}"
    );
    assert_eq!(s.get_bytes(a).await.unwrap(), record(1));
    // History pruning leaves the checkpoint whole.
    s.prune_roots(RootRetention::last(1)).await.unwrap();
    s.close().await.unwrap();

    // Time travel: read-only at the checkpoint.
    let at = space
        .open(true, |b| b.at_checkpoint("before"))
        .await
        .unwrap();
    assert_eq!(at.read_current_root().await.unwrap(), Some(pinned.clone()));
    assert_eq!(at.pinned_root(), Some(&pinned));
    assert_eq!(at.get_bytes(a).await.unwrap(), record(1));
    assert!(matches!(at.set_root(a).await, Err(Error::ReadOnly)));
    at.close().await.unwrap();
    let missing = space.open(true, |b| b.at_checkpoint("nope")).await;
    assert!(
        matches!(missing, Err(Error::CheckpointNotFound { .. })),
        "{missing:?}"
    );
    let writable = space.open(false, |b| b.at_checkpoint("before")).await;
    assert!(
        matches!(writable, Err(Error::Invalid { .. })),
        "{writable:?}"
    );
    // The current root, by sequence; a pruned one is not found.
    let at = space.open(true, |b| b.at_sequence(2)).await.unwrap();
    assert_eq!(at.read_current_root().await.unwrap().unwrap().pointer, c);
    at.close().await.unwrap();
    let pruned = space.open(true, |b| b.at_sequence(1)).await;
    assert!(matches!(pruned, Err(Error::Invalid { .. })), "{pruned:?}");

    // Removed: what only it reached may go.
    let s = space.open(false, |b| b).await.unwrap();
    s.remove_checkpoint("before").await.unwrap();
    assert!(matches!(
        s.remove_checkpoint("before").await,
        Err(Error::CheckpointNotFound { .. })
    ));
    let r = s.reclaim([c.wal_id], now()).await.unwrap();
    assert!(r.retired.iter().any(|w| w.wal == a.wal_id), "{r:?}");
    assert_eq!(s.get_bytes(c).await.unwrap(), record(3));
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files() {
    checkpoint_round(Space::Files(tempfile::tempdir().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    checkpoint_round(Space::Memory(
        protobase::backends::memory::MemoryBlockProvider::new(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud() {
    checkpoint_round(Space::Cloud(
        Arc::new(object_store::memory::InMemory::new()),
        tempfile::tempdir().unwrap(),
    ))
    .await;
}

fn member(id: &str, ids: &[&str]) -> protobase::cluster::ClusterConfig {
    use protobase::cluster::{ClusterConfig, PeerAddress};
    ClusterConfig::new(id)
        .with_servers(ids.iter().map(|p| PeerAddress::new(*p, format!("{p}:1"))))
        .with_read_timeout_ms(500)
        .with_heartbeat_ms(0)
}

/// In a cluster each node keeps the checkpoints taken through it; a member
/// reclaiming is told by the others which WALs their checkpoints pin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_members_keep_what_their_checkpoints_pin() {
    use protobase::transports::InProcessHub;
    let hub = InProcessHub::new(3);
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
    let a: AtomPointer = nodes[0].push_bytes(&record(1)).await.unwrap();
    nodes[0].set_root(a).await.unwrap();
    nodes[0].checkpoint("pin").await.unwrap();
    let b = nodes[0].push_bytes(&record(2)).await.unwrap();
    nodes[0].set_root(b).await.unwrap();
    nodes[0].flush_wal().await.unwrap();
    // Node b knows no checkpoint of its own; node a objects for its.
    assert!(nodes[1].checkpoints().await.unwrap().is_empty());
    let r = nodes[1].reclaim([b.wal_id], now()).await.unwrap();
    let kept = r.kept.iter().find(|(w, _)| w.wal == a.wal_id);
    // Node b holds no copy of a's WAL (memory stores per node) or keeps it.
    if let Some((_, why)) = kept {
        assert!(
            matches!(why, KeptBecause::Member(m) if m.contains("checkpoint")),
            "{r:?}"
        );
    }
    // Node a itself refuses a walk without its checkpoint, and keeps it with.
    assert!(nodes[0].reclaim([b.wal_id], now()).await.is_err());
    let r = nodes[0].reclaim([b.wal_id, a.wal_id], now()).await.unwrap();
    assert!(r.retired.iter().all(|w| w.wal != a.wal_id), "{r:?}");
    assert_eq!(nodes[2].get_bytes(a).await.unwrap(), record(1));
    for n in nodes {
        n.close().await.unwrap();
    }
}

/// On a shared object store every member sees every checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_cluster_members_share_checkpoints() {
    use protobase::transports::InProcessHub;
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let hub = InProcessHub::new(4);
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
    let first = a.push_bytes(&record(1)).await.unwrap();
    a.set_root(first).await.unwrap();
    a.checkpoint("shared").await.unwrap();
    let next = a.push_bytes(&record(2)).await.unwrap();
    a.set_root(next).await.unwrap();
    a.flush_wal().await.unwrap();
    pa.flush_uploads().await.unwrap();
    let (_, b) = &nodes[1];
    let seen = b.checkpoints().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].root.pointer, first);
    assert!(b.reclaim([next.wal_id], now()).await.is_err());
    let r = b.reclaim([next.wal_id, first.wal_id], now()).await.unwrap();
    assert!(r.retired.iter().all(|w| w.wal != first.wal_id), "{r:?}");
    assert_eq!(nodes[2].1.get_bytes(first).await.unwrap(), record(1));
    for (_, s) in nodes {
        s.close().await.unwrap();
    }
}
