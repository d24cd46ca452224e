//! Contractions whose first operand is image data that is mostly zero.
//!
//! Four of five MNIST pixels are 0, and the first layer's two contractions, `X·W` and the
//! weight gradient `Xᵀ·dH`, read the images `X`. For `C = op(A)·B` with `A` such data (the
//! scaled u8 input), the rows of `op(A)` are gathered in groups of four as the indices where
//! any of them is nonzero, with their four values there; each tile of four rows of `C` is
//! accumulated in registers over those indices, loading each row of `B` once for the four
//! (a row at a time, the loads of `B` from L2 bounded the product: it was no faster than the
//! GEMM). The multiply-adds are in proportion to the gathered indices (about a third, on
//! MNIST's batches) instead of the full product.
//!
//! The sum of each element adds the same nonzero terms as the dense product, in order of
//! their index; the terms skipped are `0 · b`, which are ±0 when `b` is finite (a weight or
//! gradient that is infinite or NaN times a zero pixel would be NaN in the dense product, not
//! always here; training has diverged by then, and the loss check stops it). The gather runs
//! on every call and gives up when more than two in five indices are gathered, so dense data
//! takes the GEMM.

use crate::simd::{self, F32x16, Isa, Kernel, low_bits};

/// Rows of `op(A)` gathered and multiplied together: they share the loads of `B`'s rows.
const GROUP: usize = 4;
/// Vectors of `C`'s columns per register tile (`GROUP × WIDTH` accumulators).
const WIDTH: usize = 4;
const LANES: usize = 16;

/// The most entries gathered for `groups` groups of rows `k` entries long: two in five (an
/// entry is an index where any row of the group is nonzero; denser data takes the GEMM).
fn capacity(groups: usize, k: usize) -> usize {
    groups * k * 2 / 5
}

/// Scratch bytes for `rows` rows of `k` entries: group starts, then indices and a value array
/// per row of a group (with a vector's slack: the gather stores whole vectors).
pub fn scratch_bytes(rows: usize, k: usize) -> usize {
    let groups = rows.div_ceil(GROUP);
    4 * (groups + 1) + 4 * (1 + GROUP) * (capacity(groups, k) + LANES)
}

/// `C[r][c0..c1] = Σ_j op(A)[lo + r][j] · B[j][c0..c1]` for `r < hi − lo`, skipping the zeros of
/// `op(A)`: `A` is `[ar, ac]` row-major (`op(A)` is `Aᵀ` if `transposed`), `B` has rows of
/// `ldb` floats, `C` rows of `ldc` floats from its row `lo`. `scratch` holds
/// [`scratch_bytes`]`(hi − lo, k)` bytes, 4-byte aligned.
///
/// Rows go in groups of four: the indices where any row of a group is nonzero are gathered
/// with the four rows' values there, and each row of `B` at those indices is loaded once for
/// the four rows of `C`. Returns false, having written nothing to `C`, if the groups' indices
/// are more than two in five of all.
///
/// # Safety
/// `b` and `c` hold the rows and columns addressed; the CPU supports `isa`; no one writes
/// the rows of `B` read, nor accesses the rows and columns of `C` written, during the call
/// (a split contraction's other part writes other rows or columns of `C`, through pointers).
#[allow(clippy::too_many_arguments)]
pub unsafe fn product(
    isa: Isa,
    a: Data,
    [ar, ac]: [usize; 2],
    transposed: bool,
    rows: (usize, usize),
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    columns: (usize, usize),
    scratch: &mut [u8],
) -> bool {
    let (b, c) = ((b, ldb), (c, ldc));
    // SAFETY: the caller's contract.
    unsafe {
        product_on(
            (isa, false),
            a,
            [ar, ac],
            transposed,
            rows,
            b,
            c,
            columns,
            scratch,
        )
    }
}

