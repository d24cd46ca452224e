//! The arithmetic of a classifier's loss: softmax, one-hot rows, cross-entropy, the fused
//! softmax cross-entropy and its gradient, and the loss head that computes them in one pass.

/// Label `l` as a class index below `k`.
pub fn label(l: i32, k: usize) -> usize {
    // Labels are validated when data is loaded; clamp so a stray one cannot read out of bounds.
    (l.max(0) as usize).min(k - 1)
}

/// The softmax of one row, in place: `exp(x − max)` over its sum (added in order).
pub fn softmax_row(row: &mut [f32]) {
    let m = row
        .iter()
        .copied()
        .fold(row[0], |m, x| if x > m { x } else { m });
    let mut s = 0.0;
    for x in row.iter_mut() {
        *x = (*x - m).exp();
        s += *x;
    }
    row.iter_mut().for_each(|x| *x /= s);
}

/// `out` = the rows of `x`, `k` values each, as softmax rows.
pub fn softmax(x: &[f32], k: usize, out: &mut [f32]) {
    out.copy_from_slice(x);
    for row in out.chunks_mut(k) {
        softmax_row(row);
    }
}

/// `out` = one row of `classes` per label, 1 at the label and 0 elsewhere (all 0 for a label
/// out of range).
pub fn one_hot(labels: &[i32], classes: usize, out: &mut [f32]) {
    out.fill(0.0);
    for (i, &l) in labels.iter().enumerate() {
        if l >= 0 && (l as usize) < classes {
            out[i * classes + l as usize] = 1.0;
        }
    }
}

/// The mean of `−ln p[label]` over the rows of `p` (`k` probabilities each), summed in f64.
pub fn cross_entropy(p: &[f32], labels: &[i32], k: usize) -> f32 {
    let mut total = 0.0f64;
    for (i, &l) in labels.iter().enumerate() {
        total -= (p[i * k + label(l, k)] as f64).ln();
    }
    (total / labels.len() as f64) as f32
}

/// The mean softmax cross-entropy of the rows of logits `z` (`k` each), in the stable form
/// `max + ln Σ exp(z − max) − z[label]`.
pub fn softmax_xent(z: &[f32], labels: &[i32], k: usize) -> f32 {
    let mut total = 0.0f32;
    for (i, &l) in labels.iter().enumerate() {
        let row = &z[i * k..(i + 1) * k];
        let m = row
            .iter()
            .copied()
            .fold(row[0], |m, x| if x > m { x } else { m });
        let s: f32 = row.iter().map(|&x| (x - m).exp()).sum();
        total += m + s.ln() - row[label(l, k)];
    }
    total / labels.len() as f32
}

/// `out` = `(softmax(z) − onehot(labels)) · seed / B`, the gradient of [`softmax_xent`] times
/// `seed`, over the `B` rows of `z` (`k` each).
pub fn softmax_xent_grad(z: &[f32], labels: &[i32], k: usize, seed: f32, out: &mut [f32]) {
    let scale = seed / labels.len() as f32;
    out.copy_from_slice(z);
    for (i, row) in out.chunks_mut(k).enumerate() {
        softmax_row(row);
        row[label(labels[i], k)] -= 1.0;
        row.iter_mut().for_each(|x| *x *= scale);
    }
}

/// A classifier's loss head over `z`, rows of `k` logits, and their labels, in one pass over
/// each row (every exponential computed once): returns the mean softmax cross-entropy and the
/// number of rows whose first maximum is the label; writes each row's first maximum's index
/// to `argmax`, the gradient `(softmax(z) − onehot) · scale` to `grad` and its column sums to
/// `bias` (the bias gradient needs `grad`). The same maximum with the same tie-breaking, the
/// same sums in the same order, as the separate routines: the same bits.
///
/// # Panics
/// If `z` holds fewer than `labels.len()` rows, or an output fewer than its values.
pub fn softmax_xent_head(
    z: &[f32],
    labels: &[i32],
    k: usize,
    scale: f32,
    mut argmax: Option<&mut [i32]>,
    mut grad: Option<&mut [f32]>,
    mut bias: Option<&mut [f32]>,
) -> (f32, f32) {
    if let Some(bias) = bias.as_deref_mut() {
        bias.fill(0.0);
    }
    let (mut total, mut correct) = (0.0f32, 0.0f32);
    for (i, &l) in labels.iter().enumerate() {
        let row = &z[i * k..(i + 1) * k];
        // The maximum and its first index, with the comparisons of `argmax`.
        let (mut m, mut best) = (row[0], 0);
        for (j, &x) in row.iter().enumerate().skip(1) {
            if x > m {
                (m, best) = (x, j);
            }
        }
        // The exponentials, kept in the gradient's row when there is one (each computed
        // once), and their sum in order.
        let mut s = 0.0f32;
        match grad.as_deref_mut() {
            Some(g) => {
                for (y, &x) in g[i * k..(i + 1) * k].iter_mut().zip(row) {
                    *y = (x - m).exp();
                    s += *y;
                }
            }
            None => row.iter().for_each(|&x| s += (x - m).exp()),
        }
        let t = label(l, k);
        total += m + s.ln() - row[t];
        if let Some(a) = argmax.as_deref_mut() {
            a[i] = best as i32;
        }
        correct += f32::from(u8::from(best as i32 == l));
        if let Some(g) = grad.as_deref_mut() {
            let g = &mut g[i * k..(i + 1) * k];
            g.iter_mut().for_each(|y| *y /= s);
            g[t] -= 1.0;
            g.iter_mut().for_each(|y| *y *= scale);
            if let Some(bias) = bias.as_deref_mut() {
                bias.iter_mut().zip(g.iter()).for_each(|(c, y)| *c += y);
            }
        }
    }
    (total / labels.len() as f32, correct)
}
