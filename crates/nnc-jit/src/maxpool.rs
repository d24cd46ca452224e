//! 2×2, stride-2 max pooling and its gradient on AVX-512: sixteen windows per vector.
//!
//! Two rows of 32 inputs are split into the four corners of sixteen windows (even and odd
//! lanes of each row); the gradient goes to the first maximum of each window in the order
//! top-left, top-right, bottom-left, bottom-right, exactly as the scalar loops choose it
//! (comparisons are strict and false on NaN, as there), and every other input gets +0.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `y[l][i][j] = max` of the 2×2 window at `(2i, 2j)` of plane `l` (planes `h × w` in,
/// `h/2 × w/2` out).
///
/// # Panics
/// If the slices do not hold `planes` such planes, or the CPU lacks AVX-512.
pub fn forward(x: &[f32], y: &mut [f32], planes: usize, h: usize, w: usize) {
    assert!(crate::direct::available(), "needs AVX-512");
    assert!(x.len() >= planes * h * w && y.len() >= planes * (h / 2) * (w / 2));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512 is available; the slices hold the planes (checked above).
    unsafe {
        forward_planes(x, y, planes, h, w)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn forward_planes(x: &[f32], y: &mut [f32], planes: usize, h: usize, w: usize) {
    let (oh, ow) = (h / 2, w / 2);
    for l in 0..planes {
        for i in 0..oh {
            let (x0, x1) = (&x[(l * h + 2 * i) * w..], &x[(l * h + 2 * i + 1) * w..]);
            let yr = &mut y[(l * oh + i) * ow..][..ow];
            rows(x0, x1, ow, |j0, m, [a, b, c, d]| {
                let v = _mm512_max_ps(d, _mm512_max_ps(c, _mm512_max_ps(b, a)));
                // SAFETY: `m` covers windows `j0..j0 + n`, within `yr`.
                unsafe { _mm512_mask_storeu_ps(yr.as_mut_ptr().add(j0), m, v) };
            });
        }
    }
}

/// The gradient of [`forward`]: `dx` gets `dy` of each window at its first maximum in `x`,
/// +0 elsewhere (also in a last odd row or column, which no window covers).
///
/// # Panics
/// As [`forward`].
pub fn backward(x: &[f32], dy: &[f32], dx: &mut [f32], planes: usize, h: usize, w: usize) {
    assert!(crate::direct::available(), "needs AVX-512");
    assert!(x.len() >= planes * h * w && dx.len() >= planes * h * w);
    assert!(dy.len() >= planes * (h / 2) * (w / 2));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512 is available; the slices hold the planes (checked above).
    unsafe {
        backward_planes(x, dy, dx, planes, h, w)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn backward_planes(x: &[f32], dy: &[f32], dx: &mut [f32], planes: usize, h: usize, w: usize) {
    let (oh, ow) = (h / 2, w / 2);
    for l in 0..planes {
        let dxp = &mut dx[l * h * w..(l + 1) * h * w];
        for i in 0..oh {
            let (x0, x1) = (&x[(l * h + 2 * i) * w..], &x[(l * h + 2 * i + 1) * w..]);
            let g = &dy[(l * oh + i) * ow..][..ow];
            let (d0, d1) = dxp[2 * i * w..(2 * i + 2) * w].split_at_mut(w);
            rows(x0, x1, ow, |j0, m, [a, b, c, d]| {
                // SAFETY: windows `j0..j0 + n` (the lanes of `m`) are within `g`.
                let gv = unsafe { _mm512_maskz_loadu_ps(m, g.as_ptr().add(j0)) };
                let top_right = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b, a);
                let best = _mm512_max_ps(b, a);
                let bottom_left = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(c, best);
                let best = _mm512_max_ps(c, best);
                let bottom_right = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(d, best);
                let bottom_left = bottom_left & !bottom_right;
                let top_right = top_right & !bottom_left & !bottom_right;
                let top_left = !(top_right | bottom_left | bottom_right);
                // `+ 0` turns a gradient of -0 into +0, as the scalar `0 + g` does.
                let zero = _mm512_setzero_ps();
                let pick = |k: __mmask16| _mm512_add_ps(_mm512_maskz_mov_ps(k, gv), zero);
                store_pairs(d0, j0, m, pick(top_left), pick(top_right));
                store_pairs(d1, j0, m, pick(bottom_left), pick(bottom_right));
            });
            d0[2 * ow..].fill(0.0);
            d1[2 * ow..].fill(0.0);
        }
        dxp[2 * oh * w..].fill(0.0);
    }
}

/// Calls `f(j0, mask, [top-left, top-right, bottom-left, bottom-right])` for windows
/// `j0..j0 + 16` of the row pair `x0`, `x1` (`mask`: the windows below `ow`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn rows(x0: &[f32], x1: &[f32], ow: usize, mut f: impl FnMut(usize, __mmask16, [__m512; 4])) {
    assert!(x0.len() >= 2 * ow && x1.len() >= 2 * ow);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for j0 in (0..ow).step_by(16) {
        let n = (ow - j0).min(16);
        let m = low_bits(n);
        let (lo, hi) = (
            low_bits((2 * n).min(16)),
            low_bits((2 * n).saturating_sub(16)),
        );
        // SAFETY: lanes below `2n` of the pair of vectors at `2·j0` are inside the rows.
        let (a0, a1, b0, b1) = unsafe {
            (
                _mm512_maskz_loadu_ps(lo, x0.as_ptr().add(2 * j0)),
                _mm512_maskz_loadu_ps(hi, x0.as_ptr().wrapping_add(2 * j0 + 16)),
                _mm512_maskz_loadu_ps(lo, x1.as_ptr().add(2 * j0)),
                _mm512_maskz_loadu_ps(hi, x1.as_ptr().wrapping_add(2 * j0 + 16)),
            )
        };
        f(
            j0,
            m,
            [
                _mm512_permutex2var_ps(a0, even, a1),
                _mm512_permutex2var_ps(a0, odd, a1),
                _mm512_permutex2var_ps(b0, even, b1),
                _mm512_permutex2var_ps(b0, odd, b1),
            ],
        );
    }
}

/// Stores `left` and `right` interleaved at columns `2·j0 ..` of `row`, for the windows in `m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn store_pairs(row: &mut [f32], j0: usize, m: __mmask16, left: __m512, right: __m512) {
    let n = m.count_ones() as usize;
    assert!(row.len() >= 2 * (j0 + n));
    let first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let second = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let (lo, hi) = (
        low_bits((2 * n).min(16)),
        low_bits((2 * n).saturating_sub(16)),
    );
    // SAFETY: lanes below `2n` from column `2·j0` are inside the row.
    unsafe {
        _mm512_mask_storeu_ps(
            row.as_mut_ptr().add(2 * j0),
            lo,
            _mm512_permutex2var_ps(left, first, right),
        );
        _mm512_mask_storeu_ps(
            row.as_mut_ptr().wrapping_add(2 * j0 + 16),
            hi,
            _mm512_permutex2var_ps(left, second, right),
        );
    }
}

/// A mask of the lowest `n` (≤ 16) lanes.
fn low_bits(n: usize) -> u16 {
    if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_forward(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
        let (oh, ow) = (h / 2, w / 2);
        let mut y = vec![0.0; planes * oh * ow];
        for l in 0..planes {
            for i in 0..oh {
                for j in 0..ow {
                    let at = |r: usize, c: usize| x[(l * h + 2 * i + r) * w + 2 * j + c];
                    let m = if at(0, 1) > at(0, 0) {
                        at(0, 1)
                    } else {
                        at(0, 0)
                    };
                    let m = if at(1, 0) > m { at(1, 0) } else { m };
                    y[(l * oh + i) * ow + j] = if at(1, 1) > m { at(1, 1) } else { m };
                }
            }
        }
        y
    }

    fn scalar_backward(x: &[f32], dy: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
        let (oh, ow) = (h / 2, w / 2);
        let mut dx = vec![0.0f32; planes * h * w];
        for l in 0..planes {
            for i in 0..oh {
                for j in 0..ow {
                    let at = |r: usize, c: usize| (l * h + 2 * i + r) * w + 2 * j + c;
                    let mut best = at(0, 0);
                    for k in [at(0, 1), at(1, 0), at(1, 1)] {
                        if x[k] > x[best] {
                            best = k;
                        }
                    }
                    dx[best] += dy[(l * oh + i) * ow + j];
                }
            }
        }
        dx
    }

    #[test]
    fn both_directions_match_the_scalar_loops() {
        if !crate::direct::available() {
            return;
        }
        // Ties (ReLU zeros, repeated values), NaN, -0 gradients, odd sizes, wide rows.
        for (planes, h, w) in [(3, 28, 28), (2, 10, 10), (2, 5, 7), (1, 2, 2), (2, 4, 70)] {
            let x: Vec<f32> = (0..planes * h * w)
                .map(|i| match (i * 7919) % 11 {
                    0..=2 => 0.0,
                    3 => f32::NAN,
                    4 => 1.0,
                    k => (k as f32 * 0.37).sin(),
                })
                .collect();
            let dy: Vec<f32> = (0..planes * (h / 2) * (w / 2))
                .map(|i| if i % 5 == 0 { -0.0 } else { i as f32 - 7.5 })
                .collect();
            let mut y = vec![f32::NAN; dy.len()];
            forward(&x, &mut y, planes, h, w);
            let want = scalar_forward(&x, planes, h, w);
            for (k, (a, b)) in y.iter().zip(&want).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits(),
                    "{planes}x{h}x{w} y[{k}]: {a} vs {b}"
                );
            }
            let mut dx = vec![f32::NAN; x.len()];
            backward(&x, &dy, &mut dx, planes, h, w);
            let want = scalar_backward(&x, &dy, planes, h, w);
            for (k, (a, b)) in dx.iter().zip(&want).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits(),
                    "{planes}x{h}x{w} dx[{k}]: {a} vs {b}"
                );
            }
        }
    }
}
