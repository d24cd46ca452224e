//! The reference interpreter: runs any IR function on ndarray tensors, in f32 or f64.
//!
//! It is the oracle: gradcheck compares its gradients (in f64) with finite differences, and the
//! JIT is tested against it. Clarity first; it is fast enough to train the MLP on MNIST because
//! its matrix products use ndarray's `dot` (matrixmultiply's tuned kernels).

use std::fmt::Debug;

use ndarray::{Array2, ArrayD, ArrayView2, Axis, IxDyn, Zip};

use crate::function::{Builder, Function, ValueId};
use crate::op::{Binary, Compare, Op, Unary};
use crate::ops::broadcast_shapes;
use crate::types::Type;

/// The float type the interpreter computes in.
pub trait Real: ndarray::LinalgScalar + PartialOrd + Debug + Send + Sync + 'static {
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
        }
    };
}
real!(f32);
real!(f64);

/// A runtime value: floats in the interpreter's precision, or integers.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor<T> {
    F(ArrayD<T>),
    I32(ArrayD<i32>),
    U8(ArrayD<u8>),
}

impl<T: Real> Tensor<T> {
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F(a) => a.shape(),
            Tensor::I32(a) => a.shape(),
            Tensor::U8(a) => a.shape(),
        }
    }

    pub fn as_f(&self) -> Result<&ArrayD<T>, String> {
        match self {
            Tensor::F(a) => Ok(a),
            _ => Err("expected a float tensor".into()),
        }
    }

    pub fn into_f(self) -> Result<ArrayD<T>, String> {
        match self {
            Tensor::F(a) => Ok(a),
            _ => Err("expected a float tensor".into()),
        }
    }

    /// A float scalar's value.
    pub fn scalar(&self) -> Result<f64, String> {
        let a = self.as_f()?;
        a.iter()
            .next()
            .map(|x| x.to_f64())
            .ok_or_else(|| "empty tensor".into())
    }

    pub fn from_f64(shape: &[usize], data: &[f64]) -> Tensor<T> {
        Tensor::F(
            ArrayD::from_shape_vec(IxDyn(shape), data.iter().map(|&x| T::from_f64(x)).collect())
                .expect("shape matches data"),
        )
    }
}

fn as_i32<T>(t: &Tensor<T>) -> Result<&ArrayD<i32>, String> {
    match t {
        Tensor::I32(a) => Ok(a),
        _ => Err("expected an i32 tensor".into()),
    }
}

/// Runs `f` on `inputs` (one per parameter, in order) and returns its results.
/// Each `allreduce_sum` is the identity: the sum over one process.
pub fn run<T: Real>(f: &Function, inputs: Vec<Tensor<T>>) -> Result<Vec<Tensor<T>>, String> {
    run_impl(f, inputs, false, &mut |_| {}).map(|(r, _)| r)
}

/// [`run`] with each `allreduce_sum` done by `sum`, which replaces the values it is given
/// (the operand's, in row-major order) by their sum over the job's processes: how a test
/// runs several shards of a data-parallel step side by side, a thread each.
pub fn run_summing<T: Real>(
    f: &Function,
    inputs: Vec<Tensor<T>>,
    sum: &mut dyn FnMut(&mut [T]),
) -> Result<Vec<Tensor<T>>, String> {
    run_impl(f, inputs, false, sum).map(|(r, _)| r)
}

/// [`run`] in f32, instantiated here so that callers get this crate's optimisation level
/// (generic functions are compiled in the crate that uses them).
pub fn run_f32(f: &Function, inputs: Vec<Tensor<f32>>) -> Result<Vec<Tensor<f32>>, String> {
    run(f, inputs)
}

/// [`run`] in f64 (see [`run_f32`]).
pub fn run_f64(f: &Function, inputs: Vec<Tensor<f64>>) -> Result<Vec<Tensor<f64>>, String> {
    run(f, inputs)
}

