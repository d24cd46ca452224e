//! The text form of functions. Stable: the same function always prints the same text, and
//! `parse(print(f))` prints identically (tested over every snapshot).
//!
//! ```text
//! func @forward(%image: u8[32,1,28,28], %c1.weight: f32[6,1,5,5]) -> (f32[]) {
//!   %0: f32[32,1,28,28] = to_f32 %image, scale=0.00392156862745098
//!   %1: f32[32,6,24,24] = conv2d %0, %c1.weight, stride=[1,1], padding=[0,0]
//!   ...
//!   return %loss
//! }
//! ```

use std::fmt::Write;

use crate::function::{Function, ValueId};

/// Prints a function. Unnamed values are numbered in order of definition.
pub fn print(f: &Function) -> String {
    let mut names: Vec<String> = Vec::with_capacity(f.types.len());
    names.resize(f.types.len(), String::new());
    let mut next = 0;
    let mut label = |v: ValueId, names: &mut Vec<String>| {
        names[v.index()] = match f.name_of(v) {
            Some(n) => format!("%{n}"),
            None => {
                next += 1;
                format!("%{}", next - 1)
            }
        };
    };
    for &p in &f.params {
        label(p, &mut names);
    }
    for inst in &f.insts {
        label(inst.result, &mut names);
    }
    let mut out = String::new();
    let params: Vec<String> = f
        .params
        .iter()
        .map(|&p| format!("{}: {}", names[p.index()], f.ty(p)))
        .collect();
    let results: Vec<String> = f.results.iter().map(|&r| f.ty(r).to_string()).collect();
    let _ = writeln!(
        out,
        "func @{}({}) -> ({}) {{",
        f.name,
        params.join(", "),
        results.join(", ")
    );
    for inst in &f.insts {
        let mut line = format!(
            "  {}: {} = {}",
            names[inst.result.index()],
            f.ty(inst.result),
            inst.op.name()
        );
        let mut first = true;
        for a in &inst.args {
            line.push_str(if first { " " } else { ", " });
            line.push_str(&names[a.index()]);
            first = false;
        }
        for (k, v) in inst.op.attrs() {
            line.push_str(if first { " " } else { ", " });
            let _ = write!(line, "{k}={v}");
            first = false;
        }
        out.push_str(&line);
        out.push('\n');
    }
    let rets: Vec<&str> = f
        .results
        .iter()
        .map(|r| names[r.index()].as_str())
        .collect();
    let _ = writeln!(out, "  return {}", rets.join(", "));
    out.push_str("}\n");
    out
}
