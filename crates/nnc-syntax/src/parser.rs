//! Text to AST: the pest grammar, the tree builder, and parse errors in words.

use pest::Parser as _;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest_derive::Parser;

use crate::ast::*;
use crate::diagnostic::{Diagnostic, Label, quote};
use crate::{Span, scan};

#[derive(Parser)]
#[grammar = "../../../grammar/nn.pest"]
struct Grammar;

/// Parses a whole file. Returns the AST when the text is well-formed, and the diagnostics
/// found otherwise.
pub fn parse(text: &str) -> (Option<File>, Vec<Diagnostic>) {
    let mut diags = scan::scan(text);
    if !diags.is_empty() {
        explain_nested_comment(text, &mut diags);
        return (None, diags);
    }
    let pairs = match Grammar::parse(Rule::file, text) {
        Ok(pairs) => pairs,
        Err(err) => {
            diags.push(describe_error(text, &err));
            explain_nested_comment(text, &mut diags);
            return (None, diags);
        }
    };
    let mut b = Builder { diags: Vec::new() };
    let mut items = Vec::new();
    let file = pairs.into_iter().next().map(|file_pair| {
        for pair in children(file_pair) {
            match pair.as_rule() {
                Rule::model => items.push(Item::Model(b.model(pair))),
                Rule::train => items.push(Item::Train(b.train(pair))),
                Rule::connections => items.push(Item::Connections(b.connections(pair))),
                _ => {}
            }
        }
        File {
            items,
            span: Span::new(0, text.trim_end().len()),
        }
    });
    // A number that is not finite is a syntax error: no tree, so that the checker never
    // reasons about a value that is not there.
    if !b.diags.is_empty() {
        diags.extend(b.diags);
        return (None, diags);
    }
    (file, diags)
}

/// A syntax error between a comment that contains `/*` and a stray `*/` is most likely the
/// nested comment's tail, read as code: say so instead of the generic help.
fn explain_nested_comment(text: &str, diags: &mut [Diagnostic]) {
    let Some(scan::StrayCloser {
        nested: Some(comment),
        stray,
    }) = scan::stray_closer(text)
    else {
        return;
    };
    for diag in diags {
        let at = diag.primary_span().start;
        if (comment.end..stray.end).contains(&at) {
            let first_close = Span::new(comment.end - 2, comment.end);
            diag.labels.push(Label {
                span: first_close,
                text: "the comment ends at this `*/`".into(),
            });
            diag.help = Some(
                "block comments do not nest: a comment ends at its first `*/`, so the text after \
                 it is read as code; remove the inner `/*`, or comment the lines out with `//`"
                    .into(),
            );
        }
    }
}

struct Builder {
    diags: Vec<Diagnostic>,
}

/// The children of a pair without punctuation and keywords, which carry no information.
fn children<'i>(pair: Pair<'i, Rule>) -> impl Iterator<Item = Pair<'i, Rule>> {
    pair.into_inner().filter(|p| {
        !matches!(
            p.as_rule(),
            Rule::kw_model
                | Rule::kw_train
                | Rule::kw_connections
                | Rule::kw_input
                | Rule::arrow
                | Rule::comma
                | Rule::colon
                | Rule::slash
                | Rule::lparen
                | Rule::rparen
                | Rule::lbracket
                | Rule::rbracket
                | Rule::lbrace
                | Rule::rbrace
        )
    })
}

