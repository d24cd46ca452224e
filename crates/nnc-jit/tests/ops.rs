//! Every IR op alone, compiled by the JIT and run against the reference interpreter: each
//! case is a tiny function in the IR's text form, run on seeded random inputs with the
//! portable kernels and on each vector unit the CPU has, each on one thread and with every
//! kernel split into 2 to 4 parts. Shapes are chosen to reach the JIT's distinct code paths (a
//! vector body and a scalar tail, broadcast operands, gemm's small and blocked paths, the direct
//! convolutions by what their lanes hold and im2col, the vector pooling and the scalar one).
//!
//! Parameters' names choose their values: f32 `%pos…` in [0.1, 4), `%tie…` in {−2, −1, −0, 0,
//! 1, 2} (ties and zeros), `%wide…` normal × 8, others normal; i32 `%t<K>…` in 0..K, `%u<K>…`
//! in −1..=K (out of range too), `%key` any; u8 `%sparse…` zero but one in twelve, others any.
//!
//! Results equal the interpreter's (in f32) where both sides perform the same IEEE operations
//! or only choose (data movement, comparisons, selections, integers, the basic arithmetic, the
//! counter-based random numbers); elsewhere they agree with the interpreter in f64 to 1e-4
//! relative, a contraction's scale being the sum of its terms' magnitudes (a reordered sum's
//! error is proportional to it, not to the result).

mod support;

use std::collections::BTreeSet;

use ndarray::{ArrayD, IxDyn};
use nnc_ir::init::Rng;
use nnc_ir::interp::{self, Tensor};
use nnc_ir::parse::parse_function;
use nnc_ir::{Binary, Compare, DType, Function, Op, Unary};
use nnc_jit::testing::vector_units_or_skip;
use nnc_jit::{Options, Program};
use support::{load, widen};

/// The op kinds, each named once. Exhaustive over `Op` and the enums inside it, without a
/// wildcard, so that a new op does not compile until it is named here; `every_op_has_a_case`
/// then fails until a case runs it.
fn kind(op: &Op) -> &'static str {
    match op {
        Op::Unary(u) => match u {
            Unary::Neg => "neg",
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Sqrt => "sqrt",
            Unary::Recip => "recip",
            Unary::Tanh => "tanh",
            Unary::Sigmoid => "sigmoid",
            Unary::Relu => "relu",
            Unary::Step => "step",
            Unary::Abs => "abs",
            Unary::Sign => "sign",
            Unary::Softplus => "softplus",
        },
        Op::Binary(b) => match b {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
            Binary::Max => "max",
            Binary::Min => "min",
        },
        Op::Compare(Compare::Gt) => "gt",
        Op::Compare(Compare::Eq) => "eq",
        Op::Select => "select",
        Op::Const { .. } => "const",
        Op::ConstData { .. } => "const data",
        Op::ReduceSum { .. } => "reduce_sum",
        Op::ReduceMax { .. } => "reduce_max",
        Op::ArgMax { .. } => "argmax",
        Op::MatMul {
            ta: false,
            tb: false,
        } => "matmul",
        Op::MatMul {
            ta: false,
            tb: true,
        } => "matmul_nt",
        Op::MatMul {
            ta: true,
            tb: false,
        } => "matmul_tn",
        Op::MatMul { ta: true, tb: true } => "matmul_tt",
        Op::Conv2d { .. } => "conv2d",
        Op::Conv2dGradInput { .. } => "conv2d_grad_input",
        Op::Conv2dGradFilter { .. } => "conv2d_grad_filter",
        Op::MaxPool { .. } => "maxpool",
        Op::MaxPoolGrad { .. } => "maxpool_grad",
        Op::SumPool { .. } => "sumpool",
        Op::SumPoolGrad { .. } => "sumpool_grad",
        Op::Reshape { .. } => "reshape",
        Op::Transpose { .. } => "transpose",
        Op::Pad { .. } => "pad",
        Op::Slice { .. } => "slice",
        Op::Concat { .. } => "concat",
        Op::Broadcast { .. } => "broadcast",
        Op::ToF32 { .. } => "to_f32",
        Op::OneHot { .. } => "one_hot",
        Op::LeakyRelu { .. } => "leaky_relu",
        Op::Elu { .. } => "elu",
        Op::BatchNorm { .. } => "batchnorm",
        Op::AllReduceSum => "allreduce_sum",
        Op::Softmax => "softmax",
        Op::CrossEntropy => "cross_entropy",
        Op::SoftmaxXent => "softmax_xent",
        Op::SoftmaxXentGrad => "softmax_xent_grad",
        Op::RandomUniform { .. } => "random_uniform",
    }
}

/// The number of names [`kind`] gives.
const KINDS: usize = 54;

/// Whether the JIT computes `op` with the interpreter's IEEE operations in the same order, or
/// only moves, chooses or counts: its results must then be equal.
fn exact(op: &Op) -> bool {
    match op {
        Op::Unary(u) => !matches!(
            u,
            Unary::Exp | Unary::Log | Unary::Tanh | Unary::Sigmoid | Unary::Softplus
        ),
        Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Const { .. }
        | Op::ConstData { .. }
        | Op::ReduceMax { .. }
        | Op::ArgMax { .. }
        | Op::MaxPool { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Pad { .. }
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::Broadcast { .. }
        | Op::ToF32 { .. }
        | Op::OneHot { .. }
        | Op::LeakyRelu { .. }
        | Op::AllReduceSum
        | Op::RandomUniform { .. } => true,
        _ => false,
    }
}

/// Whether `op` sums products of its operands with coefficients ≥ 0 (multilinear): run on the
/// operands' magnitudes, the interpreter gives each element's sum of |terms|.
fn multilinear(op: &Op) -> bool {
    matches!(
        op,
        Op::MatMul { .. }
            | Op::Conv2d { .. }
            | Op::Conv2dGradInput { .. }
            | Op::Conv2dGradFilter { .. }
            | Op::ReduceSum { .. }
            | Op::SumPool { .. }
            | Op::SumPoolGrad { .. }
            | Op::MaxPoolGrad { .. }
    )
}

/// A function to run, and what the vectorised variants must show of the path it takes.
struct Case {
    text: String,
    /// A note some kernel's label must carry on a vector unit (what a direct convolution's
    /// lanes hold, a recognised fused routine).
    label: Option<&'static str>,
    /// Whether the contraction skips the data's zeros on a vector unit.
    sparse: bool,
}

fn case(text: impl Into<String>) -> Case {
    Case {
        text: text.into(),
        label: None,
        sparse: false,
    }
}

impl Case {
    fn label(self, label: &'static str) -> Case {
        Case {
            label: Some(label),
            ..self
        }
    }
    fn sparse(self) -> Case {
        Case {
            sparse: true,
            ..self
        }
    }
}

/// `%y = op %x` on one operand named `x` with its prefix.
fn unary_fn(op: &str, x: &str, shape: &str) -> String {
    format!(
        "func @f(%{x}: f32[{shape}]) -> (f32[{shape}]) {{
           %y: f32[{shape}] = {op} %{x}
           return %y
         }}"
    )
}

