//! Epilogues a library kernel runs itself: a fused epilogue loop recognised, operation by
//! operation, as one that the kernel's arithmetic ([`nnc_kernels`]) computes as it stores,
//! so the loop does not run and what it would read back is never stored. Each recognition
//! gives the byte offsets the kernel reads and writes in the arena.
//!
//! - [`bias_relu_epilogue`]: a convolution's `relu(y + b)`, added and rectified by every
//!   kernel family of the forward product; [`bias_function_epilogue`]: its `tanh(y + b)`
//!   (or another transcendental function, with LeCun's slope and scale), applied by every
//!   family to its part's planes (the positions kernel adds the bias as it stores).
//! - [`residual_relu_epilogue`]: a residual connection in the convolution before it:
//!   `relu((conv(x, w) + b) + skip)`, where a fused epilogue would read the convolution's
//!   result back to add its bias, the other branch and rectify, is stored by
//!   [`gemm_conv`] as it scatters its rows (the sum in the loop's order, so the bits are the
//!   loop's). The gradient needs nothing of its own: the activation mask, the fan-out sum of
//!   the two branches' gradients and the bias gradient already run as one loop in the
//!   epilogue of the input gradient before them.
//! - [`MaskedGrad`]: a max pool's gradient with its ReLU mask and bias-gradient sum (the
//!   backward pass of `conv → relu → maxpool`), run as [`pool::max_gradient_masked`].
//!
//! [`gemm_conv`]: nnc_kernels::gemm_conv

use nnc_ir::{Binary, DType, Function, Op, Unary, ValueId};
use nnc_kernels::pool::{self, Window};
use nnc_kernels::{Isa, transcendental};

use crate::kernel::{LoopKernel, used_only_by};
use crate::plan::Plan;

/// For a stride-1, unpadded `conv2d` (instruction `inst`) whose fused epilogue is exactly
/// `relu(y + b)`, with `b` a `[O, 1, 1]` view of `O` floats and `y` and the sum read by
/// nothing else: the byte offsets of `b` and of the ReLU's result, where the convolution can
/// write `relu(y + b)` itself (`forward` with a bias, in each kernel family).
pub fn bias_relu_epilogue(
    f: &Function,
    inst: usize,
    epilogue: &LoopKernel,
    plan: &Plan,
) -> Option<(usize, usize)> {
    let (bias, sum, rest) = bias_sum(f, inst, epilogue, plan)?;
    let &[i_relu] = rest else {
        return None;
    };
    let relu = &f.insts[i_relu];
    let relu_ok = matches!(relu.op, Op::Unary(Unary::Relu)) && relu.args == [sum];
    // `y` and the sum live only in the kernel; the ReLU's result is what it stores.
    let stores_only_relu = epilogue.outputs == [relu.result] && epilogue.reductions.is_empty();
    (relu_ok && stores_only_relu && dense(plan, &[relu.result]) && used_only_by(f, sum, i_relu))
        .then_some(())?;
    Some((bias, plan.offset[relu.result.index()]?))
}

/// An activation after a convolution's bias that the convolution applies itself
/// ([`bias_function_epilogue`]): `t = f((y + b)·slope)`, and `scale·t`; the byte offsets of
/// what it reads and stores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Activation {
    /// The bias, `[O]` floats.
    pub bias: usize,
    pub slope: Option<f32>,
    pub f: transcendental::Function,
    pub scale: Option<f32>,
    /// Where `t` is stored, if something reads it (a derivative does: `1 − t²`).
    pub t: Option<usize>,
    /// Where `scale·t` is stored, if something reads it.
    pub scaled: Option<usize>,
}

