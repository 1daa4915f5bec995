//! [`BlockProvider`]: where WAL bytes and the root live.
//!
//! The WAL engine frames records and decides offsets; a provider only stores
//! bytes. Implementations: [`FileBlockProvider`](crate::backends::fs::FileBlockProvider)
//! (feature `fs`), [`MemoryBlockProvider`](crate::backends::memory::MemoryBlockProvider)
//! (always available) and, in later variants, object stores.

use std::any::Any;
use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::types::{RootRecord, WalId};

/// A WAL and its current length as the provider sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalInfo {
    /// The WAL.
    pub id: WalId,
    /// Bytes stored (appended, not necessarily durable).
    pub len: u64,
}

/// Proof that the provider's root lock is held; dropping it releases the lock.
pub struct RootLock(#[allow(dead_code)] Box<dyn Any + Send + Sync>);

impl RootLock {
    /// Wraps whatever releases the lock when dropped.
    pub fn new(guard: impl Any + Send + Sync) -> Self {
        RootLock(Box::new(guard))
    }

    /// A lock that guards nothing (providers with no local lock).
    pub fn none() -> Self {
        RootLock::new(())
    }
}

impl fmt::Debug for RootLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootLock")
    }
}

/// Storage of WAL bytes and of the root.
///
/// # Contract
///
/// - WALs are append-only. The engine calls [`append`](Self::append) for a
///   WAL it created with [`create_wal`](Self::create_wal), in increasing
///   offset order, one call at a time per WAL. Offsets are contiguous except
///   after a durability barrier, where writing resumes at
///   [`next_offset_after_barrier`](Self::next_offset_after_barrier).
/// - After `sync(wal, upto)` returns, every byte below `upto` survives a crash
///   of the process or machine (and a newly created WAL is durably named).
/// - [`read`](Self::read) serves any WAL, own or foreign, and returns up to
///   `len` bytes (fewer only at the end of the WAL). An offset at or past the
///   end is [`Error::OffsetOutOfRange`](crate::Error::OffsetOutOfRange); an
///   unknown WAL is [`Error::WalNotFound`](crate::Error::WalNotFound) — the
///   "not found here" that lets a cluster ask its peers.
/// - [`write_root`](Self::write_root) is a compare-and-swap: it succeeds only
///   when the stored root's sequence equals `expected` (`None`: no root), and
///   is durable and atomic when it returns. A loser gets
///   [`Error::RootConflict`](crate::Error::RootConflict).
/// - [`lock_root`](Self::lock_root) gives local mutual exclusion between
///   processes sharing the provider (an OS file lock for files).
///
/// # Implementing
///
/// Every method may be called concurrently from many tasks. Blocking I/O
/// belongs in `spawn_blocking`. Never panic on bytes read back: return
/// typed errors.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait BlockProvider: Send + Sync + fmt::Debug {
    /// Creates a new, empty, writable WAL and returns its id.
    async fn create_wal(&self) -> Result<WalId>;

    /// Stores `data` at `offset` of a WAL created by this provider.
    async fn append(&self, wal: WalId, offset: u64, data: Bytes) -> Result<()>;

    /// Makes everything appended below `upto` durable.
    async fn sync(&self, wal: WalId, upto: u64) -> Result<()>;

    /// Where writing continues after a durability barrier at `end`. Files
    /// continue at `end`; slot-based object stores at the next slot boundary.
    fn next_offset_after_barrier(&self, end: u64) -> u64;

    /// Reads up to `len` bytes of `wal` starting at `offset`.
    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes>;

    /// Reads like [`read`](Self::read), but only from what this node holds
    /// itself (files, staging, a cache directory): `Ok(None)` when the bytes
    /// would need a request to a remote medium (an object store). A cluster
    /// then asks its peers — which may have them cached — before paying for
    /// that request. The default suits providers whose reads are all local.
    async fn read_local(&self, wal: WalId, offset: u64, len: u64) -> Result<Option<Bytes>> {
        self.read(wal, offset, len).await.map(Some)
    }

    /// Whether every node of a cluster reads and writes the *same* root
    /// through this provider (an object-store bucket), rather than a root of
    /// its own. Then the root the grant holder wrote (through the store's
    /// compare-and-swap) is already stored for everyone, and the other
    /// nodes' acceptors only remember it. Default: `false`.
    fn shares_roots(&self) -> bool {
        false
    }

    /// Every WAL the provider holds, with its length.
    async fn list_wals(&self) -> Result<Vec<WalInfo>>;

    /// Releases resources of a WAL that will not be appended to again.
    async fn close_wal(&self, wal: WalId) -> Result<()>;

    /// The stored root, if any.
    async fn read_root(&self) -> Result<Option<RootRecord>>;

    /// Replaces the root if the stored root's sequence is `expected`.
    async fn write_root(&self, root: &RootRecord, expected: Option<u64>) -> Result<()>;

    /// Takes the local root lock (waits while another process holds it).
    async fn lock_root(&self) -> Result<RootLock>;

    /// The space's configuration data (`space.config`), if present.
    async fn read_config(&self) -> Result<Option<Bytes>>;

    /// Closes the provider; later calls fail with [`Error::Closed`](crate::Error::Closed).
    async fn close(&self) -> Result<()>;
}
