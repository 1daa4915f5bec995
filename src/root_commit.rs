//! Root updates: the exclusive critical section and group commit.
//!
//! An update runs `acquire → read current → publish → release`. Acquiring
//! takes an in-process lock (updaters of this process queue here) and, when
//! this process does not already hold them, the register's root lock and a
//! grant from the [`VoteStrategy`]; on a fresh acquisition the current root
//! is read again (from what the grant established, or the register), since
//! another process or node may have published.
//!
//! Publishing makes the new root the current one *in memory* and releases
//! the in-process lock at once, so the next updater builds on it; the
//! publisher then waits until a root at least as new is durable. A
//! *flusher* task makes roots durable: it makes every pushed byte durable,
//! then writes the newest root to the register with a compare-and-swap on
//! the version it last wrote — one write covering every update published so
//! far (group commit). When few pushed bytes are not durable yet, it hands
//! them to the register with the root instead
//! ([`RootRegister::write_root_carrying`]): a register sharing a disk with
//! the WALs (a space directory's root log) makes both durable with one
//! device flush; the others decline, and the WALs are synced first. The
//! publisher that starts the flusher runs it in its own task until its root
//! is durable (a lone commit then needs no hand-off between tasks); what is
//! left of it goes on on a task of its own.
//!
//! When the last update lets go, a grant without a lease (and the root
//! lock) lingers `LINGER` (1 ms) for the next update of this process, which then
//! skips acquiring and reading the register; only while the grant is young
//! (`LINGER_MAX_HOLD`, 10 ms), so that other writers get their turn. Leased
//! grants are given back to their strategy, which may keep them itself
//! (the cluster's leader lease); `close` ends both at once.
//!
//! # Cancellation
//!
//! Every await of an update is cancel-safe. What an update holds (its place
//! in the critical section, its share of the grant and lock) is released
//! synchronously when its future or guard is dropped; the last holder's
//! release gives the grant back in a spawned task. A publish that is
//! dropped while its root is being made durable leaves that work to the
//! flusher, which then goes on on its own task and holds the grant until it
//! is done: a root is never left half-written because its caller went away.
//!
//! # Failures
//!
//! When making roots durable fails, every root published since the last
//! durable one is abandoned: its publisher gets the error, and updates still
//! open that built on it fail when they publish. A failure of the register
//! write leaves its outcome unknown (the root may be stored), so the grant
//! is then given back and the next update acquires it afresh and reads the
//! register again.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedMutexGuard};
use tracing::debug;

use crate::error::{Error, Result};
use crate::root_register::{RootLock, RootRegister, RootVersion, VersionedRoot};
use crate::signal::Signal;
use crate::types::{AtomPointer, RootRecord};
use crate::vote::{Grant, VoteStrategy};
use crate::wal_writer::WalWriter;

/// Most scheduler passes a flusher waits for publishes to gather before
/// its next write.
const GATHER_YIELDS: usize = 16;
/// Most WAL bytes a root write carries (see [`RootCommitter::store`]);
/// more are synced in the WAL first.
const CARRY_LIMIT: usize = 2 << 10;
/// How long an idle grant without a lease (and the register's root lock)
/// stays with this process before it is given back: an update that comes
/// within it skips acquiring them and reading the register again.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);
/// A grant held longer than this since it was acquired no longer lingers:
/// it is given back as soon as it is idle, so that other processes (the
/// register's root lock) and updaters get their turn.
const LINGER_MAX_HOLD: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Default)]
struct State {
    /// Open updates, publishes waiting for durability, and a running flusher.
    holds: usize,
    grant: Option<Grant>,
    lock: Option<RootLock>,
    /// Newest published root of this epoch (maybe not durable yet).
    current: Option<RootRecord>,
    /// Newest durable root of this epoch, with its register version.
    durable: Option<VersionedRoot>,
    /// Incremented whenever the published-but-not-durable roots are abandoned.
    epoch: u64,
    /// Why the previous epoch ended.
    failure: Option<(u64, Arc<Error>)>,
    /// The register may hold a root this process does not know: the grant
    /// must be acquired again (once nothing holds it) before the next update.
    stale: bool,
    /// A flusher task is running.
    flushing: bool,
    /// Since when the grant has had no holder (it lingers, see [`LINGER`]).
    idle_since: Option<tokio::time::Instant>,
    /// When the grant was acquired (see [`LINGER_MAX_HOLD`]).
    acquired_at: Option<tokio::time::Instant>,
    /// A task waits to give a lingering grant back.
    lingering: bool,
    /// The storage is closing: grants no longer linger.
    closed: bool,
    /// Making roots durable failed since the grant was taken: it does not
    /// linger (a failing disk or store should not keep others waiting).
    failed: bool,
}

