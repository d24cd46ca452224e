//! A checked model and its weights as PyTorch: `model.py`, a readable `torch.nn.Module`
//! generated from the model (its attributes named after the `.nn` file's layers), and the
//! state dict in PyTorch's names and layouts, which `load_state_dict` accepts.
//!
//! The module computes what nnc's steps compute (the layer mapping is `bench/twin.py`'s):
//! `forward` takes the model's input (after the data source's preprocessing) and returns the
//! last layer's values; `preprocess` maps stored values (raw u8 pixels) to that input as nnc
//! does; `loss` is the train block's loss as nnc defines it.

use std::collections::HashSet;
use std::fmt::Write as _;

use nnc_check::{Activation, LayerKind, Loss, Model, Source};
use nnc_ir::DType;
use nnc_ir::lower::{InputSpec, TargetSpec};

use crate::{ExportError, Origin, Tensor};

/// The generated module's source and its state dict.
#[derive(Clone, Debug, PartialEq)]
pub struct PyTorchModel {
    /// The class's name in `source`.
    pub class: String,
    /// `model.py`.
    pub source: String,
    /// The state dict: `<attribute>.<weight|bias>`, dense weights transposed to `[out, in]`.
    pub tensors: Vec<Tensor>,
}

/// Python's keywords and the `torch.nn.Module` members a layer's attribute must not hide,
/// and the names model.py itself defines: such a layer name gets a trailing `_`.
const RESERVED: &[&str] = &[
    "False",
    "None",
    "True",
    "and",
    "as",
    "assert",
    "async",
    "await",
    "break",
    "class",
    "continue",
    "def",
    "del",
    "elif",
    "else",
    "except",
    "finally",
    "for",
    "from",
    "global",
    "if",
    "import",
    "in",
    "is",
    "lambda",
    "nonlocal",
    "not",
    "or",
    "pass",
    "raise",
    "return",
    "try",
    "while",
    "with",
    "yield",
    "forward",
    "training",
    "train",
    "eval",
    "to",
    "cuda",
    "cpu",
    "float",
    "double",
    "half",
    "bfloat16",
    "type",
    "apply",
    "parameters",
    "named_parameters",
    "buffers",
    "named_buffers",
    "children",
    "named_children",
    "modules",
    "named_modules",
    "state_dict",
    "load_state_dict",
    "zero_grad",
    "register_buffer",
    "register_parameter",
    "register_module",
    "add_module",
    "get_submodule",
    "get_parameter",
    "get_buffer",
    "requires_grad_",
    "share_memory",
    "extra_repr",
    "compile",
    "dump_patches",
    "call_super_init",
    "preprocess",
    "loss",
];

