//! Every malformed file in `tests/corpus/` (written by `tests/corpus/make.py`, one defect per
//! file) goes through the reader it was made for, and must give a one-line error that names the
//! file and says what is wrong.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nnc_data::{DataError, Split, csv, idx_pair, mnist, read_idx};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// How a corpus file is read.
enum Read {
    Idx,
    /// As the labels of `ok-images.idx`, with this many classes.
    Labels(Option<usize>),
    /// As the images of `ok-labels.idx`.
    Images,
    /// An MNIST directory, training split.
    Mnist,
    /// CSV with target column `y`.
    Csv,
}

/// (file, reader, a phrase the message must contain).
const CASES: &[(&str, Read, &str)] = &[
    ("idx-empty.idx", Read::Idx, "empty IDX file"),
    (
        "idx-bad-magic.idx",
        Read::Idx,
        "not an IDX file: the magic number must start with two zero bytes, found 01 02",
    ),
    (
        "idx-bad-type.idx",
        Read::Idx,
        "unknown IDX element type 0x07",
    ),
    (
        "idx-zero-dims.idx",
        Read::Idx,
        "an IDX file has 1 to 4 dimensions, the header says 0",
    ),
    (
        "idx-five-dims.idx",
        Read::Idx,
        "an IDX file has 1 to 4 dimensions, the header says 5",
    ),
    (
        "idx-truncated-header.idx",
        Read::Idx,
        "truncated IDX header: 3 dimensions need a header of 16 bytes, the file holds 10",
    ),
    (
        "idx-truncated-payload.idx",
        Read::Idx,
        "truncated IDX payload: the header promises 250 bytes (10x5x5 u8), the file holds 200",
    ),
    (
        "idx-trailing-bytes.idx",
        Read::Idx,
        "trailing bytes after the IDX payload: the header promises 250 bytes (10x5x5 u8), \
         the file holds 260",
    ),
    (
        "idx-4-billion-images.idx",
        Read::Idx,
        "the header promises 3136000000000 bytes (4000000000x28x28 u8), the file holds 256",
    ),
    (
        "idx-4-billion-images.idx.gz",
        Read::Idx,
        "the header promises 3136000000000 bytes (4000000000x28x28 u8), a gzip file of 34 \
         bytes decompresses to at most 35088",
    ),
    (
        "idx-size-overflow.idx",
        Read::Idx,
        "size overflow: the IDX dimensions 4294967295x4294967295x4294967295x4294967295 f64",
    ),
    ("gzip-corrupt.idx.gz", Read::Idx, "not a valid gzip stream"),
    (
        "gzip-truncated.idx.gz",
        Read::Idx,
        "truncated gzip stream: the compressed data ends early",
    ),
    ("gzip-bad-crc.idx.gz", Read::Idx, "not a valid gzip stream"),
    (
        "gzip-truncated-payload.idx.gz",
        Read::Idx,
        "truncated IDX payload: the header promises 250 bytes (10x5x5 u8), the decompressed \
         file holds 200",
    ),
    (
        "gzip-trailing-garbage.idx.gz",
        Read::Idx,
        "not a valid gzip stream",
    ),
    (
        "labels-out-of-range.idx",
        Read::Labels(Some(10)),
        "label 12 at index 2 is out of range for 10 classes",
    ),
    (
        "labels-count-mismatch.idx",
        Read::Labels(None),
        "4 images, but",
    ),
    (
        "labels-2d.idx",
        Read::Labels(None),
        "labels must be 1-D, found 4x1 u8",
    ),
    (
        "labels-i32.idx",
        Read::Labels(None),
        "labels must be u8 (type 0x08), found 4 i32",
    ),
    (
        "images-1d.idx",
        Read::Images,
        "images need 2 to 4 dimensions ([N, D], [N, H, W] or [N, C, H, W]), found 4 u8",
    ),
    (
        "images-f32-nan.idx",
        Read::Images,
        "image 1 holds a value that is not a finite f32 at element 1",
    ),
    (
        "mnist-wrong-shape",
        Read::Mnist,
        "train-images-idx3-ubyte.gz: expected the MNIST training images, 60000x28x28 u8, \
         found 2x28x28 u8",
    ),
    (
        "mnist-missing-labels",
        Read::Mnist,
        "missing train-labels-idx1-ubyte (or train-labels-idx1-ubyte.gz); an MNIST directory \
         holds",
    ),
    (
        "csv-empty.csv",
        Read::Csv,
        "empty file: expected a header row of column names",
    ),
    (
        "csv-header-only.csv",
        Read::Csv,
        "no data rows after the header",
    ),
    (
        "csv-ragged.csv",
        Read::Csv,
        "line 3 has 2 cells, the header has 3",
    ),
    (
        "csv-non-numeric.csv",
        Read::Csv,
        "line 4, column 2 (`x2`): `abc` is not a number",
    ),
    (
        "csv-non-finite.csv",
        Read::Csv,
        "line 2, column 2 (`x2`): `inf` is not a finite f32 number",
    ),
    (
        "csv-missing-target.csv",
        Read::Csv,
        "no column `y`; the columns are x1, x2, z",
    ),
    (
        "csv-quotes.csv",
        Read::Csv,
        "line 2: quoted cells are not supported",
    ),
    (
        "csv-empty-cell.csv",
        Read::Csv,
        "line 2, column 2 (`x2`): empty cell",
    ),
    (
        "csv-blank-line.csv",
        Read::Csv,
        "line 3 is empty: blank lines are allowed only at the end of the file",
    ),
    (
        "csv-duplicate-column.csv",
        Read::Csv,
        "line 1: column `x` appears twice (columns 1 and 2)",
    ),
    ("csv-not-utf8.csv", Read::Csv, "line 3 is not valid UTF-8"),
    (
        "csv-only-targets.csv",
        Read::Csv,
        "no feature columns: every column (y) is a target",
    ),
    (
        "csv-semicolons.csv",
        Read::Csv,
        "no column `y`; the columns are x;y",
    ),
];

