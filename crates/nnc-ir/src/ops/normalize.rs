//! Batch normalisation with the batch's statistics (training), an op of its own for its
//! derivative.
//!
//! Written as primitives, its derived backward pass follows the mean and the variance back
//! through their reductions: a pass that forms `x − mean`'s gradient and sums it (for the
//! mean's), then another that adds the mean's share, besides the pass that sums the
//! gradients of γ and β. The textbook derivative needs only those sums:
//! `dx = γ·inv · (dy − mean(dy) − x̂ · mean(dy ⊙ x̂))`, `x̂ = (x − mean)·inv`,
//! `inv = 1/√(var + ε)`, one elementwise pass that the next kernel can take as its prologue.
//! Autodiff sees the op; [`decompose`] then writes it as primitives, `(x − mean)·(γ·inv) + β`,
//! and `cse` merges its statistics with the ones the lowering emits for the running
//! statistics (the same instructions, in the same order: [`statistics`]).

use crate::function::{Builder, ValueId};
use crate::op::{Op, Unary};
use crate::types::Type;

/// `batchnorm(x, γ, β)`: `x` f32 of rank ≥ 2 with channels on axis 1, `γ` and `β` f32
/// `[C]`; the result has `x`'s type.
pub fn infer(args: &[&Type]) -> Result<Type, String> {
    let (x, gamma, beta) = (args[0], args[1], args[2]);
    super::expect_dtype(x, crate::types::DType::F32, "the normalised operand")?;
    if x.rank() < 2 {
        return Err(format!(
            "the normalised operand must have rank ≥ 2, found {x}"
        ));
    }
    let c = x.shape[1];
    for (t, what) in [(gamma, "γ"), (beta, "β")] {
        super::expect_dtype(t, crate::types::DType::F32, what)?;
        if t.shape != [c] {
            return Err(format!("{what} must be f32[{c}] (x's channels), found {t}"));
        }
    }
    Ok(x.clone())
}

/// A batch's statistics per channel, as the lowering, [`decompose`] and [`vjp`] emit them.
pub struct Statistics {
    /// `[C]`.
    pub mean: ValueId,
    /// `x − mean`, `x`'s shape.
    pub centred: ValueId,
    /// The biased variance, `[C]`.
    pub var: ValueId,
    /// `[C, 1, …]`: a per-channel vector's shape against `x`.
    pub per_channel: Vec<usize>,
    /// Every axis but the channel's.
    pub axes: Vec<usize>,
    /// Elements per channel.
    pub count: usize,
}

/// The mean and biased variance of `x` over every axis but axis 1 (two passes: the variance
/// sums squares of `x − mean`).
pub fn statistics(b: &mut Builder<'_>, x: ValueId) -> Statistics {
    let shape = b.shape(x);
    let c = shape[1];
    let per_channel: Vec<usize> = std::iter::once(c)
        .chain(std::iter::repeat_n(1, shape.len() - 2))
        .collect();
    let axes: Vec<usize> = (0..shape.len()).filter(|&a| a != 1).collect();
    let count = shape.iter().product::<usize>() / c.max(1);
    let sum = b.op(Op::ReduceSum { axes: axes.clone() }, &[x]);
    let mean = b.scale(sum, 1.0 / count as f64);
    let mean_b = b.reshape(mean, per_channel.clone());
    let centred = b.sub(x, mean_b);
    let squares = b.mul(centred, centred);
    let sum_sq = b.op(Op::ReduceSum { axes: axes.clone() }, &[squares]);
    let var = b.scale(sum_sq, 1.0 / count as f64);
    Statistics {
        mean,
        centred,
        var,
        per_channel,
        axes,
        count,
    }
}

/// `1/√(var + ε)`, `[C]`.
fn inverse_deviation(b: &mut Builder<'_>, var: ValueId, eps: f64) -> ValueId {
    let e = b.scalar(eps);
    let var_eps = b.add(var, e);
    let root = b.unary(Unary::Sqrt, var_eps);
    b.unary(Unary::Recip, root)
}

/// Emits `batchnorm(x, γ, β)` as primitives: `(x − mean)·(γ·inv) + β`.
pub fn decompose(b: &mut Builder<'_>, op: &Op, args: &[ValueId]) -> ValueId {
    let Op::BatchNorm { eps } = *op else {
        unreachable!("not batchnorm: {}", op.name())
    };
    let [x, gamma, beta] = [args[0], args[1], args[2]];
    let s = statistics(b, x);
    normalise(b, (s.centred, s.var), [gamma, beta], eps, s.per_channel)
}

