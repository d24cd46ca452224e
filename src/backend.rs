//! The engines that run a compiled step. The training driver talks to [`Backend`] only, so it
//! does not care whether the step is interpreted or compiled to machine code; every backend is
//! made by [`create`].

use std::collections::HashMap;

use ndarray::{ArrayD, IxDyn};
use nnc_check::Model;
use nnc_ir::compile::{Compiled, compile};
use nnc_ir::interp::{self, Tensor};
use nnc_ir::lower::{InputSpec, TargetSpec};

/// Which engine runs the steps (`--backend`). The default is what `nnc` uses when not told.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// Compiled: fused Cranelift kernels and vectorised GEMMs over a static arena.
    #[default]
    Jit,
    /// The reference interpreter: exact, and the oracle the compiled backends are tested against.
    Interp,
}

impl BackendKind {
    /// The name used on the command line and in messages (`interp`).
    pub fn name(self) -> String {
        match self {
            BackendKind::Jit => "jit",
            BackendKind::Interp => "interp",
        }
        .to_string()
    }
}

/// The most threads the JIT runs on.
pub const MAX_THREADS: usize = nnc_jit::MAX_THREADS;

/// The threads the JIT runs on when not told: the machine's available parallelism (1 when it
/// cannot be known), at most [`MAX_THREADS`].
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
}

/// Makes the backend `kind` for `model`, its parameters initialised from `seed`; the JIT runs
/// on `threads` threads (1 to [`MAX_THREADS`]: its results are bitwise reproducible for a
/// given count, not across counts), the interpreter on one.
pub fn create(
    kind: BackendKind,
    model: &Model,
    (input, targets): (InputSpec, TargetSpec),
    seed: u64,
    threads: usize,
) -> Result<Box<dyn Backend>, String> {
    match kind {
        BackendKind::Jit => Ok(Box::new(Jit(nnc_jit::CompiledModel::with_threads(
            model, input, targets, seed, threads,
        )?))),
        BackendKind::Interp => Ok(Box::new(Interp::new(model, input, targets, seed))),
    }
}

/// The JIT backend: compiled programs, one per batch size (see `nnc_jit::CompiledModel`).
pub struct Jit(nnc_jit::CompiledModel);

impl Jit {
    fn batch<'a>(b: &Batch<'a>) -> nnc_jit::BatchData<'a> {
        nnc_jit::BatchData {
            size: b.size,
            inputs: match b.inputs {
                BatchInputs::U8(x) => nnc_jit::InputData::U8(x),
                BatchInputs::F32(x) => nnc_jit::InputData::F32(x),
            },
            targets: match b.targets {
                BatchTargets::Classes(t) => nnc_jit::TargetData::Classes(t),
                BatchTargets::Values(t) => nnc_jit::TargetData::Values(t),
            },
            key: b.key,
            lr: b.lr,
        }
    }
}

