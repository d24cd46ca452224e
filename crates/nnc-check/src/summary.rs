//! The model summary, as a table for people (like Keras' `model.summary()`) and as JSON for tools.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::model::{
    Activation, Data, Decay, Hyper, LayerKind, Metric, Model, Optimizer, Padding, Schedule, Source,
    Train, num,
};

/// `61706` → `61,706`
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as `241.0 KiB`.
pub fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", units[u])
    }
}

/// Whether every layer reads the one before it (the first, the input): a sequential model.
pub fn is_chain(model: &Model) -> bool {
    model.layers.iter().enumerate().all(|(i, l)| {
        l.inputs
            == [match i {
                0 => Source::Input,
                _ => Source::Layer(i - 1),
            }]
    })
}

/// The summary table of a model. A graph model (one that is not a plain chain) has a last
/// column, "Connected to", naming the values each layer reads, as Keras' functional summary
/// does; a sequential model's table is as it always was.
pub fn table(model: &Model) -> String {
    let graph = !is_chain(model);
    let name_of = |s: &Source| match s {
        Source::Input => model.input.name.clone(),
        Source::Layer(i) => model.layers[*i].name.clone(),
    };
    let mut rows: Vec<[String; 6]> = vec![[
        model.input.name.clone(),
        "input".into(),
        model.input.shape.to_string(),
        "0".into(),
        "0".into(),
        String::new(),
    ]];
    for l in &model.layers {
        rows.push([
            l.name.clone(),
            l.describe(),
            l.output_shape.to_string(),
            thousands(l.param_count()),
            thousands(l.flops),
            l.inputs.iter().map(name_of).collect::<Vec<_>>().join(", "),
        ]);
    }
    let header = [
        "Layer",
        "Kind",
        "Output shape",
        "Params",
        "FLOPs",
        "Connected to",
    ];
    let columns = if graph { 6 } else { 5 };
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let widths = &widths[..columns];
    let line = |cells: [&str; 6]| {
        let mut text = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4]
        );
        if graph {
            text += "  ";
            text += cells[5];
        }
        text.trim_end().to_string()
    };
    let total_width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    let rule = "─".repeat(total_width);
    let mut out = String::new();
    let _ = writeln!(out, "Model: {}", model.name);
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(out, "{}", line(header));
    let _ = writeln!(out, "{rule}");
    for r in &rows {
        let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    let _ = writeln!(out, "{rule}");
    let params = model.param_count();
    let _ = writeln!(
        out,
        "Trainable params: {} ({} as f32)",
        thousands(params),
        bytes(params * 4)
    );
    let running = model.running_count();
    if running > 0 {
        let _ = writeln!(
            out,
            "Non-trainable params: {} ({} as f32: batchnorm's running statistics)",
            thousands(running),
            bytes(running * 4)
        );
    }
    let _ = writeln!(
        out,
        "Forward FLOPs per sample: {} (2 per multiply-add)",
        thousands(model.flops_per_sample())
    );
    if let Some(t) = &model.train {
        let schedule = if t.schedule.is_constant() {
            String::new()
        } else {
            format!(", {} schedule", t.schedule)
        };
        let _ = writeln!(
            out,
            "Training: {}, {}{schedule}, batch {}, {} epoch{}, seed {}",
            t.loss.keyword(),
            t.optimizer,
            t.batch,
            t.epochs,
            if t.epochs == 1 { "" } else { "s" },
            t.seed
        );
        let _ = writeln!(out, "Data: {}", data(&t.data));
        if let Some(test) = &t.test {
            let _ = writeln!(out, "Test data: {}", data(test));
        }
    }
    out
}

fn data(d: &Data) -> String {
    match d {
        Data::Mnist {
            pad,
            scale,
            shift,
            flatten,
        } => {
            let shape = d.sample_shape().map(|s| s.compact()).unwrap_or_default();
            let mut opts = vec![format!("scale {}", num(*scale))];
            if *shift != 0.0 {
                opts.push(format!("shift {}", num(*shift)));
            }
            if *pad > 0 {
                opts.push(format!("pad {pad}"));
            }
            if *flatten {
                opts.push("flattened".into());
            }
            format!(
                "MNIST, 60,000 train / 10,000 test images of {shape} ({}), 10 classes",
                opts.join(", ")
            )
        }
        Data::Idx { images, labels, .. } => format!("IDX images {images:?}, labels {labels:?}"),
        Data::Csv { path, target } => format!("CSV {path:?}, target {}", target.join(", ")),
        Data::Inline { inputs, targets } => format!(
            "inline table, {} row{} of {} -> {}",
            inputs.len(),
            if inputs.len() == 1 { "" } else { "s" },
            inputs.first().map_or(0, Vec::len),
            targets.first().map_or(0, Vec::len)
        ),
    }
}

/// The JSON form of a model summary: the table's figures, and everything another framework
/// needs to rebuild the model and its training exactly (`bench/twin.py` does): each layer's
/// arguments with defaults filled and `same` padding resolved to numbers, its parameters'
/// names and shapes, the input, and the train block with every hyper-parameter's value.
#[derive(Serialize)]
pub struct Json {
    pub model: String,
    pub layers: Vec<JsonLayer>,
    pub total_params: u64,
    pub flops_per_sample: u64,
    pub input: JsonInput,
    /// The train block, when the model has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<JsonTrain>,
}

