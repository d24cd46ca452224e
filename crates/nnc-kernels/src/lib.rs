//! nnc's kernels: the arithmetic of the ops that are not fused loops, as pure functions over
//! slices and shape parameters. Nothing here knows a step function, a schedule, an arena or
//! threads: the compiler (`nnc-jit`) chooses a routine for each op, hands it its operands'
//! slices (a part of them, when it splits the work over threads) and its scratch, and each
//! routine computes what the reference interpreter computes, on whichever vector unit runs
//! it: most exactly (the same tie-breaking, the same sums in the same order), `gemm_conv`'s
//! and `winograd`'s convolutions up to the rounding of their own order.
//!
//! - [`simd`]: sixteen f32 lanes on AVX-512 or AVX2 ([`Isa`]), over which the vector kernels
//!   are written once;
//! - convolutions: [`gemm_conv`] (im2col + GEMM, any geometry), and the direct kernels for
//!   stride-1 unpadded ones with positions ([`direct`]), output channels ([`channels`]) or
//!   samples ([`samples`]) in the lanes, and 3×3 stride-1 ones by Winograd's F(2×2, 3×3)
//!   ([`winograd`]);
//! - contractions: [`matmul`] (gemm's micro-kernels) and [`sparse`] (image data, its zeros
//!   skipped);
//! - [`store`]: what a forward convolution does to its outputs as it stores them;
//! - [`pool`]: max and sum pooling and their gradients;
//! - [`copy`]: pad, slice and concatenation; [`reduce`]: sums and maxima over axes;
//! - [`loss`]: softmax rows and the classifier's fused loss head; [`rmsprop`]: the RMSProp
//!   update; [`elementwise`]: a compiler's loop of IEEE operations (an optimizer's update)
//!   run sixteen lanes wide;
//! - [`transcendental`]: `exp`, `log`, `tanh`, sigmoid and softplus along a row, for the
//!   compiler's loops that apply them.
//!
//! [`testing`] (hidden) holds what their tests and the compiler's share.

pub mod channels;
pub mod copy;
pub mod direct;
pub mod elementwise;
pub mod gemm_conv;
pub mod loss;
pub mod matmul;
pub mod phases;
pub mod pool;
pub mod reduce;
pub mod rmsprop;
pub mod samples;
pub mod simd;
pub mod sparse;
pub mod store;
pub mod transcendental;
pub mod winograd;

/// Test helpers shared by the kernels' unit tests and the compiler's tests (not API).
#[doc(hidden)]
pub mod testing;

pub use simd::Isa;
