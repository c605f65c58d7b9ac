//! `gpu-train bench`: how long the chapter's operations take on each device, across a grid of
//! batch and hidden sizes, and what that means: the op count and rate of every case, the CPU/GPU
//! ratio, how time grows with size (least squares on log-log), where the GPU overtakes the CPU,
//! what a training step costs the host on the GPU (submissions, waits, dispatches, copies,
//! creations), and optionally how the chapter's own NumPy code compares (`--peer numpy`).
//!
//! One table of kinds of work ([`Work`]) and one runner (`runner::Runner::measure`): every case
//! is "one warm-up, then N timed repeats of the call", whatever the device or the work. Each case
//! is first priced (from its op count and the forward pass measured on that device at the same
//! size; the numerical gradient also by the same call at a smaller batch) and skipped when the
//! price is over the per-case budget, so a default run stays short even on a software GPU (the
//! chapter's numerical gradient on lavapipe takes minutes).
//!
//! The parts: `grid` (the sizes and what each case costs), `runner` (timing), `stats`
//! (medians, fits, crossovers), `table` (the text), `text` (number formats), `progress`,
//! `json`, `peer` (NumPy), `system` (where it ran).

mod grid;
mod json;
mod peer;
mod progress;
mod runner;
mod stats;
mod system;
mod table;
mod text;

pub use grid::OpUnit;
pub use peer::PeerResult;
pub use stats::{Crossover, Fit, StepCounters};

use crate::backend::{GradMethod, PerturbStrategy, DEFAULT_H};
use crate::data;
use crate::error::{Error, Result};
use crate::gpu::Context;
use grid::Grid;
use serde::Serialize;
#[cfg(feature = "cli")]
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The chapter's learning rate, for the train-step cases.
const TRAIN_LR: f64 = 0.1;
/// Seeds of the parameters and the batches: fixed, so both devices see the same work.
const PARAMS_SEED: u64 = 0;
const BATCH_SEED: u64 = 0;

/// `gpu-train bench`: time forward, backprop, the numerical gradient and training steps on the
/// CPU and the GPU over a grid of sizes.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct BenchArgs {
    /// Devices, comma-separated: cpu (the f32 backend on every rayon thread), gpu (any wgpu
    /// adapter, software ones such as lavapipe included).
    #[cfg_attr(feature = "cli", arg(long, value_enum, value_delimiter = ',',
        default_values_t = BenchArgs::default().device))]
    pub device: Vec<Device>,
    /// Kinds of work, comma-separated.
    #[cfg_attr(feature = "cli", arg(long, value_enum, value_delimiter = ',',
        default_values_t = BenchArgs::default().what))]
    pub what: Vec<Work>,
    /// Batch sizes, comma-separated. Default: 100,1000, but the numerical gradient at 100 only
    /// (one numerical step costs 2P loss evaluations); given, it applies to every kind of work.
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ',', value_name = "B,.."))]
    pub batch: Option<Vec<usize>>,
    /// Hidden-layer sizes of the 784-H-10 net, comma-separated.
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ',', value_name = "H,..",
        default_values_t = BenchArgs::default().hidden))]
    pub hidden: Vec<usize>,
    /// Timed repeats per case (after one warm-up); a slow case gets fewer (its repeats may use
    /// half of --budget).
    #[cfg_attr(feature = "cli", arg(long, value_name = "N",
        default_value_t = BenchArgs::default().repeat))]
    pub repeat: usize,
    /// Training steps per call in the train-step cases: each call hands the backend a chunk of
    /// K batches (Backend::train_steps, as training does), and the row reports per-step figures.
    #[cfg_attr(feature = "cli", arg(long, value_name = "K",
        default_value_t = BenchArgs::default().chunk))]
    pub chunk: usize,
    /// Also write every case, the header and the fits as JSON to FILE.
    #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
    pub json: Option<PathBuf>,
    /// Also time the chapter's own code: numpy runs benches/peers/chapter_numpy.py (python3 +
    /// NumPy) for one numerical-gradient step and one backprop step, 784-50-10, batch 100.
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub peer: Option<Peer>,
    /// Seconds per case: a case priced over it (from its op count and the forward pass measured
    /// on that device; the numerical gradient also by the same call at a smaller batch) is
    /// skipped.
    #[cfg_attr(feature = "cli", arg(long, value_name = "SECONDS", allow_hyphen_values = true,
        default_value_t = BenchArgs::default().budget))]
    pub budget: f64,
}

/// The command line's defaults (the CLI's flags take theirs from here).
impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            device: vec![Device::Cpu, Device::Gpu],
            what: Work::ALL.to_vec(),
            batch: None,
            hidden: vec![50, 100, 200],
            repeat: 5,
            chunk: 20,
            json: None,
            peer: None,
            budget: 10.0,
        }
    }
}