impl State {
    fn durable_seq(&self) -> Option<u64> {
        self.durable.as_ref().map(|d| d.root.sequence)
    }

    /// Takes the grant and the root lock out (to give them back).
    fn take_out(&mut self) -> (Option<Grant>, Option<RootLock>) {
        self.idle_since = None;
        (self.grant.take(), self.lock.take())
    }

    /// Ends the epoch after a failed flush: its published but not durable
    /// roots are abandoned (their publishers get `error`), and the next
    /// update acquires the grant again if the register may hold a root
    /// this process does not know (`maybe_stored`).
    fn abandon(&mut self, error: Error, maybe_stored: bool) {
        self.stale |= maybe_stored;
        self.failed = true;
        self.failure = Some((self.epoch, Arc::new(error)));
        self.epoch += 1;
        self.current = self.durable.as_ref().map(|d| d.root.clone());
        self.flushing = false;
    }
}

/// State shared with the guards and the flusher.
struct Shared {
    state: Mutex<State>,
    /// Bumped whenever a root becomes durable or an epoch ends.
    progress: Signal,
    /// Signalled when the last hold is released.
    idle: Notify,
    vote: Arc<dyn VoteStrategy>,
}

impl Shared {
    fn bump(&self) {
        self.progress.bump();
    }

    /// Gives a grant back (waiting for the strategy; should this future be
    /// dropped, the release finishes on its own), then the root lock.
    async fn hand_back(&self, (grant, lock): (Option<Grant>, Option<RootLock>)) {
        if let Some(g) = grant {
            let mut pending = PendingGrant {
                vote: self.vote.clone(),
                grant: Some(g.clone()),
            };
            if let Err(e) = self.vote.release(&g).await {
                debug!(error = %e, term = g.term, "releasing grant failed; its lease will expire");
            }
            pending.grant = None;
        }
        drop(lock);
        self.idle.notify_waiters();
    }

    /// Gives the root lock back now, and the grant without waiting for
    /// the strategy (from a `Drop`).
    fn hand_back_now(&self, (grant, lock): (Option<Grant>, Option<RootLock>)) {
        drop(lock);
        self.idle.notify_waiters();
        if let Some(g) = grant {
            release_in_background(self.vote.clone(), g);
        }
    }
}

/// One share of the grant and the root lock; released when dropped.
struct Hold {
    shared: Option<Arc<Shared>>,
}

impl Hold {
    /// Takes a share; the caller has checked that a grant is held.
    fn take(shared: &Arc<Shared>, st: &mut State) -> Hold {
        st.holds += 1;
        st.idle_since = None;
        Hold {
            shared: Some(shared.clone()),
        }
    }

