//! Classification ops: one-hot labels, softmax, cross-entropy and the fused, stable
//! softmax-cross-entropy with its gradient.

use super::{expect_dtype, expect_rank};
use crate::function::{Builder, ValueId};
use crate::op::Op;
use crate::types::{DType, Type};

fn logits_and_labels(args: &[&Type]) -> Result<(usize, usize), String> {
    expect_dtype(args[0], DType::F32, "the scores")?;
    expect_rank(args[0], 2, "the scores")?;
    expect_dtype(args[1], DType::I32, "the labels")?;
    expect_rank(args[1], 1, "the labels")?;
    let (b, k) = (args[0].shape[0], args[0].shape[1]);
    if args[1].shape[0] != b {
        return Err(format!("{} labels for a batch of {b}", args[1].shape[0]));
    }
    Ok((b, k))
}

pub fn infer(op: &Op, args: &[&Type]) -> Result<Type, String> {
    match op {
        Op::OneHot { classes } => {
            expect_dtype(args[0], DType::I32, "the labels")?;
            let mut shape = args[0].shape.clone();
            shape.push(*classes);
            Ok(Type::f32(shape))
        }
        Op::Softmax => {
            expect_dtype(args[0], DType::F32, "the operand")?;
            if args[0].rank() == 0 {
                return Err("softmax needs at least one axis".into());
            }
            Ok(args[0].clone())
        }
        Op::CrossEntropy | Op::SoftmaxXent => {
            logits_and_labels(args)?;
            Ok(Type::scalar())
        }
        Op::SoftmaxXentGrad => {
            logits_and_labels(&args[..2])?;
            if args[2] != &Type::scalar() {
                return Err(format!(
                    "the loss gradient must be f32[], found {}",
                    args[2]
                ));
            }
            Ok(args[0].clone())
        }
        _ => unreachable!(),
    }
}

pub fn vjp(
    b: &mut Builder<'_>,
    op: &Op,
    args: &[ValueId],
    out: ValueId,
    dy: ValueId,
    wants: &[bool],
) -> Result<Vec<Option<ValueId>>, String> {
    match op {
        Op::OneHot { .. } => Ok(vec![None]),
        Op::Softmax => {
            if !wants[0] {
                return Ok(vec![None]);
            }
            // dx = y ⊙ (dy − Σ(dy ⊙ y)) over the last axis.
            let shape = b.shape(out);
            let last = shape.len() - 1;
            let prod = b.mul(dy, out);
            let s = b.reduce_sum(prod, vec![last]);
            let mut kept = shape.clone();
            kept[last] = 1;
            let s = b.reshape(s, kept);
            let centered = b.sub(dy, s);
            Ok(vec![Some(b.mul(out, centered))])
        }
        Op::CrossEntropy => {
            if wants[1] {
                return Err("labels are not differentiable".into());
            }
            // loss = −(1/B) Σ ln p[label]  ⇒  dp = −onehot / (B·p) · dloss
            let (p, labels) = (args[0], args[1]);
            let [batch, k] = b.shape(p)[..] else {
                unreachable!()
            };
            let onehot = b.op(Op::OneHot { classes: k }, &[labels]);
            let ratio = b.div(onehot, p);
            let scaled = b.scale(ratio, -1.0 / batch as f64);
            Ok(vec![wants[0].then(|| b.mul(scaled, dy)), None])
        }
        Op::SoftmaxXent => {
            if wants[1] {
                return Err("labels are not differentiable".into());
            }
            let g = wants[0].then(|| b.op(Op::SoftmaxXentGrad, &[args[0], args[1], dy]));
            Ok(vec![g, None])
        }
        Op::SoftmaxXentGrad => Err("second derivatives of softmax_xent are not supported".into()),
        _ => unreachable!(),
    }
}
