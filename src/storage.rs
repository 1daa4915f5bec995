//! [`Storage`]: the one storage type of every variant (DESIGN.md §4).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::builder::{StorageBuilder, StorageConfig};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::network::NetworkManager;
use crate::page_cache::{CacheStats, PageCache};
use crate::reader::Reader;
use crate::reclaim::{self, ReadGate, ReclaimOptions, ReclaimReport};
use crate::root_commit::{RootCommitter, RootUpdate};
use crate::root_register::RootRegister;
use crate::scan::{self, WalReport};
use crate::types::{AtomPointer, Format, RootRecord, WalId};
use crate::vote::VoteStrategy;
use crate::wal_store::{WalInfo, WalStore};
use crate::wal_writer::WalWriter;

/// How an atom is encoded by [`Storage::push_atom`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomFormat {
    /// UTF-8 JSON (format byte 1).
    Json,
    /// MessagePack (format byte 2).
    MessagePack,
}

struct Inner {
    config: StorageConfig,
    wals: Arc<dyn WalStore>,
    register: Arc<dyn RootRegister>,
    cache: Arc<dyn PageCache>,
    writer: Arc<WalWriter>,
    reader: Reader,
    roots: Arc<RootCommitter>,
    network: Option<Arc<dyn NetworkManager>>,
    closed: AtomicBool,
    metrics: crate::metrics::EngineMetrics,
    /// What a readiness check asks besides the root and the majority.
    health: Option<Arc<dyn HealthSource>>,
    /// The node's acceptor (cluster variants), for its status.
    acceptor: Option<Arc<crate::cluster::Acceptor>>,
    /// Reads in flight per WAL, for [`Storage::reclaim`].
    gate: Arc<ReadGate>,
    /// The root a read-only storage opened at (a checkpoint's, a retained
    /// one): what it reads as the current root.
    pinned: std::sync::OnceLock<RootRecord>,
    /// Blind root writes handed to the grant's holder and taken from
    /// members (cluster variants; see [`crate::root_forward`]).
    forwarding: Option<crate::root_forward::Forwarding>,
}

/// Something a [`Storage`] asks when its readiness is checked (the cloud
/// provider's uploader, say).
pub(crate) trait HealthSource: Send + Sync {
    /// `Err(why)` when this part keeps the node from being ready.
    fn check(&self) -> std::result::Result<(), String>;
}

/// What [`Storage::readiness`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Readiness {
    /// The current root could be read (a linearizable read: in a cluster
    /// it needs a majority). An empty space, whose answer is "no root yet",
    /// counts as readable.
    pub root_readable: bool,
    /// Sequence of the current root, when there is one.
    pub root_sequence: Option<u64>,
    /// The transport has working links to a majority (self included);
    /// always true outside a cluster.
    pub majority: bool,
    /// Peers with a working link, and the cluster size (self included).
    pub peers_up: usize,
    /// Nodes in the cluster (1 outside a cluster).
    pub cluster_size: usize,
    /// The uploader (cloud variants) is not failing.
    pub uploader_ok: bool,
    /// Why the storage is not ready (empty when it is).
    pub reasons: Vec<String>,
}

impl Readiness {
    /// Ready to serve: root readable, a majority, uploads not failing.
    pub fn is_ready(&self) -> bool {
        self.root_readable && self.majority && self.uploader_ok
    }
}

/// An open space: push and read atoms, publish roots.
///
/// Cheap to clone (clones share the space). Every method is safe to call
/// from many tasks at once.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

/// A handle to a [`Storage`] that does not keep it open (see
/// [`Storage::downgrade`]): what a message handler of the storage's own
/// network manager holds, so the two do not keep each other alive.
#[derive(Clone)]
pub struct WeakStorage {
    inner: std::sync::Weak<Inner>,
}

impl fmt::Debug for WeakStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakStorage")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}

