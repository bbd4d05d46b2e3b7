//! The x86_64 kernel paths: AVX2 (+FMA, F16C), AVX-512 (F/BW/VL) and AVX-512 with VNNI.
//!
//! The kernels are written once, generic over the 8-bit dot product ([`simd::I8Dot`]:
//! `vpmaddubsw`+`vpmaddwd` or VNNI's `vpdpbusd`), as `#[inline(always)] unsafe fn`s
//! without target features (memchr's layout). [`path_kernels!`] then stamps out one
//! module per path whose entry points are `#[target_feature]` functions that inline
//! those kernels, so each path's machine code uses its own instructions (and AVX-512
//! paths get EVEX encodings and 32 registers even in 256-bit code), and builds that
//! path's [`Table`].
//!
//! Modules: [`simd`] (shared 256-bit helpers), [`quantize`] (activation quantizers),
//! [`dot32`] (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), [`dotk`] (Q2_K … Q6_K), [`float`] (F32, F16,
//! BF16), [`gemm`] (batched matmul for prompts), [`ops`] (elementwise ops),
//! [`attention`] (the KV-cache attention loops).

mod attention;
mod dot32;
mod dotk;
mod float;
mod gemm;
mod gemm32;
mod gemmk;
mod ops;
mod pack;
mod quantize;
mod simd;

use crate::arch::Table;
use crate::cpu::KernelPath;

/// Defines a safe `#[target_feature]` entry point whose body calls the generic
/// kernels. Being a safe `#[target_feature]` function, it can only be called where the
/// CPU is known to have the features (directly from code compiled with them, or through
/// the `unsafe fn` pointers of a [`Table`] that `arch::table` checked), which is all the
/// inlined kernels require.
macro_rules! entry {
    ($features:literal; fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:expr) => {
        #[target_feature(enable = $features)]
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: this function is compiled with, and can only run on a CPU with,
            // the features the inlined kernel needs (see the macro's documentation);
            // the kernel checks its slice lengths itself.
            unsafe { $body }
        }
    };
}

