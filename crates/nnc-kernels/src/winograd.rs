//! Stride-1 3×3 convolutions by Winograd's minimal filtering, F(2×2, 3×3) (Lavin and Gray,
//! 2015): each 2×2 block of outputs from a 4×4 block of inputs with 16 products per input and
//! output channel instead of 36, 2.25× fewer multiply-adds than any direct kernel.
//!
//! `y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` per tile: the filters are transformed once per call
//! ([`transformed_filters`]: `U[ξ][c][o]`, sixteen points `ξ` of each 4×4 transform); a
//! sample's input is transposed into a vector of channels per position (zero-padded to whole
//! tiles); then, a row of tiles at a time, its tiles are transformed (`V[ξ][t][c]`), the
//! sixteen products `M[ξ][t][o] = Σ_c V[ξ][t][c] · U[ξ][c][o]` run on register tiles of up to
//! twelve tiles by two vectors of output channels (each `V` a broadcast, as in
//! [`crate::channels`]), and each tile's `M` is transformed back into its 2×2 outputs, the
//! bias, residual branch and ReLU added ([`Store`]), and transposed into the planes two rows
//! at a time. The transforms and the products are functions of their own
//! ([`simd::run_apart`]).
//!
//! The same kernel gives a 3×3 convolution's input gradient: the output gradient's planes,
//! padded by `2 − pad`, correlated with the filters flipped and with `o` and `c` exchanged
//! ([`Filters::Flipped`]). [`filter`] gives its filter gradient by the algorithm transposed.
//!
//! Every output's arithmetic is the same on every vector unit and for every split into parts
//! (the products sum over `c` in order, the transforms add in a fixed order), so the result
//! does not depend on either; it differs from the direct kernels' in its rounding only.

use crate::simd::{self, F32x16, Isa, Kernel};
use crate::store::{Skip, Store};

/// Floats per vector.
const LANES: usize = 16;
/// Points of a tile's 4×4 transform.
const POINTS: usize = 16;
/// The most tiles of a register tile (AVX-512; six on AVX2).
const MAX_TILES: usize = 12;
/// The most vectors of output channels of a register tile.
const MAX_VECTORS: usize = 2;

/// A stride-1 3×3 correlation of `c` planes `h × w` read as if shifted by `low` (rows above,
/// columns left) into zeros: `y[o][i][j] = Σ_{c, ki, kj < 3} w[o][c][ki][kj] ·
/// x[c][i + ki − low₀][j + kj − low₁]` (zero outside the planes) for `i < oh`, `j < ow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Winograd {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    oh: usize,
    ow: usize,
    low: [usize; 2],
}

impl Winograd {
    /// The geometry, if every size is positive and every output reads some input row and
    /// column (`low ≤ 2`: no window lies wholly in the padding above or left).
    pub fn new(
        c: usize,
        [h, w]: [usize; 2],
        o: usize,
        [oh, ow]: [usize; 2],
        low: [usize; 2],
    ) -> Option<Winograd> {
        let positive = [c, h, w, o, oh, ow].iter().all(|&d| d > 0);
        (positive && low[0] <= 2 && low[1] <= 2).then_some(Winograd {
            c,
            h,
            w,
            o,
            oh,
            ow,
            low,
        })
    }

    /// A padded forward convolution's: `pad` rows and columns above and left, the output
    /// `h + 2·pad − 2` (rows), as the op pads.
    pub fn forward(c: usize, [h, w]: [usize; 2], o: usize, pad: [usize; 2]) -> Option<Winograd> {
        let out = |n: usize, p: usize| (n + 2 * p).checked_sub(2).filter(|&d| d > 0);
        let (oh, ow) = (out(h, pad[0])?, out(w, pad[1])?);
        Winograd::new(c, [h, w], o, [oh, ow], pad)
    }

    /// The input gradient of a forward convolution of `c` planes `h × w` into `o` planes
    /// `oh × ow`, padded by `pad` above and left (`≤ 2`; any below and right): the output
    /// gradient's `o` planes read with `2 − pad` rows and columns of zeros above and left, into
    /// `c` planes `h × w` ([`Filters::Flipped`] filters).
    pub fn input_gradient(
        c: usize,
        [h, w]: [usize; 2],
        o: usize,
        [oh, ow]: [usize; 2],
        pad: [usize; 2],
    ) -> Option<Winograd> {
        let low = [2usize.checked_sub(pad[0])?, 2usize.checked_sub(pad[1])?];
        Winograd::new(o, [oh, ow], c, [h, w], low)
    }

    /// Output planes.
    pub fn o(&self) -> usize {
        self.o
    }

    /// Output positions per plane.
    pub fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// Multiply-adds per sample of the direct product it replaces.
    pub fn direct_macs(&self) -> usize {
        9 * self.c * self.o * self.oh * self.ow
    }

    /// Multiply-adds per sample of its sixteen products (whole vectors of output channels).
    pub fn product_macs(&self) -> usize {
        let [th, tw] = self.tiles();
        th * tw * POINTS * self.c * self.o_lanes()
    }

    /// Floats per sample its transforms and transpositions write and read: each tile's
    /// transformed input and products, the input and output planes.
    pub fn moved_floats(&self) -> usize {
        let [th, tw] = self.tiles();
        th * tw * POINTS * (self.c_lanes() + self.o_lanes())
            + self.c * self.h * self.w
            + self.o * self.oh * self.ow
    }

    /// Tiles of 2×2 outputs: rows, columns.
    fn tiles(&self) -> [usize; 2] {
        [self.oh.div_ceil(2), self.ow.div_ceil(2)]
    }

    /// Rows and columns of a sample's input as the tiles read it: whole tiles, zero-padded.
    fn padded(&self) -> [usize; 2] {
        let [th, tw] = self.tiles();
        [2 * th + 2, 2 * tw + 2]
    }

    /// Input channels rounded up to whole vectors.
    fn c_lanes(&self) -> usize {
        self.c.next_multiple_of(LANES)
    }

    /// Output channels rounded up to whole vectors.
    fn o_lanes(&self) -> usize {
        self.o.next_multiple_of(LANES)
    }

    /// Floats of a sample's transposed input, a vector of channels per position.
    fn positions_floats(&self) -> usize {
        let [ph, pw] = self.padded();
        ph * pw * self.c_lanes()
    }

    /// Floats of a row of tiles' transformed input, `V[ξ][t][c]`.
    fn transformed_floats(&self) -> usize {
        POINTS * self.tiles()[1] * self.c_lanes()
    }

    /// Floats of a staged pair of output rows of up to two vectors of channels.
    fn stage_floats(&self) -> usize {
        MAX_VECTORS * 2 * self.ow * LANES
    }
}

/// Floats of [`transformed_filters`]' output.
pub fn filter_floats(g: &Winograd) -> usize {
    POINTS * g.c * g.o_lanes()
}

