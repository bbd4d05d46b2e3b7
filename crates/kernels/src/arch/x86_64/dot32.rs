//! Dot products of the 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with their
//! 8-bit activation blocks, on 256-bit registers — the decode (matrix-vector) kernels.
//!
//! Per block, as llama.cpp's AVX2 `ggml_vec_dot_q*_q8_*` (ggml-cpu/arch/x86/quants.c):
//! the weight quants are expanded to 32 bytes, multiplied with the 32 activation quants
//! into 8 exact i32 lane sums ([`I8Dot`]), converted to f32 and accumulated with one
//! fused multiply-add by `d_w * d_a`. Differences from llama.cpp, for speed: blocks
//! alternate between two accumulators (a single one makes every block wait for the
//! previous block's FMA), and Q4_1/Q5_1's `m * s` terms go to two scalar sums the same
//! way. The integer part is exact; only the f32 summation order differs from the scalar
//! reference (the tests name the tolerance and check exactness on inputs whose sums are
//! exact in any order).
//!
//! Two kernels per format:
//! - [`dot_row`] reads ggml's blocks as they are (the `vec_dot` entry point); signed
//!   weight quants (Q4_0, Q5_0, Q8_0) use the sign trick ([`dot_i8`]), the unsigned ones
//!   (Q4_1, Q5_1) go straight into `vpmaddubsw`/`vpdpbusd`;
//! - [`matvec`] is the decode kernel, which reads the activation row in the paired
//!   layout that [`crate::QuantizedActivations`] prepares ([`PairedRow`]): two weight
//!   blocks unpack into one register pair (the 16 low nibbles of both blocks, then the
//!   16 high ones), the offsets of Q4_0 / Q5_0 / Q8_0 (`q - 8`, `q - 16`, `q + 128`)
//!   enter the exact integer sum as `offset · (-Σa)` from the prepared sums instead of a
//!   per-byte subtraction, and the weight scales of 8 blocks are widened from f16 in one
//!   instruction and multiplied by the prepared f32 activation scales. That halves the
//!   instructions per block against [`dot_row`]; the result is the same up to the f32
//!   summation order.

use std::arch::x86_64::*;

use super::simd::{
    I8Dot, bytes_from_bits_32, dot_i8, f16_mul, f16_pairs_to_f32, hsum_f32_8, load_halves,
    load_low_half, load32, nibbles_32,
};
use crate::blocks::{
    Block, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, as_blocks,
};
use crate::matmul::{ActRow, PairedRow};

/// One 32-value weight format and its activation format.
pub(crate) trait Format32 {
    type W: Block;
    type A: Block;
    /// Whether blocks carry a minimum (`m * s` term).
    const MIN: bool;
    /// The 8 i32 lane sums of `q_w · q_a` (exact).
    unsafe fn ints<D: I8Dot>(w: &Self::W, a: &Self::A) -> __m256i;
    /// `d_w * d_a`.
    unsafe fn scale(w: &Self::W, a: &Self::A) -> f32;
    /// `m_w * s_a` (formats with a minimum).
    unsafe fn min_term(w: &Self::W, a: &Self::A) -> f32;
}

pub(crate) struct Q4_0;
pub(crate) struct Q4_1;
pub(crate) struct Q5_0;
pub(crate) struct Q5_1;
pub(crate) struct Q8_0;

fn bits(d: crate::blocks::F16Le) -> u16 {
    u16::from_le_bytes(d.0)
}

