//! Every aarch64 NEON kernel against the scalar reference, on both aarch64 paths
//! (`neon-dotprod`, `neon`), run under qemu-aarch64 by `scripts/test-arm.sh` with
//! `-cpu cortex-a76` (the Raspberry Pi 5's core: both paths) and `-cpu cortex-a53` (no
//! dotprod: only `neon`, the fallback). One macro generates one test per (kernel, path)
//! pair; on an x86_64 host the file compiles to nothing but the macro's listing test.
//!
//! - Dot products, on random shapes (1 to 12 blocks, or 1 to 300 values for the float
//!   types) read from unaligned addresses: *exact* data (see `simd_support`) must give
//!   the scalar result bit for bit, and so must any data for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0
//!   (every path sums those in llama.cpp's x86 order); other *random* data must be within
//!   `2^-20 · (Σ|w·a| + max|w|·Σ|a|)` of it (the NEON kernels add per-block f32 terms in
//!   another order than the reference; the bound is ~10^4 times smaller than the
//!   contribution of one block).
//! - Matrix-vector products through the matmul (weight rows in pairs): equal to the
//!   same path's dot products bit for bit, within the bound of the scalar ones, and the
//!   same bits when the rows are split over threads.
//! - Activation quantizers: the same bytes as the scalar ones, always (random rows, rows
//!   of rounding ties, zero blocks, sign ties for Q8_K's first-maximum rule), from
//!   unaligned f32 slices into unaligned byte buffers.
//! - Elementwise ops on 0 to 300 values at any start offset: the f16 conversions, the
//!   f16 multiply-add and scale, GELU and `vec_dot_f16_ggml` bit for bit; RMSNorm and the
//!   f64-summed f16 dot within a few ulp; softmax, SiLU and SwiGLU bit for bit against a
//!   scalar model of the NEON arithmetic (llama.cpp's vectorised `expf`, the lane sums),
//!   and within `2^-20` relative of the reference with libm's `expf`.
//!
//! Which paths a CPU must have is not left to chance: `TERN_TEST_EXPECT_PATH` (set by the
//! script per emulated CPU) names the best path the CPU must get, and then every path up
//! to it must be available — a test of a path the CPU should have never "skips".

#![cfg_attr(not(target_arch = "aarch64"), allow(dead_code, unused_imports))]

mod simd_support;

use half::f16;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use simd_support::*;
use tern_gguf::GgmlType;
use tern_kernels::pool::ThreadPool;
use tern_kernels::{KernelPath, Kernels, QuantizedActivations, WeightMatrix};

/// The environment variable naming the path this CPU must end up with.
const EXPECT_ENV: &str = "TERN_TEST_EXPECT_PATH";

/// The aarch64 paths, slowest first.
const NEON_PATHS: [KernelPath; 2] = [KernelPath::Neon, KernelPath::NeonDotprod];

