//! The machinery the pool's threads share: how an op is published, joined, worked on
//! and closed, and how idle threads spin and sleep. [`super::ThreadPool`] drives it
//! from the calling thread; [`worker_main`] is the body of every worker.
//!
//! The protocol, in terms of the fields of [`Shared`]:
//! 1. The caller (holding the pool's submit lock, so one op at a time) stores the
//!    [`Job`] pointer, resets `next_chunk`, stores `state = OPEN` (Release) and bumps
//!    `generation`; if some worker sleeps it notifies `work_ready`.
//! 2. A worker that sees a new generation joins by a CAS on `state` that adds 1 while
//!    `OPEN` is set (Acquire: it now sees the job), claims chunks from `next_chunk`,
//!    and leaves by subtracting 1 (Release: its writes become visible to the caller).
//! 3. The caller claims chunks too; when it finds none left it clears `OPEN` (`close`)
//!    and waits until `state` reads 0 (`wait_for_workers`): every worker that joined
//!    has left, none can join any more.
//!
//! Waiting threads spin with [`std::hint::spin_loop`] for a few microseconds, then keep
//! checking between [`std::thread::yield_now`] calls (so that a thread sharing their core,
//! e.g. the caller with a worker the OS moved next to it, gets to run), then sleep on a
//! condition variable (a futex on Linux) until notified.

use std::any::Any;
use std::cell::Cell;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The bit of [`Shared::state`] that says the current op is open for joining; the
/// bits below it count the workers inside the op.
pub(super) const OPEN: usize = 1 << (usize::BITS - 1);

/// How long a waiting thread spins with `spin_loop` before it starts yielding: long
/// enough to cover the gap between two ops of one token, short enough that a thread
/// which shares its core with the one it waits for gives the core up soon.
const PAUSE_PHASE: Duration = Duration::from_micros(20);

// STORE_THEN_LOAD: the sleep hand-shakes (`publish` / `wait_for_work`, `leave` /
// `wait_for_workers`) are Dekker-style — a thread writes its flag,
// then reads the other thread's — and are correct only if that write and read are not
// reordered. Sequentially consistent stores and loads promise that, but an Arm
// `stlr`/`ldar` pair run by qemu-user on an x86 host becomes a plain store and load,
// which x86 may reorder: the caller then slept while the last worker, not seeing it
// asleep, never woke it (a hang of `ops_after_workers_fell_asleep` under qemu). The
// writing side therefore uses a read-modify-write (`swap`), a full fence on every
// architecture and emulator, and it is on the sleep path only.

/// How many spin iterations pass between two reads of the clock while spinning.
const SPINS_PER_CLOCK_READ: u32 = 64;

/// The type-erased description of one op. It lives on the caller's stack for the
/// duration of the call; workers reach it through [`Shared::job`] only while they are
/// counted in [`Shared::state`].
pub(super) struct Job {
    /// Points at the caller's closure, of the type `call` was instantiated with.
    pub closure: *const (),
    /// `call_closure::<F>`: turns `closure` back into `&F` and calls it.
    pub call: unsafe fn(*const (), Range<usize>, usize),
    pub n_items: usize,
    pub chunk_size: usize,
    pub n_chunks: usize,
    /// The value of [`Shared::generation`] that published this job.
    pub generation: usize,
}

/// Aligns its content to its own cache lines (128 bytes covers the adjacent-line
/// prefetcher of x86 and the 128-byte lines of some ARM cores), so that the counters
/// every thread hammers do not share a line with each other.
#[repr(align(128))]
pub(super) struct Padded<T>(pub T);

