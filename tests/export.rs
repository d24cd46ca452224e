//! `nnc export --onnx` and `--pytorch`: every model of `models/`, `bench/zoo/` and
//! `tests/export_models/` exported with its initial weights (and LeNet-5 and LeNet-1998 with
//! weights trained for 200 steps), run in ONNX Runtime (an independent runtime, through
//! `tests/support/onnx_run.py`), gives nnc's outputs on the first 1,000 test samples within
//! 1e-5 of their scale, and the same accuracy; so does the PyTorch module in torch.
//!
//! ONNX Runtime lives in the virtual environment `.ci/run` makes (`target/onnx-venv`, or the
//! Python named by `NNC_ONNX_PYTHON`), torch in another (`target/torch-venv`, or
//! `NNC_TORCH_PYTHON`), run by `tests/support/onnx_run.py` and `torch_run.py`. Without them
//! the tests fail under CI (`CI=true`) and are skipped, saying so, elsewhere.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use nnc::backend::BatchInputs;
use nnc::trainer::predicted_class;
use nnc::{BackendKind, Predictor, Project};
use nnc_data::{Inputs, Targets};
use support::nnc;

/// Samples compared per model.
const SAMPLES: usize = 1000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python named by the variable `var`, or `target/<venv>/bin/python`, if it imports
/// `modules`; `None` (after saying why) when the `what` test may skip: never under CI.
fn python_with(var: &str, venv: &str, modules: &str, what: &str) -> Option<PathBuf> {
    let python = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target").join(venv).join("bin/python"));
    let works = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(python);
    }
    let why = format!(
        "no Python with {modules} at `{}` (.ci/run makes it; or set {var})",
        python.display()
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run the {what} test: {why}"
    );
    eprintln!("SKIPPED: {what}: {why}");
    None
}

/// The Python with ONNX Runtime.
fn python() -> Option<PathBuf> {
    python_with(
        "NNC_ONNX_PYTHON",
        "onnx-venv",
        "onnx, onnxruntime, numpy",
        "ONNX export against ONNX Runtime",
    )
}

/// The models with their data: every `.nn` of `models/` and `bench/zoo/`, and of
/// `tests/export_models/` (what they do not exercise).
fn models() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["models", "bench/zoo", "tests/export_models"] {
        for entry in std::fs::read_dir(root().join(dir)).expect("model directory") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "nn") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// What another runtime gave against what nnc gave, for one model and checkpoint.
struct Comparison {
    /// max |theirs − nnc's| over the outputs, and max |nnc's|.
    gap: f32,
    scale: f32,
    /// Correct predictions (classifiers): nnc's, the other runtime's.
    correct: Option<(usize, usize)>,
}

/// nnc's outputs on the first test samples of `file`'s data with `weights`, and those
/// samples written to `dir/inputs.bin` for the other runtime.
struct Reference {
    project: Project,
    rows: Vec<Vec<f32>>,
    labels: Option<Vec<i32>>,
    inputs: PathBuf,
    /// `uint8` or `float32`.
    dtype: &'static str,
    /// The samples' shape, batch first, comma-separated.
    shape: String,
}

