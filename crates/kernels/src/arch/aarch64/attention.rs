//! The attention kernels of [`crate::attention`] on NEON (both aarch64 paths), each
//! exact against the scalar reference there: the same operations in the same order per
//! output value, independent values side by side.
//!
//! - Scores of a query tile: the [`QUERY_TILE`] queries are the lanes of two f32
//!   registers; each lane takes one fused multiply-add (`fmla`) per `d`, in order.
//!   Four keys at a time.
//! - Accumulators: 8 values per step side by side, keys in order; the F32 one takes
//!   one fused multiply-add per key, the F16 one rounds to F16 after each step (`fcvtn`,
//!   ties to even) as `vec_mad_f16` / `vec_scale_f16` do, with the same fused
//!   multiply-add.
//! - Decode scores: [`super::float::dot_f16_ggml`] per key.

use std::arch::aarch64::*;

use half::f16;

use super::simd::{f16_to_f32, f16x4_high_to_f32, f16x4_to_f32, f32x8_to_f16};
use crate::attention::{QUERY_TILE, check_accumulate, check_scores_f32};

/// 8 f16 values at `p` widened, as two registers.
///
/// # Safety
/// 8 values readable at `p`.
#[inline(always)]
unsafe fn ld16(p: *const f16) -> [float32x4_t; 2] {
    // SAFETY: forwarded contract; `f16` is a `u16` in memory.
    unsafe {
        let h = vld1q_u16(p.cast::<u16>());
        [f16x4_to_f32(vget_low_u16(h)), f16x4_high_to_f32(h)]
    }
}

/// `x` rounded to f16 and back (round to nearest even).
#[inline(always)]
unsafe fn round16(x: [float32x4_t; 2]) -> [float32x4_t; 2] {
    // SAFETY: register operations only.
    unsafe {
        let h = f32x8_to_f16(x[0], x[1]);
        [f16x4_to_f32(vget_low_u16(h)), f16x4_high_to_f32(h)]
    }
}

/// Eight f32 sums, one per query of the tile.
type Acc = [float32x4_t; 2];

/// `acc[l] = fma(q[l], k, acc[l])` for the 8 lanes.
#[inline(always)]
unsafe fn add_products(acc: &mut Acc, q: [float32x4_t; 2], k: float32x4_t) {
    // SAFETY: register operations only.
    unsafe {
        acc[0] = vfmaq_f32(acc[0], q[0], k);
        acc[1] = vfmaq_f32(acc[1], q[1], k);
    }
}

/// Stores `acc * scale` for the 8 lanes at `out`.
///
/// # Safety
/// 8 values writable at `out`.
#[inline(always)]
unsafe fn store_scores(acc: &Acc, scale: f32, out: *mut f32) {
    // SAFETY: forwarded contract.
    unsafe {
        vst1q_f32(out, vmulq_n_f32(acc[0], scale));
        vst1q_f32(out.add(4), vmulq_n_f32(acc[1], scale));
    }
}

/// Keys scored together.
const KEYS: usize = 4;

/// See [`crate::Kernels::attention_scores_f32`]; lengths checked above.
#[inline(always)]
pub(crate) unsafe fn scores_f32(
    queries_t: &[f32],
    keys: &[f16],
    key_stride: usize,
    n_keys: usize,
    scale: f32,
    out: &mut [f32],
) {
    check_scores_f32(queries_t.len(), keys.len(), key_stride, n_keys, out.len());
    let head_dim = queries_t.len() / QUERY_TILE;
    let whole = head_dim / 8 * 8;
    let q = queries_t.as_ptr();
    let k = keys.as_ptr();
    // SAFETY: the caller checked that key `j < n_keys` has `head_dim` values at
    // `j * key_stride`, that the tile holds `head_dim * 8` values and `out` `n_keys * 8`;
    // every access below stays inside those.
    unsafe {
        let query = |d: usize| {
            [
                vld1q_f32(q.add(d * QUERY_TILE)),
                vld1q_f32(q.add(d * QUERY_TILE + 4)),
            ]
        };
        let zero = vdupq_n_f32(0.0);
        let mut j = 0;
        while j + KEYS <= n_keys {
            let mut acc = [[zero; 2]; KEYS];
            let mut d = 0;
            while d < whole {
                let mut widened = [[vdupq_n_f32(0.0); 2]; KEYS];
                for (u, w) in widened.iter_mut().enumerate() {
                    *w = ld16(k.add((j + u) * key_stride + d));
                }
                for dd in 0..8 {
                    let qv = query(d + dd);
                    for (u, acc) in acc.iter_mut().enumerate() {
                        let half = widened[u][dd / 4];
                        let kv = match dd % 4 {
                            0 => vdupq_laneq_f32::<0>(half),
                            1 => vdupq_laneq_f32::<1>(half),
                            2 => vdupq_laneq_f32::<2>(half),
                            _ => vdupq_laneq_f32::<3>(half),
                        };
                        add_products(acc, qv, kv);
                    }
                }
                d += 8;
            }
            for d in whole..head_dim {
                let qv = query(d);
                for (u, acc) in acc.iter_mut().enumerate() {
                    let kv = vdupq_n_f32((*k.add((j + u) * key_stride + d)).to_f32());
                    add_products(acc, qv, kv);
                }
            }
            for (u, acc) in acc.iter().enumerate() {
                store_scores(acc, scale, out.as_mut_ptr().add((j + u) * QUERY_TILE));
            }
            j += KEYS;
        }
        while j < n_keys {
            let mut acc = [zero; 2];
            for d in 0..head_dim {
                let kv = vdupq_n_f32((*k.add(j * key_stride + d)).to_f32());
                add_products(&mut acc, query(d), kv);
            }
            store_scores(&acc, scale, out.as_mut_ptr().add(j * QUERY_TILE));
            j += 1;
        }
    }
}

