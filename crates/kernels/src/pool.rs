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

/// How much longer than its serial estimate an op may take before it counts as a loss
/// in [`PoolStats::losses`]: covers the clock's jitter on ops of a few microseconds.
const LOSS_SLACK: Duration = Duration::from_micros(20);
/// The most time saved by sharing that the adaptive fallback banks (see [`Backoff`]).
const CREDIT_CAP: Duration = Duration::from_millis(2);
/// A deficit of D buys `factor × D` of serial ops; the factor starts here and doubles
/// with each deficit until sharing has paid off again up to [`CREDIT_CAP`].
const MIN_DEFICIT_FACTOR: u32 = 4;
const MAX_DEFICIT_FACTOR: u32 = 64;
/// The longest stretch of serial ops one deficit can cause.
const MAX_SERIAL_PERIOD: Duration = Duration::from_secs(1);

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
///
/// Every op shared with the workers is compared with an estimate of how long the
/// calling thread alone would have taken (its own pace over the chunks it ran, times
/// all the chunks): the difference, time saved or lost, goes into a balance that banks
/// at most [`CREDIT_CAP`]. When the balance goes negative — sharing has recently cost
/// more than it saved, as when a worker preempted by another process holds up an op
/// for a scheduler time slice (milliseconds, measured here with a busy loop on the
/// other core) — ops run on the calling thread alone for a stretch proportional to the
/// deficit, growing while deficits recur. Counting time rather than ops matters: one
/// stall can cost as much as hundreds of ops gain.
#[derive(Debug)]
struct Backoff {
    /// Ops run on the calling thread alone until then.
    serial_until: Option<Instant>,
    /// Time sharing saved (positive) or cost (negative) lately, in nanoseconds.
    balance: i64,
    /// Multiplier of the next deficit.
    factor: u32,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            serial_until: None,
            balance: 0,
            factor: MIN_DEFICIT_FACTOR,
        }
    }

    /// Whether an op starting at `now` should run on the calling thread alone.
    fn serial(&mut self, now: Instant) -> bool {
        match self.serial_until {
            Some(until) if now < until => true,
            Some(_) => {
                self.serial_until = None;
                false
            }
            None => false,
        }
    }

    /// Records that a shared op ending at `now` took `actual` where the calling thread
    /// alone would have taken `serial`.
    fn record(&mut self, now: Instant, serial: Duration, actual: Duration) {
        let cap = nanos(CREDIT_CAP) as i64;
        let saved = nanos(serial) as i64 - nanos(actual) as i64;
        self.balance = self.balance.saturating_add(saved).min(cap);
        if self.balance == cap {
            self.factor = MIN_DEFICIT_FACTOR;
        } else if self.balance < 0 {
            let deficit = Duration::from_nanos(self.balance.unsigned_abs());
            self.serial_until = Some(now + (deficit * self.factor).min(MAX_SERIAL_PERIOD));
            self.factor = (self.factor * 2).min(MAX_DEFICIT_FACTOR);
            self.balance = 0;
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

    /// A pool of `n_threads` to share between the users of one thread budget, or `None`
    /// for one thread (or zero): work then runs on the calling thread with no pool.
    pub fn shared(n_threads: usize) -> std::io::Result<Option<Arc<ThreadPool>>> {
        match n_threads {
            0 | 1 => Ok(None),
            n => Self::try_new(n).map(|pool| Some(Arc::new(pool))),
        }
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
        let start = Instant::now();
        if self.adaptive && backoff.serial(start) {
            bump(&self.stats.serial_fallback_ops, 1);
            f(0..n_items, 0);
            return;
        }

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
        let waited = shared.close().then(|| shared.wait_for_workers());
        shared.clear_job();
        // SAFETY of the borrow of `f` and `job`: from here on no worker can reach them.
        // A worker touches the job only between joining (a CAS on `state` that requires
        // `OPEN`) and leaving (its decrement of `state`). `close` cleared `OPEN`, so no
        // worker can join any more, and `state` then read 0 (in `close` itself or in
        // `wait_for_workers`), so all that joined have left; their Release decrements,
        // read by those Acquire loads, also make every write they made inside `f`
        // visible to this thread. Nothing else keeps the pointer: it was reset, and the
        // next call stores its own before opening. The same holds when `f` panicked on
        // this thread: `run_chunks` caught the panic, so we reach this point before
        // unwinding out of this frame.

        bump(&self.stats.parallel_ops, 1);
        bump(&self.stats.chunks, n_chunks as u64);
        bump(&self.stats.caller_chunks, caller_chunks as u64);
        let end = match waited {
            Some(slept) => {
                let end = Instant::now();
                bump(&self.stats.waits, 1);
                bump(&self.stats.caller_sleeps, u64::from(slept));
                bump(&self.stats.wait_nanos, nanos(end - caller_done));
                end
            }
            None => caller_done,
        };
        // The calling thread's own pace says how long the whole op would have taken on
        // it alone. (If the workers took every chunk there is nothing to compare.)
        if caller_chunks > 0 {
            let own = caller_done - start;
            let serial = own.mul_f64(n_chunks as f64 / caller_chunks as f64);
            let actual = end - start;
            if actual > serial + LOSS_SLACK {
                bump(&self.stats.losses, 1);
            }
            if self.adaptive {
                backoff.record(end, serial, actual);
            }
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

    const MS: Duration = Duration::from_millis(1);
    const US: Duration = Duration::from_micros(1);

    #[test]
    fn ops_that_gain_never_fall_back() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new();
        for op in 0..10_000u32 {
            let now = t0 + US * 20 * op;
            assert!(!backoff.serial(now));
            backoff.record(now, US * 30, US * 18);
        }
        assert_eq!(backoff.balance, nanos(CREDIT_CAP) as i64);
        // A hiccup smaller than the banked credit is absorbed.
        let now = t0 + Duration::from_secs(1);
        backoff.record(now, US * 30, MS);
        assert!(!backoff.serial(now));
        assert_eq!(backoff.factor, MIN_DEFICIT_FACTOR);
    }

    #[test]
    fn a_deficit_buys_a_serial_stretch_that_grows_while_deficits_recur() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new();
        // A 5 ms stall with no credit: 4 × 5 ms of serial ops.
        backoff.record(t0, US * 30, MS * 5 + US * 30);
        assert!(backoff.serial(t0 + MS * 20 - US));
        assert!(!backoff.serial(t0 + MS * 20));
        // Another right after: the factor has doubled.
        let t1 = t0 + MS * 21;
        backoff.record(t1, US * 30, MS * 5 + US * 30);
        assert!(backoff.serial(t1 + MS * 40 - US));
        assert!(!backoff.serial(t1 + MS * 40));
        // Recurring deficits: the factor stops at its maximum, the stretch at its cap.
        let mut now = t1 + MS * 40;
        for _ in 0..10 {
            backoff.record(now, US * 30, MS * 5 + US * 30);
            now += MS * 400;
        }
        assert_eq!(backoff.factor, MAX_DEFICIT_FACTOR);
        backoff.record(now, US * 30, MS * 50);
        assert!(backoff.serial(now + MAX_SERIAL_PERIOD - US));
        assert!(!backoff.serial(now + MAX_SERIAL_PERIOD));
        // Once sharing has paid off up to the cap, the factor is back to its minimum.
        let mut now = now + MAX_SERIAL_PERIOD;
        while backoff.balance < nanos(CREDIT_CAP) as i64 {
            backoff.record(now, US * 30, US * 18);
            now += US * 20;
        }
        assert_eq!(backoff.factor, MIN_DEFICIT_FACTOR);
    }
}
