//! TCP transport on tokio (feature `tcp`, default).
//!
//! [`TcpNetworkManager`] implements [`NetworkManager`] over plain TCP:
//!
//! - **Listener.** [`start`](NetworkManager::start) binds
//!   [`TcpConfig::listen_addr`] (port 0 picks a free port; see
//!   [`TcpNetworkManager::local_addr`]) or uses a listener handed to
//!   [`TcpNetworkManager::with_listener`]. Inbound connections are served
//!   concurrently, and so are the requests on each one: every request gets its
//!   own handler call, and its response goes back with the request's id.
//! - **One connection per peer.** Outbound requests to a peer share one
//!   connection, opened on first use and reopened after it breaks (up to
//!   [`max_retries`](TcpConfig::max_retries) more attempts
//!   [`retry_interval_ms`](TcpConfig::retry_interval_ms) apart, never past the
//!   request's timeout). A writer task sends frames, a reader task matches
//!   responses to waiting requests by request id, so hundreds of requests can
//!   be in flight on one connection. Requests are not re-sent when a
//!   connection breaks: they fail with [`NetworkError::Unreachable`] and the
//!   caller decides (the messages are not all idempotent).
//! - **Authentication.** Before any frame, both ends authenticate: with the
//!   pre-shared key (default, see [below](#authentication)) or, with
//!   [`TcpConfig::tls`] (feature `tcp-tls`), by certificate in a mutual TLS
//!   1.3 handshake that also encrypts the connection. A peer that fails
//!   never gets a frame read, let alone a handler call.
//! - **Frames** are those of [`crate::wire`], limited to
//!   [`max_frame_bytes`](TcpConfig::max_frame_bytes) in both directions. A
//!   malformed, oversized or wrong-version frame closes that connection (logged
//!   with `tracing`) and nothing else.
//! - **Stop.** [`stop`](NetworkManager::stop) closes the listener and every
//!   connection, fails in-flight requests with [`NetworkError::Stopped`],
//!   cancels running handler calls and returns once none is running: the
//!   handler is never called after `stop` returns. `start` may be called again
//!   afterwards; it listens on the same address as before. (So `stop` must
//!   not be awaited from inside the handler: it would wait for itself.)
//! - **Backpressure.** One inbound connection has at most 1 024 requests in
//!   its handler at once; beyond that the node stops reading from it until
//!   calls finish. At most 1 024 inbound connections are served at once,
//!   and at most [`MAX_HANDSHAKES_PER_SOURCE`] from one IP address may be
//!   in their handshake (which has a deadline of
//!   [`read_timeout_ms`](TcpConfig::read_timeout_ms)): more are closed at
//!   once, so one host cannot keep a node's peers out.
//!
//! # Authentication
//!
//! Two modes, chosen per node in [`TcpConfig`]:
//!
//! - **Pre-shared key** ([`TcpConfig::pre_shared_key`], at least
//!   [`MIN_PSK_BYTES`] bytes; use 32 random ones): a mutual challenge–response
//!   (the [handshake below](#pre-shared-key-handshake)) on every new
//!   connection within [`read_timeout_ms`](TcpConfig::read_timeout_ms), the
//!   client proving first. It authenticates the connection's endpoints; it
//!   does **not** encrypt or integrity-protect the frames that follow, so it
//!   guards against misconfigured or rogue nodes, not against an attacker on
//!   the path (who can read, inject or alter frames after the handshake). For
//!   trusted networks.
//! - **TLS** ([`TcpConfig::tls`], feature `tcp-tls`): mutual TLS 1.3 with
//!   the certificates and trust settings of the QUIC transport
//!   ([`crate::transports::tls`]): every frame is encrypted and
//!   authenticated, and each end proves its node id by certificate. For
//!   networks you do not trust.
//!
//! Either way the server accepts only the ids of its configured peers and
//! client ids (`client~…`, see [`client_id`](crate::network::client_id):
//! operator tools and clients holding the same key or a member's
//! certificate), and that id is the `from` its handler sees. A client id is
//! never a member: the cluster's handlers refuse its votes and accepts.
//!
//! # Pre-shared-key handshake
//!
//! ```text
//! client → server  hello:  "PBT2" | u16 LE version | client nonce (32) | u8 len | client id
//! server → client  hello:  "PBT2" | u16 LE version | server nonce (32) | u8 len | server id
//! client → server  HMAC-SHA256(key, "protobase-tcp client" | transcript)
//! server → client  HMAC-SHA256(key, "protobase-tcp server" | transcript)
//! transcript = u16 LE version | client nonce | server nonce | u8 len | client id | u8 len | server id
//! ```
//!
//! The server computes nothing with the key before the client has proved
//! it, so connecting gives a stranger nothing to guess the key from offline.
//! Nonces are fresh, the two directions use different labels, MACs are
//! compared in constant time, and the messages are small and fixed in shape.

mod psk;
#[cfg(feature = "tcp-tls")]
mod tls;

pub use super::admission::MAX_HANDSHAKES_PER_SOURCE;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span, field, trace, warn};

use super::common::{
    self, LinkConnection, MemberProblem, RetryPolicy, TaskSet, answer, bounded_request,
    broadcast_with, check_members, encode_request,
};
use crate::network::{MessageHandler, NetworkError, NetworkManager, PeerId, PeerInfo};
use crate::protocol::Message;
#[cfg(feature = "tcp-tls")]
use crate::transports::tls::TlsConfig;
use crate::wire::{self, DEFAULT_MAX_FRAME_BYTES, WireError};

