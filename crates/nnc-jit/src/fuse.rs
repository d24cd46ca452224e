//! Fusing loops into the library kernels they feed or follow.
//!
//! A library kernel that splits into parts over the threads (a contraction by rows or columns,
//! a convolution by samples, a pooling by planes) can take a loop on each side, run by each
//! thread on the part it claimed: a *prologue* that produces the kernel's first operand (a layer's
//! bias and activation before the next contraction, the u8 → f32 image scaling before a
//! padding) and an *epilogue* that consumes its result (bias, activation, activation-gradient
//! mask and the bias-gradient sum after it, an optimizer update after a gradient). A thread
//! then reads what it has just written while it is still in its cache, and the step has one
//! join instead of three.
//!
//! Which kernels take loops does not depend on the number of threads (only on whether the
//! kernel's work would split in two), so one thread runs the same kernels, each as one part;
//! where a kernel's parts do not fall on whole iterations of a loop, it does not take it.
//!
//! A loop joins a kernel only if each thread's part of it is exactly what that thread's part
//! of the kernel writes (an epilogue) or reads of the first operand (a prologue), in whole
//! outer iterations of the loop; the loop is moved next to the kernel when the order allows.
//! A contraction split by columns (a short, wide result: LeNet-5's dense layers) takes an
//! epilogue over its result's shape, each thread running it on the columns it wrote (a loop
//! over a band of its last axis, `LoopKernel::band`).
//! A kernel too small to split runs whole on one thread, its loops whole before and after it
//! (a small contraction with its bias and activation: one dispatch, the result still in L1).

use nnc_ir::{Function, Op};

use crate::kernel::{Kernel, LoopKernel, Schedule, reads, root, writes};
use crate::library::{LibKernel, Parts};

/// Attaches prologues and epilogues to the library kernels of `s` (see the module docs).
/// `split_small` and `threads`: as in [`crate::Options`].
pub fn fuse(f: &Function, s: &mut Schedule, split_small: bool, threads: usize) {
    // Epilogues first: a loop after a kernel usually consumes it.
    let mut i = 0;
    while i < s.kernels.len() {
        if let Some((j, band)) = epilogue_for(f, s, i, split_small, threads) {
            let Kernel::Loop(mut l) = s.kernels.remove(j) else {
                unreachable!("epilogues are loops")
            };
            l.band = band;
            attach(s, i, None, Some(l));
        }
        i += 1;
    }
    let mut i = 0;
    while i < s.kernels.len() {
        if let Some(j) = prologue_for(f, s, i, split_small, threads) {
            let Kernel::Loop(l) = s.kernels.remove(j) else {
                unreachable!("prologues are loops")
            };
            // The kernel moved down by one.
            i -= 1;
            attach(s, i, Some(l), None);
        }
        i += 1;
    }
}

/// Makes kernel `i` a fused kernel with the given loops (keeping any it has).
fn attach(s: &mut Schedule, i: usize, pro: Option<LoopKernel>, epi: Option<LoopKernel>) {
    s.kernels[i] = match std::mem::replace(&mut s.kernels[i], Kernel::Op { inst: 0 }) {
        Kernel::Op { inst } => Kernel::Fused {
            prologue: pro,
            inst,
            epilogue: epi,
        },
        Kernel::Fused {
            prologue,
            inst,
            epilogue,
        } => Kernel::Fused {
            prologue: pro.or(prologue),
            inst,
            epilogue: epi.or(epilogue),
        },
        Kernel::Loop(_) | Kernel::Head(_) => unreachable!("only library kernels take loops"),
    };
}

/// How the loops of kernel `k` would divide, if it is a library kernel: its parts, or all on
/// one thread when it does not split.
fn split_parts(f: &Function, k: &Kernel, split_small: bool, threads: usize) -> Option<Parts> {
    let inst = match k {
        Kernel::Op { inst } | Kernel::Fused { inst, .. } => *inst,
        Kernel::Loop(_) | Kernel::Head(_) => return None,
    };
    let mut lib = LibKernel::shapes_only(f, &f.insts[inst]);
    lib.split_small = split_small;
    lib.threads = threads;
    // Unsplit, only contractions take loops: the loss head's routines are left to `head`.
    // (Whether the work would split in two, not whether it does on this many threads.)
    if lib.work_parts() < 2 && !matches!(lib.op, Op::MatMul { .. }) {
        return None;
    }
    lib.fused_parts()
}

/// Whether `ranges` fall on whole outer iterations of `l`: multiples of the elements under
/// its first axis (coalescing only merges axes, so this holds for the generated loop too).
fn aligned(l: &LoopKernel, ranges: &[(usize, usize)]) -> bool {
    let Some(&lead) = l.shape.first() else {
        return false;
    };
    let inner = l.shape.iter().product::<usize>() / lead.max(1);
    inner > 0
        && ranges
            .iter()
            .all(|&(lo, hi)| lo % inner == 0 && hi % inner == 0)
}

