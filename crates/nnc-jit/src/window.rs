//! Windows: values stored inside another value's buffer, at an offset and with that value's
//! strides (`Storage::Window`; `Plan::strides`), so that no kernel copies them.
//!
//! - Slices read in place ([`read_in_place`]): a `slice` whose every reader is a fused loop
//!   (the gradient of a `concat`'s operand, read by its activation mask or a fan-out sum) is
//!   no kernel and no buffer: the loops read it from its operand's buffer at the slice's
//!   start. A slice that a library kernel, the loss head or a view reads, or that is
//!   returned, stays a copy.
//! - Concat operands written in place ([`write_in_place`]): an operand that a loop writes
//!   (a loop kernel, or a library kernel's fused epilogue: a branch's bias and activation)
//!   or a pooling writes (each sample's planes at the result's sample stride), and that only
//!   the `concat`, loops and convolutions that read samples apart ([`ReadsApart`]: an
//!   Inception block's branches reading its pooled input) read, is written straight into
//!   its place in the concat's result. The concat copies only the other operands, and is no
//!   kernel when none is left.

use nnc_ir::{DType, Function, Inst, Op, ValueId};

use crate::kernel::{Kernel, LoopKernel, Schedule, Storage, is_elementwise};

/// Whether the library kernel of an instruction reads its first operand at a sample stride
/// of its own (the library's choice: `LibKernel::unfolded_reads_apart`); `None` where no
/// kernel does (the portable kernels).
pub type ReadsApart = Option<fn(&Function, &Inst) -> bool>;

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
            && read_by_loops_only(f, s, v, &[]);
        if windowed {
            s.storage[v.index()] = Storage::Window(x);
            s.kernels.remove(k);
        } else {
            k += 1;
        }
    }
}

/// Makes the operands of each `concat` (along an axis after the samples) that a loop or a
/// pooling writes and only loops (and convolutions that read samples apart) read besides
/// the concat windows of its result, after [`read_in_place`]; removes the concats left with
/// nothing to copy.
pub fn write_in_place(f: &Function, s: &mut Schedule, apart: ReadsApart) {
    let mut k = 0;
    while k < s.kernels.len() {
        let Kernel::Op { inst } = s.kernels[k] else {
            k += 1;
            continue;
        };
        let concat = &f.insts[inst];
        let (Op::Concat { axis }, x) = (&concat.op, concat.result) else {
            k += 1;
            continue;
        };
        let mut left = concat.args.len();
        if *axis > 0 && f.ty(x).dtype == DType::F32 && s.storage[x.index()] == Storage::Buffer {
            for &v in &concat.args {
                let once = concat.args.iter().filter(|&&a| a == v).count() == 1;
                if once && placeable(f, s, v, inst, apart) {
                    s.storage[v.index()] = Storage::Window(x);
                    left -= 1;
                }
            }
        }
        if left == 0 {
            s.kernels.remove(k);
        } else {
            k += 1;
        }
    }
}

/// Whether concat operand `v` (of instruction `concat`) can be written in its place: an f32
/// buffer of its own, not returned, that no view or window is of, written at its own index
/// by a loop (not as a sum) or by a pooling of its own (not fused with loops), and read by
/// nothing but the concat, loops and (with `apart`) convolutions reading samples apart.
fn placeable(f: &Function, s: &Schedule, v: ValueId, concat: usize, apart: ReadsApart) -> bool {
    let own_buffer = s.storage[v.index()] == Storage::Buffer
        && f.ty(v).dtype == DType::F32
        && !f.results.contains(&v)
        && !s.storage.iter().any(|st| {
            matches!(st, Storage::View(o) | Storage::Scaled(o) | Storage::Window(o) if *o == v)
        });
    let writer = |l: &LoopKernel| {
        l.outputs.contains(&v) && !l.reductions.contains(&v) && l.shape == f.ty(v).shape
    };
    let pooling = |inst: usize| {
        let i = &f.insts[inst];
        i.result == v && matches!(i.op, Op::MaxPool { .. } | Op::SumPool { .. })
    };
    let written = s.kernels.iter().any(|k| match k {
        Kernel::Loop(l) => writer(l),
        Kernel::Fused { epilogue, .. } => epilogue.as_ref().is_some_and(writer),
        Kernel::Op { inst } => apart.is_some() && pooling(*inst),
        Kernel::Head(_) => false,
    });
    own_buffer && written && read_in_windows(f, s, v, concat, apart)
}

