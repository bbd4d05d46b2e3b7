//! Small 256-bit building blocks shared by the x86_64 kernels, and [`I8Dot`], the
//! operations that the AVX2 and AVX-512 paths do differently (the 8-bit dot product:
//! `vpmaddubsw` + `vpmaddwd`, or VNNI's `vpdpbusd`; bits to bytes: shuffles and
//! compares, or a mask register).
//!
//! Everything here is `#[inline(always)] unsafe fn` without `#[target_feature]`, as in
//! memchr's `vector.rs`: the functions are only ever inlined into the `#[target_feature]`
//! entry points of [`super`], which is where the instructions get their features. The
//! contract of every function: the CPU has the features of the entry point it is
//! inlined into (AVX2, FMA and F16C at least; AVX-512 BW and VL for [`Avx512`], and VNNI
//! too for [`Avx512Vnni`]), and pointers are valid for the bytes the function says it
//! reads.
//!
//! The nibble and bit expansions are the ones llama.cpp's x86 `quants.c` uses
//! (`bytes_from_nibbles_32`, `bytes_from_bits_32`), written anew.

use std::arch::x86_64::*;

/// The instructions that differ between the x86 paths, behind one trait so that every
/// kernel is written once: above all an exact dot product of unsigned and signed bytes,
/// accumulated in 8 i32 lanes (lane `i` gains `Σ_{k<4} u[4i+k] * s[4i+k]`).
///
/// # Safety
/// The `Maddubs` form adds the products pairwise in i16 first, with saturation: callers
/// guarantee `|u[2j] * s[2j] + u[2j+1] * s[2j+1]| <= 32767` (e.g. `u <= 127`, or the
/// sign trick's `u <= 128` with `|s| <= 127`). The CPU must have the features of the
/// implementation.
pub(crate) trait I8Dot {
    /// `acc + dot(u, s)` per 4-byte group.
    unsafe fn dot(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    /// `acc + Σ_{k<2} a[2i+k] * b[2i+k]` per lane, from i16 values.
    unsafe fn madd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i;
    /// `x` with `byte` added to byte `j` wherever bit `j` of `bits` is set (no carries:
    /// callers add a bit the bytes do not have yet).
    unsafe fn add_where_bits(x: __m256i, bits: u32, byte: i8) -> __m256i;
}

/// [`I8Dot::add_where_bits`] with AVX2 only: [`bytes_from_bits_32`], then an AND and an
/// OR.
#[inline(always)]
unsafe fn add_where_bits_avx2(x: __m256i, bits: u32, byte: i8) -> __m256i {
    // SAFETY: AVX2 per module contract.
    unsafe {
        _mm256_or_si256(
            x,
            _mm256_and_si256(bytes_from_bits_32(bits), _mm256_set1_epi8(byte)),
        )
    }
}

/// [`I8Dot::add_where_bits`] with AVX-512 BW/VL: the bits are the mask of a masked add.
#[inline(always)]
unsafe fn add_where_bits_avx512(x: __m256i, bits: u32, byte: i8) -> __m256i {
    // SAFETY: AVX-512 BW and VL per module contract.
    unsafe { _mm256_mask_add_epi8(x, bits, x, _mm256_set1_epi8(byte)) }
}

/// AVX2: `vpmaddubsw` (u8 × i8 → i16 pairs) then `vpmaddwd` with ones.
pub(crate) struct Avx2;

/// AVX-512 BW/VL without VNNI: the 8-bit products as [`Avx2`], bit masks to bytes with
/// mask registers.
pub(crate) struct Avx512;

/// AVX-512 VNNI on 256-bit registers (AVX-512 VL): `vpdpbusd`, `vpdpwssd`.
pub(crate) struct Avx512Vnni;

/// `vpmaddubsw` + `vpmaddwd` with ones.
#[inline(always)]
unsafe fn dot_maddubs(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    // SAFETY: AVX2 is present (contract of this module).
    unsafe {
        let pairs = _mm256_maddubs_epi16(u, s);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
}

impl I8Dot for Avx2 {
    #[inline(always)]
    unsafe fn dot(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: per module contract.
        unsafe { dot_maddubs(acc, u, s) }
    }

    #[inline(always)]
    unsafe fn madd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX2 is present (contract of this module).
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)) }
    }

    #[inline(always)]
    unsafe fn add_where_bits(x: __m256i, bits: u32, byte: i8) -> __m256i {
        // SAFETY: per module contract.
        unsafe { add_where_bits_avx2(x, bits, byte) }
    }
}

impl I8Dot for Avx512 {
    #[inline(always)]
    unsafe fn dot(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: per module contract.
        unsafe { dot_maddubs(acc, u, s) }
    }

    #[inline(always)]
    unsafe fn madd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX2 is present (contract of this module).
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)) }
    }

    #[inline(always)]
    unsafe fn add_where_bits(x: __m256i, bits: u32, byte: i8) -> __m256i {
        // SAFETY: per module contract.
        unsafe { add_where_bits_avx512(x, bits, byte) }
    }
}

impl I8Dot for Avx512Vnni {
    #[inline(always)]
    unsafe fn dot(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: AVX-512 VNNI and VL are present (contract of this module).
        unsafe { _mm256_dpbusd_epi32(acc, u, s) }
    }

