//! Optimizer updates lowered to IR, so that one training step is one function.
//!
//! Each optimizer's state is a set of values passed in and returned by the step. The updates
//! follow Keras 3 exactly (g is the gradient, t the 1-based step count):
//!
//! | optimizer | state (initial value) | update |
//! | --- | --- | --- |
//! | `sgd` | none | w ← w − lr·g |
//! | `momentum` | v (0) | v ← μv − lr·g; w ← w + v |
//! | `nesterov` | v (0) | v ← μv − lr·g; w ← w + μv − lr·g |
//! | `adagrad` | a (initial_accumulator) | a ← a + g²; w ← w − lr·g / (√a + ε) |
//! | `rmsprop` | s (0) | s ← ρs + (1 − ρ)g²; w ← w − lr·g / √(s + ε) (ε inside the root) |
//! | `adam` | m (0), v (0); t (0) shared | t ← t + 1; m ← m + (1 − β₁)(g − m); v ← v + (1 − β₂)(g² − v); w ← w − lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε) |

use nnc_check::Optimizer;

use crate::function::{Builder, Function, ValueId};
use crate::op::Unary;
use crate::types::Type;

/// One optimizer state tensor: its name, shape and starting value.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub name: String,
    pub ty: Type,
    pub init: f64,
}

/// A training step: `train_step(data..., params..., states..., [lr]) -> (loss, correct,
/// params'..., states'..., ‖g‖²...)`: the last results are each parameter's squared gradient
/// norm (of the data loss), for monitoring vanishing or exploding gradients.
#[derive(Clone, Debug)]
pub struct TrainStep {
    pub func: Function,
    /// The number of leading data parameters (inputs, targets, dropout key).
    pub data_params: usize,
    pub params: Vec<String>,
    pub states: Vec<State>,
    /// With a learning-rate schedule, the index in `func.params` of the scalar `lr`, the
    /// step's learning rate (the last parameter). Like the data, the driver sets it before
    /// every step. Without a schedule, the rate is a constant in the updates.
    pub learning_rate: Option<usize>,
}

