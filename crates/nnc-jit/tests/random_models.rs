//! Property test: randomly generated small models (widths, kernels, strides, paddings,
//! pooling, activations, dropout, losses, optimizers) train identically on the JIT and on the
//! reference interpreter. Every case is generated from its seed, so a failure is reproducible
//! by its number.

mod support;

use ndarray::{ArrayD, IxDyn};
use nnc_ir::DType;
use nnc_ir::compile::compile;
use nnc_ir::init::{Rng, init_params};
use nnc_ir::interp::{self, Tensor};
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_jit::testing::vector_units_or_skip;
use nnc_jit::{Options, Program};
use support::{agree, inputs, load};

struct Gen(Rng);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn chance(&mut self, p: f64) -> bool {
        self.0.uniform() < p
    }
}

const ACTIVATIONS: &[&str] = &[
    "relu",
    "sigmoid",
    "tanh",
    "leaky_relu(0.1)",
    "elu",
    "softplus",
    "abs",
    "identity",
    "tanh(scale: 1.7159, slope: 2/3)",
];

/// A random model and train block, with a learning-rate schedule if `scheduled`; `None` when
/// the draw does not check (a window larger than its input), in which case the caller draws
/// again. Windows that do not tile are accepted (rounded down), so they run slice and pad.
fn random_model(g: &mut Gen, scheduled: bool) -> Option<(String, usize)> {
    let classes = 2 + g.below(4);
    let mut layers = Vec::new();
    let input = if g.chance(0.6) {
        let (c, h) = (1 + g.below(3), 6 + g.below(7));
        let w = h + g.below(3);
        for _ in 0..1 + g.below(2) {
            let k = 1 + g.below(3);
            let stride = 1 + g.below(2);
            let pad = g.below(2);
            // Sometimes 16 or more filters: the kernels with the channels in the lanes.
            let filters = if g.chance(0.4) {
                16 + g.below(9)
            } else {
                1 + g.below(4)
            };
            layers.push(format!(
                "conv2d({filters}, kernel: {k}, stride: {stride}, padding: {pad})"
            ));
            layers.push(g.pick(ACTIVATIONS).to_string());
            if g.chance(0.5) {
                layers.push(
                    g.pick(&[
                        "maxpool(2)",
                        "avgpool(2)",
                        "subsample(2)",
                        "maxpool(2, stride: 1)",
                    ])
                    .to_string(),
                );
            }
        }
        layers.push("flatten".into());
        format!("f32[{c}, {h}, {w}]")
    } else {
        format!("f32[{}]", 2 + g.below(20))
    };
    for _ in 0..g.below(3) {
        layers.push(format!(
            "dense({}) -> {}",
            1 + g.below(12),
            g.pick(ACTIVATIONS)
        ));
        if g.chance(0.3) {
            layers.push("dropout(0.3)".into());
        }
    }
    let loss = g.pick(&["softmax_cross_entropy", "cross_entropy", "mse"]);
    layers.push(format!("dense({classes})"));
    if loss == "cross_entropy" {
        layers.push("softmax".into());
    } else if loss == "mse" && g.chance(0.5) {
        layers.push(g.pick(&["sigmoid", "tanh"]).to_string());
    }
    let decay = if g.chance(0.3) {
        ", weight_decay: 0.01"
    } else {
        ""
    };
    let optimizer = match g.below(6) {
        0 => format!("sgd(lr: 0.1{decay})"),
        1 => format!("momentum(lr: 0.05, momentum: 0.9{decay})"),
        2 => format!("nesterov(lr: 0.05, momentum: 0.8{decay})"),
        3 => format!("adagrad(lr: 0.05{decay})"),
        4 => format!("rmsprop(lr: 0.01, rho: 0.8{decay})"),
        _ => format!("adam(lr: 0.01{decay})"),
    };
    // A schedule makes the learning rate a parameter of the step.
    let schedule = if scheduled {
        "    schedule cosine\n"
    } else {
        ""
    };
    let body: Vec<String> = layers.iter().map(|l| format!("    {l}")).collect();
    let text = format!(
        "model random {{\n    input x: {input}\n{}\n}}\n\ntrain random {{\n    data idx(images: \"x\", labels: \"y\", classes: {classes})\n    loss {loss}\n    optimizer {optimizer}\n{schedule}    batch 8\n}}\n",
        body.join("\n")
    );
    let checked = nnc_check::check_source(&text);
    (!checked.has_errors()).then_some((text, classes))
}

