//! `nnc train`: epochs over the data, a line (or a JSON object) per epoch.

use std::path::PathBuf;
use std::time::Instant;

use nnc_data::{Dataset, Inputs, Targets};
use serde::Serialize;

use crate::backend::{Backend, Batch, BatchInputs, BatchTargets, Interp, StepResult};
use crate::project::{self, LoadedData};
use crate::{Outcome, Ui};

/// `nnc train` options.
pub struct Options {
    pub file: PathBuf,
    pub model: Option<String>,
    pub epochs: Option<usize>,
    pub batch: Option<usize>,
    pub seed: Option<u64>,
    pub data: Option<PathBuf>,
    pub json: bool,
}

/// One epoch's figures (the `--json` line).
#[derive(Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub seconds: f64,
}

pub fn run(opts: &Options, ui: &Ui) -> Outcome {
    let project = match project::load(&opts.file, opts.model.as_deref(), true, ui) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let data = match project::load_data(&project, opts.data.as_deref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
    };
    let train = project
        .model
        .train
        .clone()
        .expect("load checked the train block");
    let epochs = opts.epochs.unwrap_or(train.epochs);
    let batch = opts
        .batch
        .unwrap_or(train.batch)
        .min(data.train.len())
        .max(1);
    let seed = opts.seed.unwrap_or(train.seed);
    let mut backend = Interp::new(&project.model, data.input.clone(), data.targets, seed);
    if !opts.json {
        eprintln!(
            "training `{}` on {} samples ({} test), batch {batch}, {epochs} epoch{}, interpreter backend",
            project.model.name,
            data.train.len(),
            data.test.len(),
            if epochs == 1 { "" } else { "s" }
        );
    }
    let mut step_key = 0i32;
    for epoch in 1..=epochs {
        let start = Instant::now();
        let order = nnc_data::epoch_order(data.train.len(), seed, epoch as u64);
        let mut total = StepResult::default();
        let mut buffers = Buffers::default();
        for indices in nnc_data::batches(&order, batch) {
            step_key = step_key.wrapping_add(1);
            let result = buffers
                .gather(&data, &data.train, indices, step_key)
                .and_then(|b| backend.train_step(&b));
            match result {
                Ok(r) if r.loss_sum.is_finite() => {
                    let r = &r;
                    total.loss_sum += r.loss_sum;
                    total.correct += r.correct;
                }
                Ok(r) => {
                    eprintln!(
                        "error: the loss became {} at epoch {epoch}; training stopped. Lower the learning rate.",
                        r.loss_sum
                    );
                    return Outcome::Failed;
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return Outcome::Failed;
                }
            }
        }
        let test = match evaluate(&mut backend, &data, batch) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return Outcome::Failed;
            }
        };
        let n = data.train.len() as f64;
        let m = data.test.len() as f64;
        let report = EpochReport {
            epoch,
            train_loss: total.loss_sum / n,
            train_acc: total.correct / n,
            test_loss: test.loss_sum / m,
            test_acc: test.correct / m,
            seconds: start.elapsed().as_secs_f64(),
        };
        if opts.json {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
        } else {
            println!(
                "epoch {:>3}  train loss {:.4}  acc {:.4}  test loss {:.4}  acc {:.4}  {:.2} s",
                report.epoch,
                report.train_loss,
                report.train_acc,
                report.test_loss,
                report.test_acc,
                report.seconds
            );
        }
    }
    Outcome::Ok
}

/// Loss and accuracy over the whole test set.
fn evaluate(
    backend: &mut dyn Backend,
    data: &LoadedData,
    batch: usize,
) -> Result<StepResult, String> {
    let order: Vec<usize> = (0..data.test.len()).collect();
    let mut total = StepResult::default();
    let mut buffers = Buffers::default();
    for indices in nnc_data::batches(&order, batch) {
        let b = buffers.gather(data, &data.test, indices, 0)?;
        let r = backend.eval_step(&b)?;
        total.loss_sum += r.loss_sum;
        total.correct += r.correct;
    }
    Ok(total)
}

/// Reused gather buffers: no allocation per step once they have grown.
#[derive(Default)]
struct Buffers {
    u8s: Vec<u8>,
    f32s: Vec<f32>,
    labels: Vec<i32>,
    values: Vec<f32>,
}

impl Buffers {
    fn gather<'a>(
        &'a mut self,
        data: &LoadedData,
        ds: &Dataset,
        indices: &[usize],
        key: i32,
    ) -> Result<Batch<'a>, String> {
        let n = indices.len();
        let sample = ds.inputs.sample_size();
        let err = |e: nnc_data::DataError| e.to_string();
        let is_u8 = matches!(ds.inputs, Inputs::U8 { .. });
        if is_u8 {
            self.u8s.resize(n * sample, 0);
            ds.gather_u8(indices, &mut self.u8s).map_err(err)?;
        } else {
            self.f32s.resize(n * sample, 0.0);
            ds.gather_f32(indices, &mut self.f32s).map_err(err)?;
        }
        let classes = matches!(data.targets, nnc_ir::lower::TargetSpec::Classes(_));
        match (&ds.targets, classes) {
            (Targets::Classes { .. }, _) => {
                self.labels.resize(n, 0);
                ds.gather_labels(indices, &mut self.labels).map_err(err)?;
            }
            (Targets::Values { width, .. }, true) => {
                // Inline tables written as `inputs -> class`.
                self.values.resize(n * width, 0.0);
                ds.gather_values(indices, &mut self.values).map_err(err)?;
                self.labels.clear();
                self.labels.extend(
                    self.values
                        .iter()
                        .step_by((*width).max(1))
                        .map(|&v| v as i32),
                );
            }
            (Targets::Values { width, .. }, false) => {
                self.values.resize(n * width, 0.0);
                ds.gather_values(indices, &mut self.values).map_err(err)?;
            }
        }
        Ok(Batch {
            size: n,
            inputs: if is_u8 {
                BatchInputs::U8(&self.u8s)
            } else {
                BatchInputs::F32(&self.f32s)
            },
            targets: if classes {
                BatchTargets::Classes(&self.labels)
            } else {
                BatchTargets::Values(&self.values)
            },
            key,
        })
    }
}
