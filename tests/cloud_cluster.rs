//! Cloud-cluster integration: three nodes over TCP on 127.0.0.1, each with
//! its own staging directory and cloud page cache, sharing one bucket on a
//! real S3-compatible server (moto, see `tests/support/moto.rs`):
//!
//! - a record written on node A is read on node B before A's uploader ran
//!   (A serves it from staging: no GET reaches the store), and after the
//!   upload with A stopped (from B's page cache, or from the store once);
//!   counting GETs shows peers' caches absorb repeated reads;
//! - concurrent commits from all nodes (majority grant + the store's root
//!   compare-and-swap, `Durability::Cloud`) form one linear history, which
//!   a fresh node reading only the bucket also sees;
//! - killing the grant holder mid-run loses no acknowledged commit.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use parking_lot::Mutex;
use protobase::backends::cloud::{CloudBlockProvider, Durability, s3_store};
use protobase::cluster::{ClusterConfig, bind_local_tcp_cluster};
use protobase::transports::TcpNetworkManager;
use protobase::{NetworkManager, RootRecord, Storage, StorageBuilder};
use tempfile::TempDir;
use tokio::task::JoinSet;

mod support;
use support::flaky_store::Flaky;
use support::history::{check_chain, publish_retrying};

const PSK: &str = "cloud-cluster integration test key";
const PATIENCE: Duration = Duration::from_secs(20);

fn base_config() -> ClusterConfig {
    ClusterConfig::default()
        .with_read_timeout_ms(1_000)
        .with_vote_timeout_ms(5_000)
        .with_retry_interval_ms(20)
        .with_max_retries(3)
        .with_lease_ms(1_000)
        .with_heartbeat_ms(50)
}

struct Node {
    staging: TempDir,
    network: Arc<TcpNetworkManager>,
    provider: Arc<CloudBlockProvider>,
    gets: Arc<Flaky>,
    storage: Option<Storage>,
}

impl Node {
    fn storage(&self) -> &Storage {
        self.storage.as_ref().expect("node is running")
    }
}

/// The bucket of the S3 tests under a fresh prefix, or `None` (loudly) when
/// S3 tests are disabled.
fn shared_store() -> Option<Arc<dyn ObjectStore>> {
    let endpoint = support::moto::server()?;
    let s3 = s3_store(support::moto::TEST_BUCKET, Some(&endpoint)).unwrap();
    let prefix = format!("cc-{}", uuid::Uuid::new_v4().simple());
    Some(Arc::new(PrefixStore::new(s3, prefix)))
}

async fn start(store: &Arc<dyn ObjectStore>, durability: Durability) -> Vec<Node> {
    let bound = bind_local_tcp_cluster(&["a", "b", "c"], PSK, &base_config()).unwrap();
    let mut nodes = Vec::new();
    for (config, network) in bound {
        let staging = TempDir::new().unwrap();
        let gets = Flaky::new(store.clone());
        let provider = Arc::new(
            CloudBlockProvider::builder(gets.clone(), staging.path())
                .prefix("space")
                .object_size(256 << 10)
                // Uploads only when asked (or when a Cloud commit waits).
                .upload_interval_ms(3_600_000)
                .durability(durability)
                .build()
                .await
                .unwrap(),
        );
        let storage = StorageBuilder::cloud(provider.clone())
            .cluster(config)
            .with_network_manager(network.clone())
            .page_size(64 << 10)
            .build()
            .await
            .unwrap();
        nodes.push(Node {
            staging,
            network,
            provider,
            gets,
            storage: Some(storage),
        });
    }
    nodes
}

/// Crashes a node: its network stops and its storage is dropped unclosed.
async fn kill(node: &mut Node) {
    node.network.stop().await.unwrap();
    node.storage = None;
}