#[cfg(feature = "cli")]
impl BenchArgs {
    /// Parses bench flags (without the program or subcommand name), with the CLI's defaults:
    /// `BenchArgs::try_parse_from(["--device", "cpu"])`. A bad value is a config error naming
    /// the flag and the valid values.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        #[derive(clap::Parser)]
        #[command(name = "gpu-train bench", no_binary_name = true)]
        struct Flags {
            #[command(flatten)]
            args: BenchArgs,
        }
        <Flags as clap::Parser>::try_parse_from(args)
            .map(|f| f.args)
            .map_err(|e| Error::config("bench", e.to_string().trim_end().to_string()))
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Device {
    /// The f32 CPU backend (multi-threaded with rayon).
    Cpu,
    /// Any wgpu adapter, software ones (lavapipe) included.
    Gpu,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        }
    }
}

/// A kind of work the bench times. Each timed call is `set_batch` (a fresh batch of training
/// indices) followed by the calls named here; the train-step kinds are one `train_steps` call
/// over a chunk of --chunk fresh batches.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Work {
    /// batch_loss: the forward pass and the loss, read back.
    Forward,
    /// gradient(backprop), read back.
    Backprop,
    /// gradient(numerical, incremental strategy), read back.
    NumericalIncremental,
    /// gradient(numerical, full strategy: a whole forward pass per perturbation), read back.
    NumericalFull,
    /// train_steps(backprop, lr 0.1) over a chunk of batches: the chapter's loop with its
    /// per-step losses, as training runs it; figures per step.
    TrainStep,
    /// train_steps(numerical incremental, lr 0.1) over a chunk of batches; figures per step.
    TrainStepNumerical,
}

impl Work {
    pub fn name(self) -> &'static str {
        match self {
            Work::Forward => "forward",
            Work::Backprop => "backprop",
            Work::NumericalIncremental => "numerical-incremental",
            Work::NumericalFull => "numerical-full",
            Work::TrainStep => "train-step",
            Work::TrainStepNumerical => "train-step-numerical",
        }
    }

    /// Every kind, in the default order.
    pub const ALL: [Work; 6] = [
        Work::Forward,
        Work::Backprop,
        Work::NumericalIncremental,
        Work::NumericalFull,
        Work::TrainStep,
        Work::TrainStepNumerical,
    ];

    /// Whether its cost is dominated by the numerical gradient (batch 100 only by default, and
    /// priced by a probe at a smaller batch).
    fn is_numerical(self) -> bool {
        matches!(
            self,
            Work::NumericalIncremental | Work::NumericalFull | Work::TrainStepNumerical
        )
    }

    /// The gradient a train-step kind trains with; None for the single-call kinds.
    fn train_method(self) -> Option<GradMethod> {
        match self {
            Work::TrainStep => Some(GradMethod::Backprop),
            Work::TrainStepNumerical => Some(numerical(PerturbStrategy::Incremental)),
            _ => None,
        }
    }
}

fn numerical(strategy: PerturbStrategy) -> GradMethod {
    GradMethod::Numerical {
        strategy,
        h: DEFAULT_H,
    }
}

/// A peer implementation to compare with.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// The chapter's NumPy code (benches/peers/chapter_numpy.py); needs python3 with numpy.
    Numpy,
}

/// One measured (or skipped, or failed) case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub device: Device,
    pub what: Work,
    pub batch: usize,
    pub hidden: usize,
    pub params: usize,
    /// Timed repeats (0 when the case did not run, or when only its warm-up fitted the budget).
    /// For the train-step kinds a repeat is a chunk of `steps_per_call` steps.
    pub repeats: usize,
    /// Training steps per timed call: --chunk for the train-step kinds, else 1.
    pub steps_per_call: usize,
    /// Wall-clock seconds per call (set_batch + the work; on the GPU, submit + wait); per step
    /// for the train-step kinds.
    pub median_s: Option<f64>,
    pub min_s: Option<f64>,
    pub max_s: Option<f64>,
    /// Operations of one call (of one step for the train-step kinds), in `op_unit`.
    pub ops: f64,
    pub op_unit: OpUnit,
    /// GPU rows, where the adapter has timestamp queries: the median of the device's own time
    /// for the same repeats (from the first to the last kernel of the call, without submission
    /// and read-back overhead). None on the CPU, for the train-step kinds (many submissions),
    /// and without timestamps.
    pub device_median_s: Option<f64>,
    /// ops / median_s, in `rate_unit`.
    pub rate: Option<f64>,
    pub rate_unit: &'static str,
    /// The train-step kinds: what one step cost the host, over the timed repeats (the backend's
    /// counters before and after, divided by the steps). None where the backend counts nothing
    /// (the CPU) and for the other kinds.
    pub counters_per_step: Option<StepCounters>,
    /// "ok", "ok: warm-up only ...", "skipped: ...", "error: ...", or "not run: ...".
    pub status: String,
}

