//! tern-engine: runs a transformer from a GGUF file.
//!
//! The pieces follow llama2.c's split: a typed [`ModelConfig`] read from metadata, the
//! weights (borrowed from the memory-mapped file, still quantized), a [`KvCache`] shared
//! by the sequences being served, and preallocated [`Scratch`] buffers, so a forward pass
//! allocates nothing. One [`Model::forward`] call takes a [`Batch`] of tokens from any
//! number of sequences; single-prompt use is the special case of one sequence, wrapped
//! by [`Session`] (prompt feeding, sampling, streaming) for the CLI.
//!
//! The arithmetic follows llama.cpp (the reference the goldens come from) step by step:
//! activations quantized per weight type, F16 keys and values, and its flash-attention
//! rounding (see [`attention`]). Set `TERN_DUMP_ACTIVATIONS=DIR` to dump every
//! intermediate tensor ([`dump`]).

pub mod attention;
mod batch;
mod buffer;
pub mod config;
pub mod dump;
mod error;
mod forward;
mod hidden;
mod kv_cache;
mod logits;
mod model;
mod ops;
pub mod perplexity;
mod scratch;
pub mod session;
pub mod weights;

pub use batch::Batch;
pub use config::{Architecture, ModelConfig};
pub use error::{Error, ErrorKind, Result};
pub use kv_cache::{KvCache, KvCacheSpec, KvLayerSpec, KvType};
pub use logits::{Logits, OutputKind};
pub use model::{Model, ModelOptions, Mutation};
pub use perplexity::{PerplexityOptions, PerplexityReport, perplexity};
pub use scratch::Scratch;
pub use session::{FinishReason, GenerateOptions, Generation, Session, SessionOptions};

/// A token id, an index into the vocabulary.
pub type TokenId = u32;
