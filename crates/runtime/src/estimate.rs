//! A model's memory footprint, estimated from its GGUF header before anything is
//! loaded: the budget decision (load, evict, refuse) is made on these numbers.
//!
//! The parts, each computed from the sizes the engine allocates:
//! - **weights**: the whole file, since the forward pass reads every tensor (the output
//!   projection reads the whole, often tied, embedding matrix) and parsing reads the
//!   header: all of it becomes resident through the map;
//! - **KV cache**: keys and values of every layer for `ctx_size` positions of each of the
//!   `parallel` slots, in the entry's KV type; a sliding-window layer keeps only its
//!   window plus a batch (the engine's own layout: `tern_engine::KvCacheSpec`, the same
//!   numbers the engine allocates);
//! - **compute**: the engine's scratch buffers (`tern_engine::Scratch::new`) for batches
//!   of `batch_size` tokens, the quantized activation copy, the logits rows (one per
//!   slot) and each slot's sampler buffers;
//! - **other**: the metadata parsed into the heap and the tokenizer built from it, in
//!   proportion to the header's size and vocabulary (calibrated against measured RSS on
//!   SmolLM2 and Gemma 3, see the model tests).

use std::path::Path;

use tern_engine::{KvCacheSpec, ModelConfig};
use tern_gguf::GgufFile;

use crate::config::{KvType, ModelEntry};
use crate::error::RuntimeError;

/// Estimated bytes by part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub weights: u64,
    pub kv_cache: u64,
    pub compute: u64,
    pub other: u64,
}

impl Footprint {
    /// The sum of the parts.
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.compute + self.other
    }
}

/// The sizes a model is run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunShape {
    pub ctx_size: usize,
    pub parallel: usize,
    pub batch_size: usize,
    pub kv_type: KvType,
}

impl RunShape {
    /// The shape an entry asks for.
    pub fn of(entry: &ModelEntry) -> RunShape {
        RunShape {
            ctx_size: entry.ctx_size,
            parallel: entry.parallel,
            batch_size: entry.batch_size,
            kv_type: entry.kv_type,
        }
    }
}

/// Bytes of the KV cache for `shape`: what `tern_engine::Model::new_kv_cache_for`
/// allocates for `parallel` slots of `ctx_size` positions and batches of `batch_size`.
pub fn kv_cache_bytes(config: &ModelConfig, shape: RunShape) -> u64 {
    KvCacheSpec::for_config(
        config,
        shape.kv_type.engine(),
        shape.parallel,
        shape.ctx_size,
        shape.batch_size,
    )
    .bytes()
}

/// Bytes of the compute buffers for `shape`: the engine's `Scratch` for `batch_size`
/// tokens, logits rows and per-slot sampler buffers.
pub fn compute_bytes(config: &ModelConfig, shape: RunShape) -> u64 {
    let tokens = shape.batch_size.max(1) as u64;
    let d = config.embedding_length as u64;
    let ff = config.feed_forward_length as u64;
    let q = config.q_dim() as u64;
    let kv = config.kv_dim() as u64;
    let vocab = config.vocab_size as u64;
    // Scratch: x, xb, proj (d); q, attn (q_dim); k, v (kv_dim); gate, up, hidden (ff).
    let scratch_f32 = tokens * (3 * d + 2 * q + 2 * kv + 3 * ff);
    // The quantized copy of a matmul input (at most the widest row): quantized blocks
    // plus the unpacked int8 layout the batched kernels use, about 2.25 bytes a value.
    let widest = d.max(ff).max(q);
    let activations = tokens * widest * 9 / 4;
    // Attention: one score per context position.
    let attention = shape.ctx_size as u64 * 4;
    // One logits row per slot, and each slot's sampler: a candidate (8 bytes), a count
    // (4) and a flag (1) per token.
    let logits = shape.parallel as u64 * vocab * 4;
    let samplers = shape.parallel as u64 * vocab * 13;
    scratch_f32 * 4 + activations + attention + logits + samplers
}

/// Heap bytes of the parsed metadata and the tokenizer: each string of the header
/// (token texts, merges) lives twice in the heap (metadata value, tokenizer table) plus
/// the per-token tables; plus what every loaded model costs besides (its thread and
/// allocator arena, kernel work buffers, per-request channels and decoders). Fitted on
/// SmolLM2 (49k tokens) and Gemma 3 (262k tokens) at 512 and 2048 positions.
pub fn other_bytes(header_bytes: u64, vocab_size: usize) -> u64 {
    header_bytes * 3 + vocab_size as u64 * 96 + PER_MODEL_OVERHEAD
}

/// The part of [`other_bytes`] that does not grow with the vocabulary.
pub const PER_MODEL_OVERHEAD: u64 = 16 << 20;

