//! The checked model: every name resolved, every default filled, every shape known.
//!
//! This is what later stages consume. Shapes here are per sample; the batch axis is added by
//! lowering, from the train block's batch size.

use std::fmt;

use nnc_syntax::Span;

/// A per-sample tensor shape, e.g. `[1, 28, 28]` (channels, height, width) or `[784]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> u64 {
        self.0.iter().map(|&d| d as u64).product()
    }

    /// `1x28x28`, the compact form used in messages.
    pub fn compact(&self) -> String {
        self.0
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x")
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// A checked model.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: String,
    /// The span of the model's name in its declaration.
    pub span: Span,
    pub input: Input,
    pub layers: Vec<Layer>,
    pub train: Option<Train>,
}

impl Model {
    /// Trainable parameters (only connected weights under a connection table).
    pub fn param_count(&self) -> u64 {
        self.layers.iter().map(Layer::param_count).sum()
    }

    /// Elements of the non-trainable tensors: batch normalisation's running statistics.
    pub fn running_count(&self) -> u64 {
        self.layers
            .iter()
            .flat_map(|l| &l.params)
            .filter(|p| p.running)
            .map(|p| p.shape.numel())
            .sum()
    }

    /// Forward FLOPs per sample: 2 per multiply-add in dense and conv layers, plus the
    /// window sums of average pooling and subsampling (see [`Layer::flops`]).
    pub fn flops_per_sample(&self) -> u64 {
        self.layers.iter().map(|l| l.flops).sum()
    }

    /// The shape of the model's output.
    pub fn output_shape(&self) -> &Shape {
        self.layers
            .last()
            .map_or(&self.input.shape, |l| &l.output_shape)
    }
}

/// The model's input: per-sample shape, always f32 in the compute graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub name: String,
    pub shape: Shape,
    pub span: Span,
}

/// One layer, with the shapes around it and its trainable tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// The user's label, or a generated `<kind>_<n>` (Keras style).
    pub name: String,
    pub kind: LayerKind,
    /// What the layer reads, in order: the previous layer for a chain, the named values for
    /// `add` and `concat`. Always earlier layers (or the input): the layers are in a
    /// topological order, and the last one is the model's output.
    pub inputs: Vec<Source>,
    /// The shape of the first input.
    pub input_shape: Shape,
    pub output_shape: Shape,
    /// Trainable tensors in a fixed order: `weight` then `bias`.
    pub params: Vec<Param>,
    /// Forward FLOPs per sample.
    pub flops: u64,
    pub span: Span,
}

impl Layer {
    pub fn param_count(&self) -> u64 {
        self.params.iter().map(|p| p.trainable).sum()
    }

    /// For a window layer, the rows and columns at the bottom and right of its (padded) input
    /// that no window reads; `[0, 0]` when the windows tile it, and for other layers.
    pub fn unread(&self) -> [usize; 2] {
        let input = match self.input_shape.0[..] {
            [_, h, w] => [h, w],
            _ => return [0, 0],
        };
        self.kind
            .window()
            .and_then(|w| w.unread(input))
            .unwrap_or([0, 0])
    }

    /// The summary's description: the kind's, and what rounding the windows down leaves
    /// unread, e.g. `maxpool 2x2, drops 1 row, 1 column`.
    pub fn describe(&self) -> String {
        let mut d = self.kind.describe();
        let [rows, cols] = self.unread();
        let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let dropped: Vec<String> = [(rows, "row"), (cols, "column")]
            .into_iter()
            .filter(|&(n, _)| n > 0)
            .map(|(n, what)| count(n, what))
            .collect();
        if !dropped.is_empty() {
            d += &format!(", drops {}", dropped.join(", "));
        }
        d
    }
}

/// Where a layer's input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The model's input.
    Input,
    /// The output of the layer at this index of [`Model::layers`].
    Layer(usize),
}

