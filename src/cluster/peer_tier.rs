//! [`PeerTier`]: the read tier of a cluster node's peers.
//!
//! Reads this node cannot serve from its own storage go to the peers: the
//! WAL's last known holder first (else the writer the newest root seen
//! names: it has the pages not uploaded yet), then every other peer, with
//! timeouts and retries. A peer's "not found" only moves on to the next
//! peer, so it never hides another peer's answer. Large reads travel in
//! bounded pieces, all from one peer. The builder places this tier after the
//! node's own storage (and, on a cloud node, before the object store).
//!
//! Nothing a peer sends is trusted before it is checked (see
//! [`crate::page_check`]): an answer must name the WAL and offset asked for
//! and hold no more bytes than asked; bytes for offset 0 must be the
//! writer's native header naming the WAL (so a peer can never make a WAL
//! read as unchecked reference format); and the reader's [`ReadCheck`]
//! (record CRCs from the pointer being read) must pass — all before the
//! bytes reach the reader, its page cache or, through it, other peers. An
//! answer that fails is dropped (`protobase_pages_rejected_total{tier="peers"}`),
//! the next peer is asked, and the peer is asked last for that WAL from
//! then on; when no peer passes, the tier fails and the next tier (the
//! object store on a cloud node) is asked.
//!
//! [`RootHint`] remembers the newest root a node's register read or wrote,
//! for that writer-first order; [`HintingRegister`] records it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use tracing::{debug, warn};

