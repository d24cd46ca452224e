//! Two cores, kept warm: a second thread that spins between jobs.
//!
//! A training step is a few hundred short kernels; a thread pool that puts its threads to
//! sleep between them (rayon does after a few microseconds) pays a wake-up on every kernel,
//! which measured here made a 2-thread GEMM slower than a 1-thread one. This worker spins while
//! jobs keep coming and parks itself after a millisecond of idleness, so a step's kernels split
//! across both cores at the cost of a cache-line handoff.

use std::any::Any;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const IDLE: u32 = 0;
const POSTED: u32 = 1;
const RUNNING: u32 = 2;
const DONE: u32 = 3;
/// Done, but the job panicked: its payload is in [`Shared::panic`].
const PANICKED: u32 = 4;

/// How long the worker spins without work before parking.
const SPIN: Duration = Duration::from_millis(1);

/// What a panic carries, to be re-raised on the thread that posted the job.
type Payload = Box<dyn Any + Send + 'static>;

struct Shared {
    state: AtomicU32,
    /// Points to a `&(dyn Fn() + Sync)` living on the poster's stack during `join`.
    job: AtomicPtr<()>,
    /// The payload of the job that panicked on the worker (state PANICKED), taken by the poster.
    /// Touched only after a panic: a join that does not panic does not lock it (nor allocate).
    panic: Mutex<Option<Payload>>,
    parked: AtomicBool,
    quit: AtomicBool,
}

/// The second thread of a program.
///
/// A panic in either half of [`join`](Worker::join) (or in [`on_both`](Worker::on_both)) reaches
/// the caller as a panic once both halves have stopped, and the worker stays usable: it catches
/// its job's panic, and the caller does not leave the frame that owns the job (returning or
/// unwinding) before the worker is done with it.
pub struct Worker {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

type Job<'a> = &'a (dyn Fn() + Sync);

/// How a posted job ended.
enum Settled {
    /// The worker had not started it: the caller took it back and must run it itself.
    TakenBack,
    /// The worker ran it to the end.
    Done,
    /// The worker ran it and it panicked with this payload.
    Panicked(Payload),
}

/// A job handed to the worker. Until it is settled, the worker may be running the job, so the
/// job (borrowed for `'job`) must outlive it; dropping it unsettled (the caller's other half is
/// unwinding) takes the job back or waits for the worker to finish it, so the frame that owns
/// the job cannot be freed under the worker.
#[must_use]
struct Posted<'w, 'job> {
    worker: &'w Worker,
    settled: bool,
    _job: PhantomData<&'job Job<'job>>,
}

impl Posted<'_, '_> {
    /// Takes the job back if the worker has not started it (when `may_take_back`), else waits
    /// until the worker has finished it.
    fn settle(&mut self, may_take_back: bool) -> Settled {
        self.settled = true;
        let state = &self.worker.shared.state;
        // If the worker has not started the job (another process has the core), take it back:
        // waiting for a thread that is not scheduled would cost a whole time slice.
        if may_take_back
            && state
                .compare_exchange(POSTED, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Settled::TakenBack;
        }
        let mut spins = 0u32;
        let end = loop {
            let s = state.load(Ordering::Acquire);
            if s == DONE || s == PANICKED {
                break s;
            }
            spins += 1;
            if spins < 1 << 16 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        };
        if end == DONE {
            state.store(IDLE, Ordering::Relaxed);
            return Settled::Done;
        }
        // The worker stored the payload before PANICKED (Release, read above with Acquire).
        let payload = self
            .worker
            .shared
            .panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        state.store(IDLE, Ordering::Relaxed);
        match payload {
            Some(p) => Settled::Panicked(p),
            None => Settled::Panicked(Box::new("a job on the worker thread panicked")),
        }
    }
}

impl Drop for Posted<'_, '_> {
    fn drop(&mut self) {
        if !self.settled {
            // The caller is unwinding from its own half's panic, which is the one that
            // propagates: a job taken back is not run, and the worker's payload, if its half
            // panicked too, is dropped here.
            let _ = self.settle(true);
        }
    }
}

impl Worker {
    pub fn new() -> Worker {
        let shared = Arc::new(Shared {
            state: AtomicU32::new(IDLE),
            job: AtomicPtr::new(std::ptr::null_mut()),
            panic: Mutex::new(None),
            parked: AtomicBool::new(false),
            quit: AtomicBool::new(false),
        });
        let s = shared.clone();
        let handle = std::thread::Builder::new()
            .name("nnc-worker".into())
            .spawn(move || work(&s))
            .ok();
        Worker { shared, handle }
    }

