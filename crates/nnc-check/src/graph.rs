//! Models as graphs: the named values a line can start from or a merge (`add`, `concat`) can
//! read, and the shape rules of the merges, which see all their inputs at once.
//!
//! A value is named by the label of a line and is the output of that line's last layer; the
//! model's input is named too. A reference reads only lines above it, so the layers in source
//! order are a topological order and a cycle cannot be written: a reference to its own line
//! or a later one is a diagnostic.

use std::collections::HashMap;

use nnc_syntax::ast::{Call, Ident, ValueKind};
use nnc_syntax::diagnostic::quote;
use nnc_syntax::{Diagnostic, Span};

use crate::layers::Inferred;
use crate::model::{LayerKind, Shape};
use crate::suggest;

/// Where a pending layer reads from: the model's input or an earlier pending layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    Input,
    Pending(usize),
}

/// The names a model's lines can read.
pub struct Values<'a> {
    /// The input's name (`input image: ...`), if it has one.
    pub input: Option<&'a Ident>,
    /// Each label: where it is written and the index of its line.
    pub labels: HashMap<&'a str, (Span, usize)>,
    /// For each line, the pending layer that is its output (`None` while not yet placed, or
    /// when the line has no layer).
    pub line_end: Vec<Option<usize>>,
    /// For each line, the names it reads: the one it starts from, and those its merges name.
    pub reads: Vec<Vec<&'a str>>,
}

impl Values<'_> {
    /// Whether `from` reads the output of line `target`, directly or through other lines.
    fn reaches(&self, from: usize, target: usize) -> bool {
        let mut seen = vec![false; self.reads.len()];
        let mut stack = vec![from];
        while let Some(line) = stack.pop() {
            for name in self.reads.get(line).into_iter().flatten() {
                let Some(&(_, l)) = self.labels.get(name) else {
                    continue;
                };
                if l == target {
                    return true;
                }
                if !seen[l] {
                    seen[l] = true;
                    stack.push(l);
                }
            }
        }
        false
    }

    /// Whether `name` is a value a line could start from.
    pub fn is_value(&self, name: &str) -> bool {
        self.labels.contains_key(name) || self.input.is_some_and(|i| i.name == name)
    }

    /// The names in scope at `line`, for suggestions: the input and the labels above it.
    fn names_before(&self, line: usize) -> Vec<&str> {
        let mut names: Vec<(&str, usize)> = self
            .labels
            .iter()
            .filter(|(_, (_, l))| *l < line)
            .map(|(n, (_, l))| (*n, *l))
            .collect();
        names.sort_unstable_by_key(|&(_, l)| l);
        let mut out: Vec<&str> = self.input.iter().map(|i| i.name.as_str()).collect();
        out.extend(names.into_iter().map(|(n, _)| n));
        out
    }

    /// Resolves a reference written on `line`; `None` after a reported mistake (or when the
    /// line it names has no layer, reported there).
    pub fn lookup(&self, name: &Ident, line: usize, diags: &mut Vec<Diagnostic>) -> Option<Src> {
        if self.input.is_some_and(|i| i.name == name.name) {
            return Some(Src::Input);
        }
        match self.labels.get(name.name.as_str()) {
            Some(&(_, l)) if l < line => self.line_end[l].map(Src::Pending),
            Some(&(def, l)) if l == line => {
                diags.push(
                    Diagnostic::error(
                        "nnc::graph::cycle",
                        format!("`{}` reads its own output", name.name),
                    )
                    .label(name.span, "read here")
                    .label(def, "by the line it names")
                    .help("a model is acyclic: a line reads the input or lines above it"),
                );
                None
            }
            Some(&(def, l)) if self.reaches(l, line) => {
                diags.push(
                    Diagnostic::error(
                        "nnc::graph::cycle",
                        format!(
                            "`{}` is defined below and reads this line's output: a cycle",
                            name.name
                        ),
                    )
                    .label(name.span, "read here")
                    .label(def, "defined below, reading back")
                    .help(
                        "a model is acyclic: a line reads only the input and the lines above \
                         it; read a value defined above this line instead",
                    ),
                );
                None
            }
            Some(&(def, _)) => {
                diags.push(
                    Diagnostic::error(
                        "nnc::graph::later_value",
                        format!("`{}` is read before it is defined", name.name),
                    )
                    .label(name.span, "read here")
                    .label(def, "defined below")
                    .help(format!(
                        "a line reads only the input and the lines above it: move the line `{}` above this one",
                        name.name
                    )),
                );
                None
            }
            None => {
                diags.push(self.unknown(name, line));
                None
            }
        }
    }

    /// "no value named `b`", suggesting the closest name in scope.
    pub fn unknown(&self, name: &Ident, line: usize) -> Diagnostic {
        let names = self.names_before(line);
        let help = match suggest::closest(&name.name, names.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None if names.is_empty() => {
                "name the input (`input x: f32[...]`) or label a line (`a: conv2d(...)`) to read it"
                    .into()
            }
            None => format!("the values above this line are {}", suggest::list(&names)),
        };
        Diagnostic::error(
            "nnc::graph::unknown_value",
            format!("no value named {}", quote(&name.name)),
        )
        .label(name.span, "not the input or a label above")
        .help(help)
    }
}

