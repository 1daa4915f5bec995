//! Cluster scenarios of `protobase bench`: 3 nodes on loopback, over the TCP
//! transport (pre-shared key, and mutual TLS: `tls_tcp_rtt`,
//! `page_fetch_remote_tls`) and over the QUIC transport (mutual TLS).
//!
//! Latencies are p50 in microseconds (lower is better); baselines are raw
//! tokio TCP exchanges (and a raw fdatasync) measured in the same run, and
//! for `quic_rtt` the TCP transport's own framed round trip, so its ratio is
//! QUIC / TCP.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protobase::backends::fs::FileBlockProvider;
use protobase::cluster::{
    Acceptor, ClusterConfig, ClusterHandler, FileAcceptorStore, PeerTier, QuorumRegister, RootHint,
    Transport, bind_local_quic_cluster, bind_local_tcp_cluster, bind_local_tcp_tls_cluster,
};
use protobase::record;
use protobase::{NetworkManager, ReadTier, StorageBuilder, VoteStrategy, WalStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bench::{BenchResult, CONCURRENT_COMMITTERS, Row, commits_per_second, fresh};

const PAGE: usize = 64 << 10;

pub(crate) fn p50_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// A raw request/response link over one tokio TCP connection: `req` bytes
/// out, `resp` bytes back. Its samples are taken alternately with the
/// scenario's, so both see the same machine state (on this VM an idle
/// loopback round trip is ~70 µs and a busy one ~8 µs).
pub(crate) struct RawLink {
    stream: tokio::net::TcpStream,
    out: Vec<u8>,
    inb: Vec<u8>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RawLink {
    pub(crate) async fn open(req: usize, resp: usize) -> BenchResult<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await?;
            s.set_nodelay(true)?;
            let mut inb = vec![0u8; req];
            let out = vec![7u8; resp];
            loop {
                if s.read_exact(&mut inb).await.is_err() {
                    return Ok(());
                }
                s.write_all(&out).await?;
            }
        });
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawLink {
            stream,
            out: vec![1u8; req],
            inb: vec![0u8; resp],
            server,
        })
    }

    pub(crate) async fn exchange(&mut self) -> BenchResult<Duration> {
        let t = Instant::now();
        self.stream.write_all(&self.out).await?;
        self.stream.read_exact(&mut self.inb).await?;
        Ok(t.elapsed())
    }

    async fn close(self) -> BenchResult<()> {
        drop(self.stream);
        self.server.await??;
        Ok(())
    }
}

/// Runs `n` (plus a tenth to warm up) alternating samples of the raw link
/// and of `op`; returns (p50 of op, p50 of raw) in µs.
async fn paired<F, Fut>(link: &mut RawLink, n: usize, mut op: F) -> BenchResult<(f64, f64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = BenchResult<Duration>>,
{
    let mut ours = Vec::with_capacity(n);
    let mut raw = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let r = link.exchange().await?;
        let o = op().await?;
        if i >= n / 10 {
            raw.push(r);
            ours.push(o);
        }
    }
    Ok((p50_us(ours), p50_us(raw)))
}

/// One append of 100 bytes + fdatasync.
fn raw_fdatasync(f: &std::fs::File) -> BenchResult<Duration> {
    use std::io::Write;
    let t = Instant::now();
    let mut w = f;
    w.write_all(&[9u8; 100])?;
    f.sync_data()?;
    Ok(t.elapsed())
}

/// The pre-shared key of the benchmark's TCP clusters.
pub(crate) const BENCH_PSK: &str = "protobase benchmark pre-shared key";

fn bench_config() -> ClusterConfig {
    ClusterConfig::default().with_heartbeat_ms(0)
}

struct ManualNode {
    local: Arc<dyn WalStore>,
    acceptor: Arc<Acceptor>,
    network: Arc<dyn NetworkManager>,
    config: ClusterConfig,
}

