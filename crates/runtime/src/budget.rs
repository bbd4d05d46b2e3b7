//! The memory budget: how many bytes the loaded models may take together.
//!
//! A budget is written as a byte size with a unit (`512MiB`, `2GB`, `1.5GiB`) or as a
//! percentage of the machine's memory (`70%`). Without one, the budget is derived from
//! the machine: what the kernel says is available (`MemAvailable` in `/proc/meminfo`,
//! which counts reclaimable page cache, unlike `MemFree`) minus a safety margin, capped
//! by the cgroup limit when the process runs in a container (cgroup v2 `memory.max`
//! minus `memory.current`, or v1 `memory.limit_in_bytes` minus `memory.usage_in_bytes`),
//! since a container is killed at its own limit long before the host runs out.
//!
//! [`process_rss`] reads the process's resident set (`VmRSS`), used to measure what a
//! load really cost and, in tests, to check the budget is kept.

use std::fmt;
use std::str::FromStr;

/// A memory budget as written in config or on the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// A fixed number of bytes.
    Bytes(u64),
    /// A percentage (0–100] of the machine's memory (the cgroup limit when lower).
    PercentOfRam(f32),
}

/// A budget string that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid memory budget {input:?}: {reason} (examples: \"512MiB\", \"2GB\", \"1.5GiB\", \"70%\"; units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
)]
pub struct BudgetParseError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Units accepted after a number, with their size in bytes. Decimal units are powers of
/// 1000 and binary ones powers of 1024, as the IEC prefixes define them.
const UNITS: [(&str, u64); 9] = [
    ("b", 1),
    ("kb", 1000),
    ("mb", 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

impl FromStr for Budget {
    type Err = BudgetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| BudgetParseError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let text = s.trim();
        if let Some(number) = text.strip_suffix('%') {
            let percent: f32 = number
                .trim()
                .parse()
                .map_err(|_| err("the percentage is not a number"))?;
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(err("a percentage must be above 0 and at most 100"));
            }
            return Ok(Budget::PercentOfRam(percent));
        }
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        if number.is_empty() {
            return Err(err("it does not start with a number"));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| err("the number does not parse"))?;
        let unit = unit.trim().to_ascii_lowercase();
        let multiplier = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, m)| *m)
                .ok_or_else(|| err("unknown unit"))?
        };
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
            return Err(err("the size must be at least 1 byte"));
        }
        Ok(Budget::Bytes(bytes.round() as u64))
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Bytes(b) => write!(f, "{}", format_bytes(*b)),
            Budget::PercentOfRam(p) => write!(f, "{p}%"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Budget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A plain integer is bytes; a string has a unit or a percent sign.
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Int(0) => Err(serde::de::Error::custom("a memory budget of 0 bytes")),
            Raw::Int(b) => Ok(Budget::Bytes(b)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `1536 MiB`-style text for logs and errors: the largest binary unit that keeps the
/// number at least 1, one decimal.
pub fn format_bytes(bytes: u64) -> String {
    const NAMES: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut name = "B";
    for unit in NAMES {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        name = unit;
    }
    format!("{value:.1} {name}")
}

/// What the machine offers, read once when the runtime starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineMemory {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable`.
    pub available: u64,
    /// The cgroup's limit, when one is set.
    pub cgroup_limit: Option<u64>,
    /// The cgroup's current usage, when a limit is set.
    pub cgroup_usage: Option<u64>,
}

/// Memory kept free for everything that is not a model (the server, the OS, other
/// processes): a tenth of the memory, at least 64 MiB and at most 1 GiB.
pub fn safety_margin(total: u64) -> u64 {
    (total / 10).clamp(64 << 20, 1 << 30)
}

impl MachineMemory {
    /// Reads `/proc/meminfo` and the cgroup files of this process. `None` when
    /// `/proc/meminfo` cannot be read (not Linux).
    pub fn read() -> Option<MachineMemory> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let mut memory = parse_meminfo(&meminfo)?;
        if let Some((limit, usage)) = read_cgroup() {
            memory.cgroup_limit = Some(limit);
            memory.cgroup_usage = Some(usage);
        }
        Some(memory)
    }

    /// The memory a percentage refers to: RAM, or the cgroup limit when lower.
    pub fn ram(&self) -> u64 {
        match self.cgroup_limit {
            Some(limit) => limit.min(self.total),
            None => self.total,
        }
    }

    /// The default budget: available memory minus [`safety_margin`], capped by what the
    /// cgroup still allows minus the same margin.
    pub fn default_budget(&self) -> u64 {
        let margin = safety_margin(self.ram());
        let mut free = self.available;
        if let (Some(limit), Some(usage)) = (self.cgroup_limit, self.cgroup_usage) {
            free = free.min(limit.saturating_sub(usage));
        }
        free.saturating_sub(margin)
    }

    /// The budget in bytes for `budget` (`None`: the default).
    pub fn resolve(&self, budget: Option<Budget>) -> u64 {
        match budget {
            None => self.default_budget(),
            Some(Budget::Bytes(b)) => b,
            Some(Budget::PercentOfRam(p)) => (self.ram() as f64 * f64::from(p) / 100.0) as u64,
        }
    }
}

/// `MemTotal` and `MemAvailable` (kB in the file) in bytes.
fn parse_meminfo(text: &str) -> Option<MachineMemory> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
    };
    let total = field("MemTotal")?;
    // Kernels before 3.14 lack MemAvailable: MemFree is the closest lower bound.
    let available = field("MemAvailable").or_else(|| field("MemFree"))?;
    Some(MachineMemory {
        total,
        available,
        cgroup_limit: None,
        cgroup_usage: None,
    })
}

