//! What the end-to-end tests share: running the `nnc` binary with stable rendering, and
//! paths as the snapshots show them. (A directory module, so Cargo does not build it as a
//! test of its own.)

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs `nnc args…` in `dir` with stable rendering (no colour, 100 columns) and returns its
/// stdout, stderr and exit code (−1 if a signal ended it).
pub fn nnc_in(dir: &Path, args: &[&str]) -> (String, String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .current_dir(dir)
        .env("COLUMNS", "100")
        .env_remove("NO_COLOR")
        .args(["--color", "never"])
        .args(args)
        .output()
        .expect("nnc runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// Runs `nnc args…` from the repository root (see [`nnc_in`]).
pub fn nnc(args: &[&str]) -> (String, String, i32) {
    nnc_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Runs `nnc args…` from the repository root, asserts that it succeeded, and parses its
/// standard output as one JSON document (a `--json` report).
pub fn nnc_json(args: &[&str]) -> serde_json::Value {
    let (stdout, stderr, code) = nnc(args);
    assert_eq!(code, 0, "nnc {args:?}: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("nnc {args:?}: not JSON ({e}): {stdout}"))
}

/// The path relative to the repository root, with `/` separators, as the snapshots show it.
pub fn relative(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}
