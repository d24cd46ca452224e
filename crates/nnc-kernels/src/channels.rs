//! A stride-1 convolution's forward product and filter gradient with the output channels in
//! the lanes, sixteen at a time, each input value broadcast.
//!
//! The filter gradient, `dw[o][c][ki][kj] = Σ_b Σ_(i,j) dy[b][o][i][j] · x[b][c][i + ki][j + kj]`:
//! [`crate::direct::filter`] puts sixteen output *positions* in a vector instead; each of its
//! accumulators then sums a dozen positions per sample, and a short loop over a plane's few
//! vectors (LeNet-5's C3: 7) runs for every sample, tap row and output plane, with an
//! input load per product. Here one accumulator per tap runs down every position of every
//! sample in one loop, the output gradient is one load per position (transposed first,
//! [`transposed_gradient`]) and the input a broadcast. Measured on LeNet-5's C3 on a Zen 3
//! (AVX2), 16 samples on one thread: 258 µs from shifted copies in `direct`, 82–113 µs here
//! plus 9–17 µs to transpose (`time_c3`); in the training step, 0.88× the step time (`nnc
//! bench`, interleaved runs). It pays where the output channels fill the lanes at least as
//! well as the positions fill [`crate::direct`]'s vectors ([`suits`]): C3's 16 channels, not
//! C1's 6.
//!
//! Each accumulator adds its products in the same order (sample, row, column) whatever the
//! register tile, so the result does not depend on the vector unit.
//!
//! [`forward`] is the forward product the same way: a vector of output channels per output
//! position, a few positions of a row per tile, each filter tap one load of its channels
//! ([`transposed_filters`]) and one broadcast input per position. Each output adds its taps
//! in [`crate::direct::forward`]'s order (input plane, row, column; one rounding each), so
//! the two give the same bits.

use crate::direct::{Conv, MAX_FILTER_WIDTH};
use crate::simd::{self, F32x16, Isa, Kernel};
use crate::store::{Skip, Store, relu};

/// Floats per vector.
const LANES: usize = 16;

/// Whether [`forward`] and [`filter`] handle `g` (a plain forward geometry,
/// [`Conv::forward`]) and fill their lanes at least as well as [`crate::direct::filter`]
/// would in its layout ([`Conv::filter_layout`]).
pub fn suits(g: &Conv) -> bool {
    let (s, _) = g.filter_layout();
    let positions = g.oh * g.ow;
    // o / o_lanes ≥ positions / wide lanes, in integers.
    (1..=MAX_FILTER_WIDTH).contains(&g.kw)
        && g.ow <= MAX_ROW
        && g.o * s.stride() >= positions * lanes(g)
}

/// The output channels rounded up to whole vectors.
fn lanes(g: &Conv) -> usize {
    g.o.next_multiple_of(LANES)
}

/// Floats of one sample's output gradient as [`filter`] reads it ([`transposed_gradient`]).
pub fn gradient_floats(g: &Conv) -> usize {
    g.oh * g.ow * lanes(g)
}

/// One sample's output gradient `dy` (`o × oh × ow`) transposed to `oh·ow` positions of
/// `o` channels, each position's channels padded with zeros to whole vectors.
pub fn transposed_gradient(g: &Conv, dy: &[f32], out: &mut [f32]) {
    let (positions, per) = (g.oh * g.ow, lanes(g));
    for (p, row) in out[..positions * per].chunks_exact_mut(per).enumerate() {
        for (o, v) in row[..g.o].iter_mut().enumerate() {
            *v = dy[o * positions + p];
        }
        row[g.o..].fill(0.0);
    }
}

/// `dw[((o·c + ci)·kh + ki)·kw + kj] = Σ_b Σ_(i,j) dy[b][(i·ow + j)·o_lanes + o] ·
/// x[b][ci·plane + (i + ki)·w + j + kj]` over `samples` samples: inputs `c·plane` floats
/// apart, output gradients as [`transposed_gradient`] leaves them.
///
/// # Panics
/// If the slices are short, `g` is not a plain forward geometry with a filter at most
/// [`MAX_FILTER_WIDTH`] wide, or the CPU does not support `isa`.
pub fn filter(isa: Isa, g: &Conv, samples: usize, x: &[f32], dyt: &[f32], dw: &mut [f32]) {
    filter_tiled(isa, g, samples, (x, dyt), dw, false);
}

