//! A cluster node's readable copy of the root: its own directory's
//! `space_root` (or whatever local register it has) follows the cluster's
//! chosen root, so operator tools reading a stopped node's directory find a
//! root that was committed.
//!
//! The copy is never used for consensus or for reads through the storage
//! (those go to the quorum). A background task reads the quorum's root every
//! `heartbeat_ms` (a linearizable read, so a member cannot make a node copy a
//! root that was never chosen) and stores it when it is newer.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::debug;

use crate::cluster::peer_tier::RootHint;
use crate::cluster::quorum::QuorumRegister;
use crate::root_register::RootRegister;

/// Runs the copy every `interval` until the quorum register is dropped;
/// does nothing with a zero interval.
pub fn spawn_root_copy(
    quorum: Weak<QuorumRegister>,
    local: Arc<dyn RootRegister>,
    hint: RootHint,
    interval: Duration,
) {
    if interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(q) = quorum.upgrade() else { return };
            let chosen = q.read_root().await;
            drop(q);
            match chosen {
                Ok(Some(v)) => {
                    hint.note(&v.root);
                    copy_if_newer(&*local, &v.root).await;
                }
                Ok(None) => {}
                Err(e) => debug!(error = %e, "root copy: quorum read failed"),
            }
        }
    });
}

/// Stores `root` in `local` when it is newer than what `local` holds.
pub async fn copy_if_newer(local: &dyn RootRegister, root: &crate::types::RootRecord) {
    let held = match local.read_root().await {
        Ok(h) => h,
        Err(e) => {
            debug!(error = %e, "root copy: reading the local root failed");
            return;
        }
    };
    if held.as_ref().is_some_and(|h| !root.is_newer_than(&h.root)) {
        return;
    }
    if let Err(e) = local.write_root(root, held.map(|h| h.version)).await {
        debug!(error = %e, "root copy: writing the local root failed");
    }
}
