//! The static buffer plan: every materialised value gets a byte offset in one arena.
//!
//! Parameters and constants live in a persistent region at the start. Intermediate buffers are
//! allocated by liveness over the kernel order (first fit over freed blocks), so buffers whose
//! lifetimes do not overlap share memory. A loop may write an output over one of its inputs
//! that dies in that loop and has the loop's shape (read and written at the same index): this
//! is how the optimizer updates weights in place (a parameter only when the function returns
//! its new value, `w.new`: an evaluation's weights persist between runs). Nothing is allocated while a step runs, and
//! the arena size is known at compile time.

use nnc_ir::{DType, Function, ValueId};

use crate::kernel::{Kernel, Schedule, Storage, reads, root, writes};
use crate::window;

/// Buffers are aligned to a cache line.
pub const ALIGN: usize = 64;

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Bytes per element.
pub fn elem_size(d: DType) -> usize {
    match d {
        DType::F32 | DType::I32 => 4,
        DType::U8 => 1,
    }
}

/// Where each value lives.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Byte offset of each value's buffer, `None` for values that live in registers.
    pub offset: Vec<Option<usize>>,
    /// The persistent region (parameters and constants) is `0..persistent`.
    pub persistent: usize,
    pub arena_size: usize,
    /// Element strides of the values that are not row-major in their buffer: windows
    /// ([`crate::window`]), by value index.
    pub strides: Vec<Option<Vec<usize>>>,
}

impl Plan {
    pub fn at(&self, v: ValueId) -> usize {
        self.offset[v.index()].expect("value has a buffer")
    }
}