/// [`filter`], with AVX-512's tiles on any unit where `wide` (so that AVX2 machines test
/// them too).
fn filter_tiled(
    isa: Isa,
    g: &Conv,
    samples: usize,
    (x, dyt): (&[f32], &[f32]),
    dw: &mut [f32],
    wide: bool,
) {
    assert_plain(isa, g, samples, x);
    assert!(
        dyt.len() >= samples * gradient_floats(g),
        "gradient too short"
    );
    assert!(dw.len() >= g.o * g.taps(), "filter gradient too short");
    let k = Filter {
        g,
        samples,
        x,
        dyt,
        dw,
        wide,
    };
    // SAFETY: the unit is supported, and the slices are long enough (asserted); the kernel forms its pointers from these slices, borrowed for the call (what it writes
    // `&mut`), so no one else, on any thread, accesses what it writes meanwhile; the asserts
    // panic before any pointer is used.
    unsafe { simd::run(isa, k) };
}

/// What both kernels ask of their geometry and input: a supported unit, a plain layout
/// ([`Conv::forward`]'s) with a filter at most [`MAX_FILTER_WIDTH`] wide, `samples` inputs.
fn assert_plain(isa: Isa, g: &Conv, samples: usize, x: &[f32]) {
    assert!(isa.supported(), "vector kernels need {}", isa.name());
    assert!((1..=MAX_FILTER_WIDTH).contains(&g.kw), "filter too wide");
    assert!(
        g.kj_stride == 1 && g.ow + g.kw - 1 <= g.w,
        "not a plain layout"
    );
    assert!((g.oh + g.kh - 1) * g.w <= g.plane, "planes too small");
    assert!(x.len() >= samples * g.c * g.plane, "input too short");
}

/// [`filter`]'s arguments, for [`simd::run`].
struct Filter<'a> {
    g: &'a Conv,
    samples: usize,
    x: &'a [f32],
    dyt: &'a [f32],
    dw: &'a mut [f32],
    wide: bool,
}

impl Kernel for Filter<'_> {
    type Output = ();

    /// Tiles of a row of taps (AVX2: `kw` accumulators of two registers, up to 10 of its 16)
    /// or of two rows (AVX-512: up to 10 of its 32, enough independent sums to keep both FMA
    /// units busy).
    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let rows = if simd::wide_tiles::<V>(self.wide) {
            2
        } else {
            1
        };
        // SAFETY (all calls): forwarded.
        unsafe {
            match (self.g.kw, rows) {
                (1, 1) => self.tiles::<V, 1, 1>(),
                (2, 1) => self.tiles::<V, 2, 1>(),
                (3, 1) => self.tiles::<V, 3, 1>(),
                (4, 1) => self.tiles::<V, 4, 1>(),
                (_, 1) => self.tiles::<V, 5, 1>(),
                (1, _) => self.tiles::<V, 1, 2>(),
                (2, _) => self.tiles::<V, 2, 2>(),
                (3, _) => self.tiles::<V, 3, 2>(),
                (4, _) => self.tiles::<V, 4, 2>(),
                _ => self.tiles::<V, 5, 2>(),
            }
        }
    }
}

impl Filter<'_> {
    /// Every tile: vectors of output channels × input planes × tap rows, `KI` rows at a time
    /// (one for a last odd row).
    #[inline(always)]
    unsafe fn tiles<V: F32x16, const KW: usize, const KI: usize>(self) {
        let Filter {
            g,
            samples,
            x,
            dyt,
            dw,
            ..
        } = self;
        for ov in (0..g.o).step_by(LANES) {
            for c in 0..g.c {
                let mut ki = 0;
                // SAFETY (both calls): forwarded; rows `ki..ki + KI` are filter rows.
                while ki + KI <= g.kh {
                    unsafe { tile::<V, KW, KI>(g, samples, (x, dyt), dw, (ov, c, ki)) };
                    ki += KI;
                }
                while ki < g.kh {
                    unsafe { tile::<V, KW, 1>(g, samples, (x, dyt), dw, (ov, c, ki)) };
                    ki += 1;
                }
            }
        }
    }
}