impl WeakStorage {
    /// The storage, while any [`Storage`] clone of it exists.
    pub fn upgrade(&self) -> Option<Storage> {
        self.inner.upgrade().map(|inner| Storage { inner })
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("wals", &self.inner.wals)
            .field("register", &self.inner.register)
            .field("node_id", &self.inner.config.node_id)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Storage {
    /// A builder (see [`StorageBuilder`]).
    pub fn builder() -> StorageBuilder {
        StorageBuilder::new()
    }

    /// Opens (creating if needed) standalone file storage in `dir` with
    /// default settings.
    #[cfg(feature = "fs")]
    pub async fn open(dir: impl Into<std::path::PathBuf>) -> Result<Storage> {
        StorageBuilder::standalone(dir).build().await
    }

    pub(crate) fn assemble(
        config: StorageConfig,
        wals: Arc<dyn WalStore>,
        register: Arc<dyn RootRegister>,
        cache: Arc<dyn PageCache>,
        vote: Arc<dyn VoteStrategy>,
        network: Option<Arc<dyn NetworkManager>>,
    ) -> Storage {
        let writer = Arc::new(WalWriter::new(
            wals.clone(),
            config.buffer_size,
            config.max_wal_size,
        ));
        let reader = Reader::new(
            wals.clone(),
            cache.clone(),
            writer.clone(),
            config.page_size,
            config.blob_max_size,
        );
        let roots = Arc::new(RootCommitter::new(
            register.clone(),
            vote,
            writer.clone(),
            config.node_id.clone(),
        ));
        Storage {
            inner: Arc::new(Inner {
                config,
                wals,
                register,
                cache,
                writer,
                reader,
                roots,
                network,
                closed: AtomicBool::new(false),
                metrics: crate::metrics::EngineMetrics::new(),
                health: None,
                acceptor: None,
                gate: Arc::default(),
                pinned: std::sync::OnceLock::new(),
                forwarding: None,
            }),
        }
    }

    /// Continues a WAL an earlier process left, if there is one to
    /// continue (the builder, standalone variants, before first use; see
    /// [`crate::wal_resume`]).
    pub(crate) async fn continue_wal(&self) -> Result<()> {
        let root = self.inner.register.read_root().await?.map(|v| v.root);
        if let Some(wal) = crate::wal_resume::continue_wal(
            self.inner.wals.as_ref(),
            root.as_ref(),
            self.inner.config.max_wal_size,
            self.inner.config.blob_max_size,
        )
        .await?
        {
            self.inner.writer.adopt(wal)?;
        }
        Ok(())
    }

    /// Adds a health source (the builder, before the storage is shared).
    #[cfg_attr(not(feature = "cloud"), allow(dead_code))]
    pub(crate) fn with_health(mut self, source: Arc<dyn HealthSource>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.health = Some(source);
        }
        self
    }

    /// Reads `root` as the current root from now on (the builder, read-only
    /// storage opened at a checkpoint or a retained root).
    pub(crate) fn pin_root(self, root: RootRecord) -> Result<Self> {
        self.inner
            .pinned
            .set(root)
            .map_err(|_| Error::invalid("builder", "the storage is pinned to a root already"))?;
        Ok(self)
    }

    /// Hands blind root writes to the grant's holder and publishes those
    /// members hand here (the builder, cluster variants whose register is
    /// the quorum): `nonce` tells this process from earlier ones of the
    /// node, `timeout` bounds the wait for the holder's answer, and
    /// `inherited` is what the node's acceptor had promised when this
    /// process started.
    pub(crate) fn with_forwarding(
        mut self,
        nonce: u64,
        timeout: std::time::Duration,
        inherited: u64,
    ) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.forwarding = Some(crate::root_forward::Forwarding::new(
                nonce, timeout, inherited,
            ));
        }
        self
    }

    /// Publishes a root a member forwarded (see [`crate::root_forward`]):
    /// the answer to its [`Message::ForwardRoot`](crate::protocol::Message::ForwardRoot).
    pub(crate) async fn serve_forward(
        &self,
        from: &crate::network::PeerId,
        forward: crate::root_forward::Forward,
    ) -> crate::protocol::Message {
        use crate::protocol::Message;
        if let Err(e) = self.check_writable() {
            // It may have served a copy before it closed.
            return Message::Error {
                message: e.to_string(),
            };
        }
        match &self.inner.forwarding {
            Some(f) => f.serve(&self.inner.roots, from, forward).await,
            None => Message::ForwardRefused {
                reason: "this node takes no forwarded roots".into(),
            },
        }
    }

    /// Keeps the node's acceptor (the builder, cluster variants).
    pub(crate) fn with_acceptor(mut self, acceptor: Arc<crate::cluster::Acceptor>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.acceptor = Some(acceptor);
        }
        self
    }

    /// This cluster node's status as its peers get it (promised term and
    /// accepted root); `None` outside a cluster.
    pub fn node_status(&self) -> Option<crate::protocol::NodeStatus> {
        self.inner.acceptor.as_ref().map(|a| {
            let snap = a.snapshot();
            crate::protocol::NodeStatus {
                node: a.node_id().to_string(),
                term: snap.promised,
                root: snap.accepted.map(|a| a.root),
                version: env!("CARGO_PKG_VERSION").to_string(),
            }
        })
    }

    /// Checks whether this storage can serve: the current root can be read
    /// (within `timeout`), a cluster node has working links to a majority,
    /// and a cloud provider's uploads are not failing. `protobase node`
    /// answers `/ready` with it.
    pub async fn readiness(&self, timeout: std::time::Duration) -> Readiness {
        let mut reasons = Vec::new();
        let (peers_up, cluster_size) = match &self.inner.network {
            Some(n) => {
                let peers = n.peers();
                (peers.iter().filter(|p| p.alive).count(), peers.len() + 1)
            }
            None => (0, 1),
        };
        let majority = peers_up + 1 > cluster_size / 2;
        if !majority {
            reasons.push(format!(
                "links to {} of {cluster_size} nodes (self included), a majority needs {}",
                peers_up + 1,
                cluster_size / 2 + 1
            ));
        }
        let (root_readable, root_sequence) =
            match tokio::time::timeout(timeout, self.read_current_root()).await {
                Ok(Ok(r)) => (true, r.map(|r| r.sequence)),
                Ok(Err(e)) => {
                    reasons.push(format!("the root cannot be read: {e}"));
                    (false, None)
                }
                Err(_) => {
                    reasons.push(format!("the root cannot be read within {timeout:?}"));
                    (false, None)
                }
            };
        let uploader_ok = match self.inner.health.as_ref().map(|h| h.check()) {
            Some(Err(why)) => {
                reasons.push(why);
                false
            }
            _ => true,
        };
        Readiness {
            root_readable,
            root_sequence,
            majority,
            peers_up,
            cluster_size,
            uploader_ok,
            reasons,
        }
    }

    /// Counts an error of `op` (`protobase_errors_total`) and passes it on.
    fn count<T>(op: &'static str, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            crate::metrics::error(op, e.kind());
        }
        r
    }

    /// A handle that does not keep this storage alive.
    pub fn downgrade(&self) -> WeakStorage {
        WeakStorage {
            inner: Arc::downgrade(&self.inner),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if self.inner.config.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// The settings this storage was built with.
    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    /// Where the space's WAL bytes are read and written (with every read
    /// tier the builder composed).
    pub fn wal_store(&self) -> &Arc<dyn WalStore> {
        &self.inner.wals
    }

    /// The register holding the space's root.
    pub fn root_register(&self) -> &Arc<dyn RootRegister> {
        &self.inner.register
    }

    /// The network manager, in cluster variants.
    pub fn network(&self) -> Option<&Arc<dyn NetworkManager>> {
        self.inner.network.as_ref()
    }

    /// Pushes a record and returns its pointer. The record is readable at
    /// once and durable after [`flush_wal`](Self::flush_wal) or a root
    /// publish.
    pub async fn push_record(&self, format: Format, data: &[u8]) -> Result<AtomPointer> {
        // A span only when someone listens at trace level (see `get_record`).
        if tracing::enabled!(tracing::Level::TRACE) {
            let span = tracing::trace_span!("push_record", len = data.len());
            return tracing::Instrument::instrument(self.push_record_timed(format, data), span)
                .await;
        }
        self.push_record_timed(format, data).await
    }

    async fn push_record_timed(&self, format: Format, data: &[u8]) -> Result<AtomPointer> {
        let timer = crate::metrics::Timer::start();
        // Most pushes only frame the record into memory: no await on that
        // path (a push is a few hundred nanoseconds; layers of futures
        // around it would be a good part of its cost).
        let r = match self.check_push(data) {
            Err(e) => Err(e),
            Ok(()) => match self.inner.writer.push_now(format, data) {
                Ok(Ok(ptr)) => Ok(ptr),
                Ok(Err(wait)) => self.inner.writer.push_wait(format, data, wait).await,
                Err(e) => Err(e),
            },
        };
        let r = Self::count("push", r);
        let m = &self.inner.metrics;
        m.push_seconds.record(timer.seconds());
        if r.is_ok() {
            m.push_bytes.increment(data.len() as u64);
        }
        r
    }

    /// Whether `data` may be pushed now.
    fn check_push(&self, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        if data.is_empty() {
            return Err(Error::EmptyData);
        }
        let max = self.inner.config.blob_max_size;
        if data.len() as u64 > max {
            return Err(Error::BlobTooLarge {
                size: data.len() as u64,
                max,
            });
        }
        Ok(())
    }

    /// Pushes raw bytes (format byte 0).
    pub async fn push_bytes(&self, data: &[u8]) -> Result<AtomPointer> {
        self.push_record(Format::Raw, data).await
    }

    /// Serialises `value` as JSON or MessagePack and pushes it.
    pub async fn push_atom<T: Serialize + ?Sized>(
        &self,
        value: &T,
        format: AtomFormat,
    ) -> Result<AtomPointer> {
        let encode_err = |message: String| Error::Encoding {
            action: "encode",
            at: None,
            message,
        };
        let (fmt, bytes) = match format {
            AtomFormat::Json => (
                Format::Json,
                serde_json::to_vec(value).map_err(|e| encode_err(e.to_string()))?,
            ),
            AtomFormat::MessagePack => (
                Format::MessagePack,
                rmp_serde::to_vec_named(value).map_err(|e| encode_err(e.to_string()))?,
            ),
        };
        self.push_record(fmt, &bytes).await
    }

    /// Reads a record: its format and payload.
    pub async fn get_record(&self, ptr: AtomPointer) -> Result<(Format, Bytes)> {
        // A span only when someone listens at trace level: on a warm space
        // a read is a few hundred nanoseconds.
        if tracing::enabled!(tracing::Level::TRACE) {
            let span = tracing::trace_span!("get_record", wal = %ptr.wal_id, offset = ptr.offset);
            return tracing::Instrument::instrument(self.get_record_timed(ptr), span).await;
        }
        self.get_record_timed(ptr).await
    }

    async fn get_record_timed(&self, ptr: AtomPointer) -> Result<(Format, Bytes)> {
        let timer = crate::metrics::Timer::start();
        let r = match self.check_open() {
            // Most reads of a warm space need no waiting: no await on that
            // path (see `push_record`).
            Ok(()) => match self.inner.reader.read_now(ptr) {
                Some(found) => Ok(found),
                None => match self.inner.gate.enter(ptr.wal_id) {
                    Ok(_reading) => self.inner.reader.read(ptr).await,
                    Err(e) => Err(e),
                },
            },
            Err(e) => Err(e),
        };
        let r = Self::count("get", r);
        let m = &self.inner.metrics;
        m.get_seconds.record(timer.seconds());
        if let Ok((_, b)) = &r {
            m.get_bytes.increment(b.len() as u64);
        }
        r
    }

    /// Reads the payload of the record at `ptr` (any format).
    pub async fn get_bytes(&self, ptr: AtomPointer) -> Result<Bytes> {
        Ok(self.get_record(ptr).await?.1)
    }

    /// Reads and decodes a JSON or MessagePack atom.
    pub async fn get_atom<T: DeserializeOwned>(&self, ptr: AtomPointer) -> Result<T> {
        let (format, payload) = self.get_record(ptr).await?;
        let decode_err = |message: String| Error::Encoding {
            action: "decode",
            at: Some((ptr.wal_id, ptr.offset)),
            message,
        };
        match format {
            Format::Json => serde_json::from_slice(&payload).map_err(|e| decode_err(e.to_string())),
            Format::MessagePack => {
                rmp_serde::from_slice(&payload).map_err(|e| decode_err(e.to_string()))
            }
            Format::Raw => Err(Error::WrongFormat {
                wal: ptr.wal_id,
                offset: ptr.offset,
                found: format,
                expected: "JSON or MessagePack",
            }),
        }
    }

    /// Makes every record pushed so far durable.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn flush_wal(&self) -> Result<()> {
        let start = std::time::Instant::now();
        self.check_writable()?;
        let r = Self::count("flush", self.inner.writer.sync_all().await);
        self.inner
            .metrics
            .flush_seconds
            .record(crate::metrics::since(start));
        r
    }

    /// The current durable root, if the space has one.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn read_current_root(&self) -> Result<Option<RootRecord>> {
        self.check_open()?;
        if let Some(root) = self.inner.pinned.get() {
            return Ok(Some(root.clone()));
        }
        Self::count("read_root", self.inner.roots.read_current().await)
    }

    /// The root this storage was opened at
    /// ([`StorageBuilder::at_checkpoint`](crate::StorageBuilder::at_checkpoint),
    /// [`at_sequence`](crate::StorageBuilder::at_sequence)), if any: then
    /// [`read_current_root`](Self::read_current_root) returns it, whatever
    /// the space's current root is.
    pub fn pinned_root(&self) -> Option<&RootRecord> {
        self.inner.pinned.get()
    }

    /// Pins the current root under `name` ([`crate::checkpoint`]): it stays
    /// readable until [`remove_checkpoint`](Self::remove_checkpoint), and
    /// [`reclaim`](Self::reclaim) keeps its WAL and refuses a live set that
    /// does not hold it. Fails with [`Error::CheckpointExists`] when the
    /// name is taken, [`Error::Invalid`] on a bad name or a space without a
    /// root.
    pub async fn checkpoint(&self, name: &str) -> Result<Checkpoint> {
        self.check_writable()?;
        crate::checkpoint::check_name(name)?;
        // Under the grant root updates take: the root cannot move on while
        // the checkpoint is stored (a reclamation that saw it current keeps
        // its WAL). Dropping the update publishes nothing.
        let update = self.begin_root_update().await?;
        // The register's newest durable root (a linearizable read: the
        // update's own base may be stale, or published but not yet durable).
        let root = self
            .inner
            .roots
            .read_current()
            .await?
            .ok_or_else(|| Error::invalid("checkpoint", "the space has no root to pin"))?;
        // A reclamation in this process that marked the root's WAL waits
        // for this pass (and then sees the checkpoint), or refuses it here.
        let _pass = self.inner.gate.enter(root.pointer.wal_id)?;
        let cp = Checkpoint::new(name, root)?;
        self.inner.wals.put_checkpoint(&cp).await?;
        // A reclamation in another process that listed the checkpoints
        // before this one was stored may have removed the WAL meanwhile
        // (a root published just before, pointing into an old WAL its live
        // set did not reach): a checkpoint whose root does not read is
        // taken back. (One that removes it after this check is not seen:
        // see NOTES.md.)
        let wal = cp.root.pointer.wal_id;
        if let Err(e @ Error::WalNotFound { .. }) =
            self.inner.wals.read(wal, cp.root.pointer.offset, 1).await
        {
            let _ = self.inner.wals.remove_checkpoint(name).await;
            return Err(e);
        }
        update.abort().await;
        tracing::info!(name, sequence = cp.root.sequence, "checkpoint taken");
        Ok(cp)
    }

    /// Every checkpoint of the space (in a cluster: of this node), sorted by
    /// name. A reachability walk for [`reclaim`](Self::reclaim) starts from
    /// each one's root as well as from the current root.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.check_open()?;
        self.inner.wals.checkpoints().await
    }

    /// Removes the checkpoint `name` ([`Error::CheckpointNotFound`] when
    /// there is none); what only it reached may then be reclaimed.
    pub async fn remove_checkpoint(&self, name: &str) -> Result<()> {
        self.check_writable()?;
        self.inner.wals.remove_checkpoint(name).await
    }

    /// Opens the root-update critical section: waits for the exclusive grant,
    /// then exposes the current root. End it with
    /// [`RootUpdate::publish`] (or drop it to abort).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn begin_root_update(&self) -> Result<RootUpdate> {
        self.check_writable()?;
        Self::count("begin_root_update", self.inner.roots.begin().await)
    }

    /// Runs a whole root update: `f` gets the current root and returns the
    /// pointer to publish; returns the durable new root.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn update_root<F, Fut>(&self, f: F) -> Result<RootRecord>
    where
        F: FnOnce(Option<RootRecord>) -> Fut,
        Fut: Future<Output = Result<AtomPointer>>,
    {
        let update = self.begin_root_update().await?;
        let pointer = f(update.current().cloned()).await?;
        Self::count("commit", update.publish(pointer).await)
    }

    /// Runs `f` while holding the exclusive grant (the one root updates use),
    /// without publishing a root. `f` gets the grant's fencing term, which
    /// anything it writes elsewhere can carry to reject stale holders.
    pub async fn run_exclusive<F, Fut, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let update = self.begin_root_update().await?;
        let out = f(update.term()).await;
        update.abort().await;
        out
    }

    /// Publishes `pointer` as the new root, whatever the current one is.
    ///
    /// On a cluster member that does not hold the grant while another node
    /// does, the root is handed to that node, which publishes it with its
    /// own updates (see [`crate::root_forward`]); the bytes it reaches are
    /// made durable here first. An error then may be
    /// [`Error::ForwardFailed`]: no answer came, and the root may still be
    /// published (as when a register write fails).
    #[tracing::instrument(level = "debug", skip_all, fields(wal = %pointer.wal_id, offset = pointer.offset))]
    pub async fn set_root(&self, pointer: AtomPointer) -> Result<RootRecord> {
        self.check_writable()?;
        if let (Some(f), Some(network)) = (&self.inner.forwarding, &self.inner.network)
            && let crate::root_forward::Sent::Done(r) =
                f.send(&self.inner.roots, network, pointer).await
        {
            return Self::count("commit", r);
        }
        Self::count(
            "commit",
            self.begin_root_update().await?.publish(pointer).await,
        )
    }

    /// Up to `limit` recent roots, newest first, with when they were
    /// written where the register knows (see [`RootRegister::history`]):
    /// files and memory keep the last [`HISTORY_KEEP`](crate::root_register::HISTORY_KEEP)
    /// roots written through them, an object store's chain every root; a
    /// cluster's quorum knows its current root only (each member's
    /// directory keeps the roots copied to it: `protobase history <dir>`).
    pub async fn root_history(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::root_register::HistoricRoot>> {
        self.check_open()?;
        self.inner.register.history(limit).await
    }

    /// Removes the root history `retention` does not keep (see
    /// [`RootRegister::prune_history`]): an object store's chain of root
    /// objects, a directory's `space_root.history` lines. The current root
    /// and the checkpoints stay; a crash in the middle loses nothing kept.
    pub async fn prune_roots(
        &self,
        retention: crate::root_register::RootRetention,
    ) -> Result<crate::root_register::PruneReport> {
        self.check_writable()?;
        self.inner.register.prune_history(&retention).await
    }

    /// The space's configuration data (`space.config`), if present.
    pub async fn read_config(&self) -> Result<Option<Bytes>> {
        self.check_open()?;
        self.inner.wals.read_config().await
    }

    /// Every WAL in the space.
    pub async fn list_wals(&self) -> Result<Vec<WalInfo>> {
        self.check_open()?;
        self.inner.wals.list_wals().await
    }

    /// Retires the WALs nothing live points into (see [`crate::reclaim`]):
    /// every WAL of the space outside `live` except the current root's,
    /// the ones this storage writes, the ones written less than
    /// `options.min_age` ago and the ones a writer holds. `live` is every
    /// WAL the roots a writer may still build on reach (the object
    /// database's reachability walk); what only other roots reach is gone
    /// for good. A read of a retiring WAL that started before finishes;
    /// later ones get [`Error::WalNotFound`].
    ///
    /// In a cluster every member is asked first (a WAL may be another
    /// node's, or be read by one): a member that needs a WAL keeps it, and
    /// one that does not answer within `options.member_timeout` stops the
    /// run before anything is removed. Each node removes what its own WAL
    /// store holds (its files; on an object store, any node's WAL objects).
    /// Cancel-safe: a
    /// WAL is either removed or kept (a removal cut short leaves part of a
    /// WAL that no live pointer reaches; the next run removes the rest).
    #[tracing::instrument(level = "debug", skip_all, fields(dry_run = options.dry_run))]
    pub async fn reclaim(
        &self,
        live: impl IntoIterator<Item = WalId>,
        options: ReclaimOptions,
    ) -> Result<ReclaimReport> {
        if options.dry_run {
            self.check_open()?;
        } else {
            self.check_writable()?;
        }
        let writer = self.inner.writer.clone();
        let writing = move |wal: WalId| writer.owns(wal);
        let parts = reclaim::Parts {
            wals: self.inner.wals.as_ref(),
            cache: self.inner.cache.as_ref(),
            page_size: self.inner.config.page_size,
            gate: &self.inner.gate,
            writing: &writing,
        };
        let network = self.inner.network.clone();
        let members = |wals: Vec<WalId>| async move {
            match network {
                Some(n) => reclaim::ask_members(n.as_ref(), &wals, options.member_timeout).await,
                None => Ok(Vec::new()),
            }
        };
        reclaim::run(
            parts,
            live.into_iter().collect(),
            options,
            || self.read_current_root(),
            members,
        )
        .await
    }

    /// Which of `wals` this node still needs, and why, when a cluster
    /// member asks before reclaiming them ([`Message::ReclaimQuery`]): the
    /// WALs its writer holds, the one its accepted root points into, and
    /// those it is reading.
    ///
    /// [`Message::ReclaimQuery`]: crate::protocol::Message::ReclaimQuery
    pub(crate) async fn reclaim_objections(&self, wals: &[WalId]) -> Result<Vec<(WalId, String)>> {
        let pinned = crate::checkpoint::pinned_wals(self.inner.wals.checkpoints().await?);
        let root_wal = self
            .inner
            .acceptor
            .as_ref()
            .and_then(|a| a.snapshot().accepted.map(|r| r.root.pointer.wal_id));
        Ok(wals
            .iter()
            .filter_map(|&wal| {
                let why = if self.inner.writer.owns(wal) {
                    "its writer holds it"
                } else if root_wal == Some(wal) {
                    "its accepted root points into it"
                } else if self.inner.gate.is_reading(wal) {
                    "it is reading it"
                } else if let Some(name) = pinned.get(&wal) {
                    return Some((wal, format!("its checkpoint {name:?} points into it")));
                } else {
                    return None;
                };
                Some((wal, why.to_string()))
            })
            .collect())
    }

    /// Scans a whole WAL, validating every record; `progress` gets the
    /// number of bytes scanned so far.
    pub async fn scan_wal(
        &self,
        wal: WalId,
        progress: impl FnMut(u64) + Send,
    ) -> Result<WalReport> {
        self.check_open()?;
        scan::scan_wal(
            &*self.inner.wals,
            wal,
            self.inner.config.blob_max_size,
            progress,
        )
        .await
    }

    /// Page cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Bytes pushed but not yet durable (neither synced in their WAL nor
    /// carried by a durable root, see
    /// [`RootRegister::write_root_carrying`]).
    pub fn unsynced_bytes(&self) -> u64 {
        self.inner.writer.unsynced_bytes()
    }

    /// Flushes everything and closes the WAL store. Idempotent; afterwards
    /// every operation fails with [`Error::Closed`].
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Every step runs, whatever failed before it; the first error is
        // returned (a failed flush leaves its bytes where the store keeps
        // them, e.g. a cloud provider's staging directory).
        let mut first: Option<Error> = None;
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        if !self.inner.config.read_only {
            // Roots published before `close` finish (or fail) first.
            self.inner.roots.drain().await;
            note(self.inner.writer.close().await);
            self.inner.roots.drain().await;
        }
        // The grant and root lock may linger after the last update: other
        // processes need not wait for that.
        self.inner.roots.let_go().await;
        if let Some(n) = &self.inner.network {
            note(n.stop().await.map_err(Error::from));
        }
        note(self.inner.wals.close().await);
        first.map_or(Ok(()), Err)
    }
}
