//! Every differentiable op, gradient-checked in isolation from a text-IR snippet; malformed IR
//! and ill-typed IR rejected with located errors.

use nnc_ir::function::{Function, ValueId};
use nnc_ir::gradcheck::{TOLERANCE, check_function};
use nnc_ir::init::Rng;
use nnc_ir::interp::Tensor;
use nnc_ir::op::Op;
use nnc_ir::parse::{parse, parse_function};
use nnc_ir::types::{DType, Type};

/// Wraps a snippet `f(params) -> y` as `loss = Σ y ⊙ C` with a fixed random C, so that every
/// element of y's gradient differs, then checks the gradient of every f32 parameter.
fn gradcheck(text: &str) {
    let mut f = parse_function(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let y = f.results[0];
    let ty = f.ty(y).clone();
    let mut rng = Rng::new(42);
    let loss = if ty.rank() == 0 {
        y
    } else {
        let c: Vec<f64> = (0..ty.numel()).map(|_| rng.normal()).collect();
        let c = f.push_typed(
            Op::ConstData { data: c.into() },
            Vec::new(),
            Type::f32(ty.shape.clone()),
        );
        let p = f.push(Op::Binary(nnc_ir::Binary::Mul), vec![y, c]).unwrap();
        f.push(
            Op::ReduceSum {
                axes: (0..ty.rank()).collect(),
            },
            vec![p],
        )
        .unwrap()
    };
    f.set_name(loss, "loss");
    f.results = vec![loss];
    let mut inputs = Vec::new();
    let mut wrt: Vec<ValueId> = Vec::new();
    for &p in &f.params {
        let t = f.ty(p);
        let name = f.name_of(p).unwrap_or("");
        let n = t.numel();
        inputs.push(match t.dtype {
            DType::I32 => Tensor::I32(ndarray::ArrayD::from_shape_fn(t.shape.clone(), |_| {
                (rng.next_u64() % 3) as i32
            })),
            DType::U8 => panic!("no u8 parameters in op snippets"),
            DType::F32 => {
                wrt.push(p);
                // `pos…` parameters are kept away from 0 (log, sqrt, division).
                let data: Vec<f64> = (0..n)
                    .map(|_| {
                        if name.starts_with("pos") {
                            0.5 + rng.uniform()
                        } else {
                            rng.normal()
                        }
                    })
                    .collect();
                Tensor::from_f64(&t.shape, &data)
            }
        });
    }
    let report = check_function(&f, &wrt, &inputs, 32, 1).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for p in &report {
        assert!(p.checked > 0, "{}: nothing checked\n{text}", p.name);
        assert!(
            p.error <= TOLERANCE,
            "{}: error {:e}\n{text}",
            p.name,
            p.error
        );
    }
}

fn unary(op: &str, param: &str) -> String {
    format!(
        "func @f(%{param}: f32[3,4]) -> (f32[3,4]) {{\n %y: f32[3,4] = {op} %{param}\n return %y\n}}"
    )
}

#[test]
fn unary_ops() {
    for op in ["neg", "exp", "tanh", "sigmoid", "relu", "abs", "softplus"] {
        gradcheck(&unary(op, "x"));
    }
    for op in ["log", "sqrt", "recip"] {
        gradcheck(&unary(op, "pos"));
    }
}

/// Their derivative reads the result where α ≥ 0 and the operand where it is negative (the
/// negative side is then positive); both sides of zero are sampled.
#[test]
fn activations_with_a_derivative_of_their_own() {
    for alpha in ["0.1", "0.0", "-0.5", "1.0", "2.5"] {
        for op in ["leaky_relu", "elu"] {
            gradcheck(&unary(&format!("{op} %x, alpha={alpha}"), "x").replace(" %x\n", "\n"));
        }
    }
}

/// Batch normalisation's textbook derivative, for x, γ and β, per channel of maps and per
/// feature of vectors.
#[test]
fn batchnorm() {
    for (x, c) in [("3,2,3,4", "2"), ("6,4", "4")] {
        gradcheck(&format!(
            "func @f(%x: f32[{x}], %g: f32[{c}], %b: f32[{c}]) -> (f32[{x}]) {{
               %y: f32[{x}] = batchnorm %x, %g, %b, eps=0.001
               return %y
             }}"
        ));
    }
}

