//! Preallocated buffers of the forward pass (llama2.c's `RunState`): sized once for the
//! largest batch, so a forward pass allocates nothing. The large ones are anonymous
//! mappings ([`AnonBuffer`]), given back to the system when the scratch is dropped.

use std::sync::Arc;

use tern_kernels::attention::QUERY_TILE;
use tern_kernels::pool::ThreadPool;

use crate::attention;
use crate::buffer::AnonBuffer;
use crate::config::ModelConfig;
use crate::dump::Dumper;
use crate::kv_cache::PendingLens;
use crate::ops::Activations;

/// Work buffers for batches of up to [`Scratch::max_tokens`] tokens.
#[derive(Debug)]
pub struct Scratch {
    pub(crate) max_tokens: usize,
    /// Residual stream. Shape: (max_tokens, d).
    pub(crate) x: AnonBuffer<f32>,
    /// Normed input of a sub-block. Shape: (max_tokens, d).
    pub(crate) xb: AnonBuffer<f32>,
    /// Shape: (max_tokens, head_count * key_length).
    pub(crate) q: AnonBuffer<f32>,
    /// Shape: (max_tokens, head_count_kv * key_length).
    pub(crate) k: AnonBuffer<f32>,
    /// Shape: (max_tokens, head_count_kv * key_length).
    pub(crate) v: AnonBuffer<f32>,
    /// Attention output before the output projection. Shape: (max_tokens rounded up to
    /// a whole number of attention query tiles, q_dim).
    pub(crate) attn: AnonBuffer<f32>,
    /// Output of a projection back to `d`. Shape: (max_tokens, d).
    pub(crate) proj: AnonBuffer<f32>,
    /// Output of a fused Q|K|V matrix. Shape: (max_tokens, q_dim + 2 * kv_dim), empty
    /// when the model has separate matrices.
    pub(crate) qkv: AnonBuffer<f32>,
    /// Shape: (max_tokens, feed_forward_length), twice as wide when gate and up are one
    /// matrix.
    pub(crate) gate: AnonBuffer<f32>,
    /// Shape: (max_tokens, feed_forward_length).
    pub(crate) up: AnonBuffer<f32>,
    /// `act(gate) * up`. Shape: (max_tokens, feed_forward_length).
    pub(crate) hidden: AnonBuffer<f32>,
    /// RoPE angles of one position. Shape: (rope_dimension_count).
    pub(crate) rope_cache: Vec<f32>,
    /// Quantized copy of the current matmul input.
    pub(crate) acts: Activations,
    /// Attention buffers, one set per thread.
    pub(crate) attention: attention::Workspace,
    /// Sequence lengths after the batch (see `KvCache::check_batch`).
    pub(crate) lens: PendingLens,
    /// Batch rows whose logits are wanted.
    pub(crate) out_rows: Vec<usize>,
    pub(crate) dumper: Option<Dumper>,
}

impl Scratch {
    /// Buffers for `config`, batches of up to `max_tokens` tokens and sequences of up to
    /// `context` positions.
    pub fn new(config: &ModelConfig, max_tokens: usize, context: usize) -> Self {
        let max_tokens = max_tokens.max(1);
        let d = config.embedding_length;
        let ff = config.feed_forward_length;
        Scratch {
            max_tokens,
            x: AnonBuffer::zeroed(max_tokens * d),
            xb: AnonBuffer::zeroed(max_tokens * d),
            q: AnonBuffer::zeroed(max_tokens * config.q_dim()),
            k: AnonBuffer::zeroed(max_tokens * config.kv_dim()),
            v: AnonBuffer::zeroed(max_tokens * config.kv_dim()),
            attn: AnonBuffer::zeroed(max_tokens.next_multiple_of(QUERY_TILE) * config.q_dim()),
            proj: AnonBuffer::zeroed(max_tokens * d),
            qkv: AnonBuffer::zeroed(if config.fused_qkv {
                max_tokens * (config.q_dim() + 2 * config.kv_dim())
            } else {
                0
            }),
            gate: AnonBuffer::zeroed(max_tokens * ff * if config.fused_gate_up { 2 } else { 1 }),
            up: AnonBuffer::zeroed(max_tokens * ff),
            hidden: AnonBuffer::zeroed(max_tokens * ff),
            rope_cache: vec![0.0; config.rope_dimension_count],
            acts: Activations::new(),
            attention: attention::Workspace::new(config.key_length, context),
            lens: PendingLens::default(),
            out_rows: Vec::with_capacity(max_tokens),
            dumper: Dumper::from_env(),
        }
    }

    /// The largest batch these buffers hold.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Splits the matmuls and the attention of the following passes over `pool`'s
    /// threads (`None`, or a pool of one thread: the calling thread alone). The logits
    /// are the same bits whatever the thread count. A pool may be shared by several
    /// scratches (e.g. the models of one process); passes that run at the same time
    /// then take turns per matmul or attention layer.
    pub fn set_thread_pool(&mut self, pool: Option<Arc<ThreadPool>>) {
        self.attention
            .set_threads(pool.as_ref().map_or(1, |p| p.n_threads()));
        self.acts.set_pool(pool);
    }

    /// How many threads the matmuls and the attention of a pass use.
    pub fn threads(&self) -> usize {
        self.acts.pool().map_or(1, |p| p.n_threads())
    }

    /// Writes every intermediate activation of the following passes to `dir` (see
    /// [`crate::dump`]); `None` stops. `TERN_DUMP_ACTIVATIONS=dir` sets it at creation.
    pub fn dump_activations(&mut self, dir: Option<std::path::PathBuf>) {
        self.dumper = dir.map(Dumper::new);
    }
}
