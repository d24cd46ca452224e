//! Gradient checking: the derived backward ops against central differences, in f64.
//!
//! For each parameter tensor, a sample of elements (all of them for small tensors) is
//! perturbed by ±h and ±2h and the loss re-evaluated; the five-point central difference
//! (8(L₊ₕ − L₋ₕ) − (L₊₂ₕ − L₋₂ₕ)) / 12h has truncation error O(h⁴), so h can be large enough
//! that rounding in the loss (≈ 1e-16 · L / h) stays far below the gradients. The error of a tensor is the normwise relative
//! error over the sampled elements,
//!
//! ```text
//! max_i |analytic_i − numeric_i| / max_j |analytic_j|
//! ```
//!
//! (j over the whole tensor), which is not fooled by elements whose gradient is tiny. ReLU,
//! max-pooling and other piecewise ops have kinks where the derivative does not exist; when
//! a perturbation crosses one (detected with [`interp::run_traced`]: the discrete decisions
//! differ) the step is shrunk to h/10 and h/100, and if it still crosses, the element is skipped
//! and another drawn.

use nnc_check::Model;

use crate::function::{Function, ValueId};
use crate::init::{Rng, init_params};
use crate::interp::{self, Tensor};
use crate::lower::{InputSpec, LowerOptions, TargetSpec};
use crate::types::DType;

/// The largest acceptable error.
pub const TOLERANCE: f64 = 1e-6;

/// The perturbation.
pub const H: f64 = 1e-4;

/// The result for one parameter tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamCheck {
    pub name: String,
    /// Elements compared.
    pub checked: usize,
    /// Elements skipped because even the smallest perturbation (h/100) crossed a kink.
    pub skipped: usize,
    /// Normwise relative error over the checked elements.
    pub error: f64,
    /// The largest analytic gradient magnitude in the tensor.
    pub max_grad: f64,
}

impl ParamCheck {
    pub fn passed(&self) -> bool {
        self.error <= TOLERANCE && self.checked > 0
    }
}

/// Checks the gradient of `f`'s first result (a scalar loss) with respect to `wrt`, at
/// `inputs` (one per parameter of `f`). Gradients come from [`crate::autodiff::grad`].
pub fn check_function(
    f: &Function,
    wrt: &[ValueId],
    inputs: &[Tensor<f64>],
    samples: usize,
    seed: u64,
) -> Result<Vec<ParamCheck>, String> {
    let loss = *f.results.first().ok_or("the function returns nothing")?;
    // Only the loss: decisions that do not affect it (the argmax behind the accuracy) must not
    // count as kinks.
    let mut only_loss = f.clone();
    only_loss.results = vec![loss];
    let f = &crate::passes::dce::run(&only_loss);
    let loss = f.results[0];
    let wrt: Vec<ValueId> = wrt
        .iter()
        .map(|&w| {
            f.value_named(only_loss.name_of(w).unwrap_or(""))
                .ok_or("parameters must be named")
        })
        .collect::<Result<_, _>>()?;
    let wrt = &wrt[..];
    let g = crate::autodiff::grad(f, loss, wrt)?;
    let analytic = interp::run::<f64>(&g, inputs.to_vec())?;
    let grads = &analytic[f.results.len()..];
    let (_, base_pattern) = interp::run_traced::<f64>(f, inputs.to_vec())?;
    let eval = |inputs: Vec<Tensor<f64>>| -> Result<(f64, u64), String> {
        let (out, pattern) = interp::run_traced::<f64>(f, inputs)?;
        Ok((out[0].scalar()?, pattern))
    };
    let position = |v: ValueId| {
        f.params
            .iter()
            .position(|&p| p == v)
            .ok_or("not a parameter")
    };
    let mut rng = Rng::new(seed ^ 0x6772_6164);
    let mut report = Vec::new();
    for (&w, grad) in wrt.iter().zip(grads) {
        let slot = position(w)?;
        let grad = grad.as_f()?;
        let n = grad.len();
        let max_grad = grad.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let candidates: Vec<usize> = if n <= samples {
            (0..n).collect()
        } else {
            (0..samples * 4)
                .map(|_| (rng.next_u64() % n as u64) as usize)
                .collect()
        };
        let mut checked = 0;
        let mut skipped = 0;
        let mut worst = 0.0f64;
        for &i in &candidates {
            if checked == samples {
                break;
            }
            let perturbed = |delta: f64| {
                let mut inp = inputs.to_vec();
                if let Tensor::F(a) = &mut inp[slot]
                    && let Some(x) = a.iter_mut().nth(i)
                {
                    *x += delta;
                }
                inp
            };
            // The largest step whose perturbations stay on the smooth piece the point is on.
            let mut numeric = None;
            for h in [H, H / 10.0, H / 100.0] {
                let mut values = [0.0; 4];
                let mut smooth = true;
                for (v, k) in values.iter_mut().zip([1.0, -1.0, 2.0, -2.0]) {
                    let (l, pattern) = eval(perturbed(k * h))?;
                    *v = l;
                    smooth &= pattern == base_pattern;
                    if !smooth {
                        break;
                    }
                }
                if smooth {
                    numeric = Some(
                        (8.0 * (values[0] - values[1]) - (values[2] - values[3])) / (12.0 * h),
                    );
                    break;
                }
            }
            let Some(numeric) = numeric else {
                skipped += 1;
                continue;
            };
            let a = grad.iter().nth(i).copied().unwrap_or(0.0);
            worst = worst.max((a - numeric).abs());
            checked += 1;
        }
        let name = f.name_of(w).unwrap_or("param").to_string();
        let error = if max_grad > 0.0 {
            worst / max_grad
        } else {
            worst
        };
        report.push(ParamCheck {
            name,
            checked,
            skipped,
            error,
            max_grad,
        });
    }
    Ok(report)
}

