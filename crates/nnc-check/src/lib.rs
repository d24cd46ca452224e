//! The checker: from a parsed `.nn` file to [`Model`]s whose every shape is known.
//!
//! Invariants:
//! - a [`Model`] is returned only if its model block and train block produced no error, so
//!   later stages never see an unknown name, an unchecked shape or an out-of-range value;
//! - independent errors are all reported: a bad layer stops shape inference for the layers
//!   after it, but their arguments are still checked, and every model and train block is checked;
//! - work is linear in the size of the file (name lookups are hashed; suggestions are computed
//!   only for errors).

mod args;
mod graph;
mod layers;
pub mod model;
mod suggest;
pub mod summary;
mod train;

use std::collections::{HashMap, HashSet};

use nnc_syntax::ast::{self, ConnectionsDecl, Ident, ModelDecl, ModelItem, NumberForm, ValueKind};
use nnc_syntax::diagnostic::quote;
use nnc_syntax::{Diagnostic, Span};

pub use model::*;

/// The result of checking one file.
#[derive(Debug, Default)]
pub struct Checked {
    /// The models that checked without error, in source order.
    pub models: Vec<Model>,
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parses and checks the text of a `.nn` file.
pub fn check_source(text: &str) -> Checked {
    let (file, mut diagnostics) = nnc_syntax::parse(text);
    let Some(file) = file else {
        return Checked {
            models: Vec::new(),
            diagnostics,
        };
    };
    let mut checked = check(&file);
    diagnostics.append(&mut checked.diagnostics);
    diagnostics.sort_by_key(|d| d.primary_span());
    checked.diagnostics = diagnostics;
    checked
}

/// Checks a parsed file.
pub fn check(file: &ast::File) -> Checked {
    let mut diags = Vec::new();
    let mut models_decl: Vec<&ModelDecl> = Vec::new();
    let mut trains: Vec<&ast::TrainDecl> = Vec::new();
    let mut tables: HashMap<&str, (Option<Connections>, &ConnectionsDecl)> = HashMap::new();
    let mut model_names: HashMap<&str, Span> = HashMap::new();

    for item in &file.items {
        match item {
            ast::Item::Model(m) => {
                if let Some(&first) = model_names.get(m.name.name.as_str()) {
                    diags.push(duplicate("model", &m.name, first));
                } else {
                    model_names.insert(&m.name.name, m.name.span);
                    models_decl.push(m);
                }
            }
            ast::Item::Train(t) => trains.push(t),
            ast::Item::Connections(c) => {
                if let Some((_, first)) = tables.get(c.name.name.as_str()) {
                    diags.push(duplicate("connection table", &c.name, first.name.span));
                } else {
                    tables.insert(&c.name.name, (connections(c, &mut diags), c));
                }
            }
        }
    }
    if models_decl.is_empty() {
        // Point at where a model could start: the end of the file.
        let end = file.span.end;
        diags.push(
            Diagnostic::error("nnc::model::none", "no model in this file")
                .label(
                    Span::new(end, end),
                    "no `model` block before the end of the file",
                )
                .help("a .nn file declares at least one `model NAME { input ...; layers }`"),
        );
    }

    // Which train block belongs to which model.
    let mut train_of: HashMap<&str, &ast::TrainDecl> = HashMap::new();
    for t in &trains {
        let name = t.model.name.as_str();
        if !model_names.contains_key(name) {
            let names: Vec<&str> = models_decl.iter().map(|m| m.name.name.as_str()).collect();
            let help = match suggest::closest(name, names.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None if names.is_empty() => "declare the model before training it".into(),
                None => format!("the models in this file are {}", suggest::list(&names)),
            };
            diags.push(
                Diagnostic::error(
                    "nnc::name::unknown_model",
                    format!("no model named {} to train", quote(name)),
                )
                .label(t.model.span, "unknown model")
                .help(help),
            );
        } else if let Some(first) = train_of.get(name) {
            diags.push(
                Diagnostic::error(
                    "nnc::train::duplicate",
                    format!("model `{name}` has two train blocks"),
                )
                .label(t.model.span, "second train block")
                .label(first.model.span, "first train block")
                .help("merge them into one"),
            );
        } else {
            train_of.insert(name, t);
        }
    }

    let mut used_tables = HashSet::new();
    let mut models = Vec::new();
    for decl in models_decl {
        let train_decl = train_of.get(decl.name.name.as_str()).copied();
        let before = diags.iter().filter(|d| d.is_error()).count();
        let model = check_model(decl, &tables, &mut used_tables, train_decl, &mut diags);
        let train = train_decl.and_then(|t| train::check(t, &mut diags));
        if let (Some(mut model), Some((train, spans))) = (model.clone(), train) {
            train::against_model(&model, &train, &spans, &mut diags);
            model.train = Some(train);
            if diags.iter().filter(|d| d.is_error()).count() == before {
                models.push(model);
            }
        } else if let (Some(model), None) = (model, train_decl) {
            models.push(model);
        }
    }
    let mut unused: Vec<_> = tables
        .values()
        .filter(|(_, decl)| !used_tables.contains(decl.name.name.as_str()))
        .map(|(_, decl)| decl)
        .collect();
    unused.sort_by_key(|d| d.span);
    for decl in unused {
        diags.push(
            Diagnostic::warning(
                "nnc::table::unused",
                format!("connection table `{}` is never used", decl.name.name),
            )
            .label(decl.name.span, "declared here")
            .help("use it with `conv2d(..., connections: NAME)`, or remove it"),
        );
    }
    diags.sort_by_key(|d| d.primary_span());
    Checked {
        models,
        diagnostics: diags,
    }
}

fn duplicate(what: &str, name: &Ident, first: Span) -> Diagnostic {
    let code = match what {
        "model" => "nnc::name::duplicate_model",
        "layer" => "nnc::name::duplicate_layer",
        _ => "nnc::name::duplicate_table",
    };
    Diagnostic::error(code, format!("{what} `{}` is defined twice", name.name))
        .label(name.span, "defined again here")
        .label(first, "first defined here")
        .help(format!("give each {what} a unique name"))
}

/// Validates a connection table's own form: rows of equal, non-zero length.
fn connections(decl: &ConnectionsDecl, diags: &mut Vec<Diagnostic>) -> Option<Connections> {
    let Some(first) = decl.rows.first() else {
        diags.push(
            Diagnostic::error(
                "nnc::table::empty",
                format!("connection table `{}` is empty", decl.name.name),
            )
            .label(decl.span, "no rows")
            .help("write one row per input channel, with an `X` for each output channel it feeds"),
        );
        return None;
    };
    for row in &decl.rows[1..] {
        if row.cells.len() != first.cells.len() {
            diags.push(
                Diagnostic::error(
                    "nnc::table::ragged",
                    format!(
                        "rows of connection table `{}` differ in length",
                        decl.name.name
                    ),
                )
                .label(row.span, format!("{} columns", row.cells.len()))
                .label(first.span, format!("{} columns", first.cells.len()))
                .help("every row needs one cell per output channel"),
            );
            return None;
        }
    }
    Some(Connections {
        name: decl.name.name.clone(),
        table: decl.rows.iter().map(|r| r.cells.clone()).collect(),
    })
}

/// One layer to place: a written layer or an expanded `activation:` argument.
struct Pending<'a> {
    name: String,
    kind: LayerKind,
    span: Span,
    init: Option<Init>,
    bias_init: Option<Init>,
    table: Option<(&'a Connections, Span)>,
    /// False after a layer that could not be resolved: shapes are unknown from there on.
    resolved: bool,
    /// What it reads (`None`: a reference that did not resolve), with the name written for
    /// it, if any.
    inputs: Vec<(Option<graph::Src>, String)>,
}

/// Places a resolved layer (and its expanded `activation:`) after the pending ones.
#[allow(clippy::too_many_arguments)]
fn push_pending<'a>(
    label: Option<&Ident>,
    call: &ast::Call,
    resolved: Option<layers::Resolved>,
    inputs: Vec<(Option<graph::Src>, String)>,
    tables: &'a HashMap<&str, (Option<Connections>, &ConnectionsDecl)>,
    used_tables: &mut HashSet<String>,
    fresh: &mut impl FnMut(&'static str) -> String,
    pending: &mut Vec<Pending<'a>>,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(r) = resolved else {
        pending.push(Pending {
            name: String::new(),
            kind: LayerKind::Flatten,
            span: call.span,
            init: None,
            bias_init: None,
            table: None,
            resolved: false,
            inputs,
        });
        return;
    };
    let mut table = None;
    let mut table_ok = true;
    if let Some((name, span)) = &r.connections {
        used_tables.insert(name.clone());
        match tables.get(name.as_str()) {
            Some((Some(t), _)) => table = Some((t, *span)),
            Some((None, _)) => table_ok = false, // malformed; reported with the table
            None => {
                let mut names: Vec<&str> = tables.keys().copied().collect();
                names.sort_unstable();
                let help = match suggest::closest(name, names.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => "declare it with `connections NAME { X . X ... }`".into(),
                };
                diags.push(
                    Diagnostic::error(
                        "nnc::name::unknown_table",
                        format!("no connection table named {}", quote(name)),
                    )
                    .label(*span, "unknown table")
                    .help(help),
                );
                table_ok = false;
            }
        }
    }
    let name = match label {
        Some(l) => l.name.clone(),
        None => fresh(r.kind.keyword()),
    };
    pending.push(Pending {
        name,
        kind: r.kind,
        span: call.span,
        init: r.init,
        bias_init: r.bias_init,
        table,
        resolved: table_ok,
        inputs,
    });
    if let Some((act, span)) = r.activation {
        let previous = pending.len() - 1;
        pending.push(Pending {
            name: fresh(act.keyword()),
            kind: LayerKind::Activation(act),
            span,
            init: None,
            bias_init: None,
            table: None,
            resolved: true,
            inputs: vec![(Some(graph::Src::Pending(previous)), String::new())],
        });
    }
}

