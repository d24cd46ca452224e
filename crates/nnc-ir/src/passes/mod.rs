//! Passes over a function, each a small module with its own text-IR tests.
//!
//! The order (see [`optimize`]): `decompose` writes the ops that exist for their derivative
//! as primitives (once, first: the function has been differentiated); then `simplify` canonicalises (fusing softmax + cross-entropy,
//! removing identities), `fold` evaluates constant subexpressions, `cse` merges duplicates,
//! `dce` drops what no result needs. The sequence is repeated until nothing changes. The
//! verifier runs after each pass, in every build.

pub mod cse;
pub mod dce;
pub mod decompose;
pub mod fold;
pub mod simplify;

use crate::function::{Function, ValueId};
use crate::verify::verify_after;

/// Runs the pass pipeline to a fixed point.
pub fn optimize(f: &Function) -> Function {
    let mut f = decompose::run(f);
    verify_after(&f, "decompose");
    // The text of the function before each round: one print per round.
    let mut before = crate::print::print(&f);
    for _ in 0..8 {
        f = simplify::run(&f);
        verify_after(&f, "simplify");
        f = fold::run(&f);
        verify_after(&f, "fold");
        f = cse::run(&f);
        verify_after(&f, "cse");
        f = dce::run(&f);
        verify_after(&f, "dce");
        let after = crate::print::print(&f);
        if after == before {
            break;
        }
        before = after;
    }
    f
}

/// Replaces uses of values according to `subst` (applied transitively) and compacts the
/// function, dropping the instructions that defined replaced values.
pub(crate) fn substitute(f: &Function, subst: &[Option<ValueId>]) -> Function {
    let resolve = |mut v: ValueId| {
        while let Some(r) = subst[v.index()] {
            v = r;
        }
        v
    };
    let mut g = f.clone();
    // A replaced value's name moves to its replacement, so dumps keep saying `c1.bias.grad`.
    for (v, to) in subst.iter().enumerate() {
        if to.is_some() && g.names[v].is_some() {
            let to = resolve(ValueId(v as u32));
            if g.names[to.index()].is_none() && !g.params.contains(&to) {
                g.names[to.index()] = g.names[v].take();
            }
        }
    }
    for inst in &mut g.insts {
        for a in &mut inst.args {
            *a = resolve(*a);
        }
    }
    for r in &mut g.results {
        *r = resolve(*r);
    }
    let keep: Vec<bool> = g
        .insts
        .iter()
        .map(|i| subst[i.result.index()].is_none())
        .collect();
    g.compact(&keep)
}
