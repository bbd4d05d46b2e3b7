//! Perplexity as llama.cpp's `llama-perplexity` computes it (`tools/perplexity/
//! perplexity.cpp`, `perplexity()`), so the numbers compare directly:
//!
//! - the text is tokenized once (BOS added when the model adds one, special-token text
//!   not parsed) and cut into `n_ctx`-token chunks; the leftover tail is dropped, and at
//!   least two chunks' worth of tokens are required;
//! - each chunk runs on an empty cache, its first token replaced by BOS when the model
//!   adds BOS;
//! - the logits at positions `n_ctx/2 … n_ctx-2` score the tokens that follow them:
//!   `-log softmax(logits)[next]`, with the softmax sum in double;
//! - perplexity is `exp(mean)` over all scored tokens.
//!
//! Batches: the first half of a chunk goes in micro-batches of up to 512 tokens without
//! logits, the second half in batches of 64+ tokens with logits, so every batch takes
//! ggml's F32 attention path as llama.cpp's 512-token micro-batches do, and the logits
//! buffer stays small (a Gemma row is 1 MiB).

use crate::attention::TILED_MIN_TOKENS;
use crate::error::{Error, ErrorKind, Result};
use crate::{Batch, Logits, Model, TokenId};

/// How to compute perplexity.
#[derive(Clone, Debug, Default)]
pub struct PerplexityOptions {
    /// Tokens per chunk (`-c`).
    pub n_ctx: usize,
    /// Score only the first chunks (`--chunks`).
    pub max_chunks: Option<usize>,
    /// Token that replaces the first token of each chunk (the model's BOS when it adds one).
    pub bos: Option<TokenId>,
    /// Threads the matmuls are split over (`None` or 1: the calling thread alone).
    pub pool: Option<std::sync::Arc<tern_kernels::pool::ThreadPool>>,
}

/// The result of [`perplexity`].
#[derive(Clone, Debug, PartialEq)]
pub struct PerplexityReport {
    /// `exp` of the mean negative log-likelihood.
    pub ppl: f64,
    /// Chunks scored.
    pub chunks: usize,
    /// Tokens scored (`chunks * (n_ctx - n_ctx/2 - 1)`).
    pub tokens_scored: usize,
    /// Mean negative log-likelihood of each chunk.
    pub chunk_nll: Vec<f64>,
    /// The running perplexity after each chunk (what llama-perplexity prints as `[i]ppl`).
    pub running_ppl: Vec<f64>,
    /// Standard error of the mean NLL (llama-perplexity's `+/-` is `ppl * this`).
    pub nll_std_err: f64,
}

/// Perplexity of `model` on `tokens` (the whole text, already tokenized).
/// `progress(chunk, chunks, running_ppl)` is called after each chunk.
pub fn perplexity(
    model: &Model,
    tokens: &[TokenId],
    options: PerplexityOptions,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<PerplexityReport> {
    let n_ctx = options.n_ctx;
    if n_ctx < 2 * TILED_MIN_TOKENS.max(2) {
        return Err(Error::new(ErrorKind::InvalidInput(format!(
            "a perplexity context of {n_ctx} tokens is too small (at least {})",
            2 * TILED_MIN_TOKENS
        ))));
    }
    if tokens.len() < 2 * n_ctx {
        return Err(Error::new(ErrorKind::InvalidInput(format!(
            "perplexity with a context of {n_ctx} needs at least {} tokens; the text has {}",
            2 * n_ctx,
            tokens.len()
        ))));
    }
    let mut chunks = tokens.len() / n_ctx;
    if let Some(max) = options.max_chunks {
        chunks = chunks.min(max);
    }
    let first = n_ctx / 2;
    let scored_per_chunk = n_ctx - first - 1;
    // Second-half batches: 64 tokens, the remainder joined to the last one.
    let logit_batch = TILED_MIN_TOKENS;
    let max_rows = 2 * logit_batch;
    let ubatch = 512.min(n_ctx);

    let mut kv = model.new_kv_cache_for(1, n_ctx, ubatch.max(max_rows));
    let mut scratch = model.new_scratch(ubatch.max(max_rows), n_ctx);
    scratch.set_thread_pool(options.pool.clone());
    let mut logits = Logits::new(model.vocab_size(), max_rows);
    let mut batch = Batch::with_capacity(ubatch.max(max_rows));
    let mut chunk_tokens = Vec::with_capacity(n_ctx);

    let (mut nll_sum, mut nll_sq_sum, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut chunk_nll = Vec::with_capacity(chunks);
    let mut running_ppl = Vec::with_capacity(chunks);
    for chunk in 0..chunks {
        chunk_tokens.clear();
        chunk_tokens.extend_from_slice(&tokens[chunk * n_ctx..(chunk + 1) * n_ctx]);
        if let Some(bos) = options.bos {
            chunk_tokens[0] = bos;
        }
        kv.clear_all();
        // First half: context only.
        let mut pos = 0;
        while pos < first {
            let end = (pos + ubatch).min(first);
            batch.clear();
            batch.push_sequence(&chunk_tokens[pos..end], pos as u32, 0, false);
            model.forward(&batch, &mut kv, &mut scratch, &mut logits)?;
            pos = end;
        }
        // Second half: logits for positions first..n_ctx-2.
        let mut chunk_sum = 0.0f64;
        while pos < n_ctx {
            let mut end = (pos + logit_batch).min(n_ctx);
            if n_ctx - end < logit_batch {
                end = n_ctx;
            }
            batch.clear();
            for (p, &token) in chunk_tokens.iter().enumerate().take(end).skip(pos) {
                batch.push(token, p as u32, 0, p + 1 < n_ctx);
            }
            model.forward(&batch, &mut kv, &mut scratch, &mut logits)?;
            for (row, p) in (pos..end.min(n_ctx - 1)).enumerate() {
                let nll = negative_log_likelihood(logits.row(row), chunk_tokens[p + 1] as usize);
                chunk_sum += nll;
                nll_sum += nll;
                nll_sq_sum += nll * nll;
            }
            pos = end;
        }
        count += scored_per_chunk;
        chunk_nll.push(chunk_sum / scored_per_chunk as f64);
        let ppl = (nll_sum / count as f64).exp();
        running_ppl.push(ppl);
        progress(chunk + 1, chunks, ppl);
    }
    let mean = nll_sum / count as f64;
    let variance = nll_sq_sum / count as f64 - mean * mean;
    let nll_std_err = if variance > 0.0 && count > 1 {
        (variance / (count - 1) as f64).sqrt()
    } else {
        0.0
    };
    Ok(PerplexityReport {
        ppl: mean.exp(),
        chunks,
        tokens_scored: count,
        chunk_nll,
        running_ppl,
        nll_std_err,
    })
}

/// `-log softmax(logits)[target]` as llama-perplexity's `log_softmax`: the maximum in
/// f32, `expf` of each shifted logit summed in double.
pub fn negative_log_likelihood(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| (l - max).exp() as f64).sum();
    -((logits[target] - max) as f64 - sum.ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_is_minus_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0];
        let total: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        let want = -((2.0f64).exp() / total).ln();
        assert!((negative_log_likelihood(&logits, 1) - want).abs() < 1e-6);
        // Uniform logits: log(vocab).
        assert!((negative_log_likelihood(&[5.0; 8], 3) - 8f64.ln()).abs() < 1e-6);
    }
}
