//! Reverse-mode differentiation inside the IR.
//!
//! Walks the function backwards from a scalar loss and emits each op's vector–Jacobian rule
//! (`ops::vjp`), summing gradients where a value fans out. Only values that depend on a
//! parameter being differentiated get a gradient: nothing is computed for the input images,
//! the labels or the constants, nor through piecewise-constant ops (comparisons, steps,
//! argmax), whose gradient is zero wherever it exists.

use crate::function::{Builder, Function, ValueId};
use crate::op::Op;
use crate::types::Type;

/// Appends to `f` the gradient of `loss` with respect to each of `wrt`, returning the new
/// function (whose results are `f`'s followed by the gradients, named `<param>.grad`).
pub fn grad(f: &Function, loss: ValueId, wrt: &[ValueId]) -> Result<Function, String> {
    if f.ty(loss) != &Type::scalar() {
        return Err(format!("the loss must be f32[], found {}", f.ty(loss)));
    }
    let mut g = f.clone();
    // Which values depend on a parameter we differentiate: only those need gradients.
    let mut needs = vec![false; f.types.len()];
    for &w in wrt {
        needs[w.index()] = true;
    }
    for inst in &f.insts {
        if !inst.op.is_piecewise_constant() && inst.args.iter().any(|a| needs[a.index()]) {
            needs[inst.result.index()] = true;
        }
    }
    let mut adj: Vec<Option<ValueId>> = vec![None; f.types.len()];
    let forward = f.insts.clone();
    let mut b = Builder { f: &mut g };
    adj[loss.index()] = Some(b.scalar(1.0));
    for inst in forward.iter().rev() {
        let Some(dout) = adj[inst.result.index()] else {
            continue;
        };
        if !needs[inst.result.index()] {
            continue;
        }
        let wants: Vec<bool> = inst.args.iter().map(|a| needs[a.index()]).collect();
        let grads = crate::ops::vjp(&mut b, &inst.op, &inst.args, inst.result, dout, &wants)
            .map_err(|e| format!("cannot differentiate `{}`: {e}", inst.op.name()))?;
        for ((&arg, want), grad) in inst.args.iter().zip(&wants).zip(grads) {
            if !want {
                continue;
            }
            let Some(grad) = grad else {
                return Err(format!(
                    "`{}` has no gradient with respect to operand {}, which depends on a parameter",
                    inst.op.name(),
                    arg.0
                ));
            };
            adj[arg.index()] = Some(match adj[arg.index()] {
                None => grad,
                Some(prev) => b.add(prev, grad),
            });
        }
    }
    let mut results = g.results.clone();
    for &w in wrt {
        let gw = match adj[w.index()] {
            Some(gw) => gw,
            // The loss does not depend on this parameter: its gradient is zero.
            None => g.push_typed(Op::Const { value: 0.0 }, Vec::new(), g.ty(w).clone()),
        };
        let name = format!("{}.grad", g.name_of(w).unwrap_or("param"));
        // A parameter whose gradient is another named value (rare) keeps that name.
        if g.name_of(gw).is_none() && !g.params.contains(&gw) {
            g.set_name(gw, name);
        }
        results.push(gw);
    }
    g.results = results;
    crate::verify::verify_after(&g, "autodiff");
    Ok(g)
}
