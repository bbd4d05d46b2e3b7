//! Q8_1: the activation format of the Q4_1 / Q5_1 dot products — Q8_0 plus
//! `s = d * sum(q)`. Only a quantizer (and a dequantizer for tests): ggml never stores
//! weights in it. Follows ggml's `quantize_row_q8_1_ref` (ggml/src/ggml-quants.c).

use crate::blocks::{BlockQ8_1, F16Le, QK};

/// Quantizes `x` as ggml's reference does: as Q8_0 (ties away from zero), and `s` the
/// integer sum of the quants times `d` (the f32 `d`, before its rounding to f16).
pub fn quantize(x: &[f32], out: &mut [BlockQ8_1]) {
    assert_eq!(x.len(), out.len() * QK, "q8_1 quantize: length mismatch");
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = F16Le::from_f32(d);
        let mut sum = 0i32;
        for (q, &v) in block.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        block.s = F16Le::from_f32(sum as f32 * d);
    }
}

/// Writes the 32 values of each block to `out` (`s` is not needed for that).
pub fn dequantize(blocks: &[BlockQ8_1], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK,
        "q8_1 dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = block.d.to_f32();
        for (y, &q) in y.iter_mut().zip(&block.qs) {
            *y = q as f32 * d;
        }
    }
}