/// The taps of filter rows `ki0..ki0 + KI` of input plane `c` for output channels
/// `ov..ov + 16`, summed over every sample and position in registers.
#[inline(always)]
unsafe fn tile<V: F32x16, const KW: usize, const KI: usize>(
    g: &Conv,
    samples: usize,
    (x, dyt): (&[f32], &[f32]),
    dw: &mut [f32],
    (ov, c, ki0): (usize, usize, usize),
) {
    let per = lanes(g);
    let (sample_x, sample_dy) = (g.c * g.plane, gradient_floats(g));
    // SAFETY (throughout): the CPU has `V`'s unit (the caller's contract).
    let mut acc = [[unsafe { V::zero() }; KW]; KI];
    for b in 0..samples {
        for i in 0..g.oh {
            // Row `i` of the output gradient and row `i + ki0` of plane `c`.
            let d = dyt[b * sample_dy + i * g.ow * per + ov..].as_ptr();
            let xr = x[b * sample_x + c * g.plane + (i + ki0) * g.w..].as_ptr();
            for j in 0..g.ow {
                // SAFETY: position `(i, j)`'s channels `ov..ov + 16` lie in `dyt` (whole
                // vectors per position); the taps read `x` at rows `i + ki0 + r < oh + kh − 1`
                // and columns `j + kj < ow + kw − 1 ≤ w` of plane `c` (asserted by `filter`).
                let dv = unsafe { V::load(d.add(j * per)) };
                // (Loops, not closures: see `simd`.)
                for (r, acc) in acc.iter_mut().enumerate() {
                    for (kj, a) in acc.iter_mut().enumerate() {
                        let xv = unsafe { V::splat(*xr.add(r * g.w + j + kj)) };
                        *a = unsafe { dv.mul_add(xv, *a) };
                    }
                }
            }
        }
    }
    let mut out = [0.0f32; LANES];
    for (r, acc) in acc.iter().enumerate() {
        for (kj, a) in acc.iter().enumerate() {
            // SAFETY: `out` holds sixteen floats.
            unsafe { a.store(out.as_mut_ptr()) };
            for (l, &v) in out.iter().enumerate().take(g.o - ov) {
                dw[(((ov + l) * g.c + c) * g.kh + ki0 + r) * g.kw + kj] = v;
            }
        }
    }
}

/// The widest output row [`forward`] handles (a row's outputs are staged on the stack).
pub const MAX_ROW: usize = 128;

/// Floats of [`transposed_filters`]' output.
pub fn filter_floats(g: &Conv) -> usize {
    g.taps() * lanes(g)
}

/// The filters `w` (`o × taps`) transposed to `taps` vectors of `o` channels, padded with
/// zeros to whole vectors, as [`forward`] reads them.
pub fn transposed_filters(g: &Conv, w: &[f32], out: &mut [f32]) {
    let (taps, per) = (g.taps(), lanes(g));
    for (tap, row) in out[..taps * per].chunks_exact_mut(per).enumerate() {
        for (o, v) in row[..g.o].iter_mut().enumerate() {
            *v = w[o * taps + tap];
        }
        row[g.o..].fill(0.0);
    }
}

/// `y[b][o][i][j] = Σ_{c,ki,kj} w[o][c][ki][kj] · x[b][c·plane + (i + ki)·w + j + kj]` for
/// `samples` samples (inputs `c·plane` floats apart, outputs `o·oh·ow`), with the filters as
/// [`transposed_filters`] leaves them, stored through `store`: plain, or with a bias,
/// `relu(y + bias[o])`, as [`crate::direct::forward`] computes both, or with a residual
/// branch, `relu((y + bias[o]) + skip)`, as [`crate::gemm_conv::forward`].
///
/// # Panics
/// As [`filter`].
pub fn forward(
    isa: Isa,
    g: &Conv,
    samples: usize,
    x: &[f32],
    wt: &[f32],
    store: Store<'_>,
    y: &mut [f32],
) {
    forward_tiled(isa, g, samples, (x, wt, store), y, false);
}

