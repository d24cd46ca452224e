//! The picture as SVG, written directly (no Graphviz): boxes of two lines of monospaced text,
//! so that their widths are known without measuring a font, and curved arrows between them.

use std::fmt::Write;

use super::layout::{self, Layout, Point};
use super::{Node, Picture};

/// Font size of the boxes' text, in pixels.
const FONT_SIZE: f64 = 12.0;
/// The advance of one character of a monospaced font: 0.6 em in DejaVu Sans Mono, Menlo and
/// Consolas alike.
const CHAR_WIDTH: f64 = FONT_SIZE * 0.6;
/// Space between a box's sides and its text.
const PADDING: f64 = 10.0;
/// Between the baselines of a box's lines.
const LINE_HEIGHT: f64 = 16.0;
/// The narrowest box.
const MIN_WIDTH: f64 = 72.0;
/// Longest line shown in a box, in characters (longer ones are cut with `…`).
const MAX_CHARS: usize = 60;

/// A line of a box, cut to [`MAX_CHARS`].
fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_CHARS {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(MAX_CHARS - 1).collect();
        s.push('…');
        s
    }
}

/// A box's first line as its bold name and its kind, cut together to [`MAX_CHARS`].
fn title(node: &Node) -> (String, String) {
    let name = cut(&node.name);
    let room = MAX_CHARS.saturating_sub(name.chars().count() + 1);
    let kind = if node.kind.chars().count() <= room {
        node.kind.clone()
    } else if room == 0 {
        String::new()
    } else {
        let mut k: String = node.kind.chars().take(room - 1).collect();
        k.push('…');
        k
    };
    (name, kind)
}

/// The size of a node's box: wide enough for its longer line.
pub fn box_size(node: &Node) -> (f64, f64) {
    let (name, kind) = title(node);
    let chars =
        (name.chars().count() + 1 + kind.chars().count()).max(cut(&node.detail()).chars().count());
    let width = (chars as f64 * CHAR_WIDTH + 2.0 * PADDING).max(MIN_WIDTH);
    (width.ceil(), 2.0 * LINE_HEIGHT + PADDING)
}

/// The layout of a picture with its boxes sized for [`render`].
pub fn layout(picture: &Picture) -> Layout {
    let sizes: Vec<(f64, f64)> = picture.nodes.iter().map(box_size).collect();
    layout::layout(&sizes, &picture.edges)
}

/// Text for XML character data and attribute values: the five special characters escaped, and
/// characters XML 1.0 does not allow (most control characters) shown as U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The SVG document of `picture`, laid out by [`layout()`].
pub fn render(picture: &Picture) -> String {
    let l = layout(picture);
    let (w, h) = (l.width.ceil(), l.height.ceil());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" \
         font-size=\"{FONT_SIZE}\">"
    );
    let _ = writeln!(out, "<title>model {}</title>", escape(&picture.title));
    out.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
         markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>\n",
    );
    let _ = writeln!(out, "<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>");
    out.push_str("<g fill=\"none\" stroke=\"#555\" stroke-width=\"1.2\">\n");
    for points in &l.edges {
        let _ = writeln!(
            out,
            "<path d=\"{}\" marker-end=\"url(#arrow)\"/>",
            path(points)
        );
    }
    out.push_str("</g>\n");
    for (node, b) in picture.nodes.iter().zip(&l.boxes) {
        let (name, kind) = title(node);
        let _ = writeln!(
            out,
            "<g><title>{}</title>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"5\" \
             fill=\"{}\" stroke=\"#444\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\"><tspan font-weight=\"bold\">{}</tspan> {}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333\">{}</text></g>",
            escape(&format!("{}: {}", node.name, node.kind)),
            b.x,
            b.y,
            b.width,
            b.height,
            node.family.fill(),
            b.x + PADDING,
            b.y + PADDING / 2.0 + LINE_HEIGHT - 4.0,
            escape(&name),
            escape(&kind),
            b.x + PADDING,
            b.y + PADDING / 2.0 + 2.0 * LINE_HEIGHT - 4.0,
            escape(&cut(&node.detail())),
        );
    }
    out.push_str("</svg>\n");
    out
}

/// An edge as a path: a curve between rows (leaving and entering vertically), a straight line
/// down each lane.
fn path(points: &[Point]) -> String {
    let mut d = String::new();
    for (i, p) in points.iter().enumerate() {
        if i == 0 {
            let _ = write!(d, "M{:.1},{:.1}", p.x, p.y);
        } else if i % 2 == 1 {
            // From a row's bottom to the next row's top.
            let q = points[i - 1];
            let mid = (q.y + p.y) / 2.0;
            let _ = write!(
                d,
                " C{:.1},{mid:.1} {:.1},{mid:.1} {:.1},{:.1}",
                q.x, p.x, p.x, p.y
            );
        } else {
            let _ = write!(d, " L{:.1},{:.1}", p.x, p.y);
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph_picture::{Family, Node};

    #[test]
    fn text_is_escaped_for_xml() {
        assert_eq!(
            escape("<a & 'b'>\"\u{1}é"),
            "&lt;a &amp; &apos;b&apos;&gt;&quot;\u{FFFD}é"
        );
    }

    #[test]
    fn names_and_kinds_reach_the_svg_escaped_and_cut() {
        let node = |name: &str, kind: &str| Node {
            name: name.into(),
            kind: kind.into(),
            shape: "[4]".into(),
            params: 0,
            family: Family::Dense,
        };
        let picture = Picture {
            title: "</title><script>".into(),
            nodes: vec![node("x", "input"), node("<b>&", &"k".repeat(200))],
            edges: vec![(0, 1)],
        };
        let svg = render(&picture);
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
        assert!(svg.contains("<title>model &lt;/title&gt;&lt;script&gt;</title>"));
        assert!(svg.contains("&lt;b&gt;&amp;</tspan>"), "{svg}");
        // The long kind is cut, and the box is as wide as the cut line.
        // (the box's tooltip keeps the whole text).
        let start = svg.find("&amp;</tspan> ").expect("the first line") + "&amp;</tspan> ".len();
        let shown = &svg[start..start + svg[start..].find("</text>").expect("its end")];
        assert_eq!(
            shown.chars().count(),
            MAX_CHARS - "<b>&".len() - 1,
            "{shown}"
        );
        assert!(shown.ends_with('…'), "{shown}");
        let (width, _) = box_size(&picture.nodes[1]);
        assert_eq!(
            width,
            (MAX_CHARS as f64 * CHAR_WIDTH + 2.0 * PADDING).ceil()
        );
    }
}