    /// Gives a share back; the last one takes the grant and lock out,
    /// unless they may linger (then `None`, and a task gives them back
    /// once idle for [`LINGER`]).
    fn give_back(shared: &Arc<Shared>) -> Option<(Option<Grant>, Option<RootLock>)> {
        let mut st = shared.state.lock();
        st.holds = st.holds.saturating_sub(1);
        if st.holds > 0 {
            return None;
        }
        // Only a grant without a lease lingers (a leased one could expire
        // while idle; the strategy reuses those itself if it can), and not
        // one that may be stale.
        let linger = !st.stale
            && !st.failed
            && !st.closed
            && st.grant.as_ref().is_some_and(|g| g.expires_at.is_none())
            // A register without a lock (an object store) may be written
            // by other processes any time: read it again per update.
            && st.lock.as_ref().is_some_and(|l| !l.guards_nothing())
            && st
                .acquired_at
                .is_some_and(|t| t.elapsed() < LINGER_MAX_HOLD)
            && tokio::runtime::Handle::try_current().is_ok();
        if linger {
            st.idle_since = Some(tokio::time::Instant::now());
            if !st.lingering {
                st.lingering = true;
                tokio::spawn(give_back_when_idle(shared.clone()));
            }
            return None;
        }
        st.stale = false;
        st.failed = false;
        Some(st.take_out())
    }

    /// Gives the share back; the last one releases the grant (waiting for
    /// the strategy), then the root lock.
    async fn finish(mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        if let Some(taken) = Self::give_back(&shared) {
            shared.hand_back(taken).await;
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        if let Some(taken) = Self::give_back(&shared) {
            shared.hand_back_now(taken);
        }
    }
}

/// Gives a lingering grant and root lock back once nothing has held them
/// for [`LINGER`]; ends early when a holder takes them meanwhile (the next
/// one to let go starts another).
async fn give_back_when_idle(shared: Arc<Shared>) {
    // Should this task end early (its runtime shut down, or no timer to
    // sleep on), what it was to give back is given back at once.
    let mut guard = LingerGuard(Some(shared.clone()));
    let taken = loop {
        let wait = {
            let mut st = shared.state.lock();
            match st.idle_since {
                Some(since) if st.holds == 0 && st.grant.is_some() => {
                    let idle = since.elapsed();
                    if idle >= LINGER {
                        st.lingering = false;
                        break st.take_out();
                    }
                    LINGER - idle
                }
                _ => {
                    st.lingering = false;
                    return;
                }
            }
        };
        tokio::time::sleep(wait).await;
    };
    guard.0 = None;
    shared.hand_back(taken).await;
}

/// Dropped with [`give_back_when_idle`] unfinished: gives an idle
/// lingering grant and lock back at once, and (after a panic: no timer)
/// keeps grants from lingering again.
struct LingerGuard(Option<Arc<Shared>>);

impl Drop for LingerGuard {
    fn drop(&mut self) {
        let Some(shared) = self.0.take() else {
            return;
        };
        let taken = {
            let mut st = shared.state.lock();
            st.lingering = false;
            if std::thread::panicking() {
                st.closed = true;
            }
            if st.holds > 0 {
                return;
            }
            st.take_out()
        };
        shared.hand_back_now(taken);
    }
}

/// A flusher's future ([`RootCommitter::flush`]).
type Flusher = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A flusher run in a publisher's task; dropped unfinished, it goes on on a
/// task of its own (a root is never left half-written because its
/// publisher went away).
struct Detached(Option<Flusher>, Option<tokio::runtime::Handle>);

impl Drop for Detached {
    fn drop(&mut self) {
        // A flusher that panicked is not polled again (its guard has ended
        // the epoch); one dropped where no runtime is found ends the same
        // way ([`FlushGuard`]).
        if let (Some(f), Some(rt)) = (self.0.take(), self.1.take())
            && !std::thread::panicking()
        {
            rt.spawn(f);
        }
    }
}

/// Dropped with a flusher unfinished (its task or runtime went away, or
/// it panicked): ends the epoch, so that its roots' publishers get an error
/// instead of waiting for ever, and the next update reads the register
/// again (a register write may have been cut short).
struct FlushGuard(Option<Arc<Shared>>);

impl Drop for FlushGuard {
    fn drop(&mut self) {
        let Some(shared) = self.0.take() else {
            return;
        };
        let error = Error::io(
            "making roots durable",
            std::io::Error::other("the flusher was dropped before it finished"),
        );
        // A register write may have been cut short.
        shared.state.lock().abandon(error, true);
        shared.bump();
    }
}

/// Gives a grant back without making anyone wait for it.
fn release_in_background(vote: Arc<dyn VoteStrategy>, grant: Grant) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            if let Err(e) = vote.release(&grant).await {
                debug!(error = %e, term = grant.term, "releasing grant failed; its lease will expire");
            }
        });
    }
}

