//! [`VoteConfig`]: who may update the root (`[vote]`, tagged by `type`;
//! default `majority` in a cluster, `single_node` otherwise).
//!
//! | `type` | fields | strategy |
//! |---|---|---|
//! | `single_node` | — | [`SingleNodeVote`](crate::SingleNodeVote) (standalone, cloud) |
//! | `majority` | `lease_ms`, `vote_timeout_ms` (override `[cluster]`) | the [`QuorumRegister`](crate::cluster::QuorumRegister) of the nodes' acceptors |

use std::fmt::Debug;

use dyn_clone::DynClone;
use serde::{Deserialize, Serialize};

use crate::builder::StorageBuilder;
use crate::cluster::ClusterConfig;
use crate::error::{Error, Result};

/// The `[vote]` section: picks the node's vote strategy.
#[typetag::serde(tag = "type")]
pub trait VoteConfig: DynClone + Debug + Send + Sync {
    /// Adjusts the cluster settings (`None`: not a cluster node) and sets
    /// the strategy on `builder`. Fails when the strategy does not fit.
    fn apply(
        &self,
        builder: StorageBuilder,
        cluster: Option<&mut ClusterConfig>,
    ) -> Result<StorageBuilder>;
}

dyn_clone::clone_trait_object!(VoteConfig);

/// `type = "single_node"`: the grant is always available; mutual exclusion
/// comes from the provider (file lock, compare-and-swap).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleNodeVoteConfig {}

#[typetag::serde(name = "single_node")]
impl VoteConfig for SingleNodeVoteConfig {
    fn apply(
        &self,
        builder: StorageBuilder,
        cluster: Option<&mut ClusterConfig>,
    ) -> Result<StorageBuilder> {
        if cluster.is_some() {
            return Err(Error::invalid(
                "vote",
                "single_node cannot guard a cluster's root: use type = \"majority\"",
            ));
        }
        Ok(builder)
    }
}

/// `type = "majority"`: prepare/promise with fencing terms and leases among
/// the `[cluster]` members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MajorityVoteConfig {
    /// Lease of a grant (default: `cluster.lease_ms`, 5 000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// How long an acquire may take (default: `cluster.vote_timeout_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote_timeout_ms: Option<u64>,
}

#[typetag::serde(name = "majority")]
impl VoteConfig for MajorityVoteConfig {
    fn apply(
        &self,
        builder: StorageBuilder,
        cluster: Option<&mut ClusterConfig>,
    ) -> Result<StorageBuilder> {
        let Some(cluster) = cluster else {
            return Err(Error::invalid(
                "vote",
                "majority needs a [cluster] section listing the servers",
            ));
        };
        if let Some(ms) = self.lease_ms {
            cluster.lease_ms = ms;
        }
        if let Some(ms) = self.vote_timeout_ms {
            cluster.vote_timeout_ms = ms;
        }
        // The builder's default for a cluster is the majority vote wired to
        // the node's acceptor and network.
        Ok(builder)
    }
}
