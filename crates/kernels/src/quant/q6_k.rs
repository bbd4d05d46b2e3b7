//! Q6_K: 256 values per super-block in 16 groups of 16, `d * sc * (q - 32)` with a
//! 6-bit q (4 low bits in `ql`, 2 high in `qh`) and signed 8-bit scales. Used for output
//! and some FFN matrices of "Q4_K_M" files. Dequantize and dot product only. Follows
//! ggml's `dequantize_row_q6_K` (ggml/src/ggml-quants.c) and
//! `ggml_vec_dot_q6_K_q8_K_generic` (ggml/src/ggml-cpu/quants.c).

use crate::blocks::{BlockQ6K, BlockQ8K, QK_K};

/// The 256 signed quants (-32..32) of a block in value order. Each half of 128 values
/// reads 64 `ql` bytes and 32 `qh` bytes: value `l + 32 * k` (k = 0..4) takes the low or
/// high nibble of `ql[l]` / `ql[l + 32]` and bits `2k..2k+2` of `qh[l]`.
#[inline]
fn unpack(block: &BlockQ6K) -> [i8; QK_K] {
    let mut out = [0i8; QK_K];
    for half in 0..QK_K / 128 {
        let ql = &block.ql[64 * half..64 * (half + 1)];
        let qh = &block.qh[32 * half..32 * (half + 1)];
        let y = &mut out[128 * half..128 * (half + 1)];
        for l in 0..32 {
            y[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            y[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    out
}

/// Writes the 256 values of each block to `out`: `(d * sc) * q` in f32, as ggml.
pub fn dequantize(blocks: &[BlockQ6K], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK_K,
        "q6_K dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = block.d.to_f32();
        let q = unpack(block);
        for (group, (y, q)) in y.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
            let dl = d * block.scales[group] as f32;
            for (y, &q) in y.iter_mut().zip(q) {
                *y = dl * q as f32;
            }
        }
    }
}

/// Dot product with a Q8_K activation row: 8 integer lanes (lane = value index mod 8)
/// times each group's scale, scaled per block by `d_w * d_a` into 8 f32 sums that are
/// added at the end (ggml's generic order).
pub fn vec_dot(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "q6_K vec_dot: block count mismatch");
    let mut sums = [0.0f32; 8];
    for (x, y) in w.iter().zip(a) {
        let q = unpack(x);
        let mut aux32 = [0i32; 8];
        for (group, (q, q8)) in q.chunks_exact(16).zip(y.qs.chunks_exact(16)).enumerate() {
            let scale = x.scales[group] as i32;
            for (l, (&a, &b)) in q.iter().zip(q8).enumerate() {
                aux32[l % 8] += scale * (a as i32 * b as i32);
            }
        }
        let d = x.d.to_f32() * y.d();
        for (s, &v) in sums.iter_mut().zip(&aux32) {
            *s += d * v as f32;
        }
    }
    let mut sumf = 0.0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}
