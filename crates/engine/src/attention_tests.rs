//! Tests of the attention: against the mathematical definition (within the rounding of
//! each path), and bit for bit against the scalar reference the engine used before its
//! loops moved to SIMD kernels and threads (`attention_reference.rs`), over batches
//! that mix sequences, windows, rings, cache types and thread counts.

use std::sync::Arc;

use half::f16;
use tern_gguf::GgmlType;
use tern_kernels::attention::QUERY_TILE;
use tern_kernels::pool::ThreadPool;

use super::reference::{self, Buffers};
use super::*;
use crate::kv_cache::{KvType, Rotation};

/// The attention of one token at `pos` through [`attend_batch`].
fn attend(
    shape: &Shape,
    arithmetic: Arithmetic,
    query: &[f32],
    cached: Cached<'_>,
    pos: usize,
    _scratch: &mut Scratch,
    out: &mut [f32],
) {
    let workspace = Workspace::new(shape.head_dim, pos + 1);
    let mut padded = vec![0.0; QUERY_TILE * out.len()];
    let tokens = Tokens {
        queries: query,
        seq_ids: &[0],
        positions: &[pos as u32],
        cached: &|_| cached,
    };
    attend_batch(shape, arithmetic, tokens, &workspace, None, &mut padded);
    out.copy_from_slice(&padded[..out.len()]);
}

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
fn a_ring_gives_a_full_cache_s_results_until_it_wraps_then_row_order() {
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
    fn cached<'a>(k: &'a [f16], v: &'a [f16], positions: usize) -> Cached<'a> {
        Cached {
            keys: KvRows::F16(k),
            values: KvRows::F16(v),
            positions,
            rotation: Rotation::default(),
        }
    }
    let mut wrapped_differs = false;
    // Queries at 35 (window 31..=35, rows 7..=11) and 39 (35..=39: rows 11, 0..=3).
    for pos in [35, 39] {
        // The ring holds positions up to `pos`, position p at row p % ring.
        let mut ring_k = vec![f16::ZERO; ring * 16];
        let mut ring_v = vec![f16::ZERO; ring * 16];
        for p in pos + 1 - ring..=pos {
            let (src, dst) = (p * 16, (p % ring) * 16);
            ring_k[dst..dst + 16].copy_from_slice(&k[src..src + 16]);
            ring_v[dst..dst + 16].copy_from_slice(&v[src..src + 16]);
        }
        for arithmetic in [Arithmetic::F32, Arithmetic::F16Accumulate] {
            let mut scratch = Scratch::new(8, len);
            let (mut full, mut ringed) = (vec![0.0; 32], vec![0.0; 32]);
            let run = |c, out: &mut Vec<f32>, scratch: &mut Scratch| {
                attend(&shape, arithmetic, &q, c, pos, scratch, out);
            };
            run(cached(&k, &v, len), &mut full, &mut scratch);
            run(cached(&ring_k, &ring_v, ring), &mut ringed, &mut scratch);
            let mut want = vec![0.0; 32];
            let mut buffers = Buffers::new(8, len);
            let c = cached(&ring_k, &ring_v, ring);
            reference::attend(&shape, arithmetic, &q, c, pos, &mut buffers, &mut want);
            assert_eq!(ringed, want, "{arithmetic:?} at {pos}");
            if pos == 35 {
                assert_eq!(full, ringed, "{arithmetic:?}: not wrapped, same order");
            } else {
                wrapped_differs |= full != ringed;
                let exact = naive(&shape, &q, &k, &v, pos);
                for (a, b) in ringed.iter().zip(&exact) {
                    assert!((a - b).abs() < 2e-3, "{arithmetic:?}: {a} vs {b}");
                }
            }
        }
    }
    // Row order is not position order after the wrap: the rounding shows it.
    assert!(
        wrapped_differs,
        "the wrapped ring was visited in position order"
    );
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
            tern_kernels::quantize_row(ty, &k[p * 64..(p + 1) * 64], &mut kq[at.clone()]).unwrap();
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

// ---- Bit for bit against the reference ----

/// A two-sequence cache of one layer: F16 rows or rows of a quantized type, `ring`
/// rows per sequence.
struct Layer {
    keys: Vec<Vec<f16>>,
    values: Vec<Vec<f16>>,
    qkeys: Vec<Vec<u8>>,
    qvalues: Vec<Vec<u8>>,
    ty: Option<GgmlType>,
    ring: usize,
    kv_dim: usize,
    head_dim: usize,
}

impl Layer {
    fn new(ty: Option<GgmlType>, ring: usize, kv_dim: usize, head_dim: usize) -> Layer {
        let mut layer = Layer {
            keys: vec![],
            values: vec![],
            qkeys: vec![],
            qvalues: vec![],
            ty,
            ring,
            kv_dim,
            head_dim,
        };
        for seq in 0..2u32 {
            let k = data(ring * kv_dim, 10 + seq);
            let v = data(ring * kv_dim, 20 + seq);
            // Peaked scores, as real attention has, so the online softmax rescales.
            layer
                .keys
                .push(k.iter().map(|&x| f16::from_f32(x * 3.0)).collect());
            layer
                .values
                .push(v.iter().map(|&x| f16::from_f32(x)).collect());
            if let Some(ty) = ty {
                let row = kv_dim / 32 * ty.type_size();
                let quantize = |x: &[f32]| {
                    let mut out = vec![0u8; ring * row];
                    for (src, dst) in x.chunks(kv_dim).zip(out.chunks_mut(row)) {
                        let src: Vec<f32> = src.iter().map(|v| v * 3.0).collect();
                        tern_kernels::quantize_row(ty, &src, dst).unwrap();
                    }
                    out
                };
                layer.qkeys.push(quantize(&k));
                layer.qvalues.push(quantize(&v));
            }
        }
        layer
    }

    fn rows<'a>(&self, bytes: &'a [u8]) -> KvRows<'a> {
        let ty = self.ty.unwrap();
        KvRows::Quantized {
            ty,
            bytes,
            row_bytes: self.kv_dim / 32 * ty.type_size(),
            head_bytes: self.head_dim / 32 * ty.type_size(),
        }
    }

    fn cached(&self, seq: u32) -> Cached<'_> {
        let s = seq as usize;
        let rows = |bytes| self.rows(bytes);
        match self.ty {
            None => Cached {
                keys: KvRows::F16(&self.keys[s]),
                values: KvRows::F16(&self.values[s]),
                positions: self.ring,
                rotation: Rotation::default(),
            },
            Some(ty) => Cached {
                keys: rows(&self.qkeys[s]),
                values: rows(&self.qvalues[s]),
                positions: self.ring,
                // As the cache rotates quantized heads (the rows stored here are not
                // rotated, which does not matter when comparing two implementations).
                rotation: Rotation::for_cache(
                    if ty == GgmlType::Q8_0 {
                        KvType::Q8_0
                    } else {
                        KvType::Q4_0
                    },
                    self.head_dim,
                ),
            },
        }
    }
}