impl Builder {
    fn ident(&self, pair: Pair<'_, Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: pair.as_span().into(),
        }
    }

    fn model(&mut self, pair: Pair<'_, Rule>) -> ModelDecl {
        let text = pair.as_span().get_input();
        let span = pair.as_span().into();
        let mut inner = children(pair);
        let name = self.ident(inner.next().expect("grammar: model name"));
        let body: Vec<ModelItem> = inner
            .map(|p| match p.as_rule() {
                Rule::input_decl => ModelItem::Input(self.input(p)),
                _ => ModelItem::Chain(self.chain(p)),
            })
            .collect();
        for pair in body.windows(2) {
            if let [ModelItem::Chain(before), ModelItem::Chain(after)] = pair
                && after.label.is_none()
                && !text[before.span.end..after.span.start].contains('\n')
            {
                self.diags.push(missing_arrow(before, after));
            }
        }
        ModelDecl { name, body, span }
    }

    fn input(&mut self, pair: Pair<'_, Rule>) -> InputDecl {
        let span = pair.as_span().into();
        let mut name = None;
        let mut dtype = None;
        let mut dims = Vec::new();
        let mut type_span = span;
        for p in children(pair) {
            match p.as_rule() {
                Rule::ident => name = Some(self.ident(p)),
                Rule::tensor_type => {
                    type_span = p.as_span().into();
                    for q in children(p) {
                        match q.as_rule() {
                            Rule::ident => dtype = Some(self.ident(q)),
                            _ => dims.push(self.number(q)),
                        }
                    }
                }
                _ => {}
            }
        }
        InputDecl {
            name,
            dtype,
            dims,
            type_span,
            span,
        }
    }

    fn chain(&mut self, pair: Pair<'_, Rule>) -> Chain {
        let span: Span = pair.as_span().into();
        let mut label = None;
        let mut layers = Vec::new();
        for p in children(pair) {
            match p.as_rule() {
                Rule::ident => label = Some(self.ident(p)),
                _ => {
                    let call = children(p).next().expect("grammar: layer is a call");
                    layers.push(self.call(call));
                }
            }
        }
        // pest includes the whitespace after a trailing repetition; end at the last layer.
        let span = Span::new(
            span.start,
            layers.last().map_or(span.end, |l: &Call| l.span.end),
        );
        Chain {
            label,
            layers,
            span,
        }
    }

    fn call(&mut self, pair: Pair<'_, Rule>) -> Call {
        let span: Span = pair.as_span().into();
        let mut inner = children(pair);
        let name = self.ident(inner.next().expect("grammar: call name"));
        let args = inner.next().map(|args| {
            let span = args.as_span().into();
            let items = children(args).map(|a| self.arg(a)).collect();
            Args { items, span }
        });
        let end = args.as_ref().map_or(name.span.end, |a: &Args| a.span.end);
        Call {
            name,
            args,
            span: Span::new(span.start, end),
        }
    }

    fn arg(&mut self, pair: Pair<'_, Rule>) -> Arg {
        let span: Span = pair.as_span().into();
        let mut name = None;
        let mut value = None;
        for p in children(pair) {
            match p.as_rule() {
                Rule::key => name = Some(self.ident(p)),
                _ => value = Some(self.value(p)),
            }
        }
        let value = value.expect("grammar: argument has a value");
        Arg {
            span: Span::new(span.start, value.span.end),
            name,
            value,
        }
    }

    fn value(&mut self, pair: Pair<'_, Rule>) -> Value {
        let span: Span = pair.as_span().into();
        let inner = children(pair).next().expect("grammar: value has one child");
        let kind = match inner.as_rule() {
            Rule::number => ValueKind::Number(self.number(inner)),
            Rule::fraction => ValueKind::Number(self.fraction(inner)),
            Rule::string => {
                ValueKind::Str(unescape(children(inner).next().map_or("", |b| b.as_str())))
            }
            Rule::list => ValueKind::List(children(inner).map(|v| self.value(v)).collect()),
            Rule::table => ValueKind::Table(children(inner).map(|r| self.table_row(r)).collect()),
            _ => ValueKind::Call(self.call(inner)),
        };
        let span = match &kind {
            ValueKind::Call(c) => c.span,
            _ => span,
        };
        Value { kind, span }
    }

    fn table_row(&mut self, pair: Pair<'_, Rule>) -> TableRow {
        let span: Span = pair.as_span().into();
        let arrow = pair
            .as_str()
            .find("->")
            .map_or(span.end, |i| span.start + i);
        let mut inputs = Vec::new();
        let mut targets = Vec::new();
        for p in children(pair) {
            let n = self.number(p);
            if n.span.start < arrow {
                inputs.push(n);
            } else {
                targets.push(n);
            }
        }
        TableRow {
            inputs,
            targets,
            span,
        }
    }

    fn number(&mut self, pair: Pair<'_, Rule>) -> Number {
        let text = pair.as_str();
        let span: Span = pair.as_span().into();
        let value = text.parse::<f64>().unwrap_or(f64::NAN);
        if text.ends_with(['e', 'E', '+', '-']) {
            // The grammar lets `1e`, `2.5E-` through as one token, so that this can say so.
            let marker = text.rfind(['e', 'E']).unwrap_or(0);
            self.diags.push(
                Diagnostic::error(
                    "nnc::syntax::number",
                    format!("the exponent of {} has no digits", quote(text)),
                )
                .label(
                    Span::new(span.start + marker, span.end),
                    "an exponent needs digits",
                )
                .help(format!(
                    "write the power of ten after the `{}`: `1e3` is 1000, `1e-3` is 0.001",
                    &text[marker..=marker]
                )),
            );
        } else if !value.is_finite() {
            self.diags.push(
                Diagnostic::error(
                    "nnc::syntax::number",
                    format!("{} is too large to represent", quote(text)),
                )
                .label(span, "not a finite number")
                .help("numbers must fit a 64-bit float (below about 1.8e308)"),
            );
        }
        Number {
            value,
            form: if text.contains(['.', 'e', 'E']) {
                NumberForm::Float
            } else {
                NumberForm::Integer
            },
            span,
        }
    }

    fn fraction(&mut self, pair: Pair<'_, Rule>) -> Number {
        let span: Span = pair.as_span().into();
        let mut inner = children(pair);
        let num = self.number(inner.next().expect("grammar: numerator"));
        let den = self.number(inner.next().expect("grammar: denominator"));
        if den.value == 0.0 {
            self.diags.push(
                Diagnostic::error("nnc::syntax::number", "division by zero")
                    .label(den.span, "this denominator is zero")
                    .help("a fraction such as `1/255` needs a non-zero denominator"),
            );
        }
        Number {
            value: num.value / den.value,
            form: NumberForm::Fraction,
            span,
        }
    }

    fn train(&mut self, pair: Pair<'_, Rule>) -> TrainDecl {
        let span = pair.as_span().into();
        let mut inner = children(pair);
        let model = self.ident(inner.next().expect("grammar: train model name"));
        let settings = inner
            .map(|s| {
                let span: Span = s.as_span().into();
                let mut parts = children(s);
                let key = self.ident(parts.next().expect("grammar: setting key"));
                let next = parts.next().expect("grammar: setting value");
                let value = if next.as_rule() == Rule::args {
                    // `early_stop(patience: 3)`: the setting's value is a call of its own name.
                    let args_span: Span = next.as_span().into();
                    let items = children(next).map(|a| self.arg(a)).collect();
                    let call = Call {
                        name: key.clone(),
                        args: Some(Args {
                            items,
                            span: args_span,
                        }),
                        span: key.span.to(args_span),
                    };
                    Value {
                        span: call.span,
                        kind: ValueKind::Call(call),
                    }
                } else {
                    self.value(next)
                };
                let span = Span::new(span.start, value.span.end);
                Setting { key, value, span }
            })
            .collect();
        TrainDecl {
            model,
            settings,
            span,
        }
    }

    fn connections(&mut self, pair: Pair<'_, Rule>) -> ConnectionsDecl {
        let span = pair.as_span().into();
        let mut inner = children(pair);
        let name = self.ident(inner.next().expect("grammar: connections name"));
        let rows = inner
            .map(|row| ConnectionRow {
                span: row.as_span().into(),
                cells: children(row).map(|c| c.as_str() != ".").collect(),
            })
            .collect();
        ConnectionsDecl { name, rows, span }
    }
}

