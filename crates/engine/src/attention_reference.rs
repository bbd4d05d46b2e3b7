//! The attention of the engine before its loops moved into tern-kernels and onto the
//! thread pool, kept as the oracle of the tests: one token and one head at a time,
//! scalar loops (llama.cpp's flash-attention arithmetic, see the parent module), keys
//! in the order of the cache's rows found by brute force. The tests check that the fast
//! path gives exactly its bits.

use half::f16;
use tern_gguf::GgmlType;
use tern_kernels::Kernels;

use super::{Arithmetic, Cached, KvRows, Shape};
use crate::kv_cache::hadamard;

/// The buffers of the reference, allocated per call (tests only).
pub(super) struct Buffers {
    query_f16: Vec<f16>,
    acc_f16: Vec<f16>,
    acc_f32: Vec<f32>,
    query_q8: Vec<u8>,
    value_f32: Vec<f32>,
    query_f32: Vec<f32>,
}

impl Buffers {
    pub(super) fn new(head_dim: usize, _capacity: usize) -> Self {
        Buffers {
            query_f16: vec![f16::ZERO; head_dim],
            acc_f16: vec![f16::ZERO; head_dim],
            acc_f32: vec![0.0; head_dim],
            query_q8: vec![0; q8_0_bytes(head_dim.next_multiple_of(32))],
            value_f32: vec![0.0; head_dim],
            query_f32: vec![0.0; head_dim],
        }
    }
}

fn q8_0_bytes(values: usize) -> usize {
    values / 32 * 34
}

/// Attention output of one query token at position `pos`.
///
/// `query`: Shape (head_count, head_dim). `cached`: the token's sequence, positions
/// `0..=pos` valid. `out`: Shape (head_count, head_dim).
pub(super) fn attend(
    shape: &Shape,
    arithmetic: Arithmetic,
    query: &[f32],
    cached: Cached<'_>,
    pos: usize,
    scratch: &mut Buffers,
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
                // ggml's tiled path, written out key by key: tiles of KV_TILE cells
                // (rows), an online softmax from tile to tile.
                let mut max = f32::NEG_INFINITY;
                let mut sum = 0.0f32;
                let acc = &mut scratch.acc_f32;
                acc.iter_mut().for_each(|a| *a = 0.0);
                for tile in 0..ring.div_ceil(super::KV_TILE) {
                    let base = tile * super::KV_TILE;
                    let mut scores = [f32::NEG_INFINITY; super::KV_TILE];
                    let mut seen = [None; super::KV_TILE];
                    for (i, s) in scores.iter_mut().enumerate() {
                        seen[i] = visible(base + i, first, pos, ring);
                        if let Some(j) = seen[i] {
                            *s = dot_f32_f16(q, key(j)) * shape.scale;
                        }
                    }
                    let tile_max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                    if tile_max == f32::NEG_INFINITY {
                        continue;
                    }
                    let new_max = max.max(tile_max);
                    if new_max > max {
                        let ms = (max - new_max).exp();
                        acc.iter_mut().for_each(|a| *a *= ms);
                        sum *= ms;
                    }
                    max = new_max;
                    let weights = scores.map(|s| tern_kernels::attention::softmax_exp(s - max));
                    sum = (sum as f64 + tern_kernels::attention::softmax_sum(&weights)) as f32;
                    for (&w, seen) in weights.iter().zip(seen) {
                        if let Some(j) = seen {
                            for (a, v) in acc.iter_mut().zip(value(j)) {
                                *a = v.to_f32().mul_add(w, *a);
                            }
                        }
                    }
                }
                let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
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
                for j in (0..ring).filter_map(|c| visible(c, first, pos, ring)) {
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
    scratch: &mut Buffers,
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
        for j in (0..ring).filter_map(|c| visible(c, first, pos, ring)) {
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

/// The position in `first..=pos` that row `cell` of a ring of `ring` rows holds, if
/// any (position `p` is at row `p % ring`): ggml walks the cells of its cache in row
/// order and masks the ones the query does not see.
fn visible(cell: usize, first: usize, pos: usize, ring: usize) -> Option<usize> {
    (first..=pos).find(|p| p % ring == cell)
}

/// K·Q with Q in F32 (the tiled path widens K to F32): one fused multiply-add per
/// value, in order (ggml's `simd_gemm`).
fn dot_f32_f16(q: &[f32], k: &[f16]) -> f32 {
    let mut sum = 0.0f32;
    for (a, b) in q.iter().zip(k) {
        sum = a.mul_add(b.to_f32(), sum);
    }
    sum
}

/// K·Q with both in F16, summed in the lane order of llama.cpp's AVX-512 build of
/// `ggml_vec_dot_f16` (the build the goldens come from; the kernels reproduce it on every
/// path). A score that differs in its last bit can flip an F16 rounding of the
/// accumulator, so the order is worth keeping.
fn dot_f16(k: &[f16], q: &[f16]) -> f32 {
    tern_kernels::vec_dot_f16_ggml(k, q)
}
