//! `nnc predict FILE --weights CKPT IMAGE...`: classifies images with saved weights.
//!
//! Each image is read as 8-bit grayscale, inverted when its border is bright (MNIST digits are
//! white on black), brought to the input size of the data set ([`nnc::image`]), and then
//! goes through the model's own evaluation step, which scales, pads and flattens it exactly as
//! it did the training images.

use std::path::PathBuf;

use nnc_check::{Data, Loss};
use nnc_ir::DType;
use nnc_ir::lower::TargetSpec;
use serde::Serialize;

use nnc::Predictor;
use nnc::backend::{BackendKind, BatchInputs};
use nnc::image::{self, Gray};
use nnc::trainer::predicted_class;

use super::{Outcome, Ui};

/// `nnc predict` options.
pub struct PredictCommand {
    pub file: PathBuf,
    /// The checkpoint; `None`: the run directory's.
    pub weights: Option<PathBuf>,
    pub images: Vec<PathBuf>,
    pub model: Option<String>,
    pub backend: BackendKind,
    pub json: bool,
}

/// One image's prediction.
#[derive(Serialize)]
struct Prediction {
    file: String,
    class: usize,
    /// The model's probability for `class` (its raw score for an `mse` model).
    probability: f64,
    /// Per class: probabilities (softmax of the logits for `softmax_cross_entropy`, the
    /// softmax output for `cross_entropy`, the raw outputs for `mse`).
    probabilities: Vec<f64>,
    /// The image was dark on light and was inverted.
    inverted: bool,
    /// The image was not of the input size and was framed or resized to it.
    resized: bool,
}

fn fail(message: impl std::fmt::Display) -> Outcome {
    eprintln!("error: {message}");
    Outcome::Failed
}

/// Runs `nnc predict`.
pub fn run(opts: &PredictCommand, ui: &Ui) -> Outcome {
    let project = match super::load(&opts.file, opts.model.as_deref(), true, ui) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let weights = match super::weights(opts.weights.as_deref(), &project) {
        Ok(w) => w,
        Err(outcome) => return outcome,
    };
    let Some(train) = project.model.train.as_ref() else {
        return fail("the model has no train block");
    };
    // The checkpoint is read before the data layout, which may read data files.
    let mut predictor = match Predictor::new(&project, &weights, opts.backend) {
        Ok(p) => p,
        Err(e) => return ui.report(&e),
    };
    let spec = predictor.layout().clone();
    let name = &project.model.name;
    let TargetSpec::Classes(classes) = spec.targets else {
        return fail(format!(
            "model `{name}` predicts values, not classes; `nnc predict` classifies images"
        ));
    };
    let (h, w) = match spec.input.sample[..] {
        [1, h, w] if spec.input.dtype == DType::U8 => (h, w),
        _ => {
            return fail(format!(
                "model `{name}` is trained on samples of shape {:?} ({:?}); `nnc predict` needs \
                 grayscale images ([1, H, W] of u8)",
                spec.input.sample, spec.input.dtype
            ));
        }
    };
    let mnist = matches!(train.data, Data::Mnist { .. });
    let mut pixels = Vec::with_capacity(opts.images.len() * h * w);
    let mut notes = Vec::new();
    for path in &opts.images {
        let mut img = match image::read(path) {
            Ok(i) => i,
            Err(e) => return fail(e),
        };
        let inverted = image::border_is_bright(&img);
        if inverted {
            image::invert(&mut img);
        }
        let resized = (img.width, img.height) != (w, h);
        let img: Gray = if !resized {
            img
        } else if mnist && (w, h) == (28, 28) {
            image::frame_like_mnist(&img)
        } else {
            image::resize(&img, w, h)
        };
        pixels.extend_from_slice(&img.pixels);
        notes.push((inverted, resized));
    }

    let outputs = match predictor.predict(BatchInputs::U8(&pixels)) {
        Ok(rows) => rows,
        Err(e) => return ui.report(&e),
    };
    for ((path, row), (inverted, resized)) in opts.images.iter().zip(&outputs).zip(notes) {
        let class = predicted_class(row);
        let probabilities: Vec<f64> = match train.loss {
            Loss::SoftmaxCrossEntropy => softmax(row),
            Loss::CrossEntropy | Loss::Mse => row.iter().map(|&v| f64::from(v)).collect(),
        };
        let p = Prediction {
            file: path.display().to_string(),
            class,
            probability: probabilities.get(class).copied().unwrap_or(f64::NAN),
            probabilities,
            inverted,
            resized,
        };
        if opts.json {
            println!("{}", serde_json::to_string(&p).unwrap_or_default());
            continue;
        }
        let mut notes = Vec::new();
        if p.inverted {
            notes.push("inverted: its border is bright, and MNIST digits are white on black");
        }
        if p.resized {
            notes.push(if mnist {
                "framed like MNIST: 20x20 box, centred by mass in 28x28"
            } else {
                "resized to the input size"
            });
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join("; "))
        };
        println!(
            "{}: {} (probability {:.4}){notes}",
            p.file, p.class, p.probability
        );
        if classes <= 20 {
            let all: Vec<String> = p
                .probabilities
                .iter()
                .enumerate()
                .map(|(c, v)| format!("{c}: {v:.4}"))
                .collect();
            println!("    {}", all.join("  "));
        }
    }
    Outcome::Ok
}

/// Probabilities from logits, with the maximum subtracted for stability.
fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let exp: Vec<f64> = row.iter().map(|&v| (f64::from(v) - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}
