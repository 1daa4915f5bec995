//! An in-memory [`BlockProvider`](crate::BlockProvider), always compiled.
//!
//! It tracks which bytes were made durable by `sync`, so tests can call
//! [`MemoryBlockProvider::simulate_crash`] and check that nothing
//! acknowledged is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;

use crate::block_provider::{
    NewWal, RootLock, RootRegister, RootVersion, VersionedRoot, WalInfo, WalStore,
};
use crate::error::{Error, Result};
use crate::types::{RootRecord, WalId};

#[derive(Debug, Default)]
struct MemWal {
    data: Vec<u8>,
    synced: u64,
    /// Created and not closed yet: a writer holds it.
    writing: bool,
}

#[derive(Debug, Default)]
struct State {
    wals: HashMap<WalId, MemWal>,
    root: Option<RootRecord>,
    config: Option<Bytes>,
    /// Checkpoints by name.
    checkpoints: std::collections::BTreeMap<String, crate::checkpoint::Checkpoint>,
    /// The last roots written, oldest first.
    history: std::collections::VecDeque<(RootRecord, std::time::SystemTime)>,
}

/// A provider keeping WALs and the root in memory.
///
/// Clones share the space (like two processes opening one directory) but not
/// the open/closed state: closing one clone leaves the others usable.
#[derive(Debug, Default)]
pub struct MemoryBlockProvider {
    state: Arc<RwLock<State>>,
    lock: Arc<tokio::sync::Mutex<()>>,
    closed: AtomicBool,
}

impl Clone for MemoryBlockProvider {
    fn clone(&self) -> Self {
        MemoryBlockProvider {
            state: self.state.clone(),
            lock: self.lock.clone(),
            closed: AtomicBool::new(false),
        }
    }
}

impl MemoryBlockProvider {
    /// An empty space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the space's configuration data.
    pub fn set_config(&self, config: Bytes) {
        self.state.write().config = Some(config);
    }

    /// Loses every byte not yet synced, in place — what a kernel that
    /// dropped dirty pages after a failed `fsync` leaves (tests of the
    /// engine's handling of failed syncs).
    pub fn drop_unsynced(&self) {
        let mut st = self.state.write();
        for w in st.wals.values_mut() {
            w.data.truncate(w.synced as usize);
        }
    }

