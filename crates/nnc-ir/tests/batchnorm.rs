//! Batch normalisation lowered to primitive ops: batch statistics (biased variance) and the
//! running statistics' update in training, the running statistics in evaluation, the update
//! returned by the train step in the statistics' place, and gradients through the batch
//! statistics checked against finite differences.

use ndarray::{ArrayD, IxDyn};
use nnc_check::{Loss, Model, Score, check_source};
use nnc_ir::compile::compile;
use nnc_ir::gradcheck::check_model;
use nnc_ir::interp::{Tensor, run_f64};
use nnc_ir::lower::{InputSpec, LowerOptions, TargetSpec, lower};
use nnc_ir::types::DType;

const EPS: f64 = 0.001;

/// `x: f32[3] -> batchnorm(momentum: 0.9)`, trained under MSE on an inline table.
fn vector_model() -> Model {
    let text = "model m {\n    input x: f32[3]\n    bn: batchnorm(momentum: 0.9)\n}\n\
                train m {\n    data {\n 1 2 3 -> 0 0 0\n 3 0 3 -> 1 1 1\n }\n    \
                loss mse\n    optimizer sgd(lr: 0.5)\n    batch 2\n}\n";
    let checked = check_source(text);
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    checked.models[0].clone()
}

fn vector_input() -> InputSpec {
    InputSpec {
        dtype: DType::F32,
        sample: vec![3],
        scale: 1.0,
        shift: 0.0,
        pad: 0,
        flatten: false,
    }
}

fn tensor(shape: &[usize], data: &[f64]) -> Tensor<f64> {
    Tensor::F(ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).expect("shape"))
}

fn values(t: &Tensor<f64>) -> Vec<f64> {
    t.as_f().expect("f32").iter().copied().collect()
}

fn close(found: &[f64], want: &[f64]) {
    assert_eq!(found.len(), want.len(), "{found:?} vs {want:?}");
    for (a, b) in found.iter().zip(want) {
        assert!((a - b).abs() < 1e-9, "{found:?} vs {want:?}");
    }
}

/// Samples [1, 2, 3] and [3, 0, 3]: means [2, 1, 3], biased variances [1, 1, 0].
const X: [f64; 6] = [1.0, 2.0, 3.0, 3.0, 0.0, 3.0];

fn opts(training: bool) -> LowerOptions {
    LowerOptions {
        batch: 2,
        training,
        input: vector_input(),
        targets: TargetSpec::Values(3),
        loss: Loss::Mse,
        score: Score::Mae,
    }
}

#[test]
fn training_normalises_with_the_batch_and_updates_the_running_statistics() {
    let model = vector_model();
    let f = lower(&model, &opts(true)).expect("lowers");
    assert_eq!(f.running.len(), 2, "mean and variance are running");
    let gamma = [1.0, 2.0, 0.5];
    let beta = [0.0, 1.0, -1.0];
    let (mean, var) = ([0.5, 0.5, 0.5], [2.0, 2.0, 2.0]);
    let out = run_f64(
        &f.func,
        vec![
            tensor(&[2, 3], &X),
            tensor(&[2, 3], &[0.0; 6]),
            tensor(&[3], &gamma),
            tensor(&[3], &beta),
            tensor(&[3], &mean),
            tensor(&[3], &var),
        ],
    )
    .expect("runs");
    // (x − mean)/√(var + ε)·γ + β with the batch's mean [2, 1, 3] and variance [1, 1, 0].
    let s = 1.0 / (1.0 + EPS).sqrt();
    let want = [
        -s * gamma[0] + beta[0],
        s * gamma[1] + beta[1],
        beta[2],
        s * gamma[0] + beta[0],
        -s * gamma[1] + beta[1],
        beta[2],
    ];
    close(&values(&out[2]), &want);
    // 0.9·running + 0.1·batch, the variance the biased one (Keras').
    close(&values(&out[3]), &[0.65, 0.55, 0.75]);
    close(&values(&out[4]), &[1.9, 1.9, 1.8]);
}