/// The state shared by the pool handle and its workers.
pub(super) struct Shared {
    /// Bumped once per published op (and at shutdown). Workers wait for it to change.
    pub generation: Padded<AtomicUsize>,
    /// [`OPEN`] while the current op accepts workers, plus the number of workers inside
    /// it. The caller may return only once it has cleared `OPEN` and the count is 0.
    pub state: Padded<AtomicUsize>,
    /// The next chunk of the current op to hand out.
    pub next_chunk: Padded<AtomicUsize>,
    /// The current op's [`Job`], on the caller's stack.
    pub job: AtomicPtr<Job>,
    /// Set when a task of the current op panicked; the payload is in `panic_payload`.
    pub panicked: AtomicBool,
    pub panic_payload: Mutex<Option<Box<dyn Any + Send>>>,
    pub shutdown: AtomicBool,
    /// Workers asleep (or about to be) on `work_ready`.
    sleeping_workers: AtomicUsize,
    work_lock: Mutex<()>,
    work_ready: Condvar,
    /// Whether the caller is asleep (or about to be) on `op_done`.
    caller_sleeping: AtomicBool,
    done_lock: Mutex<()>,
    op_done: Condvar,
    pub worker_spin: Duration,
    pub caller_spin: Duration,
}

thread_local! {
    /// The pool whose task this thread is running (null if none) and its thread index
    /// in that pool: how a nested call is recognised.
    static CURRENT: Cell<(*const Shared, usize)> = const { Cell::new((ptr::null(), 0)) };
}

/// The thread index of the current thread if it is running a task of `shared`.
pub(super) fn current_index_in(shared: &Shared) -> Option<usize> {
    let (pool, index) = CURRENT.with(Cell::get);
    ptr::eq(pool, shared).then_some(index)
}

/// Marks the current thread as running tasks of a pool; restores the previous mark
/// when dropped, also when unwinding.
pub(super) struct CurrentGuard {
    previous: (*const Shared, usize),
}

