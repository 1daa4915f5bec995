//! [`CloudBlockProvider`] (feature `cloud`): WALs and roots in an object store.
//!
//! Layout under a key prefix (DESIGN.md §5):
//!
//! ```text
//! <prefix>/wal/<wal-uuid>/<slot>   WAL bytes [slot * object_size, ...), one object per slot
//! <prefix>/root/<20-digit index>   the chain of roots, created with PutMode::Create
//! <prefix>/space_root              readable copy of the newest root (reference JSON shape)
//! <prefix>/space.config            optional configuration
//! ```
//!
//! # Slots, sealing and gaps
//!
//! A WAL is cut into fixed-size slots (`object_size`, default 5 MiB); slot
//! `n` holds offsets `[n * object_size, (n + 1) * object_size)`. Appends go to
//! a local staging file per WAL (sparse, at the WAL's own offsets) and are
//! made durable there with `fdatasync`. A slot is *sealed* when it is full or
//! when a durability barrier (`sync`) ends inside it; a slot sealed early is
//! uploaded as a shorter object. WALs are created with a
//! [`barrier_alignment`](crate::wal_store::NewWal::barrier_alignment) of one
//! slot, so the engine ends such a slot with a skip record and continues at
//! the next slot boundary. The bytes between the end of a short object and
//! the next slot boundary are a *gap* that no record and no pointer covers:
//! reads return zeros there, exactly as the sparse staging file does, so a
//! WAL reads the same from staging and from the store.
//!
//! A background task uploads sealed slots, starting them oldest first and
//! running up to `upload_concurrency` (default 4) PUTs at once, every
//! `upload_interval_ms` or at once when a `Durability::Cloud` commit waits,
//! retrying every failure (5xx, a request past `request_timeout`) with
//! exponential backoff and jitter; it never drops a slot. A WAL's staging file is deleted once the WAL is closed and all its
//! slots are in the store. Staging files left by a crash are found when the
//! provider is built: the slots the store lacks are uploaded again (whole
//! slots; the store copy becomes the staging copy), so `Durability::Local`
//! loses nothing that was synced, and a file whose slots are all in the
//! store is deleted at once (one LIST per left-over WAL). Layouts listed
//! while a WAL is still staged here are not remembered (a read through one
//! after the staging file is retired would be cut short: that lost a
//! committed root when this was first tried).
//!
//! # Reads
//!
//! A read goes: own staging file (WALs this provider writes and has not
//! retired) → cache directory ([`SlotCache`], default
//! `<staging_dir>/cloud_cache`, 500 MiB; see [`cache_dir`]) → object store.
//! With the cache enabled, a miss GETs the *whole* slot object and caches
//! it, so later reads of any range of that slot need no GET, also after a
//! restart on the same cache directory. Without a cache (or for an object
//! larger than the whole budget) a read is one ranged GET per slot touched.
//! The memory and page caches above the provider are the `Storage`'s.
//!
//! # Roots
//!
//! A chain of numbered root objects created with put-if-absent, so the
//! compare-and-swap works on every store; `space_root` is a readable copy
//! (the protocol is described in `roots.rs`).

#[cfg(feature = "aws-sdk")]
mod aws_sdk;
mod builder;
pub mod cache_dir;
mod checkpoints;
#[cfg(any(feature = "gcs", feature = "azure"))]
mod gcs_azure;
pub mod page_cache;
mod prune;
mod roots;
#[cfg(feature = "s3")]
mod s3;
pub mod staging;
mod timeout;
mod uploader;
pub mod url;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;

pub(crate) use super::file_io::blocking;
use super::file_io::read_full_at;
use crate::block_provider::{
    NewWal, RootLock, RootRegister, RootVersion, VersionedRoot, WalInfo, WalStore,
};
use crate::clock::SeededRng;
use crate::error::{Error, Result};
use crate::types::{RootRecord, WalId};
use crate::wal_store::ReadTier;

#[cfg(feature = "aws-sdk")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-sdk")))]
pub use aws_sdk::{AwsSdkStore, aws_sdk_store};
pub use builder::CloudBlockProviderBuilder;
pub use cache_dir::{DEFAULT_CACHE_SIZE, SlotCache};
#[cfg(feature = "azure")]
#[cfg_attr(docsrs, doc(cfg(feature = "azure")))]
pub use gcs_azure::azure_store;
#[cfg(feature = "gcs")]
#[cfg_attr(docsrs, doc(cfg(feature = "gcs")))]
pub use gcs_azure::gcs_store;
pub use page_cache::CloudPageCache;
#[cfg(feature = "s3")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
pub use s3::{create_bucket_if_missing, s3_store};
use staging::StagingFile;
pub use staging::{DirStaging, StagingArea};
pub use timeout::DEFAULT_REQUEST_TIMEOUT;
pub use uploader::{UploadBacklog, UploadHealth};
pub use url::{StoreUrl, shared_memory_store};

/// File that marks a cloud provider's staging directory; the provider holds
/// an OS lock on it while open, so a second provider on the same directory
/// is refused.
pub const STAGING_LOCK: &str = "staging.lock";

/// Whether `dir` is (or was) a cloud provider's staging directory.
pub fn is_staging_dir(dir: &std::path::Path) -> bool {
    dir.join(STAGING_LOCK).exists()
}

