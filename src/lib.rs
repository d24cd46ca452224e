//! nnc as a library: check a `.nn` model, load its data, train it with callbacks, evaluate it,
//! predict with it and save or load its weights, without the command line. Every fallible call
//! returns an [`Error`], whose variants say what went wrong (a model's diagnostics come as data).
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use nnc::{BackendKind, EpochSums, Part, Project, Trainer};
//!
//! # fn main() -> Result<(), nnc::Error> {
//! let project = Project::load("models/mlp.nn".as_ref(), None, true)?;
//! let data = project.load_data(None)?;
//! let mut trainer = Trainer::new(&project.model, data, BackendKind::default(), 0, 128)?;
//! let mut sums = EpochSums::default();
//! // The callback sees every step's running sums; `Break` stops the epoch (an interrupt).
//! trainer.train_epoch(1, &mut sums, |_| ControlFlow::Continue(()))?;
//! let test = trainer.evaluate(Part::Test)?;
//! # Ok(())
//! # }
//! ```
//!
//! `examples/` holds complete programs that use only this API. The `nnc` command line is a
//! thin layer over it (`src/main.rs`, `src/cli/`, behind the default `cli` feature).

#![warn(missing_docs)]

pub mod augment;
pub mod backend;
pub mod checkpoint;
pub mod data_check;
#[cfg(feature = "distributed")]
pub mod distributed;
pub mod error;
pub mod files;
pub mod graph_picture;
pub mod image;
pub mod launch;
pub mod metrics;
pub mod plot;
pub mod predictor;
pub mod project;
pub mod source;
pub mod trainer;

pub use backend::{Backend, BackendKind, default_threads};
pub use checkpoint::Checkpoint;
pub use error::{Diagnostics, Error, TrainError};
pub use metrics::EpochSums;
pub use predictor::Predictor;
pub use project::{CheckedFile, LoadedData, Project};
pub use trainer::{Confusion, Evaluation, Part, Trainer};

/// A checked model: its layers with their shapes and parameters, and its train block.
pub use nnc_check::Model;
/// A diagnostic as data: code, severity, message, labelled spans, help.
pub use nnc_syntax::Diagnostic;

/// The Keras-style summary table `nnc check` prints for a model.
pub fn summary(model: &Model) -> String {
    nnc_check::summary::table(model)
}
