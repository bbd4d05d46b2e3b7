//! The attention kernels (`tern_kernels::attention`) of every SIMD path this machine
//! runs, against the scalar reference, bit for bit: random queries, keys, values,
//! weights and rescales; head sizes from 1 to 256 (odd ones included, which exercise
//! the tails), key counts that are not multiples of the unrolling, strides wider than a
//! row, and slices starting at odd offsets. The scalar reference itself is checked
//! against the definitions written out here (chains of fused multiply-adds in order, `vec_dot_f16_ggml`,
//! `dequantize_row`, `vec_mad_f16` / `vec_scale_f16`).

mod simd_support;

use half::f16;
use simd_support::{XorShift, kernels_or_skip, simd_paths};
use tern_gguf::GgmlType;
use tern_kernels::Kernels;
use tern_kernels::attention::QUERY_TILE;

const HEAD_DIMS: [usize; 9] = [1, 3, 8, 13, 32, 64, 67, 128, 256];
const KEY_COUNTS: [usize; 7] = [0, 1, 3, 4, 5, 17, 40];

fn floats(rng: &mut XorShift, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.unit() * scale).collect()
}

fn halves(rng: &mut XorShift, n: usize, scale: f32) -> Vec<f16> {
    (0..n).map(|_| f16::from_f32(rng.unit() * scale)).collect()
}

/// `n` rows of `row` values, `stride` apart, after `offset` leading values.
struct Rows {
    data: Vec<f16>,
    offset: usize,
    stride: usize,
}

