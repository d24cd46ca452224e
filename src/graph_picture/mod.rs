//! A picture of a checked model, as `nnc graph` draws it: a box per layer (its name, kind,
//! output shape and parameter count), the input's box, and an arrow for each value a layer
//! reads. [`layout`] places the boxes (layers by longest path, branches side by side), [`svg`]
//! draws them without any outside tool, and [`dot`] writes the same graph for Graphviz.

pub mod dot;
pub mod layout;
pub mod svg;

use nnc_check::model::{LayerKind, Source};
use nnc_check::summary::thousands;

use crate::Model;

/// What a box stands for, which decides its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// The model's input.
    Input,
    /// `conv2d`.
    Convolution,
    /// `dense`.
    Dense,
    /// Pooling and subsampling, `global_avgpool` included.
    Pooling,
    /// Activations and dropout: elementwise, no parameters.
    Elementwise,
    /// `add` and `concat`, where branches meet.
    Merge,
    /// `flatten`.
    Reshape,
    /// `batchnorm`.
    Normalisation,
}

impl Family {
    fn of(kind: &LayerKind) -> Family {
        match kind {
            LayerKind::Conv2d { .. } => Family::Convolution,
            LayerKind::Dense { .. } => Family::Dense,
            LayerKind::MaxPool { .. }
            | LayerKind::AvgPool { .. }
            | LayerKind::Subsample { .. }
            | LayerKind::GlobalAvgPool => Family::Pooling,
            LayerKind::Activation(_) | LayerKind::Dropout { .. } => Family::Elementwise,
            LayerKind::Add | LayerKind::Concat => Family::Merge,
            LayerKind::Flatten => Family::Reshape,
            LayerKind::BatchNorm { .. } => Family::Normalisation,
        }
    }

    /// The box's fill colour (SVG and DOT).
    pub fn fill(self) -> &'static str {
        match self {
            Family::Input => "#e8e8e8",
            Family::Convolution => "#d6e6f8",
            Family::Dense => "#fde2c4",
            Family::Pooling => "#d8f0d8",
            Family::Elementwise => "#f7f7f7",
            Family::Merge => "#ead9f5",
            Family::Reshape => "#fff6c8",
            Family::Normalisation => "#f8dde6",
        }
    }
}

/// One box: the input or a layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The layer's name (a label from the file, or a generated `conv2d_1`), or the input's.
    pub name: String,
    /// What it is, as the summary table says it: `conv2d 3x3 pad same`, `input, mnist`.
    pub kind: String,
    /// Its output shape per sample, `[16, 28, 28]`.
    pub shape: String,
    /// Trainable parameters.
    pub params: u64,
    /// Its colour.
    pub family: Family,
}

impl Node {
    /// The box's last line: shape, and the parameters when there are any.
    pub fn detail(&self) -> String {
        match self.params {
            0 => self.shape.clone(),
            1 => format!("{} · 1 param", self.shape),
            n => format!("{} · {} params", self.shape, thousands(n)),
        }
    }
}

/// A model as boxes and arrows: node 0 is the input, node `i + 1` the layer `i`; every edge
/// goes from an earlier node to a later one (the layers are in a topological order).
#[derive(Clone, Debug, PartialEq)]
pub struct Picture {
    /// The model's name.
    pub title: String,
    /// The input, then the layers in order.
    pub nodes: Vec<Node>,
    /// `(from, to)`: `to` reads the output of `from`, once per input it reads.
    pub edges: Vec<(usize, usize)>,
}

