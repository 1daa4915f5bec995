//! [`QuorumRegister`]: a cluster's root register and vote strategy — the
//! proposer side of a single-register consensus in the style of CASPaxos,
//! with ballots = grant terms and the acceptors of [`super::acceptor`].
//!
//! - **acquire** (prepare): pick a term a majority can promise, ask every
//!   node (self included) for a promise with a lease; a majority of promises
//!   makes this node the holder. The promises report what each voter
//!   accepted; the holder builds on the newest (by ballot, then sequence).
//!   When the promising majority does not report that root identically, it
//!   may not be chosen yet, so the holder first writes it back (accepts it
//!   under its own ballot at a majority): the root it builds on is then
//!   chosen whatever happens to the holder.
//! - **write** (accept): the root is sent to every node (self included, in
//!   parallel) under the grant's ballot, and the write succeeds once a
//!   majority acknowledged *that ballot*.
//! - **read**: every node reports what it accepted; a root reported
//!   identically (same ballot) by a majority and newest among the answers is
//!   chosen and at least as new as anything acknowledged before the read —
//!   a linearizable read in one round trip. While a write is in flight the
//!   answers may differ; the read then asks again, and at last runs a full
//!   round (acquire, which writes back, then release).
//! - **release**: frees the lease on every voter at once; a crashed holder's
//!   lease simply expires. A failed prepare releases every voter, also those
//!   whose grant arrives late. A grant given back is first kept for
//!   `IDLE_LINGER` (1 ms): a next acquire of this node within it reuses it while
//!   its lease runs (a leader lease, as in multi-Paxos: consecutive updates
//!   skip the prepare round), building on the root last written under it.
//!   Safety does not rest on that: a voter that promised a newer ballot
//!   meanwhile refuses the reused ballot's accepts.
//!
//! Leases only make contention rare: safety rests on ballots alone, so skewed
//! clocks cannot make two holders' roots both acknowledged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use parking_lot::Mutex;
use tracing::debug;

use crate::clock::{Clock, SeededRng};
use crate::cluster::acceptor::{AcceptOutcome, Acceptor};
use crate::cluster::config::ClusterConfig;
use crate::cluster::fanout::fan_out;
use crate::error::{Error, Result};
use crate::network::{NetworkError, NetworkManager, PeerId};
use crate::protocol::{AcceptedRoot, Message, Promise};
use crate::root_register::{RootLock, RootRegister, RootVersion, VersionedRoot};
use crate::types::RootRecord;
use crate::vote::{Grant, VoteStrategy};

/// Share of the lease the holder counts on (the rest covers clock drift).
const LEASE_USE: f64 = 0.8;
/// Read rounds that may find a write in flight before a full round runs.
const READ_ATTEMPTS: u32 = 3;
/// How long a released grant is kept for this node's next acquire.
const IDLE_LINGER: Duration = Duration::from_millis(1);
/// Share of the lease that must be left for a kept grant to be reused (a
/// fresh prepare renews the lease at the voters).
const REUSE_LEFT: f64 = 0.25;
/// A grant older than this is not kept: other nodes waiting for the ballot
/// get their turn (a node updating without pause would hold it for as long
/// as its leases last).
const KEEP_MAX_AGE: Duration = Duration::from_millis(10);

/// The term of the grant this node holds and the root it last established
/// or wrote under it.
type Held = Option<(u64, Option<VersionedRoot>)>;

/// A grant given back but kept (see [`IDLE_LINGER`]); `generation` tells a
/// kept grant from a later one.
#[derive(Debug, Default)]
struct Kept {
    grant: Option<Grant>,
    generation: u64,
}

/// Orders accepted roots: ballot first, then sequence.
fn accepted_key(a: &AcceptedRoot) -> (u64, u64) {
    (a.ballot, a.root.sequence)
}