/// Smallest accepted [`TcpConfig::max_frame_bytes`].
pub const MIN_FRAME_BYTES: usize = super::common::MIN_FRAME_BYTES;

/// Shortest accepted [`TcpConfig::pre_shared_key`] (use 32 random bytes).
pub const MIN_PSK_BYTES: usize = 16;

/// The read and write ends of an authenticated connection (plain TCP or
/// TLS).
type ReadEnd = Box<dyn AsyncRead + Send + Unpin>;
type WriteEnd = Box<dyn AsyncWrite + Send + Unpin>;

/// Frames waiting for a connection's writer task.
const WRITE_QUEUE: usize = 256;
/// Requests one inbound connection may have in its handler at once; reading
/// pauses (backpressure) beyond that.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 1024;
/// Inbound connections (authenticated or not) served at once.
const MAX_INBOUND_CONNECTIONS: usize = 1024;
/// Socket buffer sizes of the reader and writer.
const IO_BUFFER: usize = 64 * 1024;

/// Configuration of a [`TcpNetworkManager`].
///
/// Build it with [`TcpConfig::new`] and the `with_*` setters (or set the
/// public fields); defaults are the reference ones.
#[derive(Clone)]
#[non_exhaustive]
pub struct TcpConfig {
    /// This node's id (1 to 255 bytes of UTF-8), sent in the handshake.
    pub server_id: PeerId,
    /// Address to listen on, `host:port`; port 0 picks a free port.
    pub listen_addr: String,
    /// The other nodes: id and `host:port`. Only these may connect.
    pub peers: Vec<(PeerId, String)>,
    /// The key every node of the cluster shares (at least
    /// [`MIN_PSK_BYTES`]; use 32 random bytes). Not used (and may be empty)
    /// when [`tls`](Self::tls) is set.
    pub pre_shared_key: Vec<u8>,
    /// Mutual TLS 1.3 instead of the pre-shared key (feature `tcp-tls`):
    /// this node's certificate (valid for [`server_id`](Self::server_id), or
    /// for the member a client id names) and how it trusts its peers'.
    #[cfg(feature = "tcp-tls")]
    pub tls: Option<TlsConfig>,
    /// Deadline of a connection attempt's TCP connect, and again of its
    /// authentication handshake (both directions), in ms (default 2 000).
    /// Request deadlines are the `timeout` argument of each call.
    pub read_timeout_ms: u64,
    /// Pause between connection attempts, in ms (default 1 000).
    pub retry_interval_ms: u64,
    /// Connection attempts after the first one fails (default 3).
    pub max_retries: u32,
    /// Largest frame body sent or accepted (default 32 MiB).
    pub max_frame_bytes: usize,
}

impl TcpConfig {
    /// A configuration with no peers and the default timeouts and limits.
    pub fn new(
        server_id: impl Into<PeerId>,
        listen_addr: impl Into<String>,
        pre_shared_key: impl Into<Vec<u8>>,
    ) -> Self {
        TcpConfig {
            server_id: server_id.into(),
            listen_addr: listen_addr.into(),
            peers: Vec::new(),
            pre_shared_key: pre_shared_key.into(),
            #[cfg(feature = "tcp-tls")]
            tls: None,
            read_timeout_ms: 2_000,
            retry_interval_ms: 1_000,
            max_retries: 3,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }

    /// Adds a peer.
    pub fn with_peer(mut self, id: impl Into<PeerId>, address: impl Into<String>) -> Self {
        self.peers.push((id.into(), address.into()));
        self
    }

    /// Adds peers.
    pub fn with_peers<I, P, A>(mut self, peers: I) -> Self
    where
        I: IntoIterator<Item = (P, A)>,
        P: Into<PeerId>,
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

    /// Authenticates and encrypts with mutual TLS 1.3 instead of the
    /// pre-shared key (see [`tls`](Self::tls)).
    #[cfg(feature = "tcp-tls")]
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The TLS settings, if TLS is on.
    #[cfg(feature = "tcp-tls")]
    fn tls_settings(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    #[cfg(not(feature = "tcp-tls"))]
    fn tls_settings(&self) -> Option<&std::convert::Infallible> {
        None
    }

    fn validate(&self) -> Result<(), TcpConfigError> {
        check_members(&self.server_id, &self.peers, self.max_frame_bytes)?;
        #[cfg(feature = "tcp-tls")]
        if let Some(tls) = self.tls_settings() {
            return tls
                .check_identity(crate::transports::tls::identity_of(&self.server_id))
                .map_err(|e| TcpConfigError::Tls(e.to_string()));
        }
        let len = self.pre_shared_key.len();
        if len < MIN_PSK_BYTES {
            return Err(TcpConfigError::KeyTooShort {
                len,
                min: MIN_PSK_BYTES,
            });
        }
        Ok(())
    }
}

impl From<MemberProblem> for TcpConfigError {
    fn from(problem: MemberProblem) -> Self {
        match problem {
            MemberProblem::InvalidId(id) => TcpConfigError::InvalidId(id),
            MemberProblem::SelfAsPeer(id) => TcpConfigError::SelfAsPeer(id),
            MemberProblem::DuplicatePeer(id) => TcpConfigError::DuplicatePeer(id),
            MemberProblem::FrameLimit { value, min, max } => {
                TcpConfigError::FrameLimit { value, min, max }
            }
        }
    }
}

impl fmt::Debug for TcpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpConfig")
            .field("server_id", &self.server_id)
            .field("listen_addr", &self.listen_addr)
            .field("peers", &self.peers)
            .field("pre_shared_key", &"<redacted>")
            .field("tls", &self.tls_settings().is_some())
            .field("read_timeout_ms", &self.read_timeout_ms)
            .field("retry_interval_ms", &self.retry_interval_ms)
            .field("max_retries", &self.max_retries)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .finish()
    }
}