/// Default slot (object) size: 5 MiB.
pub const DEFAULT_OBJECT_SIZE: u64 = 5 << 20;
/// Default interval of the background uploader: 5 000 ms.
pub const DEFAULT_UPLOAD_INTERVAL_MS: u64 = 5_000;
/// Default number of slots uploaded at once: 4.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;
const MIN_OBJECT_SIZE: u64 = 64;

/// What a commit (`sync`) waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The local staging fsync; uploads follow in the background.
    #[default]
    Local,
    /// Every slot up to the barrier is in the object store.
    Cloud,
}

/// A WAL with a local staging file.
#[derive(Debug)]
pub(crate) struct StagedWal {
    file: Arc<dyn StagingFile>,
    /// Logical end: highest byte appended + 1.
    len: u64,
    /// Every slot below this index is sealed.
    next_seal: u64,
    /// Sealed slots not uploaded yet: slot -> object length.
    pending: BTreeMap<u64, u64>,
    /// `close_wal` was called (or the WAL was recovered): no more appends.
    closed: bool,
    /// The staging file vanished before these slots were uploaded: they stay
    /// pending (never reported as uploaded) but are not retried.
    lost: std::collections::BTreeSet<u64>,
    /// Slots whose last upload failed: slot -> (failure generation, error).
    failed: BTreeMap<u64, (u64, Arc<Error>)>,
}

impl StagedWal {
    fn new(file: Arc<dyn StagingFile>) -> Self {
        StagedWal {
            file,
            len: 0,
            next_seal: 0,
            pending: BTreeMap::new(),
            closed: false,
            lost: Default::default(),
            failed: BTreeMap::new(),
        }
    }

    /// Seals every slot that is full below `durable` (bytes the staging
    /// file has synced).
    fn seal_full(&mut self, durable: u64, os: u64) {
        while (self.next_seal + 1).saturating_mul(os) <= durable.min(self.len) {
            self.pending.insert(self.next_seal, os);
            self.next_seal += 1;
        }
    }

    /// Seals the full slots below `durable` and the slot holding byte
    /// `upto - 1` (early, if it is not full). Only after a staging sync
    /// that covered them: a sealed slot is uploaded from the staging file
    /// and never written again, so sealing bytes a failed sync may have
    /// dropped would upload (and later acknowledge roots over) zeros.
    fn seal_upto(&mut self, durable: u64, upto: u64, os: u64) {
        self.seal_full(durable, os);
        let start = self.next_seal * os;
        if upto > start {
            let end = self.len.min(start + os);
            if end > start {
                self.pending.insert(self.next_seal, end - start);
            }
            self.next_seal += 1;
        }
    }

    /// Every slot below this index is in the store.
    fn uploaded_upto(&self) -> u64 {
        self.pending
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_seal)
    }
}

/// What the remote side of a WAL looks like: slot -> object size.
type RemoteLayout = BTreeMap<u64, u64>;

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn ObjectStore>,
    prefix: String,
    pub(crate) staging: Arc<dyn StagingArea>,
    pub(crate) object_size: u64,
    durability: Durability,
    pub(crate) interval: Duration,
    /// How long commits (`Durability::Cloud`) and `close` wait for uploads.
    upload_deadline: Duration,
    /// Slots uploaded at once.
    pub(crate) upload_concurrency: usize,
    /// By id, so uploads start in a stable order.
    pub(crate) staged: Mutex<BTreeMap<WalId, StagedWal>>,
    /// WAL ids and retry jitter.
    pub(crate) rng: SeededRng,
    /// Layouts of WALs read from the store (objects are immutable, so a
    /// layout only grows; refreshed when a read goes past it).
    pub(crate) remote: Mutex<HashMap<WalId, RemoteLayout>>,
    /// The newest root this provider saw (`Some(None)`: none yet; `None`:
    /// unknown). A root on the chain, so the newest is found by walking
    /// forward from it: one GET of its (absent) successor when it is still
    /// the newest.
    known_root: Mutex<Option<Option<roots::Link>>>,
    /// The newest position of the root-floor chain this process saw and
    /// its floor (`None`: not read yet; see `prune`).
    known_floor: Mutex<Option<prune::FloorView>>,
    /// The newest committed root, waiting to be copied to `space_root` by
    /// the uploader.
    pub(crate) root_copy: Mutex<Option<Bytes>>,
    pub(crate) wake: tokio::sync::Notify,
    /// Bumped after every successful upload.
    pub(crate) progress: crate::signal::Signal,
    pub(crate) stopping: AtomicBool,
    /// Downloaded slot objects (`None`: disabled).
    cache: Option<Arc<SlotCache>>,
    /// Retries of uploads and of the root copy.
    pub(crate) retry: crate::retry::RetryPolicy,
    /// Bumped at every upload failure (of a slot or the root copy), so a
    /// waiter tells failures after it started from older ones.
    pub(crate) failure_gen: AtomicU64,
    /// The last failed copy of the root to `space_root`, until one succeeds.
    pub(crate) root_copy_failure: Mutex<Option<(u64, Arc<Error>)>>,
    pub(crate) metrics: UploadMetrics,
}

/// Metric handles of the uploader.
#[derive(Debug)]
pub(crate) struct UploadMetrics {
    pub(crate) uploads: ::metrics::Counter,
    pub(crate) upload_bytes: ::metrics::Counter,
    backlog_slots: ::metrics::Gauge,
    backlog_bytes: ::metrics::Gauge,
    failing: ::metrics::Gauge,
}

