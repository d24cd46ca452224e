//! `nnc ir` and `nnc gradcheck`: the compiler's insides, for people and tests.

use std::path::Path;

use clap::ValueEnum;
use nnc_ir::print::print;

use crate::project::{self, Project};
use crate::{Outcome, Ui};

/// A stage of compilation (see ARCHITECTURE.md, "The IR").
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Stage {
    /// The model lowered to forward ops.
    Forward,
    /// The forward function with the derived gradients of every parameter.
    Backward,
    /// One training step: forward, backward and optimizer updates.
    Train,
    /// The training step after the optimization passes.
    Optimized,
    /// The evaluation step (forward only, dropout off), optimized.
    Eval,
}

fn load(
    file: &Path,
    model: Option<&str>,
    ui: &Ui,
) -> Result<(Project, project::LoadedSpec), Outcome> {
    let project = project::load(file, model, true, ui)?;
    match project::specs(&project) {
        Ok(spec) => Ok((project, spec)),
        Err(e) => {
            eprintln!("error: {e}");
            Err(Outcome::Failed)
        }
    }
}

/// Runs `nnc ir`: prints a stage of the model's compilation.
pub fn run(
    file: &Path,
    model: Option<&str>,
    stage: Stage,
    batch: Option<usize>,
    ui: &Ui,
) -> Outcome {
    let (project, spec) = match load(file, model, ui) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let batch = batch.unwrap_or(spec.batch);
    let compiled = match nnc_ir::compile::compile(&project.model, batch, spec.input, spec.targets) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
    };
    let f = match stage {
        Stage::Forward => &compiled.forward,
        Stage::Backward => &compiled.backward,
        Stage::Train => &compiled.train.func,
        Stage::Optimized => &compiled.train_step.func,
        Stage::Eval => &compiled.eval_step,
    };
    print!("{}", print(f));
    Outcome::Ok
}

/// Runs `nnc gradcheck`.
pub fn gradcheck(
    file: &Path,
    model: Option<&str>,
    batch: usize,
    samples: usize,
    seed: u64,
    ui: &Ui,
) -> Outcome {
    let (project, spec) = match load(file, model, ui) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let report = match nnc_ir::gradcheck::check_model(
        &project.model,
        &spec.input,
        spec.targets,
        batch.max(1),
        samples.max(1),
        seed,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
    };
    println!(
        "gradcheck `{}`: batch {batch}, f64, five-point central differences (h = {:e}), tolerance {:e}",
        project.model.name,
        nnc_ir::gradcheck::H,
        nnc_ir::gradcheck::TOLERANCE
    );
    println!(
        "{:<24} {:>8} {:>8} {:>12} {:>12}  ",
        "parameter", "checked", "skipped", "max |grad|", "rel. error"
    );
    let mut ok = true;
    for p in &report {
        ok &= p.passed();
        println!(
            "{:<24} {:>8} {:>8} {:>12.3e} {:>12.3e}  {}",
            p.name,
            p.checked,
            p.skipped,
            p.max_grad,
            p.error,
            if p.passed() { "ok" } else { "FAIL" }
        );
    }
    if ok { Outcome::Ok } else { Outcome::Invalid }
}
