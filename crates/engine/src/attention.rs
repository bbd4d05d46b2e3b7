//! Causal grouped-query attention over the F16 key/value cache, with the arithmetic of
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

use half::f16;

/// The batch size from which ggml uses the tiled F32 path (`GGML_FA_TILE_Q`).
pub const TILED_MIN_TOKENS: usize = 64;

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
}

/// Buffers reused across calls. Sized for `capacity` positions.
#[derive(Debug)]
pub struct Scratch {
    scores: Vec<f32>,
    query_f16: Vec<f16>,
    acc_f16: Vec<f16>,
    acc_f32: Vec<f32>,
}

impl Scratch {
    /// Buffers for heads of `head_dim` values and contexts of `capacity` positions.
    pub fn new(head_dim: usize, capacity: usize) -> Self {
        Scratch {
            scores: vec![0.0; capacity],
            query_f16: vec![f16::ZERO; head_dim],
            acc_f16: vec![f16::ZERO; head_dim],
            acc_f32: vec![0.0; head_dim],
        }
    }

    /// The longest sequence these buffers serve.
    pub fn capacity(&self) -> usize {
        self.scores.len()
    }
}

/// The cached keys and values of one sequence in one layer.
#[derive(Clone, Copy, Debug)]
pub struct Cached<'a> {
    /// Shape: (capacity, kv_dim).
    pub keys: &'a [f16],
    /// Shape: (capacity, kv_dim).
    pub values: &'a [f16],
}

/// Attention output of one query token at position `pos`.
///
/// `query`: Shape (head_count, head_dim). `cached`: the token's sequence, positions
/// `0..=pos` valid. `out`: Shape (head_count, head_dim).
pub fn attend(
    shape: &Shape,
    arithmetic: Arithmetic,
    query: &[f32],
    cached: Cached<'_>,
    pos: usize,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let Cached { keys, values } = cached;
    let hd = shape.head_dim;
    let kv_dim = shape.kv_dim();
    let group = shape.head_count / shape.head_count_kv;
    // ggml's mask for LLAMA_SWA_TYPE_STANDARD hides keys with `p_query - p_key >= window`.
    let first = match shape.window {
        Some(w) => (pos + 1).saturating_sub(w),
        None => 0,
    };
    for h in 0..shape.head_count {
        let q = &query[h * hd..(h + 1) * hd];
        let kv_off = (h / group) * hd;
        let o = &mut out[h * hd..(h + 1) * hd];
        let key = |j: usize| &keys[j * kv_dim + kv_off..j * kv_dim + kv_off + hd];
        let value = |j: usize| &values[j * kv_dim + kv_off..j * kv_dim + kv_off + hd];
        match arithmetic {
            Arithmetic::F32 => {
                let scores = &mut scratch.scores[first..=pos];
                let mut max = f32::NEG_INFINITY;
                for (s, j) in scores.iter_mut().zip(first..=pos) {
                    *s = dot_f32_f16(q, key(j)) * shape.scale;
                    max = max.max(*s);
                }
                let acc = &mut scratch.acc_f32;
                acc.iter_mut().for_each(|a| *a = 0.0);
                let mut sum = 0.0f64;
                for (s, j) in scores.iter().zip(first..=pos) {
                    let w = (s - max).exp();
                    sum += w as f64;
                    for (a, v) in acc.iter_mut().zip(value(j)) {
                        *a += v.to_f32() * w;
                    }
                }
                let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum as f32 };
                for (o, a) in o.iter_mut().zip(acc.iter()) {
                    *o = a * inv;
                }
            }
            Arithmetic::F16Accumulate => {
                for (d, s) in scratch.query_f16.iter_mut().zip(q) {
                    *d = f16::from_f32(*s);
                }
                let acc = &mut scratch.acc_f16;
                acc.iter_mut().for_each(|a| *a = f16::ZERO);
                let mut sum = 0.0f32;
                let mut max = f32::NEG_INFINITY;
                for j in first..=pos {
                    let s = dot_f16(key(j), &scratch.query_f16) * shape.scale;
                    let mut max_scale = 1.0f32;
                    let mut weight = 1.0f32;
                    if s > max {
                        let old = max;
                        max = s;
                        max_scale = (old - max).exp();
                        tern_kernels::vec_scale_f16(acc, max_scale);
                    } else {
                        weight = (s - max).exp();
                    }
                    // ggml_vec_mad_f16: one fused multiply-add, then F16.
                    tern_kernels::vec_mad_f16(acc, value(j), weight);
                    sum = sum * max_scale + weight;
                }
                let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
                for (o, a) in o.iter_mut().zip(acc.iter()) {
                    *o = a.to_f32() * inv;
                }
            }
        }
    }
}

