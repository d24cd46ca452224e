//! nnc's kernels allocate nothing while a program runs (the invariant in the crate's
//! documentation): the training and evaluation steps of every model in `models/`, watched by
//! a global allocator. Its own test binary, so that no other test allocates meanwhile.
//!
//! The one exception is the `gemm` crate, which allocates its packing buffers on every call
//! (version 0.19 takes no workspace): an allocation whose backtrace passes through
//! `gemm_common` is not counted, nor one made outside nnc's code (a thread starting).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use nnc_ir::compile::compile;
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_ir::{DType, Function};
use nnc_jit::{Options, Program};
use support::{model_file, model_files};

/// The system allocator, counting allocations and reallocations outside `gemm` while
/// [`WATCHING`] is set.
struct Counting;

static WATCHING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// The backtrace of the first allocation counted.
static FIRST: Mutex<String> = Mutex::new(String::new());

thread_local! {
    /// Set while this thread inspects an allocation (which allocates itself).
    static INSPECTING: Cell<bool> = const { Cell::new(false) };
}

fn watch() {
    if !WATCHING.load(Ordering::Relaxed) || INSPECTING.with(|i| i.replace(true)) {
        return;
    }
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    // Made by nnc (not by a thread starting), and not inside gemm.
    let counted = trace.contains("nnc_jit") && !trace.contains("gemm_common");
    if counted && ALLOCATIONS.fetch_add(1, Ordering::Relaxed) == 0 {
        *FIRST.lock().unwrap_or_else(|e| e.into_inner()) = trace;
    }
    INSPECTING.with(|i| i.set(false));
}

// SAFETY: every call is forwarded to the system allocator with its arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        watch();
        // SAFETY: forwarded (the caller's contract).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded (the caller's contract).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        watch();
        // SAFETY: forwarded (the caller's contract).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        watch();
        // SAFETY: forwarded (the caller's contract).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Fills the step's u8 images with MNIST-like data (ink in the middle, zeros around it, so
/// that both the sparse and the dense paths of the contractions that read them run) and
/// its labels with valid classes.
fn fill_data(program: &mut Program, f: &Function, data_params: usize, dense: bool) {
    for (i, &p) in f.params[..data_params].iter().enumerate() {
        match f.ty(p).dtype {
            DType::U8 => {
                let data = program.u8_param(i).expect("u8 data");
                let n = data.len();
                for (k, x) in data.iter_mut().enumerate() {
                    let middle = (n / 3..2 * n / 3).contains(&(k % n));
                    *x = if dense || middle {
                        (k * 37 % 251) as u8
                    } else {
                        0
                    };
                }
            }
            DType::I32 => program.i32_param(i).expect("labels").fill(1),
            DType::F32 => program.f32_param(i).expect("data").fill(0.5),
        }
    }
}

/// Runs `program` once to warm it up, then asserts that a second run allocates nothing
/// outside `gemm`.
fn assert_no_allocation(program: &mut Program, what: &str) {
    program.run();
    ALLOCATIONS.store(0, Ordering::Relaxed);
    WATCHING.store(true, Ordering::Relaxed);
    program.run();
    WATCHING.store(false, Ordering::Relaxed);
    let n = ALLOCATIONS.load(Ordering::Relaxed);
    let first = FIRST.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(n, 0, "{what}: {n} allocations, the first at\n{first}");
}

#[test]
fn programs_do_not_allocate_while_they_run() {
    let files = model_files();
    assert!(files.len() >= 8, "models found: {files:?}");
    for path in files {
        let m = model_file(&path);
        let train = m.train.clone().expect("train block");
        let input = InputSpec::of(&train.data, &m).expect("known input layout");
        let targets = TargetSpec::of(&train.data, &m);
        let c = compile(&m, train.batch, input, targets).expect("compiles");
        for portable in [false, true] {
            let options = Options {
                portable,
                ..Options::default()
            };
            let step = &c.train_step;
            let mut train = Program::compile(&step.func, options).expect("jit compiles");
            let mut eval = Program::compile(&c.eval_step, options).expect("eval compiles");
            for dense in [false, true] {
                fill_data(&mut train, &step.func, step.data_params, dense);
                fill_data(&mut eval, &c.eval_step, 2, dense);
                let what = format!("{} (portable {portable}, dense {dense})", path.display());
                assert_no_allocation(&mut train, &format!("train step of {what}"));
                assert_no_allocation(&mut eval, &format!("evaluation step of {what}"));
            }
        }
    }
}
