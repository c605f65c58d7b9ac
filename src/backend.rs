//! The one interface a training step needs, implemented by the CPU backend (f64 oracle and f32
//! fast path) and the GPU backend. The driver and the checker only ever talk to this trait.

use crate::data::Mnist;
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Params};
use crate::wait::{ready, LocalFuture};

/// Every backend's first check: the net's input and output widths are the data's, and the
/// test images are as wide as the training images.
pub fn check_spec_fits(spec: &MlpSpec, data: &Mnist) -> Result<()> {
    crate::data::check_same_size(data)?;
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
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum PerturbStrategy {
    /// Two whole forward passes per perturbation (the chapter's way; slow), carried in f64 on
    /// the CPU and double-f32 on the GPU so their difference keeps its digits.
    Full,
    /// Re-compute only what each perturbed parameter reaches, from the cached forward pass, and
    /// each sample's loss CHANGE directly.
    Incremental,
}

/// Which gradient, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum GradKind {
    /// The chapter's numerical gradient: two loss evaluations per parameter.
    Numerical,
    /// The analytic gradient (the chapter's sequel).
    Backprop,
}

impl GradKind {
    /// The method: for the numerical gradient, with its strategy and step.
    pub fn method(self, strategy: PerturbStrategy, h: f64) -> GradMethod {
        match self {
            GradKind::Backprop => GradMethod::Backprop,
            GradKind::Numerical => GradMethod::Numerical { strategy, h },
        }
    }
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

    /// Runs a chunk of SGD steps, one per batch: `batches` holds the steps' index lists back to
    /// back, `batch` indices each. For every completed step it appends to `losses` the batch's
    /// mean loss at the parameters the step's gradient was taken at (before its update: the
    /// loss the gradient pass computes anyway). After each step, or each group of steps handed
    /// to the device, it calls `progress(steps so far)`; `false` (Ctrl-C) stops the chunk after
    /// the steps already under way.
    ///
    /// Divergence: when an update makes the parameters non-finite (seen as a non-finite loss
    /// at the next step, or at the parameters the chunk ends with), the backend puts back the
    /// parameters from before that update and returns `diverged: Some(k)`, k counted within the
    /// chunk; `done` is then k and `losses` holds k + 1 entries, all finite.
    ///
    /// The default drives the step-at-a-time methods (what the CPU needs); the GPU records many
    /// steps per submission and reads the losses back once.
    fn train_steps(
        &mut self,
        batches: &[u32],
        batch: usize,
        method: GradMethod,
        lr: f64,
        losses: &mut Vec<f64>,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<StepsOutcome> {
        train_steps_one_by_one(self, batches, batch, method, lr, losses, progress)
    }

    /// What the backend has cost the host so far (submissions, blocking waits, dispatches,
    /// copies, creations); None where nothing is counted (the CPU).
    fn counters(&self) -> Option<DeviceCounters> {
        None
    }

    // The async core: every method that reads the device back, as a future. The training
    // loop (`train::train_from_async`) awaits these, so in the browser, where a read-back
    // resolves only from the event loop, nothing blocks. The defaults wrap the blocking
    // methods in resolved futures (the CPU never waits); the GPU backend implements these
    // natively and its blocking methods are `wait::block` over them.

    /// [`params`](Self::params) as a future.
    fn params_async(&mut self) -> LocalFuture<'_, Result<Params>> {
        ready(self.params())
    }
    /// [`batch_loss`](Self::batch_loss) as a future.
    fn batch_loss_async(&mut self) -> LocalFuture<'_, Result<f64>> {
        ready(self.batch_loss())
    }
    /// [`gradient`](Self::gradient) as a future.
    fn gradient_async(&mut self, method: GradMethod) -> LocalFuture<'_, Result<Vec<f64>>> {
        ready(self.gradient(method))
    }
    /// [`evaluate`](Self::evaluate) as a future.
    fn evaluate_async(&mut self, split: Split) -> LocalFuture<'_, Result<Evaluation>> {
        ready(self.evaluate(split))
    }
    /// [`train_steps`](Self::train_steps) as a future.
    #[allow(clippy::too_many_arguments)]
    fn train_steps_async<'a>(
        &'a mut self,
        batches: &'a [u32],
        batch: usize,
        method: GradMethod,
        lr: f64,
        losses: &'a mut Vec<f64>,
        progress: &'a mut dyn FnMut(usize) -> bool,
    ) -> LocalFuture<'a, Result<StepsOutcome>> {
        ready(self.train_steps(batches, batch, method, lr, losses, progress))
    }
}

