//! End-to-end tests of `nnc train`, `nnc eval` and `nnc predict` through the binary: the run
//! directory, exact resume (after a clean stop, a simulated and a real Ctrl-C), divergence,
//! early stopping, checkpoints refused for another model, predictions that agree with `eval`,
//! and data errors from the malformed-file corpus.
//!
//! The models are small and train on slices of the MNIST test set written as IDX files, so
//! every test takes seconds on the interpreter.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use nnc::Checkpoint;
use support::nnc_in as run;

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn idx_images(path: &Path, images: &[u8], n: usize) {
    let mut bytes = vec![0, 0, 8, 3];
    for d in [n, 28, 28] {
        bytes.extend((d as u32).to_be_bytes());
    }
    bytes.extend_from_slice(images);
    std::fs::write(path, bytes).expect("write images");
}

fn idx_labels(path: &Path, labels: &[u8]) {
    let mut bytes = vec![0, 0, 8, 1];
    bytes.extend((labels.len() as u32).to_be_bytes());
    bytes.extend_from_slice(labels);
    std::fs::write(path, bytes).expect("write labels");
}

/// Slices of the MNIST test set as IDX files (made once per test run): `train` (600 digits),
/// `test` (60 others). Returns the directory and the test digits with their labels.
struct Digits {
    dir: PathBuf,
    test_images: Vec<Vec<u8>>,
    test_labels: Vec<u8>,
}

fn digits() -> &'static Digits {
    static DIGITS: OnceLock<Digits> = OnceLock::new();
    DIGITS.get_or_init(|| {
        let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
        let ds = nnc_data::mnist(&mnist, nnc_data::Split::Test).expect("MNIST test set");
        let (nnc_data::Inputs::U8 { data, .. }, nnc_data::Targets::Classes { labels, .. }) =
            (&ds.inputs, &ds.targets)
        else {
            panic!("MNIST is u8 images with class labels");
        };
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("train-digits");
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let labels: Vec<u8> = labels.iter().map(|&l| l as u8).collect();
        let px = 28 * 28;
        idx_images(&dir.join("train-images.idx"), &data[..600 * px], 600);
        idx_labels(&dir.join("train-labels.idx"), &labels[..600]);
        let (a, b) = (1000, 1060);
        idx_images(&dir.join("test-images.idx"), &data[a * px..b * px], b - a);
        idx_labels(&dir.join("test-labels.idx"), &labels[a..b]);
        Digits {
            test_images: data[a * px..b * px]
                .chunks(px)
                .map(<[u8]>::to_vec)
                .collect(),
            test_labels: labels[a..b].to_vec(),
            dir,
        }
    })
}

/// A model file in a fresh directory whose data are the digit slices.
fn model_dir(model: &str, train: &str) -> (tempfile::TempDir, PathBuf) {
    let d = digits();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = |n: &str| d.dir.join(n).display().to_string();
    let source = format!(
        "{model}\ntrain m {{\n    data idx(images: \"{}\", labels: \"{}\", scale: 1/255)\n    \
         test idx(images: \"{}\", labels: \"{}\", scale: 1/255)\n{train}\n}}\n",
        path("train-images.idx"),
        path("train-labels.idx"),
        path("test-images.idx"),
        path("test-labels.idx"),
    );
    let file = tmp.path().join("m.nn");
    std::fs::write(&file, source).expect("write model");
    (tmp, file)
}

const MLP: &str = "model m {
    input image: f32[1, 28, 28]
    flatten
    hidden: dense(32) -> relu
    drop: dropout(0.25)
    out: dense(10)
}";

/// Everything a resume must reproduce: validation split, augmentation, dropout, optimizer
/// state, early stopping's memory, a partial last batch (480 training samples, batch 50) and
/// the learning-rate schedule (halved from epoch 3, in the resumed part of each run below).
const RESUMABLE: &str = "
    loss softmax_cross_entropy
    optimizer momentum(lr: 0.05, momentum: 0.9)
    schedule step(every: 2, gamma: 0.5)
    batch 50
    epochs 4
    seed 11
    validation 0.2
    early_stop(patience: 10)
    augment(shift: 2)";