fn total_gets(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .map(|n| n.gets.wal_gets.load(std::sync::atomic::Ordering::SeqCst))
        .sum()
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_come_from_the_writer_then_peer_caches_then_the_store() {
    let Some(store) = shared_store() else { return };
    let mut nodes = start(&store, Durability::Local).await;
    // r1 in the WAL's first page, which the filler completes (a page cached
    // while still short may have grown: only whole pages are served from a
    // cache); r2 in the last page.
    let (r1, filler, r2) = (data(1, 3000), data(9, 70_000), data(2, 5000));
    let a = nodes[0].storage().clone();
    let p1 = a.push_bytes(&r1).await.unwrap();
    a.push_bytes(&filler).await.unwrap();
    let p2 = a.push_bytes(&r2).await.unwrap();
    a.set_root(p2).await.unwrap(); // durable in A's staging, not uploaded
    assert!(nodes[0].provider.upload_backlog().slots > 0);

    // B reads before any upload: only A (its staging) can serve it.
    let b = nodes[1].storage().clone();
    assert_eq!(b.get_bytes(p1).await.unwrap().as_ref(), &r1[..]);
    assert_eq!(total_gets(&nodes), 0, "no GET: served by the writer");

    // Upload, then A stops.
    nodes[0].provider.flush_uploads().await.unwrap();
    assert_eq!(nodes[0].provider.upload_backlog().slots, 0);
    a.close().await.unwrap();
    kill(&mut nodes[0]).await;

    // C reads r1, whose page B has cached: still no GET.
    let c = nodes[2].storage().clone();
    assert_eq!(c.get_bytes(p1).await.unwrap().as_ref(), &r1[..]);
    assert_eq!(total_gets(&nodes), 0, "served by B's page cache");

    // r2's page nobody has: it comes from the store, once.
    assert_eq!(c.get_bytes(p2).await.unwrap().as_ref(), &r2[..]);
    let after_first = total_gets(&nodes);
    assert!(after_first >= 1, "the store served r2");
    for _ in 0..3 {
        assert_eq!(b.get_bytes(p2).await.unwrap().as_ref(), &r2[..]);
        assert_eq!(c.get_bytes(p2).await.unwrap().as_ref(), &r2[..]);
        assert_eq!(b.get_bytes(p1).await.unwrap().as_ref(), &r1[..]);
    }
    assert_eq!(
        total_gets(&nodes),
        after_first,
        "repeated reads absorbed by caches"
    );
    b.close().await.unwrap();
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_nobody_cached_comes_from_the_store_once() {
    let Some(store) = shared_store() else { return };
    let mut nodes = start(&store, Durability::Cloud).await;
    let rec = data(7, 2000);
    let a = nodes[0].storage().clone();
    let p = a.push_bytes(&rec).await.unwrap();
    a.set_root(p).await.unwrap(); // Cloud: uploaded when this returns
    a.close().await.unwrap();
    kill(&mut nodes[0]).await;
    let (b, c) = (nodes[1].storage().clone(), nodes[2].storage().clone());
    assert_eq!(b.get_bytes(p).await.unwrap().as_ref(), &rec[..]);
    let after_first = total_gets(&nodes);
    assert!(after_first >= 1, "nobody had it: the store served it");
    assert_eq!(c.get_bytes(p).await.unwrap().as_ref(), &rec[..]);
    assert_eq!(b.get_bytes(p).await.unwrap().as_ref(), &rec[..]);
    assert_eq!(total_gets(&nodes), after_first, "then B's cache served C");
    b.close().await.unwrap();
    c.close().await.unwrap();
}

/// Every node publishes concurrently; returns all acknowledged roots.
async fn publish_from_all(nodes: &[Node], per_node: u32) -> Vec<RootRecord> {
    let mut tasks = JoinSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let Some(s) = node.storage.clone() else {
            continue;
        };
        tasks.spawn(async move {
            let mut acked = Vec::new();
            for n in 0..per_node {
                acked.push(publish_retrying(&s, &format!("node-{i}"), n, 10).await.0);
            }
            acked
        });
    }
    let mut acked = Vec::new();
    while let Some(r) = tasks.join_next().await {
        acked.extend(r.unwrap());
    }
    acked
}

/// Waits until `s` reads a root at least as new as `root`.
async fn wait_for(s: &Storage, root: &RootRecord) -> RootRecord {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(r) = s.read_current_root().await.unwrap()
            && (r.term, r.sequence) >= (root.term, root.sequence)
        {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no convergence on {root:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A standalone cloud storage reading only the bucket.
async fn fresh_reader(store: &Arc<dyn ObjectStore>) -> (TempDir, Storage) {
    let dir = TempDir::new().unwrap();
    let p = CloudBlockProvider::builder(store.clone(), dir.path())
        .prefix("space")
        .object_size(256 << 10)
        .build()
        .await
        .unwrap();
    let s = StorageBuilder::cloud(Arc::new(p))
        .read_only(true)
        .build()
        .await
        .unwrap();
    (dir, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_from_all_nodes_form_one_history() {
    let Some(store) = shared_store() else { return };
    let nodes = start(&store, Durability::Cloud).await;
    let acked = publish_from_all(&nodes, 6).await;
    let newest = acked.iter().max_by_key(|r| (r.term, r.sequence)).unwrap();
    for n in &nodes {
        wait_for(n.storage(), newest).await;
    }
    let fin = nodes[1]
        .storage()
        .read_current_root()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        check_chain(nodes[1].storage(), &fin, &acked).await,
        acked.len()
    );
    // The bucket alone holds the same history.
    let (_dir, reader) = fresh_reader(&store).await;
    let from_store = reader.read_current_root().await.unwrap().unwrap();
    assert_eq!(
        (from_store.term, from_store.sequence),
        (fin.term, fin.sequence)
    );
    check_chain(&reader, &from_store, &acked).await;
    for n in &nodes {
        n.storage().close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_grant_holder_mid_commit_loses_nothing_acknowledged() {
    let Some(store) = shared_store() else { return };
    let mut nodes = start(&store, Durability::Cloud).await;
    // Node A commits in a loop, recording what was acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<RootRecord>::new()));
    let a = nodes[0].storage().clone();
    let log = acked.clone();
    let writer = tokio::spawn(async move {
        for n in 0.. {
            match support::history::publish(&a, "node-a", n).await {
                Ok(r) => log.lock().push(r),
                Err(_) => return, // killed
            }
        }
    });
    // Kill it once it has committed a few times, probably mid-commit.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while acked.lock().len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node A made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill(&mut nodes[0]).await;
    writer.abort();
    let _ = writer.await;
    let mut all = acked.lock().clone();
    // The survivors take over (A's lease expires) and keep committing.
    all.extend(publish_from_all(&nodes, 3).await);
    let fin = nodes[1]
        .storage()
        .read_current_root()
        .await
        .unwrap()
        .unwrap();
    check_chain(nodes[1].storage(), &fin, &all).await;
    let (_dir, reader) = fresh_reader(&store).await;
    let from_store = reader.read_current_root().await.unwrap().unwrap();
    check_chain(&reader, &from_store, &all).await;
    for n in nodes.iter().filter(|n| n.storage.is_some()) {
        n.storage().close().await.unwrap();
    }
    drop(nodes.remove(0).staging);
}
