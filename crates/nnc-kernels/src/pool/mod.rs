//! Max and sum pooling and their gradients, over the last two axes (planes `h × w`), for any
//! window and stride, each computing exactly what the reference interpreter computes.
//!
//! - [`scalar`]: the definition, window by window (the portable path, planes too big for the
//!   vector kernels' scratch, and the tests' reference);
//! - `planes`: any window and stride, sixteen planes per vector: a group of planes is transposed
//!   into the scratch so that lane `k` holds plane `k`, every lane then runs the definition's
//!   loops exactly (the same comparisons and additions in the same order), and the result is
//!   transposed back;
//! - [`pairs`]: 2×2 windows at stride 2, sixteen windows of a row per vector, where rows have
//!   enough windows to fill the lanes, and the fused gradient of `conv → relu → maxpool`.
//!
//! The maximum of a window is its first element that no later one exceeds (`v > acc`, false
//! on NaN): the first element when it is NaN, else the largest of the others, ±0 equal (the
//! first one counts). The max gradient goes to that element. Sums add the window in row-major
//! order from +0, gradients each window's share in window order, also from +0.

pub mod pairs;
mod planes;
pub mod scalar;

use crate::simd::Isa;

/// The geometry of a pooling: planes `h × w`, windows `kh × kw` at strides `sh`, `sw`, which
/// tile the planes as the IR requires (`oh = (h − kh)/sh + 1` windows down, `ow` across).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Window {
    /// Windows `size` at `stride` over planes `h × w`.
    ///
    /// # Panics
    /// If a window or stride is 0, or a window is larger than the plane (the IR's checks
    /// rule both out).
    pub fn new([h, w]: [usize; 2], size: [usize; 2], stride: [usize; 2]) -> Window {
        let [kh, kw] = size;
        let [sh, sw] = stride;
        assert!(kh > 0 && kw > 0 && sh > 0 && sw > 0 && kh <= h && kw <= w);
        Window {
            h,
            w,
            kh,
            kw,
            sh,
            sw,
            oh: (h - kh) / sh + 1,
            ow: (w - kw) / sw + 1,
        }
    }

    /// Floats in an input plane.
    pub fn plane(&self) -> usize {
        self.h * self.w
    }

    /// Floats in a pooled plane.
    pub fn pooled(&self) -> usize {
        self.oh * self.ow
    }

    /// Each window's first element in its plane, in window order (row-major over the pooled
    /// plane, so the `k`-th is pooled element `k`'s).
    pub fn starts(&self) -> impl Iterator<Item = usize> + use<> {
        let Window {
            w, sh, sw, oh, ow, ..
        } = *self;
        (0..oh).flat_map(move |i| (0..ow).map(move |j| i * sh * w + j * sw))
    }

    /// The rows of the window starting at `at`, as element ranges of its plane, top to bottom.
    pub fn rows(&self, at: usize) -> impl Iterator<Item = std::ops::Range<usize>> + use<> {
        let Window { w, kh, kw, .. } = *self;
        (0..kh).map(move |ki| at + ki * w..at + ki * w + kw)
    }
}

/// The largest scratch a part takes, in floats: bigger planes run on [`scalar`] (sixteen
/// planes of 90 × 90 fit; MNIST-sized models' planes are far smaller).
const MAX_SCRATCH: usize = 1 << 18;

/// The scratch floats a part needs to run a pooling (`gradient`: its gradient) on the vector
/// unit, or 0 where it would run on [`scalar`].
pub fn scratch_floats(win: &Window, gradient: bool) -> usize {
    let floats = planes::scratch_floats(win, gradient);
    if floats <= MAX_SCRATCH { floats } else { 0 }
}

/// Whether pooling runs on [`pairs`] (rows of windows in the lanes) rather than `planes`:
/// 2×2 windows at stride 2, where it is faster even with six windows a row (measured with
/// [`time_shapes`]: max pooling on 12 × 12 planes 1.2×, 28 × 28 2.2–2.7× faster), since it
/// needs no transposes.
fn pairs_suit(win: &Window) -> bool {
    (win.kh, win.kw, win.sh, win.sw) == (2, 2, 2, 2)
}

