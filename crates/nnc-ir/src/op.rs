//! The op set: few and orthogonal. Each op's shape rule and vector–Jacobian rule live together in
//! `ops/<family>.rs`; this module holds the enum, names and attributes (the text form).

use std::fmt;
use std::sync::Arc;

/// How many operands an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    /// `concat`: any number from this on.
    AtLeast(usize),
}

impl Arity {
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
        }
    }
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arity::Exactly(1) => write!(f, "1 operand"),
            Arity::Exactly(k) => write!(f, "{k} operands"),
            Arity::AtLeast(k) => write!(f, "at least {k} operands"),
        }
    }
}

/// Elementwise unary ops on f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    Neg,
    Exp,
    Log,
    Sqrt,
    Recip,
    Tanh,
    Sigmoid,
    Relu,
    /// 1 where x > 0, else 0.
    Step,
    Abs,
    /// −1, 0 or 1.
    Sign,
    /// ln(1 + eˣ), computed stably.
    Softplus,
}

/// Elementwise binary ops on f32, with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

/// Comparisons, with broadcasting; the result is f32 1.0 or 0.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compare {
    Gt,
    Eq,
}

/// An IR operation with its attributes. Operands are held by the instruction.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Unary(Unary),
    Binary(Binary),
    Compare(Compare),
    /// `select c, a, b`: a where c ≠ 0, else b (broadcasting).
    Select,
    /// A tensor filled with one value (any shape; `f32[]` for scalars).
    Const {
        value: f64,
    },
    /// A tensor given element by element (connection masks).
    ConstData {
        data: Arc<[f64]>,
    },
    /// Sum over `axes`, which are removed from the shape.
    ReduceSum {
        axes: Vec<usize>,
    },
    /// Maximum over `axes`, which are removed from the shape.
    ReduceMax {
        axes: Vec<usize>,
    },
    /// Index of the maximum along `axis` (first on ties), as i32; the axis is removed.
    ArgMax {
        axis: usize,
    },
    /// `[M,K]·[K,N]`, either operand optionally transposed.
    MatMul {
        ta: bool,
        tb: bool,
    },
    /// Cross-correlation: x `[B,C,H,W]`, w `[O,C,kh,kw]` → `[B,O,H',W']`.
    Conv2d {
        stride: [usize; 2],
        padding: [usize; 2],
    },
    /// Gradient of conv2d with respect to its input: (dy, w) → dx `[B,C,H,W]`.
    Conv2dGradInput {
        stride: [usize; 2],
        padding: [usize; 2],
        input: [usize; 2],
    },
    /// Gradient of conv2d with respect to its filter: (x, dy) → dw `[O,C,kh,kw]`.
    Conv2dGradFilter {
        stride: [usize; 2],
        padding: [usize; 2],
        kernel: [usize; 2],
    },
    /// Max over windows of the last two axes.
    MaxPool {
        size: [usize; 2],
        stride: [usize; 2],
    },
    /// (x, dy) → dx: dy routed to the first maximum of each window (recomputed from x).
    MaxPoolGrad {
        size: [usize; 2],
        stride: [usize; 2],
    },
    /// Sum over windows of the last two axes (average pooling and subsampling scale it).
    SumPool {
        size: [usize; 2],
        stride: [usize; 2],
    },
    /// dy → dx: each window's gradient spread over the window.
    SumPoolGrad {
        size: [usize; 2],
        stride: [usize; 2],
        input: [usize; 2],
    },
    Reshape {
        shape: Vec<usize>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    /// Zero padding: `pads[2i]` before and `pads[2i+1]` after axis i.
    Pad {
        pads: Vec<usize>,
    },
    /// `x[start..end]` on every axis.
    Slice {
        start: Vec<usize>,
        end: Vec<usize>,
    },
    /// Two or more operands side by side along `axis` (equal on every other axis), in operand
    /// order.
    Concat {
        axis: usize,
    },
    /// Numpy-style broadcast to `shape`.
    Broadcast {
        shape: Vec<usize>,
    },
    /// u8 or i32 (or f32) to f32, times `scale`.
    ToF32 {
        scale: f64,
    },
    /// i32 class indices `[B]` → f32 `[B, classes]`.
    OneHot {
        classes: usize,
    },
    /// x where x > 0, else αx. An op of its own for its derivative, taken from the result
    /// (1 where y > 0, else α, for α ≥ 0): the backward pass keeps the activation only.
    /// [`crate::passes::decompose`] writes it as primitives after differentiation.
    LeakyRelu {
        alpha: f64,
    },
    /// x where x > 0, else α(eˣ − 1); its derivative below zero is αeˣ = y + α, from the
    /// result. Decomposed like [`Op::LeakyRelu`].
    Elu {
        alpha: f64,
    },
    /// (x, γ `[C]`, β `[C]`) → `(x − mean)·γ/√(var + ε) + β` with the batch's mean and biased
    /// variance per channel (axis 1, over every other axis). An op of its own for its
    /// derivative (`ops::normalize`); decomposed like [`Op::LeakyRelu`].
    BatchNorm {
        eps: f64,
    },
    /// The operand summed over the processes of a data-parallel job (an allreduce; in one
    /// process, the operand). Where a shard's gradients become the global batch's
    /// (`crate::data_parallel`); the compiled step calls out to the job's communication here.
    AllReduceSum,
    /// Softmax over the last axis, with the maximum subtracted.
    Softmax,
    /// (probabilities `[B,K]`, labels i32 `[B]`) → mean of −ln p\[label\], f32 `[]`.
    CrossEntropy,
    /// Softmax and cross-entropy fused: (logits, labels) → mean loss.
    SoftmaxXent,
    /// (logits, labels, dloss) → (softmax(logits) − onehot(labels)) · dloss / B.
    SoftmaxXentGrad,
    /// Uniform [0, 1) numbers from a counter-based hash of (key, stream, element index):
    /// the same key gives the same numbers, in the interpreter and in compiled code. Element
    /// `i` hashes index `first + i`: a data-parallel shard starting at sample `s` takes
    /// `first = s ·` (elements per sample), and so the numbers of one process's whole batch.
    RandomUniform {
        stream: u64,
        shape: Vec<usize>,
        first: u64,
    },
}

