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
        self.inner.handle(from, message).await
    }
}