/// [`product`], with AVX-512's tiles and gathers on any unit where `wide` (so that AVX2
/// machines test them too).
///
/// # Safety
/// As [`product`].
#[allow(clippy::too_many_arguments)]
unsafe fn product_on(
    (isa, wide): (Isa, bool),
    a: Data,
    [ar, ac]: [usize; 2],
    transposed: bool,
    (lo, hi): (usize, usize),
    (b, ldb): (*const f32, usize),
    (c, ldc): (*mut f32, usize),
    (c0, c1): (usize, usize),
    scratch: &mut [u8],
) -> bool {
    let rows = hi - lo;
    let k = if transposed { ar } else { ac };
    assert!(a.len() >= ar * ac && scratch.len() >= scratch_bytes(rows, k));
    assert_eq!(
        scratch.as_ptr().align_offset(4),
        0,
        "the scratch is 4-byte aligned"
    );
    // AVX-512's gathers address A with 32-bit element offsets.
    if ar * ac > i32::MAX as usize {
        return false;
    }
    let groups = rows.div_ceil(GROUP);
    let (cap, room) = (capacity(groups, k), capacity(groups, k) + LANES);
    // SAFETY: the scratch is 4-byte aligned and long enough for these disjoint arrays (both
    // asserted); any bit pattern is valid.
    let (starts, idx, vals) = unsafe {
        let p = scratch.as_mut_ptr();
        let at = |k: usize| p.add(4 * (groups + 1) + 4 * k * room);
        (
            std::slice::from_raw_parts_mut(p.cast::<u32>(), groups + 1),
            std::slice::from_raw_parts_mut(at(0).cast::<u32>(), room),
            std::slice::from_raw_parts_mut(at(1).cast::<f32>(), GROUP * room),
        )
    };
    let source = Source {
        a,
        ar,
        ac,
        transposed,
    };
    let gathered = Gather {
        src: &source,
        rows: (lo, hi),
        starts,
        out: (idx, vals, room),
        cap,
        wide,
    };
    // SAFETY: the CPU supports `isa` (the caller's contract); the slices were checked above.
    if !unsafe { simd::run(isa, gathered) } {
        return false;
    }
    let tiles = Tiles {
        gathered: (starts, idx, vals, room),
        rows,
        b: (b, ldb),
        c: (c, ldc),
        columns: (c0, c1),
        wide,
    };
    // SAFETY: as above; `b` and `c` hold what is addressed (the caller's contract).
    unsafe { simd::run(isa, tiles) };
    true
}

/// The elements of `A`: floats, or bytes that a `to_f32` would scale (the kernel then reads
/// the images themselves, and the step has no float copy of them).
#[derive(Clone, Copy)]
pub enum Data<'a> {
    F32(&'a [f32]),
    /// `A[i] = bytes[i] as f32 · scale`, rounded as `to_f32` rounds it.
    U8(&'a [u8], f32),
}

impl Data<'_> {
    fn len(&self) -> usize {
        match self {
            Data::F32(a) => a.len(),
            Data::U8(a, _) => a.len(),
        }
    }
}

/// Where the rows of `op(A)` come from.
struct Source<'a> {
    a: Data<'a>,
    ar: usize,
    ac: usize,
    transposed: bool,
}

impl Source<'_> {
    /// Entries `j0..j0 + 16` (those below the row's length) of row `r` of `op(A)`, zeros past
    /// the end of the row or if `r` is past the last row `end`.
    #[inline(always)]
    unsafe fn chunk<V: F32x16>(&self, r: usize, end: usize, j0: usize) -> V {
        // SAFETY: the CPU has `V`'s unit (the caller's contract).
        unsafe {
            if r >= end {
                return V::zero();
            }
            // Column `r` of A, rows `j0..` (`ac` elements apart), or row `r`, from `j0`.
            let (m, at, stride) = if self.transposed {
                (low_bits(self.ar - j0), j0 * self.ac + r, self.ac)
            } else {
                (low_bits(self.ac - j0), r * self.ac + j0, 1)
            };
            // SAFETY: the lanes of `m` address rows below `ar` of column `r < ac`, or are
            // inside row `r < ar`.
            match self.a {
                Data::F32(a) if stride == 1 => V::load_masked(m, a.as_ptr().add(at)),
                Data::F32(a) => V::load_strided(m, a.as_ptr().add(at), stride),
                Data::U8(a, scale) => {
                    V::load_bytes_strided(m, a.as_ptr().add(at), stride).mul(V::splat(scale))
                }
            }
        }
    }
}

/// Gathers the groups of rows `lo..hi` of `op(A)`: group `g`'s entries are
/// `starts[g]..starts[g + 1]` of `idx` (the index into `B`'s rows) and of each of the
/// `GROUP` value arrays (`room` floats apart in `vals`). False if more than `cap` entries.
struct Gather<'a> {
    src: &'a Source<'a>,
    rows: (usize, usize),
    starts: &'a mut [u32],
    out: (&'a mut [u32], &'a mut [f32], usize),
    cap: usize,
    wide: bool,
}