fn reference(file: &Path, weights: &Path, dir: &Path) -> Result<Reference, String> {
    let project = Project::load(file, None, true).map_err(|e| e.to_string())?;
    let data = project.load_test_data(None).map_err(|e| e.to_string())?;
    let mut predictor =
        Predictor::new(&project, weights, BackendKind::Jit).map_err(|e| e.to_string())?;
    let inputs = dir.join("inputs.bin");
    let (n, rows, dtype, sample) = match &data.test.inputs {
        Inputs::U8 { data, sample } => {
            let size: usize = sample.iter().product();
            let n = (data.len() / size).min(SAMPLES);
            let x = &data[..n * size];
            std::fs::write(&inputs, x).expect("write inputs");
            let rows = predictor.predict(BatchInputs::U8(x));
            (n, rows, "uint8", sample.clone())
        }
        Inputs::F32 { data, sample } => {
            let size: usize = sample.iter().product();
            let n = (data.len() / size).min(SAMPLES);
            let x = &data[..n * size];
            let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(&inputs, bytes).expect("write inputs");
            let rows = predictor.predict(BatchInputs::F32(x));
            (n, rows, "float32", sample.clone())
        }
    };
    let rows = rows.map_err(|e| e.to_string())?;
    let shape: Vec<String> = std::iter::once(n)
        .chain(sample)
        .map(|d| d.to_string())
        .collect();
    let labels = match &data.test.targets {
        Targets::Classes { labels, .. } => Some(labels[..n].to_vec()),
        Targets::Values { .. } => None,
    };
    Ok(Reference {
        project,
        rows,
        labels,
        inputs,
        dtype,
        shape: shape.join(","),
    })
}

impl Reference {
    /// `theirs` (row-major, as the other runtime wrote it) against nnc's rows.
    fn compare(&self, theirs: &[f32]) -> Result<Comparison, String> {
        let width = self.rows.first().map_or(0, Vec::len);
        let ours: Vec<f32> = self.rows.concat();
        if theirs.len() != ours.len() {
            return Err(format!(
                "`output` has {} values, nnc gave {} ({} × {width})",
                theirs.len(),
                ours.len(),
                self.rows.len()
            ));
        }
        let gap = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(
                0.0f32,
                |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
            );
        let scale = ours.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let correct = self.labels.as_ref().map(|labels| {
            let count = |pred: &mut dyn Iterator<Item = usize>| {
                pred.zip(labels)
                    .filter(|(p, l)| *p as i64 == **l as i64)
                    .count()
            };
            let nnc_correct = count(&mut self.rows.iter().map(|r| predicted_class(r)));
            let their_correct = count(&mut theirs.chunks(width.max(1)).map(predicted_class));
            (nnc_correct, their_correct)
        });
        Ok(Comparison {
            gap,
            scale,
            correct,
        })
    }
}

