//! [`SimDisk`]: a node's simulated disk — WAL files, the `space_root`
//! register and the cluster acceptor's state — with latency, I/O errors and
//! power loss.
//!
//! It models what the file provider relies on from a real filesystem, and
//! what a real filesystem may do to it:
//!
//! - appends are visible to reads at once, durable only after a `sync`;
//! - a failed `sync` (EIO) drops every page it was to write (Linux marks
//!   them clean and reports the error once): the file reverts to its durable
//!   content;
//! - appends may fail with EIO or ENOSPC (nothing written);
//! - the root register and the acceptor state are written atomically
//!   (on files: tmp + fsync + rename + dir fsync, or one CRC-checked record
//!   appended to the acceptor log and fdatasync'ed, a torn one ignored): a
//!   write fails before or after it took effect (the writer cannot tell),
//!   and a write in flight at a power loss is found done or not done;
//! - at a power loss, of the appends made since the last sync some survive
//!   and some do not, in any combination (writes reordered, holes of zeros,
//!   torn records); everything acknowledged by a `sync` survives.
//!
//! A [`SimDisk`] outlives the storages that mount it: [`SimDisk::mount`]
//! gives a handle ([`MountedDisk`]) that implements
//! [`WalStore`], [`RootRegister`] and [`AcceptorStore`]; after
//! [`SimDisk::power_loss`] every older handle fails with
//! [`Error::Closed`], as a crashed process does
//! nothing more. Latency uses tokio's timers, so a paused clock makes a run
//! take no wall-clock time; every random choice comes from the disk's seed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::clock::SeededRng;
use crate::cluster::{AcceptorState, AcceptorStore};
use crate::error::{Error, Result};
use crate::root_register::{RootLock, RootRegister, RootVersion, VersionedRoot, WalBytes};
use crate::types::{RootRecord, WalId};
use crate::wal_store::{NewWal, WalInfo, WalStore};

/// Fault settings of a [`SimDisk`]; the default injects nothing.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DiskFaults {
    /// Shortest latency of an operation.
    pub min_latency: Duration,
    /// Longest latency of an operation.
    pub max_latency: Duration,
    /// Probability that an operation fails with EIO.
    pub eio: f64,
    /// Probability that an append fails with ENOSPC.
    pub enospc: f64,
}

#[derive(Debug, Default, Clone)]
struct File {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a power loss for sure.
    durable: Vec<u8>,
    /// Appends since the last sync, in order: (offset, bytes).
    unsynced: Vec<(u64, Bytes)>,
}

/// An atomic replace in flight: the value before and after.
#[derive(Debug, Clone)]
struct InFlight<T> {
    before: T,
    after: T,
}

impl File {
    fn write(&mut self, offset: u64, data: Bytes) {
        let end = offset as usize + data.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset as usize..end].copy_from_slice(&data);
        self.unsynced.push((offset, data));
    }

    /// A sync; a failed one drops the dirty pages (the file reverts to its
    /// durable content).
    fn sync(&mut self, failed: bool) {
        if failed {
            self.data = self.durable.clone();
        } else {
            self.durable = self.data.clone();
        }
        self.unsynced.clear();
    }

    /// What survives a power loss: the durable content and a random subset
    /// of the unsynced writes, some torn.
    fn power_loss(&mut self, rng: &SeededRng) {
        let mut data = self.durable.clone();
        for (offset, bytes) in std::mem::take(&mut self.unsynced) {
            if rng.f64() < 0.5 {
                continue;
            }
            let keep = if rng.f64() < 0.25 {
                (rng.f64() * bytes.len() as f64) as usize
            } else {
                bytes.len()
            };
            let end = offset as usize + keep;
            if data.len() < end {
                data.resize(end, 0);
            }
            data[offset as usize..end].copy_from_slice(&bytes[..keep]);
        }
        self.data = data.clone();
        self.durable = data;
    }
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every power loss; handles of older generations are dead.
    generation: u64,
    files: BTreeMap<WalId, File>,
    /// A cloud provider's staging files (a namespace of their own).
    staging: BTreeMap<WalId, File>,
    /// The generation whose provider holds the staging area.
    staging_locked: Option<u64>,
    /// Which mount holds each WAL for appending (an OS lock on the WAL
    /// file: it dies with the process, at a power loss).
    wal_writers: BTreeMap<WalId, u64>,
    /// Mounts made (ids of [`MountedDisk`]s).
    mounts: u64,
    root: Option<RootRecord>,
    root_in_flight: Option<InFlight<Option<RootRecord>>>,
    /// WAL bytes stored with the root ([`RootRegister::write_root_carrying`]),
    /// put back into their WALs after a power loss (as a provider does when
    /// it opens); a WAL's go once a sync makes it durable.
    carried: Vec<WalBytes>,
    /// What a root write in flight carries.
    carried_in_flight: Vec<WalBytes>,
    acceptor: AcceptorState,
    acceptor_in_flight: Option<InFlight<AcceptorState>>,
    config: Option<Bytes>,
    faults: DiskFaults,
    /// Operations done (diagnostics).
    ops: u64,
}

