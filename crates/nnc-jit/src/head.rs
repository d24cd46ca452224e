//! The loss head: softmax-cross-entropy forward and backward in one pass over the logits.
//!
//! A classifier's step computes, from the logits `z [B, K]` and the labels, the loss
//! (`softmax_xent`), the predictions (`argmax`), the number of correct ones (`eq` and a
//! `reduce_sum`), the gradient `(softmax(z) − onehot) · seed / B` (`softmax_xent_grad`) and the
//! output bias's gradient, its column sums (`reduce_sum` over the batch). Scheduled apart,
//! these are five kernels that read the logits three times and compute every exponential
//! twice. [`fuse_heads`] makes them one [`Head`] kernel: per row, one scan for the maximum
//! (which is also the argmax), one for the exponentials (into the gradient's row) and their
//! sum, one finishing the gradient row and adding it to the bias gradient
//! ([`nnc_kernels::loss::softmax_xent_head`]); this module recognises the head and gives the
//! routine its slices of the arena.
//!
//! The head computes exactly what the separate routines compute (the same maximum with the
//! same tie-breaking, the same sums in the same order), so fusing changes no bit of a step.

use nnc_ir::{Compare, Function, Op, ValueId};

use nnc_kernels::loss;

use crate::kernel::{Head, Kernel, LoopKernel, Schedule, Storage, root, writes};
use crate::plan::Plan;

/// Replaces each `softmax_xent` kernel and the kernels of its argmax, correct count, gradient
/// and bias gradient by one [`Kernel::Head`] where the schedule allows it (see the module).
pub fn fuse_heads(f: &Function, s: &mut Schedule) {
    let mut i = 0;
    while i < s.kernels.len() {
        if let Some((head, taken)) = head_at(f, s, i) {
            s.kernels[i] = Kernel::Head(head);
            // Remove from the back so that the indices stay valid.
            let mut taken = taken;
            taken.sort_unstable_by(|a, b| b.cmp(a));
            for k in taken {
                s.kernels.remove(k);
            }
        }
        i += 1;
    }
}

/// The head anchored at kernel `i` if it is a `softmax_xent`, with the indices of the other
/// kernels it absorbs.
fn head_at(f: &Function, s: &Schedule, i: usize) -> Option<(Head, Vec<usize>)> {
    let Kernel::Op { inst: xent } = s.kernels[i] else {
        return None;
    };
    if f.insts[xent].op != Op::SoftmaxXent {
        return None;
    }
    let (z, label) = (f.insts[xent].args[0], f.insts[xent].args[1]);
    if f.ty(z).shape.len() != 2 {
        return None;
    }
    let same = |a: ValueId, b: ValueId| root(s, a) == root(s, b);
    // The kernel writing each value; the absorbed work moves up to kernel `i`, so all it reads
    // from outside the head must be written by then.
    let mut defined = vec![None; f.types.len()];
    for (k, kernel) in s.kernels.iter().enumerate() {
        for v in writes(f, kernel) {
            defined[v.index()] = Some(k);
        }
    }
    let ready = |v: ValueId| defined[root(s, v).index()].is_none_or(|k| k < i);
    let lib_op = |k: usize| match s.kernels[k] {
        Kernel::Op { inst } => Some(inst),
        _ => None,
    };
    let later = || i + 1..s.kernels.len();
    let mut taken = Vec::new();
    let mut head = Head {
        xent,
        argmax: None,
        correct: None,
        grad: None,
        bias_grad: None,
    };

    head.argmax = later().find_map(|k| {
        let inst = lib_op(k)?;
        let ins = &f.insts[inst];
        (ins.op == Op::ArgMax { axis: 1 } && same(ins.args[0], z)).then(|| {
            taken.push(k);
            inst
        })
    });
    head.grad = later().find_map(|k| {
        let inst = lib_op(k)?;
        let ins = &f.insts[inst];
        (ins.op == Op::SoftmaxXentGrad
            && same(ins.args[0], z)
            && same(ins.args[1], label)
            && ready(ins.args[2]))
        .then(|| {
            taken.push(k);
            inst
        })
    });
    // A loop that is exactly one sum over the batch of the gradient.
    let sum_loop = |l: &LoopKernel, of: ValueId| -> Option<usize> {
        let [sum] = l.insts[..] else { return None };
        let ins = &f.insts[sum];
        (ins.op == Op::ReduceSum { axes: vec![0] }
            && same(ins.args[0], of)
            && l.outputs == [ins.result])
        .then_some(sum)
    };
    if let Some(g) = head.grad {
        let grad = f.insts[g].result;
        head.bias_grad = later().find_map(|k| match &s.kernels[k] {
            Kernel::Loop(l) => sum_loop(l, grad).inspect(|_| taken.push(k)),
            _ => None,
        });
    }
    if let Some(a) = head.argmax {
        let argmax = f.insts[a].result;
        // `eq` of the predictions and the labels (either way round), kept in registers, and
        // its sum over the batch.
        head.correct = later().find_map(|k| {
            let Kernel::Loop(l) = &s.kernels[k] else {
                return None;
            };
            let [eq, sum] = l.insts[..] else { return None };
            let (e, r) = (&f.insts[eq], &f.insts[sum]);
            let args_ok = (same(e.args[0], argmax) && same(e.args[1], label))
                || (same(e.args[0], label) && same(e.args[1], argmax));
            let ok = e.op == Op::Compare(Compare::Eq)
                && args_ok
                && s.storage[e.result.index()] == Storage::Register
                && r.op == Op::ReduceSum { axes: vec![0] }
                && r.args[0] == e.result
                && l.outputs == [r.result];
            ok.then(|| {
                taken.push(k);
                (eq, sum)
            })
        });
    }
    (!taken.is_empty()).then_some((head, taken))
}

