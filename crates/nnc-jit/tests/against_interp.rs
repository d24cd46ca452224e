//! The JIT against the reference interpreter: every model in `models/` for several training
//! steps (losses and parameters agree to 1e-4 relative) and the evaluation step; a model
//! without a test here fails `every_model_has_a_test`.

mod support;

use ndarray::{ArrayD, IxDyn};
use nnc_ir::compile::{Compiled, compile};
use nnc_ir::init::{Rng, init_params};
use nnc_ir::interp::{self, Tensor};
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_jit::Isa;
use nnc_jit::testing::{vector_units, vector_units_or_skip};
use nnc_jit::{Options, Program};
use support::{MODELS, data_inputs, load, model_file, model_files};

fn close(a: f32, b: f32, what: &str) {
    let scale = a.abs().max(b.abs()).max(1e-3);
    assert!(
        (a - b).abs() <= 1e-4 * scale,
        "{what}: jit {a} vs interpreter {b}"
    );
}

/// The portable kernels on one thread, the hand-vectorised ones on each vector unit this CPU
/// has on two, then on 3 and 4 threads (more than the cores is fine) with every kernel that
/// can split split, however small.
fn variants() -> Vec<Options> {
    let portable = Options {
        portable: true,
        threads: 1,
        ..Options::default()
    };
    let units = vector_units_or_skip("against_interp");
    let best = units.first().copied();
    let split = [3, 4].map(|threads| Options {
        portable: best.is_none(),
        isa: best,
        threads,
        split_small: true,
        ..Options::default()
    });
    let units = units.into_iter().map(|isa| Options {
        isa: Some(isa),
        ..Options::default()
    });
    std::iter::once(portable)
        .chain(units)
        .chain(split)
        .collect()
}

/// Trains `path` for `steps` steps on the JIT and the interpreter, with the portable kernels
/// and with the vectorised ones on each unit ([`variants`]); `zeros` as in [`data_inputs`].
fn check(path: &str, steps: usize, zeros: bool) {
    for options in variants() {
        check_with(path, steps, options, zeros);
    }
}

/// Returns how many times a contraction skipped the data's zeros.
fn check_with(path: &str, steps: usize, options: Options, zeros: bool) -> usize {
    check_at(path, steps, options, zeros, 16)
}

