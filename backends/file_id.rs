//! Which file a descriptor or a name is (device, inode, links, size),
//! found without asking for its timestamps.
//!
//! Why not `std::fs::metadata`: on Linux with multigrain timestamps (6.13
//! and later) a stat that asks for a file's change or modification time
//! makes the next write to it take a fine-grained time, which dirties the
//! inode on every write. On ext4 an `fdatasync` then writes the inode too
//! (without a journal, synchronously): one more device write per root-log
//! append. The root log asks "is the name still this file?" before each
//! append; measured on this project's 2-core VM, a stat between in-place
//! appends cost 25-50 us per `fdatasync` (~120 us without it). `statx`
//! with a mask of only what is needed leaves the timestamps unqueried.

use std::fs::File;
use std::io;
use std::path::Path;

/// A file's identity and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    /// Device and inode.
    pub(crate) id: (u64, u64),
    /// Names the file has (0: removed).
    pub(crate) links: u64,
    pub(crate) len: u64,
}

/// Through `std` (a stat asking for everything): where `statx` is missing.
mod with_std {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn from(m: std::fs::Metadata) -> FileId {
        FileId {
            id: (m.dev(), m.ino()),
            links: m.nlink(),
            len: m.len(),
        }
    }

    pub(crate) fn of_file(file: &File) -> io::Result<FileId> {
        file.metadata().map(from)
    }

    pub(crate) fn of_path(path: &Path) -> io::Result<FileId> {
        std::fs::metadata(path).map(from)
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use rustix::fs::{AtFlags, StatxFlags, makedev, statx};
    use rustix::io::Errno;

    const MASK: StatxFlags = StatxFlags::INO
        .union(StatxFlags::NLINK)
        .union(StatxFlags::SIZE);

    /// The identity `statx` gave, or `None` where it is not to be trusted
    /// or had (kernels before 4.11, some seccomp filters, a file system not
    /// reporting every field asked): `std` answers then.
    fn from(r: rustix::io::Result<rustix::fs::Statx>) -> Option<io::Result<FileId>> {
        match r {
            Ok(s) if s.stx_mask & MASK.bits() == MASK.bits() => Some(Ok(FileId {
                id: (makedev(s.stx_dev_major, s.stx_dev_minor), s.stx_ino),
                links: u64::from(s.stx_nlink),
                len: s.stx_size,
            })),
            Ok(_) => None,
            Err(e) if e == Errno::NOSYS || e == Errno::PERM || e == Errno::INVAL => None,
            Err(e) => Some(Err(e.into())),
        }
    }

    pub(crate) fn of_file(file: &File) -> io::Result<FileId> {
        from(statx(file, "", AtFlags::EMPTY_PATH, MASK)).unwrap_or_else(|| with_std::of_file(file))
    }

    pub(crate) fn of_path(path: &Path) -> io::Result<FileId> {
        from(statx(rustix::fs::CWD, path, AtFlags::empty(), MASK))
            .unwrap_or_else(|| with_std::of_path(path))
    }
}

#[cfg(not(target_os = "linux"))]
use with_std as imp;

pub(crate) use imp::{of_file, of_path};

/// Whether `file` is no longer the file at `path` (removed, or replaced).
pub(crate) fn unlinked(file: &File, path: &Path) -> io::Result<bool> {
    let open = of_file(file)?;
    if open.links == 0 {
        return Ok(true);
    }
    match of_path(path) {
        Ok(named) => Ok(named.id != open.id),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_same_identity_as_std_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let file = File::open(&path).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        let want = FileId {
            id: (m.dev(), m.ino()),
            links: m.nlink(),
            len: 5,
        };
        assert_eq!(of_file(&file).unwrap(), want);
        assert_eq!(of_path(&path).unwrap(), want);
        assert!(!unlinked(&file, &path).unwrap());
        // Replaced: the name is another file.
        std::fs::write(dir.path().join("g"), b"other").unwrap();
        std::fs::rename(dir.path().join("g"), &path).unwrap();
        assert!(unlinked(&file, &path).unwrap());
        // Removed.
        let file = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(unlinked(&file, &path).unwrap());
        assert_eq!(of_file(&file).unwrap().links, 0);
        assert_eq!(of_path(&path).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
