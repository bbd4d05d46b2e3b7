//! Causal grouped-query attention over the key/value cache, with the arithmetic of
//! llama.cpp's CPU flash attention (ggml-cpu `ops.cpp`,
//! `ggml_compute_forward_flash_attn_ext_f16`), which made the goldens.
//!
//! ggml takes one of two paths, and they round differently:
//! - batches of [`TILED_MIN_TOKENS`] tokens or more (prompt processing) go through
//!   `ggml_compute_forward_flash_attn_ext_tiled`: Q stays F32, K and V are widened to
//!   F32, scores and the weighted sum of V are F32 ([`Arithmetic::F32`]);
//! - smaller batches (token-by-token decoding) go through `..._one_chunk`: Q is rounded
//!   to F16 for the K·Q dot product, and the weighted sum of V is accumulated in an F16
//!   vector with an online softmax, rounding after every step ([`Arithmetic::F16Accumulate`]).
//!
//! Matching the second path matters: its F16 rounding moves logits by a few hundredths.
//!
//! A quantized cache (Q8_0, Q4_0) always takes ggml's one-chunk path (the tiled path is
//! for F16/F32 caches only), with that path's arithmetic for quantized types: Q is
//! quantized to the K type's `vec_dot_type` (Q8_0 for both) and each K·Q is the integer
//! block dot product of the weights' matmul; each V row is dequantized to F32 and
//! accumulated in an F32 vector with the same online softmax.
//!
//! The cache may hold a sliding-window layer as a ring ([`Cached::positions`] smaller than
//! the context): position `j` is at row `j % positions`, as llama.cpp's sliding-window
//! cache puts it in cell `j % size` (see [`crate::KvCache`]). Keys are visited in row
//! order, as ggml walks cells `0..n_kv`: the online softmax (and the tiled path's tiles
//! of [`KV_TILE`] cells) depend on that order, so once a ring has wrapped its newest
//! positions, stored in its first rows, come first. Until then row order is position
//! order.
//!
//! Speed without changing a bit: the loops over keys and over the head dimension are
//! tern-kernels' exact SIMD kernels ([`tern_kernels::attention`]), which give the bits of
//! the scalar arithmetic above on every CPU. The F32 path scores a tile of
//! [`QUERY_TILE`] consecutive tokens at once (one pass over the keys for the whole
//! tile). The online softmax of the one-chunk path only needs the scores in order, so
//! all of a token's scores are computed first, the maxima and weights replayed in order
//! (the scalar `expf` of the reference), and the values then accumulated by one kernel
//! call. The work is split over the thread pool by groups of [`QUERY_TILE`] tokens
//! (prompt batches) or by (token, head) (decoding), each thread with its own
//! [`Scratch`]; every output value is computed by one thread in one order, so the result
//! does not depend on the thread count.

use std::sync::Mutex;

use half::f16;
use tern_gguf::GgmlType;
use tern_kernels::Kernels;
use tern_kernels::attention::{QUERY_TILE, SOFTMAX_TILE};
use tern_kernels::pool::ThreadPool;

use crate::kv_cache::{Rotation, hadamard};

/// The batch size from which ggml uses the tiled F32 path (`GGML_FA_TILE_Q`).
pub const TILED_MIN_TOKENS: usize = 64;

/// Below this much work (multiply-adds of a layer's attention), decoding runs on the
/// calling thread alone: handing it to the workers would cost more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// Which of ggml's flash-attention paths to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// Q, K, V and the accumulator in F32 (ggml's tiled path, prompt batches).
    F32,
    /// Q rounded to F16, V accumulated in F16 (ggml's one-chunk path, decoding).
    F16Accumulate,
}

impl Arithmetic {
    /// The path ggml takes for a batch of `n_tokens` tokens.
    pub fn for_batch(n_tokens: usize) -> Self {
        if n_tokens >= TILED_MIN_TOKENS {
            Arithmetic::F32
        } else {
            Arithmetic::F16Accumulate
        }
    }
}

/// Head layout and masking of one attention layer.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub head_count: usize,
    pub head_count_kv: usize,
    pub head_dim: usize,
    /// Multiplies K·Q before the softmax.
    pub scale: f32,
    /// Sliding window: a query at position `p` sees keys at positions `> p - window`.
    pub window: Option<usize>,
}

impl Shape {
    fn kv_dim(&self) -> usize {
        self.head_count_kv * self.head_dim
    }

    fn q_dim(&self) -> usize {
        self.head_count * self.head_dim
    }

