//! Optimizer updates recognised in fused loops and run on the vector unit (AVX-512 or AVX2,
//! [`nnc_kernels::rmsprop`]).
//!
//! An RMSProp update takes a square root and a division per weight. Cranelift's x64 backend
//! emits 128-bit vectors only, and there the divider bounds the loop: measured over the
//! MLP's 784×512 weights, one thread, 206 µs per pass with 128-bit vectors against 61 µs with
//! 512-bit ones (and 53 µs for the same memory traffic without the root and division). So
//! the loop that `nnc-ir`'s `optim` emits for RMSProp is recognised here, operation by
//! operation, and run by a vector routine that performs the same IEEE operations in the
//! same order: its weights and state are bit-identical to the Cranelift loop's, with one
//! exception, below; the squared gradient norm, a sum, is added in another order.
//!
//! The exception: the mean square `s` is read and stored with subnormal values (below
//! 1.2·10⁻³⁸) as zero. The weights of pixels that are almost always 0 get a gradient now and
//! then, and their `s` then decays by ρ per step through the subnormal range for some 150
//! steps; arithmetic on subnormals takes a slow path on this CPU, which made the MLP's epoch
//! 0.41 s instead of 0.30 s (`nnc train models/mlp.nn`). Their gradient is zero while `s`
//! decays, so the weights do not change either way; when a gradient returns, `s` is
//! `0.1·g²` give or take less than 10⁻³⁸. (Running the whole step with the CPU's
//! flush-to-zero mode gives the same speed, but changing that mode under Rust code is
//! undefined behaviour.)
//!
//! A loop that differs in any way (weight decay, another optimizer, broadcast operands) is
//! not recognised here: `vector_loop` runs it as an elementwise program where it divides over
//! whole arrays and scalars (without the flush), else it stays on Cranelift.

use std::collections::HashMap;

use nnc_ir::{Binary, DType, Function, Op, Unary, ValueId};

use nnc_kernels::{Isa, rmsprop};

use crate::kernel::LoopKernel;
use crate::plan::Plan;

/// `s' = s·ρ + (g·g)·(1 − ρ)`, `w' = w − (g·lr) / √(s' + ε)`, and optionally `‖g‖² = Σ g·g`,
/// over `n` contiguous floats (byte offsets in the arena).
#[derive(Clone, Debug, PartialEq)]
pub struct RmsProp {
    pub n: usize,
    pub g: usize,
    pub s: usize,
    pub w: usize,
    pub s_new: usize,
    pub w_new: usize,
    /// The squared-norm sum, if the loop computes it (the loop's only sum).
    pub norm: Option<usize>,
    pub rho: f32,
    pub one_minus_rho: f32,
    pub eps: f32,
    pub lr: Rate,
}

/// The learning rate of an update: a constant, or a scheduled rate read from the arena when
/// the update runs (the step's `lr` parameter, a byte offset).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    Const(f32),
    At(usize),
}

