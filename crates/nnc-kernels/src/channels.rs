//! A convolution's forward product and filter gradient with the output channels in the
//! lanes, sixteen at a time, each input value broadcast: of any filter size and stride (a
//! stride only moves the input a position's taps read: `(i·sh + ki, j·sw + kj)`).
//!
//! The filter gradient, `dw[o][c][ki][kj] = Σ_b Σ_(i,j) dy[b][o][i][j] · x[b][c][i + ki][j + kj]`:
//! [`crate::direct::filter`] puts sixteen output *positions* in a vector instead; each of its
//! accumulators then sums a dozen positions per sample, and a short loop over a plane's few
//! vectors (LeNet-5's C3: 7) runs for every sample, tap row and output plane, with an
//! input load per product. Here one accumulator per tap (and vector of channels) runs down a
//! block of a sample's positions, block after block and sample after sample, the output
//! gradient one load per position (each sample's transposed first, `transpose_gradient`)
//! and the input a broadcast that feeds two vectors of channels on AVX-512. Measured on
//! LeNet-5's C3 on a Zen 3
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
//! position (two on AVX-512), a few positions of a row per tile, each filter tap one load of
//! its channels ([`transposed_filters`]) and one broadcast input per position, the bias and
//! ReLU added in the registers. Each output adds its taps
//! in [`crate::direct::forward`]'s order (input plane, row, column; one rounding each), so
//! the two give the same bits.

use crate::direct::{Conv, MAX_FILTER_WIDTH};
use crate::simd::{self, F32x16, Isa, Kernel};
use crate::store::{Skip, Store};

/// Floats per vector.
const LANES: usize = 16;

/// Whether [`forward`] and [`filter`] handle `g` (a forward geometry,
/// [`Conv::forward_strided`]) and fill their lanes at least as well as
/// [`crate::direct::filter`] would in its layout ([`Conv::filter_layout`]), or are the only
/// direct kernels for it (a stride, or a filter wider than that takes).
pub fn suits(g: &Conv) -> bool {
    if g.ow > MAX_ROW {
        return false;
    }
    if g.stride != [1, 1] || g.kw > MAX_FILTER_WIDTH {
        return true;
    }
    let (s, _) = g.filter_layout();
    let positions = g.oh * g.ow;
    // o / o_lanes ≥ positions / wide lanes, in integers.
    g.o * s.wide_plane() >= positions * lanes(g)
}

/// The output channels rounded up to whole vectors.
fn lanes(g: &Conv) -> usize {
    g.o.next_multiple_of(LANES)
}

/// A convolution's input planes, `c` per sample: as the geometry reads them, or `planes`
/// (rows, columns) that the kernel pads with zeros into the geometry's, a few samples at a
/// time into `scratch` ([`padded_floats`]): `low` rows above and columns left, the rest
/// below and right (any split: `same` pads unevenly). (Padded part by part before the
/// kernel, the copy went out to memory and came back: 133 µs for cnn3-same's 32 samples of
/// 16 planes.)
pub enum Input<'a> {
    Planes(&'a [f32]),
    Padded {
        x: &'a [f32],
        planes: [usize; 2],
        low: [usize; 2],
        scratch: &'a mut [f32],
    },
}

impl Input<'_> {
    /// Samples `b0..b0 + n`'s planes, as the geometry `g` reads them.
    fn planes(&mut self, isa: Isa, g: &Conv, b0: usize, n: usize) -> &[f32] {
        let per = g.c * g.plane;
        match self {
            Input::Planes(x) => &x[b0 * per..][..n * per],
            Input::Padded {
                x,
                planes: [h, w],
                low,
                scratch,
            } => {
                let (small, big) = ([g.c, *h, *w], [g.c, g.plane / g.w, g.w]);
                let from = g.c * *h * *w;
                for (k, out) in scratch.chunks_exact_mut(per).take(n).enumerate() {
                    let x = &x[(b0 + k) * from..][..from];
                    crate::copy::pad(Some(isa), x, &small, out, &big, &[0, low[0], low[1]]);
                }
                &scratch[..n * per]
            }
        }
    }

    /// Whether it holds `samples` samples' planes (and room to pad those of a call).
    fn holds(&self, g: &Conv, samples: usize, at_once: usize) -> bool {
        match self {
            Input::Planes(x) => x.len() >= samples * g.c * g.plane,
            Input::Padded {
                x,
                planes: [h, w],
                low,
                scratch,
            } => {
                *h > 0
                    && *w > 0
                    && low[0] + h <= g.plane / g.w
                    && low[1] + w <= g.w
                    && x.len() >= samples * g.c * h * w
                    && scratch.len() >= at_once.min(samples) * g.c * g.plane
            }
        }
    }
}

/// Floats of the scratch [`Input::Padded`] needs for [`forward`] and [`filter`] on up to
/// `samples` samples.
pub fn padded_floats(g: &Conv, samples: usize) -> usize {
    chunk_samples(g).min(samples) * g.c * g.plane
}

/// Floats of one sample's output gradient as [`filter`] reads it ([`transpose_gradient`]).
fn gradient_floats(g: &Conv) -> usize {
    g.oh * g.ow * lanes(g)
}

/// Floats of the scratch space [`filter`] takes: a chunk's transposed output gradients
/// (`transpose_gradient`, `chunk_samples`) and the accumulators, a vector of output
/// channels per tap.
pub fn scratch_floats(g: &Conv) -> usize {
    chunk_samples(g) * gradient_floats(g) + g.taps() * lanes(g)
}

/// Floats of transposed gradient the tiles of [`filter`] run down between loading and
/// storing their accumulators: 16 KiB, within L1.
const BLOCK_FLOATS: usize = 4 << 10;

