//! Sixteen f32 lanes on whichever vector unit the CPU has: AVX-512, or AVX2 with FMA.
//!
//! The vector kernels (`direct`, `channels`, `samples`, `sparse`, `pool`, `copy`, `rmsprop`)
//! are written once, generic
//! over [`F32x16`], and compiled twice: for AVX-512 a value is one 512-bit register and a
//! `u16` mask is a mask register; for AVX2 it is a pair of 256-bit registers and masks are
//! expanded to lanes. Both perform the same IEEE operations lane by lane, so a kernel's
//! results do not depend on the vector unit, except the order of [`F32x16::sum`]'s additions
//! (a tree on both, the same tree). Layouts (sixteen positions per vector, `u16` masks) are the
//! same on both, so a program's buffer plan does not depend on the CPU either.
//!
//! A kernel implements [`Kernel`]; [`run`] calls it through a function compiled with the
//! chosen unit's target features, into which every `#[inline(always)]` operation here is
//! inlined. Kernels call these operations in loops, not in closures (`std::array::from_fn`):
//! a closure is a function of its own, compiled without the features, and LLVM may leave it
//! out of line with a call per intrinsic in it (measured: LeNet-5's step 9× slower).
//!
//! AVX2 has 16 vector registers to AVX-512's 32, each holding half as much, so kernels choose
//! narrower register tiles for it ([`F32x16::REGISTERS`]).
//!
//! Unsafe code in the kernels: the operations are `unsafe fn`s (the unit must be present, a
//! pointer valid for the lanes it touches). A kernel forms its pointers from the slices it was
//! given, `&` for what it reads and `&mut` for what it writes, so the borrow checker rules out
//! aliasing at its entry and on other threads (a split kernel's parts are handed disjoint
//! slices: see the compiler's `LibKernel::run_part`); its `SAFETY` comments argue bounds (asserted
//! on entry, where a failed check panics before any pointer is used) and that masked-off lanes
//! are never accessed. A panic inside a kernel leaves only partly written floats behind.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// A vector unit the library kernels run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512F: sixteen lanes per register, mask registers, compress and gather.
    Avx512,
    /// AVX2 and FMA (x86-64-v3): two 256-bit registers per sixteen lanes.
    Avx2,
}

impl Isa {
    /// Both units, best first.
    pub const ALL: [Isa; 2] = [Isa::Avx512, Isa::Avx2];

    /// Whether this CPU has the unit.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
                Isa::Avx2 => {
                    std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = self;
            false
        }
    }

    /// The best unit this CPU has, if any.
    pub fn best() -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.supported())
    }

    /// Whether its masked loads cost what plain ones do (`F32x16::FREE_MASKS` of its
    /// vector), for choices made outside the kernels (a layout that needs no masks).
    pub fn free_masks(self) -> bool {
        match self {
            Isa::Avx512 => true,
            Isa::Avx2 => false,
        }
    }

    /// Its name in reports: `AVX-512` or `AVX2`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512",
            Isa::Avx2 => "AVX2",
        }
    }
}

/// A computation generic over the vector type, run by [`run`].
pub trait Kernel {
    type Output;
    /// The computation, with `V` the chosen unit's vector.
    ///
    /// # Safety
    /// The CPU has `V`'s unit; the rest is the kernel's own contract.
    unsafe fn run<V: F32x16>(self) -> Self::Output;
}

/// `$body` with the const `$p` bound to `$n` (1 to 12; more is 12): a register tile whose
/// size is known at run time, each size compiled as its own function (usually with
/// [`run_apart`]).
macro_rules! with_tile_size {
    ($n:expr, $p:ident => $body:expr) => {
        match $n {
            1 => {
                const $p: usize = 1;
                $body
            }
            2 => {
                const $p: usize = 2;
                $body
            }
            3 => {
                const $p: usize = 3;
                $body
            }
            4 => {
                const $p: usize = 4;
                $body
            }
            5 => {
                const $p: usize = 5;
                $body
            }
            6 => {
                const $p: usize = 6;
                $body
            }
            7 => {
                const $p: usize = 7;
                $body
            }
            8 => {
                const $p: usize = 8;
                $body
            }
            9 => {
                const $p: usize = 9;
                $body
            }
            10 => {
                const $p: usize = 10;
                $body
            }
            11 => {
                const $p: usize = 11;
                $body
            }
            _ => {
                const $p: usize = 12;
                $body
            }
        }
    };
}
pub(crate) use with_tile_size;

/// [`run`] from a function of its own, never inlined into its caller: for a register tile
/// called from a kernel whose other code would otherwise share LLVM's register allocation
/// with it (`channels::forward`: an accumulator spilled to the stack, its every update then
/// waiting on memory, 2× slower).
///
/// # Safety
/// As [`run`].
#[inline(never)]
pub unsafe fn run_apart<K: Kernel>(isa: Isa, k: K) -> K::Output {
    // SAFETY: the caller's contract.
    unsafe { run(isa, k) }
}

