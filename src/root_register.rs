//! [`RootRegister`]: the one mutable value of a space, as a versioned
//! register with compare-and-swap.
//!
//! Every variant's root lives in a register: a `space_root` file (local
//! files), a chain of root objects created with put-if-absent (object
//! stores), or a quorum of acceptors (clusters, see
//! [`QuorumRegister`](crate::cluster::QuorumRegister)). The engine reads the
//! root with its [`RootVersion`] and replaces it with a compare-and-swap on
//! that version; it never looks inside a version.
//!
//! Roots are ordered by [`RootRecord::is_newer_than`]: `(term, sequence)`,
//! the one order every register, acceptor and reader uses.

use std::any::Any;
use std::fmt;

use async_trait::async_trait;

use crate::error::Result;
use crate::types::{RootRecord, WalId};

/// An opaque token naming one state of a register (the file's sequence, the
/// object chain's position, an acceptor ballot). Registers create versions;
/// the engine only hands them back.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RootVersion(u128);

impl RootVersion {
    /// A version from one number.
    pub const fn from_u64(v: u64) -> Self {
        RootVersion(v as u128)
    }

    /// A version from two numbers (e.g. a term and a sequence).
    pub const fn from_pair(high: u64, low: u64) -> Self {
        RootVersion(((high as u128) << 64) | low as u128)
    }

    /// The version named by a root's `(term, sequence)`: what registers
    /// that store one root at a time (files, memory) use.
    pub const fn of_root(root: &RootRecord) -> Self {
        Self::from_pair(root.term, root.sequence)
    }

    /// The two numbers of [`from_pair`](Self::from_pair) (or `(0, v)`).
    pub const fn parts(self) -> (u64, u64) {
        ((self.0 >> 64) as u64, self.0 as u64)
    }
}

impl fmt::Debug for RootVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = self.parts();
        write!(f, "RootVersion({a}.{b})")
    }
}

/// A root and the version of the register that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedRoot {
    /// The root.
    pub root: RootRecord,
    /// The register's version holding it.
    pub version: RootVersion,
}

impl VersionedRoot {
    /// A root versioned by its own `(term, sequence)`.
    pub fn by_order(root: RootRecord) -> Self {
        VersionedRoot {
            version: RootVersion::of_root(&root),
            root,
        }
    }
}

/// One root of a register's history ([`RootRegister::history`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoricRoot {
    /// The root.
    pub root: RootRecord,
    /// When the register stored it, when it knows.
    pub written: Option<std::time::SystemTime>,
}

/// Roots a register's history keeps at least ([`RootRegister::history`]).
pub const HISTORY_KEEP: usize = 1_000;

/// Which roots of a register's history to keep
/// ([`RootRegister::prune_history`]): a root goes only when it is neither
/// among the last `keep_last` nor younger than `keep_younger_than`. The
/// current root always stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RootRetention {
    /// Roots kept at least, the current one included (at least 1).
    pub keep_last: u64,
    /// Roots written less than this long ago are kept too.
    pub keep_younger_than: Option<std::time::Duration>,
}

impl RootRetention {
    /// Keeps the last `n` roots (at least the current one).
    pub fn last(n: u64) -> Self {
        RootRetention {
            keep_last: n.max(1),
            keep_younger_than: None,
        }
    }

    /// Also keeps roots written less than `age` ago.
    pub fn younger_than(mut self, age: std::time::Duration) -> Self {
        self.keep_younger_than = Some(age);
        self
    }
}

/// What [`RootRegister::prune_history`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// History entries removed by this run.
    pub removed: u64,
    /// History entries kept.
    pub kept: u64,
}

/// Bytes of a WAL that the WAL store holds but has not made durable yet,
/// handed to [`RootRegister::write_root_carrying`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalBytes {
    /// The WAL.
    pub wal: WalId,
    /// Where the bytes start in it.
    pub offset: u64,
    /// The bytes, as appended to the WAL store.
    pub data: bytes::Bytes,
}

/// Proof that a register's local lock is held; dropping it releases the lock.
pub struct RootLock(#[allow(dead_code)] Box<dyn Any + Send + Sync>);

impl RootLock {
    /// Wraps whatever releases the lock when dropped.
    pub fn new(guard: impl Any + Send + Sync) -> Self {
        RootLock(Box::new(guard))
    }

    /// A lock that guards nothing (registers with no local lock).
    pub fn none() -> Self {
        RootLock::new(())
    }

    /// Whether this is [`RootLock::none`].
    pub fn guards_nothing(&self) -> bool {
        self.0.is::<()>()
    }
}

impl fmt::Debug for RootLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootLock")
    }
}

