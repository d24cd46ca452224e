//! Library kernels: the ops that are not fused loops, each a routine of [`nnc_kernels`] chosen
//! and specialised at compile time (every shape, offset and flag is fixed in the kernel value),
//! run on the arena's slices, whole or in parts over the threads. Contractions call gemm's
//! micro-kernels (AVX-512 or AVX2); convolutions run on a direct kernel ([`direct`],
//! [`channels`], [`samples`]: positions, output channels or samples in the lanes) or on
//! im2col + GEMM ([`gemm_conv`], any kernel, stride and padding), whichever [`conv_cost`]
//! estimates faster for the convolution's shape.
//! Each routine computes exactly what the reference interpreter computes (same tie-breaking,
//! same stable formulas), so the two can be compared element by element.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nnc_ir::{DType, Function, Inst, Op};
use nnc_kernels::copy::MAX_RANK;
use nnc_kernels::matmul::matmul;
use nnc_kernels::phases::{self, Phases};
use nnc_kernels::store::{Skip, Store};
use nnc_kernels::winograd::{self, Filters, Winograd};
use nnc_kernels::{Isa, channels, copy, direct, gemm_conv, loss, pool, reduce, samples, sparse};

use crate::conv_cost::{self, Lanes};
use crate::plan::Plan;
use crate::{conv_fold, image_data};

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

