//! The continuous-batching loop of one loaded model, run on its own OS thread.
//!
//! The model has `parallel` sequence slots in one [`KvCache`]. Each step:
//! 1. drops requests whose stream was dropped or whose timeout passed (their slot is free
//!    for this very step), and admits queued requests into free slots;
//! 2. builds ONE [`Batch`]: the pending token of every generating sequence, then prompt
//!    chunks of the sequences still reading their prompt, sharing what is left of
//!    `batch_size` evenly, starting from a rotating sequence so no prompt always goes
//!    first — so a long prompt advances a chunk per step and never stalls the streams;
//! 3. runs one forward pass, samples every sequence that got logits and sends its event.
//!
//! This is the design of llama.cpp's server (`tools/server/server.cpp`,
//! `update_slots`: one `llama_batch` per iteration with the sampled token of every
//! generating slot first, prompt tokens after, split into `n_batch` pieces), with the
//! prompt budget shared instead of first-come.
//!
//! Prefix cache: a slot keeps the tokens whose keys and values it holds after its
//! request ends. A new request goes to the free slot with the longest common prefix
//! (least recently used on ties), or copies a longer prefix from any slot
//! ([`KvCache::copy_prefix`]); only the rest of its prompt is computed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tern_engine::{Batch, KvCache, Logits, Model, Scratch};
use tern_sampler::{ConstrainedDecoder, Sampler, SamplingParams, StopMatcher, TokenLogprob};
use tern_tokenizer::{StreamDecoder, Tokenizer};
use tokio::sync::mpsc::UnboundedSender;

use crate::api::{Event, FinishReason, Timings, Usage};
use crate::error::RuntimeError;

/// A request ready for a slot: tokenized, its constraint compiled.
#[derive(Debug)]
pub(crate) struct Job {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub constraint: Option<ConstrainedDecoder>,
    pub logprobs: Option<usize>,
    pub ignore_eos: bool,
    pub deadline: Option<Instant>,
    /// When `generate` was called (load and queue waits count in the timings).
    pub submitted: Instant,
    pub events: UnboundedSender<Event>,
    /// Held until the job ends: the model is not evicted while it is alive.
    pub _lease: Box<dyn Send + std::fmt::Debug>,
}

/// Counters of one model, kept across its loads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub forward_calls: AtomicU64,
    pub tokens_in: AtomicU64,
    pub tokens_out: AtomicU64,
    pub prefix_reused: AtomicU64,
    pub cancelled: AtomicU64,
    pub timeouts: AtomicU64,
    pub rejected_queue_full: AtomicU64,
    /// Sequences in slots now.
    pub active: AtomicUsize,
    /// Sum and count of finished requests' durations, for a Retry-After estimate.
    pub busy_micros: AtomicU64,
    pub finished: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Set when the model unloads: the loop ends once no sequence is left; with
    /// `cancel`, sequences still running are cancelled first.
    stop: bool,
    cancel: bool,
}

/// What the runtime shares with a model's loop: its queue and counters.
#[derive(Debug)]
pub(crate) struct WorkerShared {
    queue: Mutex<Queue>,
    wake: Condvar,
    capacity: usize,
    parallel: usize,
    pub counters: Arc<Counters>,
}

