//! The acceptor: the one owner of a node's consensus state (DESIGN.md §6).
//!
//! Every cluster node runs one. It answers the two phases of the root
//! register's single-decree consensus (CASPaxos-style, with ballots = grant
//! terms):
//!
//! - **prepare**: promise a term to the sender (its authenticated id) with a
//!   lease, reporting what was accepted;
//! - **accept**: store a root under a ballot not older than the promise.
//!
//! Both are decided and recorded under one lock that is held across the
//! durable write of the new state ([`AcceptorStore`]): no other request is
//! decided between the check and the write, and nothing is answered before
//! the write returned. This is what keeps a new candidate from being told an
//! old root while a newer one is being stored (a promise and an accept are
//! two ordered writes of one state, as openraft orders a vote and a log
//! append).
//!
//! Values from the network are bounded before use: terms more than
//! [`MAX_TERM_STEP`] above what was promised are refused (a member cannot
//! exhaust the term space in a few messages), leases are capped at this
//! node's own configured lease, arithmetic is checked, and a root must carry
//! a valid checksum and a term not above its ballot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::debug;

use crate::clock::Clock;
use crate::cluster::acceptor_store::{AcceptorState, AcceptorStore, TERM_BLOCK};
use crate::error::Result;
use crate::network::PeerId;
use crate::protocol::{AcceptedRoot, Promise};
use crate::types::RootRecord;

/// Largest jump above the promised term a prepare or accept may ask for.
pub const MAX_TERM_STEP: u64 = 1 << 32;

#[derive(Debug, Clone)]
struct Lease {
    holder: PeerId,
    term: u64,
    expires: Instant,
}

#[derive(Debug)]
struct State {
    /// Highest term promised (in memory; durable through the ceiling).
    promised: u64,
    /// Terms up to here are reserved durably.
    ceiling: u64,
    lease: Option<Lease>,
    accepted: Option<AcceptedRoot>,
}

impl State {
    fn durable(&self) -> AcceptorState {
        AcceptorState {
            ceiling: self.ceiling,
            accepted: self.accepted.clone(),
        }
    }

    /// The ceiling to store before promising or accepting `term`.
    fn ceiling_for(&self, term: u64) -> u64 {
        if term > self.ceiling {
            term.saturating_add(TERM_BLOCK)
        } else {
            self.ceiling
        }
    }

    fn in_range(&self, term: u64) -> bool {
        term > 0 && term <= self.promised.saturating_add(MAX_TERM_STEP)
    }
}

/// What a node's acceptor holds, for status reports and hints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptorSnapshot {
    /// Highest term promised.
    pub promised: u64,
    /// What was accepted last.
    pub accepted: Option<AcceptedRoot>,
}

/// A node's voter and acceptor.
#[derive(Debug)]
pub struct Acceptor {
    node_id: PeerId,
    store: Arc<dyn AcceptorStore>,
    max_lease: Duration,
    clock: Arc<dyn Clock>,
    state: tokio::sync::Mutex<State>,
    snapshot: Mutex<AcceptorSnapshot>,
    /// The lease of the state, readable without waiting for a decision.
    lease: Mutex<Option<Lease>>,
}

/// Result of an accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Stored durably under the ballot (or was already).
    Accepted,
    /// Refused, with the term this acceptor has promised.
    Rejected {
        /// Highest term promised.
        promised: u64,
        /// Why.
        reason: String,
    },
}

