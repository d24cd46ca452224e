//! The picture as Graphviz DOT, for those who lay it out with `dot` or edit it: a node per box
//! (name, kind, shape and parameters on three lines, the SVG's colours), an edge per arrow.

use std::fmt::Write;

use super::Picture;

/// Text inside a DOT double-quoted string: `"` and `\` escaped (a backslash starts DOT's own
/// escapes, `\n`, `\l`, `\N`…), line breaks as `\n`, other control characters dropped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The DOT text of `picture`: nodes `n0` (the input), `n1`… (the layers in order).
pub fn render(picture: &Picture) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(&picture.title));
    out.push_str("  graph [rankdir=TB, nodesep=0.3, ranksep=0.3];\n");
    out.push_str(
        "  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\", fontsize=10, \
         color=\"#444444\"];\n",
    );
    out.push_str("  edge [color=\"#555555\", arrowsize=0.7];\n");
    for (i, node) in picture.nodes.iter().enumerate() {
        let label = format!("{}\n{}\n{}", node.name, node.kind, node.detail());
        let _ = writeln!(
            out,
            "  n{i} [label=\"{}\", fillcolor=\"{}\"];",
            escape(&label),
            node.family.fill()
        );
    }
    for (from, to) in &picture.edges {
        let _ = writeln!(out, "  n{from} -> n{to};");
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_backslashes_and_line_breaks_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny\u{7}"), "x\\ny");
    }
}
