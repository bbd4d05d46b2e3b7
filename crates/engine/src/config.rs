//! The typed model configuration, read once from GGUF metadata.
//!
//! One transformer serves every architecture; what differs between them is data here:
//! which norms exist, the activation, the RoPE layout, the attention scale, sliding
//! windows. Values follow llama.cpp's hparams loading (`src/llama-model.cpp`,
//! `llama_model_base::load_hparams`, and each architecture's `load_arch_hparams` in
//! `src/models/*.cpp`), including its defaults for optional keys.
//!
//! Required keys are all checked before anything else, so a bad file fails with the full
//! list of what is missing.

use crate::error::{Error, ErrorKind, Result};
use tern_gguf::{Array, Key, Metadata, Value};

/// The architectures the engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// Llama and its relatives with the same graph (SmolLM2, TinyLlama, Llama 3.x).
    Llama,
    /// Gemma 3: QK-norm, post-norms, GELU, sliding-window layers.
    Gemma3,
    /// Qwen2 / Qwen2.5: llama's graph with NeoX RoPE and Q/K/V biases.
    Qwen2,
    /// Qwen3: QK-norm, no Q/K/V biases, NeoX RoPE.
    Qwen3,
    /// Phi-3 / Phi-4-mini: fused QKV and gate/up tensors, partial rotary, LongRoPE.
    Phi3,
}

impl Architecture {
    /// The `general.architecture` values the engine runs.
    pub const SUPPORTED: [&'static str; 5] = ["llama", "gemma3", "qwen2", "qwen3", "phi3"];

    /// The architecture named `name` in `general.architecture`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "llama" => Ok(Architecture::Llama),
            "gemma3" => Ok(Architecture::Gemma3),
            "qwen2" => Ok(Architecture::Qwen2),
            "qwen3" => Ok(Architecture::Qwen3),
            "phi3" => Ok(Architecture::Phi3),
            other => Err(Error::new(ErrorKind::UnsupportedArchitecture(
                other.to_string(),
            ))),
        }
    }

    /// The name used as metadata key prefix.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Gemma3 => "gemma3",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Phi3 => "phi3",
        }
    }
}

/// How RoPE pairs the dimensions of a head (llama.cpp `llama_model_rope_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Adjacent pairs `(2i, 2i+1)` (`LLAMA_ROPE_TYPE_NORM`: llama).
    Normal,
    /// Pairs `(i, i + n_rot/2)` (`LLAMA_ROPE_TYPE_NEOX`: gemma3, qwen2/3, phi3).
    Neox,
}

/// The gated activation of the feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: `silu(gate) * up` (llama).
    Silu,
    /// GeGLU with the tanh approximation of GELU (gemma).
    GeluTanh,
}

/// Where the attention scale is applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttentionScale {
    /// Multiplies the K·Q scores inside attention (llama: `kq_scale`).
    Scores(f32),
    /// Multiplies Q before attention, which then uses scale 1 (gemma3 scales Q).
    Query(f32),
}

/// Per-layer attention settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerConfig {
    /// Keys further back than this many positions are hidden (sliding-window layer).
    pub sliding_window: Option<usize>,
    /// RoPE base frequency of this layer.
    pub rope_freq_base: f32,
    /// RoPE position scale (1 / the linear scaling factor).
    pub rope_freq_scale: f32,
}