/// The kernels of `path`; `None` (reported on stderr) when this CPU lacks it and
/// `TERN_TEST_EXPECT_PATH` does not say it should have it.
fn kernels_for(path: KernelPath) -> Option<Kernels> {
    let k = Kernels::for_path(path);
    if k.is_none() {
        if let Ok(expected) = std::env::var(EXPECT_ENV) {
            let expected = KernelPath::from_name(&expected)
                .unwrap_or_else(|| panic!("{EXPECT_ENV}={expected:?} is not a path name"));
            let rank = |p: KernelPath| NEON_PATHS.iter().position(|&q| q == p);
            assert!(
                rank(path) > rank(expected),
                "this CPU should run the {path} kernels ({EXPECT_ENV}={expected}) but has \
                 features {}",
                tern_kernels::cpu_features()
            );
        }
        eprintln!("skipped: this CPU cannot run the {path} kernels");
    }
    k
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn dequantized_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f64 {
    let act = tern_kernels::vec_dot_type(ty).unwrap();
    let mut wf = vec![0.0f32; n];
    let mut af = vec![0.0f32; n];
    tern_kernels::dequantize_row(ty, w, &mut wf).unwrap();
    tern_kernels::dequantize_row(act, a, &mut af).unwrap();
    wf.iter().zip(&af).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// The formats whose every path sums in llama.cpp's x86 order (`quant::order`), so the
/// NEON results equal the scalar ones bit for bit on any data.
fn follows_ggml_order(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q6_K)
}

fn check_dot(ty: GgmlType, path: KernelPath) {
    let Some(k) = kernels_for(path) else {
        return;
    };
    let scalar = Kernels::scalar();
    let units = if ty.block_size() == 1 {
        1usize..=300
    } else {
        1usize..=12
    };
    let strategy = (units, 0usize..64, 0usize..64, any::<u64>(), any::<bool>());
    runner(96)
        .run(&strategy, |(units, w_off, a_off, seed, exact)| {
            let mut rng = XorShift::new(seed);
            let n = units * ty.block_size();
            let w = weight_row(ty, units, &mut rng, exact);
            let a = activation_row(ty, units, &mut rng, exact);
            let (wb, ab) = (unaligned(&w, w_off), unaligned(&a, a_off));
            let (w, a) = (&wb[w_off..], &ab[a_off..]);
            let want = scalar.vec_dot(ty, w, a, n).unwrap();
            let got = k.vec_dot(ty, w, a, n).unwrap();
            if follows_ggml_order(ty) {
                // Every path sums in llama.cpp's x86 order: the same bits on any data.
                prop_assert_eq!(got.to_bits(), want.to_bits(), "{} vs scalar {}", got, want);
            }
            if exact {
                let reference = dequantized_dot(ty, w, a, n) as f32;
                prop_assert_eq!(want, reference, "premise: the scalar dot is exact here");
                prop_assert_eq!(got.to_bits(), want.to_bits(), "{} vs scalar {}", got, want);
            } else {
                let bound = 2f64.powi(-20) * magnitude(ty, w, a, n);
                let err = (got as f64 - want as f64).abs();
                prop_assert!(
                    err <= bound,
                    "{} vs scalar {}: error {:e} over the bound {:e}",
                    got,
                    want,
                    err,
                    bound
                );
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{ty} dot on {path}: {e}"));
}

/// The matrix-vector kernels (rows taken in pairs) through the matmul: 1 to 9 weight
/// rows (so the odd last row goes alone), 1 to 8 blocks, 1 to 3 tokens (each token a
/// matvec: the NEON paths have no batched kernel), weights at unaligned addresses. Every
/// output must equal the same path's single dot product bit for bit (a row's arithmetic
/// does not depend on its pairing), be within the dot-product bound of the scalar one,
/// and the matmul split over 2 or 3 threads must give exactly the single-threaded bits.
fn check_matvec(ty: GgmlType, path: KernelPath) {
    let Some(k) = kernels_for(path) else {
        return;
    };
    let scalar = Kernels::scalar();
    let act_ty = tern_kernels::vec_dot_type(ty).unwrap();
    let pools = [ThreadPool::new(2), ThreadPool::new(3)];
    let strategy = (1usize..=9, 1usize..=8, 1usize..=3, 0usize..32, any::<u64>());
    runner(48)
        .run(&strategy, |(rows, units, tokens, w_off, seed)| {
            let mut rng = XorShift::new(seed);
            let cols = units * ty.block_size();
            let weights: Vec<u8> = (0..rows)
                .flat_map(|_| weight_row(ty, units, &mut rng, false))
                .collect();
            let acts: Vec<Vec<u8>> = (0..tokens)
                .map(|_| activation_row(ty, units, &mut rng, false))
                .collect();
            let wb = unaligned(&weights, w_off);
            let w = WeightMatrix::try_new(ty, rows, cols, &wb[w_off..]).unwrap();
            let mut x = QuantizedActivations::new();
            x.set_quantized(act_ty, &acts.concat(), tokens, cols)
                .unwrap();
            let mut out = vec![0.0f32; rows * tokens];
            k.matmul(&w, &x, &mut out);
            for t in 0..tokens {
                for r in 0..rows {
                    let got = out[t * rows + r];
                    let dot = k.vec_dot(ty, w.row(r), &acts[t], cols).unwrap();
                    prop_assert_eq!(got.to_bits(), dot.to_bits(), "row {} token {}", r, t);
                    let want = scalar.vec_dot(ty, w.row(r), &acts[t], cols).unwrap();
                    if follows_ggml_order(ty) {
                        prop_assert_eq!(got.to_bits(), want.to_bits(), "row {} token {}", r, t);
                    }
                    let bound = 2f64.powi(-20) * magnitude(ty, w.row(r), &acts[t], cols);
                    prop_assert!(
                        (got as f64 - want as f64).abs() <= bound,
                        "row {} token {}: {} vs scalar {}",
                        r,
                        t,
                        got,
                        want
                    );
                }
            }
            for pool in &pools {
                let mut split = vec![f32::NAN; rows * tokens];
                k.matmul_with_pool(pool, &w, &x, &mut split);
                prop_assert_eq!(bits(&split), bits(&out), "{} threads", pool.n_threads());
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{ty} matvec on {path}: {e}"));
}

/// Rows that stress the quantizers' rounding: random values, values that land on .5
/// after scaling, zero blocks, and blocks whose largest magnitude appears with both
/// signs (Q8_K keeps the first).
fn quantizer_input(n: usize, rng: &mut XorShift, kind: u8) -> Vec<f32> {
    match kind % 4 {
        0 => values(n, rng, 5.0),
        1 => (0..n)
            .map(|i| {
                if i % 32 == 0 {
                    127.0
                } else {
                    (rng.range(-254, 255) as f32) * 0.5
                }
            })
            .collect(),
        2 => (0..n)
            .map(|i| if (i / 32) % 2 == 0 { 0.0 } else { rng.unit() })
            .collect(),
        _ => {
            let mut x = values(n, rng, 1.0);
            for (i, v) in x.iter_mut().enumerate() {
                if i % 7 == 3 {
                    *v = if i % 2 == 0 { 2.0 } else { -2.0 };
                }
            }
            x
        }
    }
}

fn check_quantize(ty: GgmlType, path: KernelPath) {
    let Some(k) = kernels_for(path) else {
        return;
    };
    let scalar = Kernels::scalar();
    let strategy = (1usize..=9, 0usize..16, any::<u64>(), any::<u8>());
    runner(128)
        .run(&strategy, |(blocks, offset, seed, kind)| {
            let mut rng = XorShift::new(seed);
            let n = blocks * ty.block_size();
            let mut buf = vec![0.0f32; offset + n];
            buf[offset..].copy_from_slice(&quantizer_input(n, &mut rng, kind));
            let x = &buf[offset..];
            let bytes = blocks * ty.type_size();
            let (mut want, mut got) = (vec![0u8; bytes], vec![0xEEu8; bytes + 1]);
            scalar.quantize_activation_row(ty, x, &mut want).unwrap();
            k.quantize_activation_row(ty, x, &mut got[1..]).unwrap();
            prop_assert_eq!(&got[1..], &want[..]);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{ty} quantizer on {path}: {e}"));
}

/// The elementwise ops under test.
#[derive(Clone, Copy, Debug)]
enum Op {
    RmsNorm,
    Softmax,
    Silu,
    Swiglu,
    Gelu,
    Geglu,
    DotF16,
    DotF16Ggml,
    MadF16,
    ScaleF16,
    ToF16,
    FromF16,
}

/// `|got - want| <= rel · |want| + abs` per element, with the index in the message.
fn close(got: &[f32], want: &[f32], rel: f64, abs: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else {
            (g as f64 - w as f64).abs() <= rel * (w as f64).abs() + abs
        };
        prop_assert!(ok, "[{}]: {} vs scalar {}", i, g, w);
    }
    Ok(())
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

fn to_f16(x: &[f32]) -> Vec<f16> {
    x.iter().map(|&v| f16::from_f32(v)).collect()
}

// ---- A scalar model of the NEON exponential ---------------------------------------

/// `e^x` with the f32 operations, in the order, of llama.cpp's NEON `ggml_v_expf`
/// (ggml-cpu/vec.h), which the kernels implement: any deviation in a constant, an
/// operation order or a special case changes bits. Constants as f32 bit patterns.
fn exp_model(x: f32) -> f32 {
    let f = f32::from_bits;
    let shift = f(0x4b40_0000);
    let z = x.mul_add(f(0x3fb8_aa3b), shift);
    let n = z - shift;
    let b = (-n).mul_add(f(0x35bf_be8e), (-n).mul_add(f(0x3f31_7200), x));
    let u = b * b;
    let p1 = f(0x3e2a_af33).mul_add(b, f(0x3eff_fedb));
    let p2 = f(0x3c07_2010).mul_add(b, f(0x3d2b_9f17));
    let j = p2.mul_add(u, p1).mul_add(u, f(0x3f7f_fff6) * b);
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1.0f32.to_bits()));
    if n.abs() <= 126.0 {
        return j.mul_add(k, k);
    }
    let d: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(d.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(d));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// SiLU as the kernels compute it: the model exponential for whole groups of four,
/// libm's for the rest.
fn silu_model(x: &[f32]) -> Vec<f32> {
    let whole = x.len() / 4 * 4;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if i < whole {
                v / (1.0 + exp_model(0.0 - v))
            } else {
                tern_kernels::ops::silu_f32(v)
            }
        })
        .collect()
}

/// Softmax as the kernels compute it: groups of four through the model exponential,
/// each group summed pairwise in f32 (`faddp`) and added to an f64 total; libm for the
/// rest.
fn softmax_model(x: &[f32]) -> Vec<f32> {
    if x.is_empty() {
        return vec![];
    }
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let whole = x.len() / 4 * 4;
    let mut y = x.to_vec();
    let mut sum = 0.0f64;
    for g in y[..whole].chunks_exact_mut(4) {
        for v in g.iter_mut() {
            *v = exp_model(*v - max);
        }
        sum += ((g[0] + g[1]) + (g[2] + g[3])) as f64;
    }
    for v in &mut y[whole..] {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    y.iter().map(|v| v * inv).collect()
}

/// A random input of `n` values at offset `offset` of its buffer, with some of the
/// special values an op can meet (±0, large magnitudes, -inf for softmax masks).
fn op_input(n: usize, rng: &mut XorShift, scale: f32, specials: &[f32]) -> Vec<f32> {
    let mut x = values(n, rng, scale);
    for v in x.iter_mut() {
        if rng.range(0, 16) == 0 && !specials.is_empty() {
            *v = specials[rng.range(0, specials.len() as i64) as usize];
        }
    }
    x
}

fn check_op(op: Op, path: KernelPath) {
    let Some(k) = kernels_for(path) else {
        return;
    };
    let s = Kernels::scalar();
    let strategy = (0usize..=300, 0usize..8, any::<u64>());
    runner(96)
        .run(&strategy, |(n, off, seed)| {
            let mut rng = XorShift::new(seed);
            // Inputs start `off` values into their buffers (any f32 alignment).
            let shift = |x: Vec<f32>| {
                let mut b = vec![0.0f32; off];
                b.extend(x);
                b
            };
            match op {
                Op::RmsNorm => {
                    let scale = [1e-3f32, 1.0, 30.0][rng.range(0, 3) as usize];
                    let x = shift(values(n, &mut rng, scale));
                    let w = values(n, &mut rng, 1.5);
                    let eps = 1e-5;
                    let (mut want, mut got) = (vec![0.0; n], vec![0.0; n]);
                    s.rms_norm(&x[off..], &w, eps, &mut want);
                    k.rms_norm(&x[off..], &w, eps, &mut got);
                    // The mean may differ in its last bit (f64 sums in another order).
                    close(&got, &want, 2f64.powi(-21), 0.0)?;
                    let mut in_place = x.clone();
                    k.rms_norm_in_place(&mut in_place[off..], &w, eps);
                    prop_assert_eq!(bits(&in_place[off..]), bits(&got), "in place");
                }
                Op::Softmax => {
                    let mut x = shift(op_input(n, &mut rng, 20.0, &[f32::NEG_INFINITY, 0.0]));
                    if n > 0 {
                        x[off] = 1000.0 * rng.unit();
                    }
                    let model = softmax_model(&x[off..]);
                    let mut want = x[off..].to_vec();
                    s.softmax_in_place(&mut want);
                    k.softmax_in_place(&mut x[off..]);
                    prop_assert_eq!(bits(&x[off..]), bits(&model), "against the model");
                    close(&x[off..], &want, 2f64.powi(-20), 1e-37)?;
                }
                Op::Silu | Op::Swiglu => {
                    // Around the exponential's special cases: 2^n out of the normal
                    // range (|x| > 126 ln 2), overflow (> 88.38), underflow (< -103.97).
                    let specials = [
                        0.0, -0.0, 80.0, -80.0, 87.3, -87.3, 88.3, -88.3, 89.0, -89.0, 103.9,
                        -104.0, 130.0, -150.0, 1000.0, -1000.0, 1e-30,
                    ];
                    let x = shift(op_input(n, &mut rng, 20.0, &specials));
                    let up = values(n, &mut rng, 2.0);
                    let mut model = silu_model(&x[off..]);
                    let (mut want, mut got) = (vec![0.0; n], vec![0.0; n]);
                    if matches!(op, Op::Silu) {
                        s.silu(&x[off..], &mut want);
                        k.silu(&x[off..], &mut got);
                    } else {
                        model.iter_mut().zip(&up).for_each(|(m, u)| *m *= u);
                        s.swiglu(&x[off..], &up, &mut want);
                        k.swiglu(&x[off..], &up, &mut got);
                    }
                    prop_assert_eq!(bits(&got), bits(&model), "against the model");
                    close(&got, &want, 2f64.powi(-20), 1e-37)?;
                }
                Op::Gelu | Op::Geglu => {
                    let x = shift(op_input(n, &mut rng, 12.0, &[10.0, -10.0, 37.5]));
                    let up = values(n, &mut rng, 2.0);
                    let (mut want, mut got) = (vec![0.0; n], vec![0.0; n]);
                    if matches!(op, Op::Gelu) {
                        s.gelu_tanh(&x[off..], &mut want);
                        k.gelu_tanh(&x[off..], &mut got);
                    } else {
                        s.geglu_tanh(&x[off..], &up, &mut want);
                        k.geglu_tanh(&x[off..], &up, &mut got);
                    }
                    prop_assert_eq!(bits(&got), bits(&want));
                }
                Op::DotF16 | Op::DotF16Ggml => {
                    let a = to_f16(&shift(values(n, &mut rng, 4.0)));
                    let b = to_f16(&values(n, &mut rng, 4.0));
                    let (a, b) = (&a[off..], &b[..]);
                    if matches!(op, Op::DotF16) {
                        let (want, got) = (s.vec_dot_f16(a, b), k.vec_dot_f16(a, b));
                        // Both sum exact f32 products in f64 (in different orders), then
                        // round once to f32: at most one rounding step apart.
                        let magnitude: f64 = a
                            .iter()
                            .zip(b)
                            .map(|(x, y)| (x.to_f64() * y.to_f64()).abs())
                            .sum();
                        let bound =
                            2f64.powi(-23) * (want as f64).abs() + 2f64.powi(-45) * magnitude;
                        prop_assert!(
                            (got as f64 - want as f64).abs() <= bound,
                            "{} vs scalar {}",
                            got,
                            want
                        );
                    } else {
                        let (want, got) = (s.vec_dot_f16_ggml(a, b), k.vec_dot_f16_ggml(a, b));
                        prop_assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{} vs scalar {}",
                            got,
                            want
                        );
                    }
                }
                Op::MadF16 | Op::ScaleF16 => {
                    let y0 = to_f16(&shift(values(n, &mut rng, 8.0)));
                    let x = to_f16(&values(n, &mut rng, 8.0));
                    let v = rng.unit() * 3.0;
                    let (mut want, mut got) = (y0[off..].to_vec(), y0.clone());
                    if matches!(op, Op::MadF16) {
                        s.vec_mad_f16(&mut want, &x, v);
                        k.vec_mad_f16(&mut got[off..], &x, v);
                    } else {
                        s.vec_scale_f16(&mut want, v);
                        k.vec_scale_f16(&mut got[off..], v);
                    }
                    prop_assert_eq!(&got[off..], &want[..]);
                }
                Op::ToF16 => {
                    // Magnitudes across the f16 range: normals, subnormals, overflow.
                    let x: Vec<f32> = values(n, &mut rng, 1.0)
                        .into_iter()
                        .map(|v| v * 2f32.powi(rng.range(-26, 18) as i32))
                        .collect();
                    let x = shift(x);
                    let mut want = vec![f16::ZERO; n];
                    let mut got = vec![f16::ONE; n + 1];
                    s.f32_to_f16_slice(&x[off..], &mut want);
                    k.f32_to_f16_slice(&x[off..], &mut got[1..]);
                    prop_assert_eq!(&got[1..], &want[..]);
                }
                Op::FromF16 => {
                    // Every bit pattern but NaN (whose payload may come out differently).
                    let h: Vec<f16> = (0..off + n)
                        .map(|_| {
                            let h = f16::from_bits(rng.next_u64() as u16);
                            if h.is_nan() { f16::INFINITY } else { h }
                        })
                        .collect();
                    let (mut want, mut got) = (vec![0.0; n], vec![0.0; n]);
                    s.f16_to_f32_slice(&h[off..], &mut want);
                    k.f16_to_f32_slice(&h[off..], &mut got);
                    prop_assert_eq!(bits(&got), bits(&want));
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{op:?} on {path}: {e}"));
}

/// One test per (check, item) and NEON path, compiled on aarch64 only.
macro_rules! per_neon_path {
    ($check:ident: $($module:ident => $item:expr),* $(,)?) => {$(
        #[cfg(target_arch = "aarch64")]
        mod $module {
            use super::*;
            #[test]
            fn neon() {
                $check($item, KernelPath::Neon);
            }
            #[test]
            fn neon_dotprod() {
                $check($item, KernelPath::NeonDotprod);
            }
        }
    )*};
}

per_neon_path!(check_dot:
    dot_q4_0 => GgmlType::Q4_0,
    dot_q4_1 => GgmlType::Q4_1,
    dot_q5_0 => GgmlType::Q5_0,
    dot_q5_1 => GgmlType::Q5_1,
    dot_q8_0 => GgmlType::Q8_0,
    dot_q2_k => GgmlType::Q2_K,
    dot_q3_k => GgmlType::Q3_K,
    dot_q4_k => GgmlType::Q4_K,
    dot_q5_k => GgmlType::Q5_K,
    dot_q6_k => GgmlType::Q6_K,
    dot_f16 => GgmlType::F16,
    dot_bf16 => GgmlType::BF16,
    dot_f32 => GgmlType::F32,
);

per_neon_path!(check_matvec:
    matvec_q4_0 => GgmlType::Q4_0,
    matvec_q4_1 => GgmlType::Q4_1,
    matvec_q5_0 => GgmlType::Q5_0,
    matvec_q5_1 => GgmlType::Q5_1,
    matvec_q8_0 => GgmlType::Q8_0,
    matvec_q4_k => GgmlType::Q4_K,
    matvec_q5_k => GgmlType::Q5_K,
    matvec_q6_k => GgmlType::Q6_K,
    matvec_f16 => GgmlType::F16,
    matvec_f32 => GgmlType::F32,
);

per_neon_path!(check_quantize:
    quantize_q8_0 => GgmlType::Q8_0,
    quantize_q8_1 => GgmlType::Q8_1,
    quantize_q8_k => GgmlType::Q8_K,
);

per_neon_path!(check_op:
    op_rms_norm => Op::RmsNorm,
    op_softmax => Op::Softmax,
    op_silu => Op::Silu,
    op_swiglu => Op::Swiglu,
    op_gelu => Op::Gelu,
    op_geglu => Op::Geglu,
    op_dot_f16 => Op::DotF16,
    op_dot_f16_ggml => Op::DotF16Ggml,
    op_mad_f16 => Op::MadF16,
    op_scale_f16 => Op::ScaleF16,
    op_to_f16 => Op::ToF16,
    op_from_f16 => Op::FromF16,
);

#[test]
fn every_neon_path_is_listed() {
    // The macro above names the paths; a new aarch64 path must get its tests too.
    let neon: Vec<&str> = KernelPath::ALL
        .iter()
        .map(|p| p.name())
        .filter(|n| n.starts_with("neon"))
        .collect();
    assert_eq!(neon, ["neon", "neon-dotprod"]);
    let ours: Vec<&str> = NEON_PATHS.iter().map(|p| p.name()).collect();
    assert_eq!(ours, neon);
}

/// The dispatch picks the path the CPU should get: under `-cpu cortex-a76` the script
/// expects `neon-dotprod`, under `-cpu cortex-a53` (no dotprod) `neon` — the proof that
/// the a53 run really exercised the fallback. With `TERN_KERNELS` set, the forced path
/// (when the CPU has it; else the best one, with a warning). Without
/// `TERN_TEST_EXPECT_PATH` (a real board, a developer's run) the path must still follow
/// the detected features.
#[cfg(target_arch = "aarch64")]
#[test]
fn kernel_path_follows_the_cpu() {
    let features = tern_kernels::cpu_features();
    let chosen = tern_kernels::kernel_path();
    let forced = std::env::var(tern_kernels::cpu::KERNELS_ENV).unwrap_or_default();
    let forced = forced.trim();
    eprintln!("cpu features: {features}; kernel path: {chosen}; TERN_KERNELS={forced:?}");
    assert!(features.neon, "NEON is mandatory on aarch64");
    let best = if features.dotprod {
        KernelPath::NeonDotprod
    } else {
        KernelPath::Neon
    };
    match KernelPath::from_name(forced) {
        Some(path) if Kernels::for_path(path).is_some() => assert_eq!(chosen, path),
        _ => assert_eq!(chosen, best),
    }
    assert_eq!(Kernels::current().path(), chosen);
    if let Ok(expected) = std::env::var(EXPECT_ENV) {
        assert_eq!(chosen.name(), expected, "features: {features}");
        if matches!(forced, "" | "auto") {
            // The emulated CPU model really has (a76) or lacks (a53) the dot product.
            assert_eq!(features.dotprod, expected == "neon-dotprod", "{features}");
        }
    }
    // A path the CPU lacks is never handed out.
    assert_eq!(
        Kernels::for_path(KernelPath::NeonDotprod).is_some(),
        features.dotprod
    );
    assert!(Kernels::for_path(KernelPath::Neon).is_some());
    assert!(Kernels::for_path(KernelPath::Avx2).is_none());
}
