//! Dot products of the K-quant formats Q4_K, Q5_K and Q6_K with Q8_K activations on
//! NEON registers — the kernels of "Q4_K_M" files (Gemma 3, Qwen2.5).
//!
//! The structure follows llama.cpp's NEON `ggml_vec_dot_q{4,5,6}_K_q8_K`
//! (ggml-cpu/arch/arm/quants.c), written anew on [`I8Dot`]:
//! - the weight quants are expanded to signed bytes (nibbles, plus the fifth bit of Q5_K
//!   or the two high bits of Q6_K) and dotted with the activation quants per sub-block,
//!   all in exact i32 arithmetic; each sub-block's sum is multiplied by its 6- or 8-bit
//!   scale in integer registers (`mla`), so a super-block yields one exact integer;
//! - the constant terms never touch the quants: Q4_K/Q5_K's minimums as
//!   `Σ m_j · (bsum_{2j} + bsum_{2j+1})` and Q6_K's `-32` offset as
//!   `-32 · Σ sc_j · bsum_j`, from Q8_K's per-16 sums (`bsums`);
//! - per super-block, `d_w · d_a · sumi` (minus `dmin_w · d_a · summ`) is added to an f32
//!   total.
//!
//! Every integer is exact (bounds in each function); the f32 steps are the only source
//! of difference from the scalar reference, which keeps ggml's generic order of eight
//! f32 lanes per super-block (the tests name the tolerance).

use std::arch::aarch64::*;

use super::simd::{I8Dot, f16_to_f32, load_i8, load_u8};
use crate::blocks::{BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};

/// The eight 6-bit scales and eight 6-bit minimums of a Q4_K / Q5_K block, unpacked
/// with 32-bit masks: the same bits as `crate::blocks::scale_min_k4` (whose test checks
/// the mask form against the byte form).
#[inline(always)]
fn scales_and_mins(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let word =
        |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (s0, s1, s2) = (word(0), word(4), word(8));
    let (low6, low4, top2) = (0x3f3f_3f3f_u32, 0x0f0f_0f0f_u32, 0x0303_0303_u32);
    let scales_0_3 = s0 & low6;
    let mins_0_3 = s1 & low6;
    let scales_4_7 = (s2 & low4) | (((s0 >> 6) & top2) << 4);
    let mins_4_7 = ((s2 >> 4) & low4) | (((s1 >> 6) & top2) << 4);
    let join = |a: u32, b: u32| {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&a.to_le_bytes());
        out[4..].copy_from_slice(&b.to_le_bytes());
        out
    };
    (join(scales_0_3, scales_4_7), join(mins_0_3, mins_4_7))
}

/// `Σ_j mins[j] · (bsum_{2j} + bsum_{2j+1})` of a Q8_K block: the minimum term of
/// Q4_K / Q5_K. Bounds: a pair of group sums is at most 32 · 128 = 4096 in magnitude
/// (fits i16), times a minimum < 64, eight times: < 2^22.
#[inline(always)]
unsafe fn min_sum(mins: [u8; 8], a: &BlockQ8K) -> i32 {
    // SAFETY: `bsums` is 32 bytes (16 little-endian i16, read as such on this
    // little-endian target); register operations otherwise.
    unsafe {
        let sums = a.bsums.as_ptr().cast::<u8>();
        let b0 = vreinterpretq_s16_u8(vld1q_u8(sums));
        let b1 = vreinterpretq_s16_u8(vld1q_u8(sums.add(16)));
        let pairs = vpaddq_s16(b0, b1);
        let m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mins.as_ptr())));
        let prod = vmlal_s16(
            vmull_s16(vget_low_s16(pairs), vget_low_s16(m)),
            vget_high_s16(pairs),
            vget_high_s16(m),
        );
        vaddvq_s32(prod)
    }
}

/// The lanes of `Σ q · a` over 32 values: two 16-byte quant registers against 32
/// activation bytes at `a`.
#[inline(always)]
unsafe fn dot_32<D: I8Dot>(q0: uint8x16_t, q1: uint8x16_t, a: *const i8) -> int32x4_t {
    // SAFETY: `a` points to 32 readable bytes; `D`'s features per module contract.
    unsafe {
        let acc = D::dot(vdupq_n_s32(0), vreinterpretq_s8_u8(q0), load_i8(a));
        D::dot(acc, vreinterpretq_s8_u8(q1), load_i8(a.add(16)))
    }
}

