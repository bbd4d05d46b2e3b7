//! The weights table: which tensors a configuration needs, with their expected shapes,
//! checked once at load.
//!
//! Matrices stay in the memory-mapped file, quantized; a [`Matrix`] is only a handle
//! (type, shape, where the bytes are) that the forward pass turns into a kernel view.
//! Norm weights are small and F32, so they are copied out as `Vec<f32>`.
//! Tensor names follow llama.cpp's table (`src/llama-arch.cpp`, `LLM_TENSOR_NAMES`), and
//! the shapes each architecture's `load_arch_tensors` (`src/models/*.cpp`).

use tern_gguf::{GgmlType, GgufFile, TensorInfo};

use crate::config::ModelConfig;
use crate::error::{Error, ErrorKind, Result};

/// The tensors of a transformer, as llama.cpp names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorName {
    TokenEmbd,
    OutputNorm,
    Output,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    /// Q, K and V in one matrix (phi3).
    AttnQkv,
    AttnOutput,
    AttnQNorm,
    AttnKNorm,
    AttnPostNorm,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
    FfnPostNorm,
    /// Llama 3 RoPE frequency divisors, one per rotated pair (written by the converter
    /// from `rope_scaling` of type llama3).
    RopeFreqs,
    /// LongRoPE divisors for contexts beyond the original one (phi3).
    RopeFactorsLong,
    /// LongRoPE divisors up to the original context (phi3).
    RopeFactorsShort,
}

impl TensorName {
    fn stem(self) -> &'static str {
        match self {
            TensorName::TokenEmbd => "token_embd",
            TensorName::OutputNorm => "output_norm",
            TensorName::Output => "output",
            TensorName::AttnNorm => "attn_norm",
            TensorName::AttnQ => "attn_q",
            TensorName::AttnK => "attn_k",
            TensorName::AttnV => "attn_v",
            TensorName::AttnQkv => "attn_qkv",
            TensorName::AttnOutput => "attn_output",
            TensorName::AttnQNorm => "attn_q_norm",
            TensorName::AttnKNorm => "attn_k_norm",
            TensorName::AttnPostNorm => "post_attention_norm",
            TensorName::FfnNorm => "ffn_norm",
            TensorName::FfnGate => "ffn_gate",
            TensorName::FfnUp => "ffn_up",
            TensorName::FfnDown => "ffn_down",
            TensorName::FfnPostNorm => "post_ffw_norm",
            TensorName::RopeFreqs => "rope_freqs",
            TensorName::RopeFactorsLong => "rope_factors_long",
            TensorName::RopeFactorsShort => "rope_factors_short",
        }
    }

    /// The weight's full name: `token_embd.weight`, `blk.3.attn_q.weight`.
    pub fn weight(self, layer: Option<usize>) -> String {
        self.full(layer, "weight")
    }

    /// The bias's full name: `blk.3.attn_q.bias`.
    pub fn bias(self, layer: Option<usize>) -> String {
        self.full(layer, "bias")
    }

    fn full(self, layer: Option<usize>, suffix: &str) -> String {
        match layer {
            Some(il) => format!("blk.{il}.{}.{suffix}", self.stem()),
            None => format!("{}.{suffix}", self.stem()),
        }
    }
}

/// A weight matrix left in the file. Shape: (rows, cols), each row `cols` values of `ty`.
#[derive(Clone, Debug)]
pub struct Matrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    info: TensorInfo,
}

impl Matrix {
    /// The matrix bytes, borrowed from `file` (the file it was loaded from).
    pub fn bytes<'f>(&self, file: &'f GgufFile) -> &'f [u8] {
        file.tensor_data(&self.info)
    }

    /// The tensor name.
    pub fn name(&self) -> &str {
        &self.info.name
    }
}

/// The Q, K and V projections: three matrices, or one whose output rows are Q, then K,
/// then V (llama.cpp `create_tensor_qkv` accepts either for every architecture).
#[derive(Clone, Debug)]
pub enum QkvWeights {
    Separate {
        q: Matrix,
        k: Matrix,
        v: Matrix,
    },
    /// Shape: (q_dim + 2 * kv_dim, d).
    Fused(Matrix),
}

/// Biases of the Q, K and V projections (Qwen2); a fused `attn_qkv.bias` is split.
#[derive(Clone, Debug)]
pub struct QkvBias {
    /// Shape: (q_dim).
    pub q: Vec<f32>,
    /// Shape: (kv_dim).
    pub k: Vec<f32>,
    /// Shape: (kv_dim).
    pub v: Vec<f32>,
}

