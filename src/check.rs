//! `nnc check`: parse, check, and print a summary per model.

use std::path::Path;

use nnc_check::Model;
use nnc_check::summary::{self, thousands};
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_syntax::{Diagnostic, RenderOptions};
use serde::Serialize;

use crate::data_check;
use crate::source::{self, Source};
use crate::{Outcome, Ui};

/// Runs `nnc check` on `files`: the checker, then what the headers of each trained model's
/// data files say ([`data_check`]).
pub fn run(files: &[std::path::PathBuf], json: bool, ui: &Ui) -> Outcome {
    let mut models = Vec::new();
    let mut worst = Outcome::Ok;
    let invalid = |worst: &mut Outcome| {
        if !matches!(worst, Outcome::Failed) {
            *worst = Outcome::Invalid;
        }
    };
    for file in files {
        match load_and_check_text(file, ui) {
            Ok((text, ms)) => {
                for m in ms {
                    let data = data_check::check(&m, file);
                    if data.diagnostics.is_empty() {
                        models.push((m, data.input));
                    } else {
                        let name = file.display().to_string();
                        eprint!("{}", render(&data.diagnostics, &name, &text, ui));
                        invalid(&mut worst);
                    }
                }
            }
            Err(Outcome::Failed) => worst = Outcome::Failed,
            Err(_) => invalid(&mut worst),
        }
    }
    if json {
        let summaries: Vec<Json> = models
            .iter()
            .map(|(m, input)| Json {
                summary: summary::json(m),
                arena: arenas(m, input.clone()).and_then(Result::ok),
            })
            .collect();
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
}

/// The arenas of a model's JIT-compiled steps at its train block's batch size, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Arenas {
    pub batch: u64,
    pub train_step_bytes: u64,
    pub eval_step_bytes: u64,
}

/// Batch × FLOPs per sample above which `nnc check` does not plan the steps (16 TFLOP a
/// step): the plan's sizes, products of such figures, stay far from overflowing.
const PLAN_LIMIT: u128 = 1 << 44;

/// The arenas of `model`'s train and eval steps, planned as `nnc bench` and `nnc train`
/// compile them (without generating code, so `nnc check` stays fast); `None` without a train
/// block, else why they are not known. `input` is how the training data enters the steps
/// ([`data_check::DataCheck::input`]).
pub fn arenas(model: &Model, input: Option<InputSpec>) -> Option<Result<Arenas, String>> {
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
        let size = |f| nnc_jit::program::ArenaSize::of(f, nnc_jit::Options::default());
        Ok(Arenas {
            batch: train.batch as u64,
            train_step_bytes: size(&c.train_step.func)?.total() as u64,
            eval_step_bytes: size(&c.eval_step)?.total() as u64,
        })
    };
    Some(plan())
}

/// Reads and checks one file, printing its diagnostics to stderr. Returns the checked models, or
/// how the command should end.
pub fn load_and_check(file: &Path, ui: &Ui) -> Result<Vec<Model>, Outcome> {
    load_and_check_text(file, ui).map(|(_, models)| models)
}

/// [`load_and_check`], also returning the file's text (hashed and copied by `nnc train`).
pub fn load_and_check_text(file: &Path, ui: &Ui) -> Result<(String, Vec<Model>), Outcome> {
    let name = file.display().to_string();
    let text = match source::read(file) {
        Ok(Source::Text(text)) => text,
        Ok(Source::NotText(diag, lossy)) => {
            eprint!("{}", render(&[diag], &name, &lossy, ui));
            return Err(Outcome::Invalid);
        }
        Err(message) => {
            eprintln!("error: {message}");
            return Err(Outcome::Failed);
        }
    };
    let checked = nnc_check::check_source(&text);
    if !checked.diagnostics.is_empty() {
        eprint!("{}", render(&checked.diagnostics, &name, &text, ui));
    }
    if checked.has_errors() {
        Err(Outcome::Invalid)
    } else {
        Ok((text, checked.models))
    }
}

/// Renders diagnostics as `nnc check` prints them.
pub fn render(diags: &[Diagnostic], name: &str, text: &str, ui: &Ui) -> String {
    nnc_syntax::render(
        diags,
        name,
        text,
        RenderOptions {
            color: ui.color,
            width: ui.width,
            ..RenderOptions::default()
        },
    )
}