/// Max (or sum) pooling of `planes` planes: `y[l][i][j]` is the maximum (sum) of the window
/// at `(i·sh, j·sw)` of plane `l`. On `isa` when there is one and `scratch` holds
/// [`scratch_floats`] (else on [`scalar`]).
///
/// # Panics
/// If the slices do not hold `planes` planes.
pub fn forward(
    isa: Option<Isa>,
    max: bool,
    x: &[f32],
    y: &mut [f32],
    planes: usize,
    win: &Window,
    scratch: &mut [f32],
) {
    match isa {
        Some(isa) if pairs_suit(win) => pairs::forward(isa, max, x, y, planes, win.h, win.w),
        Some(isa) if fits(win, false, scratch) => {
            planes::forward(isa, max, x, y, planes, win, scratch)
        }
        _ => scalar::forward(max, x, y, planes, win),
    }
}

/// The gradient of max pooling: `dx` gets each window's `dy` at the window's maximum in `x`
/// (added in window order from +0), +0 where no window's maximum is. Runs as [`forward`] does.
///
/// # Panics
/// If the slices do not hold `planes` planes.
#[allow(clippy::too_many_arguments)]
pub fn max_gradient(
    isa: Option<Isa>,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    planes: usize,
    win: &Window,
    scratch: &mut [f32],
) {
    match isa {
        Some(isa) if pairs_suit(win) => pairs::backward(isa, x, dy, dx, planes, win.h, win.w),
        Some(isa) if fits(win, true, scratch) => {
            planes::max_gradient(isa, x, dy, dx, planes, win, scratch)
        }
        _ => scalar::max_gradient(x, dy, dx, planes, win),
    }
}

/// [`max_gradient`] masked by the pooled activation's ReLU, as the backward pass of
/// `maxpool(relu(z + b))` computes it: `dz = dx · step(x)` (`x`: the pool's input, the
/// ReLU's output), and `sums[c] = Σ dz` over the planes of channel `c` (the bias gradient),
/// where plane `l` of the slices is plane `first + l` of `[N, channels, h, w]` tensors. `dz`
/// has the bits of the two passes; the sums add the same terms in another order. On
/// [`pairs`] for 2×2 windows at stride 2, else on sixteen planes per vector (`scratch`:
/// [`scratch_floats`] of a gradient).
///
/// # Panics
/// If the slices do not hold `planes` planes, `sums` fewer than `channels` floats, the CPU
/// lacks `isa`, or neither vector path takes the window ([`masked_applies`]).
#[allow(clippy::too_many_arguments)]
pub fn max_gradient_masked(
    isa: Isa,
    x: &[f32],
    dy: &[f32],
    dz: &mut [f32],
    sums: &mut [f32],
    [first, planes, channels]: [usize; 3],
    win: &Window,
    scratch: &mut [f32],
) {
    if pairs_suit(win) {
        let at = [first, planes, channels];
        return pairs::backward_masked(isa, x, dy, dz, sums, at, win.h, win.w);
    }
    assert!(fits(win, true, scratch), "no vector path for this window");
    assert!(channels > 0 && sums.len() >= channels, "sums too short");
    sums[..channels].fill(0.0);
    let masked = (sums, first, channels);
    planes::max_gradient_masked(isa, x, dy, dz, masked, planes, win, scratch);
}

/// Whether [`max_gradient_masked`] takes this window (given the scratch it asks for).
pub fn masked_applies(win: &Window) -> bool {
    pairs_suit(win) || scratch_floats(win, true) > 0
}

/// The gradient of sum pooling: `dx` gets the `dy` of every window that holds it, added in
/// window order from +0. Runs as [`forward`] does.
///
/// # Panics
/// If the slices do not hold `planes` planes.
pub fn sum_gradient(
    isa: Option<Isa>,
    dy: &[f32],
    dx: &mut [f32],
    planes: usize,
    win: &Window,
    scratch: &mut [f32],
) {
    match isa {
        Some(isa) if pairs_suit(win) => pairs::spread(isa, dy, dx, planes, win.h, win.w),
        Some(isa) if fits(win, true, scratch) => {
            planes::sum_gradient(isa, dy, dx, planes, win, scratch)
        }
        _ => scalar::sum_gradient(dy, dx, planes, win),
    }
}

