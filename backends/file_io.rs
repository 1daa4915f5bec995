//! Blocking file helpers shared by the file-backed providers (`fs`, and the
//! cloud provider's staging area).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Runs blocking file I/O. On a multi-thread runtime it runs in place
/// (`block_in_place`: no hand-off to another thread, which costs tens of
/// microseconds per call and dominated small reads and commits in
/// `protobase bench`); elsewhere on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::io("running a blocking file task", std::io::Error::other(e)))?,
    }
}

/// Reads up to `buf.len()` bytes at `offset`, stopping early only at the end
/// of the file; returns how many were read.
#[cfg(any(feature = "fs", feature = "cloud"))]
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Makes a directory's entries (new, renamed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// Replaces the file at `path` with `bytes` atomically and durably: a
/// temporary file beside it (`<name>.tmp`) written and fsynced, renamed over
/// it, and the directory fsynced.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let ctx = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
    let f = File::create(&tmp).map_err(|e| ctx("creating", e))?;
    f.write_all_at(bytes, 0).map_err(|e| ctx("writing", e))?;
    f.sync_all().map_err(|e| ctx("syncing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| ctx("renaming", e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}
