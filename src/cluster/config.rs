//! Settings of a cluster node, including which transport it uses
//! ([`Transport`]) and, for QUIC, its TLS files ([`TlsFiles`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddress {
    /// Its `server_id`.
    pub id: String,
    /// `host:port` it listens on.
    pub address: String,
}

/// The transport a cluster node's network manager uses when the builder
/// creates it (see [`ClusterConfig::network_manager`]). In configuration
/// files: `"tcp"`, `"tcp_tls"` or `"quic"`.
///
/// Any other [`NetworkManager`](crate::NetworkManager) (the in-process
/// transport, a custom one) is given to the builder directly with
/// [`StorageBuilder::with_network_manager`](crate::StorageBuilder::with_network_manager).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP with a pre-shared-key handshake (feature `tcp`): needs
    /// [`ClusterConfig::psk`].
    Tcp,
    /// QUIC with mutual TLS (feature `quic`): needs [`ClusterConfig::tls`].
    Quic,
    /// TCP with mutual TLS 1.3 (feature `tcp-tls`): needs
    /// [`ClusterConfig::tls`], the same files as QUIC.
    #[serde(rename = "tcp_tls", alias = "tcp-tls")]
    TcpTls,
}

impl Default for Transport {
    /// TCP when the crate is built with feature `tcp`, else QUIC.
    fn default() -> Self {
        if cfg!(feature = "tcp") || !cfg!(feature = "quic") {
            Transport::Tcp
        } else {
            Transport::Quic
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
            Transport::TcpTls => "tcp-tls",
        })
    }
}

/// PEM files of a node's TLS identity and whom it trusts (QUIC transport).
///
/// Set exactly one of `ca` (peers' certificates must be issued by it) and
/// `pinned` (peers' certificates must be one of these).
/// `protobase certs` creates a development CA and node certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsFiles {
    /// This node's certificate (chain), valid for its `server_id`.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
    /// The cluster CA certificate.
    pub ca: Option<PathBuf>,
    /// Pinned peer certificates, instead of a CA.
    pub pinned: Vec<PathBuf>,
}

/// Settings of a cluster node. Defaults follow the reference implementation.
///
/// `#[non_exhaustive]`: build it with [`ClusterConfig::new`] and the
/// `with_*` setters (or [`Default`] and field assignments), so new settings
/// never break callers.
///
/// ```
/// use protobase::cluster::ClusterConfig;
///
/// let config = ClusterConfig::new("a")
///     .with_port(7001)
///     .with_servers([("a", "10.0.0.1:7001"), ("b", "10.0.0.2:7001"), ("c", "10.0.0.3:7001")])
///     .with_psk("secret");
/// assert_eq!(config.quorum(), 2);
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// This node's id (must be unique in the cluster).
    pub server_id: String,
    /// Address to listen on (default `127.0.0.1`).
    pub host: String,
    /// Port to listen on (default 8765; 0 picks a free port).
    pub port: u16,
    /// Every member, this node included or not (it is skipped).
    pub servers: Vec<PeerAddress>,
    /// Timeout of one request to a peer (default 2 000 ms).
    pub read_timeout_ms: u64,
    /// How long an acquire may take before failing (default 5 000 ms).
    pub vote_timeout_ms: u64,
    /// Pause between retries of a failed remote read (default 1 000 ms).
    pub retry_interval_ms: u64,
    /// Retries of a failed remote read (default 3).
    pub max_retries: u32,
    /// Lease of an exclusive grant (default 5 000 ms).
    pub lease_ms: u64,
    /// Interval of root-progress heartbeats (default 1 000 ms; 0 disables).
    pub heartbeat_ms: u64,
    /// Pre-shared key peers authenticate with (TCP transport). Redacted
    /// when the configuration is serialised or shown.
    #[serde(serialize_with = "crate::config::redact_secret")]
    pub psk: Option<String>,
    /// Transport of the network manager the builder creates (default TCP,
    /// or QUIC in a build without feature `tcp`).
    pub transport: Transport,
    /// TLS certificate, key and trust (QUIC transport).
    pub tls: Option<TlsFiles>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            server_id: "server-1".into(),
            host: "127.0.0.1".into(),
            port: 8765,
            servers: Vec::new(),
            read_timeout_ms: 2_000,
            vote_timeout_ms: 5_000,
            retry_interval_ms: 1_000,
            max_retries: 3,
            lease_ms: 5_000,
            heartbeat_ms: 1_000,
            psk: None,
            transport: Transport::default(),
            tls: None,
        }
    }
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("server_id", &self.server_id)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("servers", &self.servers)
            .field("read_timeout_ms", &self.read_timeout_ms)
            .field("vote_timeout_ms", &self.vote_timeout_ms)
            .field("retry_interval_ms", &self.retry_interval_ms)
            .field("max_retries", &self.max_retries)
            .field("lease_ms", &self.lease_ms)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("psk", &self.psk.as_ref().map(|_| "<redacted>"))
            .field("transport", &self.transport)
            .field("tls", &self.tls)
            .finish()
    }
}

