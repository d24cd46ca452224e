//! `nnc graph`: the SVG it draws rendered by a real renderer (`rsvg-convert`, Debian's
//! `librsvg2-bin`), the DOT it writes laid out by Graphviz (`dot`, Debian's `graphviz`; `.ci/run`
//! installs both), and its errors.

mod support;

use std::path::Path;
use std::process::Command;

use support::nnc;

/// The `width` and `height` an SVG declares on its root element, in pixels.
fn declared_size(svg: &str) -> (u32, u32) {
    let root = &svg[..svg.find('>').expect("a root element")];
    let attr = |name: &str| -> u32 {
        let start = root
            .find(&format!(" {name}=\""))
            .unwrap_or_else(|| panic!("no {name} in {root}"))
            + name.len()
            + 3;
        let end = start + root[start..].find('"').expect("closing quote");
        root[start..end].parse().expect("a whole number of pixels")
    };
    (attr("width"), attr("height"))
}

/// Whether `tool` runs. Without it the test fails under CI (`.ci/run` installs it) and is
/// skipped, loudly, elsewhere: the README's test command needs nothing but Rust.
fn tool_runs(tool: &str, version: &str, why: &str) -> bool {
    if Command::new(tool)
        .arg(version)
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run this test: {why} (.ci/run installs it)"
    );
    eprintln!("SKIPPED: {why} (.ci/run installs it)");
    false
}

#[test]
fn the_svg_renders_in_rsvg_convert() {
    if !tool_runs(
        "rsvg-convert",
        "--version",
        "rsvg-convert renders `nnc graph`'s SVG: apt-get install librsvg2-bin",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    for model in [
        "models/lenet5.nn",
        "bench/zoo/residual.nn",
        "bench/zoo/inception.nn",
    ] {
        let name = Path::new(model).file_stem().expect("a name");
        let svg_path = dir.path().join(name).with_extension("svg");
        let png_path = dir.path().join(name).with_extension("png");
        let svg_arg = svg_path.to_string_lossy().into_owned();
        let (stdout, stderr, code) = nnc(&["graph", model, "-o", &svg_arg]);
        assert_eq!(code, 0, "{model}: {stderr}");
        assert!(
            stdout.is_empty() && stderr.is_empty(),
            "{model}: {stdout}{stderr}"
        );
        let svg = std::fs::read_to_string(&svg_path).expect("the SVG was written");
        let rendered = Command::new("rsvg-convert")
            .arg(&svg_path)
            .arg("-o")
            .arg(&png_path)
            .output()
            .expect("rsvg-convert runs");
        assert!(
            rendered.status.success(),
            "{model}: rsvg-convert failed: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let png = std::fs::File::open(&png_path).expect("a PNG was written");
        let mut decoder = png::Decoder::new(std::io::BufReader::new(png));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().expect("a valid PNG");
        let info = reader.info();
        let (width, height) = (info.width, info.height);
        assert_eq!((width, height), declared_size(&svg), "{model}");
        // A model is taller than wide: one box per layer from top to bottom.
        assert!(
            (150..2000).contains(&width) && height > width && height < 10_000,
            "{model}: {width}x{height}"
        );
        // Something was drawn: the boxes' fills and text are not the white background.
        let mut pixels = vec![0; reader.output_buffer_size().expect("a buffer size")];
        let frame = reader.next_frame(&mut pixels).expect("pixels");
        let channels = frame.color_type.samples();
        let drawn = pixels[..frame.buffer_size()]
            .chunks(channels)
            .filter(|p| p.iter().take(3).any(|&c| c < 200))
            .count();
        let total = (width * height) as usize;
        assert!(
            drawn * 100 > total && drawn * 2 < total,
            "{model}: {drawn} of {total} pixels drawn"
        );
    }
}

#[test]
fn the_dot_of_the_residual_model() {
    let (stdout, stderr, code) = nnc(&["graph", "bench/zoo/residual.nn", "--dot"]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!(stdout);
}

#[test]
fn the_dot_is_laid_out_by_graphviz() {
    if !tool_runs(
        "dot",
        "-V",
        "Graphviz's dot lays out `nnc graph --dot`: apt-get install graphviz",
    ) {
        return;
    }
    for model in [
        "models/lenet5.nn",
        "bench/zoo/residual.nn",
        "bench/zoo/inception.nn",
    ] {
        let (text, stderr, code) = nnc(&["graph", model, "--dot"]);
        assert_eq!(code, 0, "{model}: {stderr}");
        let mut child = Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("dot runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(text.as_bytes()).expect("written to dot");
        }
        let out = child.wait_with_output().expect("dot ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{model}: {stderr}"
        );
        let svg = String::from_utf8_lossy(&out.stdout);
        // A node per box, an edge per arrow.
        let nodes = text.lines().filter(|l| l.contains("[label=")).count();
        let edges = text.lines().filter(|l| l.contains(" -> ")).count();
        assert_eq!(svg.matches("class=\"node\"").count(), nodes, "{model}");
        assert_eq!(svg.matches("class=\"edge\"").count(), edges, "{model}");
    }
}

/// The README shows `docs/residual.svg`: it must be what `nnc graph` draws today.
#[test]
fn the_readme_picture_is_up_to_date() {
    let (svg, stderr, code) = nnc(&["graph", "bench/zoo/residual.nn"]);
    assert_eq!(code, 0, "{stderr}");
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/residual.svg"))
            .expect("docs/residual.svg");
    assert!(
        committed == svg,
        "docs/residual.svg is stale: nnc graph bench/zoo/residual.nn -o docs/residual.svg"
    );
}

#[test]
fn the_output_file_decides_the_format() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let dot = dir.path().join("m.dot");
    let svg = dir.path().join("m.svg");
    for path in [&dot, &svg] {
        let (_, stderr, code) = nnc(&["graph", "models/mlp.nn", "-o", &path.to_string_lossy()]);
        assert_eq!(code, 0, "{stderr}");
    }
    let read = |p: &Path| std::fs::read_to_string(p).expect("written");
    assert!(
        read(&dot).starts_with("digraph \"mlp\" {"),
        "{}",
        read(&dot)
    );
    assert!(read(&svg).starts_with("<svg "), "{}", read(&svg));
    // SVG on stdout without -o.
    let (stdout, _, code) = nnc(&["graph", "models/mlp.nn"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, read(&svg));
}

#[test]
fn names_from_the_file_are_escaped() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let model = dir.path().join("m.nn");
    std::fs::write(
        &model,
        "model a_b {\n    input x: f32[4]\n    h: dense(3) -> relu\n    out: dense(2)\n}\n",
    )
    .expect("written");
    let (svg, stderr, code) = nnc(&["graph", &model.to_string_lossy()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(svg.contains("<title>model a_b</title>"), "{svg}");
    assert!(svg.contains(">out</tspan> dense</text>"), "{svg}");
}

#[test]
fn mistakes_are_diagnostics_not_panics() {
    // A model with errors: its diagnostics, exit 1, nothing written.
    let (stdout, stderr, code) = nnc(&["graph", "tests/invalid/graph-cycle.nn"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("nnc::graph::cycle"), "{stderr}");
    // A missing file.
    let (_, stderr, code) = nnc(&["graph", "no/such/model.nn"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    // An output that cannot be written: a directory that does not exist.
    let (_, stderr, code) = nnc(&["graph", "models/mlp.nn", "-o", "no/such/dir/m.svg"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot write `no/such/dir/m.svg`"),
        "{stderr}"
    );
    // A model the file does not have.
    let (_, stderr, code) = nnc(&["graph", "models/mlp.nn", "--model", "nope"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
