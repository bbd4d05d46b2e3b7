//! tern-engine: runs a transformer from a GGUF file.
//!
//! The pieces follow llama2.c's split: a typed [`ModelConfig`] read from metadata, the
//! weights (borrowed from the memory-mapped file, still quantized), a [`KvCache`] shared
//! by the sequences being served, and preallocated scratch buffers, so a forward pass
//! allocates nothing. One forward call takes a [`Batch`] of tokens from any number of
//! sequences; single-prompt use is the special case of one sequence.
//!
//! The arithmetic follows llama.cpp (the reference the goldens come from) step by step:
//! activations quantized per weight type, F16 keys and values, and its flash-attention
//! rounding (see [`attention`]).

pub mod attention;
mod batch;
pub mod config;
mod error;
mod kv_cache;
mod logits;

pub use batch::Batch;
pub use config::{Architecture, ModelConfig};
pub use error::{Error, ErrorKind, Result};
pub use kv_cache::KvCache;
pub use logits::Logits;

/// A token id, an index into the vocabulary.
pub type TokenId = u32;