impl UploadMetrics {
    pub(crate) fn new() -> Self {
        use crate::metrics as m;
        UploadMetrics {
            uploads: ::metrics::counter!(m::UPLOADS),
            upload_bytes: ::metrics::counter!(m::UPLOAD_BYTES),
            backlog_slots: ::metrics::gauge!(m::UPLOAD_BACKLOG_SLOTS),
            backlog_bytes: ::metrics::gauge!(m::UPLOAD_BACKLOG_BYTES),
            failing: ::metrics::gauge!(m::UPLOADER_FAILING),
        }
    }
}

impl Inner {
    pub(crate) fn key(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    pub(crate) fn slot_key(&self, wal: WalId, slot: u64) -> Path {
        self.key(&format!("wal/{wal}/{slot}"))
    }

    /// Every object under `prefix` (a LIST: one request per 1,000 keys).
    pub(crate) async fn list_all(&self, prefix: &Path) -> Result<Vec<object_store::ObjectMeta>> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| backend("listing", prefix, e))
    }

    /// The highest number naming an object under `prefix` (`root/<i>`,
    /// `root_floor/<n>`, ...), by one LIST.
    pub(crate) async fn highest_numbered(&self, prefix: &Path) -> Result<Option<u64>> {
        Ok(self
            .list_all(prefix)
            .await?
            .iter()
            .filter_map(|m| m.location.filename()?.parse::<u64>().ok())
            .max())
    }

    /// Lists `wal/<wal>/` (or all of `wal/`) into layouts.
    async fn list_remote(&self, wal: Option<WalId>) -> Result<HashMap<WalId, RemoteLayout>> {
        let prefix = match wal {
            Some(w) => self.key(&format!("wal/{w}")),
            None => self.key("wal"),
        };
        // WALs staged here when the listing starts may still be uploading:
        // their layout is not remembered (a read past a remembered layout
        // would be cut short once the staging file is retired).
        let staged: std::collections::HashSet<WalId> = self.staged.lock().keys().copied().collect();
        let metas = self.list_all(&prefix).await?;
        let mut out: HashMap<WalId, RemoteLayout> = HashMap::new();
        let strip = format!("{prefix}/");
        for m in metas {
            let loc = m.location.as_ref();
            let Some(rest) = loc.strip_prefix(&strip) else {
                continue;
            };
            let (id, slot) = match wal {
                Some(w) => (Some(w), rest),
                None => match rest.split_once('/') {
                    Some((id, slot)) => (id.parse::<WalId>().ok(), slot),
                    None => (None, ""),
                },
            };
            let (Some(id), Ok(slot)) = (id, slot.parse::<u64>()) else {
                continue;
            };
            out.entry(id).or_default().insert(slot, m.size);
        }
        let mut cache = self.remote.lock();
        for (id, layout) in &out {
            if !staged.contains(id) {
                cache.insert(*id, layout.clone());
            }
        }
        Ok(out)
    }

    /// Whether a remembered `layout` can serve `offset..offset + len`
    /// as it is: it reaches that far and has every slot in between (a slot
    /// missing below the end may be one another writer has not uploaded
    /// yet, not a gap: a read that needs it lists again).
    fn covers(&self, layout: &RemoteLayout, offset: u64, len: u64) -> bool {
        let end = offset.saturating_add(len);
        if len == 0 || end > self.layout_len(layout) {
            return len == 0 && offset < self.layout_len(layout);
        }
        let os = self.object_size.max(1);
        (offset / os..=(end - 1) / os).all(|slot| layout.contains_key(&slot))
    }

    fn layout_len(&self, layout: &RemoteLayout) -> u64 {
        layout
            .iter()
            .next_back()
            .map_or(0, |(slot, size)| slot * self.object_size + size)
    }

    /// Reads from the store: one ranged GET per slot touched.
    async fn read_remote(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes> {
        let cached = self.remote.lock().get(&wal).cloned();
        let layout = match cached {
            // A read that would be cut at the remembered end, or needs a
            // slot it lacks, lists again: another writer may have added
            // slots since (a page read from a WAL's start, a record running
            // into the next slot, a slot uploaded after a later one).
            Some(l) if self.covers(&l, offset, len) => l,
            _ => self
                .list_remote(Some(wal))
                .await?
                .remove(&wal)
                .ok_or(Error::WalNotFound { wal })?,
        };
        let total = self.layout_len(&layout);
        if offset >= total {
            return Err(Error::OffsetOutOfRange {
                wal,
                offset,
                len: total,
            });
        }
        let got = self
            .assemble(&layout, offset, len, |slot, size, range| async move {
                self.read_slot(wal, slot, size, range).await.map(Some)
            })
            .await?;
        Ok(got.unwrap_or_default())
    }

    /// Bytes `offset..offset + len` (clamped to the WAL's end) of a WAL laid
    /// out as `layout`, each slot's part from `fetch(slot, object size,
    /// range in the object)`; the gap after a short object reads as zeros.
    /// `None` as soon as a fetch returns `None`.
    async fn assemble<F, Fut>(
        &self,
        layout: &RemoteLayout,
        offset: u64,
        len: u64,
        mut fetch: F,
    ) -> Result<Option<Bytes>>
    where
        F: FnMut(u64, u64, std::ops::Range<u64>) -> Fut,
        Fut: std::future::Future<Output = Result<Option<Bytes>>>,
    {
        let end = self.layout_len(layout).min(offset.saturating_add(len));
        let os = self.object_size;
        let mut out = BytesMut::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            let slot = pos / os;
            let slot_start = slot * os;
            let upto = end.min(slot_start + os);
            let (a, b) = (pos - slot_start, upto - slot_start);
            let size = layout.get(&slot).copied().unwrap_or(0);
            if a < size {
                match fetch(slot, size, a..b.min(size)).await? {
                    Some(got) => out.extend_from_slice(&got),
                    None => return Ok(None),
                }
            }
            // Past the object's end: a gap left by an early seal (zeros).
            out.resize((upto - offset) as usize, 0);
            pos = upto;
        }
        Ok(Some(out.freeze()))
    }

    /// Reads from the cache directory only, with the layout already known:
    /// `None` when any slot touched is not cached (or the WAL's layout was
    /// never listed). No store request.
    async fn read_cached(&self, wal: WalId, offset: u64, len: u64) -> Result<Option<Bytes>> {
        let (Some(cache), Some(layout)) =
            (self.cache.clone(), self.remote.lock().get(&wal).cloned())
        else {
            return Ok(None);
        };
        // Past the remembered end (or over a slot it lacks) the WAL may
        // have grown: list it again (one LIST; the slots may still be in
        // this cache).
        let layout = if !self.covers(&layout, offset, len) {
            match self.list_remote(Some(wal)).await?.remove(&wal) {
                Some(l) => l,
                None => return Ok(None),
            }
        } else {
            layout
        };
        if offset >= self.layout_len(&layout) {
            return Ok(None);
        }
        self.assemble(&layout, offset, len, |slot, size, range| {
            let (c, k) = (cache.clone(), self.slot_key(wal, slot).to_string());
            async move { blocking(move || Ok(c.get(&k, size, range))).await }
        })
        .await
    }

    /// Bytes `range` of the slot object `slot` (of `size` bytes): from the
    /// cache directory, else from the store. With a cache that can hold the
    /// object, the whole object is fetched and cached; otherwise one ranged
    /// GET.
    async fn read_slot(
        &self,
        wal: WalId,
        slot: u64,
        size: u64,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes> {
        let key = self.slot_key(wal, slot);
        let short = |got: usize, want: u64| {
            Error::backend(
                "object_store",
                format!("short read of {key}: {got} bytes instead of {want}"),
            )
        };
        let Some(cache) = self.cache.as_ref().filter(|c| c.fits(size)) else {
            let want = range.end - range.start;
            let got = self
                .store
                .get_range(&key, range)
                .await
                .map_err(|e| backend("reading", &key, e))?;
            if got.len() as u64 != want {
                return Err(short(got.len(), want));
            }
            return Ok(got);
        };
        let name = key.to_string();
        let (c, k, r) = (cache.clone(), name.clone(), range.clone());
        if let Some(b) = blocking(move || Ok(c.get(&k, size, r))).await? {
            return Ok(b);
        }
        let whole = self
            .store
            .get(&key)
            .await
            .map_err(|e| backend("reading", &key, e))?
            .bytes()
            .await
            .map_err(|e| backend("reading", &key, e))?;
        if whole.len() as u64 != size {
            return Err(short(whole.len(), size));
        }
        let (c, w) = (cache.clone(), whole.clone());
        blocking(move || {
            c.insert(&name, &w);
            Ok(())
        })
        .await?;
        Ok(whole.slice(range.start as usize..range.end as usize))
    }

    /// GETs a whole object (`None`: absent).
    pub(crate) async fn get_optional(&self, key: &Path) -> Result<Option<Bytes>> {
        match self.store.get(key).await {
            Ok(r) => Ok(Some(
                r.bytes().await.map_err(|e| backend("reading", key, e))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend("reading", key, e)),
        }
    }

    /// Reads from this provider's own staging file of `wal` (`None`: not a
    /// WAL staged here).
    async fn read_staged(&self, wal: WalId, offset: u64, len: u64) -> Result<Option<Bytes>> {
        let Some((file, total)) = self
            .staged
            .lock()
            .get(&wal)
            .map(|w| (w.file.clone(), w.len))
        else {
            return Ok(None);
        };
        if offset >= total {
            return Err(Error::OffsetOutOfRange {
                wal,
                offset,
                len: total,
            });
        }
        let n = (total.min(offset.saturating_add(len)) - offset) as usize;
        file.read_at(offset, n).await.map(Some)
    }

    /// The error of uploads that missed the deadline.
    fn uploads_late(&self, what: &str, deadline: Duration) -> Error {
        let b = self.backlog();
        Error::backend(
            "object_store",
            format!(
                "{what} not uploaded within {deadline:?} ({} slots, {} bytes waiting); \
                 they stay staged and are uploaded later",
                b.slots, b.bytes
            ),
        )
    }

    /// Records a failed upload of `slot` (it stays pending).
    pub(crate) fn slot_failed(&self, wal: WalId, slot: u64, e: Error) {
        tracing::warn!(%wal, slot, error = %e, kind = %e.kind(), "slot upload failed; tried again next round");
        ::metrics::counter!(crate::metrics::UPLOAD_FAILURES, "kind" => e.kind().as_str())
            .increment(1);
        let generation = self.failure_gen.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(w) = self.staged.lock().get_mut(&wal) {
            w.failed.insert(slot, (generation, Arc::new(e)));
        }
        self.publish_gauges();
        self.progress.bump();
    }

    /// Some slot (or the root copy) is failing.
    pub(crate) fn failing(&self) -> bool {
        self.root_copy_failure.lock().is_some()
            || self.staged.lock().values().any(|w| !w.failed.is_empty())
    }

    /// Sets the backlog and failing gauges.
    pub(crate) fn publish_gauges(&self) {
        let b = self.backlog();
        self.metrics.backlog_slots.set(b.slots as f64);
        self.metrics.backlog_bytes.set(b.bytes as f64);
        self.metrics
            .failing
            .set(if self.failing() { 1.0 } else { 0.0 });
    }

    /// The error of a failure newer than generation `since` of a slot of
    /// `wal` below `need` (any WAL and the root copy when `wal` is `None`).
    fn failure_since(&self, wal: Option<WalId>, need: u64, since: u64) -> Option<Error> {
        let found = {
            let st = self.staged.lock();
            let mut found: Option<(WalId, u64, Arc<Error>)> = None;
            for (id, w) in st.iter().filter(|(id, _)| wal.is_none_or(|x| x == **id)) {
                if let Some((slot, (_, e))) = w.failed.range(..need).find(|(_, (g, _))| *g > since)
                {
                    found = Some((*id, *slot, e.clone()));
                    break;
                }
            }
            found
        };
        if let Some((id, slot, e)) = found {
            return Some(Error::backend_with(
                "object_store",
                format!("slot {slot} of WAL {id} could not be uploaded: {e}"),
                e.kind(),
                e,
            ));
        }
        if wal.is_none()
            && let Some((g, e)) = self.root_copy_failure.lock().clone()
            && g > since
        {
            return Some(Error::backend_with(
                "object_store",
                format!("the root could not be copied to space_root: {e}"),
                e.kind(),
                e,
            ));
        }
        None
    }

    /// The uploader's state.
    pub(crate) fn health(&self) -> UploadHealth {
        let backlog = self.backlog();
        let st = self.staged.lock();
        let failed_slots = st.values().map(|w| w.failed.len() as u64).sum();
        let newest = st
            .values()
            .flat_map(|w| w.failed.values())
            .chain(self.root_copy_failure.lock().as_ref())
            .max_by_key(|(g, _)| *g)
            .map(|(_, e)| e.to_string());
        UploadHealth {
            backlog,
            failed_slots,
            last_error: newest,
        }
    }

    /// Bytes and slots waiting for upload.
    pub(crate) fn backlog(&self) -> UploadBacklog {
        let st = self.staged.lock();
        let mut b = UploadBacklog::default();
        for w in st.values() {
            b.slots += w.pending.len() as u64;
            b.bytes += w.pending.values().sum::<u64>();
        }
        b
    }
}

/// Maps an object store error to [`Error::Backend`] naming the key, with
/// its [kind](store_error_kind) and the store's error as the source.
pub(crate) fn backend(what: &str, key: &Path, e: object_store::Error) -> Error {
    let kind = store_error_kind(&e);
    Error::backend_with("object_store", format!("{what} {key}: {e}"), kind, e)
}

/// What kind of failure an `object_store` error is:
///
/// | `object_store::Error` | [`ErrorKind`](crate::ErrorKind) |
/// |---|---|
/// | `NotFound` | `NotFound` |
/// | `AlreadyExists`, `Precondition`, `NotModified` | `Conflict` (a precondition failed) |
/// | `PermissionDenied`, `Unauthenticated` (HTTP 403, 401) | `Permission` |
/// | `InvalidPath`, `NotSupported`, `NotImplemented`, `UnknownConfigurationKey` | `Invalid` |
/// | `Generic` with an HTTP 4xx status (but 408, 429) | `Invalid` |
/// | anything else (5xx after the client's retries, timeouts, connection errors) | `Unavailable` (transient) |
pub fn store_error_kind(e: &object_store::Error) -> crate::ErrorKind {
    use crate::ErrorKind as K;
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => K::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } | E::NotModified { .. } => K::Conflict,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => K::Permission,
        E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::UnknownConfigurationKey { .. } => K::Invalid,
        E::Generic { source, .. } => match http_status(source.as_ref()) {
            Some(401 | 403) => K::Permission,
            Some(404) => K::NotFound,
            Some(408 | 429) => K::Unavailable,
            Some(s) if (400..500).contains(&s) => K::Invalid,
            _ => K::Unavailable,
        },
        _ => K::Unavailable,
    }
}

