//! WAL bytes carried by the root log: a standalone commit in one flush.
//!
//! A commit used to make its WAL bytes durable (`fdatasync` of the WAL),
//! then its root (an append to `space_root.log` and its `fdatasync`): two
//! device flushes, which a journaling file system serialises. When the
//! bytes a root reaches that are not synced yet are few (a small commit's
//! records), the root's log record carries them instead
//! ([`RootRegister::write_root_carrying`](crate::RootRegister::write_root_carrying)):
//! the WAL got them by a plain write, and the one `fdatasync` of the root
//! log makes both the root and those bytes durable.
//!
//! After a crash the WAL may lack them, so a provider opening the space
//! writes the carried bytes back into the WALs and syncs them
//! ([`put_back`]) before anything reads or continues a WAL; a read-only
//! opener only checks, and refuses a space whose WALs lack them. The log
//! keeps the records that carry bytes until the WALs holding them are
//! synced: before a log is replaced (which drops its records), before
//! `space_root` is refreshed or settled (the reference reads WALs without
//! this repair), the carried bytes of its records are written again and
//! their WALs synced ([`sync_wals`]). Written again, not just synced: after
//! a failed writeback the kernel keeps the page in memory as clean and
//! reports the error once, to whoever syncs first, so a later successful
//! sync (or bytes that match in the page cache) proves nothing. A WAL that no longer exists was
//! reclaimed (a WAL's name is made durable when it is created): its bytes
//! are not needed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::file_io::read_full_at;
use crate::error::{Error, Result};
use crate::root_register::WalBytes;
use crate::types::WalId;

/// Bytes of one WAL carried by a root log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CarriedBytes {
    pub(crate) wal: WalId,
    pub(crate) at: u64,
    #[serde(serialize_with = "to_base64", deserialize_with = "from_base64")]
    pub(crate) data: Bytes,
}

impl From<&WalBytes> for CarriedBytes {
    fn from(b: &WalBytes) -> Self {
        CarriedBytes {
            wal: b.wal,
            at: b.offset,
            data: b.data.clone(),
        }
    }
}

fn to_base64<S: Serializer>(data: &Bytes, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(data))
}

fn from_base64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Bytes, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    STANDARD
        .decode(text.as_bytes())
        .map(Bytes::from)
        .map_err(serde::de::Error::custom)
}

/// The file of `wal` in the space directory `dir`.
pub(crate) fn wal_file(dir: &Path, wal: WalId) -> PathBuf {
    dir.join(wal.to_string())
}

/// Carried bytes grouped by WAL, each WAL's in log order.
fn by_wal(carried: &[CarriedBytes]) -> BTreeMap<WalId, Vec<&CarriedBytes>> {
    let mut out: BTreeMap<WalId, Vec<&CarriedBytes>> = BTreeMap::new();
    for c in carried {
        out.entry(c.wal).or_default().push(c);
    }
    out
}

/// Opens a WAL file; `None`: it no longer exists (reclaimed).
fn open_wal(path: &Path, write: bool) -> Result<Option<File>> {
    match OpenOptions::new().read(true).write(write).open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("opening WAL {}", path.display()), e)),
    }
}

/// Writes the carried bytes into their WALs again and syncs those WALs,
/// so that they are on disk whatever happened to the pages before (a crash
/// took them, or a writeback failed and a later sync, whoever made it,
/// reported success over pages the disk never got: a match in the page
/// cache proves nothing); how many ranges the WALs lacked.
/// `writable == false`: only checks, and a WAL lacking carried bytes is an
/// error (a read-only opener cannot repair the space).
pub(crate) fn put_back(dir: &Path, carried: &[CarriedBytes], writable: bool) -> Result<usize> {
    let mut lacking = 0;
    for (wal, ranges) in by_wal(carried) {
        let path = wal_file(dir, wal);
        let Some(file) = open_wal(&path, writable)? else {
            continue;
        };
        let before = lacking;
        for c in &ranges {
            let mut found = vec![0u8; c.data.len()];
            let got = read_full_at(&file, &mut found, c.at)
                .map_err(|e| Error::io(format!("reading WAL {} at {}", path.display(), c.at), e))?;
            if got == found.len() && found == c.data {
                continue;
            }
            if !writable {
                return Err(Error::io(
                    format!("reading WAL {} at {}", path.display(), c.at),
                    std::io::Error::other(
                        "bytes of a committed root are missing after a crash (the root log \
                         carries them): open the space writable once to put them back",
                    ),
                ));
            }
            lacking += 1;
        }
        if writable {
            rewrite_and_sync(&file, &ranges, &path)?;
        }
        if lacking > before {
            tracing::warn!(wal = %wal, "put back WAL bytes a crash lost (carried by the root log)");
        }
    }
    Ok(lacking)
}

/// Writes `ranges` into `file` at their offsets and syncs it; a failed sync
/// gets one more round (the kernel may have dropped the pages again).
fn rewrite_and_sync(file: &File, ranges: &[&CarriedBytes], path: &Path) -> Result<()> {
    let round = || -> std::io::Result<()> {
        for c in ranges {
            file.write_all_at(&c.data, c.at)?;
        }
        file.sync_data()
    };
    round().or_else(|_| round()).map_err(|e| {
        Error::io(
            format!("writing carried bytes back into WAL {}", path.display()),
            e,
        )
    })
}

/// Makes the WALs holding `carried` durable (so the records carrying them
/// may go): the carried ranges are written again, then the WAL synced, so
/// that the sync covers them even if a writeback of theirs failed before
/// and its error was reported to someone else (a sync of clean pages
/// proves nothing).
pub(crate) fn sync_wals(dir: &Path, carried: &[CarriedBytes]) -> Result<()> {
    for (wal, ranges) in by_wal(carried) {
        let path = wal_file(dir, wal);
        let Some(file) = open_wal(&path, true)? else {
            continue;
        };
        rewrite_and_sync(&file, &ranges, &path)?;
    }
    Ok(())
}
