//! Where a node's [`Acceptor`](super::Acceptor) keeps its state durably.
//!
//! The state is what consensus needs to survive a restart: the highest term
//! the acceptor may have promised (reserved in blocks, see
//! [`TERM_BLOCK`]) and the root it accepted with its ballot. Each save
//! records the whole state (on files, as one record appended to a log), and
//! the acceptor answers a request only after the save that records its
//! decision returned.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, FormatError, Result};
use crate::protocol::AcceptedRoot;

/// Terms reserved per durable write of a promise: before promising a term
/// above the stored ceiling, the acceptor durably raises the ceiling to that
/// term plus this block, and after a restart it promises nothing at or below
/// the ceiling. Most promises then need no write.
pub const TERM_BLOCK: u64 = 1024;

/// An acceptor's durable state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptorState {
    /// Every term at or below may have been promised.
    pub ceiling: u64,
    /// The root accepted last, with its ballot.
    pub accepted: Option<AcceptedRoot>,
}

/// Durable storage of an [`AcceptorState`].
#[async_trait]
pub trait AcceptorStore: Send + Sync + fmt::Debug {
    /// The stored state (the default state when none was stored).
    async fn load(&self) -> Result<AcceptorState>;
    /// Replaces the state durably and atomically.
    async fn save(&self, state: &AcceptorState) -> Result<()>;
}

/// The file `cluster_acceptor` in a node's directory: an append-only log of
/// CRC-checked records (magic `PBACLOG1`; the state is the last valid
/// record, a torn last record is ignored), so that recording a decision is
/// one append and one `fdatasync`.
///
/// The first save of a store (and the first after a failed write, and one
/// when the log has grown past [`COMPACT_AT`]) writes the whole file anew
/// instead: a temporary file fsynced and renamed over it, and the directory
/// fsynced. That also drops a torn last record left by a crash, and never
/// appends after bytes whose write or sync failed (Linux may already have
/// dropped them while reporting the failure only once). Files of earlier
/// versions (JSON with a CRC32C, or a legacy `cluster_term` file holding a
/// bare ceiling beside it) are read, and replaced by a log on the first
/// save. Clones share the open log.
#[derive(Debug, Clone)]
pub struct FileAcceptorStore {
    path: PathBuf,
    log: Arc<Mutex<OpenLog>>,
    /// Order of the saves, taken when `save` is called (under the
    /// acceptor's lock, so in the order of its decisions).
    next_save: Arc<std::sync::atomic::AtomicU64>,
}

/// The log being appended to, if any.
#[derive(Debug, Default)]
struct OpenLog {
    /// `None`: the next save writes the whole file.
    file: Option<std::fs::File>,
    /// Bytes of the log (where the next record goes).
    len: u64,
    /// Order of the last save written (see `save_in_order`).
    written: u64,
}

/// File name of the acceptor state in a node's directory.
pub const ACCEPTOR_FILE: &str = "cluster_acceptor";
const LEGACY_TERM_FILE: &str = "cluster_term";

/// Size past which a save rewrites the log with only the new state.
pub const COMPACT_AT: u64 = 256 << 10;

#[derive(Serialize, Deserialize)]
struct Stored {
    state: AcceptorState,
    crc: u32,
}

fn crc_of(state: &AcceptorState) -> u32 {
    crc32c::crc32c(&serde_json::to_vec(state).unwrap_or_default())
}

impl FileAcceptorStore {
    /// The state file in a node's directory.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        FileAcceptorStore {
            path: dir.into().join(ACCEPTOR_FILE),
            log: Arc::default(),
            next_save: Arc::default(),
        }
    }

    /// Whether `dir` holds a cluster node's acceptor state (the directory
    /// belongs to a cluster node).
    pub fn exists_in(dir: &std::path::Path) -> bool {
        dir.join(ACCEPTOR_FILE).exists() || dir.join(LEGACY_TERM_FILE).exists()
    }

    fn decode(&self, bytes: &[u8]) -> Result<AcceptorState> {
        let corrupt = |m: String| Error::CorruptRoot {
            location: self.path.display().to_string(),
            source: FormatError::BadRoot(m),
        };
        if bytes.starts_with(super::acceptor_log::ACCEPTOR_LOG_MAGIC) {
            let log = super::acceptor_log::decode_log(bytes).map_err(corrupt)?;
            if log.torn_bytes > 0 {
                tracing::warn!(
                    path = %self.path.display(),
                    torn_bytes = log.torn_bytes,
                    "acceptor log ends in a torn record (an append cut by a crash); ignored"
                );
            }
            return Ok(log.state);
        }
        let stored: Stored =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("acceptor state: {e}")))?;
        let computed = crc_of(&stored.state);
        if computed != stored.crc {
            return Err(Error::CorruptRoot {
                location: self.path.display().to_string(),
                source: FormatError::BadCrc {
                    stored: stored.crc,
                    computed,
                },
            });
        }
        Ok(stored.state)
    }

    /// Makes the next save write the whole file (as after a failed write).
    #[cfg(test)]
    fn forget_open_log(&self) {
        self.log.lock().file = None;
    }
}