/// The module of `model` with `weights`, whose `preprocess` takes inputs laid out as `input`
/// says.
pub fn export(
    model: &Model,
    input: &InputSpec,
    weights: &[Tensor],
    origin: &Origin<'_>,
) -> Result<PyTorchModel, ExportError> {
    let class = class_name(&model.name);
    let mut used: HashSet<String> = HashSet::new();
    let mut attr = |name: &str| {
        let mut a = name.to_string();
        while RESERVED.contains(&a.as_str()) || used.contains(&a) {
            a.push('_');
        }
        used.insert(a.clone());
        a
    };

    // Values read other than by the next layer (a branch's start, `add`'s and `concat`'s
    // operands) are kept in variables `v_<name>`; the rest flows through `x`.
    let names: Vec<&str> = std::iter::once(model.input.name.as_str())
        .chain(model.layers.iter().map(|l| l.name.as_str()))
        .collect();
    let index = |s: &Source| match *s {
        Source::Input => 0,
        Source::Layer(j) => j + 1,
    };
    let mut kept = vec![false; names.len()];
    for (i, layer) in model.layers.iter().enumerate() {
        if layer.inputs.len() > 1 || layer.inputs.first().map(index) != Some(i) {
            for s in &layer.inputs {
                kept[index(s)] = true;
            }
        }
    }
    let var = |i: usize| format!("v_{}", names[i]);

    let mut init: Vec<String> = Vec::new();
    let mut fwd: Vec<String> = Vec::new();
    let mut tensors = Vec::new();
    let mut uses_subsample = false;
    let mut uses_masked = false;
    if kept[0] {
        fwd.push(format!("{} = x", var(0)));
    }
    for (i, layer) in model.layers.iter().enumerate() {
        let name = layer.name.as_str();
        let first = layer.inputs.first().map_or(i, index);
        if layer.inputs.len() == 1 && first != i {
            fwd.push(format!("x = {}", var(first)));
        }
        let weight = |param: &str| crate::onnx::find_weight(weights, layer, param);
        let mut line = |s: String| fwd.push(format!("{s}  # {name}"));
        match &layer.kind {
            LayerKind::Dense { units, bias } => {
                let a = attr(name);
                let n = layer.input_shape.0.first().copied().unwrap_or(0);
                if layer.input_shape.rank() != 1 {
                    return Err(ExportError::Unsupported {
                        layer: name.into(),
                        reason: format!("dense on an input of shape {}", layer.input_shape),
                    });
                }
                init.push(format!(
                    "self.{a} = nn.Linear({n}, {units}, bias={})",
                    py_bool(*bias)
                ));
                line(format!("x = self.{a}(x)"));
                // nnc's [in, out] is Linear's [out, in] transposed.
                let w = weight("weight")?;
                let mut t = vec![0.0f32; w.data.len()];
                for r in 0..n {
                    for c in 0..*units {
                        t[c * n + r] = w.data[r * units + c];
                    }
                }
                tensors.push(Tensor {
                    name: format!("{a}.weight"),
                    shape: vec![*units, n],
                    data: t,
                });
                if *bias {
                    let b = weight("bias")?;
                    tensors.push(renamed(b, &format!("{a}.bias")));
                }
            }
            LayerKind::Conv2d {
                filters,
                kernel,
                stride,
                bias,
                connections,
                ..
            } => {
                let a = attr(name);
                let c = layer.input_shape.0.first().copied().unwrap_or(0);
                let [[top, bottom], [left, right]] =
                    layer.kind.window().map_or([[0, 0], [0, 0]], |w| w.padding);
                let even = top == bottom && left == right;
                let pad = if even { [top, left] } else { [0, 0] };
                let args = format!(
                    "{c}, {filters}, {}, stride={}, padding={}, bias={}",
                    tuple(kernel),
                    tuple(stride),
                    tuple(&pad),
                    py_bool(*bias)
                );
                let mut w = weight("weight")?;
                match connections {
                    Some(table) => {
                        uses_masked = true;
                        let rows: Vec<String> = table
                            .table
                            .iter()
                            .map(|row| {
                                let bits: Vec<&str> =
                                    row.iter().map(|&b| if b { "1" } else { "0" }).collect();
                                format!("                [{}],", bits.join(", "))
                            })
                            .collect();
                        init.push(format!(
                            "self.{a} = MaskedConv2d(\n            # table `{}`: a row per \
                             input channel, a column per output channel\n            [\n{}\n            \
                             ],\n            {args},\n        )",
                            table.name,
                            rows.join("\n")
                        ));
                        let taps = kernel[0] * kernel[1];
                        for (k, v) in w.data.iter_mut().enumerate() {
                            let (o, ci) = (k / (c * taps), (k / taps) % c);
                            if !table.table[ci][o] {
                                *v = 0.0;
                            }
                        }
                    }
                    None => init.push(format!("self.{a} = nn.Conv2d({args})")),
                }
                if !even {
                    // `same` with an odd total: the extra row below, the extra column right.
                    line(format!("x = F.pad(x, ({left}, {right}, {top}, {bottom}))"));
                }
                line(format!("x = self.{a}(x)"));
                tensors.push(renamed(w, &format!("{a}.weight")));
                if *bias {
                    tensors.push(renamed(weight("bias")?, &format!("{a}.bias")));
                }
            }
            LayerKind::MaxPool {
                size,
                stride,
                ceil_mode,
            } => line(format!(
                "x = F.max_pool2d(x, {}, {}{})",
                tuple(size),
                tuple(stride),
                ceil(*ceil_mode)
            )),
            LayerKind::AvgPool {
                size,
                stride,
                ceil_mode,
            } => line(format!(
                "x = F.avg_pool2d(x, {}, {}{})",
                tuple(size),
                tuple(stride),
                ceil(*ceil_mode)
            )),
            LayerKind::Subsample { size, stride } => {
                uses_subsample = true;
                let a = attr(name);
                let c = layer.output_shape.0[0];
                init.push(format!(
                    "self.{a} = Subsample({c}, {}, {})",
                    tuple(size),
                    tuple(stride)
                ));
                line(format!("x = self.{a}(x)"));
                tensors.push(renamed(weight("weight")?, &format!("{a}.weight")));
                tensors.push(renamed(weight("bias")?, &format!("{a}.bias")));
            }
            LayerKind::Flatten => line("x = torch.flatten(x, 1)".into()),
            LayerKind::Dropout { rate } => line(format!(
                "x = F.dropout(x, {}, self.training)",
                py_f64(*rate)
            )),
            LayerKind::Activation(a) => line(activation(*a)),
            LayerKind::Add => {
                let terms: Vec<String> = layer.inputs.iter().map(|s| var(index(s))).collect();
                line(format!("x = {}", terms.join(" + ")));
            }
            LayerKind::Concat => {
                let terms: Vec<String> = layer.inputs.iter().map(|s| var(index(s))).collect();
                line(format!("x = torch.cat([{}], 1)", terms.join(", ")));
            }
            LayerKind::GlobalAvgPool => line("x = x.mean((2, 3))".into()),
            LayerKind::BatchNorm { momentum, eps } => {
                // PyTorch's momentum weighs the new batch, Keras' (nnc's) the running value.
                // PyTorch's training updates the running variance with the unbiased estimate,
                // nnc with the biased one; evaluation is the same. num_batches_tracked is
                // absent from the state dict, which PyTorch fills in on loading.
                let a = attr(name);
                let c = layer.input_shape.0.first().copied().unwrap_or(0);
                let kind = if layer.input_shape.rank() == 3 {
                    "2d"
                } else {
                    "1d"
                };
                init.push(format!(
                    "self.{a} = nn.BatchNorm{kind}({c}, eps={}, momentum={})",
                    py_f64(*eps),
                    py_f64(1.0 - momentum)
                ));
                line(format!("x = self.{a}(x)"));
                for (ours, theirs) in [
                    ("gamma", "weight"),
                    ("beta", "bias"),
                    ("running_mean", "running_mean"),
                    ("running_var", "running_var"),
                ] {
                    tensors.push(renamed(weight(ours)?, &format!("{a}.{theirs}")));
                }
            }
        }
        if kept[i + 1] {
            fwd.push(format!("{} = x", var(i + 1)));
        }
    }

    let mut src = String::new();
    let _ = writeln!(src, "{}", docstring(model, input, origin, &class));
    src += "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n";
    if uses_subsample {
        src += SUBSAMPLE;
    }
    if uses_masked {
        src += MASKED_CONV;
    }
    let _ = writeln!(src, "\n\nclass {class}(nn.Module):");
    let _ = writeln!(
        src,
        "    \"\"\"`{}`: {} layers, as the .nn file names them.\"\"\"\n",
        model.name,
        model.layers.len()
    );
    src += "    def __init__(self):\n        super().__init__()\n";
    for l in &init {
        let _ = writeln!(src, "        {l}");
    }
    src += "\n    def forward(self, x):\n";
    for l in &fwd {
        let _ = writeln!(src, "        {l}");
    }
    src += "        return x\n";
    src += &preprocess(input);
    src += &loss(model);
    Ok(PyTorchModel {
        class,
        source: src,
        tensors,
    })
}

