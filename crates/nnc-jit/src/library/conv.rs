//! Convolutions among the library kernels: which kernel family each product runs on (the
//! cost model's choice, [`conv_cost`]), its geometry for that family, and the call into
//! [`nnc_kernels`] for a part's samples.

use nnc_ir::{Function, Inst, Op};
use nnc_kernels::phases::{self, Phases};
use nnc_kernels::store::{Skip, Store, Then};
use nnc_kernels::winograd::{self, Filters, Winograd};
use nnc_kernels::{Isa, channels, copy, direct, gemm_conv, samples};

use super::{LibKernel, dims4, floats, floats_mut};
use crate::conv_cost::{self, Lanes};
use crate::epilogue::Activation;

/// The kernel family a convolution runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernel {
    /// A direct vector kernel ([`direct`], [`channels`], [`samples`]).
    Direct(Lanes),
    /// im2col + GEMM over chunks of the samples' positions ([`gemm_conv`]).
    Gemm,
    /// Winograd's F(2×2, 3×3) ([`winograd`]).
    Winograd,
    /// A strided input gradient as a stride-1 product per phase of the stride, on the
    /// channels kernel ([`phases`]).
    Phases,
}

impl ConvKernel {
    /// Its name in reports.
    pub fn name(self) -> String {
        match self {
            ConvKernel::Direct(lanes) => format!("{} in lanes", lanes.name()),
            ConvKernel::Gemm => "im2col + gemm".to_string(),
            ConvKernel::Winograd => "winograd F(2x2, 3x3)".to_string(),
            ConvKernel::Phases => "stride phases on channels in lanes".to_string(),
        }
    }
}

/// [`LibKernel::conv_estimates`]: the kernel chosen, and each candidate's estimated seconds.
struct Estimates {
    best: ConvKernel,
    gemm: f64,
    direct: Option<(Lanes, f64)>,
    winograd: Option<f64>,
    phases: Option<f64>,
}

/// Which product a wide convolution computes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum WideOp {
    /// y = conv(x, w)
    Forward,
    /// dw = Σ dy ⋆ x
    Filter,
    /// dx = conv_transpose(dy, w)
    Input,
}

impl LibKernel {
    /// Whether the convolution `inst` of `f`, with no `pad` or `slice` folded into it, runs on
    /// a kernel that writes a cropped input gradient by the cost model: [`gemm_conv`],
    /// [`samples`], or a strided input gradient's [`phases`]. What a `slice`'s fold is decided on
    /// ([`conv_fold::PadsInside`]).
    pub fn unfolded_crops_inside(f: &Function, inst: &Inst) -> bool {
        LibKernel::unfolded(f, inst).crops_inside()
    }

    /// Whether the convolution `inst` of `f`, with no `pad` folded into it, runs on a kernel
    /// that pads its input itself by the cost model: [`gemm_conv`] (taps outside read zeros)
    /// or the channels kernels (they pad a few samples at a time). What a `pad`'s fold is
    /// decided on.
    pub fn unfolded_pads_inside(f: &Function, inst: &Inst) -> bool {
        let k = LibKernel::unfolded(f, inst);
        k.conv_product().is_some_and(|op| {
            let samples = k.part_samples(op)[0];
            matches!(
                k.conv_estimates(op, samples).best,
                ConvKernel::Gemm | ConvKernel::Direct(Lanes::Channels) | ConvKernel::Winograd
            )
        })
    }

    /// Whether the convolution `inst` of `f` (a forward product or filter gradient), with no
    /// `pad` folded into it, runs on positions in the lanes by the cost model, which read
    /// samples apart: whether its input may be a window of a concat's result
    /// ([`crate::window::ReadsApart`]). (A convolution so placed runs on positions whatever
    /// the threads, like a fold.)
    pub fn unfolded_reads_apart(f: &Function, inst: &Inst) -> bool {
        let k = LibKernel::unfolded(f, inst);
        let Some(op @ (WideOp::Forward | WideOp::Filter)) = k.conv_product() else {
            return false;
        };
        let positions = ConvKernel::Direct(Lanes::Positions);
        k.positions_apply(op)
            && k.part_samples(op)
                .into_iter()
                .all(|n| k.conv_estimates(op, n).best == positions)
    }

    /// Whether this convolution runs on a kernel that writes a cropped input gradient by the
    /// cost model (whatever the CPU: what folds depend on).
    fn crops_inside(&self) -> bool {
        self.conv_product().is_some_and(|op| {
            let samples = self.part_samples(op)[0];
            matches!(
                self.conv_estimates(op, samples).best,
                ConvKernel::Gemm | ConvKernel::Phases | ConvKernel::Direct(Lanes::Samples)
            )
        })
    }