/// A head kernel with its operands' byte offsets resolved.
#[derive(Clone, Debug)]
pub struct HeadKernel {
    rows: usize,
    classes: usize,
    z: usize,
    label: usize,
    loss: usize,
    seed: Option<usize>,
    argmax: Option<usize>,
    correct: Option<usize>,
    grad: Option<usize>,
    bias_grad: Option<usize>,
}

impl HeadKernel {
    pub fn new(f: &Function, h: &Head, plan: &Plan) -> HeadKernel {
        let at = |i: usize| plan.at(f.insts[i].result);
        let x = &f.insts[h.xent];
        let shape = &f.ty(x.args[0]).shape;
        HeadKernel {
            rows: shape[0],
            classes: shape[1],
            z: plan.at(x.args[0]),
            label: plan.at(x.args[1]),
            loss: at(h.xent),
            seed: h.grad.map(|g| plan.at(f.insts[g].args[2])),
            argmax: h.argmax.map(at),
            correct: h.correct.map(|(_, sum)| at(sum)),
            grad: h.grad.map(at),
            bias_grad: h.bias_grad.map(at),
        }
    }

    /// Runs the head on the arena at `base`.
    ///
    /// # Safety
    /// `base` must point to an arena laid out by the plan this kernel was built with: the
    /// logits, labels and seed are initialised, and the outputs overlap none of them nor each
    /// other (the plan never aliases a kernel's outputs with its inputs).
    pub unsafe fn run(&self, base: *mut u8) {
        let (b, k) = (self.rows, self.classes);
        // SAFETY (all views): offsets are the plan's, 64-byte aligned, each buffer of its
        // value's size; the outputs are disjoint from the inputs and from each other, and the
        // head is never split: it runs on one thread while no other kernel runs, so nothing
        // else references these buffers while the views live. Making a view cannot panic.
        let z = unsafe { std::slice::from_raw_parts(base.add(self.z) as *const f32, b * k) };
        let labels = unsafe { std::slice::from_raw_parts(base.add(self.label) as *const i32, b) };
        let f32_out = |off: usize, n: usize| unsafe {
            std::slice::from_raw_parts_mut(base.add(off) as *mut f32, n)
        };
        let argmax = self
            .argmax
            // SAFETY: as above; the predictions are i32.
            .map(|o| unsafe { std::slice::from_raw_parts_mut(base.add(o) as *mut i32, b) });
        let grad = self.grad.map(|o| f32_out(o, b * k));
        let bias = self.bias_grad.map(|o| f32_out(o, k));
        // As `softmax_xent_grad`: the seed over the batch.
        // SAFETY: the seed is an f32 scalar at its aligned offset, an input no one writes.
        let scale = self
            .seed
            .map_or(0.0, |o| unsafe { *(base.add(o) as *const f32) } / b as f32);
        let (loss, correct) = loss::softmax_xent_head(z, labels, k, scale, argmax, grad, bias);
        f32_out(self.loss, 1)[0] = loss;
        if let Some(o) = self.correct {
            f32_out(o, 1)[0] = correct;
        }
    }
}