/// Samples whose gradients [`filter`] transposes together: as many as fit a block, at least
/// one. (One at a time, a small plane's few positions cost less than loading and storing the
/// accumulators around them: tanh-lenet's 1×1 C5, 12 GFLOP/s.)
fn chunk_samples(g: &Conv) -> usize {
    (BLOCK_FLOATS / gradient_floats(g)).max(1)
}

/// `dw[((o·c + ci)·kh + ki)·kw + kj] = Σ_b Σ_(i,j) dy[b][o][i][j] ·
/// x[b][ci·plane + (i·sh + ki)·w + j·sw + kj]` over `samples` samples, `[sh, sw]` the
/// stride: inputs `c·plane` floats apart (once padded, [`Input`]), output gradients
/// `o·oh·ow`.
///
/// A sample at a time (or a chunk of small ones), its output gradient transposed into
/// `scratch` first, and that a block of rows at a time, so that what every input channel's
/// taps run down stays in L1; the accumulators wait in `scratch` between blocks (one load
/// and store each per block, against a block's worth of products). Before the blocks, every
/// tap of every input channel streamed the whole part's transposed gradient from L2 or
/// memory: cnn3-same's `[32,16,3,3]` filter gradient ran at 62 GFLOP/s on one Zen 4 core
/// (`time_same3`).
///
/// # Panics
/// If the slices are short, `g` is not a forward geometry ([`Conv::forward_strided`]), or
/// the CPU does not support `isa`.
pub fn filter(
    isa: Isa,
    g: &Conv,
    samples: usize,
    (x, dy): (Input<'_>, &[f32]),
    scratch: &mut [f32],
    dw: &mut [f32],
) {
    filter_tiled(isa, g, samples, (x, dy), scratch, dw, false);
}

/// [`filter`], with AVX-512's tiles on any unit where `wide` (so that AVX2 machines test
/// them too).
fn filter_tiled(
    isa: Isa,
    g: &Conv,
    samples: usize,
    (x, dy): (Input<'_>, &[f32]),
    scratch: &mut [f32],
    dw: &mut [f32],
    wide: bool,
) {
    assert_plain(isa, g, samples, &x, chunk_samples(g));
    let sample_dy = g.o * g.oh * g.ow;
    assert!(dy.len() >= samples * sample_dy, "gradient too short");
    assert!(scratch.len() >= scratch_floats(g), "scratch too short");
    assert!(dw.len() >= g.o * g.taps(), "filter gradient too short");
    let k = Filter {
        g,
        samples,
        x,
        dy,
        scratch,
        dw,
        wide,
    };
    // SAFETY: the unit is supported, and the slices are long enough (asserted); the kernel
    // forms its pointers from these slices, borrowed for the call (what it writes `&mut`), so
    // no one else, on any thread, accesses what it writes meanwhile; the asserts panic before
    // any pointer is used.
    unsafe { simd::run(isa, k) };
}

/// What both kernels ask of their geometry and input: a supported unit, a forward layout
/// ([`Conv::forward_strided`]'s: every window within the planes), `samples` inputs (padded
/// `at_once` at a time).
fn assert_plain(isa: Isa, g: &Conv, samples: usize, input: &Input<'_>, at_once: usize) {
    assert!(isa.supported(), "vector kernels need {}", isa.name());
    let [sh, sw] = g.stride;
    assert!(
        g.kh >= 1 && g.kw >= 1 && g.oh >= 1 && g.ow >= 1 && sh >= 1 && sw >= 1,
        "an empty geometry"
    );
    assert!(
        g.kj_stride == 1 && (g.ow - 1) * sw + g.kw <= g.w,
        "not a plain layout"
    );
    assert!(
        ((g.oh - 1) * sh + g.kh) * g.w <= g.plane,
        "planes too small"
    );
    // Samples read as one block: adjacent ones.
    assert!(g.compact(), "samples not adjacent");
    assert!(input.holds(g, samples, at_once), "input too short");
}

/// [`filter`]'s arguments, for [`simd::run`].
struct Filter<'a> {
    g: &'a Conv,
    samples: usize,
    x: Input<'a>,
    dy: &'a [f32],
    scratch: &'a mut [f32],
    dw: &'a mut [f32],
    wide: bool,
}

impl Kernel for Filter<'_> {
    type Output = ();

    /// Tiles of [`TAPS`] taps of one vector of channels (AVX2: 10 of its 16 registers
    /// accumulate), or on AVX-512 of [`WIDE_TAPS`] taps of two vectors or twice as many of
    /// one (12 of its 32): each broadcast input then feeds two products where it can, and
    /// the loads stay below the multiply-adds.
    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        // SAFETY (both calls): forwarded.
        let wide = simd::wide_tiles::<V>(self.wide);
        unsafe { self.samples::<V>(wide) }
    }
}

/// Taps per register tile of [`filter`] on AVX2, of one vector of channels.
const TAPS: usize = 5;
/// Taps per register tile of [`filter`] on AVX-512, of two vectors of channels (of one,
/// twice as many). A tile's taps are any run of the filter's (input plane, row, column), so
/// that a narrow filter fills it as well as a square one: nonsquare's 5×1 filter gradient
/// on one Zen 4 core ran at 53 GFLOP/s in tiles of a plane's rows (three of its five rows of
/// one tap, then one), 94 in these (`time_same3`); the 3×3 ones lost 3–5 %.
const WIDE_TAPS: usize = 6;

