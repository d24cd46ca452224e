//! `pad`, `slice` and `place` (a `concat` operand into its columns): a box of a tensor copied row by row, into a zeroed frame (`pad`: each
//! element of the result written once, a copied element or a +0) or out of a bigger tensor
//! (`slice`). Axes the box spans whole are merged first, so that rows are as long as they
//! can be (a pad of the last two axes of `[N, C, H, W]` is `N·C` planes of `H` rows); on a
//! vector unit a row is copied a vector at a time, its end masked (a 13-float row is one
//! masked load and store), instead of one `memcpy` call per row.

use crate::simd::{self, F32x16, Isa, Kernel, low_bits};

/// The largest rank a program's tensors may have (the compiler checks it):
/// kernels keep multi-indices on the stack.
pub const MAX_RANK: usize = 8;

/// The row-major strides of shape `s`.
pub fn row_major(s: &[usize]) -> [usize; MAX_RANK] {
    let mut strides = [1; MAX_RANK];
    for d in (0..s.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * s[d + 1];
    }
    strides
}

/// `y` (shape `ys`) = `x` (shape `xs`) with its axes permuted: `y`'s axis `d` is `x`'s axis
/// `perm[d]`.
pub fn transpose(x: &[f32], xs: &[usize], perm: &[usize], y: &mut [f32], ys: &[usize]) {
    let strides = row_major(xs);
    let mut idx = [0usize; MAX_RANK];
    for (k, y) in y.iter_mut().enumerate() {
        let mut rem = k;
        for d in (0..ys.len()).rev() {
            idx[d] = rem % ys[d];
            rem /= ys[d];
        }
        *y = x[(0..ys.len())
            .map(|d| idx[d] * strides[perm[d]])
            .sum::<usize>()];
    }
}

/// `y` = `x` (shape `xs`) placed at `low` in zeros of shape `ys`.
///
/// # Panics
/// If the shapes differ in rank or exceed [`MAX_RANK`], the box does not fit, or the slices
/// are shorter than their shapes.
pub fn pad(isa: Option<Isa>, x: &[f32], xs: &[usize], y: &mut [f32], ys: &[usize], low: &[usize]) {
    let b = Boxed::new(xs, ys, low);
    copy(isa, b, x, y, true);
}

/// `y` (shape `ys`) = the box of `x` (shape `xs`) at `start`.
///
/// # Panics
/// As [`pad`].
pub fn slice(
    isa: Option<Isa>,
    x: &[f32],
    xs: &[usize],
    y: &mut [f32],
    ys: &[usize],
    start: &[usize],
) {
    let b = Boxed::new(ys, xs, start);
    copy(isa, b, x, y, false);
}

/// Row `r` of `x` (rows of `row` floats) into `y[r · stride + at..][..row]`, for every row of
/// `x`: one operand of a `concat` into its columns of the result, written once (no zeros, no
/// sum). The rest of `y` is left as it is.
///
/// # Panics
/// If `x` is not whole rows, the rows do not fit in `stride` at `at`, or `y` is too short.
pub fn place(isa: Option<Isa>, x: &[f32], row: usize, y: &mut [f32], stride: usize, at: usize) {
    if x.is_empty() {
        return;
    }
    assert!(row > 0 && x.len().is_multiple_of(row) && at + row <= stride);
    assert!(y.len() >= (x.len() / row - 1) * stride + at + row);
    let placed = Placed {
        x,
        row,
        y,
        stride,
        at,
    };
    match isa {
        // SAFETY: the unit is supported (checked); `Placed` indexes the slices it is given.
        Some(isa) if isa.supported() => unsafe { simd::run(isa, placed) },
        _ => placed.rows::<Portable>(),
    }
}

struct Placed<'a> {
    x: &'a [f32],
    row: usize,
    y: &'a mut [f32],
    stride: usize,
    at: usize,
}

impl Placed<'_> {
    #[inline(always)]
    fn rows<R: Row>(self) {
        for (src, dst) in self
            .x
            .chunks_exact(self.row)
            .zip(self.y.chunks_mut(self.stride))
        {
            R::copy(src, &mut dst[self.at..self.at + self.row]);
        }
    }
}

impl Kernel for Placed<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        self.rows::<Lanes<V>>()
    }
}

/// A box `small` at `at` in `big`, with the axes it spans whole merged into the axis before
/// them (the last axis stays: the rows).
#[derive(Clone, Copy, Debug)]
struct Boxed {
    rank: usize,
    small: [usize; MAX_RANK],
    big: [usize; MAX_RANK],
    at: [usize; MAX_RANK],
}

