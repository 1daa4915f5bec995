//! [`StorageBuilder`]: composes a [`Storage`] from settings and components.
//!
//! Settings ([`StorageConfig`]) are plain serde data; components (WAL store,
//! root register, page cache, vote strategy, network manager, clock) are
//! `Arc<dyn Trait>`s. The four variants are compositions of the one engine,
//! made in one place ([`StorageBuilder::build`]):
//!
//! | variant | WAL reads (after memory and page cache) | root register | vote strategy |
//! |---|---|---|---|
//! | standalone | the space directory | its root log (`space_root.log`, copied to `space_root`) | single node |
//! | cluster | the node's directory → its peers | a [`QuorumRegister`] of every node's acceptor | the same quorum |
//! | cloud | staging → cache directory → object store | the store's root chain | single node |
//! | cloud-cluster | staging → cache directory → peers → object store | the store's root chain | the quorum (a lock with fencing terms) |
//!
//! A standalone storage opened for writing continues a WAL an earlier
//! process left instead of starting one per process (see
//! [`crate::wal_resume`]); the other variants start a new WAL per process.
//!
//! A cluster node's network manager serves its peers with a
//! [`ClusterHandler`] (behind a [`CacheAwareHandler`]) and clients with a
//! [`ClientHandler`] in front of both (see [`crate::client`]).

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::block_provider::BlockProvider;
use crate::client::ClientHandler;
use crate::clock::{Clock, SeededRng, TokioClock};
use crate::cluster::root_copy::spawn_root_copy;
use crate::cluster::{
    Acceptor, AcceptorStore, CacheAwareHandler, ClusterConfig, ClusterHandler, FileAcceptorStore,
    HintingRegister, PeerTier, QuorumRegister, RootHint, Transport,
};
use crate::error::{Error, Result};
use crate::network::NetworkManager;
use crate::page_cache::{MemoryPageCache, PageCache};
use crate::root_register::RootRegister;
use crate::storage::Storage;
use crate::vote::{SingleNodeVote, VoteStrategy};
use crate::wal_store::{MeteredWalStore, ReadTier, StoreTier, TieredWalStore, WalStore};

/// A cloud provider's uploader as a readiness check.
#[cfg(feature = "cloud")]
struct UploaderHealth(Arc<crate::backends::cloud::CloudBlockProvider>);

#[cfg(feature = "cloud")]
impl crate::storage::HealthSource for UploaderHealth {
    fn check(&self) -> std::result::Result<(), String> {
        let h = self.0.upload_health();
        match h.last_error {
            Some(e) => Err(format!(
                "uploads failing ({} slots failed, {} waiting): {e}",
                h.failed_slots, h.backlog.slots
            )),
            None => Ok(()),
        }
    }
}

/// Settings of a storage. Defaults follow the reference implementation.
///
/// `#[non_exhaustive]`: start from [`StorageConfig::default`] and use the
/// `with_*` setters (or assign fields); [`StorageBuilder`] has the same
/// setters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
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
    /// In-memory buffer size before a WAL write.
    pub fn with_buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes;
        self
    }

    /// Page size of cached reads.
    pub fn with_page_size(mut self, bytes: u64) -> Self {
        self.page_size = bytes;
        self
    }

    /// Largest record payload accepted.
    pub fn with_blob_max_size(mut self, bytes: u64) -> Self {
        self.blob_max_size = bytes;
        self
    }

    /// WAL size at which a new WAL is started.
    pub fn with_max_wal_size(mut self, bytes: u64) -> Self {
        self.max_wal_size = bytes;
        self
    }

    /// Byte budget of the default page cache (0 disables caching).
    pub fn with_page_cache_size(mut self, bytes: u64) -> Self {
        self.page_cache_size = bytes;
        self
    }

    /// Node id written into published roots.
    pub fn with_node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// Open without writing anything.
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

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
    wals: Option<Arc<dyn WalStore>>,
    register: Option<Arc<dyn RootRegister>>,
    #[cfg(feature = "cloud")]
    cloud: Option<Arc<crate::backends::cloud::CloudBlockProvider>>,
    page_cache: Option<Arc<dyn PageCache>>,
    vote: Option<Arc<dyn VoteStrategy>>,
    network: Option<Arc<dyn NetworkManager>>,
    cluster: Option<ClusterConfig>,
    acceptor_store: Option<Arc<dyn AcceptorStore>>,
    clock: Option<Arc<dyn Clock>>,
    rng_seed: Option<u64>,
    cloud_page_cache_dir: Option<PathBuf>,
    cloud_page_cache_size: Option<u64>,
    at: Option<OpenAt>,
}