/// A tensor of a layer, e.g. `c1.weight: [6, 1, 5, 5]`: trainable, or a running statistic.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// `weight` or `bias` (batchnorm: `gamma`, `beta`, `running_mean`, `running_var`); the
    /// full name is `<layer>.<name>`.
    pub name: &'static str,
    pub shape: Shape,
    pub init: Init,
    /// Elements that are trained: all of them, or only the connected ones under a table.
    pub trainable: u64,
    /// Inputs and outputs feeding one unit, for the variance-scaling initialisers.
    pub fan_in: u64,
    pub fan_out: u64,
    /// A running statistic (batchnorm's mean and variance): not trained (`trainable` is 0)
    /// but updated by the train step from the batch's statistics, and read in evaluation.
    pub running: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LayerKind {
    /// `y = x W + b`, `W: [in, units]`.
    Dense {
        units: usize,
        bias: bool,
    },
    /// Cross-correlation, `W: [filters, in_channels, kh, kw]` (OIHW).
    Conv2d {
        filters: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        bias: bool,
        connections: Option<Connections>,
    },
    /// `ceil_mode`: PyTorch's, a last partial window wherever one starts inside the input
    /// (the maximum of the elements it covers).
    MaxPool {
        size: [usize; 2],
        stride: [usize; 2],
        ceil_mode: bool,
    },
    /// With `ceil_mode`, a partial window averages the elements it covers.
    AvgPool {
        size: [usize; 2],
        stride: [usize; 2],
        ceil_mode: bool,
    },
    /// LeNet-1998 subsampling: per channel, `coefficient * sum(window) + bias`.
    Subsample {
        size: [usize; 2],
        stride: [usize; 2],
    },
    Flatten,
    Dropout {
        rate: f64,
    },
    Activation(Activation),
    /// The elementwise sum of two or more inputs of one shape (a residual connection).
    Add,
    /// The inputs side by side along their first axis: channels of `[C, H, W]` maps of one
    /// spatial size, or features of vectors.
    Concat,
    /// The mean of each channel over its height and width: `[C, H, W]` → `[C]`.
    GlobalAvgPool,
    /// Batch normalisation, per channel of `[C, H, W]` maps or per feature of vectors:
    /// `gamma·(x − mean)/√(var + eps) + beta`, with the batch's mean and (biased) variance in
    /// training and the running ones in evaluation. The train step updates the running
    /// statistics as `momentum·running + (1 − momentum)·batch` (Keras' convention and
    /// defaults: momentum 0.99, eps 0.001; the running variance is the biased one, as Keras').
    BatchNorm {
        momentum: f64,
        eps: f64,
    },
}

impl LayerKind {
    /// The keyword that introduces this layer in a `.nn` file.
    pub fn keyword(&self) -> &'static str {
        match self {
            LayerKind::Dense { .. } => "dense",
            LayerKind::Conv2d { .. } => "conv2d",
            LayerKind::MaxPool { .. } => "maxpool",
            LayerKind::AvgPool { .. } => "avgpool",
            LayerKind::Subsample { .. } => "subsample",
            LayerKind::Flatten => "flatten",
            LayerKind::Dropout { .. } => "dropout",
            LayerKind::Activation(a) => a.keyword(),
            LayerKind::Add => "add",
            LayerKind::Concat => "concat",
            LayerKind::GlobalAvgPool => "global_avgpool",
            LayerKind::BatchNorm { .. } => "batchnorm",
        }
    }

    /// A short description for the summary table: `conv2d 5x5`, `maxpool 2x2`, `dropout 0.5`.
    pub fn describe(&self) -> String {
        let window = |k: [usize; 2], s: [usize; 2]| {
            let mut d = format!("{}x{}", k[0], k[1]);
            if s != k {
                d += &format!(" /{}", pair(s));
            }
            d
        };
        match self {
            LayerKind::Dense { bias: false, .. } => "dense, no bias".into(),
            LayerKind::Conv2d {
                kernel,
                stride,
                padding,
                bias,
                connections,
                ..
            } => {
                let mut d = format!("conv2d {}x{}", kernel[0], kernel[1]);
                if *stride != [1, 1] {
                    d += &format!(" /{}", pair(*stride));
                }
                match padding {
                    Padding::Fixed([0, 0]) => {}
                    Padding::Fixed(p) => d += &format!(" pad {}", pair(*p)),
                    Padding::Same { .. } => d += " pad same",
                }
                if let Some(c) = connections {
                    d += &format!(" table {}", c.name);
                }
                if !bias {
                    d += ", no bias";
                }
                d
            }
            LayerKind::MaxPool {
                size,
                stride,
                ceil_mode,
            } => format!("maxpool {}{}", window(*size, *stride), ceil(*ceil_mode)),
            LayerKind::AvgPool {
                size,
                stride,
                ceil_mode,
            } => format!("avgpool {}{}", window(*size, *stride), ceil(*ceil_mode)),
            LayerKind::Subsample { size, stride } => {
                format!("subsample {}", window(*size, *stride))
            }
            LayerKind::Dropout { rate } => format!("dropout {rate}"),
            LayerKind::Activation(a) => a.to_string(),
            LayerKind::BatchNorm { momentum, eps } => {
                let mut d = "batchnorm".to_string();
                if *momentum != 0.99 {
                    d += &format!(" momentum {}", num(*momentum));
                }
                if *eps != 0.001 {
                    d += &format!(" eps {}", num(*eps));
                }
                d
            }
            other => other.keyword().into(),
        }
    }

    /// The window of a convolution or pooling layer: its size, stride and padding (rows above
    /// and below, columns left and right).
    pub fn window(&self) -> Option<Window> {
        match self {
            LayerKind::Conv2d {
                kernel,
                stride,
                padding,
                ..
            } => Some(Window {
                size: *kernel,
                stride: *stride,
                padding: padding.sides(),
                ceil_mode: false,
            }),
            LayerKind::MaxPool {
                size,
                stride,
                ceil_mode,
            }
            | LayerKind::AvgPool {
                size,
                stride,
                ceil_mode,
            } => Some(Window {
                size: *size,
                stride: *stride,
                padding: [[0, 0], [0, 0]],
                ceil_mode: *ceil_mode,
            }),
            LayerKind::Subsample { size, stride } => Some(Window {
                size: *size,
                stride: *stride,
                padding: [[0, 0], [0, 0]],
                ceil_mode: false,
            }),
            _ => None,
        }
    }
}