/// The names a merge reads, `add(a, b)`: at least two, each a bare name. `None` after a
/// reported mistake.
pub fn merge_names<'a>(call: &'a Call, diags: &mut Vec<Diagnostic>) -> Option<Vec<&'a Ident>> {
    let keyword = call.name.name.as_str();
    let example = format!("s: {keyword}(a, b)");
    let mut names = Vec::new();
    let mut ok = true;
    for arg in call.args() {
        match (&arg.name, &arg.value.kind) {
            (None, ValueKind::Call(c)) if c.args.is_none() => names.push(&c.name),
            _ => {
                diags.push(
                    Diagnostic::error(
                        "nnc::graph::merge_argument",
                        format!("`{keyword}` takes the names of the values it reads"),
                    )
                    .label(
                        arg.span,
                        format!("{} is not a value's name", arg.value.kind.describe()),
                    )
                    .label(call.name.span, format!("`{keyword}` reads named values"))
                    .help(format!(
                        "label the lines to read and name them: `{example}`"
                    )),
                );
                ok = false;
            }
        }
    }
    if ok && names.len() < 2 {
        diags.push(
            Diagnostic::error(
                "nnc::graph::merge_arity",
                format!(
                    "`{keyword}` needs at least two inputs, found {}",
                    names.len()
                ),
            )
            .label(
                call.span,
                match names.len() {
                    0 => "reads nothing".to_string(),
                    _ => "reads one value".to_string(),
                },
            )
            .help(format!("name every branch it merges: `{example}`")),
        );
        ok = false;
    }
    ok.then_some(names)
}

/// One input of a merge: its shape, and the layer that produced it (span, `` `name` ``).
pub struct MergeInput {
    pub shape: Shape,
    pub span: Span,
    pub what: String,
}

