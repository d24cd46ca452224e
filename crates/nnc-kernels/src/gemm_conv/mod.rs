//! Convolutions of any kernel size (square or not), stride, padding and channel count as
//! GEMMs on `gemm`'s micro-kernels over im2col columns: the forward product, the input
//! gradient and the filter gradient, for a run of samples.
//!
//! The samples' output rows are taken a *chunk* at a time, crossing sample boundaries, so
//! that one GEMM sees many samples' positions (its long side) while the chunk's columns stay
//! in the cache (about [`CHUNK_FLOATS`] of columns and output rows): a small plane at batch
//! 16 still gives gemm hundreds of columns, a large one is not copied out whole. Padding is
//! read as zeros where a tap falls outside the input (no padded copy), with separate low
//! pads per axis; the high side needs no number, the output's size bounds it.
//!
//! These are pure functions over slices and a [`Geometry`]: they know nothing of programs,
//! arenas or threads (a caller splits the samples; each part's filter gradient is its own
//! partial sum).

mod per_sample;

use crate::simd::{self, F32x16, Isa, Kernel, low_bits};
use crate::store::{Skip, Store, relu};
pub use per_sample::time_pointwise;
use per_sample::{filter_gradient_per_sample, forward_per_sample, input_gradient_per_sample};

/// Floats of im2col columns and gathered output rows per chunk: with gemm's packed copies
/// of both, well inside a core's L2 (1–2 MiB on the CPUs measured).
pub const CHUNK_FLOATS: usize = 1 << 16;

/// The shape of a convolution `y[b, o, i, j] = Σ w[o, c, ki, kj] · x[b, c, i·sh + ki − ph,
/// j·sw + kj − pw]` (taps outside `x` read zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Input channels, rows and columns.
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Filter rows and columns.
    pub kh: usize,
    pub kw: usize,
    /// Strides (rows, columns).
    pub stride: [usize; 2],
    /// Zero rows above and columns left of the input (the high sides follow from `oh`, `ow`).
    pub pad: [usize; 2],
    /// Output rows and columns.
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    /// Rows of a column matrix: one per filter tap and input channel.
    pub fn taps(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output positions of one sample.
    pub fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// Multiply-adds per sample (the same for all three products).
    pub fn macs_per_sample(&self) -> usize {
        self.o * self.taps() * self.positions()
    }

    /// Output rows per chunk: as many as fit [`CHUNK_FLOATS`] of columns and gathered rows,
    /// at least one, at most all of `samples`' rows.
    pub fn chunk_rows(&self, samples: usize) -> usize {
        let per_row = (self.taps() + self.o) * self.ow;
        (CHUNK_FLOATS / per_row.max(1)).clamp(1, (samples * self.oh).max(1))
    }

    /// Scratch floats a run over `samples` samples needs: a chunk's columns and output rows
    /// (and, for the filter gradient, the transposed partial sum).
    pub fn scratch_floats(&self, samples: usize) -> usize {
        let np = self.chunk_rows(samples) * self.ow;
        (self.taps() + self.o) * np + self.taps() * self.o
    }

    /// Whether the samples run one GEMM each on their own planes, without chunks: a 1×1
    /// unpadded convolution, whose columns are the input planes (stride 1) or every
    /// stride-th position of them (gathered; one sample's must fit a chunk's columns). Its
    /// GEMMs are as long as a plane and no rows are gathered or scattered: 1.5–2× faster than
    /// chunks at 16–64 channels on 14×14 planes ([`time_pointwise`]).
    pub fn per_sample(&self, samples: usize) -> bool {
        let pointwise = self.kh == 1 && self.kw == 1 && self.pad == [0, 0];
        pointwise && (self.stride == [1, 1] || self.sample_fits(samples))
    }

    /// Whether one sample's columns and output rows fit a chunk's buffers.
    fn sample_fits(&self, samples: usize) -> bool {
        self.chunk_rows(samples) >= self.oh
    }

    /// Output columns `lo..hi` whose input column `j·sw + kj − pw` lies inside the input, for
    /// filter column `kj`.
    fn inside_columns(&self, kj: usize) -> (usize, usize) {
        let (s, p) = (self.stride[1], self.pad[1]);
        let lo = p.saturating_sub(kj).div_ceil(s).min(self.ow);
        let hi = if self.w + p > kj {
            ((self.w + p - kj - 1) / s + 1).min(self.ow)
        } else {
            0
        };
        (lo, hi.max(lo))
    }

    /// The input row read by output row `i` at filter row `ki`, if inside the input.
    fn input_row(&self, i: usize, ki: usize) -> Option<usize> {
        (i * self.stride[0] + ki)
            .checked_sub(self.pad[0])
            .filter(|&r| r < self.h)
    }
}

