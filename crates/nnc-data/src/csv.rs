//! CSV tables of numbers: a header row of column names, then rows of comma-separated numbers.
//!
//! Deliberately small, and written by hand: no quoting (a quote is an error that says so), no
//! other separators. Tolerated: a UTF-8 byte-order mark, CRLF line ends, spaces around cells,
//! and blank lines at the end of the file. A blank line between rows is an error, since it
//! usually means a file was concatenated or cut.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::{DataError, Dataset, Inputs, Targets};

/// The columns of a CSV file, from its header line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvHeader {
    /// Every column's name, in the file's order.
    pub columns: Vec<String>,
    /// The feature columns (those not named as targets), in the file's order.
    pub features: Vec<String>,
}

/// The largest CSV file this crate reads: 1 GiB of text (about 100 million numbers).
pub const MAX_CSV_BYTES: u64 = 1 << 30;

/// A CSV file with a header row; `target` names the target columns, every other column is a
/// feature.
///
/// All cells must parse as finite numbers (as f32). Gives [`Inputs::F32`] with sample
/// `[features]`, the features in the order of the header, and
/// [`Targets::Values`] with `width: target.len()`, the targets in the order of `target`.
pub fn csv(path: &Path, target: &[String]) -> Result<Dataset, DataError> {
    let text = read(path)?;
    parse(&text, target, None).map_err(|detail| csv_error(path, detail))
}

/// A CSV file whose column `target` holds class labels, for a classifier of `classes` classes:
/// like [`csv()`], but gives [`Targets::Classes`]. Every label must be a whole number from 0
/// to `classes - 1` (see [`class_label`]); the error names the line and column of the first
/// that is not.
pub fn csv_classes(path: &Path, target: &str, classes: usize) -> Result<Dataset, DataError> {
    let text = read(path)?;
    parse(&text, &[target.to_string()], Some(classes)).map_err(|detail| csv_error(path, detail))
}

/// A CSV cell as the class label of a classifier of `classes` classes: a whole number from 0
/// to `classes - 1` (`2`, `2.0` and `+2` are class 2). The error says why not, after the
/// place of the cell.
pub fn class_label(cell: &str, classes: usize) -> Result<i32, String> {
    let value: f64 = cell
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not a number", show(cell.trim())))?;
    let last = classes.saturating_sub(1);
    if value.fract() != 0.0 || !value.is_finite() {
        return Err(format!(
            "`{}` is not a class label: labels are whole numbers from 0 to {last}",
            show(cell.trim())
        ));
    }
    match i32::try_from(value as i64) {
        Ok(label) if value >= 0.0 && (label as usize) < classes => Ok(label),
        _ => Err(format!(
            "label {value} is out of range for {classes} classes (0 to {last})"
        )),
    }
}

/// Reads the header line of a CSV file and nothing more: what [`csv()`] checks of it (names,
/// the target columns, at least one feature), for checking a model against its data without
/// reading the data.
pub fn csv_header(path: &Path, target: &[String]) -> Result<CsvHeader, DataError> {
    let mut lines = Lines::open(path)?;
    let header = lines.next_line()?.unwrap_or_default();
    let header = header.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&header);
    if header.iter().all(u8::is_ascii_whitespace) && lines.next_line()?.is_none() {
        return Err(csv_error(
            path,
            "empty file: expected a header row of column names".into(),
        ));
    }
    let (names, role) = columns(header, target).map_err(|detail| csv_error(path, detail))?;
    Ok(CsvHeader {
        columns: names.iter().map(|n| n.to_string()).collect(),
        features: names
            .iter()
            .zip(&role)
            .filter(|(_, r)| r.is_none())
            .map(|(n, _)| n.to_string())
            .collect(),
    })
}

