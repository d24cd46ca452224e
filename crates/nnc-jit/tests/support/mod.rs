//! What the JIT's integration tests share: reading a model file and loading interpreter
//! tensors into a compiled program. (A directory module, so Cargo does not build it as a test
//! of its own.)

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use nnc_ir::init::Rng;
use nnc_ir::interp::Tensor;
use nnc_ir::lower::TargetSpec;
use nnc_ir::{DType, Function};
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

/// Random data inputs for a step function's leading data parameters; with `zeros`, u8 images
/// are mostly 0, with ink in the middle, as in MNIST.
pub fn data_inputs(
    f: &Function,
    data_params: usize,
    targets: TargetSpec,
    rng: &mut Rng,
    zeros: bool,
) -> Vec<Tensor<f32>> {
    f.params[..data_params]
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let t = f.ty(p);
            let shape = IxDyn(&t.shape);
            match (i, t.dtype) {
                (_, DType::U8) => {
                    // With `zeros`: ink only in the middle ninth of each image, half the time.
                    let (h, w) = (t.shape[t.shape.len() - 2], t.shape[t.shape.len() - 1]);
                    let middle = |i: usize, n: usize| (n / 3..2 * n / 3).contains(&i);
                    Tensor::U8(ArrayD::from_shape_fn(shape, |ix| {
                        let r = rng.next_u64();
                        let d = t.shape.len();
                        let inked =
                            middle(ix[d - 2], h) && middle(ix[d - 1], w) && r.is_multiple_of(2);
                        if zeros && !inked { 0 } else { (r >> 8) as u8 }
                    }))
                }
                (1, DType::I32) => {
                    let k = match targets {
                        TargetSpec::Classes(k) => k as u64,
                        TargetSpec::Values(_) => 2,
                    };
                    Tensor::I32(ArrayD::from_shape_fn(shape, |_| {
                        (rng.next_u64() % k) as i32
                    }))
                }
                (_, DType::I32) => Tensor::I32(ArrayD::from_elem(shape, 7)),
                (_, DType::F32) => {
                    Tensor::F(ArrayD::from_shape_fn(shape, |_| rng.uniform() as f32))
                }
            }
        })
        .collect()
}

/// How far the JIT's values of one result (a tensor) may be from the f32 interpreter's:
/// 1e-4 of the result's scale, its largest element, plus [`Tolerance::NOISE_FACTOR`] times
/// the result's rounding noise, measured rather than assumed: the farthest the f32
/// interpreter's value of any element is from the f64 interpreter's.
///
/// Relative to each element alone, or with a fixed absolute floor, the rule is wrong for the
/// elements a sum cancels: a weight that one step of Adam (about 1e-3, the rate) takes to
/// 3.3e-4 carries the rounding error of the 1e-3 terms that made it, whichever f32 order
/// summed them (on cnn3-same at batch 16 the JIT's 3.29891e-4 and the interpreter's 3.30016e-4 are 1.2e-7
/// apart, and f64's 3.29504e-4 is nearer the JIT's). The scale of a result's largest
/// element is the scale of its terms; the measured noise covers results whose every element
/// cancels, and the amplification of rounding through the steps (Adam's and RMSProp's
/// division by the gradient's own size). A wrong kernel (a missing term, a wrong index, a
/// misapplied update) is off by far more (tests/zoo.rs's controls).
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// The f32 interpreter's largest distance from f64 over the result's elements.
    pub noise: f64,
    /// The result's largest element (in f64).
    pub scale: f64,
}

impl Tolerance {
    /// How many times the interpreter's rounding noise the JIT may differ by: the JIT sums in
    /// other orders (blocked, split over threads, vector lanes), whose error has the same scale
    /// but not the same value, and the two differences add.
    pub const NOISE_FACTOR: f64 = 8.0;

    /// The tolerance of one result from its f32 and f64 interpreter values.
    pub fn of(interp: &[f64], exact: &[f64]) -> Tolerance {
        assert_eq!(interp.len(), exact.len(), "one value per element");
        Tolerance {
            noise: interp
                .iter()
                .zip(exact)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs())),
            scale: exact.iter().fold(0.0f64, |m, x| m.max(x.abs())),
        }
    }

    /// The largest difference allowed between the JIT's and the interpreter's element.
    pub fn bound(&self) -> f64 {
        1e-4 * self.scale + Self::NOISE_FACTOR * self.noise
    }

    /// Whether the JIT's `jit` and the interpreter's `interp` agree (never with a NaN).
    pub fn agree(&self, jit: f64, interp: f64) -> bool {
        (jit - interp).abs() <= self.bound()
    }
}

/// An f32 tensor as f64, for the f64 interpreter.
pub fn widen(t: &Tensor<f32>) -> Tensor<f64> {
    match t {
        Tensor::F(a) => Tensor::F(a.mapv(f64::from)),
        Tensor::I32(a) => Tensor::I32(a.clone()),
        Tensor::U8(a) => Tensor::U8(a.clone()),
    }
}
