//! [`StorageBuilder`]: composes a [`Storage`] from settings and components.
//!
//! Settings ([`StorageConfig`]) are plain serde data; components (provider,
//! page cache, vote strategy, network manager) are `Arc<dyn Trait>`s. The
//! variants are compositions: standalone = a provider + single-node vote;
//! later variants swap the provider or add a network and a majority vote,
//! through the same `build`.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::block_provider::BlockProvider;
use crate::cluster::catch_up::spawn_catch_up;
use crate::cluster::{
    Acceptor, CacheAwareHandler, ClusterBlockProvider, ClusterConfig, ClusterHandler,
    FileTermStore, MajorityVote, MemoryTermStore, TermStore, Transport,
};
use crate::error::{Error, Result};
use crate::network::NetworkManager;
use crate::page_cache::{MemoryPageCache, PageCache};
use crate::storage::Storage;
use crate::vote::{SingleNodeVote, VoteStrategy};

/// Settings of a storage. Defaults follow the reference implementation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Bytes buffered in memory before a WAL write (default 1 MiB).
    pub buffer_size: usize,
    /// Page size of reads through the page cache (default 1 MiB).
    pub page_size: u64,
    /// Largest record payload accepted (default 2 GiB, at most
    /// [`MAX_BLOB_MAX_SIZE`](crate::record::MAX_BLOB_MAX_SIZE) = 1 TiB).
    pub blob_max_size: u64,
    /// A WAL rolls over to a new one past this size (default 1 GiB).
    pub max_wal_size: u64,
    /// Byte budget of the default in-memory page cache (default 256 MiB).
    pub page_cache_size: u64,
    /// This node's id, written into published roots (default `"local"`).
    pub node_id: String,
    /// Open without writing anything (default false).
    pub read_only: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            buffer_size: 1 << 20,
            page_size: 1 << 20,
            blob_max_size: 2 << 30,
            max_wal_size: 1 << 30,
            page_cache_size: 256 << 20,
            node_id: "local".into(),
            read_only: false,
        }
    }
}

impl StorageConfig {
    fn validate(&self) -> Result<()> {
        if self.buffer_size == 0 {
            return Err(Error::invalid("buffer_size", "must be at least 1 byte"));
        }
        if self.page_size < 64 {
            return Err(Error::invalid("page_size", "must be at least 64 bytes"));
        }
        if self.blob_max_size == 0 {
            return Err(Error::invalid("blob_max_size", "must be at least 1 byte"));
        }
        if self.blob_max_size > crate::record::MAX_BLOB_MAX_SIZE {
            return Err(Error::invalid(
                "blob_max_size",
                format!(
                    "must be at most {} bytes (1 TiB)",
                    crate::record::MAX_BLOB_MAX_SIZE
                ),
            ));
        }
        if self.max_wal_size <= crate::record::WAL_HEADER_LEN {
            return Err(Error::invalid(
                "max_wal_size",
                format!(
                    "must exceed the {}-byte WAL header",
                    crate::record::WAL_HEADER_LEN
                ),
            ));
        }
        Ok(())
    }
}

/// A function wrapping the vote strategy a builder ends up with; see
/// [`StorageBuilder::with_vote_wrapper`].
pub type VoteWrapper = Arc<dyn Fn(Arc<dyn VoteStrategy>) -> Arc<dyn VoteStrategy> + Send + Sync>;

#[derive(Clone, Default)]
struct WrapVote(Option<VoteWrapper>);

impl WrapVote {
    fn apply(&self, vote: Arc<dyn VoteStrategy>) -> Arc<dyn VoteStrategy> {
        match &self.0 {
            Some(wrap) => wrap(vote),
            None => vote,
        }
    }
}

impl std::fmt::Debug for WrapVote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.0.is_some() {
            "Some(<fn>)"
        } else {
            "None"
        };
        f.write_str(shown)
    }
}

/// Builds a [`Storage`].
///
/// ```
/// # tokio_test_block_on(async {
/// use protobase::StorageBuilder;
///
/// let storage = StorageBuilder::in_memory().buffer_size(64 << 10).build().await?;
/// let ptr = storage.push_bytes(b"hello").await?;
/// assert_eq!(&storage.get_bytes(ptr).await?[..], b"hello");
/// storage.close().await?;
/// # Ok::<_, protobase::Error>(()) });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Runtime::new().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Default, Clone)]
pub struct StorageBuilder {
    config: StorageConfig,
    path: Option<PathBuf>,
    provider: Option<Arc<dyn BlockProvider>>,
    page_cache: Option<Arc<dyn PageCache>>,
    vote: Option<Arc<dyn VoteStrategy>>,
    network: Option<Arc<dyn NetworkManager>>,
    cluster: Option<ClusterConfig>,
    term_store: Option<Arc<dyn TermStore>>,
    vote_wrapper: WrapVote,
    /// A cloud provider's staging directory: where a cloud node keeps its
    /// promised-term file and (in a cluster) its cloud page cache.
    node_dir: Option<PathBuf>,
    cloud_page_cache_dir: Option<PathBuf>,
    cloud_page_cache_size: Option<u64>,
}

