//! `exp`, `log`, `tanh`, the logistic sigmoid and softplus over a row of floats, on the whole
//! vector unit: the compiler's fused loops are Cranelift code in 128-bit vectors, in which
//! these functions' forty to a hundred operations per four lanes made an activation cost more
//! than the convolution before it (leaky-elu's ELU: 1.9 ms of a 4.8 ms product on one core).
//! A loop that applies one hands its argument's row here instead (see the compiler's
//! `codegen`).
//!
//! The algorithms are the compiler's inlined ones (`nnc-jit`'s `transcendental`), operation
//! for operation: the same constants, the same order, multiplications and additions rounded
//! one at a time (Rust contracts nothing into a fused multiply-add), the same comparisons for
//! the clamps and edges. So a row computed here has the bits the inlined sequence gives, on
//! every unit, and in the body and the tail of a row alike (the compiler's tests check this
//! against the Cranelift code on a grid of inputs and every edge).
//!
//! Each function is written for one float, branch-free (its `if`s are selects), and
//! [`apply`] runs it along the row inside a function compiled with the unit's features, where
//! LLVM vectorises it sixteen lanes wide.

use crate::Isa;

/// One of the functions, as the compiler names the op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Function {
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Softplus,
}

/// The signature the compiled loops call: a row of `n` floats at `p`, replaced by the
/// function's values.
pub type RowFn = unsafe extern "C" fn(p: *mut f32, n: usize);

impl Function {
    /// Every function.
    pub const ALL: [Function; 5] = [
        Function::Exp,
        Function::Log,
        Function::Tanh,
        Function::Sigmoid,
        Function::Softplus,
    ];

    /// Its name, as the compiler's op: `tanh`.
    pub fn name(self) -> &'static str {
        match self {
            Function::Exp => "exp",
            Function::Log => "log",
            Function::Tanh => "tanh",
            Function::Sigmoid => "sigmoid",
            Function::Softplus => "softplus",
        }
    }

    /// Its value at `x`.
    pub fn at(self, x: f32) -> f32 {
        match self {
            Function::Exp => exp(x),
            Function::Log => log(x),
            Function::Tanh => tanh(x),
            Function::Sigmoid => sigmoid(x),
            Function::Softplus => softplus(x),
        }
    }

    /// The entry point compiled for `isa` that a generated loop calls on its rows.
    pub fn row_fn(self, isa: Isa) -> RowFn {
        macro_rules! pick {
            ($f:ident) => {
                match isa {
                    Isa::Avx512 => row_avx512::<$f> as RowFn,
                    Isa::Avx2 => row_avx2::<$f> as RowFn,
                }
            };
        }
        match self {
            Function::Exp => pick!(Exp),
            Function::Log => pick!(Log),
            Function::Tanh => pick!(Tanh),
            Function::Sigmoid => pick!(Sigmoid),
            Function::Softplus => pick!(Softplus),
        }
    }
}

/// Replaces every float of `xs` by `f` of it, on `isa`.
///
/// # Panics
/// If the CPU lacks `isa`.
pub fn apply(f: Function, isa: Isa, xs: &mut [f32]) {
    assert!(isa.supported(), "this CPU has no {}", isa.name());
    // SAFETY: the unit is present (asserted); the row is `xs`, borrowed mutably for the call.
    unsafe { f.row_fn(isa)(xs.as_mut_ptr(), xs.len()) }
}

/// A function of one float, for the row entry points.
trait Scalar {
    fn at(x: f32) -> f32;
}

macro_rules! scalar {
    ($name:ident, $f:ident) => {
        struct $name;
        impl Scalar for $name {
            #[inline(always)]
            fn at(x: f32) -> f32 {
                $f(x)
            }
        }
    };
}
scalar!(Exp, exp);
scalar!(Log, log);
scalar!(Tanh, tanh);
scalar!(Sigmoid, sigmoid);
scalar!(Softplus, softplus);

/// The row entry point on AVX-512.
///
/// # Safety
/// The CPU has AVX-512F; `p` is valid for reads and writes of `n` floats, which nothing else
/// accesses during the call.
#[target_feature(enable = "avx512f")]
unsafe extern "C" fn row_avx512<F: Scalar>(p: *mut f32, n: usize) {
    // SAFETY: the caller's contract: `n` floats at `p`, ours alone for the call.
    let xs = unsafe { std::slice::from_raw_parts_mut(p, n) };
    for x in xs {
        *x = F::at(*x);
    }
}

/// The row entry point on AVX2 (with FMA, which nothing here uses).
///
/// # Safety
/// As [`row_avx512`], with AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe extern "C" fn row_avx2<F: Scalar>(p: *mut f32, n: usize) {
    // SAFETY: the caller's contract: `n` floats at `p`, ours alone for the call.
    let xs = unsafe { std::slice::from_raw_parts_mut(p, n) };
    for x in xs {
        *x = F::at(*x);
    }
}

/// `Σ coefficients[k]·x^(n−1−k)` by Horner's rule.
#[inline(always)]
fn polynomial(x: f32, coefficients: &[f32]) -> f32 {
    let mut acc = coefficients[0];
    for &c in &coefficients[1..] {
        acc = acc * x + c;
    }
    acc
}

/// `2^n` for `n` in `−126..=127`, built in the exponent bits.
#[inline(always)]
fn power_of_two(n: i32) -> f32 {
    f32::from_bits((n.wrapping_add(127) << 23) as u32)
}

