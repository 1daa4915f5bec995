//! TCP transport on tokio (feature `tcp`, default).
//!
//! [`TcpNetworkManager`] implements [`NetworkManager`](crate::NetworkManager) over plain TCP:
//!
//! - **Listener.** [`start`](crate::NetworkManager::start) binds
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
//! - **Stop.** [`stop`](crate::NetworkManager::stop) closes the listener and every
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

mod config;
mod frame_writer;
mod link;
mod psk;
mod server;
#[cfg(test)]
mod tests;
#[cfg(feature = "tcp-tls")]
mod tls;

pub use self::config::{TcpConfig, TcpConfigError};
pub use super::admission::MAX_HANDSHAKES_PER_SOURCE;

use std::io;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tracing::{Instrument, debug, debug_span, warn};

use self::frame_writer::FrameWriter;
use self::link::{Conn, PeerSlot, read_responses};
use super::common::Binding;
use super::node::{Node, Run, Transport, forward_network_manager};
use crate::network::{NetworkError, PeerId};
use crate::protocol::Message;

/// Smallest accepted [`TcpConfig::max_frame_bytes`].
pub const MIN_FRAME_BYTES: usize = super::common::MIN_FRAME_BYTES;

/// Shortest accepted [`TcpConfig::pre_shared_key`] (use 32 random bytes).
pub const MIN_PSK_BYTES: usize = 16;

/// The read and write ends of an authenticated connection (plain TCP or
/// TLS).
type ReadEnd = Box<dyn AsyncRead + Send + Unpin>;
type WriteEnd = Box<dyn AsyncWrite + Send + Unpin>;

/// Frames waiting for a connection's writer task (a sender waits for room
/// beyond that).
const WRITE_QUEUE: usize = 256;
/// Requests one inbound connection may have in its handler at once; reading
/// pauses (backpressure) beyond that.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 1024;
/// Inbound connections (authenticated or not) served at once.
const MAX_INBOUND_CONNECTIONS: usize = 1024;
/// Socket buffer sizes of the reader and writer.
const IO_BUFFER: usize = 64 * 1024;

/// A [`NetworkManager`](crate::NetworkManager) over TCP; see the
/// [module docs](self).
///
/// Share it as `Arc<TcpNetworkManager>` (or `Arc<dyn NetworkManager>`).
/// Dropping it without [`stop`](crate::NetworkManager::stop) aborts its
/// tasks.
pub struct TcpNetworkManager {
    node: Arc<TcpNode>,
}

type TcpNode = Node<Tcp>;
type TcpRun = Run<Tcp>;

/// The TCP side of a [`TcpNode`]: dialling, listening, authenticating.
pub(crate) struct Tcp {
    config: TcpConfig,
    /// The TLS ends, when the connections use TLS (else the PSK).
    #[cfg(feature = "tcp-tls")]
    tls: Option<tls::TcpTls>,
    /// The socket handed to `with_listener`, and the address bound.
    binding: Binding<std::net::TcpListener>,
}

impl TcpNetworkManager {
    /// A manager for `config`; nothing happens on the network until
    /// [`start`](crate::NetworkManager::start).
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
        Ok(TcpNetworkManager {
            node: Arc::new(Node::new(Tcp {
                config,
                #[cfg(feature = "tcp-tls")]
                tls,
                binding: Binding::new(),
            })),
        })
    }

    /// Opens a fresh, authenticated connection to `peer` (not the shared
    /// one) and returns the raw stream, for tests that send raw bytes after
    /// the handshake.
    #[cfg(feature = "conformance")]
    pub async fn open_raw_stream(
        &self,
        peer: &PeerId,
    ) -> Result<impl AsyncRead + AsyncWrite + Send + Unpin + 'static, NetworkError> {
        let slot = self.node.slot(peer)?;
        let stream = TcpStream::connect(slot.address.as_str())
            .await
            .map_err(|e| NetworkError::Unreachable {
                peer: peer.clone(),
                reason: e.to_string(),
            })?;
        let (reader, writer) = self
            .node
            .transport
            .authenticate_outbound(stream, peer)
            .await?;
        Ok(tokio::io::join(reader, writer))
    }
}

