//! Each layer kind as ONNX nodes: the one place that says what a layer is in ONNX.
//!
//! The nodes compute what `nnc_ir::lower` makes of the layer for evaluation. Windows: nnc's
//! round down and its `same` padding is uneven for strides (the odd row below, the odd column
//! at the right, as Keras has it), which ONNX's explicit `pads` express; the rows no window
//! reads are not read by ONNX's floor-rounded windows either. Ceil mode's partial windows are
//! ONNX pads past the end, which `MaxPool` excludes from the maximum and `AveragePool` with
//! `count_include_pad: 0` from the count, as nnc does.

use nnc_check::{Activation, Layer, LayerKind};

use super::graph::{Graph, float, int, ints};
use crate::{ExportError, Tensor};

/// Appends the nodes of `layer`, reading the values named `inputs` (one per
/// [`Layer::inputs`]), and returns the name of the value it outputs. `weight` finds a
/// parameter of the layer (`weight`, `bias`) already checked against the model's shape.
pub(crate) fn layer(
    g: &mut Graph,
    layer: &Layer,
    inputs: &[String],
    weight: &dyn Fn(&str) -> Result<Tensor, ExportError>,
) -> Result<String, ExportError> {
    let name = layer.name.as_str();
    let x = inputs[0].as_str();
    let step = |op: &str| format!("{name}/{op}");
    let unsupported = |reason: String| ExportError::Unsupported {
        layer: name.into(),
        reason,
    };
    Ok(match &layer.kind {
        LayerKind::Dense { bias, .. } => {
            // nnc's dense weight is [in, out]: Gemm's B without transposition.
            if layer.input_shape.rank() != 1 {
                return Err(unsupported(format!(
                    "dense on an input of shape {} (ONNX's Gemm takes vectors)",
                    layer.input_shape
                )));
            }
            let w = weight("weight")?;
            let w = g.f32_tensor(&w.name, &w.shape, &w.data);
            let mut args = vec![x.to_string(), w];
            if *bias {
                let b = weight("bias")?;
                args.push(g.f32_tensor(&b.name, &b.shape, &b.data));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            g.node("Gemm", &args, &step("Gemm"), Vec::new())
        }
        LayerKind::Conv2d {
            kernel,
            stride,
            bias,
            connections,
            ..
        } => {
            let mut w = weight("weight")?;
            if let Some(table) = connections {
                // LeNet-1998's table: the unconnected weights are multiplied by zero in nnc
                // (they stay zero through training); the initializer holds weight × mask.
                // `w` is [out, in, kh, kw]; `table[in][out]` says whether they connect.
                let taps = kernel[0] * kernel[1];
                let channels = w.shape[1];
                for (i, v) in w.data.iter_mut().enumerate() {
                    let (o, c) = (i / (channels * taps), (i / taps) % channels);
                    if !table.table[c][o] {
                        *v = 0.0;
                    }
                }
            }
            let sides = layer
                .kind
                .window()
                .map_or([[0, 0], [0, 0]], |win| win.padding);
            let wn = g.f32_tensor(&w.name, &w.shape, &w.data);
            let mut args = vec![x.to_string(), wn];
            if *bias {
                let b = weight("bias")?;
                args.push(g.f32_tensor(&b.name, &b.shape, &b.data));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let attrs = vec![
                ints("kernel_shape", kernel),
                ints("strides", stride),
                ints(
                    "pads",
                    &[sides[0][0], sides[1][0], sides[0][1], sides[1][1]],
                ),
            ];
            g.node("Conv", &args, &step("Conv"), attrs)
        }
        LayerKind::MaxPool { size, stride, .. } => {
            let over = overhang(layer);
            let attrs = vec![
                ints("kernel_shape", size),
                ints("strides", stride),
                ints("pads", &[0, 0, over[0], over[1]]),
            ];
            g.node("MaxPool", &[x], &step("MaxPool"), attrs)
        }
        LayerKind::AvgPool { size, stride, .. } => {
            let over = overhang(layer);
            let attrs = vec![
                ints("kernel_shape", size),
                ints("strides", stride),
                ints("pads", &[0, 0, over[0], over[1]]),
                int("count_include_pad", 0),
            ];
            g.node("AveragePool", &[x], &step("AveragePool"), attrs)
        }
        LayerKind::Subsample { size, stride } => {
            // coefficient · Σwindow + bias per channel; the sum is the window's mean times its
            // size, and the per-channel tensors are stored as [C, 1, 1] to broadcast over maps.
            let c = layer.output_shape.0[0];
            let attrs = vec![ints("kernel_shape", size), ints("strides", stride)];
            let mean = g.node("AveragePool", &[x], &step("AveragePool"), attrs);
            let k = g.f32_scalar(&step("window"), (size[0] * size[1]) as f64);
            let sum = g.node("Mul", &[&mean, &k], &step("sum"), Vec::new());
            let w = weight("weight")?;
            let w = g.f32_tensor(&w.name, &[c, 1, 1], &w.data);
            let scaled = g.node("Mul", &[&sum, &w], &step("Mul"), Vec::new());
            let b = weight("bias")?;
            let b = g.f32_tensor(&b.name, &[c, 1, 1], &b.data);
            g.node("Add", &[&scaled, &b], &step("Add"), Vec::new())
        }
        LayerKind::Flatten => g.node("Flatten", &[x], &step("Flatten"), vec![int("axis", 1)]),
        // Evaluation: dropout passes its input through.
        LayerKind::Dropout { .. } => x.to_string(),
        LayerKind::Activation(a) => activation(g, *a, x, name),
        LayerKind::Add => {
            // Left to right, as nnc sums.
            let mut sum = x.to_string();
            for v in &inputs[1..] {
                sum = g.node("Add", &[&sum, v], &step("Add"), Vec::new());
            }
            sum
        }
        LayerKind::Concat => {
            let args: Vec<&str> = inputs.iter().map(String::as_str).collect();
            g.node("Concat", &args, &step("Concat"), vec![int("axis", 1)])
        }
        LayerKind::GlobalAvgPool => {
            let mean = g.node(
                "GlobalAveragePool",
                &[x],
                &step("GlobalAveragePool"),
                Vec::new(),
            );
            g.node("Flatten", &[&mean], &step("Flatten"), vec![int("axis", 1)])
        }
        LayerKind::BatchNorm { eps, .. } => {
            // Evaluation: the running statistics, as nnc's eval step reads them. ONNX's
            // BatchNormalization takes [N, C, ...] and [N, C] alike.
            let mut args = vec![x.to_string()];
            for param in ["gamma", "beta", "running_mean", "running_var"] {
                let t = weight(param)?;
                args.push(g.f32_tensor(&t.name, &t.shape, &t.data));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            g.node(
                "BatchNormalization",
                &args,
                &step("BatchNormalization"),
                vec![float("epsilon", *eps)],
            )
        }
    })
}

/// An activation's nodes, as `nnc_ir::lower` defines it.
fn activation(g: &mut Graph, a: Activation, x: &str, name: &str) -> String {
    let step = |op: &str| format!("{name}/{op}");
    let unary = |g: &mut Graph, op: &str, attrs| g.node(op, &[x], &step(op), attrs);
    match a {
        // 1 where x > 0, else 0.
        Activation::Step => {
            let zero = g.f32_scalar(&step("zero"), 0.0);
            let pos = g.node("Greater", &[x, &zero], &step("Greater"), Vec::new());
            g.node(
                "Cast",
                &[&pos],
                &step("Cast"),
                vec![int("to", i64::from(crate::proto::data_type::FLOAT))],
            )
        }
        Activation::Sigmoid => unary(g, "Sigmoid", Vec::new()),
        // scale · tanh(slope · x)
        Activation::Tanh { scale, slope } => {
            let mut v = x.to_string();
            if slope != 1.0 {
                let k = g.f32_scalar(&step("slope"), slope);
                v = g.node("Mul", &[&v, &k], &step("Mul"), Vec::new());
            }
            v = g.node("Tanh", &[&v], &step("Tanh"), Vec::new());
            if scale != 1.0 {
                let k = g.f32_scalar(&step("scale"), scale);
                v = g.node("Mul", &[&v, &k], &step("Mul"), Vec::new());
            }
            v
        }
        Activation::Relu => unary(g, "Relu", Vec::new()),
        // x where x > 0, α·x elsewhere (ONNX: where x < 0; both give 0 at 0).
        Activation::LeakyRelu { alpha } => unary(g, "LeakyRelu", vec![float("alpha", alpha)]),
        // x where x > 0, α(eˣ − 1) elsewhere (ONNX: where x < 0; both give 0 at 0).
        Activation::Elu { alpha } => unary(g, "Elu", vec![float("alpha", alpha)]),
        Activation::Softplus => unary(g, "Softplus", Vec::new()),
        Activation::Abs => unary(g, "Abs", Vec::new()),
        Activation::Identity => x.to_string(),
        // Over the last axis (opset 13's default axis, -1).
        Activation::Softmax => unary(g, "Softmax", Vec::new()),
    }
}

/// In ceil mode, the rows and columns the last windows read past the input (what ONNX pads
/// at the bottom and right); `[0, 0]` otherwise.
fn overhang(layer: &Layer) -> [usize; 2] {
    let input = match layer.input_shape.0[..] {
        [_, h, w] => [h, w],
        _ => return [0, 0],
    };
    layer
        .kind
        .window()
        .and_then(|w| w.overhang(input))
        .unwrap_or([0, 0])
}
