//! The [`NetworkManager`] conformance suite.
//!
//! A transport provides a [`NetworkHarness`] that builds `n` nodes knowing
//! each other, and runs each check (or [`run_all`]) from its tests:
//!
//! ```text
//! #[tokio::test(start_paused = true)]
//! async fn in_process_request_response() {
//!     protobase::conformance::network::request_response(&MyHarness::default()).await;
//! }
//! ```
//!
//! The checks panic (like assertions) on a violation. They use the test
//! handler [`SuiteHandler`], never sleep to wait for something, and guard
//! every wait that could hang with a generous timeout ([`HANG_GUARD`]), so
//! they work on a real clock (TCP) and on tokio's paused clock (in-process).
//!
//! | check | what must hold |
//! |---|---|
//! | [`request_response`] | the response comes back, the handler sees the sender's id, `None` answers `Ack`, unknown peers and stopped nodes are refused |
//! | [`broadcast_with_dead_peer`] | every peer but self gets the message; the dead one reports an error, the others succeed |
//! | [`timeout_on_silent_peer`] | a peer that never answers yields `Timeout`, and its link keeps working |
//! | [`large_payloads`] | payloads just under the frame limit travel both ways; oversized requests and responses are refused with an error, not a hang |
//! | [`concurrent_requests`] | hundreds of concurrent requests to one peer each get their own response |
//! | [`peer_restart`] | requests fail while a peer is down and work again once it starts again |
//! | [`stop_requester_in_flight`] | `stop` fails in-flight requests promptly with `Stopped` |
//! | [`stop_responder_in_flight`] | a responder's `stop` fails its peers' requests promptly, and no handler call is running or starts after it returns |
//! | [`malformed_frames`] | on a raw stream from an authenticated peer, oversized (refused at the header, before any body byte), wrong-version, undecodable and truncated frames are never answered or handled, and the channel is closed; a well-formed frame on the same kind of stream is answered |
//!
//! [`malformed_frames`] needs [`NetworkHarness::raw_stream`]; transports
//! without bytes on a wire (in-process) skip it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::network::{MessageHandler, NetworkError, NetworkManager, PeerId};
use crate::protocol::{Envelope, Message, PROTOCOL_VERSION};
use crate::types::WalId;

/// A raw byte channel to a node, past its authentication (see
/// [`NetworkHarness::raw_stream`]).
pub trait RawStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> RawStream for T {}

/// Timeout of requests that are expected to succeed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on anything that must finish "promptly"; exceeding it means a
/// hang.
pub const HANG_GUARD: Duration = Duration::from_secs(10);
/// Timeout used against a peer that never answers.
pub const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

/// Builds nodes of one transport for the suite.
#[async_trait]
pub trait NetworkHarness: Send + Sync {
    /// `n` fresh nodes, not started, each having all the others as peers
    /// (and only them).
    async fn nodes(&self, n: usize) -> Vec<Arc<dyn NetworkManager>>;

    /// The largest frame body the nodes send and accept.
    fn max_frame_bytes(&self) -> usize;

    /// A fresh channel from node `from` to node `to` (both built by the
    /// last [`nodes`](Self::nodes) call and started), authenticated as
    /// `from`, on which the suite writes raw frame bytes: what the transport
    /// carries one request on (a TCP connection, a QUIC stream). `None` (the
    /// default) when the transport has no bytes on a wire; then
    /// [`malformed_frames`] is skipped.
    async fn raw_stream(&self, from: &PeerId, to: &PeerId) -> Option<Box<dyn RawStream>> {
        let _ = (from, to);
        None
    }
}

/// The handler the suite installs. What it does depends on the message:
///
/// - `Heartbeat { root_sequence, term, .. }`: answers
///   `Heartbeat { node: "<self>:<from>", root_sequence, term }` (after a few
///   yields for some terms, to mix the order of answers);
/// - `PageRequest { wal, offset, len }`: answers `len` bytes of `0x5a`;
/// - `PageResponse` (used as a large request): echoes it;
/// - `Release`: never answers;
/// - `Ack`: returns `None`;
/// - anything else: answers `Error`.
pub struct SuiteHandler {
    id: PeerId,
    calls: AtomicUsize,
    active: Arc<AtomicUsize>,
    entered: Notify,
}

