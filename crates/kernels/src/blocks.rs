//! The block layouts of ggml's quantized types, as they sit in a GGUF file.
//!
//! Each type mirrors a `block_*` struct of ggml's `ggml/src/ggml-common.h` field for
//! field, with a compile-time check of its size against ggml's. Weights are read in place
//! from the memory-mapped file, where a tensor's data is only guaranteed to be aligned to
//! the GGUF alignment and a block inside it to nothing at all (an 18-byte Q4_0 block
//! starts at any byte). So every field here is a byte array — `f16` values are
//! [`F16Le`], two little-endian bytes — which gives every block alignment 1 and makes
//! every bit pattern valid. That is what lets [`as_blocks`] view any `&[u8]` as a block
//! slice without copying and without an unaligned read through a reference.
//!
//! Multi-byte fields are little-endian, as GGUF stores them (ggml itself assumes a
//! little-endian host; these accessors are correct on any host).

use half::f16;

/// Values per block of the 32-value formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1).
pub const QK: usize = 32;
/// Values per super-block of the K-quant formats (ggml's `QK_K`).
pub const QK_K: usize = 256;
/// Bytes of the packed 6-bit scales of Q4_K / Q5_K (ggml's `K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;

/// An IEEE half-precision value stored as two little-endian bytes (alignment 1).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct F16Le(pub [u8; 2]);

impl F16Le {
    /// The value as f32 (exact: every f16 is an f32).
    #[inline]
    pub fn to_f32(self) -> f32 {
        f16::from_bits(u16::from_le_bytes(self.0)).to_f32_const()
    }

    /// Rounds to the nearest f16, ties to even — what ggml's `GGML_FP32_TO_FP16` does
    /// (F16C `vcvtps2ph` with rounding mode 0, or its software fallback).
    #[inline]
    pub fn from_f32(value: f32) -> F16Le {
        F16Le(f16::from_f32(value).to_bits().to_le_bytes())
    }
}

/// A block type that can be viewed in place from raw bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]` structs made only of `u8`/`i8` arrays and
/// [`F16Le`] fields, so that they have alignment 1, no padding, and no invalid bit
/// patterns. [`as_blocks`] relies on all three.
pub unsafe trait Block: Copy + 'static {
    /// Values encoded by one block.
    const VALUES: usize;
}

/// Views `bytes` as a slice of blocks.
///
/// # Panics
/// If `bytes.len()` is not a multiple of the block size. Callers pass rows whose length
/// [`crate::WeightMatrix::try_new`] or the activation quantizer has already checked, so a
/// panic here is a bug in tern, not bad input.
#[inline]
pub fn as_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    let size = size_of::<B>();
    assert!(
        bytes.len().is_multiple_of(size),
        "{} bytes are not a whole number of {size}-byte blocks",
        bytes.len()
    );
    // SAFETY: `B: Block` guarantees alignment 1 (so any address is aligned), no padding
    // and no invalid bit patterns (so any initialised bytes are a valid `B`). The length
    // is exactly `bytes.len()` bytes, all inside the borrowed slice, and the returned
    // slice borrows `bytes` immutably for its whole lifetime.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size) }
}

/// Views `bytes` as a mutable slice of blocks (for the quantizers).
///
/// # Panics
/// If `bytes.len()` is not a multiple of the block size (a bug in the caller).
#[inline]
pub fn as_blocks_mut<B: Block>(bytes: &mut [u8]) -> &mut [B] {
    let size = size_of::<B>();
    assert!(
        bytes.len().is_multiple_of(size),
        "{} bytes are not a whole number of {size}-byte blocks",
        bytes.len()
    );
    // SAFETY: as in `as_blocks`; in addition the result borrows `bytes` mutably, so it is
    // the only access to those bytes while it lives, and any value written through it is
    // a valid byte pattern for `u8`.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), bytes.len() / size) }
}

