//! The library's errors: one enum whose variants say what kind of thing went wrong, so that a
//! caller can tell a wrong model from a missing file or a diverged run without reading text.

use std::fmt;

use nnc_syntax::{Diagnostic, RenderOptions, Severity};

use crate::trainer::TrainError;

/// What went wrong in a library call.
#[derive(Debug)]
pub enum Error {
    /// A file could not be read or written; the message names it and says why.
    Io(String),
    /// The model source has errors: the checker's diagnostics, as data.
    Invalid(Diagnostics),
    /// The request does not fit the file: no model of that name, or several models and none
    /// chosen.
    Model(String),
    /// The model has no train block, which the request needs; the message names the model.
    NoTrainBlock(String),
    /// The data files are missing, malformed or do not fit the model.
    Data(String),
    /// A checkpoint is malformed or was trained for another model.
    Checkpoint(String),
    /// The model could not be compiled for this data (a size the planner refuses).
    Compile(String),
    /// Training stopped: the loss diverged or a backend failed.
    Train(TrainError),
}

impl Error {
    /// Whether the model itself is at fault (its source, or what was asked of it), as opposed
    /// to files, data or the machine: the command line exits with 1 for these, 2 for others.
    pub fn is_model_error(&self) -> bool {
        matches!(
            self,
            Error::Invalid(_) | Error::NoTrainBlock(_) | Error::Train(TrainError::Diverged { .. })
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(d) => d.fmt(f),
            Error::Io(m)
            | Error::Model(m)
            | Error::NoTrainBlock(m)
            | Error::Data(m)
            | Error::Checkpoint(m)
            | Error::Compile(m) => f.write_str(m),
            Error::Train(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Train(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TrainError> for Error {
    fn from(e: TrainError) -> Error {
        Error::Train(e)
    }
}

/// A source's diagnostics, with the text they point into.
#[derive(Clone, Debug)]
pub struct Diagnostics {
    /// How the source is named in the rendering (its path).
    pub name: String,
    /// The text the diagnostics' spans index (a lossy decoding for a file that is not UTF-8).
    pub text: String,
    /// Errors and warnings in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Renders them as `nnc check` prints them: miette's report, cut to `width` columns.
    pub fn render(&self, color: bool, width: usize) -> String {
        nnc_syntax::render(
            &self.diagnostics,
            &self.name,
            &self.text,
            RenderOptions {
                color,
                width,
                ..RenderOptions::default()
            },
        )
    }

    /// Whether any of them is an error (not only warnings).
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.render(false, 100).trim_end())
    }
}
