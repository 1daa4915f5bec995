//! Cluster integration tests over real sockets on 127.0.0.1 (ports chosen
//! by the OS), each node in its own space directory. The same scenarios run
//! over TCP (module `tcp`, 3 and 5 nodes) and, with mutual TLS, over QUIC
//! and over TCP (modules `tls::quic` and `tls::tcp_tls`, 3 nodes):
//!
//! - records written on one node are read on every other through page
//!   requests, including one larger than the 1 MiB page and one larger than
//!   the 8 MiB remote-read piece;
//! - concurrent root updates from every node are serialised: walking back
//!   from the final root through the predecessor each root's atom names,
//!   sequences are consecutive and every acknowledged root is there once;
//! - a node killed mid-run and restarted on the same directory and address
//!   catches up on the latest root and publishes the next one;
//! - TCP: peers without the key, garbage, oversized length prefixes and
//!   malformed frames (even from an authenticated peer) are refused and
//!   change neither the roots nor the promised terms of any node;
//! - TLS: nodes with certificates from another CA (under a member's id or
//!   their own), even a whole storage node, can neither vote nor publish,
//!   and change neither the roots nor the promised terms of any node.
//!
//! Waits for the cluster to converge poll with a generous deadline; nothing
//! asserts how long anything takes.

#![cfg(all(feature = "fs", any(feature = "tcp", feature = "quic")))]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use protobase::cluster::ClusterConfig;
use protobase::protocol::Message;
use protobase::{
    AtomFormat, AtomPointer, ErrorKind, MessageHandler, NetworkManager, PeerId, RootRecord,
    Storage, StorageBuilder, WalId,
};
use tempfile::TempDir;
use tokio::task::JoinSet;

mod support;
use support::history::{Entry, Prev, check_chain, publish, publish_retrying};

/// How long a wait for the cluster to converge may take before failing.
const PATIENCE: Duration = Duration::from_secs(15);

/// The transport a test cluster runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    #[cfg(feature = "tcp")]
    Tcp,
    #[cfg(feature = "quic")]
    Quic,
    #[cfg(feature = "tcp-tls")]
    TcpTls,
}

