//! `tern doctor`: what this machine offers tern — CPU features and cores, memory and the
//! cgroup limit, the store, the Python that `pip:` references use, and the kernel path
//! tern will run.
//!
//! `--json` prints [`Report`], a documented contract (docs/CLI.md) locked by a test.

use std::process::Command;

use serde::Serialize;
use tern_kernels::{CpuFeatures, cpu_features, cpu_info, kernel_path};
use tern_store::StoreConfig;

use crate::cli::GlobalArgs;
use crate::model::open_store;
use crate::output;
use crate::system;

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tern_version: String,
    pub os: String,
    pub arch: String,
    pub cpu: CpuReport,
    /// The kernel family tern uses (`TERN_KERNELS` overrides).
    pub kernel_path: String,
    pub memory: MemoryReport,
    pub store: StoreReport,
    pub python: PythonReport,
}

#[derive(Debug, Serialize)]
pub struct CpuReport {
    pub model: Option<String>,
    pub physical_cores: usize,
    pub logical_cores: usize,
    /// CPUs this process may use (affinity, cgroup quota).
    pub available_parallelism: usize,
    pub features: Features,
}

/// The SIMD features tern's kernels care about; `false` for the other architecture's.
#[derive(Debug, Serialize)]
pub struct Features {
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    pub avx512vnni: bool,
    pub avx512bf16: bool,
    pub neon: bool,
    pub dotprod: bool,
    pub i8mm: bool,
}

impl Features {
    fn new(f: &CpuFeatures) -> Features {
        Features {
            avx2: f.avx2,
            fma: f.fma,
            f16c: f.f16c,
            avx512f: f.avx512f,
            avx512bw: f.avx512bw,
            avx512vl: f.avx512vl,
            avx512vnni: f.avx512vnni,
            avx512bf16: f.avx512bf16,
            neon: f.neon,
            dotprod: f.dotprod,
            i8mm: f.i8mm,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct MemoryReport {
    pub total_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    /// The cgroup memory limit; `null` when there is none.
    pub cgroup_limit_bytes: Option<u64>,
    /// `v2`, `v1`, or `null` when no cgroup memory controller was found.
    pub cgroup_version: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StoreReport {
    pub path: String,
    pub blobs_bytes: u64,
    /// Partial downloads waiting to be resumed.
    pub partial_bytes: u64,
    /// `name:tag` of every installed model.
    pub models: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PythonReport {
    /// The interpreter `pip:` references run (`TERN_PYTHON`, default `python3`).
    pub command: String,
    /// `pip --version` output, or `null` when pip cannot run.
    pub pip: Option<String>,
}

pub fn run(_args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = open_store()?;
    let config: &StoreConfig = store.config();
    let info = cpu_info();
    let memory = system::memory();
    let usage = store.usage();
    let report = Report {
        tern_version: env!("CARGO_PKG_VERSION").to_string(),
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        cpu: CpuReport {
            model: info.model_name.clone(),
            physical_cores: info.physical_cores,
            logical_cores: info.logical_cores,
            available_parallelism: info.available_parallelism,
            features: Features::new(cpu_features()),
        },
        kernel_path: kernel_path().name().to_string(),
        memory: MemoryReport {
            total_bytes: memory.total,
            available_bytes: memory.available,
            cgroup_limit_bytes: memory.cgroup_limit,
            cgroup_version: memory.cgroup_version.map(str::to_string),
        },
        store: StoreReport {
            path: store.home().display().to_string(),
            blobs_bytes: usage.blobs,
            partial_bytes: usage.partial,
            models: store
                .list()?
                .iter()
                .map(|i| i.manifest.reference())
                .collect(),
        },
        python: PythonReport {
            command: config.python.to_string_lossy().into_owned(),
            pip: pip_version(config),
        },
    };
    if global.json {
        output::print_json(&report)?;
    } else {
        output::say(global, human(&report, cpu_features()));
    }
    Ok(())
}

fn pip_version(config: &StoreConfig) -> Option<String> {
    let out = Command::new(&config.python)
        .args(["-m", "pip", "--version"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn human(r: &Report, features: &CpuFeatures) -> String {
    let bytes = |v: Option<u64>| v.map_or_else(|| "unknown".into(), output::bytes);
    let limit = match (&r.memory.cgroup_version, r.memory.cgroup_limit_bytes) {
        (Some(version), Some(limit)) => format!("{} (cgroup {version})", output::bytes(limit)),
        (Some(version), None) => format!("none (cgroup {version})"),
        (None, _) => "none".into(),
    };
    let models = if r.store.models.is_empty() {
        "none".into()
    } else {
        r.store.models.join(", ")
    };
    let rows = [
        ("tern", format!("{} ({}/{})", r.tern_version, r.os, r.arch)),
        (
            "cpu",
            r.cpu
                .model
                .clone()
                .unwrap_or_else(|| "unknown model".into()),
        ),
        (
            "cores",
            format!(
                "{} physical, {} logical, {} usable",
                r.cpu.physical_cores, r.cpu.logical_cores, r.cpu.available_parallelism
            ),
        ),
        ("features", features.to_string()),
        ("kernels", r.kernel_path.clone()),
        (
            "memory",
            format!(
                "{} total, {} available",
                bytes(r.memory.total_bytes),
                bytes(r.memory.available_bytes)
            ),
        ),
        ("memory limit", limit),
        (
            "store",
            format!(
                "{} ({} in models, {} in partial downloads)",
                r.store.path,
                output::bytes(r.store.blobs_bytes),
                output::bytes(r.store.partial_bytes)
            ),
        ),
        ("models", models),
        (
            "python",
            match &r.python.pip {
                Some(pip) => format!("{}: {pip}", r.python.command),
                None => format!(
                    "{}: pip not available (pip: references will fail)",
                    r.python.command
                ),
            },
        ),
    ];
    rows.iter()
        .map(|(k, v)| format!("{k:<13} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}
