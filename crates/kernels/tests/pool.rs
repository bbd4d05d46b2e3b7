//! Tests of the decode thread pool (`tern_kernels::pool`): every item processed exactly
//! once for many shapes and thread counts (including more threads than this machine's
//! cores), borrowing from the caller's stack, thread indices, panic propagation, nested
//! and concurrent use, and many tiny ops in a row.

use std::collections::BTreeSet;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tern_kernels::pool::{PoolOptions, ThreadPool};

/// A pool that always shares ops with its workers (no adaptive fallback), for tests
/// that need the workers to take part.
fn fixed_pool(n_threads: usize) -> ThreadPool {
    ThreadPool::with_options(PoolOptions {
        n_threads,
        adaptive: false,
        ..PoolOptions::default()
    })
    .unwrap()
}

/// Runs one op over `n_items` and checks that the chunks are disjoint, in bounds, cover
/// every item once, respect `min_chunk`, and carry valid thread indices.
fn check_coverage(pool: &ThreadPool, n_items: usize, min_chunk: usize) {
    let counts: Vec<AtomicUsize> = (0..n_items).map(|_| AtomicUsize::new(0)).collect();
    let chunks = Mutex::new(Vec::<Range<usize>>::new());
    let n_threads = pool.n_threads();
    pool.for_each_chunk(n_items, min_chunk, |range, thread_index| {
        assert!(
            thread_index < n_threads,
            "thread index {thread_index} of {n_threads}"
        );
        assert!(
            !range.is_empty() && range.end <= n_items,
            "bad range {range:?}"
        );
        for count in &counts[range.clone()] {
            count.fetch_add(1, Ordering::Relaxed);
        }
        chunks.lock().unwrap().push(range);
    });
    for (item, count) in counts.iter().enumerate() {
        assert_eq!(
            count.load(Ordering::Relaxed),
            1,
            "item {item} of {n_items} (min_chunk {min_chunk}, {n_threads} threads)"
        );
    }
    let mut chunks = chunks.into_inner().unwrap();
    chunks.sort_by_key(|range| range.start);
    let (last, rest) = chunks
        .split_last()
        .map_or((None, &[][..]), |(l, r)| (Some(l), r));
    for range in rest {
        assert!(
            range.len() >= min_chunk,
            "chunk {range:?} shorter than min_chunk {min_chunk} ({n_items} items)"
        );
    }
    if n_items == 0 {
        assert!(last.is_none());
    }
}

#[test]
fn every_item_once_for_odd_sizes_and_thread_counts() {
    // 3 and 4 threads oversubscribe a 2-core machine.
    for n_threads in 1..=4 {
        let pool = ThreadPool::new(n_threads);
        assert_eq!(pool.n_threads(), n_threads);
        for n_items in [0, 1, 2, 3, 5, 7, 13, 64, 100, 1000, 1001, 4097, 49_152] {
            for min_chunk in [0, 1, 3, 16, 1000] {
                check_coverage(&pool, n_items, min_chunk);
            }
        }
    }
}

#[test]
fn more_threads_than_items() {
    let pool = ThreadPool::new(4);
    for n_items in 1..=4 {
        for _ in 0..200 {
            check_coverage(&pool, n_items, 1);
        }
    }
}

#[test]
fn zero_threads_means_one() {
    let pool = ThreadPool::new(0);
    assert_eq!(pool.n_threads(), 1);
    check_coverage(&pool, 10, 1);
}

#[test]
fn one_thread_runs_inline_over_the_whole_range() {
    let pool = ThreadPool::new(1);
    let caller = thread::current().id();
    let calls = Mutex::new(Vec::new());
    pool.for_each_chunk(1000, 1, |range, thread_index| {
        assert_eq!(thread::current().id(), caller);
        calls.lock().unwrap().push((range, thread_index));
    });
    assert_eq!(calls.into_inner().unwrap(), vec![(0..1000, 0)]);
}

/// Makes the first chunk that thread 0 runs wait (up to a generous timeout) until a
/// worker has started a chunk too, so the test knows workers take part in ops.
#[test]
fn workers_take_part() {
    for n_threads in [2, 3, 4] {
        let pool = fixed_pool(n_threads);
        let seen = Mutex::new(BTreeSet::new());
        let worker_started = AtomicBool::new(false);
        pool.for_each_chunk(64, 1, |_, thread_index| {
            if thread_index == 0 {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !worker_started.load(Ordering::Acquire) && Instant::now() < deadline {
                    thread::sleep(Duration::from_micros(100));
                }
            } else {
                worker_started.store(true, Ordering::Release);
            }
            seen.lock().unwrap().insert(thread_index);
        });
        let seen = seen.into_inner().unwrap();
        assert!(
            seen.iter().any(|&index| index != 0),
            "{n_threads} threads: only the caller ran chunks: {seen:?}"
        );
        assert!(seen.iter().all(|&index| index < n_threads), "{seen:?}");
    }
}

