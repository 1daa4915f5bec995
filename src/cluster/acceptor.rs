//! The voter/acceptor half of the cluster protocol (DESIGN.md §6).
//!
//! Every node runs one. It answers vote requests (prepare/promise with a
//! lease) and root updates (accept), and is the only writer of the node's
//! local root when roots arrive from peers. Roots are ordered by
//! `(term, sequence)`: a root published under a higher term supersedes any
//! root of a lower term, so a stale holder's unacknowledged root can never
//! win over the new holder's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{debug, warn};

use crate::block_provider::BlockProvider;
use crate::cluster::term_store::{TERM_BLOCK, TermStore};
use crate::error::{Error, Result};
use crate::network::PeerId;
use crate::types::RootRecord;
use crate::vote::{VoteRequest, VoteResponse};

/// Orders roots: higher term first, then higher sequence.
pub(crate) fn root_order(r: &RootRecord) -> (u64, u64) {
    (r.term, r.sequence)
}

/// Whether `a` is newer than `b`.
pub(crate) fn newer(a: &RootRecord, b: Option<&RootRecord>) -> bool {
    b.is_none_or(|b| root_order(a) > root_order(b))
}

#[derive(Debug, Clone)]
struct Lease {
    holder: PeerId,
    term: u64,
    expires: Instant,
}

#[derive(Debug)]
struct State {
    /// Highest term promised.
    promised: u64,
    /// Terms up to here are reserved durably.
    ceiling: u64,
    lease: Option<Lease>,
    /// Newest root accepted (also the local provider's root).
    accepted: Option<RootRecord>,
}

/// A node's voter and acceptor.
#[derive(Debug)]
pub struct Acceptor {
    node_id: PeerId,
    provider: Arc<dyn BlockProvider>,
    store: Arc<dyn TermStore>,
    state: Mutex<State>,
    /// Serialises local root writes from peers.
    write: tokio::sync::Mutex<()>,
}

/// Whether accepting a root writes it to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Write,
    /// In memory only: the root is in a store shared by all nodes already.
    Remember,
}

/// Result of offering a root to the acceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Stored (or already stored).
    Accepted,
    /// Refused: the term is older than a promise, or the root is older than
    /// the one held.
    Rejected {
        /// Highest term promised.
        promised: u64,
        /// Newest root held.
        latest: Option<RootRecord>,
    },
}