/// Floats of the scratch space [`forward`] takes.
pub fn scratch_floats(g: &Winograd) -> usize {
    let products = POINTS * MAX_TILES * MAX_VECTORS * LANES;
    g.positions_floats() + g.transformed_floats() + products + 2 * g.stage_floats()
}

/// How the filters given to [`transformed_filters`] are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filters {
    /// `w[o][c][3][3]`, as the geometry's correlation reads them.
    Plain,
    /// The forward filters `w[c][o][3][3]` of the convolution whose input gradient the
    /// geometry is ([`Winograd::input_gradient`]): read flipped, `w[c][o][2 − ki][2 − kj]`.
    Flipped,
}

/// `U[ξ][c][o] = (G g Gᵀ)[ξ]` of each filter `g = w[o][c]`, the output channels padded with
/// zeros to whole vectors.
///
/// # Panics
/// If `w` holds fewer than `o·c·9` floats or `out` fewer than [`filter_floats`].
pub fn transformed_filters(g: &Winograd, w: &[f32], layout: Filters, out: &mut [f32]) {
    assert!(w.len() >= 9 * g.o * g.c, "filters too short");
    assert!(
        out.len() >= filter_floats(g),
        "transformed filters too short"
    );
    let ol = g.o_lanes();
    out[..filter_floats(g)].fill(0.0);
    for o in 0..g.o {
        for c in 0..g.c {
            let tap = |ki: usize, kj: usize| match layout {
                Filters::Plain => w[(o * g.c + c) * 9 + ki * 3 + kj],
                Filters::Flipped => w[(c * g.o + o) * 9 + (2 - ki) * 3 + (2 - kj)],
            };
            // G g: four rows of three, a column at a time.
            let column = |kj: usize| {
                let (a, b, d) = (tap(0, kj), tap(1, kj), tap(2, kj));
                [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d]
            };
            let columns = [column(0), column(1), column(2)];
            let rows: [[f32; 3]; 4] = std::array::from_fn(|i| columns.map(|c| c[i]));
            // (G g) Gᵀ.
            for (i, r) in rows.iter().enumerate() {
                let u = [
                    r[0],
                    0.5 * (r[0] + r[1] + r[2]),
                    0.5 * (r[0] - r[1] + r[2]),
                    r[2],
                ];
                for (j, u) in u.into_iter().enumerate() {
                    out[((4 * i + j) * g.c + c) * ol + o] = u;
                }
            }
        }
    }
}

/// `y` of `samples` samples (inputs `c·h·w` floats apart, outputs `o·oh·ow`) from the
/// filters as [`transformed_filters`] leaves them, stored through `store` (bias, residual
/// branch and ReLU as [`crate::channels::forward`] adds them).
///
/// # Panics
/// If a slice is shorter than the geometry needs.
pub fn forward(
    isa: Isa,
    g: &Winograd,
    samples: usize,
    (x, u): (&[f32], &[f32]),
    store: Store<'_>,
    scratch: &mut [f32],
    y: &mut [f32],
) {
    forward_tiled(isa, g, samples, (x, u, store), scratch, y, false);
}

/// [`forward`], with AVX-512's tiles on any unit where `wide`.
fn forward_tiled(
    isa: Isa,
    g: &Winograd,
    samples: usize,
    (x, u, store): (&[f32], &[f32], Store<'_>),
    scratch: &mut [f32],
    y: &mut [f32],
    wide: bool,
) {
    assert!(x.len() >= samples * g.c * g.h * g.w, "input too short");
    assert!(u.len() >= filter_floats(g), "transformed filters too short");
    assert!(scratch.len() >= scratch_floats(g), "scratch too short");
    let sample_y = g.o * g.oh * g.ow;
    assert!(y.len() >= samples * sample_y, "output too short");
    assert!(
        store.bias().is_none_or(|b| b.len() >= g.o),
        "bias too short"
    );
    if let Store::BiasResidualRelu(_, Skip::Operand(s)) = store {
        assert!(s.len() >= samples * sample_y, "residual branch too short");
    }
    let k = Forward {
        g,
        samples,
        x,
        u,
        store,
        scratch,
        y,
        wide,
    };
    // SAFETY: the unit is supported, and the slices are long enough (asserted); the kernel
    // forms its pointers from these slices, borrowed for the call (what it writes `&mut`), so
    // no one else, on any thread, accesses what it writes meanwhile.
    unsafe { simd::run(isa, k) };
}

/// [`forward`]'s arguments, for [`simd::run`].
struct Forward<'a> {
    g: &'a Winograd,
    samples: usize,
    x: &'a [f32],
    u: &'a [f32],
    store: Store<'a>,
    scratch: &'a mut [f32],
    y: &'a mut [f32],
    wide: bool,
}

impl Kernel for Forward<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let Forward {
            g,
            samples,
            x,
            u,
            store,
            scratch,
            y,
            wide,
        } = self;
        let wide = simd::wide_tiles::<V>(wide);
        let [th, tw] = g.tiles();
        let cl = g.c_lanes();
        let (positions, rest) = scratch.split_at_mut(g.positions_floats());
        let (v, rest) = rest.split_at_mut(g.transformed_floats());
        let (m, rest) = rest.split_at_mut(POINTS * MAX_TILES * MAX_VECTORS * LANES);
        let (stage, branch) = rest.split_at_mut(g.stage_floats());
        // The padding: set once, never written after (each sample writes the same interior).
        positions.fill(0.0);
        let chunks = tw.div_ceil(if wide { MAX_TILES } else { MAX_TILES / 2 });
        let per_chunk = tw.div_ceil(chunks);
        let (sample_x, sample_y) = (g.c * g.h * g.w, g.o * g.oh * g.ow);
        let bias = store.bias();
        for b in 0..samples {
            let x = &x[b * sample_x..][..sample_x];
            let y = &mut y[b * sample_y..][..sample_y];
            // SAFETY: the caller's unit.
            unsafe { to_positions::<V>(g, x, positions) };
            let skip = match store {
                Store::BiasResidualRelu(_, Skip::Operand(s)) => {
                    Some(&s[b * sample_y..][..sample_y])
                }
                _ => None,
            };
            let in_place = matches!(store, Store::BiasResidualRelu(_, Skip::InPlace));
            for ti in 0..th {
                // SAFETY: the caller's unit; the tile row lies in the padded input.
                unsafe {
                    let k = InputTransform {
                        g,
                        positions,
                        ti,
                        v: &mut *v,
                        stride: tw,
                    };
                    simd::run_apart(V::ISA, k)
                };
                let mut ov = 0;
                while ov < g.o {
                    let pair = wide && ov + LANES < g.o;
                    let nv = if pair { 2 } else { 1 };
                    let rows = (g.oh - 2 * ti).min(2);
                    let planes = if in_place { Some(&*y) } else { skip };
                    if let Some(planes) = planes {
                        for k in 0..nv {
                            let staged = &mut branch[stage_at(g, 0, k)..];
                            // SAFETY: the caller's unit.
                            unsafe {
                                load_rows::<V>(g, planes, (ov + k * LANES, 2 * ti, rows), staged)
                            };
                        }
                    }
                    for tj in (0..tw).step_by(per_chunk) {
                        let n = (tw - tj).min(per_chunk);
                        let products = Products {
                            g,
                            v: &v[tj * cl..],
                            u: &u[ov..],
                            n,
                            m: &mut *m,
                        };
                        // SAFETY: the caller's unit; `n ≤ MAX_TILES` tiles of the row and
                        // vectors `ov..` of the filters.
                        unsafe {
                            if pair {
                                products.run::<V, 2>()
                            } else {
                                products.run::<V, 1>()
                            }
                        };
                        let epilogue = Epilogue {
                            bias: bias.map(|b| &b[ov..]),
                            o: g.o - ov,
                            branch: planes.map(|_| &*branch),
                        };
                        // SAFETY: the caller's unit.
                        unsafe {
                            let k = OutputTransform {
                                g,
                                m,
                                at: (ti, tj, n, nv),
                                epilogue,
                                stage: &mut *stage,
                            };
                            simd::run_apart(V::ISA, k)
                        };
                    }
                    for k in 0..nv {
                        let staged = &stage[stage_at(g, 0, k)..];
                        // SAFETY: the caller's unit.
                        unsafe { store_rows::<V>(g, staged, (ov + k * LANES, 2 * ti, rows), y) };
                    }
                    ov += nv * LANES;
                }
            }
        }
    }
}

