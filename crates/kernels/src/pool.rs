//! A persistent thread pool built for token-by-token decode.
//!
//! Why tern has its own pool (see shared/DEPENDENCIES.md, thread-pool row): decoding one
//! token of a small model is a few hundred matrix-vector products of 5–100 µs each, so
//! the cost of handing one op to the other cores must stay near a microsecond. Spawning
//! threads per op (`std::thread::scope`) costs 55–70 µs here; a pool whose threads are
//! pinned and meet at a spinning barrier falls apart (34 → 2.8 tok/s in candle 0.11) as
//! soon as another process takes a core, because every op then waits for the one
//! thread that is not running.
//!
//! The design, and how it avoids both traps:
//! - Workers are created once ([`ThreadPool::new`]) and live until the pool is dropped.
//! - One op is one [`ThreadPool::for_each_chunk`]: `n_items` (the output rows of a
//!   matmul) are cut into a few contiguous chunks per thread, and every thread —
//!   the caller included — claims chunks from one atomic counter until none are left.
//!   A thread that the OS has descheduled simply claims nothing; the others take its
//!   share (dynamic chunk stealing, as llama.cpp's `ggml_compute_forward_mul_mat`
//!   does with its `current_chunk` counter).
//! - The caller publishes the op by bumping a generation counter. Idle workers spin on
//!   it for a bounded time (first with [`std::hint::spin_loop`], then yielding the
//!   core between checks), then sleep on a condition variable (a futex on Linux); the
//!   caller only pays for a wake-up system call when some worker is asleep.
//! - The op is *closed* when the caller has found no chunk left: a worker can join an op
//!   only while it is open, and the caller waits only for the workers that did join
//!   (bounded spin, then sleep). So a worker that the OS never ran during the op costs
//!   the op nothing — there is no barrier over all threads.
//! - A worker the OS preempts in the middle of a chunk still delays its op. When an op
//!   took longer than the calling thread alone would have (estimated from its own pace),
//!   the pool runs the next ops on the calling thread alone, for a number of ops that
//!   doubles while this keeps happening and shrinks while ops go well ([`PoolOptions`]
//!   `adaptive`). So with a core taken by another process, decode degrades towards
//!   single-thread speed instead of stalling.
//! - Nothing is allocated per op: the closure stays on the caller's stack and workers
//!   get a type-erased pointer to it.
//! - Threads are not pinned (pinning is what made candle's pool collapse under load).
//! - A panic inside a chunk is caught, the remaining chunks are abandoned, and the
//!   first payload is re-raised on the caller once every worker has left the op.
//!
//! [`default_threads`] picks the thread count: physical cores, bounded by the process's
//! CPU affinity mask and cgroup CPU quota. The thread protocol itself is in `shared.rs`.

mod shared;
mod topology;

pub use topology::{ThreadBudget, default_threads, thread_budget};

use std::fmt;
use std::ops::Range;
use std::panic;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use shared::{CurrentGuard, Job, Shared, call_closure, current_index_in, lock, worker_main};

/// How many chunks each thread gets on average. More chunks let fast threads take
/// over from a slow one at a finer grain; fewer keep each thread's block of rows
/// longer and the counter quieter. Four is what llama.cpp's matmul aims for too.
const CHUNKS_PER_THREAD: usize = 4;

/// How much longer than its serial estimate an op may take before it counts as a loss:
/// covers the clock's and the hand-over's jitter on ops of a few microseconds.
const LOSS_SLACK: Duration = Duration::from_micros(20);
/// Serial ops run after the first loss; doubled on each further loss, up to the max.
const MIN_BACKOFF_OPS: u32 = 16;
const MAX_BACKOFF_OPS: u32 = 4096;
/// Parallel ops without a loss after which the backoff is halved again.
const CLEAN_OPS_TO_RELAX: u32 = 256;

/// Tuning of a [`ThreadPool`]; [`PoolOptions::default`] suits decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolOptions {
    /// Threads that work on each op, the calling thread included (so `n - 1` workers
    /// are spawned). 0 is taken as 1.
    pub n_threads: usize,
    /// How long an idle worker waits for the next op before it goes to sleep. Ops of
    /// one token follow each other within microseconds, so waiting awake keeps the
    /// hand-over cheap; sleeping afterwards gives the core back between tokens.
    pub worker_spin: Duration,
    /// How long the caller waits awake for the workers still inside an op before it
    /// goes to sleep. Sleeping frees the core, which lets the OS move a worker that
    /// another process preempted onto it.
    pub caller_spin: Duration,
    /// Whether to run ops on the calling thread alone for a while after an op that the
    /// workers made slower (see the module documentation). Off, every op with more
    /// than one chunk is shared with the workers.
    pub adaptive: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            n_threads: default_threads(),
            worker_spin: Duration::from_micros(300),
            caller_spin: Duration::from_micros(100),
            adaptive: true,
        }
    }
}

