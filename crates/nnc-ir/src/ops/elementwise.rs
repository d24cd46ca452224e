//! Elementwise ops: unary, binary (broadcasting), comparisons, select, constants, casts and
//! random numbers.

use super::{broadcast_shapes, expect_dtype};
use crate::function::{Builder, ValueId};
use crate::op::{Binary, Compare, Op, Unary};
use crate::types::{DType, Type};

/// The shape rule of a unary elementwise op: an f32 operand, a result of its type.
pub(super) fn same_f32(x: &Type) -> Result<Type, String> {
    expect_dtype(x, DType::F32, "the operand")?;
    Ok(x.clone())
}

pub fn infer(op: &Op, args: &[&Type]) -> Result<Type, String> {
    match op {
        Op::Unary(_) => same_f32(args[0]),
        Op::Binary(_) => {
            expect_dtype(args[0], DType::F32, "the first operand")?;
            expect_dtype(args[1], DType::F32, "the second operand")?;
            Ok(Type::f32(broadcast_shapes(&args[0].shape, &args[1].shape)?))
        }
        Op::Compare(_) => {
            if args[0].dtype != args[1].dtype {
                return Err(format!("cannot compare {} with {}", args[0], args[1]));
            }
            Ok(Type::f32(broadcast_shapes(&args[0].shape, &args[1].shape)?))
        }
        Op::Select => {
            for (t, what) in
                args.iter()
                    .zip(["the condition", "the second operand", "the third operand"])
            {
                expect_dtype(t, DType::F32, what)?;
            }
            let s = broadcast_shapes(&args[0].shape, &args[1].shape)?;
            Ok(Type::f32(broadcast_shapes(&s, &args[2].shape)?))
        }
        // Constants carry their type in the instruction; the verifier checks ConstData's length.
        Op::Const { .. } | Op::ConstData { .. } => {
            Err("constants are typed by their instruction".into())
        }
        Op::ToF32 { .. } => Ok(Type::f32(args[0].shape.clone())),
        Op::RandomUniform { shape, .. } => {
            if args[0].dtype != DType::I32 || args[0].rank() != 0 {
                return Err(format!("the key must be i32[], found {}", args[0]));
            }
            Ok(Type::f32(shape.clone()))
        }
        _ => unreachable!("not an elementwise op: {}", op.name()),
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
    let x = args.first().copied();
    Ok(match op {
        Op::Unary(u) => {
            let x = x.expect("unary operand");
            let dx = match u {
                Unary::Neg => b.unary(Unary::Neg, dy),
                Unary::Exp => b.mul(dy, out),
                Unary::Log => b.div(dy, x),
                Unary::Sqrt => {
                    // d√x = dy / (2√x)
                    let twice = b.scale(out, 2.0);
                    b.div(dy, twice)
                }
                Unary::Recip => {
                    // d(1/x) = −dy / x² = −dy · y²
                    let y2 = b.mul(out, out);
                    let t = b.mul(dy, y2);
                    b.unary(Unary::Neg, t)
                }
                Unary::Tanh => {
                    // 1 − y²
                    let y2 = b.mul(out, out);
                    let one = b.scalar(1.0);
                    let d = b.sub(one, y2);
                    b.mul(dy, d)
                }
                Unary::Sigmoid => {
                    // y (1 − y)
                    let one = b.scalar(1.0);
                    let c = b.sub(one, out);
                    let d = b.mul(out, c);
                    b.mul(dy, d)
                }
                Unary::Relu => {
                    let mask = b.unary(Unary::Step, x);
                    b.mul(dy, mask)
                }
                Unary::Abs => {
                    let s = b.unary(Unary::Sign, x);
                    b.mul(dy, s)
                }
                Unary::Softplus => {
                    let s = b.unary(Unary::Sigmoid, x);
                    b.mul(dy, s)
                }
                // Piecewise constant: the derivative is zero wherever it exists.
                Unary::Step | Unary::Sign => b.scale(dy, 0.0),
            };
            vec![Some(dx)]
        }
        Op::Binary(bin) => {
            let (x, y) = (args[0], args[1]);
            let (xs, ys) = (b.shape(x), b.shape(y));
            let mut dx = None;
            let mut dy_arg = None;
            match bin {
                Binary::Add | Binary::Sub => {
                    if wants[0] {
                        dx = Some(b.sum_to(dy, &xs));
                    }
                    if wants[1] {
                        let g = if *bin == Binary::Sub {
                            b.unary(Unary::Neg, dy)
                        } else {
                            dy
                        };
                        dy_arg = Some(b.sum_to(g, &ys));
                    }
                }
                Binary::Mul => {
                    if wants[0] {
                        let g = b.mul(dy, y);
                        dx = Some(b.sum_to(g, &xs));
                    }
                    if wants[1] {
                        let g = b.mul(dy, x);
                        dy_arg = Some(b.sum_to(g, &ys));
                    }
                }
                Binary::Div => {
                    if wants[0] {
                        let g = b.div(dy, y);
                        dx = Some(b.sum_to(g, &xs));
                    }
                    if wants[1] {
                        // −dy · x / y² = −dy · out / y
                        let t = b.mul(dy, out);
                        let t = b.div(t, y);
                        let g = b.unary(Unary::Neg, t);
                        dy_arg = Some(b.sum_to(g, &ys));
                    }
                }
                Binary::Max | Binary::Min => {
                    // The gradient goes to the operand that was chosen; ties go to the first.
                    let (first, second) = if *bin == Binary::Max { (x, y) } else { (y, x) };
                    let lost = b.compare(Compare::Gt, second, first);
                    let lost_for_x = if *bin == Binary::Max {
                        lost
                    } else {
                        // for min, x is chosen unless x > y
                        b.compare(Compare::Gt, x, y)
                    };
                    let one = b.scalar(1.0);
                    let chose_x = b.sub(one, lost_for_x);
                    if wants[0] {
                        let g = b.mul(dy, chose_x);
                        dx = Some(b.sum_to(g, &xs));
                    }
                    if wants[1] {
                        let g = b.mul(dy, lost_for_x);
                        dy_arg = Some(b.sum_to(g, &ys));
                    }
                }
            }
            vec![dx, dy_arg]
        }
        Op::Select => {
            let c = args[0];
            let zero = b.scalar(0.0);
            let da = wants[1].then(|| {
                let g = b.op(Op::Select, &[c, dy, zero]);
                let s = b.shape(args[1]);
                b.sum_to(g, &s)
            });
            let db = wants[2].then(|| {
                let g = b.op(Op::Select, &[c, zero, dy]);
                let s = b.shape(args[2]);
                b.sum_to(g, &s)
            });
            vec![None, da, db]
        }
        // Comparisons, casts and random numbers are constant almost everywhere: no gradient
        // flows through them (autodiff never asks, as they do not depend on parameters).
        Op::Compare(_) | Op::ToF32 { .. } | Op::RandomUniform { .. } => vec![None; args.len()],
        Op::Const { .. } | Op::ConstData { .. } => Vec::new(),
        _ => unreachable!("not an elementwise op: {}", op.name()),
    })
}
