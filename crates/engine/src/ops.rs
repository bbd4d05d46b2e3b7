//! The engine's door to tern-kernels: the transformer's numeric steps on the engine's
//! types (weight handles, row-major activation matrices).
//!
//! Matrix products and embedding lookups go through the kernels' single entry points
//! ([`tern_kernels::matmul`], [`tern_kernels::get_rows`]), where the SIMD kernels and the
//! thread pool plug in. The kernels round as ggml-cpu does (RMSNorm sums squares in
//! double, RoPE builds its angles by repeated multiplication, GELU goes through an F16
//! lookup table), which is what keeps the logits next to llama.cpp's.

use tern_gguf::GgufFile;
use tern_kernels::{QuantizedActivations, RopeOrdering, RopeParams, WeightMatrix};

use crate::config::{Activation, RopeLayout};
use crate::weights::Matrix;

/// Activations quantized for the next matmuls, reused across calls.
#[derive(Debug, Default)]
pub struct Activations {
    quantized: QuantizedActivations,
}

impl Activations {
    /// A buffer; it grows to the largest batch seen and then stays.
    pub fn with_capacity(_values: usize) -> Self {
        Activations {
            quantized: QuantizedActivations::new(),
        }
    }

    /// Quantizes `rows` rows of `cols` values for weights of type `weight`.
    pub fn quantize(&mut self, weight: tern_gguf::GgmlType, x: &[f32], rows: usize, cols: usize) {
        self.quantized.quantize(weight, x, rows, cols);
    }
}

/// `out[t * w.rows + r] = w[r] · x[t]` with `x` (rows of `w.cols` values) quantized as
/// ggml quantizes it for `w`'s type. `acts` holds `x` already quantized when it fits
/// `w` (the Q, K and V projections share one quantization); otherwise `x` is quantized
/// again.
pub fn matmul(w: &Matrix, file: &GgufFile, acts: &mut Activations, x: &[f32], out: &mut [f32]) {
    let rows = x.len() / w.cols;
    let q = &mut acts.quantized;
    if !q.fits(w.ty) || q.n_rows() != rows || q.cols() != w.cols {
        q.quantize(w.ty, x, rows, w.cols);
    }
    let view = WeightMatrix {
        ty: w.ty,
        rows: w.rows,
        cols: w.cols,
        data: w.bytes(file),
    };
    tern_kernels::matmul(&view, q, out);
}

/// Row `token` of the embedding matrix, dequantized into `out` (ggml `get_rows`).
/// The token id was checked against the vocabulary by the caller.
pub fn embed(w: &Matrix, file: &GgufFile, token: u32, out: &mut [f32]) {
    let view = WeightMatrix {
        ty: w.ty,
        rows: w.rows,
        cols: w.cols,
        data: w.bytes(file),
    };
    if let Err(e) = tern_kernels::get_rows(&view, &[token], out) {
        // Unreachable after `check_buffers`; keep the pass going with zeros.
        tracing::error!("embedding lookup failed: {e}");
        out.fill(0.0);
    }
}

/// RMSNorm of each `width`-value row of `x` into `out`, times `weight`.
pub fn rms_norm_rows(x: &[f32], out: &mut [f32], weight: &[f32], width: usize, eps: f32) {
    for (x, out) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        tern_kernels::rms_norm(x, weight, eps, out);
    }
}

/// RMSNorm of each `width`-value row of `x` in place, times `weight` (QK-norm runs it on
/// every head; post-norms on whole rows).
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], width: usize, eps: f32) {
    for x in x.chunks_exact_mut(width) {
        tern_kernels::rms_norm_in_place(x, weight, eps);
    }
}

/// Rotary position embedding of a layer (ggml `rope_ext` without YaRN or frequency
/// factors, which llama and gemma3 files do not use).
#[derive(Clone, Copy, Debug)]
pub struct Rope {
    pub layout: RopeLayout,
    /// Rotated dimensions at the start of each head.
    pub dims: usize,
    pub freq_base: f32,
    pub freq_scale: f32,
}

impl Rope {
    fn ordering(&self) -> RopeOrdering {
        match self.layout {
            RopeLayout::Normal => RopeOrdering::Normal,
            RopeLayout::Neox => RopeOrdering::Neox,
        }
    }

    /// Fills `cache` (length `dims`) with the angles of position `pos`.
    pub fn angles(&self, pos: u32, cache: &mut [f32]) {
        let mut params = RopeParams::new(self.ordering(), self.dims, self.freq_base);
        params.freq_scale = self.freq_scale;
        tern_kernels::rope_cache_init(&params, pos as i32, cache);
    }

    /// Rotates every `head_dim`-value head of `x` by the angles in `cache`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, cache: &[f32]) {
        tern_kernels::rope_apply(x, head_dim, self.ordering(), cache);
    }
}

/// The gated activation: `out = act(gate) * up`, SiLU (SwiGLU) or GELU-tanh (GeGLU, via
/// ggml's F16 lookup table).
pub fn gated_activation(activation: Activation, gate: &[f32], up: &[f32], out: &mut [f32]) {
    match activation {
        Activation::Silu => tern_kernels::swiglu(gate, up, out),
        Activation::GeluTanh => tern_kernels::geglu_tanh(gate, up, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_works_row_by_row() {
        let x = [3.0f32, 4.0, 1.0, 1.0];
        let mut out = [0.0; 4];
        rms_norm_rows(&x, &mut out, &[1.0, 2.0], 2, 0.0);
        let rms = 12.5f32.sqrt();
        assert!((out[0] - 3.0 / rms).abs() < 1e-6 && (out[1] - 8.0 / rms).abs() < 1e-6);
        assert!((out[2] - 1.0).abs() < 1e-6 && (out[3] - 2.0).abs() < 1e-6);
        let mut y = x;
        rms_norm_in_place(&mut y, &[1.0, 2.0], 2, 0.0);
        assert_eq!(y, out);
    }

    #[test]
    fn rope_layouts_pair_the_right_dimensions() {
        let rope = Rope {
            layout: RopeLayout::Normal,
            dims: 4,
            freq_base: 10_000.0,
            freq_scale: 1.0,
        };
        let mut cache = [0.0; 4];
        rope.angles(1, &mut cache);
        // Normal: dims (0, 1) turn by 1 radian, (2, 3) by 0.01.
        let mut x = [1.0f32, 0.0, 1.0, 0.0];
        rope.apply(&mut x, 4, &cache);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        assert!((x[2] - 0.01f32.cos()).abs() < 1e-6 && (x[3] - 0.01f32.sin()).abs() < 1e-6);
        // NeoX: dims (0, 2) and (1, 3); dims past `dims` stay.
        let neox = Rope {
            layout: RopeLayout::Neox,
            ..rope
        };
        let mut x = [1.0f32, 1.0, 0.0, 0.0, 7.0, 8.0];
        neox.apply(&mut x, 6, &cache);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6);
        assert!((x[1] - 0.01f32.cos()).abs() < 1e-6 && (x[3] - 0.01f32.sin()).abs() < 1e-6);
        assert_eq!(&x[4..], &[7.0, 8.0]);
    }
}
