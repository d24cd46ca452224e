//! An elementwise program run on the vector unit: a compiler's fused loop of IEEE operations
//! (`+ − × ÷ √`, `max`, negation, absolute value, ReLU and its step) over whole arrays and
//! scalars, with sums of its values, for the loops whose 128-bit code the divider bounds
//! (optimizer updates: a division and a square root per weight).
//!
//! The program runs a block of four vectors (64 elements) at a time, one operation after
//! another over the block, its results kept in a small table on the stack: the dispatch per
//! operation is shared by 64 elements, and the divisions and roots run sixteen lanes wide.
//! What the interpretation still costs is a store and reloads per operation and vector
//! (Adam's update over 65,536 weights, one thread on a Zen 4: 78 µs, where RMSProp's
//! routine, its operations in registers and half the divisions, takes 20 µs; blocks of two,
//! eight or sixteen vectors, or operands read through row pointers, were no faster). Every lane
//! computes each operation exactly as the generated loop does (the same IEEE operations in
//! the same order, the same NaN and zero cases), so the values it stores are the loop's bits;
//! its sums add the same terms in another order (per lane, then the lanes).

use crate::simd::{self, F32x16, Isa, Kernel, low_bits};

/// Where an operation reads an operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// Element `i` of input array `k`.
    Array(usize),
    /// Scalar `k`, the same for every element.
    Scalar(usize),
    /// The result of operation `k` (an earlier one).
    Result(usize),
}

/// An operation of a program, on one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Add(Operand, Operand),
    Sub(Operand, Operand),
    Mul(Operand, Operand),
    Div(Operand, Operand),
    /// `b > a ? b : a` (NaN in `b` gives `a`).
    Max(Operand, Operand),
    Neg(Operand),
    Abs(Operand),
    Sqrt(Operand),
    /// `a > 0 ? a : +0`.
    Relu(Operand),
    /// `a > 0 ? 1 : +0`.
    Step(Operand),
}

impl Operation {
    fn operands(self) -> [Option<Operand>; 2] {
        use Operation::*;
        match self {
            Add(a, b) | Sub(a, b) | Mul(a, b) | Div(a, b) | Max(a, b) => [Some(a), Some(b)],
            Neg(a) | Abs(a) | Sqrt(a) | Relu(a) | Step(a) => [Some(a), None],
        }
    }
}

/// A program: its operations in order, the results it stores (output array `k` receives
/// operation `stores[k]`'s values) and those it sums (sum `k` of operation `sums[k]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub operations: Vec<Operation>,
    pub stores: Vec<usize>,
    pub sums: Vec<usize>,
}

/// The most operations, input arrays, scalars, output arrays and sums a program has (its
/// table of results lives on the stack; the caller's operand lists fit fixed arrays).
pub const MAX_OPERATIONS: usize = 48;
pub const MAX_ARRAYS: usize = 16;
pub const MAX_SCALARS: usize = 16;
pub const MAX_STORES: usize = 8;
pub const MAX_SUMS: usize = 4;

/// Vectors per block.
const BLOCK: usize = 4;

impl Program {
    /// Whether the program is within the limits above and reads only what exists: `arrays`
    /// input arrays, `scalars` scalars, and results of earlier operations.
    pub fn valid(&self, arrays: usize, scalars: usize) -> bool {
        let reads = |t: usize, o: Operand| match o {
            Operand::Array(k) => k < arrays,
            Operand::Scalar(k) => k < scalars,
            Operand::Result(k) => k < t,
        };
        let ops = self.operations.len();
        ops <= MAX_OPERATIONS
            && arrays <= MAX_ARRAYS
            && scalars <= MAX_SCALARS
            && self.stores.len() <= MAX_STORES
            && self.sums.len() <= MAX_SUMS
            && self.stores.iter().chain(&self.sums).all(|&k| k < ops)
            && self
                .operations
                .iter()
                .enumerate()
                .all(|(t, op)| op.operands().into_iter().flatten().all(|o| reads(t, o)))
    }
}

