//! Max pooling that keeps each window's choice, and its gradient from those choices.
//!
//! The gradient of max pooling goes to each window's first maximum, which
//! [`super::max_gradient`] finds again in the input `x`: for overlapping windows (3×3 at
//! stride 2, a ResNet stem's) that pass reads the whole pre-pool activation a second time.
//! The forward pass knows the choice: [`forward`] stores it, one byte per window (the
//! element's place in the window, and bit 7 set where the maximum is above 0: ReLU's step at
//! that element), and [`max_gradient`] and [`max_gradient_masked`] then read `dy` and the
//! choices only. Their gradients are [`super::max_gradient`]'s and
//! [`super::max_gradient_masked`]'s, bit for bit: the same element chosen (the definition's
//! fold: the first element, or a later one only where it is greater), each window's `dy`
//! added there in window order from +0, the mask multiplying as the loop it replaces does;
//! the masked gradient's per-channel sums add the same terms in another order.

use super::Window;

/// The most elements a window may have: its place in it is the choice's low 7 bits.
pub const MAX_WINDOW: usize = 127;

/// Bit 7 of a choice: the window's maximum is above 0.
pub const POSITIVE: u8 = 0x80;

/// Whether windows of this shape fit a choice.
pub fn applies(win: &Window) -> bool {
    win.kh * win.kw <= MAX_WINDOW
}

/// The choice of a window whose fold chose element `k` (row-major in the window) with
/// maximum `m`.
pub fn choice(k: usize, m: f32) -> u8 {
    debug_assert!(k <= MAX_WINDOW);
    k as u8 | if m > 0.0 { POSITIVE } else { 0 }
}

/// The element of `win`'s window starting at `at` that `choice` names, in its plane.
fn chosen(win: &Window, at: usize, choice: u8) -> usize {
    let k = usize::from(choice & !POSITIVE);
    at + (k / win.kw) * win.w + k % win.kw
}

/// Max pooling of `planes` planes `x` into `y`, as [`super::scalar::forward`] folds, each
/// window's choice into `choices` (one byte per pooled element).
///
/// # Panics
/// If the slices do not hold `planes` planes, or the windows do not fit a choice.
pub fn forward(x: &[f32], y: &mut [f32], choices: &mut [u8], planes: usize, win: &Window) {
    let (p, q) = (win.plane(), win.pooled());
    assert!(applies(win), "windows of more than {MAX_WINDOW} elements");
    assert!(x.len() >= planes * p && y.len() >= planes * q && choices.len() >= planes * q);
    let outputs = y.chunks_exact_mut(q).zip(choices.chunks_exact_mut(q));
    for (xp, (yp, cp)) in x.chunks_exact(p).zip(outputs).take(planes) {
        for ((out, c), at) in yp.iter_mut().zip(cp.iter_mut()).zip(win.starts()) {
            let (mut acc, mut best) = (xp[at], 0);
            for (k, e) in win.rows(at).flatten().enumerate() {
                if xp[e] > acc {
                    (acc, best) = (xp[e], k);
                }
            }
            *out = acc;
            *c = choice(best, acc);
        }
    }
}

/// The gradient of max pooling from the windows' `choices`: `dx` gets each window's `dy` at
/// its chosen element (added in window order from +0), +0 elsewhere.
///
/// # Panics
/// If the slices do not hold `planes` planes.
pub fn max_gradient(choices: &[u8], dy: &[f32], dx: &mut [f32], planes: usize, win: &Window) {
    let (p, q) = (win.plane(), win.pooled());
    assert!(choices.len() >= planes * q && dy.len() >= planes * q && dx.len() >= planes * p);
    let inputs = choices.chunks_exact(q).zip(dy.chunks_exact(q));
    for ((cp, gp), dxp) in inputs.zip(dx.chunks_exact_mut(p)).take(planes) {
        spread(win, cp, gp, dxp);
    }
}

/// [`max_gradient`] masked by the pooled activation's ReLU: `dz = dx · step(x)`, `step`
/// taken at each chosen element from its choice (+0 where no window chose an element, whose
/// `dx` is +0), and each plane's sum of `dz` added to `sums[(first + l) % channels]` for
/// plane `l`, as [`super::max_gradient_masked`] does (its caller zeroes the sums).
///
/// # Panics
/// If the slices do not hold `planes` planes, or `sums` fewer than `channels` floats.
pub fn max_gradient_masked(
    choices: &[u8],
    dy: &[f32],
    dz: &mut [f32],
    (sums, first, channels): (&mut [f32], usize, usize),
    planes: usize,
    win: &Window,
) {
    let (p, q) = (win.plane(), win.pooled());
    assert!(choices.len() >= planes * q && dy.len() >= planes * q && dz.len() >= planes * p);
    assert!(channels > 0 && sums.len() >= channels, "sums too short");
    let inputs = choices.chunks_exact(q).zip(dy.chunks_exact(q));
    for (l, ((cp, gp), dzp)) in inputs.zip(dz.chunks_exact_mut(p)).take(planes).enumerate() {
        spread(win, cp, gp, dzp);
        // `dx · 0` where the maximum is not above 0 (−0 for a negative `dx`, as the loop's
        // product gives); `dx · 1` is `dx`.
        for (&c, at) in cp.iter().zip(win.starts()) {
            if c & POSITIVE == 0 {
                dzp[chosen(win, at, c)] *= 0.0;
            }
        }
        sums[(first + l) % channels] += plane_sum(dzp);
    }
}

/// The sum of a plane: sixteen running sums over its positions (a vector's worth, which the
/// compiler keeps in one), then added pairwise. (One running sum, each addition waiting for
/// the last, took twice as long as the rest of the masked gradient.)
fn plane_sum(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (s, &x) in lanes.iter_mut().zip(chunk) {
            *s += x;
        }
    }
    for (s, &x) in lanes.iter_mut().zip(tail) {
        *s += x;
    }
    let mut n = 16;
    while n > 1 {
        n /= 2;
        for k in 0..n {
            lanes[k] += lanes[k + n];
        }
    }
    lanes[0]
}

/// One plane's gradient: +0, then each window's `dy` added at its chosen element in window
/// order.
fn spread(win: &Window, choices: &[u8], dy: &[f32], dx: &mut [f32]) {
    dx.fill(0.0);
    for ((&c, &g), at) in choices.iter().zip(dy).zip(win.starts()) {
        dx[chosen(win, at, c)] += g;
    }
}
