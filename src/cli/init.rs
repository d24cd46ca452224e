//! `nnc init`: the weights a training run starts from, written as a checkpoint, so that another
//! framework can start from the same point (`bench/twin.py` loads them into its PyTorch twin).

use std::path::PathBuf;

use nnc::backend::BackendKind;
use nnc::trainer::Trainer;

use super::{Outcome, Ui, fail};

/// `nnc init` options.
pub struct InitCommand {
    pub file: PathBuf,
    pub model: Option<String>,
    /// Where to write the checkpoint.
    pub out: PathBuf,
    /// The initialisation seed (default: the train block's), as `nnc train --seed`.
    pub seed: Option<u64>,
    /// Directory holding the MNIST files.
    pub data: Option<PathBuf>,
}

/// Writes the initial weights of `nnc train FILE [--seed N]` to `opts.out`, in the checkpoint
/// format `train` writes (epoch 0, step 0, the optimizer's initial state), which `eval
/// --weights` and `predict --weights` read.
pub fn run(opts: &InitCommand, ui: &Ui) -> Outcome {
    let project = match super::load(&opts.file, opts.model.as_deref(), true, ui) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let Some(train) = project.model.train.clone() else {
        return fail("the model has no train block");
    };
    let seed = opts.seed.unwrap_or(train.seed);
    // The trainer is built as `train` builds it (the data checked against the model, the
    // weights drawn from `seed`), so the checkpoint is the run's starting point.
    let data = match project.load_data(opts.data.as_deref()) {
        Ok(d) => d,
        Err(e) => return ui.report(&e),
    };
    let trainer = match Trainer::new(
        &project.model,
        data,
        BackendKind::default(),
        seed,
        train.batch,
    ) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let checkpoint = trainer.checkpoint(&project, 0);
    if let Err(e) = checkpoint.save(&opts.out) {
        return fail(e);
    }
    eprintln!(
        "initial weights of `{}` (seed {seed}, {} tensors) written to {}",
        project.model.name,
        checkpoint.params.len(),
        opts.out.display()
    );
    Outcome::Ok
}
