//! Pooling by its definition, window by window, as the reference interpreter loops: the
//! portable path, and what the vector kernels are tested against.

use super::Window;

/// Max (`max`) or sum pooling of `planes` planes `x` into `y`.
///
/// # Panics
/// If the slices do not hold `planes` planes.
pub fn forward(max: bool, x: &[f32], y: &mut [f32], planes: usize, win: &Window) {
    let (p, q) = (win.plane(), win.pooled());
    assert!(x.len() >= planes * p && y.len() >= planes * q);
    for (xp, yp) in x.chunks_exact(p).zip(y.chunks_exact_mut(q)).take(planes) {
        for (out, at) in yp.iter_mut().zip(win.starts()) {
            let mut acc = if max { xp[at] } else { 0.0 };
            for row in win.rows(at) {
                for &v in &xp[row] {
                    acc = if max {
                        if v > acc { v } else { acc }
                    } else {
                        acc + v
                    };
                }
            }
            *out = acc;
        }
    }
}

/// The gradient of max pooling: each window's `dy` added, in window order, to `dx` at the
/// window's first maximum in `x`.
///
/// # Panics
/// If the slices do not hold `planes` planes.
pub fn max_gradient(x: &[f32], dy: &[f32], dx: &mut [f32], planes: usize, win: &Window) {
    let (p, q) = (win.plane(), win.pooled());
    assert!(x.len() >= planes * p && dy.len() >= planes * q);
    dx[..planes * p].fill(0.0);
    let inputs = x.chunks_exact(p).zip(dy.chunks_exact(q));
    for ((xp, gp), dxp) in inputs.zip(dx.chunks_exact_mut(p)).take(planes) {
        for (&g, at) in gp.iter().zip(win.starts()) {
            let mut best = at;
            for k in win.rows(at).flatten() {
                if xp[k] > xp[best] {
                    best = k;
                }
            }
            dxp[best] += g;
        }
    }
}

/// The gradient of sum pooling: each window's `dy` added, in window order, to every element
/// of the window.
///
/// # Panics
/// If the slices do not hold `planes` planes.
pub fn sum_gradient(dy: &[f32], dx: &mut [f32], planes: usize, win: &Window) {
    let (p, q) = (win.plane(), win.pooled());
    assert!(dy.len() >= planes * q);
    dx[..planes * p].fill(0.0);
    for (gp, dxp) in dy.chunks_exact(q).zip(dx.chunks_exact_mut(p)).take(planes) {
        for (&g, at) in gp.iter().zip(win.starts()) {
            for row in win.rows(at) {
                for d in &mut dxp[row] {
                    *d += g;
                }
            }
        }
    }
}
