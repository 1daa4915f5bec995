#![cfg_attr(
    not(any(feature = "tcp", feature = "quic")),
    allow(dead_code, unused_macros, unused_imports)
)]
//! What the transports share.
//!
//! [`TaskSet`] is a closable set of tasks: the transports' way to keep the
//! promise that no handler runs after `stop` returns. Every task a transport
//! starts for one run of a node (listener, connection readers and writers,
//! handler calls) is spawned here. [`TaskSet::shutdown`] closes the set, so
//! later spawns are refused, aborts every task and waits until each has been
//! dropped: when it returns, none of them is running or will run again.

use std::future::Future;

use parking_lot::Mutex;
use tokio::task::{AbortHandle, JoinSet};

/// Tasks of one run of a node.
#[derive(Debug)]
pub(crate) struct TaskSet {
    set: Mutex<Option<JoinSet<()>>>,
}

impl TaskSet {
    /// An open, empty set.
    pub(crate) fn new() -> Self {
        TaskSet {
            set: Mutex::new(Some(JoinSet::new())),
        }
    }

    /// Spawns `task` unless the set is closed (then `None`, and the task is
    /// dropped unpolled).
    pub(crate) fn spawn<F>(&self, task: F) -> Option<AbortHandle>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut guard = self.set.lock();
        let set = guard.as_mut()?;
        // Reap finished tasks so a long-running node does not accumulate them.
        while let Some(result) = set.try_join_next() {
            if let Err(e) = result
                && e.is_panic()
            {
                tracing::error!(error = %e, "transport task panicked");
            }
        }
        Some(set.spawn(task))
    }

    /// Closes the set, aborts every task and waits until all are gone.
    ///
    /// Must not be awaited from inside one of the set's own tasks.
    pub(crate) async fn shutdown(&self) {
        let set = self.set.lock().take();
        if let Some(mut set) = set {
            set.shutdown().await;
        }
    }

    /// Closes the set and aborts every task without waiting (for `Drop` and
    /// other synchronous paths).
    pub(crate) fn abort(&self) {
        let set = self.set.lock().take();
        drop(set);
    }
}

/// Runs one request per peer concurrently and returns each peer's outcome in
/// the order of `peers`. Dropping the future cancels the requests still
/// running.
pub(crate) async fn broadcast_with<F, Fut>(
    peers: Vec<crate::PeerId>,
    request: F,
) -> Vec<(
    crate::PeerId,
    Result<crate::protocol::Message, crate::NetworkError>,
)>
where
    F: Fn(crate::PeerId) -> Fut,
    Fut: Future<Output = Result<crate::protocol::Message, crate::NetworkError>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for (index, peer) in peers.iter().enumerate() {
        let fut = request(peer.clone());
        set.spawn(async move { (index, fut.await) });
    }
    let mut results: Vec<Option<Result<_, _>>> = peers.iter().map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((index, result)) = joined
            && let Some(slot) = results.get_mut(index)
        {
            *slot = Some(result);
        }
    }
    peers
        .into_iter()
        .zip(results)
        .map(|(peer, result)| {
            let result = result.unwrap_or_else(|| {
                Err(crate::NetworkError::Unreachable {
                    peer: peer.clone(),
                    reason: "request task failed".into(),
                })
            });
            (peer, result)
        })
        .collect()
}

/// Encodes the response to request `request_id`; a handler's answer too large
/// for a frame becomes a short [`Message::Error`](crate::protocol::Message::Error)
/// so the requester learns at once.
pub(crate) fn encode_response(
    request_id: u64,
    response: crate::protocol::Message,
    max_frame_bytes: usize,
) -> Vec<u8> {
    use crate::protocol::{Envelope, Message, PROTOCOL_VERSION};
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
        request_id,
        message: response,
    };
    match crate::wire::encode_frame(&envelope, max_frame_bytes) {
        Ok(frame) => frame,
        Err(e) => {
            tracing::warn!(request_id, error = %e, "response not sent");
            let envelope = Envelope {
                message: Message::Error {
                    message: format!("response not sent: {e}"),
                },
                ..envelope
            };
            // A short error fits any sensible limit; if not, the empty frame
            // is refused by the requester as a protocol error.
            crate::wire::encode_frame(&envelope, max_frame_bytes).unwrap_or_default()
        }
    }
}

