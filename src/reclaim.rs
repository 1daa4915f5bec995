//! Reclaiming WALs nothing live points into ([`Storage::reclaim`](crate::Storage::reclaim)).
//!
//! Pointers are physical (WAL id and offset) and live inside atoms the
//! layer above writes, so the storage can neither move a live atom nor
//! know on its own what is live. The caller says what is (the WALs its
//! reachability walk from the roots it keeps found); the storage retires
//! every *other* WAL it holds, except:
//!
//! - the WAL the current root points into, and those the roots of
//!   [checkpoints](crate::checkpoint) point into (a live set without them
//!   is refused: the walk must start from every checkpoint's root too);
//! - WALs this storage's writer holds (the active one, and those whose
//!   bytes are not all durable yet);
//! - WALs written more recently than [`ReclaimOptions::min_age`]: another
//!   process (or node) may be writing atoms there that a root it has not
//!   published yet will point to, and the live set cannot know them;
//! - WALs a writer holds in the store itself (`flock` on a WAL file: the
//!   store refuses with [`Error::WalInUse`]);
//! - in a cluster, WALs any member objects to (the member's own writer,
//!   its root, its readers): every member must answer, or nothing goes.
//!
//! A read of a WAL being retired that started before the retirement
//! finishes first (the retirement waits for it); reads that start after it
//! get [`Error::WalNotFound`]. The caller's live set must cover every root
//! a writer may still build on (the current root, and the roots of
//! transactions still running) and every root it wants to keep readable
//! (roots of the [history](crate::RootRegister::history) to travel back
//! to, and every checkpoint's): what only an older root reaches is gone.
//! The storage itself keeps only the WALs the current root and the
//! checkpoints' roots point into.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::network::NetworkManager;
use crate::page_cache::{PageCache, PageKey};
use crate::protocol::Message;
use crate::types::{RootRecord, WalId};
use crate::wal_store::WalStore;

/// How [`Storage::reclaim`](crate::Storage::reclaim) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReclaimOptions {
    /// Report what would be retired, and retire nothing.
    pub dry_run: bool,
    /// Keep WALs written less than this long ago (default: one hour).
    pub min_age: Duration,
    /// In a cluster, how long each member has to answer (default 10 s);
    /// a member that does not answer stops the whole run.
    pub member_timeout: Duration,
}

impl Default for ReclaimOptions {
    fn default() -> Self {
        ReclaimOptions {
            dry_run: false,
            min_age: Duration::from_secs(3600),
            member_timeout: Duration::from_secs(10),
        }
    }
}

impl ReclaimOptions {
    /// The defaults: retire, keep WALs younger than an hour.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only report what would be retired.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Keep WALs written less than `min_age` ago.
    pub fn min_age(mut self, min_age: Duration) -> Self {
        self.min_age = min_age;
        self
    }

    /// How long each cluster member has to answer.
    pub fn member_timeout(mut self, timeout: Duration) -> Self {
        self.member_timeout = timeout;
        self
    }
}

/// Why a WAL that is not in the live set was kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
#[non_exhaustive]
pub enum KeptBecause {
    /// The current root points into it.
    CurrentRoot,
    /// A checkpoint taken while the run went on points into it (its name).
    Checkpoint(String),
    /// This storage's writer holds it.
    Writing,
    /// Written less than `min_age` ago.
    Recent,
    /// The store refused: a writer holds it (the store's words).
    InUse(String),
    /// A cluster member objects (its id).
    Member(String),
    /// Removing it failed (the error); a later run tries again.
    Failed(String),
}

/// One WAL in a [`ReclaimReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReclaimedWal {
    /// The WAL.
    pub wal: WalId,
    /// Its length when listed.
    pub bytes: u64,
}

/// What [`Storage::reclaim`](crate::Storage::reclaim) did (or, in a dry
/// run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReclaimReport {
    /// Whether this was a dry run (nothing removed).
    pub dry_run: bool,
    /// WALs removed (in a dry run: that would be).
    pub retired: Vec<ReclaimedWal>,
    /// WALs in the live set.
    pub live: usize,
    /// WALs outside the live set that were kept, and why.
    pub kept: Vec<(ReclaimedWal, KeptBecause)>,
    /// Live WALs the store does not hold (a pointer into one of them would
    /// not read).
    pub missing_live: Vec<WalId>,
}

impl ReclaimReport {
    /// Bytes retired (or that would be).
    pub fn retired_bytes(&self) -> u64 {
        self.retired.iter().map(|w| w.bytes).sum()
    }

