//! nnc as a library: check a `.nn` model, load its data, train it and evaluate it without the
//! command line.
//!
//! ```no_run
//! use nnc::{BackendKind, Part, Project, Trainer};
//!
//! let source = std::fs::read_to_string("models/mlp.nn").unwrap();
//! let project = Project::from_source(&source, "models/mlp.nn", None).unwrap();
//! let data = nnc::project::load_data(&project, None).unwrap();
//! let mut trainer = Trainer::new(&project.model, data, BackendKind::default(), 0, 128).unwrap();
//! let epoch = trainer.train_epoch(1, &mut Default::default(), |_| std::ops::ControlFlow::Continue(()));
//! let test = trainer.evaluate(Part::Test).unwrap();
//! ```
//!
//! `examples/train_mnist.rs` is a complete program. The command-line front end is
//! `src/main.rs`; the modules `check`, `ir`, `train`, `eval` and `predict` are its commands.

pub mod augment;
pub mod backend;
pub mod check;
pub mod checkpoint;
pub mod data_check;
pub mod eval;
pub mod files;
pub mod image;
pub mod ir;
pub mod metrics;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod project;
pub mod source;
pub mod train;
pub mod trainer;

pub use backend::{Backend, BackendKind};
pub use checkpoint::Checkpoint;
pub use project::{LoadedData, Project};
pub use trainer::{Confusion, EpochSums, Evaluation, Part, TrainError, Trainer};

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
    pub color: bool,
    pub width: usize,
}
