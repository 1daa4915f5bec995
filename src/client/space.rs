//! [`ClusterSpace`]: a whole cluster's space, read through client links.

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use super::Client;
use crate::cluster::peer_tier::MAX_REMOTE_READ;
use crate::error::{Error, Result};
use crate::network::PeerId;
use crate::root_register::{RootLock, RootRegister, RootVersion, VersionedRoot};
use crate::types::{RootRecord, WalId};
use crate::wal_store::{NewWal, WalInfo, WalStore};

/// A read-only [`WalStore`] and [`RootRegister`] over every member of a
/// cluster: [`list_wals`](WalStore::list_wals) is the union of the WALs
/// each member holds itself, a read goes to the member holding the WAL, the
/// root is the quorum's (a linearizable read through any member that
/// answers). Writing is refused ([`Error::ReadOnly`]).
///
/// Members that do not answer are remembered ([`unreachable`](Self::unreachable)):
/// their WALs are missing from the listing, so a caller that must see the
/// whole space (a copy) checks it is empty.
#[derive(Debug)]
pub struct ClusterSpace {
    members: Vec<Client>,
    /// Index into `members` of the member holding each WAL.
    owners: RwLock<HashMap<WalId, usize>>,
    unreachable: Mutex<Vec<(PeerId, String)>>,
}

impl ClusterSpace {
    /// A view over one client per member.
    pub fn new(members: Vec<Client>) -> Self {
        ClusterSpace {
            members,
            owners: RwLock::default(),
            unreachable: Mutex::default(),
        }
    }

    /// Members that did not answer the last listing, with why.
    pub fn unreachable(&self) -> Vec<(PeerId, String)> {
        self.unreachable.lock().clone()
    }

    /// The member holding `wal` (after a listing).
    pub fn owner(&self, wal: WalId) -> Option<PeerId> {
        let i = *self.owners.read().get(&wal)?;
        self.members.get(i).map(|c| c.node().to_string())
    }

    /// Closes every link.
    pub async fn close_links(&self) {
        for m in &self.members {
            m.close().await;
        }
    }
}

#[async_trait]
impl WalStore for ClusterSpace {
    async fn create_wal(&self) -> Result<NewWal> {
        Err(Error::ReadOnly)
    }

    async fn append(&self, _wal: WalId, _offset: u64, _data: Bytes) -> Result<()> {
        Err(Error::ReadOnly)
    }

    async fn sync(&self, _wal: WalId, _upto: u64) -> Result<()> {
        Err(Error::ReadOnly)
    }

    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes> {
        if !self.owners.read().contains_key(&wal) {
            self.list_wals().await?;
        }
        let owner = *self
            .owners
            .read()
            .get(&wal)
            .ok_or(Error::WalNotFound { wal })?;
        let member = self.members.get(owner).ok_or(Error::WalNotFound { wal })?;
        match member
            .read_page(wal, offset, len.min(MAX_REMOTE_READ))
            .await?
        {
            None => Err(Error::WalNotFound { wal }),
            Some(b) if b.is_empty() && len > 0 => Err(Error::OffsetOutOfRange {
                wal,
                offset,
                len: offset,
            }),
            Some(b) => Ok(b),
        }
    }

    async fn list_wals(&self) -> Result<Vec<WalInfo>> {
        let mut lens: HashMap<WalId, (u64, usize)> = HashMap::new();
        let mut down = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            match m.list_wals().await {
                Ok(wals) => {
                    for w in wals {
                        let e = lens.entry(w.id).or_insert((w.len, i));
                        if w.len > e.0 {
                            *e = (w.len, i);
                        }
                    }
                }
                Err(e) => down.push((m.node().to_string(), e.to_string())),
            }
        }
        if down.len() == self.members.len() && !self.members.is_empty() {
            let why = down
                .iter()
                .map(|(n, e)| format!("{n}: {e}"))
                .collect::<Vec<_>>()
                .join("; ");
            *self.unreachable.lock() = down;
            return Err(Error::Backend {
                backend: "cluster".into(),
                message: format!("no member answered: {why}"),
            });
        }
        *self.unreachable.lock() = down;
        *self.owners.write() = lens.iter().map(|(id, (_, i))| (*id, *i)).collect();
        let mut out: Vec<WalInfo> = lens
            .into_iter()
            .map(|(id, (len, _))| WalInfo { id, len })
            .collect();
        out.sort_by_key(|w| w.id);
        Ok(out)
    }

    async fn close_wal(&self, _wal: WalId) -> Result<()> {
        Ok(())
    }

    async fn read_config(&self) -> Result<Option<Bytes>> {
        Ok(None)
    }

    async fn close(&self) -> Result<()> {
        self.close_links().await;
        Ok(())
    }
}

#[async_trait]
impl RootRegister for ClusterSpace {
    async fn read_root(&self) -> Result<Option<VersionedRoot>> {
        let mut failure = None;
        for m in &self.members {
            match m.read_root().await {
                Ok(root) => return Ok(root.map(VersionedRoot::by_order)),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        Err(failure.unwrap_or_else(|| Error::invalid("cluster", "no members")))
    }

    async fn write_root(
        &self,
        _root: &RootRecord,
        _expected: Option<RootVersion>,
    ) -> Result<RootVersion> {
        Err(Error::ReadOnly)
    }

    async fn lock_root(&self) -> Result<RootLock> {
        Err(Error::ReadOnly)
    }
}
