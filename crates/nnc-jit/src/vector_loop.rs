//! Fused loops that run on the vector unit as an elementwise program
//! ([`nnc_kernels::elementwise`]) instead of their Cranelift function.
//!
//! Cranelift's x64 backend emits 128-bit vectors only, and a loop with a division or a
//! square root per element is then bound by the divider: every optimizer update but SGD's
//! and momentum's (Adam, Nadam, Adamax, AdaGrad, Adadelta, RMSProp with its options). The
//! same operations sixteen lanes wide take a fraction of that time, so such a loop, when
//! it is nothing but IEEE operations the program has over whole arrays and scalars, runs as
//! one: its stored values are the Cranelift loop's bits, its sums (a gradient's squared
//! norm) add the same terms in another order. (RMSProp's plain update has its own routine,
//! `updates`, which also flushes subnormal state.)

use std::collections::HashMap;

use nnc_ir::{Binary, DType, Function, Op, Unary, ValueId};
use nnc_kernels::Isa;
use nnc_kernels::elementwise::{
    self, MAX_ARRAYS, MAX_SCALARS, MAX_STORES, MAX_SUMS, Operand, Operation, Program,
};

use crate::kernel::{LoopKernel, splats};
use crate::plan::Plan;

/// A scalar operand: a constant, or a one-element value read from the arena when the loop
/// runs (a step-dependent factor, a scheduled rate).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scalar {
    Const(f32),
    At(usize),
}

/// A loop as an elementwise program over `n` contiguous elements (byte offsets in the
/// arena).
#[derive(Clone, Debug, PartialEq)]
pub struct VectorLoop {
    pub n: usize,
    program: Program,
    arrays: Vec<usize>,
    scalars: Vec<Scalar>,
    stores: Vec<usize>,
    /// Each sum's buffer, in the order of the loop's partial-sum slots.
    sums: Vec<usize>,
}