#[test]
fn random_models_train_identically() {
    let (mut checked, mut prologues, mut epilogues, mut scheduled) = (0, 0, 0, 0);
    // The portable kernels run too (every other pair of cases), so no unit is no failure.
    let units = vector_units_or_skip("random_models_train_identically");
    for case in 0..60u64 {
        let mut g = Gen(Rng::new(case));
        let (text, classes) = loop {
            if let Some(m) = random_model(&mut g, case % 3 == 0) {
                break m;
            }
        };
        let model = nnc_check::check_source(&text).models.remove(0);
        let input = InputSpec {
            dtype: DType::F32,
            sample: model.input.shape.0.clone(),
            scale: 1.0,
            shift: 0.0,
            pad: 0,
            flatten: false,
        };
        let targets = TargetSpec::Classes(classes);
        let c = compile(&model, 8, input, targets)
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
        let step = &c.train_step;
        // Every other case splits every kernel that can split, so that the split and fused
        // paths run on these small shapes too, on 1 to 4 threads in turn; every other pair
        // convolves with the portable kernels rather than the vectorised ones, which take
        // each vector unit the CPU has in turn.
        let options = Options {
            split_small: case % 2 == 1,
            threads: 1 + (case as usize / 2) % 4,
            portable: case % 4 >= 2,
            isa: units.get((case as usize / 4) % units.len().max(1)).copied(),
            ..Options::default()
        };
        let mut p = Program::compile(&step.func, options)
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
        let schedule = p.describe();
        prologues += schedule.matches("  prologue loop").count();
        epilogues += schedule.matches("  epilogue loop").count();
        let mut state: Vec<Tensor<f32>> = init_params(&model, case)
            .into_iter()
            .map(|t| Tensor::F(ArrayD::from_shape_vec(IxDyn(&t.shape), t.data).unwrap()))
            .chain(
                step.states
                    .iter()
                    .map(|s| Tensor::F(ArrayD::from_elem(IxDyn(&s.ty.shape), s.init as f32))),
            )
            .collect();
        for (i, t) in state.iter().enumerate() {
            load(&mut p, step.data_params + i, t);
        }
        // A scheduled rate: part way down from the optimizer's. Like the data, it is loaded
        // before every step (the step may reuse its buffer).
        let lr: Option<(usize, Tensor<f32>)> = step.learning_rate.map(|i| {
            let base = model.train.as_ref().map_or(0.01, |t| t.optimizer.lr());
            (
                i,
                Tensor::F(ArrayD::from_elem(IxDyn(&[]), 0.7 * base as f32)),
            )
        });
        scheduled += usize::from(lr.is_some());
        let mut rng = Rng::new(case + 1000);
        for s in 0..3 {
            let data = inputs(&step.func, step.data_params, classes, 99, &mut rng);
            for (i, t) in data.iter().enumerate() {
                load(&mut p, i, t);
            }
            if let Some((i, t)) = &lr {
                load(&mut p, *i, t);
            }
            let out = interp::run_f32(
                &step.func,
                data.into_iter()
                    .chain(state.iter().cloned())
                    .chain(lr.iter().map(|(_, t)| t.clone()))
                    .collect(),
            )
            .unwrap();
            p.run();
            let (jl, il) = (p.result(0)[0], out[0].scalar().unwrap() as f32);
            assert!(
                agree(jl, il),
                "case {case} step {s}: loss {jl} (jit) vs {il} (interpreter)\n{text}"
            );
            for k in 0..state.len() {
                let want = out[2 + k].as_f().unwrap();
                for (j, (&a, &b)) in p.result(2 + k).iter().zip(want.iter()).enumerate() {
                    assert!(
                        agree(a, b),
                        "case {case} step {s}: result {} [{j}] {a} vs {b}\n{text}",
                        2 + k
                    );
                }
                p.commit(2 + k, step.data_params + k);
            }
            state = out[2..2 + state.len()].to_vec();
        }
        checked += 1;
        if std::env::var_os("NNC_SHOW_MODELS").is_some() {
            eprintln!("case {case}:\n{text}");
        }
    }
    assert_eq!(checked, 60);
    assert_eq!(scheduled, 20, "models with a schedule");
    // The fused paths were exercised.
    assert!(
        prologues >= 4 && epilogues >= 30,
        "{prologues} prologues, {epilogues} epilogues"
    );
}

/// The same seed and thread count give bitwise identical training.
#[test]
fn training_is_bitwise_reproducible() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/lenet5.nn"
    ))
    .unwrap();
    let m = nnc_check::check_source(&text).models.remove(0);
    let train = m.train.clone().unwrap();
    let input = InputSpec::of(&train.data, &m).unwrap();
    let targets = TargetSpec::of(&train.data, &m);
    let run = || {
        let c = compile(&m, 32, input.clone(), targets).unwrap();
        let step = &c.train_step;
        let mut p = Program::compile(&step.func, Options::default()).unwrap();
        for (i, t) in init_params(&m, 1).iter().enumerate() {
            p.f32_param(step.data_params + i)
                .unwrap()
                .copy_from_slice(&t.data);
        }
        let mut rng = Rng::new(3);
        let mut losses = Vec::new();
        for _ in 0..5 {
            let data = inputs(&step.func, step.data_params, 10, 99, &mut rng);
            for (i, t) in data.iter().enumerate() {
                load(&mut p, i, t);
            }
            p.run();
            losses.push(p.result(0)[0].to_bits());
            for k in 0..step.params.len() + step.states.len() {
                p.commit(2 + k, step.data_params + k);
            }
        }
        let weights: Vec<u32> = p.result(2).iter().map(|x| x.to_bits()).collect();
        (losses, weights)
    };
    assert_eq!(run(), run());
}
