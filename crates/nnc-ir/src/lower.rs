//! Lowering: a checked model becomes a forward function.
//!
//! ```text
//! forward(x, targets, [key], params...) -> (loss, score, output)
//! ```
//!
//! `x` is the batch as the data layer holds it (u8 images stay u8: the scale, padding and
//! flattening of the data source are the first ops); `targets` are i32 class labels or f32
//! values; `key` (i32[], only when the model has dropout and is training) seeds the dropout
//! masks; the parameters follow in layer order, named `<layer>.<weight|bias>`.

use nnc_check::{Activation, Data, LayerKind, Loss, Model, Score, Source};

use crate::function::{Builder, Function, ValueId};
use crate::op::{Compare, Op, Unary};
use crate::ops::normalize;
use crate::types::{DType, Type};

/// How a batch of inputs arrives from the data layer.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    pub dtype: DType,
    /// The per-sample shape as stored, e.g. `[1, 28, 28]` for MNIST.
    pub sample: Vec<usize>,
    /// Multiplies the stored values (1/255 for images).
    pub scale: f64,
    /// Added after scaling and padding: what a stored 0 (and the padding) becomes.
    pub shift: f64,
    /// Padding on each side of the last two axes, with stored zeros (so, after the shift,
    /// with the background's value).
    pub pad: usize,
    /// Flatten each sample to a vector after padding.
    pub flatten: bool,
}

/// What the targets are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    /// One i32 class index per sample.
    Classes(usize),
    /// `width` f32 values per sample.
    Values(usize),
}

impl InputSpec {
    /// The input spec of a data source whose layout is known without reading it (MNIST, CSV
    /// and inline tables); IDX files are described by their header (see the data layer).
    pub fn of(data: &Data, model: &Model) -> Option<InputSpec> {
        Some(match data {
            Data::Mnist {
                pad,
                scale,
                shift,
                flatten,
            } => InputSpec {
                dtype: DType::U8,
                sample: vec![1, 28, 28],
                scale: *scale,
                shift: *shift,
                pad: *pad,
                flatten: *flatten,
            },
            Data::Csv { .. } | Data::Inline { .. } => InputSpec {
                dtype: DType::F32,
                sample: model.input.shape.0.clone(),
                scale: 1.0,
                shift: 0.0,
                pad: 0,
                flatten: false,
            },
            Data::Idx { .. } => return None,
        })
    }
}

impl InputSpec {
    /// The per-sample shape the model's first layer gets: the stored one, its last two axes
    /// padded, then flattened (as the first ops of [`lower`] make it).
    pub fn model_sample(&self) -> Vec<usize> {
        let mut shape = self.sample.clone();
        let rank = shape.len();
        for d in &mut shape[rank.saturating_sub(2)..] {
            *d += 2 * self.pad;
        }
        if self.flatten {
            shape = vec![shape.iter().product()];
        }
        shape
    }
}

impl TargetSpec {
    /// What the targets of `data` are in `model`'s steps: the one answer every command uses
    /// (train, eval, check's arenas, ir, bench, gradcheck), so that they all build the same
    /// step. Image sources have class labels; CSV and inline tables have class labels under a
    /// classification loss (their one target column is the class) and values under `mse`.
    pub fn of(data: &Data, model: &Model) -> TargetSpec {
        let outputs = model.output_shape().numel() as usize;
        let classification = model.train.as_ref().is_some_and(|t| t.loss != Loss::Mse);
        match data {
            Data::Mnist { .. } => TargetSpec::Classes(10),
            Data::Idx { classes, .. } => TargetSpec::Classes(classes.unwrap_or(outputs)),
            Data::Csv { .. } | Data::Inline { .. } if classification => {
                TargetSpec::Classes(outputs)
            }
            Data::Csv { target, .. } => TargetSpec::Values(target.len()),
            Data::Inline { targets, .. } => TargetSpec::Values(targets.first().map_or(1, Vec::len)),
        }
    }
}

