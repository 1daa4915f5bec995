//! [`MajorityVote`]: the cluster's [`VoteStrategy`] — a single-register
//! consensus in the style of CASPaxos.
//!
//! - **acquire** (prepare): pick a term above every term seen, ask every node
//!   (self included) for a promise with a lease; a majority of grants makes
//!   this node the holder. The voters report their latest roots and the
//!   holder adopts the newest (by `(term, sequence)`). On failure the votes
//!   obtained are released and the attempt is retried after a jittered,
//!   growing backoff until `vote_timeout_ms`.
//! - **commit** (accept): the root, already stored locally through the
//!   acceptor's fence, is sent to every peer; it is acknowledged once a
//!   majority (self included) has stored it.
//! - **release**: frees the lease on every voter at once; a crashed holder's
//!   lease simply expires.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::debug;

use crate::cluster::acceptor::{Acceptor, newer};
use crate::cluster::config::ClusterConfig;
use crate::cluster::fanout::fan_out;
use crate::error::{Error, Result};
use crate::network::{NetworkManager, PeerId};
use crate::protocol::Message;
use crate::types::RootRecord;
use crate::vote::{Grant, VoteRequest, VoteResponse, VoteStrategy};

/// Share of the lease the holder uses before it must renew.
const LEASE_USE: f64 = 0.8;

/// Majority-vote strategy with fencing terms and leases.
#[derive(Debug)]
pub struct MajorityVote {
    config: ClusterConfig,
    acceptor: Arc<Acceptor>,
    network: Arc<dyn NetworkManager>,
    peers: Vec<PeerId>,
    known_term: AtomicU64,
    /// Lease end after a renewal: (term, until).
    renewed: parking_lot::Mutex<Option<(u64, Instant)>>,
}

impl MajorityVote {
    /// A strategy for the node of `acceptor`, reaching peers through `network`.
    pub fn new(
        config: ClusterConfig,
        acceptor: Arc<Acceptor>,
        network: Arc<dyn NetworkManager>,
    ) -> Self {
        let peers = config.peers().map(|p| p.id.clone()).collect();
        MajorityVote {
            config,
            acceptor,
            network,
            peers,
            known_term: AtomicU64::new(0),
            renewed: parking_lot::Mutex::new(None),
        }
    }

    fn note_term(&self, term: u64) {
        self.known_term.fetch_max(term, Ordering::AcqRel);
    }

    /// One prepare round for `term`; `Some(grant)` with a majority.
    async fn try_term(&self, term: u64, renew: bool) -> Result<Option<Grant>> {
        let req = VoteRequest {
            candidate: self.config.server_id.clone(),
            term,
            lease_ms: self.config.lease_ms,
        };
        let sent = crate::cluster::now();
        let local = self.acceptor.vote(&req)?;
        let quorum = self.config.quorum();
        let mut granted_by: Vec<PeerId> = Vec::new();
        let mut votes = usize::from(local.granted);
        let mut latest = local.latest_root.clone();
        let mut refusals = Vec::new();
        let mut highest = local.term;
        if votes < quorum {
            fan_out(
                &self.network,
                &self.peers,
                Message::VoteRequest(req),
                self.config.read_timeout(),
                |peer, answer| {
                    match answer {
                        Ok(Message::VoteResponse(VoteResponse {
                            granted,
                            term: t,
                            latest_root,
                            ..
                        })) => {
                            highest = highest.max(t);
                            if let Some(r) = latest_root
                                && newer(&r, latest.as_ref())
                            {
                                latest = Some(r);
                            }
                            if granted {
                                votes += 1;
                                granted_by.push(peer.clone());
                            } else {
                                refusals.push(format!("{peer} (promised {t})"));
                            }
                        }
                        Ok(other) => refusals.push(format!("{peer}: unexpected {other:?}")),
                        Err(e) => refusals.push(e.to_string()),
                    }
                    votes >= quorum
                },
            )
            .await;
        }
        self.note_term(highest);
        if votes >= quorum {
            let lease = Duration::from_millis(self.config.lease_ms).mul_f64(LEASE_USE);
            debug!(node = %self.config.server_id, term, votes, renew, "grant acquired");
            return Ok(Some(Grant {
                term,
                holder: self.config.server_id.clone(),
                expires_at: Some(sent + lease),
                latest_root: latest,
            }));
        }
        debug!(node = %self.config.server_id, term, votes, ?refusals, "vote failed");
        // Give back what we got so others are not blocked until expiry.
        if local.granted {
            self.acceptor.release(&self.config.server_id, term);
        }
        self.send_release(granted_by, term);
        Ok(None)
    }

