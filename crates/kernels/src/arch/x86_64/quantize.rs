//! The activation quantizers (Q8_0, Q8_1, Q8_K) on 256-bit registers, shared by every
//! x86_64 path. They give exactly the bytes of the scalar path's activation quantizers
//! (`crate::quant::scalar_quantize_q8_*`):
//!
//! - Q8_0 / Q8_1 as llama.cpp's AVX2 `quantize_row_q8_0` / `quantize_row_q8_1`
//!   (ggml-cpu/arch/x86/quants.c): `amax` over the block, `d = amax / 127`, the values
//!   times `id = 127 / amax`, rounded to nearest with ties to even (`vroundps` in the
//!   default mode), packed to bytes; Q8_1 adds `s = d · Σq`;
//! - Q8_K as ggml's `quantize_row_q8_K_ref` (which llama.cpp's x86 backend calls): the
//!   signed value of largest magnitude (the first on ties) gives `iscale = -127 / max`,
//!   `q = nearest_int(iscale * x)` capped at 127 (ties to even, which `vcvtps2dq` does
//!   exactly like ggml's magic-number trick for these magnitudes), `d = 1 / iscale`,
//!   and the sums of every 16 quants.
//!
//! Only a NaN input can make them differ from the scalar ones (the lanes' `max` treats
//! NaN differently from `f32::max`); a NaN activation is garbage either way.

use std::arch::x86_64::*;

use super::simd::hsum_i32_8;
use crate::blocks::{BlockQ8_0, BlockQ8_1, BlockQ8K, F16Le, QK, QK_K, as_blocks_mut};

/// The largest of the 8 lanes.
#[inline(always)]
unsafe fn hmax_f32_8(v: __m256) -> f32 {
    // SAFETY: AVX per module contract (see `simd`).
    unsafe {
        let mut m = _mm_max_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        _mm_cvtss_f32(m)
    }
}

/// `|v|` per lane.
#[inline(always)]
unsafe fn abs_ps(v: __m256) -> __m256 {
    // SAFETY: AVX per module contract.
    unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), v) }
}

/// Rounds to the nearest integer, ties to even.
#[inline(always)]
unsafe fn round_i32(x: __m256) -> __m256i {
    // SAFETY: AVX per module contract.
    unsafe {
        _mm256_cvtps_epi32(_mm256_round_ps(
            x,
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        ))
    }
}

/// Rounds 32 values (ties to even) and packs them to bytes in order; returns the bytes
/// and the 8 lane sums of the i32 values (lane sums of values `i, i+8, ...` folded: only
/// their total is used).
#[inline(always)]
unsafe fn round_pack_32(v: [__m256; 4]) -> (__m256i, __m256i) {
    // SAFETY: AVX2 per module contract.
    unsafe {
        let (i0, i1, i2, i3) = (
            round_i32(v[0]),
            round_i32(v[1]),
            round_i32(v[2]),
            round_i32(v[3]),
        );
        let sums = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        // Packing works per 128-bit half; the permute puts the dwords back in order.
        let p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        (p, sums)
    }
}

/// One 32-value block: (quants, lane sums, d).
#[inline(always)]
unsafe fn q8_block(x: &[f32]) -> (__m256i, __m256i, f32) {
    assert!(x.len() >= QK);
    // SAFETY: 32 readable f32 values (asserted); AVX2 per module contract.
    unsafe {
        let p = x.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let m = _mm256_max_ps(
            _mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])),
            _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])),
        );
        let amax = hmax_f32_8(m);
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let (q, sums) = round_pack_32([
            _mm256_mul_ps(v[0], id),
            _mm256_mul_ps(v[1], id),
            _mm256_mul_ps(v[2], id),
            _mm256_mul_ps(v[3], id),
        ]);
        (q, sums, d)
    }
}

