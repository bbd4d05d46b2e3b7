//! Q4_0: 32 values per block, `d * (q - 8)` with a 4-bit q. Scalar reference following
//! ggml's `quantize_row_q4_0_ref` / `dequantize_row_q4_0` (ggml/src/ggml-quants.c) and
//! `ggml_vec_dot_q4_0_q8_0_generic` (ggml/src/ggml-cpu/quants.c). The dot product's
//! activation side is Q8_0.

use super::order::{Lanes8, lane_sums};
use crate::blocks::{BlockQ4_0, BlockQ8_0, F16Le, QK};

/// Quantizes `x` (32 values per block) as ggml's reference quantizer does: the scale
/// is the signed value of largest magnitude divided by -8, so that value maps to q = 0.
pub fn quantize(x: &[f32], out: &mut [BlockQ4_0]) {
    assert_eq!(x.len(), out.len() * QK, "q4_0 quantize: length mismatch");
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = F16Le::from_f32(d);
        for j in 0..QK / 2 {
            // ggml truncates `x * id + 8.5` towards zero (a C cast to int8_t), then caps
            // at 15; the value is never negative.
            let q0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
            let q1 = ((x[j + QK / 2] * id + 8.5) as i8).min(15) as u8;
            block.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Writes the 32 values of each block to `out`.
pub fn dequantize(blocks: &[BlockQ4_0], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK,
        "q4_0 dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = block.d.to_f32();
        for j in 0..QK / 2 {
            let x0 = (block.qs[j] & 0x0F) as i32 - 8;
            let x1 = (block.qs[j] >> 4) as i32 - 8;
            y[j] = x0 as f32 * d;
            y[j + QK / 2] = x1 as f32 * d;
        }
    }
}

/// Dot product with the activation row in the summation order of llama.cpp's x86
/// backend ([`super::order`]): 8 lane sums per block fused into 8 accumulators by
/// `d_w · d_a`.
pub fn vec_dot(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "q4_0 vec_dot: block count mismatch");
    let mut acc = Lanes8::default();
    for (x, y) in w.iter().zip(a) {
        let mut q = [0i8; QK];
        for j in 0..QK / 2 {
            q[j] = (x.qs[j] & 0x0F) as i8 - 8;
            q[j + QK / 2] = (x.qs[j] >> 4) as i8 - 8;
        }
        acc.add_block(x.d.to_f32() * y.d.to_f32(), &lane_sums(&q, &y.qs));
    }
    acc.finish(false)
}
