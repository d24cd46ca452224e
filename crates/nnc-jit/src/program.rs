//! A compiled step function: kernels in order over one arena.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cranelift_jit::JITModule;
use nnc_ir::verify::{self, VerifyError};
use nnc_ir::{DType, Function, Op};
use nnc_kernels::Isa;
use nnc_kernels::copy::MAX_RANK;
use nnc_kernels::transcendental;

use crate::arena::Arena;
use crate::codegen::{Jit, LoopFn};
use crate::conv_cost::Lanes;
use crate::epilogue::{self, MaskedGrad};
use crate::fuse;
use crate::head::{self, HeadKernel};
use crate::kernel::{self, Kernel, LoopKernel, Schedule, Storage};
use crate::library::{ConvKernel, LibKernel, scratch_bytes};
use crate::plan::{self, ALIGN, Plan, elem_size};
use crate::schedule;
use crate::threads::Pool;
use crate::updates::{self, RmsProp};
use crate::vector_loop::{self, VectorLoop};
use crate::window;

enum KernelCode {
    /// `parts`: how many parts of its outer range it runs as (1: whole, on one thread);
    /// `sums`: the (offset, length) of each sum it accumulates, which parts 1, 2, …
    /// accumulate in their copies of the partial region.
    Loop {
        f: Body,
        outer: u64,
        parts: usize,
        sums: Vec<(usize, usize)>,
    },
    Lib(LibKernel),
    /// A split library kernel with loops each part runs on its own range; or one too small
    /// to split, its loops run whole on one thread.
    Fused {
        lib: LibKernel,
        prologue: Option<PartLoop>,
        epilogue: Option<PartLoop>,
    },
    /// The loss head (see `head`), on one thread: its work is a few rows of a few classes.
    Head(HeadKernel),
    /// An `allreduce_sum`: the `len` floats at byte `send` summed over the job into those at
    /// byte `recv` by the caller's communication ([`Program::run_summing`]); in one process,
    /// a copy. Disjoint and aligned for f32 (checked when compiled).
    Collective {
        send: usize,
        recv: usize,
        len: usize,
    },
    /// A split pool gradient fused with its ReLU mask and bias gradient, recognised and run
    /// on the vector unit (see `epilogue::MaskedGrad`).
    MaskedPoolGrad {
        routine: MaskedGrad,
        isa: Isa,
        parts: usize,
        macs: usize,
    },
}

/// A loop fused into a split library kernel: the outer range of each part.
struct PartLoop {
    f: Body,
    ranges: Vec<(u64, u64)>,
    sums: Vec<(usize, usize)>,
}

/// What runs a loop: its Cranelift function, or a routine it was recognised as.
enum Body {
    Jit(LoopFn),
    RmsProp(Box<RmsProp>, Isa),
    Vector(Box<VectorLoop>, Isa),
}

impl Body {
    /// Runs outer iterations `start..end`, sums to their buffers or (`partial` ≠ 0) to the
    /// partial region.
    ///
    /// # Safety
    /// As a generated loop: `base` is the program's arena, and no other thread touches the
    /// same elements or sum destinations meanwhile.
    unsafe fn call(&self, base: *mut u8, start: u64, end: u64, partial: u64) {
        // SAFETY: forwarded; a recognised update runs only on a unit the CPU supports.
        unsafe {
            match self {
                Body::Jit(f) => f(base, start, end, partial),
                Body::RmsProp(r, isa) => r.run(*isa, base, start as usize, end as usize, partial),
                Body::Vector(v, isa) => v.run(*isa, base, start as usize, end as usize, partial),
            }
        }
    }
}

/// A loop runs in one part per this many elements (at most one per thread): loops over fewer
/// than twice as many run whole on one thread.
const PART_ELEMENTS: usize = 1 << 14;

/// The arena base, shared by the threads running parts of a kernel.
#[derive(Clone, Copy)]
struct Base(*mut u8);

impl Base {
    /// The pointer (a method, so closures capture the whole `Base`, which is `Sync`).
    fn get(self) -> *mut u8 {
        self.0
    }
}
// SAFETY: a `Base` is made only by `Program::run` from its `&mut` arena, and used only while
// that borrow lasts, by the kernels `run_kernel` starts: `Pool::run` returns (or unwinds)
// only after every part stopped, so no thread uses the pointer after the borrow ends. The
// parts of a split kernel write disjoint elements (loops split the outer range, each part's
// sums in its own copy of the partial region; library kernels rows/columns/samples/planes
// with separate scratch, each making references only to its own part: see
// `LibKernel::run_part`), so sharing the pointer across the threads does not race.
unsafe impl Send for Base {}
// SAFETY: as above.
unsafe impl Sync for Base {}

/// Options for compilation.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Keep the Cranelift IR of every loop (`nnc ir --emit clif`).
    pub keep_clif: bool,
    /// Threads a program runs on (the caller and `threads − 1` workers), 1 to
    /// [`MAX_THREADS`]: a kernel splits into at most this many parts, so results are
    /// bitwise reproducible for a given count (not across counts). Default 2; the CLI and
    /// the `nnc` library default to the machine's available parallelism.
    pub threads: usize,
    /// Split every kernel into as many parts as it can run as (up to `threads`), however
    /// small (tests use it to run the split and fused paths on small models).
    pub split_small: bool,
    /// Only the portable kernels (convolutions as im2col + GEMM, scalar pooling), never the
    /// hand-vectorised ones (tests run both).
    pub portable: bool,
    /// The vector unit of the hand-vectorised kernels, if this CPU supports it; by default
    /// (or if it does not) the best one it has ([`Isa::best`]). Tests run each.
    pub isa: Option<Isa>,
}

/// The most threads a program runs on.
pub const MAX_THREADS: usize = 256;

impl Default for Options {
    fn default() -> Options {
        Options {
            keep_clif: false,
            threads: 2,
            split_small: false,
            portable: false,
            isa: None,
        }
    }
}

impl Options {
    /// `threads`, within 1 to [`MAX_THREADS`].
    fn thread_count(&self) -> usize {
        self.threads.clamp(1, MAX_THREADS)
    }

    /// The vector unit the hand-vectorised kernels run on under these options, if any.
    pub fn vector_unit(&self) -> Option<Isa> {
        if self.portable {
            return None;
        }
        self.isa.filter(|i| i.supported()).or_else(Isa::best)
    }
}

/// The most bytes a step's tensors may take together (64 TiB): far beyond any machine's
/// memory, and small enough that the plan's offsets cannot overflow.
const MAX_TENSOR_BYTES: u128 = 1 << 46;

