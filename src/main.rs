//! `nnc`: the command-line interface, a thin layer over the library (`src/lib.rs`).
//!
//! Exit codes: 0 success, 1 the model is wrong (diagnostics printed) or training diverged,
//! 2 usage, I/O or data errors, 130 training stopped by Ctrl-C (a checkpoint was written).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use nnc::BackendKind;

mod cli;

use cli::{Ui, check, eval, export, graph, init, ir, predict, train};

#[derive(Parser)]
#[command(name = "nnc", version, about = "A compiler for neural networks", long_about = None)]
struct Cli {
    /// When to colour diagnostics.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

/// `--backend`: which engine runs the steps.
#[derive(Clone, Copy, Default, ValueEnum)]
enum Backend {
    /// Compiled: fused Cranelift kernels and vectorised GEMMs over a static arena.
    #[default]
    Jit,
    /// The reference interpreter: exact, and the oracle the compiled backends are tested against.
    Interp,
}

impl From<Backend> for BackendKind {
    fn from(b: Backend) -> BackendKind {
        match b {
            Backend::Jit => BackendKind::Jit,
            Backend::Interp => BackendKind::Interp,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Parse and shape-check models; print a summary of each.
    Check {
        /// `.nn` files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the summaries as JSON (an array when there are several models).
        #[arg(long)]
        json: bool,
    },
    /// Draw a model: a box per layer (name, kind, output shape, parameters), arrows for the
    /// data flow, branches side by side; SVG drawn by nnc itself, or Graphviz DOT.
    Graph {
        /// The `.nn` file.
        file: PathBuf,
        /// Write the picture here (default: stdout); a name ending in `.dot` or `.gv` gets DOT.
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Write Graphviz DOT instead of SVG.
        #[arg(long)]
        dot: bool,
        /// The model, when the file holds several.
        #[arg(long)]
        model: Option<String>,
    },
    /// Compile a model and train it on its data; metrics, plots and checkpoints go to a run
    /// directory.
    Train {
        /// The `.nn` file holding the model and its train block.
        file: PathBuf,
        /// The model to train, when the file holds several.
        #[arg(long)]
        model: Option<String>,
        /// Epochs in all, counting those of a resumed run (overrides the train block).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        epochs: Option<u64>,
        /// Batch size (overrides the train block).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
        batch: Option<u64>,
        /// Seed for initialisation, shuffling, augmentation and dropout (overrides the train
        /// block).
        #[arg(long)]
        seed: Option<u64>,
        /// Directory holding the MNIST files (default: the project's data/mnist).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The run directory for metrics, plots and checkpoints (default: runs/<model>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue from the run directory's checkpoint.
        #[arg(long)]
        resume: bool,
        /// Which engine runs the steps.
        #[arg(long, value_enum, default_value_t = Backend::default())]
        backend: Backend,
        /// Threads the compiled steps run on (default: the available parallelism); results
        /// are bitwise reproducible for a given count.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=nnc::backend::MAX_THREADS as u64))]
        threads: Option<u64>,
        /// One JSON object per epoch on stdout, then a summary object.
        #[arg(long)]
        json: bool,
        /// Resume from weights trained from another version of the `.nn` file whose layers or data
        /// settings differ (their parameter names and shapes must still fit).
        #[arg(long)]
        allow_changed_model: bool,
        /// Behave as if Ctrl-C came after this many steps (for tests).
        #[arg(long, hide = true)]
        stop_after_steps: Option<u64>,
        /// Write a checkpoint after every epoch, not at most every 5 s (for tests).
        #[arg(long, hide = true)]
        save_every_epoch: bool,
    },
    /// Write the weights `train` would start from (for the same seed) as a checkpoint, for
    /// another framework to start from the same point.
    Init {
        /// The `.nn` file holding the model and its train block.
        file: PathBuf,
        /// Where to write the checkpoint (a .safetensors file, as `train` writes; `eval
        /// --weights` reads it).
        #[arg(short, long)]
        out: PathBuf,
        /// The model, when the file holds several.
        #[arg(long)]
        model: Option<String>,
        /// Seed for initialisation (default: the train block's), as `train --seed`.
        #[arg(long)]
        seed: Option<u64>,
        /// Directory holding the MNIST files (default: the project's data/mnist).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Evaluate saved weights on the model's test data: loss, accuracy, per-class accuracy.
    Eval {
        /// The `.nn` file the weights were trained from.
        file: PathBuf,
        /// A checkpoint written by `nnc train` (a .safetensors file); default: the checkpoint
        /// in the model's run directory (runs/<model>/checkpoint.safetensors).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// The model, when the file holds several.
        #[arg(long)]
        model: Option<String>,
        /// Directory holding the MNIST files (default: the project's data/mnist).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Batch size (default: the train block's).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
        batch: Option<u64>,
        /// Which engine runs the steps.
        #[arg(long, value_enum, default_value_t = Backend::default())]
        backend: Backend,
        /// Threads the compiled steps run on (default: the available parallelism); results
        /// are bitwise reproducible for a given count.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=nnc::backend::MAX_THREADS as u64))]
        threads: Option<u64>,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// Use weights trained from another version of the `.nn` file whose layers or data
        /// settings differ (their parameter names and shapes must still fit).
        #[arg(long)]
        allow_changed_model: bool,
    },
    /// Predict with saved weights: classify images (PNG or PGM, any size) for a model trained
    /// on images, or answer rows of numbers (CSV files, or standard input) for other models.
    Predict {
        /// The `.nn` file the weights were trained from.
        file: PathBuf,
        /// A checkpoint written by `nnc train` (a .safetensors file); default: the checkpoint
        /// in the model's run directory (runs/<model>/checkpoint.safetensors).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// The images to classify (a directory: its PNG and PGM files, in name order), or CSV files of input rows (`-` or none: standard input).
        inputs: Vec<PathBuf>,
        /// The model, when the file holds several.
        #[arg(long)]
        model: Option<String>,
        /// Which engine runs the steps.
        #[arg(long, value_enum, default_value_t = Backend::default())]
        backend: Backend,
        /// Threads the compiled steps run on (default: the available parallelism); results
        /// are bitwise reproducible for a given count.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=nnc::backend::MAX_THREADS as u64))]
        threads: Option<u64>,
        /// One JSON object per image.
        #[arg(long)]
        json: bool,
        /// Use weights trained from another version of the `.nn` file whose layers or data
        /// settings differ (their parameter names and shapes must still fit).
        #[arg(long)]
        allow_changed_model: bool,
    },
    /// Export a model with its weights for another framework: an ONNX model of the evaluation
    /// function that takes the data as stored (raw pixels), preprocessing included, or a
    /// PyTorch module and its state dict.
    Export {
        /// The `.nn` file the weights were trained from.
        file: PathBuf,
        /// A checkpoint written by `nnc train` or `nnc init` (a .safetensors file); default:
        /// the checkpoint in the model's run directory (runs/<model>/checkpoint.safetensors).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Write an ONNX model (IR version 8, opset 13, a symbolic batch axis) to this file.
        #[arg(long)]
        onnx: Option<PathBuf>,
        /// Write a PyTorch module (model.py) and its state dict (model.safetensors) to this
        /// directory.
        #[arg(long)]
        pytorch: Option<PathBuf>,
        /// The model, when the file holds several.
        #[arg(long)]
        model: Option<String>,
        /// Use weights trained from another version of the `.nn` file whose layers or data
        /// settings differ (their parameter names and shapes must still fit).
        #[arg(long)]
        allow_changed_model: bool,
    },
    /// Print a model's IR at a stage of compilation.
    Ir {
        /// The `.nn` file.
        file: PathBuf,
        /// The model, when the file holds several.
        #[arg(long)]
        model: Option<String>,
        /// Which stage to print (default: optimized).
        #[arg(long, value_enum)]
        stage: Option<ir::Stage>,
        /// What to print: the stage's IR, or the Cranelift IR of the training step's generated
        /// loops (with no --stage, or --stage kernels).
        #[arg(long, value_enum, default_value_t = ir::Emit::Ir)]
        emit: ir::Emit,
        /// Batch size (default: the train block's).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
        batch: Option<u64>,
        /// The threads the kernels are planned for (default: the available parallelism).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=nnc::backend::MAX_THREADS as u64))]
        threads: Option<u64>,
    },
    /// Time the compiled training step: compile time, step time, images/s, GFLOP/s and a
    /// per-kernel profile, on the first test images of the model's data when they can be read
    /// (else on synthetic data).
    Bench {
        /// The `.nn` file.
        file: PathBuf,
        /// The model, when the file holds several.
        #[arg(long)]
        model: Option<String>,
        /// Batch size (default: the train block's).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
        batch: Option<u64>,
        /// Timed steps.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
        iterations: u64,
        /// Threads the compiled steps run on (default: the available parallelism); results
        /// are bitwise reproducible for a given count.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=nnc::backend::MAX_THREADS as u64))]
        threads: Option<u64>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
        /// Time the evaluation step (inference: forward only, dropout off) instead of the
        /// training step: latency per batch (p50, p99) and images/s.
        #[arg(long)]
        eval: bool,
        /// Time the training step of rank 0 of a data-parallel job of this many processes
        /// (`nnc train` under `mpirun -np N`): its shard of the batch, with its sums over the
        /// ranks run as copies (without the communication).
        #[arg(long, default_value_t = 1, conflicts_with = "eval",
              value_parser = clap::value_parser!(u64).range(1..=1 << 16))]
        ranks: u64,
    },
    /// Compare derived gradients with finite differences, in f64.
    Gradcheck {
        /// The `.nn` file.
        file: PathBuf,
        /// The model, when the file holds several.
        #[arg(long)]
        model: Option<String>,
        /// Samples in the batch (the check runs in f64 on the interpreter: keep it small).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=4096))]
        batch: u64,
        /// Elements checked per parameter tensor (all of them when it is smaller).
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..))]
        samples: u64,
        /// Seed for the weights and the random batch.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    end_quietly_on_closed_pipes();
    let cli = Cli::parse();
    let ui = Ui {
        color: match cli.color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        },
        width: std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .filter(|&w: &usize| w >= 40)
            .unwrap_or(100),
    };
    let outcome = match cli.command {
        Command::Check { files, json } => check::run(&files, json, &ui),
        Command::Graph {
            file,
            out,
            dot,
            model,
        } => graph::run(
            &graph::GraphCommand {
                file,
                model,
                out,
                dot,
            },
            &ui,
        ),
        Command::Train {
            file,
            model,
            epochs,
            batch,
            seed,
            data,
            out,
            resume,
            backend,
            threads,
            json,
            allow_changed_model,
            stop_after_steps,
            save_every_epoch,
        } => train::run(
            &train::TrainCommand {
                file,
                model,
                epochs: epochs.map(saturating_usize),
                batch: batch.map(saturating_usize),
                seed,
                data,
                out,
                resume,
                backend: backend.into(),
                threads: threads.map(saturating_usize),
                json,
                allow_changed_model,
                stop_after_steps,
                save_every_epoch,
            },
            &ui,
        ),
        Command::Init {
            file,
            out,
            model,
            seed,
            data,
        } => init::run(
            &init::InitCommand {
                file,
                model,
                out,
                seed,
                data,
            },
            &ui,
        ),
        Command::Eval {
            file,
            weights,
            model,
            data,
            batch,
            backend,
            threads,
            json,
            allow_changed_model,
        } => eval::run(
            &eval::EvalCommand {
                file,
                weights,
                model,
                data,
                batch: batch.map(saturating_usize),
                backend: backend.into(),
                threads: threads.map(saturating_usize),
                json,
                allow_changed_model,
            },
            &ui,
        ),
        Command::Predict {
            file,
            weights,
            inputs,
            model,
            backend,
            threads,
            json,
            allow_changed_model,
        } => predict::run(
            &predict::PredictCommand {
                file,
                weights,
                inputs,
                model,
                backend: backend.into(),
                threads: threads.map(saturating_usize),
                json,
                allow_changed_model,
            },
            &ui,
        ),
        Command::Export {
            file,
            weights,
            onnx,
            pytorch,
            model,
            allow_changed_model,
        } => export::run(
            &export::ExportCommand {
                file,
                weights,
                model,
                onnx,
                pytorch,
                allow_changed_model,
            },
            &ui,
        ),
        Command::Ir {
            file,
            model,
            stage,
            emit,
            batch,
            threads,
        } => {
            // The generated loops are the training step's: another stage has none to show.
            if matches!(emit, ir::Emit::Clif)
                && let Some(stage) = stage.filter(|s| !matches!(s, ir::Stage::Kernels))
            {
                let stage = stage
                    .to_possible_value()
                    .map_or_else(String::new, |v| format!("`--stage {}` ", v.get_name()));
                Cli::command()
                    .error(
                        ErrorKind::ArgumentConflict,
                        format!(
                            "{stage}cannot be used with `--emit clif`, which prints the \
                             training step's generated loops (the kernels stage)"
                        ),
                    )
                    .exit();
            }
            let stage = stage.unwrap_or(ir::Stage::Optimized);
            ir::run(
                &file,
                model.as_deref(),
                stage,
                emit,
                batch.map(saturating_usize),
                threads.map_or_else(nnc::default_threads, saturating_usize),
                &ui,
            )
        }
        Command::Bench {
            file,
            model,
            batch,
            iterations,
            threads,
            json,
            eval,
            ranks,
        } => ir::bench(
            &file,
            model.as_deref(),
            ir::BenchRun {
                batch: batch.map(saturating_usize),
                iterations: saturating_usize(iterations),
                threads: threads.map_or_else(nnc::default_threads, saturating_usize),
                ranks: saturating_usize(ranks),
                json,
                eval,
            },
            &ui,
        ),
        Command::Gradcheck {
            file,
            model,
            batch,
            samples,
            seed,
        } => ir::gradcheck(
            &file,
            model.as_deref(),
            saturating_usize(batch),
            saturating_usize(samples),
            seed,
            &ui,
        ),
    };
    ExitCode::from(outcome.code())
}

/// Restores the default action of SIGPIPE, which Rust's runtime ignores: a command whose reader
/// went away (`nnc check m.nn | head -1`) then ends as other Unix tools do, silently, instead of
/// panicking in `println!`. Files are written atomically (temporary file, then rename), so
/// ending anywhere loses nothing already saved.
fn end_quietly_on_closed_pipes() {
    #[cfg(unix)]
    // SAFETY: `signal` with SIG_DFL installs no handler (no code runs in signal context), it is
    // called first in `main`, before any thread exists to race with it, and it cannot panic.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Counts from the command line fit in usize on 64-bit targets; elsewhere they saturate.
fn saturating_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
