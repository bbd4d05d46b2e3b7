//! Weight panels for the batched matmul ([`super::gemm`]): a panel is `PH` weight rows
//! (8 for AVX2, 16 for AVX-512: one register of f32 lanes) unpacked once to unsigned
//! bytes and laid out so that one 4-byte group of activations, broadcast to every lane,
//! meets the same 4 values of all `PH` rows in one `vpdpbusd` / `vpmaddubsw`.
//!
//! Layout, per group of `G` values (one scale per row; `G` is 32, or 16 for the formats
//! whose scales are per 16 values):
//!
//! ```text
//! quads:  G/4 × PH × 4 bytes   quad j, row r: the row's values 4j..4j+4 of the group
//! scales: PH × f32             d (· sub-block scale) of each row
//! mins:   PH × f32             only for formats with minimums: the term that
//!                              multiplies the activations' `s` (Q4_1: m; Q4_K: -dmin·m)
//! ```
//!
//! Quants are stored unsigned with a per-format offset (Q4_0 `q - 8` as `q`, Q8_0 `w` as
//! `w + 128`, Q6_K `q - 32` as `q`, Q3_K as `q + 4`), which the kernel takes back from
//! the activations' quant sums, exactly as the decode kernels do. Rows past the end of
//! the matrix are zero.

use std::arch::x86_64::*;

use super::dotk::{KFormat, Q3K, Q5K};
use super::simd::{bytes_from_bits_32, load32, nibbles_32};
use crate::blocks::{
    Block, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ5K, BlockQ8_0, F16Le,
    as_blocks,
};

/// How a weight format enters the batched kernel.
pub(crate) trait GemmFormat {
    /// The block type.
    type B: Block;
    /// Values per group (rows have one scale, and one minimum, per group).
    const G: usize;
    /// Whether groups have minimums.
    const MIN: bool;
    /// `log2` of the offset subtracted from the stored quants, if any.
    const OFFSET_SHIFT: Option<i32>;
    /// How many quads' `vpmaddubsw` outputs can be added in i16 without overflow
    /// (the largest quant times 127 times 2, times this, stays below 2^15).
    const DEPTH: usize;
    /// Unpacks a block: `q` gets its values (unsigned, value order), `scale` and `min`
    /// one entry per group.
    unsafe fn unpack(b: &Self::B, q: &mut [u8; 256], scale: &mut [f32; 16], min: &mut [f32; 16]);
}

/// Bytes of one group of a panel of `ph` rows.
pub(crate) const fn group_bytes<F: GemmFormat>(ph: usize) -> usize {
    F::G * ph + 4 * ph * if F::MIN { 2 } else { 1 }
}

#[inline(always)]
unsafe fn store32(q: &mut [u8], v: __m256i) {
    assert!(q.len() >= 32);
    // SAFETY: 32 writable bytes (asserted); AVX per module contract.
    unsafe { _mm256_storeu_si256(q.as_mut_ptr().cast(), v) }
}

fn f16(x: F16Le) -> f32 {
    x.to_f32()
}

pub(crate) struct P4_0;
pub(crate) struct P4_1;
pub(crate) struct P5_0;
pub(crate) struct P5_1;
pub(crate) struct P8_0;

impl GemmFormat for P4_0 {
    type B = BlockQ4_0;
    const G: usize = 32;
    const MIN: bool = false;
    const OFFSET_SHIFT: Option<i32> = Some(3);
    const DEPTH: usize = 8;
    #[inline(always)]
    unsafe fn unpack(b: &BlockQ4_0, q: &mut [u8; 256], s: &mut [f32; 16], _: &mut [f32; 16]) {
        // SAFETY: the nibble field is 16 bytes.
        unsafe { store32(q, nibbles_32(b.qs.as_ptr())) };
        s[0] = f16(b.d);
    }
}

impl GemmFormat for P4_1 {
    type B = BlockQ4_1;
    const G: usize = 32;
    const MIN: bool = true;
    const OFFSET_SHIFT: Option<i32> = None;
    const DEPTH: usize = 8;
    #[inline(always)]
    unsafe fn unpack(b: &BlockQ4_1, q: &mut [u8; 256], s: &mut [f32; 16], m: &mut [f32; 16]) {
        // SAFETY: the nibble field is 16 bytes.
        unsafe { store32(q, nibbles_32(b.qs.as_ptr())) };
        s[0] = f16(b.d);
        m[0] = f16(b.m);
    }
}

/// Nibbles plus the fifth bits of a Q5 block, as unsigned bytes 0..32.
#[inline(always)]
unsafe fn q5_values(qs: &[u8; 16], high: u32) -> __m256i {
    // SAFETY: AVX2 per module contract.
    unsafe {
        let bits = _mm256_and_si256(bytes_from_bits_32(high), _mm256_set1_epi8(0x10));
        _mm256_or_si256(nibbles_32(qs.as_ptr()), bits)
    }
}

impl GemmFormat for P5_0 {
    type B = BlockQ5_0;
    const G: usize = 32;
    const MIN: bool = false;
    const OFFSET_SHIFT: Option<i32> = Some(4);
    const DEPTH: usize = 4;
    #[inline(always)]
    unsafe fn unpack(b: &BlockQ5_0, q: &mut [u8; 256], s: &mut [f32; 16], _: &mut [f32; 16]) {
        // SAFETY: per module contract.
        unsafe { store32(q, q5_values(&b.qs, b.high_bits())) };
        s[0] = f16(b.d);
    }
}

