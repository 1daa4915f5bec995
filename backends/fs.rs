//! [`FileBlockProvider`]: a space directory on the local filesystem.
//!
//! The layout is the reference implementation's, so a reference space opens
//! as is:
//!
//! ```text
//! <dir>/<wal-uuid>        one file per WAL, named by the hyphenated UUID
//! <dir>/space_root.log    the root: an append-only log, one fdatasync per root (see `root_log`)
//! <dir>/space_root        the root, JSON, the reference's file: refreshed from the log
//!                         within a second while commits run, exactly at `close`
//! <dir>/space_root.lock   OS lock taken around root updates
//! <dir>/space.config      optional configuration (INI in the reference)
//! <dir>/space_root.history recent roots, one JSON line each (see `protobase history`)
//! ```
//!
//! Blocking file calls run in place on a multi-thread runtime and on tokio's
//! blocking pool otherwise.
//!
//! # One writer per WAL file
//!
//! A writer holds an exclusive OS lock (`flock`) on every WAL file it
//! appends to, from [`create_wal`](WalStore::create_wal) or
//! [`reopen_wal`](WalStore::reopen_wal) until
//! [`close_wal`](WalStore::close_wal), `close` or the end of the process
//! (the OS releases it after a crash). Several processes may write one
//! space at once (root updates are serialised by `space_root.lock`), each
//! to WALs of its own: a process continues an earlier process's WAL (see
//! [`crate::wal_resume`]) only when it gets that WAL's lock, and a WAL
//! another process is writing is never taken over. Readers take no lock.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;

use super::file_io::{blocking, read_cached_at, read_full_at, sync_dir};
use crate::block_provider::{
    NewWal, RootLock, RootRegister, RootVersion, VersionedRoot, WalInfo, WalStore,
};
use crate::error::{Error, Result};
use crate::root_register::WalBytes;
use crate::types::{RootRecord, WalId};

const LOCK_FILE: &str = "space_root.lock";
const CONFIG_FILE: &str = "space.config";
/// Reads up to this size skip the `fstat` that bounds larger ones.
const SMALL_READ: u64 = 2 << 20;

/// Largest read tried in place from the page cache (larger ones copy long
/// enough to hold up the worker's other tasks).
const INLINE_READ: u64 = 256 << 10;

/// Reads `len` bytes of `wal` at `offset` from `file` with `read_at` (which
/// reads up to a buffer's length, fewer only at the end of the file, or
/// gives up with `None`): the bytes there (fewer at the end of the WAL),
/// [`Error::OffsetOutOfRange`] at or past its end, `None` if `read_at` gave
/// up.
fn read_wal(
    file: &File,
    wal: WalId,
    offset: u64,
    len: u64,
    read_at: impl FnOnce(&File, &mut [u8], u64) -> Option<std::io::Result<usize>>,
) -> Result<Option<Bytes>> {
    let ctx = |e| Error::io(format!("reading WAL {wal} at {offset}"), e);
    // No fstat on the hot path (small reads): a read at or past the end
    // returns 0. Large reads are bounded by the file size first, so a huge
    // `len` never allocates more than the file holds.
    let n = if len <= SMALL_READ {
        len
    } else {
        let size = file.metadata().map_err(ctx)?.len();
        len.min(size.saturating_sub(offset))
    } as usize;
    let mut buf = vec![0u8; n];
    // Offsets past i64::MAX cannot name a byte of any file (the OS refuses
    // them with EINVAL): they are out of range, not I/O errors.
    let got = if i64::try_from(offset).is_ok() {
        match read_at(file, &mut buf, offset) {
            None => return Ok(None),
            Some(r) => r.map_err(ctx)?,
        }
    } else {
        0
    };
    if got == 0 && n > 0 {
        let size = file.metadata().map_err(ctx)?.len();
        return Err(Error::OffsetOutOfRange {
            wal,
            offset,
            len: size,
        });
    }
    buf.truncate(got);
    Ok(Some(Bytes::from(buf)))
}