/// Tiles whose transformed inputs and output gradients [`filter`] holds at once: rows of
/// tiles up to about 192 KiB of both (in L2).
fn block_rows(g: &Winograd) -> usize {
    let [th, tw] = g.tiles();
    let per_row = POINTS * tw * (g.c_lanes() + g.o_lanes());
    ((48 << 10) / per_row).clamp(1, th)
}

/// Floats of the scratch space [`filter`] takes: a sample's transposed input and output
/// gradient, a block of tiles' transformed inputs and gradients, the sixteen products.
pub fn filter_scratch_floats(g: &Winograd) -> usize {
    let [th, tw] = g.tiles();
    let block = block_rows(g) * tw;
    g.positions_floats()
        + 4 * th * tw * g.o_lanes()
        + POINTS * block * (g.c_lanes() + g.o_lanes())
        + POINTS * g.c * g.o_lanes()
}

/// The filter gradient of the geometry's forward product, `dw[o][c][ki][kj] = Σ_b Σ_(i,j)
/// dy[b][o][i][j] · x[b][c][i + ki − low₀][j + kj − low₁]`, for `samples` samples (inputs
/// `c·h·w` floats apart, output gradients `o·oh·ow`), written over `dw` (`o·c·9` floats).
///
/// By the transposition of F(2×2, 3×3): `dw = Gᵀ [Σ_tiles (A e Aᵀ) ⊙ (Bᵀ d B)] G` with `e`
/// a tile's 2×2 output gradients and `d` its 4×4 inputs, so each tile costs 16 products per
/// input and output channel instead of 36; the sum over tiles and samples runs as sixteen
/// products `M[ξ][c][o] += Σ_t V[ξ][t][c] · E[ξ][t][o]` on register tiles of up to twelve
/// input channels by two vectors of output channels, a block of tiles at a time, in the
/// same order on every unit.
///
/// # Panics
/// If a slice is shorter than the geometry needs.
pub fn filter(
    isa: Isa,
    g: &Winograd,
    samples: usize,
    (x, dy): (&[f32], &[f32]),
    scratch: &mut [f32],
    dw: &mut [f32],
) {
    filter_tiled(isa, g, samples, (x, dy), scratch, dw, false);
}

/// [`filter`], with AVX-512's tiles on any unit where `wide`.
fn filter_tiled(
    isa: Isa,
    g: &Winograd,
    samples: usize,
    (x, dy): (&[f32], &[f32]),
    scratch: &mut [f32],
    dw: &mut [f32],
    wide: bool,
) {
    assert!(x.len() >= samples * g.c * g.h * g.w, "input too short");
    assert!(
        dy.len() >= samples * g.o * g.oh * g.ow,
        "output gradient too short"
    );
    assert!(
        scratch.len() >= filter_scratch_floats(g),
        "scratch too short"
    );
    assert!(dw.len() >= 9 * g.o * g.c, "filter gradient too short");
    let k = Filter {
        g,
        samples,
        x,
        dy,
        scratch,
        dw,
        wide,
    };
    // SAFETY: as `forward_tiled`.
    unsafe { simd::run(isa, k) };
}

/// [`filter`]'s arguments, for [`simd::run`].
struct Filter<'a> {
    g: &'a Winograd,
    samples: usize,
    x: &'a [f32],
    dy: &'a [f32],
    scratch: &'a mut [f32],
    dw: &'a mut [f32],
    wide: bool,
}

impl Kernel for Filter<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let Filter {
            g,
            samples,
            x,
            dy,
            scratch,
            dw,
            wide,
        } = self;
        let wide = simd::wide_tiles::<V>(wide);
        let [th, tw] = g.tiles();
        let (cl, ol) = (g.c_lanes(), g.o_lanes());
        let rows = block_rows(g);
        let block = rows * tw;
        let (positions, rest) = scratch.split_at_mut(g.positions_floats());
        let (gradients, rest) = rest.split_at_mut(4 * th * tw * ol);
        let (v, rest) = rest.split_at_mut(POINTS * block * cl);
        let (e, rest) = rest.split_at_mut(POINTS * block * ol);
        let m = &mut rest[..POINTS * g.c * ol];
        // Padding and partial tiles: set once, never written after.
        positions.fill(0.0);
        gradients.fill(0.0);
        m.fill(0.0);
        let (sample_x, sample_y) = (g.c * g.h * g.w, g.o * g.oh * g.ow);
        for b in 0..samples {
            let x = &x[b * sample_x..][..sample_x];
            let dy = &dy[b * sample_y..][..sample_y];
            // SAFETY (both): the caller's unit.
            unsafe { to_positions::<V>(g, x, positions) };
            unsafe { gradient_positions::<V>(g, dy, gradients) };
            for t0 in (0..th).step_by(rows) {
                let n = (th - t0).min(rows);
                for r in 0..n {
                    let at = r * tw;
                    // SAFETY (both): the caller's unit; row `r` of the block's tiles.
                    unsafe {
                        let k = InputTransform {
                            g,
                            positions,
                            ti: t0 + r,
                            v: &mut v[at * cl..],
                            stride: block,
                        };
                        simd::run_apart(V::ISA, k)
                    };
                    unsafe {
                        let k = GradientTransform {
                            g,
                            gradients,
                            ti: t0 + r,
                            e: &mut e[at * ol..],
                            stride: block,
                        };
                        simd::run_apart(V::ISA, k)
                    };
                }
                let sums = Sums {
                    g,
                    v,
                    e,
                    stride: block,
                    tiles: n * tw,
                };
                let most = if wide { MAX_TILES } else { MAX_TILES / 2 };
                let per = g.c.div_ceil(g.c.div_ceil(most));
                for c in (0..g.c).step_by(per) {
                    let mut ov = 0;
                    while ov < g.o {
                        let pair = wide && ov + LANES < g.o;
                        let at = Sum {
                            c,
                            n: (g.c - c).min(per),
                            ov,
                        };
                        // SAFETY: the caller's unit; channels `c..c + n` and vectors `ov..`.
                        unsafe {
                            if pair {
                                sums.run::<V, 2>(at, m)
                            } else {
                                sums.run::<V, 1>(at, m)
                            }
                        };
                        ov += if pair { 2 * LANES } else { LANES };
                    }
                }
            }
        }
        // dw = Gᵀ M G.
        const GT: [[f32; 4]; 3] = [
            [1.0, 0.5, 0.5, 0.0],
            [0.0, 0.5, -0.5, 0.0],
            [0.0, 0.5, 0.5, 1.0],
        ];
        for o in 0..g.o {
            for c in 0..g.c {
                let p = |xi: usize| m[(xi * g.c + c) * ol + o];
                // Gᵀ M: three rows of four, then (Gᵀ M) G.
                let mut rows = [[0.0f32; 4]; 3];
                for (row, gt) in rows.iter_mut().zip(&GT) {
                    for (j, r) in row.iter_mut().enumerate() {
                        *r = gt[0] * p(j) + gt[1] * p(4 + j) + gt[2] * p(8 + j) + gt[3] * p(12 + j);
                    }
                }
                for (ki, row) in rows.iter().enumerate() {
                    for (kj, gt) in GT.iter().enumerate() {
                        dw[(o * g.c + c) * 9 + ki * 3 + kj] =
                            gt[0] * row[0] + gt[1] * row[1] + gt[2] * row[2] + gt[3] * row[3];
                    }
                }
            }
        }
    }
}