impl PeerAddress {
    /// The member `id` listening on `address` (`host:port`).
    pub fn new(id: impl Into<String>, address: impl Into<String>) -> Self {
        PeerAddress {
            id: id.into(),
            address: address.into(),
        }
    }
}

impl TlsFiles {
    /// This node's certificate and key, trusting peers issued by `ca`.
    pub fn with_ca(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        ca: impl Into<PathBuf>,
    ) -> Self {
        TlsFiles {
            cert: cert.into(),
            key: key.into(),
            ca: Some(ca.into()),
            pinned: Vec::new(),
        }
    }

    /// This node's certificate and key, trusting exactly the `pinned`
    /// certificates.
    pub fn with_pinned(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        pinned: impl IntoIterator<Item = impl Into<PathBuf>>,
    ) -> Self {
        TlsFiles {
            cert: cert.into(),
            key: key.into(),
            ca: None,
            pinned: pinned.into_iter().map(Into::into).collect(),
        }
    }
}

/// Builder-style setters: `ClusterConfig::new("a").with_port(7001)...`
/// (the struct is `#[non_exhaustive]`, so new settings can come without
/// breaking callers).
impl ClusterConfig {
    /// The defaults for the node `server_id`.
    pub fn new(server_id: impl Into<String>) -> Self {
        ClusterConfig {
            server_id: server_id.into(),
            ..Self::default()
        }
    }

    /// Address to listen on.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Port to listen on (0 picks a free port).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Every member, as `(id, "host:port")` pairs or [`PeerAddress`]es.
    pub fn with_servers<P: Into<PeerAddress>>(
        mut self,
        servers: impl IntoIterator<Item = P>,
    ) -> Self {
        self.servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Timeout of one request to a peer.
    pub fn with_read_timeout_ms(mut self, ms: u64) -> Self {
        self.read_timeout_ms = ms;
        self
    }

    /// How long an acquire may take before failing.
    pub fn with_vote_timeout_ms(mut self, ms: u64) -> Self {
        self.vote_timeout_ms = ms;
        self
    }

    /// Pause between retries of a failed remote read.
    pub fn with_retry_interval_ms(mut self, ms: u64) -> Self {
        self.retry_interval_ms = ms;
        self
    }

    /// Retries of a failed remote read.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Lease of an exclusive grant.
    pub fn with_lease_ms(mut self, ms: u64) -> Self {
        self.lease_ms = ms;
        self
    }

    /// Interval of root-progress heartbeats (0 disables them).
    pub fn with_heartbeat_ms(mut self, ms: u64) -> Self {
        self.heartbeat_ms = ms;
        self
    }

    /// Pre-shared key of the TCP transport.
    pub fn with_psk(mut self, psk: impl Into<String>) -> Self {
        self.psk = Some(psk.into());
        self
    }

    /// Transport of the network manager the builder creates.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// TLS files of the QUIC transport.
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }
}

impl<I: Into<String>, A: Into<String>> From<(I, A)> for PeerAddress {
    fn from((id, address): (I, A)) -> Self {
        PeerAddress::new(id, address)
    }
}

