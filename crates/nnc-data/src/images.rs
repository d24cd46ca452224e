//! Image/label data sets from IDX pairs: MNIST and its look-alikes (Fashion-MNIST, EMNIST, ...).
//!
//! Both headers are checked (dimensions, types, counts) before either payload is read, and the
//! small label file is read before the large image file, so most mistakes cost no reading.

use std::path::{Path, PathBuf};

use crate::idx::{ElemType, IdxData, IdxFile, decode};
use crate::{DataError, Dataset, Inputs, Targets};

/// Which half of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training set (60,000 MNIST images).
    Train,
    /// The test set (10,000 MNIST images).
    Test,
}

/// MNIST from a directory holding the four canonical files, each gzip-compressed (`*.gz`) or raw
/// (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
/// t10k-labels-idx1-ubyte). When both forms exist the raw one is read (it is faster).
///
/// Images come out as [`Inputs::U8`] with sample `[1, 28, 28]`; labels as
/// [`Targets::Classes`] with `classes: 10`. The headers must say exactly 60,000 (train) or
/// 10,000 (test) images of 28x28 u8 and as many u8 labels.
pub fn mnist(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let (images, labels, count, what) = match split {
        Split::Train => (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            60_000,
            "training",
        ),
        Split::Test => (
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
            10_000,
            "test",
        ),
    };
    // Both files found before either is opened: a missing file is the first thing to fix.
    let (images, labels) = (find(dir, images)?, find(dir, labels)?);
    let images = IdxFile::open(&images)?;
    let labels = IdxFile::open(&labels)?;
    if images.ty != ElemType::U8 || images.dims != [count, 28, 28] {
        return Err(DataError::Content {
            detail: format!(
                "expected the MNIST {what} images, {count}x28x28 u8, found {}",
                images.shape()
            ),
            path: images.path,
        });
    }
    if labels.ty != ElemType::U8 || labels.dims != [count] {
        return Err(DataError::Content {
            detail: format!(
                "expected the MNIST {what} labels, {count} u8, found {}",
                labels.shape()
            ),
            path: labels.path,
        });
    }
    pair(images, labels, Some(10))
}

/// The file `name` in `dir`, raw or with `.gz`.
fn find(dir: &Path, name: &'static str) -> Result<PathBuf, DataError> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::MissingFile {
        dir: dir.to_owned(),
        file: name,
    })
}

/// Any IDX image/label pair (Fashion-MNIST etc.), gzip (detected by the 1f 8b magic, not the
/// name) or raw.
///
/// Images with dims `[N, H, W]` give sample `[1, H, W]`; `[N, C, H, W]` gives `[C, H, W]`;
/// `[N, D]` gives `[D]`. u8 images stay [`Inputs::U8`]; other element types are converted to
/// [`Inputs::F32`] (i32 values beyond 2^24 round) and must be finite.
///
/// Labels must be u8 and 1-D, as many as there are images. `classes`: if `Some(k)`, every label
/// must be `< k`; if `None`, `classes` is the largest label + 1.
pub fn idx_pair(
    images: &Path,
    labels: &Path,
    classes: Option<usize>,
) -> Result<Dataset, DataError> {
    let images = IdxFile::open(images)?;
    let labels = IdxFile::open(labels)?;
    pair(images, labels, classes)
}

/// What an IDX image/label pair holds, from its headers alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxPairHeader {
    /// The number of images (and of labels).
    pub count: usize,
    /// The shape of one image as [`idx_pair`] gives it (`[1, H, W]` for `[N, H, W]` files).
    pub sample: Vec<usize>,
    /// Whether the images are u8 ([`Inputs::U8`]); other types become [`Inputs::F32`].
    pub bytes: bool,
}

/// Reads the headers of an IDX image/label pair, and not the images: everything [`idx_pair`]
/// checks before reading the images (dimensions, element types, counts, that each file is
/// as long as its header promises, and with `classes`, that every label is below it: one
/// byte a sample), for checking a model against its data without reading the data.
pub fn idx_pair_header(
    images: &Path,
    labels: &Path,
    classes: Option<usize>,
) -> Result<IdxPairHeader, DataError> {
    let images = IdxFile::open(images)?;
    let labels = IdxFile::open(labels)?;
    let sample = headers(&images, &labels)?;
    if let Some(k) = classes {
        let path = labels.path.clone();
        labels_in_range(&path, &labels.read_payload()?, k)?;
    }
    Ok(IdxPairHeader {
        count: images.dims.first().copied().unwrap_or(0),
        sample,
        bytes: images.ty == ElemType::U8,
    })
}

