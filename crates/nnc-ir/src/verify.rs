//! The verifier: every value defined once and before use, every type the one its op's shape rule
//! gives, names unique. Runs after lowering, autodiff, the optimizer and every pass, in every
//! build.

use std::collections::HashSet;
use std::fmt;

use crate::function::Function;
use crate::op::Op;
use crate::ops;
use crate::types::DType;

/// A verifier finding, located at an instruction when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    pub inst: Option<usize>,
    pub message: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inst {
            Some(i) => write!(f, "instruction {i}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

pub fn verify(f: &Function) -> Result<(), Vec<VerifyError>> {
    let mut errors = Vec::new();
    let mut err = |inst: Option<usize>, message: String| errors.push(VerifyError { inst, message });
    let n = f.types.len();
    let mut defined = vec![false; n];
    for &p in &f.params {
        if p.index() >= n || std::mem::replace(&mut defined[p.index()], true) {
            err(
                None,
                format!("parameter {} is defined twice or out of range", p.0),
            );
        }
    }
    for (i, inst) in f.insts.iter().enumerate() {
        for a in &inst.args {
            if a.index() >= n || !defined[a.index()] {
                err(
                    Some(i),
                    format!("operand {} is used before it is defined", a.0),
                );
            }
        }
        let r = inst.result.index();
        if r >= n || std::mem::replace(&mut defined[r], true) {
            err(Some(i), format!("value {} is defined twice", inst.result.0));
            continue;
        }
        if inst.args.iter().any(|a| a.index() >= n) {
            continue;
        }
        let declared = f.ty(inst.result);
        match &inst.op {
            Op::Const { .. } => {
                if declared.dtype != DType::F32 {
                    err(Some(i), format!("a constant is f32, declared {declared}"));
                }
            }
            Op::ConstData { data } => {
                if declared.dtype != DType::F32 || data.len() != declared.numel() {
                    err(
                        Some(i),
                        format!("{} values do not fill {declared}", data.len()),
                    );
                }
            }
            op => {
                let arg_types: Vec<_> = inst.args.iter().map(|&a| f.ty(a)).collect();
                match ops::infer(op, &arg_types) {
                    Ok(t) if &t == declared => {}
                    Ok(t) => err(
                        Some(i),
                        format!("`{}` gives {t}, declared {declared}", op.name()),
                    ),
                    Err(e) => err(Some(i), format!("`{}`: {e}", op.name())),
                }
            }
        }
    }
    for r in &f.results {
        if r.index() >= n || !defined[r.index()] {
            err(None, format!("returned value {} is not defined", r.0));
        }
    }
    let mut names = HashSet::new();
    for name in f.names.iter().flatten() {
        if !names.insert(name) {
            err(None, format!("the name `{name}` is used twice"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Verifies a function after a pass, in every build (it is linear in the function, cheap beside
/// the pass; the tests run optimised builds): a failure is a compiler bug.
pub fn verify_after(f: &Function, after: &str) {
    if let Err(errors) = verify(f) {
        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        panic!(
            "internal error: IR invalid after {after}:\n{}\n{}",
            list.join("\n"),
            crate::print::print(f)
        );
    }
}
