//! Every optimizer's update, as `optim::apply` lowers it to IR and the interpreter runs it,
//! against a reference written here in plain f64, step by step after the algorithm boxes of
//! PyTorch's `torch.optim` documentation (with ε where Keras 3 puts it, where the two differ:
//! each reference says so). The references share no code with `optim.rs`: a mistake there
//! (a sign, a state fed back in the wrong order, a bias correction off by one step) shows
//! here within the first steps.
//!
//! Each case runs 8 steps on a 5-element weight with gradients that change sign and size
//! from step to step (and one element whose gradient is often 0), and compares the weights
//! and every state after each step within 1e-6 relative. Cases with a schedule feed a
//! different learning rate at every step through the step's `lr` parameter.

use nnc_check::Optimizer;
use nnc_ir::function::Function;
use nnc_ir::interp::{Tensor, run_f64};
use nnc_ir::op::Op;
use nnc_ir::optim::{NADAM_MOMENTUM_DECAY, TrainStep, apply};
use nnc_ir::types::Type;

const N: usize = 5;
const STEPS: usize = 8;
const TOLERANCE: f64 = 1e-6;

/// The gradient at step `t` (0-based): deterministic, of mixed signs and sizes from 1e-3 to
/// 3; element 4 is 0 on odd steps.
fn gradient(t: usize) -> [f64; N] {
    let mut g = [0.0; N];
    for (i, x) in g.iter_mut().enumerate() {
        let phase = (t * 7 + i * 3) as f64;
        *x = phase.sin() * [1.0, 0.3, 3.0, 1e-3, 0.7][i];
    }
    if t % 2 == 1 {
        g[4] = 0.0;
    }
    g
}

/// The learning-rate factor at step `t` when a case is scheduled.
fn schedule(t: usize) -> f64 {
    0.7f64.powi(t as i32 / 2) * (1.0 + 0.1 * t as f64)
}

const W0: [f64; N] = [0.5, -1.25, 2.0, 0.01, -0.3];

/// `f(grad, w) -> (loss, correct, output, grad)`: the shape `autodiff::grad` leaves, with the
/// gradient given as data so that the test chooses it.
fn gradient_function() -> Function {
    let mut f = Function::new("forward");
    let g = f.add_param("grad", Type::f32([N]));
    let w = f.add_param("w", Type::f32([N]));
    let zero = f.push_typed(Op::Const { value: 0.0 }, Vec::new(), Type::scalar());
    f.results = vec![zero, zero, w, g];
    f
}

/// Runs the lowered step `STEPS` times; per step, the weights then the states in the step's
/// order.
fn run_ir(opt: &Optimizer, weight_decay: f64, scheduled: bool) -> (TrainStep, Vec<Vec<f64>>) {
    let f = gradient_function();
    let w_param = f.params[1];
    let step = apply(&f, &[w_param], &[], opt, weight_decay, scheduled);
    assert_eq!(step.data_params, 1);
    assert_eq!(step.learning_rate.is_some(), scheduled);
    let mut w = W0.to_vec();
    let mut states: Vec<Vec<f64>> = step
        .states
        .iter()
        .map(|s| vec![s.init; s.ty.numel()])
        .collect();
    let mut trace = Vec::new();
    for t in 0..STEPS {
        let mut inputs: Vec<Tensor<f64>> = vec![
            Tensor::from_f64(&[N], &gradient(t)),
            Tensor::from_f64(&[N], &w),
        ];
        for (s, st) in states.iter().zip(&step.states) {
            inputs.push(Tensor::from_f64(&st.ty.shape, s));
        }
        if scheduled {
            inputs.push(Tensor::from_f64(&[], &[opt.lr() * schedule(t)]));
        }
        let out = run_f64(&step.func, inputs).unwrap_or_else(|e| panic!("{opt}: {e}"));
        let flat = |i: usize| -> Vec<f64> {
            out[i]
                .as_f()
                .expect("float result")
                .iter()
                .copied()
                .collect()
        };
        w = flat(2);
        for (k, s) in states.iter_mut().enumerate() {
            *s = flat(3 + k);
        }
        let mut row = w.clone();
        row.extend(states.iter().flatten());
        trace.push(row);
    }
    (step, trace)
}