impl ClusterConfig {
    /// Nodes in the cluster, this one included.
    pub fn cluster_size(&self) -> usize {
        1 + self.peers().count()
    }

    /// Votes (or acks) needed: a majority of all nodes.
    pub fn quorum(&self) -> usize {
        self.cluster_size() / 2 + 1
    }

    /// The other members.
    pub fn peers(&self) -> impl Iterator<Item = &PeerAddress> {
        self.servers.iter().filter(|p| p.id != self.server_id)
    }

    pub(crate) fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }
    pub(crate) fn vote_timeout(&self) -> Duration {
        Duration::from_millis(self.vote_timeout_ms)
    }
    pub(crate) fn retry_interval(&self) -> Duration {
        Duration::from_millis(self.retry_interval_ms)
    }

    /// A network manager of the configured [`transport`](Self::transport)
    /// for this node: TCP ([`tcp_config`](Self::tcp_config)) or QUIC
    /// ([`quic_config`](Self::quic_config)). Fails when that transport's
    /// feature is not enabled or its settings are incomplete.
    pub fn network_manager(&self) -> crate::error::Result<Arc<dyn crate::NetworkManager>> {
        match self.transport {
            // `tcp_config` refuses TcpTls in a build without `tcp-tls`.
            #[cfg(feature = "tcp")]
            Transport::Tcp | Transport::TcpTls => Ok(Arc::new(
                crate::transports::TcpNetworkManager::new(self.tcp_config()?)
                    .map_err(|e| crate::error::Error::invalid("TCP config", e.to_string()))?,
            )),
            #[cfg(feature = "quic")]
            Transport::Quic => Ok(Arc::new(
                crate::transports::QuicNetworkManager::new(self.quic_config()?)
                    .map_err(|e| crate::error::Error::invalid("QUIC config", e.to_string()))?,
            )),
            #[allow(unreachable_patterns)]
            other => Err(crate::error::Error::invalid(
                "transport",
                format!("transport {other} needs the crate feature `{other}`"),
            )),
        }
    }
}

#[cfg(feature = "tls")]
impl ClusterConfig {
    /// This node's TLS identity and trust, loaded from the PEM files of
    /// [`tls`](Self::tls) (QUIC and TLS over TCP).
    pub fn tls_config(&self) -> crate::error::Result<crate::transports::tls::TlsConfig> {
        use crate::transports::tls::{TlsConfig, Trust};
        let invalid = |reason: String| crate::error::Error::invalid("tls", reason);
        let files = self.tls.as_ref().ok_or_else(|| {
            invalid(format!(
                "a cluster over {} needs tls certificate files",
                self.transport
            ))
        })?;
        let trust = match (&files.ca, files.pinned.is_empty()) {
            (Some(ca), true) => Trust::ca_from_pem_file(ca),
            (None, false) => Trust::pinned_from_pem_files(&files.pinned),
            (Some(_), false) => {
                return Err(invalid("set either tls.ca or tls.pinned, not both".into()));
            }
            (None, true) => {
                return Err(invalid(
                    "tls needs a CA (tls.ca) or pinned certificates (tls.pinned)".into(),
                ));
            }
        }
        .map_err(|e| invalid(e.to_string()))?;
        TlsConfig::from_pem_files(&files.cert, &files.key, trust)
            .map_err(|e| invalid(e.to_string()))
    }
}

#[cfg(feature = "quic")]
impl ClusterConfig {
    /// The QUIC transport settings of this node: listens on `host:port`,
    /// loads the PEM files of [`tls`](Self::tls), and uses the same
    /// timeouts and retries as TCP.
    pub fn quic_config(&self) -> crate::error::Result<crate::transports::QuicConfig> {
        Ok(crate::transports::QuicConfig::new(
            self.server_id.clone(),
            format!("{}:{}", self.host, self.port),
            self.tls_config()?,
        )
        .with_peers(self.peers().map(|p| (p.id.clone(), p.address.clone())))
        .with_read_timeout_ms(self.read_timeout_ms)
        .with_retry_interval_ms(self.retry_interval_ms)
        .with_max_retries(self.max_retries))
    }
}