/// K·Q with Q in F32 (the tiled path widens K to F32).
fn dot_f32_f16(q: &[f32], k: &[f16]) -> f32 {
    let mut sum = 0.0f64;
    for (a, b) in q.iter().zip(k) {
        sum += (a * b.to_f32()) as f64;
    }
    sum as f32
}

/// K·Q with both in F16, summed in the lane order of llama.cpp's AVX-512 build of
/// `ggml_vec_dot_f16` (the build the goldens come from; the kernels reproduce it on every
/// path). A score that differs in its last bit can flip an F16 rounding of the
/// accumulator, so the order is worth keeping.
fn dot_f16(k: &[f16], q: &[f16]) -> f32 {
    tern_kernels::vec_dot_f16_ggml(k, q)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain softmax attention in f64, the mathematical definition.
    fn naive(shape: &Shape, q: &[f32], k: &[f16], v: &[f16], pos: usize) -> Vec<f32> {
        let hd = shape.head_dim;
        let kv_dim = shape.kv_dim();
        let group = shape.head_count / shape.head_count_kv;
        let mut out = vec![0.0; shape.head_count * hd];
        for h in 0..shape.head_count {
            let off = (h / group) * hd;
            let first = shape.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let scores: Vec<f64> = (first..=pos)
                .map(|j| {
                    let dot: f64 = (0..hd)
                        .map(|d| q[h * hd + d] as f64 * k[j * kv_dim + off + d].to_f64())
                        .sum();
                    dot * shape.scale as f64
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            for d in 0..hd {
                let mut acc = 0.0;
                for (s, j) in scores.iter().zip(first..=pos) {
                    acc += (s - max).exp() / total * v[j * kv_dim + off + d].to_f64();
                }
                out[h * hd + d] = acc as f32;
            }
        }
        out
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        // A small deterministic generator: values in [-1, 1).
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 20_000) as f32 / 10_000.0 - 1.0
            })
            .collect()
    }

    fn check(window: Option<usize>, arithmetic: Arithmetic, tolerance: f32) {
        let shape = Shape {
            head_count: 4,
            head_count_kv: 2,
            head_dim: 8,
            scale: 0.35,
            window,
        };
        let len = 40;
        let q = data(32, 1);
        let k: Vec<f16> = data(len * 16, 2)
            .iter()
            .map(|&x| f16::from_f32(x * 3.0))
            .collect();
        let v: Vec<f16> = data(len * 16, 3)
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        let mut scratch = Scratch::new(8, len);
        for pos in [0, 7, 39] {
            let mut out = vec![0.0; 32];
            attend(
                &shape,
                arithmetic,
                &q,
                Cached {
                    keys: &k,
                    values: &v,
                },
                pos,
                &mut scratch,
                &mut out,
            );
            let want = naive(&shape, &q, &k, &v, pos);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < tolerance, "pos {pos} [{i}]: {a} vs {b}");
            }
        }
    }

    #[test]
    fn f32_path_is_softmax_attention() {
        check(None, Arithmetic::F32, 1e-5);
        check(Some(5), Arithmetic::F32, 1e-5);
    }

    #[test]
    fn f16_path_is_softmax_attention_within_f16_rounding() {
        check(None, Arithmetic::F16Accumulate, 4e-3);
        check(Some(5), Arithmetic::F16Accumulate, 4e-3);
    }

    #[test]
    fn f16_path_rounds_the_accumulator() {
        // One key: the output is the value itself, rounded through the F16 accumulator.
        let shape = Shape {
            head_count: 1,
            head_count_kv: 1,
            head_dim: 2,
            scale: 1.0,
            window: None,
        };
        let k = [f16::from_f32(1.0), f16::from_f32(0.0)];
        let v = [f16::from_f32(0.1), f16::from_f32(3.0)];
        let mut scratch = Scratch::new(2, 1);
        let mut out = [0.0; 2];
        attend(
            &shape,
            Arithmetic::F16Accumulate,
            &[0.5, 0.5],
            Cached {
                keys: &k,
                values: &v,
            },
            0,
            &mut scratch,
            &mut out,
        );
        assert_eq!(out, [f16::from_f32(0.1).to_f32(), 3.0]);
    }

    #[test]
    fn batch_size_picks_the_path() {
        assert_eq!(Arithmetic::for_batch(1), Arithmetic::F16Accumulate);
        assert_eq!(Arithmetic::for_batch(63), Arithmetic::F16Accumulate);
        assert_eq!(Arithmetic::for_batch(64), Arithmetic::F32);
    }
}