/// Registers of 8 values the accumulators keep at once.
const REGS: usize = 8;

/// See [`crate::Kernels::attention_accumulate_f32`]; lengths checked above.
#[inline(always)]
pub(crate) unsafe fn accumulate_f32(acc: &mut [f32], values: &[f16], stride: usize, w: &[f32]) {
    check_accumulate(values.len(), stride, acc.len(), w.len(), w.len());
    let n = acc.len();
    let v = values.as_ptr();
    let mut d = 0;
    // SAFETY: row `j < w.len()` has `n` values at `j * stride` (checked above);
    // the accesses at `d..d + 8 * regs` stay below `n`.
    unsafe {
        while d + 8 <= n {
            let regs = ((n - d) / 8).min(REGS);
            let p = acc.as_mut_ptr().add(d);
            let mut a = [[vdupq_n_f32(0.0); 2]; REGS];
            for (r, a) in a[..regs].iter_mut().enumerate() {
                *a = [vld1q_f32(p.add(8 * r)), vld1q_f32(p.add(8 * r + 4))];
            }
            for (j, &wj) in w.iter().enumerate() {
                let row = v.add(j * stride + d);
                for (r, a) in a[..regs].iter_mut().enumerate() {
                    let x = ld16(row.add(8 * r));
                    a[0] = vfmaq_n_f32(a[0], x[0], wj);
                    a[1] = vfmaq_n_f32(a[1], x[1], wj);
                }
            }
            for (r, a) in a[..regs].iter().enumerate() {
                vst1q_f32(p.add(8 * r), a[0]);
                vst1q_f32(p.add(8 * r + 4), a[1]);
            }
            d += 8 * regs;
        }
        for (i, a) in acc.iter_mut().enumerate().skip(d) {
            for (j, &wj) in w.iter().enumerate() {
                *a = (*v.add(j * stride + i)).to_f32().mul_add(wj, *a);
            }
        }
    }
}

/// See [`crate::Kernels::attention_scores_f16`]; lengths checked above.
#[inline(always)]
pub(crate) unsafe fn scores_f16(
    query: &[f16],
    keys: &[f16],
    key_stride: usize,
    n_keys: usize,
    scale: f32,
    out: &mut [f32],
) {
    let n = query.len();
    for (j, out) in out[..n_keys].iter_mut().enumerate() {
        let key = &keys[j * key_stride..j * key_stride + n];
        // SAFETY: NEON is the aarch64 baseline.
        *out = unsafe { super::float::dot_f16_ggml(key, query) } * scale;
    }
}

/// See [`crate::Kernels::attention_accumulate_f16`]; lengths checked above.
#[inline(always)]
pub(crate) unsafe fn accumulate_f16(
    acc: &mut [f16],
    values: &[f16],
    stride: usize,
    w: &[f32],
    rescale: &[f32],
) {
    check_accumulate(values.len(), stride, acc.len(), w.len(), rescale.len());
    let n = acc.len();
    let v = values.as_ptr();
    let mut d = 0;
    // SAFETY: as in `accumulate_f32`; `acc` holds `n` values.
    unsafe {
        while d + 8 <= n {
            let regs = ((n - d) / 8).min(REGS);
            let p = acc.as_mut_ptr().add(d);
            let mut a = [[vdupq_n_f32(0.0); 2]; REGS];
            for (r, a) in a[..regs].iter_mut().enumerate() {
                *a = ld16(p.add(8 * r));
            }
            for (j, (&wj, &rj)) in w.iter().zip(rescale).enumerate() {
                if rj != 1.0 {
                    for a in &mut a[..regs] {
                        *a = round16([vmulq_n_f32(a[0], rj), vmulq_n_f32(a[1], rj)]);
                    }
                }
                let wv = vdupq_n_f32(wj);
                let row = v.add(j * stride + d);
                for (r, a) in a[..regs].iter_mut().enumerate() {
                    let x = ld16(row.add(8 * r));
                    *a = round16([vfmaq_f32(a[0], x[0], wv), vfmaq_f32(a[1], x[1], wv)]);
                }
            }
            for (r, a) in a[..regs].iter().enumerate() {
                // Every lane already holds an f16 value: this store is exact.
                vst1q_u16(p.add(8 * r).cast::<u16>(), f32x8_to_f16(a[0], a[1]));
            }
            d += 8 * regs;
        }
    }
    if d < n {
        let tail = &mut acc[d..];
        for (j, (&wj, &rj)) in w.iter().zip(rescale).enumerate() {
            if rj != 1.0 {
                crate::ops::vec_scale_f16_ref(tail, rj);
            }
            let row = &values[j * stride + d..j * stride + n];
            crate::ops::vec_mad_f16_ref(tail, row, wj);
        }
    }
}