/// [`check_with`] at the model's batch, or `max_batch` if that is smaller.
fn check_at(path: &str, steps: usize, options: Options, zeros: bool, max_batch: usize) -> usize {
    let m = model_file(path);
    let train = m.train.clone().expect("train block");
    let input = InputSpec::of(&train.data, &m).expect("known input layout");
    let targets = TargetSpec::of(&train.data, &m);
    let batch = train.batch.min(max_batch);
    let c: Compiled = compile(&m, batch, input, targets).expect("compiles");
    let step = &c.train_step;
    let mut program = Program::compile(&step.func, options).expect("jit compiles");
    let mut rng = Rng::new(11);
    let mut params: Vec<Tensor<f32>> = init_params(&m, 3)
        .into_iter()
        .map(|t| Tensor::F(ArrayD::from_shape_vec(IxDyn(&t.shape), t.data).unwrap()))
        .collect();
    let mut states: Vec<Tensor<f32>> = step
        .states
        .iter()
        .map(|s| Tensor::F(ArrayD::from_elem(IxDyn(&s.ty.shape), s.init as f32)))
        .collect();
    let np = params.len();
    let ns = states.len();
    // The JIT's parameters and states start equal and then live in its arena.
    for (i, t) in params.iter().chain(&states).enumerate() {
        load(&mut program, step.data_params + i, t);
    }
    // A scheduled rate: the optimizer's own, loaded before every step like the data.
    let lr = step.learning_rate.map(|i| {
        (
            i,
            Tensor::F(ArrayD::from_elem(IxDyn(&[]), train.optimizer.lr() as f32)),
        )
    });
    for s in 0..steps {
        let data = data_inputs(&step.func, step.data_params, targets, &mut rng, zeros);
        for (i, t) in data.iter().enumerate() {
            load(&mut program, i, t);
        }
        if let Some((i, t)) = &lr {
            load(&mut program, *i, t);
        }
        let mut inputs = data.clone();
        inputs.extend(params.iter().cloned());
        inputs.extend(states.iter().cloned());
        inputs.extend(lr.iter().map(|(_, t)| t.clone()));
        let out = interp::run_f32(&step.func, inputs).expect("interpreter runs");
        program.run();
        close(
            program.result(0)[0],
            out[0].scalar().unwrap() as f32,
            &format!("{path} step {s} loss"),
        );
        close(
            program.result(1)[0],
            out[1].scalar().unwrap() as f32,
            &format!("{path} step {s} correct"),
        );
        for k in 0..np + ns {
            let want = out[2 + k].as_f().unwrap();
            let got = program.result(2 + k).to_vec();
            for (j, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
                close(
                    g,
                    w,
                    &format!("{path} step {s} result {} element {j}", 2 + k),
                );
            }
            program.commit(2 + k, step.data_params + k);
        }
        // The squared gradient norms (sums over whole tensors, split across threads).
        for (k, norm) in out.iter().enumerate().skip(2 + np + ns) {
            close(
                program.result(k)[0],
                norm.scalar().unwrap() as f32,
                &format!("{path} step {s} gradient norm {k}"),
            );
        }
        params = out[2..2 + np].to_vec();
        states = out[2 + np..2 + np + ns].to_vec();
    }
    // The evaluation step on the trained parameters.
    let mut eval = Program::compile(&c.eval_step, options).expect("eval compiles");
    let data = data_inputs(&c.eval_step, 2, targets, &mut rng, zeros);
    let mut inputs = data.clone();
    inputs.extend(params.iter().cloned());
    for (i, t) in inputs.iter().enumerate() {
        load(&mut eval, i, t);
    }
    let out = interp::run_f32(&c.eval_step, inputs).expect("interpreter runs");
    eval.run();
    close(
        eval.result(0)[0],
        out[0].scalar().unwrap() as f32,
        &format!("{path} eval loss"),
    );
    let want = out[2].as_f().unwrap();
    for (&g, &w) in eval.result(2).iter().zip(want.iter()) {
        close(g, w, &format!("{path} eval output"));
    }
    program.sparse_runs() + eval.sparse_runs()
}

/// One test per model file, training it for a few steps (CI time) on dense random images or
/// on mostly-zero ones ([`data_inputs`]), and the list of files they cover.
macro_rules! model_tests {
    ($($test:ident: $file:literal, $steps:literal steps, zeros: $zeros:literal;)*) => {
        $(
            #[test]
            fn $test() {
                check(&format!("{MODELS}{}", $file), $steps, $zeros);
            }
        )*
        const TESTED: &[&str] = &[$($file),*];
    };
}

// The deep MLPs see MNIST-like images: on dense random bytes, deep-relu's 784 inputs and
// uniform(0.5) weights take the loss from 15 to 7.6e6 by the fourth step, and that growth
// magnifies the GEMMs' reassociation beyond 1e-4 (resynchronised every step, the JIT and the
// interpreter agree); on mostly-zero images both train as on MNIST.
model_tests! {
    xor: "xor.nn", 5 steps, zeros: false;
    perceptron: "perceptron.nn", 5 steps, zeros: false;
    regression: "regression.nn", 5 steps, zeros: false;
    mlp: "mlp.nn", 3 steps, zeros: false;
    lenet5: "lenet5.nn", 3 steps, zeros: false;
    lenet5_1998: "lenet5-1998.nn", 3 steps, zeros: false;
    deep_sigmoid: "deep-sigmoid.nn", 3 steps, zeros: true;
    deep_relu: "deep-relu.nn", 3 steps, zeros: true;
    torch_mnist: "torch-mnist.nn", 2 steps, zeros: true;
}