use crate::cluster::config::ClusterConfig;
use crate::error::{Error, FormatError, Result};
use crate::network::{NetworkManager, PeerId};
use crate::page_check::{NoCheck, ReadCheck, check_answer, is_short_answer};
use crate::protocol::Message;
use crate::record::{self, WAL_HEADER_LEN};
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

    async fn read_root_to_update(&self) -> Result<Option<VersionedRoot>> {
        // Not noted: it may be older than the newest root.
        self.inner.read_root_to_update().await
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

    async fn history(&self, limit: usize) -> Result<Vec<crate::root_register::HistoricRoot>> {
        self.inner.history(limit).await
    }

    async fn prune_history(
        &self,
        retention: &crate::root_register::RootRetention,
    ) -> Result<crate::root_register::PruneReport> {
        self.inner.prune_history(retention).await
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
    /// Retries of a read when some peer failed (0: one pass).
    retries: u32,
    pub(super) holders: RwLock<HashMap<WalId, PeerId>>,
    /// Peers whose answer for a WAL failed its check: asked last for it.
    suspects: RwLock<HashMap<WalId, HashSet<PeerId>>>,
}

/// What one peer answered to a read.
enum PeerAnswer {
    Data(Bytes),
    NotFound,
    /// The peer says the WAL ends at or before the offset.
    PastEnd,
    /// The answer failed a check ([`Error::Rejected`]).
    Rejected(Error),
    Failed(String),
}

impl PeerTier {
    /// Asks the peers of `config` through `network`; a read is retried
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
            suspects: RwLock::default(),
        }
    }

    /// Peers in the order to ask for `wal`: the one that last served it,
    /// else its writer when the latest root names it (the writer has the
    /// pages not uploaded yet), then the others; peers whose answer for
    /// `wal` failed its check come last.
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
        if let Some(s) = self.suspects.read().get(&wal) {
            // A stable partition: trusted peers first, in their order.
            peers.sort_by_key(|p| s.contains(p));
        }
        peers
    }

    /// A rejection of `peer`'s answer: logged, counted, and the peer asked
    /// last for `wal` from now on — unless the answer was only short (the
    /// peer's copy may still be growing).
    fn reject(&self, peer: &PeerId, wal: WalId, offset: u64, source: Error) -> PeerAnswer {
        let rejected = |source| {
            PeerAnswer::Rejected(Error::Rejected {
                from: format!("peer {peer}"),
                wal,
                offset,
                source: Box::new(source),
            })
        };
        if is_short_answer(&source) {
            debug!(%peer, %wal, offset, error = %source, "a peer's page ends inside the record");
            return rejected(source);
        }
        warn!(%peer, %wal, offset, error = %source, "a peer's page failed its check: not used");
        ::metrics::counter!(crate::metrics::PAGES_REJECTED, "tier" => "peers").increment(1);
        {
            let mut holders = self.holders.write();
            if holders.get(&wal) == Some(peer) {
                holders.remove(&wal);
            }
        }
        self.suspects
            .write()
            .entry(wal)
            .or_default()
            .insert(peer.clone());
        rejected(source)
    }

    /// One request to `peer`; the answer must name the WAL and offset asked
    /// for and hold at most `len` bytes.
    #[tracing::instrument(level = "debug", skip_all, fields(%peer, %wal, offset))]
    async fn ask(&self, peer: &PeerId, wal: WalId, offset: u64, len: u64) -> PeerAnswer {
        let req = Message::PageRequest { wal, offset, len };
        let answer = match self
            .network
            .request(peer, req, self.config.read_timeout())
            .await
        {
            Ok(m) => m,
            Err(e) => return PeerAnswer::Failed(e.to_string()),
        };
        match answer {
            Message::PageResponse {
                data,
                wal: w,
                offset: o,
            } if w != wal || o != offset => {
                let what = if data.is_some() { "bytes" } else { "nothing" };
                self.reject(
                    peer,
                    wal,
                    offset,
                    Error::Corrupt {
                        wal,
                        offset,
                        source: FormatError::Mismatch(format!("{what} for WAL {w} at offset {o}")),
                    },
                )
            }
            Message::PageResponse { data: None, .. } => PeerAnswer::NotFound,
            Message::PageResponse { data: Some(d), .. } if d.is_empty() => PeerAnswer::PastEnd,
            Message::PageResponse { data: Some(d), .. } if d.len() as u64 > len => self.reject(
                peer,
                wal,
                offset,
                Error::Corrupt {
                    wal,
                    offset,
                    source: FormatError::Mismatch(format!(
                        "{} bytes answered for a read of {len}",
                        d.len()
                    )),
                },
            ),
            Message::PageResponse { data: Some(d), .. } => PeerAnswer::Data(d),
            other => PeerAnswer::Failed(format!("{peer}: unexpected answer {other:?}")),
        }
    }

    /// Reads `len` bytes at `offset` from `peer` alone, in pieces of at most
    /// [`MAX_REMOTE_READ`], and checks the whole answer.
    async fn read_from(
        &self,
        peer: &PeerId,
        wal: WalId,
        offset: u64,
        len: u64,
        check: &dyn ReadCheck,
    ) -> PeerAnswer {
        let first = match self.ask(peer, wal, offset, len.min(MAX_REMOTE_READ)).await {
            PeerAnswer::Data(d) => d,
            other => return other,
        };
        let data = if first.len() as u64 >= len || (first.len() as u64) < len.min(MAX_REMOTE_READ) {
            first
        } else {
            let mut out = BytesMut::from(&first[..]);
            while (out.len() as u64) < len {
                let Some(at) = offset.checked_add(out.len() as u64) else {
                    break;
                };
                let want = (len - out.len() as u64).min(MAX_REMOTE_READ);
                match self.ask(peer, wal, at, want).await {
                    PeerAnswer::Data(piece) => {
                        out.extend_from_slice(&piece);
                        if (piece.len() as u64) < want {
                            break;
                        }
                    }
                    PeerAnswer::PastEnd => break,
                    PeerAnswer::NotFound => {
                        return PeerAnswer::Failed(format!("{peer} no longer has {wal} at {at}"));
                    }
                    other => return other,
                }
            }
            out.freeze()
        };
        if offset == 0 {
            // The layout of a WAL is never a peer's say-so: its first bytes
            // must be the writer's native header naming this WAL.
            let header = if len >= WAL_HEADER_LEN {
                record::check_native_header(wal, &data)
            } else if data.len() >= 8 && data[..8] == record::WAL_MAGIC
                || record::WAL_MAGIC.starts_with(&data[..])
            {
                Ok(())
            } else {
                Err(FormatError::BadHeader(
                    "no native magic where a native header must be".into(),
                ))
            };
            if let Err(source) = header {
                return self.reject(
                    peer,
                    wal,
                    offset,
                    Error::Corrupt {
                        wal,
                        offset,
                        source,
                    },
                );
            }
        }
        match check_answer(check, wal, offset, len, data) {
            Ok(d) => PeerAnswer::Data(d),
            Err(e) => self.reject(peer, wal, offset, e),
        }
    }

    /// Reads from whichever peer has the bytes and answers them so that they
    /// pass `check`, timing it (`protobase_peer_fetch_seconds`).
    #[tracing::instrument(level = "debug", skip_all, fields(%wal, offset, len))]
    async fn read_remote(
        &self,
        wal: WalId,
        offset: u64,
        len: u64,
        check: &dyn ReadCheck,
    ) -> Result<Option<Bytes>> {
        let start = std::time::Instant::now();
        let r = self.read_remote_untimed(wal, offset, len, check).await;
        let outcome = match &r {
            Ok(Some(b)) => {
                ::metrics::counter!(crate::metrics::PEER_FETCH_BYTES).increment(b.len() as u64);
                "ok"
            }
            Ok(None) => "not_found",
            Err(_) => "error",
        };
        ::metrics::histogram!(crate::metrics::PEER_FETCH_SECONDS, "outcome" => outcome)
            .record(crate::metrics::since(start));
        r
    }

    async fn read_remote_untimed(
        &self,
        wal: WalId,
        offset: u64,
        len: u64,
        check: &dyn ReadCheck,
    ) -> Result<Option<Bytes>> {
        if offset.checked_add(len).is_none() {
            return Err(Error::invalid(
                "read",
                format!("{len} bytes at offset {offset} of {wal} overflow"),
            ));
        }
        let mut failures = Vec::new();
        let mut rejected = None;
        let mut past_end = false;
        for attempt in 0..=self.retries {
            failures.clear();
            for peer in self.candidates(wal) {
                match self.read_from(&peer, wal, offset, len, check).await {
                    PeerAnswer::Data(d) => {
                        self.holders.write().insert(wal, peer);
                        return Ok(Some(d));
                    }
                    PeerAnswer::NotFound => {}
                    PeerAnswer::PastEnd => past_end = true,
                    PeerAnswer::Rejected(e) => {
                        rejected.get_or_insert(e);
                    }
                    PeerAnswer::Failed(why) => failures.push(why),
                }
            }
            if failures.is_empty() {
                // Every peer answered; none with bytes that passed.
                break;
            }
            debug!(%wal, offset, attempt, ?failures, "remote read failed, retrying");
            if attempt < self.retries {
                tokio::time::sleep(self.config.retry_interval()).await;
            }
        }
        if let Some(e) = rejected {
            return Err(e);
        }
        if past_end {
            return Err(Error::OffsetOutOfRange {
                wal,
                offset,
                len: offset,
            });
        }
        if failures.is_empty() {
            // Every peer answered and none has it.
            return Ok(None);
        }
        Err(Error::backend(
            format!("cluster node {}", self.config.server_id),
            format!(
                "reading {wal} at {offset} from peers failed: {}",
                failures.join("; ")
            ),
        ))
    }
}

#[async_trait]
impl ReadTier for PeerTier {
    fn name(&self) -> &'static str {
        "peers"
    }

    fn authoritative(&self) -> bool {
        false
    }

    /// Reads from peers: their answers must match the request, and bytes
    /// at offset 0 must be a native header naming `wal`.
    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Option<Bytes>> {
        self.read_remote(wal, offset, len, &NoCheck).await
    }

    /// Reads from the first peer whose answer passes `check`: a peer whose
    /// answer fails is asked last for this WAL from then on.
    async fn read_checked(
        &self,
        wal: WalId,
        offset: u64,
        len: u64,
        check: &dyn ReadCheck,
    ) -> Result<Option<Bytes>> {
        self.read_remote(wal, offset, len, check).await
    }
}
