//! Writing files so that a crash never leaves a torn one: the bytes go to a temporary file in
//! the same directory, which is flushed to disk and then renamed over the target (a rename
//! within a directory is atomic), and the directory itself is flushed so the rename survives a
//! power cut.

use std::fs::{self, File};
use std::io::{Read, Write};
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
///
/// The limit holds for any kind of file: the size the file system reports is only a first
/// check, and the read itself stops one byte past the limit, so a pipe, a device such as
/// `/dev/zero`, or a file that grows while it is read is refused without reading it all.
pub fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let cannot = |e: std::io::Error| format!("cannot read `{shown}`: {}", reason(&e));
    let too_large = |size: &str| {
        format!("`{shown}` is {size} bytes; {what} larger than {limit} bytes is not read")
    };
    let mut file = open_readable(path, what)?;
    // The file's own metadata (not the path's again): the file read is the file checked.
    let meta = file.metadata().map_err(cannot)?;
    if meta.len() > limit {
        return Err(too_large(&meta.len().to_string()));
    }
    // A regular file's size is a good first capacity; a pipe or device reports 0.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&mut file)
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(&format!("more than {limit}")));
    }
    Ok(bytes)
}

/// Opens `path` for reading, refusing with a message what cannot be `what`: a directory, a
/// block device (a disk) or a socket. Pipes and character devices are opened (`nnc check
/// <(generate)` reads a pipe), and [`read_limited`] bounds what is read from them.
pub fn open_readable(path: &Path, what: &str) -> Result<File, String> {
    let shown = path.display();
    let cannot = |e: std::io::Error| format!("cannot read `{shown}`: {}", reason(&e));
    // The path's metadata first: opening a socket fails with an obscure error.
    let kind = fs::metadata(path).map_err(cannot)?.file_type();
    if kind.is_dir() {
        return Err(format!("`{shown}` is a directory, not {what}"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_block_device() {
            return Err(format!("`{shown}` is a block device (a disk), not {what}"));
        }
        if kind.is_socket() {
            return Err(format!("`{shown}` is a socket, not {what}"));
        }
    }
    File::open(path).map_err(cannot)
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

    /// The limit holds for files whose size the file system does not know: a device that
    /// never ends, a pipe whose writer never stops.
    #[cfg(unix)]
    #[test]
    fn limits_hold_for_devices_and_pipes() {
        let started = std::time::Instant::now();
        let err = read_limited(Path::new("/dev/zero"), 1000, "a model").unwrap_err();
        assert!(
            err.contains("is more than 1000 bytes; a model larger than 1000 bytes is not read"),
            "{err}"
        );
        // A small file through a device-like path still reads: `/dev/null` is empty.
        assert_eq!(read_limited(Path::new("/dev/null"), 10, "x").unwrap(), b"");

        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo failed");
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                // Blocks until the reader opens the pipe; ends when the reader closes it (a
                // broken pipe: Rust programs ignore SIGPIPE).
                let mut f = File::options().write(true).open(&fifo).unwrap();
                let chunk = [b'x'; 4096];
                let mut written = 0u64;
                while f.write_all(&chunk).is_ok() {
                    written += chunk.len() as u64;
                }
                written
            })
        };
        let err = read_limited(&fifo, 100_000, "a model").unwrap_err();
        assert!(err.contains("is more than 100000 bytes"), "{err}");
        let written = writer.join().unwrap();
        assert!(written >= 100_000, "the writer wrote {written} bytes");
        // Pipes are small buffers: the writer stopped soon after the reader did.
        assert!(
            written < 100_000 + (16 << 20),
            "the writer wrote {written} bytes"
        );

        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let err = read_limited(&socket, 10, "a model").unwrap_err();
        assert!(err.contains("is a socket, not a model"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
    }
}