/// Runs `f` and also returns a hash of every discrete decision taken on the way: which side of
/// zero each ReLU input fell, which operand each max chose, each comparison's outcome, each
/// pooling window's maximum. Two runs with equal hashes took the same branch everywhere, so
/// the function is smooth between their inputs: gradcheck uses this to recognise finite
/// differences that straddle a kink.
pub fn run_traced<T: Real>(
    f: &Function,
    inputs: Vec<Tensor<T>>,
) -> Result<(Vec<Tensor<T>>, u64), String> {
    run_impl(f, inputs, true, &mut |_| {})
}

fn run_impl<T: Real>(
    f: &Function,
    inputs: Vec<Tensor<T>>,
    trace: bool,
    sum: &mut dyn FnMut(&mut [T]),
) -> Result<(Vec<Tensor<T>>, u64), String> {
    if inputs.len() != f.params.len() {
        return Err(format!(
            "{} inputs for {} parameters",
            inputs.len(),
            f.params.len()
        ));
    }
    let mut env: Vec<Option<Tensor<T>>> = vec![None; f.types.len()];
    for (&p, t) in f.params.iter().zip(inputs) {
        if t.shape() != f.ty(p).shape.as_slice() {
            return Err(format!(
                "input `{}` has shape {:?}, expected {}",
                f.name_of(p).unwrap_or("?"),
                t.shape(),
                f.ty(p)
            ));
        }
        env[p.index()] = Some(t);
    }
    // Free each value after its last use, so memory stays at the live set.
    let mut hash = Fnv::default();
    let mut last_use = vec![usize::MAX; f.types.len()];
    for (i, inst) in f.insts.iter().enumerate() {
        for a in &inst.args {
            last_use[a.index()] = i;
        }
    }
    for r in &f.results {
        last_use[r.index()] = usize::MAX;
    }
    for (i, inst) in f.insts.iter().enumerate() {
        let args: Vec<&Tensor<T>> = inst
            .args
            .iter()
            .map(|a| env[a.index()].as_ref().ok_or("operand not computed"))
            .collect::<Result<_, _>>()?;
        let shape = &f.ty(inst.result).shape;
        let mut out =
            eval(&inst.op, &args, shape).map_err(|e| format!("`{}`: {e}", inst.op.name()))?;
        if let (Op::AllReduceSum, Tensor::F(a)) = (&inst.op, &mut out) {
            let a = a.as_slice_mut().ok_or("`allreduce_sum`: not contiguous")?;
            sum(a);
        }
        if trace {
            decisions(&inst.op, &args, &out, &mut hash)?;
        }
        for a in &inst.args {
            if last_use[a.index()] == i {
                env[a.index()] = None;
            }
        }
        env[inst.result.index()] = Some(out);
    }
    let results = f
        .results
        .iter()
        .map(|r| {
            env[r.index()]
                .clone()
                .ok_or_else(|| "result not computed".to_string())
        })
        .collect::<Result<_, _>>()?;
    Ok((results, hash.0))
}

/// FNV-1a over the decision bits.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn add(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x0100_0000_01b3);
    }
}

