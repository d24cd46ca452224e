//! The data layer of nnc: readers for IDX (MNIST and look-alikes) and CSV files, data sets
//! written inline in a `.nn` file, the per-epoch order of samples, and batches of it.
//!
//! - `idx.rs`: the IDX format ([`read_idx`]); `images.rs`: image/label pairs ([`mnist`],
//!   [`idx_pair`]); `csv.rs`: tables of numbers ([`csv()`], [`csv_classes`] for class
//!   labels); `order.rs`: [`epoch_order`],
//!   [`batches`]; `error.rs`: [`DataError`].
//! - A user's file is untrusted: a malformed one ends in a one-line [`DataError`] naming the
//!   file and the defect, never a panic, and nothing is allocated before the header says how
//!   much is needed and the file is shown to be able to hold it.
//! - Data stays compact: images stay u8 (47 MB for MNIST, not 188 MB of f32); scaling and
//!   padding are the runtime's business, per batch.

#![warn(missing_docs)]

mod csv;
mod error;
mod idx;
mod images;
mod order;

use std::fmt;

pub use crate::csv::{
    CsvHeader, MAX_CSV_BYTES, MAX_CSV_LINE_BYTES, class_label, csv, csv_check_labels, csv_classes,
    csv_header,
};
pub use crate::error::DataError;
pub use crate::idx::{Idx, IdxData, MAX_PAYLOAD_BYTES, read_idx};
pub use crate::images::{IdxPairHeader, Split, idx_pair, idx_pair_header, mnist};
pub use crate::order::{batches, epoch_order};

/// A data set held in memory. Images stay u8 (47 MB for MNIST, not 188 MB of f32).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// One sample per row, `len() * sample size` elements.
    pub inputs: Inputs,
    /// One target (a class, or `width` values) per sample.
    pub targets: Targets,
}

/// The inputs of a [`Dataset`], row-major, sample after sample.
#[derive(Clone, PartialEq)]
pub enum Inputs {
    /// Raw bytes, e.g. MNIST pixels; `sample` is the per-sample shape, e.g. [1, 28, 28].
    U8 {
        /// All samples, `sample.iter().product()` bytes each.
        data: Vec<u8>,
        /// The shape of one sample.
        sample: Vec<usize>,
    },
    /// Real values, e.g. CSV features; `sample` is the per-sample shape, e.g. `[2]`.
    F32 {
        /// All samples, `sample.iter().product()` values each.
        data: Vec<f32>,
        /// The shape of one sample.
        sample: Vec<usize>,
    },
}

impl Inputs {
    /// The shape of one sample.
    pub fn sample(&self) -> &[usize] {
        match self {
            Inputs::U8 { sample, .. } | Inputs::F32 { sample, .. } => sample,
        }
    }

    /// The number of elements in one sample (the product of [`Inputs::sample`]).
    pub fn sample_size(&self) -> usize {
        self.sample().iter().product()
    }

    /// The total number of elements.
    fn elements(&self) -> usize {
        match self {
            Inputs::U8 { data, .. } => data.len(),
            Inputs::F32 { data, .. } => data.len(),
        }
    }

    /// `u8` or `f32`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Inputs::U8 { .. } => "u8",
            Inputs::F32 { .. } => "f32",
        }
    }
}

/// Type, shape and count only: printing 47 million pixels helps nobody.
impl fmt::Debug for Inputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Inputs::{} {{ sample: {:?}, {} elements }}",
            self.type_name().to_uppercase(),
            self.sample(),
            self.elements()
        )
    }
}

/// The targets of a [`Dataset`].
#[derive(Clone, PartialEq)]
pub enum Targets {
    /// One class index per sample, each < classes.
    Classes {
        /// The class of each sample, in `0..classes`.
        labels: Vec<i32>,
        /// The number of classes.
        classes: usize,
    },
    /// `width` real values per sample (regression, or an inline table's targets).
    Values {
        /// All targets, `width` per sample.
        data: Vec<f32>,
        /// Values per sample.
        width: usize,
    },
}

/// Kind and count only, like [`Inputs`].
impl fmt::Debug for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Targets::Classes { labels, classes } => write!(
                f,
                "Targets::Classes {{ classes: {classes}, {} labels }}",
                labels.len()
            ),
            Targets::Values { data, width } => write!(
                f,
                "Targets::Values {{ width: {width}, {} values }}",
                data.len()
            ),
        }
    }
}

