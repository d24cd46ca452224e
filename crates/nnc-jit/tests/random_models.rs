//! Property test: randomly generated small models (widths, kernels, strides, paddings,
//! pooling, activations, dropout, losses, optimizers), about half of them graphs (residual
//! `add`s and `concat`s of conv branches or dense vectors, fan-out, `global_avgpool` heads),
//! train identically on the JIT and on the reference interpreter. Every case is generated from its seed, so a failure is reproducible
//! by its number.

mod support;

use ndarray::{ArrayD, IxDyn};
use nnc_ir::DType;
use nnc_ir::compile::compile;
use nnc_ir::init::{Rng, init_params};
use nnc_ir::interp::{self, Tensor};
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_jit::testing::vector_units_or_skip;
use nnc_jit::{Isa, Options, Program};
use support::{Tolerance, agree, inputs, load, widen};

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

/// What a random model's graph holds beyond a chain, counted over the cases.
#[derive(Default, Clone, Copy, PartialEq, Debug)]
struct Graph {
    adds: usize,
    concats: usize,
    global_avgpools: usize,
    /// Values read by more than one line (by name, or by name and by the next line).
    fan_outs: usize,
}

impl Graph {
    fn is_dag(&self) -> bool {
        self.adds + self.concats > 0
    }
}

/// A few filters, sometimes 16 or more (the kernels with the channels in the lanes).
fn filters(g: &mut Gen) -> usize {
    if g.chance(0.3) {
        16 + g.below(9)
    } else {
        1 + g.below(6)
    }
}

/// A branching block over the map `from` with `c` channels, as labelled lines; every branch
/// keeps the height and width (stride 1, `same` padding), so each merge checks. Returns the
/// label of the block's output and its channels.
fn random_conv_block(
    g: &mut Gen,
    n: usize,
    from: &str,
    c: usize,
    lines: &mut Vec<String>,
    graph: &mut Graph,
) -> (String, usize) {
    let act = |g: &mut Gen| {
        if g.chance(0.7) {
            format!(" -> {}", g.pick(ACTIVATIONS))
        } else {
            String::new()
        }
    };
    let out = format!("j{n}");
    graph.fan_outs += 1;
    if g.chance(0.5) {
        // Residual: one or two branches of `c` channels added to the shortcut.
        let branches = 1 + usize::from(g.chance(0.3));
        let mut names = vec![from.to_string()];
        for b in 0..branches {
            let name = format!("r{n}_{b}");
            let mut line = format!("{name}: {from}");
            for _ in 0..1 + g.below(2) {
                let k = 1 + g.below(3);
                line += &format!(" -> conv2d({c}, kernel: {k}, padding: same){}", act(g));
            }
            lines.push(line);
            names.push(name);
        }
        lines.push(format!("{out}: add({}){}", names.join(", "), act(g)));
        graph.adds += 1;
        (out, c)
    } else {
        // Inception-style: branches of differing channels, concatenated, the input with them
        // sometimes.
        let mut names = Vec::new();
        let mut channels = 0;
        if g.chance(0.5) {
            names.push(from.to_string());
            channels += c;
        }
        for b in 0..2 + g.below(2) {
            let name = format!("b{n}_{b}");
            let f = filters(g);
            let k = 1 + g.below(3);
            lines.push(format!(
                "{name}: {from} -> conv2d({f}, kernel: {k}, padding: same){}",
                act(g)
            ));
            names.push(name);
            channels += f;
        }
        lines.push(format!("{out}: concat({})", names.join(", ")));
        graph.concats += 1;
        (out, channels)
    }
}

