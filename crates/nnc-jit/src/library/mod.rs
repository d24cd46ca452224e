//! Library kernels: the ops that are not fused loops, each a routine of [`nnc_kernels`] chosen
//! and specialised at compile time (every shape, offset and flag is fixed in the kernel value),
//! run on the arena's slices, whole or in parts over the threads. Contractions call gemm's
//! micro-kernels (AVX-512 or AVX2); convolutions (`conv.rs`) run on a direct kernel
//! ([`nnc_kernels::direct`], [`nnc_kernels::channels`], [`nnc_kernels::samples`]: positions,
//! output channels or samples in the lanes), Winograd's, the phases of a stride, or im2col +
//! GEMM ([`nnc_kernels::gemm_conv`], any kernel, stride and padding), whichever
//! [`crate::conv_cost`] estimates fastest for the convolution's shape. `scratch.rs` sizes the
//! scratch space a part of each kernel needs.
//! Each routine computes exactly what the reference interpreter computes (same tie-breaking,
//! same stable formulas), so the two can be compared element by element.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use nnc_ir::{DType, Function, Inst, Op};
use nnc_kernels::copy::MAX_RANK;
use nnc_kernels::{Isa, copy, loss, reduce};

use crate::plan::Plan;
use crate::{conv_fold, image_data};

mod conv;
mod matmul;
mod pooling;
mod scratch;

pub use conv::ConvKernel;
use conv::WideOp;
pub use scratch::scratch_bytes;

/// A library kernel with its operands' byte offsets resolved.
#[derive(Clone, Debug)]
pub struct LibKernel {
    pub op: Op,
    /// Byte offsets of the operands and their shapes.
    pub args: Vec<(usize, Vec<usize>, DType)>,
    pub out: (usize, Vec<usize>, DType),
    /// Byte offset of this kernel's scratch space (im2col columns, the direct kernels'
    /// buffers), one per part.
    pub scratch: usize,
    /// Bytes of scratch per part.
    pub scratch_part: usize,
    /// Byte offset of the partial filter gradients of parts 1, 2, … (`conv2d_grad_filter`),
    /// one after another.
    pub extra: usize,
    /// Split whenever the leading extent allows it, however small the work.
    pub split_small: bool,
    /// The most parts it splits into: the program's threads.
    pub threads: usize,
    /// The vector unit of the hand-vectorised kernels (direct convolutions, vector pooling,
    /// sparse products), or none: the portable ones.
    pub isa: Option<Isa>,
    /// A stride-1 unpadded convolution on the direct kernels that adds this bias (byte
    /// offset of `[O]` floats) and applies ReLU as it stores: its `add`/`relu` epilogue,
    /// recognised by [`crate::epilogue::bias_relu_epilogue`], is not run.
    pub bias_relu: Option<usize>,
    /// A forward convolution that applies this activation after its bias (`tanh(y + b)`,
    /// [`crate::epilogue::bias_function_epilogue`]): the output's offset is `t`'s where it is
    /// read (`scale·t` then at its own), else `scale·t`'s. The positions-in-lanes kernel adds the bias as it
    /// stores; the other families' planes take it after their product, part by part.
    pub then: Option<crate::epilogue::Activation>,
    /// With `bias_relu`, on [`gemm_conv`] or the channels kernel: the byte offset of a residual branch added
    /// before the ReLU (`relu((y + b) + skip)`, [`crate::epilogue::residual_relu_epilogue`]);
    /// the result's own offset when the sum reuses the branch's buffer.
    pub residual: Option<usize>,
    /// A contraction whose first operand is image data: it skips the data's zeros when
    /// they are most of it ([`sparse`]).
    pub sparse: bool,
    /// A contraction whose first operand is the u8 images times this scale, read from the
    /// bytes (the operand's offset is the parameter's; [`image_data::read_as_bytes`]): the sparse
    /// path scales as it gathers, the GEMM reads floats converted into the scratch.
    pub u8_scale: Option<f32>,
    /// How many times the sparse path ran (tests and `nnc bench` read it).
    pub sparse_runs: Arc<AtomicUsize>,
    /// A convolution's low rows and columns of padding beyond its op's, from a folded `pad`
    /// of its input or `slice` of its input gradient ([`conv_fold`]).
    pub conv_pad: [usize; 2],
    /// A `pad` or `slice` is folded into this convolution: only [`gemm_conv`] reads and writes
    /// the unpadded buffers, whatever the cost model would pick for a part's samples (which
    /// depend on the thread count, while the fold is decided at two threads).
    pub folded: bool,
    /// Per operand of a `concat`: written in its place in the result by its loop (a window
    /// of the result, [`crate::window::write_in_place`]), so not copied.
    pub placed: Vec<bool>,
    /// Floats from one sample to the next of a convolution's input that is such a window
    /// (its samples apart in the concat's result): it runs on positions in the lanes, which
    /// read samples apart ([`direct::Conv::samples_apart`]).
    pub input_apart: Option<usize>,
    /// Floats from one sample to the next of a pooling's result that is such a window: it
    /// writes each sample's planes in place.
    pub output_apart: Option<usize>,
}