impl StorageBuilder {
    /// A builder with default settings and no provider yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Standalone file storage in the space directory `dir` (feature `fs`).
    #[cfg(feature = "fs")]
    pub fn standalone(dir: impl Into<PathBuf>) -> Self {
        StorageBuilder {
            path: Some(dir.into()),
            ..Self::default()
        }
    }

    /// Cloud file storage on `provider` (feature `cloud`); with
    /// [`cluster`](Self::cluster), cloud-cluster file storage. The
    /// provider's staging directory also holds the node's promised-term file
    /// (`cluster_term`) and, in a cluster, its
    /// [`CloudPageCache`](crate::backends::cloud::CloudPageCache) (default
    /// `cloud_page_cache/server_<server_id>` there; see
    /// [`cloud_page_cache_dir`](Self::cloud_page_cache_dir)), which also
    /// answers peers' page requests.
    #[cfg(feature = "cloud")]
    pub fn cloud(provider: Arc<crate::backends::cloud::CloudBlockProvider>) -> Self {
        let dir = provider.staging_dir().to_path_buf();
        let mut b = Self::new().with_block_provider(provider);
        b.node_dir = Some(dir);
        b
    }

    /// Directory of the cloud page cache of a cloud-cluster node, used as
    /// given (default: `cloud_page_cache/server_<server_id>` in the
    /// provider's staging directory).
    pub fn cloud_page_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cloud_page_cache_dir = Some(dir.into());
        self
    }

    /// Disk budget of the cloud page cache (default 500 MiB; its memory tier
    /// is [`page_cache_size`](Self::page_cache_size)).
    pub fn cloud_page_cache_size(mut self, bytes: u64) -> Self {
        self.cloud_page_cache_size = Some(bytes);
        self
    }

    /// Standalone storage on a fresh [`MemoryBlockProvider`](crate::backends::memory::MemoryBlockProvider).
    pub fn in_memory() -> Self {
        Self::new()
            .with_block_provider(Arc::new(crate::backends::memory::MemoryBlockProvider::new()))
    }

    /// Replaces all settings.
    pub fn with_config(mut self, config: StorageConfig) -> Self {
        self.config = config;
        self
    }

    /// Uses `provider` for WALs and the root.
    pub fn with_block_provider(mut self, provider: Arc<dyn BlockProvider>) -> Self {
        self.provider = Some(provider);
        self.path = None;
        self.node_dir = None;
        self
    }

    /// Uses `cache` instead of the default in-memory page cache.
    pub fn with_page_cache(mut self, cache: Arc<dyn PageCache>) -> Self {
        self.page_cache = Some(cache);
        self
    }

    /// Uses `vote` instead of [`SingleNodeVote`].
    pub fn with_vote_strategy(mut self, vote: Arc<dyn VoteStrategy>) -> Self {
        self.vote = Some(vote);
        self
    }

    /// Wraps the vote strategy the storage will use — the one given to
    /// [`with_vote_strategy`](Self::with_vote_strategy), or the default
    /// ([`SingleNodeVote`], or in a cluster the [`MajorityVote`] built on the
    /// node's own acceptor and network) — in `wrap`'s result.
    ///
    /// Unlike `with_vote_strategy`, this keeps the cluster's majority vote
    /// wired to the same acceptor as the node's message handler and provider,
    /// so a decorator (metrics, tracing, a test recording every grant) sees
    /// the real grants. The wrapper must forward every call.
    pub fn with_vote_wrapper(
        mut self,
        wrap: impl Fn(Arc<dyn VoteStrategy>) -> Arc<dyn VoteStrategy> + Send + Sync + 'static,
    ) -> Self {
        self.vote_wrapper = WrapVote(Some(Arc::new(wrap)));
        self
    }

    /// Attaches a network manager (cluster variants).
    pub fn with_network_manager(mut self, network: Arc<dyn NetworkManager>) -> Self {
        self.network = Some(network);
        self
    }

    /// Makes this node a member of a cluster (the cluster variants): root
    /// updates need a majority grant and a majority of acknowledgements,
    /// and reads of WALs this node lacks go to its peers. The transport is
    /// the one given to [`with_network_manager`](Self::with_network_manager)
    /// (any [`NetworkManager`], e.g. the in-process one), or else the
    /// config's [`transport`](ClusterConfig::transport) (see
    /// [`transport`](Self::transport)) on `host:port`: TCP with the config's
    /// pre-shared key (feature `tcp`) or QUIC with its TLS files (feature
    /// `quic`).
    pub fn cluster(mut self, config: ClusterConfig) -> Self {
        self.config.node_id = config.server_id.clone();
        self.cluster = Some(config);
        self
    }

    /// Chooses the transport of the cluster's network manager (overrides
    /// [`ClusterConfig::transport`]; call after [`cluster`](Self::cluster)).
    /// Without effect when a manager is given with
    /// [`with_network_manager`](Self::with_network_manager).
    pub fn transport(mut self, transport: Transport) -> Self {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.transport = transport;
        }
        self
    }

    /// Where the cluster voter keeps its promised-term ceiling (default: the
    /// file `cluster_term` in the space directory, or memory for other
    /// providers).
    pub fn with_term_store(mut self, store: Arc<dyn TermStore>) -> Self {
        self.term_store = Some(store);
        self
    }

    /// In-memory buffer size before a WAL write.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.config.buffer_size = bytes;
        self
    }

    /// Page size of cached reads.
    pub fn page_size(mut self, bytes: u64) -> Self {
        self.config.page_size = bytes;
        self
    }

    /// Largest record payload accepted.
    pub fn blob_max_size(mut self, bytes: u64) -> Self {
        self.config.blob_max_size = bytes;
        self
    }

    /// WAL size at which a new WAL is started.
    pub fn max_wal_size(mut self, bytes: u64) -> Self {
        self.config.max_wal_size = bytes;
        self
    }

    /// Byte budget of the default page cache (0 disables caching).
    pub fn page_cache_size(mut self, bytes: u64) -> Self {
        self.config.page_cache_size = bytes;
        self
    }

    /// Node id written into published roots.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.config.node_id = id.into();
        self
    }

    /// Opens without creating or writing anything.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.config.read_only = read_only;
        self
    }

    /// Validates the settings, opens the provider and reads the current root.
    pub async fn build(self) -> Result<Storage> {
        self.config.validate()?;
        let space_dir = self.path.clone();
        let provider: Arc<dyn BlockProvider> = match (self.provider, self.path) {
            (Some(p), _) => p,
            #[cfg(feature = "fs")]
            (None, Some(dir)) => {
                use crate::backends::fs::FileBlockProvider;
                let read_only = self.config.read_only;
                let p = tokio::task::spawn_blocking(move || {
                    if read_only {
                        FileBlockProvider::open_read_only(dir)
                    } else {
                        FileBlockProvider::open(dir)
                    }
                })
                .await
                .map_err(|e| Error::io("opening the space", std::io::Error::other(e)))??;
                Arc::new(p)
            }
            _ => {
                return Err(Error::invalid(
                    "builder",
                    "no block provider: call standalone(dir), in_memory() or with_block_provider()",
                ));
            }
        };
        let cache: Arc<dyn PageCache> = match (self.page_cache, &self.cluster, &self.node_dir) {
            (Some(c), _, _) => c,
            #[cfg(feature = "cloud")]
            (None, Some(cluster), Some(base)) => {
                use crate::backends::cloud::{CloudPageCache, DEFAULT_CACHE_SIZE};
                let dir = match self.cloud_page_cache_dir.clone() {
                    Some(d) => d,
                    None => CloudPageCache::default_dir(base, &cluster.server_id)?,
                };
                Arc::new(
                    CloudPageCache::open(
                        dir,
                        self.cloud_page_cache_size.unwrap_or(DEFAULT_CACHE_SIZE),
                        self.config.page_cache_size,
                        self.config.page_size,
                    )
                    .await?,
                )
            }
            _ => Arc::new(MemoryPageCache::new(
                self.config.page_cache_size,
                self.config.page_size,
            )),
        };
        let Some(cluster) = self.cluster else {
            let vote = self
                .vote
                .unwrap_or_else(|| Arc::new(SingleNodeVote::new(self.config.node_id.clone())));
            let vote = self.vote_wrapper.apply(vote);
            return Storage::assemble(self.config, provider, cache, vote, self.network).await;
        };
        let network: Arc<dyn NetworkManager> = match self.network {
            Some(n) => n,
            None => cluster.network_manager()?,
        };
        let store: Arc<dyn TermStore> = match (self.term_store, space_dir.or(self.node_dir)) {
            (Some(s), _) => s,
            (None, Some(dir)) => Arc::new(FileTermStore::new(dir.join("cluster_term"))),
            (None, None) => Arc::new(MemoryTermStore::default()),
        };
        let acceptor = Acceptor::open(cluster.server_id.clone(), provider.clone(), store).await?;
        // Peers' page requests: from this node's page cache when it holds
        // the bytes, else from its own provider.
        let handler = ClusterHandler::new(acceptor.clone(), provider.clone());
        network
            .start(Arc::new(CacheAwareHandler::new(
                cache.clone(),
                self.config.page_size,
                Arc::new(handler),
            )))
            .await?;
        spawn_catch_up(
            acceptor.clone(),
            Arc::downgrade(&network),
            cluster.peers().map(|p| p.id.clone()).collect(),
            std::time::Duration::from_millis(cluster.heartbeat_ms),
            cluster.read_timeout(),
        );
        let vote = self.vote.unwrap_or_else(|| {
            Arc::new(MajorityVote::new(
                cluster.clone(),
                acceptor.clone(),
                network.clone(),
            ))
        });
        let vote = self.vote_wrapper.apply(vote);
        let provider = Arc::new(ClusterBlockProvider::new(
            provider,
            acceptor,
            network.clone(),
            cluster,
        ));
        Storage::assemble(self.config, provider, cache, vote, Some(network)).await
    }
}
