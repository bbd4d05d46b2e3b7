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
//!
//! A quantized cache (Q8_0, Q4_0) always takes ggml's one-chunk path (the tiled path is
//! for F16/F32 caches only), with that path's arithmetic for quantized types: Q is
//! quantized to the K type's `vec_dot_type` (Q8_0 for both) and each K·Q is the integer
//! block dot product of the weights' matmul; each V row is dequantized to F32 and
//! accumulated in an F32 vector with the same online softmax ([`attend`]).
//!
//! The cache may hold a sliding-window layer as a ring ([`Cached::positions`] smaller than
//! the context): position `j` is at index `j % positions`, and positions are visited in
//! the same order as in a full cache, so the result does not depend on the layout.

use half::f16;
use tern_gguf::GgmlType;
use tern_kernels::Kernels;

use crate::kv_cache::{Rotation, hadamard};

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
    /// One head of Q as Q8_0 blocks (quantized caches).
    query_q8: Vec<u8>,
    /// One dequantized V row of one head (quantized caches).
    value_f32: Vec<f32>,
    /// One head of Q, rotated (quantized caches).
    query_f32: Vec<f32>,
}

impl Scratch {
    /// Buffers for heads of `head_dim` values and contexts of `capacity` positions.
    pub fn new(head_dim: usize, capacity: usize) -> Self {
        Scratch {
            scores: vec![0.0; capacity],
            query_f16: vec![f16::ZERO; head_dim],
            acc_f16: vec![f16::ZERO; head_dim],
            acc_f32: vec![0.0; head_dim],
            query_q8: vec![0; q8_0_bytes(head_dim.next_multiple_of(32))],
            value_f32: vec![0.0; head_dim],
            query_f32: vec![0.0; head_dim],
        }
    }

    /// The longest sequence these buffers serve.
    pub fn capacity(&self) -> usize {
        self.scores.len()
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
    let (keys, values) = match (cached.keys, cached.values) {
        (KvRows::F16(k), KvRows::F16(v)) => (k, v),
        (KvRows::Quantized { .. }, KvRows::Quantized { .. }) => {
            return attend_quantized(shape, query, cached, pos, scratch, out);
        }
        _ => unreachable!("keys and values share one cache type"),
    };
    let ring = cached.positions;
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
        let row = |j: usize| (j % ring) * kv_dim + kv_off;
        let key = |j: usize| &keys[row(j)..row(j) + hd];
        let value = |j: usize| &values[row(j)..row(j) + hd];
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
                    // `S = S*ms + vs`, which GCC contracts to one fused multiply-add in ggml.
                    sum = sum.mul_add(max_scale, weight);
                }
                let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
                for (o, a) in o.iter_mut().zip(acc.iter()) {
                    *o = a.to_f32() * inv;
                }
            }
        }
    }
}