/// Two chains on one line: the grammar reads `conv2d(6, kernel: 5) relu` as two lines, which
/// is almost always a `->` left out (or, for `hidden dense(128)`, a label's colon). A labelled
/// layer (`relu out: dense(10)`) starts a new line unambiguously, and is allowed.
fn missing_arrow(before: &Chain, after: &Chain) -> Diagnostic {
    let written = |c: &Call| {
        let args = if c.args.is_some() { "(...)" } else { "" };
        format!("{}{args}", c.name.name)
    };
    let (Some(last), Some(next)) = (before.layers.last(), after.layers.first()) else {
        unreachable!("grammar: a chain has a layer")
    };
    let gap = Span::new(before.span.end, after.span.start);
    let help = if before.label.is_none() && before.layers.len() == 1 && last.args.is_none() {
        format!(
            "to name the layer, write `{}: {}`; to chain the two, `{} -> {}`",
            last.name.name,
            written(next),
            last.name.name,
            written(next)
        )
    } else {
        format!(
            "chain the layers of a line with `->`: `{} -> {}`, or start a new line",
            written(last),
            written(next)
        )
    };
    Diagnostic::error(
        "nnc::syntax::missing_arrow",
        format!(
            "missing `->` between {} and {}",
            quote(&last.name.name),
            quote(&next.name.name)
        ),
    )
    .label(gap, "`->` expected here")
    .label(after.span, "read as a new line of layers")
    .help(help)
}

