//! `nnc check`: parse, check, and print a summary per model.

use std::path::Path;

use nnc_check::{Model, summary};
use nnc_syntax::{Diagnostic, RenderOptions};

use crate::source::{self, Source};
use crate::{Outcome, Ui};

/// Runs `nnc check` on `files`.
pub fn run(files: &[std::path::PathBuf], json: bool, ui: &Ui) -> Outcome {
    let mut models = Vec::new();
    let mut worst = Outcome::Ok;
    for file in files {
        match load_and_check(file, ui) {
            Ok(mut ms) => models.append(&mut ms),
            Err(Outcome::Failed) => worst = Outcome::Failed,
            Err(_) => {
                if !matches!(worst, Outcome::Failed) {
                    worst = Outcome::Invalid;
                }
            }
        }
    }
    if json {
        let summaries: Vec<summary::Json> = models.iter().map(summary::json).collect();
        let text = match summaries.as_slice() {
            [one] => serde_json::to_string_pretty(one),
            _ => serde_json::to_string_pretty(&summaries),
        };
        // Serialising plain structs of strings and numbers cannot fail.
        println!("{}", text.unwrap_or_default());
    } else {
        for (i, m) in models.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{}", summary::table(m));
        }
    }
    worst
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
