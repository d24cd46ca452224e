//! Slices read in place: a `slice` whose every reader is a fused loop (the gradient of a
//! `concat`'s operand, read by its activation mask or a fan-out sum) is no kernel and no
//! buffer: the loops read it from its operand's buffer at the slice's start, with the
//! operand's strides (`Storage::Window`; `Plan::strides`). A slice that a library kernel, the
//! loss head or a view reads, or that is returned, stays a copy.

use nnc_ir::{DType, Function, Op, ValueId};

use crate::kernel::{Kernel, LoopKernel, Schedule, Storage, is_elementwise};

/// Turns the slices of `s` that only loops read into windows of their operands, after
/// fusion (so that a loop read by the loss head or a fused routine is known).
pub fn read_in_place(f: &Function, s: &mut Schedule) {
    let mut k = 0;
    while k < s.kernels.len() {
        let Kernel::Op { inst } = s.kernels[k] else {
            k += 1;
            continue;
        };
        let slice = &f.insts[inst];
        let (v, x) = (slice.result, slice.args[0]);
        // Whole along the leading axis (samples): a loop split over the threads, or fused
        // with a kernel split by samples, reads its window in its own part's samples.
        let whole_lead = match &slice.op {
            Op::Slice { start, end } => {
                start.first() == Some(&0) && end.first() == f.ty(x).shape.first()
            }
            _ => false,
        };
        let windowed = whole_lead
            && f.ty(x).dtype == DType::F32
            && s.storage[x.index()] == Storage::Buffer
            && !f.results.contains(&v)
            && read_by_loops_only(f, s, v);
        if windowed {
            s.storage[v.index()] = Storage::Window(x);
            s.kernels.remove(k);
        } else {
            k += 1;
        }
    }
}

/// Whether every instruction reading `v` is a loop member (elementwise or a sum), and no
/// kernel other than a loop reads it (a sum the loss head took, say).
fn read_by_loops_only(f: &Function, s: &Schedule, v: ValueId) -> bool {
    let members = f
        .insts
        .iter()
        .filter(|i| i.args.contains(&v))
        .all(|i| is_elementwise(&i.op) || matches!(i.op, Op::ReduceSum { .. }));
    // A loop reads it along its own axes (not broadcast to more), so that the loop's
    // leading axis is the window's.
    let rank = f.ty(v).shape.len();
    let by_loop = |l: &LoopKernel| !l.inputs.contains(&v) || l.shape.len() == rank;
    let kernels = s.kernels.iter().all(|k| match k {
        Kernel::Loop(l) => by_loop(l),
        Kernel::Op { inst } => !f.insts[*inst].args.contains(&v),
        Kernel::Fused {
            prologue,
            inst,
            epilogue,
        } => !f.insts[*inst].args.contains(&v) && prologue.iter().chain(epilogue).all(&by_loop),
        Kernel::Head(h) => !h.reads(f).contains(&v),
    });
    members && kernels
}

/// Element strides of a window's own axes: its operand's row-major strides.
pub fn strides(f: &Function, x: ValueId) -> Vec<usize> {
    let shape = &f.ty(x).shape;
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// The element offset of window `v` (a slice) in its operand.
pub fn start(f: &Function, v: ValueId) -> usize {
    let Some(inst) = f.insts.iter().find(|i| i.result == v) else {
        return 0;
    };
    match &inst.op {
        Op::Slice { start, .. } => start
            .iter()
            .zip(strides(f, inst.args[0]))
            .map(|(a, s)| a * s)
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use nnc_ir::parse::parse_function;

    use super::*;
    use crate::schedule::schedule;

    /// Slices only loops read become windows (no kernel); one a library kernel reads, one
    /// that crops the samples, and a returned one stay copies.
    #[test]
    fn slices_only_loops_read_become_windows() {
        let f = parse_function(
            "func @f(%a: f32[3,2,4,4], %g: f32[3,7,4,4]) -> (f32[3,2,4,4], f32[3,3], f32[3,5,2,2], f32[2,7,4,4], f32[3,1,4,4]) {
               %d: f32[3,7,4,4] = tanh %g
               %s0: f32[3,2,4,4] = slice %d, start=[0,0,0,0], end=[3,2,4,4]
               %s1: f32[3,5,4,4] = slice %d, start=[0,2,0,0], end=[3,7,4,4]
               %s2: f32[3,3,3,4] = slice %d, start=[0,3,1,0], end=[3,6,4,4]
               %s3: f32[2,7,4,4] = slice %d, start=[1,0,0,0], end=[3,7,4,4]
               %s4: f32[3,1,4,4] = slice %d, start=[0,6,0,0], end=[3,7,4,4]
               %m: f32[3,2,4,4] = mul %s0, %a
               %e: f32[3,3,3,4] = exp %s2
               %r: f32[3,3] = reduce_sum %e, axes=[2,3]
               %p: f32[3,5,2,2] = maxpool %s1, size=[2,2], stride=[2,2]
               %n: f32[2,7,4,4] = neg %s3
               return %m, %r, %p, %n, %s4
             }",
        )
        .expect("valid IR");
        let mut s = schedule(&f);
        read_in_place(&f, &mut s);
        let storage = |name: &str| {
            let v = (0..f.types.len())
                .map(|i| ValueId(i as u32))
                .find(|&v| f.name_of(v) == Some(name))
                .expect("named");
            s.storage[v.index()]
        };
        let d = (0..f.types.len())
            .map(|i| ValueId(i as u32))
            .find(|&v| f.name_of(v) == Some("d"))
            .expect("named");
        assert_eq!(storage("s0"), Storage::Window(d));
        assert_eq!(storage("s2"), Storage::Window(d));
        for copied in ["s1", "s3", "s4"] {
            assert_eq!(storage(copied), Storage::Buffer, "{copied}");
        }
        let slices = s
            .kernels
            .iter()
            .filter(|k| matches!(k, Kernel::Op { inst } if matches!(f.insts[*inst].op, Op::Slice { .. })))
            .count();
        assert_eq!(slices, 3);
    }
}