/// Writes save number `order` unless a later one was written already.
///
/// A save whose caller stopped waiting still runs (on a current-thread
/// runtime, on a blocking thread), possibly after the acceptor's next
/// save: the later state is the newer decision, and must stay the last.
fn save_in_order(
    path: &std::path::Path,
    log: &mut OpenLog,
    order: u64,
    record: &[u8],
) -> Result<()> {
    if order <= log.written {
        return Ok(());
    }
    save_locked(path, log, record)?;
    log.written = order;
    Ok(())
}

/// Appends `record` to the open log, or writes the whole file holding only
/// `record` when there is none or it is full; `log` is left without a file
/// on any failure.
fn save_locked(path: &std::path::Path, log: &mut OpenLog, record: &[u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let ctx = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
    let appendable = log
        .len
        .checked_add(record.len() as u64)
        .is_some_and(|end| end <= COMPACT_AT);
    if let (Some(file), true) = (&log.file, appendable) {
        let written = file
            .write_all_at(record, log.len)
            .map_err(|e| ctx("appending to", e))
            .and_then(|()| file.sync_data().map_err(|e| ctx("syncing", e)));
        return match written {
            Ok(()) => {
                log.len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                log.file = None;
                Err(e)
            }
        };
    }
    log.file = None;
    let whole = super::acceptor_log::log_of_record(record);
    crate::backends::file_io::replace_file(path, &whole)?;
    // The state is durable; without the handle the next save rewrites.
    if let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) {
        log.file = Some(file);
        log.len = whole.len() as u64;
    }
    Ok(())
}

#[async_trait]
impl AcceptorStore for FileAcceptorStore {
    async fn load(&self) -> Result<AcceptorState> {
        let path = self.path.clone();
        let legacy = path.with_file_name(LEGACY_TERM_FILE);
        let read = |p: PathBuf| match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
        };
        if let Some(b) = read(path)? {
            return self.decode(&b);
        }
        match read(legacy.clone())? {
            Some(b) => {
                let text = String::from_utf8_lossy(&b);
                let ceiling = text.trim().parse::<u64>().map_err(|e| {
                    Error::invalid("term ceiling", format!("{}: {e}", legacy.display()))
                })?;
                Ok(AcceptorState {
                    ceiling,
                    accepted: None,
                })
            }
            None => Ok(AcceptorState::default()),
        }
    }

    async fn save(&self, state: &AcceptorState) -> Result<()> {
        let record = super::acceptor_log::encode_record(state)
            .map_err(|e| Error::invalid("acceptor state", e))?;
        let order = self
            .next_save
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let (path, log) = (self.path.clone(), Arc::clone(&self.log));
        // Runs to its end even if the caller stops waiting, so the open log
        // and the file never disagree.
        crate::backends::file_io::blocking(move || {
            save_in_order(&path, &mut log.lock(), order, &record)
        })
        .await
    }
}

/// State in memory; clones share it, so a test can "restart" an acceptor
/// with the same store. Only for tests and simulations: promises kept here
/// are forgotten when the process ends.
#[derive(Debug, Clone, Default)]
pub struct MemoryAcceptorStore(Arc<Mutex<AcceptorState>>);

#[async_trait]
impl AcceptorStore for MemoryAcceptorStore {
    async fn load(&self) -> Result<AcceptorState> {
        Ok(self.0.lock().clone())
    }
    async fn save(&self, state: &AcceptorState) -> Result<()> {
        *self.0.lock() = state.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::acceptor_log::decode_log;
    use crate::protocol::AcceptedRoot;
    use crate::types::{AtomPointer, RootRecord, WalId};

    fn state(n: u64) -> AcceptorState {
        AcceptorState {
            ceiling: n * TERM_BLOCK,
            accepted: Some(AcceptedRoot {
                ballot: n,
                root: RootRecord::new(
                    AtomPointer::new(WalId(uuid::Uuid::from_u128(u128::from(n))), 40),
                    n,
                    n,
                    Some("n1".into()),
                ),
            }),
        }
    }

    fn records_in(dir: &std::path::Path) -> usize {
        decode_log(&std::fs::read(dir.join(ACCEPTOR_FILE)).unwrap())
            .unwrap()
            .records
    }

    #[tokio::test]
    async fn saves_append_and_a_new_store_reads_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileAcceptorStore::in_dir(dir.path());
        assert_eq!(store.load().await.unwrap(), AcceptorState::default());
        for n in 1..=5 {
            store.save(&state(n)).await.unwrap();
        }
        // The first save wrote the file, the others appended to it.
        assert_eq!(records_in(dir.path()), 5);
        let again = FileAcceptorStore::in_dir(dir.path());
        assert_eq!(again.load().await.unwrap(), state(5));
        // A new store's first save rewrites the file with its state only.
        again.save(&state(6)).await.unwrap();
        assert_eq!(records_in(dir.path()), 1);
        assert_eq!(store.load().await.unwrap(), state(6));
    }