/// Weights of one transformer block.
#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub qkv: QkvWeights,
    pub qkv_bias: Option<QkvBias>,
    pub wo: Matrix,
    /// Shape: (key_length), applied to every Q head (QK-norm).
    pub q_norm: Option<Vec<f32>>,
    /// Shape: (key_length), applied to every K head.
    pub k_norm: Option<Vec<f32>>,
    pub attn_post_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    /// `None` when `up` holds the gate too ([`ModelConfig::fused_gate_up`]).
    pub gate: Option<Matrix>,
    /// Shape: (feed_forward_length, d), or (2 * feed_forward_length, d) with the gate's
    /// rows first when fused.
    pub up: Matrix,
    pub down: Matrix,
    pub ffn_post_norm: Option<Vec<f32>>,
}

/// Every weight of the model.
#[derive(Clone, Debug)]
pub struct Weights {
    /// Shape: (vocab_size, d).
    pub token_embd: Matrix,
    pub output_norm: Vec<f32>,
    /// Shape: (vocab_size, d); the embedding matrix itself when the file ties them.
    pub output: Matrix,
    /// Shape: (vocab_size); Qwen2 files may have one.
    pub output_bias: Option<Vec<f32>>,
    /// RoPE frequency divisors of every layer (`rope_freqs`: Llama 3 scaling).
    /// Shape: (rope_dimension_count / 2).
    pub rope_freqs: Option<Vec<f32>>,
    /// LongRoPE divisors `(short, long)` (phi3). Shape: (rope_dimension_count / 2) each.
    pub rope_factors: Option<(Vec<f32>, Vec<f32>)>,
    pub layers: Vec<LayerWeights>,
}

