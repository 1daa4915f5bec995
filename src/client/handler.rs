//! [`ClientHandler`]: serves clients' requests from the node's storage.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use tracing::debug;

use crate::error::{Error, Result};
use crate::network::{MessageHandler, PeerId, is_client_id};
use crate::protocol::{ExpectedRoot, Message};
use crate::storage::{Storage, WeakStorage};
use crate::types::AtomPointer;

/// Serves `Client*` requests from the node's [`Storage`] and passes every
/// other message to `inner` (the cluster's handler); refuses member
/// messages from client links. See the [module docs](super).
pub struct ClientHandler {
    storage: RwLock<Option<WeakStorage>>,
    inner: Arc<dyn MessageHandler>,
}

impl std::fmt::Debug for ClientHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandler")
            .field("attached", &self.storage.read().is_some())
            .finish_non_exhaustive()
    }
}

impl ClientHandler {
    /// Wraps the node's handler `inner`. Client requests are answered with
    /// an error until [`attach`](Self::attach) names the storage.
    pub fn new(inner: Arc<dyn MessageHandler>) -> Self {
        ClientHandler {
            storage: RwLock::new(None),
            inner,
        }
    }

    /// Serves client requests from `storage` (held weakly: the storage's
    /// network manager holds this handler).
    pub fn attach(&self, storage: &Storage) {
        *self.storage.write() = Some(storage.downgrade());
    }

    fn storage(&self) -> Option<Storage> {
        self.storage.read().as_ref().and_then(WeakStorage::upgrade)
    }

    async fn serve(&self, message: Message) -> Result<Message> {
        let storage = self.storage().ok_or_else(|| {
            Error::invalid(
                "client request",
                "this node is not serving clients (starting or stopping)",
            )
        })?;
        Ok(match message {
            Message::ClientPush { format, data, sync } => {
                let pointer = storage.push_record(format, &data).await?;
                if sync {
                    storage.flush_wal().await?;
                }
                Message::ClientPushed { pointer }
            }
            Message::ClientGet { pointer } => {
                let (format, data) = storage.get_record(pointer).await?;
                Message::ClientRecord { format, data }
            }
            Message::ClientReadRoot => Message::ClientRoot(storage.read_current_root().await?),
            Message::ClientPublish { pointer, expected } => {
                publish(&storage, pointer, expected).await?
            }
            Message::ClientListWals => Message::ClientWals(
                storage
                    .list_wals()
                    .await?
                    .into_iter()
                    .map(|w| (w.id, w.len))
                    .collect(),
            ),
            other => Message::Error {
                message: format!("not a client request: {other:?}"),
            },
        })
    }
}

/// A client's publish: the atom must be readable, then the update runs
/// through the node's grant as an embedded one does.
async fn publish(
    storage: &Storage,
    pointer: AtomPointer,
    expected: Option<ExpectedRoot>,
) -> Result<Message> {
    storage.get_record(pointer).await.map_err(|e| {
        Error::invalid(
            "root",
            format!("{pointer} cannot be published: its record is not readable: {e}"),
        )
    })?;
    let update = storage.begin_root_update().await?;
    if let Some(expected) = expected
        && !expected.matches(update.current())
    {
        let current = update.current().cloned();
        update.abort().await;
        return Ok(Message::ClientConflict { current });
    }
    Ok(Message::ClientPublished(update.publish(pointer).await?))
}

#[async_trait]
impl MessageHandler for ClientHandler {
    async fn handle(&self, from: PeerId, message: Message) -> Option<Message> {
        if message.is_client_request() {
            return Some(self.serve(message).await.unwrap_or_else(|e| {
                debug!(%from, error = %e, "client request failed");
                Message::Error {
                    message: e.to_string(),
                }
            }));
        }
        if is_client_id(&from)
            && !matches!(
                message,
                Message::PageRequest { .. } | Message::StatusRequest
            )
        {
            return Some(Message::Error {
                message: "clients cannot vote, accept or send member messages".into(),
            });
        }
        if let Message::ReclaimQuery { wals } = &message {
            // A member's question about this node's storage: without the
            // storage there is no answer (and nothing may be reclaimed).
            return Some(match self.storage() {
                Some(s) => match s.reclaim_objections(wals).await {
                    Ok(keep) => Message::ReclaimKeep(keep),
                    // Without its checkpoints the node cannot say what it
                    // needs: nothing may go.
                    Err(e) => Message::Error {
                        message: format!("cannot read this node's checkpoints: {e}"),
                    },
                },
                None => Message::Error {
                    message: "this node is starting or stopping: cannot answer a reclaim query"
                        .into(),
                },
            });
        }
        if let Message::ForwardRoot {
            pointer,
            term,
            nonce,
            id,
        } = message
        {
            // A member's blind root write for this node's grant. Without
            // the storage its outcome is unknown (a copy may have been
            // served before it closed).
            let forward = crate::root_forward::Forward {
                pointer,
                term,
                nonce,
                id,
            };
            return Some(match self.storage() {
                Some(s) => s.serve_forward(&from, forward).await,
                None => Message::Error {
                    message: "this node is starting or stopping".into(),
                },
            });
        }
        self.inner.handle(from, message).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::builder::StorageBuilder;
    use crate::types::{Format, RootRecord, WalId};

    /// Counts what reaches the wrapped (member) handler.
    #[derive(Debug, Default)]
    struct Inner(AtomicUsize);

    #[async_trait]
    impl MessageHandler for Inner {
        async fn handle(&self, _from: PeerId, _message: Message) -> Option<Message> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Some(Message::Ack)
        }
    }

