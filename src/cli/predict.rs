//! `nnc predict FILE [--weights CKPT] INPUT...`: predicts with saved weights, from images (files
//! or directories of them, the answers streamed) for a model trained on images, from rows of
//! numbers (CSV files or standard input) otherwise.
//!
//! Each image is read as 8-bit grayscale, inverted when its border is bright (MNIST digits are
//! white on black), brought to the input size of the data set ([`nnc::image`]), and then
//! goes through the model's own evaluation step, which scales, pads and flattens it exactly as
//! it did the training images.

use std::io::Write;
use std::path::PathBuf;

use nnc::project::LoadedSpec;
use nnc_check::{Data, Loss};
use nnc_ir::DType;
use nnc_ir::lower::TargetSpec;
use serde::Serialize;

use nnc::Predictor;
use nnc::backend::{BackendKind, BatchInputs};
use nnc::image::{self, Gray};
use nnc::trainer::predicted_class;

use super::{Outcome, Ui, fail};

/// `nnc predict` options.
pub struct PredictCommand {
    pub file: PathBuf,
    /// The checkpoint; `None`: the run directory's.
    pub weights: Option<PathBuf>,
    /// Images, or CSV files of rows (`-`: standard input) for a model of vectors.
    pub inputs: Vec<PathBuf>,
    pub model: Option<String>,
    pub backend: BackendKind,
    /// The JIT's threads (default: the available parallelism).
    pub threads: Option<usize>,
    pub json: bool,
    /// Use weights trained from another version of the model's text.
    pub allow_changed_model: bool,
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

/// Runs `nnc predict`.
pub fn run(opts: &PredictCommand, ui: &Ui) -> Outcome {
    let (project, weights) = match super::load_trained(
        &opts.file,
        opts.model.as_deref(),
        opts.weights.as_deref(),
        ui,
    ) {
        Ok(loaded) => loaded,
        Err(outcome) => return outcome,
    };
    let Some(train) = project.model.train.as_ref() else {
        return fail("the model has no train block");
    };
    // The checkpoint is read before the data layout, which may read data files.
    let mut checkpoint = match nnc::Checkpoint::load(&weights) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if opts.allow_changed_model {
        checkpoint.adopt_model(&project);
    }
    let threads = opts.threads.unwrap_or_else(nnc::default_threads);
    let predictor =
        Predictor::with_checkpoint(&project, &checkpoint, &weights, opts.backend, threads);
    let mut predictor = match predictor {
        Ok(p) => p,
        Err(e) => return ui.report(&e),
    };
    let spec = predictor.layout().clone();
    let is_image = matches!(spec.input.sample[..], [1, _, _]) && spec.input.dtype == DType::U8;
    if is_image {
        images(opts, &project, train, &spec, &mut predictor, ui)
    } else {
        rows(opts, train, &spec, &mut predictor, ui)
    }
}

/// Classifies the image files `opts.inputs` with a model trained on grayscale images.
fn images(
    opts: &PredictCommand,
    project: &nnc::Project,
    train: &nnc_check::Train,
    spec: &LoadedSpec,
    predictor: &mut Predictor,
    ui: &Ui,
) -> Outcome {
    let name = &project.model.name;
    let TargetSpec::Classes(classes) = spec.targets else {
        return fail(format!(
            "model `{name}` predicts values from images; `nnc predict` classifies images"
        ));
    };
    let [1, h, w] = spec.input.sample[..] else {
        return fail("the model's input is not a grayscale image");
    };
    let files = match image_files(&opts.inputs) {
        Ok(files) => files,
        Err(e) => return fail(e),
    };
    if files.is_empty() {
        return fail(format!(
            "model `{name}` reads images: give the PNG or PGM files to classify, or a directory \
             of them"
        ));
    }
    // Images are read as light on dark, as MNIST-style data is: a bright-bordered one is
    // inverted. MNIST's digits are also framed in 20x20 and centred by mass, and a digit of
    // another size is brought to that form; other image data is only resized.
    let mnist = matches!(train.data, Data::Mnist { .. });
    // Answers stream: a chunk of images is read, predicted and printed before the next is
    // read, so a large directory neither waits nor holds every image in memory.
    for chunk in files.chunks(STREAM_CHUNK) {
        let mut pixels = Vec::with_capacity(chunk.len() * h * w);
        let mut notes = Vec::new();
        for path in chunk {
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
        let mut out = std::io::stdout().lock();
        for ((path, row), (inverted, resized)) in chunk.iter().zip(&outputs).zip(notes) {
            let class = predicted_class(row);
            let probabilities = probabilities(train.loss, row);
            let p = Prediction {
                file: path.display().to_string(),
                class,
                probability: probabilities.get(class).copied().unwrap_or(f64::NAN),
                probabilities,
                inverted,
                resized,
            };
            let text = if opts.json {
                serde_json::to_string(&p).unwrap_or_default()
            } else {
                describe(&p, mnist, classes)
            };
            // A closed pipe (`nnc predict dir | head`) ends the stream quietly.
            if writeln!(out, "{text}").is_err() {
                return Outcome::Ok;
            }
        }
        if out.flush().is_err() {
            return Outcome::Ok;
        }
    }
    Outcome::Ok
}

/// Images predicted and printed at a time.
const STREAM_CHUNK: usize = 256;

/// The image files to classify: each input that is a directory stands for its PNG and PGM
/// files (by extension, in name order, not recursive); other inputs are taken as given.
fn image_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            files.push(input.clone());
            continue;
        }
        let entries = std::fs::read_dir(input)
            .map_err(|e| format!("cannot read directory {}: {e}", input.display()))?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot read directory {}: {e}", input.display()))?
                .path();
            let is_image = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["png", "pgm"].contains(&e.to_ascii_lowercase().as_str()));
            if is_image && path.is_file() {
                found.push(path);
            }
        }
        if found.is_empty() {
            return Err(format!(
                "directory {} holds no PNG or PGM images",
                input.display()
            ));
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// One image's prediction as text: the class and its probability, what was done to the
/// image, and for up to 20 classes every probability.
fn describe(p: &Prediction, mnist: bool, classes: usize) -> String {
    let mut notes = Vec::new();
    if p.inverted {
        notes.push(if mnist {
            "inverted: its border is bright, and MNIST digits are white on black"
        } else {
            "inverted: its border is bright, and images are read as light on dark"
        });
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
    let mut text = format!(
        "{}: {} (probability {:.4}){notes}",
        p.file, p.class, p.probability
    );
    if classes <= 20 {
        text.push_str(&format!("\n    {}", per_class(&p.probabilities)));
    }
    text
}

/// One row's prediction: a class (with its probabilities) or values.
#[derive(Serialize)]
struct RowPrediction {
    /// The file (`-` for standard input) and line the row came from.
    source: String,
    line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probability: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    probabilities: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    values: Vec<f64>,
}

/// Predicts rows of numbers (CSV files, or standard input for `-` or no file) with a model
/// whose input is not an image: each row holds the input's values, in the training data's
/// column order; a header row is allowed, and the target columns it names are skipped.
fn rows(
    opts: &PredictCommand,
    train: &nnc_check::Train,
    spec: &LoadedSpec,
    predictor: &mut Predictor,
    ui: &Ui,
) -> Outcome {
    let targets: Vec<String> = match &train.data {
        Data::Csv { target, .. } => target.clone(),
        _ => Vec::new(),
    };
    let width: usize = spec.input.sample.iter().product();
    let sources: Vec<PathBuf> = if opts.inputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        opts.inputs.clone()
    };
    let mut values: Vec<f32> = Vec::new();
    let mut origins: Vec<(String, usize)> = Vec::new();
    for source in &sources {
        let shown = source.display().to_string();
        let text = if shown == "-" {
            let mut text = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                return fail(format!("cannot read standard input: {e}"));
            }
            text
        } else {
            match nnc::files::read_limited(source, 1 << 30, "a file of rows") {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => return fail(e),
            }
        };
        match parse_rows(&text, &shown, width, &targets) {
            Ok(parsed) => {
                for (line, row) in parsed {
                    values.extend(row);
                    origins.push((shown.clone(), line));
                }
            }
            Err(e) => return fail(e),
        }
    }
    if origins.is_empty() {
        return fail("no rows to predict: give a CSV file of the model's inputs, or rows on stdin");
    }
    let input = match spec.input.dtype {
        DType::F32 => BatchInputs::F32(&values),
        _ => {
            return fail(format!(
                "the model reads {:?} samples, which `nnc predict` cannot give as rows",
                spec.input.dtype
            ));
        }
    };
    let outputs = match predictor.predict(input) {
        Ok(rows) => rows,
        Err(e) => return ui.report(&e),
    };
    for ((source, line), row) in origins.into_iter().zip(&outputs) {
        let p = match spec.targets {
            TargetSpec::Classes(_) => {
                let class = predicted_class(row);
                let probabilities = probabilities(train.loss, row);
                RowPrediction {
                    source,
                    line,
                    class: Some(class),
                    probability: probabilities.get(class).copied(),
                    probabilities,
                    values: Vec::new(),
                }
            }
            TargetSpec::Values(_) => RowPrediction {
                source,
                line,
                class: None,
                probability: None,
                probabilities: Vec::new(),
                values: row.iter().map(|&v| f64::from(v)).collect(),
            },
        };
        if opts.json {
            println!("{}", serde_json::to_string(&p).unwrap_or_default());
        } else if let Some(class) = p.class {
            println!(
                "{}:{}: {class} (probability {:.4})    {}",
                p.source,
                p.line,
                p.probability.unwrap_or(f64::NAN),
                per_class(&p.probabilities)
            );
        } else {
            let values: Vec<String> = p.values.iter().map(|v| format!("{v:.6}")).collect();
            println!("{}:{}: {}", p.source, p.line, values.join(" "));
        }
    }
    Outcome::Ok
}

