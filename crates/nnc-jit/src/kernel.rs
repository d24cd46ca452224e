//! What a schedule is made of: the kernels of a compiled step (fused loops, library
//! routines, library routines with their loops fused in, the loss head) in the order they
//! run, and how each value is held at run time. Every later stage (fusion, the buffer plan,
//! code generation, the program) reads these; [`crate::schedule`] makes them.

use nnc_ir::{Function, Op, ValueId};

/// A unit of work in the compiled step.
#[derive(Clone, Debug, PartialEq)]
pub enum Kernel {
    /// A fused elementwise loop over `shape`.
    Loop(LoopKernel),
    /// One instruction run by a library routine.
    Op { inst: usize },
    /// A library routine split in parts over the threads, each running the loops on its part:
    /// a prologue writing the first operand, an epilogue reading the result (see [`fuse`]).
    ///
    /// [`fuse`]: crate::fuse
    Fused {
        prologue: Option<LoopKernel>,
        inst: usize,
        epilogue: Option<LoopKernel>,
    },
    /// Softmax-cross-entropy forward and backward with the predictions, their count and the
    /// output bias's gradient, in one pass over the logits (see [`head`]).
    ///
    /// [`head`]: crate::head
    Head(Head),
}

/// A fused elementwise loop.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopKernel {
    /// The iteration space: the shape of every member's result.
    pub shape: Vec<usize>,
    /// Member instructions, in program order.
    pub insts: Vec<usize>,
    /// Values read from memory (produced outside the loop), in first-use order.
    pub inputs: Vec<ValueId>,
    /// Members' values that are stored: used after the loop or returned.
    pub outputs: Vec<ValueId>,
    /// The outputs that are sums (`reduce_sum` members), accumulated over the loop.
    pub reductions: Vec<ValueId>,
    /// Run over a band of its last axis (the epilogue of a contraction split by columns):
    /// the range a call gives bounds the innermost loop, not the outermost, and the last
    /// axis is never coalesced with the others.
    pub band: bool,
}

/// How each value is held at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// A function parameter: data, weights or optimizer state.
    Param,
    /// A constant of one repeated value: inlined by loops, in the constant region for others.
    Splat,
    /// A constant given element by element, in the constant region.
    Const,
    /// Shares the buffer of another value (a reshape).
    View(ValueId),
    /// A slice of another value, read in place by loops with that value's strides
    /// ([`crate::window`]).
    Window(ValueId),
    /// The u8 parameter's bytes, times a `to_f32`'s scale: no buffer, read as bytes by the
    /// contractions that use it (`image_data::read_as_bytes`).
    Scaled(ValueId),
    /// Its own buffer, written by a kernel.
    Buffer,
    /// Lives in registers inside a loop kernel only.
    Register,
}

/// The kernels of a function and the storage of each value.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub kernels: Vec<Kernel>,
    pub storage: Vec<Storage>,
}

/// The value of each `const` of `f` (one value repeated: what loops inline as a splat).
pub fn splats(f: &Function) -> std::collections::HashMap<ValueId, f64> {
    f.insts
        .iter()
        .filter_map(|i| match i.op {
            Op::Const { value } => Some((i.result, value)),
            _ => None,
        })
        .collect()
}

/// Whether an instruction can be a member of a fused loop.
pub fn is_elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_)
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Select
            | Op::ToF32 { .. }
            | Op::Broadcast { .. }
    )
}

/// Whether instruction `user` is the only reader of `v`, and `v` is not returned: a kernel
/// that fuses both may keep `v` to itself (the recognised routines never store it).
pub fn used_only_by(f: &Function, v: ValueId, user: usize) -> bool {
    !f.results.contains(&v)
        && f.insts
            .iter()
            .enumerate()
            .all(|(i, inst)| i == user || !inst.args.contains(&v))
}

/// The value whose buffer `v` uses (following views, and scaled bytes to their parameter).
pub fn root(s: &Schedule, mut v: ValueId) -> ValueId {
    while let Storage::View(of) | Storage::Scaled(of) | Storage::Window(of) = s.storage[v.index()] {
        v = of;
    }
    v
}

/// Every value kernel `k` reads from memory.
pub fn reads(f: &Function, k: &Kernel) -> Vec<ValueId> {
    match k {
        Kernel::Loop(l) => l.inputs.clone(),
        Kernel::Op { inst } => f.insts[*inst].args.clone(),
        Kernel::Fused {
            prologue,
            inst,
            epilogue,
        } => {
            let mut v: Vec<ValueId> = prologue.iter().flat_map(|l| l.inputs.clone()).collect();
            v.extend(f.insts[*inst].args.iter().copied());
            v.extend(epilogue.iter().flat_map(|l| l.inputs.clone()));
            v
        }
        Kernel::Head(h) => h.reads(f),
    }
}

/// Every value kernel `k` writes.
pub fn writes(f: &Function, k: &Kernel) -> Vec<ValueId> {
    match k {
        Kernel::Loop(l) => l.outputs.clone(),
        Kernel::Op { inst } => vec![f.insts[*inst].result],
        Kernel::Fused {
            prologue,
            inst,
            epilogue,
        } => {
            let mut v: Vec<ValueId> = prologue.iter().flat_map(|l| l.outputs.clone()).collect();
            v.push(f.insts[*inst].result);
            v.extend(epilogue.iter().flat_map(|l| l.outputs.clone()));
            v
        }
        Kernel::Head(h) => h.writes(f),
    }
}

/// The instructions a head kernel runs (indices into the function's instructions).
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    /// `softmax_xent %z, %label`: the anchor; the others are optional.
    pub xent: usize,
    /// `argmax %z, axis=1`.
    pub argmax: Option<usize>,
    /// `eq %argmax, %label` and the `reduce_sum` of it: the correct predictions.
    pub correct: Option<(usize, usize)>,
    /// `softmax_xent_grad %z, %label, %seed`.
    pub grad: Option<usize>,
    /// `reduce_sum %grad, axes=[0]`: the output bias's gradient.
    pub bias_grad: Option<usize>,
}

impl Head {
    /// Every member instruction, in program order of the roles.
    pub fn insts(&self) -> Vec<usize> {
        let mut v = vec![self.xent];
        v.extend(self.argmax);
        if let Some((eq, sum)) = self.correct {
            v.extend([eq, sum]);
        }
        v.extend(self.grad);
        v.extend(self.bias_grad);
        v
    }

    /// The values read from memory: the logits, the labels and the gradient's seed.
    pub fn reads(&self, f: &Function) -> Vec<ValueId> {
        let mut v = f.insts[self.xent].args.clone();
        if let Some(g) = self.grad {
            v.push(f.insts[g].args[2]);
        }
        v
    }

    /// The values written: the loss and whichever of the others it computes.
    pub fn writes(&self, f: &Function) -> Vec<ValueId> {
        let mut v = vec![f.insts[self.xent].result];
        let result = |i: usize| f.insts[i].result;
        v.extend(self.argmax.map(result));
        v.extend(self.correct.map(|(_, sum)| result(sum)));
        v.extend(self.grad.map(result));
        v.extend(self.bias_grad.map(result));
        v
    }
}