/// The shape rule of `add` (equal shapes) and `concat` (equal ranks, equal spatial sizes for
/// maps; the first axes summed). A mismatch names both producers.
pub fn merge(
    kind: LayerKind,
    inputs: &[MergeInput],
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<Inferred> {
    let first = &inputs[0];
    let mismatch = |other: &MergeInput, code: &'static str, message: String, help: String| {
        Diagnostic::error(code, message)
            .label(first.span, format!("{} gives {}", first.what, first.shape))
            .label(other.span, format!("{} gives {}", other.what, other.shape))
            .label(span, format!("`{}` reads both", kind.keyword()))
            .help(help)
    };
    let output = match kind {
        LayerKind::Add => {
            if let Some(other) = inputs[1..].iter().find(|i| i.shape != first.shape) {
                diags.push(mismatch(
                    other,
                    "nnc::shape::add_mismatch",
                    format!(
                        "`add` needs inputs of one shape, found {} and {}",
                        first.shape, other.shape
                    ),
                    add_help(first, other),
                ));
                return None;
            }
            first.shape.clone()
        }
        _ => {
            let rank = first.shape.rank();
            let bad = inputs[1..].iter().find(|i| {
                i.shape.rank() != rank || (rank == 3 && i.shape.0[1..] != first.shape.0[1..])
            });
            if let Some(other) = bad {
                let (message, help) = if other.shape.rank() != rank {
                    (
                        format!(
                            "`concat` joins maps with maps or vectors with vectors, found {} and {}",
                            first.shape, other.shape
                        ),
                        "`flatten` the maps first, or concatenate before flattening",
                    )
                } else {
                    (
                        format!(
                            "`concat` joins maps of one spatial size, found {}x{} and {}x{}",
                            first.shape.0[1], first.shape.0[2], other.shape.0[1], other.shape.0[2]
                        ),
                        "concat stacks channels: give every branch the same height and width (`padding: same`, equal strides)",
                    )
                };
                diags.push(mismatch(
                    other,
                    "nnc::shape::concat_mismatch",
                    message,
                    help.to_string(),
                ));
                return None;
            }
            if rank == 2 || rank == 0 {
                diags.push(
                    Diagnostic::error(
                        "nnc::shape::concat_rank",
                        format!(
                            "`concat` needs vectors or [channels, height, width] maps, found {}",
                            first.shape
                        ),
                    )
                    .label(first.span, format!("{} gives {}", first.what, first.shape))
                    .label(span, "joined along the first axis")
                    .help(
                        "`flatten` the inputs to vectors first: `concat` joins vectors, or \
                         [channels, height, width] maps along their channels",
                    ),
                );
                return None;
            }
            let mut dims = first.shape.0.clone();
            dims[0] = inputs.iter().map(|i| i.shape.0[0]).sum();
            Shape(dims)
        }
    };
    let flops = if kind == LayerKind::Add {
        (inputs.len() as u64 - 1) * output.numel()
    } else {
        0
    };
    Some(Inferred {
        kind,
        output,
        params: Vec::new(),
        flops,
    })
}

/// How to make two shapes `add` can join, for each way they differ.
fn add_help(first: &MergeInput, other: &MergeInput) -> String {
    let (a, b) = (&first.shape.0[..], &other.shape.0[..]);
    match (a, b) {
        ([x], [_]) => format!(
            "make the widths agree: `dense({x})` after {} projects it to {}",
            other.what, first.shape
        ),
        ([c1, ..], [c2, ..]) if a.len() == 3 && b.len() == 3 && c1 == c2 => {
            "keep the height and width equal along both branches: `padding: same` and equal \
             strides, or the same pooling on both"
                .into()
        }
        ([c1, ..], [_, ..]) if a.len() == 3 && b.len() == 3 => {
            // A 1x1 convolution of stride s maps a side of n to ceil(n / s).
            let stride = (1..=b[1].max(1))
                .find(|&st| b[1].div_ceil(st) == a[1] && b[2].div_ceil(st) == a[2]);
            match stride {
                Some(st) => format!(
                    "make the channels agree: `conv2d({c1}, kernel: 1{})` after {} projects it to {}",
                    if st == 1 {
                        String::new()
                    } else {
                        format!(", stride: {st}")
                    },
                    other.what,
                    first.shape
                ),
                None => format!(
                    "make the channels agree (`conv2d({c1}, kernel: 1)` after {}) and the height \
                     and width (`padding: same`, equal strides)",
                    other.what
                ),
            }
        }
        _ if a.len() != b.len() => "`add` joins maps with maps or vectors with vectors: \
             `flatten` or `global_avgpool` the map first, or add before flattening"
            .into(),
        _ => "give both branches the same shape".into(),
    }
}