impl Filter<'_> {
    /// Every sample: its gradient transposed, then every tile down each block of rows; at
    /// the end the accumulators, a vector of channels per tap, into `dw`'s filters.
    #[inline(always)]
    unsafe fn samples<V: F32x16>(self, wide: bool) {
        let Filter {
            g,
            samples,
            mut x,
            dy,
            scratch,
            dw,
            ..
        } = self;
        let (sample_dy, per, floats) = (g.o * g.oh * g.ow, lanes(g), gradient_floats(g));
        let chunk = chunk_samples(g);
        let (dyt, acc) = scratch[..scratch_floats(g)].split_at_mut(chunk * floats);
        acc.fill(0.0);
        // Rows of a block (counted across the chunk's samples): what the tiles run down.
        let rows = (BLOCK_FLOATS / (g.ow * per)).max(1);
        for b0 in (0..samples).step_by(chunk) {
            let n = (samples - b0).min(chunk);
            for (k, dyt) in dyt.chunks_exact_mut(floats).take(n).enumerate() {
                let dy = &dy[(b0 + k) * sample_dy..][..sample_dy];
                // SAFETY: the CPU has `V`'s unit (the caller's contract).
                unsafe { transpose_gradient::<V>(g, dy, dyt) };
            }
            let x = x.planes(V::ISA, g, b0, n);
            for r0 in (0..n * g.oh).step_by(rows) {
                let block = Block {
                    g,
                    x,
                    dyt,
                    acc,
                    rows: r0..(r0 + rows).min(n * g.oh),
                };
                // SAFETY: forwarded.
                unsafe { block.tiles::<V>(wide) };
            }
        }
        // The accumulators (`taps × lanes`) transposed into the filters (`o × taps`), in 8 × 8
        // blocks: one at a time, each store landed on a line of its own (C5's 48,000).
        let taps = g.taps();
        // SAFETY: the unit is the caller's.
        unsafe { simd::transpose::<V>((acc, per), (dw, taps), taps, g.o) };
    }
}

/// One sample's output gradient `dy` (`o × oh × ow`) transposed to `oh·ow` positions of `o`
/// channels, each position's channels padded with zeros to whole vectors; in 8 × 8 blocks
/// on the vector unit.
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn transpose_gradient<V: F32x16>(g: &Conv, dy: &[f32], out: &mut [f32]) {
    let (positions, per) = (g.oh * g.ow, lanes(g));
    // SAFETY: the unit is the caller's.
    unsafe { simd::transpose::<V>((dy, positions), (out, per), g.o, positions) };
    for row in out[..positions * per].chunks_exact_mut(per) {
        row[g.o..].fill(0.0);
    }
}

/// One block of rows for [`Filter`], counted across a chunk of samples (row `r` is row
/// `r % oh` of sample `r / oh`): `x` the chunk's input planes, `dyt` its transposed output
/// gradients, `acc` the accumulators (a vector of channels per tap).
struct Block<'a> {
    g: &'a Conv,
    x: &'a [f32],
    dyt: &'a [f32],
    acc: &'a mut [f32],
    rows: std::ops::Range<usize>,
}

