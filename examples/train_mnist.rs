//! Drives nnc as a library: checks a model written in a string, trains it for an epoch on
//! MNIST and evaluates it on the test set, printing what the command line would.
//!
//!     cargo run --release --example train_mnist

use std::ops::ControlFlow;
use std::process::ExitCode;

use nnc::{BackendKind, EpochSums, Part, Project, Trainer};

const SOURCE: &str = "
model small_mlp {
    input image: f32[784]
    hidden: dense(128) -> relu
    out:    dense(10)
}

train small_mlp {
    data      mnist(flatten: true, scale: 1/255)
    loss      softmax_cross_entropy
    optimizer adam(lr: 0.001)
    batch     64
    seed      1
}
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The path names the source in diagnostics and anchors relative data paths; MNIST is
    // found in data/mnist (of the working directory or of this source tree).
    let project = Project::from_source(SOURCE, "small_mlp.nn", None)?;
    let data = project.load_data(None)?;
    println!(
        "{} parameters, {} training images",
        project.model.param_count(),
        data.train.len()
    );
    let mut trainer = Trainer::new(&project.model, data, BackendKind::default(), 1, 64)?;

    let mut sums = EpochSums::default();
    let steps = trainer.steps_per_epoch();
    trainer.train_epoch(1, &mut sums, |s| {
        if s.steps % 200 == 0 {
            println!("step {}/{steps}: loss {:.4}", s.steps, s.loss());
        }
        ControlFlow::Continue(())
    })?;
    println!(
        "epoch 1: train loss {:.4}, accuracy {:.4}",
        sums.loss(),
        sums.score()
    );

    let test = trainer
        .evaluate(Part::Test)?
        .ok_or("the model has no test data")?;
    println!(
        "test: loss {:.4}, accuracy {:.4} on {} images",
        test.loss, test.score, test.samples
    );
    for (layer, norm) in trainer.weight_norms() {
        println!("‖{layer}‖ = {norm:.3}");
    }
    Ok(())
}