/// One sample's output gradient planes `dy` into `gradients`, a vector of output channels
/// per position of whole tiles (`2·th × 2·tw`; the positions past the planes left zero).
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn gradient_positions<V: F32x16>(g: &Winograd, dy: &[f32], gradients: &mut [f32]) {
    let (tw, ol) = (g.tiles()[1], g.o_lanes());
    for i in 0..g.oh {
        // SAFETY: the caller's unit.
        unsafe {
            simd::transpose::<V>(
                (&dy[i * g.ow..], g.oh * g.ow),
                (&mut gradients[i * 2 * tw * ol..], ol),
                g.o,
                g.ow,
            )
        };
    }
}

/// `E[ξ][tj][o] = (A e Aᵀ)[ξ]` of each tile `tj` of tile row `ti` (`e` its 2×2 output
/// gradients), a vector of output channels at a time, the points `stride` tiles apart.
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn transform_gradients<V: F32x16>(
    g: &Winograd,
    gradients: &[f32],
    ti: usize,
    (e, stride): (&mut [f32], usize),
) {
    let [_, tw] = g.tiles();
    let ol = g.o_lanes();
    assert!(gradients.len() >= (2 * ti + 2) * 2 * tw * ol);
    assert!(stride >= tw && e.len() >= ((POINTS - 1) * stride + tw) * ol);
    let (p, out) = (gradients.as_ptr(), e.as_mut_ptr());
    for tj in 0..tw {
        for ov in (0..ol).step_by(LANES) {
            // SAFETY (throughout): the tile's 2×2 positions lie in `gradients` and its
            // sixteen points in `e` (asserted); the caller's unit.
            let at = |a: usize, b: usize| ((2 * ti + a) * 2 * tw + 2 * tj + b) * ol + ov;
            let d = unsafe {
                [
                    [V::load(p.add(at(0, 0))), V::load(p.add(at(0, 1)))],
                    [V::load(p.add(at(1, 0))), V::load(p.add(at(1, 1)))],
                ]
            };
            // A e: four rows of two (A's rows 1, 1 + 1, 1 − 1, −1), then (A e) Aᵀ likewise.
            let spread = |a: V, b: V| unsafe { [a, a.add(b), a.sub(b), V::zero().sub(b)] };
            let f0 = spread(d[0][0], d[1][0]);
            let f1 = spread(d[0][1], d[1][1]);
            for i in 0..4 {
                for (j, t) in spread(f0[i], f1[i]).into_iter().enumerate() {
                    unsafe { t.store(out.add(((4 * i + j) * stride + tj) * ol + ov)) };
                }
            }
        }
    }
}

/// The sixteen sums of a block of tiles, `m[ξ][c][o] += Σ_t v[ξ][t][c] · e[ξ][t][o]`.
struct Sums<'a> {
    g: &'a Winograd,
    v: &'a [f32],
    e: &'a [f32],
    /// Tiles between two points' first in `v` and `e`.
    stride: usize,
    tiles: usize,
}

/// Where a register tile of [`Sums`] lies: input channels `c..c + n`, output channels from
/// `ov`.
#[derive(Clone, Copy)]
struct Sum {
    c: usize,
    n: usize,
    ov: usize,
}

/// [`Sums::tile`] of `P` input channels, for [`simd::run_apart`].
struct SumTile<'a, 'm, const P: usize, const OV: usize>(&'a Sums<'a>, Sum, &'m mut [f32]);

impl<const P: usize, const OV: usize> Kernel for SumTile<'_, '_, P, OV> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        // SAFETY: forwarded.
        unsafe { self.0.tile::<V, P, OV>(self.1, self.2) }
    }
}

impl Sums<'_> {
    /// Each tile size in a function of its own ([`simd::run_apart`]).
    ///
    /// # Safety
    /// The CPU has `V`'s unit.
    #[inline(always)]
    unsafe fn run<V: F32x16, const OV: usize>(&self, at: Sum, m: &mut [f32]) {
        let isa = V::ISA;
        // SAFETY (all calls): the caller's unit.
        unsafe {
            simd::with_tile_size!(at.n, P => simd::run_apart(isa, SumTile::<P, OV>(self, at, m)))
        }
    }

    /// # Safety
    /// The CPU has `V`'s unit.
    #[inline(always)]
    unsafe fn tile<V: F32x16, const P: usize, const OV: usize>(&self, at: Sum, m: &mut [f32]) {
        let Sums {
            g,
            v,
            e,
            stride,
            tiles,
        } = *self;
        let (cl, ol) = (g.c_lanes(), g.o_lanes());
        let Sum { c, ov, .. } = at;
        // Every point's tiles, channels and vectors lie in `v`, `e` and `m`.
        assert!(tiles <= stride && c + P <= g.c && ov + OV * LANES <= ol);
        assert!(v.len() >= ((POINTS - 1) * stride + tiles) * cl);
        assert!(e.len() >= ((POINTS - 1) * stride + tiles) * ol);
        assert!(m.len() >= POINTS * g.c * ol);
        let (v, e, m) = (v.as_ptr(), e.as_ptr(), m.as_mut_ptr());
        for xi in 0..POINTS {
            // SAFETY (throughout): in bounds by the asserts; the caller's unit.
            let mx = unsafe { m.add((xi * g.c + c) * ol + ov) };
            let mut acc = [[unsafe { V::zero() }; OV]; P];
            for (p, acc) in acc.iter_mut().enumerate() {
                for (q, a) in acc.iter_mut().enumerate() {
                    *a = unsafe { V::load(mx.add(p * ol + q * LANES)) };
                }
            }
            let vx = unsafe { v.add(xi * stride * cl + c) };
            let ex = unsafe { e.add(xi * stride * ol + ov) };
            for t in 0..tiles {
                let mut ev = [unsafe { V::zero() }; OV];
                for (q, ev) in ev.iter_mut().enumerate() {
                    *ev = unsafe { V::load(ex.add(t * ol + q * LANES)) };
                }
                for (p, acc) in acc.iter_mut().enumerate() {
                    let s = unsafe { V::splat(*vx.add(t * cl + p)) };
                    for (a, ev) in acc.iter_mut().zip(&ev) {
                        *a = unsafe { ev.mul_add(s, *a) };
                    }
                }
            }
            for (p, acc) in acc.iter().enumerate() {
                for (q, a) in acc.iter().enumerate() {
                    unsafe { a.store(mx.add(p * ol + q * LANES)) };
                }
            }
        }
    }
}

