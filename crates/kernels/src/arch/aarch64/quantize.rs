//! The activation quantizers (Q8_0, Q8_1, Q8_K) on NEON registers, shared by both
//! aarch64 paths (they need no dotprod). They give exactly the bytes of the scalar
//! reference in [`crate::quant`]:
//!
//! - Q8_0 / Q8_1 as llama.cpp's x86 CPU backend quantizes activations, which is what
//!   tern does on every path (`crate::quant::scalar_quantize_q8_0`, the goldens' build):
//!   `amax` over the block, `d = amax / 127`, the values times `127 / amax`, rounded to
//!   nearest with ties to even (`fcvtns`); Q8_1 adds `s = d * Σq`. (llama.cpp's own NEON
//!   quantizers, ggml-cpu/arch/arm/quants.c `quantize_row_q8_0`, multiply by `1 / d`.)
//! - Q8_K as ggml's `quantize_row_q8_K_ref` (which llama.cpp's Arm backend calls too):
//!   the signed value of largest magnitude (the first on ties) gives
//!   `iscale = -127 / max`, `q = nearest_int(iscale * x)` capped at 127 (ties to even:
//!   `fcvtns` rounds exactly like ggml's magic-number trick for these magnitudes),
//!   `d = 1 / iscale`, and the sums of every 16 quants.
//!
//! The maxima use `fmaxnm`, which ignores NaN as `f32::max` does; a NaN activation can
//! still give other quants than the reference's (garbage either way).

use std::arch::aarch64::*;

use crate::blocks::{BlockQ8_0, BlockQ8_1, BlockQ8K, F16Le, QK, QK_K, as_blocks_mut};

/// Eight f32 vectors from `x` (32 values, any alignment).
#[inline(always)]
unsafe fn load_32(x: &[f32]) -> [float32x4_t; 8] {
    debug_assert!(x.len() >= 32);
    // SAFETY: `x` holds at least 32 values (callers pass whole blocks); `vld1q_f32` on
    // an `f32` pointer is aligned for `f32`.
    unsafe { std::array::from_fn(|j| vld1q_f32(x.as_ptr().add(4 * j))) }
}

/// The largest `|v|` of eight vectors (NaN ignored).
#[inline(always)]
unsafe fn abs_max(v: &[float32x4_t; 8]) -> f32 {
    // SAFETY: register operations only.
    unsafe {
        let a: [float32x4_t; 4] =
            std::array::from_fn(|j| vmaxnmq_f32(vabsq_f32(v[2 * j]), vabsq_f32(v[2 * j + 1])));
        vmaxnmvq_f32(vmaxnmq_f32(
            vmaxnmq_f32(a[0], a[1]),
            vmaxnmq_f32(a[2], a[3]),
        ))
    }
}

/// Four i32 vectors saturated to 16 bytes in order.
#[inline(always)]
unsafe fn narrow_16(v: [int32x4_t; 4]) -> int8x16_t {
    // SAFETY: register operations only.
    unsafe {
        let low = vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(v[1]));
        let high = vcombine_s16(vqmovn_s32(v[2]), vqmovn_s32(v[3]));
        vcombine_s8(vqmovn_s16(low), vqmovn_s16(high))
    }
}

/// The 32 quants of one Q8_0/Q8_1 block: `round(v * id)`, ties to even, saturated to
/// i8 as Rust's `as i8` does. Returns the two 16-byte halves.
#[inline(always)]
unsafe fn quants_32(v: &[float32x4_t; 8], id: f32) -> [int8x16_t; 2] {
    // SAFETY: register operations only.
    unsafe {
        let q: [int32x4_t; 8] = std::array::from_fn(|j| vcvtnq_s32_f32(vmulq_n_f32(v[j], id)));
        [
            narrow_16([q[0], q[1], q[2], q[3]]),
            narrow_16([q[4], q[5], q[6], q[7]]),
        ]
    }
}