/// A quantized block format of the value cache: how one 32-value block widens.
pub(crate) trait ValueBlock {
    /// Bytes per block.
    const BYTES: usize;
    /// The block's 32 values before the scale, as eight registers of 4.
    ///
    /// # Safety
    /// `Self::BYTES` readable at `p`.
    unsafe fn load(p: *const u8) -> [float32x4_t; 8];
}

/// Q8_0: an f16 scale, then 32 `i8`.
pub(crate) struct Q8Values;
/// Q4_0: an f16 scale, then 16 bytes: values 0..16 in the low nibbles, 16..32 in the
/// high ones, each `nibble - 8`.
pub(crate) struct Q4Values;

/// 16 `i8` as four registers of f32 (exact).
#[inline(always)]
unsafe fn widen_i8(x: int8x16_t) -> [float32x4_t; 4] {
    // SAFETY: register operations only.
    unsafe {
        let low = vmovl_s8(vget_low_s8(x));
        let high = vmovl_high_s8(x);
        [
            vcvtq_f32_s32(vmovl_s16(vget_low_s16(low))),
            vcvtq_f32_s32(vmovl_high_s16(low)),
            vcvtq_f32_s32(vmovl_s16(vget_low_s16(high))),
            vcvtq_f32_s32(vmovl_high_s16(high)),
        ]
    }
}

impl ValueBlock for Q8Values {
    const BYTES: usize = 34;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> [float32x4_t; 8] {
        // SAFETY: 34 bytes at `p` per the contract.
        unsafe {
            let [a, b, c, d] = widen_i8(vld1q_s8(p.add(2).cast()));
            let [e, f, g, h] = widen_i8(vld1q_s8(p.add(18).cast()));
            [a, b, c, d, e, f, g, h]
        }
    }
}

impl ValueBlock for Q4Values {
    const BYTES: usize = 18;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> [float32x4_t; 8] {
        // SAFETY: 18 bytes at `p` per the contract.
        unsafe {
            let bytes = vld1q_u8(p.add(2));
            let eight = vdupq_n_s8(8);
            let low = vsubq_s8(
                vreinterpretq_s8_u8(vandq_u8(bytes, vdupq_n_u8(0x0F))),
                eight,
            );
            let high = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(bytes)), eight);
            let [a, b, c, d] = widen_i8(low);
            let [e, f, g, h] = widen_i8(high);
            [a, b, c, d, e, f, g, h]
        }
    }
}

/// See [`crate::Kernels::attention_accumulate_quantized`]; lengths checked by the
/// caller (`acc.len()` a multiple of 32, every row holding its blocks).
#[inline(always)]
pub(crate) unsafe fn accumulate_quantized<B: ValueBlock>(
    acc: &mut [f32],
    values: &[u8],
    stride: usize,
    w: &[f32],
    rescale: &[f32],
) {
    assert!(
        acc.len().is_multiple_of(32),
        "attention accumulate: partial block"
    );
    check_accumulate(
        values.len(),
        stride,
        acc.len() / 32 * B::BYTES,
        w.len(),
        rescale.len(),
    );
    let v = values.as_ptr();
    // SAFETY: row `j` holds `acc.len() / 32` blocks of `B::BYTES` at `j * stride`
    // (checked above); `acc` is read and written 32 values per block.
    unsafe {
        for b in 0..acc.len() / 32 {
            let at = acc.as_mut_ptr().add(32 * b);
            let mut a = [0, 1, 2, 3, 4, 5, 6, 7].map(|r| vld1q_f32(at.add(4 * r)));
            for (j, (&wj, &rj)) in w.iter().zip(rescale).enumerate() {
                if rj != 1.0 {
                    a = a.map(|a| vmulq_n_f32(a, rj));
                }
                let block = v.add(j * stride + b * B::BYTES);
                let d = f16_to_f32([*block, *block.add(1)]);
                let q = B::load(block);
                for (a, q) in a.iter_mut().zip(q) {
                    // (q * d) * w, then the add: the reference's dequantize, then mad.
                    *a = vaddq_f32(*a, vmulq_n_f32(vmulq_n_f32(q, d), wj));
                }
            }
            for (r, a) in a.iter().enumerate() {
                vst1q_f32(at.add(4 * r), *a);
            }
        }
    }
}
