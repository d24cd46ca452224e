//! Checkpoints in safetensors, the format Python's `safetensors`, PyTorch and JAX read.
//!
//! Tensors (all f32, little-endian):
//! - the parameters under their names: `c1.weight`, `c1.bias`, ...;
//! - the optimizer state under its names: `c1.weight.velocity`, `step_count`, ...;
//! - with early stopping, the best weights so far under `best/c1.weight`, ... (a `/` never
//!   occurs in a layer name).
//!
//! Metadata (strings, as the format requires): `format` (`nnc-checkpoint`), `nnc_version`,
//! `model`, `source_file`, `source_sha256` (of the `.nn` text), `backend`, `params` and
//! `states` (the tensor names in the step's order), `seed`, `batch`, `epoch` (completed
//! epochs), `step` (global steps), the sums of the epoch in progress (`epoch_samples`,
//! `epoch_steps`, `epoch_loss_sum`, `epoch_correct`, `epoch_grad_norm2_sums`,
//! `epoch_seconds`), `last_finite_loss`, and for early stopping `best_epoch`,
//! `best_val_loss`, `bad_epochs`. There is no generator state to save: every random choice
//! is a function of `seed`, `epoch`, `epoch_samples` and `step` (see [`crate::trainer`]).
//! Numbers are written with Rust's shortest round-trip formatting, so a resumed run continues
//! from bit-identical sums. On load, the counters are bounded (`MAX_COUNT`, `MAX_BATCH`) and
//! checked against each other, so that a damaged or crafted file is refused naming the field
//! instead of overflowing the run that adds to them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::backend::{Backend, NamedTensor};
use crate::error::Error;
use crate::files;
use crate::metrics::EpochSums;
use crate::project::Project;

/// The checkpoint a run writes and `--resume` reads, in the run directory.
pub const FILE: &str = "checkpoint.safetensors";
/// The best weights of an early-stopped run, in the run directory.
pub const BEST_FILE: &str = "best.safetensors";
const FORMAT: &str = "nnc-checkpoint";
const BEST_PREFIX: &str = "best/";
/// Checkpoints of the models nnc trains are megabytes; this only stops a wrong path (a disk
/// image) from being read into memory.
const MAX_BYTES: u64 = 4 << 30;
/// The largest counter (`step`, `epoch`, `epoch_samples`, ...) a checkpoint may hold: 2^53,
/// exact in the f64 the learning-rate schedule computes in, and so far below the integers'
/// range that a run adding to it never overflows. Real runs stay far below it (2^53 steps at a
/// microsecond each take 285 years); a larger value is a damaged or crafted file.
const MAX_COUNT: u64 = 1 << 53;
/// The largest batch the command line and the checker accept.
const MAX_BATCH: u64 = 1 << 24;

/// Early stopping's memory: the best validation loss and when it was reached.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Best {
    /// The epoch of the best validation loss.
    pub epoch: usize,
    /// That loss.
    pub val_loss: f64,
    /// Epochs since the last improvement.
    pub bad_epochs: usize,
}

/// Everything about a checkpoint but its tensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    /// The model's name.
    pub model: String,
    /// The `.nn` file it was trained from, as given on the command line.
    pub source_file: String,
    /// The SHA-256 of that file's text ([`crate::Project::source_hash`]).
    pub source_sha256: String,
    /// The SHA-256 of the model's meaning ([`crate::Project::meaning_hash`]); absent in
    /// checkpoints written before it was recorded.
    pub model_sha256: Option<String>,
    /// The nnc version that wrote the checkpoint.
    pub nnc_version: String,
    /// The backend that trained it (`jit`, `interp`).
    pub backend: String,
    /// The seed and batch size of the session that wrote the checkpoint, which a resume
    /// continues with unless told otherwise (a resumed run may have changed them).
    pub seed: u64,
    /// See `seed`.
    pub batch: usize,
    /// The epochs the run was to take, which a learning-rate schedule spans (absent in
    /// checkpoints of nnc before 0.1 had schedules).
    pub epochs: Option<usize>,
    /// Completed epochs.
    pub epoch: usize,
    /// Training steps since the run started.
    pub step: u64,
    /// The epoch after `epoch`, as far as it went (empty at an epoch's end).
    pub partial: EpochSums,
    /// Seconds spent in the partial epoch.
    pub partial_seconds: f64,
    /// The mean loss of the last step whose loss was finite.
    pub last_finite_loss: Option<f64>,
    /// Early stopping's best epoch so far.
    pub best: Option<Best>,
}

