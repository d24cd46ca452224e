//! nnc's kernels allocate nothing while a program runs (the invariant in the crate's
//! documentation): the training and evaluation steps of every model in `models/`, and a
//! `CompiledModel`'s training steps across a full and a partial batch, watched by a global
//! allocator. Its own test binary, its tests one at a time ([`SERIAL`]), so that nothing else
//! allocates meanwhile.
//!
//! That includes the `gemm` crate's blocked product: upstream gemm-common allocates its
//! packing buffer and packed-LHS flags in every call; the vendored copy
//! (`vendor/gemm-common/PATCH.md`) keeps them per thread, so only a program's first run
//! allocates them. An allocation made outside nnc's code (a thread starting) is not counted.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use nnc_ir::compile::compile;
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_ir::{DType, Function};
use nnc_jit::{BatchData, CompiledModel, InputData, Options, Program, TargetData};
use support::{model_file, model_files};

/// The system allocator, counting allocations and reallocations while
/// [`WATCHING`] is set.
struct Counting;

static WATCHING: AtomicBool = AtomicBool::new(false);
/// Held by each test: the watch is global (kernels allocate on the worker thread too), so an
/// allocation by another test running meanwhile would count.
static SERIAL: Mutex<()> = Mutex::new(());
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
    // Made by nnc's code (not by a thread starting).
    let counted = trace.contains("nnc_jit");
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

/// The allocations nnc's code makes in `run`, and where the first was made.
fn allocations_in(run: impl FnOnce()) -> (usize, String) {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    WATCHING.store(true, Ordering::Relaxed);
    run();
    WATCHING.store(false, Ordering::Relaxed);
    let n = ALLOCATIONS.load(Ordering::Relaxed);
    let first = FIRST.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (n, first)
}

/// Asserts that `run` allocates nothing.
fn assert_no_allocation_in(what: &str, run: impl FnOnce()) {
    let (n, first) = allocations_in(run);
    assert_eq!(n, 0, "{what}: {n} allocations, the first at\n{first}");
}

/// The positive control: an allocation nnc's code makes in the watched region is counted (so
/// the watch cannot silently be off).
#[test]
fn the_watch_sees_an_allocation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut f = Function::new("matmul");
    let a = f.add_param("a", nnc_ir::Type::f32([4, 3]));
    let b = f.add_param("b", nnc_ir::Type::f32([3, 5]));
    let y = f
        .push(
            nnc_ir::Op::MatMul {
                ta: false,
                tb: false,
            },
            vec![a, b],
        )
        .expect("well-typed");
    f.results.push(y);
    let mut p = Program::compile(&f, Options::default()).expect("compiles");
    assert_no_allocation(&mut p, "the control's program");
    // `describe` builds its text in nnc_jit's code.
    let (n, first) = allocations_in(|| {
        std::hint::black_box(p.describe());
    });
    assert!(n >= 1, "an allocation by nnc_jit was not seen");
    assert!(first.contains("describe"), "{first}");
}

/// Runs `program` once to warm it up, then asserts that a second run allocates nothing.
fn assert_no_allocation(program: &mut Program, what: &str) {
    program.run();
    assert_no_allocation_in(what, || program.run());
}

#[test]
fn programs_do_not_allocate_while_they_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let files = model_files();
    assert!(files.len() >= 8, "models found: {files:?}");
    for path in files {
        let m = model_file(&path);
        let train = m.train.clone().expect("train block");
        let input = InputSpec::of(&train.data, &m).expect("known input layout");
        let targets = TargetSpec::of(&train.data, &m);
        let c = compile(&m, train.batch, input, targets).expect("compiles");
        // (On 2 and on 4 threads: each thread keeps gemm's buffers.)
        for portable in [false, true] {
            let options = Options {
                portable,
                threads: if portable { 2 } else { 4 },
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
    // Not vacuous: gemm's blocked product ran (and grew its kept buffers).
    assert!(gemm_common::gemm::kept_buffer_growths() > 0);
}

/// One batch's data for a training program: MNIST-like images or features, valid targets.
struct Batch {
    size: usize,
    u8s: Vec<u8>,
    f32s: Vec<f32>,
    classes: Vec<i32>,
    values: Vec<f32>,
}

impl Batch {
    /// Sized by the program's own data parameters.
    fn for_program(p: &Program, size: usize) -> Batch {
        let f = &p.func;
        let ty = |i: usize| f.ty(f.params[i]);
        let mut b = Batch {
            size,
            u8s: Vec::new(),
            f32s: Vec::new(),
            classes: Vec::new(),
            values: Vec::new(),
        };
        let n = ty(0).numel();
        match ty(0).dtype {
            DType::U8 => b.u8s = (0..n).map(|k| (k * 37 % 251) as u8).collect(),
            _ => b.f32s = vec![0.5; n],
        }
        match ty(1).dtype {
            DType::I32 => b.classes = vec![1; ty(1).numel()],
            _ => b.values = vec![0.5; ty(1).numel()],
        }
        b
    }

    fn data(&self) -> BatchData<'_> {
        BatchData {
            size: self.size,
            inputs: if self.u8s.is_empty() {
                InputData::F32(&self.f32s)
            } else {
                InputData::U8(&self.u8s)
            },
            targets: if self.classes.is_empty() {
                TargetData::Values(&self.values)
            } else {
                TargetData::Classes(&self.classes)
            },
            key: 7,
            lr: 0.01,
        }
    }
}

/// A `CompiledModel` allocates nothing per training step once it has compiled its programs: not
/// for the gradient norms it reports, nor when the weights move between the full batch's
/// program and the partial last batch's (which happens at every epoch's end).
#[test]
fn trainer_steps_do_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for path in model_files() {
        let m = model_file(&path);
        let train = m.train.clone().expect("train block");
        let input = InputSpec::of(&train.data, &m).expect("known input layout");
        let targets = TargetSpec::of(&train.data, &m);
        let mut trainer = CompiledModel::with_threads(&m, input, targets, 1, 3).expect("trainer");
        let (full, partial) = (train.batch, train.batch / 2 + 1);
        let batches: Vec<Batch> = [full, partial]
            .into_iter()
            .map(|size| {
                let p = trainer.train_program(size).expect("compiles");
                Batch::for_program(p, size)
            })
            .collect();
        let [full, partial] = [&batches[0], &batches[1]];
        // Every program has run and the norms' buffer has grown.
        for b in [full, partial, full] {
            trainer.train_step(&b.data()).expect("step");
        }
        let params = trainer.param_layout().0.len();
        let what = format!("{} trainer steps", path.display());
        assert_no_allocation_in(&what, || {
            for b in [full, full, partial, full, partial, full] {
                let out = trainer.train_step(&b.data()).expect("step");
                assert_eq!(out.grad_norms2.len(), params);
            }
        });
    }
}
