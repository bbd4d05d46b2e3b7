//! The types of the runtime's API: requests, the event stream a generation produces,
//! and the status and metrics reports.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tern_sampler::{Constraint, SamplingParams, TokenLogprob};
use tern_tokenizer::chat::Message;
use tokio::sync::mpsc;

use crate::config::KeepAlive;
use crate::error::RuntimeError;
use crate::estimate::Footprint;

/// What to generate from.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// Raw text: tokenized with BOS when the model adds one, special-token text parsed.
    Text(String),
    /// A conversation, rendered with the model's chat template (generation prompt added).
    Chat(Vec<Message>),
    /// Token ids, used as they are.
    Tokens(Vec<u32>),
}

/// One generation request.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// Model name or alias.
    pub model: String,
    pub prompt: Prompt,
    /// Sampling; start from [`crate::Runtime::sampling_defaults`] to honour the model's
    /// configured defaults.
    pub params: SamplingParams,
    /// Most tokens to generate (`None`: until the context is full).
    pub max_tokens: Option<usize>,
    /// Texts that end the answer (not included in it).
    pub stop: Vec<String>,
    /// Output must be JSON / match a JSON Schema.
    pub constraint: Option<Constraint>,
    /// Report the log-probability of each token and this many alternatives.
    pub logprobs: Option<usize>,
    /// How long the model stays loaded after this request (Ollama's meaning).
    pub keep_alive: Option<KeepAlive>,
    /// Never stop on an end-of-generation token.
    pub ignore_eos: bool,
    /// Give up (queue wait included) after this long.
    pub timeout: Option<Duration>,
}

impl GenerateRequest {
    /// A request with default sampling and no limits.
    pub fn new(model: impl Into<String>, prompt: Prompt) -> Self {
        GenerateRequest {
            model: model.into(),
            prompt,
            params: SamplingParams::default(),
            max_tokens: None,
            stop: Vec::new(),
            constraint: None,
            logprobs: None,
            keep_alive: None,
            ignore_eos: false,
            timeout: None,
        }
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
    /// The stream was dropped, or the runtime shut down.
    Cancelled,
}

impl FinishReason {
    /// OpenAI's name.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// Token counts of a finished generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose keys and values came from the prefix cache (not computed).
    pub cached_tokens: usize,
}

/// Where a generation's time went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// Waiting for a sequence slot (after the model was loaded).
    pub queued: Duration,
    /// Computing the prompt.
    pub prompt: Duration,
    /// From submission to the first generated token.
    pub ttft: Duration,
    /// From submission to the end.
    pub total: Duration,
}

/// What a generation stream yields.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// One generated token. `text` is the text this token completes: possibly empty
    /// while it may still begin a stop string or a multi-byte character, and possibly
    /// longer than the token when held-back text is released. When a generation ends on
    /// an end-of-generation token while text was held back, that text comes in one last
    /// `Token` event carrying the end-of-generation id.
    Token {
        text: String,
        id: u32,
        /// Natural log-probability (when logprobs were asked for).
        logprob: Option<f32>,
        /// The most likely alternatives, best first (when logprobs were asked for).
        top_logprobs: Vec<TokenLogprob>,
    },
    /// The end; always the last event of a stream that did not fail.
    Done {
        finish_reason: FinishReason,
        usage: Usage,
        timings: Timings,
    },
    /// The generation failed (engine error, timeout); the stream ends after it.
    Error(RuntimeError),
}

/// The events of one generation, in order. Dropping it cancels the generation: its
/// sequence slot is freed before the scheduler's next step.
#[derive(Debug)]
pub struct GenerationStream {
    pub(crate) events: mpsc::UnboundedReceiver<Event>,
    pub(crate) prompt_tokens: usize,
    pub(crate) model: String,
}

impl GenerationStream {
    /// The next event; `None` after the last.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Number of prompt tokens (after templating and tokenization).
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// The model's configured name (the request may have used an alias).
    pub fn model(&self) -> &str {
        &self.model
    }
}

impl futures_core::Stream for GenerationStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