/// Every label below `k`, or the first that is not.
fn labels_in_range(path: &Path, labels: &[u8], k: usize) -> Result<(), DataError> {
    match labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= k)
    {
        Some((i, &label)) => Err(DataError::Content {
            path: path.to_owned(),
            detail: format!("label {label} at index {i} is out of range for {k} classes"),
        }),
        None => Ok(()),
    }
}

/// Checks the two headers against each other; gives the shape of one image.
fn headers(images: &IdxFile, labels: &IdxFile) -> Result<Vec<usize>, DataError> {
    let content = |path: &Path, detail: String| DataError::Content {
        path: path.to_owned(),
        detail,
    };
    let sample: Vec<usize> = match images.dims[..] {
        [_, d] => vec![d],
        [_, h, w] => vec![1, h, w],
        [_, c, h, w] => vec![c, h, w],
        _ => {
            return Err(content(
                &images.path,
                format!(
                    "images need 2 to 4 dimensions ([N, D], [N, H, W] or [N, C, H, W]), found \
                     {}{}",
                    images.shape(),
                    if images.dims.len() == 1 {
                        " (a label file?)"
                    } else {
                        ""
                    }
                ),
            ));
        }
    };
    if labels.ty != ElemType::U8 {
        return Err(content(
            &labels.path,
            format!("labels must be u8 (type 0x08), found {}", labels.shape()),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(content(
            &labels.path,
            format!("labels must be 1-D, found {}", labels.shape()),
        ));
    }
    let count = images.dims[0];
    if labels.dims[0] != count {
        return Err(content(
            &images.path,
            format!(
                "{count} images, but {} holds {} labels",
                labels.path.display(),
                labels.dims[0]
            ),
        ));
    }
    if count == 0 || sample.contains(&0) {
        return Err(content(
            &images.path,
            format!("no data: the images are {}", images.shape()),
        ));
    }
    Ok(sample)
}

fn pair(images: IdxFile, labels: IdxFile, classes: Option<usize>) -> Result<Dataset, DataError> {
    let content = |path: &Path, detail: String| DataError::Content {
        path: path.to_owned(),
        detail,
    };
    // Headers first.
    let sample = headers(&images, &labels)?;

    // Labels next: small, and their errors need no image.
    let labels_path = labels.path.clone();
    let raw_labels = labels.read_payload()?;
    let classes = match classes {
        Some(k) => {
            labels_in_range(&labels_path, &raw_labels, k)?;
            k
        }
        None => raw_labels.iter().max().map_or(0, |&m| usize::from(m) + 1),
    };
    let labels = raw_labels.into_iter().map(i32::from).collect();

    let (path, ty) = (images.path.clone(), images.ty);
    let bytes = images.read_payload()?;
    let inputs = if ty == ElemType::U8 {
        Inputs::U8 {
            data: bytes,
            sample,
        }
    } else {
        let data = to_f32(decode(ty, &bytes));
        drop(bytes);
        let size: usize = sample.iter().product();
        if let Some(at) = data.iter().position(|v| !v.is_finite()) {
            return Err(content(
                &path,
                format!(
                    "image {} holds a value that is not a finite f32 at element {}",
                    at / size,
                    at % size
                ),
            ));
        }
        Inputs::F32 { data, sample }
    };
    Ok(Dataset {
        inputs,
        targets: Targets::Classes { labels, classes },
    })
}

/// Non-u8 images as f32: an f64 beyond the f32 range becomes infinite and is then rejected.
fn to_f32(data: IdxData) -> Vec<f32> {
    match data {
        IdxData::U8(v) => v.into_iter().map(f32::from).collect(),
        IdxData::I8(v) => v.into_iter().map(f32::from).collect(),
        IdxData::I16(v) => v.into_iter().map(f32::from).collect(),
        IdxData::I32(v) => v.into_iter().map(|x| x as f32).collect(),
        IdxData::F32(v) => v,
        IdxData::F64(v) => v.into_iter().map(|x| x as f32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(ty: u8, dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, ty, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn headers_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (i, l) = (dir.path().join("images"), dir.path().join("labels"));
        std::fs::write(&i, idx(8, &[2, 3, 4], &[0; 24])).unwrap();
        std::fs::write(&l, idx(8, &[2], &[0, 1])).unwrap();
        let header = idx_pair_header(&i, &l, None).unwrap();
        assert_eq!(
            header,
            IdxPairHeader {
                count: 2,
                sample: vec![1, 3, 4],
                bytes: true
            }
        );
        // With a class count, the labels are read.
        assert!(idx_pair_header(&i, &l, Some(2)).is_ok());
        let err = idx_pair_header(&i, &l, Some(1)).unwrap_err().to_string();
        assert!(
            err.ends_with("labels: label 1 at index 1 is out of range for 1 classes"),
            "{err}"
        );
        // The images are not read, but their size is checked against the file's.
        std::fs::write(&i, idx(8, &[2, 3, 4], &[0; 23])).unwrap();
        let err = idx_pair_header(&i, &l, None).unwrap_err().to_string();
        assert!(err.contains("truncated IDX payload"), "{err}");
        std::fs::write(&i, idx(0x0D, &[2, 3], &[0; 24])).unwrap();
        assert!(!idx_pair_header(&i, &l, None).unwrap().bytes);
        std::fs::write(&l, idx(8, &[3], &[0, 1, 2])).unwrap();
        let err = idx_pair_header(&i, &l, None).unwrap_err().to_string();
        assert!(err.contains("2 images, but"), "{err}");
    }

    fn pair_of(images: &[u8], labels: &[u8], classes: Option<usize>) -> Result<Dataset, DataError> {
        let dir = tempfile::tempdir().unwrap();
        let (i, l) = (dir.path().join("images"), dir.path().join("labels"));
        std::fs::write(&i, images).unwrap();
        std::fs::write(&l, labels).unwrap();
        idx_pair(&i, &l, classes)
    }

    #[test]
    fn sample_shapes() {
        let labels = idx(0x08, &[2], &[0, 1]);
        for (dims, sample) in [
            (&[2, 6][..], &[6][..]),
            (&[2, 2, 3], &[1, 2, 3]),
            (&[2, 3, 1, 2], &[3, 1, 2]),
        ] {
            let data = pair_of(&idx(0x08, dims, &[9; 12]), &labels, None).unwrap();
            assert_eq!(data.sample_shape(), sample);
            assert_eq!(data.len(), 2);
            assert!(matches!(data.targets, Targets::Classes { classes: 2, .. }));
        }
    }

    #[test]
    fn non_u8_images_become_f32() {
        let labels = idx(0x08, &[2], &[3, 0]);
        let payload = [(-2i16).to_be_bytes(), 300i16.to_be_bytes()].concat();
        let data = pair_of(&idx(0x0B, &[2, 1], &payload), &labels, Some(4)).unwrap();
        let Inputs::F32 { data: values, .. } = &data.inputs else {
            panic!("expected f32 inputs");
        };
        assert_eq!(values, &[-2.0, 300.0]);
        assert!(matches!(data.targets, Targets::Classes { classes: 4, .. }));

        let payload = [1.0f64.to_be_bytes(), 1e300f64.to_be_bytes()].concat();
        let err = pair_of(&idx(0x0E, &[2, 1], &payload), &labels, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("image 1 holds a value that is not a finite f32")
        );
    }

    #[test]
    fn label_and_count_errors() {
        let images = idx(0x08, &[3, 2], &[0; 6]);
        let message =
            |labels: &[u8], classes| pair_of(&images, labels, classes).unwrap_err().to_string();
        assert!(message(&idx(0x08, &[3], &[0, 1, 12]), Some(10)).contains("label 12 at index 2"));
        assert!(message(&idx(0x08, &[2], &[0, 1]), None).contains("3 images, but"));
        assert!(message(&idx(0x08, &[3, 1], &[0, 1, 2]), None).contains("labels must be 1-D"));
        assert!(message(&idx(0x0C, &[3], &[0; 12]), None).contains("labels must be u8"));
        let err = pair_of(&idx(0x08, &[3], &[0; 3]), &idx(0x08, &[3], &[0; 3]), None);
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("images need 2 to 4 dimensions")
        );
        let err = pair_of(&idx(0x08, &[0, 2], &[]), &idx(0x08, &[0], &[]), None);
        assert!(err.unwrap_err().to_string().contains("no data"));
    }

    #[test]
    fn mnist_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = mnist(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(err.contains("missing t10k-images-idx3-ubyte (or t10k-images-idx3-ubyte.gz)"));
        assert!(err.contains("train-labels-idx1-ubyte"));
    }

    #[test]
    fn mnist_checks_the_dimensions() {
        let dir = tempfile::tempdir().unwrap();
        let images = idx(0x08, &[2, 28, 28], &[0; 2 * 28 * 28]);
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), images).unwrap();
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte"),
            idx(0x08, &[2], &[0; 2]),
        )
        .unwrap();
        let err = mnist(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(
            err.ends_with("expected the MNIST test images, 10000x28x28 u8, found 2x28x28 u8"),
            "{err}"
        );
    }
}