/// Everything the forward pass needs to know about a model's shape and arithmetic.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    /// Context length the model was trained with.
    pub context_length: usize,
    /// Width of the residual stream, `d`.
    pub embedding_length: usize,
    pub block_count: usize,
    pub feed_forward_length: usize,
    pub head_count: usize,
    pub head_count_kv: usize,
    /// Width of one key head.
    pub key_length: usize,
    /// Width of one value head.
    pub value_length: usize,
    /// Dimensions of a head that RoPE rotates.
    pub rope_dimension_count: usize,
    pub rope_layout: RopeLayout,
    pub norm_eps: f32,
    pub vocab_size: usize,
    /// Multiplies token embeddings (gemma: `sqrt(d)`).
    pub embedding_scale: Option<f32>,
    pub attention_scale: AttentionScale,
    pub activation: Activation,
    /// RMSNorm of each Q and K head before RoPE (gemma3, qwen3).
    pub qk_norm: bool,
    /// RMSNorm after attention and after the FFN, before the residual add (gemma).
    pub post_norms: bool,
    /// `cap * tanh(logits / cap)` on the output logits.
    pub final_logit_softcap: Option<f32>,
    /// Multiplies RoPE's cos and sin (`rope.scaling.attn_factor`: LongRoPE's attention
    /// scaling, which the phi3 converter writes; 1 elsewhere).
    pub rope_attn_factor: f32,
    /// The context the RoPE frequencies were trained for
    /// (`rope.scaling.original_context_length`, else `context_length`): LongRoPE
    /// models use their long factors when the configured context exceeds it.
    pub rope_original_context: usize,
    /// `ffn_up` holds the gate and up projections one after the other, `2 *
    /// feed_forward_length` rows, and there is no `ffn_gate` (phi3).
    pub fused_gate_up: bool,
    /// The file stores Q, K and V as one `attn_qkv` matrix (set when the weights are
    /// found: llama.cpp accepts either form).
    pub fused_qkv: bool,
    pub layers: Vec<LayerConfig>,
}