/// `%y = op %a, %b` with operand types `a`, `b` and result type `y`.
fn binary_fn(op: &str, (a, ta): (&str, &str), (b, tb): (&str, &str), ty: &str) -> String {
    format!(
        "func @f(%{a}: {ta}, %{b}: {tb}) -> ({ty}) {{
           %y: {ty} = {op} %{a}, %{b}
           return %y
         }}"
    )
}

/// Operand shapes of a binary op and its result: equal, a row, a column, a scalar, and two
/// operands that both broadcast.
const BROADCASTS: [(&str, &str, &str); 5] = [
    ("5,7", "5,7", "5,7"),
    ("5,7", "7", "5,7"),
    ("5,1", "5,7", "5,7"),
    ("", "5,7", "5,7"),
    ("2,1,6", "3,1", "2,3,6"),
];

fn elementwise_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // 35 elements: a vector body and a scalar tail; 3: the scalar loop alone.
    for (op, x) in [
        ("neg", "tie"),
        ("exp", "wide"),
        ("log", "pos"),
        ("sqrt", "pos"),
        ("recip", "pos"),
        ("tanh", "wide"),
        ("sigmoid", "wide"),
        ("relu", "tie"),
        ("step", "tie"),
        ("abs", "tie"),
        ("sign", "tie"),
        ("softplus", "wide"),
    ] {
        for shape in ["5,7", "3"] {
            cases.push(case(unary_fn(op, x, shape)));
        }
    }
    // Composite ops: the JIT runs their decomposition.
    for (op, x) in [("leaky_relu", "tie"), ("elu", "wide"), ("elu", "tie")] {
        for shape in ["5,7", "3"] {
            let text =
                unary_fn(op, x, shape).replace(&format!("%{x}\n"), &format!("%{x}, alpha=0.3\n"));
            cases.push(case(text));
        }
    }
    // Batch normalisation of maps (per channel) and of vectors (per feature).
    for (x, c) in [("4,3,5,6", "3"), ("9,5", "5")] {
        cases.push(case(format!(
            "func @f(%x: f32[{x}], %g: f32[{c}], %b: f32[{c}]) -> (f32[{x}]) {{
               %y: f32[{x}] = batchnorm %x, %g, %b, eps=0.001
               return %y
             }}"
        )));
    }
    for (op, a, b) in [
        ("add", "a", "b"),
        ("sub", "a", "b"),
        ("mul", "a", "b"),
        ("div", "a", "posb"),
        ("max", "tiea", "tieb"),
        ("min", "tiea", "tieb"),
        ("gt", "tiea", "tieb"),
        ("eq", "tiea", "tieb"),
    ] {
        for (sa, sb, sy) in BROADCASTS {
            let t = |s: &str| format!("f32[{s}]");
            cases.push(case(binary_fn(op, (a, &t(sa)), (b, &t(sb)), &t(sy))));
        }
    }
    // Integer comparisons (predictions against labels): scalar loops.
    for op in ["gt", "eq"] {
        cases.push(case(binary_fn(
            op,
            ("t3a", "i32[9]"),
            ("t3b", "i32[9]"),
            "f32[9]",
        )));
        cases.push(case(binary_fn(
            op,
            ("t3a", "i32[9]"),
            ("t3b", "i32[]"),
            "f32[9]",
        )));
    }
    for (c, b) in [("5,7", "7"), ("5,1", "5,7"), ("", "1,7")] {
        cases.push(case(format!(
            "func @f(%tiec: f32[{c}], %a: f32[5,7], %b: f32[{b}]) -> (f32[5,7]) {{
               %y: f32[5,7] = select %tiec, %a, %b
               return %y
             }}"
        )));
    }
    // Bytes on the vector path (contiguous) and the scalar one; integers; floats.
    for (x, scale) in [
        ("img: u8[5,7]", "0.00392156862745098"),
        ("img: u8[3]", "2.5"),
        ("img: u8[2,3,1]", "1.0"),
        ("t9: i32[6]", "0.5"),
        ("x: f32[5,7]", "0.25"),
    ] {
        let (name, ty) = x.split_once(": ").unwrap();
        let shape = &ty[ty.find('[').unwrap()..];
        cases.push(case(format!(
            "func @f(%{name}: {ty}) -> (f32{shape}) {{
               %y: f32{shape} = to_f32 %{name}, scale={scale}
               return %y
             }}"
        )));
    }
    for (x, y) in [("7", "5,7"), ("5,1", "5,7"), ("", "2,3"), ("3,1", "2,3,4")] {
        cases.push(case(format!(
            "func @f(%x: f32[{x}]) -> (f32[{y}]) {{
               %y: f32[{y}] = broadcast %x, shape=[{y}]
               return %y
             }}"
        )));
    }
    cases
}

/// `%y = op %x, attrs` from `x`'s type to `y`'s.
fn op_fn(op: &str, x: &str, y: &str, attrs: &str) -> String {
    let (name, _) = x.split_once(':').unwrap();
    format!(
        "func @f(%{x}) -> ({y}) {{
           %y: {y} = {op} %{name}, {attrs}
           return %y
         }}"
    )
}

fn reduction_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Sums join a loop over their operand: across rows, along them, everything, a bias
    // gradient's axes, a middle axis.
    for (x, y, axes) in [
        ("5,7", "7", "0"),
        ("5,7", "5", "1"),
        ("5,7", "", "0,1"),
        ("37", "", "0"),
        ("3,4,5,6", "4", "0,2,3"),
        ("2,3,4", "2,4", "1"),
    ] {
        cases.push(case(op_fn(
            "reduce_sum",
            &format!("x: f32[{x}]"),
            &format!("f32[{y}]"),
            &format!("axes=[{axes}]"),
        )));
    }
    for (x, y, axes) in [
        ("tie: f32[5,7]", "f32[5]", "1"),
        ("tie: f32[2,3,4]", "f32[3]", "0,2"),
        ("x: f32[5,7]", "f32[]", "0,1"),
    ] {
        cases.push(case(op_fn("reduce_max", x, y, &format!("axes=[{axes}]"))));
    }
    for (x, y, axis) in [
        ("tie: f32[6,5]", "i32[6]", 1),
        ("tie: f32[6,5]", "i32[5]", 0),
        ("x: f32[2,3,4]", "i32[2,3]", 2),
    ] {
        cases.push(case(op_fn("argmax", x, y, &format!("axis={axis}"))));
    }
    cases
}