fn numel(l: &LoopKernel) -> usize {
    l.shape.iter().product()
}

/// The index of a loop that can be the epilogue of kernel `i` (it may move up to `i + 1`),
/// and whether it runs over bands of columns.
fn epilogue_for(
    f: &Function,
    s: &Schedule,
    i: usize,
    split_small: bool,
    threads: usize,
) -> Option<(usize, bool)> {
    let inst = match &s.kernels[i] {
        Kernel::Op { inst } => *inst,
        _ => return None,
    };
    let parts = split_parts(f, &s.kernels[i], split_small, threads)?;
    let result = f.insts[inst].result;
    let reads_result = |l: &LoopKernel| l.inputs.iter().any(|&v| root(s, v) == result);
    let j = (i + 1..s.kernels.len())
        .find(|&j| matches!(&s.kernels[j], Kernel::Loop(l) if reads_result(l)))?;
    let Kernel::Loop(l) = &s.kernels[j] else {
        return None;
    };
    // Everything else it reads is ready by kernel `i`; each thread's part of it is the part
    // of the result that thread wrote: whole outer iterations of rows, or (split by columns)
    // the same columns, when the loop iterates over the result's own shape.
    let defined_by = defining_kernels(f, s);
    let ready = l
        .inputs
        .iter()
        .all(|&v| defined_by[root(s, v).index()].is_none_or(|k| k <= i));
    let band = match (&parts.output, &parts.columns) {
        (Some(ranges), _) if numel(l) == f.ty(result).numel() && aligned(l, ranges) => false,
        (None, Some(_)) if l.shape == f.ty(result).shape && l.shape.len() == 2 => true,
        _ => return None,
    };
    ready.then_some((j, band))
}

/// The index of a loop that can be the prologue of kernel `i` (it may move down to `i - 1`).
fn prologue_for(
    f: &Function,
    s: &Schedule,
    i: usize,
    split_small: bool,
    threads: usize,
) -> Option<usize> {
    let inst = match &s.kernels[i] {
        Kernel::Op { inst } => *inst,
        Kernel::Fused {
            inst,
            prologue: None,
            ..
        } => *inst,
        _ => return None,
    };
    let ranges = split_parts(f, &s.kernels[i], split_small, threads)?.input?;
    let args = &f.insts[inst].args;
    let first = root(s, *args.first()?);
    let j = (0..i)
        .rev()
        .find(|&j| matches!(&s.kernels[j], Kernel::Loop(l) if l.outputs.contains(&first)))?;
    let Kernel::Loop(l) = &s.kernels[j] else {
        return None;
    };
    // Nothing between the loop and the kernel reads what the loop writes, the kernel reads
    // nothing else of it, and each thread's part of it is the part of the operand it reads.
    let read_between = s.kernels[j + 1..i]
        .iter()
        .any(|k| reads(f, k).iter().any(|v| l.outputs.contains(&root(s, *v))));
    let ok = !read_between
        && l.reductions.is_empty()
        && numel(l) == f.ty(first).numel()
        && aligned(l, &ranges)
        && args[1..].iter().all(|&a| !l.outputs.contains(&root(s, a)));
    ok.then_some(j)
}

/// The kernel that writes each value, `None` for parameters, constants and registers.
fn defining_kernels(f: &Function, s: &Schedule) -> Vec<Option<usize>> {
    let mut def = vec![None; f.types.len()];
    for (k, kernel) in s.kernels.iter().enumerate() {
        for v in writes(f, kernel) {
            def[v.index()] = Some(k);
        }
    }
    def
}

#[cfg(test)]
mod tests {
    use nnc_ir::parse::parse_function;

    use super::*;
    use crate::schedule::schedule;

    fn fused(text: &str) -> Vec<Kernel> {
        let f = parse_function(text).expect("valid IR");
        let mut s = schedule(&f);
        fuse(&f, &mut s, false, 2);
        s.kernels
    }

    /// The loop ops of a kernel's prologue and epilogue, by op name.
    fn loops(f: &str, k: &Kernel) -> (Vec<String>, Vec<String>) {
        let f = parse_function(f).expect("valid IR");
        let names = |l: &Option<LoopKernel>| {
            l.iter()
                .flat_map(|l| l.insts.iter().map(|&i| f.insts[i].op.name().to_string()))
                .collect()
        };
        match k {
            Kernel::Fused {
                prologue, epilogue, ..
            } => (names(prologue), names(epilogue)),
            _ => (Vec::new(), Vec::new()),
        }
    }