/// The zero padding of a convolution's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// `padding: n` or `[h, w]`: that many rows above and below, columns left and right.
    Fixed([usize; 2]),
    /// `padding: same` (TensorFlow's): the output is ⌈input / stride⌉ on each axis, the total
    /// padding max((out − 1)·stride + kernel − input, 0) split in two with the odd row at the
    /// bottom (column at the right). `sides[axis] = [before, after]`, filled by shape
    /// inference, which knows the input.
    Same { sides: [[usize; 2]; 2] },
}

impl Padding {
    /// `[before, after]` for the height, then the width.
    pub fn sides(&self) -> [[usize; 2]; 2] {
        match *self {
            Padding::Fixed([h, w]) => [[h, h], [w, w]],
            Padding::Same { sides } => sides,
        }
    }
}

/// A window sliding over the last two axes, as PyTorch, Keras and ONNX slide it: on an input
/// of n (padded by `before` and `after`) it takes ⌊(n + before + after − size) / stride⌋ + 1
/// steps, and the rows after the last window are not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub size: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [[usize; 2]; 2],
    /// Round up instead (PyTorch's `ceil_mode`): one more window where the last one would
    /// start inside the input (or its leading padding) and overhang its end.
    pub ceil_mode: bool,
}

impl Window {
    /// The padded input's size on each axis.
    pub fn padded(&self, input: [usize; 2]) -> [usize; 2] {
        [0, 1].map(|a| input[a] + self.padding[a][0] + self.padding[a][1])
    }

    /// The output size, or `None` when the window is larger than the padded input.
    pub fn output(&self, input: [usize; 2]) -> Option<[usize; 2]> {
        let padded = self.padded(input);
        let fits = (0..2).all(|a| self.size[a] <= padded[a] && self.stride[a] > 0);
        fits.then(|| {
            [0, 1].map(|a| {
                let (span, s) = (padded[a] - self.size[a], self.stride[a]);
                if !self.ceil_mode {
                    return span / s + 1;
                }
                let out = span.div_ceil(s) + 1;
                // PyTorch: the last window must start inside the input or its leading padding.
                if (out - 1) * s >= input[a] + self.padding[a][0] {
                    out - 1
                } else {
                    out
                }
            })
        })
    }

    /// The rows (then columns) the last window reads beyond the padded input, in ceil mode.
    pub fn overhang(&self, input: [usize; 2]) -> Option<[usize; 2]> {
        let padded = self.padded(input);
        let out = self.output(input)?;
        Some(
            [0, 1]
                .map(|a| ((out[a] - 1) * self.stride[a] + self.size[a]).saturating_sub(padded[a])),
        )
    }

    /// The rows (then columns) at the bottom (right) of the padded input that no window
    /// reads: what rounding the output size down drops.
    pub fn unread(&self, input: [usize; 2]) -> Option<[usize; 2]> {
        let padded = self.padded(input);
        let out = self.output(input)?;
        Some([0, 1].map(|a| padded[a].saturating_sub((out[a] - 1) * self.stride[a] + self.size[a])))
    }
}

fn ceil(ceil_mode: bool) -> &'static str {
    if ceil_mode { " ceil" } else { "" }
}

fn pair(p: [usize; 2]) -> String {
    if p[0] == p[1] {
        p[0].to_string()
    } else {
        format!("{}x{}", p[0], p[1])
    }
}

/// A conv layer's connection table: `table[i][o]` is true when input channel `i` feeds output
/// channel `o`. Weights between unconnected channels are held at zero and not counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connections {
    pub name: String,
    pub table: Vec<Vec<bool>>,
}

impl Connections {
    /// The number of connected (input, output) channel pairs.
    pub fn connected(&self) -> u64 {
        self.table.iter().flatten().filter(|&&c| c).count() as u64
    }