/// An attribute value in the text form.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Int(usize),
    Float(f64),
    Bool(bool),
    Ints(Vec<usize>),
    Floats(Vec<f64>),
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attr::Int(i) => write!(f, "{i}"),
            // `{:?}` prints the shortest text that parses back to the same f64.
            Attr::Float(x) => write!(f, "{x:?}"),
            Attr::Bool(b) => write!(f, "{b}"),
            Attr::Ints(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
            Attr::Floats(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{x:?}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl Op {
    /// The op's name in the text form.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(u) => match u {
                Unary::Neg => "neg",
                Unary::Exp => "exp",
                Unary::Log => "log",
                Unary::Sqrt => "sqrt",
                Unary::Recip => "recip",
                Unary::Tanh => "tanh",
                Unary::Sigmoid => "sigmoid",
                Unary::Relu => "relu",
                Unary::Step => "step",
                Unary::Abs => "abs",
                Unary::Sign => "sign",
                Unary::Softplus => "softplus",
            },
            Op::Binary(b) => match b {
                Binary::Add => "add",
                Binary::Sub => "sub",
                Binary::Mul => "mul",
                Binary::Div => "div",
                Binary::Max => "max",
                Binary::Min => "min",
            },
            Op::Compare(Compare::Gt) => "gt",
            Op::Compare(Compare::Eq) => "eq",
            Op::Select => "select",
            Op::Const { .. } | Op::ConstData { .. } => "const",
            Op::ReduceSum { .. } => "reduce_sum",
            Op::ReduceMax { .. } => "reduce_max",
            Op::ArgMax { .. } => "argmax",
            Op::MatMul { ta, tb } => match (ta, tb) {
                (false, false) => "matmul",
                (false, true) => "matmul_nt",
                (true, false) => "matmul_tn",
                (true, true) => "matmul_tt",
            },
            Op::Conv2d { .. } => "conv2d",
            Op::Conv2dGradInput { .. } => "conv2d_grad_input",
            Op::Conv2dGradFilter { .. } => "conv2d_grad_filter",
            Op::MaxPool { .. } => "maxpool",
            Op::MaxPoolGrad { .. } => "maxpool_grad",
            Op::SumPool { .. } => "sumpool",
            Op::SumPoolGrad { .. } => "sumpool_grad",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Pad { .. } => "pad",
            Op::Slice { .. } => "slice",
            Op::Concat { .. } => "concat",
            Op::Broadcast { .. } => "broadcast",
            Op::ToF32 { .. } => "to_f32",
            Op::OneHot { .. } => "one_hot",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::Elu { .. } => "elu",
            Op::BatchNorm { .. } => "batchnorm",
            Op::AllReduceSum => "allreduce_sum",
            Op::Softmax => "softmax",
            Op::CrossEntropy => "cross_entropy",
            Op::SoftmaxXent => "softmax_xent",
            Op::SoftmaxXentGrad => "softmax_xent_grad",
            Op::RandomUniform { .. } => "random_uniform",
        }
    }

    /// The number of operands the op takes.
    pub fn arity(&self) -> Arity {
        Arity::Exactly(match self {
            Op::Concat { .. } => return Arity::AtLeast(2),
            Op::Const { .. } | Op::ConstData { .. } => 0,
            Op::Unary(_)
            | Op::ReduceSum { .. }
            | Op::ReduceMax { .. }
            | Op::ArgMax { .. }
            | Op::MaxPool { .. }
            | Op::SumPool { .. }
            | Op::SumPoolGrad { .. }
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Pad { .. }
            | Op::Slice { .. }
            | Op::Broadcast { .. }
            | Op::ToF32 { .. }
            | Op::OneHot { .. }
            | Op::LeakyRelu { .. }
            | Op::Elu { .. }
            | Op::Softmax
            | Op::AllReduceSum
            | Op::RandomUniform { .. } => 1,
            Op::Binary(_)
            | Op::Compare(_)
            | Op::MatMul { .. }
            | Op::Conv2d { .. }
            | Op::Conv2dGradInput { .. }
            | Op::Conv2dGradFilter { .. }
            | Op::MaxPoolGrad { .. }
            | Op::CrossEntropy
            | Op::SoftmaxXent => 2,
            Op::Select | Op::SoftmaxXentGrad | Op::BatchNorm { .. } => 3,
        })
    }

    /// True for ops whose result is piecewise constant in their operands (comparisons, steps,
    /// indices, random numbers): no gradient flows through them, so autodiff does not follow.
    pub fn is_piecewise_constant(&self) -> bool {
        matches!(
            self,
            Op::Compare(_)
                | Op::Unary(Unary::Step | Unary::Sign)
                | Op::ArgMax { .. }
                | Op::OneHot { .. }
                | Op::RandomUniform { .. }
        )
    }

    /// True for ops whose result depends only on their attributes.
    pub fn is_const(&self) -> bool {
        matches!(self, Op::Const { .. } | Op::ConstData { .. })
    }

    /// True for ops that exist for their derivative and that [`crate::passes::decompose`]
    /// writes as primitives: compiled code never sees them.
    pub fn is_composite(&self) -> bool {
        matches!(
            self,
            Op::LeakyRelu { .. } | Op::Elu { .. } | Op::BatchNorm { .. }
        )
    }

    /// The attributes, in the order the text form prints them.
    pub fn attrs(&self) -> Vec<(&'static str, Attr)> {
        let pair = |p: [usize; 2]| Attr::Ints(p.to_vec());
        match self {
            Op::Const { value } => vec![("value", Attr::Float(*value))],
            Op::ConstData { data } => vec![("data", Attr::Floats(data.to_vec()))],
            Op::ReduceSum { axes } | Op::ReduceMax { axes } => {
                vec![("axes", Attr::Ints(axes.clone()))]
            }
            Op::ArgMax { axis } | Op::Concat { axis } => vec![("axis", Attr::Int(*axis))],
            Op::Conv2d { stride, padding } => {
                vec![("stride", pair(*stride)), ("padding", pair(*padding))]
            }
            Op::Conv2dGradInput {
                stride,
                padding,
                input,
            } => vec![
                ("stride", pair(*stride)),
                ("padding", pair(*padding)),
                ("input", pair(*input)),
            ],
            Op::Conv2dGradFilter {
                stride,
                padding,
                kernel,
            } => vec![
                ("stride", pair(*stride)),
                ("padding", pair(*padding)),
                ("kernel", pair(*kernel)),
            ],
            Op::MaxPool { size, stride }
            | Op::MaxPoolGrad { size, stride }
            | Op::SumPool { size, stride } => {
                vec![("size", pair(*size)), ("stride", pair(*stride))]
            }
            Op::SumPoolGrad {
                size,
                stride,
                input,
            } => vec![
                ("size", pair(*size)),
                ("stride", pair(*stride)),
                ("input", pair(*input)),
            ],
            Op::Reshape { shape } | Op::Broadcast { shape } => {
                vec![("shape", Attr::Ints(shape.clone()))]
            }
            Op::Transpose { perm } => vec![("perm", Attr::Ints(perm.clone()))],
            Op::Pad { pads } => vec![("pads", Attr::Ints(pads.clone()))],
            Op::Slice { start, end } => vec![
                ("start", Attr::Ints(start.clone())),
                ("end", Attr::Ints(end.clone())),
            ],
            Op::ToF32 { scale } => vec![("scale", Attr::Float(*scale))],
            Op::LeakyRelu { alpha } | Op::Elu { alpha } => vec![("alpha", Attr::Float(*alpha))],
            Op::BatchNorm { eps } => vec![("eps", Attr::Float(*eps))],
            Op::OneHot { classes } => vec![("classes", Attr::Int(*classes))],
            Op::RandomUniform {
                stream,
                shape,
                first,
            } => {
                let mut attrs = vec![
                    ("stream", Attr::Int(*stream as usize)),
                    ("shape", Attr::Ints(shape.clone())),
                ];
                // Printed only where it is not 0: a one-process step reads as before.
                if *first != 0 {
                    attrs.push(("first", Attr::Int(*first as usize)));
                }
                attrs
            }
            _ => Vec::new(),
        }
    }

    /// Builds an op from its name and attributes, as the parser reads them.
    pub fn from_parts(name: &str, attrs: &[(String, Attr)]) -> Result<Op, String> {
        let mut used = vec![false; attrs.len()];
        let mut get = |key: &str| -> Result<&Attr, String> {
            let i = attrs
                .iter()
                .position(|(k, _)| k == key)
                .ok_or_else(|| format!("`{name}` needs the attribute `{key}`"))?;
            used[i] = true;
            Ok(&attrs[i].1)
        };
        let ints = |a: &Attr, key: &str| match a {
            Attr::Ints(v) => Ok(v.clone()),
            _ => Err(format!("`{key}` must be a list of integers")),
        };
        let int = |a: &Attr, key: &str| match a {
            Attr::Int(v) => Ok(*v),
            _ => Err(format!("`{key}` must be an integer")),
        };
        let float = |a: &Attr, key: &str| match a {
            Attr::Float(v) => Ok(*v),
            Attr::Int(v) => Ok(*v as f64),
            _ => Err(format!("`{key}` must be a number")),
        };
        let pair = |a: &Attr, key: &str| -> Result<[usize; 2], String> {
            match a {
                Attr::Ints(v) if v.len() == 2 => Ok([v[0], v[1]]),
                _ => Err(format!("`{key}` must be a pair `[a,b]`")),
            }
        };
        let unary = |u| Ok(Op::Unary(u));
        let op = match name {
            "neg" => unary(Unary::Neg),
            "exp" => unary(Unary::Exp),
            "log" => unary(Unary::Log),
            "sqrt" => unary(Unary::Sqrt),
            "recip" => unary(Unary::Recip),
            "tanh" => unary(Unary::Tanh),
            "sigmoid" => unary(Unary::Sigmoid),
            "relu" => unary(Unary::Relu),
            "step" => unary(Unary::Step),
            "abs" => unary(Unary::Abs),
            "sign" => unary(Unary::Sign),
            "softplus" => unary(Unary::Softplus),
            "add" => Ok(Op::Binary(Binary::Add)),
            "sub" => Ok(Op::Binary(Binary::Sub)),
            "mul" => Ok(Op::Binary(Binary::Mul)),
            "div" => Ok(Op::Binary(Binary::Div)),
            "max" => Ok(Op::Binary(Binary::Max)),
            "min" => Ok(Op::Binary(Binary::Min)),
            "gt" => Ok(Op::Compare(Compare::Gt)),
            "eq" => Ok(Op::Compare(Compare::Eq)),
            "select" => Ok(Op::Select),
            "const" => {
                if attrs.iter().any(|(k, _)| k == "data") {
                    match get("data")? {
                        Attr::Floats(v) => Ok(Op::ConstData {
                            data: v.clone().into(),
                        }),
                        Attr::Ints(v) => Ok(Op::ConstData {
                            data: v.iter().map(|&x| x as f64).collect::<Vec<_>>().into(),
                        }),
                        _ => Err("`data` must be a list of numbers".to_string()),
                    }
                } else {
                    Ok(Op::Const {
                        value: float(get("value")?, "value")?,
                    })
                }
            }
            "reduce_sum" => Ok(Op::ReduceSum {
                axes: ints(get("axes")?, "axes")?,
            }),
            "reduce_max" => Ok(Op::ReduceMax {
                axes: ints(get("axes")?, "axes")?,
            }),
            "argmax" => Ok(Op::ArgMax {
                axis: int(get("axis")?, "axis")?,
            }),
            "matmul" => Ok(Op::MatMul {
                ta: false,
                tb: false,
            }),
            "matmul_nt" => Ok(Op::MatMul {
                ta: false,
                tb: true,
            }),
            "matmul_tn" => Ok(Op::MatMul {
                ta: true,
                tb: false,
            }),
            "matmul_tt" => Ok(Op::MatMul { ta: true, tb: true }),
            "conv2d" => Ok(Op::Conv2d {
                stride: pair(get("stride")?, "stride")?,
                padding: pair(get("padding")?, "padding")?,
            }),
            "conv2d_grad_input" => Ok(Op::Conv2dGradInput {
                stride: pair(get("stride")?, "stride")?,
                padding: pair(get("padding")?, "padding")?,
                input: pair(get("input")?, "input")?,
            }),
            "conv2d_grad_filter" => Ok(Op::Conv2dGradFilter {
                stride: pair(get("stride")?, "stride")?,
                padding: pair(get("padding")?, "padding")?,
                kernel: pair(get("kernel")?, "kernel")?,
            }),
            "maxpool" | "maxpool_grad" | "sumpool" => {
                let size = pair(get("size")?, "size")?;
                let stride = pair(get("stride")?, "stride")?;
                Ok(match name {
                    "maxpool" => Op::MaxPool { size, stride },
                    "maxpool_grad" => Op::MaxPoolGrad { size, stride },
                    _ => Op::SumPool { size, stride },
                })
            }
            "sumpool_grad" => Ok(Op::SumPoolGrad {
                size: pair(get("size")?, "size")?,
                stride: pair(get("stride")?, "stride")?,
                input: pair(get("input")?, "input")?,
            }),
            "reshape" => Ok(Op::Reshape {
                shape: ints(get("shape")?, "shape")?,
            }),
            "broadcast" => Ok(Op::Broadcast {
                shape: ints(get("shape")?, "shape")?,
            }),
            "transpose" => Ok(Op::Transpose {
                perm: ints(get("perm")?, "perm")?,
            }),
            "pad" => Ok(Op::Pad {
                pads: ints(get("pads")?, "pads")?,
            }),
            "slice" => Ok(Op::Slice {
                start: ints(get("start")?, "start")?,
                end: ints(get("end")?, "end")?,
            }),
            "concat" => Ok(Op::Concat {
                axis: int(get("axis")?, "axis")?,
            }),
            "to_f32" => Ok(Op::ToF32 {
                scale: float(get("scale")?, "scale")?,
            }),
            "one_hot" => Ok(Op::OneHot {
                classes: int(get("classes")?, "classes")?,
            }),
            "leaky_relu" => Ok(Op::LeakyRelu {
                alpha: float(get("alpha")?, "alpha")?,
            }),
            "elu" => Ok(Op::Elu {
                alpha: float(get("alpha")?, "alpha")?,
            }),
            "batchnorm" => Ok(Op::BatchNorm {
                eps: float(get("eps")?, "eps")?,
            }),
            "allreduce_sum" => Ok(Op::AllReduceSum),
            "softmax" => Ok(Op::Softmax),
            "cross_entropy" => Ok(Op::CrossEntropy),
            "softmax_xent" => Ok(Op::SoftmaxXent),
            "softmax_xent_grad" => Ok(Op::SoftmaxXentGrad),
            "random_uniform" => Ok(Op::RandomUniform {
                stream: int(get("stream")?, "stream")? as u64,
                shape: ints(get("shape")?, "shape")?,
                first: match get("first") {
                    Ok(a) => int(a, "first")? as u64,
                    Err(_) => 0,
                },
            }),
            _ => Err(format!("unknown op `{name}`")),
        }?;
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(format!("`{name}` has no attribute `{}`", attrs[i].0));
        }
        Ok(op)
    }
}