/// Why a [`TcpConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TcpConfigError {
    /// A node id is empty or longer than 255 bytes.
    #[error("invalid node id {0:?}: must be 1 to 255 bytes")]
    InvalidId(String),
    /// The pre-shared key is shorter than [`MIN_PSK_BYTES`].
    #[error("the pre-shared key has {len} bytes, fewer than {min} (use 32 random bytes)")]
    KeyTooShort {
        /// Its length.
        len: usize,
        /// The least accepted.
        min: usize,
    },
    /// The TLS settings cannot be used (certificate not valid for this
    /// node's id, unusable trust anchors).
    #[error("TLS: {0}")]
    Tls(String),
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
}

/// A [`NetworkManager`] over TCP; see the [module docs](self).
///
/// Share it as `Arc<TcpNetworkManager>` (or `Arc<dyn NetworkManager>`).
/// Dropping it without [`stop`](NetworkManager::stop) aborts its tasks.
pub struct TcpNetworkManager {
    inner: Arc<Inner>,
}

struct Inner {
    config: TcpConfig,
    /// The TLS ends, when the connections use TLS (else the PSK).
    #[cfg(feature = "tcp-tls")]
    tls: Option<tls::TcpTls>,
    /// Peers in configuration order.
    slots: Vec<Arc<PeerSlot>>,
    by_id: HashMap<PeerId, Arc<PeerSlot>>,
    next_request_id: AtomicU64,
    next_run_id: AtomicU64,
    run: Mutex<Option<Arc<Run>>>,
    /// Listener handed to `with_listener`, used by the first `start`.
    prebound: Mutex<Option<std::net::TcpListener>>,
    /// Address of the last listener, reused by a later `start`.
    bound: Mutex<Option<SocketAddr>>,
}

/// One started life of the manager, from `start` to `stop`.
struct Run {
    id: u64,
    handler: RwLock<Arc<dyn MessageHandler>>,
    tasks: TaskSet,
    shutdown: watch::Sender<bool>,
}

/// A configured peer and its connection.
type PeerSlot = common::PeerSlot<Arc<Conn>>;

impl LinkConnection for Arc<Conn> {
    fn usable(&self, run_id: u64) -> bool {
        self.is_open() && self.run_id == run_id
    }
    fn discard(&self, reason: &str) {
        self.close(reason);
    }
}

type Pending = HashMap<u64, oneshot::Sender<Result<Message, NetworkError>>>;

/// An outbound connection: requests go out through the writer task,
/// responses are matched by the reader task.
struct Conn {
    run_id: u64,
    peer: PeerId,
    /// `None` once closed.
    pending: Mutex<Option<Pending>>,
    frames: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Conn {
    fn is_open(&self) -> bool {
        self.pending.lock().is_some()
    }

    fn register(
        &self,
        request_id: u64,
    ) -> Option<oneshot::Receiver<Result<Message, NetworkError>>> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().as_mut()?.insert(request_id, tx);
        Some(rx)
    }

    fn forget(&self, request_id: u64) {
        if let Some(pending) = self.pending.lock().as_mut() {
            pending.remove(&request_id);
        }
    }

    /// Hands a response to its request; false when nobody waits for it.
    fn complete(&self, request_id: u64, message: Message) -> bool {
        let tx = self
            .pending
            .lock()
            .as_mut()
            .and_then(|pending| pending.remove(&request_id));
        match tx {
            Some(tx) => tx.send(Ok(message)).is_ok(),
            None => false,
        }
    }

    fn sender(&self) -> Option<mpsc::Sender<Vec<u8>>> {
        self.frames.lock().clone()
    }

    fn adopt(&self, task: AbortHandle) {
        if self.is_open() {
            self.tasks.lock().push(task);
        } else {
            task.abort();
        }
    }

    /// Closes the connection: waiting requests fail with `Unreachable`, the
    /// writer and reader tasks end.
    fn close(&self, reason: &str) {
        let pending = self.pending.lock().take();
        self.frames.lock().take();
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        for (_, tx) in pending.into_iter().flatten() {
            let _ = tx.send(Err(NetworkError::Unreachable {
                peer: self.peer.clone(),
                reason: reason.to_owned(),
            }));
        }
    }
}

/// Removes a request's entry when its future ends (answered, timed out or
/// cancelled).
struct PendingGuard<'a> {
    conn: &'a Conn,
    request_id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.conn.forget(self.request_id);
    }
}

impl TcpNetworkManager {
    /// A manager for `config`; nothing happens on the network until
    /// [`start`](NetworkManager::start).
    pub fn new(config: TcpConfig) -> Result<Self, TcpConfigError> {
        config.validate()?;
        #[cfg(feature = "tcp-tls")]
        let tls = match config.tls_settings() {
            Some(t) => Some(
                tls::TcpTls::new(
                    t,
                    &config.server_id,
                    config.peers.iter().map(|(id, _)| id.clone()).collect(),
                )
                .map_err(|e| TcpConfigError::Tls(e.to_string()))?,
            ),
            None => None,
        };
        let slots = PeerSlot::for_peers(&config.peers);
        let by_id = slots
            .iter()
            .map(|slot| (slot.id.clone(), Arc::clone(slot)))
            .collect();
        Ok(TcpNetworkManager {
            inner: Arc::new(Inner {
                config,
                #[cfg(feature = "tcp-tls")]
                tls,
                slots,
                by_id,
                next_request_id: AtomicU64::new(1),
                next_run_id: AtomicU64::new(1),
                run: Mutex::new(None),
                prebound: Mutex::new(None),
                bound: Mutex::new(None),
            }),
        })
    }

