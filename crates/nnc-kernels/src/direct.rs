//! Direct convolutions on the vector unit ([`crate::simd`]: AVX-512 or AVX2): stride 1, one
//! sample's planes in place, no im2col.
//!
//! LeNet's convolutions have 1–16 channels and 5×5 filters: as GEMMs they are thin (6 or 16
//! rows), and building their column matrices costs as much as the arithmetic. Here the
//! register tile is the product itself: sixteen output positions per vector, several output
//! channels (or filter taps) per tile, every filter weight broadcast from memory into a fused
//! multiply-add.
//!
//! Positions are "wide": output position `p = i·w + j` is counted over the *input's* width
//! `w`, so that tap `(c, ki, kj)` reads the input at `x[c][p + ki·w + kj]`, one contiguous
//! vector load. Lanes with `j ≥ ow` (and past the last row) are masked off: they load zeros
//! and never read outside the input plane.
//!
//! The three products of a convolution layer:
//! - [`forward`]: `y[o][p] = Σ w[o][c][ki][kj] · x[c][p + ki·w + kj]`;
//! - the input gradient is a forward convolution of the output gradient padded by `k − 1`
//!   with the filters transposed and flipped (see [`Conv::input_gradient`]), which skips
//!   the taps that would read only the padding's zero rows (`Conv::live`);
//! - [`filter`]: `dw[o][c][ki][kj] = Σ_samples Σ_p dy[o][p] · x[c][p + ki·w + kj]`.
//!
//! The forward product and the filter gradient also skip the rows each sample leaves blank
//! (`Conv::live_in`; MNIST digits leave a third of the padded image blank).
//!
//! Callers pad inputs themselves (a copy of one sample's planes) and check [`Conv::fits`];
//! elsewhere, or where the compiler's cost model (`conv_cost`) estimates it faster, they use
//! im2col + GEMM (`gemm_conv`).
//!
//! With a bias, the forward product adds it and rectifies in registers before it stores
//! (`relu(y + b)`: the compiler gives it one where that is the convolution's epilogue).

use std::mem::MaybeUninit;

use crate::simd::{self, F32x16, Isa, Kernel, low_bits};
use crate::store::Then;

/// Floats per vector.
const LANES: usize = 16;

/// One sample of a stride-1 correlation over wide positions: `c` input planes of `plane`
/// floats with rows `w` wide, `o` output planes of `oh` wide rows of which the first `ow`
/// columns are real, taps `kh × kw` at offsets `ki·w + kj`.
///
/// Made by its constructors only: the kernels' bounds checks rely on its fields agreeing
/// with each other (a plane holds every tap of every position), so they are private to the
/// crate, and read outside it through [`Conv::plane`], [`Conv::o`], [`Conv::oh`] and [`Conv::ow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv {
    pub(crate) c: usize,
    pub(crate) plane: usize,
    pub(crate) w: usize,
    pub(crate) o: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    /// The input rows (of `w` floats from each plane's start) that may be nonzero; taps that
    /// would read only other rows are skipped.
    pub(crate) live: (usize, usize),
    /// How far apart the taps `kj` and `kj + 1` read: 1 in a plane, or the distance between
    /// the [`Conv::shifted`] copies of a plane.
    pub(crate) kj_stride: usize,
    /// The rows and columns between output positions' first taps in the input. Only
    /// [`crate::channels`] takes strides other than 1 ([`Conv::fits`] is false for them).
    pub(crate) stride: [usize; 2],
    /// Floats from one sample's input planes to the next's: `c·plane`, or more where the
    /// input is a window of a larger tensor ([`Conv::samples_apart`]; [`forward`], [`filter`]
    /// and [`shift_columns`] read such inputs, the other kernels compact ones).
    pub(crate) x_sample: usize,
}

impl Conv {
    /// Floats of an input plane.
    pub fn plane(&self) -> usize {
        self.plane
    }

    /// Output planes.
    pub fn o(&self) -> usize {
        self.o
    }

    /// Rows of an output plane.
    pub fn oh(&self) -> usize {
        self.oh
    }

    /// Real columns of an output row.
    pub fn ow(&self) -> usize {
        self.ow
    }

    /// The forward product of an unpadded convolution of `c × h × w` planes by `o` filters
    /// `kh × kw`.
    pub fn forward(c: usize, h: usize, w: usize, o: usize, kh: usize, kw: usize) -> Conv {
        Conv::forward_strided(c, [h, w], o, [kh, kw], [1, 1])
    }

    /// The forward product of an unpadded convolution of `c × h × w` planes by `o` filters
    /// `kh × kw` at `stride` (rows, columns): every output position's window within the
    /// planes.
    pub fn forward_strided(
        c: usize,
        [h, w]: [usize; 2],
        o: usize,
        [kh, kw]: [usize; 2],
        stride: [usize; 2],
    ) -> Conv {
        Conv {
            c,
            plane: h * w,
            w,
            o,
            oh: (h - kh) / stride[0] + 1,
            ow: (w - kw) / stride[1] + 1,
            kh,
            kw,
            live: (0, h),
            kj_stride: 1,
            stride,
            x_sample: c * h * w,
        }
    }

    /// This convolution reading inputs `floats` apart (at least `c·plane`): each sample's
    /// planes in place in a larger tensor, such as a `concat`'s result.
    ///
    /// # Panics
    /// If `floats` is less than a sample's planes.
    pub fn samples_apart(self, floats: usize) -> Conv {
        assert!(floats >= self.c * self.plane, "samples overlap");
        Conv {
            x_sample: floats,
            ..self
        }
    }

    /// Whether consecutive samples' inputs are adjacent (`c·plane` apart).
    pub(crate) fn compact(&self) -> bool {
        self.x_sample == self.c * self.plane
    }

    /// Floats of `samples` samples' input, from the first's start to the last's end.
    fn input_floats(&self, samples: usize) -> usize {
        match samples {
            0 => 0,
            n => (n - 1) * self.x_sample + self.c * self.plane,
        }
    }

    /// The rows and columns between output positions' windows.
    pub fn stride(&self) -> [usize; 2] {
        self.stride
    }

    /// This forward convolution read from [`shift_columns`]' copies of each input plane:
    /// copy `kj` holds columns `kj..kj + ow` of every row, so rows are `ow` wide, every lane
    /// of a vector is a real position, and tap `(c, ki, kj)` reads copy `kj` of plane `c` at
    /// `p + ki·ow`. It trades the copies for the wide layout's idle lanes (LeNet-5's C3: 7
    /// vectors a plane instead of 9).
    pub fn shifted(&self) -> Conv {
        let plane = self.kw * self.rows() * self.ow;
        Conv {
            plane,
            w: self.ow,
            kj_stride: self.rows() * self.ow,
            x_sample: self.c * plane,
            ..*self
        }
    }

    /// The geometry [`filter`] runs on for this convolution's filter gradient, and the
    /// floats of [`shift_columns`] copies it reads per sample (0 when it reads the planes
    /// themselves): the copies where they save a fifth of the vectors (LeNet-5's C3 saves 2
    /// of 9 and gains; C1 would save 7 of 56 and lose to the copying).
    pub fn filter_layout(&self) -> (Conv, usize) {
        let s = self.shifted();
        if 5 * s.vectors() <= 4 * self.vectors() {
            (s, self.c * s.plane)
        } else {
            (*self, 0)
        }
    }

    /// Rows of an input plane.
    fn rows(&self) -> usize {
        self.oh + self.kh - 1
    }

