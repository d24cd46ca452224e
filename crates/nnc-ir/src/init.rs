//! Weight initialisation from a seed: the same seed gives the same weights on every run and
//! machine. Each tensor draws from its own stream, keyed by its name, so adding a layer does
//! not change the others' starting weights.

use nnc_check::{Init, LayerKind, Model};

/// A parameter tensor's name, shape and initial values.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// SplitMix64: tiny, fast, well-distributed, and fully specified, so the weights do not
/// depend on a library's version.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Standard normal restricted to [−2, 2] by redrawing.
    pub fn truncated_normal(&mut self) -> f64 {
        loop {
            let z = self.normal();
            if z.abs() <= 2.0 {
                return z;
            }
        }
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The standard deviation of a unit truncated normal, which Keras divides out.
const TRUNCATED_STD: f64 = 0.879_625_661_034_239_8;

fn draw(init: Init, fan_in: f64, fan_out: f64, rng: &mut Rng) -> f64 {
    let uniform = |rng: &mut Rng, limit: f64| (2.0 * rng.uniform() - 1.0) * limit;
    let scaled_normal =
        |rng: &mut Rng, var: f64| rng.truncated_normal() * var.sqrt() / TRUNCATED_STD;
    match init {
        Init::Zeros => 0.0,
        Init::Constant(v) => v,
        Init::Uniform { limit } => uniform(rng, limit),
        Init::Normal { mean, std } => mean + std * rng.normal(),
        Init::TruncatedNormal { mean, std } => mean + std * rng.truncated_normal(),
        Init::GlorotUniform => uniform(rng, (6.0 / (fan_in + fan_out)).sqrt()),
        Init::GlorotNormal => scaled_normal(rng, 2.0 / (fan_in + fan_out)),
        Init::HeUniform => uniform(rng, (6.0 / fan_in).sqrt()),
        Init::HeNormal => scaled_normal(rng, 2.0 / fan_in),
        Init::LecunUniform => uniform(rng, (3.0 / fan_in).sqrt()),
        Init::LecunNormal => scaled_normal(rng, 1.0 / fan_in),
        Init::Torch => uniform(rng, 1.0 / fan_in.sqrt()),
        Init::Lecun98 => uniform(rng, 2.4 / fan_in),
    }
}

/// Initial values of every parameter of `model`, in the order lowering declares them.
pub fn init_params(model: &Model, seed: u64) -> Vec<Tensor> {
    let mut out = Vec::new();
    for layer in &model.layers {
        for p in &layer.params {
            let name = format!("{}.{}", layer.name, p.name);
            let mut rng = Rng::new(seed ^ fnv1a(&name));
            let shape = p.shape.0.clone();
            let n = p.shape.numel() as usize;
            let mut data = Vec::with_capacity(n);
            match (&layer.kind, p.name) {
                // Under a connection table each output map has its own fan-in (LeCun 1998
                // initialises by the unit's actual number of inputs), and unconnected weights
                // start, and stay, at zero.
                (
                    LayerKind::Conv2d {
                        connections: Some(table),
                        kernel,
                        ..
                    },
                    "weight",
                ) => {
                    let (o, c, kk) = (shape[0], shape[1], kernel[0] * kernel[1]);
                    for oi in 0..o {
                        let fan_in = (table.inputs_of(oi) * kk) as f64;
                        for ci in 0..c {
                            for _ in 0..kk {
                                let v = draw(p.init, fan_in, p.fan_out as f64, &mut rng);
                                data.push(if table.table[ci][oi] { v as f32 } else { 0.0 });
                            }
                        }
                    }
                }
                _ => {
                    for _ in 0..n {
                        data.push(draw(p.init, p.fan_in as f64, p.fan_out as f64, &mut rng) as f32);
                    }
                }
            }
            out.push(Tensor { name, shape, data });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(text: &str) -> Model {
        let checked = nnc_check::check_source(text);
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
        checked.models.into_iter().next().unwrap()
    }

    #[test]
    fn same_seed_same_weights() {
        let m = model("model m { input x: f32[20] h: dense(30) -> relu out: dense(5) }");
        assert_eq!(init_params(&m, 7), init_params(&m, 7));
        assert_ne!(init_params(&m, 7), init_params(&m, 8));
    }

    #[test]
    fn glorot_limits_and_spread() {
        let m = model("model m { input x: f32[400] out: dense(200) }");
        let w = &init_params(&m, 1)[0];
        let limit = (6.0f64 / 600.0).sqrt() as f32;
        assert!(w.data.iter().all(|&x| x.abs() <= limit));
        // The variance of U(−a, a) is a²/3.
        let var = w.data.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.data.len() as f64;
        let expected = (limit as f64).powi(2) / 3.0;
        assert!(
            (var / expected - 1.0).abs() < 0.02,
            "variance {var} vs {expected}"
        );
        let bias = &init_params(&m, 1)[1];
        assert!(bias.data.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn truncated_normal_std_matches_keras() {
        let m = model("model m { input x: f32[500] out: dense(400, init: he_normal) }");
        let w = &init_params(&m, 3)[0];
        let var = w.data.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.data.len() as f64;
        assert!((var / (2.0 / 500.0) - 1.0).abs() < 0.02, "variance {var}");
    }

    #[test]
    fn connection_table_zeros_unconnected_weights() {
        let m = model(
            "model m { input x: f32[2, 8, 8] c: conv2d(3, kernel: 3, connections: t) }
             connections t {
               X . X
               . X X
             }",
        );
        let w = &init_params(&m, 1)[0];
        let at = |o: usize, c: usize| &w.data[(o * 2 + c) * 9..(o * 2 + c + 1) * 9];
        assert!(at(0, 1).iter().all(|&x| x == 0.0));
        assert!(at(1, 0).iter().all(|&x| x == 0.0));
        assert!(at(0, 0).iter().all(|&x| x != 0.0));
        assert!(at(2, 1).iter().all(|&x| x != 0.0));
    }
}
