//! Dot products of the K-quant formats (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) with Q8_K
//! activations, on 256-bit registers — the decode kernels of "Q4_K_M" files.
//!
//! One kernel for all five, in the way of llama.cpp's AVX2 `ggml_vec_dot_q*_K_q8_K`
//! (ggml-cpu/arch/x86/quants.c): per 256-value super-block, each 32-value chunk of
//! unsigned weight quants is multiplied with its 32 activation quants by `vpmaddubsw`
//! (16 exact i16 pair sums), the pairs are multiplied by their group's sub-block scale
//! and summed into i32 lanes by `vpmaddwd` (VNNI: `vpdpwssd`), and the block's integer
//! total meets `d_w · d_a` in one fused multiply-add. What differs by format is only how
//! a chunk's quants and the 16 group scales are unpacked ([`KFormat`]):
//!
//! - offsets are folded into the integer sum through the activation block's sums of 16
//!   (`bsums`): Q6_K's `q - 32` and Q3_K's `q - 4` (its quants are read as the unsigned
//!   `low2 | high << 2`, one `vpmaddubsw` instead of llama.cpp's two) subtract
//!   `offset · Σ_g sc_g · bsum_g`;
//! - minimums (Q2_K, Q4_K, Q5_K) go through the same sums into a second f32 accumulator,
//!   `dmin · d_a · Σ_g m_g · bsum_g`, as in llama.cpp.
//!
//! Scales of the 32-value sub-blocks (Q4_K, Q5_K) are written once per 16-value group,
//! so that every format has 16 group scales. The integer part is exact: every pair sum
//! fits i16 (`63 · 127 · 2` at most) and every block total i32.

use std::arch::x86_64::*;

use super::simd::{I8Dot, hsum_f32_8, hsum_i32_8, load16, load32};
use crate::blocks::{
    Block, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K, as_blocks,
};

/// Scale shuffle for chunk `c % 4`: group `2c` as i16 in the low 128-bit lane, group
/// `2c + 1` in the high lane (of a vector holding 8 group scales in both lanes).
const SCALE_SHUFFLE: [[u8; 32]; 4] = {
    let mut t = [[0u8; 32]; 4];
    let mut c = 0;
    while c < 4 {
        let mut i = 0;
        while i < 16 {
            t[c][i] = (4 * c + i % 2) as u8;
            t[c][16 + i] = (4 * c + 2 + i % 2) as u8;
            i += 1;
        }
        c += 1;
    }
    t
};

/// What a K-quant format contributes to the shared kernel.
pub(crate) trait KFormat {
    type W: Block;
    /// `log2` of the offset subtracted from every quant (Q6_K: 32, Q3_K: 4).
    const OFFSET_SHIFT: Option<i32>;
    /// Whether the format has per-group minimums.
    const MIN: bool;
    /// Whether a super-block's integer sums are totalled before they meet the scales
    /// (llama.cpp's repacked Q4_K kernels), instead of kept in 8 lanes.
    const ROW_TOTAL: bool = false;
    /// Per-block state the chunks are unpacked from.
    type Prep: Copy;
    /// `d`, `dmin` (0 without minimums), the 16 group scales and minimums as i16
    /// (minimums zero without), and the state for [`KFormat::chunk`].
    unsafe fn prepare(w: &Self::W) -> (f32, f32, __m256i, __m256i, Self::Prep);
    /// The 32 unsigned quants of chunk `c` (values `32c..32c+32`).
    unsafe fn chunk(w: &Self::W, prep: &Self::Prep, c: usize) -> __m256i;
}

pub(crate) struct Q2K;
pub(crate) struct Q3K;
pub(crate) struct Q4K;
pub(crate) struct Q5K;
pub(crate) struct Q6K;

#[inline(always)]
unsafe fn f16(bits: crate::blocks::F16Le) -> f32 {
    // SAFETY: F16C per module contract.
    unsafe {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
            u16::from_le_bytes(bits.0) as i32
        )))
    }
}

/// 8 scale bytes as 16 i16 group scales, each repeated for both 16-value halves of
/// its 32-value sub-block.
#[inline(always)]
unsafe fn sub_block_scales(bytes8: __m128i) -> __m256i {
    // SAFETY: AVX2 per module contract.
    unsafe { _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(bytes8, bytes8)) }
}