    /// The product that gives this forward convolution's input gradient: `o` planes of the
    /// output gradient in wide layout (zero at columns `j ≥ ow`), each preceded by
    /// [`Conv::front`] and followed by `(kh − 1)·w` zeros ([`gradient_planes`] builds
    /// them), correlated with the filters transposed (`o` ↔ `c`) and flipped. Every input
    /// position is real.
    pub fn input_gradient(&self) -> Conv {
        let h = self.rows();
        Conv {
            c: self.o,
            plane: (h + self.kh - 1) * self.w + self.kw - 1,
            w: self.w,
            o: self.c,
            oh: h,
            ow: self.w,
            kh: self.kh,
            kw: self.kw,
            // Output-gradient row `i` lies in row `kh − 1 + i` (from column `kw − 1`).
            live: (self.kh - 1, self.kh - 1 + self.oh),
            kj_stride: 1,
            stride: [1, 1],
            x_sample: self.o * ((h + self.kh - 1) * self.w + self.kw - 1),
        }
    }

    /// Zeros before each output-gradient plane in [`Conv::input_gradient`]'s input.
    pub fn front(&self) -> usize {
        (self.kh - 1) * self.w + self.kw - 1
    }

    /// Vectors covering the wide output positions `0..oh·w`.
    fn vectors(&self) -> usize {
        (self.oh * self.w).div_ceil(LANES)
    }

    /// Floats per wide output plane.
    pub fn wide_plane(&self) -> usize {
        self.vectors() * LANES
    }

    /// Output planes rounded up to whole forward tiles: the weights of [`forward`] have this
    /// many rows (the extra ones zero).
    pub fn o_pad(&self) -> usize {
        self.o.next_multiple_of(forward_rows(self.o))
    }

    /// Filter taps per output plane.
    pub fn taps(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// The filter rows `ki` whose taps can read a [`Conv::live`] input row from output
    /// vectors `v0..v0 + n`: output row `r` reads input row `r + ki` (real lanes only, and
    /// the others are not read). Skipping the other taps skips products with zeros, which
    /// leaves every sum unchanged: an accumulator that starts at +0 never holds -0.
    fn tap_rows(&self, v0: usize, n: usize) -> std::ops::Range<usize> {
        let first = v0 * LANES / self.w;
        let last = ((v0 + n) * LANES).min(self.oh * self.w).saturating_sub(1) / self.w;
        let lo = self.live.0.saturating_sub(last);
        let hi = self.live.1.saturating_sub(first).min(self.kh);
        lo..hi.max(lo)
    }

    /// Whether some input rows are known to be zero ([`Conv::live`]).
    fn skips_rows(&self) -> bool {
        self.live != (0, self.rows())
    }

    /// [`Conv::live`] narrowed to the rows of one sample's input `x` that hold a nonzero in
    /// some plane: MNIST's digits leave a third of LeNet-5's padded rows blank, and C1's
    /// products with them are skipped. Only where a tap reads within its own row (every
    /// forward convolution; not the input gradient's planes, whose reads run into the next
    /// row and whose zero rows [`Conv::live`] already knows).
    fn live_in(&self, x: &[f32]) -> (usize, usize) {
        if self.kj_stride != 1 || self.ow + self.kw - 1 > self.w {
            return self.live;
        }
        // Bits without the sign: zero for +0 and -0 alike. No early exit, so it vectorizes.
        let zero = |r: usize| {
            (0..self.c).all(|c| {
                let row = &x[c * self.plane + r * self.w..][..self.w];
                row.iter().fold(0, |any, v| any | (v.to_bits() << 1)) == 0
            })
        };
        let (mut lo, mut hi) = self.live;
        while lo < hi && zero(lo) {
            lo += 1;
        }
        while hi > lo && zero(hi - 1) {
            hi -= 1;
        }
        (lo, hi)
    }

    /// The vectors `lo..hi` of a wide output plane whose real lanes read a [`Conv::live`]
    /// row (`live`) at filter row `ki`: output rows `i` with `i + ki` in `live`.
    fn live_vectors(&self, live: (usize, usize), ki: usize) -> (usize, usize) {
        let first = live.0.saturating_sub(ki).min(self.oh);
        let end = live.1.saturating_sub(ki).min(self.oh);
        if first >= end {
            return (0, 0);
        }
        (first * self.w / LANES, (end * self.w).div_ceil(LANES))
    }

    /// Whether [`filter`] handles this filter width.
    pub fn filter_supported(&self) -> bool {
        (1..=MAX_FILTER_WIDTH).contains(&self.kw)
    }

    /// For each vector of a wide plane, its lanes that are real positions (`p < oh·w`,
    /// `j < ow`): only those are loaded, so no tap reads outside its input plane.
    fn masks(&self) -> [u16; MAX_VECTORS] {
        let mut masks = [0u16; MAX_VECTORS];
        let mut j = 0;
        for p in 0..self.oh * self.w {
            if j < self.ow {
                masks[p / LANES] |= 1 << (p % LANES);
            }
            j += 1;
            if j == self.w {
                j = 0;
            }
        }
        masks
    }

    /// For each vector of a wide plane, the index of its first real lane in the compact
    /// `oh × ow` plane (the number of real positions before it).
    fn starts(&self, masks: &[u16; MAX_VECTORS]) -> [usize; MAX_VECTORS] {
        let mut starts = [0; MAX_VECTORS];
        let mut n = 0;
        for (start, m) in starts.iter_mut().zip(masks) {
            *start = n;
            n += m.count_ones() as usize;
        }
        starts
    }

    /// Whether the direct kernels handle this geometry: stride 1, and planes of at most
    /// [`MAX_VECTORS`] vectors (their masks live on the stack, so that a kernel allocates
    /// nothing).
    pub fn fits(&self) -> bool {
        self.stride == [1, 1] && self.vectors() <= MAX_VECTORS
    }
}

/// The most vectors of a wide plane [`Conv::fits`] allows: 8,192 positions (a 90×90 plane).
pub const MAX_VECTORS: usize = 512;

/// Output planes per forward tile.
fn forward_rows(o: usize) -> usize {
    if o <= 6 { 6 } else { 8 }
}

/// The widest filter [`filter`] handles (its tile holds a row of taps).
pub const MAX_FILTER_WIDTH: usize = 5;
/// Output planes per filter-gradient tile: 4, or 3 when that divides `o` and 4 does not
/// (LeNet-5's C1 has 6).
fn filter_tile_rows(o: usize) -> usize {
    if !o.is_multiple_of(4) && o.is_multiple_of(3) {
        3
    } else {
        4
    }
}

/// `y[b][o][i][j] = Σ_{c,ki,kj} w[o·taps + (c·kh + ki)·kw + kj] · x[b][c·plane + (i + ki)·w + j + kj]`
/// for each of `samples` samples (inputs `c·plane` floats apart, outputs `o·oh·ow`): the
/// real lanes of each wide vector are compressed into place, so `y` is compact.
///
/// With a `bias`, each output is `relu(y + bias[o])` instead, computed as the `add` and
/// `relu` loops after the convolution would (one rounding for the sum; `x > 0 ? x : +0`).
///
/// # Panics
/// If the slices are shorter than the geometry needs, or the CPU does not support `isa`.
pub fn forward(
    isa: Isa,
    g: &Conv,
    samples: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let stored = Stored::relu(bias);
    forward_rows_of(isa, g, samples, (x, w, stored), (y, None), true, false);
}

/// [`forward`]'s product `y` with [`Then`]'s activation: the bias (and slope) applied as it
/// stores, each one rounding as in the loops, then `f` along each sample's output planes
/// while they are in cache, as the compiled loops apply it ([`crate::transcendental::apply`]), so
/// the bits are those of the product and the loops run one after the other. `y` receives
/// `t`, and `scaled` `scale·t`; without `scaled`, `y` receives `scale·t`.
///
/// # Panics
/// As [`forward`]; if `scaled` is given without a scale, or is shorter than the output.
#[allow(clippy::too_many_arguments)]
pub fn forward_then(
    isa: Isa,
    g: &Conv,
    samples: usize,
    x: &[f32],
    w: &[f32],
    then: Then<'_>,
    y: &mut [f32],
    scaled: Option<&mut [f32]>,
) {
    let stored = Stored::Then(then);
    forward_rows_of(isa, g, samples, (x, w, stored), (y, scaled), true, false);
}

/// What [`forward`] adds to each output as it stores.
#[derive(Clone, Copy)]
enum Stored<'a> {
    /// The product alone.
    Product,
    /// `relu(y + b)`.
    BiasRelu(&'a [f32]),
    /// `(y + b)·slope`, the rest of the activation then applied to each sample's planes.
    Then(Then<'a>),
}

impl<'a> Stored<'a> {
    /// `relu(y + b)` with a bias, else the product.
    fn relu(bias: Option<&'a [f32]>) -> Stored<'a> {
        bias.map_or(Stored::Product, Stored::BiasRelu)
    }

    fn bias(self) -> Option<&'a [f32]> {
        match self {
            Stored::Product => None,
            Stored::BiasRelu(b) | Stored::Then(Then { bias: b, .. }) => Some(b),
        }
    }
}

/// [`forward`], skipping each sample's zero rows ([`Conv::live_in`]) where `data_rows`, with
/// AVX-512's tiles on any unit where `wide` (so that AVX2 machines test them too).
fn forward_rows_of(
    isa: Isa,
    g: &Conv,
    samples: usize,
    (x, w, stored): (&[f32], &[f32], Stored<'_>),
    (y, mut scaled): (&mut [f32], Option<&mut [f32]>),
    data_rows: bool,
    wide: bool,
) {
    assert!(isa.supported(), "direct convolutions need {}", isa.name());
    let out = g.o * g.oh * g.ow;
    assert!(x.len() >= g.input_floats(samples), "input too short");
    assert!(w.len() >= g.o_pad() * g.taps(), "weights too short");
    assert!(y.len() >= samples * out, "output too short");
    assert!(
        scaled.as_ref().is_none_or(|s| s.len() >= samples * out),
        "scaled output too short"
    );
    assert!(
        stored.bias().is_none_or(|b| b.len() >= g.o),
        "bias too short"
    );
    assert!(g.fits(), "planes too large");
    let masks = g.masks();
    let starts = g.starts(&masks);
    for b in 0..samples {
        let (x, y) = (&x[b * g.x_sample..], &mut y[b * out..(b + 1) * out]);
        let s = if data_rows {
            &Conv {
                live: g.live_in(x),
                ..*g
            }
        } else {
            g
        };
        let planes = Planes {
            g: s,
            x,
            w: (w, stored),
            y: &mut *y,
            masks: (&masks, &starts),
            wide,
        };
        // SAFETY: the unit is supported (asserted); the slices are long enough for every
        // unmasked access (asserted above; masked lanes are not accessed); the kernel's
        // pointers come from these slices, borrowed for the call (`y` as `&mut`), so no one
        // else accesses what it writes meanwhile, and the asserts panic before any is used.
        unsafe { simd::run(isa, planes) };
        if let Stored::Then(then) = stored {
            let scaled = scaled.as_deref_mut().map(|s| &mut s[b * out..][..out]);
            then.finish(isa, y, scaled);
        }
    }
}

/// One sample's forward product: tiles of `OB` output planes by `NV` vectors, and the
/// remaining vectors in one narrower tile.
struct Planes<'a> {
    g: &'a Conv,
    x: &'a [f32],
    w: (&'a [f32], Stored<'a>),
    y: &'a mut [f32],
    masks: (&'a [u16], &'a [usize]),
    wide: bool,
}

impl Kernel for Planes<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let Planes {
            g,
            x,
            w,
            y,
            masks,
            wide,
        } = self;
        // SAFETY (all calls): forwarded.
        unsafe {
            if simd::wide_tiles::<V>(wide) {
                // `OB·NV` accumulators, `NV` inputs and a broadcast weight fill the 32
                // registers. Where rows of the input are known to be zero, one vector per
                // tile skips the most taps (measured on LeNet-5's C3 input gradient: 140 →
                // 105 µs for 16 samples, against 129 µs with four vectors a tile and 118 µs
                // with two). Rows a sample leaves blank are skipped by the wider tiles too,
                // two rows at a time.
                match (forward_rows(g.o), g.skips_rows()) {
                    (6, false) => forward_planes::<V, 6, 4>(g, x, w, y, masks),
                    (6, true) => forward_planes::<V, 6, 1>(g, x, w, y, masks),
                    (_, false) => forward_planes::<V, 8, 3>(g, x, w, y, masks),
                    (_, true) => forward_planes::<V, 8, 1>(g, x, w, y, masks),
                }
            } else {
                // One vector by 6 planes: 12 registers of accumulators, two for the input
                // and a broadcast fill AVX2's sixteen (measured on LeNet-5's C1 and C3
                // input gradient, against 3 planes: 40–50 % faster). Of 8 planes, 4 at a time:
                // 8 spill, and measured no faster.
                match forward_rows(g.o) {
                    6 => forward_planes::<V, 6, 1>(g, x, w, y, masks),
                    _ => forward_planes::<V, 4, 1>(g, x, w, y, masks),
                }
            }
        }
    }
}