/// For a `conv2d` (instruction `inst`) whose fused epilogue is exactly `f((y + b)·a)` and
/// `s·f(…)`, the multiplications by constants each optional, `f` a transcendental function
/// the compiled loops apply along rows ([`nnc_kernels::transcendental`]), `b` a `[O, 1, 1]`
/// view of `O` floats, and nothing else read outside the loop but `t = f(…)` and `s·t`:
/// where the convolution can store them itself (`nnc_kernels::store::Then`, the loop's
/// bits).
pub fn bias_function_epilogue(
    f: &Function,
    inst: usize,
    epilogue: &LoopKernel,
    plan: &Plan,
) -> Option<Activation> {
    let (bias, sum, rest) = bias_sum(f, inst, epilogue, plan)?;
    // The product by a constant of `v` at `insts[0]`, if it is one: (the constant, the
    // product, its instruction).
    let times_constant = |insts: &[usize], v: ValueId| -> Option<(f32, ValueId, usize)> {
        let &k = insts.first()?;
        let i = &f.insts[k];
        let c = match (&i.op, &i.args[..]) {
            (Op::Binary(Binary::Mul), &[p, c] | &[c, p]) if p == v => c,
            _ => return None,
        };
        let def = f.insts.iter().find(|d| d.result == c)?;
        match def.op {
            Op::Const { value } if f.ty(c).numel() == 1 => Some((value as f32, i.result, k)),
            _ => None,
        }
    };
    let (&first, _) = rest.split_first()?;
    let (slope, arg, rest, sum_reader) = match times_constant(rest, sum) {
        Some((a, arg, k)) => (Some(a), arg, &rest[1..], k),
        None => (None, sum, rest, first),
    };
    let (&i_f, rest) = rest.split_first()?;
    let fi = &f.insts[i_f];
    let function = crate::codegen::transcendental(&fi.op).filter(|_| fi.args == [arg])?;
    let t = fi.result;
    let (scale, st, rest) = match times_constant(rest, t) {
        Some((s, st, _)) => (Some(s), Some(st), &rest[1..]),
        None => (None, None, rest),
    };
    // Nothing else in the loop; it stores `t` or `s·t` or both, and the values before `t`
    // are read by nothing outside it.
    let outputs = &epilogue.outputs;
    let stored = |v: Option<ValueId>| v.filter(|v| outputs.contains(v));
    let (t_out, st_out) = (stored(Some(t)), stored(st));
    let only_these = outputs.iter().all(|&v| v == t || Some(v) == st);
    let inner_only = used_only_by(f, sum, sum_reader) && used_only_by(f, arg, i_f);
    (rest.is_empty()
        && epilogue.reductions.is_empty()
        && only_these
        && (t_out.is_some() || st_out.is_some())
        && (st_out.is_some() || scale.is_none() || t_out.is_some())
        && inner_only
        && dense(plan, outputs))
    .then_some(())?;
    // `Some(None)` for a value not stored; `None` (not recognised) for one without an offset.
    let offset = |v: Option<ValueId>| match v {
        None => Some(None),
        Some(v) => plan.offset[v.index()].map(Some),
    };
    Some(Activation {
        bias,
        slope,
        f: function,
        scale,
        t: offset(t_out)?,
        scaled: offset(st_out)?,
    })
}

/// For a `conv2d` (instruction `inst`) whose fused epilogue starts with `y + b`, `b` a
/// `[O, 1, 1]` view of `O` floats and `y` read by nothing else: the bias's byte offset, the
/// sum and the epilogue's later instructions.
fn bias_sum<'e>(
    f: &Function,
    inst: usize,
    epilogue: &'e LoopKernel,
    plan: &Plan,
) -> Option<(usize, ValueId, &'e [usize])> {
    let conv = &f.insts[inst];
    let y = conv.result;
    if !matches!(&conv.op, Op::Conv2d { .. }) {
        return None;
    }
    let (&i_add, rest) = epilogue.insts.split_first()?;
    let add = &f.insts[i_add];
    let b = match (&add.op, &add.args[..]) {
        (Op::Binary(Binary::Add), &[p, q]) if p == y => q,
        (Op::Binary(Binary::Add), &[p, q]) if q == y => p,
        _ => return None,
    };
    let o = f.ty(y).shape.get(1).copied()?;
    let shape_ok = f.ty(b).shape == [o, 1, 1] && f.ty(b).dtype == DType::F32;
    (shape_ok && used_only_by(f, y, i_add)).then_some(())?;
    Some((plan.offset[b.index()]?, add.result, rest))
}

/// Whether the values are each row-major in a buffer of their own (no window of another
/// value's, [`crate::window`]): what a library kernel reads or stores directly.
fn dense(plan: &Plan, values: &[ValueId]) -> bool {
    values.iter().all(|v| plan.strides[v.index()].is_none())
}