impl Block<'_> {
    /// Every tile: pairs of vectors of output channels where `wide` (one for a last odd
    /// vector) × the taps, in their order (input plane, row, column), as many at a time as
    /// the tile holds (the rest in one tile).
    #[inline(always)]
    unsafe fn tiles<V: F32x16>(mut self, wide: bool) {
        let g = self.g;
        let taps = g.taps();
        let mut ov = 0;
        while ov < g.o {
            let pair = wide && ov + LANES < g.o;
            let most = match (wide, pair) {
                (false, _) => TAPS,
                (true, true) => WIDE_TAPS,
                (true, false) => 2 * WIDE_TAPS,
            };
            for t0 in (0..taps).step_by(most) {
                // SAFETY (all calls): forwarded; taps `t0..t0 + n` are the filter's and
                // vectors `ov..` (two where `pair`) output channels.
                unsafe {
                    match ((taps - t0).min(most), pair) {
                        (1, false) => self.tile::<V, 1, 1>(ov, t0),
                        (2, false) => self.tile::<V, 2, 1>(ov, t0),
                        (3, false) => self.tile::<V, 3, 1>(ov, t0),
                        (4, false) => self.tile::<V, 4, 1>(ov, t0),
                        (5, false) => self.tile::<V, 5, 1>(ov, t0),
                        (6, false) => self.tile::<V, 6, 1>(ov, t0),
                        (7, false) => self.tile::<V, 7, 1>(ov, t0),
                        (8, false) => self.tile::<V, 8, 1>(ov, t0),
                        (9, false) => self.tile::<V, 9, 1>(ov, t0),
                        (10, false) => self.tile::<V, 10, 1>(ov, t0),
                        (11, false) => self.tile::<V, 11, 1>(ov, t0),
                        (_, false) => self.tile::<V, { 2 * WIDE_TAPS }, 1>(ov, t0),
                        (1, true) => self.tile::<V, 1, 2>(ov, t0),
                        (2, true) => self.tile::<V, 2, 2>(ov, t0),
                        (3, true) => self.tile::<V, 3, 2>(ov, t0),
                        (4, true) => self.tile::<V, 4, 2>(ov, t0),
                        (5, true) => self.tile::<V, 5, 2>(ov, t0),
                        (_, true) => self.tile::<V, WIDE_TAPS, 2>(ov, t0),
                    }
                }
            }
            ov += if pair { 2 * LANES } else { LANES };
        }
    }

    /// Taps `t0..t0 + N` for output channels `ov..ov + 16·OV`, summed over the block's
    /// positions in registers, from and back to the accumulators.
    ///
    /// # Safety
    /// The CPU has `V`'s unit; taps `t0..t0 + N` are the filter's, and vectors
    /// `ov..ov + 16·OV` hold output channels.
    #[inline(always)]
    unsafe fn tile<V: F32x16, const N: usize, const OV: usize>(&mut self, ov: usize, t0: usize) {
        let Block {
            g, x, dyt, rows, ..
        } = self;
        let per = lanes(g);
        let (k, taps) = (g.kh * g.kw, g.taps());
        let [sh, sw] = g.stride;
        assert!(t0 + N <= taps && ov + (OV - 1) * LANES < g.o);
        // Where each tap reads, from an output position's input: plane, row and column.
        // (Counted along from the first tap: divisions for each cost more than a small
        // block's products, tanh-lenet's 1×1 C5.)
        let mut from = [0usize; N];
        let (mut c, mut ki, mut kj) = (t0 / k, t0 % k / g.kw, t0 % g.kw);
        for from in from.iter_mut() {
            *from = c * g.plane + ki * g.w + kj;
            kj += 1;
            if kj == g.kw {
                (ki, kj) = (ki + 1, 0);
                if ki == g.kh {
                    (c, ki) = (c + 1, 0);
                }
            }
        }
        let acc = self.acc.as_mut_ptr();
        // The accumulator of tap `t0 + t`, vector `v`.
        let at = |t: usize, v: usize| (t0 + t) * per + ov + v * LANES;
        // SAFETY (throughout): the CPU has `V`'s unit (the caller's contract); the
        // accumulators' taps and vectors lie in `acc` (`taps × lanes` floats, asserted by
        // `filter`), which `self` borrows mutably.
        let mut sums = [[unsafe { V::zero() }; OV]; N];
        for (t, sums) in sums.iter_mut().enumerate() {
            for (v, s) in sums.iter_mut().enumerate() {
                *s = unsafe { V::load(acc.add(at(t, v))) };
            }
        }
        // Row `i` of sample `b` (counted along, not divided: with planes of one row a
        // division per row cost as much as its products).
        let (mut b, mut i) = (rows.start / g.oh, rows.start % g.oh);
        for r in rows.clone() {
            // Row `i` of sample `b`'s output gradient, and the input under its first position.
            let d = dyt[r * g.ow * per + ov..].as_ptr();
            let xr = x[b * g.c * g.plane + i * sh * g.w..].as_ptr();
            for j in 0..g.ow {
                // SAFETY: position `(i, j)`'s channels `ov..ov + 16·OV` lie in `dyt` (whole
                // vectors per position, `OV` of them only where there are); the taps read
                // `x` at rows `i·sh + ki < (oh − 1)·sh + kh` and columns
                // `j·sw + kj < (ow − 1)·sw + kw ≤ w` of their planes `c` (asserted by
                // `filter`).
                let xj = unsafe { xr.add(j * sw) };
                let mut dv = [unsafe { V::zero() }; OV];
                for (v, dv) in dv.iter_mut().enumerate() {
                    *dv = unsafe { V::load(d.add(j * per + v * LANES)) };
                }
                // (Loops, not closures: see `simd`.)
                for (sums, &from) in sums.iter_mut().zip(&from) {
                    let xv = unsafe { V::splat(*xj.add(from)) };
                    for (s, dv) in sums.iter_mut().zip(&dv) {
                        *s = unsafe { dv.mul_add(xv, *s) };
                    }
                }
            }
            i += 1;
            if i == g.oh {
                (b, i) = (b + 1, 0);
            }
        }
        for (t, sums) in sums.iter().enumerate() {
            for (v, s) in sums.iter().enumerate() {
                unsafe { s.store(acc.add(at(t, v))) };
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

/// `y[b][o][i][j] = Σ_{c,ki,kj} w[o][c][ki][kj] · x[b][c·plane + (i·sh + ki)·w + j·sw + kj]`
/// for `samples` samples (inputs `c·plane` floats apart, outputs `o·oh·ow`), with the filters as
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
    x: Input<'_>,
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
    (x, wt, store): (Input<'_>, &[f32], Store<'_>),
    y: &mut [f32],
    wide: bool,
) {
    assert_plain(isa, g, samples, &x, 1);
    assert!(wt.len() >= filter_floats(g), "weights too short");
    let bias = store.bias();
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
    // SAFETY: the unit is supported, and the slices are long enough (asserted); the kernel
    // forms its pointers from these slices, borrowed for the call (what it writes `&mut`), so
    // no one else, on any thread, accesses what it writes meanwhile; the asserts panic before
    // any pointer is used.
    unsafe { simd::run(isa, k) };
}

/// [`forward`]'s arguments, for [`simd::run`].
struct Forward<'a> {
    g: &'a Conv,
    samples: usize,
    x: Input<'a>,
    wt: &'a [f32],
    store: Store<'a>,
    y: &'a mut [f32],
    wide: bool,
}

impl Kernel for Forward<'_> {
    type Output = ();

    /// Tiles of up to 6 positions on AVX2 (12 of its 16 registers accumulate, two hold the
    /// tap's channels, one the broadcast) or 12 on AVX-512, a row's positions split evenly;
    /// on AVX-512 of two vectors of channels where there are (24 of its 32 registers), so
    /// that each broadcast input feeds two products.
    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let Forward {
            g,
            samples,
            mut x,
            wt,
            store,
            y,
            wide,
        } = self;
        let wide = simd::wide_tiles::<V>(wide);
        let most = if wide { 12 } else { 6 };
        let tiles = g.ow.div_ceil(most);
        let width = g.ow.div_ceil(tiles);
        let sample_y = g.o * g.oh * g.ow;
        // One output row of up to two vectors of channels, a vector per position: the tiles
        // store whole vectors here, their bias, residual branch and ReLU added, and
        // `store_row` transposes them into the planes. (Scattering each vector's lanes from
        // the tile cost as much as the products, C3: 69 → 122 µs, its loads waiting on the
        // wide store just made.)
        let mut stage = [0.0f32; 2 * STAGE];
        // The residual branch's row in the same layout, for the tiles to add.
        let mut branch = [0.0f32; 2 * STAGE];
        let bias = store.bias();
        for b in 0..samples {
            let (x, y) = (
                x.planes(V::ISA, g, b, 1),
                &mut y[b * sample_y..][..sample_y],
            );
            // The residual branch's planes of this sample, if it has its own.
            let skip = match store {
                Store::BiasResidualRelu(_, Skip::Operand(skip)) => {
                    Some(&skip[b * sample_y..][..sample_y])
                }
                _ => None,
            };
            let in_place = matches!(store, Store::BiasResidualRelu(_, Skip::InPlace));
            let mut ov = 0;
            while ov < g.o {
                let pair = wide && ov + LANES < g.o;
                for i in 0..g.oh {
                    // A branch in the output is read before `store_row` writes over it.
                    let planes = if in_place { Some(&*y) } else { skip };
                    if let Some(planes) = planes {
                        // SAFETY (both calls): the CPU has `V`'s unit.
                        unsafe { load_row::<V>(g, planes, (ov, i), &mut branch[..STAGE]) };
                        if pair {
                            let second = &mut branch[STAGE..];
                            unsafe { load_row::<V>(g, planes, (ov + LANES, i), second) };
                        }
                    }
                    for j in (0..g.ow).step_by(width) {
                        let at = Row {
                            g,
                            x,
                            wt,
                            ov,
                            i,
                            j,
                            bias,
                            branch: planes.map(|_| &branch[j * LANES..]),
                        };
                        let n = (g.ow - j).min(width);
                        let out = &mut stage[j * LANES..];
                        // SAFETY (both calls): forwarded; positions `j..j + n` lie in row
                        // `i`, vectors `ov..` (two where `pair`) are output channels, and the
                        // CPU has `V`'s unit.
                        unsafe {
                            if pair {
                                at.tiles::<V, 2>(n, out)
                            } else {
                                at.tiles::<V, 1>(n, out)
                            }
                        }
                    }
                    // SAFETY (both calls): the CPU has `V`'s unit.
                    unsafe { store_row::<V>(g, &stage[..g.ow * LANES], (ov, i), y) };
                    if pair {
                        let staged = &stage[STAGE..][..g.ow * LANES];
                        unsafe { store_row::<V>(g, staged, (ov + LANES, i), y) };
                    }
                }
                ov += if pair { 2 * LANES } else { LANES };
            }
        }
    }
}