/// A versioned register holding the root.
///
/// # Contract
///
/// - [`read_root`](Self::read_root) is linearizable: it returns a root that
///   is, or will stay, part of the register's history, at least as new as
///   every root whose write returned before the read began.
/// - [`write_root`](Self::write_root) is a compare-and-swap: it succeeds only
///   when the register still holds version `expected` (`None`: no root) and
///   `root` is newer than the root held
///   ([`RootRecord::is_newer_than`]); it is durable and atomic when it
///   returns, and gives the new version. A loser gets
///   [`Error::RootConflict`](crate::Error::RootConflict). An error other
///   than a conflict leaves the outcome unknown: the root may or may not be
///   stored, and the writer must read again before building on it.
/// - [`lock_root`](Self::lock_root) gives local mutual exclusion between the
///   processes sharing the register (an OS file lock for files; nothing
///   where the register itself arbitrates).
///
/// `protobase::conformance::root_register` (feature `conformance`) checks
/// this contract for any implementation.
#[async_trait]
pub trait RootRegister: Send + Sync + fmt::Debug {
    /// The stored root and its version, if any.
    async fn read_root(&self) -> Result<Option<VersionedRoot>>;

    /// The root an update will build on and compare-and-swap against
    /// ([`write_root`](Self::write_root) with its version).
    ///
    /// Unlike [`read_root`](Self::read_root) it need not be linearizable:
    /// it may return a root older than the newest wherever the register's
    /// own `write_root` on its version finds that out (a conflict, or an
    /// error leaving the outcome unknown), never an acknowledgement. A
    /// register may skip here the checks only a read returned to a caller
    /// needs (an object store's pruning floor). The default is `read_root`.
    async fn read_root_to_update(&self) -> Result<Option<VersionedRoot>> {
        self.read_root().await
    }

    /// Replaces the root if the register holds version `expected`.
    async fn write_root(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
    ) -> Result<RootVersion>;

    /// Like [`write_root`](Self::write_root), for a root that reaches WAL
    /// bytes the WAL store holds but has not synced: `carried`, every byte
    /// appended since the WALs' last sync (or since the last root that
    /// carried them). A register that shares a disk with the WAL store can
    /// make the root and those bytes durable in one write (one device
    /// flush instead of two): it stores them with the root and, after a
    /// crash, writes them back into the WALs before anything reads them
    /// (when the provider opens). `Ok(Some(version))`: done, with
    /// `write_root`'s contract, and every carried byte reads back from the
    /// WAL store after a crash. `Ok(None)`: this register does not carry
    /// WAL bytes (or not these: a WAL it does not know, too many bytes);
    /// nothing was written, and the engine syncs the WALs and calls
    /// `write_root`. The default declines.
    async fn write_root_carrying(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
        carried: &[WalBytes],
    ) -> Result<Option<RootVersion>> {
        let _ = (root, expected, carried);
        Ok(None)
    }

    /// Takes the local root lock (waits while another process holds it).
    async fn lock_root(&self) -> Result<RootLock>;

    /// Up to `limit` of the roots this register held, newest first (the
    /// current root first). Registers keep at least the last
    /// [`HISTORY_KEEP`] roots written through them (an object store's
    /// chain keeps every root); the default knows only the current root.
    /// The history is for operators (`protobase history`): it is written
    /// after the root is durable, without a sync of its own, so a crash may
    /// cost it the newest entries, never the root.
    async fn history(&self, limit: usize) -> Result<Vec<HistoricRoot>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .read_root()
            .await?
            .map(|v| HistoricRoot {
                root: v.root,
                written: None,
            })
            .into_iter()
            .collect())
    }

    /// Removes the history entries `retention` does not keep (an object
    /// store's root chain grows by one object per commit; files keep at most
    /// [`HISTORY_KEEP`]). Never the current root, and a writer or reader of
    /// the register is never misled by what went (see the implementations).
    /// Checkpoints keep their roots themselves and are not concerned. The
    /// default keeps everything.
    async fn prune_history(&self, retention: &RootRetention) -> Result<PruneReport> {
        let _ = retention;
        Ok(PruneReport {
            removed: 0,
            kept: self.history(usize::MAX).await?.len() as u64,
        })
    }
}
