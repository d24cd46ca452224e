//! `nnc`: the command-line interface.
//!
//! Exit codes: 0 success, 1 the model is wrong (diagnostics printed), 2 usage or I/O errors.

mod check;
mod source;

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
        Command::Train { file } => train(&file, &ui),
    };
    match outcome {
        Outcome::Ok => ExitCode::SUCCESS,
        Outcome::Invalid => ExitCode::from(1),
        Outcome::Failed => ExitCode::from(2),
    }
}

fn train(file: &std::path::Path, ui: &Ui) -> Outcome {
    match check::load_and_check(file, ui) {
        Ok(_) => {
            eprintln!(
                "error: `nnc train` is not implemented yet: the model checks, but the IR, autodiff and runtime that train it are still being built"
            );
            Outcome::Failed
        }
        Err(outcome) => outcome,
    }
}
