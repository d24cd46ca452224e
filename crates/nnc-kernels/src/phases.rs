//! A strided convolution's input gradient as stride-1 products, one per *phase*: the input
//! positions `(a + sh·I, b + sw·J)` of one remainder `(a, b)` receive only the taps `ki ≡
//! a + pad₀ (mod sh)`, `kj ≡ b + pad₁ (mod sw)`, and from output-gradient positions that move
//! by one as `I` and `J` do. So each phase is a stride-1 correlation of the output gradient
//! (zero-padded above and left) with its taps flipped and the channels exchanged, run on
//! [`crate::channels::forward`] (its input channels in the lanes), and its planes are then
//! spread into every `sh`-th row and `sw`-th column of the result. Every product is real: no
//! zeros inserted between the gradient's positions, no im2col columns scattered back.
//! ([`crate::samples`] computes the same gradient about 1.5× faster where a part has enough
//! samples to fill its lanes; this kernel is for the parts that do not.)
//!
//! Each input-gradient element sums its phase's taps in the channels kernel's order (output
//! channel, tap row, tap column), the same on every unit and for every split into parts.

use crate::channels::{self, Input};
use crate::direct::Conv;
use crate::samples::Geometry;
use crate::simd::Isa;
use crate::store::Store;

/// A strided input gradient ([`Geometry`]: the same one [`crate::samples`] takes) whose phases
/// this kernel runs; its sizes are the geometry's (`Deref`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phases(Geometry);

impl std::ops::Deref for Phases {
    type Target = Geometry;

    fn deref(&self) -> &Geometry {
        &self.0
    }
}

/// One phase along one axis: its positions `r + s·I` (`I < n`), taps `k0 + s·m` (`m <
/// taps`), read from the output gradient `lead` positions before `I` (its zero padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Axis {
    n: usize,
    taps: usize,
    k0: usize,
    lead: usize,
    /// Rows (or columns) of the padded output gradient the phase's product reads.
    padded: usize,
}

impl Phases {
    /// The phases of `g`, if every phase with positions reads the output gradient from zero
    /// padding or its first row (none starts inside it), and its rows fit
    /// [`channels::forward`]'s.
    pub fn of(g: Geometry) -> Option<Phases> {
        let (g, stride) = (Phases(g), g.stride);
        let axes_fit = (0..stride[0]).all(|a| g.axis(0, a).is_some())
            && (0..stride[1]).all(|b| g.axis(1, b).is_some());
        // Rows the channels kernel stages whole.
        let rows_fit = g
            .products()
            .all(|(_, p)| p.is_none_or(|(p, _)| p.ow() <= channels::MAX_ROW));
        (axes_fit && rows_fit).then_some(g)
    }

    /// Phase `r` along axis `d` (0: rows, 1: columns); `None` where it would start inside the
    /// output gradient.
    fn axis(&self, d: usize, r: usize) -> Option<Axis> {
        let (size, k, s, low, out) = match d {
            0 => (self.h, self.kh, self.stride[0], self.low[0], self.oh),
            _ => (self.w, self.kw, self.stride[1], self.low[1], self.ow),
        };
        let n = size.saturating_sub(r).div_ceil(s);
        let k0 = (r + low) % s;
        let taps = k.saturating_sub(k0).div_ceil(s);
        if n == 0 || taps == 0 {
            return Some(Axis {
                n,
                taps,
                k0,
                lead: 0,
                padded: 0,
            });
        }
        // Position `r + s·I` reads output position `I + (r + low − k0)/s − m` at tap `m`.
        let ahead = (r + low - k0) / s;
        let lead = (taps - 1).checked_sub(ahead)?;
        Some(Axis {
            n,
            taps,
            k0,
            lead,
            padded: (n + taps - 1).max(lead + out),
        })
    }

    /// The stride-1 product of phase `(a, b)`, over its padded output-gradient planes, or
    /// `None` when the phase has no positions or no taps (its positions are zero).
    fn product(&self, [a, b]: [usize; 2]) -> Option<(Conv, [Axis; 2])> {
        let (rows, cols) = (self.axis(0, a)?, self.axis(1, b)?);
        if rows.n == 0 || cols.n == 0 || rows.taps == 0 || cols.taps == 0 {
            return None;
        }
        let g = Conv::forward(
            self.o,
            rows.padded,
            cols.padded,
            self.c,
            rows.taps,
            cols.taps,
        );
        Some((g, [rows, cols]))
    }