/// The output rows `r0..r1` of a run of samples (row `r` is sample `r / oh`'s row `r % oh`),
/// each of `ow` positions: the chunk a GEMM covers.
#[derive(Clone, Copy)]
struct Chunk {
    r0: usize,
    r1: usize,
}

impl Chunk {
    fn columns(&self, g: &Geometry) -> usize {
        (self.r1 - self.r0) * g.ow
    }

    /// (sample, output row, first column of the chunk) for each row. The copies run this for
    /// every tap of every row: the sample and row are counted on, not divided out per row
    /// (two divisions a row cost more than copying a 14-column row).
    fn rows(self, g: &Geometry) -> impl Iterator<Item = (usize, usize, usize)> {
        let (oh, ow) = (g.oh.max(1), g.ow);
        let (mut b, mut i) = (self.r0 / oh, self.r0 % oh);
        (0..self.r1 - self.r0).map(move |n| {
            let row = (b, i, n * ow);
            i += 1;
            if i == oh {
                (b, i) = (b + 1, 0);
            }
            row
        })
    }
}

fn chunks(g: &Geometry, samples: usize) -> impl Iterator<Item = Chunk> {
    let rows = samples * g.oh;
    let step = g.chunk_rows(samples);
    (0..rows).step_by(step.max(1)).map(move |r0| Chunk {
        r0,
        r1: (r0 + step).min(rows),
    })
}

/// Columns `col[t][n]` (`t` a tap `(c, ki, kj)`, `n` a column of the chunk, row stride `np`)
/// of the chunk's rows of `x` (`samples × c × h × w`), on `isa`'s vector unit where there is
/// one (a strided convolution's taps are every `sw`-th input column: one copy per float
/// otherwise, most of a stride-2 layer's time).
fn im2col(isa: Option<Isa>, g: &Geometry, x: &[f32], chunk: Chunk, col: &mut [f32], np: usize) {
    match isa {
        // SAFETY: the unit is supported (checked); `Im2col` indexes the slices it is given.
        Some(isa) if isa.supported() && g.stride[1] > 1 => unsafe {
            simd::run(
                isa,
                Im2col {
                    g,
                    x,
                    chunk,
                    col,
                    np,
                },
            )
        },
        _ => im2col_rows::<Portable>(g, x, chunk, col, np),
    }
}

struct Im2col<'a> {
    g: &'a Geometry,
    x: &'a [f32],
    chunk: Chunk,
    col: &'a mut [f32],
    np: usize,
}

impl Kernel for Im2col<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        im2col_rows::<Lanes<V>>(self.g, self.x, self.chunk, self.col, self.np)
    }
}

/// How a row of taps is copied: `dst[j] = src[j · stride]`, `src` holding the last one.
trait Taps {
    fn copy(src: &[f32], stride: usize, dst: &mut [f32]);
}

struct Portable;

impl Taps for Portable {
    #[inline(always)]
    fn copy(src: &[f32], stride: usize, dst: &mut [f32]) {
        if stride == 1 {
            dst.copy_from_slice(&src[..dst.len()]);
        } else {
            for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
                *d = *s;
            }
        }
    }
}

/// Sixteen taps a vector: at stride 2 the even lanes of two loads, at other strides a gather.
/// Only used inside [`Im2col::run`], where the CPU has `V`'s unit.
struct Lanes<V>(std::marker::PhantomData<V>);