/// Options for lowering.
#[derive(Clone, Debug)]
pub struct LowerOptions {
    pub batch: usize,
    /// Dropout is active only when training.
    pub training: bool,
    pub input: InputSpec,
    pub targets: TargetSpec,
    pub loss: Loss,
    /// The score beside the loss: correct predictions, or the absolute error summed over the
    /// batch (each sample's mean over its outputs).
    pub score: Score,
}

/// The forward function of a model and where its pieces are.
#[derive(Clone, Debug)]
pub struct Forward {
    pub func: Function,
    /// The model parameters, in order: (name, value).
    pub params: Vec<(String, ValueId)>,
    /// The dropout key parameter, if any.
    pub key: Option<ValueId>,
    /// In training, each running statistic (a parameter among `params`) and its new value
    /// from this batch, which the train step returns in its place: the statistics are state
    /// threaded through the step, not differentiated. The function's results are the loss,
    /// the score and the output, then these new values in this order.
    pub running: Vec<(ValueId, ValueId)>,
}

/// Lowers `model` to its forward function. Errors when the data does not fit the model (only
/// possible for sources whose layout is read from files).
pub fn lower(model: &Model, opts: &LowerOptions) -> Result<Forward, String> {
    let b_size = opts.batch;
    let mut f = Function::new(if opts.training {
        "forward"
    } else {
        "eval_step"
    });
    let mut in_shape = vec![b_size];
    in_shape.extend(&opts.input.sample);
    let x = f.add_param(
        model.input.name.clone(),
        Type::new(opts.input.dtype, in_shape),
    );
    let t = match opts.targets {
        TargetSpec::Classes(_) => f.add_param("label", Type::new(DType::I32, vec![b_size])),
        TargetSpec::Values(w) => f.add_param("target", Type::f32(vec![b_size, w])),
    };
    let has_dropout = model
        .layers
        .iter()
        .any(|l| matches!(l.kind, LayerKind::Dropout { rate } if rate > 0.0));
    let key = (opts.training && has_dropout)
        .then(|| f.add_param("key", Type::new(DType::I32, Vec::<usize>::new())));
    let mut params = Vec::new();
    for l in &model.layers {
        for p in &l.params {
            let mut shape = p.shape.0.clone();
            if shape.is_empty() {
                shape.push(1);
            }
            let name = format!("{}.{}", l.name, p.name);
            let v = f.add_param(name.clone(), Type::f32(shape));
            params.push((name, v));
        }
    }

    let mut b = Builder { f: &mut f };
    let h = preprocess(&mut b, x, &opts.input);
    let want: Vec<usize> = std::iter::once(b_size)
        .chain(model.input.shape.0.iter().copied())
        .collect();
    if b.shape(h) != want {
        return Err(format!(
            "the data gives samples of shape {:?}, but the model's input is {}",
            &b.shape(h)[1..],
            model.input.shape
        ));
    }
    let input = h;
    // Each layer's output, read by the layers whose `inputs` name it (a fan-out is several
    // reads of one value; autodiff sums their gradients).
    let mut outputs: Vec<ValueId> = Vec::with_capacity(model.layers.len());
    let mut next_param = params.iter().map(|(_, v)| *v);
    let mut running = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        let mut take = || {
            next_param
                .next()
                .expect("one parameter value per declared parameter")
        };
        let read: Vec<ValueId> = layer
            .inputs
            .iter()
            .map(|src| match *src {
                Source::Input => input,
                Source::Layer(j) => outputs[j],
            })
            .collect();
        let h = read[0];
        let y = match &layer.kind {
            LayerKind::Dense { bias, .. } => {
                let w = take();
                let y = b.op(
                    Op::MatMul {
                        ta: false,
                        tb: false,
                    },
                    &[h, w],
                );
                if *bias {
                    let bv = take();
                    b.add(y, bv)
                } else {
                    y
                }
            }
            LayerKind::Conv2d {
                filters,
                stride,
                bias,
                connections,
                ..
            } => {
                let mut w = take();
                if let Some(table) = connections {
                    // Unconnected weights are multiplied by zero: their gradient is zero too,
                    // so they stay at zero through training.
                    let c = table.table.len();
                    let mask: Vec<f64> = (0..*filters)
                        .flat_map(|o| {
                            table
                                .table
                                .iter()
                                .map(move |row| if row[o] { 1.0 } else { 0.0 })
                        })
                        .collect();
                    let m = b.f.push_typed(
                        Op::ConstData { data: mask.into() },
                        Vec::new(),
                        Type::f32(vec![*filters, c, 1, 1]),
                    );
                    w = b.mul(w, m);
                }
                let (x, padding) = window_input(&mut b, h, layer);
                let y = b.op(
                    Op::Conv2d {
                        stride: *stride,
                        padding,
                    },
                    &[x, w],
                );
                if *bias {
                    let bv = take();
                    let bv = b.reshape(bv, vec![*filters, 1, 1]);
                    b.add(y, bv)
                } else {
                    y
                }
            }
            LayerKind::MaxPool { size, stride, .. } => {
                let (mut x, _) = window_input(&mut b, h, layer);
                if let Some(mask) = overhang_mask(layer) {
                    let m = b.f.push_typed(
                        Op::ConstData {
                            data: mask.0.into(),
                        },
                        Vec::new(),
                        Type::f32(mask.1),
                    );
                    x = b.add(x, m);
                }
                b.op(
                    Op::MaxPool {
                        size: *size,
                        stride: *stride,
                    },
                    &[x],
                )
            }
            LayerKind::AvgPool { size, stride, .. } => {
                let (h, _) = window_input(&mut b, h, layer);
                let s = b.op(
                    Op::SumPool {
                        size: *size,
                        stride: *stride,
                    },
                    &[h],
                );
                match partial_counts(layer) {
                    Some((recip, shape)) => {
                        let r = b.f.push_typed(
                            Op::ConstData { data: recip.into() },
                            Vec::new(),
                            Type::f32(shape),
                        );
                        b.mul(s, r)
                    }
                    None => b.scale(s, 1.0 / (size[0] * size[1]) as f64),
                }
            }
            LayerKind::Subsample { size, stride } => {
                let c = layer.output_shape.0[0];
                let (h, _) = window_input(&mut b, h, layer);
                let s = b.op(
                    Op::SumPool {
                        size: *size,
                        stride: *stride,
                    },
                    &[h],
                );
                let w = take();
                let w = b.reshape(w, vec![c, 1, 1]);
                let bv = take();
                let bv = b.reshape(bv, vec![c, 1, 1]);
                let y = b.mul(s, w);
                b.add(y, bv)
            }
            LayerKind::Flatten => {
                let n = layer.output_shape.numel() as usize;
                b.reshape(h, vec![b_size, n])
            }
            LayerKind::Dropout { rate } => match key {
                Some(key) if *rate > 0.0 => {
                    let shape = b.shape(h);
                    let u = b.op(
                        Op::RandomUniform {
                            stream: i as u64,
                            shape,
                            first: 0,
                        },
                        &[key],
                    );
                    let r = b.scalar(*rate);
                    let d = b.sub(u, r);
                    let keep = b.unary(Unary::Step, d);
                    let y = b.mul(h, keep);
                    b.scale(y, 1.0 / (1.0 - rate))
                }
                _ => h,
            },
            LayerKind::Activation(a) => activation(&mut b, *a, h),
            LayerKind::Add => read[1..].iter().fold(h, |sum, &v| b.add(sum, v)),
            // Along the axis after the batch: channels, or features.
            LayerKind::Concat => b.op(Op::Concat { axis: 1 }, &read),
            LayerKind::GlobalAvgPool => {
                let s = b.shape(h);
                let (c, hw) = (s[1], [s[2], s[3]]);
                let sum = b.op(
                    Op::SumPool {
                        size: hw,
                        stride: hw,
                    },
                    &[h],
                );
                // Scaled after the reshape: the loop that scales writes the `[B, C]` result
                // itself (a `concat` operand is then written in place, not copied), and the
                // gradient's scale reads the `[B, C]` gradient (in place, when a concat's).
                let flat = b.reshape(sum, vec![b_size, c]);
                b.scale(flat, 1.0 / (hw[0] * hw[1]) as f64)
            }
            LayerKind::BatchNorm { momentum, eps } => {
                let (gamma, beta, mean, var) = (take(), take(), take(), take());
                let (y, updates) = batchnorm(
                    &mut b,
                    h,
                    [gamma, beta, mean, var],
                    *momentum,
                    *eps,
                    opts.training,
                );
                running.extend(updates);
                y
            }
        };
        outputs.push(y);
    }
    let output = outputs.last().copied().unwrap_or(input);
    let (loss, correct) = loss_and_correct(
        &mut b,
        opts,
        output,
        t,
        model.output_shape().numel() as usize,
    );
    f.set_name(loss, "loss");
    let score_name = match (opts.score, opts.targets) {
        (Score::Mae, TargetSpec::Values(_)) => "abs_error",
        _ => "correct",
    };
    f.set_name(correct, score_name);
    if f.name_of(output).is_none() && !f.params.contains(&output) {
        f.set_name(output, "output");
    }
    f.results = vec![loss, correct, output];
    for &(stat, new) in &running {
        let name = format!("{}.new", f.name_of(stat).unwrap_or("running"));
        f.set_name(new, name);
        f.results.push(new);
    }
    crate::verify::verify_after(&f, "lowering");
    Ok(Forward {
        func: f,
        params,
        key,
        running,
    })
}

