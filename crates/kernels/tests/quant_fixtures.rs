//! The kernels against the references frozen in tests/fixtures by
//! scripts/kernels/gen_fixtures.py: gguf-py's quantizers and dequantizers, ggml's
//! reference activation quantizers, and llama.cpp's CPU dot products.
//!
//! Dequantization and quantization must agree bit for bit. Dot products are checked
//! three ways: against the f64 dot of the dequantized weight and activation rows (a tight
//! bound derived from the number of f32 roundings), against llama.cpp's own dot (the
//! same bound twice over: both are within it of the exact value), and against the f64
//! dot of the original f32 values (a per-format error budget that catches a kernel that
//! is self-consistent but wrong).

use std::path::PathBuf;

use serde_json::Value;
use tern_gguf::GgmlType;
use tern_kernels::blocks::{
    BlockQ2K, BlockQ4_1, BlockQ4K, BlockQ5_1, BlockQ5K, as_blocks, scale_min_k4,
};
use tern_kernels::{
    KernelError, QuantizedActivations, WeightMatrix, dequantize_row, get_rows, matmul,
    quantize_row, vec_dot, vec_dot_type,
};

struct Fixtures {
    manifest: Value,
    data: Vec<u8>,
}

fn fixtures() -> Fixtures {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    let data = std::fs::read(dir.join("data.bin")).expect("data.bin");
    Fixtures {
        manifest: serde_json::from_str(&manifest).expect("manifest is JSON"),
        data,
    }
}

/// One fixture case: a weight type and shape with its arrays.
struct Case<'a> {
    name: String,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    json: &'a Value,
    data: &'a [u8],
}

impl<'a> Case<'a> {
    fn bytes(&self, key: &str) -> Option<&'a [u8]> {
        let entry = self.json.get(key)?;
        let offset = entry["offset"].as_u64().unwrap() as usize;
        let len = entry["bytes"].as_u64().unwrap() as usize;
        Some(&self.data[offset..offset + len])
    }

    fn f32s(&self, key: &str) -> Option<Vec<f32>> {
        assert_eq!(
            self.json.get(key)?["dtype"],
            "f32",
            "{key} of {}",
            self.name
        );
        let b = self.bytes(key)?;
        Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )
    }

    fn activation_type(&self) -> Option<GgmlType> {
        self.json
            .get("activation_type")
            .map(|v| type_named(v.as_str().unwrap()))
    }

    fn weight_row(&self, r: usize) -> &'a [u8] {
        let q = self.bytes("quantized").unwrap();
        let n = q.len() / self.rows;
        &q[r * n..(r + 1) * n]
    }
}

fn type_named(name: &str) -> GgmlType {
    GgmlType::ALL
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("unknown type {name}"))
}

fn cases(f: &Fixtures) -> Vec<Case<'_>> {
    f.manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            ty: type_named(c["type"].as_str().unwrap()),
            rows: c["rows"].as_u64().unwrap() as usize,
            cols: c["cols"].as_u64().unwrap() as usize,
            json: c,
            data: &f.data,
        })
        .collect()
}

fn rows_of<T: Clone>(v: &[T], cols: usize) -> Vec<Vec<T>> {
    v.chunks_exact(cols).map(<[T]>::to_vec).collect()
}

#[test]
fn fixtures_cover_every_format() {
    let f = fixtures();
    let all = cases(&f);
    for ty in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        let n = all
            .iter()
            .filter(|c| c.ty == ty && c.json.get("llamacpp_dot").is_some())
            .count();
        assert!(n >= 2, "{ty}: {n} dot-product cases");
        let one_block = all
            .iter()
            .any(|c| c.ty == ty && c.rows == 1 && c.cols == ty.block_size().max(32));
        assert!(one_block, "{ty}: no single-block case");
    }
}

