//! `nnc`: the command-line interface.
//!
//! Exit codes: 0 success, 1 the model is wrong (diagnostics printed), 2 usage or I/O errors.

mod backend;
mod check;
mod ir;
mod project;
mod source;
mod train;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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
enum BackendKind {
    /// The reference interpreter.
    Interp,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
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
    /// Compile a model and train it on its data.
    Train {
        /// The `.nn` file holding the model and its train block.
        file: PathBuf,
        /// The model to train, when the file holds several.
        #[arg(long)]
        model: Option<String>,
        /// Epochs (overrides the train block).
        #[arg(long)]
        epochs: Option<usize>,
        /// Batch size (overrides the train block).
        #[arg(long)]
        batch: Option<usize>,
        /// Seed for initialisation, shuffling and dropout (overrides the train block).
        #[arg(long)]
        seed: Option<u64>,
        /// Directory holding the MNIST files (default: the project's data/mnist).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Which engine runs the steps.
        #[arg(long, value_enum, default_value_t = BackendKind::Interp)]
        backend: BackendKind,
        /// One JSON object per epoch on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a model's IR at a stage of compilation.
    Ir {
        /// The `.nn` file.
        file: PathBuf,
        /// The model, when the file holds several.
        #[arg(long)]
        model: Option<String>,
        /// Which stage to print.
        #[arg(long, value_enum, default_value_t = ir::Stage::Optimized)]
        stage: ir::Stage,
        /// Batch size (default: the train block's).
        #[arg(long)]
        batch: Option<usize>,
    },
    /// Compare derived gradients with finite differences, in f64.
    Gradcheck {
        /// The `.nn` file.
        file: PathBuf,
        /// The model, when the file holds several.
        #[arg(long)]
        model: Option<String>,
        /// Samples in the batch.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Elements checked per parameter tensor (all of them when it is smaller).
        #[arg(long, default_value_t = 24)]
        samples: usize,
        /// Seed for the weights and the random batch.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// How a command ended.
pub enum Outcome {
    Ok,
    /// The input is wrong; diagnostics were printed.
    Invalid,
    /// Usage or I/O error; a message was printed.
    Failed,
}

/// Rendering settings shared by the commands.
pub struct Ui {
    pub color: bool,
    pub width: usize,
}

fn main() -> ExitCode {
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
        Command::Train {
            file,
            model,
            epochs,
            batch,
            seed,
            data,
            backend: BackendKind::Interp,
            json,
        } => train::run(
            &train::Options {
                file,
                model,
                epochs,
                batch,
                seed,
                data,
                json,
            },
            &ui,
        ),
        Command::Ir {
            file,
            model,
            stage,
            batch,
        } => ir::run(&file, model.as_deref(), stage, batch, &ui),
        Command::Gradcheck {
            file,
            model,
            batch,
            samples,
            seed,
        } => ir::gradcheck(&file, model.as_deref(), batch, samples, seed, &ui),
    };
    match outcome {
        Outcome::Ok => ExitCode::SUCCESS,
        Outcome::Invalid => ExitCode::from(1),
        Outcome::Failed => ExitCode::from(2),
    }
}
