//! The metadata keys the engine reads, and the small interface it reads them through.
//!
//! Keys are one table (llama.cpp `src/llama-arch.cpp`, `LLM_KV_NAMES`), never string
//! literals in model code. Reading goes through [`MetadataSource`] so the configuration
//! logic is tested on plain maps as well as on real GGUF files.

use std::collections::HashMap;

/// An `{arch}.…` metadata key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    ContextLength,
    EmbeddingLength,
    BlockCount,
    FeedForwardLength,
    AttentionHeadCount,
    AttentionHeadCountKv,
    AttentionKeyLength,
    AttentionValueLength,
    AttentionLayerNormRmsEpsilon,
    AttentionSlidingWindow,
    AttentionSlidingWindowPattern,
    RopeDimensionCount,
    RopeFreqBase,
    RopeFreqBaseSwa,
    RopeScalingType,
    RopeScalingFactor,
    RopeScaleLinear,
    FinalLogitSoftcapping,
    VocabSize,
}

impl Key {
    /// The key's suffix after `{arch}.`.
    pub fn suffix(self) -> &'static str {
        match self {
            Key::ContextLength => "context_length",
            Key::EmbeddingLength => "embedding_length",
            Key::BlockCount => "block_count",
            Key::FeedForwardLength => "feed_forward_length",
            Key::AttentionHeadCount => "attention.head_count",
            Key::AttentionHeadCountKv => "attention.head_count_kv",
            Key::AttentionKeyLength => "attention.key_length",
            Key::AttentionValueLength => "attention.value_length",
            Key::AttentionLayerNormRmsEpsilon => "attention.layer_norm_rms_epsilon",
            Key::AttentionSlidingWindow => "attention.sliding_window",
            Key::AttentionSlidingWindowPattern => "attention.sliding_window_pattern",
            Key::RopeDimensionCount => "rope.dimension_count",
            Key::RopeFreqBase => "rope.freq_base",
            Key::RopeFreqBaseSwa => "rope.freq_base_swa",
            Key::RopeScalingType => "rope.scaling.type",
            Key::RopeScalingFactor => "rope.scaling.factor",
            Key::RopeScaleLinear => "rope.scale_linear",
            Key::FinalLogitSoftcapping => "final_logit_softcapping",
            Key::VocabSize => "vocab_size",
        }
    }

    /// The full key for architecture `arch`, e.g. `gemma3.attention.sliding_window`.
    pub fn name(self, arch: &str) -> String {
        format!("{arch}.{}", self.suffix())
    }
}

/// Typed reads of a model's metadata. `None` means absent or of another type.
pub trait MetadataSource {
    /// `general.architecture`.
    fn architecture(&self) -> Option<String>;
    /// Whether the key is present (of any type).
    fn has(&self, key: Key) -> bool;
    /// An unsigned integer value (any integer type that fits).
    fn get_u32(&self, key: Key) -> Option<u32>;
    /// A float value.
    fn get_f32(&self, key: Key) -> Option<f32>;
    /// A string value.
    fn get_string(&self, key: Key) -> Option<String>;
    /// An array of booleans.
    fn get_bool_array(&self, key: Key) -> Option<Vec<bool>>;
    /// Number of entries of `tokenizer.ggml.tokens`.
    fn token_count(&self) -> Option<usize>;
}

/// A value in a [`MapMetadata`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U32(u32),
    F32(f32),
    Str(String),
    Bools(Vec<bool>),
}

/// Metadata from a map: tests and synthetic models.
#[derive(Clone, Debug, Default)]
pub struct MapMetadata {
    pub architecture: Option<String>,
    pub values: HashMap<Key, Value>,
    pub token_count: Option<usize>,
}

impl MapMetadata {
    /// Metadata of architecture `arch` with no key yet.
    pub fn new(arch: &str) -> Self {
        MapMetadata {
            architecture: Some(arch.to_string()),
            ..Default::default()
        }
    }

    /// Sets `key` to `value`.
    pub fn with(mut self, key: Key, value: Value) -> Self {
        self.values.insert(key, value);
        self
    }
}

impl MetadataSource for MapMetadata {
    fn architecture(&self) -> Option<String> {
        self.architecture.clone()
    }
    fn has(&self, key: Key) -> bool {
        self.values.contains_key(&key)
    }
    fn get_u32(&self, key: Key) -> Option<u32> {
        match self.values.get(&key) {
            Some(Value::U32(v)) => Some(*v),
            _ => None,
        }
    }
    fn get_f32(&self, key: Key) -> Option<f32> {
        match self.values.get(&key) {
            Some(Value::F32(v)) => Some(*v),
            _ => None,
        }
    }
    fn get_string(&self, key: Key) -> Option<String> {
        match self.values.get(&key) {
            Some(Value::Str(v)) => Some(v.clone()),
            _ => None,
        }
    }
    fn get_bool_array(&self, key: Key) -> Option<Vec<bool>> {
        match self.values.get(&key) {
            Some(Value::Bools(v)) => Some(v.clone()),
            _ => None,
        }
    }
    fn token_count(&self) -> Option<usize> {
        self.token_count
    }
}