fn contraction_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // (m, k, n): small; gemm's vector-matrix paths (m or n = 1) and its k ≤ 2 path; big
    // enough to split over the threads, by rows (m ≥ n) and by columns.
    for (m, k, n) in [
        (3, 5, 4),
        (1, 9, 8),
        (7, 9, 1),
        (6, 2, 5),
        (130, 67, 45),
        (40, 101, 131),
    ] {
        for (op, ta, tb) in [
            ("matmul", false, false),
            ("matmul_nt", false, true),
            ("matmul_tn", true, false),
            ("matmul_tt", true, true),
        ] {
            let a = if ta { [k, m] } else { [m, k] };
            let b = if tb { [n, k] } else { [k, n] };
            cases.push(case(format!(
                "func @f(%a: f32[{},{}], %b: f32[{},{}]) -> (f32[{m},{n}]) {{
                   %y: f32[{m},{n}] = {op} %a, %b
                   return %y
                 }}",
                a[0], a[1], b[0], b[1]
            )));
        }
    }
    // Only as the product of image data (a `to_f32` of u8 data, maybe reshaped): the forward
    // product and the weight gradient skip mostly-zero data on a vector unit; dense data takes
    // the GEMM.
    let image_product = |x: &str, op: &str, b: &str, y: &str| {
        format!(
            "func @f(%{x}: u8[32,100], %b: f32[{b}]) -> (f32[{y}]) {{
               %a: f32[32,100] = to_f32 %{x}, scale=0.00392156862745098
               %y: f32[{y}] = {op} %a, %b
               return %y
             }}"
        )
    };
    cases.push(case(image_product("sparse", "matmul", "100,20", "32,20")).sparse());
    cases.push(case(image_product("sparse", "matmul_tn", "32,20", "100,20")).sparse());
    // The products read the bytes (the scaling fused into them); dense data is converted for
    // the GEMM: a part's rows when split by rows, all of A when by columns or transposed.
    cases.push(case(image_product("img", "matmul", "100,20", "32,20")));
    cases.push(case(image_product("img", "matmul", "100,64", "32,64")));
    cases.push(case(image_product("img", "matmul_tn", "32,20", "100,20")));
    // The scaled images also returned: a buffer of floats, which the product reads.
    cases.push(
        case(
            "func @f(%sparse: u8[32,100], %b: f32[100,20]) -> (f32[32,20], f32[32,100]) {
               %a: f32[32,100] = to_f32 %sparse, scale=0.00392156862745098
               %y: f32[32,20] = matmul %a, %b
               return %y, %a
             }",
        )
        .sparse(),
    );
    cases.push(
        case(
            "func @f(%sparse: u8[8,1,10,10], %b: f32[100,12]) -> (f32[8,12]) {
               %x: f32[8,1,10,10] = to_f32 %sparse, scale=0.00392156862745098
               %a: f32[8,100] = reshape %x, shape=[8,100]
               %y: f32[8,12] = matmul %a, %b
               return %y
             }",
        )
        .sparse(),
    );
    cases
}

/// `conv2d` and its gradients for one geometry: input `[b,c,h,w]`, filters `[o,c,kh,kw]`,
/// output `[b,o,oh,ow]`.
fn conv_fns(
    [b, c, h, w]: [usize; 4],
    [o, kh, kw]: [usize; 3],
    stride: [usize; 2],
    padding: [usize; 2],
) -> [String; 3] {
    let oh = (h + 2 * padding[0] - kh) / stride[0] + 1;
    let ow = (w + 2 * padding[1] - kw) / stride[1] + 1;
    let geometry = format!(
        "stride=[{},{}], padding=[{},{}]",
        stride[0], stride[1], padding[0], padding[1]
    );
    let x = format!("f32[{b},{c},{h},{w}]");
    let wt = format!("f32[{o},{c},{kh},{kw}]");
    let y = format!("f32[{b},{o},{oh},{ow}]");
    [
        format!(
            "func @f(%x: {x}, %w: {wt}) -> ({y}) {{
               %y: {y} = conv2d %x, %w, {geometry}
               return %y
             }}"
        ),
        format!(
            "func @f(%dy: {y}, %w: {wt}) -> ({x}) {{
               %dx: {x} = conv2d_grad_input %dy, %w, {geometry}, input=[{h},{w}]
               return %dx
             }}"
        ),
        format!(
            "func @f(%x: {x}, %dy: {y}) -> ({wt}) {{
               %dw: {wt} = conv2d_grad_filter %x, %dy, {geometry}, kernel=[{kh},{kw}]
               return %dw
             }}"
        ),
    ]
}