/// Tiles of `OB` output planes by `NV` vectors over the whole plane.
#[inline(always)]
unsafe fn forward_planes<V: F32x16, const OB: usize, const NV: usize>(
    g: &Conv,
    x: &[f32],
    w: (&[f32], Stored<'_>),
    y: &mut [f32],
    masks: (&[u16], &[usize]),
) {
    let vectors = g.vectors();
    for ob in (0..g.o_pad()).step_by(OB) {
        let mut v = 0;
        // SAFETY (all calls): forwarded; each tile's vectors lie below `vectors`.
        while v + NV <= vectors {
            unsafe { forward_tile::<V, OB, NV>(g, x, w, y, masks, ob, v) };
            v += NV;
        }
        match vectors - v {
            3 => unsafe { forward_tile::<V, OB, 3>(g, x, w, y, masks, ob, v) },
            2 => unsafe { forward_tile::<V, OB, 2>(g, x, w, y, masks, ob, v) },
            1 => unsafe { forward_tile::<V, OB, 1>(g, x, w, y, masks, ob, v) },
            _ => {}
        }
    }
}

/// Output planes `ob..ob + OB` at vectors `v0..v0 + NV`, accumulated in registers over
/// every tap.
#[inline(always)]
unsafe fn forward_tile<V: F32x16, const OB: usize, const NV: usize>(
    g: &Conv,
    x: &[f32],
    (w, stored): (&[f32], Stored<'_>),
    y: &mut [f32],
    (masks, starts): (&[u16], &[usize]),
    ob: usize,
    v0: usize,
) {
    let taps = g.taps();
    let plane = g.oh * g.ow;
    let m: [u16; NV] = std::array::from_fn(|n| masks[v0 + n]);
    // SAFETY (throughout): the CPU has `V`'s unit (the caller's contract).
    let mut acc = [[unsafe { V::zero() }; NV]; OB];
    let rows = g.tap_rows(v0, NV);
    // Lanes that are not real positions feed only accumulator lanes that are never stored, so
    // where masked loads cost more than plain ones (AVX2's `vmaskmovps`), a tile whose every
    // load ends inside `x` (all but the last sample's last vectors) loads whole vectors.
    let reach = (g.c - 1) * g.plane
        + rows.end.saturating_sub(1) * g.w
        + (g.kw - 1) * g.kj_stride
        + (v0 + NV) * LANES;
    let plain = !V::FREE_MASKS && !rows.is_empty() && reach <= x.len();
    let (x, w, y) = (x.as_ptr(), w.as_ptr(), y.as_mut_ptr());
    for c in 0..g.c {
        for ki in rows.clone() {
            for kj in 0..g.kw {
                let at = c * g.plane + ki * g.w + kj * g.kj_stride + v0 * LANES;
                // SAFETY: unmasked lanes are real positions, whose taps lie inside input
                // plane `c`; masked lanes are not read (the address is formed with wrapping
                // arithmetic and may lie outside); plain loads end by `reach`, inside `x`.
                // (Loops, not closures: a closure is compiled without the unit's features,
                // and the operations in it would not be inlined.)
                let mut xv = [unsafe { V::zero() }; NV];
                for (n, xv) in xv.iter_mut().enumerate() {
                    let p = x.wrapping_add(at + n * LANES);
                    *xv = unsafe {
                        if plain {
                            V::load(p)
                        } else {
                            V::load_masked(m[n], p)
                        }
                    };
                }
                let tap = (c * g.kh + ki) * g.kw + kj;
                for (o, row) in acc.iter_mut().enumerate() {
                    // SAFETY: `w` holds `o_pad · taps` floats.
                    let wv = unsafe { V::splat(*w.add((ob + o) * taps + tap)) };
                    for (a, &xv) in row.iter_mut().zip(&xv) {
                        *a = unsafe { wv.mul_add(xv, *a) };
                    }
                }
            }
        }
    }
    for (o, row) in acc.iter().enumerate().take(g.o.saturating_sub(ob)) {
        for (n, &a) in row.iter().enumerate() {
            // SAFETY: plane `ob + o < o` of `y` holds `oh·ow` floats, and the real lanes of
            // vector `v0 + n` are positions `start..start + count` of it.
            unsafe {
                let a = match stored {
                    Stored::BiasRelu(b) => {
                        let z = a.add(V::splat(b[ob + o]));
                        z.select(z.greater(V::zero()))
                    }
                    Stored::Then(t) => {
                        let z = a.add(V::splat(t.bias[ob + o]));
                        match t.slope {
                            Some(slope) => z.mul(V::splat(slope)),
                            None => z,
                        }
                    }
                    Stored::Product => a,
                };
                // The real lanes, packed, to their compact positions.
                a.store_compressed(m[n], y.add((ob + o) * plane + starts[v0 + n]));
            }
        }
    }
}

/// `dw[(o·c + ci)·kh·kw + ki·kw + kj] = Σ_b Σ_p dy[b][o·wide_plane + p] · x[b][ci·plane + p + ki·w + kj]`
/// over `samples` samples (inputs `c·plane` floats apart, wide output gradients
/// `filter_rows · wide_plane` apart: planes from `o` on are read, their sums dropped) and the real
/// positions `p` (the others are not read).
///
/// # Panics
/// If the slices are short, the filter is wider than [`MAX_FILTER_WIDTH`], `g` is strided or
/// too large ([`Conv::fits`]), or the CPU does not support `isa`.
pub fn filter(isa: Isa, g: &Conv, samples: usize, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    filter_rows_of(isa, g, samples, (x, dy), dw, true, false);
}

/// The most samples of one [`filter`] call whose zero rows are skipped (their live rows are
/// kept on the stack); later samples are summed over every row.
const LIVE_SAMPLES: usize = 128;

/// [`filter`], skipping each sample's zero rows ([`Conv::live_in`]) where `data_rows`, with
/// AVX-512's tiles on any unit where `wide`.
fn filter_rows_of(
    isa: Isa,
    g: &Conv,
    samples: usize,
    (x, dy): (&[f32], &[f32]),
    dw: &mut [f32],
    data_rows: bool,
    wide: bool,
) {
    assert!(isa.supported(), "direct convolutions need {}", isa.name());
    assert!(g.filter_supported(), "filter too wide");
    assert!(g.fits(), "planes too large, or strided");
    assert!(x.len() >= g.input_floats(samples), "input too short");
    assert!(
        dy.len() >= samples * filter_rows(g) * g.wide_plane(),
        "gradient too short"
    );
    assert!(dw.len() >= g.o * g.taps(), "filter gradient too short");
    assert!(g.fits(), "planes too large");
    let masks = g.masks();
    let mut live = [g.live; LIVE_SAMPLES];
    if data_rows {
        for (b, live) in live.iter_mut().enumerate().take(samples) {
            *live = g.live_in(&x[b * g.x_sample..]);
        }
    }
    // A loop over a range of vectors that changes from sample to sample costs C3's filter
    // gradient (7 vectors a plane) 40 %, so it runs only where some sample has blank rows.
    let narrow = live[..samples.min(LIVE_SAMPLES)]
        .iter()
        .any(|&l| l != g.live);
    let k = FilterKernel {
        g,
        samples,
        x,
        dy,
        dw,
        m: (&masks, &live),
        narrow,
        wide,
    };
    // SAFETY: as in `forward`.
    unsafe { simd::run(isa, k) };
}

/// [`filter_tiles`] for a geometry's filter width and tile.
struct FilterKernel<'a> {
    g: &'a Conv,
    samples: usize,
    x: &'a [f32],
    dy: &'a [f32],
    dw: &'a mut [f32],
    m: (&'a [u16], &'a [(usize, usize)]),
    narrow: bool,
    wide: bool,
}

impl Kernel for FilterKernel<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        // SAFETY (all calls): forwarded.
        unsafe {
            if self.narrow {
                self.tiles::<V, true>()
            } else {
                self.tiles::<V, false>()
            }
        }
    }
}