    /// WALs whose removal failed.
    pub fn failed(&self) -> impl Iterator<Item = &(ReclaimedWal, KeptBecause)> {
        self.kept
            .iter()
            .filter(|(_, why)| matches!(why, KeptBecause::Failed(_)))
    }
}

/// Whether `modified` is within `min_age` of `now` (a time in the future,
/// a clock stepped back, counts as recent).
pub(crate) fn is_recent(modified: SystemTime, now: SystemTime, min_age: Duration) -> bool {
    match now.duration_since(modified) {
        Ok(age) => age < min_age,
        Err(_) => true,
    }
}

/// Reads in flight per WAL, and the WALs being retired: a retirement waits
/// for the reads of its WALs that started before it, and reads that start
/// after it fail with [`Error::WalNotFound`].
#[derive(Debug, Default)]
pub(crate) struct ReadGate {
    state: Mutex<GateState>,
    drained: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct GateState {
    /// Reads running per WAL (entries stay at zero: a read costs one
    /// lookup and no allocation; WAL ids are random, a fast hash is fine).
    reading: HashMap<WalId, usize, foldhash::fast::RandomState>,
    retiring: HashSet<WalId, foldhash::fast::RandomState>,
}

impl GateState {
    fn busy(&self, wal: &WalId) -> bool {
        self.reading.get(wal).is_some_and(|n| *n > 0)
    }
}

/// A read in flight (see [`ReadGate::enter`]).
#[derive(Debug)]
pub(crate) struct ReadPass<'a> {
    gate: &'a ReadGate,
    wal: WalId,
}

impl Drop for ReadPass<'_> {
    fn drop(&mut self) {
        let mut st = self.gate.state.lock();
        if let Some(n) = st.reading.get_mut(&self.wal) {
            *n = n.saturating_sub(1);
            // Only a retirement waits for reads to end.
            let wake = *n == 0 && st.retiring.contains(&self.wal);
            drop(st);
            if wake {
                self.gate.drained.notify_waiters();
            }
        }
    }
}

impl ReadGate {
    /// Registers a read of `wal`, refused while (or after) it is retired.
    pub(crate) fn enter(&self, wal: WalId) -> Result<ReadPass<'_>> {
        let mut st = self.state.lock();
        if st.retiring.contains(&wal) {
            return Err(Error::WalNotFound { wal });
        }
        *st.reading.entry(wal).or_insert(0) += 1;
        Ok(ReadPass { gate: self, wal })
    }

    /// Whether a read of `wal` is running.
    pub(crate) fn is_reading(&self, wal: WalId) -> bool {
        self.state.lock().busy(&wal)
    }

    /// Marks `wals` as retiring and waits until no read of them that
    /// started before is still running. Dropping the returned guard (or
    /// this future) lifts the mark; [`Retiring::done`] keeps it for WALs
    /// that are gone.
    pub(crate) async fn retire(self: &Arc<Self>, wals: &[WalId]) -> Retiring {
        self.state.lock().retiring.extend(wals.iter().copied());
        let guard = Retiring {
            gate: self.clone(),
            wals: wals.to_vec(),
        };
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let busy = {
                let st = self.state.lock();
                wals.iter().any(|w| st.busy(w))
            };
            if !busy {
                return guard;
            }
            drained.await;
        }
    }
}

/// WALs marked as retiring (see [`ReadGate::retire`]).
#[derive(Debug)]
pub(crate) struct Retiring {
    gate: Arc<ReadGate>,
    wals: Vec<WalId>,
}

impl Retiring {
    /// Keeps the mark on `gone` (reads of them fail from now on) and lifts
    /// it from the others.
    pub(crate) fn done(mut self, gone: &HashSet<WalId>) {
        self.wals.retain(|w| !gone.contains(w));
        let mut st = self.gate.state.lock();
        for w in gone {
            st.reading.remove(w);
        }
    }
}

impl Drop for Retiring {
    fn drop(&mut self) {
        let mut st = self.gate.state.lock();
        for w in &self.wals {
            st.retiring.remove(w);
        }
    }
}

/// The cluster members' objections to reclaiming some WALs: `(wal,
/// member, why)`; an error when a member did not answer.
pub(crate) type Objections = Result<Vec<(WalId, String, String)>>;

/// WALs per [`Message::ReclaimQuery`](crate::protocol::Message::ReclaimQuery)
/// (a frame stays far below the transports' limit).
const QUERY_CHUNK: usize = 1_000;

