//! Helpers shared by the JIT's tests (the vector kernels' unit tests and the integration
//! tests): not part of the API.

use crate::simd::Isa;

/// The vector units this CPU has, for a test to check each, printing an explicit `SKIPPED`
/// line (to stderr) for each unit it lacks, so that a test cannot pass silently having
/// checked fewer units than it names. For tests that also check the portable path, which
/// always runs; tests of the vector kernels alone use [`vector_units`].
pub fn vector_units_or_skip(test: &str) -> Vec<Isa> {
    let (present, missing): (Vec<Isa>, Vec<Isa>) =
        Isa::ALL.into_iter().partition(|i| i.supported());
    for isa in missing {
        eprintln!("SKIPPED: {test} on {isa:?}: no {isa:?} unit on this CPU");
    }
    present
}

/// [`vector_units_or_skip`], failing when there is none: a test of the vector kernels alone
/// must not pass having checked nothing.
pub fn vector_units(test: &str) -> Vec<Isa> {
    let units = vector_units_or_skip(test);
    assert!(
        !units.is_empty(),
        "{test}: this CPU has no vector unit (AVX-512, or AVX2 with FMA): nothing checked"
    );
    units
}

/// A small deterministic generator of values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// A convolution's filter gradient by its definition, in f64: `dw[o][c][ki][kj] = Σ_b
/// Σ_(i,j) dy[b][o][i][j] · x[b][c][i + ki][j + kj]`, for `samples` samples of `c × h × w`
/// inputs `x` and `o × oh × ow` output gradients `dy` (shape `(c, h, w, o, kh, kw)`).
pub fn filter_gradient(
    x: &[f32],
    dy: &[f32],
    (c, h, w, o, kh, kw): (usize, usize, usize, usize, usize, usize),
    samples: usize,
) -> Vec<f64> {
    let (oh, ow) = (h + 1 - kh, w + 1 - kw);
    let mut dw = vec![0.0f64; o * c * kh * kw];
    for oc in 0..o {
        for ci in 0..c {
            for ki in 0..kh {
                for kj in 0..kw {
                    let mut sum = 0.0f64;
                    for b in 0..samples {
                        for i in 0..oh {
                            for j in 0..ow {
                                sum += dy[((b * o + oc) * oh + i) * ow + j] as f64
                                    * x[((b * c + ci) * h + i + ki) * w + j + kj] as f64;
                            }
                        }
                    }
                    dw[((oc * c + ci) * kh + ki) * kw + kj] = sum;
                }
            }
        }
    }
    dw
}

/// A convolution's input gradient by its definition, in f64: `dx[b][c][r + ki][s + kj] +=
/// dy[b][o][r][s] · w[o][c][ki][kj]`, for `samples` samples of `o × oh × ow` output gradients
/// `dy` and filters `w` (shape `(c, h, w, o, kh, kw)`).
pub fn input_gradient(
    dy: &[f32],
    w: &[f32],
    (c, h, wd, o, kh, kw): (usize, usize, usize, usize, usize, usize),
    samples: usize,
) -> Vec<f64> {
    let shape = (
        c,
        [h, wd],
        o,
        [h + 1 - kh, wd + 1 - kw],
        [kh, kw],
        [1, 1],
        [0, 0],
    );
    strided_input_gradient(dy, w, shape, samples)
}

/// A strided convolution's shape, `(c, [h, w], o, [oh, ow], [kh, kw], stride, low)`: what
/// [`strided_input_gradient`] takes.
pub type Strided = (
    usize,
    [usize; 2],
    usize,
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 2],
);

/// The strided input gradients both of their kernels are tested on (`phases`, `samples`):
/// strides 2 and 3 (and 1 along one axis), square and not, 1×1 (positions no window holds),
/// `same` pads even and uneven, a low pad as large as the filter's reach, rows and columns
/// past the last window, channels past a tile and each remainder.
pub const STRIDED: [Strided; 10] = [
    (16, [28, 28], 32, [14, 14], [3, 3], [2, 2], [0, 0]),
    (16, [28, 28], 32, [14, 14], [3, 3], [2, 2], [1, 1]),
    (7, [14, 14], 9, [7, 7], [3, 3], [2, 2], [1, 1]),
    (3, [9, 7], 5, [5, 4], [3, 3], [2, 2], [1, 1]),
    (5, [11, 10], 17, [4, 5], [5, 3], [3, 2], [2, 1]),
    (4, [8, 8], 6, [4, 4], [1, 1], [2, 2], [0, 0]),
    (2, [7, 9], 3, [4, 8], [3, 2], [2, 1], [1, 0]),
    (33, [5, 6], 2, [3, 3], [7, 7], [2, 2], [3, 3]),
    (13, [9, 9], 2, [3, 3], [3, 3], [2, 2], [0, 0]),
    (8, [30, 30], 4, [14, 14], [3, 3], [2, 2], [0, 0]),
];

/// A convolution's input gradient at any stride by its definition, in f64: `dx[b][c][i][j]
/// += dy[b][o][r][s] · w[o][c][ki][kj]` wherever `i + low₀ = r·sh + ki` and `j + low₁ = s·sw +
/// kj` land in the `h × w` input, for `samples` samples (shape `(c, [h, w], o, [oh, ow], [kh,
/// kw], stride, low)`).
pub fn strided_input_gradient(
    dy: &[f32],
    w: &[f32],
    (c, [h, wd], o, [oh, ow], [kh, kw], [sh, sw], low): Strided,
    samples: usize,
) -> Vec<f64> {
    let mut dx = vec![0.0f64; samples * c * h * wd];
    for b in 0..samples {
        for oc in 0..o {
            for ci in 0..c {
                for r in 0..oh {
                    for s in 0..ow {
                        let d = dy[((b * o + oc) * oh + r) * ow + s] as f64;
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let i = (r * sh + ki).checked_sub(low[0]);
                                let j = (s * sw + kj).checked_sub(low[1]);
                                let (Some(i), Some(j)) = (i, j) else { continue };
                                if i >= h || j >= wd {
                                    continue;
                                }
                                let wv = w[((oc * c + ci) * kh + ki) * kw + kj] as f64;
                                dx[((b * c + ci) * h + i) * wd + j] += d * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}