    /// A convolution (or one of its gradients) for samples `lo..hi` on the kernel
    /// [`LibKernel::conv_kernel`] picks for a part of that many samples.
    ///
    /// `x` is the first operand's samples `lo..hi`; `out` the part's output: samples `lo..hi`
    /// of the result, or the whole (partial) filter gradient.
    ///
    /// # Safety
    /// As [`LibKernel::run_part`], for operands past the first and this part's scratch.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn convolution(
        &self,
        base: *mut u8,
        scratch: usize,
        lo: usize,
        hi: usize,
        op: WideOp,
        x: &[f32],
        out: &mut [f32],
    ) {
        let kernel = self.conv_kernel(op, hi - lo);
        // SAFETY: forwarded.
        unsafe {
            match (self.isa, kernel) {
                (Some(isa), ConvKernel::Phases) => {
                    self.phases_conv(isa, base, scratch, hi - lo, x, out)
                }
                (Some(isa), ConvKernel::Direct(Lanes::Samples)) => {
                    self.samples_conv(isa, base, scratch, hi - lo, x, out)
                }
                (Some(isa), ConvKernel::Direct(lanes)) => {
                    self.direct_conv(isa, lanes, base, scratch, (lo, hi), op, x, out)
                }
                (Some(isa), ConvKernel::Winograd) => {
                    self.winograd_conv(isa, base, scratch, (lo, hi), op, x, out)
                }
                _ => self.gemm_conv(base, scratch, (lo, hi), op, x, out),
            }
        }
        // The activation after the bias, where the kernel did not apply it as it stored.
        if let (Some(a), Some(isa), WideOp::Forward) = (self.then, self.isa, op)
            && kernel != ConvKernel::Direct(Lanes::Positions)
        {
            // SAFETY: forwarded.
            let (then, scaled) = unsafe { self.activation(base, a, (lo, hi)) };
            let [_, o, oh, ow] = dims4(&self.out.1);
            then.apply(isa, out, (hi - lo, o, oh * ow), scaled);
        }
    }

    /// The activation `a` for samples `lo..hi`: its bias, and the part's range of `scale·t`
    /// where that is stored apart from `t`.
    ///
    /// # Safety
    /// As [`LibKernel::run_part`]: `base` is the arena the kernel was planned in; `scale·t`,
    /// where stored apart, is an f32 tensor of the output's shape at its planned offset
    /// (recognised with the epilogue), which this part alone writes in its samples' range (as
    /// the epilogue loop it replaces did), and the slice is the only reference into it.
    unsafe fn activation<'a>(
        &self,
        base: *mut u8,
        a: Activation,
        (lo, hi): (usize, usize),
    ) -> (Then<'a>, Option<&'a mut [f32]>) {
        let o = self.out.1[1];
        let per = self.out.1[1..].iter().product::<usize>();
        // SAFETY: the bias is an operand of `o` floats (checked when it was recognised) no
        // one writes while the kernel runs; `scale·t` as the contract says.
        unsafe {
            let bias = std::slice::from_raw_parts(base.add(a.bias) as *const f32, o);
            // `s·t` apart only where `t` is stored too (else it is the output itself).
            let apart = a.t.and(a.scaled);
            let scaled = apart.map(|at| floats_mut(base, at, lo * per, hi * per));
            let then = Then {
                bias,
                slope: a.slope,
                f: a.f,
                scale: a.scale,
            };
            (then, scaled)
        }
    }

    /// The convolution's shape for [`gemm_conv`]: the forward product's, whichever product
    /// this kernel computes.
    fn gemm_geometry(&self, op: WideOp) -> gemm_conv::Geometry {
        let [c, h, w, o, kh, kw] = self.conv_geometry(op);
        let (stride, padding) = match &self.op {
            Op::Conv2d { stride, padding }
            | Op::Conv2dGradFilter {
                stride, padding, ..
            }
            | Op::Conv2dGradInput {
                stride, padding, ..
            } => (*stride, *padding),
            other => unreachable!("`{}` is no convolution", other.name()),
        };
        // The output positions: the result's (forward), else the first operand's.
        let y = if op == WideOp::Forward {
            &self.out.1
        } else {
            &self.args[if op == WideOp::Filter { 1 } else { 0 }].1
        };
        gemm_conv::Geometry {
            c,
            h,
            w,
            o,
            kh,
            kw,
            stride,
            pad: [padding[0] + self.conv_pad[0], padding[1] + self.conv_pad[1]],
            oh: y[2],
            ow: y[3],
        }
    }

    /// [`LibKernel::convolution`] on [`gemm_conv`].
    ///
    /// # Safety
    /// As [`LibKernel::run_part`], for operands past the first and this part's scratch,
    /// which holds what `scratch_bytes` reserved for [`gemm_conv`].
    unsafe fn gemm_conv(
        &self,
        base: *mut u8,
        scratch: usize,
        (lo, hi): (usize, usize),
        op: WideOp,
        x: &[f32],
        out: &mut [f32],
    ) {
        // SAFETY: the operands are f32 tensors at their planned offsets; used only for the
        // second, which no one writes while the kernel runs.
        let arg = |k: usize| unsafe { self.f32_arg(base, k) };
        let g = self.gemm_geometry(op);
        let nb = hi - lo;
        // SAFETY: `scratch_bytes` reserved `gemm_conv`'s scratch for the most samples a part
        // of this kernel has (`most_part_samples`, at the part count it runs with), which
        // bounds `nb` (the scratch grows with the samples), at `scratch`, this part's alone.
        let scratch = unsafe { self.part_scratch(base, scratch, g.scratch_floats(nb)) };
        match op {
            WideOp::Forward => {
                // SAFETY: forwarded.
                let store = unsafe { self.forward_store(base, (lo, hi), g.o, g.positions()) };
                gemm_conv::forward(self.isa, &g, nb, x, arg(1), store, out, scratch)
            }
            WideOp::Input => gemm_conv::input_gradient(&g, nb, x, arg(1), out, scratch),
            WideOp::Filter => {
                let dy = &arg(1)[lo * g.o * g.positions()..hi * g.o * g.positions()];
                gemm_conv::filter_gradient(self.isa, &g, nb, x, dy, out, scratch)
            }
        }
    }

    /// Which direct kernel a stride-1 convolution's product `op` could run on for a part of
    /// `samples` samples, by what its vectors' lanes hold; none where it cannot (a stride, a
    /// folded `pad` or `slice`, a filter too wide for [`direct::filter`], planes too large,
    /// or no samples). The op's own padding is a padded copy of the planes. Whatever the CPU
    /// (so that reports do not depend on it): without a vector unit,
    /// [`LibKernel::convolution`] runs [`gemm_conv`] instead.
    fn lanes(&self, op: WideOp, samples: usize) -> Option<Lanes> {
        if self.conv_product().is_none() || samples == 0 {
            return None;
        }
        let g = self.direct_geometry(op);
        // The channels kernels pad the input themselves, with any low and high pads (a folded
        // `pad`'s included), where the padded planes hold it.
        let [c, h, w, ..] = self.conv_geometry(op);
        let (padded, low) = (self.padded_planes(op), self.gemm_geometry(op).pad);
        let within = low[0] + h <= padded[0] && low[1] + w <= padded[1] && c > 0;
        if matches!(op, WideOp::Forward | WideOp::Filter) && channels::suits(&g) && within {
            return Some(Lanes::Channels);
        }
        // Samples in the lanes for an input gradient whose part fills them; at a stride also
        // for fewer samples, where the cost model weighs the idle lanes against the phases'
        // and gemm's overheads (stride2's batch of 16: eight samples a part).
        let strided = stride_of(&self.op) != [1, 1];
        if op == WideOp::Input
            && (samples::suits(samples) || strided)
            && self.samples_geometry().is_some()
        {
            return Some(Lanes::Samples);
        }
        self.positions_apply(op).then_some(Lanes::Positions)
    }

    /// Whether [`direct`]'s kernels (positions in the lanes; samples for the input gradient)
    /// take this convolution's product `op`: stride 1 (not the channels kernels' strides),
    /// no folded `pad` or `slice` (they read and write padded planes), a filter gradient's
    /// filter at most [`direct::MAX_FILTER_WIDTH`] wide, planes that fit.
    fn positions_apply(&self, op: WideOp) -> bool {
        if self.folded {
            return false;
        }
        // The filter's width: the result's last axis for the filter gradient.
        let kw = self.out.1.last().copied().unwrap_or(0);
        let filter_too_wide = op == WideOp::Filter && kw > direct::MAX_FILTER_WIDTH;
        let g = self.direct_geometry(op);
        let fits = g.fits() && (op != WideOp::Input || g.input_gradient().fits());
        stride_of(&self.op) == [1, 1] && !filter_too_wide && fits
    }

    /// The kernel a part of `samples` samples of this convolution's product `op` runs on:
    /// the cheaper by [`conv_cost`]'s estimates of the direct kernel (where one applies) and
    /// [`gemm_conv`].
    /// Without a vector unit (or with the portable kernels asked for), [`gemm_conv`].
    fn conv_kernel(&self, op: WideOp, samples: usize) -> ConvKernel {
        match self.isa {
            Some(_) if self.input_apart.is_some() => ConvKernel::Direct(Lanes::Positions),
            Some(_) => self.conv_estimates(op, samples).best,
            None => ConvKernel::Gemm,
        }
    }

    /// [`LibKernel::conv_kernel`] with the candidates' estimated seconds: [`gemm_conv`]'s, the
    /// direct kernel's and [`winograd`]'s, where they apply (nothing allocated: it runs in
    /// every call).
    fn conv_estimates(&self, op: WideOp, samples: usize) -> Estimates {
        let g = self.gemm_geometry(op);
        let product = match op {
            WideOp::Forward => conv_cost::Product::Forward,
            WideOp::Filter => conv_cost::Product::Filter,
            WideOp::Input => conv_cost::Product::Input,
        };
        let gemm = conv_cost::gemm_seconds(&g, product, samples);
        let estimate = |lanes| {
            (
                lanes,
                conv_cost::direct_seconds(&g, product, lanes, samples),
            )
        };
        // The direct kernel that suits best; for one input channel also positions in the
        // lanes (which every plain geometry the others take suits too), where that is
        // estimated cheaper: such a layer has only `kh·kw` products per position and output
        // channel, too few to pay for moving each position's vector of channels between
        // lanes and planes. (With more input channels the estimate of positions in the lanes
        // is too low: LeNet-5's C3 runs faster on channels, `channels::time_c3`.)
        let direct = self.lanes(op, samples).map(|lanes| {
            let suited = estimate(lanes);
            let positions = g.c == 1 && lanes == Lanes::Channels && self.positions_apply(op);
            match positions.then(|| estimate(Lanes::Positions)) {
                Some(positions) if positions.1 < suited.1 => positions,
                _ => suited,
            }
        });
        let winograd = (samples > 0)
            .then(|| self.winograd_geometry(op))
            .flatten()
            .map(|w| conv_cost::winograd_seconds(&w, samples));
        let phases = (samples > 0)
            .then(|| self.phases())
            .flatten()
            .map(|p| conv_cost::phases_seconds(&p, samples));
        let mut best = (ConvKernel::Gemm, gemm);
        if let Some((lanes, t)) = direct
            && t < best.1
        {
            best = (ConvKernel::Direct(lanes), t);
        }
        if let Some(t) = winograd
            && t < best.1
        {
            best = (ConvKernel::Winograd, t);
        }
        if let Some(t) = phases
            && t < best.1
        {
            best = (ConvKernel::Phases, t);
        }
        Estimates {
            best: best.0,
            gemm,
            direct,
            winograd,
            phases,
        }
    }

    /// The geometry of this convolution's product `op` for [`winograd`], where that kernel
    /// takes it: a 3×3 filter at stride 1, padded by at most 2 above and left; the forward
    /// product and the filter gradient (a folded `pad`'s rows included), the input gradient
    /// (nothing folded).
    pub(super) fn winograd_geometry(&self, op: WideOp) -> Option<Winograd> {
        self.conv_product()?;
        let g = self.gemm_geometry(op);
        if [g.kh, g.kw] != [3, 3] || g.stride != [1, 1] {
            return None;
        }
        match op {
            WideOp::Forward | WideOp::Filter => {
                Winograd::new(g.c, [g.h, g.w], g.o, [g.oh, g.ow], g.pad)
            }
            WideOp::Input if !self.folded => {
                Winograd::input_gradient(g.c, [g.h, g.w], g.o, [g.oh, g.ow], g.pad)
            }
            _ => None,
        }
    }

    /// The geometry of this convolution's input gradient for [`phases`], where it is strided
    /// and that kernel takes it (a folded `slice`'s start as padding included).
    pub(super) fn phases(&self) -> Option<Phases> {
        if stride_of(&self.op) == [1, 1] {
            return None;
        }
        Phases::of(self.samples_geometry()?)
    }

    /// The geometry of this convolution's input gradient for [`samples`] (any stride, a
    /// folded `slice`'s start as padding included).
    pub(super) fn samples_geometry(&self) -> Option<samples::Geometry> {
        if self.conv_product()? != WideOp::Input {
            return None;
        }
        let g = self.gemm_geometry(WideOp::Input);
        samples::Geometry::new(
            g.c,
            [g.h, g.w],
            g.o,
            [g.oh, g.ow],
            [g.kh, g.kw],
            g.stride,
            g.pad,
        )
    }

    /// A convolution's input for samples `lo..hi` (from `first`, the first operand's floats
    /// in a range): adjacent, or [`LibKernel::input_apart`] apart, from the first sample's
    /// start to the last one's end.
    pub(super) fn input_samples<'a>(
        &self,
        first: impl Fn(usize, usize) -> &'a [f32],
        lo: usize,
        hi: usize,
    ) -> &'a [f32] {
        let per: usize = self.args[0].1[1..].iter().product();
        match self.input_apart {
            Some(apart) if hi > lo => first(lo * apart, (hi - 1) * apart + per),
            Some(_) => first(0, 0),
            None => first(lo * per, hi * per),
        }
    }

    /// Which product this kernel computes, if a convolution.
    fn conv_product(&self) -> Option<WideOp> {
        Some(match &self.op {
            Op::Conv2d { .. } => WideOp::Forward,
            Op::Conv2dGradFilter { .. } => WideOp::Filter,
            Op::Conv2dGradInput { .. } => WideOp::Input,
            _ => return None,
        })
    }

    /// The samples of each part this convolution runs as (one entry when not split).
    fn part_samples(&self, op: WideOp) -> Vec<usize> {
        // Samples are the first operand's leading axis, the result's for the input gradient.
        let n = if op == WideOp::Input {
            self.out.1[0]
        } else {
            self.args[0].1[0]
        };
        let parts = self.part_count();
        (0..parts)
            .map(|p| n * (p + 1) / parts - n * p / parts)
            .collect()
    }

    /// `floats` of this part's scratch at byte offset `scratch` of the arena at `base`, after
    /// [`LibKernel::check_scratch`].
    ///
    /// # Safety
    /// `scratch` is the part's scratch region (as `run_part` passes it, 64-byte aligned),
    /// which no one else uses while the part runs, and the returned slice is the only
    /// reference into it while it lives.
    unsafe fn part_scratch<'a>(
        &self,
        base: *mut u8,
        scratch: usize,
        floats: usize,
    ) -> &'a mut [f32] {
        self.check_scratch(floats);
        // SAFETY: the caller's contract; the region holds `floats` (checked above, so a
        // wrongly sized reservation stops here instead of reaching into the next part's).
        unsafe { std::slice::from_raw_parts_mut(base.add(scratch) as *mut f32, floats) }
    }

    /// Panics unless `floats` fit a part's scratch: checked before a kernel forms a slice of
    /// them there, so that a scratch sized wrongly stops the step instead of reaching into
    /// the next part's.
    fn check_scratch(&self, floats: usize) {
        assert!(
            4 * floats <= self.scratch_part,
            "{}: {} bytes of scratch for a part's {} reserved",
            self.op.name(),
            4 * floats,
            self.scratch_part
        );
    }

    /// The most samples a part of this convolution has (its batch over its parts, rounded
    /// up); for other kernels their first operand's leading extent (unused).
    pub fn most_part_samples(&self) -> usize {
        let n = self
            .args
            .first()
            .and_then(|a| a.1.first())
            .copied()
            .unwrap_or(1);
        n.div_ceil(self.part_count())
    }

    /// The kernel this convolution runs on in each part (one entry when the parts agree), for
    /// `nnc bench`'s profile; empty for other kernels.
    pub fn conv_kernels(&self) -> Vec<ConvKernel> {
        let Some(op) = self.conv_product() else {
            return Vec::new();
        };
        let mut kernels: Vec<ConvKernel> = self
            .part_samples(op)
            .into_iter()
            .map(|n| self.conv_kernel(op, n))
            .collect();
        kernels.dedup();
        kernels
    }

    /// For `nnc ir --stage kernels`: the kernel a convolution's first part runs on and the
    /// candidates' estimated times, e.g. `gemm (est. gemm 1.20 ms, positions in lanes 2.31
    /// ms)`; `None` for other kernels.
    pub fn conv_choice(&self) -> Option<String> {
        let op = self.conv_product()?;
        let samples = self.part_samples(op)[0];
        let Estimates {
            best,
            gemm,
            direct,
            winograd,
            phases,
        } = self.conv_estimates(op, samples);
        let mut list = vec![format!("{} {:.3} ms", ConvKernel::Gemm.name(), gemm * 1e3)];
        if let Some((lanes, t)) = direct {
            list.push(format!(
                "{} {:.3} ms",
                ConvKernel::Direct(lanes).name(),
                t * 1e3
            ));
        }
        if let Some(t) = winograd {
            list.push(format!("{} {:.3} ms", ConvKernel::Winograd.name(), t * 1e3));
        }
        if let Some(t) = phases {
            list.push(format!("{} {:.3} ms", ConvKernel::Phases.name(), t * 1e3));
        }
        let (best, why) = match self.isa {
            Some(_) if self.input_apart.is_some() => (
                ConvKernel::Direct(Lanes::Positions),
                "its input in place in a concat; estimated",
            ),
            Some(_) if self.folded => (best, "a pad or slice folded in; estimated"),
            Some(_) => (best, "estimated"),
            None => (ConvKernel::Gemm, "no vector unit; estimated"),
        };
        Some(format!(
            "{} ({why} per part of {samples} samples: {})",
            best.name(),
            list.join(", ")
        ))
    }

    /// Operand `k` as floats.
    ///
    /// # Safety
    /// `base` is the arena this kernel was planned in, operand `k` is an f32 tensor, and the
    /// slice is used only while the kernel runs (no one writes the operand meanwhile).
    pub(super) unsafe fn f32_arg<'a>(&self, base: *mut u8, k: usize) -> &'a [f32] {
        let (o, s, _) = &self.args[k];
        // SAFETY: the caller's contract; offsets are 64-byte aligned.
        unsafe { std::slice::from_raw_parts(base.add(*o) as *const f32, s.iter().product()) }
    }

    /// `[c, h, w, o, kh, kw]` of the forward convolution behind `op`: the input planes are
    /// the first operand (the result, for the input gradient), the filters the second (the
    /// result, for the filter gradient).
    fn conv_geometry(&self, op: WideOp) -> [usize; 6] {
        let (xs, ws) = match op {
            WideOp::Forward => (&self.args[0].1, &self.args[1].1),
            WideOp::Filter => (&self.args[0].1, &self.out.1),
            WideOp::Input => (&self.out.1, &self.args[1].1),
        };
        let ([_, c, h, w], [o, _, kh, kw]) = (dims4(xs), dims4(ws));
        [c, h, w, o, kh, kw]
    }

    /// [`LibKernel::convolution`] on the direct kernels ([`direct`]).
    ///
    /// # Safety
    /// As [`LibKernel::gemm_conv`]; the scratch space holds what `scratch_bytes` reserved for
    /// the direct kernels, and the CPU supports `isa`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn direct_conv(
        &self,
        isa: Isa,
        lanes: Lanes,
        base: *mut u8,
        scratch: usize,
        (lo, hi): (usize, usize),
        op: WideOp,
        x: &[f32],
        out: &mut [f32],
    ) {
        debug_assert!(
            self.residual.is_none() || (op, lanes) == (WideOp::Forward, Lanes::Channels),
            "a residual sum runs on gemm_conv and the channels kernel only"
        );
        // SAFETY: the operands are f32 tensors at their planned offsets; used only for the
        // second, which no one writes while the kernel runs.
        let arg = |k: usize| unsafe { self.f32_arg(base, k) };
        let [c, h, w, o, ..] = self.conv_geometry(op);
        let g = self.direct_geometry(op);
        let pad = direct_padding(&self.op);
        let (nb, out_sample) = (hi - lo, o * g.oh() * g.ow());
        // The planes padded by the op's padding: the input's, or the input gradient's before
        // it is cropped; first in the scratch, the kernel's buffers after them. The channels
        // kernels pad a few samples at a time there instead (any low and high pads), where
        // they stay in cache.
        let planes = [nb * c, h, w];
        let padded_planes = [nb * c, h + 2 * pad[0], w + 2 * pad[1]];
        let pads_itself = lanes == Lanes::Channels && self.padded_planes(op) != [h, w];
        let floats = match lanes {
            Lanes::Channels if pads_itself => channels::padded_floats(&g, nb),
            Lanes::Channels => 0,
            _ => padded_floats(nb * c, [padded_planes[1], padded_planes[2]], pad),
        };
        // SAFETY: `scratch_bytes` reserved the padded planes (or the channels kernels' space
        // to pad in) and then the direct kernels' buffers for the most samples a part has
        // (`most_part_samples`, which bounds `nb`; both grow with the samples) at `scratch`,
        // in floats from there, this part's alone: the padded planes and each arm's one
        // buffer are disjoint.
        self.check_scratch(floats);
        let padded =
            unsafe { std::slice::from_raw_parts_mut(base.add(scratch) as *mut f32, floats) };
        let (scratch, padded_floats) = (scratch + 4 * floats, floats);
        // SAFETY: as above.
        let buffer = |floats: usize| unsafe {
            self.check_scratch(padded_floats + floats);
            std::slice::from_raw_parts_mut(base.add(scratch) as *mut f32, floats)
        };
        let low = [0, pad[0], pad[1]];
        let mut pad_space = None;
        let (x, out, crop) = match op {
            _ if floats == 0 => (x, out, None),
            WideOp::Forward | WideOp::Filter if lanes == Lanes::Channels => {
                pad_space = Some(padded);
                (x, out, None)
            }
            // Samples in the lanes crop as they store.
            WideOp::Input if lanes == Lanes::Samples => (x, out, None),
            WideOp::Input => (x, &mut padded[..], Some(out)),
            WideOp::Forward | WideOp::Filter => {
                match self.input_apart {
                    None => copy::pad(Some(isa), x, &planes, padded, &padded_planes, &low),
                    // A sample at a time: the input's lie apart.
                    Some(apart) => {
                        let (small, big) = ([c, h, w], [c, padded_planes[1], padded_planes[2]]);
                        let per = big.iter().product::<usize>();
                        for (b, padded) in padded.chunks_exact_mut(per).take(nb).enumerate() {
                            let x = &x[b * apart..][..c * h * w];
                            copy::pad(Some(isa), x, &small, padded, &big, &low);
                        }
                    }
                }
                (&padded[..], out, None)
            }
        };
        // The geometry the input is read with: its samples apart where they are (not
        // copied).
        let gx = match self.input_apart {
            Some(apart) if floats == 0 => g.samples_apart(apart),
            _ => g,
        };
        let input = match pad_space {
            Some(scratch) => channels::Input::Padded {
                x,
                planes: [h, w],
                low: self.gemm_geometry(op).pad,
                scratch,
            },
            None => channels::Input::Planes(x),
        };
        match (op, lanes) {
            (WideOp::Forward, Lanes::Channels) => {
                let wt = buffer(channels::filter_floats(&g));
                channels::transposed_filters(&g, arg(1), wt);
                // SAFETY: forwarded.
                let store = unsafe { self.forward_store(base, (lo, hi), o, g.oh() * g.ow()) };
                channels::forward(isa, &g, nb, input, wt, store, out);
            }
            (WideOp::Forward, _) => {
                // On AVX2, from shifted copies of the input's columns where the filter
                // gradient's layout has them (not C1, whose blank rows the plain layout
                // skips): every lane real, so no masked loads, which cost more there
                // (`time_lenet_shapes`: C3's forward 316 → 255 µs for 16 samples, the copying
                // included, before C3 moved to `channels`). AVX-512's masked loads cost
                // nothing extra: there the copying did not pay.
                let (s, copies) = g.filter_layout();
                let copies = if isa.free_masks() { 0 } else { copies };
                let (pw, xs) =
                    buffer(g.o_pad() * g.taps() + nb * copies).split_at_mut(g.o_pad() * g.taps());
                // Weights padded with zero rows to whole tiles, unless they already are.
                let weights = if o == g.o_pad() {
                    arg(1)
                } else {
                    pw[..o * g.taps()].copy_from_slice(arg(1));
                    pw[o * g.taps()..].fill(0.0);
                    &*pw
                };
                // SAFETY: the bias offset holds `o` floats (checked when it was recognised),
                // an operand no one writes while the kernel runs.
                let bias = self
                    .bias_relu
                    .map(|at| unsafe { std::slice::from_raw_parts(base.add(at) as *const f32, o) });
                let (g, x) = if copies > 0 {
                    direct::shift_columns(isa, &gx, nb, x, xs);
                    (&s, &*xs)
                } else {
                    (&gx, x)
                };
                match self.then {
                    Some(a) => {
                        // SAFETY: forwarded.
                        let (then, scaled) = unsafe { self.activation(base, a, (lo, hi)) };
                        direct::forward_then(isa, g, nb, x, weights, then, out, scaled)
                    }
                    None => direct::forward(isa, g, nb, x, weights, bias, out),
                }
            }
            (WideOp::Filter, Lanes::Channels) => {
                let dy = &arg(1)[lo * out_sample..][..nb * out_sample];
                let scratch = buffer(channels::scratch_floats(&g));
                channels::filter(isa, &g, nb, (input, dy), scratch, out);
            }
            (WideOp::Filter, _) => {
                let (s, copies) = g.filter_layout();
                let per = direct::filter_rows(&s) * s.wide_plane();
                let (wide, xs) = buffer(nb * (per + copies)).split_at_mut(nb * per);
                let dy = arg(1);
                for (b, wide) in wide.chunks_exact_mut(per).enumerate() {
                    direct::wide_gradient(&s, &dy[(lo + b) * out_sample..][..out_sample], wide);
                }
                if copies > 0 {
                    direct::shift_columns(isa, &gx, nb, x, xs);
                    direct::filter(isa, &s, nb, xs, wide, out);
                } else {
                    direct::filter(isa, &gx, nb, x, wide, out);
                }
            }
            (WideOp::Input, Lanes::Samples) => unreachable!("run by `samples_conv`"),
            (WideOp::Input, _) => {
                let t = g.input_gradient();
                let per = o * t.plane();
                let (planes, wt) = buffer(nb * per + t.o_pad() * t.taps()).split_at_mut(nb * per);
                direct::flipped_filters(&g, arg(1), wt);
                for (planes, dy) in planes.chunks_exact_mut(per).zip(x.chunks_exact(out_sample)) {
                    direct::gradient_planes(&g, dy, planes);
                }
                direct::forward(isa, &t, nb, planes, wt, None, out);
            }
        }
        if let Some(dx) = crop {
            copy::slice(Some(isa), out, &padded_planes, dx, &planes, &low);
        }
    }

    /// [`LibKernel::convolution`] on [`phases`]: a strided input gradient of `samples` samples,
    /// `dy` their output gradient, `dx` their input gradient.
    ///
    /// # Safety
    /// As [`LibKernel::gemm_conv`]; the scratch space holds what `scratch_bytes` reserved for
    /// [`phases`], and the CPU supports `isa`.
    unsafe fn phases_conv(
        &self,
        isa: Isa,
        base: *mut u8,
        scratch: usize,
        samples: usize,
        dy: &[f32],
        dx: &mut [f32],
    ) {
        let g = self.phases().expect("chosen only where the phases apply");
        // SAFETY: `scratch_bytes` reserved the phases' scratch for the most samples a part has
        // (`most_part_samples`, which bounds `samples`; it grows with them) at `scratch`,
        // this part's alone; the filters are an f32 operand
        // that no one writes while the kernel runs.
        let (scratch, w) = unsafe {
            let floats = g.scratch_floats(samples);
            (
                self.part_scratch(base, scratch, floats),
                self.f32_arg(base, 1),
            )
        };
        phases::input_gradient(isa, &g, samples, (dy, w), scratch, dx);
    }

    /// [`LibKernel::convolution`] on [`samples`]: an input gradient of `samples` samples, `dy`
    /// their output gradient, `dx` their input gradient.
    ///
    /// # Safety
    /// As [`LibKernel::gemm_conv`]; the scratch space holds what `scratch_bytes` reserved for
    /// [`samples`], and the CPU supports `isa`.
    unsafe fn samples_conv(
        &self,
        isa: Isa,
        base: *mut u8,
        scratch: usize,
        samples: usize,
        dy: &[f32],
        dx: &mut [f32],
    ) {
        let g = self
            .samples_geometry()
            .expect("chosen only where the samples kernel applies");
        // SAFETY: `scratch_bytes` reserved the kernel's scratch (a group of sixteen samples
        // at a time, whatever the part's) at `scratch`, this part's alone; the filters are an
        // f32 operand that no one writes while the kernel runs.
        let (scratch, w) = unsafe {
            let floats = g.scratch_floats();
            (
                self.part_scratch(base, scratch, floats),
                self.f32_arg(base, 1),
            )
        };
        samples::input_gradient(isa, &g, samples, (dy, w), scratch, dx);
    }

    /// [`LibKernel::convolution`] on [`winograd`]: the forward product, the input gradient
    /// (the forward product of the output gradient with the filters flipped) or the filter
    /// gradient.
    ///
    /// # Safety
    /// As [`LibKernel::gemm_conv`]; the scratch space holds what `scratch_bytes` reserved for
    /// [`winograd`], and the CPU supports `isa`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn winograd_conv(
        &self,
        isa: Isa,
        base: *mut u8,
        scratch: usize,
        (lo, hi): (usize, usize),
        op: WideOp,
        x: &[f32],
        out: &mut [f32],
    ) {
        let g = self
            .winograd_geometry(op)
            .expect("winograd is chosen only where it applies");
        let floats = winograd_floats(&g, op);
        // SAFETY: `scratch_bytes` reserved `floats` for this geometry at `scratch`, this
        // part's alone.
        let buffer = unsafe { self.part_scratch(base, scratch, floats) };
        // SAFETY: the filters (the output gradient, for the filter gradient) are an f32
        // operand no one writes while the kernel runs.
        let arg = unsafe { self.f32_arg(base, 1) };
        let (layout, store) = match op {
            WideOp::Filter => {
                let per = g.o() * g.positions();
                let dy = &arg[lo * per..hi * per];
                winograd::filter(isa, &g, hi - lo, (x, dy), buffer, out);
                return;
            }
            // SAFETY: forwarded.
            WideOp::Forward => (Filters::Plain, unsafe {
                self.forward_store(base, (lo, hi), g.o(), g.positions())
            }),
            WideOp::Input => (Filters::Flipped, Store::Plain),
        };
        let (u, rest) = buffer.split_at_mut(winograd::filter_floats(&g));
        winograd::transformed_filters(&g, arg, layout, u);
        winograd::forward(isa, &g, hi - lo, (x, u), store, rest, out);
    }

    /// What a forward product of samples `lo..hi` (`o` planes of `positions` each) does as it
    /// stores: its bias and ReLU, and a residual branch's sum, where they were recognised.
    ///
    /// # Safety
    /// As [`LibKernel::run_part`]: `base` is the arena the kernel was planned in.
    unsafe fn forward_store<'a>(
        &self,
        base: *mut u8,
        (lo, hi): (usize, usize),
        o: usize,
        positions: usize,
    ) -> Store<'a> {
        // SAFETY: the bias offset holds `o` floats (checked when it was recognised), an
        // operand no one writes while the kernel runs.
        let bias = self
            .bias_relu
            .map(|at| unsafe { std::slice::from_raw_parts(base.add(at) as *const f32, o) });
        let per = o * positions;
        match (bias, self.residual) {
            (None, _) => Store::Plain,
            (Some(b), None) => Store::BiasRelu(b),
            (Some(b), Some(at)) if at == self.out.0 => Store::BiasResidualRelu(b, Skip::InPlace),
            // SAFETY: the branch is an f32 tensor of the result's shape at its aligned offset
            // (checked when it was recognised), a buffer other than the result's (the plan's
            // buffers are equal or disjoint); this part views only its own samples, which no
            // one writes while it runs (a prologue on this thread wrote them before, if the
            // branch is the first operand). Creating a slice cannot panic.
            (Some(b), Some(at)) => Store::BiasResidualRelu(b, unsafe {
                Skip::Operand(floats(base, at, lo * per, hi * per))
            }),
        }
    }

    /// The direct kernels' geometry of `op`'s forward convolution: over the input planes
    /// padded by the op's padding.
    fn direct_geometry(&self, op: WideOp) -> direct::Conv {
        let [c, _, _, o, kh, kw] = self.conv_geometry(op);
        let planes = self.padded_planes(op);
        direct::Conv::forward_strided(c, planes, o, [kh, kw], stride_of(&self.op))
    }

    /// The rows and columns of `op`'s input planes with their padding (the op's, and a
    /// folded `pad`'s): what its windows cover, `(oh − 1)·sh + kh` down and likewise
    /// across, and the input's rows and columns past the last window, which none reads.
    fn padded_planes(&self, op: WideOp) -> [usize; 2] {
        let g = self.gemm_geometry(op);
        let cover = |n: usize, s: usize, k: usize| n.saturating_sub(1) * s + k;
        [
            cover(g.oh, g.stride[0], g.kh).max(g.pad[0] + g.h),
            cover(g.ow, g.stride[1], g.kw).max(g.pad[1] + g.w),
        ]
    }
}

