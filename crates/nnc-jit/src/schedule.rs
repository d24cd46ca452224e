//! Scheduling: the instructions of an optimized step function grouped into kernels.
//!
//! - Elementwise instructions of one iteration shape fuse into a [`Kernel::Loop`]: values used
//!   only inside it stay in registers, operands from outside are read with broadcasting.
//! - Constants are not kernels: loops inline them; the rest read them from the arena's
//!   constant region, filled once.
//! - Reshapes are views: the result shares its operand's buffer.
//! - The u8 images' scaling (`to_f32`) is no kernel when only contractions read it: they read
//!   the bytes and scale them themselves (`Storage::Scaled`).
//! - Everything else (contractions, convolutions, pooling, the fused loss, reductions) is one
//!   [`Kernel::Op`] per instruction; loops then join the ones that split over the threads
//!   as prologues and epilogues ([`crate::fuse`]), and a classifier's loss, predictions and
//!   output gradient become one kernel ([`crate::head`]).
//!
//! A group stays open while later instructions of its shape can join it; it is closed (its
//! kernel emitted) just before the first instruction outside it that reads one of its values.
//! Kernels are therefore in an order where every input is produced before it is read.

use std::collections::HashMap;

use nnc_ir::{Function, Op, ValueId};

use crate::conv_fold;
use crate::image_data;
use crate::kernel::{Kernel, LoopKernel, Schedule, Storage, is_elementwise};
use crate::library::LibKernel;