impl Backend for Jit {
    fn train_step(&mut self, batch: &Batch<'_>) -> Result<TrainResult<'_>, String> {
        let out = self.0.train_step(&Jit::batch(batch))?;
        Ok(TrainResult {
            loss_sum: out.loss * batch.size as f64,
            correct: out.correct,
            grad_norms2: out.grad_norms2,
        })
    }

    fn eval_step(&mut self, batch: &Batch<'_>) -> Result<StepResult, String> {
        let out = self.0.eval_step(&Jit::batch(batch))?;
        Ok(StepResult {
            loss_sum: out.loss * batch.size as f64,
            correct: out.correct,
            outputs: out.outputs,
        })
    }

    fn params(&self) -> Vec<NamedTensor> {
        let (names, shapes) = self.0.param_layout();
        let (params, _) = self.0.snapshot().unwrap_or_default();
        named_flat(names.iter().zip(shapes), params)
    }

    fn states(&self) -> Vec<NamedTensor> {
        let (_, states) = self.0.snapshot().unwrap_or_default();
        named_flat(self.0.state_layout().iter().map(|(n, s)| (n, s)), states)
    }

    fn load(&mut self, params: &[NamedTensor], states: &[NamedTensor]) -> Result<(), String> {
        let (names, shapes) = self.0.param_layout();
        for ((n, s), t) in names.iter().zip(shapes).zip(params) {
            if &t.name != n || &t.shape != s {
                return Err(format!(
                    "expected `{n}` of shape {s:?}, found `{}` of shape {:?}",
                    t.name, t.shape
                ));
            }
        }
        for ((n, s), t) in self.0.state_layout().iter().zip(states) {
            if &t.name != n || &t.shape != s {
                return Err(format!(
                    "expected `{n}` of shape {s:?}, found `{}` of shape {:?}",
                    t.name, t.shape
                ));
            }
        }
        self.0.restore(
            params.iter().map(|t| t.data.clone()).collect(),
            states.iter().map(|t| t.data.clone()).collect(),
        )
    }
}

/// One batch, as the data layer gathered it.
pub struct Batch<'a> {
    /// Samples in the batch (the last batch of an epoch may be short).
    pub size: usize,
    /// The samples, `size × sample` values, row-major.
    pub inputs: BatchInputs<'a>,
    /// Their targets.
    pub targets: BatchTargets<'a>,
    /// Seeds dropout; differs every step.
    pub key: i32,
    /// The learning rate of this step (the optimizer's, times the schedule's factor).
    pub lr: f32,
}

/// A batch's samples in the element type of the data set.
#[derive(Clone, Copy)]
pub enum BatchInputs<'a> {
    /// Bytes (images), scaled by the step as the data source says.
    U8(&'a [u8]),
    /// Floats, used as they are.
    F32(&'a [f32]),
}

/// A batch's targets.
#[derive(Clone, Copy)]
pub enum BatchTargets<'a> {
    /// One class index per sample.
    Classes(&'a [i32]),
    /// `width` values per sample, row-major.
    Values(&'a [f32]),
}

/// A training step's loss summed over the batch's samples, its number of correct predictions
/// and squared gradient norms.
#[derive(Clone, Copy, Debug)]
pub struct TrainResult<'a> {
    /// The loss summed over the batch's samples.
    pub loss_sum: f64,
    /// Correct predictions (or, for value targets, the summed absolute error).
    pub correct: f64,
    /// Squared gradient norm per parameter tensor, borrowed from the backend (the JIT's
    /// steps allocate nothing).
    pub grad_norms2: &'a [f64],
}

/// An evaluation step's loss summed over the batch's samples, its number of correct
/// predictions and the model's outputs.
#[derive(Clone, Debug, Default)]
pub struct StepResult {
    /// The loss summed over the batch's samples.
    pub loss_sum: f64,
    /// Correct predictions (or, for value targets, the summed absolute error).
    pub correct: f64,
    /// The model's outputs, `batch × outputs`, row-major.
    pub outputs: Vec<f32>,
}

/// A named tensor of f32 values: a parameter or an optimizer state.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// `layer.weight`, `layer.bias`, or an optimizer state's name.
    pub name: String,
    /// Its dimensions (dense weights `[in, out]`, conv weights `[out, in, kh, kw]`).
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub data: Vec<f32>,
}

