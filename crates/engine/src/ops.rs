//! The engine's door to tern-kernels: the transformer's numeric steps on the engine's
//! types (weight handles, row-major activation matrices).
//!
//! Matrix products and embedding lookups go through the kernels' single entry points
//! ([`tern_kernels::matmul`], [`tern_kernels::get_rows`]), where the SIMD kernels and the
//! thread pool plug in. The kernels round as ggml-cpu does (RMSNorm sums squares in
//! double, RoPE builds its angles by repeated multiplication, GELU goes through an F16
//! lookup table), which is what keeps the logits next to llama.cpp's.

use std::sync::Arc;

use tern_gguf::{GgmlType, GgufFile};
use tern_kernels::pool::ThreadPool;
use tern_kernels::{QuantizedActivations, RopeOrdering, RopeParams, WeightMatrix};

use crate::config::{Activation, RopeLayout};
use crate::weights::Matrix;

/// Activations quantized for the next matmuls, reused across calls, and the thread
/// pool the matmuls are split over.
#[derive(Debug, Default)]
pub struct Activations {
    quantized: QuantizedActivations,
    /// `None`: every matmul on the calling thread.
    pool: Option<Arc<ThreadPool>>,
}

impl Activations {
    /// A buffer; it grows to the largest batch seen and then stays.
    pub fn new() -> Self {
        Activations::default()
    }

    /// Splits the following matmuls over `pool`'s threads (`None`: the calling thread
    /// alone). The results are the same bits either way.
    pub fn set_pool(&mut self, pool: Option<Arc<ThreadPool>>) {
        self.pool = pool.filter(|p| p.n_threads() > 1);
    }

    /// The pool matmuls are split over, if any.
    pub fn pool(&self) -> Option<&Arc<ThreadPool>> {
        self.pool.as_ref()
    }

    /// Quantizes `rows` rows of `cols` values for weights of type `weight`, as llama.cpp's
    /// x86 CPU backend does before the matmul (tern-kernels' activation quantizers round
    /// as it does on every path: `127/amax`, half to even).
    pub fn quantize(&mut self, weight: GgmlType, x: &[f32], rows: usize, cols: usize) {
        self.quantized.quantize(weight, x, rows, cols);
    }
}

/// `out[t * w.rows + r] = w[r] · x[t]` with `x` (rows of `w.cols` values) quantized as
/// llama.cpp quantizes it for `w`'s type. `acts` holds `x` already quantized when it
/// fits `w` (the Q, K and V projections share one quantization); otherwise `x` is
/// quantized again.
pub fn matmul(w: &Matrix, file: &GgufFile, acts: &mut Activations, x: &[f32], out: &mut [f32]) {
    let rows = x.len() / w.cols;
    let q = &acts.quantized;
    if !q.fits(w.ty) || q.n_rows() != rows || q.cols() != w.cols {
        acts.quantize(w.ty, x, rows, w.cols);
    }
    let view = WeightMatrix {
        ty: w.ty,
        rows: w.rows,
        cols: w.cols,
        data: w.bytes(file),
    };
    match &acts.pool {
        Some(pool) => tern_kernels::matmul_with_pool(pool, &view, &acts.quantized, out),
        None => tern_kernels::matmul(&view, &acts.quantized, out),
    }
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

/// `x[t] += bias` for every row `t` of `x` (rows of `bias.len()` values; ggml_add with
/// a broadcast bias).
pub fn add_bias_rows(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
}

/// Rotary position embedding of a layer (ggml `rope_ext` without YaRN): frequency
/// divisors for Llama 3 scaling and LongRoPE, and LongRoPE's magnitude scale.
#[derive(Clone, Copy, Debug)]
pub struct Rope<'a> {
    pub layout: RopeLayout,
    /// Rotated dimensions at the start of each head.
    pub dims: usize,
    pub freq_base: f32,
    pub freq_scale: f32,
    /// One divisor per rotated pair (`rope_freqs`, `rope_factors_short/long`).
    pub freq_factors: Option<&'a [f32]>,
    /// Multiplies cos and sin (`rope.scaling.attn_factor`).
    pub attn_factor: f32,
}

impl Rope<'_> {
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
        params.freq_factors = self.freq_factors;
        params.attn_factor = self.attn_factor;
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
    fn q8_activations_round_as_llama_cpp_x86() {
        use half::f16;
        // Values whose scaled value is an exact tie: x86 ggml rounds them to even, where
        // ggml's reference quantizer (half away from zero) would not.
        let mut x = [0.0f32; 32];
        x[0] = 127.0; // amax: 127/amax = 1
        x[1] = 2.5; // tie: to even (2)
        x[2] = -3.5; // tie: to even (-4)
        x[3] = 1.25;
        let mut acts = Activations::new();
        // Q4_1 weights take Q8_1 activations: d, s = d * Σq, then the quants.
        acts.quantize(GgmlType::Q4_1, &x, 1, 32);
        let out = acts.quantized.row(0);
        assert_eq!(out.len(), 36);
        assert_eq!(f16::from_le_bytes([out[0], out[1]]).to_f32(), 1.0);
        let qs: Vec<i8> = out[4..8].iter().map(|&b| b as i8).collect();
        assert_eq!(qs, vec![127, 2, -4, 1]);
        assert_eq!(f16::from_le_bytes([out[2], out[3]]).to_f32(), 126.0);
        // Q8_0 weights take Q8_0 activations: d, then the quants.
        acts.quantize(GgmlType::Q8_0, &x, 1, 32);
        let out = acts.quantized.row(0);
        assert_eq!(out.len(), 34);
        assert_eq!(out[3] as i8, 2);
    }

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
            freq_factors: None,
            attn_factor: 1.0,
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