/// Q4_K / Q5_K scales and minimums: 6-bit values packed in 12 bytes, unpacked as
/// ggml's `get_scale_min_k4` (with the 32-bit masks of its dot products).
#[inline(always)]
unsafe fn k4_scales_mins(packed: &[u8; 12]) -> (__m256i, __m256i) {
    let u = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let (m1, m2, m3) = (0x3f3f_3f3fu32, 0x0f0f_0f0fu32, 0x0303_0303u32);
    let scales_lo = u0 & m1;
    let scales_hi = (u2 & m2) | (((u0 >> 6) & m3) << 4);
    let mins_lo = u1 & m1;
    let mins_hi = ((u2 >> 4) & m2) | (((u1 >> 6) & m3) << 4);
    // SAFETY: SSE2/AVX2 per module contract.
    unsafe {
        let sc = _mm_set_epi32(0, 0, scales_hi as i32, scales_lo as i32);
        let mn = _mm_set_epi32(0, 0, mins_hi as i32, mins_lo as i32);
        (sub_block_scales(sc), sub_block_scales(mn))
    }
}

impl KFormat for Q4K {
    type W = BlockQ4K;
    const OFFSET_SHIFT: Option<i32> = None;
    const MIN: bool = true;
    const ROW_TOTAL: bool = true;
    type Prep = ();
    #[inline(always)]
    unsafe fn prepare(w: &BlockQ4K) -> (f32, f32, __m256i, __m256i, ()) {
        // SAFETY: per module contract.
        unsafe {
            let (s, m) = k4_scales_mins(&w.scales);
            (f16(w.d), f16(w.dmin), s, m, ())
        }
    }
    #[inline(always)]
    unsafe fn chunk(w: &BlockQ4K, _: &(), c: usize) -> __m256i {
        // SAFETY: `qs` is 128 bytes; chunk pair c / 2 reads bytes 32 (c / 2)..+32.
        unsafe {
            let bits = load32(w.qs.as_ptr().add(32 * (c / 2)));
            let bits = if c.is_multiple_of(2) {
                bits
            } else {
                _mm256_srli_epi16(bits, 4)
            };
            _mm256_and_si256(bits, _mm256_set1_epi8(0x0F))
        }
    }
}

impl KFormat for Q5K {
    type W = BlockQ5K;
    const OFFSET_SHIFT: Option<i32> = None;
    const MIN: bool = true;
    type Prep = __m256i;
    #[inline(always)]
    unsafe fn prepare(w: &BlockQ5K) -> (f32, f32, __m256i, __m256i, __m256i) {
        // SAFETY: per module contract; `qh` is 32 bytes.
        unsafe {
            let (s, m) = k4_scales_mins(&w.scales);
            (f16(w.d), f16(w.dmin), s, m, load32(w.qh.as_ptr()))
        }
    }
    #[inline(always)]
    unsafe fn chunk(w: &BlockQ5K, qh: &__m256i, c: usize) -> __m256i {
        // SAFETY: `qs` is 128 bytes; chunk c takes bit c of each `qh` byte as bit 4.
        unsafe {
            let bits = load32(w.qs.as_ptr().add(32 * (c / 2)));
            let bits = if c.is_multiple_of(2) {
                bits
            } else {
                _mm256_srli_epi16(bits, 4)
            };
            let low = _mm256_and_si256(bits, _mm256_set1_epi8(0x0F));
            let high = _mm256_and_si256(
                _mm256_srl_epi16(*qh, _mm_cvtsi32_si128(c as i32)),
                _mm256_set1_epi8(1),
            );
            _mm256_or_si256(low, _mm256_slli_epi16(high, 4))
        }
    }
}

impl KFormat for Q6K {
    type W = BlockQ6K;
    const OFFSET_SHIFT: Option<i32> = Some(5);
    const MIN: bool = false;
    type Prep = ();
    #[inline(always)]
    unsafe fn prepare(w: &BlockQ6K) -> (f32, f32, __m256i, __m256i, ()) {
        // SAFETY: `scales` is 16 signed bytes.
        unsafe {
            let s = _mm256_cvtepi8_epi16(load16(w.scales.as_ptr().cast()));
            (f16(w.d), 0.0, s, _mm256_setzero_si256(), ())
        }
    }
    #[inline(always)]
    unsafe fn chunk(w: &BlockQ6K, _: &(), c: usize) -> __m256i {
        // SAFETY: per half (c / 4) the kernel reads `ql` bytes 64h..64h+64 and `qh`
        // bytes 32h..32h+32, within the 128 and 64 bytes of the fields. Chunk k = c % 4
        // of a half: the low (k < 2) or high nibbles of `ql[32 (k % 2)..]`, and bits
        // 2k..2k+2 of `qh` as bits 4..6 (ggml's `dequantize_row_q6_K` order).
        unsafe {
            let (half, k) = (c / 4, c % 4);
            let ql = load32(w.ql.as_ptr().add(64 * half + 32 * (k % 2)));
            let ql = if k < 2 { ql } else { _mm256_srli_epi16(ql, 4) };
            let low = _mm256_and_si256(ql, _mm256_set1_epi8(0x0F));
            let qh = load32(w.qh.as_ptr().add(32 * half));
            let high = _mm256_and_si256(
                _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k as i32)),
                _mm256_set1_epi8(3),
            );
            _mm256_or_si256(low, _mm256_slli_epi16(high, 4))
        }
    }
}

