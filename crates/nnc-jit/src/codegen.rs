//! Cranelift code generation for fused loops.
//!
//! Each [`LoopKernel`] becomes one function `fn(arena, start, end)` that runs the loop nest
//! over outer indices `start..end` (so threads can split it in parts). Shapes, strides, offsets
//! and constants are immediates. Dimensions are coalesced first (adjacent axes every operand walks
//! contiguously become one), the innermost loop is vectorised four lanes wide (F32X4, the widest
//! vector Cranelift's x64 backend emits) when every operand is f32 and read contiguously or
//! broadcast along it, with a scalar tail. ReLU and friends are `fcmp` + `bitselect`, not
//! `fmax`'s NaN-safe sequence. The transcendental functions (exp, log, tanh, sigmoid,
//! softplus) are inlined instruction sequences ([`crate::transcendental`]) in scalar loops and
//! short rows; a vector loop with rows of at least [`ROW_CALLS_FROM`] floats, where the CPU
//! has a vector unit, computes each one's argument along a chunk of the row into a row on its
//! stack, has [`nnc_kernels::transcendental`] apply the function to that row on the whole
//! unit (the same algorithm, so the same bits), and then finishes the chunk reading it.

use std::collections::HashMap;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    self, AbiParam, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind, Value, types,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};
use nnc_ir::{Binary, Compare, DType, Function, Op, Unary, ValueId};
use nnc_kernels::Isa;
use nnc_kernels::transcendental::{self as library, RowFn};

use crate::kernel::{self, LoopKernel};
use crate::plan::{Plan, elem_size};
use crate::transcendental::Emit;

/// The signature of every generated loop: arena base, outer range, and where its sums go:
/// 0 for their planned buffers, else the byte offset of a partial-sum region in which the
/// sums lie one after another (each later part of a split loop sums in its own copy).
pub type LoopFn = unsafe extern "C" fn(*mut u8, u64, u64, u64);

/// A linked module, the pointers of its loops, and their Cranelift IR if kept.
pub type Linked = (JITModule, Vec<LoopFn>, Option<Vec<String>>);

/// A JIT module holding the compiled loops of one step function.
pub struct Jit {
    module: JITModule,
    ctx: cranelift_codegen::Context,
    fctx: FunctionBuilderContext,
    /// The Cranelift IR of each generated function, when asked for (`--emit clif`).
    pub clif: Option<Vec<String>>,
}

/// A JIT module for `isa`, with the libcalls Cranelift emits for `fma` on a CPU without FMA
/// (`fmaf`, `fma`) bound to Rust's own rather than looked up in the process. nnc's loops emit
/// no `fma` (a fused multiply-add rounds once where `fmul` + `fadd` round twice: with it, a
/// loop's vector body, its scalar tail and the library routines would not agree bit for bit,
/// nor would CPUs with and without FMA), so this matters only to a loop that would.
pub fn module(isa: cranelift_codegen::isa::OwnedTargetIsa) -> JITModule {
    let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
    builder.symbol("fmaf", fused_mul_add_f32 as *const u8);
    builder.symbol("fma", fused_mul_add_f64 as *const u8);
    JITModule::new(builder)
}

