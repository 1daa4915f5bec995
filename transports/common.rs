//! What the transports share.
//!
//! [`TaskSet`] is a closable set of tasks: the transports' way to keep the
//! promise that no handler runs after `stop` returns. Every task a transport
//! starts for one run of a node (listener, connection readers and writers,
//! handler calls) is spawned here. [`TaskSet::shutdown`] closes the set, so
//! later spawns are refused, aborts every task and waits until each has been
//! dropped: when it returns, none of them is running or will run again.

use std::future::Future;

use parking_lot::Mutex;
use tokio::task::{AbortHandle, JoinSet};

/// Tasks of one run of a node.
#[derive(Debug)]
pub(crate) struct TaskSet {
    set: Mutex<Option<JoinSet<()>>>,
}

impl TaskSet {
    /// An open, empty set.
    pub(crate) fn new() -> Self {
        TaskSet {
            set: Mutex::new(Some(JoinSet::new())),
        }
    }

    /// Spawns `task` unless the set is closed (then `None`, and the task is
    /// dropped unpolled).
    pub(crate) fn spawn<F>(&self, task: F) -> Option<AbortHandle>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut guard = self.set.lock();
        let set = guard.as_mut()?;
        // Reap finished tasks so a long-running node does not accumulate them.
        while let Some(result) = set.try_join_next() {
            if let Err(e) = result
                && e.is_panic()
            {
                tracing::error!(error = %e, "transport task panicked");
            }
        }
        Some(set.spawn(task))
    }

    /// Closes the set, aborts every task and waits until all are gone.
    ///
    /// Must not be awaited from inside one of the set's own tasks.
    pub(crate) async fn shutdown(&self) {
        let set = self.set.lock().take();
        if let Some(mut set) = set {
            set.shutdown().await;
        }
    }

    /// Closes the set and aborts every task without waiting (for `Drop` and
    /// other synchronous paths).
    pub(crate) fn abort(&self) {
        let set = self.set.lock().take();
        drop(set);
    }
}

/// Runs one request per peer concurrently and returns each peer's outcome in
/// the order of `peers`. Dropping the future cancels the requests still
/// running.
pub(crate) async fn broadcast_with<F, Fut>(
    peers: Vec<crate::PeerId>,
    request: F,
) -> Vec<(
    crate::PeerId,
    Result<crate::protocol::Message, crate::NetworkError>,
)>
where
    F: Fn(crate::PeerId) -> Fut,
    Fut: Future<Output = Result<crate::protocol::Message, crate::NetworkError>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for (index, peer) in peers.iter().enumerate() {
        let fut = request(peer.clone());
        set.spawn(async move { (index, fut.await) });
    }
    let mut results: Vec<Option<Result<_, _>>> = peers.iter().map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((index, result)) = joined
            && let Some(slot) = results.get_mut(index)
        {
            *slot = Some(result);
        }
    }
    peers
        .into_iter()
        .zip(results)
        .map(|(peer, result)| {
            let result = result.unwrap_or_else(|| {
                Err(crate::NetworkError::Unreachable {
                    peer: peer.clone(),
                    reason: "request task failed".into(),
                })
            });
            (peer, result)
        })
        .collect()
}

/// Encodes the response to request `request_id`; a handler's answer too large
/// for a frame becomes a short [`Message::Error`](crate::protocol::Message::Error)
/// so the requester learns at once.
pub(crate) fn encode_response(
    request_id: u64,
    response: crate::protocol::Message,
    max_frame_bytes: usize,
) -> Vec<u8> {
    use crate::protocol::{Envelope, Message, PROTOCOL_VERSION};
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
        request_id,
        message: response,
    };
    match crate::wire::encode_frame(&envelope, max_frame_bytes) {
        Ok(frame) => frame,
        Err(e) => {
            tracing::warn!(request_id, error = %e, "response not sent");
            let envelope = Envelope {
                message: Message::Error {
                    message: format!("response not sent: {e}"),
                },
                ..envelope
            };
            // A short error fits any sensible limit; if not, the empty frame
            // is refused by the requester as a protocol error.
            crate::wire::encode_frame(&envelope, max_frame_bytes).unwrap_or_default()
        }
    }
}