impl<V: F32x16> Taps for Lanes<V> {
    #[inline(always)]
    fn copy(src: &[f32], stride: usize, dst: &mut [f32]) {
        let n = dst.len();
        if n == 0 {
            return;
        }
        assert!(stride > 0 && (n - 1) * stride < src.len());
        // Floats from tap `k`'s to the last tap's, inclusive.
        let span = |k: usize| (n - 1 - k) * stride + 1;
        // SAFETY: `Lanes` runs inside `simd::run` for `V` (the CPU has its unit). Tap `k`'s
        // vector reads `span(k)` floats of `src` from `k · stride` (asserted inside `src`)
        // or fewer, by its masks, and writes the taps `k..k + 16` below `n` of `dst`.
        unsafe {
            for k in (0..n).step_by(16) {
                let m = low_bits(n - k);
                let at = src.as_ptr().add(k * stride);
                let v = if stride == 2 {
                    let reach = span(k);
                    let a = V::load_masked(low_bits(reach), at);
                    let b = V::load_masked(low_bits(reach.saturating_sub(16)), at.add(16));
                    a.deinterleave(b).0
                } else {
                    V::load_strided(m, at, stride)
                };
                v.store_masked(m, dst.as_mut_ptr().add(k));
            }
        }
    }
}

/// [`im2col`] with each row's taps copied by `T`.
#[inline(always)]
fn im2col_rows<T: Taps>(g: &Geometry, x: &[f32], chunk: Chunk, col: &mut [f32], np: usize) {
    let (plane, sample) = (g.h * g.w, g.c * g.h * g.w);
    let sw = g.stride[1];
    for ci in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let t = (ci * g.kh + ki) * g.kw + kj;
                let (lo, hi) = g.inside_columns(kj);
                let row = &mut col[t * np..][..np];
                for (b, i, n) in chunk.rows(g) {
                    let dst = &mut row[n..n + g.ow];
                    let Some(r) = g.input_row(i, ki) else {
                        dst.fill(0.0);
                        continue;
                    };
                    let src = &x[b * sample + ci * plane + r * g.w..][..g.w];
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if lo < hi {
                        let first = lo * sw + kj - g.pad[1];
                        T::copy(&src[first..], sw, &mut dst[lo..hi]);
                    }
                }
            }
        }
    }
}

/// Adds columns `col` (as [`im2col`] lays them out) into the input gradient `dx`.
fn col2im(g: &Geometry, col: &[f32], np: usize, chunk: Chunk, dx: &mut [f32]) {
    let (plane, sample) = (g.h * g.w, g.c * g.h * g.w);
    let sw = g.stride[1];
    for ci in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let t = (ci * g.kh + ki) * g.kw + kj;
                let (lo, hi) = g.inside_columns(kj);
                let row = &col[t * np..][..np];
                for (b, i, n) in chunk.rows(g) {
                    let Some(r) = g.input_row(i, ki) else {
                        continue;
                    };
                    if lo == hi {
                        continue;
                    }
                    let dst = &mut dx[b * sample + ci * plane + r * g.w..][..g.w];
                    let first = lo * sw + kj - g.pad[1];
                    let src = &row[n + lo..n + hi];
                    if sw == 1 {
                        dst[first..first + (hi - lo)]
                            .iter_mut()
                            .zip(src)
                            .for_each(|(d, &v)| *d += v);
                    } else {
                        for (d, &v) in dst[first..].iter_mut().step_by(sw).zip(src) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// The chunk's rows of `y` (`samples × o × oh × ow`) gathered as `[o, np]`.
fn gather_rows(g: &Geometry, y: &[f32], chunk: Chunk, rows: &mut [f32], np: usize) {
    let p = g.positions();
    for oc in 0..g.o {
        for (b, i, n) in chunk.rows(g) {
            rows[oc * np + n..][..g.ow]
                .copy_from_slice(&y[(b * g.o + oc) * p + i * g.ow..][..g.ow]);
        }
    }
}

/// `[o, np]` rows back into the chunk's rows of `y`, through `store`.
fn scatter_rows(
    g: &Geometry,
    rows: &[f32],
    np: usize,
    chunk: Chunk,
    store: Store<'_>,
    y: &mut [f32],
) {
    let p = g.positions();
    for oc in 0..g.o {
        for (b, i, n) in chunk.rows(g) {
            let at = (b * g.o + oc) * p + i * g.ow;
            let dst = &mut y[at..][..g.ow];
            let src = &rows[oc * np + n..][..g.ow];
            // The sums in the order of the loops they replace: `(y + b) + skip`.
            match store {
                Store::Plain => dst.copy_from_slice(src),
                Store::BiasRelu(bias) => {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = relu(v + bias[oc]);
                    }
                }
                Store::BiasResidualRelu(bias, Skip::Operand(skip)) => {
                    let skip = &skip[at..][..g.ow];
                    for ((d, &v), &r) in dst.iter_mut().zip(src).zip(skip) {
                        *d = relu((v + bias[oc]) + r);
                    }
                }
                Store::BiasResidualRelu(bias, Skip::InPlace) => {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = relu((v + bias[oc]) + *d);
                    }
                }
            }
        }
    }
}

/// The scratch split into a chunk's columns `[taps, np]`, output rows `[o, np]` and the rest.
fn buffers<'a>(
    g: &Geometry,
    samples: usize,
    scratch: &'a mut [f32],
) -> (&'a mut [f32], &'a mut [f32], &'a mut [f32]) {
    let np = g.chunk_rows(samples) * g.ow;
    let (col, rest) = scratch.split_at_mut(g.taps() * np);
    let (rows, rest) = rest.split_at_mut(g.o * np);
    (col, rows, rest)
}