pub fn plan(f: &Function, s: &Schedule) -> Plan {
    let n = f.types.len();
    let bytes = |v: ValueId| align(f.ty(v).numel() * elem_size(f.ty(v).dtype)).max(ALIGN);
    let mut offset: Vec<Option<usize>> = vec![None; n];
    let mut top = 0;
    // Persistent region: parameters, then every constant (splats too: library kernels and
    // results may read them).
    for &p in &f.params {
        offset[p.index()] = Some(top);
        top += bytes(p);
    }
    for inst in &f.insts {
        let v = inst.result;
        if matches!(s.storage[v.index()], Storage::Const | Storage::Splat) {
            offset[v.index()] = Some(top);
            top += bytes(v);
        }
    }
    let persistent = top;

    // Liveness over kernels: the kernel defining each buffer and the last kernel reading it.
    let end = s.kernels.len();
    let mut def = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    for (ki, k) in s.kernels.iter().enumerate() {
        for v in reads(f, k) {
            let r = root(s, v);
            last[r.index()] = last[r.index()].max(ki);
        }
        for o in writes(f, k) {
            def[o.index()] = ki;
            // A concat operand written in place: its result's buffer exists from here.
            let r = root(s, o).index();
            if r != o.index() && def[r] == usize::MAX {
                def[r] = ki;
            }
        }
    }
    for &r in &f.results {
        last[root(s, r).index()] = end;
    }

    // The parameters the function returns a new value for (`w` for a result `w.new`): only
    // their buffers may be written over, since the caller replaces them after the run. The
    // others (an evaluation's weights, a batchnorm's statistics there) persist between runs.
    let updated: Vec<&str> = f
        .results
        .iter()
        .filter_map(|&r| f.name_of(r)?.strip_suffix(".new"))
        .collect();
    let replaced = |p: ValueId| f.name_of(p).is_some_and(|n| updated.contains(&n));
    // A data-parallel step may stop at its last sum and must then leave its parameters as
    // they were: a kernel before it (the scheduler's prelude: a step count) writes its own
    // buffer, copied over the parameter after the run.
    let last_sum = s.kernels.iter().rposition(
        |k| matches!(k, Kernel::Op { inst } if f.insts[*inst].op == nnc_ir::Op::AllReduceSum),
    );
    let may_replace = |p: ValueId, ki: usize| replaced(p) && last_sum.is_none_or(|l| ki > l);

    let windowed: Vec<ValueId> = s
        .storage
        .iter()
        .filter_map(|st| match st {
            Storage::Window(of) => Some(root(s, *of)),
            _ => None,
        })
        .collect();

    // First fit over a free list, in kernel order.
    let mut free: Vec<(usize, usize)> = Vec::new(); // (offset, size)
    let mut dying: Vec<Vec<ValueId>> = vec![Vec::new(); end + 1];
    let alloc = |size: usize, free: &mut Vec<(usize, usize)>, top: &mut usize| -> usize {
        if let Some(i) = free.iter().position(|&(_, s)| s >= size) {
            let (o, s) = free[i];
            if s == size {
                free.remove(i);
            } else {
                free[i] = (o + size, s - size);
            }
            o
        } else {
            let o = *top;
            *top += size;
            o
        }
    };
    for (ki, k) in s.kernels.iter().enumerate() {
        let outputs = writes(f, k);
        // In-place candidates: loop inputs that die here, are intermediate buffers or
        // parameters, and are read at the loop's own index. In a fused kernel, only the
        // epilogue's, and none the library routine or the prologue reads: the other thread
        // may still be reading them.
        let (lp, shared) = match k {
            Kernel::Loop(l) => (Some(l), Vec::new()),
            Kernel::Op { .. } | Kernel::Head(_) => (None, Vec::new()),
            Kernel::Fused {
                prologue,
                inst,
                epilogue,
            } => {
                let mut shared: Vec<ValueId> = f.insts[*inst].args.clone();
                if let Some(p) = prologue {
                    shared.extend(p.inputs.iter().chain(&p.outputs));
                }
                (epilogue.as_ref(), shared)
            }
        };
        let shared: Vec<ValueId> = shared.iter().map(|&v| root(s, v)).collect();
        // A buffer read through a window is read at other indices than its own: never
        // written over in place.
        let mut reusable: Vec<ValueId> = lp
            .map(|l| {
                l.inputs
                    .iter()
                    .copied()
                    .filter(|&i| {
                        root(s, i) == i
                            && !shared.contains(&i)
                            && !windowed.contains(&i)
                            && last[i.index()] == ki
                            && f.ty(i).shape == l.shape
                            && match s.storage[i.index()] {
                                Storage::Buffer => true,
                                Storage::Param => may_replace(i, ki),
                                _ => false,
                            }
                    })
                    .collect()
            })
            .unwrap_or_default();
        for o in outputs {
            if offset[o.index()].is_some() {
                continue;
            }
            // A window written in place (a concat's operand): its buffer is the concat's
            // result's, allocated at the first such write (its offset is set below).
            let r = root(s, o);
            if r != o {
                if offset[r.index()].is_none() {
                    offset[r.index()] = Some(alloc(bytes(r), &mut free, &mut top));
                    let l = last[r.index()];
                    if l != end && l != usize::MAX {
                        dying[l.max(ki)].push(r);
                    }
                }
                continue;
            }
            // `w.new` goes over `w` when it can (an in-place update), else any fitting input.
            let fits = |i: ValueId| {
                bytes(i) == bytes(o) && elem_size(f.ty(i).dtype) == elem_size(f.ty(o).dtype)
            };
            let own = f.name_of(o).and_then(|n| n.strip_suffix(".new"));
            // A sum is accumulated while its inputs are still being read: never in place.
            // Only the loop's own outputs go in place (not a fused routine's result or its
            // prologue's).
            let is_sum = lp.is_some_and(|l| l.reductions.contains(&o));
            let in_place = !is_sum && lp.is_some_and(|l| l.outputs.contains(&o));
            let reusable_now: Vec<ValueId> = if in_place {
                reusable.clone()
            } else {
                Vec::new()
            };
            let same_size = reusable_now
                .iter()
                .position(|&i| fits(i) && own.is_some() && f.name_of(i) == own)
                .or_else(|| reusable_now.iter().position(|&i| fits(i)))
                .and_then(|p| reusable.iter().position(|&i| i == reusable_now[p]));
            offset[o.index()] = Some(match same_size {
                Some(p) => {
                    let i = reusable.remove(p);
                    let off = offset[i.index()].expect("input has a buffer");
                    // The output now owns the buffer: the input must not free it.
                    last[i.index()] = usize::MAX;
                    off
                }
                None => alloc(bytes(o), &mut free, &mut top),
            });
            let l = last[o.index()];
            if l != end && l != usize::MAX {
                dying[l.max(ki)].push(o);
            }
        }
        // Buffers whose last reader is this kernel return to the free list after it.
        for v in std::mem::take(&mut dying[ki]) {
            if last[v.index()] == usize::MAX || offset[v.index()].is_none() {
                continue;
            }
            if def[v.index()] != usize::MAX && (offset[v.index()].unwrap_or(0) >= persistent) {
                free.push((offset[v.index()].unwrap_or(0), bytes(v)));
            }
        }
    }
    // Views share their root's buffer; scaled bytes are their parameter's; a window starts
    // at its slice's start in its operand's buffer, with the operand's strides.
    let mut strides = vec![None; n];
    for v in 0..n {
        let id = ValueId(v as u32);
        match s.storage[v] {
            Storage::View(_) | Storage::Scaled(_) => offset[v] = offset[root(s, id).index()],
            Storage::Window(of) => {
                let start = window::start(f, id, of) * elem_size(f.ty(id).dtype);
                offset[v] = offset[root(s, id).index()].map(|o| o + start);
                strides[v] = Some(window::strides(f, of));
            }
            _ => {}
        }
    }
    Plan {
        offset,
        persistent,
        arena_size: align(top),
        strides,
    }
}
