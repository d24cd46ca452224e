//! Per-epoch figures: the `--json` line, the row of `metrics.csv` (one column per figure,
//! flushed every epoch and appended on resume, like Keras' `CSVLogger`), and the history the
//! plots are drawn from.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::files;
use nnc_check::Score;

/// Sums over the part of an epoch trained so far. Checkpoints save them, so that an epoch
/// interrupted and resumed reports exactly the figures of an uninterrupted one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochSums {
    /// Samples of this epoch already trained on (its position in the epoch's order).
    pub samples: usize,
    /// Steps taken in this epoch.
    pub steps: usize,
    /// The loss summed over the samples (each step's mean loss times its batch size).
    pub loss_sum: f64,
    /// Correct predictions.
    pub correct: f64,
    /// Per parameter tensor (in [`Backend::params`](crate::backend::Backend::params) order), the sum over steps of ‖g‖².
    pub grad_norm2_sums: Vec<f64>,
}

impl EpochSums {
    /// The mean training loss of the samples seen.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.samples.max(1) as f64
    }

    /// The training score of the samples seen: accuracy, or the mean absolute error (the
    /// backends' `correct` is then the summed absolute error).
    pub fn score(&self) -> f64 {
        self.correct / self.samples.max(1) as f64
    }
}

/// One epoch's figures.
#[derive(Clone, Debug)]
pub struct EpochReport {
    /// The epoch, from 1.
    pub epoch: usize,
    /// What `*_score` is: accuracy (keys `train_acc`, ...) or the mean absolute error
    /// (`train_mae`, ...).
    pub score: Score,
    /// The training loss, averaged over the epoch's steps.
    pub train_loss: f64,
    /// The training score over the epoch.
    pub train_score: f64,
    /// The validation loss, with a validation split.
    pub val_loss: Option<f64>,
    /// The validation score, with a validation split.
    pub val_score: Option<f64>,
    /// The test loss after the epoch.
    pub test_loss: f64,
    /// The test score after the epoch.
    pub test_score: f64,
    /// With a learning-rate schedule, the rate of the epoch's last step (column `lr`).
    pub lr: Option<f64>,
    /// Wall time of the epoch: training and evaluation.
    pub seconds: f64,
    /// Wall time of the training steps alone, what the peer frameworks report per epoch (of
    /// this process: a resumed epoch counts from the resume).
    pub train_seconds: f64,
    /// Per layer, the RMS over the epoch's steps of the gradient norm.
    pub grad_norms: Norms,
    /// Per layer, the weight norm at the end of the epoch.
    pub weight_norms: Norms,
}

/// Per-layer values, serialised as a JSON object in layer order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Norms(pub Vec<(String, f64)>);

impl Serialize for Norms {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl EpochReport {
    /// The scalar figures in column order: epoch, losses and scores, times.
    pub fn figures(&self) -> Vec<(String, f64)> {
        let key = self.score.key();
        let mut cols = vec![
            ("epoch".to_string(), self.epoch as f64),
            ("train_loss".into(), self.train_loss),
            (format!("train_{key}"), self.train_score),
        ];
        if let (Some(l), Some(a)) = (self.val_loss, self.val_score) {
            cols.push(("val_loss".into(), l));
            cols.push((format!("val_{key}"), a));
        }
        cols.push(("test_loss".into(), self.test_loss));
        cols.push((format!("test_{key}"), self.test_score));
        if let Some(lr) = self.lr {
            cols.push(("lr".into(), lr));
        }
        cols.push(("seconds".into(), self.seconds));
        cols.push(("train_seconds".into(), self.train_seconds));
        cols
    }

    /// The report as a metrics row.
    pub fn row(&self) -> Row {
        let mut cols = self.figures();
        for (layer, v) in &self.grad_norms.0 {
            cols.push((format!("grad_norm.{layer}"), *v));
        }
        for (layer, v) in &self.weight_norms.0 {
            cols.push((format!("weight_norm.{layer}"), *v));
        }
        Row(cols)
    }
}

impl Serialize for EpochReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let figures = self.figures();
        let mut map = s.serialize_map(Some(figures.len() + 2))?;
        for (k, v) in &figures {
            if k == "epoch" {
                map.serialize_entry(k, &self.epoch)?;
            } else {
                map.serialize_entry(k, v)?;
            }
        }
        map.serialize_entry("grad_norms", &self.grad_norms)?;
        map.serialize_entry("weight_norms", &self.weight_norms)?;
        map.end()
    }
}