/// Models checked against the interpreter by `zoo.rs` only, whose rule bounds each result by
/// the interpreter's own measured rounding noise: resnet-mnist's weight gradients before a
/// batchnorm are sums that the batch mean's removal nearly cancels, and Adam's first step
/// takes such a gradient to ±lr, so its JIT and interpreter weights differ by a little more
/// than a fixed 1e-4 (1.06e-4 seen). keras-convnet's 3×3 convolutions run on Winograd's
/// F(2×2, 3×3), whose rounding is not the direct kernels' (the interpreter's order): after
/// two Adam steps a weight that a cancelled gradient moved is 1.2e-4 from the interpreter's.
const CHECKED_BY_ZOO: &[&str] = &["keras-convnet.nn", "resnet-mnist.nn"];

/// A model added to `models/` fails here until `model_tests!` has a test for it.
#[test]
fn every_model_has_a_test() {
    let files: Vec<String> = model_files()
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(String::from))
        .collect();
    let mut tested: Vec<String> = TESTED
        .iter()
        .chain(CHECKED_BY_ZOO)
        .map(|s| s.to_string())
        .collect();
    tested.sort();
    assert_eq!(
        files, tested,
        "models/ against the files `model_tests!` covers"
    );
}

/// On images that are mostly 0, the MLP's first-layer contractions (the forward product,
/// its weight gradient, and evaluation's product) skip the zeros where the CPU has a vector
/// unit, and still agree with the interpreter.
#[test]
fn mlp_on_mostly_zero_images() {
    for options in variants() {
        let runs = check_with(&format!("{MODELS}mlp.nn"), 3, options, true);
        // Three steps of two contractions and one evaluation (split kernels count a run
        // per part).
        if options.portable {
            assert_eq!(runs, 0, "portable");
        } else {
            assert!(runs >= 7, "{options:?}: {runs} sparse runs");
        }
    }
    // LeNet-5 reads its images with convolutions: nothing to skip.
    let runs = check_with(&format!("{MODELS}lenet5.nn"), 2, Options::default(), true);
    assert_eq!(runs, 0);
}

/// The MLP's RMSProp updates, recognised and run on each vector unit the CPU has, leave
/// weights and optimizer state bit-identical to the Cranelift loops (the portable kernels),
/// as long as the state stays in f32's normal range (it does here: the routine reads and
/// stores subnormal state as zero, see `nnc_jit::updates`).
#[test]
fn recognised_updates_are_bitwise_the_generated_loops() {
    for isa in vector_units("recognised_updates_are_bitwise_the_generated_loops") {
        updates_match_the_loops(isa, false);
        updates_match_the_loops(isa, true);
    }
}

/// With `scheduled`, the rate is the step's parameter, a different one each step.
fn updates_match_the_loops(isa: Isa, scheduled: bool) {
    let mut m = model_file(format!("{MODELS}mlp.nn"));
    if scheduled && let Some(t) = m.train.as_mut() {
        t.schedule = nnc_check::Decay::Cosine { min: 0.0 }.into();
    }
    let train = m.train.clone().unwrap();
    let input = InputSpec::of(&train.data, &m).unwrap();
    let targets = TargetSpec::of(&train.data, &m);
    let c = compile(&m, 32, input, targets).unwrap();
    let step = &c.train_step;
    let programs: Vec<Program> = [false, true]
        .into_iter()
        .map(|portable| {
            let options = Options {
                portable,
                isa: Some(isa),
                ..Options::default()
            };
            let mut p = Program::compile(&step.func, options).unwrap();
            for (i, t) in init_params(&m, 1).iter().enumerate() {
                p.f32_param(step.data_params + i)
                    .unwrap()
                    .copy_from_slice(&t.data);
            }
            p
        })
        .collect();
    let [mut fast, mut portable] = <[Program; 2]>::try_from(programs).ok().unwrap();
    assert_eq!(step.learning_rate.is_some(), scheduled);
    let label = format!("rmsprop on {}", isa.name());
    let recognised = (0..fast.kernel_count())
        .filter(|&k| fast.kernel_label(k).contains(&label))
        .count();
    assert_eq!(recognised, 4, "one update per parameter");
    let mut rng = Rng::new(3);
    let n = step.params.len() + step.states.len();
    for s in 0..3 {
        let data = data_inputs(&step.func, step.data_params, targets, &mut rng, false);
        for p in [&mut fast, &mut portable] {
            for (i, t) in data.iter().enumerate() {
                load(p, i, t);
            }
            if let Some(i) = step.learning_rate {
                p.f32_param(i).unwrap()[0] = 0.001 / (1 + s) as f32;
            }
            p.run();
        }
        for k in 2..2 + n {
            let (a, b) = (fast.result(k).to_vec(), portable.result(k).to_vec());
            for (j, (x, y)) in a.iter().zip(&b).enumerate() {
                assert_eq!(
                    x.to_bits(),
                    y.to_bits(),
                    "{isa:?} step {s} result {k} [{j}]: {x} vs {y}"
                );
            }
            fast.commit(k, step.data_params + k - 2);
            portable.commit(k, step.data_params + k - 2);
        }
    }
}

