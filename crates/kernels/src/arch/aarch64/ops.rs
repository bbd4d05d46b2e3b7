//! The elementwise and row-wise ops of a transformer on NEON registers (both aarch64
//! paths; none needs dotprod): RMSNorm, softmax, SiLU / SwiGLU, and the f16 helpers of
//! the KV cache (conversions, multiply-add, scale).
//!
//! What each computes relative to the scalar reference in `crate::ops`:
//! - RMSNorm: the squares summed in f64 lanes (the reference sums them in f64 in order),
//!   then the reference's own scale formula and the same two f32 multiplies per value;
//! - softmax and SiLU: `exp` is [`exp_f32x4`], the vectorised `expf` llama.cpp's NEON
//!   build uses (`ggml_v_expf` in ggml-cpu/vec.h, adapted there from Arm's
//!   optimized-routines), so tern on a Raspberry Pi computes what llama.cpp computes
//!   there; it is within 2 ulp of libm's `expf` that the reference calls. Softmax sums
//!   each group of four in f32 and the groups in f64, as llama.cpp's NEON
//!   `ggml_vec_soft_max_f32`; the leftover values (fewer than four) use libm, as there;
//! - the f16 conversions, `vec_mad_f16` and `vec_scale_f16` are exact: same products,
//!   same fused multiply-add, same round-to-nearest-even to f16.

use std::arch::aarch64::*;

use half::f16;

use super::simd::{f16x4_high_to_f32, f16x4_to_f32, f32x8_to_f16};
use crate::ops::rms_scale_from_sum;

/// `e^x` on four lanes, as llama.cpp's NEON `ggml_v_expf`: `x = n·ln2 + b` with `n`
/// rounded to an integer through the 1.5·2^23 shift, a degree-5 polynomial for `e^b`,
/// `2^n` built in the exponent bits, and the lanes with `|n| > 126` rebuilt from two
/// factors so that large results overflow to infinity and small ones go gradually to
/// zero (|x| beyond ~88.4 and ~104 respectively). The constants are Arm's minimax fit.
#[inline(always)]
pub(crate) unsafe fn exp_f32x4(x: float32x4_t) -> float32x4_t {
    let f = f32::from_bits;
    // SAFETY: register operations only.
    unsafe {
        let shift = vdupq_n_f32(f(0x4b40_0000)); // 1.5 · 2^23
        let z = vfmaq_f32(shift, x, vdupq_n_f32(f(0x3fb8_aa3b))); // log2(e)
        let n = vsubq_f32(z, shift);
        // b = x - n·ln2, with ln2 split in a high and a low part.
        let b = vfmsq_f32(
            vfmsq_f32(x, n, vdupq_n_f32(f(0x3f31_7200))),
            n,
            vdupq_n_f32(f(0x35bf_be8e)),
        );
        let e = vshlq_n_u32::<23>(vreinterpretq_u32_f32(z));
        let k = vreinterpretq_f32_u32(vaddq_u32(e, vreinterpretq_u32_f32(vdupq_n_f32(1.0))));
        let big = vcagtq_f32(n, vdupq_n_f32(126.0));
        let u = vmulq_f32(b, b);
        let p1 = vfmaq_f32(vdupq_n_f32(f(0x3eff_fedb)), vdupq_n_f32(f(0x3e2a_af33)), b);
        let p2 = vfmaq_f32(vdupq_n_f32(f(0x3d2b_9f17)), vdupq_n_f32(f(0x3c07_2010)), b);
        let j = vfmaq_f32(
            vmulq_f32(vdupq_n_f32(f(0x3f7f_fff6)), b),
            vfmaq_f32(p1, p2, u),
            u,
        );
        if vmaxvq_u32(big) == 0 {
            return vfmaq_f32(k, j, k);
        }
        let d = vandq_u32(vclezq_f32(n), vdupq_n_u32(0x8200_0000));
        let s1 = vreinterpretq_f32_u32(vaddq_u32(d, vdupq_n_u32(0x7f00_0000)));
        let s2 = vreinterpretq_f32_u32(vsubq_u32(e, d));
        vbslq_f32(
            vcagtq_f32(n, vdupq_n_f32(192.0)),
            vmulq_f32(s1, s1),
            vbslq_f32(big, vmulq_f32(vfmaq_f32(s2, s2, j), s1), vfmaq_f32(k, k, j)),
        )
    }
}

/// `x / (1 + e^-x)` on four lanes (llama.cpp's NEON `ggml_v_silu`).
#[inline(always)]
unsafe fn silu_f32x4(x: float32x4_t) -> float32x4_t {
    // SAFETY: register operations only.
    unsafe {
        let e = exp_f32x4(vsubq_f32(vdupq_n_f32(0.0), x));
        vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), e))
    }
}

