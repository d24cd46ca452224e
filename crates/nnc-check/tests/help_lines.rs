//! Every diagnostic the front end builds has a help line (docs/language.md promises one for
//! every problem). The invalid corpus checks the diagnostics it reaches; this test reads the
//! sources of `nnc-syntax` and `nnc-check` and checks every `Diagnostic::error(…)` and
//! `Diagnostic::warning(…)` statement, so that a new one without `.help(…)`, or with a help
//! added only on some path (`if let Some(h) = … { d = d.help(h) }`), fails here.

use std::path::Path;

/// The statement that starts at `start` (at a `Diagnostic::…(`): up to its `;`, or to the `}`
/// that closes the block it is in, skipping string literals and comments.
fn statement(src: &str, start: usize) -> &str {
    let bytes = src.as_bytes();
    let mut depth = 0i32;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' => depth -= 1,
            b'}' => {
                depth -= 1;
                if depth < 0 {
                    break;
                }
            }
            b';' => break,
            _ => {}
        }
        i += 1;
    }
    &src[start..i.min(src.len())]
}

#[test]
fn every_diagnostic_statement_has_a_help_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    let mut missing = Vec::new();
    for dir in [root.join("src"), root.join("../nnc-syntax/src")] {
        for entry in std::fs::read_dir(&dir).expect("a source directory") {
            let path = entry.expect("an entry").path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).expect("a source file");
            for pattern in ["Diagnostic::error(", "Diagnostic::warning("] {
                for (at, _) in src.match_indices(pattern) {
                    // The constructors themselves (`warning` is built from `error`).
                    let line_start = src[..at].rfind('\n').map_or(0, |n| n + 1);
                    if src[line_start..at].trim_start().starts_with("..") {
                        continue;
                    }
                    checked += 1;
                    if !statement(&src, at).contains(".help(") {
                        let line = src[..at].lines().count();
                        missing.push(format!("{}:{line}", path.display()));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "found the diagnostics: {checked}");
    assert!(
        missing.is_empty(),
        "diagnostics without a help line:\n{}",
        missing.join("\n")
    );
}
