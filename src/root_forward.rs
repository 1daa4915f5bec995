//! Blind root writes handed to the node holding the grant (leader
//! forwarding, as multi-Paxos followers hand requests to their leader).
//!
//! In a cluster the grant moves between the nodes whose callers publish:
//! each move costs a prepare round, and a node's updates wait while another
//! node holds it. A blind [`Storage::set_root`](crate::Storage::set_root)
//! needs no critical section of its own (it builds on whatever is current),
//! so a member that does not hold the grant, when its
//! [`VoteStrategy`] names the node that does
//! ([`VoteStrategy::holder`]), makes the bytes it pushed durable and sends
//! the root there ([`Message::ForwardRoot`]). The holder publishes it among
//! its own updates (one group commit for all), naming the sender as the
//! root's writer (its WAL holds the bytes), and answers with the durable
//! root. Updates that read the current root
//! ([`Storage::begin_root_update`](crate::Storage::begin_root_update)) keep
//! taking the grant.
//!
//! # Why a late forward cannot undo a later commit
//!
//! A forward whose answer does not come (a timeout, a lost link, a caller
//! that went away) has an unknown outcome: the root may still be published
//! when the message arrives. It must never land after a root this process
//! acknowledges later. Four rules keep it so:
//!
//! 1. A forward names the term of the holder's grant, and the holder
//!    publishes it only under that very grant, held at that moment.
//! 2. A holder is named only once it *had* its grant (this node's acceptor
//!    accepted a root under its ballot, which the holder writes only after
//!    a majority promised it). Any grant obtained afterwards, by any node,
//!    is then of a higher term, promised by a majority that refuses the
//!    named ballot's accepts from then on: a root under the named term is
//!    either chosen before that grant (which then builds on it) or never.
//! 3. After an unknown outcome the term is fenced
//!    ([`VoteStrategy::fence`]): this process never forwards under it
//!    again, so its next commit goes through a newer grant (its own, or a
//!    holder's), which rule 2 orders after the fenced forward. A process
//!    that starts fences every term its node's acceptor had promised (an
//!    earlier process of the node may have forwarded under them).
//! 4. The holder never publishes a forward twice: it remembers every
//!    forward it was sent (by sending process and number), and answers a
//!    copy (a duplicated message) with an error, an unknown outcome.
//!
//! A refusal ([`Message::ForwardRefused`]) means no copy of the forward was
//! or will be published, and the commit then takes the grant here, as
//! without forwarding. So the holder refuses only what it can vouch for: a
//! forward it sees for the first time (rule 4), for a term it does not hold
//! and no earlier process of the node can have held (above what its
//! acceptor had promised when this process started; an earlier process's
//! grant was promised by that acceptor, durably). Anything else it cannot
//! serve gets an error: an unknown outcome, the term fenced.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tracing::debug;

use crate::error::{Error, Result};
use crate::network::{NetworkError, NetworkManager, PeerId};
use crate::protocol::Message;
use crate::root_commit::RootCommitter;
use crate::types::{AtomPointer, RootRecord};
use crate::vote::VoteStrategy;

/// Forward numbers of one sending process kept to recognise copies;
/// older ones count as seen.
const WINDOW: usize = 4096;
/// Sending processes remembered; forwards of further ones are not served
/// (they cannot be told from copies).
const MAX_SENDERS: usize = 1024;

/// A node's side of forwarding: sending its blind root writes to the
/// holder, and publishing those sent to it.
#[derive(Debug)]
pub(crate) struct Forwarding {
    /// This process's incarnation (random per start).
    nonce: u64,
    /// Number of the next forward sent.
    next: AtomicU64,
    /// How long a forward waits for the holder's answer.
    timeout: Duration,
    /// Terms up to here may have been held by an earlier process of this
    /// node: what its acceptor had promised when this one started.
    inherited: u64,
    /// Forwards this process was sent (copies are not served).
    seen: Mutex<Seen>,
}

/// One forwarded root, as [`Message::ForwardRoot`] carries it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Forward {
    /// The new root's atom.
    pub(crate) pointer: AtomPointer,
    /// The grant it must be published under.
    pub(crate) term: u64,
    /// The sending process's incarnation.
    pub(crate) nonce: u64,
    /// The sending process's number for it.
    pub(crate) id: u64,
}