/// Appends the optimizer's updates to a function whose results are
/// `(loss, correct, output, grads...)` (as [`crate::autodiff::grad`] leaves it) and whose
/// parameters are the data followed by `params`.
///
/// `weight_decay` λ > 0 adds the gradient of the L2 penalty λ/2·‖w‖², λ·w, to each gradient
/// before the update. `scheduled` makes the learning rate a parameter of the step (see
/// [`TrainStep::learning_rate`]) instead of the optimizer's constant.
pub fn apply(
    g: &Function,
    params: &[ValueId],
    opt: &Optimizer,
    weight_decay: f64,
    scheduled: bool,
) -> TrainStep {
    let mut f = g.clone();
    let data_grads: Vec<ValueId> = g.results[3..].to_vec();
    let (loss, correct) = (g.results[0], g.results[1]);
    let data_params = f.params.len() - params.len();
    let names: Vec<String> = params
        .iter()
        .map(|&p| f.name_of(p).unwrap_or("param").to_string())
        .collect();

    // State parameters, in a fixed order: per parameter, then shared.
    let per_param: &[(&str, f64)] = match *opt {
        Optimizer::Sgd { .. } => &[],
        Optimizer::Momentum { .. } | Optimizer::Nesterov { .. } => &[("velocity", 0.0)],
        Optimizer::Adagrad {
            initial_accumulator,
            ..
        } => &[("accumulator", initial_accumulator)][..],
        Optimizer::RmsProp { .. } => &[("mean_square", 0.0)],
        Optimizer::Adam { .. } => &[("m", 0.0), ("v", 0.0)],
    };
    let mut states = Vec::new();
    let mut state_vals: Vec<Vec<ValueId>> = Vec::new();
    for (&p, name) in params.iter().zip(&names) {
        let mut vals = Vec::new();
        for &(suffix, init) in per_param {
            let ty = f.ty(p).clone();
            let sname = format!("{name}.{suffix}");
            vals.push(f.add_param(sname.clone(), ty.clone()));
            states.push(State {
                name: sname,
                ty,
                init,
            });
        }
        state_vals.push(vals);
    }
    let step_count = matches!(opt, Optimizer::Adam { .. }).then(|| {
        states.push(State {
            name: "step_count".into(),
            ty: Type::scalar(),
            init: 0.0,
        });
        f.add_param("step_count", Type::scalar())
    });

    let learning_rate = scheduled.then(|| {
        f.add_param("lr", Type::scalar());
        f.params.len() - 1
    });
    let lr_value = learning_rate.map(|i| f.params[i]);

    let mut b = Builder { f: &mut f };
    // x·lr: by the constant, or by the scheduled rate.
    let times_lr = |b: &mut Builder<'_>, x: ValueId, lr: f64| match lr_value {
        Some(v) => b.mul(x, v),
        None => b.scale(x, lr),
    };
    let grad_norms: Vec<ValueId> = data_grads
        .iter()
        .map(|&g| {
            let sq = b.mul(g, g);
            b.sum_all(sq)
        })
        .collect();
    let grads: Vec<ValueId> = if weight_decay > 0.0 {
        params
            .iter()
            .zip(&data_grads)
            .map(|(&w, &g)| {
                let decay = b.scale(w, weight_decay);
                b.add(g, decay)
            })
            .collect()
    } else {
        data_grads.clone()
    };
    let mut new_params = Vec::new();
    let mut new_states = Vec::new();
    // Adam's bias correction, shared by all parameters: α = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ).
    let adam = match (*opt, step_count) {
        (
            Optimizer::Adam {
                lr, beta1, beta2, ..
            },
            Some(t),
        ) => {
            let one = b.scalar(1.0);
            let t1 = b.add(t, one);
            let pow = |b: &mut Builder<'_>, beta: f64| {
                let e = b.scale(t1, beta.ln());
                b.unary(Unary::Exp, e)
            };
            let p1 = pow(&mut b, beta1);
            let p2 = pow(&mut b, beta2);
            let c1 = b.sub(one, p1);
            let c2 = b.sub(one, p2);
            let r2 = b.unary(Unary::Sqrt, c2);
            let ratio = b.div(r2, c1);
            Some((t1, times_lr(&mut b, ratio, lr)))
        }
        _ => None,
    };
    for ((&w, &gw), st) in params.iter().zip(&grads).zip(&state_vals) {
        match *opt {
            Optimizer::Sgd { lr } => {
                let step = times_lr(&mut b, gw, lr);
                new_params.push(b.sub(w, step));
            }
            Optimizer::Momentum { lr, momentum } | Optimizer::Nesterov { lr, momentum } => {
                let kept = b.scale(st[0], momentum);
                let step = times_lr(&mut b, gw, lr);
                let v = b.sub(kept, step);
                let w2 = if matches!(opt, Optimizer::Momentum { .. }) {
                    b.add(w, v)
                } else {
                    let look = b.scale(v, momentum);
                    let t = b.add(w, look);
                    b.sub(t, step)
                };
                new_params.push(w2);
                new_states.push(v);
            }
            Optimizer::Adagrad { lr, eps, .. } => {
                let g2 = b.mul(gw, gw);
                let a = b.add(st[0], g2);
                let root = b.unary(Unary::Sqrt, a);
                let e = b.scalar(eps);
                let den = b.add(root, e);
                let step = times_lr(&mut b, gw, lr);
                let q = b.div(step, den);
                new_params.push(b.sub(w, q));
                new_states.push(a);
            }
            Optimizer::RmsProp { lr, rho, eps } => {
                let kept = b.scale(st[0], rho);
                let g2 = b.mul(gw, gw);
                let fresh = b.scale(g2, 1.0 - rho);
                let s = b.add(kept, fresh);
                let e = b.scalar(eps);
                let se = b.add(s, e);
                let root = b.unary(Unary::Sqrt, se);
                let step = times_lr(&mut b, gw, lr);
                let q = b.div(step, root);
                new_params.push(b.sub(w, q));
                new_states.push(s);
            }
            Optimizer::Adam {
                beta1, beta2, eps, ..
            } => {
                let (_, alpha) = adam.expect("adam correction");
                let dm = b.sub(gw, st[0]);
                let dm = b.scale(dm, 1.0 - beta1);
                let m = b.add(st[0], dm);
                let g2 = b.mul(gw, gw);
                let dv = b.sub(g2, st[1]);
                let dv = b.scale(dv, 1.0 - beta2);
                let v = b.add(st[1], dv);
                let root = b.unary(Unary::Sqrt, v);
                let e = b.scalar(eps);
                let den = b.add(root, e);
                let q = b.div(m, den);
                let step = b.mul(q, alpha);
                new_params.push(b.sub(w, step));
                new_states.push(m);
                new_states.push(v);
            }
        }
    }
    if let Some((t1, _)) = adam {
        new_states.push(t1);
    }
    for (v, name) in new_params.iter().zip(&names) {
        f.set_name(*v, format!("{name}.new"));
    }
    for (v, s) in new_states.iter().zip(&states) {
        f.set_name(*v, format!("{}.new", s.name));
    }
    for (v, name) in grad_norms.iter().zip(&names) {
        f.set_name(*v, format!("{name}.grad_norm2"));
    }
    f.name = "train_step".into();
    f.results = [loss, correct]
        .into_iter()
        .chain(new_params)
        .chain(new_states)
        .chain(grad_norms)
        .collect();
    crate::verify::debug_verify(&f, "optimizer lowering");
    TrainStep {
        func: f,
        data_params,
        params: names,
        states,
        learning_rate,
    }
}