/// metrics.csv without the wall-time columns.
fn metrics_without_seconds(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).expect("metrics.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let timed = |c: &str| c == "seconds" || c == "train_seconds";
    assert!(header.iter().any(|&c| timed(c)), "wall-time columns");
    let keep = |row: Vec<&str>| -> String {
        row.iter()
            .zip(&header)
            .filter(|(_, h)| !timed(h))
            .map(|(v, _)| *v)
            .collect::<Vec<_>>()
            .join(",")
    };
    std::iter::once(keep(header.clone()))
        .chain(lines.map(|l| keep(l.split(',').collect())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The values of column `name` of a metrics.csv text, one per epoch.
fn column(metrics: &str, name: &str) -> Vec<f64> {
    let mut lines = metrics.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let at = header
        .iter()
        .position(|&c| c == name)
        .unwrap_or_else(|| panic!("no column {name}: {metrics}"));
    lines
        .map(|l| {
            l.split(',')
                .nth(at)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} of {l}"))
        })
        .collect()
}

fn checkpoint(dir: &Path) -> Checkpoint {
    Checkpoint::load(&dir.join("checkpoint.safetensors")).expect("checkpoint")
}

#[test]
fn resume_reproduces_the_uninterrupted_run_exactly() {
    let (tmp, file) = model_dir(MLP, RESUMABLE);
    let file = file.to_str().expect("path");
    let dir = tmp.path();

    let (_, err, code) = run(dir, &["train", file, "--out", "straight"]);
    assert_eq!(code, 0, "{err}");

    // Stopped after epoch 2, then resumed for epochs 3 and 4.
    let (_, err, code) = run(dir, &["train", file, "--out", "split", "--epochs", "2"]);
    assert_eq!(code, 0, "{err}");
    let (_, err, code) = run(dir, &["train", file, "--out", "split", "--resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("resuming from"), "{err}");
    // A step schedule counts epochs from the start: a longer run takes the same rates.
    assert!(!err.contains("schedule"), "{err}");

    // Stopped as by Ctrl-C in the middle of epoch 2 (10 steps per epoch), then resumed.
    let (out, err, code) = run(
        dir,
        &[
            "train",
            file,
            "--out",
            "ctrl-c",
            "--stop-after-steps",
            "13",
            "--json",
        ],
    );
    assert_eq!(code, 130, "{err}");
    assert!(
        err.contains("interrupted in epoch 2 after 150 of its 480 samples"),
        "{err}"
    );
    let last = json_lines(&out)
        .pop()
        .expect("an object for the interruption");
    assert_eq!(last["interrupted"], true);
    assert_eq!(checkpoint(&dir.join("ctrl-c")).meta.partial.samples, 150);
    let (_, err, code) = run(dir, &["train", file, "--out", "ctrl-c", "--resume"]);
    assert_eq!(code, 0, "{err}");

    let straight = metrics_without_seconds(&dir.join("straight"));
    assert_eq!(straight.lines().count(), 5, "{straight}");
    assert!(straight.starts_with("epoch,train_loss,train_acc,val_loss,val_acc,test_loss"));
    for other in ["split", "ctrl-c"] {
        assert_eq!(
            metrics_without_seconds(&dir.join(other)),
            straight,
            "{other}"
        );
        let (a, b) = (
            checkpoint(&dir.join("straight")),
            checkpoint(&dir.join(other)),
        );
        assert_eq!(a.params, b.params, "{other}: final weights");
        assert_eq!(a.states, b.states, "{other}: optimizer state");
        assert_eq!(a.best, b.best, "{other}: best weights");
        assert_eq!(a.meta.step, b.meta.step);
    }

    // Nothing more to do: the run is complete.
    let (_, err, code) = run(dir, &["train", file, "--out", "straight", "--resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("already has 4 epochs"), "{err}");
}

/// A cosine schedule spans the run's epochs: a run interrupted in the middle of an epoch and
/// resumed takes the same rates, and one resumed for more epochs than it started with is told
/// that its rates differ.
#[test]
fn a_schedule_resumes_where_it_stopped() {
    let train = "
    loss softmax_cross_entropy
    optimizer momentum(lr: 0.05, momentum: 0.9)
    schedule cosine(min: 0.1)
    batch 50
    epochs 3
    seed 3";
    let (tmp, file) = model_dir(MLP, train);
    let file = file.to_str().expect("path");
    let dir = tmp.path();
    let (_, err, code) = run(dir, &["train", file, "--out", "straight"]);
    assert_eq!(code, 0, "{err}");
    let (_, err, code) = run(
        dir,
        &["train", file, "--out", "ctrl-c", "--stop-after-steps", "17"],
    );
    assert_eq!(code, 130, "{err}");
    let (_, err, code) = run(dir, &["train", file, "--out", "ctrl-c", "--resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("schedule"), "{err}");
    let straight = metrics_without_seconds(&dir.join("straight"));
    assert_eq!(metrics_without_seconds(&dir.join("ctrl-c")), straight);
    assert_eq!(
        checkpoint(&dir.join("straight")).params,
        checkpoint(&dir.join("ctrl-c")).params
    );
    assert_eq!(checkpoint(&dir.join("straight")).meta.epochs, Some(3));
    // metrics.csv logs the rate of each epoch's last step: 12 steps an epoch, 36 in all.
    let rates = column(&straight, "lr");
    let cosine =
        |t: f64| 0.05 * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t / 36.0).cos()));
    assert_eq!(rates.len(), 3);
    for (e, r) in rates.iter().enumerate() {
        let want = cosine((12 * (e + 1) - 1) as f64);
        assert!(
            (r - want).abs() < 1e-12,
            "epoch {}: lr {r}, want {want}",
            e + 1
        );
    }

    // The schedule matters: without it, the same run ends elsewhere.
    let (tmp2, constant) = model_dir(MLP, &train.replace("schedule cosine(min: 0.1)", ""));
    let (_, err, code) = run(
        tmp2.path(),
        &["train", constant.to_str().expect("path"), "--out", "c"],
    );
    assert_eq!(code, 0, "{err}");
    let plain = metrics_without_seconds(&tmp2.path().join("c"));
    assert_ne!(plain, straight);
    assert!(
        !plain.lines().next().expect("header").contains(",lr"),
        "{plain}"
    );

    // Two epochs planned, then resumed for the block's three: the rates differ, and it says so.
    let (_, err, code) = run(dir, &["train", file, "--out", "split", "--epochs", "2"]);
    assert_eq!(code, 0, "{err}");
    let (_, err, code) = run(dir, &["train", file, "--out", "split", "--resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the learning-rate schedule spanned 2 epochs, it now spans 3"),
        "{err}"
    );
}

/// A warmup ramps the rate up over its epochs, even before a constant rate: the step takes the
/// rate as a parameter, and the driver sets it from the ramp.
#[test]
fn a_warmup_ramps_the_rate_up() {
    let train = "
    loss softmax_cross_entropy
    optimizer momentum(lr: 0.05, momentum: 0.9)
    schedule constant(warmup: 2)
    batch 50
    epochs 3
    seed 3";
    let (tmp, file) = model_dir(MLP, train);
    let (_, err, code) = run(
        tmp.path(),
        &["train", file.to_str().expect("path"), "--out", "w"],
    );
    assert_eq!(code, 0, "{err}");
    let rates = column(&metrics_without_seconds(&tmp.path().join("w")), "lr");
    // 12 steps an epoch, 24 of warmup: step 11 takes 12/24 of the rate, steps 23 on all of it.
    assert_eq!(rates, vec![0.025, 0.05, 0.05]);
}

#[test]
fn augmentation_and_seed_change_the_run() {
    let (tmp, file) = model_dir(MLP, &RESUMABLE.replace("epochs 4", "epochs 1"));
    let file = file.to_str().expect("path");
    let loss = |args: &[&str]| {
        let mut all = vec!["train", file, "--json"];
        all.extend(args);
        let (out, err, code) = run(tmp.path(), &all);
        assert_eq!(code, 0, "{err}");
        json_lines(&out)[0]["train_loss"].as_f64().expect("loss")
    };
    let base = loss(&["--out", "a"]);
    assert_eq!(
        base,
        loss(&["--out", "b"]),
        "the same seed gives the same run"
    );
    assert_ne!(base, loss(&["--out", "c", "--seed", "12"]));
    let (tmp2, plain) = model_dir(
        MLP,
        &RESUMABLE
            .replace("augment(shift: 2)", "")
            .replace("epochs 4", "epochs 1"),
    );
    let (out, err, code) = run(
        tmp2.path(),
        &["train", plain.to_str().expect("path"), "--json"],
    );
    assert_eq!(code, 0, "{err}");
    assert_ne!(
        json_lines(&out)[0]["train_loss"].as_f64(),
        Some(base),
        "augmentation shifts the images"
    );
}

#[test]
fn run_directory_holds_metrics_plots_source_and_checkpoint() {
    let (tmp, file) = model_dir(MLP, RESUMABLE.replace("epochs 4", "epochs 2").as_str());
    let (out, err, code) = run(
        tmp.path(),
        &["train", file.to_str().expect("path"), "--json"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("run directory: runs/m"), "{err}");
    let run_dir = tmp.path().join("runs/m");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "two epochs and a summary");
    for key in [
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "seconds",
        "train_seconds",
        "grad_norms",
        "weight_norms",
    ] {
        assert!(lines[0].get(key).is_some(), "{key} in {}", lines[0]);
    }
    for layer in ["hidden", "out"] {
        assert!(
            lines[1]["grad_norms"][layer]
                .as_f64()
                .is_some_and(|g| g > 0.0)
        );
        assert!(
            lines[1]["weight_norms"][layer]
                .as_f64()
                .is_some_and(|w| w > 0.0)
        );
    }
    let summary = &lines[2];
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["test_acc"], lines[1]["test_acc"]);
    let metrics = std::fs::read_to_string(run_dir.join("metrics.csv")).expect("metrics");
    assert_eq!(metrics.lines().count(), 3);
    assert!(
        metrics
            .lines()
            .next()
            .expect("header")
            .contains(",grad_norm.hidden,grad_norm.out,weight_norm.hidden,")
    );
    for svg in ["curves.svg", "norms.svg", "confusion.svg"] {
        let text = std::fs::read_to_string(run_dir.join(svg)).expect(svg);
        assert!(
            text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "{svg}"
        );
    }
    let curves = std::fs::read_to_string(run_dir.join("curves.svg")).expect("svg");
    assert!(
        curves.lines().any(|l| l.trim() == "val"),
        "a validation curve"
    );
    assert_eq!(
        std::fs::read(run_dir.join("m.nn")).expect("source copy"),
        std::fs::read(&file).expect("source")
    );
    let ckpt = checkpoint(&run_dir);
    let names: Vec<&str> = ckpt.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    );
    assert_eq!(ckpt.params[0].shape, [784, 32]);
    assert_eq!(ckpt.states[0].name, "hidden.weight.velocity");
    assert_eq!(ckpt.meta.epoch, 2);
    let leftovers: Vec<_> = std::fs::read_dir(&run_dir)
        .expect("run dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn early_stopping_restores_the_best_weights() {
    // No later epoch can beat the first by 100: patience 1 stops after epoch 2.
    let train = RESUMABLE.replace(
        "early_stop(patience: 10)",
        "early_stop(patience: 1, min_delta: 100)",
    );
    let (tmp, file) = model_dir(MLP, &train);
    let (out, err, code) = run(
        tmp.path(),
        &["train", file.to_str().expect("path"), "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{out}");
    let summary = &lines[2];
    assert_eq!(summary["stopped_early"], true);
    assert_eq!(summary["best_epoch"], 1);
    // The restored weights are epoch 1's: the same test figures.
    assert_eq!(summary["test_loss"], lines[0]["test_loss"]);
    assert!(
        summary["weights"]
            .as_str()
            .is_some_and(|w| w.ends_with("best.safetensors"))
    );
    let (eval, err, code) = run(
        tmp.path(),
        &[
            "eval",
            file.to_str().expect("path"),
            "--weights",
            "runs/m/best.safetensors",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_lines(&eval)[0]["test_loss"], lines[0]["test_loss"]);
    // A stopped run does not start again on --resume.
    let (out, err, code) = run(
        tmp.path(),
        &["train", file.to_str().expect("path"), "--resume"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.is_empty() && err.contains("the run stopped early after epoch 2"),
        "{err}"
    );
}

/// A linear model with a learning rate far too large: the loss grows until it is infinite.
const DIVERGES: &str = "model m {
    input x: f32[1]
    out: dense(1) -> identity
}
train m {
    data {
        1 -> 2
        2 -> 4
        3 -> 6
        4 -> 8
    }
    loss mse
    optimizer sgd(lr: 100)
    batch 4
    epochs 1000
}
";

#[test]
fn divergence_stops_at_once_with_the_step_and_advice() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("m.nn"), DIVERGES).expect("write");
    let (_, err, code) = run(tmp.path(), &["train", "m.nn"]);
    assert_eq!(code, 1, "{err}");
    let line = err.lines().last().expect("a message");
    assert!(
        line.starts_with("error: the loss became inf at step ")
            || line.starts_with("error: the loss became NaN at step "),
        "{err}"
    );
    assert!(line.contains("the last finite loss was"), "{err}");
    assert!(line.contains("Lower the learning rate"), "{err}");
}

#[test]
fn eval_reproduces_the_training_figures_and_predict_agrees_with_it() {
    let train = "
    loss softmax_cross_entropy
    optimizer adam(lr: 0.003)
    batch 32
    epochs 1";
    let (tmp, file) = model_dir(MLP, train);
    let file = file.to_str().expect("path");
    let dir = tmp.path();
    let (out, err, code) = run(dir, &["train", file, "--json"]);
    assert_eq!(code, 0, "{err}");
    let summary = json_lines(&out).pop().expect("summary");

    let weights = "runs/m/checkpoint.safetensors";
    let (out, err, code) = run(dir, &["eval", file, "--weights", weights, "--json"]);
    assert_eq!(code, 0, "{err}");
    let eval = json_lines(&out).pop().expect("eval");
    assert_eq!(eval["test_acc"], summary["test_acc"]);
    assert_eq!(eval["test_loss"], summary["test_loss"]);
    assert!(eval["test_acc"].as_f64().is_some_and(|a| a > 0.6), "{eval}");
    let (text, _, _) = run(dir, &["eval", file, "--weights", weights]);
    assert!(text.contains("class  samples  accuracy"), "{text}");

    // Every test digit as a PNG; one also dark on light, one also at twice the size.
    let d = digits();
    let png = |path: &Path, side: usize, pixels: &[u8]| {
        let mut bytes = Vec::new();
        let mut enc = png::Encoder::new(&mut bytes, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()
            .expect("header")
            .write_image_data(pixels)
            .expect("data");
        std::fs::write(path, bytes).expect("write png");
    };
    let mut files = Vec::new();
    for (i, img) in d.test_images.iter().enumerate() {
        let path = dir.join(format!("digit-{i}.png"));
        png(&path, 28, img);
        files.push(path);
    }
    let inverted: Vec<u8> = d.test_images[3].iter().map(|p| 255 - p).collect();
    png(&dir.join("inverted.png"), 28, &inverted);
    let doubled: Vec<u8> = (0..56 * 56)
        .map(|i| d.test_images[5][(i / 56 / 2) * 28 + (i % 56) / 2])
        .collect();
    png(&dir.join("doubled.png"), 56, &doubled);
    let mut args = vec!["predict", file, "--weights", weights, "--json"];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    args.extend(["inverted.png", "doubled.png"]);
    let (out, err, code) = run(dir, &args);
    assert_eq!(code, 0, "{err}");
    let predictions = json_lines(&out);
    assert_eq!(predictions.len(), d.test_images.len() + 2);
    let class = |p: &serde_json::Value| p["class"].as_u64().expect("class") as usize;

    // The predictions give eval's confusion matrix exactly.
    let mut confusion = vec![vec![0u64; 10]; 10];
    for (p, &label) in predictions.iter().zip(&d.test_labels) {
        confusion[label as usize][class(p)] += 1;
        let probabilities = p["probabilities"].as_array().expect("probabilities");
        let sum: f64 = probabilities.iter().filter_map(|v| v.as_f64()).sum();
        assert!((sum - 1.0).abs() < 1e-6, "{p}");
        assert_eq!(p["inverted"], false);
    }
    let expected: Vec<Vec<u64>> =
        serde_json::from_value(eval["confusion"].clone()).expect("confusion");
    assert_eq!(confusion, expected);
    let n = predictions.len();
    assert_eq!(predictions[n - 2]["inverted"], true);
    assert_eq!(
        class(&predictions[n - 2]),
        class(&predictions[3]),
        "inverted digit"
    );
    assert_eq!(predictions[n - 1]["resized"], true);
    assert_eq!(
        class(&predictions[n - 1]),
        class(&predictions[5]),
        "doubled digit"
    );

    // A directory stands for its images in name order, streamed in chunks (300 images: more
    // than one chunk); other files in it are skipped.
    let folder = dir.join("folder");
    std::fs::create_dir(&folder).expect("folder");
    for i in 0..300 {
        png(
            &folder.join(format!("digit-{i:04}.png")),
            28,
            &d.test_images[i % d.test_images.len()],
        );
    }
    std::fs::write(folder.join("notes.txt"), "not an image").expect("write");
    let (out, err, code) = run(
        dir,
        &["predict", file, "--weights", weights, "--json", "folder"],
    );
    assert_eq!(code, 0, "{err}");
    let streamed = json_lines(&out);
    assert_eq!(streamed.len(), 300);
    for (i, p) in streamed.iter().enumerate() {
        assert!(
            p["file"]
                .as_str()
                .is_some_and(|f| f.ends_with(&format!("digit-{i:04}.png"))),
            "{p}"
        );
        assert_eq!(
            class(p),
            class(&predictions[i % d.test_images.len()]),
            "{p}"
        );
    }
    std::fs::create_dir(dir.join("empty")).expect("empty folder");
    let (_, err, code) = run(dir, &["predict", file, "--weights", weights, "empty"]);
    assert_eq!(code, 2);
    assert!(err.contains("holds no PNG or PGM images"), "{err}");

    // Text output, and images that are not images.
    let (text, _, code) = run(
        dir,
        &["predict", file, "--weights", weights, "inverted.png"],
    );
    assert_eq!(code, 0);
    assert!(text.contains("inverted: its border is bright"), "{text}");
    std::fs::write(dir.join("not.png"), "hello").expect("write");
    let (_, err, code) = run(dir, &["predict", file, "--weights", weights, "not.png"]);
    assert_eq!(code, 2);
    assert!(err.contains("not.png: not a PNG or PGM image"), "{err}");
}

#[test]
fn checkpoints_of_another_model_are_refused() {
    let (tmp, file) = model_dir(
        MLP,
        "
    loss softmax_cross_entropy
    optimizer sgd(lr: 0.1)
    batch 100
    epochs 1",
    );
    let dir = tmp.path();
    let (_, err, code) = run(dir, &["train", file.to_str().expect("path")]);
    assert_eq!(code, 0, "{err}");
    let weights = "runs/m/checkpoint.safetensors";
    let source = std::fs::read_to_string(&file).expect("source");

    // A comment does not change what the weights mean: they evaluate.
    std::fs::write(dir.join("commented.nn"), format!("{source}// a comment\n")).expect("write");
    let (_, err, code) = run(dir, &["eval", "commented.nn", "--weights", weights]);
    assert_eq!(code, 0, "{err}");

    // Another activation does, with the same parameters.
    std::fs::write(dir.join("edited.nn"), source.replace("-> relu", "-> tanh")).expect("write");
    let (_, err, code) = run(dir, &["eval", "edited.nn", "--weights", weights]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("was trained from another version of `edited.nn`"),
        "{err}"
    );
    assert!(
        err.contains("runs/m/m.nn"),
        "points at the saved copy: {err}"
    );

    std::fs::write(
        dir.join("wider.nn"),
        source.replace("dense(32)", "dense(48)"),
    )
    .expect("write");
    let (_, err, code) = run(dir, &["eval", "wider.nn", "--weights", weights]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`hidden.weight` is [784, 32] in the checkpoint but [784, 48] in the model"),
        "{err}"
    );

    let (_, err, code) = run(dir, &["train", "wider.nn", "--out", "runs/m", "--resume"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[784, 48]"), "{err}");

    std::fs::write(
        dir.join("torn.safetensors"),
        &std::fs::read(dir.join(weights)).expect("read")[..100],
    )
    .expect("write");
    let (_, err, code) = run(
        dir,
        &[
            "eval",
            file.to_str().expect("path"),
            "--weights",
            "torn.safetensors",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`torn.safetensors` is not a safetensors file"),
        "{err}"
    );

    let (_, err, code) = run(
        dir,
        &[
            "train",
            file.to_str().expect("path"),
            "--out",
            "elsewhere",
            "--resume",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("nothing to resume: `elsewhere/checkpoint.safetensors` does not exist"),
        "{err}"
    );
}

#[test]
fn a_validation_split_too_small_is_a_model_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let xor = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/xor.nn"))
        .expect("xor");
    std::fs::write(
        tmp.path().join("x.nn"),
        xor.replace("seed      1", "seed 1\n    validation 0.05"),
    )
    .expect("write");
    let (_, err, code) = run(tmp.path(), &["train", "x.nn"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`validation 0.05` of 4 training samples leaves 0 for validation"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_writes_a_checkpoint_and_exits_130() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let xor = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/xor.nn"))
        .expect("xor");
    std::fs::write(tmp.path().join("x.nn"), xor).expect("write");
    // Output goes to files: a pipe nobody reads would fill up and block the child.
    let file = |name: &str| std::fs::File::create(tmp.path().join(name)).expect("create");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .current_dir(tmp.path())
        .args([
            "train",
            "x.nn",
            "--epochs",
            "100000000",
            "--json",
            "--out",
            "run",
        ])
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .spawn()
        .expect("nnc runs");
    // Wait until it is training (the first row of metrics.csv), then press Ctrl-C.
    let metrics = tmp.path().join("run/metrics.csv");
    for _ in 0..600 {
        if std::fs::metadata(&metrics).is_ok_and(|m| m.len() > 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let status = child.wait().expect("nnc ends");
    let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).expect("output");
    let (stdout, stderr) = (read("stdout"), read("stderr"));
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("checkpoint written to run/checkpoint.safetensors"),
        "{stderr}"
    );
    assert!(
        stderr.contains("continue with: nnc train x.nn --out run --resume"),
        "{stderr}"
    );
    let last = json_lines(&stdout).pop().expect("interruption object");
    assert_eq!(last["interrupted"], true);
    let epoch = last["epoch"].as_u64().expect("epoch");
    // The checkpoint resumes: finish the interrupted epoch and stop there.
    let (_, err, code) = run(
        tmp.path(),
        &[
            "train",
            "x.nn",
            "--out",
            "run",
            "--resume",
            "--epochs",
            &epoch.to_string(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(checkpoint(&tmp.path().join("run")).meta.epoch as u64, epoch);
}

/// A process killed (SIGKILL: no handler runs) in the middle of writing its checkpoint leaves
/// the previous checkpoint whole, and the run resumes from it to the end. The model is big
/// enough (14 MB of weights and velocities) that each write, synced to disk, takes a while;
/// it checkpoints every epoch (a hidden test flag: runs this short would otherwise write only
/// at the end), and the test waits until a write after the first is under way (its temporary
/// file exists) and kills then.
#[cfg(unix)]
#[test]
fn a_process_killed_while_writing_leaves_no_torn_checkpoint() {
    let model = "model m {
    input image: f32[1, 28, 28]
    flatten
    narrow: dense(16) -> relu
    wide: dense(65536) -> relu
    out: dense(10)
}";
    let train = "
    loss softmax_cross_entropy
    optimizer momentum(lr: 0.001, momentum: 0.9)
    batch 100
    epochs 4
    seed 5";
    let (tmp, _) = model_dir(model, train);
    let dir = tmp.path();
    let out = dir.join("run");
    let (ckpt, partial) = (
        out.join("checkpoint.safetensors"),
        out.join(".checkpoint.safetensors.tmp"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .current_dir(dir)
        .args(["train", "m.nn", "--out", "run", "--save-every-epoch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nnc runs");
    // A write after the first: there is a whole checkpoint to keep.
    let start = std::time::Instant::now();
    let mut caught = false;
    while start.elapsed() < std::time::Duration::from_secs(300) {
        if ckpt.exists() && partial.exists() {
            caught = true;
            break;
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
    }
    child.kill().expect("kill");
    child.wait().expect("nnc ends");
    assert!(caught, "never saw a checkpoint being written");
    let before = checkpoint(&out);
    assert!((1..4).contains(&before.meta.epoch), "{}", before.meta.epoch);
    // metrics.csv: a header and whole rows, at least as many as the checkpoint's epochs
    // (checkpoints are written at most every few seconds, metrics after every epoch).
    let rows = |text: &str| -> Vec<Vec<String>> {
        let mut lines = text.lines();
        let columns = lines.next().expect("header").split(',').count();
        lines
            .map(|r| {
                let row: Vec<String> = r.split(',').map(str::to_string).collect();
                assert_eq!(row.len(), columns, "a torn row: {text}");
                row
            })
            .collect()
    };
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics.csv");
    assert!(rows(&metrics).len() >= before.meta.epoch, "{metrics}");

    let (_, err, code) = run(dir, &["train", "m.nn", "--out", "run", "--resume"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(checkpoint(&out).meta.epoch, 4);
    assert!(
        !partial.exists(),
        "the next write replaced the stale temporary file"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics.csv");
    let epochs: Vec<String> = rows(&metrics).into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(epochs, ["1", "2", "3", "4"], "{metrics}");
}

/// The malformed-file corpus of nnc-data, reached through models: every defect ends in one
/// line naming the file, exit code 2, and no panic.
#[test]
fn malformed_data_files_are_one_line_errors_with_exit_code_2() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/nnc-data/tests/corpus");
    let c = |name: &str| corpus.join(name).display().to_string();
    let tmp = tempfile::tempdir().expect("tempdir");
    let idx_model = |images: &str, labels: &str, extra: &str| {
        format!(
            "model m {{\n input x: f32[1, 3, 3]\n flatten\n out: dense(10)\n}}\ntrain m {{\n \
             data idx(images: \"{images}\", labels: \"{labels}\"{extra})\n loss \
             softmax_cross_entropy\n optimizer sgd(lr: 0.1)\n}}\n"
        )
    };
    let csv_model = |path: &str| {
        format!(
            "model m {{\n input x: f32[2]\n out: dense(1)\n}}\ntrain m {{\n data csv(\"{path}\", \
             target: \"y\")\n loss mse\n optimizer sgd(lr: 0.1)\n}}\n"
        )
    };
    let mnist_model = "model m {\n input x: f32[784]\n out: dense(10)\n}\ntrain m {\n data \
                       mnist(flatten: true)\n loss softmax_cross_entropy\n optimizer sgd(lr: 0.1)\n}\n";
    // The gzip files hold 10 images of 5x5: their payload is read only with 10 labels.
    idx_labels(
        &tmp.path().join("ten-labels.idx"),
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    let ten_labels = tmp.path().join("ten-labels.idx").display().to_string();
    let ok_images = c("ok-images.idx");
    let ok_labels = c("ok-labels.idx");
    // (model source, extra arguments, file named, phrase)
    let cases: Vec<(String, Vec<String>, &str, &str)> = vec![
        (
            idx_model(&c("idx-bad-magic.idx"), &ok_labels, ""),
            vec![],
            "idx-bad-magic.idx",
            "not an IDX file",
        ),
        (
            idx_model(&c("idx-4-billion-images.idx"), &ok_labels, ""),
            vec![],
            "idx-4-billion-images.idx",
            "the header promises 3136000000000 bytes (4000000000x28x28 u8), the file holds 256",
        ),
        (
            idx_model(&c("idx-4-billion-images.idx.gz"), &ok_labels, ""),
            vec![],
            "idx-4-billion-images.idx.gz",
            "a gzip file of 34 bytes decompresses to at most 35088",
        ),
        (
            idx_model(&c("idx-truncated-payload.idx"), &ok_labels, ""),
            vec![],
            "idx-truncated-payload.idx",
            "truncated IDX payload",
        ),
        (
            idx_model(&c("idx-trailing-bytes.idx"), &ok_labels, ""),
            vec![],
            "idx-trailing-bytes.idx",
            "trailing bytes after the IDX payload",
        ),
        (
            idx_model(&c("gzip-corrupt.idx.gz"), &ok_labels, ""),
            vec![],
            "gzip-corrupt.idx.gz",
            "not a valid gzip stream",
        ),
        (
            idx_model(&c("gzip-truncated.idx.gz"), &ten_labels, "")
                .replace("[1, 3, 3]", "[1, 5, 5]"),
            vec![],
            "gzip-truncated.idx.gz",
            "truncated gzip stream",
        ),
        (
            idx_model(&c("gzip-bad-crc.idx.gz"), &ten_labels, "").replace("[1, 3, 3]", "[1, 5, 5]"),
            vec![],
            "gzip-bad-crc.idx.gz",
            "not a valid gzip stream",
        ),
        (
            idx_model(&ok_images, &c("labels-out-of-range.idx"), ", classes: 10"),
            vec![],
            "labels-out-of-range.idx",
            "label 12 at index 2 is out of range for 10 classes",
        ),
        (
            idx_model(&ok_images, &c("labels-count-mismatch.idx"), ""),
            vec![],
            "ok-images.idx",
            "4 images, but",
        ),
        (
            idx_model(&ok_images, &c("labels-i32.idx"), ""),
            vec![],
            "labels-i32.idx",
            "labels must be u8",
        ),
        (
            idx_model(&c("images-1d.idx"), &ok_labels, ""),
            vec![],
            "images-1d.idx",
            "images need 2 to 4 dimensions",
        ),
        (
            idx_model(&c("does-not-exist.idx"), &ok_labels, ""),
            vec![],
            "does-not-exist.idx",
            "cannot read",
        ),
        (
            csv_model(&c("csv-ragged.csv")),
            vec![],
            "csv-ragged.csv",
            "line 3 has 2 cells, the header has 3",
        ),
        (
            csv_model(&c("csv-non-numeric.csv")),
            vec![],
            "csv-non-numeric.csv",
            "`abc` is not a number",
        ),
        (
            csv_model(&c("csv-missing-target.csv")),
            vec![],
            "csv-missing-target.csv",
            "no column `y`",
        ),
        (
            csv_model(&c("csv-not-utf8.csv")),
            vec![],
            "csv-not-utf8.csv",
            "is not valid UTF-8",
        ),
        (
            mnist_model.to_string(),
            vec!["--data".into(), c("mnist-wrong-shape")],
            "train-images-idx3-ubyte.gz",
            "expected the MNIST training images",
        ),
        (
            mnist_model.to_string(),
            vec!["--data".into(), c("mnist-missing-labels")],
            "mnist-missing-labels",
            "missing train-labels-idx1-ubyte",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (source, extra, file, phrase)) in cases.iter().enumerate() {
        let nn = tmp.path().join(format!("case{i}.nn"));
        std::fs::write(&nn, source).expect("write");
        let mut args = vec![
            "train".to_string(),
            nn.display().to_string(),
            "--out".into(),
            tmp.path().join("run").display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, err, code) = run(tmp.path(), &args);
        let line = err.trim_end();
        let ok = code == 2
            && !line.contains('\n')
            && line.starts_with("error: ")
            && line.contains(file)
            && line.contains(phrase)
            && !line.contains("panicked");
        if !ok {
            failures.push(format!("{file} (exit {code}): {err}"));
        }
    }
    assert!(cases.len() >= 15);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Samples of another shape than the model's input are refused before compiling, naming the
/// file that holds them, for the training and the test source alike.
#[test]
fn a_data_shape_mismatch_names_the_file() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/nnc-data/tests/corpus");
    let c = |name: &str| corpus.join(name).display().to_string();
    let d = digits();
    let digit = |name: &str| d.dir.join(name).display().to_string();
    let tmp = tempfile::tempdir().expect("tempdir");
    // (input, data, test, file named, phrase)
    let cases = [
        (
            "[1, 4, 4]",
            format!(
                "idx(images: \"{}\", labels: \"{}\")",
                c("ok-images.idx"),
                c("ok-labels.idx")
            ),
            String::new(),
            "ok-images.idx",
            "the data gives samples of shape [1, 3, 3], but the input of model `m` is [1, 4, 4]",
        ),
        (
            "[1, 4, 4]",
            format!(
                "idx(images: \"{}\", labels: \"{}\", pad: 1)",
                c("ok-images.idx"),
                c("ok-labels.idx")
            ),
            String::new(),
            "ok-images.idx",
            "[1, 3, 3] ([1, 5, 5] padded), but the input of model `m` is [1, 4, 4]",
        ),
        (
            "[1, 28, 28]",
            format!(
                "idx(images: \"{}\", labels: \"{}\")",
                digit("train-images.idx"),
                digit("train-labels.idx")
            ),
            format!(
                "test idx(images: \"{}\", labels: \"{}\")",
                c("ok-images.idx"),
                c("ok-labels.idx")
            ),
            "ok-images.idx",
            "[1, 3, 3], but the input of model `m` is [1, 28, 28]",
        ),
    ];
    for (i, (input, data, test, file, phrase)) in cases.iter().enumerate() {
        let source = format!(
            "model m {{\n input x: f32{input}\n flatten\n out: dense(10)\n}}\ntrain m {{\n data \
             {data}\n {test}\n loss softmax_cross_entropy\n optimizer sgd(lr: 0.1)\n}}\n"
        );
        let nn = tmp.path().join(format!("case{i}.nn"));
        std::fs::write(&nn, source).expect("write");
        let (_, err, code) = run(tmp.path(), &["train", nn.to_str().expect("path")]);
        let line = err.trim_end();
        assert_eq!(code, 2, "{err}");
        assert!(
            !line.contains('\n') && line.starts_with("error: `") && line.contains(file),
            "{err}"
        );
        assert!(line.contains(phrase), "{err}");
    }
}

/// A run directory copied elsewhere and resumed with a changed model: the refusal points at
/// the source copy in the directory the user named, not at the original run's.
#[test]
fn a_copied_run_directory_points_at_its_own_source_copy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let xor = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/xor.nn"))
        .expect("xor");
    std::fs::write(dir.join("x.nn"), &xor).expect("write");
    let (_, err, code) = run(dir, &["train", "x.nn", "--out", "a", "--epochs", "3"]);
    assert_eq!(code, 0, "{err}");
    std::fs::create_dir(dir.join("b")).expect("mkdir");
    for entry in std::fs::read_dir(dir.join("a")).expect("run dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join("b").join(path.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(dir.join("x.nn"), xor.replace("-> tanh", "-> relu")).expect("write");
    let resume = ["train", "x.nn", "--out", "b", "--resume", "--epochs", "4"];
    let (_, err, code) = run(dir, &resume);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`b/checkpoint.safetensors` was trained from another version"),
        "{err}"
    );
    assert!(
        err.contains("saved with the checkpoint (`b/x.nn`)"),
        "{err}"
    );
    assert!(!err.contains("a/x.nn"), "{err}");
    let (_, err, code) = run(
        dir,
        &["eval", "x.nn", "--weights", "b/checkpoint.safetensors"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("(`b/x.nn`)"), "{err}");

    // Without the copy beside it, the original run's copy serves while it is unchanged.
    std::fs::remove_file(dir.join("b/x.nn")).expect("remove");
    let (_, err, _) = run(dir, &resume);
    assert!(
        err.contains("saved with the checkpoint (`a/x.nn`)"),
        "{err}"
    );
    std::fs::remove_dir_all(dir.join("a")).expect("remove");
    let (_, err, code) = run(dir, &resume);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`b/x.nn`, is missing or was changed too"),
        "{err}"
    );
    // The copy works: the run resumes from it.
    std::fs::write(dir.join("b/x.nn"), &xor).expect("write");
    let (_, err, code) = run(
        dir,
        &["train", "b/x.nn", "--out", "b", "--resume", "--epochs", "4"],
    );
    assert_eq!(code, 0, "{err}");
}

/// Weights saved in the middle of the first epoch (Ctrl-C) are not "epoch 0": `eval` says
/// how far into epoch 1 they are.
#[test]
fn eval_of_a_mid_epoch_checkpoint_says_where_it_stopped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let xor = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/xor.nn"))
        .expect("xor");
    std::fs::write(dir.join("x.nn"), xor).expect("write");
    let args = [
        "train",
        "x.nn",
        "--out",
        "r",
        "--batch",
        "1",
        "--stop-after-steps",
        "3",
    ];
    let (_, err, code) = run(dir, &args);
    assert_eq!(code, 130, "{err}");
    let weights = ["eval", "x.nn", "--weights", "r/checkpoint.safetensors"];
    let (out, err, code) = run(dir, &weights);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(
            "model `xor`, weights r/checkpoint.safetensors (after step 3, 3 samples into epoch 1)\n"
        ),
        "{out}"
    );
    let (out, err, code) = run(dir, &[&weights[..], &["--json"]].concat());
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        (v["epoch"].as_u64(), v["epoch_samples"].as_u64()),
        (Some(0), Some(3))
    );
}

/// A resume with another seed records that seed in the checkpoint (a later plain resume
/// continues with it), so a later warning names it as the checkpoint's, not the run's first.
#[test]
fn a_changed_seed_is_the_checkpoints_from_then_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let xor = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/xor.nn"))
        .expect("xor");
    std::fs::write(dir.join("x.nn"), xor).expect("write");
    let train = |extra: &[&str]| {
        let args = [&["train", "x.nn", "--out", "r"][..], extra].concat();
        let (_, err, code) = run(dir, &args);
        assert_eq!(code, 0, "{err}");
        err
    };
    let err = train(&["--epochs", "2", "--seed", "0"]);
    assert!(!err.contains("warning"), "{err}");
    let err = train(&["--resume", "--epochs", "3", "--seed", "5"]);
    assert!(
        err.contains(
            "warning: the checkpoint was written with seed 0 and batch 4, this session continues \
             with seed 5 and batch 4"
        ),
        "{err}"
    );
    assert_eq!(checkpoint(&dir.join("r")).meta.seed, 5);
    let err = train(&["--resume", "--epochs", "4", "--seed", "0"]);
    assert!(
        err.contains(
            "the checkpoint was written with seed 5 and batch 4, this session continues with seed 0"
        ),
        "{err}"
    );
    // Without --seed, the checkpoint's seed: no warning.
    let err = train(&["--resume", "--epochs", "5"]);
    assert!(!err.contains("warning") && err.contains("seed 0"), "{err}");
}

/// The epoch line of an epoch resumed in its middle counts the time spent before the
/// interruption and says so; the summary of a resumed session gives its own time and the
/// run's (the epochs' `seconds` in metrics.csv), so the two do not contradict each other.
#[test]
fn a_resumed_run_says_what_its_times_count() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let xor = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/xor.nn"))
        .expect("xor");
    std::fs::write(dir.join("x.nn"), xor).expect("write");
    let first = [
        "train", "x.nn", "--out", "r", "--batch", "1", "--epochs", "2",
    ];
    let (out, err, code) = run(dir, &[&first[..], &["--stop-after-steps", "2"]].concat());
    assert_eq!(code, 130, "{err}");
    assert!(out.is_empty(), "{out}");
    let before = checkpoint(&dir.join("r")).meta.partial_seconds;
    assert!(before > 0.0);
    let (out, err, code) = run(dir, &[&first[..], &["--resume"]].concat());
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("epoch   1 ")
            && lines[0].ends_with(&format!(" s ({before:.2} s before the interruption)")),
        "{out}"
    );
    assert!(!lines[1].contains("interruption"), "{out}");
    let rows = nnc::metrics::read(&dir.join("r/metrics.csv")).unwrap_or_default();
    let epochs: f64 = rows.iter().filter_map(|r| r.get("seconds")).sum();
    assert!(rows[0].get("seconds").unwrap_or(0.0) >= before);
    let summary = lines.last().expect("summary");
    let all = format!(
        " in this session, {} in all the run's epochs; weights in r/checkpoint.safetensors",
        nnc::metrics::duration(epochs)
    );
    assert!(summary.contains(&all), "{summary}");

    let (out, err, code) = run(dir, &["train", "x.nn", "--out", "s", "--epochs", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.contains(" after 1 epoch in ") && !l.contains("session")),
        "{out}"
    );
}

/// A ReLU network at too high a rate collapses in epoch 1 and its ReLUs die: in the next
/// epochs its loss is back at chance and its first layer gets no gradient, which must still
/// be called a collapse, never a network to give a larger learning rate.
#[test]
fn a_collapsed_network_is_told_to_lower_its_rate_every_epoch() {
    let (tmp, file) = model_dir(
        "model m {
    input image: f32[1, 28, 28]
    flatten
    h1: dense(64) -> relu
    h2: dense(32) -> relu
    out: dense(10)
}",
        "
    loss softmax_cross_entropy
    optimizer momentum(lr: 2, momentum: 0.9)
    batch 20
    epochs 3",
    );
    let (_, err, code) = run(tmp.path(), &["train", file.to_str().expect("path")]);
    assert_eq!(code, 0, "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert!(warnings.len() >= 2, "{err}");
    for w in &warnings {
        assert!(
            w.contains("training has collapsed") && w.contains("lower the learning rate"),
            "{err}"
        );
        assert!(!w.contains("larger learning rate"), "{err}");
    }
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("no gradient reaches its first layer")),
        "{err}"
    );
}

/// A model with batch normalisation per channel (after a convolution) and per feature (after a
/// dense layer).
const BATCHNORM: &str = "model m {
    input image: f32[1, 28, 28]
    conv2d(4, kernel: 5, stride: 2, bias: false) -> batchnorm(momentum: 0.9) -> relu
    flatten
    dense(16, bias: false) -> batchnorm -> relu
    out: dense(10)
}";

/// The test slice's loss under `model` with the checkpoint's weights, on the interpreter, in
/// one batch: with the running statistics (`training` false, what `eval` does) or with the
/// batch's own (`training` true, dropout-free here).
fn loss_on_test_slice(file: &Path, weights: &Checkpoint, training: bool) -> f64 {
    use nnc_ir::interp::{Tensor, run_f32};
    use nnc_ir::lower::{InputSpec, LowerOptions, TargetSpec, lower};
    let source = std::fs::read_to_string(file).expect("model");
    let checked = nnc_check::check_source(&source);
    let model = checked.models.first().expect("a checked model");
    let train = model.train.as_ref().expect("train block");
    let d = digits();
    let n = d.test_labels.len();
    let opts = LowerOptions {
        batch: n,
        training,
        // The IDX slices: u8 digits, scaled as the train block says.
        input: InputSpec {
            dtype: nnc_ir::types::DType::U8,
            sample: vec![1, 28, 28],
            scale: 1.0 / 255.0,
            shift: 0.0,
            pad: 0,
            flatten: false,
        },
        targets: TargetSpec::Classes(10),
        loss: train.loss,
        score: train.score(),
    };
    let f = lower(model, &opts).expect("lowers").func;
    let pixels: Vec<u8> = d.test_images.concat();
    let mut inputs = vec![
        Tensor::U8(ndarray::ArrayD::from_shape_vec(vec![n, 1, 28, 28], pixels).expect("images")),
        Tensor::I32(
            ndarray::ArrayD::from_shape_vec(
                vec![n],
                d.test_labels.iter().map(|&l| i32::from(l)).collect(),
            )
            .expect("labels"),
        ),
    ];
    for &p in &f.params[2..] {
        let name = f.name_of(p).expect("named parameter");
        let t = weights
            .params
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("`{name}` in the checkpoint"));
        inputs.push(Tensor::F(
            ndarray::ArrayD::from_shape_vec(t.shape.clone(), t.data.clone()).expect("shape"),
        ));
    }
    run_f32(&f, inputs).expect("runs")[0]
        .scalar()
        .expect("a scalar loss")
}

/// Batch normalisation's running statistics: `init` writes their starting values, training
/// updates them, the checkpoint holds them and a resumed run continues them exactly, and
/// `eval` normalises with them, not with the batch's statistics.
#[test]
fn batchnorm_statistics_are_checkpointed_resumed_and_used_by_eval() {
    let train = "
    loss softmax_cross_entropy
    optimizer adam(lr: 0.01)
    batch 32
    epochs 2
    seed 5";
    let (tmp, file) = model_dir(BATCHNORM, train);
    let path = file.to_str().expect("path");
    let dir = tmp.path();
    let stat = |c: &Checkpoint, name: &str| -> Vec<f32> {
        c.params
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no `{name}` in the checkpoint"))
            .data
            .clone()
    };

    let (_, err, code) = run(dir, &["init", path, "-o", "init.safetensors"]);
    assert_eq!(code, 0, "{err}");
    let init = Checkpoint::load(&dir.join("init.safetensors")).expect("init checkpoint");
    assert_eq!(stat(&init, "batchnorm_1.running_mean"), vec![0.0; 4]);
    assert_eq!(stat(&init, "batchnorm_1.running_var"), vec![1.0; 4]);
    assert_eq!(stat(&init, "batchnorm_2.running_var"), vec![1.0; 16]);
    assert_eq!(stat(&init, "batchnorm_2.gamma"), vec![1.0; 16]);

    let (_, err, code) = run(dir, &["train", path, "--out", "straight"]);
    assert_eq!(code, 0, "{err}");
    let (_, err, code) = run(dir, &["train", path, "--out", "split", "--epochs", "1"]);
    assert_eq!(code, 0, "{err}");
    let (_, err, code) = run(dir, &["train", path, "--out", "split", "--resume"]);
    assert_eq!(code, 0, "{err}");
    let (straight, split) = (
        checkpoint(&dir.join("straight")),
        checkpoint(&dir.join("split")),
    );
    // The statistics moved from their starting values, and resumed exactly.
    for name in [
        "batchnorm_1.running_mean",
        "batchnorm_1.running_var",
        "batchnorm_2.running_mean",
        "batchnorm_2.running_var",
    ] {
        assert_ne!(
            stat(&straight, name),
            stat(&init, name),
            "{name} was updated"
        );
        assert_eq!(stat(&straight, name), stat(&split, name), "{name} resumed");
    }
    assert_eq!(straight.params, split.params);
    assert_eq!(
        metrics_without_seconds(&dir.join("straight")),
        metrics_without_seconds(&dir.join("split"))
    );

    // `eval` gives the loss of the running statistics, which differs from normalising the
    // test batch with its own statistics.
    let weights = "straight/checkpoint.safetensors";
    let (out, err, code) = run(dir, &["eval", path, "--weights", weights, "--json"]);
    assert_eq!(code, 0, "{err}");
    let eval = json_lines(&out).pop().expect("eval");
    let eval_loss = eval["test_loss"].as_f64().expect("test_loss");
    let running = loss_on_test_slice(&file, &straight, false);
    let batch = loss_on_test_slice(&file, &straight, true);
    assert!(
        (eval_loss - running).abs() <= 1e-4 * running.abs(),
        "eval's loss {eval_loss} is the running statistics' {running}"
    );
    assert!(
        (batch - running).abs() > 1e-3 * running.abs(),
        "batch statistics give another loss: {batch} vs {running}"
    );
    // And it is the running statistics that `eval` reads: reset to their starting values,
    // the loss changes.
    let mut reset = straight.clone();
    for t in reset.params.iter_mut() {
        if t.name.ends_with(".running_mean") {
            t.data.fill(0.0);
        } else if t.name.ends_with(".running_var") {
            t.data.fill(1.0);
        }
    }
    reset.save(&dir.join("reset.safetensors")).expect("save");
    let (out, err, code) = run(
        dir,
        &["eval", path, "--weights", "reset.safetensors", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let reset_loss = json_lines(&out).pop().expect("eval")["test_loss"]
        .as_f64()
        .expect("test_loss");
    assert!(
        (reset_loss - eval_loss).abs() > 1e-3 * eval_loss,
        "{reset_loss} vs {eval_loss}"
    );
}

/// A build without the `distributed` feature started by an MPI launcher as one of several
/// processes refuses to train (each would train the whole model into the same run
/// directory) and says how to build the one that trains data-parallel; one process (`-np 1`)
/// trains as usual.
#[cfg(not(feature = "distributed"))]
#[test]
fn mpi_without_the_distributed_build_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/xor.nn");
    let train = |variable: &str, size: &str| {
        Command::new(env!("CARGO_BIN_EXE_nnc"))
            .current_dir(tmp.path())
            .env(variable, size)
            .args(["--color", "never", "train"])
            .arg(&model)
            .args(["--out", "run"])
            .output()
            .expect("nnc runs")
    };
    for variable in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
        let out = train(variable, "2");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("one of 2") && stderr.contains("--features nnc/distributed"),
            "{stderr}"
        );
        assert!(!tmp.path().join("run").exists());
    }
    let out = train("OMPI_COMM_WORLD_SIZE", "1");
    assert_eq!(out.status.code(), Some(0));
    assert!(tmp.path().join("run").exists());
}
