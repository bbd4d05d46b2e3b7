//! The matmul of every SIMD path against the scalar reference, per weight type and path
//! (one generated test per pair), on random shapes: 1 to 40 weight rows (so the batched
//! kernels see full and partial row panels), 1 to 12 blocks per row, 1 to 7 tokens (the
//! decode kernel for one, the batched kernel from `GEMM_MIN_TOKENS` on), weights from
//! unaligned addresses.
//!
//! Exact data, and any data for the formats that sum in llama.cpp's x86 order (Q4_0,
//! Q4_1, Q5_0, Q5_1, Q8_0, whatever the token count), must give the scalar result bit
//! for bit; other random data must be within the bound of `simd_dot` for every output
//! element. Below `GEMM_MIN_TOKENS` tokens the
//! matmul must equal `vec_dot` row by row, bit for bit. And the matmul split over a
//! thread pool (2 and 3 threads) must give exactly the single-threaded result, whatever
//! the kernel.

mod simd_support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use simd_support::*;
use tern_gguf::GgmlType;
use tern_kernels::matmul::GEMM_MIN_TOKENS;
use tern_kernels::pool::ThreadPool;
use tern_kernels::{KernelPath, Kernels, QuantizedActivations, WeightMatrix};

/// A random matrix and activations, with the dequantized activation values kept so the
/// activations can be quantized again by each path.
struct Problem {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    tokens: usize,
    weights: Vec<u8>,
    /// The quantized activation rows (same bytes for every path).
    act_rows: Vec<Vec<u8>>,
}

fn problem(
    ty: GgmlType,
    rows: usize,
    units: usize,
    tokens: usize,
    seed: u64,
    exact: bool,
) -> Problem {
    let mut rng = XorShift::new(seed);
    let cols = units * ty.block_size();
    let mut weights = Vec::new();
    for _ in 0..rows {
        weights.extend(weight_row(ty, units, &mut rng, exact));
    }
    let act_rows = (0..tokens)
        .map(|_| activation_row(ty, units, &mut rng, exact))
        .collect();
    Problem {
        ty,
        rows,
        cols,
        tokens,
        weights,
        act_rows,
    }
}

/// The problem's activation rows, prepared for matmuls.
fn activations(p: &Problem) -> QuantizedActivations {
    let act = tern_kernels::vec_dot_type(p.ty).unwrap();
    let mut q = QuantizedActivations::new();
    q.set_quantized(act, &p.act_rows.concat(), p.tokens, p.cols)
        .unwrap();
    q
}

/// The formats whose every path sums in llama.cpp's x86 order (`quant::order`).
fn follows_ggml_order(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q6_K)
}

