//! The attention kernels of [`crate::attention`] on x86_64 (AVX2 + FMA + F16C, and the
//! AVX-512 paths), each exact against the scalar reference there.
//!
//! - Scores of a query tile: the [`QUERY_TILE`] queries of the tile are the 8 lanes;
//!   each lane takes `s = fma(q_l[d], k_j[d], s)` in order of `d`, as the reference does
//!   lane by lane. Four keys are worked on at once so the chains of different keys
//!   overlap.
//! - Accumulators: each value `d` is independent, so 8 of them go side by side while
//!   the loop over keys stays in order; the F32 one takes one fused multiply-add per
//!   key (as the reference), the F16 one rounds to F16 after each step with F16C (as
//!   `vec_mad_f16` / `vec_scale_f16` do).
//! - Decode scores: [`super::ops::vec_dot_f16_ggml`] per key.

use std::arch::x86_64::*;

use half::f16;

use super::simd::load16;
use crate::attention::{QUERY_TILE, check_accumulate, check_scores_f32};

/// 8 f16 values at `p` widened.
///
/// # Safety
/// 8 values readable at `p`; F16C.
#[inline(always)]
unsafe fn ld16(p: *const f16) -> __m256 {
    // SAFETY: forwarded contract.
    unsafe { _mm256_cvtph_ps(load16(p.cast())) }
}

/// `x` rounded to f16 and back (round to nearest even).
#[inline(always)]
unsafe fn round16(x: __m256) -> __m256 {
    // SAFETY: F16C per module contract.
    unsafe { _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT)) }
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
    // `j * key_stride` and that the query tile holds `head_dim * 8` values; every read
    // below stays inside those (`d + 8 <= whole <= head_dim`), and `out` holds
    // `n_keys * 8` values. Features per module contract.
    unsafe {
        let scale = _mm256_set1_ps(scale);
        // The widened keys of one 8-value step, read back one value at a time.
        let mut widened = [0.0f32; 8 * KEYS];
        let mut j = 0;
        while j + KEYS <= n_keys {
            let mut acc = [_mm256_setzero_ps(); KEYS];
            let mut d = 0;
            while d < whole {
                for u in 0..KEYS {
                    let row = k.add((j + u) * key_stride + d);
                    _mm256_storeu_ps(widened.as_mut_ptr().add(8 * u), ld16(row));
                }
                for dd in 0..8 {
                    let qv = _mm256_loadu_ps(q.add((d + dd) * QUERY_TILE));
                    for (u, acc) in acc.iter_mut().enumerate() {
                        let kv = _mm256_broadcast_ss(&widened[8 * u + dd]);
                        *acc = _mm256_fmadd_ps(qv, kv, *acc);
                    }
                }
                d += 8;
            }
            for d in whole..head_dim {
                let qv = _mm256_loadu_ps(q.add(d * QUERY_TILE));
                for (u, acc) in acc.iter_mut().enumerate() {
                    let kv = _mm256_set1_ps((*k.add((j + u) * key_stride + d)).to_f32());
                    *acc = _mm256_fmadd_ps(qv, kv, *acc);
                }
            }
            for (u, acc) in acc.iter().enumerate() {
                let s = _mm256_mul_ps(*acc, scale);
                _mm256_storeu_ps(out.as_mut_ptr().add((j + u) * QUERY_TILE), s);
            }
            j += KEYS;
        }
        while j < n_keys {
            let mut acc = _mm256_setzero_ps();
            for d in 0..head_dim {
                let qv = _mm256_loadu_ps(q.add(d * QUERY_TILE));
                let kv = _mm256_set1_ps((*k.add(j * key_stride + d)).to_f32());
                acc = _mm256_fmadd_ps(qv, kv, acc);
            }
            let s = _mm256_mul_ps(acc, scale);
            _mm256_storeu_ps(out.as_mut_ptr().add(j * QUERY_TILE), s);
            j += 1;
        }
    }
}

/// Values worked on at once by the accumulators (eight registers).
const CHUNK: usize = 64;

