//! Models as graphs: named values, fan-out, `add`, `concat` and `global_avgpool`, from the
//! parsed lines to each layer's inputs and shapes.

use nnc_check::{LayerKind, Model, Shape, Source, check_source};

fn model(body: &str) -> (Option<Model>, Vec<String>) {
    let text = format!("model m {{\n    input image: f32[1, 8, 8]\n{body}\n}}\n");
    let checked = check_source(&text);
    let codes = checked
        .diagnostics
        .iter()
        .map(|d| d.code.to_string())
        .collect();
    (checked.models.into_iter().next(), codes)
}

fn index(m: &Model, name: &str) -> usize {
    m.layers
        .iter()
        .position(|l| l.name == name)
        .unwrap_or_else(|| panic!("no layer {name}"))
}

#[test]
fn a_line_starting_from_a_name_parses_as_a_chain_whose_head_is_the_name() {
    let (file, diags) =
        nnc_syntax::parse("model m { input x: f32[4]\n r: x -> dense(4)\n add(x, r) }");
    assert!(diags.is_empty(), "{diags:?}");
    let Some(file) = file else { panic!("parsed") };
    let nnc_syntax::ast::Item::Model(m) = &file.items[0] else {
        panic!("a model")
    };
    let chains: Vec<_> = m
        .body
        .iter()
        .filter_map(|i| match i {
            nnc_syntax::ast::ModelItem::Chain(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(chains[0].layers[0].name.name, "x");
    assert!(chains[0].layers[0].args.is_none());
    assert_eq!(chains[1].layers[0].name.name, "add");
    assert_eq!(chains[1].layers[0].args().len(), 2);
}

#[test]
fn a_sequential_model_reads_each_layer_from_the_one_before() {
    let (m, codes) =
        model("    c: conv2d(4, kernel: 3) -> relu\n       flatten\n    out: dense(10)");
    let m = m.unwrap_or_else(|| panic!("{codes:?}"));
    assert_eq!(m.layers[0].inputs, vec![Source::Input]);
    for (i, l) in m.layers.iter().enumerate().skip(1) {
        assert_eq!(l.inputs, vec![Source::Layer(i - 1)], "{}", l.name);
    }
}

#[test]
fn a_residual_block_reads_its_shortcut_and_fans_out() {
    let (m, codes) = model(
        "    x: conv2d(4, kernel: 3, padding: same) -> relu\n    \
         r: x -> conv2d(4, kernel: 3, padding: same) -> relu -> conv2d(4, kernel: 3, padding: same)\n    \
         s: add(x, r) -> relu\n       global_avgpool\n    out: dense(10)",
    );
    let m = m.unwrap_or_else(|| panic!("{codes:?}"));
    assert!(codes.is_empty(), "{codes:?}");
    // `x` names its line's output, the relu after the convolution: read twice (a fan-out).
    let x_out = index(&m, "x") + 1;
    assert_eq!(m.layers[index(&m, "r")].inputs, vec![Source::Layer(x_out)]);
    let s = index(&m, "s");
    assert_eq!(m.layers[s].kind, LayerKind::Add);
    assert_eq!(
        m.layers[s].inputs,
        vec![Source::Layer(x_out), Source::Layer(s - 1)]
    );
    assert_eq!(m.layers[s].output_shape, Shape(vec![4, 8, 8]));
    // The line after `s` continues from its relu.
    let pool = index(&m, "global_avgpool_1");
    assert_eq!(m.layers[pool].inputs, vec![Source::Layer(s + 1)]);
    assert_eq!(m.layers[pool].output_shape, Shape(vec![4]));
    // Topological: every layer reads earlier ones.
    for (i, l) in m.layers.iter().enumerate() {
        for src in &l.inputs {
            if let Source::Layer(j) = src {
                assert!(*j < i, "{} reads layer {j}", l.name);
            }
        }
    }
}

#[test]
fn concat_stacks_channels_and_features() {
    let (m, codes) = model(
        "    a: conv2d(2, kernel: 1)\n    b: image -> conv2d(3, kernel: 3, padding: same)\n    \
         c: concat(a, b, image)\n    g: c -> global_avgpool\n    f: c -> flatten\n    \
         v: concat(g, f)\n    out: dense(10)",
    );
    let m = m.unwrap_or_else(|| panic!("{codes:?}"));
    assert_eq!(m.layers[index(&m, "c")].output_shape, Shape(vec![6, 8, 8]));
    assert_eq!(
        m.layers[index(&m, "c")].inputs[2],
        Source::Input,
        "the input is a value"
    );
    assert_eq!(
        m.layers[index(&m, "v")].output_shape,
        Shape(vec![6 + 6 * 64])
    );
}

#[test]
fn an_unused_branch_is_a_warning_and_the_model_still_checks() {
    let (m, codes) = model(
        "    x: conv2d(4, kernel: 3) -> relu\n    dead: x -> conv2d(4, kernel: 1)\n    \
         y: x -> flatten\n    out: dense(10)",
    );
    assert_eq!(codes, vec!["nnc::graph::unused".to_string()]);
    assert!(m.is_some(), "a warning does not reject the model");
}

#[test]
fn graph_mistakes_are_errors() {
    let cases = [
        ("    r: r -> dense(4)", "nnc::graph::cycle"),
        (
            "    s: add(image, r)\n    r: image -> flatten",
            "nnc::graph::later_value",
        ),
        (
            "    c: conv2d(2, kernel: 1)\n    d: cc -> flatten",
            "nnc::graph::unknown_value",
        ),
        (
            "    c: conv2d(2, kernel: 1)\n       add(c, image)",
            "nnc::shape::add_mismatch",
        ),
        (
            "    c: conv2d(2, kernel: 3)\n       concat(c, image)",
            "nnc::shape::concat_mismatch",
        ),
        (
            "    c: conv2d(2, kernel: 1)\n       concat(c)",
            "nnc::graph::merge_arity",
        ),
    ];
    for (body, code) in cases {
        let (m, codes) = model(body);
        assert!(m.is_none(), "{body}: accepted");
        assert!(codes.iter().any(|c| c == code), "{body}: {codes:?}");
    }
}