fn unescape(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Turns a pest error into a diagnostic that says what was expected in words.
fn describe_error(text: &str, err: &pest::error::Error<Rule>) -> Diagnostic {
    let pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    }
    .min(text.len());
    if let Some(diag) = non_ascii_name(text, pos) {
        return diag;
    }
    let positives: &[Rule] = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => positives,
        ErrorVariant::CustomError { .. } => &[],
    };
    let mut expected: Vec<&str> = Vec::new();
    for words in positives.iter().filter_map(|r| rule_words(*r)) {
        if !expected.contains(&words) {
            expected.push(words);
        }
    }
    let before = text[..pos].trim_end();
    if before.ends_with("->") {
        expected = vec!["the next layer"];
    }
    let (found, found_span) = token_at(text, pos);
    let expected = match expected.as_slice() {
        [] => "something else".to_string(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    };
    let help = hint(text, pos).unwrap_or_else(|| grammar_help(before, positives));
    Diagnostic::error(
        "nnc::syntax::unexpected",
        format!("expected {expected}, found {found}"),
    )
    .label(found_span, format!("expected {expected}"))
    .help(help)
}

/// `dënse`: names are ASCII, so the grammar stops inside the word, after `d`. The error is the
/// whole word, from its first character, and the character that is not ASCII.
fn non_ascii_name(text: &str, pos: usize) -> Option<Diagnostic> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let c = text[pos..].chars().next()?;
    if c.is_ascii() || !is_word(c) {
        return None;
    }
    let start = text[..pos]
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_word(c))
        .last()
        .map_or(pos, |(i, _)| i);
    let end = text[pos..]
        .find(|c| !is_word(c))
        .map_or(text.len(), |n| pos + n);
    let word = &text[start..end];
    if !word.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        return None; // `784²` is a number with something after it, not a name
    }
    Some(
        Diagnostic::error(
            "nnc::syntax::unexpected",
            format!("{} is not a name: names are ASCII", quote(word)),
        )
        .label(
            Span::new(start, end),
            format!("`{c}` (U+{:04X}) is not an ASCII character", u32::from(c)),
        )
        .help("names are made of the letters a–z and A–Z, the digits and `_`; rename it in those"),
    )
}

/// The words for a rule that can appear in an error, or `None` for rules subsumed by others.
fn rule_words(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::file => "a `model`, `train` or `connections` block",
        Rule::kw_model => "`model`",
        Rule::kw_train => "`train`",
        Rule::kw_connections => "`connections`",
        Rule::kw_input => "an `input` declaration",
        Rule::arrow => "`->`",
        Rule::comma => "`,`",
        Rule::colon => "`:`",
        Rule::slash => "`/`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::lbracket => "`[`",
        Rule::rbracket => "`]`",
        Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::model => "a `model` block",
        Rule::train => "a `train` block",
        Rule::connections => "a `connections` table",
        Rule::input_decl => "an `input` declaration",
        Rule::tensor_type => "a tensor type such as `f32[1, 28, 28]`",
        Rule::chain => "a layer",
        Rule::layer => "a layer",
        Rule::setting => "a setting such as `batch 32`",
        Rule::conn_row | Rule::conn_cell => "a row of `X` (connected) and `.` (not connected)",
        Rule::call => "a name",
        Rule::args => "`(`",
        Rule::arg => "an argument",
        Rule::value => "a value",
        Rule::list => "a list",
        Rule::table => "a data table",
        Rule::table_row => "a table row such as `0 1 -> 1`",
        Rule::fraction | Rule::number => "a number",
        Rule::string => "a string",
        Rule::ident => "a name",
        Rule::key => "a name",
        Rule::keyword => "a keyword",
        _ => return None,
    })
}