macro_rules! block {
    ($(#[$doc:meta])* $name:ident, values = $values:expr, size = $size:expr, { $($body:tt)* }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug)]
        pub struct $name { $($body)* }

        // ggml's own static_assert on the same layout, plus alignment 1 (see module docs).
        const _: () = assert!(size_of::<$name>() == $size && align_of::<$name>() == 1);

        // SAFETY: the struct is `#[repr(C)]` with only byte-array and `F16Le` fields;
        // the assert above proves alignment 1 and the ggml size (so no padding).
        unsafe impl Block for $name {
            const VALUES: usize = $values;
        }
    };
}

block!(
    /// `block_q4_0`: 32 values `d * (q - 8)`, q in 0..16, two per byte (value `j` in the
    /// low nibble of byte `j`, value `j + 16` in its high nibble).
    BlockQ4_0, values = QK, size = 18, {
        pub d: F16Le,
        pub qs: [u8; QK / 2],
    }
);

block!(
    /// `block_q4_1`: 32 values `d * q + m`, q in 0..16, nibbles as in Q4_0.
    BlockQ4_1, values = QK, size = 20, {
        pub d: F16Le,
        pub m: F16Le,
        pub qs: [u8; QK / 2],
    }
);

block!(
    /// `block_q5_0`: 32 values `d * (q - 16)`, q in 0..32: low nibbles as in Q4_0, the
    /// fifth bit of value `j` is bit `j` of the little-endian u32 `qh`.
    BlockQ5_0, values = QK, size = 22, {
        pub d: F16Le,
        pub qh: [u8; 4],
        pub qs: [u8; QK / 2],
    }
);

block!(
    /// `block_q5_1`: 32 values `d * q + m`, q in 0..32, bits as in Q5_0.
    BlockQ5_1, values = QK, size = 24, {
        pub d: F16Le,
        pub m: F16Le,
        pub qh: [u8; 4],
        pub qs: [u8; QK / 2],
    }
);

block!(
    /// `block_q8_0`: 32 values `d * q`, q a signed byte.
    BlockQ8_0, values = QK, size = 34, {
        pub d: F16Le,
        pub qs: [i8; QK],
    }
);

block!(
    /// `block_q8_1`: as Q8_0 plus `s = d * sum(q)`, which lets the Q4_1/Q5_1 dot products
    /// add the weight minimum without touching the quants.
    BlockQ8_1, values = QK, size = 36, {
        pub d: F16Le,
        pub s: F16Le,
        pub qs: [i8; QK],
    }
);

block!(
    /// `block_q2_K`: 16 sub-blocks of 16 values `d * sc * q - dmin * m`, q in 0..4;
    /// `scales[j]` holds sc (low nibble) and m (high nibble) of sub-block `j`.
    BlockQ2K, values = QK_K, size = 84, {
        pub scales: [u8; QK_K / 16],
        pub qs: [u8; QK_K / 4],
        pub d: F16Le,
        pub dmin: F16Le,
    }
);

block!(
    /// `block_q3_K`: 16 sub-blocks of 16 values `d * (sc - 32) * (q - 4 * !h)`, q the
    /// low 2 bits in `qs`, h the high bit in `hmask`, sc a 6-bit scale packed in
    /// `scales`.
    BlockQ3K, values = QK_K, size = 110, {
        pub hmask: [u8; QK_K / 8],
        pub qs: [u8; QK_K / 4],
        pub scales: [u8; 12],
        pub d: F16Le,
    }
);

block!(
    /// `block_q4_K`: 8 sub-blocks of 32 values `d * sc * q - dmin * m`, q in 0..16,
    /// sc and m 6-bit values packed in `scales` (see [`scale_min_k4`]).
    BlockQ4K, values = QK_K, size = 144, {
        pub d: F16Le,
        pub dmin: F16Le,
        pub scales: [u8; K_SCALE_SIZE],
        pub qs: [u8; QK_K / 2],
    }
);

block!(
    /// `block_q5_K`: as Q4_K with a fifth bit per value in `qh`.
    BlockQ5K, values = QK_K, size = 176, {
        pub d: F16Le,
        pub dmin: F16Le,
        pub scales: [u8; K_SCALE_SIZE],
        pub qh: [u8; QK_K / 8],
        pub qs: [u8; QK_K / 2],
    }
);

block!(
    /// `block_q6_K`: 16 sub-blocks of 16 values `d * sc * (q - 32)`, q in 0..64 (low 4
    /// bits in `ql`, high 2 in `qh`), sc a signed byte.
    BlockQ6K, values = QK_K, size = 210, {
        pub ql: [u8; QK_K / 2],
        pub qh: [u8; QK_K / 4],
        pub scales: [i8; QK_K / 16],
        pub d: F16Le,
    }
);

block!(
    /// `block_q8_K`: the activation format of the K-quant dot products: 256 values
    /// `d * q` with an f32 scale, and `bsums[j]` = the sum of the 16 quants of group `j`
    /// (used to apply the weight minimums in one multiply per group). ggml declares `d`
    /// as `float` and `bsums` as `int16_t`; here they are little-endian bytes like every
    /// other field, so the block keeps alignment 1 — it never appears in files, but one
    /// layout rule for all blocks keeps the byte-buffer handling uniform.
    BlockQ8K, values = QK_K, size = 292, {
        pub d: [u8; 4],
        pub qs: [i8; QK_K],
        pub bsums: [[u8; 2]; QK_K / 16],
    }
);

impl BlockQ8K {
    /// The block scale.
    #[inline]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    /// The sum of the quants of 16-value group `j`.
    #[inline]
    pub fn bsum(&self, j: usize) -> i16 {
        i16::from_le_bytes(self.bsums[j])
    }
}

impl BlockQ5_0 {
    /// The fifth bits of the 32 quants, bit `j` for value `j`.
    #[inline]
    pub fn high_bits(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}

impl BlockQ5_1 {
    /// The fifth bits of the 32 quants, bit `j` for value `j`.
    #[inline]
    pub fn high_bits(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}

/// Scale and minimum of sub-block `j` (0..8) of a Q4_K / Q5_K block: 6-bit values packed
/// into 12 bytes. Follows ggml's `get_scale_min_k4` (ggml-quants.c); the K-quant dot
/// products in ggml-cpu unpack the same bits with 32-bit masks (`kmask1..3`).
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 16 signed 6-bit scales of a Q3_K block, minus 32 as ggml applies them. Equivalent
/// to the `kmask1`/`kmask2` unpacking of ggml's `dequantize_row_q3_K`: the low nibble of
/// scale `j` is in byte `j % 8` (high nibble for `j >= 8`), its top 2 bits in byte
/// `8 + j % 4` at bit `2 * (j / 4)`.
#[inline]
pub fn q3_k_scales(packed: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, s) in out.iter_mut().enumerate() {
        let low = if j < 8 {
            packed[j] & 0xF
        } else {
            packed[j - 8] >> 4
        };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        *s = (low | (high << 4)) as i8 - 32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_gguf::GgmlType;

    #[test]
    fn sizes_agree_with_the_gguf_type_table() {
        let table: [(GgmlType, usize, usize); 12] = [
            (GgmlType::Q4_0, size_of::<BlockQ4_0>(), BlockQ4_0::VALUES),
            (GgmlType::Q4_1, size_of::<BlockQ4_1>(), BlockQ4_1::VALUES),
            (GgmlType::Q5_0, size_of::<BlockQ5_0>(), BlockQ5_0::VALUES),
            (GgmlType::Q5_1, size_of::<BlockQ5_1>(), BlockQ5_1::VALUES),
            (GgmlType::Q8_0, size_of::<BlockQ8_0>(), BlockQ8_0::VALUES),
            (GgmlType::Q8_1, size_of::<BlockQ8_1>(), BlockQ8_1::VALUES),
            (GgmlType::Q2_K, size_of::<BlockQ2K>(), BlockQ2K::VALUES),
            (GgmlType::Q3_K, size_of::<BlockQ3K>(), BlockQ3K::VALUES),
            (GgmlType::Q4_K, size_of::<BlockQ4K>(), BlockQ4K::VALUES),
            (GgmlType::Q5_K, size_of::<BlockQ5K>(), BlockQ5K::VALUES),
            (GgmlType::Q6_K, size_of::<BlockQ6K>(), BlockQ6K::VALUES),
            (GgmlType::Q8_K, size_of::<BlockQ8K>(), BlockQ8K::VALUES),
        ];
        for (ty, size, values) in table {
            assert_eq!(ty.type_size(), size, "{ty} size");
            assert_eq!(ty.block_size(), values, "{ty} values per block");
        }
    }

    #[test]
    fn blocks_view_unaligned_bytes() {
        // One spare byte in front forces an odd start address.
        let mut raw = [0u8; 1 + 2 * 18];
        raw[1..3].copy_from_slice(&F16Le::from_f32(0.5).0);
        raw[3] = 0x9F;
        raw[19..21].copy_from_slice(&F16Le::from_f32(-2.0).0);
        let blocks: &[BlockQ4_0] = as_blocks(&raw[1..]);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].d.to_f32(), 0.5);
        assert_eq!(blocks[0].qs[0], 0x9F);
        assert_eq!(blocks[1].d.to_f32(), -2.0);
    }

    #[test]
    #[should_panic(expected = "not a whole number")]
    fn partial_blocks_are_rejected() {
        let raw = [0u8; 19];
        let _ = as_blocks::<BlockQ4_0>(&raw);
    }

    #[test]
    fn f16_rounds_to_nearest_even() {
        // 1 + 2^-11 lies exactly between 1 and the next f16 (1 + 2^-10): ties to even.
        assert_eq!(F16Le::from_f32(1.0 + 2f32.powi(-11)).to_f32(), 1.0);
        let above = 1.0 + 2f32.powi(-10) + 2f32.powi(-11);
        assert_eq!(F16Le::from_f32(above).to_f32(), 1.0 + 2.0 * 2f32.powi(-10));
        assert_eq!(F16Le::from_f32(-3.5).0, [0x00, 0xC3]);
    }

    #[test]
    fn k4_scales_unpack_like_ggml_masks() {
        // ggml-cpu's dot products unpack with 32-bit masks; check the byte form agrees
        // on every byte pattern position.
        let mut packed = [0u8; 12];
        for (i, b) in packed.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let mut utmp = [
            u32::from_le_bytes(packed[0..4].try_into().unwrap()),
            u32::from_le_bytes(packed[4..8].try_into().unwrap()),
            u32::from_le_bytes(packed[8..12].try_into().unwrap()),
            0,
        ];
        let (kmask1, kmask2, kmask3) = (0x3f3f3f3fu32, 0x0f0f0f0fu32, 0x03030303u32);
        utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
        let uaux = utmp[1] & kmask1;
        utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
        utmp[2] = uaux;
        utmp[0] &= kmask1;
        let bytes: Vec<u8> = utmp.iter().flat_map(|u| u.to_le_bytes()).collect();
        for j in 0..8 {
            assert_eq!(scale_min_k4(j, &packed), (bytes[j], bytes[8 + j]), "j={j}");
        }
    }

    #[test]
    fn q3_scales_unpack_like_ggml_masks() {
        let mut packed = [0u8; 12];
        for (i, b) in packed.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(53).wrapping_add(7);
        }
        let mut aux = [
            u32::from_le_bytes(packed[0..4].try_into().unwrap()),
            u32::from_le_bytes(packed[4..8].try_into().unwrap()),
            u32::from_le_bytes(packed[8..12].try_into().unwrap()),
            0,
        ];
        let (kmask1, kmask2) = (0x03030303u32, 0x0f0f0f0fu32);
        let tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | ((tmp & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        let bytes: Vec<i8> = aux
            .iter()
            .flat_map(|u| u.to_le_bytes())
            .map(|b| b as i8 - 32)
            .collect();
        assert_eq!(q3_k_scales(&packed).to_vec(), bytes);
    }
}