#[test]
fn concurrent_invocations_never_share_a_thread_index() {
    let pool = fixed_pool(4);
    let in_use: Vec<AtomicBool> = (0..4).map(|_| AtomicBool::new(false)).collect();
    for _ in 0..200 {
        pool.for_each_chunk(64, 1, |_, thread_index| {
            assert!(
                !in_use[thread_index].swap(true, Ordering::AcqRel),
                "thread index {thread_index} used twice at once"
            );
            for _ in 0..200 {
                std::hint::spin_loop();
            }
            in_use[thread_index].store(false, Ordering::Release);
        });
    }
}

#[test]
fn borrows_stack_data_and_writes_disjoint_rows() {
    // A small matrix-vector product: each output row is written by one chunk.
    const ROWS: usize = 333;
    const COLS: usize = 17;
    let matrix: Vec<f32> = (0..ROWS * COLS).map(|i| (i % 13) as f32 - 6.0).collect();
    let vector: [f32; COLS] = std::array::from_fn(|i| i as f32 * 0.5);
    let expected: Vec<f32> = (0..ROWS)
        .map(|row| {
            (0..COLS)
                .map(|col| matrix[row * COLS + col] * vector[col])
                .sum()
        })
        .collect();
    for n_threads in 1..=4 {
        let pool = ThreadPool::new(n_threads);
        for min_chunk in [1, 7, 64] {
            let mut output = [0.0f32; ROWS];
            pool.for_each_chunk_mut(&mut output, 1, min_chunk, |rows, part, _| {
                assert_eq!(rows.len(), part.len());
                for (out, row) in part.iter_mut().zip(rows) {
                    *out = (0..COLS)
                        .map(|col| matrix[row * COLS + col] * vector[col])
                        .sum();
                }
            });
            assert_eq!(
                output.as_slice(),
                expected.as_slice(),
                "{n_threads} threads"
            );
        }
    }
}

#[test]
fn chunk_mut_hands_out_whole_items() {
    let pool = ThreadPool::new(3);
    let item_len = 5;
    let mut output = vec![0usize; 101 * item_len];
    pool.for_each_chunk_mut(&mut output, item_len, 1, |items, part, _| {
        assert_eq!(part.len(), items.len() * item_len);
        for (offset, value) in part.iter_mut().enumerate() {
            *value = items.start * item_len + offset;
        }
    });
    let expected: Vec<usize> = (0..101 * item_len).collect();
    assert_eq!(output, expected);
}

#[test]
#[should_panic(expected = "not a multiple of the item length")]
fn chunk_mut_rejects_a_ragged_output() {
    let pool = ThreadPool::new(2);
    let mut output = vec![0u8; 10];
    pool.for_each_chunk_mut(&mut output, 3, 1, |_, _, _| {});
}

#[test]
fn many_tiny_ops() {
    // Decode hands the pool hundreds of small ops per token; 100k in a row must all
    // complete, each exactly once, with no lost wake-up or stale job.
    let pool = ThreadPool::new(2);
    let total = AtomicUsize::new(0);
    let ops = 100_000;
    for op in 0..ops {
        let n_items = 2 + op % 7;
        pool.for_each_chunk(n_items, 1, |range, _| {
            total.fetch_add(range.len(), Ordering::Relaxed);
        });
    }
    let expected: usize = (0..ops).map(|op| 2 + op % 7).sum();
    assert_eq!(total.load(Ordering::Relaxed), expected);
}