impl Boxed {
    fn new(small: &[usize], big: &[usize], at: &[usize]) -> Boxed {
        let r = small.len();
        assert!(r > 0 && r <= MAX_RANK && big.len() == r && at.len() == r);
        assert!((0..r).all(|d| at[d] + small[d] <= big[d]));
        let mut b = Boxed {
            rank: 0,
            small: [1; MAX_RANK],
            big: [1; MAX_RANK],
            at: [0; MAX_RANK],
        };
        for d in 0..r {
            // Axis `d` whole: fold the previous axis into it (`prev · n + i` indexes both).
            if b.rank > 0 && small[d] == big[d] && at[d] == 0 {
                let k = b.rank - 1;
                b.small[k] *= small[d];
                b.big[k] *= big[d];
                b.at[k] *= big[d];
            } else {
                b.small[b.rank] = small[d];
                b.big[b.rank] = big[d];
                b.at[b.rank] = at[d];
                b.rank += 1;
            }
        }
        b
    }
}

fn copy(isa: Option<Isa>, b: Boxed, x: &[f32], y: &mut [f32], into: bool) {
    let n = |s: &[usize]| s.iter().product::<usize>();
    let (small, big) = (n(&b.small[..b.rank]), n(&b.big[..b.rank]));
    let (xn, yn) = if into { (small, big) } else { (big, small) };
    assert!(x.len() >= xn && y.len() >= yn);
    let (x, y) = (&x[..xn], &mut y[..yn]);
    match isa {
        // SAFETY: the unit is supported (checked); `Copy` indexes the slices it is given.
        Some(isa) if isa.supported() => unsafe { simd::run(isa, BoxCopy { b, x, y, into }) },
        _ => rows::<Portable>(b, x, y, into),
    }
}

struct BoxCopy<'a> {
    b: Boxed,
    x: &'a [f32],
    y: &'a mut [f32],
    into: bool,
}

impl Kernel for BoxCopy<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        rows::<Lanes<V>>(self.b, self.x, self.y, self.into)
    }
}

/// How a row is copied and zeroed.
trait Row {
    /// `dst = src` (equal lengths).
    fn copy(src: &[f32], dst: &mut [f32]);
    fn zero(dst: &mut [f32]);
}

struct Portable;

