//! Padding inside the convolutions: lowering pads a convolution's input with a `pad` (the
//! language's uneven `same`, explicit padding with strides) and crops its input gradient
//! with a `slice`. Where the convolution runs on [`nnc_kernels::gemm_conv`], which reads zeros
//! for taps outside its input, neither copy is needed: the `pad`'s result becomes a view of
//! its operand and the convolutions read the operand with the pad's low rows and columns as
//! extra padding; the input gradient writes the `slice`'s result directly (its start as
//! extra padding), and the `slice` becomes a view of it. The channels kernels
//! ([`nnc_kernels::channels`]) pad their input themselves, a few samples at a time, so a
//! `pad` folds into them too.
//!
//! A fold is decided from the function alone (here, for the schedule's storage and for the
//! kernels' geometry alike), and only where the cost model picks such a kernel for every
//! convolution involved on the unfolded shapes (the library kernels' choice, passed in as
//! [`PadsInside`]): the other direct kernels need the padded copy.

use nnc_ir::{DType, Function, Inst, Op, ValueId};

use crate::kernel::used_only_by;

/// Whether a convolution of `f`, unfolded, runs on a kernel that takes the fold (for a
/// `pad`: [`nnc_kernels::gemm_conv`], the channels kernels or Winograd's; for a `slice`:
/// `gemm_conv`, [`nnc_kernels::samples`] or a strided input gradient's
/// [`nnc_kernels::phases`]): the cost model's
/// choice, which the library kernels make (`LibKernel::unfolded_pads_inside`,
/// `LibKernel::unfolded_crops_inside`).
pub type PadsInside = fn(&Function, &Inst) -> bool;

/// The instruction that defines `v`, if any.
fn definition(f: &Function, v: ValueId) -> Option<usize> {
    f.insts.iter().position(|i| i.result == v)
}

/// A rank-4 f32 pad of the two spatial axes only.
fn spatial_pad(f: &Function, i: usize) -> Option<[usize; 2]> {
    let inst = &f.insts[i];
    let Op::Pad { pads } = &inst.op else {
        return None;
    };
    let ty = f.ty(inst.result);
    (pads.len() == 8 && pads[..4] == [0, 0, 0, 0] && ty.dtype == DType::F32)
        .then(|| [pads[4], pads[6]])
}

/// Whether the `pad` instruction `i` is folded into the convolutions that read it: it pads
/// only the planes, every reader is a forward product or filter gradient reading it as its
/// input (and nothing else of it), each on a kernel that pads inside (`takes`), and it is not returned.
pub fn pad_folds(f: &Function, i: usize, takes: PadsInside) -> bool {
    if spatial_pad(f, i).is_none() {
        return false;
    }
    let p = f.insts[i].result;
    if f.results.contains(&p) {
        return false;
    }
    let mut readers = 0;
    for user in &f.insts {
        if !user.args.contains(&p) {
            continue;
        }
        let reads_input = matches!(user.op, Op::Conv2d { .. } | Op::Conv2dGradFilter { .. })
            && user.args[0] == p
            && !user.args[1..].contains(&p);
        if !reads_input || !takes(f, user) {
            return false;
        }
        readers += 1;
    }
    readers > 0
}

/// Whether the `slice` instruction `i` is folded into the input gradient it crops: it crops
/// only the planes of a `conv2d_grad_input` result that nothing else reads, and that input
/// gradient runs on the GEMM family (`takes`).
pub fn slice_folds(f: &Function, i: usize, takes: PadsInside) -> bool {
    let inst = &f.insts[i];
    let Op::Slice { start, end } = &inst.op else {
        return false;
    };
    let d = inst.args[0];
    let full = &f.ty(d).shape;
    let Some(j) = definition(f, d) else {
        return false;
    };
    full.len() == 4
        && start[..2] == [0, 0]
        && end[..2] == full[..2]
        && matches!(f.insts[j].op, Op::Conv2dGradInput { .. })
        && used_only_by(f, d, i)
        && takes(f, &f.insts[j])
}

/// For a forward product or filter gradient at instruction `i` reading a folded `pad`: the
/// pad's operand and its low rows and columns.
pub fn input_fold(f: &Function, i: usize, takes: PadsInside) -> Option<(ValueId, [usize; 2])> {
    let inst = &f.insts[i];
    if !matches!(inst.op, Op::Conv2d { .. } | Op::Conv2dGradFilter { .. }) {
        return None;
    }
    let j = definition(f, inst.args[0])?;
    let low = spatial_pad(f, j)?;
    pad_folds(f, j, takes).then(|| (f.insts[j].args[0], low))
}

/// For an input gradient at instruction `i` cropped by a folded `slice`: the slice's result
/// and its first row and column.
pub fn output_fold(f: &Function, i: usize, takes: PadsInside) -> Option<(ValueId, [usize; 2])> {
    let inst = &f.insts[i];
    if !matches!(inst.op, Op::Conv2dGradInput { .. }) {
        return None;
    }
    let (j, slice) = f
        .insts
        .iter()
        .enumerate()
        .find(|(_, u)| u.args.contains(&inst.result))?;
    let Op::Slice { start, .. } = &slice.op else {
        return None;
    };
    slice_folds(f, j, takes).then(|| (slice.result, [start[2], start[3]]))
}
