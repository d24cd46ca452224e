//! Functions in SSA form, and a builder that types every value as it is created.

use std::collections::HashMap;

use crate::op::{Binary, Compare, Op, Unary};
use crate::ops;
use crate::types::{DType, Type};

/// A value: a function parameter or the result of an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// An instruction: one op applied to earlier values, defining one new value.
#[derive(Clone, Debug, PartialEq)]
pub struct Inst {
    pub result: ValueId,
    pub op: Op,
    pub args: Vec<ValueId>,
}

/// A function: typed parameters, instructions in definition order, returned values.
///
/// Invariants (checked by [`crate::verify`]): every value is defined once, before its uses;
/// every instruction's type is its op's shape rule applied to its operands' types.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    pub params: Vec<ValueId>,
    pub insts: Vec<Inst>,
    pub results: Vec<ValueId>,
    /// Types of all values, indexed by `ValueId`.
    pub types: Vec<Type>,
    /// Optional names (`c1.weight`, `loss`); unnamed values print as `%<id>`.
    pub names: Vec<Option<String>>,
}

impl Function {
    pub fn new(name: impl Into<String>) -> Function {
        Function {
            name: name.into(),
            params: Vec::new(),
            insts: Vec::new(),
            results: Vec::new(),
            types: Vec::new(),
            names: Vec::new(),
        }
    }

    pub fn ty(&self, v: ValueId) -> &Type {
        &self.types[v.index()]
    }

    pub fn name_of(&self, v: ValueId) -> Option<&str> {
        self.names[v.index()].as_deref()
    }

    /// The value with this name, if any.
    pub fn value_named(&self, name: &str) -> Option<ValueId> {
        self.names
            .iter()
            .position(|n| n.as_deref() == Some(name))
            .map(|i| ValueId(i as u32))
    }

    fn new_value(&mut self, ty: Type, name: Option<String>) -> ValueId {
        let v = ValueId(self.types.len() as u32);
        self.types.push(ty);
        self.names.push(name);
        v
    }

    pub fn add_param(&mut self, name: impl Into<String>, ty: Type) -> ValueId {
        let v = self.new_value(ty, Some(name.into()));
        self.params.push(v);
        v
    }

    /// Appends an instruction whose type is already known (the parser; passes that copy).
    pub fn push_typed(&mut self, op: Op, args: Vec<ValueId>, ty: Type) -> ValueId {
        let result = self.new_value(ty, None);
        self.insts.push(Inst { result, op, args });
        result
    }

    /// Appends an instruction, computing its type from the shape rule.
    pub fn push(&mut self, op: Op, args: Vec<ValueId>) -> Result<ValueId, String> {
        let arg_types: Vec<&Type> = args.iter().map(|&a| self.ty(a)).collect();
        let ty = ops::infer(&op, &arg_types)?;
        Ok(self.push_typed(op, args, ty))
    }

    pub fn set_name(&mut self, v: ValueId, name: impl Into<String>) {
        self.names[v.index()] = Some(name.into());
    }

    /// For each value, the instruction index defining it (None for parameters).
    pub fn definitions(&self) -> Vec<Option<usize>> {
        let mut def = vec![None; self.types.len()];
        for (i, inst) in self.insts.iter().enumerate() {
            def[inst.result.index()] = Some(i);
        }
        def
    }

    /// The number of uses of each value (operands and results).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.types.len()];
        for inst in &self.insts {
            for a in &inst.args {
                uses[a.index()] += 1;
            }
        }
        for r in &self.results {
            uses[r.index()] += 1;
        }
        uses
    }

    /// Rebuilds the function keeping only `keep` instructions (in order) and renumbering values
    /// densely, so that printed ids stay small and ordered. Names are kept.
    pub fn compact(&self, keep: &[bool]) -> Function {
        let mut out = Function::new(self.name.clone());
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        for &p in &self.params {
            let np = out.add_param(
                self.name_of(p).unwrap_or("arg").to_string(),
                self.ty(p).clone(),
            );
            map.insert(p, np);
        }
        for (inst, &k) in self.insts.iter().zip(keep) {
            if !k {
                continue;
            }
            let args = inst.args.iter().map(|a| map[a]).collect();
            let v = out.push_typed(inst.op.clone(), args, self.ty(inst.result).clone());
            if let Some(n) = self.name_of(inst.result) {
                out.set_name(v, n.to_string());
            }
            map.insert(inst.result, v);
        }
        out.results = self.results.iter().map(|r| map[r]).collect();
        out
    }
}

