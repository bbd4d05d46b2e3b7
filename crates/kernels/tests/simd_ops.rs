//! The elementwise ops of every x86_64 path against the scalar reference, one generated
//! test per (op, path) pair, on 0 to 300 values starting at any offset:
//!
//! - bit for bit: GELU/GeGLU (f16 table), f16 conversions, `vec_mad_f16`,
//!   `vec_scale_f16`, `vec_dot_f16_ggml`;
//! - bit for bit against a scalar model of the SIMD algorithm: SiLU, SwiGLU and softmax
//!   use llama.cpp's vectorised `expf` (`ggml_v_expf`, AVX2 or AVX-512 variant by path);
//!   the model below replays it with the same f32 operations, so any deviation in the
//!   kernel (a constant, an operation order, a special case) shows;
//! - within a named tolerance of the scalar reference: SiLU, SwiGLU and softmax against
//!   libm's `expf` (4 ulp relative: ggml's bound is 1.45 + 0.5 ulp for the exponential,
//!   plus the division or normalisation), RMSNorm (2 ulp: its f64 sum of squares is
//!   added in another order, which can move the f32 scale by one ulp), `vec_dot_f16`
//!   (2^-40 of `Σ|a·b|`: f64 sums of the same f32 products in another order).

mod simd_support;

use half::f16;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use simd_support::*;
use tern_kernels::{KernelPath, Kernels};

/// `|got - want| <= ulps * ulp(want)`, or both NaN.
fn within_ulps(got: f32, want: f32, ulps: f32) -> bool {
    if got.is_nan() || want.is_nan() {
        return got.is_nan() && want.is_nan();
    }
    let ulp = (want.abs() * f32::EPSILON).max(f32::MIN_POSITIVE);
    (got - want).abs() <= ulps * ulp
}

// ---- A scalar model of `ggml_v_expf` (llama.cpp ggml-cpu/vec.h), both variants ----

fn hexf(s: &str) -> f32 {
    // "1.715476p+0" style: mantissa digits after "1." in hex, then the exponent.
    let (m, e) = s.split_once('p').unwrap();
    let frac = m.strip_prefix("1.").unwrap();
    let mut v = 1.0f64;
    for (i, c) in frac.chars().enumerate() {
        v += c.to_digit(16).unwrap() as f64 / 16f64.powi(i as i32 + 1);
    }
    (v * 2f64.powi(e.parse().unwrap())) as f32
}

struct ExpConsts {
    log2e: f32,
    ln2_hi: f32,
    ln2_lo: f32,
    c: [f32; 5],
}

fn consts() -> ExpConsts {
    ExpConsts {
        log2e: hexf("1.715476p0"),
        ln2_hi: hexf("1.62e4p-1"),
        ln2_lo: hexf("1.7f7d1cp-20"),
        c: [
            hexf("1.ffffecp-1"),
            hexf("1.fffdb6p-2"),
            hexf("1.555e66p-3"),
            hexf("1.573e2ep-5"),
            hexf("1.0e4020p-7"),
        ],
    }
}

fn exp_model(x: f32, avx512: bool) -> f32 {
    let k = consts();
    let r = 12_582_912.0f32;
    let z = x.mul_add(k.log2e, r);
    let n = z - r;
    let b = (-n).mul_add(k.ln2_lo, (-n).mul_add(k.ln2_hi, x));
    let u = b * b;
    let inner = k.c[4]
        .mul_add(b, k.c[3])
        .mul_add(u, k.c[2].mul_add(b, k.c[1]));
    if avx512 {
        let j = inner.mul_add(u, k.c[0].mul_add(b, 1.0));
        if n.abs() > 192.0 {
            return if n <= 0.0 { 0.0 } else { f32::INFINITY };
        }
        // vscalefps: j · 2^n with one rounding.
        return (j as f64 * 2f64.powi(n as i32)) as f32;
    }
    let j = inner.mul_add(u, k.c[0] * b);
    let e = z.to_bits() << 23;
    let kk = f32::from_bits(e.wrapping_add(1.0f32.to_bits()));
    if n.abs() <= 126.0 {
        return j.mul_add(kk, kk);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

fn is_avx512(path: KernelPath) -> bool {
    matches!(path, KernelPath::Avx512 | KernelPath::Avx512Vnni)
}

/// `silu` as the kernels compute it: the model exponential for whole 8-value groups,
/// libm's for the rest.
fn silu_model(x: &[f32], avx512: bool) -> Vec<f32> {
    let whole = x.len() / 8 * 8;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if i < whole {
                v / (1.0 + exp_model(-v, avx512))
            } else {
                tern_kernels::ops::silu_f32(v)
            }
        })
        .collect()
}