/// A peer's outbound connection (of any transport), opened on first use and
/// reopened after it breaks, shared by all requests to that peer.
///
/// Connection attempts are serialised per peer; requests that queued behind
/// an attempt that just failed share its outcome instead of starting their
/// own (so a dead peer costs one round of retries, not one per request).
#[derive(Debug)]
pub(crate) struct PeerLink<C> {
    state: tokio::sync::Mutex<LinkState<C>>,
}

#[derive(Debug)]
struct LinkState<C> {
    current: Option<C>,
    /// The last failed connection attempt, shared with requests that waited
    /// for it.
    failure: Option<(tokio::time::Instant, crate::NetworkError)>,
}

/// A configured peer of a node: its address, whether the last exchange with
/// it succeeded, and its outbound connection (the same for TCP and QUIC).
pub(crate) struct PeerSlot<C> {
    pub(crate) id: crate::network::PeerId,
    pub(crate) address: String,
    pub(crate) alive: std::sync::atomic::AtomicBool,
    pub(crate) link: PeerLink<C>,
}

impl<C: LinkConnection> PeerSlot<C> {
    /// One slot per configured `(id, address)`, none alive yet.
    pub(crate) fn for_peers(
        peers: &[(crate::network::PeerId, String)],
    ) -> Vec<std::sync::Arc<Self>> {
        peers
            .iter()
            .map(|(id, address)| {
                std::sync::Arc::new(PeerSlot {
                    id: id.clone(),
                    address: address.clone(),
                    alive: std::sync::atomic::AtomicBool::new(false),
                    link: PeerLink::new(),
                })
            })
            .collect()
    }

    /// Records whether the last exchange with the peer worked; a change
    /// shows in the `protobase_peer_up` and
    /// `protobase_peer_state_changes_total` metrics.
    pub(crate) fn set_alive(&self, alive: bool) {
        let was = self.alive.swap(alive, std::sync::atomic::Ordering::Relaxed);
        if was != alive {
            crate::metrics::peer_state(&self.id, alive);
        }
    }