impl Format32 for Q4_0 {
    type W = BlockQ4_0;
    type A = BlockQ8_0;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn ints<D: I8Dot>(w: &BlockQ4_0, a: &BlockQ8_0) -> __m256i {
        // SAFETY: the fields are 16 and 32 bytes long; features per module contract.
        unsafe {
            let q = _mm256_sub_epi8(nibbles_32(w.qs.as_ptr()), _mm256_set1_epi8(8));
            dot_i8::<D>(_mm256_setzero_si256(), q, load32(a.qs.as_ptr().cast()))
        }
    }
    #[inline(always)]
    unsafe fn scale(w: &BlockQ4_0, a: &BlockQ8_0) -> f32 {
        // SAFETY: F16C per module contract.
        unsafe { f16_mul(bits(w.d), bits(a.d)) }
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
    unsafe fn ints<D: I8Dot>(w: &BlockQ4_1, a: &BlockQ8_1) -> __m256i {
        // SAFETY: the fields are 16 and 32 bytes long; quants <= 15 cannot saturate.
        unsafe {
            let q = nibbles_32(w.qs.as_ptr());
            D::dot(_mm256_setzero_si256(), q, load32(a.qs.as_ptr().cast()))
        }
    }
    #[inline(always)]
    unsafe fn scale(w: &BlockQ4_1, a: &BlockQ8_1) -> f32 {
        // SAFETY: F16C per module contract.
        unsafe { f16_mul(bits(w.d), bits(a.d)) }
    }
    #[inline(always)]
    unsafe fn min_term(w: &BlockQ4_1, a: &BlockQ8_1) -> f32 {
        // SAFETY: F16C per module contract.
        unsafe { f16_mul(bits(w.m), bits(a.s)) }
    }
}

impl Format32 for Q5_0 {
    type W = BlockQ5_0;
    type A = BlockQ8_0;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn ints<D: I8Dot>(w: &BlockQ5_0, a: &BlockQ8_0) -> __m256i {
        // SAFETY: the fields are 16 and 32 bytes long; features per module contract.
        unsafe {
            // q - 16 as a signed byte: the nibble when the fifth bit is set, the nibble
            // with the top four bits set (nibble - 16) when it is clear.
            let high = _mm256_andnot_si256(
                bytes_from_bits_32(w.high_bits()),
                _mm256_set1_epi8(0xF0u8 as i8),
            );
            let q = _mm256_or_si256(nibbles_32(w.qs.as_ptr()), high);
            dot_i8::<D>(_mm256_setzero_si256(), q, load32(a.qs.as_ptr().cast()))
        }
    }
    #[inline(always)]
    unsafe fn scale(w: &BlockQ5_0, a: &BlockQ8_0) -> f32 {
        // SAFETY: F16C per module contract.
        unsafe { f16_mul(bits(w.d), bits(a.d)) }
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
    unsafe fn ints<D: I8Dot>(w: &BlockQ5_1, a: &BlockQ8_1) -> __m256i {
        // SAFETY: the fields are 16 and 32 bytes long; quants <= 31 cannot saturate.
        unsafe {
            let q = D::add_where_bits(nibbles_32(w.qs.as_ptr()), w.high_bits(), 0x10);
            D::dot(_mm256_setzero_si256(), q, load32(a.qs.as_ptr().cast()))
        }
    }
    #[inline(always)]
    unsafe fn scale(w: &BlockQ5_1, a: &BlockQ8_1) -> f32 {
        // SAFETY: F16C per module contract.
        unsafe { f16_mul(bits(w.d), bits(a.d)) }
    }
    #[inline(always)]
    unsafe fn min_term(w: &BlockQ5_1, a: &BlockQ8_1) -> f32 {
        // SAFETY: F16C per module contract.
        unsafe { f16_mul(bits(w.m), bits(a.s)) }
    }
}

impl Format32 for Q8_0 {
    type W = BlockQ8_0;
    type A = BlockQ8_0;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn ints<D: I8Dot>(w: &BlockQ8_0, a: &BlockQ8_0) -> __m256i {
        // SAFETY: both fields are 32 bytes long; features per module contract. A weight
        // quant of -128 (never written by ggml's quantizer, possible in a crafted file)
        // keeps the sign trick exact: |-128| reads as the unsigned byte 128.
        unsafe {
            dot_i8::<D>(
                _mm256_setzero_si256(),
                load32(w.qs.as_ptr().cast()),
                load32(a.qs.as_ptr().cast()),
            )
        }
    }
    #[inline(always)]
    unsafe fn scale(w: &BlockQ8_0, a: &BlockQ8_0) -> f32 {
        // SAFETY: F16C per module contract.
        unsafe { f16_mul(bits(w.d), bits(a.d)) }
    }
    #[inline(always)]
    unsafe fn min_term(_: &BlockQ8_0, _: &BlockQ8_0) -> f32 {
        0.0
    }
}

/// The dot product of one weight row with one activation row (same block count).
#[inline(always)]
pub(crate) unsafe fn dot_row<F: Format32, D: I8Dot>(w: &[F::W], a: &[F::A]) -> f32 {
    assert_eq!(w.len(), a.len(), "dot: block count mismatch");
    // SAFETY: AVX2/FMA/F16C per module contract; blocks are read through references.
    unsafe {
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let (mut min0, mut min1) = (0.0f32, 0.0f32);
        let mut pairs_w = w.chunks_exact(2);
        let mut pairs_a = a.chunks_exact(2);
        for (pw, pa) in (&mut pairs_w).zip(&mut pairs_a) {
            let q0 = _mm256_cvtepi32_ps(F::ints::<D>(&pw[0], &pa[0]));
            let q1 = _mm256_cvtepi32_ps(F::ints::<D>(&pw[1], &pa[1]));
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(F::scale(&pw[0], &pa[0])), q0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(F::scale(&pw[1], &pa[1])), q1, acc1);
            if F::MIN {
                min0 += F::min_term(&pw[0], &pa[0]);
                min1 += F::min_term(&pw[1], &pa[1]);
            }
        }
        if let (Some(w), Some(a)) = (pairs_w.remainder().first(), pairs_a.remainder().first()) {
            let q = _mm256_cvtepi32_ps(F::ints::<D>(w, a));
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(F::scale(w, a)), q, acc0);
            if F::MIN {
                min0 += F::min_term(w, a);
            }
        }
        hsum_f32_8(_mm256_add_ps(acc0, acc1)) + (min0 + min1)
    }
}

