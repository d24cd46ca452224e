//! Where the boxes go: a layered drawing of a directed acyclic graph, top to bottom (the
//! Sugiyama scheme, kept small).
//!
//! 1. *Rows*: a node's row is the length of the longest path to it from a source, so every
//!    edge goes down; the nodes come in a topological order (a model's layers do), so one pass
//!    finds them.
//! 2. *Lanes*: an edge that skips rows (a residual shortcut) gets a zero-width slot in each row
//!    it passes, so that it is routed beside the boxes of those rows, not through them.
//! 3. *Order* within a row: barycenter sweeps (each slot moves to the mean position of its
//!    neighbours in the row above, then below), keeping the order with the fewest crossings:
//!    branches that leave one node and meet again sit side by side.
//! 4. *Coordinates*: each slot wants the mean x of its neighbours; a row's slots keep their
//!    order and their spacing, and the closest such placement (least squares) is found by
//!    pool-adjacent-violators, row by row, in sweeps down and up.

/// A point of the picture, in pixels, y downwards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Pixels from the left.
    pub x: f64,
    /// Pixels from the top.
    pub y: f64,
}

/// A box: its top-left corner and its size, in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    /// The left side.
    pub x: f64,
    /// The top side.
    pub y: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

impl Rect {
    /// The x of the box's centre.
    pub fn center_x(&self) -> f64 {
        self.x + self.width / 2.0
    }

    /// The y of its bottom side.
    pub fn bottom(&self) -> f64 {
        self.y + self.height
    }

    /// Whether the two boxes share any area (touching sides do not count).
    pub fn overlaps(&self, other: &Rect) -> bool {
        self.x < other.x + other.width
            && other.x < self.x + self.width
            && self.y < other.y + other.height
            && other.y < self.y + self.height
    }

    /// Whether `p` is strictly inside the box.
    pub fn contains(&self, p: Point) -> bool {
        p.x > self.x && p.x < self.x + self.width && p.y > self.y && p.y < self.bottom()
    }
}

/// A laid-out graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Each node's box, in the order of the nodes given.
    pub boxes: Vec<Rect>,
    /// Each node's row (0 at the top).
    pub rows: Vec<usize>,
    /// Each edge's path, in the order of the edges given: from the bottom of its source's box
    /// to the top of its target's, through the lane it takes in each row it skips.
    pub edges: Vec<Vec<Point>>,
    /// The whole picture's width.
    pub width: f64,
    /// The whole picture's height.
    pub height: f64,
}

/// Space around the picture.
pub const MARGIN: f64 = 16.0;
/// Between two boxes of a row.
const BOX_GAP: f64 = 24.0;
/// Between a lane and its neighbours in a row.
const LANE_GAP: f64 = 16.0;
/// Between two rows.
const ROW_GAP: f64 = 32.0;
/// Barycenter sweeps (down and up) tried for the order; small graphs settle in a few.
const ORDER_SWEEPS: usize = 12;
/// Sweeps placing the slots along x.
const PLACE_SWEEPS: usize = 8;

/// A position in a row: a node, or an edge passing through the row (a lane, no width).
struct Slot {
    row: usize,
    width: f64,
    node: Option<usize>,
}

