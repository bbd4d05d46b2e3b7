//! The sampler: turns one row of logits into one token id.
//!
//! The chain is llama.cpp's default one (`common/sampling.cpp`, `common_sampler_init`, with
//! the stages of `src/llama-sampler.cpp`): penalties → top-k → top-p → min-p → temperature →
//! a draw from the remaining distribution. Greedy decoding (temperature `<= 0`) is the exact
//! argmax of the penalised logits, ties going to the lowest id as in llama.cpp's
//! `llama_sampler_greedy_apply`.
//!
//! The random draw uses Xoshiro256++ (Blackman & Vigna), seeded through SplitMix64 by
//! `rand_xoshiro`, and turns each 64-bit output into a double in `[0, 1)` from its top 53
//! bits; both are fixed algorithms, so a seed reproduces the same tokens on every platform.
//! llama.cpp itself draws with `std::mt19937`: seeded runs are reproducible within tern,
//! not token-for-token equal to llama.cpp's.
//!
//! All buffers are sized for the vocabulary in [`Sampler::new`]; a call allocates nothing.

use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::{Error, SamplingParams};

/// One token still in the running, with its (possibly transformed) logit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    pub(crate) id: u32,
    pub(crate) logit: f32,
}

/// A token and its log-probability under the model's distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLogprob {
    /// The token id.
    pub token: u32,
    /// Natural log of its probability.
    pub logprob: f32,
}

/// The result of [`Sampler::sample_with_logprobs`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The chosen token.
    pub token: u32,
    /// Its log-probability under the model's distribution.
    pub logprob: f32,
    /// The most likely tokens, best first (ties: lowest id first).
    pub top_logprobs: Vec<TokenLogprob>,
}

/// Samples tokens from logits with one set of [`SamplingParams`] and its own random stream.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: Xoshiro256PlusPlus,
    /// The candidate list the stages narrow down; capacity = vocabulary size.
    candidates: Vec<Candidate>,
    /// Per token: occurrences in the history (penalties), zeroed again after each call.
    counts: Vec<u32>,
    /// Per token: whether it is in the repetition-penalty window, reset after each call.
    in_window: Vec<bool>,
    /// The tokens whose `counts` / `in_window` entries are set.
    touched: Vec<u32>,
}

