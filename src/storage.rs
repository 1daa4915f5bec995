//! [`Storage`]: the one storage type of every variant (DESIGN.md §4).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::builder::{StorageBuilder, StorageConfig};
use crate::error::{Error, Result};
use crate::network::NetworkManager;
use crate::page_cache::{CacheStats, PageCache};
use crate::reader::Reader;
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
            }),
        }
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
        self.inner.writer.push(format, data).await
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
        self.check_open()?;
        self.inner.reader.read(ptr).await
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
    pub async fn flush_wal(&self) -> Result<()> {
        self.check_writable()?;
        self.inner.writer.sync_all().await
    }

    /// The current durable root, if the space has one.
    pub async fn read_current_root(&self) -> Result<Option<RootRecord>> {
        self.check_open()?;
        self.inner.roots.read_current().await
    }

    /// Opens the root-update critical section: waits for the exclusive grant,
    /// then exposes the current root. End it with
    /// [`RootUpdate::publish`] (or drop it to abort).
    pub async fn begin_root_update(&self) -> Result<RootUpdate> {
        self.check_writable()?;
        self.inner.roots.begin().await
    }

    /// Runs a whole root update: `f` gets the current root and returns the
    /// pointer to publish; returns the durable new root.
    pub async fn update_root<F, Fut>(&self, f: F) -> Result<RootRecord>
    where
        F: FnOnce(Option<RootRecord>) -> Fut,
        Fut: Future<Output = Result<AtomPointer>>,
    {
        let update = self.begin_root_update().await?;
        let pointer = f(update.current().cloned()).await?;
        update.publish(pointer).await
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
    pub async fn set_root(&self, pointer: AtomPointer) -> Result<RootRecord> {
        self.begin_root_update().await?.publish(pointer).await
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

    /// Bytes pushed but not yet durable.
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
        if let Some(n) = &self.inner.network {
            note(n.stop().await.map_err(Error::from));
        }
        note(self.inner.wals.close().await);
        first.map_or(Ok(()), Err)
    }
}