/// The rows of `text` (numbers separated by commas or whitespace; blank lines and `#` comments
/// skipped), each with its 1-based line number. A first row that is not all numbers is a header:
/// the columns it names in `targets` are dropped from every row.
fn parse_rows(
    text: &str,
    shown: &str,
    width: usize,
    targets: &[String],
) -> Result<Vec<(usize, Vec<f32>)>, String> {
    let mut rows = Vec::new();
    let mut skip: Vec<usize> = Vec::new();
    let mut first = true;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = if line.contains(',') {
            line.split(',').map(str::trim).collect()
        } else {
            line.split_whitespace().collect()
        };
        let header = first && cells.iter().any(|c| c.parse::<f32>().is_err());
        first = false;
        if header {
            skip = cells
                .iter()
                .enumerate()
                .filter(|(_, c)| targets.iter().any(|t| t == c.trim_matches('"')))
                .map(|(k, _)| k)
                .collect();
            continue;
        }
        let mut row = Vec::with_capacity(width);
        for (k, cell) in cells.iter().enumerate() {
            if skip.contains(&k) {
                continue;
            }
            match cell.parse::<f32>() {
                Ok(v) if v.is_finite() => row.push(v),
                _ => {
                    return Err(format!(
                        "{shown}:{}: column {} is `{cell}`, not a number",
                        i + 1,
                        k + 1
                    ));
                }
            }
        }
        if row.len() != width {
            return Err(format!(
                "{shown}:{}: {} values, but the model's input takes {width}",
                i + 1,
                row.len()
            ));
        }
        rows.push((i + 1, row));
    }
    Ok(rows)
}

/// `0: 0.0012  1: 0.9988`.
fn per_class(probabilities: &[f64]) -> String {
    probabilities
        .iter()
        .enumerate()
        .map(|(c, v)| format!("{c}: {v:.4}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Per class: probabilities (softmax of the logits for `softmax_cross_entropy`, the softmax
/// output for `cross_entropy`, the raw outputs for `mse`).
fn probabilities(loss: Loss, row: &[f32]) -> Vec<f64> {
    match loss {
        Loss::SoftmaxCrossEntropy => softmax(row),
        Loss::CrossEntropy | Loss::Mse => row.iter().map(|&v| f64::from(v)).collect(),
    }
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