/// [`forward`], with AVX-512's tiles on any unit where `wide`.
fn forward_tiled(
    isa: Isa,
    g: &Conv,
    samples: usize,
    (x, wt, store): (&[f32], &[f32], Store<'_>),
    y: &mut [f32],
    wide: bool,
) {
    assert_plain(isa, g, samples, x);
    assert!(wt.len() >= filter_floats(g), "weights too short");
    let bias = match store {
        Store::Plain => None,
        Store::BiasRelu(b) | Store::BiasResidualRelu(b, _) => Some(b),
    };
    assert!(bias.is_none_or(|b| b.len() >= g.o), "bias too short");
    let sample_y = g.o * g.oh * g.ow;
    assert!(
        !matches!(store, Store::BiasResidualRelu(_, Skip::Operand(s)) if s.len() < samples * sample_y),
        "residual branch too short"
    );
    assert!(y.len() >= samples * g.o * g.oh * g.ow, "output too short");
    assert!(g.ow <= MAX_ROW, "rows too wide");
    let k = Forward {
        g,
        samples,
        x,
        wt,
        store,
        y,
        wide,
    };
    // SAFETY: the unit is supported, and the slices are long enough (asserted); the kernel forms its pointers from these slices, borrowed for the call (what it writes
    // `&mut`), so no one else, on any thread, accesses what it writes meanwhile; the asserts
    // panic before any pointer is used.
    unsafe { simd::run(isa, k) };
}

/// [`forward`]'s arguments, for [`simd::run`].
struct Forward<'a> {
    g: &'a Conv,
    samples: usize,
    x: &'a [f32],
    wt: &'a [f32],
    store: Store<'a>,
    y: &'a mut [f32],
    wide: bool,
}

impl Kernel for Forward<'_> {
    type Output = ();

    /// Tiles of up to 6 positions on AVX2 (12 of its 16 registers accumulate, two hold the
    /// tap's channels, one the broadcast) or 12 on AVX-512, a row's positions split evenly.
    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let Forward {
            g,
            samples,
            x,
            wt,
            store,
            y,
            wide,
        } = self;
        let most = if simd::wide_tiles::<V>(wide) { 12 } else { 6 };
        let tiles = g.ow.div_ceil(most);
        let width = g.ow.div_ceil(tiles);
        let (sample_x, sample_y) = (g.c * g.plane, g.o * g.oh * g.ow);
        // One output row, a vector of channels per position: the tiles store whole vectors
        // here, and `store_row` transposes them into the planes with the bias and ReLU.
        // (Scattering each vector's lanes from the tile cost as much as the products, C3:
        // 69 → 122 µs, its loads waiting on the wide store just made.)
        let mut stage = [0.0f32; MAX_ROW * LANES];
        for b in 0..samples {
            let (x, y) = (&x[b * sample_x..], &mut y[b * sample_y..][..sample_y]);
            // The residual branch's planes of this sample.
            let store = match store {
                Store::BiasResidualRelu(bias, Skip::Operand(skip)) => {
                    Store::BiasResidualRelu(bias, Skip::Operand(&skip[b * sample_y..]))
                }
                other => other,
            };
            for ov in (0..g.o).step_by(LANES) {
                for i in 0..g.oh {
                    for j in (0..g.ow).step_by(width) {
                        let at = Row { g, x, wt, ov, i, j };
                        let out = &mut stage[j * LANES..];
                        // SAFETY (all calls): forwarded; positions `j..j + n` lie in row `i`,
                        // and the CPU has `V`'s unit.
                        unsafe {
                            match (g.ow - j).min(width) {
                                1 => at.apart::<V, 1>(out),
                                2 => at.apart::<V, 2>(out),
                                3 => at.apart::<V, 3>(out),
                                4 => at.apart::<V, 4>(out),
                                5 => at.apart::<V, 5>(out),
                                6 => at.apart::<V, 6>(out),
                                7 => at.apart::<V, 7>(out),
                                8 => at.apart::<V, 8>(out),
                                9 => at.apart::<V, 9>(out),
                                10 => at.apart::<V, 10>(out),
                                11 => at.apart::<V, 11>(out),
                                _ => at.apart::<V, 12>(out),
                            }
                        }
                    }
                    store_row(g, &stage[..g.ow * LANES], store, (ov, i), y);
                }
            }
        }
    }
}