impl ModelConfig {
    /// Reads the configuration from `meta`, checking every required key first.
    pub fn from_metadata(meta: &Metadata) -> Result<Self> {
        let arch_name = meta.architecture_name().ok_or_else(|| {
            Error::new(ErrorKind::MissingMetadata(vec![
                Key::GeneralArchitecture.to_string(),
            ]))
        })?;
        let architecture = Architecture::from_name(arch_name)?;
        let arch = architecture.name();
        let m = Reader { meta, arch };

        let required = [
            Key::ContextLength,
            Key::EmbeddingLength,
            Key::BlockCount,
            Key::FeedForwardLength,
            Key::AttentionHeadCount,
            Key::AttentionLayerNormRmsEpsilon,
        ];
        let missing: Vec<String> = required
            .iter()
            .filter(|k| meta.get(**k).is_none())
            .map(|k| k.name(arch))
            .collect();
        if !missing.is_empty() {
            return Err(Error::new(ErrorKind::MissingMetadata(missing)));
        }

        let context_length = m.usize(Key::ContextLength)?.unwrap_or(0);
        let embedding_length = m.usize(Key::EmbeddingLength)?.unwrap_or(0);
        let block_count = m.usize(Key::BlockCount)?.unwrap_or(0);
        let feed_forward_length = m.usize(Key::FeedForwardLength)?.unwrap_or(0);
        let head_count = m.usize(Key::AttentionHeadCount)?.unwrap_or(0);
        let norm_eps = m.f32(Key::AttentionLayerNormRmsEpsilon)?.unwrap_or(0.0);
        let head_count_kv = m.usize(Key::AttentionHeadCountKv)?.unwrap_or(head_count);
        for (key, value) in [
            (Key::EmbeddingLength, embedding_length),
            (Key::BlockCount, block_count),
            (Key::FeedForwardLength, feed_forward_length),
            (Key::AttentionHeadCount, head_count),
            (Key::AttentionHeadCountKv, head_count_kv),
        ] {
            if value == 0 {
                return Err(invalid(arch, key, "must not be 0"));
            }
        }
        if !head_count.is_multiple_of(head_count_kv) {
            return Err(invalid(
                arch,
                Key::AttentionHeadCountKv,
                &format!(
                    "{head_count} heads are not a multiple of {head_count_kv} key/value heads"
                ),
            ));
        }
        let default_head = embedding_length / head_count;
        let key_length = m.usize(Key::AttentionKeyLength)?.unwrap_or(default_head);
        let value_length = m.usize(Key::AttentionValueLength)?.unwrap_or(default_head);
        let rope_dimension_count = m.usize(Key::RopeDimensionCount)?.unwrap_or(key_length);
        if key_length == 0 || key_length != value_length {
            return Err(invalid(
                arch,
                Key::AttentionValueLength,
                &format!(
                    "key heads of {key_length} and value heads of {value_length} are not supported"
                ),
            ));
        }
        if rope_dimension_count > key_length || !rope_dimension_count.is_multiple_of(2) {
            return Err(invalid(
                arch,
                Key::RopeDimensionCount,
                &format!("{rope_dimension_count} rotated dimensions in heads of {key_length}"),
            ));
        }
        // llama.cpp `load_hparams`: base 10000 when absent; scale = 1 / factor.
        let rope_freq_base = m.f32(Key::RopeFreqBase)?.unwrap_or(10_000.0);
        let rope_scale_factor = match m.f32(Key::RopeScalingFactor)? {
            Some(f) => f,
            None => m.f32(Key::RopeScaleLinear)?.unwrap_or(0.0),
        };
        let rope_freq_scale = if rope_scale_factor == 0.0 {
            1.0
        } else {
            1.0 / rope_scale_factor
        };
        // llama.cpp's scaling types (`LLAMA_ROPE_SCALING_TYPES`): with "longrope" the
        // factors come from tensors; "none" turns the scale off. YaRN is not run yet.
        let scaling_type = m.string(Key::RopeScalingType)?;
        let rope_freq_scale = if scaling_type.as_deref() == Some("none") {
            1.0
        } else {
            rope_freq_scale
        };
        if let Some(kind) = scaling_type
            && !matches!(kind.as_str(), "none" | "linear" | "longrope")
        {
            return Err(invalid(
                arch,
                Key::RopeScalingType,
                &format!("rope scaling {kind:?} is not supported yet"),
            ));
        }
        // llama.cpp: `{arch}.vocab_size`, else the length of the token list.
        let vocab_size = match m.usize(Key::VocabSize)? {
            Some(v) => v,
            None => match meta.get_array(Key::TokenizerTokens) {
                Ok(Some(tokens)) => tokens.len(),
                _ => {
                    return Err(Error::new(ErrorKind::MissingMetadata(vec![
                        Key::VocabSize.name(arch),
                        Key::TokenizerTokens.to_string(),
                    ])));
                }
            },
        };

        let global = LayerConfig {
            sliding_window: None,
            rope_freq_base,
            rope_freq_scale,
        };
        let mut config = ModelConfig {
            architecture,
            context_length,
            embedding_length,
            block_count,
            feed_forward_length,
            head_count,
            head_count_kv,
            key_length,
            value_length,
            rope_dimension_count,
            rope_layout: RopeLayout::Normal,
            norm_eps,
            vocab_size,
            embedding_scale: None,
            attention_scale: AttentionScale::Scores(1.0 / (key_length as f32).sqrt()),
            activation: Activation::Silu,
            qk_norm: false,
            post_norms: false,
            final_logit_softcap: None,
            rope_attn_factor: m.f32(Key::RopeScalingAttnFactor)?.unwrap_or(1.0),
            rope_original_context: m
                .usize(Key::RopeScalingOriginalContextLength)?
                .filter(|&n| n != 0)
                .unwrap_or(context_length),
            fused_gate_up: false,
            fused_qkv: false,
            layers: vec![global; block_count],
        };

        match architecture {
            Architecture::Llama => {
                // llama.cpp rejects llama files whose rotated width is not the head width.
                if rope_dimension_count != key_length {
                    return Err(invalid(
                        arch,
                        Key::RopeDimensionCount,
                        &format!(
                            "llama rotates whole heads ({key_length}), not {rope_dimension_count}"
                        ),
                    ));
                }
            }
            Architecture::Gemma3 => gemma3(&m, &mut config)?,
            Architecture::Qwen2 | Architecture::Qwen3 => {
                // `src/models/qwen2.cpp`, `qwen3.cpp`: NeoX RoPE over whole heads; qwen3
                // adds RMSNorm of each Q and K head. Q/K/V biases are found by the weights
                // table (present in Qwen2 files, absent in Qwen3 ones).
                config.rope_layout = RopeLayout::Neox;
                config.qk_norm = architecture == Architecture::Qwen3;
                if rope_dimension_count != key_length {
                    return Err(invalid(
                        arch,
                        Key::RopeDimensionCount,
                        &format!(
                            "{arch} rotates whole heads ({key_length}), not {rope_dimension_count}"
                        ),
                    ));
                }
            }
            Architecture::Phi3 => {
                // `src/models/phi3.cpp`: NeoX RoPE over `rope.dimension_count` dimensions
                // (partial rotary), Q scaled by 1/sqrt(head) before attention, gate and
                // up fused in `ffn_up`. llama.cpp turns a phi3 sliding window off
                // ("Phi SWA is currently disabled"), so every layer stays global here.
                config.rope_layout = RopeLayout::Neox;
                config.attention_scale = AttentionScale::Query(1.0 / (key_length as f32).sqrt());
                config.fused_gate_up = true;
            }
        }
        Ok(config)
    }

