//! The model: an MLP spec and ONE flat parameter vector with named views.
//!
//! The flat layout is the contract every backend, the numerical gradient (parameter index p in
//! 0..P), the SGD kernel and checkpoints share: for each layer l = 1..=L in order, the weight
//! `Wl` (fan_in x fan_out, row-major, the chapter's `x @ W` orientation) and then the bias `bl`
//! (fan_out).

use crate::error::{Error, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// Hidden-layer activation. The output layer is always softmax + cross entropy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Sigmoid,
    Relu,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Relu => "relu",
        }
    }
}

/// Layer sizes and activation of a multi-layer perceptron.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MlpSpec {
    pub input: usize,
    pub hidden: Vec<usize>,
    pub classes: usize,
    pub activation: Activation,
}

/// Where one layer's weights and biases sit in the flat vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLayout {
    pub fan_in: usize,
    pub fan_out: usize,
    pub w_offset: usize,
    pub b_offset: usize,
}

impl LayerLayout {
    pub fn w_len(&self) -> usize {
        self.fan_in * self.fan_out
    }
}

/// A named tensor of the flat vector (W1, b1, W2, ...), in the chapter's shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorView {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

/// The most hidden layers a net may have: far beyond any net this program trains, and a bound on
/// what is built from a spec (a checkpoint's metadata is a spec from outside).
pub const MAX_HIDDEN_LAYERS: usize = 256;

impl MlpSpec {
    /// Validates the sizes: every layer needs at least one unit, there are at most
    /// [`MAX_HIDDEN_LAYERS`] hidden layers, and the parameter count (computed with checked
    /// arithmetic) fits in memory addresses, so that [`num_params`](Self::num_params),
    /// [`layers`](Self::layers) and [`tensors`](Self::tensors) cannot overflow. Whether the
    /// parameters fit in this machine's memory is [`budget`](crate::budget)'s question.
    pub fn new(
        input: usize,
        hidden: Vec<usize>,
        classes: usize,
        activation: Activation,
    ) -> Result<Self> {
        if input == 0 {
            return Err(Error::config(
                "input width",
                "must be at least 1 (rows x cols of the images)",
            ));
        }
        if let Some(pos) = hidden.iter().position(|&h| h == 0) {
            return Err(Error::config(
                "--hidden",
                format!("hidden layer {} has 0 units; give each hidden layer at least 1 (e.g. --hidden 50)", pos + 1),
            ));
        }
        if classes < 2 {
            return Err(Error::config(
                "classes",
                "need at least 2 classes for softmax",
            ));
        }
        if hidden.len() > MAX_HIDDEN_LAYERS {
            return Err(Error::config(
                "--hidden",
                format!(
                    "{} hidden layers; at most {MAX_HIDDEN_LAYERS} are supported",
                    hidden.len()
                ),
            ));
        }
        let spec = MlpSpec {
            input,
            hidden,
            classes,
            activation,
        };
        if spec.checked_num_params().is_none() {
            return Err(Error::config(
                "--hidden",
                format!(
                    "the net {} has more parameters than this machine can address; use \
                     smaller layers",
                    spec.describe()
                ),
            ));
        }
        Ok(spec)
    }

    /// The parameter count, or None when it overflows (or when a weight's element offsets would:
    /// the count bounds every offset).
    pub fn checked_num_params(&self) -> Option<usize> {
        let sizes = self.sizes();
        sizes.windows(2).try_fold(0usize, |acc, w| {
            acc.checked_add(w[0].checked_mul(w[1])?.checked_add(w[1])?)
        })
    }

    /// The chapter's TwoLayerNet: 784-50-10, sigmoid.
    pub fn two_layer(input: usize, hidden: usize, classes: usize) -> Result<Self> {
        Self::new(input, vec![hidden], classes, Activation::Sigmoid)
    }

