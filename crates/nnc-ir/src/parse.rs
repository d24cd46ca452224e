//! Parsing the text form back into functions, so IR tests are written as text and dumps
//! round-trip. Every error is located (line and column); nothing panics on malformed text.

use std::collections::HashMap;
use std::fmt;

use pest::Parser as _;
use pest::iterators::Pair;
use pest_derive::Parser;

use crate::function::{Function, ValueId};
use crate::op::{Attr, Op};
use crate::types::{DType, Type};
use crate::verify;

#[derive(Parser)]
#[grammar = "ir.pest"]
struct Grammar;

/// A located error in IR text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

fn located(pair: &Pair<'_, Rule>, message: impl Into<String>) -> ParseError {
    let (line, column) = pair.as_span().start_pos().line_col();
    ParseError {
        line,
        column,
        message: message.into(),
    }
}

/// Parses one or more functions and verifies each.
pub fn parse(text: &str) -> Result<Vec<Function>, ParseError> {
    let module = Grammar::parse(Rule::module, text).map_err(|e| {
        let (line, column) = match e.line_col {
            pest::error::LineColLocation::Pos(p) | pest::error::LineColLocation::Span(p, _) => p,
        };
        let message = match &e.variant {
            pest::error::ErrorVariant::ParsingError { positives, .. } if !positives.is_empty() => {
                let words: Vec<&str> = positives.iter().map(|r| rule_words(*r)).collect();
                format!("expected {}", words.join(" or "))
            }
            _ => "unexpected text".to_string(),
        };
        ParseError {
            line,
            column,
            message,
        }
    })?;
    let mut funcs = Vec::new();
    for pair in module
        .into_iter()
        .next()
        .into_iter()
        .flat_map(|m| m.into_inner())
    {
        if pair.as_rule() == Rule::func {
            funcs.push(function(pair)?);
        }
    }
    Ok(funcs)
}

/// Parses exactly one function.
pub fn parse_function(text: &str) -> Result<Function, ParseError> {
    let mut funcs = parse(text)?;
    if funcs.len() != 1 {
        return Err(ParseError {
            line: 1,
            column: 1,
            message: format!("expected one function, found {}", funcs.len()),
        });
    }
    Ok(funcs.remove(0))
}

fn rule_words(rule: Rule) -> &'static str {
    match rule {
        Rule::func => "`func`",
        Rule::fname => "a function name",
        Rule::param => "a parameter `%name: type`",
        Rule::inst => "an instruction `%v: type = op ...`",
        Rule::ret => "`return`",
        Rule::opname => "an op name",
        Rule::value => "a value `%name`",
        Rule::ty => "a type such as `f32[32,10]`",
        Rule::dtype => "an element type (`f32`, `i32`, `u8`)",
        Rule::attr => "an attribute `key=value`",
        Rule::key => "an attribute name",
        Rule::attr_value | Rule::list => "an attribute value",
        Rule::float | Rule::int => "a number",
        Rule::boolean => "`true` or `false`",
        Rule::EOI => "end of input",
        _ => "something else",
    }
}

fn ty(pair: Pair<'_, Rule>) -> Result<Type, ParseError> {
    let mut inner = pair.clone().into_inner();
    let dtype = inner
        .next()
        .and_then(|d| DType::from_name(d.as_str()))
        .ok_or_else(|| located(&pair, "expected an element type"))?;
    let mut shape = Vec::new();
    for d in inner {
        shape.push(
            d.as_str()
                .parse::<usize>()
                .ok()
                .filter(|&n| n <= 1 << 40)
                .ok_or_else(|| located(&d, "dimension too large"))?,
        );
    }
    if shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .is_none_or(|n| n > 1 << 40)
    {
        return Err(located(&pair, "tensor too large"));
    }
    Ok(Type::new(dtype, shape))
}