/// Checks the class labels of column `target` line by line, holding one line at a time: the
/// first that [`class_label`] refuses is the error, naming its line and column. Only that
/// column is read (a malformed other cell, a ragged row, is [`csv_classes`]' to report).
pub fn csv_check_labels(path: &Path, target: &str, classes: usize) -> Result<(), DataError> {
    let mut lines = Lines::open(path)?;
    let header = lines.next_line()?.unwrap_or_default();
    let header = header.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&header);
    let (names, _) =
        columns(header, &[target.to_string()]).map_err(|detail| csv_error(path, detail))?;
    let Some(c) = names.iter().position(|n| *n == target) else {
        return Ok(());
    };
    let name = show(names[c]);
    while let Some(line) = lines.next_line()? {
        let n = lines.n;
        let Some(cell) = line.split(|&b| b == b',').nth(c) else {
            continue;
        };
        let Ok(cell) = std::str::from_utf8(cell) else {
            continue;
        };
        if cell.trim().is_empty() || cell.contains('"') {
            continue;
        }
        class_label(cell, classes).map_err(|why| {
            csv_error(
                path,
                format!("line {n}, column {} (`{name}`): {why}", c + 1),
            )
        })?;
    }
    Ok(())
}

/// The longest line [`csv_header`] and [`csv_check_labels`] read (a header of over a million
/// columns): what they hold is one line, not a file's worth of a line (`/dev/zero`).
pub const MAX_CSV_LINE_BYTES: u64 = 16 << 20;

/// A CSV file's lines, read one at a time, without their line ends; at most
/// [`MAX_CSV_BYTES`] in all, as [`csv()`] reads, and [`MAX_CSV_LINE_BYTES`] a line.
struct Lines<'a> {
    path: &'a Path,
    reader: BufReader<std::io::Take<File>>,
    /// The number of the last line read.
    n: usize,
}

