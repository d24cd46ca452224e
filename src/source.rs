//! Reading `.nn` files: every way a path can be wrong becomes a message, never a panic.

use std::path::Path;

use nnc_syntax::Diagnostic;

/// The largest `.nn` file accepted. Real models are a few kilobytes; the limit only keeps a
/// mistaken path (a data set, a disk image) from being read into memory.
const MAX_SIZE: u64 = 64 << 20;

/// A `.nn` file's contents.
pub enum Source {
    /// UTF-8 text.
    Text(String),
    /// Not UTF-8: a diagnostic labelled in a lossy decoding of the file, which is identical to
    /// the file up to the first invalid byte.
    NotText(Diagnostic, String),
}

/// Reads a file, or returns a one-line message for an I/O error.
pub fn read(path: &Path) -> Result<Source, String> {
    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read `{shown}`: {}", io_reason(&e)))?;
    if meta.is_dir() {
        return Err(format!("`{shown}` is a directory, not a .nn file"));
    }
    if meta.len() > MAX_SIZE {
        return Err(format!(
            "`{shown}` is {} MiB; .nn files larger than {} MiB are not read",
            meta.len() >> 20,
            MAX_SIZE >> 20
        ));
    }
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{shown}`: {}", io_reason(&e)))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::Text(text)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let byte = e.as_bytes()[at];
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            Ok(Source::NotText(
                Diagnostic::error(
                    "nnc::syntax::encoding",
                    format!(
                        "`{shown}` is not UTF-8 text: byte 0x{byte:02x} at offset {at} is invalid"
                    ),
                )
                .label(nnc_syntax::Span::new(at, at + 1), "not UTF-8")
                .help("a .nn file is UTF-8 text; is this the right file?"),
                lossy,
            ))
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}
