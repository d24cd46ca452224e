//! The typed syntax tree of a `.nn` file. Every node carries the byte span it was parsed from.
//!
//! The tree is deliberately generic below the block level: a layer is a [`Call`] (a name with
//! optional arguments) and a train setting is a key with a [`Value`]. What a name means, which
//! arguments it takes and which values are in range is the checker's business (`nnc-check`),
//! so that "unknown layer `dnese`, did you mean `dense`?" is a checker diagnostic with the
//! full schema at hand, not a parse error.

use crate::Span;

/// A whole `.nn` file: models, train blocks and connection tables in source order.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
    /// The text, without trailing whitespace.
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Model(ModelDecl),
    Train(TrainDecl),
    Connections(ConnectionsDecl),
}

/// A name as written, with its span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `model NAME { input ...; layer -> layer ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDecl {
    pub name: Ident,
    pub body: Vec<ModelItem>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ModelItem {
    Input(InputDecl),
    Chain(Chain),
}

/// `input image: f32[1, 32, 32]`: the per-sample shape (the batch axis is implicit).
#[derive(Clone, Debug, PartialEq)]
pub struct InputDecl {
    pub name: Option<Ident>,
    /// The element type as written (`f32`), if any.
    pub dtype: Option<Ident>,
    pub dims: Vec<Number>,
    /// The span of the type, `f32[1, 32, 32]`.
    pub type_span: Span,
    pub span: Span,
}

/// `c1: conv2d(6, kernel: 5) -> relu -> maxpool(2)`: layers applied in order. The label, if
/// any, names the first layer of the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    pub label: Option<Ident>,
    pub layers: Vec<Call>,
    pub span: Span,
}

/// `name` or `name(arg, key: value, ...)`: a layer, an activation, an optimizer, a data source.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub name: Ident,
    /// `None` when written without parentheses.
    pub args: Option<Args>,
    pub span: Span,
}

impl Call {
    /// The arguments, empty when written without parentheses.
    pub fn args(&self) -> &[Arg] {
        self.args.as_ref().map_or(&[], |a| &a.items)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    pub items: Vec<Arg>,
    pub span: Span,
}

/// A positional (`6`) or named (`kernel: 5`) argument.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    Number(Number),
    Str(String),
    List(Vec<Value>),
    /// An inline data table, one row per sample.
    Table(Vec<TableRow>),
    /// A bare name (`relu`, `true`, `same`) or a call (`normal(std: 0.01)`).
    Call(Call),
}

impl ValueKind {
    /// What the value is, in words, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            ValueKind::Number(n) if n.is_integer() => "an integer",
            ValueKind::Number(_) => "a number",
            ValueKind::Str(_) => "a string",
            ValueKind::List(_) => "a list",
            ValueKind::Table(_) => "a data table",
            ValueKind::Call(c) if c.args.is_some() => "a call",
            ValueKind::Call(_) => "a name",
        }
    }
}

/// A numeric literal: `32`, `0.01`, `1e-7`, `-3`, or a fraction `1/255`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Number {
    pub value: f64,
    /// How it was written: integers are only what was written as one.
    pub form: NumberForm,
    pub span: Span,
}

/// How a number was written, so that a message can say why `1e3` or `10/2` is not an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberForm {
    /// Digits only, with an optional sign: `32`, `-1`.
    Integer,
    /// With a decimal point or an exponent: `0.5`, `1e3`, `128.0`.
    Float,
    /// `1/255`.
    Fraction,
}

impl Number {
    /// True when the number is integral and was written as an integer.
    pub fn is_integer(&self) -> bool {
        self.form == NumberForm::Integer && self.value.fract() == 0.0
    }
}

/// `0 1 -> 1`: the inputs and targets of one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct TableRow {
    pub inputs: Vec<Number>,
    pub targets: Vec<Number>,
    pub span: Span,
}

/// `train MODEL { key value ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct TrainDecl {
    pub model: Ident,
    pub settings: Vec<Setting>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub key: Ident,
    pub value: Value,
    pub span: Span,
}

/// `connections NAME { X . X ... }`: rows are input channels, columns output channels.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionsDecl {
    pub name: Ident,
    pub rows: Vec<ConnectionRow>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionRow {
    /// `true` where the input channel feeds the output channel (`X`).
    pub cells: Vec<bool>,
    pub span: Span,
}