fn check_model(
    decl: &ModelDecl,
    tables: &HashMap<&str, (Option<Connections>, &ConnectionsDecl)>,
    used_tables: &mut HashSet<String>,
    train: Option<&ast::TrainDecl>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Model> {
    let errors_before = diags.iter().filter(|d| d.is_error()).count();
    let input = input(decl, diags);

    // Labels first: a line may name only lines above it, and a name used too early is
    // reported as such rather than as unknown.
    let chains: Vec<&ast::Chain> = decl
        .body
        .iter()
        .filter_map(|item| match item {
            ModelItem::Chain(c) => Some(c),
            ModelItem::Input(_) => None,
        })
        .collect();
    let input_name = decl.body.iter().find_map(|item| match item {
        ModelItem::Input(d) => d.name.as_ref(),
        ModelItem::Chain(_) => None,
    });
    let mut values = graph::Values {
        input: input_name,
        labels: HashMap::new(),
        line_end: vec![None; chains.len()],
        // What each line reads by name, for telling a cycle from a mere forward reference.
        reads: chains
            .iter()
            .map(|c| {
                let head = c.layers.first().filter(|h| h.args.is_none());
                let merged = c
                    .layers
                    .iter()
                    .filter(|l| layers::MERGES.contains(&l.name.name.as_str()))
                    .flat_map(|l| l.args())
                    .filter_map(|a| match &a.value.kind {
                        ValueKind::Call(v) if v.args.is_none() => Some(&v.name),
                        _ => None,
                    });
                head.map(|h| &h.name)
                    .into_iter()
                    .chain(merged)
                    .map(|n| n.name.as_str())
                    .collect()
            })
            .collect(),
    };
    for (line, chain) in chains.iter().enumerate() {
        let Some(label) = &chain.label else { continue };
        if let Some(&(first, _)) = values.labels.get(label.name.as_str()) {
            diags.push(duplicate("layer", label, first));
        } else if let Some(input) = input_name.filter(|i| i.name == label.name) {
            diags.push(duplicate("layer", label, input.span));
        } else {
            values.labels.insert(&label.name, (label.span, line));
        }
    }
    let labels: HashSet<&str> = values.labels.keys().copied().collect();

    // Resolve every layer, expanding `activation:` arguments, and what each one reads.
    let mut counters: HashMap<&str, usize> = HashMap::new();
    let mut fresh = |kind: &'static str| loop {
        let n = counters.entry(kind).or_insert(0);
        *n += 1;
        let name = format!("{kind}_{n}");
        if !labels.contains(name.as_str()) {
            break name;
        }
    };
    let mut pending: Vec<Pending<'_>> = Vec::new();
    // The end of each line, with the span of its label (or first layer) for messages.
    let mut line_ends: Vec<(usize, Span, Option<&str>)> = Vec::new();
    for (line, chain) in chains.iter().enumerate() {
        let mut calls = &chain.layers[..];
        // `a -> conv2d(...)`: the line starts from a named value.
        let mut from: Option<Option<graph::Src>> = None;
        if let [head, rest @ ..] = calls
            && head.args.is_none()
            && !layers::ACTIVATIONS.contains(&head.name.name.as_str())
            && !layers::LAYERS.contains(&head.name.name.as_str())
        {
            let value = values.is_value(&head.name.name);
            let typo = !value
                && !rest.is_empty()
                && suggest::closest(&head.name.name, values.labels.keys().copied()).is_some();
            if value || typo {
                from = Some(values.lookup(&head.name, line, diags));
                calls = rest;
                let defined = match values.labels.get(head.name.name.as_str()) {
                    Some(&(span, _)) => Some(span),
                    None => input_name.map(|i| i.span),
                };
                if let (true, Some(defined)) = (calls.is_empty(), defined) {
                    diags.push(
                        Diagnostic::error(
                            "nnc::graph::bare_value",
                            format!("this line only names `{}`", head.name.name),
                        )
                        .label(head.span, "no layer reads it")
                        .label(defined, "the value it names")
                        .help(format!(
                            "continue it with layers, `{} -> dense(10)`, or remove it",
                            head.name.name
                        )),
                    );
                }
            }
        }
        for (i, call) in calls.iter().enumerate() {
            let label = if i == 0 { chain.label.as_ref() } else { None };
            let previous = || match pending.len() {
                0 => Some(graph::Src::Input),
                n => Some(graph::Src::Pending(n - 1)),
            };
            let merge = layers::MERGES.contains(&call.name.name.as_str());
            let (resolved, inputs) = if merge {
                let before = match i {
                    0 => chain.layers[0].span,
                    _ => calls[i - 1].span,
                };
                let misplaced = i > 0 || from.is_some();
                let inputs = match graph::merge_names(call, diags) {
                    Some(names) if !misplaced => names
                        .into_iter()
                        .map(|n| (values.lookup(n, line, diags), n.name.clone()))
                        .collect(),
                    _ => vec![(None, String::new())],
                };
                if misplaced {
                    diags.push(
                        Diagnostic::error(
                            "nnc::graph::merge_position",
                            format!("`{}` starts a line", call.name.name),
                        )
                        .label(call.span, "reads the values it names")
                        .label(before, "not the output of this layer")
                        .help(format!(
                            "label the line before it and start a new line: `s: {}(a, b)`",
                            call.name.name
                        )),
                    );
                }
                let kind = if call.name.name == "add" {
                    LayerKind::Add
                } else {
                    LayerKind::Concat
                };
                let ok = inputs.iter().all(|(s, _)| s.is_some());
                (ok.then_some(layers::Resolved::plain(kind)), inputs)
            } else {
                let src = match (i, from) {
                    (0, Some(src)) => src,
                    _ => previous(),
                };
                (layers::resolve(call, diags), vec![(src, String::new())])
            };
            push_pending(
                label,
                call,
                resolved,
                inputs,
                tables,
                used_tables,
                &mut fresh,
                &mut pending,
                diags,
            );
        }
        if !calls.is_empty() {
            values.line_end[line] = Some(pending.len() - 1);
            let span = chain.label.as_ref().map_or(calls[0].span, |l| l.span);
            let label = chain.label.as_ref().map(|l| l.name.as_str());
            line_ends.push((pending.len() - 1, span, label));
        }
    }
    if chains.is_empty() {
        diags.push(
            Diagnostic::error(
                "nnc::model::empty",
                format!("model `{}` has no layers", decl.name.name),
            )
            .label(decl.name.span, "no layers")
            .help("add layers after the input, e.g. `dense(10) -> softmax`"),
        );
    }

    // A line whose output nothing reads, and that is not the model's output: a dead branch.
    let mut read = vec![false; pending.len()];
    for p in &pending {
        for (src, _) in &p.inputs {
            if let Some(graph::Src::Pending(j)) = src {
                read[*j] = true;
            }
        }
    }
    let clean = diags.iter().filter(|d| d.is_error()).count() == errors_before;
    for &(end, span, label) in &line_ends {
        if clean && !read[end] && end + 1 != pending.len() && pending[end].resolved {
            diags.push(
                Diagnostic::warning(
                    "nnc::graph::unused",
                    format!(
                        "the output of `{}` is never read",
                        label.unwrap_or(&pending[end].name)
                    ),
                )
                .label(span, "this line's output goes nowhere")
                .label(pending[pending.len() - 1].span, "the model's output is here")
                .help("read it (`add(a, b)`, `concat(a, b)`, or a line starting `a -> ...`), or remove the line"),
            );
        }
    }

    // Shapes, layer by layer, in source order (which is a topological order).
    let mut layers = Vec::new();
    let mut inits = Vec::new();
    let mut shapes: Vec<Option<Shape>> = Vec::new();
    // Once a layer is unknown or does not fit, the shapes after it are unknown: their arguments
    // have been checked, their shapes cannot be.
    let mut complete = input.is_some();
    for p in &pending {
        let inputs: Option<Vec<graph::MergeInput>> = p
            .inputs
            .iter()
            .map(|(src, written)| {
                let (shape, span, what) = match (*src)? {
                    graph::Src::Input => {
                        let i = input.as_ref()?;
                        (i.shape.clone(), i.span, "the input".to_string())
                    }
                    graph::Src::Pending(j) => (
                        shapes[j].clone()?,
                        pending[j].span,
                        format!(
                            "`{}`",
                            if written.is_empty() {
                                &pending[j].name
                            } else {
                                written
                            }
                        ),
                    ),
                };
                Some(graph::MergeInput { shape, span, what })
            })
            .collect();
        let (Some(inputs), true) = (inputs, p.resolved) else {
            complete = false;
            shapes.push(None);
            continue;
        };
        let kind = p.kind.clone();
        let inferred = if matches!(kind, LayerKind::Add | LayerKind::Concat) {
            graph::merge(kind, &inputs, p.span, diags)
        } else {
            let what = layers::Producer {
                span: inputs[0].span,
                what: &inputs[0].what,
            };
            layers::infer(kind, p.table, &inputs[0].shape, p.span, &what, diags)
        };
        let Some(inferred) = inferred else {
            complete = false;
            shapes.push(None);
            continue;
        };
        shapes.push(Some(inferred.output.clone()));
        inits.push((p.init, p.bias_init));
        layers.push(Layer {
            name: p.name.clone(),
            kind: inferred.kind,
            inputs: p
                .inputs
                .iter()
                .map(|(src, _)| match src {
                    Some(graph::Src::Pending(j)) => Source::Layer(*j),
                    _ => Source::Input,
                })
                .collect(),
            input_shape: inputs[0].shape.clone(),
            output_shape: inferred.output,
            params: inferred.params,
            flops: inferred.flops,
            span: p.span,
        });
    }
    apply_inits(&mut layers, &inits);
    redundant_biases(&layers, diags);

    if let Some(t) = train {
        for l in &layers {
            if l.kind == LayerKind::Activation(Activation::Step) {
                diags.push(
                    Diagnostic::error(
                        "nnc::grad::step",
                        "`step` cannot be trained by gradient descent",
                    )
                    .label(l.span, "its gradient is zero almost everywhere")
                    .label(t.model.span, "trained by gradient descent here")
                    .help("use `sigmoid`, the smooth step, so that gradients flow through it"),
                );
            }
        }
    }

    let errors_now = diags.iter().filter(|d| d.is_error()).count();
    if errors_now != errors_before || !complete {
        return None;
    }
    Some(Model {
        name: decl.name.name.clone(),
        span: decl.name.span,
        input: input?,
        layers,
        train: None,
    })
}

