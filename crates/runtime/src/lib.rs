//! tern-runtime: several models in one process under a memory budget, and the
//! continuous-batching scheduler that serves each of them.
//!
//! - [`Runtime`]: the model manager. Models load on demand, each footprint estimated
//!   from its GGUF header ([`estimate`]) and checked against the budget ([`budget`]);
//!   least-recently-used idle models are evicted to make room, never one serving a
//!   request (leases) nor a pinned one; idle models unload after their keep-alive.
//! - The scheduler (`scheduler`): one OS thread per loaded model runs the batching loop —
//!   `parallel` sequence slots, one forward pass per step over every active sequence
//!   (one decode token each plus bounded prompt chunks, round-robin), new requests
//!   joining between steps, a bounded queue, cancellation when a stream is dropped, and
//!   a prefix cache that reuses each slot's keys and values for a new prompt that starts
//!   with the same tokens.
//! - [`RuntimeConfig`]: the TOML configuration ([`config`]).
//!
//! Generation never runs on the async executor: async calls only wait for a load, a slot
//! or the next event.

mod api;
pub mod budget;
pub mod config;
mod error;
pub mod estimate;
mod lifecycle;
pub mod pooling;
mod runtime;
mod scheduler;
mod status;

pub use api::{
    Embeddings, Event, Eviction, EvictionReason, FinishReason, GenerateRequest, GenerationStream,
    LoadState, LoadedStatus, ModelInfo, ModelMetrics, ModelStats, Prompt, RuntimeMetrics, Timings,
    Usage,
};
pub use budget::Budget;
pub use config::{ConfigError, KeepAlive, KvType, ModelEntry, RuntimeConfig, SamplingDefaults};
pub use error::RuntimeError;
pub use estimate::Footprint;
pub use runtime::Runtime;
pub use tern_sampler::{Constraint, SamplingParams, TokenLogprob};
pub use tern_tokenizer::chat::Message;