    fn send_release(&self, peers: Vec<PeerId>, term: u64) {
        if peers.is_empty() {
            return;
        }
        let net = self.network.clone();
        let msg = Message::Release {
            term,
            holder: self.config.server_id.clone(),
        };
        let timeout = self.config.read_timeout();
        tokio::spawn(async move {
            fan_out(&net, &peers, msg, timeout, |_, _| false).await;
        });
    }
}

#[async_trait]
impl VoteStrategy for MajorityVote {
    async fn acquire(&self) -> Result<Grant> {
        let deadline = crate::cluster::now() + self.config.vote_timeout();
        let mut backoff = Duration::from_millis(2);
        let cap = self.config.retry_interval().max(Duration::from_millis(10));
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let term = self
                .known_term
                .load(Ordering::Acquire)
                .max(self.acceptor.promised())
                + 1;
            if let Some(grant) = self.try_term(term, false).await? {
                return Ok(grant);
            }
            let now = crate::cluster::now();
            if now >= deadline {
                return Err(Error::NotGranted(format!(
                    "no majority of {} nodes within {} ms ({attempts} attempts)",
                    self.config.cluster_size(),
                    self.config.vote_timeout_ms
                )));
            }
            // Jittered exponential backoff, bounded by the deadline.
            let jitter = backoff.mul_f64(0.5 + fastrand::f64());
            tokio::time::sleep(jitter.min(deadline - now)).await;
            backoff = (backoff * 2).min(cap);
        }
    }

    async fn release(&self, grant: &Grant) -> Result<()> {
        self.acceptor.release(&grant.holder, grant.term);
        self.send_release(self.peers.clone(), grant.term);
        Ok(())
    }

    async fn commit(&self, grant: &Grant, root: &RootRecord) -> Result<()> {
        let renewed = match *self.renewed.lock() {
            Some((term, until)) if term == grant.term => Some(until),
            _ => None,
        };
        let expires = grant.expires_at.max(renewed);
        if expires.is_some_and(|e| crate::cluster::now() >= e) {
            // Renew with the same term: voters extend the holder's lease.
            match self.try_term(grant.term, true).await? {
                Some(g) => *self.renewed.lock() = g.expires_at.map(|e| (grant.term, e)),
                None => {
                    return Err(Error::NotGranted(format!(
                        "lease of term {} expired and could not be renewed",
                        grant.term
                    )));
                }
            }
        }
        let quorum = self.config.quorum();
        // The local copy was stored through the acceptor's fence.
        let mut acks = 1usize;
        let mut refusals = Vec::new();
        let mut highest = grant.term;
        if acks < quorum {
            fan_out(
                &self.network,
                &self.peers,
                Message::RootUpdate {
                    term: grant.term,
                    root: root.clone(),
                },
                self.config.read_timeout(),
                |peer, answer| {
                    match answer {
                        Ok(Message::RootAck { accepted: true, .. }) => acks += 1,
                        Ok(Message::RootAck { term, .. }) => {
                            highest = highest.max(term);
                            refusals.push(format!("{peer} refused (promised {term})"));
                        }
                        Ok(other) => refusals.push(format!("{peer}: unexpected {other:?}")),
                        Err(e) => refusals.push(e.to_string()),
                    }
                    acks >= quorum
                },
            )
            .await;
        }
        self.note_term(highest);
        if acks >= quorum {
            Ok(())
        } else {
            Err(Error::NotGranted(format!(
                "root #{} under term {} stored by {acks} of {} nodes, {quorum} needed: {}",
                root.sequence,
                grant.term,
                self.config.cluster_size(),
                refusals.join("; ")
            )))
        }
    }

    async fn handle_vote(&self, request: VoteRequest) -> VoteResponse {
        match self.acceptor.vote(&request) {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "vote refused: cannot store the term ceiling");
                VoteResponse {
                    voter: self.config.server_id.clone(),
                    granted: false,
                    term: self.acceptor.promised(),
                    latest_root: self.acceptor.latest(),
                }
            }
        }
    }
}
