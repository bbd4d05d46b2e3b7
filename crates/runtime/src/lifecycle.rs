//! A model's life in the runtime: the shared state, the load on the model's own thread,
//! leases that keep a busy model from being evicted, unloading, and the keep-alive
//! reaper.
//!
//! All state sits behind one mutex held only for bookkeeping (never across a load or a
//! forward pass). Every change notifies both the async waiters (`changed`) and the
//! reaper thread (`reaper_wake`).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use tern_engine::{Model, ModelOptions};
use tern_kernels::pool::ThreadPool;
use tern_sampler::Vocabulary;
use tern_tokenizer::Tokenizer;
use tern_tokenizer::chat::{ChatTemplate, Message};
use tokio::sync::Notify;

use crate::api::{Eviction, EvictionReason, ModelStats};
use crate::budget::{format_bytes, process_rss};
use crate::config::{KeepAlive, ModelEntry, RuntimeConfig};
use crate::error::RuntimeError;
use crate::estimate::Footprint;
use crate::scheduler::{Counters, Worker, WorkerShared};

/// Evictions remembered per model in its statistics.
const EVICTIONS_KEPT: usize = 32;

/// The runtime's shared core.
#[derive(Debug)]
pub(crate) struct Inner {
    pub config: RuntimeConfig,
    /// The budget in bytes.
    pub budget: u64,
    pub state: Mutex<State>,
    /// Wakes the reaper (keep-alive expiries changed, shutdown).
    pub reaper_wake: Condvar,
    /// Wakes async waiters (a load finished, memory freed, a lease ended).
    pub changed: Notify,
    /// Loads run one at a time, so the resident memory a load adds can be measured.
    pub load_lock: Mutex<()>,
    /// The compute threads every model's forward passes are split over (`None`: one
    /// thread). One pool for the process, so two models serving at once take turns per
    /// matmul instead of oversubscribing the cores.
    pub pool: Option<Arc<ThreadPool>>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub entries: Vec<Entry>,
    pub shutting_down: bool,
}

/// One configured model and what the runtime knows of it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub config: ModelEntry,
    pub estimate: Option<Footprint>,
    pub chat: Option<Arc<ChatInfo>>,
    pub phase: Phase,
    /// Requests holding a lease (queued or generating).
    pub in_flight: usize,
    /// Requests waiting for the current load.
    pub waiting_for_load: usize,
    /// The keep-alive in force: the last request's, else the entry's, else the default.
    pub keep_alive: KeepAlive,
    pub expires_at: Option<Instant>,
    /// Last time a request ended or began (least recently used first).
    pub last_used: Option<Instant>,
    pub stats: ModelStats,
    pub counters: Arc<Counters>,
    /// Incremented at every load start; a failed load leaves its error under its number.
    pub load_attempt: u64,
    pub failed: Option<(u64, RuntimeError)>,
}

/// Where a model is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    Unloaded,
    Loading { reserved: u64 },
    Ready(Arc<Loaded>),
    Unloading { reserved: u64 },
}

impl Phase {
    /// Bytes of the budget this phase holds.
    pub fn reserved(&self) -> u64 {
        match self {
            Phase::Unloaded => 0,
            Phase::Loading { reserved } | Phase::Unloading { reserved } => *reserved,
            Phase::Ready(loaded) => loaded.footprint.total(),
        }
    }
}

/// A model that is serving: what requests need outside its thread.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub shared: Arc<WorkerShared>,
    /// The model the worker serves, for one-off passes beside its loop (embeddings).
    /// Weak, so that the model's memory goes when its worker ends; a lease keeps the
    /// worker running.
    pub model: Weak<Model>,
    pub tokenizer: Arc<Tokenizer>,
    pub vocab: OnceLock<Arc<Vocabulary>>,
    pub model_vocab_size: usize,
    pub footprint: Footprint,
    pub measured: Option<u64>,
}

/// A model's chat template and what rendering needs to know about its BOS token.
#[derive(Debug)]
pub(crate) struct ChatInfo {
    pub template: Result<ChatTemplate, String>,
    add_bos: bool,
    bos_text: String,
}

