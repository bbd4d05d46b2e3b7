//! Q4_1: 32 values per block, `d * q + m` with a 4-bit q. Scalar reference following
//! ggml's `quantize_row_q4_1_ref` / `dequantize_row_q4_1` (ggml/src/ggml-quants.c) and
//! `ggml_vec_dot_q4_1_q8_1_generic` (ggml/src/ggml-cpu/quants.c). The activation side
//! is Q8_1, whose stored `s = d * sum(q)` applies the minimum in one multiply.

use super::order::{Lanes8, lane_sums};
use crate::blocks::{BlockQ4_1, BlockQ8_1, F16Le, QK};

/// Quantizes `x` as ggml's reference quantizer does: `d = (max - min) / 15`, `m = min`.
pub fn quantize(x: &[f32], out: &mut [BlockQ4_1]) {
    assert_eq!(x.len(), out.len() * QK, "q4_1 quantize: length mismatch");
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
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = F16Le::from_f32(d);
        block.m = F16Le::from_f32(min);
        for j in 0..QK / 2 {
            let q0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
            let q1 = (((x[j + QK / 2] - min) * id + 0.5) as i8).min(15) as u8;
            block.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Writes the 32 values of each block to `out`.
pub fn dequantize(blocks: &[BlockQ4_1], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK,
        "q4_1 dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = block.d.to_f32();
        let m = block.m.to_f32();
        for j in 0..QK / 2 {
            let x0 = (block.qs[j] & 0x0F) as f32;
            let x1 = (block.qs[j] >> 4) as f32;
            y[j] = x0 * d + m;
            y[j + QK / 2] = x1 * d + m;
        }
    }
}

/// Dot product with the activation row in the summation order of llama.cpp's x86
/// backend ([`super::order`]): 8 lane sums per block fused into 8 accumulators by
/// `d_w · d_a`, `m_w · s_a` in their own fused sum.
pub fn vec_dot(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), a.len(), "q4_1 vec_dot: block count mismatch");
    let mut acc = Lanes8::default();
    for (x, y) in w.iter().zip(a) {
        let mut q = [0i8; QK];
        for j in 0..QK / 2 {
            q[j] = (x.qs[j] & 0x0F) as i8;
            q[j + QK / 2] = (x.qs[j] >> 4) as i8;
        }
        acc.add_min(x.m.to_f32(), y.s.to_f32());
        acc.add_block(x.d.to_f32() * y.d.to_f32(), &lane_sums(&q, &y.qs));
    }
    acc.finish(true)
}