/// One path's entry points and its `weights` lookup.
macro_rules! path_kernels {
    ($features:literal, $dot:ty, $gemm:ty, $t:literal, $tk:literal, $t32:literal, $q8_gemm:literal, $exp:ty) => {
        use std::ops::Range;

        use tern_gguf::GgmlType;

        use super::gemm;
        use super::pack::{P3K, P4_0, P4_1, P5_0, P5_1, P5K, P8_0};
        use crate::matmul::{GemmActivations, GemmFn, GemmOut, WeightMatrix};

        use super::dot32::{self, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
        use super::dotk::{self, Q2K, Q3K, Q4K, Q5K, Q6K};
        use crate::matmul::ActRow;
        use super::quantize;
        use crate::blocks::as_blocks;
        use crate::quant::RowKernels;

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

        entry!($features; fn dot_q2_k(w: &[u8], a: &[u8]) -> f32 =>
            dotk::dot_row::<Q2K, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_q3_k(w: &[u8], a: &[u8]) -> f32 =>
            dotk::dot_row::<Q3K, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_q4_k(w: &[u8], a: &[u8]) -> f32 =>
            dotk::dot_row::<Q4K, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_q5_k(w: &[u8], a: &[u8]) -> f32 =>
            dotk::dot_row::<Q5K, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_q6_k(w: &[u8], a: &[u8]) -> f32 =>
            dotk::dot_row::<Q6K, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn dot_q6_k_tiled(w: &[u8], a: &[u8]) -> f32 =>
            dotk::dot_row_tiled::<Q6K, $dot>(as_blocks(w), as_blocks(a)));
        entry!($features; fn matvec_q2_k(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dotk::matvec::<Q2K, $dot>(w, rb, a.bytes, out));
        entry!($features; fn matvec_q3_k(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dotk::matvec::<Q3K, $dot>(w, rb, a.bytes, out));
        entry!($features; fn matvec_q4_k(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dotk::matvec::<Q4K, $dot>(w, rb, a.bytes, out));
        entry!($features; fn matvec_q5_k(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dotk::matvec::<Q5K, $dot>(w, rb, a.bytes, out));
        entry!($features; fn matvec_q6_k(w: &[u8], rb: usize, a: &ActRow<'_>, out: &mut [f32]) =>
            dotk::matvec::<Q6K, $dot>(w, rb, a.bytes, out));

        entry!($features; fn dot_f32(w: &[u8], a: &[u8]) -> f32 => super::float::dot_f32(w, a));
        entry!($features; fn dot_f16(w: &[u8], a: &[u8]) -> f32 => super::float::dot_f16(w, a));
        entry!($features; fn dot_bf16(w: &[u8], a: &[u8]) -> f32 => super::float::dot_bf16(w, a));

        entry!($features; fn gemm_q4_0(w: &WeightMatrix<'_>, r: Range<usize>, a: &GemmActivations<'_>, o: &GemmOut) =>
            super::gemm32::gemm::<$gemm, P4_0, $t32>(w, r, a, o));
        entry!($features; fn gemm_q4_1(w: &WeightMatrix<'_>, r: Range<usize>, a: &GemmActivations<'_>, o: &GemmOut) =>
            super::gemm32::gemm::<$gemm, P4_1, $t32>(w, r, a, o));
        entry!($features; fn gemm_q5_0(w: &WeightMatrix<'_>, r: Range<usize>, a: &GemmActivations<'_>, o: &GemmOut) =>
            super::gemm32::gemm::<$gemm, P5_0, $t32>(w, r, a, o));
        entry!($features; fn gemm_q5_1(w: &WeightMatrix<'_>, r: Range<usize>, a: &GemmActivations<'_>, o: &GemmOut) =>
            super::gemm32::gemm::<$gemm, P5_1, $t32>(w, r, a, o));
        entry!($features; fn gemm_q8_0(w: &WeightMatrix<'_>, r: Range<usize>, a: &GemmActivations<'_>, o: &GemmOut) =>
            super::gemm32::gemm::<$gemm, P8_0, $t32>(w, r, a, o));
        entry!($features; fn gemm_q3_k(w: &WeightMatrix<'_>, r: Range<usize>, a: &GemmActivations<'_>, o: &GemmOut) =>
            gemm::gemm::<$gemm, P3K, $t>(w, r, a, o));
        entry!($features; fn gemm_q4_k(w: &WeightMatrix<'_>, r: Range<usize>, a: &GemmActivations<'_>, o: &GemmOut) =>
            super::gemmk::gemm_q4_k::<$gemm, $tk>(w, r, a, o));
        entry!($features; fn gemm_q5_k(w: &WeightMatrix<'_>, r: Range<usize>, a: &GemmActivations<'_>, o: &GemmOut) =>
            gemm::gemm::<$gemm, P5K, $t>(w, r, a, o));

        entry!($features; fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) =>
            super::ops::rms_norm(x, w, eps, out));
        entry!($features; fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) =>
            super::ops::rms_norm_in_place(x, w, eps));
        entry!($features; fn softmax_in_place(x: &mut [f32]) =>
            super::ops::softmax_in_place::<$exp>(x));
        entry!($features; fn silu(x: &[f32], out: &mut [f32]) => super::ops::silu::<$exp>(x, out));
        entry!($features; fn swiglu(g: &[f32], u: &[f32], out: &mut [f32]) =>
            super::ops::swiglu::<$exp>(g, u, out));
        entry!($features; fn gelu_tanh(x: &[f32], out: &mut [f32]) => super::ops::gelu_tanh(x, out));
        entry!($features; fn geglu_tanh(g: &[f32], u: &[f32], out: &mut [f32]) =>
            super::ops::geglu_tanh(g, u, out));
        entry!($features; fn vec_dot_f16(a: &[half::f16], b: &[half::f16]) -> f32 =>
            super::ops::vec_dot_f16(a, b));
        entry!($features; fn vec_dot_f16_ggml(a: &[half::f16], b: &[half::f16]) -> f32 =>
            super::ops::vec_dot_f16_ggml(a, b));
        entry!($features; fn vec_mad_f16(y: &mut [half::f16], x: &[half::f16], v: f32) =>
            super::ops::vec_mad_f16(y, x, v));
        entry!($features; fn vec_scale_f16(y: &mut [half::f16], v: f32) =>
            super::ops::vec_scale_f16(y, v));
        entry!($features; fn f32_to_f16(x: &[f32], y: &mut [half::f16]) => super::ops::f32_to_f16(x, y));
        entry!($features; fn f16_to_f32(x: &[half::f16], y: &mut [f32]) => super::ops::f16_to_f32(x, y));

        /// This path's elementwise ops.
        pub(crate) static OPS: crate::arch::OpTable = crate::arch::OpTable {
            rms_norm,
            rms_norm_in_place,
            softmax_in_place,
            silu,
            swiglu,
            gelu_tanh,
            geglu_tanh,
            vec_dot_f16,
            vec_dot_f16_ggml,
            vec_mad_f16,
            vec_scale_f16,
            f32_to_f16,
            f16_to_f32,
        };

        entry!($features; fn attention_scores_f32(q: &[f32], k: &[half::f16], ks: usize, n: usize, scale: f32, out: &mut [f32]) =>
            super::attention::scores_f32(q, k, ks, n, scale, out));
        entry!($features; fn attention_accumulate_f32(acc: &mut [f32], v: &[half::f16], vs: usize, w: &[f32]) =>
            super::attention::accumulate_f32(acc, v, vs, w));
        entry!($features; fn attention_scores_f16(q: &[half::f16], k: &[half::f16], ks: usize, n: usize, scale: f32, out: &mut [f32]) =>
            super::attention::scores_f16(q, k, ks, n, scale, out));
        entry!($features; fn attention_accumulate_f16(acc: &mut [half::f16], v: &[half::f16], vs: usize, w: &[f32], r: &[f32]) =>
            super::attention::accumulate_f16(acc, v, vs, w, r));
        entry!($features; fn attention_accumulate_q8_0(acc: &mut [f32], v: &[u8], vs: usize, w: &[f32], r: &[f32]) =>
            super::attention::accumulate_quantized::<super::attention::Q8Values>(acc, v, vs, w, r));
        entry!($features; fn attention_accumulate_q4_0(acc: &mut [f32], v: &[u8], vs: usize, w: &[f32], r: &[f32]) =>
            super::attention::accumulate_quantized::<super::attention::Q4Values>(acc, v, vs, w, r));

        /// [`crate::attention::softmax_tile_generic`] compiled with this path's
        /// features (its fused multiply-adds in hardware instead of library calls).
        #[target_feature(enable = $features)]
        fn attention_softmax_tile(
            s: &[f32; crate::attention::SOFTMAX_TILE],
            max: f32,
            w: &mut [f32; crate::attention::SOFTMAX_TILE],
        ) -> f64 {
            crate::attention::softmax_tile_generic(s, max, w)
        }

        /// This path's attention kernels.
        pub(crate) static ATTENTION: crate::attention::AttentionTable =
            crate::attention::AttentionTable {
                scores_f32: attention_scores_f32,
                accumulate_f32: attention_accumulate_f32,
                scores_f16: attention_scores_f16,
                accumulate_f16: attention_accumulate_f16,
                accumulate_q8_0: attention_accumulate_q8_0,
                accumulate_q4_0: attention_accumulate_q4_0,
                softmax_tile: attention_softmax_tile,
            };

        entry!($features; fn quantize_q8_0(x: &[f32], out: &mut [u8]) =>
            quantize::quantize_q8_0(x, out));
        entry!($features; fn quantize_q8_1(x: &[f32], out: &mut [u8]) =>
            quantize::quantize_q8_1(x, out));
        entry!($features; fn quantize_q8_k(x: &[f32], out: &mut [u8]) =>
            quantize::quantize_q8_k(x, out));

        /// This path's kernels for weights of type `ty`; types it has no SIMD kernel
        /// for get the scalar ones.
        pub(crate) fn weights(ty: GgmlType) -> Option<RowKernels> {
            let mut k = crate::quant::scalar_row_kernels(ty)?;
            let float: Option<crate::quant::DotFn> = match ty {
                GgmlType::F32 => Some(dot_f32),
                GgmlType::F16 => Some(dot_f16),
                GgmlType::BF16 => Some(bf16_dot()),
                _ => None,
            };
            if let Some(dot) = float {
                k.dot = dot;
                return Some(k);
            }
            // Q8_0 panels hold `w + 128`, exact only with VNNI's 32-bit sums.
            let q8_gemm: Option<GemmFn> = if $q8_gemm { Some(gemm_q8_0) } else { None };
            let (dot, matvec, gemm): (crate::quant::DotFn, crate::quant::MatVecFn, Option<GemmFn>) =
                match ty {
                    GgmlType::Q4_0 => (dot_q4_0, matvec_q4_0, Some(gemm_q4_0)),
                    GgmlType::Q4_1 => (dot_q4_1, matvec_q4_1, Some(gemm_q4_1)),
                    GgmlType::Q5_0 => (dot_q5_0, matvec_q5_0, Some(gemm_q5_0)),
                    GgmlType::Q5_1 => (dot_q5_1, matvec_q5_1, Some(gemm_q5_1)),
                    GgmlType::Q8_0 => (dot_q8_0, matvec_q8_0, q8_gemm),
                    GgmlType::Q2_K => (dot_q2_k, matvec_q2_k, None),
                    GgmlType::Q3_K => (dot_q3_k, matvec_q3_k, Some(gemm_q3_k)),
                    GgmlType::Q4_K => (dot_q4_k, matvec_q4_k, Some(gemm_q4_k)),
                    GgmlType::Q5_K => (dot_q5_k, matvec_q5_k, Some(gemm_q5_k)),
                    // No batched kernel: every token through `dot`'s or the tiled
                    // order (`batch_order`, below).
                    GgmlType::Q6_K => (dot_q6_k, matvec_q6_k, None),
                    _ => return Some(k),
                };
            k.dot = dot;
            k.matvec = Some(matvec);
            k.gemm = gemm;
            if ty == GgmlType::Q6_K {
                k.batch_order = Some(crate::quant::BatchOrder {
                    dot: dot_q6_k_tiled,
                    split: crate::quant::BatchSplit::Tiled,
                });
            }
            Some(k)
        }
    };
}

/// AVX2 + FMA + F16C.
pub(crate) mod avx2 {
    path_kernels!(
        "avx2,fma,f16c",
        super::simd::Avx2,
        gemm::Ymm,
        4,
        2,
        1,
        false,
        super::ops::ExpAvx2
    );

    fn bf16_dot() -> crate::quant::DotFn {
        dot_bf16
    }
}

/// The BF16 dot product of the AVX-512 paths: `vdpbf16ps` where the CPU has AVX-512
/// BF16 (checked once, at table lookup), the 256-bit kernel otherwise.
macro_rules! avx512_bf16 {
    ($features:literal) => {
        #[target_feature(enable = $features)]
        fn dot_bf16_dpbf16(w: &[u8], a: &[u8]) -> f32 {
            // SAFETY: this function is compiled with, and can only run on a CPU with,
            // the features the kernel needs, AVX-512 BF16 included (see `entry!`).
            unsafe { super::float::dot_bf16_dpbf16(w, a) }
        }

        fn bf16_dot() -> crate::quant::DotFn {
            if crate::cpu::cpu_features().avx512bf16 {
                dot_bf16_dpbf16
            } else {
                dot_bf16
            }
        }
    };
}

/// AVX-512 F/BW/VL without VNNI.
pub(crate) mod avx512 {
    path_kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl",
        super::simd::Avx512,
        gemm::Zmm,
        8,
        4,
        2,
        false,
        super::ops::ExpAvx512
    );
    avx512_bf16!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16");
}

/// AVX-512 F/BW/VL with VNNI.
pub(crate) mod avx512vnni {
    path_kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        super::simd::Avx512Vnni,
        gemm::ZmmVnni,
        8,
        4,
        2,
        true,
        super::ops::ExpAvx512
    );
    avx512_bf16!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16");
}

fn no_extras() -> &'static str {
    ""
}

/// The AVX-512 paths' optional extension.
fn avx512_extras() -> &'static str {
    if crate::cpu::cpu_features().avx512bf16 {
        "avx512bf16"
    } else {
        ""
    }
}

