//! What a forward convolution does to its outputs as it stores them (a fused epilogue), for
//! every kernel family that can: [`crate::gemm_conv`] as it scatters its rows,
//! [`crate::channels`] as it transposes its vectors into the planes.

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
