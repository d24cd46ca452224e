//! `nnc bench`: compile time, step time and a per-kernel profile of a model's training step
//! (like `caffe time`), on a batch of the model's own images when the caller has them (the
//! contractions that read images skip their zeros, see `sparse`), else on synthetic data of
//! the right shape (for everything else the arithmetic does not depend on the values). With
//! `ranks` above 1, the step of rank 0 of a data-parallel job of that many processes: its
//! shard of each batch, its sums over the ranks run as copies (the communication is not in
//! the figures, the rest of the rank's step is).

use std::time::{Duration, Instant};

use nnc_check::Model;
use nnc_ir::data_parallel::{Shard, compile_data_parallel};
use nnc_ir::lower::{InputSpec, TargetSpec};
use serde::Serialize;

use crate::program::{Options, Program};

/// One kernel's share of a step.
#[derive(Clone, Debug, Serialize)]
pub struct KernelTime {
    pub kernel: usize,
    pub label: String,
    pub micros: f64,
    /// For contractions.
    pub gflops: Option<f64>,
    /// For contractions and convolutions: what `gemm` reaches on a plain product of the same
    /// `M × N × K` (row-major operands), split into as many parts on as many threads as the
    /// kernel (see [`reference_gflops`]).
    pub gemm_gflops: Option<f64>,
}

/// What `nnc bench` measures.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub batch: usize,
    /// The processes of the data-parallel job whose rank 0 ran (1: one process).
    pub ranks: usize,
    /// The samples of each batch the step ran on: rank 0's shard.
    pub samples: usize,
    /// The threads the step ran on.
    pub threads: usize,
    /// Parse and check are done by the caller; this is lowering, autodiff, passes and the JIT.
    pub compile_ms: f64,
    pub kernels: usize,
    pub arena_bytes: usize,
    pub step_micros: f64,
    pub images_per_second: f64,
    /// 3 × forward FLOPs per sample (the peers' convention), per second.
    pub gflops: f64,
    /// Steps per epoch of 60,000 samples (MNIST), at this step time.
    pub epoch_seconds_estimate: f64,
    /// What the step ran on: "images" (a batch of the model's data) or "synthetic".
    pub data: &'static str,
    pub profile: Vec<KernelTime>,
}

