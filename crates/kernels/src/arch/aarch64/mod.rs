//! The aarch64 kernel paths: NEON with the Armv8.2 dot product (`neon-dotprod`:
//! Cortex-A55/A76 and later — the Raspberry Pi 5) and plain Armv8.0 NEON (`neon`:
//! Cortex-A53/A72 — the Raspberry Pi 3/4 and many gateways).
//!
//! The kernels are written once, generic over the 8-bit dot product
//! ([`simd::I8Dot`]: `sdot`, or `smull` + `sadalp`), as `#[inline(always)] unsafe fn`s
//! without target features (the layout of memchr and of the x86_64 module).
//! [`path_kernels!`] stamps out one module per path whose entry points inline those
//! kernels: `#[target_feature(enable = "dotprod")]` functions for `neon-dotprod`, plain
//! functions for `neon` (NEON is part of the aarch64 baseline). The activation
//! quantizers and the elementwise ops need no dotprod, so both paths share one set of
//! them ([`common`]). Weight types without a NEON kernel here (BF16, Q2_K, Q3_K) use the
//! scalar ones.
//!
//! Which path runs is decided once per process from `is_aarch64_feature_detected!`
//! ([`crate::cpu_features`]); `TERN_KERNELS=neon` forces the fallback on a dotprod CPU
//! (so both are tested on a Pi 5), `TERN_KERNELS=scalar` the reference.
//!
//! Modules: [`simd`] (the dot product, f16 conversions, loads), [`quantize`] (activation
//! quantizers), [`dot32`] (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), [`dotk`] (Q4_K, Q5_K, Q6_K),
//! [`float`] (F32, F16), [`ops`] (RMSNorm, softmax, SiLU, f16 helpers), [`attention`]
//! (the KV-cache attention loops). The quantized
//! formats also have a matrix-vector kernel that takes weight rows in pairs (one load of
//! each activation block for two rows); the batched prompt matmul has no NEON kernel
//! yet and runs these per token over cache-sized tiles of rows.

mod attention;
mod dot32;
mod dotk;
mod float;
mod ops;
mod quantize;
mod simd;

use crate::arch::{OpTable, Table};
use crate::cpu::KernelPath;

/// Defines an entry point whose body calls the generic kernels. With `"dotprod"` it is a
/// safe `#[target_feature]` function: callable only where the CPU is known to have the
/// feature (through the `unsafe fn` pointers of a [`Table`] that `arch::table` checked),
/// which is all the inlined kernels require. With `"neon"` it is a plain function, NEON
/// being part of every aarch64 CPU this target runs on.
macro_rules! entry {
    ("dotprod"; fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:expr) => {
        #[target_feature(enable = "dotprod")]
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: this function is compiled with, and can only run on a CPU with,
            // the dot product the inlined kernel needs (see the macro's documentation);
            // the kernel checks its slice lengths itself.
            unsafe { $body }
        }
    };
    ("neon"; fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:expr) => {
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: the inlined kernel uses baseline NEON only (every aarch64 CPU);
            // it checks its slice lengths itself.
            unsafe { $body }
        }
    };
}

