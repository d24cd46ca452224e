//! 2×2, stride-2 max pooling and its gradient on the vector unit ([`crate::simd`]): sixteen
//! windows of a row per vector (where rows have enough windows to fill them: `super` chooses).
//!
//! Two rows of 32 inputs are split into the four corners of sixteen windows (even and odd
//! lanes of each row); the gradient goes to the first maximum of each window in the order
//! top-left, top-right, bottom-left, bottom-right, exactly as the scalar loops choose it
//! (comparisons are strict and false on NaN, as there), and every other input gets +0.
//!
//! The backward pass of `conv → relu → maxpool` multiplies that gradient by the ReLU's step
//! and sums it per channel for the bias: [`backward_masked`] does all three in the same pass,
//! so the unmasked gradient is never stored and read back.

use crate::simd::{self, F32x16, Isa, Kernel, low_bits};

/// `y[l][i][j] = max` (`max`) or sum of the 2×2 window at `(2i, 2j)` of plane `l` (planes
/// `h × w` in, `h/2 × w/2` out); the sum as the definition adds it, `((0 + a) + b) + …` in
/// row-major order.
///
/// # Panics
/// If the slices do not hold `planes` such planes, or the CPU does not support `isa`.
pub fn forward(isa: Isa, max: bool, x: &[f32], y: &mut [f32], planes: usize, h: usize, w: usize) {
    assert!(isa.supported(), "needs {}", isa.name());
    assert!(x.len() >= planes * h * w && y.len() >= planes * (h / 2) * (w / 2));
    // SAFETY: the unit is supported; the slices hold the planes (checked above, panicking
    // before any pointer is used); `y` is borrowed `&mut` for the call, so nothing else
    // accesses it meanwhile.
    unsafe {
        simd::run(
            isa,
            Forward {
                max,
                x,
                y,
                planes,
                h,
                w,
            },
        )
    }
}

struct Forward<'a> {
    max: bool,
    x: &'a [f32],
    y: &'a mut [f32],
    planes: usize,
    h: usize,
    w: usize,
}

impl Kernel for Forward<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let Forward {
            max,
            x,
            y,
            planes,
            h,
            w,
        } = self;
        let (oh, ow) = (h / 2, w / 2);
        for l in 0..planes {
            for i in 0..oh {
                let (x0, x1) = (&x[(l * h + 2 * i) * w..], &x[(l * h + 2 * i + 1) * w..]);
                // The row and the rest of `y`: a whole vector is stored where `y` goes on
                // past it (the lanes beyond the row land on later rows' places, which are
                // written after this), a masked one at the end.
                let yr = &mut y[(l * oh + i) * ow..];
                // SAFETY: the CPU has `V`'s unit (the caller's contract); `m` covers windows
                // `j0..j0 + n`, within `yr`, and whole vectors fit in it where stored.
                for j0 in (0..ow).step_by(16) {
                    unsafe {
                        let (m, [a, b, c, d]) = windows::<V>(x0, x1, ow, j0);
                        let v = if max {
                            d.max(c.max(b.max(a)))
                        } else {
                            V::zero().add(a).add(b).add(c).add(d)
                        };
                        if yr.len() >= j0 + 16 {
                            v.store(yr.as_mut_ptr().add(j0));
                        } else {
                            v.store_masked(m, yr.as_mut_ptr().add(j0));
                        }
                    }
                }
            }
        }
    }
}

/// The gradient of [`forward`]: `dx` gets `dy` of each window at its first maximum in `x`,
/// +0 elsewhere (also in a last odd row or column, which no window covers).
///
/// # Panics
/// As [`forward`].
pub fn backward(
    isa: Isa,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    planes: usize,
    h: usize,
    w: usize,
) {
    assert!(isa.supported(), "needs {}", isa.name());
    assert!(x.len() >= planes * h * w && dx.len() >= planes * h * w);
    assert!(dy.len() >= planes * (h / 2) * (w / 2));
    // SAFETY: the unit is supported; the slices hold the planes (checked above, panicking
    // before any pointer is used); what it writes is borrowed `&mut` for the call, so nothing
    // else accesses it meanwhile.
    unsafe {
        simd::run(
            isa,
            Backward {
                x,
                dy,
                dx,
                planes,
                h,
                w,
                masked: None,
            },
        )
    }
}

