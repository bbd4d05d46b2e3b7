//! Every SIMD dot product and activation quantizer against the scalar reference, on
//! every x86_64 path this CPU has (a path it lacks is reported as skipped on stderr).
//! One macro generates one test per (kernel, path) pair.
//!
//! - Activation quantizers: the same bytes as the scalar path's, always (random rows,
//!   rows with rounding ties, zero blocks, sign ties for Q8_K's first-maximum rule).
//! - Dot products, on random shapes (1 to 12 blocks, or 1 to 300 values for the float
//!   types) read from unaligned addresses:
//!   - *exact* data (see `simd_support`): bit-for-bit equal to the scalar result, which
//!     must itself equal the f64 dot of the dequantized rows;
//!   - Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: bit-for-bit equal on any data, since every path
//!     sums in llama.cpp's x86 order;
//!   - other *random* data: within `2^-20 · (Σ|w·a| + max|w|·Σ|a|)` of the scalar result —
//!     both sum f32 terms, in different orders, so each is within `n · 2^-24` of that
//!     magnitude for n ≤ 64 accumulation steps; the bound leaves 16× room and is still
//!     ~10^4 times smaller than the contribution of one block.

mod simd_support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use simd_support::*;
use tern_gguf::GgmlType;
use tern_kernels::{KernelPath, Kernels};

fn dequantized_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f64 {
    let act = tern_kernels::vec_dot_type(ty).unwrap();
    let mut wf = vec![0.0f32; n];
    let mut af = vec![0.0f32; n];
    tern_kernels::dequantize_row(ty, w, &mut wf).unwrap();
    tern_kernels::dequantize_row(act, a, &mut af).unwrap();
    wf.iter().zip(&af).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// The formats whose every path sums in llama.cpp's x86 order (`quant::order`), so the
/// SIMD results equal the scalar ones bit for bit on any data.
fn follows_ggml_order(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q6_K)
}

fn check_dot(ty: GgmlType, path: KernelPath) {
    let Some(k) = kernels_or_skip(path) else {
        return;
    };
    let scalar = Kernels::scalar();
    let is_float = ty.block_size() == 1;
    let units = if is_float { 1usize..=300 } else { 1usize..=12 };
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (units, 0usize..64, 0usize..64, any::<u64>(), any::<bool>());
    runner
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
                // The whole summation order is llama.cpp's x86 one on every path.
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
    let Some(k) = kernels_or_skip(path) else {
        return;
    };
    let scalar = Kernels::scalar();
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(1usize..=9, 0usize..16, any::<u64>(), any::<u8>()),
            |(blocks, offset, seed, kind)| {
                let mut rng = XorShift::new(seed);
                let n = blocks * ty.block_size();
                // An unaligned f32 slice: start `offset` values into a buffer.
                let mut buf = vec![0.0f32; offset + n];
                buf[offset..].copy_from_slice(&quantizer_input(n, &mut rng, kind));
                let x = &buf[offset..];
                let bytes = blocks * ty.type_size();
                let (mut want, mut got) = (vec![0u8; bytes], vec![0xEEu8; bytes + 1]);
                scalar.quantize_activation_row(ty, x, &mut want).unwrap();
                k.quantize_activation_row(ty, x, &mut got[1..]).unwrap();
                prop_assert_eq!(&got[1..], &want[..]);
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{ty} quantizer on {path}: {e}"));
}

macro_rules! per_path {
    ($check:ident: $($module:ident => $ty:ident),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test]
            fn avx2() {
                $check(GgmlType::$ty, KernelPath::Avx2);
            }
            #[test]
            fn avx512() {
                $check(GgmlType::$ty, KernelPath::Avx512);
            }
            #[test]
            fn avx512_vnni() {
                $check(GgmlType::$ty, KernelPath::Avx512Vnni);
            }
        }
    )*};
}

