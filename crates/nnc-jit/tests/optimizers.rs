//! Every optimizer, and every option that changes its state, compiled by the JIT and run for
//! several training steps on a small convnet: at each step, from the same weights and state,
//! its loss, new weights and new state agree with the reference interpreter's (1e-4
//! relative), with a constant and with a scheduled rate.
//! (`nnc-ir`'s `tests/optimizers.rs` checks the updates themselves against f64 references.)

mod support;

use ndarray::{ArrayD, IxDyn};
use nnc_ir::DType;
use nnc_ir::compile::{Compiled, compile};
use nnc_ir::init::{Rng, init_params};
use nnc_ir::interp::{self, Tensor};
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_jit::{Options, Program};
use support::{Tolerance, agree, inputs, load, widen};

/// Each optimizer, with its state tensors per parameter and shared (scalars).
const OPTIMIZERS: &[(&str, usize, usize)] = &[
    ("sgd(lr: 0.05)", 0, 0),
    (
        "momentum(lr: 0.05, momentum: 0.9, weight_decay: 0.01)",
        1,
        0,
    ),
    ("nesterov(lr: 0.05)", 1, 0),
    ("adagrad(lr: 0.05)", 1, 0),
    ("rmsprop(lr: 0.01)", 1, 0),
    ("rmsprop(lr: 0.01, momentum: 0.9)", 2, 0),
    ("rmsprop(lr: 0.01, centered: true)", 2, 0),
    (
        "rmsprop(lr: 0.01, rho: 0.8, momentum: 0.5, centered: true, weight_decay: 0.01)",
        3,
        0,
    ),
    ("adam(lr: 0.01)", 2, 1),
    ("adamw(lr: 0.01)", 2, 1),
    ("adamw(lr: 0.01, beta1: 0.8, weight_decay: 0.1)", 2, 1),
    ("adamax", 2, 1),
    ("nadam", 2, 2),
    ("adadelta", 2, 0),
    (
        "adadelta(lr: 0.5, rho: 0.95, eps: 1e-4, weight_decay: 0.01)",
        2,
        0,
    ),
];

/// The model's parameter tensors: a weight and a bias per layer.
const PARAMS: usize = 6;

const CLASSES: usize = 4;

fn model_text(optimizer: &str, schedule: &str) -> String {
    format!(
        "model m {{\n    input x: f32[2, 10, 10]\n    conv2d(16, kernel: 3) -> relu -> maxpool(2)\n    \
         flatten\n    dense(24) -> tanh\n    dense({CLASSES})\n}}\n\n\
         train m {{\n    data idx(images: \"x\", labels: \"y\", classes: {CLASSES})\n    \
         loss softmax_cross_entropy\n    optimizer {optimizer}\n{schedule}    batch 8\n}}\n"
    )
}

/// The model of `text`, checked, and its step functions at batch 8 (float inputs).
fn compiled(text: &str) -> (nnc_check::Model, Compiled) {
    let checked = nnc_check::check_source(text);
    assert!(!checked.has_errors(), "{text}\n{:?}", checked.diagnostics);
    let model = checked.models.into_iter().next().expect("a model");
    let input = InputSpec {
        dtype: DType::F32,
        sample: model.input.shape.0.clone(),
        scale: 1.0,
        shift: 0.0,
        pad: 0,
        flatten: false,
    };
    let c = compile(&model, 8, input, TargetSpec::Classes(CLASSES))
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    (model, c)
}

/// The model's initial parameters (seed 3), then the step's optimizer state.
fn initial_state(model: &nnc_check::Model, step: &nnc_ir::optim::TrainStep) -> Vec<Tensor<f32>> {
    init_params(model, 3)
        .into_iter()
        .map(|t| Tensor::F(ArrayD::from_shape_vec(IxDyn(&t.shape), t.data).unwrap()))
        .chain(
            step.states
                .iter()
                .map(|s| Tensor::F(ArrayD::from_elem(IxDyn(&s.ty.shape), s.init as f32))),
        )
        .collect()
}