impl Rows {
    fn new(rng: &mut XorShift, n: usize, row: usize, scale: f32) -> Rows {
        let stride = row + rng.range(0, 5) as usize;
        let offset = rng.range(0, 3) as usize;
        Rows {
            data: halves(rng, offset + n * stride, scale),
            offset,
            stride,
        }
    }
    fn slice(&self) -> &[f16] {
        &self.data[self.offset..]
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Weights in [0, 1] with some exact zeros and ones; rescales of 1 (the maximum did
/// not move) mixed with factors in (0, 1].
fn weights(rng: &mut XorShift, n: usize) -> (Vec<f32>, Vec<f32>) {
    let w = (0..n)
        .map(|_| match rng.range(0, 8) {
            0 => 0.0,
            1 => 1.0,
            _ => rng.unit().abs(),
        })
        .collect();
    let r = (0..n)
        .map(|_| {
            if rng.range(0, 3) == 0 {
                rng.unit().abs().max(1e-3)
            } else {
                1.0
            }
        })
        .collect();
    (w, r)
}

fn check_scores_f32(k: Kernels, s: Kernels) {
    let mut rng = XorShift::new(11);
    for &hd in &HEAD_DIMS {
        for &n in &KEY_COUNTS {
            let q = floats(&mut rng, hd * QUERY_TILE, 4.0);
            let keys = Rows::new(&mut rng, n, hd, 3.0);
            let scale = rng.unit() + 1.5;
            let mut got = vec![f32::NAN; n * QUERY_TILE];
            let mut want = vec![f32::NAN; n * QUERY_TILE];
            k.attention_scores_f32(&q, keys.slice(), keys.stride, n, scale, &mut got);
            s.attention_scores_f32(&q, keys.slice(), keys.stride, n, scale, &mut want);
            assert!(
                same_bits(&got, &want),
                "{}: scores_f32 head {hd}, {n} keys",
                k.path()
            );
        }
    }
}

fn check_accumulate_f32(k: Kernels, s: Kernels) {
    let mut rng = XorShift::new(12);
    for &hd in &HEAD_DIMS {
        for &n in &KEY_COUNTS {
            let values = Rows::new(&mut rng, n, hd, 2.0);
            let (w, _) = weights(&mut rng, n);
            let start = floats(&mut rng, hd, 1.0);
            let (mut got, mut want) = (start.clone(), start);
            k.attention_accumulate_f32(&mut got, values.slice(), values.stride, &w);
            s.attention_accumulate_f32(&mut want, values.slice(), values.stride, &w);
            assert!(
                same_bits(&got, &want),
                "{}: accumulate_f32 head {hd}, {n} keys",
                k.path()
            );
        }
    }
}

fn check_scores_f16(k: Kernels, s: Kernels) {
    let mut rng = XorShift::new(13);
    for &hd in &HEAD_DIMS {
        for &n in &KEY_COUNTS {
            let q = halves(&mut rng, hd, 2.0);
            let keys = Rows::new(&mut rng, n, hd, 3.0);
            let mut got = vec![f32::NAN; n];
            let mut want = vec![f32::NAN; n];
            k.attention_scores_f16(&q, keys.slice(), keys.stride, n, 0.125, &mut got);
            s.attention_scores_f16(&q, keys.slice(), keys.stride, n, 0.125, &mut want);
            assert!(
                same_bits(&got, &want),
                "{}: scores_f16 head {hd}, {n} keys",
                k.path()
            );
        }
    }
}

fn check_accumulate_f16(k: Kernels, s: Kernels) {
    let mut rng = XorShift::new(14);
    for &hd in &HEAD_DIMS {
        for &n in &KEY_COUNTS {
            let values = Rows::new(&mut rng, n, hd, 2.0);
            let (w, r) = weights(&mut rng, n);
            let start = halves(&mut rng, hd, 1.0);
            let (mut got, mut want) = (start.clone(), start);
            k.attention_accumulate_f16(&mut got, values.slice(), values.stride, &w, &r);
            s.attention_accumulate_f16(&mut want, values.slice(), values.stride, &w, &r);
            assert_eq!(
                got,
                want,
                "{}: accumulate_f16 head {hd}, {n} keys",
                k.path()
            );
        }
    }
}

/// `n` quantized rows of `hd` values, `stride` bytes apart, after `offset` bytes.
fn quantized_rows(
    rng: &mut XorShift,
    ty: GgmlType,
    n: usize,
    hd: usize,
) -> (Vec<u8>, usize, usize) {
    let row = hd / 32 * ty.type_size();
    let stride = row + rng.range(0, 7) as usize;
    let offset = rng.range(0, 3) as usize;
    let mut data = vec![0u8; offset + n * stride];
    for j in 0..n {
        let x = floats(rng, hd, 2.0);
        let at = offset + j * stride;
        tern_kernels::quantize_row(ty, &x, &mut data[at..at + row]).expect("quantize");
    }
    (data, offset, stride)
}

fn check_quantized(k: Kernels, s: Kernels) {
    let mut rng = XorShift::new(15);
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
        for hd in [32, 64, 96, 128, 256] {
            for &n in &KEY_COUNTS {
                let (keys, off, stride) = quantized_rows(&mut rng, ty, n, hd);
                let mut query = vec![0u8; hd / 32 * 34];
                let q = floats(&mut rng, hd, 3.0);
                k.quantize_activation_row(GgmlType::Q8_0, &q, &mut query)
                    .expect("query");
                let mut got = vec![f32::NAN; n];
                let keys = &keys[off..];
                k.attention_scores_quantized(ty, &query, hd, keys, stride, n, 0.3, &mut got)
                    .expect("scores");
                // Each score is this path's row dot product (which sums its blocks in
                // its own order, within the quantized dot's tolerance of the scalar
                // one: tests/simd_dot.rs), so the cache gives what the matmul gives.
                let row = hd / 32 * ty.type_size();
                for (j, got) in got.iter().enumerate() {
                    let key = &keys[j * stride..j * stride + row];
                    let want = k.vec_dot(ty, key, &query, hd).expect("dot") * 0.3;
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{}: {ty} score {j}",
                        k.path()
                    );
                }

                let (values, off, stride) = quantized_rows(&mut rng, ty, n, hd);
                let (w, r) = weights(&mut rng, n);
                let start = floats(&mut rng, hd, 1.0);
                let (mut got, mut want) = (start.clone(), start);
                let values = &values[off..];
                k.attention_accumulate_quantized(ty, &mut got, values, stride, &w, &r)
                    .expect("accumulate");
                s.attention_accumulate_quantized(ty, &mut want, values, stride, &w, &r)
                    .expect("accumulate");
                assert!(
                    same_bits(&got, &want),
                    "{}: {ty} accumulate head {hd}, {n} keys",
                    k.path()
                );
            }
        }
    }
}

#[test]
fn every_simd_path_gives_the_scalar_bits() {
    let s = Kernels::scalar();
    let mut tested = 0;
    for path in simd_paths() {
        let Some(k) = kernels_or_skip(path) else {
            continue;
        };
        check_scores_f32(k, s);
        check_accumulate_f32(k, s);
        check_scores_f16(k, s);
        check_accumulate_f16(k, s);
        check_quantized(k, s);
        tested += 1;
    }
    eprintln!("{tested} SIMD paths tested");
    // NEON is part of every aarch64 CPU: at least one SIMD path must have run there.
    assert!(!cfg!(target_arch = "aarch64") || tested > 0);
}

// ---- The scalar reference against the definitions ----

#[test]
fn scalar_scores_are_ordered_fma_chains() {
    let s = Kernels::scalar();
    let mut rng = XorShift::new(21);
    let (hd, n) = (13, 6);
    let q = floats(&mut rng, hd * QUERY_TILE, 4.0);
    let keys = Rows::new(&mut rng, n, hd, 3.0);
    let mut out = vec![0.0; n * QUERY_TILE];
    s.attention_scores_f32(&q, keys.slice(), keys.stride, n, 0.7, &mut out);
    for j in 0..n {
        let key = &keys.slice()[j * keys.stride..j * keys.stride + hd];
        for l in 0..QUERY_TILE {
            let mut sum = 0.0f32;
            for (d, k) in key.iter().enumerate() {
                sum = q[d * QUERY_TILE + l].mul_add(k.to_f32(), sum);
            }
            assert_eq!(out[j * QUERY_TILE + l].to_bits(), (sum * 0.7).to_bits());
        }
    }

    let q16 = halves(&mut rng, hd, 2.0);
    let mut out = vec![0.0; n];
    s.attention_scores_f16(&q16, keys.slice(), keys.stride, n, 0.5, &mut out);
    for (j, out) in out.iter().enumerate() {
        let key = &keys.slice()[j * keys.stride..j * keys.stride + hd];
        assert_eq!(
            out.to_bits(),
            (s.vec_dot_f16_ggml(key, &q16) * 0.5).to_bits()
        );
    }
}

#[test]
fn scalar_accumulators_follow_the_definitions() {
    let s = Kernels::scalar();
    let mut rng = XorShift::new(22);
    let (hd, n) = (64, 9);
    let values = Rows::new(&mut rng, n, hd, 2.0);
    let (w, r) = weights(&mut rng, n);
    let row = |j: usize| &values.slice()[j * values.stride..j * values.stride + hd];

    let mut acc = vec![0.25f32; hd];
    s.attention_accumulate_f32(&mut acc, values.slice(), values.stride, &w);
    let mut want = vec![0.25f32; hd];
    for (j, &wj) in w.iter().enumerate() {
        for (a, v) in want.iter_mut().zip(row(j)) {
            *a = v.to_f32().mul_add(wj, *a);
        }
    }
    assert!(same_bits(&acc, &want));

    let mut acc = vec![f16::from_f32(0.25); hd];
    s.attention_accumulate_f16(&mut acc, values.slice(), values.stride, &w, &r);
    let mut want = vec![f16::from_f32(0.25); hd];
    for j in 0..n {
        if r[j] != 1.0 {
            s.vec_scale_f16(&mut want, r[j]);
        }
        s.vec_mad_f16(&mut want, row(j), w[j]);
    }
    assert_eq!(acc, want);

    for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
        let (data, off, stride) = quantized_rows(&mut rng, ty, n, hd);
        let data = &data[off..];
        let mut acc = vec![0.5f32; hd];
        s.attention_accumulate_quantized(ty, &mut acc, data, stride, &w, &r)
            .expect("accumulate");
        let mut want = vec![0.5f32; hd];
        let mut v = vec![0.0f32; hd];
        let row_bytes = hd / 32 * ty.type_size();
        for j in 0..n {
            want.iter_mut().for_each(|a| *a *= r[j]);
            tern_kernels::dequantize_row(ty, &data[j * stride..j * stride + row_bytes], &mut v)
                .expect("dequantize");
            for (a, v) in want.iter_mut().zip(&v) {
                *a += v * w[j];
            }
        }
        assert!(same_bits(&acc, &want), "{ty}");
    }
}