/// A random model and train block, with a learning-rate schedule if `scheduled`; `None` when
/// the draw does not check (a window larger than its input), in which case the caller draws
/// again. Windows that do not tile are accepted (rounded down), so they run slice and pad.
/// About half the models are graphs (`Graph::is_dag`), built so that they always check.
fn random_model(g: &mut Gen, scheduled: bool) -> Option<(String, usize, Graph)> {
    let classes = 2 + g.below(4);
    let mut layers = Vec::new();
    let mut graph = Graph::default();
    let dag = g.chance(0.5);
    let input = if dag && g.chance(0.6) {
        // A stem that leaves at least 4x4, one or two blocks, a head.
        let (c, h) = (1 + g.below(3), 6 + g.below(7));
        let w = h + g.below(3);
        let stem = filters(g);
        let (k, pad) = (1 + g.below(3), g.below(2));
        layers.push(format!(
            "s0: conv2d({stem}, kernel: {k}, padding: {pad}) -> {}",
            g.pick(ACTIVATIONS)
        ));
        let (mut from, mut channels) = ("s0".to_string(), stem);
        for n in 0..1 + g.below(2) {
            let (out, c) = random_conv_block(g, n, &from, channels, &mut layers, &mut graph);
            (from, channels) = (out, c);
        }
        if g.chance(0.3) {
            layers.push(format!(
                "m: {from} -> {}",
                g.pick(&["maxpool(2)", "avgpool(2)"])
            ));
            from = "m".into();
        }
        match g.below(3) {
            0 => layers.push(format!("{from} -> flatten")),
            1 => {
                layers.push(format!("{from} -> global_avgpool"));
                graph.global_avgpools += 1;
            }
            _ => {
                // Both, joined: a concat of vectors over a fanned-out map.
                layers.push(format!("p: {from} -> global_avgpool"));
                layers.push(format!(
                    "f: {from} -> flatten -> dense({}) -> {}",
                    1 + g.below(12),
                    g.pick(ACTIVATIONS)
                ));
                layers.push("concat(p, f)".into());
                graph.global_avgpools += 1;
                graph.concats += 1;
                graph.fan_outs += 1;
            }
        }
        format!("f32[{c}, {h}, {w}]")
    } else if dag {
        // Vectors: a residual add or a concat of dense branches, the input among them
        // sometimes.
        let n = 2 + g.below(20);
        let width = 1 + g.below(12);
        let from = if g.chance(0.4) {
            "x".to_string()
        } else {
            layers.push(format!("h: dense({width}) -> {}", g.pick(ACTIVATIONS)));
            "h".to_string()
        };
        let w = if from == "x" { n } else { width };
        graph.fan_outs += 1;
        if g.chance(0.5) {
            layers.push(format!(
                "r: {from} -> dense({w}) -> {} -> dense({w})",
                g.pick(ACTIVATIONS)
            ));
            layers.push(format!("add({from}, r) -> {}", g.pick(ACTIVATIONS)));
            graph.adds += 1;
        } else {
            let branches = 1 + g.below(2);
            let mut names = vec![from.clone()];
            for b in 0..branches {
                layers.push(format!(
                    "v{b}: {from} -> dense({}) -> {}",
                    1 + g.below(12),
                    g.pick(ACTIVATIONS)
                ));
                names.push(format!("v{b}"));
            }
            if g.chance(0.5) {
                names.remove(0);
            }
            if names.len() < 2 {
                names.push(from.clone());
            }
            layers.push(format!("concat({})", names.join(", ")));
            graph.concats += 1;
        }
        format!("f32[{n}]")
    } else if g.chance(0.6) {
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
    // A graph is built so that it checks, without even a warning (an unused branch).
    assert!(
        !graph.is_dag() || checked.diagnostics.is_empty(),
        "a random graph does not check cleanly: {:?}\n{text}",
        checked.diagnostics
    );
    (!checked.has_errors()).then_some((text, classes, graph))
}

/// `text` with a `batchnorm` after some of its convolutions and hidden dense layers (their
/// call's closing parenthesis), drawn from its own generator so that the models themselves
/// stay those of the seed; and how many it added. Only under the optimizers whose step is
/// proportional to the gradient: the gradient of a weight before a batchnorm is a sum that
/// the batch mean's removal nearly cancels, and Adam's, Adagrad's and RMSProp's first step
/// would take that rounding-level gradient to ±lr, the JIT's rounding and the interpreter's
/// apart by more than the interpreter's own measured noise.
fn with_batchnorms(text: &str, g: &mut Gen) -> (String, usize) {
    let proportional = ["optimizer sgd", "optimizer momentum", "optimizer nesterov"];
    if !proportional.iter().any(|o| text.contains(o)) {
        return (text.to_string(), 0);
    }
    let (model, train) = text.split_at(text.find("\n}\n").expect("a model block"));
    let lines: Vec<&str> = model.lines().collect();
    let mut added = 0;
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        // The last line holds the output layer.
        if i + 1 == lines.len() {
            out.push(line.to_string());
            continue;
        }
        let mut edited = String::new();
        let mut rest = *line;
        while let Some(at) = ["conv2d(", "dense("]
            .iter()
            .filter_map(|call| rest.find(call))
            .min()
        {
            let close = at + rest[at..].find(')').expect("a closed call");
            edited += &rest[..=close];
            rest = &rest[close + 1..];
            if g.chance(0.4) {
                edited += " -> batchnorm";
                added += 1;
            }
        }
        edited += rest;
        out.push(edited);
    }
    (out.join("\n") + train, added)
}

