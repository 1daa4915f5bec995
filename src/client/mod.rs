//! Clients of a running node (DESIGN.md §11): push, get, read and publish
//! roots from outside the process that embeds the storage, without being a
//! voting member.
//!
//! - **Server side.** [`ClientHandler`] wraps a cluster node's message
//!   handler (the builder installs it on every cluster node) and serves the
//!   `Client*` messages of [`crate::protocol`] from the node's own
//!   [`Storage`](crate::Storage): a push is an embedded push, a read goes
//!   through the node's read path (memory, page cache, own WALs, then peers
//!   or the object store), and a publish goes through the node's grant
//!   exactly as an embedded [`Storage::begin_root_update`](crate::Storage::begin_root_update)
//!   — optionally only when the current root is the one the client expects
//!   (compare-and-swap). The atom a publish names must be readable first, so
//!   a client cannot publish a root that points nowhere.
//! - **Authentication.** A client authenticates like a peer, with the
//!   cluster's credentials (the TCP pre-shared key; over QUIC a member's
//!   certificate presented under the client ALPN), but with a *client id*
//!   ([`crate::network::client_id`], `client~<member>`). A
//!   client id is never a member: the transport accepts it only as a link,
//!   quorum counts never include it, and both [`ClientHandler`] and
//!   [`ClusterHandler`](crate::cluster::ClusterHandler) refuse every
//!   consensus message (prepare, accept, release, heartbeat, root queries)
//!   from it. It may read pages and ask for the status.
//! - **Client side.** [`Client`] talks to one node over any
//!   [`NetworkManager`]; [`Client::connect`] builds the link from a node
//!   description (its transport and credentials), [`Client::connect_tcp`]
//!   from `id@host:port` and a pre-shared key. [`ClusterSpace`] is a
//!   read-only view of a whole cluster (every member's WALs, the quorum's
//!   root) that `protobase copy` and `verify` read through.

mod handler;
mod space;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use handler::ClientHandler;
pub use space::ClusterSpace;

use crate::config::{BuildContext, NodeConfig};
use crate::error::{Error, Result};
use crate::network::{MessageHandler, NetworkManager, PeerId, client_id};
use crate::protocol::{ExpectedRoot, Message, NodeStatus};
use crate::types::{AtomPointer, Format, RootRecord, WalId};
use crate::wal_store::WalInfo;