impl KFormat for Q3K {
    type W = BlockQ3K;
    const OFFSET_SHIFT: Option<i32> = Some(2);
    const MIN: bool = false;
    type Prep = __m256i;
    #[inline(always)]
    unsafe fn prepare(w: &BlockQ3K) -> (f32, f32, __m256i, __m256i, __m256i) {
        // The 16 6-bit scales, unpacked with the 32-bit masks of ggml's
        // `ggml_vec_dot_q3_K_q8_K` (the same bits as `blocks::q3_k_scales`): low
        // nibbles from bytes 0..8, top two bits from bytes 8..12.
        let p = &w.scales;
        let u = |i: usize| u32::from_le_bytes([p[4 * i], p[4 * i + 1], p[4 * i + 2], p[4 * i + 3]]);
        let (a0, a1, a2) = (u(0), u(1), u(2));
        let (m2, m4) = (0x0303_0303u32, 0x0f0f_0f0fu32);
        let s0 = (a0 & m4) | ((a2 & m2) << 4);
        let s1 = (a1 & m4) | (((a2 >> 2) & m2) << 4);
        let s2 = ((a0 >> 4) & m4) | (((a2 >> 4) & m2) << 4);
        let s3 = ((a1 >> 4) & m4) | (((a2 >> 6) & m2) << 4);
        // SAFETY: `hmask` is 32 bytes; SSE2/AVX2 per module contract.
        unsafe {
            let sc = _mm_sub_epi8(
                _mm_set_epi32(s3 as i32, s2 as i32, s1 as i32, s0 as i32),
                _mm_set1_epi8(32),
            );
            let s = _mm256_cvtepi8_epi16(sc);
            (
                f16(w.d),
                0.0,
                s,
                _mm256_setzero_si256(),
                load32(w.hmask.as_ptr()),
            )
        }
    }
    #[inline(always)]
    unsafe fn chunk(w: &BlockQ3K, hmask: &__m256i, c: usize) -> __m256i {
        // SAFETY: `qs` is 64 bytes; chunk c = 4 half + k takes bits 2k..2k+2 of
        // `qs[32 half..]` and bit c of `hmask` (as bit 2): the unsigned quant `q + 4`.
        unsafe {
            let (half, k) = (c / 4, c % 4);
            let qs = load32(w.qs.as_ptr().add(32 * half));
            let low = _mm256_and_si256(
                _mm256_srl_epi16(qs, _mm_cvtsi32_si128(2 * k as i32)),
                _mm256_set1_epi8(3),
            );
            let high = _mm256_and_si256(
                _mm256_srl_epi16(*hmask, _mm_cvtsi32_si128(c as i32)),
                _mm256_set1_epi8(1),
            );
            _mm256_or_si256(low, _mm256_slli_epi16(high, 2))
        }
    }
}

impl KFormat for Q2K {
    type W = BlockQ2K;
    const OFFSET_SHIFT: Option<i32> = None;
    const MIN: bool = true;
    type Prep = ();
    #[inline(always)]
    unsafe fn prepare(w: &BlockQ2K) -> (f32, f32, __m256i, __m256i, ()) {
        // SAFETY: `scales` is 16 bytes: scale in the low nibble, minimum in the high.
        unsafe {
            let b = load16(w.scales.as_ptr());
            let m4 = _mm_set1_epi8(0x0F);
            let s = _mm256_cvtepu8_epi16(_mm_and_si128(b, m4));
            let m = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(b, 4), m4));
            (f16(w.d), f16(w.dmin), s, m, ())
        }
    }
    #[inline(always)]
    unsafe fn chunk(w: &BlockQ2K, _: &(), c: usize) -> __m256i {
        // SAFETY: `qs` is 64 bytes; chunk c = 4 half + k takes bits 2k..2k+2 of
        // `qs[32 half..]`.
        unsafe {
            let (half, k) = (c / 4, c % 4);
            let qs = load32(w.qs.as_ptr().add(32 * half));
            _mm256_and_si256(
                _mm256_srl_epi16(qs, _mm_cvtsi32_si128(2 * k as i32)),
                _mm256_set1_epi8(3),
            )
        }
    }
}

