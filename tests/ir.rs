//! End-to-end tests of the IR stages: a snapshot of `nnc ir` for every model at every stage,
//! every snapshot parsed back to the same text, gradcheck on every model, and the reference
//! interpreter training XOR and the MNIST MLP.

mod support;

use std::path::Path;

use support::{nnc, nnc_json, relative};

const STAGES: [&str; 5] = ["forward", "backward", "train", "optimized", "eval"];

fn models() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("models/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "nn"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_model_at_every_stage() {
    let mut failures = Vec::new();
    for path in models() {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        for stage in STAGES {
            let (stdout, stderr, code) = nnc(&["ir", &relative(&path), "--stage", stage]);
            assert_eq!(code, 0, "{stderr}");
            let name = format!("{stem}@{stage}");
            // Collect every mismatch before failing, so one run shows them all.
            let result = std::panic::catch_unwind(|| insta::assert_snapshot!(name, stdout));
            if result.is_err() {
                failures.push(format!("{stem} --stage {stage}"));
            }
        }
    }
    assert!(failures.is_empty(), "IR snapshots differ: {failures:?}");
}

/// The JIT's kernel schedule of every model's training step: what each kernel fuses, its
/// buffers and their arena offsets.
#[test]
fn every_model_kernel_schedule() {
    let mut failures = Vec::new();
    for path in models() {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        // At two threads whatever the machine (the default is its available parallelism).
        let (stdout, stderr, code) = nnc(&[
            "ir",
            &relative(&path),
            "--stage",
            "kernels",
            "--threads",
            "2",
        ]);
        assert_eq!(code, 0, "{stderr}");
        assert_arena_parts_add_up(stdout.lines().next().unwrap_or(""));
        let name = format!("{stem}@kernels");
        if std::panic::catch_unwind(|| insta::assert_snapshot!(name, stdout)).is_err() {
            failures.push(stem);
        }
    }
    assert!(failures.is_empty(), "kernel schedules differ: {failures:?}");
}

/// `arena T bytes = P persistent (…) + I intermediates + S scratch (…)`: T = P + I + S.
fn assert_arena_parts_add_up(header: &str) {
    let numbers: Vec<u64> = header
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [total, parts @ ..] = numbers.as_slice() else {
        panic!("no arena size: {header}");
    };
    assert_eq!(parts.len(), 3, "{header}");
    assert_eq!(*total, parts.iter().sum::<u64>(), "{header}");
}

