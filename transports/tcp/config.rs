//! [`TcpConfig`] and why one is refused.

use std::fmt;

use super::MIN_PSK_BYTES;
use crate::network::PeerId;
use crate::transports::common::check_members;
#[cfg(feature = "tcp-tls")]
use crate::transports::tls::TlsConfig;
use crate::wire::DEFAULT_MAX_FRAME_BYTES;

/// Configuration of a [`TcpNetworkManager`](super::TcpNetworkManager).
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

    crate::transports::common::member_setters!();

    /// Authenticates and encrypts with mutual TLS 1.3 instead of the
    /// pre-shared key (see [`tls`](Self::tls)).
    #[cfg(feature = "tcp-tls")]
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The TLS settings, if TLS is on.
    #[cfg(feature = "tcp-tls")]
    pub(super) fn tls_settings(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    #[cfg(not(feature = "tcp-tls"))]
    pub(super) fn tls_settings(&self) -> Option<&std::convert::Infallible> {
        None
    }

    pub(super) fn validate(&self) -> Result<(), TcpConfigError> {
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

crate::transports::common::config_error! {
    /// Why a [`TcpConfig`] was refused.
    pub enum TcpConfigError {
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
    }
}
crate::transports::common::socket_config!(TcpConfig);
