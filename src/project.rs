//! A model ready to run: its checked form and its data, found the way a user expects (paths in
//! a `.nn` file are relative to that file; MNIST comes from the project's `data/mnist/` unless
//! `--data` says otherwise).

use std::path::{Path, PathBuf};

use nnc_check::{Data, Model};
use nnc_data::{Dataset, Inputs, Split, Targets};
use nnc_ir::DType;
use nnc_ir::lower::{InputSpec, TargetSpec};

use crate::{Outcome, Ui, check};

/// A checked model and the file it came from.
pub struct Project {
    pub path: PathBuf,
    pub model: Model,
}

/// Reads and checks `file`, and picks the model to work on: `name`, or the file's only model
/// (or its only trained one).
pub fn load(
    file: &Path,
    name: Option<&str>,
    need_train: bool,
    ui: &Ui,
) -> Result<Project, Outcome> {
    let models = check::load_and_check(file, ui)?;
    let pick = match name {
        Some(n) => models.iter().find(|m| m.name == n).ok_or_else(|| {
            let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
            format!(
                "`{}` has no model `{n}`; it has {}",
                file.display(),
                names.join(", ")
            )
        }),
        None => {
            let candidates: Vec<&Model> = models
                .iter()
                .filter(|m| !need_train || m.train.is_some())
                .collect();
            match candidates.as_slice() {
                [one] => Ok(*one),
                [] => Err(format!(
                    "`{}` has no model with a train block",
                    file.display()
                )),
                many => Err(format!(
                    "`{}` has several models ({}); choose one with --model",
                    file.display(),
                    many.iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    };
    match pick {
        Ok(m) if need_train && m.train.is_none() => {
            eprintln!("error: model `{}` has no train block", m.name);
            Err(Outcome::Invalid)
        }
        Ok(m) => Ok(Project {
            path: file.to_path_buf(),
            model: m.clone(),
        }),
        Err(message) => {
            eprintln!("error: {message}");
            Err(Outcome::Failed)
        }
    }
}

/// The training and test data of a model, and how they enter its step functions.
pub struct LoadedData {
    pub train: Dataset,
    pub test: Dataset,
    pub input: InputSpec,
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

fn load_source(
    data: &Data,
    project: &Project,
    data_dir: Option<&Path>,
    split: Split,
) -> Result<Dataset, String> {
    let base = project.path.parent().unwrap_or(Path::new("."));
    let err = |e: nnc_data::DataError| e.to_string();
    match data {
        Data::Mnist { .. } => nnc_data::mnist(&mnist_dir(project, data_dir), split).map_err(err),
        Data::Idx {
            images,
            labels,
            classes,
            ..
        } => nnc_data::idx_pair(&base.join(images), &base.join(labels), *classes).map_err(err),
        Data::Csv { path, target } => nnc_data::csv(&base.join(path), target).map_err(err),
        Data::Inline { inputs, targets } => Ok(nnc_data::inline(inputs, targets)),
    }
}

/// Loads the data of the project's train block.
pub fn load_data(project: &Project, data_dir: Option<&Path>) -> Result<LoadedData, String> {
    let model = &project.model;
    let train = model.train.as_ref().ok_or("the model has no train block")?;
    let train_ds = load_source(&train.data, project, data_dir, Split::Train)?;
    let test_ds = match (&train.test, &train.data) {
        (Some(test), _) => load_source(test, project, data_dir, Split::Test)?,
        (None, Data::Mnist { .. }) => load_source(&train.data, project, data_dir, Split::Test)?,
        // Without a test split, evaluate on the training data (toy tables).
        (None, _) => train_ds.clone(),
    };
    let input = input_spec(&train.data, &train_ds);
    let outputs = model.output_shape().numel() as usize;
    let targets = match (&train_ds.targets, train.loss) {
        (Targets::Classes { .. }, _) => TargetSpec::Classes(outputs),
        (
            Targets::Values { .. },
            nnc_check::Loss::CrossEntropy | nnc_check::Loss::SoftmaxCrossEntropy,
        ) => TargetSpec::Classes(outputs),
        (Targets::Values { width, .. }, nnc_check::Loss::Mse) => TargetSpec::Values(*width),
    };
    if let (Targets::Classes { classes, .. }, TargetSpec::Classes(k)) = (&train_ds.targets, targets)
        && *classes > k
    {
        return Err(format!(
            "the data has {classes} classes but the model outputs {k} scores"
        ));
    }
    Ok(LoadedData {
        train: train_ds,
        test: test_ds,
        input,
        targets,
    })
}

fn input_spec(data: &Data, ds: &Dataset) -> InputSpec {
    let (scale, pad, flatten) = match data {
        Data::Mnist {
            pad,
            scale,
            flatten,
        }
        | Data::Idx {
            pad,
            scale,
            flatten,
            ..
        } => (*scale, *pad, *flatten),
        _ => (1.0, 0, false),
    };
    InputSpec {
        dtype: match ds.inputs {
            Inputs::U8 { .. } => DType::U8,
            Inputs::F32 { .. } => DType::F32,
        },
        sample: ds.sample_shape().to_vec(),
        scale,
        pad,
        flatten,
    }
}

/// How data enters a model's steps, known without loading the data (except for IDX files,
/// whose headers are read).
pub struct LoadedSpec {
    pub input: InputSpec,
    pub targets: TargetSpec,
    pub batch: usize,
}

/// The input and target layout of the project's train block.
pub fn specs(project: &Project) -> Result<LoadedSpec, String> {
    let model = &project.model;
    let train = model.train.as_ref().ok_or("the model has no train block")?;
    let input = match InputSpec::of(&train.data, model) {
        Some(spec) => spec,
        None => {
            let ds = load_source(&train.data, project, None, Split::Train)?;
            input_spec(&train.data, &ds)
        }
    };
    Ok(LoadedSpec {
        input,
        targets: TargetSpec::of(&train.data, model),
        batch: train.batch,
    })
}
