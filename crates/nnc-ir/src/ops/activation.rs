//! Activations that are ops of their own for the sake of their derivative: leaky ReLU and ELU.
//!
//! Written as primitives (`select` of a comparison, `exp`), their generic derivative would
//! read what the primitives computed — the pre-activation, the comparison, `eˣ` — so the
//! forward pass would keep two or three tensors per activation for the backward pass. The
//! textbook derivatives read the result alone (leaky ReLU: 1 where y > 0, else α; ELU: 1 where
//! y > 0, else y + α), which the next layer keeps anyway. Autodiff sees these ops;
//! [`decompose`] then writes each as the primitives every backend runs.

use crate::function::{Builder, ValueId};
use crate::op::{Binary, Compare, Op};
use crate::types::Type;

/// Elementwise: the shape rule of every unary op.
pub fn infer(args: &[&Type]) -> Result<Type, String> {
    super::elementwise::same_f32(args[0])
}

pub fn vjp(
    b: &mut Builder<'_>,
    op: &Op,
    args: &[ValueId],
    out: ValueId,
    dy: ValueId,
) -> Result<Vec<Option<ValueId>>, String> {
    let (Op::LeakyRelu { alpha } | Op::Elu { alpha }) = *op else {
        unreachable!("not an activation op: {}", op.name())
    };
    // y > 0 exactly where x > 0 when α ≥ 0 (also for NaN: both false); a negative α (only
    // written in IR text: models check α ≥ 0) makes the negative side positive, and the
    // side is then read from the operand.
    let side = if alpha >= 0.0 { out } else { args[0] };
    let zero = b.scalar(0.0);
    let positive = b.compare(Compare::Gt, side, zero);
    let below = match op {
        Op::LeakyRelu { .. } => b.scale(dy, alpha),
        _ => {
            // α(eˣ − 1) + α = αeˣ: the derivative below zero, for any α.
            let a = b.scalar(alpha);
            let slope = b.add(out, a);
            b.mul(dy, slope)
        }
    };
    Ok(vec![Some(b.op(Op::Select, &[positive, dy, below]))])
}

/// Emits `op` (an [`Op::is_composite`] op) applied to `x` as primitives.
pub fn decompose(b: &mut Builder<'_>, op: &Op, x: ValueId) -> ValueId {
    let zero = b.scalar(0.0);
    let positive = b.compare(Compare::Gt, x, zero);
    let below = match *op {
        Op::LeakyRelu { alpha } => b.scale(x, alpha),
        Op::Elu { alpha } => {
            // α(e^min(x,0) − 1): the min keeps eˣ finite on the side not taken.
            let clipped = b.binary(Binary::Min, x, zero);
            let e = b.unary(crate::op::Unary::Exp, clipped);
            let one = b.scalar(1.0);
            let em1 = b.sub(e, one);
            b.scale(em1, alpha)
        }
        _ => unreachable!("`{}` is not composite", op.name()),
    };
    b.op(Op::Select, &[positive, x, below])
}