fn convolution_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Stride 1, no padding, few filters: the direct kernels with positions in the lanes.
    let [fwd, input, filter] = conv_fns([2, 3, 9, 11], [4, 3, 3], [1, 1], [0, 0]);
    cases.push(case(fwd).label("[positions in lanes]"));
    cases.push(case(input).label("[positions in lanes]"));
    cases.push(case(filter).label("[positions in lanes]"));
    // LeNet-5's C3 (16 filters over 10 × 10 positions): output channels in the lanes.
    let [fwd, _, filter] = conv_fns([2, 6, 14, 14], [16, 5, 5], [1, 1], [0, 0]);
    cases.push(case(fwd).label("[channels in lanes]"));
    cases.push(case(filter).label("[channels in lanes]"));
    // Its input gradient at a batch of 32, split in parts of 16: samples in the lanes.
    let [_, input, _] = conv_fns([32, 6, 14, 14], [16, 5, 5], [1, 1], [0, 0]);
    cases.push(case(input).label("[samples in lanes]"));
    // One input channel and 32 filters (a first layer, padded): channels would suit, positions
    // in the lanes are cheaper.
    let [fwd, _, filter] = conv_fns([4, 1, 28, 28], [32, 3, 3], [1, 1], [1, 1]);
    cases.push(case(fwd).label("[positions in lanes]"));
    cases.push(case(filter).label("[positions in lanes]"));
    // Strides and padding (square and not): im2col + GEMM.
    cases.extend(conv_fns([3, 2, 9, 7], [5, 3, 3], [2, 2], [1, 1]).map(case));
    cases.extend(conv_fns([2, 3, 7, 9], [4, 2, 3], [1, 2], [0, 1]).map(case));
    // Windows that do not tile the input: the rows and columns past the last one are not read
    // (their gradient is zero), on each kernel family that takes strides.
    for (x, w, stride, padding) in [
        ([3, 2, 10, 8], [5, 3, 3], [2, 2], [0, 0]),
        ([4, 16, 8, 8], [32, 1, 1], [2, 2], [0, 0]),
        ([4, 16, 14, 14], [32, 3, 3], [2, 2], [0, 0]),
        ([4, 16, 16, 17], [24, 3, 5], [3, 2], [1, 1]),
        ([32, 16, 30, 30], [32, 3, 3], [2, 2], [0, 0]),
        ([16, 32, 14, 14], [64, 1, 1], [2, 2], [0, 0]),
    ] {
        cases.extend(conv_fns(x, w, stride, padding).map(case));
    }
    // A strided input gradient with channels to fill the lanes: a stride-1 product per phase
    // of the stride (strides 2 and 3, padded, square and not).
    for (x, w, stride, padding) in [
        ([4, 16, 15, 15], [32, 3, 3], [2, 2], [1, 1]),
        ([4, 16, 13, 16], [24, 3, 5], [2, 3], [0, 2]),
    ] {
        let [_, input, _] = conv_fns(x, w, stride, padding);
        cases.push(case(input).label("[stride phases on channels in lanes]"));
    }
    // Stride 1 on wide im2col + GEMM: the filter gradient of a filter wider than the direct
    // one takes (5; its forward product and input gradient stay direct), and all three on a
    // plane larger than the direct kernels hold (8,192 positions).
    cases.extend(conv_fns([2, 1, 8, 12], [2, 3, 7], [1, 1], [0, 0]).map(case));
    cases.extend(conv_fns([1, 1, 100, 100], [2, 3, 3], [1, 1], [0, 0]).map(case));
    // Fused only: a direct forward convolution adds its bias and rectifies as it stores, when
    // it splits over the threads and its epilogue is exactly `add` of a reshaped bias, `relu`.
    cases.push(
        case(
            "func @f(%x: f32[4,6,14,14], %w: f32[16,6,5,5], %b: f32[16]) -> (f32[4,16,10,10]) {
               %c: f32[4,16,10,10] = conv2d %x, %w, stride=[1,1], padding=[0,0]
               %r: f32[16,1,1] = reshape %b, shape=[16,1,1]
               %s: f32[4,16,10,10] = add %c, %r
               %y: f32[4,16,10,10] = relu %s
               return %y
             }",
        )
        .label("[bias and relu in the direct kernel]"),
    );
    // The other families apply the activation after their product, part by part: LeCun's
    // scaled tanh with both its values read, on the channels kernel (LeNet-5's C3) and on
    // Winograd's (16 channels, 3×3).
    for (x, w, y, padding, family) in [
        (
            "f32[8,6,14,14]",
            "f32[16,6,5,5]",
            "f32[8,16,10,10]",
            0,
            "direct",
        ),
        (
            "f32[8,16,12,12]",
            "f32[16,16,3,3]",
            "f32[8,16,12,12]",
            1,
            "winograd",
        ),
    ] {
        let label = match family {
            "direct" => "[bias and tanh in the direct kernel]",
            _ => "[bias and tanh in the winograd kernel]",
        };
        cases.push(
            case(format!(
                "func @f(%x: {x}, %w: {w}, %b: f32[16]) -> ({y}, {y}) {{
               %c: {y} = conv2d %x, %w, stride=[1,1], padding=[{padding},{padding}]
               %r: f32[16,1,1] = reshape %b, shape=[16,1,1]
               %s: {y} = add %c, %r
               %k: f32[] = const value=0.6666666666666666
               %q: f32[] = const value=1.7159
               %a: {y} = mul %s, %k
               %t: {y} = tanh %a
               %z: {y} = mul %t, %q
               return %t, %z
             }}"
            ))
            .label(label),
        );
    }
    // On positions in the lanes (one input channel), also `tanh(y + b)` and LeCun's scaled
    // tanh with both its values read (`t` for the derivative, `1.7159·t` by the next layer),
    // or the scaled one alone; sigmoid likewise.
    for (ops, results) in [
        ("%y: f32[8,6,24,24] = tanh %s", "%y"),
        ("%y: f32[8,6,24,24] = sigmoid %s", "%y"),
        (
            "%a: f32[8,6,24,24] = mul %s, %k
               %t: f32[8,6,24,24] = tanh %a
               %y: f32[8,6,24,24] = mul %t, %q",
            "%t, %y",
        ),
        (
            "%a: f32[8,6,24,24] = mul %s, %k
               %t: f32[8,6,24,24] = tanh %a
               %y: f32[8,6,24,24] = mul %t, %q",
            "%y",
        ),
    ] {
        let outs = vec!["f32[8,6,24,24]"; results.split(", ").count()].join(", ");
        cases.push(
            case(format!(
                "func @f(%x: f32[8,1,28,28], %w: f32[6,1,5,5], %b: f32[6]) -> ({outs}) {{
               %c: f32[8,6,24,24] = conv2d %x, %w, stride=[1,1], padding=[0,0]
               %r: f32[6,1,1] = reshape %b, shape=[6,1,1]
               %s: f32[8,6,24,24] = add %c, %r
               %k: f32[] = const value=0.6666666666666666
               %q: f32[] = const value=1.7159
               {ops}
               return {results}
             }}"
            ))
            .label(if ops.contains("sigmoid") {
                "[bias and sigmoid in the direct kernel]"
            } else {
                "[bias and tanh in the direct kernel]"
            }),
        );
    }
    // A residual block's sum: a padded, strided convolution (on the kernel the cost model
    // picks: im2col + GEMM or the channels kernel) adds its bias and the other branch and
    // rectifies as it stores. The branch read again after it (its
    // own buffer), and a branch that dies there (the result reuses its buffer), in either
    // operand order of the sums.
    cases.push(
        case(
            "func @f(%x: f32[8,8,23,23], %w: f32[16,8,3,3], %b: f32[16], %k: f32[8,16,12,12]) -> (f32[8,16,12,12], f32[8,16,6,6]) {
               %c: f32[8,16,12,12] = conv2d %x, %w, stride=[2,2], padding=[1,1]
               %r: f32[16,1,1] = reshape %b, shape=[16,1,1]
               %s: f32[8,16,12,12] = add %c, %r
               %t: f32[8,16,12,12] = add %k, %s
               %y: f32[8,16,12,12] = relu %t
               %z: f32[8,16,6,6] = maxpool %k, size=[2,2], stride=[2,2]
               return %y, %z
             }",
        )
        .label("[bias, residual sum and relu in the"),
    );
    cases.push(
        case(
            "func @f(%x: f32[8,8,23,23], %w: f32[16,8,3,3], %b: f32[16], %p: f32[8,16,24,24]) -> (f32[8,16,12,12]) {
               %k: f32[8,16,12,12] = maxpool %p, size=[2,2], stride=[2,2]
               %c: f32[8,16,12,12] = conv2d %x, %w, stride=[2,2], padding=[1,1]
               %r: f32[16,1,1] = reshape %b, shape=[16,1,1]
               %s: f32[8,16,12,12] = add %r, %c
               %t: f32[8,16,12,12] = add %s, %k
               %y: f32[8,16,12,12] = relu %t
               return %y
             }",
        )
        .label("[bias, residual sum and relu in the"),
    );
    // The same sum after a stride-1 padded 3×3 convolution, which runs on Winograd's kernel:
    // it stores the sum too.
    cases.push(
        case(
            "func @f(%x: f32[8,8,12,12], %w: f32[16,8,3,3], %b: f32[16], %k: f32[8,16,12,12]) -> (f32[8,16,12,12]) {
               %c: f32[8,16,12,12] = conv2d %x, %w, stride=[1,1], padding=[1,1]
               %r: f32[16,1,1] = reshape %b, shape=[16,1,1]
               %s: f32[8,16,12,12] = add %c, %r
               %t: f32[8,16,12,12] = add %k, %s
               %y: f32[8,16,12,12] = relu %t
               return %y
             }",
        )
        .label("[bias, residual sum and relu in the winograd kernel]"),
    );
    // 3×3 at stride 1 with 16 channels: all three products on Winograd's F(2×2, 3×3), padded
    // and not (8 samples: too few for the samples in the lanes), and a forward product that
    // reads a folded `pad` (its low rows added to the op's: 2 above, 1 left).
    for padding in [[1, 1], [0, 0]] {
        let fns = conv_fns([8, 16, 14, 13], [16, 3, 3], [1, 1], padding);
        cases.extend(fns.map(|f| case(f).label("[winograd F(2x2, 3x3)]")));
    }
    cases.push(
        case(
            "func @f(%x: f32[16,16,13,14], %w: f32[24,16,3,3]) -> (f32[16,24,14,14]) {
               %p: f32[16,16,14,14] = pad %x, pads=[0,0,0,0,1,0,0,0]
               %y: f32[16,24,14,14] = conv2d %p, %w, stride=[1,1], padding=[1,1]
               return %y
             }",
        )
        .label("[winograd F(2x2, 3x3)]"),
    );
    // Stride-1 padding on the direct kernels, each product: a padded copy of the input (of
    // the input gradient, cropped), square and not, in lanes of channels, positions and
    // samples (filters not 3×3, which Winograd's kernel would take).
    for (x, w, padding) in [
        ([4, 8, 12, 12], [16, 5, 3], [2, 1]),
        ([2, 3, 9, 11], [4, 3, 5], [1, 2]),
    ] {
        let fns = conv_fns(x, w, [1, 1], padding);
        cases.extend(fns.map(|f| case(f).label(" in lanes]")));
    }
    let [_, input, _] = conv_fns([32, 6, 14, 14], [16, 5, 5], [1, 1], [2, 2]);
    cases.push(case(input).label("[samples in lanes]"));
    // Padding folded into the convolutions (a `pad` read by a forward product and a filter
    // gradient, a `slice` cropping an input gradient), uneven and added to the op's own.
    cases.push(case(FOLDED_PAD));
    cases.push(case(FOLDED_SLICE));
    // Not folded: the direct kernel reads the padded copy (LeNet-5's C1).
    cases.push(case(
        "func @f(%x: f32[2,1,6,6], %w: f32[3,1,5,5]) -> (f32[2,3,6,6]) {
           %p: f32[2,1,10,10] = pad %x, pads=[0,0,0,0,2,2,2,2]
           %y: f32[2,3,6,6] = conv2d %p, %w, stride=[1,1], padding=[0,0]
           return %y
         }",
    ));
    cases
}