/// The limit and usage of this process's memory cgroup, when it has a limit.
fn read_cgroup() -> Option<(u64, u64)> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let read = |path: String| std::fs::read_to_string(path).ok();
    cgroup_limit_from(&membership, read)
}

/// The cgroup limit logic over a file reader, so it is testable on any machine.
/// `/proc/self/cgroup` lines read `id:controllers:path`; v2 has `0::/path`.
fn cgroup_limit_from(
    membership: &str,
    read: impl Fn(String) -> Option<String>,
) -> Option<(u64, u64)> {
    let number = |text: Option<String>| -> Option<u64> { text?.trim().parse().ok() };
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_end_matches('/');
        if id == "0" && controllers.is_empty() {
            let dir = format!("/sys/fs/cgroup{path}");
            // "max" means no limit; the parse fails and no limit is reported.
            if let Some(limit) = number(read(format!("{dir}/memory.max"))) {
                let usage = number(read(format!("{dir}/memory.current"))).unwrap_or(0);
                return Some((limit, usage));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let dir = format!("/sys/fs/cgroup/memory{path}");
            let limit = number(read(format!("{dir}/memory.limit_in_bytes")))?;
            // v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages).
            if limit >= 1 << 60 {
                return None;
            }
            let usage = number(read(format!("{dir}/memory.usage_in_bytes"))).unwrap_or(0);
            return Some((limit, usage));
        }
    }
    None
}

/// The resident set size of this process in bytes (`VmRSS` of `/proc/self/status`);
/// `None` where that file does not exist.
pub fn process_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        let cases = [
            ("512MiB", 512 << 20),
            ("2GB", 2_000_000_000),
            ("1.5GiB", 3 << 29),
            ("1000", 1000),
            ("64 KiB", 64 << 10),
            ("3kb", 3000),
            ("1B", 1),
            ("2TiB", 2 << 40),
            (" 7 MB ", 7_000_000),
        ];
        for (text, bytes) in cases {
            assert_eq!(text.parse::<Budget>(), Ok(Budget::Bytes(bytes)), "{text}");
        }
        assert_eq!("70%".parse::<Budget>(), Ok(Budget::PercentOfRam(70.0)));
        assert_eq!("12.5 %".parse::<Budget>(), Ok(Budget::PercentOfRam(12.5)));
    }

    #[test]
    fn bad_budgets_say_why() {
        for (text, why) in [
            ("", "number"),
            ("MiB", "number"),
            ("12 parsecs", "unknown unit"),
            ("1.2.3GB", "does not parse"),
            ("0B", "at least 1 byte"),
            ("0%", "above 0"),
            ("150%", "at most 100"),
            ("x%", "not a number"),
        ] {
            let err = text.parse::<Budget>().unwrap_err();
            let message = err.to_string();
            assert!(message.contains(why), "{text}: {message}");
            assert!(message.contains(&format!("{text:?}")), "{message}");
        }
    }

    #[test]
    fn formats_bytes_in_binary_units() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(300 << 20), "300.0 MiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn meminfo_and_default_budget() {
        let text = "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\n";
        let memory = parse_meminfo(text).unwrap();
        assert_eq!(memory.total, 8_000_000 * 1024);
        assert_eq!(memory.available, 4_000_000 * 1024);
        let margin = safety_margin(memory.total);
        assert_eq!(margin, memory.total / 10);
        assert_eq!(memory.default_budget(), memory.available - margin);
        assert_eq!(
            memory.resolve(Some(Budget::PercentOfRam(50.0))),
            memory.total / 2
        );
        assert_eq!(memory.resolve(Some(Budget::Bytes(5))), 5);

        let capped = MachineMemory {
            cgroup_limit: Some(1 << 30),
            cgroup_usage: Some(256 << 20),
            ..memory
        };
        // 768 MiB left in the cgroup, minus a 102.4 MiB margin (a tenth of 1 GiB).
        assert_eq!(capped.default_budget(), (768 << 20) - (1 << 30) / 10);
        assert_eq!(capped.ram(), 1 << 30);
        assert_eq!(capped.resolve(Some(Budget::PercentOfRam(50.0))), 512 << 20);
    }

    #[test]
    fn cgroup_v2_and_v1_limits() {
        let files = |path: String| -> Option<String> {
            match path.as_str() {
                "/sys/fs/cgroup/app/memory.max" => Some("1073741824\n".into()),
                "/sys/fs/cgroup/app/memory.current" => Some("1000\n".into()),
                "/sys/fs/cgroup/free/memory.max" => Some("max\n".into()),
                "/sys/fs/cgroup/memory/box/memory.limit_in_bytes" => Some("2048\n".into()),
                "/sys/fs/cgroup/memory/box/memory.usage_in_bytes" => Some("1024\n".into()),
                "/sys/fs/cgroup/memory/open/memory.limit_in_bytes" => {
                    Some("9223372036854771712\n".into())
                }
                _ => None,
            }
        };
        assert_eq!(cgroup_limit_from("0::/app\n", files), Some((1 << 30, 1000)));
        assert_eq!(cgroup_limit_from("0::/free\n", files), None);
        let v1 = "12:cpu,cpuacct:/x\n4:memory:/box\n";
        assert_eq!(cgroup_limit_from(v1, files), Some((2048, 1024)));
        assert_eq!(cgroup_limit_from("4:memory:/open\n", files), None);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let rss = process_rss().expect("linux /proc");
        assert!(rss > 1 << 20, "{rss}");
        let memory = MachineMemory::read().expect("linux /proc/meminfo");
        assert!(memory.total >= memory.available && memory.available > 0);
    }
}
