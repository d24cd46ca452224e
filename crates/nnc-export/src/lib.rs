//! Export of checked nnc models and their weights to files other frameworks run.
//!
//! [`onnx::export`] writes an ONNX model (IR version 8, opset 13) of a model's evaluation
//! function: the data source's preprocessing as the first ops (so that it takes the stored
//! values, e.g. raw u8 pixels, as nnc does), every layer of the model in source order, and the
//! outputs `nnc eval` and `nnc predict` read. [`pytorch::export`] generates a readable
//! `torch.nn.Module` of the model and its state dict in PyTorch's names and layouts.
//! Anything the exporter cannot express exactly is an [`ExportError`], never a file that
//! computes something else.

use std::fmt;

pub mod onnx;
pub mod proto;
pub mod pytorch;

/// A parameter tensor as a checkpoint holds it: `<layer>.<weight|bias>`, nnc's layout (dense
/// `[in, out]`, convolution `[out, in, kh, kw]`), row-major f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// What a model is exported from, for the exported file's documentation.
pub struct Origin<'a> {
    /// The `.nn` file, as the user named it.
    pub file: &'a str,
    /// The checkpoint, as the user named it.
    pub weights: &'a str,
}

/// Why a model could not be exported.
#[derive(Clone, Debug, PartialEq)]
pub enum ExportError {
    /// A layer (or the model's input) has no exact equivalent in the target format.
    Unsupported { layer: String, reason: String },
    /// The weights lack a tensor the model declares.
    MissingWeight(String),
    /// A tensor of the weights has another shape than the model declares (or a data length
    /// that does not match its shape).
    WeightShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Unsupported { layer, reason } => {
                write!(f, "cannot export layer `{layer}`: {reason}")
            }
            ExportError::MissingWeight(name) => {
                write!(f, "the weights have no `{name}`, which the model declares")
            }
            ExportError::WeightShape {
                name,
                expected,
                found,
            } => write!(
                f,
                "`{name}` is {found:?} in the weights but {expected:?} in the model"
            ),
        }
    }
}

impl std::error::Error for ExportError {}
