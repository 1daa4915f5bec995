//! An outbound TCP connection carrying many requests at once: requests go
//! out through its [`FrameWriter`], a reader task hands each response to the
//! request waiting for its id.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::BufReader;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tracing::{debug, trace, warn};

use super::frame_writer::FrameWriter;
use super::{IO_BUFFER, ReadEnd};
use crate::network::{NetworkError, PeerId};
use crate::protocol::Message;
use crate::transports::common::LinkConnection;
use crate::wire::{self, WireError};

/// A configured peer and its connection.
pub(super) type PeerSlot = crate::transports::common::PeerSlot<Arc<Conn>>;

type Pending = HashMap<u64, oneshot::Sender<Result<Message, NetworkError>>>;

/// An outbound connection: requests go out through its writer, responses
/// are matched by the reader task.
pub(crate) struct Conn {
    run_id: u64,
    peer: PeerId,
    /// `None` once closed.
    pending: Mutex<Option<Pending>>,
    writer: Arc<FrameWriter>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl LinkConnection for Arc<Conn> {
    fn usable(&self, run_id: u64) -> bool {
        self.is_open() && self.run_id == run_id
    }
    fn discard(&self, reason: &str) {
        self.close(reason);
    }
}

impl Conn {
    /// An open connection of run `run_id` writing through `writer`.
    pub(super) fn new(run_id: u64, peer: PeerId, writer: Arc<FrameWriter>) -> Arc<Self> {
        Arc::new(Conn {
            run_id,
            peer,
            pending: Mutex::new(Some(HashMap::new())),
            writer,
            tasks: Mutex::new(Vec::new()),
        })
    }

    fn is_open(&self) -> bool {
        self.pending.lock().is_some()
    }

    fn register(
        &self,
        request_id: u64,
    ) -> Option<oneshot::Receiver<Result<Message, NetworkError>>> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().as_mut()?.insert(request_id, tx);
        Some(rx)
    }

    fn forget(&self, request_id: u64) {
        if let Some(pending) = self.pending.lock().as_mut() {
            pending.remove(&request_id);
        }
    }

    /// Hands a response to its request; false when nobody waits for it.
    fn complete(&self, request_id: u64, message: Message) -> bool {
        let tx = self
            .pending
            .lock()
            .as_mut()
            .and_then(|pending| pending.remove(&request_id));
        match tx {
            Some(tx) => tx.send(Ok(message)).is_ok(),
            None => false,
        }
    }

    /// Keeps `task` (a writer or reader) to abort when the connection
    /// closes.
    pub(super) fn adopt(&self, task: AbortHandle) {
        if self.is_open() {
            self.tasks.lock().push(task);
        } else {
            task.abort();
        }
    }

    /// Closes the connection: waiting requests fail with `Unreachable`, the
    /// writer and reader tasks end.
    pub(super) fn close(&self, reason: &str) {
        let pending = self.pending.lock().take();
        self.writer.close(reason);
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        for (_, tx) in pending.into_iter().flatten() {
            let _ = tx.send(Err(NetworkError::Unreachable {
                peer: self.peer.clone(),
                reason: reason.to_owned(),
            }));
        }
    }

    /// Sends one request and waits for its response (no timeout here).
    pub(super) async fn exchange(
        &self,
        request_id: u64,
        frame: Vec<u8>,
    ) -> Result<Message, NetworkError> {
        let closed = || NetworkError::Unreachable {
            peer: self.peer.clone(),
            reason: "connection closed".into(),
        };
        let rx = self.register(request_id).ok_or_else(closed)?;
        let _guard = PendingGuard {
            conn: self,
            request_id,
        };
        if let Err(why) = self.writer.send(frame).await {
            // A failed write breaks the stream for every request on it.
            self.close(&why);
            return Err(NetworkError::Unreachable {
                peer: self.peer.clone(),
                reason: why,
            });
        }
        rx.await.unwrap_or_else(|_| Err(closed()))
    }
}

/// Removes a request's entry when its future ends (answered, timed out or
/// cancelled).
struct PendingGuard<'a> {
    conn: &'a Conn,
    request_id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.conn.forget(self.request_id);
    }
}

/// Reader task of an outbound connection.
pub(super) async fn read_responses(
    reader: ReadEnd,
    conn: Arc<Conn>,
    slot: Arc<PeerSlot>,
    max_frame_bytes: usize,
) {
    let mut reader = BufReader::with_capacity(IO_BUFFER, reader);
    let reason = loop {
        match wire::read_frame(&mut reader, max_frame_bytes).await {
            Ok(envelope) => {
                if conn.complete(envelope.request_id, envelope.message) {
                    slot.set_alive(true);
                } else {
                    trace!(
                        request_id = envelope.request_id,
                        "response nobody waits for (timed out?)"
                    );
                }
            }
            Err(WireError::Closed) => {
                debug!("peer closed the connection");
                break "connection closed by peer".to_owned();
            }
            Err(e) if e.is_malformed() => {
                warn!(error = %e, "malformed frame from peer; closing the connection");
                break format!("malformed frame: {e}");
            }
            Err(e) => {
                debug!(error = %e, "read failed; closing");
                break format!("read failed: {e}");
            }
        }
    };
    slot.set_alive(false);
    conn.close(&reason);
}