/// One sample's input planes `x` into `positions`, a vector of channels per position of the
/// padded planes (their padding left as it is: zero).
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn to_positions<V: F32x16>(g: &Winograd, x: &[f32], positions: &mut [f32]) {
    let [ph, pw] = g.padded();
    let cl = g.c_lanes();
    let cols = g.w.min(pw - g.low[1]);
    for r in 0..g.h.min(ph - g.low[0]) {
        let at = ((r + g.low[0]) * pw + g.low[1]) * cl;
        // SAFETY: the caller's unit.
        unsafe {
            simd::transpose::<V>(
                (&x[r * g.w..], g.h * g.w),
                (&mut positions[at..], cl),
                g.c,
                cols,
            )
        };
    }
}

/// [`transform_inputs`] in a function of its own ([`simd::run_apart`]): inlined into the
/// kernel, its sixteen vectors of points and the kernel's loop state did not fit the
/// registers together and both spilled to the stack (16 → 16 channels on 28×28: the
/// transforms took more time than the products).
struct InputTransform<'a> {
    g: &'a Winograd,
    positions: &'a [f32],
    ti: usize,
    v: &'a mut [f32],
    stride: usize,
}

impl Kernel for InputTransform<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        // SAFETY: the caller's unit.
        unsafe { transform_inputs::<V>(self.g, self.positions, self.ti, (self.v, self.stride)) }
    }
}

/// [`transform_gradients`] in a function of its own, as [`InputTransform`].
struct GradientTransform<'a> {
    g: &'a Winograd,
    gradients: &'a [f32],
    ti: usize,
    e: &'a mut [f32],
    stride: usize,
}

impl Kernel for GradientTransform<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let GradientTransform {
            g,
            gradients,
            ti,
            e,
            stride,
        } = self;
        // SAFETY: the caller's unit.
        unsafe { transform_gradients::<V>(g, gradients, ti, (e, stride)) }
    }
}

/// [`transform_outputs`] in a function of its own, as [`InputTransform`].
struct OutputTransform<'a> {
    g: &'a Winograd,
    m: &'a [f32],
    at: (usize, usize, usize, usize),
    epilogue: Epilogue<'a>,
    stage: &'a mut [f32],
}

impl Kernel for OutputTransform<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        // SAFETY: the caller's unit.
        unsafe { transform_outputs::<V>(self.g, self.m, self.at, self.epilogue, self.stage) }
    }
}

/// Where output row `a` (of a tile row's two) of vector `k` of channels starts in a stage:
/// a vector's two rows one after the other, as in the planes.
fn stage_at(g: &Winograd, a: usize, k: usize) -> usize {
    (k * 2 + a) * g.ow * LANES
}

/// `V[ξ][tj][c] = (Bᵀ d B)[ξ]` of each tile `tj` of tile row `ti`, a vector of channels at
/// a time, the points `stride` tiles apart (`v[(ξ·stride + tj)·cl + c]`).
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn transform_inputs<V: F32x16>(
    g: &Winograd,
    positions: &[f32],
    ti: usize,
    (v, stride): (&mut [f32], usize),
) {
    let [_, tw] = g.tiles();
    let [_, pw] = g.padded();
    let cl = g.c_lanes();
    assert!(positions.len() >= (2 * ti + 4) * pw * cl);
    assert!(stride >= tw && v.len() >= ((POINTS - 1) * stride + tw) * cl);
    let (p, out) = (positions.as_ptr(), v.as_mut_ptr());
    // Addresses as a row's start plus multiples of one step (loads), and one pointer moved
    // point by point (stores): sixteen separate addresses spilled to the stack.
    let (step, point) = (cl, stride * cl);
    for tj in 0..tw {
        for cv in (0..cl).step_by(LANES) {
            // SAFETY (throughout): the tile's 4×4 positions lie in the padded input (rows
            // `2·ti + 3 < ph`, columns `2·tj + 3 < pw`), asserted above; its sixteen points in
            // `v`.
            let mut d = [[unsafe { V::zero() }; 4]; 4];
            let mut row = unsafe { p.add((2 * ti * pw + 2 * tj) * cl + cv) };
            for d in d.iter_mut() {
                unsafe {
                    *d = [
                        V::load(row),
                        V::load(row.add(step)),
                        V::load(row.add(2 * step)),
                        V::load(row.add(3 * step)),
                    ];
                    row = row.add(pw * cl);
                }
            }
            // Bᵀ d: the rows combined, then (Bᵀ d) B: the columns.
            let mut e = [[unsafe { V::zero() }; 4]; 4];
            for j in 0..4 {
                let [d0, d1, d2, d3] = [d[0][j], d[1][j], d[2][j], d[3][j]];
                unsafe {
                    e[0][j] = d0.sub(d2);
                    e[1][j] = d1.add(d2);
                    e[2][j] = d2.sub(d1);
                    e[3][j] = d1.sub(d3);
                }
            }
            let mut to = unsafe { out.add(tj * cl + cv) };
            for e in &e {
                let t = unsafe {
                    [
                        e[0].sub(e[2]),
                        e[1].add(e[2]),
                        e[2].sub(e[1]),
                        e[1].sub(e[3]),
                    ]
                };
                for t in t {
                    unsafe {
                        t.store(to);
                        to = to.wrapping_add(point);
                    }
                }
            }
        }
    }
}

/// The sixteen products of `n` tiles (from `v`'s first) and `OV` vectors of output channels
/// (from `u`'s first): `m[ξ][t][k] = Σ_c v[ξ][t][c] · u[ξ][c][k]`.
struct Products<'a> {
    g: &'a Winograd,
    v: &'a [f32],
    u: &'a [f32],
    n: usize,
    m: &'a mut [f32],
}