#[derive(Serialize)]
pub struct JsonLayer {
    pub name: String,
    pub kind: String,
    pub output_shape: Vec<usize>,
    pub params: u64,
    pub flops: u64,
    pub input_shape: Vec<usize>,
    /// The values the layer reads: the model's input or earlier layers, by name (two or
    /// more for `add` and `concat`).
    pub inputs: Vec<String>,
    /// The kind's arguments, resolved ([`args`]).
    pub args: BTreeMap<&'static str, Arg>,
    /// The trainable tensors, in the order of the step's parameters.
    pub parameters: Vec<JsonParam>,
}

/// A parameter tensor: `c1.weight`, its shape (dense `[in, out]`, conv `[out, in, kh, kw]`)
/// and its initialiser.
#[derive(Serialize)]
pub struct JsonParam {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: String,
    /// Elements trained (fewer than the shape's under a connection table).
    pub trainable: u64,
    pub fan_in: u64,
    pub fan_out: u64,
    /// A running statistic (batchnorm's), updated from the batches rather than trained;
    /// absent for trainable tensors.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub running: bool,
}

#[derive(Serialize)]
pub struct JsonInput {
    pub name: String,
    pub shape: Vec<usize>,
}

/// The value of a layer's or an optimizer's argument.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Arg {
    Count(usize),
    Number(f64),
    Flag(bool),
    Text(String),
    /// Height, then width.
    Pair([usize; 2]),
    /// `[[top, bottom], [left, right]]`.
    Sides([[usize; 2]; 2]),
    /// A connection table: `table[input][output]`.
    Table(Vec<Vec<bool>>),
}

/// The train block, every value resolved.
#[derive(Serialize)]
pub struct JsonTrain {
    pub data: Data,
    /// Held-out data; absent for the source's own test split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Data>,
    pub loss: &'static str,
    pub optimizer: JsonOptimizer,
    /// The L2 penalty λ added as λ·w to each gradient (0 under `adamw`, whose decay is its
    /// optimizer's `weight_decay`).
    pub weight_decay: f64,
    pub schedule: JsonSchedule,
    pub batch: usize,
    pub epochs: usize,
    pub seed: u64,
    pub metrics: Vec<&'static str>,
    pub validation: Option<f64>,
    pub early_stop: Option<JsonEarlyStop>,
    /// Random shifts of up to this many pixels.
    pub augment_shift: Option<usize>,
}

#[derive(Serialize)]
pub struct JsonOptimizer {
    pub name: &'static str,
    /// Every hyper-parameter, defaults included.
    #[serde(flatten)]
    pub hyper: BTreeMap<&'static str, Arg>,
}

#[derive(Serialize)]
pub struct JsonSchedule {
    /// `constant`, `cosine`, `linear`, `step` or `exponential`.
    pub decay: &'static str,
    #[serde(flatten)]
    pub args: BTreeMap<&'static str, Arg>,
    /// Epochs of linear warmup.
    pub warmup: f64,
}

#[derive(Serialize)]
pub struct JsonEarlyStop {
    pub patience: usize,
    pub min_delta: f64,
}

pub fn json(model: &Model) -> Json {
    Json {
        model: model.name.clone(),
        layers: model
            .layers
            .iter()
            .map(|l| JsonLayer {
                name: l.name.clone(),
                kind: l.kind.keyword().to_string(),
                output_shape: l.output_shape.0.clone(),
                params: l.param_count(),
                flops: l.flops,
                input_shape: l.input_shape.0.clone(),
                inputs: l
                    .inputs
                    .iter()
                    .map(|s| match s {
                        Source::Input => model.input.name.clone(),
                        Source::Layer(i) => model.layers[*i].name.clone(),
                    })
                    .collect(),
                args: args(&l.kind),
                parameters: l
                    .params
                    .iter()
                    .map(|p| JsonParam {
                        name: format!("{}.{}", l.name, p.name),
                        shape: p.shape.0.clone(),
                        init: p.init.to_string(),
                        trainable: p.trainable,
                        fan_in: p.fan_in,
                        fan_out: p.fan_out,
                        running: p.running,
                    })
                    .collect(),
            })
            .collect(),
        total_params: model.param_count(),
        flops_per_sample: model.flops_per_sample(),
        input: JsonInput {
            name: model.input.name.clone(),
            shape: model.input.shape.0.clone(),
        },
        train: model.train.as_ref().map(train_json),
    }
}

