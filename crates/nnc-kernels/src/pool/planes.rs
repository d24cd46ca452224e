//! Pooling of any window and stride on the vector unit ([`crate::simd`]), sixteen planes per
//! vector.
//!
//! A group of sixteen planes is transposed into the scratch (`F32x16::transpose8` blocks) so
//! that element `e` of plane `k` sits at `16·e + k`: one load then gives an element's sixteen
//! planes, whatever the window, the stride or the plane's width, and no lane idles while
//! there are sixteen planes. Each lane runs the definition's loops ([`super::scalar`])
//! exactly: the same comparisons and additions, in the same order, so the results are the
//! same bits. The result is transposed back.
//!
//! The max gradient finds each window's maximum `m` by the definition's fold, then gives the
//! window's gradient to its first element equal to `m` (the fold's choice: it keeps the first
//! of equal values and only moves to a strictly greater one), or to its first element when
//! that is NaN (then `m` is NaN). NaN elements after the first are never chosen: they are
//! compared as −∞, which is `m` only when the first element is −∞ and already chosen. A
//! window's gradient is added as `+0` at the elements not chosen, which changes nothing: a
//! gradient accumulated from +0 is never −0.

use super::Window;
use crate::simd::{self, F32x16, Isa, Kernel};

/// Planes per group: the lanes of a vector.
const LANES: usize = 16;

/// The scratch floats of a group: its input (and for a gradient the gradient of the input)
/// and its pooled planes, transposed.
pub fn scratch_floats(win: &Window, gradient: bool) -> usize {
    let (p, q) = (win.plane(), win.pooled());
    LANES * if gradient { 2 * p + q } else { p + q }
}

/// Max (`max`) or sum pooling of `planes` planes `x` into `y`.
///
/// # Panics
/// If the slices do not hold `planes` planes, `scratch` not [`scratch_floats`], the window does
/// not fit the planes, or the CPU does not support `isa`.
pub fn forward(
    isa: Isa,
    max: bool,
    x: &[f32],
    y: &mut [f32],
    planes: usize,
    win: &Window,
    scratch: &mut [f32],
) {
    let pass = if max { Pass::Max } else { Pass::Sum };
    run(isa, pass, (x, &[]), (y, None), planes, win, scratch);
}

/// The gradient of max pooling (see the module's comment).
///
/// # Panics
/// As [`forward`].
pub fn max_gradient(
    isa: Isa,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    planes: usize,
    win: &Window,
    scratch: &mut [f32],
) {
    run(
        isa,
        Pass::MaxGradient,
        (x, dy),
        (dx, None),
        planes,
        win,
        scratch,
    );
}

/// [`max_gradient`] masked by the pooled activation's ReLU (see
/// [`super::max_gradient_masked`]): `dz = dx · step(x)`, and each plane's sum of `dz` (its
/// positions in order) added to `sums[(first + l) % channels]` for plane `l`.
///
/// # Panics
/// As [`forward`], or if `sums` has fewer than `channels` entries.
#[allow(clippy::too_many_arguments)]
pub fn max_gradient_masked(
    isa: Isa,
    x: &[f32],
    dy: &[f32],
    dz: &mut [f32],
    (sums, first, channels): (&mut [f32], usize, usize),
    planes: usize,
    win: &Window,
    scratch: &mut [f32],
) {
    assert!(channels > 0 && sums.len() >= channels, "sums too short");
    let masked = Some((sums, first, channels));
    run(
        isa,
        Pass::MaxGradient,
        (x, dy),
        (dz, masked),
        planes,
        win,
        scratch,
    );
}

/// The gradient of sum pooling.
///
/// # Panics
/// As [`forward`].
pub fn sum_gradient(
    isa: Isa,
    dy: &[f32],
    dx: &mut [f32],
    planes: usize,
    win: &Window,
    scratch: &mut [f32],
) {
    run(
        isa,
        Pass::SumGradient,
        (&[], dy),
        (dx, None),
        planes,
        win,
        scratch,
    );
}

