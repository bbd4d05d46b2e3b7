//! Q4_K: 256 values per super-block in 8 groups of 32, `d * sc * q - dmin * m` with a
//! 4-bit q and 6-bit sc/m. The most common weight type of "Q4_K_M" files. Dequantize and
//! dot product only (ggml's K-quant quantizers search scales iteratively; tern does not
//! write K-quants yet). Follows ggml's `dequantize_row_q4_K` (ggml/src/ggml-quants.c)
//! and `ggml_vec_dot_q4_K_q8_K_generic` (ggml/src/ggml-cpu/quants.c).

use crate::blocks::{BlockQ4K, BlockQ8K, QK_K, scale_min_k4};

/// Writes the 256 values of each block to `out`.
pub fn dequantize(blocks: &[BlockQ4K], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK_K,
        "q4_K dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = block.d.to_f32();
        let min = block.dmin.to_f32();
        // Each 32 bytes of quants hold two groups: low nibbles, then high nibbles.
        for (pair, (q, y)) in block
            .qs
            .chunks_exact(32)
            .zip(y.chunks_exact_mut(64))
            .enumerate()
        {
            let (sc1, m1) = scale_min_k4(2 * pair, &block.scales);
            let (sc2, m2) = scale_min_k4(2 * pair + 1, &block.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0xF) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// The 256 quants (0..16) of a block in value order: each 32 bytes of `qs` hold two
/// groups, low nibbles first.
#[inline]
fn unpack(block: &BlockQ4K) -> [u8; QK_K] {
    let mut out = [0u8; QK_K];
    for (q, y) in block.qs.chunks_exact(32).zip(out.chunks_exact_mut(64)) {
        let (low, high) = y.split_at_mut(32);
        for ((&b, lo), hi) in q.iter().zip(low).zip(high) {
            *lo = b & 0xF;
            *hi = b >> 4;
        }
    }
    out
}

/// Dot product with a Q8_K activation row. Integer products are gathered in 8 lanes
/// (lane = value index mod 8) times each group's scale; per block the lanes are scaled
/// by `d_w * d_a` into 8 f32 sums and `dmin_w * d_a * sum(bsums * m)` is subtracted from
/// a separate f32 total, to which the 8 sums are added at the end — ggml's generic
/// order. llama.cpp's AVX2 version instead sums per block in one fused-multiply-add
/// vector, so its last bits differ.
pub fn vec_dot(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "q4_K vec_dot: block count mismatch");
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