    /// Key/value width of a layer: `head_count_kv * key_length`.
    pub fn kv_dim(&self) -> usize {
        self.head_count_kv * self.key_length
    }

    /// Query width: `head_count * key_length`.
    pub fn q_dim(&self) -> usize {
        self.head_count * self.key_length
    }
}

/// Gemma 3 (llama.cpp `src/models/gemma3.cpp`, `load_arch_hparams`).
fn gemma3(m: &Reader<'_>, config: &mut ModelConfig) -> Result<()> {
    let arch = "gemma3";
    config.rope_layout = RopeLayout::Neox;
    config.activation = Activation::GeluTanh;
    config.qk_norm = true;
    config.post_norms = true;
    // `ggml_scale(inpL, sqrtf(n_embd))` in f32.
    config.embedding_scale = Some((config.embedding_length as f32).sqrt());
    // Gemma 3 27B scales by 1/sqrt(d / n_head); every other size by 1/sqrt(head width).
    let scale = if config.block_count == 62 {
        1.0 / ((config.embedding_length / config.head_count) as f32).sqrt()
    } else {
        1.0 / (config.key_length as f32).sqrt()
    };
    config.attention_scale = AttentionScale::Query(scale);
    config.final_logit_softcap = m.f32(Key::FinalLogitSoftcapping)?.filter(|c| *c != 0.0);

    let window = m.usize(Key::AttentionSlidingWindow)?.unwrap_or(0);
    if window > 0 {
        // `load_swa_pattern(ml, 6)`: an explicit per-layer array, else a period
        // (default 6) whose last layer is global.
        let pattern: Vec<bool> = match m.meta.get(Key::AttentionSlidingWindowPattern) {
            Some(Value::Array(Array::Bool(flags))) => {
                if flags.len() != config.block_count {
                    return Err(invalid(
                        arch,
                        Key::AttentionSlidingWindowPattern,
                        &format!("{} entries for {} layers", flags.len(), config.block_count),
                    ));
                }
                flags.clone()
            }
            _ => {
                let period = m.usize(Key::AttentionSlidingWindowPattern)?.unwrap_or(6);
                (0..config.block_count)
                    .map(|il| period == 0 || il % period < period - 1)
                    .collect()
            }
        };
        // Local layers: `rope.freq_base_swa` when set, else 10000 (llama_hparams default).
        let local_base = m.f32(Key::RopeFreqBaseSwa)?.unwrap_or(10_000.0);
        for (layer, sliding) in config.layers.iter_mut().zip(pattern) {
            if sliding {
                *layer = LayerConfig {
                    sliding_window: Some(window),
                    rope_freq_base: local_base,
                    rope_freq_scale: 1.0,
                };
            }
        }
    }
    Ok(())
}