/// [`Products::tile`] of `P` tiles, for [`simd::run_apart`].
struct ProductTile<'a, const P: usize, const OV: usize>(Products<'a>);

impl<const P: usize, const OV: usize> Kernel for ProductTile<'_, P, OV> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        // SAFETY: forwarded.
        unsafe { self.0.tile::<V, P, OV>() }
    }
}

impl Products<'_> {
    /// Each tile size in a function of its own ([`simd::run_apart`]), so that its
    /// accumulators get the registers.
    ///
    /// # Safety
    /// The CPU has `V`'s unit.
    #[inline(always)]
    unsafe fn run<V: F32x16, const OV: usize>(self) {
        let isa = V::ISA;
        // SAFETY (all calls): the caller's unit.
        unsafe {
            simd::with_tile_size!(self.n, P => simd::run_apart(isa, ProductTile::<P, OV>(self)))
        }
    }

    /// # Safety
    /// The CPU has `V`'s unit.
    #[inline(always)]
    unsafe fn tile<V: F32x16, const P: usize, const OV: usize>(self) {
        let Products { g, v, u, m, .. } = self;
        let (c, cl, ol, tw) = (g.c, g.c_lanes(), g.o_lanes(), g.tiles()[1]);
        // Every point's `P` tiles and `OV` vectors of channels lie in `v`, `u` and `m`.
        assert!(v.len() > (POINTS - 1) * tw * cl + (P - 1) * cl + c - 1);
        assert!(u.len() >= ((POINTS - 1) * c + c - 1) * ol + OV * LANES);
        assert!(m.len() >= POINTS * MAX_TILES * MAX_VECTORS * LANES && OV <= MAX_VECTORS);
        let (v, u, m) = (v.as_ptr(), u.as_ptr(), m.as_mut_ptr());
        for xi in 0..POINTS {
            // SAFETY (throughout): in bounds by the asserts; the caller's unit.
            let mut acc = [[unsafe { V::zero() }; OV]; P];
            let vx = unsafe { v.add(xi * tw * cl) };
            let ux = unsafe { u.add(xi * c * ol) };
            for k in 0..c {
                let mut uv = [unsafe { V::zero() }; OV];
                for (q, uv) in uv.iter_mut().enumerate() {
                    *uv = unsafe { V::load(ux.add(k * ol + q * LANES)) };
                }
                for (t, acc) in acc.iter_mut().enumerate() {
                    let s = unsafe { V::splat(*vx.add(t * cl + k)) };
                    for (a, uv) in acc.iter_mut().zip(&uv) {
                        *a = unsafe { uv.mul_add(s, *a) };
                    }
                }
            }
            for (t, acc) in acc.iter().enumerate() {
                for (q, a) in acc.iter().enumerate() {
                    unsafe { a.store(m.add(((xi * MAX_TILES + t) * MAX_VECTORS + q) * LANES)) };
                }
            }
        }
    }
}

/// What a forward product adds to its outputs: the bias of its channels (from the first of
/// the vectors being stored), the residual branch (staged as the outputs are), the ReLU.
struct Epilogue<'a> {
    bias: Option<&'a [f32]>,
    /// Output channels from the first being stored.
    o: usize,
    branch: Option<&'a [f32]>,
}

/// The 2×2 outputs `Aᵀ M A` of tiles `tj..tj + n` of tile row `ti`, `nv` vectors of channels,
/// into `stage` with the epilogue added.
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn transform_outputs<V: F32x16>(
    g: &Winograd,
    m: &[f32],
    (ti, tj, n, nv): (usize, usize, usize, usize),
    epilogue: Epilogue<'_>,
    stage: &mut [f32],
) {
    assert!(m.len() >= POINTS * MAX_TILES * MAX_VECTORS * LANES && n <= MAX_TILES);
    assert!(stage.len() >= stage_at(g, 1, MAX_VECTORS - 1) + g.ow * LANES);
    if let Some(branch) = epilogue.branch {
        assert!(branch.len() >= stage.len());
    }
    let rows = (g.oh - 2 * ti).min(2);
    for k in 0..nv {
        // SAFETY (throughout): the caller's unit; the masked lanes past the bias's last
        // channel are not read; every staged position lies in its row (asserted length).
        let bias = epilogue.bias.map(|b| unsafe {
            V::load_masked(
                simd::low_bits(epilogue.o.saturating_sub(k * LANES)),
                b.as_ptr().add(k * LANES),
            )
        });
        for t in 0..n {
            let mut p = [unsafe { V::zero() }; POINTS];
            for (xi, p) in p.iter_mut().enumerate() {
                *p = unsafe {
                    V::load(
                        m.as_ptr()
                            .add(((xi * MAX_TILES + t) * MAX_VECTORS + k) * LANES),
                    )
                };
            }
            // Aᵀ M: two rows; then (Aᵀ M) A: two columns of each.
            let mut s = [[unsafe { V::zero() }; 4]; 2];
            for j in 0..4 {
                let [m0, m1, m2, m3] = [p[j], p[4 + j], p[8 + j], p[12 + j]];
                unsafe {
                    s[0][j] = m0.add(m1).add(m2);
                    s[1][j] = m1.sub(m2).sub(m3);
                }
            }
            let cols = (g.ow - 2 * (tj + t)).min(2);
            for (a, s) in s.iter().enumerate().take(rows) {
                let out = unsafe { [s[0].add(s[1]).add(s[2]), s[1].sub(s[2]).sub(s[3])] };
                for (col, mut y) in out.into_iter().enumerate().take(cols) {
                    let at = stage_at(g, a, k) + (2 * (tj + t) + col) * LANES;
                    if let Some(b) = bias {
                        // `relu((y + b) + skip)`, the loops' order.
                        y = unsafe { y.add(b) };
                        if let Some(branch) = epilogue.branch {
                            y = unsafe { y.add(V::load(branch.as_ptr().add(at))) };
                        }
                        y = unsafe { y.max(V::zero()) };
                    }
                    unsafe { y.store(stage.as_mut_ptr().add(at)) };
                }
            }
        }
    }
}

/// Rows `i..i + rows` of output planes `ov..ov + 16` of one sample's `y` from `staged`, a
/// vector of channels per position: one transposition, the rows being adjacent in the planes
/// (a 28-wide row pair is seven whole 8×8 blocks; a row alone ends in a partial one).
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn store_rows<V: F32x16>(
    g: &Winograd,
    staged: &[f32],
    (ov, i, rows): (usize, usize, usize),
    y: &mut [f32],
) {
    let (plane, n) = (g.oh * g.ow, (g.o - ov).min(LANES));
    let y = &mut y[ov * plane + i * g.ow..];
    // SAFETY: the caller's unit.
    unsafe { simd::transpose::<V>((staged, LANES), (y, plane), rows * g.ow, n) };
}

