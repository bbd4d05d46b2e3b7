//! [`Runtime`]: the model manager's API — load on demand within the budget, evict the
//! least recently used idle model when a load needs room, route requests to each
//! model's scheduler.
//!
//! Budget decisions (`plan`) are made under the state lock, on footprint estimates
//! computed from the GGUF header before any load: a load starts only when its estimate
//! fits beside every model that is loaded, loading or still unloading. When it does not
//! fit, idle unpinned models are evicted oldest first — but only when that frees enough;
//! otherwise the request waits (up to `memory_wait`) for busy models to become idle, and
//! fails with [`RuntimeError::DoesNotFit`] naming the budget, the sizes and the holders.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tern_kernels::pool::{ThreadPool, default_threads};
use tern_sampler::{ConstrainedDecoder, SamplingParams};
use tern_tokenizer::chat::Message;
use tokio::sync::mpsc;

use crate::api::{
    Embeddings, EvictionReason, GenerateRequest, GenerationStream, ModelStats, Prompt,
};
use crate::budget::{MachineMemory, format_bytes};
use crate::config::{KeepAlive, RuntimeConfig};
use crate::error::RuntimeError;
use crate::estimate::{Footprint, RunShape, estimate_file};
use crate::lifecycle::{ChatInfo, Entry, Inner, Lease, Loaded, Phase, State, reaper};
use crate::pooling::mean_pool_normalize;
use crate::scheduler::{Counters, Job};

/// The model manager. Cheap to clone: clones share the same models.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

/// What a request must wait for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Wait {
    Load,
    Memory,
    /// The footprint is not known yet: read the file's header first.
    Estimate(std::path::PathBuf, RunShape),
}

/// The outcome of a budget check for a model that is not loaded.
enum Plan {
    Start,
    Wait,
    Never(RuntimeError),
}

/// Counts a request among those waiting for a load, for as long as it waits.
struct LoadWaiter<'a> {
    inner: &'a Inner,
    index: usize,
    /// Cleared when the count was already taken back under the caller's lock.
    armed: bool,
}

impl Drop for LoadWaiter<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = self.inner.lock();
        let entry = &mut state.entries[self.index];
        entry.waiting_for_load = entry.waiting_for_load.saturating_sub(1);
    }
}

