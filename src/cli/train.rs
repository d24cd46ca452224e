//! `nnc train`: epochs over the data with a progress bar, a line (or JSON object) per epoch,
//! and a run directory holding what a person wants to keep:
//!
//! | file | what |
//! | --- | --- |
//! | `metrics.csv` | epoch and every figure, a row per epoch, flushed each epoch |
//! | `curves.svg` | loss and accuracy per epoch: train, validation, test |
//! | `norms.svg` | per-layer gradient norms per epoch |
//! | `confusion.svg` | the test set's confusion matrix (class data) |
//! | `checkpoint.safetensors` | weights, optimizer state and counters: what `--resume` reads |
//! | `best.safetensors` | with early stopping, the weights of the best epoch |
//! | `<file>.nn` | the model source, for provenance |
//!
//! Checkpoints are written at the end of an epoch (at most every [`SAVE_EVERY`], so toy
//! models running thousands of epochs a second do not spend their time writing files), at
//! the end of the run, and on Ctrl-C, which finishes the step in progress first.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use nnc::TrainError;
use nnc::backend::{BackendKind, NamedTensor};
use nnc::checkpoint::{self, Best, Checkpoint, Meta};
use nnc::metrics::EpochSums;
use nnc::metrics::{EpochReport, MetricsCsv, Norms, Row};
use nnc::trainer::{Confusion, Evaluation, Part, Trainer};
use nnc::{Project, files, plot};

use super::progress::Progress;
use super::{Outcome, Ui};
use nnc_check::Score;

/// The least time between two end-of-epoch checkpoints (the last epoch and Ctrl-C always
/// write one).
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// `nnc train` options.
pub struct TrainCommand {
    pub file: PathBuf,
    pub model: Option<String>,
    pub epochs: Option<usize>,
    pub batch: Option<usize>,
    pub seed: Option<u64>,
    pub data: Option<PathBuf>,
    /// The run directory (default `runs/<model>`).
    pub out: Option<PathBuf>,
    pub resume: bool,
    pub backend: BackendKind,
    /// The JIT's threads (default: the available parallelism).
    pub threads: Option<usize>,
    pub json: bool,
    /// Resume from weights trained from another version of the model's text.
    pub allow_changed_model: bool,
    /// Act as if Ctrl-C came after this many steps of this process (tests).
    pub stop_after_steps: Option<u64>,
    /// Write a checkpoint after every epoch, not at most every [`SAVE_EVERY`] (tests).
    pub save_every_epoch: bool,
}

/// The final `--json` object. It repeats the last epoch's keys with the final weights' test
/// figures, so a tool reading only the last line has them.
struct Summary {
    /// The last epoch's report, its test figures those of the final weights.
    last: EpochReport,
    /// Seconds of this session (process), from its start: on resume, not the whole run's.
    seconds: f64,
    stopped_early: bool,
    best_epoch: Option<usize>,
    run_dir: String,
    /// The file holding the final weights.
    weights: String,
}

impl Serialize for Summary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("summary", &true)?;
        for (k, v) in self.last.figures() {
            match k.as_str() {
                "epoch" => map.serialize_entry(&k, &self.last.epoch)?,
                "seconds" | "train_seconds" => {}
                _ => map.serialize_entry(&k, &v)?,
            }
        }
        map.serialize_entry("seconds", &self.seconds)?;
        map.serialize_entry("stopped_early", &self.stopped_early)?;
        if let Some(b) = self.best_epoch {
            map.serialize_entry("best_epoch", &b)?;
        }
        map.serialize_entry("run_dir", &self.run_dir)?;
        map.serialize_entry("weights", &self.weights)?;
        map.end()
    }
}

/// Ctrl-C presses seen. The first asks the loop to stop after the current step; a second one
/// exits at once (files are written atomically, so nothing is torn).
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

