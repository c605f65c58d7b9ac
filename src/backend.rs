//! The one interface a training step needs, implemented by the CPU backend (f64 oracle and f32
//! fast path) and the GPU backend. The driver and the checker only ever talk to this trait.

use crate::data::Mnist;
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Params};

/// Every backend's first check: the net's input and output widths are the data's.
pub fn check_spec_fits(spec: &MlpSpec, data: &Mnist) -> Result<()> {
    let width = data.train.input_width();
    if spec.input != width || spec.classes != data.train.classes() {
        return Err(Error::config(
            "model",
            format!(
                "the net {} does not fit the data ({} inputs, {} classes)",
                spec.describe(),
                width,
                data.train.classes()
            ),
        ));
    }
    Ok(())
}

/// Every backend's `set_params` check: the parameters are of the backend's net.
pub fn check_params_fit(spec: &MlpSpec, params: &Params) -> Result<()> {
    if params.spec != *spec {
        return Err(Error::config(
            "params",
            format!(
                "parameters of a {} net given to a {} backend",
                params.spec.describe(),
                spec.describe()
            ),
        ));
    }
    Ok(())
}

/// The chapter's delta inside the log of the cross entropy: -ln(y_t + 1e-7).
pub const CEE_DELTA: f64 = 1e-7;

/// The chapter's step for the numerical gradient.
pub const DEFAULT_H: f64 = 1e-4;

/// How the numerical gradient evaluates L(theta +- h e_p). Both give the same function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PerturbStrategy {
    /// The chapter's way: a whole forward pass per perturbation.
    Full,
    /// Re-compute only what the perturbed parameter reaches, from the cached unperturbed pass
    /// (zero inputs skip), and compute each sample's loss CHANGE directly.
    Incremental,
}

impl PerturbStrategy {
    pub fn name(self) -> &'static str {
        match self {
            PerturbStrategy::Full => "full",
            PerturbStrategy::Incremental => "incremental",
        }
    }
}

/// Which gradient a step uses.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradMethod {
    /// Analytic, through the layers (the fast path the chapter's sequel introduces).
    Backprop,
    /// Central difference (L(theta + h e_p) - L(theta - h e_p)) / 2h for every parameter p.
    Numerical { strategy: PerturbStrategy, h: f64 },
}

impl GradMethod {
    pub fn describe(&self) -> String {
        match self {
            GradMethod::Backprop => "backprop".to_string(),
            GradMethod::Numerical { strategy, h } => {
                format!("numerical ({}, h = {h:e})", strategy.name())
            }
        }
    }
}

/// Which part of the data set an evaluation runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Loss and accuracy over a whole split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy loss (delta included).
    pub loss: f64,
    pub correct: usize,
    pub count: usize,
}

impl Evaluation {
    pub fn accuracy(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.correct as f64 / self.count as f64
        }
    }
}

/// What a training step needs from a device. Backends own a copy of the data set (the GPU one
/// keeps it resident); a batch is named by indices into the training split.
pub trait Backend {
    /// A one-line description: "cpu f64", "gpu llvmpipe (Vulkan, Cpu)".
    fn name(&self) -> String;
    fn spec(&self) -> &MlpSpec;
    fn set_params(&mut self, params: &Params) -> Result<()>;
    /// Reads the parameters back (a device-to-host copy on the GPU).
    fn params(&mut self) -> Result<Params>;
    /// Selects the mini-batch: indices into the training split.
    fn set_batch(&mut self, indices: &[u32]) -> Result<()>;
    /// Mean loss of the current batch at the current parameters.
    fn batch_loss(&mut self) -> Result<f64>;
    /// The gradient of the current batch's mean loss, read back to the host.
    fn gradient(&mut self, method: GradMethod) -> Result<Vec<f64>>;
    /// One SGD step on the current batch (gradient, then params -= lr * grad), without reading
    /// anything back.
    fn step(&mut self, method: GradMethod, lr: f64) -> Result<()>;
    /// Loss and accuracy over a whole split at the current parameters.
    fn evaluate(&mut self, split: Split) -> Result<Evaluation>;
    /// Seconds the device spent on the last batch call (batch_loss or gradient), from GPU
    /// timestamp queries; None where there are none (the CPU, adapters without them).
    fn last_device_seconds(&mut self) -> Result<Option<f64>> {
        Ok(None)
    }
}
