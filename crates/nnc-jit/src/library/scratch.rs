//! The scratch space each library kernel's part needs.

use nnc_ir::{Function, Inst, Op};
use nnc_kernels::{channels, direct, gemm_conv, pool, samples, sparse};

use super::conv::{WideOp, direct_padding, padded_floats, stride_of, winograd_floats};
use super::{LibKernel, planes, sparse_candidate};
use crate::image_data;

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
                        let strided = stride_of(&inst.op) != [1, 1];
                        strided || samples::suits(n) || samples::suits(n.saturating_sub(1))
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
