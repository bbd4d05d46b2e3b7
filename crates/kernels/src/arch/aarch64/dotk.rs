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
//!
//! Each kernel computes `R` weight rows (1 or 2) against one activation row: the
//! matrix-vector kernel ([`matvec`]) takes rows in pairs so that the activation quants
//! and group sums are loaded once for two rows. A row's arithmetic does not depend on
//! `R`, so single dot products, matvecs and any split over threads agree bit for bit.

use std::arch::aarch64::*;

use super::simd::{I8Dot, f16_to_f32, load_i8, load_u8};
use crate::blocks::{Block, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K, as_blocks};
use crate::matmul::ActRow;

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

/// The 16 group sums (`bsums`) of a Q8_K block as two i16 vectors.
#[inline(always)]
unsafe fn bsums(a: &BlockQ8K) -> (int16x8_t, int16x8_t) {
    // SAFETY: `bsums` is 32 bytes (16 little-endian i16, read as such on this
    // little-endian target).
    unsafe {
        let sums = a.bsums.as_ptr().cast::<u8>();
        (
            vreinterpretq_s16_u8(vld1q_u8(sums)),
            vreinterpretq_s16_u8(vld1q_u8(sums.add(16))),
        )
    }
}

/// `Σ_j mins[j] · pairs[j]`, `pairs[j] = bsum_{2j} + bsum_{2j+1}`: the minimum term of
/// Q4_K / Q5_K. Bounds: a pair of group sums is at most 32 · 128 = 4096 in magnitude
/// (fits i16), times a minimum < 64, eight times: < 2^22.
#[inline(always)]
unsafe fn min_sum(mins: [u8; 8], pairs: int16x8_t) -> i32 {
    // SAFETY: `mins` is 8 bytes; register operations otherwise.
    unsafe {
        let m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mins.as_ptr())));
        let prod = vmlal_s16(
            vmull_s16(vget_low_s16(pairs), vget_low_s16(m)),
            vget_high_s16(pairs),
            vget_high_s16(m),
        );
        vaddvq_s32(prod)
    }
}

/// The lanes of `Σ q · a` over 32 values: two quant registers against two activation
/// registers.
#[inline(always)]
unsafe fn dot_32<D: I8Dot>(
    q0: uint8x16_t,
    q1: uint8x16_t,
    a0: int8x16_t,
    a1: int8x16_t,
) -> int32x4_t {
    // SAFETY: `D`'s features per module contract.
    unsafe {
        let acc = D::dot(vdupq_n_s32(0), vreinterpretq_s8_u8(q0), a0);
        D::dot(acc, vreinterpretq_s8_u8(q1), a1)
    }
}

/// The 64 activation quants of a Q4_K/Q5_K group pair as four registers.
#[inline(always)]
unsafe fn load_64(p: *const i8) -> [int8x16_t; 4] {
    // SAFETY: the caller guarantees 64 readable bytes.
    unsafe {
        [
            load_i8(p),
            load_i8(p.add(16)),
            load_i8(p.add(32)),
            load_i8(p.add(48)),
        ]
    }
}

/// Checks that every weight row has the activation row's block count.
fn check_rows<W, const R: usize>(w: &[&[W]; R], blocks: usize) {
    for row in w {
        assert_eq!(row.len(), blocks, "K-quant dot: block count mismatch");
    }
}

