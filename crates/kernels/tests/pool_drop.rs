//! Dropping a `ThreadPool` joins its workers. A test binary of its own, because it
//! counts the process's threads, which other tests running beside it would change.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use tern_kernels::pool::ThreadPool;

/// The number of threads of this process named like pool workers (`tern-pool-N`).
fn pool_threads() -> usize {
    fs::read_dir("/proc/self/task")
        .expect("/proc/self/task is readable on Linux")
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("tern-pool-"))
        .count()
}

#[test]
#[cfg(target_os = "linux")]
fn drop_joins_the_workers() {
    assert_eq!(pool_threads(), 0);
    for n_threads in [1, 2, 4] {
        let pool = ThreadPool::new(n_threads);
        // A new thread names itself once it runs: give the workers time to start.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool_threads() < n_threads - 1 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(pool_threads(), n_threads - 1);
        pool.for_each_chunk(100, 1, |_, _| {});
        // Also after a panic inside an op.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.for_each_chunk(100, 1, |_, _| panic!("task failed"));
        }));
        drop(pool);
        // `drop` returned, so every worker was joined: none is left.
        assert_eq!(pool_threads(), 0, "{n_threads} threads");
    }
}