    /// A new provider over the same bytes, as a restarted process would see
    /// them after a crash: every WAL cut back to what was synced.
    pub fn simulate_crash(&self) -> MemoryBlockProvider {
        let st = self.state.read();
        let wals = st
            .wals
            .iter()
            .map(|(id, w)| {
                let keep = w.data[..w.synced as usize].to_vec();
                let synced = keep.len() as u64;
                (
                    *id,
                    MemWal {
                        data: keep,
                        synced,
                        writing: false,
                    },
                )
            })
            .collect();
        MemoryBlockProvider {
            state: Arc::new(RwLock::new(State {
                wals,
                root: st.root.clone(),
                config: st.config.clone(),
                history: st.history.clone(),
                checkpoints: st.checkpoints.clone(),
            })),
            ..Default::default()
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

#[async_trait]
impl WalStore for MemoryBlockProvider {
    async fn create_wal(&self) -> Result<NewWal> {
        self.check_open()?;
        let id = WalId::new_random();
        self.state.write().wals.insert(
            id,
            MemWal {
                writing: true,
                ..MemWal::default()
            },
        );
        Ok(NewWal::dense(id))
    }

    async fn append(&self, wal: WalId, offset: u64, data: Bytes) -> Result<()> {
        self.check_open()?;
        let mut st = self.state.write();
        let w = st.wals.get_mut(&wal).ok_or(Error::WalNotFound { wal })?;
        let end = offset as usize + data.len();
        if w.data.len() < end {
            w.data.resize(end, 0);
        }
        w.data[offset as usize..end].copy_from_slice(&data);
        Ok(())
    }

    async fn sync(&self, wal: WalId, upto: u64) -> Result<()> {
        self.check_open()?;
        let mut st = self.state.write();
        let w = st.wals.get_mut(&wal).ok_or(Error::WalNotFound { wal })?;
        w.synced = w.synced.max(upto.min(w.data.len() as u64));
        Ok(())
    }

    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes> {
        self.check_open()?;
        let st = self.state.read();
        let w = st.wals.get(&wal).ok_or(Error::WalNotFound { wal })?;
        let total = w.data.len() as u64;
        if offset >= total {
            return Err(Error::OffsetOutOfRange {
                wal,
                offset,
                len: total,
            });
        }
        let end = total.min(offset.saturating_add(len));
        Ok(Bytes::copy_from_slice(
            &w.data[offset as usize..end as usize],
        ))
    }

    async fn list_wals(&self) -> Result<Vec<WalInfo>> {
        self.check_open()?;
        let mut v: Vec<WalInfo> = self
            .state
            .read()
            .wals
            .iter()
            .map(|(id, w)| WalInfo {
                id: *id,
                len: w.data.len() as u64,
            })
            .collect();
        v.sort_by_key(|w| w.id);
        Ok(v)
    }

    async fn close_wal(&self, wal: WalId) -> Result<()> {
        if let Some(w) = self.state.write().wals.get_mut(&wal) {
            w.writing = false;
        }
        Ok(())
    }

    async fn read_config(&self) -> Result<Option<Bytes>> {
        self.check_open()?;
        Ok(self.state.read().config.clone())
    }

    async fn delete_wal(&self, wal: WalId) -> Result<()> {
        self.check_open()?;
        let mut st = self.state.write();
        match st.wals.get(&wal) {
            None => Err(Error::WalNotFound { wal }),
            Some(w) if w.writing => Err(Error::WalInUse {
                wal,
                why: "a writer holds it".into(),
            }),
            Some(_) => {
                st.wals.remove(&wal);
                Ok(())
            }
        }
    }

    async fn checkpoints(&self) -> Result<Vec<crate::checkpoint::Checkpoint>> {
        self.check_open()?;
        Ok(self.state.read().checkpoints.values().cloned().collect())
    }

    async fn put_checkpoint(&self, checkpoint: &crate::checkpoint::Checkpoint) -> Result<()> {
        self.check_open()?;
        crate::checkpoint::check_name(&checkpoint.name)?;
        let mut st = self.state.write();
        if st.checkpoints.contains_key(&checkpoint.name) {
            return Err(crate::checkpoint::exists(&checkpoint.name));
        }
        st.checkpoints
            .insert(checkpoint.name.clone(), checkpoint.clone());
        Ok(())
    }

    async fn remove_checkpoint(&self, name: &str) -> Result<()> {
        self.check_open()?;
        match self.state.write().checkpoints.remove(name) {
            Some(_) => Ok(()),
            None => Err(Error::CheckpointNotFound {
                name: name.to_string(),
            }),
        }
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}

#[async_trait]
impl RootRegister for MemoryBlockProvider {
    async fn read_root(&self) -> Result<Option<VersionedRoot>> {
        self.check_open()?;
        Ok(self.state.read().root.clone().map(VersionedRoot::by_order))
    }

    async fn write_root(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
    ) -> Result<RootVersion> {
        self.check_open()?;
        let mut st = self.state.write();
        check_cas(st.root.as_ref(), root, expected)?;
        st.root = Some(root.clone());
        if st.history.len() >= crate::root_register::HISTORY_KEEP {
            st.history.pop_front();
        }
        st.history
            .push_back((root.clone(), std::time::SystemTime::now()));
        Ok(RootVersion::of_root(root))
    }

    async fn history(&self, limit: usize) -> Result<Vec<crate::root_register::HistoricRoot>> {
        self.check_open()?;
        Ok(self
            .state
            .read()
            .history
            .iter()
            .rev()
            .take(limit)
            .map(|(root, t)| crate::root_register::HistoricRoot {
                root: root.clone(),
                written: Some(*t),
            })
            .collect())
    }

    async fn prune_history(
        &self,
        retention: &crate::root_register::RootRetention,
    ) -> Result<crate::root_register::PruneReport> {
        self.check_open()?;
        let now = std::time::SystemTime::now();
        let mut st = self.state.write();
        let n = st.history.len();
        let keep_last = usize::try_from(retention.keep_last.max(1)).unwrap_or(usize::MAX);
        let mut i = 0;
        st.history.retain(|(_, t)| {
            // Oldest first: the last `keep_last` stay.
            let keep = n - i <= keep_last
                || retention
                    .keep_younger_than
                    .is_some_and(|age| crate::reclaim::is_recent(*t, now, age));
            i += 1;
            keep
        });
        let kept = st.history.len() as u64;
        Ok(crate::root_register::PruneReport {
            removed: n as u64 - kept,
            kept,
        })
    }

    async fn lock_root(&self) -> Result<RootLock> {
        self.check_open()?;
        Ok(RootLock::new(self.lock.clone().lock_owned().await))
    }
}

/// The compare-and-swap check of registers that hold one root versioned by
/// its own `(term, sequence)`: the stored root must be at `expected`, and
/// `root` newer than it.
pub(crate) fn check_cas(
    stored: Option<&RootRecord>,
    root: &RootRecord,
    expected: Option<RootVersion>,
) -> Result<()> {
    let found = stored.map(RootVersion::of_root);
    if found != expected {
        return Err(Error::RootConflict {
            expected: expected.map(|v| v.parts().1),
            found: stored.map(|r| r.sequence),
        });
    }
    if let Some(s) = stored
        && !root.is_newer_than(s)
    {
        return Err(Error::invalid(
            "root",
            format!("{root:?} is not newer than the stored {s:?}"),
        ));
    }
    Ok(())
}