impl<'a> Lines<'a> {
    fn open(path: &'a Path) -> Result<Lines<'a>, DataError> {
        let file = File::open(path).map_err(|source| DataError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Lines {
            path,
            reader: BufReader::new(file.take(MAX_CSV_BYTES)),
            n: 0,
        })
    }

    fn next_line(&mut self) -> Result<Option<Vec<u8>>, DataError> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_CSV_LINE_BYTES + 1)
            .read_until(b'\n', &mut line)
            .map_err(|source| DataError::Io {
                path: self.path.to_owned(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        self.n += 1;
        if line.len() as u64 > MAX_CSV_LINE_BYTES && line.last() != Some(&b'\n') {
            return Err(csv_error(
                self.path,
                format!(
                    "line {} is longer than {MAX_CSV_LINE_BYTES} bytes: not a table of numbers?",
                    self.n
                ),
            ));
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(line))
    }
}

fn csv_error(path: &Path, detail: String) -> DataError {
    DataError::Csv {
        path: path.to_owned(),
        detail,
    }
}

/// The file's bytes, at most [`MAX_CSV_BYTES`] of them.
fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    let io_error = |source| DataError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let too_large = |len: u64| {
        csv_error(
            path,
            format!("file too large: {len} bytes, over the limit of {MAX_CSV_BYTES} bytes"),
        )
    };
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > MAX_CSV_BYTES
    {
        return Err(too_large(meta.len()));
    }
    let mut text = Vec::new();
    // The limit holds even if the length was unknown (a pipe) or the file grew meanwhile.
    file.take(MAX_CSV_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(io_error)?;
    if text.len() as u64 > MAX_CSV_BYTES {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}

/// Parses the whole file; the error is the message after the file name. With `classes`, the
/// one target column holds class labels.
fn parse(text: &[u8], target: &[String], classes: Option<usize>) -> Result<Dataset, String> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err("empty file: expected a header row of column names".into());
    }
    // Lines numbered from 1, without their line end; the split after a final '\n' yields an
    // empty last line, which is a tolerated trailing blank.
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .zip(1..);

    let (header, _) = lines.next().unwrap_or((&[], 1));
    let (names, role) = columns(header, target)?;
    let features = names.len() - target.len();

    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    let mut labels = Vec::new();
    let mut rows = 0usize;
    let mut blank = None;
    for (line, n) in lines {
        if line.iter().all(u8::is_ascii_whitespace) {
            blank.get_or_insert(n);
            continue;
        }
        if let Some(b) = blank {
            return Err(format!(
                "line {b} is empty: blank lines are allowed only at the end of the file"
            ));
        }
        let line = line_str(line, n)?;
        // Ragged rows first: a missing cell explains the cells after it.
        let cells = line.bytes().filter(|&b| b == b',').count() + 1;
        if cells != names.len() {
            let plural = if cells == 1 { "" } else { "s" };
            return Err(format!(
                "line {n} has {cells} cell{plural}, the header has {}",
                names.len()
            ));
        }
        let start = targets.len();
        if classes.is_none() {
            targets.resize(start + target.len(), 0.0);
        }
        for ((c, cell), &role) in line.split(',').enumerate().zip(&role) {
            let cell = cell.trim();
            let at = || format!("line {n}, column {} (`{}`)", c + 1, show(names[c]));
            if cell.is_empty() {
                return Err(format!("{}: empty cell", at()));
            }
            if let (Some(k), Some(_)) = (classes, role) {
                let label = class_label(cell, k).map_err(|why| format!("{}: {why}", at()))?;
                labels.push(label);
                continue;
            }
            let value: f32 = cell
                .parse()
                .map_err(|_| format!("{}: `{}` is not a number", at(), show(cell)))?;
            if !value.is_finite() {
                return Err(format!(
                    "{}: `{}` is not a finite f32 number",
                    at(),
                    show(cell)
                ));
            }
            match role {
                Some(k) => targets[start + k] = value,
                None => inputs.push(value),
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err("no data rows after the header".into());
    }
    Ok(Dataset {
        inputs: Inputs::F32 {
            data: inputs,
            sample: vec![features],
        },
        targets: match classes {
            Some(classes) => Targets::Classes { labels, classes },
            None => Targets::Values {
                data: targets,
                width: target.len(),
            },
        },
    })
}

/// The header line's column names and each column's role: a feature (`None`, in header
/// order) or the k-th target (in `target` order).
fn columns<'a>(
    header: &'a [u8],
    target: &[String],
) -> Result<(Vec<&'a str>, Vec<Option<usize>>), String> {
    let header = line_str(header, 1)?;
    if header.trim().is_empty() {
        return Err("line 1 is empty: expected a header row of column names".into());
    }
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    for (c, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(format!("line 1: column {} has no name", c + 1));
        }
        if let Some(first) = names[..c].iter().position(|n| n == name) {
            return Err(format!(
                "line 1: column `{}` appears twice (columns {} and {})",
                show(name),
                first + 1,
                c + 1
            ));
        }
    }
    let listed = || names.iter().map(|n| show(n)).collect::<Vec<_>>().join(", ");

    // Each column's role: a feature (in header order) or the k-th target (in `target` order).
    if target.is_empty() {
        return Err(format!(
            "no target column given; the columns are {}",
            listed()
        ));
    }
    let mut role: Vec<Option<usize>> = vec![None; names.len()];
    for (k, t) in target.iter().enumerate() {
        let Some(c) = names.iter().position(|n| n == t) else {
            return Err(format!(
                "no column `{}`; the columns are {}",
                show(t),
                listed()
            ));
        };
        if role[c].is_some() {
            return Err(format!("target column `{}` is listed twice", show(t)));
        }
        role[c] = Some(k);
    }
    let features = names.len() - target.len();
    if features == 0 {
        return Err(format!(
            "no feature columns: every column ({}) is a target",
            listed()
        ));
    }
    Ok((names, role))
}

/// A line as text: UTF-8, without quotes.
fn line_str(line: &[u8], n: usize) -> Result<&str, String> {
    let line = std::str::from_utf8(line).map_err(|_| format!("line {n} is not valid UTF-8"))?;
    if line.contains('"') {
        return Err(format!(
            "line {n}: quoted cells are not supported; cells must be plain numbers (or, in the \
             header, names) separated by commas"
        ));
    }
    Ok(line)
}

/// A cell or name for a message: at most 40 characters, control characters escaped, so a
/// hostile file cannot flood or garble a terminal.
fn show(text: &str) -> String {
    let mut out: String = text.chars().take(40).flat_map(char::escape_debug).collect();
    if text.chars().nth(40).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str, target: &[&str]) -> Result<Dataset, String> {
        let target: Vec<String> = target.iter().map(|s| s.to_string()).collect();
        parse(text.as_bytes(), &target, None)
    }

