//! A checked model and its weights as an ONNX model of its evaluation function.
//!
//! The graph, in order: the model's input as the data source stores it (`[batch, 1, 28, 28]`
//! u8 pixels for MNIST and IDX images, f32 values for CSV and inline tables), the source's
//! preprocessing (`Cast`, `· scale`, `Pad` with stored zeros, `+ shift`, `Flatten`: exactly
//! the first ops of `nnc_ir::lower`), each layer's nodes (`layers`), and the outputs:
//! `output`, the last layer's values (what nnc's evaluation step computes its loss and
//! accuracy from: logits under `softmax_cross_entropy`), and for a classifier whose loss
//! applies or follows a softmax, `probabilities` (what `nnc predict` prints). The batch axis
//! is symbolic (`batch`). Parameters are initializers named as in the checkpoint.

mod graph;
mod layers;

use nnc_check::{Loss, Model, Source};
use nnc_ir::DType;
use nnc_ir::lower::{InputSpec, TargetSpec};
use prost::Message;

use crate::proto::{
    GraphProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
    data_type, tensor_shape_proto, type_proto,
};
use crate::{ExportError, Origin, Tensor};
use graph::{Graph, int};

/// The ONNX IR version written (ONNX 1.10's, read by every runtime since 2021).
pub const IR_VERSION: i64 = 8;
/// The default domain's operator set: every op used exists there in the form used.
pub const OPSET: i64 = 13;
/// The name of the symbolic batch axis.
pub const BATCH: &str = "batch";

/// The ONNX model (serialized `ModelProto`) of `model`'s evaluation function with `weights`,
/// taking inputs laid out as `input` says (`nnc_ir::lower::InputSpec`: what the data source
/// stores and how nnc preprocesses it).
pub fn export(
    model: &Model,
    input: &InputSpec,
    weights: &[Tensor],
    origin: &Origin<'_>,
) -> Result<Vec<u8>, ExportError> {
    let mut g = Graph::default();
    // The graph's interface names first, so that no layer's value takes them.
    let input_name = g.fresh(&model.input.name);
    let output_name = g.fresh("output");
    let head = Head::of(model);
    let probabilities_name = head.map(|_| g.fresh("probabilities"));

    let elem_type = match input.dtype {
        DType::U8 => data_type::UINT8,
        DType::F32 => data_type::FLOAT,
        DType::I32 => {
            return Err(ExportError::Unsupported {
                layer: model.input.name.clone(),
                reason: "the data source stores i32 inputs".into(),
            });
        }
    };
    let (x, shape) = preprocess(&mut g, &input_name, input);
    if shape != model.input.shape.0 {
        return Err(ExportError::Unsupported {
            layer: model.input.name.clone(),
            reason: format!(
                "the data gives samples of shape {shape:?}, but the model's input is {}",
                model.input.shape
            ),
        });
    }

    let mut values: Vec<String> = Vec::with_capacity(model.layers.len());
    for layer in &model.layers {
        let inputs: Vec<String> = layer
            .inputs
            .iter()
            .map(|s| match *s {
                Source::Input => x.clone(),
                Source::Layer(j) => values[j].clone(),
            })
            .collect();
        let weight = |param: &str| find_weight(weights, layer, param);
        let v = layers::layer(&mut g, layer, &inputs, &weight)?;
        values.push(v);
    }
    let last = values.last().cloned().unwrap_or(x);
    // The last value under the output's name.
    g.node_into("Identity", &[&last], &output_name, Vec::new());
    if let (Some(head), Some(p)) = (head, &probabilities_name) {
        match head {
            Head::Softmax => g.node_into("Softmax", &[&output_name], p, Vec::new()),
            Head::AlreadyProbabilities => g.node_into("Identity", &[&output_name], p, Vec::new()),
        }
    }

    let mut batch_shape = vec![None];
    batch_shape.extend(input.sample.iter().map(|&d| Some(d)));
    let out_dims: Vec<Option<usize>> = std::iter::once(None)
        .chain(model.output_shape().0.iter().map(|&d| Some(d)))
        .collect();
    let mut outputs = vec![value_info(
        &output_name,
        data_type::FLOAT,
        &out_dims,
        "the last layer's values, as nnc's evaluation step computes them",
    )];
    if let Some(p) = &probabilities_name {
        outputs.push(value_info(
            p,
            data_type::FLOAT,
            &out_dims,
            "the class probabilities `nnc predict` reports",
        ));
    }
    let graph = GraphProto {
        node: g.nodes,
        name: model.name.clone(),
        initializer: g.initializers,
        doc_string: String::new(),
        input: vec![value_info(
            &input_name,
            elem_type,
            &batch_shape,
            "as the data source stores it",
        )],
        output: outputs,
        value_info: Vec::new(),
    };
    let proto = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "nnc".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 0,
        doc_string: doc_string(model, input, origin, probabilities_name.is_some()),
        graph: Some(graph),
        metadata_props: Vec::new(),
    };
    Ok(proto.encode_to_vec())
}