/// Releases a grant obtained but not yet installed, unless defused.
struct PendingGrant {
    vote: Arc<dyn VoteStrategy>,
    grant: Option<Grant>,
}

impl Drop for PendingGrant {
    fn drop(&mut self) {
        if let Some(g) = self.grant.take() {
            release_in_background(self.vote.clone(), g);
        }
    }
}

pub(crate) struct RootCommitter {
    register: Arc<dyn RootRegister>,
    vote: Arc<dyn VoteStrategy>,
    writer: Arc<WalWriter>,
    node_id: String,
    section: Arc<tokio::sync::Mutex<()>>,
    acquire: tokio::sync::Mutex<()>,
    shared: Arc<Shared>,
    metrics: crate::metrics::CommitMetrics,
}

impl RootCommitter {
    pub(crate) fn new(
        register: Arc<dyn RootRegister>,
        vote: Arc<dyn VoteStrategy>,
        writer: Arc<WalWriter>,
        node_id: String,
    ) -> Self {
        RootCommitter {
            register,
            vote: vote.clone(),
            writer,
            node_id,
            section: Arc::default(),
            acquire: tokio::sync::Mutex::new(()),
            shared: Arc::new(Shared {
                state: Mutex::default(),
                progress: Signal::default(),
                idle: Notify::new(),
                vote,
            }),
            metrics: crate::metrics::CommitMetrics::new(),
        }
    }

    /// Makes `target` durable with everything it reaches: the WAL bytes
    /// carried by the register's write when it can (one flush for both),
    /// else the WALs synced, then the register written. The flag: whether
    /// the register was written to (a failure may have stored the root).
    async fn store(
        &self,
        target: &RootRecord,
        expected: Option<RootVersion>,
    ) -> (Result<RootVersion>, bool) {
        // A register that does not carry declines at once (the chunks
        // handed to the store here are what the sync below writes anyway).
        match self.writer.carry(CARRY_LIMIT).await {
            Err(e) => return (Err(e), false),
            Ok(None) => {}
            Ok(Some(carried)) => {
                match self
                    .register
                    .write_root_carrying(target, expected, &carried.bytes)
                    .await
                {
                    Ok(Some(version)) => {
                        self.writer.carried(&carried);
                        return (Ok(version), true);
                    }
                    Ok(None) => {}
                    Err(e) => return (Err(e), true),
                }
            }
        }
        // Everything a published root can reach was pushed before it.
        if let Err(e) = self.writer.sync_all().await {
            return (Err(e), false);
        }
        (self.register.write_root(target, expected).await, true)
    }

    /// The strategy that hands out grants.
    pub(crate) fn vote(&self) -> &Arc<dyn VoteStrategy> {
        &self.vote
    }