/// Descending logit, then ascending id: a total order, so sorts are deterministic.
fn by_logit_desc(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

impl Sampler {
    /// A sampler for a vocabulary of `vocab_size` tokens. Fails, naming the field, when
    /// the parameters do not validate.
    pub fn new(params: SamplingParams, vocab_size: usize) -> Result<Self, Error> {
        params.validate()?;
        if vocab_size == 0 {
            return Err(Error::InvalidVocabulary("the vocabulary size is 0".into()));
        }
        let seed = params.seed.unwrap_or_else(|| rand::rng().next_u64());
        Ok(Self {
            params,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            candidates: Vec::with_capacity(vocab_size),
            counts: vec![0; vocab_size],
            in_window: vec![false; vocab_size],
            touched: Vec::with_capacity(vocab_size.min(4096)),
        })
    }

    /// The parameters this sampler was made with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Chooses the next token. `logits` is one row, indexed by token id, already masked by
    /// any constraint (`-inf` = forbidden; the slice itself is not modified); `history` is
    /// the token sequence the penalties look at (OpenAI counts the generated tokens only).
    ///
    /// When every logit is `-inf` or NaN there is nothing to choose from and token 0 is
    /// returned.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        self.load(logits, history);
        if self.params.is_greedy() {
            return argmax(&self.candidates);
        }
        if !self.prepare() {
            return argmax(&self.candidates);
        }
        self.draw()
    }

    /// [`sample`](Self::sample), plus the chosen token's log-probability and the `top_n`
    /// most likely tokens. Log-probabilities are those of the model's distribution: the
    /// log-softmax of `logits` as given (after any constraint mask, before penalties,
    /// temperature and truncation), which is what llama-server reports for `n_probs`.
    pub fn sample_with_logprobs(
        &mut self,
        logits: &[f32],
        history: &[u32],
        top_n: usize,
    ) -> Sampled {
        let log_norm = log_sum_exp(logits);
        let logprob_of = |logit: f32| {
            if logit.is_nan() {
                f32::NEG_INFINITY
            } else {
                logit - log_norm
            }
        };

        self.candidates.clear();
        self.candidates
            .extend(
                logits
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| !l.is_nan())
                    .map(|(id, &logit)| Candidate {
                        id: id as u32,
                        logit,
                    }),
            );
        let n = top_n.min(self.candidates.len());
        if n > 0 && n < self.candidates.len() {
            self.candidates.select_nth_unstable_by(n - 1, by_logit_desc);
        }
        self.candidates.truncate(n);
        self.candidates.sort_unstable_by(by_logit_desc);
        let top_logprobs = self
            .candidates
            .iter()
            .map(|c| TokenLogprob {
                token: c.id,
                logprob: logprob_of(c.logit),
            })
            .collect();

        let token = self.sample(logits, history);
        let logprob = logits
            .get(token as usize)
            .map_or(f32::NEG_INFINITY, |&l| logprob_of(l));
        Sampled {
            token,
            logprob,
            top_logprobs,
        }
    }

    /// Copies the logits into the candidate list (index = id) and applies the penalties.
    fn load(&mut self, logits: &[f32], history: &[u32]) {
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(id, &logit)| Candidate {
                id: id as u32,
                logit,
            }));
        self.apply_penalties(history);
    }

    /// Repetition penalty over the last `repeat_last_n` history tokens (llama.cpp,
    /// `llama_sampler_penalties_apply`: a positive logit is divided by the penalty, a
    /// non-positive one multiplied), then frequency and presence penalties over the whole
    /// history (OpenAI: `logit -= count * frequency + (count > 0) * presence`).
    fn apply_penalties(&mut self, history: &[u32]) {
        let p = &self.params;
        let repeat_on = p.repeat_penalty != 1.0 && p.repeat_last_n > 0;
        let counts_on = p.frequency_penalty != 0.0 || p.presence_penalty != 0.0;
        if !repeat_on && !counts_on {
            return;
        }
        let n = self.candidates.len();
        if self.counts.len() < n {
            self.counts.resize(n, 0);
            self.in_window.resize(n, false);
        }
        let window_start = history.len().saturating_sub(p.repeat_last_n);
        for (position, &token) in history.iter().enumerate() {
            let t = token as usize;
            if t >= n {
                continue;
            }
            if self.counts[t] == 0 {
                self.touched.push(token);
            }
            self.counts[t] += 1;
            if repeat_on && position >= window_start {
                self.in_window[t] = true;
            }
        }
        for &token in &self.touched {
            let t = token as usize;
            let logit = &mut self.candidates[t].logit;
            if self.in_window[t] {
                if *logit <= 0.0 {
                    *logit *= p.repeat_penalty;
                } else {
                    *logit /= p.repeat_penalty;
                }
            }
            if counts_on {
                let count = self.counts[t] as f32;
                *logit -= count * p.frequency_penalty + p.presence_penalty;
            }
            self.counts[t] = 0;
            self.in_window[t] = false;
        }
        self.touched.clear();
    }

    /// Runs top-k, top-p, min-p and temperature over the candidates, leaving the final
    /// logits in `self.candidates`. Returns false when no finite candidate exists (the
    /// caller then falls back to the argmax, which handles `+inf`).
    pub(crate) fn prepare(&mut self) -> bool {
        if self.candidates.iter().any(|c| c.logit == f32::INFINITY) {
            return false;
        }
        self.candidates.retain(|c| c.logit.is_finite());
        if self.candidates.is_empty() {
            return false;
        }
        let mut sorted = false;
        top_k(&mut self.candidates, self.params.top_k, &mut sorted);
        top_p(&mut self.candidates, self.params.top_p, &mut sorted);
        min_p(&mut self.candidates, self.params.min_p, sorted);
        for c in &mut self.candidates {
            c.logit /= self.params.temperature;
        }
        true
    }

    /// Draws one candidate with probability softmax(logit), as llama.cpp's
    /// `llama_sampler_dist_apply` does: one uniform double scaled by the total mass, then a
    /// running sum over the candidates in their current order.
    fn draw(&mut self) -> u32 {
        let max = self
            .candidates
            .iter()
            .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
        let total: f64 = self
            .candidates
            .iter()
            .map(|c| f64::from((c.logit - max).exp()))
            .sum();
        let target = total * self.next_unit();
        let mut running = 0.0f64;
        let mut last_positive = None;
        for c in &self.candidates {
            let p = f64::from((c.logit - max).exp());
            if p <= 0.0 {
                continue;
            }
            running += p;
            last_positive = Some(c.id);
            if running >= target {
                return c.id;
            }
        }
        // Only reachable through rounding in the running sum: take the last token with
        // mass (the maximum always has mass 1 before normalisation).
        last_positive.unwrap_or_else(|| argmax(&self.candidates))
    }

    /// A uniform double in `[0, 1)` from the top 53 bits of one generator output.
    fn next_unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// The candidates after [`prepare`](Self::prepare), with their final probabilities:
    /// the distribution the next draw comes from (tests compare it with hand-computed ones).
    #[cfg(test)]
    pub(crate) fn distribution(&mut self, logits: &[f32], history: &[u32]) -> Vec<(u32, f32)> {
        self.load(logits, history);
        assert!(self.prepare());
        let max = self
            .candidates
            .iter()
            .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
        let total: f32 = self.candidates.iter().map(|c| (c.logit - max).exp()).sum();
        self.candidates
            .iter()
            .map(|c| (c.id, (c.logit - max).exp() / total))
            .collect()
    }
}

