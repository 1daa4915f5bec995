//! [`ClusterHandler`]: answers peers' (and operator tools') messages on a
//! cluster node.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::debug;

use crate::block_provider::BlockProvider;
use crate::cluster::acceptor::{AcceptOutcome, Acceptor, root_order};
use crate::cluster::provider::MAX_REMOTE_READ;
use crate::error::Error;
use crate::network::{MessageHandler, PeerId};
use crate::protocol::{Message, NodeStatus};
use crate::types::WalId;

/// The message handler of a cluster node: votes, root updates, pages,
/// heartbeats, releases and status requests.
#[derive(Debug)]
pub struct ClusterHandler {
    acceptor: Arc<Acceptor>,
    local: Arc<dyn BlockProvider>,
}

impl ClusterHandler {
    /// A handler answering from `acceptor` and the node's `local` provider
    /// (never from peers, so requests cannot loop).
    pub fn new(acceptor: Arc<Acceptor>, local: Arc<dyn BlockProvider>) -> Self {
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
}

#[async_trait]
impl MessageHandler for ClusterHandler {
    async fn handle(&self, from: PeerId, message: Message) -> Option<Message> {
        Some(match message {
            Message::VoteRequest(req) => match self.acceptor.vote(&req) {
                Ok(r) => Message::VoteResponse(r),
                Err(e) => Message::Error {
                    message: format!("vote refused: {e}"),
                },
            },
            Message::RootUpdate { term, root } => {
                let accepted = match self.acceptor.accept_from_holder(term, &root).await {
                    Ok(AcceptOutcome::Accepted) => true,
                    Ok(AcceptOutcome::Rejected { .. }) => false,
                    Err(e) => {
                        debug!(%from, error = %e, "root update not stored");
                        false
                    }
                };
                let latest = self.acceptor.latest();
                Message::RootAck {
                    term: self.acceptor.promised(),
                    sequence: latest.map_or(0, |r| r.sequence),
                    accepted,
                }
            }
            Message::PageRequest { wal, offset, len } => self.page(wal, offset, len).await,
            Message::Heartbeat {
                root_sequence,
                term,
                ..
            } => match self.acceptor.latest() {
                // Help a peer that is behind catch up.
                Some(r) if root_order(&r) > (term, root_sequence) => Message::RootUpdate {
                    term: r.term,
                    root: r,
                },
                _ => self.acceptor.heartbeat(),
            },
            Message::Release { term, holder } => {
                if holder == from {
                    self.acceptor.release(&holder, term);
                }
                self.acceptor.heartbeat()
            }
            Message::StatusRequest => Message::Status(NodeStatus {
                node: self.acceptor.node_id().to_string(),
                term: self.acceptor.promised(),
                root: self.acceptor.latest(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
            other => Message::Error {
                message: format!("unexpected message {other:?}"),
            },
        })
    }
}
