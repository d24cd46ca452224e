//! Training and evaluation with compiled steps: the JIT behind the CLI's `Backend`.
//!
//! One program per batch size (the last batch of an epoch may be smaller), compiled on first
//! use; in a data-parallel job ([`CompiledModel::data_parallel`]), one per shard of a global
//! batch, each a whole step whose sums over the job the caller's communication does. The
//! parameters and optimizer state live in the arena of the program that ran the latest
//! training step, and move (a copy, arena to arena) only when a step of another batch size
//! (or shard) runs or an evaluation program needs fresh weights. Once every program is compiled, a
//! training step allocates nothing (tests/no_allocation.rs). The programs share one pool of
//! threads (they run one at a time).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use nnc_check::Model;
use nnc_ir::compile::compile;
use nnc_ir::data_parallel::{Shard, compile_data_parallel};
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_ir::optim::TrainStep;

use crate::program::{Options, Program, Summing};
use crate::threads::Pool;

/// A batch's data, as the data layer gathered it.
pub struct BatchData<'a> {
    pub size: usize,
    pub inputs: InputData<'a>,
    pub targets: TargetData<'a>,
    /// Seeds the dropout masks of this step.
    pub key: i32,
    /// The learning rate of this step; read only by steps with a schedule
    /// ([`TrainStep::learning_rate`]).
    pub lr: f32,
}