/// The newest of `values` and whether at least `quorum` of them report it
/// identically.
fn newest_and_chosen(
    values: &[Option<AcceptedRoot>],
    quorum: usize,
) -> (Option<AcceptedRoot>, bool) {
    let newest = values
        .iter()
        .flatten()
        .max_by_key(|a| accepted_key(a))
        .cloned();
    let same = values.iter().filter(|v| **v == newest).count();
    (newest, same >= quorum)
}

/// A cluster node's root register and vote strategy; see the
/// [module docs](self).
#[derive(Debug)]
pub struct QuorumRegister {
    config: ClusterConfig,
    acceptor: Arc<Acceptor>,
    network: Arc<dyn NetworkManager>,
    peers: Vec<PeerId>,
    clock: Arc<dyn Clock>,
    rng: SeededRng,
    /// Promised terms the peers reported in the last round.
    reported: Mutex<Vec<u64>>,
    /// Length of the last failed prepare round (backoff scale).
    last_round: Mutex<Duration>,
    /// Why the last failed prepare round failed (for errors).
    last_refusals: Mutex<Vec<String>>,
    /// The grant this node holds (its term) and the root it last
    /// established or wrote under it: a write's compare.
    held: Arc<Mutex<Held>>,
    /// A grant released but kept for a quick re-acquire.
    kept: Arc<Mutex<Kept>>,
    /// [`VoteStrategy::let_go`] was called: nothing is kept any more.
    closing: std::sync::atomic::AtomicBool,
    /// [`VoteStrategy::holder`] reports terms above this only: what this
    /// node's acceptor had promised when this register was made (every term
    /// an earlier process of this node may have reported), raised by
    /// [`VoteStrategy::fence`].
    forward_floor: std::sync::atomic::AtomicU64,
}

impl QuorumRegister {
    /// The register of the node of `acceptor`, reaching its peers through
    /// `network`; leases and deadlines on `clock`, jitter from `rng`.
    pub fn new(
        config: ClusterConfig,
        acceptor: Arc<Acceptor>,
        network: Arc<dyn NetworkManager>,
        clock: Arc<dyn Clock>,
        rng: SeededRng,
    ) -> Self {
        let peers = config.peers().map(|p| p.id.clone()).collect();
        let forward_floor = acceptor.snapshot().promised.into();
        QuorumRegister {
            config,
            acceptor,
            network,
            peers,
            clock,
            rng,
            reported: Mutex::default(),
            last_round: Mutex::default(),
            last_refusals: Mutex::default(),
            held: Arc::default(),
            kept: Arc::default(),
            closing: std::sync::atomic::AtomicBool::new(false),
            forward_floor,
        }
    }

    /// This node's acceptor.
    pub fn acceptor(&self) -> &Arc<Acceptor> {
        &self.acceptor
    }

    fn me(&self) -> &str {
        &self.config.server_id
    }

    /// The next term to ask for: the smallest that a majority of the voters
    /// heard from last time can grant — above the `quorum`-th lowest
    /// promise — so that one voter pushed far ahead (by a hostile member,
    /// say) does not drag every candidate after it.
    fn next_term(&self) -> Result<u64> {
        let mut seen = self.reported.lock().clone();
        seen.push(self.acceptor.snapshot().promised);
        seen.sort_unstable();
        let floor = seen
            .get(self.config.quorum().saturating_sub(1))
            .or(seen.last())
            .copied()
            .unwrap_or(0);
        floor
            .checked_add(1)
            .ok_or_else(|| Error::NotGranted("term space exhausted".into()))
    }

    /// One prepare round for `term`: `Some(grant)` with a majority.
    #[tracing::instrument(level = "debug", skip_all, fields(node = %self.me(), term))]
    async fn prepare_round(&self, term: u64) -> Result<Option<Grant>> {
        let timer = std::time::Instant::now();
        let r = self.prepare_round_untimed(term).await;
        crate::metrics::vote_round("prepare", matches!(r, Ok(Some(_))), timer);
        r
    }

