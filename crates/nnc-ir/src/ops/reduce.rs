//! Reductions, argmax and explicit broadcast.

use super::expect_dtype;
use crate::function::{Builder, ValueId};
use crate::op::{Compare, Op};
use crate::types::{DType, Type};

fn check_axes(axes: &[usize], rank: usize) -> Result<(), String> {
    for (i, &a) in axes.iter().enumerate() {
        if a >= rank {
            return Err(format!("axis {a} is out of range for rank {rank}"));
        }
        if axes[..i].contains(&a) || (i > 0 && axes[i - 1] > a) {
            return Err(format!("axes {axes:?} must be increasing and distinct"));
        }
    }
    Ok(())
}

pub fn infer(op: &Op, args: &[&Type]) -> Result<Type, String> {
    let x = args[0];
    match op {
        Op::ReduceSum { axes } | Op::ReduceMax { axes } => {
            expect_dtype(x, DType::F32, "the operand")?;
            check_axes(axes, x.rank())?;
            let shape = (0..x.rank())
                .filter(|i| !axes.contains(i))
                .map(|i| x.shape[i])
                .collect::<Vec<_>>();
            Ok(Type::f32(shape))
        }
        Op::ArgMax { axis } => {
            expect_dtype(x, DType::F32, "the operand")?;
            check_axes(&[*axis], x.rank())?;
            let mut shape = x.shape.clone();
            shape.remove(*axis);
            Ok(Type::new(DType::I32, shape))
        }
        Op::Broadcast { shape } => {
            let b = super::broadcast_shapes(&x.shape, shape)?;
            if &b != shape {
                return Err(format!("{x} does not broadcast to {shape:?}"));
            }
            Ok(Type::new(x.dtype, shape.clone()))
        }
        _ => unreachable!("not a reduction: {}", op.name()),
    }
}

/// `shape` with the reduced `axes` put back as 1s.
fn keepdims(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    (0..shape.len())
        .map(|i| if axes.contains(&i) { 1 } else { shape[i] })
        .collect()
}

pub fn vjp(
    b: &mut Builder<'_>,
    op: &Op,
    args: &[ValueId],
    out: ValueId,
    dy: ValueId,
    wants: &[bool],
) -> Result<Vec<Option<ValueId>>, String> {
    let x = args[0];
    if !wants[0] {
        return Ok(vec![None]);
    }
    let xs = b.shape(x);
    Ok(vec![match op {
        Op::ReduceSum { axes } => {
            let kept = b.reshape(dy, keepdims(&xs, axes));
            Some(b.broadcast(kept, xs))
        }
        Op::ReduceMax { axes } => {
            // To every element equal to the maximum (all of them on ties).
            let kept_y = b.reshape(out, keepdims(&xs, axes));
            let y = b.broadcast(kept_y, xs.clone());
            let mask = b.compare(Compare::Eq, x, y);
            let kept = b.reshape(dy, keepdims(&xs, axes));
            let g = b.broadcast(kept, xs);
            Some(b.mul(g, mask))
        }
        Op::ArgMax { .. } => None,
        Op::Broadcast { .. } => Some(b.sum_to(dy, &xs)),
        _ => unreachable!("not a reduction: {}", op.name()),
    }])
}
