//! `nnc eval FILE --weights CKPT`: the test loss and accuracy of saved weights, per-class
//! accuracy and the confusion matrix.

use std::path::PathBuf;

use serde::Serialize;

use nnc::checkpoint::Checkpoint;
use nnc::{BackendKind, Part, Trainer};
use nnc_check::Score;

use super::{Outcome, Ui, fail};

/// `nnc eval` options.
pub struct EvalCommand {
    pub file: PathBuf,
    /// The checkpoint; `None`: the run directory's.
    pub weights: Option<PathBuf>,
    pub model: Option<String>,
    pub data: Option<PathBuf>,
    pub batch: Option<usize>,
    pub backend: BackendKind,
    /// The JIT's threads (default: the available parallelism).
    pub threads: Option<usize>,
    pub json: bool,
    /// Use weights trained from another version of the model's text.
    pub allow_changed_model: bool,
}

#[derive(Serialize)]
struct Report {
    model: String,
    weights: String,
    /// Completed epochs of the weights.
    epoch: usize,
    /// Samples of epoch `epoch + 1` the weights were trained on (a checkpoint written
    /// mid-epoch, on Ctrl-C), else 0.
    epoch_samples: usize,
    samples: usize,
    test_loss: f64,
    /// Accuracy, or (for a model that reports it) the mean absolute error.
    #[serde(skip_serializing_if = "Option::is_none")]
    test_acc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    test_mae: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    per_class: Vec<ClassReport>,
    /// `confusion[true][predicted]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    confusion: Vec<Vec<u64>>,
}

#[derive(Serialize)]
struct ClassReport {
    class: usize,
    samples: u64,
    accuracy: Option<f64>,
}

/// Runs `nnc eval`.
pub fn run(opts: &EvalCommand, ui: &Ui) -> Outcome {
    let (project, weights) = match super::load_trained(
        &opts.file,
        opts.model.as_deref(),
        opts.weights.as_deref(),
        ui,
    ) {
        Ok(loaded) => loaded,
        Err(outcome) => return outcome,
    };
    let batch = opts
        .batch
        .or(project.model.train.as_ref().map(|t| t.batch))
        .unwrap_or(32);
    // The checkpoint is read before the data: a wrong one is reported at once.
    let ckpt = match Checkpoint::load(&weights)
        .map(|mut c| {
            if opts.allow_changed_model {
                c.adopt_model(&project);
            }
            c
        })
        .and_then(|c| c.check_fits_model(&weights, &project).map(|()| c))
    {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let data = match project.load_test_data(opts.data.as_deref()) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let threads = opts.threads.unwrap_or_else(nnc::default_threads);
    let trainer = Trainer::with_threads(&project.model, data, opts.backend, 0, batch, threads);
    let mut trainer = match trainer {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if let Err(e) = ckpt.load_weights_into(trainer.backend(), &weights, &project) {
        return fail(e);
    }
    let test = match trainer.evaluate(Part::Test) {
        Ok(Some(t)) => t,
        Ok(None) => return Outcome::Ok,
        Err(e) => return fail(e),
    };
    let (per_class, confusion) = match &test.confusion {
        Some(c) => (
            c.per_class_accuracy()
                .into_iter()
                .zip(c.support())
                .enumerate()
                .map(|(class, (accuracy, samples))| ClassReport {
                    class,
                    samples,
                    accuracy,
                })
                .collect(),
            c.counts.chunks(c.classes).map(<[u64]>::to_vec).collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let score = project
        .model
        .train
        .as_ref()
        .map_or(Score::Accuracy, |t| t.score());
    let report = Report {
        model: project.model.name.clone(),
        weights: weights.display().to_string(),
        epoch: ckpt.meta.epoch,
        epoch_samples: ckpt.meta.partial.samples,
        samples: test.samples,
        test_loss: test.loss,
        test_acc: (score == Score::Accuracy).then_some(test.score),
        test_mae: (score == Score::Mae).then_some(test.score),
        per_class,
        confusion,
    };
    if opts.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
        return Outcome::Ok;
    }
    println!(
        "model `{}`, weights {} ({})",
        report.model,
        report.weights,
        trained_for(report.epoch, ckpt.meta.step, report.epoch_samples)
    );
    println!(
        "test: {} samples, loss {:.4}, {} {:.4}",
        report.samples,
        report.test_loss,
        score.title(),
        test.score
    );
    if let Some(c) = &test.confusion {
        println!("{:>5} {:>8} {:>9}", "class", "samples", "accuracy");
        for r in &report.per_class {
            match r.accuracy {
                Some(a) => println!("{:>5} {:>8} {:>9.4}", r.class, r.samples, a),
                None => println!("{:>5} {:>8} {:>9}", r.class, r.samples, "-"),
            }
        }
        print!("{}", super::train::confusion_table(c));
    }
    Outcome::Ok
}

/// How far training had gone: `after epoch 2`, or for a checkpoint written mid-epoch (on
/// Ctrl-C), `after step 5, 160 samples into epoch 1`. (The step of a whole-epoch checkpoint is
/// not shown: in `best.safetensors` it is the run's last, not the best epoch's.)
fn trained_for(epoch: usize, step: u64, epoch_samples: usize) -> String {
    if epoch_samples > 0 {
        format!(
            "after step {step}, {epoch_samples} sample{} into epoch {}",
            if epoch_samples == 1 { "" } else { "s" },
            epoch + 1
        )
    } else {
        format!("after epoch {epoch}")
    }
}

#[cfg(test)]
mod tests {
    use super::trained_for;

    #[test]
    fn a_mid_epoch_checkpoint_says_how_far_into_the_epoch_it_is() {
        assert_eq!(trained_for(2, 3750, 0), "after epoch 2");
        assert_eq!(
            trained_for(0, 5, 160),
            "after step 5, 160 samples into epoch 1"
        );
        assert_eq!(
            trained_for(3, 13, 1),
            "after step 13, 1 sample into epoch 4"
        );
    }
}
