//! Metrics recorded by a test recorder (`metrics-util`'s debugging
//! recorder, installed for this test binary) for a push / commit / get
//! workload on each of the four variants: the counts match the work.
//!
//! One recorder serves the whole binary, so the tests take turns (a
//! mutex) and read deltas: a snapshot drains what was recorded before.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use protobase::backends::cloud::{CloudBlockProvider, Durability};
use protobase::cluster::{ClusterConfig, MemoryAcceptorStore};
use protobase::transports::InProcessHub;
use protobase::{AtomPointer, Storage, StorageBuilder};

/// What a workload recorded: `name{label=value,...}` -> value (counters:
/// the sum; histograms: the number of samples; gauges: the last value).
#[derive(Debug, Default)]
struct Recorded(HashMap<String, (u64, f64)>);

impl Recorded {
    /// Counter total / histogram count of `name` whose labels include all
    /// of `labels`.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels).map(|(c, _)| c).sum()
    }

    /// Histogram sum of `name` with `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|(_, s)| s).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (u64, f64)> + 'a {
        self.0.iter().filter_map(move |(k, v)| {
            let (n, rest) = k.split_once('{').unwrap_or((k, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(l, val)| rest.contains(&format!("{l}={val}"))))
            .then_some(*v)
        })
    }
}

fn snapshotter() -> &'static Snapshotter {
    static SNAP: OnceLock<Snapshotter> = OnceLock::new();
    SNAP.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snap
    })
}

/// One test at a time; what was recorded before is drained.
async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let guard = TURN.lock().await;
    snapshotter().snapshot();
    guard
}

fn recorded() -> Recorded {
    let mut out = Recorded::default();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let v = match value {
            DebugValue::Counter(c) => (c, c as f64),
            DebugValue::Gauge(g) => (1, g.into_inner()),
            DebugValue::Histogram(h) => (h.len() as u64, h.iter().map(|x| x.into_inner()).sum()),
        };
        let e = out.0.entry(name).or_default();
        e.0 += v.0;
        e.1 += v.1;
    }
    out
}

const PUSHES: usize = 6;
const COMMITS: usize = 3;
const SIZE: usize = 100;

/// Pushes, commits and reads back on `s`; returns the pointers.
async fn workload(s: &Storage) -> Vec<AtomPointer> {
    let mut ptrs = Vec::new();
    for i in 0..PUSHES {
        ptrs.push(s.push_bytes(&[i as u8 + 1; SIZE]).await.unwrap());
    }
    for p in ptrs.iter().take(COMMITS) {
        s.set_root(*p).await.unwrap();
    }
    for p in &ptrs {
        assert_eq!(s.get_bytes(*p).await.unwrap().len(), SIZE);
    }
    // An error path: an empty push is refused (and counted).
    assert!(s.push_bytes(b"").await.is_err());
    ptrs
}

