//! Check, compile and run arbitrary models: a model the checker accepts must lower,
//! differentiate, JIT-compile and run a training and an evaluation step without a panic.
//! Small models only (the fuzzer looks for panics, not for out-of-memory).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nnc_ir::compile::compile;
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_ir::{DType, Function};
use nnc_jit::{Options, Program};

/// Per-sample activations and parameters above this many values are skipped.
const LIMIT: u64 = 1 << 16;

fn fill(program: &mut Program, f: &Function, data_params: usize, classes: usize) {
    for (i, &p) in f.params[..data_params].iter().enumerate() {
        match f.ty(p).dtype {
            DType::U8 => {
                for (k, x) in program.u8_param(i).expect("u8 data").iter_mut().enumerate() {
                    *x = (k * 37 % 251) as u8;
                }
            }
            DType::I32 => {
                for (k, x) in program.i32_param(i).expect("labels").iter_mut().enumerate() {
                    *x = (k % classes.max(1)) as i32;
                }
            }
            DType::F32 => {
                for (k, x) in program.f32_param(i).expect("data").iter_mut().enumerate() {
                    *x = (k % 7) as f32 / 7.0;
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let checked = nnc_check::check_source(text);
    if checked.has_errors() {
        return;
    }
    for m in &checked.models {
        let Some(train) = &m.train else { continue };
        let activations: u64 = m.layers.iter().map(|l| l.output_shape.numel()).sum();
        if m.param_count() > LIMIT || activations > LIMIT || m.input.shape.numel() > LIMIT {
            continue;
        }
        let Some(input) = InputSpec::of(&train.data, m) else {
            continue;
        };
        let targets = TargetSpec::of(&train.data, m);
        let classes = match targets {
            TargetSpec::Classes(n) => n,
            TargetSpec::Values(_) => 1,
        };
        let batch = train.batch.min(4);
        let Ok(c) = compile(m, batch, input, targets) else {
            continue;
        };
        for portable in [false, true] {
            let options = Options {
                portable,
                ..Options::default()
            };
            let step = &c.train_step;
            // A refusal (say, a tensor above rank 8) is a diagnostic for the CLI, not a panic.
            let Ok(mut t) = Program::compile(&step.func, options) else {
                continue;
            };
            fill(&mut t, &step.func, step.data_params, classes);
            t.run();
            let Ok(mut e) = Program::compile(&c.eval_step, options) else {
                continue;
            };
            fill(&mut e, &c.eval_step, 2, classes);
            e.run();
        }
    }
});