/// Something that runs training and evaluation steps and owns the parameters and the
/// optimizer state. The training driver sees only this.
pub trait Backend {
    /// One training step on `batch`: forward, backward and the optimizer's update.
    fn train_step(&mut self, batch: &Batch<'_>) -> Result<TrainResult<'_>, String>;
    /// Forward only, dropout off; fills `outputs`.
    fn eval_step(&mut self, batch: &Batch<'_>) -> Result<StepResult, String>;
    /// The parameters, in declaration order (`c1.weight`, `c1.bias`, ...).
    fn params(&self) -> Vec<NamedTensor>;
    /// The optimizer state, in the train step's order (`c1.weight.velocity`, ...).
    fn states(&self) -> Vec<NamedTensor>;
    /// Replaces parameters and state (resuming from a checkpoint). Names and shapes must match.
    fn load(&mut self, params: &[NamedTensor], states: &[NamedTensor]) -> Result<(), String>;
    /// Whether the evaluation steps from here on are the job's (every rank of a
    /// data-parallel job evaluates its shard of each batch, and each gets the whole batch's
    /// results) or this process's alone. Every rank turns it on and off at the same points.
    /// A single process has nothing to share.
    fn share_evaluation(&mut self, _on: bool) {}
}

/// The reference interpreter as a backend: slow, simple, exact.
pub struct Interp {
    model: Model,
    input: InputSpec,
    targets: TargetSpec,
    /// Compiled steps per batch size (the last batch of an epoch may be smaller).
    compiled: HashMap<usize, Compiled>,
    params: Vec<ArrayD<f32>>,
    names: Vec<String>,
    states: Vec<ArrayD<f32>>,
    state_names: Vec<String>,
    /// The latest step's squared gradient norms.
    grad_norms2: Vec<f64>,
}

impl Interp {
    /// The interpreter for `model`, its parameters initialised from `seed`.
    pub fn new(model: &Model, input: InputSpec, targets: TargetSpec, seed: u64) -> Interp {
        let init = nnc_ir::init::init_params(model, seed);
        Interp {
            model: model.clone(),
            input,
            targets,
            compiled: HashMap::new(),
            names: init.iter().map(|t| t.name.clone()).collect(),
            state_names: Vec::new(),
            params: init
                .into_iter()
                .map(|t| ArrayD::from_shape_vec(IxDyn(&t.shape), t.data).expect("init shape"))
                .collect(),
            states: Vec::new(),
            grad_norms2: Vec::new(),
        }
    }

    /// The model's step functions at batch size `batch`, compiled once per size.
    pub fn compiled(&mut self, batch: usize) -> Result<&Compiled, String> {
        if !self.compiled.contains_key(&batch) {
            let c = compile(&self.model, batch, self.input.clone(), self.targets)?;
            if self.state_names.is_empty() {
                self.state_names = c.train_step.states.iter().map(|s| s.name.clone()).collect();
                self.states = c
                    .train_step
                    .states
                    .iter()
                    .map(|s| ArrayD::from_elem(IxDyn(&s.ty.shape), s.init as f32))
                    .collect();
            }
            self.compiled.insert(batch, c);
        }
        Ok(&self.compiled[&batch])
    }

    fn data_tensors(&self, batch: &Batch<'_>, with_key: bool) -> Result<Vec<Tensor<f32>>, String> {
        let mut shape = vec![batch.size];
        shape.extend(&self.input.sample);
        let arr = |e: ndarray::ShapeError| e.to_string();
        let x = match batch.inputs {
            BatchInputs::U8(d) => {
                Tensor::U8(ArrayD::from_shape_vec(IxDyn(&shape), d.to_vec()).map_err(arr)?)
            }
            BatchInputs::F32(d) => {
                Tensor::F(ArrayD::from_shape_vec(IxDyn(&shape), d.to_vec()).map_err(arr)?)
            }
        };
        let t = match (batch.targets, self.targets) {
            (BatchTargets::Classes(l), _) => {
                Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[batch.size]), l.to_vec()).map_err(arr)?)
            }
            (BatchTargets::Values(v), TargetSpec::Values(w)) => {
                Tensor::F(ArrayD::from_shape_vec(IxDyn(&[batch.size, w]), v.to_vec()).map_err(arr)?)
            }
            (BatchTargets::Values(_), TargetSpec::Classes(_)) => {
                return Err("class targets expected".into());
            }
        };
        let mut out = vec![x, t];
        if with_key {
            out.push(Tensor::I32(ArrayD::from_elem(IxDyn(&[]), batch.key)));
        }
        Ok(out)
    }
}