    /// A manager that will serve on `listener` (already bound, for instance
    /// to port 0 so peers' configurations can name its address before it
    /// starts) instead of binding [`TcpConfig::listen_addr`].
    pub fn with_listener(
        config: TcpConfig,
        listener: std::net::TcpListener,
    ) -> Result<Self, TcpConfigError> {
        let manager = Self::new(config)?;
        *manager.inner.bound.lock() = listener.local_addr().ok();
        *manager.inner.prebound.lock() = Some(listener);
        Ok(manager)
    }

    /// The address the listener is bound to: known after `start` (or at once
    /// with [`with_listener`](Self::with_listener)), kept after `stop`.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.inner.bound.lock()
    }

    /// The configuration.
    pub fn config(&self) -> &TcpConfig {
        &self.inner.config
    }

    /// Opens a fresh, authenticated connection to `peer` (not the shared
    /// one) and returns the raw stream, for tests that send raw bytes after
    /// the handshake.
    #[cfg(feature = "conformance")]
    pub async fn open_raw_stream(
        &self,
        peer: &PeerId,
    ) -> Result<impl AsyncRead + AsyncWrite + Send + Unpin + 'static, NetworkError> {
        let slot = self
            .inner
            .by_id
            .get(peer)
            .ok_or_else(|| NetworkError::UnknownPeer(peer.clone()))?;
        let stream = TcpStream::connect(slot.address.as_str())
            .await
            .map_err(|e| NetworkError::Unreachable {
                peer: peer.clone(),
                reason: e.to_string(),
            })?;
        let (reader, writer) = self.inner.authenticate_outbound(stream, peer).await?;
        Ok(tokio::io::join(reader, writer))
    }
}

impl fmt::Debug for TcpNetworkManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpNetworkManager")
            .field("server_id", &self.inner.config.server_id)
            .field("local_addr", &self.local_addr())
            .field("running", &self.inner.run.lock().is_some())
            .finish()
    }
}

impl fmt::Display for TcpNetworkManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.local_addr() {
            Some(addr) => write!(
                f,
                "TcpNetworkManager({}@{addr})",
                self.inner.config.server_id
            ),
            None => write!(f, "TcpNetworkManager({})", self.inner.config.server_id),
        }
    }
}

impl Drop for TcpNetworkManager {
    fn drop(&mut self) {
        if let Some(run) = self.inner.run.lock().take() {
            run.shutdown.send_replace(true);
            run.tasks.abort();
        }
    }
}