fn install_ctrl_c(flag: Arc<AtomicBool>) {
    let result = ctrlc::set_handler(move || {
        if INTERRUPTS.fetch_add(1, Ordering::SeqCst) >= 1 {
            eprintln!("\ninterrupted again: exiting without a checkpoint");
            std::process::exit(130);
        }
        flag.store(true, Ordering::SeqCst);
    });
    if let Err(e) = result {
        eprintln!("warning: Ctrl-C will not write a checkpoint: {e}");
    }
}

/// Prints a message and gives the outcome.
fn fail(outcome: Outcome, message: impl std::fmt::Display) -> Outcome {
    eprintln!("error: {message}");
    outcome
}

/// Runs `nnc train`: loads the model and data, trains, and writes the run directory.
pub fn run(opts: &TrainCommand, ui: &Ui) -> Outcome {
    // Without the `distributed` feature, the processes of an MPI job would each train the
    // whole model and write the same run directory.
    #[cfg(not(feature = "distributed"))]
    if let Some(n) = nnc::launch::launched_world_size() {
        return fail(
            Outcome::Failed,
            format!(
                "this process is one of {n} that an MPI launcher started, but this nnc was \
                 built without data-parallel training: build it with `cargo build --release \
                 --features nnc/distributed` (README: \"On several machines (MPI)\")"
            ),
        );
    }
    let project = match super::load(&opts.file, opts.model.as_deref(), true, ui) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let Some(train) = project.model.train.clone() else {
        return fail(Outcome::Invalid, "the model has no train block");
    };
    let dir = opts.out.clone().unwrap_or_else(|| run_dir(&project));
    let ckpt_path = dir.join(checkpoint::FILE);

    // A checkpoint is read before the data: a wrong one is reported at once.
    let resumed = if opts.resume {
        if !ckpt_path.exists() {
            return fail(
                Outcome::Failed,
                format!(
                    "nothing to resume: `{}` does not exist (train without --resume first, or \
                     give the run directory with --out)",
                    ckpt_path.display()
                ),
            );
        }
        match Checkpoint::load(&ckpt_path)
            .map(|mut c| {
                if opts.allow_changed_model {
                    c.adopt_model(&project);
                }
                c
            })
            .and_then(|c| c.check_fits_model(&ckpt_path, &project).map(|()| c))
        {
            Ok(c) => Some(c),
            Err(e) => return fail(Outcome::Failed, e),
        }
    } else {
        None
    };
    let seed = opts
        .seed
        .or(resumed.as_ref().map(|c| c.meta.seed))
        .unwrap_or(train.seed);
    let batch = opts
        .batch
        .or(resumed.as_ref().map(|c| c.meta.batch))
        .unwrap_or(train.batch);
    // An interrupted run continues to its own length, like its seed and batch; a run that
    // finished its epochs goes on to the train block's (or --epochs).
    let epochs = opts
        .epochs
        .or(resumed
            .as_ref()
            .and_then(|c| c.meta.epochs.filter(|&planned| c.meta.epoch < planned)))
        .unwrap_or(train.epochs);
    if let Some(c) = &resumed
        && train.schedule.spans_run()
        && let Some(before) = c.meta.epochs.filter(|&e| e != epochs)
    {
        eprintln!(
            "warning: the learning-rate schedule spanned {before} epochs, it now spans {epochs}: \
             the rates ahead differ from those of an uninterrupted run of {before} or of \
             {epochs} epochs"
        );
    }
    // The checkpoint records the seed and batch of the session that wrote it, which a later
    // resume continues with: not necessarily those the run started with.
    if let Some(c) = &resumed
        && (c.meta.seed, c.meta.batch) != (seed, batch)
    {
        eprintln!(
            "warning: the checkpoint was written with seed {} and batch {}, this session \
             continues with seed {seed} and batch {batch}: the epochs ahead will differ from \
             those of a run continued with the checkpoint's",
            c.meta.seed, c.meta.batch
        );
    }

    let mut data = match project.load_data(opts.data.as_deref()) {
        Ok(d) => d,
        Err(e) => return ui.report(&e),
    };
    if let Some(fraction) = train.validation
        && let Err(e) = data.hold_out(fraction, seed)
    {
        return fail(Outcome::Invalid, e.to_string());
    }
    let threads = opts.threads.unwrap_or_else(nnc::default_threads);
    let trainer = Trainer::with_threads(&project.model, data, opts.backend, seed, batch, threads);
    let mut trainer = match trainer {
        Ok(t) => t,
        Err(e) => return fail(Outcome::Failed, e),
    };
    trainer.set_epochs(epochs);

    let mut state = RunState::default();
    if let Some(c) = &resumed {
        if let Err(e) = trainer.restore(c, &ckpt_path, &project) {
            return ui.report(&e);
        }
        state = RunState {
            epoch: c.meta.epoch,
            sums: c.meta.partial.clone(),
            partial_seconds: c.meta.partial_seconds,
            last_finite_loss: c.meta.last_finite_loss,
            best: c.meta.best,
            best_params: c.best.clone(),
        };
    }

    // Under mpirun (the `distributed` feature): every rank trains its shard of each batch;
    // only rank 0 goes on to the driver, which prints and writes.
    #[cfg(feature = "distributed")]
    let cluster = match nnc::distributed::Cluster::from_env() {
        Ok(c) => c,
        Err(e) => return fail(Outcome::Failed, e),
    };
    #[cfg(feature = "distributed")]
    if let Some(c) = &cluster {
        // Every rank sees the same flag and returns before any collective.
        if opts.backend != nnc::BackendKind::Jit {
            let message = format!(
                "training under mpirun runs on the jit backend, not `{}`",
                opts.backend.name()
            );
            return match c.is_root() {
                true => fail(Outcome::Failed, message),
                false => Outcome::Failed,
            };
        }
        let threads = opts.threads.unwrap_or_else(|| c.default_threads());
        if let Err(e) = c.join(&mut trainer, &project.model, seed, threads) {
            eprintln!("error: rank {}: {e}", c.rank());
            c.abort(2);
        }
        if !c.is_root() {
            use nnc::distributed::FollowError;
            let followed = c.follow(&mut trainer, state.epoch + 1, epochs, state.sums.clone());
            eprintln!("{}", c.report(&trainer));
            return match followed {
                Ok(()) => Outcome::Ok,
                Err(FollowError::Diverged(_)) => Outcome::Invalid,
                Err(FollowError::Failed(e)) => {
                    eprintln!("error: rank {}: {e}", c.rank());
                    c.abort(2)
                }
            };
        }
    }

    let run = match RunDir::open(&dir, &project, resumed.as_ref().map(|c| c.meta.epoch)) {
        Ok(r) => r,
        Err(e) => return fail(Outcome::Failed, e),
    };
    let mut driver = Driver {
        opts,
        project: &project,
        run,
        trainer,
        state,
        epochs,
        seed,
        stop: Arc::new(AtomicBool::new(false)),
        last_save: Instant::now(),
        started: Instant::now(),
        steps_here: 0,
        resumed: resumed.is_some(),
        warned_class: None,
    };
    driver.announce(resumed.as_ref());
    #[cfg(feature = "distributed")]
    if let Some(c) = &cluster {
        let outcome = driver.train();
        eprintln!("{}", c.report(&driver.trainer));
        return outcome;
    }
    driver.train()
}

