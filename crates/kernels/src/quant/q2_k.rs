//! Q2_K: 256 values per super-block in 16 groups of 16, `d * sc * q - dmin * m` with a
//! 2-bit q and 4-bit sc/m. Dequantize and dot product only (tern reads Q2_K files but
//! does not write them). Follows ggml's `dequantize_row_q2_K` (ggml/src/ggml-quants.c)
//! and `ggml_vec_dot_q2_K_q8_K_generic` (ggml/src/ggml-cpu/quants.c).

use crate::blocks::{BlockQ2K, BlockQ8K, QK_K};

/// Writes the 256 values of each block to `out`.
pub fn dequantize(blocks: &[BlockQ2K], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK_K,
        "q2_K dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = block.d.to_f32();
        let min = block.dmin.to_f32();
        let mut out_index = 0;
        let mut is = 0;
        // Two halves of 128 values; each reads 32 bytes of quants four times, two bits
        // further each time, in groups of 16 bytes with their own scale.
        for half in 0..QK_K / 128 {
            let q = &block.qs[32 * half..32 * (half + 1)];
            for shift in [0u32, 2, 4, 6] {
                for group in [&q[..16], &q[16..]] {
                    let sc = block.scales[is];
                    is += 1;
                    let dl = d * (sc & 0xF) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for &byte in group {
                        y[out_index] = dl * ((byte >> shift) & 3) as f32 - ml;
                        out_index += 1;
                    }
                }
            }
        }
    }
}

/// Dot product with a Q8_K activation row: integer sums per group times the 4-bit
/// scales, the minimums through `bsums`, then `dall * isum - dmin * summs` per block
/// accumulated in f32.
pub fn vec_dot(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "q2_K vec_dot: block count mismatch");
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let summs: i32 = (0..16)
            .map(|j| y.bsum(j) as i32 * (x.scales[j] >> 4) as i32)
            .sum();
        let dall = y.d() * x.d.to_f32();
        let dmin = y.d() * x.dmin.to_f32();

        let mut isum = 0i32;
        let mut is = 0;
        let mut q8 = &y.qs[..];
        for half in 0..QK_K / 128 {
            let q2 = &x.qs[32 * half..32 * (half + 1)];
            for shift in [0u32, 2, 4, 6] {
                for (lo, hi) in [(0, 16), (16, 32)] {
                    let d = (x.scales[is] & 0xF) as i32;
                    is += 1;
                    let isuml: i32 = (lo..hi)
                        .map(|l| q8[l] as i32 * ((q2[l] >> shift) & 3) as i32)
                        .sum();
                    isum += d * isuml;
                }
                q8 = &q8[32..];
            }
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}
