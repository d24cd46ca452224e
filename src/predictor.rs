//! Saved weights put to use: a model's evaluation step with a checkpoint loaded, answering
//! batches of samples with the model's outputs.

use std::path::Path;

use nnc_ir::lower::TargetSpec;

use crate::backend::{self, Backend, BackendKind, Batch, BatchInputs, BatchTargets};
use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::project::{LoadedSpec, Project};

/// A model with trained weights, ready to predict.
pub struct Predictor {
    backend: Box<dyn Backend>,
    layout: LoadedSpec,
    /// Placeholder targets for the evaluation step, which also computes a loss.
    labels: Vec<i32>,
    values: Vec<f32>,
}

impl Predictor {
    /// Loads the checkpoint at `weights` into `project`'s model, on the backend `kind` (and
    /// the machine's available parallelism, [`backend::default_threads`]). The checkpoint
    /// must have been trained from the same model.
    pub fn new(project: &Project, weights: &Path, kind: BackendKind) -> Result<Predictor, Error> {
        let checkpoint = Checkpoint::load(weights)?;
        let threads = backend::default_threads();
        Predictor::with_checkpoint(project, &checkpoint, weights, kind, threads)
    }

    /// [`Predictor::new`] with a checkpoint already read from `weights` (which messages name),
    /// on `threads` threads (1 to [`backend::MAX_THREADS`], else an [`Error::Compile`]).
    pub fn with_checkpoint(
        project: &Project,
        checkpoint: &Checkpoint,
        weights: &Path,
        kind: BackendKind,
        threads: usize,
    ) -> Result<Predictor, Error> {
        checkpoint.check_fits_model(weights, project)?;
        let layout = project.data_layout()?;
        let spec = (layout.input.clone(), layout.targets);
        let mut backend =
            backend::create(kind, &project.model, spec, 0, threads).map_err(Error::Compile)?;
        checkpoint.load_weights_into(backend.as_mut(), weights, project)?;
        Ok(Predictor {
            backend,
            layout,
            labels: Vec::new(),
            values: Vec::new(),
        })
    }

    /// How samples enter the model: their shape and element type (`layout().input.sample`,
    /// `.dtype`) and what the outputs are (`layout().targets`).
    pub fn layout(&self) -> &LoadedSpec {
        &self.layout
    }

    /// The model's outputs for `samples` (whole samples of the input's shape, in its element
    /// type, row-major), one row per sample: class scores (logits or probabilities, as the
    /// model's last layer gives them) or values.
    pub fn predict(&mut self, samples: BatchInputs<'_>) -> Result<Vec<Vec<f32>>, Error> {
        let size: usize = self.layout.input.sample.iter().product();
        let len = match samples {
            BatchInputs::U8(x) => x.len(),
            BatchInputs::F32(x) => x.len(),
        };
        if size == 0 || len % size != 0 {
            return Err(Error::Data(format!(
                "{len} values are not whole samples of shape {:?}",
                self.layout.input.sample
            )));
        }
        let n = len / size;
        if n == 0 {
            return Ok(Vec::new());
        }
        let targets = match self.layout.targets {
            TargetSpec::Classes(_) => {
                self.labels.resize(n, 0);
                BatchTargets::Classes(&self.labels[..n])
            }
            TargetSpec::Values(width) => {
                self.values.resize(n * width, 0.0);
                BatchTargets::Values(&self.values[..n * width])
            }
        };
        let batch = Batch {
            size: n,
            inputs: samples,
            targets,
            key: 0,
            lr: 0.0,
        };
        let outputs = self
            .backend
            .eval_step(&batch)
            .map_err(|e| Error::Train(crate::TrainError::Backend(e)))?
            .outputs;
        let width = outputs.len() / n;
        Ok(outputs.chunks(width.max(1)).map(<[f32]>::to_vec).collect())
    }
}
