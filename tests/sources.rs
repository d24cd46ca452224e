//! Every command on a model of every data source under every loss, through the binary: `check`
//! (text and JSON), `ir` at each stage, `bench`, `gradcheck`, `train`, `eval`, and `predict`
//! where it applies (models of grayscale images). Each must build the same well-typed step
//! (issue 21: `check`, `ir`, `bench` and `gradcheck` once built a CSV classifier's step with
//! f32 labels and died). The data are small and generated in a temporary directory; MNIST is
//! the project's own `data/mnist`.

mod support;

use std::path::Path;

use support::nnc_in as run;

/// The losses of the language, and how a model's last layer fits each.
const LOSSES: [&str; 3] = ["softmax_cross_entropy", "cross_entropy", "mse"];

/// A data source: how a model of it is written, and the files it needs.
struct Source {
    name: &'static str,
    /// The model's layers before its output layer (input included).
    body: &'static str,
    /// `(data setting, output width)` under `loss`.
    data: fn(loss: &str) -> (String, usize),
    /// Writes the data files into the directory.
    files: fn(&Path),
    /// Whether `nnc predict` applies (grayscale images).
    images: bool,
    /// The batch size: large enough that an epoch of MNIST takes seconds.
    batch: usize,
}

/// 24 images of 1×4×4 pixels in 3 classes (the class is which third of the image is bright).
fn idx_files(dir: &Path) {
    let n = 24;
    let mut images = vec![0, 0, 8, 3];
    for d in [n, 4, 4] {
        images.extend((d as u32).to_be_bytes());
    }
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    for i in 0..n {
        let class = i % 3;
        labels.push(class as u8);
        images.extend((0..16).map(|p| if p % 3 == class { 200 + i as u8 } else { 10 }));
    }
    std::fs::write(dir.join("images.idx"), images).expect("write images");
    std::fs::write(dir.join("labels.idx"), labels).expect("write labels");
}

/// 30 rows of two features and a class label (0–2) in `classes.csv`, of two features and two
/// real-valued targets in `values.csv`.
fn csv_files(dir: &Path) {
    let mut classes = String::from("a,label,b\n");
    let mut values = String::from("a,y,b,z\n");
    for i in 0..30 {
        let (a, b) = ((i % 5) as f32 / 4.0, (i % 7) as f32 / 6.0);
        classes += &format!("{a},{},{b}\n", i % 3);
        values += &format!("{a},{},{b},{}\n", a - 0.5 * b, a * b);
    }
    std::fs::write(dir.join("classes.csv"), classes).expect("write csv");
    std::fs::write(dir.join("values.csv"), values).expect("write csv");
}