/// A space directory on the local filesystem.
#[derive(Debug)]
pub struct FileBlockProvider {
    dir: PathBuf,
    read_only: bool,
    files: RwLock<HashMap<WalId, Arc<File>, foldhash::fast::RandomState>>,
    lock_file: Option<Arc<File>>,
    /// Held from a `lock_root` call until its lock is released: the OS
    /// lock belongs to the shared open file, so two calls on one provider
    /// would both "acquire" it, and the first release would free it under
    /// the second holder.
    lock_gate: Arc<tokio::sync::Mutex<()>>,
    /// The root log and `space_root` (shared with blocking tasks).
    roots: Arc<super::root_log::RootFiles>,
    closed: AtomicBool,
    /// Root history lines not yet appended (see `root_history`).
    history: super::root_history::Pending,
}

impl Drop for FileBlockProvider {
    /// A provider dropped without `close` still appends its history lines.
    fn drop(&mut self) {
        if !self.read_only
            && !self.closed.load(Ordering::Acquire)
            && let Err(e) = self.roots.settle()
        {
            tracing::warn!(error = %e, "space_root not refreshed from the root log");
        }
        let lines = self.history.take();
        if !lines.is_empty()
            && let Err(e) = super::root_history::append_lines(&self.dir, &lines)
        {
            tracing::warn!(error = %e, "root history lines not written");
        }
    }
}

impl std::fmt::Display for FileBlockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileBlockProvider({})", self.dir.display())
    }
}

impl FileBlockProvider {
    /// Opens (creating if needed) a writable space directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating space directory {}", dir.display()), e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        let roots = super::root_log::RootFiles::new(&dir, true);
        // Before any WAL is read or continued.
        roots.put_back_carried()?;
        Ok(FileBlockProvider {
            read_only: false,
            files: RwLock::default(),
            lock_file: Some(Arc::new(lock_file)),
            lock_gate: Arc::default(),
            roots: Arc::new(roots),
            closed: AtomicBool::new(false),
            history: Default::default(),
            dir,
        })
    }

    /// Opens an existing space directory without creating or writing anything.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::io(
                format!("opening space directory {}", dir.display()),
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            ));
        }
        let roots = super::root_log::RootFiles::new(&dir, false);
        // A space whose WALs lack bytes its root log carries is refused.
        roots.put_back_carried()?;
        Ok(FileBlockProvider {
            read_only: true,
            files: RwLock::default(),
            lock_file: None,
            lock_gate: Arc::default(),
            roots: Arc::new(roots),
            closed: AtomicBool::new(false),
            history: Default::default(),
            dir,
        })
    }

    /// The space directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends the history lines waiting in memory (errors are logged:
    /// the history is for operators).
    async fn flush_history(&self) {
        let lines = self.history.take();
        if lines.is_empty() {
            return;
        }
        let dir = self.dir.clone();
        if let Err(e) = blocking(move || super::root_history::append_lines(&dir, &lines)).await {
            tracing::warn!(error = %e, "root history lines not written");
        }
    }

    fn wal_path(&self, wal: WalId) -> PathBuf {
        super::carried_wal::wal_file(&self.dir, wal)
    }

    /// Stores `root` (and what it carries) in the root log.
    async fn store_root(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
        carried: Vec<WalBytes>,
    ) -> Result<RootVersion> {
        self.check_writable()?;
        let (roots, to_write) = (self.roots.clone(), root.clone());
        blocking(move || roots.write(&to_write, expected, &carried)).await?;
        // The root is durable: its history line is for operators only.
        match self.history.push(root, std::time::SystemTime::now()) {
            Ok(true) => self.flush_history().await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "the root is stored; its history line is not"),
        }
        Ok(RootVersion::of_root(root))
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// The current root (the root log's, or `space_root`'s).
    async fn current_root(&self) -> Result<Option<RootRecord>> {
        self.check_open()?;
        let roots = self.roots.clone();
        blocking(move || roots.read()).await
    }

    fn handle(&self, wal: WalId) -> Result<Arc<File>> {
        if let Some(f) = self.files.read().get(&wal) {
            return Ok(f.clone());
        }
        let path = self.wal_path(wal);
        let file = match open_for_reads(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::WalNotFound { wal });
            }
            Err(e) => return Err(Error::io(format!("opening WAL {}", path.display()), e)),
        };
        Ok(self.files.write().entry(wal).or_insert(file).clone())
    }
}