/// Default deadline of one client request (a publish may wait for a vote).
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The outcome of [`Client::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The new root, durable.
    Root(RootRecord),
    /// The current root was not the expected one; nothing was published.
    Conflict {
        /// The current root.
        current: Option<RootRecord>,
    },
}

/// A link to one node of a cluster; see the [module docs](self).
#[derive(Debug)]
pub struct Client {
    link: Arc<dyn NetworkManager>,
    node: PeerId,
    timeout: Duration,
}

/// Answers nothing: a client link only sends requests.
#[derive(Debug)]
struct NoHandler;

#[async_trait]
impl MessageHandler for NoHandler {
    async fn handle(&self, _from: PeerId, _message: Message) -> Option<Message> {
        None
    }
}

impl Client {
    /// A client of `node` over a started `link` (any transport, e.g. the
    /// in-process one in tests).
    pub fn over(link: Arc<dyn NetworkManager>, node: impl Into<PeerId>) -> Self {
        Client {
            link,
            node: node.into(),
            timeout: DEFAULT_CLIENT_TIMEOUT,
        }
    }

    /// Sets the deadline of each request (default
    /// [`DEFAULT_CLIENT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects to member `member` (default: the node `config` describes)
    /// of the cluster `config` belongs to, with `config`'s transport and
    /// credentials, as the client `client~<config's node id>`.
    pub async fn connect(config: &NodeConfig, member: Option<&str>) -> Result<Client> {
        let source = &config.source;
        let Some(cluster) = &config.cluster else {
            return Err(Error::invalid(
                "connect",
                format!(
                    "{source}: no [cluster] section: a client connects to a cluster node \
                     (its transport and credentials come from [cluster] and [transport])"
                ),
            ));
        };
        let member = member.unwrap_or(&cluster.server_id);
        let target = cluster
            .servers
            .iter()
            .find(|p| p.id == member)
            .ok_or_else(|| {
                Error::invalid(
                    "connect",
                    format!("{source}: cluster.servers has no member {member:?}"),
                )
            })?;
        let link = crate::cluster::ClusterConfig {
            server_id: client_id(&cluster.server_id),
            host: "127.0.0.1".into(),
            port: 0,
            servers: vec![target.clone()],
            ..cluster.clone()
        };
        let ctx = BuildContext {
            source,
            storage: &config.storage,
            cluster: Some(&link),
        };
        let network = match &config.transport {
            Some(t) => t.build(&link, &ctx),
            None => link.network_manager(),
        }
        .map_err(|e| Error::invalid("connect", format!("{source}: transport: {e}")))?;
        network.start(Arc::new(NoHandler)).await?;
        Ok(Client::over(network, member))
    }

    /// Connects over TCP to `node` at `address` with the pre-shared `key`,
    /// as the client `client~cli`.
    #[cfg(feature = "tcp")]
    pub async fn connect_tcp(node: &str, address: &str, key: &[u8]) -> Result<Client> {
        let config = crate::transports::TcpConfig::new(client_id("cli"), "127.0.0.1:0", key)
            .with_peer(node, address);
        let network = crate::transports::TcpNetworkManager::new(config)
            .map_err(|e| Error::invalid("connect", e.to_string()))?;
        network.start(Arc::new(NoHandler)).await?;
        Ok(Client::over(Arc::new(network), node))
    }

    /// The node this client talks to.
    pub fn node(&self) -> &str {
        &self.node
    }

    async fn request(&self, message: Message) -> Result<Message> {
        match self.link.request(&self.node, message, self.timeout).await? {
            Message::Error { message } => Err(Error::Backend {
                backend: format!("node {}", self.node),
                message,
            }),
            other => Ok(other),
        }
    }

    fn unexpected(&self, answer: &Message) -> Error {
        Error::Backend {
            backend: format!("node {}", self.node),
            message: format!("unexpected answer {answer:?}"),
        }
    }

    /// Pushes a record; with `sync`, returns once it is durable on the node
    /// (a publish also makes it durable).
    pub async fn push(&self, format: Format, data: Bytes, sync: bool) -> Result<AtomPointer> {
        match self
            .request(Message::ClientPush { format, data, sync })
            .await?
        {
            Message::ClientPushed { pointer } => Ok(pointer),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Reads (and checks) the record at `pointer` through the node.
    pub async fn get(&self, pointer: AtomPointer) -> Result<(Format, Bytes)> {
        match self.request(Message::ClientGet { pointer }).await? {
            Message::ClientRecord { format, data } => Ok((format, data)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The current root (in a cluster, a linearizable read).
    pub async fn read_root(&self) -> Result<Option<RootRecord>> {
        match self.request(Message::ClientReadRoot).await? {
            Message::ClientRoot(root) => Ok(root),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Publishes `pointer` as the root through the node's grant; with
    /// `expected`, only if the current root is that one. An error (a
    /// timeout, say) leaves the outcome unknown: read the root again.
    pub async fn publish(
        &self,
        pointer: AtomPointer,
        expected: Option<ExpectedRoot>,
    ) -> Result<Published> {
        match self
            .request(Message::ClientPublish { pointer, expected })
            .await?
        {
            Message::ClientPublished(root) => Ok(Published::Root(root)),
            Message::ClientConflict { current } => Ok(Published::Conflict { current }),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The WALs the node holds itself.
    pub async fn list_wals(&self) -> Result<Vec<WalInfo>> {
        match self.request(Message::ClientListWals).await? {
            Message::ClientWals(wals) => Ok(wals
                .into_iter()
                .map(|(id, len)| WalInfo { id, len })
                .collect()),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Bytes of `wal` the node holds itself (`None`: not there; empty: past
    /// its end), at most 8 MiB per call.
    pub async fn read_page(&self, wal: WalId, offset: u64, len: u64) -> Result<Option<Bytes>> {
        match self
            .request(Message::PageRequest { wal, offset, len })
            .await?
        {
            Message::PageResponse { data, .. } => Ok(data),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The node's status (term, newest root).
    pub async fn status(&self) -> Result<NodeStatus> {
        match self.request(Message::StatusRequest).await? {
            Message::Status(s) => Ok(s),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Closes the link.
    pub async fn close(&self) {
        let _ = self.link.stop().await;
    }
}