impl FilterKernel<'_> {
    /// Tiles of `ROWS` output planes by the filter's width: 3 or 4 rows on AVX-512 (up to 20
    /// accumulators, 5 inputs and a gradient vector of the 32 registers); one on AVX2 (5
    /// accumulators of two halves each, of its sixteen).
    #[inline(always)]
    unsafe fn tiles<V: F32x16, const NARROW: bool>(self) {
        let FilterKernel {
            g,
            samples,
            x,
            dy,
            dw,
            m,
            wide,
            ..
        } = self;
        let wide = simd::wide_tiles::<V>(wide);
        let rows = if wide { filter_tile_rows(g.o) } else { 1 };
        // AVX-512's tiles of 3–4 planes reuse each input enough: one block of all samples.
        let block = if wide {
            samples.max(1)
        } else {
            AVX2_SAMPLE_BLOCK
        };
        let m = (m, block);
        // SAFETY (all calls): forwarded.
        unsafe {
            match (g.kw, rows) {
                (1, 1) => filter_tiles::<V, 1, 1, NARROW>(g, samples, x, dy, dw, m),
                (2, 1) => filter_tiles::<V, 2, 1, NARROW>(g, samples, x, dy, dw, m),
                (3, 1) => filter_tiles::<V, 3, 1, NARROW>(g, samples, x, dy, dw, m),
                (4, 1) => filter_tiles::<V, 4, 1, NARROW>(g, samples, x, dy, dw, m),
                (_, 1) => filter_tiles::<V, 5, 1, NARROW>(g, samples, x, dy, dw, m),
                (1, 3) => filter_tiles::<V, 1, 3, NARROW>(g, samples, x, dy, dw, m),
                (2, 3) => filter_tiles::<V, 2, 3, NARROW>(g, samples, x, dy, dw, m),
                (3, 3) => filter_tiles::<V, 3, 3, NARROW>(g, samples, x, dy, dw, m),
                (4, 3) => filter_tiles::<V, 4, 3, NARROW>(g, samples, x, dy, dw, m),
                (_, 3) => filter_tiles::<V, 5, 3, NARROW>(g, samples, x, dy, dw, m),
                (1, _) => filter_tiles::<V, 1, 4, NARROW>(g, samples, x, dy, dw, m),
                (2, _) => filter_tiles::<V, 2, 4, NARROW>(g, samples, x, dy, dw, m),
                (3, _) => filter_tiles::<V, 3, 4, NARROW>(g, samples, x, dy, dw, m),
                (4, _) => filter_tiles::<V, 4, 4, NARROW>(g, samples, x, dy, dw, m),
                _ => filter_tiles::<V, 5, 4, NARROW>(g, samples, x, dy, dw, m),
            }
        }
    }
}