/// `eˣ`; +∞ above 88.72, +0 below −103.97, gradually underflowing between.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Clamped so that `n` stays within `−150..=129`; NaN fails both and stays NaN.
    let x = if x > 89.0 { 89.0 } else { x };
    let x = if x < -104.0 { -104.0 } else { x };
    // n = round(x / ln 2) by adding 1.5·2²³; its value sits in the sum's low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    // r = x − n·ln 2, with ln 2 in two parts.
    let r = x - n * 0.693_359_4;
    let r = r - n * -2.121_944_4e-4;
    let p = polynomial(
        r,
        &[
            1.987_569_1e-4,
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ],
    );
    let y = p * (r * r) + r + 1.0;
    // y·2ⁿ as y·2^a·2^b with a = ⌊n/2⌋, so that only the last product over- or underflows.
    let a = ni >> 1;
    let b = ni.wrapping_sub(a);
    y * power_of_two(a) * power_of_two(b)
}

/// `tanh x`.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let ax = x.abs();
    // Below 0.625: x·(1 + x²·P(x²)).
    let z = x * x;
    let p = polynomial(
        z,
        &[
            -5.704_988_7e-3,
            2.063_909e-2,
            -5.373_971_6e-2,
            1.333_144_2e-1,
            -3.333_328e-1,
        ],
    );
    let small = x * (z * p + 1.0);
    // Above: 1 − 2/(e^{2|x|} + 1), then x's sign.
    let e = exp(ax * 2.0);
    let big = 1.0 - 2.0 / (e + 1.0);
    let big = if x < 0.0 { -big } else { big };
    if ax < 0.625 { small } else { big }
}

/// `ln x`: −∞ at ±0, NaN below 0 and for NaN, +∞ at +∞.
#[inline(always)]
pub fn log(x: f32) -> f32 {
    // Subnormal inputs are scaled into the normal range first.
    let tiny = x < f32::MIN_POSITIVE;
    let v = if tiny { x * 8_388_608.0 } else { x };
    let adjust = if tiny { 23.0 } else { 0.0 };
    // v = m·2^e with m in [1, 2), then m in [√½, √2).
    let bits = v.to_bits();
    let e = ((bits >> 23) as i32).wrapping_sub(127) as f32 - adjust;
    let m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    let m = if m > std::f32::consts::SQRT_2 {
        m * 0.5
    } else {
        m
    };
    let e = e + if m < 1.0 { 1.0 } else { 0.0 };
    // ln(1 + f) = f − f²/2 + f³·P(f), and e·ln 2 in two parts.
    let f = m - 1.0;
    let z = f * f;
    let p = polynomial(
        f,
        &[
            7.037_683_6e-2,
            -1.151_461e-1,
            1.167_699_9e-1,
            -1.242_014_1e-1,
            1.424_932_3e-1,
            -1.666_805_7e-1,
            2.000_071_6e-1,
            -2.499_999_4e-1,
            3.333_333e-1,
        ],
    );
    let y = (f * z) * p + e * -2.121_944_4e-4;
    let y = y - z * 0.5;
    let r = f + y + e * 0.693_359_4;
    // The edges: +∞, ±0, negative numbers, NaN.
    let r = if x == f32::INFINITY { f32::INFINITY } else { r };
    let r = if x == 0.0 { f32::NEG_INFINITY } else { r };
    let r = if x < 0.0 { f32::NAN } else { r };
    if x.is_nan() { x } else { r }
}

/// `max(x, 0) + ln(1 + e^{−|x|})`, with `ln(1 + u)` as `ln(w)·u/(w − 1)` for `w = 1 + u`, or
/// `u` where `w` is 1.
#[inline(always)]
pub fn softplus(x: f32) -> f32 {
    let u = exp(-x.abs());
    let w = u + 1.0;
    let l = log(w) * (u / (w - 1.0));
    let l = if w == 1.0 { u } else { l };
    let relu = if x > 0.0 { x } else { 0.0 };
    relu + l
}

/// `1/(1 + e^{−x})` for `x ≥ 0`, `e^x/(1 + e^x)` below (neither exponential overflows).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let d = e + 1.0;
    if x >= 0.0 { 1.0 / d } else { e / d }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every unit gives each function's scalar bits, on rows of every length up to 40 (the
    /// vector body and the tail) and on the edges.
    #[test]
    fn rows_match_the_scalar_definition_on_every_unit() {
        let units: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.supported()).collect();
        assert!(!units.is_empty(), "no vector unit on this CPU: nothing ran");
        let mut xs: Vec<f32> = (0..4000).map(|i| (i as f32 - 2000.0) * 0.061).collect();
        xs.extend([
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            1e-40,
            -1e-40,
            88.72,
            89.0,
            -104.5,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        for isa in units {
            for f in Function::ALL {
                for n in (0..40).chain([xs.len()]) {
                    let mut row = xs[..n.min(xs.len())].to_vec();
                    apply(f, isa, &mut row);
                    for (&x, &y) in xs.iter().zip(&row) {
                        let want = f.at(x);
                        assert!(
                            want.to_bits() == y.to_bits() || (want.is_nan() && y.is_nan()),
                            "{f:?} on {isa:?} at {x}: {y}, want {want}"
                        );
                    }
                }
            }
        }
    }

    /// Sanity of the definitions against f64 (the compiler's tests bound their ulps).
    #[test]
    fn definitions_are_close_to_f64() {
        for i in -800..800 {
            let x = i as f32 * 0.01;
            let close = |got: f32, want: f64| {
                assert!(
                    (f64::from(got) - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{got} against {want} at {x}"
                )
            };
            let xd = f64::from(x);
            close(exp(x), xd.exp());
            close(tanh(x), xd.tanh());
            close(sigmoid(x), 1.0 / (1.0 + (-xd).exp()));
            close(softplus(x), xd.max(0.0) + (-xd.abs()).exp().ln_1p());
            if x > 0.0 {
                close(log(x), xd.ln());
            }
        }
    }
}