impl Acceptor {
    /// Loads the durable state: the local root and the promised-term ceiling.
    pub async fn open(
        node_id: PeerId,
        provider: Arc<dyn BlockProvider>,
        store: Arc<dyn TermStore>,
    ) -> Result<Arc<Self>> {
        let accepted = provider.read_root().await?;
        let ceiling = store.load()?;
        // Nothing at or below the ceiling may be promised again: it may have
        // been promised before a restart.
        let promised = ceiling.max(accepted.as_ref().map_or(0, |r| r.term));
        Ok(Arc::new(Acceptor {
            node_id,
            provider,
            store,
            state: Mutex::new(State {
                promised,
                ceiling,
                lease: None,
                accepted,
            }),
            write: tokio::sync::Mutex::new(()),
        }))
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Highest term promised.
    pub fn promised(&self) -> u64 {
        self.state.lock().promised
    }

    /// Newest root accepted.
    pub fn latest(&self) -> Option<RootRecord> {
        self.state.lock().accepted.clone()
    }

    /// A heartbeat announcing this node's newest root.
    pub fn heartbeat(&self) -> crate::protocol::Message {
        let latest = self.latest();
        crate::protocol::Message::Heartbeat {
            node: self.node_id.clone(),
            root_sequence: latest.as_ref().map_or(0, |r| r.sequence),
            term: latest.as_ref().map_or(0, |r| r.term),
        }
    }

    /// Prepare/promise: grants `req.term` to `req.candidate` unless a higher
    /// or equal term was promised to someone else, or another node's lease
    /// is still running.
    pub fn vote(&self, req: &VoteRequest) -> Result<VoteResponse> {
        let now = crate::cluster::now();
        let mut st = self.state.lock();
        let same_holder = st
            .lease
            .as_ref()
            .is_some_and(|l| l.holder == req.candidate && l.term == req.term);
        let leased_to_other = st
            .lease
            .as_ref()
            .is_some_and(|l| l.expires > now && l.holder != req.candidate);
        let granted = !leased_to_other && (req.term > st.promised || same_holder);
        if granted {
            if req.term > st.ceiling {
                let ceiling = req.term + TERM_BLOCK;
                self.store.store(ceiling)?;
                st.ceiling = ceiling;
            }
            st.promised = st.promised.max(req.term);
            st.lease = Some(Lease {
                holder: req.candidate.clone(),
                term: req.term,
                expires: now + Duration::from_millis(req.lease_ms),
            });
        }
        debug!(node = %self.node_id, candidate = %req.candidate, term = req.term, granted, "vote");
        Ok(VoteResponse {
            voter: self.node_id.clone(),
            granted,
            term: st.promised,
            latest_root: st.accepted.clone(),
        })
    }

    /// Ends `holder`'s lease for `term` at once.
    pub fn release(&self, holder: &str, term: u64) {
        let mut st = self.state.lock();
        if st
            .lease
            .as_ref()
            .is_some_and(|l| l.holder == holder && l.term == term)
        {
            st.lease = None;
        }
    }

    /// Accept: stores `root`, published under `term`, if the term is not
    /// older than the promise and the root is newer than the one held.
    pub async fn accept(&self, term: u64, root: &RootRecord) -> Result<AcceptOutcome> {
        if root.term != term {
            return Ok(self.rejected());
        }
        self.store_if_newer(root, Some(term), Store::Write).await
    }

    /// Accept, for a root update received from the grant holder. With a
    /// provider that [shares roots](BlockProvider::shares_roots) the holder
    /// already stored it (its store compare-and-swap ran before the
    /// broadcast), so this node only checks the fence and remembers it.
    pub async fn accept_from_holder(&self, term: u64, root: &RootRecord) -> Result<AcceptOutcome> {
        if root.term != term {
            return Ok(self.rejected());
        }
        self.store_if_newer(root, Some(term), self.remote_store())
            .await
    }

    /// Catch-up: stores a root another node holds if it is newer than ours,
    /// whatever this node promised (any accepted root is safe to adopt).
    pub async fn learn(&self, root: &RootRecord) -> Result<AcceptOutcome> {
        self.store_if_newer(root, None, self.remote_store()).await
    }

    /// How a root that came from another node is stored.
    fn remote_store(&self) -> Store {
        if self.provider.shares_roots() {
            Store::Remember
        } else {
            Store::Write
        }
    }

    fn rejected(&self) -> AcceptOutcome {
        let st = self.state.lock();
        AcceptOutcome::Rejected {
            promised: st.promised,
            latest: st.accepted.clone(),
        }
    }

    async fn store_if_newer(
        &self,
        root: &RootRecord,
        fence: Option<u64>,
        how: Store,
    ) -> Result<AcceptOutcome> {
        let _w = self.write.lock().await;
        let known = {
            let mut st = self.state.lock();
            if fence.is_some_and(|term| term < st.promised) {
                drop(st);
                return Ok(self.rejected());
            }
            if st.accepted.as_ref() == Some(root) {
                return Ok(AcceptOutcome::Accepted);
            }
            if !newer(root, st.accepted.as_ref()) {
                drop(st);
                return Ok(self.rejected());
            }
            if let Some(term) = fence {
                st.promised = term;
            }
            st.accepted.clone()
        };
        if how == Store::Remember {
            self.note_local(Some(root));
            return Ok(AcceptOutcome::Accepted);
        }
        // A shared root is usually still the one this acceptor knows: try
        // the store's compare-and-swap on it directly (no read first).
        if self.provider.shares_roots() {
            match self
                .provider
                .write_root(root, known.as_ref().map(|r| r.sequence))
                .await
            {
                Ok(()) => {
                    self.note_local(Some(root));
                    return Ok(AcceptOutcome::Accepted);
                }
                Err(Error::RootConflict { .. }) => {} // read it, below
                Err(e) => return Err(e),
            }
        }
        // The local root may hold something this acceptor has not seen (a
        // root written before a restart): compare with what is stored.
        let stored = self.provider.read_root().await?;
        if stored
            .as_ref()
            .is_some_and(|s| s != root && !newer(root, Some(s)))
        {
            self.note_local(stored.as_ref());
            return Ok(self.rejected());
        }
        if stored.as_ref() != Some(root) {
            self.provider
                .write_root(root, stored.as_ref().map(|r| r.sequence))
                .await
                .inspect_err(|e| {
                    warn!(node = %self.node_id, error = %e, "storing an accepted root failed");
                })?;
        }
        self.note_local(Some(root));
        Ok(AcceptOutcome::Accepted)
    }

    /// Records a root this node wrote itself (as holder) or found stored.
    pub fn note_local(&self, root: Option<&RootRecord>) {
        let Some(root) = root else { return };
        let mut st = self.state.lock();
        if newer(root, st.accepted.as_ref()) {
            st.promised = st.promised.max(root.term);
            st.accepted = Some(root.clone());
        }
    }
}
