//! The training step split in two for data-parallel training (`nnc train` under `mpirun`):
//! every process runs [`DataParallelStep::gradients`] on its shard of the global batch, the
//! processes sum the gradients (an allreduce, outside the IR), and every process applies
//! [`DataParallelStep::update`] to the sum, so that all hold the same weights after each step.
//!
//! The shard's loss and gradients are those of the shard's mean times `shard / global`: the
//! sum over the shards is then the global batch's mean, as one process computes it (up to
//! the order of the sums). The optimizer (and weight decay) sees only the summed gradient.
//! The single-function step of [`crate::compile`] is unchanged; this is built from its
//! `backward` stage and [`crate::optim::apply`].
//!
//! Batch normalisation normalises each shard by the shard's own statistics (as PyTorch's
//! `DistributedDataParallel` does without `SyncBatchNorm`): with shards of 32 or more the
//! batch statistics hardly differ, and the step needs no collective between the forward and
//! backward passes. Its running statistics are averaged over the shards, weighted by their
//! sizes: the running mean is then the global batch's (up to rounding), the running variance
//! the mean of the shards' variances (without the spread of the shard means, a fraction of
//! about 1/shard). Every process ends each step with the same running statistics, unlike
//! DDP, which keeps rank 0's.

use std::ops::Range;

use nnc_check::Model;

use crate::compile::compile;
use crate::function::{Builder, Function, ValueId};
use crate::lower::{InputSpec, TargetSpec};
use crate::op::Op;
use crate::optim::{self, TrainStep};
use crate::passes;

/// A training step as two functions, both optimized.
#[derive(Clone, Debug)]
pub struct DataParallelStep {
    /// `gradients(data..., params...) -> (loss, correct, shares...)`: the shard's mean loss
    /// and gradients times `shard / global`, and its correct count (or summed absolute error);
    /// a share per parameter, in declaration order (a running statistic's: its new value).
    pub gradients: Function,
    /// The number of leading data parameters of `gradients` (inputs, targets, dropout key).
    pub data_params: usize,
    /// Which parameters (indices after the data, in declaration order) are running
    /// statistics: `gradients` returns their new values times `shard / global` in their
    /// gradients' place, and `update` does not take them.
    pub running: Vec<usize>,
    /// `update(grads..., params..., states..., [lr]) -> (params'..., states'..., ‖g‖²...)`:
    /// the optimizer on the summed gradients; its [`TrainStep::data_params`] is the number of
    /// gradients, and its results start with the new parameters (no loss, no count).
    pub update: TrainStep,
}