/// Q4_K · Q8_K for `R` rows, in the order of `quant::q4_k::vec_dot` (`BATCHED`:
/// `vec_dot_batched`, one fused multiply-add per 64 values instead of per super-block).
///
/// Integer bounds per super-block: a 32-value group sums at most 32 · 15 · 128 = 61440
/// in magnitude, times a scale < 64, eight groups: < 2^25.
///
/// # Panics
/// If a row's block count differs from the activation row's.
#[inline(always)]
// Several per-row arrays are indexed by the same row number.
#[allow(clippy::needless_range_loop)]
pub(crate) unsafe fn rows_q4_k<D: I8Dot, const R: usize, const BATCHED: bool>(
    w: [&[BlockQ4K]; R],
    a: &[BlockQ8K],
) -> [f32; R] {
    check_rows(&w, a.len());
    let mut total = [0.0f32; R];
    let mut total_min = [0.0f32; R];
    for (i, y) in a.iter().enumerate() {
        // SAFETY: block `i` exists in every row (checked); `qs` is 128 bytes read in
        // 32-byte steps, the activation quants 256 bytes read in 64-byte steps;
        // features per module contract.
        unsafe {
            let (b0, b1) = bsums(y);
            let pairs = vpaddq_s16(b0, b1);
            let mut pair_sums = [0i16; 8];
            vst1q_s16(pair_sums.as_mut_ptr(), pairs);
            let mut scales = [[0u8; 8]; R];
            let mut mins = [[0u8; 8]; R];
            let mut summ = [0i32; R];
            let (mut d, mut dmin) = ([0.0f32; R], [0.0f32; R]);
            for r in 0..R {
                let x = &w[r][i];
                let (s, m) = scales_and_mins(&x.scales);
                scales[r] = s;
                mins[r] = m;
                summ[r] = min_sum(m, pairs);
                d[r] = f16_to_f32(x.d.0) * y.d();
                dmin[r] = f16_to_f32(x.dmin.0) * y.d();
            }
            let mask = vdupq_n_u8(0x0F);
            let mut acc = [vdupq_n_s32(0); R];
            for pair in 0..QK_K / 64 {
                let act = load_64(y.qs.as_ptr().add(64 * pair));
                for r in 0..R {
                    let q = w[r][i].qs.as_ptr().add(32 * pair);
                    let (q0, q1) = (load_u8(q), load_u8(q.add(16)));
                    let low = dot_32::<D>(vandq_u8(q0, mask), vandq_u8(q1, mask), act[0], act[1]);
                    let high = dot_32::<D>(vshrq_n_u8(q0, 4), vshrq_n_u8(q1, 4), act[2], act[3]);
                    let sum = vmlaq_n_s32(
                        vmulq_n_s32(low, scales[r][2 * pair] as i32),
                        high,
                        scales[r][2 * pair + 1] as i32,
                    );
                    if BATCHED {
                        let (g0, g1) = (2 * pair, 2 * pair + 1);
                        let min = mins[r][g0] as i32 * pair_sums[g0] as i32
                            + mins[r][g1] as i32 * pair_sums[g1] as i32;
                        total[r] = (vaddvq_s32(sum) as f32).mul_add(d[r], total[r]);
                        total_min[r] = (min as f32).mul_add(dmin[r], total_min[r]);
                    } else {
                        acc[r] = vaddq_s32(acc[r], sum);
                    }
                }
            }
            if !BATCHED {
                for r in 0..R {
                    total[r] = (vaddvq_s32(acc[r]) as f32).mul_add(d[r], total[r]);
                    total_min[r] = (summ[r] as f32).mul_add(dmin[r], total_min[r]);
                }
            }
        }
    }
    std::array::from_fn(|r| total[r] - total_min[r])
}

