//! `nnc check`: parse, check, and print a summary per model.

use nnc_check::Model;
use nnc_check::summary::{self, thousands};
use nnc_ir::lower::{InputSpec, TargetSpec};
use serde::Serialize;

use nnc::data_check;

use super::{Outcome, Ui};

/// Runs `nnc check` on `files`: the checker, then what the headers of each trained model's
/// data files say ([`data_check`]). With `json`, stdout has an object per model (its summary
/// and its file's warnings as `diagnostics`) and, for a file with errors, an object with its
/// `file` and `diagnostics` instead; one object alone, else an array.
pub fn run(files: &[std::path::PathBuf], json: bool, ui: &Ui) -> Outcome {
    let mut models = Vec::new();
    let mut worst = Outcome::Ok;
    let mut entries: Vec<serde_json::Value> = Vec::new();
    for file in files {
        match nnc::project::check_file(file) {
            Ok(checked) => {
                if !checked.warnings.diagnostics.is_empty() {
                    eprint!("{}", checked.warnings.render(ui.color, ui.width));
                }
                for m in checked.models {
                    let data = data_check::check(&m, file);
                    if !data.diagnostics.is_empty() {
                        let found = nnc::Diagnostics {
                            name: file.display().to_string(),
                            text: checked.source.clone(),
                            diagnostics: data.diagnostics,
                        };
                        eprint!("{}", found.render(ui.color, ui.width));
                        if json {
                            entries.push(serde_json::json!({
                                "file": file.display().to_string(),
                                "diagnostics": found.to_json(),
                            }));
                        }
                        if worst != Outcome::Failed {
                            worst = Outcome::Invalid;
                        }
                        continue;
                    }
                    if json {
                        let summary = Json {
                            summary: summary::json(&m),
                            arena: arenas(&m, data.input.clone()).and_then(Result::ok),
                            diagnostics: checked.warnings.to_json(),
                        };
                        entries.push(serde_json::to_value(summary).unwrap_or_default());
                    }
                    models.push((m, data.input));
                }
            }
            Err(e) => {
                if json {
                    let diagnostics = match &e {
                        nnc::Error::Invalid(d) => d.to_json(),
                        other => vec![serde_json::json!({
                            "file": file.display().to_string(),
                            "severity": "error",
                            "code": "nnc::io",
                            "message": other.to_string(),
                            "labels": [],
                            "help": null,
                        })],
                    };
                    entries.push(serde_json::json!({
                        "file": file.display().to_string(),
                        "diagnostics": diagnostics,
                    }));
                }
                match ui.report(&e) {
                    Outcome::Failed => worst = Outcome::Failed,
                    _ if worst != Outcome::Failed => worst = Outcome::Invalid,
                    _ => {}
                }
            }
        }
    }
    if json {
        let summaries = entries;
        let text = match summaries.as_slice() {
            [one] => serde_json::to_string_pretty(one),
            _ => serde_json::to_string_pretty(&summaries),
        };
        // Serialising plain structs of strings and numbers cannot fail.
        println!("{}", text.unwrap_or_default());
    } else {
        for (i, (m, input)) in models.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{}", summary::table(m));
            match arenas(m, input.clone()) {
                Some(Ok(a)) => println!(
                    "Arena: {} per train step (batch {}), {} per eval step",
                    summary::bytes(a.train_step_bytes),
                    thousands(a.batch),
                    summary::bytes(a.eval_step_bytes)
                ),
                Some(Err(why)) => println!("Arena: not computed: {why}"),
                None => {}
            }
        }
    }
    worst
}

/// `nnc check --json`: the checker's summary and, for a trained model, its arenas.
#[derive(Serialize)]
struct Json {
    #[serde(flatten)]
    summary: summary::Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    arena: Option<Arenas>,
    /// The file's warnings ([`nnc::Diagnostics::to_json`]).
    diagnostics: Vec<serde_json::Value>,
}

/// The arenas of a model's JIT-compiled steps at its train block's batch size, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Arenas {
    batch: u64,
    train_step_bytes: u64,
    eval_step_bytes: u64,
}

/// Batch × FLOPs per sample above which `nnc check` does not plan the steps (16 TFLOP a
/// step): the plan's sizes, products of such figures, stay far from overflowing.
const PLAN_LIMIT: u128 = 1 << 44;

/// The arenas of `model`'s train and eval steps, planned as `nnc bench` and `nnc train`
/// compile them (without generating code, so `nnc check` stays fast); `None` without a train
/// block, else why they are not known. `input` is how the training data enters the steps
/// ([`data_check::DataCheck::input`]).
fn arenas(model: &Model, input: Option<InputSpec>) -> Option<Result<Arenas, String>> {
    let train = model.train.as_ref()?;
    let Some(input) = input else {
        return Some(Err("the data's layout is not known".into()));
    };
    let largest = model
        .layers
        .iter()
        .map(|l| l.output_shape.numel())
        .chain([model.input.shape.numel(), model.param_count()])
        .max()
        .unwrap_or(0);
    let work = u128::from(model.flops_per_sample()) + u128::from(largest);
    if work * train.batch as u128 > PLAN_LIMIT {
        return Some(Err(format!(
            "batch {} of {} FLOPs per sample is too large a step to plan here",
            thousands(train.batch as u64),
            thousands(model.flops_per_sample())
        )));
    }
    let targets = TargetSpec::of(&train.data, model);
    let plan = || -> Result<Arenas, String> {
        let c = nnc_ir::compile::compile(model, train.batch, input, targets)?;
        // At two threads (`Options::default`), whatever the machine, so that the summary is
        // the same everywhere: each thread beyond adds its scratch (`nnc bench --threads N`
        // gives the arena at N).
        let size = |f| nnc_jit::ArenaSize::of(f, nnc_jit::Options::default());
        Ok(Arenas {
            batch: train.batch as u64,
            train_step_bytes: size(&c.train_step.func)?.total() as u64,
            eval_step_bytes: size(&c.eval_step)?.total() as u64,
        })
    };
    Some(plan())
}