impl Kernel for Gather<'_> {
    type Output = bool;

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) -> bool {
        let Gather {
            src,
            rows: (lo, hi),
            starts,
            out: (idx, vals, room),
            cap,
            wide,
        } = self;
        let k = if src.transposed { src.ar } else { src.ac };
        if src.transposed && !(wide || V::FAST_GATHER) {
            return gather_columns(src, (lo, hi), starts, (idx, vals, room), cap);
        }
        let mut n = 0;
        for (gi, r0) in (lo..hi).step_by(GROUP).enumerate() {
            starts[gi] = n as u32;
            for j0 in (0..k).step_by(LANES) {
                // SAFETY: the CPU has `V`'s unit (the caller's contract). (Loops, not
                // closures: see `simd`.)
                let mut v = [unsafe { V::zero() }; GROUP];
                let mut any = 0;
                for (g, v) in v.iter_mut().enumerate() {
                    *v = unsafe { src.chunk(r0 + g, hi, j0) };
                    any |= unsafe { v.nonzero() };
                }
                let any = any & low_bits(k - j0);
                let count = any.count_ones() as usize;
                if n + count > cap {
                    return false;
                }
                assert!(n + LANES <= room && GROUP * room <= vals.len() && room <= idx.len());
                // SAFETY: sixteen entries from `n` are inside `idx` and each value array
                // (asserted).
                unsafe {
                    simd::store_indices(any, j0 as u32, idx.as_mut_ptr().add(n));
                    for (g, &v) in v.iter().enumerate() {
                        v.store_compressed(any, vals.as_mut_ptr().add(g * room + n));
                    }
                }
                n += count;
            }
        }
        starts[(hi - lo).div_ceil(GROUP)] = n as u32;
        true
    }
}

/// [`Gather`] for `op(A) = Aᵀ` without a fast vector gather (AVX2's `vgatherdps` loads a lane
/// at a time): the group's `GROUP` rows of `Aᵀ` are adjacent columns of `A`, so each entry is
/// `GROUP` contiguous elements of a row of `A`, read in order. Same output as [`Gather`].
#[inline(always)]
fn gather_columns(
    src: &Source,
    rows: (usize, usize),
    starts: &mut [u32],
    out: (&mut [u32], &mut [f32], usize),
    cap: usize,
) -> bool {
    let shape = (src.ar, src.ac);
    match src.a {
        Data::F32(a) => gather_columns_of(a, shape, |x| x, |_| false, rows, starts, out, cap),
        // All-zero bytes are skipped before they are scaled (0 · scale is 0 when the scale
        // is finite): most of the images' entries.
        Data::U8(a, scale) => gather_columns_of(
            a,
            shape,
            |b| b as f32 * scale,
            |b| b == 0 && scale.is_finite(),
            rows,
            starts,
            out,
            cap,
        ),
    }
}

/// [`gather_columns`] over elements `T`, which `value` turns into floats; an entry whose
/// elements are all `zero` (a quick test, before `value`) is skipped.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gather_columns_of<T: Copy>(
    a: &[T],
    (ar, ac): (usize, usize),
    value: impl Fn(T) -> f32,
    zero: impl Fn(T) -> bool,
    (lo, hi): (usize, usize),
    starts: &mut [u32],
    (idx, vals, room): (&mut [u32], &mut [f32], usize),
    cap: usize,
) -> bool {
    assert!(GROUP * room <= vals.len() && room <= idx.len() && cap <= room);
    let mut n = 0;
    for (gi, r0) in (lo..hi).step_by(GROUP).enumerate() {
        starts[gi] = n as u32;
        // Rows past `hi` read as 0, as in `Source::chunk`.
        let width = (hi - r0).min(GROUP);
        for j in 0..ar {
            let row = &a[j * ac + r0..][..width];
            if row.iter().all(|&x| zero(x)) {
                continue;
            }
            let mut v = [0.0f32; GROUP];
            for (v, &x) in v.iter_mut().zip(row) {
                *v = value(x);
            }
            // Nonzero as `F32x16::nonzero` has it: NaN counts, -0 does not.
            if v.iter().all(|&x| x == 0.0) {
                continue;
            }
            if n == cap {
                return false;
            }
            idx[n] = j as u32;
            for (g, &x) in v.iter().enumerate() {
                vals[g * room + n] = x;
            }
            n += 1;
        }
    }
    starts[(hi - lo).div_ceil(GROUP)] = n as u32;
    true
}