/// Folds the discrete choices an op made into `hash` (see [`run_traced`]).
fn decisions<T: Real>(
    op: &Op,
    args: &[&Tensor<T>],
    out: &Tensor<T>,
    hash: &mut Fnv,
) -> Result<(), String> {
    let sign = |x: T| {
        if x > T::zero() {
            1
        } else if x < T::zero() {
            2
        } else {
            3
        }
    };
    match op {
        Op::Unary(Unary::Relu | Unary::Step | Unary::Abs | Unary::Sign)
        | Op::LeakyRelu { .. }
        | Op::Elu { .. } => {
            args[0].as_f()?.iter().for_each(|&x| hash.add(sign(x)));
        }
        Op::Binary(Binary::Max | Binary::Min) => {
            zip2(args[0].as_f()?, args[1].as_f()?, |x, y| sign(x - y))?
                .iter()
                .for_each(|&d| hash.add(d));
        }
        Op::Compare(_) | Op::Select => {
            let t = if matches!(op, Op::Select) {
                args[0]
            } else {
                out
            };
            t.as_f()?.iter().for_each(|&x| hash.add(sign(x)));
        }
        Op::ArgMax { .. } => {
            if let Tensor::I32(a) = out {
                a.iter().for_each(|&i| hash.add(i as u64));
            }
        }
        Op::MaxPool { size, stride } | Op::MaxPoolGrad { size, stride } => {
            let (a, _, _) = planes(args[0].as_f()?)?;
            let (oh, ow) = pooled_dims(&a, *size, *stride);
            for l in 0..a.shape()[0] {
                for i in 0..oh {
                    for j in 0..ow {
                        let (bi, bj) = window_argmax(&a, l, i, j, *size, *stride);
                        hash.add((bi * 65_536 + bj) as u64);
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn pooled_dims<T>(a: &ndarray::Array3<T>, k: [usize; 2], s: [usize; 2]) -> (usize, usize) {
    (
        (a.shape()[1] - k[0]) / s[0] + 1,
        (a.shape()[2] - k[1]) / s[1] + 1,
    )
}

/// The first maximum of a pooling window, in row-major order.
fn window_argmax<T: Real>(
    a: &ndarray::Array3<T>,
    l: usize,
    i: usize,
    j: usize,
    k: [usize; 2],
    s: [usize; 2],
) -> (usize, usize) {
    let (mut bi, mut bj) = (i * s[0], j * s[1]);
    for ki in 0..k[0] {
        for kj in 0..k[1] {
            let (ii, jj) = (i * s[0] + ki, j * s[1] + kj);
            if a[[l, ii, jj]] > a[[l, bi, bj]] {
                (bi, bj) = (ii, jj);
            }
        }
    }
    (bi, bj)
}

/// One element of a unary op (also used by constant folding).
pub fn unary<T: Real>(u: Unary, x: T) -> T {
    let zero = T::zero();
    let one = T::one();
    match u {
        Unary::Neg => zero - x,
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Sqrt => x.sqrt(),
        Unary::Recip => one / x,
        Unary::Tanh => x.tanh(),
        Unary::Sigmoid => {
            // Stable on both sides.
            if x >= zero {
                one / (one + (zero - x).exp())
            } else {
                let e = x.exp();
                e / (one + e)
            }
        }
        Unary::Relu => {
            if x > zero {
                x
            } else {
                zero
            }
        }
        Unary::Step => {
            if x > zero {
                one
            } else {
                zero
            }
        }
        Unary::Abs => x.abs(),
        Unary::Sign => {
            if x > zero {
                one
            } else if x < zero {
                zero - one
            } else {
                zero
            }
        }
        Unary::Softplus => {
            // ln(1 + eˣ) = max(x, 0) + ln(1 + e^−|x|)
            let m = if x > zero { x } else { zero };
            m + (one + (zero - x.abs()).exp()).ln()
        }
    }
}

/// One element of a binary op (also used by constant folding).
pub fn binary<T: Real>(b: Binary, x: T, y: T) -> T {
    match b {
        Binary::Add => x + y,
        Binary::Sub => x - y,
        Binary::Mul => x * y,
        Binary::Div => x / y,
        Binary::Max => {
            if y > x {
                y
            } else {
                x
            }
        }
        Binary::Min => {
            if y < x {
                y
            } else {
                x
            }
        }
    }
}

fn zip2<A: Clone, B: Clone, C>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> C,
) -> Result<ArrayD<C>, String> {
    let shape = broadcast_shapes(a.shape(), b.shape())?;
    let av = a.broadcast(IxDyn(&shape)).ok_or("broadcast")?;
    let bv = b.broadcast(IxDyn(&shape)).ok_or("broadcast")?;
    Ok(Zip::from(&av)
        .and(&bv)
        .map_collect(|x, y| f(x.clone(), y.clone())))
}

fn matrix<T: Real>(a: &ArrayD<T>) -> Result<ArrayView2<'_, T>, String> {
    a.view()
        .into_dimensionality()
        .map_err(|_| "expected a matrix".to_string())
}

fn eval<T: Real>(op: &Op, args: &[&Tensor<T>], shape: &[usize]) -> Result<Tensor<T>, String> {
    let f = |i: usize| args[i].as_f();
    let out = match op {
        Op::Unary(u) => f(0)?.mapv(|x| unary(*u, x)),
        Op::Binary(b) => zip2(f(0)?, f(1)?, |x, y| binary(*b, x, y))?,
        Op::Compare(c) => {
            let test = |gt: bool, eq: bool| match c {
                Compare::Gt => gt,
                Compare::Eq => eq,
            };
            let as_t = |b: bool| if b { T::one() } else { T::zero() };
            match (args[0], args[1]) {
                (Tensor::F(a), Tensor::F(b)) => zip2(a, b, |x, y| as_t(test(x > y, x == y)))?,
                (Tensor::I32(a), Tensor::I32(b)) => zip2(a, b, |x, y| as_t(test(x > y, x == y)))?,
                _ => return Err("operands differ in type".into()),
            }
        }
        Op::Select => {
            let s = broadcast_shapes(f(0)?.shape(), f(1)?.shape())?;
            let s = broadcast_shapes(&s, f(2)?.shape())?;
            let c = f(0)?.broadcast(IxDyn(&s)).ok_or("broadcast")?;
            let a = f(1)?.broadcast(IxDyn(&s)).ok_or("broadcast")?;
            let b = f(2)?.broadcast(IxDyn(&s)).ok_or("broadcast")?;
            Zip::from(&c)
                .and(&a)
                .and(&b)
                .map_collect(|&c, &a, &b| if c != T::zero() { a } else { b })
        }
        Op::Const { value } => ArrayD::from_elem(IxDyn(shape), T::from_f64(*value)),
        Op::ConstData { data } => {
            ArrayD::from_shape_vec(IxDyn(shape), data.iter().map(|&x| T::from_f64(x)).collect())
                .map_err(|e| e.to_string())?
        }
        Op::ReduceSum { axes } => {
            let mut a = f(0)?.clone();
            for &ax in axes.iter().rev() {
                a = a.sum_axis(Axis(ax));
            }
            a
        }
        Op::ReduceMax { axes } => {
            let mut a = f(0)?.clone();
            for &ax in axes.iter().rev() {
                a = a.map_axis(Axis(ax), |lane| {
                    lane.iter()
                        .copied()
                        .fold(None, |m: Option<T>, x| match m {
                            Some(m) if m >= x => Some(m),
                            _ => Some(x),
                        })
                        .unwrap_or_else(T::zero)
                });
            }
            a
        }
        Op::ArgMax { axis } => {
            let idx = f(0)?.map_axis(Axis(*axis), |lane| {
                let mut best = 0;
                for (i, x) in lane.iter().enumerate() {
                    if *x > lane[best] {
                        best = i;
                    }
                }
                best as i32
            });
            return Ok(Tensor::I32(idx));
        }
        Op::MatMul { ta, tb } => {
            let a = matrix(f(0)?)?;
            let b = matrix(f(1)?)?;
            let a = if *ta { a.t() } else { a };
            let b = if *tb { b.t() } else { b };
            a.dot(&b).into_dyn()
        }
        Op::Conv2d { stride, padding } => conv2d(f(0)?, f(1)?, *stride, *padding, shape)?,
        Op::Conv2dGradInput {
            stride, padding, ..
        } => conv2d_grad_input(f(0)?, f(1)?, *stride, *padding, shape)?,
        Op::Conv2dGradFilter {
            stride, padding, ..
        } => conv2d_grad_filter(f(0)?, f(1)?, *stride, *padding, shape)?,
        Op::MaxPool { size, stride } => pool(f(0)?, *size, *stride, shape, true)?,
        Op::SumPool { size, stride } => pool(f(0)?, *size, *stride, shape, false)?,
        Op::MaxPoolGrad { size, stride } => maxpool_grad(f(0)?, f(1)?, *size, *stride)?,
        Op::SumPoolGrad { size, stride, .. } => sumpool_grad(f(0)?, *size, *stride, shape)?,
        Op::Reshape { shape } => {
            return Ok(match args[0] {
                Tensor::F(a) => Tensor::F(reshape(a, shape)?),
                Tensor::I32(a) => Tensor::I32(reshape(a, shape)?),
                Tensor::U8(a) => Tensor::U8(reshape(a, shape)?),
            });
        }
        Op::Transpose { perm } => f(0)?
            .clone()
            .permuted_axes(IxDyn(perm))
            .as_standard_layout()
            .into_owned(),
        Op::Broadcast { shape } => f(0)?.broadcast(IxDyn(shape)).ok_or("broadcast")?.to_owned(),
        Op::Pad { pads } => {
            let x = f(0)?;
            let mut out = ArrayD::zeros(IxDyn(shape));
            out.slice_each_axis_mut(|ax| {
                let i = ax.axis.index();
                ndarray::Slice::from(pads[2 * i]..pads[2 * i] + x.shape()[i])
            })
            .assign(x);
            out
        }
        Op::Slice { start, end } => f(0)?
            .slice_each_axis(|ax| {
                let i = ax.axis.index();
                ndarray::Slice::from(start[i]..end[i])
            })
            .to_owned(),
        Op::Concat { axis } => {
            let parts = (0..args.len()).map(&f).collect::<Result<Vec<_>, _>>()?;
            let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
            ndarray::concatenate(ndarray::Axis(*axis), &views).map_err(|e| e.to_string())?
        }
        Op::ToF32 { scale } => {
            let s = T::from_f64(*scale);
            match args[0] {
                Tensor::F(a) => a.mapv(|x| x * s),
                Tensor::I32(a) => a.mapv(|x| T::from_f64(x as f64) * s),
                Tensor::U8(a) => a.mapv(|x| T::from_f64(x as f64) * s),
            }
        }
        Op::OneHot { classes } => {
            let labels = as_i32(args[0])?;
            let mut out = ArrayD::zeros(IxDyn(shape));
            for (i, &l) in labels.iter().enumerate() {
                if l >= 0 && (l as usize) < *classes {
                    out.as_slice_mut().ok_or("layout")?[i * classes + l as usize] = T::one();
                }
            }
            out
        }
        // As `passes::decompose` writes them.
        Op::LeakyRelu { alpha } => {
            let a = T::from_f64(*alpha);
            f(0)?.mapv(|x| if x > T::zero() { x } else { x * a })
        }
        Op::Elu { alpha } => {
            let a = T::from_f64(*alpha);
            f(0)?.mapv(|x| {
                if x > T::zero() {
                    x
                } else {
                    (x.exp() - T::one()) * a
                }
            })
        }
        Op::BatchNorm { .. } => batchnorm(op, args)?,
        // The sum over one process (row-major, for `run_summing` to sum over several).
        Op::AllReduceSum => f(0)?.as_standard_layout().into_owned(),
        Op::Softmax => softmax(f(0)?),
        Op::CrossEntropy => {
            let p = matrix(f(0)?)?;
            let labels = as_i32(args[1])?;
            let mut total = 0.0;
            for (row, &l) in p.outer_iter().zip(labels.iter()) {
                let l = label_index(l, row.len())?;
                total -= row[l].to_f64().ln();
            }
            ArrayD::from_elem(IxDyn(&[]), T::from_f64(total / p.nrows() as f64))
        }
        Op::SoftmaxXent => {
            let z = matrix(f(0)?)?;
            let labels = as_i32(args[1])?;
            let mut total = T::zero();
            for (row, &l) in z.outer_iter().zip(labels.iter()) {
                let l = label_index(l, row.len())?;
                let m = row
                    .iter()
                    .copied()
                    .fold(row[0], |m, x| if x > m { x } else { m });
                let sum = row.iter().fold(T::zero(), |s, &x| s + (x - m).exp());
                total = total + (m + sum.ln() - row[l]);
            }
            ArrayD::from_elem(IxDyn(&[]), total / T::from_f64(z.nrows() as f64))
        }
        Op::SoftmaxXentGrad => {
            let z = f(0)?;
            let labels = as_i32(args[1])?;
            let dl = args[2].scalar()?;
            let mut p = softmax(z);
            let (b, k) = (shape[0], shape[1]);
            let s = T::from_f64(dl / b as f64);
            let data = p.as_slice_mut().ok_or("layout")?;
            for (i, &l) in labels.iter().enumerate() {
                let l = label_index(l, k)?;
                data[i * k + l] = data[i * k + l] - T::one();
            }
            p.mapv(|x| x * s)
        }
        Op::RandomUniform {
            stream,
            shape,
            first,
        } => {
            let key = as_i32(args[0])?.iter().next().copied().unwrap_or(0);
            let n: usize = shape.iter().product();
            let data = (*first..*first + n as u64)
                .map(|i| T::from_f64(random_uniform(key, *stream, i) as f64))
                .collect();
            ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| e.to_string())?
        }
    };
    Ok(Tensor::F(out))
}

/// `batchnorm` as [`crate::passes::decompose`] writes it, run here: the same operations in the
/// same order as the decomposed function the compiled code runs.
fn batchnorm<T: Real>(op: &Op, args: &[&Tensor<T>]) -> Result<ArrayD<T>, String> {
    let mut g = Function::new("batchnorm");
    let params: Vec<ValueId> = ["x", "gamma", "beta"]
        .iter()
        .zip(args)
        .map(|(name, a)| g.add_param(*name, Type::f32(a.shape().to_vec())))
        .collect();
    let infer: Vec<&Type> = params.iter().map(|&p| g.ty(p)).collect();
    crate::ops::normalize::infer(&infer)?;
    let y = crate::ops::normalize::decompose(&mut Builder { f: &mut g }, op, &params);
    g.results = vec![y];
    let inputs = args.iter().map(|&a| a.clone()).collect();
    let mut out = run(&g, inputs)?;
    Ok(out.remove(0).as_f()?.clone())
}

fn label_index(l: i32, k: usize) -> Result<usize, String> {
    if l < 0 || l as usize >= k {
        return Err(format!("label {l} is outside 0..{k}"));
    }
    Ok(l as usize)
}

/// The counter-based generator behind `random_uniform`: SplitMix64 of (key, stream, index),
/// top 24 bits as a float in [0, 1). Compiled code must reproduce it bit for bit.
pub fn random_uniform(key: i32, stream: u64, index: u64) -> f32 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let seed = mix((key as u32 as u64) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let bits = mix(seed ^ index) >> 40;
    bits as f32 / (1u64 << 24) as f32
}

fn reshape<A: Clone>(a: &ArrayD<A>, shape: &[usize]) -> Result<ArrayD<A>, String> {
    a.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(shape))
        .map_err(|e| e.to_string())
}

fn softmax<T: Real>(z: &ArrayD<T>) -> ArrayD<T> {
    let last = Axis(z.ndim() - 1);
    let mut out = z.as_standard_layout().into_owned();
    for mut lane in out.lanes_mut(last) {
        let m = lane
            .iter()
            .copied()
            .fold(lane[0], |m, x| if x > m { x } else { m });
        lane.mapv_inplace(|x| (x - m).exp());
        let s = lane.iter().fold(T::zero(), |s, &x| s + x);
        lane.mapv_inplace(|x| x / s);
    }
    out
}

/// Columns of a padded input for one sample: `[C·kh·kw, OH·OW]`.
#[allow(clippy::too_many_arguments)]
fn im2col<T: Real>(
    x: ArrayView2<'_, T>,
    c: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    oh: usize,
    ow: usize,
) -> Array2<T> {
    let mut col = Array2::zeros((c * k[0] * k[1], oh * ow));
    for ci in 0..c {
        for ki in 0..k[0] {
            for kj in 0..k[1] {
                let row = (ci * k[0] + ki) * k[1] + kj;
                for oi in 0..oh {
                    let ii = (oi * s[0] + ki) as isize - p[0] as isize;
                    if ii < 0 || ii >= h as isize {
                        continue;
                    }
                    for oj in 0..ow {
                        let jj = (oj * s[1] + kj) as isize - p[1] as isize;
                        if jj >= 0 && jj < w as isize {
                            col[[row, oi * ow + oj]] = x[[ci, ii as usize * w + jj as usize]];
                        }
                    }
                }
            }
        }
    }
    col
}

fn dims4(a: &ArrayD<impl Clone>) -> Result<[usize; 4], String> {
    match *a.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err("expected rank 4".into()),
    }
}

fn conv2d<T: Real>(
    x: &ArrayD<T>,
    w: &ArrayD<T>,
    s: [usize; 2],
    p: [usize; 2],
    shape: &[usize],
) -> Result<ArrayD<T>, String> {
    let [n, c, h, wd] = dims4(x)?;
    let [o, _, kh, kw] = dims4(w)?;
    let (oh, ow) = (shape[2], shape[3]);
    let x = x.as_standard_layout();
    let x3 = x
        .view()
        .into_shape_with_order((n, c, h * wd))
        .map_err(|e| e.to_string())?;
    let wm = w
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((o, c * kh * kw))
        .map_err(|e| e.to_string())?;
    let mut out = ndarray::Array3::zeros((n, o, oh * ow));
    for b in 0..n {
        let col = im2col(x3.index_axis(Axis(0), b), c, h, wd, [kh, kw], s, p, oh, ow);
        out.index_axis_mut(Axis(0), b).assign(&wm.dot(&col));
    }
    out.into_shape_with_order(IxDyn(shape))
        .map_err(|e| e.to_string())
}

fn conv2d_grad_filter<T: Real>(
    x: &ArrayD<T>,
    dy: &ArrayD<T>,
    s: [usize; 2],
    p: [usize; 2],
    shape: &[usize],
) -> Result<ArrayD<T>, String> {
    let [n, c, h, wd] = dims4(x)?;
    let [_, o, oh, ow] = dims4(dy)?;
    let (kh, kw) = (shape[2], shape[3]);
    let x = x.as_standard_layout();
    let x3 = x
        .view()
        .into_shape_with_order((n, c, h * wd))
        .map_err(|e| e.to_string())?;
    let dy = dy.as_standard_layout();
    let dy3 = dy
        .view()
        .into_shape_with_order((n, o, oh * ow))
        .map_err(|e| e.to_string())?;
    let mut dw = Array2::zeros((o, c * kh * kw));
    for b in 0..n {
        let col = im2col(x3.index_axis(Axis(0), b), c, h, wd, [kh, kw], s, p, oh, ow);
        dw = dw + dy3.index_axis(Axis(0), b).dot(&col.t());
    }
    dw.into_shape_with_order(IxDyn(shape))
        .map_err(|e| e.to_string())
}

fn conv2d_grad_input<T: Real>(
    dy: &ArrayD<T>,
    w: &ArrayD<T>,
    s: [usize; 2],
    p: [usize; 2],
    shape: &[usize],
) -> Result<ArrayD<T>, String> {
    let [n, o, oh, ow] = dims4(dy)?;
    let [_, c, kh, kw] = dims4(w)?;
    let (h, wd) = (shape[2], shape[3]);
    let wm = w
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((o, c * kh * kw))
        .map_err(|e| e.to_string())?;
    let dy = dy.as_standard_layout();
    let dy3 = dy
        .view()
        .into_shape_with_order((n, o, oh * ow))
        .map_err(|e| e.to_string())?;
    let mut dx = ndarray::Array4::zeros((n, c, h, wd));
    for b in 0..n {
        let dcol = wm.t().dot(&dy3.index_axis(Axis(0), b));
        for ci in 0..c {
            for ki in 0..kh {
                for kj in 0..kw {
                    let row = (ci * kh + ki) * kw + kj;
                    for oi in 0..oh {
                        let ii = (oi * s[0] + ki) as isize - p[0] as isize;
                        if ii < 0 || ii >= h as isize {
                            continue;
                        }
                        for oj in 0..ow {
                            let jj = (oj * s[1] + kj) as isize - p[1] as isize;
                            if jj >= 0 && jj < wd as isize {
                                let v = dx[[b, ci, ii as usize, jj as usize]]
                                    + dcol[[row, oi * ow + oj]];
                                dx[[b, ci, ii as usize, jj as usize]] = v;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(dx.into_dyn())
}

/// Views a tensor as `[lead, H, W]`.
fn planes<T: Real>(x: &ArrayD<T>) -> Result<(ndarray::Array3<T>, usize, usize), String> {
    let r = x.ndim();
    let (h, w) = (x.shape()[r - 2], x.shape()[r - 1]);
    let lead = x.len() / (h * w).max(1);
    let a = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((lead, h, w))
        .map_err(|e| e.to_string())?;
    Ok((a, h, w))
}

fn pool<T: Real>(
    x: &ArrayD<T>,
    k: [usize; 2],
    s: [usize; 2],
    shape: &[usize],
    max: bool,
) -> Result<ArrayD<T>, String> {
    let (a, _, _) = planes(x)?;
    let r = shape.len();
    let (oh, ow) = (shape[r - 2], shape[r - 1]);
    let mut out = ndarray::Array3::zeros((a.shape()[0], oh, ow));
    for l in 0..a.shape()[0] {
        for i in 0..oh {
            for j in 0..ow {
                let mut acc = a[[l, i * s[0], j * s[1]]];
                if !max {
                    acc = T::zero();
                }
                for ki in 0..k[0] {
                    for kj in 0..k[1] {
                        let v = a[[l, i * s[0] + ki, j * s[1] + kj]];
                        acc = if max {
                            if v > acc { v } else { acc }
                        } else {
                            acc + v
                        };
                    }
                }
                out[[l, i, j]] = acc;
            }
        }
    }
    out.into_shape_with_order(IxDyn(shape))
        .map_err(|e| e.to_string())
}

fn maxpool_grad<T: Real>(
    x: &ArrayD<T>,
    dy: &ArrayD<T>,
    k: [usize; 2],
    s: [usize; 2],
) -> Result<ArrayD<T>, String> {
    let (a, h, w) = planes(x)?;
    let (g, oh, ow) = planes(dy)?;
    let mut dx = ndarray::Array3::zeros((a.shape()[0], h, w));
    for l in 0..a.shape()[0] {
        for i in 0..oh {
            for j in 0..ow {
                let (bi, bj) = window_argmax(&a, l, i, j, k, s);
                dx[[l, bi, bj]] = dx[[l, bi, bj]] + g[[l, i, j]];
            }
        }
    }
    dx.into_shape_with_order(IxDyn(x.shape()))
        .map_err(|e| e.to_string())
}

fn sumpool_grad<T: Real>(
    dy: &ArrayD<T>,
    k: [usize; 2],
    s: [usize; 2],
    shape: &[usize],
) -> Result<ArrayD<T>, String> {
    let (g, oh, ow) = planes(dy)?;
    let r = shape.len();
    let (h, w) = (shape[r - 2], shape[r - 1]);
    let mut dx = ndarray::Array3::zeros((g.shape()[0], h, w));
    for l in 0..g.shape()[0] {
        for i in 0..oh {
            for j in 0..ow {
                for ki in 0..k[0] {
                    for kj in 0..k[1] {
                        let (ii, jj) = (i * s[0] + ki, j * s[1] + kj);
                        dx[[l, ii, jj]] = dx[[l, ii, jj]] + g[[l, i, j]];
                    }
                }
            }
        }
    }
    dx.into_shape_with_order(IxDyn(shape))
        .map_err(|e| e.to_string())
}