/// `centred·(γ/√(var + ε)) + β`, the per-channel `var`, `γ` and `β` reshaped to
/// `per_channel` against `centred`: the batch's statistics in training ([`decompose`]), the
/// running ones in evaluation (the lowering).
pub fn normalise(
    b: &mut Builder<'_>,
    (centred, var): (ValueId, ValueId),
    [gamma, beta]: [ValueId; 2],
    eps: f64,
    per_channel: Vec<usize>,
) -> ValueId {
    let inv = inverse_deviation(b, var, eps);
    let scale = b.mul(gamma, inv);
    let scale = b.reshape(scale, per_channel.clone());
    let scaled = b.mul(centred, scale);
    let shift = b.reshape(beta, per_channel);
    b.add(scaled, shift)
}

/// The gradients of `x`, `γ` and `β` (see the module's comment).
pub fn vjp(
    b: &mut Builder<'_>,
    op: &Op,
    args: &[ValueId],
    dy: ValueId,
    wants: &[bool],
) -> Result<Vec<Option<ValueId>>, String> {
    let Op::BatchNorm { eps } = *op else {
        unreachable!("not batchnorm: {}", op.name())
    };
    let [x, gamma] = [args[0], args[1]];
    let s = statistics(b, x);
    let inv = inverse_deviation(b, s.var, eps);
    let inv_b = b.reshape(inv, s.per_channel.clone());
    let normalised = b.mul(s.centred, inv_b);
    let dbeta = b.op(
        Op::ReduceSum {
            axes: s.axes.clone(),
        },
        &[dy],
    );
    let dy_normalised = b.mul(dy, normalised);
    let dgamma = b.op(
        Op::ReduceSum {
            axes: s.axes.clone(),
        },
        &[dy_normalised],
    );
    let dx = wants[0].then(|| {
        let n = 1.0 / s.count as f64;
        let mean_dy = b.scale(dbeta, n);
        let mean_dy = b.reshape(mean_dy, s.per_channel.clone());
        let mean_dyn = b.scale(dgamma, n);
        let mean_dyn = b.reshape(mean_dyn, s.per_channel.clone());
        let centred_dy = b.sub(dy, mean_dy);
        let along = b.mul(normalised, mean_dyn);
        let projected = b.sub(centred_dy, along);
        let scale = b.mul(gamma, inv);
        let scale = b.reshape(scale, s.per_channel.clone());
        b.mul(projected, scale)
    });
    Ok(vec![
        dx,
        wants[1].then_some(dgamma),
        wants[2].then_some(dbeta),
    ])
}

#[cfg(test)]
mod tests {
    use crate::interp::{Tensor, run_f64};
    use crate::parse::parse_function;

    /// The op (as the interpreter runs its decomposition) against the definition, computed
    /// here per channel of `[2, 3, 2, 2]` maps.
    #[test]
    fn normalises_each_channel_over_the_batch_and_the_map() {
        let f = parse_function(
            "func @f(%x: f32[2,3,2,2], %g: f32[3], %b: f32[3]) -> (f32[2,3,2,2]) {
               %y: f32[2,3,2,2] = batchnorm %x, %g, %b, eps=0.01
               return %y
             }",
        )
        .unwrap();
        let x: Vec<f64> = (0..24)
            .map(|i| ((i * 7) % 11) as f64 - 3.0 + i as f64 * 0.1)
            .collect();
        let (g, b) = ([0.5, -2.0, 1.5], [0.25, 0.0, -1.0]);
        let inputs = vec![
            Tensor::from_f64(&[2, 3, 2, 2], &x),
            Tensor::from_f64(&[3], &g),
            Tensor::from_f64(&[3], &b),
        ];
        let y = run_f64(&f, inputs).unwrap().remove(0);
        let y = y.as_f().unwrap();
        let at = |n: usize, c: usize, k: usize| (n * 3 + c) * 4 + k;
        for c in 0..3 {
            let xs: Vec<f64> = (0..2)
                .flat_map(|n| (0..4).map(move |k| (n, k)))
                .map(|(n, k)| x[at(n, c, k)])
                .collect();
            let mean = xs.iter().sum::<f64>() / 8.0;
            let var = xs.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 8.0;
            for n in 0..2 {
                for k in 0..4 {
                    let want = (x[at(n, c, k)] - mean) / (var + 0.01).sqrt() * g[c] + b[c];
                    let got = y.as_slice().unwrap()[at(n, c, k)];
                    assert!(
                        (got - want).abs() < 1e-12,
                        "channel {c}: {got} against {want}"
                    );
                }
            }
        }
    }
}
