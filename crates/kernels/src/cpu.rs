//! What the CPU can do, detected once per process, and which kernel path tern uses.
//!
//! Kernels pick their implementation at run time (never only at compile time: a default
//! x86_64 build must still use AVX2 where the CPU has it), so the detection lives here,
//! behind a [`OnceLock`], and every dispatcher reads the same answer. `tern doctor` shows
//! the same facts: the features, the chosen [`KernelPath`], the CPU model and core counts.
//!
//! The environment variable `TERN_KERNELS` overrides the choice:
//! - unset, empty or `auto`: the best path this build has for this CPU;
//! - `scalar`: the portable reference path, whatever the CPU (for debugging and for
//!   comparing against the SIMD paths);
//! - `avx2` (x86_64): AVX2 + FMA + F16C, even on a CPU with AVX-512 — so the AVX2
//!   kernels run (and are tested) on AVX-512 machines too;
//! - `avx512` (x86_64): AVX-512 F/BW/VL without VNNI, even where VNNI exists (the
//!   8-bit dot products then use `vpmaddubsw`/`vpmaddwd`, as on Skylake-X);
//! - `avx512-vnni` (x86_64): AVX-512 F/BW/VL with VNNI `vpdpbusd`;
//! - `neon` (aarch64): NEON without the dot-product extension (Cortex-A53/A55/A72), even
//!   on a CPU that has it;
//! - `neon-dotprod` (aarch64): NEON with `sdot`/`udot` (Cortex-A76, the Raspberry Pi 5);
//! - a path the CPU (or this build's architecture) lacks, or anything else: a warning is
//!   logged and `auto` is used.
//!
//! Optional extensions inside a path are used where the CPU has them and never assumed:
//! AVX-512 BF16 (`vdpbf16ps`) for BF16 weights on the AVX-512 paths.

use std::fmt;
use std::sync::OnceLock;

/// SIMD features of the CPU that matter to tern's kernels.
///
/// Fields for the other architecture are always `false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    // x86_64
    pub avx: bool,
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    pub avx512vnni: bool,
    pub avx512bf16: bool,
    pub avx512vbmi: bool,
    // aarch64
    pub neon: bool,
    pub dotprod: bool,
    pub i8mm: bool,
    pub fp16: bool,
}

impl CpuFeatures {
    /// Asks the CPU (through std's cached `cpuid` / `getauxval` detection).
    pub fn detect() -> CpuFeatures {
        #[allow(unused_mut)]
        let mut f = CpuFeatures::default();
        #[cfg(target_arch = "x86_64")]
        {
            f.avx = std::arch::is_x86_feature_detected!("avx");
            f.avx2 = std::arch::is_x86_feature_detected!("avx2");
            f.fma = std::arch::is_x86_feature_detected!("fma");
            f.f16c = std::arch::is_x86_feature_detected!("f16c");
            f.avx512f = std::arch::is_x86_feature_detected!("avx512f");
            f.avx512bw = std::arch::is_x86_feature_detected!("avx512bw");
            f.avx512vl = std::arch::is_x86_feature_detected!("avx512vl");
            f.avx512vnni = std::arch::is_x86_feature_detected!("avx512vnni");
            f.avx512bf16 = std::arch::is_x86_feature_detected!("avx512bf16");
            f.avx512vbmi = std::arch::is_x86_feature_detected!("avx512vbmi");
        }
        #[cfg(target_arch = "aarch64")]
        {
            f.neon = std::arch::is_aarch64_feature_detected!("neon");
            f.dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
            f.i8mm = std::arch::is_aarch64_feature_detected!("i8mm");
            f.fp16 = std::arch::is_aarch64_feature_detected!("fp16");
        }
        f
    }