/// Checks every parameter of a model's forward function on a random batch: random inputs of
/// the data's type and shape, random targets, weights from the model's initialisers.
pub fn check_model(
    model: &Model,
    input: &InputSpec,
    targets: TargetSpec,
    batch: usize,
    samples: usize,
    seed: u64,
) -> Result<Vec<ParamCheck>, String> {
    let train = model.train.as_ref().ok_or("the model has no train block")?;
    let opts = LowerOptions {
        batch,
        training: true,
        input: input.clone(),
        targets,
        loss: train.loss,
        score: train.score(),
    };
    let fwd = crate::lower::lower(model, &opts)?;
    // Check the function that autodiff differentiates in `compile`: the simplified forward.
    let f = crate::passes::simplify::run(&fwd.func);
    let init = init_params(model, seed);
    let mut rng = Rng::new(seed);
    let mut inputs = Vec::new();
    for &p in &f.params {
        let ty = f.ty(p);
        let n = ty.numel();
        let shape = ty.shape.clone();
        let name = f.name_of(p).unwrap_or("");
        let t = if p == f.params[0] {
            match ty.dtype {
                DType::U8 => Tensor::U8(ndarray::ArrayD::from_shape_fn(shape, |_| {
                    (rng.next_u64() % 256) as u8
                })),
                _ => Tensor::from_f64(&shape, &(0..n).map(|_| rng.normal()).collect::<Vec<_>>()),
            }
        } else if p == f.params[1] {
            match targets {
                TargetSpec::Classes(k) => {
                    Tensor::I32(ndarray::ArrayD::from_shape_fn(shape, |_| {
                        (rng.next_u64() % k as u64) as i32
                    }))
                }
                TargetSpec::Values(_) => {
                    Tensor::from_f64(&shape, &(0..n).map(|_| rng.uniform()).collect::<Vec<_>>())
                }
            }
        } else if ty.dtype == DType::I32 {
            // The dropout key: any fixed value gives a fixed mask.
            Tensor::I32(ndarray::ArrayD::from_elem(shape, 12345))
        } else {
            let t = init
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| format!("no initial value for `{name}`"))?;
            Tensor::from_f64(
                &shape,
                &t.data.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            )
        };
        inputs.push(t);
    }
    // Not the running statistics: the training loss does not read them.
    let wrt: Vec<ValueId> = fwd
        .params
        .iter()
        .filter(|(_, v)| !fwd.running.iter().any(|(stat, _)| stat == v))
        .map(|(name, _)| {
            f.value_named(name)
                .ok_or_else(|| format!("parameter `{name}` lost"))
        })
        .collect::<Result<_, _>>()?;
    check_function(&f, &wrt, &inputs, samples, seed)
}