/// Runs `python script args…`; its stdout's JSON.
fn run_python(
    python: &Path,
    script: &str,
    args: &[&std::ffi::OsStr],
) -> Result<serde_json::Value, String> {
    let out = Command::new(python)
        .arg(root().join("tests/support").join(script))
        .args(args)
        .output()
        .expect("python runs");
    if !out.status.success() {
        return Err(format!(
            "{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{script}'s JSON: {e}"))
}

/// A float32 file's values.
fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("output file")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// `nnc export FILE --weights W <target…>`; its stderr.
fn export(file: &Path, weights: &Path, target: &[&str]) -> Result<String, String> {
    let args = [
        &[
            "export",
            file.to_str().expect("utf-8"),
            "--weights",
            weights.to_str().expect("utf-8"),
        ][..],
        target,
    ]
    .concat();
    let (_, stderr, code) = nnc(&args);
    if code != 0 {
        return Err(format!("nnc export failed ({code}): {stderr}"));
    }
    Ok(stderr)
}

/// Exports `file` with `weights` and compares ONNX Runtime's outputs with nnc's on the first
/// test samples.
fn compare(python: &Path, file: &Path, weights: &Path, dir: &Path) -> Result<Comparison, String> {
    let onnx = dir.join("model.onnx");
    export(file, weights, &["--onnx", onnx.to_str().expect("utf-8")])?;
    let r = reference(file, weights, dir)?;
    let report = run_python(
        python,
        "onnx_run.py",
        &[
            onnx.as_os_str(),
            r.inputs.as_os_str(),
            r.dtype.as_ref(),
            r.shape.as_ref(),
            dir.as_os_str(),
        ],
    )?;
    let comparison = r.compare(&read_f32(&dir.join("output.bin")))?;

    // The probabilities `nnc predict` reports: the softmax of the logits under
    // softmax_cross_entropy, the output itself under cross_entropy.
    let width = r.rows.first().map_or(0, Vec::len);
    let loss = r.project.model.train.as_ref().map(|t| t.loss);
    if report["outputs"].get("probabilities").is_some() {
        let p = read_f32(&dir.join("probabilities.bin"));
        for (i, row) in r.rows.iter().enumerate() {
            let want: Vec<f32> = if loss == Some(nnc_check::Loss::SoftmaxCrossEntropy) {
                let m = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let e: Vec<f32> = row.iter().map(|&v| (v - m).exp()).collect();
                let s: f32 = e.iter().sum();
                e.iter().map(|v| v / s).collect()
            } else {
                row.clone()
            };
            for (a, b) in want.iter().zip(&p[i * width..(i + 1) * width]) {
                if (a - b).abs() > 1e-5 {
                    return Err(format!("sample {i}: probability {b}, nnc's {a}"));
                }
            }
        }
    } else if loss != Some(nnc_check::Loss::Mse) {
        return Err("a classifier's export has no `probabilities`".into());
    }
    Ok(comparison)
}

/// Checks one model and checkpoint, returning a line for the report or the failure.
fn check(
    python: &Path,
    file: &Path,
    weights: &Path,
    dir: &Path,
) -> Result<(String, Comparison), String> {
    judge(file, "onnx", compare(python, file, weights, dir)?)
}

/// The report line for a comparison, or why it fails: outputs beyond 1e-5 of nnc's scale
/// (plus 1e-6), or another number of correct predictions.
fn judge(file: &Path, runtime: &str, c: Comparison) -> Result<(String, Comparison), String> {
    let shown = support::relative(file);
    let line = format!(
        "{shown}: max |{runtime} − nnc| {:.2e} of {:.2e}{}",
        c.gap,
        c.scale,
        c.correct
            .map_or(String::new(), |(a, b)| format!(", correct {a} / {b}"))
    );
    // A NaN gap was made infinite above.
    if c.gap > 1e-5 * c.scale + 1e-6 {
        return Err(format!("{line}: outputs differ beyond 1e-5 of their scale"));
    }
    if let Some((a, b)) = c.correct
        && a != b
    {
        return Err(format!("{line}: accuracy differs"));
    }
    Ok((line, c))
}

#[test]
fn every_model_exports_to_onnx_and_runs_the_same_in_onnx_runtime() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    let mut checked = 0;
    for (i, file) in models().iter().enumerate() {
        let dir = tmp.path().join(i.to_string());
        std::fs::create_dir_all(&dir).expect("dir");
        let weights = dir.join("init.safetensors");
        let (_, stderr, code) = nnc(&[
            "init",
            file.to_str().expect("utf-8"),
            "-o",
            weights.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "nnc init {}: {stderr}", file.display());
        match check(&python, file, &weights, &dir) {
            Ok((line, _)) => eprintln!("{line}"),
            Err(e) => failures.push(format!("{}: {e}", support::relative(file))),
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} models found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Trained weights are exported as trained: LeNet-5, LeNet-1998 (its connection table
/// masks trained weights, its subsampling has trained coefficients) and a model with batch
/// normalisation (its running statistics moved from 0 and 1), after 200 steps.
#[test]
fn trained_weights_export_to_onnx() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    for path in [
        "models/lenet5.nn",
        "models/lenet5-1998.nn",
        "tests/export_models/batchnorm.nn",
    ] {
        let file = root().join(path);
        let name = file.file_stem().and_then(|s| s.to_str()).expect("utf-8");
        let run = tmp.path().join(name);
        let (_, stderr, code) = nnc(&[
            "train",
            file.to_str().expect("utf-8"),
            "--out",
            run.to_str().expect("utf-8"),
            "--stop-after-steps",
            "200",
        ]);
        assert!(
            code == 0 || code == 130,
            "nnc train {name} ({code}): {stderr}"
        );
        let weights = run.join(nnc::checkpoint::FILE);
        let ckpt = nnc::Checkpoint::load(&weights).expect("checkpoint");
        assert!(
            ckpt.meta.step >= 200,
            "{name} trained {} steps",
            ckpt.meta.step
        );
        let (line, c) = check(&python, &file, &weights, &run).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("trained {line}");
        // LeNet-5 is well past chance after 200 steps (LeNet-1998's scaled tanh and
        // RBF-like output learn more slowly): the weights are trained ones.
        let (ours, _) = c.correct.expect("a classifier");
        if name == "lenet5" {
            assert!(ours > 500, "{name} after 200 steps: {line}");
        }
    }
}

/// Usage mistakes end in a message and exit 2, and no file is written.
#[test]
fn export_refuses_without_a_target_or_with_weights_of_another_model() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let xor_weights = tmp.path().join("xor.safetensors");
    let (_, stderr, code) = nnc(&[
        "init",
        "models/xor.nn",
        "-o",
        xor_weights.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (_, stderr, code) = nnc(&[
        "export",
        "models/xor.nn",
        "--weights",
        xor_weights.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--onnx"), "{stderr}");
    let out = tmp.path().join("mlp.onnx");
    let (_, stderr, code) = nnc(&[
        "export",
        "models/mlp.nn",
        "--weights",
        xor_weights.to_str().expect("utf-8"),
        "--onnx",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("holds model `xor`"), "{stderr}");
    assert!(
        !out.exists(),
        "a file was written for weights that do not fit"
    );
    // A directory that cannot be made: under a regular file.
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, "not a directory").expect("write");
    let under = blocker.join("pytorch");
    let (_, stderr, code) = nnc(&[
        "export",
        "models/xor.nn",
        "--weights",
        xor_weights.to_str().expect("utf-8"),
        "--pytorch",
        under.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot create"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The Python with torch and safetensors.
fn torch_python() -> Option<PathBuf> {
    python_with(
        "NNC_TORCH_PYTHON",
        "torch-venv",
        "torch, safetensors, numpy",
        "PyTorch export against torch",
    )
}

/// The first training batch of `project` as `nnc train` takes it (nnc-data's seeded order of
/// epoch 1), written to `dir`, as `torch_run.py`'s arguments: the samples' file, their shape,
/// the targets' file and their dtype. `None` when the first step's loss is not a function of
/// the weights and that batch alone (dropout, augmentation, a validation split).
fn first_batch(project: &Project, dir: &Path) -> Option<Vec<String>> {
    let train = project.model.train.as_ref()?;
    let dropout = project
        .model
        .layers
        .iter()
        .any(|l| matches!(l.kind, nnc_check::LayerKind::Dropout { rate } if rate > 0.0));
    if dropout || train.augment.is_some() || train.validation.is_some() {
        return None;
    }
    let data = project.load_data(None).expect("data");
    let (x, sample, width) = match &data.train.inputs {
        Inputs::U8 { data, sample } => (data.clone(), sample.clone(), 1),
        Inputs::F32 { data, sample } => (
            data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            sample.clone(),
            4,
        ),
    };
    let size = sample.iter().product::<usize>() * width;
    let n = x.len() / size;
    // Epochs count from 1.
    let batch: Vec<usize> = nnc_data::epoch_order(n, train.seed, 1)
        .into_iter()
        .take(train.batch.min(n))
        .collect();
    let xb: Vec<u8> = batch
        .iter()
        .flat_map(|&i| x[i * size..(i + 1) * size].iter().copied())
        .collect();
    let (yb, dtype): (Vec<u8>, &str) = match &data.train.targets {
        Targets::Classes { labels, .. } => (
            batch
                .iter()
                .flat_map(|&i| labels[i].to_le_bytes())
                .collect(),
            "int32",
        ),
        Targets::Values { data, width } => (
            batch
                .iter()
                .flat_map(|&i| data[i * width..(i + 1) * width].iter())
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            "float32",
        ),
    };
    let (xp, yp) = (dir.join("batch.bin"), dir.join("targets.bin"));
    std::fs::write(&xp, xb).expect("write batch");
    std::fs::write(&yp, yb).expect("write targets");
    let shape: Vec<String> = std::iter::once(batch.len())
        .chain(sample)
        .map(|d| d.to_string())
        .collect();
    Some(vec![
        xp.display().to_string(),
        shape.join(","),
        yp.display().to_string(),
        dtype.to_string(),
    ])
}

/// The loss of `nnc train`'s first step (from the train block's seed's initial weights).
fn nnc_first_loss(file: &Path, dir: &Path) -> f64 {
    let run = dir.join("run");
    let (stdout, stderr, code) = nnc(&[
        "train",
        file.to_str().expect("utf-8"),
        "--stop-after-steps",
        "1",
        "--json",
        "--out",
        run.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 130, "stopped as by Ctrl-C: {stderr}");
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|o| o["interrupted"] == true)
        .and_then(|o| o["last_step_loss"].as_f64())
        .expect("last_step_loss")
}

/// `nnc export --pytorch`: every model's module, loaded with `load_state_dict(strict=True)`
/// from the exported weights, gives nnc's outputs (1e-5 of their scale) and accuracy on the
/// first 1,000 test samples; and where the first step's loss depends on the weights and the
/// batch alone, one training step in torch (loss, backward, SGD update) from `nnc init`'s
/// weights has the loss of `nnc train`'s first step.
#[test]
fn every_model_exports_to_pytorch_and_runs_the_same_in_torch() {
    let Some(python) = torch_python() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    let mut steps = 0;
    for (i, file) in models().iter().enumerate() {
        let dir = tmp.path().join(i.to_string());
        let module = dir.join("pytorch");
        std::fs::create_dir_all(&dir).expect("dir");
        let weights = dir.join("init.safetensors");
        let (_, stderr, code) = nnc(&[
            "init",
            file.to_str().expect("utf-8"),
            "-o",
            weights.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "nnc init {}: {stderr}", file.display());
        let result = (|| -> Result<String, String> {
            let said = export(
                file,
                &weights,
                &["--pytorch", module.to_str().expect("utf-8")],
            )?;
            let class = said
                .split("class ")
                .nth(1)
                .and_then(|s| s.split(';').next())
                .ok_or_else(|| format!("no class named in `{said}`"))?
                .to_string();
            let r = reference(file, &weights, &dir)?;
            let batch = first_batch(&r.project, &dir);
            let mut args: Vec<&std::ffi::OsStr> = vec![
                module.as_os_str(),
                class.as_ref(),
                r.inputs.as_os_str(),
                r.dtype.as_ref(),
                r.shape.as_ref(),
                dir.as_os_str(),
            ];
            if let Some(b) = &batch {
                args.extend(b.iter().map(std::ffi::OsStr::new));
            }
            let report = run_python(&python, "torch_run.py", &args)?;
            let (mut line, _) = judge(
                file,
                "torch",
                r.compare(&read_f32(&dir.join("output.bin")))?,
            )?;
            if batch.is_some() {
                let theirs = report["loss"].as_f64().ok_or("no loss reported")?;
                if report["all_grads"] != true {
                    return Err(format!("{line}: a parameter got no finite gradient"));
                }
                let ours = nnc_first_loss(file, &dir);
                line += &format!(", first step's loss {theirs:.6} / nnc {ours:.6}");
                if (theirs - ours).abs() > 1e-5 * ours.abs() + 1e-6 {
                    return Err(format!("{line}: the first step's loss differs"));
                }
                steps += 1;
            }
            Ok(line)
        })();
        match result {
            Ok(line) => eprintln!("{line}"),
            Err(e) => failures.push(format!("{}: {e}", support::relative(file))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        steps >= 5,
        "only {steps} models had their first step compared"
    );
}
