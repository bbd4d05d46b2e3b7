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

/// The exact integer sums of one super-block: per 32-value group `g`, `sc_g · Σ q·a`
/// (`groups`), and `m_g · (bsum_{2g} + bsum_{2g+1})` (`mins`). Bounds: a group's
/// products sum to at most 32 · 15 · 127 < 2^16, times a 6-bit scale < 2^22; a pair of
/// 16-value sums is at most 4064, times a 6-bit minimum < 2^18.
#[inline]
fn group_sums(x: &BlockQ4K, y: &BlockQ8K) -> ([i32; 8], [i32; 8]) {
    let q = unpack(x);
    let mut groups = [0i32; 8];
    let mut mins = [0i32; 8];
    for (g, (q, a)) in q.chunks_exact(32).zip(y.qs.chunks_exact(32)).enumerate() {
        let (scale, min) = scale_min_k4(g, &x.scales);
        let p: i32 = q.iter().zip(a).map(|(&q, &a)| q as i32 * a as i32).sum();
        groups[g] = scale as i32 * p;
        mins[g] = min as i32 * (y.bsum(2 * g) as i32 + y.bsum(2 * g + 1) as i32);
    }
    (groups, mins)
}

/// Dot product with a Q8_K activation row in the order of llama.cpp's x86 repacked
/// matrix-vector kernel (`ggml_gemv_q4_K_8x8_q8_K`, ggml-cpu/arch/x86/repack.cpp), which
/// the goldens' build runs for every Q4_K matrix with a multiple of 8 rows and fewer
/// than 4 tokens (and for the last `n % 4` tokens of a batch): per super-block, the
/// exact integer `Σ_g sc_g · Σ q·a` is converted once and fused into one f32 sum by
/// `d_w · d_a`, the minimum term `Σ_g m_g · (bsum_{2g} + bsum_{2g+1})` into another by
/// `dmin_w · d_a`; the second is subtracted at the end.
pub fn vec_dot(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "q4_K vec_dot: block count mismatch");
    let (mut acc, mut acc_min) = (0.0f32, 0.0f32);
    for (x, y) in w.iter().zip(a) {
        let (groups, mins) = group_sums(x, y);
        let sum: i32 = groups.iter().sum();
        let min: i32 = mins.iter().sum();
        acc = (sum as f32).mul_add(x.d.to_f32() * y.d(), acc);
        acc_min = (min as f32).mul_add(x.dmin.to_f32() * y.d(), acc_min);
    }
    acc - acc_min
}

/// Dot product in the order of llama.cpp's x86 repacked batched kernel
/// (`ggml_gemm_q4_K_8x8_q8_K`), which the goldens' build runs for the tokens of a batch
/// in whole groups of 4: as [`vec_dot`], but the f32 sums take one fused multiply-add
/// per 64 values (two groups) instead of one per super-block.
pub fn vec_dot_batched(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "q4_K vec_dot: block count mismatch");
    let (mut acc, mut acc_min) = (0.0f32, 0.0f32);
    for (x, y) in w.iter().zip(a) {
        let (groups, mins) = group_sums(x, y);
        let (d, dmin) = (x.d.to_f32() * y.d(), x.dmin.to_f32() * y.d());
        for pair in 0..4 {
            let sum = groups[2 * pair] + groups[2 * pair + 1];
            let min = mins[2 * pair] + mins[2 * pair + 1];
            acc = (sum as f32).mul_add(d, acc);
            acc_min = (min as f32).mul_add(dmin, acc_min);
        }
    }
    acc - acc_min
}