/// Floats of a staged row of one vector of channels ([`Forward`]).
const STAGE: usize = MAX_ROW * LANES;

/// Row `i` of output planes `ov..` of one sample's `y` from `staged`, a vector of channels
/// per position: the vectors transposed in 8 × 8 blocks. (Lane by lane, the transposition
/// cost cnn3-same's 32-channel forward products a fifth of their time.)
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn store_row<V: F32x16>(g: &Conv, staged: &[f32], (ov, i): (usize, usize), y: &mut [f32]) {
    let (plane, n) = (g.oh * g.ow, (g.o - ov).min(LANES));
    let y = &mut y[ov * plane + i * g.ow..];
    // SAFETY: the unit is the caller's.
    unsafe { simd::transpose::<V>((staged, LANES), (y, plane), g.ow, n) };
}

/// [`store_row`]'s inverse: row `i` of planes `ov..ov + 16` of one sample's `planes` into
/// `staged`, a vector of channels per position (lanes past the last plane left as they are).
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn load_row<V: F32x16>(
    g: &Conv,
    planes: &[f32],
    (ov, i): (usize, usize),
    staged: &mut [f32],
) {
    let (plane, n) = (g.oh * g.ow, (g.o - ov).min(LANES));
    let planes = &planes[ov * plane + i * g.ow..];
    // SAFETY: the unit is the caller's.
    unsafe { simd::transpose::<V>((planes, plane), (staged, LANES), n, g.ow) };
}

/// One sample's output positions `(i, j..)` for channels `ov..ov + 16·OV`, and what the
/// tile adds to its sums before it stores them: the bias, a residual branch (its values at
/// the tile's positions, in the tile's layout: [`load_row`]), and with the bias the ReLU.
#[derive(Clone, Copy)]
struct Row<'a> {
    g: &'a Conv,
    x: &'a [f32],
    wt: &'a [f32],
    ov: usize,
    i: usize,
    j: usize,
    bias: Option<&'a [f32]>,
    branch: Option<&'a [f32]>,
}

/// [`Row::tile`] of `P` positions and `OV` vectors of channels, for [`simd::run_apart`].
struct Tile<'a, const P: usize, const OV: usize> {
    at: Row<'a>,
    out: &'a mut [f32],
}

impl<const P: usize, const OV: usize> Kernel for Tile<'_, P, OV> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        // SAFETY: forwarded.
        unsafe { self.at.tile::<V, P, OV>(self.out) }
    }
}