/// Runs `program` over `n` elements: reads `inputs` (one pointer per input array) and
/// `scalars`, writes `outputs` (one per stored result), and puts each sum in `sums`.
///
/// # Panics
/// If the program is not [`Program::valid`] for these operands, the operand lists do not
/// match it, or the CPU does not support `isa`.
///
/// # Safety
/// Each pointer addresses `n` floats (the inputs readable, the outputs writable). An output
/// may be an input (an update in place: every element is read before it is written), but
/// otherwise no one else accesses these floats during the call.
pub unsafe fn run(
    isa: Isa,
    program: &Program,
    (inputs, scalars): (&[*const f32], &[f32]),
    outputs: &[*mut f32],
    sums: &mut [f32],
    n: usize,
) {
    assert!(isa.supported(), "needs {}", isa.name());
    assert!(
        program.valid(inputs.len(), scalars.len()),
        "invalid program"
    );
    assert!(outputs.len() == program.stores.len() && sums.len() == program.sums.len());
    let k = Run {
        program,
        inputs,
        scalars,
        outputs,
        sums,
        n,
    };
    // SAFETY: the unit is supported (asserted); the pointers hold `n` floats each and are
    // accessed only as the caller's contract allows (`Run::block`).
    unsafe { simd::run(isa, k) }
}

struct Run<'a> {
    program: &'a Program,
    inputs: &'a [*const f32],
    scalars: &'a [f32],
    outputs: &'a [*mut f32],
    sums: &'a mut [f32],
    n: usize,
}

impl Kernel for Run<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: F32x16>(self) {
        let width = 16 * BLOCK;
        // SAFETY (throughout): the CPU has `V`'s unit; `block`'s contract holds for whole
        // blocks below `n` and for the last, masked one.
        unsafe {
            let mut table = [[V::zero(); BLOCK]; MAX_OPERATIONS];
            let mut sums = [[V::zero(); BLOCK]; MAX_SUMS];
            let whole = self.n / width * width;
            for i in (0..whole).step_by(width) {
                self.block::<V, false>(i, [u16::MAX; BLOCK], &mut table, &mut sums);
            }
            if whole < self.n {
                let mut masks = [0u16; BLOCK];
                for (k, m) in masks.iter_mut().enumerate() {
                    *m = low_bits((self.n - whole).saturating_sub(16 * k));
                }
                self.block::<V, true>(whole, masks, &mut table, &mut sums);
            }
            for (out, sum) in self.sums.iter_mut().zip(&sums) {
                *out = sum[0].add(sum[1]).add(sum[2].add(sum[3])).sum();
            }
        }
    }
}

