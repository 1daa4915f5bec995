//! Settings of a cluster node.

use std::fmt;
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

/// Settings of a cluster node. Defaults follow the reference implementation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// Pre-shared key peers authenticate with (TCP transport).
    pub psk: Option<String>,
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
            .finish()
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
}

#[cfg(feature = "tcp")]
impl ClusterConfig {
    /// The TCP transport settings of this node (listens on `host:port`,
    /// authenticates peers with `psk`).
    pub fn tcp_config(&self) -> crate::error::Result<crate::transports::TcpConfig> {
        let psk = self.psk.as_ref().filter(|k| !k.is_empty()).ok_or_else(|| {
            crate::error::Error::invalid("psk", "a cluster over TCP needs a pre-shared key")
        })?;
        Ok(crate::transports::TcpConfig::new(
            self.server_id.clone(),
            format!("{}:{}", self.host, self.port),
            psk.as_bytes().to_vec(),
        )
        .with_peers(self.peers().map(|p| (p.id.clone(), p.address.clone())))
        .with_read_timeout_ms(self.read_timeout_ms)
        .with_retry_interval_ms(self.retry_interval_ms)
        .with_max_retries(self.max_retries))
    }
}