/// Whether every reader of `v` but the instruction `concat` reads it through a window: loop
/// members (as [`read_by_loops_only`]), or with `apart` a convolution's forward product or
/// filter gradient reading it as its input (only) on a kernel that reads samples apart.
fn read_in_windows(
    f: &Function,
    s: &Schedule,
    v: ValueId,
    concat: usize,
    apart: ReadsApart,
) -> bool {
    let reads_apart = |inst: usize| {
        let i = &f.insts[inst];
        let input_only = i.args.first() == Some(&v) && !i.args[1..].contains(&v);
        matches!(i.op, Op::Conv2d { .. } | Op::Conv2dGradFilter { .. })
            && input_only
            && apart.is_some_and(|reads| reads(f, i))
    };
    let readers: Vec<usize> = s
        .kernels
        .iter()
        .filter_map(|k| match k {
            Kernel::Op { inst } | Kernel::Fused { inst, .. }
                if *inst != concat && f.insts[*inst].args.contains(&v) =>
            {
                Some(*inst)
            }
            _ => None,
        })
        .collect();
    if !readers.iter().all(|&i| reads_apart(i)) {
        return false;
    }
    // The loops: every other reader.
    let others: Vec<usize> = std::iter::once(concat).chain(readers).collect();
    read_by_loops_only(f, s, v, &others)
}

