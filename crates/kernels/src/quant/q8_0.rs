//! Q8_0: 32 values per block, `d * q` with a signed byte q. Used for weights (token
//! embeddings, output matrices), for the KV cache, and as the activation format of the
//! Q4_0 / Q5_0 / Q8_0 dot products. Scalar reference following ggml's
//! `quantize_row_q8_0_ref` / `dequantize_row_q8_0` (ggml/src/ggml-quants.c) and
//! `ggml_vec_dot_q8_0_q8_0_generic` (ggml/src/ggml-cpu/quants.c).

use super::order::{Lanes8, lane_sums};
use crate::blocks::{BlockQ8_0, F16Le, QK};

/// Quantizes `x` as ggml's reference quantizer does: `d = amax / 127`, `q = round(x / d)`
/// with ties away from zero (C `roundf`).
///
/// llama.cpp's CPU backend quantizes *activations* with SIMD variants of this
/// (ggml-cpu/arch/x86/quants.c and arch/arm/quants.c `quantize_row_q8_0`) that round
/// ties to even, and on x86 multiply by `127 / amax` instead of `1 / d`; the quants
/// they produce differ from these in rare last-bit cases.
pub fn quantize(x: &[f32], out: &mut [BlockQ8_0]) {
    assert_eq!(x.len(), out.len() * QK, "q8_0 quantize: length mismatch");
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = F16Le::from_f32(d);
        for (q, &v) in block.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
    }
}

/// Writes the 32 values of each block to `out`.
pub fn dequantize(blocks: &[BlockQ8_0], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK,
        "q8_0 dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = block.d.to_f32();
        for (y, &q) in y.iter_mut().zip(&block.qs) {
            *y = q as f32 * d;
        }
    }
}

/// Dot product with the activation row in the summation order of llama.cpp's x86
/// backend ([`super::order`]): 8 lane sums per block fused into 8 accumulators by
/// `d_w · d_a`.
pub fn vec_dot(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "q8_0 vec_dot: block count mismatch");
    let mut acc = Lanes8::default();
    for (x, y) in w.iter().zip(a) {
        acc.add_block(x.d.to_f32() * y.d.to_f32(), &lane_sums(&x.qs, &y.qs));
    }
    acc.finish(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_round_away_from_zero() {
        // amax 127 gives d = 1 exactly, so x * id lands on the .5 ties themselves.
        let mut x = [0.0f32; QK];
        x[..6].copy_from_slice(&[127.0, 0.5, 1.5, 2.5, -0.5, -2.5]);
        let mut block = [BlockQ8_0 {
            d: F16Le::default(),
            qs: [0; QK],
        }];
        quantize(&x, &mut block);
        assert_eq!(block[0].d.to_f32(), 1.0);
        assert_eq!(&block[0].qs[..6], &[127, 1, 2, 3, -1, -3]);
        // An all-zero block has d = 0 and zero quants (no division by zero).
        quantize(&[0.0; QK], &mut block);
        assert_eq!((block[0].d.to_f32(), block[0].qs), (0.0, [0; QK]));
    }
}