#[cfg(test)]
mod tests {
    use nnc_ir::parse::parse_function;

    use super::*;
    use crate::schedule::schedule;

    const STEP: &str = "func @f(%z: f32[6,5], %label: i32[6]) -> (f32[], f32[], f32[6,5], f32[5]) {
  %loss: f32[] = softmax_xent %z, %label
  %0: i32[6] = argmax %z, axis=1
  %1: f32[6] = eq %0, %label
  %correct: f32[] = reduce_sum %1, axes=[0]
  %2: f32[] = const value=1.0
  %3: f32[6,5] = softmax_xent_grad %z, %label, %2
  %bias: f32[5] = reduce_sum %3, axes=[0]
  return %loss, %correct, %3, %bias
}";

    #[test]
    fn a_classifier_head_is_one_kernel() {
        let f = parse_function(STEP).expect("valid IR");
        let mut s = schedule(&f);
        assert_eq!(s.kernels.len(), 5, "{:?}", s.kernels);
        fuse_heads(&f, &mut s);
        assert_eq!(s.kernels.len(), 1, "{:?}", s.kernels);
        let Kernel::Head(h) = &s.kernels[0] else {
            panic!("{:?}", s.kernels)
        };
        assert_eq!(h.insts(), vec![0, 1, 2, 3, 5, 6]);
    }

    /// The head's results are the separate routines' bit for bit: each op alone is a library
    /// kernel (or a loop), the whole step one head.
    #[test]
    fn the_head_computes_the_separate_routines_bits() {
        use crate::{Options, Program};
        // Logits with ties, a large spread and a -0; labels with one out of range (clamped by
        // the loss, never equal to a prediction).
        let z: Vec<f32> = (0..30)
            .map(|i| match i {
                3 | 4 => 2.5,
                7 => -0.0,
                11 => 40.0,
                _ => ((i * 37 % 23) as f32 - 11.0) / 3.0,
            })
            .collect();
        let labels = [1, 4, 2, 0, 9, 3];
        let run = |text: &str| -> Vec<Vec<u32>> {
            let f = parse_function(text).expect("valid IR");
            let mut p = Program::compile(&f, Options::default()).expect("compiles");
            p.f32_param(0).expect("z").copy_from_slice(&z);
            p.i32_param(1).expect("labels").copy_from_slice(&labels);
            p.run();
            (0..f.results.len())
                .map(|k| p.result(k).iter().map(|x| x.to_bits()).collect())
                .collect()
        };
        let fused = run(STEP);
        let args = "(%z: f32[6,5], %label: i32[6])";
        let loss = run(&format!(
            "func @f{args} -> (f32[]) {{\n  %0: f32[] = softmax_xent %z, %label\n  return %0\n}}"
        ));
        let correct = run(&format!(
            "func @f{args} -> (f32[]) {{\n  %0: i32[6] = argmax %z, axis=1\n  \
             %1: f32[6] = eq %0, %label\n  %2: f32[] = reduce_sum %1, axes=[0]\n  return %2\n}}"
        ));
        let grads = run(&format!(
            "func @f{args} -> (f32[6,5], f32[5]) {{\n  %0: f32[] = const value=1.0\n  \
             %1: f32[6,5] = softmax_xent_grad %z, %label, %0\n  \
             %2: f32[5] = reduce_sum %1, axes=[0]\n  return %1, %2\n}}"
        ));
        assert_eq!(fused[0], loss[0], "loss");
        assert_eq!(fused[1], correct[0], "correct");
        assert_eq!(fused[2], grads[0], "gradient");
        assert_eq!(fused[3], grads[1], "bias gradient");
    }

    #[test]
    fn a_seed_computed_after_the_loss_keeps_the_gradient_apart() {
        // The seed is computed from the loss: the gradient cannot move up to it.
        let text = "func @f(%z: f32[6,5], %label: i32[6]) -> (f32[], f32[6,5]) {
  %loss: f32[] = softmax_xent %z, %label
  %0: f32[] = exp %loss
  %1: f32[6,5] = softmax_xent_grad %z, %label, %0
  return %loss, %1
}";
        let f = parse_function(text).expect("valid IR");
        let mut s = schedule(&f);
        let before = s.kernels.clone();
        fuse_heads(&f, &mut s);
        assert_eq!(s.kernels, before);
    }
}
