//! Layers: from calls to [`LayerKind`]s (arguments, defaults) and through them, shapes.

use nnc_syntax::ast::Call;
use nnc_syntax::diagnostic::quote;
use nnc_syntax::{Diagnostic, Span};

use crate::args::{self, Range, Spec, bind, named, pos};
use crate::model::{Activation, Connections, Init, LayerKind, Padding, Param, Shape, Window};
use crate::suggest;

pub const LAYERS: &[&str] = &[
    "dense",
    "conv2d",
    "maxpool",
    "avgpool",
    "subsample",
    "flatten",
    "dropout",
    "global_avgpool",
    "batchnorm",
    "add",
    "concat",
];

/// Layers that read several named values, `add(a, b)`: they start a line (see `graph.rs`).
pub const MERGES: &[&str] = &["add", "concat"];

pub const ACTIVATIONS: &[&str] = &[
    "step",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "softplus",
    "abs",
    "identity",
    "softmax",
];

pub const INITS: &[&str] = &[
    "glorot_uniform",
    "glorot_normal",
    "glorot",
    "he_uniform",
    "he_normal",
    "he",
    "lecun_uniform",
    "lecun_normal",
    "lecun98",
    "torch",
    "normal",
    "truncated_normal",
    "uniform",
    "constant",
    "zeros",
    "ones",
];

/// A layer as written, before shapes: its kind and the options that shape inference and
/// initialisation need.
pub struct Resolved {
    pub kind: LayerKind,
    /// A fused `activation:` argument, expanded into its own layer after this one.
    pub activation: Option<(Activation, Span)>,
    pub init: Option<Init>,
    pub bias_init: Option<Init>,
    /// The name of a connection table, resolved during shape inference.
    pub connections: Option<(String, Span)>,
}

impl Resolved {
    pub fn plain(kind: LayerKind) -> Resolved {
        Resolved {
            kind,
            activation: None,
            init: None,
            bias_init: None,
            connections: None,
        }
    }
}

const DENSE: &[Spec] = &[
    pos("units"),
    named("activation"),
    named("bias"),
    named("init"),
    named("bias_init"),
];
const CONV2D: &[Spec] = &[
    pos("filters"),
    pos("kernel"),
    named("stride"),
    named("padding"),
    named("bias"),
    named("connections"),
    named("activation"),
    named("init"),
    named("bias_init"),
];
const POOL: &[Spec] = &[pos("size"), named("stride"), named("ceil_mode")];
const SUBSAMPLE: &[Spec] = &[
    pos("size"),
    named("stride"),
    named("activation"),
    named("init"),
    named("bias_init"),
];

