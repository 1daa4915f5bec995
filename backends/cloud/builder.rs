//! [`CloudBlockProviderBuilder`]: options and start-up of a
//! [`CloudBlockProvider`] (staging recovery, cache directory, uploader).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use object_store::ObjectStore;
use parking_lot::Mutex;

use super::cache_dir::{DEFAULT_CACHE_DIR, DEFAULT_CACHE_SIZE, SlotCache};
use super::staging::{DirStaging, StagingArea};
use super::timeout::{DEFAULT_REQUEST_TIMEOUT, TimeoutStore};
use super::{
    CloudBlockProvider, DEFAULT_OBJECT_SIZE, DEFAULT_UPLOAD_CONCURRENCY,
    DEFAULT_UPLOAD_INTERVAL_MS, Durability, Inner, MIN_OBJECT_SIZE, StagedWal, blocking, uploader,
};
use crate::clock::SeededRng;
use crate::error::{Error, Result};
use crate::types::WalId;

/// Where downloaded slot objects are cached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CacheDir {
    /// `<staging_dir>/cloud_cache`.
    Default,
    At(PathBuf),
    Disabled,
}

/// Builds a [`CloudBlockProvider`].
#[derive(Debug, Clone)]
pub struct CloudBlockProviderBuilder {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    staging: Arc<dyn StagingArea>,
    object_size: u64,
    upload_interval_ms: u64,
    durability: Durability,
    cache_dir: CacheDir,
    cache_size: u64,
    request_timeout: Duration,
    upload_deadline: Option<Duration>,
    upload_concurrency: usize,
    rng_seed: Option<u64>,
    retry: crate::retry::RetryPolicy,
}

impl CloudBlockProviderBuilder {
    /// A builder over `store`, staging WAL bytes in `staging_dir`.
    pub fn new(store: Arc<dyn ObjectStore>, staging_dir: impl Into<PathBuf>) -> Self {
        CloudBlockProviderBuilder {
            store,
            prefix: String::new(),
            staging: Arc::new(DirStaging::new(staging_dir)),
            object_size: DEFAULT_OBJECT_SIZE,
            upload_interval_ms: DEFAULT_UPLOAD_INTERVAL_MS,
            durability: Durability::Local,
            cache_dir: CacheDir::Default,
            cache_size: DEFAULT_CACHE_SIZE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            upload_deadline: None,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            rng_seed: None,
            retry: crate::retry::RetryPolicy::default(),
        }
    }

    /// Stages WAL bytes in `staging` instead of the directory given to
    /// [`new`](Self::new) (a simulated disk, say). Without a directory the
    /// default cache directory is off.
    pub fn with_staging(mut self, staging: Arc<dyn StagingArea>) -> Self {
        self.staging = staging;
        self
    }

