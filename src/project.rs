//! A model ready to run: its checked form and its data, found the way a user expects (paths in
//! a `.nn` file are relative to that file; MNIST comes from the project's `data/mnist/` unless
//! `--data` says otherwise).

use std::path::{Path, PathBuf};

use nnc_check::{Data, Model};
use nnc_data::{Dataset, Inputs, Split, Targets};
use nnc_ir::DType;
use nnc_ir::lower::{InputSpec, TargetSpec};
use sha2::{Digest, Sha256};

use crate::error::{Diagnostics, Error};
use crate::source::{self, Source};

/// A checked model, the file it came from and that file's text.
pub struct Project {
    /// The `.nn` file; data paths in it are relative to its directory.
    pub path: PathBuf,
    /// The file's text, hashed into checkpoints and copied into run directories.
    pub source: String,
    /// The model, checked: every later stage may assume consistent names and shapes.
    pub model: Model,
    /// The checker's warnings about the file (no errors: a file with errors is no project).
    pub warnings: Diagnostics,
}

/// Every model of a `.nn` file that checked without error, and the file's warnings.
pub struct CheckedFile {
    /// The file's text.
    pub source: String,
    /// The models, in source order.
    pub models: Vec<Model>,
    /// The warnings (diagnostics that are not errors).
    pub warnings: Diagnostics,
}

/// Reads and checks a `.nn` file. A file with errors is [`Error::Invalid`], with every
/// diagnostic (warnings included) as data; an unreadable one is [`Error::Io`].
pub fn check_file(file: &Path) -> Result<CheckedFile, Error> {
    let name = file.display().to_string();
    match source::read(file).map_err(Error::Io)? {
        Source::Text(text) => check_text(text, name),
        Source::NotText(diag, lossy) => Err(Error::Invalid(Diagnostics {
            name,
            text: lossy,
            diagnostics: vec![diag],
        })),
    }
}

fn check_text(text: String, name: String) -> Result<CheckedFile, Error> {
    let checked = nnc_check::check_source(&text);
    let diagnostics = Diagnostics {
        name,
        text,
        diagnostics: checked.diagnostics,
    };
    if diagnostics.has_errors() {
        return Err(Error::Invalid(diagnostics));
    }
    Ok(CheckedFile {
        source: diagnostics.text.clone(),
        models: checked.models,
        warnings: diagnostics,
    })
}

impl Project {
    /// Reads and checks `file` and picks the model to work on: `name`, or the file's only
    /// model (its only one with a train block when `need_train`).
    pub fn load(file: &Path, name: Option<&str>, need_train: bool) -> Result<Project, Error> {
        let checked = check_file(file)?;
        Project::pick(checked, file.to_path_buf(), name, need_train)
    }

    /// Checks `.nn` source text held in memory and picks a model with a train block, as
    /// [`Project::load`] does. `path` names the text in diagnostics and anchors relative data
    /// paths; `name` picks a model when the text has several.
    pub fn from_source(
        source: &str,
        path: impl Into<PathBuf>,
        name: Option<&str>,
    ) -> Result<Project, Error> {
        let path = path.into();
        let checked = check_text(source.to_string(), path.display().to_string())?;
        Project::pick(checked, path, name, true)
    }

    fn pick(
        checked: CheckedFile,
        path: PathBuf,
        name: Option<&str>,
        need_train: bool,
    ) -> Result<Project, Error> {
        let model = pick(&checked.models, &path, name, need_train)?.clone();
        Ok(Project {
            path,
            source: checked.source,
            model,
            warnings: checked.warnings,
        })
    }

    /// The SHA-256 of the source text, in hex: checkpoints record it, so that weights are never
    /// loaded into a model they were not trained for.
    pub fn source_hash(&self) -> String {
        text_hash(&self.source)
    }