/// The loop as an elementwise program, if it divides or takes a square root and is nothing
/// but operations the program has, over whole f32 arrays of its shape and scalars.
pub fn recognise(f: &Function, l: &LoopKernel, plan: &Plan) -> Option<VectorLoop> {
    let op = |i: usize| &f.insts[i].op;
    let divides = l.insts.iter().any(|&i| {
        matches!(
            op(i),
            Op::Binary(Binary::Div) | Op::Unary(Unary::Sqrt | Unary::Recip)
        )
    });
    if !divides || l.shape.is_empty() {
        return None;
    }
    let n: usize = l.shape.iter().product();
    let f32_of = |v: ValueId| f.ty(v).dtype == DType::F32;
    let whole = |v: ValueId| f32_of(v) && f.ty(v).shape == l.shape;
    let consts = splats(f);
    let mut b = Builder {
        results: HashMap::new(),
        arrays: Vec::new(),
        scalars: Vec::new(),
        operations: Vec::new(),
    };
    let mut summed: HashMap<ValueId, usize> = HashMap::new();
    for &i in &l.insts {
        let inst = &f.insts[i];
        let mut operand = |v: ValueId| -> Option<Operand> {
            if let Some(&k) = b.results.get(&v) {
                return Some(Operand::Result(k));
            }
            if let Some(&c) = consts.get(&v) {
                return Some(b.scalar(Scalar::Const(c as f32)));
            }
            if !l.inputs.contains(&v) || !f32_of(v) {
                return None;
            }
            if whole(v) {
                Some(b.array(plan.at(v)))
            } else if f.ty(v).numel() == 1 {
                Some(b.scalar(Scalar::At(plan.at(v))))
            } else {
                None
            }
        };
        let operation = match (&inst.op, inst.args.as_slice()) {
            (Op::ReduceSum { .. }, &[x]) if l.reductions.contains(&inst.result) => {
                // A sum of the whole loop to one value, of a value it computes.
                let full = f.ty(inst.result).numel() == 1 && whole(x);
                let Some(Operand::Result(k)) = operand(x).filter(|_| full) else {
                    return None;
                };
                summed.insert(inst.result, k);
                continue;
            }
            (Op::Binary(bin), &[x, y]) => {
                let (x, y) = (operand(x)?, operand(y)?);
                match bin {
                    Binary::Add => Operation::Add(x, y),
                    Binary::Sub => Operation::Sub(x, y),
                    Binary::Mul => Operation::Mul(x, y),
                    Binary::Div => Operation::Div(x, y),
                    Binary::Max => Operation::Max(x, y),
                    Binary::Min => return None,
                }
            }
            (Op::Unary(u), &[x]) => {
                let x = operand(x)?;
                match u {
                    Unary::Neg => Operation::Neg(x),
                    Unary::Abs => Operation::Abs(x),
                    Unary::Sqrt => Operation::Sqrt(x),
                    Unary::Relu => Operation::Relu(x),
                    Unary::Step => Operation::Step(x),
                    // `1 / x`, as the generated loop divides.
                    Unary::Recip => Operation::Div(b.scalar(Scalar::Const(1.0)), x),
                    _ => return None,
                }
            }
            _ => return None,
        };
        if !whole(inst.result) {
            return None;
        }
        b.results.insert(inst.result, b.operations.len());
        b.operations.push(operation);
    }
    // The stored values in the loop's output order, and its sums in the order of their
    // partial-sum slots (the generated loop's: the outputs' order).
    let (mut stores, mut store_at, mut sums, mut sum_at) = (vec![], vec![], vec![], vec![]);
    for &v in &l.outputs {
        if let Some(&k) = summed.get(&v) {
            sums.push(k);
            sum_at.push(plan.at(v));
        } else {
            stores.push(*b.results.get(&v)?);
            store_at.push(plan.at(v));
        }
    }
    let program = Program {
        operations: b.operations,
        stores,
        sums,
    };
    let fits = program.stores.len() <= MAX_STORES && program.sums.len() <= MAX_SUMS;
    let fits = fits && b.arrays.len() <= MAX_ARRAYS && b.scalars.len() <= MAX_SCALARS;
    let every_sum = summed.len() == l.reductions.len() && sum_at.len() == summed.len();
    (fits && every_sum && program.valid(b.arrays.len(), b.scalars.len())).then_some(VectorLoop {
        n,
        program,
        arrays: b.arrays,
        scalars: b.scalars,
        stores: store_at,
        sums: sum_at,
    })
}

/// The program under construction: each loop value's operation, the arrays and scalars read.
struct Builder {
    results: HashMap<ValueId, usize>,
    arrays: Vec<usize>,
    scalars: Vec<Scalar>,
    operations: Vec<Operation>,
}

impl Builder {
    fn array(&mut self, at: usize) -> Operand {
        Operand::Array(index_of(&mut self.arrays, at))
    }

    fn scalar(&mut self, s: Scalar) -> Operand {
        Operand::Scalar(index_of(&mut self.scalars, s))
    }
}

/// `x`'s index in `list`, added at the end if it is not there.
fn index_of<T: PartialEq>(list: &mut Vec<T>, x: T) -> usize {
    match list.iter().position(|y| *y == x) {
        Some(k) => k,
        None => {
            list.push(x);
            list.len() - 1
        }
    }
}

