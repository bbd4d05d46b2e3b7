//! Dot products of the 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with their
//! 8-bit activation blocks on 128-bit NEON registers — the decode (matrix-vector)
//! kernels of SmolLM2 (Q4_1), Gemma 3 (Q5_0, Q8_0) and every Q4_0/Q8_0 file.
//!
//! Every output follows llama.cpp's x86 summation order ([`crate::quant::order`]), so
//! these give the scalar reference's bits (and the x86 paths'): per block, the 16
//! packed weight bytes are expanded to two registers of 16 quants (low nibbles = values
//! 0..16, high nibbles = values 16..32, plus the fifth bits for Q5), each multiplied
//! with its 16 activation quants into four exact i32 lanes of 4 values ([`I8Dot`]:
//! `sdot`, or `smull` + pairwise adds without dotprod), converted to f32 and fused into
//! its accumulator by `d_w * d_a` — ggml's 8 lanes as two registers; Q4_1/Q5_1's
//! `m_w * s_a` terms go to one scalar fused sum in block order; the final reduction is
//! `hsum_float_8`'s.
//!
//! [`rows`] computes one or two weight rows against the same activation row: the
//! matrix-vector kernel ([`matvec`]) takes rows in pairs, so each activation block is
//! loaded (and its scale widened) once for two rows. A row's arithmetic is the same
//! whether it is computed alone or paired, so the single dot product ([`dot_row`]), the
//! matvec and any split of the rows over threads give identical bits.
//!
//! The signed formats keep ggml's offsets inside the bytes (`q - 8`, `q - 16`): with a
//! signed-by-signed `sdot` there is no need for x86's unsigned-times-signed sign trick.

use std::arch::aarch64::*;

use super::simd::{I8Dot, bit_mask_16, f16_to_f32, load_i8, load_u8};
use crate::blocks::{
    Block, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, as_blocks,
};
use crate::matmul::ActRow;

/// A 32-value activation block (Q8_0 or Q8_1).
pub(crate) trait Act32: Block {
    /// The 32 quants.
    fn qs(&self) -> &[i8; 32];
    /// The scale `d` as f32.
    unsafe fn d(&self) -> f32;
    /// Q8_1's `s = d · Σq` as f32 (0 for Q8_0, whose weights have no minimum).
    unsafe fn s(&self) -> f32;
}

impl Act32 for BlockQ8_0 {
    #[inline(always)]
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
    #[inline(always)]
    unsafe fn d(&self) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(self.d.0) }
    }
    #[inline(always)]
    unsafe fn s(&self) -> f32 {
        0.0
    }
}

impl Act32 for BlockQ8_1 {
    #[inline(always)]
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
    #[inline(always)]
    unsafe fn d(&self) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(self.d.0) }
    }
    #[inline(always)]
    unsafe fn s(&self) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(self.s.0) }
    }
}

/// One 32-value weight format and its activation format.
pub(crate) trait Format32 {
    type W: Block;
    type A: Act32;
    /// Whether blocks carry a minimum (`m_w * s_a` term).
    const MIN: bool;
    /// The block's 32 quants as signed bytes, values 0..16 and 16..32, with ggml's
    /// offset applied (`q - 8`, `q - 16`) for the formats without a minimum.
    unsafe fn quants(w: &Self::W) -> (int8x16_t, int8x16_t);
    /// The scale `d` as f32.
    unsafe fn d(w: &Self::W) -> f32;
    /// The minimum `m` as f32 (formats with a minimum; 0 otherwise).
    unsafe fn m(w: &Self::W) -> f32;
}

pub(crate) struct Q4_0;
pub(crate) struct Q4_1;
pub(crate) struct Q5_0;
pub(crate) struct Q5_1;
pub(crate) struct Q8_0;

/// The low and high nibbles of 16 packed bytes: values 0..16 and 16..32 of a block.
#[inline(always)]
unsafe fn nibbles(qs: &[u8; 16]) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: `qs` is 16 readable bytes; register operations otherwise.
    unsafe {
        let packed = load_u8(qs.as_ptr());
        (vandq_u8(packed, vdupq_n_u8(0x0F)), vshrq_n_u8(packed, 4))
    }
}

/// Reinterprets two byte registers as signed.
#[inline(always)]
unsafe fn signed(q: (uint8x16_t, uint8x16_t)) -> (int8x16_t, int8x16_t) {
    // SAFETY: register reinterpretation only.
    unsafe { (vreinterpretq_s8_u8(q.0), vreinterpretq_s8_u8(q.1)) }
}

