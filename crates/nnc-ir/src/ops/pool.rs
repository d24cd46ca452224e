//! Max and sum pooling over the last two axes, and their gradients. Unlike a convolution's,
//! a pooling's windows need not tile its input: the output size is rounded down, and the
//! rows and columns past the last window are read by none (their gradient is 0), as in
//! PyTorch's and ONNX's default floor mode. The kernels then need no cropped copy.

use super::expect_dtype;
use crate::function::{Builder, ValueId};
use crate::op::Op;
use crate::types::{DType, Type};

/// The windows of `k` at stride `s` that fit in `n`, rounded down.
fn pooled(n: usize, k: usize, s: usize) -> Result<usize, String> {
    if k == 0 || s == 0 {
        return Err("window and stride must be positive".into());
    }
    if k > n {
        return Err(format!("window {k} does not fit input {n}"));
    }
    Ok((n - k) / s + 1)
}

fn spatial(t: &Type, what: &str) -> Result<(Vec<usize>, [usize; 2]), String> {
    expect_dtype(t, DType::F32, what)?;
    if t.rank() < 2 {
        return Err(format!("{what} needs at least 2 axes, found {t}"));
    }
    let r = t.rank();
    Ok((t.shape[..r - 2].to_vec(), [t.shape[r - 2], t.shape[r - 1]]))
}

pub fn infer(op: &Op, args: &[&Type]) -> Result<Type, String> {
    match *op {
        Op::MaxPool { size, stride } | Op::SumPool { size, stride } => {
            let (lead, [h, w]) = spatial(args[0], "the input")?;
            let mut shape = lead;
            shape.push(pooled(h, size[0], stride[0])?);
            shape.push(pooled(w, size[1], stride[1])?);
            Ok(Type::f32(shape))
        }
        Op::MaxPoolGrad { size, stride } => {
            let x = args[0];
            let pooled = infer(&Op::MaxPool { size, stride }, &[x])?;
            if args[1] != &pooled {
                return Err(format!(
                    "the output gradient must be {pooled}, found {}",
                    args[1]
                ));
            }
            Ok(x.clone())
        }
        Op::SumPoolGrad {
            size,
            stride,
            input,
        } => {
            let (lead, [oh, ow]) = spatial(args[0], "the output gradient")?;
            if pooled(input[0], size[0], stride[0])? != oh
                || pooled(input[1], size[1], stride[1])? != ow
            {
                return Err(format!("input {input:?} does not pool to {oh}x{ow}"));
            }
            let mut shape = lead;
            shape.extend(input);
            Ok(Type::f32(shape))
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
    if !wants[0] {
        return Ok(vec![None; args.len()]);
    }
    let x = args[0];
    match *op {
        Op::MaxPool { size, stride } => {
            Ok(vec![Some(b.op(Op::MaxPoolGrad { size, stride }, &[x, dy]))])
        }
        Op::SumPool { size, stride } => {
            let s = b.shape(x);
            let input = [s[s.len() - 2], s[s.len() - 1]];
            Ok(vec![Some(b.op(
                Op::SumPoolGrad {
                    size,
                    stride,
                    input,
                },
                &[dy],
            ))])
        }
        // Linear: the adjoint of spreading is summing.
        Op::SumPoolGrad { size, stride, .. } => {
            Ok(vec![Some(b.op(Op::SumPool { size, stride }, &[dy]))])
        }
        _ => Err(format!(
            "`{}` is not differentiable (second derivatives are not supported)",
            op.name()
        )),
    }
}