const FOLDED_PAD: &str =
    "func @f(%x: f32[3,2,8,7], %w: f32[5,2,3,3], %dy: f32[3,5,5,5]) -> (f32[3,5,5,5], f32[5,2,3,3]) {
       %p: f32[3,2,9,9] = pad %x, pads=[0,0,0,0,1,0,0,2]
       %y: f32[3,5,5,5] = conv2d %p, %w, stride=[2,2], padding=[1,1]
       %dw: f32[5,2,3,3] = conv2d_grad_filter %p, %dy, stride=[2,2], padding=[1,1], kernel=[3,3]
       return %y, %dw
     }";

const FOLDED_SLICE: &str = "func @f(%dy: f32[3,5,5,5], %w: f32[5,2,3,3]) -> (f32[3,2,8,7]) {
       %dp: f32[3,2,9,9] = conv2d_grad_input %dy, %w, stride=[2,2], padding=[1,1], input=[9,9]
       %dx: f32[3,2,8,7] = slice %dp, start=[0,0,1,0], end=[3,2,9,7]
       return %dx
     }";

#[test]
fn composite_ops_are_refused_until_decomposed() {
    let text = unary_fn("elu", "x", "4").replace("%x\n", "%x, alpha=1.0\n");
    let f = parse_function(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    match Program::compile(&f, Options::default()) {
        Err(e) => assert!(
            e.to_string().contains("`elu` is compiled as primitives"),
            "{e}"
        ),
        Ok(_) => panic!("`elu` compiled without its decomposition"),
    }
}

/// The `pad` and the `slice` of [`FOLDED_PAD`] and [`FOLDED_SLICE`] run as no kernel of their
/// own (their values are checked in `convolutions`); LeNet-5's, before a direct kernel, do.
#[test]
fn padding_folds_into_convolutions() {
    for (text, op) in [(FOLDED_PAD, "pad"), (FOLDED_SLICE, "slice")] {
        let f = parse_function(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for options in variants() {
            let p = Program::compile(&f, options).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let labels: Vec<String> = (0..p.kernel_count()).map(|k| p.kernel_label(k)).collect();
            assert!(
                labels.iter().all(|l| !l.contains(op)),
                "{options:?}: a `{op}` kernel in {labels:#?}"
            );
            assert!(labels.iter().any(|l| l.contains("conv2d")), "{labels:#?}");
        }
    }
    let lenet = "func @f(%x: f32[2,1,28,28], %w: f32[6,1,5,5]) -> (f32[2,6,28,28]) {
           %p: f32[2,1,32,32] = pad %x, pads=[0,0,0,0,2,2,2,2]
           %y: f32[2,6,28,28] = conv2d %p, %w, stride=[1,1], padding=[0,0]
           return %y
         }";
    let f = parse_function(lenet).unwrap_or_else(|e| panic!("{e}"));
    let p = Program::compile(&f, Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!((0..p.kernel_count()).any(|k| p.kernel_label(k).starts_with("pad")));
}

fn pooling_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // 2 × 2, stride 2 (the vector kernels), odd numbers of windows; overlapping and
    // non-square windows (the scalar ones); rank 3.
    for (x, y, size, stride) in [
        ("2,3,8,10", "2,3,4,5", "2,2", "2,2"),
        ("2,3,6,14", "2,3,3,7", "2,2", "2,2"),
        ("2,3,7,9", "2,3,3,4", "3,3", "2,2"),
        ("2,3,6,7", "2,3,5,6", "2,2", "1,1"),
        ("3,6,7", "3,3,5", "2,3", "2,1"),
        // Rounded down: rows and columns past the last window, which none reads.
        ("2,3,9,11", "2,3,4,5", "2,2", "2,2"),
        ("2,3,8,8", "2,3,3,3", "3,3", "2,2"),
        ("2,3,7,10", "2,3,2,3", "3,3", "3,3"),
    ] {
        let window = format!("size=[{size}], stride=[{stride}]");
        for x_name in ["tie", "x"] {
            cases.push(case(op_fn(
                "maxpool",
                &format!("{x_name}: f32[{x}]"),
                &format!("f32[{y}]"),
                &window,
            )));
            cases.push(case(format!(
                "func @f(%{x_name}: f32[{x}], %dy: f32[{y}]) -> (f32[{x}]) {{
                   %dx: f32[{x}] = maxpool_grad %{x_name}, %dy, {window}
                   return %dx
                 }}"
            )));
        }
        cases.push(case(op_fn(
            "sumpool",
            &format!("x: f32[{x}]"),
            &format!("f32[{y}]"),
            &window,
        )));
        let (h, w) = {
            let d: Vec<&str> = x.split(',').collect();
            (d[d.len() - 2], d[d.len() - 1])
        };
        cases.push(case(op_fn(
            "sumpool_grad",
            &format!("dy: f32[{y}]"),
            &format!("f32[{x}]"),
            &format!("{window}, input=[{h},{w}]"),
        )));
    }
    // Fused only: a 2 × 2 pool gradient with its ReLU mask and bias gradient (LeNet's backward
    // pass), recognised as one vector pass when it splits over the threads; also on planes
    // with an odd row and column, which no window reads.
    for plane in [10, 11] {
        let x = format!("f32[4,16,{plane},{plane}]");
        cases.push(
            case(format!(
                "func @f(%x: {x}, %dy: f32[4,16,5,5]) -> ({x}, f32[16]) {{
                   %g: {x} = maxpool_grad %x, %dy, size=[2,2], stride=[2,2]
                   %m: {x} = step %x
                   %d: {x} = mul %g, %m
                   %db: f32[16] = reduce_sum %d, axes=[0,2,3]
                   return %d, %db
                 }}"
            ))
            .label("[one pass on"),
        );
    }
    cases
}