/// Scratch bytes a part of a kernel needs: a convolution's the most of what its kernel
/// families need (whichever the cost model picks) for `part_samples` samples (the most a part
/// has: the buffers that grow with the samples are a part's, so the scratch of all parts
/// together stays about the whole batch's, whatever the threads), a sparse contraction's its
/// gather.
pub fn scratch_bytes(f: &Function, inst: &Inst, part_samples: usize) -> usize {
    // `gemm_conv`'s chunk buffers.
    let gemm = |x: &[usize], w: &[usize], y: &[usize]| {
        let g = gemm_conv::Geometry {
            c: w[1],
            h: x[2],
            w: x[3],
            o: w[0],
            kh: w[2],
            kw: w[3],
            stride: [1, 1],
            pad: [0, 0],
            oh: y[2],
            ow: y[3],
        };
        4 * g.scratch_floats(part_samples.min(x[0]))
    };
    // The direct kernels' buffers (see `direct_conv`): after the input planes padded by the
    // op's padding, or the input gradient's padded planes.
    let [ph, pw] = direct_padding(&inst.op);
    let direct = |x: &[usize], w: &[usize], op: WideOp| {
        let n = part_samples.min(x[0]);
        let (hp, wp) = (x[2] + 2 * ph, x[3] + 2 * pw);
        let g =
            direct::Conv::forward_strided(x[1], [hp, wp], w[0], [w[2], w[3]], stride_of(&inst.op));
        let t = g.input_gradient();
        // The filter gradient may read shifted copies of the input, and on AVX2 the forward
        // product too (reserved whatever the CPU, so that plans do not depend on it).
        let (s, copies) = g.filter_layout();
        let padded = padded_floats(n * x[1], [hp, wp], [ph, pw]);
        // Channels in the lanes where that kernel suits, else positions in the lanes; both
        // with one input channel, where the cost model chooses between them.
        let channels = channels::suits(&g);
        let positions = g.fits() && (!channels || x[1] == 1);
        // Positions in the lanes read the part's padded planes; the channels kernels pad a
        // chunk of samples at a time themselves (a folded `pad` too, whose result's
        // shape is what `x` is here).
        let positions_arm = |floats: usize| if positions { 4 * (padded + floats) } else { 0 };
        let channels_arm = |floats: usize| {
            if channels {
                4 * (channels::padded_floats(&g, n) + floats)
            } else {
                0
            }
        };
        match op {
            WideOp::Forward => positions_arm(g.o_pad() * g.taps() + n * copies)
                .max(channels_arm(channels::filter_floats(&g))),
            WideOp::Filter => {
                positions_arm(n * (direct::filter_rows(&s) * s.wide_plane() + copies))
                    .max(channels_arm(channels::scratch_floats(&g)))
            }
            WideOp::Input => 4 * (padded + n * g.o() * t.plane() + t.o_pad() * t.taps()),
        }
    };
    let shape = |k: usize| &f.ty(inst.args[k]).shape;
    let out = &f.ty(inst.result).shape;
    // Winograd's transformed filters and buffers, where it applies.
    let wino = |op: WideOp| {
        LibKernel::shapes_only(f, inst)
            .winograd_geometry(op)
            .map_or(0, |g| 4 * winograd_floats(&g, op))
    };
    match inst.op {
        Op::Conv2d { .. } => gemm(shape(0), shape(1), out)
            .max(direct(shape(0), shape(1), WideOp::Forward))
            .max(wino(WideOp::Forward)),
        Op::Conv2dGradFilter { .. } => gemm(shape(0), out, shape(1))
            .max(direct(shape(0), out, WideOp::Filter))
            .max(wino(WideOp::Filter)),
        Op::Conv2dGradInput { .. } => gemm(out, shape(1), shape(0))
            .max(direct(out, shape(1), WideOp::Input))
            .max(wino(WideOp::Input))
            .max(
                // A group of sixteen samples' planes in lanes, whatever the part's samples:
                // only where a part (of the most samples, or one fewer) fills the lanes.
                LibKernel::shapes_only(f, inst)
                    .samples_geometry()
                    .filter(|_| {
                        let n = part_samples.min(out[0]);
                        samples::suits(n) || samples::suits(n.saturating_sub(1))
                    })
                    .map_or(0, |g| 4 * g.scratch_floats()),
            )
            .max(
                LibKernel::shapes_only(f, inst)
                    .phases()
                    .map_or(0, |p| 4 * p.scratch_floats(part_samples.min(out[0]))),
            ),
        // The gather of the sparse path, for all of op(A)'s rows; when A is read from bytes,
        // or all of A as floats for the GEMM (after the gather gave up).
        Op::MatMul { ta, .. } if sparse_candidate(f, inst) => {
            let a = shape(0);
            let (m, k) = if ta { (a[1], a[0]) } else { (a[0], a[1]) };
            let floats = match image_data::bytes_scale(f, inst.args[0]) {
                Some(_) => 4 * m * k,
                None => 0,
            };
            sparse::scratch_bytes(m, k).max(floats)
        }
        // Sixteen planes transposed (see `pool`).
        Op::MaxPool { size, stride } | Op::SumPool { size, stride } => {
            let (_, h, w) = planes(shape(0));
            4 * pool::scratch_floats(&pool::Window::new([h, w], size, stride), false)
        }
        Op::MaxPoolGrad { size, stride } | Op::SumPoolGrad { size, stride, .. } => {
            let (_, h, w) = planes(if matches!(inst.op, Op::MaxPoolGrad { .. }) {
                shape(0)
            } else {
                out
            });
            4 * pool::scratch_floats(&pool::Window::new([h, w], size, stride), true)
        }
        _ => 0,
    }
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

    /// Whether the convolution `inst` of `f`, with no `pad` or `slice` folded into it, runs on
    /// a kernel that writes a cropped input gradient by the cost model: [`gemm_conv`],
    /// [`samples`], or a strided input gradient's [`phases`]. What a `slice`'s fold is decided on
    /// ([`conv_fold::PadsInside`]).
    pub fn unfolded_crops_inside(f: &Function, inst: &Inst) -> bool {
        LibKernel::unfolded(f, inst).crops_inside()
    }

    /// Whether the convolution `inst` of `f`, with no `pad` folded into it, runs on a kernel
    /// that pads its input itself by the cost model: [`gemm_conv`] (taps outside read zeros)
    /// or the channels kernels (they pad a few samples at a time). What a `pad`'s fold is
    /// decided on.
    pub fn unfolded_pads_inside(f: &Function, inst: &Inst) -> bool {
        let k = LibKernel::unfolded(f, inst);
        k.conv_product().is_some_and(|op| {
            let samples = k.part_samples(op)[0];
            matches!(
                k.conv_estimates(op, samples).best,
                ConvKernel::Gemm | ConvKernel::Direct(Lanes::Channels) | ConvKernel::Winograd
            )
        })
    }

    /// Whether the convolution `inst` of `f` (a forward product or filter gradient), with no
    /// `pad` folded into it, runs on positions in the lanes by the cost model, which read
    /// samples apart: whether its input may be a window of a concat's result
    /// ([`crate::window::ReadsApart`]). (A convolution so placed runs on positions whatever
    /// the threads, like a fold.)
    pub fn unfolded_reads_apart(f: &Function, inst: &Inst) -> bool {
        let k = LibKernel::unfolded(f, inst);
        let Some(op @ (WideOp::Forward | WideOp::Filter)) = k.conv_product() else {
            return false;
        };
        let positions = ConvKernel::Direct(Lanes::Positions);
        k.positions_apply(op)
            && k.part_samples(op)
                .into_iter()
                .all(|n| k.conv_estimates(op, n).best == positions)
    }

    /// Whether this convolution runs on a kernel that writes a cropped input gradient by the
    /// cost model (whatever the CPU: what folds depend on).
    fn crops_inside(&self) -> bool {
        self.conv_product().is_some_and(|op| {
            let samples = self.part_samples(op)[0];
            matches!(
                self.conv_estimates(op, samples).best,
                ConvKernel::Gemm | ConvKernel::Phases | ConvKernel::Direct(Lanes::Samples)
            )
        })
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
        // The output, only through this part's range (or raw pointers from `out_at`).
        let out_at = base.wrapping_add(self.out.0) as *mut f32;
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
            Op::MatMul { ta, tb } => {
                let (a, b) = (shape(0), shape(1));
                let (m, k) = if *ta { (a[1], a[0]) } else { (a[0], a[1]) };
                let nn = if *tb { b[0] } else { b[1] };
                // Row-major A [r, c] read transposed is column-major: swap the strides.
                let (a_cs, a_rs) = if *ta {
                    (a[1] as isize, 1)
                } else {
                    (1, a[1] as isize)
                };
                let (b_cs, b_rs) = if *tb {
                    (b[1] as isize, 1)
                } else {
                    (1, b[1] as isize)
                };
                let (rows, cols) = if self.splits_rows() {
                    (range(m), (0, nn))
                } else {
                    ((0, m), range(nn))
                };
                // The rows of A this part reads: its own when it has rows of op(A) = A (a
                // fused prologue may be writing the other part's), all of Aᵀ's otherwise
                // (then no prologue runs on the other thread: see `parts`).
                let a_rows = if *ta { (0, a[0]) } else { rows };
                let (lo_a, hi_a) = (a_rows.0 * a[1], a_rows.1 * a[1]);
                // The images' bytes, when A is read from them.
                let bytes = self.u8_scale.map(|scale| {
                    // SAFETY: the operand's offset is the u8 parameter's, `ar · ac` bytes, and
                    // `lo_a..hi_a` lies within them; a parameter is not written while a step
                    // runs. Creating a slice cannot panic.
                    let a = unsafe {
                        std::slice::from_raw_parts(base.add(self.args[0].0 + lo_a), hi_a - lo_a)
                    };
                    (a, scale)
                });
                // This part's view of A is rows `a_rows`: its rows count from there.
                let (a_view, view_rows) = if *ta {
                    ([a[0], a[1]], rows)
                } else {
                    ([rows.1 - rows.0, a[1]], (0, rows.1 - rows.0))
                };
                let data = match bytes {
                    Some((a, scale)) => sparse::Data::U8(a, scale),
                    None => sparse::Data::F32(first(lo_a, hi_a)),
                };
                if let (true, Some(isa), false) = (self.sparse, self.isa, *tb) {
                    // SAFETY: this part's scratch holds `scratch_bytes` of the instruction,
                    // the gather's for all rows, and no one else uses it; B holds the rows and
                    // columns addressed, and is not written while the kernel runs; C (the
                    // output) is written only through the raw pointer, in this part's rows
                    // and columns (disjoint from the other part's), so no reference spans the
                    // other part's elements. Creating the scratch slice cannot panic.
                    let done = unsafe {
                        let scratch = std::slice::from_raw_parts_mut(
                            base.add(scratch),
                            sparse::scratch_bytes(m, k),
                        );
                        sparse::product(
                            isa,
                            data,
                            a_view,
                            *ta,
                            view_rows,
                            f32s(1).as_ptr(),
                            nn,
                            out_at.add(rows.0 * nn),
                            nn,
                            cols,
                            scratch,
                        )
                    };
                    if done {
                        self.sparse_runs.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                // From bytes, the GEMM reads A converted into this part's scratch (the
                // gather's, done with).
                let a_floats = match bytes {
                    Some((bytes, scale)) => {
                        // SAFETY: the scratch holds `4 · ar · ac` bytes for this (see
                        // `scratch_bytes`), 4-byte aligned, disjoint from every operand, and
                        // this part's alone; the gather's slice above is no longer used.
                        let floats = unsafe {
                            std::slice::from_raw_parts_mut(
                                base.add(scratch) as *mut f32,
                                bytes.len(),
                            )
                        };
                        for (x, &b) in floats.iter_mut().zip(bytes) {
                            *x = b as f32 * scale;
                        }
                        // Where A's row 0 would be.
                        floats.as_ptr().wrapping_sub(lo_a)
                    }
                    None => first(lo_a, hi_a).as_ptr().wrapping_sub(lo_a),
                };
                // SAFETY: rows and columns of C, op(A) and op(B) in these ranges are inside
                // their matrices (of A, in the rows this part reads, or those converted when
                // it is read from bytes); C is written only through this raw pointer, in this
                // part's rows or columns (the other part's are disjoint), and overlaps neither
                // A nor B. gemm does not unwind into a half-written state we rely on: a panic
                // propagates through `Pool::run` after every part stopped.
                unsafe {
                    matmul(
                        out_at.add(rows.0 * nn + cols.0),
                        nn as isize,
                        a_floats.wrapping_offset(rows.0 as isize * a_rs),
                        a_cs,
                        a_rs,
                        f32s(1).as_ptr().offset(cols.0 as isize * b_cs),
                        b_cs,
                        b_rs,
                        rows.1 - rows.0,
                        cols.1 - cols.0,
                        k,
                        false,
                    );
                }
            }
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
                // Split over the leading planes: each part pools its own images and channels.
                let gradient = matches!(self.op, Op::MaxPoolGrad { .. } | Op::SumPoolGrad { .. });
                let input = if matches!(self.op, Op::SumPoolGrad { .. }) {
                    oshape
                } else {
                    shape(0)
                };
                let (lead, h, w) = planes(input);
                let win = pool::Window::new([h, w], *size, *stride);
                let (lo, hi) = range(lead);
                let (p, q) = (win.plane(), win.pooled());
                let floats = pool::scratch_floats(&win, gradient);
                // SAFETY: the program reserved `scratch_bytes` per part at `scratch` (at least
                // this kernel's `pool::scratch_floats`, 64-byte aligned), after every tensor of
                // the plan, so disjoint from the operands and the output; no other part or
                // thread uses this part's region while it runs. Creating a slice cannot panic.
                let scratch = unsafe {
                    std::slice::from_raw_parts_mut(base.add(scratch) as *mut f32, floats)
                };
                let planes = hi - lo;
                debug_assert!(self.output_apart.is_none() || !gradient);
                match &self.op {
                    Op::MaxPool { .. } | Op::SumPool { .. } => {
                        let max = matches!(self.op, Op::MaxPool { .. });
                        // Into a window: the planes of each sample in the part, in place.
                        let (apart, c) = (self.output_apart, oshape[1]);
                        let mut k = lo;
                        while k < hi {
                            let (end, at) = match apart {
                                Some(apart) => (hi.min((k / c + 1) * c), k / c * apart + k % c * q),
                                None => (hi, k * q),
                            };
                            let y = out_part(at, at + (end - k) * q);
                            let x = first(k * p, end * p);
                            pool::forward(self.isa, max, x, y, end - k, &win, scratch);
                            k = end;
                        }
                    }
                    Op::MaxPoolGrad { .. } => {
                        let (x, dy) = (first(lo * p, hi * p), &f32s(1)[lo * q..hi * q]);
                        let dx = out_part(lo * p, hi * p);
                        pool::max_gradient(self.isa, x, dy, dx, planes, &win, scratch);
                    }
                    _ => {
                        let (dy, dx) = (first(lo * q, hi * q), out_part(lo * p, hi * p));
                        pool::sum_gradient(self.isa, dy, dx, planes, &win, scratch);
                    }
                }
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

/// The kernel family a convolution runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernel {
    /// A direct vector kernel ([`direct`], [`channels`], [`samples`]).
    Direct(Lanes),
    /// im2col + GEMM over chunks of the samples' positions ([`gemm_conv`]).
    Gemm,
    /// Winograd's F(2×2, 3×3) ([`winograd`]).
    Winograd,
    /// A strided input gradient as a stride-1 product per phase of the stride, on the
    /// channels kernel ([`phases`]).
    Phases,
}

impl ConvKernel {
    /// Its name in reports.
    pub fn name(self) -> String {
        match self {
            ConvKernel::Direct(lanes) => format!("{} in lanes", lanes.name()),
            ConvKernel::Gemm => "im2col + gemm".to_string(),
            ConvKernel::Winograd => "winograd F(2x2, 3x3)".to_string(),
            ConvKernel::Phases => "stride phases on channels in lanes".to_string(),
        }
    }
}

/// [`LibKernel::conv_estimates`]: the kernel chosen, and each candidate's estimated seconds.
struct Estimates {
    best: ConvKernel,
    gemm: f64,
    direct: Option<(Lanes, f64)>,
    winograd: Option<f64>,
    phases: Option<f64>,
}

/// Which product a wide convolution computes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WideOp {
    /// y = conv(x, w)
    Forward,
    /// dw = Σ dy ⋆ x
    Filter,
    /// dx = conv_transpose(dy, w)
    Input,
}

impl LibKernel {
    /// A convolution (or one of its gradients) for samples `lo..hi` on the kernel
    /// [`LibKernel::conv_kernel`] picks for a part of that many samples.
    ///
    /// `x` is the first operand's samples `lo..hi`; `out` the part's output: samples `lo..hi`
    /// of the result, or the whole (partial) filter gradient.
    ///
    /// # Safety
    /// As [`LibKernel::run_part`], for operands past the first and this part's scratch.
    #[allow(clippy::too_many_arguments)]
    unsafe fn convolution(
        &self,
        base: *mut u8,
        scratch: usize,
        lo: usize,
        hi: usize,
        op: WideOp,
        x: &[f32],
        out: &mut [f32],
    ) {
        // SAFETY: forwarded.
        unsafe {
            match (self.isa, self.conv_kernel(op, hi - lo)) {
                (Some(isa), ConvKernel::Phases) => {
                    self.phases_conv(isa, base, scratch, hi - lo, x, out)
                }
                (Some(isa), ConvKernel::Direct(Lanes::Samples)) => {
                    self.samples_conv(isa, base, scratch, hi - lo, x, out)
                }
                (Some(isa), ConvKernel::Direct(lanes)) => {
                    self.direct_conv(isa, lanes, base, scratch, (lo, hi), op, x, out)
                }
                (Some(isa), ConvKernel::Winograd) => {
                    self.winograd_conv(isa, base, scratch, (lo, hi), op, x, out)
                }
                _ => self.gemm_conv(base, scratch, (lo, hi), op, x, out),
            }
        }
    }

    /// The convolution's shape for [`gemm_conv`]: the forward product's, whichever product
    /// this kernel computes.
    fn gemm_geometry(&self, op: WideOp) -> gemm_conv::Geometry {
        let [c, h, w, o, kh, kw] = self.conv_geometry(op);
        let (stride, padding) = match &self.op {
            Op::Conv2d { stride, padding }
            | Op::Conv2dGradFilter {
                stride, padding, ..
            }
            | Op::Conv2dGradInput {
                stride, padding, ..
            } => (*stride, *padding),
            other => unreachable!("`{}` is no convolution", other.name()),
        };
        // The output positions: the result's (forward), else the first operand's.
        let y = if op == WideOp::Forward {
            &self.out.1
        } else {
            &self.args[if op == WideOp::Filter { 1 } else { 0 }].1
        };
        gemm_conv::Geometry {
            c,
            h,
            w,
            o,
            kh,
            kw,
            stride,
            pad: [padding[0] + self.conv_pad[0], padding[1] + self.conv_pad[1]],
            oh: y[2],
            ow: y[3],
        }
    }

    /// [`LibKernel::convolution`] on [`gemm_conv`].
    ///
    /// # Safety
    /// As [`LibKernel::run_part`], for operands past the first and this part's scratch,
    /// which holds what `scratch_bytes` reserved for [`gemm_conv`].
    unsafe fn gemm_conv(
        &self,
        base: *mut u8,
        scratch: usize,
        (lo, hi): (usize, usize),
        op: WideOp,
        x: &[f32],
        out: &mut [f32],
    ) {
        // SAFETY: the operands are f32 tensors at their planned offsets; used only for the
        // second, which no one writes while the kernel runs.
        let arg = |k: usize| unsafe { self.f32_arg(base, k) };
        let g = self.gemm_geometry(op);
        let nb = hi - lo;
        // SAFETY: `scratch_bytes` reserved `gemm_conv`'s scratch for the most samples a part
        // of this kernel has (`most_part_samples`, at the part count it runs with), which
        // bounds `nb` (the scratch grows with the samples), at `scratch`, this part's alone.
        self.check_scratch(g.scratch_floats(nb));
        let scratch = unsafe {
            std::slice::from_raw_parts_mut(base.add(scratch) as *mut f32, g.scratch_floats(nb))
        };
        match op {
            WideOp::Forward => {
                // SAFETY: forwarded.
                let store = unsafe { self.forward_store(base, (lo, hi), g.o, g.positions()) };
                gemm_conv::forward(self.isa, &g, nb, x, arg(1), store, out, scratch)
            }
            WideOp::Input => gemm_conv::input_gradient(&g, nb, x, arg(1), out, scratch),
            WideOp::Filter => {
                let dy = &arg(1)[lo * g.o * g.positions()..hi * g.o * g.positions()];
                gemm_conv::filter_gradient(self.isa, &g, nb, x, dy, out, scratch)
            }
        }
    }

    /// Which direct kernel a stride-1 convolution's product `op` could run on for a part of
    /// `samples` samples, by what its vectors' lanes hold; none where it cannot (a stride, a
    /// folded `pad` or `slice`, a filter too wide for [`direct::filter`], planes too large,
    /// or no samples). The op's own padding is a padded copy of the planes. Whatever the CPU
    /// (so that reports do not depend on it): without a vector unit,
    /// [`LibKernel::convolution`] runs [`gemm_conv`] instead.
    fn lanes(&self, op: WideOp, samples: usize) -> Option<Lanes> {
        if self.conv_product().is_none() || samples == 0 {
            return None;
        }
        let g = self.direct_geometry(op);
        // The channels kernels pad the input themselves, with any low and high pads (a folded
        // `pad`'s included), where the padded planes hold it.
        let [c, h, w, ..] = self.conv_geometry(op);
        let (padded, low) = (self.padded_planes(op), self.gemm_geometry(op).pad);
        let within = low[0] + h <= padded[0] && low[1] + w <= padded[1] && c > 0;
        if matches!(op, WideOp::Forward | WideOp::Filter) && channels::suits(&g) && within {
            return Some(Lanes::Channels);
        }
        if op == WideOp::Input && samples::suits(samples) && self.samples_geometry().is_some() {
            return Some(Lanes::Samples);
        }
        self.positions_apply(op).then_some(Lanes::Positions)
    }

    /// Whether [`direct`]'s kernels (positions in the lanes; samples for the input gradient)
    /// take this convolution's product `op`: stride 1 (not the channels kernels' strides),
    /// no folded `pad` or `slice` (they read and write padded planes), a filter gradient's
    /// filter at most [`direct::MAX_FILTER_WIDTH`] wide, planes that fit.
    fn positions_apply(&self, op: WideOp) -> bool {
        if self.folded {
            return false;
        }
        // The filter's width: the result's last axis for the filter gradient.
        let kw = self.out.1.last().copied().unwrap_or(0);
        let filter_too_wide = op == WideOp::Filter && kw > direct::MAX_FILTER_WIDTH;
        let g = self.direct_geometry(op);
        let fits = g.fits() && (op != WideOp::Input || g.input_gradient().fits());
        stride_of(&self.op) == [1, 1] && !filter_too_wide && fits
    }

    /// The kernel a part of `samples` samples of this convolution's product `op` runs on:
    /// the cheaper by [`conv_cost`]'s estimates of the direct kernel (where one applies) and
    /// [`gemm_conv`].
    /// Without a vector unit (or with the portable kernels asked for), [`gemm_conv`].
    fn conv_kernel(&self, op: WideOp, samples: usize) -> ConvKernel {
        match self.isa {
            Some(_) if self.input_apart.is_some() => ConvKernel::Direct(Lanes::Positions),
            Some(_) => self.conv_estimates(op, samples).best,
            None => ConvKernel::Gemm,
        }
    }

    /// [`LibKernel::conv_kernel`] with the candidates' estimated seconds: [`gemm_conv`]'s, the
    /// direct kernel's and [`winograd`]'s, where they apply (nothing allocated: it runs in
    /// every call).
    fn conv_estimates(&self, op: WideOp, samples: usize) -> Estimates {
        let g = self.gemm_geometry(op);
        let product = match op {
            WideOp::Forward => conv_cost::Product::Forward,
            WideOp::Filter => conv_cost::Product::Filter,
            WideOp::Input => conv_cost::Product::Input,
        };
        let gemm = conv_cost::gemm_seconds(&g, product, samples);
        let estimate = |lanes| {
            (
                lanes,
                conv_cost::direct_seconds(&g, product, lanes, samples),
            )
        };
        // The direct kernel that suits best; for one input channel also positions in the
        // lanes (which every plain geometry the others take suits too), where that is
        // estimated cheaper: such a layer has only `kh·kw` products per position and output
        // channel, too few to pay for moving each position's vector of channels between
        // lanes and planes. (With more input channels the estimate of positions in the lanes
        // is too low: LeNet-5's C3 runs faster on channels, `channels::time_c3`.)
        let direct = self.lanes(op, samples).map(|lanes| {
            let suited = estimate(lanes);
            let positions = g.c == 1 && lanes == Lanes::Channels && self.positions_apply(op);
            match positions.then(|| estimate(Lanes::Positions)) {
                Some(positions) if positions.1 < suited.1 => positions,
                _ => suited,
            }
        });
        let winograd = (samples > 0)
            .then(|| self.winograd_geometry(op))
            .flatten()
            .map(|w| conv_cost::winograd_seconds(&w, samples));
        let phases = (samples > 0)
            .then(|| self.phases())
            .flatten()
            .map(|p| conv_cost::phases_seconds(&p, samples));
        let mut best = (ConvKernel::Gemm, gemm);
        if let Some((lanes, t)) = direct
            && t < best.1
        {
            best = (ConvKernel::Direct(lanes), t);
        }
        if let Some(t) = winograd
            && t < best.1
        {
            best = (ConvKernel::Winograd, t);
        }
        if let Some(t) = phases
            && t < best.1
        {
            best = (ConvKernel::Phases, t);
        }
        Estimates {
            best: best.0,
            gemm,
            direct,
            winograd,
            phases,
        }
    }

    /// The geometry of this convolution's product `op` for [`winograd`], where that kernel
    /// takes it: a 3×3 filter at stride 1, padded by at most 2 above and left; the forward
    /// product and the filter gradient (a folded `pad`'s rows included), the input gradient
    /// (nothing folded).
    fn winograd_geometry(&self, op: WideOp) -> Option<Winograd> {
        self.conv_product()?;
        let g = self.gemm_geometry(op);
        if [g.kh, g.kw] != [3, 3] || g.stride != [1, 1] {
            return None;
        }
        match op {
            WideOp::Forward | WideOp::Filter => {
                Winograd::new(g.c, [g.h, g.w], g.o, [g.oh, g.ow], g.pad)
            }
            WideOp::Input if !self.folded => {
                Winograd::input_gradient(g.c, [g.h, g.w], g.o, [g.oh, g.ow], g.pad)
            }
            _ => None,
        }
    }

    /// The geometry of this convolution's input gradient for [`phases`], where it is strided
    /// and that kernel takes it (a folded `slice`'s start as padding included).
    fn phases(&self) -> Option<Phases> {
        if self.conv_product()? != WideOp::Input || stride_of(&self.op) == [1, 1] {
            return None;
        }
        let g = self.gemm_geometry(WideOp::Input);
        Phases::new(
            g.c,
            [g.h, g.w],
            g.o,
            [g.oh, g.ow],
            [g.kh, g.kw],
            g.stride,
            g.pad,
        )
    }

    /// The geometry of this convolution's input gradient for [`samples`] (any stride, a
    /// folded `slice`'s start as padding included).
    fn samples_geometry(&self) -> Option<samples::Geometry> {
        if self.conv_product()? != WideOp::Input {
            return None;
        }
        let g = self.gemm_geometry(WideOp::Input);
        samples::Geometry::new(
            g.c,
            [g.h, g.w],
            g.o,
            [g.oh, g.ow],
            [g.kh, g.kw],
            g.stride,
            g.pad,
        )
    }

    /// A convolution's input for samples `lo..hi` (from `first`, the first operand's floats
    /// in a range): adjacent, or [`LibKernel::input_apart`] apart, from the first sample's
    /// start to the last one's end.
    fn input_samples<'a>(
        &self,
        first: impl Fn(usize, usize) -> &'a [f32],
        lo: usize,
        hi: usize,
    ) -> &'a [f32] {
        let per: usize = self.args[0].1[1..].iter().product();
        match self.input_apart {
            Some(apart) if hi > lo => first(lo * apart, (hi - 1) * apart + per),
            Some(_) => first(0, 0),
            None => first(lo * per, hi * per),
        }
    }

    /// Which product this kernel computes, if a convolution.
    fn conv_product(&self) -> Option<WideOp> {
        Some(match &self.op {
            Op::Conv2d { .. } => WideOp::Forward,
            Op::Conv2dGradFilter { .. } => WideOp::Filter,
            Op::Conv2dGradInput { .. } => WideOp::Input,
            _ => return None,
        })
    }

    /// The samples of each part this convolution runs as (one entry when not split).
    fn part_samples(&self, op: WideOp) -> Vec<usize> {
        // Samples are the first operand's leading axis, the result's for the input gradient.
        let n = if op == WideOp::Input {
            self.out.1[0]
        } else {
            self.args[0].1[0]
        };
        let parts = self.part_count();
        (0..parts)
            .map(|p| n * (p + 1) / parts - n * p / parts)
            .collect()
    }

    /// Panics unless `floats` fit a part's scratch: checked before a kernel forms a slice of
    /// them there, so that a scratch sized wrongly stops the step instead of reaching into
    /// the next part's.
    fn check_scratch(&self, floats: usize) {
        assert!(
            4 * floats <= self.scratch_part,
            "{}: {} bytes of scratch for a part's {} reserved",
            self.op.name(),
            4 * floats,
            self.scratch_part
        );
    }

    /// The most samples a part of this convolution has (its batch over its parts, rounded
    /// up); for other kernels their first operand's leading extent (unused).
    pub fn most_part_samples(&self) -> usize {
        let n = self
            .args
            .first()
            .and_then(|a| a.1.first())
            .copied()
            .unwrap_or(1);
        n.div_ceil(self.part_count())
    }

    /// The kernel this convolution runs on in each part (one entry when the parts agree), for
    /// `nnc bench`'s profile; empty for other kernels.
    pub fn conv_kernels(&self) -> Vec<ConvKernel> {
        let Some(op) = self.conv_product() else {
            return Vec::new();
        };
        let mut kernels: Vec<ConvKernel> = self
            .part_samples(op)
            .into_iter()
            .map(|n| self.conv_kernel(op, n))
            .collect();
        kernels.dedup();
        kernels
    }

    /// For `nnc ir --stage kernels`: the kernel a convolution's first part runs on and the
    /// candidates' estimated times, e.g. `gemm (est. gemm 1.20 ms, positions in lanes 2.31
    /// ms)`; `None` for other kernels.
    pub fn conv_choice(&self) -> Option<String> {
        let op = self.conv_product()?;
        let samples = self.part_samples(op)[0];
        let Estimates {
            best,
            gemm,
            direct,
            winograd,
            phases,
        } = self.conv_estimates(op, samples);
        let mut list = vec![format!("{} {:.3} ms", ConvKernel::Gemm.name(), gemm * 1e3)];
        if let Some((lanes, t)) = direct {
            list.push(format!(
                "{} {:.3} ms",
                ConvKernel::Direct(lanes).name(),
                t * 1e3
            ));
        }
        if let Some(t) = winograd {
            list.push(format!("{} {:.3} ms", ConvKernel::Winograd.name(), t * 1e3));
        }
        if let Some(t) = phases {
            list.push(format!("{} {:.3} ms", ConvKernel::Phases.name(), t * 1e3));
        }
        let (best, why) = match self.isa {
            Some(_) if self.input_apart.is_some() => (
                ConvKernel::Direct(Lanes::Positions),
                "its input in place in a concat; estimated",
            ),
            Some(_) if self.folded => (best, "a pad or slice folded in; estimated"),
            Some(_) => (best, "estimated"),
            None => (ConvKernel::Gemm, "no vector unit; estimated"),
        };
        Some(format!(
            "{} ({why} per part of {samples} samples: {})",
            best.name(),
            list.join(", ")
        ))
    }

    /// Operand `k` as floats.
    ///
    /// # Safety
    /// `base` is the arena this kernel was planned in, operand `k` is an f32 tensor, and the
    /// slice is used only while the kernel runs (no one writes the operand meanwhile).
    unsafe fn f32_arg<'a>(&self, base: *mut u8, k: usize) -> &'a [f32] {
        let (o, s, _) = &self.args[k];
        // SAFETY: the caller's contract; offsets are 64-byte aligned.
        unsafe { std::slice::from_raw_parts(base.add(*o) as *const f32, s.iter().product()) }
    }

    /// `[c, h, w, o, kh, kw]` of the forward convolution behind `op`: the input planes are
    /// the first operand (the result, for the input gradient), the filters the second (the
    /// result, for the filter gradient).
    fn conv_geometry(&self, op: WideOp) -> [usize; 6] {
        let (xs, ws) = match op {
            WideOp::Forward => (&self.args[0].1, &self.args[1].1),
            WideOp::Filter => (&self.args[0].1, &self.out.1),
            WideOp::Input => (&self.out.1, &self.args[1].1),
        };
        let ([_, c, h, w], [o, _, kh, kw]) = (dims4(xs), dims4(ws));
        [c, h, w, o, kh, kw]
    }

    /// [`LibKernel::convolution`] on the direct kernels ([`direct`]).
    ///
    /// # Safety
    /// As [`LibKernel::gemm_conv`]; the scratch space holds what `scratch_bytes` reserved for
    /// the direct kernels, and the CPU supports `isa`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn direct_conv(
        &self,
        isa: Isa,
        lanes: Lanes,
        base: *mut u8,
        scratch: usize,
        (lo, hi): (usize, usize),
        op: WideOp,
        x: &[f32],
        out: &mut [f32],
    ) {
        debug_assert!(
            self.residual.is_none() || (op, lanes) == (WideOp::Forward, Lanes::Channels),
            "a residual sum runs on gemm_conv and the channels kernel only"
        );
        // SAFETY: the operands are f32 tensors at their planned offsets; used only for the
        // second, which no one writes while the kernel runs.
        let arg = |k: usize| unsafe { self.f32_arg(base, k) };
        let [c, h, w, o, ..] = self.conv_geometry(op);
        let g = self.direct_geometry(op);
        let pad = direct_padding(&self.op);
        let (nb, out_sample) = (hi - lo, o * g.oh() * g.ow());
        // The planes padded by the op's padding: the input's, or the input gradient's before
        // it is cropped; first in the scratch, the kernel's buffers after them. The channels
        // kernels pad a few samples at a time there instead (any low and high pads), where
        // they stay in cache.
        let planes = [nb * c, h, w];
        let padded_planes = [nb * c, h + 2 * pad[0], w + 2 * pad[1]];
        let pads_itself = lanes == Lanes::Channels && self.padded_planes(op) != [h, w];
        let floats = match lanes {
            Lanes::Channels if pads_itself => channels::padded_floats(&g, nb),
            Lanes::Channels => 0,
            _ => padded_floats(nb * c, [padded_planes[1], padded_planes[2]], pad),
        };
        // SAFETY: `scratch_bytes` reserved the padded planes (or the channels kernels' space
        // to pad in) and then the direct kernels' buffers for the most samples a part has
        // (`most_part_samples`, which bounds `nb`; both grow with the samples) at `scratch`,
        // in floats from there, this part's alone: the padded planes and each arm's one
        // buffer are disjoint.
        self.check_scratch(floats);
        let padded =
            unsafe { std::slice::from_raw_parts_mut(base.add(scratch) as *mut f32, floats) };
        let (scratch, padded_floats) = (scratch + 4 * floats, floats);
        // SAFETY: as above.
        let buffer = |floats: usize| unsafe {
            self.check_scratch(padded_floats + floats);
            std::slice::from_raw_parts_mut(base.add(scratch) as *mut f32, floats)
        };
        let low = [0, pad[0], pad[1]];
        let mut pad_space = None;
        let (x, out, crop) = match op {
            _ if floats == 0 => (x, out, None),
            WideOp::Forward | WideOp::Filter if lanes == Lanes::Channels => {
                pad_space = Some(padded);
                (x, out, None)
            }
            // Samples in the lanes crop as they store.
            WideOp::Input if lanes == Lanes::Samples => (x, out, None),
            WideOp::Input => (x, &mut padded[..], Some(out)),
            WideOp::Forward | WideOp::Filter => {
                match self.input_apart {
                    None => copy::pad(Some(isa), x, &planes, padded, &padded_planes, &low),
                    // A sample at a time: the input's lie apart.
                    Some(apart) => {
                        let (small, big) = ([c, h, w], [c, padded_planes[1], padded_planes[2]]);
                        let per = big.iter().product::<usize>();
                        for (b, padded) in padded.chunks_exact_mut(per).take(nb).enumerate() {
                            let x = &x[b * apart..][..c * h * w];
                            copy::pad(Some(isa), x, &small, padded, &big, &low);
                        }
                    }
                }
                (&padded[..], out, None)
            }
        };
        // The geometry the input is read with: its samples apart where they are (not
        // copied).
        let gx = match self.input_apart {
            Some(apart) if floats == 0 => g.samples_apart(apart),
            _ => g,
        };
        let input = match pad_space {
            Some(scratch) => channels::Input::Padded {
                x,
                planes: [h, w],
                low: self.gemm_geometry(op).pad,
                scratch,
            },
            None => channels::Input::Planes(x),
        };
        match (op, lanes) {
            (WideOp::Forward, Lanes::Channels) => {
                let wt = buffer(channels::filter_floats(&g));
                channels::transposed_filters(&g, arg(1), wt);
                // SAFETY: forwarded.
                let store = unsafe { self.forward_store(base, (lo, hi), o, g.oh() * g.ow()) };
                channels::forward(isa, &g, nb, input, wt, store, out);
            }
            (WideOp::Forward, _) => {
                // On AVX2, from shifted copies of the input's columns where the filter
                // gradient's layout has them (not C1, whose blank rows the plain layout
                // skips): every lane real, so no masked loads, which cost more there
                // (`time_lenet_shapes`: C3's forward 316 → 255 µs for 16 samples, the copying
                // included, before C3 moved to `channels`). AVX-512's masked loads cost
                // nothing extra: there the copying did not pay.
                let (s, copies) = g.filter_layout();
                let copies = if isa.free_masks() { 0 } else { copies };
                let (pw, xs) =
                    buffer(g.o_pad() * g.taps() + nb * copies).split_at_mut(g.o_pad() * g.taps());
                // Weights padded with zero rows to whole tiles, unless they already are.
                let weights = if o == g.o_pad() {
                    arg(1)
                } else {
                    pw[..o * g.taps()].copy_from_slice(arg(1));
                    pw[o * g.taps()..].fill(0.0);
                    &*pw
                };
                // SAFETY: the bias offset holds `o` floats (checked when it was recognised),
                // an operand no one writes while the kernel runs.
                let bias = self
                    .bias_relu
                    .map(|at| unsafe { std::slice::from_raw_parts(base.add(at) as *const f32, o) });
                if copies > 0 {
                    direct::shift_columns(isa, &gx, nb, x, xs);
                    direct::forward(isa, &s, nb, xs, weights, bias, out);
                } else {
                    direct::forward(isa, &gx, nb, x, weights, bias, out);
                }
            }
            (WideOp::Filter, Lanes::Channels) => {
                let dy = &arg(1)[lo * out_sample..][..nb * out_sample];
                let scratch = buffer(channels::scratch_floats(&g));
                channels::filter(isa, &g, nb, (input, dy), scratch, out);
            }
            (WideOp::Filter, _) => {
                let (s, copies) = g.filter_layout();
                let per = direct::filter_rows(&s) * s.wide_plane();
                let (wide, xs) = buffer(nb * (per + copies)).split_at_mut(nb * per);
                let dy = arg(1);
                for (b, wide) in wide.chunks_exact_mut(per).enumerate() {
                    direct::wide_gradient(&s, &dy[(lo + b) * out_sample..][..out_sample], wide);
                }
                if copies > 0 {
                    direct::shift_columns(isa, &gx, nb, x, xs);
                    direct::filter(isa, &s, nb, xs, wide, out);
                } else {
                    direct::filter(isa, &gx, nb, x, wide, out);
                }
            }
            (WideOp::Input, Lanes::Samples) => unreachable!("run by `samples_conv`"),
            (WideOp::Input, _) => {
                let t = g.input_gradient();
                let per = o * t.plane();
                let (planes, wt) = buffer(nb * per + t.o_pad() * t.taps()).split_at_mut(nb * per);
                direct::flipped_filters(&g, arg(1), wt);
                for (planes, dy) in planes.chunks_exact_mut(per).zip(x.chunks_exact(out_sample)) {
                    direct::gradient_planes(&g, dy, planes);
                }
                direct::forward(isa, &t, nb, planes, wt, None, out);
            }
        }
        if let Some(dx) = crop {
            copy::slice(Some(isa), out, &padded_planes, dx, &planes, &low);
        }
    }

    /// [`LibKernel::convolution`] on [`phases`]: a strided input gradient of `samples` samples,
    /// `dy` their output gradient, `dx` their input gradient.
    ///
    /// # Safety
    /// As [`LibKernel::gemm_conv`]; the scratch space holds what `scratch_bytes` reserved for
    /// [`phases`], and the CPU supports `isa`.
    unsafe fn phases_conv(
        &self,
        isa: Isa,
        base: *mut u8,
        scratch: usize,
        samples: usize,
        dy: &[f32],
        dx: &mut [f32],
    ) {
        let g = self.phases().expect("chosen only where the phases apply");
        // SAFETY: `scratch_bytes` reserved the phases' scratch for the most samples a part has
        // (`most_part_samples`, which bounds `samples`; it grows with them) at `scratch`,
        // this part's alone; the filters are an f32 operand
        // that no one writes while the kernel runs. Creating the slices cannot panic.
        self.check_scratch(g.scratch_floats(samples));
        let (scratch, w) = unsafe {
            let floats = g.scratch_floats(samples);
            let scratch = std::slice::from_raw_parts_mut(base.add(scratch) as *mut f32, floats);
            (scratch, self.f32_arg(base, 1))
        };
        phases::input_gradient(isa, &g, samples, (dy, w), scratch, dx);
    }

    /// [`LibKernel::convolution`] on [`samples`]: an input gradient of `samples` samples, `dy`
    /// their output gradient, `dx` their input gradient.
    ///
    /// # Safety
    /// As [`LibKernel::gemm_conv`]; the scratch space holds what `scratch_bytes` reserved for
    /// [`samples`], and the CPU supports `isa`.
    unsafe fn samples_conv(
        &self,
        isa: Isa,
        base: *mut u8,
        scratch: usize,
        samples: usize,
        dy: &[f32],
        dx: &mut [f32],
    ) {
        let g = self
            .samples_geometry()
            .expect("chosen only where the samples kernel applies");
        // SAFETY: `scratch_bytes` reserved the kernel's scratch (a group of sixteen samples
        // at a time, whatever the part's) at `scratch`, this part's alone; the filters are an
        // f32 operand that no one writes while the kernel runs. Creating the slices cannot
        // panic.
        self.check_scratch(g.scratch_floats());
        let (scratch, w) = unsafe {
            let floats = g.scratch_floats();
            let scratch = std::slice::from_raw_parts_mut(base.add(scratch) as *mut f32, floats);
            (scratch, self.f32_arg(base, 1))
        };
        samples::input_gradient(isa, &g, samples, (dy, w), scratch, dx);
    }

    /// [`LibKernel::convolution`] on [`winograd`]: the forward product, the input gradient
    /// (the forward product of the output gradient with the filters flipped) or the filter
    /// gradient.
    ///
    /// # Safety
    /// As [`LibKernel::gemm_conv`]; the scratch space holds what `scratch_bytes` reserved for
    /// [`winograd`], and the CPU supports `isa`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn winograd_conv(
        &self,
        isa: Isa,
        base: *mut u8,
        scratch: usize,
        (lo, hi): (usize, usize),
        op: WideOp,
        x: &[f32],
        out: &mut [f32],
    ) {
        let g = self
            .winograd_geometry(op)
            .expect("winograd is chosen only where it applies");
        let floats = winograd_floats(&g, op);
        // SAFETY: `scratch_bytes` reserved `floats` for this geometry at `scratch`, this
        // part's alone.
        let buffer =
            unsafe { std::slice::from_raw_parts_mut(base.add(scratch) as *mut f32, floats) };
        // SAFETY: the filters (the output gradient, for the filter gradient) are an f32
        // operand no one writes while the kernel runs.
        let arg = unsafe { self.f32_arg(base, 1) };
        let (layout, store) = match op {
            WideOp::Filter => {
                let per = g.o() * g.positions();
                let dy = &arg[lo * per..hi * per];
                winograd::filter(isa, &g, hi - lo, (x, dy), buffer, out);
                return;
            }
            // SAFETY: forwarded.
            WideOp::Forward => (Filters::Plain, unsafe {
                self.forward_store(base, (lo, hi), g.o(), g.positions())
            }),
            WideOp::Input => (Filters::Flipped, Store::Plain),
        };
        let (u, rest) = buffer.split_at_mut(winograd::filter_floats(&g));
        winograd::transformed_filters(&g, arg, layout, u);
        winograd::forward(isa, &g, hi - lo, (x, u), store, rest, out);
    }

    /// What a forward product of samples `lo..hi` (`o` planes of `positions` each) does as it
    /// stores: its bias and ReLU, and a residual branch's sum, where they were recognised.
    ///
    /// # Safety
    /// As [`LibKernel::run_part`]: `base` is the arena the kernel was planned in.
    unsafe fn forward_store<'a>(
        &self,
        base: *mut u8,
        (lo, hi): (usize, usize),
        o: usize,
        positions: usize,
    ) -> Store<'a> {
        // SAFETY: the bias offset holds `o` floats (checked when it was recognised), an
        // operand no one writes while the kernel runs.
        let bias = self
            .bias_relu
            .map(|at| unsafe { std::slice::from_raw_parts(base.add(at) as *const f32, o) });
        let per = o * positions;
        match (bias, self.residual) {
            (None, _) => Store::Plain,
            (Some(b), None) => Store::BiasRelu(b),
            (Some(b), Some(at)) if at == self.out.0 => Store::BiasResidualRelu(b, Skip::InPlace),
            // SAFETY: the branch is an f32 tensor of the result's shape at its aligned offset
            // (checked when it was recognised), a buffer other than the result's (the plan's
            // buffers are equal or disjoint); this part views only its own samples, which no
            // one writes while it runs (a prologue on this thread wrote them before, if the
            // branch is the first operand). Creating a slice cannot panic.
            (Some(b), Some(at)) => Store::BiasResidualRelu(b, unsafe {
                Skip::Operand(floats(base, at, lo * per, hi * per))
            }),
        }
    }

    /// The direct kernels' geometry of `op`'s forward convolution: over the input planes
    /// padded by the op's padding.
    fn direct_geometry(&self, op: WideOp) -> direct::Conv {
        let [c, _, _, o, kh, kw] = self.conv_geometry(op);
        let planes = self.padded_planes(op);
        direct::Conv::forward_strided(c, planes, o, [kh, kw], stride_of(&self.op))
    }

    /// The rows and columns of `op`'s input planes with their padding (the op's, and a
    /// folded `pad`'s): what its windows cover, `(oh − 1)·sh + kh` down and likewise
    /// across, and the input's rows and columns past the last window, which none reads.
    fn padded_planes(&self, op: WideOp) -> [usize; 2] {
        let g = self.gemm_geometry(op);
        let cover = |n: usize, s: usize, k: usize| n.saturating_sub(1) * s + k;
        [
            cover(g.oh, g.stride[0], g.kh).max(g.pad[0] + g.h),
            cover(g.ow, g.stride[1], g.kw).max(g.pad[1] + g.w),
        ]
    }
}

