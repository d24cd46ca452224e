//! A residual connection in the convolution before it: `relu((conv(x, w) + b) + skip)`,
//! where a fused epilogue would read the convolution's result back to add its bias, the
//! other branch and rectify, is stored by [`gemm_conv`] as it scatters its rows (the sum
//! in the loop's order, so the bits are the loop's). The gradient needs nothing of its own:
//! the activation mask, the fan-out sum of the two branches' gradients and the bias
//! gradient already run as one loop in the epilogue of the input gradient before them.
//!
//! [`gemm_conv`]: crate::gemm_conv

use nnc_ir::{Binary, DType, Function, Op, Unary, ValueId};

use crate::plan::Plan;
use crate::schedule::{LoopKernel, used_only_by};

/// Byte offsets of what a recognised epilogue reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Residual {
    /// The bias, `[O]` floats.
    pub bias: usize,
    /// The other branch, of the convolution's shape (may be `out` itself: the result reuses
    /// its buffer).
    pub skip: usize,
    /// The ReLU's result.
    pub out: usize,
}

/// For a `conv2d` (instruction `inst`) whose fused epilogue is exactly
/// `relu((y + b) + skip)` (either operand order in each sum), with `b` a `[O, 1, 1]` view of
/// `O` floats, `skip` an f32 tensor of `y`'s shape, and `y` and both sums read by nothing
/// else: where the convolution can store the ReLU's result itself.
pub fn residual_relu_epilogue(
    f: &Function,
    inst: usize,
    epilogue: &LoopKernel,
    plan: &Plan,
) -> Option<Residual> {
    let conv = &f.insts[inst];
    let y = conv.result;
    if !matches!(&conv.op, Op::Conv2d { .. }) {
        return None;
    }
    let &[i_bias, i_skip, i_relu] = epilogue.insts.as_slice() else {
        return None;
    };
    let (add_b, add_s, relu) = (&f.insts[i_bias], &f.insts[i_skip], &f.insts[i_relu]);
    // The operand of a sum that is not `v`.
    let other = |inst: &nnc_ir::Inst, v: ValueId| match (&inst.op, &inst.args[..]) {
        (Op::Binary(Binary::Add), &[p, q]) if p == v => Some(q),
        (Op::Binary(Binary::Add), &[p, q]) if q == v => Some(p),
        _ => None,
    };
    let b = other(add_b, y)?;
    let skip = other(add_s, add_b.result)?;
    let o = f.ty(y).shape.get(1).copied()?;
    let bias_ok = f.ty(b).shape == [o, 1, 1] && f.ty(b).dtype == DType::F32;
    let skip_ok = f.ty(skip) == f.ty(y) && skip != y;
    let relu_ok = matches!(relu.op, Op::Unary(Unary::Relu)) && relu.args == [add_s.result];
    let stores_only_relu = epilogue.outputs == [relu.result] && epilogue.reductions.is_empty();
    (bias_ok
        && skip_ok
        && relu_ok
        && stores_only_relu
        && used_only_by(f, y, i_bias)
        && used_only_by(f, add_b.result, i_skip)
        && used_only_by(f, add_s.result, i_relu))
    .then_some(())?;
    Some(Residual {
        bias: plan.offset[b.index()]?,
        skip: plan.offset[skip.index()]?,
        out: plan.offset[relu.result.index()]?,
    })
}
