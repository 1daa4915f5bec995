//! [`TransportConfig`]: which [`NetworkManager`] a cluster node talks to its
//! peers through (`[transport]`, tagged by `type`; default `tcp`).
//!
//! | `type` | fields | transport |
//! |---|---|---|
//! | `tcp` | `psk`, `max_frame_bytes` | [`TcpNetworkManager`](crate::transports::TcpNetworkManager) (feature `tcp`) |
//! | `quic` | `cert`, `key`, `ca` or `pinned` (PEM files) | [`QuicNetworkManager`](crate::transports::QuicNetworkManager) with mutual TLS (feature `quic`) |
//! | `tcp_tls` | as `quic` | [`TcpNetworkManager`](crate::transports::TcpNetworkManager) with mutual TLS 1.3 (feature `tcp-tls`) |
//! | `in_process` | `hub` | [`InProcessNetwork`](crate::transports::InProcessNetwork) on a named hub shared by the process |
//!
//! Listen address, peers and timeouts come from the `[cluster]` section.

use std::collections::HashMap;
use std::fmt::{self, Debug};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use dyn_clone::DynClone;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::BuildContext;
use crate::cluster::ClusterConfig;
use crate::error::Result;
use crate::network::NetworkManager;
use crate::transports::InProcessHub;

/// The `[transport]` section: builds the node's network manager.
#[typetag::serde(tag = "type")]
pub trait TransportConfig: DynClone + Debug + Send + Sync {
    /// The network manager of the node `cluster` describes (not started).
    fn build(
        &self,
        cluster: &ClusterConfig,
        ctx: &BuildContext<'_>,
    ) -> Result<Arc<dyn NetworkManager>>;

    /// Makes relative paths (key files...) relative to `base`.
    fn resolve_paths(&mut self, _base: &Path) {}
}

dyn_clone::clone_trait_object!(TransportConfig);

/// `type = "tcp"`: TCP with the pre-shared-key handshake.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpTransport {
    /// Pre-shared key of the cluster (default: `cluster.psk`). Better set
    /// from the environment: `PROTOBASE_TRANSPORT__PSK`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::redact_secret"
    )]
    pub psk: Option<String>,
    /// Largest frame sent or accepted (default 32 MiB,
    /// [`crate::wire::DEFAULT_MAX_FRAME_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame_bytes: Option<usize>,
}

impl Debug for TcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTransport")
            .field("psk", &self.psk.as_ref().map(|_| "<redacted>"))
            .field("max_frame_bytes", &self.max_frame_bytes)
            .finish()
    }
}

#[cfg(feature = "tcp")]
#[typetag::serde(name = "tcp")]
impl TransportConfig for TcpTransport {
    fn build(
        &self,
        cluster: &ClusterConfig,
        _ctx: &BuildContext<'_>,
    ) -> Result<Arc<dyn NetworkManager>> {
        let mut cluster = cluster.clone();
        if self.psk.is_some() {
            cluster.psk = self.psk.clone();
        }
        let mut tcp = cluster.tcp_config()?;
        if let Some(max) = self.max_frame_bytes {
            tcp = tcp.with_max_frame_bytes(max);
        }
        let net = crate::transports::TcpNetworkManager::new(tcp)
            .map_err(|e| crate::Error::invalid("transport", e.to_string()))?;
        Ok(Arc::new(net))
    }
}

/// `type = "quic"`: QUIC with mutual TLS. Every node presents `cert`/`key`
/// and verifies its peers against the cluster CA `ca` or the `pinned`
/// certificates (`protobase certs` creates a development set). Paths are
/// relative to the config file; `PROTOBASE_TRANSPORT__KEY` overrides the key
/// path from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuicTransport {
    /// This node's certificate (PEM).
    pub cert: std::path::PathBuf,
    /// This node's private key (PEM).
    pub key: std::path::PathBuf,
    /// The cluster CA certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<std::path::PathBuf>,
    /// Pinned peer certificates, instead of a CA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<std::path::PathBuf>,
}

impl QuicTransport {
    /// The network manager of `transport` (QUIC or TLS over TCP) with these
    /// TLS files.
    #[cfg(feature = "tls")]
    fn tls_network_manager(
        &self,
        cluster: &ClusterConfig,
        transport: crate::cluster::Transport,
    ) -> Result<Arc<dyn NetworkManager>> {
        let mut cluster = cluster.clone();
        cluster.transport = transport;
        cluster.tls = Some(crate::cluster::TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
            pinned: self.pinned.clone(),
        });
        cluster.network_manager()
    }

    #[cfg(feature = "tls")]
    fn resolve_tls_paths(&mut self, base: &Path) {
        use super::backend::resolve;
        resolve(base, &mut self.cert);
        resolve(base, &mut self.key);
        if let Some(ca) = &mut self.ca {
            resolve(base, ca);
        }
        for p in &mut self.pinned {
            resolve(base, p);
        }
    }
}

#[cfg(feature = "quic")]
#[typetag::serde(name = "quic")]
impl TransportConfig for QuicTransport {
    fn build(
        &self,
        cluster: &ClusterConfig,
        _ctx: &BuildContext<'_>,
    ) -> Result<Arc<dyn NetworkManager>> {
        self.tls_network_manager(cluster, crate::cluster::Transport::Quic)
    }

    fn resolve_paths(&mut self, base: &Path) {
        self.resolve_tls_paths(base);
    }
}

/// `type = "tcp_tls"`: the TCP transport with mutual TLS 1.3 instead of the
/// pre-shared key: the same settings (certificate, key, CA or pinned
/// certificates) as [`QuicTransport`]. Every frame is encrypted and
/// authenticated: for networks you do not trust.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TcpTlsTransport(pub QuicTransport);

#[cfg(feature = "tcp-tls")]
#[typetag::serde(name = "tcp_tls")]
impl TransportConfig for TcpTlsTransport {
    fn build(
        &self,
        cluster: &ClusterConfig,
        _ctx: &BuildContext<'_>,
    ) -> Result<Arc<dyn NetworkManager>> {
        self.0
            .tls_network_manager(cluster, crate::cluster::Transport::TcpTls)
    }

    fn resolve_paths(&mut self, base: &Path) {
        self.0.resolve_tls_paths(base);
    }
}

/// `type = "in_process"`: the simulated network of
/// [`crate::transports::in_process`]. Every node naming the same `hub` in
/// one process joins the same network (tests, single-process demos).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InProcessTransport {
    /// Name of the hub (default `"default"`).
    #[serde(default = "default_hub")]
    pub hub: String,
}

fn default_hub() -> String {
    "default".into()
}

impl InProcessTransport {
    /// The process-wide hub called `name` (created on first use, seed 0).
    pub fn hub(name: &str) -> Arc<InProcessHub> {
        static HUBS: OnceLock<Mutex<HashMap<String, Arc<InProcessHub>>>> = OnceLock::new();
        HUBS.get_or_init(Default::default)
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(InProcessHub::new(0)))
            .clone()
    }
}

#[typetag::serde(name = "in_process")]
impl TransportConfig for InProcessTransport {
    fn build(
        &self,
        cluster: &ClusterConfig,
        _ctx: &BuildContext<'_>,
    ) -> Result<Arc<dyn NetworkManager>> {
        Ok(Arc::new(
            Self::hub(&self.hub).node(cluster.server_id.clone()),
        ))
    }
}
