//! [`PeerTier`]: the read tier of a cluster node's peers.
//!
//! Reads this node cannot serve from its own storage go to the peers: the
//! WAL's last known holder first (else the writer the newest root seen
//! names: it has the pages not uploaded yet), then every other peer, with
//! timeouts and retries. A peer's "not found" only moves on to the next
//! peer, so it never hides another peer's answer. Large reads travel in
//! bounded pieces. Records are CRC-checked by the reader, and pages are
//! cached by its page cache. The builder places this tier after the node's
//! own storage (and, on a cloud node, before the object store).
//!
//! [`RootHint`] remembers the newest root a node's register read or wrote,
//! for that writer-first order; [`HintingRegister`] records it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use tracing::debug;

use crate::cluster::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::network::{NetworkManager, PeerId};
use crate::protocol::Message;
use crate::root_register::{RootLock, RootRegister, RootVersion, VersionedRoot};
use crate::types::{RootRecord, WalId};
use crate::wal_store::ReadTier;

/// The newest root a node has seen (shared by its register and peer tier).
#[derive(Debug, Clone, Default)]
pub struct RootHint(Arc<Mutex<Option<RootRecord>>>);

impl RootHint {
    /// Remembers `root` if it is newer than the one held.
    pub fn note(&self, root: &RootRecord) {
        let mut h = self.0.lock();
        if h.as_ref().is_none_or(|r| root.is_newer_than(r)) {
            *h = Some(root.clone());
        }
    }

    /// The newest root seen.
    pub fn get(&self) -> Option<RootRecord> {
        self.0.lock().clone()
    }
}

/// A [`RootRegister`] that notes every root it reads or writes in a
/// [`RootHint`].
#[derive(Debug)]
pub struct HintingRegister {
    inner: Arc<dyn RootRegister>,
    hint: RootHint,
}

impl HintingRegister {
    /// Wraps `inner`, noting roots in `hint`.
    pub fn new(inner: Arc<dyn RootRegister>, hint: RootHint) -> Self {
        HintingRegister { inner, hint }
    }
}

#[async_trait]
impl RootRegister for HintingRegister {
    async fn read_root(&self) -> Result<Option<VersionedRoot>> {
        let r = self.inner.read_root().await?;
        if let Some(v) = &r {
            self.hint.note(&v.root);
        }
        Ok(r)
    }

    async fn write_root(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
    ) -> Result<RootVersion> {
        let v = self.inner.write_root(root, expected).await?;
        self.hint.note(root);
        Ok(v)
    }

    async fn lock_root(&self) -> Result<RootLock> {
        self.inner.lock_root().await
    }
}

/// Largest piece of a WAL asked of a peer in one request.
pub const MAX_REMOTE_READ: u64 = 8 << 20;

/// The read tier of a node's peers; see the [module docs](self).
#[derive(Debug)]
pub struct PeerTier {
    network: Arc<dyn NetworkManager>,
    config: ClusterConfig,
    hint: RootHint,
    /// Retries of a piece when some peer failed (0: one pass).
    retries: u32,
    holders: RwLock<HashMap<WalId, PeerId>>,
}

enum PeerAnswer {
    Data(Bytes),
    NotFound,
    Failed(String),
}

impl PeerTier {
    /// Asks the peers of `config` through `network`; a piece is retried
    /// `retries` times (every `retry_interval_ms`) when some peer failed.
    pub fn new(
        network: Arc<dyn NetworkManager>,
        config: ClusterConfig,
        hint: RootHint,
        retries: u32,
    ) -> Self {
        PeerTier {
            network,
            config,
            hint,
            retries,
            holders: RwLock::default(),
        }
    }

    /// Peers in the order to ask for `wal`: the one that last served it,
    /// else its writer when the latest root names it (the writer has the
    /// pages not uploaded yet), then the others.
    fn candidates(&self, wal: WalId) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self.config.peers().map(|p| p.id.clone()).collect();
        let first = self.holders.read().get(&wal).cloned().or_else(|| {
            self.hint
                .get()
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

    #[tracing::instrument(level = "debug", skip_all, fields(%peer, %wal, offset))]
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

    /// Reads `len` bytes at `offset` from whichever peer has them, timing
    /// it (`protobase_peer_fetch_seconds`).
    #[tracing::instrument(level = "debug", skip_all, fields(%wal, offset, len))]
    async fn read_piece(&self, wal: WalId, offset: u64, len: u64, retries: u32) -> Result<Bytes> {
        let start = std::time::Instant::now();
        let r = self.read_piece_untimed(wal, offset, len, retries).await;
        let outcome = match &r {
            Ok(b) => {
                ::metrics::counter!(crate::metrics::PEER_FETCH_BYTES).increment(b.len() as u64);
                "ok"
            }
            Err(Error::WalNotFound { .. }) => "not_found",
            Err(_) => "error",
        };
        ::metrics::histogram!(crate::metrics::PEER_FETCH_SECONDS, "outcome" => outcome)
            .record(crate::metrics::since(start));
        r
    }

    async fn read_piece_untimed(
        &self,
        wal: WalId,
        offset: u64,
        len: u64,
        retries: u32,
    ) -> Result<Bytes> {
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
        Err(Error::backend(
            format!("cluster node {}", self.config.server_id),
            format!(
                "reading {wal} at {offset} from peers failed: {}",
                failures.join("; ")
            ),
        ))
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
impl ReadTier for PeerTier {
    fn name(&self) -> &'static str {
        "peers"
    }

    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Option<Bytes>> {
        match self.read_remote(wal, offset, len, self.retries).await {
            Ok(b) => Ok(Some(b)),
            Err(Error::WalNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
