//! Q5_K: as Q4_K with a fifth bit per value (`qh`): `d * sc * q - dmin * m`, q in 0..32.
//! Dequantize and dot product only. Follows ggml's `dequantize_row_q5_K`
//! (ggml/src/ggml-quants.c) and `ggml_vec_dot_q5_K_q8_K_generic`
//! (ggml/src/ggml-cpu/quants.c).

use crate::blocks::{BlockQ5K, BlockQ8K, QK_K, scale_min_k4};

/// The 256 quants (0..32) of a block in value order: low nibbles as in Q4_K, and group
/// `g` takes its fifth bits from bit `g` of the 32 `qh` bytes.
#[inline]
fn unpack(block: &BlockQ5K) -> [u8; QK_K] {
    let mut out = [0u8; QK_K];
    for (pair, (q, y)) in block
        .qs
        .chunks_exact(32)
        .zip(out.chunks_exact_mut(64))
        .enumerate()
    {
        let (low, high) = y.split_at_mut(32);
        for (l, ((&b, lo), hi)) in q.iter().zip(low).zip(high).enumerate() {
            let h = block.qh[l] >> (2 * pair);
            *lo = (b & 0xF) | ((h & 1) << 4);
            *hi = (b >> 4) | ((h & 2) << 3);
        }
    }
    out
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
        let q = unpack(block);
        for (group, (y, q)) in y.chunks_exact_mut(32).zip(q.chunks_exact(32)).enumerate() {
            let (sc, m) = scale_min_k4(group, &block.scales);
            let (dl, ml) = (d * sc as f32, min * m as f32);
            for (y, &q) in y.iter_mut().zip(q) {
                *y = dl * q as f32 - ml;
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
        let q = unpack(x);
        let mut aux32 = [0i32; 8];
        let mut sumi = 0i32;
        for (group, (q, q8)) in q.chunks_exact(32).zip(y.qs.chunks_exact(32)).enumerate() {
            let (scale, min) = scale_min_k4(group, &x.scales);
            for (q, q8) in q.chunks_exact(8).zip(q8.chunks_exact(8)) {
                for l in 0..8 {
                    aux32[l] += scale as i32 * (q[l] as i32 * q8[l] as i32);
                }
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