#[test]
fn bad_shapes_are_errors() {
    let s = Kernels::scalar();
    let mut out = [0.0; 4];
    let query = [0u8; 34];
    let err =
        s.attention_scores_quantized(GgmlType::Q4_1, &query, 32, &[0; 40], 20, 2, 1.0, &mut out);
    assert!(err.is_err(), "Q4_1 is not a cache type");
    let err =
        s.attention_scores_quantized(GgmlType::Q8_0, &query, 40, &[0; 80], 40, 2, 1.0, &mut out);
    assert!(err.is_err(), "40 values are not whole blocks");
    let mut acc = [0.0; 48];
    let err =
        s.attention_accumulate_quantized(GgmlType::Q8_0, &mut acc, &[0; 100], 34, &[1.0], &[1.0]);
    assert!(err.is_err(), "48 values are not whole blocks");
}

/// The tiled path's exponential: within 2 ulp of libm's `expf` over the range softmax
/// weights take (`x <= 0`), exact at 0, 0 for `-inf` and far below, and the f64 tile sum
/// adding its groups of 16 in `_mm512_reduce_add_ps`'s order (not left to right). Bit
/// equality with llama.cpp itself is checked by `quant_fixtures`.
#[test]
fn softmax_exp_and_sum_follow_ggml() {
    use tern_kernels::attention::{softmax_exp, softmax_sum};
    assert_eq!(softmax_exp(0.0), 1.0);
    assert_eq!(softmax_exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(softmax_exp(-200.0), 0.0);
    let mut rng = XorShift::new(31);
    for _ in 0..10_000 {
        let x = -rng.unit().abs() * 80.0;
        let (got, want) = (softmax_exp(x), x.exp());
        let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
        assert!(ulps <= 2, "exp({x}): {got} vs libm {want}");
    }
    // 1 + 2^-24 + ... : left to right, each tiny term is lost against 1; in ggml's tree
    // order the first eight tiny terms meet each other first.
    let mut w = [0.0f32; 64];
    w[0] = 1.0;
    for v in &mut w[8..16] {
        *v = f32::EPSILON / 4.0;
    }
    let left_to_right = w[..16].iter().fold(0.0f32, |a, &b| a + b) as f64;
    assert_eq!(left_to_right, 1.0);
    assert_eq!(softmax_sum(&w), (1.0 + f32::EPSILON) as f64);

    // The kernel of every path: the weights and the sum of the functions above, bit for
    // bit, masked keys (-inf) included.
    for _ in 0..200 {
        let mut scores = [0.0f32; 64];
        for s in &mut scores {
            *s = if rng.unit() > 0.6 {
                f32::NEG_INFINITY
            } else {
                rng.unit() * 40.0
            };
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s)) + rng.unit().abs();
        let want: [f32; 64] = std::array::from_fn(|i| softmax_exp(scores[i] - max));
        for k in Kernels::available() {
            let mut got = [f32::NAN; 64];
            let sum = k.attention_softmax_tile(&scores, max, &mut got);
            assert!(same_bits(&got, &want), "{:?}", k.path());
            assert_eq!(
                sum.to_bits(),
                softmax_sum(&want).to_bits(),
                "{:?}",
                k.path()
            );
        }
    }
}
