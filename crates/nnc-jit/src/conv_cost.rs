//! A cost model for convolutions: the estimated time of one part's product on each kernel
//! family, so that the compiler can pick per convolution (`LibKernel::conv_kernel`) without
//! timing anything (a timed choice could differ between runs, and with it the bits of the
//! result).
//!
//! Each estimate is the multiply-adds at a rate times the fraction of the vector lanes or
//! GEMM tiles that hold real work, plus the floats a kernel copies (im2col columns, gathered
//! rows). The constants were fitted to `nnc bench` profiles of the zoo (bench/zoo) and of
//! LeNet-5 on an AVX-512 Xeon; what matters is the ratios between the families, which hold
//! on AVX2 too (both run on 16-lane tiles there as well).

use nnc_kernels::gemm_conv::Geometry;
use nnc_kernels::phases::Phases;
use nnc_kernels::winograd::Winograd;

/// What the lanes of a direct convolution kernel's vectors hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lanes {
    /// Sixteen output positions of a plane ([`nnc_kernels::direct`]).
    Positions,
    /// Sixteen output channels of a position ([`nnc_kernels::channels`]).
    Channels,
    /// One position of sixteen samples ([`nnc_kernels::samples`]).
    Samples,
}

impl Lanes {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Lanes::Positions => "positions",
            Lanes::Channels => "channels",
            Lanes::Samples => "samples",
        }
    }
}

/// Which product of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    Forward,
    Input,
    Filter,
}

/// Multiply-adds per second of gemm's micro-kernels on large, well-shaped products (one
/// core).
const GEMM_MACS: f64 = 75e9;
/// Seconds per float an im2col copy, gather or scatter moves (short rows, strided at the
/// edges).
const COPY_SECONDS: f64 = 0.25e-9;
/// Multiply-adds per second of the direct kernels with every lane real (one core).
const DIRECT_MACS: f64 = 85e9;

/// The fraction of gemm's peak a product reaches with extent `d` on a side where `half`
/// reaches half of it (the cost of packing and of partial tiles).
fn side(d: usize, half: f64) -> f64 {
    d as f64 / (d as f64 + half)
}

/// The estimated seconds of `samples` samples' product on [`nnc_kernels::gemm_conv`].
pub fn gemm_seconds(g: &Geometry, product: Product, samples: usize) -> f64 {
    let macs = (samples * g.macs_per_sample()) as f64;
    // A 1×1 convolution's GEMMs run per sample, as long as a plane.
    let per_sample = g.per_sample(samples);
    let np = if per_sample {
        g.positions()
    } else {
        g.chunk_rows(samples) * g.ow
    };
    let (k, o) = (g.taps(), g.o);
    // The GEMM's (rows, columns, depth), as `gemm_conv` calls it.
    let (m, n, depth) = match product {
        Product::Forward => (o, np, k),
        Product::Input => (k, np, o),
        Product::Filter => (k, o, np),
    };
    let rate = GEMM_MACS * side(m, 8.0) * side(n, 8.0) * side(depth, 12.0);
    // Columns written and read, output rows gathered or scattered; the input gradient's
    // col2im reads, adds and writes.
    // Per sample: no rows; at stride 1 no columns either.
    let columns = !per_sample || g.stride != [1, 1];
    let floats = match (product, per_sample) {
        (_, true) if !columns => 0,
        (Product::Forward | Product::Filter, true) => 2 * k,
        (Product::Input, true) => 3 * k,
        (Product::Forward | Product::Filter, false) => 2 * k + o,
        (Product::Input, false) => 3 * k + o,
    };
    let copies = (samples * floats * g.positions()) as f64;
    macs / rate + copies * COPY_SECONDS
}

/// The estimated seconds of `samples` samples' product on the direct kernel with `lanes`
/// (stride 1, or any stride for the input gradient with samples in the lanes). A padded
/// convolution runs on a padded copy of its input planes (the input gradient: of its result,
/// then cropped, except with samples in the lanes): that copy's floats are added. Samples
/// in the lanes move every sample's output gradient into the lanes and its input gradient
/// out of them: a 1×1 stride-2 projection's input gradient (few products per float moved)
/// measured no faster there than on gemm (resnet-mnist: 423 against 417 µs a step).
pub fn direct_seconds(g: &Geometry, product: Product, lanes: Lanes, samples: usize) -> f64 {
    let moved = match lanes {
        Lanes::Samples => samples * (g.o * g.positions() + g.c * g.h * g.w),
        _ => 0,
    };
    products_seconds(g, product, lanes, samples) + moved as f64 * COPY_SECONDS
}