    /// The first position a query at `pos` sees. ggml's mask for
    /// `LLAMA_SWA_TYPE_STANDARD` hides keys with `p_query - p_key >= window`.
    fn first(&self, pos: usize) -> usize {
        match self.window {
            Some(w) => (pos + 1).saturating_sub(w),
            None => 0,
        }
    }
}

/// One thread's buffers. Sized for `capacity` positions.
#[derive(Debug)]
pub struct Scratch {
    /// Scores of a query tile, Shape: (capacity, QUERY_TILE); or of one query.
    scores: Vec<f32>,
    /// Softmax weights of a query tile, Shape: (QUERY_TILE, capacity); or of one query.
    weights: Vec<f32>,
    /// Accumulator rescales of the online softmax. Shape: (capacity).
    rescale: Vec<f32>,
    /// A query tile transposed. Shape: (head_dim, QUERY_TILE).
    query_t: Vec<f32>,
    query_f16: Vec<f16>,
    acc_f16: Vec<f16>,
    acc_f32: Vec<f32>,
    /// One head of Q as Q8_0 blocks (quantized caches).
    query_q8: Vec<u8>,
    /// One head of Q, rotated (quantized caches).
    query_f32: Vec<f32>,
}

impl Scratch {
    /// Buffers for heads of `head_dim` values and contexts of `capacity` positions.
    pub fn new(head_dim: usize, capacity: usize) -> Self {
        Scratch {
            scores: vec![0.0; capacity * QUERY_TILE],
            weights: vec![0.0; capacity * QUERY_TILE],
            rescale: vec![0.0; capacity],
            query_t: vec![0.0; head_dim * QUERY_TILE],
            query_f16: vec![f16::ZERO; head_dim],
            acc_f16: vec![f16::ZERO; head_dim],
            acc_f32: vec![0.0; head_dim],
            query_q8: vec![0; q8_0_bytes(head_dim.next_multiple_of(32))],
            query_f32: vec![0.0; head_dim],
        }
    }

    /// The longest sequence these buffers serve.
    pub fn capacity(&self) -> usize {
        self.rescale.len()
    }
}

/// The buffers of every thread that may run attention: one [`Scratch`] per thread of
/// the pool, each taken by the thread running a chunk (its index is the pool's
/// `thread_index`, so the locks are never contended).
#[derive(Debug)]
pub struct Workspace {
    threads: Vec<Mutex<Scratch>>,
    head_dim: usize,
    capacity: usize,
}

impl Workspace {
    /// Buffers for one thread, heads of `head_dim` values, `capacity` positions.
    pub fn new(head_dim: usize, capacity: usize) -> Self {
        Workspace {
            threads: vec![Mutex::new(Scratch::new(head_dim, capacity))],
            head_dim,
            capacity,
        }
    }

    /// Makes buffers for `n` threads (allocates once, when the pool is set).
    pub fn set_threads(&mut self, n: usize) {
        let n = n.max(1);
        self.threads.truncate(n);
        while self.threads.len() < n {
            let scratch = Scratch::new(self.head_dim, self.capacity);
            self.threads.push(Mutex::new(scratch));
        }
    }

    /// The longest sequence these buffers serve.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Runs `f` with the buffers of thread `index`.
    fn with<R>(&self, index: usize, f: impl FnOnce(&mut Scratch) -> R) -> R {
        let slot = &self.threads[index.min(self.threads.len() - 1)];
        // A panic in another chunk leaves the buffers as valid as before: reuse them.
        let mut scratch = slot.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut scratch)
    }
}

/// Bytes of `values` values as Q8_0 blocks.
fn q8_0_bytes(values: usize) -> usize {
    values / 32 * 34
}

/// The rows of cached keys (or values) of one sequence in one layer.
#[derive(Clone, Copy, Debug)]
pub enum KvRows<'a> {
    /// Shape: (positions, kv_dim).
    F16(&'a [f16]),
    /// Shape: (positions, row_bytes), heads of `head_bytes` one after the other.
    Quantized {
        ty: GgmlType,
        bytes: &'a [u8],
        row_bytes: usize,
        head_bytes: usize,
    },
}

/// The cached keys and values of one sequence in one layer.
#[derive(Clone, Copy, Debug)]
pub struct Cached<'a> {
    pub keys: KvRows<'a>,
    pub values: KvRows<'a>,
    /// Positions the rows hold: position `j` is row `j % positions` (a ring for a
    /// sliding-window layer, the whole context otherwise).
    pub positions: usize,
    /// The Walsh–Hadamard rotation the stored keys and values went through (quantized
    /// caches): queries get the keys' one, the output the values' one back.
    pub rotation: Rotation,
}

