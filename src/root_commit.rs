//! Root updates: the exclusive critical section and group commit.
//!
//! An update runs `acquire → read current → publish → release`. Acquiring
//! takes an in-process lock (updaters of this process queue here) and, when
//! this process does not already hold them, the provider's root lock and a
//! grant from the [`VoteStrategy`]; on a fresh acquisition the current root
//! is re-read, since another process or node may have published.
//!
//! Publishing makes the new root the current one *in memory* and releases the
//! in-process lock at once, so the next updater builds on it; the publisher
//! then waits until a root at least as new is durable. One waiter at a time
//! writes: it makes every pushed byte durable, writes the newest root with a
//! compare-and-swap, and runs the strategy's accept phase — covering every
//! update published so far (group commit). The provider lock and the grant
//! are held while any update of this process is open or not yet durable, so
//! no other writer can interleave with pending roots.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;
use tracing::debug;

use crate::block_provider::{BlockProvider, RootLock};
use crate::error::{Error, Result};
use crate::types::{AtomPointer, RootRecord};
use crate::vote::{Grant, VoteStrategy};
use crate::wal_writer::WalWriter;

#[derive(Default)]
struct Hold {
    count: usize,
    lock: Option<RootLock>,
    grant: Option<Grant>,
}

#[derive(Default)]
struct Roots {
    /// Newest published root (may not be durable yet).
    current: Option<RootRecord>,
    /// Newest durable root.
    durable: Option<RootRecord>,
}

fn seq(r: &Option<RootRecord>) -> Option<u64> {
    r.as_ref().map(|r| r.sequence)
}

/// Whether root `a` is newer than root `b`.
///
/// Roots published under a fencing term (a cluster grant: term 1 and up) are
/// ordered by `(term, sequence)`, as the cluster's acceptors order them: a
/// root of a later grant supersedes one of an earlier grant even at the same
/// or a higher sequence — such a root was stored somewhere but never
/// acknowledged by a majority, and building on it would drop the
/// acknowledged one. Term 0 (single-node strategies, reference spaces)
/// carries no fencing information: such roots are ordered by sequence, so
/// standalone processes keep following each other on a space whose last
/// root came from a cluster.
fn supersedes(a: &RootRecord, b: &RootRecord) -> bool {
    if a.term == 0 || b.term == 0 {
        a.sequence > b.sequence
    } else {
        (a.term, a.sequence) > (b.term, b.sequence)
    }
}

pub(crate) struct RootCommitter {
    provider: Arc<dyn BlockProvider>,
    vote: Arc<dyn VoteStrategy>,
    writer: Arc<WalWriter>,
    node_id: String,
    section: Arc<tokio::sync::Mutex<()>>,
    hold: tokio::sync::Mutex<Hold>,
    holders: AtomicUsize,
    roots: Mutex<Roots>,
    io: tokio::sync::Mutex<()>,
}

