//! Drives the front end as a library: parse and check a model held in a string, then print its
//! summary, or its diagnostics rendered as `nnc check` would (and, as data, their codes).
//!
//!     cargo run --example check_model

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
    let project = match nnc::Project::from_source(SOURCE, "tiny.nn", None) {
        Ok(p) => p,
        Err(nnc::Error::Invalid(d)) => {
            eprint!("{}", d.render(false, 100));
            for diag in &d.diagnostics {
                eprintln!("{}: {}", diag.code, diag.message);
            }
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    {
        let model = &project.model;
        print!("{}", nnc::summary(model));
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
