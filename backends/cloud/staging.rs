//! The cloud provider's local staging area: one sparse file per WAL being
//! written, made durable with `fdatasync`, deleted once its slots are in the
//! store.
//!
//! [`StagingArea`] is the provider's only way to its local disk, so a
//! simulation can give it a simulated disk ([`crate::sim::SimDisk`], feature
//! `sim`) and replay crashes deterministically; [`DirStaging`] is the real
//! directory.

use std::any::Any;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{STAGING_LOCK, pread};
use crate::backends::file_io::{blocking, sync_dir};
use crate::error::{Error, Result};
use crate::types::WalId;

/// One WAL's staging file.
#[async_trait]
pub trait StagingFile: Send + Sync + fmt::Debug {
    /// Writes `data` at `offset`.
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()>;
    /// Reads `len` bytes at `offset`; bytes never written read as zeros.
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes>;
    /// Makes everything written durable.
    async fn sync(&self) -> Result<()>;
}

/// Proof that a staging area is locked by this provider; dropping it
/// releases the lock.
pub struct StagingLock(#[allow(dead_code)] Box<dyn Any + Send + Sync>);

impl StagingLock {
    /// Wraps whatever releases the lock when dropped.
    pub fn new(guard: impl Any + Send + Sync) -> Self {
        StagingLock(Box::new(guard))
    }
}

impl fmt::Debug for StagingLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StagingLock")
    }
}

/// A WAL a previous provider left in the staging area.
#[derive(Debug)]
pub struct LeftOver {
    /// The WAL.
    pub wal: WalId,
    /// Its staging file.
    pub file: Arc<dyn StagingFile>,
    /// Its length.
    pub len: u64,
}

/// Where a cloud provider stages WAL bytes before they reach the store.
#[async_trait]
pub trait StagingArea: Send + Sync + fmt::Debug {
    /// Locks the area for one provider ([`Error::Locked`] when another
    /// holds it) and lists the WALs a previous provider left.
    async fn open(&self) -> Result<(StagingLock, Vec<LeftOver>)>;
    /// Creates the staging file of a new WAL (durably named).
    async fn create(&self, wal: WalId) -> Result<Arc<dyn StagingFile>>;
    /// Deletes the staging file of a WAL whose slots are all in the store.
    async fn remove(&self, wal: WalId) -> Result<()>;
    /// The directory behind the area, when it is one (the node's acceptor
    /// state and page cache live beside the staging files).
    fn dir(&self) -> Option<&Path>;
}

/// A staging file on the local filesystem.
#[derive(Debug)]
struct DirFile {
    file: Arc<File>,
    wal: WalId,
}

#[async_trait]
impl StagingFile for DirFile {
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        let (file, wal) = (self.file.clone(), self.wal);
        blocking(move || {
            file.write_all_at(&data, offset).map_err(|e| {
                Error::io(
                    format!(
                        "writing {} bytes to staging WAL {wal} at {offset}",
                        data.len()
                    ),
                    e,
                )
            })
        })
        .await
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let (file, wal) = (self.file.clone(), self.wal);
        blocking(move || {
            pread(&file, offset, len)
                .map(Bytes::from)
                .map_err(|e| Error::io(format!("reading staging WAL {wal} at {offset}"), e))
        })
        .await
    }

    async fn sync(&self) -> Result<()> {
        let (file, wal) = (self.file.clone(), self.wal);
        blocking(move || {
            file.sync_data()
                .map_err(|e| Error::io(format!("syncing staging WAL {wal}"), e))
        })
        .await
    }
}

/// The staging area in a local directory: `<dir>/<wal-uuid>` files and the
/// `staging.lock` the provider holds locked while open.
#[derive(Debug, Clone)]
pub struct DirStaging {
    dir: PathBuf,
}

impl DirStaging {
    /// The staging area in `dir` (created when opened).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirStaging { dir: dir.into() }
    }
}

struct Unlock(File);

impl Drop for Unlock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[async_trait]
impl StagingArea for DirStaging {
    async fn open(&self) -> Result<(StagingLock, Vec<LeftOver>)> {
        let dir = self.dir.clone();
        blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| {
                Error::io(format!("creating staging directory {}", dir.display()), e)
            })?;
            let path = dir.join(STAGING_LOCK);
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path }),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e));
                }
            }
            let guard = StagingLock::new(Unlock(lock));
            let ctx = |e| Error::io(format!("listing {}", dir.display()), e);
            let mut left = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(ctx)? {
                let entry = entry.map_err(ctx)?;
                let Some(wal) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<WalId>().ok())
                else {
                    continue;
                };
                let path = entry.path();
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                let len = file
                    .metadata()
                    .map_err(|e| Error::io(format!("reading size of {}", path.display()), e))?
                    .len();
                left.push(LeftOver {
                    wal,
                    file: Arc::new(DirFile {
                        file: Arc::new(file),
                        wal,
                    }),
                    len,
                });
            }
            left.sort_by_key(|l| l.wal);
            Ok((guard, left))
        })
        .await
    }

    async fn create(&self, wal: WalId) -> Result<Arc<dyn StagingFile>> {
        let dir = self.dir.clone();
        let path = dir.join(wal.to_string());
        let file = blocking(move || {
            let f = OpenOptions::new()
                .create_new(true)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(format!("creating staging file {}", path.display()), e))?;
            sync_dir(&dir)?;
            Ok(f)
        })
        .await?;
        Ok(Arc::new(DirFile {
            file: Arc::new(file),
            wal,
        }))
    }

    async fn remove(&self, wal: WalId) -> Result<()> {
        let path = self.dir.join(wal.to_string());
        blocking(move || {
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))
        })
        .await
    }

    fn dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}