/// Q5_K · Q8_K for `R` rows: as Q4_K, each group taking its fifth bits from one bit of
/// the 32 `qh` bytes (group `g` from bit `g`).
///
/// Integer bounds: a group sums at most 32 · 31 · 128 < 2^17, times a scale < 64,
/// eight groups: < 2^26.
///
/// # Panics
/// If a row's block count differs from the activation row's.
#[inline(always)]
// Several per-row arrays are indexed by the same row number.
#[allow(clippy::needless_range_loop)]
pub(crate) unsafe fn rows_q5_k<D: I8Dot, const R: usize>(
    w: [&[BlockQ5K]; R],
    a: &[BlockQ8K],
) -> [f32; R] {
    check_rows(&w, a.len());
    let mut sumf = [0.0f32; R];
    for (i, y) in a.iter().enumerate() {
        // SAFETY: as in `rows_q4_k`; `qh` is 32 bytes.
        unsafe {
            let (b0, b1) = bsums(y);
            let pairs = vpaddq_s16(b0, b1);
            let mut scales = [[0u8; 8]; R];
            let mut summ = [0i32; R];
            let mut high_bits = [[vdupq_n_u8(0); 2]; R];
            for r in 0..R {
                let x = &w[r][i];
                let (s, m) = scales_and_mins(&x.scales);
                scales[r] = s;
                summ[r] = min_sum(m, pairs);
                high_bits[r] = [load_u8(x.qh.as_ptr()), load_u8(x.qh.as_ptr().add(16))];
            }
            let (mask, one, two) = (vdupq_n_u8(0x0F), vdupq_n_u8(1), vdupq_n_u8(2));
            let mut acc = [vdupq_n_s32(0); R];
            for pair in 0..QK_K / 64 {
                let act = load_64(y.qs.as_ptr().add(64 * pair));
                for r in 0..R {
                    let q = w[r][i].qs.as_ptr().add(32 * pair);
                    let (q0, q1) = (load_u8(q), load_u8(q.add(16)));
                    let [h0, h1] = high_bits[r];
                    // Bit 0 of the shifted `qh` bytes is the fifth bit of group 2·pair,
                    // bit 1 that of group 2·pair + 1.
                    let low0 = vorrq_u8(vandq_u8(q0, mask), vshlq_n_u8(vandq_u8(h0, one), 4));
                    let low1 = vorrq_u8(vandq_u8(q1, mask), vshlq_n_u8(vandq_u8(h1, one), 4));
                    let high0 = vorrq_u8(vshrq_n_u8(q0, 4), vshlq_n_u8(vandq_u8(h0, two), 3));
                    let high1 = vorrq_u8(vshrq_n_u8(q1, 4), vshlq_n_u8(vandq_u8(h1, two), 3));
                    high_bits[r] = [vshrq_n_u8(h0, 2), vshrq_n_u8(h1, 2)];
                    let low = dot_32::<D>(low0, low1, act[0], act[1]);
                    let high = dot_32::<D>(high0, high1, act[2], act[3]);
                    acc[r] = vmlaq_n_s32(acc[r], low, scales[r][2 * pair] as i32);
                    acc[r] = vmlaq_n_s32(acc[r], high, scales[r][2 * pair + 1] as i32);
                }
            }
            for r in 0..R {
                let x = &w[r][i];
                let d = f16_to_f32(x.d.0) * y.d();
                let dmin = f16_to_f32(x.dmin.0) * y.d();
                sumf[r] += d * vaddvq_s32(acc[r]) as f32 - dmin * summ[r] as f32;
            }
        }
    }
    sumf
}