fn layout_cases() -> Vec<Case> {
    let mut cases = vec![
        // A sum over one process (a copy) of a parameter, and of a loop's result read by a
        // loop.
        case(
            "func @f(%x: f32[5,7]) -> (f32[5,7], f32[5,7]) {
               %s: f32[5,7] = allreduce_sum %x
               %n: f32[5,7] = neg %x
               %t: f32[5,7] = allreduce_sum %n
               %y: f32[5,7] = mul %t, %x
               return %s, %y
             }",
        ),
        // A view of a parameter, and of a loop's result.
        case(op_fn("reshape", "x: f32[5,7]", "f32[35]", "shape=[35]")),
        case(
            "func @f(%x: f32[2,3,4]) -> (f32[6,4]) {
               %n: f32[2,3,4] = neg %x
               %y: f32[6,4] = reshape %n, shape=[6,4]
               return %y
             }",
        ),
    ];
    for (x, y, perm) in [
        ("5,7", "7,5", "1,0"),
        ("2,3,4", "4,2,3", "2,0,1"),
        ("2,3,4,5", "2,4,5,3", "0,2,3,1"),
    ] {
        cases.push(case(op_fn(
            "transpose",
            &format!("x: f32[{x}]"),
            &format!("f32[{y}]"),
            &format!("perm=[{perm}]"),
        )));
    }
    // Inner axes (splits over samples), the leading one (does not), LeNet's input padding.
    for (x, y, pads) in [
        ("2,3,4", "2,6,7", "0,0,1,2,2,1"),
        ("2,3", "4,6", "1,1,0,3"),
        ("3,1,6,6", "3,1,10,10", "0,0,0,0,2,2,2,2"),
    ] {
        cases.push(case(op_fn(
            "pad",
            &format!("x: f32[{x}]"),
            &format!("f32[{y}]"),
            &format!("pads=[{pads}]"),
        )));
    }
    for (x, y, start, end) in [
        ("5,7", "3,5", "1,2", "4,7"),
        ("2,3,4", "1,3,2", "1,0,1", "2,3,3"),
    ] {
        cases.push(case(op_fn(
            "slice",
            &format!("x: f32[{x}]"),
            &format!("f32[{y}]"),
            &format!("start=[{start}], end=[{end}]"),
        )));
    }
    // Three branches of different channel counts (rows shorter and longer than a vector),
    // the first written by a loop (a prologue when the concat splits over samples), one
    // operand twice; dense features; along the leading axis (runs whole).
    cases.push(case(
        "func @f(%a: f32[3,2,4,5], %b: f32[3,1,4,5], %c: f32[3,5,4,5]) -> (f32[3,10,4,5]) {
           %r: f32[3,2,4,5] = relu %a
           %y: f32[3,10,4,5] = concat %r, %b, %c, %r, axis=1
           return %y
         }",
    ));
    cases.push(case(
        "func @f(%a: f32[4,3], %b: f32[4,20]) -> (f32[4,23]) {
           %y: f32[4,23] = concat %a, %b, axis=1
           return %y
         }",
    ));
    // Operands their loops write in place in the result (one also read by another loop),
    // with a parameter and a product's result copied: branches of an Inception block.
    cases.push(case(
        "func @f(%a: f32[3,2,4,5], %b: f32[3,1,4,5], %c: f32[3,5,4,5]) -> (f32[3,11,4,5], f32[3,5,4,5]) {
           %r: f32[3,2,4,5] = relu %a
           %t: f32[3,1,4,5] = tanh %b
           %e: f32[3,5,4,5] = exp %c
           %s: f32[3,5,4,5] = mul %e, %c
           %y: f32[3,11,4,5] = concat %b, %r, %t, %e, %a, axis=1
           return %y, %s
         }",
    ));
    cases.push(case(
        "func @f(%a: f32[4,3], %w: f32[3,6], %b: f32[4,5], %c: f32[4,7]) -> (f32[4,18]) {
           %m: f32[4,6] = matmul %a, %w
           %t: f32[4,5] = tanh %b
           %u: f32[4,7] = sigmoid %c
           %y: f32[4,18] = concat %m, %t, %u, axis=1
           return %y
         }",
    ));
    // Slices of a buffer (a concat's gradient): read in place by the loops that use them
    // (a product, a sum, boxes inside the inner axes too), or copied for a library kernel.
    cases.push(case(
        "func @f(%a: f32[3,2,4,4], %g: f32[3,7,4,4]) -> (f32[3,2,4,4], f32[3,3], f32[3,5,2,2]) {
           %d: f32[3,7,4,4] = tanh %g
           %s0: f32[3,2,4,4] = slice %d, start=[0,0,0,0], end=[3,2,4,4]
           %s1: f32[3,5,4,4] = slice %d, start=[0,2,0,0], end=[3,7,4,4]
           %s2: f32[3,3,3,4] = slice %d, start=[0,3,1,0], end=[3,6,4,4]
           %m: f32[3,2,4,4] = mul %s0, %a
           %e: f32[3,3,3,4] = exp %s2
           %r: f32[3,3] = reduce_sum %e, axes=[2,3]
           %p: f32[3,5,2,2] = maxpool %s1, size=[2,2], stride=[2,2]
           return %m, %r, %p
         }",
    ));
    cases.push(case(
        "func @f(%a: f32[2,3], %b: f32[1,3]) -> (f32[3,3]) {
           %y: f32[3,3] = concat %a, %b, axis=0
           return %y
         }",
    ));
    cases
}