    /// The names of the features present, in a fixed order (for `tern doctor`).
    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            (self.avx, "avx"),
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.f16c, "f16c"),
            (self.avx512f, "avx512f"),
            (self.avx512bw, "avx512bw"),
            (self.avx512vl, "avx512vl"),
            (self.avx512vnni, "avx512vnni"),
            (self.avx512bf16, "avx512bf16"),
            (self.avx512vbmi, "avx512vbmi"),
            (self.neon, "neon"),
            (self.dotprod, "dotprod"),
            (self.i8mm, "i8mm"),
            (self.fp16, "fp16"),
        ];
        all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect()
    }
}

impl fmt::Display for CpuFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(" "))
        }
    }
}

/// The features of this CPU, detected on first use.
pub fn cpu_features() -> &'static CpuFeatures {
    static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
    FEATURES.get_or_init(CpuFeatures::detect)
}

/// The family of kernels in use. Chosen once per process by [`kernel_path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KernelPath {
    /// Portable Rust, no SIMD intrinsics: the reference every other path is tested
    /// against, and the fallback on CPUs without a supported SIMD extension.
    Scalar,
    /// x86_64 with AVX2, FMA and F16C (Haswell / Zen 1 and later).
    Avx2,
    /// x86_64 with AVX-512 F, BW and VL (plus AVX2, FMA, F16C), without VNNI.
    Avx512,
    /// x86_64 with AVX-512 F, BW, VL and VNNI (`vpdpbusd`): Ice Lake, Zen 4 and later.
    Avx512Vnni,
    /// aarch64 NEON (mandatory on aarch64) without the dot-product extension.
    Neon,
    /// aarch64 NEON with the dot-product extension (`sdot`/`udot`, Armv8.2-A+).
    NeonDotprod,
}

impl KernelPath {
    /// Every path, in the order of preference from slowest to fastest per architecture.
    pub const ALL: [KernelPath; 6] = [
        KernelPath::Scalar,
        KernelPath::Avx2,
        KernelPath::Avx512,
        KernelPath::Avx512Vnni,
        KernelPath::Neon,
        KernelPath::NeonDotprod,
    ];

    /// The name shown by `tern doctor` and accepted by `TERN_KERNELS`.
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
            KernelPath::Avx2 => "avx2",
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx512Vnni => "avx512-vnni",
            KernelPath::Neon => "neon",
            KernelPath::NeonDotprod => "neon-dotprod",
        }
    }

    /// The path named `name` (as [`KernelPath::name`] spells it), if any.
    pub fn from_name(name: &str) -> Option<KernelPath> {
        KernelPath::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether a CPU with `features` can run this path's kernels, in this build.
    pub fn is_supported_by(self, features: &CpuFeatures) -> bool {
        let avx2 = cfg!(target_arch = "x86_64") && features.avx2 && features.fma && features.f16c;
        let avx512 = avx2 && features.avx512f && features.avx512bw && features.avx512vl;
        let neon = cfg!(target_arch = "aarch64") && features.neon;
        match self {
            KernelPath::Scalar => true,
            KernelPath::Avx2 => avx2,
            KernelPath::Avx512 => avx512,
            KernelPath::Avx512Vnni => avx512 && features.avx512vnni,
            KernelPath::Neon => neon,
            KernelPath::NeonDotprod => neon && features.dotprod,
        }
    }
}

impl fmt::Display for KernelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The environment variable that overrides the kernel choice.
pub const KERNELS_ENV: &str = "TERN_KERNELS";

/// The kernel path used by this process: read `TERN_KERNELS` and detect the CPU once.
pub fn kernel_path() -> KernelPath {
    static PATH: OnceLock<KernelPath> = OnceLock::new();
    *PATH.get_or_init(|| {
        let requested = std::env::var(KERNELS_ENV).ok();
        let (path, warning) = choose_kernel_path(cpu_features(), requested.as_deref());
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        tracing::debug!(kernel_path = %path, features = %cpu_features(), "kernel path chosen");
        path
    })
}

