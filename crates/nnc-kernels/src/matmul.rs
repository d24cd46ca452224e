//! Plain products on gemm's micro-kernels (AVX-512 or AVX2, chosen at run time by CPU
//! features, with fallbacks elsewhere): one thread, any strides.

use gemm::Parallelism;

/// C [m, n] (+)= A · B with arbitrary strides for A and B, row-major C.
///
/// # Safety
/// The pointers must address matrices of the given shapes and strides; C must not overlap A
/// or B.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul(
    c: *mut f32,
    c_rs: isize,
    a: *const f32,
    a_cs: isize,
    a_rs: isize,
    b: *const f32,
    b_cs: isize,
    b_rs: isize,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) {
    // Callers split big contractions over their threads themselves.
    let par = Parallelism::None;
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        gemm::gemm(
            m, n, k, c, 1, c_rs, accumulate, a, a_cs, a_rs, b, b_cs, b_rs, 1.0f32, 1.0f32, false,
            false, false, par,
        );
    }
}