    async fn prepare_round_untimed(&self, term: u64) -> Result<Option<Grant>> {
        let started = self.clock.now();
        let lease_ms = self.config.lease_ms;
        let quorum = self.config.quorum();
        let mut tally = Tally::default();
        match self.acceptor.prepare(self.me(), term, lease_ms).await {
            Ok(p) => {
                tally.promise(self.me(), p);
                // Own promise is read afresh when choosing the next term.
                tally.reported.clear();
            }
            Err(e) => tally.refusals.push(format!("{}: {e}", self.me())),
        }
        if tally.promised_by.len() < quorum {
            fan_out(
                &self.network,
                &self.peers,
                Message::Prepare { term, lease_ms },
                self.config.read_timeout(),
                |peer, answer| {
                    match answer {
                        Ok(Message::Promise(p)) => tally.promise(peer, p),
                        Ok(other) => tally.refusals.push(format!("{peer}: unexpected {other:?}")),
                        Err(e) => tally.refusals.push(e.to_string()),
                    }
                    tally.promised_by.len() >= quorum
                },
            )
            .await;
        }
        let Tally {
            promised_by,
            values,
            reported,
            refusals,
        } = tally;
        *self.reported.lock() = reported;
        if promised_by.len() < quorum {
            debug!(node = %self.me(), term, ?refusals, "prepare failed");
            *self.last_refusals.lock() = refusals;
            // Give back what we got, also grants still on their way.
            self.release_term(term).await;
            return Ok(None);
        }
        let (newest, chosen) = newest_and_chosen(&values, quorum);
        if !chosen && let Some(a) = &newest {
            // Make the root we build on chosen before building on it.
            if let Err(e) = self.accept_round(term, &a.root).await {
                debug!(node = %self.me(), term, error = %e, "write-back failed");
                self.release_term(term).await;
                return Ok(None);
            }
        }
        let lease = Duration::from_millis(lease_ms).mul_f64(LEASE_USE);
        debug!(node = %self.me(), term, votes = promised_by.len(), ?newest, "grant acquired");
        *self.held.lock() = Some((
            term,
            newest
                .as_ref()
                .map(|a| VersionedRoot::by_order(a.root.clone())),
        ));
        Ok(Some(Grant {
            term,
            holder: self.me().to_string(),
            expires_at: started.checked_add(lease),
            established_root: Some(newest.map(|a| VersionedRoot::by_order(a.root))),
        }))
    }

    /// Frees `term` on every voter (self included).
    async fn release_term(&self, term: u64) {
        self.releaser().release(term).await;
    }

    /// Forgets the grant of `term` as held and frees it on every voter.
    async fn release_held(&self, term: u64) {
        self.releaser().release_held(term).await;
    }

    /// Releases the kept grant, if any (its ballot is about to be
    /// superseded, or nothing is kept any more).
    async fn release_kept(&self) {
        let kept = self.kept.lock().grant.take();
        if let Some(g) = kept {
            self.release_held(g.term).await;
        }
    }

    fn releaser(&self) -> Releaser {
        Releaser {
            held: self.held.clone(),
            acceptor: self.acceptor.clone(),
            network: self.network.clone(),
            peers: self.peers.clone(),
            me: self.me().to_string(),
            timeout: self.config.read_timeout(),
        }
    }

    /// Keeps `grant` for this node's next acquire instead of releasing it,
    /// when it may be reused; a task releases it after [`IDLE_LINGER`]
    /// unless it was taken again.
    fn keep(&self, grant: &Grant) -> bool {
        if self.closing.load(std::sync::atomic::Ordering::Acquire)
            || !self.reusable(grant)
            || tokio::runtime::Handle::try_current().is_err()
        {
            return false;
        }
        let generation = {
            let mut kept = self.kept.lock();
            kept.generation = kept.generation.wrapping_add(1);
            kept.grant = Some(grant.clone());
            kept.generation
        };
        let (kept, releaser) = (self.kept.clone(), self.releaser());
        tokio::spawn(async move {
            tokio::time::sleep(IDLE_LINGER).await;
            let grant = {
                let mut k = kept.lock();
                if k.generation != generation {
                    return;
                }
                k.grant.take()
            };
            if let Some(g) = grant {
                releaser.release_held(g.term).await;
            }
        });
        true
    }