impl Runtime {
    /// A runtime over `config`'s models. Starts loading the preload list in the
    /// background. Must not be called inside a single-threaded async context that
    /// cannot spawn threads (it spawns the keep-alive thread).
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let machine = MachineMemory::read();
        let budget = match (config.memory_budget, machine) {
            (budget, Some(machine)) => machine.resolve(budget),
            (Some(crate::Budget::Bytes(b)), None) => b,
            (_, None) => {
                return Err(RuntimeError::BadRequest(
                    "cannot read this machine's memory (/proc/meminfo): set memory_budget in bytes"
                        .into(),
                ));
            }
        };
        tracing::info!(budget, "memory budget {}", format_bytes(budget));
        // 0: `TERN_THREADS` when set (as `tern run` reads it), else the physical cores.
        let from_env = || std::env::var("TERN_THREADS").ok()?.trim().parse().ok();
        let threads = match config.threads {
            0 => from_env()
                .filter(|&n: &usize| n > 0)
                .unwrap_or_else(default_threads),
            n => n,
        };
        let pool = ThreadPool::shared(threads).map_err(|e| {
            RuntimeError::BadRequest(format!("cannot start {threads} compute threads: {e}"))
        })?;
        tracing::info!(threads, "compute threads");
        // Every footprint up front, one model at a time: reading a header builds its
        // whole vocabulary in memory for a moment, better before any model is loaded
        // than beside one. A file that cannot be read is reported when it is asked for.
        let estimates: Vec<Option<Footprint>> = config
            .models
            .iter()
            .map(|m| match estimate_file(&m.path, RunShape::of(m)) {
                Ok(footprint) => Some(footprint),
                Err(e) => {
                    tracing::warn!(model = %m.name, error = %e, "no footprint estimate");
                    None
                }
            })
            .collect();
        let entries = config
            .models
            .iter()
            .zip(estimates)
            .map(|(m, estimate)| Entry {
                config: m.clone(),
                estimate,
                chat: None,
                phase: Phase::Unloaded,
                in_flight: 0,
                waiting_for_load: 0,
                keep_alive: KeepAlive::Forever,
                expires_at: None,
                last_used: None,
                stats: ModelStats::default(),
                counters: Arc::new(Counters::default()),
                load_attempt: 0,
                failed: None,
            })
            .collect();
        let inner = Arc::new(Inner {
            budget,
            state: Mutex::new(State {
                entries,
                shutting_down: false,
            }),
            reaper_wake: Condvar::new(),
            changed: tokio::sync::Notify::new(),
            load_lock: Mutex::new(()),
            pool,
            config,
        });
        {
            let mut state = inner.lock();
            for entry in &mut state.entries {
                entry.keep_alive = inner.initial_keep_alive(&entry.config);
            }
        }
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("tern-keep-alive".into())
            .spawn(move || reaper(weak))
            .map_err(|e| {
                RuntimeError::Engine(format!("cannot start the keep-alive thread: {e}"))
            })?;
        let runtime = Runtime { inner };
        for name in runtime.inner.config.preload.clone() {
            runtime.preload(&name)?;
        }
        Ok(runtime)
    }

    /// Starts loading `name` now if it fits the budget without evicting anything.
    fn preload(&self, name: &str) -> Result<(), RuntimeError> {
        let index = self.resolve(name)?;
        let mut state = self.inner.lock();
        let footprint = match state.entries[index].estimate {
            Some(footprint) => footprint,
            None => {
                let entry = &self.inner.config.models[index];
                estimate_file(&entry.path, RunShape::of(entry))?
            }
        };
        state.entries[index].estimate = Some(footprint);
        if !matches!(state.entries[index].phase, Phase::Unloaded) {
            return Ok(());
        }
        let reserved = Inner::reserved(&state);
        if reserved + footprint.total() > self.inner.budget {
            tracing::warn!(
                model = name,
                "not preloading {name}: it needs {} and {} of the {} budget is taken",
                format_bytes(footprint.total()),
                format_bytes(reserved),
                format_bytes(self.inner.budget)
            );
            return Ok(());
        }
        self.inner.start_load(&mut state, index, footprint);
        Ok(())
    }

    /// The index of the model `name` answers to.
    fn resolve(&self, name: &str) -> Result<usize, RuntimeError> {
        self.inner
            .config
            .models
            .iter()
            .position(|m| m.answers_to(name))
            .ok_or_else(|| RuntimeError::UnknownModel(name.to_string()))
    }

    /// The memory budget in bytes.
    pub fn budget(&self) -> u64 {
        self.inner.budget
    }

    /// The model's configured sampling defaults, for a request to start from.
    pub fn sampling_defaults(&self, model: &str) -> Result<SamplingParams, RuntimeError> {
        let index = self.resolve(model)?;
        Ok(self.inner.config.models[index].sampling.params())
    }

    /// Starts a generation: loads the model if needed (waiting for memory or for a load
    /// in progress), tokenizes the prompt, and queues the request.
    pub async fn generate(&self, req: GenerateRequest) -> Result<GenerationStream, RuntimeError> {
        let submitted = Instant::now();
        let deadline = req.timeout.map(|t| submitted + t);
        req.params
            .validate()
            .map_err(|e| RuntimeError::BadRequest(e.to_string()))?;
        if req.max_tokens == Some(0) {
            return Err(RuntimeError::BadRequest(
                "max_tokens must be at least 1".into(),
            ));
        }
        let index = self.resolve(&req.model)?;
        let (loaded, lease) = self.acquire(index, deadline, req.keep_alive).await?;
        let entry_config = &self.inner.config.models[index];
        let prompt = match req.prompt {
            Prompt::Text(text) => loaded.tokenizer.encode(&text, true, true),
            Prompt::Chat(messages) => {
                let text = self.chat_info(index)?.render(&messages, true)?;
                loaded.tokenizer.encode(&text, true, true)
            }
            Prompt::Tokens(ids) => {
                if let Some(bad) = ids
                    .iter()
                    .find(|&&id| id as usize >= loaded.model_vocab_size)
                {
                    return Err(RuntimeError::BadRequest(format!(
                        "token id {bad} is outside the vocabulary of {}",
                        loaded.model_vocab_size
                    )));
                }
                ids
            }
        };
        if prompt.is_empty() {
            return Err(RuntimeError::BadRequest("the prompt has no token".into()));
        }
        if prompt.len() >= entry_config.ctx_size {
            return Err(RuntimeError::PromptTooLong {
                tokens: prompt.len(),
                ctx: entry_config.ctx_size,
            });
        }
        let constraint = match &req.constraint {
            None => None,
            Some(constraint) => {
                let vocab = self.vocabulary(&loaded).await?;
                Some(
                    ConstrainedDecoder::new(constraint, vocab)
                        .map_err(|e| RuntimeError::BadRequest(e.to_string()))?,
                )
            }
        };
        let (events, receiver) = mpsc::unbounded_channel();
        let prompt_tokens = prompt.len();
        let job = Job {
            prompt,
            params: req.params,
            max_tokens: req.max_tokens,
            stop: req.stop,
            constraint,
            logprobs: req.logprobs,
            ignore_eos: req.ignore_eos,
            deadline,
            submitted,
            events,
            _lease: Box::new(lease),
        };
        loaded.shared.submit(job, &entry_config.name)?;
        self.inner.lock().entries[index].stats.requests += 1;
        Ok(GenerationStream {
            events: receiver,
            prompt_tokens,
            model: entry_config.name.clone(),
        })
    }

    /// The constrained decoder's view of the vocabulary, built once per load (off the
    /// async executor: it indexes every token).
    async fn vocabulary(
        &self,
        loaded: &Arc<Loaded>,
    ) -> Result<Arc<tern_sampler::Vocabulary>, RuntimeError> {
        if let Some(vocab) = loaded.vocab.get() {
            return Ok(Arc::clone(vocab));
        }
        let tokenizer = Arc::clone(&loaded.tokenizer);
        let vocab = tokio::task::spawn_blocking(move || {
            tern_engine::session::sampler_vocabulary(&tokenizer)
        })
        .await
        .map_err(|e| RuntimeError::Engine(format!("vocabulary index: {e}")))??;
        Ok(Arc::clone(loaded.vocab.get_or_init(|| Arc::new(vocab))))
    }

    /// Waits until model `index` is ready and takes a lease on it, loading it (and
    /// evicting others) when needed.
    async fn acquire(
        &self,
        index: usize,
        deadline: Option<Instant>,
        keep_alive: Option<KeepAlive>,
    ) -> Result<(Arc<Loaded>, Lease), RuntimeError> {
        let memory_deadline = {
            let limit = Instant::now() + self.inner.config.memory_wait;
            deadline.map_or(limit, |d| d.min(limit))
        };
        let mut awaited_attempt: Option<u64> = None;
        let mut load_waiter: Option<LoadWaiter<'_>> = None;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let mut state = self.inner.lock();
                if state.shutting_down {
                    return Err(RuntimeError::ShuttingDown);
                }
                let entry = &mut state.entries[index];
                if let (Some(attempt), Some((failed, error))) = (awaited_attempt, &entry.failed)
                    && attempt == *failed
                {
                    return Err(error.clone());
                }
                match &entry.phase {
                    Phase::Ready(loaded) => {
                        let loaded = Arc::clone(loaded);
                        if let Some(keep) = keep_alive {
                            entry.keep_alive = keep;
                        }
                        if let Some(mut waiter) = load_waiter.take() {
                            // The lock is held: take the count back here, not in `drop`.
                            waiter.armed = false;
                            entry.waiting_for_load = entry.waiting_for_load.saturating_sub(1);
                        }
                        let lease = Lease::take(&self.inner, &mut state, index);
                        return Ok((loaded, lease));
                    }
                    Phase::Loading { .. } | Phase::Unloading { .. } => {
                        if matches!(entry.phase, Phase::Loading { .. }) {
                            awaited_attempt = Some(entry.load_attempt);
                        }
                        if load_waiter.is_none() {
                            if entry.waiting_for_load >= self.inner.config.queue_capacity {
                                let retry_after = entry
                                    .stats
                                    .load_time
                                    .unwrap_or(Duration::from_secs(2))
                                    .max(Duration::from_secs(1));
                                return Err(RuntimeError::Loading {
                                    model: entry.config.name.clone(),
                                    retry_after,
                                });
                            }
                            entry.waiting_for_load += 1;
                            load_waiter = Some(LoadWaiter {
                                inner: &self.inner,
                                index,
                                armed: true,
                            });
                        }
                        Wait::Load
                    }
                    Phase::Unloaded => {
                        match entry.estimate {
                            // Read the header off the executor, without the lock.
                            None => Wait::Estimate(
                                entry.config.path.clone(),
                                RunShape::of(&entry.config),
                            ),
                            Some(footprint) => match self.plan(&mut state, index, footprint) {
                                Plan::Start => {
                                    awaited_attempt =
                                        Some(self.inner.start_load(&mut state, index, footprint));
                                    if load_waiter.is_none() {
                                        state.entries[index].waiting_for_load += 1;
                                        load_waiter = Some(LoadWaiter {
                                            inner: &self.inner,
                                            index,
                                            armed: true,
                                        });
                                    }
                                    Wait::Load
                                }
                                Plan::Wait => Wait::Memory,
                                Plan::Never(error) => return Err(error),
                            },
                        }
                    }
                }
            };
            let limit = match wait {
                Wait::Load => deadline,
                Wait::Memory => Some(memory_deadline),
                Wait::Estimate(path, shape) => {
                    let footprint =
                        tokio::task::spawn_blocking(move || estimate_file(&path, shape))
                            .await
                            .map_err(|e| RuntimeError::Engine(format!("estimate: {e}")))??;
                    self.inner.lock().entries[index].estimate = Some(footprint);
                    continue;
                }
            };
            match limit {
                None => notified.await,
                Some(limit) => {
                    if tokio::time::timeout_at(limit.into(), notified)
                        .await
                        .is_err()
                    {
                        return Err(match wait {
                            Wait::Load | Wait::Estimate(..) => RuntimeError::Timeout,
                            Wait::Memory => {
                                let state = self.inner.lock();
                                let needed = state.entries[index].estimate.map_or(0, |f| f.total());
                                self.does_not_fit(&state, index, needed)
                            }
                        });
                    }
                }
            }
        }
    }

    /// Decides how model `index` (not loaded, `footprint` known) gets its memory; starts
    /// the evictions that make room.
    fn plan(&self, state: &mut State, index: usize, footprint: Footprint) -> Plan {
        let budget = self.inner.budget;
        let needed = footprint.total();
        let name = state.entries[index].config.name.clone();
        if needed > budget {
            tracing::warn!(model = %name, needed, budget, "refusing {name}: needs {} but the budget is {}", format_bytes(needed), format_bytes(budget));
            return Plan::Never(RuntimeError::DoesNotFit {
                model: name,
                budget,
                needed,
                held_by: Vec::new(),
            });
        }
        let reserved = Inner::reserved(state);
        if reserved + needed <= budget {
            tracing::info!(
                model = %name, needed, reserved, budget,
                "loading {name}: needs {}, {} of the {} budget taken",
                format_bytes(needed), format_bytes(reserved), format_bytes(budget)
            );
            return Plan::Start;
        }
        let unloading: u64 = state
            .entries
            .iter()
            .filter(|e| matches!(e.phase, Phase::Unloading { .. }))
            .map(|e| e.phase.reserved())
            .sum();
        // What is free once the unloads under way finish.
        let mut free = budget.saturating_sub(reserved.saturating_sub(unloading));
        if free >= needed {
            return Plan::Wait;
        }
        let mut idle: Vec<(Option<Instant>, usize, u64)> = state
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                matches!(e.phase, Phase::Ready(_)) && e.in_flight == 0 && !e.config.pin
            })
            .map(|(i, e)| (e.last_used, i, e.phase.reserved()))
            .collect();
        idle.sort();
        let mut victims = Vec::new();
        for &(_, i, bytes) in &idle {
            if free >= needed {
                break;
            }
            victims.push(i);
            free += bytes;
        }
        if free >= needed {
            for i in victims {
                self.inner.start_unload(
                    state,
                    i,
                    EvictionReason::Lru {
                        for_model: name.clone(),
                    },
                    false,
                );
            }
            return Plan::Wait;
        }
        // Memory busy models hold comes back when their requests end.
        let busy: u64 = state
            .entries
            .iter()
            .filter(|e| {
                !e.config.pin && (e.in_flight > 0 || matches!(e.phase, Phase::Loading { .. }))
            })
            .map(|e| e.phase.reserved())
            .sum();
        if free + busy >= needed {
            tracing::info!(
                model = %name, needed, reserved, budget,
                "{name} waits for memory: needs {}, {} of the {} budget held by models serving requests",
                format_bytes(needed), format_bytes(reserved), format_bytes(budget)
            );
            return Plan::Wait;
        }
        Plan::Never(self.does_not_fit(state, index, needed))
    }

    fn does_not_fit(&self, state: &State, index: usize, needed: u64) -> RuntimeError {
        let held_by = state
            .entries
            .iter()
            .filter(|e| !matches!(e.phase, Phase::Unloaded))
            .map(|e| (e.config.name.clone(), e.phase.reserved()))
            .collect();
        let error = RuntimeError::DoesNotFit {
            model: state.entries[index].config.name.clone(),
            budget: self.inner.budget,
            needed,
            held_by,
        };
        tracing::warn!(error = %error, "load refused");
        error
    }

    /// Embeddings: the mean of the final hidden states of each input's tokens,
    /// L2-normalised (see [`crate::pooling`]).
    pub async fn embed(
        &self,
        model: &str,
        inputs: Vec<String>,
    ) -> Result<Embeddings, RuntimeError> {
        let index = self.resolve(model)?;
        if inputs.is_empty() {
            return Err(RuntimeError::BadRequest("no input to embed".into()));
        }
        let (loaded, lease) = self.acquire(index, None, None).await?;
        let ctx = self.inner.config.models[index].ctx_size;
        // Tokenized as llama-server tokenizes embedding inputs: special tokens added
        // (BOS where the model wants it) and special-token text parsed.
        let mut prompts = Vec::with_capacity(inputs.len());
        for (i, text) in inputs.iter().enumerate() {
            let tokens = loaded.tokenizer.encode(text, true, true);
            if tokens.is_empty() {
                return Err(RuntimeError::BadRequest(format!(
                    "input {i} has no token to embed"
                )));
            }
            if tokens.len() > ctx {
                return Err(RuntimeError::PromptTooLong {
                    tokens: tokens.len(),
                    ctx,
                });
            }
            prompts.push(tokens);
        }
        let pool = self.inner.pool.clone();
        let run = move || {
            let _lease = lease;
            let model = loaded
                .model
                .upgrade()
                .ok_or_else(|| RuntimeError::Engine("the model was unloaded".into()))?;
            let width = model.config().embedding_length;
            let mut vectors = Vec::with_capacity(prompts.len());
            for tokens in &prompts {
                let hidden = model.final_hidden_states(tokens, pool.clone())?;
                vectors.push(mean_pool_normalize(&hidden, width));
            }
            let prompt_tokens = prompts.iter().map(Vec::len).sum();
            Ok(Embeddings {
                vectors,
                prompt_tokens,
            })
        };
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| RuntimeError::Engine(format!("embedding task failed: {e}")))?
    }

    /// Unloads `model` as soon as no request uses it, and waits until its memory is
    /// freed. A model that is not loaded is fine.
    pub async fn unload(&self, model: &str) -> Result<(), RuntimeError> {
        let index = self.resolve(model)?;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.inner.lock();
                let entry = &mut state.entries[index];
                match entry.phase {
                    Phase::Unloaded => return Ok(()),
                    Phase::Ready(_) if entry.in_flight == 0 => {
                        self.inner.start_unload(
                            &mut state,
                            index,
                            EvictionReason::Requested,
                            false,
                        );
                    }
                    // Busy: unload when the last request ends.
                    Phase::Ready(_) => entry.keep_alive = KeepAlive::For(Duration::ZERO),
                    _ => {}
                }
            }
            notified.await;
        }
    }

    fn chat_info(&self, index: usize) -> Result<Arc<ChatInfo>, RuntimeError> {
        if let Some(chat) = &self.inner.lock().entries[index].chat {
            return Ok(Arc::clone(chat));
        }
        // Not loaded yet: read the template from the file's header.
        let path = &self.inner.config.models[index].path;
        let file = tern_gguf::GgufFile::open(path)
            .map_err(|e| RuntimeError::Engine(format!("cannot read {}: {e}", path.display())))?;
        let tokenizer = tern_tokenizer::Tokenizer::from_gguf(file.metadata())
            .map_err(|e| RuntimeError::Engine(format!("{}: tokenizer: {e}", path.display())))?;
        let chat = Arc::new(ChatInfo::new(file.metadata(), &tokenizer));
        let mut state = self.inner.lock();
        Ok(Arc::clone(state.entries[index].chat.get_or_insert(chat)))
    }

    /// The model's chat template source (the ChatML fallback when it has none).
    pub fn chat_template(&self, model: &str) -> Result<String, RuntimeError> {
        let chat = self.chat_info(self.resolve(model)?)?;
        match &chat.template {
            Ok(t) => Ok(t.source().to_string()),
            Err(e) => Err(RuntimeError::BadRequest(format!(
                "the model's chat template does not compile: {e}"
            ))),
        }
    }

    /// The prompt text for `messages` with the model's template.
    pub fn render_chat(
        &self,
        model: &str,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, RuntimeError> {
        self.chat_info(self.resolve(model)?)?
            .render(messages, add_generation_prompt)
    }

    /// Stops accepting requests, lets those in flight finish (up to `timeout`), then
    /// cancels what is left and unloads every model.
    pub async fn shutdown(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.inner.lock().shutting_down = true;
        self.inner.notify();
        // Finish in-flight work, then stop every model (cancelling stragglers).
        let mut cancelled = false;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.inner.lock();
                let busy = state.entries.iter().any(|e| e.in_flight > 0);
                if !busy || cancelled {
                    for i in 0..state.entries.len() {
                        let cancel = state.entries[i].in_flight > 0;
                        self.inner
                            .start_unload(&mut state, i, EvictionReason::Shutdown, cancel);
                    }
                    if state
                        .entries
                        .iter()
                        .all(|e| matches!(e.phase, Phase::Unloaded))
                    {
                        return;
                    }
                }
            }
            let limit = if cancelled {
                deadline + Duration::from_secs(30)
            } else {
                deadline
            };
            if tokio::time::timeout_at(limit.into(), notified)
                .await
                .is_err()
            {
                if cancelled {
                    tracing::warn!("shutdown: models still unloading after the grace period");
                    return;
                }
                cancelled = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Prompt;

    /// The server holds these futures across `.await` in multi-threaded handlers.
    #[test]
    fn futures_are_send_and_the_runtime_is_shareable() {
        fn send<T: Send>(_: T) {}
        fn shared<T: Send + Sync + Clone>(_: &T) {}
        let config = RuntimeConfig {
            memory_budget: Some(crate::Budget::Bytes(1 << 20)),
            ..RuntimeConfig::default()
        };
        let runtime = Runtime::new(config).unwrap();
        shared(&runtime);
        send(runtime.generate(GenerateRequest::new("m", Prompt::Text("hi".into()))));
        send(runtime.embed("m", vec!["hi".into()]));
        send(runtime.unload("m"));
        send(runtime.shutdown(Duration::ZERO));
        assert_eq!(runtime.budget(), 1 << 20);
        assert!(runtime.models().is_empty() && runtime.loaded().is_empty());
        assert_eq!(
            runtime.sampling_defaults("m"),
            Err(RuntimeError::UnknownModel("m".into()))
        );
    }
}
