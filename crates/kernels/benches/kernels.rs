//! Micro-benchmarks of the kernels, per kernel × format × path, with throughput:
//!
//! - `memory`: the machine's single-thread read bandwidth (a sum over 256 MiB) and
//!   `memcpy` bandwidth — the ceiling for decode;
//! - `matvec`: one token through a weight matrix (decode), in GB/s of weights read.
//!   `l3` is 4096 × 2048 (a few MB: cache-resident, so it shows the kernel's own
//!   speed), `dram` 16384 × 4096 (larger than the L3: memory bandwidth);
//! - `matmul`: a 512-token batch through a 1024 × 1024 matrix (prompt), in FLOP/s
//!   (divan's "items" are FLOPs: 2 per multiply-add);
//! - `quantize`: activation quantizers, in GB/s of f32 input;
//! - `ops`: the elementwise ops, in GB/s of f32 input.
//!
//! Run with `cargo bench -p tern-kernels --bench kernels` (add a filter such as
//! `matvec` to run one group). Results measured on this project's machines are in
//! docs/PERFORMANCE.md.

use std::hint::black_box;
use std::sync::OnceLock;

use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use half::f16;
use tern_gguf::GgmlType;
use tern_kernels::{KernelPath, Kernels, QuantizedActivations, WeightMatrix};

fn main() {
    divan::main();
}

/// A benchmark case: a weight type on a kernel path.
#[derive(Clone, Copy, Debug)]
struct Case {
    ty: GgmlType,
    path: KernelPath,
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ty, self.path)
    }
}

const TYPES: [GgmlType; 13] = [
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
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for ty in TYPES {
        for k in Kernels::available() {
            out.push(Case { ty, path: k.path() });
        }
    }
    out
}

fn paths() -> Vec<KernelPath> {
    Kernels::available().iter().map(|k| k.path()).collect()
}

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// Random weight bytes of `ty` with sane f16 scales (random bytes elsewhere).
fn weights(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let mut next = xorshift(ty as u64 + 7);
    let n = rows * cols;
    let x: Vec<f32> = (0..n)
        .map(|_| ((next() >> 40) as f32 / (1u64 << 24) as f32) - 0.5)
        .collect();
    match ty {
        GgmlType::F32
        | GgmlType::F16
        | GgmlType::BF16
        | GgmlType::Q4_0
        | GgmlType::Q4_1
        | GgmlType::Q5_0
        | GgmlType::Q5_1
        | GgmlType::Q8_0 => {
            let mut out = vec![0u8; rows * ty.type_size() * cols / ty.block_size()];
            Kernels::scalar().quantize_row(ty, &x, &mut out).unwrap();
            out
        }
        _ => {
            // K-quants have no quantizer in tern: random blocks, scales from Q8_0-like
            // magnitudes (the speed does not depend on the values).
            let bytes = rows * cols / ty.block_size() * ty.type_size();
            let mut out: Vec<u8> = (0..bytes).map(|_| next() as u8).collect();
            let size = ty.type_size();
            let offsets: &[usize] = match ty {
                GgmlType::Q2_K => &[80, 82],
                GgmlType::Q3_K => &[108],
                GgmlType::Q6_K => &[208],
                _ => &[0, 2],
            };
            for b in out.chunks_exact_mut(size) {
                for &o in offsets {
                    b[o..o + 2].copy_from_slice(&f16::from_f32(0.01).to_bits().to_le_bytes());
                }
            }
            out
        }
    }
}

