//! 1×1 unpadded convolutions one sample at a time ([`Geometry::per_sample`]): one GEMM per
//! sample on its own planes (or, strided, on every stride-th position of them, gathered),
//! writing the output and input-gradient planes directly.

use super::{Chunk, Geometry, gemm_call, im2col, scatter_rows};
use crate::simd::Isa;
use crate::store::{Skip, Store, relu};

/// The chunk of sample `b`'s rows.
fn sample_chunk(g: &Geometry, b: usize) -> Chunk {
    Chunk {
        r0: b * g.oh,
        r1: (b + 1) * g.oh,
    }
}

/// Sample `b`'s columns `[c, positions]` (row stride `positions`): its input planes at
/// stride 1, else gathered into `col`.
fn sample_columns<'a>(
    isa: Option<Isa>,
    g: &Geometry,
    x: &'a [f32],
    b: usize,
    col: &'a mut [f32],
) -> &'a [f32] {
    let (p, sample) = (g.positions(), g.c * g.h * g.w);
    if g.stride == [1, 1] {
        return &x[b * sample..][..sample];
    }
    im2col(isa, g, x, sample_chunk(g, b), col, p);
    &col[..g.c * p]
}

/// [`forward`] with one GEMM per sample ([`Geometry::per_sample`]): into the sample's output
/// planes, then `store` applied there, or (adding to the planes' residual) into `rows`, which
/// then hold a sample's output rows.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_per_sample(
    isa: Option<Isa>,
    g: &Geometry,
    samples: usize,
    x: &[f32],
    w: &[f32],
    store: Store<'_>,
    y: &mut [f32],
    (col, rows): (&mut [f32], &mut [f32]),
) {
    let (p, k) = (g.positions(), g.taps());
    let in_place = matches!(store, Store::BiasResidualRelu(_, Skip::InPlace));
    for b in 0..samples {
        let cols = sample_columns(isa, g, x, b, col);
        let planes = &mut y[b * g.o * p..][..g.o * p];
        let dst = if in_place {
            &mut rows[..g.o * p]
        } else {
            &mut *planes
        };
        // Y_b [O, P] = W [O, K] · cols [K, P]
        // SAFETY: `dst` holds `o · p` floats, `w` `o · k` (asserted by the caller), `cols`
        // `k · p`, with these strides; `dst` is part of `y` or of `rows`, both borrowed
        // mutably, and so overlaps neither `w`, `x` (`cols` at stride 1) nor `col`.
        unsafe {
            gemm_call(
                (dst.as_mut_ptr(), 1, p as isize),
                (w.as_ptr(), 1, k as isize),
                (cols.as_ptr(), 1, p as isize),
                (g.o, p, k),
                false,
            )
        };
        if in_place {
            scatter_rows(g, rows, p, sample_chunk(g, b), store, y);
        } else if !matches!(store, Store::Plain) {
            store_in_place(g, b, store, y);
        }
    }
}

/// Applies `store` to sample `b`'s output planes, which hold the product.
fn store_in_place(g: &Geometry, b: usize, store: Store<'_>, y: &mut [f32]) {
    let p = g.positions();
    for oc in 0..g.o {
        let at = (b * g.o + oc) * p;
        let plane = &mut y[at..][..p];
        // The sums in the order of the loops they replace: `(y + b) + skip`.
        match store {
            Store::Plain | Store::BiasResidualRelu(_, Skip::InPlace) => {}
            Store::BiasRelu(bias) => plane.iter_mut().for_each(|v| *v = relu(*v + bias[oc])),
            Store::BiasResidualRelu(bias, Skip::Operand(skip)) => {
                for (v, &r) in plane.iter_mut().zip(&skip[at..][..p]) {
                    *v = relu((*v + bias[oc]) + r);
                }
            }
        }
    }
}

/// [`input_gradient`] with one GEMM per sample ([`Geometry::per_sample`]): into the
/// sample's input-gradient planes at stride 1, else into `col` and spread into them.
pub(super) fn input_gradient_per_sample(
    g: &Geometry,
    samples: usize,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    col: &mut [f32],
) {
    let (p, k, sample) = (g.positions(), g.taps(), g.c * g.h * g.w);
    for b in 0..samples {
        let dst = if g.stride == [1, 1] {
            &mut dx[b * sample..][..sample]
        } else {
            &mut col[..k * p]
        };
        // dcols_b [K, P] = Wᵀ [K, O] · dY_b [O, P]
        // SAFETY: `dst` holds `k · p` floats, `w` `o · k` (asserted by the caller; read
        // transposed), the sample's `dy` `o · p`; `dst` (the sample's gradient planes or
        // scratch) overlaps neither.
        unsafe {
            gemm_call(
                (dst.as_mut_ptr(), 1, p as isize),
                (w.as_ptr(), k as isize, 1),
                (dy[b * g.o * p..][..g.o * p].as_ptr(), 1, p as isize),
                (k, p, g.o),
                false,
            )
        };
        if g.stride != [1, 1] {
            spread(g, col, &mut dx[b * sample..][..sample]);
        }
    }
}