impl GemmFormat for P5_1 {
    type B = BlockQ5_1;
    const G: usize = 32;
    const MIN: bool = true;
    const OFFSET_SHIFT: Option<i32> = None;
    const DEPTH: usize = 4;
    #[inline(always)]
    unsafe fn unpack(b: &BlockQ5_1, q: &mut [u8; 256], s: &mut [f32; 16], m: &mut [f32; 16]) {
        // SAFETY: per module contract.
        unsafe { store32(q, q5_values(&b.qs, b.high_bits())) };
        s[0] = f16(b.d);
        m[0] = f16(b.m);
    }
}

impl GemmFormat for P8_0 {
    type B = BlockQ8_0;
    const G: usize = 32;
    const MIN: bool = false;
    const OFFSET_SHIFT: Option<i32> = Some(7);
    /// `w + 128` reaches 255: only exact with VNNI's 32-bit sums, so Q8_0 panels are
    /// used on the VNNI path only.
    const DEPTH: usize = 0;
    #[inline(always)]
    unsafe fn unpack(b: &BlockQ8_0, q: &mut [u8; 256], s: &mut [f32; 16], _: &mut [f32; 16]) {
        // SAFETY: the quant field is 32 bytes.
        unsafe {
            let w = load32(b.qs.as_ptr().cast());
            store32(q, _mm256_xor_si256(w, _mm256_set1_epi8(i8::MIN)));
        }
        s[0] = f16(b.d);
    }
}

pub(crate) struct P5K;
pub(crate) struct P3K;

/// A K-quant block through its decode-kernel unpacking: the 8 chunks of 32 quants and
/// the 16 group scales (and minimums) as i16.
#[inline(always)]
unsafe fn unpack_k<K: KFormat>(b: &K::W, q: &mut [u8; 256]) -> (f32, f32, [i16; 16], [i16; 16]) {
    // SAFETY: per module contract; the stores write 32 bytes each into the 256 of `q`
    // and 32 bytes into each 16-lane i16 array.
    unsafe {
        let (d, dmin, scales, mins, prep) = K::prepare(b);
        for c in 0..8 {
            store32(&mut q[32 * c..], K::chunk(b, &prep, c));
        }
        let (mut s, mut m) = ([0i16; 16], [0i16; 16]);
        _mm256_storeu_si256(s.as_mut_ptr().cast(), scales);
        _mm256_storeu_si256(m.as_mut_ptr().cast(), mins);
        (d, dmin, s, m)
    }
}

impl GemmFormat for P5K {
    type B = BlockQ5K;
    const G: usize = 32;
    const MIN: bool = true;
    const OFFSET_SHIFT: Option<i32> = None;
    const DEPTH: usize = 4;
    #[inline(always)]
    unsafe fn unpack(b: &BlockQ5K, q: &mut [u8; 256], s: &mut [f32; 16], m: &mut [f32; 16]) {
        // SAFETY: per module contract.
        let (d, dmin, sc, mn) = unsafe { unpack_k::<Q5K>(b, q) };
        for j in 0..8 {
            s[j] = d * sc[2 * j] as f32;
            m[j] = -(dmin * mn[2 * j] as f32);
        }
    }
}

impl GemmFormat for P3K {
    type B = BlockQ3K;
    const G: usize = 16;
    const MIN: bool = false;
    const OFFSET_SHIFT: Option<i32> = Some(2);
    const DEPTH: usize = 4;
    #[inline(always)]
    unsafe fn unpack(b: &BlockQ3K, q: &mut [u8; 256], s: &mut [f32; 16], _: &mut [f32; 16]) {
        // SAFETY: per module contract.
        let (d, _, sc, _) = unsafe { unpack_k::<Q3K>(b, q) };
        for g in 0..16 {
            s[g] = d * sc[g] as f32;
        }
    }
}

/// Packs `rows` (at most `ph`) consecutive weight rows of `row_bytes` bytes into
/// `panel` (see the module docs); rows `rows..ph` are zero.
#[inline(always)]
pub(crate) unsafe fn pack_panel<F: GemmFormat>(
    weights: &[u8],
    row_bytes: usize,
    rows: usize,
    ph: usize,
    panel: &mut [u8],
) {
    let values_per_block = F::B::VALUES;
    let blocks = row_bytes / size_of::<F::B>();
    let groups_per_block = values_per_block / F::G;
    let gb = group_bytes::<F>(ph);
    assert!(rows <= ph && weights.len() == rows * row_bytes);
    assert_eq!(panel.len(), blocks * groups_per_block * gb);
    if rows < ph {
        panel.fill(0);
    }
    let mut q = [0u8; 256];
    let mut scale = [0f32; 16];
    let mut min = [0f32; 16];
    for (r, row) in weights.chunks_exact(row_bytes).enumerate() {
        for (bi, block) in as_blocks::<F::B>(row).iter().enumerate() {
            // SAFETY: per module contract.
            unsafe { F::unpack(block, &mut q, &mut scale, &mut min) };
            for gi in 0..groups_per_block {
                let group = &mut panel[(bi * groups_per_block + gi) * gb..][..gb];
                for j in 0..F::G / 4 {
                    let at = (j * ph + r) * 4;
                    group[at..at + 4].copy_from_slice(&q[gi * F::G + 4 * j..][..4]);
                }
                let at = F::G * ph + 4 * r;
                group[at..at + 4].copy_from_slice(&scale[gi].to_ne_bytes());
                if F::MIN {
                    let at = F::G * ph + 4 * ph + 4 * r;
                    group[at..at + 4].copy_from_slice(&min[gi].to_ne_bytes());
                }
            }
        }
    }
}