/// Measures the training step of `model` for `iterations` steps after `warmup`, on `images`
/// (u8 samples, repeated to fill the batch) if given and the model's input is u8, on
/// `threads` threads; with `ranks` above 1, rank 0's step of a job of that many (see the
/// module's documentation).
pub fn run(
    model: &Model,
    batch: usize,
    (input, targets): (InputSpec, TargetSpec),
    images: Option<&[u8]>,
    (warmup, iterations): (usize, usize),
    (threads, ranks): (usize, usize),
) -> Result<Report, String> {
    let start = Instant::now();
    let options = options(threads)?;
    // Rank 0's shard: ⌈batch / ranks⌉ samples, as `nnc train` under mpirun takes them.
    let samples = batch.div_ceil(ranks.max(1));
    let step = if ranks > 1 {
        let shard = Shard {
            first: 0,
            len: samples,
            global: batch,
        };
        compile_data_parallel(model, shard, input, targets)?
    } else {
        nnc_ir::compile::compile(model, batch, input, targets)?.train_step
    };
    let mut p = Program::compile(&step.func, options)?;
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;

    // Initial weights, and a batch of synthetic data.
    for (i, t) in nnc_ir::init::init_params(model, 0).iter().enumerate() {
        p.f32_param(step.data_params + i)?.copy_from_slice(&t.data);
    }
    for (i, s) in step.states.iter().enumerate() {
        p.f32_param(step.data_params + step.params.len() + i)?
            .fill(s.init as f32);
    }
    let data = fill_batch(&mut p, images, targets);
    let n = step.params.len() + step.states.len();
    // A scheduled rate is set before every step, as the trainer does: the step may reuse its
    // buffer. The optimizer's own rate.
    let lr = step
        .learning_rate
        .zip(model.train.as_ref().map(|t| t.optimizer.lr() as f32));
    let run = |p: &mut Program, times: Option<&mut [Duration]>| {
        if let Some((i, lr)) = lr
            && let Ok(slot) = p.f32_param(i)
        {
            slot[0] = lr;
        }
        match times {
            Some(t) => p.run_timed(t),
            None => p.run(),
        }
        for k in 0..n {
            p.commit(2 + k, step.data_params + k);
        }
    };
    for _ in 0..warmup {
        run(&mut p, None);
    }
    let t = Instant::now();
    for _ in 0..iterations {
        run(&mut p, None);
    }
    let step_s = t.elapsed().as_secs_f64() / iterations.max(1) as f64;
    let mut times = vec![Duration::ZERO; p.kernel_count()];
    for _ in 0..iterations {
        run(&mut p, Some(&mut times));
    }
    // The reference GEMM, measured once per shape (after the step's timings: it must not
    // disturb them).
    let mut references: Vec<(([usize; 3], usize), f64)> = Vec::new();
    let mut reference = |product: ([usize; 3], usize)| {
        if let Some(&(_, g)) = references.iter().find(|(p, _)| *p == product) {
            return g;
        }
        let g = reference_gflops(product.0, product.1);
        references.push((product, g));
        g
    };
    let mut profile: Vec<KernelTime> = times
        .iter()
        .enumerate()
        .map(|(k, d)| {
            let micros = d.as_secs_f64() * 1e6 / iterations.max(1) as f64;
            let macs = p.kernel_macs(k);
            KernelTime {
                kernel: k,
                label: p.kernel_label(k),
                micros,
                gflops: (macs > 0 && micros > 0.0).then(|| 2.0 * macs as f64 / micros / 1e3),
                gemm_gflops: p.kernel_product(k).map(&mut reference),
            }
        })
        .collect();
    profile.sort_by(|a, b| b.micros.total_cmp(&a.micros));
    let flops = 3.0 * model.flops_per_sample() as f64 * samples as f64;
    Ok(Report {
        model: model.name.clone(),
        batch,
        ranks: ranks.max(1),
        samples,
        threads,
        compile_ms,
        kernels: p.kernel_count(),
        arena_bytes: p.arena_bytes(),
        step_micros: step_s * 1e6,
        images_per_second: samples as f64 / step_s,
        gflops: flops / step_s / 1e9,
        epoch_seconds_estimate: step_s * (60_000f64 / batch as f64).ceil(),
        data,
        profile,
    })
}

/// The JIT's options for `threads` (checked).
fn options(threads: usize) -> Result<Options, String> {
    if !(1..=crate::MAX_THREADS).contains(&threads) {
        return Err(format!(
            "{threads} threads: the JIT runs on 1 to {} threads",
            crate::MAX_THREADS
        ));
    }
    Ok(Options {
        threads,
        ..Options::default()
    })
}

/// Fills a step's data parameters: the images (repeated to fill the batch) when given and the
/// input is u8, else synthetic inputs of the right shape, and class (or value) targets.
/// Returns what the inputs are: "images" or "synthetic".
fn fill_batch(p: &mut Program, images: Option<&[u8]>, targets: TargetSpec) -> &'static str {
    let mut data = "synthetic";
    if let Ok(x) = p.u8_param(0) {
        match images.filter(|d| !d.is_empty()) {
            Some(d) => {
                x.iter_mut()
                    .zip(d.iter().cycle())
                    .for_each(|(v, &d)| *v = d);
                data = "images";
            }
            None => x
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = (i * 37 % 256) as u8),
        }
    }
    if let Ok(x) = p.f32_param(0) {
        x.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = ((i * 37 % 101) as f32) / 101.0);
    }
    let classes = match targets {
        TargetSpec::Classes(k) => k as i32,
        TargetSpec::Values(_) => 1,
    };
    if let Ok(t) = p.i32_param(1) {
        t.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as i32 % classes);
    }
    data
}

/// What `nnc bench --eval` measures: the compiled evaluation step (forward, dropout off), as
/// inference runs it.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub batch: usize,
    pub threads: usize,
    /// Lowering, passes and the JIT of the evaluation step.
    pub compile_ms: f64,
    pub kernels: usize,
    pub arena_bytes: usize,
    pub iterations: usize,
    /// Latency of one step (one batch), over the timed steps.
    pub p50_micros: f64,
    pub p99_micros: f64,
    pub min_micros: f64,
    /// Images per second at the median step.
    pub images_per_second: f64,
    /// "images" or "synthetic", as for the training step.
    pub data: &'static str,
}