#[derive(Clone, Copy)]
pub enum InputData<'a> {
    U8(&'a [u8]),
    F32(&'a [f32]),
}

#[derive(Clone, Copy)]
pub enum TargetData<'a> {
    Classes(&'a [i32]),
    Values(&'a [f32]),
}

/// Parameter tensors and optimizer state tensors, flat, in their layouts' order.
pub type Weights = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// What a training step reports.
#[derive(Clone, Copy, Debug)]
pub struct TrainOutput<'a> {
    /// Mean loss over the batch.
    pub loss: f64,
    pub correct: f64,
    /// Squared gradient norm per parameter: the trainer's buffer, refilled every step.
    pub grad_norms2: &'a [f64],
}

/// What an evaluation step reports.
#[derive(Clone, Debug, Default)]
pub struct EvalOutput {
    /// Mean loss over the batch.
    pub loss: f64,
    pub correct: f64,
    /// The model's outputs, `batch × outputs`.
    pub outputs: Vec<f32>,
}

struct TrainProgram {
    step: TrainStep,
    program: Program,
    /// The parameter version its arena holds.
    version: u64,
}

struct EvalProgram {
    program: Program,
    version: u64,
}

/// Compiled training and evaluation of one model.
pub struct CompiledModel {
    model: Model,
    input: InputSpec,
    targets: TargetSpec,
    /// Training programs by the shard they train on (the whole batch, in one process).
    train: HashMap<Shard, TrainProgram>,
    eval: HashMap<usize, EvalProgram>,
    /// Whether the training steps are data-parallel ones, summing over a job.
    data_parallel: bool,
    /// Incremented by every training step; `owner` holds the newest parameters.
    version: u64,
    owner: Option<Shard>,
    /// Parameters and states to start from, until a program holds newer ones.
    initial: Vec<Vec<f32>>,
    initial_states: Vec<Vec<f32>>,
    param_names: Vec<String>,
    param_shapes: Vec<Vec<usize>>,
    states: Vec<(String, Vec<usize>)>,
    /// The latest step's squared gradient norms (reused: no allocation per step).
    grad_norms2: Vec<f64>,
    /// How the programs are compiled (their thread count).
    options: Options,
    /// The threads every program runs on.
    pool: Arc<Pool>,
}

impl CompiledModel {
    /// A trainer with the model's initial weights for `seed`, on [`Options::default`]'s
    /// threads.
    pub fn new(
        model: &Model,
        input: InputSpec,
        targets: TargetSpec,
        seed: u64,
    ) -> Result<CompiledModel, String> {
        CompiledModel::with_threads(model, input, targets, seed, Options::default().threads)
    }

    /// A trainer with the model's initial weights for `seed`, its programs running on
    /// `threads` threads (1 to [`crate::MAX_THREADS`]; results are bitwise reproducible for a
    /// given count).
    pub fn with_threads(
        model: &Model,
        input: InputSpec,
        targets: TargetSpec,
        seed: u64,
        threads: usize,
    ) -> Result<CompiledModel, String> {
        if !(1..=crate::MAX_THREADS).contains(&threads) {
            return Err(format!(
                "{threads} threads: the JIT runs on 1 to {} threads",
                crate::MAX_THREADS
            ));
        }
        let options = Options {
            threads,
            ..Options::default()
        };
        let init = nnc_ir::init::init_params(model, seed);
        // The optimizer state's layout does not depend on the batch size.
        let layout = compile(model, 1, input.clone(), targets)?.train_step.states;
        Ok(CompiledModel {
            model: model.clone(),
            input,
            targets,
            train: HashMap::new(),
            eval: HashMap::new(),
            data_parallel: false,
            version: 0,
            owner: None,
            param_names: init.iter().map(|t| t.name.clone()).collect(),
            param_shapes: init.iter().map(|t| t.shape.clone()).collect(),
            initial: init.into_iter().map(|t| t.data).collect(),
            initial_states: layout
                .iter()
                .map(|s| vec![s.init as f32; s.ty.numel()])
                .collect(),
            states: layout
                .iter()
                .map(|s| (s.name.clone(), s.ty.shape.clone()))
                .collect(),
            grad_norms2: Vec::new(),
            options,
            pool: Arc::new(Pool::new(threads)),
        })
    }

    /// The same model trained by one process of a data-parallel job: its steps
    /// ([`CompiledModel::train_shard`]) take a shard of each global batch and sum their
    /// gradients over the job before the update.
    pub fn data_parallel(
        model: &Model,
        input: InputSpec,
        targets: TargetSpec,
        seed: u64,
        threads: usize,
    ) -> Result<CompiledModel, String> {
        let mut m = CompiledModel::with_threads(model, input, targets, seed, threads)?;
        m.data_parallel = true;
        Ok(m)
    }

    fn ensure_train(&mut self, shard: Shard) -> Result<(), String> {
        if self.train.contains_key(&shard) {
            return Ok(());
        }
        let (input, targets) = (self.input.clone(), self.targets);
        let step = if self.data_parallel {
            compile_data_parallel(&self.model, shard, input, targets)?
        } else if shard == Shard::whole(shard.len) {
            compile(&self.model, shard.len, input, targets)?.train_step
        } else {
            return Err("a shard of a batch trained by one process".into());
        };
        let program = Program::compile_on(&step.func, self.options, self.pool.clone())?;
        self.train.insert(
            shard,
            TrainProgram {
                step,
                program,
                version: u64::MAX,
            },
        );
        Ok(())
    }

    /// Copies the newest parameters and states into the training program for `batch`,
    /// arena to arena (no allocation).
    fn sync_train(&mut self, batch: Shard) -> Result<(), String> {
        self.ensure_train(batch)?;
        let target_version = self.train[&batch].version;
        if target_version == self.version && self.owner.is_some() {
            return Ok(());
        }
        match self.owner {
            // It holds the newest already (its version lags only after `restore`, which
            // clears the owner).
            Some(b) if b == batch => {}
            Some(b) => {
                let [Some(from), Some(to)] = self.train.get_disjoint_mut([&b, &batch]) else {
                    return Err(format!("no program for {b:?} or {batch:?}"));
                };
                let (dp, dq) = (from.step.data_params, to.step.data_params);
                let n = from.step.params.len() + from.step.states.len();
                for i in 0..n {
                    let src = from.program.read_f32_param(dp + i)?;
                    to.program.f32_param(dq + i)?.copy_from_slice(src);
                }
            }
            None => {
                let t = self.train.get_mut(&batch).expect("compiled above");
                let dp = t.step.data_params;
                for (i, p) in self.initial.iter().chain(&self.initial_states).enumerate() {
                    t.program.f32_param(dp + i)?.copy_from_slice(p);
                }
            }
        }
        self.train.get_mut(&batch).expect("compiled above").version = self.version;
        Ok(())
    }

    /// The newest parameters and optimizer states.
    fn current(&self) -> Result<Weights, String> {
        match self.owner {
            None => Ok((self.initial.clone(), self.initial_states.clone())),
            Some(b) => {
                let t = &self.train[&b];
                let dp = t.step.data_params;
                let np = t.step.params.len();
                let ns = t.step.states.len();
                let read = |i: usize| t.program.read_f32_param(dp + i).map(|s| s.to_vec());
                let params = (0..np).map(read).collect::<Result<_, _>>()?;
                let states = (np..np + ns).map(read).collect::<Result<_, _>>()?;
                Ok((params, states))
            }
        }
    }

    pub(crate) fn load_data(
        program: &mut Program,
        batch: &BatchData<'_>,
        key: bool,
    ) -> Result<(), String> {
        match batch.inputs {
            InputData::U8(x) => program.u8_param(0)?.copy_from_slice(x),
            InputData::F32(x) => program.f32_param(0)?.copy_from_slice(x),
        }
        match batch.targets {
            TargetData::Classes(t) => program.i32_param(1)?.copy_from_slice(t),
            TargetData::Values(t) => program.f32_param(1)?.copy_from_slice(t),
        }
        if key {
            program.i32_param(2)?[0] = batch.key;
        }
        Ok(())
    }

    /// One training step on `batch`. Once a program for its size exists, nothing is
    /// allocated.
    pub fn train_step(&mut self, batch: &BatchData<'_>) -> Result<TrainOutput<'_>, String> {
        let shard = Shard::whole(batch.size);
        let mut copy = |send: &[f32], recv: &mut [f32], _| {
            recv.copy_from_slice(send);
            ControlFlow::Continue(())
        };
        let out = self.train_shard(batch, shard, &mut copy)?;
        out.ok_or_else(|| "a step of one process stopped at a sum".to_string())
    }

    /// One training step of a data-parallel job on `batch`, this process's samples `shard`
    /// of the global batch (one sample, weighted zero, when the shard is empty); `sum` sums
    /// over the job (see [`Program::run_summing`]). The loss, count and gradient norms are the
    /// global batch's; `None` if `sum` stopped the step, which then changed nothing. Once a
    /// program for the shard exists, nothing is allocated.
    pub fn train_shard(
        &mut self,
        batch: &BatchData<'_>,
        shard: Shard,
        sum: &mut Summing<'_>,
    ) -> Result<Option<TrainOutput<'_>>, String> {
        if batch.size != shard.step_samples() {
            return Err(format!(
                "{} samples for a step of {}",
                batch.size,
                shard.step_samples()
            ));
        }
        self.sync_train(shard)?;
        let t = self.train.get_mut(&shard).expect("synced");
        let dp = t.step.data_params;
        Self::load_data(&mut t.program, batch, dp == 3)?;
        if let Some(i) = t.step.learning_rate {
            t.program.f32_param(i)?[0] = batch.lr;
        }
        if t.program.run_summing(sum).is_break() {
            return Ok(None);
        }
        let np = t.step.params.len();
        let ns = t.step.states.len();
        let loss = t.program.result(0)[0] as f64;
        let correct = t.program.result(1)[0] as f64;
        self.grad_norms2.clear();
        self.grad_norms2
            .extend((0..np).map(|i| t.program.result(2 + np + ns + i)[0] as f64));
        for k in 0..np + ns {
            t.program.commit(2 + k, dp + k);
        }
        self.version += 1;
        t.version = self.version;
        self.owner = Some(shard);
        Ok(Some(TrainOutput {
            loss,
            correct,
            grad_norms2: &self.grad_norms2,
        }))
    }

    /// The lengths of the sums over the job that a step on `shard` does, in order (the same
    /// for every shard of a model), compiling its program if needed.
    pub fn sum_lengths(&mut self, shard: Shard) -> Result<Vec<usize>, String> {
        self.ensure_train(shard)?;
        Ok(self.train[&shard].program.sum_lengths())
    }

    /// One evaluation step (forward only, dropout off) on `batch`.
    pub fn eval_step(&mut self, batch: &BatchData<'_>) -> Result<EvalOutput, String> {
        if !self.eval.contains_key(&batch.size) {
            let c = compile(&self.model, batch.size, self.input.clone(), self.targets)?;
            let program = Program::compile_on(&c.eval_step, self.options, self.pool.clone())?;
            self.eval.insert(
                batch.size,
                EvalProgram {
                    program,
                    version: u64::MAX,
                },
            );
        }
        if self.eval[&batch.size].version != self.version {
            // The newest weights, arena to arena.
            let e = self.eval.get_mut(&batch.size).expect("compiled above");
            match self.owner {
                Some(b) => {
                    let t = &self.train[&b];
                    let dp = t.step.data_params;
                    for i in 0..t.step.params.len() {
                        let src = t.program.read_f32_param(dp + i)?;
                        e.program.f32_param(2 + i)?.copy_from_slice(src);
                    }
                }
                None => {
                    for (i, p) in self.initial.iter().enumerate() {
                        e.program.f32_param(2 + i)?.copy_from_slice(p);
                    }
                }
            }
            e.version = self.version;
        }
        let e = self.eval.get_mut(&batch.size).expect("compiled above");
        Self::load_data(&mut e.program, batch, false)?;
        e.program.run();
        Ok(EvalOutput {
            loss: e.program.result(0)[0] as f64,
            correct: e.program.result(1)[0] as f64,
            outputs: e.program.result(2).to_vec(),
        })
    }

    /// Parameter names and shapes, in declaration order.
    pub fn param_layout(&self) -> (&[String], &[Vec<usize>]) {
        (&self.param_names, &self.param_shapes)
    }

    /// State names and shapes, in the train step's order.
    pub fn state_layout(&self) -> &[(String, Vec<usize>)] {
        &self.states
    }

    /// The newest parameters and optimizer states.
    pub fn snapshot(&self) -> Result<Weights, String> {
        self.current()
    }

    /// Replaces parameters and states (resuming); lengths must match the layouts.
    pub fn restore(&mut self, params: Vec<Vec<f32>>, states: Vec<Vec<f32>>) -> Result<(), String> {
        let fits = |new: &[Vec<f32>], old: &[Vec<f32>]| {
            new.len() == old.len() && new.iter().zip(old).all(|(a, b)| a.len() == b.len())
        };
        if !fits(&params, &self.initial) {
            return Err("parameter shapes do not match the model".into());
        }
        if !fits(&states, &self.initial_states) {
            return Err("optimizer state shapes do not match the model".into());
        }
        self.initial = params;
        self.initial_states = states;
        self.owner = None;
        self.version += 1;
        Ok(())
    }

    /// The training program for `batch`, compiled if needed (for `nnc bench` and dumps).
    pub fn train_program(&mut self, batch: usize) -> Result<&mut Program, String> {
        let shard = Shard::whole(batch);
        self.ensure_train(shard)?;
        Ok(&mut self.train.get_mut(&shard).expect("compiled").program)
    }
}
