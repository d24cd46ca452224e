//! 2×2, stride-2 max pooling and its gradient on AVX-512: sixteen windows per vector.
//!
//! Two rows of 32 inputs are split into the four corners of sixteen windows (even and odd
//! lanes of each row); the gradient goes to the first maximum of each window in the order
//! top-left, top-right, bottom-left, bottom-right, exactly as the scalar loops choose it
//! (comparisons are strict and false on NaN, as there), and every other input gets +0.
//!
//! The backward pass of `conv → relu → maxpool` multiplies that gradient by the ReLU's step
//! and sums it per channel for the bias: [`MaskedGrad`] recognises exactly that epilogue and
//! does all three in the same pass, so the unmasked gradient is never stored and read back.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use nnc_ir::{Binary, DType, Function, Op, Unary};

use crate::plan::Plan;
use crate::schedule::{LoopKernel, used_only_by};

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
        backward_planes(x, dy, dx, planes, h, w, None)
    }
}

/// [`backward`] masked by the pooled activation's ReLU, as the backward pass of
/// `maxpool(relu(z + b))` computes it: `dz = dx · step(x)` (`x`: the pool's input, the
/// ReLU's output), and `sums[c] = Σ dz` over the planes of channel `c` (the bias gradient),
/// where plane `l` of the slices is plane `first + l` of `[N, channels, h, w]` tensors.
/// `dz` is bit-identical to the two passes; the sums add the same terms in another order.
///
/// # Panics
/// As [`forward`], or if `sums` has fewer than `channels` entries.
#[allow(clippy::too_many_arguments)]
pub fn backward_masked(
    x: &[f32],
    dy: &[f32],
    dz: &mut [f32],
    sums: &mut [f32],
    [first, planes, channels]: [usize; 3],
    h: usize,
    w: usize,
) {
    assert!(crate::direct::available(), "needs AVX-512");
    assert!(x.len() >= planes * h * w && dz.len() >= planes * h * w);
    assert!(dy.len() >= planes * (h / 2) * (w / 2) && sums.len() >= channels && channels > 0);
    sums[..channels].fill(0.0);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512 is available; the slices hold the planes (checked above).
    unsafe {
        backward_planes(x, dy, dz, planes, h, w, Some((sums, first, channels)))
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn backward_planes(
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    planes: usize,
    h: usize,
    w: usize,
    mut masked: Option<(&mut [f32], usize, usize)>,
) {
    let (oh, ow) = (h / 2, w / 2);
    let (zero, one) = (_mm512_setzero_ps(), _mm512_set1_ps(1.0));
    // `v · step(x)`, one multiplication as the loop does it (`step`: 1 where `x > 0`, else 0).
    let mask = |v: __m512, x: __m512| {
        _mm512_mul_ps(
            v,
            _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, zero), one),
        )
    };
    for l in 0..planes {
        let mut sum = zero;
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
                let pick = |k: __mmask16| _mm512_add_ps(_mm512_maskz_mov_ps(k, gv), zero);
                let mut corners = [
                    pick(top_left),
                    pick(top_right),
                    pick(bottom_left),
                    pick(bottom_right),
                ];
                if masked.is_some() {
                    // Lanes beyond the row are 0 in `gv` and in the corners: they add +0.
                    for (v, x) in corners.iter_mut().zip([a, b, c, d]) {
                        *v = mask(*v, x);
                    }
                    let pairs = [
                        _mm512_add_ps(corners[0], corners[1]),
                        _mm512_add_ps(corners[2], corners[3]),
                    ];
                    sum = _mm512_add_ps(sum, _mm512_add_ps(pairs[0], pairs[1]));
                }
                store_pairs(d0, j0, m, corners[0], corners[1]);
                store_pairs(d1, j0, m, corners[2], corners[3]);
            });
            // Inputs no window covers get 0, masked or not (0 · step = +0).
            d0[2 * ow..].fill(0.0);
            d1[2 * ow..].fill(0.0);
        }
        dxp[2 * oh * w..].fill(0.0);
        if let Some((sums, first, channels)) = masked.as_mut() {
            sums[(*first + l) % *channels] += _mm512_reduce_add_ps(sum);
        }
    }
}

/// A split `maxpool_grad` (2×2, stride 2) whose epilogue loop is exactly the ReLU mask and
/// the bias gradient, `dz = dx · step(x)` and `Σ dz` over all axes but the channels, with
/// `dx` read by nothing else: run as [`backward_masked`], so `dx` is never stored and read
/// back. Offsets are bytes in the arena.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskedGrad {
    pub x: usize,
    pub dy: usize,
    pub dz: usize,
    pub sums: usize,
    /// `[N, C, H, W]` of `x` and `dz`.
    pub shape: [usize; 4],
}

