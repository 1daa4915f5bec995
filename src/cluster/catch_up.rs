//! Root catch-up: a node that missed root updates (down, partitioned) learns
//! the newest root from its peers' heartbeat answers.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::debug;

use crate::cluster::acceptor::{Acceptor, newer};
use crate::network::{NetworkError, NetworkManager, PeerId};
use crate::protocol::Message;

/// Asks every peer once; stores the newest root any of them holds.
pub async fn catch_up_once(
    acceptor: &Acceptor,
    network: &Arc<dyn NetworkManager>,
    timeout: Duration,
) -> Result<(), NetworkError> {
    let answers = network.broadcast(acceptor.heartbeat(), timeout).await;
    let mut best = None;
    for (peer, answer) in answers {
        match answer {
            Ok(Message::RootUpdate { root, .. }) if newer(&root, best.as_ref()) => {
                debug!(%peer, ?root, "peer has a newer root");
                best = Some(root);
            }
            Err(NetworkError::Stopped) => return Err(NetworkError::Stopped),
            _ => {}
        }
    }
    // `learn` keeps our root when it is not older.
    if let Some(root) = best
        && let Err(e) = acceptor.learn(&root).await
    {
        debug!(error = %e, "storing a caught-up root failed");
    }
    Ok(())
}

/// Runs [`catch_up_once`] now and every `interval` until the network stops
/// or is dropped; does nothing without `peers` or with a zero interval.
pub fn spawn_catch_up(
    acceptor: Arc<Acceptor>,
    network: Weak<dyn NetworkManager>,
    peers: Vec<PeerId>,
    interval: Duration,
    timeout: Duration,
) {
    if peers.is_empty() || interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        loop {
            let Some(net) = network.upgrade() else { return };
            if catch_up_once(&acceptor, &net, timeout).await.is_err() {
                return;
            }
            drop(net);
            tokio::time::sleep(interval).await;
        }
    });
}
