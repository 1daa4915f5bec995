//! [`VoteStrategy`]: who may perform an exclusive operation (a root update).
//!
//! The proposer side acquires a [`Grant`] carrying a fencing term and releases
//! it; [`commit`](VoteStrategy::commit) is the accept phase that makes a root
//! published under a grant known to the voters (a no-op on one node). The
//! voter side answers peers' [`VoteRequest`]s. [`SingleNodeVote`] serves the
//! standalone and cloud variants; the majority vote of the cluster variants
//! implements the same trait.

use std::fmt;
use std::time::Instant;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::types::RootRecord;

/// The right to perform exclusive operations until released or expired.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// Fencing term: anything stamped with an older term is rejected.
    pub term: u64,
    /// Node holding the grant.
    pub holder: String,
    /// When the lease ends unless renewed (`None`: until released). The
    /// cluster's majority vote reads tokio's clock
    /// (`tokio::time::Instant::now().into_std()`), so a paused test clock
    /// moves it like every other timer.
    pub expires_at: Option<Instant>,
    /// Newest root reported by the voters; the holder builds on it.
    pub latest_root: Option<RootRecord>,
}

/// A candidate's request for votes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRequest {
    /// Node asking.
    pub candidate: String,
    /// Term it proposes.
    pub term: u64,
    /// Lease length it asks for.
    pub lease_ms: u64,
}

/// A voter's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteResponse {
    /// Node answering.
    pub voter: String,
    /// Whether the vote is granted.
    pub granted: bool,
    /// Highest term the voter has promised.
    pub term: u64,
    /// The voter's latest root.
    pub latest_root: Option<RootRecord>,
}

/// Decides who may perform an exclusive operation.
///
/// # Contract
///
/// For any term at most one node holds a grant; a holder that crashes loses
/// it when its lease expires; [`release`](Self::release) frees it at once.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait VoteStrategy: Send + Sync + fmt::Debug {
    /// Proposer side: obtains a grant (waiting or failing with
    /// [`Error::NotGranted`](crate::Error::NotGranted)).
    async fn acquire(&self) -> Result<Grant>;
    /// Gives the grant back.
    async fn release(&self, grant: &Grant) -> Result<()>;
    /// Accept phase: makes `root`, published under `grant`, known to the
    /// voters before the update is acknowledged.
    async fn commit(&self, grant: &Grant, root: &RootRecord) -> Result<()>;
    /// Voter side: answers a peer's request.
    async fn handle_vote(&self, request: VoteRequest) -> VoteResponse;
}

/// The one-node strategy: the grant is always available (term 0). Mutual
/// exclusion between processes comes from the provider's root lock.
#[derive(Debug, Clone)]
pub struct SingleNodeVote {
    node_id: String,
}

impl SingleNodeVote {
    /// A strategy for the node `node_id`.
    pub fn new(node_id: impl Into<String>) -> Self {
        SingleNodeVote {
            node_id: node_id.into(),
        }
    }
}

#[async_trait]
impl VoteStrategy for SingleNodeVote {
    async fn acquire(&self) -> Result<Grant> {
        Ok(Grant {
            term: 0,
            holder: self.node_id.clone(),
            expires_at: None,
            latest_root: None,
        })
    }

    async fn release(&self, _grant: &Grant) -> Result<()> {
        Ok(())
    }

    async fn commit(&self, _grant: &Grant, _root: &RootRecord) -> Result<()> {
        Ok(())
    }

    async fn handle_vote(&self, request: VoteRequest) -> VoteResponse {
        // A standalone node is in no cluster: it never votes for anyone.
        VoteResponse {
            voter: self.node_id.clone(),
            granted: false,
            term: request.term,
            latest_root: None,
        }
    }
}
