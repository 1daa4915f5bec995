//! [`ClusterBlockProvider`]: a node's local provider, plus the cluster.
//!
//! - Reads this node cannot serve from its own storage go to the peers
//!   (when the local provider is backed by an object store, before the
//!   store, and with the store as the last resort): the WAL's last
//!   known holder first, then every other peer, with timeouts and retries. A
//!   peer's "not found" only moves on to the next peer, so it never hides
//!   another peer's answer. Large reads travel in bounded pieces. Records are
//!   CRC-checked by the reader, and pages are cached by its page cache.
//! - Root writes go through the node's [`Acceptor`], so a holder whose term
//!   was superseded cannot even overwrite its own local root.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use tracing::debug;

use crate::block_provider::{BlockProvider, RootLock, WalInfo};
use crate::cluster::acceptor::{AcceptOutcome, Acceptor};
use crate::cluster::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::network::{NetworkManager, PeerId};
use crate::protocol::Message;
use crate::types::{RootRecord, WalId};

/// Largest piece of a WAL asked of a peer in one request.
pub const MAX_REMOTE_READ: u64 = 8 << 20;

/// A local provider that reaches into the cluster for what it lacks.
#[derive(Debug)]
pub struct ClusterBlockProvider {
    local: Arc<dyn BlockProvider>,
    acceptor: Arc<Acceptor>,
    network: Arc<dyn NetworkManager>,
    config: ClusterConfig,
    holders: RwLock<HashMap<WalId, PeerId>>,
}

enum PeerAnswer {
    Data(Bytes),
    NotFound,
    Failed(String),
}

impl ClusterBlockProvider {
    /// Wraps `local`.
    pub fn new(
        local: Arc<dyn BlockProvider>,
        acceptor: Arc<Acceptor>,
        network: Arc<dyn NetworkManager>,
        config: ClusterConfig,
    ) -> Self {
        ClusterBlockProvider {
            local,
            acceptor,
            network,
            config,
            holders: RwLock::default(),
        }
    }

    /// Peers in the order to ask for `wal`: the one that last served it,
    /// else its writer when the latest root names it (the writer has the
    /// pages not uploaded yet), then the others.
    fn candidates(&self, wal: WalId) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self.config.peers().map(|p| p.id.clone()).collect();
        let first = self.holders.read().get(&wal).cloned().or_else(|| {
            self.acceptor
                .latest()
                .filter(|r| r.pointer.wal_id == wal)
                .and_then(|r| r.writer)
        });
        if let Some(h) = first
            && let Some(i) = peers.iter().position(|p| *p == h)
        {
            peers.swap(0, i);
        }
        peers
    }

    async fn ask(&self, peer: &PeerId, wal: WalId, offset: u64, len: u64) -> PeerAnswer {
        let req = Message::PageRequest { wal, offset, len };
        match self
            .network
            .request(peer, req, self.config.read_timeout())
            .await
        {
            Ok(Message::PageResponse {
                data: Some(d),
                wal: w,
                offset: o,
            }) if w == wal && o == offset => PeerAnswer::Data(d),
            Ok(Message::PageResponse { data: None, .. }) => PeerAnswer::NotFound,
            Ok(other) => PeerAnswer::Failed(format!("{peer}: unexpected answer {other:?}")),
            Err(e) => PeerAnswer::Failed(e.to_string()),
        }
    }

    /// Reads `len` bytes at `offset` from whichever peer has them.
    async fn read_piece(&self, wal: WalId, offset: u64, len: u64, retries: u32) -> Result<Bytes> {
        let mut failures = Vec::new();
        for attempt in 0..=retries {
            failures.clear();
            for peer in self.candidates(wal) {
                match self.ask(&peer, wal, offset, len).await {
                    PeerAnswer::Data(d) if d.is_empty() => {
                        return Err(Error::OffsetOutOfRange {
                            wal,
                            offset,
                            len: offset,
                        });
                    }
                    PeerAnswer::Data(d) => {
                        self.holders.write().insert(wal, peer);
                        return Ok(d);
                    }
                    PeerAnswer::NotFound => {}
                    PeerAnswer::Failed(why) => failures.push(why),
                }
            }
            if failures.is_empty() {
                // Every peer answered and none has it.
                return Err(Error::WalNotFound { wal });
            }
            debug!(%wal, offset, attempt, ?failures, "remote read failed, retrying");
            if attempt < retries {
                tokio::time::sleep(self.config.retry_interval()).await;
            }
        }
        Err(Error::Backend {
            backend: format!("cluster node {}", self.config.server_id),
            message: format!(
                "reading {wal} at {offset} from peers failed: {}",
                failures.join("; ")
            ),
        })
    }

    /// Reads from peers, in pieces of at most [`MAX_REMOTE_READ`], retrying
    /// a piece `retries` times when some peer failed.
    async fn read_remote(&self, wal: WalId, offset: u64, len: u64, retries: u32) -> Result<Bytes> {
        let first = self
            .read_piece(wal, offset, len.min(MAX_REMOTE_READ), retries)
            .await?;
        if first.len() as u64 >= len || (first.len() as u64) < len.min(MAX_REMOTE_READ) {
            return Ok(first);
        }
        let mut out = BytesMut::from(&first[..]);
        while (out.len() as u64) < len {
            let at = offset + out.len() as u64;
            let want = (len - out.len() as u64).min(MAX_REMOTE_READ);
            let piece = match self.read_piece(wal, at, want, retries).await {
                Ok(p) => p,
                Err(Error::OffsetOutOfRange { .. }) => break,
                Err(e) => return Err(e),
            };
            out.extend_from_slice(&piece);
            if (piece.len() as u64) < want {
                break;
            }
        }
        Ok(out.freeze())
    }
}

