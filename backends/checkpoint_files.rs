//! Checkpoints of a space directory: `checkpoints/<name>.json`, one file per
//! checkpoint (see [`crate::checkpoint`]).
//!
//! A checkpoint is created whole or not at all: written to a temporary file
//! in the same directory, fsynced, then hard-linked to its name (which fails
//! if the name exists: of two processes taking one name, one wins) and the
//! directory fsynced. Removing unlinks and fsyncs the directory. Temporary
//! files a crash leaves (`.<name>.<random>.tmp`) are skipped when listing and
//! removed by the next checkpoint of that directory.

use std::path::{Path, PathBuf};

use super::file_io::sync_dir;
use crate::checkpoint::{Checkpoint, check_name};
use crate::error::{Error, Result};

/// The checkpoint directory of a space directory.
pub(crate) const CHECKPOINT_DIR: &str = "checkpoints";

fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(CHECKPOINT_DIR).join(format!("{name}.json"))
}

/// Every checkpoint in `dir`, sorted by name (blocking). A file that does
/// not parse is an error naming it.
pub(crate) fn list(dir: &Path) -> Result<Vec<Checkpoint>> {
    let cdir = dir.join(CHECKPOINT_DIR);
    let entries = match std::fs::read_dir(&cdir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", cdir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", cdir.display()), e))?;
        let file = entry.file_name();
        let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".json")) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::io(format!("reading checkpoint {}", path.display()), e))?;
        out.push(Checkpoint::from_json(
            name,
            &bytes,
            &path.display().to_string(),
        )?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Creates `cp` in `dir` unless its name exists (blocking).
pub(crate) fn put(dir: &Path, cp: &Checkpoint) -> Result<()> {
    check_name(&cp.name)?;
    let cdir = dir.join(CHECKPOINT_DIR);
    match std::fs::create_dir(&cdir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("creating {}", cdir.display()), e)),
    }
    // Also when it existed: its creator may have died before making it
    // durable.
    sync_dir(dir)?;
    remove_leftovers(&cdir, &cp.name);
    let json = cp.to_json()?;
    let tmp = cdir.join(format!(".{}.{:016x}.tmp", cp.name, fastrand::u64(..)));
    let fin = path_of(dir, &cp.name);
    let ctx = |what: &str, p: &Path, e| Error::io(format!("{what} {}", p.display()), e);
    let written = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create_new(&tmp).map_err(|e| ctx("creating", &tmp, e))?;
        f.write_all(&json).map_err(|e| ctx("writing", &tmp, e))?;
        f.sync_all().map_err(|e| ctx("syncing", &tmp, e))?;
        match std::fs::hard_link(&tmp, &fin) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(crate::checkpoint::exists(&cp.name))
            }
            Err(e) => Err(ctx("linking", &fin, e)),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    written?;
    sync_dir(&cdir)
}

/// Removes the checkpoint `name` of `dir` (blocking).
pub(crate) fn remove(dir: &Path, name: &str) -> Result<()> {
    check_name(name)?;
    let path = path_of(dir, name);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(&dir.join(CHECKPOINT_DIR)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::CheckpointNotFound {
            name: name.to_string(),
        }),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// Whether `file` is a temporary file of a checkpoint of `name`
/// (`.<name>.<16 hex digits>.tmp`: names may hold dots, so `.a.` also
/// starts the temporary files of `a.b`).
fn is_temp_of(file: &str, name: &str) -> bool {
    file.strip_prefix('.')
        .and_then(|f| f.strip_prefix(name))
        .and_then(|f| f.strip_prefix('.'))
        .and_then(|f| f.strip_suffix(".tmp"))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes temporary files an interrupted checkpoint of `name` left. (Two
/// processes taking one name at once: one may remove the other's temporary
/// file, whose put then fails with an I/O error rather than
/// `CheckpointExists`; nothing stored is touched.)
fn remove_leftovers(cdir: &Path, name: &str) {
    if let Ok(entries) = std::fs::read_dir(cdir) {
        for e in entries.flatten() {
            if is_temp_of(&e.file_name().to_string_lossy(), name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AtomPointer, RootRecord, WalId};

    fn cp(name: &str, seq: u64) -> Checkpoint {
        let root = RootRecord::new(AtomPointer::new(WalId::new_random(), 9), seq, 0, None);
        Checkpoint::new(name, root).unwrap()
    }

    #[test]
    fn create_list_remove_and_what_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        put(dir.path(), &cp("b", 2)).unwrap();
        put(dir.path(), &cp("a", 1)).unwrap();
        let e = put(dir.path(), &cp("a", 3)).unwrap_err();
        assert!(matches!(e, Error::CheckpointExists { .. }), "{e}");
        let names: Vec<_> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            list(dir.path()).unwrap()[0].root.sequence,
            1,
            "the first one stays"
        );
        // A crash's temporary file is not a checkpoint.
        std::fs::write(dir.path().join("checkpoints/.c.0.tmp"), b"{").unwrap();
        assert!(is_temp_of(".a.00112233445566ff.tmp", "a"));
        assert!(
            !is_temp_of(".a.b.00112233445566ff.tmp", "a"),
            "another name's"
        );
        assert!(is_temp_of(".a.b.00112233445566ff.tmp", "a.b"));
        assert!(!is_temp_of(".a.tmp", "a") && !is_temp_of("a.json", "a"));
        assert_eq!(list(dir.path()).unwrap().len(), 2);
        remove(dir.path(), "a").unwrap();
        assert!(matches!(
            remove(dir.path(), "a"),
            Err(Error::CheckpointNotFound { .. })
        ));
        assert!(remove(dir.path(), "../space_root").is_err());
        // A damaged checkpoint is an error, never skipped.
        std::fs::write(dir.path().join("checkpoints/z.json"), b"garbage").unwrap();
        let e = list(dir.path()).unwrap_err();
        assert!(e.to_string().contains("z.json"), "{e}");
    }
}