    #[inline(always)]
    unsafe fn madd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX-512 VNNI and VL are present (contract of this module).
        unsafe { _mm256_dpwssd_epi32(acc, a, b) }
    }

    #[inline(always)]
    unsafe fn add_where_bits(x: __m256i, bits: u32, byte: i8) -> __m256i {
        // SAFETY: per module contract.
        unsafe { add_where_bits_avx512(x, bits, byte) }
    }
}

/// Signed × signed bytes with the sign trick of llama.cpp's `mul_sum_i8_pairs`: `|x|`
/// times `y` with `x`'s sign moved onto it, so the unsigned operand is at most 128 and
/// `vpmaddubsw` cannot saturate as long as `y` is never -128 (activation quants are
/// within ±127).
#[inline(always)]
pub(crate) unsafe fn dot_i8<D: I8Dot>(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
    // SAFETY: AVX2 is present (contract of this module).
    unsafe {
        let ax = _mm256_sign_epi8(x, x);
        let sy = _mm256_sign_epi8(y, x);
        D::dot(acc, ax, sy)
    }
}

/// Loads 32 unaligned bytes.
///
/// # Safety
/// `p` is valid for 32 bytes of reads.
#[inline(always)]
pub(crate) unsafe fn load32(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes; `loadu` has no alignment needs.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// Loads 16 unaligned bytes.
///
/// # Safety
/// `p` is valid for 16 bytes of reads.
#[inline(always)]
pub(crate) unsafe fn load16(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 16 readable bytes; `loadu` has no alignment needs.
    unsafe { _mm_loadu_si128(p.cast()) }
}

/// 32 nibbles (16 bytes) as 32 bytes: the low nibbles of the 16 bytes, then the high
/// ones — the value order of ggml's 4-bit blocks.
///
/// # Safety
/// `p` is valid for 16 bytes of reads.
#[inline(always)]
pub(crate) unsafe fn nibbles_32(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes; AVX2 is present.
    unsafe {
        let bytes = load16(p);
        let both = _mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }
}

/// The 32 bits of `bits` as 32 bytes, `0xFF` where the bit is set, `0x00` where not
/// (byte `j` for bit `j`).
#[inline(always)]
pub(crate) unsafe fn bytes_from_bits_32(bits: u32) -> __m256i {
    // SAFETY: AVX2 is present (contract of this module).
    unsafe {
        // Byte j of the result gets byte j / 8 of `bits`...
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(bits as i32),
            _mm256_set_epi64x(
                0x0303_0303_0303_0303,
                0x0202_0202_0202_0202,
                0x0101_0101_0101_0101,
                0x0000_0000_0000_0000,
            ),
        );
        // ...then every bit except bit j % 8 is forced on, so the byte is all ones
        // exactly when bit j was set.
        let forced = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
        _mm256_cmpeq_epi8(forced, _mm256_set1_epi64x(-1))
    }
}

/// The sum of the 8 lanes, as `((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7))`.
#[inline(always)]
pub(crate) unsafe fn hsum_f32_8(v: __m256) -> f32 {
    // SAFETY: AVX is present (contract of this module).
    unsafe {
        let mut r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
        r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }
}

/// The sum of 8 i32 lanes.
#[inline(always)]
pub(crate) unsafe fn hsum_i32_8(v: __m256i) -> i32 {
    // SAFETY: AVX2 is present (contract of this module).
    unsafe {
        let r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
        let r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0b10_11_00_01));
        _mm_cvtsi128_si32(r)
    }
}

/// 16 bytes at `p` in the low half and 16 bytes at `q` in the high half.
///
/// # Safety
/// `p` and `q` are each valid for 16 bytes of reads.
#[inline(always)]
pub(crate) unsafe fn load_halves(p: *const u8, q: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes at each pointer.
    unsafe { _mm256_set_m128i(load16(q), load16(p)) }
}

/// 16 bytes at `p` in the low half, zeros in the high half.
///
/// # Safety
/// `p` is valid for 16 bytes of reads.
#[inline(always)]
pub(crate) unsafe fn load_low_half(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes.
    unsafe { _mm256_zextsi128_si256(load16(p)) }
}

/// Eight f16 pairs, given as the u32 `lo | hi << 16` of each of 8 lanes, as two f32
/// vectors: the 8 `lo` halves and the 8 `hi` halves, in lane order.
#[inline(always)]
pub(crate) unsafe fn f16_pairs_to_f32(v: __m256i) -> (__m256, __m256) {
    // SAFETY: AVX2 and F16C per module contract.
    unsafe {
        let lo = _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF));
        let hi = _mm256_srli_epi32(v, 16);
        // Per 128-bit half: [lo0..lo3, hi0..hi3 | lo4..lo7, hi4..hi7] ...
        let packed = _mm256_packus_epi32(lo, hi);
        // ... then [lo0..lo7, hi0..hi7].
        let ordered = _mm256_permute4x64_epi64(packed, 0b11_01_10_00);
        (
            _mm256_cvtph_ps(_mm256_castsi256_si128(ordered)),
            _mm256_cvtph_ps(_mm256_extracti128_si256(ordered, 1)),
        )
    }
}