    /// Every phase's product.
    fn products(&self) -> impl Iterator<Item = ([usize; 2], Option<(Conv, [Axis; 2])>)> + '_ {
        let [sh, sw] = self.stride;
        (0..sh * sw).map(move |p| {
            let at = [p / sw, p % sw];
            (at, self.product(at))
        })
    }

    /// Floats of the scratch [`input_gradient`] takes for `samples` samples: the largest
    /// phase's filters (as given and transposed), its padded planes and its result.
    pub fn scratch_floats(&self, samples: usize) -> usize {
        self.products()
            .filter_map(|(_, p)| p)
            .map(|(g, _)| {
                g.o() * g.taps()
                    + channels::filter_floats(&g)
                    + channels::padded_floats(&g, samples)
                    + samples * g.o() * g.oh() * g.ow()
            })
            .max()
            .unwrap_or(0)
    }

    /// Input channels (the lanes of each phase's product).
    pub fn c(&self) -> usize {
        self.c
    }

    /// Positions of an input-gradient plane.
    pub fn positions(&self) -> usize {
        self.h * self.w
    }

    /// Phases: the stride's rows times its columns.
    pub fn stride_area(&self) -> usize {
        self.stride[0] * self.stride[1]
    }

    /// Multiply-adds per sample: the forward product's, the taps that read padding included.
    pub fn macs(&self) -> usize {
        self.products()
            .filter_map(|(_, p)| p)
            .map(|(g, _)| g.o() * g.taps() * g.oh() * g.ow())
            .sum()
    }
}

/// `dx[b][ci][r][q] = Σ_o Σ_(ki, kj) w[o][ci][ki][kj] · dy[b][o][i][j]` over the output positions
/// `(i, j)` whose window reads input `(r, q)`, `r + low₀ = i·sh + ki` (likewise across), for
/// `samples` samples: output gradients `o·oh·ow` floats apart, results `c·h·w`.
///
/// # Panics
/// If a slice is shorter than the geometry needs, or the CPU does not support `isa`.
pub fn input_gradient(
    isa: Isa,
    g: &Phases,
    samples: usize,
    (dy, w): (&[f32], &[f32]),
    scratch: &mut [f32],
    dx: &mut [f32],
) {
    let sample_dy = g.o * g.oh * g.ow;
    let sample_dx = g.c * g.h * g.w;
    assert!(dy.len() >= samples * sample_dy, "output gradient too short");
    assert!(w.len() >= g.o * g.c * g.kh * g.kw, "filters too short");
    assert!(dx.len() >= samples * sample_dx, "input gradient too short");
    assert!(
        scratch.len() >= g.scratch_floats(samples),
        "scratch too short"
    );
    let [sh, sw] = g.stride;
    for ([a, b], product) in g.products() {
        let Some((p, [rows, cols])) = product else {
            // No tap reaches these positions (a filter narrower than the stride): zero.
            for plane in dx.chunks_exact_mut(g.h * g.w).take(samples * g.c) {
                for r in (a..g.h).step_by(sh) {
                    for q in (b..g.w).step_by(sw) {
                        plane[r * g.w + q] = 0.0;
                    }
                }
            }
            continue;
        };
        // The phase's filters `[c][o][m][n]`: taps `(k0 + s·m)` flipped, channels exchanged.
        let (taps, rest) = scratch.split_at_mut(p.o() * p.taps());
        for ci in 0..g.c {
            for o in 0..g.o {
                for m in 0..rows.taps {
                    for n in 0..cols.taps {
                        let ki = rows.k0 + sh * (rows.taps - 1 - m);
                        let kj = cols.k0 + sw * (cols.taps - 1 - n);
                        taps[((ci * g.o + o) * rows.taps + m) * cols.taps + n] =
                            w[((o * g.c + ci) * g.kh + ki) * g.kw + kj];
                    }
                }
            }
        }
        let (wt, rest) = rest.split_at_mut(channels::filter_floats(&p));
        channels::transposed_filters(&p, taps, wt);
        let (padded, result) = rest.split_at_mut(channels::padded_floats(&p, samples));
        let input = Input::Padded {
            x: dy,
            planes: [g.oh, g.ow],
            low: [rows.lead, cols.lead],
            scratch: padded,
        };
        let (ph, pw) = (p.oh(), p.ow());
        let result = &mut result[..samples * g.c * ph * pw];
        channels::forward(isa, &p, samples, input, wt, Store::Plain, result);
        // Spread the phase's planes into its rows and columns of the result.
        for (plane, out) in result
            .chunks_exact(ph * pw)
            .zip(dx.chunks_exact_mut(g.h * g.w))
        {
            for i in 0..rows.n {
                let from = &plane[i * pw..][..cols.n];
                let row = &mut out[(a + sh * i) * g.w..][..g.w];
                for (j, &v) in from.iter().enumerate() {
                    row[b + sw * j] = v;
                }
            }
        }
    }
}

