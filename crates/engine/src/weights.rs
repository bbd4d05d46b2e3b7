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
    AttnOutput,
    AttnQNorm,
    AttnKNorm,
    AttnPostNorm,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
    FfnPostNorm,
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
            TensorName::AttnOutput => "attn_output",
            TensorName::AttnQNorm => "attn_q_norm",
            TensorName::AttnKNorm => "attn_k_norm",
            TensorName::AttnPostNorm => "post_attention_norm",
            TensorName::FfnNorm => "ffn_norm",
            TensorName::FfnGate => "ffn_gate",
            TensorName::FfnUp => "ffn_up",
            TensorName::FfnDown => "ffn_down",
            TensorName::FfnPostNorm => "post_ffw_norm",
        }
    }

    /// The weight's full name: `token_embd.weight`, `blk.3.attn_q.weight`.
    pub fn weight(self, layer: Option<usize>) -> String {
        match layer {
            Some(il) => format!("blk.{il}.{}.weight", self.stem()),
            None => format!("{}.weight", self.stem()),
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

/// Weights of one transformer block.
#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub wq: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    pub wo: Matrix,
    /// Shape: (key_length), applied to every Q head (QK-norm).
    pub q_norm: Option<Vec<f32>>,
    /// Shape: (key_length), applied to every K head.
    pub k_norm: Option<Vec<f32>>,
    pub attn_post_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub gate: Matrix,
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
            layers.push(LayerWeights {
                attn_norm: t.vector(TensorName::AttnNorm, l, d)?,
                wq: t.matrix(TensorName::AttnQ, l, config.q_dim(), d)?,
                wk: t.matrix(TensorName::AttnK, l, config.kv_dim(), d)?,
                wv: t.matrix(TensorName::AttnV, l, config.kv_dim(), d)?,
                wo: t.matrix(TensorName::AttnOutput, l, d, config.q_dim())?,
                q_norm: optional_norm(TensorName::AttnQNorm, hd, config.qk_norm)?,
                k_norm: optional_norm(TensorName::AttnKNorm, hd, config.qk_norm)?,
                attn_post_norm: optional_norm(TensorName::AttnPostNorm, d, config.post_norms)?,
                ffn_norm: t.vector(TensorName::FfnNorm, l, d)?,
                gate: t.matrix(TensorName::FfnGate, l, config.feed_forward_length, d)?,
                up: t.matrix(TensorName::FfnUp, l, config.feed_forward_length, d)?,
                down: t.matrix(TensorName::FfnDown, l, d, config.feed_forward_length)?,
                ffn_post_norm: optional_norm(TensorName::FfnPostNorm, d, config.post_norms)?,
            });
        }
        Ok(Weights {
            token_embd,
            output_norm,
            output,
            layers,
        })
    }
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
