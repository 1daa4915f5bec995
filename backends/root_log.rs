//! The root of a space directory: `space_root.log`, where a root is made
//! durable, and `space_root`, its reference-shaped copy.
//!
//! A commit used to replace `space_root` whole (temporary file, fsync,
//! rename, directory fsync: three device flushes on top of the WAL's). The
//! root now goes into an append-only log in the format of
//! [`crate::record_log`] (magic `PBROOTL1`): one record per root, written in
//! place into a file preallocated with zeros and made durable by one
//! `fdatasync` (no size or block change, so no journal commit for metadata).
//! The root is the last valid record.
//!
//! `space_root` stays what the reference implementation (and older
//! protobase) read and write. It is refreshed from the log, without a sync,
//! at most once a [`REFRESH_AFTER`] by a commit, and exactly and durably by
//! `close`; between the two a reader of `space_root` alone sees a root up to
//! a second old. A writer that knows only `space_root` (the reference, under
//! the same `space_root.lock`) may still write it, and its root must win
//! over the log's: every record carries the fingerprint (length, CRC32C) of
//! the `space_root` the log writer found, and `space_root` is taken to be
//! newer than the log when it is neither the file the last record saw nor a
//! native root (one with a checksum, as refreshes write) that is not newer
//! than the log's.
//!
//! Appends are serialised between processes by an OS lock (`flock`) on the
//! log file, so [`write`](RootFiles::write) is a compare-and-swap on its
//! own. A log that is full, has bytes after its last record (an append torn
//! by a crash), or got a write error is replaced by a new file holding the
//! new record (temporary file locked, written, fsynced, renamed, directory
//! fsynced; readers that open it wait for the lock, so they never build on
//! a name that is not durable yet). A read that finds a record this process
//! did not make durable syncs the log before returning it: a root another
//! process is still syncing is never returned before it is durable.
//!
//! After a failed write or sync the kernel may have dropped the record
//! while still showing it in the page cache; the next call rewrites the log
//! with the last record this process trusts, unless another process has
//! appended after the failed record.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::carried_wal::{self, CarriedBytes};
use super::file_id;
use super::file_io::{read_full_at, sync_dir};
use crate::error::{Error, FormatError, Result};
use crate::record_log::{self, LogKind, RECORD_HEADER};
use crate::types::RootRecord;

/// The root log's name in a space directory.
pub(crate) const ROOT_LOG_FILE: &str = "space_root.log";
/// The reference-shaped root file's name.
pub(crate) const ROOT_FILE: &str = "space_root";

const KIND: LogKind = LogKind {
    magic: b"PBROOTL1",
    what: "root",
    torn_span: RECORD_HEADER + MAX_ENTRY,
};

/// Size of a new log: zeros after its first record (about 250 roots; a
/// full log is replaced, about a millisecond, so under 1% of the commit
/// time; a larger one costs space and reading it at open).
pub(crate) const LOG_SIZE: u64 = 64 << 10;

/// Largest record payload a root log takes (a root's JSON with a writer id
/// of 255 bytes is under a kilobyte).
const MAX_ENTRY: usize = 4 << 10;

/// Bytes after the last record a writer checks are zero before appending:
/// longer than any record, so no part of a torn one is left after the new
/// record.
const CLEAN_WINDOW: usize = 2 * (RECORD_HEADER + MAX_ENTRY);

/// Largest log file read whole (a log is [`LOG_SIZE`]; anything much larger
/// is not one).
const MAX_LOG_FILE: u64 = 64 << 20;

/// How old `space_root` may get while commits run.
pub(crate) const REFRESH_AFTER: Duration = Duration::from_secs(1);

/// Identifies the content of a `space_root` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Fingerprint {
    len: u64,
    crc: u32,
}

/// The fingerprint of a `space_root`'s bytes (`None`: empty or blank, as
/// good as absent).
fn fingerprint(bytes: &[u8]) -> Option<Fingerprint> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(Fingerprint {
        len: bytes.len() as u64,
        crc: crc32c::crc32c(bytes),
    })
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    root: RootRecord,
    /// The `space_root` the writer found (absent: none, or empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<Fingerprint>,
    /// WAL bytes the root reaches that were not synced in their WAL (see
    /// [`super::carried_wal`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    carried: Vec<CarriedBytes>,
}

/// The log as this process last read it.
#[derive(Debug)]
struct OpenLog {
    /// Shared with the [`FileLock`]s taken on it (no descriptor is
    /// duplicated per lock).
    file: Arc<File>,
    /// Device and inode: whether the name still points at this file.
    id: (u64, u64),
    /// Where the last valid record ends.
    end: u64,
    /// The file's length.
    size: u64,
    tail: Entry,
    /// Records up to here are known to be durable.
    durable: u64,
    /// The log's name is known to be durable (this process created it, or
    /// synced the directory since opening it).
    name_durable: bool,
}

impl OpenLog {
    fn learn(&mut self, entry: Entry, end: u64) {
        self.tail = entry;
        self.end = end;
    }
}

#[derive(Debug, Default)]
struct State {
    log: Option<OpenLog>,
    /// When this process last refreshed `space_root`.
    refreshed: Option<Instant>,
    /// A write of the record at this offset failed: the page cache may
    /// show bytes the disk does not have.
    poisoned_at: Option<u64>,
}

/// A space directory's root: the log and the `space_root` copy.
#[derive(Debug)]
pub(crate) struct RootFiles {
    dir: PathBuf,
    writable: bool,
    /// The size of a new log ([`LOG_SIZE`]; smaller in tests).
    log_size: u64,
    state: Mutex<State>,
}

/// An OS lock (`flock`) on a file, held until dropped.
struct FileLock(Arc<File>);