/// Q8_0 activations.
#[inline(always)]
pub(crate) unsafe fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    let out: &mut [BlockQ8_0] = as_blocks_mut(out);
    assert_eq!(x.len(), out.len() * QK, "q8_0 quantize: length mismatch");
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        // SAFETY: 32 values per chunk; the store writes the block's 32 quant bytes.
        unsafe {
            let (q, _, d) = q8_block(x);
            _mm256_storeu_si256(block.qs.as_mut_ptr().cast(), q);
            block.d = F16Le::from_f32(d);
        }
    }
}

/// Q8_1 activations.
#[inline(always)]
pub(crate) unsafe fn quantize_q8_1(x: &[f32], out: &mut [u8]) {
    let out: &mut [BlockQ8_1] = as_blocks_mut(out);
    assert_eq!(x.len(), out.len() * QK, "q8_1 quantize: length mismatch");
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        // SAFETY: 32 values per chunk; the store writes the block's 32 quant bytes.
        unsafe {
            let (q, sums, d) = q8_block(x);
            _mm256_storeu_si256(block.qs.as_mut_ptr().cast(), q);
            block.d = F16Le::from_f32(d);
            block.s = F16Le::from_f32(hsum_i32_8(sums) as f32 * d);
        }
    }
}

/// Q8_K activations.
#[inline(always)]
pub(crate) unsafe fn quantize_q8_k(x: &[f32], out: &mut [u8]) {
    let out: &mut [BlockQ8K] = as_blocks_mut(out);
    assert_eq!(x.len(), out.len() * QK_K, "q8_K quantize: length mismatch");
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        // SAFETY: 256 values per chunk (32 loads of 8); the stores write the block's
        // 256 quant bytes, 32 at a time. AVX2 per module contract.
        unsafe {
            let p = x.as_ptr();
            let mut m = _mm256_setzero_ps();
            for i in 0..QK_K / 8 {
                m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(p.add(8 * i))));
            }
            let amax = hmax_f32_8(m);
            if amax == 0.0 {
                block.d = 0.0f32.to_le_bytes();
                block.qs = [0; QK_K];
                block.bsums = [[0; 2]; QK_K / 16];
                continue;
            }
            // The first value whose magnitude is the maximum (the reference keeps the
            // first on ties).
            let target = _mm256_set1_ps(amax);
            let mut max = 0.0f32;
            for i in 0..QK_K / 8 {
                let hit = _mm256_movemask_ps(_mm256_cmp_ps(
                    abs_ps(_mm256_loadu_ps(p.add(8 * i))),
                    target,
                    _CMP_EQ_OQ,
                ));
                if hit != 0 {
                    max = x[8 * i + hit.trailing_zeros() as usize];
                    break;
                }
            }
            let iscale = -127.0 / max;
            let s = _mm256_set1_ps(iscale);
            let cap = _mm256_set1_epi32(127);
            for j in 0..QK_K / 32 {
                let q = p.add(32 * j);
                let i0 = _mm256_min_epi32(round_i32(_mm256_mul_ps(s, _mm256_loadu_ps(q))), cap);
                let i1 =
                    _mm256_min_epi32(round_i32(_mm256_mul_ps(s, _mm256_loadu_ps(q.add(8)))), cap);
                let i2 =
                    _mm256_min_epi32(round_i32(_mm256_mul_ps(s, _mm256_loadu_ps(q.add(16)))), cap);
                let i3 =
                    _mm256_min_epi32(round_i32(_mm256_mul_ps(s, _mm256_loadu_ps(q.add(24)))), cap);
                // Sums of values 32j..32j+16 and 32j+16..32j+32.
                let lo = hsum_i32_8(_mm256_add_epi32(i0, i1));
                let hi = hsum_i32_8(_mm256_add_epi32(i2, i3));
                block.bsums[2 * j] = (lo as i16).to_le_bytes();
                block.bsums[2 * j + 1] = (hi as i16).to_le_bytes();
                let q = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
                let q = _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                _mm256_storeu_si256(block.qs.as_mut_ptr().add(32 * j).cast(), q);
            }
            block.d = (1.0 / iscale).to_le_bytes();
        }
    }
}