/// How the parts of a library kernel divide their operand and result: flat element ranges,
/// one per part, so that a fused loop can run on exactly the part its thread reads or wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parts {
    /// The range of the first operand each part reads, if it reads nothing else of it.
    pub input: Option<Vec<(usize, usize)>>,
    /// The range of the result each part writes, if the parts partition it.
    pub output: Option<Vec<(usize, usize)>>,
    /// The columns of the result each part writes, for a contraction split by columns.
    pub columns: Option<Vec<(usize, usize)>>,
}

/// A contraction `op(A)·B` with `A` image data and `B` not transposed (see [`sparse`]).
fn sparse_candidate(f: &Function, inst: &Inst) -> bool {
    matches!(inst.op, Op::MatMul { tb: false, .. }) && image_data::from_u8_data(f, inst.args[0])
}

impl LibKernel {
    pub fn new(
        f: &Function,
        inst: &Inst,
        plan: &Plan,
        scratch: usize,
        scratch_part: usize,
        extra: usize,
    ) -> LibKernel {
        let mut k = LibKernel::unfolded(f, inst);
        k.args
            .iter_mut()
            .zip(&inst.args)
            .for_each(|(a, &v)| a.0 = plan.at(v));
        k.out.0 = plan.at(inst.result);
        // A value with strides of its own is a window of another (a concat's operand).
        let apart = |v: nnc_ir::ValueId| plan.strides[v.index()].as_ref().map(|s| s[0]);
        match inst.op {
            Op::Concat { .. } => {
                k.placed = inst.args.iter().map(|&v| apart(v).is_some()).collect();
            }
            Op::Conv2d { .. } | Op::Conv2dGradFilter { .. } => k.input_apart = apart(inst.args[0]),
            Op::MaxPool { .. } | Op::SumPool { .. } => k.output_apart = apart(inst.result),
            _ => {}
        }
        k.scratch = scratch;
        k.scratch_part = scratch_part;
        k.extra = extra;
        k.with_folds(f, inst)
    }

    /// The kernel of `inst` with every offset zero: enough to ask how it would split.
    pub fn shapes_only(f: &Function, inst: &Inst) -> LibKernel {
        LibKernel::unfolded(f, inst).with_folds(f, inst)
    }