impl FileLock {
    /// Locks `file` exclusively, waiting for other holders.
    fn on(file: &Arc<File>, path: &Path) -> Result<Self> {
        file.lock()
            .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        Ok(FileLock(file.clone()))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl RootFiles {
    /// The root files of `dir` (nothing is opened yet).
    pub(crate) fn new(dir: &Path, writable: bool) -> Self {
        RootFiles {
            dir: dir.to_path_buf(),
            writable,
            log_size: LOG_SIZE,
            state: Mutex::default(),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(ROOT_LOG_FILE)
    }

    fn root_path(&self) -> PathBuf {
        self.dir.join(ROOT_FILE)
    }

    /// A temporary name beside `name` that no other process or call uses
    /// (the reference names its `space_root` temporaries the same way).
    fn temporary(&self, name: &str) -> PathBuf {
        self.dir.join(format!(
            "{name}.{}.{}.tmp",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// The current root (blocking).
    pub(crate) fn read(&self) -> Result<Option<RootRecord>> {
        let mut st = self.state.lock();
        self.recover(&mut st)?;
        self.catch_up(&mut st)?;
        let file = self.read_copy()?;
        let (root, from_log) = self.current(&st, file.as_deref())?;
        if from_log && let Some(log) = st.log.as_mut() {
            let synced = log.name_durable && log.durable >= log.end;
            if !synced && file.as_deref() == Some(log.tail.root.to_json().as_slice()) {
                // `space_root` is a copy of the last record, and copies are
                // written only of records that are durable, under a durable
                // name (a refresh after its write, or `close`).
                log.durable = log.end;
                log.name_durable = true;
            }
            make_durable(log, &self.log_path())?;
        }
        Ok(root)
    }

    /// Stores `root` if the current root is the one `expected` names
    /// ([`check_cas`](crate::backends::memory::check_cas)); durable when it
    /// returns (blocking).
    pub(crate) fn write(
        &self,
        root: &RootRecord,
        expected: Option<crate::root_register::RootVersion>,
        carried: &[crate::root_register::WalBytes],
    ) -> Result<()> {
        let mut st = self.state.lock();
        self.recover(&mut st)?;
        let path = self.log_path();
        // Another process creating the log between our look and our create
        // sends us round again (to append to theirs).
        for _ in 0..16 {
            let lock = self.lock_log(&mut st)?;
            let file = self.read_copy()?;
            let (current, _) = self.current(&st, file.as_deref())?;
            crate::backends::memory::check_cas(current.as_ref(), root, expected)?;
            let entry = Entry {
                root: root.clone(),
                file: file.as_deref().and_then(fingerprint),
                carried: carried.iter().map(CarriedBytes::from).collect(),
            };
            if lock.is_none() {
                // No log yet: create it with this record, unless another
                // process does first.
                let Some(log) = self.new_log(&entry, Publish::IfAbsent)? else {
                    continue;
                };
                st.log = Some(log);
                self.maybe_refresh(&mut st);
                return Ok(());
            }
            let record = encode(&entry)?;
            let log = st.log.as_mut().unwrap_or_else(|| unreachable!());
            if log.end + record.len() as u64 <= log.size && clean_after(log, &path)? {
                if !log.name_durable {
                    // A log another process created: its name must be
                    // durable before a root in it is acknowledged.
                    sync_dir(&self.dir)?;
                    log.name_durable = true;
                }
                let at = log.end;
                if let Err(e) = append(log, &record, &path) {
                    st.poisoned_at = Some(at);
                    return Err(e);
                }
                let end = at + record.len() as u64;
                log.learn(entry, end);
                log.durable = end;
            } else {
                // The old log's records go: the WALs whose bytes they carry
                // must hold them durably first.
                self.sync_carried(&log.file)?;
                let new = self
                    .new_log(&entry, Publish::Replace)?
                    .unwrap_or_else(|| unreachable!());
                st.log = Some(new);
            }
            self.maybe_refresh(&mut st);
            return Ok(());
        }
        Err(Error::io(
            format!("writing {}", path.display()),
            std::io::Error::other("the root log was created by others 16 times over"),
        ))
    }

    /// Locks the current log, following replacements, and reads the
    /// records appended before the lock was ours (`None`: no log).
    fn lock_log(&self, st: &mut State) -> Result<Option<FileLock>> {
        let path = self.log_path();
        for _ in 0..16 {
            // A known log is locked first and checked after (a replaced
            // one is unlinked): no look at the name before.
            if st.log.is_none() {
                self.catch_up(st)?;
            }
            let Some(log) = st.log.as_ref() else {
                return Ok(None);
            };
            let lock = FileLock::on(&log.file, &path)?;
            if super::fs::unlinked(&lock.0, &path)? {
                st.log = None;
                continue;
            }
            // Still the file at the log's name, and no one replaces it while
            // the lock is ours: read what was appended before we got it.
            if let Some(log) = st.log.as_mut() {
                read_new_records(log, &path)?;
            }
            return Ok(Some(lock));
        }
        Err(Error::io(
            format!("locking {}", path.display()),
            std::io::Error::other("the root log was replaced 16 times while this call waited"),
        ))
    }

    /// Makes `space_root` the log's root, durably (at `close`; blocking).
    pub(crate) fn settle(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        let mut st = self.state.lock();
        self.recover(&mut st)?;
        // Under the log's lock, so no newer record is appended (and
        // copied) meanwhile.
        let Some(_lock) = self.lock_log(&mut st)? else {
            return Ok(());
        };
        let bytes = self.read_copy()?;
        let (root, from_log) = self.current(&st, bytes.as_deref())?;
        if let (true, Some(root)) = (from_log, root) {
            let json = root.to_json();
            if bytes.as_deref() != Some(json.as_slice()) {
                if let Some(log) = st.log.as_mut() {
                    make_durable(log, &self.log_path())?;
                    self.sync_carried(&log.file)?;
                }
                self.write_copy(&json, true)?;
            }
            st.refreshed = Some(Instant::now());
        }
        Ok(())
    }

    /// Replaces `space_root` with `json` (a temporary file of a unique
    /// name, as other processes and the reference write theirs, renamed
    /// over it); `durable`: the file and the rename synced.
    fn write_copy(&self, json: &[u8], durable: bool) -> Result<()> {
        let path = self.root_path();
        let tmp = self.temporary(ROOT_FILE);
        let ctx = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
        let remove_tmp = RemoveOnDrop(&tmp);
        let file = File::create(&tmp).map_err(|e| ctx("creating", e))?;
        file.write_all_at(json, 0).map_err(|e| ctx("writing", e))?;
        if durable {
            file.sync_all().map_err(|e| ctx("syncing", e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| ctx("renaming", e))?;
        drop(remove_tmp);
        if durable {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// `space_root`'s bytes (`None`: no such file). Read without asking
    /// for its size first (`std::fs::read` stats it: one more system call
    /// per commit); at most [`MAX_LOG_FILE`] bytes.
    fn read_copy(&self) -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        let path = self.root_path();
        let ctx = |e| Error::io(format!("reading {}", path.display()), e);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ctx(e)),
        };
        let mut bytes = Vec::with_capacity(1024);
        (&file)
            .take(MAX_LOG_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(ctx)?;
        if bytes.len() as u64 > MAX_LOG_FILE {
            return Err(corrupt(
                &path,
                format!("more than {MAX_LOG_FILE} bytes: not a root"),
            ));
        }
        Ok(Some(bytes))
    }

    /// The current root given `space_root`'s bytes, and whether it is the
    /// log's.
    fn current(&self, st: &State, file: Option<&[u8]>) -> Result<(Option<RootRecord>, bool)> {
        let print = file.and_then(fingerprint);
        let parse = || match (file, print) {
            (Some(bytes), Some(_)) => {
                RootRecord::from_json(bytes)
                    .map(Some)
                    .map_err(|source| Error::CorruptRoot {
                        location: self.root_path().display().to_string(),
                        source,
                    })
            }
            _ => Ok(None),
        };
        let Some(log) = st.log.as_ref() else {
            return Ok((parse()?, false));
        };
        let from_log = Ok((Some(log.tail.root.clone()), true));
        // `space_root` changes under the log's lock only by refreshes
        // (native roots, copies of a record), so after the last record it
        // is what that record saw, or a refresh, or an outside write. The
        // first two cases need no parsing.
        if print.is_none() || print == log.tail.file {
            return from_log;
        }
        match parse() {
            // A native root not newer than the log's: a copy this process
            // or another refreshed.
            Ok(Some(r)) if r.checksum.is_some() && !r.is_newer_than(&log.tail.root) => from_log,
            outside => Ok((outside?, false)),
        }
    }

    /// Brings the view of the log up to date: opens it when it is new (or
    /// was replaced), else reads the records appended since.
    fn catch_up(&self, st: &mut State) -> Result<()> {
        let path = self.log_path();
        let named = match file_id::of_path(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                st.log = None;
                return Ok(());
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        match st.log.as_mut() {
            Some(log) if log.id == named.id => {
                read_new_records(log, &path)?;
                Ok(())
            }
            _ => {
                st.log = Some(self.open_log(&path)?);
                Ok(())
            }
        }
    }

    /// Opens and decodes the whole log at `path`.
    fn open_log(&self, path: &Path) -> Result<OpenLog> {
        let ctx = |e| Error::io(format!("opening {}", path.display()), e);
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(self.writable)
                .open(path)
                .map_err(ctx)?,
        );
        // A log being created or replaced is locked until its name is
        // durable: wait for that (a shared lock lets readers in together).
        file.lock_shared().map_err(ctx)?;
        let meta = file_id::of_file(&file).map_err(ctx)?;
        let result = (|| {
            let bytes = read_log_bytes(&file, meta.len, path)?;
            // Only the last record is parsed; the others' framing and
            // checksums are checked.
            let walked =
                record_log::walk_log(KIND, &bytes, |_| Ok(())).map_err(|m| corrupt(path, m))?;
            let (tail, _) = record_log::decode_record::<Entry>(&bytes[walked.last_at..walked.end])
                .map_err(|e| corrupt(path, format!("the last record: {e:?}")))?;
            tail.root
                .verify_checksum()
                .map_err(|e| corrupt(path, format!("the last record's root: {e}")))?;
            Ok(OpenLog {
                id: meta.id,
                end: walked.end as u64,
                size: bytes.len() as u64,
                tail,
                durable: 0,
                name_durable: false,
                file: file.clone(),
            })
        })();
        let _ = file.unlock();
        result
    }

    /// A new log holding `entry`, locked while it is written and published
    /// under the log's name; `None` if `Publish::IfAbsent` found one there.
    fn new_log(&self, entry: &Entry, publish: Publish) -> Result<Option<OpenLog>> {
        let path = self.log_path();
        let record = encode(entry)?;
        let tmp = self.temporary(ROOT_LOG_FILE);
        let ctx = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| ctx("creating", e))?,
        );
        let remove_tmp = RemoveOnDrop(&tmp);
        let _lock = FileLock::on(&file, &tmp)?;
        let mut bytes = record_log::log_of_record(KIND, &record);
        let end = bytes.len() as u64;
        bytes.resize(self.log_size.max(end) as usize, 0);
        file.write_all_at(&bytes, 0)
            .map_err(|e| ctx("writing", e))?;
        file.sync_all().map_err(|e| ctx("syncing", e))?;
        match publish {
            Publish::IfAbsent => match std::fs::hard_link(&tmp, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
                Err(e) => return Err(ctx("linking", e)),
            },
            Publish::Replace => std::fs::rename(&tmp, &path).map_err(|e| ctx("renaming", e))?,
        }
        drop(remove_tmp);
        sync_dir(&self.dir)?;
        let meta = file_id::of_file(&file).map_err(|e| ctx("reading", e))?;
        Ok(Some(OpenLog {
            id: meta.id,
            end,
            size: bytes.len() as u64,
            tail: entry.clone(),
            durable: end,
            name_durable: true,
            file,
        }))
    }

    /// After a failed write: rewrites the log with the last record this
    /// process trusts, unless others appended after the failed one.
    fn recover(&self, st: &mut State) -> Result<()> {
        let Some(at) = st.poisoned_at else {
            return Ok(());
        };
        let path = self.log_path();
        let Some(log) = st.log.as_ref() else {
            st.poisoned_at = None;
            return Ok(());
        };
        let trusted = log.tail.clone();
        let lock = FileLock::on(&log.file, &path)?;
        if !super::fs::unlinked(&lock.0, &path)? {
            let mut probe = OpenLog {
                file: lock.0.clone(),
                id: log.id,
                end: at,
                size: log.size,
                tail: log.tail.clone(),
                durable: 0,
                name_durable: false,
            };
            // The failed record (if its bytes show), then anything after it.
            let others_after = read_new_records(&mut probe, &path)? >= 2;
            if !others_after {
                self.sync_carried(&lock.0)?;
                let file_bytes = self.read_copy()?;
                let print = file_bytes.as_deref().and_then(fingerprint);
                let (_, from_log) = self.current(st, file_bytes.as_deref())?;
                let entry = Entry {
                    file: if from_log { print } else { trusted.file },
                    root: trusted.root,
                    carried: Vec::new(),
                };
                st.log = self.new_log(&entry, Publish::Replace)?;
            } else {
                st.log = None;
            }
        } else {
            st.log = None;
        }
        st.poisoned_at = None;
        Ok(())
    }

    /// Syncs the WALs whose bytes the records of the log in `file` carry
    /// ([`carried_wal::sync_wals`]).
    fn sync_carried(&self, file: &File) -> Result<()> {
        let carried = self.carried_in(file)?;
        carried_wal::sync_wals(&self.dir, &carried)
    }

    /// The WAL bytes the records of the log in `file` carry, in log order,
    /// after the last record `space_root` is a copy of: copies are written
    /// only after the WALs of every record before them are synced (a
    /// refresh, `close`), so those need nothing.
    fn carried_in(&self, file: &File) -> Result<Vec<CarriedBytes>> {
        let path = self.log_path();
        let len = file_id::of_file(file)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len;
        let bytes = read_log_bytes(file, len, &path)?;
        // Only an exact native copy marks a record (its JSON is the
        // record's root, whole: a prefix of it must not match).
        let copy = self.read_copy()?.filter(|c| {
            RootRecord::from_json(c).is_ok_and(|r| r.checksum.is_some() && r.to_json() == *c)
        });
        let carries = memchr::memmem::Finder::new(CARRIED_KEY);
        let mut carrying: Vec<(usize, usize)> = Vec::new();
        record_log::walk_log(KIND, &bytes, |payload| {
            // A record is `{"root":<the root's JSON>,...}`: a copy of its
            // root is the bytes after the key.
            let is_copied = copy.as_deref().is_some_and(|c| {
                payload
                    .strip_prefix(ROOT_KEY)
                    .and_then(|rest| rest.strip_prefix(c))
                    .is_some_and(|after| matches!(after.first(), Some(b',' | b'}')))
            });
            if is_copied {
                carrying.clear();
            } else if carries.find(payload).is_some() {
                let at = payload.as_ptr() as usize - bytes.as_ptr() as usize;
                carrying.push((at, payload.len()));
            }
            Ok(())
        })
        .map_err(|m| corrupt(&path, m))?;
        let mut carried = Vec::new();
        for (at, len) in carrying {
            let entry: Entry = serde_json::from_slice(&bytes[at..at + len])
                .map_err(|e| corrupt(&path, format!("a record carrying WAL bytes: {e}")))?;
            for c in &entry.carried {
                // Offsets a file can have (pwrite takes an i64).
                let end = c.at.checked_add(c.data.len() as u64);
                if end.is_none_or(|e| e > i64::MAX as u64) {
                    return Err(corrupt(
                        &path,
                        format!("WAL bytes carried at {} of {}: out of range", c.at, c.wal),
                    ));
                }
            }
            carried.extend(entry.carried);
        }
        Ok(carried)
    }

    /// Puts back into the WALs the bytes the log carries that a crash lost
    /// ([`carried_wal::put_back`]; a read-only view only checks): called
    /// when a provider opens the space, before any WAL is read (blocking).
    pub(crate) fn put_back_carried(&self) -> Result<usize> {
        let mut st = self.state.lock();
        self.catch_up(&mut st)?;
        let Some(log) = st.log.as_ref() else {
            return Ok(0);
        };
        let carried = self.carried_in(&log.file)?;
        carried_wal::put_back(&self.dir, &carried, self.writable)
    }

    /// Refreshes `space_root` from the log when it is older than
    /// [`REFRESH_AFTER`] (no sync: the log is the durable copy; errors are
    /// logged). Called with the log locked.
    fn maybe_refresh(&self, st: &mut State) {
        if st.refreshed.is_some_and(|t| t.elapsed() < REFRESH_AFTER) {
            return;
        }
        let Some(log) = st.log.as_ref() else { return };
        // The reference reads the WALs of the copy's root as they are on
        // disk (it does not put carried bytes back).
        let copied = self
            .sync_carried(&log.file)
            .and_then(|()| self.write_copy(&log.tail.root.to_json(), false));
        if let Err(e) = copied {
            tracing::warn!(
                path = %self.root_path().display(),
                error = %e,
                "space_root not refreshed from the root log"
            );
        }
        st.refreshed = Some(Instant::now());
    }
}

/// A log holding `roots` as records, unpadded (seeds of the `root_log`
/// fuzz target).
/// Each root carries the WAL bytes given with it.
pub(crate) fn encode_log_for_tests(
    roots: &[(RootRecord, Vec<crate::root_register::WalBytes>)],
) -> Result<Vec<u8>> {
    let mut out = KIND.magic.to_vec();
    for (root, carried) in roots {
        out.extend_from_slice(&encode(&Entry {
            root: root.clone(),
            file: None,
            carried: carried.iter().map(CarriedBytes::from).collect(),
        })?);
    }
    Ok(out)
}

/// Whether a record of `root` carrying `carried` stays within the largest
/// record (an upper bound of its JSON: base64 is 4 bytes per 3, each piece
/// names its WAL and offset in under 100 bytes, the `space_root`
/// fingerprint and the keys in under 200).
pub(crate) fn carried_fits(root: &RootRecord, carried: &[crate::root_register::WalBytes]) -> bool {
    let pieces: usize = carried
        .iter()
        .map(|b| b.data.len().div_ceil(3) * 4 + 100)
        .sum();
    root.to_json().len() + 200 + pieces <= MAX_ENTRY
}

/// The key of [`Entry::carried`] in a record's JSON.
const CARRIED_KEY: &[u8] = b"\"carried\":";
/// How a record's JSON starts (`Entry::root` is its first field).
const ROOT_KEY: &[u8] = b"{\"root\":";

/// The whole log file of `len` bytes (at most [`MAX_LOG_FILE`]; fewer if
/// it shrank meanwhile).
fn read_log_bytes(file: &File, len: u64, path: &Path) -> Result<Vec<u8>> {
    let ctx = |e| Error::io(format!("reading {}", path.display()), e);
    if len > MAX_LOG_FILE {
        return Err(corrupt(path, format!("{len} bytes: not a root log")));
    }
    let mut bytes = vec![0u8; len as usize];
    let got = read_full_at(file, &mut bytes, 0).map_err(ctx)?;
    bytes.truncate(got);
    Ok(bytes)
}

/// How [`RootFiles::new_log`] puts a new log in place.
enum Publish {
    /// Only if no log exists (a hard link fails if one does).
    IfAbsent,
    /// Over the current log (its lock held).
    Replace,
}

/// Removes a temporary file unless disarmed by being dropped after its
/// rename (removing a name that no longer exists is harmless).
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

fn corrupt(path: &Path, message: String) -> Error {
    Error::CorruptRoot {
        location: path.display().to_string(),
        source: FormatError::BadRoot(message),
    }
}

fn encode(entry: &Entry) -> Result<Vec<u8>> {
    let record = record_log::encode_record(KIND, entry).map_err(|e| Error::invalid("root", e))?;
    if record.len() > RECORD_HEADER + MAX_ENTRY {
        return Err(Error::invalid(
            "root",
            format!(
                "a root of {} bytes exceeds the root log's {MAX_ENTRY}",
                record.len()
            ),
        ));
    }
    Ok(record)
}

/// Reads the valid records after `log.end` (stopping at zeros, a torn
/// record, or one still being written); how many.
fn read_new_records(log: &mut OpenLog, path: &Path) -> Result<usize> {
    let ctx = |e| Error::io(format!("reading {}", path.display()), e);
    let mut read = 0;
    loop {
        let mut header = [0u8; RECORD_HEADER];
        if read_full_at(&log.file, &mut header, log.end).map_err(ctx)? < RECORD_HEADER
            || header == [0u8; RECORD_HEADER]
        {
            return Ok(read);
        }
        let Ok(len) = record_log::payload_len(&header) else {
            return Ok(read);
        };
        if len > MAX_ENTRY {
            return Ok(read);
        }
        let mut record = vec![0u8; RECORD_HEADER + len];
        if read_full_at(&log.file, &mut record, log.end).map_err(ctx)? < record.len() {
            return Ok(read);
        }
        match record_log::decode_record::<Entry>(&record) {
            Ok((entry, used)) if entry.root.verify_checksum().is_ok() => {
                let end = log.end + used as u64;
                log.learn(entry, end);
                read += 1;
            }
            _ => return Ok(read),
        }
    }
}

/// Whether the bytes a record appended at `log.end` could reach are zero.
fn clean_after(log: &OpenLog, path: &Path) -> Result<bool> {
    let mut window = vec![0u8; CLEAN_WINDOW];
    let got = read_full_at(&log.file, &mut window, log.end)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(window[..got].iter().all(|b| *b == 0))
}

/// Writes `record` at the log's end and makes it durable.
fn append(log: &OpenLog, record: &[u8], path: &Path) -> Result<()> {
    let at = log.end;
    log.file
        .write_all_at(record, at)
        .map_err(|e| Error::io(format!("writing {} at {at}", path.display()), e))?;
    log.file
        .sync_data()
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

/// Syncs the log if it holds records this process has not made durable
/// (appended by another process, maybe still syncing them).
fn make_durable(log: &mut OpenLog, path: &Path) -> Result<()> {
    let ctx = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
    if !log.name_durable {
        // A log another process created: its name may be as new as its
        // records (its creator may have died before syncing it).
        let dir = path.parent().unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .or_else(unchangeable)
            .map_err(|e| ctx("syncing the directory of", e))?;
        log.name_durable = true;
    }
    if log.durable >= log.end {
        return Ok(());
    }
    log.file
        .sync_data()
        .or_else(unchangeable)
        .map_err(|e| ctx("syncing", e))?;
    log.durable = log.end;
    Ok(())
}

/// A sync refused because the file system is read-only (EROFS, or EINVAL
/// where it cannot sync) is a success: nothing there can change, so what
/// a reader sees cannot be lost.
fn unchangeable(e: std::io::Error) -> std::io::Result<()> {
    match e.raw_os_error() {
        Some(libc::EROFS) | Some(libc::EINVAL) => Ok(()),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::root_register::RootVersion;
    use crate::types::{AtomPointer, WalId};

    pub(super) fn root(seq: u64) -> RootRecord {
        RootRecord::new(
            AtomPointer::new(WalId(uuid::Uuid::from_u128(u128::from(seq))), 32),
            seq,
            0,
            Some(format!("w{seq}")),
        )
    }

    fn v(seq: u64) -> Option<RootVersion> {
        Some(RootVersion::of_root(&root(seq)))
    }

    fn files(dir: &Path) -> RootFiles {
        RootFiles::new(dir, true)
    }

    /// Files in `dir` holding roots 1 to `n`, written in turn.
    fn with_roots(dir: &Path, n: u64) -> RootFiles {
        let files = files(dir);
        for seq in 1..=n {
            let expected = (seq > 1).then(|| v(seq - 1)).flatten();
            files.write(&root(seq), expected, &[]).unwrap();
        }
        files
    }

    fn small(dir: &Path, log_size: u64) -> RootFiles {
        RootFiles {
            log_size,
            ..RootFiles::new(dir, true)
        }
    }

    fn log_bytes(dir: &Path) -> Vec<u8> {
        std::fs::read(dir.join(ROOT_LOG_FILE)).unwrap()
    }

    fn ino(dir: &Path) -> u64 {
        file_id::of_path(&dir.join(ROOT_LOG_FILE)).unwrap().id.1
    }

    /// The end of the log's last valid record.
    fn end_of(dir: &Path) -> usize {
        record_log::walk_log(KIND, &log_bytes(dir), |_| Ok(()))
            .unwrap()
            .end
    }

    fn record_of(seq: u64) -> Vec<u8> {
        encode(&Entry {
            root: root(seq),
            file: None,
            carried: Vec::new(),
        })
        .unwrap()
    }

    #[test]
    fn roots_are_appended_in_place_and_read_by_other_handles() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (files(dir.path()), files(dir.path()));
        assert_eq!(a.read().unwrap(), None);
        a.write(&root(1), None, &[]).unwrap();
        let id = ino(dir.path());
        assert_eq!(b.read().unwrap(), Some(root(1)));
        b.write(&root(2), v(1), &[]).unwrap();
        assert_eq!(a.read().unwrap(), Some(root(2)));
        // A stale version loses, whichever handle writes.
        assert!(matches!(
            a.write(&root(3), v(1), &[]),
            Err(Error::RootConflict { .. })
        ));
        assert!(matches!(
            b.write(&root(2), v(2), &[]),
            Err(Error::Invalid { .. })
        ));
        a.write(&root(3), v(2), &[]).unwrap();
        // Appended into the preallocated file: same file, same size.
        assert_eq!(ino(dir.path()), id);
        assert_eq!(log_bytes(dir.path()).len() as u64, LOG_SIZE);
        let d = record_log::decode_log(KIND, &log_bytes(dir.path()), |_: &Entry| {}).unwrap();
        assert_eq!((d.records, d.last.root.clone()), (3, root(3)));
        // A read-only handle reads the same.
        assert_eq!(
            RootFiles::new(dir.path(), false).read().unwrap(),
            Some(root(3))
        );
    }

    #[test]
    fn close_makes_space_root_exactly_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let a = with_roots(dir.path(), 5);
        a.settle().unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(ROOT_FILE)).unwrap(),
            root(5).to_json()
        );
        // Only the log and the copy: no temporary file is left.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [ROOT_FILE, ROOT_LOG_FILE]);
    }

    #[test]
    fn a_full_log_is_replaced_and_other_handles_follow() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (small(dir.path(), 1024), small(dir.path(), 1024));
        a.write(&root(1), None, &[]).unwrap();
        assert_eq!(b.read().unwrap(), Some(root(1)));
        let first = ino(dir.path());
        let mut replaced = 0;
        let mut last_ino = first;
        for seq in 2..=40 {
            let w = if seq % 3 == 0 { &b } else { &a };
            w.write(&root(seq), v(seq - 1), &[]).unwrap();
            let now = ino(dir.path());
            if now != last_ino {
                replaced += 1;
                last_ino = now;
            }
            // The other handle holds the old file open and still reads
            // the newest root.
            let other = if seq % 3 == 0 { &a } else { &b };
            assert_eq!(other.read().unwrap(), Some(root(seq)), "after {seq}");
        }
        assert!(replaced >= 3, "{replaced} replacements");
        assert_eq!(files(dir.path()).read().unwrap(), Some(root(40)));
    }

    #[test]
    fn a_torn_append_is_ignored_and_the_next_write_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        with_roots(dir.path(), 3);
        let clean = log_bytes(dir.path());
        let copy = std::fs::read(dir.path().join(ROOT_FILE)).unwrap();
        let end = end_of(dir.path());
        let fourth = record_of(4);
        // Any part of the fourth record reached the disk: a prefix, or a
        // later part only (its header still zero).
        let mut torn: Vec<Vec<u8>> = Vec::new();
        for cut in [1, 4, RECORD_HEADER, RECORD_HEADER + 5, fourth.len() - 1] {
            let mut t = clean.clone();
            t[end..end + cut].copy_from_slice(&fourth[..cut]);
            torn.push(t);
        }
        for from in [RECORD_HEADER, fourth.len() / 2] {
            let mut t = clean.clone();
            t[end + from..end + fourth.len()].copy_from_slice(&fourth[from..]);
            torn.push(t);
        }
        for (i, t) in torn.iter().enumerate() {
            std::fs::write(dir.path().join(ROOT_LOG_FILE), t).unwrap();
            let b = files(dir.path());
            assert_eq!(b.read().unwrap(), Some(root(3)), "torn variant {i}");
            let before = ino(dir.path());
            b.write(&root(4), v(3), &[]).unwrap();
            assert_ne!(
                ino(dir.path()),
                before,
                "variant {i}: the torn log is replaced"
            );
            assert_eq!(
                files(dir.path()).read().unwrap(),
                Some(root(4)),
                "variant {i}"
            );
            // Back to roots 1 to 3 (and the copy a refresh wrote then).
            std::fs::write(dir.path().join(ROOT_LOG_FILE), &clean).unwrap();
            std::fs::write(dir.path().join(ROOT_FILE), &copy).unwrap();
        }
    }

    #[test]
    fn damage_before_the_last_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        with_roots(dir.path(), 3);
        let mut bytes = log_bytes(dir.path());
        // A payload byte of the first record.
        bytes[8 + RECORD_HEADER + 3] ^= 0x01;
        std::fs::write(dir.path().join(ROOT_LOG_FILE), &bytes).unwrap();
        let err = files(dir.path()).read().unwrap_err();
        assert!(
            matches!(&err, Error::CorruptRoot { location, .. } if location.ends_with(ROOT_LOG_FILE)),
            "{err:?}"
        );
        assert!(files(dir.path()).write(&root(4), v(3), &[]).is_err());
        // Not a log at all.
        std::fs::write(dir.path().join(ROOT_LOG_FILE), b"{\"root\": 1}").unwrap();
        assert!(matches!(
            files(dir.path()).read(),
            Err(Error::CorruptRoot { .. })
        ));
    }

    #[test]
    fn a_space_root_another_writer_wrote_wins_and_a_stale_copy_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let a = with_roots(dir.path(), 3);
        let path = dir.path().join(ROOT_FILE);
        // An older native copy (a refresh of an earlier root) is stale.
        std::fs::write(&path, root(1).to_json()).unwrap();
        assert_eq!(files(dir.path()).read().unwrap(), Some(root(3)));
        // The reference writes its own root (no checksum, no sequence).
        let wal = uuid::Uuid::from_u128(77);
        let reference = format!("{{\"transaction_id\": \"{wal}\", \"offset\": 96}}");
        std::fs::write(&path, &reference).unwrap();
        let theirs = RootRecord::from_json(reference.as_bytes()).unwrap();
        assert_eq!(a.read().unwrap(), Some(theirs.clone()));
        assert_eq!(files(dir.path()).read().unwrap(), Some(theirs.clone()));
        // The log still holds 3, but the version to build on is theirs.
        assert!(matches!(
            a.write(&root(4), v(3), &[]),
            Err(Error::RootConflict { .. })
        ));
        a.write(&root(1), Some(RootVersion::of_root(&theirs)), &[])
            .unwrap();
        // The reference's file is now one the log has seen.
        assert_eq!(files(dir.path()).read().unwrap(), Some(root(1)));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), reference);
    }

    #[test]
    fn a_corrupt_space_root_no_record_saw_is_an_error_a_blank_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let a = files(dir.path());
        a.write(&root(1), None, &[]).unwrap();
        let path = dir.path().join(ROOT_FILE);
        std::fs::write(&path, b"\n ").unwrap();
        assert_eq!(a.read().unwrap(), Some(root(1)));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(a.read().unwrap(), Some(root(1)));
        std::fs::write(&path, b"{\"transaction_id\": 12").unwrap();
        assert!(matches!(a.read(), Err(Error::CorruptRoot { .. })));
    }

    #[test]
    fn after_a_failed_append_the_log_is_rewritten_from_the_trusted_root() {
        let dir = tempfile::tempdir().unwrap();
        let a = files(dir.path());
        a.write(&root(1), None, &[]).unwrap();
        a.write(&root(2), v(1), &[]).unwrap();
        // The append of 3 "failed": its bytes show in the file (the page
        // cache) but may not be on the disk.
        let end = end_of(dir.path());
        let mut bytes = log_bytes(dir.path());
        let third = record_of(3);
        bytes[end..end + third.len()].copy_from_slice(&third);
        std::fs::write(dir.path().join(ROOT_LOG_FILE), &bytes).unwrap();
        a.state.lock().poisoned_at = Some(end as u64);
        let before = ino(dir.path());
        assert_eq!(a.read().unwrap(), Some(root(2)));
        assert_ne!(ino(dir.path()), before, "rewritten");
        assert_eq!(files(dir.path()).read().unwrap(), Some(root(2)));
        a.write(&root(3), v(2), &[]).unwrap();

        // Another process appended after the failed record: its root (built
        // on the failed one) stays.
        let end = end_of(dir.path());
        let mut bytes = log_bytes(dir.path());
        let (fourth, fifth) = (record_of(4), record_of(5));
        bytes[end..end + fourth.len()].copy_from_slice(&fourth);
        bytes[end + fourth.len()..end + fourth.len() + fifth.len()].copy_from_slice(&fifth);
        std::fs::write(dir.path().join(ROOT_LOG_FILE), &bytes).unwrap();
        a.state.lock().poisoned_at = Some(end as u64);
        assert_eq!(a.read().unwrap(), Some(root(5)));
    }

    #[test]
    fn a_read_only_file_system_refusing_a_sync_is_not_an_error() {
        for errno in [libc::EROFS, libc::EINVAL] {
            assert!(unchangeable(std::io::Error::from_raw_os_error(errno)).is_ok());
        }
        for errno in [libc::EIO, libc::ENOSPC, libc::EBADF] {
            assert!(unchangeable(std::io::Error::from_raw_os_error(errno)).is_err());
        }
    }

    #[test]
    fn racing_writers_in_threads_have_one_winner_per_version() {
        let dir = tempfile::tempdir().unwrap();
        let wins: Vec<Vec<u64>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let me = small(dir.path(), 2048);
                    s.spawn(move || {
                        let mut won = Vec::new();
                        while won.len() < 15 {
                            let current = me.read().unwrap();
                            let seq = current.as_ref().map_or(0, |r| r.sequence) + 1;
                            match me.write(
                                &root(seq),
                                current.as_ref().map(RootVersion::of_root),
                                &[],
                            ) {
                                Ok(()) => {
                                    won.push(seq);
                                    // Copies written at once by several
                                    // handles never leave a torn one.
                                    if seq.is_multiple_of(3) {
                                        me.settle().unwrap();
                                    }
                                }
                                Err(Error::RootConflict { .. } | Error::Invalid { .. }) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        won
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<u64> = wins.into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=60).collect::<Vec<_>>(), "each version won once");
        let last = files(dir.path());
        assert_eq!(last.read().unwrap(), Some(root(60)));
        last.settle().unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(ROOT_FILE)).unwrap(),
            root(60).to_json()
        );
    }
}