/// The gradient of 2×2, stride-2 sum pooling: each window's `dy` at its four elements (as
/// `0 + dy`, the definition's sum from +0), +0 in a last odd row or column.
///
/// # Panics
/// As [`forward`].
pub fn spread(isa: Isa, dy: &[f32], dx: &mut [f32], planes: usize, h: usize, w: usize) {
    assert!(isa.supported(), "needs {}", isa.name());
    assert!(dx.len() >= planes * h * w && dy.len() >= planes * (h / 2) * (w / 2));
    // SAFETY: as in `forward`.
    unsafe {
        simd::run(
            isa,
            Spread {
                dy,
                dx,
                planes,
                h,
                w,
            },
        )
    }
}

struct Spread<'a> {
    dy: &'a [f32],
    dx: &'a mut [f32],
    planes: usize,
    h: usize,
    w: usize,
}

impl Kernel for Spread<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let Spread {
            dy,
            dx,
            planes,
            h,
            w,
        } = self;
        let (oh, ow) = (h / 2, w / 2);
        for l in 0..planes {
            for i in 0..oh {
                let g = &dy[(l * oh + i) * ow..][..ow];
                let at = (l * h + 2 * i) * w;
                for j0 in (0..ow).step_by(16) {
                    let m = low_bits(ow - j0);
                    // SAFETY: the CPU has `V`'s unit (the caller's contract); windows
                    // `j0..j0 + n` (the lanes of `m`) are within `g`, and their columns
                    // within the row pair (`store_pairs` checks).
                    unsafe {
                        let v = V::load_masked(m, g.as_ptr().add(j0)).add(V::zero());
                        // As in `Backward`: the first row's spill lands on the second's start,
                        // stored next.
                        let spill = ow <= 16 || m == u16::MAX;
                        store_pairs(&mut dx[at..], j0, m, v, v, spill);
                        store_pairs(&mut dx[at + w..], j0, m, v, v, spill);
                    }
                }
                dx[at + 2 * ow..at + w].fill(0.0);
                dx[at + w + 2 * ow..at + 2 * w].fill(0.0);
            }
            dx[(l * h + 2 * oh) * w..(l + 1) * h * w].fill(0.0);
        }
    }
}

/// [`backward`] masked by the pooled activation's ReLU: [`super::max_gradient_masked`] for
/// 2×2 windows at stride 2 (each plane's sum in its row pairs' order).
///
/// # Panics
/// As [`forward`], or if `sums` has fewer than `channels` entries.
#[allow(clippy::too_many_arguments)]
pub fn backward_masked(
    isa: Isa,
    x: &[f32],
    dy: &[f32],
    dz: &mut [f32],
    sums: &mut [f32],
    [first, planes, channels]: [usize; 3],
    h: usize,
    w: usize,
) {
    assert!(isa.supported(), "needs {}", isa.name());
    assert!(x.len() >= planes * h * w && dz.len() >= planes * h * w);
    assert!(dy.len() >= planes * (h / 2) * (w / 2) && sums.len() >= channels && channels > 0);
    sums[..channels].fill(0.0);
    // SAFETY: the unit is supported; the slices hold the planes (checked above, panicking
    // before any pointer is used); what it writes is borrowed `&mut` for the call, so nothing
    // else accesses it meanwhile.
    unsafe {
        simd::run(
            isa,
            Backward {
                x,
                dy,
                dx: dz,
                planes,
                h,
                w,
                masked: Some((sums, first, channels)),
            },
        )
    }
}

struct Backward<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    dx: &'a mut [f32],
    planes: usize,
    h: usize,
    w: usize,
    masked: Option<(&'a mut [f32], usize, usize)>,
}