/// A batch: a run of sequence 0 at consecutive positions from 100, a few tokens of
/// sequence 1 from 7, one of sequence 0 at a position out of order, the rest of
/// sequence 0. Returns (seq_ids, positions).
fn batch(n: usize) -> (Vec<u32>, Vec<u32>) {
    let (mut seqs, mut positions) = (vec![], vec![]);
    let head = n / 2;
    for i in 0..head {
        seqs.push(0);
        positions.push(100 + i as u32);
    }
    for i in 0..3.min(n - head) {
        seqs.push(1);
        positions.push(7 + i as u32);
    }
    if seqs.len() < n {
        seqs.push(0);
        positions.push(40);
    }
    let mut next = 100 + head as u32;
    while seqs.len() < n {
        seqs.push(0);
        positions.push(next);
        next += 1;
    }
    (seqs, positions)
}

fn compare(ty: Option<GgmlType>, window: Option<usize>, n: usize, threads: usize) {
    let shape = Shape {
        head_count: 6,
        head_count_kv: 2,
        head_dim: 64,
        scale: 0.3,
        window,
    };
    let q_dim = shape.head_count * shape.head_dim;
    let capacity = 200;
    // A ring holds the window plus a batch (`KvCache` rounds that up to 256 rows; not
    // here, so that the ring wraps).
    let ring = window.map_or(capacity, |w| (w + n).min(capacity));
    let layer = Layer::new(ty, ring, shape.kv_dim(), shape.head_dim);
    let (seqs, positions) = batch(n);
    let queries = data(n * q_dim, 5);
    let arithmetic = Arithmetic::for_batch(n);
    let mut workspace = Workspace::new(shape.head_dim, capacity);
    workspace.set_threads(threads);
    let pool = (threads > 1).then(|| Arc::new(ThreadPool::new(threads)));
    let mut out = vec![f32::NAN; n.next_multiple_of(QUERY_TILE) * q_dim];
    let cached = |seq: u32| layer.cached(seq);
    let tokens = Tokens {
        queries: &queries,
        seq_ids: &seqs,
        positions: &positions,
        cached: &cached,
    };
    attend_batch(
        &shape,
        arithmetic,
        tokens,
        &workspace,
        pool.as_deref(),
        &mut out,
    );
    let mut buffers = Buffers::new(shape.head_dim, capacity);
    for t in 0..n {
        let mut want = vec![0.0; q_dim];
        reference::attend(
            &shape,
            arithmetic,
            &queries[t * q_dim..(t + 1) * q_dim],
            layer.cached(seqs[t]),
            positions[t] as usize,
            &mut buffers,
            &mut want,
        );
        let got = &out[t * q_dim..(t + 1) * q_dim];
        let same = got
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "{ty:?} window {window:?}, {n} tokens, {threads} threads: token {t} differs"
        );
    }
}

