//! What a new user trips over in their first hour, through the binary: closed pipes, resuming
//! an interrupted run, `eval` without `--weights`, run directories of different files, and
//! warnings said once.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::nnc_in as run;

/// A classifier on an inline table: 8 rows, batch 4, so 2 steps per epoch.
const TABLE: &str = "
model m {
    input x: f32[2]
    hidden: dense(4) -> tanh
    out:    dense(2)
}

train m {
    data {
        0 0 -> 0
        0 1 -> 1
        1 0 -> 1
        1 1 -> 0
        0 0 -> 0
        0 1 -> 1
        1 0 -> 1
        1 1 -> 0
    }
    loss      softmax_cross_entropy
    optimizer adam(lr: 0.01)
    batch     4
    epochs    1
    seed      5
}
";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write the model");
}

fn metrics_epochs(dir: &Path) -> usize {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).expect("metrics.csv");
    text.lines().count() - 1
}

#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models: Vec<String> = std::fs::read_dir(root.join("models"))
        .expect("models/")
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".nn"))
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .arg("check")
        .args(&models)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nnc runs");
    // The reader goes away before nnc has checked the first model, as `| head -0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("nnc ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc_sigpipe()),
        "{:?}: {stderr}",
        out.status
    );
}

#[cfg(unix)]
fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn an_interrupted_run_resumes_to_its_own_length_with_the_printed_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "x.nn", TABLE);
    let (_, err, code) = run(
        dir.path(),
        &["train", "x.nn", "--epochs", "3", "--stop-after-steps", "3"],
    );
    assert_eq!(code, 130, "{err}");
    let hint = err
        .lines()
        .find_map(|l| l.strip_prefix("continue with: "))
        .unwrap_or_else(|| panic!("no hint in: {err}"));
    let args: Vec<&str> = hint.split_whitespace().collect();
    assert_eq!(args.first(), Some(&"nnc"), "{hint}");
    // Run as printed: the run's 3 epochs, not the train block's 1.
    let (out, err, code) = run(dir.path(), &args[1..]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("after 3 epochs"), "{out}\n{err}");
    assert_eq!(metrics_epochs(&dir.path().join("runs/m")), 3);

    // Finished, the run resumes to the train block's length, which it has passed.
    let (_, err, code) = run(dir.path(), &args[1..]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the run already has 3 epochs of 1"), "{err}");
}

#[test]
fn one_epoch_is_singular() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "x.nn", TABLE);
    let (_, err, code) = run(dir.path(), &["train", "x.nn"]);
    assert_eq!(code, 0, "{err}");
    let (_, err, code) = run(dir.path(), &["train", "x.nn", "--resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the run already has 1 epoch of 1;"), "{err}");
}

#[test]
fn eval_and_predict_find_the_run_directorys_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "x.nn", TABLE);
    let (_, err, code) = run(dir.path(), &["eval", "x.nn"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no --weights given") && err.contains("nnc train x.nn"),
        "{err}"
    );
    let (_, err, code) = run(dir.path(), &["train", "x.nn"]);
    assert_eq!(code, 0, "{err}");
    let (out, err, code) = run(dir.path(), &["eval", "x.nn", "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(report["weights"], "runs/m/checkpoint.safetensors");
}

#[test]
fn another_files_run_is_not_overwritten() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "a.nn", TABLE);
    write(dir.path(), "b.nn", &TABLE.replace("dense(4)", "dense(3)"));
    for file in ["a.nn", "b.nn", "a.nn"] {
        let (_, err, code) = run(dir.path(), &["train", file]);
        assert_eq!(code, 0, "{file}: {err}");
    }
    let runs = dir.path().join("runs");
    assert!(runs.join("m/a.nn").is_file());
    assert!(!runs.join("m/b.nn").exists());
    assert!(runs.join("m-2/b.nn").is_file());
    assert!(
        !runs.join("m-3").exists(),
        "a.nn's second run went to its own directory"
    );

    // Told to, a run replaces another file's, says so, and leaves one source copy.
    let (_, err, code) = run(dir.path(), &["train", "b.nn", "--out", "runs/m"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("held a run of `a.nn`"), "{err}");
    assert!(!runs.join("m/a.nn").exists() && runs.join("m/b.nn").is_file());
}

#[test]
fn the_single_class_warning_is_said_once() {
    // Every sample has the same input, so the model predicts one class for all of them.
    let same = "
model s {
    input x: f32[2]
    out: dense(2)
}

train s {
    data {
        1 1 -> 0
        1 1 -> 1
        1 1 -> 0
    }
    loss      softmax_cross_entropy
    optimizer sgd(lr: 0.001)
    batch     3
    epochs    4
}
";
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "s.nn", same);
    let (_, err, code) = run(dir.path(), &["train", "s.nn"]);
    assert_eq!(code, 0, "{err}");
    let warnings = err.matches("predicts class").count();
    assert_eq!(warnings, 1, "{err}");
}