/// Warns of a dense or convolution layer's bias whose only reader is a `batchnorm`: the
/// batchnorm subtracts each channel's batch mean, so the bias changes nothing and its gradient
/// is zero (in exact arithmetic; computed, it is rounding noise).
fn redundant_biases(layers: &[Layer], diags: &mut Vec<Diagnostic>) {
    let readers = |j: usize| {
        layers
            .iter()
            .filter(|l| l.inputs.contains(&Source::Layer(j)))
            .count()
    };
    for norm in layers {
        let (LayerKind::BatchNorm { .. }, [Source::Layer(j)]) = (&norm.kind, &norm.inputs[..])
        else {
            continue;
        };
        let biased = &layers[*j];
        let has_bias = matches!(
            biased.kind,
            LayerKind::Dense { bias: true, .. } | LayerKind::Conv2d { bias: true, .. }
        );
        if has_bias && readers(*j) == 1 {
            let unit = match biased.kind {
                LayerKind::Dense { .. } => "feature",
                _ => "channel",
            };
            diags.push(
                Diagnostic::warning(
                    "nnc::layer::redundant_bias",
                    format!(
                        "the bias of `{}` has no effect before a batchnorm",
                        biased.name
                    ),
                )
                .label(
                    biased.span,
                    format!("this layer adds a bias to each {unit}"),
                )
                .label(
                    norm.span,
                    format!("this batchnorm then subtracts each {unit}'s batch mean"),
                )
                .help("write `bias: false`: the batchnorm's β takes its place"),
            );
        }
    }
}

