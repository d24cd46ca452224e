//! `exp`, `log`, `tanh`, the logistic sigmoid and softplus as Cranelift instruction
//! sequences, so that the loops that apply them (activations, ELU's exponential, their fused
//! epilogues) are vectorised like any other instead of calling a scalar libm routine per
//! element (LeNet-5 of 1998: its tanh epilogues took 60 % of the training step as calls).
//!
//! The algorithms are Cephes' single-precision ones: `exp` reduces `x = n·ln 2 + r` with
//! `|r| ≤ ln 2 / 2` and evaluates a degree-6 polynomial of `r`, then scales by `2ⁿ` built in
//! the exponent bits; `log` splits `x = m·2^e` with `m` in `[√½, √2)` and evaluates a
//! polynomial of `m − 1`; `tanh` is an odd polynomial below 0.625 and `1 − 2/(e^{2|x|} + 1)`
//! above; the sigmoid is `1/(1 + e^{−x})` or `e^x/(1 + e^x)` by the sign of `x`, and softplus
//! `max(x, 0) + ln(1 + e^{−|x|})` (the logarithm of `w = 1 + u` times `u/(w − 1)`, which
//! corrects for `w`'s rounding), as the interpreter computes them. `exp`, `log` and `tanh` are
//! within 1 ulp of the correctly rounded result, the sigmoid within 2 and softplus within 3
//! (tested against f64 on a grid and at the edges of every branch); each keeps NaN and gives
//! the limits at ±∞ (`log`: −∞ at 0, NaN below), and `tanh` the sign of ±0.
//!
//! Each function emits the same operations for four lanes (`F32X4`) as for one (`F32`), and
//! only multiplications and additions (no fused multiply-add, which not every CPU has), so a
//! loop's vector body and its scalar tail, the parts of a split loop and every x86-64
//! CPU give the same bits. [`nnc_kernels::transcendental`] computes the same functions, step
//! for step, for the loops that hand it whole rows (the tests compare the three bit for bit).

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{self, InstBuilder, MemFlagsData, Type, Value, types};
use cranelift_frontend::FunctionBuilder;

/// Emits instructions on four lanes or one.
pub struct Emit<'a, 'b> {
    pub b: &'a mut FunctionBuilder<'b>,
    pub vector: bool,
}

impl Emit<'_, '_> {
    fn float_type(&self) -> Type {
        if self.vector {
            types::F32X4
        } else {
            types::F32
        }
    }

    fn int_type(&self) -> Type {
        if self.vector {
            types::I32X4
        } else {
            types::I32
        }
    }

    /// The constant `v` in every lane.
    pub fn constant(&mut self, v: f32) -> Value {
        let c = self.b.ins().f32const(v);
        if self.vector {
            self.b.ins().splat(types::F32X4, c)
        } else {
            c
        }
    }

    fn int_constant(&mut self, v: i32) -> Value {
        let c = self.b.ins().iconst(types::I32, i64::from(v));
        if self.vector {
            self.b.ins().splat(types::I32X4, c)
        } else {
            c
        }
    }

    fn flags() -> MemFlagsData {
        MemFlagsData::new().with_endianness(ir::Endianness::Little)
    }

    fn bits(&mut self, x: Value) -> Value {
        let ty = self.int_type();
        self.b.ins().bitcast(ty, Self::flags(), x)
    }

    fn float(&mut self, i: Value) -> Value {
        let ty = self.float_type();
        self.b.ins().bitcast(ty, Self::flags(), i)
    }

    /// `c ? a : b` per lane, for a comparison result `c` (i8 for one lane, a lane mask for
    /// four).
    pub fn select(&mut self, c: Value, a: Value, b: Value) -> Value {
        if self.vector {
            let mask = self.float(c);
            self.b.ins().bitselect(mask, a, b)
        } else {
            self.b.ins().select(c, a, b)
        }
    }

    /// `x cc y ? a : b` per lane.
    fn choose(&mut self, cc: FloatCC, (x, y): (Value, Value), a: Value, b: Value) -> Value {
        let c = self.b.ins().fcmp(cc, x, y);
        self.select(c, a, b)
    }

    /// `Σ coefficients[k]·x^(n−1−k)` by Horner's rule (the first coefficient is the highest
    /// power's).
    fn polynomial(&mut self, x: Value, coefficients: &[f32]) -> Value {
        let mut acc = self.constant(coefficients[0]);
        for &c in &coefficients[1..] {
            let t = self.b.ins().fmul(acc, x);
            let c = self.constant(c);
            acc = self.b.ins().fadd(t, c);
        }
        acc
    }

