//! A generation session: one sequence over a model — feed a prompt, sample, stream text.
//!
//! What `tern run` and `tern chat` use. It keeps the tokens that are in its KV cache, so a
//! new prompt that starts with them (the next turn of a chat, rendered again from the
//! whole conversation) only feeds what is new. Prompts are fed in micro-batches of
//! [`SessionOptions::ubatch`] tokens (llama.cpp's `n_ubatch`, 512 by default), which also
//! picks the same attention arithmetic as llama.cpp for the same prompt.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_kernels::pool::ThreadPool;
use tern_sampler::{ConstrainedDecoder, Sampler, SamplingParams, StopMatcher, Vocabulary};
use tern_tokenizer::Tokenizer;
use tern_tokenizer::chat::{ChatTemplate, Message};

use crate::error::{Error, ErrorKind, Result};
use crate::{Batch, KvCache, Logits, Model, Scratch, TokenId};

/// Sizes of a session.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// Positions the context holds (prompt + generated tokens).
    pub context: usize,
    /// Most tokens per forward pass while feeding a prompt.
    pub ubatch: usize,
    /// Threads the matmuls are split over (1: the calling thread alone; see
    /// `tern_kernels::pool::default_threads` for the machine's physical cores).
    pub threads: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            context: 4096,
            ubatch: 512,
            threads: 1,
        }
    }
}

/// How to generate.
#[derive(Debug, Default)]
pub struct GenerateOptions {
    pub sampling: SamplingParams,
    /// Most tokens to generate (`None`: until the context is full).
    pub max_tokens: Option<usize>,
    /// Text that ends the answer (not included in it).
    pub stop: Vec<String>,
    /// Never end on an end-of-generation token: their logits are set to -inf, as
    /// llama.cpp's `--ignore-eos` does.
    pub ignore_eos: bool,
    /// Masks the logits so the output follows a grammar (JSON, JSON Schema).
    pub constraint: Option<ConstrainedDecoder>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// A stop string appeared.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The context is full.
    ContextFull,
    /// The callback asked to stop.
    Cancelled,
}

impl FinishReason {
    /// OpenAI's name (`stop`, `length`), plus `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::EndOfGeneration | FinishReason::Stop => "stop",
            FinishReason::Length | FinishReason::ContextFull => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// What one generation produced.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated token ids (without a final end-of-generation token).
    pub tokens: Vec<TokenId>,
    /// Their text, cut before a stop string.
    pub text: String,
    pub finish_reason: FinishReason,
    /// Prompt tokens that were fed (the others were already in the cache).
    pub prompt_tokens_fed: usize,
    /// Time spent feeding the prompt.
    pub prompt_time: Duration,
    /// Time spent generating (sampling and one forward pass per token).
    pub generation_time: Duration,
}

/// One sequence over a model, with its own cache and buffers.
#[derive(Debug)]
pub struct Session {
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
    options: SessionOptions,
    kv: KvCache,
    scratch: Scratch,
    logits: Logits,
    batch: Batch,
    /// The tokens whose keys and values are in `kv`, in order.
    tokens: Vec<TokenId>,
}