per_path!(check_dot:
    dot_q4_0 => Q4_0,
    dot_q4_1 => Q4_1,
    dot_q5_0 => Q5_0,
    dot_q5_1 => Q5_1,
    dot_q8_0 => Q8_0,
    dot_q2_k => Q2_K,
    dot_q3_k => Q3_K,
    dot_q4_k => Q4_K,
    dot_q5_k => Q5_K,
    dot_q6_k => Q6_K,
    dot_f16 => F16,
    dot_bf16 => BF16,
    dot_f32 => F32,
);

per_path!(check_quantize:
    quantize_q8_0 => Q8_0,
    quantize_q8_1 => Q8_1,
    quantize_q8_k => Q8_K,
);

#[test]
fn every_x86_path_is_listed() {
    // The macro above names the x86 paths; a new one must get its tests too.
    let names: Vec<&str> = simd_paths()
        .iter()
        .map(|p| p.name())
        .filter(|n| n.starts_with("avx"))
        .collect();
    assert_eq!(names, ["avx2", "avx512", "avx512-vnni"]);
}

/// `TERN_KERNELS` picks the path of the process: the test runs itself once per
/// available path with the variable set and checks `Kernels::current()` in the child.
#[test]
fn tern_kernels_env_forces_the_path() {
    const CHILD: &str = "TERN_TEST_CHILD_EXPECTS_PATH";
    if let Ok(expected) = std::env::var(CHILD) {
        assert_eq!(Kernels::current().path().name(), expected);
        assert_eq!(tern_kernels::kernel_path().name(), expected);
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    for k in Kernels::available() {
        let name = k.path().name();
        let status = std::process::Command::new(&exe)
            .args([
                "--exact",
                "tern_kernels_env_forces_the_path",
                "--test-threads=1",
            ])
            .env("TERN_KERNELS", name)
            .env(CHILD, name)
            .status()
            .expect("run the test binary");
        assert!(status.success(), "TERN_KERNELS={name} was not honoured");
    }
}

/// Where the CPU has AVX-512 BF16, the AVX-512 paths use it (`vdpbf16ps` for BF16
/// weights, covered by `dot_bf16::avx512*`), and say so; AVX2 never does.
#[test]
fn avx512_bf16_is_used_where_present() {
    let has = tern_kernels::cpu_features().avx512bf16;
    for k in Kernels::available() {
        let uses = k.extras().contains("avx512bf16");
        let avx512 = matches!(k.path(), KernelPath::Avx512 | KernelPath::Avx512Vnni);
        assert_eq!(uses, has && avx512, "{:?}", k);
    }
}

/// Activations are quantized as llama.cpp's x86 CPU backend does (`127 / amax`, ties to
/// even) on every path, the scalar one included; `quantize_row` keeps ggml's reference
/// rounding (`1 / d`, ties away from zero), how files store Q8_0 weights.
#[test]
fn activation_quantizers_round_like_llama_cpp_x86() {
    let mut x = [0.0f32; 32];
    // amax 127 gives id = 1, so the scaled values are the .5 ties themselves.
    x[..5].copy_from_slice(&[127.0, 2.5, -3.5, 0.5, -0.5]);
    for k in Kernels::available() {
        for ty in [GgmlType::Q8_0, GgmlType::Q8_1] {
            let mut act = vec![0u8; ty.type_size()];
            k.quantize_activation_row(ty, &x, &mut act).unwrap();
            let q = &act[ty.type_size() - 32..];
            assert_eq!(
                &q[..5],
                &[127, 2, (-4i8) as u8, 0, 0],
                "{:?} {ty}",
                k.path()
            );
            let mut reference = vec![0u8; ty.type_size()];
            k.quantize_row(ty, &x, &mut reference).unwrap();
            let r = &reference[ty.type_size() - 32..];
            assert_eq!(
                &r[..5],
                &[127, 3, (-4i8) as u8, 1, (-1i8) as u8],
                "{:?} {ty}",
                k.path()
            );
            if ty == GgmlType::Q8_1 {
                // s = d · Σq with the f32 d = 1: 127 + 2 - 4.
                assert_eq!(half::f16::from_le_bytes([act[2], act[3]]).to_f32(), 125.0);
            }
        }
    }
}