/// The tokens of a batch as attention sees them.
#[derive(Clone, Copy)]
pub struct Tokens<'a> {
    /// Shape: (n, head_count * head_dim).
    pub queries: &'a [f32],
    pub seq_ids: &'a [u32],
    pub positions: &'a [u32],
    /// The cache of a sequence in this layer (positions `0..=pos` of each token valid).
    pub cached: &'a (dyn Fn(u32) -> Cached<'a> + Sync),
}

impl std::fmt::Debug for Tokens<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("n", &self.seq_ids.len())
            .finish_non_exhaustive()
    }
}

impl Tokens<'_> {
    fn len(&self) -> usize {
        self.seq_ids.len()
    }

    fn pos(&self, t: usize) -> usize {
        self.positions[t] as usize
    }
}

/// Attention output of every token of a batch: `out` rows `t` (Shape: (head_count,
/// head_dim) each) for `t < tokens.len()`. `out` must hold
/// `tokens.len().next_multiple_of(QUERY_TILE)` rows (the rows past the batch are left
/// as they are). With `pool`, the work is split over its threads (`workspace` must have
/// buffers for as many); the result is the same bits either way.
pub fn attend_batch(
    shape: &Shape,
    arithmetic: Arithmetic,
    tokens: Tokens<'_>,
    workspace: &Workspace,
    pool: Option<&ThreadPool>,
    out: &mut [f32],
) {
    let n = tokens.len();
    let q_dim = shape.q_dim();
    let hd = shape.head_dim;
    if n == 0 {
        return;
    }
    let quantized = matches!(
        (tokens.cached)(tokens.seq_ids[0]).keys,
        KvRows::Quantized { .. }
    );
    if arithmetic == Arithmetic::F32 && !quantized {
        // Groups of QUERY_TILE rows, all heads of a group in one chunk item.
        let out = &mut out[..n.next_multiple_of(QUERY_TILE) * q_dim];
        let work = |items: std::ops::Range<usize>, part: &mut [f32], thread: usize| {
            workspace.with(thread, |scratch| {
                for (i, g) in items.enumerate() {
                    let rows = g * QUERY_TILE..((g + 1) * QUERY_TILE).min(n);
                    let part = &mut part[i * QUERY_TILE * q_dim..];
                    attend_group_f32(shape, &tokens, rows, scratch, part);
                }
            })
        };
        match pool {
            Some(pool) => pool.for_each_chunk_mut(out, QUERY_TILE * q_dim, 1, work),
            None => work(0..out.len() / (QUERY_TILE * q_dim), out, 0),
        }
        return;
    }
    // One item per (token, head).
    let out = &mut out[..n * q_dim];
    let items = n * shape.head_count;
    let keys: usize = (0..n)
        .map(|t| tokens.pos(t) + 1 - shape.first(tokens.pos(t)))
        .sum();
    let min_chunk = if keys * shape.head_count * hd < PARALLEL_MIN_WORK {
        items
    } else {
        1
    };
    let work = |items: std::ops::Range<usize>, part: &mut [f32], thread: usize| {
        workspace.with(thread, |scratch| {
            for (i, item) in items.enumerate() {
                let (t, h) = (item / shape.head_count, item % shape.head_count);
                let o = &mut part[i * hd..(i + 1) * hd];
                let q = &tokens.queries[t * q_dim + h * hd..t * q_dim + (h + 1) * hd];
                let cached = (tokens.cached)(tokens.seq_ids[t]);
                if quantized {
                    attend_head_quantized(shape, q, h, cached, tokens.pos(t), scratch, o);
                } else {
                    attend_head_f16(shape, q, h, cached, tokens.pos(t), scratch, o);
                }
            }
        })
    };
    match pool {
        Some(pool) => pool.for_each_chunk_mut(out, hd, min_chunk, work),
        None => work(0..items, out, 0),
    }
}

/// The position cache row `cell` holds while a ring of `ring` rows has been written up
/// to position `last`: rows keep position `p` at `p % ring`, so row `cell` holds the
/// latest position up to `last` congruent to it (`None` before the ring got there).
fn position_of_cell(cell: usize, last: usize, ring: usize) -> Option<usize> {
    let base = last - last % ring;
    if cell <= last % ring {
        Some(base + cell)
    } else {
        (base + cell).checked_sub(ring)
    }
}