/// Compares the IR's trace with the reference's, which gives per step the weights and the
/// states in the order of `names` (which must be the step's state names).
fn check(opt: Optimizer, weight_decay: f64, scheduled: bool, names: &[&str], reference: Trace) {
    let (step, trace) = run_ir(&opt, weight_decay, scheduled);
    let got: Vec<&str> = step.states.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(got, names, "{opt}: state names");
    assert_eq!(reference.len(), STEPS);
    let mut moved = false;
    for (t, (ir, want)) in trace.iter().zip(&reference).enumerate() {
        assert_eq!(ir.len(), want.len(), "{opt}: values per step");
        for (j, (&a, &b)) in ir.iter().zip(want).enumerate() {
            let err = (a - b).abs() / b.abs().max(1e-6);
            assert!(
                err <= TOLERANCE,
                "{opt} (scheduled: {scheduled}), step {}: value {j} is {a}, the reference \
                 {b} (relative error {err:.2e})",
                t + 1
            );
        }
        moved |= ir[..N] != W0;
    }
    assert!(moved, "{opt}: the weights never moved");
}

type Trace = Vec<Vec<f64>>;

/// Runs a per-element reference: `update(t, lr, g, w, state)` with t 1-based, from states
/// initialised by `init` (`k` states per element, then `shared` scalars updated by
/// `update_shared(t, shared)` before the elements).
fn reference(
    opt: &Optimizer,
    scheduled: bool,
    init: &[f64],
    shared_init: &[f64],
    update_shared: impl Fn(usize, &mut Vec<f64>),
    update: impl Fn(usize, f64, f64, &mut f64, &mut [f64], &[f64]),
) -> Trace {
    let k = init.len();
    let mut w = W0;
    let mut state = vec![init.to_vec(); N];
    let mut shared = shared_init.to_vec();
    (0..STEPS)
        .map(|t| {
            let lr = opt.lr() * if scheduled { schedule(t) } else { 1.0 };
            let g = gradient(t);
            update_shared(t + 1, &mut shared);
            for i in 0..N {
                update(t + 1, lr, g[i], &mut w[i], &mut state[i], &shared);
            }
            let mut row = w.to_vec();
            // The step's order: per parameter (one here) each state over all elements.
            for j in 0..k {
                row.extend(state.iter().map(|s| s[j]));
            }
            row.extend(&shared);
            row
        })
        .collect()
}

fn no_shared(_: usize, _: &mut Vec<f64>) {}

#[test]
fn sgd_and_momentum_match_their_references() {
    let opt = Optimizer::Sgd { lr: 0.1 };
    let r = reference(&opt, false, &[], &[], no_shared, |_, lr, g, w, _, _| {
        *w -= lr * g;
    });
    check(opt, 0.0, false, &[], r);
    // PyTorch's SGD with momentum keeps b ← μb + g and steps lr·b; with a constant rate that
    // is Keras' v = −lr·b.
    let opt = Optimizer::Momentum {
        lr: 0.1,
        momentum: 0.9,
    };
    let r = reference(&opt, false, &[0.0], &[], no_shared, |_, lr, g, w, s, _| {
        let b = 0.9 * (-s[0] / lr) + g;
        *w -= lr * b;
        s[0] = -lr * b; // stored as Keras' velocity
    });
    check(opt, 0.0, false, &["w.velocity"], r);
}

#[test]
fn rmsprop_plain_centered_and_with_momentum_match_the_reference() {
    // torch.optim.RMSprop's algorithm, with ε inside the root and lr inside the momentum
    // buffer (Keras'): v ← αv + (1 − α)g²; centered: gᵃᵛᵉ ← αgᵃᵛᵉ + (1 − α)g, ṽ = v − (gᵃᵛᵉ)²;
    // μ > 0: b ← μb + lr·g/√(ṽ + ε), w ← w − b; else w ← w − lr·g/√(ṽ + ε).
    for (momentum, centered, scheduled) in [
        (0.0, false, false),
        (0.0, true, false),
        (0.9, false, false),
        (0.5, true, true),
    ] {
        let opt = Optimizer::RmsProp {
            lr: 0.01,
            rho: 0.9,
            eps: 1e-7,
            momentum,
            centered,
        };
        let mut names = vec!["w.mean_square"];
        let mut init = vec![0.0];
        if centered {
            names.push("w.mean_grad");
            init.push(0.0);
        }
        if momentum > 0.0 {
            names.push("w.velocity");
            init.push(0.0);
        }
        let r = reference(
            &opt,
            scheduled,
            &init,
            &[],
            no_shared,
            |_, lr, g, w, s, _| {
                let alpha = 0.9;
                s[0] = alpha * s[0] + (1.0 - alpha) * g * g;
                let mut vt = s[0];
                if centered {
                    s[1] = alpha * s[1] + (1.0 - alpha) * g;
                    vt -= s[1] * s[1];
                }
                let inc = lr * g / (vt + 1e-7).sqrt();
                if momentum > 0.0 {
                    let b = s.len() - 1;
                    s[b] = momentum * s[b] + inc;
                    *w -= s[b];
                } else {
                    *w -= inc;
                }
            },
        );
        check(opt, 0.0, scheduled, &names, r);
    }
}