#[test]
fn dequantize_is_bit_exact_with_gguf_py() {
    let f = fixtures();
    let mut checked = 0;
    for case in cases(&f) {
        let expected = case.f32s("dequantized").unwrap();
        let mut out = vec![0.0f32; case.cols];
        for r in 0..case.rows {
            dequantize_row(case.ty, case.weight_row(r), &mut out).unwrap();
            for (i, (&got, &want)) in out.iter().zip(&expected[r * case.cols..]).enumerate() {
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{}: row {r} value {i}: got {got}, gguf-py {want}",
                    case.name
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} rows checked");
}

#[test]
fn quantize_is_bit_exact_with_gguf_py() {
    let f = fixtures();
    let mut checked = 0;
    for case in cases(&f) {
        if case.json["source"] != "gguf-py quantize" {
            continue;
        }
        let input = case.f32s("input").unwrap();
        for (r, x) in rows_of(&input, case.cols).iter().enumerate() {
            let want = case.weight_row(r);
            let mut got = vec![0u8; want.len()];
            quantize_row(case.ty, x, &mut got).unwrap();
            let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
            assert_eq!(
                first_diff, None,
                "{}: row {r} differs from gguf-py",
                case.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} rows checked");
}

#[test]
fn activation_quantizers_are_bit_exact_with_ggml_reference() {
    let f = fixtures();
    let mut seen = std::collections::BTreeSet::new();
    for case in cases(&f) {
        let Some(act_ty) = case.activation_type() else {
            continue;
        };
        assert_eq!(vec_dot_type(case.ty), Some(act_ty), "{}", case.name);
        let x = case.f32s("activation_input").unwrap();
        let want = case.bytes("activation_quantized").unwrap();
        let n_rows = x.len() / case.cols;
        // Through the matmul API, which must pick the same activation type.
        let mut acts = QuantizedActivations::new();
        acts.quantize(case.ty, &x, n_rows, case.cols);
        assert_eq!(acts.ty(), act_ty);
        let row_len = want.len() / n_rows;
        for t in 0..n_rows {
            let want_row = &want[t * row_len..(t + 1) * row_len];
            let diff = acts.row(t).iter().zip(want_row).position(|(a, b)| a != b);
            assert_eq!(
                diff, None,
                "{}: {act_ty} activation row {t}, first differing byte",
                case.name
            );
            let mut direct = vec![0u8; row_len];
            quantize_row(act_ty, &x[t * case.cols..(t + 1) * case.cols], &mut direct).unwrap();
            assert_eq!(direct, want_row, "{}: quantize_row({act_ty})", case.name);
        }
        seen.insert(act_ty.name());
    }
    let seen: Vec<_> = seen.into_iter().collect();
    assert_eq!(seen, ["bf16", "f16", "f32", "q8_0", "q8_1", "q8_K"]);
}

/// The minimum subtracted from (or added to) each value of a row, for the formats that
/// have one: the tight bound must cover the rounding of both parts of `w = d*q + m`,
/// which can be far larger than `|w|` when they nearly cancel.
fn offsets(ty: GgmlType, row: &[u8]) -> Vec<f32> {
    match ty {
        GgmlType::Q4_1 => as_blocks::<BlockQ4_1>(row)
            .iter()
            .flat_map(|b| [b.m.to_f32(); 32])
            .collect(),
        GgmlType::Q5_1 => as_blocks::<BlockQ5_1>(row)
            .iter()
            .flat_map(|b| [b.m.to_f32(); 32])
            .collect(),
        GgmlType::Q2_K => as_blocks::<BlockQ2K>(row)
            .iter()
            .flat_map(|b| {
                (0..16).flat_map(move |j| [b.dmin.to_f32() * (b.scales[j] >> 4) as f32; 16])
            })
            .collect(),
        GgmlType::Q4_K => as_blocks::<BlockQ4K>(row)
            .iter()
            .flat_map(|b| {
                (0..8)
                    .flat_map(move |j| [b.dmin.to_f32() * scale_min_k4(j, &b.scales).1 as f32; 32])
            })
            .collect(),
        GgmlType::Q5_K => as_blocks::<BlockQ5K>(row)
            .iter()
            .flat_map(|b| {
                (0..8)
                    .flat_map(move |j| [b.dmin.to_f32() * scale_min_k4(j, &b.scales).1 as f32; 32])
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// What one dot-product case measures.
struct DotCheck {
    ours: f32,
    exact: f64,
    bound: f64,
    llamacpp: f32,
    original: f64,
    error_scale: f64,
}

fn dot_checks(case: &Case<'_>) -> Vec<DotCheck> {
    let act_ty = case.activation_type().unwrap();
    let act = case.bytes("activation_quantized").unwrap();
    let act_input = case.f32s("activation_input").unwrap();
    let n_tok = act_input.len() / case.cols;
    let act_row_len = act.len() / n_tok;
    let weights = case.f32s("dequantized").unwrap();
    let input = case.f32s("input");
    let llamacpp = case.f32s("llamacpp_dot").unwrap();
    let n_blocks = (case.cols / case.ty.block_size()) as f64;
    // Roundings on the way: a few per block (scale products, the block term) plus one
    // per block for the running sum, plus the final lane sums of the K-quants.
    let eps = f32::EPSILON as f64;
    let rounding = (n_blocks + 12.0) * eps;
    let mut out = Vec::new();
    for t in 0..n_tok {
        let a_row = &act[t * act_row_len..(t + 1) * act_row_len];
        let mut a = vec![0.0f32; case.cols];
        dequantize_row(act_ty, a_row, &mut a).unwrap();
        let x = &act_input[t * case.cols..(t + 1) * case.cols];
        for r in 0..case.rows {
            let w_row = case.weight_row(r);
            let w = &weights[r * case.cols..(r + 1) * case.cols];
            let ours = vec_dot(case.ty, w_row, a_row, case.cols).unwrap();
            let exact: f64 = w.iter().zip(&a).map(|(&p, &q)| p as f64 * q as f64).sum();
            let offs = offsets(case.ty, w_row);
            let magnitude: f64 = (0..case.cols)
                .map(|i| {
                    (w[i].abs() as f64 + offs.get(i).map_or(0.0, |o| o.abs() as f64))
                        * a[i].abs() as f64
                })
                .sum();
            let mut bound = rounding * magnitude;
            if act_ty == GgmlType::Q8_1 {
                // Q8_1 stores s = d * sum(q) rounded to f16, computed from the f32 scale
                // before its own f16 rounding: ggml's dot adds m * s, not m * sum(a).
                let s_error: f64 = (0..case.cols)
                    .map(|i| offs[i].abs() as f64 * a[i].abs() as f64)
                    .sum::<f64>()
                    * 2f64.powi(-10);
                bound += s_error;
            }
            let (original, error_scale) = match &input {
                Some(input) => {
                    let x0 = &input[r * case.cols..(r + 1) * case.cols];
                    let dot: f64 = x0.iter().zip(x).map(|(&p, &q)| p as f64 * q as f64).sum();
                    // sqrt(sum (w_i a_i)^2): the size of a quantization error that is
                    // independent across values, so the ratio does not shrink with the
                    // row length and compares across shapes.
                    let scale: f64 = x0
                        .iter()
                        .zip(x)
                        .map(|(&p, &q)| (p as f64 * q as f64).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    (dot, scale)
                }
                None => (f64::NAN, f64::NAN),
            };
            out.push(DotCheck {
                ours,
                exact,
                bound,
                llamacpp: llamacpp[t * case.rows + r],
                original,
                error_scale,
            });
        }
    }
    out
}

#[test]
fn vec_dot_is_within_rounding_of_the_exact_dot() {
    let f = fixtures();
    let mut report = Vec::new();
    for case in cases(&f) {
        if case.activation_type().is_none() {
            continue;
        }
        let mut worst = 0.0f64;
        for (i, c) in dot_checks(&case).iter().enumerate() {
            let err = (c.ours as f64 - c.exact).abs();
            assert!(
                err <= c.bound,
                "{} dot {i}: ours {} exact {} |err| {err:.3e} > bound {:.3e}",
                case.name,
                c.ours,
                c.exact,
                c.bound
            );
            worst = worst.max(err / c.bound.max(f64::MIN_POSITIVE));
        }
        report.push(format!("{:>16}: max |err| / bound = {worst:.3}", case.name));
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn vec_dot_agrees_with_llamacpp_cpu() {
    let f = fixtures();
    let mut report = Vec::new();
    for case in cases(&f) {
        if case.activation_type().is_none() {
            continue;
        }
        let mut worst_rel = 0.0f64;
        for (i, c) in dot_checks(&case).iter().enumerate() {
            let diff = (c.ours as f64 - c.llamacpp as f64).abs();
            // Both are within `bound` of the exact value; they differ only in the order
            // of f32 sums (llama.cpp runs its SIMD kernels here).
            assert!(
                diff <= 2.0 * c.bound,
                "{} dot {i}: ours {} llama.cpp {} differ by {diff:.3e} > {:.3e}",
                case.name,
                c.ours,
                c.llamacpp,
                2.0 * c.bound
            );
            worst_rel = worst_rel.max(diff / c.exact.abs().max(1e-30));
        }
        report.push(format!(
            "{:>16}: max |ours - llama.cpp| / |dot| = {worst_rel:.2e}",
            case.name
        ));
    }
    eprintln!("{}", report.join("\n"));
}

/// Error budget per weight format for `|dot - f64 dot of the f32 originals|`, relative
/// to `sqrt(sum (w_i x_i)^2)` (the size of an error independent across values). It
/// includes both the weight's quantization and the activation's (to Q8_0 / Q8_1 / Q8_K,
/// F16 or BF16). The maxima measured on the fixtures are in the comments (worst of 12
/// dots for the 32-value formats, 10 for the K-quants; single-block rows with an outlier
/// dominate); each budget is about 1.5 times that.
fn error_budget(ty: GgmlType) -> f64 {
    use GgmlType::*;
    match ty {
        F32 => 1e-7,  // 5.8e-8
        F16 => 7e-4,  // 4.4e-4
        BF16 => 1e-2, // 6.4e-3
        Q8_0 => 5e-2, // 3.2e-2
        Q6_K => 8e-2, // 5.1e-2
        Q5_K => 6e-2, // 4.0e-2
        Q5_1 => 0.16, // 0.106
        Q5_0 => 0.23, // 0.150
        Q4_K => 0.26, // 0.171
        Q4_1 => 0.5,  // 0.336
        Q4_0 => 0.8,  // 0.530
        Q3_K => 0.48, // 0.320
        Q2_K => 0.75, // 0.494
        _ => unreachable!("no budget for {ty}"),
    }
}

#[test]
fn vec_dot_stays_within_the_format_error_budget() {
    let f = fixtures();
    let mut worst = std::collections::BTreeMap::<&str, f64>::new();
    let mut failures = Vec::new();
    for case in cases(&f) {
        if case.activation_type().is_none() || case.json.get("input").is_none() {
            continue;
        }
        let budget = error_budget(case.ty);
        for (i, c) in dot_checks(&case).iter().enumerate() {
            let rel = (c.ours as f64 - c.original).abs() / c.error_scale;
            if rel > budget {
                failures.push(format!(
                    "{} dot {i}: ours {} vs f32 originals {}: error {rel:.3e} (relative to \
                     sqrt(sum (w_i x_i)^2)) exceeds the {} budget {budget:.1e}",
                    case.name, c.ours, c.original, case.ty
                ));
            }
            let e = worst.entry(case.ty.name()).or_default();
            *e = e.max(rel);
        }
    }
    for (ty, e) in &worst {
        eprintln!("{ty:>5}: max |error| / sqrt(sum (w_i x_i)^2) = {e:.3e}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(worst.len(), 13, "formats measured: {worst:?}");
}

#[test]
fn matmul_and_get_rows_match_the_row_kernels() {
    let f = fixtures();
    for case in cases(&f) {
        let Some(_) = case.activation_type() else {
            continue;
        };
        let data = case.bytes("quantized").unwrap();
        let w = WeightMatrix::try_new(case.ty, case.rows, case.cols, data).unwrap();
        let x = case.f32s("activation_input").unwrap();
        let n_tok = x.len() / case.cols;
        let mut acts = QuantizedActivations::new();
        // Quantize something larger first: the buffer is reused and must shrink cleanly.
        acts.quantize(case.ty, &x.repeat(3), 3 * n_tok, case.cols);
        acts.quantize(case.ty, &x, n_tok, case.cols);
        let mut out = vec![f32::NAN; n_tok * case.rows];
        matmul(&w, &acts, &mut out);
        for t in 0..n_tok {
            for r in 0..case.rows {
                let single = vec_dot(case.ty, w.row(r), acts.row(t), case.cols).unwrap();
                assert_eq!(
                    out[t * case.rows + r].to_bits(),
                    single.to_bits(),
                    "{} t{t} r{r}",
                    case.name
                );
            }
        }
        // Embedding lookup: rows in any order, repeated.
        let ids: Vec<u32> = (0..case.rows as u32).rev().chain([0]).collect();
        let mut rows = vec![0.0f32; ids.len() * case.cols];
        get_rows(&w, &ids, &mut rows).unwrap();
        let deq = case.f32s("dequantized").unwrap();
        for (i, &id) in ids.iter().enumerate() {
            let want = &deq[id as usize * case.cols..(id as usize + 1) * case.cols];
            assert_eq!(
                &rows[i * case.cols..(i + 1) * case.cols],
                want,
                "{} get_rows id {id}",
                case.name
            );
        }
        let bad = [case.rows as u32];
        assert_eq!(
            get_rows(&w, &bad, &mut rows[..case.cols]),
            Err(KernelError::RowOutOfRange {
                id: case.rows as u32,
                rows: case.rows
            })
        );
    }
}

/// Whole matmuls against llama.cpp's own graph (`ggml_mul_mat` on its CPU backend, one
/// thread), which picks its kernel by the number of tokens: for Q6_K, `vec_dot` token
/// by token below 8 tokens and its tiled K-quant matmul from 8 on (another f32 order).
/// Every path, single-threaded and split over threads, must give llama.cpp's bits for
/// every token count.
#[test]
fn matmul_is_bit_exact_with_llamacpp_graphs() {
    use tern_kernels::Kernels;
    use tern_kernels::pool::ThreadPool;
    let f = fixtures();
    let matmuls = f.manifest["matmul_cases"].as_array().unwrap();
    assert!(
        matmuls.iter().any(|c| c["type"] == "Q6_K"),
        "no Q6_K matmul fixture"
    );
    let pool = ThreadPool::new(3);
    for c in matmuls {
        let case = Case {
            name: c["name"].as_str().unwrap().to_string(),
            ty: type_named(c["type"].as_str().unwrap()),
            rows: c["rows"].as_u64().unwrap() as usize,
            cols: c["cols"].as_u64().unwrap() as usize,
            json: c,
            data: &f.data,
        };
        let w = WeightMatrix::try_new(
            case.ty,
            case.rows,
            case.cols,
            case.bytes("quantized").unwrap(),
        )
        .unwrap();
        let x = case.f32s("activation_input").unwrap();
        let outputs = c["outputs"].as_array().unwrap();
        let counts: Vec<u64> = outputs
            .iter()
            .map(|o| o["tokens"].as_u64().unwrap())
            .collect();
        assert!(
            counts.iter().any(|&n| n < 8) && counts.iter().any(|&n| n >= 8),
            "{}: token counts {counts:?} miss one side of llama.cpp's switch at 8",
            case.name
        );
        for o in outputs {
            let n = o["tokens"].as_u64().unwrap() as usize;
            let out_case = Case {
                name: case.name.clone(),
                json: o,
                ..case
            };
            let want = out_case.f32s("llamacpp_matmul").unwrap();
            for k in Kernels::available() {
                let mut acts = QuantizedActivations::new();
                acts.quantize_with(k, case.ty, &x[..n * case.cols], n, case.cols);
                let mut got = vec![f32::NAN; n * case.rows];
                k.matmul(&w, &acts, &mut got);
                let mut split = vec![f32::NAN; n * case.rows];
                k.matmul_with_pool(&pool, &w, &acts, &mut split);
                for (i, &want) in want.iter().enumerate() {
                    let (t, r) = (i / case.rows, i % case.rows);
                    for (how, got) in [("one thread", got[i]), ("3 threads", split[i])] {
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{} {:?} {how}, {n} tokens: token {t} row {r}: {got} vs llama.cpp {want}",
                            case.name,
                            k.path()
                        );
                    }
                }
            }
        }
    }
}

/// The softmax of a 64-key tile of llama.cpp's tiled flash attention, by llama.cpp
/// itself (`ggml_vec_soft_max_f32`, exported by its CPU backend): every weight
/// `softmax_exp(x - max)` and the f64 sum `softmax_sum` must be its bits.
#[test]
fn softmax_tile_is_bit_exact_with_llamacpp() {
    use tern_kernels::attention::{softmax_exp, softmax_sum};
    let f = fixtures();
    let cases = f.manifest["softmax_cases"].as_array().unwrap();
    assert!(cases.len() >= 6, "{} softmax cases", cases.len());
    for (i, c) in cases.iter().enumerate() {
        let case = Case {
            name: format!("softmax {i}"),
            ty: GgmlType::F32,
            rows: 1,
            cols: 64,
            json: c,
            data: &f.data,
        };
        let x = case.f32s("input").unwrap();
        let want = case.f32s("output").unwrap();
        let max = c["max"].as_f64().unwrap() as f32;
        let mut got = [0.0f32; 64];
        for (g, &x) in got.iter_mut().zip(&x) {
            *g = softmax_exp(x - max);
        }
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{}: exp({} - {max}) at {j}",
                case.name,
                x[j]
            );
        }
        let sum = f64::from_le_bytes(case.bytes("sum_f64").unwrap().try_into().unwrap());
        assert_eq!(
            softmax_sum(&got).to_bits(),
            sum.to_bits(),
            "{}: sum",
            case.name
        );
    }
}