/// The default run directory of a project: `runs/<model>`, or `runs/<model>-2`, `-3`, … when
/// that one holds the run of another `.nn` file (its copy of the source has another name), so
/// that training one file never overwrites another file's run.
pub fn run_dir(project: &Project) -> PathBuf {
    let name = &project.model.name;
    let own = source_name(project);
    let holds_other_file = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            let copies: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".nn"))
                .collect();
            !copies.is_empty() && !copies.contains(&own)
        })
    };
    (1..)
        .map(|k| match k {
            1 => Path::new("runs").join(name),
            k => Path::new("runs").join(format!("{name}-{k}")),
        })
        .find(|d| !holds_other_file(d))
        .unwrap_or_else(|| Path::new("runs").join(name))
}

/// What a run carries from epoch to epoch (and through a checkpoint).
#[derive(Default)]
struct RunState {
    /// Completed epochs.
    epoch: usize,
    /// The epoch in progress.
    sums: EpochSums,
    partial_seconds: f64,
    last_finite_loss: Option<f64>,
    best: Option<Best>,
    best_params: Vec<NamedTensor>,
}

/// The run directory's files.
struct RunDir {
    dir: PathBuf,
    metrics: MetricsCsv,
    history: Vec<Row>,
}

impl RunDir {
    /// Creates the directory and copies the source into it; on resume after epoch `resume`,
    /// keeps the metrics up to that epoch.
    fn open(dir: &Path, project: &Project, resume: Option<usize>) -> Result<RunDir, String> {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create the run directory `{}`: {}",
                dir.display(),
                files::reason(&e)
            )
        })?;
        // A run directory given with --out that holds another file's run: say so, and leave
        // one source copy, this run's.
        let own = source_name(project);
        if resume.is_none()
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for other in entries.flatten().map(|e| e.path()) {
                let is_other_copy = other.extension().is_some_and(|x| x == "nn")
                    && other
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy() != own);
                if is_other_copy {
                    eprintln!(
                        "warning: `{}` held a run of `{}`; this run of `{own}` replaces it",
                        dir.display(),
                        other.file_name().unwrap_or_default().to_string_lossy()
                    );
                    let _ = std::fs::remove_file(&other);
                }
            }
        }
        files::write_atomic(&dir.join(own), project.source.as_bytes())?;
        let path = dir.join("metrics.csv");
        let (metrics, history) = match resume {
            Some(epoch) => MetricsCsv::resume(&path, epoch)?,
            None => (MetricsCsv::create(&path), Vec::new()),
        };
        Ok(RunDir {
            dir: dir.to_path_buf(),
            metrics,
            history,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write_svg(&self, name: &str, svg: Result<String, String>) -> Result<(), String> {
        files::write_atomic(&self.path(name), svg?.as_bytes())
    }
}

/// The name of the source copy in the run directory: the `.nn` file's own name.
fn source_name(project: &Project) -> String {
    project
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{}.nn", project.model.name))
}

struct Driver<'a> {
    opts: &'a TrainCommand,
    project: &'a Project,
    run: RunDir,
    trainer: Trainer,
    state: RunState,
    epochs: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    last_save: Instant,
    started: Instant,
    /// Steps taken by this process (for `--stop-after-steps`).
    steps_here: u64,
    /// The session continues a checkpoint: its time is not the run's.
    resumed: bool,
    /// The class of the last "predicts one class for every sample" warning, while it holds.
    warned_class: Option<usize>,
}