impl Inner {
    fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.config.read_timeout_ms)
    }

    fn current_run(&self) -> Option<Arc<Run>> {
        self.run.lock().clone()
    }

    async fn listen(&self) -> Result<TcpListener, NetworkError> {
        let unreachable = |reason: String| NetworkError::Unreachable {
            peer: self.config.server_id.clone(),
            reason,
        };
        let prebound = self.prebound.lock().take();
        if let Some(listener) = prebound {
            listener
                .set_nonblocking(true)
                .map_err(|e| unreachable(format!("cannot use the given listener: {e}")))?;
            return TcpListener::from_std(listener)
                .map_err(|e| unreachable(format!("cannot use the given listener: {e}")));
        }
        let previous = *self.bound.lock();
        let addr = match previous {
            Some(addr) => addr,
            None => tokio::net::lookup_host(self.config.listen_addr.as_str())
                .await
                .map_err(|e| {
                    unreachable(format!("cannot resolve {}: {e}", self.config.listen_addr))
                })?
                .next()
                .ok_or_else(|| {
                    unreachable(format!("{} resolves to nothing", self.config.listen_addr))
                })?,
        };
        let bind = || -> io::Result<TcpListener> {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(1024)
        };
        bind().map_err(|e| NetworkError::Listen {
            address: addr.to_string(),
            reason: if e.kind() == io::ErrorKind::AddrInUse {
                format!("{e} (another process uses this port)")
            } else {
                e.to_string()
            },
        })
    }

    /// The open connection to `slot`, opening one if needed.
    async fn connection(
        self: &Arc<Self>,
        run: &Arc<Run>,
        slot: &Arc<PeerSlot>,
        deadline: Instant,
    ) -> Result<Arc<Conn>, NetworkError> {
        let policy = RetryPolicy {
            interval: Duration::from_millis(self.config.retry_interval_ms),
            max_retries: self.config.max_retries,
        };
        let result = slot
            .link
            .get(&slot.id, run.id, policy, deadline, || {
                self.connect(run, slot)
            })
            .await;
        slot.set_alive(result.is_ok());
        result
    }

    /// One connection attempt: connect, authenticate, start the tasks.
    async fn connect(
        self: &Arc<Self>,
        run: &Arc<Run>,
        slot: &Arc<PeerSlot>,
    ) -> Result<Arc<Conn>, NetworkError> {
        let unreachable = |reason: String| NetworkError::Unreachable {
            peer: slot.id.clone(),
            reason,
        };
        let limit = self.read_timeout();
        let stream = tokio::time::timeout(limit, TcpStream::connect(slot.address.as_str()))
            .await
            .map_err(|_| unreachable(format!("connecting to {} timed out", slot.address)))?
            .map_err(|e| unreachable(format!("cannot connect to {}: {e}", slot.address)))?;
        let _ = stream.set_nodelay(true);
        let (reader, writer) =
            match tokio::time::timeout(limit, self.authenticate_outbound(stream, &slot.id)).await {
                Err(_) => return Err(unreachable("handshake timed out".into())),
                Ok(Err(e)) => {
                    warn!(peer = %slot.id, addr = %slot.address, error = %e, "handshake failed");
                    return Err(e);
                }
                Ok(Ok(ends)) => ends,
            };
        let span = debug_span!(
            "tcp_conn",
            node = %self.config.server_id,
            peer = %slot.id,
            addr = %slot.address,
            dir = "out",
        );
        debug!(parent: &span, "connected");
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let conn = Arc::new(Conn {
            run_id: run.id,
            peer: slot.id.clone(),
            pending: Mutex::new(Some(HashMap::new())),
            frames: Mutex::new(Some(tx)),
            tasks: Mutex::new(Vec::new()),
        });
        let writer_conn = Arc::clone(&conn);
        let writer_task = async move {
            if let Err(e) = write_loop(writer, rx).await {
                debug!(error = %e, "write failed; closing");
                writer_conn.close(&format!("write failed: {e}"));
            }
        };
        let reader_task = read_responses(
            reader,
            Arc::clone(&conn),
            Arc::clone(slot),
            self.config.max_frame_bytes,
        );
        let spawned = (
            run.tasks.spawn(writer_task.instrument(span.clone())),
            run.tasks.spawn(reader_task.instrument(span)),
        );
        match spawned {
            (Some(w), Some(r)) => {
                conn.adopt(w);
                conn.adopt(r);
                Ok(conn)
            }
            (w, r) => {
                w.into_iter().chain(r).for_each(|t| t.abort());
                conn.close("stopped");
                Err(NetworkError::Stopped)
            }
        }
    }

    /// Authenticates a fresh outbound connection to `peer` (PSK handshake
    /// or TLS) and splits it into its two ends.
    async fn authenticate_outbound(
        &self,
        mut stream: TcpStream,
        peer: &str,
    ) -> Result<(ReadEnd, WriteEnd), NetworkError> {
        #[cfg(feature = "tcp-tls")]
        if let Some(tls) = &self.tls {
            let stream =
                tls.connect(stream, peer)
                    .await
                    .map_err(|reason| NetworkError::Protocol {
                        peer: peer.to_owned(),
                        reason,
                    })?;
            let (r, w) = tokio::io::split(stream);
            return Ok((Box::new(r), Box::new(w)));
        }
        let config = &self.config;
        psk::client_handshake(&mut stream, &config.server_id, peer, &config.pre_shared_key)
            .await
            .map_err(|e| e.into_network_error(peer))?;
        let (r, w) = stream.into_split();
        Ok((Box::new(r), Box::new(w)))
    }

    /// Authenticates an inbound connection (PSK handshake or TLS): the
    /// peer's id and the connection's two ends.
    async fn authenticate_inbound(
        &self,
        mut stream: TcpStream,
    ) -> Result<(PeerId, ReadEnd, WriteEnd), String> {
        #[cfg(feature = "tcp-tls")]
        if let Some(tls) = &self.tls {
            let (stream, peer) = tls.accept(stream).await?;
            let (r, w) = tokio::io::split(stream);
            return Ok((peer, Box::new(r), Box::new(w)));
        }
        let config = &self.config;
        let peer = psk::server_handshake(
            &mut stream,
            &config.server_id,
            &config.pre_shared_key,
            |id| self.by_id.contains_key(id) || crate::network::is_client_id(id),
        )
        .await
        .map_err(|e| e.to_string())?;
        let (r, w) = stream.into_split();
        Ok((peer, Box::new(r), Box::new(w)))
    }

    /// Sends one request and waits for its response (no timeout here).
    async fn exchange(
        self: &Arc<Self>,
        run: &Arc<Run>,
        slot: &Arc<PeerSlot>,
        request_id: u64,
        frame: Vec<u8>,
        deadline: Instant,
    ) -> Result<Message, NetworkError> {
        let conn = self.connection(run, slot, deadline).await?;
        let closed = || NetworkError::Unreachable {
            peer: slot.id.clone(),
            reason: "connection closed".into(),
        };
        let rx = conn.register(request_id).ok_or_else(closed)?;
        let _guard = PendingGuard {
            conn: &conn,
            request_id,
        };
        let sender = conn.sender().ok_or_else(closed)?;
        sender.send(frame).await.map_err(|_| closed())?;
        rx.await.unwrap_or_else(|_| Err(closed()))
    }

    async fn request(
        self: &Arc<Self>,
        peer: &PeerId,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, NetworkError> {
        let run = self.current_run().ok_or(NetworkError::Stopped)?;
        let slot = self
            .by_id
            .get(peer)
            .ok_or_else(|| NetworkError::UnknownPeer(peer.clone()))?;
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(peer, request_id, message, self.config.max_frame_bytes)?;
        let deadline = Instant::now() + timeout;
        let exchange = self.exchange(&run, slot, request_id, frame, deadline);
        bounded_request(&run.shutdown, peer, timeout, deadline, exchange, || {
            slot.set_alive(false)
        })
        .await
    }
}