/// One path's dot-product entry points and its `weights` lookup.
macro_rules! path_kernels {
    ($features:tt, $dot:ty) => {
        use tern_gguf::GgmlType;

        use super::dot32::{self, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
        use super::dotk::{self, Q4K, Q5K, Q6K};
        use super::float;
        use crate::blocks::as_blocks;
        use crate::matmul::ActRow;
        use crate::quant::{DotFn, MatVecFn, RowKernels};

        entry!($features; fn dot_q4_0(w: &[u8], a: &[u8]) -> f32 =>
            dot32::dot_row::<Q4_0, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_q4_1(w: &[u8], a: &[u8]) -> f32 =>
            dot32::dot_row::<Q4_1, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_q5_0(w: &[u8], a: &[u8]) -> f32 =>
            dot32::dot_row::<Q5_0, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_q5_1(w: &[u8], a: &[u8]) -> f32 =>
            dot32::dot_row::<Q5_1, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_q8_0(w: &[u8], a: &[u8]) -> f32 =>
            dot32::dot_row::<Q8_0, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_q4_k(w: &[u8], a: &[u8]) -> f32 =>
            dotk::dot_row::<Q4K, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_q5_k(w: &[u8], a: &[u8]) -> f32 =>
            dotk::dot_row::<Q5K, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_q6_k(w: &[u8], a: &[u8]) -> f32 =>
            dotk::dot_row::<Q6K, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_f32(w: &[u8], a: &[u8]) -> f32 =>
            float::dot_f32_bytes(w, a));
        entry!($features; fn dot_f16(w: &[u8], a: &[u8]) -> f32 =>
            float::dot_f16_bytes(w, a));

        entry!($features; fn matvec_q4_0(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dot32::matvec::<Q4_0, $dot>(w, rb, a, out));
        entry!($features; fn matvec_q4_1(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dot32::matvec::<Q4_1, $dot>(w, rb, a, out));
        entry!($features; fn matvec_q5_0(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dot32::matvec::<Q5_0, $dot>(w, rb, a, out));
        entry!($features; fn matvec_q5_1(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dot32::matvec::<Q5_1, $dot>(w, rb, a, out));
        entry!($features; fn matvec_q8_0(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dot32::matvec::<Q8_0, $dot>(w, rb, a, out));
        entry!($features; fn dot_q4_k_batched(w: &[u8], a: &[u8]) -> f32 =>
            dotk::rows_q4_k::<$dot, 1, true>([as_blocks(w)], as_blocks(a))[0]);
        entry!($features; fn dot_q6_k_tiled(w: &[u8], a: &[u8]) -> f32 =>
            dotk::rows_q6_k::<$dot, 1, true>([as_blocks(w)], as_blocks(a))[0]);
        entry!($features; fn matvec_q4_k(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dotk::matvec::<Q4K, $dot>(w, rb, a, out));
        entry!($features; fn matvec_q5_k(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dotk::matvec::<Q5K, $dot>(w, rb, a, out));
        entry!($features; fn matvec_q6_k(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dotk::matvec::<Q6K, $dot>(w, rb, a, out));

        /// This path's kernels for weights of type `ty`; types it has no NEON kernel
        /// for get the scalar ones.
        pub(crate) fn weights(ty: GgmlType) -> Option<RowKernels> {
            let mut k = crate::quant::scalar_row_kernels(ty)?;
            let (dot, matvec): (DotFn, Option<MatVecFn>) = match ty {
                GgmlType::Q4_0 => (dot_q4_0, Some(matvec_q4_0)),
                GgmlType::Q4_1 => (dot_q4_1, Some(matvec_q4_1)),
                GgmlType::Q5_0 => (dot_q5_0, Some(matvec_q5_0)),
                GgmlType::Q5_1 => (dot_q5_1, Some(matvec_q5_1)),
                GgmlType::Q8_0 => (dot_q8_0, Some(matvec_q8_0)),
                GgmlType::Q4_K => (dot_q4_k, Some(matvec_q4_k)),
                GgmlType::Q5_K => (dot_q5_k, Some(matvec_q5_k)),
                GgmlType::Q6_K => (dot_q6_k, Some(matvec_q6_k)),
                GgmlType::F32 => (dot_f32, None),
                GgmlType::F16 => (dot_f16, None),
                _ => return Some(k),
            };
            k.dot = dot;
            k.matvec = matvec;
            let batch_dot: Option<DotFn> = match ty {
                GgmlType::Q4_K => Some(dot_q4_k_batched),
                GgmlType::Q6_K => Some(dot_q6_k_tiled),
                _ => None,
            };
            // The split (which tokens) is the scalar table's; only the kernel changes.
            if let (Some(order), Some(dot)) = (k.batch_order.as_mut(), batch_dot) {
                order.dot = dot;
            }
            Some(k)
        }
    };
}

/// Armv8.2 NEON with the dot product (`sdot`).
pub(crate) mod dotprod {
    path_kernels!("dotprod", super::simd::Sdot);
}

/// Armv8.0 NEON (`smull` + `sadalp` for the 8-bit dot products).
pub(crate) mod neon {
    path_kernels!("neon", super::simd::Widen);
}

/// The entry points both paths share: the activation quantizers and the elementwise ops
/// (baseline NEON).
pub(crate) mod common {
    use half::f16;

    use super::{ops, quantize};

    entry!("neon"; fn quantize_q8_0(x: &[f32], out: &mut [u8]) =>
        quantize::quantize_q8_0(x, out));
    entry!("neon"; fn quantize_q8_1(x: &[f32], out: &mut [u8]) =>
        quantize::quantize_q8_1(x, out));
    entry!("neon"; fn quantize_q8_k(x: &[f32], out: &mut [u8]) =>
        quantize::quantize_q8_k(x, out));

    entry!("neon"; fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) =>
        ops::rms_norm(x, weight, eps, out));
    entry!("neon"; fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) =>
        ops::rms_norm_in_place(x, weight, eps));
    entry!("neon"; fn softmax_in_place(x: &mut [f32]) => ops::softmax_in_place(x));
    entry!("neon"; fn silu(x: &[f32], out: &mut [f32]) => ops::silu(x, out));
    entry!("neon"; fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) =>
        ops::swiglu(gate, up, out));
    entry!("neon"; fn vec_dot_f16(a: &[f16], b: &[f16]) -> f32 => ops::vec_dot_f16(a, b));
    entry!("neon"; fn vec_dot_f16_ggml(a: &[f16], b: &[f16]) -> f32 =>
        super::float::dot_f16_ggml(a, b));
    entry!("neon"; fn vec_mad_f16(y: &mut [f16], x: &[f16], v: f32) =>
        ops::vec_mad_f16(y, x, v));
    entry!("neon"; fn vec_scale_f16(y: &mut [f16], v: f32) => ops::vec_scale_f16(y, v));
    entry!("neon"; fn f32_to_f16(src: &[f32], dst: &mut [f16]) => ops::f32_to_f16(src, dst));
    entry!("neon"; fn f16_to_f32(src: &[f16], dst: &mut [f32]) => ops::f16_to_f32(src, dst));

    entry!("neon"; fn attention_scores_f32(q: &[f32], k: &[f16], ks: usize, n: usize, scale: f32, out: &mut [f32]) =>
        super::attention::scores_f32(q, k, ks, n, scale, out));
    entry!("neon"; fn attention_accumulate_f32(acc: &mut [f32], v: &[f16], vs: usize, w: &[f32]) =>
        super::attention::accumulate_f32(acc, v, vs, w));
    entry!("neon"; fn attention_scores_f16(q: &[f16], k: &[f16], ks: usize, n: usize, scale: f32, out: &mut [f32]) =>
        super::attention::scores_f16(q, k, ks, n, scale, out));
    entry!("neon"; fn attention_accumulate_f16(acc: &mut [f16], v: &[f16], vs: usize, w: &[f32], r: &[f32]) =>
        super::attention::accumulate_f16(acc, v, vs, w, r));
    entry!("neon"; fn attention_accumulate_q8_0(acc: &mut [f32], v: &[u8], vs: usize, w: &[f32], r: &[f32]) =>
        super::attention::accumulate_quantized::<super::attention::Q8Values>(acc, v, vs, w, r));
    entry!("neon"; fn attention_accumulate_q4_0(acc: &mut [f32], v: &[u8], vs: usize, w: &[f32], r: &[f32]) =>
        super::attention::accumulate_quantized::<super::attention::Q4Values>(acc, v, vs, w, r));
}

/// The attention kernels of both paths (baseline NEON).
static ATTENTION: crate::attention::AttentionTable = crate::attention::AttentionTable {
    scores_f32: common::attention_scores_f32,
    accumulate_f32: common::attention_accumulate_f32,
    scores_f16: common::attention_scores_f16,
    accumulate_f16: common::attention_accumulate_f16,
    accumulate_q8_0: common::attention_accumulate_q8_0,
    accumulate_q4_0: common::attention_accumulate_q4_0,
    // Plain code: fused multiply-adds are in the aarch64 baseline.
    softmax_tile: crate::attention::softmax_tile_generic,
};

/// The elementwise ops of both paths. GELU goes through ggml's f16 table, which is
/// already a lookup per value: the scalar version is the NEON one.
static OPS: OpTable = OpTable {
    rms_norm: common::rms_norm,
    rms_norm_in_place: common::rms_norm_in_place,
    softmax_in_place: common::softmax_in_place,
    silu: common::silu,
    swiglu: common::swiglu,
    gelu_tanh: crate::ops::gelu_tanh_ref,
    geglu_tanh: crate::ops::geglu_tanh_ref,
    vec_dot_f16: common::vec_dot_f16,
    vec_dot_f16_ggml: common::vec_dot_f16_ggml,
    vec_mad_f16: common::vec_mad_f16,
    vec_scale_f16: common::vec_scale_f16,
    f32_to_f16: common::f32_to_f16,
    f16_to_f32: common::f16_to_f32,
};

fn no_extras() -> &'static str {
    ""
}

static NEON_DOTPROD: Table = Table {
    path: KernelPath::NeonDotprod,
    weights: dotprod::weights,
    quantize_q8_0: common::quantize_q8_0,
    quantize_q8_1: common::quantize_q8_1,
    quantize_q8_k: common::quantize_q8_k,
    ops: OPS,
    attention: ATTENTION,
    extras: no_extras,
};

static NEON: Table = Table {
    path: KernelPath::Neon,
    weights: neon::weights,
    quantize_q8_0: common::quantize_q8_0,
    quantize_q8_1: common::quantize_q8_1,
    quantize_q8_k: common::quantize_q8_k,
    ops: OPS,
    attention: ATTENTION,
    extras: no_extras,
};

/// The table of an aarch64 path. The caller (`arch::table`) has checked that the CPU
/// supports it.
pub(crate) fn table(path: KernelPath) -> Option<&'static Table> {
    match path {
        KernelPath::NeonDotprod => Some(&NEON_DOTPROD),
        KernelPath::Neon => Some(&NEON),
        _ => None,
    }
}
