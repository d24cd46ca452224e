//! The library's errors: one enum whose variants say what kind of thing went wrong, so that a
//! caller can tell a wrong model from a missing file or a diverged run without reading text.

use std::fmt;

use nnc_syntax::{Diagnostic, RenderOptions, Severity};

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

    /// Each diagnostic as a JSON object: `file`, `severity` (`error`, `warning`), `code`,
    /// `message`, `labels` (each with its `message`, byte `start`/`end`, and 1-based `line`,
    /// `column`, `end_line`, `end_column`, columns counted in characters) and `help`.
    pub fn to_json(&self) -> Vec<serde_json::Value> {
        self.diagnostics
            .iter()
            .map(|d| {
                let labels: Vec<serde_json::Value> = d
                    .labels
                    .iter()
                    .map(|l| {
                        let (line, column) = line_column(&self.text, l.span.start);
                        let (end_line, end_column) = line_column(&self.text, l.span.end);
                        serde_json::json!({
                            "message": l.text,
                            "start": l.span.start,
                            "end": l.span.end,
                            "line": line,
                            "column": column,
                            "end_line": end_line,
                            "end_column": end_column,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "file": self.name,
                    "severity": match d.severity {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                    },
                    "code": d.code,
                    "message": d.message,
                    "labels": labels,
                    "help": d.help,
                })
            })
            .collect()
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

/// The 1-based line and character column of byte `offset` in `text` (clamped to the text, and
/// back to a character boundary).
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_characters() {
        let text = "ab\nçd\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        // `d` is byte 5 (ç is two bytes) but the second character of its line.
        assert_eq!(line_column(text, 5), (2, 2));
        // Inside a character: its start; past the end: the end.
        assert_eq!(line_column(text, 4), (2, 1));
        assert_eq!(line_column(text, 99), (3, 1));
    }
}

/// Why training stopped with an error.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainError {
    /// The loss or a gradient became NaN or infinite.
    Diverged {
        /// The epoch (1-based) in which it happened.
        epoch: usize,
        /// The global step number (1-based).
        step: u64,
        /// What went non-finite, e.g. "the loss became NaN".
        what: String,
        /// The mean loss of the last step whose loss was finite.
        last_finite_loss: Option<f64>,
    },
    /// The backend failed (a bug, or data that does not fit the compiled step).
    Backend(String),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Diverged {
                epoch,
                step,
                what,
                last_finite_loss,
            } => {
                write!(f, "{what} at step {step} (epoch {epoch}); training stopped")?;
                match last_finite_loss {
                    Some(l) if l.abs() >= 1e5 => write!(f, "; the last finite loss was {l:.4e}")?,
                    Some(l) => write!(f, "; the last finite loss was {l:.6}")?,
                    None => write!(f, "; no step had a finite loss")?,
                }
                write!(
                    f,
                    ". Lower the learning rate (e.g. by 10x) in the optimizer, or check the \
                     data's scale"
                )
            }
            TrainError::Backend(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for TrainError {}
