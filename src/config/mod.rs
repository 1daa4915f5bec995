//! Node descriptions in a file: TOML or JSON, read with serde.
//!
//! A [`NodeConfig`] names every component of a node. The backend, transport,
//! vote strategy and page cache are trait objects tagged by `type`
//! (`typetag`), cloneable (`dyn-clone`), each building its component, so a
//! new implementation (a QUIC transport, an on-disk page cache) is one more
//! `impl` with `#[typetag::serde(name = "...")]`. [`NodeConfig::build`]
//! (or [`StorageBuilder::from_config`](crate::StorageBuilder::from_config))
//! builds any of the four variants:
//!
//! | variant | sections |
//! |---|---|
//! | standalone | `[backend] type = "fs"` (or `memory`) |
//! | cluster | `fs` backend + `[cluster]` (+ `[transport]`, default `tcp`) |
//! | cloud | `[backend] type = "cloud"` with a `store` URL |
//! | cloud-cluster | `cloud` backend + `[cluster]` |
//!
//! ```toml
//! [storage]                 # StorageConfig; every key optional
//! buffer_size = 1048576
//!
//! [backend]
//! type = "fs"
//! dir = "space-a"           # relative to this file
//!
//! [cluster]                 # ClusterConfig; makes this a cluster node
//! server_id = "a"
//! port = 7001
//! servers = [
//!   { id = "a", address = "127.0.0.1:7001" },
//!   { id = "b", address = "127.0.0.1:7002" },
//!   { id = "c", address = "127.0.0.1:7003" },
//! ]
//!
//! [transport]
//! type = "tcp"              # psk from PROTOBASE_TRANSPORT__PSK
//! ```
//!
//! Missing values take the documented defaults ([`StorageConfig`],
//! [`ClusterConfig`], each section's docs). Environment variables override
//! keys ([`env`](mod@env)); a space directory's reference `space.config` (INI,
//! [`ini`]) fills the `[cluster]` keys the file does not set. Unknown keys
//! and bad values are [`ConfigError`]s naming the file and the key.

pub mod backend;
mod build;
#[cfg(feature = "cloud")]
pub mod cloud;
pub mod env;
pub mod error;
pub mod ini;
pub mod page_cache;
pub mod transport;
pub mod vote;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use backend::{BackendConfig, FsBackend, MemoryBackend};
#[cfg(feature = "cloud")]
pub use cloud::{CloudBackend, DurabilityConfig, StoreUrl};
pub use error::{ConfigError, Source};
pub use page_cache::{MemoryPageCacheConfig, PageCacheConfig};
pub use transport::{
    InProcessTransport, QuicTransport, TcpTlsTransport, TcpTransport, TransportConfig,
};
pub use vote::{MajorityVoteConfig, SingleNodeVoteConfig, VoteConfig};

use crate::builder::StorageConfig;
use crate::cluster::ClusterConfig;

/// What component builders see of the rest of the configuration.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct BuildContext<'a> {
    /// Where the configuration came from.
    pub source: &'a Source,
    /// The storage settings.
    pub storage: &'a StorageConfig,
    /// The cluster settings, for a cluster node.
    pub cluster: Option<&'a ClusterConfig>,
}

/// A whole node: storage settings and one config per component.
///
/// Usually read from a file ([`load`](Self::load)); in code, start from
/// [`NodeConfig::new`] and the `with_*` setters (`#[non_exhaustive]`: new
/// sections never break callers).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Storage settings (buffer, page and blob sizes, node id...).
    #[serde(default)]
    pub storage: StorageConfig,
    /// Where the space lives.
    pub backend: Box<dyn BackendConfig>,
    /// Cluster membership; present for the cluster variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// How a cluster node reaches its peers (default `tcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Box<dyn TransportConfig>>,
    /// Who may update the root (default: `majority` in a cluster,
    /// `single_node` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote: Option<Box<dyn VoteConfig>>,
    /// The page cache (default `memory`, `storage.page_cache_size` bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_cache: Option<Box<dyn PageCacheConfig>>,
    /// The operator's HTTP endpoint of `protobase node` (`/metrics`,
    /// `/health`, `/ready`, `/status`); none without this section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConfig>,
    /// Where this description was read from (not part of the file).
    #[serde(skip, default = "unnamed")]
    pub source: Source,
}

/// `[http]`: where `protobase node` serves its operator endpoint.
///
/// ```toml
/// [http]
/// address = "127.0.0.1:9100"   # port 0 picks a free one (logged)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpConfig {
    /// `host:port` to listen on.
    pub address: String,
}

impl HttpConfig {
    /// An endpoint on `address` (`host:port`).
    pub fn new(address: impl Into<String>) -> Self {
        HttpConfig {
            address: address.into(),
        }
    }
}

fn unnamed() -> Source {
    Source("<string>".into())
}

/// The syntax of a node description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// TOML.
    Toml,
    /// JSON.
    Json,
}

impl NodeConfig {
    /// A node on `backend` with default settings and no other section.
    pub fn new(backend: Box<dyn BackendConfig>) -> Self {
        NodeConfig {
            storage: StorageConfig::default(),
            backend,
            cluster: None,
            transport: None,
            vote: None,
            page_cache: None,
            http: None,
            source: unnamed(),
        }
    }