/// A sum over the processes of a job: in one process the identity, and so its derivative.
#[test]
fn allreduce_sum() {
    gradcheck(
        "func @f(%x: f32[3,4]) -> (f32[3,4]) {
           %t: f32[3,4] = tanh %x
           %y: f32[3,4] = allreduce_sum %t
           return %y
         }",
    );
}

#[test]
fn piecewise_constant_ops_have_zero_gradient() {
    for op in ["step", "sign"] {
        gradcheck(&unary(op, "x"));
    }
}

#[test]
fn binary_ops_with_broadcasting() {
    for op in ["add", "sub", "mul", "max", "min"] {
        gradcheck(&format!(
            "func @f(%x: f32[3,4], %b: f32[4], %s: f32[]) -> (f32[3,4]) {{
               %0: f32[3,4] = {op} %x, %b
               %y: f32[3,4] = {op} %s, %0
               return %y
             }}"
        ));
    }
    gradcheck(
        "func @f(%x: f32[3,4], %pos: f32[3,1]) -> (f32[3,4]) {
           %y: f32[3,4] = div %x, %pos
           return %y
         }",
    );
}

#[test]
fn select_and_compare() {
    gradcheck(
        "func @f(%x: f32[3,4], %a: f32[3,4], %b: f32[4]) -> (f32[3,4]) {
           %zero: f32[] = const value=0.0
           %c: f32[3,4] = gt %x, %zero
           %y: f32[3,4] = select %c, %a, %b
           return %y
         }",
    );
}

#[test]
fn reductions_and_broadcast() {
    gradcheck(
        "func @f(%x: f32[2,3,4]) -> (f32[3]) {
           %y: f32[3] = reduce_sum %x, axes=[0,2]
           return %y
         }",
    );
    gradcheck(
        "func @f(%x: f32[2,3,4]) -> (f32[2,4]) {
           %y: f32[2,4] = reduce_max %x, axes=[1]
           return %y
         }",
    );
    gradcheck(
        "func @f(%x: f32[3,1]) -> (f32[2,3,4]) {
           %y: f32[2,3,4] = broadcast %x, shape=[2,3,4]
           return %y
         }",
    );
}

#[test]
fn matmul_in_every_transposition() {
    for (op, a, b) in [
        ("matmul", "3,4", "4,5"),
        ("matmul_nt", "3,4", "5,4"),
        ("matmul_tn", "4,3", "4,5"),
        ("matmul_tt", "4,3", "5,4"),
    ] {
        gradcheck(&format!(
            "func @f(%a: f32[{a}], %b: f32[{b}]) -> (f32[3,5]) {{
               %y: f32[3,5] = {op} %a, %b
               return %y
             }}"
        ));
    }
}

#[test]
fn convolution_and_its_input_gradient() {
    gradcheck(
        "func @f(%x: f32[2,3,7,7], %w: f32[4,3,3,3]) -> (f32[2,4,4,4]) {
           %y: f32[2,4,4,4] = conv2d %x, %w, stride=[2,2], padding=[1,1]
           return %y
         }",
    );
    gradcheck(
        "func @f(%x: f32[1,2,6,5], %w: f32[3,2,3,2]) -> (f32[1,3,4,4]) {
           %y: f32[1,3,4,4] = conv2d %x, %w, stride=[1,1], padding=[0,0]
           return %y
         }",
    );
    // Windows that leave the last row and column unread (their gradient is zero).
    gradcheck(
        "func @f(%x: f32[2,3,8,7], %w: f32[4,3,3,3]) -> (f32[2,4,3,3]) {
           %y: f32[2,4,3,3] = conv2d %x, %w, stride=[2,2], padding=[0,0]
           return %y
         }",
    );
    // Linear in dy; its adjoint is the forward convolution.
    gradcheck(
        "func @f(%dy: f32[2,4,4,4], %w: f32[4,3,3,3]) -> (f32[2,3,7,7]) {
           %y: f32[2,3,7,7] = conv2d_grad_input %dy, %w, stride=[2,2], padding=[1,1], input=[7,7]
           return %y
         }",
    );
}