/// What a chunk of training steps ended with; see [`Backend::train_steps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepsOutcome {
    /// Steps of the chunk whose updates are kept: the parameters are as after these.
    pub done: usize,
    /// `Some(k)`: the update of the chunk's step k made the parameters non-finite; they are as
    /// before it, and `done == k`.
    pub diverged: Option<usize>,
}

/// Host-side costs of a device backend, counted since it was made. On a real GPU these, not the
/// arithmetic, bound a small model's step time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceCounters {
    /// Command buffers submitted to the queue.
    pub submissions: u64,
    /// Times the host blocked on the device (map + poll, or a wait for a submission).
    pub blocking_waits: u64,
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Buffer-to-buffer copies recorded, and queue writes.
    pub copies: u64,
    /// Buffers, bind groups and pipelines created.
    pub creations: u64,
}

impl DeviceCounters {
    /// `self - earlier`, field by field: what happened in between.
    pub fn since(&self, earlier: &DeviceCounters) -> DeviceCounters {
        DeviceCounters {
            submissions: self.submissions - earlier.submissions,
            blocking_waits: self.blocking_waits - earlier.blocking_waits,
            dispatches: self.dispatches - earlier.dispatches,
            copies: self.copies - earlier.copies,
            creations: self.creations - earlier.creations,
        }
    }
}

/// The number of steps in a chunk of `batches` (index lists of `batch` each, back to back).
pub fn chunk_steps(batches: &[u32], batch: usize) -> Result<usize> {
    if batch == 0 || !batches.len().is_multiple_of(batch) {
        return Err(Error::config(
            "batch",
            format!(
                "{} indices do not split into batches of {batch}",
                batches.len()
            ),
        ));
    }
    Ok(batches.len() / batch)
}

/// [`Backend::train_steps`] through `set_batch`, `batch_loss` and `step`, one step at a time:
/// the parameters at the chunk's start are kept on the host, and a divergence is undone by
/// putting them back and replaying the good steps (every step is deterministic).
pub fn train_steps_one_by_one<B: Backend + ?Sized>(
    backend: &mut B,
    batches: &[u32],
    batch: usize,
    method: GradMethod,
    lr: f64,
    losses: &mut Vec<f64>,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<StepsOutcome> {
    let steps = chunk_steps(batches, batch)?;
    let first_loss = losses.len();
    let start = backend.params()?;
    let batch_of = |s: usize| &batches[s * batch..(s + 1) * batch];
    let mut done = 0;
    let mut bad_update = None;
    while done < steps {
        backend.set_batch(batch_of(done))?;
        let loss = backend.batch_loss()?;
        if !loss.is_finite() {
            if done == 0 {
                return Err(Error::Numerics(format!(
                    "the parameters a chunk of training started from give a non-finite loss ({loss}); they were broken before this chunk"
                )));
            }
            bad_update = Some(done - 1);
            break;
        }
        losses.push(loss);
        backend.step(method, lr)?;
        done += 1;
        if !progress(done) {
            break;
        }
    }
    if bad_update.is_none() && done > 0 {
        // The last update is seen by no later step of this chunk: look at its result here.
        backend.set_batch(batch_of(done - 1))?;
        if !backend.batch_loss()?.is_finite() {
            bad_update = Some(done - 1);
        }
    }
    let Some(k) = bad_update else {
        return Ok(StepsOutcome {
            done,
            diverged: None,
        });
    };
    backend.set_params(&start)?;
    for s in 0..k {
        backend.set_batch(batch_of(s))?;
        backend.step(method, lr)?;
    }
    losses.truncate(first_loss + k + 1);
    Ok(StepsOutcome {
        done: k,
        diverged: Some(k),
    })
}