/// The loop as an RMSProp update, if it is exactly one (see the module docs).
pub fn recognise(f: &Function, l: &LoopKernel, plan: &Plan) -> Option<RmsProp> {
    let n: usize = l.shape.iter().product();
    // Every operand is a whole f32 tensor of the loop's shape, read or written at the loop's
    // own index, or a splat constant.
    let def: HashMap<ValueId, usize> = l.insts.iter().map(|&i| (f.insts[i].result, i)).collect();
    let whole = |v: ValueId| f.ty(v).dtype == DType::F32 && f.ty(v).shape == l.shape;
    // A scheduled rate: a scalar f32 parameter of the step.
    let rate_param = |v: ValueId| {
        f.params.contains(&v) && f.ty(v).dtype == DType::F32 && f.ty(v).shape.is_empty()
    };
    if !l.inputs.iter().all(|&v| whole(v) || rate_param(v)) {
        return None;
    }
    let splat = |v: ValueId| {
        f.insts
            .iter()
            .find(|i| i.result == v)
            .and_then(|i| match i.op {
                Op::Const { value } if !def.contains_key(&v) => Some(value as f32),
                _ => None,
            })
    };
    let op = |v: ValueId| def.get(&v).map(|&i| (&f.insts[i].op, &f.insts[i].args[..]));
    // `a · c` or `c · a` with `c` a splat: (a, c).
    let scaled = |v: ValueId| match op(v)? {
        (Op::Binary(Binary::Mul), &[a, b]) => match (splat(a), splat(b)) {
            (None, Some(c)) => Some((a, c)),
            (Some(c), None) => Some((b, c)),
            _ => None,
        },
        _ => None,
    };
    let input = |v: ValueId| l.inputs.contains(&v).then_some(v);

    // w' = w − q; q = m / r; m = g·lr; r = √d; d = s' + ε; s' = s·ρ + g²·(1 − ρ); g² = g·g.
    let (&w_new, (w, q)) = l.outputs.iter().find_map(|v| match op(*v)? {
        (Op::Binary(Binary::Sub), &[w, q]) => Some((v, (input(w)?, q))),
        _ => None,
    })?;
    let (m, r) = match op(q)? {
        (Op::Binary(Binary::Div), &[m, r]) => (m, r),
        _ => return None,
    };
    let (g, lr) = match scaled(m) {
        Some((g, c)) => (g, Rate::Const(c)),
        None => match op(m)? {
            (Op::Binary(Binary::Mul), &[g, r]) if rate_param(r) && l.inputs.contains(&r) => {
                (g, Rate::At(plan.at(r)))
            }
            _ => return None,
        },
    };
    let d = match op(r)? {
        (Op::Unary(Unary::Sqrt), &[d]) => d,
        _ => return None,
    };
    let (s_new, eps) = match op(d)? {
        (Op::Binary(Binary::Add), &[a, b]) => match (splat(a), splat(b)) {
            (None, Some(e)) => (a, e),
            (Some(e), None) => (b, e),
            _ => return None,
        },
        _ => return None,
    };
    let (decayed, fresh) = match op(s_new)? {
        (Op::Binary(Binary::Add), &[a, b]) => (a, b),
        _ => return None,
    };
    // The two terms of s', in either order: (s, ρ) and (g², 1 − ρ).
    let squared =
        |v: ValueId| matches!(op(v), Some((Op::Binary(Binary::Mul), &[a, b])) if a == g && b == g);
    let ((s, rho), (g2, one_minus_rho)) = {
        let (x, y) = (scaled(decayed)?, scaled(fresh)?);
        if squared(y.0) {
            (x, y)
        } else if squared(x.0) {
            (y, x)
        } else {
            return None;
        }
    };
    whole(input(g)?).then_some(())?;
    whole(input(s)?).then_some(())?;
    whole(w).then_some(())?;
    // Nothing else in the loop: its members are exactly these, and it stores s', w' and
    // perhaps ‖g‖² = Σ g².
    let norm = match l.reductions.as_slice() {
        [] => None,
        [sum] => match op(*sum)? {
            (Op::ReduceSum { .. }, &[x]) if x == g2 => Some(*sum),
            _ => return None,
        },
        _ => return None,
    };
    let members: Vec<ValueId> = [w_new, q, m, r, d, s_new, decayed, fresh, g2]
        .into_iter()
        .chain(norm)
        .collect();
    let mut sorted = members.clone();
    sorted.sort_unstable_by_key(|v| v.0);
    sorted.dedup();
    let mut outputs = vec![w_new, s_new];
    outputs.extend(norm);
    outputs.sort_unstable_by_key(|v| v.0);
    let mut loop_outputs = l.outputs.clone();
    loop_outputs.sort_unstable_by_key(|v| v.0);
    if sorted.len() != members.len() || l.insts.len() != members.len() || outputs != loop_outputs {
        return None;
    }
    Some(RmsProp {
        n,
        g: plan.at(g),
        s: plan.at(s),
        w: plan.at(w),
        s_new: plan.at(s_new),
        w_new: plan.at(w_new),
        norm: norm.map(|v| plan.at(v)),
        rho,
        one_minus_rho,
        eps,
        lr,
    })
}

