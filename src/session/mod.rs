//! The `train` command's logic, in the library where it can be tested without spawning the
//! binary: choosing a fresh run or a resume (and checking the flags against the checkpoint
//! before anything is touched), the device, the run folder, and the small observers that write
//! metrics, take checkpoints (on a cadence, on Ctrl-C, before a stop) and check the gradient
//! against the f64 reference. The CLI supplies a [`Ui`] (the terminal printer) and the Ctrl-C
//! flag.

use crate::backend::GradMethod;
use crate::data::{Mnist, SamplerKind};
use crate::model::{Activation, MlpSpec, Params};
use crate::train::{Observer, Start, TrainConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    /// The best hardware GPU; with only a software adapter or none, the CPU (it says which and why).
    Auto,
    /// The CPU backend.
    Cpu,
    /// Any GPU adapter, software ones (lavapipe) included.
    Gpu,
}

/// Arithmetic of the CPU backend; the GPU computes in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Single precision: the fast CPU path and what the GPU computes in.
    F32,
    /// Double precision: the CPU reference (oracle).
    F64,
}

/// A train command as the user gave it. `explicit` names the flags given on the command line
/// (without the dashes): a resume refuses those that contradict its checkpoint.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub device: DeviceChoice,
    pub precision: Precision,
    pub data: Option<PathBuf>,
    /// None: the largest training label + 1 (a resume: the checkpoint's).
    pub classes: Option<usize>,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub batch: usize,
    pub lr: f64,
    pub grad: GradMethod,
    pub sampler: SamplerKind,
    pub seed: u64,
    /// None: 10,000 (the chapter), or the checkpoint's total on a resume.
    pub iters: Option<usize>,
    /// An alternative to `iters`: epochs of the training set.
    pub epochs: Option<f64>,
    /// None: one epoch of the training set, as the chapter's `iter_per_epoch`.
    pub eval_every: Option<usize>,
    pub loss_every: usize,
    pub out: Option<PathBuf>,
    pub overwrite: bool,
    pub checkpoint_every: Option<usize>,
    /// None: at the first step and each evaluation; Some(0): never.
    pub check_every: Option<usize>,
    pub resume: Option<PathBuf>,
    pub explicit: Vec<String>,
}

impl TrainRequest {
    fn given(&self, flag: &str) -> bool {
        self.explicit.iter().any(|f| f == flag)
    }
}

/// The flags a resume may change: they do not change the trajectory.
pub const RESUME_MAY_CHANGE: &[&str] = &[
    "iters",
    "epochs",
    "eval-every",
    "loss-every",
    "checkpoint-every",
    "check-every",
    "device",
    "precision",
    "out",
    "data",
];

/// What the terminal (or a test) sees of a run.
pub trait Ui: Observer {
    /// A line of information (the header, a check's result, where files went).
    fn say(&mut self, text: &str);
    /// Training is about to run steps `first..total`.
    fn start(&mut self, _first: usize, _total: usize) {}
    /// The run folder is open: every file of the run goes there.
    fn opened(&mut self, _run_folder: &Path) {}
    /// The run is over (completed, interrupted or diverged) and its files are written.
    fn finish(&mut self, _report: &FinalReport) {}
}

/// The run's last word, for the final line and `--json`'s final record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FinalReport {
    pub ending: &'static str,
    pub iteration: usize,
    pub epoch: f64,
    pub train_loss: Option<f64>,
    pub train_acc: Option<f64>,
    pub test_loss: Option<f64>,
    pub test_acc: Option<f64>,
    pub best_test_acc: Option<f64>,
    /// Seconds of training, earlier sessions of a resumed run included.
    pub seconds: f64,
    /// Iterations a second in this session.
    pub iterations_per_second: f64,
    /// Seconds from the process's start (`time::process_start`) to the first step: data, the
    /// adapter, the device's pipelines and data upload, `--device auto`'s trial, the run
    /// folder. The numerical gradient's own pipelines are built in the first chunk, after this.
    pub startup_seconds: f64,
    pub checks: ChecksSummary,
    pub run_folder: PathBuf,
    pub metrics: PathBuf,
    pub loss_curve: PathBuf,
    pub plots: Vec<PathBuf>,
    pub checkpoint: Option<PathBuf>,
    /// The command that continues this run (interrupted runs).
    pub resume_command: Option<String>,
    /// Set when the last evaluation is much worse than the run's first (`train::got_worse`):
    /// what got worse and the likely fix. The run still ends as `ending` says.
    pub warning: Option<String>,
}

/// The reference checks of a run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ChecksSummary {
    pub passed: usize,
    pub worst: Option<f64>,
}

impl ChecksSummary {
    /// Counts one passed check whose whole-vector relative error was `total`.
    pub fn record(&mut self, total: f64) {
        self.passed += 1;
        self.worst = Some(self.worst.map_or(total, |w| w.max(total)));
    }
}

/// A run decided and checked, before anything is written: the data, the net, the settings and
/// where it starts.
pub struct Plan {
    pub data: Arc<Mnist>,
    pub spec: MlpSpec,
    pub cfg: TrainConfig,
    pub params: Params,
    pub start: Option<Start>,
    pub out: Option<PathBuf>,
    pub request: TrainRequest,
}

fn default_iters() -> usize {
    TrainConfig::default().iters
}

/// Loads the data and, for a resume, the checkpoint; checks every flag against it; decides the
/// settings. Touches no file.
mod device;
mod observers;
mod plan;
mod runner;

pub use device::{grad_parts, make_backend, Chosen};
pub use plan::plan;
pub use runner::{config_json, resume_command, run, write_plots};
