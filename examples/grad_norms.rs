//! Draws the per-layer gradient norms of several training runs side by side, on one
//! logarithmic scale, from the `metrics.csv` of each run directory. The README's figure of the
//! deep sigmoid MLP next to its ReLU twin is made with it:
//!
//!     cargo run --release -- train models/deep-sigmoid.nn
//!     cargo run --release -- train models/deep-relu.nn
//!     cargo run --release --example grad_norms -- docs/deep-sigmoid-vs-relu.svg \
//!         "8 sigmoid layers=runs/deep_sigmoid" "8 ReLU layers=runs/deep_relu"

use std::path::Path;
use std::process::ExitCode;

use nnc::metrics::{self, ReadError, Row};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, runs)) = args.split_first().filter(|(_, runs)| !runs.is_empty()) else {
        eprintln!("usage: grad_norms OUT.svg TITLE=RUN_DIR...");
        return ExitCode::from(2);
    };
    let mut panels: Vec<(String, Vec<Row>)> = Vec::new();
    for run in runs {
        let (title, dir) = run.split_once('=').unwrap_or((run.as_str(), run.as_str()));
        let path = Path::new(dir).join("metrics.csv");
        match metrics::read(&path) {
            Ok(rows) => panels.push((title.to_string(), rows)),
            Err(ReadError::Missing) => {
                eprintln!("error: `{}` does not exist", path.display());
                return ExitCode::from(2);
            }
            Err(ReadError::Unreadable(e)) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let panels: Vec<(&str, &[Row])> = panels
        .iter()
        .map(|(t, rows)| (t.as_str(), rows.as_slice()))
        .collect();
    let written = nnc::plot::grad_norms(&panels)
        .and_then(|svg| nnc::files::write_atomic(Path::new(out), svg.as_bytes()));
    match written {
        Ok(()) => {
            println!("wrote {out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
