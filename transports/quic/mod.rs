//! QUIC transport on quinn with mutual TLS (feature `quic`).
//!
//! [`QuicNetworkManager`] implements [`NetworkManager`](crate::NetworkManager) over QUIC:
//!
//! - **Endpoint.** The first [`start`](crate::NetworkManager::start) binds one UDP
//!   socket on [`QuicConfig::listen_addr`] (port 0 picks a free port; see
//!   [`QuicNetworkManager::local_addr`]) or uses a socket handed to
//!   [`QuicNetworkManager::with_socket`]. The endpoint both accepts
//!   connections and dials peers, and lives as long as the manager: while
//!   the manager is stopped it refuses every connection attempt at once
//!   (like a closed TCP port), so peers learn immediately that the node is
//!   down instead of waiting out a handshake timeout. Dropping the manager
//!   releases the socket.
//! - **One connection per peer, one bidirectional stream per request.** The
//!   requester opens a stream, writes one request frame and finishes its
//!   side; the responder writes one response frame on the same stream. The
//!   stream is the request/response correlation (the envelope's
//!   `request_id` is still checked), so there is no pending-request table or
//!   writer task: opening a stream costs no round trip, and QUIC's
//!   per-stream flow control keeps a large page from blocking the small
//!   requests next to it (no head-of-line blocking as on one TCP stream).
//!   Connections are opened on first use and reopened after they break, with
//!   the TCP transport's retry settings (shared code in `common`).
//! - **Mutual TLS** ([`crate::transports::tls`]): a connection is accepted
//!   only from a certificate trusted by [`TlsConfig`](super::TlsConfig)'s
//!   [`Trust`](super::Trust) and valid for one of the configured peers' ids;
//!   that id is the `from` the handler sees. The client checks that the
//!   server's certificate is valid for the id it dialled. A *client link*
//!   (an operator tool, `--connect`; its id is
//!   [`client_id(member)`](crate::network::client_id)) presents a member's
//!   certificate under the client ALPN ([`CLIENT_ALPN`](super::tls::CLIENT_ALPN));
//!   the server then hands `client~<member>` to the handler, which never
//!   lets a client vote or accept. A node with an
//!   untrusted certificate fails the handshake and never gets a stream
//!   accepted, so it can neither vote nor publish.
//! - **Frames** are those of [`crate::wire`], limited to
//!   [`max_frame_bytes`](QuicConfig::max_frame_bytes) in both directions and
//!   checked before the body is allocated. A malformed, oversized or
//!   wrong-version frame closes that connection (logged with `tracing`).
//! - **Stop** closes every connection (peers see it closed at once), fails
//!   in-flight requests with [`NetworkError::Stopped`], cancels running
//!   handler calls and returns once none is running. `start` again listens on
//!   the same address. As on TCP, a handler call runs to its end even when
//!   the requester gave up (timeout): handlers are cancelled only by `stop`.
//! - **Restart.** A node's stateless-reset key is derived from its private
//!   key, so after a crash and restart on the same address its peers' stale
//!   connections are reset at the first packet and reopened, instead of
//!   waiting for the idle timeout. (A crashed node's *absence*, on the other
//!   hand, shows only as handshake timeouts: UDP has no connection refusal,
//!   and quinn ignores ICMP port-unreachable.)
//! - **Backpressure.** At most 1 024 concurrent request streams per
//!   connection (QUIC stream limits) and 1 024 inbound connections, at most
//!   [`MAX_HANDSHAKES_PER_SOURCE`](crate::transports::MAX_HANDSHAKES_PER_SOURCE)
//!   of them in their handshake from one IP address (more are refused).

mod config;
mod server;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, VarInt};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span, warn};

pub use self::config::{QuicConfig, QuicConfigError};
use super::common::{Binding, LinkConnection};
use super::node::{Node, Run, Transport, forward_network_manager};
use super::tls::TlsError;
use crate::network::NetworkError;
use crate::protocol::Message;
use crate::wire::{self, WireError};

/// Concurrent request streams one connection accepts.
const MAX_STREAMS_PER_CONNECTION: u32 = 1024;
/// Inbound connections served at once.
const MAX_INBOUND_CONNECTIONS: usize = 1024;
/// Application close codes.
const CLOSE_STOPPED: u32 = 0;
const CLOSE_REPLACED: u32 = 1;
/// A malformed frame, or a certificate of no configured peer.
const CLOSE_REFUSED: u32 = 2;