fn softmax_model(x: &[f32], avx512: bool) -> Vec<f32> {
    if x.is_empty() {
        return vec![];
    }
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let whole = x.len() / 8 * 8;
    let mut y = x.to_vec();
    let mut sum = 0.0f64;
    for chunk in y[..whole].chunks_exact_mut(8) {
        for v in chunk.iter_mut() {
            *v = exp_model(*v - max, avx512);
        }
        // The kernel's horizontal sum: halves, then pairs, then the last two.
        let h: Vec<f32> = (0..4).map(|l| chunk[l] + chunk[l + 4]).collect();
        let q = [h[0] + h[2], h[1] + h[3]];
        sum += (q[0] + q[1]) as f64;
    }
    for v in &mut y[whole..] {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    y.iter().map(|v| v * inv).collect()
}

/// Inputs: random values of several magnitudes, plus the special values the
/// exponential and GELU treat apart (±10, ±88, ±104, ±126·ln2…, ±inf, 0).
fn inputs(n: usize, rng: &mut XorShift, kind: u8) -> Vec<f32> {
    let specials = [
        0.0, -0.0, 10.0, -10.0, 9.999, -9.999, 88.3, -88.3, 89.0, -104.0, -103.9, 87.0, -87.3,
        130.0, -150.0, 1e-30, -1e-30, 0.5, -0.5,
    ];
    (0..n)
        .map(|i| match kind % 3 {
            0 => rng.unit() * 12.0,
            1 => rng.unit() * 120.0,
            _ => {
                if i % 3 == 0 {
                    specials[rng.range(0, specials.len() as i64) as usize]
                } else {
                    rng.unit() * 30.0
                }
            }
        })
        .collect()
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    })
}

/// `f(kernels, scalar, x, y)` on random inputs `x`, `y` (same length, starting
/// `offset` values into their buffers).
fn check(
    path: KernelPath,
    what: &str,
    f: impl Fn(Kernels, Kernels, &[f32], &[f32], bool) -> Result<(), TestCaseError>,
) {
    let Some(k) = kernels_or_skip(path) else {
        return;
    };
    let scalar = Kernels::scalar();
    runner()
        .run(
            &(0usize..=300, 0usize..16, any::<u64>(), any::<u8>()),
            |(n, off, seed, kind)| {
                let mut rng = XorShift::new(seed);
                let mut xb = vec![0.0f32; off + n];
                xb[off..].copy_from_slice(&inputs(n, &mut rng, kind));
                let mut yb = vec![0.0f32; off + n];
                yb[off..].copy_from_slice(&inputs(n, &mut rng, 0));
                f(k, scalar, &xb[off..], &yb[off..], is_avx512(path))
            },
        )
        .unwrap_or_else(|e| panic!("{what} on {path}: {e}"));
}

fn f16s(x: &[f32]) -> Vec<f16> {
    x.iter().map(|&v| f16::from_f32(v)).collect()
}

fn check_rms_norm(path: KernelPath) {
    check(path, "rms_norm", |k, s, x, w, _| {
        let (mut got, mut want) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        k.rms_norm(x, w, 1e-5, &mut got);
        s.rms_norm(x, w, 1e-5, &mut want);
        for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
            prop_assert!(within_ulps(g, e, 2.0), "[{}]: {} vs {}", i, g, e);
        }
        let mut in_place = x.to_vec();
        k.rms_norm_in_place(&mut in_place, w, 1e-5);
        prop_assert_eq!(in_place, got);
        Ok(())
    });
}

fn check_softmax(path: KernelPath) {
    check(path, "softmax", |k, s, x, _, avx512| {
        let (mut got, mut want) = (x.to_vec(), x.to_vec());
        k.softmax_in_place(&mut got);
        s.softmax_in_place(&mut want);
        let model = softmax_model(x, avx512);
        for i in 0..x.len() {
            prop_assert_eq!(got[i].to_bits(), model[i].to_bits(), "[{}] vs the model", i);
            prop_assert!(
                within_ulps(got[i], want[i], 4.0) || want[i] < 1e-30,
                "[{}]: {} vs libm {}",
                i,
                got[i],
                want[i]
            );
        }
        Ok(())
    });
}

