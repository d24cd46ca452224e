//! The data shipped in the repository's `data/`.
//!
//! MNIST: counts, labels, and the SHA-256 of every decompressed file, recomputed from what the
//! loader returns (header rebuilt from the dimensions, then the bytes), so the loader is shown to
//! give back every byte unchanged. The regression CSVs: shape and a first row.

use std::path::{Path, PathBuf};

use nnc_data::{Dataset, Inputs, Split, Targets, csv, mnist};
use sha2::{Digest, Sha256};

fn dir() -> PathBuf {
    data("mnist")
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(name)
}

/// SHA-256 of the IDX file `dims` (u8) + `bytes`, as hex.
fn idx_sha256(dims: &[usize], bytes: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update([0, 0, 0x08, dims.len() as u8]);
    for &d in dims {
        hash.update((d as u32).to_be_bytes());
    }
    hash.update(bytes);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn check(data: &Dataset, count: usize, images_sha: &str, labels_sha: &str) {
    assert_eq!(data.len(), count);
    assert_eq!(data.sample_shape(), [1, 28, 28]);
    let Inputs::U8 { data: pixels, .. } = &data.inputs else {
        panic!("MNIST images must stay u8");
    };
    let Targets::Classes { labels, classes } = &data.targets else {
        panic!("MNIST targets must be classes");
    };
    assert_eq!(*classes, 10);
    assert!(labels.iter().all(|&l| (0..10).contains(&l)));
    assert_eq!(idx_sha256(&[count, 28, 28], pixels), images_sha);
    let label_bytes: Vec<u8> = labels.iter().map(|&l| l as u8).collect();
    assert_eq!(idx_sha256(&[count], &label_bytes), labels_sha);
}

#[test]
fn training_set() {
    let data = mnist(&dir(), Split::Train).unwrap();
    check(
        &data,
        60_000,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    );
    let mut first = [0i32; 1];
    data.gather_labels(&[0], &mut first).unwrap();
    assert_eq!(first, [5]);
}

#[test]
fn test_set() {
    let data = mnist(&dir(), Split::Test).unwrap();
    check(
        &data,
        10_000,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    );
}

#[test]
fn regression_csv() {
    let target = ["y".to_string()];
    let train = csv(&data("regression/train.csv"), &target).unwrap();
    let test = csv(&data("regression/test.csv"), &target).unwrap();
    assert_eq!((train.len(), test.len()), (512, 128));
    assert_eq!(train.sample_shape(), [2]);
    let (mut x, mut y) = ([0f32; 2], [0f32; 1]);
    train.gather_f32(&[0], &mut x).unwrap();
    train.gather_values(&[0], &mut y).unwrap();
    // The first row: -1.142640,0.007547,-0.851691
    assert_eq!((x, y), ([-1.142_64, 0.007_547], [-0.851_691]));
}
