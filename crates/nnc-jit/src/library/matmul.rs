//! Contractions among the library kernels: gemm's micro-kernels, or the sparse path for a
//! first operand that is mostly zeros (image data).

use std::sync::atomic::Ordering;

use nnc_kernels::matmul::matmul;
use nnc_kernels::sparse;

use super::{LibKernel, floats};

impl LibKernel {
    /// Part `part` of `parts` of a contraction `op(A)·B` (`ta`, `tb`: whether A and B are
    /// read transposed), split by rows or by columns ([`LibKernel::parts`]), with this
    /// part's scratch at `scratch`.
    ///
    /// # Safety
    /// As [`LibKernel::run_part`].
    pub(super) unsafe fn matmul_part(
        &self,
        base: *mut u8,
        scratch: usize,
        (part, parts): (usize, usize),
        ta: bool,
        tb: bool,
    ) {
        let range = |len: usize| (len * part / parts, len * (part + 1) / parts);
        let shape = |k: usize| &self.args[k].1;
        // SAFETY: B, an f32 operand past the first, which no one writes while the kernel
        // runs (the function's contract).
        let b_floats = unsafe { self.f32_arg(base, 1) };
        // SAFETY (each call): as `run_part`'s: the first operand's rows this part reads.
        let first = |lo: usize, hi: usize| unsafe { floats(base, self.args[0].0, lo, hi) };
        // The output, only through raw pointers into this part's rows or columns.
        let out_at = base.wrapping_add(self.out.0) as *mut f32;
        let (a, b) = (shape(0), shape(1));
        let (m, k) = if ta { (a[1], a[0]) } else { (a[0], a[1]) };
        let nn = if tb { b[0] } else { b[1] };
        // Row-major A [r, c] read transposed is column-major: swap the strides.
        let (a_cs, a_rs) = if ta {
            (a[1] as isize, 1)
        } else {
            (1, a[1] as isize)
        };
        let (b_cs, b_rs) = if tb {
            (b[1] as isize, 1)
        } else {
            (1, b[1] as isize)
        };
        let (rows, cols) = if self.splits_rows() {
            (range(m), (0, nn))
        } else {
            ((0, m), range(nn))
        };
        // The rows of A this part reads: its own when it has rows of op(A) = A (a
        // fused prologue may be writing the other part's), all of Aᵀ's otherwise
        // (then no prologue runs on the other thread: see `parts`).
        let a_rows = if ta { (0, a[0]) } else { rows };
        let (lo_a, hi_a) = (a_rows.0 * a[1], a_rows.1 * a[1]);
        // The images' bytes, when A is read from them.
        let bytes = self.u8_scale.map(|scale| {
            // SAFETY: the operand's offset is the u8 parameter's, `ar · ac` bytes, and
            // `lo_a..hi_a` lies within them; a parameter is not written while a step
            // runs. Creating a slice cannot panic.
            let a =
                unsafe { std::slice::from_raw_parts(base.add(self.args[0].0 + lo_a), hi_a - lo_a) };
            (a, scale)
        });
        // This part's view of A is rows `a_rows`: its rows count from there.
        let (a_view, view_rows) = if ta {
            ([a[0], a[1]], rows)
        } else {
            ([rows.1 - rows.0, a[1]], (0, rows.1 - rows.0))
        };
        let data = match bytes {
            Some((a, scale)) => sparse::Data::U8(a, scale),
            None => sparse::Data::F32(first(lo_a, hi_a)),
        };
        if let (true, Some(isa), false) = (self.sparse, self.isa, tb) {
            // SAFETY: this part's scratch holds `scratch_bytes` of the instruction,
            // the gather's for all rows, and no one else uses it; B holds the rows and
            // columns addressed, and is not written while the kernel runs; C (the
            // output) is written only through the raw pointer, in this part's rows
            // and columns (disjoint from the other part's), so no reference spans the
            // other part's elements. Creating the scratch slice cannot panic.
            let done = unsafe {
                let scratch =
                    std::slice::from_raw_parts_mut(base.add(scratch), sparse::scratch_bytes(m, k));
                sparse::product(
                    isa,
                    data,
                    a_view,
                    ta,
                    view_rows,
                    b_floats.as_ptr(),
                    nn,
                    out_at.add(rows.0 * nn),
                    nn,
                    cols,
                    scratch,
                )
            };
            if done {
                self.sparse_runs.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        // From bytes, the GEMM reads A converted into this part's scratch (the
        // gather's, done with).
        let a_floats = match bytes {
            Some((bytes, scale)) => {
                // SAFETY: the scratch holds `4 · ar · ac` bytes for this (see
                // `scratch_bytes`), 4-byte aligned, disjoint from every operand, and
                // this part's alone; the gather's slice above is no longer used.
                let floats = unsafe {
                    std::slice::from_raw_parts_mut(base.add(scratch) as *mut f32, bytes.len())
                };
                for (x, &b) in floats.iter_mut().zip(bytes) {
                    *x = b as f32 * scale;
                }
                // Where A's row 0 would be.
                floats.as_ptr().wrapping_sub(lo_a)
            }
            None => first(lo_a, hi_a).as_ptr().wrapping_sub(lo_a),
        };
        // SAFETY: rows and columns of C, op(A) and op(B) in these ranges are inside
        // their matrices (of A, in the rows this part reads, or those converted when
        // it is read from bytes); C is written only through this raw pointer, in this
        // part's rows or columns (the other part's are disjoint), and overlaps neither
        // A nor B. gemm does not unwind into a half-written state we rely on: a panic
        // propagates through `Pool::run` after every part stopped.
        unsafe {
            matmul(
                out_at.add(rows.0 * nn + cols.0),
                nn as isize,
                a_floats.wrapping_offset(rows.0 as isize * a_rs),
                a_cs,
                a_rs,
                b_floats.as_ptr().offset(cols.0 as isize * b_cs),
                b_cs,
                b_rs,
                rows.1 - rows.0,
                cols.1 - cols.0,
                k,
                false,
            );
        }
    }
}