/// At LeNet-5's own batch of 32, each thread's part has sixteen samples: C3's input gradient
/// then puts the samples in the lanes (`samples.rs`), which the batch of 16 above does not.
#[test]
fn lenet5_at_its_batch() {
    check_at(
        &format!("{MODELS}lenet5.nn"),
        2,
        Options::default(),
        false,
        32,
    );
}

/// LeNet-5's two pool gradients, with their ReLU masks and bias gradients, are recognised
/// as one pass each, and its two convolutions add bias and ReLU in the direct kernels, where
/// the CPU has a vector unit (the `lenet5` test checks their results against the
/// interpreter, at the batch of 16 it uses, where they are recognised too).
#[test]
fn lenet5_recognised_kernels() {
    let m = model_file(format!("{MODELS}lenet5.nn"));
    let train = m.train.clone().unwrap();
    let input = InputSpec::of(&train.data, &m).unwrap();
    let targets = TargetSpec::of(&train.data, &m);
    for batch in [16, 32] {
        let c = compile(&m, batch, input.clone(), targets).unwrap();
        // (Not on 3 threads: a third of a pooling's 16 × 6 planes does not end on a sample,
        // so the pool gradient's parts do not line up with its mask loop's, which then runs
        // after it: right, one pass slower.)
        for options in variants().into_iter().filter(|o| o.threads != 3) {
            let p = Program::compile(&c.train_step.func, options).unwrap();
            let count = |note: &str| {
                (0..p.kernel_count())
                    .filter(|&k| p.kernel_label(k).contains(note))
                    .count()
            };
            let want = if options.portable { 0 } else { 2 };
            let what = format!("batch {batch}, {options:?}");
            assert_eq!(count("[one pass on"), want, "{what}");
            assert_eq!(
                count("[bias and relu in the direct kernel]"),
                want,
                "{what}"
            );
        }
    }
}

/// Two trainings at the same thread count give the same bits, whichever thread claimed which
/// part; at each count from 1 to 4 (on LeNet-5: split convolutions and their partial filter
/// gradients, pooling, fused loops).
#[test]
fn same_threads_same_bits() {
    use nnc_jit::{BatchData, CompiledModel, InputData, TargetData};
    let m = model_file(format!("{MODELS}lenet5.nn"));
    let train = m.train.clone().unwrap();
    let input = InputSpec::of(&train.data, &m).unwrap();
    let targets = TargetSpec::of(&train.data, &m);
    let size = 16;
    let c = compile(&m, size, input.clone(), targets).unwrap();
    let step = &c.train_step;
    let mut rng = Rng::new(4);
    let batches: Vec<Vec<Tensor<f32>>> = (0..3)
        .map(|_| data_inputs(&step.func, step.data_params, targets, &mut rng, false))
        .collect();
    let run = |threads: usize| -> Vec<u32> {
        let mut trainer =
            CompiledModel::with_threads(&m, input.clone(), targets, 5, threads).unwrap();
        for data in &batches {
            let (Tensor::U8(x), Tensor::I32(y)) = (&data[0], &data[1]) else {
                panic!("mnist data")
            };
            let batch = BatchData {
                size,
                inputs: InputData::U8(x.as_slice().unwrap()),
                targets: TargetData::Classes(y.as_slice().unwrap()),
                key: 0,
                lr: 0.05,
            };
            trainer.train_step(&batch).unwrap();
        }
        let (params, states) = trainer.snapshot().unwrap();
        params
            .iter()
            .chain(&states)
            .flatten()
            .map(|x| x.to_bits())
            .collect()
    };
    let mut by_count = Vec::new();
    for threads in 1..=4 {
        let (a, b) = (run(threads), run(threads));
        assert!(!a.is_empty());
        assert!(a == b, "{threads} threads: two runs differ");
        by_count.push(a);
    }
    // The control: the counts split the sums differently, so their bits differ somewhere
    // (else this test could not tell a part run twice or not at all from a right one).
    assert!(
        by_count[0] != by_count[1],
        "1 and 2 threads gave the same bits"
    );
}