/// The best path for `features` given the `TERN_KERNELS` value, and a warning to log
/// when the value was not understood. Pure, so it can be tested without touching the
/// process environment.
pub fn choose_kernel_path(
    features: &CpuFeatures,
    requested: Option<&str>,
) -> (KernelPath, Option<String>) {
    let best = best_path(features);
    match requested.map(str::trim) {
        None | Some("") | Some("auto") => (best, None),
        Some(name) => match KernelPath::from_name(name) {
            Some(path) if path.is_supported_by(features) => (path, None),
            Some(path) => (
                best,
                Some(format!(
                    "{KERNELS_ENV}={name:?}: this CPU or build cannot run the {path} kernels \
                     (CPU features: {features}); using {best}"
                )),
            ),
            None => {
                let known: Vec<&str> = KernelPath::ALL.iter().map(|p| p.name()).collect();
                (
                    best,
                    Some(format!(
                        "{KERNELS_ENV}={name:?} is not a known kernel path (expected \"auto\" \
                         or one of {}); using {best}",
                        known.join(", ")
                    )),
                )
            }
        },
    }
}

/// The fastest path this build has for `features`.
pub fn best_path(features: &CpuFeatures) -> KernelPath {
    KernelPath::ALL
        .into_iter()
        .rev()
        .find(|p| p.is_supported_by(features))
        .unwrap_or(KernelPath::Scalar)
}

/// The CPU's model name and core counts, as `tern doctor` and thread-count defaults
/// need them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    /// Marketing name (x86 `model name`), or for Arm the core type decoded from the
    /// implementer/part ids, or the board model. `None` when nothing says.
    pub model_name: Option<String>,
    /// Physical cores (distinct (package, core) pairs); equals `logical_cores` when the
    /// topology cannot be read.
    pub physical_cores: usize,
    /// Logical CPUs (hardware threads) online.
    pub logical_cores: usize,
    /// CPUs this process may run on (affinity / cgroup quota), from
    /// `std::thread::available_parallelism`.
    pub available_parallelism: usize,
}

/// The CPU description, read once from `/proc/cpuinfo` and sysfs (Linux); elsewhere only
/// the counts std knows.
pub fn cpu_info() -> &'static CpuInfo {
    static INFO: OnceLock<CpuInfo> = OnceLock::new();
    INFO.get_or_init(read_cpu_info)
}

fn read_cpu_info() -> CpuInfo {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let parsed = parse_proc_cpuinfo(&cpuinfo);
    let model_name = parsed.model_name.or_else(|| {
        std::fs::read_to_string("/sys/firmware/devicetree/base/model")
            .ok()
            .map(|s| s.trim_end_matches('\0').trim().to_string())
            .filter(|s| !s.is_empty())
    });
    let sysfs = read_sysfs_topology();
    let logical = sysfs
        .map(|(l, _)| l)
        .or((parsed.logical > 0).then_some(parsed.logical))
        .unwrap_or(available);
    let physical = sysfs
        .map(|(_, p)| p)
        .or(parsed.physical)
        .unwrap_or(logical)
        .clamp(1, logical.max(1));
    CpuInfo {
        model_name,
        physical_cores: physical,
        logical_cores: logical,
        available_parallelism: available,
    }
}

/// What `/proc/cpuinfo` says.
#[derive(Debug, Default, PartialEq, Eq)]
struct ProcCpuInfo {
    model_name: Option<String>,
    logical: usize,
    /// Distinct (physical id, core id) pairs, when the file lists them (x86).
    physical: Option<usize>,
}