    /// The number of inputs feeding output channel `o`.
    pub fn inputs_of(&self, o: usize) -> usize {
        self.table.iter().filter(|row| row[o]).count()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// Heaviside step: 1 where x > 0. Not differentiable; rejected in trained models.
    Step,
    Sigmoid,
    /// `scale * tanh(slope * x)`; LeCun 1998 uses scale 1.7159, slope 2/3.
    Tanh {
        scale: f64,
        slope: f64,
    },
    Relu,
    LeakyRelu {
        alpha: f64,
    },
    Elu {
        alpha: f64,
    },
    Softplus,
    Abs,
    Identity,
    /// Over the last axis, with the maximum subtracted for stability.
    Softmax,
}

impl Activation {
    pub fn keyword(&self) -> &'static str {
        match self {
            Activation::Step => "step",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh { .. } => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
            Activation::Softplus => "softplus",
            Activation::Abs => "abs",
            Activation::Identity => "identity",
            Activation::Softmax => "softmax",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Tanh { scale, slope } if (*scale, *slope) != (1.0, 1.0) => {
                write!(f, "{}·tanh({}·x)", num(*scale), num(*slope))
            }
            Activation::LeakyRelu { alpha } | Activation::Elu { alpha } => {
                write!(f, "{} {}", self.keyword(), num(*alpha))
            }
            _ => f.write_str(self.keyword()),
        }
    }
}

/// Formats a number compactly: `0.01`, `1e-7`, `1/255`, `2/3`.
pub fn num(x: f64) -> String {
    // A short decimal when one is exact (0.5, 0.2), else a fraction as written in .nn files
    // when the value is one with a small denominator (1/255, 2/3).
    let short = (x * 1e4).round() / 1e4;
    if x.fract() != 0.0 && x.abs() < 1.0 && (x - short).abs() > 1e-12 {
        for den in [3.0, 6.0, 7.0, 9.0, 255.0] {
            let n = x * den;
            if (n - n.round()).abs() < 1e-9 && n.round() != 0.0 {
                return format!("{}/{}", n.round(), den);
            }
        }
    }
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) {
        format!("{x:e}")
    } else {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// How a parameter tensor is initialised. Variance-scaling schemes use the tensor's fan-in
/// and fan-out ([`Param::fan_in`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Constant(f64),
    /// U(-limit, limit).
    Uniform {
        limit: f64,
    },
    Normal {
        mean: f64,
        std: f64,
    },
    /// Normal, redrawn beyond two standard deviations.
    TruncatedNormal {
        mean: f64,
        std: f64,
    },
    /// U(±√(6 / (fan_in + fan_out))), Keras' default.
    GlorotUniform,
    /// N(0, 2 / (fan_in + fan_out)), truncated as Keras does.
    GlorotNormal,
    /// U(±√(6 / fan_in)).
    HeUniform,
    /// N(0, 2 / fan_in), truncated.
    HeNormal,
    /// U(±√(3 / fan_in)).
    LecunUniform,
    /// N(0, 1 / fan_in), truncated.
    LecunNormal,
    /// U(±1/√fan_in): PyTorch's default for `nn.Linear`/`nn.Conv2d` weights and biases.
    Torch,
    /// U(±2.4 / fan_in): LeCun et al. 1998, appendix C.
    Lecun98,
}

impl Init {
    pub fn keyword(&self) -> &'static str {
        match self {
            Init::Zeros => "zeros",
            Init::Constant(_) => "constant",
            Init::Uniform { .. } => "uniform",
            Init::Normal { .. } => "normal",
            Init::TruncatedNormal { .. } => "truncated_normal",
            Init::GlorotUniform => "glorot_uniform",
            Init::GlorotNormal => "glorot_normal",
            Init::HeUniform => "he_uniform",
            Init::HeNormal => "he_normal",
            Init::LecunUniform => "lecun_uniform",
            Init::LecunNormal => "lecun_normal",
            Init::Torch => "torch",
            Init::Lecun98 => "lecun98",
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Constant(v) => write!(f, "constant({})", num(*v)),
            Init::Uniform { limit } => write!(f, "uniform({})", num(*limit)),
            Init::Normal { mean, std } | Init::TruncatedNormal { mean, std } => {
                write!(
                    f,
                    "{}(mean: {}, std: {})",
                    self.keyword(),
                    num(*mean),
                    num(*std)
                )
            }
            _ => f.write_str(self.keyword()),
        }
    }
}