/// A [`NetworkManager`](crate::NetworkManager) over QUIC; see the
/// [module docs](self).
///
/// Share it as `Arc<QuicNetworkManager>` (or `Arc<dyn NetworkManager>`).
/// Dropping it without [`stop`](crate::NetworkManager::stop) aborts its
/// tasks.
pub struct QuicNetworkManager {
    node: Arc<QuicNode>,
}

type QuicNode = Node<Quic>;
type QuicRun = Run<Quic>;

/// The QUIC side of a [`QuicNode`]: the endpoint, its TLS ends, dialling.
pub(crate) struct Quic {
    config: QuicConfig,
    client: quinn::ClientConfig,
    server: quinn::ServerConfig,
    reset_key: Arc<aws_lc_rs::hmac::Key>,
    /// Who may connect, and under which name each is served.
    tls_peers: super::tls::TlsPeers,
    /// The endpoint, from the first `start` until the manager is dropped,
    /// and the task accepting (or, while stopped, refusing) connections.
    endpoint: Mutex<Option<(quinn::Endpoint, AbortHandle)>>,
    /// The socket handed to `with_socket`, and the address bound.
    binding: Binding<std::net::UdpSocket>,
}

/// What one run of a QUIC node keeps: the endpoint it dials from, and its
/// inbound connections (closed by `stop`).
pub(crate) struct Serving {
    endpoint: quinn::Endpoint,
    inbound: Mutex<Vec<quinn::Connection>>,
}

/// A configured peer and its connection.
type PeerSlot = super::common::PeerSlot<Outbound>;

/// An outbound connection of one run.
#[derive(Clone)]
pub(crate) struct Outbound {
    run_id: u64,
    conn: quinn::Connection,
}

impl LinkConnection for Outbound {
    fn usable(&self, run_id: u64) -> bool {
        self.run_id == run_id && self.conn.close_reason().is_none()
    }
    fn discard(&self, reason: &str) {
        self.conn
            .close(VarInt::from_u32(CLOSE_REPLACED), reason.as_bytes());
    }
}

impl QuicNetworkManager {
    /// A manager for `config`; nothing happens on the network until
    /// [`start`](crate::NetworkManager::start). Refuses invalid ids, limits,
    /// and a certificate not valid for `server_id`.
    pub fn new(config: QuicConfig) -> Result<Self, QuicConfigError> {
        config.validate()?;
        let tls_error = |e: String| QuicConfigError::Tls(TlsError::Config(e));
        let (client_tls, server_tls, tls_peers) =
            super::tls::node_tls(&config.tls, &config.server_id, config.peer_ids())?;
        let client_crypto =
            QuicClientConfig::try_from(client_tls).map_err(|e| tls_error(e.to_string()))?;
        let server_crypto =
            QuicServerConfig::try_from(server_tls).map_err(|e| tls_error(e.to_string()))?;
        let transport = Arc::new(transport_config(&config));
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(Arc::clone(&transport));
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport);
        let reset_key = Arc::new(reset_key(&config));
        Ok(QuicNetworkManager {
            node: Arc::new(Node::new(Quic {
                config,
                client,
                server,
                reset_key,
                tls_peers,
                endpoint: Mutex::new(None),
                binding: Binding::new(),
            })),
        })
    }

    /// Opens a fresh connection to `peer` (not the shared one) and one
    /// request stream on it, for tests that send raw bytes: write a frame
    /// (or garbage) and shut the writer down, then read the answer.
    #[cfg(feature = "conformance")]
    pub async fn open_raw_stream(
        &self,
        peer: &crate::network::PeerId,
    ) -> Result<tokio::io::Join<quinn::RecvStream, quinn::SendStream>, NetworkError> {
        let run = self.node.current_run().ok_or(NetworkError::Stopped)?;
        let slot = self.node.slot(peer)?;
        let outbound = self.node.transport.connect(&run, slot).await?;
        let (send, recv) = outbound
            .conn
            .open_bi()
            .await
            .map_err(|e| connection_error(peer, &e))?;
        Ok(tokio::io::join(recv, send))
    }
}

impl Transport for Quic {
    type Link = Outbound;
    type Serving = Serving;
    type Config = QuicConfig;
    const NAME: &'static str = "quic";

    fn config(&self) -> &QuicConfig {
        &self.config
    }

    async fn bind(node: &Arc<QuicNode>) -> Result<Serving, NetworkError> {
        Ok(Serving {
            endpoint: Quic::endpoint(node).await?,
            inbound: Mutex::new(Vec::new()),
        })
    }

    /// The endpoint's accept loop serves the run once it is installed.
    fn serve(node: &Arc<QuicNode>, run: &Arc<QuicRun>) {
        let local_addr = run.serving.endpoint.local_addr().ok();
        node.transport.binding.set_bound(local_addr);
    }