/// Per-channel sums a masked gradient adds to: the sums, the first plane's index, the
/// channels.
type Masked<'a> = Option<(&'a mut [f32], usize, usize)>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Max,
    Sum,
    MaxGradient,
    SumGradient,
}

fn run(
    isa: Isa,
    pass: Pass,
    (x, dy): (&[f32], &[f32]),
    (out, masked): (&mut [f32], Masked<'_>),
    planes: usize,
    win: &Window,
    scratch: &mut [f32],
) {
    assert!(isa.supported(), "needs {}", isa.name());
    let Window {
        h,
        w,
        kh,
        kw,
        sh,
        sw,
        oh,
        ow,
    } = *win;
    // Every window inside its plane: the kernels index the scratch by these.
    assert!(oh > 0 && ow > 0 && (oh - 1) * sh + kh <= h && (ow - 1) * sw + kw <= w);
    let (p, q) = (win.plane(), win.pooled());
    let gradient = matches!(pass, Pass::MaxGradient | Pass::SumGradient);
    assert!(scratch.len() >= scratch_floats(win, gradient));
    let (inputs, outputs) = match pass {
        Pass::Max | Pass::Sum => (x.len() >= planes * p, out.len() >= planes * q),
        Pass::MaxGradient => (
            x.len() >= planes * p && dy.len() >= planes * q,
            out.len() >= planes * p,
        ),
        Pass::SumGradient => (dy.len() >= planes * q, out.len() >= planes * p),
    };
    assert!(inputs && outputs, "the slices hold {planes} planes");
    // SAFETY: the unit is supported; the slices hold the planes and the scratch its floats,
    // and every window lies inside its plane (checked above, panicking before any pointer is
    // used); what it writes is borrowed `&mut` for the call, so nothing else accesses it
    // meanwhile.
    unsafe {
        simd::run(
            isa,
            Planes {
                pass,
                x,
                dy,
                out,
                masked,
                planes,
                win: *win,
                scratch,
            },
        )
    }
}

struct Planes<'a> {
    pass: Pass,
    x: &'a [f32],
    dy: &'a [f32],
    out: &'a mut [f32],
    masked: Masked<'a>,
    planes: usize,
    win: Window,
    scratch: &'a mut [f32],
}

impl Kernel for Planes<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let Planes {
            pass,
            x,
            dy,
            out,
            mut masked,
            planes,
            win,
            scratch,
        } = self;
        let (p, q) = (win.plane(), win.pooled());
        for l0 in (0..planes).step_by(LANES) {
            let n = (planes - l0).min(LANES);
            let next = l0 + LANES;
            match pass {
                Pass::Max | Pass::Sum => simd::prefetch(group(x, p, next)),
                Pass::MaxGradient => {
                    simd::prefetch(group(x, p, next));
                    simd::prefetch(group(dy, q, next));
                }
                Pass::SumGradient => simd::prefetch(group(dy, q, next)),
            }
            // SAFETY (each call): the CPU has `V`'s unit (the caller's contract); the scratch
            // holds the group's transposed planes (`run` checked its size) and every window
            // lies inside its plane (checked there too).
            unsafe {
                match pass {
                    Pass::Max | Pass::Sum => {
                        let (xt, rest) = scratch.split_at_mut(LANES * p);
                        let yt = &mut rest[..LANES * q];
                        to_lanes::<V>(&x[l0 * p..(l0 + n) * p], n, p, xt);
                        if pass == Pass::Max {
                            pool_lanes::<V, true>(xt, yt, &win);
                        } else {
                            pool_lanes::<V, false>(xt, yt, &win);
                        }
                        from_lanes::<V>(yt, n, q, &mut out[l0 * q..(l0 + n) * q]);
                    }
                    Pass::MaxGradient => {
                        let (xt, rest) = scratch.split_at_mut(LANES * p);
                        let (dxt, rest) = rest.split_at_mut(LANES * p);
                        let gt = &mut rest[..LANES * q];
                        to_lanes::<V>(&x[l0 * p..(l0 + n) * p], n, p, xt);
                        to_lanes::<V>(&dy[l0 * q..(l0 + n) * q], n, q, gt);
                        dxt.fill(0.0);
                        max_gradient_lanes::<V>(xt, gt, dxt, &win);
                        if let Some((sums, first, channels)) = masked.as_mut() {
                            let plane_sums = mask_lanes::<V>(xt, dxt);
                            for (l, s) in plane_sums[..n].iter().enumerate() {
                                sums[(*first + l0 + l) % *channels] += s;
                            }
                        }
                        from_lanes::<V>(dxt, n, p, &mut out[l0 * p..(l0 + n) * p]);
                    }
                    Pass::SumGradient => {
                        let (dxt, rest) = scratch.split_at_mut(LANES * p);
                        let gt = &mut rest[..LANES * q];
                        to_lanes::<V>(&dy[l0 * q..(l0 + n) * q], n, q, gt);
                        dxt.fill(0.0);
                        sum_gradient_lanes::<V>(gt, dxt, &win);
                        from_lanes::<V>(dxt, n, p, &mut out[l0 * p..(l0 + n) * p]);
                    }
                }
            }
        }
    }
}

