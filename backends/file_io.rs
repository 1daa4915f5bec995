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

/// Reads up to `buf.len()` bytes at `offset` from the page cache alone,
/// never waiting for the disk (Linux `preadv2` with `RWF_NOWAIT`): the
/// bytes read (fewer only at the end of the file), or `None` when some of
/// them are not cached, the kernel or file system cannot promise not to
/// block, or the read failed; the caller then reads on the blocking path,
/// which reports the failure. Lets a read of cached bytes run in place on
/// an async worker: `block_in_place` hands the worker's core to another
/// thread and back, two context switches that cost more than the copy.
#[cfg(all(target_os = "linux", any(feature = "fs", feature = "cloud")))]
pub(crate) fn read_cached_at(file: &File, buf: &mut [u8], offset: u64) -> Option<usize> {
    use rustix::io::{Errno, ReadWriteFlags, preadv2};
    let mut got = 0;
    while got < buf.len() {
        let at = offset.checked_add(got as u64)?;
        let mut slice = [std::io::IoSliceMut::new(&mut buf[got..])];
        match preadv2(file, &mut slice, at, ReadWriteFlags::NOWAIT) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    Some(got)
}

/// Elsewhere every read takes the blocking path.
#[cfg(all(not(target_os = "linux"), any(feature = "fs", feature = "cloud")))]
pub(crate) fn read_cached_at(_file: &File, _buf: &mut [u8], _offset: u64) -> Option<usize> {
    None
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

#[cfg(all(test, target_os = "linux", any(feature = "fs", feature = "cloud")))]
mod tests {
    use super::*;

    fn file_of(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        let f = File::open(&path).unwrap();
        (dir, f)
    }

    #[test]
    fn cached_reads_stop_at_the_end_of_the_file() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let (_dir, f) = file_of(&data);
        let mut buf = vec![0u8; 4096];
        // Just written: in the page cache (a kernel without RWF_NOWAIT for
        // this file system says None, which callers treat as "go blocking").
        let Some(got) = read_cached_at(&f, &mut buf, 100) else {
            return;
        };
        assert_eq!(got, 4096);
        assert_eq!(buf, data[100..4196]);
        assert_eq!(read_cached_at(&f, &mut buf, 8000), Some(2000));
        assert_eq!(buf[..2000], data[8000..]);
        assert_eq!(read_cached_at(&f, &mut buf, 10_000), Some(0));
        assert_eq!(read_cached_at(&f, &mut buf, u64::MAX - 10), None);
    }

    #[test]
    fn bytes_evicted_from_the_cache_are_never_made_up() {
        let data = vec![0x5a; 1 << 20];
        let (_dir, f) = file_of(&data);
        f.sync_all().unwrap();
        // Clean pages are dropped (where the file system honours it).
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        match read_cached_at(&f, &mut buf, 0) {
            None => {}
            Some(got) => assert_eq!(buf[..got], data[..got]),
        }
        // The blocking path reads them all.
        assert_eq!(read_full_at(&f, &mut buf, 0).unwrap(), 1 << 20);
        assert_eq!(buf, data);
    }
}