impl CurrentGuard {
    pub fn enter(shared: &Shared, thread_index: usize) -> Self {
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
pub(super) unsafe fn call_closure<F>(closure: *const (), range: Range<usize>, thread_index: usize)
where
    F: Fn(Range<usize>, usize) + Sync,
{
    // SAFETY: the caller guarantees `closure` points to a live `F`; `F: Sync`, so a
    // shared reference to it may be used from this thread.
    let f = unsafe { &*closure.cast::<F>() };
    f(range, thread_index);
}

impl Shared {
    pub fn new(worker_spin: Duration, caller_spin: Duration) -> Self {
        Shared {
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
            worker_spin,
            caller_spin,
        }
    }

    /// Opens `job` to the workers and wakes those asleep; returns whether any was.
    /// The caller must hold the pool's submit lock, keep `job` alive and in place until
    /// [`Shared::close`] (and, if that says so, [`Shared::wait_for_workers`]) has
    /// returned, and call those before anything else.
    pub fn publish(&self, job: &Job) -> bool {
        // The job pointer and the chunk counter first, then the open state with
        // Release, so a worker that joins (an Acquire read-modify-write of `state`)
        // sees both.
        self.next_chunk.0.store(0, Ordering::Relaxed);
        self.job
            .store(ptr::from_ref(job).cast_mut(), Ordering::Relaxed);
        self.state.0.store(OPEN, Ordering::Release);
        // SeqCst pairs with a sleeping worker's SeqCst count and generation check:
        // either it sees the new generation and does not wait, or we see it counted.
        // A read-modify-write, not a store: see `STORE_THEN_LOAD`.
        self.generation.0.swap(job.generation, Ordering::SeqCst);
        if self.sleeping_workers.load(Ordering::SeqCst) == 0 {
            return false;
        }
        // Taking the lock orders us after a worker that counted itself but has not
        // started waiting yet, so the notification cannot be lost.
        drop(lock(&self.work_lock));
        self.work_ready.notify_all();
        true
    }

    /// Closes the published op (all its chunks are claimed): no worker can join it any
    /// more. Returns whether some workers are still inside; then the caller must
    /// [`Shared::wait_for_workers`] before its job goes away.
    pub fn close(&self) -> bool {
        let before_close = self.state.0.fetch_and(!OPEN, Ordering::AcqRel);
        before_close & !OPEN != 0
    }

    /// Takes the panic of the last op, if one of its tasks panicked.
    pub fn take_panic(&self) -> Option<Box<dyn Any + Send>> {
        if self.panicked.swap(false, Ordering::Relaxed) {
            lock(&self.panic_payload).take()
        } else {
            None
        }
    }

    /// Claims and runs chunks of `job` until none is left or a task panics; returns
    /// how many chunks this thread claimed.
    pub fn run_chunks(&self, job: &Job, thread_index: usize) -> usize {
        let mut claimed = 0;
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            loop {
                let chunk = self.next_chunk.0.fetch_add(1, Ordering::Relaxed);
                if chunk >= job.n_chunks {
                    break;
                }
                claimed += 1;
                let start = chunk * job.chunk_size;
                let end = start + (job.n_items - start).min(job.chunk_size);
                // SAFETY: `job.closure` points to the closure of the `for_each_chunk`
                // call that published `job`, which is still running (it returns only
                // after this thread has left the op) and whose closure type is the one
                // `job.call` was instantiated with.
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
        claimed
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
        // before the Release store of `OPEN` that our Acquire CAS read from (directly or
        // through other joins in its release sequence); the caller does not return,
        // and so the job stays alive and unchanged, until we leave the op (`leave`),
        // and `worker_main` does not use the reference after that.
        Some(unsafe { &*job })
    }

    /// Leaves the op joined by `try_join`; wakes the caller if it sleeps and we are the
    /// last worker out of a closed op.
    fn leave(&self) {
        // Release: our writes inside the op happen before the caller's return.
        // SeqCst pairs with the caller's SeqCst flag store and state check.
        let before = self.state.0.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && self.caller_sleeping.load(Ordering::SeqCst) {
            // As in `publish`: the lock keeps the notification from being lost.
            drop(lock(&self.done_lock));
            self.op_done.notify_one();
        }
    }

    /// Blocks the caller until every worker has left the (closed) op; returns whether
    /// it had to sleep.
    pub fn wait_for_workers(&self) -> bool {
        let all_left = || self.state.0.load(Ordering::SeqCst) == 0;
        if spin_until(self.caller_spin, all_left) {
            return false;
        }
        let mut guard = lock(&self.done_lock);
        // A read-modify-write, not a store: see `STORE_THEN_LOAD`.
        self.caller_sleeping.swap(true, Ordering::SeqCst);
        while !all_left() {
            guard = self
                .op_done
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.caller_sleeping.store(false, Ordering::Relaxed);
        true
    }

    /// Forgets the job of the op that was just closed and waited for.
    pub fn clear_job(&self) {
        self.job.store(ptr::null_mut(), Ordering::Relaxed);
    }

    /// Tells the workers to exit; they do once they next look.
    pub fn shut_down(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let generation = self.generation.0.load(Ordering::Relaxed);
        self.generation
            .0
            .store(generation.wrapping_add(1), Ordering::SeqCst);
        drop(lock(&self.work_lock));
        self.work_ready.notify_all();
    }
}

/// The body of a worker thread: wait for an op, work on it, repeat until shutdown.
pub(super) fn worker_main(shared: &Shared, thread_index: usize) {
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

/// Waits until `done()` or until `budget` has passed: spinning for the first
/// [`PAUSE_PHASE`], yielding the core between checks after that. Returns whether
/// `done()` held.
fn spin_until(budget: Duration, mut done: impl FnMut() -> bool) -> bool {
    if done() {
        return true;
    }
    if budget.is_zero() {
        return false;
    }
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return done();
        }
        if elapsed < PAUSE_PHASE {
            for _ in 0..SPINS_PER_CLOCK_READ {
                std::hint::spin_loop();
                if done() {
                    return true;
                }
            }
        } else {
            std::thread::yield_now();
            if done() {
                return true;
            }
        }
    }
}

/// Locks a mutex of the pool. Poisoning is ignored: the pool's mutexes guard no data
/// that a panic could leave half-updated (a panic payload is stored whole or not).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
