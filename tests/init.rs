//! `nnc init`: the weights a run starts from, as a checkpoint another framework can load
//! (`bench/twin.py`), and the first step's loss `nnc train --json` reports when stopped, which
//! the twin compares with its own.

mod support;

use std::path::Path;

use nnc::{Checkpoint, Project};
use support::nnc;

fn init_checkpoint(dir: &Path, extra: &[&str]) -> Checkpoint {
    let out = dir.join("init.safetensors");
    let out = out.to_str().expect("utf-8 path");
    let (_, stderr, code) = nnc(&[&["init", "models/xor.nn", "-o", out], extra].concat());
    assert_eq!(code, 0, "{stderr}");
    Checkpoint::load(Path::new(out)).expect("a checkpoint nnc reads back")
}

fn xor() -> Project {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/xor.nn");
    Project::load(&file, None, true).expect("models/xor.nn loads")
}

#[test]
fn init_writes_the_seeded_initial_weights_named_as_check_json_says() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ckpt = init_checkpoint(dir.path(), &[]);
    // The train block's seed (1), as `nnc train` would start.
    let expected = nnc_ir::init::init_params(&xor().model, 1);
    assert_eq!(ckpt.params.len(), expected.len());
    for (got, want) in ckpt.params.iter().zip(&expected) {
        assert_eq!(got.name, want.name);
        assert_eq!(got.shape, want.shape);
        assert_eq!(got.data, want.data, "{}", got.name);
    }
    assert_eq!((ckpt.meta.epoch, ckpt.meta.step, ckpt.meta.seed), (0, 0, 1));
    // The names and shapes `nnc check --json` lists for each layer, in the same order.
    let (stdout, stderr, code) = nnc(&["check", "models/xor.nn", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let listed: Vec<(String, Vec<usize>)> = json["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .flat_map(|l| l["parameters"].as_array().expect("parameters").clone())
        .map(|p| {
            let shape = p["shape"].as_array().expect("shape");
            (
                p["name"].as_str().expect("name").to_string(),
                shape
                    .iter()
                    .map(|d| d.as_u64().expect("dim") as usize)
                    .collect(),
            )
        })
        .collect();
    let written: Vec<(String, Vec<usize>)> = ckpt
        .params
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    assert_eq!(listed, written);
}

#[test]
fn init_follows_the_seed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let five = init_checkpoint(dir.path(), &["--seed", "5"]);
    let expected = nnc_ir::init::init_params(&xor().model, 5);
    assert_eq!(five.meta.seed, 5);
    assert_eq!(five.params[0].data, expected[0].data);
    let one = nnc_ir::init::init_params(&xor().model, 1);
    assert_ne!(
        five.params[0].data, one[0].data,
        "another seed, other weights"
    );
}

/// The checkpoint is where training starts: evaluated, it gives the loss of `train`'s first
/// step (XOR's batch is its whole table, so the first batch is every row, in any order), which
/// `train --stop-after-steps 1 --json` reports as `last_step_loss`.
#[test]
fn init_is_where_training_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = dir.path().join("init.safetensors");
    let weights = weights.to_str().expect("utf-8 path");
    let (_, stderr, code) = nnc(&["init", "models/xor.nn", "-o", weights]);
    assert_eq!(code, 0, "{stderr}");
    let (stdout, stderr, code) = nnc(&["eval", "models/xor.nn", "--weights", weights, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let eval: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let eval_loss = eval["test_loss"].as_f64().expect("test_loss");

    let run = dir.path().join("run");
    let run = run.to_str().expect("utf-8 path");
    let (stdout, stderr, code) = nnc(&[
        "train",
        "models/xor.nn",
        "--stop-after-steps",
        "1",
        "--json",
        "--out",
        run,
    ]);
    assert_eq!(code, 130, "stopped as by Ctrl-C: {stderr}");
    let stop: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|o| o["interrupted"] == true)
        .expect("the interrupted object");
    let first = stop["last_step_loss"].as_f64().expect("last_step_loss");
    assert!(first.is_finite() && first > 0.0, "{first}");
    assert!(
        (first - eval_loss).abs() <= 1e-6 * eval_loss,
        "first step's loss {first}, the initial weights' {eval_loss}"
    );
}

#[test]
fn init_reports_bad_paths_and_models() {
    let (_, stderr, code) = nnc(&[
        "init",
        "models/xor.nn",
        "-o",
        "/nonexistent-dir/w.safetensors",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("error:") && stderr.contains("/nonexistent-dir/w.safetensors"));
    assert!(!stderr.contains("panicked"), "{stderr}");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("untrained.nn");
    std::fs::write(
        &file,
        "model m {\n    input x: f32[2]\n    d: dense(1)\n}\n",
    )
    .expect("write");
    let out = dir.path().join("w.safetensors");
    let (_, stderr, code) = nnc(&[
        "init",
        file.to_str().expect("utf-8 path"),
        "-o",
        out.to_str().expect("utf-8 path"),
    ]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("train block"), "{stderr}");
    assert!(!out.exists(), "nothing written");

    let (_, stderr, code) = nnc(&["init", "models/xor.nn"]);
    assert_eq!(code, 2, "-o is required: {stderr}");
}