impl CaseResult {
    fn ok(&self) -> bool {
        self.median_s.is_some()
    }
}

/// Everything a run measured; what `--json` writes.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The version of gpu-train that measured it.
    pub version: &'static str,
    pub command: String,
    pub date_utc: String,
    pub cpu_model: String,
    pub threads: usize,
    /// The 1-minute load average when the run started (/proc/loadavg): other work on the
    /// machine slows every row and makes it noisier.
    pub load_avg: Option<f64>,
    /// The adapter: name, graphics API, kind and driver, when the GPU was asked for and found.
    pub adapter: Option<String>,
    /// Why the GPU rows did not run, when they did not.
    pub gpu_unavailable: Option<String>,
    pub data: String,
    pub budget_s: f64,
    pub repeat: usize,
    /// Steps per call of the train-step kinds (--chunk).
    pub chunk: usize,
    pub timing: &'static str,
    pub cases: Vec<CaseResult>,
    pub fits: Vec<Fit>,
    pub crossovers: Vec<Crossover>,
    pub peers: Vec<PeerResult>,
}

const TIMING: &str = "wall clock around set_batch + the call (submit+wait on the GPU: each call ends with a readback); \
                      train-step kinds: one train_steps call over a chunk of batches, divided by its steps; \
                      on GPU rows also device_median_s, from timestamp queries where the adapter has them";

/// Runs the bench, prints the header at once and the table, fits and peer comparison at the end
/// to `out`, writes `--json`, and returns the report. Progress goes to stderr when it is a
/// terminal. Only bad flags and I/O on `out` or the JSON file are errors: a case that fails is
/// a row saying so.
pub fn run<W: Write + ?Sized>(args: &BenchArgs, out: &mut W) -> Result<Report> {
    let grid = Grid::new(args)?;
    check_json_folder(args.json.as_deref())?;
    let data = Arc::new(data::embedded()?);
    // The GPU is opened once, before anything is timed; its absence is a row status, not an
    // error, so a CPU-only machine still gets its CPU table.
    // (`Into`: an owned or a shared context, whichever `Context::gpu` hands out.)
    let gpu: std::result::Result<Arc<Context>, String> = if grid.devices.contains(&Device::Gpu) {
        Context::gpu().map(Into::into).map_err(|e| e.to_string())
    } else {
        Err("not requested (--device)".to_string())
    };
    let mut report = header(&grid, &data, &gpu);
    table::write_header(out, &report).map_err(stdout_error)?;

    let progress = progress::Progress::new();
    report.cases = runner::run_grid(&grid, &data, &gpu, &progress);
    progress.clear();
    report.fits = stats::fits(&report.cases);
    report.crossovers = stats::crossovers(&grid.what, &report.cases);
    if let Some(which) = args.peer {
        report.peers = peer::run(which, grid.repeat, &report.cases, &progress);
        progress.clear();
    }
    table::write_body(out, &grid, &report).map_err(stdout_error)?;
    if let Some(path) = &args.json {
        json::write(path, &report)?;
        writeln!(out, "\nJSON: {}", path.display()).map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)?;
    Ok(report)
}

/// A JSON file that cannot be written should fail now, not after minutes of measuring.
fn check_json_folder(json: Option<&Path>) -> Result<()> {
    if let Some(path) = json.filter(|p| p.is_dir()) {
        return Err(Error::config(
            "--json",
            format!(
                "{} is a folder; --json takes a FILE to write, e.g. --json {}",
                path.display(),
                path.join("bench.json").display()
            ),
        ));
    }
    if let Some(dir) = json.and_then(Path::parent) {
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            return Err(Error::config(
                "--json",
                format!(
                    "the folder {} does not exist; create it or pick another FILE",
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The report before anything is measured: where, when and how.
fn header(
    grid: &Grid,
    data: &data::Mnist,
    gpu: &std::result::Result<Arc<Context>, String>,
) -> Report {
    let wants_gpu = grid.devices.contains(&Device::Gpu);
    Report {
        version: env!("CARGO_PKG_VERSION"),
        command: system::command_line(),
        date_utc: system::utc_now(),
        cpu_model: system::cpu_model(),
        threads: rayon::current_num_threads(),
        load_avg: system::load_average(),
        adapter: gpu.as_ref().ok().map(|c| system::adapter(c)),
        gpu_unavailable: match gpu {
            Err(e) if wants_gpu => Some(e.clone()),
            _ => None,
        },
        data: format!(
            "{}; batches drawn with replacement (seed {BATCH_SEED}), the chapter's initial parameters (seed {PARAMS_SEED}), f32 on both devices",
            data.describe()
        ),
        budget_s: grid.budget,
        repeat: grid.repeat,
        chunk: grid.chunk,
        timing: TIMING,
        cases: Vec::new(),
        fits: Vec::new(),
        crossovers: Vec::new(),
        peers: Vec::new(),
    }
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::io("<output>", e)
}