/// Byte offsets of what a recognised epilogue reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Residual {
    /// The bias, `[O]` floats.
    pub bias: usize,
    /// The other branch, of the convolution's shape (may be `out` itself: the result reuses
    /// its buffer).
    pub skip: usize,
    /// The ReLU's result.
    pub out: usize,
}

/// For a `conv2d` (instruction `inst`) whose fused epilogue is exactly
/// `relu((y + b) + skip)` (either operand order in each sum), with `b` a `[O, 1, 1]` view of
/// `O` floats, `skip` an f32 tensor of `y`'s shape, and `y` and both sums read by nothing
/// else: where the convolution can store the ReLU's result itself.
pub fn residual_relu_epilogue(
    f: &Function,
    inst: usize,
    epilogue: &LoopKernel,
    plan: &Plan,
) -> Option<Residual> {
    let conv = &f.insts[inst];
    let y = conv.result;
    if !matches!(&conv.op, Op::Conv2d { .. }) {
        return None;
    }
    let &[i_bias, i_skip, i_relu] = epilogue.insts.as_slice() else {
        return None;
    };
    let (add_b, add_s, relu) = (&f.insts[i_bias], &f.insts[i_skip], &f.insts[i_relu]);
    // The operand of a sum that is not `v`.
    let other = |inst: &nnc_ir::Inst, v: ValueId| match (&inst.op, &inst.args[..]) {
        (Op::Binary(Binary::Add), &[p, q]) if p == v => Some(q),
        (Op::Binary(Binary::Add), &[p, q]) if q == v => Some(p),
        _ => None,
    };
    let b = other(add_b, y)?;
    let skip = other(add_s, add_b.result)?;
    let o = f.ty(y).shape.get(1).copied()?;
    let bias_ok = f.ty(b).shape == [o, 1, 1] && f.ty(b).dtype == DType::F32;
    let skip_ok = f.ty(skip) == f.ty(y) && skip != y;
    let relu_ok = matches!(relu.op, Op::Unary(Unary::Relu)) && relu.args == [add_s.result];
    let stores_only_relu = epilogue.outputs == [relu.result] && epilogue.reductions.is_empty();
    (bias_ok
        && skip_ok
        && relu_ok
        && stores_only_relu
        && dense(plan, &[skip, relu.result])
        && used_only_by(f, y, i_bias)
        && used_only_by(f, add_b.result, i_skip)
        && used_only_by(f, add_s.result, i_relu))
    .then_some(())?;
    Some(Residual {
        bias: plan.offset[b.index()]?,
        skip: plan.offset[skip.index()]?,
        out: plan.offset[relu.result.index()]?,
    })
}

/// A split `maxpool_grad` whose epilogue loop is exactly the ReLU mask and the bias
/// gradient, `dz = dx · step(x)` and `Σ dz` over all axes but the channels, with `dx` read by
/// nothing else: run as [`pool::max_gradient_masked`], so `dx` is never stored and read
/// back. Offsets are bytes in the arena.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskedGrad {
    pub x: usize,
    pub dy: usize,
    pub dz: usize,
    pub sums: usize,
    /// `[N, C, H, W]` of `x` and `dz`.
    pub shape: [usize; 4],
    pub window: Window,
    /// The pool kernel's scratch: its offset, and its bytes per part (what the
    /// `maxpool_grad` kernel reserved, [`pool::scratch_floats`] of a gradient).
    pub scratch: (usize, usize),
}