/// Writes queued frames, batching those already waiting into one flush.
async fn write_loop(writer: WriteEnd, mut frames: mpsc::Receiver<Vec<u8>>) -> io::Result<()> {
    let mut writer = BufWriter::with_capacity(IO_BUFFER, writer);
    while let Some(frame) = frames.recv().await {
        writer.write_all(&frame).await?;
        while let Ok(frame) = frames.try_recv() {
            writer.write_all(&frame).await?;
        }
        writer.flush().await?;
    }
    Ok(())
}

/// Reader task of an outbound connection.
async fn read_responses(
    reader: ReadEnd,
    conn: Arc<Conn>,
    slot: Arc<PeerSlot>,
    max_frame_bytes: usize,
) {
    let mut reader = BufReader::with_capacity(IO_BUFFER, reader);
    let reason = loop {
        match wire::read_frame(&mut reader, max_frame_bytes).await {
            Ok(envelope) => {
                if conn.complete(envelope.request_id, envelope.message) {
                    slot.set_alive(true);
                } else {
                    trace!(
                        request_id = envelope.request_id,
                        "response nobody waits for (timed out?)"
                    );
                }
            }
            Err(WireError::Closed) => {
                debug!("peer closed the connection");
                break "connection closed by peer".to_owned();
            }
            Err(e) if e.is_malformed() => {
                warn!(error = %e, "malformed frame from peer; closing the connection");
                break format!("malformed frame: {e}");
            }
            Err(e) => {
                debug!(error = %e, "read failed; closing");
                break format!("read failed: {e}");
            }
        }
    };
    slot.set_alive(false);
    conn.close(&reason);
}

