//! `train` blocks: settings, data sources, losses and optimizers, and how they must agree with
//! the model they train.

use nnc_syntax::ast::{Call, Setting, TrainDecl, Value, ValueKind};
use nnc_syntax::diagnostic::quote;
use nnc_syntax::{Diagnostic, Span};

use crate::args::{self, Range, bind, named, pos};
use crate::model::{
    Activation, Augment, Data, Decay, EarlyStop, LayerKind, Loss, Metric, Model, Optimizer,
    Schedule, Score, Shape, Train,
};
use crate::suggest;

pub const SETTINGS: &[&str] = &[
    "data",
    "test",
    "loss",
    "optimizer",
    "batch",
    "epochs",
    "seed",
    "metrics",
    "validation",
    "early_stop",
    "augment",
    "schedule",
];
pub const LOSSES: &[&str] = &["mse", "cross_entropy", "softmax_cross_entropy"];
pub const OPTIMIZERS: &[&str] = &[
    "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "adamax", "nadam",
    "adadelta",
];
pub const DATA: &[&str] = &["mnist", "idx", "csv"];
pub const METRICS: &[&str] = &["loss", "accuracy", "mae"];
/// The largest batch: with a sample of at most 2^32 elements, a batch's tensors stay below
/// 2^56 elements, so no size computed from them overflows.
pub const MAX_BATCH: u64 = 1 << 24;

pub const SCHEDULES: &[&str] = &["constant", "cosine", "linear", "step", "exponential"];

/// The spans of a train block's settings, for labels in cross-checks with the model.
pub struct Spans {
    pub data: Span,
    pub test: Option<Span>,
    pub loss: Span,
    pub augment: Option<Span>,
    pub metrics: Option<Span>,
    pub batch: Option<Span>,
}