    /// [`LibKernel::shapes_only`] as if no `pad` or `slice` were folded into it (what the
    /// folds are decided on: [`conv_fold`]).
    pub fn unfolded(f: &Function, inst: &Inst) -> LibKernel {
        let at = |v: nnc_ir::ValueId| (0, f.ty(v).shape.clone(), f.ty(v).dtype);
        LibKernel {
            op: inst.op.clone(),
            args: inst.args.iter().map(|&a| at(a)).collect(),
            out: at(inst.result),
            scratch: 0,
            scratch_part: 0,
            extra: 0,
            split_small: false,
            threads: 2,
            isa: Isa::best(),
            bias_relu: None,
            then: None,
            residual: None,
            sparse: sparse_candidate(f, inst),
            u8_scale: image_data::bytes_scale(f, inst.args[0]),
            sparse_runs: Arc::default(),
            conv_pad: [0, 0],
            folded: false,
            placed: vec![false; inst.args.len()],
            input_apart: None,
            output_apart: None,
        }
    }

    /// A convolution that reads a folded `pad` reads its operand (whose buffer the pad's
    /// result shares) with the pad's low rows and columns as padding; an input gradient
    /// cropped by a folded `slice` writes the slice's shape, its start as padding.
    fn with_folds(mut self, f: &Function, inst: &Inst) -> LibKernel {
        let Some(i) = f.insts.iter().position(|j| j.result == inst.result) else {
            return self;
        };
        if let Some((x, low)) = conv_fold::input_fold(f, i, LibKernel::unfolded_pads_inside) {
            self.args[0].1 = f.ty(x).shape.clone();
            self.conv_pad = low;
            self.folded = true;
        }
        if let Some((cropped, start)) =
            conv_fold::output_fold(f, i, LibKernel::unfolded_crops_inside)
        {
            self.out.1 = f.ty(cropped).shape.clone();
            self.conv_pad = start;
            self.folded = true;
        }
        self
    }

    /// How the parts divide the first operand and the result, if the kernel splits so
    /// that they do (a contraction only when it splits by rows: when its result is at least as
    /// tall as it is wide; the other way, both parts would read, or pack, the whole of B).
    pub fn parts(&self) -> Option<Parts> {
        if !self.splittable() {
            return None;
        }
        let n = |s: &[usize]| s.iter().product::<usize>();
        // Part `p` of a leading extent `len`, `unit` elements each (as `run_part` splits).
        let parts = self.part_count();
        let halves = |len: usize, unit: usize| {
            let at = |p: usize| len * p / parts * unit;
            (0..parts).map(|p| (at(p), at(p + 1))).collect::<Vec<_>>()
        };
        let (x, y) = (&self.args[0].1, &self.out.1);
        let per = |s: &[usize]| n(&s[1..]);
        Some(match &self.op {
            Op::MatMul { ta, .. } => {
                let (m, nn) = (y[0], y[1]);
                if !self.splits_rows() {
                    return Some(Parts {
                        input: None,
                        output: None,
                        columns: Some(halves(nn, 1)),
                    });
                }
                Parts {
                    input: (!*ta).then(|| halves(m, x[1])),
                    output: Some(halves(m, nn)),
                    columns: None,
                }
            }
            Op::Conv2d { .. } | Op::Conv2dGradInput { .. } => Parts {
                input: Some(halves(x[0], per(x))),
                output: Some(halves(x[0], per(y))),
                columns: None,
            },
            Op::Conv2dGradFilter { .. } => Parts {
                input: Some(halves(x[0], per(x))),
                output: None,
                columns: None,
            },
            Op::MaxPool { .. }
            | Op::SumPool { .. }
            | Op::MaxPoolGrad { .. }
            | Op::SumPoolGrad { .. } => {
                let (lead, h, w) = planes(x);
                let (_, oh, ow) = planes(y);
                Parts {
                    input: Some(halves(lead, h * w)),
                    output: Some(halves(lead, oh * ow)),
                    columns: None,
                }
            }
            Op::Pad { .. } | Op::Concat { .. } => Parts {
                input: Some(halves(x[0], per(x))),
                output: Some(halves(x[0], per(y))),
                columns: None,
            },
            _ => return None,
        })
    }