    /// What `NetworkManager::peers` reports for it.
    pub(crate) fn info(&self) -> crate::network::PeerInfo {
        crate::network::PeerInfo {
            id: self.id.clone(),
            address: self.address.clone(),
            alive: self.alive.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// How a transport retries connection attempts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Pause between attempts.
    pub(crate) interval: std::time::Duration,
    /// Attempts after the first one fails.
    pub(crate) max_retries: u32,
}

/// What [`PeerLink::get`] needs to know about a transport's connections.
pub(crate) trait LinkConnection: Clone {
    /// Still usable by the current run of the node.
    fn usable(&self, run_id: u64) -> bool;
    /// Closes a connection that is being replaced or dropped.
    fn discard(&self, reason: &str);
}

impl<C: LinkConnection> PeerLink<C> {
    pub(crate) fn new() -> Self {
        PeerLink {
            state: tokio::sync::Mutex::new(LinkState {
                current: None,
                failure: None,
            }),
        }
    }

    /// The open connection for run `run_id`, or a new one from `connect`,
    /// retried by `policy` while it fails with `Unreachable` and the next
    /// attempt would start before `deadline`.
    pub(crate) async fn get<F, Fut>(
        &self,
        peer: &str,
        run_id: u64,
        policy: RetryPolicy,
        deadline: tokio::time::Instant,
        mut connect: F,
    ) -> Result<C, crate::NetworkError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<C, crate::NetworkError>>,
    {
        let asked = tokio::time::Instant::now();
        let mut state = self.state.lock().await;
        if let Some(conn) = state.current.take() {
            if conn.usable(run_id) {
                state.current = Some(conn.clone());
                return Ok(conn);
            }
            conn.discard("replaced");
        }
        if let Some((at, error)) = &state.failure
            && *at >= asked
        {
            // An attempt we queued behind has just failed: share its outcome.
            return Err(error.clone());
        }
        let mut attempt = 0;
        let error = loop {
            match connect().await {
                Ok(conn) => {
                    state.current = Some(conn.clone());
                    state.failure = None;
                    return Ok(conn);
                }
                Err(error) => {
                    let retryable = matches!(error, crate::NetworkError::Unreachable { .. });
                    if !retryable || attempt >= policy.max_retries {
                        break error;
                    }
                    let wake = tokio::time::Instant::now() + policy.interval;
                    if wake >= deadline {
                        break error;
                    }
                    attempt += 1;
                    tracing::debug!(peer, attempt, error = %error, "connect failed; retrying");
                    tokio::time::sleep_until(wake).await;
                }
            }
        };
        state.failure = Some((tokio::time::Instant::now(), error.clone()));
        Err(error)
    }

    /// Closes and forgets the connection and the last failure.
    pub(crate) async fn clear(&self, reason: &str) {
        let mut state = self.state.lock().await;
        if let Some(conn) = state.current.take() {
            conn.discard(reason);
        }
        state.failure = None;
    }
}

/// Encodes request `request_id` to `peer` as a frame; a message too large
/// for a frame is a [`Protocol`](crate::NetworkError::Protocol) error and is
/// not sent.
pub(crate) fn encode_request(
    peer: &str,
    request_id: u64,
    message: crate::protocol::Message,
    max_frame_bytes: usize,
) -> Result<Vec<u8>, crate::NetworkError> {
    let envelope = crate::protocol::Envelope {
        version: crate::protocol::PROTOCOL_VERSION,
        request_id,
        message,
    };
    crate::wire::encode_frame(&envelope, max_frame_bytes).map_err(|e| {
        crate::NetworkError::Protocol {
            peer: peer.to_owned(),
            reason: e.to_string(),
        }
    })
}

/// Runs `exchange` (one request to `peer`) against the request's deadline
/// and the node's stop signal: `Stopped` as soon as the node stops,
/// `Timeout` at the deadline (after calling `on_timeout`).
pub(crate) async fn bounded_request<Fut>(
    stopped: &tokio::sync::watch::Sender<bool>,
    peer: &str,
    timeout: std::time::Duration,
    deadline: tokio::time::Instant,
    exchange: Fut,
    on_timeout: impl FnOnce(),
) -> Result<crate::protocol::Message, crate::NetworkError>
where
    Fut: Future<Output = Result<crate::protocol::Message, crate::NetworkError>>,
{
    let mut shutdown = stopped.subscribe();
    if *shutdown.borrow() {
        return Err(crate::NetworkError::Stopped);
    }
    let outcome = tokio::select! {
        biased;
        _ = shutdown.wait_for(|stopped| *stopped) => Err(crate::NetworkError::Stopped),
        outcome = tokio::time::timeout_at(deadline, exchange) => match outcome {
            Ok(result) => result,
            Err(_) => {
                on_timeout();
                Err(crate::NetworkError::Timeout { peer: peer.to_owned(), timeout })
            }
        },
    };
    // A stop on another thread between the two branches' polls closes the
    // connection under the exchange: its error (the connection "closed")
    // is the stop's.
    match outcome {
        Err(e) if !matches!(e, crate::NetworkError::Stopped) && *stopped.borrow() => {
            tracing::debug!(%peer, error = %e, "request failed while the node stopped");
            Err(crate::NetworkError::Stopped)
        }
        other => other,
    }
}

/// Calls the handler for one request and encodes its answer (`None` is
/// answered with `Ack`).
pub(crate) async fn answer(
    handler: std::sync::Arc<dyn crate::MessageHandler>,
    from: crate::PeerId,
    envelope: crate::protocol::Envelope,
    max_frame_bytes: usize,
) -> Vec<u8> {
    let response = handler
        .handle(from, envelope.message)
        .await
        .unwrap_or(crate::protocol::Message::Ack);
    encode_response(envelope.request_id, response, max_frame_bytes)
}

/// Why a transport's member list or limits were refused (shared checks of
/// the TCP and QUIC configurations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberProblem {
    InvalidId(String),
    SelfAsPeer(String),
    DuplicatePeer(String),
    FrameLimit {
        value: usize,
        min: usize,
        max: usize,
    },
}

/// Smallest accepted frame limit of the socket transports.
pub(crate) const MIN_FRAME_BYTES: usize = 1024;

/// Checks ids (1 to 255 bytes), the peer list (no self, no duplicates) and
/// the frame limit.
pub(crate) fn check_members(
    server_id: &str,
    peers: &[(crate::PeerId, String)],
    max_frame_bytes: usize,
) -> Result<(), MemberProblem> {
    let check_id = |id: &str| {
        if id.is_empty() || id.len() > usize::from(u8::MAX) {
            Err(MemberProblem::InvalidId(id.to_owned()))
        } else {
            Ok(())
        }
    };
    check_id(server_id)?;
    let mut seen = std::collections::HashSet::new();
    for (id, _) in peers {
        check_id(id)?;
        if crate::network::is_client_id(id) {
            // Client ids name client links, never members.
            return Err(MemberProblem::InvalidId(id.clone()));
        }
        if id == server_id {
            return Err(MemberProblem::SelfAsPeer(id.clone()));
        }
        if !seen.insert(id) {
            return Err(MemberProblem::DuplicatePeer(id.clone()));
        }
    }
    let max = u32::MAX as usize;
    if !(MIN_FRAME_BYTES..=max).contains(&max_frame_bytes) {
        return Err(MemberProblem::FrameLimit {
            value: max_frame_bytes,
            min: MIN_FRAME_BYTES,
            max,
        });
    }
    Ok(())
}

/// The `with_*` setters the socket transports' configurations share: for a
/// struct with the fields `peers`, `read_timeout_ms`, `retry_interval_ms`,
/// `max_retries` and `max_frame_bytes` (expanded inside its `impl`).
macro_rules! member_setters {
    () => {
        /// Adds a peer.
        pub fn with_peer(
            mut self,
            id: impl Into<$crate::network::PeerId>,
            address: impl Into<String>,
        ) -> Self {
            self.peers.push((id.into(), address.into()));
            self
        }

        /// Adds peers.
        pub fn with_peers<I, P, A>(mut self, peers: I) -> Self
        where
            I: IntoIterator<Item = (P, A)>,
            P: Into<$crate::network::PeerId>,
            A: Into<String>,
        {
            self.peers
                .extend(peers.into_iter().map(|(id, a)| (id.into(), a.into())));
            self
        }

        /// Sets [`read_timeout_ms`](Self::read_timeout_ms).
        pub fn with_read_timeout_ms(mut self, ms: u64) -> Self {
            self.read_timeout_ms = ms;
            self
        }

        /// Sets [`retry_interval_ms`](Self::retry_interval_ms).
        pub fn with_retry_interval_ms(mut self, ms: u64) -> Self {
            self.retry_interval_ms = ms;
            self
        }

        /// Sets [`max_retries`](Self::max_retries).
        pub fn with_max_retries(mut self, retries: u32) -> Self {
            self.max_retries = retries;
            self
        }

        /// Sets [`max_frame_bytes`](Self::max_frame_bytes).
        pub fn with_max_frame_bytes(mut self, bytes: usize) -> Self {
            self.max_frame_bytes = bytes;
            self
        }

        /// [`read_timeout_ms`](Self::read_timeout_ms) as a duration.
        pub(crate) fn read_timeout(&self) -> std::time::Duration {
            std::time::Duration::from_millis(self.read_timeout_ms)
        }
    };
}
pub(crate) use member_setters;

/// What a node reads of its socket transport's configuration.
pub(crate) trait SocketConfig: Send + Sync {
    /// This node's id.
    fn server_id(&self) -> &crate::network::PeerId;
    /// The configured peers, in order.
    fn peers(&self) -> &[(crate::network::PeerId, String)];
    /// How connection attempts are retried.
    fn retry_policy(&self) -> RetryPolicy;
    /// The frame limit, both directions.
    fn max_frame_bytes(&self) -> usize;
}

/// [`SocketConfig`] for a configuration with the fields `server_id`,
/// `peers`, `retry_interval_ms`, `max_retries` and `max_frame_bytes`.
macro_rules! socket_config {
    ($config:ty) => {
        impl $crate::transports::common::SocketConfig for $config {
            fn server_id(&self) -> &$crate::network::PeerId {
                &self.server_id
            }
            fn peers(&self) -> &[($crate::network::PeerId, String)] {
                &self.peers
            }
            fn retry_policy(&self) -> $crate::transports::common::RetryPolicy {
                $crate::transports::common::RetryPolicy {
                    interval: std::time::Duration::from_millis(self.retry_interval_ms),
                    max_retries: self.max_retries,
                }
            }
            fn max_frame_bytes(&self) -> usize {
                self.max_frame_bytes
            }
        }
    };
}
pub(crate) use socket_config;

/// A socket transport's configuration error: the variants every one has
/// (`InvalidId`, `SelfAsPeer`, `DuplicatePeer`, `FrameLimit`, from a
/// [`MemberProblem`]) followed by the transport's own.
macro_rules! config_error {
    ($(#[$meta:meta])* pub enum $error:ident { $($own:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum $error {
            /// A node id is empty or longer than 255 bytes.
            #[error("invalid node id {0:?}: must be 1 to 255 bytes")]
            InvalidId(String),
            /// The peer list names this node.
            #[error("the peer list contains this node's own id {0:?}")]
            SelfAsPeer(String),
            /// The peer list names a node twice.
            #[error("peer {0:?} is listed twice")]
            DuplicatePeer(String),
            /// `max_frame_bytes` is out of range.
            #[error("max_frame_bytes {value} is outside [{min}, {max}]")]
            FrameLimit {
                /// Value given.
                value: usize,
                /// Smallest accepted.
                min: usize,
                /// Largest accepted (the `u32` length prefix).
                max: usize,
            },
            $($own)*
        }

        impl From<$crate::transports::common::MemberProblem> for $error {
            fn from(problem: $crate::transports::common::MemberProblem) -> Self {
                use $crate::transports::common::MemberProblem as P;
                match problem {
                    P::InvalidId(id) => $error::InvalidId(id),
                    P::SelfAsPeer(id) => $error::SelfAsPeer(id),
                    P::DuplicatePeer(id) => $error::DuplicatePeer(id),
                    P::FrameLimit { value, min, max } => $error::FrameLimit { value, min, max },
                }
            }
        }
    };
}
pub(crate) use config_error;

/// Where a node listens: a socket handed over before `start` (bound to an
/// OS-chosen port, say, so peers' configurations can name it first), and
/// the address bound last, which a later `start` binds again.
#[derive(Debug)]
pub(crate) struct Binding<S> {
    prebound: parking_lot::Mutex<Option<S>>,
    bound: parking_lot::Mutex<Option<std::net::SocketAddr>>,
}

impl<S> Binding<S> {
    pub(crate) fn new() -> Self {
        Binding {
            prebound: parking_lot::Mutex::new(None),
            bound: parking_lot::Mutex::new(None),
        }
    }

    /// Hands over `socket`, bound to `addr`, for the first `start`.
    pub(crate) fn preset(&self, socket: S, addr: Option<std::net::SocketAddr>) {
        *self.bound.lock() = addr;
        *self.prebound.lock() = Some(socket);
    }

    /// The socket handed over, once.
    pub(crate) fn take_prebound(&self) -> Option<S> {
        self.prebound.lock().take()
    }

    /// The address bound last (kept after `stop`).
    pub(crate) fn bound(&self) -> Option<std::net::SocketAddr> {
        *self.bound.lock()
    }

    pub(crate) fn set_bound(&self, addr: Option<std::net::SocketAddr>) {
        *self.bound.lock() = addr;
    }
}
