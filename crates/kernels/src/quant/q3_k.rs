//! Q3_K: 256 values per super-block in 16 groups of 16, `d * sc * q` with a 3-bit signed
//! q (two low bits in `qs`, the high bit in `hmask`, q - 4 when it is clear) and 6-bit
//! signed scales. Dequantize and dot product only. Follows ggml's
//! `dequantize_row_q3_K` (ggml/src/ggml-quants.c) and `ggml_vec_dot_q3_K_q8_K_generic`
//! (ggml/src/ggml-cpu/quants.c).

use crate::blocks::{BlockQ3K, BlockQ8K, QK_K, q3_k_scales};

/// The 256 signed quants of a block in value order, each in -4..4.
#[inline]
fn unpack(block: &BlockQ3K) -> [i8; QK_K] {
    let mut out = [0i8; QK_K];
    let mut index = 0;
    let mut m = 1u8;
    for half in 0..QK_K / 128 {
        let q = &block.qs[32 * half..32 * (half + 1)];
        for shift in [0u32, 2, 4, 6] {
            for (&byte, &hmask) in q.iter().zip(&block.hmask) {
                let low = ((byte >> shift) & 3) as i8;
                let high_clear = hmask & m == 0;
                out[index] = low - if high_clear { 4 } else { 0 };
                index += 1;
            }
            m <<= 1;
        }
    }
    out
}

/// Writes the 256 values of each block to `out`.
pub fn dequantize(blocks: &[BlockQ3K], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK_K,
        "q3_K dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d_all = block.d.to_f32();
        let scales = q3_k_scales(&block.scales);
        let q = unpack(block);
        for (group, (y, q)) in y.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
            let dl = d_all * scales[group] as f32;
            for (y, &q) in y.iter_mut().zip(q) {
                *y = dl * q as f32;
            }
        }
    }
}

/// Dot product with a Q8_K activation row. As in ggml's generic code, the integer
/// products are gathered in 8 lanes (lane = value index mod 8), each lane scaled by
/// `d_w * d_a` into its own f32 sum, and the 8 sums added at the end.
pub fn vec_dot(w: &[BlockQ3K], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "q3_K vec_dot: block count mismatch");
    let mut sums = [0.0f32; 8];
    for (x, y) in w.iter().zip(a) {
        let q = unpack(x);
        let scales = q3_k_scales(&x.scales);
        let mut aux32 = [0i32; 8];
        for (group, (q, q8)) in q.chunks_exact(16).zip(y.qs.chunks_exact(16)).enumerate() {
            let scale = scales[group] as i32;
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