fn activations(n: usize) -> Vec<f32> {
    let mut next = xorshift(99);
    (0..n)
        .map(|_| ((next() >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0)
        .collect()
}

mod memory {
    use super::*;

    const BYTES: usize = 256 << 20;

    fn buffer() -> &'static [u64] {
        static BUF: OnceLock<Vec<u64>> = OnceLock::new();
        BUF.get_or_init(|| (0..BYTES as u64 / 8).collect())
    }

    /// Reads 256 MiB once (a sum the compiler vectorises).
    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn read(bencher: Bencher<'_, '_>) {
        let buf = buffer();
        bencher
            .counter(BytesCount::new(BYTES))
            .bench(|| buf.iter().fold(0u64, |a, &b| a.wrapping_add(b)));
    }

    /// Copies 256 MiB (read + write; counted as the bytes copied).
    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn memcpy(bencher: Bencher<'_, '_>) {
        let buf = buffer();
        let mut dst = vec![0u64; buf.len()];
        bencher
            .counter(BytesCount::new(BYTES))
            .bench_local(|| dst.copy_from_slice(black_box(buf)));
    }
}

mod matvec {
    use super::*;

    fn run(bencher: Bencher<'_, '_>, case: Case, rows: usize, cols: usize) {
        let k = Kernels::for_path(case.path).expect("listed paths are available");
        let data = weights(case.ty, rows, cols);
        let w = WeightMatrix::try_new(case.ty, rows, cols, &data).unwrap();
        let mut acts = QuantizedActivations::new();
        acts.quantize_with(k, case.ty, &activations(cols), 1, cols);
        let mut out = vec![0.0f32; rows];
        bencher
            .counter(BytesCount::new(data.len()))
            .bench_local(|| k.matmul(&w, &acts, &mut out));
    }

    #[divan::bench(args = cases(), sample_count = 30)]
    fn l3(bencher: Bencher<'_, '_>, case: Case) {
        run(bencher, case, 4096, 2048);
    }

    #[divan::bench(args = cases(), sample_count = 10, sample_size = 1)]
    fn dram(bencher: Bencher<'_, '_>, case: Case) {
        run(bencher, case, 16384, 4096);
    }
}

mod matmul {
    use super::*;

    const ROWS: usize = 1024;
    const COLS: usize = 1024;

    fn run(bencher: Bencher<'_, '_>, case: Case, tokens: usize) {
        let k = Kernels::for_path(case.path).expect("listed paths are available");
        let data = weights(case.ty, ROWS, COLS);
        let w = WeightMatrix::try_new(case.ty, ROWS, COLS, &data).unwrap();
        let mut acts = QuantizedActivations::new();
        acts.quantize_with(k, case.ty, &activations(COLS * tokens), tokens, COLS);
        let mut out = vec![0.0f32; ROWS * tokens];
        bencher
            .counter(ItemsCount::new(2 * ROWS * COLS * tokens))
            .bench_local(|| k.matmul(&w, &acts, &mut out));
    }

    #[divan::bench(args = cases(), sample_count = 10, sample_size = 1)]
    fn tokens_512(bencher: Bencher<'_, '_>, case: Case) {
        run(bencher, case, 512);
    }

    #[divan::bench(args = cases(), sample_count = 20)]
    fn tokens_4(bencher: Bencher<'_, '_>, case: Case) {
        run(bencher, case, 4);
    }
}

mod quantize {
    use super::*;

    const N: usize = 4096;

    #[divan::bench(args = paths(), consts = [0, 1, 2])]
    fn activation<const T: usize>(bencher: Bencher<'_, '_>, path: KernelPath) {
        let ty = [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K][T];
        let k = Kernels::for_path(path).unwrap();
        let x = activations(N);
        let mut out = vec![0u8; N / ty.block_size() * ty.type_size()];
        bencher
            .counter(BytesCount::new(N * 4))
            .bench_local(|| k.quantize_activation_row(ty, &x, &mut out).unwrap());
    }
}

mod ops {
    use super::*;

    const N: usize = 4096;

    #[divan::bench(args = paths())]
    fn rms_norm(bencher: Bencher<'_, '_>, path: KernelPath) {
        let k = Kernels::for_path(path).unwrap();
        let (x, w) = (activations(N), activations(N));
        let mut out = vec![0.0; N];
        bencher
            .counter(BytesCount::new(N * 4))
            .bench_local(|| k.rms_norm(&x, &w, 1e-5, &mut out));
    }

    #[divan::bench(args = paths())]
    fn softmax(bencher: Bencher<'_, '_>, path: KernelPath) {
        let k = Kernels::for_path(path).unwrap();
        let x = activations(N);
        let mut y = x.clone();
        bencher.counter(BytesCount::new(N * 4)).bench_local(|| {
            y.copy_from_slice(&x);
            k.softmax_in_place(&mut y);
        });
    }

    #[divan::bench(args = paths())]
    fn swiglu(bencher: Bencher<'_, '_>, path: KernelPath) {
        let k = Kernels::for_path(path).unwrap();
        let (g, u) = (activations(N), activations(N));
        let mut out = vec![0.0; N];
        bencher
            .counter(BytesCount::new(N * 4))
            .bench_local(|| k.swiglu(&g, &u, &mut out));
    }

    #[divan::bench(args = paths())]
    fn geglu(bencher: Bencher<'_, '_>, path: KernelPath) {
        let k = Kernels::for_path(path).unwrap();
        let (g, u) = (activations(N), activations(N));
        let mut out = vec![0.0; N];
        bencher
            .counter(BytesCount::new(N * 4))
            .bench_local(|| k.geglu_tanh(&g, &u, &mut out));
    }

    #[divan::bench(args = paths())]
    fn dot_f16_ggml(bencher: Bencher<'_, '_>, path: KernelPath) {
        let k = Kernels::for_path(path).unwrap();
        let a: Vec<f16> = activations(N).iter().map(|&v| f16::from_f32(v)).collect();
        let b: Vec<f16> = activations(N)
            .iter()
            .rev()
            .map(|&v| f16::from_f32(v))
            .collect();
        bencher
            .counter(BytesCount::new(N * 4))
            .bench_local(|| k.vec_dot_f16_ggml(&a, &b));
    }

    #[divan::bench(args = paths())]
    fn mad_f16(bencher: Bencher<'_, '_>, path: KernelPath) {
        let k = Kernels::for_path(path).unwrap();
        let x: Vec<f16> = activations(N).iter().map(|&v| f16::from_f32(v)).collect();
        let mut y = x.clone();
        bencher
            .counter(BytesCount::new(N * 4))
            .bench_local(|| k.vec_mad_f16(&mut y, &x, 0.001));
    }

    #[divan::bench(args = paths())]
    fn f32_to_f16(bencher: Bencher<'_, '_>, path: KernelPath) {
        let k = Kernels::for_path(path).unwrap();
        let x = activations(N);
        let mut y = vec![f16::ZERO; N];
        bencher
            .counter(BytesCount::new(N * 4))
            .bench_local(|| k.f32_to_f16_slice(&x, &mut y));
    }
}