#[cfg(test)]
mod carried_tests {
    use super::tests::root;
    use super::*;
    use crate::root_register::{RootVersion, WalBytes};
    use crate::types::WalId;

    /// The version a write of root `seq` expects (none for the first).
    fn v(seq: u64) -> Option<RootVersion> {
        (seq > 0).then(|| RootVersion::of_root(&root(seq)))
    }

    /// A WAL file in `dir` holding `len` bytes of `fill`.
    fn wal(dir: &Path, n: u128, len: usize, fill: u8) -> (WalId, PathBuf) {
        let id = WalId(uuid::Uuid::from_u128(0xA000 + n));
        let path = carried_wal::wal_file(dir, id);
        std::fs::write(&path, vec![fill; len]).unwrap();
        (id, path)
    }

    fn bytes(wal: WalId, offset: u64, data: &[u8]) -> WalBytes {
        WalBytes {
            wal,
            offset,
            data: bytes::Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn carried_bytes_a_crash_lost_are_put_back_and_a_read_only_view_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_path) = wal(dir.path(), 1, 64, b'a');
        let (b, b_path) = wal(dir.path(), 2, 16, b'b');
        let files = RootFiles::new(dir.path(), true);
        // Roots 1 and 2 carry bytes appended to a and b (the files hold
        // them, not synced).
        let append = |path: &Path, at: u64, data: &[u8]| {
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.write_all_at(data, at).unwrap();
        };
        append(&a_path, 64, b"first");
        files
            .write(&root(1), None, &[bytes(a, 64, b"first")])
            .unwrap();
        append(&a_path, 69, b"second");
        append(&b_path, 16, b"x");
        files
            .write(
                &root(2),
                v(1),
                &[bytes(a, 69, b"second"), bytes(b, 16, b"x")],
            )
            .unwrap();
        // Nothing lost: nothing written.
        assert_eq!(
            RootFiles::new(dir.path(), true).put_back_carried().unwrap(),
            0
        );
        // A power loss took a's tail and b's last byte.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&a_path)
            .unwrap();
        f.set_len(71).unwrap();
        append(&b_path, 16, b"\0");
        let lost = RootFiles::new(dir.path(), false).put_back_carried();
        let message = lost.unwrap_err().to_string();
        assert!(message.contains("open the space writable"), "{message}");
        // (Root 1's bytes were synced before `space_root` became its copy:
        // only root 2's are checked.)
        assert_eq!(files.read_copy().unwrap(), Some(root(1).to_json()));
        assert_eq!(
            RootFiles::new(dir.path(), true).put_back_carried().unwrap(),
            2
        );
        let got = std::fs::read(&a_path).unwrap();
        assert_eq!(&got[64..], b"firstsecond");
        assert_eq!(
            std::fs::read(&b_path).unwrap(),
            [vec![b'b'; 16], b"x".to_vec()].concat()
        );
        assert_eq!(
            RootFiles::new(dir.path(), false)
                .put_back_carried()
                .unwrap(),
            0
        );
        // A reclaimed WAL is not brought back.
        std::fs::remove_file(&b_path).unwrap();
        assert_eq!(
            RootFiles::new(dir.path(), true).put_back_carried().unwrap(),
            0
        );
        assert!(!b_path.exists());
        assert_eq!(files.read().unwrap(), Some(root(2)));
    }

