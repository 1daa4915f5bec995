//! The root history of a space directory: `space_root.history`, one JSON
//! line per root written (`{"root": <the root's JSON>, "written_ms": <unix
//! ms>}`), newest last, for operators (`protobase history`).
//!
//! Informational, not part of the commit: lines are kept in memory and
//! appended [`FLUSH_LINES`] at a time (and when the history is read or the
//! provider closed), without a sync of their own: a crash may cost the
//! newest lines, never a root. Appending one line per commit cost 11% of
//! `commit_serial` on ext4 (the next commit's directory fsync had to write
//! the history's data out first). A failed append is logged, not returned.
//! When the file passes [`TRIM_BYTES`] it is rewritten (atomically) with
//! its last [`HISTORY_KEEP`] lines. Lines that do not parse (a torn last
//! line, an outside edit) are skipped when read.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::file_io::replace_file;
use crate::error::{Error, Result};
use crate::root_register::{HISTORY_KEEP, HistoricRoot};
use crate::types::RootRecord;

/// The history file's name in a space directory.
pub(crate) const HISTORY_FILE: &str = "space_root.history";

/// Lines kept in memory before they are appended.
pub(crate) const FLUSH_LINES: usize = 64;

/// History lines not yet appended to the file.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    lines: parking_lot::Mutex<(Vec<u8>, usize)>,
}

impl Pending {
    /// Adds `root`'s line; whether [`FLUSH_LINES`] are waiting.
    pub(crate) fn push(&self, root: &RootRecord, now: SystemTime) -> Result<bool> {
        let line = line_of(root, now)?;
        let mut p = self.lines.lock();
        p.0.extend_from_slice(&line);
        p.1 += 1;
        Ok(p.1 >= FLUSH_LINES)
    }

    /// Takes the waiting lines.
    pub(crate) fn take(&self) -> Vec<u8> {
        let mut p = self.lines.lock();
        p.1 = 0;
        std::mem::take(&mut p.0)
    }
}

/// Size past which the history is cut back to its last [`HISTORY_KEEP`]
/// lines (a root's line is about 250 bytes).
const TRIM_BYTES: u64 = 1 << 20;

#[derive(Serialize, Deserialize)]
struct Line {
    root: serde_json::Value,
    written_ms: u64,
}

/// `root`'s line (with its newline).
fn line_of(root: &RootRecord, now: SystemTime) -> Result<Vec<u8>> {
    let root: serde_json::Value = serde_json::from_slice(&root.to_json())
        .map_err(|e| Error::invalid("root history", e.to_string()))?;
    let written_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut line = serde_json::to_vec(&Line { root, written_ms })
        .map_err(|e| Error::invalid("root history", e.to_string()))?;
    line.push(b'\n');
    Ok(line)
}

/// Appends `root`, written at `now`, to the history in `dir` (blocking).
#[cfg(test)]
pub(crate) fn append(dir: &Path, root: &RootRecord, now: SystemTime) -> Result<()> {
    append_lines(dir, &line_of(root, now)?)
}

/// Appends whole `lines` to the history in `dir` (blocking).
pub(crate) fn append_lines(dir: &Path, lines: &[u8]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let path = dir.join(HISTORY_FILE);
    let ctx = |e| Error::io(format!("appending to {}", path.display()), e);
    let line = lines;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(ctx)?;
    // One write: O_APPEND keeps concurrent writers' lines whole.
    f.write_all(line).map_err(ctx)?;
    if f.metadata().map_err(ctx)?.len() > TRIM_BYTES {
        trim(&path)?;
    }
    Ok(())
}

/// Rewrites the history with its last [`HISTORY_KEEP`] readable lines.
fn trim(path: &Path) -> Result<()> {
    let text =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| serde_json::from_slice::<Line>(l).is_ok())
        .collect();
    let keep = &lines[lines.len().saturating_sub(HISTORY_KEEP)..];
    let mut out = Vec::with_capacity(keep.iter().map(|l| l.len() + 1).sum());
    for l in keep {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    replace_file(path, &out)
}

