//! [`WalStore`]: where WAL bytes live, and [`ReadTier`]: one place they may
//! be read from.
//!
//! A WAL store only stores bytes: the WAL engine frames records and decides
//! offsets. It knows nothing about roots (that is the
//! [`RootRegister`](crate::RootRegister)) and nothing about peers or caches
//! in front of it: a builder composes read tiers (a node's own files, its
//! cache directory, its peers, the object store) with [`TieredWalStore`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::page_check::{ReadCheck, check_answer, is_short_answer};
use crate::types::WalId;

/// A WAL and its current length as the store sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalInfo {
    /// The WAL.
    pub id: WalId,
    /// Bytes stored (appended, not necessarily durable).
    pub len: u64,
}

/// A WAL just created by [`WalStore::create_wal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewWal {
    /// Its id.
    pub id: WalId,
    /// Where writing may resume after a durability barrier: at the next
    /// multiple of this many bytes (1: right after the barrier).
    ///
    /// Stores that seal a unit of storage at a barrier (fixed-size objects
    /// of an object store) cannot append to that unit again. The engine then
    /// ends the unit with a *skip record* (see [`crate::record`]) naming
    /// where the next record starts, so a reader, `copy` and `verify` see
    /// the gap in the bytes themselves.
    pub barrier_alignment: u64,
}

impl NewWal {
    /// A WAL written densely (no alignment after barriers).
    pub fn dense(id: WalId) -> Self {
        NewWal {
            id,
            barrier_alignment: 1,
        }
    }
}

/// Storage of WAL bytes.
///
/// # Contract
///
/// - WALs are append-only. The engine calls [`append`](Self::append) for a
///   WAL it created with [`create_wal`](Self::create_wal), in increasing
///   offset order, one call at a time per WAL. Offsets are contiguous, except
///   after a barrier of a WAL with a `barrier_alignment` above 1, where
///   writing resumes at the next aligned offset. After a failed
///   [`sync`](Self::sync) the engine writes again, at the same offsets,
///   everything the failed sync was to cover (the kernel may have dropped
///   those pages), then syncs again: a store must accept such a rewrite of
///   bytes that are not yet durable.
/// - After `sync(wal, upto)` returns `Ok`, every byte below `upto` survives a
///   crash of the process or machine (and a newly created WAL is durably
///   named).
/// - [`read`](Self::read) serves any WAL the store holds, own or foreign, and
///   returns up to `len` bytes (fewer only at the end of the WAL). An offset
///   at or past the end is [`Error::OffsetOutOfRange`]; an unknown WAL is
///   [`Error::WalNotFound`] — the "not found here" that lets a node ask
///   elsewhere.
///
/// # Implementing
///
/// Every method may be called concurrently from many tasks. Never panic on
/// bytes read back: return typed errors. `protobase::conformance::wal_store`
/// (feature `conformance`) checks this contract for any implementation.
#[async_trait]
pub trait WalStore: Send + Sync + fmt::Debug {
    /// Creates a new, empty, writable WAL.
    async fn create_wal(&self) -> Result<NewWal>;

    /// Stores `data` at `offset` of a WAL created by this store.
    async fn append(&self, wal: WalId, offset: u64, data: Bytes) -> Result<()>;

    /// Makes everything appended below `upto` durable.
    async fn sync(&self, wal: WalId, upto: u64) -> Result<()>;

    /// Reads up to `len` bytes of `wal` starting at `offset`.
    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes>;

    /// Reads like [`read`](Self::read), returning only bytes that pass
    /// `check` (see [`crate::page_check`]): the default reads, then checks.
    /// A store that reads from several sources ([`TieredWalStore`]) checks
    /// each source's answer and goes on to the next when it fails.
    async fn read_checked(
        &self,
        wal: WalId,
        offset: u64,
        len: u64,
        check: &dyn ReadCheck,
    ) -> Result<Bytes> {
        let bytes = self.read(wal, offset, len).await?;
        check_answer(check, wal, offset, len, bytes)
    }

    /// Every WAL the store holds, with its length.
    async fn list_wals(&self) -> Result<Vec<WalInfo>>;

    /// Releases resources of a WAL that will not be appended to again.
    async fn close_wal(&self, wal: WalId) -> Result<()>;

    /// The space's configuration data (`space.config`), if present.
    async fn read_config(&self) -> Result<Option<Bytes>>;

    /// Closes the store; later calls fail with [`Error::Closed`].
    async fn close(&self) -> Result<()>;

