//! Q5_1: 32 values per block, `d * q + m` with a 5-bit q. Scalar reference following
//! ggml's `quantize_row_q5_1_ref` / `dequantize_row_q5_1` (ggml/src/ggml-quants.c) and
//! `ggml_vec_dot_q5_1_q8_1_generic` (ggml/src/ggml-cpu/quants.c). Activations: Q8_1.

use super::order::{Lanes8, lane_sums};
use crate::blocks::{BlockQ5_1, BlockQ8_1, F16Le, QK};

/// Quantizes `x` as ggml's reference quantizer does: `d = (max - min) / 31`, `m = min`.
pub fn quantize(x: &[f32], out: &mut [BlockQ5_1]) {
    assert_eq!(x.len(), out.len() * QK, "q5_1 quantize: length mismatch");
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = F16Le::from_f32(d);
        block.m = F16Le::from_f32(min);
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            // No cap at 31 here: ggml's reference has none either (the value cannot
            // exceed 31.5 before truncation).
            let q0 = ((x[j] - min) * id + 0.5) as u8;
            let q1 = ((x[j + QK / 2] - min) * id + 0.5) as u8;
            block.qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
            qh |= (((q0 & 0x10) >> 4) as u32) << j;
            qh |= (((q1 & 0x10) >> 4) as u32) << (j + QK / 2);
        }
        block.qh = qh.to_le_bytes();
    }
}

/// Writes the 32 values of each block to `out`.
pub fn dequantize(blocks: &[BlockQ5_1], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK,
        "q5_1 dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = block.d.to_f32();
        let m = block.m.to_f32();
        let qh = block.high_bits();
        for j in 0..QK / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            let x0 = (block.qs[j] & 0x0F) as u32 | xh0;
            let x1 = (block.qs[j] >> 4) as u32 | xh1;
            y[j] = x0 as f32 * d + m;
            y[j + QK / 2] = x1 as f32 * d + m;
        }
    }
}

/// Dot product with the activation row in the summation order of llama.cpp's x86
/// backend ([`super::order`]): 8 lane sums per block fused into 8 accumulators by
/// `d_w · d_a`, `m_w · s_a` in their own fused sum.
pub fn vec_dot(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), a.len(), "q5_1 vec_dot: block count mismatch");
    let mut acc = Lanes8::default();
    for (x, y) in w.iter().zip(a) {
        let qh = x.high_bits();
        let mut q = [0i8; QK];
        for j in 0..QK / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            q[j] = ((x.qs[j] & 0x0F) as u32 | xh0) as i8;
            q[j + QK / 2] = ((x.qs[j] >> 4) as u32 | xh1) as i8;
        }
        acc.add_min(x.m.to_f32(), y.s.to_f32());
        acc.add_block(x.d.to_f32() * y.d.to_f32(), &lane_sums(&q, &y.qs));
    }
    acc.finish(true)
}