/// Resolves a layer call. `None` when it is unknown or its arguments are unusable (reported).
pub fn resolve(call: &Call, diags: &mut Vec<Diagnostic>) -> Option<Resolved> {
    let name = call.name.name.as_str();
    if ACTIVATIONS.contains(&name) {
        return activation(call, diags).map(|a| Resolved::plain(LayerKind::Activation(a)));
    }
    let before = diags.len();
    let resolved = match name {
        "dense" => {
            let b = bind(call, DENSE, diags);
            let units = b.int("units", 1, "dense(128)", diags);
            let bias = b.bool_or("bias", true, diags);
            let mut r = Resolved::plain(LayerKind::Dense {
                units: units.unwrap_or(1) as usize,
                bias,
            });
            fused_options(&b, &mut r, diags);
            r
        }
        "conv2d" => {
            let b = bind(call, CONV2D, diags);
            let filters = b.int("filters", 1, "conv2d(6, kernel: 5)", diags);
            let kernel = b.pair_or("kernel", 1, None, "conv2d(6, kernel: 5)", diags);
            let stride = b.pair_or("stride", 1, Some([1, 1]), "", diags);
            let bias = b.bool_or("bias", true, diags);
            let padding = padding(&b, diags);
            let mut r = Resolved::plain(LayerKind::Conv2d {
                filters: filters.unwrap_or(1) as usize,
                kernel: kernel.unwrap_or([1, 1]),
                stride: stride.unwrap_or([1, 1]),
                padding: padding.unwrap_or(Padding::Fixed([0, 0])),
                bias,
                connections: None,
            });
            if let Some(v) = b.get("connections")
                && let Some(c) =
                    args::call(v, "connections", "the name of a `connections` table", diags)
            {
                r.connections = Some((c.name.name.clone(), c.span));
            }
            fused_options(&b, &mut r, diags);
            r
        }
        "maxpool" | "avgpool" | "subsample" => {
            let specs = if name == "subsample" { SUBSAMPLE } else { POOL };
            let b = bind(call, specs, diags);
            let example = format!("{name}(2)");
            let size = b
                .pair_or("size", 1, None, &example, diags)
                .unwrap_or([1, 1]);
            let stride = b
                .pair_or("stride", 1, Some(size), "", diags)
                .unwrap_or(size);
            let ceil_mode = name != "subsample" && b.bool_or("ceil_mode", false, diags);
            let kind = match name {
                "maxpool" => LayerKind::MaxPool {
                    size,
                    stride,
                    ceil_mode,
                },
                "avgpool" => LayerKind::AvgPool {
                    size,
                    stride,
                    ceil_mode,
                },
                _ => LayerKind::Subsample { size, stride },
            };
            let mut r = Resolved::plain(kind);
            fused_options(&b, &mut r, diags);
            r
        }
        "flatten" => {
            bind(call, &[], diags);
            Resolved::plain(LayerKind::Flatten)
        }
        "global_avgpool" => {
            bind(call, &[], diags);
            Resolved::plain(LayerKind::GlobalAvgPool)
        }
        "batchnorm" => {
            let b = bind(call, &[named("momentum"), named("eps")], diags);
            // Their own help lines: the optimizers' `momentum` and `eps` mean other things.
            let mut arg = |name: &str, range: Range, default: f64, help: &str| {
                let Some(v) = b.get(name) else {
                    return default;
                };
                let Some(x) = args::float_in(v, name, Range::ANY, diags) else {
                    return default;
                };
                if !range.contains(x) {
                    let within = if range.hi.is_finite() {
                        "in [0, 1)"
                    } else {
                        "> 0"
                    };
                    diags.push(
                        Diagnostic::error(
                            "nnc::range",
                            format!("`{name}` must be {within}, found {}", crate::model::num(x)),
                        )
                        .label(v.span, "out of range")
                        .help(help),
                    );
                }
                x
            };
            let momentum = arg(
                "momentum",
                Range::UNIT_OPEN,
                0.99,
                "the running statistics keep this fraction of themselves at each step and take the rest from the batch; Keras' default is 0.99 (PyTorch's momentum 0.1 is 0.9 here), and 1 would never learn them",
            );
            let eps = arg(
                "eps",
                Range::POSITIVE,
                0.001,
                "eps is added to the variance before its square root, so that a constant channel does not divide by zero; Keras' default is 0.001 (PyTorch's 1e-5)",
            );
            Resolved::plain(LayerKind::BatchNorm { momentum, eps })
        }
        "dropout" => {
            let b = bind(call, &[pos("rate")], diags);
            let rate = match b.get("rate") {
                None => {
                    b.missing("rate", "dropout(0.5)", diags);
                    None
                }
                Some(v) => args::float_in(v, "rate", Range::UNIT_OPEN, diags),
            };
            Resolved::plain(LayerKind::Dropout {
                rate: rate.unwrap_or(0.0),
            })
        }
        _ => {
            let mut known: Vec<&str> = LAYERS.to_vec();
            known.extend_from_slice(ACTIVATIONS);
            let help = match suggest::closest(name, known.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                // `hidden dense(128)`: a label without its colon.
                None if call.args.is_none() => format!(
                    "to name the layer that follows, write `{name}: ...`; the layers are {}",
                    suggest::list(&known)
                ),
                None => format!("the layers are: {}", suggest::list(&known)),
            };
            diags.push(
                Diagnostic::error(
                    "nnc::name::unknown_layer",
                    format!("unknown layer {}", quote(name)),
                )
                .label(call.name.span, "not a layer")
                .help(help),
            );
            return None;
        }
    };
    (diags.len() == before).then_some(resolved)
}

