//! Two cores, kept warm: a second thread that spins between jobs.
//!
//! A training step is a few hundred short kernels; a thread pool that puts its threads to
//! sleep between them (rayon does after a few microseconds) pays a wake-up on every kernel,
//! which measured here made a 2-thread GEMM slower than a 1-thread one. This worker spins while
//! jobs keep coming and parks itself after a millisecond of idleness, so a step's kernels split
//! across both cores at the cost of a cache-line handoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const IDLE: u32 = 0;
const POSTED: u32 = 1;
const RUNNING: u32 = 2;
const DONE: u32 = 3;

/// How long the worker spins without work before parking.
const SPIN: Duration = Duration::from_millis(1);

struct Shared {
    state: AtomicU32,
    /// Points to a `&(dyn Fn() + Sync)` living on the poster's stack during `join`.
    job: AtomicPtr<()>,
    parked: AtomicBool,
    quit: AtomicBool,
}

/// The second thread of a program.
pub struct Worker {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

type Job<'a> = &'a (dyn Fn() + Sync);

impl Worker {
    pub fn new() -> Worker {
        let shared = Arc::new(Shared {
            state: AtomicU32::new(IDLE),
            job: AtomicPtr::new(std::ptr::null_mut()),
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
    pub fn join(&self, a: impl Fn() + Sync, b: impl Fn() + Sync) {
        if self.handle.is_none() {
            a();
            b();
            return;
        }
        let job: Job<'_> = &b;
        self.post(&job);
        a();
        // If the worker has not started `b` (another process has the core), take it back:
        // waiting for a thread that is not scheduled would cost a whole time slice.
        if self
            .shared
            .state
            .compare_exchange(POSTED, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            b();
            return;
        }
        self.wait();
    }

    /// Runs `f` on this thread and on the worker (not taken back: it must run there), returning
    /// when both are done.
    pub fn on_both(&self, f: impl Fn() + Sync) {
        f();
        if self.handle.is_none() {
            return;
        }
        let job: Job<'_> = &f;
        self.post(&job);
        self.wait();
    }

    /// Hands `job` to the worker. The caller must [`wait`](Self::wait) (or take the job back)
    /// before `job` goes out of scope.
    fn post(&self, job: &Job<'_>) {
        self.shared
            .job
            .store(job as *const Job<'_> as *mut (), Ordering::Relaxed);
        self.shared.state.store(POSTED, Ordering::Release);
        if self.shared.parked.load(Ordering::Acquire)
            && let Some(handle) = &self.handle
        {
            handle.thread().unpark();
        }
    }

    /// Waits until the worker has finished the posted job.
    fn wait(&self) {
        let mut spins = 0u32;
        while self.shared.state.load(Ordering::Acquire) != DONE {
            spins += 1;
            if spins < 1 << 16 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.shared.state.store(IDLE, Ordering::Relaxed);
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
            // SAFETY: `post` stored a pointer to a `Job` on its caller's stack; having moved the
            // state from POSTED to RUNNING, this thread owns the job, and the caller (`join`,
            // `on_both`) does not return (so the job and everything it borrows stay alive)
            // until this thread stores DONE.
            unsafe { (*job)() };
            s.state.store(DONE, Ordering::Release);
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
}
