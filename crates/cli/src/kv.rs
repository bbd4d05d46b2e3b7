//! The KV cache as the commands that run a model see it: the `--kv-type` flag (run, chat,
//! bench, perplexity, serve) and the memory check made before a cache is allocated.
//!
//! The cache's size is known from the model's header before anything is allocated
//! (`tern_engine::KvCacheSpec::bytes`): it is printed first, and a cache larger than the
//! memory the machine has free (the runtime's default budget: available memory, capped
//! by the cgroup, minus a safety margin) is refused with the numbers and the
//! alternatives — the quantized types and the largest context that fits — instead of
//! being allocated and swapping or being killed.

use anyhow::bail;
use tern_engine::{KvCacheSpec, KvType};
use tern_runtime::budget::{MachineMemory, format_bytes};

use crate::cli::GlobalArgs;
use crate::output;

/// `--kv-type`: llama.cpp's cache type names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KvTypeArg {
    /// Half precision (llama.cpp's default)
    #[default]
    F16,
    /// 8-bit blocks: about half of F16's memory, perplexity within a fraction of a percent
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit blocks: about a quarter of F16's memory, a visible quality loss
    #[value(name = "q4_0")]
    Q4_0,
}

impl KvTypeArg {
    /// The engine's type.
    pub fn engine(self) -> KvType {
        match self {
            KvTypeArg::F16 => KvType::F16,
            KvTypeArg::Q8_0 => KvType::Q8_0,
            KvTypeArg::Q4_0 => KvType::Q4_0,
        }
    }
}

/// Prints the size of the cache `spec` describes and refuses it when it does not fit the
/// memory this machine has free.
pub fn check_memory(global: &GlobalArgs, spec: &KvCacheSpec) -> anyhow::Result<()> {
    let free = MachineMemory::read().map(|m| m.default_budget());
    check_against(global, spec, free)
}

/// [`check_memory`] against `free` bytes (`None`: unknown, nothing refused).
pub fn check_against(
    global: &GlobalArgs,
    spec: &KvCacheSpec,
    free: Option<u64>,
) -> anyhow::Result<()> {
    let bytes = spec.bytes();
    output::say(global, format!("KV cache: {}", describe(spec, bytes)));
    let Some(free) = free else { return Ok(()) };
    if bytes <= free {
        return Ok(());
    }
    let alternatives: Vec<String> = KvType::ALL
        .into_iter()
        .filter(|&t| t != spec.kv_type)
        .map(|t| {
            let other = KvCacheSpec {
                kv_type: t,
                ..spec.clone()
            };
            let b = other.bytes();
            let fits = if b <= free { "fits" } else { "does not fit" };
            format!("--kv-type {t} needs {} ({fits})", format_bytes(b))
        })
        .collect();
    let largest = largest_context(spec, free);
    bail!(
        "the KV cache needs {} but only {} of memory is free\n\
         help: {}; --ctx-size {largest} fits with --kv-type {}",
        describe(spec, bytes),
        format_bytes(free),
        alternatives.join(", "),
        spec.kv_type
    );
}

/// `180.0 MiB (f16, 8192 positions × 1 sequence)`.
fn describe(spec: &KvCacheSpec, bytes: u64) -> String {
    let windowed = spec
        .layers
        .iter()
        .filter(|l| spec.positions(l) < spec.capacity)
        .count();
    let sequences = if spec.n_seq == 1 {
        "1 sequence".to_string()
    } else {
        format!("{} sequences", spec.n_seq)
    };
    let rings = if windowed > 0 {
        format!(
            "; {windowed} of {} layers keep only their sliding window",
            spec.layers.len()
        )
    } else {
        String::new()
    };
    format!(
        "{} ({}, {} positions × {sequences}{rings})",
        format_bytes(bytes),
        spec.kv_type,
        spec.capacity
    )
}

/// The largest context whose cache fits in `free` bytes (0 when none does).
fn largest_context(spec: &KvCacheSpec, free: u64) -> usize {
    let fits = |capacity: usize| {
        KvCacheSpec {
            capacity,
            ..spec.clone()
        }
        .bytes()
            <= free
    };
    let (mut low, mut high) = (0usize, spec.capacity);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if fits(mid) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    low
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_engine::KvLayerSpec;

    fn spec(capacity: usize) -> KvCacheSpec {
        let layer = |window| KvLayerSpec {
            kv_dim: 256,
            head_dim: 256,
            window,
        };
        KvCacheSpec {
            kv_type: KvType::F16,
            layers: vec![layer(Some(512)), layer(None)],
            n_seq: 1,
            capacity,
            max_batch: 512,
        }
    }

    fn global() -> GlobalArgs {
        GlobalArgs {
            json: false,
            quiet: true,
            verbose: 0,
        }
    }

    #[test]
    fn a_cache_that_does_not_fit_is_refused_with_the_numbers() {
        let big = spec(32768);
        // Global layer: 32768 × 256 × 2 × 2; windowed: 1024 × 256 × 2 × 2.
        assert_eq!(big.bytes(), (32768 + 1024) * 1024);
        check_against(&global(), &big, Some(big.bytes())).unwrap();
        let err = check_against(&global(), &big, Some(20 << 20))
            .unwrap_err()
            .to_string();
        assert!(err.contains("33.0 MiB (f16, 32768 positions"), "{err}");
        assert!(
            err.contains("1 of 2 layers keep only their sliding window"),
            "{err}"
        );
        assert!(err.contains("only 20.0 MiB"), "{err}");
        assert!(
            err.contains("--kv-type q8_0 needs 17.5 MiB (fits)")
                && err.contains("--kv-type q4_0 needs 9.3 MiB (fits)"),
            "{err}"
        );
        // (20 MiB - 1024 KiB of the ring) / 1 KiB per position.
        assert!(err.contains("--ctx-size 19456 fits"), "{err}");
        assert!(check_against(&global(), &big, None).is_ok());
    }
}
