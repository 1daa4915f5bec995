//! Sends one message to many peers and returns as soon as enough answered.
//!
//! `NetworkManager::broadcast` waits for every peer; a quorum operation must
//! not wait for a dead one. The requests are polled in place (no task per
//! peer: on loopback a task hand-off costs as much as the round trip), and
//! those still in flight when the quorum is reached keep running in one
//! background task, so slow peers still get the message.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

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
    let mut pending: FuturesUnordered<_> = peers
        .iter()
        .map(|peer| {
            let net = network.clone();
            let msg = message.clone();
            let peer = peer.clone();
            async move {
                let r = net.request(&peer, msg, timeout).await;
                (peer, r)
            }
        })
        .collect();
    while let Some((peer, result)) = pending.next().await {
        if judge(&peer, result) {
            break;
        }
    }
    if !pending.is_empty() {
        // Let the stragglers finish (their messages still matter).
        tokio::spawn(async move { while pending.next().await.is_some() {} });
    }
}
