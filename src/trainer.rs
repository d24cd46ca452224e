//! The training loop as a library: epochs of seeded batches through a [`Backend`], evaluation
//! with a confusion matrix, and the per-layer norms that show vanishing gradients.
//!
//! Every random choice is a pure function of counters, so a run can stop anywhere and continue
//! exactly: the order of an epoch is `epoch_order(seed, epoch)` (nnc-data), an augmentation
//! shift is a function of `(seed, epoch, position in the epoch)` ([`crate::augment`]), and the
//! dropout key is the global step number. The state to save is therefore the counters in
//! [`EpochSums`] and [`Trainer::step`], never a generator.

use std::ops::ControlFlow;
use std::path::Path;

use nnc_check::{Model, Schedule};
use nnc_data::{Dataset, Inputs, Targets};
use nnc_ir::lower::TargetSpec;

use crate::augment;
use crate::backend::{self, Backend, BackendKind, Batch, BatchInputs, BatchTargets, NamedTensor};
use crate::checkpoint::{Checkpoint, Meta};
use crate::error::{Error, TrainError};
use crate::metrics::EpochSums;
use crate::project::{LoadedData, Project};

/// Which part of the data to evaluate on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The training samples (less the validation set).
    Train,
    /// The samples held out by the train block's `validation`.
    Validation,
    /// The test set.
    Test,
}

/// Loss and accuracy over a data set, with the confusion matrix for class targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Samples evaluated.
    pub samples: usize,
    /// The mean loss.
    pub loss: f64,
    /// Accuracy, or the mean absolute error (see [`EpochSums::score`]).
    pub score: f64,
    /// For class targets, the confusion matrix.
    pub confusion: Option<Confusion>,
}

/// Counts of (true class, predicted class) pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    /// The number of classes (rows and columns).
    pub classes: usize,
    /// Row-major: `counts[truth * classes + predicted]`.
    pub counts: Vec<u64>,
}