/// Default initialisers: He for layers followed by a ReLU-family activation, Glorot
/// (Keras' default) otherwise; a subsample starts as an average; biases start at zero, except
/// under `init: torch`, which initialises biases like PyTorch does.
fn apply_inits(layers: &mut [Layer], inits: &[(Option<Init>, Option<Init>)]) {
    for i in 0..layers.len() {
        // Through a batchnorm: `conv2d -> batchnorm -> relu` starts as He's too.
        let next = layers[i + 1..]
            .iter()
            .find(|l| !matches!(l.kind, LayerKind::BatchNorm { .. }))
            .map(|l| l.kind.clone());
        let relu_next = matches!(
            next,
            Some(LayerKind::Activation(
                Activation::Relu | Activation::LeakyRelu { .. } | Activation::Elu { .. }
            ))
        );
        let (init, bias_init) = inits[i];
        let layer = &mut layers[i];
        let weight_init = init.unwrap_or(match &layer.kind {
            LayerKind::Subsample { size, .. } => Init::Constant(1.0 / (size[0] * size[1]) as f64),
            _ if relu_next => Init::HeUniform,
            _ => Init::GlorotUniform,
        });
        let bias_init = bias_init.unwrap_or(if weight_init == Init::Torch {
            Init::Torch
        } else {
            Init::Zeros
        });
        if matches!(layer.kind, LayerKind::BatchNorm { .. }) {
            // Keras' and PyTorch's: the identity at first (γ = 1, β = 0), and running
            // statistics of a standard normal (mean 0, variance 1).
            for p in &mut layer.params {
                p.init = match p.name {
                    "gamma" | "running_var" => Init::Constant(1.0),
                    _ => Init::Zeros,
                };
            }
            continue;
        }
        for p in &mut layer.params {
            p.init = if p.name == "bias" {
                bias_init
            } else {
                weight_init
            };
        }
    }
}