impl WorkerShared {
    pub fn new(capacity: usize, parallel: usize, counters: Arc<Counters>) -> Self {
        WorkerShared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            capacity,
            parallel,
            counters,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job, or gives it back with `QueueFull` when `capacity` jobs already wait
    /// beyond the free slots.
    pub fn submit(&self, job: Job, model: &str) -> Result<(), RuntimeError> {
        let mut queue = self.lock();
        if queue.stop {
            return Err(RuntimeError::ShuttingDown);
        }
        let free_slots = self
            .parallel
            .saturating_sub(self.counters.active.load(Ordering::Relaxed));
        if queue.jobs.len() >= self.capacity + free_slots {
            self.counters
                .rejected_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return Err(RuntimeError::QueueFull {
                model: model.to_string(),
                capacity: self.capacity,
                retry_after: self.retry_after(queue.jobs.len()),
            });
        }
        queue.jobs.push_back(job);
        drop(queue);
        self.wake.notify_all();
        Ok(())
    }

    /// A guess of when a slot frees: the mean request duration times the queue ahead,
    /// shared by the slots; between 1 and 60 seconds.
    fn retry_after(&self, waiting: usize) -> Duration {
        let finished = self.counters.finished.load(Ordering::Relaxed).max(1);
        let mean = self.counters.busy_micros.load(Ordering::Relaxed) / finished;
        let micros = mean.saturating_mul(waiting as u64 + 1) / self.parallel.max(1) as u64;
        Duration::from_micros(micros).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Requests waiting for a slot.
    pub fn queue_depth(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Ends the loop once idle; with `cancel`, running sequences are cancelled.
    pub fn stop(&self, cancel: bool) {
        let mut queue = self.lock();
        queue.stop = true;
        queue.cancel |= cancel;
        drop(queue);
        self.wake.notify_all();
    }
}

/// One sequence being served.
#[derive(Debug)]
struct Sequence {
    job: Job,
    sampler: Sampler,
    decoder: Option<StreamDecoder<Arc<Tokenizer>>>,
    stops: StopMatcher,
    /// Prompt tokens whose keys and values are in the slot.
    fed: usize,
    /// Prompt tokens taken from the prefix cache.
    cached: usize,
    /// The last sampled token, fed at the next step.
    pending: Option<u32>,
    generated: usize,
    admitted: Instant,
    prompt_done: Option<Instant>,
    first_token: Option<Instant>,
}

#[derive(Debug, Default)]
struct Slot {
    /// The tokens whose keys and values this slot holds, in order.
    tokens: Vec<u32>,
    sequence: Option<Sequence>,
    /// Step of the last use, for least-recently-used choice among free slots.
    last_used: u64,
}

/// The loop's resources: the model, its cache and buffers.
#[derive(Debug)]
pub(crate) struct Worker {
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
    pub kv: KvCache,
    pub scratch: Scratch,
    pub logits: Logits,
    pub batch_size: usize,
    pub shared: Arc<WorkerShared>,
    /// The tokenizer's end-of-generation ids (masked for `ignore_eos`).
    end_of_generation: Vec<u32>,
}

impl Worker {
    /// Buffers for `parallel` slots of `ctx` positions and batches of `batch_size` tokens.
    pub fn new(
        model: Arc<Model>,
        tokenizer: Arc<Tokenizer>,
        ctx: usize,
        parallel: usize,
        batch_size: usize,
        shared: Arc<WorkerShared>,
    ) -> Worker {
        Worker {
            kv: model.new_kv_cache_for(parallel, ctx, batch_size),
            scratch: model.new_scratch(batch_size, ctx),
            logits: Logits::new(model.vocab_size(), parallel),
            end_of_generation: tokenizer.end_of_generation_ids(),
            model,
            tokenizer,
            batch_size,
            shared,
        }
    }

    /// One forward pass of one token, so the weights are paged in and the buffers
    /// touched before the model is reported ready; the cache is emptied after.
    pub fn warm_up(&mut self) -> Result<(), RuntimeError> {
        let token = self.tokenizer.bos().unwrap_or(0);
        let batch = Batch::for_sequence(&[token], 0, 0);
        self.model
            .forward(&batch, &mut self.kv, &mut self.scratch, &mut self.logits)?;
        self.kv.clear_all();
        Ok(())
    }

    /// Serves jobs until stopped.
    pub fn run(mut self) {
        let parallel = self.kv.n_seq();
        let mut slots: Vec<Slot> = (0..parallel).map(|_| Slot::default()).collect();
        let mut batch = Batch::with_capacity(self.batch_size);
        let mut rows: Vec<usize> = Vec::with_capacity(parallel);
        let mut step: u64 = 0;
        let mut round_robin = 0usize;
        let counters = Arc::clone(&self.shared.counters);
        loop {
            step += 1;
            // Requests that left (stream dropped) or timed out free their slot now.
            for slot in &mut slots {
                let Some(seq) = &slot.sequence else { continue };
                if seq.job.events.is_closed() {
                    counters.cancelled.fetch_add(1, Ordering::Relaxed);
                    finish(slot, FinishReason::Cancelled, &counters, false, step);
                } else if seq.job.deadline.is_some_and(|d| Instant::now() >= d) {
                    counters.timeouts.fetch_add(1, Ordering::Relaxed);
                    let _ = seq.job.events.send(Event::Error(RuntimeError::Timeout));
                    finish(slot, FinishReason::Cancelled, &counters, false, step);
                }
            }
            if !self.admit(&mut slots, step) {
                break;
            }

            self.build_batch(&mut slots, &mut batch, &mut rows, &mut round_robin);
            if batch.is_empty() {
                continue;
            }
            counters.forward_calls.fetch_add(1, Ordering::Relaxed);
            if let Err(e) =
                self.model
                    .forward(&batch, &mut self.kv, &mut self.scratch, &mut self.logits)
            {
                // Every sequence in the batch fails; its slot starts empty next time.
                let error = RuntimeError::from(e);
                tracing::error!(error = %error, "forward pass failed");
                let mut in_batch: Vec<u32> = batch.seq_ids().to_vec();
                in_batch.sort_unstable();
                in_batch.dedup();
                for s in in_batch {
                    let slot = &mut slots[s as usize];
                    if let Some(seq) = &slot.sequence {
                        let _ = seq.job.events.send(Event::Error(error.clone()));
                    }
                    finish(slot, FinishReason::Cancelled, &counters, false, step);
                    slot.tokens.clear();
                    let _ = self.kv.clear(s);
                }
                continue;
            }
            // The batch's tokens are in the cache now.
            for (&token, &s) in batch.tokens().iter().zip(batch.seq_ids()) {
                slots[s as usize].tokens.push(token);
            }
            for (row, &s) in rows.iter().enumerate() {
                self.sample(&mut slots[s], row, &counters, step);
            }
        }
        // Cancel what is left (only on shutdown) and free every buffer on this thread.
        for slot in &mut slots {
            if slot.sequence.is_some() {
                counters.cancelled.fetch_add(1, Ordering::Relaxed);
                finish(slot, FinishReason::Cancelled, &counters, true, step);
            }
        }
        counters.active.store(0, Ordering::Relaxed);
    }

    /// Drops abandoned queued jobs and moves queued jobs into free slots; waits while
    /// there is nothing to do. Returns false when the loop must end.
    fn admit(&mut self, slots: &mut [Slot], step: u64) -> bool {
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        let mut queue = shared.lock();
        loop {
            let now = Instant::now();
            queue.jobs.retain(|job| {
                if job.events.is_closed() {
                    counters.cancelled.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                if job.deadline.is_some_and(|d| now >= d) {
                    counters.timeouts.fetch_add(1, Ordering::Relaxed);
                    let _ = job.events.send(Event::Error(RuntimeError::Timeout));
                    return false;
                }
                true
            });
            if queue.cancel {
                for job in queue.jobs.drain(..) {
                    let _ = job.events.send(Event::Error(RuntimeError::ShuttingDown));
                }
                return false;
            }
            while slots.iter().any(|s| s.sequence.is_none()) {
                let Some(job) = queue.jobs.pop_front() else {
                    break;
                };
                self.place(slots, job, step);
            }
            let busy = slots.iter().filter(|s| s.sequence.is_some()).count();
            counters.active.store(busy, Ordering::Relaxed);
            if busy > 0 {
                return true;
            }
            if queue.stop {
                return false;
            }
            // Idle: sleep until a job arrives, the model is stopped, or a queued job's
            // deadline passes.
            let next_deadline = queue.jobs.iter().filter_map(|j| j.deadline).min();
            queue = match next_deadline {
                Some(d) => {
                    shared
                        .wake
                        .wait_timeout(queue, d.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// Puts `job` in the free slot that shares the longest prompt prefix, reusing (or
    /// copying from another slot) the cached keys and values of that prefix.
    fn place(&mut self, slots: &mut [Slot], job: Job, step: u64) {
        let common = |tokens: &[u32]| {
            tokens
                .iter()
                .zip(&job.prompt)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let Some(target) = (0..slots.len())
            .filter(|&i| slots[i].sequence.is_none())
            .max_by_key(|&i| {
                (
                    common(&slots[i].tokens),
                    std::cmp::Reverse(slots[i].last_used),
                )
            })
        else {
            return;
        };
        let own = common(&slots[target].tokens);
        let donor = (0..slots.len())
            .map(|i| (common(&slots[i].tokens), i))
            .max()
            .filter(|&(len, _)| len > own);
        // At least the last prompt token is computed: its logits start the answer.
        let limit = job.prompt.len() - 1;
        let keep = match donor {
            Some((len, source)) => {
                let keep = len.min(limit);
                match self.kv.copy_prefix(source as u32, target as u32, keep) {
                    Ok(()) => {
                        let prefix = slots[source].tokens[..keep].to_vec();
                        slots[target].tokens = prefix;
                        keep
                    }
                    Err(e) => {
                        // A sliding-window ring may no longer hold the window: use the
                        // slot's own prefix.
                        tracing::debug!(error = %e, "prefix copy not possible");
                        own.min(limit)
                    }
                }
            }
            None => own.min(limit),
        };
        let slot = &mut slots[target];
        // The cache may keep less (a sliding-window ring cannot go back far).
        match self.kv.truncate(target as u32, keep) {
            Ok(kept) => slot.tokens.truncate(kept),
            Err(_) => slot.tokens.clear(),
        }
        let keep = slot.tokens.len();
        let counters = &self.shared.counters;
        counters
            .prefix_reused
            .fetch_add(keep as u64, Ordering::Relaxed);
        // Parameters were validated when the request was made.
        let sampler = match Sampler::new(job.params.clone(), self.model.vocab_size()) {
            Ok(s) => s,
            Err(e) => {
                let _ = job
                    .events
                    .send(Event::Error(RuntimeError::BadRequest(e.to_string())));
                return;
            }
        };
        slot.last_used = step;
        slot.sequence = Some(Sequence {
            decoder: Some(StreamDecoder::new(Arc::clone(&self.tokenizer), false)),
            stops: StopMatcher::new(&job.stop),
            sampler,
            fed: keep,
            cached: keep,
            pending: None,
            generated: 0,
            admitted: Instant::now(),
            prompt_done: None,
            first_token: None,
            job,
        });
    }

    /// Fills `batch`: generating sequences' pending tokens first, then prompt chunks
    /// sharing the rest of the batch evenly; `rows` gets the slot of each logits row.
    fn build_batch(
        &self,
        slots: &mut [Slot],
        batch: &mut Batch,
        rows: &mut Vec<usize>,
        round_robin: &mut usize,
    ) {
        batch.clear();
        rows.clear();
        for (i, slot) in slots.iter_mut().enumerate() {
            let position = slot.tokens.len() as u32;
            if let Some(token) = slot.sequence.as_mut().and_then(|s| s.pending.take()) {
                batch.push(token, position, i as u32, true);
                rows.push(i);
            }
        }
        let n = slots.len();
        let reading: Vec<usize> = (0..n)
            .map(|k| (*round_robin + k) % n)
            .filter(|&i| {
                slots[i]
                    .sequence
                    .as_ref()
                    .is_some_and(|s| s.fed < s.job.prompt.len())
            })
            .collect();
        *round_robin = (*round_robin + 1) % n.max(1);
        let mut budget = self.batch_size.saturating_sub(batch.len());
        for (k, &i) in reading.iter().enumerate() {
            if budget == 0 {
                break;
            }
            let share = budget.div_ceil(reading.len() - k);
            let slot = &mut slots[i];
            let Some(seq) = slot.sequence.as_mut() else {
                continue;
            };
            let take = share.min(seq.job.prompt.len() - seq.fed);
            let chunk = &seq.job.prompt[seq.fed..seq.fed + take];
            let last = seq.fed + take == seq.job.prompt.len();
            batch.push_sequence(chunk, slot.tokens.len() as u32, i as u32, last);
            seq.fed += take;
            budget -= take;
            if last {
                rows.push(i);
            }
        }
    }

    /// Samples the next token of the sequence in `slot` from logits row `row`, sends its
    /// event, and ends the sequence when it is done.
    fn sample(&mut self, slot: &mut Slot, row: usize, counters: &Counters, step: u64) {
        let Some(seq) = slot.sequence.as_mut() else {
            return;
        };
        let now = Instant::now();
        if seq.prompt_done.is_none() {
            seq.prompt_done = Some(now);
            counters
                .tokens_in
                .fetch_add(seq.job.prompt.len() as u64, Ordering::Relaxed);
        }
        let logits = self.logits.row_mut(row);
        if seq.job.ignore_eos {
            for &id in &self.end_of_generation {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        if let Some(constraint) = seq.job.constraint.as_mut() {
            constraint.mask_logits(logits);
        }
        let (token, logprob, top_logprobs): (u32, Option<f32>, Vec<TokenLogprob>) =
            match seq.job.logprobs {
                Some(n) => {
                    let sampled = seq.sampler.sample_with_logprobs(logits, &slot.tokens, n);
                    (sampled.token, Some(sampled.logprob), sampled.top_logprobs)
                }
                None => (seq.sampler.sample(logits, &slot.tokens), None, Vec::new()),
            };
        if let Some(constraint) = seq.job.constraint.as_mut()
            && let Err(e) = constraint.accept(token)
        {
            let _ = seq
                .job
                .events
                .send(Event::Error(RuntimeError::Engine(format!(
                    "constrained decoding: {e}"
                ))));
            finish(slot, FinishReason::Cancelled, counters, false, step);
            return;
        }
        seq.first_token.get_or_insert(now);
        let end_of_generation = self.tokenizer.is_end_of_generation(token) && !seq.job.ignore_eos;
        if end_of_generation {
            let tail = flush(seq);
            if !tail.is_empty() {
                let _ = seq.job.events.send(Event::Token {
                    text: tail,
                    id: token,
                    logprob,
                    top_logprobs,
                });
            }
            finish(slot, FinishReason::Stop, counters, true, step);
            return;
        }
        seq.generated += 1;
        counters.tokens_out.fetch_add(1, Ordering::Relaxed);
        let piece = seq
            .decoder
            .as_mut()
            .map(|d| d.push(token))
            .unwrap_or_default();
        let (mut text, stopped) = seq.stops.push(&piece);
        let reason = if stopped.is_some() {
            Some(FinishReason::Stop)
        } else if seq.job.max_tokens.is_some_and(|m| seq.generated >= m)
            || slot.tokens.len() >= self.kv.capacity()
        {
            text.push_str(&flush(seq));
            Some(FinishReason::Length)
        } else {
            None
        };
        let _ = seq.job.events.send(Event::Token {
            text,
            id: token,
            logprob,
            top_logprobs,
        });
        match reason {
            Some(reason) => finish(slot, reason, counters, true, step),
            None => seq.pending = Some(token),
        }
    }
}

/// Text still held by the decoder and the stop matcher, at the end of a sequence.
fn flush(seq: &mut Sequence) -> String {
    let rest = seq.decoder.take().map(|d| d.finish()).unwrap_or_default();
    let (mut text, _) = seq.stops.push(&rest);
    if seq.stops.stopped().is_none() {
        text.push_str(&seq.stops.finish());
    }
    text
}

/// Ends the sequence in `slot`: sends `Done` (when `report`), frees the slot (its cached
/// tokens stay for the prefix cache) and releases the request's lease.
fn finish(slot: &mut Slot, reason: FinishReason, counters: &Counters, report: bool, step: u64) {
    let Some(seq) = slot.sequence.take() else {
        return;
    };
    slot.last_used = step;
    // Before `Done` goes out, so a caller that saw it never counts this sequence.
    let _ = counters
        .active
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    let now = Instant::now();
    let submitted = seq.job.submitted;
    let timings = Timings {
        queued: seq.admitted.saturating_duration_since(submitted),
        prompt: seq.prompt_done.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(seq.admitted)
        }),
        ttft: seq
            .first_token
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(submitted)),
        total: now.saturating_duration_since(submitted),
    };
    counters.finished.fetch_add(1, Ordering::Relaxed);
    counters.busy_micros.fetch_add(
        now.saturating_duration_since(seq.admitted).as_micros() as u64,
        Ordering::Relaxed,
    );
    let usage = Usage {
        prompt_tokens: seq.job.prompt.len(),
        completion_tokens: seq.generated,
        cached_tokens: seq.cached,
    };
    // The lease goes first: whoever sees `Done` sees the model idle (keep-alive running).
    let Job { events, _lease, .. } = seq.job;
    drop(_lease);
    if report {
        let _ = events.send(Event::Done {
            finish_reason: reason,
            usage,
            timings,
        });
    }
}