/// Shorthands for building IR; each call infers the result type. The lowering, autodiff and
/// optimizer stages build only well-typed IR, so a shape-rule failure here is a compiler bug
/// and panics with the rule's message.
pub struct Builder<'f> {
    pub f: &'f mut Function,
}

impl Builder<'_> {
    pub fn op(&mut self, op: Op, args: &[ValueId]) -> ValueId {
        let name = op.name();
        match self.f.push(op, args.to_vec()) {
            Ok(v) => v,
            Err(e) => panic!("internal error: ill-typed `{name}` built: {e}"),
        }
    }

    pub fn ty(&self, v: ValueId) -> &Type {
        self.f.ty(v)
    }

    pub fn shape(&self, v: ValueId) -> Vec<usize> {
        self.f.ty(v).shape.clone()
    }

    pub fn unary(&mut self, u: Unary, x: ValueId) -> ValueId {
        self.op(Op::Unary(u), &[x])
    }

    pub fn binary(&mut self, b: Binary, x: ValueId, y: ValueId) -> ValueId {
        self.op(Op::Binary(b), &[x, y])
    }

    pub fn add(&mut self, x: ValueId, y: ValueId) -> ValueId {
        self.binary(Binary::Add, x, y)
    }

    pub fn sub(&mut self, x: ValueId, y: ValueId) -> ValueId {
        self.binary(Binary::Sub, x, y)
    }

    pub fn mul(&mut self, x: ValueId, y: ValueId) -> ValueId {
        self.binary(Binary::Mul, x, y)
    }

    pub fn div(&mut self, x: ValueId, y: ValueId) -> ValueId {
        self.binary(Binary::Div, x, y)
    }

    pub fn compare(&mut self, c: Compare, x: ValueId, y: ValueId) -> ValueId {
        self.op(Op::Compare(c), &[x, y])
    }

    /// A scalar f32 constant.
    pub fn scalar(&mut self, value: f64) -> ValueId {
        self.f
            .push_typed(Op::Const { value }, Vec::new(), Type::scalar())
    }

    /// `x * c` for a constant c.
    pub fn scale(&mut self, x: ValueId, c: f64) -> ValueId {
        let k = self.scalar(c);
        self.mul(x, k)
    }

    pub fn reshape(&mut self, x: ValueId, shape: Vec<usize>) -> ValueId {
        if self.f.ty(x).shape == shape {
            return x;
        }
        self.op(Op::Reshape { shape }, &[x])
    }

    pub fn reduce_sum(&mut self, x: ValueId, axes: Vec<usize>) -> ValueId {
        if axes.is_empty() {
            return x;
        }
        self.op(Op::ReduceSum { axes }, &[x])
    }

    /// Sums over every axis: an f32 scalar.
    pub fn sum_all(&mut self, x: ValueId) -> ValueId {
        let axes = (0..self.f.ty(x).rank()).collect();
        self.reduce_sum(x, axes)
    }

    /// Reduces a broadcast result back to `shape`: the adjoint of broadcasting.
    pub fn sum_to(&mut self, x: ValueId, shape: &[usize]) -> ValueId {
        let from = self.shape(x);
        if from == shape {
            return x;
        }
        let lead = from.len() - shape.len();
        let axes: Vec<usize> = (0..from.len())
            .filter(|&i| i < lead || (shape[i - lead] == 1 && from[i] != 1))
            .collect();
        let summed = self.reduce_sum(x, axes);
        self.reshape(summed, shape.to_vec())
    }

    pub fn broadcast(&mut self, x: ValueId, shape: Vec<usize>) -> ValueId {
        if self.f.ty(x).shape == shape {
            return x;
        }
        self.op(Op::Broadcast { shape }, &[x])
    }

    pub fn dtype(&self, v: ValueId) -> DType {
        self.f.ty(v).dtype
    }
}