/// What a pool has done since it was created ([`ThreadPool::stats`]): for benchmarks,
/// `tern bench` and diagnosing a machine where other processes take the cores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Calls handed to the workers.
    pub parallel_ops: u64,
    /// Calls with more than one chunk that the adaptive fallback ran on the calling
    /// thread alone.
    pub serial_fallback_ops: u64,
    /// Chunks of the parallel calls.
    pub chunks: u64,
    /// Of those, the chunks the calling thread ran itself; workers ran the rest.
    pub caller_chunks: u64,
    /// Parallel calls that had to wake sleeping workers (a system call).
    pub worker_wakeups: u64,
    /// Parallel calls whose caller, out of chunks, found workers still inside.
    pub waits: u64,
    /// Of those, the waits that outlasted the caller's spin and slept.
    pub caller_sleeps: u64,
    /// Total time the caller spent in those waits.
    pub wait_time: Duration,
    /// Parallel calls that took longer than the calling thread alone would have.
    pub losses: u64,
}

/// The caller's counters behind [`PoolStats`]. Only the holder of the submit lock
/// writes them, so plain loads and stores suffice (no read-modify-write per op).
#[derive(Default)]
struct StatCounters {
    parallel_ops: AtomicU64,
    serial_fallback_ops: AtomicU64,
    chunks: AtomicU64,
    caller_chunks: AtomicU64,
    worker_wakeups: AtomicU64,
    waits: AtomicU64,
    caller_sleeps: AtomicU64,
    wait_nanos: AtomicU64,
    losses: AtomicU64,
}

/// Adds to a counter of [`StatCounters`]; the caller must hold the submit lock.
fn bump(counter: &AtomicU64, amount: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(amount),
        Ordering::Relaxed,
    );
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The adaptive fallback's state, owned by the holder of the submit lock.
#[derive(Debug)]
struct Backoff {
    /// Ops still to run on the calling thread alone.
    serial_left: u32,
    /// How many serial ops the next loss buys.
    next: u32,
    /// Parallel ops since the last loss or relaxation.
    clean: u32,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            serial_left: 0,
            next: MIN_BACKOFF_OPS,
            clean: 0,
        }
    }

    fn record(&mut self, lost: bool) {
        if lost {
            self.serial_left = self.next;
            self.next = (self.next * 2).min(MAX_BACKOFF_OPS);
            self.clean = 0;
        } else {
            self.clean += 1;
            if self.clean >= CLEAN_OPS_TO_RELAX {
                self.next = (self.next / 2).max(MIN_BACKOFF_OPS);
                self.clean = 0;
            }
        }
    }
}

/// A persistent pool of worker threads that runs data-parallel loops over output rows.
///
/// Each call ([`for_each_chunk`](Self::for_each_chunk),
/// [`for_each_chunk_mut`](Self::for_each_chunk_mut)) runs on the calling thread and the
/// workers together and returns when all the work is done, so the closure may borrow
/// from the caller's stack. Calls from several threads at once are serialised; a call
/// made from inside a running task of the same pool runs inline on that thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
    adaptive: bool,
    /// Held for the whole of a call that uses the workers: one op at a time owns them.
    submit: Mutex<Backoff>,
    stats: StatCounters,
}

/// A raw pointer to the start of an output slice, handed to the tasks of
/// [`ThreadPool::for_each_chunk_mut`], which each carve out a disjoint part of it.
struct OutputPtr<T>(*mut T);

// SAFETY: an `OutputPtr` is only used to build `&mut` sub-slices of an `&mut [T]` that
// the caller lent for the call, one disjoint part per chunk, each used by one thread at
// a time; sending such parts to other threads is what `T: Send` allows.
unsafe impl<T: Send> Sync for OutputPtr<T> {}

impl ThreadPool {
    /// Creates a pool in which `n_threads` threads (the caller plus `n_threads - 1`
    /// spawned workers) share each op, with the default tuning.
    ///
    /// # Panics
    /// If the operating system refuses to create a thread, as [`std::thread::spawn`]
    /// does; use [`ThreadPool::try_new`] to get the error instead.
    pub fn new(n_threads: usize) -> Self {
        match Self::try_new(n_threads) {
            Ok(pool) => pool,
            Err(error) => panic!("failed to spawn thread-pool workers: {error}"),
        }
    }

    /// Like [`ThreadPool::new`], returning the error if a worker thread cannot be created.
    pub fn try_new(n_threads: usize) -> std::io::Result<Self> {
        Self::with_options(PoolOptions {
            n_threads,
            ..PoolOptions::default()
        })
    }

