//! Dead-code elimination: drops instructions whose values no result needs.

use crate::function::Function;

pub fn run(f: &Function) -> Function {
    let mut live = vec![false; f.types.len()];
    for r in &f.results {
        live[r.index()] = true;
    }
    for inst in f.insts.iter().rev() {
        if live[inst.result.index()] {
            for a in &inst.args {
                live[a.index()] = true;
            }
        }
    }
    let keep: Vec<bool> = f.insts.iter().map(|i| live[i.result.index()]).collect();
    f.compact(&keep)
}

#[cfg(test)]
mod tests {
    use crate::parse::parse_function;
    use crate::print::print;

    #[test]
    fn drops_unused_values_keeps_params() {
        let f = parse_function(
            "func @f(%x: f32[2], %unused: f32[2]) -> (f32[2]) {
               %0: f32[2] = exp %x
               %1: f32[2] = neg %x
               %2: f32[2] = log %1
               return %0
             }",
        )
        .unwrap();
        insta::assert_snapshot!(print(&super::run(&f)), @r"
        func @f(%x: f32[2], %unused: f32[2]) -> (f32[2]) {
          %0: f32[2] = exp %x
          return %0
        }
        ");
    }
}