/// Q6_K · Q8_K for `R` rows, in the order of `quant::q6_k::vec_dot` (llama.cpp's x86
/// `ggml_vec_dot_q6_K_q8_K`): per super-block, 8 exact i32 lanes, lane `l` summing
/// values `4l..4l+4` of every 32-value chunk (here: lanes 0..4 are the `sdot` lanes of
/// the chunk's first 16 values, lanes 4..8 those of its second 16), each value times
/// its group scale, minus `32 · (sc_{2l} · bsum_{2l} + sc_{2l+1} · bsum_{2l+1})`; the
/// lanes fused into two f32x4 accumulators by `d_w · d_a`, reduced as
/// `hsum_float_8`. Each 128-value half reads 64 `ql` bytes (low nibbles: values 0..64,
/// high nibbles: values 64..128) and 32 `qh` bytes (2 bits per value, shifted by 0, 2,
/// 4, 6 for the four 32-value quarters); the quants are dotted unsigned (0..64).
///
/// `TILED`: the order of `quant::q6_k::vec_dot_tiled` instead (llama.cpp's tiled
/// matmul, for matmuls of 8 or more tokens): per super-block the exact integer total of
/// the 8 lanes, `r = f32(total) · d_w`, then one fused multiply-add of `r` and `d_a`
/// into a scalar.
///
/// Integer bounds: a lane sums 32 products of at most 63 · 128 · 128 (< 2^25) and an
/// offset below 2^22; a super-block's total is below 2^31 (`quant::q6_k::vec_dot_tiled`).
///
/// # Panics
/// If a row's block count differs from the activation row's.
#[inline(always)]
// Several per-row arrays are indexed by the same row number.
#[allow(clippy::needless_range_loop)]
pub(crate) unsafe fn rows_q6_k<D: I8Dot, const R: usize, const TILED: bool>(
    w: [&[BlockQ6K]; R],
    a: &[BlockQ8K],
) -> [f32; R] {
    check_rows(&w, a.len());
    // SAFETY: register operations.
    let mut acc = unsafe { [[vdupq_n_f32(0.0); 2]; R] };
    let mut total = [0.0f32; R];
    for (i, y) in a.iter().enumerate() {
        // SAFETY: block `i` exists in every row (checked); `ql` is 128 bytes, `qh` 64,
        // `scales` 16 and the activation quants 256, all read within their fields;
        // features per module contract.
        unsafe {
            let (b0, b1) = bsums(y);
            // Per row: the offset of each lane, `sc_{2l} · bsum_{2l} + sc_{2l+1} ·
            // bsum_{2l+1}` (lanes 0..4 from groups 0..8, lanes 4..8 from 8..16).
            let mut offset = [[vdupq_n_s32(0); 2]; R];
            for r in 0..R {
                let scales = vld1q_s8(w[r][i].scales.as_ptr());
                let low = vmovl_s8(vget_low_s8(scales));
                let high = vmovl_high_s8(scales);
                offset[r] = [
                    vpaddq_s32(
                        vmull_s16(vget_low_s16(b0), vget_low_s16(low)),
                        vmull_high_s16(b0, low),
                    ),
                    vpaddq_s32(
                        vmull_s16(vget_low_s16(b1), vget_low_s16(high)),
                        vmull_high_s16(b1, high),
                    ),
                ];
            }
            let (mask, two_bits) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x30));
            let mut lanes = [[vdupq_n_s32(0); 2]; R];
            for half in 0..QK_K / 128 {
                let act_ptr = y.qs.as_ptr().add(128 * half);
                let mut act = [vdupq_n_s8(0); 8];
                for (g, v) in act.iter_mut().enumerate() {
                    *v = load_i8(act_ptr.add(16 * g));
                }
                for r in 0..R {
                    let ql = w[r][i].ql.as_ptr().add(64 * half);
                    let qh = w[r][i].qh.as_ptr().add(32 * half);
                    let l = [
                        load_u8(ql),
                        load_u8(ql.add(16)),
                        load_u8(ql.add(32)),
                        load_u8(ql.add(48)),
                    ];
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
                    // A plain loop, not `array::from_fn`: a closure is a function of its
                    // own without the entry point's target features, and `sdot` must be
                    // inlined into a `dotprod` function.
                    for g in 0..8 {
                        let dot = D::dot(vdupq_n_s32(0), vreinterpretq_s8_u8(q[g]), act[g]);
                        let scale = w[r][i].scales[8 * half + g] as i32;
                        lanes[r][g % 2] = vmlaq_n_s32(lanes[r][g % 2], dot, scale);
                    }
                }
            }
            for r in 0..R {
                let lane = [
                    vsubq_s32(lanes[r][0], vshlq_n_s32(offset[r][0], 5)),
                    vsubq_s32(lanes[r][1], vshlq_n_s32(offset[r][1], 5)),
                ];
                if TILED {
                    let s = vaddvq_s32(vaddq_s32(lane[0], lane[1]));
                    let x = s as f32 * f16_to_f32(w[r][i].d.0);
                    total[r] = x.mul_add(y.d(), total[r]);
                    continue;
                }
                let d = y.d() * f16_to_f32(w[r][i].d.0);
                for k in 0..2 {
                    acc[r][k] = vfmaq_n_f32(acc[r][k], vcvtq_f32_s32(lane[k]), d);
                }
            }
        }
    }
    if TILED {
        return total;
    }
    // SAFETY: register operations: ggml's `hsum_float_8` of the two accumulators.
    std::array::from_fn(|r| unsafe {
        let t = vaddq_f32(acc[r][0], acc[r][1]);
        let u = vadd_f32(vget_low_f32(t), vget_high_f32(t));
        vget_lane_f32::<0>(u) + vget_lane_f32::<1>(u)
    })
}