/// The root a read-only storage opens at (time travel).
#[derive(Debug, Clone, PartialEq, Eq)]
enum OpenAt {
    Checkpoint(String),
    Sequence(u64),
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
        let mut b = Self::new().with_block_provider(provider.clone());
        b.cloud = Some(provider);
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
        self.wals = Some(provider.clone().wal_store());
        self.register = Some(provider.root_register());
        self.path = None;
        #[cfg(feature = "cloud")]
        {
            self.cloud = None;
        }
        self
    }

    /// Uses `wals` for WAL bytes and `register` for the root (a backend
    /// that is not one [`BlockProvider`], or one wrapped in a decorator).
    pub fn with_parts(mut self, wals: Arc<dyn WalStore>, register: Arc<dyn RootRegister>) -> Self {
        self.wals = Some(wals);
        self.register = Some(register);
        self.path = None;
        #[cfg(feature = "cloud")]
        {
            self.cloud = None;
        }
        self
    }

    /// Uses `cache` instead of the default in-memory page cache.
    pub fn with_page_cache(mut self, cache: Arc<dyn PageCache>) -> Self {
        self.page_cache = Some(cache);
        self
    }

    /// Uses `vote` instead of [`SingleNodeVote`] (not in a cluster, whose
    /// vote is its quorum).
    pub fn with_vote_strategy(mut self, vote: Arc<dyn VoteStrategy>) -> Self {
        self.vote = Some(vote);
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

    /// Where the cluster node's acceptor keeps its state (default: the file
    /// `cluster_acceptor` in the space directory or the cloud provider's
    /// staging directory). A cluster built on another provider needs one:
    /// promises forgotten on a restart could lose acknowledged roots.
    pub fn with_acceptor_store(mut self, store: Arc<dyn AcceptorStore>) -> Self {
        self.acceptor_store = Some(store);
        self
    }

    /// The clock leases and vote deadlines are measured on (default:
    /// tokio's clock). Simulations give each node a skewed one.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Seeds the storage's randomness (vote backoff jitter), so a run can be
    /// replayed (default: seeded from the operating system).
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
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

    /// Opens the space as it was at the checkpoint `name`
    /// ([`crate::checkpoint`]): [`Storage::read_current_root`] returns the
    /// checkpoint's root. Needs [`read_only`](Self::read_only); `build`
    /// fails with [`Error::CheckpointNotFound`] when there is no such
    /// checkpoint.
    pub fn at_checkpoint(mut self, name: impl Into<String>) -> Self {
        self.at = Some(OpenAt::Checkpoint(name.into()));
        self
    }

    /// Opens the space as it was when the root of sequence `sequence` was
    /// current, found in the register's [history](crate::RootRegister::history)
    /// (the newest root of that sequence; on an object store, one request
    /// per newer root). Needs [`read_only`](Self::read_only). Atoms only a
    /// reclaimed root reached do not read.
    pub fn at_sequence(mut self, sequence: u64) -> Self {
        self.at = Some(OpenAt::Sequence(sequence));
        self
    }

    /// Validates the settings, opens the backend and composes the variant.
    pub async fn build(mut self) -> Result<Storage> {
        let Some(at) = self.at.take() else {
            return self.compose().await;
        };
        if !self.config.read_only {
            return Err(Error::invalid(
                "builder",
                "opening at a checkpoint or an older root needs read_only(true)",
            ));
        }
        let storage = self.compose().await?;
        let root = match &at {
            OpenAt::Checkpoint(name) => storage
                .checkpoints()
                .await?
                .into_iter()
                .find(|c| &c.name == name)
                .map(|c| c.root)
                .ok_or_else(|| Error::CheckpointNotFound { name: name.clone() }),
            OpenAt::Sequence(seq) => storage
                .root_register()
                .history(usize::MAX)
                .await?
                .into_iter()
                .find(|h| h.root.sequence == *seq)
                .map(|h| h.root)
                .ok_or_else(|| {
                    Error::invalid(
                        "sequence",
                        format!("no root of sequence {seq} in the space's history"),
                    )
                }),
        };
        match root {
            Ok(root) => storage.pin_root(root),
            Err(e) => {
                let _ = storage.close().await;
                Err(e)
            }
        }
    }

    async fn compose(self) -> Result<Storage> {
        self.config.validate()?;
        let clock: Arc<dyn Clock> = self.clock.clone().unwrap_or_else(|| Arc::new(TokioClock));
        let rng = match self.rng_seed {
            Some(seed) => SeededRng::new(seed),
            None => SeededRng::from_entropy(),
        };
        let space_dir = self.path.clone();
        let (wals, register) = match (self.wals.clone(), self.register.clone(), &self.path) {
            (Some(w), Some(r), _) => (w, r),
            #[cfg(feature = "fs")]
            (_, _, Some(dir)) => {
                let p = Arc::new(self.open_dir(dir.clone()).await?);
                (p.clone().wal_store(), p.root_register())
            }
            _ => {
                return Err(Error::invalid(
                    "builder",
                    "no block provider: call standalone(dir), in_memory(), cloud(provider) or with_block_provider()",
                ));
            }
        };
        let cache = self.page_cache().await?;
        let Some(cluster) = self.cluster.clone() else {
            // Fail at open, not at first use, on a root that cannot be read.
            register.read_root().await?;
            let vote = self
                .vote
                .clone()
                .unwrap_or_else(|| Arc::new(SingleNodeVote::new(self.config.node_id.clone())));
            #[cfg(feature = "cloud")]
            if let Some(cloud) = &self.cloud {
                // The provider's own read path, as tiers (counted by tier).
                let tiers: Vec<Arc<dyn ReadTier>> = vec![cloud.local_tier(), cloud.store_tier()];
                let wals = Arc::new(TieredWalStore::new(wals, tiers));
                let storage = Storage::assemble(
                    self.config,
                    Arc::new(MeteredWalStore::new(wals, false)),
                    register,
                    cache,
                    vote,
                    self.network,
                );
                return Ok(storage.with_health(Arc::new(UploaderHealth(cloud.clone()))));
            }
            let read_only = self.config.read_only;
            let storage = Storage::assemble(
                self.config,
                Arc::new(MeteredWalStore::new(wals, true)),
                register,
                cache,
                vote,
                self.network,
            );
            if !read_only {
                // No new WAL per process (standalone only: see wal_resume).
                storage.continue_wal().await?;
            }
            return Ok(storage);
        };
        if self.vote.is_some() {
            return Err(Error::invalid(
                "builder",
                "a cluster's vote strategy is its quorum: with_vote_strategy cannot replace it",
            ));
        }
        let node_dir = space_dir.or_else(|| self.cloud_staging_dir());
        let store: Arc<dyn AcceptorStore> = match (self.acceptor_store.clone(), node_dir) {
            (Some(s), _) => s,
            (None, Some(dir)) => Arc::new(FileAcceptorStore::in_dir(dir)),
            (None, None) => {
                return Err(Error::invalid(
                    "builder",
                    "a cluster node needs durable acceptor state: build it with standalone(dir) or \
                     cloud(provider), or give with_acceptor_store(...)",
                ));
            }
        };
        let network: Arc<dyn NetworkManager> = match self.network.clone() {
            Some(n) => n,
            None => cluster.network_manager()?,
        };
        let acceptor = Acceptor::open(
            cluster.server_id.clone(),
            store,
            std::time::Duration::from_millis(cluster.lease_ms),
            clock.clone(),
        )
        .await?;
        // Peers' page requests: from this node's page cache when it holds
        // the bytes, else from its own storage (never from its peers).
        // Clients (`protobase put/get/root --connect`) are served by the
        // outermost handler, from the storage built below.
        let own_acceptor = acceptor.clone();
        let inherited = acceptor.snapshot().promised;
        let handler = ClusterHandler::new(acceptor.clone(), wals.clone());
        let clients = Arc::new(ClientHandler::new(Arc::new(CacheAwareHandler::new(
            cache.clone(),
            self.config.page_size,
            Arc::new(handler),
        ))));
        network.start(clients.clone()).await?;
        let forward_nonce = rng.fork();
        let quorum = Arc::new(QuorumRegister::new(
            cluster.clone(),
            acceptor,
            network.clone(),
            clock,
            rng,
        ));
        let hint = RootHint::default();
        #[cfg(feature = "cloud")]
        if let Some(cloud) = &self.cloud {
            // The store's compare-and-swap linearizes roots; the quorum is
            // the lock (with fencing terms) that keeps writers from racing.
            let peers = Arc::new(PeerTier::new(network.clone(), cluster, hint.clone(), 0));
            let tiers: Vec<Arc<dyn ReadTier>> = vec![cloud.local_tier(), peers, cloud.store_tier()];
            let wals = Arc::new(TieredWalStore::new(wals, tiers));
            let register = Arc::new(HintingRegister::new(register, hint));
            let storage = Storage::assemble(
                self.config,
                Arc::new(MeteredWalStore::new(wals, false)),
                register,
                cache,
                Arc::new(crate::cluster::QuorumLock(quorum)),
                Some(network),
            );
            let storage = storage
                .with_health(Arc::new(UploaderHealth(cloud.clone())))
                .with_acceptor(own_acceptor);
            clients.attach(&storage);
            return Ok(storage);
        }
        let retries = cluster.max_retries;
        let heartbeat = std::time::Duration::from_millis(cluster.heartbeat_ms);
        // A forwarded root waits at most for the holder's turn at the
        // critical section (a vote) and its root write (a round).
        let forward_timeout = cluster.vote_timeout() + cluster.read_timeout();
        let nonce = forward_nonce.u64();
        let peers = Arc::new(PeerTier::new(
            network.clone(),
            cluster,
            hint.clone(),
            retries,
        ));
        let tiers: Vec<Arc<dyn ReadTier>> = vec![Arc::new(StoreTier(wals.clone())), peers];
        spawn_root_copy(Arc::downgrade(&quorum), register, hint.clone(), heartbeat);
        let wals = Arc::new(TieredWalStore::new(wals, tiers));
        let root: Arc<dyn RootRegister> = Arc::new(HintingRegister::new(quorum.clone(), hint));
        let storage = Storage::assemble(
            self.config,
            Arc::new(MeteredWalStore::new(wals, false)),
            root,
            cache,
            quorum,
            Some(network),
        )
        .with_forwarding(nonce, forward_timeout, inherited)
        .with_acceptor(own_acceptor);
        clients.attach(&storage);
        Ok(storage)
    }

    /// Opens the space directory `dir` (refusing, for writing, one that
    /// belongs to a cluster node when this is not that node, or that is a
    /// cloud provider's staging area).
    #[cfg(feature = "fs")]
    async fn open_dir(&self, dir: PathBuf) -> Result<crate::backends::fs::FileBlockProvider> {
        use crate::backends::fs::FileBlockProvider;
        let read_only = self.config.read_only;
        let cluster = self.cluster.is_some();
        crate::backends::file_io::blocking(move || {
            if read_only {
                return FileBlockProvider::open_read_only(dir);
            }
            if !cluster && FileAcceptorStore::exists_in(&dir) {
                return Err(Error::invalid(
                    "space",
                    format!(
                        "{} belongs to a cluster node (it holds cluster_acceptor): open it \
                         through that node (its config) or read-only",
                        dir.display()
                    ),
                ));
            }
            #[cfg(feature = "cloud")]
            if crate::backends::cloud::is_staging_dir(&dir) {
                return Err(Error::invalid(
                    "space",
                    format!(
                        "{} is a cloud provider's staging directory, not a space",
                        dir.display()
                    ),
                ));
            }
            FileBlockProvider::open(dir)
        })
        .await
    }

    #[cfg(feature = "cloud")]
    fn cloud_staging_dir(&self) -> Option<PathBuf> {
        self.cloud
            .as_ref()
            .and_then(|c| c.staging_dir().map(|d| d.to_path_buf()))
    }

    #[cfg(not(feature = "cloud"))]
    fn cloud_staging_dir(&self) -> Option<PathBuf> {
        None
    }

    /// The page cache given, or the default: in memory, or for a
    /// cloud-cluster node its cloud page cache (memory + disk).
    async fn page_cache(&self) -> Result<Arc<dyn PageCache>> {
        if let Some(c) = &self.page_cache {
            return Ok(c.clone());
        }
        #[cfg(feature = "cloud")]
        if let (Some(cluster), Some(base)) = (&self.cluster, self.cloud_staging_dir()) {
            use crate::backends::cloud::{CloudPageCache, DEFAULT_CACHE_SIZE};
            let dir = match self.cloud_page_cache_dir.clone() {
                Some(d) => d,
                None => CloudPageCache::default_dir(&base, &cluster.server_id)?,
            };
            return Ok(Arc::new(
                CloudPageCache::open(
                    dir,
                    self.cloud_page_cache_size.unwrap_or(DEFAULT_CACHE_SIZE),
                    self.config.page_cache_size,
                    self.config.page_size,
                )
                .await?,
            ));
        }
        Ok(Arc::new(MemoryPageCache::new(
            self.config.page_cache_size,
            self.config.page_size,
        )))
    }
}
