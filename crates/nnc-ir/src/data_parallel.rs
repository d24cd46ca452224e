//! The training step of one process of a data-parallel job (`nnc train` under `mpirun`):
//! every process runs it on its shard of the global batch, and it sums what the processes
//! computed where the gradients are complete (`allreduce_sum`, which the compiled step hands
//! to the job's communication) before the optimizer's update, so that every process applies
//! the same update to the same weights.
//!
//! The shard's loss and gradients are those of the shard's mean times `shard / global`: the
//! sum over the shards is then the global batch's mean, as one process computes it (up to
//! the order of the sums). The optimizer (and weight decay) sees only the summed gradient.
//! The step is [`crate::compile`]'s `backward` stage, the sums, then [`crate::optim::apply`]:
//! one function, so the weights and optimizer state stay in the step's buffers (nothing is
//! copied between a gradients and an update function).
//!
//! The sums are in a fixed order, the same on every process (the order of the parameters,
//! then the loss and correct count): each gradient of more than [`SUMMED_ALONE`] values on
//! its own, the smaller ones side by side in one `concat` (one collective instead of many
//! that each wait for the slowest process).
//!
//! Batch normalisation normalises each shard by the shard's own statistics (as PyTorch's
//! `DistributedDataParallel` does without `SyncBatchNorm`): with shards of 32 or more the
//! batch statistics hardly differ, and the step needs no collective between the forward and
//! backward passes. Its running statistics are averaged over the shards, weighted by their
//! sizes: the running mean is then the global batch's (up to rounding), the running variance
//! the mean of the shards' variances (without the spread of the shard means, a fraction of
//! about 1/shard). Every process ends each step with the same running statistics, unlike
//! DDP, which keeps rank 0's.

use nnc_check::Model;

use crate::compile::compile;
use crate::function::{Builder, ValueId};
use crate::lower::{InputSpec, TargetSpec};
use crate::op::Op;
use crate::optim::{self, TrainStep};
use crate::passes;

/// Gradients with more values than this (512 KB) are summed alone; the others together,
/// copied into one buffer first: below this, a copy costs less than one more collective,
/// each of which waits for the slowest process.
pub const SUMMED_ALONE: usize = 1 << 17;

/// The samples of a global batch that one process trains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    /// Its first sample in the global batch.
    pub first: usize,
    /// Its number of samples: 0 for a process with none (a last batch shorter than the job),
    /// which runs a one-sample step weighted zero so that it joins the same sums.
    pub len: usize,
    /// The global batch's size.
    pub global: usize,
}

impl Shard {
    /// The whole batch of one process.
    pub fn whole(batch: usize) -> Shard {
        Shard {
            first: 0,
            len: batch,
            global: batch,
        }
    }

    /// The samples its step takes: one for an empty shard.
    pub fn step_samples(self) -> usize {
        self.len.max(1)
    }
}

/// Compiles the step of one process of a data-parallel job, for the shard `shard` of a
/// model that has a train block: a [`TrainStep`] like [`crate::compile`]'s, whose loss,
/// correct count and gradients are the whole global batch's. Dropout masks are the global
/// batch's at the shard's samples: the processes together draw what one process draws for the
/// whole batch.
pub fn compile_data_parallel(
    model: &Model,
    shard: Shard,
    input: InputSpec,
    targets: TargetSpec,
) -> Result<TrainStep, String> {
    if shard.global == 0 || shard.first + shard.len > shard.global {
        return Err(format!(
            "samples {}..{} of a batch of {}",
            shard.first,
            shard.first + shard.len,
            shard.global
        ));
    }
    let train = model
        .train
        .as_ref()
        .ok_or_else(|| format!("model `{}` has no train block", model.name))?;
    let c = compile(model, shard.step_samples(), input, targets)?;
    let data_params = c.train.data_params;
    let all: Vec<ValueId> = c.backward.params[data_params..].to_vec();
    let trained: Vec<ValueId> = all
        .iter()
        .copied()
        .filter(|p| !c.running.iter().any(|(stat, _)| stat == p))
        .collect();

    // The shard's loss and gradients scaled to their share of the global batch, each running
    // statistic's new value scaled the same way (so that the sum over the shards is their
    // average, weighted by the shards' sizes), then summed.
    let mut g = c.backward.clone();
    for inst in &mut g.insts {
        if let Op::RandomUniform { shape, first, .. } = &mut inst.op {
            let per_sample: usize = shape[1..].iter().product();
            *first = (shard.first * per_sample) as u64;
        }
    }
    let share = shard.len as f64 / shard.global as f64;
    let counted = if shard.len == 0 { 0.0 } else { 1.0 };
    let results = g.results.clone();
    let mut b = Builder { f: &mut g };
    let mut grads = results[3..].iter();
    let mut shares: Vec<ValueId> = all
        .iter()
        .map(|p| {
            let x = match c.running.iter().find(|(stat, _)| stat == p) {
                Some(&(_, new)) => new,
                None => *grads.next().expect("a gradient per trained parameter"),
            };
            b.scale(x, share)
        })
        .collect();
    shares.push(b.scale(results[0], share));
    shares.push(b.scale(results[1], counted));
    let summed = sum_over_processes(&mut b, &shares);
    let n = all.len();
    let running: Vec<(ValueId, ValueId)> = all
        .iter()
        .zip(&summed)
        .filter(|(p, _)| !trained.contains(p))
        .map(|(&p, &s)| (p, s))
        .collect();
    let trained_sums = all
        .iter()
        .zip(&summed)
        .filter(|(p, _)| trained.contains(p))
        .map(|(_, &s)| s);
    g.results = [summed[n], summed[n + 1], results[2]]
        .into_iter()
        .chain(trained_sums)
        .collect();
    g.name = "data_parallel_step".into();
    crate::verify::verify_after(&g, "the sums over the processes");
    let step = optim::apply(
        &g,
        &trained,
        &running,
        &train.optimizer,
        train.weight_decay,
        !train.schedule.is_constant(),
    );
    Ok(TrainStep {
        func: passes::optimize(&step.func),
        ..step
    })
}