    #[tokio::test]
    async fn the_log_is_rewritten_when_it_reaches_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileAcceptorStore::in_dir(dir.path());
        let record = crate::cluster::acceptor_log::encode_record(&state(1))
            .unwrap()
            .len() as u64;
        let saves = COMPACT_AT / record * 3;
        for n in 1..=saves {
            store.save(&state(n)).await.unwrap();
            let len = std::fs::metadata(dir.path().join(ACCEPTOR_FILE))
                .unwrap()
                .len();
            assert!(len <= COMPACT_AT + 64, "log of {len} bytes after {n} saves");
        }
        assert!(records_in(dir.path()) < saves as usize);
        assert_eq!(
            FileAcceptorStore::in_dir(dir.path()).load().await.unwrap(),
            state(saves)
        );
    }

    #[tokio::test]
    async fn a_torn_last_record_is_ignored_and_dropped_by_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileAcceptorStore::in_dir(dir.path());
        store.save(&state(1)).await.unwrap();
        store.save(&state(2)).await.unwrap();
        // A crash in the middle of the third append.
        let path = dir.path().join(ACCEPTOR_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let third = crate::cluster::acceptor_log::encode_record(&state(3)).unwrap();
        bytes.extend_from_slice(&third[..third.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();
        let after = FileAcceptorStore::in_dir(dir.path());
        assert_eq!(after.load().await.unwrap(), state(2));
        after.save(&state(4)).await.unwrap();
        let log = decode_log(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!((log.state, log.torn_bytes), (state(4), 0));
    }

    #[tokio::test]
    async fn damage_in_the_middle_refuses_to_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileAcceptorStore::in_dir(dir.path());
        for n in 1..=3 {
            store.save(&state(n)).await.unwrap();
        }
        let path = dir.path().join(ACCEPTOR_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0x40; // inside the first record's payload
        std::fs::write(&path, &bytes).unwrap();
        let e = FileAcceptorStore::in_dir(dir.path())
            .load()
            .await
            .unwrap_err();
        assert!(matches!(e, Error::CorruptRoot { .. }), "{e}");
        assert!(e.to_string().contains("cluster_acceptor"), "{e}");
    }

    #[tokio::test]
    async fn after_a_failed_append_the_next_save_rewrites_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileAcceptorStore::in_dir(dir.path());
        store.save(&state(1)).await.unwrap();
        let path = dir.path().join(ACCEPTOR_FILE);
        // The open log becomes a handle that cannot write: the append fails.
        {
            let mut log = store.log.lock();
            log.file = Some(std::fs::File::open(&path).unwrap());
        }
        store.save(&state(2)).await.unwrap_err();
        assert_eq!(store.load().await.unwrap(), state(1));
        store.save(&state(3)).await.unwrap();
        assert_eq!(records_in(dir.path()), 1, "rewritten whole");
        store.save(&state(4)).await.unwrap();
        assert_eq!(records_in(dir.path()), 2, "appending again");
        assert_eq!(store.load().await.unwrap(), state(4));
        store.forget_open_log();
        store.save(&state(5)).await.unwrap();
        assert_eq!(records_in(dir.path()), 1);
    }

    #[tokio::test]
    async fn a_save_that_runs_after_a_later_one_does_not_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileAcceptorStore::in_dir(dir.path());
        store.save(&state(1)).await.unwrap();
        let record = |n| crate::cluster::acceptor_log::encode_record(&state(n)).unwrap();
        {
            let mut log = store.log.lock();
            save_in_order(&store.path, &mut log, 3, &record(3)).unwrap();
            // Save 2's caller was cancelled; its write comes last.
            save_in_order(&store.path, &mut log, 2, &record(2)).unwrap();
        }
        assert_eq!(store.load().await.unwrap(), state(3));
        assert_eq!(records_in(dir.path()), 2);
    }

    #[tokio::test]
    async fn files_of_earlier_versions_are_read_and_replaced_by_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ACCEPTOR_FILE);
        // A bare legacy ceiling.
        std::fs::write(dir.path().join(LEGACY_TERM_FILE), b"4096\n").unwrap();
        let store = FileAcceptorStore::in_dir(dir.path());
        assert_eq!(store.load().await.unwrap().ceiling, 4096);
        // The JSON state file of earlier versions takes precedence.
        let old = state(7);
        let json = serde_json::to_vec(&Stored {
            crc: crc_of(&old),
            state: old.clone(),
        })
        .unwrap();
        std::fs::write(&path, &json).unwrap();
        assert_eq!(store.load().await.unwrap(), old);
        let mut bad = json.clone();
        let at = bad.len() - 3;
        bad[at] = b'9';
        std::fs::write(&path, &bad).unwrap();
        assert!(store.load().await.is_err());
        std::fs::write(&path, &json).unwrap();
        store.save(&state(8)).await.unwrap();
        assert!(
            std::fs::read(&path)
                .unwrap()
                .starts_with(crate::cluster::acceptor_log::ACCEPTOR_LOG_MAGIC)
        );
        assert_eq!(store.load().await.unwrap(), state(8));
    }
}