    /// Removes a whole WAL, for good: its bytes, and every copy the store
    /// keeps of them (cached objects, staging files). Called only by
    /// [`Storage::reclaim`](crate::Storage::reclaim), for a WAL nothing
    /// live points into.
    ///
    /// A WAL a writer holds (this process's or another's, see
    /// [`reopen_wal`](Self::reopen_wal)) is refused with
    /// [`Error::WalInUse`]; a WAL the store does not hold is
    /// [`Error::WalNotFound`]. Once it returns `Ok`, the removal is durable
    /// and no writer ever appends to the WAL again; a crash in the middle
    /// may leave part of the WAL (a later call removes the rest). The
    /// default refuses: stores that cannot remove WALs keep them.
    async fn delete_wal(&self, wal: WalId) -> Result<()> {
        let _ = wal;
        Err(Error::invalid(
            "reclaim",
            "this WAL store cannot remove WALs",
        ))
    }

    /// When `wal` was last written, as far as the store knows (`None`:
    /// unknown). [`Storage::reclaim`](crate::Storage::reclaim) keeps WALs
    /// written more recently than its `min_age`.
    async fn wal_modified(&self, wal: WalId) -> Result<Option<std::time::SystemTime>> {
        let _ = wal;
        Ok(None)
    }

    /// The checkpoints the store keeps ([`crate::checkpoint`]), sorted by
    /// name. A checkpoint that cannot be read is an error, not left out
    /// (reclamation must not miss a pinned root). Default: none.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        Ok(Vec::new())
    }

    /// Stores `checkpoint` durably, unless one of its name exists
    /// ([`Error::CheckpointExists`]; two callers racing for a name: one
    /// wins). The default refuses: the store keeps no checkpoints.
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let _ = checkpoint;
        Err(Error::invalid(
            "checkpoint",
            "this WAL store keeps no checkpoints",
        ))
    }

    /// Removes the checkpoint `name` durably; [`Error::CheckpointNotFound`]
    /// when there is none.
    async fn remove_checkpoint(&self, name: &str) -> Result<()> {
        Err(Error::CheckpointNotFound {
            name: name.to_string(),
        })
    }

    /// Whether this store can continue WALs an earlier process wrote
    /// ([`reopen_wal`](Self::reopen_wal)); default `false`. See
    /// [`crate::wal_resume`] for how the engine uses them.
    fn continues_wals(&self) -> bool {
        false
    }

    /// Takes `wal`, written by an earlier writer, over for appending:
    /// `Ok(Some(_))` when no other writer (of this process or another) holds
    /// it; from then on this caller is its only writer until
    /// [`close_wal`](Self::close_wal) (or the process ends). `Ok(None)`:
    /// another writer holds it, or the store cannot continue WALs (the
    /// default). A store that creates WALs must hold them the same way from
    /// [`create_wal`](Self::create_wal) on, so that no one continues a WAL
    /// its writer is still appending to.
    async fn reopen_wal(&self, wal: WalId) -> Result<Option<NewWal>> {
        let _ = wal;
        Ok(None)
    }
}

/// One place where bytes of a WAL may be found (a node's own files, a cache
/// directory, the node's peers, an object store).
#[async_trait]
pub trait ReadTier: Send + Sync + fmt::Debug {
    /// Reads up to `len` bytes of `wal` at `offset`: `Ok(None)` when this
    /// tier does not have them (the next tier is asked); the errors of
    /// [`WalStore::read`] otherwise.
    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Option<Bytes>>;

    /// Reads like [`read`](Self::read), returning only bytes that pass
    /// `check` (see [`crate::page_check`]). An answer that fails is
    /// [`Error::Rejected`] (counted in `protobase_pages_rejected_total`), and
    /// [`TieredWalStore`] then asks the next tier. The default reads, then
    /// checks; a tier with several sources of its own (the peers) checks each.
    async fn read_checked(
        &self,
        wal: WalId,
        offset: u64,
        len: u64,
        check: &dyn ReadCheck,
    ) -> Result<Option<Bytes>> {
        let Some(bytes) = self.read(wal, offset, len).await? else {
            return Ok(None);
        };
        match check_answer(check, wal, offset, len, bytes) {
            Ok(b) => Ok(Some(b)),
            // The tier's copy ends before the record: final, like its own
            // "offset out of range", when the tier is authoritative.
            Err(e @ Error::OffsetOutOfRange { .. }) if self.authoritative() => Err(e),
            Err(e) => {
                if is_short_answer(&e) {
                    tracing::debug!(%wal, offset, len, tier = self.name(), error = %e,
                        "bytes read end inside the record");
                } else {
                    ::metrics::counter!(crate::metrics::PAGES_REJECTED, "tier" => self.name())
                        .increment(1);
                    tracing::warn!(%wal, offset, len, tier = self.name(), error = %e,
                        "bytes read failed their check: not used");
                }
                Err(Error::Rejected {
                    from: self.name().to_string(),
                    wal,
                    offset,
                    source: Box::new(e),
                })
            }
        }
    }