fn renamed(t: Tensor, name: &str) -> Tensor {
    Tensor {
        name: name.into(),
        ..t
    }
}

/// `lenet5_1998` → `Lenet51998`; a name model.py defines otherwise gets `Model` appended.
fn class_name(model: &str) -> String {
    let mut c: String = model
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars.next().map_or_else(String::new, |f| {
                f.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    if c.is_empty()
        || c.starts_with(|ch: char| ch.is_ascii_digit())
        || RESERVED.contains(&c.as_str())
        || ["F", "nn", "torch", "Subsample", "MaskedConv2d"].contains(&c.as_str())
    {
        c += "Model";
    }
    c
}

fn activation(a: Activation) -> String {
    match a {
        // 1 where x > 0.
        Activation::Step => "x = (x > 0).to(x.dtype)".into(),
        Activation::Sigmoid => "x = torch.sigmoid(x)".into(),
        Activation::Tanh { scale, slope } => {
            let inner = if slope == 1.0 {
                "x".to_string()
            } else {
                format!("x * {}", py_f64(slope))
            };
            if scale == 1.0 {
                format!("x = torch.tanh({inner})")
            } else {
                format!("x = {} * torch.tanh({inner})", py_f64(scale))
            }
        }
        Activation::Relu => "x = F.relu(x)".into(),
        Activation::LeakyRelu { alpha } => format!("x = F.leaky_relu(x, {})", py_f64(alpha)),
        Activation::Elu { alpha } => format!("x = F.elu(x, {})", py_f64(alpha)),
        Activation::Softplus => "x = F.softplus(x)".into(),
        Activation::Abs => "x = torch.abs(x)".into(),
        Activation::Identity => "pass".into(),
        Activation::Softmax => "x = F.softmax(x, -1)".into(),
    }
}

/// The `preprocess` method: stored values to the model's input, as `nnc_ir::lower` does it.
fn preprocess(spec: &InputSpec) -> String {
    let stored = match spec.dtype {
        DType::U8 => "uint8 pixels",
        _ => "float32 values",
    };
    let mut s = format!(
        "\n    @staticmethod\n    def preprocess(x):\n        \"\"\"The data source's \
         preprocessing, as nnc does it: {stored} [batch, {}]\n        as stored, to the \
         model's input.\"\"\"\n",
        join(&spec.sample)
    );
    s += "        x = x.to(torch.float32)\n";
    if spec.scale != 1.0 {
        let _ = writeln!(s, "        x = x * {}", py_f64(spec.scale));
    }
    if spec.pad > 0 {
        let p = spec.pad;
        let _ = writeln!(
            s,
            "        x = F.pad(x, ({p}, {p}, {p}, {p}))  # stored zeros: the background after the shift"
        );
    }
    if spec.shift < 0.0 {
        let _ = writeln!(s, "        x = x - {}", py_f64(-spec.shift));
    } else if spec.shift > 0.0 {
        let _ = writeln!(s, "        x = x + {}", py_f64(spec.shift));
    }
    if spec.flatten {
        s += "        x = torch.flatten(x, 1)\n";
    }
    s += "        return x\n";
    s
}

/// The `loss` method: the train block's loss, mean over the batch, as nnc defines it.
fn loss(model: &Model) -> String {
    let Some(train) = &model.train else {
        return String::new();
    };
    let targets = TargetSpec::of(&train.data, model);
    let body = match (train.loss, targets) {
        (Loss::SoftmaxCrossEntropy, _) => {
            "        # softmax cross-entropy from the logits\n        return F.cross_entropy(output, target)\n".to_string()
        }
        (Loss::CrossEntropy, _) => {
            "        # the model ends in a softmax: −log of the target's probability\n        return F.nll_loss(torch.log(output), target)\n".to_string()
        }
        (Loss::Mse, TargetSpec::Classes(k)) => format!(
            "        # ½·Σ(y − t)² per sample against one-hot targets\n        t = F.one_hot(target, {k}).to(output.dtype)\n        return 0.5 * ((output - t) ** 2).sum() / output.shape[0]\n"
        ),
        (Loss::Mse, TargetSpec::Values(_)) => {
            "        # ½·Σ(y − t)² per sample\n        return 0.5 * ((output - target.reshape(output.shape)) ** 2).sum() / output.shape[0]\n".to_string()
        }
    };
    let what = match targets {
        TargetSpec::Classes(_) => "class labels (int64 [batch])",
        TargetSpec::Values(_) => "target values (float32 [batch, n])",
    };
    format!(
        "\n    @staticmethod\n    def loss(output, target):\n        \"\"\"nnc's `{}` loss, \
         the mean over the batch;\n        `target`: {what}.\"\"\"\n{body}",
        train.loss.keyword()
    )
}

fn docstring(model: &Model, input: &InputSpec, origin: &Origin<'_>, class: &str) -> String {
    let stored = match input.dtype {
        DType::U8 => "raw uint8 pixels",
        _ => "float32 values",
    };
    format!(
        "\"\"\"Model `{name}` of {file} as a PyTorch module,\nwith the weights of {weights}, \
         exported by nnc {version}.\n\n    import torch\n    from safetensors.torch import \
         load_file\n    from model import {class}\n\n    model = {class}()\n    \
         model.load_state_dict(load_file(\"model.safetensors\"))\n    model.eval()\n    \
         output = model(model.preprocess(x))  # x: {stored}, [batch, {sample}], as stored\n\n\
         `forward` takes the model's input, [batch, {model_in}] float32, and returns the\n\
         last layer's values, [batch, {out}], as nnc computes them; `preprocess` maps the data\n\
         as its source stores it to that input as nnc does; `loss` is the train block's loss.\n\
         Dense weights are Linear's [out, in] (nnc stores [in, out]); convolution weights are\n\
         [out, in, kh, kw] in both. Generated by `nnc export --pytorch`.\n\"\"\"",
        name = model.name,
        file = origin.file,
        weights = origin.weights,
        version = env!("CARGO_PKG_VERSION"),
        sample = join(&input.sample),
        model_in = join(&model.input.shape.0),
        out = join(&model.output_shape().0),
    )
}

const SUBSAMPLE: &str = r#"

class Subsample(nn.Module):
    """LeNet-1998's subsampling: per channel, weight · Σ window + bias."""

    def __init__(self, channels, size, stride):
        super().__init__()
        self.size, self.stride = size, stride
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))

    def forward(self, x):
        s = F.avg_pool2d(x, self.size, self.stride) * (self.size[0] * self.size[1])
        return s * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
