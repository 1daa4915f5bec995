//! Cluster scenarios of `protobase bench`: 3 nodes on loopback TCP.
//!
//! Latencies are p50 in microseconds (lower is better); baselines are raw
//! tokio TCP exchanges (and a raw fdatasync) measured in the same run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protobase::backends::fs::FileBlockProvider;
use protobase::cluster::{
    Acceptor, ClusterBlockProvider, ClusterConfig, ClusterHandler, FileTermStore, MajorityVote,
    bind_local_tcp_cluster,
};
use protobase::record;
use protobase::{BlockProvider, NetworkManager, StorageBuilder, VoteStrategy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bench::{BenchResult, Row, fresh};

const PAGE: usize = 64 << 10;

fn p50_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// Raw request/response over one tokio TCP connection: `req` bytes out,
/// `resp` bytes back; p50 of `n` exchanges.
async fn raw_exchange(n: usize, req: usize, resp: usize) -> BenchResult<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let mut inb = vec![0u8; req];
        let out = vec![7u8; resp];
        loop {
            if s.read_exact(&mut inb).await.is_err() {
                return Ok::<_, std::io::Error>(());
            }
            s.write_all(&out).await?;
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await?;
    c.set_nodelay(true)?;
    let out = vec![1u8; req];
    let mut inb = vec![0u8; resp];
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        c.write_all(&out).await?;
        c.read_exact(&mut inb).await?;
        if i >= n / 10 {
            samples.push(t.elapsed());
        }
    }
    drop(c);
    server.await??;
    Ok(p50_us(samples))
}

/// p50 of append 100 bytes + fdatasync.
fn raw_fdatasync(dir: &Path, n: usize) -> BenchResult<f64> {
    use std::io::Write;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("wal"))?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        (&f).write_all(&[9u8; 100])?;
        f.sync_data()?;
        samples.push(t.elapsed());
    }
    Ok(p50_us(samples))
}

fn bench_config() -> ClusterConfig {
    ClusterConfig {
        heartbeat_ms: 0,
        ..ClusterConfig::default()
    }
}

struct ManualNode {
    local: Arc<dyn BlockProvider>,
    acceptor: Arc<Acceptor>,
    network: Arc<dyn NetworkManager>,
    config: ClusterConfig,
}

/// Three nodes assembled from the cluster's parts (so the benchmark can time
/// the vote strategy and the remote read path alone).
async fn manual_cluster(base: &Path) -> BenchResult<Vec<ManualNode>> {
    let mut out = Vec::new();
    for (config, net) in bind_local_tcp_cluster(&["n1", "n2", "n3"], "bench", &bench_config())? {
        let dir = fresh(base, &format!("manual_{}", config.server_id))?;
        let local: Arc<dyn BlockProvider> = Arc::new(FileBlockProvider::open(&dir)?);
        let acceptor = Acceptor::open(
            config.server_id.clone(),
            local.clone(),
            Arc::new(FileTermStore::new(dir.join("cluster_term"))),
        )
        .await?;
        let network: Arc<dyn NetworkManager> = net;
        network
            .start(Arc::new(ClusterHandler::new(
                acceptor.clone(),
                local.clone(),
            )))
            .await?;
        out.push(ManualNode {
            local,
            acceptor,
            network,
            config,
        });
    }
    Ok(out)
}

