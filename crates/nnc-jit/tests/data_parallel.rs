//! A data-parallel job of threads in place of MPI's processes ([`LocalSum`] sums as the
//! allreduce does): each member compiles its shard's step (`CompiledModel::data_parallel`)
//! and runs it on its own thread; together they train as one process does on the whole
//! batch, and end every step with bitwise equal weights.

mod support;

use std::ops::ControlFlow;

use nnc_ir::DType;
use nnc_ir::data_parallel::{LocalSum, Shard};
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_jit::{BatchData, CompiledModel, InputData, TargetData};
use support::{model_file, model_files};

/// Convolution, dropout and a dense head, trained by Adam with weight decay; `NORM` is a
/// batchnorm or nothing.
const MODEL: &str = r#"
model m {
    input image: f32[1, 12, 12]
    conv2d(6, 3, bias: false) NORM -> relu -> maxpool(2)
    dropout(0.25)
    flatten
    dense(24) -> tanh
    out: dense(10)
}
train m {
    data idx(images: "i", labels: "l", scale: 1/255)
    loss softmax_cross_entropy
    optimizer adam(lr: 0.01, weight_decay: 0.001)
    batch 13
}
"#;

const PIXELS: usize = 144;

fn model(norm: bool) -> (nnc_check::Model, InputSpec, TargetSpec) {
    let norm = if norm { "-> batchnorm" } else { "" };
    let checked = nnc_check::check_source(&MODEL.replace("NORM", norm));
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    let m = checked.models.into_iter().next().expect("a model");
    let train = m.train.clone().expect("train block");
    // Bytes, as an IDX file of 12×12 images holds them.
    let input = InputSpec {
        dtype: DType::U8,
        sample: vec![1, 12, 12],
        scale: 1.0 / 255.0,
        shift: 0.0,
        pad: 0,
        flatten: false,
    };
    let targets = TargetSpec::of(&train.data, &m);
    (m, input, targets)
}

/// A batch of `size` samples, images and labels: the same at every step, so that the loss
/// falls.
fn batch(size: usize) -> (Vec<u8>, Vec<i32>) {
    let images = (0..size * PIXELS).map(|k| (k * 37 % 251) as u8).collect();
    let labels = (0..size).map(|s| (s * 7 % 10) as i32).collect();
    (images, labels)
}

fn data<'a>(images: &'a [u8], labels: &'a [i32], key: i32) -> BatchData<'a> {
    BatchData {
        size: labels.len(),
        inputs: InputData::U8(images),
        targets: TargetData::Classes(labels),
        key,
        lr: 0.01,
    }
}

/// Each step's loss and the final weights.
type Run = (Vec<f64>, Vec<Vec<f32>>);

/// `steps` steps of one process on batches of `global`.
fn one_process(steps: usize, global: usize) -> Run {
    let (m, input, targets) = model(false);
    let mut trainer = CompiledModel::with_threads(&m, input, targets, 5, 1).expect("compiles");
    let losses = (0..steps)
        .map(|s| {
            let (images, labels) = batch(global);
            let out = trainer.train_step(&data(&images, &labels, s as i32));
            out.expect("step").loss
        })
        .collect();
    (losses, trainer.snapshot().expect("weights").0)
}

/// The same steps by a job of one thread per shard of `shards` (first sample, length), with
/// a batchnorm if `norm`.
fn job(steps: usize, global: usize, shards: &[(usize, usize)], norm: bool) -> Vec<Run> {
    let sums = LocalSum::new(shards.len());
    std::thread::scope(|s| {
        let members: Vec<_> = shards
            .iter()
            .map(|&(first, len)| {
                let sums = &sums;
                s.spawn(move || {
                    let (m, input, targets) = model(norm);
                    let mut trainer =
                        CompiledModel::data_parallel(&m, input, targets, 5, 2).expect("compiles");
                    let shard = Shard { first, len, global };
                    // An empty shard's step reads one sample, weighted zero.
                    let samples = first..first + len.max(1);
                    let losses = (0..steps)
                        .map(|s| {
                            let (images, labels) = batch(global);
                            let images = &images[samples.start * PIXELS..samples.end * PIXELS];
                            let labels = &labels[samples.clone()];
                            let mut sum = |send: &[f32], recv: &mut [f32], _| {
                                recv.copy_from_slice(send);
                                sums.sum(recv);
                                ControlFlow::Continue(())
                            };
                            let out = trainer.train_shard(
                                &data(images, labels, s as i32),
                                shard,
                                &mut sum,
                            );
                            out.expect("step").expect("not stopped").loss
                        })
                        .collect();
                    (losses, trainer.snapshot().expect("weights").0)
                })
            })
            .collect();
        members
            .into_iter()
            .map(|h| h.join().expect("the member's thread"))
            .collect()
    })
}