impl SuiteHandler {
    /// A handler for node `id`.
    pub fn new(id: impl Into<PeerId>) -> Arc<Self> {
        Arc::new(SuiteHandler {
            id: id.into(),
            calls: AtomicUsize::new(0),
            active: Arc::new(AtomicUsize::new(0)),
            entered: Notify::new(),
        })
    }

    /// Handler calls started so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Handler calls running now (a call counts until its future is
    /// dropped, whether it finished or was cancelled).
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` calls have started (bounded by
    /// [`HANG_GUARD`]).
    pub async fn wait_for_calls(&self, n: usize) {
        let wait = async {
            loop {
                let notified = self.entered.notified();
                if self.calls() >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(HANG_GUARD, wait)
            .await
            .unwrap_or_else(|_| panic!("{}: fewer than {n} handler calls arrived", self.id));
    }
}

impl fmt::Debug for SuiteHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuiteHandler")
            .field("id", &self.id)
            .field("calls", &self.calls())
            .field("active", &self.active())
            .finish()
    }
}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl MessageHandler for SuiteHandler {
    async fn handle(&self, from: PeerId, message: Message) -> Option<Message> {
        self.active.fetch_add(1, Ordering::SeqCst);
        let _active = ActiveGuard(Arc::clone(&self.active));
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.entered.notify_waiters();
        match message {
            Message::Heartbeat {
                root_sequence,
                term,
                ..
            } => {
                for _ in 0..term % 4 {
                    tokio::task::yield_now().await;
                }
                Some(Message::Heartbeat {
                    node: format!("{}:{from}", self.id),
                    root_sequence,
                    term,
                })
            }
            Message::PageRequest { wal, offset, len } => Some(Message::PageResponse {
                wal,
                offset,
                data: Some(Bytes::from(vec![0x5a; usize::try_from(len).unwrap_or(0)])),
            }),
            echo @ Message::PageResponse { .. } => Some(echo),
            Message::Release { .. } => std::future::pending().await,
            Message::Ack => None,
            other => Some(Message::Error {
                message: format!("suite handler does not answer {other:?}"),
            }),
        }
    }
}

fn heartbeat(sequence: u64) -> Message {
    Message::Heartbeat {
        node: "suite".into(),
        root_sequence: sequence,
        term: sequence,
    }
}

fn silent() -> Message {
    Message::Release {
        term: 1,
        holder: "suite".into(),
    }
}

fn expect_echo(response: Result<Message, NetworkError>, responder: &str, from: &str, seq: u64) {
    match response {
        Ok(Message::Heartbeat {
            node,
            root_sequence,
            term,
        }) => {
            assert_eq!(
                node,
                format!("{responder}:{from}"),
                "wrong responder or sender id"
            );
            assert_eq!(
                (root_sequence, term),
                (seq, seq),
                "response to another request"
            );
        }
        other => panic!("{from} -> {responder}: expected the heartbeat echo #{seq}, got {other:?}"),
    }
}

async fn guarded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {HANG_GUARD:?}"))
}

/// Builds `n` nodes and starts each with a fresh [`SuiteHandler`].
pub async fn started<H: NetworkHarness + ?Sized>(
    harness: &H,
    n: usize,
) -> (Vec<Arc<dyn NetworkManager>>, Vec<Arc<SuiteHandler>>) {
    let nodes = harness.nodes(n).await;
    assert_eq!(nodes.len(), n, "harness built the wrong number of nodes");
    let mut handlers = Vec::new();
    for node in &nodes {
        let handler = SuiteHandler::new(node.local_id());
        node.start(handler.clone()).await.expect("start");
        handlers.push(handler);
    }
    (nodes, handlers)
}

async fn stop_all(nodes: &[Arc<dyn NetworkManager>]) {
    for node in nodes {
        guarded("stop", node.stop()).await.expect("stop");
    }
}

/// Request/response basics, peer lists, `None` → `Ack`, unknown peers, use
/// after `stop`.
pub async fn request_response<H: NetworkHarness + ?Sized>(harness: &H) {
    let (nodes, handlers) = started(harness, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    assert_ne!(a_id, b_id);

    let peers: Vec<PeerId> = a.peers().into_iter().map(|p| p.id).collect();
    assert_eq!(
        peers,
        vec![b_id.clone()],
        "peers() must list the others, not self"
    );

    for seq in 1..=3 {
        let response = guarded("request", a.request(&b_id, heartbeat(seq), REQUEST_TIMEOUT)).await;
        expect_echo(response, &b_id, &a_id, seq);
    }
    let back = guarded("request", b.request(&a_id, heartbeat(9), REQUEST_TIMEOUT)).await;
    expect_echo(back, &a_id, &b_id, 9);
    assert_eq!(handlers[1].calls(), 3);
    assert_eq!(handlers[0].calls(), 1);

    let ack = guarded("request", a.request(&b_id, Message::Ack, REQUEST_TIMEOUT)).await;
    assert_eq!(
        ack,
        Ok(Message::Ack),
        "a handler returning None must answer Ack"
    );

    assert!(
        a.peers().iter().any(|p| p.id == b_id && p.alive),
        "a peer that just answered must be reported alive"
    );

    let nobody: PeerId = "no-such-node".into();
    assert!(matches!(
        a.request(&nobody, heartbeat(1), REQUEST_TIMEOUT).await,
        Err(NetworkError::UnknownPeer(p)) if p == nobody
    ));
    assert!(
        matches!(
            a.request(&a_id, heartbeat(1), REQUEST_TIMEOUT).await,
            Err(NetworkError::UnknownPeer(_))
        ),
        "self is not a peer"
    );

    stop_all(&nodes).await;
    assert_eq!(
        a.request(&b_id, heartbeat(1), REQUEST_TIMEOUT).await,
        Err(NetworkError::Stopped)
    );
    let after = a.broadcast(heartbeat(1), REQUEST_TIMEOUT).await;
    assert!(after.iter().all(|(_, r)| *r == Err(NetworkError::Stopped)));
    // Stopping twice is fine.
    guarded("stop", a.stop()).await.expect("second stop");
}

/// Broadcast reaches every peer but self; a dead peer's entry is an error and
/// does not spoil the others.
pub async fn broadcast_with_dead_peer<H: NetworkHarness + ?Sized>(harness: &H) {
    let (nodes, handlers) = started(harness, 4).await;
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.local_id()).collect();
    guarded("stop", nodes[3].stop()).await.expect("stop");

    let results = guarded(
        "broadcast",
        nodes[0].broadcast(heartbeat(7), REQUEST_TIMEOUT),
    )
    .await;
    let reported: BTreeSet<&PeerId> = results.iter().map(|(p, _)| p).collect();
    let expected: BTreeSet<&PeerId> = ids[1..].iter().collect();
    assert_eq!(reported, expected, "one result per peer, self excluded");
    assert_eq!(results.len(), 3);
    for (peer, result) in results {
        if peer == ids[3] {
            assert!(
                matches!(
                    result,
                    Err(NetworkError::Unreachable { .. } | NetworkError::Timeout { .. })
                ),
                "dead peer must report an error, got {result:?}"
            );
        } else {
            expect_echo(result, &peer, &ids[0], 7);
        }
    }
    assert_eq!(handlers[0].calls(), 0, "broadcast must not deliver to self");
    assert_eq!(handlers[1].calls(), 1);
    assert_eq!(handlers[2].calls(), 1);
    assert_eq!(handlers[3].calls(), 0);
    stop_all(&nodes).await;
}

/// A peer that never answers yields `Timeout`; afterwards the link to it
/// still works.
pub async fn timeout_on_silent_peer<H: NetworkHarness + ?Sized>(harness: &H) {
    let (nodes, handlers) = started(harness, 2).await;
    let b_id = nodes[1].local_id();
    let result = guarded("request", nodes[0].request(&b_id, silent(), SHORT_TIMEOUT)).await;
    assert_eq!(
        result,
        Err(NetworkError::Timeout {
            peer: b_id.clone(),
            timeout: SHORT_TIMEOUT
        })
    );
    assert_eq!(handlers[1].calls(), 1, "the request did reach the peer");
    let after = guarded(
        "request",
        nodes[0].request(&b_id, heartbeat(2), REQUEST_TIMEOUT),
    )
    .await;
    expect_echo(after, &b_id, &nodes[0].local_id(), 2);
    stop_all(&nodes).await;
}

/// Payloads just under the frame limit travel in both directions; oversized
/// requests are refused with an error (before reaching the peer) and
/// oversized responses come back as an error, not a hang.
pub async fn large_payloads<H: NetworkHarness + ?Sized>(harness: &H) {
    let limit = harness.max_frame_bytes();
    let (nodes, handlers) = started(harness, 2).await;
    let (a, b_id) = (&nodes[0], nodes[1].local_id());
    let wal = WalId::new_random();
    // The envelope around the data costs well under 1 KiB.
    let near = limit.saturating_sub(1024);
    let big = Message::PageResponse {
        wal,
        offset: 1,
        data: Some(Bytes::from(vec![0xc3; near])),
    };
    let echoed = guarded(
        "large request",
        a.request(&b_id, big.clone(), REQUEST_TIMEOUT),
    )
    .await;
    assert_eq!(
        echoed.as_ref().ok(),
        Some(&big),
        "near-limit payload must round-trip"
    );

    let fetched = guarded(
        "large response",
        a.request(
            &b_id,
            Message::PageRequest {
                wal,
                offset: 0,
                len: near as u64,
            },
            REQUEST_TIMEOUT,
        ),
    )
    .await;
    match fetched {
        Ok(Message::PageResponse {
            data: Some(data), ..
        }) => assert_eq!(data.len(), near),
        other => panic!("expected a {near}-byte page, got {other:?}"),
    }

    let calls_before = handlers[1].calls();
    let oversized = Message::PageResponse {
        wal,
        offset: 2,
        data: Some(Bytes::from(vec![0x3c; limit + 1])),
    };
    let refused = guarded(
        "oversized request",
        a.request(&b_id, oversized, REQUEST_TIMEOUT),
    )
    .await;
    assert!(
        matches!(refused, Err(NetworkError::Protocol { .. })),
        "an oversized request must be refused with a protocol error, got {refused:?}"
    );
    assert_eq!(
        handlers[1].calls(),
        calls_before,
        "it must not reach the peer"
    );

    let too_big_answer = guarded(
        "oversized response",
        a.request(
            &b_id,
            Message::PageRequest {
                wal,
                offset: 0,
                len: limit as u64 + 1,
            },
            REQUEST_TIMEOUT,
        ),
    )
    .await;
    assert!(
        matches!(
            too_big_answer,
            Ok(Message::Error { .. }) | Err(NetworkError::Protocol { .. })
        ),
        "an oversized response must come back as an error, got {too_big_answer:?}"
    );

    let after = guarded("request", a.request(&b_id, heartbeat(5), REQUEST_TIMEOUT)).await;
    expect_echo(after, &b_id, &a.local_id(), 5);
    stop_all(&nodes).await;
}

/// `count` concurrent requests from one node to one peer (sharing its
/// connection, where the transport has one) each get their own response.
pub async fn concurrent_requests<H: NetworkHarness + ?Sized>(harness: &H, count: u64) {
    let (nodes, handlers) = started(harness, 2).await;
    let (a, b_id) = (Arc::clone(&nodes[0]), nodes[1].local_id());
    let a_id = a.local_id();
    let mut tasks = tokio::task::JoinSet::new();
    for seq in 0..count {
        let a = Arc::clone(&a);
        let b_id = b_id.clone();
        tasks.spawn(async move { (seq, a.request(&b_id, heartbeat(seq), REQUEST_TIMEOUT).await) });
    }
    let mut seen = BTreeSet::new();
    guarded("concurrent requests", async {
        while let Some(joined) = tasks.join_next().await {
            let (seq, response) = joined.expect("request task");
            expect_echo(response, &b_id, &a_id, seq);
            seen.insert(seq);
        }
    })
    .await;
    assert_eq!(seen.len() as u64, count);
    assert_eq!(handlers[1].calls() as u64, count);
    stop_all(&nodes).await;
}

/// While a peer is stopped, requests to it fail; once it starts again (with a
/// new handler) they work.
pub async fn peer_restart<H: NetworkHarness + ?Sized>(harness: &H) {
    let (nodes, _handlers) = started(harness, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    expect_echo(
        guarded("request", a.request(&b_id, heartbeat(1), REQUEST_TIMEOUT)).await,
        &b_id,
        &a_id,
        1,
    );

    guarded("stop", b.stop()).await.expect("stop");
    let down = guarded(
        "request to a stopped peer",
        a.request(&b_id, heartbeat(2), REQUEST_TIMEOUT),
    )
    .await;
    assert!(
        matches!(
            down,
            Err(NetworkError::Unreachable { .. } | NetworkError::Timeout { .. })
        ),
        "a stopped peer must not answer, got {down:?}"
    );

    let fresh = SuiteHandler::new(b_id.clone());
    b.start(fresh.clone()).await.expect("restart");
    expect_echo(
        guarded(
            "request after restart",
            a.request(&b_id, heartbeat(3), REQUEST_TIMEOUT),
        )
        .await,
        &b_id,
        &a_id,
        3,
    );
    assert_eq!(fresh.calls(), 1, "the new handler answers");
    // And the restarted node can reach the other one.
    expect_echo(
        guarded(
            "request from the restarted node",
            b.request(&a_id, heartbeat(4), REQUEST_TIMEOUT),
        )
        .await,
        &a_id,
        &b_id,
        4,
    );
    stop_all(&nodes).await;
}

/// Stopping a node fails its in-flight requests promptly with `Stopped`.
pub async fn stop_requester_in_flight<H: NetworkHarness + ?Sized>(harness: &H) {
    let (nodes, handlers) = started(harness, 2).await;
    let (a, b_id) = (Arc::clone(&nodes[0]), nodes[1].local_id());
    let mut tasks = tokio::task::JoinSet::new();
    let long = HANG_GUARD * 6;
    for _ in 0..20 {
        let a = Arc::clone(&a);
        let b_id = b_id.clone();
        tasks.spawn(async move { a.request(&b_id, silent(), long).await });
    }
    handlers[1].wait_for_calls(1).await;
    guarded("stop with requests in flight", a.stop())
        .await
        .expect("stop");
    guarded("in-flight requests after stop", async {
        while let Some(joined) = tasks.join_next().await {
            let result = joined.expect("request task");
            assert_eq!(result, Err(NetworkError::Stopped));
        }
    })
    .await;
    stop_all(&nodes).await;
}

/// Stopping a node while its handler calls are running: the requesters get
/// an error promptly, no handler call is still running when `stop` returns,
/// and none starts afterwards.
pub async fn stop_responder_in_flight<H: NetworkHarness + ?Sized>(harness: &H) {
    let (nodes, handlers) = started(harness, 2).await;
    let (a, b) = (Arc::clone(&nodes[0]), Arc::clone(&nodes[1]));
    let b_id = b.local_id();
    let mut tasks = tokio::task::JoinSet::new();
    let long = HANG_GUARD * 6;
    for _ in 0..10 {
        let a = Arc::clone(&a);
        let b_id = b_id.clone();
        tasks.spawn(async move { a.request(&b_id, silent(), long).await });
    }
    handlers[1].wait_for_calls(10).await;
    assert!(handlers[1].active() > 0);

    guarded("stop with handler calls running", b.stop())
        .await
        .expect("stop");
    assert_eq!(
        handlers[1].active(),
        0,
        "handler calls still running after stop returned"
    );
    let calls = handlers[1].calls();

    guarded("requests to a stopped responder", async {
        while let Some(joined) = tasks.join_next().await {
            let result = joined.expect("request task");
            assert!(
                matches!(result, Err(NetworkError::Unreachable { .. })),
                "expected Unreachable from the stopped responder, got {result:?}"
            );
        }
    })
    .await;
    let later = guarded(
        "request to a stopped responder",
        a.request(&b_id, heartbeat(1), SHORT_TIMEOUT),
    )
    .await;
    assert!(later.is_err());
    assert_eq!(
        handlers[1].calls(),
        calls,
        "handler called after stop returned"
    );
    stop_all(&nodes).await;
}

fn frame_of(message: Message, request_id: u64) -> Vec<u8> {
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
        request_id,
        message,
    };
    crate::wire::encode_frame(&envelope, crate::wire::DEFAULT_MAX_FRAME_BYTES)
        .expect("a heartbeat fits a frame")
}

fn frame_header(length: u32, version: u16) -> Vec<u8> {
    let mut header = length.to_le_bytes().to_vec();
    header.extend_from_slice(&version.to_le_bytes());
    header
}

/// Reads what the node sends until it ends the channel (end of stream or an
/// error), bounded by [`HANG_GUARD`].
async fn drain_until_closed(what: &str, stream: &mut dyn RawStream) -> Vec<u8> {
    guarded(what, async {
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
}

/// Hostile frames from an authenticated peer on raw streams: none is
/// answered or reaches the handler, each channel is closed by the node, and
/// the node keeps serving. An oversized length prefix is sent without any
/// body: the node must refuse it from the header alone (it never waits for,
/// or allocates, the announced body).
pub async fn malformed_frames<H: NetworkHarness + ?Sized>(harness: &H) {
    let limit = harness.max_frame_bytes();
    let (nodes, handlers) = started(harness, 2).await;
    let (a_id, b_id) = (nodes[0].local_id(), nodes[1].local_id());
    let limit_u32 = u32::try_from(limit).unwrap_or(u32::MAX);
    let mut wrong_version = frame_of(heartbeat(2), 2);
    wrong_version[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
    let mut garbage = frame_header(8, PROTOCOL_VERSION);
    garbage.extend_from_slice(&[0xc1; 8]);
    let mut padded = frame_of(heartbeat(3), 3);
    let body_len =
        u32::try_from(padded.len() - crate::wire::FRAME_HEADER_LEN + 4).expect("small frame");
    padded[..4].copy_from_slice(&body_len.to_le_bytes());
    padded.extend_from_slice(&[0; 4]);
    let truncated = frame_of(heartbeat(4), 4)[..10].to_vec();
    // (name, bytes, end our side after writing)
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "4 GiB length prefix",
            frame_header(u32::MAX, PROTOCOL_VERSION),
            false,
        ),
        (
            "length prefix one byte over the limit",
            frame_header(limit_u32.saturating_add(1), PROTOCOL_VERSION),
            false,
        ),
        ("wrong version", wrong_version, false),
        ("undecodable body", garbage, false),
        ("trailing bytes in the body", padded, false),
        ("truncated frame", truncated, true),
    ];
    for (name, bytes, end) in cases {
        let Some(mut stream) = harness.raw_stream(&a_id, &b_id).await else {
            tracing::info!("transport has no raw streams; malformed_frames skipped");
            stop_all(&nodes).await;
            return;
        };
        // The node may close before reading everything: ignore write errors.
        let _ = stream.write_all(&bytes).await;
        let _ = stream.flush().await;
        if end {
            let _ = stream.shutdown().await;
        }
        let answer = drain_until_closed(name, stream.as_mut()).await;
        assert!(
            answer.is_empty(),
            "{name}: the node answered a malformed frame ({} bytes)",
            answer.len()
        );
    }
    assert_eq!(
        handlers[1].calls(),
        0,
        "a malformed frame reached the handler"
    );

    // The same kind of stream with a well-formed frame is answered, so the
    // refusals above are about the frames.
    let mut stream = harness
        .raw_stream(&a_id, &b_id)
        .await
        .expect("raw stream for the well-formed frame");
    stream
        .write_all(&frame_of(heartbeat(77), 77))
        .await
        .expect("write a well-formed frame");
    stream.flush().await.expect("flush");
    let response = guarded(
        "answer to a well-formed raw frame",
        crate::wire::read_frame(stream.as_mut(), limit),
    )
    .await
    .expect("a well-formed frame is answered");
    assert_eq!(response.request_id, 77);
    expect_echo(Ok(response.message), &b_id, &a_id, 77);
    assert_eq!(handlers[1].calls(), 1);

    let after = guarded(
        "request",
        nodes[0].request(&b_id, heartbeat(5), REQUEST_TIMEOUT),
    )
    .await;
    expect_echo(after, &b_id, &a_id, 5);
    stop_all(&nodes).await;
}

/// Every check, in order (concurrency with 200 requests).
pub async fn run_all<H: NetworkHarness + ?Sized>(harness: &H) {
    request_response(harness).await;
    broadcast_with_dead_peer(harness).await;
    timeout_on_silent_peer(harness).await;
    large_payloads(harness).await;
    concurrent_requests(harness, 200).await;
    peer_restart(harness).await;
    stop_requester_in_flight(harness).await;
    stop_responder_in_flight(harness).await;
    malformed_frames(harness).await;
}