/// A layer kind's arguments, resolved: windows as `[height, width]` pairs, a convolution's
/// padding as `[[top, bottom], [left, right]]` (with `same: true` when it was asked for as
/// `same`), an activation's parameters.
pub fn args(kind: &LayerKind) -> BTreeMap<&'static str, Arg> {
    let mut a = BTreeMap::new();
    match kind {
        LayerKind::Dense { units, bias } => {
            a.insert("units", Arg::Count(*units));
            a.insert("bias", Arg::Flag(*bias));
        }
        LayerKind::Conv2d {
            filters,
            kernel,
            stride,
            padding,
            bias,
            connections,
        } => {
            a.insert("filters", Arg::Count(*filters));
            a.insert("kernel", Arg::Pair(*kernel));
            a.insert("stride", Arg::Pair(*stride));
            a.insert("padding", Arg::Sides(padding.sides()));
            a.insert("same", Arg::Flag(matches!(padding, Padding::Same { .. })));
            a.insert("bias", Arg::Flag(*bias));
            if let Some(c) = connections {
                a.insert("connections", Arg::Table(c.table.clone()));
            }
        }
        LayerKind::MaxPool {
            size,
            stride,
            ceil_mode,
        }
        | LayerKind::AvgPool {
            size,
            stride,
            ceil_mode,
        } => {
            a.insert("size", Arg::Pair(*size));
            a.insert("stride", Arg::Pair(*stride));
            a.insert("ceil_mode", Arg::Flag(*ceil_mode));
        }
        LayerKind::Subsample { size, stride } => {
            a.insert("size", Arg::Pair(*size));
            a.insert("stride", Arg::Pair(*stride));
        }
        LayerKind::Dropout { rate } => {
            a.insert("rate", Arg::Number(*rate));
        }
        LayerKind::Activation(Activation::Tanh { scale, slope }) => {
            a.insert("scale", Arg::Number(*scale));
            a.insert("slope", Arg::Number(*slope));
        }
        LayerKind::Activation(Activation::LeakyRelu { alpha } | Activation::Elu { alpha }) => {
            a.insert("alpha", Arg::Number(*alpha));
        }
        LayerKind::BatchNorm { momentum, eps } => {
            a.insert("momentum", Arg::Number(*momentum));
            a.insert("eps", Arg::Number(*eps));
        }
        LayerKind::Flatten
        | LayerKind::Activation(_)
        | LayerKind::Add
        | LayerKind::Concat
        | LayerKind::GlobalAvgPool => {}
    }
    a
}

fn train_json(t: &Train) -> JsonTrain {
    JsonTrain {
        data: t.data.clone(),
        test: t.test.clone(),
        loss: t.loss.keyword(),
        optimizer: optimizer_json(&t.optimizer),
        weight_decay: t.weight_decay,
        schedule: schedule_json(&t.schedule),
        batch: t.batch,
        epochs: t.epochs,
        seed: t.seed,
        metrics: t.metrics.iter().map(Metric::keyword).collect(),
        validation: t.validation,
        early_stop: t.early_stop.map(|e| JsonEarlyStop {
            patience: e.patience,
            min_delta: e.min_delta,
        }),
        augment_shift: t.augment.map(|a| a.shift),
    }
}

fn optimizer_json(o: &Optimizer) -> JsonOptimizer {
    JsonOptimizer {
        name: o.keyword(),
        hyper: o
            .hyper_parameters()
            .into_iter()
            .map(|(name, value)| {
                let value = match value {
                    Hyper::Number(x) => Arg::Number(x),
                    Hyper::Flag(b) => Arg::Flag(b),
                };
                (name, value)
            })
            .collect(),
    }
}

fn schedule_json(s: &Schedule) -> JsonSchedule {
    let args: Vec<(&'static str, Arg)> = match s.decay {
        Decay::Constant => vec![],
        Decay::Cosine { min } | Decay::Linear { min } => vec![("min", Arg::Number(min))],
        Decay::Step { every, gamma } => {
            vec![("every", Arg::Count(every)), ("gamma", Arg::Number(gamma))]
        }
        Decay::Exponential { gamma } => vec![("gamma", Arg::Number(gamma))],
    };
    JsonSchedule {
        decay: s.decay.keyword(),
        args: args.into_iter().collect(),
        warmup: s.warmup,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(61706), "61,706");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(bytes(246824), "241.0 KiB");
    }

    fn checked(body: &str) -> Model {
        let text = format!("model m {{\n    input x: f32[4]\n{body}\n}}\n");
        let checked = crate::check_source(&text);
        match checked.models.into_iter().next() {
            Some(m) => m,
            None => panic!("{:?}", checked.diagnostics),
        }
    }

    #[test]
    fn only_a_graph_model_has_a_connected_to_column() {
        let chain = checked("    h: dense(4) -> relu\n    out: dense(2)");
        assert!(is_chain(&chain));
        assert!(!table(&chain).contains("Connected to"));
        let graph = checked("    h: dense(4) -> relu\n    s: add(x, h)\n    out: dense(2)");
        assert!(!is_chain(&graph));
        let t = table(&graph);
        let header = t.lines().nth(2).unwrap_or_default();
        assert!(header.ends_with("FLOPs  Connected to"), "{t}");
        let row = |name: &str| {
            t.lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no row {name}:\n{t}"))
                .to_string()
        };
        assert!(row("h").ends_with("  x"), "{t}");
        assert!(row("s").ends_with("  x, relu_1"), "{t}");
        assert!(row("out").ends_with("  s"), "{t}");
        // The input's row reads nothing.
        assert!(row("x").ends_with("  0"), "{t}");
    }
}
