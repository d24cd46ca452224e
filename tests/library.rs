//! The library API as a Rust user sees it: typed errors, diagnostics as data, training with a
//! callback that can stop it, evaluation, checkpoints and prediction, without the CLI.

use std::ops::ControlFlow;
use std::path::Path;

use nnc::backend::BatchInputs;
use nnc::{BackendKind, EpochSums, Error, Part, Predictor, Project, Trainer};

const XOR: &str = "
model xor {
    input x: f32[2]
    hidden: dense(4) -> tanh
    out:    dense(2)
}

train xor {
    data {
        0 0 -> 0
        0 1 -> 1
        1 0 -> 1
        1 1 -> 0
    }
    loss      softmax_cross_entropy
    optimizer adam(lr: 0.05)
    batch     4
    epochs    300
    seed      3
}
";

#[test]
fn diagnostics_come_as_data() {
    let broken = XOR.replace("dense(4)", "dense(0)");
    match Project::from_source(&broken, "xor.nn", None) {
        Err(Error::Invalid(d)) => {
            assert!(d.has_errors());
            assert!(
                d.diagnostics.iter().any(|x| x.code == "nnc::range"),
                "{:?}",
                d.diagnostics
            );
            // The same diagnostics render as `nnc check` prints them, naming the source.
            assert!(d.render(false, 100).contains("xor.nn"));
        }
        Err(other) => panic!("expected Error::Invalid, got {other:?}"),
        Ok(_) => panic!("a dense layer of 0 units was accepted"),
    }
}

#[test]
fn errors_say_what_kind_of_thing_went_wrong() {
    let missing = Project::load(Path::new("no/such/model.nn"), None, true);
    assert!(matches!(missing, Err(Error::Io(_))), "{:?}", missing.err());

    let unknown = Project::from_source(XOR, "xor.nn", Some("nope"));
    assert!(
        matches!(unknown, Err(Error::Model(_))),
        "{:?}",
        unknown.err()
    );

    let untrained = "model m {\n    input x: f32[2]\n    out: dense(1)\n}\n";
    let e = Project::from_source(untrained, "m.nn", None).err();
    assert!(
        matches!(e, Some(Error::Model(_) | Error::NoTrainBlock(_))),
        "{e:?}"
    );
    // Every error is a std::error::Error with a message.
    let e: Box<dyn std::error::Error> = Box::new(e.expect("an error"));
    assert!(!e.to_string().is_empty());
}

#[test]
fn train_stop_evaluate_save_and_predict() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Io(e.to_string()))?;
    let path = dir.path().join("xor.nn");
    std::fs::write(&path, XOR).map_err(|e| Error::Io(e.to_string()))?;
    let project = Project::load(&path, None, true)?;
    let data = project.load_data(None)?;
    let mut trainer = Trainer::new(&project.model, data, BackendKind::Jit, 3, 4)?;

    // The callback's Break stops an epoch: here, after its first step.
    let mut sums = EpochSums::default();
    let complete = trainer.train_epoch(1, &mut sums, |_| ControlFlow::Break(()))?;
    assert_eq!(sums.steps, 1);
    // One batch is the whole table, so that step completed the epoch.
    assert!(complete);

    for epoch in 2..=300 {
        let mut sums = EpochSums::default();
        trainer.train_epoch(epoch, &mut sums, |_| ControlFlow::Continue(()))?;
    }
    let test = trainer.evaluate(Part::Test)?.expect("a test part");
    assert_eq!(test.samples, 4);
    assert_eq!(test.score, 1.0, "XOR not learned: loss {}", test.loss);

    // Saved, then loaded by a predictor: the same answers as the evaluation's.
    let weights = dir.path().join("xor.safetensors");
    trainer.checkpoint(&project, 300).save(&weights)?;
    let mut predictor = Predictor::new(&project, &weights, BackendKind::Interp)?;
    let rows = predictor.predict(BatchInputs::F32(&[0., 0., 0., 1., 1., 0., 1., 1.]))?;
    let classes: Vec<usize> = rows
        .iter()
        .map(|r| nnc::trainer::predicted_class(r))
        .collect();
    assert_eq!(classes, [0, 1, 1, 0]);

    // Restored into a fresh trainer, the weights evaluate the same.
    let data = project.load_data(None)?;
    let mut fresh = Trainer::new(&project.model, data, BackendKind::Jit, 99, 4)?;
    let checkpoint = nnc::Checkpoint::load(&weights)?;
    fresh.restore(&checkpoint, &weights, &project)?;
    let again = fresh.evaluate(Part::Test)?.expect("a test part");
    assert_eq!(again.loss, test.loss);

    // Samples that are not whole are an error, not a panic.
    let partial = predictor.predict(BatchInputs::F32(&[0.0, 1.0, 0.5]));
    assert!(
        matches!(partial, Err(Error::Data(_))),
        "{:?}",
        partial.err()
    );
    Ok(())
}