pub(crate) async fn run(base: &Path, quick: bool) -> BenchResult<Vec<Row>> {
    let (rtt_n, vote_n, root_n, page_n) = if quick {
        (300, 200, 40, 100)
    } else {
        (3000, 2000, 300, 1000)
    };
    let rtt = raw_exchange(rtt_n, 64, 64).await?;
    let raw_page = raw_exchange(page_n, 64, PAGE).await?;
    let fsync_dir = fresh(base, "raw_fsync")?;
    let fsync = tokio::task::spawn_blocking(move || {
        raw_fdatasync(&fsync_dir, 200).map_err(|e| e.to_string())
    })
    .await?
    .map_err(|e| -> Box<dyn std::error::Error> { e.into() })?;

    let nodes = manual_cluster(base).await?;
    // tcp_rtt: a framed request/response through the TCP transport.
    let peer = nodes[1].config.server_id.clone();
    let mut samples = Vec::with_capacity(rtt_n);
    for i in 0..rtt_n + rtt_n / 10 {
        let hb = protobase::protocol::Message::Heartbeat {
            node: "n1".into(),
            root_sequence: 0,
            term: 0,
        };
        let t = Instant::now();
        nodes[0]
            .network
            .request(&peer, hb, Duration::from_secs(2))
            .await?;
        if i >= rtt_n / 10 {
            samples.push(t.elapsed());
        }
    }
    let tcp_rtt = p50_us(samples);
    // vote_acquire: uncontended acquire (and release) on n1.
    let n1 = &nodes[0];
    let vote = MajorityVote::new(n1.config.clone(), n1.acceptor.clone(), n1.network.clone());
    let mut samples = Vec::with_capacity(vote_n);
    for i in 0..vote_n + vote_n / 10 {
        let t = Instant::now();
        let g = vote.acquire().await?;
        let d = t.elapsed();
        vote.release(&g).await?;
        if i >= vote_n / 10 {
            samples.push(d);
        }
    }
    let vote_acquire = p50_us(samples);

    // page_fetch_remote: a 64 KiB page of a WAL only n2 has, read on n1.
    let n2 = &nodes[1];
    let wal = n2.local.create_wal().await?;
    let mut rec = Vec::with_capacity(PAGE + 64);
    rec.extend_from_slice(&record::encode_header(wal));
    record::encode_record(&mut rec, protobase::Format::Raw, &vec![3u8; PAGE]);
    n2.local.append(wal, 0, Bytes::from(rec)).await?;
    n2.local.sync(wal, 0).await?;
    let remote = ClusterBlockProvider::new(
        n1.local.clone(),
        n1.acceptor.clone(),
        n1.network.clone(),
        n1.config.clone(),
    );
    let mut samples = Vec::with_capacity(page_n);
    for i in 0..page_n + page_n / 10 {
        let t = Instant::now();
        let got = remote.read(wal, 0, PAGE as u64).await?;
        let d = t.elapsed();
        if got.len() != PAGE {
            return Err(format!("remote page of {} bytes, expected {PAGE}", got.len()).into());
        }
        if i >= page_n / 10 {
            samples.push(d);
        }
    }
    let page_fetch = p50_us(samples);
    for n in &nodes {
        n.network.stop().await?;
    }

    // root_update_cluster: a full publish (acquire, durable local root,
    // majority of durable acks, release) through Storage on node 1 of 3.
    let mut storages = Vec::new();
    for (config, net) in bind_local_tcp_cluster(&["s1", "s2", "s3"], "bench", &bench_config())? {
        let dir = fresh(base, &format!("cluster_{}", config.server_id))?;
        storages.push(
            StorageBuilder::standalone(dir)
                .cluster(config)
                .with_network_manager(net)
                .build()
                .await?,
        );
    }
    let ptr = storages[0].push_bytes(&[1u8; 100]).await?;
    let mut samples = Vec::with_capacity(root_n);
    for i in 0..root_n + root_n / 10 {
        let t = Instant::now();
        storages[0].set_root(ptr).await?;
        if i >= root_n / 10 {
            samples.push(t.elapsed());
        }
    }
    let root_update = p50_us(samples);
    for s in &storages {
        s.close().await?;
    }

    Ok(vec![
        Row {
            name: "tcp_rtt",
            value: tcp_rtt,
            unit: "us p50",
            baseline: rtt,
            baseline_desc: "raw tokio TCP ping-pong, 64 bytes",
        },
        Row {
            name: "vote_acquire",
            value: vote_acquire,
            unit: "us p50",
            baseline: rtt,
            baseline_desc: "raw TCP round trip (3 nodes, uncontended)",
        },
        Row {
            name: "root_update_cluster",
            value: root_update,
            unit: "us p50",
            baseline: rtt + fsync,
            baseline_desc: "raw TCP round trip + raw append/fdatasync",
        },
        Row {
            name: "page_fetch_remote",
            value: page_fetch,
            unit: "us p50",
            baseline: raw_page,
            baseline_desc: "raw TCP request + 64 KiB response",
        },
    ])
}