/// One super-block of a K-quant row against its Q8_K block: the weight's `d` and
/// `dmin`, the 8 exact i32 lane sums (offsets subtracted), and the lanes of
/// `m_g · bsum_g` pairs for the formats with minimums (zero without).
#[inline(always)]
unsafe fn block_lanes<F: KFormat, D: I8Dot>(
    x: &F::W,
    y: &BlockQ8K,
) -> (f32, f32, __m256i, __m256i) {
    // SAFETY: AVX2/FMA/F16C per module contract; every load is inside a block field.
    unsafe {
        let (d, dmin, scales, mins, prep) = F::prepare(x);
        let halves = [
            _mm256_permute2x128_si256(scales, scales, 0x00),
            _mm256_permute2x128_si256(scales, scales, 0x11),
        ];
        let bsums = load32(y.bsums.as_ptr().cast());
        let mut sumi = _mm256_setzero_si256();
        for c in 0..QK_K / 32 {
            let q = F::chunk(x, &prep, c);
            let p16 = _mm256_maddubs_epi16(q, load32(y.qs.as_ptr().add(32 * c).cast()));
            let sc = _mm256_shuffle_epi8(halves[c / 4], load32(SCALE_SHUFFLE[c % 4].as_ptr()));
            sumi = D::madd(sumi, p16, sc);
        }
        if let Some(shift) = F::OFFSET_SHIFT {
            let offset = _mm256_madd_epi16(scales, bsums);
            sumi = _mm256_sub_epi32(sumi, _mm256_sll_epi32(offset, _mm_cvtsi32_si128(shift)));
        }
        let m = if F::MIN {
            _mm256_madd_epi16(mins, bsums)
        } else {
            _mm256_setzero_si256()
        };
        (d, dmin, sumi, m)
    }
}

/// The dot product of one K-quant row with one Q8_K row.
#[inline(always)]
pub(crate) unsafe fn dot_row<F: KFormat, D: I8Dot>(w: &[F::W], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "dot: block count mismatch");
    // SAFETY: AVX2/FMA/F16C per module contract; every load is inside a block field.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut acc_min = _mm256_setzero_ps();
        let (mut total, mut total_min) = (0.0f32, 0.0f32);
        for (x, y) in w.iter().zip(a) {
            let (d, dmin, sumi, m) = block_lanes::<F, D>(x, y);
            let da = y.d();
            if F::ROW_TOTAL {
                // `quant::q4_k::vec_dot`'s order: one exact integer per super-block.
                total = (hsum_i32_8(sumi) as f32).mul_add(d * da, total);
                total_min = (hsum_i32_8(m) as f32).mul_add(dmin * da, total_min);
                continue;
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * da), _mm256_cvtepi32_ps(sumi), acc);
            if F::MIN {
                acc_min =
                    _mm256_fmadd_ps(_mm256_set1_ps(dmin * da), _mm256_cvtepi32_ps(m), acc_min);
            }
        }
        if F::ROW_TOTAL {
            total - total_min
        } else if F::MIN {
            hsum_f32_8(acc) - hsum_f32_8(acc_min)
        } else {
            hsum_f32_8(acc)
        }
    }
}

/// The dot product of one K-quant row without minimums (Q6_K) with one Q8_K row in
/// the order of llama.cpp's tiled matmul (`quant::q6_k::vec_dot_tiled`): per
/// super-block the lanes' exact integer total `s`, `r = f32(s) · d_w`, then
/// `acc = fma(r, d_a, acc)`.
#[inline(always)]
pub(crate) unsafe fn dot_row_tiled<F: KFormat, D: I8Dot>(w: &[F::W], a: &[BlockQ8K]) -> f32 {
    const {
        assert!(
            !F::MIN,
            "the tiled order of formats with minimums is not modelled"
        )
    };
    assert_eq!(w.len(), a.len(), "dot: block count mismatch");
    let mut acc = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        // SAFETY: per module contract.
        let (d, _, sumi, _) = unsafe { block_lanes::<F, D>(x, y) };
        // SAFETY: AVX2 per module contract.
        let r = unsafe { hsum_i32_8(sumi) } as f32 * d;
        acc = r.mul_add(y.d(), acc);
    }
    acc
}

/// `out[r] = dot(row r of w, a)` for consecutive rows of `row_bytes` bytes.
#[inline(always)]
pub(crate) unsafe fn matvec<F: KFormat, D: I8Dot>(
    w: &[u8],
    row_bytes: usize,
    a: &[u8],
    out: &mut [f32],
) {
    assert_eq!(w.len(), row_bytes * out.len(), "matvec: weight bytes");
    let a: &[BlockQ8K] = as_blocks(a);
    for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
        // SAFETY: per module contract.
        *o = unsafe { dot_row::<F, D>(as_blocks(row), a) };
    }
}
