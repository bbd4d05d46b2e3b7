//! A persistent thread pool built for token-by-token decode.
//!
//! Why tern has its own pool (see shared/DEPENDENCIES.md, thread-pool row): decoding one
//! token of a small model is a few hundred matrix-vector products of 10–100 µs each, so
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
//!   it (with [`std::hint::spin_loop`]) for a bounded time, then sleep on a condition
//!   variable (a futex on Linux); the caller only pays for a wake-up syscall when some
//!   worker is asleep.
//! - The op is *closed* when the caller has found no chunk left: a worker can join an op
//!   only while it is open, and the caller waits only for the workers that did join
//!   (bounded spin, then sleep). So a worker that the OS never ran during the op costs
//!   the op nothing — there is no barrier over all threads.
//! - Nothing is allocated per op: the closure stays on the caller's stack and workers
//!   get a type-erased pointer to it.
//! - Threads are not pinned (pinning is what made candle's pool collapse under load).
//! - A panic inside a chunk is caught, the remaining chunks are abandoned, and the
//!   first payload is re-raised on the caller once every worker has left the op.
//!
//! [`default_threads`] picks the thread count: physical cores, bounded by the process's
//! CPU affinity mask and cgroup CPU quota.

mod topology;

pub use topology::{ThreadBudget, default_threads, thread_budget};

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How many chunks each thread gets on average. More chunks let fast threads take
/// over from a slow one at a finer grain; fewer keep each thread's block of rows
/// longer and the counter quieter. Four is what llama.cpp's matmul aims for too.
const CHUNKS_PER_THREAD: usize = 4;

/// The bit of [`Shared::state`] that says the current op is open for joining; the
/// bits below it count the workers inside the op.
const OPEN: usize = 1 << (usize::BITS - 1);

/// How many spin iterations pass between two reads of the clock while spinning.
const SPINS_PER_CLOCK_READ: u32 = 64;

/// Tuning of a [`ThreadPool`]; [`PoolOptions::default`] suits decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolOptions {
    /// Threads that work on each op, the calling thread included (so `n - 1` workers
    /// are spawned). 0 is taken as 1.
    pub n_threads: usize,
    /// How long an idle worker spins waiting for the next op before it goes to sleep.
    /// Ops of one token follow each other within microseconds, so spinning keeps the
    /// hand-over cheap; sleeping afterwards gives the core back between tokens.
    pub worker_spin: Duration,
    /// How long the caller spins waiting for the workers still inside an op before it
    /// goes to sleep. Sleeping frees the core, which lets the OS move a worker that was
    /// preempted by another process onto it.
    pub caller_spin: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            n_threads: default_threads(),
            worker_spin: Duration::from_micros(200),
            caller_spin: Duration::from_micros(50),
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
    /// Held for the whole of a parallel call: one op at a time owns the workers.
    submit: Mutex<()>,
}

/// The type-erased description of one op. It lives on the caller's stack for the
/// duration of the call; workers reach it through [`Shared::job`] only while they are
/// counted in [`Shared::state`].
struct Job {
    /// Points at the caller's closure, of the type `call` was instantiated with.
    closure: *const (),
    /// `call_closure::<F>`: turns `closure` back into `&F` and calls it.
    call: unsafe fn(*const (), Range<usize>, usize),
    n_items: usize,
    chunk_size: usize,
    n_chunks: usize,
    /// The value of [`Shared::generation`] that published this job.
    generation: usize,
}

/// Aligns its content to its own cache lines (128 bytes covers the adjacent-line
/// prefetcher of x86 and the 128-byte lines of some ARM cores), so that the counters
/// every thread hammers do not share a line with each other.
#[repr(align(128))]
struct Padded<T>(T);

/// The state shared by the pool handle and its workers.
struct Shared {
    /// Bumped once per published op (and at shutdown). Workers wait for it to change.
    generation: Padded<AtomicUsize>,
    /// [`OPEN`] while the current op accepts workers, plus the number of workers inside
    /// it. The caller may return only once it has cleared `OPEN` and the count is 0.
    state: Padded<AtomicUsize>,
    /// The next chunk of the current op to hand out.
    next_chunk: Padded<AtomicUsize>,
    /// The current op's [`Job`], on the caller's stack.
    job: AtomicPtr<Job>,
    /// Set when a task of the current op panicked; the payload is in `panic_payload`.
    panicked: AtomicBool,
    panic_payload: Mutex<Option<Box<dyn Any + Send>>>,
    shutdown: AtomicBool,
    /// Workers asleep (or about to be) on `work_ready`.
    sleeping_workers: AtomicUsize,
    work_lock: Mutex<()>,
    work_ready: Condvar,
    /// Whether the caller is asleep (or about to be) on `op_done`.
    caller_sleeping: AtomicBool,
    done_lock: Mutex<()>,
    op_done: Condvar,
    worker_spin: Duration,
    caller_spin: Duration,
}

thread_local! {
    /// The pool whose task this thread is running (null if none) and its thread index
    /// in that pool: how a nested call is recognised.
    static CURRENT: Cell<(*const Shared, usize)> = const { Cell::new((ptr::null(), 0)) };
}

