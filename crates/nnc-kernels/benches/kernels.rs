//! Timings of the vector kernels on the shapes of the shipped models, one thread, best of 50
//! runs each: `cargo bench -p nnc-kernels --bench kernels [NAME...]` runs those whose name
//! contains one of the NAMEs (all without), printing what each measured. (Numbers to compare
//! against each other in one session, on a quiet machine; BENCHMARKS.md quotes them.)

use nnc_kernels::{
    Isa, channels, direct, elementwise, gemm_conv, phases, pool, samples, sparse, winograd,
};

type Timing = fn(Isa);

const TIMINGS: [(&str, Timing); 12] = [
    ("channels", channels::time_c3),
    ("same3", channels::time_same3),
    ("direct", direct::time_lenet_shapes),
    ("maxpool", pool::pairs::time_lenet_shapes),
    ("pool", pool::time_shapes),
    ("samples", samples::time_c3),
    ("samples-same3", samples::time_same3),
    ("sparse", sparse::time_mlp_shapes),
    ("winograd", winograd::time_same3),
    ("phases", phases::time_stride2),
    ("pointwise", gemm_conv::time_pointwise),
    ("elementwise", elementwise::time_adam),
];

fn main() {
    // Cargo passes `--bench`; names are the other arguments.
    let names: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(isa) = Isa::best() else {
        println!("SKIPPED: no vector unit (AVX-512, or AVX2 with FMA) on this CPU");
        return;
    };
    println!("vector unit: {isa:?}");
    for (name, time) in TIMINGS {
        if names.is_empty() || names.iter().any(|n| name.contains(n.as_str())) {
            println!("-- {name}");
            time(isa);
        }
    }
}