    /// Runs `a` here and `b` on the worker, returning when both are done. Without a worker
    /// thread (it could not be spawned), runs both here.
    ///
    /// A panic in either half propagates to the caller after both halves have stopped (if both
    /// panic, `a`'s); `b` is then not run if the worker had not started it.
    pub fn join(&self, a: impl Fn() + Sync, b: impl Fn() + Sync) {
        if self.handle.is_none() {
            a();
            b();
            return;
        }
        let job: Job<'_> = &b;
        // Declared after `job`, so dropped (settled) before it even when `a` unwinds.
        let mut posted = self.post(&job);
        a();
        match posted.settle(true) {
            Settled::TakenBack => b(),
            Settled::Done => {}
            Settled::Panicked(payload) => resume_unwind(payload),
        }
    }

    /// Runs `f` on this thread and on the worker (not taken back: it must run there), returning
    /// when both are done. A panic in either propagates to the caller after both have stopped.
    pub fn on_both(&self, f: impl Fn() + Sync) {
        f();
        if self.handle.is_none() {
            return;
        }
        let job: Job<'_> = &f;
        let mut posted = self.post(&job);
        if let Settled::Panicked(payload) = posted.settle(false) {
            resume_unwind(payload);
        }
    }

    /// Hands `job` to the worker; the returned [`Posted`] borrows `job`, so the job outlives
    /// the worker's use of it.
    fn post<'w, 'job>(&'w self, job: &'job Job<'job>) -> Posted<'w, 'job> {
        self.shared
            .job
            .store(job as *const Job<'_> as *mut (), Ordering::Relaxed);
        self.shared.state.store(POSTED, Ordering::Release);
        if self.shared.parked.load(Ordering::Acquire)
            && let Some(handle) = &self.handle
        {
            handle.thread().unpark();
        }
        Posted {
            worker: self,
            settled: false,
            _job: PhantomData,
        }
    }
}

impl Default for Worker {
    fn default() -> Worker {
        Worker::new()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

fn work(s: &Shared) {
    let mut last = Instant::now();
    let mut spins = 0u32;
    loop {
        if s.state.load(Ordering::Acquire) == POSTED
            && s.state
                .compare_exchange(POSTED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let job = s.job.load(Ordering::Relaxed) as *const Job<'_>;
            // SAFETY: `post` stored a pointer to a `Job` on its caller's stack, and the `Posted`
            // it returned borrows that job. Having moved the state from POSTED to RUNNING, this
            // thread owns the job: the poster can no longer take it back, and settling a
            // `Posted` (explicitly, or in its `Drop` while the poster's other half unwinds)
            // waits until this thread stores DONE or PANICKED, so the job and everything it
            // borrows stay alive while it runs. The job is `Sync`, so running it here while the
            // poster's other half runs is allowed by its type; it takes only `&` of its
            // captures. A panic in it is caught below and never unwinds this thread's loop.
            let result = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)() }));
            match result {
                Ok(()) => s.state.store(DONE, Ordering::Release),
                Err(payload) => {
                    // The payload goes to the poster, which re-raises it; this thread carries on.
                    *s.panic.lock().unwrap_or_else(PoisonError::into_inner) = Some(payload);
                    s.state.store(PANICKED, Ordering::Release);
                }
            }
            last = Instant::now();
            continue;
        }
        if s.quit.load(Ordering::Acquire) {
            return;
        }
        // Reading the clock costs more than a spin: look at it every 256 spins.
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(256) || last.elapsed() < SPIN {
            std::hint::spin_loop();
            continue;
        }
        s.parked.store(true, Ordering::Release);
        // Re-check after announcing: a job posted in between must not be missed.
        if s.state.load(Ordering::Acquire) != POSTED && !s.quit.load(Ordering::Acquire) {
            std::thread::park_timeout(Duration::from_millis(50));
        }
        s.parked.store(false, Ordering::Release);
        last = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Waits (a bounded time) until `flag` is set: lets a test make sure the worker, not the
    /// caller, took a job.
    fn wait_for(flag: &AtomicBool) {
        let start = Instant::now();
        while !flag.load(Ordering::Acquire) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the worker never started its job"
            );
            std::thread::yield_now();
        }
    }

    fn message(payload: &Payload) -> &str {
        payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("")
    }

    /// The worker still runs both halves of a join, and sums them right.
    fn still_works(w: &Worker) {
        let n = AtomicUsize::new(0);
        for _ in 0..100 {
            w.join(
                || {
                    n.fetch_add(1, Ordering::Relaxed);
                },
                || {
                    n.fetch_add(10, Ordering::Relaxed);
                },
            );
        }
        assert_eq!(n.load(Ordering::Relaxed), 1100);
        let on = AtomicUsize::new(0);
        w.on_both(|| {
            on.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(on.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn both_halves_run() {
        let w = Worker::new();
        let n = AtomicUsize::new(0);
        for _ in 0..1000 {
            w.join(
                || {
                    n.fetch_add(1, Ordering::Relaxed);
                },
                || {
                    n.fetch_add(10, Ordering::Relaxed);
                },
            );
        }
        assert_eq!(n.load(Ordering::Relaxed), 11_000);
        // After the worker parks, a job still wakes it.
        std::thread::sleep(Duration::from_millis(20));
        w.join(
            || {},
            || {
                n.fetch_add(1, Ordering::Relaxed);
            },
        );
        assert_eq!(n.load(Ordering::Relaxed), 11_001);
    }

    #[test]
    fn a_panic_here_waits_for_the_worker_then_propagates() {
        let w = Worker::new();
        assert!(w.handle.is_some(), "no worker thread: nothing to test");
        let started = AtomicBool::new(false);
        let finished = AtomicBool::new(false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            w.join(
                || {
                    wait_for(&started);
                    panic!("half a");
                },
                || {
                    started.store(true, Ordering::Release);
                    // Long enough that a caller unwinding without waiting would be gone.
                    std::thread::sleep(Duration::from_millis(50));
                    finished.store(true, Ordering::Release);
                },
            )
        }));
        let payload = result.expect_err("the caller's panic must propagate");
        assert_eq!(message(&payload), "half a");
        // The frame that owned the worker's job was left only after the job finished.
        assert!(finished.load(Ordering::Acquire));
        still_works(&w);
    }

    #[test]
    fn a_panic_on_the_worker_propagates() {
        let w = Worker::new();
        assert!(w.handle.is_some(), "no worker thread: nothing to test");
        let started = AtomicBool::new(false);
        let a_ran = AtomicBool::new(false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            w.join(
                || {
                    wait_for(&started);
                    a_ran.store(true, Ordering::Relaxed);
                },
                || {
                    started.store(true, Ordering::Release);
                    assert_eq!(std::thread::current().name(), Some("nnc-worker"));
                    panic!("half b");
                },
            )
        }));
        let payload = result.expect_err("the worker's panic must propagate");
        assert_eq!(message(&payload), "half b");
        assert!(a_ran.load(Ordering::Relaxed));
        still_works(&w);
    }

    #[test]
    fn when_both_halves_panic_the_callers_propagates() {
        let w = Worker::new();
        assert!(w.handle.is_some(), "no worker thread: nothing to test");
        let started = AtomicBool::new(false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            w.join(
                || {
                    wait_for(&started);
                    panic!("half a");
                },
                || {
                    started.store(true, Ordering::Release);
                    std::thread::sleep(Duration::from_millis(20));
                    panic!("half b");
                },
            )
        }));
        assert_eq!(message(&result.expect_err("a panic")), "half a");
        still_works(&w);
        // A later panic on the worker is still reported (the first payload was not left behind).
        let result = catch_unwind(AssertUnwindSafe(|| {
            w.on_both(|| {
                if std::thread::current().name() == Some("nnc-worker") {
                    panic!("on the worker");
                }
            })
        }));
        assert_eq!(message(&result.expect_err("a panic")), "on the worker");
        still_works(&w);
        drop(w);
    }

    #[test]
    fn a_panic_in_on_both_propagates_from_either_thread() {
        let w = Worker::new();
        let here = catch_unwind(AssertUnwindSafe(|| {
            w.on_both(|| {
                if std::thread::current().name() != Some("nnc-worker") {
                    panic!("here");
                }
            })
        }));
        assert_eq!(message(&here.expect_err("a panic")), "here");
        let there = catch_unwind(AssertUnwindSafe(|| {
            w.on_both(|| {
                if std::thread::current().name() == Some("nnc-worker") {
                    panic!("there");
                }
            })
        }));
        assert_eq!(message(&there.expect_err("a panic")), "there");
        still_works(&w);
    }
}