#[async_trait]
impl WalStore for FileBlockProvider {
    async fn create_wal(&self) -> Result<NewWal> {
        self.check_writable()?;
        let id = WalId::new_random();
        let path = self.wal_path(id);
        let dir = self.dir.clone();
        let file = blocking(move || {
            let f = OpenOptions::new()
                .create_new(true)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(format!("creating WAL {}", path.display()), e))?;
            // Its writer holds it (see the module docs). Another process
            // may hold the lock for a moment, looking at the empty file
            // for a WAL to continue (it never takes one without a header).
            f.lock()
                .map_err(|e| Error::io(format!("locking WAL {}", path.display()), e))?;
            // Make the new name durable now, so a later fdatasync suffices.
            sync_dir(&dir)?;
            Ok(f)
        })
        .await?;
        self.files.write().insert(id, Arc::new(file));
        Ok(NewWal::dense(id))
    }

    async fn append(&self, wal: WalId, offset: u64, data: Bytes) -> Result<()> {
        self.check_writable()?;
        let file = self.handle(wal)?;
        blocking(move || {
            file.write_all_at(&data, offset).map_err(|e| {
                Error::io(
                    format!("writing {} bytes to WAL {wal} at {offset}", data.len()),
                    e,
                )
            })
        })
        .await
    }

    async fn sync(&self, wal: WalId, _upto: u64) -> Result<()> {
        self.check_writable()?;
        let file = self.handle(wal)?;
        blocking(move || {
            file.sync_data()
                .map_err(|e| Error::io(format!("syncing WAL {wal}"), e))
        })
        .await
    }

    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes> {
        self.check_open()?;
        let file = self.handle(wal)?;
        // Cached bytes are copied in place; the disk is waited for on the
        // blocking path.
        if len <= INLINE_READ
            && let Some(bytes) = read_wal(&file, wal, offset, len, |f, buf, at| {
                read_cached_at(f, buf, at).map(Ok)
            })?
        {
            return Ok(bytes);
        }
        blocking(move || {
            read_wal(&file, wal, offset, len, |f, buf, at| {
                Some(read_full_at(f, buf, at))
            })?
            .ok_or_else(|| {
                Error::io(
                    format!("reading WAL {wal} at {offset}"),
                    std::io::Error::other("a blocking read gave up"),
                )
            })
        })
        .await
    }

    async fn list_wals(&self) -> Result<Vec<WalInfo>> {
        self.check_open()?;
        let dir = self.dir.clone();
        blocking(move || {
            let ctx = |e| Error::io(format!("listing {}", dir.display()), e);
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(ctx)? {
                let entry = entry.map_err(ctx)?;
                let name = entry.file_name();
                let Some(id) = name.to_str().and_then(|n| n.parse::<WalId>().ok()) else {
                    continue;
                };
                let meta = entry.metadata().map_err(ctx)?;
                if meta.is_file() {
                    out.push(WalInfo {
                        id,
                        len: meta.len(),
                    });
                }
            }
            out.sort_by_key(|w| w.id);
            Ok(out)
        })
        .await
    }

    async fn close_wal(&self, wal: WalId) -> Result<()> {
        self.files.write().remove(&wal);
        Ok(())
    }

    async fn read_config(&self) -> Result<Option<Bytes>> {
        self.check_open()?;
        let path = self.dir.join(CONFIG_FILE);
        blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        self.flush_history().await;
        if !self.read_only && !self.closed.load(Ordering::Acquire) {
            // `space_root` becomes exactly the log's root, durably.
            let roots = self.roots.clone();
            blocking(move || roots.settle()).await?;
        }
        self.closed.store(true, Ordering::Release);
        self.files.write().clear();
        Ok(())
    }

    fn continues_wals(&self) -> bool {
        !self.read_only
    }

    async fn reopen_wal(&self, wal: WalId) -> Result<Option<NewWal>> {
        if self.read_only {
            return Ok(None);
        }
        self.check_open()?;
        let path = self.wal_path(wal);
        let file = blocking(move || {
            let f = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::WalNotFound { wal });
                }
                Err(e) => return Err(Error::io(format!("opening WAL {}", path.display()), e)),
            };
            match f.try_lock() {
                // A WAL removed (reclaimed) between the open and the lock
                // is gone: never append to an unlinked file.
                Ok(()) if unlinked(&f, &path)? => Err(Error::WalNotFound { wal }),
                Ok(()) => Ok(Some(f)),
                Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                Err(std::fs::TryLockError::Error(e)) => {
                    Err(Error::io(format!("locking WAL {}", path.display()), e))
                }
            }
        })
        .await?;
        let Some(file) = file else {
            return Ok(None);
        };
        // The locked handle replaces any read handle: appends go through it
        // and `close_wal` drops it, which unlocks.
        self.files.write().insert(wal, Arc::new(file));
        Ok(Some(NewWal::dense(wal)))
    }

    /// Takes the WAL's lock (refused while a writer, of this process or
    /// another, holds it: `flock` locks of two opens conflict even in one
    /// process), unlinks the file and makes the removal durable, then lets
    /// the lock go. A writer that opened the file before and locks it after
    /// finds it unlinked and does not write ([`reopen_wal`]); a reader with
    /// the file open finishes its reads (POSIX keeps an unlinked file's
    /// bytes while it is open).
    ///
    /// [`reopen_wal`]: WalStore::reopen_wal
    async fn delete_wal(&self, wal: WalId) -> Result<()> {
        self.check_writable()?;
        let path = self.wal_path(wal);
        let dir = self.dir.clone();
        blocking(move || {
            let f = match OpenOptions::new().read(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::WalNotFound { wal });
                }
                Err(e) => return Err(Error::io(format!("opening WAL {}", path.display()), e)),
            };
            match f.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::WalInUse {
                        wal,
                        why: "a writer holds its file".into(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking WAL {}", path.display()), e));
                }
            }
            if unlinked(&f, &path)? {
                return Err(Error::WalNotFound { wal });
            }
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing WAL {}", path.display()), e))?;
            sync_dir(&dir)?;
            drop(f);
            Ok(())
        })
        .await?;
        self.files.write().remove(&wal);
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<crate::checkpoint::Checkpoint>> {
        self.check_open()?;
        let dir = self.dir.clone();
        blocking(move || super::checkpoint_files::list(&dir)).await
    }

    async fn put_checkpoint(&self, checkpoint: &crate::checkpoint::Checkpoint) -> Result<()> {
        self.check_writable()?;
        let (dir, cp) = (self.dir.clone(), checkpoint.clone());
        blocking(move || super::checkpoint_files::put(&dir, &cp)).await
    }

    async fn remove_checkpoint(&self, name: &str) -> Result<()> {
        self.check_writable()?;
        let (dir, name) = (self.dir.clone(), name.to_string());
        blocking(move || super::checkpoint_files::remove(&dir, &name)).await
    }

    async fn wal_modified(&self, wal: WalId) -> Result<Option<std::time::SystemTime>> {
        self.check_open()?;
        let path = self.wal_path(wal);
        blocking(move || match std::fs::metadata(&path) {
            Ok(m) => Ok(m.modified().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::WalNotFound { wal }),
            Err(e) => Err(Error::io(
                format!("reading the time of {}", path.display()),
                e,
            )),
        })
        .await
    }
}