/// Planes of wide output gradient per sample that [`filter`] reads: `o` rounded up to whole
/// tiles.
pub fn filter_rows(g: &Conv) -> usize {
    g.o.next_multiple_of(filter_tile_rows(g.o))
}

/// A plane's lane masks ([`Conv::masks`]) and each sample's live rows.
type LiveMasks<'a> = (&'a [u16], &'a [(usize, usize)]);

/// Tiles of output planes whose accumulators one pass over a block of samples carries (on
/// the stack between blocks).
const CARRIED_TILES: usize = 16;
/// Samples per block on AVX2: their inputs for one filter row stay in L1 while every tile of
/// output planes reads them (one plane per tile there, so each input is read once per output
/// plane; over all 32 samples of LeNet-5's batch they came from L2).
const AVX2_SAMPLE_BLOCK: usize = 4;

#[inline(always)]
unsafe fn filter_tiles<V: F32x16, const KW: usize, const ROWS: usize, const NARROW: bool>(
    g: &Conv,
    samples: usize,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    ((masks, live), block): (LiveMasks, usize),
) {
    let (stride, vectors) = (g.wide_plane(), g.vectors());
    let (sample_x, sample_dy) = (g.x_sample, filter_rows(g) * stride);
    let (xp, dyp) = (x.as_ptr(), dy.as_ptr());
    for c in 0..g.c {
        for ki in 0..g.kh {
            for chunk in (0..g.o).step_by(ROWS * CARRIED_TILES) {
                let tiles = (chunk..g.o).step_by(ROWS).take(CARRIED_TILES);
                // Written by the first block before any read (not zeroed up front: 20 KiB a
                // filter row with AVX-512's tiles, which need no carrying).
                let mut carried =
                    [const { MaybeUninit::<[[V; KW]; ROWS]>::uninit() }; CARRIED_TILES];
                // (At least one block, so that no samples still writes every tile.)
                for b0 in (0..samples.max(1)).step_by(block) {
                    for (ob, carried) in tiles.clone().zip(&mut carried) {
                        // Each accumulator adds the same products in the same order (sample
                        // by sample, vector by vector) whatever the block.
                        // SAFETY: the CPU has `V`'s unit (the caller's contract), and a later
                        // block reads what the first one wrote.
                        let mut acc = if b0 == 0 {
                            [[unsafe { V::zero() }; KW]; ROWS]
                        } else {
                            unsafe { carried.assume_init_read() }
                        };
                        for b in b0..(b0 + block).min(samples) {
                            // Vectors that read only a sample's zero rows add products with
                            // zeros, which change no sum (an accumulator that starts at +0
                            // never holds -0).
                            let (lo, hi) = if NARROW {
                                g.live_vectors(*live.get(b).unwrap_or(&g.live), ki)
                            } else {
                                (0, vectors)
                            };
                            let xb =
                                xp.wrapping_add(b * sample_x + c * g.plane + ki * g.w + lo * LANES);
                            let dyb = dyp.wrapping_add(b * sample_dy + ob * stride + lo * LANES);
                            for (v, &m) in masks[lo..hi].iter().enumerate() {
                                let at = v * LANES;
                                // The tile's gradient vectors first, then each tap's input
                                // vector as it is used: `ROWS + 1` registers besides the
                                // accumulators (AVX2 has no room for all `KW` inputs at once).
                                let mut d = [unsafe { V::zero() }; ROWS];
                                for (o, d) in d.iter_mut().enumerate() {
                                    // SAFETY: `dy` holds `samples · rows · stride` floats;
                                    // lanes that are not real positions are not read.
                                    *d = unsafe {
                                        V::load_masked(m, dyb.wrapping_add(o * stride + at))
                                    };
                                }
                                for kj in 0..KW {
                                    // SAFETY: as in `forward_tile`: unmasked lanes read
                                    // inside plane `c`.
                                    let xv = unsafe {
                                        V::load_masked(m, xb.wrapping_add(at + kj * g.kj_stride))
                                    };
                                    for (row, &d) in acc.iter_mut().zip(&d) {
                                        row[kj] = unsafe { d.mul_add(xv, row[kj]) };
                                    }
                                }
                            }
                        }
                        carried.write(acc);
                    }
                }
                for (ob, acc) in tiles.zip(&carried) {
                    // SAFETY: the first block wrote every tile's accumulators.
                    let acc = unsafe { acc.assume_init_read() };
                    for (o, row) in acc.iter().enumerate().take(g.o - ob) {
                        for (kj, &a) in row.iter().enumerate() {
                            dw[((ob + o) * g.c + c) * g.kh * g.kw + ki * g.kw + kj] =
                                unsafe { a.sum() };
                        }
                    }
                }
            }
        }
    }
}

/// One sample's output gradient `dy` (`o × oh × ow`) laid out as the input of
/// [`Conv::input_gradient`]: `o` planes, zero but for the rows of `dy` in wide layout after
/// [`Conv::front`] zeros.
pub fn gradient_planes(g: &Conv, dy: &[f32], out: &mut [f32]) {
    let t = g.input_gradient();
    for (plane, dy) in out
        .chunks_exact_mut(t.plane)
        .zip(dy.chunks_exact(g.oh * g.ow))
        .take(g.o)
    {
        plane.fill(0.0);
        for (i, row) in dy.chunks_exact(g.ow).enumerate() {
            plane[g.front() + i * g.w..][..g.ow].copy_from_slice(row);
        }
    }
}

/// The filters `w` (`o × c × kh × kw`) transposed and flipped for
/// [`Conv::input_gradient`]: `out[ci][o][kh − 1 − ki][kw − 1 − kj] = w[o][ci][ki][kj]`, with
/// zero rows up to its `o_pad`.
pub fn flipped_filters(g: &Conv, w: &[f32], out: &mut [f32]) {
    let t = g.input_gradient();
    let k = g.kh * g.kw;
    out[..t.o_pad() * t.taps()].fill(0.0);
    for o in 0..g.o {
        for ci in 0..g.c {
            for tap in 0..k {
                out[(ci * g.o + o) * k + k - 1 - tap] = w[(o * g.c + ci) * k + tap];
            }
        }
    }
}