/// Measures the evaluation step of `model` at `batch`, each of `iterations` steps timed on
/// its own after `warmup`, on `threads` threads; inputs as in [`run`].
pub fn run_eval(
    model: &Model,
    batch: usize,
    (input, targets): (InputSpec, TargetSpec),
    images: Option<&[u8]>,
    (warmup, iterations): (usize, usize),
    threads: usize,
) -> Result<EvalReport, String> {
    let start = Instant::now();
    let options = options(threads)?;
    let c = nnc_ir::compile::compile(model, batch, input, targets)?;
    let mut p = Program::compile(&c.eval_step, options)?;
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;
    // The evaluation step's parameters follow its inputs and targets.
    for (i, t) in nnc_ir::init::init_params(model, 0).iter().enumerate() {
        p.f32_param(2 + i)?.copy_from_slice(&t.data);
    }
    let data = fill_batch(&mut p, images, targets);
    for _ in 0..warmup {
        p.run();
    }
    let iterations = iterations.max(1);
    let mut micros: Vec<f64> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            p.run();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    micros.sort_by(f64::total_cmp);
    // Nearest-rank percentiles.
    let rank = |q: f64| micros[((q * iterations as f64).ceil() as usize).clamp(1, iterations) - 1];
    let p50 = rank(0.5);
    Ok(EvalReport {
        model: model.name.clone(),
        batch,
        threads,
        compile_ms,
        kernels: p.kernel_count(),
        arena_bytes: p.arena_bytes(),
        iterations,
        p50_micros: p50,
        p99_micros: rank(0.99),
        min_micros: micros[0],
        images_per_second: batch as f64 / (p50 / 1e6),
        data,
    })
}

impl EvalReport {
    /// The report as a few lines.
    pub fn render(&self) -> String {
        format!(
            "{} (evaluation step): batch {} ({} data), {} threads, {} kernels, arena {:.1} KiB\n\
             compile (lower, passes, JIT): {:.1} ms\n\
             latency per batch over {} steps: p50 {:.1} µs, p99 {:.1} µs, best {:.1} µs\n\
             {:.0} images/s at the median ({:.2} µs per image)\n",
            self.model,
            self.batch,
            self.data,
            self.threads,
            self.kernels,
            self.arena_bytes as f64 / 1024.0,
            self.compile_ms,
            self.iterations,
            self.p50_micros,
            self.p99_micros,
            self.min_micros,
            self.images_per_second,
            self.p50_micros / self.batch as f64,
        )
    }
}

impl Report {
    /// The report as a table; `top` kernels are listed.
    pub fn render(&self, top: usize) -> String {
        let rank = if self.ranks > 1 {
            format!(
                " on rank 0 of {} (its {} samples; its sums over the ranks run as copies: no \
                 communication in these figures)",
                self.ranks, self.samples
            )
        } else {
            String::new()
        };
        let mut out = format!(
            "{}: batch {}{rank} ({} data), {} threads, {} kernels, arena {:.1} KiB\n\
             compile (lower, autodiff, passes, JIT): {:.1} ms\n\
             step: {:.1} µs  ({:.0} images/s, {:.1} GFLOP/s at 3× forward FLOPs; ≈ {:.3} s per 60,000-image epoch)\n\n\
             {:>10}  {:>6}  {:>12}  {:>8}  kernel\n",
            self.model,
            self.batch,
            self.data,
            self.threads,
            self.kernels,
            self.arena_bytes as f64 / 1024.0,
            self.compile_ms,
            self.step_micros,
            self.images_per_second,
            self.gflops,
            self.epoch_seconds_estimate,
            "µs/step",
            "share",
            "GFLOP/s",
            "gemm",
        );
        let total: f64 = self.profile.iter().map(|k| k.micros).sum();
        for k in self.profile.iter().take(top) {
            // A kernel below half of what gemm reaches on its product is marked.
            let below = matches!((k.gflops, k.gemm_gflops), (Some(g), Some(r)) if g < r / 2.0);
            out.push_str(&format!(
                "{:>10.1}  {:>5.1}%  {:>12}  {:>8}  {}\n",
                k.micros,
                100.0 * k.micros / total.max(1e-9),
                k.gflops.map_or(String::new(), |g| format!(
                    "{}{g:.1}",
                    if below { "*" } else { "" }
                )),
                k.gemm_gflops.map_or(String::new(), |g| format!("{g:.1}")),
                k.label
            ));
        }
        if self.profile.len() > top {
            let rest: f64 = self.profile[top..].iter().map(|k| k.micros).sum();
            out.push_str(&format!(
                "{:>10.1}  {:>5.1}%  {:>12}  {:>8}  {} more kernels\n",
                rest,
                100.0 * rest / total.max(1e-9),
                "",
                "",
                self.profile.len() - top
            ));
        }
        if self.profile.iter().any(|k| k.gemm_gflops.is_some()) {
            out.push_str(
                "\ngemm: GFLOP/s of gemm on a plain product of the same M×N×K, split in as many \
                 parts on as many threads; * below half of it\n",
            );
        }
        out
    }
}