impl Row<'_> {
    /// [`Row::tile`] of `n` (at most 12) positions, each in a function of its own
    /// ([`simd::run_apart`]), so that its accumulators get the registers.
    ///
    /// # Safety
    /// As [`Row::tile`].
    #[inline(always)]
    unsafe fn tiles<V: F32x16, const OV: usize>(self, n: usize, out: &mut [f32]) {
        let isa = V::ISA;
        // SAFETY (all calls): forwarded; the CPU has `V`'s unit.
        unsafe {
            simd::with_tile_size!(n, P => simd::run_apart(isa, Tile::<P, OV> { at: self, out }))
        }
    }

    /// Positions `j..j + P` of row `i`, accumulated over every tap in registers, stored to
    /// `out` a vector of channels per position (`out[v·STAGE + t·16 + l]`: channel
    /// `ov + 16·v + l`).
    ///
    /// # Safety
    /// The CPU has `V`'s unit; the positions lie in row `i`, and vectors `ov..ov + 16·OV`
    /// of the transposed filters hold channels.
    #[inline(always)]
    unsafe fn tile<V: F32x16, const P: usize, const OV: usize>(self, out: &mut [f32]) {
        let Row {
            g, x, wt, ov, i, j, ..
        } = self;
        let per = lanes(g);
        let [sh, sw] = g.stride;
        // SAFETY (throughout): the CPU has `V`'s unit (the caller's contract).
        let mut acc = [[unsafe { V::zero() }; OV]; P];
        let (x, wt) = (x.as_ptr(), wt.as_ptr());
        for c in 0..g.c {
            for ki in 0..g.kh {
                // SAFETY: row `i·sh + ki < (oh − 1)·sh + kh` of plane `c` lies in the
                // sample's input, and the taps read its columns
                // `(j + t)·sw + kj < (ow − 1)·sw + kw ≤ w`; the tap's channels
                // `ov..ov + 16·OV` lie in `wt` (whole vectors per tap).
                let xr = unsafe { x.add(c * g.plane + (i * sh + ki) * g.w + j * sw) };
                let wr = unsafe { wt.add((c * g.kh + ki) * g.kw * per + ov) };
                for kj in 0..g.kw {
                    let mut wv = [unsafe { V::zero() }; OV];
                    for (v, wv) in wv.iter_mut().enumerate() {
                        *wv = unsafe { V::load(wr.add(kj * per + v * LANES)) };
                    }
                    // (Loops, not closures: see `simd`.)
                    for (t, acc) in acc.iter_mut().enumerate() {
                        let xv = unsafe { V::splat(*xr.add(kj + t * sw)) };
                        for (a, wv) in acc.iter_mut().zip(&wv) {
                            *a = unsafe { wv.mul_add(xv, *a) };
                        }
                    }
                }
            }
        }
        assert!(out.len() >= (OV - 1) * STAGE + P * LANES);
        // The bias of each vector of channels.
        let mut bias = [unsafe { V::zero() }; OV];
        if let Some(b) = self.bias {
            assert!(b.len() >= g.o);
            for (v, bias) in bias.iter_mut().enumerate() {
                let first = ov + v * LANES;
                // SAFETY: the bias holds `o` floats (asserted), the masked lanes past them
                // are not read.
                *bias =
                    unsafe { V::load_masked(simd::low_bits(g.o - first), b.as_ptr().add(first)) };
            }
        }
        if let Some(branch) = self.branch {
            assert!(branch.len() >= (OV - 1) * STAGE + P * LANES);
        }
        for (t, acc) in acc.iter().enumerate() {
            for (v, (&a, b)) in acc.iter().zip(&bias).enumerate() {
                let mut a = a;
                // `relu((y + b) + skip)`, the loops' order (`max(s, 0)` is the interpreter's
                // `relu`, NaN and −0 included).
                if self.bias.is_some() {
                    a = unsafe { a.add(*b) };
                    if let Some(branch) = self.branch {
                        // SAFETY: `branch` holds `P` vectors after `v` stages (asserted).
                        let r = unsafe { V::load(branch.as_ptr().add(v * STAGE + t * LANES)) };
                        a = unsafe { a.add(r) };
                    }
                    a = unsafe { a.max(V::zero()) };
                }
                // SAFETY: `out` holds `P` vectors after `v` stages (asserted).
                unsafe { a.store(out.as_mut_ptr().add(v * STAGE + t * LANES)) };
            }
        }
    }
}

/// The best of `runs` runs of the forward product (its filters transposed, bias and ReLU
/// stored) and the filter gradient of `samples` samples on `g`, one thread, in seconds.
fn time_shape(isa: Isa, g: &Conv, samples: usize, runs: usize) -> (f64, f64) {
    let x = vec![0.5f32; samples * g.c * g.plane];
    let dy = vec![0.1f32; samples * g.o * g.oh * g.ow];
    let mut scratch = vec![0.0f32; scratch_floats(g)];
    let mut dw = vec![0.0f32; g.o * g.taps()];
    let w = vec![0.1f32; g.o * g.taps()];
    let mut wt = vec![0.0f32; filter_floats(g)];
    let mut y = vec![0.0f32; samples * g.o * g.oh * g.ow];
    let (mut forward_s, mut filter_s) = (f64::MAX, f64::MAX);
    for _ in 0..runs {
        let t = std::time::Instant::now();
        transposed_filters(g, &w, &mut wt);
        let store = Store::BiasRelu(&w[..g.o]);
        forward(isa, g, samples, Input::Planes(&x), &wt, store, &mut y);
        forward_s = forward_s.min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        let input = Input::Planes(&x);
        filter(isa, g, samples, (input, &dy), &mut scratch, &mut dw);
        filter_s = filter_s.min(t.elapsed().as_secs_f64());
    }
    (forward_s, filter_s)
}

/// Times C3's forward and filter gradient, channels in lanes, on one thread, printing the
/// best of 50 runs (`cargo bench -p nnc-kernels --bench kernels`).
#[doc(hidden)]
pub fn time_c3(isa: Isa) {
    let samples = 16;
    let (forward, filter) = time_shape(isa, &Conv::forward(6, 14, 14, 16, 5, 5), samples, 50);
    println!(
        "c3 forward, channels in lanes: {:.1} µs ({samples} samples, one thread)",
        forward * 1e6
    );
    println!(
        "c3 filter gradient, channels in lanes, transposes included: {:.1} µs \
         ({samples} samples, one thread)",
        filter * 1e6
    );
}

