//! The elementwise ops on x86_64 (see [`crate::ops`] for their definitions): RMSNorm,
//! softmax, SiLU/SwiGLU, GELU/GeGLU, f16 conversions, and the f16 dot product and
//! multiply-add of the KV-cache attention.
//!
//! Exact against the scalar reference: the GELU table lookups (f16 rounding with F16C,
//! the table read with a gather), f16 conversions, `vec_mad_f16`, `vec_scale_f16` and
//! `vec_dot_f16_ggml` (its 16-lane order is kept with two 8-lane registers per
//! accumulator). Within a named tolerance: RMSNorm and `vec_dot_f16` (f64 sums in another
//! order), and everything with `expf`: these use llama.cpp's vectorised `ggml_v_expf`
//! (ggml-cpu/vec.h, "adapted from arm limited optimized routine", max error 1.45 ulp +
//! 0.5), written anew, in the variant of each llama.cpp build — the AVX2 one on the AVX2
//! path, the AVX-512 one (`vscalefps`) on the AVX-512 paths — so SiLU, SwiGLU and
//! softmax give the bits of the llama.cpp build with the same instruction set.

use std::arch::x86_64::*;

use half::f16;

use super::simd::{hsum_f32_8, load16};
use crate::ops::{GGML_F16_LANES, GGML_F16_STEP, gelu_table, rms_scale_from_sum, silu_f32};

/// Which `ggml_v_expf` variant a path uses.
pub(crate) trait Exp {
    /// `exp(x)` for 8 lanes.
    unsafe fn exp8(x: __m256) -> __m256;
}

/// llama.cpp's AVX2 `ggml_v_expf`: `2^n` built in the exponent bits, special cases for
/// `|n| > 126`.
pub(crate) struct ExpAvx2;
/// llama.cpp's AVX-512 `ggml_v_expf`: `vscalefps` does the `2^n`, on 256-bit registers
/// (the arithmetic is lane by lane, so the width does not change the bits).
pub(crate) struct ExpAvx512;

// The constants of `ggml_v_expf`, as hexadecimal floats in ggml.
const EXP_R: f32 = 12_582_912.0; // 0x1.8p23
const LOG2E: f32 = f32::from_bits(0x3fb8_aa3b); // 0x1.715476p+0
const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 0x1.62e4p-1
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e); // 0x1.7f7d1cp-20
const C5: f32 = f32::from_bits(0x3c07_2010); // 0x1.0e4020p-7
const C4: f32 = f32::from_bits(0x3d2b_9f17); // 0x1.573e2ep-5
const C3: f32 = f32::from_bits(0x3e2a_af33); // 0x1.555e66p-3
const C2: f32 = f32::from_bits(0x3eff_fedb); // 0x1.fffdb6p-2
const C1: f32 = f32::from_bits(0x3f7f_fff6); // 0x1.ffffecp-1

/// The shared first half: `(n, b, j)` with `x = n·ln2 + b` and `j ≈ e^b - 1` (AVX2
/// variant: without the `+ 1`) or `e^b` (AVX-512 variant).
#[inline(always)]
unsafe fn exp_poly(x: __m256, plus_one: bool) -> (__m256, __m256, __m256) {
    // SAFETY: AVX/FMA per module contract.
    unsafe {
        let r = _mm256_set1_ps(EXP_R);
        let z = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), r);
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(
            n,
            _mm256_set1_ps(LN2_LO),
            _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x),
        );
        let u = _mm256_mul_ps(b, b);
        let inner = _mm256_fmadd_ps(
            _mm256_fmadd_ps(_mm256_set1_ps(C5), b, _mm256_set1_ps(C4)),
            u,
            _mm256_fmadd_ps(_mm256_set1_ps(C3), b, _mm256_set1_ps(C2)),
        );
        let last = if plus_one {
            _mm256_fmadd_ps(_mm256_set1_ps(C1), b, _mm256_set1_ps(1.0))
        } else {
            _mm256_mul_ps(_mm256_set1_ps(C1), b)
        };
        (z, n, _mm256_fmadd_ps(inner, u, last))
    }
}