/// The products of the gathered groups with `B`'s columns `c0..c1`, a tile of `GROUP` rows
/// by [`tile_width`] vectors at a time.
struct Tiles<'a> {
    gathered: (&'a [u32], &'a [u32], &'a [f32], usize),
    rows: usize,
    b: (*const f32, usize),
    c: (*mut f32, usize),
    columns: (usize, usize),
    wide: bool,
}

impl Kernel for Tiles<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let (starts, idx, vals, room) = self.gathered;
        let ((b, ldb), (c, ldc), (c0, c1)) = (self.b, self.c, self.columns);
        // Column strips outside, groups inside: a strip of `B`'s rows (784 × 16 floats for
        // the MLP on AVX2, 50 KB) stays in L2 while every group reads it, where a group at a
        // time over all strips read all of `B` (1.6 MB) from L3 for each group.
        let mut j = c0;
        while j < c1 {
            let w = (c1 - j).min(tile_width::<V>(self.wide) * LANES);
            for (gi, se) in starts.windows(2).enumerate() {
                let (s, e) = (se[0] as usize, se[1] as usize);
                let group_rows = (self.rows - gi * GROUP).min(GROUP);
                let values: [&[f32]; GROUP] =
                    std::array::from_fn(|g| &vals[g * room + s..g * room + e]);
                // SAFETY: rows of the group, and columns `j..j + w` within `c0..c1`, of `B`
                // and `C` (the caller's contract).
                unsafe {
                    let tile = (b.add(j), ldb);
                    let out = (c.add(gi * GROUP * ldc + j), ldc, group_rows);
                    if simd::wide_tiles::<V>(self.wide) {
                        tile_of::<V, WIDTH>((&idx[s..e], values), tile, out, w);
                    } else {
                        tile_of::<V, 1>((&idx[s..e], values), tile, out, w);
                    }
                }
            }
            j += w;
        }
    }
}

/// Vectors of `C`'s columns per tile: `WIDTH` with 32 registers (or where `wide`), 1 with 8
/// (`GROUP` accumulators of two halves each, the row of `B` and the broadcasts fill AVX2's
/// sixteen).
fn tile_width<V: F32x16>(wide: bool) -> usize {
    if simd::wide_tiles::<V>(wide) {
        WIDTH
    } else {
        1
    }
}

/// `C[g][0..w] = Σ_t values[g][t] · B[idx[t]][0..w]` for the `rows` rows of a group, `w ≤
/// 16·W` columns, accumulated in registers; each row of `B` is loaded once per entry.
#[inline(always)]
unsafe fn tile_of<V: F32x16, const W: usize>(
    (idx, values): (&[u32], [&[f32]; GROUP]),
    (b, ldb): (*const f32, usize),
    (c, ldc, rows): (*mut f32, usize, usize),
    w: usize,
) {
    let m: [u16; W] = std::array::from_fn(|q| low_bits(w.saturating_sub(q * LANES)));
    let full = w == W * LANES;
    assert!(values.iter().all(|v| v.len() == idx.len()));
    // SAFETY (throughout): the CPU has `V`'s unit; row `j` of `B` holds the `w` columns from
    // `b`, and rows `g < rows` of the group and their `w` columns from `c` are inside C (the
    // caller's contract); masked lanes are not accessed; `t` is below every value array's
    // length (asserted; unchecked, because the checks cost AVX2's narrower tiles a tenth).
    unsafe {
        let mut acc = [[V::zero(); W]; GROUP];
        for (t, &j) in idx.iter().enumerate() {
            let mut v = [V::zero(); GROUP];
            for (v, values) in v.iter_mut().zip(&values) {
                *v = V::splat(*values.get_unchecked(t));
            }
            let row = b.add(j as usize * ldb);
            for q in 0..W {
                let x = if full {
                    V::load(row.add(q * LANES))
                } else {
                    V::load_masked(m[q], row.wrapping_add(q * LANES))
                };
                for g in 0..GROUP {
                    acc[g][q] = v[g].mul_add(x, acc[g][q]);
                }
            }
        }
        for (g, acc) in acc.iter().enumerate().take(rows) {
            for (q, a) in acc.iter().enumerate() {
                a.store_masked(m[q], c.wrapping_add(g * ldc + q * LANES));
            }
        }
    }
}