    /// The scaling of the u8 data is read by the contraction itself (see
    /// `image_data::read_as_bytes`); bias and activation join it as its epilogue.
    #[test]
    fn scaling_bias_and_activation_join_a_tall_contraction() {
        let text = "func @f(%x: u8[512,64], %w: f32[64,32], %b: f32[32]) -> (f32[512,32]) {
  %0: f32[512,64] = to_f32 %x, scale=0.5
  %1: f32[512,32] = matmul %0, %w
  %2: f32[512,32] = add %1, %b
  %3: f32[512,32] = relu %2
  return %3
}";
        let kernels = fused(text);
        assert_eq!(kernels.len(), 1, "{kernels:?}");
        assert_eq!(
            loops(text, &kernels[0]),
            (Vec::<String>::new(), vec!["add".into(), "relu".into()])
        );
    }

    /// Too small to split, a contraction runs on one thread with its loops whole.
    #[test]
    fn a_small_contraction_takes_its_loops_whole() {
        let text = "func @f(%x: f32[8,16], %w: f32[16,4], %b: f32[4]) -> (f32[8,4]) {
  %0: f32[8,16] = mul %x, %x
  %1: f32[8,4] = matmul %0, %w
  %2: f32[8,4] = add %1, %b
  %3: f32[8,4] = relu %2
  return %3
}";
        let kernels = fused(text);
        assert_eq!(kernels.len(), 1, "{kernels:?}");
        assert_eq!(
            loops(text, &kernels[0]),
            (vec!["mul".into()], vec!["add".into(), "relu".into()])
        );
    }

    /// Split by columns, a contraction takes no prologue (each thread reads all of its first
    /// operand), and its epilogue runs on each thread's columns.
    #[test]
    fn a_wide_contraction_takes_its_epilogue_by_columns() {
        let text = "func @f(%x: f32[64,64], %w: f32[64,512], %b: f32[512]) -> (f32[64,512]) {
  %0: f32[64,64] = mul %x, %x
  %1: f32[64,512] = matmul %0, %w
  %2: f32[64,512] = add %1, %b
  return %2
}";
        let kernels = fused(text);
        assert_eq!(kernels.len(), 2, "{kernels:?}");
        assert!(matches!(kernels[0], Kernel::Loop(_)));
        let Kernel::Fused {
            prologue: None,
            epilogue: Some(e),
            ..
        } = &kernels[1]
        else {
            panic!("{kernels:?}")
        };
        assert!(e.band);
        assert_eq!(loops(text, &kernels[1]), (Vec::new(), vec!["add".into()]));
    }

    /// A bias-corrected update reads a scalar of the step count, which the function computes
    /// after the gradient: the scheduler runs it first, so the update can still be the
    /// gradient's epilogue.
    #[test]
    fn a_step_count_update_joins_the_gradient_it_follows() {
        let text = "func @f(%x: f32[512,64], %g: f32[512,32], %w: f32[64,32], %t: f32[]) -> (f32[64,32], f32[]) {
  %0: f32[64,32] = matmul_tn %x, %g
  %1: f32[] = const value=1.0
  %t.new: f32[] = add %t, %1
  %2: f32[] = sqrt %t.new
  %3: f32[64,32] = mul %0, %2
  %w.new: f32[64,32] = sub %w, %3
  return %w.new, %t.new
}";
        let kernels = fused(text);
        assert_eq!(kernels.len(), 2, "{kernels:?}");
        assert!(matches!(&kernels[0], Kernel::Loop(l) if l.shape.is_empty()));
        assert_eq!(
            loops(text, &kernels[1]),
            (Vec::new(), vec!["mul".into(), "sub".into()])
        );
    }

    #[test]
    fn a_loop_waiting_for_a_later_kernel_stays_where_it_is() {
        // The epilogue candidate also reads the second contraction's result, which the first
        // contraction's threads cannot wait for.
        let text = "func @f(%x: f32[512,64], %w: f32[64,32], %v: f32[64,32]) -> (f32[512,32]) {
  %0: f32[512,32] = matmul %x, %w
  %1: f32[512,32] = matmul %x, %v
  %2: f32[512,32] = add %0, %1
  return %2
}";
        let kernels = fused(text);
        assert!(matches!(kernels[0], Kernel::Op { .. }), "{kernels:?}");
        assert_eq!(
            loops(text, &kernels[1]),
            (Vec::new(), vec!["add".to_string()])
        );
    }

    #[test]
    fn a_prologue_whose_output_the_kernel_reads_twice_is_not_taken() {
        // `%0` is both operands: the other thread reads all of it.
        let text = "func @f(%x: f32[512,512]) -> (f32[512,512]) {
  %0: f32[512,512] = mul %x, %x
  %1: f32[512,512] = matmul %0, %0
  return %1
}";
        let kernels = fused(text);
        assert_eq!(kernels.len(), 2, "{kernels:?}");
    }
}