impl Drop for TcpNetworkManager {
    fn drop(&mut self) {
        self.node.abort();
    }
}

forward_network_manager!(
    TcpNetworkManager,
    TcpConfig,
    TcpConfigError,
    with_listener(std::net::TcpListener),
    "Binds the listener (the address of a previous run, if any) and serves \
     inbound connections with `handler`. On a running manager it replaces \
     the handler. Fails with [`NetworkError::Listen`] when the address \
     cannot be bound (in use, say); other failures to use a given listener \
     are [`NetworkError::Unreachable`] naming this node."
);

/// What one run of a TCP node keeps: its listener until the accept loop
/// takes it.
pub(crate) struct Listening(Mutex<Option<TcpListener>>);

impl Transport for Tcp {
    type Link = Arc<Conn>;
    type Serving = Listening;
    type Config = TcpConfig;
    const NAME: &'static str = "tcp";

    fn config(&self) -> &TcpConfig {
        &self.config
    }

    async fn bind(node: &Arc<TcpNode>) -> Result<Listening, NetworkError> {
        let listener = node.transport.listen().await?;
        Ok(Listening(Mutex::new(Some(listener))))
    }

    fn serve(node: &Arc<TcpNode>, run: &Arc<TcpRun>) {
        let Some(listener) = run.serving.0.lock().take() else {
            return;
        };
        let local_addr = listener.local_addr().ok();
        node.transport.binding.set_bound(local_addr);
        let span = debug_span!("tcp_listener", node = %node.transport.config.server_id, addr = ?local_addr);
        debug!(parent: &span, "listening");
        run.tasks.spawn(
            server::accept_loop(Arc::clone(node), Arc::clone(run), listener).instrument(span),
        );
    }

    async fn dial(
        node: &Arc<TcpNode>,
        run: &Arc<TcpRun>,
        slot: &Arc<PeerSlot>,
    ) -> Result<Arc<Conn>, NetworkError> {
        node.transport.connect(run, slot).await
    }

    async fn exchange(
        &self,
        _slot: &PeerSlot,
        link: Arc<Conn>,
        request_id: u64,
        frame: Vec<u8>,
    ) -> Result<Message, NetworkError> {
        link.exchange(request_id, frame).await
    }
}

impl Tcp {
    async fn listen(&self) -> Result<TcpListener, NetworkError> {
        let unreachable = |reason: String| NetworkError::Unreachable {
            peer: self.config.server_id.clone(),
            reason,
        };
        let prebound = self.binding.take_prebound();
        if let Some(listener) = prebound {
            listener
                .set_nonblocking(true)
                .map_err(|e| unreachable(format!("cannot use the given listener: {e}")))?;
            return TcpListener::from_std(listener)
                .map_err(|e| unreachable(format!("cannot use the given listener: {e}")));
        }
        let previous = self.binding.bound();
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

    /// One connection attempt: connect, authenticate, start the tasks.
    async fn connect(
        &self,
        run: &Arc<TcpRun>,
        slot: &Arc<PeerSlot>,
    ) -> Result<Arc<Conn>, NetworkError> {
        let unreachable = |reason: String| NetworkError::Unreachable {
            peer: slot.id.clone(),
            reason,
        };
        let limit = self.config.read_timeout();
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
            "conn",
            transport = "tcp",
            node = %self.config.server_id,
            peer = %slot.id,
            addr = %slot.address,
            dir = "out",
        );
        debug!(parent: &span, "connected");
        let writer = Arc::new(FrameWriter::new(writer));
        let conn = Conn::new(run.id, slot.id.clone(), Arc::clone(&writer));
        let writer_conn = Arc::clone(&conn);
        let writer_task = async move {
            if let Err(e) = writer.run().await {
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

    /// Authenticates an inbound connection (PSK handshake or TLS) from a
    /// peer `admit` accepts: the peer's id and the connection's two ends.
    async fn authenticate_inbound(
        &self,
        mut stream: TcpStream,
        admit: impl Fn(&str) -> bool,
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
            admit,
        )
        .await
        .map_err(|e| e.to_string())?;
        let (r, w) = stream.into_split();
        Ok((peer, Box::new(r), Box::new(w)))
    }
}