/// The integer half of the paired decode kernel for one weight format.
pub(crate) trait Paired {
    type W: Block;
    /// Whether blocks carry a minimum (`m * s` term).
    const MIN: bool;
    /// The exact i32 dot products of two blocks with their paired activations: lanes
    /// 0..4 sum to block `w0`'s, lanes 4..8 to `w1`'s. `a` is the pair's 64 quant bytes,
    /// `nsum` its 8 negated-sum lanes. With `w1 == None` (the odd last block), lanes
    /// 4..8 are zero.
    unsafe fn pair<D: I8Dot>(
        w0: &Self::W,
        w1: Option<&Self::W>,
        a: *const i8,
        nsum: *const i32,
    ) -> __m256i;
}

/// The low nibbles of both blocks (or of one, the rest zero) and the high ones.
#[inline(always)]
unsafe fn nibble_pair(q0: *const u8, q1: Option<*const u8>) -> (__m256i, __m256i) {
    // SAFETY: both pointers are 16-byte nibble fields of blocks; AVX2 per contract.
    unsafe {
        let nib = match q1 {
            Some(q1) => load_halves(q0, q1),
            None => load_low_half(q0),
        };
        let m = _mm256_set1_epi8(0x0F);
        (
            _mm256_and_si256(nib, m),
            _mm256_and_si256(_mm256_srli_epi16(nib, 4), m),
        )
    }
}

/// Adds the fifth bits of two Q5 blocks (as `0x10`) to their nibbles in pair order:
/// values 0..16 of both blocks in `lo`, values 16..32 in `hi`.
#[inline(always)]
unsafe fn add_fifth_bits<D: I8Dot>(
    lo: __m256i,
    hi: __m256i,
    h0: u32,
    h1: u32,
) -> (__m256i, __m256i) {
    // SAFETY: per module contract.
    unsafe {
        let bits_lo = (h0 & 0xFFFF) | (h1 << 16);
        let bits_hi = (h0 >> 16) | (h1 & 0xFFFF_0000);
        (
            D::add_where_bits(lo, bits_lo, 0x10),
            D::add_where_bits(hi, bits_hi, 0x10),
        )
    }
}