impl Kernel for Backward<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let Backward {
            x,
            dy,
            dx,
            planes,
            h,
            w,
            mut masked,
        } = self;
        let (oh, ow) = (h / 2, w / 2);
        // SAFETY (throughout): the CPU has `V`'s unit (the caller's contract).
        let (zero, one) = unsafe { (V::zero(), V::splat(1.0)) };
        for l in 0..planes {
            let mut sum = zero;
            for i in 0..oh {
                let (x0, x1) = (&x[(l * h + 2 * i) * w..], &x[(l * h + 2 * i + 1) * w..]);
                let g = &dy[(l * oh + i) * ow..][..ow];
                // The row pair's first row and the rest of `dx` after it.
                let at = (l * h + 2 * i) * w;
                let masked = masked.is_some();
                for j0 in (0..ow).step_by(16) {
                    unsafe {
                        let (m, [a, b, c, d]) = windows::<V>(x0, x1, ow, j0);
                        // SAFETY: windows `j0..j0 + n` (the lanes of `m`) are within `g`.
                        let gv = V::load_masked(m, g.as_ptr().add(j0));
                        // (In the unit's own masks, and loops, not closures: see `simd`.)
                        let top_right = b.greater(a);
                        let best = b.max(a);
                        let bottom_left = c.greater(best);
                        let best = c.max(best);
                        let bottom_right = d.greater(best);
                        let bottom_left = V::and_not(bottom_left, bottom_right);
                        let top_right =
                            V::and_not(V::and_not(top_right, bottom_left), bottom_right);
                        let top_left = V::not(V::or(V::or(top_right, bottom_left), bottom_right));
                        // `+ 0` turns a gradient of -0 into +0, as the scalar `0 + g` does.
                        let picks = [top_left, top_right, bottom_left, bottom_right];
                        let mut corners = [zero; 4];
                        for (v, k) in corners.iter_mut().zip(picks) {
                            *v = gv.select(k).add(zero);
                        }
                        if masked {
                            // `v · step(x)`, one multiplication as the loop does it (`step`: 1
                            // where `x > 0`, else 0). Lanes beyond the row are 0 in `gv` and in
                            // the corners: they add +0.
                            for (v, x) in corners.iter_mut().zip([a, b, c, d]) {
                                *v = v.mul(one.select(x.greater(zero)));
                            }
                            let pairs = [corners[0].add(corners[1]), corners[2].add(corners[3])];
                            sum = sum.add(pairs[0].add(pairs[1]));
                        }
                        // The first row before the second: a whole vector stored past the
                        // first row's last block lands on the second row's start, which is
                        // stored next (with one block a row, or when the block is whole).
                        let spill = ow <= 16 || m == u16::MAX;
                        store_pairs(&mut dx[at..], j0, m, corners[0], corners[1], spill);
                        store_pairs(&mut dx[at + w..], j0, m, corners[2], corners[3], spill);
                    }
                }
                // Inputs no window covers get 0, masked or not (0 · step = +0).
                dx[at + 2 * ow..at + w].fill(0.0);
                dx[at + w + 2 * ow..at + 2 * w].fill(0.0);
            }
            dx[(l * h + 2 * oh) * w..(l + 1) * h * w].fill(0.0);
            if let Some((sums, first, channels)) = masked.as_mut() {
                sums[(*first + l) % *channels] += unsafe { sum.sum() };
            }
        }
    }
}