extern "C" fn fused_mul_add_f32(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

extern "C" fn fused_mul_add_f64(a: f64, b: f64, c: f64) -> f64 {
    a.mul_add(b, c)
}

impl Jit {
    pub fn new(keep_clif: bool) -> Result<Jit, String> {
        let mut flags = settings::builder();
        flags.set("opt_level", "speed").map_err(|e| e.to_string())?;
        flags
            .set("use_colocated_libcalls", "false")
            .map_err(|e| e.to_string())?;
        flags.set("is_pic", "false").map_err(|e| e.to_string())?;
        // The host's features (SSE4.1, AVX, FMA, ...), detected at run time.
        let isa = cranelift_native::builder()
            .map_err(|e| format!("unsupported host: {e}"))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| e.to_string())?;
        let module = module(isa);
        Ok(Jit {
            ctx: module.make_context(),
            module,
            fctx: FunctionBuilderContext::new(),
            clif: keep_clif.then(Vec::new),
        })
    }

    /// Generates a loop kernel; the pointer is valid after [`Jit::finish`]. Also returns the
    /// extent of the loop's outermost dimension (the range its callers split), and the
    /// transcendental functions it runs along rows: with a vector unit `rows`, they may run
    /// there.
    pub fn compile_loop(
        &mut self,
        name: &str,
        f: &Function,
        l: &LoopKernel,
        plan: &Plan,
        rows: Option<Isa>,
    ) -> Result<(FuncId, u64, Vec<library::Function>), String> {
        let ptr = self.module.target_config().pointer_type();
        let mut sig = self.module.make_signature();
        sig.params.push(AbiParam::new(ptr));
        sig.params.push(AbiParam::new(types::I64));
        sig.params.push(AbiParam::new(types::I64));
        sig.params.push(AbiParam::new(types::I64));
        let id = self
            .module
            .declare_function(name, Linkage::Local, &sig)
            .map_err(|e| e.to_string())?;
        self.ctx.func.signature = sig;
        self.ctx.func.name = ir::UserFuncName::user(0, id.as_u32());
        let loop_gen = LoopGen::new(f, l, plan, rows);
        // The extent of the axis a call's range bounds.
        let outer = if l.band {
            loop_gen.dims[loop_gen.dims.len() - 1]
        } else {
            loop_gen.dims[0]
        } as u64;
        let target = self.module.target_config();
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            loop_gen.emit(&mut b);
            b.seal_all_blocks();
            b.finalize(target);
        }
        if let Some(clif) = &mut self.clif {
            clif.push(format!("; {name}\n{}", self.ctx.func.display()));
        }
        self.module
            .define_function(id, &mut self.ctx)
            .map_err(|e| format!("cranelift rejected `{name}`: {e:?}"))?;
        self.module.clear_context(&mut self.ctx);
        let along_rows = loop_gen.row_calls.iter().map(|&(_, t, _)| t).collect();
        Ok((id, outer, along_rows))
    }

    /// Links the module; returns it with the function pointers of `ids`.
    pub fn finish(mut self, ids: &[FuncId]) -> Result<Linked, String> {
        self.module
            .finalize_definitions()
            .map_err(|e| e.to_string())?;
        let fns = ids
            .iter()
            .map(|&id| {
                let code = self.module.get_finalized_function(id);
                // SAFETY: `code` was generated with the `LoopFn` signature (pointer, i64, i64)
                // and the module that owns it is returned alongside and kept alive as long as
                // the pointers are used (see `Program`).
                unsafe { std::mem::transmute::<*const u8, LoopFn>(code) }
            })
            .collect();
        Ok((self.module, fns, self.clif))
    }
}

/// How an operand of the loop is read.
struct Access {
    value: ValueId,
    dtype: DType,
    offset: usize,
    /// Element strides per coalesced dimension (0 where broadcast, or summed over).
    strides: Vec<usize>,
    /// A sum: each iteration adds its contribution instead of storing it.
    accumulate: bool,
}

struct LoopGen<'a> {
    f: &'a Function,
    l: &'a LoopKernel,
    /// Values of the splat constants the loop inlines.
    splats: HashMap<ValueId, f64>,
    dims: Vec<usize>,
    inputs: Vec<Access>,
    outputs: Vec<Access>,
    vector: bool,
    /// The instructions applying a transcendental function, with the function and the unit
    /// its library rows run on, when the innermost loop runs them along rows (else empty).
    row_calls: Vec<(usize, library::Function, Isa)>,
}

/// Rows shorter than this keep their transcendental functions inline: a call and two passes
/// over a chunk would cost more than they save.
pub const ROW_CALLS_FROM: usize = 16;

/// The floats of a chunk of the innermost loop whose transcendental functions run in one
/// library call each (its rows on the stack: 2 KiB each, in L1).
const ROW_CHUNK: i64 = 512;

/// The library function computing a unary op, if it is a transcendental one.
pub(crate) fn transcendental(op: &Op) -> Option<library::Function> {
    match op {
        Op::Unary(Unary::Exp) => Some(library::Function::Exp),
        Op::Unary(Unary::Log) => Some(library::Function::Log),
        Op::Unary(Unary::Tanh) => Some(library::Function::Tanh),
        Op::Unary(Unary::Sigmoid) => Some(library::Function::Sigmoid),
        Op::Unary(Unary::Softplus) => Some(library::Function::Softplus),
        _ => None,
    }
}

/// What one pass of the innermost loop over a range computes (see [`LoopGen::inner`]).
struct Pass {
    /// The loop's instructions it computes, in order.
    insts: Vec<usize>,
    /// The inputs it loads.
    loads: Vec<usize>,
    /// Values read from rows on the stack: the value, the row's address.
    reads: Vec<(ValueId, Value)>,
    /// The value it stores to a row (at its address) instead of storing the loop's outputs.
    write: Option<(ValueId, Value)>,
    /// The index of the rows' first element (where rows are used).
    chunk: Option<Value>,
}