/// `acc` plus the products of the pair's low and high halves with the activations.
#[inline(always)]
unsafe fn dot_halves<D: I8Dot>(acc: __m256i, lo: __m256i, hi: __m256i, a: *const i8) -> __m256i {
    // SAFETY: `a` points to the pair's 64 bytes; quants <= 31 cannot saturate.
    unsafe {
        let acc = D::dot(acc, lo, load32(a.cast()));
        D::dot(acc, hi, load32(a.add(32).cast()))
    }
}

/// `-Σa` of the pair times `offset` (a power of two), as the starting lanes.
#[inline(always)]
unsafe fn offset_init<const SHIFT: i32>(nsum: *const i32) -> __m256i {
    // SAFETY: `nsum` points to the pair's 8 lanes.
    unsafe { _mm256_slli_epi32(load32(nsum.cast()), SHIFT) }
}

impl Paired for Q4_0 {
    type W = BlockQ4_0;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn pair<D: I8Dot>(
        w0: &BlockQ4_0,
        w1: Option<&BlockQ4_0>,
        a: *const i8,
        nsum: *const i32,
    ) -> __m256i {
        // SAFETY: per trait contract; q - 8 = q + 8 * (-1) summed as 8 * (-Σa).
        unsafe {
            let (lo, hi) = nibble_pair(w0.qs.as_ptr(), w1.map(|w| w.qs.as_ptr()));
            dot_halves::<D>(offset_init::<3>(nsum), lo, hi, a)
        }
    }
}

impl Paired for Q4_1 {
    type W = BlockQ4_1;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn pair<D: I8Dot>(
        w0: &BlockQ4_1,
        w1: Option<&BlockQ4_1>,
        a: *const i8,
        _nsum: *const i32,
    ) -> __m256i {
        // SAFETY: per trait contract.
        unsafe {
            let (lo, hi) = nibble_pair(w0.qs.as_ptr(), w1.map(|w| w.qs.as_ptr()));
            dot_halves::<D>(_mm256_setzero_si256(), lo, hi, a)
        }
    }
}

impl Paired for Q5_0 {
    type W = BlockQ5_0;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn pair<D: I8Dot>(
        w0: &BlockQ5_0,
        w1: Option<&BlockQ5_0>,
        a: *const i8,
        nsum: *const i32,
    ) -> __m256i {
        // SAFETY: per trait contract; q - 16 summed as 16 * (-Σa).
        unsafe {
            let (lo, hi) = nibble_pair(w0.qs.as_ptr(), w1.map(|w| w.qs.as_ptr()));
            let (lo, hi) =
                add_fifth_bits::<D>(lo, hi, w0.high_bits(), w1.map_or(0, |w| w.high_bits()));
            dot_halves::<D>(offset_init::<4>(nsum), lo, hi, a)
        }
    }
}

impl Paired for Q5_1 {
    type W = BlockQ5_1;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn pair<D: I8Dot>(
        w0: &BlockQ5_1,
        w1: Option<&BlockQ5_1>,
        a: *const i8,
        _nsum: *const i32,
    ) -> __m256i {
        // SAFETY: per trait contract.
        unsafe {
            let (lo, hi) = nibble_pair(w0.qs.as_ptr(), w1.map(|w| w.qs.as_ptr()));
            let (lo, hi) =
                add_fifth_bits::<D>(lo, hi, w0.high_bits(), w1.map_or(0, |w| w.high_bits()));
            dot_halves::<D>(_mm256_setzero_si256(), lo, hi, a)
        }
    }
}