    async fn dial(
        node: &Arc<QuicNode>,
        run: &Arc<QuicRun>,
        slot: &Arc<PeerSlot>,
    ) -> Result<Outbound, NetworkError> {
        node.transport.connect(run, slot).await
    }

    /// One request on its own stream (no timeout here).
    async fn exchange(
        &self,
        slot: &PeerSlot,
        outbound: Outbound,
        request_id: u64,
        frame: Vec<u8>,
    ) -> Result<Message, NetworkError> {
        let conn = &outbound.conn;
        let lost = |stream_error: String| match conn.close_reason() {
            Some(e) => connection_error(&slot.id, &e),
            None => NetworkError::Unreachable {
                peer: slot.id.clone(),
                reason: stream_error,
            },
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(e.to_string()))?;
        send.write_all(&frame)
            .await
            .map_err(|e| lost(format!("sending the request failed: {e}")))?;
        let _ = send.finish();
        let envelope = match wire::read_frame(&mut recv, self.config.max_frame_bytes).await {
            Ok(envelope) => envelope,
            Err(e) if e.is_malformed() => {
                warn!(peer = %slot.id, error = %e, "malformed response; closing the connection");
                conn.close(VarInt::from_u32(CLOSE_REFUSED), b"malformed frame");
                return Err(NetworkError::Protocol {
                    peer: slot.id.clone(),
                    reason: format!("malformed response: {e}"),
                });
            }
            Err(WireError::Closed) => return Err(lost("the peer answered nothing".into())),
            Err(e) => return Err(lost(format!("reading the response failed: {e}"))),
        };
        if envelope.request_id != request_id {
            return Err(NetworkError::Protocol {
                peer: slot.id.clone(),
                reason: format!(
                    "response to request {} on the stream of request {request_id}",
                    envelope.request_id
                ),
            });
        }
        slot.set_alive(true);
        Ok(envelope.message)
    }

    fn stopped(&self, serving: &Serving) {
        for conn in serving.inbound.lock().drain(..) {
            conn.close(VarInt::from_u32(CLOSE_STOPPED), b"stopped");
        }
    }
}

impl Quic {
    /// The node's endpoint, created (with its accept loop) on first use.
    async fn endpoint(node: &Arc<QuicNode>) -> Result<quinn::Endpoint, NetworkError> {
        let quic = &node.transport;
        if let Some((endpoint, _)) = quic.endpoint.lock().as_ref() {
            return Ok(endpoint.clone());
        }
        let socket = quic.socket().await?;
        let reset_key: Arc<dyn quinn::crypto::HmacKey> = quic.reset_key.clone();
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::new(reset_key),
            Some(quic.server.clone()),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|e| quic.bind_error(format!("cannot start the QUIC endpoint: {e}")))?;
        let mut slot = quic.endpoint.lock();
        if let Some((existing, _)) = slot.as_ref() {
            // A concurrent `start` created one first.
            endpoint.close(VarInt::from_u32(CLOSE_STOPPED), b"unused");
            return Ok(existing.clone());
        }
        let span = debug_span!(
            "quic_endpoint",
            node = %quic.config.server_id,
            addr = ?endpoint.local_addr().ok(),
        );
        // Holds the node weakly: the manager's drop ends the loop (and
        // aborts it) without a cycle keeping the node alive.
        let acceptor = tokio::spawn(
            server::accept_loop(Arc::downgrade(node), endpoint.clone()).instrument(span),
        )
        .abort_handle();
        *slot = Some((endpoint.clone(), acceptor));
        Ok(endpoint)
    }

    fn bind_error(&self, reason: String) -> NetworkError {
        NetworkError::Listen {
            address: self.config.listen_addr.clone(),
            reason,
        }
    }

    /// The endpoint's UDP socket: the pre-bound one, or one bound on
    /// `listen_addr`.
    async fn socket(&self) -> Result<std::net::UdpSocket, NetworkError> {
        if let Some(socket) = self.binding.take_prebound() {
            return Ok(socket);
        }
        let addr = tokio::net::lookup_host(self.config.listen_addr.as_str())
            .await
            .map_err(|e| {
                self.bind_error(format!("cannot resolve {}: {e}", self.config.listen_addr))
            })?
            .next()
            .ok_or_else(|| {
                self.bind_error(format!("{} resolves to nothing", self.config.listen_addr))
            })?;
        // A previous manager on this address (a node restarted within the
        // process) releases its socket when its endpoint driver ends, just
        // after it is dropped: give it a moment rather than fail.
        let give_up = Instant::now() + self.config.read_timeout();
        loop {
            match std::net::UdpSocket::bind(addr) {
                Ok(socket) => return Ok(socket),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < give_up => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(self.bind_error(format!("cannot bind {addr}: {e}"))),
            }
        }
    }

    /// One connection attempt to `slot`: QUIC and TLS handshakes.
    async fn connect(&self, run: &QuicRun, slot: &PeerSlot) -> Result<Outbound, NetworkError> {
        let unreachable = |reason: String| NetworkError::Unreachable {
            peer: slot.id.clone(),
            reason,
        };
        let addr = tokio::net::lookup_host(slot.address.as_str())
            .await
            .map_err(|e| unreachable(format!("cannot resolve {}: {e}", slot.address)))?
            .next()
            .ok_or_else(|| unreachable(format!("{} resolves to nothing", slot.address)))?;
        let connecting = run
            .serving
            .endpoint
            .connect_with(self.client.clone(), addr, &slot.id)
            .map_err(|e| unreachable(format!("cannot connect to {addr}: {e}")))?;
        let conn = match tokio::time::timeout(self.config.read_timeout(), connecting).await {
            Err(_) => return Err(unreachable(format!("handshake with {addr} timed out"))),
            Ok(Err(e)) => {
                let error = connection_error(&slot.id, &e);
                if matches!(error, NetworkError::Protocol { .. }) {
                    warn!(peer = %slot.id, %addr, error = %e, "handshake refused");
                }
                return Err(error);
            }
            Ok(Ok(conn)) => conn,
        };
        debug!(node = %self.config.server_id, peer = %slot.id, %addr, "connected");
        Ok(Outbound {
            run_id: run.id,
            conn,
        })
    }
}