impl Format32 for Q4_0 {
    type W = BlockQ4_0;
    type A = BlockQ8_0;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn quants(w: &BlockQ4_0) -> (int8x16_t, int8x16_t) {
        // SAFETY: field sizes as the helpers require; register operations otherwise.
        unsafe {
            let (low, high) = signed(nibbles(&w.qs));
            let eight = vdupq_n_s8(8);
            (vsubq_s8(low, eight), vsubq_s8(high, eight))
        }
    }
    #[inline(always)]
    unsafe fn d(w: &BlockQ4_0) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.d.0) }
    }
    #[inline(always)]
    unsafe fn m(_: &BlockQ4_0) -> f32 {
        0.0
    }
}

impl Format32 for Q4_1 {
    type W = BlockQ4_1;
    type A = BlockQ8_1;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn quants(w: &BlockQ4_1) -> (int8x16_t, int8x16_t) {
        // SAFETY: field sizes as the helpers require; quants <= 15 are valid i8.
        unsafe { signed(nibbles(&w.qs)) }
    }
    #[inline(always)]
    unsafe fn d(w: &BlockQ4_1) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.d.0) }
    }
    #[inline(always)]
    unsafe fn m(w: &BlockQ4_1) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.m.0) }
    }
}

impl Format32 for Q5_0 {
    type W = BlockQ5_0;
    type A = BlockQ8_0;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn quants(w: &BlockQ5_0) -> (int8x16_t, int8x16_t) {
        // SAFETY: field sizes as the helpers require; register operations otherwise.
        unsafe {
            let (low, high) = nibbles(&w.qs);
            let bits = w.high_bits();
            // q - 16 as a signed byte: the nibble itself when the fifth bit is set, the
            // nibble with the top four bits set (= nibble - 16) when it is clear.
            let top = vdupq_n_u8(0xF0);
            let low = vorrq_u8(low, vbicq_u8(top, bit_mask_16(bits as u16)));
            let high = vorrq_u8(high, vbicq_u8(top, bit_mask_16((bits >> 16) as u16)));
            signed((low, high))
        }
    }
    #[inline(always)]
    unsafe fn d(w: &BlockQ5_0) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.d.0) }
    }
    #[inline(always)]
    unsafe fn m(_: &BlockQ5_0) -> f32 {
        0.0
    }
}

impl Format32 for Q5_1 {
    type W = BlockQ5_1;
    type A = BlockQ8_1;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn quants(w: &BlockQ5_1) -> (int8x16_t, int8x16_t) {
        // SAFETY: field sizes as the helpers require; quants <= 31 are valid i8.
        unsafe {
            let (low, high) = nibbles(&w.qs);
            let bits = w.high_bits();
            let bit = vdupq_n_u8(0x10);
            let low = vorrq_u8(low, vandq_u8(bit, bit_mask_16(bits as u16)));
            let high = vorrq_u8(high, vandq_u8(bit, bit_mask_16((bits >> 16) as u16)));
            signed((low, high))
        }
    }
    #[inline(always)]
    unsafe fn d(w: &BlockQ5_1) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.d.0) }
    }
    #[inline(always)]
    unsafe fn m(w: &BlockQ5_1) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.m.0) }
    }
}

impl Format32 for Q8_0 {
    type W = BlockQ8_0;
    type A = BlockQ8_0;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn quants(w: &BlockQ8_0) -> (int8x16_t, int8x16_t) {
        // SAFETY: the quant field is 32 bytes. Any byte, -128 included, is exact:
        // products of two signed bytes fit in i16.
        unsafe { (load_i8(w.qs.as_ptr()), load_i8(w.qs.as_ptr().add(16))) }
    }
    #[inline(always)]
    unsafe fn d(w: &BlockQ8_0) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.d.0) }
    }
    #[inline(always)]
    unsafe fn m(_: &BlockQ8_0) -> f32 {
        0.0
    }
}

/// One row's running sums in llama.cpp's x86 order ([`crate::quant::order`]): ggml's 8
/// f32 lane accumulators as two registers (lanes 0..4 for values 0..16 of each block,
/// 4..8 for values 16..32) and the scalar minimum sum.
#[derive(Clone, Copy)]
struct RowSums {
    acc: [float32x4_t; 2],
    min: f32,
}