/// Times the MLP's two first-layer products on banded data about as sparse as MNIST (15 % nonzero)
/// on one thread, printing the best of 50 runs (`cargo bench -p nnc-kernels --bench kernels`).
#[doc(hidden)]
pub fn time_mlp_shapes(isa: Isa) {
    let (ar, ac, nb) = (128, 784, 512);
    let a = banded(ar, ac, 3);
    let density = a.iter().filter(|&&x| x != 0.0).count() as f64 / a.len() as f64;
    // The same sparsity as bytes (the images as the step reads them).
    let bytes: Vec<u8> = a
        .iter()
        .map(|&x| (x.abs() * 255.0).min(255.0) as u8)
        .collect();
    let b = dense(ac.max(ar) * nb, 4);
    let mut c = vec![0.0f32; ac * nb];
    let mut scratch = vec![0u32; scratch_bytes(ac, ar.max(ac)) / 4 + 1];
    for (name, transposed, rows, cols) in [
        ("X·W, 256 columns", false, (0, 128), (0, 256)),
        ("Xᵀ·dH, 392 rows", true, (392, 784), (0, 512)),
    ] {
        for data in [Data::F32(&a), Data::U8(&bytes, 1.0 / 255.0)] {
            let mut best = f64::MAX;
            for _ in 0..50 {
                let t = std::time::Instant::now();
                // SAFETY: B and C are big enough for either product.
                let done = unsafe {
                    product(
                        isa,
                        data,
                        [ar, ac],
                        transposed,
                        rows,
                        b.as_ptr(),
                        nb,
                        c.as_mut_ptr(),
                        nb,
                        cols,
                        bytemuck_bytes(&mut scratch),
                    )
                };
                assert!(done);
                best = best.min(t.elapsed().as_secs_f64() * 1e6);
            }
            let kind = match data {
                Data::F32(_) => "floats",
                Data::U8(..) => "bytes",
            };
            println!("{name}, {kind}: {best:.1} µs at density {density:.2}");
        }
    }
}

/// A `[rows, cols]` matrix shaped like a batch of images: nonzero only in a band of the
/// columns (three in ten), there about half the time; some zeros are -0.
fn banded(rows: usize, cols: usize, seed: usize) -> Vec<f32> {
    let band = cols * 3 / 10..cols * 6 / 10;
    (0..rows * cols)
        .map(|i| {
            let h = (i * 7919 + seed * 104_729) % 1009;
            if band.contains(&(i % cols)) && h.is_multiple_of(2) {
                (h as f32 * 0.37).sin()
            } else if h.is_multiple_of(7) {
                -0.0
            } else {
                0.0
            }
        })
        .collect()
}

/// Dense values.
fn dense(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1009) as f32 * 0.37).sin())
        .collect()
}

