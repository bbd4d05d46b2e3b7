//! The matmuls of whole models, on their real weights: what the kernels alone allow a
//! model to run at, to put next to `llama-bench` and `tern bench` (which add attention,
//! norms and the rest).
//!
//! - `decode`: one token through every weight matrix of the model in file order, the
//!   tied output matrix included (its largest matmul), activations quantized once per
//!   input as the engine does; `items` are tokens. 1 and 2 threads (`ThreadPool`).
//! - `prompt`: 512 tokens through every layer matrix (the output matrix runs for the
//!   last token only, as in llama.cpp's prompt processing); `items` are tokens.
//!
//! The models are the test models of `scripts/fetch-test-data.py` (`.cache/models`, or
//! `$TERN_TEST_DATA/models`); a model that is not there is skipped with a note. Run with
//! `cargo bench -p tern-kernels --bench models`; `TERN_KERNELS=avx2` compares a path.

use std::path::PathBuf;

use divan::Bencher;
use divan::counter::ItemsCount;
use tern_gguf::{GgmlType, GgufFile};
use tern_kernels::pool::ThreadPool;
use tern_kernels::{Kernels, QuantizedActivations, WeightMatrix};

fn main() {
    divan::main();
}

const MODELS: [&str; 3] = [
    "smollm2-135m-instruct-q4_1.gguf",
    "gemma-3-270m-q4_k_m.gguf",
    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
];

fn model_file(name: &str) -> Option<GgufFile> {
    let dir = std::env::var_os("TERN_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache"));
    let path = dir.join("models").join(name);
    if !path.exists() {
        eprintln!("skipped: {} is not there", path.display());
        return None;
    }
    Some(GgufFile::open(&path).expect("a readable GGUF file"))
}

/// The matrices a token goes through: every 2-D tensor of a block, then the output
/// matrix (`output.weight`, or the tied `token_embd.weight`).
fn matrices(file: &GgufFile) -> (Vec<WeightMatrix<'_>>, WeightMatrix<'_>) {
    let mut layers = Vec::new();
    for t in file.tensors() {
        if t.name.starts_with("blk.") && t.dims.len() == 2 && t.ggml_type != GgmlType::F32 {
            let w = WeightMatrix::try_new(
                t.ggml_type,
                t.n_rows() as usize,
                t.row_len() as usize,
                file.tensor_data(t),
            )
            .expect("a supported matrix");
            layers.push(w);
        }
    }
    let out = file
        .tensor("output.weight")
        .or_else(|| file.tensor("token_embd.weight"))
        .expect("an output matrix");
    let output = WeightMatrix::try_new(
        out.ggml_type,
        out.n_rows() as usize,
        out.row_len() as usize,
        file.tensor_data(out),
    )
    .expect("a supported output matrix");
    (layers, output)
}

/// Runs `w` on `x` (n × cols), quantizing unless the previous matmul had the same
/// activation type and input size (Q, K, V share their input).
struct Runner {
    acts: QuantizedActivations,
    last: Option<(GgmlType, usize)>,
    out: Vec<f32>,
}

impl Runner {
    fn run(&mut self, pool: &ThreadPool, w: &WeightMatrix<'_>, x: &[f32], n: usize) {
        let key = (tern_kernels::vec_dot_type(w.ty).unwrap(), w.cols);
        if self.last != Some(key) {
            self.acts.quantize(w.ty, &x[..n * w.cols], n, w.cols);
            self.last = Some(key);
        }
        self.out.resize(n * w.rows, 0.0);
        tern_kernels::matmul_with_pool(pool, w, &self.acts, &mut self.out);
    }
}

fn inputs(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

#[divan::bench(args = MODELS, consts = [1, 2], sample_count = 20)]
fn decode<const THREADS: usize>(bencher: Bencher<'_, '_>, model: &str) {
    let Some(file) = model_file(model) else {
        return;
    };
    let (layers, output) = matrices(&file);
    let pool = ThreadPool::new(THREADS);
    let widest = layers
        .iter()
        .map(|w| w.cols)
        .max()
        .unwrap_or(0)
        .max(output.cols);
    let x = inputs(widest);
    let mut r = Runner {
        acts: QuantizedActivations::new(),
        last: None,
        out: Vec::new(),
    };
    eprintln!("{model}: kernels {:?}", Kernels::current());
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        r.last = None;
        for w in &layers {
            r.run(&pool, w, &x, 1);
        }
        r.run(&pool, &output, &x, 1);
    });
}

#[divan::bench(args = MODELS, consts = [1, 2], sample_count = 3, sample_size = 1)]
fn prompt<const THREADS: usize>(bencher: Bencher<'_, '_>, model: &str) {
    const TOKENS: usize = 512;
    let Some(file) = model_file(model) else {
        return;
    };
    let (layers, output) = matrices(&file);
    let pool = ThreadPool::new(THREADS);
    let widest = layers
        .iter()
        .map(|w| w.cols)
        .max()
        .unwrap_or(0)
        .max(output.cols);
    let x = inputs(widest * TOKENS);
    let mut r = Runner {
        acts: QuantizedActivations::new(),
        last: None,
        out: Vec::new(),
    };
    bencher.counter(ItemsCount::new(TOKENS)).bench_local(|| {
        r.last = None;
        for w in &layers {
            r.run(&pool, w, &x, TOKENS);
        }
        r.last = None;
        r.run(&pool, &output, &x, 1);
    });
}
