//! `allreduce_sum`: a value summed over the processes of a data-parallel job.

use super::expect_dtype;
use crate::function::{Builder, ValueId};
use crate::op::Op;
use crate::types::{DType, Type};

/// The sum has the operand's type; only floats are summed.
pub fn infer(args: &[&Type]) -> Result<Type, String> {
    expect_dtype(args[0], DType::F32, "the summed value")?;
    Ok(args[0].clone())
}

/// y = Σᵣ xᵣ on every process r, each of which goes on with the same y: the gradient of the
/// job's loss with respect to one process's x is the sum of every process's dy. In one
/// process both are the identity.
pub fn vjp(b: &mut Builder<'_>, dout: ValueId) -> Vec<Option<ValueId>> {
    vec![Some(b.op(Op::AllReduceSum, &[dout]))]
}