/// See [`crate::Kernels::attention_accumulate_f32`]; lengths checked above.
#[inline(always)]
pub(crate) unsafe fn accumulate_f32(acc: &mut [f32], values: &[f16], stride: usize, w: &[f32]) {
    check_accumulate(values.len(), stride, acc.len(), w.len(), w.len());
    let n = acc.len();
    let v = values.as_ptr();
    let mut d = 0;
    // SAFETY: row `j < w.len()` has `n` values at `j * stride` (checked above);
    // the reads at `d..d + width` stay below `n`. Features per module contract.
    unsafe {
        while d + 8 <= n {
            let regs = ((n - d) / 8).min(CHUNK / 8);
            let mut a = [_mm256_setzero_ps(); CHUNK / 8];
            for (r, a) in a[..regs].iter_mut().enumerate() {
                *a = _mm256_loadu_ps(acc.as_ptr().add(d + 8 * r));
            }
            for (j, &wj) in w.iter().enumerate() {
                let wv = _mm256_set1_ps(wj);
                let row = v.add(j * stride + d);
                for (r, a) in a[..regs].iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(ld16(row.add(8 * r)), wv, *a);
                }
            }
            for (r, a) in a[..regs].iter().enumerate() {
                _mm256_storeu_ps(acc.as_mut_ptr().add(d + 8 * r), *a);
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
        // SAFETY: features per module contract.
        *out = unsafe { super::ops::vec_dot_f16_ggml(key, query) } * scale;
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
            let regs = ((n - d) / 8).min(CHUNK / 8);
            let mut a = [_mm256_setzero_ps(); CHUNK / 8];
            for (r, a) in a[..regs].iter_mut().enumerate() {
                *a = ld16(acc.as_ptr().add(d + 8 * r));
            }
            for (j, (&wj, &rj)) in w.iter().zip(rescale).enumerate() {
                if rj != 1.0 {
                    let rv = _mm256_set1_ps(rj);
                    for a in &mut a[..regs] {
                        *a = round16(_mm256_mul_ps(*a, rv));
                    }
                }
                let wv = _mm256_set1_ps(wj);
                let row = v.add(j * stride + d);
                for (r, a) in a[..regs].iter_mut().enumerate() {
                    *a = round16(_mm256_fmadd_ps(ld16(row.add(8 * r)), wv, *a));
                }
            }
            for (r, a) in a[..regs].iter().enumerate() {
                // Every lane already holds an f16 value: this store is exact.
                _mm_storeu_si128(
                    acc.as_mut_ptr().add(d + 8 * r).cast(),
                    _mm256_cvtps_ph(*a, _MM_FROUND_TO_NEAREST_INT),
                );
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
    /// The block's 32 values as `q` (before the scale), four registers of 8, and its
    /// scale.
    ///
    /// # Safety
    /// `Self::BYTES` readable at `p`; AVX2 + F16C.
    unsafe fn load(p: *const u8) -> ([__m256; 4], __m256);
}

/// Q8_0: an f16 scale, then 32 `i8`.
pub(crate) struct Q8Values;
/// Q4_0: an f16 scale, then 16 bytes: values 0..16 in the low nibbles, 16..32 in the
/// high ones, each `nibble - 8`.
pub(crate) struct Q4Values;

#[inline(always)]
unsafe fn scale_of(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 2 readable bytes.
    unsafe { _mm256_set1_ps(f16::from_bits(u16::from_le_bytes([*p, *p.add(1)])).to_f32()) }
}

impl ValueBlock for Q8Values {
    const BYTES: usize = 34;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> ([__m256; 4], __m256) {
        // SAFETY: 34 bytes at `p` per the contract; AVX2.
        unsafe {
            let q = p.add(2);
            let widen = |i: usize| {
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(q.add(8 * i).cast())))
            };
            ([widen(0), widen(1), widen(2), widen(3)], scale_of(p))
        }
    }
}

impl ValueBlock for Q4Values {
    const BYTES: usize = 18;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> ([__m256; 4], __m256) {
        // SAFETY: 18 bytes at `p` per the contract; AVX2.
        unsafe {
            let bytes = _mm_loadu_si128(p.add(2).cast());
            let mask = _mm_set1_epi8(0x0F);
            let low = _mm_and_si128(bytes, mask);
            let high = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
            let eight = _mm256_set1_epi32(8);
            let widen =
                |x: __m128i| _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(x), eight));
            (
                [
                    widen(low),
                    widen(_mm_srli_si128(low, 8)),
                    widen(high),
                    widen(_mm_srli_si128(high, 8)),
                ],
                scale_of(p),
            )
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
            let mut a = [0, 1, 2, 3].map(|r| _mm256_loadu_ps(at.add(8 * r)));
            for (j, (&wj, &rj)) in w.iter().zip(rescale).enumerate() {
                if rj != 1.0 {
                    let rv = _mm256_set1_ps(rj);
                    a = a.map(|a| _mm256_mul_ps(a, rv));
                }
                let (q, d) = B::load(v.add(j * stride + b * B::BYTES));
                let wv = _mm256_set1_ps(wj);
                for (a, q) in a.iter_mut().zip(q) {
                    // (q * d) * w, then the add: the reference's dequantize, then mad.
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(_mm256_mul_ps(q, d), wv));
                }
            }
            for (r, a) in a.iter().enumerate() {
                _mm256_storeu_ps(at.add(8 * r), *a);
            }
        }
    }
}
