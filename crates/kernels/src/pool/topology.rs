//! How many threads decode should use by default: the physical cores this process may
//! run on.
//!
//! Why physical cores: decode is bound by memory bandwidth and by the SIMD units of a
//! core, which two hyper-threads of one core share; llama.cpp likewise defaults to the
//! physical core count (`cpu_get_num_physical_cores` in `common/common.cpp`). The
//! count is then bounded by what the process is really given: its CPU affinity mask
//! (`taskset`, container cpusets) and its cgroup CPU quota (`cpu.max` in cgroup v2,
//! `cpu.cfs_quota_us` / `cpu.cfs_period_us` in v1, what `docker --cpus` sets), because
//! threads beyond the quota are throttled for whole periods — the worst case for a pool
//! whose ops wait for their slowest thread.
//!
//! Everything is read from Linux's /proc and /sys; where those are missing (other
//! systems) [`std::thread::available_parallelism`] is the answer.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// What [`default_threads`] found out, for diagnostics (`tern doctor`) and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadBudget {
    /// Distinct physical cores among the CPUs the process may run on, if the CPU
    /// topology could be read.
    pub physical_cores: Option<usize>,
    /// CPUs in the affinity mask of the calling thread, if it could be read.
    pub allowed_cpus: Option<usize>,
    /// Whole CPUs allowed by the cgroup CPU quota (rounded down, at least 1), if a
    /// quota is set.
    pub cgroup_cpus: Option<usize>,
    /// What the standard library reports ([`std::thread::available_parallelism`]).
    pub available_parallelism: Option<usize>,
}

impl ThreadBudget {
    /// The thread count: the smallest of the known limits, physical cores first; at
    /// least 1.
    pub fn threads(&self) -> usize {
        [
            self.physical_cores,
            self.allowed_cpus,
            self.cgroup_cpus,
            self.available_parallelism,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(1)
        .max(1)
    }
}

/// The default number of threads for decode: physical cores, bounded by the affinity
/// mask and the cgroup CPU quota (see the module documentation).
pub fn default_threads() -> usize {
    thread_budget().threads()
}

/// Reads the limits that [`default_threads`] combines.
pub fn thread_budget() -> ThreadBudget {
    let allowed = fs::read_to_string("/proc/thread-self/status")
        .or_else(|_| fs::read_to_string("/proc/self/status"))
        .ok()
        .and_then(|status| parse_cpus_allowed(&status));
    let physical_cores = sysfs_physical_cores(allowed.as_ref()).or_else(|| {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").ok()?;
        cpuinfo_physical_cores(&cpuinfo, allowed.as_ref())
    });
    ThreadBudget {
        physical_cores,
        allowed_cpus: allowed.as_ref().map(BTreeSet::len),
        cgroup_cpus: cgroup_cpu_limit(),
        available_parallelism: std::thread::available_parallelism().ok().map(usize::from),
    }
}

/// Parses a Linux CPU list such as `0-3,8,10-11`.
fn parse_cpu_list(list: &str) -> Option<BTreeSet<usize>> {
    let mut cpus = BTreeSet::new();
    for part in list.trim().split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let first: usize = first.trim().parse().ok()?;
                let last: usize = last.trim().parse().ok()?;
                if first > last {
                    return None;
                }
                cpus.extend(first..=last);
            }
            None => {
                cpus.insert(part.trim().parse().ok()?);
            }
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

/// The `Cpus_allowed_list` of a /proc `status` file: the affinity mask.
fn parse_cpus_allowed(status: &str) -> Option<BTreeSet<usize>> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .and_then(parse_cpu_list)
}