impl Picture {
    /// The picture of `model`.
    pub fn of(model: &Model) -> Picture {
        let source = model
            .train
            .as_ref()
            .map_or(String::new(), |t| format!(", {}", t.data.keyword()));
        let mut nodes = vec![Node {
            name: model.input.name.clone(),
            kind: format!("input{source}"),
            shape: model.input.shape.to_string(),
            params: 0,
            family: Family::Input,
        }];
        let mut edges = Vec::new();
        for (i, l) in model.layers.iter().enumerate() {
            nodes.push(Node {
                name: l.name.clone(),
                kind: l.describe(),
                shape: l.output_shape.to_string(),
                params: l.param_count(),
                family: Family::of(&l.kind),
            });
            for s in &l.inputs {
                let from = match s {
                    Source::Input => 0,
                    Source::Layer(j) => j + 1,
                };
                edges.push((from, i + 1));
            }
        }
        Picture {
            title: model.name.clone(),
            nodes,
            edges,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::layout::Layout;
    use super::*;

    fn picture(source: &str) -> Picture {
        let checked = nnc_check::check_source(source);
        let model = checked
            .models
            .first()
            .unwrap_or_else(|| panic!("{:?}", checked.diagnostics));
        Picture::of(model)
    }

    fn node(p: &Picture, name: &str) -> usize {
        p.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no box {name}"))
    }

    /// What every drawing must be: boxes apart, every edge going down from its source's
    /// bottom to its target's top, and no edge through a box it does not join.
    fn assert_drawable(p: &Picture, l: &Layout) {
        for (i, a) in l.boxes.iter().enumerate() {
            assert!(
                a.x >= 0.0 && a.x + a.width <= l.width,
                "{} inside",
                p.nodes[i].name
            );
            assert!(
                a.y >= 0.0 && a.bottom() <= l.height,
                "{} inside",
                p.nodes[i].name
            );
            for (j, b) in l.boxes.iter().enumerate().skip(i + 1) {
                assert!(
                    !a.overlaps(b),
                    "{} and {} overlap",
                    p.nodes[i].name,
                    p.nodes[j].name
                );
            }
        }
        for (&(from, to), path) in p.edges.iter().zip(&l.edges) {
            let what = format!("{} -> {}", p.nodes[from].name, p.nodes[to].name);
            assert!(l.rows[to] > l.rows[from], "{what} goes down a row");
            assert_eq!(
                path[0].y,
                l.boxes[from].bottom(),
                "{what} leaves the bottom"
            );
            assert_eq!(
                path[path.len() - 1].y,
                l.boxes[to].y,
                "{what} enters the top"
            );
            for pair in path.windows(2) {
                assert!(pair[1].y > pair[0].y, "{what} goes down: {path:?}");
                // Points along each segment (a straight line, or within the curve's hull
                // between rows) stay out of every other box.
                for k in 0..=20 {
                    let t = f64::from(k) / 20.0;
                    let q = super::layout::Point {
                        x: pair[0].x + t * (pair[1].x - pair[0].x),
                        y: pair[0].y + t * (pair[1].y - pair[0].y),
                    };
                    for (b, r) in l.boxes.iter().enumerate() {
                        assert!(
                            !r.contains(q),
                            "{what} passes through {} at {q:?}",
                            p.nodes[b].name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_residual_model_is_drawn_with_its_branches_side_by_side() {
        let p = picture(include_str!("../../bench/zoo/residual.nn"));
        let l = svg::layout(&p);
        assert_drawable(&p, &l);
        // The strided block's two branches start in one row, apart.
        let (r3, skip) = (node(&p, "r3"), node(&p, "skip"));
        assert_eq!(l.rows[r3], l.rows[skip]);
        assert!(!l.boxes[r3].overlaps(&l.boxes[skip]));
        // The identity shortcuts pass beside the blocks' convolutions, in their rows.
        let (stem_relu, b1) = (node(&p, "relu_1"), node(&p, "b1"));
        let e = p
            .edges
            .iter()
            .position(|&e| e == (stem_relu, b1))
            .expect("the shortcut");
        assert_eq!(l.edges[e].len(), 2 + 2 * 3, "a lane in each of three rows");
        let r1 = node(&p, "r1");
        let lane_x = l.edges[e][1].x;
        assert!(
            lane_x < l.boxes[r1].x || lane_x > l.boxes[r1].x + l.boxes[r1].width,
            "beside r1"
        );
        // Each merge sits between its inputs.
        let b3 = node(&p, "b3");
        let (a, b) = (l.boxes[r3].center_x(), l.boxes[skip].center_x());
        let c = l.boxes[b3].center_x();
        assert!(a.min(b) < c && c < a.max(b), "{a} {c} {b}");
    }

    #[test]
    fn the_inception_model_and_every_model_are_drawable() {
        let p = picture(include_str!("../../bench/zoo/inception.nn"));
        let l = svg::layout(&p);
        assert_drawable(&p, &l);
        let rows: Vec<usize> = ["b1", "b3", "b5"]
            .iter()
            .map(|n| l.rows[node(&p, n)])
            .collect();
        assert_eq!(rows, vec![rows[0]; 3], "the branches start in one row");
        for source in [
            include_str!("../../models/lenet5.nn"),
            include_str!("../../models/mlp.nn"),
            include_str!("../../models/lenet5-1998.nn"),
        ] {
            let p = picture(source);
            let l = svg::layout(&p);
            assert_drawable(&p, &l);
            // A chain is one column.
            assert!(
                l.boxes
                    .iter()
                    .all(|b| b.center_x() == l.boxes[0].center_x())
            );
        }
    }
}