    /// The id roots published here name as their writer.
    pub(crate) fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Makes every byte pushed so far durable (what a root handed to
    /// another node reaches).
    pub(crate) async fn sync_pushed(&self) -> Result<()> {
        self.writer.sync_all().await
    }

    /// The newest durable root: a linearizable read of the register.
    pub(crate) async fn read_current(&self) -> Result<Option<RootRecord>> {
        Ok(self.register.read_root().await?.map(|v| v.root))
    }

    /// A share of the grant, acquiring it (and the root lock) when this
    /// process holds none.
    async fn hold_grant(&self) -> Result<(Hold, Grant)> {
        loop {
            let idle = {
                let mut st = self.shared.state.lock();
                if let Some(g) = st.grant.clone()
                    && !st.stale
                {
                    return Ok((Hold::take(&self.shared, &mut st), g));
                }
                // Register interest before checking, so no wake-up is lost.
                let idle = self.shared.idle.notified();
                (st.holds > 0).then_some(idle)
            };
            if let Some(idle) = idle {
                // A stale grant is still held by updates finishing: wait for
                // the last one, then acquire afresh.
                idle.await;
                continue;
            }
            let _one = self.acquire.lock().await;
            {
                let st = self.shared.state.lock();
                if st.holds > 0 || st.grant.is_some() {
                    continue; // someone else acquired (or is finishing) meanwhile
                }
            }
            let lock = self.register.lock_root().await?;
            let grant = self.vote.acquire().await?;
            self.metrics.grants.increment(1);
            let mut pending = PendingGrant {
                vote: self.vote.clone(),
                grant: Some(grant.clone()),
            };
            let base = match grant.established_root.clone() {
                Some(base) => base,
                None => self.register.read_root_to_update().await?,
            };
            if let Some(b) = &base
                && grant.term > 0
                && b.root.term > grant.term
            {
                return Err(Error::NotGranted(format!(
                    "grant of term {} is superseded: the root is of term {}",
                    grant.term, b.root.term
                )));
            }
            let mut st = self.shared.state.lock();
            st.current = base.as_ref().map(|b| b.root.clone());
            st.durable = base;
            st.lock = Some(lock);
            st.grant = Some(grant.clone());
            st.acquired_at = Some(tokio::time::Instant::now());
            pending.grant = None;
            return Ok((Hold::take(&self.shared, &mut st), grant));
        }
    }

    /// Opens the critical section.
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<RootUpdate> {
        let section = self.section.clone().lock_owned().await;
        let (hold, grant) = self.hold_grant().await?;
        let (current, epoch) = {
            let st = self.shared.state.lock();
            (st.current.clone(), st.epoch)
        };
        Ok(RootUpdate {
            committer: Some(self.clone()),
            section: Some(section),
            hold: Some(hold),
            grant,
            epoch,
            current,
        })
    }

    /// Makes roots durable until none is pending; runs on its own task.
    async fn flush(self: Arc<Self>, _hold: Hold) {
        let mut guard = FlushGuard(Some(self.shared.clone()));
        self.flush_rounds().await;
        guard.0 = None;
    }

    /// The rounds of [`flush`](Self::flush).
    async fn flush_rounds(&self) {
        loop {
            let (target, expected, epoch) = {
                let mut st = self.shared.state.lock();
                let pending = match (&st.current, &st.durable) {
                    (Some(c), Some(d)) => c != &d.root,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if !pending {
                    st.flushing = false;
                    drop(st);
                    self.shared.bump();
                    return;
                }
                let target = st.current.clone().unwrap_or_else(|| unreachable!());
                (target, st.durable.as_ref().map(|d| d.version), st.epoch)
            };
            let (written, register_tried) = self.store(&target, expected).await;
            let mut gather = false;
            let ended = {
                let mut st = self.shared.state.lock();
                match written {
                    Ok(version) if st.epoch == epoch => {
                        // Roots this one write made durable (group commit).
                        let batch =
                            target.sequence - st.durable_seq().unwrap_or(0).min(target.sequence);
                        self.metrics.batch.record(batch as f64);
                        st.durable = Some(VersionedRoot {
                            root: target,
                            version,
                        });
                        gather = batch > 1;
                        false
                    }
                    Ok(_) => false,
                    Err(e) => {
                        debug!(error = %e, root = ?target, "making roots durable failed");
                        // Only a failed register write can have stored
                        // something this process does not know.
                        st.abandon(e, register_tried);
                        true
                    }
                }
            };
            self.shared.bump();
            if ended {
                return;
            }
            // After a group, let the publishers just woken publish again
            // before the next write, so that it covers them too (bigger
            // groups): yield while publishes keep coming, a bounded number
            // of times. A lone publisher is not kept waiting.
            let published = || {
                self.shared
                    .state
                    .lock()
                    .current
                    .as_ref()
                    .map(|r| r.sequence)
            };
            for _ in 0..if gather { GATHER_YIELDS } else { 0 } {
                let before = published();
                tokio::task::yield_now().await;
                if published() == before {
                    break;
                }
            }
        }
    }

    /// Gives a lingering grant and root lock back now, and keeps later
    /// ones from lingering (at `close`).
    pub(crate) async fn let_go(&self) {
        let taken = {
            let mut st = self.shared.state.lock();
            st.closed = true;
            if st.holds > 0 {
                // The last holder gives them back (nothing lingers now).
                (None, None)
            } else {
                st.take_out()
            }
        };
        self.shared.hand_back(taken).await;
        self.vote.let_go().await;
    }

    /// Waits until no flusher runs (every published root is durable or
    /// abandoned).
    pub(crate) async fn drain(&self) {
        let state = &self.shared.state;
        self.shared
            .progress
            .wait_for(|| (!state.lock().flushing).then_some(()))
            .await;
    }

    /// Waits until `record` (published in `epoch`) is durable.
    async fn wait_durable(&self, record: &RootRecord, epoch: u64) -> Result<()> {
        let state = &self.shared.state;
        self.shared
            .progress
            .wait_for(|| {
                let st = state.lock();
                if st.epoch != epoch {
                    return Some(Err(abandoned(record, &st, epoch)));
                }
                st.durable_seq()
                    .is_some_and(|d| d >= record.sequence)
                    .then_some(Ok(()))
            })
            .await
    }
}

/// The error for a root of `epoch` that will never be durable.
fn abandoned(record: &RootRecord, st: &State, epoch: u64) -> Error {
    let source = match &st.failure {
        Some((e, err)) if *e == epoch => err.clone(),
        _ => Arc::new(Error::NotGranted(
            "an earlier root this update built on was not committed".into(),
        )),
    };
    Error::CommitFailed {
        sequence: record.sequence,
        source,
    }
}

/// An open root-update critical section.
///
/// Obtained from [`Storage::begin_root_update`](crate::Storage::begin_root_update).
/// [`publish`](Self::publish) ends it with a new root; dropping it (or
/// [`abort`](Self::abort)) ends it without one.
pub struct RootUpdate {
    committer: Option<Arc<RootCommitter>>,
    section: Option<OwnedMutexGuard<()>>,
    hold: Option<Hold>,
    grant: Grant,
    epoch: u64,
    current: Option<RootRecord>,
}

impl std::fmt::Debug for RootUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootUpdate")
            .field("term", &self.grant.term)
            .field("current", &self.current)
            .finish()
    }
}