/// Typed reads whose type errors name the key.
struct Reader<'a> {
    meta: &'a Metadata,
    arch: &'static str,
}

impl Reader<'_> {
    fn usize(&self, key: Key) -> Result<Option<usize>> {
        self.meta
            .get_u32(key)
            .map(|v| v.map(|v| v as usize))
            .map_err(|e| self.wrap(key, e))
    }

    fn f32(&self, key: Key) -> Result<Option<f32>> {
        self.meta.get_f32(key).map_err(|e| self.wrap(key, e))
    }

    fn string(&self, key: Key) -> Result<Option<String>> {
        self.meta
            .get_str(key)
            .map(|v| v.map(str::to_string))
            .map_err(|e| self.wrap(key, e))
    }

    fn wrap(&self, key: Key, e: tern_gguf::Error) -> Error {
        Error::with_source(
            ErrorKind::InvalidMetadata {
                key: key.name(self.arch),
                reason: "unreadable".into(),
            },
            e,
        )
    }
}

fn invalid(arch: &str, key: Key, reason: &str) -> Error {
    Error::new(ErrorKind::InvalidMetadata {
        key: key.name(arch),
        reason: reason.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(arch: &str, entries: &[(Key, Value)]) -> Metadata {
        let mut m = Metadata::new();
        m.set(
            Key::GeneralArchitecture.template(),
            Value::String(arch.into()),
        );
        for (k, v) in entries {
            m.set(&k.name(arch), v.clone());
        }
        m
    }

    fn with(mut m: Metadata, key: Key, value: Value) -> Metadata {
        let arch = m.architecture_name().unwrap().to_string();
        m.set(&key.name(&arch), value);
        m
    }

    fn smollm2() -> Metadata {
        meta(
            "llama",
            &[
                (Key::ContextLength, Value::U32(8192)),
                (Key::EmbeddingLength, Value::U32(576)),
                (Key::BlockCount, Value::U32(30)),
                (Key::FeedForwardLength, Value::U32(1536)),
                (Key::AttentionHeadCount, Value::U32(9)),
                (Key::AttentionHeadCountKv, Value::U32(3)),
                (Key::RopeFreqBase, Value::F32(100_000.0)),
                (Key::AttentionLayerNormRmsEpsilon, Value::F32(1e-5)),
                (Key::VocabSize, Value::U32(49152)),
                (Key::RopeDimensionCount, Value::U32(64)),
            ],
        )
    }

    fn gemma3_270m() -> Metadata {
        let mut m = meta(
            "gemma3",
            &[
                (Key::ContextLength, Value::U32(32768)),
                (Key::EmbeddingLength, Value::U32(640)),
                (Key::BlockCount, Value::U32(18)),
                (Key::FeedForwardLength, Value::U32(2048)),
                (Key::AttentionHeadCount, Value::U32(4)),
                (Key::AttentionHeadCountKv, Value::U32(1)),
                (Key::AttentionKeyLength, Value::U32(256)),
                (Key::AttentionValueLength, Value::U32(256)),
                (Key::RopeFreqBase, Value::F32(1_000_000.0)),
                (Key::AttentionSlidingWindow, Value::U32(512)),
                (Key::AttentionLayerNormRmsEpsilon, Value::F32(1e-6)),
            ],
        );
        let tokens = vec![String::new(); 262_144];
        m.set(
            Key::TokenizerTokens.template(),
            Value::Array(Array::String(tokens)),
        );
        m
    }

    #[test]
    fn llama_config() {
        let c = ModelConfig::from_metadata(&smollm2()).unwrap();
        assert_eq!(c.architecture, Architecture::Llama);
        assert_eq!((c.head_count, c.head_count_kv, c.key_length), (9, 3, 64));
        assert_eq!((c.kv_dim(), c.q_dim()), (192, 576));
        assert_eq!(c.rope_layout, RopeLayout::Normal);
        assert_eq!(c.attention_scale, AttentionScale::Scores(0.125));
        assert_eq!(c.activation, Activation::Silu);
        assert!(!c.qk_norm && !c.post_norms && c.embedding_scale.is_none());
        assert!(
            c.layers
                .iter()
                .all(|l| l.sliding_window.is_none() && l.rope_freq_base == 1e5)
        );
    }

    #[test]
    fn gemma3_layers_alternate_five_local_one_global() {
        let c = ModelConfig::from_metadata(&gemma3_270m()).unwrap();
        assert_eq!(
            c.vocab_size, 262_144,
            "from the token list when vocab_size is absent"
        );
        assert_eq!(c.rope_layout, RopeLayout::Neox);
        assert_eq!(c.attention_scale, AttentionScale::Query(1.0 / 16.0));
        assert_eq!(c.embedding_scale, Some(640f32.sqrt()));
        let global: Vec<usize> = (0..18)
            .filter(|&il| c.layers[il].sliding_window.is_none())
            .collect();
        assert_eq!(global, vec![5, 11, 17]);
        assert_eq!(c.layers[0].rope_freq_base, 10_000.0);
        assert_eq!(c.layers[0].sliding_window, Some(512));
        assert_eq!(c.layers[5].rope_freq_base, 1_000_000.0);
        assert_eq!(c.final_logit_softcap, None);
    }

    #[test]
    fn gemma3_pattern_and_local_base_from_metadata() {
        let mut meta = gemma3_270m();
        meta = with(meta, Key::AttentionSlidingWindowPattern, Value::U32(3));
        meta = with(meta, Key::RopeFreqBaseSwa, Value::F32(5_000.0));
        meta = with(meta, Key::FinalLogitSoftcapping, Value::F32(30.0));
        let c = ModelConfig::from_metadata(&meta).unwrap();
        let global: Vec<usize> = (0..18)
            .filter(|&il| c.layers[il].sliding_window.is_none())
            .collect();
        assert_eq!(global, vec![2, 5, 8, 11, 14, 17]);
        assert_eq!(c.layers[0].rope_freq_base, 5_000.0);
        assert_eq!(c.final_logit_softcap, Some(30.0));

        let mut flags = vec![true; 18];
        flags[0] = false;
        let pattern = Value::Array(Array::Bool(flags));
        let meta = with(gemma3_270m(), Key::AttentionSlidingWindowPattern, pattern);
        let c = ModelConfig::from_metadata(&meta).unwrap();
        assert!(c.layers[0].sliding_window.is_none() && c.layers[5].sliding_window.is_some());
    }

    fn small(arch: &str, extra: &[(Key, Value)]) -> Metadata {
        let mut entries = vec![
            (Key::ContextLength, Value::U32(8192)),
            (Key::EmbeddingLength, Value::U32(256)),
            (Key::BlockCount, Value::U32(2)),
            (Key::FeedForwardLength, Value::U32(512)),
            (Key::AttentionHeadCount, Value::U32(4)),
            (Key::AttentionHeadCountKv, Value::U32(2)),
            (Key::AttentionLayerNormRmsEpsilon, Value::F32(1e-6)),
            (Key::VocabSize, Value::U32(1000)),
        ];
        entries.extend_from_slice(extra);
        meta(arch, &entries)
    }

    #[test]
    fn qwen_configs() {
        let c = ModelConfig::from_metadata(&small("qwen2", &[])).unwrap();
        assert_eq!(c.architecture, Architecture::Qwen2);
        assert_eq!(c.rope_layout, RopeLayout::Neox);
        assert!(!c.qk_norm && !c.fused_gate_up);
        assert_eq!(c.attention_scale, AttentionScale::Scores(0.125));
        let c = ModelConfig::from_metadata(&small("qwen3", &[])).unwrap();
        assert_eq!(c.architecture, Architecture::Qwen3);
        assert!(c.qk_norm && c.rope_layout == RopeLayout::Neox);
        // Qwen rotates whole heads, as llama.cpp asserts.
        let partial = small("qwen3", &[(Key::RopeDimensionCount, Value::U32(32))]);
        let err = ModelConfig::from_metadata(&partial).unwrap_err();
        assert!(
            err.to_string().contains("qwen3.rope.dimension_count"),
            "{err}"
        );
    }

    #[test]
    fn phi3_config() {
        let c = ModelConfig::from_metadata(&small(
            "phi3",
            &[
                (Key::RopeDimensionCount, Value::U32(48)),
                (Key::RopeScalingOriginalContextLength, Value::U32(2048)),
                (Key::RopeScalingAttnFactor, Value::F32(1.09)),
                (Key::AttentionSlidingWindow, Value::U32(32)),
            ],
        ))
        .unwrap();
        assert_eq!(c.architecture, Architecture::Phi3);
        assert_eq!(c.rope_dimension_count, 48);
        assert_eq!(c.rope_layout, RopeLayout::Neox);
        assert_eq!(c.attention_scale, AttentionScale::Query(0.125));
        assert!(c.fused_gate_up);
        assert_eq!((c.rope_original_context, c.rope_attn_factor), (2048, 1.09));
        assert!(c.layers.iter().all(|l| l.sliding_window.is_none()));
        // Without the key, the original context is the trained one.
        let c = ModelConfig::from_metadata(&small("phi3", &[])).unwrap();
        assert_eq!((c.rope_original_context, c.rope_attn_factor), (8192, 1.0));
    }

    #[test]
    fn rope_scaling_types() {
        let with_type = |t: &str| {
            ModelConfig::from_metadata(&small(
                "llama",
                &[
                    (Key::RopeScalingType, Value::String(t.into())),
                    (Key::RopeScalingFactor, Value::F32(4.0)),
                ],
            ))
        };
        assert_eq!(with_type("linear").unwrap().layers[0].rope_freq_scale, 0.25);
        assert_eq!(with_type("none").unwrap().layers[0].rope_freq_scale, 1.0);
        assert!(with_type("longrope").is_ok());
        let err = with_type("yarn").unwrap_err();
        assert!(err.to_string().contains("llama.rope.scaling.type"), "{err}");
    }

    #[test]
    fn missing_keys_are_all_listed() {
        let meta = meta(
            "llama",
            &[
                (Key::ContextLength, Value::U32(8192)),
                (Key::EmbeddingLength, Value::U32(576)),
                (Key::FeedForwardLength, Value::U32(1536)),
                (Key::AttentionLayerNormRmsEpsilon, Value::F32(1e-5)),
            ],
        );
        let err = ModelConfig::from_metadata(&meta).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("llama.block_count") && msg.contains("llama.attention.head_count"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_architecture_is_named() {
        let err = ModelConfig::from_metadata(&meta("mamba", &[])).unwrap_err();
        assert!(err.to_string().contains("\"mamba\""), "{err}");
        assert!(matches!(err.kind(), ErrorKind::UnsupportedArchitecture(_)));
    }

    #[test]
    fn inconsistent_heads_are_rejected() {
        let meta = with(smollm2(), Key::AttentionHeadCountKv, Value::U32(4));
        let err = ModelConfig::from_metadata(&meta).unwrap_err();
        assert!(err.to_string().contains("head_count_kv"), "{err}");
        let meta = with(smollm2(), Key::AttentionHeadCount, Value::U32(0));
        assert!(ModelConfig::from_metadata(&meta).is_err());
        let meta = with(smollm2(), Key::BlockCount, Value::String("thirty".into()));
        let err = ModelConfig::from_metadata(&meta).unwrap_err();
        assert!(err.to_string().contains("llama.block_count"), "{err}");
    }
}