fn bytemuck_bytes(v: &mut [u32]) -> &mut [u8] {
    // SAFETY: u32s are plain bytes.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 4) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_the_dense_definition() {
        // (ar, ac, transposed, rows, columns of B and the range computed)
        let cases = [
            (12, 50, false, (0, 12), 40, (0, 40)),
            (12, 50, false, (5, 9), 300, (17, 300)),
            (30, 20, true, (0, 20), 33, (0, 33)),
            (30, 20, true, (11, 19), 520, (0, 512)),
            (3, 1, true, (0, 1), 1, (0, 1)),
        ];
        // Each unit with its own tiles and gathers, and with AVX-512's.
        let runs = crate::testing::vector_units("sparse::products_match_the_dense_definition")
            .into_iter()
            .flat_map(|isa| [(isa, false), (isa, true)])
            .flat_map(|unit| cases.iter().enumerate().map(move |c| (unit, c)));
        for ((isa, wide), (case, &(ar, ac, transposed, (lo, hi), nb, (c0, c1)))) in runs {
            let a = banded(ar, ac, case);
            let k = if transposed { ar } else { ac };
            let b = dense(k * nb, 50 + case);
            let mut c = vec![f32::NAN; (hi - lo) * nb];
            let mut scratch = vec![0u32; scratch_bytes(hi - lo, k) / 4 + 1];
            // SAFETY: B is k × nb, C (hi − lo) × nb; the unit is supported.
            let done = unsafe {
                product_on(
                    (isa, wide),
                    Data::F32(&a),
                    [ar, ac],
                    transposed,
                    (lo, hi),
                    (b.as_ptr(), nb),
                    (c.as_mut_ptr(), nb),
                    (c0, c1),
                    bytemuck_bytes(&mut scratch),
                )
            };
            assert!(done, "case {case}: sparse enough");
            let op_a = |r: usize, j: usize| {
                if transposed {
                    a[j * ac + r]
                } else {
                    a[r * ac + j]
                }
            };
            for r in 0..hi - lo {
                for col in 0..nb {
                    let got = c[r * nb + col];
                    if !(c0..c1).contains(&col) {
                        assert!(got.is_nan(), "case {case}: C[{r}][{col}] written");
                        continue;
                    }
                    let want: f64 = (0..k)
                        .map(|j| op_a(lo + r, j) as f64 * b[j * nb + col] as f64)
                        .sum();
                    assert!(
                        (got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "{isa:?} wide {wide} case {case}: C[{r}][{col}] {got} vs {want}"
                    );
                }
            }
        }
    }

    /// Image bytes read with their scale give the bits that their floats (as `to_f32` makes
    /// them) give, on each unit, gathered along rows and along columns.
    #[test]
    fn bytes_give_the_bits_of_their_floats() {
        let scale = (1.0 / 255.0f64) as f32;
        let (ar, ac, nb) = (13, 37, 40);
        let floats = banded(ar, ac, 2);
        let bytes: Vec<u8> = floats
            .iter()
            .map(|&x| (x.abs() * 255.0).min(255.0) as u8)
            .collect();
        assert!(bytes.contains(&0) && bytes.iter().any(|&b| b > 100));
        let scaled: Vec<f32> = bytes.iter().map(|&b| b as f32 * scale).collect();
        let runs = crate::testing::vector_units("sparse::bytes_give_the_bits_of_their_floats")
            .into_iter()
            .flat_map(|isa| [(isa, false), (isa, true)])
            .flat_map(|unit| [(unit, false), (unit, true)]);
        for ((isa, wide), transposed) in runs {
            let (rows, k) = if transposed { (ac, ar) } else { (ar, ac) };
            let b = dense(k * nb, 9);
            let run = |a: Data| {
                let mut c = vec![f32::NAN; rows * nb];
                let mut scratch = vec![0u32; scratch_bytes(rows, k) / 4 + 1];
                // SAFETY: B is k × nb, C rows × nb; the unit is supported.
                let done = unsafe {
                    product_on(
                        (isa, wide),
                        a,
                        [ar, ac],
                        transposed,
                        (0, rows),
                        (b.as_ptr(), nb),
                        (c.as_mut_ptr(), nb),
                        (0, nb),
                        bytemuck_bytes(&mut scratch),
                    )
                };
                assert!(done, "sparse enough");
                c.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(
                run(Data::U8(&bytes, scale)),
                run(Data::F32(&scaled)),
                "{isa:?} wide {wide} transposed {transposed}"
            );
        }
    }

    #[test]
    fn dense_rows_are_left_to_the_gemm() {
        let (ar, ac) = (8, 30);
        let a = dense(ar * ac, 1);
        let b = vec![1.0f32; ac * 4];
        let runs = crate::testing::vector_units("sparse::dense_rows_are_left_to_the_gemm")
            .into_iter()
            .flat_map(|isa| [(isa, false), (isa, true)]);
        for (isa, transposed) in runs {
            let (rows, k) = if transposed { (ac, ar) } else { (ar, ac) };
            let b = &b[..k * 4];
            let mut c = vec![f32::NAN; rows * 4];
            let mut scratch = vec![0u32; scratch_bytes(rows, k) / 4 + 1];
            // SAFETY: as above.
            let done = unsafe {
                product(
                    isa,
                    Data::F32(&a),
                    [ar, ac],
                    transposed,
                    (0, rows),
                    b.as_ptr(),
                    4,
                    c.as_mut_ptr(),
                    4,
                    (0, 4),
                    bytemuck_bytes(&mut scratch),
                )
            };
            assert!(!done, "every entry is nonzero");
            assert!(c.iter().all(|x| x.is_nan()), "nothing written");
        }
    }
}
