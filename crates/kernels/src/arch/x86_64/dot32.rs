//! Dot products of the 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with their
//! 8-bit activation blocks, on 256-bit registers — the decode (matrix-vector) kernels.
//!
//! Every output is computed in the summation order of llama.cpp's x86 backend
//! ([`crate::quant::order`]), so these give the scalar reference's bits: per block, 8
//! exact i32 lane sums of 4 values each, each fused into its f32 lane accumulator by
//! `d_w · d_a`; `hsum_float_8`'s reduction; `Σ m_w · s_a` fused in block order.
//!
//! The kernel reads the activation row in the paired layout that
//! [`crate::QuantizedActivations`] prepares ([`PairedRow`]): two weight blocks unpack
//! into one register pair (the 16 low nibbles of both blocks, then the 16 high ones),
//! and each register meets its 32 activation bytes in one `vpmaddubsw`+`vpmaddwd` or
//! VNNI `vpdpbusd` ([`I8Dot`]), so one instruction yields 4 lanes of each block. Two
//! cross-lane permutes put each block's 8 lanes in ggml's order (values `4l..4l+4` in
//! lane `l`) for its fused multiply-add. Formats stored with an offset (Q4_0's `q - 8`,
//! Q5_0's `q - 16`) subtract it in the bytes and use the sign trick, as ggml does, so
//! each lane's integer sum is the same as ggml's. The weight scales (and Q4_1/Q5_1
//! minimums) of 8 blocks are widened from f16 in one instruction and multiplied by the
//! prepared f32 activation scales.
//!
//! The byte-level `vec_dot` entry point ([`dot_row`]) builds the paired layout of each
//! group of 8 blocks on the stack and runs the same group step, so it gives the same
//! bits as the matrix-vector kernel.

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
    /// The exact i32 lane sums of two blocks with their paired activations, as the
    /// (low, high) registers: lanes 0..4 of each belong to `w0` (values 0..16 in the
    /// low register, 16..32 in the high one), lanes 4..8 to `w1`; each lane sums 4
    /// consecutive values. `a` is the pair's 64 quant bytes. With `w1 == None` (the
    /// odd last block), lanes 4..8 are zero.
    unsafe fn pair<D: I8Dot>(
        w0: &Self::W,
        w1: Option<&Self::W>,
        a: *const i8,
    ) -> (__m256i, __m256i);
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

/// The lane sums of unsigned quants (at most 31, so `vpmaddubsw` cannot saturate) with
/// the pair's activations.
#[inline(always)]
unsafe fn dot_unsigned<D: I8Dot>(lo: __m256i, hi: __m256i, a: *const i8) -> (__m256i, __m256i) {
    // SAFETY: `a` points to the pair's 64 bytes.
    unsafe {
        let zero = _mm256_setzero_si256();
        (
            D::dot(zero, lo, load32(a.cast())),
            D::dot(zero, hi, load32(a.add(32).cast())),
        )
    }
}