fn sources() -> Vec<Source> {
    vec![
        Source {
            name: "mnist",
            body: "input x: f32[784]\n    h: dense(16) -> relu",
            data: |_| ("mnist(flatten: true)".into(), 10),
            files: |_| {},
            images: true,
            batch: 500,
        },
        Source {
            name: "idx",
            body: "input x: f32[1, 4, 4]\n    flatten\n    h: dense(8) -> relu",
            data: |_| {
                (
                    r#"idx(images: "images.idx", labels: "labels.idx", scale: 1/255)"#.into(),
                    3,
                )
            },
            files: idx_files,
            images: true,
            batch: 8,
        },
        Source {
            name: "csv",
            body: "input x: f32[2]\n    h: dense(8) -> tanh",
            data: |loss| match loss {
                "mse" => (r#"csv("values.csv", target: ["y", "z"])"#.into(), 2),
                _ => (r#"csv("classes.csv", target: "label")"#.into(), 3),
            },
            files: csv_files,
            images: false,
            batch: 8,
        },
        Source {
            name: "inline",
            body: "input x: f32[2]\n    h: dense(8) -> tanh",
            data: |loss| {
                let target = |i: usize| match loss {
                    "mse" => format!("{} {}", i % 2, i as f32 / 10.0),
                    _ => format!("{}", i % 3),
                };
                let rows: Vec<String> = (0..9)
                    .map(|i| format!("        {} {} -> {}", i % 3, i / 3, target(i)))
                    .collect();
                let width = if loss == "mse" { 2 } else { 3 };
                (format!("{{\n{}\n    }}", rows.join("\n")), width)
            },
            files: |_| {},
            images: false,
            batch: 8,
        },
    ]
}

/// The model file of `source` under `loss`, in `dir`.
fn model(dir: &Path, source: &Source, loss: &str) -> String {
    let (data, outputs) = (source.data)(loss);
    let softmax = if loss == "cross_entropy" {
        " -> softmax"
    } else {
        ""
    };
    let text = format!(
        "model m {{\n    {}\n    out: dense({outputs}){softmax}\n}}\n\ntrain m {{\n    data \
         {data}\n    loss {loss}\n    optimizer adam(lr: 0.01)\n    batch {}\n    epochs 1\n}}\n",
        source.body, source.batch
    );
    let file = dir.join(format!("{}-{loss}.nn", source.name));
    std::fs::write(&file, text).expect("write model");
    file.display().to_string()
}

/// A 4×4 (or 28×28) grayscale PGM image.
fn pgm(path: &Path, side: usize) {
    let mut bytes = format!("P5\n{side} {side}\n255\n").into_bytes();
    bytes.extend((0..side * side).map(|i| if i % 3 == 0 { 220 } else { 0 }));
    std::fs::write(path, bytes).expect("write pgm");
}

#[test]
fn every_command_runs_on_every_source_and_loss() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut failures = Vec::new();
    let mut runs = 0;
    for source in sources() {
        (source.files)(dir);
        for loss in LOSSES {
            let file = model(dir, &source, loss);
            let case = format!("{} × {loss}", source.name);
            let mut expect = |args: &[&str], code: i32, check: &dyn Fn(&str) -> bool| {
                runs += 1;
                let (out, err, got) = run(dir, args);
                if got != code || !check(&out) || err.contains("panicked") {
                    failures.push(format!(
                        "{case}: `nnc {}` exited {got} (expected {code}):\n{out}\n{err}",
                        args.join(" ")
                    ));
                }
                out
            };
            let classes = loss != "mse" || source.images;
            // The targets a step takes: i32 labels for classes, f32 values otherwise.
            let targets = move |ir: &str| {
                if classes {
                    ir.contains("label: i32[")
                } else {
                    ir.contains("target: f32[")
                }
            };

            // The arenas too: an IDX source's layout is read from its headers.
            expect(&["check", &file], 0, &|out| {
                out.contains("Model: m") && out.contains("per train step")
            });
            expect(&["check", "--json", &file], 0, &|out| {
                serde_json::from_str::<serde_json::Value>(out)
                    .is_ok_and(|v| v["arena"]["train_step_bytes"].as_u64() > Some(0))
            });
            for stage in ["forward", "backward", "train", "optimized", "eval"] {
                expect(&["ir", &file, "--stage", stage], 0, &targets);
            }
            expect(&["ir", &file, "--stage", "kernels"], 0, &|out| {
                out.contains("kernel")
            });
            expect(
                &["bench", &file, "--iterations", "2", "--json"],
                0,
                &|out| serde_json::from_str::<serde_json::Value>(out).is_ok(),
            );
            expect(
                &["gradcheck", &file, "--batch", "2", "--samples", "3"],
                0,
                &|out| out.contains("out.weight") && !out.contains("FAIL"),
            );

            // An epoch of MNIST takes seconds: trained under one loss (the data path is the
            // same under the others, whose steps the commands above have built).
            if source.name == "mnist" && loss != "softmax_cross_entropy" {
                continue;
            }
            let run_dir = dir.join(format!("run-{}-{loss}", source.name));
            let run_dir = run_dir.display().to_string();
            let summary = expect(&["train", &file, "--out", &run_dir, "--json"], 0, &|out| {
                out.lines()
                    .last()
                    .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .is_some_and(|v| v["test_loss"].as_f64().is_some_and(f64::is_finite))
            });
            let weights = format!("{run_dir}/checkpoint.safetensors");
            let test_loss = |out: &str| {
                out.lines()
                    .last()
                    .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .map(|v| v["test_loss"].clone())
            };
            let trained = test_loss(&summary);
            expect(
                &["eval", &file, "--weights", &weights, "--json"],
                0,
                &|out| trained.is_some() && test_loss(out) == trained,
            );
            if source.images {
                let side = if source.name == "mnist" { 28 } else { 4 };
                let image = dir.join(format!("{}.pgm", source.name));
                pgm(&image, side);
                let image = image.display().to_string();
                expect(
                    &["predict", &file, "--weights", &weights, "--json", &image],
                    0,
                    &|out| out.contains("\"class\":"),
                );
            } else {
                // Not images: refused in words, never a crash.
                expect(
                    &["predict", &file, "--weights", &weights, "x.pgm"],
                    2,
                    &|out| out.is_empty(),
                );
            }
        }
    }
    assert_eq!(runs, 4 * 3 * 10 + 10 * 3, "every command ran on every case");
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// CSV class labels are whole numbers below the model's output count: `nnc check` and
/// `nnc train` refuse others, naming the file, line and column (they once trained silently: labels
/// 0–2 under `dense(2)`, and real values truncated to classes).
#[test]
fn csv_class_labels_are_checked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // (file contents, outputs, target columns, phrase)
    let cases = [
        (
            "a,b,label\n0,1,0\n1,0,1\n1,1,2\n",
            2,
            "\"label\"",
            "labels.csv: line 4, column 3 (`label`): label 2 is out of range for 2 classes (0 to 1)",
        ),
        (
            "a,b,label\n0,1,0\n1,0,0.37\n",
            2,
            "\"label\"",
            "labels.csv: line 3, column 3 (`label`): `0.37` is not a class label: labels are \
             whole numbers from 0 to 1",
        ),
        (
            "a,b,label\n0,1,0\n1,0,-1\n",
            3,
            "\"label\"",
            "labels.csv: line 3, column 3 (`label`): label -1 is out of range for 3 classes",
        ),
        (
            "a,label,b\n0,1,0\n1,0,1\n",
            2,
            "[\"label\", \"b\"]",
            "labels.csv`: a classifier takes one target column, the class, but the train block \
             names 2 (label, b)",
        ),
    ];
    for (i, (csv, outputs, target, phrase)) in cases.iter().enumerate() {
        std::fs::write(dir.join("labels.csv"), csv).expect("write csv");
        let inputs = if target.starts_with('[') { 1 } else { 2 };
        let file = dir.join(format!("case{i}.nn"));
        std::fs::write(
            &file,
            format!(
                "model m {{\n    input x: f32[{inputs}]\n    out: dense({outputs})\n}}\n\ntrain \
                 m {{\n    data csv(\"labels.csv\", target: {target})\n    loss \
                 softmax_cross_entropy\n    optimizer sgd(lr: 0.1)\n    batch 2\n}}\n"
            ),
        )
        .expect("write model");
        let file = file.display().to_string();
        // `nnc check` reads the label column too: a diagnostic at the data setting.
        let (out, err, code) = run(dir, &["check", &file]);
        let code_name = if i == 3 {
            "nnc::data::targets"
        } else {
            "nnc::data::labels"
        };
        assert_eq!(code, 1, "case {i}: {out}{err}");
        assert!(out.is_empty() && err.contains(code_name), "case {i}: {err}");
        let (_, err, code) = run(dir, &["train", &file, "--out", "run"]);
        let line = err.trim_end();
        assert_eq!(code, 2, "case {i}: {err}");
        assert!(
            line.starts_with("error: ") && !line.contains('\n') && line.contains(phrase),
            "case {i}: {err}"
        );
    }
}
