//! Algebraic simplification.
//!
//! - `cross_entropy(softmax(z), t)` becomes the fused, stable `softmax_xent(z, t)`, and
//!   `argmax(softmax(z))` becomes `argmax(z)` (softmax is monotonic), so a model written with
//!   a softmax output and `cross_entropy` trains exactly like one with
//!   `softmax_cross_entropy`;
//! - identities: `x·1`, `x/1`, `x+0`, `x−0`, `−(−x)`, reshapes and broadcasts to the same shape;
//! - `transpose(transpose(x))` composes (and vanishes when the permutations cancel);
//!   `reshape(reshape(x))` reshapes once;
//! - `step(x)` becomes `step(relu(x))` when `relu(x)` is computed before it (the two are
//!   equal everywhere, NaN included): ReLU's derivative then reads the activation the
//!   forward pass keeps anyway, and the pre-activation need not be kept for the backward
//!   pass.

use crate::function::{Function, ValueId};
use crate::op::{Binary, Op, Unary};

pub fn run(f: &Function) -> Function {
    let mut g = f.clone();
    let defs = g.definitions();
    let mut subst: Vec<Option<ValueId>> = vec![None; g.types.len()];
    // `relu(x)` of each `x`, once computed.
    let mut relu_of: Vec<Option<ValueId>> = vec![None; g.types.len()];
    let resolve = |subst: &[Option<ValueId>], mut v: ValueId| {
        while let Some(r) = subst[v.index()] {
            v = r;
        }
        v
    };
    for i in 0..g.insts.len() {
        let args: Vec<ValueId> = g.insts[i]
            .args
            .iter()
            .map(|&a| resolve(&subst, a))
            .collect();
        g.insts[i].args = args.clone();
        let result = g.insts[i].result;
        let def_op = |v: ValueId| defs[v.index()].map(|d| (&f.insts[d].op, &f.insts[d].args));
        let splat = |v: ValueId| match def_op(v) {
            Some((Op::Const { value }, _)) => Some(*value),
            _ => None,
        };
        let same_type = |v: ValueId| g.ty(v) == g.ty(result);
        let mut replace = None;
        let mut rewrite = None;
        match &g.insts[i].op {
            Op::Binary(Binary::Mul) => {
                if splat(args[1]) == Some(1.0) && same_type(args[0]) {
                    replace = Some(args[0]);
                } else if splat(args[0]) == Some(1.0) && same_type(args[1]) {
                    replace = Some(args[1]);
                }
            }
            Op::Binary(Binary::Div) if splat(args[1]) == Some(1.0) && same_type(args[0]) => {
                replace = Some(args[0]);
            }
            Op::Binary(Binary::Add) => {
                if splat(args[1]) == Some(0.0) && same_type(args[0]) {
                    replace = Some(args[0]);
                } else if splat(args[0]) == Some(0.0) && same_type(args[1]) {
                    replace = Some(args[1]);
                }
            }
            Op::Binary(Binary::Sub) if splat(args[1]) == Some(0.0) && same_type(args[0]) => {
                replace = Some(args[0]);
            }
            Op::Unary(Unary::Neg) => {
                if let Some((Op::Unary(Unary::Neg), inner)) = def_op(args[0]) {
                    replace = Some(resolve(&subst, inner[0]));
                }
            }
            Op::Reshape { .. } | Op::Broadcast { .. } if same_type(args[0]) => {
                replace = Some(args[0])
            }
            Op::Reshape { shape } => {
                if let Some((Op::Reshape { .. }, inner)) = def_op(args[0]) {
                    rewrite = Some((
                        Op::Reshape {
                            shape: shape.clone(),
                        },
                        vec![resolve(&subst, inner[0])],
                    ));
                }
            }
            Op::Transpose { perm } => {
                if let Some((Op::Transpose { perm: inner_perm }, inner)) = def_op(args[0]) {
                    let composed: Vec<usize> = perm.iter().map(|&p| inner_perm[p]).collect();
                    let src = resolve(&subst, inner[0]);
                    if composed.iter().enumerate().all(|(i, &p)| i == p) {
                        replace = Some(src);
                    } else {
                        rewrite = Some((Op::Transpose { perm: composed }, vec![src]));
                    }
                }
            }
            Op::CrossEntropy => {
                if let Some((Op::Softmax, inner)) = def_op(args[0])
                    && g.ty(args[0]).rank() == 2
                {
                    rewrite = Some((Op::SoftmaxXent, vec![resolve(&subst, inner[0]), args[1]]));
                }
            }
            Op::Unary(Unary::Relu) => {
                relu_of[args[0].index()].get_or_insert(result);
            }
            Op::Unary(Unary::Step) => {
                if let Some(r) = relu_of[args[0].index()] {
                    rewrite = Some((Op::Unary(Unary::Step), vec![resolve(&subst, r)]));
                }
            }
            Op::ArgMax { axis } => {
                if let Some((Op::Softmax, inner)) = def_op(args[0])
                    && *axis + 1 == g.ty(args[0]).rank()
                {
                    rewrite = Some((Op::ArgMax { axis: *axis }, vec![resolve(&subst, inner[0])]));
                }
            }
            _ => {}
        }
        if let Some(v) = replace {
            subst[result.index()] = Some(v);
        } else if let Some((op, args)) = rewrite {
            g.insts[i].op = op;
            g.insts[i].args = args;
        }
    }
    super::substitute(&g, &subst)
}