/// Why [`Program::compile`] (or [`ArenaSize::of`]) refused a function.
#[derive(Clone, Debug, PartialEq)]
pub enum CompileError {
    /// The function is not well-formed IR (a value used before it is defined, a result type
    /// its op does not give, ...): the verifier's findings. The JIT trusts types to size its
    /// buffers and loops, so it compiles only verified functions.
    IllFormed(Vec<VerifyError>),
    /// An op that exists for its derivative ([`Op::is_composite`]) and that
    /// `nnc_ir::passes::decompose` (part of `optimize`) writes as primitives first.
    NotDecomposed(&'static str),
    /// A tensor of a rank higher than the JIT's kernels handle.
    RankTooHigh { rank: usize },
    /// The step's tensors, or its arena, are too large for this machine.
    TooLarge(String),
    /// Cranelift failed to generate or link the code (a bug, reported rather than a panic).
    Codegen(String),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::IllFormed(errors) => {
                f.write_str("the step function is not well-formed IR:")?;
                for e in errors {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
            CompileError::NotDecomposed(op) => write!(
                f,
                "`{op}` is compiled as primitives: decompose the function first \
                 (nnc_ir::passes::decompose)"
            ),
            CompileError::RankTooHigh { rank } => write!(
                f,
                "a tensor of rank {rank} (the JIT handles rank {MAX_RANK} at most)"
            ),
            CompileError::TooLarge(why) | CompileError::Codegen(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CompileError {}

/// For callers whose errors are still text.
impl From<CompileError> for String {
    fn from(e: CompileError) -> String {
        e.to_string()
    }
}

/// Refuses what the JIT cannot compile: an ill-formed function (verified first: everything
/// after it sizes buffers and loops from the declared types), a tensor of too high a rank, or
/// tensors too large to plan (a huge `--batch`), before any size is computed in `usize`.
///
/// Every op of a verified and decomposed function has a kernel (a loop, a library routine or a
/// view), so there is no other unsupported op to refuse.
fn check_function(f: &Function) -> Result<(), CompileError> {
    verify::verify(f).map_err(CompileError::IllFormed)?;
    if let Some(i) = f.insts.iter().find(|i| i.op.is_composite()) {
        return Err(CompileError::NotDecomposed(i.op.name()));
    }
    if let Some(t) = f.types.iter().find(|t| t.shape.len() > MAX_RANK) {
        return Err(CompileError::RankTooHigh {
            rank: t.shape.len(),
        });
    }
    let bytes: u128 = f
        .types
        .iter()
        .map(|t| {
            t.shape.iter().fold(elem_size(t.dtype) as u128, |n, &d| {
                n.saturating_mul(d as u128)
            })
        })
        .fold(0, u128::saturating_add);
    if bytes > MAX_TENSOR_BYTES {
        return Err(CompileError::TooLarge(format!(
            "the step's tensors would take {bytes} bytes, more than any machine's memory \
             (a smaller batch?)"
        )));
    }
    Ok(())
}

/// The kernels of `f` and their buffers: loops, library kernels with the loops they fuse, and
/// loss heads, planned in one arena.
fn schedule_and_plan(f: &Function, opts: Options) -> (Schedule, Plan) {
    let mut schedule = schedule::schedule(f);
    fuse::fuse(f, &mut schedule, opts.split_small, opts.thread_count());
    head::fuse_heads(f, &mut schedule);
    window::read_in_place(f, &mut schedule);
    // Convolutions read a window's samples apart on the vector units' direct kernels only.
    let apart = opts
        .vector_unit()
        .map(|_| LibKernel::unfolded_reads_apart as fn(&Function, &nnc_ir::Inst) -> bool);
    window::write_in_place(f, &mut schedule, apart);
    let plan = plan::plan(f, &schedule);
    (schedule, plan)
}

/// Where the scratch regions sit after the plan's buffers, in bytes from the arena's start.
struct Layout {
    /// The start of the scratch: one region of `scratch_part` bytes per part (as many as
    /// threads).
    scratch: usize,
    scratch_part: usize,
    /// Room for the partial filter gradients of parts 1, 2, ….
    extra: usize,
    /// The partial sums of split loops: a copy of `partial_part` bytes for each of parts
    /// 1, 2, ….
    partial: usize,
    partial_part: usize,
    /// The arena's size.
    total: usize,
}

impl Layout {
    fn of(f: &Function, schedule: &Schedule, plan: &Plan, opts: Options) -> Layout {
        let threads = opts.thread_count();
        let scratch_size = schedule
            .kernels
            .iter()
            .map(|k| match k {
                Kernel::Op { inst } | Kernel::Fused { inst, .. } => {
                    let inst = &f.insts[*inst];
                    // Parts as the program will run them (see `compile_on`).
                    let mut lib = LibKernel::shapes_only(f, inst);
                    lib.threads = threads;
                    lib.split_small = opts.split_small;
                    scratch_bytes(f, inst, lib.most_part_samples())
                }
                Kernel::Loop(_) | Kernel::Head(_) => 0,
            })
            .max()
            .unwrap_or(0);
        // Scratch: one region per part, then room for the later parts' partial filter
        // gradients.
        let scratch = plan.arena_size;
        let scratch_part = scratch_size.div_ceil(ALIGN) * ALIGN;
        let extra_size = schedule
            .kernels
            .iter()
            .map(|k| match k {
                Kernel::Op { inst } | Kernel::Fused { inst, .. }
                    if matches!(f.insts[*inst].op, Op::Conv2dGradFilter { .. }) =>
                {
                    f.ty(f.insts[*inst].result).numel() * 4
                }
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        let extra = scratch + threads * scratch_part;
        let sum_size = schedule
            .kernels
            .iter()
            .map(|k| match k {
                Kernel::Loop(l)
                | Kernel::Fused {
                    epilogue: Some(l), ..
                } => l.reductions.iter().map(|&r| f.ty(r).numel() * 4).sum(),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        let partial = extra + (threads - 1) * extra_size.div_ceil(ALIGN) * ALIGN;
        let partial_part = sum_size.div_ceil(ALIGN) * ALIGN;
        let total = partial + (threads - 1) * partial_part;
        Layout {
            scratch,
            scratch_part,
            extra,
            partial,
            partial_part,
            total,
        }
    }
}

/// How a program's arena divides, in bytes: the three parts lie in this order and add up to
/// [`ArenaSize::total`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ArenaSize {
    /// Parameters, optimizer state, inputs and constants: what lives across steps.
    pub persistent: usize,
    /// The values passed between kernels, sharing memory where their lifetimes do not
    /// overlap.
    pub intermediates: usize,
    /// Working memory of the library kernels (a region per thread) and the partial sums of
    /// split kernels (a copy per thread but one).
    pub scratch: usize,
}

impl ArenaSize {
    /// The whole arena.
    pub fn total(&self) -> usize {
        self.persistent + self.intermediates + self.scratch
    }

    /// The arena `f` compiles to under `opts`, without generating code: the same schedule and
    /// plan as [`Program::compile`], which fail only on an ill-formed function, a tensor of too
    /// high a rank or tensors too large for any machine.
    pub fn of(f: &Function, opts: Options) -> Result<ArenaSize, CompileError> {
        check_function(f)?;
        let (schedule, plan) = schedule_and_plan(f, opts);
        let layout = Layout::of(f, &schedule, &plan, opts);
        Ok(ArenaSize::from_parts(&plan, &layout))
    }

    fn from_parts(plan: &Plan, layout: &Layout) -> ArenaSize {
        ArenaSize {
            persistent: plan.persistent,
            intermediates: layout.scratch - plan.persistent,
            scratch: layout.total - layout.scratch,
        }
    }
}

/// A step function compiled to kernels, with its arena.
pub struct Program {
    pub func: Function,
    schedule: Schedule,
    plan: Plan,
    /// How the arena divides (what `nnc check` and `ir --stage kernels` print).
    size: ArenaSize,
    arena: Arena,
    kernels: Vec<KernelCode>,
    /// The threads it runs on, perhaps shared with other programs of the same model.
    pool: Arc<Pool>,
    /// gemm's count of buffer growths when this program last grew its threads' buffers.
    gemm_growths_kept: Option<usize>,
    /// Where the partial sums of split kernels go.
    partial: Partial,
    /// Keeps the generated code alive for the function pointers in `kernels`.
    _module: JITModule,
    /// Cranelift IR of the loops, if kept.
    pub clif: Option<Vec<String>>,
    /// Per kernel, the transcendental functions its loops run along rows in the library, and
    /// on which unit (for its label).
    along_rows: Vec<(Vec<transcendental::Function>, Option<Isa>)>,
    /// Seconds spent compiling (scheduling, planning, code generation).
    pub compile_seconds: f64,
    /// The index of the last `allreduce_sum` kernel, if any.
    last_sum: Option<usize>,
}

impl Program {
    /// Compiles `f`, which is verified first: an ill-formed function is an error, never code.
    /// The program runs on threads of its own (`opts.threads`).
    pub fn compile(f: &Function, opts: Options) -> Result<Program, CompileError> {
        Program::compile_on(f, opts, Arc::new(Pool::new(opts.thread_count())))
    }

    /// Compiles `f` to run on `pool`, which other programs may share (one at a time: a
    /// program run while another uses the pool runs on its own thread alone); `pool` should
    /// have `opts.threads` threads.
    pub(crate) fn compile_on(
        f: &Function,
        opts: Options,
        pool: Arc<Pool>,
    ) -> Result<Program, CompileError> {
        let start = Instant::now();
        check_function(f)?;
        let threads = opts.thread_count();
        let (schedule, plan) = schedule_and_plan(f, opts);
        let layout = Layout::of(f, &schedule, &plan, opts);
        let size = ArenaSize::from_parts(&plan, &layout);
        let Layout {
            scratch,
            scratch_part,
            extra,
            partial,
            partial_part,
            total,
        } = layout;
        let mut jit = Jit::new(opts.keep_clif).map_err(CompileError::Codegen)?;
        let mut ids = Vec::new();
        let mut extents = Vec::new();
        let mut along_rows = Vec::new();
        for (k, kernel) in schedule.kernels.iter().enumerate() {
            let loops: Vec<(&LoopKernel, &str)> = match kernel {
                Kernel::Loop(l) => vec![(l, "")],
                Kernel::Op { .. } | Kernel::Head(_) => Vec::new(),
                Kernel::Fused {
                    prologue, epilogue, ..
                } => prologue
                    .iter()
                    .map(|l| (l, "_prologue"))
                    .chain(epilogue.iter().map(|l| (l, "_epilogue")))
                    .collect(),
            };
            let mut functions = Vec::new();
            for (l, role) in loops {
                let (id, outer, rows) = jit
                    .compile_loop(&format!("kernel{k}{role}"), f, l, &plan, opts.vector_unit())
                    .map_err(CompileError::Codegen)?;
                ids.push(id);
                extents.push(outer);
                functions.extend(rows);
            }
            along_rows.push((functions, opts.vector_unit()));
        }
        let (module, fns, clif) = jit.finish(&ids).map_err(CompileError::Codegen)?;
        let mut fns = fns.into_iter().zip(extents);
        let sums_of = |l: &LoopKernel| -> Vec<(usize, usize)> {
            l.reductions
                .iter()
                .map(|&r| (plan.at(r), f.ty(r).numel()))
                .collect()
        };
        let lib =
            |inst: usize| LibKernel::new(f, &f.insts[inst], &plan, scratch, scratch_part, extra);
        // A loop runs as a recognised RMSProp update (`updates`) or an elementwise program
        // (`vector_loop`) where the CPU has a vector unit, else as generated.
        let isa = opts.vector_unit();
        // The recognised routines read their operands row-major: not a loop reading a
        // window (generated loops read its strides).
        let plain = |l: &LoopKernel| l.inputs.iter().all(|v| plan.strides[v.index()].is_none());
        let body = |l: &LoopKernel, func: LoopFn, outer: u64| {
            let Some(isa) = isa.filter(|_| plain(l)) else {
                return Body::Jit(func);
            };
            if let Some(r) = updates::recognise(f, l, &plan).filter(|r| r.n as u64 == outer) {
                return Body::RmsProp(Box::new(r), isa);
            }
            match vector_loop::recognise(f, l, &plan).filter(|v| v.n as u64 == outer) {
                Some(v) => Body::Vector(Box::new(v), isa),
                None => Body::Jit(func),
            }
        };
        let kernels: Vec<KernelCode> = schedule
            .kernels
            .iter()
            .map(|k| match k {
                Kernel::Loop(l) => {
                    let (func, outer) = fns.next().expect("one function per loop");
                    let elements = l.shape.iter().product::<usize>();
                    let by_work = if opts.split_small {
                        threads
                    } else {
                        elements / PART_ELEMENTS
                    };
                    let parts = by_work.min(threads).min(outer as usize).max(1);
                    let sums = sums_of(l);
                    Ok(KernelCode::Loop {
                        f: body(l, func, outer),
                        outer,
                        parts,
                        sums,
                    })
                }
                Kernel::Op { inst } if f.insts[*inst].op == Op::AllReduceSum => {
                    let i = &f.insts[*inst];
                    let (send, recv) = (plan.at(i.args[0]), plan.at(i.result));
                    let len = f.ty(i.result).numel();
                    if send % 4 != 0 || recv % 4 != 0 || send.abs_diff(recv) < 4 * len {
                        return Err(CompileError::Codegen(format!(
                            "a sum's buffers at {send} and {recv} overlap or are unaligned"
                        )));
                    }
                    Ok(KernelCode::Collective { send, recv, len })
                }
                Kernel::Op { inst } => {
                    let mut lib = lib(*inst);
                    lib.split_small = opts.split_small;
                    lib.threads = threads;
                    lib.isa = isa;
                    Ok(KernelCode::Lib(lib))
                }
                Kernel::Head(h) => Ok(KernelCode::Head(HeadKernel::new(f, h, &plan))),
                Kernel::Fused {
                    prologue,
                    inst,
                    epilogue,
                } => {
                    let mut lib = lib(*inst);
                    lib.split_small = opts.split_small;
                    lib.threads = threads;
                    lib.isa = isa;
                    let parts = lib.fused_parts().ok_or_else(|| {
                        CompileError::Codegen("a fused kernel without parts".into())
                    })?;
                    // The loop's outer range over the elements `ranges` of its iteration space.
                    let part_loop =
                        |l: &LoopKernel,
                         ranges: &Option<Vec<(usize, usize)>>,
                         (func, outer): (LoopFn, u64)| {
                            // A band's ranges are of its last axis, already.
                            let ranges = if l.band { &parts.columns } else { ranges };
                            let ranges = ranges.as_ref().expect("fusion checked the parts");
                            let per = if l.band {
                                1
                            } else {
                                (l.shape.iter().product::<usize>() as u64 / outer.max(1)).max(1)
                            };
                            let r = |(lo, hi): (usize, usize)| (lo as u64 / per, hi as u64 / per);
                            PartLoop {
                                f: body(l, func, outer),
                                ranges: ranges.iter().map(|&p| r(p)).collect(),
                                sums: sums_of(l),
                            }
                        };
                    // (Loops compiled in schedule order: a prologue's function comes first.)
                    let mut next = || fns.next().expect("one function per loop");
                    let prologue = prologue
                        .as_ref()
                        .map(|l| part_loop(l, &parts.input, next()));
                    let epilogue = match epilogue {
                        // The pool gradient, its mask and bias gradient in one vector pass.
                        Some(e) if isa.is_some() && prologue.is_none() && plain(e) => {
                            let scratch = (lib.scratch, lib.scratch_part);
                            if let (Some(routine), Some(isa)) =
                                (MaskedGrad::recognise(f, *inst, e, &plan, scratch), isa)
                            {
                                next();
                                return Ok(KernelCode::MaskedPoolGrad {
                                    routine,
                                    isa,
                                    parts: lib.part_count(),
                                    macs: lib.macs(),
                                });
                            }
                            Some(e)
                        }
                        e => e.as_ref(),
                    };
                    // A direct convolution adds its bias and rectifies as it stores.
                    let epilogue = match epilogue {
                        Some(e) if isa.is_some() && plain(e) => {
                            match epilogue::bias_relu_epilogue(f, *inst, e, &plan) {
                                Some((bias, out)) => {
                                    next();
                                    lib.bias_relu = Some(bias);
                                    lib.out.0 = out;
                                    None
                                }
                                None => Some(e),
                            }
                        }
                        e => e,
                    };
                    // Also `tanh(y + b)` (and the other functions the loops apply along rows),
                    // each sample's planes while in cache: the bias added as the positions
                    // kernel stores, after the others' product.
                    let epilogue = match epilogue {
                        Some(e) if isa.is_some() && plain(e) => {
                            match epilogue::bias_function_epilogue(f, *inst, e, &plan) {
                                Some(a) => {
                                    next();
                                    // `t` where it is read, else `s·t` in its place.
                                    lib.out.0 = a.t.or(a.scaled).expect("one is stored");
                                    lib.then = Some(a);
                                    None
                                }
                                None => Some(e),
                            }
                        }
                        e => e,
                    };
                    // On gemm_conv, the channels kernel and winograd, also a residual branch's sum
                    // before the ReLU.
                    let epilogue = match epilogue {
                        Some(e)
                            if isa.is_some()
                                && plain(e)
                                && matches!(
                                    lib.conv_kernels().as_slice(),
                                    [ConvKernel::Gemm
                                        | ConvKernel::Direct(Lanes::Channels)
                                        | ConvKernel::Winograd]
                                ) =>
                        {
                            match epilogue::residual_relu_epilogue(f, *inst, e, &plan) {
                                Some(r) => {
                                    next();
                                    lib.bias_relu = Some(r.bias);
                                    lib.residual = Some(r.skip);
                                    lib.out.0 = r.out;
                                    None
                                }
                                None => Some(e),
                            }
                        }
                        e => e,
                    };
                    let epilogue = epilogue.map(|l| part_loop(l, &parts.output, next()));
                    Ok(KernelCode::Fused {
                        lib,
                        prologue,
                        epilogue,
                    })
                }
            })
            .collect::<Result<_, CompileError>>()?;
        sums_before_parameter_writes(f, &schedule, &plan)?;
        // A size the machine cannot hold is an error, not an abort.
        let arena = Arena::zeroed(total).ok_or_else(|| {
            CompileError::TooLarge(format!(
                "cannot allocate the step's arena of {} MiB (a smaller batch?)",
                total >> 20
            ))
        })?;
        let last_sum = kernels
            .iter()
            .rposition(|k| matches!(k, KernelCode::Collective { .. }));
        let mut program = Program {
            last_sum,
            func: f.clone(),
            schedule,
            plan,
            size,
            arena,
            kernels,
            pool,
            gemm_growths_kept: None,
            partial: Partial {
                at: partial,
                part: partial_part,
            },
            _module: module,
            clif,
            along_rows,
            compile_seconds: 0.0,
        };
        program.fill_constants();
        program.compile_seconds = start.elapsed().as_secs_f64();
        Ok(program)
    }

    fn fill_constants(&mut self) {
        let f = self.func.clone();
        for inst in &f.insts {
            let v = inst.result;
            let values: Vec<f32> = match (&inst.op, self.schedule.storage[v.index()]) {
                (Op::Const { value }, Storage::Splat) => vec![*value as f32; f.ty(v).numel()],
                (Op::ConstData { data }, _) => data.iter().map(|&x| x as f32).collect(),
                _ => continue,
            };
            let off = self.plan.at(v);
            self.f32_at(off, values.len()).copy_from_slice(&values);
        }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // No kernel runs while the slice lives: they run only inside `run`, which also borrows
        // `self` mutably.
        self.arena.bytes_mut()
    }

    fn f32_at(&mut self, off: usize, n: usize) -> &mut [f32] {
        let bytes = &mut self.bytes()[off..off + 4 * n];
        // SAFETY: offsets are multiples of 64 and the arena base is 64-byte aligned, so the
        // pointer is aligned for f32; every bit pattern is a valid f32; the view replaces the
        // `&mut` byte slice it is made from (bounds checked by its indexing, which may panic
        // before any view exists).
        unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut f32, n) }
    }

    /// Total arena bytes: parameters, constants, intermediates and scratch.
    pub fn arena_bytes(&self) -> usize {
        self.arena.len()
    }

    /// Bytes of the persistent region (parameters and constants).
    pub fn persistent_bytes(&self) -> usize {
        self.plan.persistent
    }

    /// The arena's parts.
    pub fn arena_size(&self) -> ArenaSize {
        self.size
    }

    /// Runs every kernel once, as one process: each `allreduce_sum` is a copy.
    pub fn run(&mut self) {
        let _ = self.run_summing(&mut |send, recv, _| {
            recv.copy_from_slice(send);
            ControlFlow::Continue(())
        });
    }

    /// Runs every kernel once, as one process of a data-parallel job: `sum(send, recv,
    /// last)` does each `allreduce_sum`, writing into `recv` the sum of `send` over the job's
    /// processes (MPI's allreduce), on the calling thread, in the function's order; `last`
    /// for the last of them. If it breaks, the run stops there: no parameter has been
    /// written yet (checked when compiled), so the step is as if not started, its data and
    /// sums aside.
    pub fn run_summing(&mut self, sum: &mut Summing<'_>) -> ControlFlow<()> {
        let base = Base(self.arena.as_mut_ptr());
        for (i, k) in self.kernels.iter().enumerate() {
            match *k {
                KernelCode::Collective { send, recv, len } => {
                    // SAFETY: both ranges are inside the arena (the plan's layout), f32-aligned
                    // and disjoint (checked when compiled), and no kernel runs meanwhile: the
                    // previous one returned, its parts joined.
                    let (send, recv) = unsafe {
                        (
                            std::slice::from_raw_parts(base.get().add(send) as *const f32, len),
                            std::slice::from_raw_parts_mut(base.get().add(recv) as *mut f32, len),
                        )
                    };
                    sum(send, recv, Some(i) == self.last_sum)?;
                }
                _ => run_kernel(k, base, &self.pool, self.partial),
            }
        }
        self.keep_gemm_buffers();
        ControlFlow::Continue(())
    }

    /// The lengths of the function's sums over the job, in the order a run does them.
    pub fn sum_lengths(&self) -> Vec<usize> {
        self.kernels
            .iter()
            .filter_map(|k| match *k {
                KernelCode::Collective { len, .. } => Some(len),
                _ => None,
            })
            .collect()
    }

    /// Runs every kernel once as [`Program::run`] does, adding each kernel's time to `times`
    /// (one entry per kernel).
    pub fn run_timed(&mut self, times: &mut [Duration]) {
        let base = Base(self.arena.as_mut_ptr());
        for (k, t) in self.kernels.iter().zip(times.iter_mut()) {
            let start = Instant::now();
            run_kernel(k, base, &self.pool, self.partial);
            *t += start.elapsed();
        }
        self.keep_gemm_buffers();
    }

    /// After the first run, and after any run in which a GEMM (of this program or another)
    /// needed a larger packing buffer than any before it (the first to take a dense path),
    /// grows every thread's kept buffers to the largest needed: which thread runs which part
    /// of a kernel varies from run to run, and the next runs must not allocate.
    fn keep_gemm_buffers(&mut self) {
        let growths = gemm_common::gemm::kept_buffer_growths();
        if self.gemm_growths_kept != Some(growths) {
            self.pool.on_all(gemm_common::gemm::reserve_kept_buffers);
            self.gemm_growths_kept = Some(growths);
        }
    }

    /// How many times a contraction took the sparse path (skipped the data's zeros).
    pub fn sparse_runs(&self) -> usize {
        self.kernels
            .iter()
            .map(|k| match k {
                KernelCode::Lib(l) | KernelCode::Fused { lib: l, .. } => {
                    l.sparse_runs.load(std::sync::atomic::Ordering::Relaxed)
                }
                _ => 0,
            })
            .sum()
    }

    pub fn kernel_count(&self) -> usize {
        self.kernels.len()
    }

    /// A one-line label for kernel `k`.
    pub fn kernel_label(&self, k: usize) -> String {
        let ops = |l: &LoopKernel| {
            let names: Vec<&str> = l
                .insts
                .iter()
                .map(|&i| self.func.insts[i].op.name())
                .collect();
            names.join(" ")
        };
        let lib = |inst: usize| {
            let i = &self.func.insts[inst];
            format!("{} -> {}", i.op.name(), self.func.ty(i.result))
        };
        // Where a loop runs as a recognised update rather than its Cranelift function.
        let routine = |f: &Body| match f {
            Body::RmsProp(_, isa) => format!(" [rmsprop on {}]", isa.name()),
            Body::Vector(_, isa) => format!(" [vector loop on {}]", isa.name()),
            Body::Jit(_) => String::new(),
        };
        let lib_note = |lib: &LibKernel| {
            let kernels: Vec<String> = lib.conv_kernels().iter().map(|k| k.name()).collect();
            let mut note = if kernels.is_empty() {
                String::new()
            } else {
                format!(" [{}]", kernels.join(", then "))
            };
            if lib.bias_relu.is_some() || lib.then.is_some() {
                let family = match lib.conv_kernels().as_slice() {
                    [ConvKernel::Direct(_)] => "direct",
                    [ConvKernel::Winograd] => "winograd",
                    _ => "convolution",
                };
                let what = match (lib.residual, lib.then) {
                    (Some(_), _) => "bias, residual sum and relu".to_string(),
                    (None, Some(then)) => format!("bias and {}", then.f.name()),
                    (None, None) => "bias and relu".to_string(),
                };
                note.push_str(&format!(" [{what} in the {family} kernel]"));
            } else if lib.sparse_runs.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                // (Decided per call: only said of kernels that did.)
                note.push_str(" [skips the data's zeros]");
            }
            note
        };
        let note = match &self.kernels[k] {
            KernelCode::Loop { f, .. } => routine(f),
            KernelCode::MaskedPoolGrad { isa, .. } => format!(" [one pass on {}]", isa.name()),
            KernelCode::Lib(lib) => lib_note(lib),
            KernelCode::Head(_) | KernelCode::Collective { .. } => String::new(),
            KernelCode::Fused { lib, epilogue, .. } => {
                lib_note(lib) + &epilogue.as_ref().map_or(String::new(), |l| routine(&l.f))
            }
        };
        let label = match &self.schedule.kernels[k] {
            Kernel::Loop(l) => format!("loop {:?}: {}", l.shape, ops(l)),
            Kernel::Op { inst } => lib(*inst),
            Kernel::Head(h) => {
                let names: Vec<&str> = h
                    .insts()
                    .iter()
                    .map(|&i| self.func.insts[i].op.name())
                    .collect();
                format!("head: {}", names.join(" "))
            }
            Kernel::Fused {
                prologue,
                inst,
                epilogue,
            } => {
                let mut label = String::new();
                if let Some(l) = prologue {
                    label.push_str(&format!("({}) → ", ops(l)));
                }
                label.push_str(&lib(*inst));
                if let Some(l) = epilogue {
                    label.push_str(&format!(" → ({})", ops(l)));
                }
                label
            }
        };
        let rows = match &self.along_rows[k] {
            (functions, Some(isa)) if !functions.is_empty() => {
                let names: Vec<&str> = functions.iter().map(|f| f.name()).collect();
                format!(" [{} along rows on {}]", names.join(", "), isa.name())
            }
            _ => String::new(),
        };
        label + &note + &rows
    }

    /// Multiply-adds of kernel `k` (contractions only).
    pub fn kernel_macs(&self, k: usize) -> usize {
        match &self.kernels[k] {
            KernelCode::Lib(l) | KernelCode::Fused { lib: l, .. } => l.macs(),
            KernelCode::MaskedPoolGrad { macs, .. } => *macs,
            KernelCode::Loop { .. } | KernelCode::Head(_) | KernelCode::Collective { .. } => 0,
        }
    }

    /// For a contraction or convolution `k`: the `M × N × K` of a plain product with its
    /// multiply-adds, and how many parts it runs in (as `run_kernel` splits it), for
    /// `nnc bench`'s reference GEMM.
    pub fn kernel_product(&self, k: usize) -> Option<([usize; 3], usize)> {
        match &self.kernels[k] {
            KernelCode::Lib(l) | KernelCode::Fused { lib: l, .. } => {
                let parts = l.part_count();
                l.gemm_shape().map(|s| (s, parts))
            }
            _ => None,
        }
    }

    /// The kernel schedule with buffers and arena offsets, for `nnc ir --stage kernels`.
    pub fn describe(&self) -> String {
        let f = &self.func;
        let name = |v: nnc_ir::ValueId| match f.name_of(v) {
            Some(n) => format!("%{n}"),
            None => format!("%{}", v.0),
        };
        let at = |v: nnc_ir::ValueId| {
            // Scaled bytes (perhaps reshaped) name their parameter: no buffer of their own.
            let mut r = v;
            let scaled = loop {
                match self.schedule.storage[r.index()] {
                    Storage::View(of) => r = of,
                    Storage::Scaled(of) => break Some(of),
                    _ => break None,
                }
            };
            if let (Some(o), Storage::Window(of)) = (
                self.plan.offset[v.index()],
                self.schedule.storage[v.index()],
            ) {
                return format!("{}@{o} (a window of {})", name(v), name(of));
            }
            match (self.plan.offset[v.index()], scaled) {
                (Some(o), Some(p)) => format!("{}@{o} (the bytes of {}, scaled)", name(v), name(p)),
                (Some(o), None) => format!("{}@{o}", name(v)),
                (None, _) => name(v),
            }
        };
        let a = self.arena_size();
        let mut out = format!(
            "arena {} bytes = {} persistent (parameters, state, inputs, constants) + {} \
             intermediates + {} scratch (kernel workspace, partial sums)\n",
            a.total(),
            a.persistent,
            a.intermediates,
            a.scratch
        );
        let list =
            |vs: &[nnc_ir::ValueId]| vs.iter().map(|&v| at(v)).collect::<Vec<_>>().join(", ");
        let lp = |l: &LoopKernel, indent: &str| {
            let ops: Vec<&str> = l.insts.iter().map(|&i| f.insts[i].op.name()).collect();
            format!(
                "loop {:?}{}, {} fused: {}\n{indent}  reads  {}\n{indent}  writes {}\n",
                l.shape,
                if l.band {
                    " (each part its columns)"
                } else {
                    ""
                },
                ops.len(),
                ops.join(" "),
                list(&l.inputs),
                list(&l.outputs),
            )
        };
        let op = |inst: usize, indent: &str| {
            let i = &f.insts[inst];
            format!(
                "{} {}\n{indent}  writes {}\n",
                i.op.name(),
                list(&i.args),
                at(i.result)
            )
        };
        // A convolution's kernel family and the cost model's estimates.
        let choice = |k: usize, indent: &str| match &self.kernels[k] {
            KernelCode::Lib(lib) | KernelCode::Fused { lib, .. } => lib
                .conv_choice()
                .map_or(String::new(), |c| format!("{indent}  on {c}\n")),
            _ => String::new(),
        };
        for (k, kernel) in self.schedule.kernels.iter().enumerate() {
            out.push_str(&format!("kernel {k}: "));
            match kernel {
                Kernel::Loop(l) => out.push_str(&lp(l, "")),
                Kernel::Op { inst } => {
                    out.push_str(&op(*inst, ""));
                    out.push_str(&choice(k, ""));
                }
                Kernel::Head(h) => {
                    let insts = h.insts();
                    let ops: Vec<&str> = insts.iter().map(|&i| f.insts[i].op.name()).collect();
                    out.push_str(&format!(
                        "head, {} fused in one pass over the logits: {}\n  reads  {}\n  writes {}\n",
                        insts.len(),
                        ops.join(" "),
                        list(&h.reads(f)),
                        list(&h.writes(f)),
                    ));
                }
                Kernel::Fused {
                    prologue,
                    inst,
                    epilogue,
                } => {
                    let (parts, could) = match &self.kernels[k] {
                        KernelCode::Fused { lib, .. } => (lib.part_count(), lib.work_parts()),
                        KernelCode::MaskedPoolGrad { parts, .. } => (*parts, *parts),
                        _ => (1, 1),
                    };
                    out.push_str(&match (parts, could) {
                        (1, 0 | 1) => "too small to split, one thread running\n".to_string(),
                        (1, _) => "one part (one thread), one thread running\n".to_string(),
                        _ => format!("split in {parts} parts, each thread running\n"),
                    });
                    if let Some(l) = prologue {
                        out.push_str(&format!("  prologue {}", lp(l, "  ")));
                    }
                    out.push_str(&format!("  {}", op(*inst, "  ")));
                    out.push_str(&choice(k, "  "));
                    if let Some(l) = epilogue {
                        out.push_str(&format!("  epilogue {}", lp(l, "  ")));
                    }
                }
            }
        }
        out
    }

    fn param_range(&self, i: usize, dtype: DType) -> Result<(usize, usize), String> {
        let p = *self
            .func
            .params
            .get(i)
            .ok_or_else(|| format!("no parameter {i}"))?;
        let ty = self.func.ty(p);
        if ty.dtype != dtype {
            return Err(format!("parameter {i} is {ty}, not {}", dtype.name()));
        }
        Ok((self.plan.at(p), ty.numel()))
    }

    /// Parameter `i` (f32), read-only.
    pub fn read_f32_param(&self, i: usize) -> Result<&[f32], String> {
        let (off, n) = self.param_range(i, DType::F32)?;
        // `off + 4n` is within the arena (the plan's layout, and the indexing checks it).
        let bytes = &self.arena.bytes()[off..off + 4 * n];
        // SAFETY: the offset is 64-byte aligned and so is the arena's base, so the f32 view is
        // aligned; it borrows `&self`, so nothing writes the arena while it lives.
        Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const f32, n) })
    }

    /// The buffer of parameter `i` (f32), to fill before a run.
    pub fn f32_param(&mut self, i: usize) -> Result<&mut [f32], String> {
        let (off, n) = self.param_range(i, DType::F32)?;
        Ok(self.f32_at(off, n))
    }

    pub fn i32_param(&mut self, i: usize) -> Result<&mut [i32], String> {
        let (off, n) = self.param_range(i, DType::I32)?;
        let bytes = &mut self.bytes()[off..off + 4 * n];
        // SAFETY: aligned as in `f32_at`; every bit pattern is a valid i32.
        Ok(unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut i32, n) })
    }

