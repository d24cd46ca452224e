//! Progress within an epoch on stderr: an indicatif bar (loss, accuracy, images/s, ETA) when
//! stderr is a terminal, otherwise a plain line every [`LINE_EVERY`] so that logs show a long
//! epoch advancing without filling up.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nnc::metrics::duration;

/// How often a plain progress line is printed when stderr is not a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(10);

/// The progress display of a training run.
pub struct Progress {
    bar: Option<ProgressBar>,
    terminal: bool,
    epoch: usize,
    epochs: usize,
    total: usize,
    /// Samples done when this display of the epoch started (non-zero after a resume).
    first: usize,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// `terminal`: draw a bar (stderr is a terminal); otherwise print plain lines.
    pub fn new(terminal: bool) -> Progress {
        Progress {
            bar: None,
            terminal,
            epoch: 0,
            epochs: 0,
            total: 0,
            first: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    /// Starts showing epoch `epoch` of `epochs`, `done` of its `total` samples already done.
    pub fn start(&mut self, epoch: usize, epochs: usize, total: usize, done: usize) {
        self.finish();
        (self.epoch, self.epochs, self.total, self.first) = (epoch, epochs, total, done);
        self.started = Instant::now();
        self.last_line = self.started;
        if self.terminal {
            let style = ProgressStyle::with_template(
                "{prefix} [{wide_bar}] {pos:>7}/{len} {msg} ETA {eta}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr())
                    .with_style(style)
                    .with_prefix(format!("epoch {epoch}/{epochs}"))
                    .with_position(done as u64);
            self.bar = Some(bar);
        }
    }

    /// Reports `done` samples of the epoch, with the running mean loss and score (`key`:
    /// `acc` or `mae`).
    pub fn update(&mut self, done: usize, loss: f64, (key, acc): (&str, f64)) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = (done - self.first.min(done)) as f64 / elapsed.max(1e-9);
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!("loss {loss:.4} {key} {acc:.4} {rate:.0} img/s"));
        } else if self.last_line.elapsed() >= LINE_EVERY {
            self.last_line = Instant::now();
            let left = self.total.saturating_sub(done) as f64 / rate.max(1e-9);
            eprintln!(
                "epoch {}/{}: {done}/{} samples, loss {loss:.4}, {key} {acc:.4}, {rate:.0} img/s, \
                 ETA {}",
                self.epoch,
                self.epochs,
                self.total,
                duration(left)
            );
        }
    }

    /// Removes the bar (before the epoch's line is printed).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
