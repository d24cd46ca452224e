//! Optimizer updates lowered to IR, so that one training step is one function.
//!
//! Each optimizer's state is a set of values passed in and returned by the step. The updates
//! follow Keras 3's formulas (g is the gradient, t the 1-based step count); where PyTorch
//! differs, only in where ε sits, the last column says how:
//!
//! | optimizer | state (initial value) | update | PyTorch |
//! | --- | --- | --- | --- |
//! | `sgd` | none | w ← w − lr·g | same |
//! | `momentum` | v (0) | v ← μv − lr·g; w ← w + v | same with a constant lr |
//! | `nesterov` | v (0) | v ← μv − lr·g; w ← w + μv − lr·g | same with a constant lr |
//! | `adagrad` | a (initial_accumulator) | a ← a + g²; w ← w − lr·g / (√a + ε) | same |
//! | `rmsprop` | s (0) | s ← ρs + (1 − ρ)g²; w ← w − lr·g / √(s + ε) | ε outside the root |
//! | `rmsprop(centered: true)` | s (0), ḡ (0) | ḡ ← ρḡ + (1 − ρ)g; divides by √(s − ḡ² + ε) | ε outside |
//! | `rmsprop(momentum: μ)` | s (0), b (0) | b ← μb + lr·g / √(s + ε); w ← w − b | lr outside b |
//! | `adam` | m (0), v (0); t (0) shared | t ← t + 1; m ← m + (1 − β₁)(g − m); v ← v + (1 − β₂)(g² − v); w ← w − lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε) | ε/√(1 − β₂ᵗ) |
//! | `adamw` | as `adam` | `adam`'s, and w ← w − lr·λ·w (decoupled decay) | as `adam` |
//! | `adamax` | m (0), u (0); t (0) shared | m as `adam`; u ← max(β₂u, \|g\|); w ← w − lr/(1 − β₁ᵗ) · m / (u + ε) | u ← max(β₂u, \|g\| + ε), no ε below |
//! | `nadam` | m (0), v (0); t (0), Π (1) shared | μₜ = β₁(1 − ½·0.96^(0.004t)); Π ← Π·μₜ; m, v as `adam`; w ← w − lr·(μₜ₊₁m/(1 − Πμₜ₊₁) + (1 − μₜ)g/(1 − Π)) / (√(v/(1 − β₂ᵗ)) + ε) | same |
//! | `adadelta` | s (0), u (0) | s ← ρs + (1 − ρ)g²; Δ ← √(u + ε)/√(s + ε)·g; u ← ρu + (1 − ρ)Δ²; w ← w − lr·Δ | same |
//!
//! The bias corrections 1 − βᵗ are computed to a few ulps at every t ([`one_minus_power`]),
//! as PyTorch's in f64 are, rather than as 1 − exp(t·ln β), which loses four digits at t = 1.
//!
//! `tests/optimizers.rs` checks each against an independent f64 reference.

use nnc_check::Optimizer;

use crate::function::{Builder, Function, ValueId};
use crate::op::{Binary, Unary};
use crate::types::Type;

