//! Q8_K: the activation format of every K-quant dot product: 256 values `d * q` with an
//! f32 scale and the sums of each 16-value group (`bsums`), so that the weight minimums
//! cost one multiply per group. Follows ggml's `quantize_row_q8_K_ref`
//! (ggml/src/ggml-quants.c), which llama.cpp's CPU backend also uses on x86 and Arm.

use crate::blocks::{BlockQ8K, QK_K};

/// Rounds to the nearest integer, ties to even, for |x| < 2^22 — ggml's `nearest_int`,
/// which adds 1.5 * 2^23 so that the f32 addition itself does the rounding.
#[inline]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let val = x + 12_582_912.0;
    (val.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Quantizes `x` (256 values per block). The scale comes from the value of largest
/// magnitude (the first one on ties), `iscale = -127 / max`, `d = 1 / iscale`.
pub fn quantize(x: &[f32], out: &mut [BlockQ8K]) {
    assert_eq!(x.len(), out.len() * QK_K, "q8_K quantize: length mismatch");
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            // ggml leaves `bsums` untouched here (they are multiplied by d = 0 later);
            // zero them so the buffer never carries stale sums.
            block.d = 0.0f32.to_le_bytes();
            block.qs = [0; QK_K];
            block.bsums = [[0; 2]; QK_K / 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in block.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (j, sum) in block.bsums.iter_mut().enumerate() {
            let s: i32 = block.qs[16 * j..16 * (j + 1)]
                .iter()
                .map(|&q| q as i32)
                .sum();
            *sum = (s as i16).to_le_bytes();
        }
        block.d = (1.0 / iscale).to_le_bytes();
    }
}

/// Writes the 256 values of each block to `out`.
pub fn dequantize(blocks: &[BlockQ8K], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK_K,
        "q8_K dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = block.d();
        for (y, &q) in y.iter_mut().zip(&block.qs) {
            *y = d * q as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_ties_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-126.6), -127);
        assert_eq!(nearest_int(126.49), 126);
    }

    fn empty() -> [BlockQ8K; 1] {
        [BlockQ8K {
            d: [0; 4],
            qs: [0; QK_K],
            bsums: [[0xAA; 2]; QK_K / 16],
        }]
    }

    #[test]
    fn quantize_rounds_ties_to_even_and_sums_groups() {
        // max = -127 gives iscale = 1, so iscale * x keeps the .5 ties.
        let mut x = [0.0f32; QK_K];
        x[..6].copy_from_slice(&[-127.0, 0.5, 1.5, 2.5, -0.5, -2.5]);
        x[16] = 100.25;
        let mut block = empty();
        quantize(&x, &mut block);
        assert_eq!(block[0].d(), 1.0);
        assert_eq!(&block[0].qs[..6], &[-127, 0, 2, 2, 0, -2]);
        assert_eq!(block[0].bsum(0), -127 + 2 + 2 - 2);
        assert_eq!(block[0].bsum(1), 100);
        assert!((2..16).all(|j| block[0].bsum(j) == 0));
    }

    #[test]
    fn positive_max_flips_the_sign_of_the_scale() {
        // ggml divides by the signed max: d is negative when the largest magnitude is
        // positive, and the quants are mirrored (the largest maps to -127).
        let mut x = [0.0f32; QK_K];
        x[3] = 2.0;
        x[4] = -1.0;
        let mut block = empty();
        quantize(&x, &mut block);
        assert_eq!(block[0].qs[3], -127);
        assert_eq!(block[0].qs[4], 64);
        let mut y = [0.0f32; QK_K];
        dequantize(&block, &mut y);
        assert!((y[3] - 2.0).abs() < 1e-6 && (y[4] + 1.0).abs() < 0.01);
    }

    #[test]
    fn zero_block_clears_stale_sums() {
        let mut block = empty();
        quantize(&[0.0; QK_K], &mut block);
        assert_eq!(block[0].d(), 0.0);
        assert!((0..16).all(|j| block[0].bsum(j) == 0));
    }
}