/// Q4_K · Q8_K.
///
/// Integer bounds per super-block: a 32-value group sums at most 32 · 15 · 128 = 61440
/// in magnitude, times a scale < 64, eight groups: < 2^25.
///
/// # Panics
/// If the block counts differ.
#[inline(always)]
pub(crate) unsafe fn dot_q4_k<D: I8Dot>(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "q4_K dot: block count mismatch");
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        // SAFETY: `qs` is 128 bytes read in 32-byte steps, the activation quants 256
        // bytes read in 64-byte steps; features per module contract.
        unsafe {
            let (scales, mins) = scales_and_mins(&x.scales);
            let summ = min_sum(mins, y);
            let mask = vdupq_n_u8(0x0F);
            let mut acc = vdupq_n_s32(0);
            for pair in 0..QK_K / 64 {
                let q = x.qs.as_ptr().add(32 * pair);
                let (b0, b1) = (load_u8(q), load_u8(q.add(16)));
                let act = y.qs.as_ptr().add(64 * pair);
                let low = dot_32::<D>(vandq_u8(b0, mask), vandq_u8(b1, mask), act);
                let high = dot_32::<D>(vshrq_n_u8(b0, 4), vshrq_n_u8(b1, 4), act.add(32));
                acc = vmlaq_n_s32(acc, low, scales[2 * pair] as i32);
                acc = vmlaq_n_s32(acc, high, scales[2 * pair + 1] as i32);
            }
            let sumi = vaddvq_s32(acc);
            let d = f16_to_f32(x.d.0) * y.d();
            let dmin = f16_to_f32(x.dmin.0) * y.d();
            sumf += d * sumi as f32 - dmin * summ as f32;
        }
    }
    sumf
}

/// Q5_K · Q8_K: as Q4_K, each group taking its fifth bits from one bit of the 32 `qh`
/// bytes (group `g` from bit `g`).
///
/// Integer bounds: a group sums at most 32 · 31 · 128 < 2^17, times a scale < 64,
/// eight groups: < 2^26.
///
/// # Panics
/// If the block counts differ.
#[inline(always)]
pub(crate) unsafe fn dot_q5_k<D: I8Dot>(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "q5_K dot: block count mismatch");
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        // SAFETY: as in `dot_q4_k`; `qh` is 32 bytes.
        unsafe {
            let (scales, mins) = scales_and_mins(&x.scales);
            let summ = min_sum(mins, y);
            let mask = vdupq_n_u8(0x0F);
            let one = vdupq_n_u8(1);
            let mut h0 = load_u8(x.qh.as_ptr());
            let mut h1 = load_u8(x.qh.as_ptr().add(16));
            let mut acc = vdupq_n_s32(0);
            for pair in 0..QK_K / 64 {
                let q = x.qs.as_ptr().add(32 * pair);
                let (b0, b1) = (load_u8(q), load_u8(q.add(16)));
                // Bit 0 of the shifted `qh` bytes is the fifth bit of group 2·pair,
                // bit 1 that of group 2·pair + 1.
                let low0 = vorrq_u8(vandq_u8(b0, mask), vshlq_n_u8(vandq_u8(h0, one), 4));
                let low1 = vorrq_u8(vandq_u8(b1, mask), vshlq_n_u8(vandq_u8(h1, one), 4));
                let high0 = vorrq_u8(
                    vshrq_n_u8(b0, 4),
                    vshlq_n_u8(vandq_u8(h0, vdupq_n_u8(2)), 3),
                );
                let high1 = vorrq_u8(
                    vshrq_n_u8(b1, 4),
                    vshlq_n_u8(vandq_u8(h1, vdupq_n_u8(2)), 3),
                );
                h0 = vshrq_n_u8(h0, 2);
                h1 = vshrq_n_u8(h1, 2);
                let act = y.qs.as_ptr().add(64 * pair);
                let low = dot_32::<D>(low0, low1, act);
                let high = dot_32::<D>(high0, high1, act.add(32));
                acc = vmlaq_n_s32(acc, low, scales[2 * pair] as i32);
                acc = vmlaq_n_s32(acc, high, scales[2 * pair + 1] as i32);
            }
            let sumi = vaddvq_s32(acc);
            let d = f16_to_f32(x.d.0) * y.d();
            let dmin = f16_to_f32(x.dmin.0) * y.d();
            sumf += d * sumi as f32 - dmin * summ as f32;
        }
    }
    sumf
}

/// The four lane totals of four vectors: `[Σa, Σb, Σc, Σd]`.
#[inline(always)]
unsafe fn totals_4(a: int32x4_t, b: int32x4_t, c: int32x4_t, d: int32x4_t) -> int32x4_t {
    // SAFETY: register operations only.
    unsafe { vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, d)) }
}

