//! Helpers of the fuzz targets.

use std::path::PathBuf;

/// Where the targets keep their scratch directories: `/dev/shm` when it
/// exists (the cache and cloud targets write files on every input), else
/// the system temp directory.
pub fn scratch() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}
