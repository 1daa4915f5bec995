//! [`QuicConfig`] and why one is refused.

use crate::network::PeerId;
use crate::transports::common::check_members;
use crate::transports::tls::{TlsConfig, TlsError};
use crate::wire::DEFAULT_MAX_FRAME_BYTES;

/// Configuration of a [`QuicNetworkManager`](super::QuicNetworkManager).
///
/// The same timeouts, retry settings and frame limit as
/// [`TcpConfig`](crate::transports::TcpConfig); authentication is mutual TLS
/// ([`TlsConfig`]) instead of a pre-shared key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QuicConfig {
    /// This node's id; its certificate must be valid for it (subject
    /// alternative name). A client link's id is
    /// [`client_id(member)`](crate::network::client_id): it presents the
    /// member's certificate with the client ALPN and is served as a client.
    pub server_id: PeerId,
    /// UDP address to listen on, `host:port`; port 0 picks a free port.
    pub listen_addr: String,
    /// The other nodes: id and `host:port`. Only these may connect, with a
    /// certificate valid for their id.
    pub peers: Vec<(PeerId, String)>,
    /// Certificate, key and trust (cluster CA or pinned certificates).
    pub tls: TlsConfig,
    /// Deadline of a connection attempt (QUIC and TLS handshake), both
    /// directions, in ms (default 2 000). Request deadlines are the `timeout`
    /// argument of each call.
    pub read_timeout_ms: u64,
    /// Pause between connection attempts, in ms (default 1 000).
    pub retry_interval_ms: u64,
    /// Connection attempts after the first one fails (default 3).
    pub max_retries: u32,
    /// Largest frame body sent or accepted (default 32 MiB).
    pub max_frame_bytes: usize,
    /// A connection without any packet for this long is closed, in ms
    /// (default 10 000); keep-alives are sent at a third of it.
    pub idle_timeout_ms: u64,
}

impl QuicConfig {
    /// A configuration with no peers and the default timeouts and limits.
    pub fn new(
        server_id: impl Into<PeerId>,
        listen_addr: impl Into<String>,
        tls: TlsConfig,
    ) -> Self {
        QuicConfig {
            server_id: server_id.into(),
            listen_addr: listen_addr.into(),
            peers: Vec::new(),
            tls,
            read_timeout_ms: 2_000,
            retry_interval_ms: 1_000,
            max_retries: 3,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            idle_timeout_ms: 10_000,
        }
    }

    crate::transports::common::member_setters!();

    /// Sets [`idle_timeout_ms`](Self::idle_timeout_ms).
    pub fn with_idle_timeout_ms(mut self, ms: u64) -> Self {
        self.idle_timeout_ms = ms;
        self
    }

    pub(crate) fn peer_ids(&self) -> Vec<PeerId> {
        self.peers.iter().map(|(id, _)| id.clone()).collect()
    }

    pub(super) fn validate(&self) -> Result<(), QuicConfigError> {
        check_members(&self.server_id, &self.peers, self.max_frame_bytes)?;
        if self.idle_timeout_ms < 100 {
            return Err(QuicConfigError::IdleTimeout(self.idle_timeout_ms));
        }
        self.tls
            .check_identity(crate::transports::tls::identity_of(&self.server_id))?;
        Ok(())
    }
}

crate::transports::common::config_error! {
    /// Why a [`QuicConfig`] was refused.
    pub enum QuicConfigError {
        /// `idle_timeout_ms` is below 100 ms.
        #[error("idle_timeout_ms {0} is below 100 ms")]
        IdleTimeout(u64),
        /// The certificates or keys are unusable.
        #[error("{0}")]
        Tls(TlsError),
    }
}

impl From<TlsError> for QuicConfigError {
    fn from(e: TlsError) -> Self {
        QuicConfigError::Tls(e)
    }
}
crate::transports::common::socket_config!(QuicConfig);