impl RmsProp {
    /// Runs elements `start..end` on the arena at `base`; the norm's partial sum goes to its
    /// buffer, or to `base + partial` when `partial` is not 0 (the loop calling convention).
    ///
    /// # Safety
    /// `base` is the arena this update was recognised in (every offset plus `4n` bytes lies
    /// inside it), `start ≤ end ≤ n`, the CPU supports `isa`, and no other thread touches
    /// elements `start..end` or the sum's destination meanwhile.
    pub unsafe fn run(&self, isa: Isa, base: *mut u8, start: usize, end: usize, partial: u64) {
        debug_assert!(start <= end && end <= self.n);
        // SAFETY: forwarded: elements `start..end` are inside the arena and no other thread
        // touches them or the sum's destination meanwhile (the caller's contract), so the raw
        // pointers alias nothing live; no references are made, and nothing here panics.
        unsafe {
            let at = |off: usize| base.add(off).cast::<f32>().add(start);
            let lr = match self.lr {
                Rate::Const(c) => c,
                Rate::At(off) => *base.add(off).cast::<f32>(),
            };
            let constants = rmsprop::Constants {
                rho: self.rho,
                one_minus_rho: self.one_minus_rho,
                eps: self.eps,
                lr,
            };
            let norm = rmsprop::update(
                isa,
                constants,
                [at(self.g), at(self.s), at(self.w)],
                [at(self.s_new), at(self.w_new)],
                end - start,
            );
            if let Some(off) = self.norm {
                let dst = if partial == 0 { off } else { partial as usize };
                *base.add(dst).cast::<f32>() = norm;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use nnc_ir::parse::parse_function;

    use super::*;
    use crate::kernel::Kernel;
    use crate::schedule::schedule;

    /// What `recognise` makes of the loops of `text`, scheduled and planned, where it
    /// recognises them.
    pub(crate) fn recognised_by<T>(
        text: &str,
        recognise: fn(&Function, &LoopKernel, &Plan) -> Option<T>,
    ) -> Vec<T> {
        let f = parse_function(text).expect("valid IR");
        let s = schedule(&f);
        let plan = crate::plan::plan(&f, &s);
        s.kernels
            .iter()
            .filter_map(|k| match k {
                Kernel::Loop(l) => recognise(&f, l, &plan),
                _ => None,
            })
            .collect()
    }

    /// The update loops of `text` that are recognised.
    fn recognised(text: &str) -> Vec<RmsProp> {
        recognised_by(text, recognise)
    }

    const RMSPROP: &str =
        "func @f(%g: f32[8,4], %s: f32[8,4], %w: f32[8,4]) -> (f32[8,4], f32[8,4], f32[]) {
  %rho: f32[] = const value=0.9
  %omr: f32[] = const value=0.1
  %eps: f32[] = const value=1e-7
  %lr: f32[] = const value=0.001
  %g2: f32[8,4] = mul %g, %g
  %norm: f32[] = reduce_sum %g2, axes=[0,1]
  %a: f32[8,4] = mul %s, %rho
  %b: f32[8,4] = mul %g2, %omr
  %s.new: f32[8,4] = add %a, %b
  %d: f32[8,4] = add %s.new, %eps
  %r: f32[8,4] = sqrt %d
  %m: f32[8,4] = mul %g, %lr
  %q: f32[8,4] = div %m, %r
  %w.new: f32[8,4] = sub %w, %q
  return %w.new, %s.new, %norm
}";

    #[test]
    fn the_rmsprop_loop_is_recognised_with_its_constants() {
        let found = recognised(RMSPROP);
        assert_eq!(found.len(), 1);
        let r = &found[0];
        assert_eq!(
            (r.n, r.rho, r.one_minus_rho, r.eps, r.lr),
            (32, 0.9, 0.1, 1e-7, Rate::Const(0.001))
        );
        assert!(r.norm.is_some());
    }

    #[test]
    fn a_scheduled_rate_is_read_from_its_parameter() {
        let text = RMSPROP
            .replace("%w: f32[8,4])", "%w: f32[8,4], %lr: f32[])")
            .replace("  %lr: f32[] = const value=0.001\n", "");
        let found = recognised(&text);
        assert_eq!(found.len(), 1, "{text}");
        // The fourth parameter, after three of 8·4 floats.
        assert_eq!(found[0].lr, Rate::At(3 * 128));
        // A scalar that is not a parameter is not a rate.
        let computed = text.replace("mul %g, %lr", "mul %g, %norm");
        assert!(recognised(&computed).is_empty());
    }

    #[test]
    fn any_other_loop_is_not() {
        // Another operation (w + q), an extra one (weight decay on g), another operand order
        // for the division.
        for (from, to) in [
            ("sub %w, %q", "add %w, %q"),
            ("%m: f32[8,4] = mul %g, %lr", "%m: f32[8,4] = mul %g, %g"),
            ("div %m, %r", "div %r, %m"),
        ] {
            let text = RMSPROP.replace(from, to);
            assert!(recognised(&text).is_empty(), "{to}");
        }
    }
}