/// Row `i` of output planes `ov..` of one sample's `y` from `staged`, a vector of channels
/// per position, through `store` (one rounding for each sum, in the loops' order; the
/// interpreter's `relu`), its residual branch that sample's planes.
fn store_row(g: &Conv, staged: &[f32], store: Store<'_>, (ov, i): (usize, usize), y: &mut [f32]) {
    let plane = g.oh * g.ow;
    for l in 0..(g.o - ov).min(LANES) {
        let at = (ov + l) * plane + i * g.ow;
        let row = &mut y[at..][..g.ow];
        let lanes = staged.chunks_exact(LANES);
        match store {
            Store::Plain => {
                for (v, s) in row.iter_mut().zip(lanes) {
                    *v = s[l];
                }
            }
            Store::BiasRelu(bias) => {
                for (v, s) in row.iter_mut().zip(lanes) {
                    *v = relu(s[l] + bias[ov + l]);
                }
            }
            Store::BiasResidualRelu(bias, Skip::Operand(skip)) => {
                let skip = &skip[at..][..g.ow];
                for ((v, s), &r) in row.iter_mut().zip(lanes).zip(skip) {
                    *v = relu((s[l] + bias[ov + l]) + r);
                }
            }
            Store::BiasResidualRelu(bias, Skip::InPlace) => {
                for (v, s) in row.iter_mut().zip(lanes) {
                    *v = relu((s[l] + bias[ov + l]) + *v);
                }
            }
        }
    }
}

/// One sample's output positions `(i, j..)` for channels `ov..ov + 16`.
#[derive(Clone, Copy)]
struct Row<'a> {
    g: &'a Conv,
    x: &'a [f32],
    wt: &'a [f32],
    ov: usize,
    i: usize,
    j: usize,
}

/// [`Row::tile`] of `P` positions, for [`simd::run_apart`].
struct Tile<'a, const P: usize> {
    at: Row<'a>,
    out: &'a mut [f32],
}

impl<const P: usize> Kernel for Tile<'_, P> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        // SAFETY: forwarded.
        unsafe { self.at.tile::<V, P>(self.out) }
    }
}

impl Row<'_> {
    /// [`Row::tile`] in a function of its own ([`simd::run_apart`]), so that its
    /// accumulators get the registers.
    ///
    /// # Safety
    /// As [`Row::tile`].
    #[inline(always)]
    unsafe fn apart<V: F32x16, const P: usize>(self, out: &mut [f32]) {
        // SAFETY: forwarded; the CPU has `V`'s unit.
        unsafe { simd::run_apart(V::ISA, Tile::<P> { at: self, out }) }
    }

    /// Positions `j..j + P` of row `i`, accumulated over every tap in registers, stored to
    /// `out` a vector of channels per position (`out[t·16 + l]`: channel `ov + l`).
    ///
    /// # Safety
    /// The CPU has `V`'s unit; the positions lie in row `i`.
    #[inline(always)]
    unsafe fn tile<V: F32x16, const P: usize>(self, out: &mut [f32]) {
        let Row { g, x, wt, ov, i, j } = self;
        let per = lanes(g);
        // SAFETY (throughout): the CPU has `V`'s unit (the caller's contract).
        let mut acc = [unsafe { V::zero() }; P];
        let (x, wt) = (x.as_ptr(), wt.as_ptr());
        for c in 0..g.c {
            for ki in 0..g.kh {
                // SAFETY: row `i + ki < oh + kh − 1` of plane `c` lies in the sample's input,
                // and the taps read its columns `j + t + kj < ow + kw − 1 ≤ w`; the tap's
                // channels `ov..ov + 16` lie in `wt` (whole vectors per tap).
                let xr = unsafe { x.add(c * g.plane + (i + ki) * g.w + j) };
                let wr = unsafe { wt.add((c * g.kh + ki) * g.kw * per + ov) };
                for kj in 0..g.kw {
                    let wv = unsafe { V::load(wr.add(kj * per)) };
                    // (Loops, not closures: see `simd`.)
                    for (t, a) in acc.iter_mut().enumerate() {
                        *a = unsafe { wv.mul_add(V::splat(*xr.add(kj + t)), *a) };
                    }
                }
            }
        }
        assert!(out.len() >= P * LANES);
        for (t, &a) in acc.iter().enumerate() {
            // SAFETY: `out` holds `P` vectors (asserted).
            unsafe { a.store(out.as_mut_ptr().add(t * LANES)) };
        }
    }
}