/// How a classifier's probabilities follow from its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    /// `softmax_cross_entropy`: the output is logits.
    Softmax,
    /// `cross_entropy`: the model ends in a softmax already.
    AlreadyProbabilities,
}

impl Head {
    /// The head of a model trained on class labels with a cross-entropy loss; none for `mse`
    /// (whose outputs `nnc predict` reports as they are) and for models without training.
    fn of(model: &Model) -> Option<Head> {
        let train = model.train.as_ref()?;
        if !matches!(TargetSpec::of(&train.data, model), TargetSpec::Classes(_)) {
            return None;
        }
        match train.loss {
            Loss::SoftmaxCrossEntropy => Some(Head::Softmax),
            Loss::CrossEntropy => Some(Head::AlreadyProbabilities),
            Loss::Mse => None,
        }
    }
}

/// The data source's scaling, padding, shift and flattening (as `nnc_ir::lower` does them:
/// the padding is with stored zeros, before the shift, so it takes the background's value).
/// Returns the value and its per-sample shape.
fn preprocess(g: &mut Graph, x: &str, spec: &InputSpec) -> (String, Vec<usize>) {
    let mut h = x.to_string();
    let mut shape = spec.sample.clone();
    if spec.dtype != DType::F32 {
        let to = i64::from(data_type::FLOAT);
        h = g.node("Cast", &[&h], "input/Cast", vec![int("to", to)]);
    }
    if spec.scale != 1.0 {
        let k = g.f32_scalar("input/scale", spec.scale);
        h = g.node("Mul", &[&h, &k], "input/Mul", Vec::new());
    }
    if spec.pad > 0 && shape.len() >= 2 {
        // Begins of every axis (batch included), then ends: the last two get `pad`.
        let rank = shape.len() + 1;
        let mut pads = vec![0i64; 2 * rank];
        for axis in [rank - 2, rank - 1] {
            pads[axis] = spec.pad as i64;
            pads[rank + axis] = spec.pad as i64;
        }
        let pads = g.i64_tensor("input/pads", &pads);
        h = g.node("Pad", &[&h, &pads], "input/Pad", Vec::new());
        let n = shape.len();
        for d in &mut shape[n - 2..] {
            *d += 2 * spec.pad;
        }
    }
    if spec.shift != 0.0 {
        let k = g.f32_scalar("input/shift", spec.shift);
        h = g.node("Add", &[&h, &k], "input/Add", Vec::new());
    }
    if spec.flatten && shape.len() > 1 {
        h = g.node("Flatten", &[&h], "input/Flatten", vec![int("axis", 1)]);
        shape = vec![shape.iter().product()];
    }
    (h, shape)
}

/// The parameter `<layer>.<param>` of `weights`, checked against the model's shape.
pub(crate) fn find_weight(
    weights: &[Tensor],
    layer: &nnc_check::Layer,
    param: &str,
) -> Result<Tensor, ExportError> {
    let name = format!("{}.{param}", layer.name);
    let expected = layer
        .params
        .iter()
        .find(|p| p.name == param)
        .map(|p| p.shape.0.clone())
        .ok_or_else(|| ExportError::MissingWeight(name.clone()))?;
    let t = weights
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ExportError::MissingWeight(name.clone()))?;
    let numel: usize = t.shape.iter().product();
    if t.shape != expected || t.data.len() != numel {
        return Err(ExportError::WeightShape {
            name,
            expected,
            found: t.shape.clone(),
        });
    }
    Ok(t.clone())
}

/// A tensor value's declaration; `None` dimensions are the batch axis.
fn value_info(name: &str, elem_type: i32, dims: &[Option<usize>], doc: &str) -> ValueInfoProto {
    use tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => Value::DimValue(*n as i64),
                None => Value::DimParam(BATCH.into()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: doc.into(),
    }
}

