//! [`VoteStrategy`]: who may perform an exclusive operation (a root update).
//!
//! A strategy hands out [`Grant`]s carrying a fencing term and takes them
//! back. That is all the engine asks of it: the root itself is written
//! through a [`RootRegister`](crate::RootRegister), and in a cluster the
//! voters' side (promise and accept) is owned by one
//! [`Acceptor`](crate::cluster::Acceptor) per node. [`SingleNodeVote`]
//! serves the standalone and cloud variants; the cluster variants use the
//! [`QuorumRegister`](crate::cluster::QuorumRegister), which is both their
//! vote strategy (the prepare phase) and their root register (the accept
//! phase).

use std::fmt;
use std::time::Instant;

use async_trait::async_trait;

use crate::error::Result;
use crate::root_register::VersionedRoot;

/// The right to perform exclusive operations until released or expired.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// Fencing term: anything stamped with an older term is rejected. Term 0
    /// means "no fencing" (single-node strategies): roots published under it
    /// carry the term of the root they build on.
    pub term: u64,
    /// Node holding the grant.
    pub holder: String,
    /// When the lease ends unless renewed (`None`: until released), on the
    /// strategy's clock.
    pub expires_at: Option<Instant>,
    /// The root the holder must build on, when obtaining the grant
    /// established it (a quorum's prepare phase learns the chosen root):
    /// `Some(None)` means "no root yet". `None`: read the root register.
    pub established_root: Option<Option<VersionedRoot>>,
}

/// Decides who may perform an exclusive operation.
///
/// # Contract
///
/// For any term above 0 at most one node holds a grant; a holder that
/// crashes loses it when its lease expires; [`release`](Self::release)
/// frees it at once, or keeps it a moment for this node's next `acquire`
/// (which may then return the same term), and
/// [`let_go`](Self::let_go) frees a kept one at once. The methods are
/// cancel-safe: a dropped `acquire` leaves nothing held for longer than the
/// lease.
///
/// `protobase::conformance::vote` (feature `conformance`) checks this for
/// any implementation.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait VoteStrategy: Send + Sync + fmt::Debug {
    /// Obtains a grant (waiting, or failing with
    /// [`Error::NotGranted`](crate::Error::NotGranted) or
    /// [`Error::Network`](crate::Error::Network)).
    async fn acquire(&self) -> Result<Grant>;
    /// Gives the grant back. A strategy may keep it a moment for a quick
    /// re-acquire by this node (a leader lease); [`let_go`](Self::let_go)
    /// ends that at once.
    async fn release(&self, grant: &Grant) -> Result<()>;
    /// Gives back at once a grant kept after [`release`](Self::release)
    /// (the storage is closing: other nodes need not wait for it). The
    /// default keeps none.
    async fn let_go(&self) {}

    /// The node holding a grant right now as far as this node can tell,
    /// with the grant's term: a blind root write may be handed to it
    /// instead of taking the grant here ([`crate::root_forward`]), and it
    /// publishes a root handed to it only under that very term. The default
    /// knows none.
    ///
    /// A strategy that reports `(node, term)` promises that `node` had
    /// obtained the grant of `term` before the report (not merely asked
    /// for it), that no grant of any node obtained later can be followed by
    /// a root written under `term`, and that a term passed to
    /// [`fence`](Self::fence), or one this process may have reported before
    /// it started, is never reported again.
    fn holder(&self) -> Option<(String, u64)> {
        None
    }

    /// A root handed to the holder of `term` has an unknown outcome: from
    /// now on [`holder`](Self::holder) reports only newer terms, so that
    /// the root, should it still arrive, cannot be published after a later
    /// root of this process. The default keeps nothing (it reports no
    /// holder).
    fn fence(&self, _term: u64) {}
}

/// The one-node strategy: the grant is always available (term 0). Mutual
/// exclusion between processes comes from the register's root lock.
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
            established_root: None,
        })
    }

    async fn release(&self, _grant: &Grant) -> Result<()> {
        Ok(())
    }
}
