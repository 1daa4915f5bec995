//! [`StorageBuilder::from_config`]: a node description to a builder.

use super::vote::{MajorityVoteConfig, SingleNodeVoteConfig, VoteConfig};
use super::{BuildContext, ConfigError, NodeConfig};
use crate::builder::StorageBuilder;
use crate::storage::Storage;

impl StorageBuilder {
    /// A builder for the node `config` describes, any of the four variants:
    /// the backend's provider, the storage settings, the page cache, the
    /// vote strategy and, with a `[cluster]` section, the transport and the
    /// cluster membership. Call [`build`](Self::build) (or use
    /// [`NodeConfig::build`], which names the file in build errors).
    pub async fn from_config(config: &NodeConfig) -> Result<StorageBuilder, ConfigError> {
        let source = &config.source;
        let fail = |component: &'static str| {
            move |e: crate::Error| ConfigError::Build {
                file: source.clone(),
                component,
                source: e,
            }
        };
        let mut cluster = config.cluster.clone();
        let vote: Box<dyn VoteConfig> = match &config.vote {
            Some(v) => v.clone(),
            None if cluster.is_some() => Box::new(MajorityVoteConfig::default()),
            None => Box::new(SingleNodeVoteConfig::default()),
        };
        if config.transport.is_some() && cluster.is_none() {
            return Err(ConfigError::Key {
                file: source.clone(),
                key: "transport".into(),
                message: "a transport needs a [cluster] section".into(),
            });
        }
        let ctx = BuildContext {
            source,
            storage: &config.storage,
            cluster: config.cluster.as_ref(),
        };
        let mut builder = config
            .backend
            .builder(&ctx)
            .await
            .map_err(fail("backend"))?
            .with_config(config.storage.clone());
        if let Some(pc) = &config.page_cache {
            builder = builder.with_page_cache(pc.build(&ctx).await.map_err(fail("page_cache"))?);
        }
        builder = vote
            .apply(builder, cluster.as_mut())
            .map_err(fail("vote"))?;
        if let Some(cluster) = cluster {
            let network = match &config.transport {
                Some(t) => t.build(&cluster, &ctx),
                None => default_transport(&cluster, &ctx),
            }
            .map_err(fail("transport"))?;
            builder = builder.with_network_manager(network).cluster(cluster);
        }
        Ok(builder)
    }
}

/// Without a `[transport]` section: the transport `[cluster]` names
/// (`transport = "tcp"` by default, or `"quic"` with `tls` files).
fn default_transport(
    cluster: &crate::cluster::ClusterConfig,
    _ctx: &BuildContext<'_>,
) -> crate::Result<std::sync::Arc<dyn crate::NetworkManager>> {
    cluster.network_manager()
}

impl NodeConfig {
    /// Builds the storage this describes (see
    /// [`StorageBuilder::from_config`]); every error names the file.
    pub async fn build(&self) -> Result<Storage, ConfigError> {
        StorageBuilder::from_config(self)
            .await?
            .build()
            .await
            .map_err(|e| ConfigError::Build {
                file: self.source.clone(),
                component: "storage",
                source: e,
            })
    }
}

/// Answers nothing: the handler of an operator tool's link, which only
/// sends requests.
#[derive(Debug)]
struct NoHandler;

#[async_trait::async_trait]
impl crate::network::MessageHandler for NoHandler {
    async fn handle(
        &self,
        _from: crate::network::PeerId,
        _message: crate::protocol::Message,
    ) -> Option<crate::protocol::Message> {
        None
    }
}

impl NodeConfig {
    /// A started link from an operator tool (`protobase status`) to the
    /// cluster member `member`, over this node's transport and credentials.
    ///
    /// The transport authenticates members only, so the link presents this
    /// node's id (or, to reach this node itself, another member's id); it
    /// listens on `127.0.0.1:0` and never answers requests. Stop it with
    /// [`NetworkManager::stop`](crate::NetworkManager::stop) when done.
    pub async fn operator_link(
        &self,
        member: &str,
    ) -> Result<std::sync::Arc<dyn crate::NetworkManager>, ConfigError> {
        let key_error = |message: String| ConfigError::Key {
            file: self.source.clone(),
            key: "cluster.servers".into(),
            message,
        };
        let Some(cluster) = &self.cluster else {
            return Err(ConfigError::Key {
                file: self.source.clone(),
                key: "cluster".into(),
                message: "missing: operator tools talk to a cluster".into(),
            });
        };
        let target = cluster
            .servers
            .iter()
            .find(|p| p.id == member)
            .ok_or_else(|| key_error(format!("no member {member:?}")))?;
        let as_id = if member != cluster.server_id {
            cluster.server_id.clone()
        } else {
            cluster
                .servers
                .iter()
                .find(|p| p.id != member)
                .map(|p| p.id.clone())
                .ok_or_else(|| key_error("a one-member cluster cannot be asked".into()))?
        };
        let link = crate::cluster::ClusterConfig {
            server_id: as_id,
            host: "127.0.0.1".into(),
            port: 0,
            servers: vec![target.clone()],
            ..cluster.clone()
        };
        let ctx = BuildContext {
            source: &self.source,
            storage: &self.storage,
            cluster: Some(&link),
        };
        let fail = |e: crate::Error| ConfigError::Build {
            file: self.source.clone(),
            component: "transport",
            source: e,
        };
        let network = match &self.transport {
            Some(t) => t.build(&link, &ctx),
            None => default_transport(&link, &ctx),
        }
        .map_err(fail)?;
        network
            .start(std::sync::Arc::new(NoHandler))
            .await
            .map_err(|e| fail(e.into()))?;
        Ok(network)
    }
}