/// A convolution's stride (rows, columns); `[1, 1]` for other ops.
fn stride_of(op: &Op) -> [usize; 2] {
    match *op {
        Op::Conv2d { stride, .. }
        | Op::Conv2dGradFilter { stride, .. }
        | Op::Conv2dGradInput { stride, .. } => stride,
        _ => [1, 1],
    }
}

/// The zero rows and columns on each side of a convolution's input planes, which a direct
/// kernel reads from a padded copy (the channels kernels pad a few samples at a time); none
/// for other ops and strided input gradients (no direct kernel runs them).
fn direct_padding(op: &Op) -> [usize; 2] {
    match *op {
        Op::Conv2d { padding, .. } | Op::Conv2dGradFilter { padding, .. } => padding,
        Op::Conv2dGradInput {
            stride: [1, 1],
            padding,
            ..
        } => padding,
        _ => [0, 0],
    }
}

/// Floats of [`winograd`]'s scratch for product `op` of `g`: the transformed filters and the
/// forward kernel's buffers, or the filter gradient's.
fn winograd_floats(g: &Winograd, op: WideOp) -> usize {
    match op {
        WideOp::Filter => winograd::filter_scratch_floats(g),
        _ => winograd::filter_floats(g) + winograd::scratch_floats(g),
    }
}

/// Floats of `planes` planes of `padded` rows and columns, a whole number of vectors, where
/// `pad` pads them (else none: the direct kernels read the operand itself).
fn padded_floats(planes: usize, padded: [usize; 2], pad: [usize; 2]) -> usize {
    if pad == [0, 0] {
        0
    } else {
        (planes * padded[0] * padded[1]).next_multiple_of(16)
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