/// The sum of squares of `x` in f64 (RMSNorm's first pass).
#[inline(always)]
unsafe fn sum_squares(x: &[f32]) -> f64 {
    let whole = x.len() / 8 * 8;
    // SAFETY: loads of 4 values at `i` and `i + 4` with `i + 8 <= whole <= x.len()`.
    let mut sum = unsafe {
        let mut acc = [vdupq_n_f64(0.0); 4];
        for i in (0..whole).step_by(8) {
            let v0 = vld1q_f32(x.as_ptr().add(i));
            let v1 = vld1q_f32(x.as_ptr().add(i + 4));
            let (p0, p1) = (vmulq_f32(v0, v0), vmulq_f32(v1, v1));
            acc[0] = vaddq_f64(acc[0], vcvt_f64_f32(vget_low_f32(p0)));
            acc[1] = vaddq_f64(acc[1], vcvt_high_f64_f32(p0));
            acc[2] = vaddq_f64(acc[2], vcvt_f64_f32(vget_low_f32(p1)));
            acc[3] = vaddq_f64(acc[3], vcvt_high_f64_f32(p1));
        }
        vaddvq_f64(vaddq_f64(
            vaddq_f64(acc[0], acc[1]),
            vaddq_f64(acc[2], acc[3]),
        ))
    };
    for &v in &x[whole..] {
        sum += (v * v) as f64;
    }
    sum
}

/// `out = (x * scale) * weight`, four values at a time.
#[inline(always)]
unsafe fn scale_by_weight(x: &[f32], weight: &[f32], scale: f32, out: &mut [f32]) {
    assert!(
        x.len() == weight.len() && x.len() == out.len(),
        "rms_norm: lengths"
    );
    let whole = x.len() / 4 * 4;
    for i in (0..whole).step_by(4) {
        // SAFETY: `i + 4 <= whole` values of each slice (lengths asserted equal).
        unsafe {
            let v = vmulq_n_f32(vld1q_f32(x.as_ptr().add(i)), scale);
            vst1q_f32(
                out.as_mut_ptr().add(i),
                vmulq_f32(v, vld1q_f32(weight.as_ptr().add(i))),
            );
        }
    }
    for i in whole..x.len() {
        out[i] = x[i] * scale * weight[i];
    }
}

/// RMSNorm into `out` (see the module documentation).
#[inline(always)]
pub(crate) unsafe fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    // SAFETY: register operations and in-bounds loads only (see the helpers).
    unsafe {
        let scale = rms_scale_from_sum(sum_squares(x), x.len(), eps);
        scale_by_weight(x, weight, scale, out);
    }
}

/// RMSNorm in place.
#[inline(always)]
pub(crate) unsafe fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    assert_eq!(x.len(), weight.len(), "rms_norm: weight length");
    // SAFETY: in-bounds loads and stores of 4 values at `i + 4 <= whole <= x.len()`.
    unsafe {
        let scale = rms_scale_from_sum(sum_squares(x), x.len(), eps);
        let whole = x.len() / 4 * 4;
        for i in (0..whole).step_by(4) {
            let p = x.as_mut_ptr().add(i);
            let v = vmulq_n_f32(vld1q_f32(p), scale);
            vst1q_f32(p, vmulq_f32(v, vld1q_f32(weight.as_ptr().add(i))));
        }
        for i in whole..x.len() {
            x[i] = x[i] * scale * weight[i];
        }
    }
}

/// Softmax in place (see the module documentation).
#[inline(always)]
pub(crate) unsafe fn softmax_in_place(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let whole = x.len() / 4 * 4;
    // SAFETY: in-bounds loads and stores of 4 values at `i + 4 <= whole <= x.len()`.
    unsafe {
        let mut max_v = vdupq_n_f32(f32::NEG_INFINITY);
        for i in (0..whole).step_by(4) {
            max_v = vmaxnmq_f32(max_v, vld1q_f32(x.as_ptr().add(i)));
        }
        let max = x[whole..]
            .iter()
            .fold(vmaxnmvq_f32(max_v), |m, &v| m.max(v));
        let mut sum = 0.0f64;
        for i in (0..whole).step_by(4) {
            let p = x.as_mut_ptr().add(i);
            let e = exp_f32x4(vsubq_f32(vld1q_f32(p), vdupq_n_f32(max)));
            vst1q_f32(p, e);
            sum += vaddvq_f32(e) as f64;
        }
        for v in &mut x[whole..] {
            *v = (*v - max).exp();
            sum += *v as f64;
        }
        let inv = (1.0 / sum) as f32;
        for i in (0..whole).step_by(4) {
            let p = x.as_mut_ptr().add(i);
            vst1q_f32(p, vmulq_n_f32(vld1q_f32(p), inv));
        }
        for v in &mut x[whole..] {
            *v *= inv;
        }
    }
}

/// `out = silu(x)`.
#[inline(always)]
pub(crate) unsafe fn silu(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "silu: output length");
    let whole = x.len() / 4 * 4;
    for i in (0..whole).step_by(4) {
        // SAFETY: `i + 4 <= whole` values of both slices.
        unsafe {
            vst1q_f32(
                out.as_mut_ptr().add(i),
                silu_f32x4(vld1q_f32(x.as_ptr().add(i))),
            )
        };
    }
    for i in whole..x.len() {
        out[i] = crate::ops::silu_f32(x[i]);
    }
}