/// Restores [`CURRENT`] when dropped, also when unwinding.
struct CurrentGuard {
    previous: (*const Shared, usize),
}

impl CurrentGuard {
    fn enter(shared: &Shared, thread_index: usize) -> Self {
        let previous = CURRENT.with(|current| current.replace((shared, thread_index)));
        CurrentGuard { previous }
    }
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.previous));
    }
}

/// Calls the closure a [`Job`] points at.
///
/// # Safety
/// `closure` must point to a live value of type `F` that may be shared between
/// threads for the duration of the call.
unsafe fn call_closure<F>(closure: *const (), range: Range<usize>, thread_index: usize)
where
    F: Fn(Range<usize>, usize) + Sync,
{
    // SAFETY: the caller guarantees `closure` points to a live `F`; `F: Sync`, so a
    // shared reference to it may be used from this thread.
    let f = unsafe { &*closure.cast::<F>() };
    f(range, thread_index);
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
    /// spawned workers) share each op, with the default spin times.
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
        let shared = Arc::new(Shared {
            generation: Padded(AtomicUsize::new(0)),
            state: Padded(AtomicUsize::new(0)),
            next_chunk: Padded(AtomicUsize::new(0)),
            job: AtomicPtr::new(ptr::null_mut()),
            panicked: AtomicBool::new(false),
            panic_payload: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            sleeping_workers: AtomicUsize::new(0),
            work_lock: Mutex::new(()),
            work_ready: Condvar::new(),
            caller_sleeping: AtomicBool::new(false),
            done_lock: Mutex::new(()),
            op_done: Condvar::new(),
            worker_spin: options.worker_spin,
            caller_spin: options.caller_spin,
        });
        let mut pool = ThreadPool {
            shared,
            workers: Vec::with_capacity(n_threads - 1),
            n_threads,
            submit: Mutex::new(()),
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
    /// With one thread, one chunk, or when called from inside a task of this same pool
    /// (nested use), `f` runs inline on the current thread, over the whole range at
    /// once, with the current thread's index. Calls from several other threads at once
    /// run one after the other.
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
        let (current_pool, current_index) = CURRENT.with(Cell::get);
        if ptr::eq(current_pool, shared) {
            // Nested: the workers are busy with the op this task belongs to.
            f(0..n_items, current_index);
            return;
        }
        let target_chunks = self.n_threads * CHUNKS_PER_THREAD;
        let chunk_size = n_items.div_ceil(target_chunks).max(min_chunk).max(1);
        let n_chunks = n_items.div_ceil(chunk_size);
        if n_chunks == 1 {
            f(0..n_items, 0);
            return;
        }

        let _submit = lock(&self.submit);
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
        // Publish: the job pointer and the chunk counter first, then the open state
        // with Release, so a worker that joins (an Acquire read-modify-write of
        // `state`) sees both.
        shared.next_chunk.0.store(0, Ordering::Relaxed);
        shared
            .job
            .store((&raw const job).cast_mut(), Ordering::Relaxed);
        shared.state.0.store(OPEN, Ordering::Release);
        shared.generation.0.store(generation, Ordering::SeqCst);
        shared.wake_workers();

        {
            let _current = CurrentGuard::enter(shared, 0);
            shared.run_chunks(&job, 0);
        }

        // Every chunk is claimed: close the op, then wait for the workers inside it.
        let before_close = shared.state.0.fetch_and(!OPEN, Ordering::AcqRel);
        if before_close & !OPEN != 0 {
            shared.wait_for_workers();
        }
        // SAFETY of the borrow of `f` and `job`: from here on no worker can reach them.
        // A worker touches the job only between joining (a CAS on `state` that requires
        // `OPEN`) and leaving (its decrement of `state`). `OPEN` is cleared above, so no
        // worker can join any more, and `state` has read 0, so all that joined have
        // left; their Release decrements, read by our Acquire loads, also make every
        // write they made inside `f` visible to this thread. Nothing else holds the
        // pointer: the next call overwrites it before it opens its own op. The same
        // holds when `f` panicked on this thread: `run_chunks` caught the panic, so we
        // reach this point before unwinding out of this frame.
        shared.job.store(ptr::null_mut(), Ordering::Relaxed);
        if shared.panicked.swap(false, Ordering::Relaxed)
            && let Some(payload) = lock(&shared.panic_payload).take()
        {
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

impl Shared {
    /// Claims and runs chunks of `job` until none is left or a task panics.
    fn run_chunks(&self, job: &Job, thread_index: usize) {
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            loop {
                let chunk = self.next_chunk.0.fetch_add(1, Ordering::Relaxed);
                if chunk >= job.n_chunks {
                    break;
                }
                let start = chunk * job.chunk_size;
                let end = start + (job.n_items - start).min(job.chunk_size);
                // SAFETY: `job.closure` points to the closure of the `for_each_chunk`
                // call that published `job`, which is still running (it returns only
                // after this thread has left the op, see there) and whose closure type
                // is the one `job.call` was instantiated with.
                unsafe { (job.call)(job.closure, start..end, thread_index) };
            }
        }));
        if let Err(payload) = result {
            // Hand out no more chunks of this op: they would run after a failure.
            // `n_chunks` bounds the counter, so the later `fetch_add`s cannot overflow.
            self.next_chunk.0.store(job.n_chunks, Ordering::Relaxed);
            let mut slot = lock(&self.panic_payload);
            if slot.is_none() {
                *slot = Some(payload);
            }
            self.panicked.store(true, Ordering::Relaxed);
        }
    }

    /// Wakes the workers that went to sleep; free when none did.
    fn wake_workers(&self) {
        // SeqCst pairs with the sleeper's SeqCst increment and generation check: either
        // the sleeper sees the new generation and does not wait, or we see it counted.
        if self.sleeping_workers.load(Ordering::SeqCst) > 0 {
            // Taking the lock orders us after a sleeper that counted itself but has not
            // started waiting yet, so the notification cannot be lost.
            drop(lock(&self.work_lock));
            self.work_ready.notify_all();
        }
    }

    /// Blocks a worker until the generation differs from `seen` or the pool shuts down.
    fn wait_for_work(&self, seen: usize) {
        let has_work = || {
            self.generation.0.load(Ordering::SeqCst) != seen || self.shutdown.load(Ordering::SeqCst)
        };
        if spin_until(self.worker_spin, has_work) {
            return;
        }
        let mut guard = lock(&self.work_lock);
        self.sleeping_workers.fetch_add(1, Ordering::SeqCst);
        while !has_work() {
            guard = self
                .work_ready
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.sleeping_workers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Enters the open op, if there is one, and returns its job.
    fn try_join(&self) -> Option<&Job> {
        let mut state = self.state.0.load(Ordering::Relaxed);
        loop {
            if state & OPEN == 0 {
                return None;
            }
            match self.state.0.compare_exchange_weak(
                state,
                state + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        let job = self.job.load(Ordering::Relaxed);
        // SAFETY: we joined an open op, which its caller published by storing `job`
        // before the Release store of `OPEN` that our Acquire CAS read from (or from a
        // later join in its release sequence); the caller does not return, and so the
        // job stays alive, until we leave the op (`leave`), and the returned reference
        // is not used after that (see `worker_main`).
        Some(unsafe { &*job })
    }

    /// Leaves the op joined by `try_join`; wakes the caller if it sleeps and we are the
    /// last worker out of a closed op.
    fn leave(&self) {
        // Release: our writes inside the op happen before the caller's return.
        // SeqCst pairs with the caller's SeqCst flag store and state check.
        let before = self.state.0.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && self.caller_sleeping.load(Ordering::SeqCst) {
            drop(lock(&self.done_lock));
            self.op_done.notify_one();
        }
    }

    /// Blocks the caller until every worker has left the (closed) op.
    fn wait_for_workers(&self) {
        let all_left = || self.state.0.load(Ordering::SeqCst) == 0;
        if spin_until(self.caller_spin, all_left) {
            return;
        }
        let mut guard = lock(&self.done_lock);
        self.caller_sleeping.store(true, Ordering::SeqCst);
        while !all_left() {
            guard = self
                .op_done
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.caller_sleeping.store(false, Ordering::Relaxed);
    }
}

/// The body of a worker thread: wait for an op, work on it, repeat until shutdown.
fn worker_main(shared: &Shared, thread_index: usize) {
    let _current = CurrentGuard::enter(shared, thread_index);
    let mut seen = 0;
    loop {
        shared.wait_for_work(seen);
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        seen = shared.generation.0.load(Ordering::Relaxed);
        if let Some(job) = shared.try_join() {
            // The job we joined may be newer than the generation read above.
            seen = job.generation;
            shared.run_chunks(job, thread_index);
            // `job` is not used past this point: after `leave` it may be gone.
            shared.leave();
        }
    }
}

/// Spins until `done()` or until `budget` has passed; returns whether `done()` held.
fn spin_until(budget: Duration, mut done: impl FnMut() -> bool) -> bool {
    if done() {
        return true;
    }
    if budget.is_zero() {
        return false;
    }
    let start = Instant::now();
    loop {
        for _ in 0..SPINS_PER_CLOCK_READ {
            std::hint::spin_loop();
            if done() {
                return true;
            }
        }
        if start.elapsed() >= budget {
            return done();
        }
    }
}

/// Locks a mutex of the pool. Poisoning is ignored: the pool's mutexes guard no data
/// that a panic could leave half-updated (a panic payload is stored whole or not).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        let shared: &Shared = &self.shared;
        shared.shutdown.store(true, Ordering::SeqCst);
        let generation = shared.generation.0.load(Ordering::Relaxed);
        shared
            .generation
            .0
            .store(generation.wrapping_add(1), Ordering::SeqCst);
        drop(lock(&shared.work_lock));
        shared.work_ready.notify_all();
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
            .field("worker_spin", &self.shared.worker_spin)
            .field("caller_spin", &self.shared.caller_spin)
            .finish_non_exhaustive()
    }
}