/// Batch normalisation of `x` (`[B, C, H, W]` per channel, `[B, F]` per feature): in
/// training the `batchnorm` op (the batch's mean and biased variance over every axis but the
/// channel's; its derivative is the textbook one, `ops::normalize`) and the running
/// statistics' new values; in evaluation the running statistics, from primitive ops. Both
/// give `(x − mean)·(γ/√(var + ε)) + β`.
fn batchnorm(
    b: &mut Builder<'_>,
    x: ValueId,
    [gamma, beta, running_mean, running_var]: [ValueId; 4],
    momentum: f64,
    eps: f64,
    training: bool,
) -> (ValueId, Vec<(ValueId, ValueId)>) {
    if training {
        // The statistics the op computes too (`cse` merges them once it is decomposed), for
        // the running statistics' new values: `momentum·running + (1 − momentum)·batch`.
        let s = normalize::statistics(b, x);
        let mut updates = Vec::new();
        for (stat, batch) in [(running_mean, s.mean), (running_var, s.var)] {
            let kept = b.scale(stat, momentum);
            let fresh = b.scale(batch, 1.0 - momentum);
            updates.push((stat, b.add(kept, fresh)));
        }
        let y = b.op(Op::BatchNorm { eps }, &[x, gamma, beta]);
        return (y, updates);
    }
    let shape = b.shape(x);
    let c = shape[1];
    // The per-channel vector's shape against x: [C, 1, 1] for maps, [C] for vectors.
    let per_channel: Vec<usize> = std::iter::once(c)
        .chain(std::iter::repeat_n(1, shape.len() - 2))
        .collect();
    let mean_b = b.reshape(running_mean, per_channel.clone());
    let centred = b.sub(x, mean_b);
    let y = normalize::normalise(b, (centred, running_var), [gamma, beta], eps, per_channel);
    (y, Vec::new())
}

