//! Reading `.nn` files: every way a path can be wrong becomes a message, never a panic.

use std::path::Path;

use nnc_syntax::Diagnostic;

use crate::files;

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

/// Reads a file, or returns a one-line message for an I/O error or a file too large to be a
/// model (whatever its kind: a pipe or a device is read no further than the limit).
pub fn read(path: &Path) -> Result<Source, String> {
    let shown = path.display();
    let bytes = files::read_limited(path, MAX_SIZE, "a .nn file")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that never ends is refused at the size limit, not read until memory runs out.
    #[cfg(unix)]
    #[test]
    fn an_endless_device_is_refused_at_the_limit() {
        let Err(err) = read(Path::new("/dev/zero")) else {
            panic!("/dev/zero read as a model");
        };
        assert_eq!(
            err,
            "`/dev/zero` is more than 67108864 bytes; a .nn file larger than 67108864 bytes is \
             not read"
        );
    }
}