    /// Whether `grant` may serve another update without a prepare round:
    /// this node still holds it (no write under it failed), no voter here
    /// promised a newer ballot, enough of its lease is left and it is young
    /// (at most [`KEEP_MAX_AGE`]).
    fn reusable(&self, grant: &Grant) -> bool {
        let held = self
            .held
            .lock()
            .as_ref()
            .is_some_and(|(t, _)| *t == grant.term);
        let lease = Duration::from_millis(self.config.lease_ms);
        // The grant's lease ran from its prepare round: what is left tells
        // its age.
        let left = lease
            .mul_f64(REUSE_LEFT)
            .max(lease.mul_f64(LEASE_USE).saturating_sub(KEEP_MAX_AGE));
        let leased = grant
            .expires_at
            .is_some_and(|e| e.saturating_duration_since(self.clock.now()) >= left);
        held && leased && self.acceptor.snapshot().promised == grant.term
    }

    /// The kept grant, if it may be reused (building on the root last
    /// written under it); one that may not is released.
    async fn reuse_kept(&self) -> Option<Grant> {
        let g = self.kept.lock().grant.take()?;
        if self.reusable(&g) {
            let established = self
                .held
                .lock()
                .as_ref()
                .filter(|(t, _)| *t == g.term)
                .map(|(_, r)| r.clone());
            if let Some(established) = established {
                return Some(Grant {
                    established_root: Some(established),
                    ..g
                });
            }
        }
        self.release_held(g.term).await;
        None
    }