/// Q8_0: see the module documentation.
///
/// # Panics
/// If `out` is not exactly the blocks of `x.len()` values.
#[inline(always)]
pub(crate) unsafe fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ8_0] = as_blocks_mut(out);
    assert_eq!(x.len(), blocks.len() * QK, "q8_0 quantize: length mismatch");
    for (block, x) in blocks.iter_mut().zip(x.chunks_exact(QK)) {
        // SAFETY: `x` is one block of 32 values and `block.qs` 32 bytes; register
        // operations otherwise.
        unsafe {
            let v = load_32(x);
            let amax = abs_max(&v);
            let d = amax / 127.0;
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            block.d = F16Le::from_f32(d);
            let [low, high] = quants_32(&v, id);
            vst1q_s8(block.qs.as_mut_ptr(), low);
            vst1q_s8(block.qs.as_mut_ptr().add(16), high);
        }
    }
}

/// Q8_1: Q8_0 plus `s = d * Σq` (see the module documentation).
///
/// # Panics
/// If `out` is not exactly the blocks of `x.len()` values.
#[inline(always)]
pub(crate) unsafe fn quantize_q8_1(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ8_1] = as_blocks_mut(out);
    assert_eq!(x.len(), blocks.len() * QK, "q8_1 quantize: length mismatch");
    for (block, x) in blocks.iter_mut().zip(x.chunks_exact(QK)) {
        // SAFETY: as in `quantize_q8_0`.
        unsafe {
            let v = load_32(x);
            let amax = abs_max(&v);
            let d = amax / 127.0;
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            block.d = F16Le::from_f32(d);
            let [low, high] = quants_32(&v, id);
            vst1q_s8(block.qs.as_mut_ptr(), low);
            vst1q_s8(block.qs.as_mut_ptr().add(16), high);
            let sum = vaddlvq_s8(low) as i32 + vaddlvq_s8(high) as i32;
            block.s = F16Le::from_f32(sum as f32 * d);
        }
    }
}

/// Q8_K: see the module documentation.
///
/// # Panics
/// If `out` is not exactly the blocks of `x.len()` values.
#[inline(always)]
pub(crate) unsafe fn quantize_q8_k(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ8K] = as_blocks_mut(out);
    assert_eq!(
        x.len(),
        blocks.len() * QK_K,
        "q8_K quantize: length mismatch"
    );
    for (block, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        // SAFETY: `x` is one block of 256 values, read 4 at a time within it, and
        // `block.qs` 256 bytes, written 16 at a time; register operations otherwise.
        unsafe {
            let mut amax_v = vdupq_n_f32(0.0);
            for j in 0..QK_K / 4 {
                amax_v = vmaxnmq_f32(amax_v, vabsq_f32(vld1q_f32(x.as_ptr().add(4 * j))));
            }
            let amax = vmaxnmvq_f32(amax_v);
            if amax == 0.0 {
                // As the scalar reference: zero quants and sums, d = 0.
                block.d = 0.0f32.to_le_bytes();
                block.qs = [0; QK_K];
                block.bsums = [[0; 2]; QK_K / 16];
                continue;
            }
            // The first value whose magnitude is `amax` decides the sign of the scale
            // (the reference keeps the first one with `>`).
            let max = first_with_magnitude(x, amax);
            let iscale = -127.0 / max;
            let cap = vdupq_n_s32(127);
            for (g, sum) in block.bsums.iter_mut().enumerate() {
                let q: [int32x4_t; 4] = std::array::from_fn(|j| {
                    let v = vld1q_f32(x.as_ptr().add(16 * g + 4 * j));
                    vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(v, iscale)), cap)
                });
                let bytes = narrow_16(q);
                vst1q_s8(block.qs.as_mut_ptr().add(16 * g), bytes);
                *sum = vaddlvq_s8(bytes).to_le_bytes();
            }
            block.d = (1.0 / iscale).to_le_bytes();
        }
    }
}

/// The first value of `x` whose magnitude is `amax` (which is the largest magnitude of
/// `x`, so one exists).
#[inline(always)]
unsafe fn first_with_magnitude(x: &[f32], amax: f32) -> f32 {
    // SAFETY: `x` holds a whole number of 4-value groups (256 values), read within it.
    unsafe {
        let target = vdupq_n_f32(amax);
        for j in 0..x.len() / 4 {
            let v = vld1q_f32(x.as_ptr().add(4 * j));
            if vmaxvq_u32(vceqq_f32(vabsq_f32(v), target)) != 0
                && let Some(&first) = x[4 * j..4 * j + 4].iter().find(|v| v.abs() == amax)
            {
                return first;
            }
        }
    }
    amax
}