/// Positions `first..=pos` (at most `ring` of them) as runs of consecutive rows of a
/// ring of `ring` rows, `(first position, first row, count)`, in ROW order: the order
/// in which llama.cpp's attention walks its cache cells (`0..n_kv`, masked cells
/// skipped). After the ring wraps, the newest positions sit in its first rows and come
/// first (llama.cpp `llama_kv_cache::find_slot` puts position `p` of a fresh sequence in
/// cell `p % (n_swa + n_ubatch)`, see [`crate::KvCache`]).
fn cell_runs(first: usize, pos: usize, ring: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let base = pos - pos % ring;
    let (newest, oldest) = if first >= base {
        ((first, first - base, pos + 1 - first), None)
    } else {
        (
            (base, 0, pos + 1 - base),
            Some((first, first % ring, base - first)),
        )
    };
    std::iter::once(newest).chain(oldest)
}

/// Positions `from..=to` as runs of consecutive rows of a ring of `ring` rows:
/// `(first position, first row, count)`, in position order.
fn runs(from: usize, to: usize, ring: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let mut next = from;
    std::iter::from_fn(move || {
        if next > to {
            return None;
        }
        let row = next % ring;
        let count = (to + 1 - next).min(ring - row);
        let run = (next, row, count);
        next += count;
        Some(run)
    })
}

/// The F32 path for the batch rows `rows` (at most [`QUERY_TILE`]), all heads; `out`
/// starts at the first of them.
fn attend_group_f32(
    shape: &Shape,
    tokens: &Tokens<'_>,
    rows: std::ops::Range<usize>,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    // Tiles: consecutive rows of one sequence at consecutive positions, whose keys are
    // then one range of positions (within a ring's span, see `KvCache`).
    let mut start = rows.start;
    while start < rows.end {
        let mut end = start + 1;
        while end < rows.end
            && tokens.seq_ids[end] == tokens.seq_ids[start]
            && tokens.pos(end) == tokens.pos(start) + (end - start)
        {
            end += 1;
        }
        let o = &mut out[(start - rows.start) * shape.q_dim()..];
        for h in 0..shape.head_count {
            attend_tile_f32(shape, tokens, start..end, h, scratch, o);
        }
        start = end;
    }
}

/// The F32 path for head `h` of the consecutive tokens `tile` of one sequence.
fn attend_tile_f32(
    shape: &Shape,
    tokens: &Tokens<'_>,
    tile: std::ops::Range<usize>,
    h: usize,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let kernels = Kernels::current();
    let (hd, q_dim, kv_dim) = (shape.head_dim, shape.q_dim(), shape.kv_dim());
    let cached = (tokens.cached)(tokens.seq_ids[tile.start]);
    let (KvRows::F16(keys), KvRows::F16(values)) = (cached.keys, cached.values) else {
        return;
    };
    let ring = cached.positions;
    let kv_off = h / (shape.head_count / shape.head_count_kv) * hd;
    let lanes = tile.len();
    // Q transposed, lanes past the tile zero.
    let query_t = &mut scratch.query_t[..hd * QUERY_TILE];
    query_t.fill(0.0);
    for (l, t) in tile.clone().enumerate() {
        let q = &tokens.queries[t * q_dim + h * hd..t * q_dim + (h + 1) * hd];
        for (d, &v) in q.iter().enumerate() {
            query_t[d * QUERY_TILE + l] = v;
        }
    }
    let lo = shape.first(tokens.pos(tile.start));
    let hi = tokens.pos(tile.end - 1);
    let scores = &mut scratch.scores[..(hi + 1 - lo) * QUERY_TILE];
    for (j, row, count) in runs(lo, hi, ring) {
        kernels.attention_scores_f32(
            query_t,
            &keys[row * kv_dim + kv_off..],
            kv_dim,
            count,
            shape.scale,
            &mut scores[(j - lo) * QUERY_TILE..],
        );
    }
    for l in 0..lanes {
        let pos = tokens.pos(tile.start + l);
        let first = shape.first(pos);
        let acc = &mut scratch.acc_f32[..hd];
        // The rows the query's keys occupy, walked in row (cache cell) order; a row
        // outside `first..=pos` is a masked cell.
        let cells = if first >= pos - pos % ring {
            first % ring..=pos % ring
        } else {
            0..=ring - 1
        };
        let score = |cell: usize| match position_of_cell(cell, pos, ring) {
            Some(j) if j >= first => scores[(j - lo) * QUERY_TILE + l],
            _ => f32::NEG_INFINITY,
        };
        let sum = tiled_softmax(kernels, cells, score, acc, |acc, from, weights| {
            kernels.attention_accumulate_f32(
                acc,
                &values[from * kv_dim + kv_off..],
                kv_dim,
                weights,
            );
        });
        let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
        let o = &mut out[l * q_dim + h * hd..l * q_dim + (h + 1) * hd];
        for (o, a) in o.iter_mut().zip(acc.iter()) {
            *o = a * inv;
        }
    }
}