impl RootCommitter {
    pub(crate) fn new(
        provider: Arc<dyn BlockProvider>,
        vote: Arc<dyn VoteStrategy>,
        writer: Arc<WalWriter>,
        node_id: String,
        initial: Option<RootRecord>,
    ) -> Self {
        RootCommitter {
            provider,
            vote,
            writer,
            node_id,
            section: Arc::default(),
            hold: tokio::sync::Mutex::default(),
            holders: AtomicUsize::new(0),
            roots: Mutex::new(Roots {
                current: initial.clone(),
                durable: initial,
            }),
            io: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes the newer of what we know and `seen` (published elsewhere).
    fn adopt(&self, seen: Option<RootRecord>) {
        let Some(seen) = seen else { return };
        let mut r = self.roots.lock();
        if r.durable.as_ref().is_none_or(|d| supersedes(&seen, d)) {
            r.durable = Some(seen.clone());
            r.current = Some(seen);
        }
    }

    /// The newest durable root, refreshed from the provider when this
    /// process is not in the middle of an update.
    pub(crate) async fn read_current(&self) -> Result<Option<RootRecord>> {
        if self.holders.load(Ordering::Acquire) == 0 {
            let disk = self.provider.read_root().await?;
            self.adopt(disk);
        }
        Ok(self.roots.lock().durable.clone())
    }

    async fn enter(&self) -> Result<Grant> {
        let mut h = self.hold.lock().await;
        if h.count == 0 {
            // Nothing of ours is pending: forget roots that never became durable.
            {
                let mut r = self.roots.lock();
                r.current = r.durable.clone();
            }
            let lock = self.provider.lock_root().await?;
            let grant = self.vote.acquire().await?;
            let fresh = async {
                let disk = self.provider.read_root().await?;
                self.adopt(disk);
                self.adopt(grant.latest_root.clone());
                Ok::<_, Error>(())
            }
            .await;
            if let Err(e) = fresh {
                let _ = self.vote.release(&grant).await;
                return Err(e);
            }
            h.lock = Some(lock);
            h.grant = Some(grant);
        }
        h.count += 1;
        self.holders.fetch_add(1, Ordering::AcqRel);
        h.grant
            .clone()
            .ok_or_else(|| Error::NotGranted("grant vanished".into()))
    }

    async fn leave(&self) {
        let mut h = self.hold.lock().await;
        h.count = h.count.saturating_sub(1);
        self.holders.fetch_sub(1, Ordering::AcqRel);
        if h.count == 0 {
            if let Some(g) = h.grant.take()
                && let Err(e) = self.vote.release(&g).await
            {
                debug!(error = %e, "releasing grant failed; its lease will expire");
            }
            h.lock = None;
        }
    }

    /// Opens the critical section.
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<RootUpdate> {
        let section = self.section.clone().lock_owned().await;
        let grant = self.enter().await?;
        let current = self.roots.lock().current.clone();
        Ok(RootUpdate {
            committer: Some(self.clone()),
            _section: Some(section),
            grant,
            current,
        })
    }

    async fn wait_durable(&self, sequence: u64, grant: &Grant) -> Result<()> {
        let done = |r: &Roots| seq(&r.durable).is_some_and(|d| d >= sequence);
        if done(&self.roots.lock()) {
            return Ok(());
        }
        let _io = self.io.lock().await;
        let (latest, expected) = {
            let r = self.roots.lock();
            if done(&r) {
                return Ok(());
            }
            (r.current.clone(), seq(&r.durable))
        };
        let Some(latest) = latest else {
            return Err(Error::NotGranted("no pending root".into()));
        };
        // Everything a published root can reach was pushed before it.
        self.writer.sync_all().await?;
        self.provider.write_root(&latest, expected).await?;
        self.vote.commit(grant, &latest).await?;
        let mut r = self.roots.lock();
        if seq(&r.durable).is_none_or(|d| d < latest.sequence) {
            r.durable = Some(latest);
        }
        Ok(())
    }
}

/// An open root-update critical section.
///
/// Obtained from [`Storage::begin_root_update`](crate::Storage::begin_root_update).
/// [`publish`](Self::publish) ends it with a new root; dropping it (or
/// [`abort`](Self::abort)) ends it without one.
pub struct RootUpdate {
    committer: Option<Arc<RootCommitter>>,
    _section: Option<OwnedMutexGuard<()>>,
    grant: Grant,
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
    /// An error means the outcome is unknown: the root may still become
    /// durable as part of a later update.
    pub async fn publish(mut self, pointer: AtomPointer) -> Result<RootRecord> {
        let Some(c) = self.committer.take() else {
            return Err(Error::Closed);
        };
        let record = {
            let mut r = c.roots.lock();
            let next = seq(&r.current).map_or(1, |s| s + 1);
            let rec = RootRecord::new(pointer, next, self.grant.term, Some(c.node_id.clone()));
            r.current = Some(rec.clone());
            rec
        };
        // Let the next updater in while we wait for durability.
        self._section = None;
        let res = c.wait_durable(record.sequence, &self.grant).await;
        c.leave().await;
        res.map(|()| record)
    }

    /// Ends the critical section without publishing.
    pub async fn abort(mut self) {
        if let Some(c) = self.committer.take() {
            self._section = None;
            c.leave().await;
        }
    }
}

impl Drop for RootUpdate {
    fn drop(&mut self) {
        if let Some(c) = self.committer.take() {
            self._section = None;
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { c.leave().await });
            }
        }
    }
}