/// Times C3's forward and filter gradient, channels in lanes, on one thread, printing the best of
/// 50 runs (`cargo bench -p nnc-kernels --bench kernels`).
#[doc(hidden)]
pub fn time_c3(isa: Isa) {
    let samples = 16;
    let g = Conv::forward(6, 14, 14, 16, 5, 5);
    let x = vec![0.5f32; samples * g.c * g.plane];
    let dy = vec![0.1f32; samples * g.o * g.oh * g.ow];
    let per = gradient_floats(&g);
    let mut dyt = vec![0.0f32; samples * per];
    let mut dw = vec![0.0f32; g.o * g.taps()];
    let mut best = [f64::MAX; 2];
    for _ in 0..50 {
        let t = std::time::Instant::now();
        for (b, out) in dyt.chunks_exact_mut(per).enumerate() {
            transposed_gradient(&g, &dy[b * g.o * g.oh * g.ow..], out);
        }
        best[0] = best[0].min(t.elapsed().as_secs_f64() * 1e6);
        let t = std::time::Instant::now();
        filter(isa, &g, samples, &x, &dyt, &mut dw);
        best[1] = best[1].min(t.elapsed().as_secs_f64() * 1e6);
    }
    let w = vec![0.1f32; g.o_pad() * g.taps()];
    let mut wt = vec![0.0f32; filter_floats(&g)];
    let mut y = vec![0.0f32; samples * g.o * g.oh * g.ow];
    let mut fwd = f64::MAX;
    for _ in 0..50 {
        let t = std::time::Instant::now();
        transposed_filters(&g, &w, &mut wt);
        forward(isa, &g, samples, &x, &wt, Store::BiasRelu(&w[..16]), &mut y);
        fwd = fwd.min(t.elapsed().as_secs_f64() * 1e6);
    }
    println!("c3 forward, channels in lanes: {fwd:.1} µs ({samples} samples, one thread)");
    println!(
        "c3 filter gradient, channels in lanes: transpose {:.1} µs, filter {:.1} µs \
         ({samples} samples, one thread)",
        best[0], best[1]
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{filter_gradient, values};

    /// (c, h, w, o, kh, kw): LeNet-5's C3, and shapes with more than one vector of channels,
    /// a part of one, odd tap rows and every filter width.
    const SHAPES: [(usize, usize, usize, usize, usize, usize); 6] = [
        (6, 14, 14, 16, 5, 5),
        (2, 6, 7, 20, 3, 3),
        (3, 5, 5, 16, 2, 1),
        (1, 8, 9, 32, 4, 2),
        (2, 4, 6, 17, 1, 4),
        (4, 3, 4, 48, 2, 3),
    ];

    #[test]
    fn the_rule_picks_c3_not_c1() {
        assert!(suits(&Conv::forward(6, 14, 14, 16, 5, 5)));
        assert!(!suits(&Conv::forward(1, 32, 32, 6, 5, 5)));
        assert!(!suits(&Conv::forward(6, 14, 14, 16, 5, 7)), "too wide");
    }

    #[test]
    fn filter_gradient_matches_the_definition_on_every_unit() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (k, &(c, h, wd, o, kh, kw)) in SHAPES.iter().enumerate() {
            let g = Conv::forward(c, h, wd, o, kh, kw);
            let samples = 3;
            let x = values(samples * c * h * wd, k as u64);
            let dy = values(samples * o * g.oh * g.ow, 100 + k as u64);
            let per = gradient_floats(&g);
            let mut dyt = vec![f32::NAN; samples * per];
            for (b, out) in dyt.chunks_exact_mut(per).enumerate() {
                transposed_gradient(&g, &dy[b * o * g.oh * g.ow..][..o * g.oh * g.ow], out);
            }
            let mut first: Option<Vec<f32>> = None;
            // Each unit with its own tiles, and with AVX-512's.
            let runs = crate::testing::vector_units(
                "channels::filter_gradient_matches_the_definition_on_every_unit",
            )
            .into_iter()
            .flat_map(|isa| [(isa, false), (isa, true)]);
            for (isa, wide) in runs {
                let mut dw = vec![f32::NAN; o * g.taps()];
                filter_tiled(isa, &g, samples, (&x, &dyt), &mut dw, wide);
                let want = filter_gradient(&x, &dy, SHAPES[k], samples);
                for (i, (&got, &want)) in dw.iter().zip(&want).enumerate() {
                    assert!(
                        (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{:?} on {isa:?} wide {wide}: dw[{i}] {got} vs {want}",
                        SHAPES[k]
                    );
                }
                // The same bits on every unit, whatever its tile.
                match &first {
                    Some(f) => {
                        assert_eq!(bits(f), bits(&dw), "{:?} on {isa:?} wide {wide}", SHAPES[k])
                    }
                    None => first = Some(dw),
                }
            }
        }
    }

    #[test]
    fn forward_gives_the_bits_of_direct_forward() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // And a row wider than one tile on either unit, and rows of 7, 9, 11 and 12.
        let more = [
            (2, 9, 30, 20, 3, 3),
            (2, 4, 9, 16, 2, 3),
            (1, 3, 11, 16, 1, 3),
            (1, 4, 13, 17, 2, 3),
            (1, 3, 14, 16, 1, 3),
        ];
        let shapes = SHAPES.iter().chain(&more);
        for (k, &(c, h, wd, o, kh, kw)) in shapes.enumerate() {
            let g = Conv::forward(c, h, wd, o, kh, kw);
            let samples = 3;
            let x = values(samples * c * h * wd, 300 + k as u64);
            let w = values(g.o_pad() * g.taps(), 400 + k as u64);
            let bias = values(o, 500 + k as u64);
            let mut wt = vec![f32::NAN; filter_floats(&g)];
            transposed_filters(&g, &w, &mut wt);
            let runs =
                crate::testing::vector_units("channels::forward_gives_the_bits_of_direct_forward")
                    .into_iter()
                    .flat_map(|isa| [(isa, false), (isa, true)]);
            let out = samples * o * g.oh * g.ow;
            let skip = values(out, 600 + k as u64);
            for (isa, wide) in runs {
                for bias in [None, Some(&bias[..])] {
                    let store = bias.map_or(Store::Plain, Store::BiasRelu);
                    let (mut got, mut want) = (vec![f32::NAN; out], vec![f32::NAN; out]);
                    forward_tiled(isa, &g, samples, (&x, &wt, store), &mut got, wide);
                    crate::direct::forward(isa, &g, samples, &x, &w, bias, &mut want);
                    assert!(want.iter().all(|v| v.is_finite()));
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{:?} on {isa:?} wide {wide}",
                        (c, h, wd, o)
                    );
                }
                // A residual branch, its own tensor or the output's buffer: the plain product
                // with `(y + b) + skip` and relu after it, in that order.
                let mut plain = vec![f32::NAN; out];
                crate::direct::forward(isa, &g, samples, &x, &w, None, &mut plain);
                let positions = g.oh * g.ow;
                let want: Vec<f32> = (0..out)
                    .map(|e| relu((plain[e] + bias[e / positions % o]) + skip[e]))
                    .collect();
                let mut got = vec![f32::NAN; out];
                let store = Store::BiasResidualRelu(&bias, Skip::Operand(&skip));
                forward_tiled(isa, &g, samples, (&x, &wt, store), &mut got, wide);
                assert_eq!(bits(&got), bits(&want), "operand on {isa:?} wide {wide}");
                let mut got = skip.clone();
                let store = Store::BiasResidualRelu(&bias, Skip::InPlace);
                forward_tiled(isa, &g, samples, (&x, &wt, store), &mut got, wide);
                assert_eq!(bits(&got), bits(&want), "in place on {isa:?} wide {wide}");
            }
        }
    }
}