/// A training state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// Everything but the tensors.
    pub meta: Meta,
    /// The parameters, in the backend's order.
    pub params: Vec<NamedTensor>,
    /// The optimizer's state (moments, velocities), in the backend's order.
    pub states: Vec<NamedTensor>,
    /// The best parameters so far, when early stopping (else empty).
    pub best: Vec<NamedTensor>,
}

impl Checkpoint {
    /// The safetensors bytes.
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let m = &self.meta;
        let names = |ts: &[NamedTensor]| {
            ts.iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut meta: HashMap<String, String> = HashMap::new();
        let mut put = |k: &str, v: String| {
            meta.insert(k.to_string(), v);
        };
        put("format", FORMAT.into());
        put("nnc_version", m.nnc_version.clone());
        put("model", m.model.clone());
        put("source_file", m.source_file.clone());
        put("source_sha256", m.source_sha256.clone());
        if let Some(h) = &m.model_sha256 {
            put("model_sha256", h.clone());
        }
        put("backend", m.backend.clone());
        put("params", names(&self.params));
        put("states", names(&self.states));
        put("seed", m.seed.to_string());
        put("batch", m.batch.to_string());
        if let Some(e) = m.epochs {
            put("epochs", e.to_string());
        }
        put("epoch", m.epoch.to_string());
        put("step", m.step.to_string());
        put("epoch_samples", m.partial.samples.to_string());
        put("epoch_steps", m.partial.steps.to_string());
        put("epoch_loss_sum", m.partial.loss_sum.to_string());
        put("epoch_correct", m.partial.correct.to_string());
        put(
            "epoch_grad_norm2_sums",
            m.partial
                .grad_norm2_sums
                .iter()
                .map(f64::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        );
        put("epoch_seconds", m.partial_seconds.to_string());
        if let Some(l) = m.last_finite_loss {
            put("last_finite_loss", l.to_string());
        }
        if let Some(b) = m.best {
            put("best_epoch", b.epoch.to_string());
            put("best_val_loss", b.val_loss.to_string());
            put("bad_epochs", b.bad_epochs.to_string());
        }
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .params
            .iter()
            .chain(&self.states)
            .map(|t| (t.name.clone(), t))
            .chain(
                self.best
                    .iter()
                    .map(|t| (format!("{BEST_PREFIX}{}", t.name), t)),
            )
            .map(|(name, t)| {
                let data = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name, data, t.shape.clone())
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, data, shape)| {
                TensorView::new(Dtype::F32, shape.clone(), data)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| format!("tensor `{name}`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
    }

    /// Writes the checkpoint atomically (a temporary file, then a rename).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let bytes = self.to_bytes().map_err(Error::Checkpoint)?;
        files::write_atomic(path, &bytes).map_err(Error::Io)
    }

    /// Parses safetensors bytes written by [`Checkpoint::to_bytes`]; `shown` names the file in
    /// messages.
    pub(crate) fn from_bytes(bytes: &[u8], shown: &str) -> Result<Checkpoint, String> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| format!("`{shown}` is not a safetensors file: {e}"))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| format!("`{shown}` is not a safetensors file: {e}"))?;
        let empty = HashMap::new();
        let meta = header.metadata().as_ref().unwrap_or(&empty);
        let get = |k: &str| {
            meta.get(k).map(String::as_str).ok_or_else(|| {
                format!("`{shown}` is not an nnc checkpoint: its metadata has no `{k}`")
            })
        };
        if get("format")? != FORMAT {
            return Err(format!(
                "`{shown}` is not an nnc checkpoint: its format is `{}`",
                get("format")?
            ));
        }
        fn parse<T: std::str::FromStr>(shown: &str, k: &str, v: &str) -> Result<T, String> {
            v.trim().parse().map_err(|_| {
                format!("`{shown}` is a damaged checkpoint: metadata `{k}` is `{v}`, not a number")
            })
        }
        let num = |k: &str| -> Result<f64, String> { parse(shown, k, get(k)?) };
        let int = |k: &str| -> Result<u64, String> { parse(shown, k, get(k)?) };
        let damaged = |what: String| format!("`{shown}` is a damaged checkpoint: {what}");
        // Counters a run adds to: bounded here, so that no arithmetic on them overflows.
        let count = |k: &str| -> Result<usize, String> {
            let v = int(k)?;
            if v > MAX_COUNT {
                return Err(damaged(format!(
                    "metadata `{k}` is {v}, above any count a run reaches ({MAX_COUNT})"
                )));
            }
            usize::try_from(v).map_err(|_| damaged(format!("metadata `{k}` is {v}, too large")))
        };
        let opt = |k: &str| -> Result<Option<f64>, String> {
            meta.get(k).map(|v| parse(shown, k, v)).transpose()
        };
        let tensor = |name: &str, key: &str| -> Result<NamedTensor, String> {
            let view = st.tensor(name).map_err(|_| {
                format!("`{shown}` is a damaged checkpoint: `{key}` lists `{name}`, which it does not hold")
            })?;
            if view.dtype() != Dtype::F32 {
                return Err(format!(
                    "`{shown}`: tensor `{name}` is {:?}; nnc checkpoints hold F32",
                    view.dtype()
                ));
            }
            Ok(NamedTensor {
                name: name.to_string(),
                shape: view.shape().to_vec(),
                data: view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            })
        };
        let list = |k: &str| -> Result<Vec<NamedTensor>, String> {
            get(k)?
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|n| tensor(n, k))
                .collect()
        };
        let params = list("params")?;
        let states = list("states")?;
        let best_epoch = meta.get("best_epoch");
        let best = match best_epoch {
            Some(_) => params
                .iter()
                .map(|p| {
                    tensor(&format!("{BEST_PREFIX}{}", p.name), "best_epoch").map(|t| NamedTensor {
                        name: p.name.clone(),
                        ..t
                    })
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let grad_sums = get("epoch_grad_norm2_sums")?
            .split_whitespace()
            .map(|v| parse(shown, "epoch_grad_norm2_sums", v))
            .collect::<Result<_, _>>()?;
        let batch = int("batch")?;
        if !(1..=MAX_BATCH).contains(&batch) {
            return Err(damaged(format!(
                "metadata `batch` is {batch}, not a batch size (1 to {MAX_BATCH})"
            )));
        }
        let batch = batch as usize;
        let epoch = count("epoch")?;
        let step = count("step")?;
        // A count that is part of another: the steps of the epoch in progress are among the
        // run's, and the best epoch and the epochs since it among the completed ones.
        let at_most = |k: &str, whole: &str, limit: usize| -> Result<usize, String> {
            let v = count(k)?;
            if v > limit {
                return Err(damaged(format!(
                    "metadata `{k}` is {v}, more than `{whole}` ({limit})"
                )));
            }
            Ok(v)
        };
        let epoch_steps = at_most("epoch_steps", "step", step)?;
        let partial_seconds = num("epoch_seconds")?;
        if !(partial_seconds.is_finite() && partial_seconds >= 0.0) {
            return Err(damaged(format!(
                "metadata `epoch_seconds` is {partial_seconds}, not a duration"
            )));
        }
        Ok(Checkpoint {
            meta: Meta {
                model: get("model")?.to_string(),
                source_file: get("source_file")?.to_string(),
                source_sha256: get("source_sha256")?.to_string(),
                model_sha256: meta.get("model_sha256").cloned(),
                nnc_version: get("nnc_version")?.to_string(),
                backend: get("backend")?.to_string(),
                seed: int("seed")?,
                batch,
                epochs: meta
                    .get("epochs")
                    .map(|v| parse::<usize>(shown, "epochs", v))
                    .transpose()?,
                epoch,
                step: step as u64,
                partial: EpochSums {
                    samples: count("epoch_samples")?,
                    steps: epoch_steps,
                    loss_sum: num("epoch_loss_sum")?,
                    correct: num("epoch_correct")?,
                    grad_norm2_sums: grad_sums,
                },
                partial_seconds,
                last_finite_loss: opt("last_finite_loss")?,
                best: match best_epoch {
                    Some(_) => Some(Best {
                        epoch: at_most("best_epoch", "epoch", epoch)?,
                        val_loss: num("best_val_loss")?,
                        bad_epochs: at_most("bad_epochs", "epoch", epoch)?,
                    }),
                    None => None,
                },
            },
            params,
            states,
            best,
        })
    }

    /// Reads a checkpoint file: [`Error::Io`] when it cannot be read, [`Error::Checkpoint`]
    /// when it is not a well-formed checkpoint.
    pub fn load(path: &Path) -> Result<Checkpoint, Error> {
        let bytes = files::read_limited(path, MAX_BYTES, "a checkpoint").map_err(Error::Io)?;
        Checkpoint::from_bytes(&bytes, &path.display().to_string()).map_err(Error::Checkpoint)
    }

    /// Refuses a checkpoint made for another model: another model name, other parameter
    /// names or shapes than `expected` (the backend's), or another source text.
    pub(crate) fn check_fits(
        &self,
        path: &Path,
        project: &Project,
        expected: &[NamedTensor],
    ) -> Result<(), String> {
        let shown = path.display();
        let file = project.path.display();
        let m = &self.meta;
        if m.model != project.model.name {
            return Err(format!(
                "`{shown}` holds model `{}`, not `{}` of `{file}`",
                m.model, project.model.name
            ));
        }
        for want in expected {
            match self.params.iter().find(|p| p.name == want.name) {
                None => {
                    return Err(format!(
                        "`{shown}` does not fit `{file}`: it has no `{}` (the model has {})",
                        want.name,
                        names(expected)
                    ));
                }
                Some(p) if p.shape != want.shape => {
                    return Err(format!(
                        "`{shown}` does not fit `{file}`: `{}` is {:?} in the checkpoint but \
                         {:?} in the model",
                        want.name, p.shape, want.shape
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = self
            .params
            .iter()
            .find(|p| !expected.iter().any(|e| e.name == p.name))
        {
            return Err(format!(
                "`{shown}` does not fit `{file}`: it has `{}`, which the model has not (the \
                 model has {})",
                extra.name,
                names(expected)
            ));
        }
        let hash = project.source_hash();
        // Another text that means the same model (a comment, the layout, the optimizer edited):
        // the weights fit.
        let same_meaning = m.model_sha256.as_deref() == Some(&project.meaning_hash());
        if m.source_sha256 != hash && !same_meaning {
            let advice = match self.saved_source(path) {
                Some(copy) => format!(
                    "Train again, or use the copy of the .nn file saved with the checkpoint \
                     (`{}`)",
                    copy.display()
                ),
                None => format!(
                    "Train again (the copy of the .nn file saved with the checkpoint, `{}`, is \
                     missing or was changed too)",
                    self.beside(path).display()
                ),
            };
            return Err(format!(
                "`{shown}` was trained from another version of `{file}`, whose layers or data \
                 differ (source SHA-256 {}…, now {}…); the weights may not mean what the model \
                 says. {advice}, or pass --allow-changed-model to use them anyway",
                short(&m.source_sha256),
                short(&hash),
            ));
        }
        Ok(())
    }

    /// Where the run directory holding the checkpoint at `path` keeps its source copy: beside
    /// the checkpoint, under the name it was saved with (a run directory may have been copied
    /// or moved since).
    fn beside(&self, path: &Path) -> PathBuf {
        let name = Path::new(&self.meta.source_file)
            .file_name()
            .map_or_else(|| format!("{}.nn", self.meta.model).into(), Into::into);
        path.parent().unwrap_or(Path::new("")).join::<PathBuf>(name)
    }

    /// The source the checkpoint was trained from, if a copy of it is still at hand: beside
    /// the checkpoint, else where it was saved (relative to the directory nnc ran in then).
    fn saved_source(&self, path: &Path) -> Option<PathBuf> {
        [self.beside(path), PathBuf::from(&self.meta.source_file)]
            .into_iter()
            .find(|p| {
                matches!(crate::source::read(p), Ok(crate::source::Source::Text(t))
                    if crate::project::text_hash(&t) == self.meta.source_sha256)
            })
    }

    /// Takes `project`'s model as the one the weights were trained for, whatever its text says
    /// (`--allow-changed-model`): the names and shapes of the parameters are still checked.
    pub fn adopt_model(&mut self, project: &Project) {
        self.meta.source_sha256 = project.source_hash();
        self.meta.model_sha256 = Some(project.meaning_hash());
    }

    /// Checks that the checkpoint fits `project`'s model (its name, the parameters it declares,
    /// its source or meaning), before any backend or data exists.
    pub fn check_fits_model(&self, shown: &Path, project: &Project) -> Result<(), Error> {
        let expected: Vec<NamedTensor> = nnc_ir::init::init_params(&project.model, 0)
            .into_iter()
            .map(|t| NamedTensor {
                name: t.name,
                shape: t.shape,
                data: Vec::new(),
            })
            .collect();
        self.check_fits(shown, project, &expected)
            .map_err(Error::Checkpoint)
    }

    /// Checks that the checkpoint fits (as [`Checkpoint::check_fits_model`] does) and loads its
    /// weights and optimizer state into `backend`. `path` names the file in messages.
    pub fn load_into(
        &self,
        backend: &mut dyn Backend,
        path: &Path,
        project: &Project,
    ) -> Result<(), Error> {
        let expected = backend.params();
        self.check_fits(path, project, &expected)
            .map_err(Error::Checkpoint)?;
        let params: Vec<NamedTensor> = expected
            .iter()
            .filter_map(|o| self.params.iter().find(|p| p.name == o.name).cloned())
            .collect();
        backend.load(&params, &self.states).map_err(|e| {
            Error::Checkpoint(format!("`{}` does not fit the model: {e}", path.display()))
        })
    }

    /// [`Checkpoint::load_into`] for evaluation and prediction: the weights only, the backend
    /// keeping its own optimizer state, so that weights trained with another optimizer (whose
    /// state has other tensors) still load.
    pub fn load_weights_into(
        &self,
        backend: &mut dyn Backend,
        path: &Path,
        project: &Project,
    ) -> Result<(), Error> {
        let own_states = backend.states();
        let weights_only = Checkpoint {
            meta: self.meta.clone(),
            params: self.params.clone(),
            states: own_states,
            best: Vec::new(),
        };
        weights_only.load_into(backend, path, project)
    }
}

fn names(ts: &[NamedTensor]) -> String {
    ts.iter()
        .map(|t| format!("`{}`", t.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: &[usize], data: &[f32]) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: data.to_vec(),
        }
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            meta: Meta {
                model: "m".into(),
                source_file: "m.nn".into(),
                source_sha256: "ab".repeat(32),
                model_sha256: Some("cd".repeat(32)),
                nnc_version: "0.1.0".into(),
                backend: "interp".into(),
                seed: 7,
                batch: 32,
                epochs: Some(3),
                epoch: 2,
                step: 123,
                partial: EpochSums {
                    samples: 64,
                    steps: 2,
                    loss_sum: 0.1 + 0.2,
                    correct: 61.0,
                    grad_norm2_sums: vec![1.0 / 3.0, 2e-300],
                },
                partial_seconds: 1.5,
                last_finite_loss: Some(0.123456789012345),
                best: Some(Best {
                    epoch: 1,
                    val_loss: 0.7,
                    bad_epochs: 1,
                }),
            },
            params: vec![
                t(
                    "d.weight",
                    &[2, 3],
                    &[1., 2., 3., 4., 5., f32::MIN_POSITIVE],
                ),
                t("d.bias", &[3], &[0.5, -0.5, 1e-30]),
            ],
            states: vec![t("d.weight.m", &[2, 3], &[0.; 6]), t("step", &[], &[3.0])],
            best: vec![
                t("d.weight", &[2, 3], &[9.; 6]),
                t("d.bias", &[3], &[8.; 3]),
            ],
        }
    }

    #[test]
    fn round_trips_bit_for_bit() {
        let c = sample();
        let back = Checkpoint::from_bytes(&c.to_bytes().unwrap(), "c").unwrap();
        assert_eq!(back, c);
        let plain = Checkpoint {
            best: Vec::new(),
            meta: Meta {
                best: None,
                last_finite_loss: None,
                ..c.meta.clone()
            },
            ..c
        };
        let back = Checkpoint::from_bytes(&plain.to_bytes().unwrap(), "c").unwrap();
        assert_eq!(back, plain);
    }

    #[test]
    fn damaged_files_are_refused_with_a_message() {
        let err = |b: &[u8]| Checkpoint::from_bytes(b, "x.safetensors").unwrap_err();
        assert!(err(b"").contains("not a safetensors file"));
        assert!(err(b"\xff\xff\xff\xff\xff\xff\xff\xffjunk").contains("not a safetensors file"));
        let good = sample().to_bytes().unwrap();
        assert!(err(&good[..good.len() - 3]).contains("not a safetensors file"));
        let foreign = safetensors::serialize(
            [(
                "w",
                TensorView::new(Dtype::F32, vec![1], &[0, 0, 0, 0]).unwrap(),
            )],
            None,
        )
        .unwrap();
        assert!(err(&foreign).contains("not an nnc checkpoint: its metadata has no `format`"));
    }

    /// Counters a run adds to are bounded on load, each refusal naming its field, so that a
    /// crafted checkpoint cannot make the run overflow; the bound itself loads.
    #[test]
    fn counters_out_of_range_are_refused_naming_the_field() {
        type Edit = dyn Fn(&mut Meta);
        let err = |edit: &Edit| {
            let mut c = sample();
            edit(&mut c.meta);
            Checkpoint::from_bytes(&c.to_bytes().unwrap(), "x").unwrap_err()
        };
        let cases: [(&Edit, &str); 10] = [
            (
                &|m| m.step = u64::MAX,
                "metadata `step` is 18446744073709551615, above",
            ),
            (
                &|m| m.epoch = usize::MAX,
                "metadata `epoch` is 18446744073709551615",
            ),
            (
                &|m| m.partial.samples = usize::MAX,
                "metadata `epoch_samples` is 1844",
            ),
            (
                &|m| m.partial.steps = usize::MAX,
                "metadata `epoch_steps` is 1844",
            ),
            (
                &|m| m.partial.steps = 124,
                "`epoch_steps` is 124, more than `step` (123)",
            ),
            (
                &|m| m.best.as_mut().unwrap().epoch = 3,
                "metadata `best_epoch` is 3, more than `epoch` (2)",
            ),
            (
                &|m| m.best.as_mut().unwrap().bad_epochs = usize::MAX,
                "metadata `bad_epochs` is 18446744073709551615, above",
            ),
            (
                &|m| m.batch = 0,
                "metadata `batch` is 0, not a batch size (1 to 16777216)",
            ),
            (&|m| m.batch = (1 << 24) + 1, "metadata `batch` is 16777217"),
            (
                &|m| m.partial_seconds = f64::NAN,
                "`epoch_seconds` is NaN, not a duration",
            ),
        ];
        for (edit, message) in cases {
            let e = err(edit);
            assert!(
                e.starts_with("`x` is a damaged checkpoint: ") && e.contains(message),
                "{e}"
            );
        }
        let mut c = sample();
        c.meta.step = MAX_COUNT;
        c.meta.epoch = MAX_COUNT as usize;
        c.meta.partial.samples = MAX_COUNT as usize;
        c.meta.batch = MAX_BATCH as usize;
        let back = Checkpoint::from_bytes(&c.to_bytes().unwrap(), "x").unwrap();
        assert_eq!(back, c);
    }
}