/// Lays out nodes of the given sizes (`(width, height)`) joined by `edges` (`(from, to)`).
/// The nodes should be in a topological order (`from < to`); an edge that is not is drawn, but
/// does not push its target down.
pub fn layout(sizes: &[(f64, f64)], edges: &[(usize, usize)]) -> Layout {
    let n = sizes.len();
    let edges: Vec<(usize, usize)> = edges
        .iter()
        .copied()
        .filter(|&(a, b)| a < n && b < n)
        .collect();

    // 1. Rows by longest path.
    let mut rows = vec![0usize; n];
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in &edges {
        if a < b {
            preds[b].push(a);
        }
    }
    for v in 0..n {
        rows[v] = preds[v].iter().map(|&u| rows[u] + 1).max().unwrap_or(0);
    }
    let row_count = rows.iter().max().map_or(0, |r| r + 1);

    // 2. Slots: the nodes, then a lane per row an edge skips.
    let mut slots: Vec<Slot> = (0..n)
        .map(|v| Slot {
            row: rows[v],
            width: sizes[v].0,
            node: Some(v),
        })
        .collect();
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(edges.len());
    for &(a, b) in &edges {
        let mut chain = vec![a];
        for row in rows[a] + 1..rows[b] {
            chain.push(slots.len());
            slots.push(Slot {
                row,
                width: 0.0,
                node: None,
            });
        }
        chain.push(b);
        chains.push(chain);
    }
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); slots.len()];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); slots.len()];
    for chain in &chains {
        for pair in chain.windows(2) {
            if slots[pair[0]].row < slots[pair[1]].row {
                down[pair[0]].push(pair[1]);
                up[pair[1]].push(pair[0]);
            }
        }
    }

    // 3. Order within the rows.
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); row_count];
    for (s, slot) in slots.iter().enumerate() {
        order[slot.row].push(s);
    }
    let mut pos = vec![0usize; slots.len()];
    number(&order, &mut pos);
    let mut best = (crossings(&order, &pos, &down), order.clone());
    for _ in 0..ORDER_SWEEPS {
        if best.0 == 0 {
            break;
        }
        for row in order.iter_mut().skip(1) {
            reorder(row, &mut pos, &up);
        }
        for row in order.iter_mut().rev().skip(1) {
            reorder(row, &mut pos, &down);
        }
        let c = crossings(&order, &pos, &down);
        if c < best.0 {
            best = (c, order.clone());
        }
    }
    let order = best.1;
    number(&order, &mut pos);

    // 4. x: each row packed and centred, then pulled towards its neighbours.
    let gap = |a: usize, b: usize| {
        let between = if slots[a].node.is_some() && slots[b].node.is_some() {
            BOX_GAP
        } else {
            LANE_GAP
        };
        slots[a].width / 2.0 + between + slots[b].width / 2.0
    };
    let mut x = vec![0.0f64; slots.len()];
    for row in &order {
        let mut at = 0.0;
        for (i, &s) in row.iter().enumerate() {
            if i > 0 {
                at += gap(row[i - 1], s);
            }
            x[s] = at;
        }
        for &s in row {
            x[s] -= at / 2.0;
        }
    }
    let place_row = |row: &[usize], x: &mut [f64], neighbours: &[&[Vec<usize>]]| {
        let wanted: Vec<f64> = row
            .iter()
            .map(|&s| {
                let near: Vec<usize> = neighbours.iter().flat_map(|n| n[s].clone()).collect();
                if near.is_empty() {
                    x[s]
                } else {
                    near.iter().map(|&t| x[t]).sum::<f64>() / near.len() as f64
                }
            })
            .collect();
        let gaps: Vec<f64> = row.windows(2).map(|p| gap(p[0], p[1])).collect();
        for (&s, v) in row.iter().zip(closest_in_order(&wanted, &gaps)) {
            x[s] = v;
        }
    };
    for _ in 0..PLACE_SWEEPS {
        for row in order.iter().skip(1) {
            place_row(row, &mut x, &[&up]);
        }
        for row in order.iter().rev().skip(1) {
            place_row(row, &mut x, &[&down]);
        }
    }
    for row in &order {
        place_row(row, &mut x, &[&up, &down]);
    }

    // y: rows as tall as their tallest box.
    let mut row_height = vec![0.0f64; row_count];
    for v in 0..n {
        row_height[rows[v]] = row_height[rows[v]].max(sizes[v].1);
    }
    let mut top = vec![MARGIN; row_count];
    for r in 1..row_count {
        top[r] = top[r - 1] + row_height[r - 1] + ROW_GAP;
    }
    let left = slots
        .iter()
        .enumerate()
        .map(|(s, slot)| x[s] - slot.width / 2.0)
        .fold(f64::INFINITY, f64::min);
    let shift = if left.is_finite() { MARGIN - left } else { 0.0 };
    for v in &mut x {
        *v += shift;
    }
    let boxes: Vec<Rect> = (0..n)
        .map(|v| {
            let (width, height) = sizes[v];
            Rect {
                x: x[v] - width / 2.0,
                y: top[rows[v]] + (row_height[rows[v]] - height) / 2.0,
                width,
                height,
            }
        })
        .collect();

    // Edges: out of the source's bottom and into the target's top at ports spread in the
    // order of where the edges go (or come from), so that they do not cross at the box.
    let next_x = |chain: &Vec<usize>| x[chain[1]];
    let prev_x = |chain: &Vec<usize>| x[chain[chain.len() - 2]];
    let mut out_port = vec![0.0f64; chains.len()];
    let mut in_port = vec![0.0f64; chains.len()];
    let mut outs: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut ins: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (e, chain) in chains.iter().enumerate() {
        outs[chain[0]].push(e);
        ins[chain[chain.len() - 1]].push(e);
    }
    for (v, rect) in boxes.iter().enumerate() {
        let spread = |ids: &mut Vec<usize>, key: &dyn Fn(usize) -> f64, ports: &mut [f64]| {
            ids.sort_by(|&a, &b| key(a).total_cmp(&key(b)));
            let k = ids.len() as f64;
            let step = (rect.width * 0.8 / k).min(14.0);
            for (i, &e) in ids.iter().enumerate() {
                ports[e] = rect.center_x() + (i as f64 - (k - 1.0) / 2.0) * step;
            }
        };
        spread(&mut outs[v], &|e| next_x(&chains[e]), &mut out_port);
        spread(&mut ins[v], &|e| prev_x(&chains[e]), &mut in_port);
    }
    let paths = chains
        .iter()
        .enumerate()
        .map(|(e, chain)| {
            let (a, b) = (chain[0], chain[chain.len() - 1]);
            let mut points = vec![Point {
                x: out_port[e],
                y: boxes[a].bottom(),
            }];
            for &lane in &chain[1..chain.len() - 1] {
                let r = slots[lane].row;
                points.push(Point {
                    x: x[lane],
                    y: top[r],
                });
                points.push(Point {
                    x: x[lane],
                    y: top[r] + row_height[r],
                });
            }
            points.push(Point {
                x: in_port[e],
                y: boxes[b].y,
            });
            points
        })
        .collect();

    let right = slots
        .iter()
        .enumerate()
        .map(|(s, slot)| x[s] + slot.width / 2.0)
        .fold(0.0, f64::max);
    let height = match row_count {
        0 => 2.0 * MARGIN,
        r => top[r - 1] + row_height[r - 1] + MARGIN,
    };
    Layout {
        boxes,
        rows,
        edges: paths,
        width: right + MARGIN,
        height,
    }
}