/// Times the strided input gradients of resnet-mnist's and residual's stride-2 3×3
/// convolutions (`same`: no padding above and left) here, with the samples in the lanes
/// ([`crate::samples`]) and on [`crate::gemm_conv`], 32 samples on one thread, best of 20
/// runs.
#[doc(hidden)]
pub fn time_stride2(isa: Isa) {
    use crate::gemm_conv;
    let samples = 32;
    for (c, hw, o, ohw) in [(16, 28, 32, 14), (32, 14, 64, 7), (16, 14, 32, 7)] {
        let lanes =
            Geometry::new(c, [hw, hw], o, [ohw, ohw], [3, 3], [2, 2], [0, 0]).expect("a geometry");
        let g = Phases::of(lanes).expect("phases");
        let gg = gemm_conv::Geometry {
            c,
            h: hw,
            w: hw,
            o,
            kh: 3,
            kw: 3,
            stride: [2, 2],
            pad: [0, 0],
            oh: ohw,
            ow: ohw,
        };
        let dy = crate::testing::values(samples * o * ohw * ohw, 1);
        let w = crate::testing::values(o * c * 9, 2);
        let mut dx = vec![0.0f32; samples * c * hw * hw];
        let lanes =
            crate::samples::Geometry::new(c, [hw, hw], o, [ohw, ohw], [3, 3], [2, 2], [0, 0])
                .expect("a geometry");
        let floats = g.scratch_floats(samples).max(gg.scratch_floats(samples));
        let mut scratch = vec![0.0f32; floats.max(lanes.scratch_floats())];
        let (mut here, mut there, mut in_lanes) = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..20 {
            let t = std::time::Instant::now();
            input_gradient(isa, &g, samples, (&dy, &w), &mut scratch, &mut dx);
            here = here.min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            crate::samples::input_gradient(isa, &lanes, samples, (&dy, &w), &mut scratch, &mut dx);
            in_lanes = in_lanes.min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            gemm_conv::input_gradient(&gg, samples, &dy, &w, &mut dx, &mut scratch);
            there = there.min(t.elapsed().as_secs_f64());
        }
        let flops = 2.0 * (samples * o * c * 9 * ohw * ohw) as f64;
        println!(
            "[{o},{c},3,3] stride 2, {hw}x{hw} from {ohw}x{ohw} ({samples} samples, one thread, {}): \
             phases {:.1} µs, {:.1} GFLOP/s; samples in lanes {:.1} µs, {:.1} GFLOP/s; \
             im2col + gemm {:.1} µs, {:.1} GFLOP/s",
            isa.name(),
            here * 1e6,
            flops / here * 1e-9,
            in_lanes * 1e6,
            flops / in_lanes * 1e-9,
            there * 1e6,
            flops / there * 1e-9
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{values, vector_units};

    /// [`crate::testing::STRIDED`]'s shapes that the phases take (each phase reads the
    /// output gradient from its zero padding or its first row), and a cropped result (a
    /// folded slice's start as padding).
    #[test]
    fn is_the_input_gradient() {
        let mut ran = 0;
        for isa in vector_units("phases::is_the_input_gradient") {
            for shape in crate::testing::STRIDED {
                let (c, hw, o, ohw, k, stride, low) = shape;
                let g = Geometry::new(c, hw, o, ohw, k, stride, low).expect("a geometry");
                let Some(g) = Phases::of(g) else {
                    continue;
                };
                let samples = 3;
                let dy = values(samples * o * ohw[0] * ohw[1], 1);
                let w = values(o * c * k[0] * k[1], 2);
                let want = crate::testing::strided_input_gradient(&dy, &w, shape, samples);
                let mut scratch = vec![f32::NAN; g.scratch_floats(samples)];
                let mut dx = vec![f32::NAN; samples * c * hw[0] * hw[1]];
                input_gradient(isa, &g, samples, (&dy, &w), &mut scratch, &mut dx);
                let scale = (o * k[0] * k[1]) as f64;
                for (j, (&a, &b)) in dx.iter().zip(&want).enumerate() {
                    assert!(
                        (a as f64 - b).abs() <= 1e-5 * scale,
                        "{g:?} element {j}: {a} against {b}"
                    );
                }
                ran += 1;
            }
        }
        assert!(
            ran >= 7,
            "{ran} runs: no vector unit, or the phases took fewer of the shapes"
        );
    }
}