impl Driver<'_> {
    /// What the model reports beside its loss.
    fn score(&self) -> Score {
        self.project
            .model
            .train
            .as_ref()
            .map_or(Score::Accuracy, |t| t.score())
    }

    fn announce(&self, resumed: Option<&Checkpoint>) {
        let data = self.trainer.data();
        let model = &self.project.model;
        let val = data
            .val
            .as_ref()
            .map(|v| format!(", {} validation", v.len()))
            .unwrap_or_default();
        eprintln!(
            "training `{}` ({}) on {} samples{val} ({} test), batch {}, {} epoch{}, seed {}, {} \
             backend",
            model.name,
            self.project.path.display(),
            data.train.len(),
            data.test.len(),
            self.trainer.batch(),
            self.epochs,
            if self.epochs == 1 { "" } else { "s" },
            self.seed,
            self.opts.backend.name(),
        );
        eprintln!("run directory: {}", self.run.dir.display());
        if let Some(c) = resumed {
            eprintln!(
                "resuming from {} after epoch {}{}, step {}",
                self.run.path(checkpoint::FILE).display(),
                c.meta.epoch,
                if c.meta.partial.samples > 0 {
                    format!(
                        " and {} samples of epoch {}",
                        c.meta.partial.samples,
                        c.meta.epoch + 1
                    )
                } else {
                    String::new()
                },
                c.meta.step
            );
        }
    }

    fn train(&mut self) -> Outcome {
        let first = self.state.epoch + 1;
        if first > self.epochs {
            eprintln!(
                "the run already has {} of {}; pass --epochs N to train more",
                count(self.state.epoch, "epoch"),
                self.epochs
            );
            return Outcome::Ok;
        }
        let early_stop = self.project.model.train.as_ref().and_then(|t| t.early_stop);
        if let (Some(es), Some(b)) = (early_stop, self.state.best)
            && b.bad_epochs >= es.patience
            && self.state.sums.samples == 0
        {
            eprintln!(
                "the run stopped early after epoch {} (no improvement for {} epochs since epoch \
                 {}); nothing to resume",
                self.state.epoch, b.bad_epochs, b.epoch
            );
            return Outcome::Ok;
        }
        install_ctrl_c(self.stop.clone());
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut progress = Progress::new(terminal);
        let score = self.score();
        let train_len = self.trainer.data().train.len();
        let mut last_test: Option<Evaluation> = None;
        let mut last_report: Option<EpochReport> = None;
        let mut stopped_early = false;

        for epoch in first..=self.epochs {
            let start = Instant::now();
            progress.start(epoch, self.epochs, train_len, self.state.sums.samples);
            let (stop, limit) = (self.stop.clone(), self.opts.stop_after_steps);
            let train_start = Instant::now();
            let steps_here = &mut self.steps_here;
            let result = self.trainer.train_epoch(epoch, &mut self.state.sums, |s| {
                *steps_here += 1;
                progress.update(s.samples, s.loss(), (score.key(), s.score()));
                if limit.is_some_and(|l| *steps_here >= l) {
                    stop.store(true, Ordering::SeqCst);
                }
                if stop.load(Ordering::SeqCst) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            let train_seconds = train_start.elapsed().as_secs_f64();
            progress.finish();
            self.state.last_finite_loss = self.trainer.last_finite_loss();
            match result {
                Err(e @ TrainError::Diverged { .. }) => return fail(Outcome::Invalid, e),
                Err(TrainError::Backend(e)) => return fail(Outcome::Failed, e),
                Ok(false) => {
                    self.state.partial_seconds += start.elapsed().as_secs_f64();
                    return self.interrupted(epoch);
                }
                Ok(true) => {}
            }

            let report = match self.finish_epoch(epoch, start, train_seconds, &mut last_test) {
                Ok(r) => r,
                Err(e) => return fail(Outcome::Failed, e),
            };
            let mut patience_out = false;
            if let (Some(es), Some(val_loss)) = (early_stop, report.val_loss) {
                let improved = self
                    .state
                    .best
                    .is_none_or(|b| val_loss < b.val_loss - es.min_delta);
                if improved {
                    self.state.best = Some(Best {
                        epoch,
                        val_loss,
                        bad_epochs: 0,
                    });
                    self.state.best_params = self.trainer.params();
                } else if let Some(b) = &mut self.state.best {
                    b.bad_epochs += 1;
                    patience_out = b.bad_epochs >= es.patience;
                }
            }
            last_report = Some(report);
            let interrupted = self.stop.load(Ordering::SeqCst);
            let last = epoch == self.epochs || patience_out || interrupted;
            if (last || self.opts.save_every_epoch || self.last_save.elapsed() >= SAVE_EVERY)
                && let Err(e) = self.save()
            {
                return fail(Outcome::Failed, e);
            }
            if interrupted {
                return self.interrupted(epoch + 1);
            }
            if patience_out && let Some(b) = self.state.best {
                eprintln!(
                    "early stop: the validation loss has not improved for {} epochs (best {:.4} \
                     at epoch {})",
                    b.bad_epochs, b.val_loss, b.epoch
                );
                stopped_early = true;
                break;
            }
        }
        self.conclude(last_report, last_test, stopped_early)
    }

    /// Evaluates, reports and logs a finished epoch.
    fn finish_epoch(
        &mut self,
        epoch: usize,
        start: Instant,
        train_seconds: f64,
        last_test: &mut Option<Evaluation>,
    ) -> Result<EpochReport, String> {
        let (val, test) = self.trainer.evaluate_epoch().map_err(|e| e.to_string())?;
        let sums = std::mem::take(&mut self.state.sums);
        let before = self.state.partial_seconds;
        let report = EpochReport {
            epoch,
            score: self.score(),
            train_loss: sums.loss(),
            train_score: sums.score(),
            val_loss: val.as_ref().map(|v| v.loss),
            val_score: val.as_ref().map(|v| v.score),
            test_loss: test.loss,
            test_score: test.score,
            lr: self.trainer.scheduled().then(|| {
                self.trainer
                    .learning_rate(self.trainer.step.saturating_sub(1))
            }),
            seconds: self.state.partial_seconds + start.elapsed().as_secs_f64(),
            train_seconds,
            grad_norms: Norms(self.trainer.grad_norms(&sums)),
            weight_norms: Norms(self.trainer.weight_norms()),
        };
        self.state.partial_seconds = 0.0;
        self.state.epoch = epoch;
        if let Some(confusion) = &test.confusion
            && let Some(class) = confusion.single_prediction()
        {
            // Said once, and again only when the class changes: not every epoch.
            if self.warned_class != Some(class) {
                let warning =
                    report.single_class_warning(class, confusion.classes, &self.run.history);
                eprintln!("warning: {warning}");
            }
            self.warned_class = Some(class);
        } else {
            self.warned_class = None;
        }
        *last_test = Some(test);
        if self.opts.json {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
        } else {
            println!("{}", epoch_line(&report, before));
        }
        let row = report.row();
        self.run.metrics.append(&row)?;
        self.run.history.push(row);
        Ok(report)
    }

    /// Writes the checkpoint and the plots.
    fn save(&mut self) -> Result<(), String> {
        self.last_save = Instant::now();
        let ckpt = self.checkpoint();
        ckpt.save(&self.run.path(checkpoint::FILE))
            .map_err(|e| e.to_string())?;
        let title = format!(
            "{}: loss and {}",
            self.project.model.name,
            self.score().title()
        );
        self.run.write_svg(
            "curves.svg",
            plot::curves(&self.run.history, &title, self.score()),
        )?;
        let name = self.project.model.name.as_str();
        self.run.write_svg(
            "norms.svg",
            plot::grad_norms(&[(
                &format!("{name}: per-layer gradient norms"),
                &self.run.history,
            )]),
        )
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            meta: Meta {
                model: self.project.model.name.clone(),
                source_file: self
                    .run
                    .path(&source_name(self.project))
                    .display()
                    .to_string(),
                source_sha256: self.project.source_hash(),
                model_sha256: Some(self.project.meaning_hash()),
                nnc_version: env!("CARGO_PKG_VERSION").to_string(),
                backend: self.opts.backend.name(),
                seed: self.seed,
                batch: self.trainer.batch(),
                epochs: Some(self.epochs),
                epoch: self.state.epoch,
                step: self.trainer.step,
                partial: self.state.sums.clone(),
                partial_seconds: self.state.partial_seconds,
                last_finite_loss: self.state.last_finite_loss,
                best: self.state.best,
            },
            params: self.trainer.params(),
            states: self.trainer.states(),
            best: self.state.best_params.clone(),
        }
    }

    /// Ctrl-C: saves where the run stands, in epoch `epoch`.
    fn interrupted(&mut self, epoch: usize) -> Outcome {
        let path = self.run.path(checkpoint::FILE);
        if let Err(e) = self.save() {
            return fail(Outcome::Failed, format!("interrupted, but {e}"));
        }
        let s = &self.state.sums;
        eprintln!(
            "interrupted in epoch {epoch} after {} of its {} samples (step {}); checkpoint \
             written to {}",
            s.samples,
            self.trainer.data().train.len(),
            self.trainer.step,
            path.display()
        );
        // Runnable as printed: the flags that found this run's model, data and directory
        // (the seed, batch and epochs continue the checkpoint's).
        let mut again = format!("nnc train {}", shell_word(&self.project.path.display()));
        if let Some(model) = &self.opts.model {
            again += &format!(" --model {}", shell_word(model));
        }
        if let Some(data) = &self.opts.data {
            again += &format!(" --data {}", shell_word(&data.display()));
        }
        if self.opts.out.is_some() {
            again += &format!(" --out {}", shell_word(&self.run.dir.display()));
        }
        if self.opts.backend != BackendKind::default() {
            again += &format!(" --backend {}", self.opts.backend.name());
        }
        // (The same count gives the same bits.)
        if let Some(threads) = self.opts.threads {
            again += &format!(" --threads {threads}");
        }
        eprintln!("continue with: {again} --resume");
        if self.opts.json {
            println!(
                "{}",
                serde_json::json!({
                    "interrupted": true,
                    "epoch": epoch,
                    "epoch_samples": s.samples,
                    "step": self.trainer.step,
                    // The mean loss of the step just taken (`bench/twin.py` compares it).
                    "last_step_loss": self.state.last_finite_loss,
                    "checkpoint": path.display().to_string(),
                })
            );
        }
        Outcome::Interrupted
    }

    /// After the last epoch: restores the best weights when early stopping, evaluates them,
    /// writes the confusion matrix and prints the summary.
    fn conclude(
        &mut self,
        last: Option<EpochReport>,
        mut test: Option<Evaluation>,
        stopped_early: bool,
    ) -> Outcome {
        let Some(last) = last else {
            return Outcome::Ok;
        };
        let mut weights = self.run.path(checkpoint::FILE);
        let restored = self
            .state
            .best
            .filter(|b| !self.state.best_params.is_empty() && b.epoch != last.epoch);
        if let Some(b) = restored {
            let states = self.trainer.states();
            let best = self.state.best_params.clone();
            let result = self
                .trainer
                .backend()
                .load(&best, &states)
                .and_then(|()| self.trainer.evaluate(Part::Test).map_err(|e| e.to_string()));
            match result {
                Ok(t) => test = t,
                Err(e) => return fail(Outcome::Failed, e),
            }
            // The weights of epoch `b.epoch`, to evaluate or predict with; resuming reads
            // checkpoint.safetensors.
            let mut ckpt = self.checkpoint();
            ckpt.meta.epoch = b.epoch;
            ckpt.meta.partial = EpochSums::default();
            ckpt.meta.best = None;
            ckpt.best = Vec::new();
            weights = self.run.path(checkpoint::BEST_FILE);
            if let Err(e) = ckpt.save(&weights) {
                return fail(Outcome::Failed, e);
            }
            eprintln!(
                "restored the weights of epoch {} (validation loss {:.4}); saved in {}",
                b.epoch,
                b.val_loss,
                weights.display()
            );
        }
        let Some(test) = test else {
            return Outcome::Ok;
        };
        if let Some(c) = &test.confusion {
            let title = format!("{}: test set confusion matrix", self.project.model.name);
            if let Err(e) = self
                .run
                .write_svg("confusion.svg", plot::confusion(c, &title))
            {
                return fail(Outcome::Failed, e);
            }
            if !self.opts.json {
                print!("{}", confusion_table(c));
            }
        }
        let seconds = self.started.elapsed().as_secs_f64();
        if self.opts.json {
            let summary = Summary {
                last: EpochReport {
                    test_loss: test.loss,
                    test_score: test.score,
                    ..last.clone()
                },
                seconds,
                stopped_early,
                best_epoch: self.state.best.map(|b| b.epoch),
                run_dir: self.run.dir.display().to_string(),
                weights: weights.display().to_string(),
            };
            println!("{}", serde_json::to_string(&summary).unwrap_or_default());
        } else {
            // A resumed session's time is not the run's: the epochs' times (metrics.csv's
            // `seconds`, which count the parts before interruptions) add up to that.
            let time = if self.resumed {
                let epochs: f64 = self
                    .run
                    .history
                    .iter()
                    .filter_map(|r| r.get("seconds"))
                    .sum();
                format!(
                    "; {} in this session, {} in all the run's epochs",
                    nnc::metrics::duration(seconds),
                    nnc::metrics::duration(epochs)
                )
            } else {
                format!(" in {}", nnc::metrics::duration(seconds))
            };
            println!(
                "test {} {:.4} (loss {:.4}) after {} epoch{}{time}; weights in {}",
                self.score().title(),
                test.score,
                test.loss,
                last.epoch,
                if last.epoch == 1 { "" } else { "s" },
                weights.display()
            );
        }
        Outcome::Ok
    }
}

