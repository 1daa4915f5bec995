//! Durable floor for promised terms.
//!
//! A voter's promise must survive a restart: if a restarted node forgot that
//! it promised term 7, it could grant term 6 to another candidate while the
//! holder of term 7 still publishes, and an acknowledged root could be lost.
//! Writing every promise durably would put an fsync on every vote, so the
//! voter reserves terms in blocks: before promising a term above the stored
//! ceiling it durably raises the ceiling by [`TERM_BLOCK`], and after a
//! restart it promises nothing at or below the stored ceiling. Candidates
//! learn the voter's floor from its refusal and jump above it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Terms reserved per durable write.
pub const TERM_BLOCK: u64 = 1024;

/// Where a voter keeps its promised-term ceiling.
pub trait TermStore: Send + Sync + fmt::Debug {
    /// The stored ceiling (0 when none was stored).
    fn load(&self) -> Result<u64>;
    /// Durably stores a new ceiling.
    fn store(&self, ceiling: u64) -> Result<()>;
}

/// A ceiling kept in a file (`cluster_term` in the space directory), replaced
/// by tmp + fsync + rename + directory fsync.
#[derive(Debug, Clone)]
pub struct FileTermStore {
    path: PathBuf,
}

impl FileTermStore {
    /// A store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileTermStore { path: path.into() }
    }
}

impl TermStore for FileTermStore {
    fn load(&self) -> Result<u64> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => s.trim().parse().map_err(|e| {
                Error::invalid("term ceiling", format!("{}: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io(format!("reading {}", self.path.display()), e)),
        }
    }

    fn store(&self, ceiling: u64) -> Result<()> {
        let ctx = |e| Error::io(format!("writing {}", self.path.display()), e);
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, ceiling.to_string()).map_err(ctx)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(ctx)?;
        std::fs::rename(&tmp, &self.path).map_err(ctx)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(ctx)?;
        }
        Ok(())
    }
}

/// A ceiling in memory; clones share it, so a test can "restart" a voter
/// with the same store.
#[derive(Debug, Clone, Default)]
pub struct MemoryTermStore(Arc<AtomicU64>);

impl TermStore for MemoryTermStore {
    fn load(&self) -> Result<u64> {
        Ok(self.0.load(Ordering::SeqCst))
    }
    fn store(&self, ceiling: u64) -> Result<()> {
        self.0.store(ceiling, Ordering::SeqCst);
        Ok(())
    }
}