/// Keys per tile of ggml's tiled flash attention (`GGML_FA_TILE_KV`): the online
/// softmax steps from one tile of cache cells to the next.
pub(crate) const KV_TILE: usize = SOFTMAX_TILE;

/// The online softmax and weighted sum of ggml's tiled flash attention
/// (`ggml_compute_forward_flash_attn_ext_tiled`) for one query over the cache cells
/// `cells` (`score(c)` each, `-inf` for a cell the query does not see): zeroes `acc`,
/// leaves the un-normalised weighted sum of the values in it and returns the sum of the
/// weights. The cells go in tiles of [`KV_TILE`], aligned on multiples of it as ggml's
/// loop over `0..n_kv` is; a tile without a visible cell is skipped. Per tile: the
/// tile's maximum `m`; when the running maximum grows, `acc` and the sum are multiplied
/// by `expf(old - new)` (libm, as ggml's scalar `expf`); the weights of the tile
/// (`Kernels::attention_softmax_tile`: `softmax_exp(s - max)`, 0 for the masked cells)
/// and their sum in ggml's order, added in f64 to the f32 sum; then
/// `accumulate(acc, from, weights)` adds `fma(v_c, w_c, ·)` for the cells
/// `from..from + weights.len()` in order, from the tile's first visible cell to its last
/// (the masked cells around them have zero weights, which change nothing, and are
/// skipped).
pub(crate) fn tiled_softmax(
    kernels: Kernels,
    cells: std::ops::RangeInclusive<usize>,
    score: impl Fn(usize) -> f32,
    acc: &mut [f32],
    mut accumulate: impl FnMut(&mut [f32], usize, &[f32]),
) -> f32 {
    acc.fill(0.0);
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0.0f32);
    let mut weights = [0.0f32; KV_TILE];
    let (first, last) = (*cells.start(), *cells.end());
    let mut base = first / KV_TILE * KV_TILE;
    while base <= last {
        let mut scores = [f32::NEG_INFINITY; KV_TILE];
        let (mut from, mut to) = (usize::MAX, 0);
        for c in first.max(base)..=last.min(base + KV_TILE - 1) {
            let s = score(c);
            scores[c - base] = s;
            if s != f32::NEG_INFINITY {
                from = from.min(c);
                to = c;
            }
        }
        let tile = base;
        base += KV_TILE;
        if from == usize::MAX {
            continue;
        }
        let tile_max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        let new_max = max.max(tile_max);
        if new_max > max {
            let ms = (max - new_max).exp();
            acc.iter_mut().for_each(|a| *a *= ms);
            sum *= ms;
        }
        max = new_max;
        sum = (sum as f64 + kernels.attention_softmax_tile(&scores, max, &mut weights)) as f32;
        accumulate(acc, from, &weights[from - tile..=to - tile]);
    }
    sum
}

/// The online softmax of ggml's one-chunk path replayed over scores in order: the
/// weight of each key and the factor the accumulator is rescaled by before it (1 when
/// the maximum did not move). Returns the sum of the weights.
fn online_softmax(scores: &[f32], weights: &mut [f32], rescale: &mut [f32]) -> f32 {
    let mut sum = 0.0f32;
    let mut max = f32::NEG_INFINITY;
    for ((&s, w), r) in scores.iter().zip(weights).zip(rescale) {
        let mut max_scale = 1.0f32;
        let mut weight = 1.0f32;
        if s > max {
            let old = max;
            max = s;
            max_scale = (old - max).exp();
        } else {
            weight = (s - max).exp();
        }
        *w = weight;
        *r = max_scale;
        // `S = S*ms + vs`, which GCC contracts to one fused multiply-add in ggml.
        sum = sum.mul_add(max_scale, weight);
    }
    sum
}