    /// How a fused kernel's loops divide: as [`LibKernel::parts`] when the kernel splits, or
    /// when it runs whole on one thread, everything in one part (its loops then run whole,
    /// before and after it, on that thread).
    pub fn fused_parts(&self) -> Option<Parts> {
        if self.splittable() {
            return self.parts();
        }
        let n = |s: &[usize]| s.iter().product::<usize>();
        let whole = |len: usize| vec![(0, len)];
        Some(Parts {
            input: Some(whole(n(&self.args.first()?.1))),
            output: Some(whole(n(&self.out.1))),
            columns: None,
        })
    }

    fn splittable_op(&self) -> bool {
        matches!(
            self.op,
            Op::MatMul { .. }
                | Op::Conv2d { .. }
                | Op::Conv2dGradInput { .. }
                | Op::Conv2dGradFilter { .. }
                | Op::MaxPool { .. }
                | Op::SumPool { .. }
                | Op::MaxPoolGrad { .. }
                | Op::SumPoolGrad { .. }
                | Op::Pad { .. }
                | Op::Concat { .. }
        )
    }

    /// Whether a split contraction halves the rows of its result rather than its columns: when
    /// the result is at least as tall as it is wide, or when op(B) is small and the halves
    /// still have 64 rows. (Each part packs the whole of op(B) when rows are split, so a wide
    /// result with a big B splits columns; and gemm's tiles run poorly on fewer rows:
    /// measured on LeNet-5's 32-row contractions, a row split was 1.5–2× slower.)
    fn splits_rows(&self) -> bool {
        let Op::MatMul { tb, .. } = self.op else {
            return false;
        };
        let (m, nn) = (self.out.1[0], self.out.1[1]);
        let b = &self.args[1].1;
        let k = if tb { b[1] } else { b[0] };
        m >= nn || (k * nn <= 1 << 16 && m >= 128)
    }

    /// Whether the kernel runs as more than one part.
    pub fn splittable(&self) -> bool {
        self.part_count() > 1
    }

    /// How many parts the kernel runs as: the program's threads, fewer where the work would
    /// not pay for them (or the split extent is shorter).
    pub fn part_count(&self) -> usize {
        self.work_parts().min(self.threads).max(1)
    }

    /// How many parts the kernel's work and split extent (rows or columns, samples, planes)
    /// allow, whatever the threads: with [`LibKernel::split_small`] as many as the extent,
    /// else one per 2¹⁷ multiply-adds of a contraction, 2¹⁸ of a convolution, 2¹¹ outputs of
    /// a pooling, 2¹³ of a padding (two parts at exactly the sizes that split in two before
    /// the runtime had more threads). Below two, the kernel runs whole.
    pub fn work_parts(&self) -> usize {
        let n = |s: &[usize]| s.iter().product::<usize>();
        let lead = match &self.op {
            Op::MatMul { .. } if self.splits_rows() => self.out.1[0],
            Op::MatMul { .. } => self.out.1[1],
            Op::Conv2d { .. } | Op::Conv2dGradInput { .. } | Op::Conv2dGradFilter { .. } => {
                self.args[0].1[0]
            }
            Op::Pad { pads } if pads[..2] != [0, 0] => 1,
            Op::Pad { .. } => self.args[0].1[0],
            Op::Concat { axis: 0 } => 1,
            Op::Concat { .. } => self.args[0].1[0],
            _ if self.splittable_op() => planes(&self.args[0].1).0,
            _ => 1,
        };
        if self.split_small {
            return lead;
        }
        let work = match &self.op {
            Op::MatMul { .. } => self.macs() >> 17,
            Op::Conv2d { .. } | Op::Conv2dGradInput { .. } | Op::Conv2dGradFilter { .. } => {
                self.macs() >> 18
            }
            Op::MaxPool { .. }
            | Op::SumPool { .. }
            | Op::MaxPoolGrad { .. }
            | Op::SumPoolGrad { .. } => n(&self.out.1) >> 11,
            Op::Pad { .. } | Op::Concat { .. } => n(&self.out.1) >> 13,
            _ => 1,
        };
        lead.min(work)
    }