/// The corners `[top-left, top-right, bottom-left, bottom-right]` of windows `j0..j0 + 16`
/// of the row pair `x0`, `x1`, and the mask of those below `ow`. (A function per block of
/// windows, called in loops: a closure per block was compiled out of line, see `simd`.)
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn windows<V: F32x16>(x0: &[f32], x1: &[f32], ow: usize, j0: usize) -> (u16, [V; 4]) {
    assert!(x0.len() >= 2 * ow && x1.len() >= 2 * ow && j0 < ow);
    let n = (ow - j0).min(16);
    let m = low_bits(n);
    let (lo, hi) = (
        low_bits((2 * n).min(16)),
        low_bits((2 * n).saturating_sub(16)),
    );
    // Whole vectors where the slices go on past them (into the next rows: the lanes beyond
    // the row are not used), masked ones at the end; AVX2's masked loads cost more. `x1`
    // ends where `x0` does.
    let whole = x1.len() >= 2 * j0 + 32;
    // SAFETY: lanes below `2n` of the pair of vectors at `2·j0` are inside the rows, and
    // whole vectors inside the slices.
    unsafe {
        let mut v = [V::zero(); 4];
        for (k, (row, at, m)) in [
            (x0, 2 * j0, lo),
            (x0, 2 * j0 + 16, hi),
            (x1, 2 * j0, lo),
            (x1, 2 * j0 + 16, hi),
        ]
        .into_iter()
        .enumerate()
        {
            if m == 0 {
                continue;
            }
            v[k] = if whole {
                V::load(row.as_ptr().add(at))
            } else {
                V::load_masked(m, row.as_ptr().wrapping_add(at))
            };
        }
        let [a0, a1, b0, b1] = v;
        let ((a, b), (c, d)) = (a0.deinterleave(a1), b0.deinterleave(b1));
        (m, [a, b, c, d])
    }
}

/// Stores `left` and `right` interleaved at columns `2·j0 ..` of `row` (a row and what
/// follows it), for the windows in `m`; where `spill` and `row` goes on past them, as whole
/// vectors (the lanes beyond the windows land on the following row, which the caller writes
/// after this), else masked.
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn store_pairs<V: F32x16>(
    row: &mut [f32],
    j0: usize,
    m: u16,
    left: V,
    right: V,
    spill: bool,
) {
    let n = m.count_ones() as usize;
    assert!(row.len() >= 2 * (j0 + n));
    let (lo, hi) = (
        low_bits((2 * n).min(16)),
        low_bits((2 * n).saturating_sub(16)),
    );
    let whole = spill && row.len() >= 2 * j0 + 32;
    // SAFETY: lanes below `2n` from column `2·j0` are inside the row; whole vectors inside
    // `row`.
    unsafe {
        let (first, second) = left.interleave(right);
        if whole {
            first.store(row.as_mut_ptr().add(2 * j0));
            if hi != 0 {
                second.store(row.as_mut_ptr().add(2 * j0 + 16));
            }
        } else {
            first.store_masked(lo, row.as_mut_ptr().add(2 * j0));
            second.store_masked(hi, row.as_mut_ptr().wrapping_add(2 * j0 + 16));
        }
    }
}