/// Counts distinct (package, core) pairs over the allowed (else online) CPUs using
/// /sys/devices/system/cpu/cpuN/topology, which both x86 and ARM kernels provide.
fn sysfs_physical_cores(allowed: Option<&BTreeSet<usize>>) -> Option<usize> {
    let root = Path::new("/sys/devices/system/cpu");
    let online;
    let cpus = match allowed {
        Some(allowed) => allowed,
        None => {
            online = parse_cpu_list(&fs::read_to_string(root.join("online")).ok()?)?;
            &online
        }
    };
    let read_id = |cpu: usize, name: &str| -> Option<i64> {
        let path = root.join(format!("cpu{cpu}/topology/{name}"));
        fs::read_to_string(path).ok()?.trim().parse().ok()
    };
    let mut cores = BTreeSet::new();
    for &cpu in cpus {
        cores.insert((
            read_id(cpu, "physical_package_id")?,
            read_id(cpu, "core_id")?,
        ));
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Counts distinct (`physical id`, `core id`) pairs over the allowed CPUs listed in
/// /proc/cpuinfo. `None` when the file does not say (ARM kernels omit these fields).
fn cpuinfo_physical_cores(cpuinfo: &str, allowed: Option<&BTreeSet<usize>>) -> Option<usize> {
    let mut cores = BTreeSet::new();
    for block in cpuinfo.split("\n\n") {
        let field = |name: &str| -> Option<usize> {
            block.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().parse().ok())?
            })
        };
        let Some(processor) = field("processor") else {
            continue;
        };
        if allowed.is_some_and(|allowed| !allowed.contains(&processor)) {
            continue;
        }
        cores.insert((field("physical id")?, field("core id")?));
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// A cgroup v2 `cpu.max` (`"$MAX $PERIOD"`, `$MAX` possibly `max`) as a CPU count.
fn parse_cpu_max(cpu_max: &str) -> Option<f64> {
    let mut fields = cpu_max.split_whitespace();
    let quota = fields.next()?;
    let period: f64 = fields.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    if quota == "max" {
        return None;
    }
    let quota: f64 = quota.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// A cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` as a CPU count (-1: no quota).
fn parse_cfs_quota(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// Whole CPUs in a quota: rounded down (a fractional CPU would throttle one thread for
/// part of every period), at least 1.
fn quota_threads(cpus: f64) -> usize {
    // `as` saturates for huge values; quotas are small positive numbers.
    (cpus.floor() as usize).max(1)
}

/// Which cgroup hierarchy a directory belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupVersion {
    V1,
    V2,
}

/// The cgroup directories holding this process's CPU quota, with their version, from
/// /proc/self/cgroup and /proc/self/mountinfo. Each is followed by its ancestors up to
/// the mount point by [`cgroup_cpu_limit`], since a parent's quota bounds its children.
fn cgroup_cpu_dirs(proc_cgroup: &str, mountinfo: &str) -> Vec<(PathBuf, PathBuf, CgroupVersion)> {
    let mut dirs = Vec::new();
    for line in proc_cgroup.lines() {
        // `hierarchy-id:controllers:path`; v2 is `0::path`.
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let version = if id == "0" && controllers.is_empty() {
            CgroupVersion::V2
        } else if controllers.split(',').any(|c| c == "cpu") {
            CgroupVersion::V1
        } else {
            continue;
        };
        for mount in mountinfo.lines() {
            // `id parent dev root mount-point options [optional...] - fstype source super-options`
            let Some((left, right)) = mount.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(mount_point), Some(fstype)) =
                (left.get(3), left.get(4), right.first())
            else {
                continue;
            };
            let matches = match version {
                CgroupVersion::V2 => *fstype == "cgroup2",
                CgroupVersion::V1 => {
                    *fstype == "cgroup"
                        && right
                            .get(2)
                            .is_some_and(|opts| opts.split(',').any(|o| o == "cpu"))
                }
            };
            if !matches {
                continue;
            }
            // The process's path is relative to the hierarchy root; the mount shows the
            // hierarchy from `root` on (a container sees its own cgroup as `/`).
            let relative = if *root == "/" {
                path
            } else {
                match path.strip_prefix(root) {
                    Some(rest) => rest,
                    None => continue,
                }
            };
            let mount_point = PathBuf::from(mount_point);
            let dir = mount_point.join(relative.trim_start_matches('/'));
            dirs.push((mount_point, dir, version));
            break;
        }
    }
    dirs
}

/// The cgroup CPU quota of this process in whole CPUs, if one is set anywhere on its
/// cgroup paths.
fn cgroup_cpu_limit() -> Option<usize> {
    let proc_cgroup = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut limit: Option<f64> = None;
    for (mount_point, dir, version) in cgroup_cpu_dirs(&proc_cgroup, &mountinfo) {
        let mut current = Some(dir.as_path());
        while let Some(dir) = current.filter(|dir| dir.starts_with(&mount_point)) {
            let read = |name: &str| fs::read_to_string(dir.join(name)).ok();
            let cpus = match version {
                CgroupVersion::V2 => read("cpu.max").and_then(|text| parse_cpu_max(&text)),
                CgroupVersion::V1 => match (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")) {
                    (Some(quota), Some(period)) => parse_cfs_quota(&quota, &period),
                    _ => None,
                },
            };
            if let Some(cpus) = cpus {
                limit = Some(limit.map_or(cpus, |limit| limit.min(cpus)));
            }
            current = dir.parent();
        }
    }
    limit.map(quota_threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cpus: &[usize]) -> BTreeSet<usize> {
        cpus.iter().copied().collect()
    }

    #[test]
    fn cpu_lists_parse_ranges_and_singles() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(set(&[0, 1, 2, 3, 8, 10, 11]))
        );
        assert_eq!(parse_cpu_list("5"), Some(set(&[5])));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a-b"), None);
    }

    #[test]
    fn affinity_mask_is_read_from_status() {
        let status = "Name:\ttern\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed:\t1\n";
        assert_eq!(parse_cpus_allowed(status), Some(set(&[0, 1])));
        assert_eq!(parse_cpus_allowed("Name:\ttern\n"), None);
    }

    /// Two packages of two cores with two hyper-threads each: 8 CPUs, 4 cores.
    const CPUINFO_SMT: &str = "\
processor\t: 0\nphysical id\t: 0\ncore id\t\t: 0\n\n\
processor\t: 1\nphysical id\t: 0\ncore id\t\t: 1\n\n\
processor\t: 2\nphysical id\t: 1\ncore id\t\t: 0\n\n\
processor\t: 3\nphysical id\t: 1\ncore id\t\t: 1\n\n\
processor\t: 4\nphysical id\t: 0\ncore id\t\t: 0\n\n\
processor\t: 5\nphysical id\t: 0\ncore id\t\t: 1\n\n\
processor\t: 6\nphysical id\t: 1\ncore id\t\t: 0\n\n\
processor\t: 7\nphysical id\t: 1\ncore id\t\t: 1\n\n";

    #[test]
    fn cpuinfo_counts_cores_not_hyperthreads() {
        assert_eq!(cpuinfo_physical_cores(CPUINFO_SMT, None), Some(4));
        // CPUs 0 and 4 are the two threads of one core.
        assert_eq!(
            cpuinfo_physical_cores(CPUINFO_SMT, Some(&set(&[0, 4]))),
            Some(1)
        );
        assert_eq!(
            cpuinfo_physical_cores(CPUINFO_SMT, Some(&set(&[0, 1, 4]))),
            Some(2)
        );
    }

    #[test]
    fn cpuinfo_without_topology_is_unknown() {
        // What an aarch64 kernel prints: no physical id / core id.
        let arm = "processor\t: 0\nBogoMIPS\t: 108.00\n\nprocessor\t: 1\nBogoMIPS\t: 108.00\n";
        assert_eq!(cpuinfo_physical_cores(arm, None), None);
    }

    #[test]
    fn cgroup_quotas_convert_to_whole_cpus() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("200000\n"), Some(2.0));
        assert_eq!(parse_cfs_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs_quota("50000\n", "100000\n"), Some(0.5));
        assert_eq!(quota_threads(1.5), 1);
        assert_eq!(quota_threads(0.5), 1);
        assert_eq!(quota_threads(3.0), 3);
    }

    #[test]
    fn cgroup_dirs_follow_mounts_for_v1_and_v2() {
        let proc_cgroup =
            "4:memory:/user\n1:cpu,cpuacct:/docker/abc\n0::/system.slice/tern.service\n";
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let dirs = cgroup_cpu_dirs(proc_cgroup, mountinfo);
        assert_eq!(
            dirs,
            vec![
                (
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/docker/abc"),
                    CgroupVersion::V1
                ),
                (
                    PathBuf::from("/sys/fs/cgroup/unified"),
                    PathBuf::from("/sys/fs/cgroup/unified/system.slice/tern.service"),
                    CgroupVersion::V2
                ),
            ]
        );
    }

    #[test]
    fn cgroup_dirs_strip_the_mount_root_of_a_container() {
        let proc_cgroup = "0::/kubepods/pod1/ctr\n";
        let mountinfo = "50 40 0:30 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup_cpu_dirs(proc_cgroup, mountinfo),
            vec![(
                PathBuf::from("/sys/fs/cgroup"),
                PathBuf::from("/sys/fs/cgroup/ctr"),
                CgroupVersion::V2
            )]
        );
    }

    #[test]
    fn budget_takes_the_smallest_limit() {
        let budget = ThreadBudget {
            physical_cores: Some(4),
            allowed_cpus: Some(8),
            cgroup_cpus: Some(2),
            available_parallelism: Some(8),
        };
        assert_eq!(budget.threads(), 2);
        let unknown = ThreadBudget {
            physical_cores: None,
            allowed_cpus: None,
            cgroup_cpus: None,
            available_parallelism: None,
        };
        assert_eq!(unknown.threads(), 1);
    }

    #[test]
    fn default_threads_fits_this_machine() {
        let budget = thread_budget();
        let threads = default_threads();
        assert!(threads >= 1);
        if let Some(available) = budget.available_parallelism {
            assert!(threads <= available, "{budget:?}");
        }
        if let Some(allowed) = budget.allowed_cpus {
            assert!(threads <= allowed, "{budget:?}");
        }
        // On Linux the topology is readable, so the physical core count is known.
        if cfg!(target_os = "linux") {
            assert!(budget.physical_cores.is_some(), "{budget:?}");
        }
    }
}
