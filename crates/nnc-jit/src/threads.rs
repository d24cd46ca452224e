//! The cores of a program: the calling thread and N − 1 workers that spin between kernels.
//!
//! A training step is a few hundred short kernels; a thread pool that puts its threads to
//! sleep between them (rayon does after a few microseconds) pays a wake-up on every kernel,
//! which measured here made a 2-thread GEMM slower than a 1-thread one. These workers spin
//! while kernels keep coming, then yield their core between looks, and park after a
//! millisecond of idleness.
//!
//! A kernel is split into a fixed number of parts (at most N, decided at compile time), so its
//! results do not depend on which thread runs which part. The parts are *claimed*, not
//! assigned: the caller and every worker take the next unstarted part from a counter until
//! none is left. When another process has a core and a worker is not scheduled, the threads
//! that are do its parts, and the step slows by the lost core, not by a time slice per kernel.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a worker waits for work before parking.
const SPIN: Duration = Duration::from_millis(1);

/// How many times a worker spins without work (some tens of microseconds, the gap between a
/// step's kernels) before it yields its core between looks: when the machine is oversubscribed
/// (another process busy), a spinning worker would take time from the thread posting the
/// kernels.
const HOT_SPINS: u32 = 1 << 10;

/// What a panic carries, to be re-raised on the thread that posted the task.
type Payload = Box<dyn Any + Send + 'static>;

/// What the threads share: the posted task, if any.
struct Shared {
    /// The posted [`Task`], null when none: it lives on the poster's stack during [`Pool::run`].
    task: AtomicPtr<()>,
    /// The epoch of the latest posted task (each post increments it).
    epoch: AtomicU64,
    /// Workers that may be reading `task` (they count themselves in before loading it).
    visiting: AtomicUsize,
    /// Workers parked, or about to park.
    sleeping: AtomicUsize,
    quit: AtomicBool,
}

/// One kernel's parts, on the poster's stack while [`Pool::run`] (or [`Pool::on_all`]) runs.
struct Task<'a> {
    epoch: u64,
    part: &'a (dyn Fn(usize) + Sync),
    parts: usize,
    /// `on_all`: each worker takes at most one part, the poster none.
    one_each: bool,
    /// The next unclaimed part (may run past `parts`: claims past it find nothing).
    next: AtomicUsize,
    /// Parts finished (run, panicked, or skipped after a panic).
    done: AtomicUsize,
    /// A part panicked: the parts not yet started are skipped.
    failed: AtomicBool,
    /// The first worker's payload. Locked only after a panic: a run without one neither locks
    /// it nor allocates.
    panic: Mutex<Option<Payload>>,
}

impl Task<'_> {
    /// Claims and runs parts until none is left (one at most when `once`), handing each
    /// panic's payload to `caught`.
    fn claim(&self, once: bool, mut caught: impl FnMut(Payload)) {
        loop {
            let p = self.next.fetch_add(1, Ordering::Relaxed);
            if p >= self.parts {
                return;
            }
            if !self.failed.load(Ordering::Relaxed)
                && let Err(payload) = catch_unwind(AssertUnwindSafe(|| (self.part)(p)))
            {
                self.failed.store(true, Ordering::Relaxed);
                caught(payload);
            }
            // Release: what the part wrote (and its payload) is seen by the poster, which
            // reads `done` with Acquire.
            self.done.fetch_add(1, Ordering::Release);
            if once {
                return;
            }
        }
    }
}

/// The threads of a program (or of the programs of one model): N − 1 workers, the caller
/// being the N-th.
///
/// A panic in any part of [`run`](Pool::run) (or in [`on_all`](Pool::on_all)) reaches the
/// caller as a panic once every part has stopped, and the pool stays usable: every thread
/// catches its parts' panics, and the caller does not leave the frame that owns the task
/// before every worker has let go of it.
///
/// A pool runs one task at a time: a `run` that finds it busy (another thread, or a part,
/// calling it meanwhile) runs its parts on its own thread.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Taken by the task in progress.
    busy: AtomicBool,
}

