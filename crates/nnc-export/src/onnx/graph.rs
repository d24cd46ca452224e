//! Building an ONNX graph: nodes in order, initializers, and value names that stay unique.

use std::collections::HashSet;

use crate::proto::{AttributeProto, NodeProto, TensorProto, attribute_type, data_type};

/// The nodes and initializers of a graph under construction.
#[derive(Default)]
pub(crate) struct Graph {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    /// Every value name given out (graph inputs, node outputs, initializers), and node names.
    used: HashSet<String>,
}

impl Graph {
    /// `base` if no value has that name yet, else `base_1`, `base_2`, ...: ONNX values are
    /// assigned once.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 0;
        while self.used.contains(&name) {
            n += 1;
            name = format!("{base}_{n}");
        }
        self.used.insert(name.clone());
        name
    }

    /// Appends a node `op` reading `inputs`, with one output named `output` (made unique),
    /// and returns that output's name. The node is named after its output.
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(output);
        self.node_into(op, inputs, &out, attribute);
        out
    }

    /// As [`Graph::node`], writing a name already given out by [`Graph::fresh`] (a graph
    /// output's).
    pub fn node_into(
        &mut self,
        op: &str,
        inputs: &[&str],
        out: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            name: out.to_string(),
            op_type: op.into(),
            attribute,
            ..NodeProto::default()
        });
    }

    /// An f32 initializer (a weight or a constant), row-major, little-endian.
    pub fn f32_tensor(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, data_type::FLOAT, raw)
    }

    /// An f32 scalar constant.
    pub fn f32_scalar(&mut self, name: &str, value: f64) -> String {
        self.f32_tensor(name, &[], &[value as f32])
    }

    /// An i64 initializer (pads, shapes).
    pub fn i64_tensor(&mut self, name: &str, data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, &[data.len()], data_type::INT64, raw)
    }

    fn tensor(&mut self, name: &str, dims: &[usize], data_type: i32, raw_data: Vec<u8>) -> String {
        let name = self.fresh(name);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type,
            name: name.clone(),
            raw_data,
            ..TensorProto::default()
        });
        name
    }
}

pub(crate) fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i,
        ..AttributeProto::default()
    }
}

pub(crate) fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: values.iter().map(|&v| v as i64).collect(),
        ..AttributeProto::default()
    }
}

pub(crate) fn float(name: &str, f: f64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f: f as f32,
        ..AttributeProto::default()
    }
}