/// The token found at `pos`, in words, and its span.
fn token_at(text: &str, pos: usize) -> (String, Span) {
    let rest = &text[pos.min(text.len())..];
    let Some(c) = rest.chars().next() else {
        return ("end of file".to_string(), Span::new(text.len(), text.len()));
    };
    let len = if c.is_alphanumeric() || c == '_' {
        rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len())
    } else if rest.starts_with("->") || rest.starts_with("*/") {
        2
    } else {
        c.len_utf8()
    };
    let word = &rest[..len];
    let what = if c.is_ascii_digit() {
        format!("number {}", quote(word))
    } else if c.is_alphabetic() || c == '_' {
        if matches!(word, "model" | "train" | "connections" | "input") {
            format!("keyword {}", quote(word))
        } else {
            quote(word)
        }
    } else {
        quote(word)
    };
    (what, Span::new(pos, pos + len))
}

/// A help line for the common mistakes that the grammar alone describes poorly.
/// `kernel: ` when `text` ends with the argument name `kernel:` (and spaces), else nothing.
fn key_before(text: &str) -> String {
    let Some(head) = text.trim_end().strip_suffix(':') else {
        return String::new();
    };
    let head = head.trim_end();
    let key = &head[head
        .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_')
        .len()..];
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

fn hint(text: &str, pos: usize) -> Option<String> {
    let rest = &text[pos.min(text.len())..];
    let before = text[..pos.min(text.len())].trim_end();
    if rest.starts_with("=>") || rest.starts_with('>') || rest.starts_with("=") {
        return Some("layers are chained with `->`".into());
    }
    if rest.starts_with("input") {
        return Some(
            "`input` declares the model's input and belongs at the top of a model block".into(),
        );
    }
    if rest.starts_with("model") || rest.starts_with("train") || rest.starts_with("connections") {
        return Some("blocks cannot be nested; close the previous block with `}` first".into());
    }
    if before.ends_with("->") {
        return Some("`->` must be followed by the next layer".into());
    }
    if rest.starts_with(';') {
        return Some("statements end at the end of the line; no `;` is needed".into());
    }
    if rest.starts_with('→') {
        return Some("layers are chained with `->`, a hyphen and `>`".into());
    }
    // `kernel: 3x3`: a size written as in a paper. The number ends at the `x`.
    let size_like = |r: &str| {
        let digits = r.trim_start_matches(['x', 'X', '×']);
        digits.len() < r.len() && digits.starts_with(|c: char| c.is_ascii_digit())
    };
    if before.ends_with(|c: char| c.is_ascii_digit()) && size_like(rest) {
        let head = before.trim_end_matches(|c: char| c.is_ascii_digit());
        let number = &before[head.len()..];
        let second: String = rest
            .trim_start_matches(['x', 'X', '×'])
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let key = key_before(head);
        return Some(if number == second {
            format!(
                "a square window is one number: `{key}{number}`; a rectangle is a pair, `{key}[{number}, 5]`"
            )
        } else {
            format!("a window's height and width are a pair: `{key}[{number}, {second}]`")
        });
    }
    // `kernel: (3, 3)`: a Python tuple.
    if before.ends_with(':') && rest.starts_with('(') {
        let key = key_before(before);
        // The user's numbers when the tuple is short and plain, else an example.
        let inner = rest[1..].split(')').next().unwrap_or_default();
        let plain = inner.len() <= 20
            && inner.contains(',')
            && inner
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == ' ');
        let pair = if plain { inner.trim() } else { "3, 3" };
        return Some(format!(
            "a pair is written in brackets: `{key}[{pair}]` (or one number for a square, `{key}3`)"
        ));
    }
    if rest.starts_with("*/") {
        return Some("`*/` ends a block comment, but no comment is open here".into());
    }
    None
}