/// `out = silu(gate) * up`.
#[inline(always)]
pub(crate) unsafe fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(
        gate.len() == up.len() && gate.len() == out.len(),
        "swiglu: lengths"
    );
    let whole = gate.len() / 4 * 4;
    for i in (0..whole).step_by(4) {
        // SAFETY: `i + 4 <= whole` values of the three slices.
        unsafe {
            let s = silu_f32x4(vld1q_f32(gate.as_ptr().add(i)));
            vst1q_f32(
                out.as_mut_ptr().add(i),
                vmulq_f32(s, vld1q_f32(up.as_ptr().add(i))),
            );
        }
    }
    for i in whole..gate.len() {
        out[i] = crate::ops::silu_f32(gate[i]) * up[i];
    }
}

/// Eight f16 values at `p` widened to f32.
#[inline(always)]
unsafe fn load_f16x8(p: *const f16) -> (float32x4_t, float32x4_t) {
    // SAFETY: the caller guarantees 8 readable values; `f16` is a `u16` in memory, so
    // the pointer is aligned for `u16`.
    unsafe {
        let h = vld1q_u16(p.cast::<u16>());
        (f16x4_to_f32(vget_low_u16(h)), f16x4_high_to_f32(h))
    }
}

/// Eight f32 values rounded to f16 and stored at `p`.
#[inline(always)]
unsafe fn store_f16x8(p: *mut f16, low: float32x4_t, high: float32x4_t) {
    // SAFETY: the caller guarantees 8 writable values, aligned for `u16` (see
    // `load_f16x8`); any `u16` is a valid `f16`.
    unsafe { vst1q_u16(p.cast::<u16>(), f32x8_to_f16(low, high)) }
}

/// f32 → f16, round to nearest even (exact as the reference).
#[inline(always)]
pub(crate) unsafe fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f16_slice: length mismatch");
    let whole = src.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= whole` values of both slices.
        unsafe {
            let low = vld1q_f32(src.as_ptr().add(i));
            let high = vld1q_f32(src.as_ptr().add(i + 4));
            store_f16x8(dst.as_mut_ptr().add(i), low, high);
        }
    }
    for (d, &s) in dst[whole..].iter_mut().zip(&src[whole..]) {
        *d = f16::from_f32(s);
    }
}

/// f16 → f32 (exact).
#[inline(always)]
pub(crate) unsafe fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32_slice: length mismatch");
    let whole = src.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= whole` values of both slices.
        unsafe {
            let (low, high) = load_f16x8(src.as_ptr().add(i));
            vst1q_f32(dst.as_mut_ptr().add(i), low);
            vst1q_f32(dst.as_mut_ptr().add(i + 4), high);
        }
    }
    for (d, s) in dst[whole..].iter_mut().zip(&src[whole..]) {
        *d = s.to_f32();
    }
}

/// `y = f16(fma(x, v, y))` (ggml's `ggml_vec_mad_f16`; exact as the reference).
#[inline(always)]
pub(crate) unsafe fn vec_mad_f16(y: &mut [f16], x: &[f16], v: f32) {
    assert_eq!(y.len(), x.len(), "vec_mad_f16: length mismatch");
    let whole = y.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= whole` values of both slices.
        unsafe {
            let (x0, x1) = load_f16x8(x.as_ptr().add(i));
            let (y0, y1) = load_f16x8(y.as_ptr().add(i));
            let vv = vdupq_n_f32(v);
            store_f16x8(
                y.as_mut_ptr().add(i),
                vfmaq_f32(y0, x0, vv),
                vfmaq_f32(y1, x1, vv),
            );
        }
    }
    for (y, x) in y[whole..].iter_mut().zip(&x[whole..]) {
        *y = f16::from_f32(x.to_f32().mul_add(v, y.to_f32()));
    }
}

/// `y = f16(y * v)` (ggml's `ggml_vec_scale_f16`; exact as the reference).
#[inline(always)]
pub(crate) unsafe fn vec_scale_f16(y: &mut [f16], v: f32) {
    let whole = y.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= whole` values of the slice.
        unsafe {
            let (y0, y1) = load_f16x8(y.as_ptr().add(i));
            store_f16x8(
                y.as_mut_ptr().add(i),
                vmulq_n_f32(y0, v),
                vmulq_n_f32(y1, v),
            );
        }
    }
    for y in &mut y[whole..] {
        *y = f16::from_f32(y.to_f32() * v);
    }
}

/// `vec_dot_f16` with f64 sums (see [`super::float`]).
#[inline(always)]
pub(crate) unsafe fn vec_dot_f16(a: &[f16], b: &[f16]) -> f32 {
    // SAFETY: forwarded contract.
    unsafe { super::float::dot_f16_bytes(super::float::f16_bytes(a), super::float::f16_bytes(b)) }
}