/// How a model is trained: the checked `train` block.
#[derive(Clone, Debug, PartialEq)]
pub struct Train {
    pub span: Span,
    pub data: Data,
    /// Where `data`'s value is written: `nnc check` labels what it reads of the files there.
    pub data_span: Span,
    /// Where `test`'s value is written, when there is one.
    pub test_span: Option<Span>,
    /// Held-out data for evaluation; `None` means the source's own test split (MNIST's t10k)
    /// or, for sources without one, the training data itself.
    pub test: Option<Data>,
    pub loss: Loss,
    pub optimizer: Optimizer,
    pub batch: usize,
    pub epochs: usize,
    pub seed: u64,
    pub metrics: Vec<Metric>,
    /// L2 penalty factor λ: each gradient gains λ·w (the optimizer's `weight_decay:`). Always
    /// 0 under `adamw`, whose decay is decoupled ([`Optimizer::AdamW`]).
    pub weight_decay: f64,
    /// The fraction of the training data held out for validation.
    pub validation: Option<f64>,
    /// Stop when the validation loss has not improved for `patience` epochs, keeping the best
    /// weights.
    pub early_stop: Option<EarlyStop>,
    /// Random shifts of training images by up to `shift` pixels, seeded.
    pub augment: Option<Augment>,
    /// How the learning rate changes over the run (`constant` unless the block says).
    pub schedule: Schedule,
}

/// A learning-rate schedule: the optimizer's `lr` times [`Schedule::factor`] at each step.
/// An optional warmup ramps the rate up first; the decay then runs over the steps after it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Schedule {
    /// How the rate falls after the warmup.
    pub decay: Decay,
    /// Epochs (a fraction allowed) over which the rate rises linearly to `lr`; 0 for none.
    pub warmup: f64,
}

/// The shape of a schedule's fall, over the steps after its warmup.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Decay {
    #[default]
    Constant,
    /// Half a cosine from 1 down to `min` over the run's steps (PyTorch's `CosineAnnealingLR`,
    /// Keras' `CosineDecay` with `alpha: min`).
    Cosine { min: f64 },
    /// A straight line from 1 down to `min` over the run's steps.
    Linear { min: f64 },
    /// Times `gamma` after every `every` epochs (PyTorch's `StepLR`).
    Step { every: usize, gamma: f64 },
    /// Times `gamma` after every epoch (PyTorch's `ExponentialLR`).
    Exponential { gamma: f64 },
}

impl From<Decay> for Schedule {
    fn from(decay: Decay) -> Schedule {
        Schedule { decay, warmup: 0.0 }
    }
}

impl Schedule {
    /// Whether the rate is the optimizer's `lr` at every step.
    pub fn is_constant(&self) -> bool {
        self.decay == Decay::Constant && self.warmup == 0.0
    }

    /// The factor on the learning rate at step `step` (0-based, counted over the whole run)
    /// of a run of `epochs` epochs of `steps_per_epoch` steps.
    ///
    /// The warmup's W steps (its epochs times `steps_per_epoch`, rounded, at most the run) take
    /// (t + 1)/W, so that the first step already moves and the last one reaches `lr`; the
    /// decay then sees the step t − W of a run of T − W steps.
    pub fn factor(&self, step: u64, steps_per_epoch: usize, epochs: usize) -> f64 {
        let per_epoch = steps_per_epoch.max(1) as f64;
        // In f64: a block may ask for any number of epochs.
        let total = per_epoch * epochs.max(1) as f64;
        let warmup = (self.warmup * per_epoch).round().min(total);
        let t = step as f64;
        if t < warmup {
            return (t + 1.0) / warmup;
        }
        self.decay.factor(t - warmup, per_epoch, total - warmup)
    }

    /// Whether the factors depend on the run's length (cosine and linear span the run; a
    /// step or exponential schedule counts epochs, and a warmup steps, from the start).
    pub fn spans_run(&self) -> bool {
        matches!(self.decay, Decay::Cosine { .. } | Decay::Linear { .. })
    }
}