/// Each slot's index in its row.
fn number(order: &[Vec<usize>], pos: &mut [usize]) {
    for row in order {
        for (i, &s) in row.iter().enumerate() {
            pos[s] = i;
        }
    }
}

/// Sorts a row by the mean position of each slot's neighbours in the adjacent row (a slot
/// with none keeps its own position as its key).
fn reorder(row: &mut [usize], pos: &mut [usize], neighbours: &[Vec<usize>]) {
    let key = |s: usize| match neighbours[s].len() {
        0 => pos[s] as f64,
        k => neighbours[s].iter().map(|&t| pos[t] as f64).sum::<f64>() / k as f64,
    };
    let mut keyed: Vec<(f64, usize)> = row.iter().map(|&s| (key(s), s)).collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (i, (_, s)) in keyed.into_iter().enumerate() {
        row[i] = s;
        pos[s] = i;
    }
}

/// Pairs of segments between adjacent rows that cross.
fn crossings(order: &[Vec<usize>], pos: &[usize], down: &[Vec<usize>]) -> usize {
    let mut total = 0;
    for row in order {
        let segments: Vec<(usize, usize)> = row
            .iter()
            .flat_map(|&s| down[s].iter().map(move |&t| (pos[s], pos[t])))
            .collect();
        for (i, &(a1, b1)) in segments.iter().enumerate() {
            for &(a2, b2) in &segments[i + 1..] {
                if (a1 < a2 && b1 > b2) || (a1 > a2 && b1 < b2) {
                    total += 1;
                }
            }
        }
    }
    total
}

