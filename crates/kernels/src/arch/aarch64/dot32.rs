//! Dot products of the 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with their
//! 8-bit activation blocks on 128-bit NEON registers — the decode (matrix-vector)
//! kernels of SmolLM2 (Q4_1), Gemma 3 (Q5_0, Q8_0) and every Q4_0/Q8_0 file.
//!
//! Per block, as llama.cpp's NEON `ggml_vec_dot_q*_q8_*` (ggml-cpu/arch/arm/quants.c):
//! the 16 packed weight bytes are expanded to two registers of 16 quants (low nibbles =
//! values 0..16, high nibbles = values 16..32, plus the fifth bits for Q5), multiplied
//! with the 32 activation quants into four exact i32 lanes ([`I8Dot`]: `sdot`, or
//! `smull` + `sadalp` without dotprod), converted to f32 and accumulated with one fused
//! multiply-add by `d_w * d_a`. Blocks alternate between two accumulators so that one
//! block's multiply-add does not wait for the previous one; Q4_1/Q5_1's `m_w * s_a`
//! terms go to two scalar sums the same way. The integer part is exact; only the order
//! of the f32 sums differs from the scalar reference, which adds `sumi * d_w * d_a` block
//! by block (the tests name the tolerance, and check bit-exactness on inputs whose sums
//! are exact in any order).
//!
//! The signed formats keep ggml's offsets inside the bytes (`q - 8`, `q - 16`): with a
//! signed-by-signed `sdot` there is no need for x86's unsigned-times-signed sign trick.

use std::arch::aarch64::*;

use super::simd::{I8Dot, bit_mask_16, f16_to_f32, load_i8, load_u8};
use crate::blocks::{Block, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};

/// One 32-value weight format and its activation format.
pub(crate) trait Format32 {
    type W: Block;
    type A: Block;
    /// Whether blocks carry a minimum (`m_w * s_a` term).
    const MIN: bool;
    /// Four i32 lanes whose total is `Σ q_w · q_a` over the block (exact).
    unsafe fn ints<D: I8Dot>(w: &Self::W, a: &Self::A) -> int32x4_t;
    /// `d_w * d_a`.
    unsafe fn scale(w: &Self::W, a: &Self::A) -> f32;
    /// `m_w * s_a` (formats with a minimum; 0 otherwise).
    unsafe fn min_term(w: &Self::W, a: &Self::A) -> f32;
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

/// `acc` plus the products of the block's two quant registers with its 32 activation
/// quants.
#[inline(always)]
unsafe fn dot_block<D: I8Dot>(low: int8x16_t, high: int8x16_t, a: &[i8; 32]) -> int32x4_t {
    // SAFETY: `a` is 32 readable bytes; `D`'s features per module contract.
    unsafe {
        let acc = D::dot(vdupq_n_s32(0), low, load_i8(a.as_ptr()));
        D::dot(acc, high, load_i8(a.as_ptr().add(16)))
    }
}

impl Format32 for Q4_0 {
    type W = BlockQ4_0;
    type A = BlockQ8_0;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn ints<D: I8Dot>(w: &BlockQ4_0, a: &BlockQ8_0) -> int32x4_t {
        // SAFETY: field sizes as the helpers require; features per module contract.
        unsafe {
            let (low, high) = nibbles(&w.qs);
            let eight = vdupq_n_s8(8);
            let low = vsubq_s8(vreinterpretq_s8_u8(low), eight);
            let high = vsubq_s8(vreinterpretq_s8_u8(high), eight);
            dot_block::<D>(low, high, &a.qs)
        }
    }
    #[inline(always)]
    unsafe fn scale(w: &BlockQ4_0, a: &BlockQ8_0) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.d.0) * f16_to_f32(a.d.0) }
    }
    #[inline(always)]
    unsafe fn min_term(_: &BlockQ4_0, _: &BlockQ8_0) -> f32 {
        0.0
    }
}

impl Format32 for Q4_1 {
    type W = BlockQ4_1;
    type A = BlockQ8_1;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn ints<D: I8Dot>(w: &BlockQ4_1, a: &BlockQ8_1) -> int32x4_t {
        // SAFETY: field sizes as the helpers require; features per module contract.
        unsafe {
            let (low, high) = nibbles(&w.qs);
            dot_block::<D>(vreinterpretq_s8_u8(low), vreinterpretq_s8_u8(high), &a.qs)
        }
    }
    #[inline(always)]
    unsafe fn scale(w: &BlockQ4_1, a: &BlockQ8_1) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.d.0) * f16_to_f32(a.d.0) }
    }
    #[inline(always)]
    unsafe fn min_term(w: &BlockQ4_1, a: &BlockQ8_1) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.m.0) * f16_to_f32(a.s.0) }
    }
}

