//! What a forward convolution does to its outputs as it stores them (a fused epilogue), for
//! every kernel family that can: [`crate::gemm_conv`] as it scatters its rows,
//! [`crate::channels`] as it transposes its vectors into the planes; and an activation after
//! the bias ([`Then`]) that any family's planes take while they are in cache.

use crate::simd::Isa;
use crate::transcendental::{self, Function};

/// The epilogue of a forward product: the sums in the order of the loops they replace,
/// `(y + b) + skip`, then the interpreter's `relu`, so that the bits are the loops'.
#[derive(Clone, Copy, Debug)]
pub enum Store<'a> {
    /// `y = conv`.
    Plain,
    /// `y = relu(conv + b)` (`o` floats).
    BiasRelu(&'a [f32]),
    /// `y = relu((conv + b) + skip)`: a residual connection, `skip` of `y`'s shape.
    BiasResidualRelu(&'a [f32], Skip<'a>),
}

impl<'a> Store<'a> {
    /// The bias it adds, if any.
    pub fn bias(self) -> Option<&'a [f32]> {
        match self {
            Store::Plain => None,
            Store::BiasRelu(b) | Store::BiasResidualRelu(b, _) => Some(b),
        }
    }
}

/// Where a residual's other branch is.
#[derive(Clone, Copy, Debug)]
pub enum Skip<'a> {
    /// Its own tensor, of `y`'s shape.
    Operand(&'a [f32]),
    /// In `y` itself (its buffer is reused for the result): each element is read before the
    /// sum is stored over it.
    InPlace,
}

/// The interpreter's `relu`: zero unless positive (NaN and −0 too).
#[inline(always)]
pub fn relu(s: f32) -> f32 {
    if s > 0.0 { s } else { 0.0 }
}

/// An activation after a convolution's bias: `t = f((y + bias[o])·slope)` and `scale·t`, the
/// bits of the loops `add`, `mul`, `f` (along rows, [`transcendental::apply`]) and `mul`
/// (LeCun's `1.7159 · tanh(2/3 · x)`, or a plain `tanh(x)` without the slope and scale).
#[derive(Clone, Copy, Debug)]
pub struct Then<'a> {
    pub bias: &'a [f32],
    pub slope: Option<f32>,
    pub f: Function,
    pub scale: Option<f32>,
}

impl Then<'_> {
    /// The activation of `samples` samples' planes `y` that hold the product alone (`o`
    /// planes of `plane` floats each), a sample at a time while it is in cache: `y` receives
    /// `t`, and `scaled` `scale·t`; without `scaled`, `y` receives `scale·t`.
    ///
    /// # Panics
    /// If `y` (or `scaled`) holds fewer than `samples` samples, the bias fewer than `o`
    /// floats, `scaled` is given without a scale, or the CPU lacks `isa`.
    pub fn apply(
        &self,
        isa: Isa,
        y: &mut [f32],
        (samples, o, plane): (usize, usize, usize),
        mut scaled: Option<&mut [f32]>,
    ) {
        let sample = o * plane;
        assert!(
            y.len() >= samples * sample && self.bias.len() >= o,
            "planes too short"
        );
        for b in 0..samples {
            let y = &mut y[b * sample..][..sample];
            for (planes, &bias) in y.chunks_exact_mut(plane).zip(self.bias) {
                for v in planes {
                    let sum = *v + bias;
                    *v = self.slope.map_or(sum, |a| sum * a);
                }
            }
            let scaled = scaled
                .as_deref_mut()
                .map(|s| &mut s[b * sample..][..sample]);
            self.finish(isa, y, scaled);
        }
    }

    /// The rest of [`Then::apply`] for planes that hold `(y + b)·slope` already (a kernel
    /// added them as it stored): `f` along them, then the scale.
    ///
    /// # Panics
    /// As [`Then::apply`].
    pub fn finish(&self, isa: Isa, y: &mut [f32], scaled: Option<&mut [f32]>) {
        transcendental::apply(self.f, isa, y);
        match (self.scale, scaled) {
            (Some(s), Some(scaled)) => {
                assert!(scaled.len() >= y.len(), "scaled output too short");
                for (d, &t) in scaled.iter_mut().zip(&*y) {
                    *d = t * s;
                }
            }
            (Some(s), None) => y.iter_mut().for_each(|t| *t *= s),
            (None, Some(_)) => panic!("a scaled output needs a scale"),
            (None, None) => {}
        }
    }
}