"#;

const MASKED_CONV: &str = r#"

class MaskedConv2d(nn.Conv2d):
    """A convolution under a connection table (LeNet-1998's C3): the weights between
    unconnected channels are multiplied by zero, so they stay zero through training."""

    def __init__(self, table, *args, **kwargs):
        super().__init__(*args, **kwargs)
        mask = torch.tensor(table, dtype=torch.float32).t()  # [out, in]
        self.register_buffer("mask", mask[:, :, None, None], persistent=False)

    def forward(self, x):
        return self._conv_forward(x, self.weight * self.mask, self.bias)
"#;

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// A float as Python reads it back exactly (Rust's shortest round-trip form).
fn py_f64(v: f64) -> String {
    format!("{v:?}")
}

fn tuple(v: &[usize]) -> String {
    match v {
        [a] => format!("({a},)"),
        _ => format!("({})", join(v)),
    }
}

fn ceil(on: bool) -> &'static str {
    if on { ", ceil_mode=True" } else { "" }
}

fn join(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense weights are transposed to Linear's [out, in]; a layer named like a Module
    /// member gets a trailing `_`, in the module and in the state dict alike.
    #[test]
    fn state_dict_names_and_layouts_are_pytorchs() {
        let source = r#"
            model tiny_net {
                input x: f32[2]
                eval: dense(3) -> relu
                out: dense(1)
            }
            train tiny_net {
                data {
                    0 0 -> 0
                    1 1 -> 1
                }
                loss mse
                optimizer sgd
                batch 2
            }
        "#;
        let mut checked = nnc_check::check_source(source);
        assert!(
            checked.diagnostics.iter().all(|d| !d.is_error()),
            "{:?}",
            checked.diagnostics
        );
        let model = checked.models.remove(0);
        let weights: Vec<Tensor> = model
            .layers
            .iter()
            .flat_map(|l| {
                l.params.iter().map(|p| Tensor {
                    name: format!("{}.{}", l.name, p.name),
                    shape: p.shape.0.clone(),
                    data: (0..p.shape.numel()).map(|v| v as f32).collect(),
                })
            })
            .collect();
        let train = model.train.as_ref().expect("train block");
        let input = InputSpec::of(&train.data, &model).expect("inline layout");
        let origin = Origin {
            file: "t.nn",
            weights: "w",
        };
        let m = export(&model, &input, &weights, &origin).expect("exports");
        assert_eq!(m.class, "TinyNet");
        assert!(
            m.source.contains("self.eval_ = nn.Linear(2, 3, bias=True)"),
            "{}",
            m.source
        );
        assert!(
            m.source.contains("x = self.eval_(x)  # eval"),
            "{}",
            m.source
        );
        let names: Vec<&str> = m.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["eval_.weight", "eval_.bias", "out.weight", "out.bias"]
        );
        // nnc's [[0, 1, 2], [3, 4, 5]] ([in 2, out 3]) is Linear's [[0, 3], [1, 4], [2, 5]].
        assert_eq!(m.tensors[0].shape, [3, 2]);
        assert_eq!(m.tensors[0].data, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert!(
            m.source.contains("def loss(output, target)"),
            "{}",
            m.source
        );
    }
}