/// Asks every configured member which of `wals` it needs; an error when
/// one does not answer (or answers something else): nothing may go then.
pub(crate) async fn ask_members(
    network: &dyn NetworkManager,
    wals: &[WalId],
    timeout: Duration,
) -> Objections {
    let asked: HashSet<WalId> = wals.iter().copied().collect();
    let mut out = Vec::new();
    for peer in network.peers() {
        for chunk in wals.chunks(QUERY_CHUNK) {
            let msg = Message::ReclaimQuery {
                wals: chunk.to_vec(),
            };
            let refused = |why: String| {
                Error::NoMajority(format!(
                    "member {} did not agree to reclaim WALs ({why}): nothing reclaimed",
                    peer.id
                ))
            };
            match network.request(&peer.id, msg, timeout).await {
                Ok(Message::ReclaimKeep(keep)) => {
                    // Only WALs that were asked about count.
                    out.extend(
                        keep.into_iter()
                            .filter(|(w, _)| asked.contains(w))
                            .map(|(w, why)| (w, peer.id.clone(), why)),
                    );
                }
                Ok(Message::Error { message }) => return Err(refused(message)),
                Ok(other) => return Err(refused(format!("unexpected answer {other:?}"))),
                Err(e) => return Err(refused(e.to_string())),
            }
        }
    }
    Ok(out)
}

/// What [`run`] needs of a storage.
pub(crate) struct Parts<'a> {
    pub(crate) wals: &'a dyn WalStore,
    pub(crate) cache: &'a dyn PageCache,
    pub(crate) page_size: u64,
    pub(crate) gate: &'a Arc<ReadGate>,
    /// Whether this storage's writer holds a WAL.
    pub(crate) writing: &'a (dyn Fn(WalId) -> bool + Send + Sync),
}

/// Retires every WAL of `parts.wals` outside `live` that nothing keeps
/// (see the module docs); `current_root` reads the current root (called
/// before choosing and again just before removing).
pub(crate) async fn run<F, Fut, M, MFut>(
    parts: Parts<'_>,
    live: HashSet<WalId>,
    options: ReclaimOptions,
    current_root: F,
    members: M,
) -> Result<ReclaimReport>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<RootRecord>>>,
    M: FnOnce(Vec<WalId>) -> MFut,
    MFut: std::future::Future<Output = Objections>,
{
    // A walk that forgot the checkpoints would let what only they reach go.
    for cp in parts.wals.checkpoints().await? {
        if !live.contains(&cp.root.pointer.wal_id) {
            return Err(Error::invalid(
                "live set",
                format!(
                    "it does not hold WAL {} of checkpoint {:?}'s root (sequence {}): walk from \
                     every checkpoint's root too (Storage::checkpoints); nothing reclaimed",
                    cp.root.pointer.wal_id, cp.name, cp.root.sequence
                ),
            ));
        }
    }
    let root_wal = current_root().await?.map(|r| r.pointer.wal_id);
    let listed = parts.wals.list_wals().await?;
    let now = SystemTime::now();
    let mut report = ReclaimReport {
        dry_run: options.dry_run,
        ..ReclaimReport::default()
    };
    let held: HashSet<WalId> = listed.iter().map(|w| w.id).collect();
    report.missing_live = live.iter().filter(|w| !held.contains(w)).copied().collect();
    report.missing_live.sort();
    let mut candidates = Vec::new();
    for w in listed {
        let entry = ReclaimedWal {
            wal: w.id,
            bytes: w.len,
        };
        if live.contains(&w.id) {
            report.live += 1;
            continue;
        }
        let kept = if root_wal == Some(w.id) {
            Some(KeptBecause::CurrentRoot)
        } else if (parts.writing)(w.id) {
            Some(KeptBecause::Writing)
        } else {
            match parts.wals.wal_modified(w.id).await {
                Ok(Some(t)) if is_recent(t, now, options.min_age) => Some(KeptBecause::Recent),
                // Unknown: only a min_age of zero lets it go.
                Ok(None) if !options.min_age.is_zero() => Some(KeptBecause::Recent),
                Ok(_) => None,
                // Gone meanwhile.
                Err(Error::WalNotFound { .. }) => continue,
                Err(e) => Some(KeptBecause::Failed(e.to_string())),
            }
        };
        match kept {
            Some(why) => report.kept.push((entry, why)),
            None => candidates.push(entry),
        }
    }
    if !candidates.is_empty() {
        // Every member must answer; one that needs a WAL keeps it.
        let objections = members(candidates.iter().map(|w| w.wal).collect()).await?;
        let mut by_wal: HashMap<WalId, (String, String)> = HashMap::new();
        for (wal, member, why) in objections {
            by_wal.entry(wal).or_insert((member, why));
        }
        let mut chosen = Vec::new();
        for entry in candidates {
            match by_wal.remove(&entry.wal) {
                Some((member, why)) => report
                    .kept
                    .push((entry, KeptBecause::Member(format!("{member}: {why}")))),
                None => chosen.push(entry),
            }
        }
        candidates = chosen;
    }
    if options.dry_run || candidates.is_empty() {
        report.retired = candidates;
        return Ok(report);
    }
    let ids: Vec<WalId> = candidates.iter().map(|w| w.wal).collect();
    let retiring = parts.gate.retire(&ids).await;
    // A root published meanwhile may point into a candidate, and so may a
    // checkpoint taken meanwhile (one of this process waited for the mark
    // above; see `Storage::checkpoint`).
    let root_wal = current_root().await?.map(|r| r.pointer.wal_id);
    // (An error drops `retiring`, which lifts the marks.)
    let pinned = crate::checkpoint::pinned_wals(parts.wals.checkpoints().await?);
    let mut gone = HashSet::new();
    for entry in candidates {
        if root_wal == Some(entry.wal) {
            report.kept.push((entry, KeptBecause::CurrentRoot));
            continue;
        }
        if let Some(name) = pinned.get(&entry.wal) {
            report
                .kept
                .push((entry, KeptBecause::Checkpoint(name.clone())));
            continue;
        }
        if (parts.writing)(entry.wal) {
            report.kept.push((entry, KeptBecause::Writing));
            continue;
        }
        match parts.wals.delete_wal(entry.wal).await {
            Ok(()) | Err(Error::WalNotFound { .. }) => {
                tracing::info!(wal = %entry.wal, bytes = entry.bytes, "WAL reclaimed");
                forget_pages(parts.cache, parts.page_size, &entry).await;
                gone.insert(entry.wal);
                report.retired.push(entry);
            }
            Err(Error::WalInUse { why, .. }) => report.kept.push((entry, KeptBecause::InUse(why))),
            Err(e) => {
                tracing::warn!(wal = %entry.wal, error = %e, "reclaiming a WAL failed");
                report
                    .kept
                    .push((entry, KeptBecause::Failed(e.to_string())));
            }
        }
    }
    retiring.done(&gone);
    Ok(report)
}