impl MaskedGrad {
    /// The fused kernel `inst` → `epilogue` as a masked pool gradient, if it is exactly one;
    /// `scratch` is the pool kernel's (its offset and bytes per part).
    pub fn recognise(
        f: &Function,
        inst: usize,
        epilogue: &LoopKernel,
        plan: &Plan,
        scratch: (usize, usize),
    ) -> Option<Self> {
        let pool = &f.insts[inst];
        let (&[x, dy], dx) = (&pool.args[..], pool.result) else {
            return None;
        };
        let Op::MaxPoolGrad { size, stride } = pool.op else {
            return None;
        };
        let shape: [usize; 4] = f.ty(x).shape.as_slice().try_into().ok()?;
        let [n, c, h, w] = shape;
        if size[0] > h || size[1] > w || size.contains(&0) || stride.contains(&0) {
            return None;
        }
        let window = Window::new([h, w], size, stride);
        if !pool::masked_applies(&window) {
            return None;
        }
        let op = |i: usize| (&f.insts[i].op, &f.insts[i].args[..], f.insts[i].result);
        let &[i_step, i_mul, i_sum] = epilogue.insts.as_slice() else {
            return None;
        };
        let (Op::Unary(Unary::Step), &[sx], t) = op(i_step) else {
            return None;
        };
        let (Op::Binary(Binary::Mul), &[p, q], dz) = op(i_mul) else {
            return None;
        };
        let (Op::ReduceSum { axes }, &[summed], sums) = op(i_sum) else {
            return None;
        };
        let operands_match = sx == x && ((p, q) == (dx, t) || (p, q) == (t, dx)) && summed == dz;
        let f32s = [
            (x, shape),
            (dx, shape),
            (dz, shape),
            (dy, [n, c, window.oh, window.ow]),
        ]
        .iter()
        .all(|&(v, s)| f.ty(v).dtype == DType::F32 && f.ty(v).shape == s);
        // `dx` lives only in the loop; `dz` and the sums are what it stores.
        let dx_private = used_only_by(f, dx, i_mul);
        let mut outputs = epilogue.outputs.clone();
        outputs.sort_unstable_by_key(|v| v.0);
        let mut want = vec![dz, sums];
        want.sort_unstable_by_key(|v| v.0);
        if !(operands_match
            && f32s
            && dx_private
            && *axes == [0, 2, 3]
            && f.ty(sums).shape == [c]
            && outputs == want
            && epilogue.reductions == [sums]
            && dense(plan, &[x, dy, dz]))
        {
            return None;
        }
        Some(MaskedGrad {
            x: plan.offset[x.index()]?,
            dy: plan.offset[dy.index()]?,
            dz: plan.offset[dz.index()]?,
            sums: plan.offset[sums.index()]?,
            shape,
            window,
            scratch,
        })
    }

    /// Runs part `part` of `parts` (the planes split evenly); its sums go to their buffer, or
    /// to `base + partial` when `partial` is not 0 (the loop calling convention).
    ///
    /// # Safety
    /// `base` is the arena this was recognised in (`scratch` set to its pool kernel's), the
    /// CPU supports `isa`, and no other thread touches this part's planes, its scratch or its
    /// sums' destination meanwhile.
    pub unsafe fn run_part(
        &self,
        isa: Isa,
        base: *mut u8,
        part: usize,
        parts: usize,
        partial: usize,
    ) {
        let [n, c, ..] = self.shape;
        let lead = n * c;
        let (lo, hi) = (lead * part / parts, lead * (part + 1) / parts);
        let (plane, pooled) = (self.window.plane(), self.window.pooled());
        let scratch_floats = pool::scratch_floats(&self.window, true);
        // SAFETY: the offsets hold tensors of these shapes in the arena (the plan); this
        // part's planes of `dz` and its sums are written by no one else meanwhile, and `dz`
        // does not overlap `x` or `dy` (the plan keeps a kernel's inputs apart from the
        // outputs of its epilogue, except the library result `dz` replaces).
        unsafe {
            let at = |off: usize| base.add(off).cast::<f32>();
            let x = std::slice::from_raw_parts(at(self.x).add(lo * plane), (hi - lo) * plane);
            let dy = std::slice::from_raw_parts(at(self.dy).add(lo * pooled), (hi - lo) * pooled);
            let dz = std::slice::from_raw_parts_mut(at(self.dz).add(lo * plane), (hi - lo) * plane);
            let dst = if partial == 0 { self.sums } else { partial };
            let sums = std::slice::from_raw_parts_mut(at(dst), c);
            // This part's scratch (the pool kernel's, which `scratch_bytes` sized for a
            // gradient), written by no one else meanwhile.
            let (scratch, per) = self.scratch;
            let scratch = at(scratch + part * per);
            let scratch = std::slice::from_raw_parts_mut(scratch, scratch_floats);
            let planes = [lo, hi - lo, c];
            pool::max_gradient_masked(isa, x, dy, dz, sums, planes, &self.window, scratch);
        }
    }
}
