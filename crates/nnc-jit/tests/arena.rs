//! The arena's scratch as the threads grow: a part's buffers that grow with its samples are
//! sized for the samples a part has, so more threads (more, smaller parts) do not multiply
//! them (issue 17: users have 4 to 64 cores).

mod support;

use nnc_ir::compile::compile;
use nnc_ir::lower::{InputSpec, TargetSpec};
use nnc_jit::{Options, Program};
use support::model_file;

#[test]
fn scratch_follows_the_parts_samples_not_the_threads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/resnet-mnist.nn");
    let m = model_file(path);
    let train = m.train.clone().expect("train block");
    let input = InputSpec::of(&train.data, &m).expect("input layout");
    let targets = TargetSpec::of(&train.data, &m);
    let compiled = compile(&m, train.batch, input, targets).expect("compiles");
    let scratch = |threads: usize| {
        let options = Options {
            threads,
            ..Options::default()
        };
        let program = Program::compile(&compiled.train_step.func, options).expect("jit compiles");
        program.arena_size().scratch
    };
    let (one, many) = (scratch(1), scratch(32));
    // A region per thread sized for the whole batch made it 32 times one thread's (298 MB
    // at 64 threads); what is left to grow is each part's buffers that do not depend on its
    // samples (transformed filters) and the partial sums.
    assert!(
        many < 10 * one,
        "scratch {many} bytes at 32 threads against {one} at one"
    );
}
