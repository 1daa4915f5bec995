//! [`ClusterHandler`]: answers peers' (and operator tools') messages on a
//! cluster node. Client links (ids from
//! [`client_id`](crate::network::client_id)) get pages and the status only.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::debug;

use crate::cluster::acceptor::{AcceptOutcome, Acceptor};
use crate::cluster::peer_tier::MAX_REMOTE_READ;
use crate::error::Error;
use crate::network::{MessageHandler, PeerId};
use crate::protocol::{Message, NodeStatus};
use crate::types::WalId;
use crate::wal_store::WalStore;

/// The message handler of a cluster node: prepares, accepts, root queries,
/// releases, pages, heartbeats and status requests. Every consensus message
/// is decided by the node's [`Acceptor`] for the *authenticated* sender.
#[derive(Debug)]
pub struct ClusterHandler {
    acceptor: Arc<Acceptor>,
    local: Arc<dyn WalStore>,
}

impl ClusterHandler {
    /// A handler answering from `acceptor` and the node's `local` WAL store
    /// (never from peers, so requests cannot loop).
    pub fn new(acceptor: Arc<Acceptor>, local: Arc<dyn WalStore>) -> Self {
        ClusterHandler { acceptor, local }
    }

    async fn page(&self, wal: WalId, offset: u64, len: u64) -> Message {
        let data = match self.local.read(wal, offset, len.min(MAX_REMOTE_READ)).await {
            Ok(d) => Some(d),
            Err(Error::WalNotFound { .. }) => None,
            Err(Error::OffsetOutOfRange { .. }) => Some(bytes::Bytes::new()),
            Err(e) => {
                return Message::Error {
                    message: format!("reading {wal} at {offset}: {e}"),
                };
            }
        };
        Message::PageResponse { wal, offset, data }
    }

    fn heartbeat(&self) -> Message {
        let snap = self.acceptor.snapshot();
        Message::Heartbeat {
            node: self.acceptor.node_id().to_string(),
            root_sequence: snap.accepted.as_ref().map_or(0, |a| a.root.sequence),
            term: snap.promised,
        }
    }
}

#[async_trait]
impl MessageHandler for ClusterHandler {
    async fn handle(&self, from: PeerId, message: Message) -> Option<Message> {
        // A client link (see `network::client_id`) is never a member: it may
        // read pages and ask for the status, nothing that votes or accepts.
        if crate::network::is_client_id(&from)
            && !matches!(
                message,
                Message::PageRequest { .. } | Message::StatusRequest
            )
        {
            debug!(%from, "refused a member's message from a client");
            return Some(Message::Error {
                message: "clients cannot vote, accept or send member messages".into(),
            });
        }
        Some(match message {
            Message::Prepare { term, lease_ms } => {
                match self.acceptor.prepare(&from, term, lease_ms).await {
                    Ok(p) => Message::Promise(p),
                    Err(e) => Message::Error {
                        message: format!("prepare refused: {e}"),
                    },
                }
            }
            Message::Accept { term, root } => {
                let (accepted, promised) = match self.acceptor.accept(&from, term, &root).await {
                    Ok(AcceptOutcome::Accepted) => (true, self.acceptor.snapshot().promised),
                    Ok(AcceptOutcome::Rejected { promised, .. }) => (false, promised),
                    Err(e) => {
                        debug!(%from, error = %e, "accept not stored");
                        (false, self.acceptor.snapshot().promised)
                    }
                };
                Message::Accepted {
                    term,
                    accepted,
                    promised,
                }
            }
            Message::QueryAccepted => Message::AcceptedValue(self.acceptor.query().await),
            Message::PageRequest { wal, offset, len } => self.page(wal, offset, len).await,
            Message::Heartbeat { .. } => self.heartbeat(),
            Message::Release { term, holder } => {
                if holder == from {
                    self.acceptor.release(&from, term).await;
                }
                self.heartbeat()
            }
            Message::StatusRequest => {
                let snap = self.acceptor.snapshot();
                Message::Status(NodeStatus {
                    node: self.acceptor.node_id().to_string(),
                    term: snap.promised,
                    root: snap.accepted.map(|a| a.root),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                })
            }
            other => Message::Error {
                message: format!("unexpected message {other:?}"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::memory::MemoryBlockProvider;
    use crate::cluster::acceptor_store::MemoryAcceptorStore;

    /// Even without the client wrapper, a client link cannot vote.
    #[tokio::test]
    async fn a_client_id_gets_no_promise_and_changes_nothing() {
        let acceptor = Acceptor::open(
            "n1".into(),
            Arc::new(MemoryAcceptorStore::default()),
            std::time::Duration::from_secs(5),
            Arc::new(crate::clock::TokioClock),
        )
        .await
        .unwrap();
        let h = ClusterHandler::new(acceptor.clone(), Arc::new(MemoryBlockProvider::new()));
        let prepare = Message::Prepare {
            term: 7,
            lease_ms: 1000,
        };
        let answer = h.handle("client~n2".into(), prepare.clone()).await;
        assert!(matches!(answer, Some(Message::Error { .. })), "{answer:?}");
        assert_eq!(acceptor.snapshot().promised, 0);
        let answer = h.handle("n2".into(), prepare).await;
        assert!(
            matches!(answer, Some(Message::Promise(ref p)) if p.granted),
            "{answer:?}"
        );
        assert!(matches!(
            h.handle("client~n2".into(), Message::StatusRequest).await,
            Some(Message::Status(_))
        ));
    }
}
