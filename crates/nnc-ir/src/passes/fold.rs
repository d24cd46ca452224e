//! Constant folding: an op whose operands are all splat constants becomes a constant.

use crate::function::Function;
use crate::interp;
use crate::op::{Compare, Op};

pub fn run(f: &Function) -> Function {
    let mut g = f.clone();
    // The value of each splat constant, by value id.
    let mut splat: Vec<Option<f64>> = vec![None; g.types.len()];
    for i in 0..g.insts.len() {
        let inst = &g.insts[i];
        let vals: Option<Vec<f64>> = inst.args.iter().map(|a| splat[a.index()]).collect();
        let folded = match (&inst.op, vals) {
            (Op::Const { value }, _) => Some(*value),
            (_, None) => None,
            (Op::Unary(u), Some(v)) => Some(interp::unary(*u, v[0])),
            (Op::Binary(b), Some(v)) => Some(interp::binary(*b, v[0], v[1])),
            (Op::Compare(c), Some(v)) => {
                let r = match c {
                    Compare::Gt => v[0] > v[1],
                    Compare::Eq => v[0] == v[1],
                };
                Some(if r { 1.0 } else { 0.0 })
            }
            (Op::Select, Some(v)) => Some(if v[0] != 0.0 { v[1] } else { v[2] }),
            (Op::Reshape { .. } | Op::Broadcast { .. } | Op::Transpose { .. }, Some(v)) => {
                Some(v[0])
            }
            (Op::ReduceSum { .. }, Some(v)) => {
                let n = g.ty(inst.args[0]).numel() / g.ty(inst.result).numel().max(1);
                Some(v[0] * n as f64)
            }
            (Op::ReduceMax { .. }, Some(v)) => Some(v[0]),
            _ => None,
        };
        if let Some(value) = folded {
            // Only f32 results can be constants; comparisons of integers stay.
            if g.ty(inst.result).dtype == crate::types::DType::F32 {
                let result = inst.result;
                g.insts[i] = crate::function::Inst {
                    result,
                    op: Op::Const { value },
                    args: Vec::new(),
                };
                splat[result.index()] = Some(value);
            }
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use crate::parse::parse_function;
    use crate::print::print;

    #[test]
    fn folds_scalar_arithmetic_and_broadcasts() {
        let f = parse_function(
            "func @f(%x: f32[2,3]) -> (f32[2,3]) {
               %0: f32[] = const value=2.0
               %1: f32[] = const value=3.0
               %2: f32[] = mul %0, %1
               %3: f32[] = sqrt %2
               %4: f32[2,3] = broadcast %2, shape=[2,3]
               %5: f32[2] = reduce_sum %4, axes=[1]
               %6: f32[2,3] = mul %x, %3
               %7: f32[2,1] = reshape %5, shape=[2,1]
               %8: f32[2,3] = add %6, %7
               return %8
             }",
        )
        .unwrap();
        let g = crate::passes::dce::run(&super::run(&f));
        insta::assert_snapshot!(print(&g), @r"
        func @f(%x: f32[2,3]) -> (f32[2,3]) {
          %0: f32[] = const value=2.449489742783178
          %1: f32[2,3] = mul %x, %0
          %2: f32[2,1] = const value=18.0
          %3: f32[2,3] = add %1, %2
          return %3
        }
        ");
    }
}
