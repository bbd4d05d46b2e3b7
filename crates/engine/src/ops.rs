//! The engine's door to tern-kernels: the transformer's numeric steps on the engine's
//! types (weight handles, row-major activation matrices).
//!
//! Matrix products and embedding lookups go through the kernels' single entry points
//! ([`tern_kernels::matmul`], [`tern_kernels::get_rows`]), where the SIMD kernels and the
//! thread pool plug in. The kernels round as ggml-cpu does (RMSNorm sums squares in
//! double, RoPE builds its angles by repeated multiplication, GELU goes through an F16
//! lookup table), which is what keeps the logits next to llama.cpp's.

use half::f16;
use tern_gguf::{GgmlType, GgufFile};
use tern_kernels::{QuantizedActivations, RopeOrdering, RopeParams, WeightMatrix};

use crate::config::{Activation, RopeLayout};
use crate::weights::Matrix;

/// Activations quantized for the next matmuls, reused across calls.
#[derive(Debug, Default)]
pub struct Activations {
    quantized: QuantizedActivations,
    /// Q8_0 / Q8_1 rows made here (see [`quantize_q8_like_llama_cpp_x86`]).
    bytes: Vec<u8>,
}

impl Activations {
    /// A buffer; it grows to the largest batch seen and then stays.
    pub fn new() -> Self {
        Activations::default()
    }

    /// Quantizes `rows` rows of `cols` values for weights of type `weight`, as llama.cpp's
    /// CPU backend does before the matmul.
    pub fn quantize(&mut self, weight: GgmlType, x: &[f32], rows: usize, cols: usize) {
        match tern_kernels::vec_dot_type(weight) {
            Some(ty @ (GgmlType::Q8_0 | GgmlType::Q8_1)) => {
                quantize_q8_like_llama_cpp_x86(x, ty == GgmlType::Q8_1, &mut self.bytes);
                if let Err(e) = self.quantized.set_quantized(ty, &self.bytes, rows, cols) {
                    // Unreachable: the rows were sized for `cols` just above.
                    tracing::error!("activation rows rejected: {e}");
                    self.quantized.quantize(weight, x, rows, cols);
                }
            }
            _ => self.quantized.quantize(weight, x, rows, cols),
        }
    }
}

/// Q8_0 / Q8_1 activation rows as llama.cpp's x86 backend writes them
/// (ggml-cpu/arch/x86/quants.c, `quantize_row_q8_0` / `quantize_row_q8_1`): per block of
/// 32, `d = amax / 127`, the values times `127 / amax` (not `1 / d`), rounded half to
/// even; Q8_1 adds `s = d * Σq`. ggml's reference quantizer (and tern-kernels', which
/// follows it) multiplies by `1 / d` and rounds half away from zero; on real activations
/// that moves a matmul's outputs by ~3e-4 relative against the reference build the
/// goldens come from, versus ~1e-7 with this rounding (measured on SmolLM2's layer 0).
fn quantize_q8_like_llama_cpp_x86(x: &[f32], with_sum: bool, out: &mut Vec<u8>) {
    const QK: usize = 32;
    let block_bytes = if with_sum { 36 } else { 34 };
    out.clear();
    for block in x.chunks_exact(QK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let start = out.len();
        out.resize(start + block_bytes, 0);
        let (header, qs) = out[start..].split_at_mut(block_bytes - QK);
        let mut sum = 0i32;
        for (q, &v) in qs.iter_mut().zip(block) {
            let r = (v * id).round_ties_even() as i8;
            sum += i32::from(r);
            *q = r as u8;
        }
        header[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        if with_sum {
            header[2..4].copy_from_slice(&f16::from_f32(d * sum as f32).to_le_bytes());
        }
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
    tern_kernels::matmul(&view, &acts.quantized, out);
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
        // 127/amax * 0.5 * amax/127... pick values whose scaled value is an exact tie.
        let mut x = [0.0f32; 32];
        x[0] = 127.0; // amax: id = 1
        x[1] = 2.5; // tie: to even (2), where round-half-away gives 3
        x[2] = -3.5; // tie: to even (-4)
        x[3] = 1.25;
        let mut out = Vec::new();
        quantize_q8_like_llama_cpp_x86(&x, true, &mut out);
        assert_eq!(out.len(), 36);
        assert_eq!(
            f16::from_le_bytes([out[0], out[1]]).to_f32(),
            f16::from_f32(1.0).to_f32()
        );
        let qs: Vec<i8> = out[4..8].iter().map(|&b| b as i8).collect();
        assert_eq!(qs, vec![127, 2, -4, 1]);
        // s = d * Σq = 127 + 2 - 4 + 1
        assert_eq!(f16::from_le_bytes([out[2], out[3]]).to_f32(), 126.0);
        quantize_q8_like_llama_cpp_x86(&x, false, &mut out);
        assert_eq!(out.len(), 34);
        assert_eq!(out[2] as i8, 127);
        // All zeros: d = 0, quants 0.
        quantize_q8_like_llama_cpp_x86(&[0.0; 32], false, &mut out);
        assert!(out.iter().all(|&b| b == 0));
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