impl Format32 for Q5_0 {
    type W = BlockQ5_0;
    type A = BlockQ8_0;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn ints<D: I8Dot>(w: &BlockQ5_0, a: &BlockQ8_0) -> int32x4_t {
        // SAFETY: field sizes as the helpers require; features per module contract.
        unsafe {
            let (low, high) = nibbles(&w.qs);
            let bits = w.high_bits();
            // q - 16 as a signed byte: the nibble itself when the fifth bit is set, the
            // nibble with the top four bits set (= nibble - 16) when it is clear.
            let top = vdupq_n_u8(0xF0);
            let low = vorrq_u8(low, vbicq_u8(top, bit_mask_16(bits as u16)));
            let high = vorrq_u8(high, vbicq_u8(top, bit_mask_16((bits >> 16) as u16)));
            dot_block::<D>(vreinterpretq_s8_u8(low), vreinterpretq_s8_u8(high), &a.qs)
        }
    }
    #[inline(always)]
    unsafe fn scale(w: &BlockQ5_0, a: &BlockQ8_0) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.d.0) * f16_to_f32(a.d.0) }
    }
    #[inline(always)]
    unsafe fn min_term(_: &BlockQ5_0, _: &BlockQ8_0) -> f32 {
        0.0
    }
}

impl Format32 for Q5_1 {
    type W = BlockQ5_1;
    type A = BlockQ8_1;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn ints<D: I8Dot>(w: &BlockQ5_1, a: &BlockQ8_1) -> int32x4_t {
        // SAFETY: field sizes as the helpers require; features per module contract.
        unsafe {
            let (low, high) = nibbles(&w.qs);
            let bits = w.high_bits();
            let bit = vdupq_n_u8(0x10);
            let low = vorrq_u8(low, vandq_u8(bit, bit_mask_16(bits as u16)));
            let high = vorrq_u8(high, vandq_u8(bit, bit_mask_16((bits >> 16) as u16)));
            dot_block::<D>(vreinterpretq_s8_u8(low), vreinterpretq_s8_u8(high), &a.qs)
        }
    }
    #[inline(always)]
    unsafe fn scale(w: &BlockQ5_1, a: &BlockQ8_1) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.d.0) * f16_to_f32(a.d.0) }
    }
    #[inline(always)]
    unsafe fn min_term(w: &BlockQ5_1, a: &BlockQ8_1) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.m.0) * f16_to_f32(a.s.0) }
    }
}

impl Format32 for Q8_0 {
    type W = BlockQ8_0;
    type A = BlockQ8_0;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn ints<D: I8Dot>(w: &BlockQ8_0, a: &BlockQ8_0) -> int32x4_t {
        // SAFETY: both quant fields are 32 bytes; features per module contract. Any
        // byte, -128 included, is exact: products of two signed bytes fit in i16.
        unsafe {
            let low = load_i8(w.qs.as_ptr());
            let high = load_i8(w.qs.as_ptr().add(16));
            dot_block::<D>(low, high, &a.qs)
        }
    }
    #[inline(always)]
    unsafe fn scale(w: &BlockQ8_0, a: &BlockQ8_0) -> f32 {
        // SAFETY: base floating point.
        unsafe { f16_to_f32(w.d.0) * f16_to_f32(a.d.0) }
    }
    #[inline(always)]
    unsafe fn min_term(_: &BlockQ8_0, _: &BlockQ8_0) -> f32 {
        0.0
    }
}

/// The dot product of one weight row with one activation row (same block count).
///
/// # Panics
/// If the block counts differ.
#[inline(always)]
pub(crate) unsafe fn dot_row<F: Format32, D: I8Dot>(w: &[F::W], a: &[F::A]) -> f32 {
    assert_eq!(w.len(), a.len(), "dot: block count mismatch");
    // SAFETY: blocks are read through references; `D`'s features per module contract.
    unsafe {
        let mut acc0 = vdupq_n_f32(0.0);
        let mut acc1 = vdupq_n_f32(0.0);
        let (mut min0, mut min1) = (0.0f32, 0.0f32);
        let mut pairs_w = w.chunks_exact(2);
        let mut pairs_a = a.chunks_exact(2);
        for (pw, pa) in (&mut pairs_w).zip(&mut pairs_a) {
            let q0 = vcvtq_f32_s32(F::ints::<D>(&pw[0], &pa[0]));
            let q1 = vcvtq_f32_s32(F::ints::<D>(&pw[1], &pa[1]));
            acc0 = vfmaq_n_f32(acc0, q0, F::scale(&pw[0], &pa[0]));
            acc1 = vfmaq_n_f32(acc1, q1, F::scale(&pw[1], &pa[1]));
            if F::MIN {
                min0 += F::min_term(&pw[0], &pa[0]);
                min1 += F::min_term(&pw[1], &pa[1]);
            }
        }
        if let (Some(w), Some(a)) = (pairs_w.remainder().first(), pairs_a.remainder().first()) {
            let q = vcvtq_f32_s32(F::ints::<D>(w, a));
            acc0 = vfmaq_n_f32(acc0, q, F::scale(w, a));
            if F::MIN {
                min0 += F::min_term(w, a);
            }
        }
        vaddvq_f32(vaddq_f32(acc0, acc1)) + (min0 + min1)
    }
}
