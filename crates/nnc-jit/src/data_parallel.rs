//! Data-parallel training's two programs (`nnc_ir::data_parallel`): `gradients` on this
//! process's shard of every global batch, and `update` on the gradients summed across the
//! processes. Between the two the caller sums [`DataParallelModel::buffer`], the flat shares
//! (gradients, and running statistics' new values) and values of its own after them (so that
//! one allreduce carries everything a step sums), across processes (MPI's allreduce, in the
//! `nnc` crate) and hands the sum to [`DataParallelModel::update`]. The trained weights and
//! optimizer state live in the update program's arena, the running statistics beside it; a
//! gradients program reads them from there before every run.
//!
//! Evaluation runs on a [`CompiledModel`] given the current weights when they changed.

use std::collections::HashMap;
use std::sync::Arc;

use nnc_check::Model;
use nnc_ir::data_parallel::compile_data_parallel;
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_ir::optim::TrainStep;

use crate::compiled_model::{BatchData, CompiledModel, EvalOutput, Weights};
use crate::program::{Options, Program};
use crate::threads::Pool;

/// Where a parameter lives between steps.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// The update's k-th weight (counting its parameters after the gradients: the weights,
    /// then the optimizer states).
    Trained(usize),
    /// `DataParallelModel::running[r]`.
    Running(usize),
}

struct GradientsProgram {
    program: Program,
    data_params: usize,
}

/// What the gradients of a shard report: its share of the global batch's mean loss, and its
/// correct count (or summed absolute error).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShardOutput {
    pub loss: f64,
    pub correct: f64,
}

/// The split training step of one model, and its evaluation.
pub struct DataParallelModel {
    model: Model,
    input: InputSpec,
    targets: TargetSpec,
    /// Gradients programs by (first sample, shard, global batch): the last batch of an epoch
    /// is smaller.
    gradients: HashMap<(usize, usize, usize), GradientsProgram>,
    update: Program,
    update_step: TrainStep,
    /// Every parameter's share (its gradient, or a running statistic's new value), one after
    /// another in declaration order, then the caller's trailing values.
    flat: Vec<f32>,
    /// Where each parameter's share starts in `flat` (and, last, its length).
    offsets: Vec<usize>,
    /// Where each parameter (in declaration order) lives.
    slots: Vec<Slot>,
    /// The number of trained parameters: the update's weights.
    trained: usize,
    /// The running statistics' current values.
    running: Vec<Vec<f32>>,
    grad_norms2: Vec<f64>,
    /// Evaluation, and whether it holds the current weights.
    eval: CompiledModel,
    eval_current: bool,
    options: Options,
    pool: Arc<Pool>,
}

