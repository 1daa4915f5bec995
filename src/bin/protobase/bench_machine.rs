//! The machine a benchmark ran on, printed first: figures from a 2-core VM
//! on overlayfs and from a 32-core host on ext4 are not comparable, and a
//! reader of the output must be able to tell which is which.

use std::path::Path;

/// What `protobase bench` reports about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) cpu: String,
    pub(crate) memory_mib: Option<u64>,
    pub(crate) kernel: String,
    /// Filesystem type of the benchmark's directory, and its mount point.
    pub(crate) filesystem: String,
    pub(crate) mount: String,
}

impl Machine {
    /// One line for the table's header.
    pub(crate) fn line(&self) -> String {
        format!(
            "{} cores ({}), {}, kernel {}, {} at {}",
            self.cores,
            self.cpu,
            self.memory_mib
                .map_or_else(|| "memory unknown".to_string(), |m| format!("{m} MiB")),
            self.kernel,
            self.filesystem,
            self.mount
        )
    }
}

/// Describes this machine; what cannot be read is `"unknown"`.
pub(crate) fn describe(dir: &Path) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let memory_mib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024);
    let kernel = match read("/proc/sys/kernel/osrelease").trim() {
        "" => "unknown".to_string(),
        k => k.to_string(),
    };
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let (mount, filesystem) = mount_of(&read("/proc/self/mountinfo"), &dir)
        .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
    Machine {
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        cpu,
        memory_mib,
        kernel,
        filesystem,
        mount,
    }
}

/// The mount point holding `dir` and its filesystem type, from the text of
/// `/proc/self/mountinfo` (the longest mount point that is a prefix).
fn mount_of(mountinfo: &str, dir: &Path) -> Option<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // `id parent maj:min root mount-point options [optional...] - fstype source super`
            let (before, after) = line.split_once(" - ")?;
            let mount = before.split(' ').nth(4)?.replace("\\040", " ");
            let fstype = after.split(' ').next()?.to_string();
            dir.starts_with(&mount).then_some((mount, fstype))
        })
        .max_by_key(|(mount, _)| mount.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_mount_holding_the_dir_wins() {
        let info = "22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw\n\
                    30 22 8:1 / /work rw,relatime shared:2 - ext4 /dev/sda1 rw\n\
                    31 22 0:30 / /work2 rw - tmpfs tmpfs rw\n\
                    garbage line\n";
        assert_eq!(
            mount_of(info, Path::new("/work/x/y")),
            Some(("/work".into(), "ext4".into()))
        );
        assert_eq!(
            mount_of(info, Path::new("/tmp")),
            Some(("/".into(), "overlay".into()))
        );
        assert_eq!(mount_of("", Path::new("/tmp")), None);
    }

    #[test]
    fn this_machine_is_described() {
        let m = describe(Path::new("/"));
        assert!(m.cores >= 1);
        assert!(m.line().contains("cores"));
    }
}