/// Valid files that only serve as the other half of a pair.
const PARTNERS: &[&str] = &["ok-images.idx", "ok-labels.idx", "make.py"];

fn run(name: &str, read: &Read) -> Result<(), DataError> {
    let path = corpus().join(name);
    let ok = |partner: &str| corpus().join(partner);
    match read {
        Read::Idx => read_idx(&path).map(drop),
        Read::Labels(classes) => idx_pair(&ok("ok-images.idx"), &path, *classes).map(drop),
        Read::Images => idx_pair(&path, &ok("ok-labels.idx"), None).map(drop),
        Read::Mnist => mnist(&path, Split::Train).map(drop),
        Read::Csv => csv(&path, &["y".to_string()]).map(drop),
    }
}

#[test]
fn every_malformed_file_gives_a_precise_one_line_error() {
    let mut failures = Vec::new();
    for (name, read, phrase) in CASES {
        let message = match run(name, read) {
            Ok(()) => {
                failures.push(format!("{name}: read without error"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        let after_path = message
            .split_once(*name)
            .map(|(_, rest)| rest.trim_start_matches(['/', ':', ' ']));
        let problems = [
            (after_path.is_none(), "does not name the file"),
            (!message.contains(phrase), "lacks the expected phrase"),
            (message.contains('\n'), "spans several lines"),
            (
                after_path
                    .and_then(|rest| rest.chars().next())
                    .is_some_and(char::is_uppercase),
                "does not start lowercase after the path",
            ),
        ];
        for (failed, what) in problems {
            if failed {
                failures.push(format!(
                    "{name}: message {what}:\n  {message}\n  want: {phrase}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn huge_claims_fail_on_the_header() {
    // The header promises 3 TB; the error comes from comparing sizes, not from reading or
    // allocating (an allocation that size would abort the test process).
    for name in ["idx-4-billion-images.idx", "idx-4-billion-images.idx.gz"] {
        let err = read_idx(&corpus().join(name)).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::IdxTruncated {
                    expected: 3_136_000_000_000,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn the_corpus_has_no_untested_file() {
    let listed: BTreeSet<&str> = CASES
        .iter()
        .map(|c| c.0)
        .chain(PARTNERS.iter().copied())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let present: BTreeSet<&str> = present.iter().map(String::as_str).collect();
    assert_eq!(listed, present);
    assert!(CASES.len() >= 15);
}

#[test]
fn the_partners_are_valid() {
    let data = idx_pair(
        &corpus().join("ok-images.idx"),
        &corpus().join("ok-labels.idx"),
        Some(10),
    )
    .unwrap();
    assert_eq!(data.len(), 4);
    assert_eq!(data.sample_shape(), [1, 3, 3]);
}