    #[test]
    fn syncing_carried_wals_writes_the_bytes_again_first() {
        // After a failed writeback the page cache may show the bytes while
        // the disk lacks them, and a sync of the clean page succeeds: only
        // writing them again makes the sync cover them. Here the file lacks
        // them outright, which a sync alone would leave as it is.
        let dir = tempfile::tempdir().unwrap();
        let (a, a_path) = wal(dir.path(), 4, 8, 0);
        let files = RootFiles::new(dir.path(), true);
        files
            .write(&root(1), None, &[bytes(a, 0, b"carried!")])
            .unwrap();
        // (The first write refreshed `space_root`, which cut record 1 off:
        // take the copy away, and the bytes.)
        std::fs::remove_file(dir.path().join(ROOT_FILE)).unwrap();
        std::fs::write(&a_path, [0u8; 8]).unwrap();
        let log = File::open(dir.path().join(ROOT_LOG_FILE)).unwrap();
        let carried = files.carried_in(&log).unwrap();
        assert_eq!(carried.len(), 1);
        carried_wal::sync_wals(dir.path(), &carried).unwrap();
        assert_eq!(std::fs::read(&a_path).unwrap(), b"carried!");
        // A writable open writes them back even when the page cache shows
        // them (nothing lacking, still written and synced).
        std::fs::write(&a_path, [0u8; 8]).unwrap();
        assert_eq!(
            RootFiles::new(dir.path(), true).put_back_carried().unwrap(),
            1
        );
        assert_eq!(std::fs::read(&a_path).unwrap(), b"carried!");
    }