impl Paired for Q8_0 {
    type W = BlockQ8_0;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn pair<D: I8Dot>(
        w0: &BlockQ8_0,
        w1: Option<&BlockQ8_0>,
        a: *const i8,
        nsum: *const i32,
    ) -> __m256i {
        // SAFETY: per trait contract; the quant fields are 32 bytes, read 16 at a time.
        unsafe {
            let q0 = w0.qs.as_ptr().cast::<u8>();
            let (lo, hi) = match w1 {
                Some(w1) => {
                    let q1 = w1.qs.as_ptr().cast::<u8>();
                    (load_halves(q0, q1), load_halves(q0.add(16), q1.add(16)))
                }
                None => (load_low_half(q0), load_low_half(q0.add(16))),
            };
            if D::WIDE {
                // w + 128 as an unsigned byte, the 128 taken back as 128 * (-Σa).
                let flip = _mm256_set1_epi8(i8::MIN);
                let (lo, hi) = (_mm256_xor_si256(lo, flip), _mm256_xor_si256(hi, flip));
                dot_halves::<D>(offset_init::<7>(nsum), lo, hi, a)
            } else {
                // `vpmaddubsw` could saturate on w + 128: the sign trick instead.
                let acc = dot_i8::<D>(_mm256_setzero_si256(), lo, load32(a.cast()));
                dot_i8::<D>(acc, hi, load32(a.add(32).cast()))
            }
        }
    }
}

/// Lane `2p` of a scale vector in lanes 0..4 and lane `2p + 1` in lanes 4..8.
const PAIR_INDEX: [[i32; 8]; 4] = [
    [0, 0, 0, 0, 1, 1, 1, 1],
    [2, 2, 2, 2, 3, 3, 3, 3],
    [4, 4, 4, 4, 5, 5, 5, 5],
    [6, 6, 6, 6, 7, 7, 7, 7],
];

/// The first 4 bytes of a block: `d`, then `m` (or the start of the quants, ignored,
/// for formats without `m`).
#[inline(always)]
fn head<W: Block>(block: &W) -> i32 {
    // SAFETY: every 32-value block is at least 18 bytes, so its first 4 bytes are
    // readable; `read_unaligned` has no alignment needs.
    unsafe { std::ptr::read_unaligned((block as *const W).cast::<i32>()) }
}

/// The f16 `d` and `m` of 8 blocks, widened (see [`head`]). Built with explicit lane
/// inserts: left to itself, LLVM turns this into a masked gather through the stack
/// when AVX-512 is enabled, which was twice as slow.
#[inline(always)]
unsafe fn scales8<W: Block>(w: &[W; 8]) -> (__m256, __m256) {
    // SAFETY: AVX2/F16C per contract.
    unsafe {
        let mut lo = _mm_cvtsi32_si128(head(&w[0]));
        lo = _mm_insert_epi32(lo, head(&w[1]), 1);
        lo = _mm_insert_epi32(lo, head(&w[2]), 2);
        lo = _mm_insert_epi32(lo, head(&w[3]), 3);
        let mut hi = _mm_cvtsi32_si128(head(&w[4]));
        hi = _mm_insert_epi32(hi, head(&w[5]), 1);
        hi = _mm_insert_epi32(hi, head(&w[6]), 2);
        hi = _mm_insert_epi32(hi, head(&w[7]), 3);
        f16_pairs_to_f32(_mm256_set_m128i(hi, lo))
    }
}

/// [`scales8`] for the last, partial group (fewer than 8 blocks; missing lanes zero).
#[inline(never)]
unsafe fn scales_tail<W: Block>(w: &[W]) -> (__m256, __m256) {
    let mut lanes = [0i32; 8];
    for (lane, block) in lanes.iter_mut().zip(w) {
        *lane = head(block);
    }
    // SAFETY: AVX2/F16C per contract; `lanes` is 32 bytes.
    unsafe { f16_pairs_to_f32(load32(lanes.as_ptr().cast())) }
}

