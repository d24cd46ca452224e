//! Times each stage of compiling models' training steps, the best of several runs: checking,
//! lowering, autodiff (with the simplification before it), the optimizer, the pass pipeline
//! (with the verifier after every pass), the evaluation step, and `Program::compile`
//! (schedule, fusion, plan, Cranelift, kernel set-up, arena allocation); then the first and
//! second runs of the step, whose difference is mostly the arena's pages being touched for the
//! first time (not compilation: `nnc bench` does not count it).
//!
//!     cargo run --release -p nnc-jit --example compile_stages -- bench/zoo/*.nn models/*.nn
//!
//! `REPEAT=n` sets the number of runs (default 7); `NO_RUN=1` skips the step runs (to profile
//! compilation alone).

use std::time::Instant;

use nnc_ir::lower::{InputSpec, LowerOptions, TargetSpec};
use nnc_jit::{Options, Program};

const STAGES: [&str; 9] = [
    "check", "lower", "autodiff", "optim", "passes", "eval", "jit", "run 1", "run 2",
];

fn main() {
    let repeat: usize = std::env::var("REPEAT")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let run = std::env::var_os("NO_RUN").is_none();
    println!(
        "best of {repeat}, ms: {}  (compile = lower..jit)",
        STAGES.join(" | ")
    );
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path).expect("model file");
        let mut best = [f64::INFINITY; STAGES.len()];
        for _ in 0..repeat {
            let mut t = Instant::now();
            let mut lap = |i: usize, best: &mut [f64]| {
                best[i] = best[i].min(t.elapsed().as_secs_f64() * 1e3);
                t = Instant::now();
            };
            let checked = nnc_check::check_source(&text);
            let m = checked.models.into_iter().next().expect("a valid model");
            lap(0, &mut best);
            let train = m.train.clone().expect("train block");
            let input = InputSpec::of(&train.data, &m).expect("input layout");
            let targets = TargetSpec::of(&train.data, &m);
            let opts = LowerOptions {
                batch: train.batch,
                training: true,
                input,
                targets,
                loss: train.loss,
                score: train.score(),
            };
            // The stages of `nnc_ir::compile::compile`, one by one (for models without
            // batchnorm, whose running statistics `compile` separates from the parameters).
            let fwd = nnc_ir::lower::lower(&m, &opts).expect("lowers");
            lap(1, &mut best);
            let simplified = nnc_ir::passes::simplify::run(&fwd.func);
            let params: Vec<_> = fwd
                .params
                .iter()
                .map(|(name, _)| simplified.value_named(name).expect("named parameter"))
                .collect();
            let backward = nnc_ir::autodiff::grad(&simplified, simplified.results[0], &params)
                .expect("differentiates");
            lap(2, &mut best);
            let train_fn = nnc_ir::optim::apply(
                &backward,
                &params,
                &[],
                &train.optimizer,
                train.weight_decay,
                !train.schedule.is_constant(),
            );
            lap(3, &mut best);
            let step = nnc_ir::passes::optimize(&train_fn.func);
            lap(4, &mut best);
            let eval = nnc_ir::lower::lower(
                &m,
                &LowerOptions {
                    training: false,
                    ..opts
                },
            )
            .expect("lowers");
            nnc_ir::passes::optimize(&eval.func);
            lap(5, &mut best);
            let mut p = Program::compile(&step, Options::default()).expect("jit");
            lap(6, &mut best);
            if run {
                p.run();
                lap(7, &mut best);
                p.run();
                lap(8, &mut best);
            }
        }
        let compile: f64 = best[1..7].iter().sum();
        let stages: Vec<String> = best
            .iter()
            .filter(|b| b.is_finite())
            .map(|b| format!("{b:.1}"))
            .collect();
        println!("{path}: {}  (compile {compile:.1})", stages.join(" | "));
    }
}
