//! Files made to break nnc, through the binary: a checkpoint whose counters are at the end of
//! their range (a crafted or damaged file) is refused with a message naming the field, exit 2,
//! by `train --resume` and by `eval --weights`; never a panic or an overflow. And a device
//! that never ends, given as the model, is refused at the size limit.

mod support;

use std::collections::HashMap;
use std::path::Path;

use safetensors::SafeTensors;
use support::nnc_in as run;

/// A run directory `r` of the XOR model (`x.nn`) after 2 epochs, in a fresh directory.
fn trained_xor() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let xor = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/xor.nn"))
        .expect("xor");
    std::fs::write(tmp.path().join("x.nn"), xor).expect("write");
    let (_, err, code) = run(
        tmp.path(),
        &["train", "x.nn", "--out", "r", "--epochs", "2"],
    );
    assert_eq!(code, 0, "{err}");
    tmp
}

/// Writes `dst`: the checkpoint `src` with the metadata `changes` set.
fn with_metadata(src: &Path, dst: &Path, changes: &[(&str, &str)]) {
    let bytes = std::fs::read(src).expect("read checkpoint");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let (_, header) = SafeTensors::read_metadata(&bytes).expect("header");
    let mut meta: HashMap<String, String> = header.metadata().clone().expect("metadata");
    for (k, v) in changes {
        assert!(
            meta.contains_key(*k),
            "the checkpoint has no `{k}` to change"
        );
        meta.insert(k.to_string(), v.to_string());
    }
    let out = safetensors::serialize(st.tensors(), Some(meta)).expect("serialize");
    std::fs::write(dst, out).expect("write checkpoint");
}

/// Every counter at `u64::MAX` (and a few other extremes) is refused, naming the field, by
/// both commands that read checkpoints; a counter at the bound still resumes.
#[test]
fn extreme_checkpoint_counters_are_refused_not_overflowed() {
    let tmp = trained_xor();
    let dir = tmp.path();
    let good = dir.join("r/checkpoint.safetensors");
    let max = u64::MAX.to_string();
    let cases: [(&str, &str, &str); 6] = [
        (
            "step",
            &max,
            "metadata `step` is 18446744073709551615, above any count",
        ),
        (
            "epoch",
            &max,
            "metadata `epoch` is 18446744073709551615, above any count",
        ),
        (
            "epoch_samples",
            &max,
            "metadata `epoch_samples` is 18446744073709551615",
        ),
        (
            "epoch_steps",
            "4",
            "metadata `epoch_steps` is 4, more than `step` (2)",
        ),
        ("batch", "0", "metadata `batch` is 0, not a batch size"),
        (
            "epoch_seconds",
            "-inf",
            "metadata `epoch_seconds` is -inf, not a duration",
        ),
    ];
    let ckpt_meta = {
        let bytes = std::fs::read(&good).expect("read");
        let (_, h) = SafeTensors::read_metadata(&bytes).expect("header");
        h.metadata().clone().expect("metadata")
    };
    assert_eq!(ckpt_meta["step"], "2", "XOR takes one step an epoch");
    for (key, value, message) in cases {
        let bad = dir.join("bad");
        std::fs::create_dir_all(&bad).expect("mkdir");
        std::fs::copy(dir.join("r/x.nn"), bad.join("x.nn")).expect("copy source");
        with_metadata(&good, &bad.join("checkpoint.safetensors"), &[(key, value)]);
        let resume = ["train", "x.nn", "--out", "bad", "--epochs", "3", "--resume"];
        let eval = ["eval", "x.nn", "--weights", "bad/checkpoint.safetensors"];
        for args in [&resume[..], &eval[..]] {
            let (_, err, code) = run(dir, args);
            assert_eq!(code, 2, "{key} = {value}, {args:?}: {err}");
            assert!(
                err.contains("`bad/checkpoint.safetensors` is a damaged checkpoint")
                    && err.contains(message),
                "{key} = {value}, {args:?}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }

    // The largest step a checkpoint may hold resumes, and the run counts on from it without
    // overflowing (the test binary is built with overflow checks).
    let top = (1u64 << 53).to_string();
    with_metadata(&good, &good, &[("step", &top)]);
    let (out, err, code) = run(
        dir,
        &["train", "x.nn", "--out", "r", "--epochs", "3", "--resume"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("step {top}")), "{err}");
    assert!(out.contains("after 3 epochs"), "{out}");
    let bytes = std::fs::read(&good).expect("read");
    let (_, h) = SafeTensors::read_metadata(&bytes).expect("header");
    let meta = h.metadata().clone().expect("metadata");
    assert_eq!(
        meta["step"],
        ((1u64 << 53) + 1).to_string(),
        "one step more"
    );
}

/// A device that never ends, given as the model, is refused at the size limit instead of read
/// until memory runs out.
#[cfg(unix)]
#[test]
fn an_endless_device_as_the_model_is_refused() {
    let started = std::time::Instant::now();
    let (_, err, code) = run(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &["check", "/dev/zero"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`/dev/zero` is more than 67108864 bytes; a .nn file larger than"),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
}