/// A convolution's stride (rows, columns); `[1, 1]` for other ops.
pub(super) fn stride_of(op: &Op) -> [usize; 2] {
    match *op {
        Op::Conv2d { stride, .. }
        | Op::Conv2dGradFilter { stride, .. }
        | Op::Conv2dGradInput { stride, .. } => stride,
        _ => [1, 1],
    }
}

/// The zero rows and columns on each side of a convolution's input planes, which a direct
/// kernel reads from a padded copy (the channels kernels pad a few samples at a time); none
/// for other ops and strided input gradients (no direct kernel runs them).
pub(super) fn direct_padding(op: &Op) -> [usize; 2] {
    match *op {
        Op::Conv2d { padding, .. } | Op::Conv2dGradFilter { padding, .. } => padding,
        Op::Conv2dGradInput {
            stride: [1, 1],
            padding,
            ..
        } => padding,
        _ => [0, 0],
    }
}

/// Floats of [`winograd`]'s scratch for product `op` of `g`: the transformed filters and the
/// forward kernel's buffers, or the filter gradient's.
pub(super) fn winograd_floats(g: &Winograd, op: WideOp) -> usize {
    match op {
        WideOp::Filter => winograd::filter_scratch_floats(g),
        _ => winograd::filter_floats(g) + winograd::scratch_floats(g),
    }
}

/// Floats of `planes` planes of `padded` rows and columns, a whole number of vectors, where
/// `pad` pads them (else none: the direct kernels read the operand itself).
pub(super) fn padded_floats(planes: usize, padded: [usize; 2], pad: [usize; 2]) -> usize {
    if pad == [0, 0] {
        0
    } else {
        (planes * padded[0] * padded[1]).next_multiple_of(16)
    }
}