/// The footprint of a parsed file run with `shape`.
pub fn footprint(file: &GgufFile, config: &ModelConfig, shape: RunShape) -> Footprint {
    Footprint {
        weights: file.file_size(),
        kv_cache: kv_cache_bytes(config, shape),
        compute: compute_bytes(config, shape),
        other: other_bytes(file.data_offset(), config.vocab_size),
    }
}

/// Opens `path` (reading only its header), and estimates its footprint for `shape`.
pub fn estimate_file(path: &Path, shape: RunShape) -> Result<Footprint, RuntimeError> {
    let file = GgufFile::open(path)
        .map_err(|e| RuntimeError::Engine(format!("cannot read {}: {e}", path.display())))?;
    let config = ModelConfig::from_metadata(file.metadata())
        .map_err(|e| RuntimeError::Engine(format!("{}: {e}", path.display())))?;
    Ok(footprint(&file, &config, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_engine::config::LayerConfig;

    fn config(windows: &[Option<usize>]) -> ModelConfig {
        let layer = |w: &Option<usize>| LayerConfig {
            sliding_window: *w,
            rope_freq_base: 1e4,
            rope_freq_scale: 1.0,
        };
        ModelConfig {
            architecture: tern_engine::Architecture::Gemma3,
            context_length: 8192,
            embedding_length: 64,
            block_count: windows.len(),
            feed_forward_length: 128,
            head_count: 4,
            head_count_kv: 2,
            key_length: 16,
            value_length: 16,
            rope_dimension_count: 16,
            rope_layout: tern_engine::config::RopeLayout::Neox,
            norm_eps: 1e-6,
            vocab_size: 1000,
            embedding_scale: None,
            attention_scale: tern_engine::config::AttentionScale::Scores(0.25),
            activation: tern_engine::config::Activation::GeluTanh,
            qk_norm: true,
            post_norms: true,
            final_logit_softcap: None,
            rope_attn_factor: 1.0,
            rope_original_context: 8192,
            fused_gate_up: false,
            fused_qkv: false,
            layers: windows.iter().map(layer).collect(),
        }
    }

    #[test]
    fn kv_bytes_count_layers_slots_windows_and_types() {
        let c = config(&[Some(100), None, Some(100)]);
        let shape = RunShape {
            ctx_size: 1000,
            parallel: 3,
            batch_size: 64,
            kv_type: KvType::F16,
        };
        // kv_dim 32, 2 bytes, keys + values; the windowed layers keep 100 + 64 cells
        // rounded up to 256, as llama.cpp's sliding-window cache.
        let per_position = 2 * 32 * 2;
        assert_eq!(
            kv_cache_bytes(&c, shape),
            3 * (256 + 1000 + 256) * per_position
        );
        // A window larger than the context keeps the context.
        let short = RunShape {
            ctx_size: 50,
            ..shape
        };
        assert_eq!(kv_cache_bytes(&c, short), 3 * 3 * 50 * per_position);
        // Q8_0: 34 bytes per 32 values; Q4_0: 18.
        let q8 = RunShape {
            kv_type: KvType::Q8_0,
            ..shape
        };
        assert_eq!(kv_cache_bytes(&c, q8), 3 * (256 + 1000 + 256) * 2 * 34);
        let q4 = RunShape {
            kv_type: KvType::Q4_0,
            ..shape
        };
        assert_eq!(kv_cache_bytes(&c, q4), 3 * (256 + 1000 + 256) * 2 * 18);
    }

    #[test]
    fn the_engine_allocates_what_the_kv_estimate_says() {
        let mut c = config(&[None, Some(8)]);
        // Quantized caches need heads of whole 32-value blocks.
        c.key_length = 32;
        c.value_length = 32;
        for kv_type in [KvType::F16, KvType::Q8_0, KvType::Q4_0] {
            let shape = RunShape {
                ctx_size: 40,
                parallel: 2,
                batch_size: 8,
                kv_type,
            };
            let spec = KvCacheSpec::for_config(&c, kv_type.engine(), 2, 40, 8);
            let cache = tern_engine::KvCache::new(spec).unwrap();
            assert_eq!(cache.size_bytes() as u64, kv_cache_bytes(&c, shape));
        }
    }

    #[test]
    fn compute_grows_with_batch_and_slots() {
        let c = config(&[None]);
        let shape = RunShape {
            ctx_size: 100,
            parallel: 1,
            batch_size: 10,
            kv_type: KvType::F16,
        };
        let base = compute_bytes(&c, shape);
        let wider = compute_bytes(
            &c,
            RunShape {
                batch_size: 20,
                ..shape
            },
        );
        let more = compute_bytes(
            &c,
            RunShape {
                parallel: 2,
                ..shape
            },
        );
        // Per token: (3*64 + 2*64 + 2*32 + 3*128) f32 + 128 * 2.25 bytes.
        assert_eq!(wider - base, 10 * (768 * 4 + 288));
        assert_eq!(more - base, 1000 * (4 + 13));
    }
}
