//! Benchmarks of the decode thread pool: what one op costs to hand out, and how a
//! decode-shaped sequence of small ops scales with threads.
//!
//! - `empty_op`: a `for_each_chunk` whose tasks do nothing — the pure per-op overhead
//!   (publish, wake or find the spinning workers, claim chunks, close, wait).
//! - `scoped_spawn_op`: the same empty op done by spawning a scoped thread per op, the
//!   approach shared/DEPENDENCIES.md measured at 55–70 µs, for comparison.
//! - `decode_token`: 210 ops of 576 rows each with a fixed ~35 ns of arithmetic per row
//!   (about one SmolLM2-135M token's worth of matrix-vector products, 30 layers × 7),
//!   so its time shows scaling and, with another process on a core, degradation;
//!   `decode_token_fixed` is the same without the adaptive fallback to the caller.
//!
//! Run `cargo bench -p tern-kernels --bench pool`; for the busy-core case, start a busy
//! loop (e.g. `yes > /dev/null &`) first and kill it by its PID afterwards.

use std::hint::black_box;

use divan::Bencher;
use tern_kernels::pool::{PoolOptions, ThreadPool};

fn main() {
    divan::main();
}

#[divan::bench(args = [1, 2, 3, 4])]
fn empty_op(bencher: Bencher<'_, '_>, n_threads: usize) {
    let pool = ThreadPool::new(n_threads);
    bencher.bench_local(|| {
        pool.for_each_chunk(64, 1, |range, thread_index| {
            black_box((range, thread_index));
        });
    });
}

#[divan::bench]
fn scoped_spawn_op(bencher: Bencher<'_, '_>) {
    bencher.bench_local(|| {
        std::thread::scope(|scope| {
            scope.spawn(|| black_box(1));
            black_box(0);
        });
    });
}

/// Rows per op: SmolLM2-135M's hidden size.
const ROWS: usize = 576;
/// Ops per token: 30 layers × 7 matrix-vector products.
const OPS: usize = 210;

/// A fixed amount of dependent arithmetic standing in for one output row's dot product.
fn row_work(row: usize) -> f32 {
    let mut x = black_box(row as f32);
    for _ in 0..32 {
        x = x.mul_add(0.999, 0.5);
    }
    x
}

#[divan::bench(args = [1, 2])]
fn decode_token(bencher: Bencher<'_, '_>, n_threads: usize) {
    decode_token_with(bencher, ThreadPool::new(n_threads));
}

#[divan::bench(args = [2])]
fn decode_token_fixed(bencher: Bencher<'_, '_>, n_threads: usize) {
    let options = PoolOptions {
        n_threads,
        adaptive: false,
        ..PoolOptions::default()
    };
    decode_token_with(bencher, ThreadPool::with_options(options).unwrap());
}

fn decode_token_with(bencher: Bencher<'_, '_>, pool: ThreadPool) {
    let mut output = vec![0.0f32; ROWS];
    bencher.bench_local(|| {
        for _ in 0..OPS {
            pool.for_each_chunk_mut(&mut output, 1, 16, |rows, part, _| {
                for (out, row) in part.iter_mut().zip(rows) {
                    *out = row_work(row);
                }
            });
        }
        black_box(&output);
    });
}