#[test]
fn evaluation_reads_the_running_statistics() {
    let model = vector_model();
    let f = lower(&model, &opts(false)).expect("lowers");
    assert!(f.running.is_empty(), "nothing is updated in evaluation");
    assert_eq!(f.func.results.len(), 3);
    let (gamma, beta) = ([1.0, 2.0, 0.5], [0.0, 1.0, -1.0]);
    let (mean, var) = ([1.0, 0.0, -1.0], [4.0, 1.0, 0.25]);
    let out = run_f64(
        &f.func,
        vec![
            tensor(&[2, 3], &X),
            tensor(&[2, 3], &[0.0; 6]),
            tensor(&[3], &gamma),
            tensor(&[3], &beta),
            tensor(&[3], &mean),
            tensor(&[3], &var),
        ],
    )
    .expect("runs");
    let want: Vec<f64> = X
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let c = i % 3;
            (x - mean[c]) / (var[c] + EPS).sqrt() * gamma[c] + beta[c]
        })
        .collect();
    close(&values(&out[2]), &want);
}

#[test]
fn the_train_step_returns_the_new_statistics_in_their_place() {
    let model = vector_model();
    let c = compile(&model, 2, vector_input(), TargetSpec::Values(3)).expect("compiles");
    let step = &c.train_step;
    assert_eq!(
        step.params,
        ["bn.gamma", "bn.beta", "bn.running_mean", "bn.running_var"]
    );
    assert!(step.states.is_empty(), "sgd has no state");
    let out = run_f64(
        &step.func,
        vec![
            tensor(&[2, 3], &X),
            tensor(&[2, 3], &[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
            tensor(&[3], &[1.0; 3]),
            tensor(&[3], &[0.0; 3]),
            tensor(&[3], &[0.0; 3]),
            tensor(&[3], &[1.0; 3]),
        ],
    )
    .expect("runs");
    // loss, correct, then gamma', beta', running_mean', running_var', then 4 gradient norms.
    assert_eq!(out.len(), 2 + 4 + 4);
    close(&values(&out[4]), &[0.2, 0.1, 0.3]);
    close(&values(&out[5]), &[1.0, 1.0, 0.9]);
    // γ and β were trained: the targets' mean, 0.5, pulls β up.
    let beta: Vec<f64> = values(&out[3]);
    assert!(beta.iter().all(|&b| b > 0.0), "{beta:?}");
    // The statistics have no gradient to report; γ and β do.
    assert_eq!(out[8].scalar().expect("norm"), 0.0);
    assert_eq!(out[9].scalar().expect("norm"), 0.0);
    assert!(out[7].scalar().expect("norm") > 0.0);
}

#[test]
fn gradients_flow_through_the_batch_statistics() {
    // Per channel after a convolution, per feature after a dense layer, and a residual add.
    let text = "model m {\n    input x: f32[1, 28, 28]\n    \
                stem: conv2d(3, kernel: 4, stride: 4, bias: false) -> batchnorm -> relu\n    \
                r: conv2d(3, kernel: 3, padding: same, bias: false) -> batchnorm(momentum: 0.5, eps: 0.01)\n    \
                add(stem, r) -> tanh -> flatten\n    \
                dense(5, bias: false) -> batchnorm -> sigmoid\n    \
                out: dense(10)\n}\n\
                train m {\n    data mnist()\n    loss softmax_cross_entropy\n    optimizer sgd(lr: 0.1)\n}\n";
    let checked = check_source(text);
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    let model = checked.models[0].clone();
    let input = InputSpec {
        dtype: DType::F32,
        sample: model.input.shape.0.clone(),
        scale: 1.0,
        shift: 0.0,
        pad: 0,
        flatten: false,
    };
    let report = check_model(&model, &input, TargetSpec::Classes(10), 4, 24, 7).expect("checks");
    let names: Vec<&str> = report.iter().map(|r| r.name.as_str()).collect();
    assert!(
        !names.iter().any(|n| n.contains("running")),
        "running statistics are not differentiated: {names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".gamma")).count(),
        3,
        "{names:?}"
    );
    for r in &report {
        assert!(r.passed(), "{r:?}");
        assert!(r.max_grad > 0.0, "a gradient reaches {}: {r:?}", r.name);
    }
}