/// `y = conv(x, w)` for `samples` samples: `x` is `samples × c × h × w`, `w` is
/// `o × c × kh × kw`, `y` is `samples × o × oh × ow`; `scratch` holds
/// [`Geometry::scratch_floats`]. `store` says what is stored: the product, or a fused bias,
/// residual sum and ReLU of it. Strided columns are copied on `isa`'s unit where there is one.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    isa: Option<Isa>,
    g: &Geometry,
    samples: usize,
    x: &[f32],
    w: &[f32],
    store: Store<'_>,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let k = g.taps();
    assert!(w.len() >= g.o * k, "weights too short");
    let (col, rows, _) = buffers(g, samples, scratch);
    // Added to a residual in the output planes, the product goes to the rows first.
    let in_place = matches!(store, Store::BiasResidualRelu(_, Skip::InPlace));
    if g.per_sample(samples) && (!in_place || g.sample_fits(samples)) {
        return forward_per_sample(isa, g, samples, x, w, store, y, (col, rows));
    }
    for chunk in chunks(g, samples) {
        let np = chunk.columns(g);
        im2col(isa, g, x, chunk, col, np);
        // Y' [O, np] = W [O, K] · col [K, np]
        // SAFETY: `rows` holds `o · np` floats, `w` `o · k` (asserted), `col` `k · np`, with
        // these strides; `rows` is a scratch slice overlapping neither operand.
        unsafe {
            gemm_call(
                (rows.as_mut_ptr(), 1, np as isize),
                (w.as_ptr(), 1, k as isize),
                (col.as_ptr(), 1, np as isize),
                (g.o, np, k),
                false,
            )
        };
        scatter_rows(g, rows, np, chunk, store, y);
    }
}

/// `dx = convᵀ(dy, w)` for `samples` samples: `dy` is `samples × o × oh × ow`, `dx`
/// `samples × c × h × w` (overwritten).
pub fn input_gradient(
    g: &Geometry,
    samples: usize,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
) {
    let k = g.taps();
    assert!(w.len() >= g.o * k, "weights too short");
    let (col, rows, _) = buffers(g, samples, scratch);
    if g.per_sample(samples) {
        return input_gradient_per_sample(g, samples, dy, w, dx, col);
    }
    dx.fill(0.0);
    for chunk in chunks(g, samples) {
        let np = chunk.columns(g);
        gather_rows(g, dy, chunk, rows, np);
        // dcol [K, np] = Wᵀ [K, O] · dY' [O, np]
        // SAFETY: `col` holds `k · np` floats, `w` `o · k` (asserted; read transposed),
        // `rows` `o · np`; `col` is a scratch slice overlapping neither.
        unsafe {
            gemm_call(
                (col.as_mut_ptr(), 1, np as isize),
                (w.as_ptr(), k as isize, 1),
                (rows.as_ptr(), 1, np as isize),
                (k, np, g.o),
                false,
            )
        };
        col2im(g, col, np, chunk, dx);
    }
}

