//! End-to-end tests of `nnc check`: the summary of every model in `models/`, and the rendered
//! diagnostics of every invalid model in `tests/invalid/`, snapshot-tested through the binary.

mod support;

use support::{nnc, nnc_json, relative};

#[test]
fn every_model_checks() {
    insta::glob!("../models", "*.nn", |path| {
        let (stdout, stderr, code) = nnc(&["check", &relative(path)]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.is_empty(), "{stderr}");
        insta::assert_snapshot!(stdout);
    });
}

/// The benchmark zoo (`bench/zoo/`): at least 12 models, each valid and without a warning.
#[test]
fn every_zoo_model_checks() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/zoo");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("bench/zoo")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "nn"))
        .collect();
    assert!(files.len() >= 12, "the zoo has {} models", files.len());
    for path in &files {
        let (_, stderr, code) = nnc(&["check", &relative(path)]);
        assert_eq!(code, 0, "{}: {stderr}", path.display());
        assert!(stderr.is_empty(), "{}: {stderr}", path.display());
    }
}

/// The zoo's graph models (named values, `add`, `concat`, `global_avgpool`): their summaries.
#[test]
fn graph_zoo_models_check() {
    for name in ["residual", "inception"] {
        let (stdout, stderr, code) = nnc(&["check", &format!("bench/zoo/{name}.nn")]);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert!(stderr.is_empty(), "{name}: {stderr}");
        insta::assert_snapshot!(format!("graph_zoo_{name}"), stdout);
    }
}

#[test]
fn every_invalid_model_is_explained() {
    insta::glob!("invalid/*.nn", |path| {
        let (stdout, stderr, code) = nnc(&["check", &relative(path)]);
        assert_eq!(code, 1, "exit code for {}:\n{stderr}", path.display());
        assert!(stdout.is_empty(), "no summary for an invalid model");
        assert!(stderr.contains("nnc::"), "a diagnostic code");
        assert!(stderr.contains("╭─["), "a labelled source location");
        assert!(!stderr.contains("panicked"), "{stderr}");
        insta::assert_snapshot!(stderr);
    });
}

/// Models that check but deserve a warning (`tests/warnings/*.nn`): the summary on stdout,
/// exit 0, and on stderr each warning with its location and help line.
#[test]
fn every_warning_is_explained() {
    insta::glob!("warnings/*.nn", |path| {
        let (stdout, stderr, code) = nnc(&["check", &relative(path)]);
        assert_eq!(code, 0, "exit code for {}:\n{stderr}", path.display());
        assert!(stdout.starts_with("Model: "), "a summary: {stdout}");
        assert!(stderr.contains("nnc::"), "a diagnostic code: {stderr}");
        assert!(stderr.contains("╭─["), "a labelled source location");
        let codes = stderr.lines().filter(|l| l.starts_with("nnc::")).count();
        let helps = stderr
            .lines()
            .filter(|l| l.trim_start().starts_with("help: "))
            .count();
        assert_eq!(codes, helps, "a help line for each warning: {stderr}");
        insta::assert_snapshot!(stderr);
    });
}