/// The HTTP status named in an error chain (object_store's client errors
/// read "... status code: 403 Forbidden ..."), if any.
fn http_status(e: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if let Some(i) = text.find("status code: ") {
            let digits: String = text[i + 13..].chars().take(3).collect();
            if let Ok(code) = digits.parse::<u16>() {
                return Some(code);
            }
        }
        cur = err.source();
    }
    None
}

/// Reads `n` bytes at `offset`; bytes past the file's end read as zeros
/// (sparse staging files).
pub(crate) fn pread(file: &File, offset: u64, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    read_full_at(file, &mut buf, offset)?;
    Ok(buf)
}

/// WALs in fixed-size objects of an [`ObjectStore`], staged locally; see the
/// [module docs](self).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use object_store::memory::InMemory;
/// use protobase::StorageBuilder;
/// use protobase::backends::cloud::{CloudBlockProviderBuilder, Durability};
///
/// let staging = std::env::temp_dir().join(format!("pb-doc-{}", std::process::id()));
/// let provider = CloudBlockProviderBuilder::new(Arc::new(InMemory::new()), &staging)
///     .prefix("space1")
///     .durability(Durability::Cloud)
///     .build()
///     .await?;
/// let storage = StorageBuilder::new()
///     .with_block_provider(Arc::new(provider))
///     .build()
///     .await?;
/// let ptr = storage.push_bytes(b"hello").await?;
/// storage.set_root(ptr).await?;
/// assert_eq!(&storage.get_bytes(ptr).await?[..], b"hello");
/// storage.close().await?;
/// # let _ = std::fs::remove_dir_all(&staging);
/// # Ok::<_, protobase::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct CloudBlockProvider {
    inner: Arc<Inner>,
    /// The locked `staging.lock`, released on close or drop (not held by
    /// the uploader, which may outlive a dropped provider for a while).
    staging_lock: Mutex<Option<staging::StagingLock>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
}