impl RootUpdate {
    /// The root this update builds on (the newest published, possibly still
    /// being made durable by an earlier update of this process).
    ///
    /// A successful [`publish`](Self::publish) proves it was the newest root.
    /// Before that it is the newest this process could see when it took the
    /// grant: on an object store whose root history another process prunes,
    /// it may be older (the publish then fails, its outcome unknown); for a
    /// linearizable read use
    /// [`Storage::read_current_root`](crate::Storage::read_current_root).
    pub fn current(&self) -> Option<&RootRecord> {
        self.current.as_ref()
    }

    /// The fencing term of the grant held.
    pub fn term(&self) -> u64 {
        self.grant.term
    }

    /// Publishes `pointer` as the new root and returns once it is durable
    /// (together with every byte pushed before it).
    ///
    /// An error means the root is not acknowledged. When the register write
    /// itself failed, its outcome is unknown: the root may be stored, and
    /// the next update (which reads the register again) may build on it.
    /// Dropping the returned future does not stop the root from becoming
    /// durable: the commit finishes on its own. While it is pending, the
    /// future may be making other updates' roots durable too: poll it to
    /// the end or drop it (one kept but no longer polled holds them up).
    pub async fn publish(self, pointer: AtomPointer) -> Result<RootRecord> {
        self.publish_as(pointer, None).await
    }