    /// Creates a pool with explicit [`PoolOptions`].
    pub fn with_options(options: PoolOptions) -> std::io::Result<Self> {
        let n_threads = options.n_threads.max(1);
        let mut pool = ThreadPool {
            shared: Arc::new(Shared::new(options.worker_spin, options.caller_spin)),
            workers: Vec::with_capacity(n_threads - 1),
            n_threads,
            adaptive: options.adaptive,
            submit: Mutex::new(Backoff::new()),
            stats: StatCounters::default(),
        };
        for thread_index in 1..n_threads {
            let shared = Arc::clone(&pool.shared);
            // On error `pool` is dropped here, which stops the workers already spawned.
            let handle = thread::Builder::new()
                .name(format!("tern-pool-{thread_index}"))
                .spawn(move || worker_main(&shared, thread_index))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// The number of threads that share each op, the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// What the pool has done so far.
    pub fn stats(&self) -> PoolStats {
        // Read without taking the submit lock (a task may ask): while a call runs, the
        // counters may be one call apart from each other.
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let stats = &self.stats;
        PoolStats {
            parallel_ops: read(&stats.parallel_ops),
            serial_fallback_ops: read(&stats.serial_fallback_ops),
            chunks: read(&stats.chunks),
            caller_chunks: read(&stats.caller_chunks),
            worker_wakeups: read(&stats.worker_wakeups),
            waits: read(&stats.waits),
            caller_sleeps: read(&stats.caller_sleeps),
            wait_time: Duration::from_nanos(read(&stats.wait_nanos)),
            losses: read(&stats.losses),
        }
    }

    /// Runs `f` over `0..n_items`, split into contiguous chunks of at least `min_chunk`
    /// items (except the last), on the calling thread and the workers; returns when
    /// every item has been processed.
    ///
    /// `f(range, thread_index)` is called once per chunk. The chunks are disjoint and
    /// cover `0..n_items` exactly once. `thread_index` is in `0..self.n_threads()` (0 is
    /// the calling thread), and no two invocations running at the same time within one
    /// call share it, so it can index per-thread scratch space. Which thread gets which
    /// chunk is decided at run time: a thread that is not running takes none.
    ///
    /// `f` runs inline on the current thread, over the whole range at once, with one
    /// thread, with a single chunk, while the adaptive fallback is active, or when
    /// called from inside a task of this same pool (nested use; `thread_index` is then
    /// the current thread's). Calls from several other threads at once run one after
    /// the other.
    ///
    /// # Panics
    /// If `f` panics, the chunks not yet started are skipped and the first panic is
    /// resumed on the calling thread once no thread is running `f` any more; the pool
    /// stays usable.
    pub fn for_each_chunk<F>(&self, n_items: usize, min_chunk: usize, f: F)
    where
        F: Fn(Range<usize>, usize) + Sync,
    {
        if n_items == 0 {
            return;
        }
        if self.n_threads == 1 {
            f(0..n_items, 0);
            return;
        }
        let shared: &Shared = &self.shared;
        if let Some(thread_index) = current_index_in(shared) {
            // Nested: the workers are busy with the op this task belongs to.
            f(0..n_items, thread_index);
            return;
        }
        let target_chunks = self.n_threads * CHUNKS_PER_THREAD;
        let chunk_size = n_items.div_ceil(target_chunks).max(min_chunk).max(1);
        let n_chunks = n_items.div_ceil(chunk_size);
        if n_chunks == 1 {
            f(0..n_items, 0);
            return;
        }

        let mut backoff = lock(&self.submit);
        // Mark this thread as inside the pool, so that a nested call runs inline
        // instead of waiting for the lock we hold.
        let current = CurrentGuard::enter(shared, 0);
        if backoff.serial_left > 0 {
            backoff.serial_left -= 1;
            bump(&self.stats.serial_fallback_ops, 1);
            f(0..n_items, 0);
            return;
        }

        let start = Instant::now();
        // Only the holder of `submit` (and `Drop`, which has `&mut self`) changes the
        // generation, so this read is current.
        let generation = shared.generation.0.load(Ordering::Relaxed).wrapping_add(1);
        let job = Job {
            closure: (&raw const f).cast::<()>(),
            call: call_closure::<F>,
            n_items,
            chunk_size,
            n_chunks,
            generation,
        };
        if shared.publish(&job) {
            bump(&self.stats.worker_wakeups, 1);
        }
        let caller_chunks = shared.run_chunks(&job, 0);
        drop(current);
        let caller_done = Instant::now();
        // Every chunk is claimed: close the op, then wait for the workers inside it.
        let waited = shared.close_and_wait();
        // SAFETY of the borrow of `f` and `job`: from here on no worker can reach them.
        // A worker touches the job only between joining (a CAS on `state` that requires
        // `OPEN`) and leaving (its decrement of `state`). `close_and_wait` cleared
        // `OPEN`, so no worker can join any more, and then read `state` as 0, so all
        // that joined have left; their Release decrements, read by its Acquire loads,
        // also make every write they made inside `f` visible to this thread. Nothing
        // else keeps the pointer: it was reset, and the next call stores its own before
        // opening. The same holds when `f` panicked on this thread: `run_chunks` caught
        // the panic, so we reach this point before unwinding out of this frame.

        bump(&self.stats.parallel_ops, 1);
        bump(&self.stats.chunks, n_chunks as u64);
        bump(&self.stats.caller_chunks, caller_chunks as u64);
        if let Some(slept) = waited {
            let end = Instant::now();
            let wait = end - caller_done;
            bump(&self.stats.waits, 1);
            bump(&self.stats.caller_sleeps, u64::from(slept));
            bump(&self.stats.wait_nanos, nanos(wait));
            // The calling thread's own pace says how long the whole op would have
            // taken on it alone; an op that took longer than that lost by sharing.
            let lost = caller_chunks > 0 && {
                let own = caller_done - start;
                let serial = own.mul_f64(n_chunks as f64 / caller_chunks as f64);
                end - start > serial + LOSS_SLACK
            };
            bump(&self.stats.losses, u64::from(lost));
            if self.adaptive {
                backoff.record(lost);
            }
        } else if self.adaptive {
            backoff.record(false);
        }
        drop(backoff);

        if let Some(payload) = shared.take_panic() {
            panic::resume_unwind(payload);
        }
    }

    /// Runs `f` over the items of `output`, each item being `item_len` consecutive
    /// elements (an output row), handing each chunk of items its own part of `output`.
    ///
    /// `f(items, part, thread_index)` gets the item range of its chunk and
    /// `&mut output[items.start * item_len..items.end * item_len]`. Chunking, threads
    /// and panics behave as in [`for_each_chunk`](Self::for_each_chunk).
    ///
    /// # Panics
    /// If `item_len` is 0 or does not divide `output.len()` (a caller bug), or if `f`
    /// panics.
    pub fn for_each_chunk_mut<T, F>(
        &self,
        output: &mut [T],
        item_len: usize,
        min_chunk: usize,
        f: F,
    ) where
        T: Send,
        F: Fn(Range<usize>, &mut [T], usize) + Sync,
    {
        assert!(
            item_len != 0 && output.len().is_multiple_of(item_len),
            "for_each_chunk_mut: output length {} is not a multiple of the item length {item_len}",
            output.len()
        );
        let n_items = output.len() / item_len;
        let base = OutputPtr(output.as_mut_ptr());
        self.for_each_chunk(n_items, min_chunk, |items: Range<usize>, thread_index| {
            let base = &base;
            // SAFETY: `items` is within `0..n_items`, so the part lies inside `output`.
            // `for_each_chunk` hands out disjoint item ranges, each to one invocation,
            // so no two parts overlap and no other reference to this part exists while
            // `f` runs. `output` is mutably borrowed by this call, which returns only
            // after every invocation has finished, so the memory stays valid and
            // unaliased throughout. `T: Send` allows using the part on a worker thread.
            let part = unsafe {
                std::slice::from_raw_parts_mut(
                    base.0.add(items.start * item_len),
                    items.len() * item_len,
                )
            };
            f(items, part, thread_index);
        });
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shut_down();
        for worker in self.workers.drain(..) {
            // A worker never unwinds (task panics are caught), so there is no error to
            // report; and a panic in `drop` would abort.
            let _ = worker.join();
        }
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads)
            .field("adaptive", &self.adaptive)
            .field("worker_spin", &self.shared.worker_spin)
            .field("caller_spin", &self.shared.caller_spin)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_on_losses_and_relaxes_after_clean_ops() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.serial_left, 0);
        backoff.record(true);
        assert_eq!(backoff.serial_left, MIN_BACKOFF_OPS);
        backoff.serial_left = 0;
        backoff.record(true);
        assert_eq!(backoff.serial_left, 2 * MIN_BACKOFF_OPS);
        for _ in 0..20 {
            backoff.record(true);
        }
        assert_eq!(backoff.serial_left, MAX_BACKOFF_OPS);
        assert_eq!(backoff.next, MAX_BACKOFF_OPS);
        backoff.serial_left = 0;
        for _ in 0..CLEAN_OPS_TO_RELAX {
            backoff.record(false);
        }
        assert_eq!(backoff.next, MAX_BACKOFF_OPS / 2);
        assert_eq!(backoff.serial_left, 0);
        for _ in 0..100 * CLEAN_OPS_TO_RELAX {
            backoff.record(false);
        }
        assert_eq!(backoff.next, MIN_BACKOFF_OPS);
    }
}