/// A help line from what the grammar expected, for errors no [`hint`] explains: what belongs
/// at that place, with an example.
fn grammar_help(before: &str, expected: &[Rule]) -> String {
    let has = |rule: Rule| expected.contains(&rule);
    let block = ["model", "train", "connections"].into_iter().find(|kw| {
        before.ends_with(kw)
            && !before[..before.len() - kw.len()]
                .ends_with(|c: char| c.is_alphanumeric() || c == '_')
    });
    if let (Some(kw), true) = (block, has(Rule::ident)) {
        return format!("a block is named after its keyword: `{kw} NAME {{ ... }}`");
    }
    if has(Rule::conn_row) || has(Rule::conn_cell) {
        return "a connection table has one row per input channel, one cell per output channel: \
                `X` connected, `.` not"
            .into();
    }
    if has(Rule::table_row) {
        return "a table row is one sample on one line, numbers separated by spaces or `,`: \
                inputs, `->`, targets, e.g. `0 1 -> 1`"
            .into();
    }
    if has(Rule::tensor_type) {
        return "an input is declared with its per-sample shape: `input image: f32[1, 28, 28]`"
            .into();
    }
    if has(Rule::lbracket) && !has(Rule::value) {
        return "a tensor type gives its shape in brackets: `f32[784]` or `f32[1, 28, 28]`".into();
    }
    if has(Rule::comma) && has(Rule::rparen) {
        return "arguments are separated by `,` and end with `)`: `conv2d(6, kernel: 5)`".into();
    }
    if has(Rule::comma) && has(Rule::rbracket) {
        return "items are separated by `,` and the list ends with `]`: `[5, 5]`".into();
    }
    if has(Rule::value) && (has(Rule::colon) || has(Rule::args)) {
        return "a setting is a name and its value: `batch 32`, `optimizer sgd(lr: 0.1)`".into();
    }
    if has(Rule::setting) || (has(Rule::key) && has(Rule::rbrace)) {
        return "a train block holds settings, one per line (`batch 32`), and ends with `}`".into();
    }
    if has(Rule::chain) || has(Rule::input_decl) {
        return "a model block holds its `input`, then layers chained with `->` \
                (`h: dense(128) -> relu`), and ends with `}`"
            .into();
    }
    if has(Rule::value) {
        return "a value is a number, a string, a name, a call, a list `[...]` or a data table \
                `{ ... }`"
            .into();
    }
    if has(Rule::ident) || has(Rule::call) || has(Rule::key) {
        return "a name starts with a letter or `_`, then letters, digits and `_`: `dense`, \
                `conv_1`"
            .into();
    }
    if has(Rule::number) {
        return "a number is written in ASCII digits: `28`, `-1`, `0.5`, `1e-3`".into();
    }
    if has(Rule::colon) {
        return "a named argument is `name: value`: `kernel: 5`".into();
    }
    if has(Rule::arg) {
        return "an argument is a value or `name: value`: `dense(128)`, `conv2d(6, kernel: 5)`"
            .into();
    }
    if has(Rule::lbrace) {
        return "a block's name is one word, followed by its body in braces: \
                `model lenet5 { ... }`"
            .into();
    }
    let file_level = [
        Rule::file,
        Rule::model,
        Rule::train,
        Rule::connections,
        Rule::kw_model,
        Rule::kw_train,
        Rule::kw_connections,
        Rule::EOI,
    ];
    if file_level.into_iter().any(has) {
        return "a .nn file holds `model NAME { ... }`, `train NAME { ... }` and \
                `connections NAME { ... }` blocks; everything else goes inside one"
            .into();
    }
    "docs/language.md describes what may be written here".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> File {
        let (file, diags) = parse(text);
        assert!(diags.is_empty(), "{diags:#?}");
        file.expect("parsed")
    }

    fn err(text: &str) -> String {
        let (_, diags) = parse(text);
        assert_eq!(diags.len(), 1, "{diags:#?}");
        diags[0].message.clone()
    }

    #[test]
    fn parses_a_model_with_chains_and_labels() {
        let text =
            "model m {\n input x: f32[1, 28, 28]\n c1: conv2d(6, kernel: 5) -> relu\n flatten\n}";
        let f = ok(text);
        let Item::Model(m) = &f.items[0] else {
            panic!()
        };
        assert_eq!(m.name.name, "m");
        let ModelItem::Input(input) = &m.body[0] else {
            panic!()
        };
        assert_eq!(
            input.dims.iter().map(|d| d.value).collect::<Vec<_>>(),
            [1.0, 28.0, 28.0]
        );
        let ModelItem::Chain(c) = &m.body[1] else {
            panic!()
        };
        assert_eq!(c.label.as_ref().unwrap().name, "c1");
        assert_eq!(c.layers.len(), 2);
        assert_eq!(c.layers[0].args().len(), 2);
        assert_eq!(c.layers[0].args()[1].name.as_ref().unwrap().name, "kernel");
        assert_eq!(
            &text[c.span.start..c.span.end],
            "c1: conv2d(6, kernel: 5) -> relu"
        );
    }

    #[test]
    fn parses_numbers() {
        let f = ok("train m { lr 1/255 a 1e-7 b -3 c .5 d 2.0 }");
        let Item::Train(t) = &f.items[0] else {
            panic!()
        };
        let vals: Vec<(f64, bool)> = t
            .settings
            .iter()
            .map(|s| match &s.value.kind {
                ValueKind::Number(n) => (n.value, n.is_integer()),
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            vals,
            [
                (1.0 / 255.0, false),
                (1e-7, false),
                (-3.0, true),
                (0.5, false),
                (2.0, false)
            ]
        );
    }

    #[test]
    fn parses_tables_and_connections() {
        let f = ok(
            "train x { data {\n 0 0 -> 0 // c\n 0, 1 -> 1\n} }\nconnections t {\n X . x\n . X X\n}",
        );
        let Item::Train(t) = &f.items[0] else {
            panic!()
        };
        let ValueKind::Table(rows) = &t.settings[0].value.kind else {
            panic!()
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].inputs.len(), 2);
        assert_eq!(rows[1].targets.len(), 1);
        let Item::Connections(c) = &f.items[1] else {
            panic!()
        };
        assert_eq!(c.rows[0].cells, [true, false, true]);
        assert_eq!(c.rows[1].cells, [false, true, true]);
    }

    #[test]
    fn strings_unescape() {
        let f = ok(r#"train x { data csv("a\"b.csv") }"#);
        let Item::Train(t) = &f.items[0] else {
            panic!()
        };
        let ValueKind::Call(c) = &t.settings[0].value.kind else {
            panic!()
        };
        assert_eq!(c.args()[0].value.kind, ValueKind::Str("a\"b.csv".into()));
    }

    #[test]
    fn errors_are_in_words() {
        let m = err("model m { input [2] dense(2) => relu }");
        assert!(m.starts_with("expected"), "{m}");
        assert!(
            !m.contains("Rule") && !m.contains("chain") && !m.contains("ident"),
            "{m}"
        );
        assert!(err("model { }").contains("a name"));
        assert!(err("1/0 x").contains("expected"));
    }

    #[test]
    fn an_exponent_without_digits_is_named() {
        for text in [
            "train x { lr 1e }",
            "train x { lr 2.5E- }",
            "train x { a f(1e) }",
        ] {
            let (file, d) = parse(text);
            assert!(file.is_none());
            assert_eq!(d.len(), 1, "{text}: {d:#?}");
            assert_eq!(d[0].code, "nnc::syntax::number");
            assert!(d[0].message.contains("exponent"), "{}", d[0].message);
            assert_eq!(
                &text[d[0].primary_span().start..][..1].to_ascii_lowercase(),
                "e"
            );
        }
        let f = ok("train x { a 1e3 b 1E+2 c 1e-7 }");
        let Item::Train(t) = &f.items[0] else {
            panic!()
        };
        let forms: Vec<NumberForm> = t
            .settings
            .iter()
            .map(|s| match &s.value.kind {
                ValueKind::Number(n) => n.form,
                _ => panic!(),
            })
            .collect();
        assert_eq!(forms, [NumberForm::Float; 3]);
    }

    #[test]
    fn sizes_written_as_in_a_paper_are_shown_in_nnc() {
        let help = |text: &str| {
            let (_, d) = parse(text);
            assert_eq!(d.len(), 1, "{text}: {d:#?}");
            d[0].help.clone().unwrap_or_default()
        };
        let h = help("model m { conv2d(6, kernel: 3x3) }");
        assert!(
            h.contains("`kernel: 3`") && h.contains("`kernel: [3, 5]`"),
            "{h}"
        );
        let h = help("model m { conv2d(6, kernel:3X5) }");
        assert!(h.contains("`kernel: [3, 5]`"), "{h}");
        let h = help("model m { maxpool(2x2) }");
        assert!(h.contains("`2`") && h.contains("`[2, 5]`"), "{h}");
        let h = help("model m { conv2d(6, kernel: (3, 5)) }");
        assert!(h.contains("`kernel: [3, 5]`"), "{h}");
    }

    #[test]
    fn two_chains_on_one_line_miss_an_arrow() {
        let (file, d) = parse("model m {\n c1: conv2d(6, kernel: 5) relu -> maxpool(2)\n}");
        assert!(file.is_none());
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].code, "nnc::syntax::missing_arrow");
        assert_eq!(d[0].message, "missing `->` between `conv2d` and `relu`");
        let help = d[0].help.as_deref().unwrap_or_default();
        assert!(help.contains("`conv2d(...) -> relu`"), "{help}");
        // A label without its colon: both readings are offered.
        let (_, d) = parse("model m { hidden dense(128) }");
        let help = d[0].help.as_deref().unwrap_or_default();
        assert!(help.contains("`hidden: dense(...)`"), "{help}");
        // Lines, even with a comment between, are separate chains, and so is a label.
        for text in [
            "model m { input x: f32[2] h: dense(3) -> relu out: dense(1) }",
            "model m { input x: f32[2] dense(1)\n relu }",
            "model m {\n dense(1) // out\n relu\n}",
            "model m {\n dense(1) /* a\n b */ relu\n}",
        ] {
            let (file, d) = parse(text);
            assert!(file.is_some() && d.is_empty(), "{text}: {d:#?}");
        }
    }

    #[test]
    fn a_non_ascii_name_is_labelled_from_its_first_character() {
        // `é` is two bytes: the word starts at byte 9 whichever character is not ASCII.
        for text in ["model m {cachée: dense(1)}", "model m {éte: dense(1)}"] {
            let (_, d) = parse(text);
            assert_eq!(d.len(), 1, "{d:#?}");
            let span = d[0].primary_span();
            assert_eq!(span.start, 9, "{text}");
            assert!(text[span.start..span.end].ends_with('e'), "{text}");
            assert!(d[0].help.as_deref().is_some_and(|h| h.contains("a–z")));
        }
        let (_, d) = parse("model m { input [784²] }");
        assert!(!d[0].message.contains("not a name"), "{}", d[0].message);
    }

    #[test]
    fn a_nested_comment_is_explained() {
        let text = "model m { input [1]\n /* a /* b */ c */\n dense(1) }";
        let (_, d) = parse(text);
        assert_eq!(d.len(), 1, "{d:#?}");
        let help = d[0].help.as_deref().unwrap_or_default();
        assert!(help.contains("do not nest"), "{help}");
        let first_close = text.find("*/").expect("a `*/`");
        assert!(d[0].labels.iter().any(|l| l.span.start == first_close));
        // A comment containing `/*` with nothing left over is fine, and a bracket error after
        // a nested comment gets the same explanation.
        ok("model m { input [1] /* a /* b */ dense(1) }");
        let (_, d) = parse("model m { input [1] /* f( /* */ ) */ dense(1) }");
        assert_eq!(d[0].code, "nnc::syntax::unbalanced");
        assert!(
            d[0].help
                .as_deref()
                .unwrap_or_default()
                .contains("do not nest")
        );
        // A `*/` with no comment before it says that no comment is open.
        let (_, d) = parse("model m { input [1] */ }");
        assert!(
            d[0].help
                .as_deref()
                .unwrap_or_default()
                .contains("no comment is open")
        );
    }

    #[test]
    fn every_parse_error_has_a_help_line() {
        let cases = [
            "hello",
            "model { }",
            "model m { input x: f32 784 }",
            "model m { input [1] dense(1 2) }",
            "model m { input [1] f([1 2]) }",
            "train m { optimizer }",
            "train m { 3 }",
            "connections t { X 1 }",
            "model m { input [1] dense(1) -> }",
            "model m { input [1] dense(1) → relu }",
            "model m { } extra",
            "model m: x { }",
            "model m { input x: 3 }",
            "model m { input [1] dense(->) }",
            "model m { input [1] out: 2dense(10) }",
            "model m { input [1, ²] }",
            "train m { data {\n 0 1x -> 1\n } }",
        ];
        for text in cases {
            let (_, d) = parse(text);
            assert!(!d.is_empty(), "{text}");
            for diag in &d {
                let help = diag.help.as_deref().unwrap_or_default();
                // The last resort is true but says little: each case here has a better one.
                assert!(
                    !help.is_empty() && !help.starts_with("docs/language.md"),
                    "{text}: {diag:#?}"
                );
            }
        }
    }

    #[test]
    fn fraction_by_zero_is_reported() {
        let (_, d) = parse("train x { lr 1/0 }");
        assert_eq!(d[0].code, "nnc::syntax::number");
    }
}