/// Times the forward product and filter gradient of bench/zoo's `same` convolutions
/// (padded planes): cnn3-same's 3×3 of 16 and 32 channels on 28×28 and 14×14, nonsquare's
/// 5×1 on 28×28; and strided ones: k7-stride2-pool3's 7×7 stem on one channel, the 1×1
/// projections of residual and resnet-mnist (which `gemm_conv` runs a sample at a time:
/// `-- pointwise`); 32 samples on one thread, best of 20 runs.
#[doc(hidden)]
pub fn time_same3(isa: Isa) {
    let samples = 32;
    let shapes = [
        (16, 30, 30, 32, 3, 3, 1),
        (32, 16, 16, 32, 3, 3, 1),
        (16, 32, 28, 16, 5, 1, 1),
        (1, 33, 33, 32, 7, 7, 2),
        (16, 28, 28, 32, 1, 1, 2),
        (32, 14, 14, 64, 1, 1, 2),
    ];
    for (c, h, w, o, kh, kw, s) in shapes {
        let g = Conv::forward_strided(c, [h, w], o, [kh, kw], [s, s]);
        let (forward, filter) = time_shape(isa, &g, samples, 20);
        let flops = 2.0 * (samples * g.o * g.taps() * g.oh * g.ow) as f64;
        println!(
            "[{o},{c},{kh},{kw}] on {}x{} planes ({samples} samples, one thread): forward {:.1} \
             µs, {:.1} GFLOP/s; filter gradient {:.1} µs, {:.1} GFLOP/s",
            g.oh,
            g.ow,
            forward * 1e6,
            flops / forward * 1e-9,
            filter * 1e6,
            flops / filter * 1e-9
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::relu;
    use crate::testing::{filter_gradient, values};

    /// (c, h, w, o, kh, kw): LeNet-5's C3, and shapes with more than one vector of channels,
    /// a part of one, odd tap rows, every filter width, planes of several blocks of rows, and
    /// samples of a few blocks' chunks (the last one short).
    const SHAPES: [(usize, usize, usize, usize, usize, usize); 8] = [
        (6, 14, 14, 16, 5, 5),
        (2, 30, 30, 32, 3, 3),
        (2, 9, 9, 32, 2, 2),
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
        // The only direct kernels for filters wider than `direct`'s and for strides.
        assert!(suits(&Conv::forward(6, 14, 14, 16, 5, 7)), "wide");
        let strided = Conv::forward_strided(1, [34, 34], 32, [7, 7], [2, 2]);
        assert!(suits(&strided) && (strided.oh, strided.ow) == (14, 14));
    }

    /// Strided geometries and filters wider than `direct`'s: both products against their
    /// definitions in f64, and the same bits on every unit and tile.
    #[test]
    fn strides_and_wide_filters_match_the_definition_on_every_unit() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // (c, h, w, o, kh, kw, sh, sw): k7-stride2's stem, a 3×3 at stride 2 with windows
        // that leave the last row and column unread, unequal strides, a stride above the
        // filter, a 5×5 over three vectors of channels, a 3×7 at stride 1.
        let shapes = [
            (1, 34, 34, 32, 7, 7, 2, 2),
            (3, 10, 12, 20, 3, 3, 2, 2),
            (2, 8, 9, 16, 3, 1, 2, 3),
            (2, 10, 7, 33, 2, 2, 3, 1),
            (4, 15, 15, 48, 5, 5, 2, 2),
            (2, 9, 12, 16, 3, 7, 1, 1),
        ];
        for (k, &(c, h, wd, o, kh, kw, sh, sw)) in shapes.iter().enumerate() {
            let g = Conv::forward_strided(c, [h, wd], o, [kh, kw], [sh, sw]);
            assert!(suits(&g));
            let samples = 3;
            let x = values(samples * c * h * wd, 1100 + k as u64);
            let w = values(o * g.taps(), 1200 + k as u64);
            let dy = values(samples * o * g.oh * g.ow, 1300 + k as u64);
            // Input element of sample `b`, plane `ci`, under output `(i, j)` at tap `(ki, kj)`.
            let at = |b: usize, ci: usize, (i, j): (usize, usize), (ki, kj): (usize, usize)| {
                f64::from(x[((b * c + ci) * h + i * sh + ki) * wd + j * sw + kj])
            };
            let mut y_want = vec![0.0f64; samples * o * g.oh * g.ow];
            let mut dw_want = vec![0.0f64; o * g.taps()];
            for b in 0..samples {
                for oc in 0..o {
                    for i in 0..g.oh {
                        for j in 0..g.ow {
                            let e = ((b * o + oc) * g.oh + i) * g.ow + j;
                            for ci in 0..c {
                                for ki in 0..kh {
                                    for kj in 0..kw {
                                        let t = (ci * kh + ki) * kw + kj;
                                        let xv = at(b, ci, (i, j), (ki, kj));
                                        y_want[e] += f64::from(w[oc * g.taps() + t]) * xv;
                                        dw_want[oc * g.taps() + t] += f64::from(dy[e]) * xv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let close = |got: &[f32], want: &[f64], what: &str| {
                for (e, (&got, &want)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{what} {:?}: [{e}] {got} vs {want}",
                        shapes[k]
                    );
                }
            };
            let mut wt = vec![f32::NAN; filter_floats(&g)];
            transposed_filters(&g, &w, &mut wt);
            let runs = crate::testing::vector_units(
                "channels::strides_and_wide_filters_match_the_definition_on_every_unit",
            )
            .into_iter()
            .flat_map(|isa| [(isa, false), (isa, true)]);
            let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
            for (isa, wide) in runs {
                let mut y = vec![f32::NAN; y_want.len()];
                let args = (Input::Planes(&x), &wt[..], Store::Plain);
                forward_tiled(isa, &g, samples, args, &mut y, wide);
                close(&y, &y_want, "forward");
                let mut dw = vec![f32::NAN; o * g.taps()];
                let mut scratch = vec![f32::NAN; scratch_floats(&g)];
                let input = Input::Planes(&x);
                filter_tiled(isa, &g, samples, (input, &dy), &mut scratch, &mut dw, wide);
                close(&dw, &dw_want, "filter");
                match &first {
                    Some((fy, fdw)) => {
                        assert_eq!(bits(fy), bits(&y), "{:?} on {isa:?}", shapes[k]);
                        assert_eq!(bits(fdw), bits(&dw), "{:?} on {isa:?}", shapes[k]);
                    }
                    None => first = Some((y, dw)),
                }
            }
        }
    }

    #[test]
    fn filter_gradient_matches_the_definition_on_every_unit() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (k, &(c, h, wd, o, kh, kw)) in SHAPES.iter().enumerate() {
            let g = Conv::forward(c, h, wd, o, kh, kw);
            let samples = 3;
            let x = values(samples * c * h * wd, k as u64);
            let dy = values(samples * o * g.oh * g.ow, 100 + k as u64);
            let mut first: Option<Vec<f32>> = None;
            // Each unit with its own tiles, and with AVX-512's.
            let runs = crate::testing::vector_units(
                "channels::filter_gradient_matches_the_definition_on_every_unit",
            )
            .into_iter()
            .flat_map(|isa| [(isa, false), (isa, true)]);
            for (isa, wide) in runs {
                let mut dw = vec![f32::NAN; o * g.taps()];
                let mut scratch = vec![f32::NAN; scratch_floats(&g)];
                let input = Input::Planes(&x);
                filter_tiled(isa, &g, samples, (input, &dy), &mut scratch, &mut dw, wide);
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
    fn padding_inside_gives_the_bits_of_padding_before() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // (c, h, w, o, kh, kw, [top, bottom], [left, right]): `same` 3×3 (a chunk of samples
        // per block, and one sample of several blocks), a 5×1, padding of rows only, and
        // uneven padding (`same` at a stride, on its unpadded geometry).
        let shapes = [
            (3, 5, 6, 20, 3, 3, [1, 1], [1, 1]),
            (2, 28, 28, 32, 3, 3, [1, 1], [1, 1]),
            (2, 7, 6, 16, 5, 1, [2, 2], [0, 0]),
            (1, 4, 9, 17, 3, 2, [1, 1], [0, 0]),
            (2, 6, 7, 16, 3, 3, [0, 1], [2, 0]),
        ];
        for (k, &(c, h, wd, o, kh, kw, rows, cols)) in shapes.iter().enumerate() {
            let (hp, wp) = (h + rows[0] + rows[1], wd + cols[0] + cols[1]);
            let g = Conv::forward(c, hp, wp, o, kh, kw);
            let samples = 3;
            let x = values(samples * c * h * wd, 700 + k as u64);
            let mut padded = vec![f32::NAN; samples * c * hp * wp];
            let (small, big) = ([samples * c, h, wd], [samples * c, hp, wp]);
            crate::copy::pad(None, &x, &small, &mut padded, &big, &[0, rows[0], cols[0]]);
            let w = values(o * g.taps(), 800 + k as u64);
            let bias = values(o, 900 + k as u64);
            let dy = values(samples * o * g.oh * g.ow, 1000 + k as u64);
            let mut wt = vec![f32::NAN; filter_floats(&g)];
            transposed_filters(&g, &w, &mut wt);
            let runs = crate::testing::vector_units(
                "channels::padding_inside_gives_the_bits_of_padding_before",
            )
            .into_iter()
            .flat_map(|isa| [(isa, false), (isa, true)]);
            for (isa, wide) in runs {
                let mut space = vec![f32::NAN; padded_floats(&g, samples)];
                fn pad<'a>(x: &'a [f32], at: [[usize; 2]; 2], scratch: &'a mut [f32]) -> Input<'a> {
                    let [planes, low] = at;
                    Input::Padded {
                        x,
                        planes,
                        low,
                        scratch,
                    }
                }
                let at = [[h, wd], [rows[0], cols[0]]];
                let out = samples * o * g.oh * g.ow;
                let (mut got, mut want) = (vec![f32::NAN; out], vec![f32::NAN; out]);
                let store = Store::BiasRelu(&bias);
                let input = pad(&x, at, &mut space);
                forward_tiled(isa, &g, samples, (input, &wt, store), &mut got, wide);
                let before = Input::Planes(&padded);
                forward_tiled(isa, &g, samples, (before, &wt, store), &mut want, wide);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "forward {:?} on {isa:?} wide {wide}",
                    shapes[k]
                );
                let mut scratch = vec![f32::NAN; scratch_floats(&g)];
                let (mut got, mut want) =
                    (vec![f32::NAN; o * g.taps()], vec![f32::NAN; o * g.taps()]);
                let input = pad(&x, at, &mut space);
                filter_tiled(isa, &g, samples, (input, &dy), &mut scratch, &mut got, wide);
                let before = Input::Planes(&padded);
                filter_tiled(
                    isa,
                    &g,
                    samples,
                    (before, &dy),
                    &mut scratch,
                    &mut want,
                    wide,
                );
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "filter {:?} on {isa:?} wide {wide}",
                    shapes[k]
                );
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
                    let args = (Input::Planes(&x), &wt[..], store);
                    forward_tiled(isa, &g, samples, args, &mut got, wide);
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
                let args = (Input::Planes(&x), &wt[..], store);
                forward_tiled(isa, &g, samples, args, &mut got, wide);
                assert_eq!(bits(&got), bits(&want), "operand on {isa:?} wide {wide}");
                let mut got = skip.clone();
                let store = Store::BiasResidualRelu(&bias, Skip::InPlace);
                let args = (Input::Planes(&x), &wt[..], store);
                forward_tiled(isa, &g, samples, args, &mut got, wide);
                assert_eq!(bits(&got), bits(&want), "in place on {isa:?} wide {wide}");
            }
        }
    }
}