    pub fn u8_param(&mut self, i: usize) -> Result<&mut [u8], String> {
        let (off, n) = self.param_range(i, DType::U8)?;
        Ok(&mut self.bytes()[off..off + n])
    }

    /// Result `k` as f32 values.
    pub fn result(&mut self, k: usize) -> &[f32] {
        let v = self.func.results[k];
        let off = self.plan.at(kernel::root(&self.schedule, v));
        let n = self.func.ty(v).numel();
        debug_assert_eq!(elem_size(self.func.ty(v).dtype), 4);
        self.f32_at(off, n)
    }

    /// Whether result `k` already sits in the buffer of parameter `i` (an in-place update).
    pub fn result_in_param(&self, k: usize, i: usize) -> bool {
        let r = kernel::root(&self.schedule, self.func.results[k]);
        self.plan.offset[r.index()] == self.plan.offset[self.func.params[i].index()]
    }

    /// Copies result `k` into parameter `i` (both f32, same size) unless it is already there.
    pub fn commit(&mut self, k: usize, i: usize) {
        if self.result_in_param(k, i) {
            return;
        }
        let r = kernel::root(&self.schedule, self.func.results[k]);
        let (from, to) = (self.plan.at(r), self.plan.at(self.func.params[i]));
        let n = self.func.ty(self.func.results[k]).numel() * 4;
        self.bytes().copy_within(from..from + n, to);
    }
}

