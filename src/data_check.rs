//! What `nnc check` reads of a model's data: the headers of its files, never their pixels or
//! rows, so that the defects `nnc train` would find only after loading are diagnostics at the
//! `data` (or `test`) setting: a file that cannot be read, a CSV file without the target
//! column or with another number of features than the input, IDX images of another shape.
//! Under a classification loss, a CSV file's label column is also read through, one line at a
//! time (one cell per row parsed, nothing kept): a label that is not a class of the model is
//! what would otherwise train silently to a wrong result.
//!
//! MNIST (its shape is fixed, and `nnc train --data` may point elsewhere) and inline tables
//! (the checker sees all of them) need nothing here.

use std::path::{Path, PathBuf};

use nnc_check::{Data, Model};
use nnc_data::DataError;
use nnc_ir::DType;
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_syntax::{Diagnostic, Span};

/// What reading the headers found.
pub struct DataCheck {
    /// One error per defective source, labelled at its setting.
    pub diagnostics: Vec<Diagnostic>,
    /// How the training data enters the steps, when it is known and fits the model (for an
    /// IDX source, from its headers).
    pub input: Option<InputSpec>,
}

/// Reads the headers of the data files of `model`'s train block (`file` is the `.nn` file:
/// data paths are relative to its directory) and compares them with the model.
pub fn check(model: &Model, file: &Path) -> DataCheck {
    let mut out = DataCheck {
        diagnostics: Vec::new(),
        input: None,
    };
    let Some(train) = &model.train else {
        return out;
    };
    let base = file.parent().unwrap_or(Path::new("."));
    let sources = [
        Some((&train.data, train.data_span, true)),
        train
            .test
            .as_ref()
            .map(|t| (t, train.test_span.unwrap_or(train.data_span), false)),
    ];
    for (data, span, is_train) in sources.into_iter().flatten() {
        match source(model, data, base, span) {
            Ok(input) if is_train => out.input = input,
            Ok(_) => {}
            Err(d) => out.diagnostics.push(d),
        }
    }
    out
}

/// Checks one source; gives its input layout when known.
fn source(
    model: &Model,
    data: &Data,
    base: &Path,
    span: Span,
) -> Result<Option<InputSpec>, Diagnostic> {
    match data {
        Data::Mnist { .. } | Data::Inline { .. } => Ok(InputSpec::of(data, model)),
        Data::Idx {
            images,
            labels,
            pad,
            scale,
            shift,
            flatten,
            ..
        } => {
            let (images, labels) = (base.join(images), base.join(labels));
            let header = nnc_data::idx_pair_header(&images, &labels, None)
                .map_err(|e| data_error(e, base, span))?;
            let spec = InputSpec {
                dtype: if header.bytes { DType::U8 } else { DType::F32 },
                sample: header.sample,
                scale: *scale,
                shift: *shift,
                pad: *pad,
                flatten: *flatten,
            };
            let gives = spec.model_sample();
            if gives == model.input.shape.0 {
                // The labels (a byte a sample) against the model's classes.
                if let TargetSpec::Classes(k) = TargetSpec::of(data, model) {
                    nnc_data::idx_pair_header(&images, &labels, Some(k))
                        .map_err(|e| labels_error(e, k, span, false))?;
                }
                return Ok(Some(spec));
            }
            let how = match (spec.pad > 0, spec.flatten) {
                (true, true) => format!(", {gives:?} padded and flattened"),
                (true, false) => format!(", {gives:?} padded"),
                (false, true) => format!(", {gives:?} flattened"),
                (false, false) => String::new(),
            };
            Err(Diagnostic::error(
                "nnc::data::shape",
                format!(
                    "the images of `{}` are {:?}{how}, but the input of model `{}` is {}",
                    images.display(),
                    spec.sample,
                    model.name,
                    model.input.shape
                ),
            )
            .label(span, format!("gives {gives:?}"))
            .help(format!(
                "make the input `f32{gives:?}`, or change the data's `pad` or `flatten`"
            )))
        }
        Data::Csv { path, target } => {
            let path = base.join(path);
            let classes = match TargetSpec::of(data, model) {
                TargetSpec::Classes(k) => Some(k),
                TargetSpec::Values(_) => None,
            };
            if classes.is_some() && target.len() != 1 {
                return Err(Diagnostic::error(
                    "nnc::data::targets",
                    format!(
                        "a classifier takes one target column, the class, but this names {} ({})",
                        target.len(),
                        target.join(", ")
                    ),
                )
                .label(span, "several target columns")
                .help("name the class column alone (`target: \"label\"`), or use `loss mse` for value targets"));
            }
            let header =
                nnc_data::csv_header(&path, target).map_err(|e| data_error(e, base, span))?;
            let gives = vec![header.features.len()];
            if gives != model.input.shape.0 {
                let features = header.features.join(", ");
                return Err(Diagnostic::error(
                    "nnc::data::shape",
                    format!(
                        "`{}` has {} feature column{} ({features}), but the input of model \
                         `{}` is {}",
                        path.display(),
                        gives[0],
                        if gives[0] == 1 { "" } else { "s" },
                        model.name,
                        model.input.shape
                    ),
                )
                .label(span, format!("gives {gives:?}"))
                .help(format!(
                    "make the input `f32{gives:?}`, or name the columns that are not features in \
                     `target:`"
                )));
            }
            if let (Some(k), [label]) = (classes, target.as_slice()) {
                nnc_data::csv_check_labels(&path, label, k)
                    .map_err(|e| labels_error(e, k, span, true))?;
            }
            Ok(InputSpec::of(data, model))
        }
    }
}

/// A class label that is not a class of the model's `k`; `csv`: the labels could have been
/// values (a CSV column), not only classes (an IDX label file).
fn labels_error(e: DataError, k: usize, span: Span, csv: bool) -> Diagnostic {
    let last = k.saturating_sub(1);
    Diagnostic::error("nnc::data::labels", e.to_string())
        .label(span, format!("class labels for {k} outputs"))
        .help(if csv {
            format!(
                "a classification loss takes whole-number labels from 0 to {last}, one per \
                 output of the model; for real-valued targets use `loss mse`"
            )
        } else {
            format!(
                "the model has {k} outputs, one per class, for labels from 0 to {last}: give \
                 its last layer as many outputs as the data has classes"
            )
        })
}

/// A file that cannot be read or whose header is malformed.
fn data_error(e: DataError, base: &Path, span: Span) -> Diagnostic {
    let (code, label, help) = match &e {
        DataError::Io { .. } | DataError::MissingFile { .. } => (
            "nnc::data::missing",
            "cannot be read",
            format!(
                "paths are relative to the directory of the .nn file ({})",
                shown(base)
            ),
        ),
        DataError::Csv { .. } => (
            "nnc::data::csv",
            "read here",
            "a CSV file's first line names its columns; `target:` names those to predict, the \
             others are the features"
                .to_string(),
        ),
        _ => (
            "nnc::data::idx",
            "read here",
            "an IDX pair is images ([N, H, W], [N, C, H, W] or [N, D]) and as many u8 labels \
             ([N]), each raw or gzip-compressed"
                .to_string(),
        ),
    };
    Diagnostic::error(code, e.to_string())
        .label(span, label)
        .help(help)
}

/// A directory as messages show it: `.` rather than nothing.
fn shown(dir: &Path) -> String {
    if dir.as_os_str().is_empty() {
        ".".into()
    } else {
        PathBuf::from(dir).display().to_string()
    }
}