/// Three nodes over `transport` assembled from the cluster's parts (so the
/// benchmark can time the vote strategy and the remote read path alone).
async fn manual_cluster(base: &Path, transport: Transport) -> BenchResult<Vec<ManualNode>> {
    let mut out = Vec::new();
    let ids = ["n1", "n2", "n3"];
    fn erased<N: NetworkManager + 'static>(
        nodes: Vec<(ClusterConfig, Arc<N>)>,
    ) -> Vec<(ClusterConfig, Arc<dyn NetworkManager>)> {
        nodes
            .into_iter()
            .map(|(c, n)| (c, n as Arc<dyn NetworkManager>))
            .collect()
    }
    let bound = match transport {
        Transport::Tcp => erased(bind_local_tcp_cluster(&ids, BENCH_PSK, &bench_config())?),
        Transport::Quic => erased(bind_local_quic_cluster(
            &ids,
            &fresh(base, "quic_certs")?,
            &bench_config(),
        )?),
        Transport::TcpTls => erased(bind_local_tcp_tls_cluster(
            &ids,
            &fresh(base, "tcp_tls_certs")?,
            &bench_config(),
        )?),
    };
    for (config, net) in bound {
        let dir = fresh(base, &format!("manual_{transport}_{}", config.server_id))?;
        let local: Arc<dyn WalStore> = Arc::new(FileBlockProvider::open(&dir)?);
        let acceptor = Acceptor::open(
            config.server_id.clone(),
            Arc::new(FileAcceptorStore::in_dir(&dir)),
            std::time::Duration::from_millis(config.lease_ms),
            Arc::new(protobase::clock::TokioClock),
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
    let mut ping = RawLink::open(64, 64).await?;
    let mut page_link = RawLink::open(64, PAGE).await?;

    let tcp = manual_cluster(base, Transport::Tcp).await?;
    let quic = manual_cluster(base, Transport::Quic).await?;
    // tcp_rtt: a framed request/response through the TCP transport;
    // quic_rtt: the same through QUIC. One sample of the raw link, of TCP
    // and of QUIC in turn: the transport's round trip is measured once and
    // is both tcp_rtt's value and quic_rtt's baseline.
    let (mut raw_s, mut tcp_s, mut quic_s) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rtt_n + rtt_n / 10 {
        let r = ping.exchange().await?;
        let t = heartbeat_rtt(&tcp).await?;
        let q = heartbeat_rtt(&quic).await?;
        if i >= rtt_n / 10 {
            raw_s.push(r);
            tcp_s.push(t);
            quic_s.push(q);
        }
    }
    let (rtt, tcp_rtt, quic_rtt) = (p50_us(raw_s), p50_us(tcp_s), p50_us(quic_s));
    let (vote_acquire, vote_rtt) = measure_vote_acquire(&tcp, &mut ping, vote_n).await?;
    let (vote_acquire_quic, vote_quic_rtt) = measure_vote_acquire(&quic, &mut ping, vote_n).await?;
    let (page_fetch, raw_page) = measure_page_fetch_remote(&tcp, &mut page_link, page_n).await?;
    let (page_fetch_quic, raw_page_quic) =
        measure_page_fetch_remote(&quic, &mut page_link, page_n).await?;
    for n in tcp.iter().chain(&quic) {
        n.network.stop().await?;
    }
    // The same over TLS on TCP, against the same raw TCP baselines (a
    // cluster of its own, started after the others stopped, so that their
    // tasks do not share the scheduler with the plain measurements).
    let tls = manual_cluster(base, Transport::TcpTls).await?;
    let (tls_tcp_rtt, tls_rtt) = paired(&mut ping, rtt_n, || heartbeat_rtt(&tls)).await?;
    let (page_fetch_tls, raw_page_tls) =
        measure_page_fetch_remote(&tls, &mut page_link, page_n).await?;
    for n in &tls {
        n.network.stop().await?;
    }

    // root_update_cluster: a full publish (acquire, durable local root,
    // majority of durable acks, release) through Storage on node 1 of 3;
    // baseline: a raw round trip plus a raw append + fdatasync.
    let mut storages = Vec::new();
    for (config, net) in bind_local_tcp_cluster(&["s1", "s2", "s3"], BENCH_PSK, &bench_config())? {
        let dir = fresh(base, &format!("cluster_{}", config.server_id))?;
        storages.push(
            StorageBuilder::standalone(dir)
                .cluster(config)
                .with_network_manager(net)
                .build()
                .await?,
        );
    }
    let fsync_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(fresh(base, "raw_fsync")?.join("wal"))?;
    let ptr = storages[0].push_bytes(&[1u8; 100]).await?;
    let mut ours = Vec::with_capacity(root_n);
    let mut raw = Vec::with_capacity(root_n);
    for i in 0..root_n + root_n / 10 {
        let r =
            ping.exchange().await? + tokio::task::block_in_place(|| raw_fdatasync(&fsync_file))?;
        let t = Instant::now();
        storages[0].set_root(ptr).await?;
        if i >= root_n / 10 {
            ours.push(t.elapsed());
            raw.push(r);
        }
    }
    let (root_update, root_base) = (p50_us(ours), p50_us(raw));
    let cluster_concurrent =
        commits_per_second(&storages, CONCURRENT_COMMITTERS, if quick { 3 } else { 15 }).await?;
    for s in &storages {
        s.close().await?;
    }
    ping.close().await?;
    page_link.close().await?;

    Ok(vec![
        Row {
            name: "tcp_rtt",
            value: tcp_rtt,
            unit: "us p50",
            baseline: rtt,
            baseline_desc: "raw tokio TCP ping-pong, 64 bytes",
        },
        Row {
            name: "quic_rtt",
            value: quic_rtt,
            unit: "us p50",
            baseline: tcp_rtt,
            baseline_desc: "this crate's TCP transport round trip (tcp_rtt's value)",
        },
        Row {
            name: "vote_acquire",
            value: vote_acquire,
            unit: "us p50",
            baseline: vote_rtt,
            baseline_desc: "raw TCP round trip (3 nodes, uncontended)",
        },
        Row {
            name: "vote_acquire_quic",
            value: vote_acquire_quic,
            unit: "us p50",
            baseline: vote_quic_rtt,
            baseline_desc: "raw TCP round trip (3 nodes over QUIC, uncontended)",
        },
        Row {
            name: "root_update_cluster",
            value: root_update,
            unit: "us p50",
            baseline: root_base,
            baseline_desc: "raw TCP round trip + raw append/fdatasync",
        },
        Row {
            name: "cluster_commit_concurrent",
            value: cluster_concurrent,
            unit: "commits/s",
            baseline: if root_update > 0.0 {
                1e6 / root_update
            } else {
                0.0
            },
            baseline_desc: "serial root_update_cluster rate (this round)",
        },
        Row {
            name: "page_fetch_remote",
            value: page_fetch,
            unit: "us p50",
            baseline: raw_page,
            baseline_desc: "raw TCP request + 64 KiB response",
        },
        Row {
            name: "page_fetch_remote_quic",
            value: page_fetch_quic,
            unit: "us p50",
            baseline: raw_page_quic,
            baseline_desc: "raw TCP request + 64 KiB response (page over QUIC)",
        },
        Row {
            name: "tls_tcp_rtt",
            value: tls_tcp_rtt,
            unit: "us p50",
            baseline: tls_rtt,
            baseline_desc: "raw tokio TCP ping-pong, 64 bytes (transport over TLS)",
        },
        Row {
            name: "page_fetch_remote_tls",
            value: page_fetch_tls,
            unit: "us p50",
            baseline: raw_page_tls,
            baseline_desc: "raw TCP request + 64 KiB response (page over TLS on TCP)",
        },
    ])
}

/// One framed heartbeat request from node 1 to node 2.
async fn heartbeat_rtt(nodes: &[ManualNode]) -> BenchResult<Duration> {
    let hb = protobase::protocol::Message::Heartbeat {
        node: "n1".into(),
        root_sequence: 0,
        term: 0,
    };
    let peer = nodes[1].config.server_id.clone();
    let t = Instant::now();
    nodes[0]
        .network
        .request(&peer, hb, Duration::from_secs(2))
        .await?;
    Ok(t.elapsed())
}

/// Uncontended acquire on node 1 (released between samples), paired with
/// the raw link.
async fn measure_vote_acquire(
    nodes: &[ManualNode],
    ping: &mut RawLink,
    n: usize,
) -> BenchResult<(f64, f64)> {
    let n1 = &nodes[0];
    let vote = QuorumRegister::new(
        n1.config.clone(),
        n1.acceptor.clone(),
        n1.network.clone(),
        Arc::new(protobase::clock::TokioClock),
        protobase::clock::SeededRng::new(1),
    );
    // A prepare round each time: a released grant is not kept for reuse
    // (the key measures acquiring, not the leader lease).
    vote.let_go().await;
    paired(ping, n, || async {
        let t = Instant::now();
        let g = vote.acquire().await?;
        let d = t.elapsed();
        vote.release(&g).await?;
        Ok(d)
    })
    .await
}

/// A 64 KiB page of a WAL only node 2 has, read on node 1, paired with the
/// raw link.
async fn measure_page_fetch_remote(
    nodes: &[ManualNode],
    page_link: &mut RawLink,
    n: usize,
) -> BenchResult<(f64, f64)> {
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let wal = n2.local.create_wal().await?.id;
    let mut rec = Vec::with_capacity(PAGE + 64);
    rec.extend_from_slice(&record::encode_header(wal));
    record::encode_record(&mut rec, protobase::Format::Raw, &vec![3u8; PAGE]);
    n2.local.append(wal, 0, Bytes::from(rec)).await?;
    n2.local.sync(wal, 0).await?;
    let remote = PeerTier::new(
        n1.network.clone(),
        n1.config.clone(),
        RootHint::default(),
        n1.config.max_retries,
    );
    paired(page_link, n, || async {
        let t = Instant::now();
        let got = remote
            .read(wal, 0, PAGE as u64)
            .await?
            .ok_or("no peer has the page")?;
        let d = t.elapsed();
        if got.len() != PAGE {
            return Err(format!("remote page of {} bytes, expected {PAGE}", got.len()).into());
        }
        Ok(d)
    })
    .await
}