impl Row for Portable {
    #[inline(always)]
    fn copy(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    #[inline(always)]
    fn zero(dst: &mut [f32]) {
        dst.fill(0.0);
    }
}

/// Rows a vector at a time. Only used inside [`BoxCopy::run`], where the CPU has `V`'s unit.
struct Lanes<V>(std::marker::PhantomData<V>);

impl<V: F32x16> Row for Lanes<V> {
    #[inline(always)]
    fn copy(src: &[f32], dst: &mut [f32]) {
        let n = src.len();
        assert!(dst.len() == n);
        // SAFETY: `Lanes` runs inside `simd::run` for `V` (the CPU has its unit); each
        // access covers lanes `k..k + 16` (or the masked lanes below `n`) of both slices.
        unsafe {
            let mut k = 0;
            while k + 16 <= n {
                V::load(src.as_ptr().add(k)).store(dst.as_mut_ptr().add(k));
                k += 16;
            }
            if k < n {
                let m = low_bits(n - k);
                V::load_masked(m, src.as_ptr().add(k)).store_masked(m, dst.as_mut_ptr().add(k));
            }
        }
    }
    #[inline(always)]
    fn zero(dst: &mut [f32]) {
        let n = dst.len();
        // SAFETY: as in `copy`.
        unsafe {
            let z = V::zero();
            let mut k = 0;
            while k + 16 <= n {
                z.store(dst.as_mut_ptr().add(k));
                k += 16;
            }
            if k < n {
                z.store_masked(low_bits(n - k), dst.as_mut_ptr().add(k));
            }
        }
    }
}

/// The copy, a row of the big tensor at a time: `pad` writes each of its rows (zeros outside
/// the box), `slice` reads the box's rows.
#[inline(always)]
fn rows<R: Row>(b: Boxed, x: &[f32], y: &mut [f32], into: bool) {
    if y.is_empty() {
        return;
    }
    let r = b.rank;
    let (row, big_row, at) = (b.small[r - 1], b.big[r - 1], b.at[r - 1]);
    let outer = &b.big[..r - 1];
    // The big tensor's row strides (in rows) and the box's first row.
    let mut strides = [0; MAX_RANK];
    let mut stride = 1;
    for d in (0..r - 1).rev() {
        strides[d] = stride;
        stride *= outer[d];
    }
    let first: usize = (0..r - 1).map(|d| b.at[d] * strides[d]).sum();
    if into {
        // Every row of the result, in order: a row of the box or a zero row. The box's rows
        // come in their own order.
        let mut idx = [0; MAX_RANK];
        let mut k = 0;
        for dst in y.chunks_exact_mut(big_row) {
            let inside = (0..r - 1).all(|d| idx[d] >= b.at[d] && idx[d] < b.at[d] + b.small[d]);
            if inside {
                R::zero(&mut dst[..at]);
                R::copy(&x[k * row..(k + 1) * row], &mut dst[at..at + row]);
                R::zero(&mut dst[at + row..]);
                k += 1;
            } else {
                R::zero(dst);
            }
            // The next row's index.
            for d in (0..r - 1).rev() {
                idx[d] += 1;
                if idx[d] < outer[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    } else {
        // Every row of the box, in order, from its place in the input.
        let mut idx = [0; MAX_RANK];
        for dst in y.chunks_exact_mut(row) {
            let src: usize = first + (0..r - 1).map(|d| idx[d] * strides[d]).sum::<usize>();
            R::copy(&x[src * big_row + at..][..row], dst);
            for d in (0..r - 1).rev() {
                idx[d] += 1;
                if idx[d] < b.small[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: every element of the box by its multi-index.
    fn by_index(small: &[usize], big: &[usize], at: &[usize]) -> Vec<(usize, usize)> {
        let r = small.len();
        let n: usize = small.iter().product();
        (0..n)
            .map(|k| {
                let (mut rem, mut o) = (k, 0);
                let mut stride = 1;
                for d in (0..r).rev() {
                    o += (rem % small[d] + at[d]) * stride;
                    rem /= small[d];
                    stride *= big[d];
                }
                (k, o)
            })
            .collect()
    }

    #[test]
    fn pad_and_slice_match_the_definition() {
        let mut units: Vec<Option<Isa>> =
            crate::testing::vector_units_or_skip("copy::pad_and_slice_match_the_definition")
                .into_iter()
                .map(Some)
                .collect();
        units.push(None);
        // (small, big, at): whole axes, padded axes at either end, rows longer than a vector
        // and of one element, rank 1 to 5.
        let cases: [(&[usize], &[usize], &[usize]); 9] = [
            (&[4, 3, 13, 13], &[4, 3, 14, 14], &[0, 0, 0, 0]),
            (&[4, 1, 28, 28], &[4, 1, 33, 33], &[0, 0, 2, 2]),
            (&[2, 3, 5, 40], &[3, 5, 5, 45], &[1, 2, 0, 3]),
            (&[6, 7], &[6, 7], &[0, 0]),
            (&[17], &[20], &[3]),
            (&[3, 1], &[5, 4], &[2, 3]),
            (&[2, 2, 2, 2, 33], &[3, 2, 4, 2, 35], &[1, 0, 2, 0, 1]),
            (&[5, 1, 1], &[5, 3, 3], &[0, 1, 1]),
            (&[1, 16], &[3, 16], &[2, 0]),
        ];
        for isa in units {
            for (small, big, at) in cases {
                let (ns, nb) = (small.iter().product(), big.iter().product());
                let map = by_index(small, big, at);
                let x: Vec<f32> = (0..ns).map(|i| i as f32 + 0.5).collect();
                let mut want = vec![0.0; nb];
                for &(k, o) in &map {
                    want[o] = x[k];
                }
                let mut y = vec![f32::NAN; nb];
                pad(isa, &x, small, &mut y, big, at);
                assert_eq!(y, want, "{isa:?} pad {small:?} into {big:?} at {at:?}");
                let x: Vec<f32> = (0..nb).map(|i| i as f32 + 0.5).collect();
                let want: Vec<f32> = map.iter().map(|&(_, o)| x[o]).collect();
                let mut y = vec![f32::NAN; ns];
                slice(isa, &x, big, &mut y, small, at);
                assert_eq!(y, want, "{isa:?} slice {small:?} of {big:?} at {at:?}");
            }
        }
    }

    #[test]
    fn place_writes_only_its_columns() {
        let mut units: Vec<Option<Isa>> =
            crate::testing::vector_units_or_skip("copy::place_writes_only_its_columns")
                .into_iter()
                .map(Some)
                .collect();
        units.push(None);
        // (rows, row, stride, at): rows shorter than, equal to and longer than a vector, at
        // either end of the result's rows and in the middle.
        let cases = [
            (3, 5, 12, 0),
            (2, 16, 40, 17),
            (4, 33, 40, 7),
            (1, 1, 1, 0),
            (5, 3, 9, 6),
        ];
        for isa in units {
            for (rows, row, stride, at) in cases {
                let x: Vec<f32> = (0..rows * row).map(|i| i as f32 + 0.5).collect();
                let mut y = vec![-1.0; rows * stride];
                place(isa, &x, row, &mut y, stride, at);
                for (k, &v) in y.iter().enumerate() {
                    let (r, c) = (k / stride, k % stride);
                    let want = if (at..at + row).contains(&c) {
                        x[r * row + c - at]
                    } else {
                        -1.0
                    };
                    assert_eq!(v, want, "{isa:?} {rows}x{row} into {stride} at {at}: {k}");
                }
            }
        }
    }
}
