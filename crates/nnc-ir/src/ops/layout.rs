//! Layout ops: reshape, transpose, zero padding, slicing and concatenation.

use crate::function::{Builder, ValueId};
use crate::op::Op;
use crate::types::Type;

pub fn infer(op: &Op, args: &[&Type]) -> Result<Type, String> {
    let x = args[0];
    match op {
        Op::Concat { axis } => {
            let axis = *axis;
            if axis >= x.rank() {
                return Err(format!("axis {axis} is out of range for {x}"));
            }
            let mut shape = x.shape.clone();
            for t in &args[1..] {
                let fits = t.dtype == x.dtype
                    && t.rank() == x.rank()
                    && (0..x.rank()).all(|i| i == axis || t.shape[i] == x.shape[i]);
                if !fits {
                    return Err(format!(
                        "cannot concatenate {x} and {t} along axis {axis}: other axes differ"
                    ));
                }
                shape[axis] += t.shape[axis];
            }
            Ok(Type::new(x.dtype, shape))
        }
        Op::Reshape { shape } => {
            let n: usize = shape.iter().product();
            if n != x.numel() {
                return Err(format!(
                    "cannot reshape {x} ({} elements) to {shape:?} ({n})",
                    x.numel()
                ));
            }
            Ok(Type::new(x.dtype, shape.clone()))
        }
        Op::Transpose { perm } => {
            let mut seen = vec![false; x.rank()];
            if perm.len() != x.rank()
                || perm
                    .iter()
                    .any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true))
            {
                return Err(format!("{perm:?} is not a permutation of the axes of {x}"));
            }
            Ok(Type::new(
                x.dtype,
                perm.iter().map(|&p| x.shape[p]).collect::<Vec<_>>(),
            ))
        }
        Op::Pad { pads } => {
            if pads.len() != 2 * x.rank() {
                return Err(format!(
                    "`pads` needs 2 entries per axis of {x}, found {}",
                    pads.len()
                ));
            }
            let shape = (0..x.rank())
                .map(|i| x.shape[i] + pads[2 * i] + pads[2 * i + 1])
                .collect::<Vec<_>>();
            Ok(Type::new(x.dtype, shape))
        }
        Op::Slice { start, end } => {
            if start.len() != x.rank() || end.len() != x.rank() {
                return Err(format!("`start` and `end` need one entry per axis of {x}"));
            }
            for i in 0..x.rank() {
                if start[i] > end[i] || end[i] > x.shape[i] {
                    return Err(format!(
                        "slice {}..{} is out of range for axis {i} of {x}",
                        start[i], end[i]
                    ));
                }
            }
            Ok(Type::new(
                x.dtype,
                (0..x.rank()).map(|i| end[i] - start[i]).collect::<Vec<_>>(),
            ))
        }
        _ => unreachable!(),
    }
}

pub fn vjp(
    b: &mut Builder<'_>,
    op: &Op,
    args: &[ValueId],
    dy: ValueId,
    wants: &[bool],
) -> Result<Vec<Option<ValueId>>, String> {
    if let Op::Concat { axis } = op {
        // Each operand's gradient is its slice of `dy`.
        let mut offset = 0;
        let mut grads = Vec::with_capacity(args.len());
        for (&x, &want) in args.iter().zip(wants) {
            let xs = b.shape(x);
            let mut start = vec![0; xs.len()];
            start[*axis] = offset;
            let mut end = xs.clone();
            end[*axis] = offset + xs[*axis];
            offset += xs[*axis];
            grads.push(want.then(|| b.op(Op::Slice { start, end }, &[dy])));
        }
        return Ok(grads);
    }
    if !wants[0] {
        return Ok(vec![None]);
    }
    let x = args[0];
    let xs = b.shape(x);
    Ok(vec![Some(match op {
        Op::Reshape { .. } => b.reshape(dy, xs),
        Op::Transpose { perm } => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            b.op(Op::Transpose { perm: inv }, &[dy])
        }
        Op::Pad { pads } => {
            let start: Vec<usize> = (0..xs.len()).map(|i| pads[2 * i]).collect();
            let end: Vec<usize> = (0..xs.len()).map(|i| pads[2 * i] + xs[i]).collect();
            b.op(Op::Slice { start, end }, &[dy])
        }
        Op::Slice { start, end } => {
            let pads = (0..xs.len())
                .flat_map(|i| [start[i], xs[i] - end[i]])
                .collect();
            b.op(Op::Pad { pads }, &[dy])
        }
        _ => unreachable!(),
    })])
}