/// `activation:`, `init:` and `bias_init:`, shared by dense, conv2d and subsample.
fn fused_options(b: &args::Bound<'_>, r: &mut Resolved, diags: &mut Vec<Diagnostic>) {
    if let Some(v) = b.get("activation")
        && let Some(c) = args::call(v, "activation", "an activation such as `relu`", diags)
    {
        if ACTIVATIONS.contains(&c.name.name.as_str()) {
            r.activation = activation(c, diags).map(|a| (a, c.span));
        } else {
            diags.push(unknown(c, "activation", "the activations", ACTIVATIONS));
        }
    }
    r.init = b.get("init").and_then(|v| init(v, "init", diags));
    r.bias_init = b.get("bias_init").and_then(|v| init(v, "bias_init", diags));
}

fn unknown(c: &Call, what: &str, kinds: &str, known: &[&str]) -> Diagnostic {
    Diagnostic::error(
        "nnc::name::unknown_value",
        format!("unknown {what} {}", quote(&c.name.name)),
    )
    .label(c.name.span, format!("not a known {what}"))
    .help(suggest::help(&c.name.name, kinds, known))
}

/// `padding: 2`, `padding: [1, 2]`, `padding: same` or `padding: valid`.
fn padding(b: &args::Bound<'_>, diags: &mut Vec<Diagnostic>) -> Option<Padding> {
    let Some(v) = b.get("padding") else {
        return Some(Padding::Fixed([0, 0]));
    };
    if let nnc_syntax::ast::ValueKind::Call(c) = &v.kind {
        match (c.name.name.as_str(), c.args.is_none()) {
            ("valid", true) => return Some(Padding::Fixed([0, 0])),
            // The sides depend on the input: shape inference fills them.
            ("same", true) => {
                return Some(Padding::Same {
                    sides: [[0, 0], [0, 0]],
                });
            }
            _ => {}
        }
    }
    match &v.kind {
        // A string too (`"same"`), so that the message lists the names and the help drops
        // the quotes.
        nnc_syntax::ast::ValueKind::Call(_) | nnc_syntax::ast::ValueKind::Str(_) => {
            diags.push(args::type_error(
                v,
                "padding",
                "an integer, a pair `[h, w]`, `same` or `valid`",
            ));
            None
        }
        _ => args::pair(v, "padding", 0, diags).map(Padding::Fixed),
    }
}

/// TensorFlow's `same` padding of an axis of `n`: output ⌈n / stride⌉, the total padding
/// max((out − 1)·stride + size − n, 0), the odd row after.
fn same_sides(n: usize, size: usize, stride: usize) -> [usize; 2] {
    let out = n.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + size).saturating_sub(n);
    [total / 2, total - total / 2]
}

/// Resolves an activation call such as `relu` or `leaky_relu(0.2)`.
pub fn activation(call: &Call, diags: &mut Vec<Diagnostic>) -> Option<Activation> {
    let before = diags.len();
    let a = match call.name.name.as_str() {
        "tanh" => {
            let b = bind(call, &[pos("scale"), pos("slope")], diags);
            Activation::Tanh {
                scale: b.float_or("scale", Range::POSITIVE, 1.0, diags),
                slope: b.float_or("slope", Range::POSITIVE, 1.0, diags),
            }
        }
        "leaky_relu" => {
            let b = bind(call, &[pos("alpha")], diags);
            Activation::LeakyRelu {
                alpha: b.float_or("alpha", Range::NON_NEGATIVE, 0.01, diags),
            }
        }
        "elu" => {
            let b = bind(call, &[pos("alpha")], diags);
            Activation::Elu {
                alpha: b.float_or("alpha", Range::NON_NEGATIVE, 1.0, diags),
            }
        }
        other => {
            bind(call, &[], diags);
            match other {
                "step" => Activation::Step,
                "sigmoid" => Activation::Sigmoid,
                "relu" => Activation::Relu,
                "softplus" => Activation::Softplus,
                "abs" => Activation::Abs,
                "identity" => Activation::Identity,
                _ => Activation::Softmax,
            }
        }
    };
    (diags.len() == before).then_some(a)
}