    /// [`publish`](Self::publish) of a root whose atom another member wrote
    /// (`writer`: the root names it, as its WAL holds the bytes), or this
    /// node's (`None`).
    #[tracing::instrument(level = "debug", skip_all, fields(term = self.grant.term, wal = %pointer.wal_id, offset = pointer.offset))]
    pub(crate) async fn publish_as(
        self,
        pointer: AtomPointer,
        writer: Option<String>,
    ) -> Result<RootRecord> {
        let start = std::time::Instant::now();
        let metrics = self.committer.as_ref().map(|c| c.metrics.clone());
        let r = self.publish_unmetered(pointer, writer).await;
        if let Some(m) = metrics {
            m.seconds.record(crate::metrics::since(start));
            match &r {
                Ok(_) => m.ok.increment(1),
                Err(_) => m.failed.increment(1),
            }
        }
        r
    }

    async fn publish_unmetered(
        mut self,
        pointer: AtomPointer,
        writer: Option<String>,
    ) -> Result<RootRecord> {
        let Some(c) = self.committer.take() else {
            return Err(Error::Closed);
        };
        let hold = self.hold.take();
        let (record, start_flusher) = {
            let mut st = c.shared.state.lock();
            if st.epoch != self.epoch {
                let placeholder = RootRecord::new(pointer, 0, self.grant.term, None);
                return Err(abandoned(&placeholder, &st, self.epoch));
            }
            let base = st.current.as_ref();
            let term = match (self.grant.term, base) {
                // No fencing: keep the order of the root built on.
                (0, b) => b.map_or(0, |r| r.term),
                (t, _) => t,
            };
            let sequence = match base {
                None => 1,
                Some(r) => r.sequence.checked_add(1).ok_or_else(|| {
                    Error::invalid("root", "sequence space exhausted (u64::MAX roots)")
                })?,
            };
            let writer = writer.unwrap_or_else(|| c.node_id.clone());
            let record = RootRecord::new(pointer, sequence, term, Some(writer));
            st.current = Some(record.clone());
            let start = !st.flushing;
            st.flushing = true;
            let flusher_hold = start.then(|| Hold::take(&c.shared, &mut st));
            (record, flusher_hold)
        };
        // Let the next updater in while this root is made durable.
        self.section = None;
        // The publisher that starts the flusher runs it in its own task
        // until its root is durable (no hand-off between tasks for a lone
        // commit); what remains then, or if this future is dropped, goes on
        // on a task of its own.
        let mut flusher = Detached(
            start_flusher.map(|h| Box::pin(c.clone().flush(h)) as Flusher),
            tokio::runtime::Handle::try_current().ok(),
        );
        let res = {
            let wait = c.wait_durable(&record, self.epoch);
            tokio::pin!(wait);
            loop {
                let Some(f) = flusher.0.as_mut() else {
                    break (&mut wait).await;
                };
                tokio::select! {
                    biased;
                    () = f.as_mut() => flusher.0 = None,
                    r = &mut wait => break r,
                }
            }
        };
        drop(flusher);
        if let Some(h) = hold {
            h.finish().await;
        }
        res.map(|()| record)
    }

    /// Ends the critical section without publishing.
    pub async fn abort(mut self) {
        self.section = None;
        self.committer = None;
        if let Some(h) = self.hold.take() {
            h.finish().await;
        }
    }
}
