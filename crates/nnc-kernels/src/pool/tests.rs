//! Every pooling path against the definition ([`scalar`]), bit for bit: a grid of windows,
//! strides and plane sizes (1×1 planes, windows as big as the plane, non-square, overlapping,
//! strides longer than windows), split into 1 to 4 parts, on every vector unit.

use super::*;

/// Window, stride, and windows down and across (the plane is what they tile, and for some
/// also planes with rows and columns that no window reads).
fn geometries() -> Vec<Window> {
    let windows = [[1, 1], [2, 2], [3, 3], [2, 3], [3, 1], [5, 5], [1, 4]];
    let strides = [[1, 1], [2, 2], [3, 3], [2, 1], [1, 3]];
    let outputs = [[1, 1], [3, 4], [6, 6], [13, 2], [2, 14]];
    let mut all = Vec::new();
    for k in windows {
        for s in strides {
            for o in outputs {
                let plane = [(o[0] - 1) * s[0] + k[0], (o[1] - 1) * s[1] + k[1]];
                all.push(Window::new(plane, k, s));
                // Rounded down: rows and columns past the last window that none reads.
                let win = Window::new([plane[0] + 1, plane[1] + 2], k, s);
                if (win.oh, win.ow) == (o[0], o[1]) && o[0] * o[1] == 12 {
                    all.push(win);
                }
            }
        }
    }
    all
}

/// Inputs full of ties (±0, repeated values), NaN and infinities; `harsh`: nothing else, so
/// that whole windows are NaN, −∞ or zeros.
fn inputs(n: usize, seed: usize, harsh: bool) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let k = (i * 7919 + seed * 104_729) % 13;
            match (harsh, k) {
                (true, k) => [0.0, -0.0, f32::NAN, f32::NEG_INFINITY][k % 4],
                (false, 0..=1) => 0.0,
                (false, 2) => -0.0,
                (false, 3) => f32::NAN,
                (false, 4) => 1.0,
                (false, 5) => f32::NEG_INFINITY,
                (false, 6) => f32::INFINITY,
                (false, k) => ((i * k) as f32 * 0.37).sin(),
            }
        })
        .collect()
}

fn gradients(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| match i % 9 {
            0 => -0.0,
            1 => 0.25,
            _ => i as f32 * 0.125 - 3.0,
        })
        .collect()
}

fn same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (k, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(a.to_bits() == b.to_bits(), "{what}[{k}]: {a:?} vs {b:?}");
    }
}

/// Runs `f(lo, hi)` on each part's planes, as the compiler's `LibKernel::run_part` splits them.
fn in_parts(planes: usize, parts: usize, mut f: impl FnMut(usize, usize)) {
    for part in 0..parts {
        f(planes * part / parts, planes * (part + 1) / parts);
    }
}

