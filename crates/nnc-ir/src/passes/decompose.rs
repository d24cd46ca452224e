//! Decomposition: the ops that exist for their derivative ([`crate::op::Op::is_composite`]: leaky
//! ReLU, ELU, batch normalisation) become the primitives that every backend runs. It runs after
//! differentiation, so the backward pass keeps the derivative the op's rule wrote (an
//! activation's read from its result, batch normalisation's from its sums), while the forward
//! pass computes the op with ops the JIT fuses.

use std::collections::HashMap;

use crate::function::{Builder, Function, ValueId};
use crate::op::Op;
use crate::ops::{activation, normalize};

pub fn run(f: &Function) -> Function {
    if !f.insts.iter().any(|i| i.op.is_composite()) {
        return f.clone();
    }
    let mut g = Function::new(f.name.clone());
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for &p in &f.params {
        let name = f.name_of(p).unwrap_or("arg").to_string();
        map.insert(p, g.add_param(name, f.ty(p).clone()));
    }
    for inst in &f.insts {
        let args: Vec<ValueId> = inst.args.iter().map(|a| map[a]).collect();
        let b = &mut Builder { f: &mut g };
        let v = if let Op::BatchNorm { .. } = inst.op {
            normalize::decompose(b, &inst.op, &args)
        } else if inst.op.is_composite() {
            activation::decompose(b, &inst.op, args[0])
        } else {
            g.push_typed(inst.op.clone(), args, f.ty(inst.result).clone())
        };
        if let Some(n) = f.name_of(inst.result) {
            g.set_name(v, n.to_string());
        }
        map.insert(inst.result, v);
    }
    g.results = f.results.iter().map(|r| map[r]).collect();
    g
}

#[cfg(test)]
mod tests {
    use crate::parse::parse_function;
    use crate::print::print;

    #[test]
    fn writes_the_activations_as_primitives() {
        let f = parse_function(
            "func @f(%x: f32[4]) -> (f32[4], f32[4]) {
               %l: f32[4] = leaky_relu %x, alpha=0.1
               %e: f32[4] = elu %x, alpha=1.0
               return %l, %e
             }",
        )
        .unwrap();
        insta::assert_snapshot!(print(&super::run(&f)), @r"
        func @f(%x: f32[4]) -> (f32[4], f32[4]) {
          %0: f32[] = const value=0.0
          %1: f32[4] = gt %x, %0
          %2: f32[] = const value=0.1
          %3: f32[4] = mul %x, %2
          %l: f32[4] = select %1, %x, %3
          %4: f32[] = const value=0.0
          %5: f32[4] = gt %x, %4
          %6: f32[4] = min %x, %4
          %7: f32[4] = exp %6
          %8: f32[] = const value=1.0
          %9: f32[4] = sub %7, %8
          %10: f32[] = const value=1.0
          %11: f32[4] = mul %9, %10
          %e: f32[4] = select %5, %x, %11
          return %l, %e
        }
        ");
    }

    #[test]
    fn leaves_a_function_without_them_as_it_is() {
        let text = "func @f(%x: f32[4]) -> (f32[4]) {
          %0: f32[4] = relu %x
          return %0
        }";
        let f = parse_function(text).unwrap();
        assert_eq!(super::run(&f), f);
    }
}