/// `epoch   1  train loss 0.2551  acc 0.9262  [val ...]  test loss 0.1329  acc 0.9596  [lr
/// 0.0100]  5.21 s`: the epoch's time, training and evaluation; for an epoch resumed in its
/// middle, `(2.17 s before the interruption)` says how much of it an earlier session spent.
fn epoch_line(r: &EpochReport, before: f64) -> String {
    let key = r.score.key();
    let val = match (r.val_loss, r.val_score) {
        (Some(l), Some(a)) => format!("  val loss {l:.4}  {key} {a:.4}"),
        _ => String::new(),
    };
    let lr =
        r.lr.map(|lr| format!("  lr {}", rate(lr)))
            .unwrap_or_default();
    let before = if before > 0.0 {
        format!(" ({before:.2} s before the interruption)")
    } else {
        String::new()
    };
    format!(
        "epoch {:>3}  train loss {:.4}  {key} {:.4}{val}  test loss {:.4}  {key} {:.4}{lr}  {:.2} \
         s{before}",
        r.epoch, r.train_loss, r.train_score, r.test_loss, r.test_score, r.seconds
    )
}

/// The confusion matrix as text: rows are true classes, columns predicted ones.
pub fn confusion_table(c: &Confusion) -> String {
    let width = c
        .counts
        .iter()
        .max()
        .map_or(1, |m| m.to_string().len())
        .max(c.classes.to_string().len())
        + 1;
    let mut out = format!(
        "confusion matrix (rows: true class, columns: predicted)\n{:>5}",
        ""
    );
    for p in 0..c.classes {
        out += &format!("{p:>width$}");
    }
    out += "   accuracy\n";
    for (t, acc) in c.per_class_accuracy().into_iter().enumerate() {
        out += &format!("{t:>5}");
        for p in 0..c.classes {
            out += &format!("{:>width$}", c.get(t, p));
        }
        match acc {
            Some(a) => out += &format!("   {a:.4}\n"),
            None => out += "   -\n",
        }
    }
    out
}

/// `1 epoch`, `2 epochs`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A word as a POSIX shell reads it: as it is when it holds only safe characters, else
/// single-quoted.
fn shell_word(word: &dyn std::fmt::Display) -> String {
    let word = word.to_string();
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./=:@%+,".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// A learning rate with three significant digits at least: `0.0100`, `9.37e-4`, `3.51e-9`.
fn rate(lr: f64) -> String {
    if lr >= 0.01 || lr == 0.0 {
        format!("{lr:.4}")
    } else {
        format!("{lr:.2e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_keep_their_digits() {
        assert_eq!(rate(0.02), "0.0200");
        assert_eq!(rate(0.010008), "0.0100");
        assert_eq!(rate(0.000937), "9.37e-4");
        assert_eq!(rate(2.2e-10), "2.20e-10");
        assert_eq!(rate(0.0), "0.0000");
    }

    #[test]
    fn hints_are_shell_words() {
        assert_eq!(shell_word(&"models/x.nn"), "models/x.nn");
        assert_eq!(shell_word(&"my model.nn"), "'my model.nn'");
        assert_eq!(shell_word(&"it's.nn"), "'it'\\''s.nn'");
    }
}
