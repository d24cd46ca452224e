//! Lowering of graph models: `concat` places each input at its offset along the first axis
//! after the batch, `add` sums, `global_avgpool` averages each channel, and a fan-out reads one
//! value twice; checked on the interpreter against values computed by hand.

use ndarray::{ArrayD, IxDyn};
use nnc_check::{Loss, Score, check_source};
use nnc_ir::interp::{Tensor, run_f64};
use nnc_ir::lower::{InputSpec, LowerOptions, TargetSpec, lower};
use nnc_ir::types::DType;

/// Runs the parameterless model `body` (input `f32[shape]`, batch 2) on `x` and returns its
/// output.
fn output(shape: &[usize], body: &str, x: Vec<f64>, outputs: usize) -> Vec<f64> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let text = format!(
        "model m {{\n    input x: f32[{}]\n{body}\n}}\n",
        dims.join(", ")
    );
    let checked = check_source(&text);
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    let model = &checked.models[0];
    let opts = LowerOptions {
        batch: 2,
        training: false,
        input: InputSpec {
            dtype: DType::F32,
            sample: shape.to_vec(),
            scale: 1.0,
            shift: 0.0,
            pad: 0,
            flatten: false,
        },
        targets: TargetSpec::Values(outputs),
        loss: Loss::Mse,
        score: Score::Mae,
    };
    let forward = lower(model, &opts).expect("lowers");
    let mut in_shape = vec![2];
    in_shape.extend(shape);
    let x = ArrayD::from_shape_vec(IxDyn(&in_shape), x).expect("input shape");
    let t = ArrayD::zeros(IxDyn(&[2, outputs]));
    let results = run_f64(&forward.func, vec![Tensor::F(x), Tensor::F(t)]).expect("runs");
    match &results[2] {
        Tensor::F(y) => y.iter().copied().collect(),
        _ => panic!("an f32 output"),
    }
}

#[test]
fn concat_of_vectors_places_each_at_its_offset() {
    // x = [1 -2 3], [-4 5 -6]; a = |x|; concat(x, a, x) per sample.
    let x = vec![1.0, -2.0, 3.0, -4.0, 5.0, -6.0];
    let y = output(&[3], "    a: abs\n    c: concat(x, a, x)", x, 9);
    #[rustfmt::skip]
    let want = vec![
        1.0, -2.0, 3.0, 1.0, 2.0, 3.0, 1.0, -2.0, 3.0,
        -4.0, 5.0, -6.0, 4.0, 5.0, 6.0, -4.0, 5.0, -6.0,
    ];
    assert_eq!(y, want);
}

#[test]
fn concat_of_maps_stacks_channels_and_add_sums() {
    // Two samples of one 2x2 channel; concat(x, d) where d = x + x (a fan-out read twice), then
    // the per-channel means.
    let x = vec![1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0];
    let y = output(
        &[1, 2, 2],
        "    d: add(x, x)\n    c: concat(x, d) -> global_avgpool",
        x,
        2,
    );
    assert_eq!(y, vec![2.5, 5.0, 25.0, 50.0]);
}