/// The trainer moves weights between programs of different batch sizes and to evaluation
/// without losing a step: it tracks an interpreter run with the same sequence of batches.
/// With a schedule, each step's learning rate reaches the program that runs it.
#[test]
fn trainer_across_batch_sizes() {
    use nnc_jit::{BatchData, CompiledModel, InputData, TargetData};
    let mut m = model_file(format!("{MODELS}lenet5.nn"));
    if let Some(t) = m.train.as_mut() {
        t.schedule = nnc_check::Decay::Cosine { min: 0.0 }.into();
    }
    let train = m.train.clone().unwrap();
    let input = InputSpec::of(&train.data, &m).unwrap();
    let targets = TargetSpec::of(&train.data, &m);
    let mut trainer = CompiledModel::new(&m, input.clone(), targets, 5).unwrap();
    let mut params: Vec<Tensor<f32>> = init_params(&m, 5)
        .into_iter()
        .map(|t| Tensor::F(ArrayD::from_shape_vec(IxDyn(&t.shape), t.data).unwrap()))
        .collect();
    let mut states: Option<Vec<Tensor<f32>>> = None;
    let mut rng = Rng::new(2);
    for (s, size) in [6usize, 3, 6, 3, 6].into_iter().enumerate() {
        let c = compile(&m, size, input.clone(), targets).unwrap();
        let step = &c.train_step;
        let st = states.get_or_insert_with(|| {
            step.states
                .iter()
                .map(|s| Tensor::F(ArrayD::from_elem(IxDyn(&s.ty.shape), s.init as f32)))
                .collect()
        });
        let data = data_inputs(&step.func, step.data_params, targets, &mut rng, false);
        let (Tensor::U8(x), Tensor::I32(y)) = (&data[0], &data[1]) else {
            panic!("mnist data")
        };
        let batch = BatchData {
            size,
            inputs: InputData::U8(x.as_slice().unwrap()),
            targets: TargetData::Classes(y.as_slice().unwrap()),
            key: 0,
            // Large and different each step, so that a rate that does not arrive shows.
            lr: 0.05 * (1 + s) as f32,
        };
        let got = trainer.train_step(&batch).unwrap();
        let mut inputs = data.clone();
        inputs.extend(params.iter().cloned());
        inputs.extend(st.iter().cloned());
        assert_eq!(
            step.learning_rate,
            Some(inputs.len()),
            "the rate is the last parameter"
        );
        inputs.push(Tensor::F(ArrayD::from_elem(IxDyn(&[]), batch.lr)));
        let out = interp::run_f32(&step.func, inputs).unwrap();
        close(
            got.loss as f32,
            out[0].scalar().unwrap() as f32,
            &format!("step {s} (batch {size}) loss"),
        );
        let np = params.len();
        params = out[2..2 + np].to_vec();
        *st = out[2 + np..2 + np + st.len()].to_vec();
        // Evaluate after every step: the eval program must see the newest weights.
        let e = trainer.eval_step(&batch).unwrap();
        let ev = interp::run_f32(
            &c.eval_step,
            data.iter()
                .take(2)
                .cloned()
                .chain(params.iter().cloned())
                .collect(),
        )
        .unwrap();
        close(
            e.loss as f32,
            ev[0].scalar().unwrap() as f32,
            &format!("eval after step {s}"),
        );
    }
}