/// Times the pool and its masked gradient on LeNet-5's shapes on one thread, printing the best of
/// 50 runs (`cargo bench -p nnc-kernels --bench kernels`).
#[doc(hidden)]
pub fn time_lenet_shapes(isa: Isa) {
    // Half of LeNet-5's batch (one thread's part): C1's and C3's pools.
    for (name, planes, h, w) in [("c1", 16 * 6, 28, 28), ("c3", 16 * 16, 10, 10)] {
        let x: Vec<f32> = (0..planes * h * w)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let dy = vec![0.5f32; planes * (h / 2) * (w / 2)];
        let (mut y, mut dz, mut sums) = (vec![0.0; dy.len()], vec![0.0; x.len()], [0.0; 16]);
        let mut best = [f64::MAX; 2];
        for _ in 0..50 {
            let t = std::time::Instant::now();
            forward(isa, true, &x, &mut y, planes, h, w);
            best[0] = best[0].min(t.elapsed().as_secs_f64() * 1e6);
            let t = std::time::Instant::now();
            backward_masked(isa, &x, &dy, &mut dz, &mut sums, [0, planes, 16], h, w);
            best[1] = best[1].min(t.elapsed().as_secs_f64() * 1e6);
        }
        println!(
            "{name}: pool {:.1} µs, masked gradient {:.1} µs ({planes} planes, one thread)",
            best[0], best[1]
        );
    }
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
        // Ties (ReLU zeros, repeated values, -0 against +0), NaN, -0 gradients, odd sizes,
        // wide rows, a column no window covers, rows of one window.
        let shapes = [
            (3, 28, 28),
            (2, 10, 10),
            (2, 5, 7),
            (1, 2, 2),
            (2, 4, 70),
            (2, 9, 11),
            (2, 35, 3),
        ];
        let runs =
            crate::testing::vector_units("pool::pairs::both_directions_match_the_scalar_loops")
                .into_iter()
                .flat_map(|isa| shapes.map(|s| (isa, s)));
        for (isa, (planes, h, w)) in runs {
            let x: Vec<f32> = (0..planes * h * w)
                .map(|i| match (i * 7919) % 11 {
                    0..=1 => 0.0,
                    2 => -0.0,
                    3 => f32::NAN,
                    4 => 1.0,
                    k => (k as f32 * 0.37).sin(),
                })
                .collect();
            let dy: Vec<f32> = (0..planes * (h / 2) * (w / 2))
                .map(|i| if i % 5 == 0 { -0.0 } else { i as f32 - 7.5 })
                .collect();
            let mut y = vec![f32::NAN; dy.len()];
            forward(isa, true, &x, &mut y, planes, h, w);
            let want = scalar_forward(&x, planes, h, w);
            for (k, (a, b)) in y.iter().zip(&want).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits(),
                    "{isa:?} {planes}x{h}x{w} y[{k}]: {a} vs {b}"
                );
            }
            // Sum pooling and its gradient, against the definition.
            let win = crate::pool::Window::new([h, w], [2, 2], [2, 2]);
            let mut s = vec![f32::NAN; dy.len()];
            forward(isa, false, &x, &mut s, planes, h, w);
            let mut want = vec![0.0; dy.len()];
            crate::pool::scalar::forward(false, &x, &mut want, planes, &win);
            for (k, (a, b)) in s.iter().zip(&want).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits(),
                    "{isa:?} {planes}x{h}x{w} sum[{k}]: {a} vs {b}"
                );
            }
            let mut ds = vec![f32::NAN; x.len()];
            spread(isa, &dy, &mut ds, planes, h, w);
            let mut want = vec![f32::NAN; x.len()];
            crate::pool::scalar::sum_gradient(&dy, &mut want, planes, &win);
            for (k, (a, b)) in ds.iter().zip(&want).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits(),
                    "{isa:?} {planes}x{h}x{w} spread[{k}]: {a} vs {b}"
                );
            }
            let mut dx = vec![f32::NAN; x.len()];
            backward(isa, &x, &dy, &mut dx, planes, h, w);
            let want = scalar_backward(&x, &dy, planes, h, w);
            for (k, (a, b)) in dx.iter().zip(&want).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits(),
                    "{isa:?} {planes}x{h}x{w} dx[{k}]: {a} vs {b}"
                );
            }
            // Masked by step(x) and summed per channel, with the planes starting at plane 1
            // of 2 channels: dz bit for bit, the sums up to rounding.
            let mut dz = vec![f32::NAN; x.len()];
            let mut sums = [f32::NAN; 2];
            backward_masked(isa, &x, &dy, &mut dz, &mut sums, [1, planes, 2], h, w);
            let mut want_sums = [0.0f64; 2];
            for (k, (a, g)) in dz.iter().zip(&want).enumerate() {
                let b = g * if x[k] > 0.0 { 1.0 } else { 0.0 };
                assert!(
                    a.to_bits() == b.to_bits(),
                    "{isa:?} {planes}x{h}x{w} dz[{k}]: {a} vs {b}"
                );
                want_sums[(1 + k / (h * w)) % 2] += b as f64;
            }
            for (a, b) in sums.iter().zip(want_sums) {
                assert!(
                    (*a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{isa:?} {planes}x{h}x{w} sums: {sums:?} vs {want_sums:?}"
                );
            }
        }
    }
}