    /// A grant from a prepare round (never a kept one).
    async fn acquire_fresh(&self) -> Result<Grant> {
        // A kept grant's ballot is about to be superseded.
        self.release_kept().await;
        let deadline = self.clock.now() + self.config.vote_timeout();
        let cap = self.config.retry_interval().max(Duration::from_millis(10));
        let mut backoff = Duration::from_millis(2);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let term = self.next_term()?;
            let started = self.clock.now();
            if let Some(grant) = self.prepare_round(term).await? {
                return Ok(grant);
            }
            let now = self.clock.now();
            let round = now.saturating_duration_since(started);
            *self.last_round.lock() = round;
            if now >= deadline {
                return Err(Error::NoMajority(format!(
                    "no majority of {} nodes within {} ms ({attempts} attempts; last term {term}: {})",
                    self.config.cluster_size(),
                    self.config.vote_timeout_ms,
                    self.last_refusals.lock().join("; ")
                )));
            }
            // Jittered backoff plus a random part of the last round, so two
            // candidates waiting on the same silent peer fall out of step.
            let wait = backoff.mul_f64(0.5 + self.rng.f64()) + self.rng.duration_upto(round);
            tokio::time::sleep(wait.min(deadline.saturating_duration_since(now))).await;
            backoff = (backoff * 2).min(cap);
        }
    }

    /// Accept phase: `root` under ballot `term` at every node (self
    /// included, in parallel); `Ok` once a majority stored it under that
    /// ballot.
    #[tracing::instrument(level = "debug", skip_all, fields(node = %self.me(), term, sequence = root.sequence))]
    async fn accept_round(&self, term: u64, root: &RootRecord) -> Result<()> {
        let timer = std::time::Instant::now();
        let r = self.accept_round_untimed(term, root).await;
        crate::metrics::vote_round("accept", r.is_ok(), timer);
        r
    }

    async fn accept_round_untimed(&self, term: u64, root: &RootRecord) -> Result<()> {
        let quorum = self.config.quorum();
        let timeout = self.config.read_timeout();
        let mut pending: FuturesUnordered<_> = self
            .peers
            .iter()
            .map(|peer| {
                let net = self.network.clone();
                let msg = Message::Accept {
                    term,
                    root: root.clone(),
                };
                let peer = peer.clone();
                Box::pin(async move {
                    let r = net.request(&peer, msg, timeout).await;
                    (peer, Answer::Remote(r))
                }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
            })
            .collect();
        let acceptor = self.acceptor.clone();
        let me = self.me().to_string();
        let own = root.clone();
        pending.push(Box::pin(async move {
            let r = acceptor.accept(&me, term, &own).await;
            (me, Answer::Local(r))
        }));
        let mut acks = 0usize;
        let mut refusals = Vec::new();
        let mut highest = 0u64;
        while let Some((peer, answer)) = pending.next().await {
            match answer {
                Answer::Local(Ok(AcceptOutcome::Accepted)) => acks += 1,
                Answer::Local(Ok(AcceptOutcome::Rejected { promised, reason })) => {
                    highest = highest.max(promised);
                    refusals.push(format!("{peer}: {reason}"));
                }
                Answer::Local(Err(e)) => refusals.push(format!("{peer}: {e}")),
                Answer::Remote(Ok(Message::Accepted {
                    term: t,
                    accepted,
                    promised,
                })) => {
                    highest = highest.max(promised);
                    // Only an acknowledgement of this very ballot counts.
                    if accepted && t == term {
                        acks += 1;
                    } else {
                        refusals.push(format!("{peer} refused (ballot {t}, promised {promised})"));
                    }
                }
                Answer::Remote(Ok(other)) => refusals.push(format!("{peer}: unexpected {other:?}")),
                Answer::Remote(Err(e)) => refusals.push(e.to_string()),
            }
            if acks >= quorum {
                break;
            }
        }
        if !pending.is_empty() {
            // Stragglers still get the root.
            tokio::spawn(async move { while pending.next().await.is_some() {} });
        }
        if highest > term {
            self.reported.lock().push(highest);
        }
        if acks >= quorum {
            Ok(())
        } else {
            let message = format!(
                "root #{} under term {term} stored by {acks} of {} nodes, {quorum} needed: {}",
                root.sequence,
                self.config.cluster_size(),
                refusals.join("; ")
            );
            // Fenced when a newer term was promised; else too few answered.
            Err(if highest > term {
                Error::NotGranted(message)
            } else {
                Error::NoMajority(message)
            })
        }
    }

    /// One read round: `Some(root)` when the answers show a chosen newest
    /// root (`Some(None)`: no root), `None` when a write is in flight.
    #[tracing::instrument(level = "debug", skip_all, fields(node = %self.me()))]
    async fn read_round(&self) -> Result<Option<Option<RootRecord>>> {
        let timer = std::time::Instant::now();
        let r = self.read_round_untimed().await;
        crate::metrics::vote_round("read", matches!(r, Ok(Some(_))), timer);
        r
    }

    async fn read_round_untimed(&self) -> Result<Option<Option<RootRecord>>> {
        let quorum = self.config.quorum();
        let mut values: Vec<Option<AcceptedRoot>> = vec![self.acceptor.query().await];
        let mut failures = Vec::new();
        let mut decided = None;
        fan_out(
            &self.network,
            &self.peers,
            Message::QueryAccepted,
            self.config.read_timeout(),
            |peer, answer| {
                match answer {
                    Ok(Message::AcceptedValue(v)) => values.push(v),
                    Ok(other) => failures.push(format!("{peer}: unexpected {other:?}")),
                    Err(e) => failures.push(e.to_string()),
                }
                if values.len() >= quorum {
                    let (newest, chosen) = newest_and_chosen(&values, quorum);
                    if chosen {
                        decided = Some(newest.map(|a| a.root));
                        return true;
                    }
                }
                false
            },
        )
        .await;
        if let Some(d) = decided {
            return Ok(Some(d));
        }
        if values.len() < quorum {
            return Err(Error::Network(NetworkError::Unreachable {
                peer: format!("a majority of {} nodes", self.config.cluster_size()),
                reason: format!(
                    "{} of {} answered a root read: {}",
                    values.len(),
                    self.config.cluster_size(),
                    failures.join("; ")
                ),
            }));
        }
        Ok(None)
    }
}