    #[test]
    fn features_in_header_order_targets_in_given_order() {
        let data = parse_str("a, t2 ,b,t1\n1,2,3,4\n5,6,7,8\n", &["t1", "t2"]).unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data.sample_shape(), [2]);
        let Inputs::F32 { data: x, .. } = &data.inputs else {
            panic!("f32 inputs")
        };
        assert_eq!(x, &[1.0, 3.0, 5.0, 7.0]);
        let Targets::Values { data: y, width } = &data.targets else {
            panic!("values")
        };
        assert_eq!((y.as_slice(), *width), (&[4.0, 2.0, 8.0, 6.0][..], 2));
    }

    #[test]
    fn tolerates_bom_crlf_spaces_and_trailing_blank_lines() {
        let text = "\u{feff}x1 , x2,y\r\n -1.5 ,\t2e-3, +7 \r\n.5,3.,-0\r\n\r\n\n";
        let data = parse_str(text, &["y"]).unwrap();
        assert_eq!(data.len(), 2);
        let Inputs::F32 { data: x, .. } = &data.inputs else {
            panic!("f32 inputs")
        };
        assert_eq!(x, &[-1.5, 0.002, 0.5, 3.0]);
        // No trailing newline at all.
        assert_eq!(parse_str("x,y\n1,2", &["y"]).unwrap().len(), 1);
    }

    #[test]
    fn errors_name_the_place() {
        let err = |text: &str, target: &[&str]| parse_str(text, target).unwrap_err();
        assert_eq!(
            err("", &["y"]),
            "empty file: expected a header row of column names"
        );
        assert_eq!(
            err(" \r\n\n", &["y"]),
            "empty file: expected a header row of column names"
        );
        assert_eq!(err("x,y\n", &["y"]), "no data rows after the header");
        assert_eq!(
            err("\nx,y\n", &["y"]),
            "line 1 is empty: expected a header row of column names"
        );
        assert_eq!(
            err("x,y\n1,2\n3\n", &["y"]),
            "line 3 has 1 cell, the header has 2"
        );
        assert_eq!(
            err("x,y\n1,2,\n", &["y"]),
            "line 2 has 3 cells, the header has 2"
        );
        assert_eq!(
            err("x,y\n1,abc\n", &["y"]),
            "line 2, column 2 (`y`): `abc` is not a number"
        );
        assert_eq!(
            err("x,y\n1, \n", &["y"]),
            "line 2, column 2 (`y`): empty cell"
        );
        assert_eq!(
            err("x,y\nNaN,1\n", &["y"]),
            "line 2, column 1 (`x`): `NaN` is not a finite f32 number"
        );
        assert!(err("x,y\n1e39,1\n", &["y"]).contains("`1e39` is not a finite f32 number"));
        assert_eq!(
            err("x,y\n1,2\n", &["z"]),
            "no column `z`; the columns are x, y"
        );
        assert_eq!(
            err("x,y\n1,2\n", &[]),
            "no target column given; the columns are x, y"
        );
        assert_eq!(
            err("x,y\n1,2\n", &["y", "y"]),
            "target column `y` is listed twice"
        );
        assert_eq!(
            err("x,y\n1,2\n", &["x", "y"]),
            "no feature columns: every column (x, y) is a target"
        );
        assert_eq!(err("x,,y\n", &["y"]), "line 1: column 2 has no name");
        assert_eq!(
            err("x,y,x\n", &["y"]),
            "line 1: column `x` appears twice (columns 1 and 3)"
        );
        assert!(
            err("\"x\",y\n1,2\n", &["y"]).starts_with("line 1: quoted cells are not supported")
        );
        assert!(err("x,y\n\"1\",2\n", &["y"]).starts_with("line 2: quoted cells"));
        assert_eq!(
            err("x,y\n1,2\n\n3,4\n", &["y"]),
            "line 3 is empty: blank lines are allowed only at the end of the file"
        );
        assert_eq!(
            parse(b"x,y\n1,\xff\n", &["y".to_string()], None).unwrap_err(),
            "line 2 is not valid UTF-8"
        );
    }

    #[test]
    fn class_labels_are_whole_numbers_below_the_class_count() {
        let classes = |text: &str, k: usize| parse(text.as_bytes(), &["c".to_string()], Some(k));
        let data = classes("x,c\n1,2\n2,0.0\n3,+1\n4,-0\n", 3).unwrap();
        assert_eq!(
            data.targets,
            Targets::Classes {
                labels: vec![2, 0, 1, 0],
                classes: 3
            }
        );
        assert_eq!(data.sample_shape(), [1]);
        let err = |text: &str, k: usize| classes(text, k).unwrap_err();
        assert_eq!(
            err("x,c\n1,0\n2,3\n", 3),
            "line 3, column 2 (`c`): label 3 is out of range for 3 classes (0 to 2)"
        );
        assert_eq!(
            err("c,x\n0,1\n1,2\n0.37,3\n", 2),
            "line 4, column 1 (`c`): `0.37` is not a class label: labels are whole numbers from \
             0 to 1"
        );
        assert_eq!(
            err("x,c\n1,-1\n", 3),
            "line 2, column 2 (`c`): label -1 is out of range for 3 classes (0 to 2)"
        );
        assert!(
            err("x,c\n1,1e30\n", 3)
                .contains("label 1000000000000000000000000000000 is out of range")
        );
        assert_eq!(
            err("x,c\n1,inf\n", 3),
            "line 2, column 2 (`c`): `inf` is not a class label: labels are whole numbers from 0 \
             to 2"
        );
        assert_eq!(
            err("x,c\n1,two\n", 3),
            "line 2, column 2 (`c`): `two` is not a number"
        );
    }

    #[test]
    fn header_and_labels_are_read_without_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let target = |t: &str| vec![t.to_string()];
        // Only the label column is read: the bad cell in column 1 is not this check's.
        std::fs::write(&path, "\u{feff}a, label ,b\r\nx,0,1\n2,1,3\n\n4, 2.5 ,5\n").unwrap();
        let header = csv_header(&path, &target("label")).unwrap();
        assert_eq!(header.columns, ["a", "label", "b"]);
        assert_eq!(header.features, ["a", "b"]);
        let err = csv_check_labels(&path, "label", 3).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "t.csv: line 5, column 2 (`label`): `2.5` is not a class label: labels are \
                 whole numbers from 0 to 2"
            ),
            "{err}"
        );
        std::fs::write(&path, "a,label\n1,0\n2,2\n").unwrap();
        csv_check_labels(&path, "label", 3).unwrap();
        let err = csv_check_labels(&path, "label", 2).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "line 3, column 2 (`label`): label 2 is out of range for 2 classes (0 to 1)"
            ),
            "{err}"
        );
        let err = csv_header(&path, &target("y")).unwrap_err().to_string();
        assert!(
            err.ends_with("t.csv: no column `y`; the columns are a, label"),
            "{err}"
        );
        std::fs::write(&path, "").unwrap();
        let err = csv_header(&path, &target("y")).unwrap_err().to_string();
        assert!(
            err.ends_with("empty file: expected a header row of column names"),
            "{err}"
        );
        let long = vec![b'a'; MAX_CSV_LINE_BYTES as usize + 1];
        std::fs::write(&path, long).unwrap();
        let err = csv_header(&path, &target("y")).unwrap_err().to_string();
        assert!(
            err.ends_with("line 1 is longer than 16777216 bytes: not a table of numbers?"),
            "{err}"
        );
        let err = csv_header(&dir.path().join("nope.csv"), &target("y")).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err}");
    }

    #[test]
    fn long_or_hostile_cells_are_cut_in_messages() {
        let long = "9".repeat(10_000) + "x";
        let err = parse_str(&format!("x,y\n{long},1\n"), &["y"]).unwrap_err();
        assert!(err.len() < 120, "{err}");
        let err = parse_str("x,y\n\u{1b}[2J,1\n", &["y"]).unwrap_err();
        assert!(err.contains("`\\u{1b}[2J`"), "{err}");
    }

    #[test]
    fn reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        assert_eq!(csv(&path, &["b".to_string()]).unwrap().len(), 1);
        std::fs::write(&path, "a,b\n1,x\n").unwrap();
        let err = csv(&path, &["b".to_string()]).unwrap_err().to_string();
        assert!(
            err.ends_with("t.csv: line 2, column 2 (`b`): `x` is not a number"),
            "{err}"
        );
        let err = csv(&dir.path().join("nope.csv"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.csv: cannot read"), "{err}");
    }
}