/// The input of [`Conv::shifted`] for `samples` samples of `c × h × w` planes `x` (`g` is
/// the unshifted convolution): `out[b][c][kj][i][j] = x[b][c][i][j + kj]` for `j < ow`.
///
/// # Panics
/// If the slices are short or the CPU does not support `isa`.
pub fn shift_columns(isa: Isa, g: &Conv, samples: usize, x: &[f32], out: &mut [f32]) {
    assert!(isa.supported(), "direct convolutions need {}", isa.name());
    let h = g.rows();
    assert!(x.len() >= g.input_floats(samples), "input too short");
    assert!(
        out.len() >= samples * g.c * g.shifted().plane,
        "output too short"
    );
    let k = ShiftRows {
        g,
        samples,
        h,
        x,
        out,
    };
    // SAFETY: the unit is supported (asserted); every row copied lies inside `x` and `out`
    // (asserted lengths: row `i < h` of plane `c` of sample `b`, columns `kj..kj + ow ≤ w`);
    // `out` is borrowed `&mut` for the call, so nothing else accesses it meanwhile.
    unsafe { simd::run(isa, k) };
}

struct ShiftRows<'a> {
    g: &'a Conv,
    samples: usize,
    h: usize,
    x: &'a [f32],
    out: &'a mut [f32],
}

