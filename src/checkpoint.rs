//! Checkpoints: roots pinned by name ([`Storage::checkpoint`](crate::Storage::checkpoint)).
//!
//! A checkpoint keeps one root (the whole [`RootRecord`], not a position in
//! a history), so it outlives the register's history and its pruning:
//! opening a space read-only *at* a checkpoint
//! ([`StorageBuilder::at_checkpoint`](crate::StorageBuilder::at_checkpoint))
//! reads the space as it was when the root was current, which is cheap
//! because atoms are immutable.
//!
//! Checkpoints live where the WALs do ([`WalStore::checkpoints`](crate::WalStore::checkpoints)):
//! a `checkpoints/<name>.json` file per checkpoint in a space directory,
//! `checkpoint/<name>` objects in an object store (every member of a
//! cloud-cluster sees them), a map in memory. In a cluster each node keeps
//! the checkpoints taken through it.
//!
//! What a checkpoint pins is the root *and everything it reaches*: the
//! storage keeps the checkpoint root's WAL on its own, but it cannot walk
//! atoms, so [`Storage::reclaim`](crate::Storage::reclaim) refuses a live
//! set that does not hold the WAL of every checkpoint's root (the sign
//! of a reachability walk that forgot them): walk from
//! [`Storage::checkpoints`](crate::Storage::checkpoints) too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::RootRecord;

/// Longest checkpoint name.
pub const MAX_NAME_LEN: usize = 100;

/// A root pinned under a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its name (see [`check_name`]).
    pub name: String,
    /// The pinned root.
    pub root: RootRecord,
    /// When it was taken (millisecond precision).
    pub created: SystemTime,
}

/// Refuses a name that is not 1 to [`MAX_NAME_LEN`] ASCII letters, digits,
/// `-`, `_` or `.`, or that starts with `.` (names are file and object
/// names).
pub fn check_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            "checkpoint name",
            format!("{name:?} must have 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if name.starts_with('.') || !name.chars().all(ok_char) {
        return Err(Error::invalid(
            "checkpoint name",
            format!("{name:?}: only ASCII letters, digits, '-', '_' and '.' (not first)"),
        ));
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Stored {
    name: String,
    created_ms: u64,
    root: serde_json::Value,
}

impl Checkpoint {
    /// A checkpoint of `root` named `name`, taken now.
    pub fn new(name: &str, root: RootRecord) -> Result<Self> {
        check_name(name)?;
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(Checkpoint {
            name: name.to_string(),
            root,
            created: UNIX_EPOCH + Duration::from_millis(ms),
        })
    }

    /// The stored form: one JSON object (the root in the reference's shape).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let bad = |e: serde_json::Error| Error::invalid("checkpoint", e.to_string());
        let root = serde_json::from_slice(&self.root.to_json()).map_err(bad)?;
        let created_ms = self
            .created
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        serde_json::to_vec(&Stored {
            name: self.name.clone(),
            created_ms,
            root,
        })
        .map_err(bad)
    }

    /// Parses what [`to_json`](Self::to_json) wrote; `name` is the name it
    /// was stored under (a file or object named otherwise is refused).
    /// `location` names the file or object in errors.
    pub fn from_json(name: &str, bytes: &[u8], location: &str) -> Result<Self> {
        let bad = |why: String| Error::invalid("checkpoint", format!("{location}: {why}"));
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if stored.name != name {
            return Err(bad(format!(
                "holds checkpoint {:?}, stored as {name:?}",
                stored.name
            )));
        }
        check_name(&stored.name)?;
        let root_bytes = serde_json::to_vec(&stored.root).map_err(|e| bad(e.to_string()))?;
        let root = RootRecord::from_json(&root_bytes).map_err(|e| bad(e.to_string()))?;
        Ok(Checkpoint {
            name: stored.name,
            root,
            created: UNIX_EPOCH
                .checked_add(Duration::from_millis(stored.created_ms))
                .ok_or_else(|| bad(format!("time {} ms is out of range", stored.created_ms)))?,
        })
    }
}

/// The WALs `checkpoints`' roots point into, each with a checkpoint's name
/// (what reclamation keeps).
pub(crate) fn pinned_wals(
    checkpoints: Vec<Checkpoint>,
) -> std::collections::HashMap<crate::types::WalId, String> {
    checkpoints
        .into_iter()
        .map(|c| (c.root.pointer.wal_id, c.name))
        .collect()
}

/// The error of a checkpoint name already taken.
pub(crate) fn exists(name: &str) -> Error {
    Error::CheckpointExists {
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AtomPointer, WalId};

    #[test]
    fn names() {
        for good in [
            "a",
            "before-migration",
            "v1.2_final",
            &"x".repeat(MAX_NAME_LEN),
        ] {
            check_name(good).unwrap();
        }
        for bad in [
            "",
            ".hidden",
            "a/b",
            "..",
            "a b",
            "é",
            "a\0",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let root = RootRecord::new(AtomPointer::new(WalId::new_random(), 77), 5, 2, None);
        let cp = Checkpoint::new("nightly", root).unwrap();
        let json = cp.to_json().unwrap();
        assert_eq!(Checkpoint::from_json("nightly", &json, "f").unwrap(), cp);
        // Stored under another name, garbage, a bad root, a negative time.
        assert!(Checkpoint::from_json("other", &json, "f").is_err());
        assert!(Checkpoint::from_json("nightly", b"{", "f").is_err());
        let v = br#"{"name":"n","created_ms":1,"root":{"offset":"x"}}"#;
        assert!(Checkpoint::from_json("n", v, "f").is_err());
        let mut t: serde_json::Value = serde_json::from_slice(&json).unwrap();
        t["created_ms"] = (-1).into();
        let t = serde_json::to_vec(&t).unwrap();
        assert!(Checkpoint::from_json("nightly", &t, "f").is_err());
    }
}
