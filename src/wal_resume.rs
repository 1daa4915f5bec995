//! Continuing a WAL across process runs: a space does not get a new WAL
//! file per process.
//!
//! A standalone storage opened for writing (file variant; any WAL store
//! whose [`WalStore::continues_wals`] is true) looks for a WAL an earlier
//! process left and continues it instead of creating one. Without this,
//! every open/push/close cycle (every `protobase put`) left a WAL file.
//!
//! # Which WAL
//!
//! A *candidate* is a WAL of the store that
//!
//! - is shorter than `max_wal_size` (room left),
//! - has a valid native header naming itself, with
//!   [`crate::record::HEADER_FLAG_CONTINUABLE`]:
//!   its writer held it exclusively. Reference-format WALs (written by the
//!   Python implementation) and WALs of earlier versions (whose writers did
//!   not lock them, so one may still be running) are never appended to, nor
//!   are WALs without a whole header (an empty file may be a WAL such a
//!   writer has just created);
//! - can be verified cheaply: at most [`SCAN_BUDGET`] bytes are scanned,
//!   counted from the current root's record when the root points into the
//!   WAL (a published root names a durable record, and everything before it
//!   was synced with it), from the header otherwise.
//!
//! The root's WAL comes first (the usual open → push → commit → close
//! cycle continues the WAL of its last commit), then the others, largest
//! first; at most [`MAX_CANDIDATES`] are tried.
//!
//! # Safely
//!
//! 1. *One writer.* The store must give the WAL to one writer only
//!    ([`WalStore::reopen_wal`]; the file store takes an exclusive `flock`
//!    on the WAL file, and holds one on every WAL it creates, until the WAL
//!    is closed or the process ends). A WAL that another process (or
//!    another storage of this process) is writing is skipped. Everything
//!    below happens under that lock, so no one appends between the scan and
//!    the fence.
//! 2. *Verify.* The WAL is scanned with [`crate::scan`] from the known
//!    record boundary to its end. A whole WAL is continued at its end.
//! 3. *Never below the root.* When the current root points into the WAL and
//!    its record is not a valid record of the scan, the WAL is damaged below
//!    the root: the open fails with [`Error::RootPastWalEnd`] and nothing is
//!    written (a read-only open still works, to inspect it).
//! 4. *Closed WALs are never repaired.* A writer that closes a WAL it may
//!    continue later ends it with a *close mark*: a skip record with no gap
//!    (the next writer writes over it). Every byte of such a WAL was synced,
//!    so an unreadable record in it is damage (bit rot, an outside write),
//!    never a crash's torn tail: the WAL is left as it is, for
//!    `protobase verify` and the operator, and the engine starts a new one.
//!    Only a WAL without the mark — its writer crashed — has a torn tail.
//! 5. *A torn tail is fenced, not cut.* Behind the first record a crashed
//!    WAL cannot read, the writer's first bytes are a skip record (see
//!    [`crate::record`]) whose gap covers everything up to the old end of the
//!    file; new records start after the old end of the file. Nothing
//!    is truncated and no offset is ever used twice: a pointer that a
//!    crashed process handed out for a record that never became durable
//!    reads an error (or, if the record did reach the disk whole, that
//!    record) — never a different record. A scan follows the skip record
//!    and never reads the fenced bytes. The fence is written and synced
//!    with the first records, like any other bytes: a crash before that
//!    leaves the same torn tail, fenced again by the next process.
//!
//! Records before the valid end are untouched, so every pointer to a
//! durable record stays valid.
//!
//! Cluster nodes and cloud providers keep starting a new WAL per process:
//! peers and cache directories may hold copies of a cluster WAL's torn
//! tail, and cloud slots are sealed objects.

use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::record::{self, HEADER_FLAG_CONTINUABLE, SKIP_RECORD_LEN, WAL_HEADER_LEN, WalKind};
use crate::scan::scan_wal_from;
use crate::types::{RootRecord, WalId};
use crate::wal_store::{WalInfo, WalStore};

/// Most bytes scanned to verify a WAL before continuing it (64 MiB).
pub const SCAN_BUDGET: u64 = 64 << 20;

/// Most WALs tried before creating a new one.
pub const MAX_CANDIDATES: usize = 4;

/// A WAL taken over for appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Continued {
    /// The WAL.
    pub(crate) id: WalId,
    /// The end of its valid records: the writer's next bytes go here.
    pub(crate) end: u64,
    /// When a torn tail follows `end`: the WAL's length. The writer's first
    /// bytes are then a skip record whose gap reaches past it.
    pub(crate) fence_to: Option<u64>,
    /// Its barrier alignment.
    pub(crate) alignment: u64,
}