/// The planes of group `l0` (sixteen planes of `len` floats from plane `l0`) in `v`, as far
/// as it holds them.
fn group(v: &[f32], len: usize, l0: usize) -> &[f32] {
    let lo = (l0 * len).min(v.len());
    &v[lo..((l0 + LANES) * len).min(v.len())]
}

/// The pooled group `yt` of the transposed group `xt`: each window's maximum (`MAX`) or sum,
/// by the definition's fold.
///
/// # Safety
/// The CPU has `V`'s unit; `xt` holds the group's planes (`16·h·w` floats), `yt` its pooled
/// planes, and every window lies inside its plane.
#[inline(always)]
unsafe fn pool_lanes<V: F32x16, const MAX: bool>(xt: &[f32], yt: &mut [f32], win: &Window) {
    let Window {
        w,
        kh,
        kw,
        sh,
        sw,
        oh,
        ow,
        ..
    } = *win;
    assert!(yt.len() >= LANES * oh * ow);
    // SAFETY: window `(i, j)`'s elements `at + ki·w + kj` are inside the plane, so their
    // lanes inside `xt`; output `i·ow + j` inside `yt`.
    unsafe {
        for i in 0..oh {
            for j in 0..ow {
                let at = xt.as_ptr().add(LANES * (i * sh * w + j * sw));
                let mut acc = if MAX { V::load(at) } else { V::zero() };
                for ki in 0..kh {
                    let row = at.add(LANES * ki * w);
                    for kj in 0..kw {
                        let v = V::load(row.add(LANES * kj));
                        acc = if MAX { v.max(acc) } else { acc.add(v) };
                    }
                }
                acc.store(yt.as_mut_ptr().add(LANES * (i * ow + j)));
            }
        }
    }
}

/// Adds each window's gradient (of `gt`) to `dxt` at the window's maximum in `xt` (the first
/// element equal to the fold's maximum, or the first when it is NaN).
///
/// # Safety
/// As [`pool_lanes`], with `gt` the pooled planes' gradient and `dxt` the input's.
#[inline(always)]
unsafe fn max_gradient_lanes<V: F32x16>(xt: &[f32], gt: &[f32], dxt: &mut [f32], win: &Window) {
    let Window {
        w,
        kh,
        kw,
        sh,
        sw,
        oh,
        ow,
        ..
    } = *win;
    assert!(gt.len() >= LANES * oh * ow && dxt.len() >= xt.len());
    // SAFETY: as in `pool_lanes`; `dxt` is as long as `xt`.
    unsafe {
        let below_all = V::splat(f32::NEG_INFINITY);
        for i in 0..oh {
            for j in 0..ow {
                let first = LANES * (i * sh * w + j * sw);
                let at = xt.as_ptr().add(first);
                let dat = dxt.as_mut_ptr().add(first);
                let g = V::load(gt.as_ptr().add(LANES * (i * ow + j)));
                // The maximum, as the definition folds it.
                let x0 = V::load(at);
                let mut m = x0;
                for ki in 0..kh {
                    let row = at.add(LANES * ki * w);
                    for kj in 0..kw {
                        m = V::load(row.add(LANES * kj)).max(m);
                    }
                }
                // The first element is chosen where it is the maximum or NaN (then so is
                // `m`): where `m > x0` does not hold.
                let mut found = V::not(m.greater(x0));
                V::load(dat).add(g.select(found)).store(dat);
                for ki in 0..kh {
                    let (row, drow) = (at.add(LANES * ki * w), dat.add(LANES * ki * w));
                    for kj in usize::from(ki == 0)..kw {
                        // NaN as −∞ (`max` takes its second operand on NaN).
                        let v = V::load(row.add(LANES * kj)).max(below_all);
                        let equal = V::not(m.greater(v));
                        let pick = V::and_not(equal, found);
                        found = V::or(found, equal);
                        let d = drow.add(LANES * kj);
                        V::load(d).add(g.select(pick)).store(d);
                    }
                }
            }
        }
    }
}