fn transport_config(config: &QuicConfig) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS_PER_CONNECTION));
    transport.max_concurrent_uni_streams(VarInt::from_u32(0));
    let idle = Duration::from_millis(config.idle_timeout_ms);
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
    transport.keep_alive_interval(Some(idle / 3));
    // Room for a few large pages in flight per connection.
    transport.stream_receive_window(VarInt::from_u32(8 * 1024 * 1024));
    transport.send_window(64 * 1024 * 1024);
    transport
}

/// A stateless-reset key stable across restarts of this node (derived from
/// its private key), so peers learn at once that an old connection is gone.
fn reset_key(config: &QuicConfig) -> aws_lc_rs::hmac::Key {
    let seed = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, config.tls.key.secret_der());
    // A client link presents a member's key: give it a reset key of its own.
    let label: &[u8] = if crate::network::is_client_id(&config.server_id) {
        b"protobase quic stateless reset (client link)"
    } else {
        b"protobase quic stateless reset"
    };
    let tag = aws_lc_rs::hmac::sign(&seed, label);
    aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, tag.as_ref())
}

impl Drop for QuicNetworkManager {
    fn drop(&mut self) {
        self.node.abort();
        if let Some((endpoint, acceptor)) = self.node.transport.endpoint.lock().take() {
            acceptor.abort();
            endpoint.close(VarInt::from_u32(CLOSE_STOPPED), b"stopped");
        }
    }
}

forward_network_manager!(
    QuicNetworkManager,
    QuicConfig,
    QuicConfigError,
    with_socket(std::net::UdpSocket),
    "Binds the UDP endpoint (the address of a previous run, if any) and \
     serves inbound connections with `handler`. On a running manager it \
     replaces the handler. Fails with [`NetworkError::Listen`] when the \
     address cannot be bound."
);

/// Maps a connection's end to the error of requests on it: refusals (TLS
/// alerts, malformed frames) are protocol errors, everything else makes the
/// peer unreachable.
fn connection_error(peer: &str, error: &ConnectionError) -> NetworkError {
    let protocol = |reason: String| NetworkError::Protocol {
        peer: peer.to_owned(),
        reason,
    };
    match error {
        ConnectionError::TransportError(e) if is_crypto(u64::from(e.code)) => {
            protocol(format!("TLS handshake failed: {e}"))
        }
        ConnectionError::ConnectionClosed(close) if is_crypto(u64::from(close.error_code)) => {
            protocol(format!("the peer refused our certificate: {close}"))
        }
        ConnectionError::ApplicationClosed(close)
            if close.error_code == VarInt::from_u32(CLOSE_REFUSED) =>
        {
            protocol(format!("the peer closed the connection: {close}"))
        }
        other => NetworkError::Unreachable {
            peer: peer.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// QUIC carries TLS alerts as transport error codes 0x100..=0x1ff.
fn is_crypto(code: u64) -> bool {
    (0x100..=0x1ff).contains(&code)
}