impl Decay {
    /// The factor at step `t` (from the end of the warmup) of `total` steps of `per_epoch`.
    fn factor(&self, t: f64, per_epoch: f64, total: f64) -> f64 {
        let progress = if total > 0.0 {
            (t / total).min(1.0)
        } else {
            1.0
        };
        let epoch = (t / per_epoch).floor();
        match *self {
            Decay::Constant => 1.0,
            Decay::Cosine { min } => {
                min + (1.0 - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Decay::Linear { min } => 1.0 - (1.0 - min) * progress,
            Decay::Step { every, gamma } => gamma.powf((epoch / every.max(1) as f64).floor()),
            Decay::Exponential { gamma } => gamma.powf(epoch),
        }
    }

    /// The schedule's name in the language.
    pub fn keyword(&self) -> &'static str {
        match self {
            Decay::Constant => "constant",
            Decay::Cosine { .. } => "cosine",
            Decay::Linear { .. } => "linear",
            Decay::Step { .. } => "step",
            Decay::Exponential { .. } => "exponential",
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.decay.keyword();
        let mut args = match self.decay {
            Decay::Constant => vec![],
            Decay::Cosine { min } | Decay::Linear { min } => vec![format!("min: {}", num(min))],
            Decay::Step { every, gamma } => {
                vec![format!("every: {every}"), format!("gamma: {}", num(gamma))]
            }
            Decay::Exponential { gamma } => vec![format!("gamma: {}", num(gamma))],
        };
        if self.warmup > 0.0 {
            args.push(format!("warmup: {}", num(self.warmup)));
        }
        if args.is_empty() {
            f.write_str(k)
        } else {
            write!(f, "{k}({})", args.join(", "))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EarlyStop {
    pub patience: usize,
    /// An improvement smaller than this does not count.
    pub min_delta: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    pub shift: usize,
}

/// A data source. Paths are as written, relative to the `.nn` file.
/// Serialized in `nnc check --json` as `{"source": "mnist", "pad": …}`: the variant's
/// fields, tagged with its name.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Data {
    /// The MNIST digits (60,000 train, 10,000 test), 1x28x28 u8 images padded by `pad`
    /// background pixels on each side, mapped to `pixel · scale + shift`, optionally
    /// flattened.
    Mnist {
        pad: usize,
        scale: f64,
        shift: f64,
        flatten: bool,
    },
    /// Any IDX image/label pair (e.g. Fashion-MNIST), gzip or raw.
    Idx {
        images: String,
        labels: String,
        pad: usize,
        scale: f64,
        shift: f64,
        flatten: bool,
        classes: Option<usize>,
    },
    /// A CSV file with a header; `target` names the target columns, the rest are features.
    Csv { path: String, target: Vec<String> },
    /// Rows written in the `.nn` file: inputs `->` targets.
    Inline {
        inputs: Vec<Vec<f64>>,
        targets: Vec<Vec<f64>>,
    },
}

impl Data {
    pub fn keyword(&self) -> &'static str {
        match self {
            Data::Mnist { .. } => "mnist",
            Data::Idx { .. } => "idx",
            Data::Csv { .. } => "csv",
            Data::Inline { .. } => "inline table",
        }
    }

    /// The per-sample input shape, when it is known without reading files.
    pub fn sample_shape(&self) -> Option<Shape> {
        match self {
            Data::Mnist { pad, flatten, .. } => Some(image_shape(28, 28, *pad, *flatten)),
            Data::Inline { inputs, .. } => inputs.first().map(|r| Shape(vec![r.len()])),
            Data::Idx { .. } | Data::Csv { .. } => None,
        }
    }

    /// The number of classes for class-label data, when known without reading files.
    pub fn classes(&self) -> Option<usize> {
        match self {
            Data::Mnist { .. } => Some(10),
            Data::Idx { classes, .. } => *classes,
            _ => None,
        }
    }

    /// True when targets are class indices (one integer per sample).
    pub fn has_class_labels(&self) -> bool {
        matches!(self, Data::Mnist { .. } | Data::Idx { .. })
    }
}

fn image_shape(h: usize, w: usize, pad: usize, flatten: bool) -> Shape {
    let (h, w) = (h + 2 * pad, w + 2 * pad);
    if flatten {
        Shape(vec![h * w])
    } else {
        Shape(vec![1, h, w])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// ½·Σ(y − t)² per sample, averaged over the batch.
    Mse,
    /// −Σ t·log y after a softmax output layer.
    CrossEntropy,
    /// Softmax and cross-entropy fused, from logits; gradient (y − t)/B.
    SoftmaxCrossEntropy,
}

impl Loss {
    pub fn keyword(&self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::CrossEntropy => "cross_entropy",
            Loss::SoftmaxCrossEntropy => "softmax_cross_entropy",
        }
    }
}

/// An optimizer and its hyper-parameters. The updates follow Keras 3's formulas; the
/// defaults are Keras', except where PyTorch's are the usual choice (`adadelta`, `adamax`,
/// `nadam`, and `adamw`'s weight decay): see docs/language.md.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Sgd {
        lr: f64,
    },
    Momentum {
        lr: f64,
        momentum: f64,
    },
    Nesterov {
        lr: f64,
        momentum: f64,
    },
    Adagrad {
        lr: f64,
        initial_accumulator: f64,
        eps: f64,
    },
    /// `eps` inside the square root, as Keras. `centered` divides by the variance instead of
    /// the mean square; `momentum` > 0 accumulates the scaled steps.
    RmsProp {
        lr: f64,
        rho: f64,
        eps: f64,
        momentum: f64,
        centered: bool,
    },
    Adam {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
    },
    /// Adam with decoupled weight decay: each step also shrinks w by lr·λ·w.
    AdamW {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    /// Adam with the infinity norm in place of the squared-gradient average.
    Adamax {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
    },
    /// Adam with Nesterov momentum (Dozat 2016), with its momentum schedule.
    Nadam {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
    },
    /// Zeiler 2012; `lr` scales the step (1 is the paper's).
    Adadelta {
        lr: f64,
        rho: f64,
        eps: f64,
    },
}

impl Optimizer {
    /// The learning rate, before any schedule.
    pub fn lr(&self) -> f64 {
        match *self {
            Optimizer::Sgd { lr }
            | Optimizer::Momentum { lr, .. }
            | Optimizer::Nesterov { lr, .. }
            | Optimizer::Adagrad { lr, .. }
            | Optimizer::RmsProp { lr, .. }
            | Optimizer::Adam { lr, .. }
            | Optimizer::AdamW { lr, .. }
            | Optimizer::Adamax { lr, .. }
            | Optimizer::Nadam { lr, .. }
            | Optimizer::Adadelta { lr, .. } => lr,
        }
    }

    pub fn keyword(&self) -> &'static str {
        match self {
            Optimizer::Sgd { .. } => "sgd",
            Optimizer::Momentum { .. } => "momentum",
            Optimizer::Nesterov { .. } => "nesterov",
            Optimizer::Adagrad { .. } => "adagrad",
            Optimizer::RmsProp { .. } => "rmsprop",
            Optimizer::Adam { .. } => "adam",
            Optimizer::AdamW { .. } => "adamw",
            Optimizer::Adamax { .. } => "adamax",
            Optimizer::Nadam { .. } => "nadam",
            Optimizer::Adadelta { .. } => "adadelta",
        }
    }
}

/// An optimizer's hyper-parameter value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Hyper {
    Number(f64),
    Flag(bool),
}