#[cfg(feature = "tcp")]
impl ClusterConfig {
    /// The TCP transport settings of this node (listens on `host:port`):
    /// peers authenticate with `psk`, or, for [`Transport::TcpTls`], with
    /// the certificates of [`tls`](Self::tls) over mutual TLS.
    pub fn tcp_config(&self) -> crate::error::Result<crate::transports::TcpConfig> {
        let listen = format!("{}:{}", self.host, self.port);
        let config = match self.transport {
            #[cfg(feature = "tcp-tls")]
            Transport::TcpTls => {
                crate::transports::TcpConfig::new(self.server_id.clone(), listen, Vec::new())
                    .with_tls(self.tls_config()?)
            }
            // Never the PSK instead of the TLS the configuration asks for.
            #[cfg(not(feature = "tcp-tls"))]
            Transport::TcpTls => {
                return Err(crate::error::Error::invalid(
                    "transport",
                    "transport tcp-tls needs the crate feature `tcp-tls`",
                ));
            }
            Transport::Tcp | Transport::Quic => {
                let psk = self.psk.as_ref().filter(|k| !k.is_empty()).ok_or_else(|| {
                    crate::error::Error::invalid("psk", "a cluster over TCP needs a pre-shared key")
                })?;
                crate::transports::TcpConfig::new(
                    self.server_id.clone(),
                    listen,
                    psk.as_bytes().to_vec(),
                )
            }
        };
        Ok(config
            .with_peers(self.peers().map(|p| (p.id.clone(), p.address.clone())))
            .with_read_timeout_ms(self.read_timeout_ms)
            .with_retry_interval_ms(self.retry_interval_ms)
            .with_max_retries(self.max_retries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_and_tls_deserialise_from_plain_values() {
        let config: ClusterConfig = serde_json::from_value(serde_json::json!({
            "server_id": "a",
            "transport": "quic",
            "tls": {"cert": "a.pem", "key": "a.key", "ca": "ca.pem"},
        }))
        .unwrap();
        assert_eq!(config.transport, Transport::Quic);
        let tls = config.tls.unwrap();
        assert_eq!(tls.ca, Some(PathBuf::from("ca.pem")));
        assert!(tls.pinned.is_empty());
        let pinned: TlsFiles = serde_json::from_value(serde_json::json!({
            "cert": "a.pem", "key": "a.key", "pinned": ["b.pem", "c.pem"],
        }))
        .unwrap();
        assert_eq!(pinned.pinned.len(), 2);
        assert!(
            serde_json::from_value::<ClusterConfig>(
                serde_json::json!({"transport": "carrier-pigeon"})
            )
            .is_err()
        );
        let default: ClusterConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(default.transport, Transport::default());
    }

    #[cfg(feature = "quic")]
    #[test]
    fn quic_settings_are_checked() {
        let config = ClusterConfig {
            transport: Transport::Quic,
            ..ClusterConfig::default()
        };
        let err = config.network_manager().unwrap_err().to_string();
        assert!(err.contains("tls"), "{err}");
        let both = ClusterConfig {
            tls: Some(TlsFiles {
                cert: "a.pem".into(),
                key: "a.key".into(),
                ca: Some("ca.pem".into()),
                pinned: vec!["b.pem".into()],
            }),
            ..config.clone()
        };
        let err = both.quic_config().unwrap_err().to_string();
        assert!(err.contains("either"), "{err}");
        let missing = ClusterConfig {
            tls: Some(TlsFiles {
                cert: "/nonexistent/a.pem".into(),
                key: "/nonexistent/a.key".into(),
                ca: Some("/nonexistent/ca.pem".into()),
                pinned: Vec::new(),
            }),
            ..config
        };
        let err = missing.quic_config().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[cfg(not(feature = "quic"))]
    #[test]
    fn quic_without_the_feature_is_refused() {
        let config = ClusterConfig {
            transport: Transport::Quic,
            ..ClusterConfig::default()
        };
        let err = config.network_manager().unwrap_err().to_string();
        assert!(err.contains("feature `quic`"), "{err}");
    }
}