/// Exact argmax; NaN never wins; ties go to the lowest id (`llama_sampler_greedy_apply`
/// keeps the first strictly greater logit). Returns 0 when nothing is comparable.
fn argmax(candidates: &[Candidate]) -> u32 {
    let mut best: Option<Candidate> = None;
    for &c in candidates {
        if c.logit.is_nan() {
            continue;
        }
        match best {
            Some(b) if c.logit <= b.logit => {}
            _ => best = Some(c),
        }
    }
    best.map_or(0, |c| c.id)
}

/// `log(sum(exp(logits)))` over the non-NaN logits; `-inf` when none is finite.
fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits
        .iter()
        .filter(|l| !l.is_nan())
        .fold(f32::NEG_INFINITY, |m, &l| m.max(l));
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = logits
        .iter()
        .filter(|l| !l.is_nan())
        .map(|&l| f64::from((l - max).exp()))
        .sum();
    max + sum.ln() as f32
}

/// Keeps the `k` highest logits, sorted best first (llama.cpp `llama_sampler_top_k_impl`,
/// which sorts even when `k` covers every candidate). `k == 0` is off.
pub(crate) fn top_k(candidates: &mut Vec<Candidate>, k: usize, sorted: &mut bool) {
    if k == 0 {
        return;
    }
    let k = k.min(candidates.len());
    if k < candidates.len() {
        candidates.select_nth_unstable_by(k - 1, by_logit_desc);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(by_logit_desc);
    *sorted = true;
}

/// Keeps the smallest best-first prefix whose softmax mass reaches `p` (llama.cpp
/// `llama_sampler_top_p_apply` with `min_keep = 0`; the probabilities are those of the
/// current, not yet temperature-scaled, logits). Large unsorted lists are first tried with
/// only their 256 best entries sorted, as llama.cpp does.
pub(crate) fn top_p(candidates: &mut Vec<Candidate>, p: f32, sorted: &mut bool) {
    if p >= 1.0 || candidates.is_empty() {
        return;
    }
    let max = candidates
        .iter()
        .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
    let total: f32 = candidates.iter().map(|c| (c.logit - max).exp()).sum();
    let keep = |prefix: &[Candidate]| -> Option<usize> {
        let mut cumulative = 0.0f32;
        for (i, c) in prefix.iter().enumerate() {
            cumulative += (c.logit - max).exp() / total;
            if cumulative >= p {
                return Some(i + 1);
            }
        }
        None
    };
    if !*sorted && candidates.len() > 1024 {
        candidates.select_nth_unstable_by(255, by_logit_desc);
        candidates[..256].sort_unstable_by(by_logit_desc);
        if let Some(n) = keep(&candidates[..256]) {
            candidates.truncate(n);
            *sorted = true;
            return;
        }
        // The mass is spread wide (a flat distribution over a large vocabulary). Rather than
        // sorting everything, bucket the candidates by logit (as llama.cpp's
        // `llama_token_data_array_partial_sort` does), find the bucket where the running
        // mass reaches `p`, and sort only that bucket.
        const BUCKETS: usize = 1024;
        const SPAN: f32 = 32.0; // logits more than this below the best share the last bucket
        let bucket =
            |c: &Candidate| (((max - c.logit) * (BUCKETS as f32 / SPAN)) as usize).min(BUCKETS - 1);
        let mut bucket_mass = [0.0f32; BUCKETS];
        for c in candidates.iter() {
            bucket_mass[bucket(c)] += (c.logit - max).exp() / total;
        }
        let mut above = 0.0f32;
        let mut boundary = BUCKETS - 1;
        for (b, m) in bucket_mass.iter().enumerate() {
            if above + m >= p {
                boundary = b;
                break;
            }
            above += m;
        }
        // Buckets before the boundary first, then the boundary bucket; the rest goes.
        let mut front = 0;
        for j in 0..candidates.len() {
            if bucket(&candidates[j]) < boundary {
                candidates.swap(front, j);
                front += 1;
            }
        }
        let mut end = front;
        for j in front..candidates.len() {
            if bucket(&candidates[j]) == boundary {
                candidates.swap(end, j);
                end += 1;
            }
        }
        candidates[front..end].sort_unstable_by(by_logit_desc);
        let mass = |c: &Candidate| (c.logit - max).exp() / total;
        let cut = front + keep_from(&candidates[front..end], above, p, mass).unwrap_or(end - front);
        candidates.truncate(cut);
        // Small kept sets are sorted (cheap) so the draw walks them best first, as
        // llama.cpp does; large ones keep their deterministic bucket order.
        if cut <= 4096 {
            candidates.sort_unstable_by(by_logit_desc);
            *sorted = true;
        }
        return;
    }
    if !*sorted {
        candidates.sort_unstable_by(by_logit_desc);
        *sorted = true;
    }
    if let Some(n) = keep(candidates) {
        candidates.truncate(n);
    }
}

/// How many of `sorted` (best first) to add to a prefix of mass `above` to reach `p`.
fn keep_from(
    sorted: &[Candidate],
    above: f32,
    p: f32,
    mass: impl Fn(&Candidate) -> f32,
) -> Option<usize> {
    let mut cumulative = above;
    for (i, c) in sorted.iter().enumerate() {
        cumulative += mass(c);
        if cumulative >= p {
            return Some(i + 1);
        }
    }
    None
}

/// Drops candidates whose probability is below `p` times the best one's, i.e. whose logit
/// is below `max + ln(p)` (llama.cpp `llama_sampler_min_p_apply`). Order is kept.
pub(crate) fn min_p(candidates: &mut Vec<Candidate>, p: f32, sorted: bool) {
    if p <= 0.0 || candidates.is_empty() {
        return;
    }
    let max = if sorted {
        candidates[0].logit
    } else {
        candidates
            .iter()
            .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit))
    };
    let threshold = max + p.ln();
    candidates.retain(|c| c.logit >= threshold);
}

#[cfg(test)]
#[path = "sampler_tests.rs"]
mod tests;
