//! Drives the front end as a library: parse and check a model held in a string, then print its
//! summary, or its diagnostics rendered as `nnc check` would.
//!
//!     cargo run --example check_model

use nnc_check::summary;
use nnc_syntax::RenderOptions;

const SOURCE: &str = "
model tiny {
    input x: f32[4]
    hidden: dense(8) -> relu
    out:    dense(3) -> softmax
}

train tiny {
    data {
        0 0 0 1 -> 0
        0 1 0 0 -> 1
        1 0 0 0 -> 2
    }
    loss      cross_entropy
    optimizer adam(lr: 0.01)
    batch     3
}
";

fn main() {
    let checked = nnc_check::check_source(SOURCE);
    if checked.has_errors() {
        let text = nnc_syntax::render(
            &checked.diagnostics,
            "tiny.nn",
            SOURCE,
            RenderOptions::default(),
        );
        eprint!("{text}");
        std::process::exit(1);
    }
    for model in &checked.models {
        print!("{}", summary::table(model));
        for layer in &model.layers {
            for p in &layer.params {
                println!(
                    "{}.{}: {} initialised with {}",
                    layer.name, p.name, p.shape, p.init
                );
            }
        }
    }
}