/// Rewrites the history in `dir` with the lines `retention` keeps
/// (atomically; lines another process appends meanwhile may be lost, the
/// history being for operators only) (blocking).
pub(crate) fn prune(
    dir: &Path,
    retention: &crate::root_register::RootRetention,
) -> Result<crate::root_register::PruneReport> {
    let path = dir.join(HISTORY_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(crate::root_register::PruneReport::default());
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let all = parse(&text, usize::MAX);
    let now = SystemTime::now();
    let keep_last = usize::try_from(retention.keep_last.max(1)).unwrap_or(usize::MAX);
    let (kept, gone): (Vec<_>, Vec<_>) = all.into_iter().enumerate().partition(|(i, h)| {
        *i < keep_last
            || retention.keep_younger_than.is_some_and(|age| {
                h.written
                    .is_none_or(|t| crate::reclaim::is_recent(t, now, age))
            })
    });
    let mut out = Vec::new();
    // Oldest first, as appended.
    for (_, h) in kept.iter().rev() {
        out.extend_from_slice(&line_of(&h.root, h.written.unwrap_or(now))?);
    }
    if !gone.is_empty() {
        replace_file(&path, &out)?;
    }
    Ok(crate::root_register::PruneReport {
        removed: gone.len() as u64,
        kept: kept.len() as u64,
    })
}

/// Up to `limit` roots of the history in `dir`, newest first (blocking).
pub(crate) fn read(dir: &Path, limit: usize) -> Result<Vec<HistoricRoot>> {
    let path = dir.join(HISTORY_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    Ok(parse(&text, limit))
}

/// The readable lines of a history file, newest first (by the roots'
/// order: processes sharing a space append in batches), at most `limit`.
pub(crate) fn parse(text: &[u8], limit: usize) -> Vec<HistoricRoot> {
    let mut all: Vec<HistoricRoot> = text
        .split(|b| *b == b'\n')
        .filter_map(|l| {
            let line: Line = serde_json::from_slice(l).ok()?;
            let bytes = serde_json::to_vec(&line.root).ok()?;
            let root = RootRecord::from_json(&bytes).ok()?;
            Some(HistoricRoot {
                root,
                written: UNIX_EPOCH.checked_add(Duration::from_millis(line.written_ms)),
            })
        })
        .collect();
    all.sort_by_key(|h| std::cmp::Reverse(h.root.order_key()));
    all.dedup_by(|a, b| a.root == b.root);
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AtomPointer, WalId};

    fn root(seq: u64) -> RootRecord {
        RootRecord::new(AtomPointer::new(WalId::new_random(), 32), seq, 0, None)
    }

    #[test]
    fn newest_first_skipping_what_does_not_parse() {
        let dir = tempfile::tempdir().unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for seq in 1..=3 {
            append(dir.path(), &root(seq), t).unwrap();
        }
        // A torn line and garbage, as a crash or an outside edit leaves.
        let path = dir.path().join(HISTORY_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"not json\n{\"root\": {\"sequence\": 9}, \"written_ms\": 1}\n{\"root\":")
            .unwrap();
        let h = read(dir.path(), 10).unwrap();
        assert_eq!(
            h.iter().map(|r| r.root.sequence).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
        assert_eq!(h[0].written, Some(t));
        assert_eq!(read(dir.path(), 2).unwrap().len(), 2);
        assert!(read(&dir.path().join("nowhere"), 5).unwrap().is_empty());
    }

    #[test]
    fn a_long_history_is_cut_to_its_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        let now = SystemTime::now();
        let (mut seq, mut last_len, mut trims) = (0u64, 0u64, 0);
        while trims < 2 {
            seq += 1;
            assert!(seq < 50_000, "the history never trimmed");
            append(dir.path(), &root(seq), now).unwrap();
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(len <= TRIM_BYTES, "{len} bytes after a trim point");
            if len < last_len {
                trims += 1;
            }
            last_len = len;
        }
        let h = read(dir.path(), usize::MAX).unwrap();
        assert_eq!(h.len(), HISTORY_KEEP, "just trimmed: the last lines");
        assert_eq!(h[0].root.sequence, seq, "the newest stays");
        // Contiguous: nothing in the middle was lost by a trim.
        for w in h.windows(2) {
            assert_eq!(w[0].root.sequence, w[1].root.sequence + 1);
        }
    }
}