/// Trains case `case`'s model `text` three steps on the JIT (with the case's options) and on
/// the interpreter, asserting that they agree; returns the prologue and epilogue loops the
/// JIT's schedule fused, and whether the step had a scheduled learning rate.
fn train_both(case: u64, text: &str, classes: usize, units: &[Isa]) -> (usize, usize, usize) {
    let model = nnc_check::check_source(text).models.remove(0);
    let input = InputSpec {
        dtype: DType::F32,
        sample: model.input.shape.0.clone(),
        scale: 1.0,
        shift: 0.0,
        pad: 0,
        flatten: false,
    };
    let targets = TargetSpec::Classes(classes);
    let c =
        compile(&model, 8, input, targets).unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
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
    let prologues = schedule.matches("  prologue loop").count();
    let epilogues = schedule.matches("  epilogue loop").count();
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
    let scheduled = usize::from(lr.is_some());
    let mut rng = Rng::new(case + 1000);
    for s in 0..3 {
        let data = inputs(&step.func, step.data_params, classes, 99, &mut rng);
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
        // (the noise of `Tolerance`, for elements a sum or Adam's division cancels).
        let exact = interp::run_f64(&step.func, args.iter().map(widen).collect()).unwrap();
        let out = interp::run_f32(&step.func, args).unwrap();
        p.run();
        let (jl, il) = (p.result(0)[0], out[0].scalar().unwrap() as f32);
        assert!(
            agree(jl, il),
            "case {case} step {s}: loss {jl} (jit) vs {il} (interpreter)\n{text}"
        );
        for k in 0..state.len() {
            let want = out[2 + k].as_f().unwrap();
            let wide: Vec<f64> = want.iter().map(|&x| x as f64).collect();
            let exact: Vec<f64> = exact[2 + k].as_f().unwrap().iter().copied().collect();
            let tol = Tolerance::of(&wide, &exact);
            for (j, (&a, &b)) in p.result(2 + k).iter().zip(want.iter()).enumerate() {
                // Each element within 1e-4 of itself, or within the result's scale and its
                // measured rounding noise (an element that Adam's first step takes from a
                // near-cancelled gradient to ±lr carries the gradient's rounding, amplified).
                assert!(
                    agree(a, b) || tol.agree(a as f64, b as f64),
                    "case {case} step {s}: result {} [{j}] {a} vs {b} (bound {:.2e})\n{text}",
                    2 + k,
                    tol.bound()
                );
            }
            p.commit(2 + k, step.data_params + k);
        }
        state = out[2..2 + state.len()].to_vec();
    }
    (prologues, epilogues, scheduled)
}

#[test]
fn random_models_train_identically() {
    let (mut checked, mut prologues, mut epilogues, mut scheduled) = (0, 0, 0, 0);
    // The graphs that trained identically: how many, and what they held.
    let (mut dags, mut graphs) = (0, Graph::default());
    let mut batchnorms = 0;
    // The portable kernels run too (every other pair of cases), so no unit is no failure.
    let units = vector_units_or_skip("random_models_train_identically");
    for case in 0..60u64 {
        let mut g = Gen(Rng::new(case));
        let (text, classes, graph) = loop {
            if let Some(m) = random_model(&mut g, case % 3 == 0) {
                break m;
            }
        };
        let (text, norms) = with_batchnorms(&text, &mut Gen(Rng::new(case ^ 0xb47c)));
        batchnorms += norms;
        let (p, e, sch) = train_both(case, &text, classes, &units);
        (prologues, epilogues, scheduled) = (prologues + p, epilogues + e, scheduled + sch);
        checked += 1;
        if graph.is_dag() {
            dags += 1;
            graphs.adds += graph.adds;
            graphs.concats += graph.concats;
            graphs.global_avgpools += graph.global_avgpools;
            graphs.fan_outs += graph.fan_outs;
        }
        if std::env::var_os("NNC_SHOW_MODELS").is_some() {
            eprintln!("case {case}:\n{text}");
        }
    }
    assert_eq!(checked, 60);
    assert_eq!(scheduled, 20, "models with a schedule");
    eprintln!("{dags} graphs trained identically: {graphs:?}");
    // A good share were graphs, with each kind of merge and the pooling head.
    assert!(
        dags >= 15
            && graphs.adds >= 5
            && graphs.concats >= 5
            && graphs.global_avgpools >= 3
            && graphs.fan_outs >= dags,
        "{dags} graphs: {graphs:?}"
    );
    assert!(batchnorms >= 20, "{batchnorms} batchnorm layers");
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