impl Optimizer {
    /// Every hyper-parameter, defaults included, in the order the language lists them: what
    /// the summary line prints and `nnc check --json` gives.
    pub fn hyper_parameters(&self) -> Vec<(&'static str, Hyper)> {
        let n = Hyper::Number;
        match *self {
            Optimizer::Sgd { lr } => vec![("lr", n(lr))],
            Optimizer::Momentum { lr, momentum } | Optimizer::Nesterov { lr, momentum } => {
                vec![("lr", n(lr)), ("momentum", n(momentum))]
            }
            Optimizer::Adagrad {
                lr,
                initial_accumulator,
                eps,
            } => vec![
                ("lr", n(lr)),
                ("initial_accumulator", n(initial_accumulator)),
                ("eps", n(eps)),
            ],
            Optimizer::RmsProp {
                lr,
                rho,
                eps,
                momentum,
                centered,
            } => vec![
                ("lr", n(lr)),
                ("rho", n(rho)),
                ("eps", n(eps)),
                ("momentum", n(momentum)),
                ("centered", Hyper::Flag(centered)),
            ],
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            }
            | Optimizer::Adamax {
                lr,
                beta1,
                beta2,
                eps,
            }
            | Optimizer::Nadam {
                lr,
                beta1,
                beta2,
                eps,
            } => vec![
                ("lr", n(lr)),
                ("beta1", n(beta1)),
                ("beta2", n(beta2)),
                ("eps", n(eps)),
            ],
            Optimizer::AdamW {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => vec![
                ("lr", n(lr)),
                ("beta1", n(beta1)),
                ("beta2", n(beta2)),
                ("eps", n(eps)),
                ("weight_decay", n(weight_decay)),
            ],
            Optimizer::Adadelta { lr, rho, eps } => {
                vec![("lr", n(lr)), ("rho", n(rho)), ("eps", n(eps))]
            }
        }
    }
}

impl fmt::Display for Optimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.keyword())?;
        let mut first = true;
        let rmsprop = matches!(self, Optimizer::RmsProp { .. });
        for (name, value) in self.hyper_parameters() {
            let value = match value {
                // RMSprop's options only when set, so that plain RMSprop reads as before.
                Hyper::Number(x) if rmsprop && name == "momentum" && x == 0.0 => continue,
                Hyper::Flag(false) => continue,
                Hyper::Number(x) => num(x),
                Hyper::Flag(true) => "true".to_string(),
            };
            write!(f, "{}{name}: {value}", if first { "" } else { ", " })?;
            first = false;
        }
        write!(f, ")")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Loss,
    Accuracy,
    /// Mean absolute error, for regression.
    Mae,
}

/// The figure reported next to the loss: accuracy for classes, or the mean absolute error for
/// a regression that asks for it (`metrics [loss, mae]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    Accuracy,
    Mae,
}