impl Weights {
    /// Finds and checks every tensor `config` needs in `file`.
    pub fn load(file: &GgufFile, config: &ModelConfig) -> Result<Self> {
        let d = config.embedding_length;
        let vocab = config.vocab_size;
        let t = Table { file };
        let token_embd = t.matrix(TensorName::TokenEmbd, None, vocab, d)?;
        let output = match file.tensor(&TensorName::Output.weight(None)) {
            Some(_) => t.matrix(TensorName::Output, None, vocab, d)?,
            // llama.cpp: "if output is NULL, init from the input tok embed".
            None => token_embd.clone(),
        };
        let output_norm = t.vector(TensorName::OutputNorm, None, d)?;
        let output_bias = t.optional_bias(TensorName::Output, None, vocab)?;
        // One set of RoPE divisors shared by every layer (llama.cpp loads them per layer
        // as duplicates of the same tensor). `rope_freqs` wins over LongRoPE's pair, as in
        // `llama_model::get_rope_factors`.
        let pairs = config.rope_dimension_count / 2;
        let rope_freqs = t.optional_vector(TensorName::RopeFreqs, pairs)?;
        let rope_factors = match (
            t.optional_vector(TensorName::RopeFactorsShort, pairs)?,
            t.optional_vector(TensorName::RopeFactorsLong, pairs)?,
        ) {
            (Some(short), Some(long)) => Some((short, long)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::new(ErrorKind::MissingTensor(
                    TensorName::RopeFactorsLong.weight(None),
                )));
            }
            (None, Some(_)) => {
                return Err(Error::new(ErrorKind::MissingTensor(
                    TensorName::RopeFactorsShort.weight(None),
                )));
            }
        };
        let (q_dim, kv_dim) = (config.q_dim(), config.kv_dim());
        let ff = config.feed_forward_length;
        let mut layers = Vec::with_capacity(config.block_count);
        for il in 0..config.block_count {
            let l = Some(il);
            let hd = config.key_length;
            let optional_norm = |name: TensorName, len: usize, needed: bool| -> Result<_> {
                if needed {
                    t.vector(name, l, len).map(Some)
                } else {
                    Ok(None)
                }
            };
            // llama.cpp `create_tensor_qkv`: a fused `attn_qkv` when present (with its
            // bias, or separate Q/K/V biases), else three matrices with optional biases.
            let (qkv, qkv_bias) = if file.tensor(&TensorName::AttnQkv.weight(l)).is_some() {
                let fused = t.matrix(TensorName::AttnQkv, l, q_dim + 2 * kv_dim, d)?;
                let bias = match t.optional_bias(TensorName::AttnQkv, l, q_dim + 2 * kv_dim)? {
                    Some(b) => Some(QkvBias {
                        q: b[..q_dim].to_vec(),
                        k: b[q_dim..q_dim + kv_dim].to_vec(),
                        v: b[q_dim + kv_dim..].to_vec(),
                    }),
                    None => t.separate_biases(l, q_dim, kv_dim)?,
                };
                (QkvWeights::Fused(fused), bias)
            } else {
                let qkv = QkvWeights::Separate {
                    q: t.matrix(TensorName::AttnQ, l, q_dim, d)?,
                    k: t.matrix(TensorName::AttnK, l, kv_dim, d)?,
                    v: t.matrix(TensorName::AttnV, l, kv_dim, d)?,
                };
                (qkv, t.separate_biases(l, q_dim, kv_dim)?)
            };
            let (gate, up) = if config.fused_gate_up {
                (None, t.matrix(TensorName::FfnUp, l, 2 * ff, d)?)
            } else {
                (
                    Some(t.matrix(TensorName::FfnGate, l, ff, d)?),
                    t.matrix(TensorName::FfnUp, l, ff, d)?,
                )
            };
            layers.push(LayerWeights {
                attn_norm: t.vector(TensorName::AttnNorm, l, d)?,
                qkv,
                qkv_bias,
                wo: t.matrix(TensorName::AttnOutput, l, d, q_dim)?,
                q_norm: optional_norm(TensorName::AttnQNorm, hd, config.qk_norm)?,
                k_norm: optional_norm(TensorName::AttnKNorm, hd, config.qk_norm)?,
                attn_post_norm: optional_norm(TensorName::AttnPostNorm, d, config.post_norms)?,
                ffn_norm: t.vector(TensorName::FfnNorm, l, d)?,
                gate,
                up,
                down: t.matrix(TensorName::FfnDown, l, d, ff)?,
                ffn_post_norm: optional_norm(TensorName::FfnPostNorm, d, config.post_norms)?,
            });
        }
        Ok(Weights {
            token_embd,
            output_norm,
            output,
            output_bias,
            rope_freqs,
            rope_factors,
            layers,
        })
    }

    /// The RoPE frequency divisors for sequences of up to `context` positions:
    /// `rope_freqs` when the file has them, else LongRoPE's long factors when the context
    /// exceeds the original one and the short ones otherwise (llama.cpp
    /// `llama_model::get_rope_factors`, which compares `n_ctx_seq`, padded to a multiple
    /// of 256 as llama.cpp pads the context).
    pub fn rope_factors(&self, config: &ModelConfig, context: usize) -> Option<&[f32]> {
        if let Some(f) = &self.rope_freqs {
            return Some(f);
        }
        let (short, long) = self.rope_factors.as_ref()?;
        Some(
            if uses_long_factors(config.rope_original_context, context) {
                long
            } else {
                short
            },
        )
    }
}

/// LongRoPE's long factors apply when a sequence's context, padded to a multiple of 256
/// as llama.cpp pads `n_ctx`, exceeds the original training context.
fn uses_long_factors(original_context: usize, context: usize) -> bool {
    context.next_multiple_of(256) > original_context
}

struct Table<'f> {
    file: &'f GgufFile,
}