    async fn ask(h: &ClientHandler, message: Message) -> Message {
        h.handle("client~n1".into(), message).await.unwrap()
    }

    #[tokio::test]
    async fn clients_push_read_and_publish_through_the_storage() {
        let inner = Arc::new(Inner::default());
        let h = ClientHandler::new(inner.clone());
        // Not attached yet: an error, not a panic or a hang.
        assert!(matches!(
            ask(&h, Message::ClientReadRoot).await,
            Message::Error { .. }
        ));
        let storage = StorageBuilder::in_memory().build().await.unwrap();
        h.attach(&storage);
        let Message::ClientPushed { pointer } = ask(
            &h,
            Message::ClientPush {
                format: Format::Json,
                data: bytes::Bytes::from_static(b"{\"a\":1}"),
                sync: true,
            },
        )
        .await
        else {
            panic!("push failed");
        };
        assert_eq!(
            ask(&h, Message::ClientGet { pointer }).await,
            Message::ClientRecord {
                format: Format::Json,
                data: bytes::Bytes::from_static(b"{\"a\":1}"),
            }
        );
        assert_eq!(
            ask(&h, Message::ClientReadRoot).await,
            Message::ClientRoot(None)
        );
        let publish = |expected| Message::ClientPublish { pointer, expected };
        let Message::ClientPublished(root) = ask(&h, publish(Some(ExpectedRoot::Absent))).await
        else {
            panic!("conditional publish on an empty space failed");
        };
        // The same expectation again: the root moved, nothing published.
        assert_eq!(
            ask(&h, publish(Some(ExpectedRoot::Absent))).await,
            Message::ClientConflict {
                current: Some(root.clone())
            }
        );
        let expected = ExpectedRoot::Root {
            pointer,
            sequence: Some(root.sequence),
        };
        let Message::ClientPublished(next) = ask(&h, publish(Some(expected))).await else {
            panic!("compare-and-swap on the current root failed");
        };
        assert_eq!(next.sequence, root.sequence + 1);
        // A pointer to nothing is never published.
        let nowhere = AtomPointer::new(WalId::new_random(), 32);
        assert!(matches!(
            ask(
                &h,
                Message::ClientPublish {
                    pointer: nowhere,
                    expected: None
                }
            )
            .await,
            Message::Error { .. }
        ));
        assert_eq!(storage.read_current_root().await.unwrap(), Some(next));
        assert_eq!(inner.0.load(Ordering::SeqCst), 0);
        storage.close().await.unwrap();
        // Closed: refused, not served.
        assert!(matches!(
            ask(&h, Message::ClientReadRoot).await,
            Message::Error { .. }
        ));
    }

    #[tokio::test]
    async fn a_client_never_reaches_the_member_handler_with_member_messages() {
        let inner = Arc::new(Inner::default());
        let h = ClientHandler::new(inner.clone());
        let root = RootRecord::new(AtomPointer::new(WalId::new_random(), 32), 1, 1, None);
        for m in [
            Message::Prepare {
                term: 9,
                lease_ms: 1000,
            },
            Message::Accept { term: 9, root },
            Message::QueryAccepted,
            Message::Release {
                term: 9,
                holder: "client~n1".into(),
            },
            Message::Heartbeat {
                node: "n1".into(),
                root_sequence: 1,
                term: 9,
            },
        ] {
            let answer = ask(&h, m.clone()).await;
            assert!(matches!(answer, Message::Error { .. }), "{m:?}: {answer:?}");
        }
        assert_eq!(inner.0.load(Ordering::SeqCst), 0);
        // Read-only queries pass; members' messages pass.
        ask(&h, Message::StatusRequest).await;
        let page = Message::PageRequest {
            wal: WalId::new_random(),
            offset: 0,
            len: 10,
        };
        ask(&h, page).await;
        h.handle(
            "n2".into(),
            Message::Prepare {
                term: 9,
                lease_ms: 1000,
            },
        )
        .await;
        assert_eq!(inner.0.load(Ordering::SeqCst), 3);
    }
}