/// `allreduce_sum` of each of `values`, in order: the large ones alone, the others side by
/// side (flattened into one row, summed, sliced back).
fn sum_over_processes(b: &mut Builder<'_>, values: &[ValueId]) -> Vec<ValueId> {
    let mut summed: Vec<Option<ValueId>> = vec![None; values.len()];
    let mut small = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        if b.ty(v).numel() > SUMMED_ALONE {
            summed[i] = Some(b.op(Op::AllReduceSum, &[v]));
        } else {
            small.push(i);
        }
    }
    match small.as_slice() {
        [] => {}
        &[i] => summed[i] = Some(b.op(Op::AllReduceSum, &[values[i]])),
        _ => {
            let rows: Vec<ValueId> = small
                .iter()
                .map(|&i| {
                    let n = b.ty(values[i]).numel();
                    b.reshape(values[i], vec![1, n])
                })
                .collect();
            let row = b.op(Op::Concat { axis: 1 }, &rows);
            let row = b.op(Op::AllReduceSum, &[row]);
            let mut at = 0;
            for &i in &small {
                let shape = b.shape(values[i]);
                let n: usize = shape.iter().product();
                let part = b.op(
                    Op::Slice {
                        start: vec![0, at],
                        end: vec![1, at + n],
                    },
                    &[row],
                );
                summed[i] = Some(b.reshape(part, shape));
                at += n;
            }
        }
    }
    summed
        .into_iter()
        .map(|s| s.expect("every value summed"))
        .collect()
}

/// A job of threads in one process: [`LocalSum::sum`] sums its values over the threads that
/// share it as MPI's allreduce sums over processes, every thread getting the sum. How tests
/// run the shards of a data-parallel step side by side without MPI. Every thread must call
/// it the same number of times with the same lengths, as with MPI.
pub struct LocalSum<T> {
    barrier: std::sync::Barrier,
    total: std::sync::Mutex<Vec<T>>,
}