impl Dataset {
    /// The number of samples.
    pub fn len(&self) -> usize {
        match &self.targets {
            Targets::Classes { labels, .. } => labels.len(),
            // A width of 0 (an inline table without targets) leaves the inputs to count.
            Targets::Values { data, width } => data
                .len()
                .checked_div(*width)
                .or_else(|| {
                    self.inputs
                        .elements()
                        .checked_div(self.inputs.sample_size())
                })
                .unwrap_or(0),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one input sample, e.g. `[1, 28, 28]`.
    pub fn sample_shape(&self) -> &[usize] {
        self.inputs.sample()
    }

    /// Copies the u8 input samples `indices` into `out`, one after the other; `out` must hold
    /// exactly `indices.len()` samples. No allocation.
    ///
    /// Errors if the inputs are not u8, `out` has the wrong length, or an index is out of range
    /// (then `out` is partly written).
    pub fn gather_u8(&self, indices: &[usize], out: &mut [u8]) -> Result<(), DataError> {
        const F: &str = "gather_u8";
        match &self.inputs {
            Inputs::U8 { data, .. } => gather(F, data, self.inputs.sample_size(), indices, out),
            Inputs::F32 { .. } => Err(mismatch(F, "the inputs are f32, not u8")),
        }
    }

    /// Copies the f32 input samples `indices` into `out`, like [`Dataset::gather_u8`].
    pub fn gather_f32(&self, indices: &[usize], out: &mut [f32]) -> Result<(), DataError> {
        const F: &str = "gather_f32";
        match &self.inputs {
            Inputs::F32 { data, .. } => gather(F, data, self.inputs.sample_size(), indices, out),
            Inputs::U8 { .. } => Err(mismatch(F, "the inputs are u8, not f32")),
        }
    }

    /// Copies the class labels of `indices` into `out` (one per index), like
    /// [`Dataset::gather_u8`].
    pub fn gather_labels(&self, indices: &[usize], out: &mut [i32]) -> Result<(), DataError> {
        const F: &str = "gather_labels";
        match &self.targets {
            Targets::Classes { labels, .. } => gather(F, labels, 1, indices, out),
            Targets::Values { .. } => Err(mismatch(F, "the targets are values, not classes")),
        }
    }

    /// Copies the target values of `indices` into `out` (`width` per index), like
    /// [`Dataset::gather_u8`].
    pub fn gather_values(&self, indices: &[usize], out: &mut [f32]) -> Result<(), DataError> {
        const F: &str = "gather_values";
        match &self.targets {
            Targets::Values { data, width } => gather(F, data, *width, indices, out),
            Targets::Classes { .. } => Err(mismatch(F, "the targets are classes, not values")),
        }
    }
}

fn mismatch(function: &'static str, detail: &str) -> DataError {
    DataError::Gather {
        function,
        detail: detail.to_owned(),
    }
}

/// Copies the `size`-element samples `indices` of `data` into `out`.
fn gather<T: Copy>(
    function: &'static str,
    data: &[T],
    size: usize,
    indices: &[usize],
    out: &mut [T],
) -> Result<(), DataError> {
    let error = |detail| DataError::Gather { function, detail };
    if indices.len().checked_mul(size) != Some(out.len()) {
        return Err(error(format!(
            "`out` holds {} elements, but {} samples of {size} need {}",
            out.len(),
            indices.len(),
            indices.len().saturating_mul(size)
        )));
    }
    if size == 0 {
        return Ok(());
    }
    for (position, (&index, dst)) in indices.iter().zip(out.chunks_exact_mut(size)).enumerate() {
        let src = index
            .checked_mul(size)
            .and_then(|start| data.get(start..start.checked_add(size)?))
            .ok_or_else(|| {
                error(format!(
                    "index {index} (at position {position}) is out of range for {} samples",
                    data.len() / size
                ))
            })?;
        dst.copy_from_slice(src);
    }
    Ok(())
}

/// Rows written in a .nn file (inputs -> targets), already checked for equal lengths.
///
/// Gives [`Inputs::F32`] with sample `[inputs per row]` and [`Targets::Values`] with
/// `width: targets per row`; values are rounded to f32.
///
/// # Panics
///
/// If the rows are not all of one length, or there are not as many target rows as input rows:
/// the checker guarantees both.
pub fn inline(inputs: &[Vec<f64>], targets: &[Vec<f64>]) -> Dataset {
    let features = inputs.first().map_or(0, Vec::len);
    let width = targets.first().map_or(0, Vec::len);
    assert_eq!(
        inputs.len(),
        targets.len(),
        "inline data: one target row per input row"
    );
    assert!(
        inputs.iter().all(|r| r.len() == features) && targets.iter().all(|r| r.len() == width),
        "inline data: ragged rows"
    );
    let flat = |rows: &[Vec<f64>]| rows.iter().flatten().map(|&v| v as f32).collect();
    Dataset {
        inputs: Inputs::F32 {
            data: flat(inputs),
            sample: vec![features],
        },
        targets: Targets::Values {
            data: flat(targets),
            width,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xor() -> Dataset {
        let row = |a: f64, b: f64| vec![a, b];
        inline(
            &[row(0., 0.), row(0., 1.), row(1., 0.), row(1., 1.)],
            &[vec![0.], vec![1.], vec![1.], vec![0.]],
        )
    }

    #[test]
    fn inline_table() {
        let data = xor();
        assert_eq!(data.len(), 4);
        assert_eq!(data.sample_shape(), [2]);
        let mut x = [0f32; 4];
        data.gather_f32(&[3, 1], &mut x).unwrap();
        assert_eq!(x, [1., 1., 0., 1.]);
        let mut y = [0f32; 2];
        data.gather_values(&[3, 1], &mut y).unwrap();
        assert_eq!(y, [0., 1.]);
        assert!(inline(&[], &[]).is_empty());
        // No targets at all: the inputs count.
        assert_eq!(inline(&[vec![1.0], vec![2.0]], &[vec![], vec![]]).len(), 2);
    }

    #[test]
    #[should_panic(expected = "ragged rows")]
    fn inline_rejects_ragged_rows() {
        inline(&[vec![1.0], vec![1.0, 2.0]], &[vec![0.0], vec![1.0]]);
    }

    #[test]
    fn gather_u8_and_labels() {
        let data = Dataset {
            inputs: Inputs::U8 {
                data: (0..12).collect(),
                sample: vec![1, 2, 2],
            },
            targets: Targets::Classes {
                labels: vec![7, 8, 9],
                classes: 10,
            },
        };
        assert_eq!(data.len(), 3);
        let mut x = [0u8; 8];
        data.gather_u8(&[2, 0], &mut x).unwrap();
        assert_eq!(x, [8, 9, 10, 11, 0, 1, 2, 3]);
        let mut y = [0i32; 2];
        data.gather_labels(&[2, 0], &mut y).unwrap();
        assert_eq!(y, [9, 7]);
        // Nothing to gather is fine.
        data.gather_u8(&[], &mut []).unwrap();
    }

    #[test]
    fn gather_errors() {
        let data = xor();
        let message = |r: Result<(), DataError>| r.unwrap_err().to_string();
        assert_eq!(
            message(data.gather_u8(&[0], &mut [0; 2])),
            "gather_u8: the inputs are f32, not u8"
        );
        assert_eq!(
            message(data.gather_labels(&[0], &mut [0; 1])),
            "gather_labels: the targets are values, not classes"
        );
        assert_eq!(
            message(data.gather_f32(&[0, 1], &mut [0.0; 3])),
            "gather_f32: `out` holds 3 elements, but 2 samples of 2 need 4"
        );
        assert_eq!(
            message(data.gather_f32(&[0, 4], &mut [0.0; 4])),
            "gather_f32: index 4 (at position 1) is out of range for 4 samples"
        );
        assert!(data.gather_values(&[usize::MAX], &mut [0.0]).is_err());
    }

    #[test]
    fn debug_is_short() {
        let data = Dataset {
            inputs: Inputs::U8 {
                data: vec![0; 100_000],
                sample: vec![1, 10, 10],
            },
            targets: Targets::Classes {
                labels: vec![0; 1000],
                classes: 10,
            },
        };
        let text = format!("{data:?}");
        assert!(text.len() < 200, "{text}");
        assert!(text.contains("[1, 10, 10]"), "{text}");
    }
}