#[test]
fn f32_path_gives_the_reference_bits() {
    for threads in [1, 2, 3] {
        compare(None, None, 70, threads);
        compare(None, Some(9), 70, threads);
        compare(None, Some(150), 64, threads);
        // Windows narrower than a tile: the tile's lanes share no position.
        compare(None, Some(3), 70, threads);
        compare(None, Some(1), 66, threads);
    }
}

#[test]
fn f16_path_gives_the_reference_bits() {
    for threads in [1, 2, 3] {
        for n in [1, 5, 63] {
            compare(None, None, n, threads);
            compare(None, Some(9), n, threads);
        }
    }
}

#[test]
fn quantized_paths_give_the_reference_bits() {
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
        for threads in [1, 2] {
            for n in [1, 6, 70] {
                compare(Some(ty), None, n, threads);
                compare(Some(ty), Some(9), n, threads);
            }
        }
    }
}

#[test]
fn cell_runs_walk_a_ring_in_row_order() {
    // Ring of 8 rows written up to position 14: rows 0..=6 hold 8..=14, row 7 holds 7.
    let all: Vec<_> = cell_runs(7, 14, 8).collect();
    assert_eq!(all, [(8, 0, 7), (7, 7, 1)]);
    let all: Vec<_> = cell_runs(10, 14, 8).collect();
    assert_eq!(all, [(10, 2, 5)]);
    let all: Vec<_> = cell_runs(8, 15, 8).collect();
    assert_eq!(all, [(8, 0, 8)]);
    let all: Vec<_> = cell_runs(0, 19, 100).collect();
    assert_eq!(all, [(0, 0, 20)]);
    assert_eq!(position_of_cell(7, 14, 8), Some(7));
    assert_eq!(position_of_cell(6, 14, 8), Some(14));
    assert_eq!(position_of_cell(7, 6, 8), None);
}

#[test]
fn runs_split_a_ring_in_position_order() {
    let all: Vec<_> = runs(5, 14, 8).collect();
    assert_eq!(all, [(5, 5, 3), (8, 0, 7)]);
    let all: Vec<_> = runs(3, 3, 8).collect();
    assert_eq!(all, [(3, 3, 1)]);
    let all: Vec<_> = runs(0, 19, 100).collect();
    assert_eq!(all, [(0, 0, 20)]);
}