/// `dxt · step(xt)` in place (one multiplication, as the loop it replaces: `step` is 1
/// where `x > 0`, else +0), and each lane's sum of it over the positions in order.
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn mask_lanes<V: F32x16>(xt: &[f32], dxt: &mut [f32]) -> [f32; LANES] {
    assert!(dxt.len() >= xt.len());
    let mut sums = [0.0f32; LANES];
    // SAFETY: the unit is the caller's; every vector lies in `xt` and `dxt` (asserted).
    unsafe {
        let (zero, one) = (V::zero(), V::splat(1.0));
        let mut sum = zero;
        for e in (0..xt.len() / LANES).map(|e| e * LANES) {
            let d = dxt.as_mut_ptr().add(e);
            let z = V::load(d).mul(one.select(V::load(xt.as_ptr().add(e)).greater(zero)));
            z.store(d);
            sum = sum.add(z);
        }
        sum.store(sums.as_mut_ptr());
    }
    sums
}

/// Adds each window's gradient (of `gt`) to every element of the window in `dxt`.
///
/// # Safety
/// As [`max_gradient_lanes`].
#[inline(always)]
unsafe fn sum_gradient_lanes<V: F32x16>(gt: &[f32], dxt: &mut [f32], win: &Window) {
    let Window {
        w,
        kh,
        kw,
        sh,
        sw,
        oh,
        ow,
        ..
    } = *win;
    assert!(gt.len() >= LANES * oh * ow && dxt.len() >= LANES * win.plane());
    // SAFETY: as in `pool_lanes`.
    unsafe {
        for i in 0..oh {
            for j in 0..ow {
                let dat = dxt.as_mut_ptr().add(LANES * (i * sh * w + j * sw));
                let g = V::load(gt.as_ptr().add(LANES * (i * ow + j)));
                for ki in 0..kh {
                    let drow = dat.add(LANES * ki * w);
                    for kj in 0..kw {
                        let d = drow.add(LANES * kj);
                        V::load(d).add(g).store(d);
                    }
                }
            }
        }
    }
}

/// `dst[16·e + k] = src[k·len + e]`: `n ≤ 16` planes of `len` floats into the lanes, +0 in
/// lanes `n..16`.
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn to_lanes<V: F32x16>(src: &[f32], n: usize, len: usize, dst: &mut [f32]) {
    assert!(n <= LANES && src.len() >= n * len && dst.len() >= LANES * len);
    // SAFETY: the unit is the caller's.
    unsafe { simd::transpose::<V>((src, len), (dst, LANES), n, len) };
    if n < LANES {
        for lanes in dst[..LANES * len].chunks_exact_mut(LANES) {
            lanes[n..].fill(0.0);
        }
    }
}

/// `dst[k·len + e] = src[16·e + k]` for the first `n ≤ 16` lanes: the inverse of
/// [`to_lanes`].
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn from_lanes<V: F32x16>(src: &[f32], n: usize, len: usize, dst: &mut [f32]) {
    assert!(n <= LANES && src.len() >= LANES * len && dst.len() >= n * len);
    // SAFETY: the unit is the caller's.
    unsafe { simd::transpose::<V>((src, LANES), (dst, len), len, n) };
}