impl Acceptor {
    /// Loads the durable state. Leases asked for are capped at `max_lease`.
    pub async fn open(
        node_id: PeerId,
        store: Arc<dyn AcceptorStore>,
        max_lease: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>> {
        let stored = store.load().await?;
        // Nothing at or below the ceiling may be promised again: it may have
        // been promised before a restart.
        let promised = stored
            .ceiling
            .max(stored.accepted.as_ref().map_or(0, |a| a.ballot));
        let state = State {
            promised,
            ceiling: stored.ceiling,
            lease: None,
            accepted: stored.accepted,
        };
        let snapshot = AcceptorSnapshot {
            promised,
            accepted: state.accepted.clone(),
        };
        Ok(Arc::new(Acceptor {
            node_id,
            store,
            max_lease,
            clock,
            state: tokio::sync::Mutex::new(state),
            snapshot: Mutex::new(snapshot),
            lease: Mutex::new(None),
        }))
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Highest term promised and what was accepted (without waiting for a
    /// decision in progress).
    pub fn snapshot(&self) -> AcceptorSnapshot {
        self.snapshot.lock().clone()
    }

    fn publish(&self, st: &State) {
        *self.snapshot.lock() = AcceptorSnapshot {
            promised: st.promised,
            accepted: st.accepted.clone(),
        };
        *self.lease.lock() = st.lease.clone();
    }

    /// The node this acceptor knows to hold a grant now, with its term: its
    /// lease here is running, and this acceptor has accepted a root under
    /// that very ballot (so the holder's prepare round had finished: it
    /// writes only once it holds the grant). A root handed to it for that
    /// term cannot be stored after a later grant of any node at a majority
    /// (see [`crate::root_forward`]).
    pub fn leader(&self) -> Option<(PeerId, u64)> {
        let lease = self.lease.lock().clone()?;
        if lease.expires <= self.clock.now() {
            return None;
        }
        let snap = self.snapshot.lock();
        snap.accepted
            .as_ref()
            .filter(|a| a.ballot == lease.term && snap.promised == lease.term)
            .map(|_| (lease.holder, lease.term))
    }

    /// Prepare: promises `term` to `from` (the authenticated sender) with a
    /// lease of at most this node's own lease, unless a term at least as high
    /// was promised to someone else or another node's lease is running.
    #[tracing::instrument(level = "debug", skip_all, fields(node = %self.node_id, from, term))]
    pub async fn prepare(&self, from: &str, term: u64, lease_ms: u64) -> Result<Promise> {
        let mut st = self.state.lock().await;
        let now = self.clock.now();
        let same_holder = st
            .lease
            .as_ref()
            .is_some_and(|l| l.holder == from && l.term == term);
        let leased_to_other = st
            .lease
            .as_ref()
            .is_some_and(|l| l.expires > now && l.holder != from);
        let granted = st.in_range(term) && !leased_to_other && (term > st.promised || same_holder);
        let lease = Duration::from_millis(lease_ms).min(self.max_lease);
        if granted {
            let ceiling = st.ceiling_for(term);
            if ceiling != st.ceiling {
                let mut next = st.durable();
                next.ceiling = ceiling;
                self.store.save(&next).await?;
                st.ceiling = ceiling;
            }
            st.promised = st.promised.max(term);
            ::metrics::gauge!(crate::metrics::TERM).set(st.promised as f64);
            st.lease = Some(Lease {
                holder: from.to_string(),
                term,
                expires: now.checked_add(lease).unwrap_or(now),
            });
            self.publish(&st);
        }
        debug!(node = %self.node_id, candidate = %from, term, granted, promised = st.promised, "prepare");
        Ok(Promise {
            granted,
            promised: st.promised,
            accepted: st.accepted.clone(),
            lease_ms: if granted { lease.as_millis() as u64 } else { 0 },
        })
    }

    /// Ends `from`'s lease of `term` at once.
    pub async fn release(&self, from: &str, term: u64) {
        let mut st = self.state.lock().await;
        if st
            .lease
            .as_ref()
            .is_some_and(|l| l.holder == from && l.term == term)
        {
            st.lease = None;
            self.publish(&st);
        }
    }

    /// Accept: stores `root` under ballot `term`, sent by `from`, if the
    /// ballot is not older than the promise and not older than what was
    /// accepted (within a ballot, roots only move forward by sequence).
    #[tracing::instrument(level = "debug", skip_all, fields(node = %self.node_id, from, term, sequence = root.sequence))]
    pub async fn accept(&self, from: &str, term: u64, root: &RootRecord) -> Result<AcceptOutcome> {
        let mut st = self.state.lock().await;
        let reject = |st: &State, reason: String| {
            debug!(node = %self.node_id, %from, term, ?root, %reason, "accept refused");
            Ok(AcceptOutcome::Rejected {
                promised: st.promised,
                reason,
            })
        };
        if let Err(e) = root.verify_checksum() {
            return reject(&st, format!("invalid root: {e}"));
        }
        if root.term > term {
            return reject(
                &st,
                format!("root of term {} under ballot {term}", root.term),
            );
        }
        if !st.in_range(term) {
            return reject(&st, format!("ballot {term} out of range"));
        }
        if term < st.promised {
            return reject(&st, format!("promised {}", st.promised));
        }
        if let Some(l) = &st.lease
            && l.term == term
            && l.holder != from
        {
            return reject(&st, format!("ballot {term} belongs to {}", l.holder));
        }
        if let Some(a) = &st.accepted {
            if term < a.ballot {
                return reject(&st, format!("accepted ballot {}", a.ballot));
            }
            if term == a.ballot {
                if &a.root == root {
                    return Ok(AcceptOutcome::Accepted);
                }
                if root.sequence <= a.root.sequence {
                    return reject(&st, format!("holds #{} under this ballot", a.root.sequence));
                }
            }
        }
        let next = AcceptorState {
            ceiling: st.ceiling_for(term),
            accepted: Some(AcceptedRoot {
                ballot: term,
                root: root.clone(),
            }),
        };
        self.store.save(&next).await?;
        st.ceiling = next.ceiling;
        st.accepted = next.accepted;
        st.promised = st.promised.max(term);
        self.publish(&st);
        Ok(AcceptOutcome::Accepted)
    }

    /// What this acceptor has accepted (waits for a decision in progress).
    pub async fn query(&self) -> Option<AcceptedRoot> {
        self.state.lock().await.accepted.clone()
    }
}