/// One head of one token on an F16 cache, ggml's one-chunk path: Q rounded to F16,
/// the F16 accumulator.
fn attend_head_f16(
    shape: &Shape,
    q: &[f32],
    h: usize,
    cached: Cached<'_>,
    pos: usize,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let kernels = Kernels::current();
    let (KvRows::F16(keys), KvRows::F16(values)) = (cached.keys, cached.values) else {
        return;
    };
    let (hd, kv_dim) = (shape.head_dim, shape.kv_dim());
    let kv_off = h / (shape.head_count / shape.head_count_kv) * hd;
    let ring = cached.positions;
    let first = shape.first(pos);
    let n = pos + 1 - first;
    let query = &mut scratch.query_f16[..hd];
    for (d, s) in query.iter_mut().zip(q) {
        *d = f16::from_f32(*s);
    }
    // Scores, weights and rescales in the order the cache rows are visited.
    let scores = &mut scratch.scores[..n];
    let mut done = 0;
    for (_, row, count) in cell_runs(first, pos, ring) {
        kernels.attention_scores_f16(
            query,
            &keys[row * kv_dim + kv_off..],
            kv_dim,
            count,
            shape.scale,
            &mut scores[done..],
        );
        done += count;
    }
    let (weights, rescale) = (&mut scratch.weights[..n], &mut scratch.rescale[..n]);
    let sum = online_softmax(scores, weights, rescale);
    let acc = &mut scratch.acc_f16[..hd];
    acc.fill(f16::ZERO);
    let mut done = 0;
    for (_, row, count) in cell_runs(first, pos, ring) {
        let at = done..done + count;
        kernels.attention_accumulate_f16(
            acc,
            &values[row * kv_dim + kv_off..],
            kv_dim,
            &weights[at.clone()],
            &rescale[at],
        );
        done += count;
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = a.to_f32() * inv;
    }
}

/// One head of one token on a quantized cache: ggml's one-chunk path for a K type whose
/// `vec_dot_type` is Q8_0 (`ggml_compute_forward_flash_attn_ext_f16_one_chunk`): Q
/// quantized to Q8_0, K·Q as the block dot product, V dequantized to F32 and
/// accumulated in F32 with the online softmax.
fn attend_head_quantized(
    shape: &Shape,
    q: &[f32],
    h: usize,
    cached: Cached<'_>,
    pos: usize,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let (
        KvRows::Quantized {
            ty,
            bytes: keys,
            row_bytes,
            head_bytes,
        },
        KvRows::Quantized { bytes: values, .. },
    ) = (cached.keys, cached.values)
    else {
        return;
    };
    let kernels = Kernels::current();
    let hd = shape.head_dim;
    let head_off = h / (shape.head_count / shape.head_count_kv) * head_bytes;
    let ring = cached.positions;
    let first = shape.first(pos);
    let n = pos + 1 - first;
    let query_q8 = &mut scratch.query_q8[..q8_0_bytes(hd)];
    let rotated = &mut scratch.query_f32[..hd];
    rotated.copy_from_slice(q);
    hadamard(rotated, cached.rotation.keys);
    // The cache was made for this head size, so the row lengths agree: a failure
    // here is a bug, shown as NaN outputs rather than a panic.
    if kernels
        .quantize_activation_row(GgmlType::Q8_0, rotated, query_q8)
        .is_err()
    {
        out.fill(f32::NAN);
        return;
    }
    // Scores, weights and rescales in the order the cache rows are visited.
    let scores = &mut scratch.scores[..n];
    let mut done = 0;
    for (_, row, count) in cell_runs(first, pos, ring) {
        let at = row * row_bytes + head_off;
        let scored = kernels.attention_scores_quantized(
            ty,
            query_q8,
            hd,
            &keys[at..],
            row_bytes,
            count,
            shape.scale,
            &mut scores[done..],
        );
        if scored.is_err() {
            out.fill(f32::NAN);
            return;
        }
        done += count;
    }
    let (weights, rescale) = (&mut scratch.weights[..n], &mut scratch.rescale[..n]);
    let sum = online_softmax(scores, weights, rescale);
    let acc = &mut scratch.acc_f32[..hd];
    acc.fill(0.0);
    let mut done = 0;
    for (_, row, count) in cell_runs(first, pos, ring) {
        let at = done..done + count;
        done += count;
        let added = kernels.attention_accumulate_quantized(
            ty,
            acc,
            &values[row * row_bytes + head_off..],
            row_bytes,
            &weights[at.clone()],
            &rescale[at],
        );
        if added.is_err() {
            out.fill(f32::NAN);
            return;
        }
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = a * inv;
    }
    hadamard(out, cached.rotation.values);
}

#[cfg(test)]
#[path = "attention_reference.rs"]
mod reference;

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;