    /// Runs the whole kernel.
    ///
    /// # Safety
    /// As [`LibKernel::run_part`].
    pub unsafe fn run(&self, base: *mut u8) {
        // SAFETY: forwarded.
        unsafe {
            self.run_part(base, 0, 1);
            self.finish(base, 1);
        }
    }

    /// Where part `part` (≥ 1) of a split `conv2d_grad_filter` sums its partial gradient.
    fn extra_at(&self, part: usize) -> usize {
        let bytes = self.out.1.iter().product::<usize>() * 4;
        self.extra + (part - 1) * bytes.div_ceil(crate::plan::ALIGN) * crate::plan::ALIGN
    }

    /// After every part of a split `conv2d_grad_filter`, adds the partial sums of parts 1, 2,
    /// … to the first's, in that order (so the bits depend only on the number of parts).
    ///
    /// # Safety
    /// As [`LibKernel::run_part`], after every part has stopped.
    pub unsafe fn finish(&self, base: *mut u8, parts: usize) {
        if parts > 1 && matches!(self.op, Op::Conv2dGradFilter { .. }) {
            let n = self.out.1.iter().product::<usize>();
            // SAFETY: `extra_at(p)` holds part p's partial gradient of the output's size, in
            // scratch space disjoint from the output and from the other parts' (the program
            // reserves `threads − 1` such regions); every part has stopped, so nothing else
            // references them.
            unsafe {
                let out = std::slice::from_raw_parts_mut(base.add(self.out.0) as *mut f32, n);
                for p in 1..parts {
                    let extra =
                        std::slice::from_raw_parts(base.add(self.extra_at(p)) as *const f32, n);
                    out.iter_mut().zip(extra).for_each(|(o, e)| *o += e);
                }
            }
        }
    }

