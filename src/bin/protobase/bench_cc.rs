//! Cloud-cluster scenarios of `protobase bench`: three nodes over TCP on
//! 127.0.0.1 sharing the cloud scenarios' store (S3 at
//! `PROTOBASE_BENCH_S3_ENDPOINT`, or in memory), each with its own staging
//! directory and cloud page cache.
//!
//! - `cc_commit`: a durable commit (`Durability::Cloud`: slots and root in
//!   the store, majority grant), ms p50; baseline one raw PUT of 100 bytes
//!   plus one raw TCP round trip, sampled alternately.
//! - `cc_page_from_peer_cache`: a read of a record whose 64 KiB page only a
//!   peer has cached (the writer is stopped), µs p50; baseline the same
//!   read on a node with no cache at all (one ranged GET of the store, the
//!   `cloud_get_cold` path), sampled alternately. A peer's cache should beat
//!   the store.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path as StorePath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use protobase::backends::cloud::{CloudBlockProvider, Durability};
use protobase::cluster::{ClusterConfig, bind_local_tcp_cluster};
use protobase::{AtomPointer, NetworkManager, Storage, StorageBuilder};

use crate::bench::{BenchResult, Row, fresh};
use crate::bench_cluster::RawLink;

const PAGE: u64 = 64 << 10;
const RECORD: usize = 100;

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

struct Node {
    storage: Storage,
    network: Arc<dyn NetworkManager>,
    provider: Arc<CloudBlockProvider>,
}

async fn provider(
    store: &Arc<dyn ObjectStore>,
    staging: std::path::PathBuf,
    cache: bool,
) -> BenchResult<CloudBlockProvider> {
    let b = CloudBlockProvider::builder(store.clone(), staging)
        .prefix("space")
        .object_size(1 << 20)
        .durability(Durability::Cloud);
    Ok(if cache { b } else { b.no_cache() }.build().await?)
}

async fn start(base: &Path, store: &Arc<dyn ObjectStore>) -> BenchResult<Vec<Node>> {
    let config = ClusterConfig::default()
        .with_read_timeout_ms(2_000)
        .with_heartbeat_ms(100);
    let mut nodes = Vec::new();
    for (i, (cfg, net)) in
        bind_local_tcp_cluster(&["a", "b", "c"], crate::bench_cluster::BENCH_PSK, &config)?
            .into_iter()
            .enumerate()
    {
        let p = Arc::new(provider(store, fresh(base, &format!("cc_stage_{i}"))?, true).await?);
        let network: Arc<dyn NetworkManager> = net;
        let storage = StorageBuilder::cloud(p.clone())
            .cluster(cfg)
            .with_network_manager(network.clone())
            .page_size(PAGE)
            .build()
            .await?;
        nodes.push(Node {
            storage,
            network,
            provider: p,
        });
    }
    Ok(nodes)
}

/// Runs the scenarios on `store` (under `run/cc`).
pub(crate) async fn run(
    base: &Path,
    store: Arc<dyn ObjectStore>,
    run: &str,
    quick: bool,
) -> BenchResult<Vec<Row>> {
    let store: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store, format!("{run}/cc")));
    let (commits, pages) = if quick { (20, 30) } else { (100, 100) };
    let nodes = start(base, &store).await?;

    // cc_commit, alternating with the baseline: raw PUT + raw round trip.
    let mut link = RawLink::open(64, 64).await?;
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    let a = &nodes[0].storage;
    for i in 0..commits + commits / 10 {
        let t = Instant::now();
        store
            .put(
                &StorePath::from(format!("raw/{i}")),
                PutPayload::from(vec![1u8; RECORD]),
            )
            .await?;
        let put = t.elapsed();
        let rtt = link.exchange().await?;
        let t = Instant::now();
        let p = a.push_bytes(&[2u8; RECORD]).await?;
        a.set_root(p).await?;
        if i >= commits / 10 {
            ours.push(t.elapsed());
            raw.push(put + rtt);
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let commit = Row {
        name: "cc_commit",
        value: ms(p50(ours)),
        unit: "ms p50",
        baseline: ms(p50(raw)),
        baseline_desc: "one raw PUT of 100 bytes + one raw TCP round trip",
    };

    // One record at the start of each of `pages` full pages, written by A.
    let per_page = (PAGE as usize).div_ceil(RECORD + 13);
    let mut firsts: Vec<AtomPointer> = Vec::new();
    for page in 0..=pages {
        for r in 0..per_page {
            let p = a.push_bytes(&[page as u8; RECORD]).await?;
            if r == 0 && page < pages {
                firsts.push(p);
            }
        }
    }
    let last = a.push_bytes(b"end").await?;
    a.set_root(last).await?; // Cloud durability: everything is in the store
    // B reads them: B's page cache holds those pages. Then A stops.
    for p in &firsts {
        nodes[1].storage.get_bytes(*p).await?;
    }
    nodes[0].storage.close().await?;
    nodes[0].network.stop().await?;

    // A node with no cache at all: every read is one ranged GET.
    let cold = StorageBuilder::cloud(Arc::new(
        provider(&store, fresh(base, "cc_stage_cold")?, false).await?,
    ))
    .page_cache_size(0)
    .read_only(true)
    .build()
    .await?;
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    let c = &nodes[2].storage;
    for p in firsts.iter().skip(1) {
        // (The first page also holds the WAL header: skip it.)
        let t = Instant::now();
        cold.get_bytes(*p).await?;
        raw.push(t.elapsed());
        let t = Instant::now();
        c.get_bytes(*p).await?;
        ours.push(t.elapsed());
    }
    cold.close().await?;
    let peer_gets = nodes[2].provider.cache().map_or(0, |c| c.stats().inserts);
    for n in &nodes[1..] {
        n.storage.close().await?;
    }
    if peer_gets > 0 {
        eprintln!("note: node c fetched {peer_gets} slot(s) from the store itself");
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let page = Row {
        name: "cc_page_from_peer_cache",
        value: us(p50(ours)),
        unit: "us p50",
        baseline: us(p50(raw)),
        baseline_desc: "the same read with no cache: one ranged GET (cloud_get_cold path)",
    };
    Ok(vec![commit, page])
}
