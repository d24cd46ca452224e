//! 2-D convolution (cross-correlation, NCHW/OIHW) and its two gradients.

use super::{expect_dtype, expect_rank};
use crate::function::{Builder, ValueId};
use crate::op::Op;
use crate::types::{DType, Type};

/// Output size of a window sliding over `n` padded by `p` on each side, rounded down: rows
/// (or columns) past the last whole window, input or padding, are not read (and their
/// gradient is zero). An error when the window does not fit.
pub fn window_out(n: usize, k: usize, s: usize, p: usize) -> Result<usize, String> {
    let padded = n + 2 * p;
    if k == 0 || s == 0 {
        return Err("window and stride must be positive".into());
    }
    if k > padded {
        return Err(format!("window {k} does not fit input {n} padded by {p}"));
    }
    Ok((padded - k) / s + 1)
}

fn rank4(t: &Type, what: &str) -> Result<[usize; 4], String> {
    expect_dtype(t, DType::F32, what)?;
    expect_rank(t, 4, what)?;
    Ok([t.shape[0], t.shape[1], t.shape[2], t.shape[3]])
}

pub fn infer(op: &Op, args: &[&Type]) -> Result<Type, String> {
    match *op {
        Op::Conv2d { stride, padding } => {
            let [n, c, h, w] = rank4(args[0], "the input")?;
            let [o, ci, kh, kw] = rank4(args[1], "the filter")?;
            if c != ci {
                return Err(format!(
                    "the input has {c} channels, the filter expects {ci}"
                ));
            }
            let oh = window_out(h, kh, stride[0], padding[0])?;
            let ow = window_out(w, kw, stride[1], padding[1])?;
            Ok(Type::f32(vec![n, o, oh, ow]))
        }
        Op::Conv2dGradInput {
            stride,
            padding,
            input,
        } => {
            let [n, o, oh, ow] = rank4(args[0], "the output gradient")?;
            let [o2, c, kh, kw] = rank4(args[1], "the filter")?;
            if o != o2 {
                return Err(format!("the gradient has {o} channels, the filter {o2}"));
            }
            if window_out(input[0], kh, stride[0], padding[0])? != oh
                || window_out(input[1], kw, stride[1], padding[1])? != ow
            {
                return Err(format!(
                    "input {input:?} does not give the gradient's {oh}x{ow}"
                ));
            }
            Ok(Type::f32(vec![n, c, input[0], input[1]]))
        }
        Op::Conv2dGradFilter {
            stride,
            padding,
            kernel,
        } => {
            let [n, c, h, w] = rank4(args[0], "the input")?;
            let [n2, o, oh, ow] = rank4(args[1], "the output gradient")?;
            if n != n2 {
                return Err(format!("batch {n} and {n2} differ"));
            }
            if window_out(h, kernel[0], stride[0], padding[0])? != oh
                || window_out(w, kernel[1], stride[1], padding[1])? != ow
            {
                return Err(format!(
                    "kernel {kernel:?} does not give the gradient's {oh}x{ow}"
                ));
            }
            Ok(Type::f32(vec![o, c, kernel[0], kernel[1]]))
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
    match *op {
        Op::Conv2d { stride, padding } => {
            let (x, w) = (args[0], args[1]);
            let xs = b.shape(x);
            let ws = b.shape(w);
            let dx = wants[0].then(|| {
                b.op(
                    Op::Conv2dGradInput {
                        stride,
                        padding,
                        input: [xs[2], xs[3]],
                    },
                    &[dy, w],
                )
            });
            let dw = wants[1].then(|| {
                b.op(
                    Op::Conv2dGradFilter {
                        stride,
                        padding,
                        kernel: [ws[2], ws[3]],
                    },
                    &[x, dy],
                )
            });
            Ok(vec![dx, dw])
        }
        // Linear in the output gradient (its adjoint is the forward convolution) and bilinear
        // in (g, w): the filter's gradient pairs the incoming gradient, playing the input, with
        // g, playing the output gradient.
        Op::Conv2dGradInput {
            stride, padding, ..
        } => {
            let (g, w) = (args[0], args[1]);
            let ws = b.shape(w);
            let d = wants[0].then(|| b.op(Op::Conv2d { stride, padding }, &[dy, w]));
            let dw = wants[1].then(|| {
                b.op(
                    Op::Conv2dGradFilter {
                        stride,
                        padding,
                        kernel: [ws[2], ws[3]],
                    },
                    &[dy, g],
                )
            });
            Ok(vec![d, dw])
        }
        _ => Err(format!(
            "`{}` is not differentiable (second derivatives are not supported)",
            op.name()
        )),
    }
}