impl Exp for ExpAvx2 {
    #[inline(always)]
    unsafe fn exp8(x: __m256) -> __m256 {
        // SAFETY: AVX2/FMA per module contract.
        unsafe {
            let (z, n, j) = exp_poly(x, false);
            let e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
            let k = _mm256_castsi256_ps(_mm256_add_epi32(
                e,
                _mm256_castps_si256(_mm256_set1_ps(1.0)),
            ));
            let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
            let c = _mm256_cmp_ps(abs_n, _mm256_set1_ps(126.0), _CMP_GT_OQ);
            if _mm256_movemask_ps(c) == 0 {
                return _mm256_fmadd_ps(j, k, k);
            }
            let g = _mm256_and_si256(
                _mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                _mm256_set1_epi32(0x8200_0000u32 as i32),
            );
            let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
            let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
            let d = _mm256_cmp_ps(abs_n, _mm256_set1_ps(192.0), _CMP_GT_OQ);
            _mm256_or_ps(
                _mm256_and_ps(d, _mm256_mul_ps(s1, s1)),
                _mm256_andnot_ps(
                    d,
                    _mm256_or_ps(
                        _mm256_and_ps(c, _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                        _mm256_andnot_ps(c, _mm256_fmadd_ps(k, j, k)),
                    ),
                ),
            )
        }
    }
}

impl Exp for ExpAvx512 {
    #[inline(always)]
    unsafe fn exp8(x: __m256) -> __m256 {
        // SAFETY: AVX-512 F/VL per module contract.
        unsafe {
            let (_, n, j) = exp_poly(x, true);
            let res = _mm256_scalef_ps(j, n);
            let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
            let d = _mm256_cmp_ps_mask(abs_n, _mm256_set1_ps(192.0), _CMP_GT_OQ);
            if d == 0 {
                return res;
            }
            let le0 = _mm256_cmp_ps_mask(n, _mm256_setzero_ps(), _CMP_LE_OQ);
            let alt = _mm256_mask_blend_ps(le0, _mm256_set1_ps(f32::INFINITY), _mm256_setzero_ps());
            _mm256_mask_blend_ps(d, res, alt)
        }
    }
}

/// `x / (1 + exp(-x))` (`ggml_v_silu`).
#[inline(always)]
unsafe fn silu8<E: Exp>(x: __m256) -> __m256 {
    // SAFETY: per module contract.
    unsafe {
        let e = E::exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
    }
}

/// Pointer to 8 f32 at `i`.
#[inline(always)]
unsafe fn ld(x: &[f32], i: usize) -> __m256 {
    debug_assert!(i + 8 <= x.len());
    // SAFETY: the caller keeps `i + 8 <= x.len()`.
    unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) }
}

#[inline(always)]
unsafe fn st(x: &mut [f32], i: usize, v: __m256) {
    debug_assert!(i + 8 <= x.len());
    // SAFETY: the caller keeps `i + 8 <= x.len()`.
    unsafe { _mm256_storeu_ps(x.as_mut_ptr().add(i), v) }
}

#[inline(always)]
pub(crate) unsafe fn silu<E: Exp>(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    let whole = x.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= whole <= len`; per module contract.
        unsafe { st(out, i, silu8::<E>(ld(x, i))) };
    }
    for i in whole..x.len() {
        out[i] = silu_f32(x[i]);
    }
}

#[inline(always)]
pub(crate) unsafe fn swiglu<E: Exp>(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(gate.len() == up.len() && gate.len() == out.len());
    let whole = gate.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= whole <= len`; per module contract.
        unsafe { st(out, i, _mm256_mul_ps(silu8::<E>(ld(gate, i)), ld(up, i))) };
    }
    for i in whole..gate.len() {
        out[i] = silu_f32(gate[i]) * up[i];
    }
}

