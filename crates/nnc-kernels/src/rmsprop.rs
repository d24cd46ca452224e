//! The RMSProp update on the vector unit: `s' = s·ρ + (g·g)·(1 − ρ)`,
//! `w' = w − (g·lr) / √(s' + ε)`, one IEEE operation each in that order (the bits of the
//! scalar loop), and the sum of the squared gradients.
//!
//! The mean square `s` is read and stored with subnormal values (below 1.2·10⁻³⁸) as zero:
//! arithmetic on subnormals takes a slow path on x86, and weights whose gradient is almost
//! always zero would take it for some 150 steps while `s` decays (their weights do not change
//! meanwhile; the compiler's `updates` module gives the measurements).

use crate::simd::{self, F32x16, Isa, Kernel, low_bits};

/// ρ, 1 − ρ, ε and the learning rate of an update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Constants {
    pub rho: f32,
    pub one_minus_rho: f32,
    pub eps: f32,
    pub lr: f32,
}

/// Updates `n` elements: reads the gradient, mean square and weights at `read`
/// (`[g, s, w]`), writes the new mean square and weights at `write` (`[s', w']`), and
/// returns the sum of the squared gradients.
///
/// # Safety
/// The CPU supports `isa`; each pointer addresses `n` floats (the reads readable, the writes
/// writable); an output may be an input of the same index (an update in place: each element
/// is read before it is written), but otherwise no one else accesses these floats during the
/// call.
pub unsafe fn update(
    isa: Isa,
    c: Constants,
    read: [*const f32; 3],
    write: [*mut f32; 2],
    n: usize,
) -> f32 {
    // SAFETY: forwarded (the caller's contract).
    unsafe { simd::run(isa, Rows { c, read, write, n }) }
}

/// `n` elements of an update: gradient, mean square and weights in, both updated out.
struct Rows {
    c: Constants,
    read: [*const f32; 3],
    write: [*mut f32; 2],
    n: usize,
}

impl Kernel for Rows {
    /// The sum of the squared gradients.
    type Output = f32;

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) -> f32 {
        let ([g, s, w], [s_new, w_new], n, u) = (self.read, self.write, self.n, self.c);
        // SAFETY: lanes below `n - i` are inside the operands (`update`'s contract);
        // masked lanes are not accessed.
        unsafe {
            let (rho, omr) = (V::splat(u.rho), V::splat(u.one_minus_rho));
            let (eps, lr) = (V::splat(u.eps), V::splat(u.lr));
            let mut sum = V::zero();
            for i in (0..n).step_by(16) {
                let m = low_bits(n - i);
                let gv = V::load_masked(m, g.add(i));
                let sv = V::load_masked(m, s.add(i)).flush_subnormals();
                let wv = V::load_masked(m, w.add(i));
                // The loop's operations, one IEEE operation each, in its order.
                let g2 = gv.mul(gv);
                sum = sum.add(g2);
                let sn = sv.mul(rho).add(g2.mul(omr)).flush_subnormals();
                let r = sn.add(eps).sqrt();
                let wn = wv.sub(gv.mul(lr).div(r));
                sn.store_masked(m, s_new.add(i));
                wn.store_masked(m, w_new.add(i));
            }
            sum.sum()
        }
    }
}