/// GFLOP/s of `gemm` on a plain product `C [M, N] = A [M, K] · B [K, N]` of row-major
/// operands, split in `parts` parts over the longer of `M` and `N`, each on its own thread
/// (this one and `parts − 1` spawned), the best of a few repetitions of at least 10 ms.
pub fn reference_gflops([m, n, k]: [usize; 3], parts: usize) -> f64 {
    let parts = parts.max(1);
    let a = vec![1.0f32; m * k];
    let b = vec![1.0f32; k * n];
    let mut c = vec![0.0f32; m * n];
    // Part `p`'s rows or columns.
    let rows = m >= n;
    let range = |p: usize| {
        let len = if rows { m } else { n };
        (len * p / parts, len * (p + 1) / parts)
    };
    // Pointers as integers, so that the threads can share them.
    let (pa, pb, pc) = (
        a.as_ptr() as usize,
        b.as_ptr() as usize,
        c.as_mut_ptr() as usize,
    );
    let part = move |p: usize, reps: usize| {
        let (lo, hi) = range(p);
        let (rm, cn) = if rows { (hi - lo, n) } else { (m, hi - lo) };
        let (a_at, b_at, c_at) = if rows {
            (lo * k, 0, lo * n)
        } else {
            (0, lo, lo)
        };
        for _ in 0..reps {
            // SAFETY: A is `m × k`, B `k × n`, C `m × n`, row-major, all alive until the
            // threads are joined; this part's rows (or columns) of A, B and C lie inside them
            // at these offsets, and the parts write disjoint rows (or columns) of C, which
            // overlaps neither A nor B.
            unsafe {
                nnc_kernels::matmul::matmul(
                    (pc as *mut f32).add(c_at),
                    n as isize,
                    (pa as *const f32).add(a_at),
                    1,
                    k as isize,
                    (pb as *const f32).add(b_at),
                    1,
                    n as isize,
                    rm,
                    cn,
                    k,
                    false,
                );
            }
        }
    };
    let run = |reps: usize| {
        let t = Instant::now();
        std::thread::scope(|s| {
            for p in 1..parts {
                s.spawn(move || part(p, reps));
            }
            part(0, reps);
        });
        t.elapsed().as_secs_f64() / reps as f64
    };
    let once = run(1);
    let reps = ((0.01 / once.max(1e-9)) as usize).clamp(1, 1000);
    let best = (0..3).map(|_| run(reps)).fold(f64::INFINITY, f64::min);
    drop(c);
    2.0 * (m * n * k) as f64 / best / 1e9
}

#[cfg(test)]
mod tests {
    use super::reference_gflops;

    /// The reference product runs whole and split over threads, rows or columns, even in
    /// more parts than it has rows.
    #[test]
    fn reference_gemm_runs_in_any_number_of_parts() {
        for (shape, parts) in [([64, 48, 32], 1), ([64, 48, 32], 3), ([2, 40, 8], 4)] {
            let g = reference_gflops(shape, parts);
            assert!(g.is_finite() && g > 0.0, "{shape:?} in {parts}: {g}");
        }
    }
}