fn base_config() -> ClusterConfig {
    ClusterConfig::default()
        .with_read_timeout_ms(500)
        .with_vote_timeout_ms(5_000)
        .with_retry_interval_ms(20)
        .with_max_retries(3)
        .with_lease_ms(1_000)
        .with_heartbeat_ms(50)
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

struct Node {
    config: ClusterConfig,
    dir: TempDir,
    network: Arc<dyn NetworkManager>,
    addr: SocketAddr,
    storage: Option<Storage>,
}

impl Node {
    fn storage(&self) -> &Storage {
        self.storage.as_ref().expect("node is running")
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

struct Cluster {
    net: Net,
    nodes: Vec<Node>,
    /// Where the QUIC cluster's CA and node certificates live.
    #[allow(dead_code)]
    certs: TempDir,
}

impl Cluster {
    async fn start(net: Net, n: usize) -> Cluster {
        let ids = ids(n);
        let names: Vec<&str> = ids.iter().map(String::as_str).collect();
        let certs = tempfile::tempdir().unwrap();
        let bound: Vec<(ClusterConfig, SocketAddr, Arc<dyn NetworkManager>)> = match net {
            #[cfg(feature = "tcp")]
            Net::Tcp => {
                protobase::cluster::bind_local_tcp_cluster(&names, tcp::PSK, &base_config())
                    .unwrap()
                    .into_iter()
                    .map(|(c, m)| (c, m.local_addr().unwrap(), m as Arc<dyn NetworkManager>))
                    .collect()
            }
            #[cfg(feature = "quic")]
            Net::Quic => {
                protobase::cluster::bind_local_quic_cluster(&names, certs.path(), &base_config())
                    .unwrap()
                    .into_iter()
                    .map(|(c, m)| (c, m.local_addr().unwrap(), m as Arc<dyn NetworkManager>))
                    .collect()
            }
            #[cfg(feature = "tcp-tls")]
            Net::TcpTls => {
                protobase::cluster::bind_local_tcp_tls_cluster(&names, certs.path(), &base_config())
                    .unwrap()
                    .into_iter()
                    .map(|(c, m)| (c, m.local_addr().unwrap(), m as Arc<dyn NetworkManager>))
                    .collect()
            }
        };
        let mut nodes = Vec::new();
        for (config, addr, network) in bound {
            let dir = tempfile::tempdir().unwrap();
            let storage = build(&dir, &config, network.clone()).await;
            nodes.push(Node {
                config,
                dir,
                network,
                addr,
                storage: Some(storage),
            });
        }
        Cluster { net, nodes, certs }
    }

    fn storage(&self, i: usize) -> &Storage {
        self.nodes[i].storage()
    }

    fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Crashes node `i`: its network stops (peers see a dead node) and its
    /// storage is dropped without closing (nothing unsynced survives).
    async fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.network.stop().await.unwrap();
        node.storage = None;
    }

    /// Restarts node `i` on the same directory, with a new network manager
    /// listening on the same address.
    async fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let network: Arc<dyn NetworkManager> = match self.net {
            // Plain or TLS: the configuration says which.
            #[cfg(feature = "tcp")]
            Net::Tcp => tcp::manager_again(node).await,
            #[cfg(feature = "tcp-tls")]
            Net::TcpTls => tcp::manager_again(node).await,
            // The same manager starts again (a stopped QUIC manager keeps its
            // socket, refusing connections, until dropped). Building one
            // from the configuration alone is covered by the untrusted
            // storage node in `quic`.
            #[cfg(feature = "quic")]
            Net::Quic => node.network.clone(),
        };
        node.storage = Some(build(&node.dir, &node.config, network.clone()).await);
        node.network = network;
    }

    async fn close(self) {
        for node in &self.nodes {
            if let Some(s) = &node.storage {
                s.close().await.unwrap();
            }
        }
    }

    /// Waits until every running node reads `root` as its current root.
    async fn converge_on(&self, root: &RootRecord) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let mut roots = Vec::new();
            for node in &self.nodes {
                if let Some(s) = &node.storage {
                    roots.push(s.read_current_root().await.unwrap());
                }
            }
            if roots.iter().all(|r| r.as_ref() == Some(root)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nodes did not converge on {root:?} within {PATIENCE:?}: {roots:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn build(dir: &TempDir, config: &ClusterConfig, network: Arc<dyn NetworkManager>) -> Storage {
    StorageBuilder::standalone(dir.path())
        .cluster(config.clone())
        .with_network_manager(network)
        .build()
        .await
        .unwrap()
}

/// Deterministic, incompressible-looking test bytes.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

// ---------------------------------------------------------------------------
// Root chains
// ---------------------------------------------------------------------------

// (Entry, Prev, publish, publish_retrying and check_chain live in
// tests/support/history.rs, shared with the other cluster tests.)

// ---------------------------------------------------------------------------
// (a) Remote page reads
// ---------------------------------------------------------------------------

async fn records_written_on_one_node_are_read_on_every_other(net: Net, n: usize) {
    let c = Cluster::start(net, n).await;
    // A small record from every node, and two large ones from node 0: one
    // past the 1 MiB page, one past the 8 MiB remote-read piece.
    let mut written = Vec::new();
    for i in 0..n {
        let data = payload(i as u64, 100 + i);
        let ptr = c.storage(i).push_bytes(&data).await.unwrap();
        c.storage(i).flush_wal().await.unwrap();
        written.push((i, ptr, data));
    }
    for (seed, len) in [(100, (1 << 20) + (1 << 19)), (101, (9 << 20) + 12_345)] {
        let data = payload(seed, len);
        let ptr = c.storage(0).push_bytes(&data).await.unwrap();
        written.push((0, ptr, data));
    }
    // Publishing makes node 0's records durable, and so visible to peers.
    let root = c
        .storage(0)
        .set_root(written.last().unwrap().1)
        .await
        .unwrap();

    for reader in 0..n {
        let local: Vec<WalId> = c
            .storage(reader)
            .list_wals()
            .await
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect();
        for (writer, ptr, data) in &written {
            if *writer != reader {
                assert!(
                    !local.contains(&ptr.wal_id),
                    "node {reader} has node {writer}'s WAL: the read would not be remote"
                );
            }
            let got = c.storage(reader).get_bytes(*ptr).await.unwrap_or_else(|e| {
                panic!(
                    "node {reader} reading {} bytes of node {writer}: {e}",
                    data.len()
                )
            });
            assert!(
                got[..] == data[..],
                "node {reader} read wrong bytes for a {}-byte record of node {writer}",
                data.len()
            );
        }
    }
    // Pages are cached: a second read of the large record is served locally.
    let before = c.storage(1).cache_stats();
    let (_, big, data) = written.last().unwrap();
    assert_eq!(
        c.storage(1).get_bytes(*big).await.unwrap().len(),
        data.len()
    );
    assert!(c.storage(1).cache_stats().hits > before.hits);

    // No node has this WAL: every peer says so, and the read fails cleanly.
    let nowhere = AtomPointer::new(WalId::new_random(), 32);
    let err = c.storage(n - 1).get_bytes(nowhere).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    c.converge_on(&root).await;
    c.close().await;
}

// ---------------------------------------------------------------------------
// (b) Concurrent root updates
// ---------------------------------------------------------------------------

const UPDATES_PER_NODE: u32 = 20;

async fn concurrent_root_updates_are_serialised(net: Net, n: usize) {
    let c = Cluster::start(net, n).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let storage = c.storage(i).clone();
        let acked = acked.clone();
        tasks.spawn(async move {
            let me = format!("node-{i}");
            let mut failed = 0;
            for k in 0..UPDATES_PER_NODE {
                let (r, f) = publish_retrying(&storage, &me, k, 5).await;
                assert_eq!(r.writer.as_deref(), Some(me.as_str()));
                acked.lock().push(r);
                failed += f;
            }
            failed
        });
    }
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        failed += done.unwrap();
    }
    let acked = acked.lock().clone();
    assert_eq!(acked.len(), n * UPDATES_PER_NODE as usize);
    let fin = acked.iter().max_by_key(|r| r.sequence).unwrap().clone();
    let len = check_chain(c.storage(n - 1), &fin, &acked).await;
    // A failed attempt may have left its root on the chain; otherwise the
    // chain is exactly the acknowledged roots.
    assert!(len >= acked.len() && (failed > 0 || len == acked.len()));
    eprintln!(
        "{net:?}, {n} nodes: {} updates acknowledged ({failed} failed attempts), final root {fin:?}, \
         chain of {len}",
        acked.len()
    );
    c.converge_on(&fin).await;
    c.close().await;
}

// ---------------------------------------------------------------------------
// (c) Kill and restart
// ---------------------------------------------------------------------------

async fn a_killed_node_catches_up_and_publishes(net: Net, n: usize) {
    const EACH: u32 = 8;
    let mut c = Cluster::start(net, n).await;
    let victim = 1;
    let acked = Arc::new(Mutex::new(Vec::<RootRecord>::new()));
    let mut others = JoinSet::new();
    for i in (0..n).filter(|&i| i != victim) {
        let storage = c.storage(i).clone();
        let acked = acked.clone();
        others.spawn(async move {
            let me = format!("node-{i}");
            for k in 0..EACH {
                let (r, _) = publish_retrying(&storage, &me, k, 5).await;
                acked.lock().push(r);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    // The victim publishes too until it is killed in the middle of the run.
    let victim_task = {
        let storage = c.storage(victim).clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            for k in 0.. {
                if let Ok(r) = publish(&storage, "node-1", k).await {
                    acked.lock().push(r);
                }
            }
        })
    };
    let wait_for = |count: usize| {
        let acked = acked.clone();
        async move {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while acked.lock().len() < count {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the cluster stalled at {} of {count} acks",
                    acked.lock().len()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(4).await;
    victim_task.abort();
    let _ = victim_task.await;
    c.kill(victim).await;
    let at_kill = acked.lock().len();

    // The others keep committing without it, to the end of their run.
    wait_for(at_kill + 4).await;
    while let Some(done) = others.join_next().await {
        done.unwrap();
    }
    // Back on the same directory and address, with nobody publishing: only
    // heartbeats can tell it about the roots it missed.
    c.restart(victim).await;
    let acked = acked.lock().clone();
    let latest = acked.iter().max_by_key(|r| r.sequence).unwrap().clone();
    assert!(
        acked
            .iter()
            .filter(|r| r.sequence > acked[at_kill - 1].sequence)
            .count()
            >= 4,
        "updates were acknowledged while the victim was down"
    );

    // The restarted node learns the latest root from its peers' heartbeats…
    c.converge_on(&latest).await;
    // …and publishes the next one, on top of it.
    let next = {
        let s = c.storage(victim).clone();
        let seen = Arc::new(Mutex::new(None));
        let seen2 = seen.clone();
        let r = c
            .storage(victim)
            .update_root(move |current| async move {
                *seen2.lock() = current.clone();
                let entry = Entry {
                    node: "node-1".into(),
                    n: 1_000,
                    prev: current.as_ref().map(Prev::from),
                };
                s.push_atom(&entry, AtomFormat::Json).await
            })
            .await
            .unwrap();
        assert_eq!(seen.lock().as_ref(), Some(&latest));
        r
    };
    assert_eq!(next.sequence, latest.sequence + 1);
    assert!(next.term > latest.term);
    let mut all = acked.clone();
    all.push(next.clone());
    // Read through node 0: the restarted node serves its new atom to peers.
    check_chain(c.storage(0), &next, &all).await;
    c.converge_on(&next).await;
    c.close().await;
}

// ---------------------------------------------------------------------------
// (d) Peers that must be refused
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Silent;

#[async_trait]
impl MessageHandler for Silent {
    async fn handle(&self, _from: PeerId, _message: Message) -> Option<Message> {
        None
    }
}

/// A manager that claims to be `as_id` with that node's credentials and
/// knows only `target` at `addr`.
fn probe(c: &Cluster, as_id: &str, target: &str, addr: SocketAddr) -> Arc<dyn NetworkManager> {
    match c.net {
        #[cfg(feature = "tcp")]
        Net::Tcp => Arc::new(tcp::manager(as_id, target, addr, tcp::PSK)),
        #[cfg(any(feature = "quic", feature = "tcp-tls"))]
        #[allow(unreachable_patterns)]
        net => tls::manager(net, as_id, target, addr, tls::tls_of(c.certs.path(), as_id)),
    }
}

/// What a node shows the world: its promised term and latest root (asked
/// with a vote request for term 0, which no voter grants, so it changes
/// nothing), its current root and its durable acceptor state (the bytes of
/// `cluster_acceptor`).
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    promised: u64,
    latest: Option<RootRecord>,
    current: Option<RootRecord>,
    acceptor_file: Option<Vec<u8>>,
}

/// After a refused peer: no node's state changed since `before` (roots,
/// promised terms, term ceilings), and every node still publishes on top of
/// `first`, the cluster converging on the last root.
async fn unchanged_and_still_working(c: Cluster, before: &[Snapshot], first: RootRecord) {
    let after = snapshot(&c).await;
    assert_eq!(before, &after[..], "a refused peer changed a node's state");
    let mut last = first;
    for i in 0..c.len() {
        let (r, _) = publish_retrying(c.storage(i), &format!("node-{i}"), 1, 5).await;
        assert_eq!(r.sequence, last.sequence + 1);
        last = r;
    }
    c.converge_on(&last).await;
    c.close().await;
}

async fn snapshot(c: &Cluster) -> Vec<Snapshot> {
    let mut out = Vec::new();
    for (i, node) in c.nodes.iter().enumerate() {
        // An observer using a peer's id and credentials.
        let peer = &c.nodes[(i + 1) % c.len()].config.server_id;
        let me = &node.config.server_id;
        let probe = probe(c, peer, me, node.addr());
        probe.start(Arc::new(Silent)).await.unwrap();
        let answer = probe
            .request(
                me,
                Message::Prepare {
                    term: 0,
                    lease_ms: 0,
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        probe.stop().await.unwrap();
        let Message::Promise(protobase::protocol::Promise {
            granted: false,
            promised,
            accepted,
            ..
        }) = answer
        else {
            panic!("unexpected answer to a term-0 prepare: {answer:?}");
        };
        out.push(Snapshot {
            promised,
            latest: accepted.map(|a| a.root),
            current: node.storage().read_current_root().await.unwrap(),
            acceptor_file: std::fs::read(node.dir.path().join("cluster_acceptor")).ok(),
        });
    }
    out
}

/// A root record no one published, with a term above everything.
fn forged_root() -> RootRecord {
    RootRecord::new(
        AtomPointer::new(WalId::new_random(), 32),
        1_000_000,
        u64::MAX / 2,
        Some("mallory".into()),
    )
}

/// The messages a refused peer would need to get through to take part.
fn vote_publish_read(wal: WalId) -> [Message; 3] {
    [
        Message::Prepare {
            term: u64::MAX / 2,
            lease_ms: 60_000,
        },
        Message::Accept {
            term: u64::MAX / 2,
            root: forged_root(),
        },
        Message::PageRequest {
            wal,
            offset: 0,
            len: 1 << 20,
        },
    ]
}

// ---------------------------------------------------------------------------
// TCP
// ---------------------------------------------------------------------------

#[cfg(feature = "tcp")]
mod tcp {
    use hmac::{Hmac, KeyInit, Mac};
    use protobase::protocol::{Envelope, PROTOCOL_VERSION};
    use protobase::transports::{TcpConfig, TcpNetworkManager};
    use protobase::wire::{self, DEFAULT_MAX_FRAME_BYTES};
    use sha2::Sha256;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    pub(super) const PSK: &str = "cluster-tcp integration test key";

    /// Binds `addr` again after its previous listener closed (the listener
    /// task ends asynchronously, so the first attempts may find it still
    /// bound).
    pub(super) async fn bind_again(addr: SocketAddr) -> std::net::TcpListener {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => return l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot bind {addr} again: {e}"),
            }
        }
    }

    /// A new TCP manager of `node` (its configuration: plain or TLS) on
    /// its address again.
    pub(super) async fn manager_again(node: &Node) -> Arc<dyn NetworkManager> {
        let listener = bind_again(node.addr()).await;
        Arc::new(
            TcpNetworkManager::with_listener(node.config.tcp_config().unwrap(), listener).unwrap(),
        )
    }

    /// A manager that claims to be `as_id` and knows only `target` at `addr`.
    pub(super) fn manager(
        as_id: &str,
        target: &str,
        addr: SocketAddr,
        key: &str,
    ) -> TcpNetworkManager {
        let config = TcpConfig::new(as_id, "127.0.0.1:0", key.as_bytes().to_vec())
            .with_peer(target, addr.to_string())
            .with_read_timeout_ms(500)
            .with_retry_interval_ms(20)
            .with_max_retries(1);
        TcpNetworkManager::new(config).unwrap()
    }

    /// Waits until the server closes `stream` (EOF or reset), reading and
    /// discarding whatever it sends first.
    async fn closed_by_server(mut stream: TcpStream, what: &str) {
        let mut buf = [0u8; 256];
        let wait = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("{what}: the node kept the connection open"));
    }

    type HmacSha256 = Hmac<Sha256>;

    fn proof(key: &[u8], label: &[u8], transcript: &[u8]) -> Vec<u8> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap();
        mac.update(label);
        mac.update(transcript);
        mac.finalize().into_bytes().to_vec()
    }

    fn hello(nonce: &[u8; 32], id: &str) -> Vec<u8> {
        let mut out = b"PBT2".to_vec();
        out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        out.extend_from_slice(nonce);
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out
    }

    /// The client side of the transport's pre-shared-key handshake (see the
    /// `transports::tcp` docs), so the test can send raw bytes as an
    /// authenticated peer.
    async fn authenticated_stream(addr: SocketAddr, me: &str, server: &str) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut client_nonce = [0u8; 32];
        fastrand::fill(&mut client_nonce);
        stream.write_all(&hello(&client_nonce, me)).await.unwrap();
        let mut reply = vec![0u8; 4 + 2 + 32 + 1 + server.len()];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply[..4], b"PBT2");
        assert_eq!(&reply[39..], server.as_bytes());
        let server_nonce = &reply[6..38];
        let mut transcript = PROTOCOL_VERSION.to_le_bytes().to_vec();
        transcript.extend_from_slice(&client_nonce);
        transcript.extend_from_slice(server_nonce);
        for id in [me, server] {
            transcript.push(id.len() as u8);
            transcript.extend_from_slice(id.as_bytes());
        }
        // The client proves first; the node's proof is its acceptance.
        let mine = proof(PSK.as_bytes(), b"protobase-tcp client", &transcript);
        stream.write_all(&mine).await.unwrap();
        let mut server_proof = [0u8; 32];
        stream.read_exact(&mut server_proof).await.unwrap();
        assert_eq!(
            &server_proof[..],
            &proof(PSK.as_bytes(), b"protobase-tcp server", &transcript)[..],
            "the node proved it knows the key"
        );
        stream
    }

    fn frame(request_id: u64, message: Message) -> Vec<u8> {
        wire::encode_frame(
            &Envelope {
                version: PROTOCOL_VERSION,
                request_id,
                message,
            },
            DEFAULT_MAX_FRAME_BYTES,
        )
        .unwrap()
    }

    async fn unauthenticated_and_malformed_peers_change_nothing(n: usize) {
        let c = Cluster::start(Net::Tcp, n).await;
        let (first, _) = publish_retrying(c.storage(0), "node-0", 0, 5).await;
        c.converge_on(&first).await;
        let before = snapshot(&c).await;

        let target = &c.nodes[0];
        let (target_id, addr) = (target.config.server_id.clone(), target.addr());
        let peer_id = c.nodes[1].config.server_id.clone();

        // 1. Managers with a wrong key — under a real peer's id and under an
        //    unknown one — cannot get a vote, a root or a page through.
        for as_id in [peer_id.as_str(), "mallory"] {
            let rogue = manager(as_id, &target_id, addr, "not the cluster key");
            rogue.start(Arc::new(Silent)).await.unwrap();
            let attacks = vote_publish_read(first.pointer.wal_id);
            for attack in attacks {
                let r = rogue
                    .request(&target_id, attack.clone(), Duration::from_secs(2))
                    .await;
                assert!(
                    r.is_err(),
                    "{as_id} without the key got {r:?} for {attack:?}"
                );
            }
            rogue.stop().await.unwrap();
        }

        // 2. Raw bytes before any handshake: garbage, an oversized length prefix,
        //    a hello with a forged proof, silence.
        let mut garbage = payload(7, 4096);
        garbage[..4].copy_from_slice(b"GET ");
        let mut oversized = u32::MAX.to_le_bytes().to_vec();
        oversized.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        oversized.extend_from_slice(&[0u8; 64]);
        let mut forged = hello(&[1u8; 32], &peer_id);
        forged.extend_from_slice(&[0x55u8; 32]);
        for (what, bytes) in [
            ("garbage", garbage),
            ("an oversized length prefix", oversized),
            ("a hello with a forged proof", forged),
            ("silence", Vec::new()),
        ] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            // The node may hang up before reading everything: ignore write errors.
            let _ = s.write_all(&bytes).await;
            closed_by_server(s, what).await;
        }

        // 3. An authenticated peer sending malformed frames: the connection is
        //    closed at once, before any body is allocated or handled.
        let mut s = authenticated_stream(addr, &peer_id, &target_id).await;
        // (A well-formed request first, to show the handshake is right.)
        let heartbeat = Message::Heartbeat {
            node: peer_id.clone(),
            root_sequence: u64::MAX,
            term: u64::MAX,
        };
        s.write_all(&frame(1, heartbeat)).await.unwrap();
        let answer = wire::read_frame(&mut s, DEFAULT_MAX_FRAME_BYTES)
            .await
            .unwrap();
        assert_eq!(answer.request_id, 1);
        assert!(
            matches!(answer.message, Message::Heartbeat { .. }),
            "{answer:?}"
        );
        drop(s);
        let mut malformed: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        malformed.push(("a 4 GiB length prefix", huge));
        let mut past_limit = ((DEFAULT_MAX_FRAME_BYTES + 1) as u32)
            .to_le_bytes()
            .to_vec();
        past_limit.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        malformed.push(("a length prefix just past the limit", past_limit));
        let mut other_version = frame(3, Message::Ack);
        other_version[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
        malformed.push(("another protocol version", other_version));
        let mut junk_body = 64u32.to_le_bytes().to_vec();
        junk_body.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        junk_body.extend_from_slice(&payload(9, 64));
        malformed.push(("an undecodable body", junk_body));
        let mut trailing = frame(4, Message::Ack);
        let body_len = u32::from_le_bytes(trailing[..4].try_into().unwrap()) + 3;
        trailing[..4].copy_from_slice(&body_len.to_le_bytes());
        trailing.extend_from_slice(b"xyz");
        malformed.push(("trailing bytes after the envelope", trailing));
        for (what, bytes) in malformed {
            let mut s = authenticated_stream(addr, &peer_id, &target_id).await;
            let _ = s.write_all(&bytes).await;
            closed_by_server(s, what).await;
        }
        // A vote request smuggled after a malformed frame on the same
        // connection is never handled.
        let mut s = authenticated_stream(addr, &peer_id, &target_id).await;
        let mut bytes = u32::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        bytes.extend_from_slice(&frame(
            5,
            Message::Prepare {
                term: u64::MAX / 2,
                lease_ms: 60_000,
            },
        ));
        let _ = s.write_all(&bytes).await;
        closed_by_server(s, "a frame after an oversized prefix").await;

        unchanged_and_still_working(c, &before, first).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_read_each_others_records() {
        records_written_on_one_node_are_read_on_every_other(Net::Tcp, 3).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn five_nodes_read_each_others_records() {
        records_written_on_one_node_are_read_on_every_other(Net::Tcp, 5).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_serialise_concurrent_root_updates() {
        concurrent_root_updates_are_serialised(Net::Tcp, 3).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn five_nodes_serialise_concurrent_root_updates() {
        concurrent_root_updates_are_serialised(Net::Tcp, 5).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_a_killed_node_catches_up_and_publishes() {
        a_killed_node_catches_up_and_publishes(Net::Tcp, 3).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn five_nodes_a_killed_node_catches_up_and_publishes() {
        a_killed_node_catches_up_and_publishes(Net::Tcp, 5).await;
    }

    /// One host (127.0.0.2) opens 2,200 idle connections that never
    /// authenticate against two of three nodes: commits go on, a node
    /// restarted meanwhile rejoins and publishes, and the flooding host
    /// never holds more than `MAX_HANDSHAKES_PER_SOURCE` handshakes at a node
    /// (the rest are closed at once).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_idle_connections_stops_no_commit() {
        use protobase::transports::tcp::MAX_HANDSHAKES_PER_SOURCE;
        let mut c = Cluster::start(Net::Tcp, 3).await;
        let (first, _) = publish_retrying(c.storage(0), "node-0", 0, 5).await;
        c.converge_on(&first).await;
        let mut flood = Vec::new();
        for i in 0..2_200 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            if let Ok(s) = socket.connect(c.nodes[i % 2].addr()).await {
                flood.push(s);
            }
        }
        assert!(
            flood.len() >= 2_000,
            "only {} connections opened",
            flood.len()
        );
        // While the flood is held: commits on the flooded nodes, and the
        // third node killed, restarted, and publishing.
        let mut last = first;
        for k in 1..4 {
            let (r, _) = publish_retrying(c.storage(k as usize % 2), "flooded", k, 5).await;
            last = r;
        }
        c.kill(2).await;
        c.restart(2).await;
        let (r, _) = publish_retrying(c.storage(2), "node-2", 9, 5).await;
        assert!(r.sequence > last.sequence);
        c.converge_on(&r).await;
        // Most of the flood was closed at once: at most the cap per node
        // waited for a handshake (closed later, at its deadline).
        let mut open = 0;
        let mut buf = [0u8; 16];
        for s in &flood {
            match s.try_read(&mut buf) {
                Ok(0) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
                _ => {}
            }
        }
        assert!(
            open <= 2 * MAX_HANDSHAKES_PER_SOURCE,
            "{open} flood connections still open"
        );
        drop(flood);
        c.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_refuse_unauthenticated_and_malformed_peers() {
        unauthenticated_and_malformed_peers_change_nothing(3).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn five_nodes_refuse_unauthenticated_and_malformed_peers() {
        unauthenticated_and_malformed_peers_change_nothing(5).await;
    }
}

/// A build without `tcp-tls` refuses a configuration asking for TLS over
/// TCP instead of falling back to the pre-shared key.
#[cfg(all(feature = "tcp", not(feature = "tcp-tls")))]
#[test]
fn tls_over_tcp_without_its_feature_is_refused_not_downgraded() {
    let config = base_config()
        .with_psk("a key that must not be used")
        .with_transport(protobase::cluster::Transport::TcpTls);
    for err in [
        config.tcp_config().map(|_| ()).unwrap_err(),
        config.network_manager().map(|_| ()).unwrap_err(),
    ] {
        assert!(err.to_string().contains("feature `tcp-tls`"), "{err}");
    }
}

// ---------------------------------------------------------------------------
// Mutual TLS: QUIC and TLS over TCP
// ---------------------------------------------------------------------------

#[cfg(any(feature = "quic", feature = "tcp-tls"))]
mod tls {
    use std::path::Path;

    use protobase::NetworkError;
    use protobase::cluster::{PeerAddress, TlsFiles, Transport};
    use protobase::transports::{TlsConfig, Trust, generate_dev_certs};

    use super::*;

    /// The TLS identity of `id` from a directory written by
    /// `DevCerts::write_to` (`ca.pem`, `<id>.pem`, `<id>.key`).
    pub(super) fn tls_of(dir: &Path, id: &str) -> TlsConfig {
        let trust = Trust::ca_from_pem_file(dir.join("ca.pem")).unwrap();
        TlsConfig::from_pem_files(
            dir.join(format!("{id}.pem")),
            dir.join(format!("{id}.key")),
            trust,
        )
        .unwrap()
    }

    /// A manager of `net` that presents `tls` as `as_id` and knows only
    /// `target` at `addr`.
    pub(super) fn manager(
        net: Net,
        as_id: &str,
        target: &str,
        addr: SocketAddr,
        tls: TlsConfig,
    ) -> Arc<dyn NetworkManager> {
        match net {
            #[cfg(feature = "quic")]
            Net::Quic => {
                let config = protobase::transports::QuicConfig::new(as_id, "127.0.0.1:0", tls)
                    .with_peer(target, addr.to_string())
                    .with_read_timeout_ms(500)
                    .with_retry_interval_ms(20)
                    .with_max_retries(1);
                Arc::new(protobase::transports::QuicNetworkManager::new(config).unwrap())
            }
            #[cfg(feature = "tcp-tls")]
            Net::TcpTls => {
                let config =
                    protobase::transports::TcpConfig::new(as_id, "127.0.0.1:0", Vec::new())
                        .with_tls(tls)
                        .with_peer(target, addr.to_string())
                        .with_read_timeout_ms(500)
                        .with_retry_interval_ms(20)
                        .with_max_retries(1);
                Arc::new(protobase::transports::TcpNetworkManager::new(config).unwrap())
            }
            #[allow(unreachable_patterns)]
            other => panic!("{other:?} is not a TLS transport"),
        }
    }

    fn transport_of(net: Net) -> Transport {
        match net {
            #[cfg(feature = "quic")]
            Net::Quic => Transport::Quic,
            #[cfg(feature = "tcp-tls")]
            Net::TcpTls => Transport::TcpTls,
            #[allow(unreachable_patterns)]
            other => panic!("{other:?} is not a TLS transport"),
        }
    }

    /// Nodes whose certificates come from another CA — under a member's id
    /// and under their own, as bare managers and as a whole storage node —
    /// cannot vote, publish or read pages, and change nothing.
    async fn untrusted_certificates_cannot_vote_or_publish(net: Net, n: usize) {
        let c = Cluster::start(net, n).await;
        let (first, _) = publish_retrying(c.storage(0), "node-0", 0, 5).await;
        c.converge_on(&first).await;
        let before = snapshot(&c).await;

        let target = &c.nodes[0];
        let (target_id, addr) = (target.config.server_id.clone(), target.addr());
        let peer_id = c.nodes[1].config.server_id.clone();
        let foreign_dir = tempfile::tempdir().unwrap();
        generate_dev_certs(&[peer_id.as_str(), "mallory"])
            .unwrap()
            .write_to(foreign_dir.path())
            .unwrap();

        // 1. Bare managers: the TLS handshake fails, nothing is handled.
        for as_id in [peer_id.as_str(), "mallory"] {
            let rogue = manager(
                net,
                as_id,
                &target_id,
                addr,
                tls_of(foreign_dir.path(), as_id),
            );
            rogue.start(Arc::new(Silent)).await.unwrap();
            for attack in vote_publish_read(first.pointer.wal_id) {
                let r = rogue
                    .request(&target_id, attack.clone(), Duration::from_secs(2))
                    .await;
                assert!(
                    matches!(r, Err(NetworkError::Protocol { .. })),
                    "{as_id} with a foreign certificate got {r:?} for {attack:?}"
                );
            }
            rogue.stop().await.unwrap();
        }

        // 2. A whole storage node with a foreign certificate, configured
        //    (transport and PEM files) like a member: its root update fails.
        let mut servers = target.config.servers.clone();
        servers.push(PeerAddress {
            id: "mallory".into(),
            address: "127.0.0.1:0".into(),
        });
        let mut mallory_config = base_config()
            .with_host("127.0.0.1")
            .with_port(0)
            .with_servers(servers)
            .with_transport(transport_of(net))
            .with_tls(TlsFiles::with_ca(
                foreign_dir.path().join("mallory.pem"),
                foreign_dir.path().join("mallory.key"),
                foreign_dir.path().join("ca.pem"),
            ))
            .with_vote_timeout_ms(1_000);
        mallory_config.server_id = "mallory".into();
        let mallory_dir = tempfile::tempdir().unwrap();
        let mallory = StorageBuilder::standalone(mallory_dir.path())
            .cluster(mallory_config)
            .build()
            .await
            .unwrap();
        let attempt = publish(&mallory, "mallory", 0).await;
        assert!(attempt.is_err(), "an untrusted node published {attempt:?}");
        mallory.close().await.unwrap();

        unchanged_and_still_working(c, &before, first).await;
    }

    /// The cluster scenarios on one TLS transport.
    macro_rules! tls_cluster_tests {
        ($module:ident, $feature:literal, $net:expr) => {
            #[cfg(feature = $feature)]
            mod $module {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn three_nodes_read_each_others_records() {
                    records_written_on_one_node_are_read_on_every_other($net, 3).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn three_nodes_serialise_concurrent_root_updates() {
                    concurrent_root_updates_are_serialised($net, 3).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn three_nodes_a_killed_node_catches_up_and_publishes() {
                    a_killed_node_catches_up_and_publishes($net, 3).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn three_nodes_refuse_untrusted_certificates() {
                    untrusted_certificates_cannot_vote_or_publish($net, 3).await;
                }
            }
        };
    }

    tls_cluster_tests!(quic, "quic", Net::Quic);
    tls_cluster_tests!(tcp_tls, "tcp-tls", Net::TcpTls);
}

#[cfg(feature = "quic")]
mod transport_selection {
    use protobase::cluster::{PeerAddress, TlsFiles, Transport};
    use protobase::transports::generate_dev_certs;

    use super::*;

    fn single_node(dir: &std::path::Path) -> ClusterConfig {
        let mut config = base_config()
            .with_port(0)
            .with_servers([PeerAddress::new("solo", "127.0.0.1:0")])
            .with_psk("a cluster key of some length")
            .with_tls(TlsFiles::with_ca(
                dir.join("solo.pem"),
                dir.join("solo.key"),
                dir.join("ca.pem"),
            ));
        config.server_id = "solo".into();
        config
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_builder_call_chooses_quic_over_the_configured_transport() {
        let certs = tempfile::tempdir().unwrap();
        generate_dev_certs(&["solo"])
            .unwrap()
            .write_to(certs.path())
            .unwrap();
        let space = tempfile::tempdir().unwrap();
        let config = single_node(certs.path()).with_transport(Transport::Tcp);
        let storage = StorageBuilder::standalone(space.path())
            .cluster(config)
            .transport(Transport::Quic)
            .build()
            .await
            .unwrap();
        let network = format!("{:?}", storage.network().unwrap());
        assert!(network.starts_with("QuicNetworkManager"), "{network}");
        // A one-node cluster publishes on its own majority.
        let ptr = storage.push_bytes(b"over quic").await.unwrap();
        assert_eq!(storage.set_root(ptr).await.unwrap().sequence, 1);
        storage.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quic_without_certificates_is_refused_by_the_builder() {
        let space = tempfile::tempdir().unwrap();
        let mut config = single_node(space.path()).with_transport(Transport::Quic);
        config.tls = None;
        let err = StorageBuilder::standalone(space.path())
            .cluster(config)
            .build()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        assert!(err.to_string().contains("tls"), "{err}");
    }
}