fn attr_value(pair: Pair<'_, Rule>) -> Result<Attr, ParseError> {
    let inner = pair
        .into_inner()
        .next()
        .expect("grammar: attr_value has a child");
    let number = |p: &Pair<'_, Rule>| -> Result<f64, ParseError> {
        p.as_str()
            .parse::<f64>()
            .map_err(|_| located(p, "not a number"))
    };
    let int = |p: &Pair<'_, Rule>| -> Result<usize, ParseError> {
        p.as_str()
            .parse::<usize>()
            .map_err(|_| located(p, "integer too large"))
    };
    Ok(match inner.as_rule() {
        Rule::boolean => Attr::Bool(inner.as_str() == "true"),
        Rule::int => Attr::Int(int(&inner)?),
        Rule::float => Attr::Float(number(&inner)?),
        _ => {
            let items: Vec<Pair<'_, Rule>> = inner.into_inner().collect();
            if items.iter().all(|p| p.as_rule() == Rule::int) {
                Attr::Ints(items.iter().map(int).collect::<Result<_, _>>()?)
            } else {
                Attr::Floats(items.iter().map(number).collect::<Result<_, _>>()?)
            }
        }
    })
}

fn function(pair: Pair<'_, Rule>) -> Result<Function, ParseError> {
    let mut inner = pair.into_inner();
    let name = inner.next().expect("grammar: function name").as_str();
    let mut f = Function::new(name);
    let mut scope: HashMap<String, ValueId> = HashMap::new();
    let mut result_types = Vec::new();
    let mut spans = Vec::new();
    let define = |scope: &mut HashMap<String, ValueId>, p: &Pair<'_, Rule>, v: ValueId| {
        if scope.insert(p.as_str().to_string(), v).is_some() {
            return Err(located(p, format!("`{}` is defined twice", p.as_str())));
        }
        Ok(())
    };
    let lookup = |scope: &HashMap<String, ValueId>, p: &Pair<'_, Rule>| {
        scope.get(p.as_str()).copied().ok_or_else(|| {
            located(
                p,
                format!("`{}` is not defined before this use", p.as_str()),
            )
        })
    };
    for item in inner {
        match item.as_rule() {
            Rule::param => {
                let mut parts = item.into_inner();
                let v = parts.next().expect("grammar: param value");
                let t = ty(parts.next().expect("grammar: param type"))?;
                let id = f.add_param(&v.as_str()[1..], t);
                define(&mut scope, &v, id)?;
            }
            Rule::ty => result_types.push((item.clone(), ty(item)?)),
            Rule::inst => {
                let span_pair = item.clone();
                let mut parts = item.into_inner();
                let v = parts.next().expect("grammar: inst value");
                let t = ty(parts.next().expect("grammar: inst type"))?;
                let opname = parts.next().expect("grammar: op name");
                let mut args = Vec::new();
                let mut attrs = Vec::new();
                for p in parts {
                    match p.as_rule() {
                        Rule::value => args.push(lookup(&scope, &p)?),
                        _ => {
                            let mut kv = p.into_inner();
                            let key = kv.next().expect("grammar: attr key").as_str().to_string();
                            attrs.push((key, attr_value(kv.next().expect("grammar: attr value"))?));
                        }
                    }
                }
                let op =
                    Op::from_parts(opname.as_str(), &attrs).map_err(|m| located(&opname, m))?;
                if !op.arity().accepts(args.len()) {
                    return Err(located(
                        &opname,
                        format!("`{}` takes {}, found {}", op.name(), op.arity(), args.len()),
                    ));
                }
                let id = f.push_typed(op, args, t);
                let label = &v.as_str()[1..];
                if !label.chars().all(|c| c.is_ascii_digit()) {
                    f.set_name(id, label);
                }
                define(&mut scope, &v, id)?;
                spans.push(span_pair);
            }
            Rule::ret => {
                for p in item.into_inner() {
                    f.results.push(lookup(&scope, &p)?);
                }
            }
            _ => {}
        }
    }
    if let Err(errors) = verify::verify(&f) {
        let e = &errors[0];
        return Err(match e.inst.and_then(|i| spans.get(i)) {
            Some(p) => located(p, e.message.clone()),
            None => ParseError {
                line: 1,
                column: 1,
                message: e.message.clone(),
            },
        });
    }
    if result_types.len() != f.results.len() {
        let at = result_types.first().map(|(p, _)| p.clone());
        let message = format!(
            "the signature declares {} results, `return` gives {}",
            result_types.len(),
            f.results.len()
        );
        return Err(match at {
            Some(p) => located(&p, message),
            None => ParseError {
                line: 1,
                column: 1,
                message,
            },
        });
    }
    for ((p, t), &r) in result_types.iter().zip(&f.results) {
        if f.ty(r) != t {
            return Err(located(
                p,
                format!("result declared {t}, returned value is {}", f.ty(r)),
            ));
        }
    }
    Ok(f)
}
