//! A convolution's input gradient with the samples in the lanes, sixteen at a time, at any
//! stride and padding.
//!
//! `dx[b][c][i][j] = Σ_o Σ_(r,s) dy[b][o][r][s] · w[o][c][i + low₀ − r·sh][j + low₁ − s·sw]`,
//! over the output positions whose window holds `(i, j)`. [`crate::direct`] computes it at
//! stride 1 as a forward product of the output gradient padded by `k − 1`
//! ([`Conv::input_gradient`]), sixteen positions per vector: near the borders most of its
//! products are with the padding's zeros (LeNet-5's C3: 14×14 positions, each with 25 taps,
//! of which a 10×10 gradient leaves 16 real on average); at stride 2 the phases kernel
//! ([`crate::phases`]) splits it into a stride-1 product per phase, each with a quarter of the
//! taps, input channels in the lanes. Here a vector holds one position of sixteen samples, so
//! every product is real and every lane a sample: the output gradient is transposed to that
//! layout first ([`to_lanes`]), the filters to `[o][ki][kj][c]`, and the result back
//! ([`from_lanes`]). A register tile is six input channels of one position, or on AVX-512 of
//! four positions of a row (every `sw`-th, so that their taps are the same) whose reaches
//! are whole, each filter weight broadcast once per tap. (resnet-mnist's stride-2 3×3 input
//! gradients, 32 samples on one Zen 4 core: 81–88 GFLOP/s here, 43–62 on the phases,
//! `cargo bench -p nnc-kernels --bench kernels -- phases`.)
//!
//! Each input position adds its products in [`crate::direct`]'s order (output channel, then
//! the output gradient's rows and columns ascending, one rounding each), and the products it
//! skips are those direct adds as exact zeros, so the two give the same bits.
//!
//! It pays where a part has enough samples to fill the lanes ([`suits`]): LeNet-5's batch of
//! 32 gives each thread sixteen.

use crate::direct::Conv;
use crate::simd::{self, F32x16, Isa, Kernel};

/// Floats per vector: samples per group.
const LANES: usize = 16;

/// Input channels per register tile: six accumulators (twelve registers on AVX2) and an
/// output-gradient vector.
const CHANNELS: usize = 6;

/// The input gradient [`input_gradient`] computes: of a forward convolution of `c` planes
/// `h × w` (as the op reads them: `low` rows of padding above and columns left, any below and
/// right) by `o` filters `kh × kw` at `stride`, from output-gradient planes `oh × ow`.
/// Input position `(i, j)` receives from the output positions `(r, s)` whose window holds it:
/// `i + low₀ = r·sh + ki`, `j + low₁ = s·sw + kj`; the padding's positions are not computed
/// (nobody reads their gradient), and positions no window holds receive zero. The phases
/// kernel ([`crate::phases`]) takes the same geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) o: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) stride: [usize; 2],
    pub(crate) low: [usize; 2],
}

impl Geometry {
    /// The geometry, if every size and stride is positive.
    pub fn new(
        c: usize,
        [h, w]: [usize; 2],
        o: usize,
        [oh, ow]: [usize; 2],
        [kh, kw]: [usize; 2],
        stride: [usize; 2],
        low: [usize; 2],
    ) -> Option<Geometry> {
        let sizes = [c, h, w, o, oh, ow, kh, kw, stride[0], stride[1]];
        sizes.iter().all(|&d| d > 0).then_some(Geometry {
            c,
            h,
            w,
            o,
            oh,
            ow,
            kh,
            kw,
            stride,
            low,
        })
    }