/// Resolves an initialiser such as `he` or `normal(std: 0.01)`.
fn init(v: &nnc_syntax::ast::Value, name: &str, diags: &mut Vec<Diagnostic>) -> Option<Init> {
    let c = args::call(v, name, "an initialiser such as `glorot_uniform`", diags)?;
    let before = diags.len();
    let simple = |init: Init, diags: &mut Vec<Diagnostic>| {
        bind(c, &[], diags);
        init
    };
    let init = match c.name.name.as_str() {
        "glorot_uniform" | "glorot" => simple(Init::GlorotUniform, diags),
        "glorot_normal" => simple(Init::GlorotNormal, diags),
        "he_uniform" | "he" => simple(Init::HeUniform, diags),
        "he_normal" => simple(Init::HeNormal, diags),
        "lecun_uniform" => simple(Init::LecunUniform, diags),
        "lecun_normal" => simple(Init::LecunNormal, diags),
        "lecun98" => simple(Init::Lecun98, diags),
        "torch" => simple(Init::Torch, diags),
        "zeros" => simple(Init::Zeros, diags),
        "ones" => simple(Init::Constant(1.0), diags),
        "constant" => {
            let b = bind(c, &[pos("value")], diags);
            match b.get("value") {
                None => {
                    b.missing("value", "constant(0.1)", diags);
                    Init::Zeros
                }
                Some(v) => {
                    Init::Constant(args::float_in(v, "value", Range::ANY, diags).unwrap_or(0.0))
                }
            }
        }
        "uniform" => {
            let b = bind(c, &[pos("limit")], diags);
            Init::Uniform {
                limit: b.float_or("limit", Range::POSITIVE, 0.05, diags),
            }
        }
        kind @ ("normal" | "truncated_normal") => {
            let b = bind(c, &[pos("std"), named("mean")], diags);
            let std = b.float_or("std", Range::POSITIVE, 0.05, diags);
            let mean = b.float_or("mean", Range::ANY, 0.0, diags);
            if kind == "normal" {
                Init::Normal { mean, std }
            } else {
                Init::TruncatedNormal { mean, std }
            }
        }
        _ => {
            diags.push(unknown(c, "initialiser", "the initialisers", INITS));
            return None;
        }
    };
    (diags.len() == before).then_some(init)
}

/// What shape inference needs to know about the layer that produced the current value.
pub struct Producer<'a> {
    pub span: Span,
    pub what: &'a str,
}

/// The largest per-sample tensor or parameter tensor accepted (elements).
const MAX_ELEMENTS: u64 = 1 << 32;

/// A layer after shape inference.
pub struct Inferred {
    pub kind: LayerKind,
    pub output: Shape,
    pub params: Vec<Param>,
    pub flops: u64,
}

