//! Binding call arguments to a schema, and reading typed values out of them.
//!
//! Every layer, activation, initialiser, optimizer and data source is a [`Call`] checked against
//! a list of [`Spec`]s. Errors are pushed and a fallback is returned, so that one bad argument
//! does not hide the next problem.

use nnc_syntax::ast::{Call, NumberForm, Value, ValueKind};
use nnc_syntax::diagnostic::quote;
use nnc_syntax::{Diagnostic, Span};

use crate::suggest;

/// One argument a call accepts.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub name: &'static str,
    /// May be given by position (in schema order), e.g. `dense(128)`.
    pub positional: bool,
}

pub const fn pos(name: &'static str) -> Spec {
    Spec {
        name,
        positional: true,
    }
}

pub const fn named(name: &'static str) -> Spec {
    Spec {
        name,
        positional: false,
    }
}

/// The arguments of one call, bound to their names.
pub struct Bound<'a> {
    /// `dense`, `momentum`, ...: how the call is named in messages.
    pub what: &'a str,
    pub span: Span,
    values: Vec<(&'static str, &'a Value)>,
    /// Binding reported an error (an unknown or surplus argument), so a "missing argument"
    /// would most likely be the same mistake reported twice.
    had_errors: bool,
}

/// Binds `call`'s arguments to `specs`, reporting unknown, duplicate and surplus arguments.
pub fn bind<'a>(call: &'a Call, specs: &[Spec], diags: &mut Vec<Diagnostic>) -> Bound<'a> {
    let what = call.name.name.as_str();
    let errors_before = diags.len();
    let mut values: Vec<(&'static str, &'a Value)> = Vec::new();
    let positional: Vec<&Spec> = specs.iter().filter(|s| s.positional).collect();
    let mut next_pos = 0;
    let mut seen_named = false;
    for arg in call.args() {
        let spec = match &arg.name {
            None => {
                if seen_named {
                    diags.push(
                        Diagnostic::error(
                            "nnc::arg::positional_after_named",
                            "positional argument after a named one",
                        )
                        .label(arg.span, "this has no name")
                        .help("give it a name, or move it before the named arguments"),
                    );
                    continue;
                }
                let Some(spec) = positional.get(next_pos) else {
                    let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
                    let message = match positional.len() {
                        _ if specs.is_empty() => format!("`{what}` takes no arguments"),
                        0 => format!("`{what}` takes only named arguments"),
                        1 => format!("`{what}` takes 1 positional argument, found more"),
                        n => format!("`{what}` takes {n} positional arguments, found more"),
                    };
                    diags.push(
                        Diagnostic::error("nnc::arg::too_many", message)
                            .label(arg.span, "surplus argument")
                            .help(if names.is_empty() {
                                "remove the parentheses".to_string()
                            } else {
                                format!("name it: `{what}` accepts {}", suggest::list(&names))
                            }),
                    );
                    continue;
                };
                next_pos += 1;
                **spec
            }
            Some(name) => {
                seen_named = true;
                match specs.iter().find(|s| s.name == name.name) {
                    Some(spec) => *spec,
                    None => {
                        let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
                        let help = if names.is_empty() {
                            format!("`{what}` takes no arguments")
                        } else {
                            suggest::help(&name.name, &format!("the arguments of `{what}`"), &names)
                        };
                        diags.push(
                            Diagnostic::error(
                                "nnc::name::unknown_argument",
                                format!("`{what}` has no argument {}", quote(&name.name)),
                            )
                            .label(name.span, "unknown argument")
                            .help(help),
                        );
                        continue;
                    }
                }
            }
        };
        if let Some((_, first)) = values.iter().find(|(n, _)| *n == spec.name) {
            diags.push(
                Diagnostic::error(
                    "nnc::arg::duplicate",
                    format!("`{}` is given twice", spec.name),
                )
                .label(arg.span, "given again here")
                .label(first.span, "first given here")
                .help("remove one of them"),
            );
            continue;
        }
        values.push((spec.name, &arg.value));
    }
    Bound {
        what,
        span: call.span,
        values,
        had_errors: diags.len() != errors_before,
    }
}