/// torch.optim.Adam's algorithm box: m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g²,
/// m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ), w ← w − lr·m̂/(√v̂ + ε′), with Keras' ε′ = ε/√(1 − β₂ᵗ)
/// (PyTorch's ε′ is ε). AdamW first shrinks w ← w(1 − lr·λ).
fn adam_reference(opt: &Optimizer, scheduled: bool, decay: f64) -> Trace {
    let (b1, b2, eps) = match *opt {
        Optimizer::Adam {
            beta1, beta2, eps, ..
        }
        | Optimizer::AdamW {
            beta1, beta2, eps, ..
        } => (beta1, beta2, eps),
        _ => unreachable!(),
    };
    reference(
        opt,
        scheduled,
        &[0.0, 0.0],
        &[0.0],
        |t, shared| shared[0] = t as f64,
        |t, lr, g, w, s, _| {
            *w *= 1.0 - lr * decay;
            s[0] = b1 * s[0] + (1.0 - b1) * g;
            s[1] = b2 * s[1] + (1.0 - b2) * g * g;
            let c2 = 1.0 - b2.powi(t as i32);
            let m_hat = s[0] / (1.0 - b1.powi(t as i32));
            let v_hat = s[1] / c2;
            *w -= lr * m_hat / (v_hat.sqrt() + eps / c2.sqrt());
        },
    )
}

#[test]
fn adam_and_adamw_match_the_reference() {
    let adam = Optimizer::Adam {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-7,
    };
    check(
        adam,
        0.0,
        false,
        &["w.m", "w.v", "step_count"],
        adam_reference(&adam, false, 0.0),
    );
    for scheduled in [false, true] {
        let adamw = Optimizer::AdamW {
            lr: 0.01,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-7,
            weight_decay: 0.5,
        };
        check(
            adamw,
            0.0,
            scheduled,
            &["w.m", "w.v", "step_count"],
            adam_reference(&adamw, scheduled, 0.5),
        );
    }
}

#[test]
fn adamw_without_decay_is_adam() {
    let adam = Optimizer::Adam {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-7,
    };
    let adamw = Optimizer::AdamW {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-7,
        weight_decay: 0.0,
    };
    assert_eq!(run_ir(&adam, 0.0, false).1, run_ir(&adamw, 0.0, false).1);
    // And decay changes the weights: the test above would pass with the decay left out.
    let decayed = Optimizer::AdamW {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-7,
        weight_decay: 0.01,
    };
    assert_ne!(run_ir(&adam, 0.0, false).1, run_ir(&decayed, 0.0, false).1);
}

#[test]
fn adamax_matches_the_reference() {
    // torch.optim.Adamax's algorithm box, with ε as Keras puts it: m ← β₁m + (1 − β₁)g,
    // u ← max(β₂u, |g|) (PyTorch: |g| + ε), w ← w − lr/(1 − β₁ᵗ)·m/(u + ε) (PyTorch: m/u).
    for scheduled in [false, true] {
        let opt = Optimizer::Adamax {
            lr: 0.002,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
        };
        let r = reference(
            &opt,
            scheduled,
            &[0.0, 0.0],
            &[0.0],
            |t, shared| shared[0] = t as f64,
            |t, lr, g, w, s, _| {
                s[0] = 0.9 * s[0] + 0.1 * g;
                s[1] = f64::max(0.999 * s[1], g.abs());
                let clr = lr / (1.0 - 0.9f64.powi(t as i32));
                *w -= clr * s[0] / (s[1] + 1e-7);
            },
        );
        check(opt, 0.0, scheduled, &["w.m", "w.u", "step_count"], r);
    }
}