fn check_matmul(ty: GgmlType, path: KernelPath) {
    let Some(k) = kernels_or_skip(path) else {
        return;
    };
    let scalar = Kernels::scalar();
    let pools = [ThreadPool::new(2), ThreadPool::new(3)];
    let is_float = ty.block_size() == 1;
    let units = if is_float { 1usize..=200 } else { 1usize..=12 };
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        1usize..=40,
        units,
        1usize..=7,
        0usize..32,
        any::<u64>(),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(rows, units, tokens, offset, seed, exact)| {
            let p = problem(ty, rows, units, tokens, seed, exact);
            let wbuf = unaligned(&p.weights, offset);
            let w = WeightMatrix::try_new(ty, rows, p.cols, &wbuf[offset..]).unwrap();
            let acts = activations(&p);
            let mut want = vec![0.0f32; rows * tokens];
            let mut got = vec![0.0f32; rows * tokens];
            scalar.matmul(&w, &acts, &mut want);
            k.matmul(&w, &acts, &mut got);
            for t in 0..tokens {
                for r in 0..rows {
                    let (g, s) = (got[t * rows + r], want[t * rows + r]);
                    if exact || follows_ggml_order(ty) {
                        prop_assert_eq!(
                            g.to_bits(),
                            s.to_bits(),
                            "row {} token {}: {} vs {}",
                            r,
                            t,
                            g,
                            s
                        );
                    } else {
                        let bound = 2f64.powi(-20) * magnitude(ty, w.row(r), acts.row(t), p.cols);
                        prop_assert!(
                            (g as f64 - s as f64).abs() <= bound,
                            "row {} token {}: {} vs scalar {} (bound {:e})",
                            r,
                            t,
                            g,
                            s,
                            bound
                        );
                    }
                }
            }
            if tokens < GEMM_MIN_TOKENS {
                // Row by row, the matmul and `vec_dot` run the same arithmetic.
                for t in 0..tokens {
                    for r in 0..rows {
                        let single = k.vec_dot(ty, w.row(r), acts.row(t), p.cols).unwrap();
                        prop_assert_eq!(got[t * rows + r].to_bits(), single.to_bits());
                    }
                }
            }
            for pool in &pools {
                let mut threaded = vec![f32::NAN; rows * tokens];
                k.matmul_with_pool(pool, &w, &acts, &mut threaded);
                let same = threaded
                    .iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                prop_assert!(same, "{} threads differ from one", pool.n_threads());
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{ty} matmul on {path}: {e}"));
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

per_path!(check_matmul:
    q4_0 => Q4_0,
    q4_1 => Q4_1,
    q5_0 => Q5_0,
    q5_1 => Q5_1,
    q8_0 => Q8_0,
    q2_k => Q2_K,
    q3_k => Q3_K,
    q4_k => Q4_K,
    q5_k => Q5_K,
    q6_k => Q6_K,
    f16 => F16,
    bf16 => BF16,
    f32 => F32,
);

/// The scalar path itself: threads must not change its results either.
#[test]
fn scalar_matmul_is_thread_independent() {
    let k = Kernels::scalar();
    let pool = ThreadPool::new(2);
    for ty in WEIGHT_TYPES {
        let units = if ty.block_size() == 1 { 64 } else { 3 };
        let p = problem(ty, 37, units, 3, 5, false);
        let w = WeightMatrix::try_new(ty, p.rows, p.cols, &p.weights).unwrap();
        let acts = activations(&p);
        let (mut one, mut two) = (vec![0.0; 37 * 3], vec![0.0; 37 * 3]);
        k.matmul(&w, &acts, &mut one);
        k.matmul_with_pool(&pool, &w, &acts, &mut two);
        assert_eq!(one, two, "{ty}");
    }
}

/// llama.cpp's x86 backend multiplies Q4_K matrices (with a multiple of 8 rows) through
/// its repacked kernels: the tokens of a batch in whole groups of 4 in the batched
/// kernel's order (`vec_dot_batched`), the last `n % 4` in the matrix-vector kernel's
/// (`vec_dot`). Every path's matmul must follow that split.
#[test]
fn q4_k_batches_take_the_repacked_orders() {
    use tern_kernels::blocks::as_blocks;
    use tern_kernels::quant::q4_k;
    for k in Kernels::available() {
        for tokens in 1..=9 {
            let p = problem(GgmlType::Q4_K, 19, 3, tokens, 40 + tokens as u64, false);
            let w = WeightMatrix::try_new(GgmlType::Q4_K, p.rows, p.cols, &p.weights).unwrap();
            let acts = activations(&p);
            let mut got = vec![0.0f32; p.rows * tokens];
            k.matmul(&w, &acts, &mut got);
            let grouped = tokens - tokens % 4;
            for t in 0..tokens {
                for r in 0..p.rows {
                    let (wr, ar) = (as_blocks(w.row(r)), as_blocks(acts.row(t)));
                    let want = if t < grouped {
                        q4_k::vec_dot_batched(wr, ar)
                    } else {
                        q4_k::vec_dot(wr, ar)
                    };
                    assert_eq!(
                        got[t * p.rows + r].to_bits(),
                        want.to_bits(),
                        "{:?}: {tokens} tokens, token {t} row {r}",
                        k.path()
                    );
                }
            }
        }
    }
}

/// llama.cpp's x86 backend multiplies Q6_K matrices token by token
/// (`ggml_vec_dot_q6_K_q8_K`, `vec_dot`) below 8 tokens and through its tiled K-quant
/// matmul (`vec_dot_tiled`: one integer per super-block, `fma(f32(s) · d_w, d_a, acc)`)
/// from 8 tokens on, for every token. Every path's matmul must follow that switch bit
/// for bit, on any data (both orders are exact integers followed by the same f32
/// steps), single-threaded or split over threads.
#[test]
fn q6_k_batches_take_the_tiled_order_from_8_tokens() {
    use tern_kernels::blocks::as_blocks;
    use tern_kernels::quant::{TILED_MIN_TOKENS, q6_k};
    assert_eq!(TILED_MIN_TOKENS, 8);
    let pool = ThreadPool::new(3);
    for k in Kernels::available() {
        for tokens in [1, 3, 7, 8, 9, 16, 17] {
            let p = problem(GgmlType::Q6_K, 21, 3, tokens, 60 + tokens as u64, false);
            let w = WeightMatrix::try_new(GgmlType::Q6_K, p.rows, p.cols, &p.weights).unwrap();
            let acts = activations(&p);
            let mut got = vec![0.0f32; p.rows * tokens];
            k.matmul(&w, &acts, &mut got);
            let mut split = vec![0.0f32; p.rows * tokens];
            k.matmul_with_pool(&pool, &w, &acts, &mut split);
            let mut differ = 0;
            for t in 0..tokens {
                for r in 0..p.rows {
                    let (wr, ar) = (as_blocks(w.row(r)), as_blocks(acts.row(t)));
                    let (tiled, single) = (q6_k::vec_dot_tiled(wr, ar), q6_k::vec_dot(wr, ar));
                    differ += usize::from(tiled.to_bits() != single.to_bits());
                    let want = if tokens >= 8 { tiled } else { single };
                    for (how, got) in [
                        ("one thread", got[t * p.rows + r]),
                        ("3 threads", split[t * p.rows + r]),
                    ] {
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{:?} {how}: {tokens} tokens, token {t} row {r}",
                            k.path()
                        );
                    }
                }
            }
            // The two orders must really differ on this data, or the test shows nothing.
            assert!(differ > 0, "{tokens} tokens: the orders agree everywhere");
        }
    }
}

/// A batch gives every token exactly what that token alone gives (the batched kernels
/// sum in the single-token order), on every path, on odd shapes: for every type but
/// Q4_K and Q6_K (whose splits are above) and Q2_K, Q3_K and Q5_K, whose batched kernels
/// still sum per 16 or 32 values (no model of the goldens has them).
#[test]
fn batched_tokens_equal_tokens_alone() {
    for k in Kernels::available() {
        for ty in WEIGHT_TYPES {
            use GgmlType::*;
            if matches!(ty, Q4_K | Q6_K | Q2_K | Q3_K | Q5_K) {
                continue;
            }
            let units = if ty.block_size() == 1 { 37 } else { 3 };
            for (rows, tokens) in [(1, 4), (17, 5), (33, 11)] {
                let p = problem(ty, rows, units, tokens, (rows * tokens) as u64, false);
                let w = WeightMatrix::try_new(ty, rows, p.cols, &p.weights).unwrap();
                let acts = activations(&p);
                let mut batched = vec![0.0f32; rows * tokens];
                k.matmul(&w, &acts, &mut batched);
                for t in 0..tokens {
                    let mut one = QuantizedActivations::new();
                    one.set_quantized(acts.ty(), acts.row(t), 1, p.cols)
                        .unwrap();
                    let mut alone = vec![0.0f32; rows];
                    k.matmul(&w, &one, &mut alone);
                    for r in 0..rows {
                        assert_eq!(
                            batched[t * rows + r].to_bits(),
                            alone[r].to_bits(),
                            "{:?} {ty} {rows}×{tokens}: token {t} row {r}",
                            k.path()
                        );
                    }
                }
            }
        }
    }
}