/// What a forward to the holder came to.
pub(crate) enum Sent {
    /// Not forwarded (no holder known, or the holder refused it: nothing
    /// was published): take the grant here.
    Not,
    /// The holder's answer: the durable root, or an error (the outcome is
    /// unknown unless the error says otherwise).
    Done(Result<RootRecord>),
}

impl Forwarding {
    /// Forwarding for a process of incarnation `nonce`, waiting `timeout`
    /// for an answer, on a node whose acceptor had promised `inherited`
    /// when this process started.
    pub(crate) fn new(nonce: u64, timeout: Duration, inherited: u64) -> Self {
        Forwarding {
            nonce,
            next: AtomicU64::new(1),
            timeout,
            inherited,
            seen: Mutex::default(),
        }
    }

    /// Sends the blind write of `pointer` to the holder of the grant, when
    /// another node holds it.
    pub(crate) async fn send(
        &self,
        roots: &RootCommitter,
        network: &Arc<dyn NetworkManager>,
        pointer: AtomPointer,
    ) -> Sent {
        let vote = roots.vote();
        let Some((holder, term)) = vote.holder() else {
            return Sent::Not;
        };
        if holder == roots.node_id() {
            return Sent::Not;
        }
        // Everything the root reaches is durable here before anyone may
        // publish it.
        if let Err(e) = roots.sync_pushed().await {
            return Sent::Done(Err(e));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        // Until a definite answer, the outcome is unknown (also if this
        // future is dropped): the term is fenced then.
        let mut fence = Fence {
            vote: Some(vote.clone()),
            term,
        };
        let message = Message::ForwardRoot {
            pointer,
            term,
            nonce: self.nonce,
            id,
        };
        let answer = network.request(&holder, message, self.timeout).await;
        let unknown = |source: Error| {
            counted("unknown");
            Sent::Done(Err(Error::ForwardFailed {
                holder: holder.clone(),
                term,
                source: Box::new(source),
            }))
        };
        match answer {
            Ok(Message::ForwardedRoot(root)) => {
                match check(&root, pointer, roots.node_id(), term) {
                    Ok(()) => {
                        fence.defuse();
                        counted("ok");
                        Sent::Done(Ok(root))
                    }
                    Err(reason) => unknown(Error::Network(NetworkError::Protocol {
                        peer: holder.clone(),
                        reason,
                    })),
                }
            }
            Ok(Message::ForwardRefused { reason }) => {
                fence.defuse();
                counted("refused");
                debug!(%holder, term, %reason, "forward refused; taking the grant");
                Sent::Not
            }
            Ok(Message::Error { message }) => unknown(Error::NotGranted(message)),
            Ok(other) => unknown(Error::Network(NetworkError::Protocol {
                peer: holder.clone(),
                reason: format!("unexpected answer to a forwarded root: {other:?}"),
            })),
            Err(e) => unknown(Error::Network(e)),
        }
    }

    /// Publishes a root `from` forwarded (see the [module docs](self)):
    /// only under the grant of its term, held now, and once per forward.
    pub(crate) async fn serve(
        &self,
        roots: &Arc<RootCommitter>,
        from: &PeerId,
        forward: Forward,
    ) -> Message {
        let Forward {
            pointer,
            term,
            nonce,
            id,
        } = forward;
        let refuse = |reason: String| {
            debug!(%from, term, %reason, "forward refused");
            Message::ForwardRefused { reason }
        };
        let me = roots.node_id();
        if let Err(reason) = self.seen.lock().admit(from, nonce, id) {
            // A copy, or one that cannot be told from a copy: the first
            // may have been published.
            return Message::Error { message: reason };
        }
        match roots.vote().holder() {
            Some((h, t)) if h == me && t == term => {}
            _ if term <= self.inherited => {
                return Message::Error {
                    message: format!(
                        "{me} does not hold the grant of term {term}; an earlier process of \
                         this node may have"
                    ),
                };
            }
            _ => return refuse(format!("{me} does not hold the grant of term {term}")),
        }
        let update = match roots.begin().await {
            Ok(u) => u,
            Err(e) => return refuse(format!("{me} could not open an update: {e}")),
        };
        if update.term() != term {
            let held = update.term();
            update.abort().await;
            return refuse(format!("{me} holds term {held}, not {term}"));
        }
        match update.publish_as(pointer, Some(from.clone())).await {
            Ok(root) => Message::ForwardedRoot(root),
            Err(e) => Message::Error {
                message: format!("publishing the root forwarded by {from}: {e}"),
            },
        }
    }
}

/// Checks the holder's answer against the forward.
fn check(root: &RootRecord, pointer: AtomPointer, me: &str, term: u64) -> Result<(), String> {
    root.verify_checksum().map_err(|e| e.to_string())?;
    if root.pointer != pointer || root.term != term || root.writer.as_deref() != Some(me) {
        return Err(format!(
            "the holder answered {root:?} for {pointer} under term {term} written by {me}"
        ));
    }
    Ok(())
}

fn counted(outcome: &'static str) {
    ::metrics::counter!(crate::metrics::ROOT_FORWARDS, "outcome" => outcome).increment(1);
}

/// Fences `term` when dropped armed (see rule 3 of the [module docs](self)).
struct Fence {
    vote: Option<Arc<dyn VoteStrategy>>,
    term: u64,
}

impl Fence {
    fn defuse(&mut self) {
        self.vote = None;
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        if let Some(v) = self.vote.take() {
            debug!(term = self.term, "forward outcome unknown; term fenced");
            v.fence(self.term);
        }
    }
}

/// Forwards this process was sent.
#[derive(Debug, Default)]
struct Seen {
    senders: HashMap<(PeerId, u64), Window>,
}

impl Seen {
    /// Records forward `id` of `from`'s process `nonce`; `Err` when it was
    /// seen (or cannot be told from one seen).
    fn admit(&mut self, from: &PeerId, nonce: u64, id: u64) -> Result<(), String> {
        let key = (from.clone(), nonce);
        if !self.senders.contains_key(&key) && self.senders.len() >= MAX_SENDERS {
            return Err(format!(
                "forwards of {MAX_SENDERS} sending processes remembered already"
            ));
        }
        self.senders.entry(key).or_default().admit(id)
    }
}

/// Numbers seen of one sending process: all up to `below`, and `recent`.
#[derive(Debug, Default)]
struct Window {
    below: u64,
    recent: BTreeSet<u64>,
}

impl Window {
    fn admit(&mut self, id: u64) -> Result<(), String> {
        if id <= self.below || !self.recent.insert(id) {
            return Err(format!("forward {id} was seen already"));
        }
        while self.recent.len() > WINDOW {
            if let Some(oldest) = self.recent.pop_first() {
                self.below = oldest;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_or_an_old_forward_counts_as_seen() {
        let mut seen = Seen::default();
        let a: PeerId = "a".into();
        assert!(seen.admit(&a, 1, 2).is_ok());
        assert!(seen.admit(&a, 1, 1).is_ok(), "out of order is fine");
        assert!(seen.admit(&a, 1, 2).is_err(), "a copy");
        assert!(seen.admit(&a, 9, 2).is_ok(), "another process of a");
        assert!(seen.admit(&"b".into(), 1, 2).is_ok(), "another sender");
        // Past the window, the oldest numbers count as seen.
        for id in 3..(WINDOW as u64 + 10) {
            assert!(seen.admit(&a, 1, id).is_ok());
        }
        assert!(seen.admit(&a, 1, 5).is_err());
        assert!(seen.admit(&a, 1, WINDOW as u64 + 10).is_ok());
    }

    #[test]
    fn senders_beyond_the_cap_are_not_served() {
        let mut seen = Seen::default();
        for n in 0..MAX_SENDERS as u64 {
            assert!(seen.admit(&"a".into(), n, 1).is_ok());
        }
        assert!(seen.admit(&"a".into(), u64::MAX, 1).is_err());
        assert!(seen.admit(&"a".into(), 0, 2).is_ok(), "a known sender");
    }
}
