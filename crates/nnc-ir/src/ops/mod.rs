//! Shape rules and vector–Jacobian rules, one module per op family.
//!
//! `infer` gives an op's result type from its operand types (or an error saying why they do not
//! fit); `vjp` emits the IR computing the gradients of an op's operands from the gradient of its
//! result. Autodiff (`crate::autodiff`) only walks the graph and calls `vjp`.

pub(crate) mod activation;
mod collective;
mod contract;
mod conv;
mod elementwise;
mod layout;
mod loss;
pub(crate) mod normalize;
mod pool;
mod reduce;

use crate::function::{Builder, ValueId};
use crate::op::Op;
use crate::types::{DType, Type};

/// The result type of `op` applied to operands of types `args`.
pub fn infer(op: &Op, args: &[&Type]) -> Result<Type, String> {
    if !op.arity().accepts(args.len()) {
        return Err(format!(
            "`{}` takes {}, found {}",
            op.name(),
            op.arity(),
            args.len()
        ));
    }
    match op {
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Const { .. }
        | Op::ConstData { .. }
        | Op::ToF32 { .. }
        | Op::RandomUniform { .. } => elementwise::infer(op, args),
        Op::ReduceSum { .. } | Op::ReduceMax { .. } | Op::ArgMax { .. } | Op::Broadcast { .. } => {
            reduce::infer(op, args)
        }
        Op::MatMul { .. } => contract::infer(op, args),
        Op::Conv2d { .. } | Op::Conv2dGradInput { .. } | Op::Conv2dGradFilter { .. } => {
            conv::infer(op, args)
        }
        Op::MaxPool { .. }
        | Op::MaxPoolGrad { .. }
        | Op::SumPool { .. }
        | Op::SumPoolGrad { .. } => pool::infer(op, args),
        Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Pad { .. }
        | Op::Slice { .. }
        | Op::Concat { .. } => layout::infer(op, args),
        Op::LeakyRelu { .. } | Op::Elu { .. } => activation::infer(args),
        Op::BatchNorm { .. } => normalize::infer(args),
        Op::AllReduceSum => collective::infer(args),
        Op::OneHot { .. }
        | Op::Softmax
        | Op::CrossEntropy
        | Op::SoftmaxXent
        | Op::SoftmaxXentGrad => loss::infer(op, args),
    }
}

/// Emits the gradients of `args` given `dout`, the gradient of `out = op(args)`. Only operands
/// with `wants[i]` get one; `None` also stands for "not differentiable in this operand" (labels,
/// indices), which autodiff checks against what it needs.
pub fn vjp(
    b: &mut Builder<'_>,
    op: &Op,
    args: &[ValueId],
    out: ValueId,
    dout: ValueId,
    wants: &[bool],
) -> Result<Vec<Option<ValueId>>, String> {
    match op {
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Const { .. }
        | Op::ConstData { .. }
        | Op::ToF32 { .. }
        | Op::RandomUniform { .. } => elementwise::vjp(b, op, args, out, dout, wants),
        Op::ReduceSum { .. } | Op::ReduceMax { .. } | Op::ArgMax { .. } | Op::Broadcast { .. } => {
            reduce::vjp(b, op, args, out, dout, wants)
        }
        Op::MatMul { .. } => contract::vjp(b, op, args, dout, wants),
        Op::Conv2d { .. } | Op::Conv2dGradInput { .. } | Op::Conv2dGradFilter { .. } => {
            conv::vjp(b, op, args, dout, wants)
        }
        Op::MaxPool { .. }
        | Op::MaxPoolGrad { .. }
        | Op::SumPool { .. }
        | Op::SumPoolGrad { .. } => pool::vjp(b, op, args, dout, wants),
        Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Pad { .. }
        | Op::Slice { .. }
        | Op::Concat { .. } => layout::vjp(b, op, args, dout, wants),
        Op::LeakyRelu { .. } | Op::Elu { .. } => activation::vjp(b, op, args, out, dout),
        Op::BatchNorm { .. } => normalize::vjp(b, op, args, dout, wants),
        Op::AllReduceSum => Ok(collective::vjp(b, dout)),
        Op::OneHot { .. }
        | Op::Softmax
        | Op::CrossEntropy
        | Op::SoftmaxXent
        | Op::SoftmaxXentGrad => loss::vjp(b, op, args, out, dout, wants),
    }
}

/// Numpy broadcasting: shapes aligned on the right, each axis equal or 1.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

fn expect_dtype(t: &Type, d: DType, what: &str) -> Result<(), String> {
    if t.dtype == d {
        Ok(())
    } else {
        Err(format!("{what} must be {}, found {t}", d.name()))
    }
}

fn expect_rank(t: &Type, r: usize, what: &str) -> Result<(), String> {
    if t.rank() == r {
        Ok(())
    } else {
        Err(format!("{what} must have rank {r}, found {t}"))
    }
}