/// Adds the pairs `p0..p1` of one group (blocks `g + 2p`, `g + 2p + 1`) to `acc`.
#[inline(always)]
unsafe fn group_pairs<F: Paired, D: I8Dot>(
    w: &[F::W],
    a: &PairedRow<'_>,
    g: usize,
    scale: __m256,
    acc: &mut [__m256; 2],
    full: bool,
) {
    let nb = w.len();
    let pairs = if full { 4 } else { (nb - g).div_ceil(2) };
    for p in 0..pairs {
        let b = g + 2 * p;
        let w1 = if full || b + 1 < nb {
            Some(&w[b + 1])
        } else {
            None
        };
        // SAFETY: the caller checked the buffer sizes (see `matvec_row`).
        unsafe {
            let ints = F::pair::<D>(
                &w[b],
                w1,
                a.qs.as_ptr().add(b * 32),
                a.nsum.as_ptr().add(b * 4),
            );
            let sc = _mm256_permutevar8x32_ps(scale, load32(PAIR_INDEX[p].as_ptr().cast()));
            acc[p & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ints), sc, acc[p & 1]);
        }
    }
}

/// One row of the decode kernel (see the module docs).
#[inline(always)]
unsafe fn matvec_row<F: Paired, D: I8Dot>(w: &[F::W], a: &PairedRow<'_>) -> f32 {
    assert_eq!(w.len(), a.blocks, "matvec: block count mismatch");
    assert!(a.qs.len() >= w.len().div_ceil(2) * 64 && a.nsum.len() >= w.len().div_ceil(2) * 8);
    assert!(a.d.len() >= w.len().next_multiple_of(8) && a.s.len() >= a.d.len());
    // SAFETY: the pointers below stay within the prepared buffers (asserted sizes:
    // 64 quant bytes and 8 sums per pair, scales padded to whole groups of 8 blocks);
    // AVX2/FMA/F16C per contract.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut acc_min = _mm256_setzero_ps();
        let nb = w.len();
        let mut groups = w.chunks_exact(8);
        let mut g = 0;
        for group in &mut groups {
            let group: &[F::W; 8] = group.try_into().expect("chunks of 8");
            let (dw, mw) = scales8(group);
            let scale = _mm256_mul_ps(dw, _mm256_loadu_ps(a.d.as_ptr().add(g)));
            if F::MIN {
                acc_min = _mm256_fmadd_ps(mw, _mm256_loadu_ps(a.s.as_ptr().add(g)), acc_min);
            }
            group_pairs::<F, D>(w, a, g, scale, &mut acc, true);
            g += 8;
        }
        if g < nb {
            let (dw, mw) = scales_tail(groups.remainder());
            let scale = _mm256_mul_ps(dw, _mm256_loadu_ps(a.d.as_ptr().add(g)));
            if F::MIN {
                acc_min = _mm256_fmadd_ps(mw, _mm256_loadu_ps(a.s.as_ptr().add(g)), acc_min);
            }
            group_pairs::<F, D>(w, a, g, scale, &mut acc, false);
        }
        let total = _mm256_add_ps(acc[0], acc[1]);
        if F::MIN {
            hsum_f32_8(total) + hsum_f32_8(acc_min)
        } else {
            hsum_f32_8(total)
        }
    }
}

/// `out[r] = dot(row r of w, a)` for consecutive rows of `row_bytes` bytes: the paired
/// kernel when the activations were prepared for it, else [`dot_row`] per row.
#[inline(always)]
pub(crate) unsafe fn matvec<F: Format32 + Paired<W = <F as Format32>::W>, D: I8Dot>(
    w: &[u8],
    row_bytes: usize,
    a: &ActRow<'_>,
    out: &mut [f32],
) {
    assert_eq!(w.len(), row_bytes * out.len(), "matvec: weight bytes");
    match a.paired {
        Some(paired) => {
            for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
                // SAFETY: per module contract.
                *o = unsafe { matvec_row::<F, D>(as_blocks(row), &paired) };
            }
        }
        None => {
            let blocks: &[<F as Format32>::A] = as_blocks(a.bytes);
            for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
                // SAFETY: per module contract.
                *o = unsafe { dot_row::<F, D>(as_blocks(row), blocks) };
            }
        }
    }
}