/// Softmax in place as ggml's `soft_max` op: max, `exp(x - max)` (vectorised for whole
/// registers, libm for the rest, as `ggml_vec_soft_max_f32`), each register's sum
/// added in f64, then times the f32 reciprocal.
#[inline(always)]
pub(crate) unsafe fn softmax_in_place<E: Exp>(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let whole = x.len() / 8 * 8;
    let mut sum = 0.0f64;
    // SAFETY: `i + 8 <= whole <= len`; per module contract.
    unsafe {
        let m = _mm256_set1_ps(max);
        for i in (0..whole).step_by(8) {
            let v = E::exp8(_mm256_sub_ps(ld(x, i), m));
            st(x, i, v);
            sum += hsum_f32_8(v) as f64;
        }
    }
    for v in &mut x[whole..] {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Squares summed in f64 lanes (each square rounded to f32 first, as the reference).
#[inline(always)]
unsafe fn sum_squares(x: &[f32]) -> f64 {
    let whole = x.len() / 8 * 8;
    // SAFETY: `i + 8 <= whole <= len`; AVX per module contract.
    unsafe {
        let mut acc = [_mm256_setzero_pd(); 2];
        for i in (0..whole).step_by(8) {
            let v = ld(x, i);
            let sq = _mm256_mul_ps(v, v);
            acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
            acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
        }
        let s = _mm256_add_pd(acc[0], acc[1]);
        let s = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
        let s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
        let mut total = _mm_cvtsd_f64(s);
        for &v in &x[whole..] {
            total += (v * v) as f64;
        }
        total
    }
}

#[inline(always)]
pub(crate) unsafe fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    assert!(x.len() == weight.len() && x.len() == out.len());
    // SAFETY: per module contract.
    let scale = rms_scale_from_sum(unsafe { sum_squares(x) }, x.len(), eps);
    let whole = x.len() / 8 * 8;
    // SAFETY: `i + 8 <= whole <= len`; per module contract.
    unsafe {
        let s = _mm256_set1_ps(scale);
        for i in (0..whole).step_by(8) {
            st(
                out,
                i,
                _mm256_mul_ps(_mm256_mul_ps(ld(x, i), s), ld(weight, i)),
            );
        }
    }
    for i in whole..x.len() {
        out[i] = x[i] * scale * weight[i];
    }
}

#[inline(always)]
pub(crate) unsafe fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    assert_eq!(x.len(), weight.len());
    // SAFETY: per module contract.
    let scale = rms_scale_from_sum(unsafe { sum_squares(x) }, x.len(), eps);
    let whole = x.len() / 8 * 8;
    // SAFETY: `i + 8 <= whole <= len`; per module contract.
    unsafe {
        let s = _mm256_set1_ps(scale);
        for i in (0..whole).step_by(8) {
            let v = _mm256_mul_ps(_mm256_mul_ps(ld(x, i), s), ld(weight, i));
            st(x, i, v);
        }
    }
    for i in whole..x.len() {
        x[i] = x[i] * scale * weight[i];
    }
}

/// GELU of 8 values through ggml's f16 table (see `ops::gelu_table_lookup`).
#[inline(always)]
unsafe fn gelu8(table: &[u16], x: __m256) -> __m256 {
    // SAFETY: the table has 65,536 entries plus one of padding, so the 4-byte gather
    // at byte `2 * index` (index < 65,536) stays inside it; AVX2/F16C per contract.
    unsafe {
        let h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT);
        let idx = _mm256_cvtepu16_epi32(h);
        let got = _mm256_i32gather_epi32::<2>(table.as_ptr().cast::<i32>(), idx);
        let halves = _mm256_and_si256(got, _mm256_set1_epi32(0xFFFF));
        let packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(halves, halves), 0b1000);
        let y = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
        let low = _mm256_cmp_ps(x, _mm256_set1_ps(-10.0), _CMP_LE_OQ);
        let high = _mm256_cmp_ps(x, _mm256_set1_ps(10.0), _CMP_GE_OQ);
        let y = _mm256_andnot_ps(low, y);
        _mm256_blendv_ps(y, x, high)
    }
}

#[inline(always)]
pub(crate) unsafe fn gelu_tanh(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    let table = gelu_table();
    assert!(table.len() > 65_536);
    let whole = x.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= whole <= len`; per module contract.
        unsafe { st(out, i, gelu8(table, ld(x, i))) };
    }
    for i in whole..x.len() {
        out[i] = crate::ops::gelu_table_lookup(table, x[i]);
    }
}

#[inline(always)]
pub(crate) unsafe fn geglu_tanh(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(gate.len() == up.len() && gate.len() == out.len());
    let table = gelu_table();
    assert!(table.len() > 65_536);
    let whole = gate.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= whole <= len`; per module contract.
        unsafe { st(out, i, _mm256_mul_ps(gelu8(table, ld(gate, i)), ld(up, i))) };
    }
    for i in whole..gate.len() {
        out[i] = crate::ops::gelu_table_lookup(table, gate[i]) * up[i];
    }
}

fn f16_bytes(x: &[f16]) -> &[u8] {
    // SAFETY: `f16` is a plain 2-byte value (no padding, every bit pattern valid), so
    // the slice's memory is `2 * len` initialised bytes, borrowed for the same lifetime.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), 2 * x.len()) }
}

#[inline(always)]
pub(crate) unsafe fn vec_dot_f16(a: &[f16], b: &[f16]) -> f32 {
    // SAFETY: per module contract.
    unsafe { super::float::dot_f16(f16_bytes(a), f16_bytes(b)) }
}