impl Session {
    /// A session with an empty context.
    pub fn new(
        model: Arc<Model>,
        tokenizer: Arc<Tokenizer>,
        options: SessionOptions,
    ) -> Result<Self> {
        if options.context == 0 || options.ubatch == 0 {
            return Err(Error::new(ErrorKind::InvalidInput(
                "the context size and batch size must be positive".into(),
            )));
        }
        if tokenizer.vocab_size() > model.vocab_size() {
            return Err(Error::new(ErrorKind::InvalidInput(format!(
                "the tokenizer has {} tokens, the model only {} logits",
                tokenizer.vocab_size(),
                model.vocab_size()
            ))));
        }
        let ubatch = options.ubatch.min(options.context);
        let mut scratch = model.new_scratch(ubatch, options.context);
        if options.threads > 1 {
            let pool = ThreadPool::try_new(options.threads).map_err(|e| {
                Error::new(ErrorKind::InvalidInput(format!(
                    "cannot start {} threads: {e}",
                    options.threads
                )))
            })?;
            scratch.set_thread_pool(Some(Arc::new(pool)));
        }
        Ok(Session {
            kv: model.new_kv_cache_for(1, options.context, ubatch),
            scratch,
            logits: Logits::new(model.vocab_size(), 1),
            batch: Batch::with_capacity(ubatch),
            tokens: Vec::with_capacity(options.context),
            options: SessionOptions { ubatch, ..options },
            model,
            tokenizer,
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// The context size.
    pub fn context_size(&self) -> usize {
        self.options.context
    }

    /// The KV cache (its type and size).
    pub fn kv_cache(&self) -> &KvCache {
        &self.kv
    }

    /// The tokens in the context.
    pub fn tokens(&self) -> &[TokenId] {
        &self.tokens
    }

    /// Empties the context.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.kv.clear_all();
    }

    /// Token ids of `text` as a prompt: BOS when the model adds one, special-token text
    /// parsed (what llama.cpp's tools do with a prompt).
    pub fn tokenize_prompt(&self, text: &str) -> Vec<TokenId> {
        self.tokenizer.encode(text, true, true)
    }

    /// Makes the context exactly `prompt` and returns the logits after its last token.
    /// Tokens already cached as a prefix of `prompt` are kept, not fed again (at least
    /// the last token is always fed, for its logits). Returns how many tokens were fed.
    pub fn feed(&mut self, prompt: &[TokenId]) -> Result<usize> {
        if prompt.is_empty() {
            return Err(Error::new(ErrorKind::InvalidInput(
                "the prompt has no token".into(),
            )));
        }
        if prompt.len() > self.options.context {
            return Err(Error::new(ErrorKind::ContextFull {
                seq: 0,
                capacity: self.options.context,
            }));
        }
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // A sliding-window cache may not be able to go back that far: then it starts over.
        let keep = self.kv.truncate(0, common.min(prompt.len() - 1))?;
        self.tokens.truncate(keep);
        let rest = &prompt[keep..];
        for (i, chunk) in rest.chunks(self.options.ubatch).enumerate() {
            let start = keep + i * self.options.ubatch;
            let last = start + chunk.len() == prompt.len();
            self.batch.clear();
            self.batch.push_sequence(chunk, start as u32, 0, last);
            self.model.forward(
                &self.batch,
                &mut self.kv,
                &mut self.scratch,
                &mut self.logits,
            )?;
            self.tokens.extend_from_slice(chunk);
        }
        Ok(rest.len())
    }

    /// Appends one token and computes the logits after it.
    pub fn push(&mut self, token: TokenId) -> Result<()> {
        let pos = self.tokens.len();
        if pos >= self.options.context {
            return Err(Error::new(ErrorKind::ContextFull {
                seq: 0,
                capacity: self.options.context,
            }));
        }
        self.batch.clear();
        self.batch.push(token, pos as u32, 0, true);
        self.model.forward(
            &self.batch,
            &mut self.kv,
            &mut self.scratch,
            &mut self.logits,
        )?;
        self.tokens.push(token);
        Ok(())
    }

    /// The logits after the last token fed.
    pub fn logits(&self) -> Option<&[f32]> {
        self.logits.last()
    }

    /// Feeds `prompt` (reusing the cached prefix) and generates, calling `on_text` with
    /// each piece of text as soon as it is complete (whole UTF-8 characters, never part
    /// of a stop string); `on_text` returning `Break` stops generation.
    pub fn generate(
        &mut self,
        prompt: &[TokenId],
        mut options: GenerateOptions,
        mut on_text: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let mut sampler =
            Sampler::new(options.sampling.clone(), self.model.vocab_size()).map_err(|e| {
                Error::with_source(ErrorKind::Sampler("invalid sampling parameters".into()), e)
            })?;
        let started = Instant::now();
        let prompt_tokens_fed = self.feed(prompt)?;
        let prompt_time = started.elapsed();
        let started = Instant::now();

        let tokenizer = Arc::clone(&self.tokenizer);
        let eog = tokenizer.end_of_generation_ids();
        let mut decoder = tokenizer.stream_decoder();
        let mut stops = StopMatcher::new(&options.stop);
        let mut generated = Vec::new();
        let mut text = String::new();
        let max_tokens = options.max_tokens.unwrap_or(usize::MAX);
        let finish_reason = loop {
            if generated.len() >= max_tokens {
                break FinishReason::Length;
            }
            let Some(row) = self.logits.last_mut() else {
                return Err(Error::new(ErrorKind::InvalidBatch(
                    "no logits to sample from".into(),
                )));
            };
            if options.ignore_eos {
                for &id in &eog {
                    if let Some(l) = row.get_mut(id as usize) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            if let Some(constraint) = options.constraint.as_mut() {
                constraint.mask_logits(row);
            }
            let token = sampler.sample(row, &self.tokens);
            if let Some(constraint) = options.constraint.as_mut() {
                constraint
                    .accept(token)
                    .map_err(|e| Error::with_source(ErrorKind::Sampler("constraint".into()), e))?;
            }
            if tokenizer.is_end_of_generation(token) && !options.ignore_eos {
                break FinishReason::EndOfGeneration;
            }
            generated.push(token);
            let piece = decoder.push(token);
            let (emit, stopped) = stops.push(&piece);
            if !emit.is_empty() {
                text.push_str(&emit);
                if on_text(&emit).is_break() {
                    break FinishReason::Cancelled;
                }
            }
            if stopped.is_some() {
                break FinishReason::Stop;
            }
            if generated.len() >= max_tokens {
                break FinishReason::Length;
            }
            if self.tokens.len() >= self.options.context {
                break FinishReason::ContextFull;
            }
            self.push(token)?;
        };
        if matches!(
            finish_reason,
            FinishReason::Length | FinishReason::EndOfGeneration | FinishReason::ContextFull
        ) {
            let (emit, _) = stops.push(&decoder.finish());
            let tail = emit + &stops.finish();
            if !tail.is_empty() {
                text.push_str(&tail);
                let _ = on_text(&tail);
            }
        }
        Ok(Generation {
            tokens: generated,
            text,
            finish_reason,
            prompt_tokens_fed,
            prompt_time,
            generation_time: started.elapsed(),
        })
    }
}

/// The prompt text for `messages`: the chat template rendered with the generation
/// prompt. When the model adds BOS itself, a BOS text the template writes at the start is
/// dropped, as llama.cpp does, so the prompt does not begin with two BOS tokens.
pub fn chat_prompt(
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    messages: &[Message],
) -> Result<String> {
    chat_prompt_with(template, tokenizer, messages, &serde_json::Map::new())
}

/// [`chat_prompt`] with extra template variables (`enable_thinking` for Qwen3's
/// thinking mode, ...), as Hugging Face's `apply_chat_template(**kwargs)` passes them.
pub fn chat_prompt_with(
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    messages: &[Message],
    variables: &serde_json::Map<String, serde_json::Value>,
) -> Result<String> {
    let text = template.render(messages, true, variables).map_err(|e| {
        Error::with_source(
            ErrorKind::Tokenizer("cannot render the chat template".into()),
            e,
        )
    })?;
    if tokenizer.add_bos()
        && let Some(bos) = tokenizer.bos()
    {
        let bos_text = tokenizer.token_text(bos);
        if !bos_text.is_empty()
            && let Some(rest) = text.strip_prefix(bos_text)
        {
            return Ok(rest.to_string());
        }
    }
    Ok(text)
}

/// The sampler's view of a vocabulary, for constrained decoding: the bytes each token
/// writes (none for control tokens, which are not text) and the end-of-generation ids.
pub fn sampler_vocabulary(tokenizer: &Tokenizer) -> Result<Vocabulary> {
    let bytes = (0..tokenizer.vocab_size() as u32)
        .map(|id| {
            if tokenizer.is_control(id) {
                Vec::new()
            } else {
                tokenizer.token_bytes(id).to_vec()
            }
        })
        .collect();
    Vocabulary::new(bytes, tokenizer.end_of_generation_ids()).map_err(|e| {
        Error::with_source(ErrorKind::Sampler("cannot index the vocabulary".into()), e)
    })
}