/// Compiles the split step of a model that has a train block, for the samples `samples` of
/// a global batch of `global` (not empty, within it). Dropout masks are the global batch's
/// at those samples: the ranks together draw what one process draws for the whole batch.
pub fn compile_data_parallel(
    model: &Model,
    samples: Range<usize>,
    global: usize,
    input: InputSpec,
    targets: TargetSpec,
) -> Result<DataParallelStep, String> {
    if samples.is_empty() || samples.end > global {
        return Err(format!("samples {samples:?} of a batch of {global}"));
    }
    let shard = samples.len();
    let train = model
        .train
        .as_ref()
        .ok_or_else(|| format!("model `{}` has no train block", model.name))?;
    let c = compile(model, shard, input, targets)?;
    let data_params = c.train.data_params;
    let all: Vec<ValueId> = c.backward.params[data_params..].to_vec();
    let running: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, p)| c.running.iter().any(|(stat, _)| stat == *p))
        .map(|(i, _)| i)
        .collect();
    let (params, names): (Vec<ValueId>, Vec<String>) = all
        .iter()
        .zip(&c.train.params)
        .enumerate()
        .filter(|(i, _)| !running.contains(i))
        .map(|(_, (&p, name))| (p, name.clone()))
        .unzip();

    // gradients: backward's (loss, correct, output, grads...) without the output, the loss
    // and gradients scaled to their share of the global batch, and each running statistic's
    // new value in its parameter's place, scaled the same way (so that the sum over the
    // shards is their average, weighted by the shards' sizes).
    let mut g = c.backward.clone();
    for inst in &mut g.insts {
        if let Op::RandomUniform { shape, first, .. } = &mut inst.op {
            let per_sample: usize = shape[1..].iter().product();
            *first = (samples.start * per_sample) as u64;
        }
    }
    let share = shard as f64 / global as f64;
    let results = g.results.clone();
    let mut b = Builder { f: &mut g };
    let loss = b.scale(results[0], share);
    let mut grads = results[3..].iter();
    let shares: Vec<ValueId> = all
        .iter()
        .map(|p| {
            let x = match c.running.iter().find(|(stat, _)| stat == p) {
                Some(&(_, new)) => new,
                None => *grads.next().expect("a gradient per trained parameter"),
            };
            b.scale(x, share)
        })
        .collect();
    for (&v, name) in shares.iter().zip(&c.train.params) {
        g.set_name(v, format!("{name}.share"));
    }
    g.set_name(loss, "loss_share");
    g.name = "gradients".into();
    g.results = [loss, results[1]].into_iter().chain(shares).collect();
    crate::verify::verify_after(&g, "gradient scaling");

    // update: the summed gradients are its data; `optim::apply` reads results[3..] as the
    // gradients and results[0..2] as loss and count, which the update does not have: a
    // placeholder stands for them (and for the output) and is dropped after.
    let mut u = Function::new("update");
    let grad_params: Vec<ValueId> = params
        .iter()
        .zip(&names)
        .map(|(&p, name)| u.add_param(format!("{name}.grad_sum"), c.backward.ty(p).clone()))
        .collect();
    let weights: Vec<ValueId> = params
        .iter()
        .zip(&names)
        .map(|(&p, name)| u.add_param(name.clone(), c.backward.ty(p).clone()))
        .collect();
    let placeholder = Builder { f: &mut u }.scalar(0.0);
    u.results = [placeholder; 3].into_iter().chain(grad_params).collect();
    let mut update = optim::apply(
        &u,
        &weights,
        &[],
        &train.optimizer,
        train.weight_decay,
        !train.schedule.is_constant(),
    );
    update.func.results.drain(0..2);
    update.func.name = "update".into();
    crate::verify::verify_after(&update.func, "the update's split");
    update.func = passes::optimize(&update.func);
    Ok(DataParallelStep {
        gradients: passes::optimize(&g),
        data_params,
        running,
        update,
    })
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::interp::{Tensor, run_f64};

    fn tensor(shape: &[usize], v: &[f64]) -> Tensor<f64> {
        Tensor::from_f64(shape, v)
    }

    fn flat(t: &Tensor<f64>) -> Vec<f64> {
        t.as_f().expect("float").iter().copied().collect()
    }

    /// The one model of `source` (3 features in, 2 classes), its input and its targets.
    fn checked(source: &str) -> (Model, InputSpec, TargetSpec) {
        let mut checked = nnc_check::check_source(source);
        assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
        let input = InputSpec {
            dtype: crate::types::DType::F32,
            sample: vec![3],
            scale: 1.0,
            shift: 0.0,
            pad: 0,
            flatten: false,
        };
        (checked.models.remove(0), input, TargetSpec::Classes(2))
    }

    /// A batch of 5 split 3 + 2, each shard through `gradients`, the gradients summed and
    /// then `update` twice: the one-function step's loss, weights and optimizer state (Adam,
    /// weight decay, scheduled rate), to rounding in f64.
    #[test]
    fn shards_summed_make_the_whole_step() {
        shards_summed_make_the_whole_step_of("");
    }

    /// The same with dropout: the shards' masks are the whole batch's at their samples.
    #[test]
    fn shards_draw_the_whole_steps_dropout_masks() {
        shards_summed_make_the_whole_step_of("dropout(0.5)");
    }

    fn shards_summed_make_the_whole_step_of(dropout: &str) {
        let source = r#"
            model m {
                input x: f32[3]
                dense(4, activation: tanh)
                DROPOUT
                out: dense(2)
            }
            train m {
                data idx(images: "i", labels: "l")
                loss softmax_cross_entropy
                optimizer adam(lr: 0.01, weight_decay: 0.01)
                schedule cosine
                batch 5
            }
        "#;
        let (model, input, targets) = checked(&source.replace("DROPOUT", dropout));
        let whole = compile(&model, 5, input.clone(), targets)
            .expect("compiles")
            .train_step;
        let parts = [
            compile_data_parallel(&model, 0..3, 5, input.clone(), targets).expect("compiles"),
            compile_data_parallel(&model, 3..5, 5, input, targets).expect("compiles"),
        ];
        // Dropout's key follows the inputs and targets.
        let keyed = parts[0].data_params == 3;
        assert_eq!(keyed, !dropout.is_empty());
        let key = || Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[]), vec![11]).expect("shape"));
        let x: Vec<f64> = (0..15).map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0).collect();
        let t = [0, 1, 1, 0, 1];
        let init = crate::init::init_params(&model, 3);
        let mut params: Vec<Vec<f64>> = init
            .iter()
            .map(|p| p.data.iter().map(|&v| v as f64).collect())
            .collect();
        let shapes: Vec<Vec<usize>> = init.iter().map(|p| p.shape.clone()).collect();
        let mut states: Vec<Vec<f64>> = whole
            .states
            .iter()
            .map(|s| vec![s.init; s.ty.numel()])
            .collect();
        let (mut split_params, mut split_states) = (params.clone(), states.clone());
        let state_shapes: Vec<Vec<usize>> =
            whole.states.iter().map(|s| s.ty.shape.clone()).collect();
        let lr = 0.005;
        for _ in 0..2 {
            let labels = |r: std::ops::Range<usize>| {
                Tensor::I32(
                    ArrayD::from_shape_vec(IxDyn(&[r.len()]), t[r].to_vec()).expect("shape"),
                )
            };
            let mut inputs = vec![tensor(&[5, 3], &x), labels(0..5)];
            inputs.extend(keyed.then(key));
            inputs.extend(params.iter().zip(&shapes).map(|(p, s)| tensor(s, p)));
            inputs.extend(states.iter().zip(&state_shapes).map(|(p, s)| tensor(s, p)));
            inputs.push(tensor(&[], &[lr]));
            let out = run_f64(&whole.func, inputs).expect("runs");
            let n = params.len();
            let whole_loss = out[0].scalar().expect("scalar");
            params = (0..n).map(|i| flat(&out[2 + i])).collect();
            states = (0..states.len()).map(|i| flat(&out[2 + n + i])).collect();

            let mut loss = 0.0;
            let mut sum: Vec<Vec<f64>> = split_params.iter().map(|p| vec![0.0; p.len()]).collect();
            for (part, range) in parts.iter().zip([0..3, 3..5]) {
                let mut inputs = vec![
                    tensor(&[range.len(), 3], &x[range.start * 3..range.end * 3]),
                    labels(range),
                ];
                inputs.extend(keyed.then(key));
                inputs.extend(split_params.iter().zip(&shapes).map(|(p, s)| tensor(s, p)));
                let out = run_f64(&part.gradients, inputs).expect("runs");
                loss += out[0].scalar().expect("scalar");
                for (s, g) in sum.iter_mut().zip(&out[2..]) {
                    for (a, b) in s.iter_mut().zip(flat(g)) {
                        *a += b;
                    }
                }
            }
            let u = &parts[0].update;
            let mut inputs: Vec<Tensor<f64>> =
                sum.iter().zip(&shapes).map(|(g, s)| tensor(s, g)).collect();
            inputs.extend(split_params.iter().zip(&shapes).map(|(p, s)| tensor(s, p)));
            inputs.extend(
                split_states
                    .iter()
                    .zip(&state_shapes)
                    .map(|(p, s)| tensor(s, p)),
            );
            inputs.push(tensor(&[], &[lr]));
            let out = run_f64(&u.func, inputs).expect("runs");
            split_params = (0..n).map(|i| flat(&out[i])).collect();
            split_states = (0..split_states.len()).map(|i| flat(&out[n + i])).collect();

            assert!(
                (loss - whole_loss).abs() <= 1e-12 * whole_loss.abs(),
                "{loss} vs {whole_loss}"
            );
            for (a, b) in params
                .iter()
                .chain(&states)
                .flatten()
                .zip(split_params.iter().chain(&split_states).flatten())
            {
                assert!((a - b).abs() <= 1e-12 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
        // Something moved: the comparison is not of two untouched copies.
        assert_ne!(params[0][0] as f32, init[0].data[0]);
    }

    /// Batchnorm on 2 shards (3 + 2 of 5): each shard's `gradients` returns the new running
    /// statistics times its share; summed, the running mean is the whole batch's (it is
    /// linear in the samples), and the running variance's batch part the shards' mean
    /// variance, below the whole batch's. The update takes only the trained parameters.
    #[test]
    fn running_statistics_are_shared_by_shard_size() {
        let source = r#"
            model m {
                input x: f32[3]
                dense(4, bias: false) -> batchnorm(momentum: 0.5)
                out: dense(2)
            }
            train m {
                data idx(images: "i", labels: "l")
                loss softmax_cross_entropy
                optimizer sgd(lr: 0.1)
                batch 5
            }
        "#;
        let (model, input, targets) = checked(source);
        let whole = compile(&model, 5, input.clone(), targets).expect("compiles");
        let init = crate::init::init_params(&model, 3);
        let names: Vec<&str> = init.iter().map(|t| t.name.as_str()).collect();
        let running: Vec<usize> = (0..names.len())
            .filter(|&i| names[i].ends_with("running_mean") || names[i].ends_with("running_var"))
            .collect();
        assert_eq!(running.len(), 2, "{names:?}");
        let x: Vec<f64> = (0..15).map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0).collect();
        let t = [0, 1, 1, 0, 1];
        let run = |f: &Function, r: std::ops::Range<usize>| {
            let mut inputs = vec![
                tensor(&[r.len(), 3], &x[r.start * 3..r.end * 3]),
                Tensor::I32(
                    ArrayD::from_shape_vec(IxDyn(&[r.len()]), t[r].to_vec()).expect("shape"),
                ),
            ];
            inputs.extend(init.iter().map(|p| {
                let v: Vec<f64> = p.data.iter().map(|&v| v as f64).collect();
                tensor(&p.shape, &v)
            }));
            run_f64(f, inputs).expect("runs")
        };
        // The whole step's results: loss, correct, then the new parameters in order.
        let out = run(&whole.train_step.func, 0..5);
        let mut sums = [vec![0.0; 4], vec![0.0; 4]];
        for r in [0..3, 3..5] {
            let part = compile_data_parallel(&model, r.clone(), 5, input.clone(), targets)
                .expect("compiles");
            assert_eq!(part.running, running);
            assert_eq!(part.update.params.len(), names.len() - 2);
            let shares = run(&part.gradients, r);
            for (sum, &i) in sums.iter_mut().zip(&running) {
                for (a, b) in sum.iter_mut().zip(flat(&shares[2 + i])) {
                    *a += b;
                }
            }
        }
        let mean = flat(&out[2 + running[0]]);
        for (a, b) in mean.iter().zip(&sums[0]) {
            assert!(
                a.abs() > 1e-3 && (a - b).abs() <= 1e-12,
                "{mean:?} vs {:?}",
                sums[0]
            );
        }
        // running_var = 0.5·1 + 0.5·batch variance.
        let var = flat(&out[2 + running[1]]);
        for (a, b) in var.iter().zip(&sums[1]) {
            assert!(
                *b <= a + 1e-12 && b - 0.5 > 0.25 * (a - 0.5),
                "{var:?} vs {:?}",
                sums[1]
            );
        }
    }
}