fn classification_cases() -> Vec<Case> {
    vec![
        case(op_fn("one_hot", "u4: i32[9]", "f32[9,4]", "classes=4")),
        case(unary_fn("softmax", "wide", "6,5")),
        case(unary_fn("softmax", "x", "2,3,5")),
        case(
            "func @f(%pos: f32[6,5], %t5: i32[6]) -> (f32[]) {
               %y: f32[] = cross_entropy %pos, %t5
               return %y
             }",
        ),
        case(
            "func @f(%wide: f32[6,5], %t5: i32[6]) -> (f32[]) {
               %y: f32[] = softmax_xent %wide, %t5
               return %y
             }",
        ),
        case(
            "func @f(%wide: f32[6,5], %t5: i32[6], %dl: f32[]) -> (f32[6,5]) {
               %y: f32[6,5] = softmax_xent_grad %wide, %t5, %dl
               return %y
             }",
        ),
        case(
            "func @f(%key: i32[]) -> (f32[5,7]) {
               %y: f32[5,7] = random_uniform %key, stream=3, shape=[5,7]
               return %y
             }",
        ),
        case(
            "func @f(%key: i32[]) -> (f32[2,3,4]) {
               %y: f32[2,3,4] = random_uniform %key, stream=0, shape=[2,3,4]
               return %y
             }",
        ),
    ]
}

fn constant_cases() -> Vec<Case> {
    let data = "data=[1.0,0.0,-2.5,0.5,3.0,-1.0]";
    vec![
        // Returned as they are; inlined in a loop; read by a library kernel.
        case(
            "func @f() -> (f32[2,3]) {
               %c: f32[2,3] = const value=1.5
               return %c
             }",
        ),
        case(
            "func @f(%x: f32[5,7]) -> (f32[5,7]) {
               %c: f32[] = const value=-0.75
               %y: f32[5,7] = mul %x, %c
               return %y
             }",
        ),
        case(
            "func @f(%x: f32[4,6]) -> (f32[4,3]) {
               %c: f32[6,3] = const value=0.5
               %y: f32[4,3] = matmul %x, %c
               return %y
             }",
        ),
        case(format!(
            "func @f() -> (f32[2,3]) {{
               %c: f32[2,3] = const {data}
               return %c
             }}"
        )),
        case(format!(
            "func @f(%x: f32[4,2,3]) -> (f32[4,2,3]) {{
               %c: f32[2,3] = const {data}
               %y: f32[4,2,3] = mul %x, %c
               return %y
             }}"
        )),
        case(format!(
            "func @f(%x: f32[4,2]) -> (f32[4,3]) {{
               %c: f32[2,3] = const {data}
               %y: f32[4,3] = matmul %x, %c
               return %y
             }}"
        )),
    ]
}

