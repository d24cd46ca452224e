//! `nnc ir` and `nnc gradcheck`: the compiler's insides, for people and tests.

use std::path::Path;

use clap::ValueEnum;
use nnc_ir::print::print;

use nnc::Project;
use nnc::project::LoadedSpec;

use super::{Outcome, Ui};

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
    /// The JIT's kernel schedule of the training step: what each kernel fuses, its buffers
    /// and their arena offsets.
    Kernels,
}

fn load(file: &Path, model: Option<&str>, ui: &Ui) -> Result<(Project, LoadedSpec), Outcome> {
    let project = super::load(file, model, true, ui)?;
    match project.data_layout() {
        Ok(spec) => Ok((project, spec)),
        Err(e) => Err(ui.report(&e)),
    }
}

/// `--emit`: what to print.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Emit {
    /// The stage's IR (for `--stage kernels`, the schedule).
    #[default]
    Ir,
    /// The Cranelift IR of every generated loop of the training step.
    Clif,
}

/// Runs `nnc ir`: prints a stage of the model's compilation. With [`Emit::Clif`] the stage is
/// not read: the generated loops are always the training step's.
pub fn run(
    file: &Path,
    model: Option<&str>,
    stage: Stage,
    emit: Emit,
    batch: Option<usize>,
    threads: usize,
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
        _ if matches!(emit, Emit::Clif) => &compiled.train_step.func,
        Stage::Forward => &compiled.forward,
        Stage::Backward => &compiled.backward,
        Stage::Train => &compiled.train.func,
        Stage::Optimized | Stage::Kernels => &compiled.train_step.func,
        Stage::Eval => &compiled.eval_step,
    };
    if matches!(stage, Stage::Kernels) || matches!(emit, Emit::Clif) {
        let options = nnc_jit::Options {
            keep_clif: matches!(emit, Emit::Clif),
            threads,
            ..Default::default()
        };
        let program = match nnc_jit::Program::compile(f, options) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return Outcome::Failed;
            }
        };
        match emit {
            Emit::Clif => print!("{}", program.clif.unwrap_or_default().join("\n")),
            Emit::Ir => print!("{}", program.describe()),
        }
        return Outcome::Ok;
    }
    print!("{}", print(f));
    Outcome::Ok
}

/// How `nnc bench` runs.
pub struct BenchRun {
    /// Default: the train block's.
    pub batch: Option<usize>,
    pub iterations: usize,
    pub threads: usize,
    /// Above 1: rank 0's step of a data-parallel job of that many processes.
    pub ranks: usize,
    pub json: bool,
    /// The evaluation step instead of the training step.
    pub eval: bool,
}

/// Runs `nnc bench`: compile time, step time and the kernel profile of the training step, or
/// with `eval` the evaluation step's latency and throughput.
pub fn bench(file: &Path, model: Option<&str>, run: BenchRun, ui: &Ui) -> Outcome {
    let start = std::time::Instant::now();
    let (project, spec) = match load(file, model, ui) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let front_end_ms = start.elapsed().as_secs_f64() * 1e3;
    let batch = run.batch.unwrap_or(spec.batch);
    // The first test images, if the model's data can be read (sparse contractions depend on
    // their zeros); otherwise synthetic data.
    let images = project
        .load_test_data(None)
        .ok()
        .and_then(|d| match d.test.inputs {
            nnc_data::Inputs::U8 { data, sample } => {
                let n = sample.iter().product::<usize>().saturating_mul(batch);
                Some(data[..n.min(data.len())].to_vec())
            }
            nnc_data::Inputs::F32 { .. } => None,
        });
    let steps = (run.iterations.clamp(1, 20), run.iterations.max(1));
    let io = (spec.input, spec.targets);
    let rendered = if run.eval {
        nnc_jit::bench::run_eval(
            &project.model,
            batch,
            io,
            images.as_deref(),
            steps,
            run.threads,
        )
        .map(|mut report| {
            report.compile_ms += front_end_ms;
            if run.json {
                serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
            } else {
                report.render()
            }
        })
    } else {
        nnc_jit::bench::run(
            &project.model,
            batch,
            io,
            images.as_deref(),
            steps,
            (run.threads, run.ranks),
        )
        .map(|mut report| {
            // Parse → JIT ready, as the issue counts it.
            report.compile_ms += front_end_ms;
            if run.json {
                serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
            } else {
                report.render(20)
            }
        })
    };
    match rendered {
        Ok(text) => {
            print!("{text}");
            Outcome::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            Outcome::Failed
        }
    }
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