/// Accepts connections until the run ends.
async fn accept_loop(inner: Arc<Inner>, run: Arc<Run>, listener: TcpListener) {
    let limit = Arc::new(Semaphore::new(MAX_INBOUND_CONNECTIONS));
    let gate = Arc::new(super::admission::HandshakeGate::default());
    loop {
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, addr)) => {
                let Some(pending) = gate.enter(addr.ip()) else {
                    debug!(%addr, "too many handshakes from this address; closed");
                    continue;
                };
                let span = debug_span!(
                    "tcp_conn",
                    node = %inner.config.server_id,
                    peer = field::Empty,
                    %addr,
                    dir = "in",
                );
                let serve = serve_inbound(Arc::clone(&inner), Arc::clone(&run), stream, pending);
                let task = async move {
                    serve.await;
                    drop(permit);
                };
                if run.tasks.spawn(task.instrument(span)).is_none() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one inbound connection: authenticate, then answer its requests.
async fn serve_inbound(
    inner: Arc<Inner>,
    run: Arc<Run>,
    stream: TcpStream,
    pending: super::admission::Pending,
) {
    let _ = stream.set_nodelay(true);
    let config = &inner.config;
    let handshake = inner.authenticate_inbound(stream);
    let outcome = tokio::time::timeout(inner.read_timeout(), handshake).await;
    // Authenticated or not, the handshake is over.
    drop(pending);
    let (peer, reader, writer) = match outcome {
        Ok(Ok(authenticated)) => authenticated,
        Ok(Err(e)) => {
            warn!(error = %e, "refused an inbound connection");
            return;
        }
        Err(_) => {
            warn!("refused an inbound connection: handshake timed out");
            return;
        }
    };
    tracing::Span::current().record("peer", peer.as_str());
    debug!("authenticated");
    if let Some(slot) = inner.by_id.get(&peer) {
        slot.set_alive(true);
    }
    let (tx, rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let writer_task = async move {
        if let Err(e) = write_loop(writer, rx).await {
            debug!(error = %e, "write failed");
        }
    };
    let Some(writer_handle) = run
        .tasks
        .spawn(writer_task.instrument(tracing::Span::current()))
    else {
        return;
    };
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    let mut reader = BufReader::with_capacity(IO_BUFFER, reader);
    let max_frame_bytes = config.max_frame_bytes;
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        match wire::read_frame(&mut reader, max_frame_bytes).await {
            Ok(envelope) => {
                let handler = Arc::clone(&*run.handler.read());
                let tx = tx.clone();
                let from = peer.clone();
                let call = async move {
                    let frame = answer(handler, from, envelope, max_frame_bytes).await;
                    let _ = tx.send(frame).await;
                    drop(permit);
                };
                if run
                    .tasks
                    .spawn(call.instrument(tracing::Span::current()))
                    .is_none()
                {
                    break;
                }
            }
            Err(WireError::Closed) => {
                debug!("peer closed the connection");
                break;
            }
            Err(e) if e.is_malformed() => {
                warn!(error = %e, "malformed frame from peer; closing the connection");
                break;
            }
            Err(e) => {
                debug!(error = %e, "read failed; closing");
                break;
            }
        }
    }
    writer_handle.abort();
}

#[async_trait]
impl NetworkManager for TcpNetworkManager {
    fn local_id(&self) -> PeerId {
        self.inner.config.server_id.clone()
    }

    /// Binds the listener (the address of a previous run, if any) and serves
    /// inbound connections with `handler`. On a running manager it replaces
    /// the handler. Fails with [`NetworkError::Listen`] when the address
    /// cannot be bound (in use, say); other failures to use a given listener
    /// are [`NetworkError::Unreachable`] naming this node.
    async fn start(&self, handler: Arc<dyn MessageHandler>) -> Result<(), NetworkError> {
        if let Some(run) = self.inner.current_run() {
            *run.handler.write() = handler;
            return Ok(());
        }
        let listener = self.inner.listen().await?;
        let local_addr = listener.local_addr().ok();
        let run = Arc::new(Run {
            id: self.inner.next_run_id.fetch_add(1, Ordering::Relaxed),
            handler: RwLock::new(handler),
            tasks: TaskSet::new(),
            shutdown: watch::channel(false).0,
        });
        {
            let mut current = self.inner.run.lock();
            if let Some(other) = current.as_ref() {
                // A concurrent `start` won; use its run.
                *other.handler.write() = Arc::clone(&*run.handler.read());
                return Ok(());
            }
            *current = Some(Arc::clone(&run));
            *self.inner.bound.lock() = local_addr;
        }
        let span =
            debug_span!("tcp_listener", node = %self.inner.config.server_id, addr = ?local_addr);
        debug!(parent: &span, "listening");
        run.tasks.spawn(
            accept_loop(Arc::clone(&self.inner), Arc::clone(&run), listener).instrument(span),
        );
        Ok(())
    }

    async fn request(
        &self,
        peer: &PeerId,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, NetworkError> {
        self.inner.request(peer, message, timeout).await
    }

    async fn broadcast(
        &self,
        message: Message,
        timeout: Duration,
    ) -> Vec<(PeerId, Result<Message, NetworkError>)> {
        let peers = self
            .inner
            .slots
            .iter()
            .map(|slot| slot.id.clone())
            .collect();
        let inner = Arc::clone(&self.inner);
        broadcast_with(peers, move |peer| {
            let inner = Arc::clone(&inner);
            let message = message.clone();
            async move { inner.request(&peer, message, timeout).await }
        })
        .await
    }

    /// The configured peers; `alive` while a connection to or from the peer
    /// is up and the last exchange with it succeeded.
    fn peers(&self) -> Vec<PeerInfo> {
        self.inner.slots.iter().map(|slot| slot.info()).collect()
    }

    async fn stop(&self) -> Result<(), NetworkError> {
        let run = self.inner.run.lock().take();
        let Some(run) = run else {
            return Ok(());
        };
        run.shutdown.send_replace(true);
        run.tasks.shutdown().await;
        for slot in &self.inner.slots {
            slot.link.clear("stopped").await;
            slot.set_alive(false);
        }
        debug!(node = %self.inner.config.server_id, "stopped");
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::io::AsyncReadExt;

    use super::psk::{HandshakeError, MAC_LEN, client_handshake, hello, nonce, read_hello};
    use super::*;
    use crate::protocol::{Envelope, PROTOCOL_VERSION};

    const KEY: &[u8] = b"unit-test key, 32 bytes or so...";

    #[derive(Debug, Default)]
    struct Counter(AtomicUsize);

    #[async_trait]
    impl MessageHandler for Counter {
        async fn handle(&self, _from: PeerId, message: Message) -> Option<Message> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Some(message)
        }
    }

    /// Node "n1" serving with a counting handler; "n0" may connect.
    async fn server() -> (TcpNetworkManager, Arc<Counter>, SocketAddr) {
        let config = TcpConfig::new("n1", "127.0.0.1:0", KEY)
            .with_peer("n0", "127.0.0.1:9")
            .with_max_frame_bytes(64 * 1024);
        let node = TcpNetworkManager::new(config).unwrap();
        let counter = Arc::new(Counter::default());
        node.start(counter.clone()).await.unwrap();
        let addr = node.local_addr().unwrap();
        (node, counter, addr)
    }

    async fn authenticated(addr: SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        client_handshake(&mut stream, "n0", "n1", KEY)
            .await
            .unwrap();
        stream
    }

    /// True when the node closes the stream (within 10 s).
    async fn closed(stream: &mut TcpStream) -> bool {
        let drain = async {
            let mut buf = [0u8; 256];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_ok()
    }

    fn heartbeat_frame(request_id: u64) -> Vec<u8> {
        let envelope = Envelope {
            version: PROTOCOL_VERSION,
            request_id,
            message: Message::Heartbeat {
                node: "n0".into(),
                root_sequence: request_id,
                term: 1,
            },
        };
        wire::encode_frame(&envelope, 1024).unwrap()
    }

    #[tokio::test]
    async fn handshake_round_trip_and_frames_flow() {
        let (node, counter, addr) = server().await;
        let mut stream = authenticated(addr).await;
        stream.write_all(&heartbeat_frame(41)).await.unwrap();
        let response = wire::read_frame(&mut stream, 1024).await.unwrap();
        assert_eq!(response.request_id, 41);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(
            node.peers()[0].alive,
            "an authenticated inbound peer is alive"
        );
        node.stop().await.unwrap();
    }

    /// A client that cannot prove the key gets no frame read and learns no
    /// MAC of the server's: the server proves nothing before the client has.
    #[tokio::test]
    async fn a_client_with_a_forged_proof_is_refused_and_gets_no_proof() {
        let (node, counter, addr) = server().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let client_nonce = nonce().unwrap();
        stream.write_all(&hello(&client_nonce, "n0")).await.unwrap();
        let (_server_nonce, server_id) = read_hello(&mut stream).await.unwrap();
        assert_eq!(server_id, "n1");
        stream.write_all(&[0x42; MAC_LEN]).await.unwrap();
        let _ = stream.write_all(&heartbeat_frame(1)).await;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("the server left the connection open");
        assert!(
            read.is_err() || rest.is_empty(),
            "the server answered a forged proof with {} bytes",
            rest.len()
        );
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        node.stop().await.unwrap();
    }

    #[tokio::test]
    async fn a_key_mismatch_and_a_wrong_server_are_detected_by_the_client() {
        let (node, _counter, addr) = server().await;
        // The server refuses a client whose proof fails (it hangs up).
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let err = client_handshake(&mut stream, "n0", "n1", b"another key, not the cluster's")
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Refused), "{err}");
        assert!(err.to_string().contains("pre-shared keys"), "{err}");
        // The client proves nothing to a server that is not the peer it
        // dialled.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let err = client_handshake(&mut stream, "n0", "n9", KEY)
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::WrongPeer { .. }), "{err}");
        node.stop().await.unwrap();

        // An impostor server that takes any proof but cannot prove the key.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let impostor = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            read_hello(&mut s).await.unwrap();
            s.write_all(&hello(&nonce().unwrap(), "n1")).await.unwrap();
            let mut proof = [0u8; MAC_LEN];
            s.read_exact(&mut proof).await.unwrap();
            s.write_all(&[7u8; MAC_LEN]).await.unwrap();
            s
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let err = client_handshake(&mut stream, "n0", "n1", KEY)
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::BadMac), "{err}");
        drop(impostor.await.unwrap());
    }

    #[test]
    fn short_keys_are_refused() {
        for key in [&b""[..], &b"fifteen bytes.."[..]] {
            let err = TcpNetworkManager::new(TcpConfig::new("n1", "127.0.0.1:0", key)).unwrap_err();
            assert_eq!(
                err,
                TcpConfigError::KeyTooShort {
                    len: key.len(),
                    min: MIN_PSK_BYTES
                }
            );
        }
        assert!(
            TcpNetworkManager::new(TcpConfig::new("n1", "127.0.0.1:0", &[9u8; 16][..])).is_ok()
        );
    }

    /// A client link (`client~…`, same key) is accepted, and the handler
    /// sees its client id, never a member's.
    #[tokio::test]
    async fn a_client_link_is_accepted_under_its_client_id() {
        #[derive(Debug, Default)]
        struct From(Mutex<Vec<PeerId>>);
        #[async_trait]
        impl MessageHandler for From {
            async fn handle(&self, from: PeerId, message: Message) -> Option<Message> {
                self.0.lock().push(from);
                Some(message)
            }
        }
        let config = TcpConfig::new("n1", "127.0.0.1:0", KEY).with_peer("n0", "127.0.0.1:9");
        let node = TcpNetworkManager::new(config).unwrap();
        let seen = Arc::new(From::default());
        node.start(seen.clone()).await.unwrap();
        let addr = node.local_addr().unwrap().to_string();
        let client = TcpNetworkManager::new(
            TcpConfig::new(crate::network::client_id("n0"), "127.0.0.1:0", KEY)
                .with_peer("n1", addr.as_str()),
        )
        .unwrap();
        client.start(seen.clone()).await.unwrap();
        let r = client
            .request(&"n1".into(), heartbeat_message(), Duration::from_secs(5))
            .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(*seen.0.lock(), vec!["client~n0".to_string()]);
        // A wrong key is still refused, and blamed on the keys, not the peer.
        let stranger = TcpNetworkManager::new(
            TcpConfig::new(
                crate::network::client_id("n0"),
                "127.0.0.1:0",
                &b"a wrong key, long enough"[..],
            )
            .with_peer("n1", addr.as_str())
            .with_max_retries(0),
        )
        .unwrap();
        stranger.start(seen.clone()).await.unwrap();
        let r = stranger
            .request(&"n1".into(), heartbeat_message(), Duration::from_secs(5))
            .await;
        let err = r.unwrap_err().to_string();
        assert!(err.contains("pre-shared keys"), "{err}");
        // A member id may not be a client id.
        assert!(
            TcpNetworkManager::new(
                TcpConfig::new("n1", "127.0.0.1:0", KEY).with_peer("client~x", "127.0.0.1:9")
            )
            .is_err()
        );
        for n in [&client, &stranger, &node] {
            n.stop().await.unwrap();
        }
    }

    fn heartbeat_message() -> Message {
        Message::Heartbeat {
            node: "x".into(),
            root_sequence: 0,
            term: 0,
        }
    }

    #[tokio::test]
    async fn an_unknown_id_is_refused() {
        let (node, counter, addr) = server().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let err = client_handshake(&mut stream, "stranger", "n1", KEY)
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Refused), "{err}");
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        node.stop().await.unwrap();
    }

    #[tokio::test]
    async fn malformed_frames_after_authentication_close_only_that_connection() {
        let (node, counter, addr) = server().await;
        let mut healthy = authenticated(addr).await;

        let oversized = {
            let mut v = u32::MAX.to_le_bytes().to_vec();
            v.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            v
        };
        let wrong_version = {
            let mut v = heartbeat_frame(2);
            v[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
            v
        };
        let garbage_body = {
            let mut v = 8u32.to_le_bytes().to_vec();
            v.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            v.extend_from_slice(&[0xc1; 8]);
            v
        };
        let truncated = heartbeat_frame(3)[..10].to_vec();
        for (name, bytes) in [
            ("oversized", oversized),
            ("wrong version", wrong_version),
            ("garbage body", garbage_body),
            ("truncated", truncated),
        ] {
            let mut hostile = authenticated(addr).await;
            hostile.write_all(&bytes).await.unwrap();
            if name == "truncated" {
                // Ends the stream inside the frame.
                hostile.shutdown().await.unwrap();
            }
            assert!(closed(&mut hostile).await, "{name}: connection left open");
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);

        // The healthy connection, opened before the attacks, still works.
        healthy.write_all(&heartbeat_frame(7)).await.unwrap();
        let response = wire::read_frame(&mut healthy, 1024).await.unwrap();
        assert_eq!(response.request_id, 7);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        node.stop().await.unwrap();
    }
}
