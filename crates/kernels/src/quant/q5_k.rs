//! Q5_K: as Q4_K with a fifth bit per value (`qh`): `d * sc * q - dmin * m`, q in 0..32.
//! Dequantize and dot product only. Follows ggml's `dequantize_row_q5_K`
//! (ggml/src/ggml-quants.c) and `ggml_vec_dot_q5_K_q8_K_generic`
//! (ggml/src/ggml-cpu/quants.c).

use crate::blocks::{BlockQ5K, BlockQ8K, QK_K, scale_min_k4};

/// The 5-bit quant of value `l` (0..32) of group `group` (0..8).
#[inline]
fn quant(block: &BlockQ5K, group: usize, l: usize) -> u8 {
    let pair = group / 2;
    let low = if group.is_multiple_of(2) {
        block.qs[32 * pair + l] & 0xF
    } else {
        block.qs[32 * pair + l] >> 4
    };
    // Group g takes its fifth bits from bit g of the 32 `qh` bytes.
    let high = (block.qh[l] >> group) & 1;
    low | (high << 4)
}

/// Writes the 256 values of each block to `out`.
pub fn dequantize(blocks: &[BlockQ5K], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK_K,
        "q5_K dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = block.d.to_f32();
        let min = block.dmin.to_f32();
        for (group, y) in y.chunks_exact_mut(32).enumerate() {
            let (sc, m) = scale_min_k4(group, &block.scales);
            let (dl, ml) = (d * sc as f32, min * m as f32);
            for (l, y) in y.iter_mut().enumerate() {
                *y = dl * quant(block, group, l) as f32 - ml;
            }
        }
    }
}

/// Dot product with a Q8_K activation row, in ggml's generic order (see
/// [`super::q4_k::vec_dot`]).
pub fn vec_dot(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "q5_K vec_dot: block count mismatch");
    let mut sums = [0.0f32; 8];
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut aux32 = [0i32; 8];
        let mut sumi = 0i32;
        for group in 0..QK_K / 32 {
            let (scale, min) = scale_min_k4(group, &x.scales);
            let q8 = &y.qs[32 * group..32 * (group + 1)];
            for (l, &b) in q8.iter().enumerate() {
                aux32[l % 8] += scale as i32 * (quant(x, group, l) as i32 * b as i32);
            }
            sumi += min as i32 * (y.bsum(2 * group) as i32 + y.bsum(2 * group + 1) as i32);
        }
        let d = x.d.to_f32() * y.d();
        for (s, &v) in sums.iter_mut().zip(&aux32) {
            *s += d * v as f32;
        }
        let dmin = x.dmin.to_f32() * y.d();
        sumf -= dmin * sumi as f32;
    }
    for s in sums {
        sumf += s;
    }
    sumf
}