/// The positions closest to `wanted` (least squares) that keep the order and at least
/// `gaps[i]` between positions `i` and `i + 1`: with `y_i = x_i − Σ_{j<i} gaps_j` the
/// constraint is that `y` does not decrease, an isotonic regression, which
/// pool-adjacent-violators solves exactly in linear time.
fn closest_in_order(wanted: &[f64], gaps: &[f64]) -> Vec<f64> {
    let mut offset = Vec::with_capacity(wanted.len());
    let mut at = 0.0;
    for i in 0..wanted.len() {
        if i > 0 {
            at += gaps[i - 1];
        }
        offset.push(at);
    }
    // Blocks of equal y: (sum of targets, count).
    let mut blocks: Vec<(f64, usize)> = Vec::new();
    for (w, o) in wanted.iter().zip(&offset) {
        blocks.push((w - o, 1));
        while blocks.len() > 1 {
            let (s2, c2) = blocks[blocks.len() - 1];
            let (s1, c1) = blocks[blocks.len() - 2];
            if s1 / c1 as f64 <= s2 / c2 as f64 {
                break;
            }
            blocks.pop();
            let last = blocks.len() - 1;
            blocks[last] = (s1 + s2, c1 + c2);
        }
    }
    let mut out = Vec::with_capacity(wanted.len());
    for (s, c) in blocks {
        for _ in 0..c {
            out.push(s / c as f64 + offset[out.len()]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_in_order_keeps_gaps_and_otherwise_the_wanted_places() {
        // Far apart: unchanged.
        assert_eq!(closest_in_order(&[0.0, 100.0], &[10.0]), vec![0.0, 100.0]);
        // Both want 0: pushed apart symmetrically.
        assert_eq!(closest_in_order(&[0.0, 0.0], &[10.0]), vec![-5.0, 5.0]);
        // Crossed wishes keep the order.
        let x = closest_in_order(&[50.0, 0.0, 100.0], &[10.0, 10.0]);
        assert!(
            x[1] - x[0] >= 10.0 - 1e-9 && x[2] - x[1] >= 10.0 - 1e-9,
            "{x:?}"
        );
        assert_eq!(x[2], 100.0);
    }

    #[test]
    fn a_diamond_has_its_branches_side_by_side_and_no_crossings() {
        // 0 → 1, 0 → 2, 1 → 3, 2 → 3.
        let l = layout(&[(60.0, 30.0); 4], &[(0, 1), (0, 2), (1, 3), (2, 3)]);
        assert_eq!(l.rows, vec![0, 1, 1, 2]);
        assert_eq!(l.boxes[1].y, l.boxes[2].y);
        assert!(!l.boxes[1].overlaps(&l.boxes[2]));
        // The merge sits between its branches, the source above it.
        let mid = (l.boxes[1].center_x() + l.boxes[2].center_x()) / 2.0;
        assert!((l.boxes[3].center_x() - mid).abs() < 1e-6);
        assert!((l.boxes[0].center_x() - mid).abs() < 1e-6);
    }

    #[test]
    fn a_skipping_edge_takes_a_lane_beside_the_rows_it_passes() {
        // 0 → 1 → 2 → 3 and 0 → 3: the shortcut passes rows 1 and 2.
        let l = layout(&[(80.0, 30.0); 4], &[(0, 1), (1, 2), (2, 3), (0, 3)]);
        let shortcut = &l.edges[3];
        assert_eq!(shortcut.len(), 6, "{shortcut:?}");
        for p in &shortcut[1..5] {
            for b in l.boxes.iter().filter(|b| b.y <= p.y && p.y <= b.bottom()) {
                assert!(
                    p.x <= b.x - LANE_GAP + 1e-6 || p.x >= b.x + b.width + LANE_GAP - 1e-6,
                    "lane point {p:?} beside {b:?}"
                );
            }
        }
    }

    #[test]
    fn nothing_and_one_node_lay_out() {
        let empty = layout(&[], &[]);
        assert!(empty.boxes.is_empty() && empty.width > 0.0 && empty.height > 0.0);
        let one = layout(&[(50.0, 20.0)], &[]);
        assert_eq!(one.boxes[0].x, MARGIN);
        assert_eq!(one.width, 50.0 + 2.0 * MARGIN);
        assert_eq!(one.height, 20.0 + 2.0 * MARGIN);
        // An edge that points back or out of range does not panic.
        let odd = layout(&[(50.0, 20.0); 2], &[(1, 0), (0, 7)]);
        assert_eq!(odd.rows, vec![0, 0]);
    }
}
