//! Q5_0: 32 values per block, `d * (q - 16)` with a 5-bit q. Scalar reference following
//! ggml's `quantize_row_q5_0_ref` / `dequantize_row_q5_0` (ggml/src/ggml-quants.c) and
//! `ggml_vec_dot_q5_0_q8_0_generic` (ggml/src/ggml-cpu/quants.c). Activations: Q8_0.

use super::order::{Lanes8, lane_sums};
use crate::blocks::{BlockQ5_0, BlockQ8_0, F16Le, QK};

/// Quantizes `x` as ggml's reference quantizer does: the value of largest magnitude,
/// divided by -16, is the scale.
pub fn quantize(x: &[f32], out: &mut [BlockQ5_0]) {
    assert_eq!(x.len(), out.len() * QK, "q5_0 quantize: length mismatch");
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = F16Le::from_f32(d);
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            let q0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
            let q1 = ((x[j + QK / 2] * id + 16.5) as i8).min(31) as u8;
            block.qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
            qh |= (((q0 & 0x10) >> 4) as u32) << j;
            qh |= (((q1 & 0x10) >> 4) as u32) << (j + QK / 2);
        }
        block.qh = qh.to_le_bytes();
    }
}

/// Writes the 32 values of each block to `out`.
pub fn dequantize(blocks: &[BlockQ5_0], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK,
        "q5_0 dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = block.d.to_f32();
        let qh = block.high_bits();
        for j in 0..QK / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((block.qs[j] & 0x0F) as u32 | xh0) as i32 - 16;
            let x1 = ((block.qs[j] >> 4) as u32 | xh1) as i32 - 16;
            y[j] = x0 as f32 * d;
            y[j + QK / 2] = x1 as f32 * d;
        }
    }
}

/// Dot product with the activation row in the summation order of llama.cpp's x86
/// backend ([`super::order`]): 8 lane sums per block fused into 8 accumulators by
/// `d_w · d_a`.
pub fn vec_dot(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "q5_0 vec_dot: block count mismatch");
    let mut acc = Lanes8::default();
    for (x, y) in w.iter().zip(a) {
        let qh = x.high_bits();
        let mut q = [0i8; QK];
        for j in 0..QK / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            q[j] = ((x.qs[j] & 0x0F) as u32 | xh0) as i8 - 16;
            q[j + QK / 2] = ((x.qs[j] >> 4) as u32 | xh1) as i8 - 16;
        }
        acc.add_block(x.d.to_f32() * y.d.to_f32(), &lane_sums(&q, &y.qs));
    }
    acc.finish(false)
}