/// The function that does a step's sums over a data-parallel job ([`Program::run_summing`]):
/// `(send, recv, last)`, breaking to stop the step.
pub type Summing<'a> = dyn FnMut(&[f32], &mut [f32], bool) -> ControlFlow<()> + 'a;

/// A run may stop at any of its sums (the job ended): that leaves the weights and optimizer
/// state as they were only if no kernel before the last sum writes a parameter's buffer.
fn sums_before_parameter_writes(
    f: &Function,
    s: &Schedule,
    plan: &Plan,
) -> Result<(), CompileError> {
    let is_sum =
        |k: &Kernel| matches!(k, Kernel::Op { inst } if f.insts[*inst].op == Op::AllReduceSum);
    let Some(last) = s.kernels.iter().rposition(is_sum) else {
        return Ok(());
    };
    // Parameters (and constants) have the persistent region to themselves: a write there is
    // a result placed in its parameter's buffer.
    for k in &s.kernels[..last] {
        let writes = match k {
            Kernel::Head(h) => h.writes(f),
            k => kernel::writes(f, k),
        };
        if let Some(v) = writes.iter().find(|&&v| {
            plan.offset[kernel::root(s, v).index()].is_some_and(|o| o < plan.persistent)
        }) {
            return Err(CompileError::Codegen(format!(
                "%{} is written over a parameter before the step's last sum",
                v.0
            )));
        }
    }
    Ok(())
}