#[test]
fn ops_after_workers_fell_asleep() {
    // Zero spin forces every hand-over through the sleep / wake-up path.
    let pool = ThreadPool::with_options(PoolOptions {
        n_threads: 3,
        worker_spin: Duration::ZERO,
        caller_spin: Duration::ZERO,
        adaptive: false,
    })
    .unwrap();
    for round in 0..2000 {
        if round % 500 == 0 {
            thread::sleep(Duration::from_millis(2));
        }
        check_coverage(&pool, 3 + round % 50, 1);
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn panic_on_the_calling_thread_propagates() {
    let pool = ThreadPool::new(2);
    for _ in 0..20 {
        // A worker holds its first chunk until the caller has one, so the caller surely
        // runs a chunk (and panics) however the threads are scheduled (under qemu a
        // worker could otherwise take every chunk before the caller claims any).
        let caller_started = AtomicBool::new(false);
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.for_each_chunk(100, 1, |range, thread_index| {
                if thread_index == 0 {
                    caller_started.store(true, Ordering::Release);
                    panic!("caller chunk failed at {}", range.start);
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                while !caller_started.load(Ordering::Acquire) && Instant::now() < deadline {
                    thread::sleep(Duration::from_micros(100));
                }
            });
        }));
        let payload = result.expect_err("the panic must reach the caller");
        assert!(panic_message(&*payload).starts_with("caller chunk failed"));
        // The pool still works.
        check_coverage(&pool, 1000, 1);
    }
}

#[test]
fn panic_on_a_worker_propagates() {
    for n_threads in [2, 4] {
        let pool = fixed_pool(n_threads);
        for _ in 0..20 {
            let worker_panicked = AtomicBool::new(false);
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                pool.for_each_chunk(64, 1, |_, thread_index| {
                    if thread_index == 0 {
                        // Keep the caller busy until a worker has panicked, so that the
                        // panic surely comes from a worker.
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while !worker_panicked.load(Ordering::Acquire) && Instant::now() < deadline
                        {
                            thread::sleep(Duration::from_micros(100));
                        }
                    } else {
                        worker_panicked.store(true, Ordering::Release);
                        panic!("worker {thread_index} failed");
                    }
                });
            }));
            let payload = result.expect_err("the worker's panic must reach the caller");
            assert!(
                panic_message(&*payload).starts_with("worker "),
                "{}",
                panic_message(&*payload)
            );
            check_coverage(&pool, 1000, 1);
        }
    }
}

#[test]
fn panic_everywhere_skips_the_rest_and_does_not_deadlock() {
    let pool = ThreadPool::new(3);
    let started = AtomicUsize::new(0);
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        pool.for_each_chunk(10_000, 1, |_, _| {
            started.fetch_add(1, Ordering::Relaxed);
            panic!("every chunk fails");
        });
    }));
    assert!(result.is_err());
    // 12 chunks exist; each thread stops after its first panic.
    assert!(
        started.load(Ordering::Relaxed) <= 3,
        "{}",
        started.load(Ordering::Relaxed)
    );
    check_coverage(&pool, 10_000, 1);
}