/// [`direct_seconds`] without the samples kernel's moves.
fn products_seconds(g: &Geometry, product: Product, lanes: Lanes, samples: usize) -> f64 {
    if g.pad != [0, 0] {
        let padded = Geometry {
            h: g.h + 2 * g.pad[0],
            w: g.w + 2 * g.pad[1],
            pad: [0, 0],
            ..*g
        };
        // (Samples in the lanes crop the input gradient as they store it: no copy.)
        let copies = match (product, lanes) {
            (Product::Input, Lanes::Samples) => 0.0,
            _ => (samples * g.c * padded.h * padded.w) as f64,
        };
        return products_seconds(&padded, product, lanes, samples) + copies * COPY_SECONDS;
    }
    let macs = (samples * g.macs_per_sample()) as f64;
    // The fraction of lanes that hold real products.
    let whole = |real: usize| real as f64 / (real.div_ceil(16) * 16) as f64;
    let fill = match lanes {
        // Rows of the input's full width, masked past the output's.
        Lanes::Positions => {
            let wide = g.oh * g.w;
            whole(wide) * g.ow as f64 / g.w as f64
        }
        Lanes::Channels => whole(g.o),
        Lanes::Samples => whole(samples),
    };
    // The input gradient's direct kernel is the forward product of padded planes: it also
    // multiplies the padding's zeros it does not skip.
    let padded = match (product, lanes) {
        (Product::Input, Lanes::Positions) => {
            let (ph, pw) = (g.oh + 2 * (g.kh - 1), g.ow + 2 * (g.kw - 1));
            (ph * pw) as f64 / (g.h * g.w) as f64
        }
        _ => 1.0,
    };
    // With the channels in the lanes, every output position's vector of channels is
    // scattered to the output's planes (forward) or gathered from the gradient's (filter).
    let transposed = match lanes {
        Lanes::Channels => (samples * g.o.next_multiple_of(16) * g.positions()) as f64,
        _ => 0.0,
    };
    // The channels forward product's register tile holds up to twelve positions of a row and
    // two vectors of channels: with fewer than eight accumulators, its sums wait on each
    // other (tanh-lenet's 1×1 C5: 29 GFLOP/s).
    let tile = match (product, lanes) {
        (Product::Forward, Lanes::Channels) => {
            let accumulators = g.ow.min(12) * g.o.div_ceil(16).min(2);
            (accumulators as f64 / 8.0).min(1.0)
        }
        _ => 1.0,
    };
    macs * padded / (DIRECT_MACS * fill * tile) + transposed * TRANSPOSE_SECONDS
}

/// Seconds per float the channels kernels move between a vector per position and the
/// planes: fitted on a Zen 4 (`nnc bench bench/zoo/cnn3-same.nn`), where its one-channel
/// first layer's products are dominated by it (forward 0.39 ms, filter gradient 0.55 ms per
/// part of 32 samples, against 0.05 and 0.14 ms of multiply-adds).
const TRANSPOSE_SECONDS: f64 = 0.8e-9;

/// Multiply-adds per second of [`nnc_kernels::winograd`]'s products, in this model's units
/// (see [`winograd_seconds`]).
const WINOGRAD_MACS: f64 = 72e9;
/// Seconds per float its transforms and transpositions move, in this model's units.
const WINOGRAD_FLOAT_SECONDS: f64 = 0.04e-9;

/// The estimated seconds of `samples` samples' product on [`nnc_kernels::winograd`]. Its
/// constants were fitted on a Zen 4 to its forward products of 16 to 64 channels on 10×10
/// to 28×28 planes, one thread (`cargo bench -p nnc-kernels --bench kernels -- winograd`:
/// 45e9 multiply-adds per second and 0.065 ns per float, within 5 %), then put in the units
/// of the direct kernels' estimates above, which are 1.35–2.1× below those kernels' times in
/// the training step (`nnc bench` of bench/zoo's cnn64 and residual, where Winograd's
/// estimates came within 4–15 % of its times): divided by 1.6, their middle.
pub fn winograd_seconds(g: &Winograd, samples: usize) -> f64 {
    let per_sample =
        g.product_macs() as f64 / WINOGRAD_MACS + g.moved_floats() as f64 * WINOGRAD_FLOAT_SECONDS;
    samples as f64 * per_sample
}

/// The estimated seconds of `samples` samples' strided input gradient on
/// [`nnc_kernels::phases`]: the channels forward product's rate on every phase's
/// multiply-adds (input channels in the lanes), each phase's result transposed out of the
/// lanes and spread into the input gradient, and the output gradient padded once per phase.
pub fn phases_seconds(g: &Phases, samples: usize) -> f64 {
    let macs = (samples * g.macs()) as f64;
    let fill = g.c() as f64 / g.c().next_multiple_of(16) as f64;
    let transposed = (samples * g.c().next_multiple_of(16) * g.positions()) as f64;
    let copies = (samples * (g.c() * g.positions() + g.stride_area() * g.gradient_floats())) as f64;
    macs / (DIRECT_MACS * fill) + transposed * TRANSPOSE_SECONDS + copies * COPY_SECONDS
}