#[test]
fn every_path_matches_the_definition() {
    let units = crate::testing::vector_units("pool::every_path_matches_the_definition");
    let mut checked = 0;
    for win in geometries() {
        let (p, q) = (win.plane(), win.pooled());
        for (planes, harsh) in [(1, false), (5, true), (16, false), (35, false), (17, true)] {
            let x = inputs(planes * p, p + q, harsh);
            let dy = gradients(planes * q);
            let mut want_y = [vec![0.0; planes * q], vec![0.0; planes * q]];
            for (max, want) in [true, false].into_iter().zip(&mut want_y) {
                scalar::forward(max, &x, want, planes, &win);
            }
            let mut want_dx = [vec![0.0; planes * p], vec![0.0; planes * p]];
            scalar::max_gradient(&x, &dy, &mut want_dx[0], planes, &win);
            scalar::sum_gradient(&dy, &mut want_dx[1], planes, &win);
            let mut scratch = vec![f32::NAN; scratch_floats(&win, true)];
            for (isa, parts) in units.iter().flat_map(|&i| (1..=4).map(move |n| (i, n))) {
                let what = |op: &str| format!("{isa:?} {op} {planes}×{win:?} in {parts} parts");
                // Through the dispatch, and on `planes` whatever the dispatch would choose.
                for direct in [false, true] {
                    for (max, want) in [true, false].into_iter().zip(&want_y) {
                        let mut y = vec![f32::NAN; planes * q];
                        in_parts(planes, parts, |lo, hi| {
                            let (x, y) = (&x[lo * p..hi * p], &mut y[lo * q..hi * q]);
                            if direct {
                                planes::forward(isa, max, x, y, hi - lo, &win, &mut scratch);
                            } else {
                                forward(Some(isa), max, x, y, hi - lo, &win, &mut scratch);
                            }
                        });
                        same_bits(&what(if max { "maxpool" } else { "sumpool" }), &y, want);
                    }
                    let mut dx = vec![f32::NAN; planes * p];
                    in_parts(planes, parts, |lo, hi| {
                        let (x, dy) = (&x[lo * p..hi * p], &dy[lo * q..hi * q]);
                        let dx = &mut dx[lo * p..hi * p];
                        if direct {
                            planes::max_gradient(isa, x, dy, dx, hi - lo, &win, &mut scratch);
                        } else {
                            max_gradient(Some(isa), x, dy, dx, hi - lo, &win, &mut scratch);
                        }
                    });
                    same_bits(&what("maxpool_grad"), &dx, &want_dx[0]);
                    let mut dx = vec![f32::NAN; planes * p];
                    in_parts(planes, parts, |lo, hi| {
                        let (dy, dx) = (&dy[lo * q..hi * q], &mut dx[lo * p..hi * p]);
                        if direct {
                            planes::sum_gradient(isa, dy, dx, hi - lo, &win, &mut scratch);
                        } else {
                            sum_gradient(Some(isa), dy, dx, hi - lo, &win, &mut scratch);
                        }
                    });
                    same_bits(&what("sumpool_grad"), &dx, &want_dx[1]);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 0);
}

#[test]
fn the_definition_is_the_interpreters() {
    // The scalar loops against the interpreter's own, on an overlapping non-square window
    // over ties, NaN and infinities (the vector paths are tested against the scalar loops).
    use nnc_ir::interp::{Tensor, run_f32};
    let win = Window::new([9, 11], [3, 2], [2, 3]);
    let (planes, p, q) = (3, win.plane(), win.pooled());
    let x = inputs(planes * p, 1, false);
    let dy = gradients(planes * q);
    let mut want = [vec![0.0; planes * q], vec![0.0; planes * q]];
    scalar::forward(true, &x, &mut want[0], planes, &win);
    scalar::forward(false, &x, &mut want[1], planes, &win);
    let mut want_dx = [vec![0.0; planes * p], vec![0.0; planes * p]];
    scalar::max_gradient(&x, &dy, &mut want_dx[0], planes, &win);
    scalar::sum_gradient(&dy, &mut want_dx[1], planes, &win);
    let (xs, ys) = ("3,9,11", format!("3,{},{}", win.oh, win.ow));
    let window = "size=[3,2], stride=[2,3]";
    let f = nnc_ir::parse::parse_function(&format!(
        "func @f(%x: f32[{xs}], %dy: f32[{ys}]) -> (f32[{ys}], f32[{ys}], f32[{xs}], f32[{xs}]) {{
           %m: f32[{ys}] = maxpool %x, {window}
           %s: f32[{ys}] = sumpool %x, {window}
           %dm: f32[{xs}] = maxpool_grad %x, %dy, {window}
           %ds: f32[{xs}] = sumpool_grad %dy, {window}, input=[9,11]
           return %m, %s, %dm, %ds
         }}"
    ))
    .expect("the IR parses");
    let tensor = |shape: &[usize], v: &[f32]| {
        Tensor::F(ndarray::ArrayD::from_shape_vec(shape, v.to_vec()).expect("the shape fits"))
    };
    let got = run_f32(
        &f,
        vec![tensor(&[3, 9, 11], &x), tensor(&[3, win.oh, win.ow], &dy)],
    )
    .expect("the interpreter runs");
    let wants = [&want[0], &want[1], &want_dx[0], &want_dx[1]];
    for ((name, got), want) in ["maxpool", "sumpool", "maxpool_grad", "sumpool_grad"]
        .into_iter()
        .zip(&got)
        .zip(wants)
    {
        let got: Vec<f32> = got.as_f().expect("floats").iter().copied().collect();
        same_bits(name, want, &got);
    }
}

/// The masked gradient (the backward pass of `maxpool(relu(z + b))`) against the gradient
/// and the mask as two passes: the bits of `dz`, and each channel's sum, on every window a
/// vector path takes, in parts that start mid-channel.
#[test]
fn masked_gradient_matches_the_two_passes() {
    let units = crate::testing::vector_units("pool::masked_gradient_matches_the_two_passes");
    let (planes, channels) = (37, 5);
    let mut ran = 0;
    for win in geometries().into_iter().filter(masked_applies) {
        let (p, q) = (win.plane(), win.pooled());
        let x = inputs(planes * p, 3, false);
        let dy = gradients(planes * q);
        let mut dx = vec![f32::NAN; planes * p];
        scalar::max_gradient(&x, &dy, &mut dx, planes, &win);
        let step = |v: f32| if v > 0.0 { 1.0 } else { 0.0 };
        let want: Vec<f32> = dx.iter().zip(&x).map(|(&d, &v)| d * step(v)).collect();
        for &isa in &units {
            for parts in [1, 3] {
                let mut dz = vec![f32::NAN; planes * p];
                let mut sums = vec![0.0f64; channels];
                let mut scratch = vec![f32::NAN; scratch_floats(&win, true)];
                in_parts(planes, parts, |lo, hi| {
                    let mut part_sums = vec![f32::NAN; channels];
                    max_gradient_masked(
                        isa,
                        &x[lo * p..hi * p],
                        &dy[lo * q..hi * q],
                        &mut dz[lo * p..hi * p],
                        &mut part_sums,
                        [lo, hi - lo, channels],
                        &win,
                        &mut scratch,
                    );
                    for (s, &v) in sums.iter_mut().zip(&part_sums) {
                        *s += f64::from(v);
                    }
                });
                same_bits(&format!("{win:?} on {isa:?} in {parts}"), &dz, &want);
                for (c, &got) in sums.iter().enumerate() {
                    let exact: f64 = (0..planes)
                        .filter(|l| l % channels == c)
                        .flat_map(|l| &want[l * p..(l + 1) * p])
                        .map(|&v| f64::from(v))
                        .sum();
                    assert!(
                        (got - exact).abs() <= 1e-4 * (1.0 + exact.abs()),
                        "{win:?} on {isa:?}: channel {c} sums {got} vs {exact}"
                    );
                }
                ran += 1;
            }
        }
    }
    assert!(ran > 0, "no geometry ran");
}