/// Answers of one prepare round.
#[derive(Default)]
struct Tally {
    promised_by: Vec<PeerId>,
    values: Vec<Option<AcceptedRoot>>,
    reported: Vec<u64>,
    refusals: Vec<String>,
}

impl Tally {
    fn promise(&mut self, who: &str, p: Promise) {
        self.reported.push(p.promised);
        if p.granted {
            self.promised_by.push(who.to_string());
            self.values.push(p.accepted);
        } else {
            self.refusals
                .push(format!("{who} (promised {})", p.promised));
        }
    }
}

enum Answer {
    Local(Result<AcceptOutcome>),
    Remote(std::result::Result<Message, NetworkError>),
}

#[async_trait]
impl VoteStrategy for QuorumRegister {
    async fn acquire(&self) -> Result<Grant> {
        if let Some(g) = self.reuse_kept().await {
            return Ok(g);
        }
        self.acquire_fresh().await
    }

    async fn release(&self, grant: &Grant) -> Result<()> {
        if self.keep(grant) {
            return Ok(());
        }
        self.release_held(grant.term).await;
        Ok(())
    }

    async fn let_go(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
        self.release_kept().await;
    }

    /// The holder this node's acceptor knows ([`Acceptor::leader`]: its
    /// lease runs here and a root was accepted here under its ballot, so its
    /// prepare round had reached a majority: any later grant at a majority
    /// refuses that ballot's accepts), for terms above the floor only.
    fn holder(&self) -> Option<(String, u64)> {
        let floor = self
            .forward_floor
            .load(std::sync::atomic::Ordering::Acquire);
        self.acceptor.leader().filter(|(_, term)| *term > floor)
    }

    fn fence(&self, term: u64) {
        self.forward_floor
            .fetch_max(term, std::sync::atomic::Ordering::AcqRel);
    }
}

#[async_trait]
impl RootRegister for QuorumRegister {
    async fn read_root(&self) -> Result<Option<VersionedRoot>> {
        for attempt in 0..READ_ATTEMPTS {
            if let Some(root) = self.read_round().await? {
                return Ok(root.map(VersionedRoot::by_order));
            }
            // A write is in flight: it ends within a round trip or two.
            let pause = self.config.read_timeout() / 20;
            tokio::time::sleep(pause * (attempt + 1)).await;
        }
        // Settle it: a full round writes the newest root back.
        let grant = self.acquire_fresh().await?;
        self.release_held(grant.term).await;
        Ok(grant.established_root.flatten())
    }

    async fn write_root(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
    ) -> Result<RootVersion> {
        // Across nodes the compare is the ballot: acceptors refuse it once a
        // newer holder was promised. Within this node, the write must build
        // on what its grant established or last wrote.
        let held = self
            .held
            .lock()
            .as_ref()
            .map(|(t, r)| (*t, r.as_ref().map(|r| r.version)));
        // A released grant, even one kept for reuse, writes nothing until
        // acquired again.
        let released = self
            .kept
            .lock()
            .grant
            .as_ref()
            .is_some_and(|g| g.term == root.term);
        let held = held.filter(|_| !released);
        match held {
            Some((term, _)) if term != root.term => {
                return Err(Error::NotGranted(format!(
                    "root of term {} but this node holds term {term}",
                    root.term
                )));
            }
            None => {
                return Err(Error::NotGranted(format!(
                    "no grant held for term {}",
                    root.term
                )));
            }
            Some((_, version)) if version != expected => {
                return Err(Error::RootConflict {
                    expected: expected.map(|v| v.parts().1),
                    found: version.map(|v| v.parts().1),
                });
            }
            Some(_) => {}
        }
        if let Err(e) = self.accept_round(root.term, root).await {
            // Whether it is stored is unknown: the grant serves no other
            // update (it is not kept for reuse).
            clear_held(&self.held, root.term);
            return Err(e);
        }
        let version = RootVersion::of_root(root);
        let mut held = self.held.lock();
        if held.as_ref().is_some_and(|(t, _)| *t == root.term) {
            *held = Some((root.term, Some(VersionedRoot::by_order(root.clone()))));
        }
        Ok(version)
    }