impl Run<'_> {
    /// Elements `i..i + 64` (the lanes of `masks` where `MASKED`), each operation's results in
    /// `table`, each sum's vectors added to `sums`. (Loops and a macro, not closures: see
    /// `simd`.)
    ///
    /// # Safety
    /// The CPU has `V`'s unit; the lanes of `masks` (all where not `MASKED`) are elements
    /// below `n`.
    #[inline(always)]
    unsafe fn block<V: F32x16, const MASKED: bool>(
        &self,
        i: usize,
        masks: [u16; BLOCK],
        table: &mut [[V; BLOCK]; MAX_OPERATIONS],
        sums: &mut [[V; BLOCK]; MAX_SUMS],
    ) {
        // Each vector of the block: `$e` of the operands' vectors named `$x` (and `$y`).
        macro_rules! lanes {
            ($a:expr, |$x:ident| $e:expr) => {{
                let xs = self.get::<V, MASKED>($a, i, masks, table);
                let mut r = [V::zero(); BLOCK];
                for k in 0..BLOCK {
                    let $x = xs[k];
                    r[k] = $e;
                }
                r
            }};
            ($a:expr, $b:expr, |$x:ident, $y:ident| $e:expr) => {{
                let xs = self.get::<V, MASKED>($a, i, masks, table);
                let ys = self.get::<V, MASKED>($b, i, masks, table);
                let mut r = [V::zero(); BLOCK];
                for k in 0..BLOCK {
                    let ($x, $y) = (xs[k], ys[k]);
                    r[k] = $e;
                }
                r
            }};
        }
        // SAFETY (throughout): the unit is the caller's; lanes are loaded and stored only in
        // `masks`, elements below `n` of arrays that hold `n` floats (`run`'s contract);
        // addresses of lanes left out are formed with `wrapping_add` and never accessed.
        unsafe {
            for (t, &op) in self.program.operations.iter().enumerate() {
                table[t] = match op {
                    Operation::Add(a, b) => lanes!(a, b, |x, y| x.add(y)),
                    Operation::Sub(a, b) => lanes!(a, b, |x, y| x.sub(y)),
                    Operation::Mul(a, b) => lanes!(a, b, |x, y| x.mul(y)),
                    Operation::Div(a, b) => lanes!(a, b, |x, y| x.div(y)),
                    // `V::max(y, x)` is `x < y ? y : x`: the loop's `y > x ? y : x`.
                    Operation::Max(a, b) => lanes!(a, b, |x, y| y.max(x)),
                    Operation::Neg(a) => lanes!(a, |x| x.neg()),
                    Operation::Abs(a) => lanes!(a, |x| x.abs()),
                    Operation::Sqrt(a) => lanes!(a, |x| x.sqrt()),
                    Operation::Relu(a) => lanes!(a, |x| x.max(V::zero())),
                    Operation::Step(a) => {
                        lanes!(a, |x| V::splat(1.0).select(x.greater(V::zero())))
                    }
                };
            }
            for (&r, &out) in self.program.stores.iter().zip(self.outputs) {
                for k in 0..BLOCK {
                    let p = out.wrapping_add(i.wrapping_add(16 * k));
                    if MASKED {
                        table[r][k].store_masked(masks[k], p);
                    } else {
                        table[r][k].store(p);
                    }
                }
            }
            for (&r, sum) in self.program.sums.iter().zip(sums.iter_mut()) {
                for k in 0..BLOCK {
                    // The lanes left out hold whatever the operations made of +0: not added.
                    let v = if MASKED {
                        let mut lanes = [0.0f32; 16];
                        table[r][k].store_masked(masks[k], lanes.as_mut_ptr());
                        V::load(lanes.as_ptr())
                    } else {
                        table[r][k]
                    };
                    sum[k] = sum[k].add(v);
                }
            }
        }
    }

    /// Operand `o`'s vectors for elements `i..i + 64`.
    ///
    /// # Safety
    /// As [`Run::block`].
    #[inline(always)]
    unsafe fn get<V: F32x16, const MASKED: bool>(
        &self,
        o: Operand,
        i: usize,
        masks: [u16; BLOCK],
        table: &[[V; BLOCK]; MAX_OPERATIONS],
    ) -> [V; BLOCK] {
        // SAFETY: as in `block`.
        unsafe {
            match o {
                Operand::Array(a) => {
                    let mut r = [V::zero(); BLOCK];
                    for (k, r) in r.iter_mut().enumerate() {
                        let p = self.inputs[a].wrapping_add(i.wrapping_add(16 * k));
                        *r = if MASKED {
                            V::load_masked(masks[k], p)
                        } else {
                            V::load(p)
                        };
                    }
                    r
                }
                Operand::Scalar(s) => [V::splat(self.scalars[s]); BLOCK],
                Operand::Result(r) => table[r],
            }
        }
    }
}