impl<T: Copy + Default + std::ops::AddAssign> LocalSum<T> {
    /// A job of `threads` threads.
    pub fn new(threads: usize) -> LocalSum<T> {
        LocalSum {
            barrier: std::sync::Barrier::new(threads),
            total: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Replaces `values` by their sum over the threads (in the order the threads arrive: with
    /// two, the same sum either way).
    pub fn sum(&self, values: &mut [T]) {
        let total = || self.total.lock().unwrap_or_else(|e| e.into_inner());
        // Every thread has read the previous sum before the leader clears it.
        if self.barrier.wait().is_leader() {
            let mut t = total();
            t.clear();
            t.resize(values.len(), T::default());
        }
        self.barrier.wait();
        for (t, &v) in total().iter_mut().zip(values.iter()) {
            *t += v;
        }
        self.barrier.wait();
        values.copy_from_slice(&total()[..values.len()]);
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::interp::{Tensor, run_f64, run_summing};

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

    /// A batch of 5 split 3 + 2, each shard's step on a thread of its own (their sums over
    /// [`LocalSum`]), twice: the one-process step's loss, weights and optimizer state (Adam,
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

    /// Runs each of `steps` on the thread of its shard, with `inputs(shard's samples)`, their
    /// sums over the threads; the results of each.
    fn run_shards(
        steps: &[(TrainStep, std::ops::Range<usize>)],
        inputs: &(dyn Fn(std::ops::Range<usize>) -> Vec<Tensor<f64>> + Sync),
    ) -> Vec<Vec<Tensor<f64>>> {
        let job = LocalSum::new(steps.len());
        std::thread::scope(|s| {
            let runs: Vec<_> = steps
                .iter()
                .map(|(step, samples)| {
                    let job = &job;
                    s.spawn(move || {
                        run_summing(&step.func, inputs(samples.clone()), &mut |v| job.sum(v))
                            .expect("runs")
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("the shard's thread"))
                .collect()
        })
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
        let shard = |first, len| Shard {
            first,
            len,
            global: 5,
        };
        let parts = [(shard(0, 3), 0..3), (shard(3, 2), 3..5)].map(|(s, r)| {
            let step = compile_data_parallel(&model, s, input.clone(), targets).expect("compiles");
            (step, r)
        });
        // Dropout's key follows the inputs and targets.
        let keyed = parts[0].0.data_params == 3;
        assert_eq!(keyed, !dropout.is_empty());
        let sums = parts[0]
            .0
            .func
            .insts
            .iter()
            .filter(|i| i.op == Op::AllReduceSum)
            .count();
        // The first layer's weights, biases and the output layer together, with the loss and
        // count: one sum.
        assert_eq!(sums, 1);
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
        let n = params.len();
        let inputs = |r: std::ops::Range<usize>, params: &[Vec<f64>], states: &[Vec<f64>]| {
            let labels = Tensor::I32(
                ArrayD::from_shape_vec(IxDyn(&[r.len()]), t[r.clone()].to_vec()).expect("shape"),
            );
            let mut inputs = vec![tensor(&[r.len(), 3], &x[r.start * 3..r.end * 3]), labels];
            inputs.extend(keyed.then(key));
            inputs.extend(params.iter().zip(&shapes).map(|(p, s)| tensor(s, p)));
            inputs.extend(states.iter().zip(&state_shapes).map(|(p, s)| tensor(s, p)));
            inputs.push(tensor(&[], &[lr]));
            inputs
        };
        for _ in 0..2 {
            let out = run_f64(&whole.func, inputs(0..5, &params, &states)).expect("runs");
            let whole_loss = out[0].scalar().expect("scalar");
            params = (0..n).map(|i| flat(&out[2 + i])).collect();
            states = (0..states.len()).map(|i| flat(&out[2 + n + i])).collect();

            let (p, st) = (split_params.clone(), split_states.clone());
            let outs = run_shards(&parts, &|r| inputs(r, &p, &st));
            // Every shard ends the step with the same loss, weights and state.
            for out in &outs[1..] {
                for (a, b) in out.iter().zip(&outs[0]) {
                    assert_eq!(flat(a), flat(b));
                }
            }
            let loss = outs[0][0].scalar().expect("scalar");
            split_params = (0..n).map(|i| flat(&outs[0][2 + i])).collect();
            split_states = (0..split_states.len())
                .map(|i| flat(&outs[0][2 + n + i]))
                .collect();

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

    /// A process with no samples in a batch (one sample on two processes) joins the sums with
    /// zeros: the step is the one process's.
    #[test]
    fn an_empty_shard_adds_nothing() {
        let source = r#"
            model m {
                input x: f32[3]
                out: dense(2)
            }
            train m {
                data idx(images: "i", labels: "l")
                loss softmax_cross_entropy
                optimizer sgd(lr: 0.1)
                batch 2
            }
        "#;
        let (model, input, targets) = checked(source);
        let x = [0.5, -1.0, 2.0, 1.5, 0.25, -0.75];
        let init = crate::init::init_params(&model, 3);
        let inputs = |r: std::ops::Range<usize>| {
            let mut inputs = vec![
                tensor(&[r.len(), 3], &x[r.start * 3..r.end * 3]),
                Tensor::I32(
                    ArrayD::from_shape_vec(IxDyn(&[r.len()]), vec![1; r.len()]).expect("shape"),
                ),
            ];
            inputs.extend(init.iter().map(|p| {
                let v: Vec<f64> = p.data.iter().map(|&v| v as f64).collect();
                tensor(&p.shape, &v)
            }));
            inputs
        };
        let step = |first, len, global| {
            let s = Shard { first, len, global };
            compile_data_parallel(&model, s, input.clone(), targets).expect("compiles")
        };
        let two = run_shards(&[(step(0, 1, 1), 0..1), (step(0, 0, 1), 0..1)], &inputs);
        let one = run_f64(&step(0, 1, 1).func, inputs(0..1)).expect("runs");
        for (a, b) in two[1].iter().zip(&one) {
            assert_eq!(flat(a), flat(b));
        }
        assert!(one[0].scalar().expect("loss") > 0.0);
    }

    /// Batchnorm on 2 shards (3 + 2 of 5): each shard's new running statistics, times its
    /// share, are summed: the running mean is the whole batch's (it is linear in the
    /// samples), and the running variance's batch part the shards' mean variance, below the
    /// whole batch's.
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
        let running: [usize; 2] = running.try_into().expect("a mean and a variance");
        let x: Vec<f64> = (0..15).map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0).collect();
        let t = [0, 1, 1, 0, 1];
        let inputs = |r: std::ops::Range<usize>| {
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
            inputs
        };
        // The whole step's results: loss, correct, then the new parameters in order.
        let out = run_f64(&whole.train_step.func, inputs(0..5)).expect("runs");
        let steps = [0..3, 3..5].map(|r| {
            let s = Shard {
                first: r.start,
                len: r.len(),
                global: 5,
            };
            let step = compile_data_parallel(&model, s, input.clone(), targets).expect("compiles");
            (step, r)
        });
        let outs = run_shards(&steps, &inputs);
        let sums = running.map(|i| flat(&outs[0][2 + i]));
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