/// Trains the model under `optimizer` for `steps` steps on both engines; returns how many
/// optimizer state tensors the step carries.
fn check(optimizer: &str, scheduled: bool, steps: usize) -> usize {
    let schedule = if scheduled {
        "    schedule step(gamma: 0.5)\n"
    } else {
        ""
    };
    let (model, c) = compiled(&model_text(optimizer, schedule));
    let step = &c.train_step;
    assert_eq!(step.learning_rate.is_some(), scheduled, "{optimizer}");
    let mut p = Program::compile(&step.func, Options::default())
        .unwrap_or_else(|e| panic!("{optimizer}: {e}"));
    let mut state = initial_state(&model, step);
    for (i, t) in state.iter().enumerate() {
        load(&mut p, step.data_params + i, t);
    }
    let base = model.train.as_ref().map_or(0.01, |t| t.optimizer.lr());
    let mut rng = Rng::new(17);
    for s in 0..steps {
        // A scheduled rate that changes at every step, loaded like the data.
        let lr = step.learning_rate.map(|i| {
            let rate = base * 0.8f64.powi(s as i32);
            (i, Tensor::F(ArrayD::from_elem(IxDyn(&[]), rate as f32)))
        });
        let data = inputs(&step.func, step.data_params, CLASSES, 5, &mut rng);
        for (i, t) in data.iter().enumerate() {
            load(&mut p, i, t);
        }
        if let Some((i, t)) = &lr {
            load(&mut p, *i, t);
        }
        let args: Vec<Tensor<f32>> = data
            .into_iter()
            .chain(state.iter().cloned())
            .chain(lr.iter().map(|(_, t)| t.clone()))
            .collect();
        // The same step in f64: how far the f32 interpreter's own rounding takes each result
        // (the noise of `Tolerance`: an element that RMSProp's first step takes from a
        // near-cancelled gradient carries that gradient's rounding, amplified).
        let exact = interp::run_f64(&step.func, args.iter().map(widen).collect())
            .unwrap_or_else(|e| panic!("{optimizer}: {e}"));
        let out = interp::run_f32(&step.func, args).unwrap_or_else(|e| panic!("{optimizer}: {e}"));
        p.run();
        let (jl, il) = (p.result(0)[0], out[0].scalar().unwrap() as f32);
        assert!(
            agree(jl, il),
            "{optimizer} step {s}: loss {jl} (jit) vs {il} (interpreter)"
        );
        for k in 0..state.len() {
            let want = out[2 + k].as_f().unwrap();
            let got = p.result(2 + k);
            assert_eq!(got.len(), want.len());
            let wide: Vec<f64> = want.iter().map(|&x| x as f64).collect();
            let exact: Vec<f64> = exact[2 + k].as_f().unwrap().iter().copied().collect();
            let tol = Tolerance::of(&wide, &exact);
            for (j, (&a, &b)) in got.iter().zip(want.iter()).enumerate() {
                assert!(
                    agree(a, b) || tol.agree(a as f64, b as f64),
                    "{optimizer} (scheduled: {scheduled}) step {s}: result {} [{j}] {a} (jit) \
                     vs {b} (interpreter, bound {:.2e})",
                    2 + k,
                    tol.bound()
                );
            }
        }
        // Both continue from the interpreter's state, so that each step compares one update
        // on the same inputs: over steps, normalising optimizers magnify the GEMMs'
        // reassociation where a gradient is near 0.
        state = out[2..2 + state.len()].to_vec();
        for (k, t) in state.iter().enumerate() {
            load(&mut p, step.data_params + k, t);
        }
    }
    step.states.len()
}

#[test]
fn every_optimizer_trains_identically_on_the_jit() {
    for &(opt, per_param, shared) in OPTIMIZERS {
        for scheduled in [false, true] {
            let states = check(opt, scheduled, 6);
            assert_eq!(states, PARAMS * per_param + shared, "{opt}: state tensors");
        }
    }
}