/// Q6_K · Q8_K. Each 128-value half reads 64 `ql` bytes (low nibbles: values 0..64, high
/// nibbles: values 64..128) and 32 `qh` bytes (2 bits per value, shifted by 0, 2, 4, 6
/// for the four 32-value quarters); the unsigned 6-bit quants (0..64) are dotted as they
/// are and the `-32` comes back as `-32 · Σ sc_j · bsum_j`.
///
/// Integer bounds: a 16-value group sums at most 16 · 63 · 128 < 2^17, times a scale of
/// magnitude <= 128, sixteen groups: < 2^28; the offset term 32 · 16 · 128 · 2048 = 2^27.
///
/// # Panics
/// If the block counts differ.
#[inline(always)]
pub(crate) unsafe fn dot_q6_k<D: I8Dot>(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "q6_K dot: block count mismatch");
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        // SAFETY: `ql` is 128 bytes, `qh` 64, `scales` 16 and the activation quants 256,
        // all read within their fields; features per module contract.
        unsafe {
            let scales = vld1q_s8(x.scales.as_ptr());
            let scales_low = vmovl_s8(vget_low_s8(scales));
            let scales_high = vmovl_high_s8(scales);
            // The offset term, from the per-16 sums of the activations.
            let sums = y.bsums.as_ptr().cast::<u8>();
            let b0 = vreinterpretq_s16_u8(vld1q_u8(sums));
            let b1 = vreinterpretq_s16_u8(vld1q_u8(sums.add(16)));
            let offset = vaddvq_s32(vmlal_high_s16(
                vmlal_s16(
                    vmlal_high_s16(
                        vmull_s16(vget_low_s16(b0), vget_low_s16(scales_low)),
                        b0,
                        scales_low,
                    ),
                    vget_low_s16(b1),
                    vget_low_s16(scales_high),
                ),
                b1,
                scales_high,
            ));
            // The sixteen scales as i32, four groups per vector.
            let group_scales = [
                vmovl_s16(vget_low_s16(scales_low)),
                vmovl_high_s16(scales_low),
                vmovl_s16(vget_low_s16(scales_high)),
                vmovl_high_s16(scales_high),
            ];
            let mask = vdupq_n_u8(0x0F);
            let two_bits = vdupq_n_u8(0x30);
            let mut acc = vdupq_n_s32(0);
            for half in 0..QK_K / 128 {
                let ql = x.ql.as_ptr().add(64 * half);
                let qh = x.qh.as_ptr().add(32 * half);
                let l: [uint8x16_t; 4] = std::array::from_fn(|j| load_u8(ql.add(16 * j)));
                let (h0, h1) = (load_u8(qh), load_u8(qh.add(16)));
                // The eight 16-value groups of this half, in value order.
                let q: [uint8x16_t; 8] = [
                    vorrq_u8(vandq_u8(l[0], mask), vandq_u8(vshlq_n_u8(h0, 4), two_bits)),
                    vorrq_u8(vandq_u8(l[1], mask), vandq_u8(vshlq_n_u8(h1, 4), two_bits)),
                    vorrq_u8(vandq_u8(l[2], mask), vandq_u8(vshlq_n_u8(h0, 2), two_bits)),
                    vorrq_u8(vandq_u8(l[3], mask), vandq_u8(vshlq_n_u8(h1, 2), two_bits)),
                    vorrq_u8(vshrq_n_u8(l[0], 4), vandq_u8(h0, two_bits)),
                    vorrq_u8(vshrq_n_u8(l[1], 4), vandq_u8(h1, two_bits)),
                    vorrq_u8(vshrq_n_u8(l[2], 4), vandq_u8(vshrq_n_u8(h0, 2), two_bits)),
                    vorrq_u8(vshrq_n_u8(l[3], 4), vandq_u8(vshrq_n_u8(h1, 2), two_bits)),
                ];
                let act = y.qs.as_ptr().add(128 * half);
                // A plain loop, not `array::from_fn`: a closure is a function of its own
                // without the entry point's target features, and `sdot` must be inlined
                // into a `dotprod` function.
                let mut dots = [vdupq_n_s32(0); 8];
                for (g, (dot, q)) in dots.iter_mut().zip(q).enumerate() {
                    *dot = D::dot(*dot, vreinterpretq_s8_u8(q), load_i8(act.add(16 * g)));
                }
                let first = totals_4(dots[0], dots[1], dots[2], dots[3]);
                let second = totals_4(dots[4], dots[5], dots[6], dots[7]);
                acc = vmlaq_s32(acc, first, group_scales[2 * half]);
                acc = vmlaq_s32(acc, second, group_scales[2 * half + 1]);
            }
            let sumi = vaddvq_s32(acc) - 32 * offset;
            let d = f16_to_f32(x.d.0) * y.d();
            sumf += d * sumi as f32;
        }
    }
    sumf
}