#[test]
fn check_json_gives_the_diagnostics_as_json() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (out, _, code) = run(root, &["check", "--json", "tests/invalid/arg-bool.nn"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["file"], "tests/invalid/arg-bool.nn");
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "nnc::arg::type");
    assert_eq!(d["severity"], "error");
    let label = &d["labels"][0];
    assert_eq!(
        (&label["line"], &label["column"]),
        (&3.into(), &25.into()),
        "{d}"
    );

    // A valid model's summary carries its file's warnings (none here), an unreadable file an
    // error of its own.
    let (out, _, code) = run(root, &["check", "--json", "models/xor.nn", "no-such.nn"]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v[0]["model"], "xor");
    assert_eq!(v[0]["diagnostics"], serde_json::json!([]));
    assert_eq!(v[1]["file"], "no-such.nn");
    assert_eq!(v[1]["diagnostics"][0]["severity"], "error");
}

#[test]
fn predict_answers_rows_for_a_model_of_vectors() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "x.nn",
        &TABLE.replace("epochs    1", "epochs    200"),
    );
    let (_, err, code) = run(dir.path(), &["train", "x.nn"]);
    assert_eq!(code, 0, "{err}");
    // A header naming the columns is allowed; comments and blank lines are skipped.
    std::fs::write(
        dir.path().join("rows.csv"),
        "a,b\n0,0\n# a comment\n\n0,1\n1,0\n1,1\n",
    )
    .expect("rows");
    let (out, err, code) = run(dir.path(), &["predict", "x.nn", "rows.csv", "--json"]);
    assert_eq!(code, 0, "{err}");
    let answers: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let classes: Vec<u64> = answers.iter().filter_map(|a| a["class"].as_u64()).collect();
    assert_eq!(classes, [0, 1, 1, 0], "{out}");
    assert_eq!(answers[1]["line"], 5);

    // From standard input, in text.
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .current_dir(dir.path())
        .args(["predict", "x.nn"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nnc runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"1 0\n").expect("write a row");
    }
    let out = child.wait_with_output().expect("nnc ends");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("-:1: 1 (probability "), "{text}");

    // A row of the wrong width names its line.
    std::fs::write(dir.path().join("bad.csv"), "0,1\n0,1,2\n").expect("rows");
    let (_, err, code) = run(dir.path(), &["predict", "x.nn", "bad.csv"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.csv:2: 3 values, but the model's input takes 2"),
        "{err}"
    );
}

#[test]
fn a_comment_does_not_make_weights_foreign_but_a_new_activation_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "x.nn", TABLE);
    let (_, err, code) = run(dir.path(), &["train", "x.nn"]);
    assert_eq!(code, 0, "{err}");

    // Comments, layout and the optimizer are not the model's meaning.
    let edited = format!(
        "// a comment\n{}",
        TABLE.replace("adam(lr: 0.01)", "sgd(lr: 0.1)")
    );
    write(dir.path(), "x.nn", &edited);
    let (_, err, code) = run(dir.path(), &["eval", "x.nn"]);
    assert_eq!(code, 0, "{err}");

    // Another activation is: the same parameters, but not what they were trained for.
    write(dir.path(), "x.nn", &TABLE.replace("-> tanh", "-> relu"));
    let (_, err, code) = run(dir.path(), &["eval", "x.nn"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("trained from another version") && err.contains("--allow-changed-model"),
        "{err}"
    );
    let (_, err, code) = run(dir.path(), &["eval", "x.nn", "--allow-changed-model"]);
    assert_eq!(code, 0, "{err}");
    let (_, err, code) = run(
        dir.path(),
        &["predict", "x.nn", "--allow-changed-model", "-"],
    );
    assert_eq!(code, 2, "no rows on stdin: {err}");
    assert!(err.contains("no rows to predict"), "{err}");
}