impl CloudBlockProvider {
    /// A builder over `store` staging in `staging_dir`.
    pub fn builder(
        store: Arc<dyn ObjectStore>,
        staging_dir: impl Into<PathBuf>,
    ) -> CloudBlockProviderBuilder {
        CloudBlockProviderBuilder::new(store, staging_dir)
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// Slot size in bytes.
    pub fn object_size(&self) -> u64 {
        self.inner.object_size
    }

    /// The cache directory of downloaded slot objects (`None`: disabled).
    pub fn cache(&self) -> Option<&SlotCache> {
        self.inner.cache.as_deref()
    }

    /// The local staging directory (`None` when the staging area is not a
    /// directory, e.g. a simulated disk).
    pub fn staging_dir(&self) -> Option<&std::path::Path> {
        self.inner.staging.dir()
    }

    /// Sealed slots not yet in the store.
    pub fn upload_backlog(&self) -> UploadBacklog {
        self.inner.backlog()
    }

    /// The uploader's backlog and failures (for readiness checks: a provider
    /// whose uploads fail is not healthy).
    pub fn upload_health(&self) -> UploadHealth {
        self.inner.health()
    }

    /// Waits until every sealed slot (and the readable root copy) is in the
    /// store, for at most the upload deadline.
    ///
    /// Fails at once with the error of an upload that failed (permanently,
    /// or past the retry budget) after this call started.
    pub async fn flush_uploads(&self) -> Result<()> {
        let deadline = self.inner.upload_deadline;
        let since = self.inner.failure_gen.load(Ordering::Acquire);
        let inner = &self.inner;
        let wait = inner.progress.wait_for(|| {
            if inner.backlog().slots == 0 && inner.root_copy.lock().is_none() {
                return Some(Ok(()));
            }
            if let Some(e) = inner.failure_since(None, u64::MAX, since) {
                return Some(Err(e));
            }
            inner.wake.notify_one();
            None
        });
        tokio::time::timeout(deadline, wait)
            .await
            .unwrap_or_else(|_| Err(self.inner.uploads_late("all uploads", deadline)))
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn staged_file(&self, wal: WalId) -> Option<(Arc<dyn StagingFile>, u64)> {
        self.inner
            .staged
            .lock()
            .get(&wal)
            .map(|w| (w.file.clone(), w.len))
    }

    /// Waits (up to the upload deadline) until every slot below the one
    /// holding `upto - 1` is uploaded.
    async fn wait_uploaded(&self, wal: WalId, upto: u64) -> Result<()> {
        if upto == 0 {
            return Ok(());
        }
        let need = (upto - 1) / self.inner.object_size + 1;
        let deadline = self.inner.upload_deadline;
        let since = self.inner.failure_gen.load(Ordering::Acquire);
        let inner = &self.inner;
        let wait = inner.progress.wait_for(|| {
            let done = inner
                .staged
                .lock()
                .get(&wal)
                .is_none_or(|w| w.uploaded_upto() >= need);
            if done {
                return Some(Ok(()));
            }
            // An upload this commit needs failed for good (or past the
            // retry budget) since it started waiting: fail with it.
            if let Some(e) = inner.failure_since(Some(wal), need, since) {
                return Some(Err(e));
            }
            inner.wake.notify_one();
            None
        });
        tokio::time::timeout(deadline, wait)
            .await
            .unwrap_or_else(|_| {
                Err(self
                    .inner
                    .uploads_late(&format!("the slots of WAL {wal} below {upto}"), deadline))
            })
    }
}

/// The tiers of a cloud provider that read no object: own staging files
/// and the cache directory (a LIST at most, when a read goes past the
/// WAL's remembered layout).
#[derive(Debug)]
struct LocalTier(Arc<Inner>);

#[async_trait]
impl ReadTier for LocalTier {
    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Option<Bytes>> {
        if let Some(b) = self.0.read_staged(wal, offset, len).await? {
            return Ok(Some(b));
        }
        self.0.read_cached(wal, offset, len).await
    }
}

/// The object store itself (one ranged GET per slot, or the whole slot into
/// the cache directory).
#[derive(Debug)]
struct StoreTier(Arc<Inner>);

#[async_trait]
impl ReadTier for StoreTier {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Option<Bytes>> {
        match self.0.read_remote(wal, offset, len).await {
            Ok(b) => Ok(Some(b)),
            Err(Error::WalNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl CloudBlockProvider {
    /// The read tier of what this node holds itself: its staging files and
    /// cache directory (no GET; a LIST when a read goes past the WAL's
    /// remembered layout). A cloud-cluster node asks its
    /// peers between this tier and [`store_tier`](Self::store_tier).
    pub fn local_tier(&self) -> Arc<dyn ReadTier> {
        Arc::new(LocalTier(self.inner.clone()))
    }

    /// The read tier of the object store.
    pub fn store_tier(&self) -> Arc<dyn ReadTier> {
        Arc::new(StoreTier(self.inner.clone()))
    }
}

impl Drop for CloudBlockProvider {
    /// A provider dropped without `close` stops uploading at once (what a
    /// crashed process does): its staging files stay for the next provider
    /// on the staging area, which may start as soon as this one is gone.
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().take() {
            t.abort();
        }
    }
}

#[async_trait]
impl WalStore for CloudBlockProvider {
    async fn create_wal(&self) -> Result<NewWal> {
        self.check_open()?;
        let rng = &self.inner.rng;
        let id = WalId(
            uuid::Builder::from_random_bytes(
                ((u128::from(rng.u64()) << 64) | u128::from(rng.u64())).to_le_bytes(),
            )
            .into_uuid(),
        );
        let file = self.inner.staging.create(id).await?;
        self.inner.staged.lock().insert(id, StagedWal::new(file));
        Ok(NewWal {
            id,
            barrier_alignment: self.inner.object_size,
        })
    }

    async fn append(&self, wal: WalId, offset: u64, mut data: Bytes) -> Result<()> {
        self.check_open()?;
        let os = self.inner.object_size;
        let mut offset = offset;
        let file = {
            let st = self.inner.staged.lock();
            let w = st.get(&wal).ok_or(Error::WalNotFound { wal })?;
            if w.closed {
                return Err(Error::invalid("append", format!("WAL {wal} is closed")));
            }
            // A rewrite after a failed sync may reach back into sealed
            // slots: those were sealed after a successful staging fsync, so
            // their bytes are durable already and are not written again.
            let sealed_end = w.next_seal.saturating_mul(os);
            if offset < sealed_end {
                let end = offset.saturating_add(data.len() as u64);
                if end.min(sealed_end) > w.len {
                    // New bytes in a slot sealed early: they could never
                    // be uploaded.
                    return Err(Error::invalid(
                        "append",
                        format!("offset {offset} of WAL {wal} is in a sealed slot"),
                    ));
                }
                let skip = (sealed_end - offset).min(data.len() as u64) as usize;
                data = data.slice(skip..);
                offset += skip as u64;
                if data.is_empty() {
                    return Ok(());
                }
            }
            w.file.clone()
        };
        let end = offset + data.len() as u64;
        file.write_at(offset, data).await?;
        let mut st = self.inner.staged.lock();
        if let Some(w) = st.get_mut(&wal) {
            // Not sealed here: only a successful sync seals (see `seal_upto`).
            w.len = w.len.max(end);
        }
        Ok(())
    }

    async fn sync(&self, wal: WalId, upto: u64) -> Result<()> {
        self.check_open()?;
        let Some((file, covered)) = self.staged_file(wal) else {
            // Closed and fully uploaded (retired): nothing left to make durable.
            return Ok(());
        };
        // `covered`: what was written before the sync started.
        file.sync().await?;
        if let Some(w) = self.inner.staged.lock().get_mut(&wal) {
            w.seal_upto(covered, upto.min(covered), self.inner.object_size);
        }
        if self.inner.durability == Durability::Cloud {
            self.wait_uploaded(wal, upto).await?;
        }
        Ok(())
    }

    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes> {
        self.check_open()?;
        if let Some(b) = self.inner.read_staged(wal, offset, len).await? {
            return Ok(b);
        }
        self.inner.read_remote(wal, offset, len).await
    }

    async fn list_wals(&self) -> Result<Vec<WalInfo>> {
        self.check_open()?;
        let remote = self.inner.list_remote(None).await?;
        let mut lens: HashMap<WalId, u64> = remote
            .iter()
            .map(|(id, l)| (*id, self.inner.layout_len(l)))
            .collect();
        for (id, w) in self.inner.staged.lock().iter() {
            let e = lens.entry(*id).or_insert(0);
            *e = (*e).max(w.len);
        }
        let mut v: Vec<WalInfo> = lens
            .into_iter()
            .map(|(id, len)| WalInfo { id, len })
            .collect();
        v.sort_by_key(|w| w.id);
        Ok(v)
    }

    async fn close_wal(&self, wal: WalId) -> Result<()> {
        let os = self.inner.object_size;
        let Some((file, covered)) = self.staged_file(wal) else {
            return Ok(());
        };
        // Closing seals the tail: only bytes a sync made durable.
        file.sync().await?;
        let retire = match self.inner.staged.lock().get_mut(&wal) {
            Some(w) => {
                w.closed = true;
                w.seal_upto(covered, covered, os);
                // Every sealed slot is already in the store (the uploader
                // finished them before the close): no upload will retire
                // this WAL, so closing does.
                // (Bytes appended after the sync began are not sealed: they
                // keep the WAL.)
                w.pending.is_empty() && w.len > 0 && w.next_seal.saturating_mul(os) >= w.len
            }
            None => false,
        };
        if retire {
            if let Err(e) = self.inner.staging.remove(wal).await {
                tracing::warn!("{e}");
            }
            // Reads that still find the entry use its open (unlinked) file.
            self.inner.staged.lock().remove(&wal);
            self.inner.remote.lock().remove(&wal);
            self.inner.progress.bump();
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    async fn read_config(&self) -> Result<Option<Bytes>> {
        self.check_open()?;
        self.inner
            .get_optional(&self.inner.key("space.config"))
            .await
    }

    /// Refused while this provider writes the WAL or still uploads it;
    /// otherwise deletes its slot objects (newest slot first, so a crash in
    /// the middle leaves a shorter WAL, which the next call removes) and
    /// their copies in the cache directory. A WAL another process is
    /// writing is not visible here: [`Storage::reclaim`](crate::Storage::reclaim)
    /// keeps WALs younger than its `min_age` for that reason.
    async fn delete_wal(&self, wal: WalId) -> Result<()> {
        self.check_open()?;
        if let Some(w) = self.inner.staged.lock().get(&wal) {
            return Err(Error::WalInUse {
                wal,
                why: if w.closed {
                    "its slots are still being uploaded".into()
                } else {
                    "this provider writes it".into()
                },
            });
        }
        let layout = self.inner.list_remote(Some(wal)).await?;
        let Some(slots) = layout.get(&wal).filter(|l| !l.is_empty()) else {
            return Err(Error::WalNotFound { wal });
        };
        for slot in slots.keys().rev() {
            let key = self.inner.slot_key(wal, *slot);
            match self.inner.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend("deleting", &key, e)),
            }
            if let Some(c) = self.inner.cache.clone() {
                let name = key.to_string();
                blocking(move || {
                    c.remove(&name);
                    Ok(())
                })
                .await?;
            }
        }
        self.inner.remote.lock().remove(&wal);
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<crate::checkpoint::Checkpoint>> {
        self.check_open()?;
        self.inner.list_checkpoints().await
    }

    async fn put_checkpoint(&self, checkpoint: &crate::checkpoint::Checkpoint) -> Result<()> {
        self.check_open()?;
        self.inner.put_checkpoint(checkpoint).await
    }

    async fn remove_checkpoint(&self, name: &str) -> Result<()> {
        self.check_open()?;
        self.inner.remove_checkpoint(name).await
    }

    /// The newest `last_modified` of the WAL's slot objects.
    async fn wal_modified(&self, wal: WalId) -> Result<Option<std::time::SystemTime>> {
        self.check_open()?;
        if self.inner.staged.lock().contains_key(&wal) {
            return Ok(Some(std::time::SystemTime::now()));
        }
        let prefix = self.inner.key(&format!("wal/{wal}"));
        let metas: Vec<object_store::ObjectMeta> = self
            .inner
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| backend("listing", &prefix, e))?;
        if metas.is_empty() {
            return Err(Error::WalNotFound { wal });
        }
        Ok(metas
            .iter()
            .map(|m| std::time::SystemTime::from(m.last_modified))
            .max())
    }

    async fn close(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let ids: Vec<WalId> = self.inner.staged.lock().keys().copied().collect();
        for id in ids {
            self.close_wal(id).await?;
        }
        let flushed = self.flush_uploads().await;
        self.closed.store(true, Ordering::Release);
        self.inner.stopping.store(true, Ordering::Release);
        self.inner.wake.notify_one();
        let task = self.task.lock().take();
        if let Some(t) = task {
            if flushed.is_ok() {
                let _ = t.await;
            } else {
                // Uploads that missed the deadline stay staged for the next
                // provider on this directory.
                t.abort();
            }
        }
        if let Some(c) = self.inner.cache.clone() {
            blocking(move || c.close()).await?;
        }
        // Releases the staging area for the next provider.
        drop(self.staging_lock.lock().take());
        flushed
    }
}

/// A chain link as the register's versioned root (the version is the
/// link's position).
fn versioned((index, root): roots::Link) -> VersionedRoot {
    VersionedRoot {
        root,
        version: RootVersion::from_u64(index),
    }
}

#[async_trait]
impl RootRegister for CloudBlockProvider {
    async fn read_root(&self) -> Result<Option<VersionedRoot>> {
        self.check_open()?;
        Ok(self.inner.newest_link().await?.map(versioned))
    }

    /// The chain's end as a walk finds it, without the floor check: a
    /// writer's create after a pruned stretch finds the floor itself (see
    /// `write_root`), so a commit pays one floor GET instead of two.
    async fn read_root_to_update(&self) -> Result<Option<VersionedRoot>> {
        self.check_open()?;
        Ok(self.inner.newest_link_to_update().await?.map(versioned))
    }

    async fn write_root(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
    ) -> Result<RootVersion> {
        self.check_open()?;
        let index = self
            .inner
            .write_root(root, expected.map(|v| v.parts().1))
            .await?;
        Ok(RootVersion::from_u64(index))
    }

    async fn lock_root(&self) -> Result<RootLock> {
        self.check_open()?;
        Ok(RootLock::none())
    }

    /// Deletes the chain's links `retention` does not keep, after raising
    /// the chain's floor (see the `prune` notes in the crate's sources:
    /// writers and readers check the floor, so nothing stale reads or
    /// writes a pruned position). Fresh readers open in as many requests as
    /// before. Every provider on the store (a cloud-cluster's members) may
    /// prune; a crash in the middle leaves links below the floor that the
    /// next run removes.
    async fn prune_history(
        &self,
        retention: &crate::root_register::RootRetention,
    ) -> Result<crate::root_register::PruneReport> {
        self.check_open()?;
        self.inner.prune_chain(retention).await
    }

    /// The chain of root objects, walked back from the newest.
    async fn history(&self, limit: usize) -> Result<Vec<crate::root_register::HistoricRoot>> {
        self.check_open()?;
        self.inner.chain_history(limit).await
    }
}