impl Kernel for ShiftRows<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let ShiftRows {
            g,
            samples,
            h,
            x,
            out,
        } = self;
        let planes = samples * g.c;
        let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
        let total = planes * g.kw * h * g.ow;
        // Whole vectors, stored in increasing order: each one's lanes past its row are
        // overwritten by the next row's, except near the end, where the stores are masked.
        let vectors = g.ow.div_ceil(LANES);
        let tail = match g.ow % LANES {
            0 => u16::MAX,
            n => low_bits(n),
        };
        for plane in 0..planes {
            for kj in 0..g.kw {
                for i in 0..h {
                    let from = plane / g.c * g.x_sample + plane % g.c * g.plane + i * g.w + kj;
                    let to = ((plane * g.kw + kj) * h + i) * g.ow;
                    for v in 0..vectors {
                        let m = if v + 1 == vectors { tail } else { u16::MAX };
                        let at = to + v * LANES;
                        // SAFETY: the caller's bounds for the row's `ow` floats; lanes past
                        // them are not read, and are written only below `total` (then
                        // overwritten).
                        unsafe {
                            let x = V::load_masked(m, xp.add(from + v * LANES));
                            if at + LANES <= total {
                                x.store(op.add(at));
                            } else {
                                x.store_masked(m, op.add(at));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One sample's output gradient `dy` (`o × oh × ow`) in the wide layout [`filter`] reads
/// (`filter_rows` planes of `stride`; positions that are not real are left as they are).
pub fn wide_gradient(g: &Conv, dy: &[f32], out: &mut [f32]) {
    let stride = g.wide_plane();
    for (plane, dy) in out
        .chunks_exact_mut(stride)
        .zip(dy.chunks_exact(g.oh * g.ow))
    {
        for (i, row) in dy.chunks_exact(g.ow).enumerate() {
            plane[i * g.w..][..g.ow].copy_from_slice(row);
        }
    }
}

/// Times the direct kernels on LeNet-5's convolutions (and from shifted copies) on one thread,
/// printing the best of 50 runs (`cargo bench -p nnc-kernels --bench kernels`).
#[doc(hidden)]
pub fn time_lenet_shapes(isa: Isa) {
    let samples = 16;
    for (name, g) in [
        ("c1", Conv::forward(1, 32, 32, 6, 5, 5)),
        ("c3", Conv::forward(6, 14, 14, 16, 5, 5)),
        (
            "c3 input gradient",
            Conv::forward(6, 14, 14, 16, 5, 5).input_gradient(),
        ),
    ] {
        let x = vec![0.5f32; samples * g.c * g.plane];
        let w = vec![0.1f32; g.o_pad() * g.taps()];
        let mut out = vec![0.0f32; samples * g.o * g.oh * g.ow];
        let dy = vec![0.1f32; samples * filter_rows(&g) * g.wide_plane()];
        let mut dw = vec![0.0f32; g.o * g.taps()];
        let mut best = [f64::MAX; 2];
        for _ in 0..50 {
            let t = std::time::Instant::now();
            forward(isa, &g, samples, &x, &w, None, &mut out);
            best[0] = best[0].min(t.elapsed().as_secs_f64() * 1e6);
            let t = std::time::Instant::now();
            if g.filter_supported() {
                filter(isa, &g, samples, &x, &dy, &mut dw);
            }
            best[1] = best[1].min(t.elapsed().as_secs_f64() * 1e6);
        }
        println!(
            "{name}: forward {:.1} µs, filter {:.1} µs ({samples} samples, one thread)",
            best[0], best[1]
        );
        if g.skips_rows() {
            continue;
        }
        // The same from shifted copies of the columns, the copying included.
        let s = g.shifted();
        let mut xs = vec![0.0f32; samples * g.c * s.plane];
        let dy = vec![0.1f32; samples * filter_rows(&s) * s.wide_plane()];
        let mut best = [f64::MAX; 3];
        for _ in 0..50 {
            let t = std::time::Instant::now();
            shift_columns(isa, &g, samples, &x, &mut xs);
            best[2] = best[2].min(t.elapsed().as_secs_f64() * 1e6);
            forward(isa, &s, samples, &xs, &w, None, &mut out);
            best[0] = best[0].min(t.elapsed().as_secs_f64() * 1e6);
            let t = std::time::Instant::now();
            shift_columns(isa, &g, samples, &x, &mut xs);
            filter(isa, &s, samples, &xs, &dy, &mut dw);
            best[1] = best[1].min(t.elapsed().as_secs_f64() * 1e6);
        }
        println!(
            "{name} shifted: forward {:.1} µs, filter {:.1} µs (the copies {:.1} µs)",
            best[0], best[1], best[2]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, filter_gradient, values};
    use crate::transcendental;

    /// (c, h, w, o, kh, kw): LeNet-5's C1 and C3, and odd shapes.
    const SHAPES: [(usize, usize, usize, usize, usize, usize); 8] = [
        (1, 32, 32, 6, 5, 5),
        (6, 14, 14, 16, 5, 5),
        (1, 3, 3, 1, 1, 1),
        (2, 7, 9, 3, 3, 2),
        (3, 6, 5, 9, 2, 3),
        (2, 20, 17, 7, 4, 5),
        (5, 4, 30, 13, 4, 1),
        (9, 8, 7, 4, 3, 3),
    ];

    /// The reference: `y[b][o][i][j] = Σ w[o][c][ki][kj] · x[b][c][i + ki][j + kj]`.
    fn conv(x: &[f32], w: &[f32], s: (usize, usize, usize, usize, usize, usize)) -> Vec<f64> {
        let (c, h, wd, o, kh, kw) = s;
        let (oh, ow) = (h + 1 - kh, wd + 1 - kw);
        let samples = x.len() / (c * h * wd);
        let mut y = vec![0.0f64; samples * o * oh * ow];
        for b in 0..samples {
            for oc in 0..o {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut sum = 0.0f64;
                        for ci in 0..c {
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    sum += w[((oc * c + ci) * kh + ki) * kw + kj] as f64
                                        * x[((b * c + ci) * h + i + ki) * wd + j + kj] as f64;
                                }
                            }
                        }
                        y[((b * o + oc) * oh + i) * ow + j] = sum;
                    }
                }
            }
        }
        y
    }

    fn close(got: f32, want: f64, what: &str) {
        assert!(
            (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
            "{what}: {got} vs {want}"
        );
    }

    #[test]
    fn forward_matches_the_definition() {
        // Each unit with its own tiles, and with AVX-512's.
        let runs = crate::testing::vector_units("direct::forward_matches_the_definition")
            .into_iter()
            .flat_map(|isa| [(isa, false), (isa, true)]);
        for (isa, tiles) in runs {
            for (k, &s) in SHAPES.iter().enumerate() {
                let (c, h, wd, o, kh, kw) = s;
                let g = Conv::forward(c, h, wd, o, kh, kw);
                let samples = 2;
                let x = values(samples * c * h * wd, k as u64);
                let mut w = values(g.o_pad() * g.taps(), 100 + k as u64);
                w[o * g.taps()..].fill(0.0);
                let want = conv(&x, &w, s);
                // One float more than the output: nothing may be written past it.
                let mut y = vec![f32::NAN; want.len() + 1];
                let n = want.len();
                let plain = Stored::Product;
                forward_rows_of(
                    isa,
                    &g,
                    samples,
                    (&x, &w, plain),
                    (&mut y[..n], None),
                    true,
                    tiles,
                );
                for (k, (&got, &want)) in y.iter().zip(&want).enumerate() {
                    close(got, want, &format!("{s:?} y[{k}]"));
                }
                assert!(y[want.len()].is_nan());
                // With a bias and ReLU: bit for bit `relu(y + b)` of the plain result (biases
                // that zero some outputs, make some -0 and leave others; a NaN bias gives 0).
                let mut bias = values(o, 200 + k as u64);
                bias[0] = f32::NAN;
                let mut z = vec![f32::NAN; want.len() + 1];
                let b = Some(&bias[..]);
                let stored = Stored::relu(b);
                forward_rows_of(
                    isa,
                    &g,
                    samples,
                    (&x, &w, stored),
                    (&mut z[..n], None),
                    true,
                    tiles,
                );
                let plane = g.oh * g.ow;
                for (k, (&got, &y)) in z.iter().zip(&y[..want.len()]).enumerate() {
                    let sum = y + bias[(k / plane) % o];
                    let want = if sum > 0.0 { sum } else { 0.0 };
                    assert_eq!(got.to_bits(), want.to_bits(), "{s:?} relu(y + b)[{k}]");
                }
                assert!(z[want.len()].is_nan());
                // With an activation after the bias: bit for bit the loops' `f((y + b)·a)`
                // and `s·f(…)` of the plain result, `f` along rows as the compiled loops
                // apply it; `t` and `s·t` in two outputs, or `s·t` alone.
                let plane = g.oh * g.ow;
                let functions = [
                    transcendental::Function::Tanh,
                    transcendental::Function::Sigmoid,
                ];
                for (f, (slope, scale)) in functions.into_iter().flat_map(|f| {
                    [(None, None), (Some(2.0f32 / 3.0), Some(1.7159f32))].map(|a| (f, a))
                }) {
                    let mut t: Vec<f32> = (0..n)
                        .map(|k| {
                            let sum = y[k] + bias[(k / plane) % o];
                            slope.map_or(sum, |a| sum * a)
                        })
                        .collect();
                    transcendental::apply(f, isa, &mut t);
                    let st: Vec<f32> = t.iter().map(|&t| scale.map_or(t, |s| t * s)).collect();
                    let same = |got: &[f32], want: &[f32], what: &str| {
                        for (k, (&a, &b)) in got.iter().zip(want).enumerate() {
                            let same = a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
                            assert!(same, "{s:?} {f:?} {what}[{k}]: {a} against {b}");
                        }
                    };
                    let then = Then {
                        bias: &bias,
                        slope,
                        f,
                        scale,
                    };
                    let (mut got, mut scaled) = (vec![f32::NAN; n + 1], vec![f32::NAN; n + 1]);
                    let both = scale.map(|_| &mut scaled[..n]);
                    forward_then(isa, &g, samples, &x, &w, then, &mut got[..n], both);
                    same(&got, &t, "t");
                    if scale.is_some() {
                        same(&scaled, &st, "s·t");
                        assert!(scaled[n].is_nan());
                        let mut alone = vec![f32::NAN; n + 1];
                        forward_then(isa, &g, samples, &x, &w, then, &mut alone[..n], None);
                        same(&alone, &st, "s·t alone");
                    }
                    assert!(got[n].is_nan());
                }
                // From shifted copies of the columns: the same taps in the same order, so the
                // same bits.
                let shifted = g.shifted();
                let mut xs = vec![f32::NAN; samples * c * shifted.plane];
                shift_columns(isa, &g, samples, &x, &mut xs);
                for bias in [None, Some(&bias[..])] {
                    let mut ys = vec![f32::NAN; want.len()];
                    let (s, samples) = (&shifted, samples);
                    let stored = Stored::relu(bias);
                    forward_rows_of(
                        isa,
                        s,
                        samples,
                        (&xs, &w, stored),
                        (&mut ys, None),
                        true,
                        tiles,
                    );
                    let wide = if bias.is_some() { &z } else { &y };
                    for (k, (&got, &want)) in ys.iter().zip(wide).enumerate() {
                        assert_eq!(got.to_bits(), want.to_bits(), "{s:?} shifted y[{k}]");
                    }
                }
            }
        }
    }

    #[test]
    fn input_gradient_is_the_transposed_product() {
        for isa in crate::testing::vector_units("direct::input_gradient_is_the_transposed_product")
        {
            for (k, &s) in SHAPES.iter().enumerate() {
                let (c, h, wd, o, kh, kw) = s;
                let g = Conv::forward(c, h, wd, o, kh, kw);
                let t = g.input_gradient();
                let w = values(o * g.taps(), 300 + k as u64);
                let dy = values(o * g.oh * g.ow, 400 + k as u64);
                let want = testing::input_gradient(&dy, &w, s, 1);
                let mut planes = vec![f32::NAN; o * t.plane];
                gradient_planes(&g, &dy, &mut planes);
                let mut wt = vec![f32::NAN; t.o_pad() * t.taps()];
                flipped_filters(&g, &w, &mut wt);
                let mut dx = vec![f32::NAN; c * h * wd];
                forward(isa, &t, 1, &planes, &wt, None, &mut dx);
                for (k, (&got, &want)) in dx.iter().zip(&want).enumerate() {
                    close(got, want, &format!("{s:?} dx[{k}]"));
                }
                // Skipping the taps that read only zero rows changes no bit.
                let every_tap = Conv {
                    live: (0, t.rows()),
                    ..t
                };
                assert_eq!(t.skips_rows(), kh > 1, "{s:?}");
                assert!(!every_tap.skips_rows());
                let mut all = vec![f32::NAN; c * h * wd];
                forward(isa, &every_tap, 1, &planes, &wt, None, &mut all);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&dx), bits(&all), "{s:?}");
            }
        }
    }

    #[test]
    fn filter_gradient_matches_the_definition() {
        // 9 samples: AVX2 goes over them in blocks, carrying its accumulators.
        // Each unit with its own tiles, and with AVX-512's.
        let runs = crate::testing::vector_units("direct::filter_gradient_matches_the_definition")
            .into_iter()
            .flat_map(|isa| {
                [
                    (isa, 3, false),
                    (isa, 9, false),
                    (isa, 3, true),
                    (isa, 9, true),
                ]
            });
        for (isa, samples, tiles) in runs {
            for ((k, &s), shifted) in SHAPES
                .iter()
                .enumerate()
                .flat_map(|s| [(s, false), (s, true)])
            {
                let (c, h, wd, o, kh, kw) = s;
                let plain = Conv::forward(c, h, wd, o, kh, kw);
                let x = values(samples * c * h * wd, k as u64);
                let dy = values(samples * o * plain.oh * plain.ow, 200 + k as u64);
                // The kernel's input: the planes, or their shifted copies.
                let (g, input) = if shifted {
                    let g = plain.shifted();
                    let mut xs = vec![f32::NAN; samples * c * g.plane];
                    shift_columns(isa, &plain, samples, &x, &mut xs);
                    (g, xs)
                } else {
                    (plain, x.clone())
                };
                let rows = filter_rows(&g);
                // NaN wherever the wide layout has no real position: the kernel must not read it.
                let mut wide = vec![f32::NAN; samples * rows * g.wide_plane()];
                for b in 0..samples {
                    wide_gradient(
                        &g,
                        &dy[b * o * g.oh * g.ow..][..o * g.oh * g.ow],
                        &mut wide[b * rows * g.wide_plane()..][..rows * g.wide_plane()],
                    );
                }
                let mut dw = vec![f32::NAN; o * g.taps()];
                filter_rows_of(isa, &g, samples, (&input, &wide), &mut dw, true, tiles);
                let want = filter_gradient(&x, &dy, s, samples);
                for (k, (&got, &want)) in dw.iter().zip(&want).enumerate() {
                    close(
                        got,
                        want,
                        &format!("{s:?} shifted {shifted} tiles {tiles}: dw[{k}]"),
                    );
                }
            }
        }
    }

    #[test]
    fn skipping_a_samples_zero_rows_changes_no_bit() {
        for isa in
            crate::testing::vector_units("direct::skipping_a_samples_zero_rows_changes_no_bit")
        {
            let samples = 4;
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for (k, &s) in SHAPES.iter().enumerate() {
                let (c, h, wd, o, kh, kw) = s;
                let g = Conv::forward(c, h, wd, o, kh, kw);
                let mut x = values(samples * c * h * wd, 500 + k as u64);
                // Sample 0 is blank above row h/3 and from row 2h/3 on (-0 in the last plane),
                // sample 1 is blank, sample 2 has a blank row in the middle, sample 3 none.
                let (top, bottom) = (h / 3, 2 * h / 3);
                for (b, sample) in x.chunks_exact_mut(c * h * wd).enumerate() {
                    for (ci, plane) in sample.chunks_exact_mut(h * wd).enumerate() {
                        for (r, row) in plane.chunks_exact_mut(wd).enumerate() {
                            let blank = match b {
                                0 => r < top || r >= bottom,
                                1 => true,
                                2 => r == h / 2,
                                _ => false,
                            };
                            if blank {
                                row.fill(if ci == c - 1 { -0.0 } else { 0.0 });
                            }
                        }
                    }
                }
                let sample = c * h * wd;
                assert_eq!(g.live_in(&x[..sample]), (top, bottom), "{s:?}");
                assert_eq!(g.live_in(&x[sample..]).0, g.live_in(&x[sample..]).1);
                assert_eq!(g.live_in(&x[2 * sample..]), (0, h));

                let w = values(g.o_pad() * g.taps(), 600 + k as u64);
                let bias = values(o, 700 + k as u64);
                for bias in [None, Some(&bias[..])] {
                    let out = samples * o * g.oh * g.ow;
                    let (mut skipped, mut every) = (vec![f32::NAN; out], vec![f32::NAN; out]);
                    let stored = Stored::relu(bias);
                    forward_rows_of(
                        isa,
                        &g,
                        samples,
                        (&x, &w, stored),
                        (&mut skipped, None),
                        true,
                        false,
                    );
                    forward_rows_of(
                        isa,
                        &g,
                        samples,
                        (&x, &w, stored),
                        (&mut every, None),
                        false,
                        false,
                    );
                    assert_eq!(bits(&skipped), bits(&every), "{s:?} forward");
                }
                let rows = filter_rows(&g);
                let mut wide = vec![f32::NAN; samples * rows * g.wide_plane()];
                let dy = values(samples * o * g.oh * g.ow, 800 + k as u64);
                for (b, wide) in wide.chunks_exact_mut(rows * g.wide_plane()).enumerate() {
                    wide_gradient(&g, &dy[b * o * g.oh * g.ow..][..o * g.oh * g.ow], wide);
                }
                let (mut skipped, mut every) =
                    (vec![f32::NAN; o * g.taps()], vec![0.0; o * g.taps()]);
                filter_rows_of(isa, &g, samples, (&x, &wide), &mut skipped, true, false);
                filter_rows_of(isa, &g, samples, (&x, &wide), &mut every, false, false);
                assert_eq!(bits(&skipped), bits(&every), "{s:?} filter");
            }
        }
    }

    /// Inputs in place in a larger tensor (a concat's operand: each sample's planes followed
    /// by other channels, NaN here, which no kernel may read) give the bits of the same
    /// inputs side by side: the forward product (with its bias and ReLU), the filter
    /// gradient, and both on shifted copies.
    #[test]
    fn samples_apart_give_the_bits_of_adjacent_ones() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut ran = 0;
        for isa in
            crate::testing::vector_units("direct::samples_apart_give_the_bits_of_adjacent_ones")
        {
            let samples = 3;
            for (k, &s) in SHAPES.iter().enumerate() {
                let (c, h, wd, o, kh, kw) = s;
                let g = Conv::forward(c, h, wd, o, kh, kw);
                let per = c * h * wd;
                let apart = per + 2 * h * wd + 5;
                let x = values(samples * per, 900 + k as u64);
                let mut spread = vec![f32::NAN; (samples - 1) * apart + per];
                for (b, sample) in x.chunks_exact(per).enumerate() {
                    spread[b * apart..][..per].copy_from_slice(sample);
                }
                let ga = g.samples_apart(apart);
                let w = values(g.o_pad() * g.taps(), 910 + k as u64);
                let bias = values(o, 920 + k as u64);
                let out = samples * o * g.oh * g.ow;
                let (mut near, mut far) = (vec![f32::NAN; out], vec![f32::NAN; out]);
                forward(isa, &g, samples, &x, &w, Some(&bias), &mut near);
                forward(isa, &ga, samples, &spread, &w, Some(&bias), &mut far);
                assert_eq!(bits(&near), bits(&far), "{s:?} forward");
                // The shifted copies of both are the same floats.
                let shifted = g.shifted();
                let copies = samples * c * shifted.plane;
                let (mut near_xs, mut far_xs) = (vec![f32::NAN; copies], vec![f32::NAN; copies]);
                shift_columns(isa, &g, samples, &x, &mut near_xs);
                shift_columns(isa, &ga, samples, &spread, &mut far_xs);
                assert_eq!(bits(&near_xs), bits(&far_xs), "{s:?} shifted copies");
                let rows = filter_rows(&g);
                let mut wide = vec![f32::NAN; samples * rows * g.wide_plane()];
                let dy = values(samples * o * g.oh * g.ow, 930 + k as u64);
                for (b, wide) in wide.chunks_exact_mut(rows * g.wide_plane()).enumerate() {
                    wide_gradient(&g, &dy[b * o * g.oh * g.ow..][..o * g.oh * g.ow], wide);
                }
                let (mut near, mut far) = (vec![f32::NAN; o * g.taps()], vec![0.0; o * g.taps()]);
                filter(isa, &g, samples, &x, &wide, &mut near);
                filter(isa, &ga, samples, &spread, &wide, &mut far);
                assert_eq!(bits(&near), bits(&far), "{s:?} filter");
                ran += 1;
            }
        }
        assert!(ran > 0, "no vector unit ran");
    }
}