impl ChatInfo {
    pub fn new(meta: &tern_gguf::Metadata, tokenizer: &Tokenizer) -> ChatInfo {
        ChatInfo {
            template: ChatTemplate::from_gguf(meta, tokenizer).map_err(|e| e.to_string()),
            add_bos: tokenizer.add_bos(),
            bos_text: tokenizer
                .bos()
                .map(|b| tokenizer.token_text(b).to_string())
                .unwrap_or_default(),
        }
    }

    /// Renders `messages`. When the model adds BOS itself, a BOS text the template
    /// writes at the start is dropped, as llama.cpp does (and tern-engine's
    /// `session::chat_prompt`), so the prompt does not start with two BOS tokens.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, RuntimeError> {
        let template = self.template.as_ref().map_err(|e| {
            RuntimeError::BadRequest(format!("the model's chat template does not compile: {e}"))
        })?;
        let text = template
            .render(messages, add_generation_prompt, &serde_json::Map::new())
            .map_err(|e| {
                RuntimeError::BadRequest(format!("cannot render the chat template: {e}"))
            })?;
        if self.add_bos
            && !self.bos_text.is_empty()
            && let Some(rest) = text.strip_prefix(&self.bos_text)
        {
            return Ok(rest.to_string());
        }
        Ok(text)
    }
}

/// Dropping the last `Runtime` without `shutdown` still ends every model thread (and
/// frees its memory): running sequences are cancelled.
impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for entry in &state.entries {
            if let Phase::Ready(loaded) = &entry.phase {
                loaded.shared.stop(true);
            }
        }
    }
}

impl Inner {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn notify(&self) {
        self.changed.notify_waiters();
        self.reaper_wake.notify_all();
    }

    /// The keep-alive an entry starts with.
    pub fn initial_keep_alive(&self, entry: &ModelEntry) -> KeepAlive {
        entry
            .keep_alive
            .unwrap_or(if self.config.default_keep_alive == Duration::MAX {
                KeepAlive::Forever
            } else {
                KeepAlive::For(self.config.default_keep_alive)
            })
    }

    /// Bytes held by every model (loading, ready, unloading).
    pub fn reserved(state: &State) -> u64 {
        state.entries.iter().map(|e| e.phase.reserved()).sum()
    }

    /// Starts unloading model `index` if it is ready; its memory counts against the
    /// budget until its thread has freed everything.
    pub fn start_unload(
        &self,
        state: &mut State,
        index: usize,
        reason: EvictionReason,
        cancel: bool,
    ) {
        let budget = self.budget;
        let reserved_total = Inner::reserved(state);
        let entry = &mut state.entries[index];
        let Phase::Ready(loaded) = &entry.phase else {
            return;
        };
        let reserved = loaded.footprint.total();
        loaded.shared.stop(cancel);
        tracing::info!(
            model = %entry.config.name,
            bytes = reserved,
            reason = %reason,
            budget,
            reserved_total,
            "unloading {} ({}): {reason}; {} of the {} budget reserved before",
            entry.config.name,
            format_bytes(reserved),
            format_bytes(reserved_total),
            format_bytes(budget),
        );
        entry.phase = Phase::Unloading { reserved };
        entry.expires_at = None;
        entry.stats.eviction_count += 1;
        entry.stats.evictions.push(Eviction {
            at: SystemTime::now(),
            reason,
        });
        if entry.stats.evictions.len() > EVICTIONS_KEPT {
            entry.stats.evictions.remove(0);
        }
        self.notify();
    }

    /// Starts loading model `index` on a new thread, which then serves it.
    pub fn start_load(
        self: &Arc<Self>,
        state: &mut State,
        index: usize,
        footprint: Footprint,
    ) -> u64 {
        let entry = &mut state.entries[index];
        entry.load_attempt += 1;
        entry.phase = Phase::Loading {
            reserved: footprint.total(),
        };
        let attempt = entry.load_attempt;
        let config = entry.config.clone();
        let counters = Arc::clone(&entry.counters);
        let weak = Arc::downgrade(self);
        // A thread name must not hold NUL (std panics on it); config names are user text.
        let name = format!("tern-model-{}", config.name.replace('\0', ""));
        let spawned = std::thread::Builder::new()
            .name(name)
            .spawn(move || model_thread(weak, index, config, footprint, counters, attempt));
        if let Err(e) = spawned {
            let entry = &mut state.entries[index];
            entry.phase = Phase::Unloaded;
            entry.failed = Some((
                attempt,
                RuntimeError::Engine(format!("cannot start a model thread: {e}")),
            ));
        }
        self.notify();
        attempt
    }

