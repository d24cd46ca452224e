//! Pooling and its gradients among the library kernels, split over the planes.

use nnc_ir::Op;
use nnc_kernels::pool;

use super::{LibKernel, floats, floats_mut, planes};

impl LibKernel {
    /// Part `part` of `parts` of a max or sum pooling, or of its gradient, by windows `size`
    /// at `stride`, with this part's scratch at `scratch`.
    ///
    /// # Safety
    /// As [`LibKernel::run_part`].
    pub(super) unsafe fn pool_part(
        &self,
        base: *mut u8,
        scratch: usize,
        (part, parts): (usize, usize),
        size: [usize; 2],
        stride: [usize; 2],
    ) {
        let range = |len: usize| (len * part / parts, len * (part + 1) / parts);
        let (shape, oshape) = (|k: usize| &self.args[k].1, &self.out.1);
        // SAFETY (each call): as `run_part`'s: this part's planes of the first operand.
        let first = |lo: usize, hi: usize| unsafe { floats(base, self.args[0].0, lo, hi) };
        // SAFETY (each call): as `run_part`'s: this part's planes of the output (or, into a
        // concat's result, one sample's planes of them at a time).
        let out_part = |lo: usize, hi: usize| unsafe { floats_mut(base, self.out.0, lo, hi) };
        // SAFETY: the output gradient, an f32 operand past the first, which no one writes
        // while the kernel runs.
        let second = || unsafe { self.f32_arg(base, 1) };
        // Split over the leading planes: each part pools its own images and channels.
        let gradient = matches!(self.op, Op::MaxPoolGrad { .. } | Op::SumPoolGrad { .. });
        let input = if matches!(self.op, Op::SumPoolGrad { .. }) {
            oshape
        } else {
            shape(0)
        };
        let (lead, h, w) = planes(input);
        let win = pool::Window::new([h, w], size, stride);
        let (lo, hi) = range(lead);
        let (p, q) = (win.plane(), win.pooled());
        let room = pool::scratch_floats(&win, gradient);
        // SAFETY: the program reserved `scratch_bytes` per part at `scratch` (at least
        // this kernel's `pool::scratch_floats`, 64-byte aligned), after every tensor of
        // the plan, so disjoint from the operands and the output; no other part or
        // thread uses this part's region while it runs. Creating a slice cannot panic.
        let scratch =
            unsafe { std::slice::from_raw_parts_mut(base.add(scratch) as *mut f32, room) };
        let planes = hi - lo;
        debug_assert!(self.output_apart.is_none() || !gradient);
        match &self.op {
            Op::MaxPool { .. } | Op::SumPool { .. } => {
                let max = matches!(self.op, Op::MaxPool { .. });
                // Into a window: the planes of each sample in the part, in place.
                let (apart, c) = (self.output_apart, oshape[1]);
                let mut k = lo;
                while k < hi {
                    let (end, at) = match apart {
                        Some(apart) => (hi.min((k / c + 1) * c), k / c * apart + k % c * q),
                        None => (hi, k * q),
                    };
                    let y = out_part(at, at + (end - k) * q);
                    let x = first(k * p, end * p);
                    pool::forward(self.isa, max, x, y, end - k, &win, scratch);
                    k = end;
                }
            }
            Op::MaxPoolGrad { .. } => {
                let (x, dy) = (first(lo * p, hi * p), &second()[lo * q..hi * q]);
                let dx = out_part(lo * p, hi * p);
                pool::max_gradient(self.isa, x, dy, dx, planes, &win, scratch);
            }
            _ => {
                let (dy, dx) = (first(lo * q, hi * q), out_part(lo * p, hi * p));
                pool::sum_gradient(self.isa, dy, dx, planes, &win, scratch);
            }
        }
    }
}