    /// `2^n` for integer lanes `n` in `−126..=127`, built in the exponent bits.
    fn power_of_two(&mut self, n: Value) -> Value {
        let bias = self.int_constant(127);
        let biased = self.b.ins().iadd(n, bias);
        let bits = self.b.ins().ishl_imm_u(biased, 23);
        self.float(bits)
    }

    /// `eˣ`; +∞ above 88.72, +0 below −103.97, gradually underflowing between.
    pub fn exp(&mut self, x: Value) -> Value {
        // Clamped so that `n` below stays within `−150..=129`: `exp(89)` is already +∞ in f32,
        // `exp(−104)` +0. NaN fails both comparisons and stays NaN.
        let (hi, lo) = (self.constant(89.0), self.constant(-104.0));
        let x = self.choose(FloatCC::GreaterThan, (x, hi), hi, x);
        let x = self.choose(FloatCC::LessThan, (x, lo), lo, x);
        // n = round(x / ln 2): adding 1.5·2²³ rounds to an integer (to nearest, ties to
        // even), whose value then sits in the sum's low mantissa bits.
        let magic = self.constant(12_582_912.0);
        let log2e = self.constant(std::f32::consts::LOG2_E);
        let t = self.b.ins().fmul(x, log2e);
        let t = self.b.ins().fadd(t, magic);
        let n = self.b.ins().fsub(t, magic);
        let t_bits = self.bits(t);
        let magic_bits = self.int_constant(0x4B40_0000);
        let ni = self.b.ins().isub(t_bits, magic_bits);
        // r = x − n·ln 2, with ln 2 in two parts (the first exact in few bits) so that the
        // reduction loses nothing.
        let (c1, c2) = (self.constant(0.693_359_4), self.constant(-2.121_944_4e-4));
        let t = self.b.ins().fmul(n, c1);
        let r = self.b.ins().fsub(x, t);
        let t = self.b.ins().fmul(n, c2);
        let r = self.b.ins().fsub(r, t);
        let p = self.polynomial(
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
        let r2 = self.b.ins().fmul(r, r);
        let y = self.b.ins().fmul(p, r2);
        let y = self.b.ins().fadd(y, r);
        let one = self.constant(1.0);
        let y = self.b.ins().fadd(y, one);
        // y·2ⁿ as y·2^a·2^b with a = ⌊n/2⌋: each factor a normal float for every n the
        // clamp allows, so overflow and underflow happen in the last product, as they should.
        let a = self.b.ins().sshr_imm_u(ni, 1);
        let b = self.b.ins().isub(ni, a);
        let (pa, pb) = (self.power_of_two(a), self.power_of_two(b));
        let y = self.b.ins().fmul(y, pa);
        self.b.ins().fmul(y, pb)
    }

    /// `tanh x`.
    pub fn tanh(&mut self, x: Value) -> Value {
        let ax = self.b.ins().fabs(x);
        // Below 0.625: x·(1 + x²·P(x²)) (the product keeps tanh(−0) = −0).
        let z = self.b.ins().fmul(x, x);
        let p = self.polynomial(
            z,
            &[
                -5.704_988_7e-3,
                2.063_909e-2,
                -5.373_971_6e-2,
                1.333_144_2e-1,
                -3.333_328e-1,
            ],
        );
        let zp = self.b.ins().fmul(z, p);
        let one = self.constant(1.0);
        let s = self.b.ins().fadd(zp, one);
        let small = self.b.ins().fmul(x, s);
        // Above: 1 − 2/(e^{2|x|} + 1), which is 1 once the exponential is +∞; then x's sign.
        let two = self.constant(2.0);
        let e = self.b.ins().fmul(ax, two);
        let e = self.exp(e);
        let d = self.b.ins().fadd(e, one);
        let q = self.b.ins().fdiv(two, d);
        let big = self.b.ins().fsub(one, q);
        let neg = self.b.ins().fneg(big);
        let zero = self.constant(0.0);
        let big = self.choose(FloatCC::LessThan, (x, zero), neg, big);
        let bound = self.constant(0.625);
        self.choose(FloatCC::LessThan, (ax, bound), small, big)
    }

    /// `ln x`: −∞ at ±0, NaN below 0 and for NaN, +∞ at +∞.
    pub fn log(&mut self, x: Value) -> Value {
        // Subnormal inputs are scaled into the normal range first.
        let min_normal = self.constant(f32::MIN_POSITIVE);
        let scale = self.constant(8_388_608.0);
        let scaled = self.b.ins().fmul(x, scale);
        let v = self.choose(FloatCC::LessThan, (x, min_normal), scaled, x);
        let (zero, twenty_three) = (self.constant(0.0), self.constant(23.0));
        let adjust = self.choose(FloatCC::LessThan, (x, min_normal), twenty_three, zero);
        // v = m·2^e with m in [1, 2), then m in [√½, √2).
        let bits = self.bits(v);
        let biased = self.b.ins().ushr_imm_u(bits, 23);
        let bias = self.int_constant(127);
        let e = self.b.ins().isub(biased, bias);
        let e = if self.vector {
            self.b.ins().fcvt_from_sint(types::F32X4, e)
        } else {
            self.b.ins().fcvt_from_sint(types::F32, e)
        };
        let e = self.b.ins().fsub(e, adjust);
        let mantissa = self.int_constant(0x007F_FFFF);
        let one_bits = self.int_constant(0x3F80_0000);
        let m = self.b.ins().band(bits, mantissa);
        let m = self.b.ins().bor(m, one_bits);
        let m = self.float(m);
        let sqrt2 = self.constant(std::f32::consts::SQRT_2);
        let half = self.constant(0.5);
        let halved = self.b.ins().fmul(m, half);
        let m = self.choose(FloatCC::GreaterThan, (m, sqrt2), halved, m);
        // A halved mantissa (now below 1) carries 1 into the exponent.
        let one = self.constant(1.0);
        let carry = self.choose(FloatCC::LessThan, (m, one), one, zero);
        let e = self.b.ins().fadd(e, carry);
        // ln(1 + f) = f − f²/2 + f³·P(f), and e·ln 2 in two parts.
        let f = self.b.ins().fsub(m, one);
        let z = self.b.ins().fmul(f, f);
        let p = self.polynomial(
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
        let fz = self.b.ins().fmul(f, z);
        let y = self.b.ins().fmul(fz, p);
        let c2 = self.constant(-2.121_944_4e-4);
        let t = self.b.ins().fmul(e, c2);
        let y = self.b.ins().fadd(y, t);
        let hz = self.b.ins().fmul(z, half);
        let y = self.b.ins().fsub(y, hz);
        let r = self.b.ins().fadd(f, y);
        let c1 = self.constant(0.693_359_4);
        let t = self.b.ins().fmul(e, c1);
        let r = self.b.ins().fadd(r, t);
        // The edges: +∞, ±0, negative numbers, NaN.
        let inf = self.constant(f32::INFINITY);
        let r = self.choose(FloatCC::Equal, (x, inf), inf, r);
        let neg_inf = self.constant(f32::NEG_INFINITY);
        let r = self.choose(FloatCC::Equal, (x, zero), neg_inf, r);
        let nan = self.constant(f32::NAN);
        let r = self.choose(FloatCC::LessThan, (x, zero), nan, r);
        self.choose(FloatCC::Unordered, (x, x), x, r)
    }

    /// `max(x, 0) + ln(1 + e^{−|x|})`, as the interpreter computes it, with `ln(1 + u)` as
    /// `ln(w)·u/(w − 1)` for `w = 1 + u` (exact to a rounding where `w` rounds `u` away), or
    /// `u` where `w` is 1.
    pub fn softplus(&mut self, x: Value) -> Value {
        let ax = self.b.ins().fabs(x);
        let m = self.b.ins().fneg(ax);
        let u = self.exp(m);
        let one = self.constant(1.0);
        let w = self.b.ins().fadd(u, one);
        let lw = self.log(w);
        let d = self.b.ins().fsub(w, one);
        let q = self.b.ins().fdiv(u, d);
        let l = self.b.ins().fmul(lw, q);
        let l = self.choose(FloatCC::Equal, (w, one), u, l);
        let zero = self.constant(0.0);
        let relu = self.choose(FloatCC::GreaterThan, (x, zero), x, zero);
        self.b.ins().fadd(relu, l)
    }

    /// `1/(1 + e^{−x})`: that for `x ≥ 0`, `e^x/(1 + e^x)` below, as the interpreter
    /// computes it (neither exponential overflows).
    pub fn sigmoid(&mut self, x: Value) -> Value {
        let ax = self.b.ins().fabs(x);
        let m = self.b.ins().fneg(ax);
        let e = self.exp(m);
        let one = self.constant(1.0);
        let d = self.b.ins().fadd(e, one);
        let pos = self.b.ins().fdiv(one, d);
        let neg = self.b.ins().fdiv(e, d);
        let zero = self.constant(0.0);
        self.choose(FloatCC::GreaterThanOrEqual, (x, zero), pos, neg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cranelift_codegen::ir::AbiParam;
    use cranelift_codegen::settings::{self, Configurable};
    use cranelift_frontend::FunctionBuilderContext;
    use cranelift_jit::{JITBuilder, JITModule};
    use cranelift_module::{Linkage, Module, default_libcall_names};
    use nnc_kernels::Isa;
    use nnc_kernels::transcendental::{self as library, Function::*};

    type Unary = fn(&mut Emit<'_, '_>, Value) -> Value;

    /// `f` compiled twice over `n` floats (a multiple of 4): four lanes at a time, and one at
    /// a time; both write their results.
    fn compile(
        f: Unary,
    ) -> (
        JITModule,
        [unsafe extern "C" fn(*const f32, *mut f32, u64); 2],
    ) {
        let mut flags = settings::builder();
        flags.set("opt_level", "speed").unwrap();
        let isa = cranelift_native::builder()
            .unwrap()
            .finish(settings::Flags::new(flags))
            .unwrap();
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        let mut ids = Vec::new();
        for (k, vector) in [true, false].into_iter().enumerate() {
            let ptr = module.target_config().pointer_type();
            let mut ctx = module.make_context();
            ctx.func.signature.params.push(AbiParam::new(ptr));
            ctx.func.signature.params.push(AbiParam::new(ptr));
            ctx.func.signature.params.push(AbiParam::new(types::I64));
            let id = module
                .declare_function(&format!("f{k}"), Linkage::Local, &ctx.func.signature)
                .unwrap();
            let mut fctx = FunctionBuilderContext::new();
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let (entry, body, exit) = (b.create_block(), b.create_block(), b.create_block());
            b.append_block_params_for_function_params(entry);
            b.append_block_param(body, types::I64);
            b.switch_to_block(entry);
            let [src, dst, n] = b.block_params(entry).try_into().unwrap();
            let zero = b.ins().iconst(types::I64, 0);
            b.ins().jump(body, &[zero.into()]);
            b.switch_to_block(body);
            let i = b.block_params(body)[0];
            let offset = b.ins().imul_imm_u(i, 4);
            let (p, q) = (b.ins().iadd(src, offset), b.ins().iadd(dst, offset));
            let ty = if vector { types::F32X4 } else { types::F32 };
            let x = b.ins().load(ty, MemFlagsData::new().with_notrap(), p, 0);
            let y = f(&mut Emit { b: &mut b, vector }, x);
            b.ins().store(MemFlagsData::new().with_notrap(), y, q, 0);
            let next = b.ins().iadd_imm_u(i, if vector { 4 } else { 1 });
            let more = b
                .ins()
                .icmp(ir::condcodes::IntCC::UnsignedLessThan, next, n);
            b.ins().brif(more, body, &[next.into()], exit, &[]);
            b.switch_to_block(exit);
            b.ins().return_(&[]);
            b.seal_all_blocks();
            b.finalize(module.target_config());
            module.define_function(id, &mut ctx).unwrap();
            ids.push(id);
        }
        module.finalize_definitions().unwrap();
        let fns = [ids[0], ids[1]].map(|id| {
            // SAFETY: the function was defined with this signature.
            unsafe { std::mem::transmute(module.get_finalized_function(id)) }
        });
        (module, fns)
    }

    /// Inputs: a grid over `range`, special values, and their negations.
    fn inputs(range: f32) -> Vec<f32> {
        let mut x: Vec<f32> = (0..20_000).map(|i| (i as f32 / 10_000.0) * range).collect();
        x.extend([
            0.0,
            f32::MIN_POSITIVE,
            1e-30,
            1e-7,
            0.625,
            0.624_999_9,
            0.625_000_1,
            1.0,
            9.0,
            20.0,
            44.0,
            87.0,
            88.5,
            88.72,
            88.73,
            89.0,
            103.9,
            104.5,
            1e10,
            f32::MAX,
            f32::INFINITY,
            f32::NAN,
        ]);
        let negated: Vec<f32> = x.iter().map(|v| -v).collect();
        x.extend(negated);
        while !x.len().is_multiple_of(4) {
            x.push(0.5);
        }
        x
    }

    /// Distance in units in the last place between two finite floats of the same sign (or
    /// zero); 0 when both are the same non-finite value.
    fn ulps(a: f32, b: f32) -> u32 {
        if a.is_nan() || b.is_nan() {
            return if a.is_nan() && b.is_nan() {
                0
            } else {
                u32::MAX
            };
        }
        if a == b {
            return 0;
        }
        if a.is_sign_negative() != b.is_sign_negative() {
            return u32::MAX;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// Runs `f` both ways over the inputs: the two agree bit for bit with each other and
    /// with the library's `lib` (its definition, and its rows on every vector unit here), and
    /// each result is within `max_ulps` of `want` (from f64) rounded to f32, or `abs` of it
    /// where it is tiny.
    fn check(
        (f, lib): (Unary, library::Function),
        range: f32,
        want: fn(f64) -> f64,
        max_ulps: u32,
        abs: f64,
    ) {
        let name = format!("{lib:?}");
        let (_module, [vector, scalar]) = compile(f);
        let x = inputs(range);
        let (mut a, mut b) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
        // SAFETY: both functions read and write `x.len()` floats, a multiple of four.
        unsafe {
            vector(x.as_ptr(), a.as_mut_ptr(), x.len() as u64);
            scalar(x.as_ptr(), b.as_mut_ptr(), x.len() as u64);
        }
        let rows: Vec<(Isa, Vec<f32>)> = Isa::ALL
            .into_iter()
            .filter(|isa| isa.supported())
            .map(|isa| {
                let mut row = x.clone();
                library::apply(lib, isa, &mut row);
                (isa, row)
            })
            .collect();
        for (k, ((&x, &a), &b)) in x.iter().zip(&a).zip(&b).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{name}({x:e}): {a:e} vector, {b:e} scalar"
            );
            let defined = lib.at(x);
            assert_eq!(
                a.to_bits(),
                defined.to_bits(),
                "{name}({x:e}): {a:e} here, {defined:e} in the library"
            );
            for (isa, row) in &rows {
                assert_eq!(
                    a.to_bits(),
                    row[k].to_bits(),
                    "{name}({x:e}): {a:e} here, {:e} in the library's rows on {isa:?}",
                    row[k]
                );
            }
            let w = want(x as f64) as f32;
            let close = ulps(a, w) <= max_ulps || (a as f64 - w as f64).abs() <= abs;
            assert!(
                close,
                "{name}({x:e}) = {a:e}, want {w:e} ({} ulps)",
                ulps(a, w)
            );
        }
    }

    #[test]
    fn exp_within_one_ulp() {
        // Tiny results (subnormal) within 2⁻¹⁴⁹ · 2 of the truth.
        check((|e, x| e.exp(x), Exp), 110.0, f64::exp, 1, 3e-45);
    }

    #[test]
    fn tanh_within_one_ulp() {
        check((|e, x| e.tanh(x), Tanh), 12.0, f64::tanh, 1, 0.0);
        // The sign of zero.
        let (_m, [vector, _]) = compile(|e, x| e.tanh(x));
        let (x, mut y) = ([-0.0f32, 0.0, -0.0, 0.0], [1.0f32; 4]);
        // SAFETY: four floats each.
        unsafe { vector(x.as_ptr(), y.as_mut_ptr(), 4) };
        assert!(y[0].is_sign_negative() && y[0] == 0.0 && y[1].is_sign_positive());
    }

    #[test]
    fn log_within_one_ulp() {
        // Positive inputs: a grid over (0, 100], subnormals, the edges; negative ones are NaN.
        check((|e, x| e.log(x), Log), 100.0, f64::ln, 1, 0.0);
        let (_m, [vector, _]) = compile(|e, x| e.log(x));
        let x = [1e-40f32, f32::MIN_POSITIVE, 3.4e38, 1.0];
        let mut y = [0.0f32; 4];
        // SAFETY: four floats each.
        unsafe { vector(x.as_ptr(), y.as_mut_ptr(), 4) };
        for (x, y) in x.iter().zip(y) {
            let want = (*x as f64).ln() as f32;
            assert!(ulps(y, want) <= 1, "log({x:e}) = {y:e}, want {want:e}");
        }
    }

    #[test]
    fn softplus_within_three_ulps() {
        let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        check((|e, x| e.softplus(x), Softplus), 120.0, softplus, 3, 3e-45);
    }

    #[test]
    fn sigmoid_within_two_ulps() {
        let logistic = |x: f64| 1.0 / (1.0 + (-x).exp());
        check((|e, x| e.sigmoid(x), Sigmoid), 120.0, logistic, 2, 3e-45);
    }
}