/// A node's simulated disk; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
    rng: SeededRng,
    lock: Arc<Mutex<Arc<tokio::sync::Mutex<()>>>>,
}

impl SimDisk {
    /// An empty disk whose random choices come from `seed`.
    pub fn new(seed: u64) -> Self {
        SimDisk {
            state: Arc::default(),
            rng: SeededRng::new(seed),
            lock: Arc::default(),
        }
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: DiskFaults) {
        self.state.lock().faults = faults;
    }

    /// Sets the space's configuration data.
    pub fn set_config(&self, config: Bytes) {
        self.state.lock().config = Some(config);
    }

    /// A handle for a new process (or node incarnation) using the disk.
    pub fn mount(&self) -> Arc<MountedDisk> {
        let (generation, id) = {
            let mut st = self.state.lock();
            st.mounts += 1;
            (st.generation, st.mounts)
        };
        Arc::new(MountedDisk {
            disk: self.clone(),
            generation,
            id,
            lock: self.lock.lock().clone(),
        })
    }

    /// Operations done so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Power loss: every mounted handle dies; of each file's unsynced
    /// appends a random subset survives (in any order, so holes of zeros
    /// and torn records appear); atomic replaces in flight are found done
    /// or not done.
    pub fn power_loss(&self) {
        let mut st = self.state.lock();
        st.generation += 1;
        let rng = &self.rng;
        let st = &mut *st;
        for f in st.files.values_mut().chain(st.staging.values_mut()) {
            f.power_loss(rng);
        }
        if let Some(w) = st.root_in_flight.take() {
            let done = rng.f64() < 0.5;
            let carried = std::mem::take(&mut st.carried_in_flight);
            if done {
                st.root = w.after;
                st.carried.extend(carried);
            } else {
                st.root = w.before;
            }
        }
        // The carried bytes go back into their WALs.
        for b in &st.carried {
            if let Some(f) = st.files.get_mut(&b.wal) {
                f.write(b.offset, b.data.clone());
                f.sync(false);
            }
        }
        if let Some(w) = st.acceptor_in_flight.take() {
            st.acceptor = if rng.f64() < 0.5 { w.before } else { w.after };
        }
        // The old processes' locks die with them.
        st.wal_writers.clear();
        *self.lock.lock() = Arc::default();
    }
}

/// A mounted [`SimDisk`]: the WAL store, root register and acceptor store
/// of one process or node incarnation.
#[derive(Debug)]
pub struct MountedDisk {
    disk: SimDisk,
    generation: u64,
    /// This mount's id (the holder of its WAL locks).
    id: u64,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for MountedDisk {
    fn drop(&mut self) {
        // A process's WAL locks go with its open files.
        let mut st = self.disk.state.lock();
        if st.generation == self.generation {
            st.wal_writers.retain(|_, m| *m != self.id);
        }
    }
}

/// How an operation ends, drawn before it runs.
enum Fate {
    Ok,
    Eio,
    Enospc,
}

impl MountedDisk {
    /// The atomic replace of the root (and what it carries).
    async fn replace_root(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
        carried: Vec<WalBytes>,
    ) -> Result<RootVersion> {
        {
            let mut st = self.disk.state.lock();
            self.alive(&st)?;
            crate::backends::memory::check_cas(st.root.as_ref(), root, expected)?;
            st.root_in_flight = Some(InFlight {
                before: st.root.clone(),
                after: Some(root.clone()),
            });
            st.carried_in_flight = carried;
        }
        let fate = self.op(false).await;
        let mut st = self.disk.state.lock();
        if st.generation != self.generation {
            return Err(Error::Closed);
        }
        let Some(w) = st.root_in_flight.take() else {
            return Err(Error::Closed);
        };
        let carried = std::mem::take(&mut st.carried_in_flight);
        if st.root != w.before {
            // Another writer got there first (no lock held): no effect.
            return Err(Error::RootConflict {
                expected: expected.map(|v| v.parts().1),
                found: st.root.as_ref().map(|r| r.sequence),
            });
        }
        match fate? {
            Fate::Ok => {
                st.root = w.after;
                st.carried.extend(carried);
                Ok(RootVersion::of_root(root))
            }
            _ => {
                // The rename may or may not have happened.
                if self.disk.rng.f64() < 0.5 {
                    st.root = w.after;
                    st.carried.extend(carried);
                }
                Err(Self::io_error("replacing space_root".into(), EIO))
            }
        }
    }