/// A strided 1×1 convolution's input gradient of one sample: `col`'s `[c, oh·ow]` values at
/// every stride-th row and column of its planes `dx`, zeros elsewhere, each row written once.
fn spread(g: &Geometry, col: &[f32], dx: &mut [f32]) {
    let [sh, sw] = g.stride;
    for (plane, values) in dx
        .chunks_exact_mut(g.h * g.w)
        .zip(col.chunks_exact(g.positions()))
    {
        for (r, row) in plane.chunks_exact_mut(g.w).enumerate() {
            row.fill(0.0);
            if r % sh == 0 && r / sh < g.oh {
                let src = &values[r / sh * g.ow..][..g.ow];
                row.iter_mut()
                    .step_by(sw)
                    .zip(src)
                    .for_each(|(d, &v)| *d = v);
            }
        }
    }
}

/// [`filter_gradient`]'s transposed sum `dwt` with one GEMM per sample
/// ([`Geometry::per_sample`]): the sample's columns times its output gradient's planes.
pub(super) fn filter_gradient_per_sample(
    isa: Option<Isa>,
    g: &Geometry,
    samples: usize,
    x: &[f32],
    dy: &[f32],
    dwt: &mut [f32],
    col: &mut [f32],
) {
    let p = g.positions();
    for b in 0..samples {
        let cols = sample_columns(isa, g, x, b, col);
        // dWᵀ [K, O] += cols [K, P] · dY_bᵀ [P, O]
        // SAFETY: `dwt` holds `k · o` floats, `cols` `k · p`, the sample's `dy` `o · p` (read
        // transposed); `dwt` is scratch, overlapping neither.
        unsafe {
            gemm_call(
                (dwt.as_mut_ptr(), 1, g.o as isize),
                (cols.as_ptr(), 1, p as isize),
                (dy[b * g.o * p..][..g.o * p].as_ptr(), p as isize, 1),
                (g.taps(), g.o, p),
                true,
            )
        };
    }
}

/// Prints the GFLOP/s of 1×1 convolutions' three products on the shapes of resnet-mnist's
/// and bench/zoo's 1×1 layers (one thread, 32 samples, the best of 20 runs): `cargo bench -p
/// nnc-kernels --bench kernels -- pointwise`.
pub fn time_pointwise(isa: Isa) {
    let samples = 32;
    for (c, hw, o, stride) in [
        (32, 14, 64, 1),
        (64, 14, 32, 1),
        (64, 7, 64, 1),
        (16, 28, 32, 2),
        (32, 14, 64, 2),
    ] {
        let out = (hw - 1) / stride + 1;
        let g = Geometry {
            c,
            h: hw,
            w: hw,
            o,
            kh: 1,
            kw: 1,
            stride: [stride, stride],
            pad: [0, 0],
            oh: out,
            ow: out,
        };
        let x = crate::testing::values(samples * c * hw * hw, 1);
        let w = crate::testing::values(o * c, 2);
        let dy = crate::testing::values(samples * o * g.positions(), 3);
        let (mut y, mut dx) = (vec![0.0; dy.len()], vec![0.0; x.len()]);
        let mut dw = vec![0.0; w.len()];
        let mut scratch = vec![0.0; g.scratch_floats(samples)];
        let macs = (samples * g.macs_per_sample()) as f64;
        let mut gflops = |run: &mut dyn FnMut(&mut [f32])| {
            let mut best = f64::MAX;
            for _ in 0..20 {
                let t = std::time::Instant::now();
                run(&mut scratch);
                best = best.min(t.elapsed().as_secs_f64());
            }
            2.0 * macs / best / 1e9
        };
        let isa = Some(isa);
        let f = gflops(&mut |s| super::forward(isa, &g, samples, &x, &w, Store::Plain, &mut y, s));
        let i = gflops(&mut |s| super::input_gradient(&g, samples, &dy, &w, &mut dx, s));
        let d = gflops(&mut |s| super::filter_gradient(isa, &g, samples, &x, &dy, &mut dw, s));
        println!(
            "1x1 c{c} {hw}x{hw} o{o} stride {stride} ({}): forward {f:.1}, input gradient \
             {i:.1}, filter gradient {d:.1} GFLOP/s",
            if g.per_sample(samples) {
                "one sample at a time"
            } else {
                "chunks"
            }
        );
    }
}