/// The lane sums of signed quants with the pair's activations (the sign trick).
#[inline(always)]
unsafe fn dot_signed<D: I8Dot>(lo: __m256i, hi: __m256i, a: *const i8) -> (__m256i, __m256i) {
    // SAFETY: `a` points to the pair's 64 bytes.
    unsafe {
        let zero = _mm256_setzero_si256();
        (
            dot_i8::<D>(zero, lo, load32(a.cast())),
            dot_i8::<D>(zero, hi, load32(a.add(32).cast())),
        )
    }
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
    ) -> (__m256i, __m256i) {
        // SAFETY: per trait contract. A missing second block gives -8 quants, which
        // meet zero activation bytes (the layout pads them).
        unsafe {
            let (lo, hi) = nibble_pair(w0.qs.as_ptr(), w1.map(|w| w.qs.as_ptr()));
            let eight = _mm256_set1_epi8(8);
            dot_signed::<D>(_mm256_sub_epi8(lo, eight), _mm256_sub_epi8(hi, eight), a)
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
    ) -> (__m256i, __m256i) {
        // SAFETY: per trait contract.
        unsafe {
            let (lo, hi) = nibble_pair(w0.qs.as_ptr(), w1.map(|w| w.qs.as_ptr()));
            dot_unsigned::<D>(lo, hi, a)
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
    ) -> (__m256i, __m256i) {
        // SAFETY: per trait contract; padding as for Q4_0.
        unsafe {
            let (lo, hi) = nibble_pair(w0.qs.as_ptr(), w1.map(|w| w.qs.as_ptr()));
            let (lo, hi) =
                add_fifth_bits::<D>(lo, hi, w0.high_bits(), w1.map_or(0, |w| w.high_bits()));
            let sixteen = _mm256_set1_epi8(16);
            dot_signed::<D>(
                _mm256_sub_epi8(lo, sixteen),
                _mm256_sub_epi8(hi, sixteen),
                a,
            )
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
    ) -> (__m256i, __m256i) {
        // SAFETY: per trait contract.
        unsafe {
            let (lo, hi) = nibble_pair(w0.qs.as_ptr(), w1.map(|w| w.qs.as_ptr()));
            let (lo, hi) =
                add_fifth_bits::<D>(lo, hi, w0.high_bits(), w1.map_or(0, |w| w.high_bits()));
            dot_unsigned::<D>(lo, hi, a)
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
    ) -> (__m256i, __m256i) {
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
            dot_signed::<D>(lo, hi, a)
        }
    }
}

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
/// quant bytes per pair, 8 f32 scales and `s` terms.
#[derive(Clone, Copy)]
struct GroupActs {
    qs: *const i8,
    d: *const f32,
    s: *const f32,
}

/// The running sums of one output: ggml's 8 lane accumulators and its scalar minimum
/// sum.
#[derive(Clone, Copy)]
struct Acc {
    lanes: __m256,
    mins: f32,
}

impl Acc {
    #[inline(always)]
    unsafe fn new() -> Acc {
        Acc {
            // SAFETY: AVX per module contract.
            lanes: unsafe { _mm256_setzero_ps() },
            mins: 0.0,
        }
    }
}

/// Adds one group of up to 8 weight blocks (`w`, a whole group unless it is the last)
/// to the accumulators, block after block as ggml does.
#[inline(always)]
unsafe fn group_step<F: Paired, D: I8Dot>(w: &[F::W], a: GroupActs, acc: &mut Acc) {
    let n = w.len();
    debug_assert!((1..=8).contains(&n));
    // SAFETY: `a` points to a whole group's layout (64 bytes per pair, 8 scales and `s`
    // terms); AVX2/FMA/F16C per module contract.
    unsafe {
        let (dw, mw) = match <&[F::W; 8]>::try_from(w) {
            Ok(full) => scales8(full),
            Err(_) => scales_tail(w),
        };
        let mut scale = [0f32; 8];
        _mm256_storeu_ps(scale.as_mut_ptr(), _mm256_mul_ps(dw, _mm256_loadu_ps(a.d)));
        let mut mins = [0f32; 8];
        if F::MIN {
            _mm256_storeu_ps(mins.as_mut_ptr(), mw);
        }
        for p in 0..n.div_ceil(2) {
            let w1 = w.get(2 * p + 1);
            let (lo, hi) = F::pair::<D>(&w[2 * p], w1, a.qs.add(64 * p));
            for (k, ints) in [
                _mm256_permute2x128_si256(lo, hi, 0x20),
                _mm256_permute2x128_si256(lo, hi, 0x31),
            ]
            .into_iter()
            .enumerate()
            .take(if w1.is_some() { 2 } else { 1 })
            {
                let b = 2 * p + k;
                if F::MIN {
                    acc.mins = mins[b].mul_add(*a.s.add(b), acc.mins);
                }
                acc.lanes = _mm256_fmadd_ps(
                    _mm256_set1_ps(scale[b]),
                    _mm256_cvtepi32_ps(ints),
                    acc.lanes,
                );
            }
        }
    }
}

/// The final sum of the accumulators.
#[inline(always)]
unsafe fn finish<F: Paired>(acc: Acc) -> f32 {
    // SAFETY: AVX per module contract.
    let total = unsafe { hsum_f32_8(acc.lanes) };
    if F::MIN { total + acc.mins } else { total }
}

/// One row of the decode kernel against a prepared [`PairedRow`].
#[inline(always)]
unsafe fn matvec_row<F: Paired, D: I8Dot>(w: &[F::W], a: &PairedRow<'_>) -> f32 {
    assert_eq!(w.len(), a.blocks, "matvec: block count mismatch");
    assert!(a.qs.len() >= w.len().div_ceil(2) * 64);
    assert!(a.d.len() >= w.len().next_multiple_of(8) && a.s.len() >= a.d.len());
    // SAFETY: AVX per module contract.
    let mut acc = unsafe { Acc::new() };
    for (i, group) in w.chunks(8).enumerate() {
        let b = 8 * i;
        // SAFETY: the offsets stay within the prepared buffers (asserted sizes: 64 quant
        // bytes and 8 sums per pair, scales padded to whole groups of 8 blocks).
        unsafe {
            let acts = GroupActs {
                qs: a.qs.as_ptr().add(32 * b),
                d: a.d.as_ptr().add(b),
                s: a.s.as_ptr().add(b),
            };
            group_step::<F, D>(group, acts, &mut acc);
        }
    }
    // SAFETY: per module contract.
    unsafe { finish::<F>(acc) }
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
    let mut acc = unsafe { Acc::new() };
    for (group, acts) in w.chunks(8).zip(a.chunks(8)) {
        let mut qs = [0i8; 256];
        let (mut d, mut s) = ([0f32; 8], [0f32; 8]);
        for (b, block) in acts.iter().enumerate() {
            let (bd, bs, q) = block.parts();
            let base = (b / 2) * 64 + (b % 2) * 16;
            qs[base..base + 16].copy_from_slice(&q[..16]);
            qs[base + 32..base + 48].copy_from_slice(&q[16..]);
            d[b] = bd;
            s[b] = bs;
        }
        let acts = GroupActs {
            qs: qs.as_ptr(),
            d: d.as_ptr(),
            s: s.as_ptr(),
        };
        // SAFETY: the stack arrays hold a whole group's layout; per module contract.
        unsafe { group_step::<F, D>(group, acts, &mut acc) };
    }
    // SAFETY: per module contract.
    unsafe { finish::<F>(acc) }
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