#[cfg(test)]
mod tests {
    use crate::parse::parse_function;
    use crate::print::print;

    fn simplified(text: &str) -> String {
        let f = parse_function(text).unwrap();
        print(&crate::passes::dce::run(&super::run(&f)))
    }

    #[test]
    fn fuses_softmax_cross_entropy() {
        insta::assert_snapshot!(simplified(
            "func @f(%z: f32[4,3], %t: i32[4]) -> (f32[], i32[4]) {
               %p: f32[4,3] = softmax %z
               %loss: f32[] = cross_entropy %p, %t
               %pred: i32[4] = argmax %p, axis=1
               return %loss, %pred
             }"
        ), @r"
        func @f(%z: f32[4,3], %t: i32[4]) -> (f32[], i32[4]) {
          %loss: f32[] = softmax_xent %z, %t
          %pred: i32[4] = argmax %z, axis=1
          return %loss, %pred
        }
        ");
    }

    #[test]
    fn relu_derivative_reads_the_activation() {
        insta::assert_snapshot!(simplified(
            "func @f(%x: f32[4], %g: f32[4]) -> (f32[4], f32[4]) {
               %y: f32[4] = relu %x
               %m: f32[4] = step %x
               %dx: f32[4] = mul %g, %m
               return %y, %dx
             }"
        ), @r"
        func @f(%x: f32[4], %g: f32[4]) -> (f32[4], f32[4]) {
          %y: f32[4] = relu %x
          %m: f32[4] = step %y
          %dx: f32[4] = mul %g, %m
          return %y, %dx
        }
        ");
    }

    #[test]
    fn removes_identities() {
        insta::assert_snapshot!(simplified(
            "func @f(%x: f32[2,3]) -> (f32[2,3], f32[3,2]) {
               %one: f32[] = const value=1.0
               %zero: f32[] = const value=0.0
               %0: f32[2,3] = mul %x, %one
               %1: f32[2,3] = add %zero, %0
               %2: f32[2,3] = neg %1
               %3: f32[2,3] = neg %2
               %4: f32[3,2] = transpose %3, perm=[1,0]
               %5: f32[2,3] = transpose %4, perm=[1,0]
               %6: f32[6] = reshape %5, shape=[6]
               %7: f32[3,2] = reshape %6, shape=[3,2]
               return %5, %7
             }"
        ), @r"
        func @f(%x: f32[2,3]) -> (f32[2,3], f32[3,2]) {
          %0: f32[3,2] = reshape %x, shape=[3,2]
          return %x, %0
        }
        ");
    }
}