/// Embedding vectors, one per input.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// L2-normalised mean of the final hidden states, one per input.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens per input, summed.
    pub prompt_tokens: usize,
}

/// A servable model (for `/v1/models`, `/api/tags`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub aliases: Vec<String>,
    pub path: std::path::PathBuf,
    /// Size of the file in bytes (0 when it cannot be read).
    pub file_size: u64,
    /// File modification time.
    pub modified: Option<SystemTime>,
    pub ctx_size: usize,
    pub parallel: usize,
    pub pinned: bool,
    pub loaded: bool,
    /// The footprint estimate, once computed.
    pub estimate: Option<Footprint>,
}

/// Why a model was unloaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvictionReason {
    /// Made room for another model under the budget.
    Lru { for_model: String },
    /// Idle longer than its keep-alive.
    KeepAliveExpired,
    /// A request asked for keep_alive 0, or [`crate::Runtime::unload`] was called.
    Requested,
    /// The runtime shut down.
    Shutdown,
}

impl std::fmt::Display for EvictionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvictionReason::Lru { for_model } => {
                write!(f, "least recently used, to make room for {for_model}")
            }
            EvictionReason::KeepAliveExpired => f.write_str("keep_alive expired"),
            EvictionReason::Requested => f.write_str("unload requested"),
            EvictionReason::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// One unload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eviction {
    pub at: SystemTime,
    pub reason: EvictionReason,
}

/// Usage statistics of one model since the runtime started (kept across loads).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelStats {
    /// Requests accepted.
    pub requests: u64,
    /// Prompt tokens of finished requests.
    pub tokens_in: u64,
    /// Generated tokens.
    pub tokens_out: u64,
    /// Times it was loaded.
    pub loads: u64,
    /// Unloads, most recent last (the last 32).
    pub evictions: Vec<Eviction>,
    /// Total unloads (also those no longer in `evictions`).
    pub eviction_count: u64,
    pub last_used: Option<SystemTime>,
    /// Duration of the last load (file, buffers, warm-up pass).
    pub load_time: Option<Duration>,
    /// Forward passes run.
    pub forward_calls: u64,
    /// Prompt tokens taken from the prefix cache instead of being computed.
    pub prefix_reused_tokens: u64,
    /// Requests that ended because their stream was dropped.
    pub cancelled: u64,
    /// Requests refused because the queue was full.
    pub rejected_queue_full: u64,
    /// Requests that timed out.
    pub timeouts: u64,
}

/// The state of a model that holds memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadState {
    Loading,
    Ready,
    Unloading,
}

/// A model that holds memory (for `/api/ps`, `tern ps`).
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedStatus {
    pub name: String,
    pub state: LoadState,
    /// The estimate the budget counts.
    pub bytes_estimate: u64,
    /// The footprint estimate by part.
    pub footprint: Footprint,
    /// Resident memory the load added, measured after its warm-up pass (`None` while
    /// loading or when another load ran at the same time).
    pub bytes_measured: Option<u64>,
    /// When it will be unloaded if it stays idle (`None`: pinned, busy or forever).
    pub expires_at: Option<SystemTime>,
    pub pinned: bool,
    /// Requests holding a lease on it (queued or generating).
    pub in_flight: usize,
    pub ctx_size: usize,
    pub parallel: usize,
    pub stats: ModelStats,
}

/// Per-model numbers for `/metrics`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelMetrics {
    pub name: String,
    pub loaded: bool,
    pub queue_depth: usize,
    pub active_sequences: usize,
    pub bytes_estimate: u64,
    pub bytes_measured: Option<u64>,
    pub stats: ModelStats,
}

/// A snapshot of the runtime for `/metrics`.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeMetrics {
    /// Requests waiting for a slot, all models.
    pub queue_depth: usize,
    /// Sequences being served, all models.
    pub active_sequences: usize,
    /// The memory budget in bytes.
    pub budget_bytes: u64,
    /// Bytes reserved by loaded and loading models (their estimates).
    pub reserved_bytes: u64,
    /// The process's resident set, when readable.
    pub rss_bytes: Option<u64>,
    pub models: Vec<ModelMetrics>,
}