#[async_trait]
impl BlockProvider for ClusterBlockProvider {
    async fn create_wal(&self) -> Result<WalId> {
        self.local.create_wal().await
    }

    async fn append(&self, wal: WalId, offset: u64, data: Bytes) -> Result<()> {
        self.local.append(wal, offset, data).await
    }

    async fn sync(&self, wal: WalId, upto: u64) -> Result<()> {
        self.local.sync(wal, upto).await
    }

    fn next_offset_after_barrier(&self, end: u64) -> u64 {
        self.local.next_offset_after_barrier(end)
    }

    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes> {
        match self.local.read_local(wal, offset, len).await {
            Ok(Some(bytes)) => Ok(bytes),
            // Only a remote medium (an object store) has it: peers first —
            // the WAL's writer has pages not uploaded yet, others may have
            // them cached — in one pass, then the medium itself.
            Ok(None) => match self.read_remote(wal, offset, len, 0).await {
                Ok(bytes) => Ok(bytes),
                Err(e @ Error::OffsetOutOfRange { .. }) => Err(e),
                Err(e) => {
                    debug!(%wal, offset, error = %e, "no peer served the read, using the store");
                    self.local.read(wal, offset, len).await
                }
            },
            Err(Error::WalNotFound { .. }) => {
                self.read_remote(wal, offset, len, self.config.max_retries)
                    .await
            }
            Err(e) => Err(e),
        }
    }

    async fn list_wals(&self) -> Result<Vec<WalInfo>> {
        self.local.list_wals().await
    }

    async fn close_wal(&self, wal: WalId) -> Result<()> {
        self.local.close_wal(wal).await
    }

    async fn read_root(&self) -> Result<Option<RootRecord>> {
        let root = self.local.read_root().await?;
        self.acceptor.note_local(root.as_ref());
        Ok(self.acceptor.latest().or(root))
    }

    async fn write_root(&self, root: &RootRecord, _expected: Option<u64>) -> Result<()> {
        match self.acceptor.accept(root.term, root).await? {
            AcceptOutcome::Accepted => Ok(()),
            AcceptOutcome::Rejected { promised, latest } => Err(Error::NotGranted(format!(
                "root #{} of term {} fenced: this node promised term {promised} (latest {:?})",
                root.sequence, root.term, latest
            ))),
        }
    }

    async fn lock_root(&self) -> Result<RootLock> {
        self.local.lock_root().await
    }

    async fn read_config(&self) -> Result<Option<Bytes>> {
        self.local.read_config().await
    }

    async fn close(&self) -> Result<()> {
        self.local.close().await
    }
}