/// A K-quant format's `R`-row kernel, for [`matvec`].
pub(crate) trait RowsK {
    type W: Block;
    unsafe fn rows<D: I8Dot, const R: usize>(w: [&[Self::W]; R], a: &[BlockQ8K]) -> [f32; R];
}

pub(crate) struct Q4K;
pub(crate) struct Q5K;
pub(crate) struct Q6K;

impl RowsK for Q4K {
    type W = BlockQ4K;
    #[inline(always)]
    unsafe fn rows<D: I8Dot, const R: usize>(w: [&[BlockQ4K]; R], a: &[BlockQ8K]) -> [f32; R] {
        // SAFETY: forwarded contract.
        unsafe { rows_q4_k::<D, R, false>(w, a) }
    }
}

impl RowsK for Q5K {
    type W = BlockQ5K;
    #[inline(always)]
    unsafe fn rows<D: I8Dot, const R: usize>(w: [&[BlockQ5K]; R], a: &[BlockQ8K]) -> [f32; R] {
        // SAFETY: forwarded contract.
        unsafe { rows_q5_k::<D, R>(w, a) }
    }
}

impl RowsK for Q6K {
    type W = BlockQ6K;
    #[inline(always)]
    unsafe fn rows<D: I8Dot, const R: usize>(w: [&[BlockQ6K]; R], a: &[BlockQ8K]) -> [f32; R] {
        // SAFETY: forwarded contract.
        unsafe { rows_q6_k::<D, R, false>(w, a) }
    }
}

/// The dot product of one weight row with one activation row.
///
/// # Panics
/// If the block counts differ.
#[inline(always)]
pub(crate) unsafe fn dot_row<F: RowsK, D: I8Dot>(w: &[F::W], a: &[BlockQ8K]) -> f32 {
    // SAFETY: forwarded contract.
    unsafe { F::rows::<D, 1>([w], a)[0] }
}

/// `out[r] = dot(row r of w, a)` for consecutive weight rows of `row_bytes` bytes, two
/// rows at a time.
///
/// # Panics
/// If `w` is not `out.len()` rows, or a row does not match the activation row.
#[inline(always)]
pub(crate) unsafe fn matvec<F: RowsK, D: I8Dot>(
    w: &[u8],
    row_bytes: usize,
    a: &ActRow<'_>,
    out: &mut [f32],
) {
    assert_eq!(w.len(), row_bytes * out.len(), "matvec: weight bytes");
    if row_bytes == 0 {
        out.fill(0.0);
        return;
    }
    let act: &[BlockQ8K] = as_blocks(a.bytes);
    let mut out_pairs = out.chunks_exact_mut(2);
    let mut w_pairs = w.chunks_exact(2 * row_bytes);
    for (o, w) in (&mut out_pairs).zip(&mut w_pairs) {
        let (w0, w1) = w.split_at(row_bytes);
        // SAFETY: per module contract; the rows are checked by the kernel.
        let r = unsafe { F::rows::<D, 2>([as_blocks(w0), as_blocks(w1)], act) };
        o.copy_from_slice(&r);
    }
    if let [o] = out_pairs.into_remainder() {
        // SAFETY: as above.
        *o = unsafe { F::rows::<D, 1>([as_blocks(w_pairs.remainder())], act)[0] };
    }
}