    async fn lock_root(&self) -> Result<RootLock> {
        Ok(RootLock::none())
    }
}

/// A [`QuorumRegister`] used as a lock only: its grants (with their fencing
/// terms) serialise the writers of a register kept elsewhere — a
/// cloud-cluster's object store — so they say nothing about that register's
/// root, which the holder reads from it.
#[derive(Debug)]
pub struct QuorumLock(pub Arc<QuorumRegister>);

#[async_trait]
impl VoteStrategy for QuorumLock {
    async fn acquire(&self) -> Result<Grant> {
        let mut g = self.0.acquire().await?;
        g.established_root = None;
        Ok(g)
    }

    /// Releases at once (nothing kept: the register it serialises is
    /// written elsewhere, so a failed write there would not keep this
    /// node's ballot from being reused).
    async fn release(&self, grant: &Grant) -> Result<()> {
        self.0.release_held(grant.term).await;
        Ok(())
    }

    async fn let_go(&self) {
        self.0.let_go().await
    }
}

/// Forgets the grant of `term` as held.
fn clear_held(held: &Mutex<Held>, term: u64) {
    let mut h = held.lock();
    if h.as_ref().is_some_and(|(t, _)| *t == term) {
        *h = None;
    }
}

/// What releasing a term takes, for tasks that outlive a call.
struct Releaser {
    held: Arc<Mutex<Held>>,
    acceptor: Arc<Acceptor>,
    network: Arc<dyn NetworkManager>,
    peers: Vec<PeerId>,
    me: String,
    timeout: Duration,
}

impl Releaser {
    /// Forgets the grant of `term` as held, then frees it.
    async fn release_held(self, term: u64) {
        clear_held(&self.held, term);
        self.release(term).await;
    }

    /// Frees `term` on every voter (self included; the peers' messages go
    /// out on a task of their own).
    async fn release(self, term: u64) {
        self.acceptor.release(&self.me, term).await;
        if self.peers.is_empty() {
            return;
        }
        let msg = Message::Release {
            term,
            holder: self.me,
        };
        let (net, peers, timeout) = (self.network, self.peers, self.timeout);
        tokio::spawn(async move {
            fan_out(&net, &peers, msg, timeout, |_, _| false).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AtomPointer, WalId};

    fn acc(ballot: u64, seq: u64) -> Option<AcceptedRoot> {
        let wal = WalId(uuid::Uuid::from_u128(7));
        Some(AcceptedRoot {
            ballot,
            root: RootRecord::new(AtomPointer::new(wal, seq * 100), seq, ballot, None),
        })
    }

    #[test]
    fn a_root_is_chosen_when_a_majority_reports_it_identically() {
        assert_eq!(
            newest_and_chosen(&[acc(3, 5), acc(3, 5)], 2),
            (acc(3, 5), true)
        );
        // The newest is not at a majority: a write is in flight.
        assert_eq!(
            newest_and_chosen(&[acc(3, 5), acc(3, 6)], 2),
            (acc(3, 6), false)
        );
        // Same root, different ballots: not the same acceptance.
        assert!(!newest_and_chosen(&[acc(3, 5), acc(4, 5)], 2).1);
        // Nothing accepted anywhere: "no root" is chosen.
        assert_eq!(newest_and_chosen(&[None, None, None], 2), (None, true));
        assert_eq!(newest_and_chosen(&[None, acc(1, 1)], 2), (acc(1, 1), false));
        // Ballot outranks sequence.
        assert_eq!(newest_and_chosen(&[acc(2, 9), acc(3, 1)], 1).0, acc(3, 1));
    }
}