/// Whether every instruction reading `v` (but `except`) is a loop member (elementwise or a
/// sum), and no kernel other than a loop (or `except`'s own) reads it (a sum the loss head
/// took, say).
fn read_by_loops_only(f: &Function, s: &Schedule, v: ValueId, except: &[usize]) -> bool {
    let members = f
        .insts
        .iter()
        .enumerate()
        .filter(|&(i, inst)| !except.contains(&i) && inst.args.contains(&v))
        .all(|(_, i)| is_elementwise(&i.op) || matches!(i.op, Op::ReduceSum { .. }));
    // A loop reads it along its own axes (not broadcast to more), so that the loop's
    // leading axis is the window's.
    let rank = f.ty(v).shape.len();
    let by_loop = |l: &LoopKernel| !l.inputs.contains(&v) || l.shape.len() == rank;
    let kernels = s.kernels.iter().all(|k| match k {
        Kernel::Loop(l) => by_loop(l),
        Kernel::Op { inst } => except.contains(inst) || !f.insts[*inst].args.contains(&v),
        Kernel::Fused {
            prologue,
            inst,
            epilogue,
        } => {
            (except.contains(inst) || !f.insts[*inst].args.contains(&v))
                && prologue.iter().chain(epilogue).all(&by_loop)
        }
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

/// The element offset of window `v` in `of`: a slice's start in its operand, or a concat
/// operand's place in the concat's result (the operands before it along the axis).
pub fn start(f: &Function, v: ValueId, of: ValueId) -> usize {
    let slice = f
        .insts
        .iter()
        .find(|i| i.result == v && matches!(i.op, Op::Slice { .. }));
    if let Some(Inst {
        op: Op::Slice { start, .. },
        args,
        ..
    }) = slice
    {
        return start
            .iter()
            .zip(strides(f, args[0]))
            .map(|(a, s)| a * s)
            .sum();
    }
    let concat = f
        .insts
        .iter()
        .find(|i| i.result == of && matches!(i.op, Op::Concat { .. }));
    match concat {
        Some(Inst {
            op: Op::Concat { axis },
            args,
            ..
        }) => {
            let before = args.iter().take_while(|&&a| a != v);
            let rows: usize = before.map(|&a| f.ty(a).shape[*axis]).sum();
            rows * strides(f, of)[*axis]
        }
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

    /// Concat operands that a loop writes and only loops read are written in place; a
    /// parameter, a product's result, an operand given twice and one a view is of are
    /// copied; a concat left with nothing to copy is no kernel.
    #[test]
    fn loops_write_concat_operands_in_place() {
        let f = parse_function(
            "func @f(%a: f32[3,2,4], %w: f32[4,4], %b: f32[3,4], %c: f32[3,5,4]) -> (f32[3,7,4], f32[3,8], f32[3,12], f32[3,2,4], f32[3,3]) {
               %r: f32[3,2,4] = relu %a
               %t: f32[3,5,4] = tanh %c
               %s: f32[3,2,4] = mul %r, %a
               %y: f32[3,7,4] = concat %r, %t, axis=1
               %m: f32[3,4] = matmul %b, %w
               %e: f32[3,4] = exp %b
               %z: f32[3,8] = concat %m, %e, axis=1
               %g: f32[3,4] = neg %b
               %v: f32[3,2,2] = reshape %g, shape=[3,2,2]
               %q: f32[3,12] = concat %g, %g, %b, axis=1
               %k: f32[3,3] = slice %g, start=[0,0], end=[3,3]
               return %y, %z, %q, %s, %k
             }",
        )
        .expect("valid IR");
        let mut s = schedule(&f);
        read_in_place(&f, &mut s);
        write_in_place(&f, &mut s, None);
        let id = |name: &str| {
            (0..f.types.len())
                .map(|i| ValueId(i as u32))
                .find(|&v| f.name_of(v) == Some(name))
                .expect("named")
        };
        let storage = |name: &str| s.storage[id(name).index()];
        assert_eq!(storage("r"), Storage::Window(id("y")));
        assert_eq!(storage("t"), Storage::Window(id("y")));
        assert_eq!(storage("e"), Storage::Window(id("z")));
        for copied in ["m", "g", "b"] {
            assert!(!matches!(storage(copied), Storage::Window(_)), "{copied}");
        }
        assert_eq!(start(&f, id("t"), id("y")), 2 * 4);
        assert_eq!(start(&f, id("e"), id("z")), 4);
        let concats: Vec<ValueId> = s
            .kernels
            .iter()
            .filter_map(|k| match k {
                Kernel::Op { inst } if matches!(f.insts[*inst].op, Op::Concat { .. }) => {
                    Some(f.insts[*inst].result)
                }
                _ => None,
            })
            .collect();
        assert_eq!(concats, [id("z"), id("q")]);
    }

    /// A pooling's result that a concat and a convolution read is written in place where the
    /// convolution reads samples apart, and copied where it does not (the portable kernels)
    /// or where another library kernel reads it too.
    #[test]
    fn a_pooled_operand_goes_in_place_where_its_readers_read_samples_apart() {
        let f = parse_function(
            "func @f(%x: f32[2,3,4,4], %w: f32[5,3,1,1], %b: f32[2,2,2,2]) -> (f32[2,5,2,2], f32[2,5,2,2], f32[2,3,1,1]) {
               %p: f32[2,3,2,2] = maxpool %x, size=[2,2], stride=[2,2]
               %y: f32[2,5,2,2] = conv2d %p, %w, stride=[1,1], padding=[0,0]
               %z: f32[2,5,2,2] = concat %p, %b, axis=1
               %q: f32[2,3,2,2] = maxpool %x, size=[2,2], stride=[2,2]
               %r: f32[2,3,1,1] = maxpool %q, size=[2,2], stride=[2,2]
               %u: f32[2,5,2,2] = concat %q, %b, axis=1
               return %y, %z, %r
             }",
        )
        .expect("valid IR");
        let id = |name: &str| {
            (0..f.types.len())
                .map(|i| ValueId(i as u32))
                .find(|&v| f.name_of(v) == Some(name))
                .expect("named")
        };
        let placed = |apart: ReadsApart| {
            let mut s = schedule(&f);
            read_in_place(&f, &mut s);
            write_in_place(&f, &mut s, apart);
            (s.storage[id("p").index()], s.storage[id("q").index()])
        };
        let every: fn(&Function, &Inst) -> bool = |_, _| true;
        assert_eq!(
            placed(Some(every)),
            (Storage::Window(id("z")), Storage::Buffer)
        );
        assert_eq!(placed(None), (Storage::Buffer, Storage::Buffer));
        let none: fn(&Function, &Inst) -> bool = |_, _| false;
        assert_eq!(placed(Some(none)), (Storage::Buffer, Storage::Buffer));
    }
}