fn check_silu(path: KernelPath) {
    check(path, "silu/swiglu", |k, s, x, up, avx512| {
        let (mut got, mut want) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        k.silu(x, &mut got);
        s.silu(x, &mut want);
        let model = silu_model(x, avx512);
        for i in 0..x.len() {
            prop_assert_eq!(
                got[i].to_bits(),
                model[i].to_bits(),
                "silu({}) vs the model",
                x[i]
            );
            prop_assert!(
                within_ulps(got[i], want[i], 4.0) || want[i].abs() < 1e-30,
                "silu({}): {} vs libm {}",
                x[i],
                got[i],
                want[i]
            );
        }
        k.swiglu(x, up, &mut got);
        for i in 0..x.len() {
            prop_assert_eq!(
                got[i].to_bits(),
                (model[i] * up[i]).to_bits(),
                "swiglu at {}",
                x[i]
            );
        }
        Ok(())
    });
}

fn check_gelu(path: KernelPath) {
    check(path, "gelu/geglu", |k, s, x, up, _| {
        let (mut got, mut want) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        k.gelu_tanh(x, &mut got);
        s.gelu_tanh(x, &mut want);
        prop_assert_eq!(&got, &want);
        k.geglu_tanh(x, up, &mut got);
        s.geglu_tanh(x, up, &mut want);
        prop_assert_eq!(&got, &want);
        Ok(())
    });
}

fn check_f16_ops(path: KernelPath) {
    check(path, "f16 ops", |k, s, x, y, _| {
        let n = x.len();
        // Conversions (no NaN among the inputs; ±inf and out-of-range values included).
        let (mut got, mut want) = (vec![f16::ZERO; n], vec![f16::ZERO; n]);
        k.f32_to_f16_slice(x, &mut got);
        s.f32_to_f16_slice(x, &mut want);
        prop_assert_eq!(&got, &want);
        let (mut back_k, mut back_s) = (vec![0.0; n], vec![0.0; n]);
        k.f16_to_f32_slice(&got, &mut back_k);
        s.f16_to_f32_slice(&got, &mut back_s);
        prop_assert_eq!(&back_k, &back_s);
        // Attention helpers, on finite f16 data.
        let a: Vec<f16> = f16s(&x.iter().map(|v| v.clamp(-60.0, 60.0)).collect::<Vec<_>>());
        let b: Vec<f16> = f16s(&y.iter().map(|v| v / 4.0).collect::<Vec<_>>());
        let (dg, ds) = (k.vec_dot_f16_ggml(&a, &b), s.vec_dot_f16_ggml(&a, &b));
        prop_assert_eq!(
            dg.to_bits(),
            ds.to_bits(),
            "vec_dot_f16_ggml {} vs {}",
            dg,
            ds
        );
        let magnitude: f64 = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p.to_f64() * q.to_f64()).abs())
            .sum();
        let (dk, dr) = (k.vec_dot_f16(&a, &b), s.vec_dot_f16(&a, &b));
        prop_assert!(
            (dk as f64 - dr as f64).abs()
                <= 2f64.powi(-40) * magnitude + (dr.abs() * f32::EPSILON) as f64,
            "vec_dot_f16 {} vs {}",
            dk,
            dr
        );
        let (mut yk, mut ys) = (b.clone(), b.clone());
        k.vec_mad_f16(&mut yk, &a, 0.37);
        s.vec_mad_f16(&mut ys, &a, 0.37);
        prop_assert_eq!(&yk, &ys);
        k.vec_scale_f16(&mut yk, -1.7);
        s.vec_scale_f16(&mut ys, -1.7);
        prop_assert_eq!(&yk, &ys);
        Ok(())
    });
}

macro_rules! per_path {
    ($($module:ident => $check:ident),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test]
            fn avx2() {
                $check(KernelPath::Avx2);
            }
            #[test]
            fn avx512() {
                $check(KernelPath::Avx512);
            }
            #[test]
            fn avx512_vnni() {
                $check(KernelPath::Avx512Vnni);
            }
        }
    )*};
}

per_path!(
    rms_norm => check_rms_norm,
    softmax => check_softmax,
    silu_swiglu => check_silu,
    gelu_geglu => check_gelu,
    f16_ops => check_f16_ops,
);

#[test]
fn exp_model_is_close_to_libm() {
    // The model is only useful if it is the documented approximation.
    let mut rng = XorShift::new(3);
    for _ in 0..20_000 {
        let x = rng.unit() * 87.0;
        for avx512 in [false, true] {
            let (m, e) = (exp_model(x, avx512), x.exp());
            assert!(
                within_ulps(m, e, 2.0),
                "exp({x}) = {m} vs {e} (avx512 {avx512})"
            );
        }
    }
    assert_eq!(exp_model(-200.0, true), 0.0);
    assert_eq!(exp_model(200.0, true), f32::INFINITY);
    assert_eq!(exp_model(-200.0, false), 0.0);
    assert_eq!(exp_model(f32::NEG_INFINITY, false), 0.0);
}