/// `dw = Σ_samples dy ⋆ x` for `samples` samples: `x` is `samples × c × h × w`, `dy`
/// `samples × o × oh × ow`, `dw` `o × c × kh × kw` (overwritten; zero for no samples).
pub fn filter_gradient(
    isa: Option<Isa>,
    g: &Geometry,
    samples: usize,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    scratch: &mut [f32],
) {
    let k = g.taps();
    let (col, rows, rest) = buffers(g, samples, scratch);
    // dWᵀ [K, O], summed over the chunks: gemm runs this way round (K, usually the larger,
    // as its rows; dY' read transposed) about twice as fast as dW = dY' · colᵀ on
    // 16–64 output channels, and a strided C costs more than the transposition at the end.
    let dwt = &mut rest[..k * g.o];
    dwt.fill(0.0);
    if g.per_sample(samples) {
        filter_gradient_per_sample(isa, g, samples, x, dy, dwt, col);
    } else {
        filter_gradient_chunks(isa, g, samples, x, dy, dwt, (col, rows));
    }
    for (oc, dw) in dw.chunks_exact_mut(k).enumerate() {
        for (t, d) in dw.iter_mut().enumerate() {
            *d = dwt[t * g.o + oc];
        }
    }
}

/// [`filter_gradient`]'s transposed sum `dwt` over chunks of the samples' rows.
fn filter_gradient_chunks(
    isa: Option<Isa>,
    g: &Geometry,
    samples: usize,
    x: &[f32],
    dy: &[f32],
    dwt: &mut [f32],
    (col, rows): (&mut [f32], &mut [f32]),
) {
    let k = g.taps();
    for chunk in chunks(g, samples) {
        let np = chunk.columns(g);
        im2col(isa, g, x, chunk, col, np);
        gather_rows(g, dy, chunk, rows, np);
        // SAFETY: `dwt` holds `k · o` floats, `col` `k · np`, `rows` `o · np` (read
        // transposed); `dwt` is a scratch slice overlapping neither.
        unsafe {
            gemm_call(
                (dwt.as_mut_ptr(), 1, g.o as isize),
                (col.as_ptr(), 1, np as isize),
                (rows.as_ptr(), np as isize, 1),
                (k, g.o, np),
                true,
            )
        };
    }
}