#[test]
fn pooling() {
    gradcheck(
        "func @f(%x: f32[2,3,6,6]) -> (f32[2,3,3,3]) {
           %y: f32[2,3,3,3] = maxpool %x, size=[2,2], stride=[2,2]
           return %y
         }",
    );
    gradcheck(
        "func @f(%x: f32[2,3,5,5]) -> (f32[2,3,2,2]) {
           %y: f32[2,3,2,2] = maxpool %x, size=[3,3], stride=[2,2]
           return %y
         }",
    );
    gradcheck(
        "func @f(%x: f32[2,6,4]) -> (f32[2,3,2]) {
           %y: f32[2,3,2] = sumpool %x, size=[2,2], stride=[2,2]
           return %y
         }",
    );
    gradcheck(
        "func @f(%dy: f32[2,3,2]) -> (f32[2,6,4]) {
           %y: f32[2,6,4] = sumpool_grad %dy, size=[2,2], stride=[2,2], input=[6,4]
           return %y
         }",
    );
}

#[test]
fn layout_ops() {
    gradcheck(
        "func @f(%x: f32[2,3,4]) -> (f32[4,6]) {
           %0: f32[4,2,3] = transpose %x, perm=[2,0,1]
           %y: f32[4,6] = reshape %0, shape=[4,6]
           return %y
         }",
    );
    gradcheck(
        "func @f(%x: f32[2,3]) -> (f32[3,7]) {
           %y: f32[3,7] = pad %x, pads=[1,0,2,2]
           return %y
         }",
    );
    gradcheck(
        "func @f(%x: f32[4,5]) -> (f32[2,3]) {
           %y: f32[2,3] = slice %x, start=[1,2], end=[3,5]
           return %y
         }",
    );
    // Three branches of different widths along channels, one of them read twice.
    gradcheck(
        "func @f(%a: f32[2,1,3,2], %b: f32[2,3,3,2], %c: f32[2,2,3,2]) -> (f32[2,7,3,2]) {
           %0: f32[2,3,3,2] = tanh %b
           %y: f32[2,7,3,2] = concat %a, %0, %c, %a, axis=1
           return %y
         }",
    );
    gradcheck(
        "func @f(%a: f32[3,2], %b: f32[3,4]) -> (f32[3,6]) {
           %y: f32[3,6] = concat %a, %b, axis=1
           return %y
         }",
    );
}

#[test]
fn classification_ops() {
    gradcheck(
        "func @f(%z: f32[4,3]) -> (f32[4,3]) {
           %y: f32[4,3] = softmax %z
           return %y
         }",
    );
    gradcheck(
        "func @f(%pos: f32[4,3], %t: i32[4]) -> (f32[]) {
           %y: f32[] = cross_entropy %pos, %t
           return %y
         }",
    );
    gradcheck(
        "func @f(%z: f32[4,3], %t: i32[4]) -> (f32[]) {
           %y: f32[] = softmax_xent %z, %t
           return %y
         }",
    );
}

#[test]
fn softmax_xent_is_softmax_then_cross_entropy() {
    let fused = parse_function(
        "func @f(%z: f32[2,3], %t: i32[2]) -> (f32[], f32[2,3]) {
           %l: f32[] = softmax_xent %z, %t
           %one: f32[] = const value=1.0
           %g: f32[2,3] = softmax_xent_grad %z, %t, %one
           return %l, %g
         }",
    )
    .unwrap();
    let z = Tensor::<f64>::from_f64(&[2, 3], &[1.0, 2.0, 3.0, -1.0, 0.5, 20.0]);
    let t = Tensor::I32(ndarray::ArrayD::from_shape_vec(vec![2], vec![2, 0]).unwrap());
    let out = nnc_ir::interp::run_f64(&fused, vec![z, t]).unwrap();
    let l = out[0].scalar().unwrap();
    let lse = |r: [f64; 3]| r.iter().map(|x| x.exp()).sum::<f64>().ln();
    let expected = ((lse([1.0, 2.0, 3.0]) - 3.0) + (lse([-1.0, 0.5, 20.0]) + 1.0)) / 2.0;
    assert!((l - expected).abs() < 1e-12, "{l} vs {expected}");
    // The gradient is (softmax − onehot) / B: each row sums to zero.
    let g = out[1].as_f().unwrap();
    for row in g.outer_iter() {
        assert!(row.sum().abs() < 1e-12);
    }
}

