//! Dot products of the 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with their
//! 8-bit activation blocks, on 256-bit registers — the decode (matrix-vector) kernels.
//!
//! The kernel reads the activation row in the paired layout that
//! [`crate::QuantizedActivations`] prepares ([`PairedRow`]): two weight blocks unpack
//! into one register pair (the 16 low nibbles of both blocks, then the 16 high ones),
//! are multiplied with the 64 paired activation bytes into 8 exact i32 lane sums (lanes
//! 0..4 for the first block, 4..8 for the second: `vpmaddubsw`+`vpmaddwd` or VNNI's
//! `vpdpbusd`, [`I8Dot`]), converted to f32 and accumulated with one fused multiply-add
//! by `d_w · d_a`. Compared with llama.cpp's AVX2 `ggml_vec_dot_q*_q8_*`
//! (ggml-cpu/arch/x86/quants.c), which handles one block at a time with the sign trick,
//! it halves the instructions per block:
//! - the offsets of Q4_0 / Q5_0 / Q8_0 (`q - 8`, `q - 16`, `q + 128` stored unsigned)
//!   enter the exact integer sum as `offset · (-Σa)` from the prepared sums, instead of
//!   a subtraction and two sign operations per block (Q8_0 keeps the sign trick where
//!   the 8-bit product is `vpmaddubsw`, which could saturate on `w + 128`);
//! - the weight scales (and Q4_1/Q5_1 minimums) of 8 blocks are widened from f16 in one
//!   instruction and multiplied by the prepared f32 activation scales; the `m · s`
//!   terms go to their own vector accumulator;
//! - pairs alternate between two accumulators, so no FMA waits for the previous one.
//!
//! The byte-level `vec_dot` entry point ([`dot_row`]) builds the paired layout of each
//! group of 8 blocks on the stack and runs the same group step, so it gives the same
//! bits as the matrix-vector kernel. The integer part is exact; only the f32 summation
//! order differs from the scalar reference (the tests name the tolerance and check
//! exactness on inputs whose sums are exact in any order).

use std::arch::x86_64::*;

use super::simd::{
    I8Dot, dot_i8, f16_pairs_to_f32, hsum_f32_8, load_halves, load_low_half, load32,
};
use crate::blocks::{
    Block, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, as_blocks,
};
use crate::matmul::{ActRow, PairedRow};

pub(crate) struct Q4_0;
pub(crate) struct Q4_1;
pub(crate) struct Q5_0;
pub(crate) struct Q5_1;
pub(crate) struct Q8_0;

/// The integer half of the paired decode kernel for one weight format.
pub(crate) trait Paired {
    type W: Block;
    /// The activation block type (for [`dot_row`]).
    type A: ActBlock;
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
    type A = BlockQ8_0;
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
    type A = BlockQ8_1;
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
    type A = BlockQ8_0;
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
    type A = BlockQ8_1;
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
    type A = BlockQ8_0;
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
#[inline(always)]
unsafe fn scales_tail<W: Block>(w: &[W]) -> (__m256, __m256) {
    let mut lanes = [0i32; 8];
    for (lane, block) in lanes.iter_mut().zip(w) {
        *lane = head(block);
    }
    // SAFETY: AVX2/F16C per contract; `lanes` is 32 bytes.
    unsafe { f16_pairs_to_f32(load32(lanes.as_ptr().cast())) }
}

/// The paired layout of one group of 8 blocks (or fewer, at the end of a row): 64
/// quant bytes and 8 negated-sum lanes per pair, 8 f32 scales and `s` terms.
#[derive(Clone, Copy)]
struct GroupActs {
    qs: *const i8,
    nsum: *const i32,
    d: *const f32,
    s: *const f32,
}

/// Adds one group of up to 8 weight blocks (`w`, a whole group unless it is the last)
/// to the accumulators.
#[inline(always)]
unsafe fn group_step<F: Paired, D: I8Dot>(
    w: &[F::W],
    a: GroupActs,
    acc: &mut [__m256; 2],
    acc_min: &mut __m256,
) {
    let n = w.len();
    debug_assert!((1..=8).contains(&n));
    // SAFETY: `a` points to a whole group's layout (64 bytes and 8 lanes per pair, 8
    // scales and `s` terms); AVX2/FMA/F16C per module contract.
    unsafe {
        let (dw, mw) = match <&[F::W; 8]>::try_from(w) {
            Ok(full) => scales8(full),
            Err(_) => scales_tail(w),
        };
        let scale = _mm256_mul_ps(dw, _mm256_loadu_ps(a.d));
        if F::MIN {
            *acc_min = _mm256_fmadd_ps(mw, _mm256_loadu_ps(a.s), *acc_min);
        }
        for p in 0..n.div_ceil(2) {
            let w1 = w.get(2 * p + 1);
            let ints = F::pair::<D>(&w[2 * p], w1, a.qs.add(64 * p), a.nsum.add(8 * p));
            let sc = _mm256_permutevar8x32_ps(scale, load32(PAIR_INDEX[p].as_ptr().cast()));
            acc[p & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ints), sc, acc[p & 1]);
        }
    }
}