#[test]
fn emit_clif_prints_cranelift_functions() {
    let (stdout, stderr, code) = nnc(&["ir", "models/mlp.nn", "--emit", "clif"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("function u0:"), "Cranelift IR");
    assert!(stdout.contains("f32x4"), "vectorised loops");
}

/// A batch larger than 2^24 is a usage error, named by clap before anything is compiled (so
/// that no size computed from it can overflow), and a step whose arena this machine cannot
/// allocate is an error, not an abort.
#[test]
fn a_huge_batch_is_an_error_not_an_abort() {
    for args in [
        ["bench", "models/mlp.nn", "--batch", "4000000000000"],
        [
            "bench",
            "models/lenet5.nn",
            "--batch",
            "18446744073709551615",
        ],
        ["ir", "models/mlp.nn", "--batch", "16777217"],
        ["train", "models/mlp.nn", "--batch", "16777217"],
        ["gradcheck", "models/xor.nn", "--batch", "0"],
        ["gradcheck", "models/xor.nn", "--batch", "5000"],
    ] {
        let (_, stderr, code) = nnc(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("--batch"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `--threads`: 0 or more than 256 is a usage error on every command that compiles steps,
/// named by clap before anything is read; `nnc bench` says how many it ran on, and a kernel
/// schedule splits in as many parts as it is told.
#[test]
fn threads_are_validated_and_reported() {
    let commands: [&[&str]; 6] = [
        &["train", "models/xor.nn"],
        &["eval", "models/xor.nn"],
        &["predict", "models/xor.nn"],
        &["bench", "models/xor.nn"],
        &["ir", "models/xor.nn", "--stage", "kernels"],
        &["bench", "models/mlp.nn", "--json"],
    ];
    for command in commands {
        for bad in ["0", "257", "100000000000000000000", "two"] {
            let args: Vec<&str> = command.iter().copied().chain(["--threads", bad]).collect();
            let (stdout, stderr, code) = nnc(&args);
            assert_eq!(code, 2, "{args:?}: {stderr}");
            assert!(stdout.is_empty(), "{args:?}: {stdout}");
            assert!(
                stderr.starts_with("error: ") && stderr.contains("--threads"),
                "{args:?}: {stderr}"
            );
        }
    }
    for threads in [1, 3] {
        let t = threads.to_string();
        let args = [
            "bench",
            "models/lenet5.nn",
            "--iterations",
            "1",
            "--threads",
            &t,
        ];
        let (json, stderr, code) = nnc(&[&args[..], &["--json"]].concat());
        assert_eq!(code, 0, "{stderr}");
        let report: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(report["threads"], threads);
        let (text, stderr, code) = nnc(&args);
        assert_eq!(code, 0, "{stderr}");
        let said = format!("{threads} threads");
        assert!(text.lines().next().unwrap_or("").contains(&said), "{text}");
        let (kernels, stderr, code) = nnc(&[
            "ir",
            "models/lenet5.nn",
            "--stage",
            "kernels",
            "--threads",
            &t,
        ]);
        assert_eq!(code, 0, "{stderr}");
        let (split, whole) = (
            kernels.matches("split in 3 parts").count(),
            kernels.matches("one part (one thread)").count(),
        );
        if threads == 1 {
            assert!(split == 0 && whole > 0, "{kernels}");
        } else {
            assert!(split > 0 && whole == 0, "{kernels}");
        }
    }
}

/// Counts of zero and `--emit clif` with a stage other than the kernels' are usage errors,
/// named by clap before anything is compiled.
#[test]
fn zero_counts_and_clif_of_another_stage_are_refused() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["bench", "models/xor.nn", "--iterations", "0"],
            "--iterations",
        ),
        (&["bench", "models/xor.nn", "--batch", "0"], "--batch"),
        (
            &["ir", "models/xor.nn", "--stage", "kernels", "--batch", "0"],
            "--batch",
        ),
        (
            &[
                "ir",
                "models/xor.nn",
                "--emit",
                "clif",
                "--stage",
                "forward",
            ],
            "--stage forward",
        ),
        (
            &["ir", "models/xor.nn", "--emit", "clif", "--stage", "eval"],
            "--stage eval",
        ),
    ];
    for (args, named) in cases {
        let (stdout, stderr, code) = nnc(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(named),
            "{args:?}: {stderr}"
        );
    }
    let (clif, stderr, code) = nnc(&[
        "ir",
        "models/xor.nn",
        "--emit",
        "clif",
        "--stage",
        "kernels",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(clif, nnc(&["ir", "models/xor.nn", "--emit", "clif"]).0);
}

/// Every IR snapshot parses back to a function that prints identically.
#[test]
fn snapshots_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("snapshots") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("ir__") && name.ends_with(".snap")) || name.contains("@kernels") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        // The insta header is between the first two `---` lines.
        let body = text.splitn(3, "---\n").nth(2).expect("snapshot body");
        let funcs = nnc_ir::parse::parse(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let printed: String = funcs.iter().map(nnc_ir::print::print).collect();
        assert_eq!(
            printed.trim_end(),
            body.trim_end(),
            "{name} does not round-trip"
        );
        seen += 1;
    }
    assert!(
        seen >= 30,
        "expected the IR snapshots of 6 models × 5 stages, found {seen}"
    );
}

#[test]
fn train_stage_fuses_the_loss_and_skips_the_input_gradient() {
    let (ir, _, code) = nnc(&["ir", "models/mlp.nn", "--stage", "train"]);
    assert_eq!(code, 0);
    assert!(ir.contains("= softmax_xent "), "fused loss");
    assert!(ir.contains("= softmax_xent_grad "), "fused gradient");
    assert!(!ir.contains("cross_entropy"), "no unfused cross-entropy");
    // The only use of the images is the cast; nothing is computed for their gradient.
    let image_uses = ir
        .lines()
        .filter(|l| l.contains("%image") && !l.starts_with("func"))
        .count();
    assert_eq!(image_uses, 1, "{ir}");
    let (lenet, _, _) = nnc(&["ir", "models/lenet5.nn", "--stage", "optimized"]);
    assert_eq!(
        lenet.matches("conv2d_grad_input").count(),
        1,
        "only c3 passes a gradient to its input"
    );
}

#[test]
fn gradcheck_every_model() {
    for path in models() {
        let (stdout, stderr, code) = nnc(&["gradcheck", &relative(&path)]);
        assert_eq!(code, 0, "{}\n{stdout}{stderr}", path.display());
        assert!(stdout.contains(" ok"), "{stdout}");
        assert!(!stdout.contains("FAIL"), "{stdout}");
    }
}

fn epochs(json: &str) -> Vec<serde_json::Value> {
    json.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn interpreter_solves_xor() {
    let (stdout, stderr, code) = nnc(&[
        "train",
        "models/xor.nn",
        "--json",
        "--backend",
        "interp",
        "--out",
        "/tmp/nnc-test-runs/xor-interp",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let last = epochs(&stdout).pop().expect("epochs");
    assert_eq!(last["train_acc"], 1.0, "{last}");
    for key in [
        "epoch",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "seconds",
    ] {
        assert!(last.get(key).is_some(), "{key} in {last}");
    }
}

#[test]
fn interpreter_trains_the_mnist_mlp() {
    let (stdout, stderr, code) = nnc(&[
        "train",
        "models/mlp.nn",
        "--epochs",
        "1",
        "--json",
        "--backend",
        "interp",
        "--out",
        "/tmp/nnc-test-runs/mlp-interp",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let e = epochs(&stdout).pop().expect("one epoch");
    let acc = e["test_acc"].as_f64().expect("accuracy");
    assert!(acc >= 0.95, "test accuracy {acc} after one epoch");
}

/// `nnc bench` reports on the model's own images when it can read them, and marks the
/// contractions that skipped their zeros (where the CPU has a vector unit); toy models with inline
/// tables run on synthetic data.
#[test]
fn bench_reports_its_data_and_profile() {
    let report = |model: &str| -> serde_json::Value {
        nnc_json(&["bench", model, "--iterations", "3", "--json"])
    };
    let mlp = report("models/mlp.nn");
    assert_eq!(mlp["data"], "images");
    let labels: Vec<&str> = mlp["profile"]
        .as_array()
        .expect("a profile")
        .iter()
        .map(|k| k["label"].as_str().expect("a label"))
        .collect();
    assert_eq!(labels.len(), mlp["kernels"].as_u64().unwrap() as usize);
    let skipped = labels
        .iter()
        .filter(|l| l.contains("skips the data's zeros"))
        .count();
    let vector = nnc_jit::Isa::best().is_some();
    assert_eq!(skipped, if vector { 2 } else { 0 }, "{labels:#?}");
    assert!(mlp["step_micros"].as_f64().unwrap() > 0.0);
    assert_eq!(report("models/xor.nn")["data"], "synthetic");
}

/// `bench --eval` times the evaluation step: the percentiles are ordered, images/s follows
/// from the median, and the arena is smaller than the training step's (no gradients, no
/// optimizer state).
#[test]
fn bench_eval_reports_latency_percentiles() {
    let eval = |batch: &str| {
        let (json, stderr, code) = nnc(&[
            "bench",
            "models/lenet5.nn",
            "--eval",
            "--batch",
            batch,
            "--iterations",
            "20",
            "--json",
        ]);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&json).expect("JSON")
    };
    for (batch, n) in [("1", 1.0), ("64", 64.0)] {
        let r = eval(batch);
        let (p50, p99, best) = (
            r["p50_micros"].as_f64().expect("p50"),
            r["p99_micros"].as_f64().expect("p99"),
            r["min_micros"].as_f64().expect("min"),
        );
        assert!(0.0 < best && best <= p50 && p50 <= p99, "{r}");
        let ips = r["images_per_second"].as_f64().expect("images/s");
        assert!((ips - n * 1e6 / p50).abs() <= 1e-6 * ips, "{r}");
        assert_eq!(r["iterations"], 20);
        assert_eq!(r["data"], "images");
    }
    let train: serde_json::Value = nnc_json(&[
        "bench",
        "models/lenet5.nn",
        "--batch",
        "64",
        "--iterations",
        "1",
        "--json",
    ]);
    let eval_arena = eval("64")["arena_bytes"].as_u64().expect("arena");
    assert!(eval_arena < train["arena_bytes"].as_u64().expect("arena"));
    let (text, stderr, code) = nnc(&["bench", "models/mlp.nn", "--eval", "--iterations", "5"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(text.contains("p50") && text.contains("images/s"), "{text}");
}

/// A graph model's combinators in the kernel schedule: no `concat` is a kernel (no padded
/// copies summed, no operand copied: the loops and the pooling that write the operands
/// store them in the concatenation, and the convolutions that also read the pooled stem
/// read it there), and its operands' gradients are windows of the concatenated gradient
/// that the loops read in place, not copies.
#[test]
fn concat_is_no_kernel_and_its_operands_and_gradients_are_windows() {
    let (kernels, stderr, code) = nnc(&["ir", "bench/zoo/inception.nn", "--stage", "kernels"]);
    assert_eq!(code, 0, "{stderr}");
    let ops = |name: &str| {
        kernels
            .lines()
            .filter(|l| l.trim_start().starts_with(name) || l.contains(&format!(": {name} ")))
            .count()
    };
    assert_eq!(ops("concat"), 0, "{kernels}");
    assert_eq!(ops("pad"), 0, "{kernels}");
    assert_eq!(ops("slice"), 0, "{kernels}");
    // Values that live in another's buffer, each once (a window is named at every use).
    let mut windows: Vec<&str> = kernels
        .split(", ")
        .flat_map(|t| t.split('\n'))
        .filter(|t| t.contains("(a window of"))
        .filter_map(|t| t.split_whitespace().find(|w| w.starts_with('%')))
        .filter_map(|w| w.split('@').next())
        .collect();
    windows.sort_unstable();
    windows.dedup();
    // The six operands written in place (the pooled stem, the three branches' activations,
    // the global average and the dense branch's), and their six gradients read in place.
    assert_eq!(windows.len(), 6 + 6, "{windows:?}\n{kernels}");
    // The pooled stem's readers besides the concat: three convolutions and their filter
    // gradients, each reading it in place.
    let apart = kernels
        .lines()
        .filter(|l| l.contains("its input in place in a concat"))
        .count();
    assert_eq!(apart, 6, "{kernels}");
}

/// `nnc bench --ranks N` times rank 0's step of a data-parallel job: its shard of the batch
/// (⌈B/N⌉ samples), its sums over the ranks among the kernels; 0 ranks, or ranks with
/// `--eval`, are usage errors.
#[test]
fn bench_times_a_ranks_step() {
    let report: serde_json::Value = nnc_json(&[
        "bench",
        "models/mlp.nn",
        "--ranks",
        "3",
        "--iterations",
        "1",
        "--json",
    ]);
    assert_eq!(report["ranks"], 3);
    assert_eq!(report["batch"], 128);
    assert_eq!(report["samples"], 43);
    let labels: Vec<&str> = report["profile"]
        .as_array()
        .expect("profile")
        .iter()
        .filter_map(|k| k["label"].as_str())
        .collect();
    assert!(
        labels.iter().any(|l| l.starts_with("allreduce_sum")),
        "{labels:?}"
    );
    let (text, stderr, code) = nnc(&["bench", "models/mlp.nn", "--iterations", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !text.contains("allreduce_sum") && !text.contains("rank 0"),
        "{text}"
    );
    for args in [
        &["bench", "models/mlp.nn", "--ranks", "0"][..],
        &["bench", "models/mlp.nn", "--ranks", "2", "--eval"],
    ] {
        let (_, stderr, code) = nnc(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("--ranks"), "{args:?}: {stderr}");
    }
}