    /// A short name of the tier (`local`, `peers`, `store`), the `tier`
    /// label of the `protobase_wal_bytes_read_total` metric.
    fn name(&self) -> &'static str {
        "local"
    }

    /// Whether this tier's [`Error::OffsetOutOfRange`] is final (the tier
    /// holds the WAL, and it is shorter). Peers' answers are not: a peer
    /// may hold less than another source, or lie.
    fn authoritative(&self) -> bool {
        true
    }
}

/// Every [`WalStore`] is a read tier: "not found here" moves on.
#[derive(Debug)]
pub struct StoreTier(pub Arc<dyn WalStore>);

#[async_trait]
impl ReadTier for StoreTier {
    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Option<Bytes>> {
        match self.0.read(wal, offset, len).await {
            Ok(b) => Ok(Some(b)),
            Err(Error::WalNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A [`WalStore`] whose writes go to `writes` and whose reads try `tiers`
/// in order until one has the bytes.
///
/// The builder composes the read path of every variant with it: a cluster
/// node reads its own files, then its peers; a cloud-cluster node its
/// staging area and cache directory, then its peers (the WAL's writer has
/// pages not uploaded yet, others may have them cached), then the object
/// store. A tier that fails (a peer timing out, a store answering 5xx) is
/// passed over like one that does not have the bytes, and its error is
/// returned only when no later tier has them; "offset out of range" from a
/// tier is final (the tier knows the WAL, and it is shorter), except from a
/// tier that is not [`authoritative`](ReadTier::authoritative) (the peers).
/// A [`read_checked`](WalStore::read_checked) checks each tier's answer, and
/// one that fails its check is passed over the same way (see
/// [`crate::page_check`]).
#[derive(Debug)]
pub struct TieredWalStore {
    writes: Arc<dyn WalStore>,
    tiers: Vec<Arc<dyn ReadTier>>,
    /// Bytes read, per tier (`protobase_wal_bytes_read_total`).
    read_bytes: Vec<::metrics::Counter>,
}

impl TieredWalStore {
    /// Writes to `writes`; reads from `tiers`, in order.
    pub fn new(writes: Arc<dyn WalStore>, tiers: Vec<Arc<dyn ReadTier>>) -> Self {
        let read_bytes = tiers
            .iter()
            .map(|t| ::metrics::counter!(crate::metrics::WAL_BYTES_READ, "tier" => t.name()))
            .collect();
        TieredWalStore {
            writes,
            tiers,
            read_bytes,
        }
    }
}

#[async_trait]
impl WalStore for TieredWalStore {
    async fn create_wal(&self) -> Result<NewWal> {
        self.writes.create_wal().await
    }

    async fn append(&self, wal: WalId, offset: u64, data: Bytes) -> Result<()> {
        self.writes.append(wal, offset, data).await
    }

    async fn sync(&self, wal: WalId, upto: u64) -> Result<()> {
        self.writes.sync(wal, upto).await
    }

    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes> {
        let mut failure = None;
        for (tier, counter) in self.tiers.iter().zip(&self.read_bytes) {
            match tier.read(wal, offset, len).await {
                Ok(Some(bytes)) => {
                    counter.increment(bytes.len() as u64);
                    return Ok(bytes);
                }
                Ok(None) => {}
                Err(e @ Error::OffsetOutOfRange { .. }) => return Err(e),
                Err(e) => {
                    tracing::debug!(%wal, offset, tier = ?tier, error = %e, "read tier failed");
                    failure.get_or_insert(e);
                }
            }
        }
        Err(failure.map_or(Error::WalNotFound { wal }, Error::unwrap_rejected))
    }

    async fn read_checked(
        &self,
        wal: WalId,
        offset: u64,
        len: u64,
        check: &dyn ReadCheck,
    ) -> Result<Bytes> {
        let mut failure = None;
        for (tier, counter) in self.tiers.iter().zip(&self.read_bytes) {
            match tier.read_checked(wal, offset, len, check).await {
                Ok(Some(bytes)) => {
                    counter.increment(bytes.len() as u64);
                    return Ok(bytes);
                }
                Ok(None) => {}
                Err(e @ Error::OffsetOutOfRange { .. }) if tier.authoritative() => return Err(e),
                Err(e) => {
                    tracing::debug!(%wal, offset, tier = tier.name(), error = %e,
                        "read tier failed or its answer was rejected");
                    failure.get_or_insert(e);
                }
            }
        }
        Err(failure.map_or(Error::WalNotFound { wal }, Error::unwrap_rejected))
    }

    async fn list_wals(&self) -> Result<Vec<WalInfo>> {
        self.writes.list_wals().await
    }

    async fn close_wal(&self, wal: WalId) -> Result<()> {
        self.writes.close_wal(wal).await
    }

    async fn read_config(&self) -> Result<Option<Bytes>> {
        self.writes.read_config().await
    }

    async fn close(&self) -> Result<()> {
        self.writes.close().await
    }

    fn continues_wals(&self) -> bool {
        self.writes.continues_wals()
    }

    async fn reopen_wal(&self, wal: WalId) -> Result<Option<NewWal>> {
        self.writes.reopen_wal(wal).await
    }

    async fn delete_wal(&self, wal: WalId) -> Result<()> {
        self.writes.delete_wal(wal).await
    }

    async fn wal_modified(&self, wal: WalId) -> Result<Option<std::time::SystemTime>> {
        self.writes.wal_modified(wal).await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.writes.checkpoints().await
    }

    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        self.writes.put_checkpoint(checkpoint).await
    }

    async fn remove_checkpoint(&self, name: &str) -> Result<()> {
        self.writes.remove_checkpoint(name).await
    }
}

/// A [`WalStore`] that counts what passes through it: durability barriers
/// (`protobase_wal_syncs_total`, `protobase_wal_sync_seconds`), bytes
/// appended (`protobase_wal_bytes_written_total`) and, unless the store
/// below counts them per tier, bytes read.
pub(crate) struct MeteredWalStore {
    inner: Arc<dyn WalStore>,
    syncs: ::metrics::Counter,
    sync_seconds: ::metrics::Histogram,
    written: ::metrics::Counter,
    read: Option<::metrics::Counter>,
}

impl fmt::Debug for MeteredWalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl MeteredWalStore {
    /// Wraps `inner`; `count_reads`: count its reads as tier `local`.
    pub(crate) fn new(inner: Arc<dyn WalStore>, count_reads: bool) -> Self {
        use crate::metrics as m;
        MeteredWalStore {
            inner,
            syncs: ::metrics::counter!(m::WAL_SYNCS),
            sync_seconds: ::metrics::histogram!(m::WAL_SYNC_SECONDS),
            written: ::metrics::counter!(m::WAL_BYTES_WRITTEN),
            read: count_reads.then(|| ::metrics::counter!(m::WAL_BYTES_READ, "tier" => "local")),
        }
    }
}

#[async_trait]
impl WalStore for MeteredWalStore {
    async fn create_wal(&self) -> Result<NewWal> {
        self.inner.create_wal().await
    }

    async fn append(&self, wal: WalId, offset: u64, data: Bytes) -> Result<()> {
        let n = data.len() as u64;
        self.inner.append(wal, offset, data).await?;
        self.written.increment(n);
        Ok(())
    }

    async fn sync(&self, wal: WalId, upto: u64) -> Result<()> {
        let start = std::time::Instant::now();
        let r = self.inner.sync(wal, upto).await;
        self.syncs.increment(1);
        self.sync_seconds.record(crate::metrics::since(start));
        r
    }

    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes> {
        let b = self.inner.read(wal, offset, len).await?;
        if let Some(c) = &self.read {
            c.increment(b.len() as u64);
        }
        Ok(b)
    }

    async fn read_checked(
        &self,
        wal: WalId,
        offset: u64,
        len: u64,
        check: &dyn ReadCheck,
    ) -> Result<Bytes> {
        let b = self.inner.read_checked(wal, offset, len, check).await?;
        if let Some(c) = &self.read {
            c.increment(b.len() as u64);
        }
        Ok(b)
    }

    async fn list_wals(&self) -> Result<Vec<WalInfo>> {
        self.inner.list_wals().await
    }

    async fn close_wal(&self, wal: WalId) -> Result<()> {
        self.inner.close_wal(wal).await
    }

    async fn read_config(&self) -> Result<Option<Bytes>> {
        self.inner.read_config().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    fn continues_wals(&self) -> bool {
        self.inner.continues_wals()
    }

    async fn reopen_wal(&self, wal: WalId) -> Result<Option<NewWal>> {
        self.inner.reopen_wal(wal).await
    }

    async fn delete_wal(&self, wal: WalId) -> Result<()> {
        self.inner.delete_wal(wal).await
    }

    async fn wal_modified(&self, wal: WalId) -> Result<Option<std::time::SystemTime>> {
        self.inner.wal_modified(wal).await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.inner.checkpoints().await
    }

    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        self.inner.put_checkpoint(checkpoint).await
    }

    async fn remove_checkpoint(&self, name: &str) -> Result<()> {
        self.inner.remove_checkpoint(name).await
    }
}