/// Checks a train block on its own. The cross-checks with the model are in [`against_model`].
pub fn check(decl: &TrainDecl, diags: &mut Vec<Diagnostic>) -> Option<(Train, Spans)> {
    let before = diags.len();
    let mut seen: Vec<&Setting> = Vec::new();
    for s in &decl.settings {
        let key = s.key.name.as_str();
        if !SETTINGS.contains(&key) {
            diags.push(
                Diagnostic::error(
                    "nnc::name::unknown_setting",
                    format!("unknown setting {}", quote(key)),
                )
                .label(s.key.span, "not a train setting")
                .help(suggest::help(key, "the settings", SETTINGS)),
            );
        } else if let Some(first) = seen.iter().find(|f| f.key.name == key) {
            diags.push(
                Diagnostic::error(
                    "nnc::train::duplicate_setting",
                    format!("`{key}` is set twice"),
                )
                .label(s.span, "set again here")
                .label(first.span, "first set here")
                .help("remove one of them"),
            );
        } else {
            seen.push(s);
        }
    }
    let get = |key: &str| seen.iter().find(|s| s.key.name == key).map(|s| &s.value);
    let header = Span::new(decl.span.start, decl.model.span.end);
    let require = |key: &str, example: &str, diags: &mut Vec<Diagnostic>| {
        let v = get(key);
        if v.is_none() {
            diags.push(
                Diagnostic::error(
                    "nnc::train::missing",
                    format!("the train block for `{}` has no `{key}`", decl.model.name),
                )
                .label(header, format!("`{key}` is missing"))
                .help(format!("add a line such as `{example}`")),
            );
        }
        v
    };

    let data_v = require("data", "data mnist(scale: 1/255)", diags);
    let loss_v = require("loss", "loss softmax_cross_entropy", diags);
    let opt_v = require("optimizer", "optimizer sgd(lr: 0.01)", diags);
    let data_src = data_v.and_then(|v| data(v, diags));
    let test = get("test").and_then(|v| data(v, diags));
    let loss = loss_v.and_then(|v| loss(v, diags));
    let optimizer = opt_v.and_then(|v| optimizer(v, diags));
    let positive = |key: &str, default: u64, diags: &mut Vec<Diagnostic>| {
        get(key).map_or(Some(default), |v| args::int_at_least(v, key, 1, diags))
    };
    let batch = positive("batch", 32, diags).and_then(|b| {
        if b <= MAX_BATCH {
            return Some(b);
        }
        if let Some(v) = get("batch") {
            diags.push(
                Diagnostic::error(
                    "nnc::range",
                    format!("`batch` must be at most {MAX_BATCH} (2^24), found {b}"),
                )
                .label(v.span, "too large")
                .help("a batch is held in memory at once: MNIST's whole training set is 60000"),
            );
        }
        None
    });
    let epochs = positive("epochs", 1, diags);
    let seed = get("seed").map_or(Some(0), |v| args::int_at_least(v, "seed", 0, diags));
    let metrics = get("metrics").map_or(Some(vec![Metric::Loss, Metric::Accuracy]), |v| {
        metrics(v, diags)
    });
    let validation = get("validation")
        .map(|v| {
            let open = Range {
                lo: 0.0,
                lo_open: true,
                hi: 1.0,
                hi_open: true,
            };
            args::float_in(v, "validation", open, diags)
        })
        .map_or(Some(None), |v| v.map(Some));
    let early_stop = get("early_stop")
        .map(|v| early_stop(v, diags))
        .map_or(Some(None), |v| v.map(Some));
    let augment = get("augment")
        .map(|v| augment(v, diags))
        .map_or(Some(None), |v| v.map(Some));
    let schedule = get("schedule").map_or(Some(Schedule::default()), |v| schedule(v, diags));
    if let (Some(v), None) = (get("early_stop"), get("validation")) {
        diags.push(
            Diagnostic::error(
                "nnc::train::early_stop_without_validation",
                "`early_stop` watches the validation loss, but there is no validation split",
            )
            .label(v.span, "needs validation data")
            .help("add `validation 0.1` to hold out 10 % of the training data"),
        );
    }
    // The L2 penalty on the gradient; `adamw` takes its `weight_decay` itself (decoupled).
    let weight_decay = opt_v.and_then(|v| match &v.kind {
        ValueKind::Call(c) if c.name.name == "adamw" => None,
        ValueKind::Call(c) => c
            .args()
            .iter()
            .find(|a| a.name.as_ref().is_some_and(|n| n.name == "weight_decay"))
            .map(|a| &a.value),
        _ => None,
    });
    let weight_decay = weight_decay.map_or(Some(0.0), |v| {
        args::float_in(v, "weight_decay", Range::NON_NEGATIVE, diags)
    });
    if diags.len() != before {
        return None;
    }
    let spans = Spans {
        data: data_v?.span,
        test: get("test").map(|v| v.span),
        loss: loss_v?.span,
        augment: get("augment").map(|v| v.span),
        metrics: get("metrics").map(|v| v.span),
        batch: get("batch").map(|v| v.span),
    };
    Some((
        Train {
            span: header,
            data: data_src?,
            data_span: spans.data,
            test_span: spans.test,
            test: if get("test").is_some() {
                Some(test?)
            } else {
                None
            },
            loss: loss?,
            optimizer: optimizer?,
            batch: batch? as usize,
            epochs: epochs? as usize,
            seed: seed?,
            metrics: metrics?,
            weight_decay: weight_decay?,
            validation: validation?,
            early_stop: early_stop?,
            augment: augment?,
            schedule: schedule?,
        },
        spans,
    ))
}

