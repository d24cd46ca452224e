//! Reductions over any axes of a row-major tensor, and the argmax along one.

use crate::copy::{MAX_RANK, row_major};

/// Sum or max over `axes` (removed), accumulating in f64 for sums so that long reductions
/// (a bias gradient over a batch of images) stay accurate.
pub fn reduce(x: &[f32], out: &mut [f32], s: &[usize], axes: &[usize], max: bool) {
    let strides = row_major(s);
    // The kept and the reduced dimensions, in order.
    let (mut kept, mut gone) = ([0; MAX_RANK], [0; MAX_RANK]);
    let (mut nk, mut ng) = (0, 0);
    for d in 0..s.len() {
        if axes.contains(&d) {
            gone[ng] = d;
            ng += 1;
        } else {
            kept[nk] = d;
            nk += 1;
        }
    }
    let offset = |mut k: usize, dims: &[usize]| {
        let mut at = 0;
        for &d in dims.iter().rev() {
            at += (k % s[d]) * strides[d];
            k /= s[d];
        }
        at
    };
    let inner: usize = gone[..ng].iter().map(|&d| s[d]).product();
    // Each output's elements in memory order, as one pass over `x` would add them.
    for (o, y) in out.iter_mut().enumerate() {
        let base = offset(o, &kept[..nk]);
        let mut acc = if max { f64::NEG_INFINITY } else { 0.0 };
        for k in 0..inner {
            let v = x[base + offset(k, &gone[..ng])] as f64;
            acc = if max { acc.max(v) } else { acc + v };
        }
        *y = acc as f32;
    }
}

/// (outer, axis length, inner) around `axis`.
fn split(s: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        s[..axis].iter().product(),
        s[axis],
        s[axis + 1..].iter().product(),
    )
}

/// The index of the first maximum along `axis` of `x` (shape `s`), for every position of the
/// other axes (`out` row-major over them; comparisons `>`, so false on NaN).
pub fn argmax(x: &[f32], s: &[usize], axis: usize, out: &mut [i32]) {
    let (outer, len, inner) = split(s, axis);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| x[(o * len + j) * inner + i];
            let mut best = 0;
            for j in 1..len {
                if at(j) > at(best) {
                    best = j;
                }
            }
            out[o * inner + i] = best as i32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce_matches_the_definition() {
        let s = [2, 3, 4];
        let x: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let at = |i: usize, j: usize, k: usize| x[(i * 3 + j) * 4 + k] as f64;
        for max in [false, true] {
            let fold = |v: &mut dyn Iterator<Item = f64>| -> f32 {
                if max {
                    v.fold(f64::NEG_INFINITY, f64::max) as f32
                } else {
                    v.sum::<f64>() as f32
                }
            };
            let mut out = vec![f32::NAN; 8];
            reduce(&x, &mut out, &s, &[1], max);
            for i in 0..2 {
                for k in 0..4 {
                    let want = fold(&mut (0..3).map(|j| at(i, j, k)));
                    assert_eq!(out[i * 4 + k], want, "axes [1], max {max}");
                }
            }
            let mut out = vec![f32::NAN; 3];
            reduce(&x, &mut out, &s, &[0, 2], max);
            for (j, &got) in out.iter().enumerate() {
                let want = fold(
                    &mut (0..2)
                        .flat_map(|i| (0..4).map(move |k| (i, k)))
                        .map(|(i, k)| at(i, j, k)),
                );
                assert_eq!(got, want, "axes [0, 2], max {max}");
            }
            let mut out = vec![f32::NAN; 1];
            reduce(&x, &mut out, &s, &[0, 1, 2], max);
            assert_eq!(
                out[0],
                fold(&mut x.iter().map(|&v| v as f64)),
                "all axes, max {max}"
            );
        }
    }
}
