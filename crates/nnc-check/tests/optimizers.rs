//! The optimizers' argument schemas: defaults, where `weight_decay` goes (coupled L2 for
//! every optimizer but `adamw`, whose decay is its own), and the printed form.

use nnc_check::{Optimizer, check_source};

/// The checked optimizer and coupled weight decay of a small model trained with `optimizer`.
fn checked(optimizer: &str) -> (Optimizer, f64) {
    let text = format!(
        "model m {{\n    input x: f32[2]\n    dense(2)\n}}\n\ntrain m {{\n    data {{\n        \
         0 1 -> 1\n        1 0 -> 0\n    }}\n    loss softmax_cross_entropy\n    optimizer \
         {optimizer}\n}}\n"
    );
    let c = check_source(&text);
    assert!(!c.has_errors(), "{optimizer}: {:?}", c.diagnostics);
    let train = c.models[0].train.clone().expect("train block");
    (train.optimizer, train.weight_decay)
}

#[test]
fn defaults() {
    assert_eq!(
        checked("adadelta"),
        (
            Optimizer::Adadelta {
                lr: 1.0,
                rho: 0.9,
                eps: 1e-6
            },
            0.0
        )
    );
    assert_eq!(
        checked("adamw"),
        (
            Optimizer::AdamW {
                lr: 0.001,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-7,
                weight_decay: 0.01
            },
            0.0
        )
    );
    assert_eq!(checked("adamax").0.lr(), 0.002);
    assert_eq!(checked("nadam").0.lr(), 0.002);
    assert_eq!(
        checked("rmsprop"),
        (
            Optimizer::RmsProp {
                lr: 0.001,
                rho: 0.9,
                eps: 1e-7,
                momentum: 0.0,
                centered: false
            },
            0.0
        )
    );
}

#[test]
fn adamw_takes_its_weight_decay_itself_the_others_as_l2() {
    let (opt, coupled) = checked("adamw(weight_decay: 0.1)");
    assert!(matches!(opt, Optimizer::AdamW { weight_decay, .. } if weight_decay == 0.1));
    assert_eq!(
        coupled, 0.0,
        "adamw's decay must not also be added to the gradient"
    );
    let (opt, coupled) = checked("adamw(weight_decay: 0)");
    assert!(matches!(opt, Optimizer::AdamW { weight_decay, .. } if weight_decay == 0.0));
    assert_eq!(coupled, 0.0);
    for other in ["adam", "adamax", "nadam", "adadelta", "rmsprop"] {
        let (_, coupled) = checked(&format!("{other}(weight_decay: 0.1)"));
        assert_eq!(coupled, 0.1, "{other}");
    }
}

#[test]
fn printed_forms_show_the_options_that_are_set() {
    assert_eq!(
        checked("rmsprop").0.to_string(),
        "rmsprop(lr: 0.001, rho: 0.9, eps: 1e-7)"
    );
    assert_eq!(
        checked("rmsprop(momentum: 0.9, centered: true)")
            .0
            .to_string(),
        "rmsprop(lr: 0.001, rho: 0.9, eps: 1e-7, momentum: 0.9, centered: true)"
    );
    assert_eq!(
        checked("adamw").0.to_string(),
        "adamw(lr: 0.001, beta1: 0.9, beta2: 0.999, eps: 1e-7, weight_decay: 0.01)"
    );
    assert_eq!(
        checked("adadelta").0.to_string(),
        "adadelta(lr: 1, rho: 0.9, eps: 1e-6)"
    );
}