/// `C [m, n] (+)= A [m, k] · B [k, n]`, each matrix given as (pointer, column stride, row
/// stride), on one thread (the caller splits work over threads itself).
///
/// # Safety
/// The pointers address matrices of these shapes and strides; C overlaps neither A nor B.
unsafe fn gemm_call(
    (c, c_cs, c_rs): (*mut f32, isize, isize),
    (a, a_cs, a_rs): (*const f32, isize, isize),
    (b, b_cs, b_rs): (*const f32, isize, isize),
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            c_cs,
            c_rs,
            accumulate,
            a,
            a_cs,
            a_rs,
            b,
            b_cs,
            b_rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{values, vector_units_or_skip};

    /// `y`, `dx` and `dw` by the definition, in f64: every product of the sum, each added
    /// to its output and (times `dy`) to the two gradients.
    fn reference(
        g: &Geometry,
        n: usize,
        (x, w, dy): (&[f32], &[f32], &[f32]),
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0f64; dy.len()];
        let mut dx = vec![0.0f64; x.len()];
        let mut dw = vec![0.0f64; w.len()];
        for b in 0..n {
            for oc in 0..g.o {
                for i in 0..g.oh {
                    for j in 0..g.ow {
                        let yi = ((b * g.o + oc) * g.oh + i) * g.ow + j;
                        for ci in 0..g.c {
                            for ki in 0..g.kh {
                                for kj in 0..g.kw {
                                    let r = (i * g.stride[0] + ki) as isize - g.pad[0] as isize;
                                    let q = (j * g.stride[1] + kj) as isize - g.pad[1] as isize;
                                    if r < 0 || q < 0 || r >= g.h as isize || q >= g.w as isize {
                                        continue;
                                    }
                                    let xi = ((b * g.c + ci) * g.h + r as usize) * g.w + q as usize;
                                    let wi = ((oc * g.c + ci) * g.kh + ki) * g.kw + kj;
                                    y[yi] += x[xi] as f64 * w[wi] as f64;
                                    dx[xi] += dy[yi] as f64 * w[wi] as f64;
                                    dw[wi] += dy[yi] as f64 * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, dx, dw)
    }

    fn close(got: &[f32], want: &[f64], what: &str, g: &Geometry) {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a as f64 - b).abs() <= 1e-5 * scale,
                "{what} {g:?}: element {i}: {a} against {b}"
            );
        }
    }

    /// The three products against the definition over a grid of kernels (square and not, 1 to 7), strides (1 to 3, also above the
    /// kernel), paddings (none to beyond the kernel) and channel counts, and chunks that
    /// split samples (a tiny chunk forced through several geometries' many rows).
    #[test]
    fn products_match_the_definition() {
        let (mut checked, mut per_sample) = (0, 0);
        for &(c, o) in &[(1, 3), (3, 5), (17, 2)] {
            for &(kh, kw) in &[(1, 1), (3, 3), (5, 1), (2, 7), (1, 13)] {
                for &stride in &[[1, 1], [2, 2], [3, 1], [1, 4]] {
                    for (&pad, (h, w)) in
                        [[0, 0], [1, 2], [3, 3]]
                            .iter()
                            .zip([(9, 8), (9, 8), (4, 45)])
                    {
                        let n = 3;
                        if h + 2 * pad[0] < kh || w + 2 * pad[1] < kw {
                            continue;
                        }
                        let g = Geometry {
                            c,
                            h,
                            w,
                            o,
                            kh,
                            kw,
                            stride,
                            pad,
                            oh: (h + 2 * pad[0] - kh) / stride[0] + 1,
                            ow: (w + 2 * pad[1] - kw) / stride[1] + 1,
                        };
                        check(&g, n);
                        checked += 1;
                        per_sample += usize::from(g.per_sample(n));
                    }
                }
            }
        }
        assert!(checked > 100, "only {checked} geometries checked");
        assert!(
            per_sample >= 4,
            "only {per_sample} geometries one sample at a time"
        );
    }

    fn check(g: &Geometry, n: usize) {
        let x = values(n * g.c * g.h * g.w, 1);
        let w = values(g.o * g.taps(), 2);
        let dy = values(n * g.o * g.positions(), 3);
        let (y_want, dx_want, dw_want) = reference(g, n, (&x, &w, &dy));
        // NaN scratch and outputs: whatever a product reads before writing shows.
        let mut scratch = vec![f32::NAN; g.scratch_floats(n)];
        let mut y = vec![f32::NAN; dy.len()];
        forward(None, g, n, &x, &w, Store::Plain, &mut y, &mut scratch);
        close(&y, &y_want, "forward", g);
        let mut dx = vec![f32::NAN; x.len()];
        input_gradient(g, n, &dy, &w, &mut dx, &mut scratch);
        close(&dx, &dx_want, "input gradient", g);
        let mut dw = vec![f32::NAN; w.len()];
        filter_gradient(None, g, n, &x, &dy, &mut dw, &mut scratch);
        close(&dw, &dw_want, "filter gradient", g);
        // The vector units' im2col copies the same floats: the same bits.
        for isa in vector_units_or_skip("gemm_conv products") {
            let mut got = vec![f32::NAN; y.len()];
            forward(
                Some(isa),
                g,
                n,
                &x,
                &w,
                Store::Plain,
                &mut got,
                &mut scratch,
            );
            assert_eq!(bits(&got), bits(&y), "{isa:?} forward {g:?}");
            let mut got = vec![f32::NAN; dw.len()];
            filter_gradient(Some(isa), g, n, &x, &dy, &mut got, &mut scratch);
            assert_eq!(bits(&got), bits(&dw), "{isa:?} filter gradient {g:?}");
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn chunks_cross_samples_and_split_large_planes() {
        // Many small samples per chunk, and planes larger than a chunk.
        for (c, hw, o, n) in [(2, 4, 3, 300), (64, 40, 64, 2)] {
            let g = Geometry {
                c,
                h: hw,
                w: hw,
                o,
                kh: 3,
                kw: 3,
                stride: [1, 1],
                pad: [1, 1],
                oh: hw,
                ow: hw,
            };
            let rows = g.chunk_rows(n);
            assert!(rows < n * g.oh, "{g:?}: one chunk");
            if n > 2 {
                assert!(rows > g.oh, "{g:?}: chunks within a sample");
            }
            let x = values(n * c * hw * hw, 4);
            let w = values(o * g.taps(), 5);
            let mut scratch = vec![f32::NAN; g.scratch_floats(n)];
            let mut y = vec![f32::NAN; n * o * hw * hw];
            forward(None, &g, n, &x, &w, Store::Plain, &mut y, &mut scratch);
            let dy = values(y.len(), 6);
            close(&y, &reference(&g, n, (&x, &w, &dy)).0, "forward", &g);
        }
    }

    /// The fused stores equal the loops they replace, bit for bit: `relu(y + b)` and
    /// `relu((y + b) + skip)`, the skip in its own tensor and in the output's buffer; over
    /// several chunks (a tiny chunk size is not needed: 300 samples of 4×4 cross many).
    #[test]
    fn fused_stores_equal_the_loops() {
        let (n, o) = (300, 3);
        let g = Geometry {
            c: 2,
            h: 4,
            w: 4,
            o,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [1, 1],
            oh: 4,
            ow: 4,
        };
        // In chunks, and one sample at a time (1×1, stride 1 and 2).
        let pointwise = |stride: usize| Geometry {
            kh: 1,
            kw: 1,
            pad: [0, 0],
            stride: [stride, stride],
            oh: 4 / stride,
            ow: 4 / stride,
            ..g
        };
        assert!(!g.per_sample(n) && pointwise(1).per_sample(n) && pointwise(2).per_sample(n));
        for g in [g, pointwise(1), pointwise(2)] {
            stores_equal_the_loops(&g, n);
        }
    }

    fn stores_equal_the_loops(g: &Geometry, n: usize) {
        let o = g.o;
        let x = values(n * g.c * g.h * g.w, 7);
        let w = values(o * g.taps(), 8);
        let bias = values(o, 9);
        let skip = values(n * o * g.positions(), 10);
        let mut scratch = vec![f32::NAN; g.scratch_floats(n)];
        let mut y = vec![f32::NAN; skip.len()];
        forward(None, g, n, &x, &w, Store::Plain, &mut y, &mut scratch);
        let p = g.positions();
        let biased = |k: usize| y[k] + bias[(k / p) % o];
        let relu = |s: f32| if s > 0.0 { s } else { 0.0 };
        let want_bias: Vec<f32> = (0..y.len()).map(|k| relu(biased(k))).collect();
        let want_skip: Vec<f32> = (0..y.len()).map(|k| relu(biased(k) + skip[k])).collect();
        assert!(want_skip.contains(&0.0) && want_skip.iter().any(|&v| v > 0.0));
        let mut got = vec![f32::NAN; y.len()];
        forward(
            None,
            g,
            n,
            &x,
            &w,
            Store::BiasRelu(&bias),
            &mut got,
            &mut scratch,
        );
        assert_eq!(got, want_bias);
        let store = Store::BiasResidualRelu(&bias, Skip::Operand(&skip));
        forward(None, g, n, &x, &w, store, &mut got, &mut scratch);
        assert_eq!(got, want_skip);
        let mut got = skip.clone();
        let store = Store::BiasResidualRelu(&bias, Skip::InPlace);
        forward(None, g, n, &x, &w, store, &mut got, &mut scratch);
        assert_eq!(got, want_skip);
    }
}
