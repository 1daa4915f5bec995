//! Every seam's conformance suite (`protobase::conformance`) run on every
//! implementation in the crate, and the storage suite on all four variants.
//! (The network suite runs in `tests/transport_conformance.rs`.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use protobase::backends::cloud::{CloudBlockProvider, CloudPageCache};
use protobase::backends::fs::FileBlockProvider;
use protobase::backends::memory::MemoryBlockProvider;
use protobase::clock::{SeededRng, TokioClock};
use protobase::cluster::{
    Acceptor, ClusterConfig, ClusterHandler, MemoryAcceptorStore, QuorumLock, QuorumRegister,
};
use protobase::conformance::{page_cache, root_register, storage, vote, wal_store};
use protobase::sim::SimDisk;
use protobase::transports::InProcessHub;
use protobase::{
    MemoryPageCache, NetworkManager, RootRegister, SingleNodeVote, Storage, StorageBuilder,
};
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// WAL stores

#[tokio::test]
async fn wal_store_memory() {
    wal_store::run_all(&MemoryBlockProvider::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_store_files() {
    let dir = TempDir::new().unwrap();
    wal_store::run_all(&FileBlockProvider::open(dir.path()).unwrap()).await;
}

#[tokio::test(start_paused = true)]
async fn wal_store_simulated_disk() {
    wal_store::run_all(&*SimDisk::new(1).mount()).await;
}

async fn cloud_provider(store: Arc<dyn ObjectStore>, staging: &TempDir) -> CloudBlockProvider {
    CloudBlockProvider::builder(store, staging.path())
        .object_size(4096)
        .upload_interval_ms(20)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_store_cloud_memory() {
    let staging = TempDir::new().unwrap();
    let p = cloud_provider(Arc::new(InMemory::new()), &staging).await;
    wal_store::run_all(&p).await;
    // And read back by a second provider from the store alone.
    p.flush_uploads().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_store_cloud_local_directory() {
    let (dir, staging) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    wal_store::run_all(&cloud_provider(store, &staging).await).await;
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_store_cloud_s3() {
    let Some(store) = s3_store() else { return };
    let staging = TempDir::new().unwrap();
    wal_store::run_all(&cloud_provider(store, &staging).await).await;
}

/// A fresh prefix of the S3 test bucket (moto, started by the tests);
/// `None` (loudly) when `PROTOBASE_SKIP_S3=1`.
#[cfg(feature = "s3")]
fn s3_store() -> Option<Arc<dyn ObjectStore>> {
    let endpoint = support::moto::server()?;
    let store =
        protobase::backends::cloud::s3_store(support::moto::TEST_BUCKET, Some(&endpoint)).unwrap();
    let prefix = format!("conf-{}", uuid::Uuid::new_v4().simple());
    Some(Arc::new(object_store::prefix::PrefixStore::new(
        store, prefix,
    )))
}

// ---------------------------------------------------------------------------
// Root registers

#[tokio::test]
async fn root_register_memory() {
    let fresh = || MemoryBlockProvider::new();
    root_register::compare_and_swap(&fresh()).await;
    root_register::carrying_is_a_write_or_nothing(&fresh()).await;
    root_register::only_newer_roots(&fresh()).await;
    root_register::pruned_history(&fresh()).await;
    let shared = fresh();
    root_register::racing_writers_have_one_winner(|| {
        std::future::ready(Arc::new(shared.clone()) as Arc<dyn RootRegister>)
    })
    .await;
    let shared = fresh();
    root_register::local_lock_excludes(
        || std::future::ready(Arc::new(shared.clone()) as Arc<dyn RootRegister>),
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_register_files() {
    let fresh = || {
        let d = TempDir::new().unwrap();
        let p = FileBlockProvider::open(d.path()).unwrap();
        (d, p)
    };
    let (_d1, p) = fresh();
    root_register::compare_and_swap(&p).await;
    root_register::carrying_is_a_write_or_nothing(&p).await;
    let (_d2, p) = fresh();
    root_register::only_newer_roots(&p).await;
    let (_d3, p) = fresh();
    root_register::pruned_history(&p).await;
    // Handles on one directory are like processes: each takes the lock
    // before writing, as the engine does.
    let dir = TempDir::new().unwrap();
    let path = dir.path().to_path_buf();
    let open = move || Arc::new(FileBlockProvider::open(&path).unwrap()) as Arc<dyn RootRegister>;
    root_register::local_lock_excludes(|| std::future::ready(open()), true).await;
}

#[tokio::test(start_paused = true)]
async fn root_register_simulated_disk() {
    root_register::compare_and_swap(&*SimDisk::new(2).mount()).await;
    root_register::carrying_is_a_write_or_nothing(&*SimDisk::new(7).mount()).await;
    root_register::only_newer_roots(&*SimDisk::new(3).mount()).await;
    root_register::pruned_history(&*SimDisk::new(6).mount()).await;
    let disk = SimDisk::new(4);
    root_register::racing_writers_have_one_winner(|| {
        std::future::ready(disk.mount() as Arc<dyn RootRegister>)
    })
    .await;
    let disk = SimDisk::new(5);
    root_register::local_lock_excludes(
        || std::future::ready(disk.mount() as Arc<dyn RootRegister>),
        true,
    )
    .await;
}

async fn cloud_registers(store: impl Fn() -> Arc<dyn ObjectStore>) {
    let keep = TempDir::new().unwrap();
    let s = store();
    let p = cloud_provider(s.clone(), &keep).await;
    root_register::compare_and_swap(&p).await;
    root_register::carrying_is_a_write_or_nothing(&p).await;
    let keep2 = TempDir::new().unwrap();
    root_register::only_newer_roots(&cloud_provider(store(), &keep2).await).await;
    let keep3 = TempDir::new().unwrap();
    root_register::pruned_history(&cloud_provider(store(), &keep3).await).await;
    // Two providers on one store race (separate staging areas).
    let shared = store();
    let dirs = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let open = || {
        let (shared, dirs) = (shared.clone(), dirs.clone());
        async move {
            let staging = TempDir::new().unwrap();
            let p = cloud_provider(shared, &staging).await;
            dirs.lock().push(staging);
            Arc::new(p) as Arc<dyn RootRegister>
        }
    };
    root_register::racing_writers_have_one_winner(open).await;
    root_register::local_lock_excludes(open, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_register_cloud_memory() {
    cloud_registers(|| Arc::new(InMemory::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_register_cloud_local_directory() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().to_path_buf();
    // One directory per register, but one for the racing providers.
    cloud_registers(move || {
        let sub = path.join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(&sub).unwrap();
        Arc::new(LocalFileSystem::new_with_prefix(&sub).unwrap())
    })
    .await;
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_register_cloud_s3() {
    if s3_store().is_none() {
        return;
    }
    cloud_registers(|| s3_store().expect("moto")).await;
}

// ---------------------------------------------------------------------------
// Page caches

#[tokio::test]
async fn page_cache_memory() {
    page_cache::get_insert_remove(&MemoryPageCache::new(1 << 20, 4096), 4096).await;
    page_cache::stays_within_budget(&MemoryPageCache::new(64 << 10, 4096), 4096).await;
    page_cache::disabled_when_empty(&MemoryPageCache::new(0, 4096)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_cache_cloud_disk() {
    let dir = TempDir::new().unwrap();
    let c = CloudPageCache::open(dir.path().join("a"), 1 << 20, 64 << 10, 4096)
        .await
        .unwrap();
    page_cache::get_insert_remove(&c, 4096).await;
    let c = CloudPageCache::open(dir.path().join("b"), 64 << 10, 16 << 10, 4096)
        .await
        .unwrap();
    page_cache::stays_within_budget(&c, 4096).await;
}

// ---------------------------------------------------------------------------
// Vote strategies and the quorum

#[tokio::test]
async fn vote_single_node() {
    vote::acquire_release(&SingleNodeVote::new("solo")).await;
    vote::terms_fence_each_other(&SingleNodeVote::new("a"), &SingleNodeVote::new("b")).await;
}

fn member(id: &str, ids: &[&str]) -> ClusterConfig {
    ClusterConfig::new(id)
        .with_servers(ids.iter().map(|p| (p.to_string(), format!("{p}:1"))))
        .with_read_timeout_ms(100)
        .with_vote_timeout_ms(2_000)
        .with_retry_interval_ms(10)
        .with_lease_ms(300)
        .with_heartbeat_ms(0)
}

async fn quorum_nodes(hub: &InProcessHub, ids: &[&str]) -> Vec<Arc<QuorumRegister>> {
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let acceptor = Acceptor::open(
            id.to_string(),
            Arc::new(MemoryAcceptorStore::default()),
            Duration::from_millis(300),
            Arc::new(TokioClock),
        )
        .await
        .unwrap();
        let net: Arc<dyn NetworkManager> = Arc::new(hub.node(*id));
        net.start(Arc::new(ClusterHandler::new(
            acceptor.clone(),
            Arc::new(MemoryBlockProvider::new()),
        )))
        .await
        .unwrap();
        out.push(Arc::new(QuorumRegister::new(
            member(id, ids),
            acceptor,
            net,
            Arc::new(TokioClock),
            SeededRng::new(i as u64 + 1),
        )));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn vote_quorum() {
    let hub = InProcessHub::new(7);
    let nodes = quorum_nodes(&hub, &["a", "b", "c"]).await;
    vote::acquire_release(&*nodes[0]).await;
    vote::terms_fence_each_other(&*nodes[0], &*nodes[1]).await;
    vote::acquire_release(&QuorumLock(nodes[2].clone())).await;
}

/// The quorum as a register: a holder's write is read on every node, the
/// next holder starts from it, and the previous holder is fenced.
#[tokio::test(start_paused = true)]
async fn quorum_register_round_trip() {
    use protobase::{AtomPointer, RootRecord, VoteStrategy, WalId};
    let hub = InProcessHub::new(8);
    let nodes = quorum_nodes(&hub, &["a", "b", "c"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let ga = a.acquire().await.unwrap();
    assert_eq!(ga.established_root, Some(None));
    let r1 = RootRecord::new(AtomPointer::new(WalId::new_random(), 32), 1, ga.term, None);
    let v1 = a.write_root(&r1, None).await.unwrap();
    for n in &nodes {
        assert_eq!(
            n.read_root().await.unwrap().map(|v| v.root),
            Some(r1.clone())
        );
    }
    a.release(&ga).await.unwrap();
    let gb = b.acquire().await.unwrap();
    assert!(gb.term > ga.term);
    assert_eq!(
        gb.established_root.clone().flatten().map(|v| v.root),
        Some(r1.clone())
    );
    // a no longer holds a grant; a stale holder's accept is refused anyway.
    let r2 = RootRecord::new(r1.pointer, 2, ga.term, None);
    assert!(a.write_root(&r2, Some(v1)).await.is_err());
    b.release(&gb).await.unwrap();
}

// ---------------------------------------------------------------------------
// The storage suite on every variant

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_standalone_files() {
    let dir = TempDir::new().unwrap();
    storage::run_all(&Storage::open(dir.path()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_standalone_memory() {
    let s = StorageBuilder::in_memory()
        .blob_max_size(1 << 20)
        .build()
        .await
        .unwrap();
    storage::run_all(&s).await;
}

async fn cluster_members(
    hub: &InProcessHub,
    ids: &[&str],
    base: impl Fn(&str) -> StorageBuilder,
) -> Vec<Storage> {
    let mut out = Vec::new();
    for id in ids {
        out.push(
            base(id)
                .cluster(member(id, ids))
                .with_network_manager(Arc::new(hub.node(*id)))
                .with_acceptor_store(Arc::new(MemoryAcceptorStore::default()))
                .build()
                .await
                .unwrap(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_cluster() {
    let hub = InProcessHub::new(9);
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let paths: Vec<_> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
    let ids = ["a", "b", "c"];
    let nodes = cluster_members(&hub, &ids, |id| {
        let i = ids.iter().position(|x| *x == id).unwrap();
        StorageBuilder::standalone(&paths[i])
    })
    .await;
    storage::run_all(&nodes[0]).await;
    for n in &nodes[1..] {
        n.close().await.unwrap();
    }
}

async fn cloud_storage(store: Arc<dyn ObjectStore>, staging: &TempDir) -> Storage {
    StorageBuilder::cloud(Arc::new(cloud_provider(store, staging).await))
        .blob_max_size(1 << 20)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_cloud_memory() {
    let staging = TempDir::new().unwrap();
    storage::run_all(&cloud_storage(Arc::new(InMemory::new()), &staging).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_cloud_local_directory() {
    let (dir, staging) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    storage::run_all(&cloud_storage(store, &staging).await).await;
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_cloud_s3() {
    let Some(store) = s3_store() else { return };
    let staging = TempDir::new().unwrap();
    storage::run_all(&cloud_storage(store, &staging).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_cloud_cluster() {
    let hub = InProcessHub::new(10);
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let stagings: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let ids = ["a", "b", "c"];
    let mut providers = Vec::new();
    for s in &stagings {
        providers.push(Arc::new(cloud_provider(store.clone(), s).await));
    }
    let nodes = cluster_members(&hub, &ids, |id| {
        let i = ids.iter().position(|x| *x == id).unwrap();
        StorageBuilder::cloud(providers[i].clone())
    })
    .await;
    storage::run_all(&nodes[0]).await;
    for n in &nodes[1..] {
        n.close().await.unwrap();
    }
}