/// Attention over a quantized cache: ggml's one-chunk path for a K type whose
/// `vec_dot_type` is Q8_0 (`ggml_compute_forward_flash_attn_ext_f16_one_chunk`): Q
/// quantized to Q8_0 per head, K·Q as the block dot product, V dequantized to F32 and
/// accumulated in F32 with the online softmax.
fn attend_quantized(
    shape: &Shape,
    query: &[f32],
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
    let group = shape.head_count / shape.head_count_kv;
    let ring = cached.positions;
    let first = match shape.window {
        Some(w) => (pos + 1).saturating_sub(w),
        None => 0,
    };
    let query_q8 = &mut scratch.query_q8[..q8_0_bytes(hd)];
    let value = &mut scratch.value_f32[..hd];
    for h in 0..shape.head_count {
        let q = &mut scratch.query_f32[..hd];
        q.copy_from_slice(&query[h * hd..(h + 1) * hd]);
        hadamard(q, cached.rotation.keys);
        let o = &mut out[h * hd..(h + 1) * hd];
        // The cache was made for this head size, so the row lengths agree: a failure
        // here is a bug, shown as NaN outputs rather than a panic.
        if kernels
            .quantize_activation_row(GgmlType::Q8_0, q, query_q8)
            .is_err()
        {
            o.fill(f32::NAN);
            continue;
        }
        let head_off = (h / group) * head_bytes;
        let row = |j: usize| (j % ring) * row_bytes + head_off;
        let acc = &mut scratch.acc_f32[..hd];
        acc.fill(0.0);
        let mut sum = 0.0f32;
        let mut max = f32::NEG_INFINITY;
        for j in first..=pos {
            let at = row(j);
            let s = kernels
                .vec_dot(ty, &keys[at..at + head_bytes], query_q8, hd)
                .unwrap_or(f32::NAN)
                * shape.scale;
            let mut max_scale = 1.0f32;
            let mut weight = 1.0f32;
            if s > max {
                let old = max;
                max = s;
                max_scale = (old - max).exp();
                acc.iter_mut().for_each(|a| *a *= max_scale);
            } else {
                weight = (s - max).exp();
            }
            if tern_kernels::dequantize_row(ty, &values[at..at + head_bytes], value).is_err() {
                value.fill(f32::NAN);
            }
            // ggml_vec_mad_f32.
            for (a, v) in acc.iter_mut().zip(value.iter()) {
                *a += v * weight;
            }
            // `S = S*ms + vs`, which GCC contracts to one fused multiply-add in ggml.
            sum = sum.mul_add(max_scale, weight);
        }
        let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
        for (o, a) in o.iter_mut().zip(acc.iter()) {
            *o = a * inv;
        }
        hadamard(o, cached.rotation.values);
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
                    keys: KvRows::F16(&k),
                    values: KvRows::F16(&v),
                    positions: len,
                    rotation: Rotation::default(),
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
                keys: KvRows::F16(&k),
                values: KvRows::F16(&v),
                positions: 1,
                rotation: Rotation::default(),
            },
            0,
            &mut scratch,
            &mut out,
        );
        assert_eq!(out, [f16::from_f32(0.1).to_f32(), 3.0]);
    }

    #[test]
    fn a_ring_of_the_window_gives_identical_results() {
        let shape = Shape {
            head_count: 4,
            head_count_kv: 2,
            head_dim: 8,
            scale: 0.35,
            window: Some(5),
        };
        let (len, ring) = (40, 12);
        let q = data(32, 1);
        let k: Vec<f16> = data(len * 16, 2)
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        let v: Vec<f16> = data(len * 16, 3)
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        // The ring holds the last `ring` positions, position p at row p % ring.
        let mut ring_k = vec![f16::ZERO; ring * 16];
        let mut ring_v = vec![f16::ZERO; ring * 16];
        for p in len - ring..len {
            let (src, dst) = (p * 16, (p % ring) * 16);
            ring_k[dst..dst + 16].copy_from_slice(&k[src..src + 16]);
            ring_v[dst..dst + 16].copy_from_slice(&v[src..src + 16]);
        }
        for arithmetic in [Arithmetic::F32, Arithmetic::F16Accumulate] {
            let mut scratch = Scratch::new(8, len);
            let (mut full, mut ringed) = (vec![0.0; 32], vec![0.0; 32]);
            let cached = |k, v, positions| Cached {
                keys: KvRows::F16(k),
                values: KvRows::F16(v),
                positions,
                rotation: Rotation::default(),
            };
            attend(
                &shape,
                arithmetic,
                &q,
                cached(&k, &v, len),
                39,
                &mut scratch,
                &mut full,
            );
            attend(
                &shape,
                arithmetic,
                &q,
                cached(&ring_k, &ring_v, ring),
                39,
                &mut scratch,
                &mut ringed,
            );
            assert_eq!(full, ringed, "{arithmetic:?}");
        }
    }

    #[test]
    fn quantized_cache_is_softmax_attention_within_its_rounding() {
        let shape = Shape {
            head_count: 4,
            head_count_kv: 2,
            head_dim: 32,
            scale: 0.2,
            window: None,
        };
        let len = 24;
        let q = data(128, 1);
        let k = data(len * 64, 2);
        let v = data(len * 64, 3);
        for (ty, tolerance) in [(GgmlType::Q8_0, 0.01), (GgmlType::Q4_0, 0.08)] {
            let row_bytes = 64 / 32 * ty.type_size();
            let mut kq = vec![0u8; len * row_bytes];
            let mut vq = vec![0u8; len * row_bytes];
            for p in 0..len {
                let at = p * row_bytes..(p + 1) * row_bytes;
                tern_kernels::quantize_row(ty, &k[p * 64..(p + 1) * 64], &mut kq[at.clone()])
                    .unwrap();
                tern_kernels::quantize_row(ty, &v[p * 64..(p + 1) * 64], &mut vq[at]).unwrap();
            }
            let rows = |bytes| KvRows::Quantized {
                ty,
                bytes,
                row_bytes,
                head_bytes: row_bytes / 2,
            };
            let cached = Cached {
                keys: rows(&kq),
                values: rows(&vq),
                positions: len,
                rotation: Rotation::default(),
            };
            let mut scratch = Scratch::new(32, len);
            let mut out = vec![0.0; 128];
            // The arithmetic argument does not matter for a quantized cache.
            attend(
                &shape,
                Arithmetic::F32,
                &q,
                cached,
                len - 1,
                &mut scratch,
                &mut out,
            );
            let kf: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
            let vf: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            let want = naive(&shape, &q, &kf, &vf, len - 1);
            let max = out
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(max < tolerance, "{ty:?}: max difference {max}");
            assert!(max > 0.0, "{ty:?}: quantization must show");
        }
    }

    #[test]
    fn batch_size_picks_the_path() {
        assert_eq!(Arithmetic::for_batch(1), Arithmetic::F16Accumulate);
        assert_eq!(Arithmetic::for_batch(63), Arithmetic::F16Accumulate);
        assert_eq!(Arithmetic::for_batch(64), Arithmetic::F32);
    }
}