/// Every member ends with the same weights, and its losses are one process's (the sums'
/// order differs: to rounding), after enough steps that Adam has moved the weights.
fn agree(one: &Run, members: &[Run]) {
    for m in &members[1..] {
        assert_eq!(m.1, members[0].1, "members' weights differ");
        assert_eq!(m.0, members[0].0, "members' losses differ");
    }
    let (losses, weights) = &members[0];
    for (step, (a, b)) in one.0.iter().zip(losses).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs(),
            "step {step}: one process {a}, the job {b}"
        );
    }
    for (a, b) in one.1.iter().flatten().zip(weights.iter().flatten()) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
    }
    assert!(one.0.last() < one.0.first(), "the loss fell: {:?}", one.0);
}

/// 13 samples on two members (7 + 6), with batchnorm (each shard normalised by its own
/// statistics, the running ones averaged): weights and losses bitwise equal across them.
#[test]
fn two_members_hold_equal_weights() {
    let members = job(6, 13, &[(0, 7), (7, 6)], true);
    assert_eq!(members[0].1, members[1].1);
    assert_eq!(members[0].0, members[1].0);
    assert!(members[0].0[5] < members[0].0[0], "{:?}", members[0].0);
}

/// A job trains as one process does (dropout draws the whole batch's masks).
#[test]
fn a_job_trains_as_one_process() {
    let one = one_process(8, 13);
    let members = job(8, 13, &[(0, 7), (7, 6)], false);
    agree(&one, &members);
}

/// A member with no samples (one sample on two) joins the sums with zeros.
#[test]
fn an_empty_shard_adds_nothing() {
    let one = one_process(4, 1);
    let members = job(4, 1, &[(0, 1), (0, 0)], false);
    agree(&one, &members);
}

/// A step stopped at its last sum (the job ended while it ran) changes no weight or
/// optimizer state; the next one that runs through does.
#[test]
fn a_step_stopped_at_its_last_sum_changes_nothing() {
    let (m, input, targets) = model(true);
    let mut trainer = CompiledModel::data_parallel(&m, input, targets, 5, 2).expect("compiles");
    let shard = Shard::whole(13);
    let (images, labels) = batch(13);
    let mut sums = 0;
    let mut stop_at_last = |send: &[f32], recv: &mut [f32], last: bool| {
        recv.copy_from_slice(send);
        sums += 1;
        if last {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let before = trainer.snapshot().expect("weights");
    let out = trainer.train_shard(&data(&images, &labels, 1), shard, &mut stop_at_last);
    assert!(out.expect("runs").is_none());
    assert_eq!(sums, trainer.sum_lengths(shard).expect("lengths").len());
    assert_eq!(trainer.snapshot().expect("weights"), before);
    let mut go_on = |send: &[f32], recv: &mut [f32], _| {
        recv.copy_from_slice(send);
        ControlFlow::Continue(())
    };
    let out = trainer.train_shard(&data(&images, &labels, 1), shard, &mut go_on);
    assert!(out.expect("runs").is_some());
    assert_ne!(trainer.snapshot().expect("weights"), before);
}

/// Every model of `models/` and `bench/zoo/` compiles for a job of three (its batch split
/// unevenly, and a shard that is empty), every shard's step doing the same sums in the same
/// order: a rank would otherwise wait for a sum that the others do not do, or add up
/// different values. (Compiling also checks that no weight is written before the last sum.)
#[test]
fn every_model_sums_the_same_on_every_shard() {
    let zoo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/zoo/");
    let mut files = model_files();
    files.extend(
        std::fs::read_dir(zoo)
            .expect("bench/zoo")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "nn")),
    );
    let mut compiled = 0;
    for path in files {
        let m = model_file(&path);
        let Some(train) = m.train.clone() else {
            continue;
        };
        let Some(input) = InputSpec::of(&train.data, &m) else {
            continue;
        };
        let targets = TargetSpec::of(&train.data, &m);
        let mut trainer = CompiledModel::data_parallel(&m, input, targets, 1, 1).expect("compiles");
        let global = train.batch.min(7);
        let half = global.div_ceil(2);
        let shards = [(0, half), (half, global - half), (0, 0)];
        let lengths: Vec<Vec<usize>> = shards
            .iter()
            .map(|&(first, len)| {
                let shard = Shard { first, len, global };
                trainer
                    .sum_lengths(shard)
                    .unwrap_or_else(|e| panic!("{}: {shard:?}: {e}", path.display()))
            })
            .collect();
        assert!(!lengths[0].is_empty(), "{}", path.display());
        assert!(
            lengths.iter().all(|l| *l == lengths[0]),
            "{}: {lengths:?}",
            path.display()
        );
        compiled += 1;
    }
    assert!(compiled >= 20, "{compiled} models compiled");
}