impl DataParallelModel {
    /// The split step of `model` with its initial weights for `seed`, on `threads` threads;
    /// the flat buffer has `trailing` values of the caller's after the gradients.
    pub fn with_threads(
        model: &Model,
        input: InputSpec,
        targets: TargetSpec,
        seed: u64,
        threads: usize,
        trailing: usize,
    ) -> Result<DataParallelModel, String> {
        let eval = CompiledModel::with_threads(model, input.clone(), targets, seed, threads)?;
        let options = Options {
            threads,
            ..Options::default()
        };
        let pool = Arc::new(Pool::new(threads));
        // The update does not depend on the batch size.
        let split = compile_data_parallel(model, 0..1, 1, input.clone(), targets)?;
        let mut update = Program::compile_on(&split.update.func, options, pool.clone())?;
        let (init, init_states) = eval.snapshot()?;
        let np = init.len();
        let mut offsets = vec![0];
        for p in &init {
            offsets.push(offsets[offsets.len() - 1] + p.len());
        }
        let (mut trained, mut running) = (Vec::new(), Vec::new());
        let slots: Vec<Slot> = init
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if split.running.contains(&i) {
                    running.push(p.clone());
                    Slot::Running(running.len() - 1)
                } else {
                    trained.push(p);
                    Slot::Trained(trained.len() - 1)
                }
            })
            .collect();
        let nt = trained.len();
        for (k, p) in trained.into_iter().chain(&init_states).enumerate() {
            update.f32_param(nt + k)?.copy_from_slice(p);
        }
        Ok(DataParallelModel {
            model: model.clone(),
            input,
            targets,
            gradients: HashMap::new(),
            update,
            update_step: split.update,
            flat: vec![0.0; offsets[np] + trailing],
            offsets,
            slots,
            trained: nt,
            running,
            grad_norms2: Vec::new(),
            eval,
            eval_current: true,
            options,
            pool,
        })
    }

    /// Runs the gradients of a shard of `batch.size` samples from sample `first` of a global
    /// batch of `global` (the shard's samples only in `batch`); they are then in
    /// [`Self::gradients`]. Once a program for the shard exists, nothing is allocated.
    pub fn run_gradients(
        &mut self,
        batch: &BatchData<'_>,
        first: usize,
        global: usize,
    ) -> Result<ShardOutput, String> {
        let key = (first, batch.size, global);
        if !self.gradients.contains_key(&key) {
            let split = compile_data_parallel(
                &self.model,
                first..first + batch.size,
                global,
                self.input.clone(),
                self.targets,
            )?;
            let program = Program::compile_on(&split.gradients, self.options, self.pool.clone())?;
            self.gradients.insert(
                key,
                GradientsProgram {
                    program,
                    data_params: split.data_params,
                },
            );
        }
        let g = self.gradients.get_mut(&key).expect("compiled above");
        let np = self.offsets.len() - 1;
        for (i, slot) in self.slots.iter().enumerate() {
            let value = match *slot {
                Slot::Trained(k) => self.update.read_f32_param(self.trained + k)?,
                Slot::Running(r) => &self.running[r],
            };
            g.program
                .f32_param(g.data_params + i)?
                .copy_from_slice(value);
        }
        CompiledModel::load_data(&mut g.program, batch, g.data_params == 3)?;
        g.program.run();
        let out = ShardOutput {
            loss: g.program.result(0)[0] as f64,
            correct: g.program.result(1)[0] as f64,
        };
        for i in 0..np {
            let (a, b) = (self.offsets[i], self.offsets[i + 1]);
            self.flat[a..b].copy_from_slice(g.program.result(2 + i));
        }
        Ok(out)
    }

    /// The latest shares (gradients, running statistics), flat, then the caller's trailing
    /// values: to be summed across processes.
    pub fn buffer(&self) -> &[f32] {
        &self.flat
    }

    /// The flat buffer, to set the trailing values.
    pub fn buffer_mut(&mut self) -> &mut [f32] {
        &mut self.flat
    }

    /// Zero shares: the contribution of a process whose shard of a batch is empty.
    pub fn zero_shares(&mut self) {
        let n = self.shares_len();
        self.flat[..n].fill(0.0);
    }

    /// The number of shared values, all parameters together (where the trailing values
    /// start).
    pub fn shares_len(&self) -> usize {
        self.offsets[self.offsets.len() - 1]
    }

    /// Applies the optimizer to `summed` (the gradients of the whole batch, flat, as in
    /// [`Self::buffer`]; trailing values are ignored) at learning rate `lr` (read only with a
    /// schedule) and takes the running statistics from it; returns each parameter's squared
    /// gradient norm (0 for a running statistic).
    pub fn update(&mut self, summed: &[f32], lr: f32) -> Result<&[f64], String> {
        if summed.len() != self.flat.len() {
            return Err(format!(
                "{} summed gradient values for {} parameters' values",
                summed.len(),
                self.flat.len()
            ));
        }
        let (nt, ns) = (self.trained, self.update_step.states.len());
        for (i, slot) in self.slots.iter().enumerate() {
            let share = &summed[self.offsets[i]..self.offsets[i + 1]];
            match *slot {
                Slot::Trained(k) => self.update.f32_param(k)?.copy_from_slice(share),
                Slot::Running(r) => self.running[r].copy_from_slice(share),
            }
        }
        if let Some(i) = self.update_step.learning_rate {
            self.update.f32_param(i)?[0] = lr;
        }
        self.update.run();
        self.grad_norms2.clear();
        for slot in &self.slots {
            self.grad_norms2.push(match *slot {
                Slot::Trained(k) => self.update.result(nt + ns + k)[0] as f64,
                Slot::Running(_) => 0.0,
            });
        }
        for k in 0..nt + ns {
            self.update.commit(k, nt + k);
        }
        self.eval_current = false;
        Ok(&self.grad_norms2)
    }

    /// One evaluation step (forward only, dropout off) with the current weights.
    pub fn eval_step(&mut self, batch: &BatchData<'_>) -> Result<EvalOutput, String> {
        if !self.eval_current {
            let (params, states) = self.snapshot()?;
            self.eval.restore(params, states)?;
            self.eval_current = true;
        }
        self.eval.eval_step(batch)
    }

    /// Parameter names and shapes, in declaration order.
    pub fn param_layout(&self) -> (&[String], &[Vec<usize>]) {
        self.eval.param_layout()
    }

    /// State names and shapes, in the update's order.
    pub fn state_layout(&self) -> &[(String, Vec<usize>)] {
        self.eval.state_layout()
    }

    /// The current parameters and optimizer states.
    pub fn snapshot(&self) -> Result<Weights, String> {
        let (nt, ns) = (self.trained, self.update_step.states.len());
        let read = |k: usize| self.update.read_f32_param(nt + k).map(<[f32]>::to_vec);
        let params = self
            .slots
            .iter()
            .map(|slot| match *slot {
                Slot::Trained(k) => read(k),
                Slot::Running(r) => Ok(self.running[r].clone()),
            })
            .collect::<Result<_, _>>()?;
        let states = (nt..nt + ns).map(read).collect::<Result<_, _>>()?;
        Ok((params, states))
    }

    /// Replaces parameters and states (resuming, or the weights another process sent);
    /// lengths must match the layouts.
    pub fn restore(&mut self, params: &[Vec<f32>], states: &[Vec<f32>]) -> Result<(), String> {
        let (nt, ns) = (self.trained, self.update_step.states.len());
        if params.len() != self.slots.len() || states.len() != ns {
            return Err("parameter or optimizer state count does not match the model".into());
        }
        let state_slots = (0..ns).map(|j| (Slot::Trained(nt + j), &states[j]));
        for (slot, p) in self.slots.iter().copied().zip(params).chain(state_slots) {
            let dest = match slot {
                Slot::Trained(k) => self.update.f32_param(nt + k)?,
                Slot::Running(r) => &mut self.running[r][..],
            };
            if dest.len() != p.len() {
                return Err("parameter or optimizer state shape does not match the model".into());
            }
            dest.copy_from_slice(p);
        }
        self.eval_current = false;
        Ok(())
    }
}