impl Table<'_> {
    fn find(&self, name: TensorName, layer: Option<usize>) -> Result<&TensorInfo> {
        let full = name.weight(layer);
        self.file
            .tensor(&full)
            .ok_or_else(|| Error::new(ErrorKind::MissingTensor(full)))
    }

    /// A matrix of `rows` rows of `cols` values: ggml dims `[cols, rows]`.
    fn matrix(
        &self,
        name: TensorName,
        layer: Option<usize>,
        rows: usize,
        cols: usize,
    ) -> Result<Matrix> {
        let info = self.find(name, layer)?;
        check_dims(info, &[cols as u64, rows as u64])?;
        if !tern_kernels::supported_weight_type(info.ggml_type) {
            return Err(Error::new(ErrorKind::UnsupportedTensorType {
                name: info.name.clone(),
                ty: info.ggml_type.name().to_string(),
            }));
        }
        check_size(self.file, info)?;
        Ok(Matrix {
            ty: info.ggml_type,
            rows,
            cols,
            info: info.clone(),
        })
    }

    /// A vector of `len` F32 (or F16) values, copied out of the file.
    fn vector(&self, name: TensorName, layer: Option<usize>, len: usize) -> Result<Vec<f32>> {
        let info = self.find(name, layer)?;
        self.values(info, len)
    }

    /// A global vector (`rope_freqs.weight`) when the file has it.
    fn optional_vector(&self, name: TensorName, len: usize) -> Result<Option<Vec<f32>>> {
        match self.file.tensor(&name.weight(None)) {
            Some(info) => self.values(info, len).map(Some),
            None => Ok(None),
        }
    }

    /// `name`'s bias when the file has it.
    fn optional_bias(
        &self,
        name: TensorName,
        layer: Option<usize>,
        len: usize,
    ) -> Result<Option<Vec<f32>>> {
        match self.file.tensor(&name.bias(layer)) {
            Some(info) => self.values(info, len).map(Some),
            None => Ok(None),
        }
    }

    /// Q, K and V biases: all three or none (llama.cpp adds each one that exists, but
    /// no converter writes only some of them; a partial set is a broken file).
    fn separate_biases(
        &self,
        layer: Option<usize>,
        q_dim: usize,
        kv_dim: usize,
    ) -> Result<Option<QkvBias>> {
        let q = self.optional_bias(TensorName::AttnQ, layer, q_dim)?;
        let k = self.optional_bias(TensorName::AttnK, layer, kv_dim)?;
        let v = self.optional_bias(TensorName::AttnV, layer, kv_dim)?;
        match (q, k, v) {
            (Some(q), Some(k), Some(v)) => Ok(Some(QkvBias { q, k, v })),
            (None, None, None) => Ok(None),
            (q, k, _) => {
                let missing = if q.is_none() {
                    TensorName::AttnQ
                } else if k.is_none() {
                    TensorName::AttnK
                } else {
                    TensorName::AttnV
                };
                Err(Error::new(ErrorKind::MissingTensor(missing.bias(layer))))
            }
        }
    }

    fn values(&self, info: &TensorInfo, len: usize) -> Result<Vec<f32>> {
        check_dims(info, &[len as u64])?;
        check_size(self.file, info)?;
        let bytes = self.file.tensor_data(info);
        match info.ggml_type {
            GgmlType::F32 => Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()),
            GgmlType::F16 => Ok(bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()),
            other => Err(Error::new(ErrorKind::UnsupportedTensorType {
                name: info.name.clone(),
                ty: format!("{} (norm weights must be f32 or f16)", other.name()),
            })),
        }
    }
}

fn check_dims(info: &TensorInfo, expected: &[u64]) -> Result<()> {
    // Trailing 1s are the same shape to ggml.
    let mut found = info.dims.clone();
    while found.len() > expected.len() && found.last() == Some(&1) {
        found.pop();
    }
    if found != expected {
        return Err(Error::new(ErrorKind::TensorShape {
            name: info.name.clone(),
            expected: expected.to_vec(),
            found: info.dims.clone(),
        }));
    }
    Ok(())
}

fn check_size(file: &GgufFile, info: &TensorInfo) -> Result<()> {
    let expected = info.ggml_type.bytes_for(info.n_elements());
    let found = file.tensor_data(info).len() as u64;
    if expected != Some(found) {
        return Err(Error::new(ErrorKind::File(format!(
            "tensor {:?} holds {found} bytes, but {} {} values need {}",
            info.name,
            info.n_elements(),
            info.ggml_type,
            expected.map_or("an impossible size".to_string(), |e| e.to_string()),
        ))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_factors_past_the_original_context_padded_as_llama_cpp() {
        assert!(!uses_long_factors(2048, 2048));
        assert!(!uses_long_factors(2048, 2000)); // pads to 2048
        assert!(uses_long_factors(2048, 2049)); // pads to 2304
        assert!(uses_long_factors(2048, 4096));
        // Phi-4-mini: original 4096, trained 131072.
        assert!(!uses_long_factors(4096, 4096) && uses_long_factors(4096, 8192));
    }

    #[test]
    fn tensor_names_follow_llama_cpp() {
        assert_eq!(TensorName::AttnQkv.weight(Some(3)), "blk.3.attn_qkv.weight");
        assert_eq!(TensorName::AttnQ.bias(Some(0)), "blk.0.attn_q.bias");
        assert_eq!(TensorName::RopeFreqs.weight(None), "rope_freqs.weight");
        assert_eq!(
            TensorName::RopeFactorsLong.weight(None),
            "rope_factors_long.weight"
        );
        assert_eq!(TensorName::Output.bias(None), "output.bias");
    }
}
