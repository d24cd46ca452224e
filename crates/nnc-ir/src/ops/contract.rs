//! Contraction: matrix multiplication with transpose flags.

use super::{expect_dtype, expect_rank};
use crate::function::{Builder, ValueId};
use crate::op::Op;
use crate::types::Type;

pub fn infer(op: &Op, args: &[&Type]) -> Result<Type, String> {
    let Op::MatMul { ta, tb } = *op else {
        unreachable!()
    };
    let (a, b) = (args[0], args[1]);
    for (t, what) in [(a, "the left operand"), (b, "the right operand")] {
        expect_dtype(t, crate::types::DType::F32, what)?;
        expect_rank(t, 2, what)?;
    }
    let (m, k1) = if ta {
        (a.shape[1], a.shape[0])
    } else {
        (a.shape[0], a.shape[1])
    };
    let (k2, n) = if tb {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if k1 != k2 {
        return Err(format!("inner dimensions differ: {a} · {b} ({k1} ≠ {k2})"));
    }
    Ok(Type::f32(vec![m, n]))
}

/// C = op(A)·op(B). With G = dC: for A, dA = G·op(B)ᵀ (transposed back if A was);
/// for B, dB = op(A)ᵀ·G (likewise).
pub fn vjp(
    b: &mut Builder<'_>,
    op: &Op,
    args: &[ValueId],
    g: ValueId,
    wants: &[bool],
) -> Result<Vec<Option<ValueId>>, String> {
    let Op::MatMul { ta, tb } = *op else {
        unreachable!()
    };
    let (x, w) = (args[0], args[1]);
    let da = wants[0].then(|| {
        if ta {
            // A is [K,M]: dA = op(B)·Gᵀ
            b.op(Op::MatMul { ta: tb, tb: true }, &[w, g])
        } else {
            // dA = G·op(B)ᵀ
            b.op(Op::MatMul { ta: false, tb: !tb }, &[g, w])
        }
    });
    let db = wants[1].then(|| {
        if tb {
            // B is [N,K]: dB = Gᵀ·op(A)
            b.op(Op::MatMul { ta: true, tb: ta }, &[g, x])
        } else {
            // dB = op(A)ᵀ·G
            b.op(Op::MatMul { ta: !ta, tb: false }, &[x, g])
        }
    });
    Ok(vec![da, db])
}