static AVX2: Table = Table {
    path: KernelPath::Avx2,
    weights: avx2::weights,
    quantize_q8_0: avx2::quantize_q8_0,
    quantize_q8_1: avx2::quantize_q8_1,
    quantize_q8_k: avx2::quantize_q8_k,
    ops: avx2::OPS,
    attention: avx2::ATTENTION,
    extras: no_extras,
};

static AVX512: Table = Table {
    path: KernelPath::Avx512,
    weights: avx512::weights,
    quantize_q8_0: avx512::quantize_q8_0,
    quantize_q8_1: avx512::quantize_q8_1,
    quantize_q8_k: avx512::quantize_q8_k,
    ops: avx512::OPS,
    attention: avx512::ATTENTION,
    extras: avx512_extras,
};

static AVX512_VNNI: Table = Table {
    path: KernelPath::Avx512Vnni,
    weights: avx512vnni::weights,
    quantize_q8_0: avx512vnni::quantize_q8_0,
    quantize_q8_1: avx512vnni::quantize_q8_1,
    quantize_q8_k: avx512vnni::quantize_q8_k,
    ops: avx512vnni::OPS,
    attention: avx512vnni::ATTENTION,
    extras: avx512_extras,
};

/// The table of an x86_64 path. The caller (`arch::table`) has checked that the CPU
/// supports it.
pub(crate) fn table(path: KernelPath) -> Option<&'static Table> {
    match path {
        KernelPath::Avx2 => Some(&AVX2),
        KernelPath::Avx512 => Some(&AVX512),
        KernelPath::Avx512Vnni => Some(&AVX512_VNNI),
        _ => None,
    }
}
