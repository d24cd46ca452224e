//! `nnc graph`: a picture of a checked model, as SVG drawn by nnc itself or as Graphviz DOT.

use std::path::{Path, PathBuf};

use nnc::files::write_atomic;
use nnc::graph_picture::{Picture, dot, svg};

use super::{Outcome, Ui};

/// What `nnc graph` was asked for.
pub struct GraphCommand {
    /// The `.nn` file.
    pub file: PathBuf,
    /// The model, when the file holds several.
    pub model: Option<String>,
    /// Where to write the picture (stdout without it).
    pub out: Option<PathBuf>,
    /// DOT instead of SVG (also chosen by an `-o` ending in `.dot` or `.gv`).
    pub dot: bool,
}

/// Whether `path` names a DOT file by its extension.
fn is_dot_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("dot") || e.eq_ignore_ascii_case("gv"))
}

/// Runs `nnc graph`: checks the model (diagnostics as `nnc check` prints them) and writes its
/// picture.
pub fn run(cmd: &GraphCommand, ui: &Ui) -> Outcome {
    let project = match super::load(&cmd.file, cmd.model.as_deref(), false, ui) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let picture = Picture::of(&project.model);
    let as_dot = cmd.dot || cmd.out.as_deref().is_some_and(is_dot_file);
    let text = if as_dot {
        dot::render(&picture)
    } else {
        svg::render(&picture)
    };
    match &cmd.out {
        None => {
            print!("{text}");
            Outcome::Ok
        }
        Some(path) => match write_atomic(path, text.as_bytes()) {
            Ok(()) => Outcome::Ok,
            Err(e) => super::fail(e),
        },
    }
}
