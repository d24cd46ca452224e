//! Train arbitrary models on their inline tables: a model the checker accepts, with its data
//! in the `.nn` file, must train an epoch and evaluate on both backends without a panic.
//! Small models only (the fuzzer looks for panics, not for out-of-memory).
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use nnc::{BackendKind, EpochSums, Part, Project, Trainer};
use nnc_check::Data;

/// Per-sample activations and parameters above this many values are skipped.
const LIMIT: u64 = 1 << 14;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let checked = nnc_check::check_source(text);
    if checked.has_errors() {
        return;
    }
    for m in &checked.models {
        let Some(train) = &m.train else { continue };
        let inline = |d: &Data| matches!(d, Data::Inline { .. });
        if !inline(&train.data) || !train.test.as_ref().is_none_or(inline) {
            continue;
        }
        let activations: u64 = m.layers.iter().map(|l| l.output_shape.numel()).sum();
        if m.param_count() > LIMIT || activations > LIMIT {
            continue;
        }
        // Errors (say, a validation split that leaves no training sample) are diagnostics.
        let Ok(project) = Project::from_source(text, "fuzz.nn", Some(&m.name)) else {
            continue;
        };
        for kind in [BackendKind::Jit, BackendKind::Interp] {
            let Ok(data) = project.load_data(None) else {
                continue;
            };
            let Ok(mut trainer) = Trainer::new(&project.model, data, kind, 1, train.batch) else {
                continue;
            };
            let mut sums = EpochSums::default();
            let _ = trainer.train_epoch(1, &mut sums, |_| ControlFlow::Continue(()));
            let _ = sums.loss();
            let _ = sums.score();
            let _ = trainer.grad_norms(&sums);
            let _ = trainer.weight_norms();
            for part in [Part::Train, Part::Validation, Part::Test] {
                let _ = trainer.evaluate(part);
            }
        }
    }
});