/// What the model takes and gives, for a reader of the file.
fn doc_string(
    model: &Model,
    input: &InputSpec,
    origin: &Origin<'_>,
    probabilities: bool,
) -> String {
    let stored = match input.dtype {
        DType::U8 => "raw u8 pixels",
        _ => "f32 values",
    };
    let mut steps = Vec::new();
    if input.dtype != DType::F32 || input.scale != 1.0 {
        steps.push(format!("multiplied by {}", input.scale));
    }
    if input.pad > 0 {
        steps.push(format!(
            "padded by {} background pixels on each side",
            input.pad
        ));
    }
    if input.shift != 0.0 {
        steps.push(format!("shifted by {}", input.shift));
    }
    if input.flatten {
        steps.push("flattened".into());
    }
    let prep = if steps.is_empty() {
        "used as they are".to_string()
    } else {
        format!("{} by the graph's first ops, as nnc does", steps.join(", "))
    };
    let mut doc = format!(
        "Model `{}` of {}, with the weights of {}, exported by nnc {} (evaluation: dropout \
         passes its input through). Input `{}`: {stored}, [batch, {}], as the data source \
         stores them; they are {prep}. Output `output`: the last layer's values, [batch, {}].",
        model.name,
        origin.file,
        origin.weights,
        env!("CARGO_PKG_VERSION"),
        model.input.name,
        join(&input.sample),
        join(&model.output_shape().0),
    );
    if probabilities {
        doc += " Output `probabilities`: the class probabilities nnc predict reports.";
    }
    doc
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

    fn mlp() -> Model {
        let source = r#"
            model m {
                input x: f32[1, 30, 30]
                flatten -> dense(3) -> relu
                out: dense(10)
            }
            train m {
                data mnist(scale: 1/255, pad: 1, shift: -0.5)
                loss softmax_cross_entropy
                optimizer sgd
                batch 4
            }
        "#;
        let mut checked = nnc_check::check_source(source);
        assert!(
            checked.diagnostics.iter().all(|d| !d.is_error()),
            "{:?}",
            checked.diagnostics
        );
        checked.models.remove(0)
    }

    fn weights(model: &Model) -> Vec<Tensor> {
        model
            .layers
            .iter()
            .flat_map(|l| {
                l.params.iter().map(|p| Tensor {
                    name: format!("{}.{}", l.name, p.name),
                    shape: p.shape.0.clone(),
                    data: vec![0.5; p.shape.numel() as usize],
                })
            })
            .collect()
    }

    fn origin() -> Origin<'static> {
        Origin {
            file: "m.nn",
            weights: "w.safetensors",
        }
    }

    fn spec(model: &Model) -> InputSpec {
        let train = model.train.as_ref().expect("a train block");
        InputSpec::of(&train.data, model).expect("MNIST's layout")
    }

    /// The file decodes as the ModelProto it was built as: IR 8, opset 13, u8 input with a
    /// symbolic batch, the preprocessing first, both outputs, the weights as initializers.
    #[test]
    fn writes_a_model_proto_with_raw_pixels_in_and_named_outputs() {
        let model = mlp();
        let bytes = export(&model, &spec(&model), &weights(&model), &origin()).expect("exports");
        let proto = ModelProto::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(proto.ir_version, 8);
        assert_eq!(proto.opset_import[0].version, 13);
        assert!(
            proto.doc_string.contains("raw u8 pixels"),
            "{}",
            proto.doc_string
        );
        let graph = proto.graph.expect("a graph");
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "Cast", "Mul", "Pad", "Add", "Flatten", "Gemm", "Relu", "Gemm", "Identity",
                "Softmax"
            ]
        );
        let input = &graph.input[0];
        let Some(type_proto::Value::TensorType(t)) =
            input.r#type.as_ref().and_then(|t| t.value.clone())
        else {
            panic!("a tensor input")
        };
        assert_eq!(t.elem_type, data_type::UINT8);
        let dims = t.shape.expect("a shape").dim;
        assert_eq!(
            dims[0].value,
            Some(tensor_shape_proto::dimension::Value::DimParam(
                "batch".into()
            ))
        );
        let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outputs, ["output", "probabilities"]);
        let w = graph
            .initializer
            .iter()
            .find(|t| t.name == "out.weight")
            .expect("the output layer's weight");
        assert_eq!(w.dims, [3, 10]);
        assert_eq!(w.raw_data.len(), 30 * 4);
    }

    /// Weights that do not fit are an error naming the tensor, not a file.
    #[test]
    fn missing_or_misshapen_weights_are_refused() {
        let model = mlp();
        let mut w = weights(&model);
        w.retain(|t| t.name != "out.bias");
        assert_eq!(
            export(&model, &spec(&model), &w, &origin()),
            Err(ExportError::MissingWeight("out.bias".into()))
        );
        let mut w = weights(&model);
        w[0].shape = vec![3, 901];
        let err = export(&model, &spec(&model), &w, &origin()).expect_err("refused");
        assert!(matches!(err, ExportError::WeightShape { .. }), "{err}");
        // An input layout the model does not take.
        let mut other = spec(&model);
        other.pad = 2;
        let err = export(&model, &other, &weights(&model), &origin()).expect_err("refused");
        assert!(err.to_string().contains("samples of shape"), "{err}");
    }
}