/// Finds a WAL of `store` to continue and verifies it (see the
/// [module docs](self)). `Ok(None)`: none; create a new one.
pub(crate) async fn continue_wal(
    store: &dyn WalStore,
    root: Option<&RootRecord>,
    max_wal_size: u64,
    limit: u64,
) -> Result<Option<Continued>> {
    if !store.continues_wals() {
        return Ok(None);
    }
    let root_at = root.map(|r| r.pointer);
    let start_of = |w: &WalInfo| match root_at {
        Some(p) if p.wal_id == w.id => p.offset,
        _ => WAL_HEADER_LEN,
    };
    let mut candidates: Vec<WalInfo> = store
        .list_wals()
        .await?
        .into_iter()
        .filter(|w| {
            w.len >= WAL_HEADER_LEN
                && w.len < max_wal_size
                && w.len.saturating_sub(start_of(w)) <= SCAN_BUDGET
        })
        .collect();
    let is_root = |w: &WalInfo| root_at.is_some_and(|p| p.wal_id == w.id);
    candidates.sort_by_key(|w| (!is_root(w), std::cmp::Reverse(w.len), w.id));
    for w in candidates.into_iter().take(MAX_CANDIDATES) {
        let new = match store.reopen_wal(w.id).await {
            Ok(Some(new)) => new,
            Ok(None) => {
                debug!(wal = %w.id, "WAL held by another writer: not continued");
                continue;
            }
            Err(e) => {
                warn!(wal = %w.id, error = %e, "cannot take the WAL over: not continued");
                continue;
            }
        };
        let root_offset = root_at.filter(|p| p.wal_id == w.id).map(|p| p.offset);
        match verify(store, w.id, start_of(&w), root_offset, limit).await {
            Ok(Some((end, fence_to))) => {
                // What the last writer left may never have been synced (its
                // commits may have carried their bytes with the root
                // instead): the writer takes everything below `end` as
                // durable.
                if let Err(e) = store.sync(w.id, end).await {
                    warn!(wal = %w.id, error = %e, "syncing the WAL failed: not continued");
                    store.close_wal(w.id).await?;
                    continue;
                }
                debug!(wal = %w.id, end, ?fence_to, "continuing WAL");
                return Ok(Some(Continued {
                    id: w.id,
                    end,
                    fence_to,
                    alignment: new.barrier_alignment.max(1),
                }));
            }
            Ok(None) => store.close_wal(w.id).await?,
            Err(e @ Error::RootPastWalEnd { .. }) => {
                let _ = store.close_wal(w.id).await;
                return Err(e);
            }
            Err(e) => {
                // Not continued (nothing was written): a new WAL instead.
                warn!(wal = %w.id, error = %e, "verifying the WAL failed: not continued");
                store.close_wal(w.id).await?;
            }
        }
    }
    Ok(None)
}

/// Scans `wal` (held by us) from `start`: `Some((where the writer resumes,
/// torn tail's end if one must be fenced))`, or `None` when it must not be
/// continued.
async fn verify(
    store: &dyn WalStore,
    wal: WalId,
    start: u64,
    root_offset: Option<u64>,
    limit: u64,
) -> Result<Option<(u64, Option<u64>)>> {
    let head = store.read(wal, 0, WAL_HEADER_LEN).await?;
    let flags = record::native_header_flags(wal, &head);
    if flags.is_none_or(|f| f & HEADER_FLAG_CONTINUABLE == 0) {
        return Ok(None);
    }
    let scan = scan_wal_from(store, wal, start, limit, false, |_| {}).await?;
    if scan.report.kind != Some(WalKind::Native) {
        return Ok(None);
    }
    let len = scan.report.len;
    let problem = scan.first_problem();
    if let Some(root_offset) = root_offset
        && scan.first_valid != Some(root_offset)
    {
        return Err(Error::RootPastWalEnd {
            wal,
            root_offset,
            valid_end: problem.unwrap_or(len),
        });
    }
    let Some(problem) = problem else {
        // Whole: continue at its end, over its close mark if it has one.
        return Ok(Some((scan.report.close_mark.unwrap_or(len), None)));
    };
    if ends_with_close_mark(store, wal, len).await? {
        // Closed by its writer, so every byte was synced: what cannot be
        // read is damage, not a crash's torn tail. (The scan did not reach
        // the mark, so these 13 bytes may also be the end of a record that
        // looks like one: leaving the WAL alone is right either way.)
        warn!(%wal, offset = problem, "damaged WAL: left as it is, not continued");
        return Ok(None);
    }
    warn!(
        %wal,
        valid_end = problem,
        len,
        "fencing the torn tail of a crashed WAL before continuing it"
    );
    Ok(Some((problem, Some(len))))
}

/// Whether the last bytes of `wal` are a close mark (a skip record with no
/// gap).
async fn ends_with_close_mark(store: &dyn WalStore, wal: WalId, len: u64) -> Result<bool> {
    let Some(at) = len
        .checked_sub(SKIP_RECORD_LEN)
        .filter(|at| *at >= WAL_HEADER_LEN)
    else {
        return Ok(false);
    };
    let tail = store.read(wal, at, SKIP_RECORD_LEN).await?;
    Ok(record::decode_skip(&tail) == Ok(Some(0)))
}
