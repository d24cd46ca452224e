//! Writing files so that a crash never leaves a torn one: the bytes go to a temporary file in
//! the same directory, which is flushed to disk and then renamed over the target (a rename
//! within a directory is atomic), and the directory itself is flushed so the rename survives a
//! power cut.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` by `bytes` atomically: readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let shown = path.display();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = temp_name(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Flushing a directory is not possible everywhere (Windows); the rename has happened.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok::<(), std::io::Error>(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write `{shown}`: {e}")
    })
}

/// `dir/.name.tmp`: hidden, beside the target, and the same for every write of it, so an
/// interrupted write leaves at most one stale temporary file, replaced by the next write.
fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Reads a file of at most `limit` bytes, with messages that name it.
pub fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| format!("cannot read `{shown}`: {}", reason(&e)))?;
    if meta.is_dir() {
        return Err(format!("`{shown}` is a directory, not {what}"));
    }
    if meta.len() > limit {
        return Err(format!(
            "`{shown}` is {} bytes; {what} larger than {} bytes is not read",
            meta.len(),
            limit
        ));
    }
    fs::read(path).map_err(|e| format!("cannot read `{shown}`: {}", reason(&e)))
}

/// A short reason for an I/O error.
pub fn reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        let err = write_atomic(&dir.path().join("missing/x.bin"), b"").unwrap_err();
        assert!(err.contains("missing/x.bin"), "{err}");
    }

    #[test]
    fn limited_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, [0u8; 100]).unwrap();
        assert!(
            read_limited(&path, 10, "a checkpoint")
                .unwrap_err()
                .contains("larger")
        );
        assert_eq!(read_limited(&path, 100, "x").unwrap().len(), 100);
        assert!(
            read_limited(dir.path(), 100, "a checkpoint")
                .unwrap_err()
                .contains("is a directory")
        );
        assert!(
            read_limited(&dir.path().join("nope"), 1, "x")
                .unwrap_err()
                .contains("no such file")
        );
    }
}