/// 8 f16 values at `x[i..]` widened.
#[inline(always)]
unsafe fn ld16(x: &[f16], i: usize) -> __m256 {
    debug_assert!(i + 8 <= x.len());
    // SAFETY: the caller keeps `i + 8 <= x.len()`; F16C per contract.
    unsafe { _mm256_cvtph_ps(load16(x.as_ptr().add(i).cast())) }
}

#[inline(always)]
unsafe fn st16(x: &mut [f16], i: usize, v: __m256) {
    debug_assert!(i + 8 <= x.len());
    // SAFETY: the caller keeps `i + 8 <= x.len()`; F16C per contract.
    unsafe {
        _mm_storeu_si128(
            x.as_mut_ptr().add(i).cast(),
            _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT),
        )
    }
}

#[inline(always)]
pub(crate) unsafe fn vec_dot_f16_ggml(a: &[f16], b: &[f16]) -> f32 {
    assert_eq!(a.len(), b.len());
    let whole = a.len() / GGML_F16_STEP * GGML_F16_STEP;
    // SAFETY: each block reads 64 values at `i` with `i + 64 <= whole`; per contract.
    // A 16-lane accumulator is two 8-lane registers (lanes 0..8 and 8..16).
    let lanes = unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        for i in (0..whole).step_by(GGML_F16_STEP) {
            for (j, acc) in acc.iter_mut().enumerate() {
                for (h, acc) in acc.iter_mut().enumerate() {
                    let at = i + j * GGML_F16_LANES + 8 * h;
                    *acc = _mm256_fmadd_ps(ld16(a, at), ld16(b, at), *acc);
                }
            }
        }
        // (a0 + a2) + (a1 + a3) per lane, then the 16 lanes halved pairwise.
        let lo = _mm256_add_ps(
            _mm256_add_ps(acc[0][0], acc[2][0]),
            _mm256_add_ps(acc[1][0], acc[3][0]),
        );
        let hi = _mm256_add_ps(
            _mm256_add_ps(acc[0][1], acc[2][1]),
            _mm256_add_ps(acc[1][1], acc[3][1]),
        );
        let w8 = _mm256_add_ps(lo, hi);
        let w4 = _mm_add_ps(_mm256_castps256_ps128(w8), _mm256_extractf128_ps(w8, 1));
        let w2 = _mm_add_ps(w4, _mm_movehl_ps(w4, w4));
        let w1 = _mm_add_ss(w2, _mm_movehdup_ps(w2));
        _mm_cvtss_f32(w1)
    };
    let mut sum = lanes as f64;
    for (x, y) in a[whole..].iter().zip(&b[whole..]) {
        sum += (x.to_f32() * y.to_f32()) as f64;
    }
    sum as f32
}

#[inline(always)]
pub(crate) unsafe fn vec_mad_f16(y: &mut [f16], x: &[f16], v: f32) {
    assert_eq!(y.len(), x.len());
    let whole = y.len() / 8 * 8;
    // SAFETY: `i + 8 <= whole <= len`; per module contract.
    unsafe {
        let s = _mm256_set1_ps(v);
        for i in (0..whole).step_by(8) {
            st16(y, i, _mm256_fmadd_ps(ld16(x, i), s, ld16(y, i)));
        }
    }
    crate::ops::vec_mad_f16_ref(&mut y[whole..], &x[whole..], v);
}

#[inline(always)]
pub(crate) unsafe fn vec_scale_f16(y: &mut [f16], v: f32) {
    let whole = y.len() / 8 * 8;
    // SAFETY: `i + 8 <= whole <= len`; per module contract.
    unsafe {
        let s = _mm256_set1_ps(v);
        for i in (0..whole).step_by(8) {
            st16(y, i, _mm256_mul_ps(ld16(y, i), s));
        }
    }
    crate::ops::vec_scale_f16_ref(&mut y[whole..], v);
}

#[inline(always)]
pub(crate) unsafe fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    assert_eq!(src.len(), dst.len());
    let whole = src.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= whole <= len`; per module contract.
        unsafe { st16(dst, i, ld(src, i)) };
    }
    crate::ops::f32_to_f16_ref(&src[whole..], &mut dst[whole..]);
}

#[inline(always)]
pub(crate) unsafe fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    let whole = src.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= whole <= len`; per module contract.
        unsafe { st(dst, i, ld16(src, i)) };
    }
    crate::ops::f16_to_f32_ref(&src[whole..], &mut dst[whole..]);
}
