//! What the JIT's integration tests share: reading a model file and loading interpreter
//! tensors into a compiled program. (A directory module, so Cargo does not build it as a test
//! of its own.)

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use nnc_ir::interp::Tensor;
use nnc_jit::Program;

/// The models shipped in `models/`.
pub const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/");

/// The `.nn` files in `models/`, sorted.
pub fn model_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(MODELS)
        .expect("models directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "nn"))
        .collect();
    files.sort();
    files
}

/// The first model of a `.nn` file, which must check without errors.
pub fn model_file(path: impl AsRef<Path>) -> nnc_check::Model {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).expect("model file");
    let checked = nnc_check::check_source(&text);
    assert!(
        !checked.has_errors(),
        "{}: {:?}",
        path.display(),
        checked.diagnostics
    );
    checked.models.into_iter().next().expect("a model")
}

/// Copies `t` into the program's parameter `i`, which has its dtype and size.
pub fn load(program: &mut Program, i: usize, t: &Tensor<f32>) {
    match t {
        Tensor::F(a) => program
            .f32_param(i)
            .unwrap()
            .copy_from_slice(a.as_slice().unwrap()),
        Tensor::I32(a) => program
            .i32_param(i)
            .unwrap()
            .copy_from_slice(a.as_slice().unwrap()),
        Tensor::U8(a) => program
            .u8_param(i)
            .unwrap()
            .copy_from_slice(a.as_slice().unwrap()),
    }
}

/// Random data for a step's first `data` parameters: images (u8), labels below `classes` (the
/// second parameter, i32), floats from N(0, 1), and `key` for any other i32 (dropout's key).
pub fn inputs(
    f: &nnc_ir::Function,
    data: usize,
    classes: usize,
    key: i32,
    rng: &mut nnc_ir::init::Rng,
) -> Vec<Tensor<f32>> {
    use ndarray::{ArrayD, IxDyn};
    use nnc_ir::DType;
    f.params[..data]
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let t = f.ty(p);
            let shape = IxDyn(&t.shape);
            match (i, t.dtype) {
                (1, DType::I32) => Tensor::I32(ArrayD::from_shape_fn(shape, |_| {
                    (rng.next_u64() % classes as u64) as i32
                })),
                (_, DType::I32) => Tensor::I32(ArrayD::from_elem(shape, key)),
                (_, DType::U8) => Tensor::U8(ArrayD::from_shape_fn(shape, |_| {
                    (rng.next_u64() % 256) as u8
                })),
                (_, DType::F32) => Tensor::F(ArrayD::from_shape_fn(shape, |_| rng.normal() as f32)),
            }
        })
        .collect()
}

/// The JIT and the interpreter agree on a value: within 1e-4 of the larger, or of 1e-2.
pub fn agree(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1e-2)
}