/// Where the partial sums of split kernels go: part `p` ≥ 1 accumulates its sums from byte
/// `at + (p − 1) · part` of the arena, part 0 in their buffers.
#[derive(Clone, Copy)]
struct Partial {
    at: usize,
    part: usize,
}

impl Partial {
    /// The `partial` argument of a loop run as part `p`: 0 (its buffers) for part 0.
    fn of(self, p: usize) -> u64 {
        match p {
            0 => 0,
            _ => (self.at + (p - 1) * self.part) as u64,
        }
    }
}

fn run_kernel(k: &KernelCode, base: Base, pool: &Pool, partial: Partial) {
    match k {
        // SAFETY (all arms): the kernel was generated for this arena's plan: every address it
        // forms is inside the arena; parts of a split kernel touch disjoint elements (part
        // p ≥ 1 of a split loop accumulates its sums in its own copy of the partial region),
        // and a library part makes references only to its own elements (see
        // `LibKernel::run_part`). A panic in any part reaches this thread only after every
        // part stopped (`Pool::run`), so no kernel is still writing the arena when the panic
        // leaves `Program::run`; the arena then holds partial results, which is safe (plain
        // floats) if not meaningful.
        KernelCode::Loop {
            f,
            outer,
            parts,
            sums,
        } if *parts > 1 => {
            let n = *parts as u64;
            pool.run(*parts, |p| {
                let (lo, hi) = (outer * p as u64 / n, outer * (p as u64 + 1) / n);
                let at = if sums.is_empty() { 0 } else { partial.of(p) };
                unsafe { f.call(base.get(), lo, hi, at) }
            });
            add_partial_sums(base, partial, *parts, sums);
        }
        KernelCode::Loop { f, outer, .. } => unsafe { f.call(base.get(), 0, *outer, 0) },
        KernelCode::Lib(l) => match l.part_count() {
            1 => unsafe { l.run(base.get()) },
            parts => {
                pool.run(parts, |p| unsafe { l.run_part(base.get(), p, parts) });
                unsafe { l.finish(base.get(), parts) };
            }
        },
        KernelCode::Head(h) => unsafe { h.run(base.get()) },
        // A sum over one process (the ranges are disjoint: checked when compiled).
        &KernelCode::Collective { send, recv, len } => unsafe {
            std::ptr::copy_nonoverlapping(base.get().add(send), base.get().add(recv), 4 * len)
        },
        KernelCode::Fused {
            lib,
            prologue,
            epilogue,
        } => {
            // A part: its rows of the first operand, its part of the routine, then the rows of
            // the result it wrote. Later parts' sums go to their partial regions. A routine
            // too small to split is one part, on this thread, its loops whole.
            let parts = lib.part_count();
            pool.run(parts, |p| {
                if let Some(l) = prologue {
                    let (lo, hi) = l.ranges[p];
                    unsafe { l.f.call(base.get(), lo, hi, 0) };
                }
                unsafe { lib.run_part(base.get(), p, parts) };
                if let Some(l) = epilogue {
                    let (lo, hi) = l.ranges[p];
                    let sums = if l.sums.is_empty() { 0 } else { partial.of(p) };
                    unsafe { l.f.call(base.get(), lo, hi, sums) };
                }
            });
            unsafe { lib.finish(base.get(), parts) };
            if let Some(l) = epilogue {
                add_partial_sums(base, partial, parts, &l.sums);
            }
        }
        KernelCode::MaskedPoolGrad {
            routine: r,
            isa,
            parts,
            ..
        } => {
            pool.run(*parts, |p| unsafe {
                r.run_part(*isa, base.get(), p, *parts, partial.of(p) as usize)
            });
            add_partial_sums(base, partial, *parts, &[(r.sums, r.shape[1])]);
        }
    }
}