fn parse_proc_cpuinfo(text: &str) -> ProcCpuInfo {
    let mut out = ProcCpuInfo::default();
    let mut cores = std::collections::BTreeSet::new();
    let mut package: Option<String> = None;
    let mut arm_implementer = None;
    let mut arm_part = None;
    let mut board_model = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            // Old Arm kernels also print a global "Processor : ..." line; count only the
            // numbered per-CPU entries.
            "processor" if value.parse::<u32>().is_ok() => out.logical += 1,
            "model name" if out.model_name.is_none() && !value.is_empty() => {
                out.model_name = Some(value.to_string());
            }
            "physical id" => package = Some(value.to_string()),
            "core id" => {
                cores.insert((package.clone().unwrap_or_default(), value.to_string()));
            }
            "CPU implementer" if arm_implementer.is_none() => {
                arm_implementer = parse_hex(value);
            }
            "CPU part" if arm_part.is_none() => arm_part = parse_hex(value),
            "Model" | "Hardware" if board_model.is_none() && !value.is_empty() => {
                board_model = Some(value.to_string());
            }
            _ => {}
        }
    }
    if !cores.is_empty() {
        out.physical = Some(cores.len());
    }
    if out.model_name.is_none() {
        let core = arm_implementer
            .zip(arm_part)
            .and_then(|(i, p)| arm_core_name(i, p));
        out.model_name = match (core, board_model) {
            (Some(c), Some(b)) => Some(format!("{b} ({c})")),
            (Some(c), None) => Some(c.to_string()),
            (None, b) => b,
        };
    }
    out
}

fn parse_hex(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// Names of common Arm cores by (implementer, part), as the Linux kernel's
/// `arch/arm64/include/asm/cputype.h` lists them. Only the ones edge boards use.
fn arm_core_name(implementer: u32, part: u32) -> Option<&'static str> {
    if implementer != 0x41 {
        return None;
    }
    Some(match part {
        0xd03 => "Cortex-A53",
        0xd04 => "Cortex-A35",
        0xd05 => "Cortex-A55",
        0xd07 => "Cortex-A57",
        0xd08 => "Cortex-A72",
        0xd09 => "Cortex-A73",
        0xd0a => "Cortex-A75",
        0xd0b => "Cortex-A76",
        0xd0c => "Neoverse-N1",
        0xd0d => "Cortex-A77",
        0xd40 => "Neoverse-V1",
        0xd41 => "Cortex-A78",
        0xd44 => "Cortex-X1",
        0xd46 => "Cortex-A510",
        0xd47 => "Cortex-A710",
        0xd48 => "Cortex-X2",
        0xd49 => "Neoverse-N2",
        0xd4d => "Cortex-A715",
        0xd4f => "Neoverse-V2",
        0xd80 => "Cortex-A520",
        0xd81 => "Cortex-A720",
        _ => return None,
    })
}

