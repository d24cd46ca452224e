//! The compilation pipeline from a checked model to its step functions, keeping every stage
//! for `nnc ir`:
//!
//! 1. `forward`: the model lowered ([`crate::lower`]);
//! 2. `backward`: the forward function simplified (softmax + cross-entropy fused, so the
//!    gradient is the stable (y − t)/B), then differentiated ([`crate::autodiff`]);
//! 3. `train`: the optimizer's updates appended ([`crate::optim`]): one `train_step`;
//! 4. `optimized`: `train` after the pass pipeline ([`crate::passes::optimize`]).
//!
//! `eval_step` is the forward function without dropout, optimized.

use nnc_check::Model;

use crate::function::{Function, ValueId};
use crate::lower::{self, InputSpec, LowerOptions, TargetSpec};
use crate::optim::{self, TrainStep};
use crate::passes;

/// Every stage of a model's compilation.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub forward: Function,
    pub backward: Function,
    pub train: TrainStep,
    /// `train` optimized: what runs.
    pub train_step: TrainStep,
    pub eval_step: Function,
    /// Each running statistic (a parameter of `backward` that is not differentiated) with its
    /// new value, both `backward`'s values.
    pub running: Vec<(ValueId, ValueId)>,
}

/// Compiles a model that has a train block, for batches of `batch` samples.
pub fn compile(
    model: &Model,
    batch: usize,
    input: InputSpec,
    targets: TargetSpec,
) -> Result<Compiled, String> {
    let train = model
        .train
        .as_ref()
        .ok_or_else(|| format!("model `{}` has no train block", model.name))?;
    let opts = LowerOptions {
        batch,
        training: true,
        input: input.clone(),
        targets,
        loss: train.loss,
        score: train.score(),
    };
    let fwd = lower::lower(model, &opts)?;
    let mut simplified = passes::simplify::run(&fwd.func);
    let loss = simplified.results[0];
    let named = |name: &str| {
        simplified
            .value_named(name)
            .expect("parameters keep their names")
    };
    // Running statistics are parameters of the step but not differentiated: the train step
    // returns their new values (the forward function's results after the output) instead.
    let running_names: Vec<&str> = fwd
        .running
        .iter()
        .map(|&(stat, _)| fwd.func.name_of(stat).expect("parameters are named"))
        .collect();
    let params: Vec<_> = fwd
        .params
        .iter()
        .filter(|(name, _)| !running_names.contains(&name.as_str()))
        .map(|(name, _)| named(name))
        .collect();
    let running: Vec<_> = running_names
        .iter()
        .zip(&simplified.results[3..])
        .map(|(name, &new)| (named(name), new))
        .collect();
    simplified.results.truncate(3);
    let mut backward = crate::autodiff::grad(&simplified, loss, &params)?;
    // The forward function with its gradients: named for the stage (`nnc ir --stage backward`).
    backward.name = "backward".into();
    let train_fn = optim::apply(
        &backward,
        &params,
        &running,
        &train.optimizer,
        train.weight_decay,
        !train.schedule.is_constant(),
    );
    let train_step = TrainStep {
        func: passes::optimize(&train_fn.func),
        ..train_fn.clone()
    };
    let eval = lower::lower(
        model,
        &LowerOptions {
            training: false,
            ..opts
        },
    )?;
    let eval_step = passes::optimize(&eval.func);
    Ok(Compiled {
        forward: fwd.func,
        backward,
        train: train_fn,
        train_step,
        eval_step,
        running,
    })
}
