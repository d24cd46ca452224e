//! Common-subexpression elimination: an instruction identical to an earlier one (same op,
//! attributes and operands) is replaced by it. All ops are pure, including `random_uniform`,
//! whose numbers are a function of its key.

use std::collections::HashMap;

use crate::function::{Function, ValueId};

pub fn run(f: &Function) -> Function {
    let mut seen: HashMap<String, ValueId> = HashMap::new();
    let mut subst: Vec<Option<ValueId>> = vec![None; f.types.len()];
    let resolve = |subst: &[Option<ValueId>], v: ValueId| subst[v.index()].unwrap_or(v);
    for inst in &f.insts {
        let args: Vec<ValueId> = inst.args.iter().map(|&a| resolve(&subst, a)).collect();
        // The op's printed form (name and attributes) plus operands and type is its identity.
        let attrs: Vec<String> = inst
            .op
            .attrs()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let key = format!(
            "{} {:?} {} {}",
            inst.op.name(),
            args,
            attrs.join(","),
            f.ty(inst.result)
        );
        match seen.get(&key) {
            // A named value is kept: its name is what a reader (or a result) refers to.
            Some(&prev) if f.name_of(inst.result).is_none() => {
                subst[inst.result.index()] = Some(prev)
            }
            Some(_) => {}
            None => {
                seen.insert(key, inst.result);
            }
        }
    }
    super::substitute(f, &subst)
}

#[cfg(test)]
mod tests {
    use crate::parse::parse_function;
    use crate::print::print;

    #[test]
    fn merges_identical_instructions() {
        let f = parse_function(
            "func @f(%x: f32[2]) -> (f32[2]) {
               %0: f32[2] = exp %x
               %1: f32[2] = exp %x
               %2: f32[2] = add %0, %1
               %3: f32[] = const value=2.0
               %4: f32[] = const value=2.0
               %5: f32[2] = mul %2, %3
               %6: f32[2] = mul %2, %4
               %7: f32[2] = sub %5, %6
               return %7
             }",
        )
        .unwrap();
        insta::assert_snapshot!(print(&super::run(&f)), @r"
        func @f(%x: f32[2]) -> (f32[2]) {
          %0: f32[2] = exp %x
          %1: f32[2] = add %0, %0
          %2: f32[] = const value=2.0
          %3: f32[2] = mul %1, %2
          %4: f32[2] = sub %3, %3
          return %4
        }
        ");
    }
}