/// Every family of cases.
fn all_cases() -> Vec<Case> {
    [
        elementwise_cases(),
        reduction_cases(),
        contraction_cases(),
        convolution_cases(),
        pooling_cases(),
        layout_cases(),
        classification_cases(),
        constant_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Random inputs for `f`'s parameters, chosen by their names (see the module's documentation).
fn inputs(f: &Function, rng: &mut Rng) -> Vec<Tensor<f32>> {
    f.params
        .iter()
        .map(|&p| {
            let t = f.ty(p);
            let name = f.name_of(p).unwrap_or("");
            let shape = IxDyn(&t.shape);
            // `%t5a` → 5.
            let bound = |prefix: char| -> i64 {
                let digits: String = name
                    .strip_prefix(prefix)
                    .unwrap_or("")
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits
                    .parse()
                    .unwrap_or_else(|_| panic!("`%{name}`: i32 parameters are %t<K>, %u<K>, %key"))
            };
            match t.dtype {
                DType::F32 => Tensor::F(ArrayD::from_shape_fn(shape, |_| {
                    if name.starts_with("pos") {
                        (0.1 + 3.9 * rng.uniform()) as f32
                    } else if name.starts_with("tie") {
                        [-2.0, -1.0, -0.0, 0.0, 1.0, 2.0][(rng.next_u64() % 6) as usize]
                    } else if name.starts_with("wide") {
                        (8.0 * rng.normal()) as f32
                    } else {
                        rng.normal() as f32
                    }
                })),
                DType::I32 if name == "key" => {
                    Tensor::I32(ArrayD::from_shape_fn(shape, |_| rng.next_u64() as i32))
                }
                DType::I32 if name.starts_with('u') => {
                    let k = bound('u');
                    Tensor::I32(ArrayD::from_shape_fn(shape, |_| {
                        (rng.next_u64() % (k as u64 + 2)) as i32 - 1
                    }))
                }
                DType::I32 => {
                    let k = bound('t');
                    Tensor::I32(ArrayD::from_shape_fn(shape, |_| {
                        (rng.next_u64() % k as u64) as i32
                    }))
                }
                DType::U8 => Tensor::U8(ArrayD::from_shape_fn(shape, |_| {
                    let r = rng.next_u64();
                    if name.starts_with("sparse") && !r.is_multiple_of(12) {
                        0
                    } else {
                        (r >> 8) as u8
                    }
                })),
            }
        })
        .collect()
}

/// The portable kernels and each vector unit this CPU has, each on one thread and with every
/// kernel that can split split, however small (the portable ones in 3 parts, the vector ones
/// in 2, and on the first unit in 4 too).
fn variants() -> Vec<Options> {
    let units = vector_units_or_skip("ops");
    let four = units.first().map(|&isa| (Some(isa), true, 4));
    std::iter::once(None)
        .chain(units.into_iter().map(Some))
        .flat_map(|isa| {
            let split = if isa.is_none() { 3 } else { 2 };
            [(isa, false, 1), (isa, true, split)]
        })
        .chain(four)
        .map(|(isa, split_small, threads)| Options {
            portable: isa.is_none(),
            isa,
            split_small,
            threads,
            ..Options::default()
        })
        .collect()
}

/// Runs `c` on the interpreter and on the JIT in every [`variants`], and compares.
fn check(c: &Case) {
    let text = &c.text;
    let f = parse_function(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut rng = Rng::new(7);
    let inputs = inputs(&f, &mut rng);
    let run = |inputs: Vec<Tensor<f64>>| {
        interp::run_f64(&f, inputs).unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    // Exact ops against the interpreter in f32; the others against it in f64, so that the
    // reference's own rounding does not count (its f32 softplus is off by 5e-5 where the
    // result is near 1e-3: ln(1 + e^x) rounds 1 + e^x).
    let all_exact = f.insts.iter().all(|i| exact(&i.op));
    let want: Vec<Tensor<f64>> = if all_exact {
        let out = interp::run_f32(&f, inputs.clone()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        out.iter().map(widen).collect()
    } else {
        run(inputs.iter().map(widen).collect())
    };
    // Each element's sum of |terms|, where the function contracts.
    let terms = f.insts.iter().any(|i| multilinear(&i.op)).then(|| {
        run(inputs
            .iter()
            .map(|t| match widen(t) {
                Tensor::F(a) => Tensor::F(a.mapv(f64::abs)),
                other => other,
            })
            .collect())
    });
    let decomposed = nnc_ir::passes::decompose::run(&f);
    for options in variants() {
        let mut p = Program::compile(&decomposed, options)
            .unwrap_or_else(|e| panic!("{options:?}: {e}\n{text}"));
        // Twice: a kernel must not depend on what its previous run left (sums start at 0).
        // The inputs are loaded before each, as a result may be written over its operand.
        for _ in 0..2 {
            for (i, t) in inputs.iter().enumerate() {
                load(&mut p, i, t);
            }
            p.run();
        }
        for (k, w) in want.iter().enumerate() {
            let got = p.result(k).to_vec();
            let what = |j: usize| format!("{options:?} result {k} [{j}]\n{text}");
            match w {
                Tensor::I32(w) => {
                    for (j, (g, w)) in got.iter().zip(w).enumerate() {
                        assert_eq!(g.to_bits() as i32, *w, "{}", what(j));
                    }
                }
                Tensor::F(w) => {
                    // (In logical order: a product's result may be column-major.)
                    let sums: Option<Vec<f64>> = terms
                        .as_ref()
                        .map(|t| t[k].as_f().unwrap().iter().copied().collect());
                    for (j, (&g, &w)) in got.iter().zip(w).enumerate() {
                        let g = f64::from(g);
                        // Equal as numbers: `neg` may give −0 where the interpreter's 0 − x
                        // gives +0.
                        let ok = if all_exact {
                            g == w
                        } else {
                            let sum = sums.as_ref().map_or(0.0, |s| s[j]);
                            let scale = g.abs().max(w.abs()).max(sum).max(1e-3);
                            (g - w).abs() <= 1e-4 * scale
                        };
                        assert!(ok, "jit {g} vs interpreter {w}: {}", what(j));
                    }
                }
                Tensor::U8(_) => unreachable!("no op returns bytes"),
            }
        }
        let labels: Vec<String> = (0..p.kernel_count()).map(|k| p.kernel_label(k)).collect();
        let vector = options.vector_unit().is_some();
        // (What a label names, the lanes of a direct kernel or a fused pass, is chosen for the
        // shapes of at most two parts: more parts have fewer samples, or planes that may not
        // end on a sample.)
        if let Some(label) = c.label.filter(|_| options.threads <= 2) {
            assert_eq!(
                labels.iter().any(|l| l.contains(label)),
                vector,
                "{options:?}: `{label}` in {labels:#?}\n{text}"
            );
        }
        assert_eq!(
            p.sparse_runs() > 0,
            vector && c.sparse,
            "{options:?}: sparse runs\n{text}"
        );
    }
}

fn check_all(cases: Vec<Case>) {
    assert!(!cases.is_empty());
    for c in &cases {
        check(c);
    }
}

#[test]
fn every_op_has_a_case() {
    let mut covered = BTreeSet::new();
    for c in all_cases() {
        let f = parse_function(&c.text).unwrap_or_else(|e| panic!("{e}\n{}", c.text));
        covered.extend(f.insts.iter().map(|i| kind(&i.op)));
    }
    assert_eq!(covered.len(), KINDS, "covered: {covered:?}");
}

#[test]
fn elementwise() {
    check_all(elementwise_cases());
}

#[test]
fn reductions() {
    check_all(reduction_cases());
}

#[test]
fn contractions() {
    check_all(contraction_cases());
}

#[test]
fn convolutions() {
    check_all(convolution_cases());
}

#[test]
fn pooling() {
    check_all(pooling_cases());
}

#[test]
fn layout() {
    check_all(layout_cases());
}

#[test]
fn classification() {
    check_all(classification_cases());
}

#[test]
fn constants() {
    check_all(constant_cases());
}