/// The input of a window layer (convolution or pooling) as the IR's ops take it, and the
/// symmetric padding left for the convolution itself. The window ops round their output down
/// (the rows and columns past the last whole window are not read), so the input is never
/// cropped: padding that no window reads is dropped, and what is left pads in the op where
/// one symmetric amount gives the layer's output (a padding below or right that no window
/// would read), else in a `pad` before the window, which then pads nothing.
fn window_input(
    b: &mut Builder<'_>,
    x: ValueId,
    layer: &nnc_check::Layer,
) -> (ValueId, [usize; 2]) {
    let Some(window) = layer.kind.window() else {
        unreachable!("window_input is called on window layers")
    };
    let unread = match layer.kind {
        LayerKind::Conv2d { .. } => layer.unread(),
        _ => [0, 0],
    };
    let overhang = layer_overhang(layer);
    let shape = b.shape(x);
    let rank = shape.len();
    let input = [shape[rank - 2], shape[rank - 1]];
    let mut sides = window.padding;
    let mut symmetric = [None; 2];
    for axis in 0..2 {
        let [before, after] = &mut sides[axis];
        // Padding past the last window is never read.
        *after -= unread[axis].min(*after);
        // Ceil mode: the last window's rows past the input, padded (and masked by the caller).
        *after += overhang[axis];
        // The output size, and whether padding `before` on both sides gives it (the extra
        // rows below then lie past the last window).
        let (k, s) = (window.size[axis], window.stride[axis]);
        let out = (input[axis] + *before + *after).saturating_sub(k) / s + 1;
        let even = input[axis] + 2 * *before >= k && (input[axis] + 2 * *before - k) / s + 1 == out;
        symmetric[axis] = even.then_some(*before);
    }
    // Pooling ops pad nothing themselves.
    let pads_itself = matches!(layer.kind, LayerKind::Conv2d { .. });
    match symmetric {
        [Some(0), Some(0)] => return (x, [0, 0]),
        [Some(ph), Some(pw)] if pads_itself => return (x, [ph, pw]),
        _ => {}
    }
    let mut pads = vec![0; 2 * rank];
    pads[2 * (rank - 2)..].copy_from_slice(&[sides[0][0], sides[0][1], sides[1][0], sides[1][1]]);
    (b.op(Op::Pad { pads }, &[x]), [0, 0])
}