/// NAdam's momentum decay ψ in μₜ = β₁(1 − ½·0.96^(ψt)): Dozat's and PyTorch's 0.004.
pub const NADAM_MOMENTUM_DECAY: f64 = 0.004;

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
/// before the update (AdamW's decoupled decay is its own, [`Optimizer::AdamW`]). `scheduled` makes the learning rate a parameter of the step (see
/// [`TrainStep::learning_rate`]) instead of the optimizer's constant.
///
/// `running` pairs each running statistic (batchnorm's: a parameter of `g` that is not in
/// `params`) with its new value computed in `g`: the step returns that in its place, with a
/// gradient norm of 0. The step's parameters are all of `g`'s after the data, in order.
pub fn apply(
    g: &Function,
    params: &[ValueId],
    running: &[(ValueId, ValueId)],
    opt: &Optimizer,
    weight_decay: f64,
    scheduled: bool,
) -> TrainStep {
    let mut f = g.clone();
    let data_grads: Vec<ValueId> = g.results[3..].to_vec();
    let (loss, correct) = (g.results[0], g.results[1]);
    let data_params = f.params.len() - params.len() - running.len();
    // Every parameter of the step, trained or running, in the function's order.
    let all_params: Vec<ValueId> = f.params[data_params..].to_vec();
    let all_names: Vec<String> = all_params
        .iter()
        .map(|&p| f.name_of(p).unwrap_or("param").to_string())
        .collect();
    let names: Vec<String> = params
        .iter()
        .map(|&p| f.name_of(p).unwrap_or("param").to_string())
        .collect();

    // State parameters, in a fixed order: per parameter, then shared.
    let per_param: Vec<(&str, f64)> = match *opt {
        Optimizer::Sgd { .. } => vec![],
        Optimizer::Momentum { .. } | Optimizer::Nesterov { .. } => vec![("velocity", 0.0)],
        Optimizer::Adagrad {
            initial_accumulator,
            ..
        } => vec![("accumulator", initial_accumulator)],
        Optimizer::RmsProp {
            momentum, centered, ..
        } => {
            let mut v = vec![("mean_square", 0.0)];
            if centered {
                v.push(("mean_grad", 0.0));
            }
            if momentum > 0.0 {
                v.push(("velocity", 0.0));
            }
            v
        }
        Optimizer::Adam { .. } | Optimizer::AdamW { .. } | Optimizer::Nadam { .. } => {
            vec![("m", 0.0), ("v", 0.0)]
        }
        Optimizer::Adamax { .. } => vec![("m", 0.0), ("u", 0.0)],
        Optimizer::Adadelta { .. } => vec![("mean_square", 0.0), ("mean_square_step", 0.0)],
    };
    let mut states = Vec::new();
    let mut state_vals: Vec<Vec<ValueId>> = Vec::new();
    for (&p, name) in params.iter().zip(&names) {
        let mut vals = Vec::new();
        for &(suffix, init) in &per_param {
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
    let mut shared_state = |f: &mut Function, name: &str, init: f64| {
        states.push(State {
            name: name.into(),
            ty: Type::scalar(),
            init,
        });
        f.add_param(name, Type::scalar())
    };
    let step_count = matches!(
        opt,
        Optimizer::Adam { .. }
            | Optimizer::AdamW { .. }
            | Optimizer::Adamax { .. }
            | Optimizer::Nadam { .. }
    )
    .then(|| shared_state(&mut f, "step_count", 0.0));
    // NAdam's product of its momentum schedule, μ₁·…·μₜ.
    let mu_product =
        matches!(opt, Optimizer::Nadam { .. }).then(|| shared_state(&mut f, "mu_product", 1.0));

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
            }
            | Optimizer::AdamW {
                lr, beta1, beta2, ..
            },
            Some(t),
        ) => {
            let one = b.scalar(1.0);
            let t1 = b.add(t, one);
            let c1 = one_minus_power(&mut b, t1, beta1);
            let c2 = one_minus_power(&mut b, t1, beta2);
            let r2 = b.unary(Unary::Sqrt, c2);
            let ratio = b.div(r2, c1);
            Some((t1, times_lr(&mut b, ratio, lr)))
        }
        // Adamax's: α = lr/(1 − β₁ᵗ).
        (Optimizer::Adamax { lr, beta1, .. }, Some(t)) => {
            let one = b.scalar(1.0);
            let t1 = b.add(t, one);
            let c1 = one_minus_power(&mut b, t1, beta1);
            let lr_c = times_lr(&mut b, one, lr);
            Some((t1, b.div(lr_c, c1)))
        }
        _ => None,
    };
    // NAdam's schedule μₜ = β₁(1 − ½·0.96^(0.004·t)) and the factors on g and m that it
    // gives, shared by all parameters.
    let nadam = match (*opt, step_count, mu_product) {
        (Optimizer::Nadam { beta1, beta2, .. }, Some(t), Some(prod)) => {
            let one = b.scalar(1.0);
            let t1 = b.add(t, one);
            let t2 = b.add(t1, one);
            let mu = |b: &mut Builder<'_>, t: ValueId| {
                let e = b.scale(t, NADAM_MOMENTUM_DECAY * 0.96f64.ln());
                let p = b.unary(Unary::Exp, e);
                let half = b.scale(p, 0.5);
                let d = b.sub(one, half);
                b.scale(d, beta1)
            };
            let mu_t = mu(&mut b, t1);
            let mu_next = mu(&mut b, t2);
            let prod_t = b.mul(prod, mu_t);
            let prod_next = b.mul(prod_t, mu_next);
            // (1 − μₜ)/(1 − Πₜ) on g, μₜ₊₁/(1 − Πₜ₊₁) on m.
            let num_g = b.sub(one, mu_t);
            let den_g = b.sub(one, prod_t);
            let on_g = b.div(num_g, den_g);
            let den_m = b.sub(one, prod_next);
            let on_m = b.div(mu_next, den_m);
            let c2 = one_minus_power(&mut b, t1, beta2);
            Some((t1, prod_t, on_g, on_m, c2))
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
            Optimizer::RmsProp {
                lr,
                rho,
                eps,
                momentum,
                centered,
            } => {
                let kept = b.scale(st[0], rho);
                let g2 = b.mul(gw, gw);
                let fresh = b.scale(g2, 1.0 - rho);
                let s = b.add(kept, fresh);
                new_states.push(s);
                // Centered: the variance s − ḡ², with ḡ the average gradient.
                let var = if centered {
                    let kept = b.scale(st[1], rho);
                    let fresh = b.scale(gw, 1.0 - rho);
                    let mean = b.add(kept, fresh);
                    new_states.push(mean);
                    let m2 = b.mul(mean, mean);
                    b.sub(s, m2)
                } else {
                    s
                };
                let e = b.scalar(eps);
                let se = b.add(var, e);
                let root = b.unary(Unary::Sqrt, se);
                let step = times_lr(&mut b, gw, lr);
                let q = b.div(step, root);
                if momentum > 0.0 {
                    let kept = b.scale(st[st.len() - 1], momentum);
                    let v = b.add(kept, q);
                    new_states.push(v);
                    new_params.push(b.sub(w, v));
                } else {
                    new_params.push(b.sub(w, q));
                }
            }
            Optimizer::Adam {
                beta1, beta2, eps, ..
            }
            | Optimizer::AdamW {
                beta1, beta2, eps, ..
            } => {
                let (_, alpha) = adam.expect("adam correction");
                let m = moving_average(&mut b, st[0], gw, beta1);
                let g2 = b.mul(gw, gw);
                let v = moving_average(&mut b, st[1], g2, beta2);
                let root = b.unary(Unary::Sqrt, v);
                let e = b.scalar(eps);
                let den = b.add(root, e);
                let q = b.div(m, den);
                let step = b.mul(q, alpha);
                // AdamW's decoupled decay: w − lr·λ·w, beside the step.
                let w = match *opt {
                    Optimizer::AdamW {
                        lr, weight_decay, ..
                    } if weight_decay > 0.0 => {
                        let decay = b.scale(w, weight_decay);
                        let decay = times_lr(&mut b, decay, lr);
                        b.sub(w, decay)
                    }
                    _ => w,
                };
                new_params.push(b.sub(w, step));
                new_states.push(m);
                new_states.push(v);
            }
            Optimizer::Adamax {
                beta1, beta2, eps, ..
            } => {
                let (_, alpha) = adam.expect("adamax correction");
                let m = moving_average(&mut b, st[0], gw, beta1);
                let kept = b.scale(st[1], beta2);
                let a = b.unary(Unary::Abs, gw);
                let u = b.binary(Binary::Max, kept, a);
                let e = b.scalar(eps);
                let den = b.add(u, e);
                let q = b.div(m, den);
                let step = b.mul(q, alpha);
                new_params.push(b.sub(w, step));
                new_states.push(m);
                new_states.push(u);
            }
            Optimizer::Nadam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                let (_, _, on_g, on_m, c2) = nadam.expect("nadam schedule");
                let m = moving_average(&mut b, st[0], gw, beta1);
                let g2 = b.mul(gw, gw);
                let v = moving_average(&mut b, st[1], g2, beta2);
                let vhat = b.div(v, c2);
                let root = b.unary(Unary::Sqrt, vhat);
                let e = b.scalar(eps);
                let den = b.add(root, e);
                let mg = b.mul(gw, on_g);
                let mm = b.mul(m, on_m);
                let mhat = b.add(mm, mg);
                let q = b.div(mhat, den);
                let step = times_lr(&mut b, q, lr);
                new_params.push(b.sub(w, step));
                new_states.push(m);
                new_states.push(v);
            }
            Optimizer::Adadelta { lr, rho, eps } => {
                let kept = b.scale(st[0], rho);
                let g2 = b.mul(gw, gw);
                let fresh = b.scale(g2, 1.0 - rho);
                let s = b.add(kept, fresh);
                // Δ = √(u + ε)/√(s + ε)·g: the step in the units of w.
                let e = b.scalar(eps);
                let se = b.add(s, e);
                let rs = b.unary(Unary::Sqrt, se);
                let ue = b.add(st[1], e);
                let ru = b.unary(Unary::Sqrt, ue);
                let ratio = b.div(ru, rs);
                let delta = b.mul(ratio, gw);
                let d2 = b.mul(delta, delta);
                let kept = b.scale(st[1], rho);
                let fresh = b.scale(d2, 1.0 - rho);
                let u = b.add(kept, fresh);
                let step = times_lr(&mut b, delta, lr);
                new_params.push(b.sub(w, step));
                new_states.push(s);
                new_states.push(u);
            }
        }
    }
    let t1 = adam.map(|(t1, _)| t1).or(nadam.map(|n| n.0));
    if let Some(t1) = t1 {
        new_states.push(t1);
    }
    if let Some((_, prod_t, ..)) = nadam {
        new_states.push(prod_t);
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
    // The running statistics take their places among the parameters, in order.
    let (new_params, grad_norms) = if running.is_empty() {
        (new_params, grad_norms)
    } else {
        let mut b = Builder { f: &mut f };
        let zero = b.scalar(0.0);
        all_params
            .iter()
            .map(|p| match params.iter().position(|q| q == p) {
                Some(k) => (new_params[k], grad_norms[k]),
                None => {
                    let (_, new) = running
                        .iter()
                        .find(|(stat, _)| stat == p)
                        .expect("a parameter is trained or running");
                    (*new, zero)
                }
            })
            .unzip()
    };
    let names = all_names;
    f.name = "train_step".into();
    f.results = [loss, correct]
        .into_iter()
        .chain(new_params)
        .chain(new_states)
        .chain(grad_norms)
        .collect();
    crate::verify::verify_after(&f, "optimizer lowering");
    TrainStep {
        func: f,
        data_params,
        params: names,
        states,
        learning_rate,
    }
}