/// Runs `k` on `isa`, compiled with its target features.
///
/// # Safety
/// The CPU supports `isa` ([`Isa::supported`]), and `k`'s own contract holds.
pub unsafe fn run<K: Kernel>(isa: Isa, k: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract.
    unsafe {
        match isa {
            Isa::Avx512 => run_avx512(k),
            Isa::Avx2 => run_avx2(k),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, k);
        unreachable!("no vector unit on this architecture")
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<K: Kernel>(k: K) -> K::Output {
    // SAFETY: the caller's contract; this function has AVX-512's features.
    unsafe { k.run::<Avx512>() }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<K: Kernel>(k: K) -> K::Output {
    // SAFETY: the caller's contract; this function has AVX2's and FMA's features.
    unsafe { k.run::<Avx2>() }
}

/// Whether a kernel takes the register tiles sized for 32 registers (AVX-512's): on such a
/// unit, or anywhere when `forced` (the kernels' tests force them, so that a CPU with AVX2
/// only still runs their logic).
pub fn wide_tiles<V: F32x16>(forced: bool) -> bool {
    forced || V::REGISTERS >= 32
}

/// A mask of the lowest `n` lanes (all sixteen for `n ≥ 16`).
pub fn low_bits(n: usize) -> u16 {
    if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
}

/// Sixteen f32 lanes. Every operation is unsafe to call: the CPU must have the unit, and
/// pointers must be valid for the lanes they access (masked-off lanes are never accessed, so
/// their addresses may lie outside any allocation).
#[allow(clippy::missing_safety_doc)]
pub trait F32x16: Copy {
    /// The unit.
    const ISA: Isa;
    /// Vector registers of sixteen lanes the unit has (32 on AVX-512, 8 pairs on AVX2).
    const REGISTERS: usize;
    /// Whether a masked load costs what a plain one does (AVX-512), or more (AVX2).
    const FREE_MASKS: bool;
    /// Whether [`F32x16::load_strided`] is one instruction (AVX-512's gather), or a lane at a
    /// time (AVX2).
    const FAST_GATHER: bool;

    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    /// Sixteen floats from `p`.
    unsafe fn load(p: *const f32) -> Self;
    /// The lanes of `m` from `p`, +0 in the others.
    unsafe fn load_masked(m: u16, p: *const f32) -> Self;
    /// Lanes of `m` from `p + i·stride` (lane `i`), +0 in the others.
    unsafe fn load_strided(m: u16, p: *const f32, stride: usize) -> Self;
    /// Sixteen bytes from `p`, as floats (exactly: they are below 256).
    unsafe fn load_bytes(p: *const u8) -> Self;
    /// Lanes of `m` from the bytes at `p + i·stride` (lane `i`), as floats; +0 in the others.
    #[inline(always)]
    unsafe fn load_bytes_strided(m: u16, p: *const u8, stride: usize) -> Self {
        if m == u16::MAX && stride == 1 {
            // SAFETY: all sixteen lanes are valid (the caller's contract).
            return unsafe { Self::load_bytes(p) };
        }
        let mut a = [0u8; 16];
        let mut bits = m;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            // SAFETY: lane `i` is in `m`, so `p + i·stride` is valid (the caller's contract).
            a[i] = unsafe { *p.wrapping_add(i * stride) };
            bits &= bits - 1;
        }
        // SAFETY: `a` holds sixteen bytes.
        unsafe { Self::load_bytes(a.as_ptr()) }
    }
    unsafe fn store(self, p: *mut f32);
    /// Stores the lanes of `m` to their places from `p`.
    unsafe fn store_masked(self, m: u16, p: *mut f32);
    /// Stores the lanes of `m`, packed, to `p..p + popcount(m)`.
    unsafe fn store_compressed(self, m: u16, p: *mut f32);
    /// `self · b + c`, one rounding.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    unsafe fn div(self, b: Self) -> Self;
    unsafe fn sqrt(self) -> Self;
    /// The sign bit flipped (−0 for +0, NaN kept).
    unsafe fn neg(self) -> Self;
    /// The sign bit cleared.
    unsafe fn abs(self) -> Self;
    /// `b < self ? self : b` per lane, as x86's `max` (the second operand on NaN or ties).
    unsafe fn max(self, b: Self) -> Self;
    /// Lanes where `self ≠ 0` (unordered: true on NaN; -0 is 0).
    unsafe fn nonzero(self) -> u16;

    /// A lane mask in the unit's own form: a mask register's `u16` on AVX-512, a vector of
    /// all-ones and zero lanes on AVX2 (where turning one into bits and back costs more than
    /// the arithmetic the kernels do with it).
    type Mask: Copy;
    /// Lanes where `self > b` (ordered: false on NaN).
    unsafe fn greater(self, b: Self) -> Self::Mask;
    /// `a` and not `b`.
    unsafe fn and_not(a: Self::Mask, b: Self::Mask) -> Self::Mask;
    /// `a` or `b`.
    unsafe fn or(a: Self::Mask, b: Self::Mask) -> Self::Mask;
    /// The other lanes.
    unsafe fn not(a: Self::Mask) -> Self::Mask;
    /// The lanes of `m`, +0 in the others.
    unsafe fn select(self, m: Self::Mask) -> Self;
    /// The sum of the lanes: halves added pairwise down to one lane.
    unsafe fn sum(self) -> f32;
    /// Subnormal lanes (exponent zero, mantissa not) set to +0.
    unsafe fn flush_subnormals(self) -> Self;
    /// The even and the odd lanes of the 32 floats `self`, `b`.
    unsafe fn deinterleave(self, b: Self) -> (Self, Self);
    /// `self` and `b` interleaved: lanes `0..8` of each, then lanes `8..16`.
    unsafe fn interleave(self, b: Self) -> (Self, Self);

    /// `dst[j·dst_stride + i] = src[i·src_stride + j]` for `i, j < 8`: an 8×8 block
    /// transposed (eight loads, 24 shuffles and eight stores on either unit).
    #[inline(always)]
    unsafe fn transpose8(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: both units have AVX; the rows are valid (the caller's contract).
        unsafe {
            transpose8_avx(src, src_stride, dst, dst_stride)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (src, src_stride, dst, dst_stride);
            unreachable!("no vector unit on this architecture")
        }
    }
}

/// [`F32x16::transpose8`] in 256-bit registers: pairs of rows interleaved by lanes, then by
/// pairs of lanes, then the 128-bit halves exchanged.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose8_avx(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    // SAFETY: the caller's contract: the CPU has AVX2, the eight rows of eight floats at both
    // pointers are valid and no one else accesses them meanwhile; no references, no panics.
    unsafe {
        let r: [__m256; 8] = [
            _mm256_loadu_ps(src),
            _mm256_loadu_ps(src.add(src_stride)),
            _mm256_loadu_ps(src.add(2 * src_stride)),
            _mm256_loadu_ps(src.add(3 * src_stride)),
            _mm256_loadu_ps(src.add(4 * src_stride)),
            _mm256_loadu_ps(src.add(5 * src_stride)),
            _mm256_loadu_ps(src.add(6 * src_stride)),
            _mm256_loadu_ps(src.add(7 * src_stride)),
        ];
        // t0 = a0 b0 a1 b1 | a4 b4 a5 b5, t1 = a2 b2 a3 b3 | a6 b6 a7 b7, ...
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        // u0 = a0 b0 c0 d0 | a4 b4 c4 d4, u1 = a1 b1 c1 d1 | a5 b5 c5 d5, ...
        let u = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xee>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xee>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xee>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xee>(t[5], t[7]),
        ];
        for k in 0..4 {
            let (lo, hi) = (u[k], u[k + 4]);
            _mm256_storeu_ps(
                dst.add(k * dst_stride),
                _mm256_permute2f128_ps::<0x20>(lo, hi),
            );
            _mm256_storeu_ps(
                dst.add((k + 4) * dst_stride),
                _mm256_permute2f128_ps::<0x31>(lo, hi),
            );
        }
    }
}

/// `dst[c·dst_stride + r] = src[r·src_stride + c]` for `r < rows`, `c < cols`: a matrix
/// transposed in 8 × 8 blocks ([`F32x16::transpose8`]), its edges as partial blocks
/// (`transpose_partial`).
///
/// # Safety
/// The CPU has `V`'s unit.
///
/// # Panics
/// If either slice is too short for its strides.
#[inline(always)]
pub unsafe fn transpose<V: F32x16>(
    (src, src_stride): (&[f32], usize),
    (dst, dst_stride): (&mut [f32], usize),
    rows: usize,
    cols: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(src.len() > (rows - 1) * src_stride + cols - 1);
    assert!(dst.len() > (cols - 1) * dst_stride + rows - 1);
    assert!(src_stride >= cols && dst_stride >= rows);
    let (whole_r, whole_c) = (rows / 8 * 8, cols / 8 * 8);
    let (src, dst) = (src.as_ptr(), dst.as_mut_ptr());
    for r in (0..rows).step_by(8) {
        for c in (0..cols).step_by(8) {
            // SAFETY: rows `r..r + 8` of `src` hold columns `c..c + 8`, and rows `c..c + 8`
            // of `dst` columns `r..r + 8`, where whole (asserted lengths), and the partial
            // blocks touch only their rows and columns; the unit is the caller's.
            unsafe {
                let (from, to) = (src.add(r * src_stride + c), dst.add(c * dst_stride + r));
                if r < whole_r && c < whole_c {
                    V::transpose8(from, src_stride, to, dst_stride);
                } else {
                    let n = [(rows - r).min(8), (cols - c).min(8)];
                    transpose_partial::<V>((from, src_stride), (to, dst_stride), n);
                }
            }
        }
    }
}

/// [`F32x16::transpose8`] of the first `rows × cols` (each at most 8) of a block: its rows
/// loaded masked into a block on the stack, transposed there, and stored masked. (Element by
/// element, the edges of a 28-position row cost the channels kernels' stores as much as its
/// whole blocks.)
///
/// # Safety
/// The CPU has `V`'s unit; `src` is valid for reading `rows` rows of `cols` floats
/// `src_stride` apart, `dst` for writing `cols` rows of `rows` floats `dst_stride` apart.
#[inline(always)]
unsafe fn transpose_partial<V: F32x16>(
    (src, src_stride): (*const f32, usize),
    (dst, dst_stride): (*mut f32, usize),
    [rows, cols]: [usize; 2],
) {
    // Rows of sixteen floats, so that a vector's masked-off lanes stay inside.
    let mut block = [0.0f32; 8 * 16];
    let mut transposed = [0.0f32; 8 * 16];
    // SAFETY: the caller's bounds, the masks cover exactly them; the blocks on the stack
    // hold eight rows of sixteen.
    unsafe {
        for r in 0..rows {
            let v = V::load_masked(low_bits(cols), src.add(r * src_stride));
            v.store(block.as_mut_ptr().add(r * 16));
        }
        V::transpose8(block.as_ptr(), 16, transposed.as_mut_ptr(), 16);
        for c in 0..cols {
            let v = V::load(transposed.as_ptr().add(c * 16));
            v.store_masked(low_bits(rows), dst.add(c * dst_stride));
        }
    }
}

/// Asks the CPU to bring `data` into L1 ahead of its use (a line every 64 bytes), where a
/// kernel reads a block in an order the hardware prefetchers do not follow: the pooling
/// kernels' transposes read sixteen planes at once and ran at a third of the memory's
/// streaming speed on planes that were not in cache.
#[inline(always)]
pub fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: a prefetch is a hint: it reads nothing into the program and cannot fault;
        // the address is inside `data` anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Stores the indices `base + i` of the lanes `i` of `m`, packed, to `p..p + popcount(m)`.
///
/// # Safety
/// `p` is valid for `popcount(m)` writes.
#[inline(always)]
pub unsafe fn store_indices(m: u16, base: u32, p: *mut u32) {
    let mut bits = m;
    let mut n = 0;
    while bits != 0 {
        // SAFETY: `n < popcount(m)`.
        unsafe { *p.add(n) = base + bits.trailing_zeros() };
        bits &= bits - 1;
        n += 1;
    }
}

/// One 512-bit register.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx512(__m512);

// SAFETY (every `unsafe` block in this impl): each method is an `unsafe fn` under the trait's
// contract: the CPU has the unit, and every pointer is valid for the lanes it accesses and not
// accessed by anyone else meanwhile (the caller holds the slices it came from). The blocks call
// the unit's intrinsics under exactly that contract; they make no references and cannot panic.
#[cfg(target_arch = "x86_64")]
impl F32x16 for Avx512 {
    const ISA: Isa = Isa::Avx512;
    const REGISTERS: usize = 32;
    const FREE_MASKS: bool = true;
    const FAST_GATHER: bool = true;

    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { Avx512(_mm512_setzero_ps()) }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        unsafe { Avx512(_mm512_set1_ps(x)) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { Avx512(_mm512_loadu_ps(p)) }
    }
    #[inline(always)]
    unsafe fn load_masked(m: u16, p: *const f32) -> Self {
        unsafe { Avx512(_mm512_maskz_loadu_ps(m, p)) }
    }
    #[inline(always)]
    unsafe fn load_strided(m: u16, p: *const f32, stride: usize) -> Self {
        unsafe {
            let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let at = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(stride as i32));
            Avx512(_mm512_mask_i32gather_ps::<4>(
                _mm512_setzero_ps(),
                m,
                at,
                p.cast(),
            ))
        }
    }
    #[inline(always)]
    unsafe fn load_bytes(p: *const u8) -> Self {
        unsafe {
            let b = _mm_loadu_si128(p.cast());
            Avx512(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)))
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn store_masked(self, m: u16, p: *mut f32) {
        unsafe { _mm512_mask_storeu_ps(p, m, self.0) }
    }
    #[inline(always)]
    unsafe fn store_compressed(self, m: u16, p: *mut f32) {
        unsafe {
            let packed = _mm512_maskz_compress_ps(m, self.0);
            _mm512_mask_storeu_ps(p, low_bits(m.count_ones() as usize), packed)
        }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        unsafe { Avx512(_mm512_fmadd_ps(self.0, b.0, c.0)) }
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        unsafe { Avx512(_mm512_add_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        unsafe { Avx512(_mm512_sub_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        unsafe { Avx512(_mm512_mul_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        unsafe { Avx512(_mm512_div_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        unsafe { Avx512(_mm512_sqrt_ps(self.0)) }
    }
    #[inline(always)]
    unsafe fn neg(self) -> Self {
        unsafe {
            let sign = _mm512_set1_epi32(i32::MIN);
            Avx512(_mm512_castsi512_ps(_mm512_xor_si512(
                _mm512_castps_si512(self.0),
                sign,
            )))
        }
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        unsafe { Avx512(_mm512_abs_ps(self.0)) }
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        unsafe { Avx512(_mm512_max_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn nonzero(self) -> u16 {
        unsafe { _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(self.0, _mm512_setzero_ps()) }
    }

    type Mask = u16;
    #[inline(always)]
    unsafe fn greater(self, b: Self) -> u16 {
        unsafe { _mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.0, b.0) }
    }
    #[inline(always)]
    unsafe fn and_not(a: u16, b: u16) -> u16 {
        a & !b
    }
    #[inline(always)]
    unsafe fn or(a: u16, b: u16) -> u16 {
        a | b
    }
    #[inline(always)]
    unsafe fn not(a: u16) -> u16 {
        !a
    }
    #[inline(always)]
    unsafe fn select(self, m: u16) -> Self {
        unsafe { Avx512(_mm512_maskz_mov_ps(m, self.0)) }
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        // Halves, quarters, then pairs: the tree of `Avx2::sum`.
        unsafe { _mm512_reduce_add_ps(self.0) }
    }
    #[inline(always)]
    unsafe fn flush_subnormals(self) -> Self {
        unsafe {
            let bits = _mm512_castps_si512(self.0);
            let zero = _mm512_setzero_si512();
            let exponent = _mm512_and_si512(bits, _mm512_set1_epi32(0x7f80_0000));
            let magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fff_ffff));
            let keep =
                _mm512_cmpneq_epi32_mask(exponent, zero) | _mm512_cmpeq_epi32_mask(magnitude, zero);
            Avx512(_mm512_maskz_mov_ps(keep, self.0))
        }
    }
    #[inline(always)]
    unsafe fn deinterleave(self, b: Self) -> (Self, Self) {
        unsafe {
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            (
                Avx512(_mm512_permutex2var_ps(self.0, even, b.0)),
                Avx512(_mm512_permutex2var_ps(self.0, odd, b.0)),
            )
        }
    }
    #[inline(always)]
    unsafe fn interleave(self, b: Self) -> (Self, Self) {
        unsafe {
            let first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let second =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            (
                Avx512(_mm512_permutex2var_ps(self.0, first, b.0)),
                Avx512(_mm512_permutex2var_ps(self.0, second, b.0)),
            )
        }
    }
}

/// The sum of eight lanes: halves added pairwise down to one lane.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sum8(x: __m256) -> f32 {
    // SAFETY: the CPU has AVX2 (the caller's contract); registers only.
    unsafe {
        let q = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
        let d = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(d, _mm_shuffle_ps::<1>(d, d)))
    }
}

/// Two 256-bit registers: lanes `0..8` and `8..16`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx2(__m256, __m256);

/// Vector masks of the 256 bytes: lane `i` of entry `m` is all ones where bit `i` of `m` is
/// set (one load instead of four instructions per mask).
#[cfg(target_arch = "x86_64")]
static LANE_MASKS: [[i32; 8]; 256] = {
    let mut t = [[0i32; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let mut i = 0;
        while i < 8 {
            if (m >> i) & 1 == 1 {
                t[m][i] = -1;
            }
            i += 1;
        }
        m += 1;
    }
    t
};

/// The lanes of the low byte of `m` as a vector mask (all ones where set).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lanes(m: u16) -> __m256i {
    // SAFETY: the CPU has AVX2 (the caller's contract); the index is below 256, the table's
    // length, and each entry is eight i32s: the load reads a static, which nothing writes.
    unsafe { _mm256_loadu_si256(LANE_MASKS[usize::from(m & 0xff)].as_ptr().cast()) }
}

// SAFETY (every `unsafe` block in this impl): each method is an `unsafe fn` under the trait's
// contract: the CPU has the unit, and every pointer is valid for the lanes it accesses and not
// accessed by anyone else meanwhile (the caller holds the slices it came from). The blocks call
// the unit's intrinsics under exactly that contract; they make no references and cannot panic.
#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// Stores lanes `0..n` (`n < 16`) to `p..p + n` in pieces of 8, 4, 2 and 1 floats.
    #[inline(always)]
    unsafe fn store_low(self, mut n: usize, p: *mut f32) {
        // SAFETY: `p` is valid for `n` floats (the caller's contract).
        unsafe {
            let (mut q, mut v) = (p, self.0);
            if n >= 8 {
                _mm256_storeu_ps(q, v);
                (q, v, n) = (q.add(8), self.1, n - 8);
            }
            let mut x = _mm256_castps256_ps128(v);
            if n >= 4 {
                _mm_storeu_ps(q, x);
                (q, x, n) = (q.add(4), _mm256_extractf128_ps::<1>(v), n - 4);
            }
            if n >= 2 {
                _mm_storel_epi64(q.cast(), _mm_castps_si128(x));
                (q, x, n) = (q.add(2), _mm_movehl_ps(x, x), n - 2);
            }
            if n == 1 {
                _mm_store_ss(q, x);
            }
        }
    }

    #[inline(always)]
    unsafe fn mask(self) -> u16 {
        unsafe {
            (_mm256_movemask_ps(self.0) as u16 & 0xff) | ((_mm256_movemask_ps(self.1) as u16) << 8)
        }
    }

    #[inline(always)]
    unsafe fn from_array(a: &[f32; 16]) -> Self {
        unsafe {
            Avx2(
                _mm256_loadu_ps(a.as_ptr()),
                _mm256_loadu_ps(a.as_ptr().add(8)),
            )
        }
    }
}

// SAFETY (every `unsafe` block in this impl): each method is an `unsafe fn` under the trait's
// contract: the CPU has the unit, and every pointer is valid for the lanes it accesses and not
// accessed by anyone else meanwhile (the caller holds the slices it came from). The blocks call
// the unit's intrinsics under exactly that contract; they make no references and cannot panic.
#[cfg(target_arch = "x86_64")]
impl F32x16 for Avx2 {
    const ISA: Isa = Isa::Avx2;
    const REGISTERS: usize = 8;
    const FREE_MASKS: bool = false;
    const FAST_GATHER: bool = false;

    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { Avx2(_mm256_setzero_ps(), _mm256_setzero_ps()) }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        unsafe {
            let v = _mm256_set1_ps(x);
            Avx2(v, v)
        }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { Avx2(_mm256_loadu_ps(p), _mm256_loadu_ps(p.wrapping_add(8))) }
    }
    #[inline(always)]
    unsafe fn load_masked(m: u16, p: *const f32) -> Self {
        unsafe {
            if m == u16::MAX {
                return Self::load(p);
            }
            // `vmaskmovps` does not fault on the lanes it leaves out.
            Avx2(
                _mm256_maskload_ps(p, lanes(m)),
                _mm256_maskload_ps(p.wrapping_add(8), lanes(m >> 8)),
            )
        }
    }
    #[inline(always)]
    unsafe fn load_strided(m: u16, p: *const f32, stride: usize) -> Self {
        let mut a = [0.0f32; 16];
        let mut bits = m;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            // SAFETY: lane `i` is in `m`, so `p + i·stride` is valid (the caller's contract).
            a[i] = unsafe { *p.wrapping_add(i * stride) };
            bits &= bits - 1;
        }
        unsafe { Self::from_array(&a) }
    }
    #[inline(always)]
    unsafe fn load_bytes(p: *const u8) -> Self {
        unsafe {
            let b = _mm_loadu_si128(p.cast());
            Avx2(
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)),
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(b, b))),
            )
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe {
            _mm256_storeu_ps(p, self.0);
            _mm256_storeu_ps(p.wrapping_add(8), self.1);
        }
    }
    #[inline(always)]
    unsafe fn store_masked(self, m: u16, p: *mut f32) {
        unsafe {
            if m == u16::MAX {
                return self.store(p);
            }
            store_half(m, p, self.0);
            store_half(m >> 8, p.wrapping_add(8), self.1);
        }
    }
    #[inline(always)]
    unsafe fn store_compressed(self, m: u16, p: *mut f32) {
        if m == u16::MAX {
            return unsafe { self.store(p) };
        }
        if m & m.wrapping_add(1) == 0 {
            // The lowest lanes (a wide row's last vector): already packed.
            // SAFETY: `popcount(m)` floats from `p` (the caller's contract).
            return unsafe { self.store_low(m.count_ones() as usize, p) };
        }
        let mut a = [0.0f32; 16];
        unsafe { self.store(a.as_mut_ptr()) };
        let mut bits = m;
        let mut n = 0;
        while bits != 0 {
            // SAFETY: `n < popcount(m)` (the caller's contract).
            unsafe { *p.add(n) = a[bits.trailing_zeros() as usize] };
            bits &= bits - 1;
            n += 1;
        }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        unsafe {
            Avx2(
                _mm256_fmadd_ps(self.0, b.0, c.0),
                _mm256_fmadd_ps(self.1, b.1, c.1),
            )
        }
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        unsafe { Avx2(_mm256_add_ps(self.0, b.0), _mm256_add_ps(self.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        unsafe { Avx2(_mm256_sub_ps(self.0, b.0), _mm256_sub_ps(self.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        unsafe { Avx2(_mm256_mul_ps(self.0, b.0), _mm256_mul_ps(self.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        unsafe { Avx2(_mm256_div_ps(self.0, b.0), _mm256_div_ps(self.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        unsafe { Avx2(_mm256_sqrt_ps(self.0), _mm256_sqrt_ps(self.1)) }
    }
    #[inline(always)]
    unsafe fn neg(self) -> Self {
        unsafe {
            let sign = _mm256_set1_ps(-0.0);
            Avx2(_mm256_xor_ps(self.0, sign), _mm256_xor_ps(self.1, sign))
        }
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        unsafe {
            let sign = _mm256_set1_ps(-0.0);
            Avx2(
                _mm256_andnot_ps(sign, self.0),
                _mm256_andnot_ps(sign, self.1),
            )
        }
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        unsafe { Avx2(_mm256_max_ps(self.0, b.0), _mm256_max_ps(self.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn nonzero(self) -> u16 {
        unsafe {
            let zero = _mm256_setzero_ps();
            Avx2(
                _mm256_cmp_ps::<_CMP_NEQ_UQ>(self.0, zero),
                _mm256_cmp_ps::<_CMP_NEQ_UQ>(self.1, zero),
            )
            .mask()
        }
    }
    type Mask = Avx2;
    #[inline(always)]
    unsafe fn greater(self, b: Self) -> Avx2 {
        unsafe {
            Avx2(
                _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, b.0),
                _mm256_cmp_ps::<_CMP_GT_OQ>(self.1, b.1),
            )
        }
    }
    #[inline(always)]
    unsafe fn and_not(a: Avx2, b: Avx2) -> Avx2 {
        unsafe { Avx2(_mm256_andnot_ps(b.0, a.0), _mm256_andnot_ps(b.1, a.1)) }
    }
    #[inline(always)]
    unsafe fn or(a: Avx2, b: Avx2) -> Avx2 {
        unsafe { Avx2(_mm256_or_ps(a.0, b.0), _mm256_or_ps(a.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn not(a: Avx2) -> Avx2 {
        unsafe {
            let ones = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
            Avx2(_mm256_xor_ps(a.0, ones), _mm256_xor_ps(a.1, ones))
        }
    }
    #[inline(always)]
    unsafe fn select(self, m: Avx2) -> Self {
        unsafe { Avx2(_mm256_and_ps(self.0, m.0), _mm256_and_ps(self.1, m.1)) }
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        unsafe { sum8(_mm256_add_ps(self.0, self.1)) }
    }
    #[inline(always)]
    unsafe fn flush_subnormals(self) -> Self {
        unsafe { Avx2(flush_half(self.0), flush_half(self.1)) }
    }
    #[inline(always)]
    unsafe fn deinterleave(self, b: Self) -> (Self, Self) {
        // `shuffle_ps` picks lanes within each 128-bit half; `permute4x64` puts the halves'
        // 64-bit pairs in order.
        unsafe {
            (
                Avx2(
                    in_order(_mm256_shuffle_ps::<0b10_00_10_00>(self.0, self.1)),
                    in_order(_mm256_shuffle_ps::<0b10_00_10_00>(b.0, b.1)),
                ),
                Avx2(
                    in_order(_mm256_shuffle_ps::<0b11_01_11_01>(self.0, self.1)),
                    in_order(_mm256_shuffle_ps::<0b11_01_11_01>(b.0, b.1)),
                ),
            )
        }
    }
    #[inline(always)]
    unsafe fn interleave(self, b: Self) -> (Self, Self) {
        unsafe { (zip(self.0, b.0), zip(self.1, b.1)) }
    }
}

/// Stores the eight lanes of `m` (its low byte) to `p`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_half(m: u16, p: *mut f32, v: __m256) {
    // SAFETY: the caller's contract: the CPU has AVX2 and `p` is valid for the lanes of `m`,
    // which no one else accesses meanwhile; unselected lanes are not written.
    unsafe {
        match m & 0xff {
            0xff => _mm256_storeu_ps(p, v),
            0 => {}
            _ => _mm256_maskstore_ps(p, lanes(m), v),
        }
    }
}

/// `x` with its subnormal lanes (exponent zero, magnitude not) set to +0.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn flush_half(x: __m256) -> __m256 {
    // SAFETY: the CPU has AVX2 (the caller's contract); registers only.
    unsafe {
        let bits = _mm256_castps_si256(x);
        let zero = _mm256_setzero_si256();
        let exponent = _mm256_and_si256(bits, _mm256_set1_epi32(0x7f80_0000));
        let magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fff_ffff));
        let tiny = _mm256_cmpeq_epi32(exponent, zero);
        let nil = _mm256_cmpeq_epi32(magnitude, zero);
        _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_andnot_si256(nil, tiny)), x)
    }
}

/// The 64-bit pairs of a `shuffle_ps` result in order: 0, 2, 1, 3.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn in_order(s: __m256) -> __m256 {
    // SAFETY: the CPU has AVX2 (the caller's contract); registers only.
    unsafe { _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(s))) }
}

/// `l` and `r` interleaved, sixteen lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn zip(l: __m256, r: __m256) -> Avx2 {
    // SAFETY: the CPU has AVX2 (the caller's contract); registers only.
    unsafe {
        let (lo, hi) = (_mm256_unpacklo_ps(l, r), _mm256_unpackhi_ps(l, r));
        Avx2(
            _mm256_permute2f128_ps::<0x20>(lo, hi),
            _mm256_permute2f128_ps::<0x31>(lo, hi),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each operation on every supported unit, against its scalar definition.
    struct Check;

    impl Kernel for Check {
        type Output = ();
        unsafe fn run<V: F32x16>(self) {
            let a: [f32; 16] = std::array::from_fn(|i| (i as f32 * 0.7).sin() * 3.0);
            let b: [f32; 16] = std::array::from_fn(|i| (i as f32 * 1.3).cos());
            let mut wide = [0.0f32; 48];
            wide[..16].copy_from_slice(&a);
            wide[16..32].copy_from_slice(&b);
            let out = |v: V| {
                let mut o = [0.0f32; 16];
                unsafe { v.store(o.as_mut_ptr()) };
                o
            };
            unsafe {
                let (va, vb) = (V::load(a.as_ptr()), V::load(b.as_ptr()));
                let check = |got: [f32; 16], want: &dyn Fn(usize) -> f32, what: &str| {
                    for (i, g) in got.iter().enumerate() {
                        assert_eq!(g.to_bits(), want(i).to_bits(), "{what}[{i}]");
                    }
                };
                check(
                    out(va.mul_add(vb, va)),
                    &|i| a[i].mul_add(b[i], a[i]),
                    "fma",
                );
                check(out(va.div(vb)), &|i| a[i] / b[i], "div");
                let abs = a.map(f32::abs);
                check(
                    out(V::load(abs.as_ptr()).sqrt()),
                    &|i| abs[i].sqrt(),
                    "sqrt",
                );
                check(
                    out(va.max(vb)),
                    &|i| if b[i] < a[i] { a[i] } else { b[i] },
                    "max",
                );
                let low = (0..=16).map(low_bits);
                for m in [0x0f0f, 0xff00, 0x8001, 0x0ff0, 0x3fff]
                    .into_iter()
                    .chain(low)
                {
                    let on = |i: usize| m >> i & 1 == 1;
                    check(
                        out(V::load_masked(m, a.as_ptr())),
                        &|i| if on(i) { a[i] } else { 0.0 },
                        "load_masked",
                    );
                    check(
                        out(V::load_strided(m, wide.as_ptr(), 2)),
                        &|i| if on(i) { wide[2 * i] } else { 0.0 },
                        "load_strided",
                    );
                    let mut o = [f32::NAN; 17];
                    va.store_masked(m, o.as_mut_ptr());
                    check(
                        o[..16].try_into().unwrap(),
                        &|i| if on(i) { a[i] } else { f32::NAN },
                        "store_masked",
                    );
                    let mut o = [f32::NAN; 17];
                    va.store_compressed(m, o.as_mut_ptr());
                    let packed: Vec<f32> = (0..16).filter(|&i| on(i)).map(|i| a[i]).collect();
                    let n = packed.len();
                    assert_eq!(o[..n], packed[..], "store_compressed {m:#x}");
                    assert!(o[n].is_nan(), "store_compressed {m:#x} wrote past");
                    let mut idx = [u32::MAX; 17];
                    store_indices(m, 100, idx.as_mut_ptr());
                    let want: Vec<u32> =
                        (0..16).filter(|&i| on(i)).map(|i| 100 + i as u32).collect();
                    assert_eq!(idx[..n], want[..]);
                }
                // Masks in the unit's own form: `greater`, the logic, `select`.
                let gt = va.greater(vb);
                let (lt, all) = (vb.greater(va), V::or(gt, V::not(gt)));
                check(
                    out(va.select(gt)),
                    &|i| if a[i] > b[i] { a[i] } else { 0.0 },
                    "select",
                );
                check(
                    out(va.select(V::and_not(all, lt))),
                    &|i| if a[i] < b[i] { 0.0 } else { a[i] },
                    "and_not",
                );
                let nan = V::splat(f32::NAN);
                check(
                    out(va.select(nan.greater(va))),
                    &|_| 0.0,
                    "NaN is not greater",
                );
                let z: [f32; 16] =
                    std::array::from_fn(|i| [0.0, -0.0, f32::NAN, 1e-40, 2.0][i % 5]);
                let vz = V::load(z.as_ptr());
                assert_eq!(
                    vz.nonzero(),
                    (0..16).fold(0, |m, i| m | u16::from(z[i] != 0.0 || z[i].is_nan()) << i)
                );
                check(
                    out(vz.flush_subnormals()),
                    &|i| if z[i].is_subnormal() { 0.0 } else { z[i] },
                    "flush_subnormals",
                );
                let s = va.sum();
                let want: f64 = a.iter().map(|&x| x as f64).sum();
                assert!((s as f64 - want).abs() < 1e-5, "sum {s} vs {want}");
                let (even, odd) = va.deinterleave(vb);
                check(out(even), &|i| wide[2 * i], "even");
                check(out(odd), &|i| wide[2 * i + 1], "odd");
                let (first, second) = va.interleave(vb);
                let zipped = |i: usize| {
                    if i.is_multiple_of(2) {
                        a[i / 2]
                    } else {
                        b[i / 2]
                    }
                };
                check(out(first), &zipped, "first");
                check(out(second), &|i| zipped(i + 16), "second");
                // An 8×8 block of rows 11 apart into rows 9 apart.
                let src: Vec<f32> = (0..88).map(|i| i as f32).collect();
                let mut dst = vec![-1.0f32; 72];
                V::transpose8(src.as_ptr(), 11, dst.as_mut_ptr(), 9);
                for (k, &d) in dst.iter().enumerate() {
                    let (j, i) = (k / 9, k % 9);
                    let want = if i < 8 { src[i * 11 + j] } else { -1.0 };
                    assert_eq!(d, want, "transpose8 dst[{k}]");
                }
                // Whole blocks and edges: 13 × 19 and 8 × 3 matrices, wider strides, what
                // lies between the rows left alone.
                for (rows, cols, ss, ds) in [
                    (13, 19, 21, 15),
                    (8, 3, 3, 8),
                    (1, 9, 9, 1),
                    (28, 16, 16, 30),
                ] {
                    let src: Vec<f32> = (0..rows * ss).map(|i| i as f32).collect();
                    let mut dst = vec![-1.0f32; cols * ds];
                    transpose::<V>((&src, ss), (&mut dst, ds), rows, cols);
                    for (k, &d) in dst.iter().enumerate() {
                        let (c, r) = (k / ds, k % ds);
                        let want = if r < rows { src[r * ss + c] } else { -1.0 };
                        assert_eq!(d, want, "transpose {rows}x{cols} dst[{k}]");
                    }
                }
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn each_unit_says_what_its_vector_says() {
        assert_eq!(Isa::Avx512.free_masks(), <Avx512 as F32x16>::FREE_MASKS);
        assert_eq!(Isa::Avx2.free_masks(), <Avx2 as F32x16>::FREE_MASKS);
    }

    #[test]
    fn every_operation_on_every_unit() {
        for isa in crate::testing::vector_units("simd::every_operation_on_every_unit") {
            // SAFETY: the unit is supported.
            unsafe { run(isa, Check) };
        }
    }
}