impl MaskedGrad {
    /// The fused kernel `inst` → `epilogue` as a masked pool gradient, if it is exactly one.
    pub fn recognise(
        f: &Function,
        inst: usize,
        epilogue: &LoopKernel,
        plan: &Plan,
    ) -> Option<Self> {
        let pool = &f.insts[inst];
        let (&[x, dy], dx) = (&pool.args[..], pool.result) else {
            return None;
        };
        if !matches!(&pool.op, Op::MaxPoolGrad { size, stride } if *size == [2, 2] && *stride == [2, 2])
        {
            return None;
        }
        let shape: [usize; 4] = f.ty(x).shape.as_slice().try_into().ok()?;
        let op = |i: usize| (&f.insts[i].op, &f.insts[i].args[..], f.insts[i].result);
        let &[i_step, i_mul, i_sum] = epilogue.insts.as_slice() else {
            return None;
        };
        let (Op::Unary(Unary::Step), &[sx], t) = op(i_step) else {
            return None;
        };
        let (Op::Binary(Binary::Mul), &[p, q], dz) = op(i_mul) else {
            return None;
        };
        let (Op::ReduceSum { axes }, &[summed], sums) = op(i_sum) else {
            return None;
        };
        let operands_match = sx == x && ((p, q) == (dx, t) || (p, q) == (t, dx)) && summed == dz;
        let [n, c, h, w] = shape;
        let f32s = [
            (x, shape),
            (dx, shape),
            (dz, shape),
            (dy, [n, c, h / 2, w / 2]),
        ]
        .iter()
        .all(|&(v, s)| f.ty(v).dtype == DType::F32 && f.ty(v).shape == s);
        // `dx` lives only in the loop; `dz` and the sums are what it stores.
        let dx_private = used_only_by(f, dx, i_mul);
        let mut outputs = epilogue.outputs.clone();
        outputs.sort_unstable_by_key(|v| v.0);
        let mut want = vec![dz, sums];
        want.sort_unstable_by_key(|v| v.0);
        if !(operands_match
            && f32s
            && dx_private
            && *axes == [0, 2, 3]
            && f.ty(sums).shape == [c]
            && outputs == want
            && epilogue.reductions == [sums])
        {
            return None;
        }
        Some(MaskedGrad {
            x: plan.offset[x.index()]?,
            dy: plan.offset[dy.index()]?,
            dz: plan.offset[dz.index()]?,
            sums: plan.offset[sums.index()]?,
            shape,
        })
    }

    /// Runs part `part` of `parts` (the planes split evenly); its sums go to their buffer, or
    /// to `base + partial` when `partial` is not 0 (the loop calling convention).
    ///
    /// # Safety
    /// `base` is the arena this was recognised in, the CPU has AVX-512, and no other thread
    /// touches this part's planes or its sums' destination meanwhile.
    pub unsafe fn run_part(&self, base: *mut u8, part: usize, parts: usize, partial: usize) {
        let [n, c, h, w] = self.shape;
        let lead = n * c;
        let (lo, hi) = (lead * part / parts, lead * (part + 1) / parts);
        let (plane, pooled) = (h * w, (h / 2) * (w / 2));
        // SAFETY: the offsets hold tensors of these shapes in the arena (the plan); this
        // part's planes of `dz` and its sums are written by no one else meanwhile, and `dz`
        // does not overlap `x` or `dy` (the plan keeps a kernel's inputs apart from the
        // outputs of its epilogue, except the library result `dz` replaces).
        unsafe {
            let at = |off: usize| base.add(off).cast::<f32>();
            let x = std::slice::from_raw_parts(at(self.x).add(lo * plane), (hi - lo) * plane);
            let dy = std::slice::from_raw_parts(at(self.dy).add(lo * pooled), (hi - lo) * pooled);
            let dz = std::slice::from_raw_parts_mut(at(self.dz).add(lo * plane), (hi - lo) * plane);
            let dst = if partial == 0 { self.sums } else { partial };
            let sums = std::slice::from_raw_parts_mut(at(dst), c);
            backward_masked(x, dy, dz, sums, [lo, hi - lo, c], h, w);
        }
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
            // Masked by step(x) and summed per channel, with the planes starting at plane 1
            // of 2 channels: dz bit for bit, the sums up to rounding.
            let mut dz = vec![f32::NAN; x.len()];
            let mut sums = [f32::NAN; 2];
            backward_masked(&x, &dy, &mut dz, &mut sums, [1, planes, 2], h, w);
            let mut want_sums = [0.0f64; 2];
            for (k, (a, g)) in dz.iter().zip(&want).enumerate() {
                let b = g * if x[k] > 0.0 { 1.0 } else { 0.0 };
                assert!(
                    a.to_bits() == b.to_bits(),
                    "{planes}x{h}x{w} dz[{k}]: {a} vs {b}"
                );
                want_sums[(1 + k / (h * w)) % 2] += b as f64;
            }
            for (a, b) in sums.iter().zip(want_sums) {
                assert!(
                    (*a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{planes}x{h}x{w} sums: {sums:?} vs {want_sums:?}"
                );
            }
        }
    }
}