/// Groups the instructions of `f` into kernels and decides how each value is stored (see
/// the module).
pub fn schedule(f: &Function) -> Schedule {
    let n = f.types.len();
    let mut storage = vec![Storage::Buffer; n];
    for &p in &f.params {
        storage[p.index()] = Storage::Param;
    }
    // Which group a value was computed in, while that group is open.
    let mut group_of: Vec<Option<usize>> = vec![None; n];
    let mut reduced = vec![false; n];
    let mut groups: Vec<LoopKernel> = Vec::new();
    let mut open: HashMap<Vec<usize>, usize> = HashMap::new();
    let mut kernels: Vec<Kernel> = Vec::new();
    // Kernel slots are reserved for groups when they open, and filled when they close, so that a
    // group's kernel runs after everything its members read: a group is emitted at its close.
    let mut emitted = vec![false; 0];

    let close = |g: usize,
                 open: &mut HashMap<Vec<usize>, usize>,
                 groups: &[LoopKernel],
                 kernels: &mut Vec<Kernel>,
                 emitted: &mut Vec<bool>| {
        if !emitted[g] {
            emitted[g] = true;
            open.retain(|_, v| *v != g);
            kernels.push(Kernel::Loop(groups[g].clone()));
        }
    };

    let prelude = prelude(f);
    let prelude_len = prelude.iter().filter(|&&p| p).count();
    let order = (0..f.insts.len())
        .filter(|&i| prelude[i])
        .chain((0..f.insts.len()).filter(|&i| !prelude[i]));
    for (at, i) in order.enumerate() {
        // The prelude's loop is emitted before everything else.
        if at == prelude_len {
            let mut first: Vec<usize> = open.values().copied().collect();
            first.sort_unstable();
            for g in first {
                close(g, &mut open, &groups, &mut kernels, &mut emitted);
            }
        }
        let inst = &f.insts[i];
        let v = inst.result;
        match &inst.op {
            Op::Const { .. } => {
                storage[v.index()] = Storage::Splat;
                continue;
            }
            Op::ConstData { .. } => {
                storage[v.index()] = Storage::Const;
                continue;
            }
            _ => {}
        }
        // Operands computed in an open group that this instruction will not join must be
        // materialised first.
        // A loop member iterates over its result's shape; a sum, over its operand's.
        let loop_shape: Option<Vec<usize>> = match &inst.op {
            Op::ReduceSum { .. } => Some(f.ty(inst.args[0]).shape.clone()),
            op if is_elementwise(op) => Some(f.ty(v).shape.clone()),
            _ => None,
        };
        let joins = loop_shape.as_ref().and_then(|s| open.get(s).copied());
        for a in &inst.args {
            // Sums are complete only when their loop ends: nothing inside reads them.
            if let Some(g) = group_of[a.index()]
                && (Some(g) != joins || loop_shape.is_none() || reduced[a.index()])
            {
                close(g, &mut open, &groups, &mut kernels, &mut emitted);
            }
        }
        let joins = loop_shape.as_ref().and_then(|s| open.get(s).copied());
        if image_data::read_as_bytes(f, i) {
            storage[v.index()] = Storage::Scaled(inst.args[0]);
            continue;
        }
        // Reshapes are views; so are a pad and a slice folded into convolutions
        // ([`conv_fold`]): those read and write the unpadded, uncropped buffer.
        let folded = match inst.op {
            Op::Reshape { .. } => true,
            Op::Pad { .. } => conv_fold::pad_folds(f, i, LibKernel::unfolded_pads_inside),
            Op::Slice { .. } => conv_fold::slice_folds(f, i, LibKernel::unfolded_crops_inside),
            _ => false,
        };
        if folded {
            storage[v.index()] = Storage::View(inst.args[0]);
            continue;
        }
        if let Some(shape) = loop_shape {
            let g = match joins {
                Some(g) if !emitted[g] => g,
                _ => {
                    groups.push(LoopKernel {
                        shape: shape.clone(),
                        insts: Vec::new(),
                        inputs: Vec::new(),
                        outputs: Vec::new(),
                        reductions: Vec::new(),
                        band: false,
                    });
                    emitted.push(false);
                    open.insert(shape, groups.len() - 1);
                    groups.len() - 1
                }
            };
            groups[g].insts.push(i);
            group_of[v.index()] = Some(g);
            if let Op::ReduceSum { .. } = inst.op {
                reduced[v.index()] = true;
                groups[g].reductions.push(v);
            }
        } else {
            kernels.push(Kernel::Op { inst: i });
        }
    }
    let mut rest: Vec<usize> = (0..groups.len()).filter(|&g| !emitted[g]).collect();
    rest.sort_unstable();
    for g in rest {
        close(g, &mut open, &groups, &mut kernels, &mut emitted);
    }

    // Inputs and outputs of each loop, now that all uses are known.
    let uses = f.use_counts();
    let mut inside_uses: HashMap<ValueId, usize> = HashMap::new();
    for k in &mut kernels {
        let Kernel::Loop(l) = k else { continue };
        inside_uses.clear();
        let members: Vec<ValueId> = l.insts.iter().map(|&i| f.insts[i].result).collect();
        for &i in &l.insts {
            for &a in &f.insts[i].args {
                if members.contains(&a) {
                    *inside_uses.entry(a).or_insert(0) += 1;
                } else if !l.inputs.contains(&a) && storage[a.index()] != Storage::Splat {
                    l.inputs.push(a);
                }
            }
        }
        for m in members {
            if l.reductions.contains(&m)
                || uses[m.index()] > inside_uses.get(&m).copied().unwrap_or(0)
            {
                l.outputs.push(m);
            } else {
                storage[m.index()] = Storage::Register;
            }
        }
    }
    Schedule { kernels, storage }
}

/// The instructions that compute a scalar from the parameters and constants alone (the
/// optimizer's step count and bias corrections, a learning-rate schedule's rate), and the
/// constants: they run first, as one loop, so that an update reading them is ready as soon as
/// its gradient is and can be that gradient's kernel's epilogue ([`crate::fuse`]).
fn prelude(f: &Function) -> Vec<bool> {
    let mut early = vec![false; f.types.len()];
    for &p in &f.params {
        early[p.index()] = true;
    }
    f.insts
        .iter()
        .map(|inst| {
            let here = match inst.op {
                Op::Const { .. } | Op::ConstData { .. } => true,
                ref op => {
                    is_elementwise(op)
                        && f.ty(inst.result).numel() == 1
                        && inst.args.iter().all(|a| early[a.index()])
                }
            };
            early[inst.result.index()] = here;
            here
        })
        .collect()
}
