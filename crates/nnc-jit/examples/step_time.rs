//! Times the compiled training step of a model on random data, kernel by kernel.
//!
//!     cargo run --release -p nnc-jit --example step_time -- models/mlp.nn

use std::time::{Duration, Instant};

use nnc_ir::compile::compile;
use nnc_ir::init::init_params;
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_jit::{Options, Program};

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "models/mlp.nn".into());
    let text = std::fs::read_to_string(&path).expect("model file");
    let checked = nnc_check::check_source(&text);
    let m = checked.models.into_iter().next().expect("a valid model");
    let train = m.train.clone().expect("train block");
    let input = InputSpec::of(&train.data, &m).expect("input layout");
    let targets = TargetSpec::of(&train.data, &m);
    let t0 = Instant::now();
    let c = compile(&m, train.batch, input, targets).expect("compiles");
    let t1 = Instant::now();
    let step = &c.train_step;
    let mut p = Program::compile(&step.func, Options::default()).expect("jit");
    let t2 = Instant::now();
    for (i, t) in init_params(&m, 0).iter().enumerate() {
        p.f32_param(step.data_params + i)
            .unwrap()
            .copy_from_slice(&t.data);
    }
    if let Ok(x) = p.u8_param(0) {
        x.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = (i * 31 % 256) as u8);
    }
    if let Ok(l) = p.i32_param(1) {
        l.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = (i % 10) as i32);
    }
    let np = step.params.len();
    let ns = step.states.len();
    let run = |p: &mut Program| {
        p.run();
        for k in 0..np + ns {
            p.commit(2 + k, step.data_params + k);
        }
    };
    for _ in 0..20 {
        run(&mut p);
    }
    let iters = 200;
    let t = Instant::now();
    for _ in 0..iters {
        run(&mut p);
    }
    let per = t.elapsed().as_secs_f64() / iters as f64;
    let steps = 60000f64 / train.batch as f64;
    println!(
        "{path}: IR {:.1} ms, JIT {:.1} ms; step {:.1} us, epoch ≈ {:.3} s; arena {} KiB",
        (t1 - t0).as_secs_f64() * 1e3,
        (t2 - t1).as_secs_f64() * 1e3,
        per * 1e6,
        per * steps.ceil(),
        p.arena_bytes() / 1024
    );
    let mut times = vec![Duration::ZERO; p.kernel_count()];
    for _ in 0..iters {
        p.run_timed(&mut times);
    }
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|&a, &b| times[b].cmp(&times[a]));
    for &k in order.iter().take(15) {
        let us = times[k].as_secs_f64() / iters as f64 * 1e6;
        let macs = p.kernel_macs(k);
        let gf = if macs > 0 {
            format!("{:6.1} GFLOP/s", 2.0 * macs as f64 / (us * 1e-6) / 1e9)
        } else {
            String::new()
        };
        println!("{us:8.1} us {gf:>16}  {}", p.kernel_label(k));
    }
}