/// Adds block `w` times the activation block (quants `a`, scale `da`, `s` term `sa`) to
/// `sums`: per 16 values, 4 exact lane sums of 4 values each (`sdot`'s grouping, which
/// is ggml's), fused into their accumulators by `d_w · d_a`.
#[inline(always)]
unsafe fn step<F: Format32, D: I8Dot>(
    sums: &mut RowSums,
    w: &F::W,
    a: (int8x16_t, int8x16_t),
    da: f32,
    sa: f32,
) {
    // SAFETY: register operations on the block's fields; `D`'s features per module
    // contract.
    unsafe {
        let (low, high) = F::quants(w);
        let zero = vdupq_n_s32(0);
        let d = F::d(w) * da;
        if F::MIN {
            sums.min = F::m(w).mul_add(sa, sums.min);
        }
        sums.acc[0] = vfmaq_n_f32(sums.acc[0], vcvtq_f32_s32(D::dot(zero, low, a.0)), d);
        sums.acc[1] = vfmaq_n_f32(sums.acc[1], vcvtq_f32_s32(D::dot(zero, high, a.1)), d);
    }
}

/// ggml's `hsum_float_8` of the two accumulators, plus the minimum sum.
#[inline(always)]
unsafe fn finish<F: Format32>(s: &RowSums) -> f32 {
    // SAFETY: register operations only.
    unsafe {
        let t = vaddq_f32(s.acc[0], s.acc[1]);
        let u = vadd_f32(vget_low_f32(t), vget_high_f32(t));
        let total = vget_lane_f32::<0>(u) + vget_lane_f32::<1>(u);
        if F::MIN { total + s.min } else { total }
    }
}

/// The dot products of `R` weight rows with one activation row (every row has the
/// activation row's block count).
///
/// # Panics
/// If a row's block count differs from the activation row's.
#[inline(always)]
pub(crate) unsafe fn rows<F: Format32, D: I8Dot, const R: usize>(
    w: [&[F::W]; R],
    a: &[F::A],
) -> [f32; R] {
    for row in &w {
        assert_eq!(row.len(), a.len(), "dot: block count mismatch");
    }
    // SAFETY: blocks are read through references, at indices below `a.len()`, which is
    // every row's length (asserted); `D`'s features per module contract.
    unsafe {
        let zero = RowSums {
            acc: [vdupq_n_f32(0.0); 2],
            min: 0.0,
        };
        let mut sums = [zero; R];
        let load = |b: &F::A| (load_i8(b.qs().as_ptr()), load_i8(b.qs().as_ptr().add(16)));
        for (b, act) in a.iter().enumerate() {
            let (q, d) = (load(act), act.d());
            let s = if F::MIN { act.s() } else { 0.0 };
            for (sums, w) in sums.iter_mut().zip(&w) {
                step::<F, D>(sums, &w[b], q, d, s);
            }
        }
        let mut out = [0.0f32; R];
        for (o, s) in out.iter_mut().zip(&sums) {
            *o = finish::<F>(s);
        }
        out
    }
}

/// The dot product of one weight row with one activation row (same block count).
///
/// # Panics
/// If the block counts differ.
#[inline(always)]
pub(crate) unsafe fn dot_row<F: Format32, D: I8Dot>(w: &[F::W], a: &[F::A]) -> f32 {
    // SAFETY: forwarded contract.
    unsafe { rows::<F, D, 1>([w], a)[0] }
}

/// `out[r] = dot(row r of w, a)` for consecutive weight rows of `row_bytes` bytes, two
/// rows at a time.
///
/// # Panics
/// If `w` is not `out.len()` rows, or a row does not match the activation row.
#[inline(always)]
pub(crate) unsafe fn matvec<F: Format32, D: I8Dot>(
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
    let act: &[F::A] = as_blocks(a.bytes);
    let mut out_pairs = out.chunks_exact_mut(2);
    let mut w_pairs = w.chunks_exact(2 * row_bytes);
    for (o, w) in (&mut out_pairs).zip(&mut w_pairs) {
        let (w0, w1) = w.split_at(row_bytes);
        // SAFETY: per module contract; the rows were checked above and in `rows`.
        let r = unsafe { rows::<F, D, 2>([as_blocks(w0), as_blocks(w1)], act) };
        o.copy_from_slice(&r);
    }
    if let [o] = out_pairs.into_remainder() {
        // SAFETY: as above.
        *o = unsafe { rows::<F, D, 1>([as_blocks(w_pairs.remainder())], act)[0] };
    }
}