/// The bias correction 1 − βᵗ of Adam, Adamax and NAdam ([`nnc_ir::optim::one_minus_power`]),
/// on both engines in f32, within 4e-7 relative of the exact value at every step count, the
/// first ones included: there 1 − exp(t·ln β) in f32 was off by up to 1e-4 at β = 0.999 (the
/// digits the exponential shares with 1), which moved the first steps' updates by as much.
#[test]
fn bias_correction_is_accurate_at_every_step() {
    for beta in [0.9, 0.95, 0.99, 0.999, 0.9999] {
        let mut f = nnc_ir::Function::new("correction");
        let t = f.add_param("t", nnc_ir::Type::scalar());
        let c = nnc_ir::optim::one_minus_power(&mut nnc_ir::Builder { f: &mut f }, t, beta);
        f.results = vec![c];
        let mut p = Program::compile(&f, Options::default()).expect("compiles");
        for step in [1u32, 2, 3, 5, 10, 100, 1000, 10_000, 1_000_000] {
            let want = -(step as f64 * beta.ln()).exp_m1();
            let tensor = Tensor::F(ArrayD::from_elem(IxDyn(&[]), step as f32));
            let interpreted = interp::run_f32(&f, vec![tensor.clone()]).expect("runs")[0]
                .scalar()
                .expect("a scalar");
            load(&mut p, 0, &tensor);
            p.run();
            let jit = p.result(0)[0] as f64;
            for (engine, got) in [("interpreter", interpreted), ("jit", jit)] {
                assert!(
                    (got - want).abs() <= 4e-7 * want,
                    "1 − {beta}^{step}: {got} ({engine}) vs {want}"
                );
            }
        }
    }
}

/// Every optimizer's update loops, where they divide or take a root and so run on the
/// vector unit as an elementwise program (`vector_loop`, or RMSProp's routine), store the
/// bits of the generated loops (the portable build's), step after step, on each unit this
/// CPU has; the others stay generated loops.
#[test]
fn vector_loops_store_the_generated_loops_bits() {
    let units = nnc_jit::testing::vector_units("vector_loops_store_the_generated_loops_bits");
    for &(optimizer, ..) in OPTIMIZERS {
        for scheduled in [false, true] {
            for &isa in &units {
                bits_match(optimizer, scheduled, isa);
            }
        }
    }
}

fn bits_match(optimizer: &str, scheduled: bool, isa: nnc_jit::Isa) {
    let schedule = if scheduled {
        "    schedule step(gamma: 0.5)\n"
    } else {
        ""
    };
    // Dense layers only: their products are the same code in both builds.
    let text = format!(
        "model m {{\n    input x: f32[40]\n    dense(24) -> tanh\n    dense({CLASSES})\n}}\n\n\
         train m {{\n    data idx(images: \"x\", labels: \"y\", classes: {CLASSES})\n    \
         loss softmax_cross_entropy\n    optimizer {optimizer}\n{schedule}    batch 8\n}}\n"
    );
    let (model, c) = compiled(&text);
    let step = &c.train_step;
    let state = initial_state(&model, step);
    let mut programs: Vec<Program> = [true, false]
        .into_iter()
        .map(|portable| {
            let options = Options {
                portable,
                isa: Some(isa),
                ..Options::default()
            };
            let mut p = Program::compile(&step.func, options).expect("compiles");
            for (i, t) in state.iter().enumerate() {
                load(&mut p, step.data_params + i, t);
            }
            p
        })
        .collect();
    let on_unit = |p: &Program| {
        (0..p.kernel_count())
            .filter(|&k| {
                let label = p.kernel_label(k);
                label.contains(&format!("vector loop on {}", isa.name()))
                    || label.contains(&format!("rmsprop on {}", isa.name()))
            })
            .count()
    };
    // SGD's, momentum's and Nesterov's updates neither divide nor take a root.
    let divides = !["sgd", "momentum", "nesterov"]
        .iter()
        .any(|o| optimizer.starts_with(o));
    assert_eq!(on_unit(&programs[0]), 0, "{optimizer}: the portable build");
    assert_eq!(
        on_unit(&programs[1]) > 0,
        divides,
        "{optimizer}: loops on the vector unit"
    );
    let mut rng = Rng::new(23);
    for s in 0..3 {
        let data = inputs(&step.func, step.data_params, CLASSES, 5, &mut rng);
        for p in programs.iter_mut() {
            for (i, t) in data.iter().enumerate() {
                load(p, i, t);
            }
            if let Some(i) = step.learning_rate {
                p.f32_param(i).unwrap()[0] = 0.01 / (1 + s) as f32;
            }
            p.run();
        }
        for k in 2..2 + state.len() {
            let a = programs[0].result(k).to_vec();
            let b = programs[1].result(k);
            for (j, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                assert_eq!(
                    x.to_bits(),
                    y.to_bits(),
                    "{optimizer} (scheduled: {scheduled}) {isa:?} step {s} result {k} [{j}]: \
                     {x} (generated) vs {y} (vector unit)"
                );
            }
        }
        for p in programs.iter_mut() {
            for k in 2..2 + state.len() {
                p.commit(k, step.data_params + k - 2);
            }
        }
    }
}