    /// [input, hidden..., classes]
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = Vec::with_capacity(self.hidden.len() + 2);
        s.push(self.input);
        s.extend_from_slice(&self.hidden);
        s.push(self.classes);
        s
    }

    /// Number of weight layers (hidden layers + 1).
    pub fn num_layers(&self) -> usize {
        self.hidden.len() + 1
    }

    pub fn layers(&self) -> Vec<LayerLayout> {
        let sizes = self.sizes();
        let mut off = 0;
        sizes
            .windows(2)
            .map(|w| {
                let l = LayerLayout {
                    fan_in: w[0],
                    fan_out: w[1],
                    w_offset: off,
                    b_offset: off + w[0] * w[1],
                };
                off += w[0] * w[1] + w[1];
                l
            })
            .collect()
    }

    pub fn num_params(&self) -> usize {
        self.layers().iter().map(|l| l.w_len() + l.fan_out).sum()
    }

    /// W1, b1, W2, b2, ... with shapes and offsets.
    pub fn tensors(&self) -> Vec<TensorView> {
        let mut out = Vec::new();
        for (i, l) in self.layers().iter().enumerate() {
            out.push(TensorView {
                name: format!("W{}", i + 1),
                shape: vec![l.fan_in, l.fan_out],
                offset: l.w_offset,
                len: l.w_len(),
            });
            out.push(TensorView {
                name: format!("b{}", i + 1),
                shape: vec![l.fan_out],
                offset: l.b_offset,
                len: l.fan_out,
            });
        }
        out
    }

    /// The name of the tensor that holds flat parameter `p`, and the index inside it.
    pub fn locate(&self, p: usize) -> Option<(String, usize)> {
        self.tensors()
            .into_iter()
            .find(|t| p >= t.offset && p < t.offset + t.len)
            .map(|t| (t.name, p - t.offset))
    }

    /// A short description: "784-50-10 sigmoid".
    pub fn describe(&self) -> String {
        let sizes: Vec<String> = self.sizes().iter().map(|s| s.to_string()).collect();
        format!("{} {}", sizes.join("-"), self.activation.name())
    }
}

/// The parameters: one flat f64 vector (the oracle's precision; f32 backends convert on upload)
/// plus the spec that names its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub spec: MlpSpec,
    pub data: Vec<f64>,
}

/// The chapter's `weight_init_std`.
pub const WEIGHT_INIT_STD: f64 = 0.01;

impl Params {
    pub fn zeros(spec: &MlpSpec) -> Self {
        Params {
            spec: spec.clone(),
            data: vec![0.0; spec.num_params()],
        }
    }

    /// The chapter's initialisation: weights 0.01 x N(0, 1), biases zero. Seeded with a named,
    /// portable generator (PCG64), so a seed gives the same net on every platform.
    pub fn init(spec: &MlpSpec, seed: u64) -> Self {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15);
        let mut p = Self::zeros(spec);
        for l in spec.layers() {
            for w in &mut p.data[l.w_offset..l.w_offset + l.w_len()] {
                let z: f64 = StandardNormal.sample(&mut rng);
                *w = WEIGHT_INIT_STD * z;
            }
        }
        p
    }

    pub fn from_vec(spec: &MlpSpec, data: Vec<f64>) -> Result<Self> {
        if data.len() != spec.num_params() {
            return Err(Error::config(
                "params",
                format!(
                    "{} values for a {} net that has {}",
                    data.len(),
                    spec.describe(),
                    spec.num_params()
                ),
            ));
        }
        Ok(Params {
            spec: spec.clone(),
            data,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&[f64]> {
        self.spec
            .tensors()
            .into_iter()
            .find(|t| t.name == name)
            .map(|t| &self.data[t.offset..t.offset + t.len])
    }

    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }
}

/// ||a - b|| / ||b|| (the relative error used throughout; 0 when both are zero).
pub fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(
        a.len(),
        b.len(),
        "relative_error on vectors of different lengths"
    );
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_layer_net_has_the_chapters_shapes() {
        let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
        assert_eq!(spec.num_params(), 39760);
        let t = spec.tensors();
        let shapes: Vec<(String, Vec<usize>)> = t
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        assert_eq!(
            shapes,
            vec![
                ("W1".into(), vec![784, 50]),
                ("b1".into(), vec![50]),
                ("W2".into(), vec![50, 10]),
                ("b2".into(), vec![10])
            ]
        );
        assert_eq!(t[1].offset, 784 * 50);
        assert_eq!(spec.locate(39759), Some(("b2".into(), 9)));
    }

    #[test]
    fn init_is_seeded_and_scaled() {
        let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
        let a = Params::init(&spec, 7);
        let b = Params::init(&spec, 7);
        let c = Params::init(&spec, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let w1 = a.tensor("W1").unwrap();
        let std = (w1.iter().map(|v| v * v).sum::<f64>() / w1.len() as f64).sqrt();
        assert!((std - 0.01).abs() < 0.0005, "std {std}");
        assert!(a.tensor("b1").unwrap().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn zero_sizes_are_config_errors() {
        let e = MlpSpec::new(784, vec![0], 10, Activation::Sigmoid).unwrap_err();
        assert!(e.to_string().contains("--hidden"), "{e}");
    }
}
