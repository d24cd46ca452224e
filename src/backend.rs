//! The engines that run a compiled step. The training driver talks to [`Backend`] only, so it
//! does not care whether the step is interpreted or compiled to machine code.

use std::collections::HashMap;

use ndarray::{ArrayD, IxDyn};
use nnc_check::Model;
use nnc_ir::compile::{Compiled, compile};
use nnc_ir::interp::{self, Tensor};
use nnc_ir::lower::{InputSpec, TargetSpec};

/// One batch, as the data layer gathered it.
pub struct Batch<'a> {
    pub size: usize,
    pub inputs: BatchInputs<'a>,
    pub targets: BatchTargets<'a>,
    /// Seeds dropout; differs every step.
    pub key: i32,
}

#[derive(Clone, Copy)]
pub enum BatchInputs<'a> {
    U8(&'a [u8]),
    F32(&'a [f32]),
}

#[derive(Clone, Copy)]
pub enum BatchTargets<'a> {
    Classes(&'a [i32]),
    Values(&'a [f32]),
}

/// Loss summed over the batch's samples, and the number of correct predictions.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepResult {
    pub loss_sum: f64,
    pub correct: f64,
}

/// Something that runs training and evaluation steps and owns the parameters.
pub trait Backend {
    fn train_step(&mut self, batch: &Batch<'_>) -> Result<StepResult, String>;
    fn eval_step(&mut self, batch: &Batch<'_>) -> Result<StepResult, String>;
}

/// The reference interpreter as a backend: slow, simple, exact.
pub struct Interp {
    model: Model,
    input: InputSpec,
    targets: TargetSpec,
    /// Compiled steps per batch size (the last batch of an epoch may be smaller).
    compiled: HashMap<usize, Compiled>,
    params: Vec<ArrayD<f32>>,
    states: Vec<ArrayD<f32>>,
}

impl Interp {
    pub fn new(model: &Model, input: InputSpec, targets: TargetSpec, seed: u64) -> Interp {
        let init = nnc_ir::init::init_params(model, seed);
        Interp {
            model: model.clone(),
            input,
            targets,
            compiled: HashMap::new(),
            params: init
                .into_iter()
                .map(|t| ArrayD::from_shape_vec(IxDyn(&t.shape), t.data).expect("init shape"))
                .collect(),
            states: Vec::new(),
        }
    }

    pub fn compiled(&mut self, batch: usize) -> Result<&Compiled, String> {
        if !self.compiled.contains_key(&batch) {
            let c = compile(&self.model, batch, self.input.clone(), self.targets)?;
            if self.states.is_empty() {
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
    fn train_step(&mut self, batch: &Batch<'_>) -> Result<StepResult, String> {
        let step = self.compiled(batch.size)?.train_step.clone();
        let mut inputs = self.data_tensors(batch, step.data_params == 3)?;
        inputs.extend(self.params.iter().map(|p| Tensor::F(p.clone())));
        inputs.extend(self.states.iter().map(|s| Tensor::F(s.clone())));
        let mut out = interp::run_f32(&step.func, inputs)?.into_iter();
        let loss = out.next().ok_or("no loss")?.scalar()?;
        let correct = out.next().ok_or("no count")?.scalar()?;
        for p in self.params.iter_mut() {
            *p = out.next().ok_or("missing parameter")?.into_f()?;
        }
        for s in self.states.iter_mut() {
            *s = out.next().ok_or("missing state")?.into_f()?;
        }
        Ok(StepResult {
            loss_sum: loss * batch.size as f64,
            correct,
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
        })
    }
}