/// The final sum of the accumulators.
#[inline(always)]
unsafe fn finish<F: Paired>(acc: [__m256; 2], acc_min: __m256) -> f32 {
    // SAFETY: AVX per module contract.
    unsafe {
        let total = hsum_f32_8(_mm256_add_ps(acc[0], acc[1]));
        if F::MIN {
            total + hsum_f32_8(acc_min)
        } else {
            total
        }
    }
}

/// One row of the decode kernel against a prepared [`PairedRow`].
#[inline(always)]
unsafe fn matvec_row<F: Paired, D: I8Dot>(w: &[F::W], a: &PairedRow<'_>) -> f32 {
    assert_eq!(w.len(), a.blocks, "matvec: block count mismatch");
    assert!(a.qs.len() >= w.len().div_ceil(2) * 64 && a.nsum.len() >= w.len().div_ceil(2) * 8);
    assert!(a.d.len() >= w.len().next_multiple_of(8) && a.s.len() >= a.d.len());
    // SAFETY: AVX per module contract.
    let (mut acc, mut acc_min) = unsafe { ([_mm256_setzero_ps(); 2], _mm256_setzero_ps()) };
    for (i, group) in w.chunks(8).enumerate() {
        let b = 8 * i;
        // SAFETY: the offsets stay within the prepared buffers (asserted sizes: 64 quant
        // bytes and 8 sums per pair, scales padded to whole groups of 8 blocks).
        unsafe {
            let acts = GroupActs {
                qs: a.qs.as_ptr().add(32 * b),
                nsum: a.nsum.as_ptr().add(4 * b),
                d: a.d.as_ptr().add(b),
                s: a.s.as_ptr().add(b),
            };
            group_step::<F, D>(group, acts, &mut acc, &mut acc_min);
        }
    }
    // SAFETY: per module contract.
    unsafe { finish::<F>(acc, acc_min) }
}

/// A 32-value activation block's scale, `s` term (Q8_1's stored `s`; `d · Σq` for
/// Q8_0, as [`crate::QuantizedActivations`] prepares it) and quants.
pub(crate) trait ActBlock: Block {
    fn parts(&self) -> (f32, f32, &[i8; 32]);
}

impl ActBlock for BlockQ8_0 {
    fn parts(&self) -> (f32, f32, &[i8; 32]) {
        let sum: i32 = self.qs.iter().map(|&q| q as i32).sum();
        let d = self.d.to_f32();
        (d, d * sum as f32, &self.qs)
    }
}

impl ActBlock for BlockQ8_1 {
    fn parts(&self) -> (f32, f32, &[i8; 32]) {
        (self.d.to_f32(), self.s.to_f32(), &self.qs)
    }
}

/// The dot product of one weight row with one activation row as ggml blocks (the
/// `vec_dot` entry point): each group's paired layout is built on the stack, then the
/// group step of [`matvec_row`] runs on it, so the two give the same bits.
#[inline(always)]
pub(crate) unsafe fn dot_row<F: Paired, D: I8Dot>(w: &[F::W], a: &[F::A]) -> f32 {
    assert_eq!(w.len(), a.len(), "dot: block count mismatch");
    // SAFETY: AVX per module contract.
    let (mut acc, mut acc_min) = unsafe { ([_mm256_setzero_ps(); 2], _mm256_setzero_ps()) };
    for (group, acts) in w.chunks(8).zip(a.chunks(8)) {
        let mut qs = [0i8; 256];
        let mut nsum = [0i32; 32];
        let (mut d, mut s) = ([0f32; 8], [0f32; 8]);
        for (b, block) in acts.iter().enumerate() {
            let (bd, bs, q) = block.parts();
            let base = (b / 2) * 64 + (b % 2) * 16;
            qs[base..base + 16].copy_from_slice(&q[..16]);
            qs[base + 32..base + 48].copy_from_slice(&q[16..]);
            nsum[(b / 2) * 8 + (b % 2) * 4] = -q.iter().map(|&v| v as i32).sum::<i32>();
            d[b] = bd;
            s[b] = bs;
        }
        let acts = GroupActs {
            qs: qs.as_ptr(),
            nsum: nsum.as_ptr(),
            d: d.as_ptr(),
            s: s.as_ptr(),
        };
        // SAFETY: the stack arrays hold a whole group's layout; per module contract.
        unsafe { group_step::<F, D>(group, acts, &mut acc, &mut acc_min) };
    }
    // SAFETY: per module contract.
    unsafe { finish::<F>(acc, acc_min) }
}

/// `out[r] = dot(row r of w, a)` for consecutive rows of `row_bytes` bytes, with the
/// prepared paired layout when there is one (always, for fewer than
/// `GEMM_MIN_TOKENS` tokens), else building it per row.
#[inline(always)]
pub(crate) unsafe fn matvec<F: Paired, D: I8Dot>(
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
            let blocks: &[F::A] = as_blocks(a.bytes);
            for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
                // SAFETY: per module contract.
                *o = unsafe { dot_row::<F, D>(as_blocks(row), blocks) };
            }
        }
    }
}