impl Score {
    /// Its short name in logs and metric keys: `acc` (`train_acc`, ...) or `mae`.
    pub fn key(self) -> &'static str {
        match self {
            Score::Accuracy => "acc",
            Score::Mae => "mae",
        }
    }

    /// Its name in sentences and plots.
    pub fn title(self) -> &'static str {
        match self {
            Score::Accuracy => "accuracy",
            Score::Mae => "mean absolute error",
        }
    }
}

impl Train {
    /// The score this train block reports ([`Score`]).
    pub fn score(&self) -> Score {
        if self.metrics.contains(&Metric::Mae) {
            Score::Mae
        } else {
            Score::Accuracy
        }
    }
}

impl Metric {
    pub fn keyword(&self) -> &'static str {
        match self {
            Metric::Loss => "loss",
            Metric::Accuracy => "accuracy",
            Metric::Mae => "mae",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Decay, Schedule, num};

    #[test]
    fn numbers_print_as_written() {
        for (x, text) in [
            (0.5, "0.5"),
            (0.2, "0.2"),
            (0.02, "0.02"),
            (1.0 / 255.0, "1/255"),
            (2.0 / 3.0, "2/3"),
            (1.0 / 6.0, "1/6"),
            (1e-7, "1e-7"),
            (-0.1, "-0.1"),
            (3.0, "3"),
        ] {
            assert_eq!(num(x), text, "{x}");
        }
    }

    #[test]
    fn schedule_factors() {
        // 2 epochs of 10 steps.
        let at = |s: Decay, step: u64| Schedule::from(s).factor(step, 10, 2);
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        close(at(Decay::Constant, 17), 1.0);
        let cosine = Decay::Cosine { min: 0.1 };
        close(at(cosine, 0), 1.0);
        close(at(cosine, 10), 0.55); // half way: the mean of 1 and min
        close(
            at(cosine, 5),
            0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos()),
        );
        close(at(cosine, 20), 0.1); // the run's end, and never below it after
        close(at(cosine, 25), 0.1);
        close(at(Decay::Linear { min: 0.0 }, 15), 0.25);
        let step = Decay::Step {
            every: 2,
            gamma: 0.5,
        };
        close(at(step, 19), 1.0);
        close(at(step, 20), 0.5);
        close(at(step, 40), 0.25);
        let exp = Decay::Exponential { gamma: 0.9 };
        close(at(exp, 9), 1.0);
        close(at(exp, 10), 0.9);
        close(at(exp, 25), 0.81);
        // Any number of epochs a block may ask for, without overflow.
        close(Schedule::from(cosine).factor(0, 60_000, usize::MAX), 1.0);
        assert!(Schedule::from(exp).factor(u64::MAX, 1, usize::MAX) >= 0.0);
    }

    #[test]
    fn warmup_ramps_then_the_decay_runs_over_the_rest() {
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        // Half an epoch of warmup in 2 epochs of 10 steps: 5 steps up, then 15 of cosine.
        let s = Schedule {
            decay: Decay::Cosine { min: 0.0 },
            warmup: 0.5,
        };
        let at = |step: u64| s.factor(step, 10, 2);
        close(at(0), 0.2);
        close(at(3), 0.8);
        close(at(4), 1.0);
        close(at(5), 1.0); // the cosine's start
        close(
            at(5 + 7),
            0.5 * (1.0 + (std::f64::consts::PI * 7.0 / 15.0).cos()),
        );
        close(at(20), 0.0);
        assert!(!s.is_constant() && s.spans_run());
        // A constant rate after its warmup; step and exponential count epochs from its end.
        let warm = |decay| Schedule { decay, warmup: 1.0 };
        close(warm(Decay::Constant).factor(9, 10, 2), 1.0);
        close(warm(Decay::Constant).factor(17, 10, 2), 1.0);
        assert!(!warm(Decay::Constant).is_constant());
        let exp = warm(Decay::Exponential { gamma: 0.5 });
        close(exp.factor(19, 10, 3), 1.0);
        close(exp.factor(20, 10, 3), 0.5);
        // A warmup longer than the run is all of it.
        close(warm(Decay::Constant).factor(4, 10, 0), 0.5);
        close(
            Schedule {
                decay: Decay::Linear { min: 0.0 },
                warmup: 5.0,
            }
            .factor(19, 10, 2),
            1.0,
        );
        // Display round-trips the language.
        assert_eq!(s.to_string(), "cosine(min: 0, warmup: 0.5)");
        assert_eq!(warm(Decay::Constant).to_string(), "constant(warmup: 1)");
        assert_eq!(Schedule::default().to_string(), "constant");
    }
}
