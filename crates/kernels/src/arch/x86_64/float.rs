//! Dot products of the unquantized weight types (F32, F16, BF16) with activations of
//! the same type, on 256-bit registers; BF16 with AVX-512 BF16's `vdpbf16ps` where the
//! CPU has it.
//!
//! The scalar reference follows ggml's scalar `ggml_vec_dot_f32/_f16/_bf16`: every
//! product rounded to f32, the products summed in f64. The F32, F16 and 256-bit BF16
//! kernels keep that: 8 f32 products per step (the same roundings), widened and summed
//! in 8 f64 lanes; only the order of the f64 additions differs, which can move the
//! final f32 by one ulp in rare cases. `vdpbf16ps` instead adds pairs of (exact) BF16
//! products into f32 lanes, as llama.cpp's AVX512-BF16 build does, so it carries f32
//! rounding in the sum: the tests give it a bound of `n · 2^-24` of `Σ|w·a|`.
//!
//! Rows are read from little-endian bytes at any alignment (unaligned loads).

use std::arch::x86_64::*;

use super::simd::load16;

/// `Σ` of 8 f32 products into two f64 accumulators.
#[inline(always)]
unsafe fn add_products(acc: &mut [__m256d; 2], p: __m256) {
    // SAFETY: AVX per module contract.
    unsafe {
        acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
        acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
    }
}

/// The f64 sum of the two accumulators' lanes plus `tail`, as f32.
#[inline(always)]
unsafe fn finish(acc: [__m256d; 2], tail: f64) -> f32 {
    // SAFETY: AVX per module contract.
    unsafe {
        let s = _mm256_add_pd(acc[0], acc[1]);
        let s = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
        let s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
        (_mm_cvtsd_f64(s) + tail) as f32
    }
}

fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[2 * i], b[2 * i + 1]])
}

/// F32 · F32 of two rows of little-endian f32 bytes.
#[inline(always)]
pub(crate) unsafe fn dot_f32(w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() == a.len() && w.len().is_multiple_of(4),
        "f32 dot: lengths"
    );
    let n = w.len() / 4;
    let whole = n / 8 * 8;
    // SAFETY: each step reads 32 bytes at `4i` with `i + 8 <= n`; AVX per contract.
    unsafe {
        let mut acc = [_mm256_setzero_pd(); 2];
        for i in (0..whole).step_by(8) {
            let x = _mm256_loadu_ps(w.as_ptr().add(4 * i).cast());
            let y = _mm256_loadu_ps(a.as_ptr().add(4 * i).cast());
            add_products(&mut acc, _mm256_mul_ps(x, y));
        }
        let tail: f64 = (whole..n)
            .map(|i| (f32_at(w, i) * f32_at(a, i)) as f64)
            .sum();
        finish(acc, tail)
    }
}

/// F16 · F16 of two rows of little-endian f16 bytes (F16C widening, exact).
#[inline(always)]
pub(crate) unsafe fn dot_f16(w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() == a.len() && w.len().is_multiple_of(2),
        "f16 dot: lengths"
    );
    let n = w.len() / 2;
    let whole = n / 8 * 8;
    // SAFETY: each step reads 16 bytes at `2i` with `i + 8 <= n`; F16C per contract.
    unsafe {
        let mut acc = [_mm256_setzero_pd(); 2];
        for i in (0..whole).step_by(8) {
            let x = _mm256_cvtph_ps(load16(w.as_ptr().add(2 * i)));
            let y = _mm256_cvtph_ps(load16(a.as_ptr().add(2 * i)));
            add_products(&mut acc, _mm256_mul_ps(x, y));
        }
        let mut tail = 0.0f64;
        for i in whole..n {
            let x = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16_at(w, i) as i32)));
            let y = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16_at(a, i) as i32)));
            tail += (x * y) as f64;
        }
        finish(acc, tail)
    }
}

/// 8 BF16 values (16 bytes at `p`) widened to f32 (exact: a shift).
#[inline(always)]
unsafe fn bf16x8(p: *const u8) -> __m256 {
    // SAFETY: 16 readable bytes at `p`; AVX2 per contract.
    unsafe { _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load16(p)), 16)) }
}

/// BF16 · BF16 of two rows of little-endian bf16 bytes, products in f32, sum in f64.
#[inline(always)]
pub(crate) unsafe fn dot_bf16(w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() == a.len() && w.len().is_multiple_of(2),
        "bf16 dot: lengths"
    );
    let n = w.len() / 2;
    let whole = n / 8 * 8;
    // SAFETY: each step reads 16 bytes at `2i` with `i + 8 <= n`; AVX2 per contract.
    unsafe {
        let mut acc = [_mm256_setzero_pd(); 2];
        for i in (0..whole).step_by(8) {
            let x = bf16x8(w.as_ptr().add(2 * i));
            let y = bf16x8(a.as_ptr().add(2 * i));
            add_products(&mut acc, _mm256_mul_ps(x, y));
        }
        let bf = |v: u16| f32::from_bits((v as u32) << 16);
        let tail: f64 = (whole..n)
            .map(|i| (bf(u16_at(w, i)) * bf(u16_at(a, i))) as f64)
            .sum();
        finish(acc, tail)
    }
}

/// BF16 · BF16 with AVX-512 BF16: 32 values per `vdpbf16ps`, f32 lanes, the tail
/// through masked loads (zeros add nothing).
///
/// # Safety
/// As the module's other functions, and the CPU must have AVX-512 BF16 (the caller is
/// compiled with it).
#[inline(always)]
pub(crate) unsafe fn dot_bf16_dpbf16(w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() == a.len() && w.len().is_multiple_of(2),
        "bf16 dot: lengths"
    );
    let n = w.len() / 2;
    // SAFETY: full steps read 64 bytes at `2i` with `i + 32 <= n`; the last step reads
    // only the `n - i` values its mask selects (masked-off lanes are not accessed).
    // `__m512i` and `__m512bh` are both 64 bytes of plain data, so the transmutes only
    // reinterpret lanes. AVX-512 F/BW/BF16 per the contract.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); 2];
        let mut i = 0;
        let mut k = 0;
        while i < n {
            let left = n - i;
            let (x, y) = if left >= 32 {
                (
                    _mm512_loadu_si512(w.as_ptr().add(2 * i).cast()),
                    _mm512_loadu_si512(a.as_ptr().add(2 * i).cast()),
                )
            } else {
                let mask = (1u32 << left) - 1;
                (
                    _mm512_maskz_loadu_epi16(mask, w.as_ptr().add(2 * i).cast()),
                    _mm512_maskz_loadu_epi16(mask, a.as_ptr().add(2 * i).cast()),
                )
            };
            let x = std::mem::transmute::<__m512i, __m512bh>(x);
            let y = std::mem::transmute::<__m512i, __m512bh>(y);
            acc[k] = _mm512_dpbf16_ps(acc[k], x, y);
            k ^= 1;
            i += 32;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }
}