/// Whether `scratch` holds what the vector kernels need (none when the planes are too big).
fn fits(win: &Window, gradient: bool, scratch: &[f32]) -> bool {
    let floats = scratch_floats(win, gradient);
    floats > 0 && scratch.len() >= floats
}

/// Times each path on a few geometries (half a batch's planes: one thread's part), printing
/// the best of 20 runs (`cargo bench -p nnc-kernels --bench kernels pool`).
#[doc(hidden)]
pub fn time_shapes(isa: Isa) {
    let shapes = [
        (4096, [13, 13], [3, 3], [2, 2]),
        (4096, [14, 14], [3, 3], [2, 2]),
        // Planes that do not stay in cache (51 MB).
        (65536, [14, 14], [3, 3], [2, 2]),
        (512, [28, 27], [2, 3], [2, 3]),
        (1024, [28, 28], [2, 2], [2, 2]),
        (2048, [12, 12], [2, 2], [2, 2]),
        (96, [24, 24], [3, 3], [3, 3]),
    ];
    for (planes, plane, size, stride) in shapes {
        let win = Window::new(plane, size, stride);
        let (p, q) = (win.plane(), win.pooled());
        let x: Vec<f32> = (0..planes * p).map(|i| (i as f32 * 0.37).sin()).collect();
        let dy: Vec<f32> = (0..planes * q).map(|i| (i as f32 * 0.11).cos()).collect();
        let (mut y, mut dx) = (vec![0.0; planes * q], vec![0.0; planes * p]);
        let mut scratch = vec![0.0; planes::scratch_floats(&win, true)];
        let best = |run: &mut dyn FnMut()| {
            (0..20)
                .map(|_| {
                    let t = std::time::Instant::now();
                    run();
                    t.elapsed().as_secs_f64() * 1e6
                })
                .fold(f64::MAX, f64::min)
        };
        let pairs = pairs_suit(&win);
        let paths: [(&str, Option<Isa>); 3] = [
            ("scalar", None),
            ("planes", Some(isa)),
            ("pairs", pairs.then_some(isa)),
        ];
        for (name, unit) in paths {
            if name == "pairs" && unit.is_none() {
                continue;
            }
            let times = [
                best(&mut || match (name, unit) {
                    ("planes", Some(i)) => {
                        planes::forward(i, true, &x, &mut y, planes, &win, &mut scratch)
                    }
                    ("pairs", Some(i)) => pairs::forward(i, true, &x, &mut y, planes, win.h, win.w),
                    _ => scalar::forward(true, &x, &mut y, planes, &win),
                }),
                best(&mut || match (name, unit) {
                    ("planes", Some(i)) => {
                        planes::max_gradient(i, &x, &dy, &mut dx, planes, &win, &mut scratch)
                    }
                    ("pairs", Some(i)) => {
                        pairs::backward(i, &x, &dy, &mut dx, planes, win.h, win.w)
                    }
                    _ => scalar::max_gradient(&x, &dy, &mut dx, planes, &win),
                }),
                best(&mut || match (name, unit) {
                    ("pairs", Some(i)) => pairs::spread(i, &dy, &mut dx, planes, win.h, win.w),
                    ("planes", Some(i)) => {
                        planes::sum_gradient(i, &dy, &mut dx, planes, &win, &mut scratch)
                    }
                    _ => scalar::sum_gradient(&dy, &mut dx, planes, &win),
                }),
            ];
            println!(
                "{planes} × {plane:?} by {size:?} at {stride:?}, {name}: maxpool {:.0} µs, \
                 maxpool_grad {:.0} µs, sumpool_grad {:.0} µs",
                times[0], times[1], times[2]
            );
        }
    }
}

#[cfg(test)]
mod tests;