    /// Storage settings.
    pub fn with_storage(mut self, storage: StorageConfig) -> Self {
        self.storage = storage;
        self
    }

    /// Cluster membership (a cluster variant).
    pub fn with_cluster(mut self, cluster: ClusterConfig) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The transport of a cluster node.
    pub fn with_transport(mut self, transport: Box<dyn TransportConfig>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The vote strategy.
    pub fn with_vote(mut self, vote: Box<dyn VoteConfig>) -> Self {
        self.vote = Some(vote);
        self
    }

    /// The page cache.
    pub fn with_page_cache(mut self, page_cache: Box<dyn PageCacheConfig>) -> Self {
        self.page_cache = Some(page_cache);
        self
    }

    /// The operator's HTTP endpoint of `protobase node`.
    pub fn with_http(mut self, http: HttpConfig) -> Self {
        self.http = Some(http);
        self
    }

    /// Reads `path` (`.toml` or `.json`), applies `PROTOBASE_*__*`
    /// environment overrides and the space directory's `space.config`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// [`load`](Self::load) with the environment given explicitly.
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let file = Source::from(path);
        let syntax = match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("toml") => Syntax::Toml,
            Some(e) if e.eq_ignore_ascii_case("json") => Syntax::Json,
            _ => return Err(ConfigError::UnknownFormat { file }),
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        Self::parse(&text, syntax, file, base, env)
    }

    /// Parses a description given as text; relative paths are relative to
    /// `base`; `source` names it in errors.
    pub fn parse(
        text: &str,
        syntax: Syntax,
        source: Source,
        base: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree: serde_json::Value = match syntax {
            Syntax::Toml => toml::from_str(text).map_err(|e| ConfigError::Syntax {
                file: source.clone(),
                message: e.to_string(),
            })?,
            Syntax::Json => serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
                file: source.clone(),
                message: e.to_string(),
            })?,
        };
        let applied = env::apply(&mut tree, env)?;
        if !applied.is_empty() {
            tracing::info!(file = %source, variables = ?applied, "configuration overridden from the environment");
        }
        let file_cluster = tree.get("cluster").cloned();
        let mut config: NodeConfig = from_tree(tree, &source)?;
        config.source = source.clone();
        config.backend.resolve_paths(base);
        if let Some(t) = &mut config.transport {
            t.resolve_paths(base);
        }
        if let Some(p) = &mut config.page_cache {
            p.resolve_paths(base);
        }
        config.read_space_config(file_cluster)?;
        Ok(config)
    }

    /// Fills `[cluster]` from the space directory's `space.config`, the
    /// file's own keys (`file_cluster`) taking precedence.
    fn read_space_config(
        &mut self,
        file_cluster: Option<serde_json::Value>,
    ) -> Result<(), ConfigError> {
        let Some(dir) = self.backend.space_dir() else {
            return Ok(());
        };
        let path = dir.join(ini::SPACE_CONFIG);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(ConfigError::Read {
                    file: Source::from(path.as_path()),
                    source,
                });
            }
        };
        let Some(mut merged) = ini::cluster_value(&text, &Source::from(path.as_path()))? else {
            return Ok(());
        };
        if let Some(over) = file_cluster {
            ini::merge(&mut merged, over);
        }
        let wrapped = serde_json::json!({ "cluster": merged });
        #[derive(Deserialize)]
        struct Only {
            cluster: ClusterConfig,
        }
        let only: Only = from_tree(wrapped, &self.source)?;
        self.cluster = Some(only.cluster);
        Ok(())
    }

    /// The node's id: `cluster.server_id`, else `storage.node_id`.
    pub fn node_id(&self) -> &str {
        self.cluster
            .as_ref()
            .map_or(&self.storage.node_id, |c| &c.server_id)
    }

    /// The `cloud` backend, when the node uses one.
    #[cfg(feature = "cloud")]
    pub fn cloud_backend(&self) -> Option<&CloudBackend> {
        self.backend.as_cloud()
    }

    /// Which of the four variants this describes.
    pub fn variant(&self) -> &'static str {
        match (self.backend.is_object_store(), self.cluster.is_some()) {
            (false, false) => "standalone",
            (false, true) => "cluster",
            (true, false) => "cloud",
            (true, true) => "cloud-cluster",
        }
    }
}

/// Serialises a secret as `"<redacted>"` (and `None` as `None`): a
/// configuration written back never carries its keys.
pub(crate) fn redact_secret<S: serde::Serializer>(
    secret: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_some("<redacted>"),
        None => s.serialize_none(),
    }
}

/// Deserializes `T` from a value tree, naming the failing key.
fn from_tree<T: serde::de::DeserializeOwned>(
    tree: serde_json::Value,
    source: &Source,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(env::Tree(&tree)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // A bad override names its variable, not the file.
        if let Some((var, rest)) = env::override_error(&message) {
            return ConfigError::from_serde(
                &Source(format!("environment variable {var}")),
                &path,
                rest.to_string(),
            );
        }
        ConfigError::from_serde(source, &path, message)
    })
}