impl Confusion {
    /// An empty matrix for `classes` classes.
    pub fn new(classes: usize) -> Confusion {
        Confusion {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Samples of class `truth` predicted as `predicted`.
    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    pub(crate) fn add(&mut self, truth: usize, predicted: usize) {
        if truth < self.classes && predicted < self.classes {
            self.counts[truth * self.classes + predicted] += 1;
        }
    }

    /// Samples of each class.
    pub fn support(&self) -> Vec<u64> {
        self.counts
            .chunks(self.classes)
            .map(|r| r.iter().sum())
            .collect()
    }

    /// The class predicted for every sample, when there is only one (and more than one class
    /// among the samples): the sign of a collapsed network.
    pub fn single_prediction(&self) -> Option<usize> {
        let k = self.classes;
        let columns: Vec<u64> = (0..k)
            .map(|p| (0..k).map(|t| self.get(t, p)).sum())
            .collect();
        let used = columns.iter().filter(|&&n| n > 0).count();
        let truths = self.support().iter().filter(|&&n| n > 0).count();
        (used == 1 && truths > 1).then(|| columns.iter().position(|&n| n > 0))?
    }

    /// Per class, the fraction of its samples predicted correctly (`None` without samples).
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        (0..self.classes)
            .map(|c| {
                let n: u64 = self.counts[c * self.classes..(c + 1) * self.classes]
                    .iter()
                    .sum();
                (n > 0).then(|| self.get(c, c) as f64 / n as f64)
            })
            .collect()
    }
}

/// The predicted class of one output row: the arg-max (the first on ties, as the IR's
/// `argmax`), or for a single output, whether it exceeds 0.5.
pub fn predicted_class(row: &[f32]) -> usize {
    if row.len() == 1 {
        return usize::from(row[0] > 0.5);
    }
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// A model, its data and a backend holding its weights: trains epochs and evaluates.
pub struct Trainer {
    backend: Box<dyn Backend>,
    kind: BackendKind,
    data: LoadedData,
    batch: usize,
    seed: u64,
    /// Random image shifts of up to this many pixels, from the train block.
    augment: Option<usize>,
    /// The optimizer's learning rate, the schedule that scales it, and the run's length in
    /// epochs, which the schedule spans.
    lr: f64,
    schedule: Schedule,
    epochs: usize,
    /// Training steps taken since the run started; keys dropout.
    pub step: u64,
    /// The mean loss of the last step whose loss was finite.
    last_finite_loss: Option<f64>,
    /// Layer names, and the indices of their tensors in [`Backend::params`].
    layers: Vec<(String, Vec<usize>)>,
    /// The names of the parameter tensors, in [`Backend::params`] order.
    param_names: Vec<String>,
    buffers: Buffers,
}

impl Trainer {
    /// A trainer for `model` on `data`, with weights initialised from `seed` by the backend
    /// `kind`, on the machine's available parallelism ([`backend::default_threads`]). `batch`
    /// is clamped to the number of training samples.
    pub fn new(
        model: &Model,
        data: LoadedData,
        kind: BackendKind,
        seed: u64,
        batch: usize,
    ) -> Result<Trainer, Error> {
        let threads = backend::default_threads();
        Trainer::with_threads(model, data, kind, seed, batch, threads)
    }

    /// [`Trainer::new`] on `threads` threads (1 to [`backend::MAX_THREADS`], else an
    /// [`Error::Compile`]): the JIT's results are bitwise reproducible for a given count.
    pub fn with_threads(
        model: &Model,
        data: LoadedData,
        kind: BackendKind,
        seed: u64,
        batch: usize,
        threads: usize,
    ) -> Result<Trainer, Error> {
        if data.train.is_empty() {
            return Err(Error::Data("the training data holds no samples".into()));
        }
        let spec = (data.input.clone(), data.targets);
        let backend = backend::create(kind, model, spec, seed, threads).map_err(Error::Compile)?;
        let mut layers: Vec<(String, Vec<usize>)> = Vec::new();
        let params = backend.params();
        let param_names = params.iter().map(|p| p.name.clone()).collect();
        for (i, p) in params.iter().enumerate() {
            let layer = p.name.rsplit_once('.').map_or(&*p.name, |(l, _)| l);
            match layers.last_mut() {
                Some((name, idx)) if name == layer => idx.push(i),
                _ => layers.push((layer.to_string(), vec![i])),
            }
        }
        let train = model.train.as_ref();
        let augment = train.and_then(|t| t.augment).map(|a| a.shift);
        Ok(Trainer {
            backend,
            kind,
            batch: batch.clamp(1, data.train.len()),
            data,
            seed,
            augment,
            lr: train.map_or(0.0, |t| t.optimizer.lr()),
            schedule: train.map_or(Schedule::default(), |t| t.schedule),
            epochs: train.map_or(1, |t| t.epochs),
            step: 0,
            last_finite_loss: None,
            layers,
            param_names,
            buffers: Buffers::default(),
        })
    }

    /// The batch size in use.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The data the trainer works on.
    pub fn data(&self) -> &LoadedData {
        &self.data
    }

    /// The backend, for reading or replacing the weights.
    pub fn backend(&mut self) -> &mut dyn Backend {
        self.backend.as_mut()
    }

    /// Replaces the backend (with `distributed`'s, which holds the same parameters and state
    /// in the same order).
    pub fn set_backend(&mut self, backend: Box<dyn Backend>) {
        self.backend = backend;
    }

    /// The parameters, in declaration order.
    pub fn params(&self) -> Vec<NamedTensor> {
        self.backend.params()
    }

    /// The optimizer state, in the step's order.
    pub fn states(&self) -> Vec<NamedTensor> {
        self.backend.states()
    }

    /// Layer names with parameters, in order.
    pub fn layer_names(&self) -> Vec<String> {
        self.layers.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The mean loss of the last step whose loss was finite.
    pub fn last_finite_loss(&self) -> Option<f64> {
        self.last_finite_loss
    }

    /// Sets what [`Trainer::last_finite_loss`] reports (when resuming).
    pub fn set_last_finite_loss(&mut self, loss: Option<f64>) {
        self.last_finite_loss = loss;
    }

    /// The number of training steps in a full epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.data.train.len().div_ceil(self.batch)
    }

    /// Sets the length of the run, which a learning-rate schedule spans (the train block's
    /// `epochs` unless the command line says otherwise).
    pub fn set_epochs(&mut self, epochs: usize) {
        self.epochs = epochs;
    }

    /// Whether the train block schedules the learning rate.
    pub fn scheduled(&self) -> bool {
        !self.schedule.is_constant()
    }

    /// The learning rate of global step `step` (0-based): the optimizer's, times the
    /// schedule's factor.
    pub fn learning_rate(&self, step: u64) -> f64 {
        self.lr
            * self
                .schedule
                .factor(step, self.steps_per_epoch(), self.epochs)
    }

    /// Trains epoch `epoch` (1-based) from the position in `sums` to its end, calling
    /// `after_step` after every step; it may break to stop early (Ctrl-C). Returns whether the
    /// epoch is complete.
    pub fn train_epoch(
        &mut self,
        epoch: usize,
        sums: &mut EpochSums,
        mut after_step: impl FnMut(&EpochSums) -> ControlFlow<()>,
    ) -> Result<bool, TrainError> {
        let n = self.data.train.len();
        let order = nnc_data::epoch_order(n, self.seed, epoch as u64);
        let params = self.layers.iter().map(|(_, i)| i.len()).sum();
        sums.grad_norm2_sums.resize(params, 0.0);
        let start = sums.samples.min(n);
        for indices in nnc_data::batches(&order[start..], self.batch) {
            self.step += 1;
            // Keys dropout; wrapping is fine, the key only has to differ between steps.
            let key = self.step as i32;
            let shift = self
                .augment
                .map(|max| (max, self.seed, epoch as u64, sums.samples as u64));
            let lr = self.learning_rate(self.step - 1) as f32;
            let mut batch = self
                .buffers
                .gather(&self.data, &self.data.train, indices, key, shift)
                .map_err(TrainError::Backend)?;
            batch.lr = lr;
            let r = self
                .backend
                .train_step(&batch)
                .map_err(TrainError::Backend)?;
            let diverged = |what: String| TrainError::Diverged {
                epoch,
                step: self.step,
                what,
                last_finite_loss: self.last_finite_loss,
            };
            if !r.loss_sum.is_finite() {
                return Err(diverged(format!("the loss became {}", r.loss_sum)));
            }
            self.last_finite_loss = Some(r.loss_sum / indices.len() as f64);
            if let Some(i) = r.grad_norms2.iter().position(|g| !g.is_finite()) {
                let name = self
                    .param_names
                    .get(i)
                    .map_or("a parameter", String::as_str);
                return Err(TrainError::Diverged {
                    epoch,
                    step: self.step,
                    what: format!("the gradient of `{name}` became {}", r.grad_norms2[i]),
                    last_finite_loss: self.last_finite_loss,
                });
            }
            sums.samples += indices.len();
            sums.steps += 1;
            sums.loss_sum += r.loss_sum;
            sums.correct += r.correct;
            for (s, g2) in sums.grad_norm2_sums.iter_mut().zip(r.grad_norms2) {
                *s += g2;
            }
            if after_step(sums).is_break() {
                return Ok(sums.samples >= n);
            }
        }
        Ok(true)
    }

    /// Loss, accuracy and (for class targets) the confusion matrix over a part of the data,
    /// with the current weights and dropout off. `None` when there is no such part.
    pub fn evaluate(&mut self, part: Part) -> Result<Option<Evaluation>, Error> {
        let ds = match part {
            Part::Train => &self.data.train,
            Part::Validation => match &self.data.val {
                Some(v) => v,
                None => return Ok(None),
            },
            Part::Test => &self.data.test,
        };
        evaluate(
            self.backend.as_mut(),
            &self.data,
            ds,
            self.batch,
            &mut self.buffers,
        )
        .map(Some)
        .map_err(|e| Error::Train(TrainError::Backend(e)))
    }

    /// The evaluations after a complete epoch: the validation part (if any), then the test
    /// part. Shared by the ranks of a data-parallel job, each of which calls it after the
    /// same epochs (rank 0's driver, and the others' `distributed::Cluster::follow`); on an
    /// error the sharing stays on, which makes the job's backend abort rather than leave the
    /// other ranks waiting.
    pub fn evaluate_epoch(&mut self) -> Result<(Option<Evaluation>, Evaluation), Error> {
        self.backend.share_evaluation(true);
        let val = self.evaluate(Part::Validation)?;
        let test = self.evaluate(Part::Test)?;
        self.backend.share_evaluation(false);
        let test = test.ok_or_else(|| Error::Train(TrainError::Backend("no test data".into())))?;
        Ok((val, test))
    }

    /// Per layer, the root mean square over the epoch's steps of the norm of its gradient
    /// (weight and bias together): √(mean over steps of ‖g_w‖² + ‖g_b‖²). The gradient is the
    /// data loss's, without weight decay.
    pub fn grad_norms(&self, sums: &EpochSums) -> Vec<(String, f64)> {
        let steps = sums.steps.max(1) as f64;
        self.layers
            .iter()
            .map(|(name, idx)| {
                let sum: f64 = idx
                    .iter()
                    .map(|&i| sums.grad_norm2_sums.get(i).copied().unwrap_or(0.0))
                    .sum();
                (name.clone(), (sum / steps).sqrt())
            })
            .collect()
    }

    /// Per layer, the norm of its weights and biases together, ‖(W, b)‖.
    pub fn weight_norms(&self) -> Vec<(String, f64)> {
        let params = self.backend.params();
        self.layers
            .iter()
            .map(|(name, idx)| {
                let sq: f64 = idx
                    .iter()
                    .filter_map(|&i| params.get(i))
                    .flat_map(|t| &t.data)
                    .map(|&v| f64::from(v) * f64::from(v))
                    .sum();
                (name.clone(), sq.sqrt())
            })
            .collect()
    }
}

/// Evaluates `ds` batch by batch with `backend`.
pub fn evaluate(
    backend: &mut dyn Backend,
    data: &LoadedData,
    ds: &Dataset,
    batch: usize,
    buffers: &mut Buffers,
) -> Result<Evaluation, String> {
    let order: Vec<usize> = (0..ds.len()).collect();
    let mut loss_sum = 0.0;
    let mut correct = 0.0;
    let mut confusion = match data.targets {
        TargetSpec::Classes(k) => Some(Confusion::new(k.max(2))),
        TargetSpec::Values(_) => None,
    };
    for indices in nnc_data::batches(&order, batch.max(1)) {
        let b = buffers.gather(data, ds, indices, 0, None)?;
        let r = backend.eval_step(&b)?;
        loss_sum += r.loss_sum;
        correct += r.correct;
        if let (Some(c), BatchTargets::Classes(labels)) = (&mut confusion, b.targets) {
            let width = r.outputs.len() / indices.len().max(1);
            if width > 0 {
                for (row, &label) in r.outputs.chunks(width).zip(labels) {
                    c.add(label.max(0) as usize, predicted_class(row));
                }
            }
        }
    }
    let n = ds.len().max(1) as f64;
    Ok(Evaluation {
        samples: ds.len(),
        loss: loss_sum / n,
        score: correct / n,
        confusion,
    })
}

/// Reused gather buffers: no allocation per step once they have grown.
#[derive(Default)]
pub struct Buffers {
    u8s: Vec<u8>,
    f32s: Vec<f32>,
    labels: Vec<i32>,
    values: Vec<f32>,
}

impl Buffers {
    /// Gathers the samples `indices` of `ds` into a batch. `shift`: augment the images by
    /// random shifts of up to `max` pixels, keyed by `(seed, epoch, position of the first
    /// sample in the epoch)`.
    pub fn gather<'a>(
        &'a mut self,
        data: &LoadedData,
        ds: &Dataset,
        indices: &[usize],
        key: i32,
        shift: Option<(usize, u64, u64, u64)>,
    ) -> Result<Batch<'a>, String> {
        let n = indices.len();
        let sample = ds.inputs.sample_size();
        let err = |e: nnc_data::DataError| e.to_string();
        let is_u8 = matches!(ds.inputs, Inputs::U8 { .. });
        if is_u8 {
            self.u8s.resize(n * sample, 0);
            ds.gather_u8(indices, &mut self.u8s).map_err(err)?;
            if let Some((max, seed, epoch, position)) = shift {
                augment::shift_batch(&mut self.u8s, ds.sample_shape(), max, |i| {
                    augment::key(seed, epoch, position + i as u64)
                })?;
            }
        } else {
            self.f32s.resize(n * sample, 0.0);
            ds.gather_f32(indices, &mut self.f32s).map_err(err)?;
        }
        // The data were loaded with the targets the step takes (`project::load_data`).
        let classes = matches!(data.targets, TargetSpec::Classes(_));
        if classes {
            self.labels.resize(n, 0);
            ds.gather_labels(indices, &mut self.labels).map_err(err)?;
        } else {
            let width = match ds.targets {
                Targets::Values { width, .. } => width,
                Targets::Classes { .. } => 1,
            };
            self.values.resize(n * width, 0.0);
            ds.gather_values(indices, &mut self.values).map_err(err)?;
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
            lr: 0.0,
        })
    }
}