/// Whether the open `file` is no longer the file at `path` (it was removed,
/// or replaced by another).
pub(super) fn unlinked(file: &File, path: &Path) -> Result<bool> {
    super::file_id::unlinked(file, path)
        .map_err(|e| Error::io(format!("checking {}", path.display()), e))
}

#[async_trait]
impl RootRegister for FileBlockProvider {
    async fn read_root(&self) -> Result<Option<VersionedRoot>> {
        Ok(self.current_root().await?.map(VersionedRoot::by_order))
    }

    async fn write_root(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
    ) -> Result<RootVersion> {
        self.store_root(root, expected, Vec::new()).await
    }

    /// Carries bytes of this directory's own WALs (ones this provider
    /// writes: a WAL of another store is not its to put back) with the
    /// root in the root log (see `carried_wal`).
    async fn write_root_carrying(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
        carried: &[WalBytes],
    ) -> Result<Option<RootVersion>> {
        {
            let files = self.files.read();
            if !carried.iter().all(|b| files.contains_key(&b.wal)) {
                return Ok(None);
            }
        }
        if !super::root_log::carried_fits(root, carried) {
            return Ok(None);
        }
        self.store_root(root, expected, carried.to_vec())
            .await
            .map(Some)
    }

    /// Rewrites `space_root.history` with the lines `retention` keeps.
    async fn prune_history(
        &self,
        retention: &crate::root_register::RootRetention,
    ) -> Result<crate::root_register::PruneReport> {
        self.check_writable()?;
        self.flush_history().await;
        let (dir, retention) = (self.dir.clone(), *retention);
        blocking(move || super::root_history::prune(&dir, &retention)).await
    }