impl Backend for Interp {
    fn train_step(&mut self, batch: &Batch<'_>) -> Result<TrainResult<'_>, String> {
        let step = self.compiled(batch.size)?.train_step.clone();
        let mut inputs = self.data_tensors(batch, step.data_params == 3)?;
        inputs.extend(self.params.iter().map(|p| Tensor::F(p.clone())));
        inputs.extend(self.states.iter().map(|s| Tensor::F(s.clone())));
        if step.learning_rate.is_some() {
            inputs.push(Tensor::F(ArrayD::from_elem(IxDyn(&[]), batch.lr)));
        }
        let mut out = interp::run_f32(&step.func, inputs)?.into_iter();
        let loss = out.next().ok_or("no loss")?.scalar()?;
        let correct = out.next().ok_or("no count")?.scalar()?;
        for p in self.params.iter_mut() {
            *p = out.next().ok_or("missing parameter")?.into_f()?;
        }
        for s in self.states.iter_mut() {
            *s = out.next().ok_or("missing state")?.into_f()?;
        }
        self.grad_norms2 = out.map(|t| t.scalar()).collect::<Result<_, _>>()?;
        Ok(TrainResult {
            loss_sum: loss * batch.size as f64,
            correct,
            grad_norms2: &self.grad_norms2,
        })
    }

    fn eval_step(&mut self, batch: &Batch<'_>) -> Result<StepResult, String> {
        let eval = self.compiled(batch.size)?.eval_step.clone();
        let mut inputs = self.data_tensors(batch, false)?;
        inputs.extend(self.params.iter().map(|p| Tensor::F(p.clone())));
        let out = interp::run_f32(&eval, inputs)?;
        Ok(StepResult {
            loss_sum: out[0].scalar()? * batch.size as f64,
            correct: out[1].scalar()?,
            outputs: out[2].as_f()?.iter().copied().collect(),
        })
    }

    fn params(&self) -> Vec<NamedTensor> {
        named(&self.names, &self.params)
    }

    fn states(&self) -> Vec<NamedTensor> {
        named(&self.state_names, &self.states)
    }

    fn load(&mut self, params: &[NamedTensor], states: &[NamedTensor]) -> Result<(), String> {
        // The state tensors exist once a step function is compiled.
        if self.state_names.is_empty() {
            let batch = self.compiled.keys().next().copied().unwrap_or(1);
            self.compiled(batch)?;
        }
        replace(&self.names, &mut self.params, params)?;
        // No states given (weights for evaluation): the fresh ones stay.
        if states.is_empty() {
            return Ok(());
        }
        replace(&self.state_names, &mut self.states, states)
    }
}

fn named(names: &[String], values: &[ArrayD<f32>]) -> Vec<NamedTensor> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| NamedTensor {
            name: n.clone(),
            shape: v.shape().to_vec(),
            data: v.iter().copied().collect(),
        })
        .collect()
}

/// Replaces `values` by `new`, which must have the same names and shapes in the same order.
fn replace(
    names: &[String],
    values: &mut [ArrayD<f32>],
    new: &[NamedTensor],
) -> Result<(), String> {
    if new.len() != names.len() {
        return Err(format!(
            "expected {} tensors, found {}",
            names.len(),
            new.len()
        ));
    }
    for ((name, v), t) in names.iter().zip(values.iter_mut()).zip(new) {
        if &t.name != name || t.shape != v.shape() {
            return Err(format!(
                "expected `{name}` of shape {:?}, found `{}` of shape {:?}",
                v.shape(),
                t.name,
                t.shape
            ));
        }
        *v = ArrayD::from_shape_vec(IxDyn(&t.shape), t.data.clone()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Flat tensors with their names and shapes, in a layout's order (a compiled model's
/// parameters or states).
pub(crate) fn named_flat<'a>(
    layout: impl Iterator<Item = (&'a String, &'a Vec<usize>)>,
    data: Vec<Vec<f32>>,
) -> Vec<NamedTensor> {
    layout
        .zip(data)
        .map(|((name, shape), data)| NamedTensor {
            name: name.clone(),
            shape: shape.clone(),
            data,
        })
        .collect()
}