impl<'a> Bound<'a> {
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// Reports a missing required argument; `example` shows a correct call.
    pub fn missing(&self, name: &str, example: &str, diags: &mut Vec<Diagnostic>) {
        if self.had_errors {
            return;
        }
        diags.push(
            Diagnostic::error(
                "nnc::arg::missing",
                format!("`{}` needs `{name}`", self.what),
            )
            .label(self.span, format!("`{name}` is missing"))
            .help(format!("for example `{example}`")),
        );
    }

    /// A required integer ≥ `min`.
    pub fn int(
        &self,
        name: &str,
        min: u64,
        example: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<u64> {
        match self.get(name) {
            None => {
                self.missing(name, example, diags);
                None
            }
            Some(v) => int_at_least(v, name, min, diags),
        }
    }

    /// An optional integer ≥ `min`.
    pub fn int_or(&self, name: &str, min: u64, default: u64, diags: &mut Vec<Diagnostic>) -> u64 {
        self.get(name)
            .map_or(Some(default), |v| int_at_least(v, name, min, diags))
            .unwrap_or(default)
    }

    /// An optional number within `range`.
    pub fn float_or(
        &self,
        name: &str,
        range: Range,
        default: f64,
        diags: &mut Vec<Diagnostic>,
    ) -> f64 {
        self.get(name)
            .map_or(Some(default), |v| float_in(v, name, range, diags))
            .unwrap_or(default)
    }

    pub fn bool_or(&self, name: &str, default: bool, diags: &mut Vec<Diagnostic>) -> bool {
        let Some(v) = self.get(name) else {
            return default;
        };
        match &v.kind {
            ValueKind::Call(c) if c.args.is_none() && c.name.name == "true" => true,
            ValueKind::Call(c) if c.args.is_none() && c.name.name == "false" => false,
            _ => {
                diags.push(type_error(v, name, "`true` or `false`"));
                default
            }
        }
    }

    /// An integer or a pair `[h, w]` of integers ≥ `min`.
    pub fn pair_or(
        &self,
        name: &str,
        min: u64,
        default: Option<[usize; 2]>,
        example: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<[usize; 2]> {
        let Some(v) = self.get(name) else {
            if default.is_none() {
                self.missing(name, example, diags);
            }
            return default;
        };
        pair(v, name, min, diags)
    }

    /// A required string.
    pub fn string(&self, name: &str, example: &str, diags: &mut Vec<Diagnostic>) -> Option<String> {
        let Some(v) = self.get(name) else {
            self.missing(name, example, diags);
            return None;
        };
        match &v.kind {
            ValueKind::Str(s) => Some(s.clone()),
            _ => {
                diags.push(type_error(v, name, "a string such as `\"data/x.csv\"`"));
                None
            }
        }
    }
}

/// An interval for range checks, printed in messages as `[0, 1)`, `> 0`, ...
#[derive(Clone, Copy, Debug)]
pub struct Range {
    pub lo: f64,
    pub lo_open: bool,
    pub hi: f64,
    pub hi_open: bool,
}

impl Range {
    /// `> 0`
    pub const POSITIVE: Range = Range {
        lo: 0.0,
        lo_open: true,
        hi: f64::INFINITY,
        hi_open: true,
    };
    /// `≥ 0`
    pub const NON_NEGATIVE: Range = Range {
        lo: 0.0,
        lo_open: false,
        hi: f64::INFINITY,
        hi_open: true,
    };
    /// `[0, 1)`
    pub const UNIT_OPEN: Range = Range {
        lo: 0.0,
        lo_open: false,
        hi: 1.0,
        hi_open: true,
    };
    pub const ANY: Range = Range {
        lo: f64::NEG_INFINITY,
        lo_open: true,
        hi: f64::INFINITY,
        hi_open: true,
    };

    pub fn contains(&self, x: f64) -> bool {
        let above = if self.lo_open {
            x > self.lo
        } else {
            x >= self.lo
        };
        let below = if self.hi_open {
            x < self.hi
        } else {
            x <= self.hi
        };
        above && below
    }

    fn describe(&self) -> String {
        match (self.lo.is_finite(), self.hi.is_finite()) {
            (true, false) => format!("{} {}", if self.lo_open { ">" } else { "≥" }, self.lo),
            (false, true) => format!("{} {}", if self.hi_open { "<" } else { "≤" }, self.hi),
            (true, true) => format!(
                "in {}{}, {}{}",
                if self.lo_open { "(" } else { "[" },
                self.lo,
                self.hi,
                if self.hi_open { ")" } else { "]" }
            ),
            (false, false) => "finite".into(),
        }
    }
}

/// A value of the wrong kind. The help line says how to write the right one: without the
/// quotes when a number or a name was quoted, else what the argument is, with an example.
pub fn type_error(v: &Value, name: &str, expected: &str) -> Diagnostic {
    let found = match &v.kind {
        ValueKind::Number(n) => crate::model::num(n.value),
        ValueKind::Call(c) if c.args.is_none() => format!("`{}`", c.name.name),
        other => other.describe().to_string(),
    };
    let help = match &v.kind {
        ValueKind::Str(s) if unquoted(s) => format!("write it without the quotes: `{s}`"),
        _ => about(name).map_or_else(|| format!("write {expected}"), str::to_string),
    };
    Diagnostic::error(
        "nnc::arg::type",
        format!("`{name}` must be {expected}, found {found}"),
    )
    .label(v.span, format!("expected {expected}"))
    .help(help)
}

/// A string that would be a number or a name without its quotes: `"10"`, `"relu"`.
fn unquoted(s: &str) -> bool {
    let name = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    name || (!s.is_empty() && s.parse::<f64>().is_ok_and(f64::is_finite))
}

/// What an argument or setting is, with an example: the help line of its type and range
/// errors. Names shared by several calls (`scale`, `alpha`, `shift`) are described for all.
fn about(name: &str) -> Option<&'static str> {
    Some(match name {
        // Optimizers.
        "lr" => {
            "the learning rate scales each step; typical values are 0.0001 to 0.1 (1 for \
             `adadelta`)"
        }
        "momentum" => {
            "momentum is the fraction of the previous update kept; 0.9 is typical, 1 never forgets"
        }
        "rho" => "rho is the decay of the squared-gradient average; 0.9 is typical",
        "beta1" | "beta2" => {
            "the decay rates of Adam, AdamW, Adamax and NAdam are below 1; the defaults are 0.9 \
             and 0.999"
        }
        "centered" => {
            "`centered: true` divides by the gradient's variance instead of its mean square; \
             the default is `false`"
        }
        "eps" => {
            "eps keeps the division away from zero; 1e-7 is Keras' default (1e-6 for `adadelta`)"
        }
        "initial_accumulator" => {
            "Adagrad's starting sum of squared gradients, ≥ 0; Keras' default is 0.1"
        }
        "weight_decay" => {
            "the L2 penalty λ adds λ·w to each gradient (`adamw` instead shrinks w by lr·λ·w); \
             1e-4 to 1e-2 is typical"
        }
        // Train settings.
        "batch" => "the number of samples per training step, from 1; 32 is typical",
        "epochs" => "the number of passes over the training data, from 1",
        "seed" => "any integer from 0 to 2^53 − 1; the same seed gives the same run",
        "validation" => "the fraction of the training data held out, e.g. `validation 0.1`",
        "patience" => "the epochs without improvement before stopping, e.g. `patience: 3`",
        "min_delta" => {
            "the smallest drop of the validation loss that counts as an improvement; 0 counts any"
        }
        "shift" => {
            "`augment(shift: 2)` shifts images by up to 2 pixels; `mnist(shift: -0.1)` adds \
             -0.1 to every pixel value"
        }
        "min" => "the last rate as a fraction of `lr`, in [0, 1): 0 decays to zero, 0.1 to a tenth",
        "gamma" => {
            "the factor applied at each decay, in (0, 1]; 0.1 for `step`, 0.9 for `exponential`"
        }
        "every" => "the epochs between two decays, from 1, e.g. `step(every: 10)`",
        "warmup" => "the warmup's length in epochs, ≥ 0 (0 for none; fractions allowed)",
        // Data.
        "pad" => "pixels of background added on each side of an image; 0 for none",
        "scale" => {
            "a positive factor: `scale: 1/255` maps pixels to [0, 1]; `tanh(scale: 1.7159)` \
             is LeCun's"
        }
        "classes" => "the number of classes, at least 2, e.g. `classes: 10`",
        "flatten" => "`flatten: true` gives each image as a vector; the default is `false`",
        "path" | "images" | "labels" => {
            "a path in double quotes, relative to the .nn file, e.g. `\"data/train.csv\"`"
        }
        "target" => {
            "the target column's name in double quotes, or a list of names: `target: \"y\"`"
        }
        "data source" => {
            "a data source is a call such as `mnist()` or `csv(\"data.csv\", target: \"y\")`, \
             or an inline table `{ 0 1 -> 1 }`"
        }
        "loss" => "a loss is a name: `loss softmax_cross_entropy`",
        "optimizer" => "an optimizer is a name or a call: `optimizer sgd(lr: 0.1)`",
        "metric" => "metrics are names: `metrics [loss, accuracy]`",
        "learning-rate schedule" => "a schedule is a name or a call: `schedule cosine(warmup: 1)`",
        "early stopping rule" => "write `early_stop(patience: 3)`",
        "augmentation" => "write `augment(shift: 2)`",
        // Layers.
        "units" => "the number of outputs, from 1, e.g. `dense(128)`",
        "filters" => "the number of output channels, from 1, e.g. `conv2d(6, kernel: 5)`",
        "kernel" => "the window's height and width, from 1: `kernel: 5` or `kernel: [5, 3]`",
        "size" => "the window's height and width, from 1: `maxpool(2)` or `maxpool([2, 1])`",
        "stride" => "the step between windows, from 1: `stride: 2` or `stride: [2, 1]`",
        "padding" => {
            "pixels added on each side (`padding: 2` or `[1, 2]`), `same` (an output of \
             ⌈input / stride⌉, as Keras) or `valid` (none)"
        }
        "bias" => "`bias: false` leaves the bias out; the default is `true`",
        "ceil_mode" => {
            "`ceil_mode: true` keeps a last, partial window (PyTorch's); the default is `false`"
        }
        "connections" => "the name of a `connections NAME { ... }` table, without quotes",
        "rate" => {
            "dropout zeroes this fraction of units while training; a rate of 1 would drop everything"
        }
        "alpha" => "the slope or scale of the negative side, ≥ 0: `leaky_relu(0.01)`, `elu(1)`",
        "slope" => "the factor on tanh's input, > 0; LeCun 1998 uses `slope: 2/3`",
        "activation" => {
            "an activation is a name or a call: `activation: relu`, `activation: leaky_relu(0.2)`"
        }
        "init" | "bias_init" => {
            "an initialiser is a name or a call: `init: he_normal`, `init: normal(std: 0.01)`"
        }
        "limit" => "`uniform(limit)` draws from [−limit, limit], limit > 0; 0.05 is Keras' default",
        "std" => "the standard deviation of the initial weights, > 0, e.g. `normal(std: 0.01)`",
        "mean" | "value" => "a finite number, e.g. `0.1`",
        _ => return None,
    })
}

/// The help line of a range error: what the quantity is, or else the range itself.
fn range_help(name: &str, range: &str) -> String {
    about(name).map_or_else(|| format!("use a value {range}"), str::to_string)
}

/// Integers are read as 64-bit floats, which hold every integer below 2^53 exactly and round
/// some above it (2^53 + 1 reads as 2^53): an integer literal must be below 2^53.
const MAX_INTEGER: f64 = 9_007_199_254_740_992.0;

/// An integer literal ≥ `min`.
pub fn int_at_least(v: &Value, name: &str, min: u64, diags: &mut Vec<Diagnostic>) -> Option<u64> {
    let expected = if min == 0 {
        "a non-negative integer"
    } else {
        "a positive integer"
    };
    match &v.kind {
        ValueKind::Number(n) if !n.value.is_finite() => None, // reported by the parser
        ValueKind::Number(n) if n.is_integer() => {
            if n.value < min as f64 {
                diags.push(
                    Diagnostic::error(
                        "nnc::range",
                        format!("`{name}` must be at least {min}, found {}", n.value),
                    )
                    .label(v.span, format!("must be ≥ {min}"))
                    .help(range_help(name, &format!("≥ {min}"))),
                );
                None
            } else if n.value >= MAX_INTEGER {
                // Not the value: a literal above 2^53 was rounded when it was read.
                diags.push(
                    Diagnostic::error(
                        "nnc::range",
                        format!("`{name}` must be below 2^53 = 9007199254740992"),
                    )
                    .label(v.span, "too large to be read exactly")
                    .help(
                        "numbers are read as 64-bit floats, which hold every integer below 2^53 \
                         but not every larger one: 2^53 + 1 would be read as 2^53",
                    ),
                );
                None
            } else {
                Some(n.value as u64)
            }
        }
        ValueKind::Number(n) if n.value.fract() == 0.0 => {
            // `1e3`, `128.0`, `10/2`: an integral value not written as an integer.
            let written = match n.form {
                NumberForm::Fraction => "a fraction",
                _ => "a floating-point number",
            };
            let help = if n.value >= min as f64 && n.value < MAX_INTEGER {
                format!("write it as an integer: `{}`", n.value as u64)
            } else {
                range_help(name, &format!("≥ {min}"))
            };
            diags.push(
                Diagnostic::error(
                    "nnc::arg::type",
                    format!(
                        "`{name}` must be {expected}, found {} written as {written}",
                        crate::model::num(n.value)
                    ),
                )
                .label(v.span, format!("written as {written}"))
                .help(help),
            );
            None
        }
        ValueKind::Number(n) => {
            let (below, above) = (n.value.floor(), n.value.ceil());
            let help = if below >= min as f64 && above < MAX_INTEGER {
                format!("`{name}` is a whole number: write `{below}` or `{above}`")
            } else {
                range_help(name, &format!("≥ {min}"))
            };
            diags.push(type_error(v, name, expected).help(help));
            None
        }
        _ => {
            diags.push(type_error(v, name, expected));
            None
        }
    }
}

/// A number within `range`.
pub fn float_in(v: &Value, name: &str, range: Range, diags: &mut Vec<Diagnostic>) -> Option<f64> {
    match &v.kind {
        ValueKind::Number(n) => {
            if !n.value.is_finite() {
                return None; // reported by the parser
            }
            if range.contains(n.value) {
                Some(n.value)
            } else {
                let d = Diagnostic::error(
                    "nnc::range",
                    format!(
                        "`{name}` must be {}, found {}",
                        range.describe(),
                        crate::model::num(n.value)
                    ),
                )
                .label(v.span, "out of range")
                .help(range_help(name, &range.describe()));
                diags.push(d);
                None
            }
        }
        _ => {
            diags.push(type_error(v, name, "a number"));
            None
        }
    }
}

/// An integer, or a pair `[h, w]`, each ≥ `min`.
pub fn pair(v: &Value, name: &str, min: u64, diags: &mut Vec<Diagnostic>) -> Option<[usize; 2]> {
    match &v.kind {
        ValueKind::Number(_) => int_at_least(v, name, min, diags).map(|n| [n as usize; 2]),
        ValueKind::List(items) if items.len() == 2 => {
            let a = int_at_least(&items[0], name, min, diags)?;
            let b = int_at_least(&items[1], name, min, diags)?;
            Some([a as usize, b as usize])
        }
        _ => {
            diags.push(type_error(v, name, "an integer or a pair `[h, w]`"));
            None
        }
    }
}

/// A bare name or a call, e.g. `relu` or `leaky_relu(0.2)`.
pub fn call<'a>(
    v: &'a Value,
    name: &str,
    expected: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a Call> {
    match &v.kind {
        ValueKind::Call(c) => Some(c),
        _ => {
            diags.push(type_error(v, name, expected));
            None
        }
    }
}
