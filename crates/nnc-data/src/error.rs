//! The one error type of the crate.
//!
//! Every message is one line, starts with the file it is about (or the function, for misuse of
//! an in-memory [`Dataset`](crate::Dataset)), and then says in lowercase words what is wrong and,
//! where there are numbers, which ones.

use std::io;
use std::path::PathBuf;

/// Why a data set could not be read or gathered from.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused: missing file, permissions, a directory, a read error.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// A file of the MNIST directory is absent under both its raw and its `.gz` name.
    #[error(
        "{}: missing {file} (or {file}.gz); an MNIST directory holds train-images-idx3-ubyte, \
         train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each raw \
         or gzip-compressed with a .gz suffix",
        dir.display()
    )]
    MissingFile {
        /// The directory that was searched.
        dir: PathBuf,
        /// The canonical name of the missing file.
        file: &'static str,
    },

    /// The file starts like gzip (1f 8b) but the stream is corrupt.
    #[error("{}: not a valid gzip stream: {detail}", path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// What the decompressor said.
        detail: String,
    },

    /// The gzip stream stops before its end marker: the file was cut short.
    #[error("{}: truncated gzip stream: the compressed data ends early", path.display())]
    GzipTruncated {
        /// The file.
        path: PathBuf,
    },

    /// The IDX header is malformed: magic, element type, number of dimensions, or a size that
    /// does not fit in 64 bits.
    #[error("{}: {detail}", path.display())]
    IdxHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong, e.g. "not an IDX file: ...".
        detail: String,
    },

    /// The payload is shorter than the header's dimensions promise.
    #[error(
        "{}: truncated IDX payload: the header promises {expected} bytes ({shape}), {found}",
        path.display()
    )]
    IdxTruncated {
        /// The file.
        path: PathBuf,
        /// Payload bytes the header promises.
        expected: u64,
        /// The dimensions and element type, e.g. `60000x28x28 u8`.
        shape: String,
        /// What the file holds instead, e.g. `the file holds 1024`.
        found: String,
    },

    /// The payload continues after the bytes the header promises.
    #[error(
        "{}: trailing bytes after the IDX payload: the header promises {expected} bytes \
         ({shape}), {found}",
        path.display()
    )]
    IdxTrailing {
        /// The file.
        path: PathBuf,
        /// Payload bytes the header promises.
        expected: u64,
        /// The dimensions and element type.
        shape: String,
        /// What the file holds instead, e.g. `the file holds 1030`.
        found: String,
    },

    /// The payload is larger than this crate reads into memory.
    #[error(
        "{}: IDX payload too large: the header promises {expected} bytes ({shape}), over the \
         limit of {limit} bytes",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Payload bytes the header promises.
        expected: u64,
        /// The dimensions and element type.
        shape: String,
        /// The limit, [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES).
        limit: u64,
    },

    /// A well-formed file that does not fit its role: wrong dimensions for MNIST, labels that
    /// are not u8 or not 1-D, a label out of range, image and label counts that differ.
    #[error("{}: {detail}", path.display())]
    Content {
        /// The file (for a count mismatch, the images; the message names both).
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// A CSV file that is not a header plus rows of finite numbers, or is larger than
    /// [`MAX_CSV_BYTES`](crate::MAX_CSV_BYTES).
    #[error("{}: {detail}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line (1-based, the header is line 1) and column.
        detail: String,
    },

    /// A `gather_*` call that does not match the data set: wrong variant, wrong buffer length,
    /// or an index out of range. A bug in the caller, not in a file.
    #[error("{function}: {detail}")]
    Gather {
        /// The method, e.g. `gather_u8`.
        function: &'static str,
        /// What is wrong.
        detail: String,
    },
}