    /// Runs part `part` of `parts` (1 to [`LibKernel::part_count`]) of the kernel on the arena
    /// at `base`: a range of rows, columns, samples or planes.
    ///
    /// Each part makes references only to what it alone writes (its range of the output, its
    /// scratch) and to what no one writes while it runs; where the parts interleave (a
    /// contraction split by columns) it writes through raw pointers, never through a
    /// reference spanning the other part's elements. Of the first operand, which a fused
    /// prologue on the other thread may be writing, a split part views only its own range.
    ///
    /// # Safety
    /// `base` must point to an arena laid out by the plan this kernel was built with: every
    /// offset plus its tensor's size lies inside it, operands are initialised, and the output
    /// and scratch buffers overlap no operand (the plan never aliases an op's output with its
    /// inputs). While the part runs, no one else reads or writes its range of the output or
    /// its scratch, and no one writes the operands, except the other parts of the same kernel
    /// (whose ranges are disjoint from this one's) and their fused prologues, each writing
    /// only its part's range of the first operand.
    pub unsafe fn run_part(&self, base: *mut u8, part: usize, parts: usize) {
        let n = |s: &[usize]| s.iter().product::<usize>();
        let range = |len: usize| (len * part / parts, len * (part + 1) / parts);
        let scratch = self.scratch + part * self.scratch_part;
        // SAFETY (for the two helpers): see the function's contract; offsets are 64-byte
        // aligned, so f32/i32 views are aligned too. They view whole operands, which no one
        // writes while this part runs: used only for operands past the first, or for the
        // first by kernels that never run with a prologue on the other thread (not split,
        // or split by columns). Creating a slice cannot panic.
        let f32s = |k: usize| unsafe {
            let (o, s, _) = &self.args[k];
            std::slice::from_raw_parts(base.add(*o) as *const f32, n(s))
        };
        let i32s = |k: usize| unsafe {
            let (o, s, _) = &self.args[k];
            std::slice::from_raw_parts(base.add(*o) as *const i32, n(s))
        };
        // SAFETY (each call): the first operand is an f32 tensor at its aligned offset, and
        // `lo..hi` is within it and this part's range of it (its rows, samples or planes, as
        // `range` divides them: the other part's range is disjoint), which no one writes while
        // this part runs (a fused prologue writes this range before, on this thread). An
        // input whose samples lie apart in a concat's result (`input_apart`) spans what lies
        // between this part's samples too: other operands' places, which only this part's own
        // epilogue may write, on this thread after the routine returned.
        let first = |lo: usize, hi: usize| unsafe { floats(base, self.args[0].0, lo, hi) };
        // The output, only through this part's range (a contraction: raw pointers, see
        // `matmul_part`).
        // SAFETY (each call): the output is an f32 tensor at its aligned offset, `lo..hi` is
        // within it and this part's range of it (the other part's is disjoint, as `range`
        // divides them; a kernel not split is one part with the whole; a pooling into a
        // concat's result, `output_apart`, makes one per sample in its range, each that
        // sample's planes of its window, which no other kernel writes), and each arm makes
        // one such slice at a time. Nothing else references the output while the part runs: the plan
        // never aliases it with an operand or scratch, and a fused epilogue on the other
        // thread touches only that part's range. Creating a slice cannot panic.
        let out_part = |lo: usize, hi: usize| unsafe { floats_mut(base, self.out.0, lo, hi) };
        // The later parts of a split filter gradient sum into their `extra` regions, added
        // to the output by `finish`.
        let filter_target = || {
            if part == 0 {
                out_part(0, n(&self.out.1))
            } else {
                // SAFETY: `extra_at(part)` holds the output's size in floats of scratch, used
                // by this part alone (and read by `finish` after every part), disjoint from
                // the output, every operand and the other parts' regions.
                unsafe { floats_mut(base, self.extra_at(part), 0, n(&self.out.1)) }
            }
        };
        let shape = |k: usize| &self.args[k].1;
        let oshape = &self.out.1;
        if part > 0 && !self.splittable_op() {
            return;
        }
        match &self.op {
            // SAFETY: forwarded.
            Op::MatMul { ta, tb } => unsafe {
                self.matmul_part(base, scratch, (part, parts), *ta, *tb)
            },
            Op::Conv2d { .. } => {
                let (lo, hi) = range(shape(0)[0]);
                let ys = n(&oshape[1..]);
                let (x, y) = (
                    self.input_samples(first, lo, hi),
                    out_part(lo * ys, hi * ys),
                );
                // SAFETY: operands past the first and this part's scratch as the plan laid
                // them out; the part's samples of the input and the output passed as slices.
                unsafe { self.convolution(base, scratch, lo, hi, WideOp::Forward, x, y) };
            }
            Op::Conv2dGradFilter { .. } => {
                let (lo, hi) = range(shape(0)[0]);
                let dw = filter_target();
                // SAFETY: as above.
                unsafe {
                    self.convolution(
                        base,
                        scratch,
                        lo,
                        hi,
                        WideOp::Filter,
                        self.input_samples(first, lo, hi),
                        dw,
                    )
                };
            }
            Op::Conv2dGradInput { .. } => {
                let (lo, hi) = range(shape(0)[0]);
                let (dys, dxs) = (n(&shape(0)[1..]), n(&oshape[1..]));
                let (dy, dx) = (first(lo * dys, hi * dys), out_part(lo * dxs, hi * dxs));
                // SAFETY: as above.
                unsafe { self.convolution(base, scratch, lo, hi, WideOp::Input, dy, dx) };
            }
            Op::MaxPool { size, stride }
            | Op::SumPool { size, stride }
            | Op::MaxPoolGrad { size, stride }
            | Op::SumPoolGrad { size, stride, .. } => {
                // SAFETY: forwarded.
                unsafe { self.pool_part(base, scratch, (part, parts), *size, *stride) }
            }
            Op::ReduceSum { axes } | Op::ReduceMax { axes } => {
                reduce::reduce(
                    f32s(0),
                    out_part(0, n(oshape)),
                    shape(0),
                    axes,
                    matches!(self.op, Op::ReduceMax { .. }),
                );
            }
            Op::ArgMax { axis } => {
                // SAFETY: the output is an i32 tensor of `oshape`, written by this kernel
                // alone (not split: one part), and referenced nowhere else while it runs.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(base.add(self.out.0) as *mut i32, n(oshape))
                };
                reduce::argmax(f32s(0), shape(0), *axis, out);
            }
            Op::OneHot { classes } => {
                loss::one_hot(i32s(0), *classes, out_part(0, n(oshape)));
            }
            Op::Softmax => {
                let k = *shape(0).last().unwrap_or(&1);
                loss::softmax(f32s(0), k, out_part(0, n(oshape)));
            }
            Op::CrossEntropy => {
                out_part(0, 1)[0] = loss::cross_entropy(f32s(0), i32s(1), shape(0)[1]);
            }
            Op::SoftmaxXent => {
                out_part(0, 1)[0] = loss::softmax_xent(f32s(0), i32s(1), shape(0)[1]);
            }
            Op::SoftmaxXentGrad => {
                let (k, seed) = (shape(0)[1], f32s(2)[0]);
                loss::softmax_xent_grad(f32s(0), i32s(1), k, seed, out_part(0, n(oshape)));
            }
            Op::Pad { pads } => {
                // Split over samples when they are not padded themselves: a part's rows of
                // the input and of the result are then the same; otherwise one part does all
                // (the result has more rows than the input).
                let lead = shape(0)[0];
                let (lo, hi, out_rows) = if pads[..2] == [0, 0] {
                    let (lo, hi) = range(lead);
                    (lo, hi, (lo, hi))
                } else if part == 0 {
                    (0, lead, (0, oshape[0]))
                } else {
                    return;
                };
                let (xp, yp) = (n(&shape(0)[1..]), n(&oshape[1..]));
                // The part's shapes and the low pads, on the stack (a kernel allocates
                // nothing).
                let r = oshape.len();
                let sub = |s: &[usize], rows: usize| {
                    let mut d = [0; MAX_RANK];
                    d[..r].copy_from_slice(s);
                    d[0] = rows;
                    d
                };
                let mut low = [0; MAX_RANK];
                for (l, &p) in low.iter_mut().zip(pads.iter().step_by(2)) {
                    *l = p;
                }
                let out = out_part(out_rows.0 * yp, out_rows.1 * yp);
                copy::pad(
                    self.isa,
                    first(lo * xp, hi * xp),
                    &sub(shape(0), hi - lo)[..r],
                    out,
                    &sub(oshape, out_rows.1 - out_rows.0)[..r],
                    &low[..r],
                );
            }
            Op::Concat { axis } => {
                // Split over samples (when it is not along them): each operand's rows of the
                // part's samples into their columns of the result's rows.
                // Along samples, one part runs it all as one "sample".
                let (lo, hi) = if *axis > 0 {
                    range(oshape[0])
                } else if part == 0 {
                    (0, 1)
                } else {
                    return;
                };
                let stride = n(&oshape[*axis..]);
                let per = |s: &[usize]| if *axis > 0 { n(&s[1..]) } else { n(s) };
                let out = out_part(lo * per(oshape), hi * per(oshape));
                let mut at = 0;
                for k in 0..self.args.len() {
                    let row = n(&shape(k)[*axis..]);
                    if self.placed[k] {
                        at += row;
                        continue;
                    }
                    let (a, b) = (lo * per(shape(k)), hi * per(shape(k)));
                    let x = if k == 0 { first(a, b) } else { &f32s(k)[a..b] };
                    copy::place(self.isa, x, row, out, stride, at);
                    at += row;
                }
            }
            Op::Slice { start, .. } => {
                let out = out_part(0, n(oshape));
                copy::slice(self.isa, f32s(0), shape(0), out, oshape, start)
            }
            Op::Transpose { perm } => {
                copy::transpose(f32s(0), shape(0), perm, out_part(0, n(oshape)), oshape);
            }
            Op::RandomUniform { stream, first, .. } => {
                let key = i32s(0)[0];
                for (i, y) in out_part(0, n(oshape)).iter_mut().enumerate() {
                    *y = nnc_ir::interp::random_uniform(key, *stream, first + i as u64);
                }
            }
            other => unreachable!("`{}` has no library kernel", other.name()),
        }
    }

    /// The `M × N × K` of a plain product with this kernel's multiply-adds, for timing
    /// reports: a contraction's own; a convolution's as im2col + GEMM would multiply (the
    /// forward product `O × B·P × C·kh·kw`, the input gradient `C·kh·kw × B·P × O`, the
    /// filter gradient `O × C·kh·kw × B·P`, with `P` the output positions of a sample).
    pub fn gemm_shape(&self) -> Option<[usize; 3]> {
        let n = |s: &[usize]| s.iter().product::<usize>();
        Some(match &self.op {
            Op::MatMul { ta, .. } => {
                let a = &self.args[0].1;
                let k = if *ta { a[0] } else { a[1] };
                [self.out.1[0], self.out.1[1], k]
            }
            Op::Conv2d { .. } => {
                let (y, w) = (&self.out.1, &self.args[1].1);
                [w[0], y[0] * y[2] * y[3], n(&w[1..])]
            }
            Op::Conv2dGradInput { .. } => {
                let (dy, w) = (&self.args[0].1, &self.args[1].1);
                [n(&w[1..]), dy[0] * dy[2] * dy[3], w[0]]
            }
            Op::Conv2dGradFilter { .. } => {
                let (dy, dw) = (&self.args[1].1, &self.out.1);
                [dw[0], n(&dw[1..]), dy[0] * dy[2] * dy[3]]
            }
            _ => return None,
        })
    }

    /// Multiply-adds, for timing reports.
    pub fn macs(&self) -> usize {
        let n = |s: &[usize]| s.iter().product::<usize>();
        match &self.op {
            Op::MatMul { ta, .. } => {
                let a = &self.args[0].1;
                n(&self.out.1) * if *ta { a[0] } else { a[1] }
            }
            Op::Conv2d { .. } => n(&self.out.1) * n(&self.args[1].1[1..]),
            Op::Conv2dGradInput { .. } => n(&self.args[0].1) * n(&self.args[1].1[1..]),
            Op::Conv2dGradFilter { .. } => n(&self.args[1].1) * n(&self.out.1[1..]),
            _ => 0,
        }
    }
}