    /// A request's lease ended.
    fn release(&self, index: usize) {
        let mut state = self.lock();
        let entry = &mut state.entries[index];
        entry.in_flight = entry.in_flight.saturating_sub(1);
        entry.last_used = Some(Instant::now());
        entry.stats.last_used = Some(SystemTime::now());
        if entry.in_flight == 0 && matches!(entry.phase, Phase::Ready(_)) && !entry.config.pin {
            match entry.keep_alive {
                KeepAlive::For(d) if d.is_zero() => {
                    self.start_unload(&mut state, index, EvictionReason::Requested, false);
                }
                KeepAlive::For(d) => entry.expires_at = Instant::now().checked_add(d),
                KeepAlive::Forever => entry.expires_at = None,
            }
        }
        drop(state);
        self.notify();
    }
}

/// Keeps a model from being evicted while a request uses it.
#[derive(Debug)]
pub(crate) struct Lease {
    inner: Arc<Inner>,
    index: usize,
}

impl Lease {
    /// Takes a lease on `index`; the caller holds the state lock and has checked the
    /// model is ready.
    pub fn take(inner: &Arc<Inner>, state: &mut State, index: usize) -> Lease {
        let entry = &mut state.entries[index];
        entry.in_flight += 1;
        entry.expires_at = None;
        entry.last_used = Some(Instant::now());
        entry.stats.last_used = Some(SystemTime::now());
        Lease {
            inner: Arc::clone(inner),
            index,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.inner.release(self.index);
    }
}

/// The life of one load: build everything (one load at a time), report, serve, free.
fn model_thread(
    weak: Weak<Inner>,
    index: usize,
    config: ModelEntry,
    footprint: Footprint,
    counters: Arc<Counters>,
    attempt: u64,
) {
    let Some(inner) = weak.upgrade() else { return };
    let capacity = inner.config.queue_capacity;
    let loaded = {
        let _one_at_a_time = inner.load_lock.lock().unwrap_or_else(|e| e.into_inner());
        let rss_before = process_rss();
        let started = Instant::now();
        let result = load(&config, capacity, counters, inner.pool.clone());
        let measured = match (rss_before, process_rss()) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        result.map(|(worker, chat)| (worker, chat, measured, started.elapsed()))
    };
    let mut state = inner.lock();
    let (worker, chat, measured, load_time) = match loaded {
        Ok(parts) => parts,
        Err(error) => {
            tracing::error!(model = %config.name, error = %error, "load failed");
            let entry = &mut state.entries[index];
            entry.phase = Phase::Unloaded;
            entry.failed = Some((attempt, error));
            drop(state);
            inner.notify();
            return;
        }
    };
    let loaded = Arc::new(Loaded {
        shared: Arc::clone(&worker.shared),
        model: Arc::downgrade(&worker.model),
        tokenizer: Arc::clone(&worker.tokenizer),
        vocab: OnceLock::new(),
        model_vocab_size: worker.model.vocab_size(),
        footprint,
        measured,
    });
    let shutting_down = state.shutting_down;
    let keep_alive_default = inner.initial_keep_alive(&config);
    let entry = &mut state.entries[index];
    entry.chat.get_or_insert(chat);
    if shutting_down {
        entry.phase = Phase::Unloaded;
        drop(state);
        drop(worker);
        inner.notify();
        return;
    }
    entry.phase = Phase::Ready(loaded);
    entry.stats.loads += 1;
    entry.stats.load_time = Some(load_time);
    if entry.in_flight == 0 && entry.waiting_for_load == 0 && !config.pin {
        // Preloaded (or its requests gave up): idle from now on.
        let keep = if entry.stats.requests == 0 {
            keep_alive_default
        } else {
            entry.keep_alive
        };
        entry.expires_at = match keep {
            KeepAlive::For(d) => Instant::now().checked_add(d),
            KeepAlive::Forever => None,
        };
    }
    tracing::info!(
        model = %config.name,
        estimate = footprint.total(),
        measured = measured.unwrap_or(0),
        load_ms = load_time.as_millis() as u64,
        "loaded {}: estimated {} (weights {}, KV {}, compute {}, other {}), resident memory grew by {}",
        config.name,
        format_bytes(footprint.total()),
        format_bytes(footprint.weights),
        format_bytes(footprint.kv_cache),
        format_bytes(footprint.compute),
        format_bytes(footprint.other),
        measured.map_or("?".to_string(), format_bytes),
    );
    drop(state);
    inner.notify();
    // The thread must not keep the runtime alive while it serves.
    drop(inner);

    worker.run();

    // Everything the model held is freed now; only then is its memory given back to
    // the budget.
    let Some(inner) = weak.upgrade() else { return };
    let mut state = inner.lock();
    state.entries[index].phase = Phase::Unloaded;
    let reserved = Inner::reserved(&state);
    drop(state);
    tracing::info!(
        model = %config.name,
        rss = process_rss().unwrap_or(0),
        "unloaded {}; {} of the budget still reserved",
        config.name,
        format_bytes(reserved)
    );
    inner.notify();
}

/// Maps the model, builds its tokenizer and buffers, and runs one warm-up pass.
fn load(
    config: &ModelEntry,
    capacity: usize,
    counters: Arc<Counters>,
    pool: Option<Arc<ThreadPool>>,
) -> Result<(Worker, Arc<ChatInfo>), RuntimeError> {
    let options = ModelOptions {
        kv_type: config.kv_type.engine(),
        ..ModelOptions::default()
    };
    let model = Model::load(&config.path, options)
        .map_err(|e| RuntimeError::Engine(format!("{}: {e}", config.path.display())))?;
    let tokenizer = Tokenizer::from_gguf(model.file().metadata())
        .map_err(|e| RuntimeError::Engine(format!("{}: tokenizer: {e}", config.path.display())))?;
    if tokenizer.vocab_size() > model.vocab_size() {
        return Err(RuntimeError::Engine(format!(
            "{}: the tokenizer has {} tokens but the model only {} logits",
            config.path.display(),
            tokenizer.vocab_size(),
            model.vocab_size()
        )));
    }
    if config.ctx_size > model.config().context_length && model.config().context_length > 0 {
        tracing::warn!(
            model = %config.name,
            "ctx_size {} exceeds the {} positions the model was trained on",
            config.ctx_size,
            model.config().context_length
        );
    }
    let chat = Arc::new(ChatInfo::new(model.file().metadata(), &tokenizer));
    let shared = Arc::new(WorkerShared::new(capacity, config.parallel, counters));
    let mut worker = Worker::new(
        Arc::new(model),
        Arc::new(tokenizer),
        config.ctx_size,
        config.parallel,
        config.batch_size,
        shared,
    );
    worker.scratch.set_thread_pool(pool);
    worker.warm_up()?;
    Ok((worker, chat))
}

/// Unloads idle models whose keep-alive passed. Holds the runtime only while it works,
/// so dropping every `Runtime` ends it within a second.
pub(crate) fn reaper(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let mut state = inner.lock();
        if state.shutting_down {
            return;
        }
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for index in 0..state.entries.len() {
            let entry = &mut state.entries[index];
            let idle = entry.in_flight == 0
                && entry.waiting_for_load == 0
                && !entry.config.pin
                && matches!(entry.phase, Phase::Ready(_));
            // Idle without a deadline (the requests that waited for its load gave up):
            // its keep-alive starts now.
            if idle
                && entry.expires_at.is_none()
                && let KeepAlive::For(d) = entry.keep_alive
            {
                entry.expires_at = now.checked_add(d);
            }
            match entry.expires_at {
                Some(at) if idle && at <= now => {
                    inner.start_unload(&mut state, index, EvictionReason::KeepAliveExpired, false);
                }
                Some(at) if idle => next = Some(next.map_or(at, |n| n.min(at))),
                _ => {}
            }
        }
        let wait = next
            .map_or(Duration::from_secs(1), |n| n.saturating_duration_since(now))
            .min(Duration::from_secs(1));
        drop(
            inner
                .reaper_wake
                .wait_timeout(state, wait)
                .unwrap_or_else(|e| e.into_inner()),
        );
    }
}