    /// The SHA-256 of what the model means to its weights, in hex: its input, every layer's
    /// name, kind and arguments, output shape and parameter shapes, the loss, and how the data
    /// is scaled, shifted and padded. Comments, layout, spans, initialisers and the optimizer
    /// do not enter it: an edited comment leaves saved weights usable.
    pub fn meaning_hash(&self) -> String {
        use std::fmt::Write;
        let m = &self.model;
        let mut text = format!("input {} {:?}\n", m.input.name, m.input.shape);
        for l in &m.layers {
            let _ = write!(text, "{} {:?} -> {:?}", l.name, l.kind, l.output_shape);
            for p in &l.params {
                let _ = write!(text, " {}{:?}", p.name, p.shape);
            }
            text.push('\n');
        }
        if let Some(t) = &m.train {
            let _ = writeln!(text, "loss {:?}", t.loss);
            if let Some((scale, shift, pad, flatten)) = image_scaling(&t.data) {
                let _ = writeln!(text, "data {pad} {scale} {shift} {flatten}");
            }
        }
        text_hash(&text)
    }
}

/// The SHA-256 of `.nn` source text, in hex (see [`Project::source_hash`]).
pub fn text_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The model called `name`, or the only one (with a train block when `need_train`).
fn pick<'a>(
    models: &'a [Model],
    file: &Path,
    name: Option<&str>,
    need_train: bool,
) -> Result<&'a Model, Error> {
    let pick = match name {
        Some(n) => models.iter().find(|m| m.name == n).ok_or_else(|| {
            let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
            Error::Model(format!(
                "`{}` has no model `{n}`; it has {}",
                file.display(),
                names.join(", ")
            ))
        }),
        None => {
            let candidates: Vec<&Model> = models
                .iter()
                .filter(|m| !need_train || m.train.is_some())
                .collect();
            match candidates.as_slice() {
                [one] => Ok(*one),
                [] => Err(Error::Model(format!(
                    "`{}` has no model with a train block",
                    file.display()
                ))),
                many => Err(Error::Model(format!(
                    "`{}` has several models ({}); choose one with --model",
                    file.display(),
                    many.iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
    }?;
    if need_train && pick.train.is_none() {
        return Err(Error::NoTrainBlock(format!(
            "model `{}` has no train block",
            pick.name
        )));
    }
    Ok(pick)
}

/// The training, validation and test data of a model, and how they enter its step functions.
pub struct LoadedData {
    /// The training samples (less the validation set, once held out).
    pub train: Dataset,
    /// Held out of the training data by [`LoadedData::hold_out`] (the train block's
    /// `validation`).
    pub val: Option<Dataset>,
    /// The test samples (the training samples for a source without a test split).
    pub test: Dataset,
    /// How samples enter the step: element type, scale, shift, padding, flattening.
    pub input: InputSpec,
    /// What the targets are: classes (and how many outputs) or values (and their width).
    pub targets: TargetSpec,
}

/// Where MNIST is: `--data`, then `data/mnist` in the working directory, next to the model's
/// project, or in the source tree nnc was built from.
fn mnist_dir(project: &Project, data_dir: Option<&Path>) -> PathBuf {
    if let Some(d) = data_dir {
        return d.to_path_buf();
    }
    let near_file = project.path.parent().map(|p| p.join("../data/mnist"));
    let candidates = [
        Some(PathBuf::from("data/mnist")),
        near_file,
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/mnist"
        ))),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from("data/mnist"))
}

/// Reads a data source with its targets as the model's steps take them (`targets`, from
/// [`TargetSpec::of`]): class labels are checked to be classes of the model here, where the
/// error can name their file, line and column.
fn load_source(
    data: &Data,
    project: &Project,
    data_dir: Option<&Path>,
    split: Split,
    targets: TargetSpec,
) -> Result<Dataset, String> {
    let base = project.path.parent().unwrap_or(Path::new("."));
    let err = |e: nnc_data::DataError| e.to_string();
    match (data, targets) {
        (Data::Mnist { .. }, _) => {
            nnc_data::mnist(&mnist_dir(project, data_dir), split).map_err(err)
        }
        (
            Data::Idx {
                images,
                labels,
                classes,
                ..
            },
            _,
        ) => nnc_data::idx_pair(&base.join(images), &base.join(labels), *classes).map_err(err),
        (Data::Csv { path, target }, TargetSpec::Classes(k)) => match target.as_slice() {
            [label] => nnc_data::csv_classes(&base.join(path), label, k).map_err(err),
            _ => Err(format!(
                "`{}`: a classifier takes one target column, the class, but the train block \
                 names {} ({})",
                base.join(path).display(),
                target.len(),
                target.join(", ")
            )),
        },
        (Data::Csv { path, target }, TargetSpec::Values(_)) => {
            nnc_data::csv(&base.join(path), target).map_err(err)
        }
        (Data::Inline { inputs, targets }, TargetSpec::Classes(k)) => {
            inline_classes(inputs, targets, k)
        }
        (Data::Inline { inputs, targets }, TargetSpec::Values(_)) => {
            Ok(nnc_data::inline(inputs, targets))
        }
    }
}

/// An inline table whose targets are classes (`inputs -> class`). The checker has seen that
/// they are; this says which row is not, should one get here.
fn inline_classes(inputs: &[Vec<f64>], targets: &[Vec<f64>], k: usize) -> Result<Dataset, String> {
    let mut labels = Vec::with_capacity(targets.len());
    for (row, t) in targets.iter().enumerate() {
        let cell = match t.as_slice() {
            [class] => class.to_string(),
            _ => format!("{} values", t.len()),
        };
        let label = nnc_data::class_label(&cell, k)
            .map_err(|why| format!("the inline table, row {}: {why}", row + 1))?;
        labels.push(label);
    }
    let table = nnc_data::inline(inputs, targets);
    Ok(Dataset {
        inputs: table.inputs,
        targets: Targets::Classes { labels, classes: k },
    })
}

/// How a data source is named in messages: its file (the images of an IDX pair), MNIST's
/// directory, or the inline table.
fn source_name(data: &Data, project: &Project, data_dir: Option<&Path>) -> String {
    let base = project.path.parent().unwrap_or(Path::new("."));
    match data {
        Data::Mnist { .. } => format!("`{}`", mnist_dir(project, data_dir).display()),
        Data::Idx { images, .. } => format!("`{}`", base.join(images).display()),
        Data::Csv { path, .. } => format!("`{}`", base.join(path).display()),
        Data::Inline { .. } => "the inline table".into(),
    }
}

/// Refuses a source whose samples, padded and flattened as it says, are not the model's
/// input, naming the source (the step functions would refuse them without saying where they
/// came from).
fn check_sample_shape(
    data: &Data,
    ds: &Dataset,
    project: &Project,
    data_dir: Option<&Path>,
) -> Result<(), String> {
    let model = &project.model;
    let spec = input_spec(data, ds);
    let seen = spec.model_sample();
    if seen == model.input.shape.0 {
        return Ok(());
    }
    let how = match (spec.pad > 0, spec.flatten) {
        (true, true) => "padded and flattened",
        (true, false) => "padded",
        (false, true) => "flattened",
        (false, false) => "",
    };
    let shaped = if how.is_empty() {
        String::new()
    } else {
        format!(" ({seen:?} {how})")
    };
    Err(format!(
        "{}: the data gives samples of shape {:?}{shaped}, but the input of model `{}` is {}",
        source_name(data, project, data_dir),
        spec.sample,
        model.name,
        model.input.shape
    ))
}

/// Loads the data of the project's train block.
pub(crate) fn load_data(project: &Project, data_dir: Option<&Path>) -> Result<LoadedData, String> {
    let model = &project.model;
    let train = model.train.as_ref().ok_or("the model has no train block")?;
    let targets = TargetSpec::of(&train.data, model);
    let train_ds = load_source(&train.data, project, data_dir, Split::Train, targets)?;
    check_sample_shape(&train.data, &train_ds, project, data_dir)?;
    let test_ds = match (&train.test, &train.data) {
        (Some(test), _) => {
            let ds = load_source(test, project, data_dir, Split::Test, targets)?;
            check_sample_shape(test, &ds, project, data_dir)?;
            ds
        }
        (None, Data::Mnist { .. }) => {
            load_source(&train.data, project, data_dir, Split::Test, targets)?
        }
        // Without a test split, evaluate on the training data (toy tables).
        (None, _) => train_ds.clone(),
    };
    let input = input_spec(&train.data, &train_ds);
    if let (Targets::Classes { classes, .. }, TargetSpec::Classes(k)) = (&train_ds.targets, targets)
        && *classes > k
    {
        let source = match &train.data {
            Data::Idx { labels, .. } => project
                .path
                .parent()
                .unwrap_or(Path::new("."))
                .join(labels)
                .display()
                .to_string(),
            other => format!("the {} data", other.keyword()),
        };
        return Err(format!(
            "{source}: the labels go up to {}, {classes} classes, but model `{}` outputs {k} \
             scores",
            classes - 1,
            model.name
        ));
    }
    Ok(LoadedData {
        train: train_ds,
        val: None,
        test: test_ds,
        input,
        targets,
    })
}

/// Loads only what evaluation needs: the test data (which is the training data for sources
/// without a test split) and its layout.
pub(crate) fn load_test_data(
    project: &Project,
    data_dir: Option<&Path>,
) -> Result<LoadedData, String> {
    let model = &project.model;
    let train = model.train.as_ref().ok_or("the model has no train block")?;
    let targets = TargetSpec::of(&train.data, model);
    let (source, test) = match (&train.test, &train.data) {
        (Some(test), _) => (
            test,
            load_source(test, project, data_dir, Split::Test, targets)?,
        ),
        (None, Data::Mnist { .. }) => (
            &train.data,
            load_source(&train.data, project, data_dir, Split::Test, targets)?,
        ),
        (None, _) => return load_data(project, data_dir),
    };
    check_sample_shape(source, &test, project, data_dir)?;
    let input = input_spec(&train.data, &test);
    Ok(LoadedData {
        train: test.clone(),
        val: None,
        test,
        input,
        targets,
    })
}

/// The epoch number whose order picks the validation samples: training epochs count from 1,
/// so this one is never used for training, and the split is a pure function of the seed.
const VALIDATION_EPOCH: u64 = u64::MAX;

/// Moves `fraction` of the training samples (rounded, at least one, at least one left) into
/// the validation set, chosen by a seeded shuffle. Errors when the data is too small to split.
pub(crate) fn hold_out(data: &mut LoadedData, fraction: f64, seed: u64) -> Result<(), String> {
    let n = data.train.len();
    let held = ((n as f64) * fraction).round() as usize;
    if held == 0 || held >= n {
        return Err(format!(
            "`validation {fraction}` of {n} training samples leaves {} for validation and {} \
             for training; both need at least one",
            held,
            n.saturating_sub(held)
        ));
    }
    let order = nnc_data::epoch_order(n, seed, VALIDATION_EPOCH);
    let (val, train) = order.split_at(held);
    let (mut val, mut train) = (val.to_vec(), train.to_vec());
    // Sorted: each subset keeps the file's order (and memory locality) before shuffling.
    val.sort_unstable();
    train.sort_unstable();
    data.val = Some(subset(&data.train, &val)?);
    data.train = subset(&data.train, &train)?;
    Ok(())
}

/// The samples `indices` of `ds`, copied.
pub(crate) fn subset(ds: &Dataset, indices: &[usize]) -> Result<Dataset, String> {
    let err = |e: nnc_data::DataError| e.to_string();
    let size = ds.inputs.sample_size();
    let inputs = match &ds.inputs {
        Inputs::U8 { sample, .. } => {
            let mut data = vec![0; indices.len() * size];
            ds.gather_u8(indices, &mut data).map_err(err)?;
            Inputs::U8 {
                data,
                sample: sample.clone(),
            }
        }
        Inputs::F32 { sample, .. } => {
            let mut data = vec![0.0; indices.len() * size];
            ds.gather_f32(indices, &mut data).map_err(err)?;
            Inputs::F32 {
                data,
                sample: sample.clone(),
            }
        }
    };
    let targets = match &ds.targets {
        Targets::Classes { classes, .. } => {
            let mut labels = vec![0; indices.len()];
            ds.gather_labels(indices, &mut labels).map_err(err)?;
            Targets::Classes {
                labels,
                classes: *classes,
            }
        }
        Targets::Values { width, .. } => {
            let mut data = vec![0.0; indices.len() * width];
            ds.gather_values(indices, &mut data).map_err(err)?;
            Targets::Values {
                data,
                width: *width,
            }
        }
    };
    Ok(Dataset { inputs, targets })
}

/// An image source's `(scale, shift, pad, flatten)`; `None` for tables.
fn image_scaling(data: &Data) -> Option<(f64, f64, usize, bool)> {
    match data {
        Data::Mnist {
            pad,
            scale,
            shift,
            flatten,
        }
        | Data::Idx {
            pad,
            scale,
            shift,
            flatten,
            ..
        } => Some((*scale, *shift, *pad, *flatten)),
        _ => None,
    }
}

fn input_spec(data: &Data, ds: &Dataset) -> InputSpec {
    let (scale, shift, pad, flatten) = image_scaling(data).unwrap_or((1.0, 0.0, 0, false));
    InputSpec {
        dtype: match ds.inputs {
            Inputs::U8 { .. } => DType::U8,
            Inputs::F32 { .. } => DType::F32,
        },
        sample: ds.sample_shape().to_vec(),
        scale,
        shift,
        pad,
        flatten,
    }
}

/// How data enters a model's steps, known without loading the data (IDX files give it by
/// their headers, read as `nnc check` reads them).
#[derive(Clone, Debug)]
pub struct LoadedSpec {
    /// How samples enter the step.
    pub input: InputSpec,
    /// What the targets are.
    pub targets: TargetSpec,
    /// The train block's batch size.
    pub batch: usize,
}

/// The input and target layout of the project's train block.
pub(crate) fn specs(project: &Project) -> Result<LoadedSpec, String> {
    let model = &project.model;
    let train = model.train.as_ref().ok_or("the model has no train block")?;
    let input = match InputSpec::of(&train.data, model) {
        Some(spec) => spec,
        None => {
            let check = crate::data_check::check(model, &project.path);
            if let Some(d) = check.diagnostics.first() {
                return Err(d.message.clone());
            }
            check.input.ok_or("the data's layout is not known")?
        }
    };
    Ok(LoadedSpec {
        input,
        targets: TargetSpec::of(&train.data, model),
        batch: train.batch,
    })
}

impl Project {
    /// Loads the data of the train block: training and test sets (MNIST from `data_dir`, else
    /// from `data/mnist`), checked against the model's input and outputs.
    pub fn load_data(&self, data_dir: Option<&Path>) -> Result<LoadedData, Error> {
        load_data(self, data_dir).map_err(Error::Data)
    }

    /// Loads only what evaluation needs: the test set (the training set for sources without
    /// one) and its layout.
    pub fn load_test_data(&self, data_dir: Option<&Path>) -> Result<LoadedData, Error> {
        load_test_data(self, data_dir).map_err(Error::Data)
    }

    /// How the data enters the model's steps, known without reading the samples (an IDX
    /// source's headers are read).
    pub fn data_layout(&self) -> Result<LoadedSpec, Error> {
        specs(self).map_err(Error::Data)
    }
}

impl LoadedData {
    /// Moves `fraction` of the training samples into the validation set, chosen by a
    /// shuffle seeded with `seed`; an error when either part would be empty.
    pub fn hold_out(&mut self, fraction: f64, seed: u64) -> Result<(), Error> {
        hold_out(self, fraction, seed).map_err(Error::Data)
    }
}