/// The bias correction 1 − βᵗ at the step count `t` (an f32 scalar), accurate to a few ulps
/// at every `t`. As 1 − exp(t·ln β) it would lose the digits that the exponential shares with
/// 1: at t = 1 with β = 0.999, four of f32's seven (a relative error of 1e-4 in Adam's and
/// NAdam's first steps). This is −expm1(t·ln β), as −2·tanh(h)/(1 − tanh(h)) with
/// h = t·ln β/2: tanh is accurate relative to its own small value near 0 on both engines, and
/// the denominator lies in [1, 2), so nothing cancels. (With β = 0, ln β = −∞ and the result
/// is 1, as it should be.)
pub fn one_minus_power(b: &mut Builder<'_>, t: ValueId, beta: f64) -> ValueId {
    let h = b.scale(t, 0.5 * beta.ln());
    let th = b.unary(Unary::Tanh, h);
    let num = b.scale(th, -2.0);
    let one = b.scalar(1.0);
    let den = b.sub(one, th);
    b.div(num, den)
}

/// An exponential moving average's update, `s + (1 − decay)·(x − s)`: Adam's moments.
fn moving_average(b: &mut Builder<'_>, s: ValueId, x: ValueId, decay: f64) -> ValueId {
    let d = b.sub(x, s);
    let d = b.scale(d, 1.0 - decay);
    b.add(s, d)
}