/// Drops the pages of a removed WAL from the page cache.
async fn forget_pages(cache: &dyn PageCache, page_size: u64, wal: &ReclaimedWal) {
    if cache.capacity() == 0 || page_size == 0 {
        return;
    }
    let pages = wal.bytes.div_ceil(page_size).max(1);
    for page in 0..pages {
        cache.remove(&PageKey { wal: wal.wal, page }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        assert!(is_recent(now - Duration::from_secs(10), now, hour));
        assert!(!is_recent(now - 2 * hour, now, hour));
        assert!(
            is_recent(now + hour, now, hour),
            "a time ahead of the clock"
        );
        assert!(!is_recent(now, now, Duration::ZERO));
    }

    #[tokio::test]
    async fn a_retirement_waits_for_the_reads_that_started_before_it() {
        let gate = Arc::new(ReadGate::default());
        let (a, b) = (WalId::new_random(), WalId::new_random());
        let pass = gate.enter(a).unwrap();
        let other = gate.enter(b).unwrap();
        let retiring = tokio::spawn({
            let gate = gate.clone();
            async move { gate.retire(&[a]).await }
        });
        tokio::task::yield_now().await;
        // Marked: new reads of `a` are refused; `b` is not concerned.
        while gate.enter(a).is_ok() {
            tokio::task::yield_now().await;
        }
        assert!(!retiring.is_finished());
        drop(other);
        assert!(gate.enter(b).is_ok());
        drop(pass);
        let guard = retiring.await.unwrap();
        assert!(matches!(gate.enter(a), Err(Error::WalNotFound { .. })));
        guard.done(&HashSet::from([a]));
        assert!(gate.enter(a).is_err(), "gone for good");
    }

    #[tokio::test]
    async fn a_dropped_retirement_lifts_its_mark() {
        let gate = Arc::new(ReadGate::default());
        let a = WalId::new_random();
        let pass = gate.enter(a).unwrap();
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.retire(&[a]).await }
        });
        while gate.enter(a).is_ok() {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        drop(pass);
        assert!(gate.enter(a).is_ok(), "cancelled: reads go on");
        let guard = gate.retire(&[a]).await;
        guard.done(&HashSet::new());
        assert!(gate.enter(a).is_ok(), "kept: reads go on");
    }
}