    async fn history(&self, limit: usize) -> Result<Vec<crate::root_register::HistoricRoot>> {
        self.check_open()?;
        self.flush_history().await;
        let dir = self.dir.clone();
        let mut h = blocking(move || super::root_history::read(&dir, limit)).await?;
        // The current root comes first even when its line was lost (a
        // crash after the root, before the line; a space the reference
        // wrote).
        if let Some(current) = self.current_root().await?
            && h.first().is_none_or(|f| f.root != current)
            && limit > 0
        {
            h.retain(|e| e.root != current);
            h.insert(
                0,
                crate::root_register::HistoricRoot {
                    root: current,
                    written: None,
                },
            );
            h.truncate(limit);
        }
        Ok(h)
    }

    async fn lock_root(&self) -> Result<RootLock> {
        self.check_writable()?;
        let Some(file) = self.lock_file.clone() else {
            return Err(Error::ReadOnly);
        };
        /// Unlocks the file, then (fields drop after `drop`) opens the gate.
        struct Unlock(
            Arc<File>,
            #[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>,
        );
        impl Drop for Unlock {
            fn drop(&mut self) {
                let _ = self.0.unlock();
            }
        }
        let path = self.dir.join(LOCK_FILE);
        // Waiting for the gate is cancel-safe (nothing taken yet).
        let gate = self.lock_gate.clone().lock_owned().await;
        let guard = match file.try_lock() {
            Ok(()) => Unlock(file, gate),
            Err(std::fs::TryLockError::WouldBlock) => {
                // Another process holds the lock. Wait on a blocking thread
                // (never `block_in_place`: a blocked worker cannot be
                // cancelled by a timeout around this call). The guard is
                // made where the lock is taken, with the gate: if this
                // future is dropped while waiting, the task's result is
                // dropped when it finishes, which unlocks and opens the
                // gate for the next caller.
                tokio::task::spawn_blocking(move || -> Result<Unlock> {
                    file.lock()
                        .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
                    Ok(Unlock(file, gate))
                })
                .await
                .map_err(|e| Error::io("waiting for the root lock", std::io::Error::other(e)))??
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", path.display()), e));
            }
        };
        Ok(RootLock::new(guard))
    }
}

/// Opens a WAL for reads. On Linux without access-time updates where the
/// process may ask for that (it owns the file): every read would otherwise
/// check whether the access time is due.
fn open_for_reads(path: &Path) -> std::io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(path)
        {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            r => return r,
        }
    }
    File::open(path)
}