/// A loop from `lo` while its index compares `cc` to `hi`: `body` emits the body for the
/// index and returns the next one; the builder continues after the loop.
fn counted_loop(
    b: &mut FunctionBuilder<'_>,
    (lo, hi): (Value, Value),
    cc: IntCC,
    body: impl FnOnce(&mut FunctionBuilder<'_>, Value) -> Value,
) {
    let header = b.create_block();
    let body_block = b.create_block();
    let exit = b.create_block();
    b.append_block_param(header, types::I64);
    b.ins().jump(header, &[lo.into()]);
    b.switch_to_block(header);
    let i = b.block_params(header)[0];
    let more = b.ins().icmp(cc, i, hi);
    b.ins().brif(more, body_block, &[], exit, &[]);
    b.switch_to_block(body_block);
    let next = body(b, i);
    b.ins().jump(header, &[next.into()]);
    b.switch_to_block(exit);
}

/// Element strides of a sum over `axes` of a `shape` tensor, walked over `shape`: 0 along
/// the summed axes, the result's own row-major strides along the kept ones.
fn sum_strides(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for d in (0..shape.len()).rev() {
        if !axes.contains(&d) {
            strides[d] = acc;
            acc *= shape[d];
        }
    }
    strides
}

/// Element strides of `shape` read as if broadcast to `target` (numpy rules).
fn broadcast_strides(shape: &[usize], target: &[usize]) -> Vec<usize> {
    let lead = target.len() - shape.len();
    let mut strides = vec![0; target.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[lead + i] = if shape[i] == 1 { 0 } else { acc };
        acc *= shape[i];
    }
    strides
}

/// Element strides of a window (its own axes walked with `own` strides in its operand's
/// buffer) read as if broadcast to `target`.
fn window_strides(shape: &[usize], own: &[usize], target: &[usize]) -> Vec<usize> {
    let lead = target.len() - shape.len();
    let mut strides = vec![0; target.len()];
    for i in 0..shape.len() {
        strides[lead + i] = if shape[i] == 1 { 0 } else { own[i] };
    }
    strides
}

impl<'a> LoopGen<'a> {
    fn new(f: &'a Function, l: &'a LoopKernel, plan: &Plan, rows: Option<Isa>) -> LoopGen<'a> {
        let shape: Vec<usize> = if l.shape.is_empty() {
            vec![1]
        } else {
            l.shape.clone()
        };
        let access = |v: ValueId| {
            let sum = f
                .insts
                .iter()
                .find(|i| i.result == v)
                .and_then(|i| match &i.op {
                    Op::ReduceSum { axes } if l.reductions.contains(&v) => Some(axes.clone()),
                    _ => None,
                });
            Access {
                value: v,
                dtype: f.ty(v).dtype,
                offset: plan.at(v),
                strides: match (&sum, &plan.strides[v.index()]) {
                    (Some(axes), _) if !l.shape.is_empty() => sum_strides(&l.shape, axes),
                    (_, Some(own)) => window_strides(&f.ty(v).shape, own, &shape),
                    _ => broadcast_strides(&f.ty(v).shape, &shape),
                },
                accumulate: sum.is_some(),
            }
        };
        let mut inputs: Vec<Access> = l.inputs.iter().map(|&v| access(v)).collect();
        let mut outputs: Vec<Access> = l.outputs.iter().map(|&v| access(v)).collect();
        let mut dims = shape;
        // Axes of extent 1 past the first (the range callers split) are walked once: dropped,
        // so that their strides (0 for a broadcast operand) do not keep the axes around them
        // apart (`[B, C, 1, 1]` plus a `[C, 1, 1]` bias: rows of `C`, not scalar loops).
        let band_axis = l.band.then(|| l.shape.len().max(1) - 1);
        for k in (1..dims.len()).rev() {
            if dims[k] == 1 && band_axis.is_none() {
                dims.remove(k);
                for a in inputs.iter_mut().chain(outputs.iter_mut()) {
                    a.strides.remove(k);
                }
            }
        }
        // Coalesce dimension k into k+1 where every operand walks them as one.
        let mut k = dims.len();
        while k > 1 {
            k -= 1;
            // A band's axis stays itself.
            if l.band && k == l.shape.len().max(1) - 1 {
                continue;
            }
            let mergeable = inputs
                .iter()
                .chain(outputs.iter())
                .all(|a| a.strides[k - 1] == a.strides[k] * dims[k]);
            if mergeable {
                dims[k - 1] *= dims[k];
                dims.remove(k);
                for a in inputs.iter_mut().chain(outputs.iter_mut()) {
                    a.strides.remove(k - 1);
                }
            }
        }
        let last = dims.len() - 1;
        // Vector loops read f32 contiguously or broadcast, and bytes (images) contiguously.
        let vector = dims[last] >= 4
            && inputs.iter().all(|a| match a.dtype {
                DType::F32 => a.strides[last] <= 1,
                DType::U8 => a.strides[last] == 1,
                DType::I32 => false,
            })
            && outputs
                .iter()
                .all(|a| a.dtype == DType::F32 && a.strides[last] <= 1)
            && l.insts
                .iter()
                .all(|&i| f.ty(f.insts[i].result).dtype == DType::F32);
        let splats = kernel::splats(f);
        let row_calls = match rows.filter(|isa| isa.supported()) {
            Some(isa) if vector && dims[last] >= ROW_CALLS_FROM => l
                .insts
                .iter()
                .filter_map(|&i| transcendental(&f.insts[i].op).map(|t| (i, t, isa)))
                .collect(),
            _ => Vec::new(),
        };
        LoopGen {
            f,
            l,
            splats,
            dims,
            inputs,
            outputs,
            vector,
            row_calls,
        }
    }

    /// The pass computing `roots` from the loop's inputs and the values `reads` (read from
    /// rows, at those addresses): the instructions they need and the inputs those load.
    fn pass(&self, roots: &[ValueId], reads: Vec<(ValueId, Value)>) -> Pass {
        let mut needed: std::collections::HashSet<ValueId> = roots.iter().copied().collect();
        let mut insts = Vec::new();
        for &i in self.l.insts.iter().rev() {
            let inst = &self.f.insts[i];
            if !needed.contains(&inst.result) || reads.iter().any(|r| r.0 == inst.result) {
                continue;
            }
            insts.push(i);
            needed.extend(inst.args.iter().copied());
        }
        insts.reverse();
        let loads = (0..self.inputs.len())
            .filter(|&k| needed.contains(&self.inputs[k].value))
            .collect();
        Pass {
            insts,
            loads,
            reads,
            write: None,
            chunk: None,
        }
    }

    fn emit(&self, b: &mut FunctionBuilder<'_>) {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let arena = b.block_params(entry)[0];
        let start = b.block_params(entry)[1];
        let end = b.block_params(entry)[2];
        let partial = b.block_params(entry)[3];
        // Byte offsets of each operand as the outer loops advance. A sum goes to its buffer,
        // or, when `partial` is set, to its place in the partial-sum region.
        let mut rel = 0i64;
        let bases: Vec<Value> = self
            .inputs
            .iter()
            .chain(self.outputs.iter())
            .map(|a| {
                let planned = b.ins().iadd_imm_s(arena, a.offset as i64);
                if !a.accumulate {
                    return planned;
                }
                let region = b.ins().iadd(arena, partial);
                let alternative = b.ins().iadd_imm_s(region, rel);
                rel += (self.f.ty(a.value).numel() * 4) as i64;
                b.ins().select(partial, alternative, planned)
            })
            .collect();
        // Sums start at zero (each thread's own, when a loop with sums is split).
        for (a, &base) in self.outputs.iter().zip(&bases[self.inputs.len()..]) {
            if a.accumulate {
                self.zero(b, base, self.f.ty(a.value).numel());
            }
        }
        if self.l.band {
            self.level(b, 0, None, bases, Some((start, end)));
        } else {
            self.level(b, 0, Some((start, end)), bases, None);
        }
        b.ins().return_(&[]);
    }

    /// Emits the loop over dimension `d`; `range` overrides its bounds (the outermost one),
    /// `band` those of the innermost.
    fn level(
        &self,
        b: &mut FunctionBuilder<'_>,
        d: usize,
        range: Option<(Value, Value)>,
        bases: Vec<Value>,
        band: Option<(Value, Value)>,
    ) {
        let last = self.dims.len() - 1;
        if d == last {
            self.inner(b, range.or(band), &bases);
            return;
        }
        let (lo, hi) = range.unwrap_or_else(|| {
            (
                b.ins().iconst(types::I64, 0),
                b.ins().iconst(types::I64, self.dims[d] as i64),
            )
        });
        counted_loop(b, (lo, hi), IntCC::UnsignedLessThan, |b, i| {
            let accesses = self.inputs.iter().chain(self.outputs.iter());
            let next_bases: Vec<Value> = accesses
                .zip(&bases)
                .map(|(a, &base)| {
                    let step = (a.strides[d] * elem_size(a.dtype)) as i64;
                    if step == 0 {
                        base
                    } else {
                        let off = b.ins().imul_imm_s(i, step);
                        b.ins().iadd(base, off)
                    }
                })
                .collect();
            self.level(b, d + 1, None, next_bases, band);
            b.ins().iadd_imm_s(i, 1)
        });
    }

    /// The innermost loop: vector body and scalar tail. With row calls, it runs chunk by
    /// chunk: a pass per call stores the function's argument along the chunk into a row on
    /// the stack, and the library replaces the row by the function's values; a last pass
    /// computes the rest, reading those rows.
    fn inner(&self, b: &mut FunctionBuilder<'_>, range: Option<(Value, Value)>, bases: &[Value]) {
        let last = self.dims.len() - 1;
        let n = self.dims[last] as i64;
        let (lo, hi) = match range {
            Some(r) => r,
            None => (b.ins().iconst(types::I64, 0), b.ins().iconst(types::I64, n)),
        };
        let outputs: Vec<ValueId> = self.outputs.iter().map(|a| a.value).collect();
        if self.row_calls.is_empty() {
            let pass = self.pass(&outputs, Vec::new());
            self.vectors_and_tail(b, lo, hi, bases, &pass);
            return;
        }
        let mut sig = ir::Signature::new(b.func.signature.call_conv);
        sig.params.push(AbiParam::new(types::I64));
        sig.params.push(AbiParam::new(types::I64));
        let sig = b.import_signature(sig);
        let slots: Vec<_> = self
            .row_calls
            .iter()
            .map(|_| {
                let data =
                    StackSlotData::new(StackSlotKind::ExplicitSlot, (ROW_CHUNK * 4) as u32, 6);
                b.create_sized_stack_slot(data)
            })
            .collect();
        counted_loop(b, (lo, hi), IntCC::SignedLessThan, |b, c| {
            let next = b.ins().iadd_imm_s(c, ROW_CHUNK);
            let whole = b.ins().icmp(IntCC::SignedLessThan, next, hi);
            let end = b.ins().select(whole, next, hi);
            let len = b.ins().isub(end, c);
            let rows: Vec<Value> = slots
                .iter()
                .map(|&slot| b.ins().stack_addr(types::I64, slot, 0))
                .collect();
            let results: Vec<(ValueId, Value)> = self
                .row_calls
                .iter()
                .zip(&rows)
                .map(|(&(i, ..), &row)| (self.f.insts[i].result, row))
                .collect();
            for (k, &(i, function, isa)) in self.row_calls.iter().enumerate() {
                let argument = self.f.insts[i].args[0];
                let mut pass = self.pass(&[argument], results[..k].to_vec());
                pass.write = Some((argument, rows[k]));
                pass.chunk = Some(c);
                self.vectors_and_tail(b, c, end, bases, &pass);
                // A function of this binary, compiled for a unit the CPU has (`rows` is
                // filtered in `LoopGen::new`): the address stays valid, and the call touches
                // only the row.
                let entry: RowFn = function.row_fn(isa);
                let callee = b.ins().iconst(types::I64, entry as usize as i64);
                b.ins().call_indirect(sig, callee, &[rows[k], len]);
            }
            let mut pass = self.pass(&outputs, results);
            pass.chunk = Some(c);
            self.vectors_and_tail(b, c, end, bases, &pass);
            next
        });
    }

    /// `pass` over `lo..hi`: vectors over `[lo, lo + 4·⌊(hi − lo)/4⌋)`, then one at a time.
    fn vectors_and_tail(
        &self,
        b: &mut FunctionBuilder<'_>,
        lo: Value,
        hi: Value,
        bases: &[Value],
        pass: &Pass,
    ) {
        let mut tail_start = lo;
        if self.vector {
            let len = b.ins().isub(hi, lo);
            let whole = b.ins().band_imm_s(len, !3);
            let vend = b.ins().iadd(lo, whole);
            self.counted(b, lo, vend, 4, bases, true, pass);
            tail_start = vend;
        }
        self.counted(b, tail_start, hi, 1, bases, false, pass);
    }

    /// A counted loop over `lo..hi` in steps of `step` lanes.
    #[allow(clippy::too_many_arguments)]
    fn counted(
        &self,
        b: &mut FunctionBuilder<'_>,
        lo: Value,
        hi: Value,
        step: i64,
        bases: &[Value],
        vector: bool,
        pass: &Pass,
    ) {
        let last = self.dims.len() - 1;
        let header = b.create_block();
        let body = b.create_block();
        let exit = b.create_block();
        b.append_block_param(header, types::I64);
        // Sums along this loop's own axis are carried in registers and added to memory once.
        let lane = if vector { types::F32X4 } else { types::F32 };
        let stores_outputs = pass.write.is_none();
        let carried: Vec<usize> = (0..self.outputs.len())
            .filter(|&k| {
                stores_outputs && self.outputs[k].accumulate && self.outputs[k].strides[last] == 0
            })
            .collect();
        let mut init: Vec<ir::BlockArg> = vec![lo.into()];
        for _ in &carried {
            b.append_block_param(header, lane);
            b.append_block_param(exit, lane);
            init.push(self.constant(b, 0.0, vector).into());
        }
        b.ins().jump(header, &init);
        b.switch_to_block(header);
        let j = b.block_params(header)[0];
        let accs: Vec<Value> = b.block_params(header)[1..].to_vec();
        let more = b.ins().icmp(IntCC::SignedLessThan, j, hi);
        let acc_args: Vec<ir::BlockArg> = accs.iter().map(|&a| a.into()).collect();
        b.ins().brif(more, body, &[], exit, &acc_args);
        b.switch_to_block(body);
        let flags = MemFlagsData::new().with_notrap();
        let mut env: HashMap<ValueId, Value> = HashMap::new();
        let addr = |b: &mut FunctionBuilder<'_>, a: &Access, base: Value| {
            let s = (a.strides[last] * elem_size(a.dtype)) as i64;
            if s == 0 {
                base
            } else {
                let off = b.ins().imul_imm_s(j, s);
                b.ins().iadd(base, off)
            }
        };
        // A row's element for this iteration: `j − chunk` floats from its start.
        let row_at = |b: &mut FunctionBuilder<'_>, row: Value| {
            let chunk = pass.chunk.expect("rows are used in chunks");
            let k = b.ins().isub(j, chunk);
            let off = b.ins().imul_imm_s(k, 4);
            b.ins().iadd(row, off)
        };
        for &(v, row) in &pass.reads {
            let p = row_at(b, row);
            env.insert(v, b.ins().load(lane, flags, p, 0));
        }
        for &k in &pass.loads {
            let (a, base) = (&self.inputs[k], bases[k]);
            let p = addr(b, a, base);
            let v = match (a.dtype, vector) {
                (DType::F32, true) if a.strides[last] == 1 => {
                    b.ins().load(types::F32X4, flags, p, 0)
                }
                (DType::F32, true) => {
                    let s = b.ins().load(types::F32, flags, p, 0);
                    b.ins().splat(types::F32X4, s)
                }
                (DType::F32, false) => b.ins().load(types::F32, flags, p, 0),
                (DType::I32, _) => b.ins().load(types::I32, flags, p, 0),
                (DType::U8, true) => {
                    // Four bytes, widened to four i32 lanes.
                    let word = b.ins().load(types::I32, flags, p, 0);
                    let v = b.ins().scalar_to_vector(types::I32X4, word);
                    let le = MemFlagsData::new().with_endianness(ir::Endianness::Little);
                    let bytes = b.ins().bitcast(types::I8X16, le, v);
                    let half = b.ins().uwiden_low(bytes);
                    b.ins().uwiden_low(half)
                }
                (DType::U8, false) => b.ins().uload8(types::I32, flags, p, 0),
            };
            env.insert(a.value, v);
        }
        for &i in &pass.insts {
            let inst = &self.f.insts[i];
            let v = self.op(b, inst, &env, vector);
            env.insert(inst.result, v);
        }
        if let Some((v, row)) = pass.write {
            let x = self.arg(b, v, &env, vector);
            let p = row_at(b, row);
            b.ins().store(flags, x, p, 0);
        }
        let mut next_accs = Vec::new();
        let outputs = if stores_outputs {
            self.outputs.len()
        } else {
            0
        };
        for (k, (a, &base)) in self.outputs[..outputs]
            .iter()
            .zip(&bases[self.inputs.len()..])
            .enumerate()
        {
            let x = env[&a.value];
            if let Some(c) = carried.iter().position(|&ck| ck == k) {
                next_accs.push(b.ins().fadd(accs[c], x));
            } else if a.accumulate {
                let p = addr(b, a, base);
                let old = b.ins().load(lane, flags, p, 0);
                let sum = b.ins().fadd(old, x);
                b.ins().store(flags, sum, p, 0);
            } else {
                let p = addr(b, a, base);
                b.ins().store(flags, x, p, 0);
            }
        }
        let next = b.ins().iadd_imm_s(j, step);
        let mut args: Vec<ir::BlockArg> = vec![next.into()];
        args.extend(next_accs.iter().map(|&v| ir::BlockArg::from(v)));
        b.ins().jump(header, &args);
        b.switch_to_block(exit);
        // Add each carried sum (its lanes folded) to its element.
        let finals: Vec<Value> = b.block_params(exit).to_vec();
        for (&k, &acc) in carried.iter().zip(&finals) {
            let a = &self.outputs[k];
            let base = bases[self.inputs.len() + k];
            let total = if vector {
                let mut t = b.ins().extractlane(acc, 0);
                for lane_index in 1..4u8 {
                    let x = b.ins().extractlane(acc, lane_index);
                    t = b.ins().fadd(t, x);
                }
                t
            } else {
                acc
            };
            let _ = a;
            let old = b.ins().load(types::F32, flags, base, 0);
            let sum = b.ins().fadd(old, total);
            b.ins().store(flags, sum, base, 0);
        }
    }

    /// Stores `n` f32 zeros from `base`.
    fn zero(&self, b: &mut FunctionBuilder<'_>, base: Value, n: usize) {
        let flags = MemFlagsData::new().with_notrap();
        let header = b.create_block();
        let body = b.create_block();
        let exit = b.create_block();
        b.append_block_param(header, types::I64);
        let start = b.ins().iconst(types::I64, 0);
        b.ins().jump(header, &[start.into()]);
        b.switch_to_block(header);
        let i = b.block_params(header)[0];
        let more = b.ins().icmp_imm_s(IntCC::SignedLessThan, i, n as i64);
        b.ins().brif(more, body, &[], exit, &[]);
        b.switch_to_block(body);
        let off = b.ins().imul_imm_s(i, 4);
        let p = b.ins().iadd(base, off);
        let z = b.ins().f32const(0.0);
        b.ins().store(flags, z, p, 0);
        let next = b.ins().iadd_imm_s(i, 1);
        b.ins().jump(header, &[next.into()]);
        b.switch_to_block(exit);
    }

    fn constant(&self, b: &mut FunctionBuilder<'_>, x: f32, vector: bool) -> Value {
        Emit { b, vector }.constant(x)
    }

    /// The value of operand `v` in this iteration: computed, loaded, or an inlined constant.
    fn arg(
        &self,
        b: &mut FunctionBuilder<'_>,
        v: ValueId,
        env: &HashMap<ValueId, Value>,
        vector: bool,
    ) -> Value {
        if let Some(&x) = env.get(&v) {
            return x;
        }
        match self.splats.get(&v) {
            Some(&value) => self.constant(b, value as f32, vector),
            None => unreachable!(
                "loop operand %{} is neither computed, loaded nor constant",
                v.0
            ),
        }
    }

    /// `c ? x : y` for a comparison result `c` (i8 for scalars, a lane mask for vectors).
    fn choose(
        &self,
        b: &mut FunctionBuilder<'_>,
        c: Value,
        x: Value,
        y: Value,
        vector: bool,
    ) -> Value {
        Emit { b, vector }.select(c, x, y)
    }

    fn op(
        &self,
        b: &mut FunctionBuilder<'_>,
        inst: &nnc_ir::Inst,
        env: &HashMap<ValueId, Value>,
        vector: bool,
    ) -> Value {
        let arg = |b: &mut FunctionBuilder<'_>, k: usize| self.arg(b, inst.args[k], env, vector);
        let zero = |b: &mut FunctionBuilder<'_>| self.constant(b, 0.0, vector);
        let one = |b: &mut FunctionBuilder<'_>| self.constant(b, 1.0, vector);
        match &inst.op {
            Op::Unary(u) => {
                let x = arg(b, 0);
                match u {
                    Unary::Neg => b.ins().fneg(x),
                    Unary::Abs => b.ins().fabs(x),
                    Unary::Sqrt => b.ins().sqrt(x),
                    Unary::Recip => {
                        let o = one(b);
                        b.ins().fdiv(o, x)
                    }
                    Unary::Relu => {
                        let z = zero(b);
                        let c = b.ins().fcmp(FloatCC::GreaterThan, x, z);
                        self.choose(b, c, x, z, vector)
                    }
                    Unary::Step => {
                        let (z, o) = (zero(b), one(b));
                        let c = b.ins().fcmp(FloatCC::GreaterThan, x, z);
                        self.choose(b, c, o, z, vector)
                    }
                    Unary::Sign => {
                        let (z, o) = (zero(b), one(b));
                        let pos = b.ins().fcmp(FloatCC::GreaterThan, x, z);
                        let neg = b.ins().fcmp(FloatCC::LessThan, x, z);
                        let p = self.choose(b, pos, o, z, vector);
                        let n = self.choose(b, neg, o, z, vector);
                        b.ins().fsub(p, n)
                    }
                    Unary::Exp => Emit { b, vector }.exp(x),
                    Unary::Tanh => Emit { b, vector }.tanh(x),
                    Unary::Sigmoid => Emit { b, vector }.sigmoid(x),
                    Unary::Log => Emit { b, vector }.log(x),
                    Unary::Softplus => Emit { b, vector }.softplus(x),
                }
            }
            Op::Binary(op) => {
                let (x, y) = (arg(b, 0), arg(b, 1));
                match op {
                    Binary::Add => b.ins().fadd(x, y),
                    Binary::Sub => b.ins().fsub(x, y),
                    Binary::Mul => b.ins().fmul(x, y),
                    Binary::Div => b.ins().fdiv(x, y),
                    // As the interpreter: y if y > x (resp. y < x), else x.
                    Binary::Max => {
                        let c = b.ins().fcmp(FloatCC::GreaterThan, y, x);
                        self.choose(b, c, y, x, vector)
                    }
                    Binary::Min => {
                        let c = b.ins().fcmp(FloatCC::LessThan, y, x);
                        self.choose(b, c, y, x, vector)
                    }
                }
            }
            Op::Compare(c) => {
                let (x, y) = (arg(b, 0), arg(b, 1));
                let int = self.f.ty(inst.args[0]).dtype != DType::F32;
                let cond = match (c, int) {
                    (Compare::Gt, false) => b.ins().fcmp(FloatCC::GreaterThan, x, y),
                    (Compare::Eq, false) => b.ins().fcmp(FloatCC::Equal, x, y),
                    (Compare::Gt, true) => b.ins().icmp(IntCC::SignedGreaterThan, x, y),
                    (Compare::Eq, true) => b.ins().icmp(IntCC::Equal, x, y),
                };
                let (o, z) = (one(b), zero(b));
                self.choose(b, cond, o, z, vector)
            }
            Op::Select => {
                let (c, x, y) = (arg(b, 0), arg(b, 1), arg(b, 2));
                let z = zero(b);
                let cond = b.ins().fcmp(FloatCC::NotEqual, c, z);
                self.choose(b, cond, x, y, vector)
            }
            Op::ToF32 { scale } => {
                let x = arg(b, 0);
                let from = self.f.ty(inst.args[0]).dtype;
                let v = match (from, vector) {
                    (DType::F32, _) => x,
                    // Bytes widened to i32 lanes: below 256, so the signed conversion is exact.
                    (DType::U8, true) => b.ins().fcvt_from_sint(types::F32X4, x),
                    (DType::U8, false) => b.ins().fcvt_from_uint(types::F32, x),
                    (DType::I32, _) => b.ins().fcvt_from_sint(types::F32, x),
                };
                if *scale == 1.0 {
                    v
                } else {
                    let s = self.constant(b, *scale as f32, vector);
                    b.ins().fmul(v, s)
                }
            }
            // The operand was loaded with broadcast strides: nothing left to do.
            Op::Broadcast { .. } => arg(b, 0),
            // The contribution of this iteration; the store accumulates it.
            Op::ReduceSum { .. } => arg(b, 0),
            other => unreachable!("`{}` is not a loop op", other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fma` links and rounds once, with and without the CPU's FMA unit (without it, through
    /// the registered `fmaf`).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn fma_rounds_once_with_or_without_the_unit() {
        // The host's unit as detected, then without FMA.
        for host in [true, false] {
            let mut isa = cranelift_native::builder().expect("host");
            if !host {
                isa.set("has_fma", "false").expect("an x86 flag");
            }
            let isa = isa
                .finish(settings::Flags::new(settings::builder()))
                .expect("isa");
            let mut module = module(isa);
            let target = module.target_config();
            let mut ctx = module.make_context();
            for _ in 0..3 {
                ctx.func.signature.params.push(AbiParam::new(types::F32));
            }
            ctx.func.signature.returns.push(AbiParam::new(types::F32));
            let id = module
                .declare_function("fma3", Linkage::Local, &ctx.func.signature)
                .expect("declared");
            let mut fctx = FunctionBuilderContext::new();
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let [x, y, z] = b.block_params(entry).try_into().expect("three params");
            let r = b.ins().fma(x, y, z);
            b.ins().return_(&[r]);
            b.seal_all_blocks();
            b.finalize(target);
            module.define_function(id, &mut ctx).expect("compiles");
            module.finalize_definitions().expect("links");
            // SAFETY: the function was generated with this signature; `module` outlives the
            // call.
            let f = unsafe {
                std::mem::transmute::<*const u8, extern "C" fn(f32, f32, f32) -> f32>(
                    module.get_finalized_function(id),
                )
            };
            // (1 + 2⁻²³)² − (1 + 2⁻²²) = 2⁻⁴⁶ exactly; rounded before the sum, 0.
            let x = 1.0 + f32::EPSILON;
            let c = -(1.0 + 2.0 * f32::EPSILON);
            assert_eq!(f(x, x, c), 2.0f32.powi(-46), "host's unit {host}");
            assert_eq!(x * x + c, 0.0);
        }
    }
}