    /// Seeds the provider's randomness (WAL ids, upload retry jitter), so a
    /// simulation replays (default: seeded from the operating system).
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Key prefix of the space in the store (default: none).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().trim_matches('/').to_string();
        self
    }

    /// Slot size in bytes (default 5 MiB, at least 64).
    pub fn object_size(mut self, bytes: u64) -> Self {
        self.object_size = bytes;
        self
    }

    /// Interval of the background uploader (default 5 000 ms).
    pub fn upload_interval_ms(mut self, ms: u64) -> Self {
        self.upload_interval_ms = ms;
        self
    }

    /// What a commit waits for (default [`Durability::Local`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Directory of the local cache of downloaded slot objects (default:
    /// `cloud_cache` inside the staging directory, which the staging
    /// recovery ignores). A cache directory belongs to one store (entries
    /// are keyed by object key) and to one provider at a time: a provider
    /// that finds it locked by another runs without a cache (logged;
    /// [`CloudBlockProvider::cache`] is `None`). Other errors opening it
    /// fail [`build`](Self::build).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = CacheDir::At(dir.into());
        self
    }

    /// Byte budget of the cache directory (default 500 MiB); least recently
    /// used objects are evicted to stay within it. `0` disables the cache.
    pub fn cache_size(mut self, bytes: u64) -> Self {
        self.cache_size = bytes;
        self
    }

    /// No cache directory: every read of an uploaded slot is a ranged GET.
    pub fn no_cache(mut self) -> Self {
        self.cache_dir = CacheDir::Disabled;
        self
    }

    /// How long a `Durability::Cloud` commit and `close` wait for the
    /// uploads they need (default: twice the request timeout, 60 s). Past it
    /// they fail with an `Unavailable` error; the bytes stay staged and are
    /// uploaded later (or by the next provider on the staging directory).
    pub fn upload_deadline(mut self, deadline: Duration) -> Self {
        self.upload_deadline = Some(deadline);
        self
    }

    /// Deadline of one object-store request, body included (default 30 s).
    /// A request past it fails as retryable: uploads are retried, a read
    /// returns [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How many slots the uploader PUTs at once (default 4). Uploads start
    /// in order (oldest sealed slot first); a commit in
    /// [`Durability::Cloud`] waits for all slots it reaches, whatever order
    /// they finish in.
    pub fn upload_concurrency(mut self, n: usize) -> Self {
        self.upload_concurrency = n;
        self
    }

    /// How uploads (and the copy of the root to `space_root`) are retried
    /// (default [`RetryPolicy::default`](crate::retry::RetryPolicy::default)):
    /// only transient failures, within its budget. A slot whose upload
    /// fails for good stays staged and is tried again at the next round;
    /// a `Durability::Cloud` commit that needs it fails with its error.
    pub fn retry_policy(mut self, policy: crate::retry::RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Creates the staging directory, queues the uploads of staging files a
    /// previous process left behind and starts the uploader (needs a tokio
    /// runtime).
    pub async fn build(self) -> Result<CloudBlockProvider> {
        if self.object_size < MIN_OBJECT_SIZE {
            return Err(Error::invalid(
                "object_size",
                format!("must be at least {MIN_OBJECT_SIZE} bytes"),
            ));
        }
        if self.upload_concurrency == 0 {
            return Err(Error::invalid("upload_concurrency", "must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::invalid("request_timeout", "must be positive"));
        }
        if self.upload_interval_ms == 0 {
            return Err(Error::invalid("upload_interval_ms", "must be at least 1"));
        }
        let os = self.object_size;
        let (staging_lock, left) = self.staging.open().await?;
        let cache_path = match (&self.cache_dir, self.cache_size, self.staging.dir()) {
            (CacheDir::Disabled, _, _) | (_, 0, _) | (CacheDir::Default, _, None) => None,
            (CacheDir::Default, _, Some(dir)) => Some(dir.join(DEFAULT_CACHE_DIR)),
            (CacheDir::At(p), _, _) => Some(p.clone()),
        };
        let budget = self.cache_size;
        let cache = match cache_path {
            Some(p) => {
                let dir = p.clone();
                let c = blocking(move || SlotCache::open(p, budget)).await?;
                if c.is_none() {
                    tracing::warn!(
                        "cache directory {} is in use by another provider: running without it",
                        dir.display()
                    );
                }
                c.map(Arc::new)
            }
            None => None,
        };
        let inner = Arc::new(Inner {
            store: Arc::new(TimeoutStore::new(self.store, self.request_timeout)),
            prefix: self.prefix,
            staging: self.staging,
            object_size: self.object_size,
            durability: self.durability,
            interval: Duration::from_millis(self.upload_interval_ms),
            upload_deadline: self
                .upload_deadline
                .unwrap_or(self.request_timeout.saturating_mul(2)),
            upload_concurrency: self.upload_concurrency,
            staged: Mutex::new(BTreeMap::new()),
            rng: match self.rng_seed {
                Some(seed) => SeededRng::new(seed),
                None => SeededRng::from_entropy(),
            },
            remote: Mutex::new(HashMap::new()),
            known_root: Mutex::new(None),
            known_floor: Mutex::new(None),
            root_copy: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            progress: Default::default(),
            stopping: AtomicBool::new(false),
            cache,
            retry: self.retry,
            failure_gen: std::sync::atomic::AtomicU64::new(0),
            root_copy_failure: Mutex::new(None),
            metrics: super::UploadMetrics::new(),
        });
        let recovered = recover_staging(&inner, left, os).await;
        *inner.staged.lock() = recovered;
        let task = tokio::spawn(uploader::run(Arc::downgrade(&inner)));
        Ok(CloudBlockProvider {
            inner,
            staging_lock: Mutex::new(Some(staging_lock)),
            task: Mutex::new(Some(task)),
            closed: AtomicBool::new(false),
        })
    }
}

/// Queues the upload of what the staging files a previous provider left
/// hold and the store lacks.
///
/// Every slot up to a file's end is sealed (the process may have died
/// before uploading them), except the slots the store already has: an
/// object of a slot is only ever PUT from a sealed staging slot, and a
/// sealed slot never gets new bytes (writing resumes at the next slot
/// boundary), so an object present holds everything that slot will hold.
/// A WAL whose slots are all in the store is retired at once (its staging
/// file deleted). When the store cannot be listed, every slot is uploaded
/// again (uploads are idempotent).
async fn recover_staging(
    inner: &Inner,
    left: Vec<super::staging::LeftOver>,
    os: u64,
) -> BTreeMap<WalId, StagedWal> {
    let mut recovered = BTreeMap::new();
    for l in left {
        let mut w = StagedWal::new(l.file);
        w.len = l.len;
        w.closed = true;
        w.seal_upto(l.len, l.len, os);
        match inner.list_remote(Some(l.wal)).await {
            Ok(remote) => {
                if let Some(layout) = remote.get(&l.wal) {
                    w.pending.retain(|slot, _| !layout.contains_key(slot));
                }
                // A layout that lacks slots still to upload must not be
                // remembered: once the staging file is retired, a read
                // through it would be cut short.
                inner.remote.lock().remove(&l.wal);
            }
            Err(e) => tracing::warn!(
                wal = %l.wal,
                error = %e,
                "cannot list the store: every staged slot of the WAL is uploaded again"
            ),
        }
        if w.pending.is_empty() {
            tracing::debug!(wal = %l.wal, "staged WAL is in the store: retired");
            if let Err(e) = inner.staging.remove(l.wal).await {
                tracing::warn!("{e}");
            }
            continue;
        }
        recovered.insert(l.wal, w);
    }
    recovered
}