/// (logical, physical) from `/sys/devices/system/cpu/cpuN/topology`, counting online
/// CPUs and distinct (package, core) pairs. `None` when sysfs is not there.
fn read_sysfs_topology() -> Option<(usize, usize)> {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    let cpus = parse_cpu_list(&online)?;
    let mut cores = std::collections::BTreeSet::new();
    for cpu in &cpus {
        let dir = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let package = std::fs::read_to_string(format!("{dir}/physical_package_id")).ok()?;
        let core = std::fs::read_to_string(format!("{dir}/core_id")).ok()?;
        cores.insert((package.trim().to_string(), core.trim().to_string()));
    }
    (!cpus.is_empty()).then_some((cpus.len(), cores.len()))
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 65_536 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_override_is_understood() {
        let f = CpuFeatures::default();
        assert_eq!(choose_kernel_path(&f, None), (KernelPath::Scalar, None));
        assert_eq!(
            choose_kernel_path(&f, Some("auto")),
            (KernelPath::Scalar, None)
        );
        assert_eq!(
            choose_kernel_path(&f, Some(" scalar ")),
            (KernelPath::Scalar, None)
        );
        let (path, warning) = choose_kernel_path(&f, Some("avx9000"));
        assert_eq!(path, KernelPath::Scalar);
        let warning = warning.expect("unknown value must warn");
        assert!(warning.contains("\"avx9000\""), "{warning}");
        assert!(
            warning.contains("avx512-vnni"),
            "lists the known paths: {warning}"
        );
        assert_eq!(KernelPath::Scalar.to_string(), "scalar");
    }

    #[test]
    fn x86_paths_follow_the_features() {
        let avx2 = CpuFeatures {
            avx: true,
            avx2: true,
            fma: true,
            f16c: true,
            ..CpuFeatures::default()
        };
        let avx512 = CpuFeatures {
            avx512f: true,
            avx512bw: true,
            avx512vl: true,
            ..avx2
        };
        let vnni = CpuFeatures {
            avx512vnni: true,
            ..avx512
        };
        let on_x86 = |p: KernelPath| {
            if cfg!(target_arch = "x86_64") {
                p
            } else {
                KernelPath::Scalar
            }
        };
        assert_eq!(best_path(&avx2), on_x86(KernelPath::Avx2));
        assert_eq!(best_path(&avx512), on_x86(KernelPath::Avx512));
        assert_eq!(best_path(&vnni), on_x86(KernelPath::Avx512Vnni));
        // AVX2 without F16C (or FMA) is not enough for the AVX2 path.
        let no_f16c = CpuFeatures {
            f16c: false,
            ..avx2
        };
        assert_eq!(best_path(&no_f16c), KernelPath::Scalar);
        // AVX-512 F without BW is not the AVX-512 path (Knights Landing).
        let no_bw = CpuFeatures {
            avx512bw: false,
            ..vnni
        };
        assert_eq!(best_path(&no_bw), on_x86(KernelPath::Avx2));
        // Forcing: a slower path the CPU has is honoured; one it lacks warns.
        for name in ["avx2", "avx512", "scalar"] {
            let want = KernelPath::from_name(name).unwrap();
            let (path, warning) = choose_kernel_path(&vnni, Some(name));
            if want.is_supported_by(&vnni) {
                assert_eq!((path, warning), (want, None));
            }
        }
        let (path, warning) = choose_kernel_path(&avx2, Some("avx512-vnni"));
        assert_eq!(path, best_path(&avx2));
        assert!(
            warning
                .expect("must warn")
                .contains("cannot run the avx512-vnni")
        );
        for p in KernelPath::ALL {
            assert_eq!(KernelPath::from_name(p.name()), Some(p));
        }
    }

    #[test]
    fn detection_is_consistent() {
        let f = cpu_features();
        // Implications every real CPU satisfies; a mix-up of feature names breaks them.
        if f.avx2 {
            assert!(f.avx);
        }
        if f.avx512bw || f.avx512vl || f.avx512vnni {
            assert!(f.avx512f);
        }
        if f.dotprod || f.i8mm {
            assert!(f.neon);
        }
        #[cfg(target_arch = "aarch64")]
        assert!(f.neon, "NEON is mandatory on aarch64");
        assert!(!f.to_string().is_empty());
    }

    #[test]
    fn parses_x86_cpuinfo() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nphysical id\t: 0\n\
                    core id\t\t: 0\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n\
                    physical id\t: 0\ncore id\t\t: 0\n\nprocessor\t: 2\nphysical id\t: 0\n\
                    core id\t\t: 1\n\nprocessor\t: 3\nphysical id\t: 1\ncore id\t\t: 1\n";
        let p = parse_proc_cpuinfo(text);
        assert_eq!(p.model_name.as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(p.logical, 4);
        assert_eq!(p.physical, Some(3));
    }

    #[test]
    fn parses_arm_cpuinfo() {
        let text = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\n\
                    CPU part\t: 0xd0b\n\nprocessor\t: 1\nCPU implementer\t: 0x41\n\
                    CPU part\t: 0xd0b\n\nRevision\t: d04170\nModel\t\t: Raspberry Pi 5 Model B\n";
        let p = parse_proc_cpuinfo(text);
        assert_eq!(p.logical, 2);
        assert_eq!(p.physical, None);
        assert_eq!(
            p.model_name.as_deref(),
            Some("Raspberry Pi 5 Model B (Cortex-A76)")
        );
    }

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn this_machine_has_cores() {
        let info = cpu_info();
        assert!(info.logical_cores >= 1);
        assert!(info.physical_cores >= 1 && info.physical_cores <= info.logical_cores);
        assert!(info.available_parallelism >= 1);
    }
}