/// The spatial size of a window layer's input.
fn spatial_input(layer: &nnc_check::Layer) -> [usize; 2] {
    match layer.input_shape.0[..] {
        [_, h, w] => [h, w],
        _ => [0, 0],
    }
}

/// In ceil mode, the rows and columns the last windows read past the input.
fn layer_overhang(layer: &nnc_check::Layer) -> [usize; 2] {
    let input = spatial_input(layer);
    layer
        .kind
        .window()
        .and_then(|w| w.overhang(input))
        .unwrap_or([0, 0])
}

/// For max pooling in ceil mode, a constant added to the padded input: 0 inside it and the
/// lowest f32 on the rows and columns added, so that a partial window's maximum is over the
/// elements it covers (every window starts inside the input). With its shape `[H', W']`.
fn overhang_mask(layer: &nnc_check::Layer) -> Option<(Vec<f64>, Vec<usize>)> {
    let over = layer_overhang(layer);
    if over == [0, 0] {
        return None;
    }
    let [h, w] = spatial_input(layer);
    let (ph, pw) = (h + over[0], w + over[1]);
    let data = (0..ph)
        .flat_map(|i| (0..pw).map(move |j| if i < h && j < w { 0.0 } else { f32::MIN as f64 }))
        .collect();
    Some((data, vec![ph, pw]))
}

/// For average pooling in ceil mode, 1 / (the number of input elements each window covers),
/// `[OH, OW]`: a partial window averages what it covers, as PyTorch's does without padding.
fn partial_counts(layer: &nnc_check::Layer) -> Option<(Vec<f64>, Vec<usize>)> {
    if layer_overhang(layer) == [0, 0] {
        return None;
    }
    let window = layer.kind.window()?;
    let [h, w] = spatial_input(layer);
    let (oh, ow) = (layer.output_shape.0[1], layer.output_shape.0[2]);
    let covered = |o: usize, axis: usize, n: usize| {
        let start = o * window.stride[axis];
        (start + window.size[axis]).min(n) - start
    };
    let data = (0..oh)
        .flat_map(|i| (0..ow).map(move |j| 1.0 / (covered(i, 0, h) * covered(j, 1, w)) as f64))
        .collect();
    Some((data, vec![oh, ow]))
}