fn named_call<'a>(
    v: &'a Value,
    what: &str,
    kinds: &str,
    known: &[&str],
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a Call> {
    let c = args::call(v, what, &format!("one of {}", suggest::list(known)), diags)?;
    if known.contains(&c.name.name.as_str()) {
        return Some(c);
    }
    diags.push(
        Diagnostic::error(
            match what {
                "loss" => "nnc::name::unknown_loss",
                "optimizer" => "nnc::name::unknown_optimizer",
                "metric" => "nnc::name::unknown_metric",
                "learning-rate schedule" => "nnc::name::unknown_schedule",
                _ => "nnc::name::unknown_data",
            },
            format!("unknown {what} {}", quote(&c.name.name)),
        )
        .label(c.name.span, format!("not a known {what}"))
        .help(suggest::help(&c.name.name, kinds, known)),
    );
    None
}

fn data(v: &Value, diags: &mut Vec<Diagnostic>) -> Option<Data> {
    if let ValueKind::Table(rows) = &v.kind {
        return inline_table(v, rows, diags);
    }
    let c = named_call(
        v,
        "data source",
        "the data sources (or an inline table `{ 0 1 -> 1 }`)",
        DATA,
        diags,
    )?;
    let before = diags.len();
    let image_options = |b: &args::Bound<'_>, diags: &mut Vec<Diagnostic>| {
        (
            b.int_or("pad", 0, 0, diags) as usize,
            b.float_or("scale", Range::POSITIVE, 1.0 / 255.0, diags),
            b.float_or("shift", Range::ANY, 0.0, diags),
            b.bool_or("flatten", false, diags),
        )
    };
    let data = match c.name.name.as_str() {
        "mnist" => {
            let specs = [
                named("pad"),
                named("scale"),
                named("shift"),
                named("flatten"),
            ];
            let b = bind(c, &specs, diags);
            let (pad, scale, shift, flatten) = image_options(&b, diags);
            Data::Mnist {
                pad,
                scale,
                shift,
                flatten,
            }
        }
        "idx" => {
            let specs = [
                named("images"),
                named("labels"),
                named("pad"),
                named("scale"),
                named("shift"),
                named("flatten"),
                named("classes"),
            ];
            let b = bind(c, &specs, diags);
            let example = r#"idx(images: "train-images.gz", labels: "train-labels.gz")"#;
            let images = b.string("images", example, diags);
            let labels = b.string("labels", example, diags);
            let (pad, scale, shift, flatten) = image_options(&b, diags);
            let classes = b
                .get("classes")
                .and_then(|v| args::int_at_least(v, "classes", 2, diags));
            Data::Idx {
                images: images.unwrap_or_default(),
                labels: labels.unwrap_or_default(),
                pad,
                scale,
                shift,
                flatten,
                classes: classes.map(|c| c as usize),
            }
        }
        _ => {
            let b = bind(c, &[pos("path"), named("target")], diags);
            let path = b.string("path", r#"csv("data.csv", target: "y")"#, diags);
            let target = match b.get("target") {
                None => {
                    b.missing("target", r#"csv("data.csv", target: "y")"#, diags);
                    Vec::new()
                }
                Some(t) => strings(t, "target", diags),
            };
            Data::Csv {
                path: path.unwrap_or_default(),
                target,
            }
        }
    };
    (diags.len() == before).then_some(data)
}

fn strings(v: &Value, name: &str, diags: &mut Vec<Diagnostic>) -> Vec<String> {
    let one = |v: &Value, diags: &mut Vec<Diagnostic>| match &v.kind {
        ValueKind::Str(s) => Some(s.clone()),
        _ => {
            diags.push(args::type_error(v, name, "a column name such as `\"y\"`"));
            None
        }
    };
    match &v.kind {
        ValueKind::List(items) if !items.is_empty() => {
            items.iter().filter_map(|i| one(i, diags)).collect()
        }
        _ => one(v, diags).into_iter().collect(),
    }
}

fn inline_table(
    v: &Value,
    rows: &[nnc_syntax::ast::TableRow],
    diags: &mut Vec<Diagnostic>,
) -> Option<Data> {
    let Some(first) = rows.first() else {
        diags.push(
            Diagnostic::error("nnc::data::empty", "the data table has no rows")
                .label(v.span, "empty")
                .help("write one sample per line, inputs `->` targets, e.g. `0 1 -> 1`"),
        );
        return None;
    };
    let (ni, nt) = (first.inputs.len(), first.targets.len());
    for row in &rows[1..] {
        if row.inputs.len() != ni || row.targets.len() != nt {
            diags.push(
                Diagnostic::error(
                    "nnc::data::ragged",
                    format!(
                        "table rows differ: {} -> {} values here, {ni} -> {nt} in the first row",
                        row.inputs.len(),
                        row.targets.len()
                    ),
                )
                .label(
                    row.span,
                    format!("{} -> {}", row.inputs.len(), row.targets.len()),
                )
                .label(first.span, format!("{ni} -> {nt}"))
                .help("every row needs the same number of inputs and of targets"),
            );
            return None;
        }
    }
    let values = |f: fn(&nnc_syntax::ast::TableRow) -> &Vec<nnc_syntax::ast::Number>| {
        rows.iter()
            .map(|r| f(r).iter().map(|n| n.value).collect())
            .collect()
    };
    Some(Data::Inline {
        inputs: values(|r| &r.inputs),
        targets: values(|r| &r.targets),
    })
}

fn loss(v: &Value, diags: &mut Vec<Diagnostic>) -> Option<Loss> {
    let c = named_call(v, "loss", "the losses", LOSSES, diags)?;
    let before = diags.len();
    bind(c, &[], diags);
    let loss = match c.name.name.as_str() {
        "mse" => Loss::Mse,
        "cross_entropy" => Loss::CrossEntropy,
        _ => Loss::SoftmaxCrossEntropy,
    };
    (diags.len() == before).then_some(loss)
}

fn optimizer(v: &Value, diags: &mut Vec<Diagnostic>) -> Option<Optimizer> {
    let c = named_call(v, "optimizer", "the optimizers", OPTIMIZERS, diags)?;
    let before = diags.len();
    let kind = c.name.name.as_str();
    let opt = match kind {
        "sgd" => {
            let b = bind(c, &[pos("lr"), named("weight_decay")], diags);
            Optimizer::Sgd {
                lr: b.float_or("lr", Range::POSITIVE, 0.01, diags),
            }
        }
        "momentum" | "nesterov" => {
            let b = bind(
                c,
                &[pos("lr"), named("momentum"), named("weight_decay")],
                diags,
            );
            let lr = b.float_or("lr", Range::POSITIVE, 0.01, diags);
            let momentum = b.float_or("momentum", Range::UNIT_OPEN, 0.9, diags);
            if kind == "momentum" {
                Optimizer::Momentum { lr, momentum }
            } else {
                Optimizer::Nesterov { lr, momentum }
            }
        }
        "adagrad" => {
            let b = bind(
                c,
                &[
                    pos("lr"),
                    named("initial_accumulator"),
                    named("eps"),
                    named("weight_decay"),
                ],
                diags,
            );
            Optimizer::Adagrad {
                lr: b.float_or("lr", Range::POSITIVE, 0.001, diags),
                initial_accumulator: b.float_or(
                    "initial_accumulator",
                    Range::NON_NEGATIVE,
                    0.1,
                    diags,
                ),
                eps: b.float_or("eps", Range::POSITIVE, 1e-7, diags),
            }
        }
        "rmsprop" => {
            let b = bind(
                c,
                &[
                    pos("lr"),
                    named("rho"),
                    named("eps"),
                    named("momentum"),
                    named("centered"),
                    named("weight_decay"),
                ],
                diags,
            );
            Optimizer::RmsProp {
                lr: b.float_or("lr", Range::POSITIVE, 0.001, diags),
                rho: b.float_or("rho", Range::UNIT_OPEN, 0.9, diags),
                eps: b.float_or("eps", Range::POSITIVE, 1e-7, diags),
                momentum: b.float_or("momentum", Range::UNIT_OPEN, 0.0, diags),
                centered: b.bool_or("centered", false, diags),
            }
        }
        "adadelta" => {
            let b = bind(
                c,
                &[pos("lr"), named("rho"), named("eps"), named("weight_decay")],
                diags,
            );
            // PyTorch's defaults (Keras' lr 0.001 barely moves): the paper's step, lr 1.
            Optimizer::Adadelta {
                lr: b.float_or("lr", Range::POSITIVE, 1.0, diags),
                rho: b.float_or("rho", Range::UNIT_OPEN, 0.9, diags),
                eps: b.float_or("eps", Range::POSITIVE, 1e-6, diags),
            }
        }
        _ => {
            let b = bind(
                c,
                &[
                    pos("lr"),
                    named("beta1"),
                    named("beta2"),
                    named("eps"),
                    named("weight_decay"),
                ],
                diags,
            );
            // Adamax and NAdam take PyTorch's (and their papers') rate 0.002.
            let default_lr = if matches!(kind, "adamax" | "nadam") {
                0.002
            } else {
                0.001
            };
            let lr = b.float_or("lr", Range::POSITIVE, default_lr, diags);
            let beta1 = b.float_or("beta1", Range::UNIT_OPEN, 0.9, diags);
            let beta2 = b.float_or("beta2", Range::UNIT_OPEN, 0.999, diags);
            let eps = b.float_or("eps", Range::POSITIVE, 1e-7, diags);
            match kind {
                "adamw" => Optimizer::AdamW {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    // PyTorch's default (Keras' is 0.004).
                    weight_decay: b.float_or("weight_decay", Range::NON_NEGATIVE, 0.01, diags),
                },
                "adamax" => Optimizer::Adamax {
                    lr,
                    beta1,
                    beta2,
                    eps,
                },
                "nadam" => Optimizer::Nadam {
                    lr,
                    beta1,
                    beta2,
                    eps,
                },
                _ => Optimizer::Adam {
                    lr,
                    beta1,
                    beta2,
                    eps,
                },
            }
        }
    };
    (diags.len() == before).then_some(opt)
}

fn metrics(v: &Value, diags: &mut Vec<Diagnostic>) -> Option<Vec<Metric>> {
    let items: Vec<&Value> = match &v.kind {
        ValueKind::List(items) => items.iter().collect(),
        _ => vec![v],
    };
    let before = diags.len();
    let mut out = Vec::new();
    for item in items {
        if let Some(c) = named_call(item, "metric", "the metrics", METRICS, diags) {
            bind(c, &[], diags);
            let m = match c.name.name.as_str() {
                "loss" => Metric::Loss,
                "accuracy" => Metric::Accuracy,
                _ => Metric::Mae,
            };
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    (diags.len() == before).then_some(out)
}

/// Checks that the train block fits the model: data shape, loss and output layer.
pub fn against_model(model: &Model, train: &Train, spans: &Spans, diags: &mut Vec<Diagnostic>) {
    if let (Score::Mae, Some(span)) = (train.score(), spans.metrics) {
        // The targets are values for CSV data and inline tables under MSE.
        let values = match train.data {
            Data::Csv { .. } | Data::Inline { .. } => train.loss == Loss::Mse,
            Data::Mnist { .. } | Data::Idx { .. } => false,
        };
        if train.metrics.contains(&Metric::Accuracy) {
            diags.push(
                Diagnostic::error(
                    "nnc::train::metrics",
                    "a model reports `accuracy` or `mae` next to its loss, not both",
                )
                .label(span, "both here")
                .help("keep `mae` for a regression, `accuracy` for classes"),
            );
        } else if !values {
            diags.push(
                Diagnostic::error(
                    "nnc::train::metrics",
                    format!(
                        "`mae` compares outputs with target values, but the targets of {} \
                         data are classes",
                        train.data.keyword()
                    ),
                )
                .label(span, "mean absolute error asked for here")
                .help("report `accuracy` for classes, or train on values (csv data, or an inline table with `mse`)"),
            );
        }
    }
    // A batchnorm that sees one value per channel in a batch of one normalises it to 0: its
    // output is β whatever the input, and nothing before it learns (PyTorch refuses it too).
    if train.batch == 1 {
        let single = model.layers.iter().find(|l| {
            matches!(l.kind, LayerKind::BatchNorm { .. })
                && l.input_shape.numel() == l.output_shape.0[0] as u64
        });
        if let Some(l) = single {
            let mut d = Diagnostic::error(
                "nnc::train::batchnorm_batch",
                format!(
                    "`{}` normalises each of its {} over the batch, but a batch holds one sample",
                    l.name,
                    if l.input_shape.rank() == 1 {
                        "features"
                    } else {
                        "channels"
                    }
                ),
            )
            .label(
                l.span,
                "one value of each per batch: it is its own mean, and the output is β",
            )
            .help("train with `batch 2` or more (32 is usual with batch normalisation)");
            // `batch 1` is written: the default is 32.
            if let Some(span) = spans.batch {
                d = d.label(span, "a batch of one");
            }
            diags.push(d);
        }
    }
    if let (Some(_), Some(span)) = (train.augment, spans.augment) {
        let images = matches!(
            train.data,
            Data::Mnist { flatten: false, .. } | Data::Idx { flatten: false, .. }
        ) && model.input.shape.rank() == 3;
        if !images {
            diags.push(
                Diagnostic::error(
                    "nnc::train::augment_images",
                    "`augment` shifts images, but this data is not images of shape [C, H, W]",
                )
                .label(span, "shifts images")
                .label(spans.data, format!("gives {}", model.input.shape))
                .help("use it with `mnist()` or `idx(...)` data that is not flattened"),
            );
        }
    }
    for (data, span) in [
        (Some(&train.data), spans.data),
        (train.test.as_ref(), spans.test.unwrap_or(spans.data)),
    ] {
        if let Some(data) = data {
            data_fits_input(model, data, span, diags);
        }
    }
    let out = model.output_shape();
    let last = model.layers.last();
    let out_span = last.map_or(model.input.span, |l| l.span);
    let gives = |d: Diagnostic| d.label(out_span, format!("the model outputs {out}"));
    let classes = classes(&train.data, out);
    match train.loss {
        Loss::SoftmaxCrossEntropy | Loss::CrossEntropy => {
            let softmax_last = matches!(
                last.map(|l| &l.kind),
                Some(LayerKind::Activation(Activation::Softmax))
            );
            let name = train.loss.keyword();
            if train.loss == Loss::SoftmaxCrossEntropy && softmax_last {
                diags.push(
                    Diagnostic::error(
                        "nnc::loss::double_softmax",
                        "`softmax_cross_entropy` applies softmax itself, but the model already ends in `softmax`",
                    )
                    .label(spans.loss, "expects logits")
                    .label(out_span, "softmax applied here too")
                    .help("remove the final `softmax`, or use `loss cross_entropy`, which expects probabilities"),
                );
            }
            if train.loss == Loss::CrossEntropy && !softmax_last {
                diags.push(
                    gives(
                        Diagnostic::error(
                            "nnc::loss::needs_softmax",
                            "`cross_entropy` expects probabilities, but the model does not end in `softmax`",
                        )
                        .label(spans.loss, "expects probabilities"),
                    )
                    .help("end the model with `-> softmax`, or use `loss softmax_cross_entropy`, which takes logits"),
                );
            }
            let outputs_ok = out.rank() == 1 && out.0[0] >= 2;
            if !outputs_ok {
                diags.push(
                    gives(
                        Diagnostic::error(
                            "nnc::loss::output_shape",
                            format!("`{name}` needs a vector of at least 2 class scores, found {out}"),
                        )
                        .label(spans.loss, "classifies"),
                    )
                    .help("end the model with `dense(classes)`; for a single yes/no output use `sigmoid` with `mse`"),
                );
            } else if let Some(k) = classes
                && out.0[0] != k
            {
                diags.push(
                    gives(
                        Diagnostic::error(
                            "nnc::loss::classes",
                            format!(
                                "`{name}` needs {k} outputs for {k} classes, found {}",
                                out.0[0]
                            ),
                        )
                        .label(spans.data, format!("{k} classes")),
                    )
                    .help(format!("make the last layer `dense({k})`")),
                );
            }
            if let (Data::Inline { targets, .. }, true) = (&train.data, outputs_ok) {
                inline_labels(targets, out, spans, diags);
            }
        }
        Loss::Mse => {
            if let Some(target) = target_shape(&train.data)
                && &target != out
            {
                let help = if train.data.has_class_labels() {
                    format!(
                        "`mse` compares the output with one-hot labels: make the last layer `dense({})`",
                        target.numel()
                    )
                } else {
                    format!("make the model output {target}")
                };
                diags.push(
                        gives(
                            Diagnostic::error(
                                "nnc::loss::mse_shape",
                                format!("`mse` compares the output with targets of shape {target}, but the model outputs {out}"),
                            )
                            .label(spans.data, format!("targets are {target}")),
                        )
                        .help(help),
                    );
            }
        }
    }
    if let Data::Inline { inputs, .. } = &train.data
        && train.batch > inputs.len()
    {
        diags.push(
            Diagnostic::warning(
                "nnc::train::batch",
                format!(
                    "batch {} is larger than the {} sample{}",
                    train.batch,
                    inputs.len(),
                    if inputs.len() == 1 { "" } else { "s" }
                ),
            )
            .label(
                train.span,
                format!("each step uses all {} of them", inputs.len()),
            )
            .help(format!("set `batch {}` to say so", inputs.len())),
        );
    }
}

/// Class count for classification: from the data source, or from inline integer labels.
fn classes(data: &Data, out: &Shape) -> Option<usize> {
    data.classes().or_else(|| match data {
        Data::Inline { .. } => out.0.first().copied(),
        _ => None,
    })
}

fn target_shape(data: &Data) -> Option<Shape> {
    match data {
        Data::Mnist { .. } => Some(Shape(vec![10])),
        Data::Idx { classes, .. } => classes.map(|k| Shape(vec![k])),
        Data::Csv { target, .. } => Some(Shape(vec![target.len()])),
        Data::Inline { targets, .. } => targets.first().map(|t| Shape(vec![t.len()])),
    }
}

/// Inline targets for a classification loss are one class index per row, below the output size.
fn inline_labels(targets: &[Vec<f64>], out: &Shape, spans: &Spans, diags: &mut Vec<Diagnostic>) {
    let k = out.0.first().copied().unwrap_or(0);
    let bad = targets
        .iter()
        .any(|t| t.len() != 1 || t[0] < 0.0 || t[0].fract() != 0.0 || t[0] as usize >= k.max(1));
    if bad {
        diags.push(
            Diagnostic::error(
                "nnc::data::labels",
                format!("a classification loss needs one class index in 0..{k} per row"),
            )
            .label(spans.data, "targets are not class indices")
            .label(spans.loss, "classifies")
            .help("write each row as `inputs -> class`, or use `loss mse` for real-valued targets"),
        );
    }
}

fn data_fits_input(model: &Model, data: &Data, span: Span, diags: &mut Vec<Diagnostic>) {
    let Some(shape) = data.sample_shape() else {
        return;
    };
    let input = &model.input.shape;
    if &shape == input {
        return;
    }
    let help = match data {
        Data::Mnist { .. } => {
            let fits = [(0, false), (0, true), (2, false), (2, true)]
                .into_iter()
                .find(|&(pad, flatten)| {
                    Data::Mnist {
                        pad,
                        scale: 1.0,
                        shift: 0.0,
                        flatten,
                    }
                    .sample_shape()
                    .as_ref()
                        == Some(input)
                });
            match fits {
                Some((0, false)) => "use `mnist()` without `pad` or `flatten`".to_string(),
                Some((pad, flatten)) => {
                    let mut opts = Vec::new();
                    if pad > 0 {
                        opts.push(format!("pad: {pad}"));
                    }
                    if flatten {
                        opts.push("flatten: true".into());
                    }
                    format!("use `mnist({})`", opts.join(", "))
                }
                None => format!("declare the input as `f32{shape}`"),
            }
        }
        _ => format!("declare the input as `f32{shape}`"),
    };
    diags.push(
        Diagnostic::error(
            "nnc::data::shape",
            format!(
                "the data gives {} samples of shape {shape}, but the input is {input}",
                data.keyword()
            ),
        )
        .label(span, format!("gives {shape}"))
        .label(model.input.span, format!("declared as {input}"))
        .help(help),
    );
}

fn early_stop(v: &Value, diags: &mut Vec<Diagnostic>) -> Option<EarlyStop> {
    let c = named_call(
        v,
        "early stopping rule",
        "the rules",
        &["early_stop"],
        diags,
    )?;
    let before = diags.len();
    let b = bind(c, &[pos("patience"), named("min_delta")], diags);
    let patience = b.int("patience", 1, "early_stop(patience: 3)", diags);
    let min_delta = b.float_or("min_delta", Range::NON_NEGATIVE, 0.0, diags);
    (diags.len() == before).then(|| EarlyStop {
        patience: patience.unwrap_or(1) as usize,
        min_delta,
    })
}

fn augment(v: &Value, diags: &mut Vec<Diagnostic>) -> Option<Augment> {
    let c = named_call(v, "augmentation", "the augmentations", &["augment"], diags)?;
    let before = diags.len();
    let b = bind(c, &[named("shift")], diags);
    let shift = b.int("shift", 1, "augment(shift: 2)", diags);
    (diags.len() == before).then(|| Augment {
        shift: shift.unwrap_or(1) as usize,
    })
}

fn schedule(v: &Value, diags: &mut Vec<Diagnostic>) -> Option<Schedule> {
    let c = named_call(
        v,
        "learning-rate schedule",
        "the schedules",
        SCHEDULES,
        diags,
    )?;
    let before = diags.len();
    // A factor that lowers the rate: 0 < gamma ≤ 1.
    let shrink = Range {
        lo: 0.0,
        lo_open: true,
        hi: 1.0,
        hi_open: false,
    };
    let warmup = named("warmup");
    let (decay, b) = match c.name.name.as_str() {
        "constant" => (Decay::Constant, bind(c, &[warmup], diags)),
        "cosine" | "linear" => {
            let b = bind(c, &[named("min"), warmup], diags);
            let min = b.float_or("min", Range::UNIT_OPEN, 0.0, diags);
            let decay = if c.name.name == "cosine" {
                Decay::Cosine { min }
            } else {
                Decay::Linear { min }
            };
            (decay, b)
        }
        "step" => {
            let b = bind(c, &[named("every"), named("gamma"), warmup], diags);
            let decay = Decay::Step {
                every: b.int_or("every", 1, 1, diags) as usize,
                gamma: b.float_or("gamma", shrink, 0.1, diags),
            };
            (decay, b)
        }
        _ => {
            let b = bind(c, &[named("gamma"), warmup], diags);
            let decay = Decay::Exponential {
                gamma: b.float_or("gamma", shrink, 0.9, diags),
            };
            (decay, b)
        }
    };
    let s = Schedule {
        decay,
        warmup: b.float_or("warmup", Range::NON_NEGATIVE, 0.0, diags),
    };
    (diags.len() == before).then_some(s)
}