impl Pool {
    /// A pool of `threads` threads: `threads − 1` workers besides the caller (none for 1).
    /// Workers that cannot be spawned are done without: their parts are claimed by the others.
    pub fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            task: AtomicPtr::new(std::ptr::null_mut()),
            epoch: AtomicU64::new(0),
            visiting: AtomicUsize::new(0),
            sleeping: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
        });
        let workers = (1..threads.max(1))
            .filter_map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("nnc-worker-{i}"))
                    .spawn(move || work(&s))
                    .ok()
            })
            .collect();
        Pool {
            shared,
            workers,
            busy: AtomicBool::new(false),
        }
    }

    /// Runs `part(0)`, …, `part(parts − 1)`, each once, on this thread and the workers,
    /// returning when all are done.
    ///
    /// A panic in any part propagates to the caller after every part has stopped (this
    /// thread's if one of its parts panicked, else a worker's); the parts not started by then
    /// are not run.
    pub fn run(&self, parts: usize, part: impl Fn(usize) + Sync) {
        if parts <= 1 || self.workers.is_empty() || self.busy.swap(true, Ordering::Acquire) {
            (0..parts).for_each(part);
            return;
        }
        self.post_and_wait(parts, false, &part);
    }

    /// Runs `f` once on this thread and once on every worker (it must run there: no part is
    /// taken back), returning when all are done. A panic in any propagates to the caller after
    /// all have stopped. Not from inside a part of [`run`](Pool::run): it waits for the pool.
    pub fn on_all(&self, f: impl Fn() + Sync) {
        f();
        if self.workers.is_empty() {
            return;
        }
        // Waits while another task runs (it ends: its caller is another thread).
        while self.busy.swap(true, Ordering::Acquire) {
            std::thread::yield_now();
        }
        self.post_and_wait(self.workers.len(), true, &|_| f());
    }

    /// Posts a task of `parts` parts, claims parts of it unless `one_each`, and returns once
    /// every part has run and no worker can read the task any more; then re-raises a panic.
    /// The caller has taken `busy`; this releases it.
    fn post_and_wait(&self, parts: usize, one_each: bool, part: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        let task = Task {
            epoch: s.epoch.load(Ordering::Relaxed) + 1,
            part,
            parts,
            one_each,
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            panic: Mutex::new(None),
        };
        // From here to the withdrawal below nothing unwinds: parts run under `catch_unwind`,
        // and atomics and the waits do not panic. So `task` outlives every worker's use of it.
        s.task
            .store(&task as *const Task<'_> as *mut (), Ordering::SeqCst);
        s.epoch.store(task.epoch, Ordering::SeqCst);
        if s.sleeping.load(Ordering::SeqCst) > 0 {
            self.workers.iter().for_each(|w| w.thread().unpark());
        }
        let mut mine: Option<Payload> = None;
        if !one_each {
            task.claim(false, |p| {
                mine.get_or_insert(p);
            });
        }
        wait_until(|| task.done.load(Ordering::Acquire) == parts);
        // Withdraw the task, then wait for the workers that may have loaded its address: a
        // worker counts itself in `visiting` before loading `task` (both SeqCst), so one that
        // loaded this task's address is counted until it lets go (see `work`).
        s.task.store(std::ptr::null_mut(), Ordering::SeqCst);
        wait_until(|| s.visiting.load(Ordering::SeqCst) == 0);
        self.busy.store(false, Ordering::Release);
        let theirs = || {
            task.panic
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        };
        if task.failed.load(Ordering::Relaxed) {
            let payload = mine
                .or_else(theirs)
                .unwrap_or_else(|| Box::new("a part on a worker thread panicked"));
            resume_unwind(payload);
        }
    }
}

/// Spins until `ready`, then yields the core between looks (a thread running a part may
/// have been descheduled).
fn wait_until(ready: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !ready() {
        spins = spins.saturating_add(1);
        if spins < 1 << 14 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        for w in self.workers.drain(..) {
            w.thread().unpark();
            let _ = w.join();
        }
    }
}