/// Adds the sums of parts 1, 2, … of a split kernel (each part's in its copy of the partial
/// region, one sum after another) to their buffers, in that order: the bits depend only on
/// the number of parts.
fn add_partial_sums(base: Base, partial: Partial, parts: usize, sums: &[(usize, usize)]) {
    for p in 1..parts {
        let mut rel = partial.of(p) as usize;
        for &(off, n) in sums {
            // SAFETY: the sum's buffer and part p's partial copy are disjoint arena ranges of
            // `n` f32s, aligned by the plan; this runs on the calling thread after `Pool::run`
            // returned, so every part has stopped and nothing else references either range.
            unsafe {
                let total = std::slice::from_raw_parts_mut(base.get().add(off) as *mut f32, n);
                let part = std::slice::from_raw_parts(base.get().add(rel) as *const f32, n);
                total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
            }
            rel += n * 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use nnc_ir::{Binary, Inst, Type, ValueId};

    use super::*;

    /// `a·b` for `a: f32[4,3]`, `b: f32[3,5]`, typed by the shape rule.
    fn matmul() -> Function {
        let mut f = Function::new("matmul");
        let a = f.add_param("a", Type::f32([4, 3]));
        let b = f.add_param("b", Type::f32([3, 5]));
        let y = f
            .push(
                Op::MatMul {
                    ta: false,
                    tb: false,
                },
                vec![a, b],
            )
            .expect("well-typed");
        f.results.push(y);
        f
    }

    fn ill_formed(f: &Function) -> Vec<VerifyError> {
        match Program::compile(f, Options::default()) {
            Err(CompileError::IllFormed(errors)) => {
                assert!(!errors.is_empty());
                // The size query refuses it too.
                assert!(matches!(
                    ArenaSize::of(f, Options::default()),
                    Err(CompileError::IllFormed(_))
                ));
                errors
            }
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("an ill-formed function compiled"),
        }
    }

    #[test]
    fn a_well_formed_function_compiles() {
        // The control: the cases below are refused for being ill-formed, not for anything else.
        let p = Program::compile(&matmul(), Options::default());
        assert!(p.is_ok(), "{:?}", p.err());
    }

    #[test]
    fn a_matmul_declaring_the_wrong_result_type_is_refused() {
        let mut f = matmul();
        // Declared far larger than `a·b`: the generated code would write out of bounds.
        let y = f.insts[0].result;
        f.types[y.index()] = Type::f32([40, 50]);
        let errors = ill_formed(&f);
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("declared f32[40,50]")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_use_before_its_definition_is_refused() {
        let mut f = matmul();
        let y = f.insts[0].result;
        // `z = y + y` placed before the matmul that defines `y`.
        let z = f.push_typed(Op::Binary(Binary::Add), vec![y, y], Type::f32([4, 5]));
        let add = f.insts.pop().expect("pushed");
        f.insts.insert(0, add);
        f.results = vec![z];
        let errors = ill_formed(&f);
        assert!(
            errors.iter().any(|e| e.message.contains("used before")),
            "{errors:?}"
        );
    }

    #[test]
    fn an_operand_out_of_range_is_refused() {
        let mut f = matmul();
        f.insts.push(Inst {
            result: ValueId(f.types.len() as u32),
            op: Op::Binary(Binary::Add),
            args: vec![ValueId(1000), ValueId(1000)],
        });
        ill_formed(&f);
        let e = Program::compile(&f, Options::default())
            .err()
            .expect("refused");
        // A typed error, also readable as text.
        assert!(String::from(e).contains("not well-formed"));
    }
}