/// Elements `lo..hi` of the f32 tensor at byte offset `at` of the arena at `base`.
///
/// # Safety
/// The tensor holds at least `hi ≥ lo` floats at `at`, 4-byte aligned, and no one writes
/// these elements while the slice is live.
unsafe fn floats<'a>(base: *mut u8, at: usize, lo: usize, hi: usize) -> &'a [f32] {
    // SAFETY: forwarded.
    unsafe { std::slice::from_raw_parts((base.add(at) as *const f32).add(lo), hi - lo) }
}

/// Elements `lo..hi` of the f32 tensor at byte offset `at` of the arena at `base`, to write.
///
/// # Safety
/// The tensor holds at least `hi ≥ lo` floats at `at`, 4-byte aligned, and no other
/// reference to these elements (on any thread) is used while the slice is live.
unsafe fn floats_mut<'a>(base: *mut u8, at: usize, lo: usize, hi: usize) -> &'a mut [f32] {
    // SAFETY: forwarded.
    unsafe { std::slice::from_raw_parts_mut((base.add(at) as *mut f32).add(lo), hi - lo) }
}

fn dims4(s: &[usize]) -> [usize; 4] {
    [s[0], s[1], s[2], s[3]]
}

fn planes(s: &[usize]) -> (usize, usize, usize) {
    let r = s.len();
    (s[..r - 2].iter().product(), s[r - 2], s[r - 1])
}