impl Trainer {
    /// The weights and optimizer state after `epoch` complete epochs of `project`'s run, as a
    /// checkpoint ([`Checkpoint::save`] writes it; `nnc eval`, `nnc predict`,
    /// [`crate::Predictor`] and [`Trainer::restore`] read it).
    pub fn checkpoint(&self, project: &Project, epoch: usize) -> Checkpoint {
        Checkpoint {
            meta: Meta {
                model: project.model.name.clone(),
                source_file: project.path.display().to_string(),
                source_sha256: project.source_hash(),
                model_sha256: Some(project.meaning_hash()),
                nnc_version: env!("CARGO_PKG_VERSION").to_string(),
                backend: self.kind.name(),
                seed: self.seed,
                batch: self.batch,
                epochs: Some(self.epochs),
                epoch,
                step: self.step,
                partial: EpochSums::default(),
                partial_seconds: 0.0,
                last_finite_loss: self.last_finite_loss,
                best: None,
            },
            params: self.params(),
            states: self.states(),
            best: Vec::new(),
        }
    }

    /// Loads a checkpoint's weights and optimizer state (read from `path`, which messages
    /// name); it must have been trained from `project`'s model. The step count continues
    /// from the checkpoint's.
    pub fn restore(
        &mut self,
        checkpoint: &Checkpoint,
        path: &Path,
        project: &Project,
    ) -> Result<(), Error> {
        checkpoint.load_into(self.backend.as_mut(), path, project)?;
        self.step = checkpoint.meta.step;
        self.last_finite_loss = checkpoint.meta.last_finite_loss;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicted_class_is_the_first_maximum() {
        assert_eq!(predicted_class(&[0.1, 0.7, 0.7, 0.2]), 1);
        assert_eq!(predicted_class(&[3.0]), 1);
        assert_eq!(predicted_class(&[0.2]), 0);
    }

    #[test]
    fn confusion_per_class() {
        let mut c = Confusion::new(3);
        for (t, p) in [(0, 0), (0, 1), (1, 1), (1, 1), (2, 0)] {
            c.add(t, p);
        }
        assert_eq!(c.support(), [2, 2, 1]);
        assert_eq!(c.per_class_accuracy(), [Some(0.5), Some(1.0), Some(0.0)]);
        c.add(7, 0); // out of range: ignored, never a panic
        assert_eq!(c.support(), [2, 2, 1]);
        assert_eq!(c.single_prediction(), None);
        let mut collapsed = Confusion::new(3);
        for t in [0, 1, 2, 2] {
            collapsed.add(t, 2);
        }
        assert_eq!(collapsed.single_prediction(), Some(2));
    }
}
