//! Sends one message to many peers and returns as soon as enough answered.
//!
//! `NetworkManager::broadcast` waits for every peer; a quorum operation must
//! not wait for a dead one. The requests still in flight when the quorum is
//! reached keep running in the background, so slow peers still get the
//! message.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::network::{NetworkError, NetworkManager, PeerId};
use crate::protocol::Message;

/// Sends `message` to `peers`; calls `judge` on each answer in arrival order
/// until it returns `true` (enough) or every peer answered.
pub(crate) async fn fan_out(
    network: &Arc<dyn NetworkManager>,
    peers: &[PeerId],
    message: Message,
    timeout: Duration,
    mut judge: impl FnMut(&PeerId, Result<Message, NetworkError>) -> bool,
) {
    let mut set = JoinSet::new();
    for peer in peers {
        let net = network.clone();
        let msg = message.clone();
        let peer = peer.clone();
        set.spawn(async move {
            let r = net.request(&peer, msg, timeout).await;
            (peer, r)
        });
    }
    while let Some(joined) = set.join_next().await {
        let Ok((peer, result)) = joined else { continue };
        if judge(&peer, result) {
            break;
        }
    }
    if !set.is_empty() {
        // Let the stragglers finish (their messages still matter).
        tokio::spawn(async move { while set.join_next().await.is_some() {} });
    }
}