fn input(decl: &ModelDecl, diags: &mut Vec<Diagnostic>) -> Option<Input> {
    let mut found: Option<&ast::InputDecl> = None;
    let mut seen_layer = false;
    for item in &decl.body {
        match item {
            ModelItem::Chain(_) => seen_layer = true,
            ModelItem::Input(d) => {
                if let Some(first) = found {
                    diags.push(
                        Diagnostic::error("nnc::model::duplicate_input", "a model has one input")
                            .label(d.span, "second input")
                            .label(first.span, "first input")
                            .help("remove one of them: a model reads one input, and its branches start from it or from labelled lines (`b: a -> ...`)"),
                    );
                } else {
                    if seen_layer {
                        diags.push(
                            Diagnostic::error(
                                "nnc::model::input_position",
                                "the input must be declared before the layers",
                            )
                            .label(d.span, "declared after a layer")
                            .help("move the `input` line to the top of the model block"),
                        );
                    }
                    found = Some(d);
                }
            }
        }
    }
    let Some(d) = found else {
        diags.push(
            Diagnostic::error(
                "nnc::model::no_input",
                format!("model `{}` has no input", decl.name.name),
            )
            .label(decl.name.span, "no `input` declaration")
            .help("declare it first in the block, e.g. `input image: f32[1, 28, 28]`"),
        );
        return None;
    };
    let before = diags.len();
    if let Some(dtype) = &d.dtype
        && dtype.name != "f32"
    {
        diags.push(
            Diagnostic::error(
                "nnc::model::dtype",
                format!("unsupported input type {}", quote(&dtype.name)),
            )
            .label(dtype.span, "not `f32`")
            .help("inputs are `f32`; integer data such as u8 images is converted as it is loaded"),
        );
    }
    if d.dims.is_empty() || d.dims.len() > 3 {
        diags.push(
            Diagnostic::error(
                "nnc::model::input_rank",
                format!("the input has {} dimensions; nnc takes 1 to 3", d.dims.len()),
            )
            .label(d.type_span, "per-sample shape")
            .help("declare a vector `f32[784]` or an image `f32[channels, height, width]`; the batch axis is implicit"),
        );
    }
    let mut dims = Vec::new();
    const MAX_DIM: f64 = (1u64 << 31) as f64;
    for n in &d.dims {
        if n.is_integer() && n.value >= 1.0 && n.value <= MAX_DIM {
            dims.push(n.value as usize);
            continue;
        }
        let integral = n.value.fract() == 0.0 && n.value >= 1.0;
        let (message, label, help) = if integral && n.value > MAX_DIM {
            (
                "input dimensions are at most 2^31",
                "too large".to_string(),
                "a sample this large could not be trained: one tensor holds at most 2^32 elements"
                    .to_string(),
            )
        } else if integral {
            (
                "input dimensions are positive integers",
                match n.form {
                    NumberForm::Fraction => "written as a fraction",
                    _ => "written as a floating-point number",
                }
                .to_string(),
                format!("write it as an integer: `{}`", n.value as u64),
            )
        } else {
            (
                "input dimensions are positive integers",
                "not a positive integer".to_string(),
                "dimensions count elements, e.g. `f32[1, 28, 28]`".to_string(),
            )
        };
        diags.push(
            Diagnostic::error("nnc::model::input_dim", message)
                .label(n.span, label)
                .help(help),
        );
    }
    (diags.len() == before).then(|| Input {
        name: d
            .name
            .as_ref()
            .map_or("input".to_string(), |n| n.name.clone()),
        shape: Shape(dims),
        span: d.span,
    })
}