#[test]
fn malformed_text_gives_located_errors() {
    let cases = [
        (
            "func @f(%x: f32[2]) -> (f32[2]) {\n  %y: f32[2] = frobnicate %x\n  return %y\n}",
            2,
            "unknown op",
        ),
        (
            "func @f(%x: f32[2]) -> (f32[2]) {\n  %y: f32[2] = exp %z\n  return %y\n}",
            2,
            "not defined",
        ),
        (
            "func @f(%x: f32[2]) -> (f32[2]) {\n  %y: f32[3] = exp %x\n  return %y\n}",
            2,
            "declared",
        ),
        (
            "func @f(%x: f32[2]) -> (f32[2]) {\n  %y: f32[2] = exp %x, %x\n  return %y\n}",
            2,
            "takes 1 operand, found 2",
        ),
        (
            "func @f(%x: f32[2]) -> (f32[2]) {\n  %y: f32[2] = reduce_sum %x\n  return %y\n}",
            2,
            "axes",
        ),
        (
            "func @f(%x: f32[2]) -> (f32[2]) {\n  %x: f32[2] = exp %x\n  return %x\n}",
            2,
            "twice",
        ),
        (
            "func @f(%x: f32[2]) -> (f32[2]) {\n  %y: f32[2] = exp %x\n}",
            3,
            "expected",
        ),
        (
            "func @f(%x: f32[2]) -> (f32[3]) {\n  %y: f32[2] = exp %x\n  return %y\n}",
            1,
            "result",
        ),
        ("func @f(%x: q8[2]) -> () {\n  return\n}", 1, "expected"),
        (
            "func @f(%x: f32[2,3]) -> (f32[3,3]) {\n  %y: f32[3,3] = matmul %x, %x\n  return %y\n}",
            2,
            "inner dimensions",
        ),
        (
            "func @f(%x: f32[2]) -> (f32[2]) {\n  %y: f32[2] = concat %x, axis=0\n  return %y\n}",
            2,
            "at least 2 operands",
        ),
        (
            "func @f(%x: f32[2,3], %z: f32[3,3]) -> (f32[2,6]) {\n  %y: f32[2,6] = concat %x, %z, axis=1\n  return %y\n}",
            2,
            "other axes differ",
        ),
        (
            "func @f(%x: f32[4,3], %g: f32[4], %b: f32[3]) -> (f32[4,3]) {\n  %y: f32[4,3] = batchnorm %x, %g, %b, eps=0.001\n  return %y\n}",
            2,
            "x's channels",
        ),
        ("", 1, "expected"),
    ];
    for (text, line, phrase) in cases {
        let err = parse(text).expect_err(text);
        assert_eq!(err.line, line, "{err} for\n{text}");
        assert!(
            err.message.contains(phrase),
            "`{}` lacks `{phrase}`",
            err.message
        );
    }
}

#[test]
fn verifier_rejects_ill_typed_functions() {
    let mut f = Function::new("f");
    let x = f.add_param("x", Type::f32(vec![2, 3]));
    // A result type that contradicts the shape rule.
    let y = f.push_typed(
        Op::Unary(nnc_ir::Unary::Exp),
        vec![x],
        Type::f32(vec![3, 2]),
    );
    // A use of a value that is defined later.
    let later = ValueId(y.0 + 1);
    let z = f.push_typed(
        Op::Unary(nnc_ir::Unary::Neg),
        vec![later],
        Type::f32(vec![2, 3]),
    );
    f.results = vec![z];
    let errors = nnc_ir::verify::verify(&f).unwrap_err();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(text.iter().any(|e| e.contains("declared")), "{text:?}");
    assert!(
        text.iter().any(|e| e.contains("before it is defined")),
        "{text:?}"
    );
}