/// [`store_rows`]' inverse, for a residual branch.
///
/// # Safety
/// The CPU has `V`'s unit.
#[inline(always)]
unsafe fn load_rows<V: F32x16>(
    g: &Winograd,
    planes: &[f32],
    (ov, i, rows): (usize, usize, usize),
    staged: &mut [f32],
) {
    let (plane, n) = (g.oh * g.ow, (g.o - ov).min(LANES));
    let planes = &planes[ov * plane + i * g.ow..];
    // SAFETY: the caller's unit.
    unsafe { simd::transpose::<V>((planes, plane), (staged, LANES), n, rows * g.ow) };
}

/// Times the forward products and filter gradients of bench/zoo's 3×3 convolutions here and
/// on [`crate::channels`] (bias and ReLU stored, 32 samples on one thread, best of 20 runs),
/// in effective GFLOP/s (the direct product's multiply-adds): 16 → 16 and 16 → 32 on 28×28,
/// 32 → 32 on 14×14, 64 → 64 on 12×12 unpadded (cnn64's).
#[doc(hidden)]
pub fn time_same3(isa: Isa) {
    use crate::channels;
    use crate::direct::Conv;
    let samples = 32;
    for (c, hw, o, pad) in [
        (16, 28, 16, 1),
        (16, 28, 32, 1),
        (32, 14, 32, 1),
        (64, 12, 64, 0),
    ] {
        let g = Winograd::forward(c, [hw, hw], o, [pad, pad]).expect("a 3×3 geometry");
        let d = Conv::forward(c, hw + 2 * pad, hw + 2 * pad, o, 3, 3);
        let x = crate::testing::values(samples * c * hw * hw, 1);
        let padded = crate::testing::values(samples * c * d.plane(), 1);
        let w = crate::testing::values(o * c * 9, 2);
        let dy = crate::testing::values(samples * o * g.positions(), 3);
        let bias = vec![0.1f32; o];
        let mut u = vec![0.0f32; filter_floats(&g)];
        let mut wt = vec![0.0f32; channels::filter_floats(&d)];
        let mut scratch = vec![0.0f32; scratch_floats(&g).max(filter_scratch_floats(&g))];
        let mut channels_scratch = vec![0.0f32; channels::scratch_floats(&d)];
        let mut y = vec![0.0f32; samples * o * g.positions()];
        let mut dw = vec![0.0f32; o * c * 9];
        let mut best = [f64::MAX; 4];
        let mut time = |k: usize, run: &mut dyn FnMut()| {
            let t = std::time::Instant::now();
            run();
            best[k] = best[k].min(t.elapsed().as_secs_f64());
        };
        for _ in 0..20 {
            time(0, &mut || {
                transformed_filters(&g, &w, Filters::Plain, &mut u);
                let store = Store::BiasRelu(&bias);
                forward(isa, &g, samples, (&x, &u), store, &mut scratch, &mut y);
            });
            time(1, &mut || {
                channels::transposed_filters(&d, &w, &mut wt);
                let input = channels::Input::Planes(&padded);
                channels::forward(isa, &d, samples, input, &wt, Store::BiasRelu(&bias), &mut y);
            });
            time(2, &mut || {
                filter(isa, &g, samples, (&x, &dy), &mut scratch, &mut dw)
            });
            time(3, &mut || {
                let input = channels::Input::Planes(&padded);
                channels::filter(
                    isa,
                    &d,
                    samples,
                    (input, &dy),
                    &mut channels_scratch,
                    &mut dw,
                );
            });
        }
        let flops = 2.0 * (samples * g.direct_macs()) as f64;
        let rate = |s: f64| format!("{:.1} µs, {:.1} GFLOP/s", s * 1e6, flops / s * 1e-9);
        println!(
            "[{o},{c},3,3] on {hw}x{hw} (pad {pad}, {samples} samples, one thread, {}): forward \
             winograd {}, channels {}; filter gradient winograd {}, channels {}",
            isa.name(),
            rate(best[0]),
            rate(best[1]),
            rate(best[2]),
            rate(best[3]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{values, vector_units};

    /// The correlation the geometry defines, in f64.
    fn reference(g: &Winograd, samples: usize, x: &[f32], w: &[f32], layout: Filters) -> Vec<f64> {
        let mut y = vec![0.0f64; samples * g.o * g.oh * g.ow];
        for b in 0..samples {
            for o in 0..g.o {
                for i in 0..g.oh {
                    for j in 0..g.ow {
                        let mut s = 0.0f64;
                        for c in 0..g.c {
                            for ki in 0..3 {
                                for kj in 0..3 {
                                    let (r, q) = (i + ki, j + kj);
                                    if r < g.low[0] || q < g.low[1] {
                                        continue;
                                    }
                                    let (r, q) = (r - g.low[0], q - g.low[1]);
                                    if r >= g.h || q >= g.w {
                                        continue;
                                    }
                                    let wv = match layout {
                                        Filters::Plain => w[(o * g.c + c) * 9 + ki * 3 + kj],
                                        Filters::Flipped => {
                                            w[(c * g.o + o) * 9 + (2 - ki) * 3 + (2 - kj)]
                                        }
                                    };
                                    s += wv as f64 * x[((b * g.c + c) * g.h + r) * g.w + q] as f64;
                                }
                            }
                        }
                        y[((b * g.o + o) * g.oh + i) * g.ow + j] = s;
                    }
                }
            }
        }
        y
    }

    /// The forward product of `samples` samples of `x` by filters `w` laid out as `layout`.
    fn run(
        (isa, wide): (Isa, bool),
        g: &Winograd,
        samples: usize,
        (x, w, layout): (&[f32], &[f32], Filters),
        store: Store<'_>,
    ) -> Vec<f32> {
        let mut u = vec![0.0; filter_floats(g)];
        transformed_filters(g, w, layout, &mut u);
        let mut scratch = vec![f32::NAN; scratch_floats(g)];
        let mut y = vec![0.0; samples * g.o * g.oh * g.ow];
        forward_tiled(isa, g, samples, (x, &u, store), &mut scratch, &mut y, wide);
        y
    }

    fn close(got: &[f32], want: &[f64], scale: f64) {
        assert_eq!(got.len(), want.len());
        for (k, (&a, &b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a as f64 - b).abs() <= 1e-5 * scale,
                "output {k}: {a} against {b}"
            );
        }
    }

    /// Every padding, odd and even output sizes, channels past whole vectors, both tile widths.
    #[test]
    fn matches_the_correlation() {
        let shapes: [(usize, [usize; 2], usize, [usize; 2]); 6] = [
            (1, [5, 5], 1, [1, 1]),
            (3, [7, 9], 5, [1, 1]),
            (16, [8, 8], 16, [1, 1]),
            (17, [6, 11], 33, [0, 0]),
            (2, [28, 28], 40, [1, 1]),
            (20, [5, 4], 3, [0, 1]),
        ];
        let mut ran = 0;
        for isa in vector_units("matches_the_correlation") {
            for &(c, hw, o, pad) in &shapes {
                for layout in [Filters::Plain, Filters::Flipped] {
                    let Some(f) = Winograd::forward(c, hw, o, pad) else {
                        continue;
                    };
                    let g = match layout {
                        Filters::Plain => f,
                        Filters::Flipped => {
                            Winograd::input_gradient(c, hw, o, [f.oh, f.ow], pad).unwrap()
                        }
                    };
                    let x = values(2 * g.c * g.h * g.w, 1);
                    let w = values(g.o * g.c * 9, 2);
                    let want = reference(&g, 2, &x, &w, layout);
                    for wide in [false, true] {
                        let y = run((isa, wide), &g, 2, (&x, &w, layout), Store::Plain);
                        close(&y, &want, (9 * g.c) as f64);
                        ran += 1;
                    }
                }
            }
        }
        assert!(ran > 0, "no vector unit ran");
    }

    /// The bias, residual branch (its own and in place) and ReLU, as `channels::forward`.
    #[test]
    fn adds_the_epilogue() {
        let mut ran = 0;
        for isa in vector_units("adds_the_epilogue") {
            let g = Winograd::forward(5, [9, 7], 37, [1, 1]).unwrap();
            let x = values(3 * g.c * g.h * g.w, 3);
            let w = values(g.o * g.c * 9, 4);
            let bias = values(g.o, 5);
            let skip = values(3 * g.o * g.oh * g.ow, 6);
            let plain = reference(&g, 3, &x, &w, Filters::Plain);
            let per = g.oh * g.ow;
            let want_relu: Vec<f64> = plain
                .iter()
                .enumerate()
                .map(|(k, &s)| (s + bias[(k / per) % g.o] as f64).max(0.0))
                .collect();
            let want_skip: Vec<f64> = plain
                .iter()
                .enumerate()
                .map(|(k, &s)| (s + bias[(k / per) % g.o] as f64 + skip[k] as f64).max(0.0))
                .collect();
            for wide in [false, true] {
                let store = Store::BiasRelu(&bias);
                let y = run((isa, wide), &g, 3, (&x, &w, Filters::Plain), store);
                close(&y, &want_relu, 50.0);
                let store = Store::BiasResidualRelu(&bias, Skip::Operand(&skip));
                let y = run((isa, wide), &g, 3, (&x, &w, Filters::Plain), store);
                close(&y, &want_skip, 50.0);
                let mut u = vec![0.0; filter_floats(&g)];
                transformed_filters(&g, &w, Filters::Plain, &mut u);
                let mut scratch = vec![0.0; scratch_floats(&g)];
                let mut y = skip.clone();
                let store = Store::BiasResidualRelu(&bias, Skip::InPlace);
                forward_tiled(isa, &g, 3, (&x, &u, store), &mut scratch, &mut y, wide);
                close(&y, &want_skip, 50.0);
                ran += 1;
            }
        }
        assert!(ran > 0, "no vector unit ran");
    }

    /// The same bits on every unit and either tile width.
    #[test]
    fn bits_do_not_depend_on_the_unit() {
        let g = Winograd::forward(19, [13, 10], 35, [1, 1]).unwrap();
        let x = values(2 * g.c * g.h * g.w, 7);
        let w = values(g.o * g.c * 9, 8);
        let mut results = Vec::new();
        for isa in vector_units("bits_do_not_depend_on_the_unit") {
            for wide in [false, true] {
                results.push(run(
                    (isa, wide),
                    &g,
                    2,
                    (&x, &w, Filters::Plain),
                    Store::Plain,
                ));
            }
        }
        assert!(results.len() >= 2, "no vector unit ran");
        for r in &results[1..] {
            assert!(
                r.iter()
                    .zip(&results[0])
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
    }

    /// The input gradient geometry gives a padded convolution's input gradient: the
    /// definition's on the padded planes, cropped.
    #[test]
    fn is_the_input_gradient() {
        let mut ran = 0;
        for isa in vector_units("is_the_input_gradient") {
            for (c, [h, w], o, pad) in [
                (3, [7, 9], 18, [0, 0]),
                (17, [6, 5], 4, [1, 1]),
                (2, [5, 8], 3, [2, 1]),
            ] {
                let f = Winograd::forward(c, [h, w], o, pad).unwrap();
                let g = Winograd::input_gradient(c, [h, w], o, [f.oh, f.ow], pad).unwrap();
                let dy = values(2 * o * f.oh * f.ow, 9);
                let wt = values(o * c * 9, 10);
                let (ph, pw) = (h + 2 * pad[0], w + 2 * pad[1]);
                let padded = crate::testing::input_gradient(&dy, &wt, (c, ph, pw, o, 3, 3), 2);
                let want: Vec<f64> = (0..2 * c * h * w)
                    .map(|k| {
                        let (bc, r, q) = (k / (h * w), k / w % h, k % w);
                        padded[(bc * ph + r + pad[0]) * pw + q + pad[1]]
                    })
                    .collect();
                let y = run(
                    (isa, true),
                    &g,
                    2,
                    (&dy, &wt, Filters::Flipped),
                    Store::Plain,
                );
                close(&y, &want, (9 * o) as f64);
                ran += 1;
            }
        }
        assert!(ran > 0, "no vector unit ran");
    }

    /// The filter gradient: the definition's on the padded planes.
    #[test]
    fn filter_is_the_gradient() {
        let mut ran = 0;
        for isa in vector_units("filter_is_the_gradient") {
            let shapes = [
                (3, [7, 9], 18, [0, 0]),
                (17, [6, 5], 4, [1, 1]),
                (2, [5, 8], 33, [2, 1]),
                (16, [28, 28], 16, [1, 1]),
            ];
            for (c, [h, w], o, pad) in shapes {
                let g = Winograd::forward(c, [h, w], o, pad).unwrap();
                let (ph, pw) = (h + 2 * pad[0], w + 2 * pad[1]);
                let x = values(3 * c * h * w, 11);
                let dy = values(3 * o * g.oh * g.ow, 12);
                let padded: Vec<f32> = (0..3 * c * ph * pw)
                    .map(|k| {
                        let (bc, r, q) = (k / (ph * pw), k / pw % ph, k % pw);
                        let inside =
                            (pad[0]..pad[0] + h).contains(&r) && (pad[1]..pad[1] + w).contains(&q);
                        if inside {
                            x[(bc * h + r - pad[0]) * w + q - pad[1]]
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let want = crate::testing::filter_gradient(&padded, &dy, (c, ph, pw, o, 3, 3), 3);
                for wide in [false, true] {
                    let mut scratch = vec![f32::NAN; filter_scratch_floats(&g)];
                    let mut dw = vec![f32::NAN; 9 * o * c];
                    filter_tiled(isa, &g, 3, (&x, &dy), &mut scratch, &mut dw, wide);
                    close(&dw, &want, (3 * g.oh * g.ow) as f64);
                    ran += 1;
                }
            }
        }
        assert!(ran > 0, "no vector unit ran");
    }
}