fn work(s: &Shared) {
    let mut seen = 0u64;
    let mut last = Instant::now();
    let mut spins = 0u32;
    loop {
        let epoch = s.epoch.load(Ordering::Acquire);
        if epoch != seen {
            s.visiting.fetch_add(1, Ordering::SeqCst);
            let task = s.task.load(Ordering::SeqCst) as *const Task<'_>;
            seen = epoch;
            if !task.is_null() {
                // SAFETY: a non-null `task` was stored by `post_and_wait` and points to a
                // `Task` on its caller's stack, which stays alive until the caller has
                // withdrawn it (stored null, SeqCst) and then seen `visiting` at 0 (SeqCst).
                // This thread incremented `visiting` before loading the address (SeqCst), so
                // in the single order of SeqCst operations: increment < this load < the
                // withdrawal < the caller's reads of `visiting`, which therefore count this
                // thread until its decrement below, after its last use of the task. Nothing
                // between the poster's store and its withdrawal unwinds (parts run under
                // `catch_unwind`), so the frame is not left early. The task's closure is
                // `Sync` and takes `&` of its captures: running parts of it here while other
                // threads run other parts is allowed by its type; the callers of `run` make
                // the parts touch disjoint memory.
                let task = unsafe { &*task };
                seen = seen.max(task.epoch);
                task.claim(task.one_each, |payload| {
                    let mut first = task.panic.lock().unwrap_or_else(PoisonError::into_inner);
                    first.get_or_insert(payload);
                });
            }
            s.visiting.fetch_sub(1, Ordering::SeqCst);
            last = Instant::now();
            spins = 0;
            continue;
        }
        if s.quit.load(Ordering::Acquire) {
            return;
        }
        spins = spins.saturating_add(1);
        if spins < HOT_SPINS {
            std::hint::spin_loop();
            continue;
        }
        if last.elapsed() < SPIN {
            std::thread::yield_now();
            continue;
        }
        s.sleeping.fetch_add(1, Ordering::SeqCst);
        // Re-check after announcing (SeqCst, against the poster's epoch store and its read of
        // `sleeping`): a task posted in between is seen here or unparks this thread.
        if s.epoch.load(Ordering::SeqCst) == seen && !s.quit.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_millis(50));
        }
        s.sleeping.fetch_sub(1, Ordering::SeqCst);
        last = Instant::now();
        spins = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (a bounded time) until `flag` is set: lets a test make sure a worker, not the
    /// caller, took a part.
    fn wait_for(flag: &AtomicBool) {
        let start = Instant::now();
        while !flag.load(Ordering::Acquire) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no worker ever started its part"
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

    fn on_worker() -> bool {
        std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("nnc-worker"))
    }

    /// The pool still runs every part once, and on_all on every thread.
    fn still_works(pool: &Pool, threads: usize) {
        for parts in [1, 2, 3, threads, 2 * threads + 1] {
            let n: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..100 {
                pool.run(parts, |p| {
                    n[p].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(n.iter().all(|c| c.load(Ordering::Relaxed) == 100));
        }
        let on = AtomicUsize::new(0);
        pool.on_all(|| {
            on.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(on.load(Ordering::Relaxed), threads);
    }

    #[test]
    fn every_part_runs_once_at_any_size() {
        for threads in 1..=5 {
            let pool = Pool::new(threads);
            assert_eq!(pool.workers.len(), threads - 1, "workers not spawned");
            still_works(&pool, threads);
            // After the workers park, a task still wakes them (on_all needs every one).
            std::thread::sleep(Duration::from_millis(20));
            still_works(&pool, threads);
        }
    }

    #[test]
    fn one_thread_has_no_worker() {
        let pool = Pool::new(1);
        assert!(pool.workers.is_empty());
        let ran_here = AtomicUsize::new(0);
        pool.run(4, |_| {
            assert!(!on_worker());
            ran_here.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran_here.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn workers_take_parts() {
        // With the caller stuck in its first part until another part started, a worker must
        // have claimed one.
        let pool = Pool::new(3);
        let started = AtomicBool::new(false);
        pool.run(3, |_| {
            if on_worker() {
                started.store(true, Ordering::Release);
            } else {
                wait_for(&started);
            }
        });
        assert!(started.load(Ordering::Acquire));
    }

    #[test]
    fn parts_of_a_thread_that_does_not_come_are_done_by_the_others() {
        // One worker stuck in a part (as if descheduled): the caller and the other worker do
        // every other part, and the task ends when the stuck part does.
        let pool = Pool::new(3);
        let release = AtomicBool::new(false);
        let stuck = AtomicBool::new(false);
        let done = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // Let it go once every other part is done.
                let start = Instant::now();
                while done.load(Ordering::Acquire) < 9 {
                    assert!(start.elapsed() < Duration::from_secs(30), "parts not done");
                    std::thread::yield_now();
                }
                release.store(true, Ordering::Release);
            });
            pool.run(10, |_| {
                if on_worker() && !stuck.swap(true, Ordering::AcqRel) {
                    wait_for(&release);
                }
                done.fetch_add(1, Ordering::AcqRel);
            });
        });
        assert_eq!(done.load(Ordering::Relaxed), 10);
        still_works(&pool, 3);
    }

    /// Two parts on a pool of two threads, each part waiting until the other has started, so
    /// that the caller runs one and the worker the other; `here` and `there` then run in them.
    fn one_part_each(pool: &Pool, here: impl Fn() + Sync, there: impl Fn() + Sync) {
        let (mine, theirs) = (AtomicBool::new(false), AtomicBool::new(false));
        pool.run(2, |_| {
            if on_worker() {
                theirs.store(true, Ordering::Release);
                wait_for(&mine);
                there();
            } else {
                mine.store(true, Ordering::Release);
                wait_for(&theirs);
                here();
            }
        });
    }

    #[test]
    fn a_panic_here_waits_for_the_worker_then_propagates() {
        let pool = Pool::new(2);
        let finished = AtomicBool::new(false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            one_part_each(
                &pool,
                || panic!("here"),
                || {
                    // Long enough that a caller unwinding without waiting would be gone.
                    std::thread::sleep(Duration::from_millis(50));
                    finished.store(true, Ordering::Release);
                },
            )
        }));
        let payload = result.expect_err("the caller's panic must propagate");
        assert_eq!(message(&payload), "here");
        // The frame that owned the task was left only after the worker's part finished.
        assert!(finished.load(Ordering::Acquire));
        still_works(&pool, 2);
    }

    #[test]
    fn a_panic_on_a_worker_propagates() {
        let pool = Pool::new(2);
        let caller_ran = AtomicBool::new(false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            one_part_each(
                &pool,
                || {
                    std::thread::sleep(Duration::from_millis(20));
                    caller_ran.store(true, Ordering::Relaxed);
                },
                || panic!("there"),
            )
        }));
        let payload = result.expect_err("the worker's panic must propagate");
        assert_eq!(message(&payload), "there");
        assert!(caller_ran.load(Ordering::Relaxed));
        still_works(&pool, 2);
    }

    #[test]
    fn when_parts_panic_on_both_sides_the_callers_propagates() {
        let pool = Pool::new(2);
        let result = catch_unwind(AssertUnwindSafe(|| {
            one_part_each(
                &pool,
                || panic!("here"),
                || {
                    std::thread::sleep(Duration::from_millis(20));
                    panic!("there");
                },
            )
        }));
        assert_eq!(message(&result.expect_err("a panic")), "here");
        still_works(&pool, 2);
        // A later panic on a worker is still reported (the first payload was not left behind).
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.on_all(|| {
                if on_worker() {
                    panic!("on a worker");
                }
            })
        }));
        assert_eq!(message(&result.expect_err("a panic")), "on a worker");
        still_works(&pool, 2);
    }

    #[test]
    fn parts_not_started_after_a_panic_are_skipped() {
        let pool = Pool::new(1);
        let ran = AtomicUsize::new(0);
        // One thread: the parts run in order here, and the panic stops them.
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.run(4, |p| {
                ran.fetch_add(1, Ordering::Relaxed);
                assert!(p != 1, "part 1");
            })
        }));
        assert!(result.is_err());
        assert_eq!(ran.load(Ordering::Relaxed), 2);
        // With workers too: every part stops, and fewer than all ran.
        let pool = Pool::new(3);
        let ran = AtomicUsize::new(0);
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.run(64, |p| {
                ran.fetch_add(1, Ordering::Relaxed);
                assert!(p != 0, "part 0");
                std::thread::sleep(Duration::from_millis(5));
            })
        }));
        assert_eq!(message(&result.expect_err("a panic")), "part 0");
        assert!(ran.load(Ordering::Relaxed) < 64);
        still_works(&pool, 3);
    }

    #[test]
    fn a_panic_in_on_all_propagates_from_any_thread() {
        let pool = Pool::new(4);
        let here = catch_unwind(AssertUnwindSafe(|| {
            pool.on_all(|| {
                if !on_worker() {
                    panic!("here");
                }
            })
        }));
        assert_eq!(message(&here.expect_err("a panic")), "here");
        let there = catch_unwind(AssertUnwindSafe(|| {
            pool.on_all(|| {
                if on_worker() {
                    panic!("there");
                }
            })
        }));
        assert_eq!(message(&there.expect_err("a panic")), "there");
        still_works(&pool, 4);
    }

    #[test]
    fn a_pool_in_use_runs_a_nested_task_on_the_calling_thread() {
        let pool = Pool::new(2);
        let n = AtomicUsize::new(0);
        pool.run(2, |_| {
            pool.run(3, |_| {
                n.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(n.load(Ordering::Relaxed), 6);
        still_works(&pool, 2);
    }
}
