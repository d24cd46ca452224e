//! The commands of `nnc`, each a thin layer over the library: they parse nothing (clap has),
//! print what the library returns, and say how the process ends.

pub mod check;
pub mod eval;
pub mod export;
pub mod graph;
pub mod init;
pub mod ir;
pub mod predict;
pub mod progress;
pub mod train;

use std::path::{Path, PathBuf};

use nnc::{Error, Project};

/// How a command ended; the process exit code follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// The model is wrong (diagnostics were printed), or training diverged: exit 1.
    Invalid,
    /// Usage, I/O or data error; a message was printed: exit 2.
    Failed,
    /// Stopped by Ctrl-C after writing a checkpoint: exit 130 (128 + SIGINT, the shell's
    /// convention for a program ended by Ctrl-C).
    Interrupted,
}

impl Outcome {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Ok => 0,
            Outcome::Invalid => 1,
            Outcome::Failed => 2,
            Outcome::Interrupted => 130,
        }
    }
}

/// Rendering settings shared by the commands.
pub struct Ui {
    /// Colour in diagnostics.
    pub color: bool,
    /// The terminal's width in columns.
    pub width: usize,
}

impl Ui {
    /// Prints a library error to stderr (diagnostics rendered, anything else on one `error:`
    /// line) and says how the command ends.
    pub fn report(&self, e: &Error) -> Outcome {
        match e {
            Error::Invalid(d) => eprint!("{}", d.render(self.color, self.width)),
            other => eprintln!("error: {other}"),
        }
        if e.is_model_error() {
            Outcome::Invalid
        } else {
            Outcome::Failed
        }
    }
}

/// Reads and checks `file` and picks its model ([`Project::load`]), printing the warnings, or
/// the error and how the command ends.
pub fn load(
    file: &Path,
    name: Option<&str>,
    need_train: bool,
    ui: &Ui,
) -> Result<Project, Outcome> {
    match Project::load(file, name, need_train) {
        Ok(project) => {
            if !project.warnings.diagnostics.is_empty() {
                eprint!("{}", project.warnings.render(ui.color, ui.width));
            }
            Ok(project)
        }
        Err(e) => Err(ui.report(&e)),
    }
}

/// Prints a one-line error; the command ends as for an I/O or data error.
pub fn fail(message: impl std::fmt::Display) -> Outcome {
    eprintln!("error: {message}");
    Outcome::Failed
}

/// What `eval` and `predict` start from: the model ([`load`]) and its checkpoint ([`weights`]).
pub fn load_trained(
    file: &Path,
    name: Option<&str>,
    given: Option<&Path>,
    ui: &Ui,
) -> Result<(Project, PathBuf), Outcome> {
    let project = load(file, name, true, ui)?;
    let weights = weights(given, &project)?;
    Ok((project, weights))
}

/// The checkpoint `eval` and `predict` read: `--weights`, else the one in the model's run
/// directory, which must then exist.
pub fn weights(given: Option<&Path>, project: &Project) -> Result<PathBuf, Outcome> {
    if let Some(w) = given {
        return Ok(w.to_path_buf());
    }
    let path = train::run_dir(project).join(nnc::checkpoint::FILE);
    if path.is_file() {
        return Ok(path);
    }
    eprintln!(
        "error: no --weights given, and `{}` does not exist: train the model first (nnc train \
         {}), or give a checkpoint with --weights",
        path.display(),
        project.path.display()
    );
    Err(Outcome::Failed)
}