    #[test]
    fn only_an_exact_copy_of_a_root_cuts_the_carried_records_off() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = wal(dir.path(), 5, 64, b'a');
        let files = RootFiles::new(dir.path(), true);
        for seq in 1..=3u64 {
            files
                .write(
                    &root(seq),
                    v(seq - 1),
                    &[bytes(a, seq * 8, &[seq as u8; 8])],
                )
                .unwrap();
        }
        let log = File::open(dir.path().join(ROOT_LOG_FILE)).unwrap();
        let copy_path = dir.path().join(ROOT_FILE);
        let ats = |files: &RootFiles| -> Vec<u64> {
            files
                .carried_in(&log)
                .unwrap()
                .iter()
                .map(|c| c.at)
                .collect()
        };
        // An exact copy of root 2: records 1 and 2 are synced.
        std::fs::write(&copy_path, root(2).to_json()).unwrap();
        assert_eq!(ats(&files), [24]);
        // A prefix of a root's JSON (damaged, or written by hand) marks
        // nothing: every record counts.
        for cut in [1, 20, root(3).to_json().len() - 1] {
            std::fs::write(&copy_path, &root(3).to_json()[..cut]).unwrap();
            assert_eq!(ats(&files), [8, 16, 24], "a copy cut at {cut}");
        }
        // The same root with other whitespace is not a copy this code wrote.
        let mut spaced = root(3).to_json();
        spaced.push(b' ');
        std::fs::write(&copy_path, &spaced).unwrap();
        assert_eq!(ats(&files), [8, 16, 24]);
    }

    #[test]
    fn a_replaced_log_keeps_no_carried_bytes_of_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_path) = wal(dir.path(), 3, 32, b'a');
        let files = RootFiles {
            log_size: 2 << 10,
            ..RootFiles::new(dir.path(), true)
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&a_path)
            .unwrap();
        let mut replaced = 0;
        let mut ino = None;
        for seq in 1..=40u64 {
            let at = 32 + (seq - 1) * 8;
            file.write_all_at(&seq.to_le_bytes(), at).unwrap();
            files
                .write(&root(seq), v(seq - 1), &[bytes(a, at, &seq.to_le_bytes())])
                .unwrap();
            let now = file_id::of_path(&dir.path().join(ROOT_LOG_FILE))
                .unwrap()
                .id
                .1;
            if ino.is_some_and(|i| i != now) {
                replaced += 1;
                // The new log carries only its first record's bytes.
                let log = File::open(dir.path().join(ROOT_LOG_FILE)).unwrap();
                let carried = files.carried_in(&log).unwrap();
                assert_eq!(carried.len(), 1, "after root {seq}");
                assert_eq!(carried[0].at, at);
            }
            ino = Some(now);
        }
        assert!(replaced >= 2, "the 2 KiB log was replaced {replaced} times");
        // Every root's bytes are in the WAL (put back finds nothing to do).
        assert_eq!(
            RootFiles::new(dir.path(), true).put_back_carried().unwrap(),
            0
        );
        assert_eq!(files.read().unwrap(), Some(root(40)));
    }
}
