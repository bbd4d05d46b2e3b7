//! `tern bench --prompt-cache N`: what the prompt (prefix) cache saves. For each `-p P`,
//! the time to first token of a prompt of `N + P` tokens through a [`Session`] (what
//! `tern chat` uses), cold — an empty cache — and warm — the cache holding an earlier
//! prompt with the same `N` first tokens (a system prompt, the earlier turns of a chat),
//! so only the `P` new tokens are computed. Tokens are random ids, BOS first when the
//! model adds one; each repetition draws new ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;
use tern_engine::{Model, Session, SessionOptions, TokenId};
use tern_tokenizer::Tokenizer;

use crate::cli::GlobalArgs;
use crate::kv;

/// One `--prompt-cache` measurement.
#[derive(Debug, Serialize)]
pub struct PromptCacheReport {
    /// Tokens shared with the cached prompt.
    pub prefix_tokens: usize,
    /// New tokens after them.
    pub suffix_tokens: usize,
    /// Time to the first token's logits from an empty cache, per repetition.
    pub cold_ms: Vec<f64>,
    /// The same with the prefix cached, per repetition.
    pub warm_ms: Vec<f64>,
    /// Prompt tokens computed in the warm runs (the suffix: the prefix came from the
    /// cache).
    pub warm_tokens_computed: usize,
    pub avg_cold_ms: f64,
    pub avg_warm_ms: f64,
}

/// How the sessions of the measurement run.
#[derive(Clone, Copy, Debug)]
pub struct RunSettings {
    pub repetitions: usize,
    pub ubatch: usize,
    pub threads: usize,
}

/// Runs the prompt-cache measurement for each suffix length in `suffixes` (zeros
/// skipped).
pub fn measure(
    global: &GlobalArgs,
    model: &Arc<Model>,
    tokenizer: &Arc<Tokenizer>,
    prefix: usize,
    suffixes: &[usize],
    settings: RunSettings,
) -> anyhow::Result<Vec<PromptCacheReport>> {
    let RunSettings {
        repetitions,
        ubatch,
        threads,
    } = settings;
    if prefix == 0 {
        bail!("--prompt-cache 0: the shared prefix needs at least one token");
    }
    let mut reports = Vec::new();
    let mut seed = 0x7072_6566_6978u64;
    let mut random = |n: usize| -> Vec<TokenId> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((seed >> 33) % model.vocab_size() as u64) as TokenId
            })
            .collect()
    };
    for &suffix in suffixes.iter().filter(|&&p| p > 0) {
        let context = prefix + suffix;
        let options = SessionOptions {
            context,
            ubatch,
            threads,
        };
        kv::check_memory(
            global,
            &model.kv_cache_spec(1, context, ubatch.min(context)),
        )?;
        let mut session = Session::new(Arc::clone(model), Arc::clone(tokenizer), options)?;
        let (mut cold, mut warm, mut computed) = (Vec::new(), Vec::new(), 0);
        for _ in 0..repetitions {
            let mut shared = random(prefix);
            if tokenizer.add_bos()
                && let Some(bos) = tokenizer.bos()
            {
                shared[0] = bos;
            }
            let (first, second) = (random(suffix), random(suffix));
            // Cold: nothing cached.
            session.clear();
            let started = Instant::now();
            session.feed(&[shared.as_slice(), &first].concat())?;
            cold.push(millis(started.elapsed()));
            // Warm: the same prefix, another suffix (differing from its first token on).
            let mut second = second;
            if second[0] == first[0] {
                second[0] = (second[0] + 1) % model.vocab_size() as TokenId;
            }
            let started = Instant::now();
            computed = session.feed(&[shared.as_slice(), &second].concat())?;
            warm.push(millis(started.elapsed()));
        }
        reports.push(PromptCacheReport {
            prefix_tokens: prefix,
            suffix_tokens: suffix,
            avg_cold_ms: mean(&cold),
            avg_warm_ms: mean(&warm),
            cold_ms: cold,
            warm_ms: warm,
            warm_tokens_computed: computed,
        });
    }
    Ok(reports)
}

/// `prompt cache: 1024 + 32 tokens: first token after 5123.4 ms cold, 201.3 ms with the
/// 1024 cached (25.4x)`.
pub fn line(p: &PromptCacheReport) -> String {
    let ratio = if p.avg_warm_ms > 0.0 {
        p.avg_cold_ms / p.avg_warm_ms
    } else {
        0.0
    };
    format!(
        "prompt cache: {} + {} tokens: first token after {:.1} ms cold, {:.1} ms with the {} \
         shared tokens cached ({ratio:.1}x)",
        p.prefix_tokens, p.suffix_tokens, p.avg_cold_ms, p.avg_warm_ms, p.prefix_tokens
    )
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}