impl VectorLoop {
    /// Runs elements `start..end` on the arena at `base`; the sums go to their buffers, or
    /// one after another from `base + partial` when `partial` is not 0 (the loop calling
    /// convention).
    ///
    /// # Safety
    /// `base` is the arena this loop was recognised in (every offset plus `4n` bytes lies
    /// inside it), `start ≤ end ≤ n`, the CPU supports `isa`, and no other thread touches
    /// elements `start..end` or the sums' destinations meanwhile.
    pub unsafe fn run(&self, isa: Isa, base: *mut u8, start: usize, end: usize, partial: u64) {
        debug_assert!(start <= end && end <= self.n);
        // SAFETY: forwarded: elements `start..end` of every array lie inside the arena and no
        // other thread touches them or the sums' destinations meanwhile (the caller's
        // contract), so the raw pointers alias nothing live; an output at an input's offset
        // is the update in place `elementwise::run` allows. The operand lists are fixed
        // arrays: nothing is allocated while the step runs.
        unsafe {
            let at = |off: usize| base.add(off).cast::<f32>().add(start);
            let mut arrays = [std::ptr::null::<f32>(); MAX_ARRAYS];
            for (p, &off) in arrays.iter_mut().zip(&self.arrays) {
                *p = at(off).cast_const();
            }
            let mut scalars = [0.0f32; MAX_SCALARS];
            for (x, s) in scalars.iter_mut().zip(&self.scalars) {
                *x = match *s {
                    Scalar::Const(c) => c,
                    Scalar::At(off) => *base.add(off).cast::<f32>(),
                };
            }
            let mut stores = [std::ptr::null_mut::<f32>(); MAX_STORES];
            for (p, &off) in stores.iter_mut().zip(&self.stores) {
                *p = at(off);
            }
            let mut sums = [0.0f32; MAX_SUMS];
            let count = self.sums.len();
            elementwise::run(
                isa,
                &self.program,
                (&arrays[..self.arrays.len()], &scalars[..self.scalars.len()]),
                &stores[..self.stores.len()],
                &mut sums[..count],
                end - start,
            );
            for (k, (&off, &sum)) in self.sums.iter().zip(&sums).enumerate() {
                let dst = if partial == 0 {
                    off
                } else {
                    partial as usize + 4 * k
                };
                *base.add(dst).cast::<f32>() = sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loops of `text` that are recognised.
    fn recognised(text: &str) -> Vec<VectorLoop> {
        crate::updates::tests::recognised_by(text, recognise)
    }

    /// Adamax's update: `m' = m·β₁ + g·(1 − β₁)`, `u' = max(u·β₂, |g|)`,
    /// `w' = w − (m'·c) / (u' + ε)` with `c` a step-dependent scalar, and `Σ g²`.
    const ADAMAX: &str = "func @f(%g: f32[8,4], %m: f32[8,4], %u: f32[8,4], %w: f32[8,4], %c: f32[]) -> (f32[8,4], f32[8,4], f32[8,4], f32[]) {
  %b1: f32[] = const value=0.9
  %omb1: f32[] = const value=0.1
  %b2: f32[] = const value=0.999
  %eps: f32[] = const value=1e-7
  %g2: f32[8,4] = mul %g, %g
  %norm: f32[] = reduce_sum %g2, axes=[0,1]
  %a: f32[8,4] = mul %m, %b1
  %b: f32[8,4] = mul %g, %omb1
  %m.new: f32[8,4] = add %a, %b
  %d: f32[8,4] = mul %u, %b2
  %ag: f32[8,4] = abs %g
  %u.new: f32[8,4] = max %d, %ag
  %e: f32[8,4] = add %u.new, %eps
  %s: f32[8,4] = mul %m.new, %c
  %q: f32[8,4] = div %s, %e
  %w.new: f32[8,4] = sub %w, %q
  return %w.new, %m.new, %u.new, %norm
}";

    #[test]
    fn an_update_with_a_division_is_recognised() {
        let found = recognised(ADAMAX);
        assert_eq!(found.len(), 1);
        let v = &found[0];
        assert_eq!(v.n, 32);
        assert_eq!((v.arrays.len(), v.stores.len(), v.sums.len()), (4, 3, 1));
        // β₁, 1 − β₁, β₂, ε and the step's factor, read when the loop runs.
        assert_eq!(v.scalars.len(), 5);
        assert!(v.scalars.iter().any(|s| matches!(s, Scalar::At(_))));
    }

    #[test]
    fn other_loops_are_not() {
        for (from, to) in [
            // No division or root: the generated loop is as fast.
            ("div %s, %e", "mul %s, %e"),
            // An operation the program does not have.
            ("abs %g", "exp %g"),
            ("max %d, %ag", "min %d, %ag"),
        ] {
            let text = ADAMAX.replace(from, to);
            assert!(recognised(&text).is_empty(), "{to}");
        }
        // A per-row operand (broadcast along the loop) is neither an array nor a scalar.
        let text = ADAMAX.replace("%c: f32[])", "%c: f32[8,1])");
        assert!(recognised(&text).is_empty());
    }
}