/// A row of `metrics.csv`: named values in column order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row(pub Vec<(String, f64)>);

impl Row {
    /// The value of a column.
    pub fn get(&self, column: &str) -> Option<f64> {
        self.0.iter().find(|(k, _)| k == column).map(|&(_, v)| v)
    }

    /// The epoch number.
    pub fn epoch(&self) -> usize {
        self.get("epoch").unwrap_or(0.0) as usize
    }

    /// The column names, comma-separated.
    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The values, comma-separated, each in its shortest exact form.
    pub fn line(&self) -> String {
        self.0
            .iter()
            .map(|&(ref k, v)| {
                if k == "epoch" {
                    format!("{}", v as u64)
                } else {
                    // Shortest round-trip form: the file holds the exact value.
                    format!("{v}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `metrics.csv` in a run directory.
pub struct MetricsCsv {
    path: PathBuf,
    file: Option<File>,
    header: Option<String>,
}

impl MetricsCsv {
    /// A new log at `path`, replacing any earlier one when the first row is written.
    pub fn create(path: &Path) -> MetricsCsv {
        MetricsCsv {
            path: path.to_path_buf(),
            file: None,
            header: None,
        }
    }

    /// Continues the log at `path` after epoch `epoch`: rows of later epochs (written after
    /// the checkpoint the run resumes from) are dropped, since those epochs run again. Returns
    /// the log and the rows kept, for the plots.
    pub fn resume(path: &Path, epoch: usize) -> Result<(MetricsCsv, Vec<Row>), String> {
        let rows = match read(path) {
            Ok(rows) => rows,
            Err(Missing) => return Ok((MetricsCsv::create(path), Vec::new())),
            Err(Unreadable(e)) => return Err(e),
        };
        let rows: Vec<Row> = rows.into_iter().filter(|r| r.epoch() <= epoch).collect();
        let Some(first) = rows.first() else {
            return Ok((MetricsCsv::create(path), Vec::new()));
        };
        // Rows are written with round-trip formatting, so rewriting them gives the same text.
        let header = first.header();
        let mut body = format!("{header}\n");
        for r in &rows {
            body += &r.line();
            body.push('\n');
        }
        files::write_atomic(path, body.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot write `{}`: {}", path.display(), files::reason(&e)))?;
        Ok((
            MetricsCsv {
                path: path.to_path_buf(),
                file: Some(file),
                header: Some(header),
            },
            rows,
        ))
    }

    /// Appends a row and flushes it.
    pub fn append(&mut self, row: &Row) -> Result<(), String> {
        let shown = self.path.display().to_string();
        let io = |e: std::io::Error| format!("cannot write `{shown}`: {}", files::reason(&e));
        if self.file.is_none() {
            let mut f = File::create(&self.path).map_err(io)?;
            writeln!(f, "{}", row.header()).map_err(io)?;
            self.header = Some(row.header());
            self.file = Some(f);
        }
        if self.header.as_deref() != Some(row.header().as_str()) {
            return Err(format!(
                "`{shown}` has the columns {}, not the ones of this run ({})",
                self.header.as_deref().unwrap_or(""),
                row.header()
            ));
        }
        if let Some(f) = &mut self.file {
            writeln!(f, "{}", row.line()).map_err(io)?;
            f.flush().map_err(io)?;
        }
        Ok(())
    }
}

/// Why [`read`] found no rows.
pub enum ReadError {
    /// There is no such file.
    Missing,
    /// It could not be read or parsed; the message says why.
    Unreadable(String),
}
use ReadError::{Missing, Unreadable};

/// The rows of a `metrics.csv`. Lines that are not complete rows of numbers (cut short by a
/// crash) are skipped.
pub fn read(path: &Path) -> Result<Vec<Row>, ReadError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Missing),
        Err(e) => {
            return Err(Unreadable(format!(
                "cannot read `{}`: {}",
                path.display(),
                files::reason(&e)
            )));
        }
    };
    let mut lines = text.lines();
    let columns: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    Ok(lines
        .filter_map(|line| {
            let values: Option<Vec<f64>> = line.split(',').map(|v| v.parse().ok()).collect();
            let values = values.filter(|v| v.len() == columns.len())?;
            Some(Row(columns
                .iter()
                .map(|c| c.to_string())
                .zip(values)
                .collect()))
        })
        .collect())
}

impl EpochReport {
    /// The warning for a network that predicts class `class` (of `classes`) for every test
    /// sample, with its likely cause; `earlier` are the run's rows before this epoch.
    ///
    /// If its training loss is still a uniform guess's, ln(classes), and has been in every
    /// earlier epoch, and its first layer's gradient is under 1 % of its last layer's but not
    /// zero, it has not started to learn: its gradients vanish on the way back (LeNet-5 of
    /// 1998 at lr 0.01, a deep sigmoid network). Otherwise it collapsed, as a learning rate
    /// too high makes it (LeNet-5 at lr 0.1): it learned and lost it, or no gradient reaches
    /// its first layer at all — units dead on every sample, dead ReLUs, which then leave the
    /// loss at chance too. A collapsed run is never told to raise its learning rate.
    pub fn single_class_warning(&self, class: usize, classes: usize, earlier: &[Row]) -> String {
        let head = format!(
            "after epoch {} the model predicts class {class} for every test sample",
            self.epoch
        );
        let chance = (classes.max(2) as f64).ln();
        let at_chance = |loss: f64| loss >= 0.99 * chance;
        let norms = &self.grad_norms.0;
        let (first, ratio) = match (norms.first(), norms.last()) {
            (Some((name, first)), Some((_, last))) if norms.len() > 1 && *last > 0.0 => {
                (name.as_str(), first / last)
            }
            _ => ("", f64::NAN),
        };
        let learned_before = earlier
            .iter()
            .filter_map(|r| r.get("train_loss"))
            .any(|l| !at_chance(l));
        if ratio == 0.0 {
            format!(
                "{head}: training has collapsed, and no gradient reaches its first layer \
                 (grad_norm.{first} is 0 in metrics.csv: its units, or a later layer's, output \
                 nothing for every sample, as dead ReLUs do); lower the learning rate (e.g. by \
                 10x)"
            )
        } else if at_chance(self.train_loss) && ratio < 0.01 && !learned_before {
            format!(
                "{head}, and its training loss ({:.4}) is still a uniform guess's (ln {classes} = \
                 {chance:.4}): it has not started to learn. Its first layer's gradient is \
                 {ratio:.1e} of its last layer's (grad_norm.* in metrics.csv): the gradients \
                 vanish on the way back. A larger learning rate, momentum, ReLU activations or \
                 larger initial weights help",
                self.train_loss
            )
        } else {
            format!("{head}: training has collapsed; lower the learning rate (e.g. by 10x)")
        }
    }
}

/// `4.4 s`, `42 s`, `3 min 05 s`, `2 h 07 min`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    // Below ten seconds a tenth still says something (nnc trains LeNet-5 in 1.4 s).
    if seconds < 9.95 {
        return format!("{seconds:.1} s");
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(epoch: usize, loss: f64) -> EpochReport {
        EpochReport {
            epoch,
            score: Score::Accuracy,
            train_loss: loss,
            train_score: 0.5,
            val_loss: None,
            val_score: None,
            test_loss: loss * 2.0,
            test_score: 0.25,
            lr: None,
            seconds: 1.0,
            train_seconds: 0.5,
            grad_norms: Norms(vec![("h".into(), 0.1), ("out".into(), 0.2)]),
            weight_norms: Norms(vec![("h".into(), 3.0), ("out".into(), 4.0)]),
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(4.44), "4.4 s");
        assert_eq!(duration(12.4), "12 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(duration(7620.0), "2 h 07 min");
        assert_eq!(duration(f64::INFINITY), "?");
    }

    #[test]
    fn csv_rows_resume_and_drop_later_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut log = MetricsCsv::create(&path);
        for e in 1..=3 {
            log.append(&report(e, 1.0 / e as f64).row()).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(
            "epoch,train_loss,train_acc,test_loss,test_acc,seconds,train_seconds,grad_norm.h,grad_norm.out,\
             weight_norm.h,weight_norm.out\n1,1,0.5,2,0.25,1,0.5,0.1,0.2,3,4\n"
        ));
        // A crash left half a line behind; the checkpoint is from epoch 2.
        std::fs::write(&path, format!("{text}4,0.2")).unwrap();
        let (mut log, rows) = MetricsCsv::resume(&path, 2).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].get("train_loss"), Some(0.5));
        log.append(&report(3, 1.0 / 3.0).row()).unwrap();
        let again = std::fs::read_to_string(&path).unwrap();
        assert_eq!(again, text, "the resumed log is the uninterrupted one");
    }

    #[test]
    fn a_single_class_is_a_collapse_or_a_network_that_has_not_started() {
        let mut r = report(1, 2.3016);
        r.grad_norms = Norms(vec![("c1".into(), 2e-4), ("out".into(), 0.17)]);
        let w = r.single_class_warning(1, 10, &[]);
        assert!(
            w.contains("has not started to learn") && w.contains("1.2e-3"),
            "{w}"
        );
        // Learned, then collapsed: the loss below chance, or gradients of one size.
        r.train_loss = 1.95;
        assert!(
            r.single_class_warning(8, 10, &[])
                .contains("lower the learning rate")
        );
        r.train_loss = 2.3052;
        r.grad_norms = Norms(vec![("c1".into(), 0.67), ("out".into(), 0.76)]);
        assert!(
            r.single_class_warning(8, 10, &[])
                .contains("lower the learning rate")
        );
    }

    /// LeNet-5 at lr 0.1: epoch 1 learns, then collapses; in epoch 2 its ReLUs are dead, the
    /// loss is back at chance and the first layer gets no gradient. That is the collapse
    /// again, not a network to give a larger learning rate.
    #[test]
    fn a_collapsed_run_is_never_told_to_raise_its_learning_rate() {
        let raise = |w: &str| w.contains("larger learning rate") || w.contains("not started");
        let mut r = report(2, 2.3019);
        r.grad_norms = Norms(vec![("c1".into(), 0.0), ("out".into(), 0.02)]);
        let epoch1 = report(1, 1.4).row();
        for earlier in [vec![], vec![epoch1.clone()]] {
            let w = r.single_class_warning(3, 10, &earlier);
            assert!(!raise(&w) && w.contains("lower the learning rate"), "{w}");
            assert!(w.contains("grad_norm.c1 is 0"), "{w}");
        }
        // Vanishing gradients after an epoch that learned: a collapse too.
        r.grad_norms = Norms(vec![("c1".into(), 2e-4), ("out".into(), 0.17)]);
        let w = r.single_class_warning(3, 10, &[epoch1]);
        assert!(!raise(&w) && w.contains("lower the learning rate"), "{w}");
        // Epochs at chance before: still a network that has not started.
        let w = r.single_class_warning(3, 10, &[report(1, 2.3024).row()]);
        assert!(raise(&w), "{w}");
    }

    #[test]
    fn a_regression_reports_its_mean_absolute_error_under_its_own_keys() {
        let mut r = report(1, 0.5);
        r.score = Score::Mae;
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.starts_with(
                r#"{"epoch":1,"train_loss":0.5,"train_mae":0.5,"test_loss":1.0,"test_mae":0.25,"#
            ),
            "{json}"
        );
        let names: Vec<String> = r.row().0.into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names[..5],
            ["epoch", "train_loss", "train_mae", "test_loss", "test_mae"]
        );
    }

    #[test]
    fn json_has_the_documented_keys_in_order() {
        let json = serde_json::to_string(&report(1, 0.5)).unwrap();
        assert_eq!(
            json,
            r#"{"epoch":1,"train_loss":0.5,"train_acc":0.5,"test_loss":1.0,"test_acc":0.25,"seconds":1.0,"train_seconds":0.5,"grad_norms":{"h":0.1,"out":0.2},"weight_norms":{"h":3.0,"out":4.0}}"#
        );
    }
}