/// Infers a layer's output shape from its input, checking that it fits.
pub fn infer(
    mut kind: LayerKind,
    connections: Option<(&Connections, Span)>,
    input: &Shape,
    span: Span,
    producer: &Producer<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Inferred> {
    let from =
        |diag: Diagnostic| diag.label(producer.span, format!("{} gives {input}", producer.what));
    let keyword = kind.keyword();
    let mut params = Vec::new();
    let mut flops = 0u64;
    let output = match &mut kind {
        LayerKind::Dense { units, bias } => {
            if input.rank() != 1 {
                diags.push(
                    from(
                        Diagnostic::error(
                            "nnc::shape::dense_rank",
                            format!("`dense` needs a vector input, found {input}"),
                        )
                        .label(
                            span,
                            format!("expects [n], found a rank-{} tensor", input.rank()),
                        ),
                    )
                    .help("insert `flatten` before this layer"),
                );
                return None;
            }
            let n = input.0[0] as u64;
            let u = *units as u64;
            params.push(param("weight", vec![input.0[0], *units], n * u, n, u));
            if *bias {
                params.push(param("bias", vec![*units], u, n, u));
            }
            flops = 2 * n * u;
            Shape(vec![*units])
        }
        LayerKind::Conv2d {
            filters,
            kernel,
            stride,
            padding,
            bias,
            connections: conn,
        } => {
            let [c, h, w] = rank3(input, keyword, span, &from, diags)?;
            if let Some((table, table_span)) = connections {
                check_table(table, table_span, c, *filters, span, diags)?;
                *conn = Some(table.clone());
            }
            if let Padding::Same { sides } = padding {
                *sides = [
                    same_sides(h, kernel[0], stride[0]),
                    same_sides(w, kernel[1], stride[1]),
                ];
            }
            let win = Window {
                size: *kernel,
                stride: *stride,
                padding: padding.sides(),
                ceil_mode: false,
            };
            let [oh, ow] = window(keyword, "kernel", [h, w], win, span, &from, diags)?;
            let (f, kk) = (*filters as u64, (kernel[0] * kernel[1]) as u64);
            let pairs = conn.as_ref().map_or(c as u64 * f, |t| t.connected());
            params.push(param(
                "weight",
                vec![*filters, c, kernel[0], kernel[1]],
                pairs * kk,
                c as u64 * kk,
                f * kk,
            ));
            if *bias {
                params.push(param("bias", vec![*filters], f, c as u64 * kk, f * kk));
            }
            flops = 2 * (oh * ow) as u64 * pairs * kk;
            Shape(vec![*filters, oh, ow])
        }
        LayerKind::MaxPool { .. } | LayerKind::AvgPool { .. } | LayerKind::Subsample { .. } => {
            let [c, h, w] = rank3(input, keyword, span, &from, diags)?;
            let Some(win) = kind.window() else {
                unreachable!("pooling has a window")
            };
            let size = &win.size;
            let [oh, ow] = window(keyword, "window", [h, w], win, span, &from, diags)?;
            let kk = (size[0] * size[1]) as u64;
            let out = (c * oh * ow) as u64;
            match keyword {
                "avgpool" => flops = out * kk,
                "subsample" => {
                    flops = out * kk;
                    params.push(param("weight", vec![c], c as u64, kk, 1));
                    params.push(param("bias", vec![c], c as u64, kk, 1));
                }
                _ => {}
            }
            Shape(vec![c, oh, ow])
        }
        LayerKind::Flatten => Shape(vec![input.numel() as usize]),
        LayerKind::GlobalAvgPool => {
            let [c, _, _] = rank3(input, keyword, span, &from, diags)?;
            flops = input.numel();
            Shape(vec![c])
        }
        LayerKind::BatchNorm { .. } => {
            // Statistics per channel of a map, per feature of a vector.
            let channels = match input.0[..] {
                [c, _, _] | [c] => c,
                _ => {
                    diags.push(
                        from(
                            Diagnostic::error(
                                "nnc::shape::batchnorm_rank",
                                format!(
                                    "`batchnorm` needs [channels, height, width] maps or [features] vectors, found {input}"
                                ),
                            )
                            .label(span, format!("no channel axis in a rank-{} tensor", input.rank())),
                        )
                        .help("normalise the output of a `conv2d` (per channel) or of a `dense` layer (per feature)"),
                    );
                    return None;
                }
            };
            let c = channels as u64;
            let tensor = |name, trained: bool| Param {
                name,
                shape: Shape(vec![channels]),
                init: Init::Zeros,
                trainable: if trained { c } else { 0 },
                fan_in: 1,
                fan_out: 1,
                running: !trained,
            };
            params.push(tensor("gamma", true));
            params.push(tensor("beta", true));
            params.push(tensor("running_mean", false));
            params.push(tensor("running_var", false));
            // A multiply and an add per element, the statistics folded into a scale and shift.
            flops = 2 * input.numel();
            input.clone()
        }
        // Several inputs: inferred by `graph::merge`, which sees them all.
        LayerKind::Add | LayerKind::Concat => input.clone(),
        LayerKind::Dropout { .. } => input.clone(),
        LayerKind::Activation(Activation::Softmax) if input.rank() != 1 => {
            diags.push(
                from(
                    Diagnostic::error(
                        "nnc::shape::softmax_rank",
                        format!("`softmax` needs a vector input, found {input}"),
                    )
                    .label(span, "softmax is taken over a vector of scores"),
                )
                .help("insert `flatten` and a `dense` layer before it"),
            );
            return None;
        }
        LayerKind::Activation(_) => input.clone(),
    };
    let too_large = output.numel() > MAX_ELEMENTS
        || params
            .iter()
            .any(|p: &Param| p.shape.numel() > MAX_ELEMENTS);
    if too_large {
        diags.push(
            Diagnostic::error(
                "nnc::shape::too_large",
                format!("`{keyword}` is too large: more than 2^32 elements in one tensor"),
            )
            .label(span, format!("gives {output}"))
            .help("nnc keeps every tensor of a training step in memory; use smaller layers"),
        );
        return None;
    }
    Some(Inferred {
        kind,
        output,
        params,
        flops,
    })
}

fn param(name: &'static str, dims: Vec<usize>, trainable: u64, fan_in: u64, fan_out: u64) -> Param {
    Param {
        name,
        shape: Shape(dims),
        // Filled in once the following activation is known (see `lib.rs`).
        init: Init::Zeros,
        trainable,
        fan_in,
        fan_out,
        running: false,
    }
}

fn rank3(
    input: &Shape,
    keyword: &str,
    span: Span,
    from: &dyn Fn(Diagnostic) -> Diagnostic,
    diags: &mut Vec<Diagnostic>,
) -> Option<[usize; 3]> {
    if let [c, h, w] = input.0[..] {
        return Some([c, h, w]);
    }
    let help = if input.rank() == 1 {
        "spatial layers need [channels, height, width]: remove the `flatten` before it, or declare the input as e.g. `f32[1, 28, 28]` and load data with `flatten: false`"
    } else {
        "spatial layers need [channels, height, width]"
    };
    diags.push(
        from(
            Diagnostic::error(
                "nnc::shape::spatial_rank",
                format!("`{keyword}` needs a [channels, height, width] input, found {input}"),
            )
            .label(span, format!("expects rank 3, found rank {}", input.rank())),
        )
        .help(help),
    );
    None
}

/// Output size of a sliding window (rounded down, as PyTorch, Keras and ONNX round it), or a
/// diagnostic when the window does not fit the padded input.
fn window(
    keyword: &str,
    what: &str,
    input: [usize; 2],
    win: Window,
    span: Span,
    from: &dyn Fn(Diagnostic) -> Diagnostic,
    diags: &mut Vec<Diagnostic>,
) -> Option<[usize; 2]> {
    if let Some(out) = win.output(input) {
        return Some(out);
    }
    let (size, padding) = (win.size, win.padding);
    let padded = win.padded(input);
    let padded_note = if padded == input {
        String::new()
    } else {
        format!(" (padded to {}x{})", padded[0], padded[1])
    };
    let help = if keyword == "conv2d" {
        let need = |k: usize, n: usize| k.saturating_sub(n).div_ceil(2);
        let least = need(size[0], input[0]).max(need(size[1], input[1]));
        let more = padding.iter().flatten().any(|&p| p > 0);
        format!(
            "use a kernel of at most {}x{}, or {}`padding: {least}`",
            padded[0],
            padded[1],
            if more { "at least " } else { "" }
        )
    } else {
        format!("use a {what} of at most {}x{}", padded[0], padded[1])
    };
    diags.push(
        from(
            Diagnostic::error(
                "nnc::shape::window",
                format!(
                    "{what} {}x{} is larger than the {}x{} input{padded_note}",
                    size[0], size[1], input[0], input[1]
                ),
            )
            .label(span, format!("`{keyword}` does not fit its input")),
        )
        .help(help),
    );
    None
}

/// A connection table must have a row per input channel and a column per filter, and every
/// output channel must be fed by at least one input.
fn check_table(
    table: &Connections,
    table_span: Span,
    in_channels: usize,
    filters: usize,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<()> {
    let rows = table.table.len();
    let cols = table.table.first().map_or(0, Vec::len);
    if rows != in_channels || cols != filters {
        diags.push(
            Diagnostic::error(
                "nnc::table::shape",
                format!(
                    "connection table `{}` is {rows}x{cols}, but this layer connects {in_channels} input channels to {filters} filters",
                    table.name
                ),
            )
            .label(table_span, format!("{rows} rows, {cols} columns"))
            .label(span, format!("needs {in_channels} rows (inputs) and {filters} columns (filters)"))
            .help("a connection table has one row per input channel and one column per output channel"),
        );
        return None;
    }
    if let Some(o) = (0..filters).find(|&o| table.inputs_of(o) == 0) {
        diags.push(
            Diagnostic::error(
                "nnc::table::unconnected",
                format!("output channel {o} of table `{}` has no inputs", table.name),
            )
            .label(table_span, format!("column {o} has no `X`"))
            .help("every output channel needs at least one connected input channel"),
        );
        return None;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_is_tensorflows() {
        // Stride 1, odd kernel: symmetric.
        assert_eq!(same_sides(28, 5, 1), [2, 2]);
        // Even kernel: the odd row at the bottom.
        assert_eq!(same_sides(28, 4, 1), [1, 2]);
        // Stride 2 on 28, kernel 3: out 14, total (13·2 + 3) − 28 = 1.
        assert_eq!(same_sides(28, 3, 2), [0, 1]);
        // Stride 2 on 7, kernel 3: out 4, total 6 + 3 − 7 = 2.
        assert_eq!(same_sides(7, 3, 2), [1, 1]);
        // A window smaller than the stride needs none.
        assert_eq!(same_sides(28, 1, 2), [0, 0]);
        // Every case gives ⌈n / stride⌉ outputs.
        for n in 1..20 {
            for k in 1..8 {
                for s in 1..5 {
                    let [b, a] = same_sides(n, k, s);
                    let win = Window {
                        size: [k, 1],
                        stride: [s, 1],
                        padding: [[b, a], [0, 0]],
                        ceil_mode: false,
                    };
                    assert_eq!(win.output([n, 1]), Some([n.div_ceil(s), 1]), "{n} {k} {s}");
                }
            }
        }
    }

    #[test]
    fn windows_round_down() {
        let win = |size: usize, stride: usize, p: usize| Window {
            size: [size, size],
            stride: [stride, stride],
            padding: [[p, p], [p, p]],
            ceil_mode: false,
        };
        // Keras' second pooling: 11x11 → 5x5, the last row and column unread.
        assert_eq!(win(2, 2, 0).output([11, 11]), Some([5, 5]));
        assert_eq!(win(2, 2, 0).unread([11, 11]), Some([1, 1]));
        // conv2d(kernel: 3, stride: 2, padding: 1) on 28: 14, the bottom padding row unread.
        assert_eq!(win(3, 2, 1).output([28, 28]), Some([14, 14]));
        assert_eq!(win(3, 2, 1).unread([28, 28]), Some([1, 1]));
        // Exact tiling reads everything.
        assert_eq!(win(2, 2, 0).unread([28, 28]), Some([0, 0]));
        // A window larger than the padded input has no output.
        assert_eq!(win(5, 1, 1).output([2, 2]), None);
        // Ceil mode: 11x11 pools to 6x6, the last windows overhanging by a row and a column.
        let ceil = Window {
            ceil_mode: true,
            ..win(2, 2, 0)
        };
        assert_eq!(ceil.output([11, 11]), Some([6, 6]));
        assert_eq!(ceil.overhang([11, 11]), Some([1, 1]));
        assert_eq!(ceil.unread([11, 11]), Some([0, 0]));
        // No window starts past the input: 1-wide windows every 3 on 5 start at 0 and 3.
        let sparse = Window {
            ceil_mode: true,
            ..win(1, 3, 0)
        };
        assert_eq!(sparse.output([5, 5]), Some([2, 2]));
    }
}