/// docs/language.md promises a help line for every problem: each diagnostic rendered for the
/// invalid corpus (its code line `nnc::…`) has its `help:` line.
#[test]
fn every_diagnostic_has_a_help_line() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/invalid")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "nn"))
        .collect();
    files.sort();
    assert!(
        files.len() > 50,
        "the corpus is there: {} files",
        files.len()
    );
    let mut missing = Vec::new();
    for path in files {
        let (_, stderr, _) = nnc(&["check", &relative(&path)]);
        let codes = stderr.lines().filter(|l| l.starts_with("nnc::")).count();
        let helps = stderr
            .lines()
            .filter(|l| l.trim_start().starts_with("help: "))
            .count();
        assert!(codes > 0, "{}: no diagnostic\n{stderr}", path.display());
        if helps != codes {
            missing.push(format!(
                "{}: {codes} diagnostics, {helps} help lines",
                relative(&path)
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn reference_parameter_counts() {
    let total = |file: &str| -> serde_json::Value { nnc_json(&["check", file, "--json"]) };
    assert_eq!(total("models/lenet5.nn")["total_params"], 61706);
    assert_eq!(total("models/lenet5.nn")["flops_per_sample"], 833040);
    assert_eq!(total("models/mlp.nn")["total_params"], 407050);
    assert_eq!(total("models/keras-convnet.nn")["total_params"], 34826);
    let lenet98 = total("models/lenet5-1998.nn");
    let params = |name: &str| {
        lenet98["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .find(|l| l["name"] == name)
            .map(|l| l["params"].as_u64().expect("count"))
    };
    let expected = [
        ("c1", 156),
        ("s2", 12),
        ("c3", 1516),
        ("s4", 32),
        ("c5", 48120),
        ("f6", 10164),
    ];
    for (name, count) in expected {
        assert_eq!(params(name), Some(count), "{name}");
    }
}

/// pytorch/examples' mnist `Net`, as PyTorch counts it (`sum(p.numel() for p in
/// model.parameters())`).
#[test]
fn torch_mnist_has_pytorchs_parameter_count() {
    let json: serde_json::Value = nnc_json(&["check", "models/torch-mnist.nn", "--json"]);
    assert_eq!(json["total_params"], 1_199_882);
}

/// `nnc check --json` says everything a twin in another framework needs (`bench/twin.py`):
/// each layer's arguments resolved (uneven `same` padding as numbers, connection tables,
/// activation parameters), its parameters' names and shapes, the input, and the train block
/// with every hyper-parameter's value, defaults included.
#[test]
fn json_describes_the_model_and_its_training() {
    for file in ["models/lenet5-1998.nn", "bench/zoo/k7-stride2-pool3.nn"] {
        let (stdout, stderr, code) = nnc(&["check", file, "--json"]);
        assert_eq!(code, 0, "{stderr}");
        // A line per key, and per layer: the snapshot reads as the model does. (Not the
        // arena, which follows the JIT's plans: `the_arena_is_the_compiled_steps` checks it.)
        let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
        let mut lines = Vec::new();
        for (key, value) in v.as_object().expect("an object") {
            match value.as_array() {
                Some(layers) if key == "layers" => {
                    lines.push("layers:".to_string());
                    lines.extend(layers.iter().map(|l| format!("  {l}")));
                }
                _ if key == "arena" => {}
                _ => lines.push(format!("{key}: {value}")),
            }
        }
        insta::assert_snapshot!(format!("json@{}", file.replace('/', "_")), lines.join("\n"));
    }
    let json = |file: &str| -> serde_json::Value { nnc_json(&["check", file, "--json"]) };
    // A 7x7 stride-2 `same` convolution of 28 rows pads 5 in all: 2 above, 3 below.
    let k7 = json("bench/zoo/k7-stride2-pool3.nn");
    let stem = &k7["layers"][0];
    assert_eq!(stem["args"]["padding"], serde_json::json!([[2, 3], [2, 3]]));
    assert_eq!(stem["args"]["same"], true);
    assert_eq!(stem["parameters"][0]["name"], "stem.weight");
    assert_eq!(
        stem["parameters"][0]["shape"],
        serde_json::json!([32, 1, 7, 7])
    );
    // Nadam's defaults, resolved.
    let opt = &k7["train"]["optimizer"];
    assert_eq!(opt["name"], "nadam");
    assert_eq!(opt["lr"], 0.002);
    assert_eq!(opt["beta2"], 0.999);
    assert_eq!(opt["eps"], 1e-7);
    // Dense weights are [in, out].
    let f1 = &k7["layers"][4];
    assert_eq!(f1["parameters"][0]["shape"], serde_json::json!([1152, 256]));
    // The data source's preprocessing and a schedule.
    let lenet = json("models/lenet5-1998.nn");
    let data = &lenet["train"]["data"];
    assert_eq!(data["source"], "mnist");
    assert_eq!(data["pad"], 2);
    assert_eq!(data["shift"], -0.1);
    assert_eq!(lenet["train"]["schedule"]["decay"], "cosine");
    assert_eq!(lenet["train"]["schedule"]["min"], 0.0);
    let c3 = &lenet["layers"][4];
    assert_eq!(c3["name"], "c3");
    let table = c3["args"]["connections"].as_array().expect("the table");
    assert_eq!(
        (table.len(), table[0].as_array().map(Vec::len)),
        (6, Some(16))
    );
}

#[test]
fn json_is_an_array_for_several_models() {
    let (stdout, _, code) = nnc(&["check", "models/xor.nn", "models/perceptron.nn", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let models: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["model"].as_str().expect("name"))
        .collect();
    assert_eq!(models, ["xor", "perceptron"]);
}

#[test]
fn io_errors_exit_2() {
    let (_, stderr, code) = nnc(&["check", "models/no-such-model.nn"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no such file"), "{stderr}");
    let (_, stderr, code) = nnc(&["check", "models"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is a directory"), "{stderr}");
    let (_, _, code) = nnc(&["check"]);
    assert_eq!(code, 2, "missing argument is a usage error");
    let (_, _, code) = nnc(&["check", "--bogus", "models/xor.nn"]);
    assert_eq!(code, 2, "unknown flag is a usage error");
}

#[test]
fn one_bad_file_among_good_ones_fails_the_run() {
    let (stdout, _, code) = nnc(&["check", "models/xor.nn", "tests/invalid/loss-classes.nn"]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("Model: xor"),
        "the good model is still summarised"
    );
}

#[test]
fn a_ten_megabyte_line_is_reported_briefly() {
    let dir = std::env::temp_dir().join(format!("nnc-long-line-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("long.nn");
    let mut text = String::from("model m {\n    input x: f32[2]\n    out: dense(1, ");
    text.push_str(&"x".repeat(10 << 20));
    text.push_str(")\n}\n");
    std::fs::write(&file, &text).expect("write");
    let (_, stderr, code) = nnc(&["check", file.to_str().expect("utf-8 path")]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, 1);
    assert!(
        stderr.contains("nnc::"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        stderr.len() < 4000,
        "the report stays short: {} bytes",
        stderr.len()
    );
}

/// The front end is linear: a 10,000-layer model checks (in ~60 ms in release; the figure is in
/// the issue notes, not asserted here, as timings are not tests).
#[test]
fn ten_thousand_layers() {
    let dir = std::env::temp_dir().join(format!("nnc-deep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("deep.nn");
    let mut text = String::from("model deep {\n    input x: f32[16]\n");
    for i in 0..5000 {
        text.push_str(&format!("    l{i}: dense(16) -> relu\n"));
    }
    text.push_str("}\n");
    std::fs::write(&file, &text).expect("write");
    let (stdout, stderr, code) = nnc(&["check", file.to_str().expect("utf-8 path"), "--json"]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(v["layers"].as_array().map(Vec::len), Some(10_000));
    assert_eq!(v["total_params"], 5000 * (16 * 16 + 16));
}

/// `nnc check` gives the arenas of the compiled steps without generating code: the train
/// step's is the arena `nnc ir --stage kernels` and `nnc bench` compile at two threads (the
/// count `check` plans for on every machine).
#[test]
fn the_arena_is_the_compiled_steps() {
    for model in ["models/xor.nn", "models/lenet5.nn", "models/lenet5-1998.nn"] {
        let v: serde_json::Value = nnc_json(&["check", model, "--json"]);
        let arena = &v["arena"];
        let train = arena["train_step_bytes"]
            .as_u64()
            .expect("train step bytes");
        assert!(arena["eval_step_bytes"].as_u64().expect("eval step bytes") > 0);
        let batch = if model.contains("xor") { 4 } else { 32 };
        assert_eq!(arena["batch"], batch, "{model}");
        let (kernels, stderr, code) = nnc(&["ir", model, "--stage", "kernels", "--threads", "2"]);
        assert_eq!(code, 0, "{stderr}");
        let header = format!("arena {train} bytes = ");
        assert!(
            kernels.starts_with(&header),
            "{model}: {train} vs {kernels:.80}"
        );
    }
    let bench: serde_json::Value = nnc_json(&[
        "bench",
        "models/xor.nn",
        "--iterations",
        "1",
        "--threads",
        "2",
        "--json",
    ]);
    let (check, _, _) = nnc(&["check", "models/xor.nn", "--json"]);
    let check: serde_json::Value = serde_json::from_str(&check).expect("JSON");
    assert_eq!(bench["arena_bytes"], check["arena"]["train_step_bytes"]);
}

/// Without a train block there is no step to plan; with IDX data the files give the input's
/// layout, which `nnc check` does not read.
#[test]
fn the_arena_line_says_why_it_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("m.nn");
    let model = "model m {\n    input x: f32[1, 4, 4]\n    flatten\n    out: dense(10)\n}\n";
    std::fs::write(&file, model).expect("write");
    let path = file.to_str().expect("utf-8 path");
    let (stdout, stderr, code) = nnc(&["check", path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("Arena"), "{stdout}");
    let (stdout, _, _) = nnc(&["check", path, "--json"]);
    assert!(!stdout.contains("arena"), "{stdout}");

    // An IDX source's layout comes from its headers; without the files, the model is wrong.
    let idx = "train m {\n    data idx(images: \"i.idx\", labels: \"l.idx\")\n    loss \
               softmax_cross_entropy\n    optimizer sgd(lr: 0.1)\n    BATCH\n}\n";
    std::fs::write(&file, format!("{model}{}", idx.replace("BATCH", ""))).expect("write");
    let (stdout, stderr, code) = nnc(&["check", path]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("nnc::data::missing"), "{stderr}");
    let idx_file = |name: &str, dims: &[u32]| {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        bytes.extend(dims.iter().flat_map(|d| d.to_be_bytes()));
        bytes.resize(bytes.len() + dims.iter().product::<u32>() as usize, 0);
        std::fs::write(dir.path().join(name), bytes).expect("write idx");
    };
    idx_file("i.idx", &[1, 4, 4]);
    idx_file("l.idx", &[1]);
    let (stdout, stderr, code) = nnc(&["check", path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("Arena: ") && stdout.contains("per train step"),
        "{stdout}"
    );

    idx_file("i.idx", &[1, 1024, 1024]);
    let model = "model m {\n    input x: f32[1, 1024, 1024]\n    flatten\n    out: dense(10)\n}\n";
    let huge = idx.replace("BATCH", "batch 16777216");
    std::fs::write(&file, format!("{model}{huge}")).expect("write");
    let (stdout, stderr, code) = nnc(&["check", path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("too large a step to plan"), "{stdout}");
}