/// The counts every variant shares.
fn check_engine(r: &Recorded) {
    let n = PUSHES as u64;
    assert_eq!(r.count("protobase_push_seconds", &[]), n + 1, "{r:#?}");
    assert_eq!(r.count("protobase_push_bytes_total", &[]), n * SIZE as u64);
    assert_eq!(r.count("protobase_get_seconds", &[]), n);
    assert_eq!(r.count("protobase_get_bytes_total", &[]), n * SIZE as u64);
    let c = COMMITS as u64;
    assert_eq!(r.count("protobase_commits_total", &[("outcome", "ok")]), c);
    assert_eq!(
        r.count("protobase_commits_total", &[("outcome", "error")]),
        0
    );
    assert_eq!(r.count("protobase_commit_seconds", &[]), c);
    // Serial commits: every root write covers exactly one root.
    assert_eq!(r.count("protobase_commit_batch_size", &[]), c);
    assert_eq!(r.sum("protobase_commit_batch_size", &[]), c as f64);
    assert_eq!(
        r.count(
            "protobase_errors_total",
            &[("op", "push"), ("kind", "invalid")]
        ),
        1
    );
    assert_eq!(r.count("protobase_errors_total", &[]), 1, "{r:#?}");
    // Each commit makes the pushed bytes durable: at least one barrier.
    let syncs = r.count("protobase_wal_syncs_total", &[]);
    assert!((1..=c).contains(&syncs), "{syncs} syncs: {r:#?}");
    assert_eq!(r.count("protobase_wal_sync_seconds", &[]), syncs);
    assert!(r.count("protobase_wal_bytes_written_total", &[]) >= n * SIZE as u64);
    assert!(r.count("protobase_grants_total", &[]) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_counts_match_the_work() {
    let _turn = turn().await;
    let dir = tempfile::tempdir().unwrap();
    let s = StorageBuilder::standalone(dir.path())
        .build()
        .await
        .unwrap();
    workload(&s).await;
    s.close().await.unwrap();
    let r = recorded();
    check_engine(&r);
    // The commits made every record durable without a WAL sync: the root's
    // log record carried them (see `backends/carried_wal.rs`), so the
    // writer keeps them in memory until a sync, and every read was served
    // from there, none through the page cache.
    let hits = r.count("protobase_cache_hits_total", &[("tier", "memory")]);
    let misses = r.count("protobase_cache_misses_total", &[("tier", "memory")]);
    assert_eq!(hits + misses, 0, "{r:#?}");
    // Reopened: reads go to the disk through the page cache (one page).
    let s = StorageBuilder::standalone(dir.path())
        .build()
        .await
        .unwrap();
    let root = s.read_current_root().await.unwrap().unwrap();
    recorded();
    for _ in 0..4 {
        s.get_bytes(root.pointer).await.unwrap();
    }
    let r = recorded();
    // This process continues the WAL (see `wal_resume`), so it knows its
    // layout without reading the header's page: one miss, the first read
    // of the page; the next three reads hit.
    assert_eq!(
        r.count("protobase_cache_misses_total", &[("tier", "memory")]),
        1,
        "{r:#?}"
    );
    assert_eq!(
        r.count("protobase_cache_hits_total", &[("tier", "memory")]),
        3
    );
    assert!(r.count("protobase_wal_bytes_read_total", &[("tier", "local")]) > 0);
    s.close().await.unwrap();
}

fn members(ids: &[&str]) -> Vec<(String, String)> {
    ids.iter()
        .map(|i| (i.to_string(), format!("{i}:1")))
        .collect()
}

async fn node(hub: &InProcessHub, id: &str, ids: &[&str], base: StorageBuilder) -> Storage {
    base.cluster(
        ClusterConfig::new(id)
            .with_servers(members(ids))
            .with_heartbeat_ms(0)
            .with_retry_interval_ms(10),
    )
    .with_network_manager(Arc::new(hub.node(id)))
    .with_acceptor_store(Arc::new(MemoryAcceptorStore::default()))
    .build()
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_counts_match_the_work() {
    let _turn = turn().await;
    let hub = InProcessHub::new(11);
    let ids = ["a", "b", "c"];
    let mut nodes = Vec::new();
    for id in ids {
        nodes.push(node(&hub, id, &ids, StorageBuilder::in_memory()).await);
    }
    let ptrs = workload(&nodes[0]).await;
    let r = recorded();
    check_engine(&r);
    // Accept rounds: one per commit (every root write) at least.
    assert!(
        r.count(
            "protobase_vote_round_seconds",
            &[("phase", "accept"), ("outcome", "ok")]
        ) >= COMMITS as u64,
        "{r:#?}"
    );
    assert!(
        r.count(
            "protobase_vote_round_seconds",
            &[("phase", "prepare"), ("outcome", "ok")]
        ) >= 1
    );
    // b reads a's atoms: from its peers, one piece per page.
    for p in &ptrs {
        assert_eq!(nodes[1].get_bytes(*p).await.unwrap().len(), SIZE);
    }
    let r = recorded();
    // The WAL's header (its layout), then its one page.
    let fetches = r.count("protobase_peer_fetch_seconds", &[("outcome", "ok")]);
    assert!((1..=2).contains(&fetches), "{r:#?}");
    let fetched = r.count("protobase_peer_fetch_bytes_total", &[]);
    assert!(fetched >= (PUSHES * SIZE) as u64, "{fetched}");
    assert_eq!(
        r.count("protobase_wal_bytes_read_total", &[("tier", "peers")]),
        fetched
    );
    // b's page cache answers all but the first read; a's answered b's
    // page requests from its own page cache (hits there too).
    assert!(r.count("protobase_cache_hits_total", &[("tier", "memory")]) >= PUSHES as u64 - 1);
    for n in &nodes {
        n.close().await.unwrap();
    }
}

async fn cloud_provider(
    store: Arc<dyn ObjectStore>,
    staging: &std::path::Path,
) -> Arc<CloudBlockProvider> {
    Arc::new(
        CloudBlockProvider::builder(store, staging)
            .object_size(4096)
            .durability(Durability::Cloud)
            .build()
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_counts_match_the_work() {
    let _turn = turn().await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let staging = tempfile::tempdir().unwrap();
    let p = cloud_provider(store.clone(), staging.path()).await;
    let s = StorageBuilder::cloud(p.clone()).build().await.unwrap();
    let ptrs = workload(&s).await;
    s.close().await.unwrap();
    let r = recorded();
    check_engine(&r);
    // Cloud durability: every commit waited for its slot; each upload is
    // one successful PUT of a slot.
    let uploads = r.count("protobase_uploads_total", &[]);
    assert!(uploads >= 1, "{r:#?}");
    assert_eq!(r.count("protobase_upload_failures_total", &[]), 0);
    let puts = r.count(
        "protobase_object_store_request_seconds",
        &[("op", "put"), ("outcome", "ok")],
    );
    // Slots, root chain links (one per commit) and space_root copies.
    assert!(
        puts >= uploads + COMMITS as u64,
        "{puts} puts, {uploads} uploads"
    );
    assert!(r.count("protobase_upload_bytes_total", &[]) >= (PUSHES * SIZE) as u64);
    assert_eq!(
        r.count(
            "protobase_object_store_errors_total",
            &[("kind", "permission")]
        ),
        0
    );
    // A fresh provider (empty caches) reads from the store, then from its
    // cache directory.
    let staging2 = tempfile::tempdir().unwrap();
    let q = cloud_provider(store, staging2.path()).await;
    let s = StorageBuilder::cloud(q)
        .page_cache_size(0)
        .build()
        .await
        .unwrap();
    recorded();
    for p in &ptrs {
        s.get_bytes(*p).await.unwrap();
    }
    let r = recorded();
    assert!(
        r.count("protobase_wal_bytes_read_total", &[("tier", "store")]) > 0,
        "{r:#?}"
    );
    assert!(
        r.count("protobase_cache_hits_total", &[("tier", "cloud_cache")]) >= 1,
        "{r:#?}"
    );
    assert!(
        r.count(
            "protobase_object_store_request_seconds",
            &[("op", "get"), ("outcome", "ok")]
        ) >= 1
    );
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_cluster_counts_match_the_work() {
    let _turn = turn().await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let hub = InProcessHub::new(12);
    let ids = ["a", "b", "c"];
    let dirs: Vec<_> = ids.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for (id, dir) in ids.iter().zip(&dirs) {
        let p = cloud_provider(store.clone(), dir.path()).await;
        nodes.push(node(&hub, id, &ids, StorageBuilder::cloud(p)).await);
    }
    let ptrs = workload(&nodes[0]).await;
    let r = recorded();
    check_engine(&r);
    assert!(r.count("protobase_uploads_total", &[]) >= 1, "{r:#?}");
    assert!(
        r.count(
            "protobase_vote_round_seconds",
            &[("phase", "prepare"), ("outcome", "ok")]
        ) >= 1
    );
    // b has none of a's pages: its peers (a's staging) or the store have.
    for p in &ptrs {
        nodes[1].get_bytes(*p).await.unwrap();
    }
    let r = recorded();
    let from_peers = r.count("protobase_wal_bytes_read_total", &[("tier", "peers")]);
    let from_store = r.count("protobase_wal_bytes_read_total", &[("tier", "store")]);
    assert!(from_peers + from_store >= SIZE as u64, "{r:#?}");
    // b's cloud page cache: memory misses first, then hits.
    assert!(r.count("protobase_cache_misses_total", &[("tier", "memory")]) >= 1);
    for n in &nodes {
        n.close().await.unwrap();
    }
}