#[test]
fn nested_use_runs_inline() {
    let pool = ThreadPool::new(3);
    let outer_items = 12;
    let inner_items = 40;
    let counts: Vec<AtomicUsize> = (0..outer_items * inner_items)
        .map(|_| AtomicUsize::new(0))
        .collect();
    pool.for_each_chunk(outer_items, 1, |outer, outer_thread| {
        let this_thread = thread::current().id();
        for row in outer {
            pool.for_each_chunk(inner_items, 1, |inner, inner_thread| {
                // Inline: same thread, same index, the whole range at once.
                assert_eq!(thread::current().id(), this_thread);
                assert_eq!(inner_thread, outer_thread);
                assert_eq!(inner, 0..inner_items);
                for column in inner {
                    counts[row * inner_items + column].fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert!(
        counts
            .iter()
            .all(|count| count.load(Ordering::Relaxed) == 1)
    );
}

#[test]
fn calls_from_several_threads_are_serialised() {
    // Every chunk takes a ticket from one counter when it starts and when it ends; the
    // counter orders all of them, so the ops' [first start, last end] ticket intervals
    // are disjoint exactly when no two ops ran at once.
    let pool = ThreadPool::new(2);
    let clock = AtomicUsize::new(0);
    let intervals = Mutex::new(Vec::new());
    let total = AtomicUsize::new(0);
    thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                for _ in 0..2000 {
                    let first = AtomicUsize::new(usize::MAX);
                    let last = AtomicUsize::new(0);
                    pool.for_each_chunk(16, 1, |range, _| {
                        first.fetch_min(clock.fetch_add(1, Ordering::SeqCst), Ordering::Relaxed);
                        total.fetch_add(range.len(), Ordering::Relaxed);
                        last.fetch_max(clock.fetch_add(1, Ordering::SeqCst), Ordering::Relaxed);
                    });
                    intervals
                        .lock()
                        .unwrap()
                        .push((first.into_inner(), last.into_inner()));
                }
            });
        }
    });
    assert_eq!(total.load(Ordering::Relaxed), 3 * 2000 * 16);
    let mut intervals = intervals.into_inner().unwrap();
    intervals.sort_unstable();
    for pair in intervals.windows(2) {
        assert!(
            pair[0].1 < pair[1].0,
            "ops overlap: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn results_of_workers_are_visible_after_the_call() {
    // Plain (non-atomic) writes by workers must be visible to the caller on return.
    let pool = ThreadPool::new(4);
    let mut output = vec![0u64; 4096];
    for round in 1..=500u64 {
        pool.for_each_chunk_mut(&mut output, 1, 1, |rows, part, _| {
            for (value, row) in part.iter_mut().zip(rows) {
                *value = round * 10_000 + row as u64;
            }
        });
        for (row, value) in output.iter().enumerate() {
            assert_eq!(*value, round * 10_000 + row as u64);
        }
    }
}

/// Runs one op in which a worker is slow (sleeps `worker_delay` in its chunk) while the
/// caller's chunks are instant: sharing makes it slower than the caller alone would be.
fn op_with_a_straggler(pool: &ThreadPool, worker_delay: Duration) {
    let worker_started = AtomicBool::new(false);
    pool.for_each_chunk(64, 1, |_, thread_index| {
        if thread_index == 0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !worker_started.load(Ordering::Acquire) && Instant::now() < deadline {
                thread::sleep(Duration::from_micros(50));
            }
        } else if !worker_started.swap(true, Ordering::AcqRel) {
            thread::sleep(worker_delay);
        }
    });
}

/// The calls `f` got in one op: (range, thread index).
fn calls_of_one_op(pool: &ThreadPool, n_items: usize) -> Vec<(Range<usize>, usize)> {
    let calls = Mutex::new(Vec::new());
    pool.for_each_chunk(n_items, 1, |range, thread_index| {
        calls.lock().unwrap().push((range, thread_index));
    });
    calls.into_inner().unwrap()
}

#[test]
fn adaptive_pool_falls_back_to_the_caller_after_a_straggler() {
    let pool = ThreadPool::with_options(PoolOptions {
        n_threads: 2,
        ..PoolOptions::default()
    })
    .unwrap();
    op_with_a_straggler(&pool, Duration::from_millis(200));
    let stats = pool.stats();
    assert_eq!(stats.parallel_ops, 1);
    assert_eq!(stats.losses, 1, "{stats:?}");
    // The loss (about 200 ms) buys 4 × 200 ms of ops run inline on the calling thread,
    // whole; these few take far less.
    for op in 0..16 {
        assert_eq!(calls_of_one_op(&pool, 64), vec![(0..64, 0)], "op {op}");
    }
    assert_eq!(pool.stats().serial_fallback_ops, 16);
    assert_eq!(pool.stats().parallel_ops, 1);
    // One loss buys at most a second; after that the workers are tried again.
    thread::sleep(Duration::from_millis(1100));
    calls_of_one_op(&pool, 64);
    assert_eq!(pool.stats().parallel_ops, 2, "{:?}", pool.stats());
}

#[test]
fn fixed_pool_keeps_sharing_after_a_straggler() {
    let pool = fixed_pool(2);
    op_with_a_straggler(&pool, Duration::from_millis(50));
    assert_eq!(pool.stats().losses, 1, "{:?}", pool.stats());
    assert!(calls_of_one_op(&pool, 64).len() > 1);
    let stats = pool.stats();
    assert_eq!(
        (stats.parallel_ops, stats.serial_fallback_ops),
        (2, 0),
        "{stats:?}"
    );
}

#[test]
fn pool_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ThreadPool>();
    // And used from a thread other than the one that created it.
    let pool = std::sync::Arc::new(ThreadPool::new(2));
    let remote = std::sync::Arc::clone(&pool);
    thread::spawn(move || check_coverage(&remote, 777, 1))
        .join()
        .unwrap();
    check_coverage(&pool, 777, 1);
}

#[test]
fn shared_pool_is_none_for_one_thread() {
    assert!(ThreadPool::shared(0).unwrap().is_none());
    assert!(ThreadPool::shared(1).unwrap().is_none());
    let pool = ThreadPool::shared(2)
        .unwrap()
        .expect("a pool for two threads");
    assert_eq!(pool.n_threads(), 2);
    check_coverage(&pool, 100, 1);
}