/// The data source's scaling, padding, shift and flattening, as the step's first ops.
fn preprocess(b: &mut Builder<'_>, x: ValueId, spec: &InputSpec) -> ValueId {
    let mut h = if spec.dtype == DType::F32 && spec.scale == 1.0 {
        x
    } else {
        b.op(Op::ToF32 { scale: spec.scale }, &[x])
    };
    if spec.pad > 0 {
        let r = b.ty(h).rank();
        let mut pads = vec![0; 2 * r];
        for p in &mut pads[2 * (r - 2)..] {
            *p = spec.pad;
        }
        h = b.op(Op::Pad { pads }, &[h]);
    }
    // After the padding, which thus takes the value of a stored 0: the background.
    if spec.shift != 0.0 {
        let shift = b.scalar(spec.shift);
        h = b.add(h, shift);
    }
    if spec.flatten {
        let s = b.shape(h);
        h = b.reshape(h, vec![s[0], s[1..].iter().product()]);
    }
    h
}

fn activation(b: &mut Builder<'_>, a: Activation, x: ValueId) -> ValueId {
    match a {
        Activation::Step => b.unary(Unary::Step, x),
        Activation::Sigmoid => b.unary(Unary::Sigmoid, x),
        Activation::Tanh { scale, slope } => {
            let x = if slope != 1.0 { b.scale(x, slope) } else { x };
            let y = b.unary(Unary::Tanh, x);
            if scale != 1.0 { b.scale(y, scale) } else { y }
        }
        Activation::Relu => b.unary(Unary::Relu, x),
        Activation::LeakyRelu { alpha } => b.op(Op::LeakyRelu { alpha }, &[x]),
        Activation::Elu { alpha } => b.op(Op::Elu { alpha }, &[x]),
        Activation::Softplus => b.unary(Unary::Softplus, x),
        Activation::Abs => b.unary(Unary::Abs, x),
        Activation::Identity => x,
        Activation::Softmax => b.op(Op::Softmax, &[x]),
    }
}

