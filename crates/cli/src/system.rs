//! What the operating system says about memory: `/proc/meminfo` and the cgroup limit.
//!
//! A container's memory limit is what actually bounds a model, not the host's RAM:
//! cgroup v2 `memory.max` of the process's own cgroup (from `/proc/self/cgroup`, line
//! `0::PATH`), else the v1 `memory.limit_in_bytes` of its `memory` controller. Values
//! that mean "no limit" (`max`, or v1's huge page-rounded number) give `None`.

use std::fs;
use std::path::Path;

/// Memory facts, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub total: Option<u64>,
    pub available: Option<u64>,
    pub cgroup_limit: Option<u64>,
    /// `v2` or `v1` when a cgroup memory controller was found.
    pub cgroup_version: Option<&'static str>,
}

pub fn memory() -> Memory {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let self_cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let (cgroup_limit, cgroup_version) = cgroup_limit(Path::new("/sys/fs/cgroup"), &self_cgroup);
    Memory {
        total: meminfo_field(&meminfo, "MemTotal"),
        available: meminfo_field(&meminfo, "MemAvailable"),
        cgroup_limit,
        cgroup_version,
    }
}

/// A `kB` field of /proc/meminfo, in bytes.
fn meminfo_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        kib.checked_mul(1024)
    })
}

/// The memory limit of this process's cgroup under `root` (normally `/sys/fs/cgroup`),
/// given the text of `/proc/self/cgroup`.
pub fn cgroup_limit(root: &Path, self_cgroup: &str) -> (Option<u64>, Option<&'static str>) {
    // cgroup v2: one line `0::/path`.
    if let Some(path) = self_cgroup.lines().find_map(|l| l.strip_prefix("0::")) {
        let relative = path.trim().trim_start_matches('/');
        for dir in [root.join(relative), root.to_path_buf()] {
            if let Ok(text) = fs::read_to_string(dir.join("memory.max")) {
                let text = text.trim();
                return (
                    if text == "max" {
                        None
                    } else {
                        text.parse().ok()
                    },
                    Some("v2"),
                );
            }
        }
    }
    // cgroup v1: a line `N:...memory...:/path`.
    let v1_path = self_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.trim().trim_start_matches('/'))
    });
    if let Some(relative) = v1_path {
        let memory = root.join("memory");
        for dir in [memory.join(relative), memory.clone()] {
            if let Ok(text) = fs::read_to_string(dir.join("memory.limit_in_bytes")) {
                // v1 reports "unlimited" as the largest page-aligned i64.
                let limit = text.trim().parse::<u64>().ok().filter(|v| *v < (1 << 62));
                return (limit, Some("v1"));
            }
        }
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_are_bytes() {
        let text = "MemTotal:       24576000 kB\nMemFree:  1 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(meminfo_field(text, "MemTotal"), Some(24_576_000 * 1024));
        assert_eq!(meminfo_field(text, "MemAvailable"), Some(20_000_000 * 1024));
        assert_eq!(meminfo_field(text, "SwapTotal"), None);
    }

    #[test]
    fn cgroup_v2_limit_of_the_own_cgroup() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("system.slice/tern.service");
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("memory.max"), "536870912\n").unwrap();
        fs::write(root.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(
            cgroup_limit(root.path(), "0::/system.slice/tern.service\n"),
            (Some(536_870_912), Some("v2"))
        );
        // Inside a container the own cgroup is the root: "max" means no limit.
        assert_eq!(cgroup_limit(root.path(), "0::/\n"), (None, Some("v2")));
    }

    #[test]
    fn cgroup_v1_limit_and_unlimited() {
        let root = tempfile::tempdir().unwrap();
        let memory = root.path().join("memory/docker/abc");
        fs::create_dir_all(&memory).unwrap();
        fs::write(memory.join("memory.limit_in_bytes"), "1073741824\n").unwrap();
        let text = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n";
        assert_eq!(cgroup_limit(root.path(), text), (Some(1 << 30), Some("v1")));
        fs::write(
            memory.join("memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        assert_eq!(cgroup_limit(root.path(), text), (None, Some("v1")));
        assert_eq!(cgroup_limit(root.path(), ""), (None, None));
    }
}