#[test]
fn nadam_matches_pytorch_algorithm() {
    // torch.optim.NAdam's algorithm box (momentum_decay ψ = 0.004), which Keras shares:
    // μₜ = β₁(1 − ½·0.96^(tψ)), μₜ₊₁ likewise, m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g²,
    // m̂ = μₜ₊₁m/(1 − Πᵢ≤ₜ₊₁μᵢ) + (1 − μₜ)g/(1 − Πᵢ≤ₜμᵢ), v̂ = v/(1 − β₂ᵗ),
    // w ← w − lr·m̂/(√v̂ + ε).
    assert_eq!(NADAM_MOMENTUM_DECAY, 4e-3);
    for scheduled in [false, true] {
        let opt = Optimizer::Nadam {
            lr: 0.002,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        };
        let mu = |t: usize| 0.9 * (1.0 - 0.5 * 0.96f64.powf(t as f64 * 0.004));
        let r = reference(
            &opt,
            scheduled,
            &[0.0, 0.0],
            &[0.0, 1.0],
            // shared: the step count, then Π μᵢ up to t.
            |t, shared| {
                shared[0] = t as f64;
                shared[1] *= mu(t);
            },
            |t, lr, g, w, s, shared| {
                let (mu_t, mu_next) = (mu(t), mu(t + 1));
                let prod = shared[1];
                s[0] = 0.9 * s[0] + 0.1 * g;
                s[1] = 0.999 * s[1] + 0.001 * g * g;
                let m_hat =
                    mu_next * s[0] / (1.0 - prod * mu_next) + (1.0 - mu_t) * g / (1.0 - prod);
                let v_hat = s[1] / (1.0 - 0.999f64.powi(t as i32));
                *w -= lr * m_hat / (v_hat.sqrt() + 1e-8);
            },
        );
        check(
            opt,
            0.0,
            scheduled,
            &["w.m", "w.v", "step_count", "mu_product"],
            r,
        );
    }
}

#[test]
fn adadelta_matches_pytorch_algorithm() {
    // torch.optim.Adadelta's algorithm box, which Keras shares: v ← ρv + (1 − ρ)g²,
    // Δx = √(u + ε)/√(v + ε)·g, u ← ρu + (1 − ρ)Δx², w ← w − lr·Δx.
    for (lr, rho, eps, scheduled) in [(1.0, 0.9, 1e-6, false), (0.5, 0.95, 1e-4, true)] {
        let opt = Optimizer::Adadelta { lr, rho, eps };
        let r = reference(
            &opt,
            scheduled,
            &[0.0, 0.0],
            &[],
            no_shared,
            |_, lr, g, w, s, _| {
                s[0] = rho * s[0] + (1.0 - rho) * g * g;
                let dx = (s[1] + eps).sqrt() / (s[0] + eps).sqrt() * g;
                s[1] = rho * s[1] + (1.0 - rho) * dx * dx;
                *w -= lr * dx;
            },
        );
        check(
            opt,
            0.0,
            scheduled,
            &["w.mean_square", "w.mean_square_step"],
            r,
        );
    }
}

#[test]
fn coupled_weight_decay_adds_lambda_w_to_the_gradient() {
    // Every optimizer but AdamW takes `weight_decay` as L2: g ← g + λw (PyTorch's too).
    let opt = Optimizer::Adadelta {
        lr: 1.0,
        rho: 0.9,
        eps: 1e-6,
    };
    let r = reference(
        &opt,
        false,
        &[0.0, 0.0],
        &[],
        no_shared,
        |_, lr, g, w, s, _| {
            let g = g + 0.1 * *w;
            s[0] = 0.9 * s[0] + 0.1 * g * g;
            let dx = (s[1] + 1e-6).sqrt() / (s[0] + 1e-6).sqrt() * g;
            s[1] = 0.9 * s[1] + 0.1 * dx * dx;
            *w -= lr * dx;
        },
    );
    check(opt, 0.1, false, &["w.mean_square", "w.mean_square_step"], r);
}