/// Times Adam's update as the compiler's loop has it (`m' = β₁m + (1 − β₁)g`,
/// `v' = β₂v + (1 − β₂)g²`, `w' = w − (lr·m'/c₁) / (√(v'/c₂) + ε)`, and `Σ g²`) over 65,536
/// weights on one thread, best of 50 runs, against RMSProp's fused routine on as many
/// (`cargo bench -p nnc-kernels --bench kernels -- elementwise`).
#[doc(hidden)]
pub fn time_adam(isa: Isa) {
    use Operand::{Array as A, Result as R, Scalar as S};
    use Operation::*;
    let n = 1 << 16;
    let p = Program {
        operations: vec![
            Mul(A(0), A(0)),  // 0: g²
            Mul(A(1), S(0)),  // 1
            Mul(A(0), S(1)),  // 2
            Add(R(1), R(2)),  // 3: m'
            Mul(A(2), S(2)),  // 4
            Mul(R(0), S(3)),  // 5
            Add(R(4), R(5)),  // 6: v'
            Div(R(6), S(4)),  // 7
            Sqrt(R(7)),       // 8
            Add(R(8), S(5)),  // 9
            Mul(R(3), S(6)),  // 10
            Div(R(10), S(7)), // 11
            Div(R(11), R(9)), // 12
            Sub(A(3), R(12)), // 13: w'
        ],
        stores: vec![3, 6, 13],
        sums: vec![0],
    };
    let inputs: Vec<Vec<f32>> = (0..4).map(|k| crate::testing::values(n, 3 + k)).collect();
    let scalars = [0.9, 0.1, 0.999, 0.001, 0.5, 1e-7, 0.001, 0.3];
    let mut outs = [vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]];
    let reads: Vec<*const f32> = inputs.iter().map(|v| v.as_ptr()).collect();
    let writes: Vec<*mut f32> = outs.iter_mut().map(|v| v.as_mut_ptr()).collect();
    let mut sums = [0.0f32];
    let mut best = [f64::MAX; 2];
    for _ in 0..50 {
        let t = std::time::Instant::now();
        // SAFETY: every pointer holds `n` floats, the outputs apart from the inputs.
        unsafe { run(isa, &p, (&reads, &scalars), &writes, &mut sums, n) };
        best[0] = best[0].min(t.elapsed().as_secs_f64());
        let c = crate::rmsprop::Constants {
            rho: 0.9,
            one_minus_rho: 0.1,
            eps: 1e-7,
            lr: 0.001,
        };
        let t = std::time::Instant::now();
        // SAFETY: as above.
        let norm = unsafe {
            crate::rmsprop::update(
                isa,
                c,
                [reads[0], reads[1], reads[2]],
                [writes[0], writes[1]],
                n,
            )
        };
        best[1] = best[1].min(t.elapsed().as_secs_f64());
        std::hint::black_box((norm, &sums));
    }
    println!(
        "Adam's update as an elementwise program: {:.1} µs ({:.2} ns a weight); RMSProp's \
         fused routine {:.1} µs ({n} weights, one thread)",
        best[0] * 1e6,
        best[0] * 1e9 / n as f64,
        best[1] * 1e6
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// The program's values for element `i`, one f32 operation at a time as the generated
    /// loop computes them.
    fn scalar(p: &Program, inputs: &[Vec<f32>], scalars: &[f32], i: usize) -> Vec<f32> {
        let mut r: Vec<f32> = Vec::new();
        for op in &p.operations {
            let get = |o: Operand, r: &[f32]| match o {
                Operand::Array(a) => inputs[a][i],
                Operand::Scalar(s) => scalars[s],
                Operand::Result(k) => r[k],
            };
            let v = match *op {
                Operation::Add(a, b) => get(a, &r) + get(b, &r),
                Operation::Sub(a, b) => get(a, &r) - get(b, &r),
                Operation::Mul(a, b) => get(a, &r) * get(b, &r),
                Operation::Div(a, b) => get(a, &r) / get(b, &r),
                Operation::Max(a, b) => {
                    let (x, y) = (get(a, &r), get(b, &r));
                    if y > x { y } else { x }
                }
                Operation::Neg(a) => -get(a, &r),
                Operation::Abs(a) => get(a, &r).abs(),
                Operation::Sqrt(a) => get(a, &r).sqrt(),
                Operation::Relu(a) => {
                    let x = get(a, &r);
                    if x > 0.0 { x } else { 0.0 }
                }
                Operation::Step(a) => {
                    if get(a, &r) > 0.0 {
                        1.0
                    } else {
                        0.0
                    }
                }
            };
            r.push(v);
        }
        r
    }

    /// An Adam-like update with every operation: `m' = b·m + (1 − b)·g`,
    /// `w' = w − lr·m' / (√|m'| + ε)`, plus max, negation, ReLU and step of the gradient,
    /// its squared sum and the sum of the ReLU.
    fn program() -> Program {
        use Operand::{Array as A, Result as R, Scalar as S};
        use Operation::*;
        Program {
            operations: vec![
                Mul(S(0), A(1)),   // 0: b·m
                Mul(S(1), A(0)),   // 1: (1 − b)·g
                Add(R(0), R(1)),   // 2: m'
                Abs(R(2)),         // 3
                Sqrt(R(3)),        // 4
                Add(R(4), S(2)),   // 5: + ε
                Div(R(2), R(5)),   // 6
                Mul(R(6), S(3)),   // 7: · lr
                Sub(A(2), R(7)),   // 8: w'
                Max(A(0), A(1)),   // 9
                Neg(R(9)),         // 10
                Relu(A(0)),        // 11
                Step(R(10)),       // 12
                Mul(A(0), A(0)),   // 13: g²
                Add(R(12), R(11)), // 14
            ],
            stores: vec![2, 8, 14],
            sums: vec![13, 11],
        }
    }

    #[test]
    fn the_vector_unit_gives_the_loops_bits() {
        let p = program();
        let scalars = [0.9, 0.1, 1e-7, 0.01];
        // Whole blocks, a tail of a partial vector, of whole vectors, and less than one.
        for n in [128, 64 + 37, 64 + 32, 11, 1, 0] {
            let mut inputs: Vec<Vec<f32>> = (0..3).map(|k| values(n, 7 + k)).collect();
            // The edges: zeros of both signs, a NaN, infinities and equal operands of `max`.
            for (i, v) in [0.0, -0.0, f32::NAN, f32::INFINITY, -f32::INFINITY]
                .iter()
                .enumerate()
            {
                if i < n {
                    inputs[0][i] = *v;
                    inputs[1][n - 1 - i] = *v;
                }
            }
            if n > 8 {
                inputs[1][8] = inputs[0][8];
            }
            let expected: Vec<Vec<f32>> =
                (0..n).map(|i| scalar(&p, &inputs, &scalars, i)).collect();
            for isa in
                crate::testing::vector_units("elementwise::the_vector_unit_gives_the_loops_bits")
            {
                // The third output in place of the first input, as an update writes.
                let mut outs = [vec![f32::NAN; n], vec![f32::NAN; n], inputs[0].clone()];
                let mut sums = [0.0f32; 2];
                let writes: Vec<*mut f32> = outs.iter_mut().map(|v| v.as_mut_ptr()).collect();
                let mut reads: Vec<*const f32> = inputs.iter().map(|v| v.as_ptr()).collect();
                reads[0] = writes[2].cast_const();
                // SAFETY: every pointer holds `n` floats; the in-place pair is allowed.
                unsafe { run(isa, &p, (&reads, &scalars), &writes, &mut sums, n) };
                for (k, &r) in p.stores.iter().enumerate() {
                    for i in 0..n {
                        let (got, want) = (outs[k][i], expected[i][r]);
                        assert!(
                            got.to_bits() == want.to_bits(),
                            "{isa:?} n {n} output {k} [{i}]: {got} vs {want}"
                        );
                    }
                }
                for (k, &r) in p.sums.iter().enumerate() {
                    let want: f64 = expected.iter().map(|e| f64::from(e[r])).sum();
                    let got = f64::from(sums[k]);
                    let close = (got - want).abs() <= 1e-5 * want.abs().max(1.0);
                    assert!(
                        close || got == want || (got.is_nan() && want.is_nan()),
                        "{isa:?} n {n} sum {k}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn invalid_programs_are_refused() {
        let p = program();
        assert!(p.valid(3, 4));
        assert!(!p.valid(2, 4), "an array past the inputs");
        assert!(!p.valid(3, 3), "a scalar past the scalars");
        let mut later = p.clone();
        later.operations[0] = Operation::Neg(Operand::Result(0));
        assert!(!later.valid(3, 4), "an operation reading itself");
        let mut stored = p;
        stored.stores.push(99);
        assert!(!stored.valid(3, 4), "a store of no operation");
    }
}