/// The mean loss over the batch, and the number of correct predictions or (for
/// [`Score::Mae`]) the summed absolute error.
fn loss_and_correct(
    b: &mut Builder<'_>,
    opts: &LowerOptions,
    y: ValueId,
    t: ValueId,
    outputs: usize,
) -> (ValueId, ValueId) {
    let batch = opts.batch as f64;
    let loss = match opts.loss {
        Loss::SoftmaxCrossEntropy => b.op(Op::SoftmaxXent, &[y, t]),
        Loss::CrossEntropy => b.op(Op::CrossEntropy, &[y, t]),
        Loss::Mse => {
            let target = match opts.targets {
                TargetSpec::Classes(k) => b.op(Op::OneHot { classes: k }, &[t]),
                TargetSpec::Values(_) => t,
            };
            let d = b.sub(y, target);
            let sq = b.mul(d, d);
            let s = b.sum_all(sq);
            b.scale(s, 0.5 / batch)
        }
    };
    if let (Score::Mae, TargetSpec::Values(width)) = (opts.score, opts.targets) {
        let d = b.sub(y, t);
        let a = b.unary(Unary::Abs, d);
        let s = b.sum_all(a);
        let per_sample = if width > 1 {
            b.scale(s, 1.0 / width as f64)
        } else {
            s
        };
        return (loss, per_sample);
    }
    let hits = match opts.targets {
        TargetSpec::Classes(_) => {
            let pred = b.op(Op::ArgMax { axis: 1 }, &[y]);
            b.compare(Compare::Eq, pred, t)
        }
        TargetSpec::Values(1) if outputs == 1 => {
            let half = b.scalar(0.5);
            let py = b.compare(Compare::Gt, y, half);
            let pt = b.compare(Compare::Gt, t, half);
            b.compare(Compare::Eq, py, pt)
        }
        TargetSpec::Values(_) => {
            let py = b.op(Op::ArgMax { axis: 1 }, &[y]);
            let pt = b.op(Op::ArgMax { axis: 1 }, &[t]);
            b.compare(Compare::Eq, py, pt)
        }
    };
    let correct = b.sum_all(hits);
    (loss, correct)
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::interp::{Tensor, run_f32};

    /// Pixels become `pixel · scale + shift`, and the padding around them is background: a
    /// stored 0 shifted like the rest, not a 0 after it.
    #[test]
    fn the_padding_is_background_after_the_shift() {
        let source = r#"
            model m {
                input x: f32[12]
                out: dense(1)
            }
            train m {
                data idx(images: "i", labels: "l", pad: 1, scale: 2, shift: -1, flatten: true)
                loss mse
                optimizer sgd(lr: 0.1)
                batch 1
            }
        "#;
        let mut checked = nnc_check::check_source(source);
        assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
        let model = checked.models.remove(0);
        let input = InputSpec {
            dtype: DType::U8,
            sample: vec![1, 1, 2],
            scale: 2.0,
            shift: -1.0,
            pad: 1,
            flatten: true,
        };
        let opts = LowerOptions {
            batch: 1,
            training: false,
            input,
            targets: TargetSpec::Values(1),
            loss: Loss::Mse,
            score: Score::Accuracy,
        };
        let forward = lower(&model, &opts).expect("lowers");
        let tensor = |shape: &[usize], v: Vec<f32>| {
            Tensor::F(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape"))
        };
        let pixels = ArrayD::from_shape_vec(IxDyn(&[1, 1, 1, 2]), vec![0u8, 255]).expect("shape");
        // out = Σ inputs (weights 1, bias 0): two pixels, -1 and 2·255 - 1, and ten pixels of
        // padding at -1 each.
        let inputs = vec![
            Tensor::U8(pixels),
            tensor(&[1, 1], vec![0.0]),
            tensor(&[12, 1], vec![1.0; 12]),
            tensor(&[1], vec![0.0]),
        ];
        let out = run_f32(&forward.func, inputs).expect("runs");
        let Tensor::F(y) = &out[2] else {
            panic!("f32 output")
        };
        assert_eq!(
            y.iter().copied().collect::<Vec<f32>>(),
            vec![-1.0 + 509.0 - 10.0]
        );
    }

    /// Runs a model whose layers end in `flatten` on one sample `x` with every weight 1 and
    /// every bias 0, and returns its output.
    fn ones_output(layers: &str, input: [usize; 3], x: Vec<f32>) -> Vec<f32> {
        let [c, h, w] = input;
        let source = format!(
            "model m {{ input x: f32[{c}, {h}, {w}] {layers} -> flatten }}
             train m {{ data idx(images: \"i\", labels: \"l\") loss mse optimizer sgd batch 1 }}"
        );
        let mut checked = nnc_check::check_source(&source);
        assert!(
            checked.diagnostics.iter().all(|d| !d.is_error()),
            "{:?}",
            checked.diagnostics
        );
        let model = checked.models.remove(0);
        let outputs = model.output_shape().numel() as usize;
        let opts = LowerOptions {
            batch: 1,
            training: false,
            input: InputSpec {
                dtype: DType::F32,
                sample: input.to_vec(),
                scale: 1.0,
                shift: 0.0,
                pad: 0,
                flatten: false,
            },
            targets: TargetSpec::Values(outputs),
            loss: Loss::Mse,
            score: Score::Accuracy,
        };
        let forward = lower(&model, &opts).expect("lowers");
        let tensor = |shape: &[usize], v: Vec<f32>| {
            Tensor::F(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape"))
        };
        let mut inputs = vec![
            tensor(&[1, c, h, w], x),
            tensor(&[1, outputs], vec![0.0; outputs]),
        ];
        for (_, p) in &forward.params {
            let ty = forward.func.ty(*p);
            let ones = if forward
                .func
                .name_of(*p)
                .is_some_and(|n| n.ends_with(".bias"))
            {
                0.0
            } else {
                1.0
            };
            inputs.push(tensor(&ty.shape, vec![ones; ty.numel()]));
        }
        let out = run_f32(&forward.func, inputs).expect("runs");
        let Tensor::F(y) = &out[2] else {
            panic!("f32 output")
        };
        y.iter().copied().collect()
    }

    /// Ceil mode keeps the last, partial windows: on 5x5, 2x2 windows at rows 0, 2 and 4; the
    /// maximum and the average are over the elements a window covers, as in PyTorch.
    #[test]
    fn ceil_mode_keeps_partial_windows() {
        let x: Vec<f32> = (1..=25).map(|v| -(v as f32)).collect();
        let y = ones_output("maxpool(2, ceil_mode: true)", [1, 5, 5], x.clone());
        // Negative values: the padding must not win.
        assert_eq!(
            y,
            vec![-1.0, -3.0, -5.0, -11.0, -13.0, -15.0, -21.0, -23.0, -25.0]
        );
        let y = ones_output("avgpool(2, ceil_mode: true)", [1, 5, 5], x);
        let avg = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert_eq!(
            y,
            vec![
                avg(&[-1.0, -2.0, -6.0, -7.0]),
                avg(&[-3.0, -4.0, -8.0, -9.0]),
                avg(&[-5.0, -10.0]),
                avg(&[-11.0, -12.0, -16.0, -17.0]),
                avg(&[-13.0, -14.0, -18.0, -19.0]),
                avg(&[-15.0, -20.0]),
                avg(&[-21.0, -22.0]),
                avg(&[-23.0, -24.0]),
                -25.0,
            ]
        );
        // Stride beyond the window: no window may start past the input (PyTorch's rule).
        let x: Vec<f32> = (1..=5).map(|v| v as f32).collect();
        let y = ones_output(
            "maxpool([1, 1], stride: [1, 3], ceil_mode: true)",
            [1, 1, 5],
            x,
        );
        assert_eq!(y, vec![1.0, 4.0]);
    }

    /// `same` with stride 2 pads the odd column at the right and the odd row at the bottom,
    /// as TensorFlow does: on 3x3, 2x2 windows at stride 2 read rows 0–1 and 2 plus a zero.
    #[test]
    fn same_padding_puts_the_odd_row_after() {
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let y = ones_output(
            "conv2d(1, kernel: 2, stride: 2, padding: same)",
            [1, 3, 3],
            x,
        );
        assert_eq!(y, vec![1.0 + 2.0 + 4.0 + 5.0, 3.0 + 6.0, 7.0 + 8.0, 9.0]);
    }

    /// The output size is rounded down and the rows no window reads are dropped: on 5x5,
    /// 2x2 pooling reads rows and columns 0–3, and a 3x3 convolution at stride 2 with padding
    /// 1 on 4x4 never reads the bottom padding row.
    #[test]
    fn windows_round_down() {
        let x: Vec<f32> = (1..=25).map(|v| v as f32).collect();
        let y = ones_output("maxpool(2)", [1, 5, 5], x.clone());
        assert_eq!(y, vec![7.0, 9.0, 17.0, 19.0]);
        let y = ones_output("avgpool(2)", [1, 5, 5], x);
        assert_eq!(y, vec![4.0, 6.0, 14.0, 16.0]);
        let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let y = ones_output("conv2d(1, kernel: 3, stride: 2, padding: 1)", [1, 4, 4], x);
        // Windows at rows -1..=1 and 1..=3, columns likewise.
        let sum = |rows: std::ops::RangeInclusive<usize>, cols: std::ops::RangeInclusive<usize>| {
            rows.flat_map(|r| cols.clone().map(move |c| (4 * r + c + 1) as f32))
                .sum::<f32>()
        };
        assert_eq!(
            y,
            vec![
                sum(0..=1, 0..=1),
                sum(0..=1, 1..=3),
                sum(1..=3, 0..=1),
                sum(1..=3, 1..=3)
            ]
        );
    }
}