    /// The input gradient of `g` (a plain forward geometry, [`Conv::forward`]) with `crop[0]`
    /// rows and `crop[1]` columns cut from each side of its planes: a convolution with
    /// `padding` runs over padded planes, whose padding's gradient nobody reads. `None` if
    /// `g` is not plain or the crop leaves nothing.
    pub fn cropped(g: &Conv, crop: [usize; 2]) -> Option<Geometry> {
        let h = g.oh + g.kh - 1;
        let plain = g.kj_stride == 1
            && g.stride == [1, 1]
            && g.compact()
            && g.plane == h * g.w
            && g.ow + g.kw - 1 == g.w;
        if !plain || 2 * crop[0] >= h || 2 * crop[1] >= g.w {
            return None;
        }
        let planes = [h - 2 * crop[0], g.w - 2 * crop[1]];
        Geometry::new(g.c, planes, g.o, [g.oh, g.ow], [g.kh, g.kw], [1, 1], crop)
    }

    /// Floats of the scratch [`input_gradient`] takes: a group's output gradient and input
    /// gradient in lanes, and the transposed filters.
    pub fn scratch_floats(&self) -> usize {
        LANES * (self.gradient_floats() + self.input_floats()) + self.o * self.taps()
    }

    /// Floats of a sample's output gradient.
    pub fn gradient_floats(&self) -> usize {
        self.o * self.oh * self.ow
    }