    /// Waits the operation's latency, then checks the handle is alive and
    /// draws the operation's fate.
    async fn op(&self, may_fill: bool) -> Result<Fate> {
        let faults = self.disk.state.lock().faults;
        let rng = &self.disk.rng;
        let span = faults.max_latency.saturating_sub(faults.min_latency);
        let latency = faults.min_latency + rng.duration_upto(span);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut st = self.disk.state.lock();
        if st.generation != self.generation {
            return Err(Error::Closed);
        }
        st.ops += 1;
        drop(st);
        Ok(if rng.f64() < faults.eio {
            Fate::Eio
        } else if may_fill && rng.f64() < faults.enospc {
            Fate::Enospc
        } else {
            Fate::Ok
        })
    }

    fn alive(&self, st: &State) -> Result<()> {
        if st.generation != self.generation {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn io_error(what: String, code: i32) -> Error {
        Error::io(what, std::io::Error::from_raw_os_error(code))
    }
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

#[async_trait]
impl WalStore for MountedDisk {
    async fn create_wal(&self) -> Result<NewWal> {
        if let Fate::Eio = self.op(false).await? {
            return Err(Self::io_error("creating a WAL".into(), EIO));
        }
        let rng = &self.disk.rng;
        let id = WalId(uuid::Uuid::from_u128(
            (u128::from(rng.u64()) << 64) | u128::from(rng.u64()),
        ));
        let mut st = self.disk.state.lock();
        self.alive(&st)?;
        st.files.insert(id, File::default());
        st.wal_writers.insert(id, self.id);
        Ok(NewWal::dense(id))
    }

    async fn append(&self, wal: WalId, offset: u64, data: Bytes) -> Result<()> {
        match self.op(true).await? {
            Fate::Eio => return Err(Self::io_error(format!("writing WAL {wal}"), EIO)),
            Fate::Enospc => return Err(Self::io_error(format!("writing WAL {wal}"), ENOSPC)),
            Fate::Ok => {}
        }
        let mut st = self.disk.state.lock();
        self.alive(&st)?;
        let f = st.files.get_mut(&wal).ok_or(Error::WalNotFound { wal })?;
        f.write(offset, data);
        Ok(())
    }

    async fn sync(&self, wal: WalId, _upto: u64) -> Result<()> {
        let fate = self.op(false).await?;
        let mut st = self.disk.state.lock();
        self.alive(&st)?;
        let f = st.files.get_mut(&wal).ok_or(Error::WalNotFound { wal })?;
        let failed = matches!(fate, Fate::Eio);
        // A failed sync: the kernel dropped the dirty pages, reports it once.
        f.sync(failed);
        if !failed {
            st.carried.retain(|b| b.wal != wal);
        }
        if failed {
            return Err(Self::io_error(format!("syncing WAL {wal}"), EIO));
        }
        Ok(())
    }

    async fn read(&self, wal: WalId, offset: u64, len: u64) -> Result<Bytes> {
        if let Fate::Eio = self.op(false).await? {
            return Err(Self::io_error(format!("reading WAL {wal}"), EIO));
        }
        let st = self.disk.state.lock();
        self.alive(&st)?;
        let f = st.files.get(&wal).ok_or(Error::WalNotFound { wal })?;
        let total = f.data.len() as u64;
        if offset >= total {
            return Err(Error::OffsetOutOfRange {
                wal,
                offset,
                len: total,
            });
        }
        let end = total.min(offset.saturating_add(len));
        Ok(Bytes::copy_from_slice(
            &f.data[offset as usize..end as usize],
        ))
    }

    async fn list_wals(&self) -> Result<Vec<WalInfo>> {
        self.op(false).await?;
        let st = self.disk.state.lock();
        self.alive(&st)?;
        Ok(st
            .files
            .iter()
            .map(|(id, f)| WalInfo {
                id: *id,
                len: f.data.len() as u64,
            })
            .collect())
    }

    async fn close_wal(&self, wal: WalId) -> Result<()> {
        let mut st = self.disk.state.lock();
        if st.generation == self.generation && st.wal_writers.get(&wal) == Some(&self.id) {
            st.wal_writers.remove(&wal);
        }
        Ok(())
    }

    async fn read_config(&self) -> Result<Option<Bytes>> {
        let st = self.disk.state.lock();
        self.alive(&st)?;
        Ok(st.config.clone())
    }

    async fn close(&self) -> Result<()> {
        let mut st = self.disk.state.lock();
        if st.generation == self.generation {
            st.wal_writers.retain(|_, m| *m != self.id);
        }
        Ok(())
    }

    fn continues_wals(&self) -> bool {
        true
    }

    async fn reopen_wal(&self, wal: WalId) -> Result<Option<NewWal>> {
        if let Fate::Eio = self.op(false).await? {
            return Err(Self::io_error(format!("opening WAL {wal}"), EIO));
        }
        let mut st = self.disk.state.lock();
        self.alive(&st)?;
        if !st.files.contains_key(&wal) {
            return Err(Error::WalNotFound { wal });
        }
        if st.wal_writers.contains_key(&wal) {
            return Ok(None);
        }
        st.wal_writers.insert(wal, self.id);
        Ok(Some(NewWal::dense(wal)))
    }
}

#[async_trait]
impl RootRegister for MountedDisk {
    async fn read_root(&self) -> Result<Option<VersionedRoot>> {
        if let Fate::Eio = self.op(false).await? {
            return Err(Self::io_error("reading space_root".into(), EIO));
        }
        let st = self.disk.state.lock();
        self.alive(&st)?;
        Ok(st.root.clone().map(VersionedRoot::by_order))
    }

    async fn write_root(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
    ) -> Result<RootVersion> {
        self.replace_root(root, expected, Vec::new()).await
    }

    /// Carries the bytes with the root, like a local register sharing the
    /// disk with the WALs; declines now and then, so that both ways run.
    async fn write_root_carrying(
        &self,
        root: &RootRecord,
        expected: Option<RootVersion>,
        carried: &[WalBytes],
    ) -> Result<Option<RootVersion>> {
        if self.disk.rng.f64() < 0.25 {
            return Ok(None);
        }
        self.replace_root(root, expected, carried.to_vec())
            .await
            .map(Some)
    }

    async fn lock_root(&self) -> Result<RootLock> {
        let guard = self.lock.clone().lock_owned().await;
        let st = self.disk.state.lock();
        self.alive(&st)?;
        Ok(RootLock::new(guard))
    }
}

#[async_trait]
impl AcceptorStore for MountedDisk {
    async fn load(&self) -> Result<AcceptorState> {
        let st = self.disk.state.lock();
        self.alive(&st)?;
        Ok(st.acceptor.clone())
    }

    async fn save(&self, state: &AcceptorState) -> Result<()> {
        {
            let mut st = self.disk.state.lock();
            self.alive(&st)?;
            st.acceptor_in_flight = Some(InFlight {
                before: st.acceptor.clone(),
                after: state.clone(),
            });
        }
        let fate = self.op(false).await;
        let mut st = self.disk.state.lock();
        if st.generation != self.generation {
            return Err(Error::Closed);
        }
        let Some(w) = st.acceptor_in_flight.take() else {
            return Err(Error::Closed);
        };
        match fate? {
            Fate::Ok => {
                st.acceptor = w.after;
                Ok(())
            }
            _ => {
                if self.disk.rng.f64() < 0.5 {
                    st.acceptor = w.after;
                }
                Err(Self::io_error("replacing cluster_acceptor".into(), EIO))
            }
        }
    }
}

#[cfg(feature = "cloud")]
mod staging {
    use super::*;
    use crate::backends::cloud::staging::{LeftOver, StagingArea, StagingFile, StagingLock};

    /// A staging file on the simulated disk.
    #[derive(Debug)]
    struct SimStagingFile {
        mount: Arc<MountedDisk>,
        wal: WalId,
    }

    #[async_trait]
    impl StagingFile for SimStagingFile {
        async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
            let wal = self.wal;
            match self.mount.op(true).await? {
                Fate::Eio => {
                    return Err(MountedDisk::io_error(format!("writing staging {wal}"), EIO));
                }
                Fate::Enospc => {
                    return Err(MountedDisk::io_error(
                        format!("writing staging {wal}"),
                        ENOSPC,
                    ));
                }
                Fate::Ok => {}
            }
            let mut st = self.mount.disk.state.lock();
            self.mount.alive(&st)?;
            let f = st.staging.get_mut(&wal).ok_or(Error::WalNotFound { wal })?;
            f.write(offset, data);
            Ok(())
        }

        async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
            let wal = self.wal;
            if let Fate::Eio = self.mount.op(false).await? {
                return Err(MountedDisk::io_error(format!("reading staging {wal}"), EIO));
            }
            let st = self.mount.disk.state.lock();
            self.mount.alive(&st)?;
            let f = st.staging.get(&wal).ok_or(Error::WalNotFound { wal })?;
            let mut out = vec![0u8; len];
            let start = (offset as usize).min(f.data.len());
            let end = (offset as usize).saturating_add(len).min(f.data.len());
            out[..end - start].copy_from_slice(&f.data[start..end]);
            Ok(Bytes::from(out))
        }

        async fn sync(&self) -> Result<()> {
            let wal = self.wal;
            let fate = self.mount.op(false).await?;
            let mut st = self.mount.disk.state.lock();
            self.mount.alive(&st)?;
            let f = st.staging.get_mut(&wal).ok_or(Error::WalNotFound { wal })?;
            let failed = matches!(fate, Fate::Eio);
            f.sync(failed);
            if failed {
                return Err(MountedDisk::io_error(format!("syncing staging {wal}"), EIO));
            }
            Ok(())
        }
    }

    /// Releases the staging area when dropped.
    struct Release {
        disk: SimDisk,
        generation: u64,
    }

    impl Drop for Release {
        fn drop(&mut self) {
            let mut st = self.disk.state.lock();
            if st.staging_locked == Some(self.generation) {
                st.staging_locked = None;
            }
        }
    }

    impl MountedDisk {
        /// This mount as a cloud provider's staging area.
        pub fn staging(self: &Arc<Self>) -> Arc<dyn StagingArea> {
            Arc::new(SimStaging(self.clone()))
        }
    }

    /// A mounted disk's staging area.
    #[derive(Debug)]
    struct SimStaging(Arc<MountedDisk>);

    #[async_trait]
    impl StagingArea for SimStaging {
        async fn open(&self) -> Result<(StagingLock, Vec<LeftOver>)> {
            let m = &self.0;
            let mut st = m.disk.state.lock();
            m.alive(&st)?;
            if st.staging_locked.is_some_and(|g| g == st.generation) {
                return Err(Error::Locked {
                    path: "sim://staging.lock".into(),
                });
            }
            st.staging_locked = Some(st.generation);
            let left = st
                .staging
                .iter()
                .map(|(wal, f)| LeftOver {
                    wal: *wal,
                    file: Arc::new(SimStagingFile {
                        mount: m.clone(),
                        wal: *wal,
                    }) as Arc<dyn StagingFile>,
                    len: f.data.len() as u64,
                })
                .collect();
            Ok((
                StagingLock::new(Release {
                    disk: m.disk.clone(),
                    generation: st.generation,
                }),
                left,
            ))
        }

        async fn create(&self, wal: WalId) -> Result<Arc<dyn StagingFile>> {
            let m = &self.0;
            if let Fate::Eio = m.op(false).await? {
                return Err(MountedDisk::io_error(
                    format!("creating staging {wal}"),
                    EIO,
                ));
            }
            let mut st = m.disk.state.lock();
            m.alive(&st)?;
            st.staging.insert(wal, File::default());
            Ok(Arc::new(SimStagingFile {
                mount: m.clone(),
                wal,
            }))
        }

        async fn remove(&self, wal: WalId) -> Result<()> {
            let m = &self.0;
            m.op(false).await?;
            let mut st = m.disk.state.lock();
            m.alive(&st)?;
            st.staging.remove(&wal);
            Ok(())
        }

        fn dir(&self) -> Option<&std::path::Path> {
            None
        }
    }
}