    /// Floats of a sample's input gradient.
    pub fn input_floats(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Taps of a filter over all its input channels.
    fn taps(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// The output-gradient rows (`axis` 0) or columns (1) that input row or column `i`
    /// receives from, through filter rows `i + low − r·s` in `0..k`.
    fn reach(&self, axis: usize, i: usize) -> std::ops::Range<usize> {
        let (k, s, n) = match axis {
            0 => (self.kh, self.stride[0], self.oh),
            _ => (self.kw, self.stride[1], self.ow),
        };
        let p = i + self.low[axis];
        (p + 1).saturating_sub(k).div_ceil(s)..(p / s + 1).min(n)
    }
}

/// Whether a part of `samples` samples fills at least three quarters of the lanes of
/// [`input_gradient`]'s groups.
pub fn suits(samples: usize) -> bool {
    samples > 0 && 4 * samples >= 3 * groups(samples) * LANES
}

/// Groups of sixteen samples.
fn groups(samples: usize) -> usize {
    samples.div_ceil(LANES)
}

/// `src` holds `samples` rows of `per` floats; `out[(group·per + e)·16 + l]` receives
/// `src[(group·16 + l)·per + e]`, and +0 for lanes past the last sample.
///
/// # Panics
/// If the slices are short or the CPU does not support `isa`.
pub fn to_lanes(isa: Isa, src: &[f32], samples: usize, per: usize, out: &mut [f32]) {
    assert!(isa.supported(), "vector kernels need {}", isa.name());
    assert!(src.len() >= samples * per, "rows too short");
    assert!(
        out.len() >= groups(samples) * per * LANES,
        "lanes too short"
    );
    let k = Transpose {
        samples,
        per,
        rows: src.as_ptr() as *mut f32,
        lanes: out.as_mut_ptr(),
        into_lanes: true,
    };
    // SAFETY: the unit is supported; the buffers hold what the kernel touches (asserted, which
    // panics before any pointer is used), and it writes only `out`, borrowed `&mut` for the
    // call, so nothing else accesses it meanwhile.
    unsafe { simd::run(isa, k) };
}

/// The inverse of [`to_lanes`] for the `samples` real samples: `out[s·per + e]` receives
/// `src[((s / 16)·per + e)·16 + s % 16]`.
///
/// # Panics
/// If the slices are short or the CPU does not support `isa`.
pub fn from_lanes(isa: Isa, src: &[f32], samples: usize, per: usize, out: &mut [f32]) {
    assert!(isa.supported(), "vector kernels need {}", isa.name());
    assert!(
        src.len() >= groups(samples) * per * LANES,
        "lanes too short"
    );
    assert!(out.len() >= samples * per, "rows too short");
    let k = Transpose {
        samples,
        per,
        rows: out.as_mut_ptr(),
        lanes: src.as_ptr() as *mut f32,
        into_lanes: false,
    };
    // SAFETY: as in `to_lanes`; this direction writes only `out`.
    unsafe { simd::run(isa, k) };
}

/// [`to_lanes`] (rows into lanes) or [`from_lanes`], in 8×8 blocks where a block is whole.
struct Transpose {
    samples: usize,
    per: usize,
    /// `samples` rows of `per` floats.
    rows: *mut f32,
    /// Groups of `per` positions of sixteen lanes.
    lanes: *mut f32,
    into_lanes: bool,
}

impl Kernel for Transpose {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let Transpose {
            samples,
            per,
            rows,
            lanes,
            into_lanes,
        } = self;
        for group in 0..groups(samples) {
            let real = (samples - group * LANES).min(LANES);
            // SAFETY (throughout): the group's rows and lanes lie inside the buffers (the
            // callers' asserts), and every access below stays in them.
            let (rows, lanes) = unsafe {
                (
                    rows.add(group * LANES * per),
                    lanes.add(group * per * LANES),
                )
            };
            for e0 in (0..per).step_by(8) {
                let e1 = (e0 + 8).min(per);
                for l0 in [0, 8] {
                    let (row, lane) =
                        unsafe { (rows.add(l0 * per + e0), lanes.add(e0 * LANES + l0)) };
                    if e1 == e0 + 8 && l0 + 8 <= real {
                        unsafe {
                            if into_lanes {
                                V::transpose8(row, per, lane, LANES);
                            } else {
                                V::transpose8(lane, LANES, row, per);
                            }
                        }
                        continue;
                    }
                    for l in 0..8 {
                        for e in 0..e1 - e0 {
                            let (r, q) = unsafe { (row.add(l * per + e), lane.add(e * LANES + l)) };
                            unsafe {
                                match (into_lanes, l0 + l < real) {
                                    (true, true) => *q = *r,
                                    (true, false) => *q = 0.0,
                                    (false, true) => *r = *q,
                                    (false, false) => {}
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The filters `w` (`o × c × kh × kw`) as `out[((o·kh + ki)·kw + kj)·c + ci]`: a tap's input
/// channels side by side.
fn transposed_filters(g: &Geometry, w: &[f32], out: &mut [f32]) {
    let k = g.kh * g.kw;
    for o in 0..g.o {
        for ci in 0..g.c {
            for tap in 0..k {
                out[(o * k + tap) * g.c + ci] = w[(o * g.c + ci) * k + tap];
            }
        }
    }
}

/// The input gradient `dx` (`samples × c × h × w`, compact) of the convolution `g` from its
/// output gradient `dy` (`samples × o × oh × ow`) and filters `w` (`o × c × kh × kw`), with
/// `scratch` of [`Geometry::scratch_floats`] floats.
///
/// # Panics
/// If the slices are short or the CPU does not support `isa`.
pub fn input_gradient(
    isa: Isa,
    g: &Geometry,
    samples: usize,
    (dy, w): (&[f32], &[f32]),
    scratch: &mut [f32],
    dx: &mut [f32],
) {
    input_gradient_tiled(isa, g, samples, (dy, w), scratch, dx, false);
}

/// [`input_gradient`], with AVX-512's tiles on any unit where `wide` (so that AVX2 machines
/// test them too).
fn input_gradient_tiled(
    isa: Isa,
    g: &Geometry,
    samples: usize,
    (dy, w): (&[f32], &[f32]),
    scratch: &mut [f32],
    dx: &mut [f32],
    wide: bool,
) {
    assert!(isa.supported(), "vector kernels need {}", isa.name());
    let (per_in, per_out) = (g.input_floats(), g.gradient_floats());
    assert!(dy.len() >= samples * per_out, "output gradient too short");
    assert!(w.len() >= g.o * g.taps(), "filters too short");
    assert!(dx.len() >= samples * per_in, "input gradient too short");
    assert!(scratch.len() >= g.scratch_floats(), "scratch too short");
    let (dyt, rest) = scratch.split_at_mut(LANES * per_out);
    let (dxt, wt) = rest.split_at_mut(LANES * per_in);
    transposed_filters(g, w, wt);
    // A group at a time, into the lanes and back, so that its planes in lanes stay in L2
    // (nonsquare's 5×1 input gradient: a few products per float moved).
    for s0 in (0..samples).step_by(LANES) {
        let n = (samples - s0).min(LANES);
        to_lanes(isa, &dy[s0 * per_out..], n, per_out, dyt);
        let k = Gradient {
            g,
            dyt,
            wt,
            dxt: &mut *dxt,
            wide,
        };
        // SAFETY: the unit is supported, and the buffers hold what the geometry needs
        // (asserted above and split to size); the pointers come from slices borrowed for the
        // call (the written ones `&mut`, disjoint by `split_at_mut`), so nothing else
        // accesses them.
        unsafe { simd::run(isa, k) };
        from_lanes(isa, dxt, n, per_in, &mut dx[s0 * per_in..]);
    }
}

/// [`input_gradient`]'s product in lanes, for [`simd::run`].
struct Gradient<'a> {
    g: &'a Geometry,
    dyt: &'a [f32],
    wt: &'a [f32],
    dxt: &'a mut [f32],
    wide: bool,
}

/// Positions of a row per register tile on AVX-512 (every `sw`-th: those of one column
/// phase, whose taps are the same and read consecutive output-gradient columns), where their
/// column reaches are whole: with six channels, 24 of its 32 registers accumulate and six
/// hold the tap's weights, so that a tap costs four loads and six broadcasts for 24 products
/// (one position: seven for six). cnn3-same's 28×28 input gradient on one Zen 4 core: 70
/// GFLOP/s one position at a time, 81 with three, 98 with four (`time_same3`).
const POSITIONS: usize = 4;

impl Kernel for Gradient<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let Gradient {
            g,
            dyt,
            wt,
            dxt,
            wide,
        } = self;
        let wide = simd::wide_tiles::<V>(wide);
        let sw = g.stride[1];
        let dyt = dyt[..g.gradient_floats() * LANES].as_ptr();
        let dxt = dxt[..g.input_floats() * LANES].as_mut_ptr();
        for i in 0..g.h {
            let rows = g.reach(0, i);
            // A column phase at a time: positions `b, b + sw, …`.
            for b in 0..sw.min(g.w) {
                let mut j = b;
                while j < g.w {
                    // Positions whose column reaches are the first's moved by one each,
                    // several at a time; the others one by one.
                    let last = j + (POSITIONS - 1) * sw;
                    let n = if wide && last < g.w && {
                        let (first, end) = (g.reach(1, j), g.reach(1, last));
                        let moved = POSITIONS - 1;
                        end.start == first.start + moved && end.end == first.end + moved
                    } {
                        POSITIONS
                    } else {
                        1
                    };
                    // SAFETY: the CPU has `V`'s unit; the pointers hold a group's planes,
                    // which every tap of a position in them stays inside; positions `j, j +
                    // sw, …` (`n` of them) are in the plane with reaches moved by one each.
                    unsafe {
                        if n == 1 {
                            channels::<V, 1>(g, dyt, wt, (i, j, rows.clone()), dxt);
                        } else {
                            channels::<V, POSITIONS>(g, dyt, wt, (i, j, rows.clone()), dxt);
                        }
                    }
                    j += n * sw;
                }
            }
        }
    }
}

/// Input positions `(i, j + t·sw)` (`t < P`) of every input channel, [`CHANNELS`] at a time.
///
/// # Safety
/// As [`positions`].
#[inline(always)]
unsafe fn channels<V: F32x16, const P: usize>(
    g: &Geometry,
    dyt: *const f32,
    wt: &[f32],
    (i, j, rows): (usize, usize, std::ops::Range<usize>),
    dxt: *mut f32,
) {
    let mut c0 = 0;
    // SAFETY (all calls): forwarded, channels `c0..c0 + CB` lie in the planes.
    unsafe {
        while c0 + CHANNELS <= g.c {
            positions::<V, P, CHANNELS>(g, dyt, wt, (i, j, c0, rows.clone()), dxt);
            c0 += CHANNELS;
        }
        match g.c - c0 {
            1 => positions::<V, P, 1>(g, dyt, wt, (i, j, c0, rows), dxt),
            2 => positions::<V, P, 2>(g, dyt, wt, (i, j, c0, rows), dxt),
            3 => positions::<V, P, 3>(g, dyt, wt, (i, j, c0, rows), dxt),
            4 => positions::<V, P, 4>(g, dyt, wt, (i, j, c0, rows), dxt),
            5 => positions::<V, P, 5>(g, dyt, wt, (i, j, c0, rows), dxt),
            _ => {}
        }
    }
}

/// Input positions `(i, j + t·sw)` (`t < P`) of input channels `c0..c0 + CB` for one group:
/// the sum over every output channel and every output-gradient position `(r, s + t)` whose
/// window holds them (`r` in `rows`, `s` in column `j`'s reach), ascending, stored in `dxt`'s
/// planes.
///
/// # Safety
/// The CPU has `V`'s unit; `dyt` and `dxt` hold a group's planes in lanes, `(i, j + t·sw)`
/// are positions of the input plane for every `t < P`, `rows` is row `i`'s reach, and
/// `c0..c0 + CB` are input channels; where `P > 1`, column `j + t·sw`'s reach is column
/// `j`'s moved by `t`.
#[inline(always)]
unsafe fn positions<V: F32x16, const P: usize, const CB: usize>(
    g: &Geometry,
    dyt: *const f32,
    wt: &[f32],
    (i, j, c0, rows): (usize, usize, usize, std::ops::Range<usize>),
    dxt: *mut f32,
) {
    let cols = g.reach(1, j);
    let [sh, sw] = g.stride;
    let (pi, pj) = (i + g.low[0], j + g.low[1]);
    debug_assert!(P == 1 || g.reach(1, j + (P - 1) * sw).start == cols.start + P - 1);
    // SAFETY (throughout): the CPU has `V`'s unit (the caller's contract).
    let mut acc = [[unsafe { V::zero() }; CB]; P];
    let wt = wt.as_ptr();
    for o in 0..g.o {
        for r in rows.clone() {
            for s in cols.clone() {
                // SAFETY: `(o, r, s + t)` is an output-gradient position of the group for
                // every `t < P` (the caller's contract), and the tap `(pi − r·sh, pj − s·sw)`
                // lies in the filter (the reaches'): its `c` weights start at `w`.
                unsafe {
                    let w = wt.add(((o * g.kh + pi - r * sh) * g.kw + pj - s * sw) * g.c + c0);
                    let mut wv = [V::zero(); CB];
                    for (k, wv) in wv.iter_mut().enumerate() {
                        *wv = V::splat(*w.add(k));
                    }
                    let row = dyt.add(((o * g.oh + r) * g.ow + s) * LANES);
                    for (t, acc) in acc.iter_mut().enumerate() {
                        let v = V::load(row.add(t * LANES));
                        for (a, wv) in acc.iter_mut().zip(&wv) {
                            *a = wv.mul_add(v, *a);
                        }
                    }
                }
            }
        }
    }
    let plane = |k: usize| (((c0 + k) * g.h + i) * g.w + j) * LANES;
    for (t, acc) in acc.iter().enumerate() {
        for (k, a) in acc.iter().enumerate() {
            // SAFETY: input channel `c0 + k` < `c` at positions of the plane.
            unsafe { a.store(dxt.add(plane(k) + t * sw * LANES)) };
        }
    }
}

/// Times C3's input gradient, samples in lanes, against `direct`'s, on one thread, printing the
/// best of 50 runs (`cargo bench -p nnc-kernels --bench kernels`).
#[doc(hidden)]
pub fn time_c3(isa: Isa) {
    let samples = 16;
    let g = Conv::forward(6, 14, 14, 16, 5, 5);
    let lanes = Geometry::cropped(&g, [0, 0]).expect("a plain geometry");
    let dy = crate::testing::values(samples * g.o * g.oh * g.ow, 1);
    let w = crate::testing::values(g.o * g.taps(), 2);
    let mut scratch = vec![0.0f32; lanes.scratch_floats()];
    let mut dx = vec![0.0f32; samples * g.c * g.plane];
    let (per_in, per_out) = (g.c * g.plane, g.o * g.oh * g.ow);
    let mut best = [f64::MAX; 4];
    for _ in 0..50 {
        let t = std::time::Instant::now();
        input_gradient(isa, &lanes, samples, (&dy, &w), &mut scratch, &mut dx);
        best[0] = best[0].min(t.elapsed().as_secs_f64() * 1e6);
        let (dyt, rest) = scratch.split_at_mut(samples * per_out);
        let t = std::time::Instant::now();
        to_lanes(isa, &dy, samples, per_out, dyt);
        best[1] = best[1].min(t.elapsed().as_secs_f64() * 1e6);
        let t = std::time::Instant::now();
        from_lanes(isa, rest, samples, per_in, &mut dx);
        best[2] = best[2].min(t.elapsed().as_secs_f64() * 1e6);
        let t = std::time::Instant::now();
        let direct = direct_input_gradient(isa, &g, samples, &dy, &w);
        best[3] = best[3].min(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(direct);
    }
    println!(
        "c3 input gradient, samples in lanes: {:.1} µs (of which to lanes {:.1}, back {:.1}); \
         direct {:.1} µs with its allocations ({samples} samples, one thread)",
        best[0], best[1], best[2], best[3]
    );
}

/// Times the input gradient of bench/zoo's `same` convolutions (padded planes, cropped):
/// cnn3-same's 3×3 of 16 and 32 channels on 28×28 and 14×14, nonsquare's 5×1 on 28×28; 32
/// samples on one thread, best of 20 runs.
#[doc(hidden)]
pub fn time_same3(isa: Isa) {
    let samples = 32;
    let shapes = [
        (16, 30, 30, 32, 3, 3, 1, 1),
        (32, 16, 16, 32, 3, 3, 1, 1),
        (16, 32, 28, 16, 5, 1, 2, 0),
    ];
    for (c, h, w, o, kh, kw, ph, pw) in shapes {
        let g = Conv::forward(c, h, w, o, kh, kw);
        let lanes = Geometry::cropped(&g, [ph, pw]).expect("a plain geometry");
        let dy = crate::testing::values(samples * g.o * g.oh * g.ow, 1);
        let w = crate::testing::values(g.o * g.taps(), 2);
        let mut scratch = vec![0.0f32; lanes.scratch_floats()];
        let mut dx = vec![0.0f32; samples * g.c * g.plane];
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t = std::time::Instant::now();
            input_gradient(isa, &lanes, samples, (&dy, &w), &mut scratch, &mut dx);
            best = best.min(t.elapsed().as_secs_f64());
        }
        let flops = 2.0 * (samples * g.o * g.taps() * g.oh * g.ow) as f64;
        println!(
            "[{o},{c},{kh},{kw}] on {}x{} planes ({samples} samples, one thread): input \
             gradient {:.1} µs, {:.1} GFLOP/s",
            g.oh,
            g.ow,
            best * 1e6,
            flops / best * 1e-9
        );
    }
}

/// `direct`'s input gradient: the padded output gradient correlated with the flipped
/// filters, as the library runs it.
fn direct_input_gradient(isa: Isa, g: &Conv, samples: usize, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let t = g.input_gradient();
    let per = g.o * t.plane;
    let mut planes = vec![0.0f32; samples * per];
    let mut wt = vec![0.0f32; t.o_pad() * t.taps()];
    crate::direct::flipped_filters(g, w, &mut wt);
    for (b, planes) in planes.chunks_exact_mut(per).enumerate() {
        crate::direct::gradient_planes(g, &dy[b * g.o * g.oh * g.ow..], planes);
    }
    let mut dx = vec![f32::NAN; samples * g.c * g.plane];
    crate::direct::forward(isa, &t, samples, &planes, &wt, None, &mut dx);
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{input_gradient as definition, values};

    /// (c, h, w, o, kh, kw): LeNet-5's C3, a channel count past one tile, each remainder
    /// tile, rows of several tiles of positions (and one left over), filters as large as the
    /// plane, and 1×1 filters; each also cropped where the crop leaves something.
    const SHAPES: [(usize, usize, usize, usize, usize, usize); 9] = [
        (6, 14, 14, 16, 5, 5),
        (16, 9, 12, 3, 3, 3),
        (8, 7, 11, 2, 2, 4),
        (7, 6, 7, 3, 3, 2),
        (1, 5, 5, 2, 2, 2),
        (2, 4, 6, 5, 4, 6),
        (3, 5, 4, 4, 1, 1),
        (4, 6, 5, 2, 3, 3),
        (17, 3, 3, 1, 2, 3),
    ];

    #[test]
    fn to_lanes_and_back_on_every_unit() {
        // Whole blocks, a partial block of positions, partial groups of samples.
        for (samples, per) in [(16, 64), (19, 70), (29, 5), (8, 8), (3, 17)] {
            let src = values(samples * per, per as u64);
            for isa in crate::testing::vector_units("samples::to_lanes_and_back_on_every_unit") {
                let mut lanes = vec![f32::NAN; groups(samples) * per * LANES];
                to_lanes(isa, &src, samples, per, &mut lanes);
                for (k, &v) in lanes.iter().enumerate() {
                    let (group, e, l) = (k / (per * LANES), k / LANES % per, k % LANES);
                    let s = group * LANES + l;
                    let want = if s < samples { src[s * per + e] } else { 0.0 };
                    assert_eq!(v, want, "{samples}×{per} on {isa:?}: lane {k}");
                }
                let mut back = vec![f32::NAN; samples * per];
                from_lanes(isa, &lanes, samples, per, &mut back);
                assert_eq!(back, src, "{samples}×{per} on {isa:?}");
            }
        }
    }

    #[test]
    fn the_rule_wants_full_lanes() {
        let c3 = Conv::forward(6, 14, 14, 16, 5, 5);
        assert!(suits(16) && suits(12) && suits(32));
        assert!(!suits(11) && !suits(17) && !suits(0));
        assert!(Geometry::cropped(&c3, [0, 0]).is_some());
        assert!(
            Geometry::cropped(&c3.shifted(), [0, 0]).is_none(),
            "not a plain layout"
        );
        assert!(
            Geometry::cropped(&c3, [7, 0]).is_none(),
            "cropped to nothing"
        );
    }

    #[test]
    fn input_gradient_gives_the_bits_of_direct_and_matches_the_definition() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (k, &(c, h, wd, o, kh, kw)) in SHAPES.iter().enumerate() {
            let g = Conv::forward(c, h, wd, o, kh, kw);
            // One group, two groups with a partial one.
            for samples in [16, 29] {
                let seed = 10 * k as u64 + samples as u64;
                let dy = values(samples * o * g.oh * g.ow, seed);
                let w = values(o * g.taps(), 1000 + seed);
                let want = definition(&dy, &w, SHAPES[k], samples);
                // Each unit with its own tiles, and with AVX-512's.
                let runs = crate::testing::vector_units(
                    "samples::input_gradient_gives_the_bits_of_direct_and_matches_the_definition",
                )
                .into_iter()
                .flat_map(|isa| [(isa, false), (isa, true)]);
                for (isa, wide) in runs {
                    let lanes = Geometry::cropped(&g, [0, 0]).expect("a plain geometry");
                    let mut scratch = vec![f32::NAN; lanes.scratch_floats()];
                    let mut dx = vec![f32::NAN; samples * c * g.plane];
                    let args = (&dy[..], &w[..]);
                    input_gradient_tiled(isa, &lanes, samples, args, &mut scratch, &mut dx, wide);
                    for (e, (&got, &want)) in dx.iter().zip(&want).enumerate() {
                        assert!(
                            (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{:?} on {isa:?} wide {wide}: dx[{e}] {got} vs {want}",
                            SHAPES[k]
                        );
                    }
                    let direct = direct_input_gradient(isa, &g, samples, &dy, &w);
                    let shape = SHAPES[k];
                    assert_eq!(bits(&dx), bits(&direct), "{shape:?} on {isa:?} wide {wide}");
                    // Cropped: the same bits at the positions kept.
                    for crop in [[1, 1], [0, 2], [2, 1]] {
                        if 2 * crop[0] >= h || 2 * crop[1] >= wd {
                            continue;
                        }
                        let [hc, wc] = [h - 2 * crop[0], wd - 2 * crop[1]];
                        let lanes = Geometry::cropped(&g, crop).expect("a crop that leaves some");
                        let mut scratch = vec![f32::NAN; lanes.scratch_floats()];
                        let mut got = vec![f32::NAN; samples * c * hc * wc];
                        let dx = &mut got;
                        input_gradient_tiled(isa, &lanes, samples, args, &mut scratch, dx, wide);
                        let kept: Vec<f32> = (0..samples * c * hc * wc)
                            .map(|e| {
                                let (plane, i, j) = (e / (hc * wc), e / wc % hc, e % wc);
                                direct[(plane * h + i + crop[0]) * wd + j + crop[1]]
                            })
                            .collect();
                        assert_eq!(
                            bits(&got),
                            bits(&kept),
                            "{shape:?} cropped by {crop:?} on {isa:?} wide {wide}"
                        );
                    }
                }
            }
        }
    }

    /// [`crate::testing::STRIDED`]'s shapes, one group of samples and a partial second.
    #[test]
    fn strided_input_gradient_matches_the_definition() {
        let mut ran = 0;
        for shape in crate::testing::STRIDED {
            let (c, hw, o, ohw, k, stride, low) = shape;
            let g = Geometry::new(c, hw, o, ohw, k, stride, low).expect("a geometry");
            for samples in [16, 29] {
                let dy = values(samples * g.gradient_floats(), samples as u64);
                let w = values(o * g.taps(), 7);
                let want = crate::testing::strided_input_gradient(&dy, &w, shape, samples);
                let runs = crate::testing::vector_units(
                    "samples::strided_input_gradient_matches_the_definition",
                )
                .into_iter()
                .flat_map(|isa| [(isa, false), (isa, true)]);
                for (isa, wide) in runs {
                    let mut scratch = vec![f32::NAN; g.scratch_floats()];
                    let mut dx = vec![f32::NAN; samples * g.input_floats()];
                    let args = (&dy[..], &w[..]);
                    input_gradient_tiled(isa, &g, samples, args, &mut scratch, &mut dx, wide);
                    for (e, (&got, &want)) in dx.iter().zip(&want).enumerate() {
                        assert!(
                            (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{g:?} on {isa:?} wide {wide}: dx[{e}] {got} vs {want}"
                        );
                    }
                    ran += 1;
                }
            }
        }
        assert!(ran > 0, "no vector unit ran");
    }
}
