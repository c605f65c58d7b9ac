//! `gpu-train bench`: how long the chapter's operations take on each device, across a grid of
//! batch and hidden sizes, and what that means: the op count and rate of every case, the CPU/GPU
//! ratio, how time grows with size (least squares on log-log), where the GPU overtakes the CPU,
//! and optionally how the chapter's own NumPy code compares (`--peer numpy`).
//!
//! One table of kinds of work ([`Work`]) and one runner (`Runner::measure`): every case is
//! "one warm-up, then N timed repeats of set_batch + the call", whatever the device or the work.
//! Each case is first priced (from its op count and the forward pass measured on that device at
//! the same size; the numerical gradient also by the same call at a smaller batch) and skipped
//! when the price is over the per-case budget, so a default run stays short even on a software
//! GPU (the chapter's numerical gradient on lavapipe takes minutes).

use crate::backend::{Backend, GradMethod, PerturbStrategy, DEFAULT_H};
use crate::cpu::CpuBackend;
use crate::data::{self, Mnist, Sampler, SamplerKind};
use crate::error::{Error, Result};
use crate::gpu::{Context, GpuBackend, GpuOptions};
use crate::model::{MlpSpec, Params};
use serde::Serialize;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

/// Input width and classes of MNIST; the grid varies the hidden layer and the batch.
const INPUT: usize = 784;
const CLASSES: usize = 10;
/// The batch size numerical cases use when `--batch` is not given (the chapter's).
const NUMERICAL_DEFAULT_BATCH: usize = 100;
/// The chapter's learning rate, for train-step.
const TRAIN_LR: f64 = 0.1;
/// Seeds of the parameters and the batches: fixed, so both devices see the same work.
const PARAMS_SEED: u64 = 0;
const BATCH_SEED: u64 = 0;
/// Rough cost of one perturbation reaching one sample in the incremental numerical gradient,
/// in FLOP-equivalents per class: a logit shift, an expm1 and a multiply-add per class (expm1
/// counted as ~10). Only used to price a case before running it, never to report a rate.
const INCREMENTAL_FLOPS_PER_CLASS: f64 = 12.0;
/// The NumPy peer's configuration: the chapter's 784-50-10 at batch 100.
const PEER_BATCH: usize = 100;
const PEER_HIDDEN: usize = 50;
/// The peer script, embedded so `--peer numpy` works from any directory (python3 reads it on
/// stdin).
const PEER_SCRIPT: &str = include_str!("../benches/peers/chapter_numpy.py");

/// `gpu-train bench`: time forward, backprop, the numerical gradient and a training step on the
/// CPU and the GPU over a grid of sizes.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Devices, comma-separated: cpu (the f32 backend on every rayon thread), gpu (any wgpu
    /// adapter, software ones such as lavapipe included).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "cpu,gpu")]
    pub device: Vec<Device>,
    /// Kinds of work, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "forward,backprop,numerical-incremental,numerical-full,train-step"
    )]
    pub what: Vec<Work>,
    /// Batch sizes, comma-separated. Default: 100,1000, but the numerical gradient at 100 only
    /// (one numerical step costs 2P loss evaluations); given, it applies to every kind of work.
    #[arg(long, value_delimiter = ',', value_name = "B,..")]
    pub batch: Option<Vec<usize>>,
    /// Hidden-layer sizes of the 784-H-10 net, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50,100,200",
        value_name = "H,.."
    )]
    pub hidden: Vec<usize>,
    /// Timed repeats per case (after one warm-up); a slow case gets fewer (its repeats may use
    /// half of --budget).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub repeat: usize,
    /// Also write every case, the header and the fits as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also time the chapter's own code: numpy runs benches/peers/chapter_numpy.py (python3 +
    /// NumPy) for one numerical-gradient step and one backprop step, 784-50-10, batch 100.
    #[arg(long, value_enum)]
    pub peer: Option<Peer>,
    /// Seconds per case: a case priced over it (from its op count and the forward pass measured
    /// on that device; the numerical gradient also by the same call at a smaller batch) is
    /// skipped.
    #[arg(
        long,
        default_value_t = 10.0,
        value_name = "SECONDS",
        allow_hyphen_values = true
    )]
    pub budget: f64,
}

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

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, Serialize)]
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
/// indices) followed by the calls named here.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, Serialize)]
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
    /// step(backprop, lr 0.1) then batch_loss: the chapter's loop step with its loss readback.
    TrainStep,
}

impl Work {
    pub fn name(self) -> &'static str {
        match self {
            Work::Forward => "forward",
            Work::Backprop => "backprop",
            Work::NumericalIncremental => "numerical-incremental",
            Work::NumericalFull => "numerical-full",
            Work::TrainStep => "train-step",
        }
    }

    fn is_numerical(self) -> bool {
        matches!(self, Work::NumericalIncremental | Work::NumericalFull)
    }

    /// The timed call. Results are passed through `black_box` so nothing is optimised away.
    fn run_once(self, backend: &mut dyn Backend, batch: &[u32]) -> Result<()> {
        backend.set_batch(batch)?;
        let numerical = |strategy| GradMethod::Numerical {
            strategy,
            h: DEFAULT_H,
        };
        match self {
            Work::Forward => {
                std::hint::black_box(backend.batch_loss()?);
            }
            Work::Backprop => {
                std::hint::black_box(backend.gradient(GradMethod::Backprop)?);
            }
            Work::NumericalIncremental => {
                std::hint::black_box(backend.gradient(numerical(PerturbStrategy::Incremental))?);
            }
            Work::NumericalFull => {
                std::hint::black_box(backend.gradient(numerical(PerturbStrategy::Full))?);
            }
            Work::TrainStep => {
                backend.step(GradMethod::Backprop, TRAIN_LR)?;
                std::hint::black_box(backend.batch_loss()?);
            }
        }
        Ok(())
    }

    /// What one call counts as (the figure its rate is reported in), and what it costs in
    /// forward passes of the same size (to price it against the measured forward pass).
    fn cost(self, s: &Shape) -> Cost {
        let flops = |forwards: f64| Cost {
            ops: forwards * s.forward_flops,
            unit: OpUnit::Flop,
            forwards,
        };
        match self {
            Work::Forward => flops(1.0),
            // The backward pass is two matmuls per layer to the forward's one.
            Work::Backprop => flops(3.0),
            // Backprop's forward + backward (3), then the forward of the loss readback (1); the
            // SGD update (2P) is noise next to them.
            Work::TrainStep => flops(4.0),
            Work::NumericalFull => flops(2.0 * s.params as f64),
            Work::NumericalIncremental => {
                // A first-layer weight reaches a sample only through a nonzero pixel; every
                // other parameter reaches every sample. Each reach costs O(classes).
                let w1 = (INPUT * s.hidden) as f64;
                let reach = s.nonzero * w1 + (s.params as f64 - w1);
                let equivalent =
                    2.0 * s.batch as f64 * reach * CLASSES as f64 * INCREMENTAL_FLOPS_PER_CLASS;
                Cost {
                    ops: 2.0 * s.params as f64,
                    unit: OpUnit::Perturbation,
                    forwards: equivalent / s.forward_flops,
                }
            }
        }
    }
}

/// A peer implementation to compare with.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// The chapter's NumPy code (benches/peers/chapter_numpy.py); needs python3 with numpy.
    Numpy,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpUnit {
    Flop,
    Perturbation,
}

impl OpUnit {
    /// The table's short unit.
    fn symbol(self) -> &'static str {
        match self {
            OpUnit::Flop => "FLOP",
            OpUnit::Perturbation => "pert",
        }
    }
    fn amount(self, v: f64) -> String {
        format!("{}{}", si(v), self.symbol())
    }
    fn rate(self, v: f64) -> String {
        format!("{}{}/s", si(v), self.symbol())
    }
    fn rate_unit(self) -> &'static str {
        match self {
            OpUnit::Flop => "FLOP/s",
            OpUnit::Perturbation => "perturbations/s",
        }
    }
}

struct Cost {
    ops: f64,
    unit: OpUnit,
    /// The call's cost in forward passes of the same batch and net.
    forwards: f64,
}

/// One grid point: the 784-`hidden`-10 net at `batch`.
#[derive(Clone, Copy, Debug)]
struct Shape {
    batch: usize,
    hidden: usize,
    params: usize,
    /// 2 * batch * sum(fan_in * fan_out): the matmuls of one forward pass.
    forward_flops: f64,
    /// Fraction of nonzero pixels in the training set (about 0.19 for MNIST).
    nonzero: f64,
}

impl Shape {
    fn new(spec: &MlpSpec, batch: usize, nonzero: f64) -> Self {
        let macs: usize = spec.layers().iter().map(|l| l.fan_in * l.fan_out).sum();
        Shape {
            batch,
            hidden: spec.hidden.first().copied().unwrap_or(0),
            params: spec.num_params(),
            forward_flops: 2.0 * batch as f64 * macs as f64,
            nonzero,
        }
    }
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
    pub repeats: usize,
    /// Wall-clock seconds per call (set_batch + the work; on the GPU, submit + wait).
    pub median_s: Option<f64>,
    pub min_s: Option<f64>,
    pub max_s: Option<f64>,
    /// Operations of one call, in `op_unit`.
    pub ops: f64,
    pub op_unit: OpUnit,
    /// GPU rows, where the adapter has timestamp queries: the median of the device's own time
    /// for the same repeats (from the first to the last kernel of the call, without submission
    /// and read-back overhead). None on the CPU, for train-step (two submissions), and without
    /// timestamps.
    pub device_median_s: Option<f64>,
    /// ops / median_s, in `rate_unit`.
    pub rate: Option<f64>,
    pub rate_unit: &'static str,
    /// "ok", "ok: warm-up only ...", "skipped: ...", "error: ...", or "not run: ...".
    pub status: String,
}

impl CaseResult {
    fn ok(&self) -> bool {
        self.median_s.is_some()
    }
}

/// time ~ hidden^k_hidden * batch^k_batch, fitted by least squares on log-log over the cases of
/// one device and kind of work; a size that did not vary has no exponent.
#[derive(Clone, Debug, Serialize)]
pub struct Fit {
    pub device: Device,
    pub what: Work,
    pub points: usize,
    pub k_hidden: Option<f64>,
    pub k_batch: Option<f64>,
    /// The same fit of the op count: what the time would do at a constant rate.
    pub ops_k_hidden: Option<f64>,
    pub ops_k_batch: Option<f64>,
}

/// The smallest case (by op count) at which the GPU's median beats the CPU's, if any.
#[derive(Clone, Debug, Serialize)]
pub struct Crossover {
    pub what: Work,
    /// Sizes measured on both devices.
    pub compared: usize,
    pub batch: Option<usize>,
    pub hidden: Option<usize>,
    /// cpu median / gpu median at that size.
    pub gpu_speedup: Option<f64>,
}

/// One peer measurement and how ours compares.
#[derive(Clone, Debug, Serialize)]
pub struct PeerResult {
    pub peer: Peer,
    /// "numerical" (one numerical-gradient step) or "backprop" (one backprop step).
    pub what: &'static str,
    pub batch: usize,
    pub hidden: usize,
    pub repeats: usize,
    pub median_s: Option<f64>,
    pub status: String,
    /// The BLAS thread settings the peer ran with (they decide its speed on a busy machine).
    pub blas_threads: String,
    /// Our CPU case it is compared with, and its median.
    pub ours: Work,
    pub ours_median_s: Option<f64>,
    /// peer median / our median: how many times faster ours is.
    pub speedup: Option<f64>,
}

/// Everything a run measured; what `--json` writes.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub date_utc: String,
    pub cpu_model: String,
    pub threads: usize,
    /// The 1-minute load average when the run started (/proc/loadavg): other work on the
    /// machine slows every row and makes it noisier.
    pub load_avg: Option<f64>,
    /// The adapter (Context::describe), when the GPU was asked for and found.
    pub adapter: Option<String>,
    /// Why the GPU rows did not run, when they did not.
    pub gpu_unavailable: Option<String>,
    pub data: String,
    pub budget_s: f64,
    pub repeat: usize,
    pub timing: &'static str,
    pub cases: Vec<CaseResult>,
    pub fits: Vec<Fit>,
    pub crossovers: Vec<Crossover>,
    pub peers: Vec<PeerResult>,
}

const TIMING: &str = "wall clock around set_batch + the call (submit+wait on the GPU: each call ends with a readback); \
                      on GPU rows also device_median_s, from timestamp queries where the adapter has them";

/// Runs the bench, prints the header at once and the table, fits and peer comparison at the end
/// to `out`, writes `--json`, and returns the report. Progress goes to stderr when it is a
/// terminal. Only bad flags and I/O on `out` or the JSON file are errors: a case that fails is
/// a row saying so.
pub fn run<W: Write + ?Sized>(args: &BenchArgs, out: &mut W) -> Result<Report> {
    let grid = Grid::new(args)?;
    // A JSON file that cannot be written should fail now, not after minutes of measuring.
    if let Some(dir) = args.json.as_deref().and_then(Path::parent) {
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
    let data = Arc::new(data::embedded()?);
    let nonzero = nonzero_fraction(&data);

    // The GPU is opened once, before anything is timed; its absence is a row status, not an
    // error, so a CPU-only machine still gets its CPU table.
    // (`Into`: an owned or a shared context, whichever `Context::gpu` hands out.)
    let gpu: std::result::Result<Arc<Context>, String> = if grid.devices.contains(&Device::Gpu) {
        Context::gpu().map(Into::into).map_err(|e| e.to_string())
    } else {
        Err("not requested (--device)".to_string())
    };
    let mut report = Report {
        command: command_line(),
        date_utc: utc_now(),
        cpu_model: cpu_model(),
        threads: rayon::current_num_threads(),
        load_avg: load_average(),
        adapter: gpu.as_ref().ok().map(|c| c.describe()),
        gpu_unavailable: match (&gpu, grid.devices.contains(&Device::Gpu)) {
            (Err(e), true) => Some(e.clone()),
            _ => None,
        },
        data: format!(
            "{}; batches drawn with replacement (seed {BATCH_SEED}), parameters Params::init (seed {PARAMS_SEED}), f32 on both devices",
            data.describe()
        ),
        budget_s: grid.budget,
        repeat: grid.repeat,
        timing: TIMING,
        cases: Vec::new(),
        fits: Vec::new(),
        crossovers: Vec::new(),
        peers: Vec::new(),
    };
    write_header(out, &report).map_err(stdout_error)?;

    let progress = Progress::new();
    for &device in &grid.devices {
        let runner = Runner {
            device,
            grid: &grid,
            data: &data,
            nonzero,
            progress: &progress,
        };
        let ctx = match device {
            Device::Cpu => Ok(None),
            Device::Gpu => gpu.as_ref().map(Some).map_err(|why| why.as_str()),
        };
        report.cases.extend(runner.run(ctx));
    }
    progress.clear();

    let order = |c: &CaseResult| {
        let w = grid
            .what
            .iter()
            .position(|&w| w == c.what)
            .unwrap_or(usize::MAX);
        (w, c.batch, c.hidden, c.device)
    };
    report.cases.sort_by_key(order);
    report.fits = fits(&report.cases);
    report.crossovers = crossovers(&grid.what, &report.cases);
    if let Some(peer) = args.peer {
        report.peers = run_peer(peer, grid.repeat, &report.cases, &progress);
        progress.clear();
    }
    write_body(out, &grid, &report).map_err(stdout_error)?;
    if let Some(path) = &args.json {
        write_json(path, &report)?;
        writeln!(out, "\nJSON: {}", path.display()).map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)?;
    Ok(report)
}

/// The validated grid: distinct devices and kinds of work in the order given, sorted distinct
/// sizes.
struct Grid {
    devices: Vec<Device>,
    what: Vec<Work>,
    batches: Option<Vec<usize>>,
    /// One 784-H-10 net per --hidden size, ascending.
    specs: Vec<MlpSpec>,
    repeat: usize,
    budget: f64,
}

impl Grid {
    fn new(args: &BenchArgs) -> Result<Self> {
        fn distinct<T: PartialEq + Copy>(v: &[T]) -> Vec<T> {
            let mut out = Vec::new();
            for &x in v {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
            out
        }
        fn sizes(flag: &str, v: &[usize], example: &str) -> Result<Vec<usize>> {
            if v.is_empty() || v.contains(&0) {
                return Err(Error::config(
                    flag,
                    format!("sizes must be at least 1, comma-separated (e.g. {flag} {example})"),
                ));
            }
            let mut v = v.to_vec();
            v.sort_unstable();
            v.dedup();
            Ok(v)
        }
        // What clap lists for a bad value; here for an empty list, which clap lets through.
        let choices = |flag: &str, names: Vec<&str>| {
            Error::config(flag, format!("give at least one of: {}", names.join(", ")))
        };
        if args.device.is_empty() {
            return Err(choices("--device", vec!["cpu", "gpu"]));
        }
        if args.what.is_empty() {
            let all = [
                Work::Forward,
                Work::Backprop,
                Work::NumericalIncremental,
                Work::NumericalFull,
                Work::TrainStep,
            ];
            return Err(choices("--what", all.iter().map(|w| w.name()).collect()));
        }
        if args.repeat == 0 {
            return Err(Error::config(
                "--repeat",
                "must be at least 1 (timed repeats after the warm-up)",
            ));
        }
        if !(args.budget.is_finite() && args.budget > 0.0) {
            return Err(Error::config(
                "--budget",
                "must be a positive number of seconds per case (e.g. --budget 10)",
            ));
        }
        let specs = sizes("--hidden", &args.hidden, "50,100,200")?
            .into_iter()
            .map(|h| MlpSpec::two_layer(INPUT, h, CLASSES))
            .collect::<Result<_>>()?;
        Ok(Grid {
            devices: distinct(&args.device),
            what: distinct(&args.what),
            batches: args
                .batch
                .as_deref()
                .map(|b| sizes("--batch", b, "100,1000"))
                .transpose()?,
            specs,
            repeat: args.repeat,
            budget: args.budget,
        })
    }

    /// The batch sizes of one kind of work: --batch when given, else 100 and 1000, the
    /// numerical gradient at 100 only.
    fn batches_for(&self, what: Work) -> Vec<usize> {
        match &self.batches {
            Some(b) => b.clone(),
            None if what.is_numerical() => vec![NUMERICAL_DEFAULT_BATCH],
            None => vec![100, 1000],
        }
    }

    /// Every batch size any kind of work runs at, sorted.
    fn all_batches(&self) -> Vec<usize> {
        let mut all: Vec<usize> = self
            .what
            .iter()
            .flat_map(|&w| self.batches_for(w))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The kinds of work that run at `batch`, in --what order.
    fn work_at(&self, batch: usize) -> Vec<Work> {
        let runs = |&w: &Work| self.batches_for(w).contains(&batch);
        self.what.iter().copied().filter(runs).collect()
    }
}

/// One device's pass over the grid.
struct Runner<'a> {
    device: Device,
    grid: &'a Grid,
    data: &'a Arc<Mnist>,
    nonzero: f64,
    progress: &'a Progress,
}

impl Runner<'_> {
    /// The row of one case: its op count, and its timings when it has any.
    fn row(&self, what: Work, shape: &Shape, status: String, samples: &[f64]) -> CaseResult {
        self.row_timed(what, shape, status, samples, &[])
    }

    /// `row`, with the device's own times of the same repeats (all of them, or none is used).
    fn row_timed(
        &self,
        what: Work,
        shape: &Shape,
        status: String,
        samples: &[f64],
        device: &[Option<f64>],
    ) -> CaseResult {
        let cost = what.cost(shape);
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let wall_median = median(&sorted);
        let mut on_device: Vec<f64> = device.iter().flatten().copied().collect();
        on_device.sort_by(f64::total_cmp);
        let device_median_s = if !on_device.is_empty() && on_device.len() == device.len() {
            median(&on_device)
        } else {
            None
        };
        CaseResult {
            device: self.device,
            what,
            batch: shape.batch,
            hidden: shape.hidden,
            params: shape.params,
            repeats: if status == "ok" { samples.len() } else { 0 },
            median_s: wall_median,
            min_s: sorted.first().copied(),
            max_s: sorted.last().copied(),
            device_median_s,
            ops: cost.ops,
            op_unit: cost.unit,
            rate: wall_median.filter(|&m| m > 0.0).map(|m| cost.ops / m),
            rate_unit: cost.unit.rate_unit(),
            status,
        }
    }

    /// Every case of the grid with the same status and no timings (no GPU, no backend).
    fn unrun(&self, spec: &MlpSpec, status: &str) -> Vec<CaseResult> {
        let mut rows = Vec::new();
        for batch in self.grid.all_batches() {
            let shape = Shape::new(spec, batch, self.nonzero);
            for what in self.grid.work_at(batch) {
                rows.push(self.row(what, &shape, status.to_string(), &[]));
            }
        }
        rows
    }

    /// Runs every case: per hidden size one backend (on `ctx`, else the CPU); per batch size the
    /// forward pass first (reported if asked for, else only a calibration), because every other
    /// case is priced against it. `ctx` Err: every row says why the GPU did not run.
    fn run(&self, ctx: std::result::Result<Option<&Arc<Context>>, &str>) -> Vec<CaseResult> {
        let mut cases = Vec::new();
        // Measured forward passes on this device: (forward FLOPs, median seconds).
        let mut forwards: Vec<(f64, f64)> = Vec::new();
        for spec in &self.grid.specs {
            let backend: Result<Box<dyn Backend>> = match ctx {
                Err(why) => {
                    cases.extend(self.unrun(spec, &format!("not run: {why}")));
                    continue;
                }
                Ok(Some(ctx)) => {
                    let options = GpuOptions {
                        timestamps: true,
                        ..GpuOptions::default()
                    };
                    GpuBackend::with_options(ctx.clone(), spec.clone(), self.data.clone(), options)
                        .map(|b| Box::new(b) as Box<dyn Backend>)
                }
                Ok(None) => CpuBackend::<f32>::new(spec.clone(), self.data.clone())
                    .map(|b| Box::new(b) as Box<dyn Backend>),
            };
            let mut backend = match backend {
                Ok(b) => b,
                Err(e) => {
                    cases.extend(self.unrun(spec, &format!("error: {e}")));
                    continue;
                }
            };
            let params = Params::init(spec, PARAMS_SEED);
            for batch in self.grid.all_batches() {
                let shape = Shape::new(spec, batch, self.nonzero);
                let here = self.grid.work_at(batch);
                // The forward pass at this size, priced from the nearest measured one.
                let est = estimate_forward(&forwards, shape.forward_flops);
                let fwd = self.measure(backend.as_mut(), Work::Forward, &shape, &params, est);
                if let Some(t) = fwd.median_s {
                    forwards.push((shape.forward_flops, t));
                }
                // When the forward pass itself was over budget, its price prices the rest.
                let forward_s = fwd.median_s.or(est);
                if here.contains(&Work::Forward) {
                    cases.push(fwd);
                }
                for &what in here.iter().filter(|&&w| w != Work::Forward) {
                    let est = forward_s.map(|t| t * what.cost(&shape).forwards);
                    cases.push(self.measure(backend.as_mut(), what, &shape, &params, est));
                }
            }
        }
        cases
    }

    /// The one runner: price the case and skip it when over budget; else one warm-up and as
    /// many timed repeats (up to --repeat) as half the budget holds, each on a fresh batch.
    ///
    /// The price comes from the op count at the forward pass's measured rate. For the
    /// numerical gradient that model is rough (how well a device runs its perturbation kernels
    /// is not how well it runs a matmul: on lavapipe the incremental kernel took 25x its
    /// price), so a numerical case is also priced by [`probe`]: the same call at a smaller
    /// batch, scaled up.
    fn measure(
        &self,
        backend: &mut dyn Backend,
        what: Work,
        shape: &Shape,
        params: &Params,
        estimate_s: Option<f64>,
    ) -> CaseResult {
        self.progress.show(self.device, what, shape);
        let row = |status: String, samples: &[f64]| self.row(what, shape, status, samples);
        let train = &self.data.train;
        let budget = self.grid.budget;
        // The least a case can cost is its warm-up and one timed repeat.
        let over = |one: f64| 2.0 * one > budget;
        let skipped = |one: f64, basis: &str| {
            format!(
                "skipped: est. {} > budget {} ({basis}; raise --budget)",
                secs(2.0 * one),
                secs(budget)
            )
        };
        if let Some(est) = estimate_s.filter(|&t| over(t)) {
            return row(skipped(est, "op count at the forward rate"), &[]);
        }
        // Parameters are reset per case: train-step moves them, and every case should start
        // from the same net on both devices. Not timed.
        if let Err(e) = backend.set_params(params) {
            return row(format!("error: {e}"), &[]);
        }
        if what.is_numerical() && shape.batch > 1 {
            match probe(backend, train, what, shape.batch, budget) {
                Ok((t, basis)) if over(t) => return row(skipped(t, &basis), &[]),
                Ok(_) => {}
                Err(e) => return row(format!("error: {e}"), &[]),
            }
        }
        let mut calls = match Calls::new(train, shape.batch) {
            Ok(c) => c,
            Err(e) => return row(format!("error: {e}"), &[]),
        };
        let warm = match calls.time(backend, what) {
            Ok((t, _)) => t,
            Err(e) => return row(format!("error: {e}"), &[]),
        };
        // The warm-up is the truth where the price was off: when it shows that a timed repeat
        // would take the case past its budget, the warm-up is all this case gets.
        if over(warm) {
            let mut r = row(
                format!(
                    "ok: warm-up only ({}; a repeat would pass the budget {}, raise --budget)",
                    secs(warm),
                    secs(budget)
                ),
                &[warm],
            );
            r.repeats = 0;
            return r;
        }
        // A slow case gets fewer repeats: they may use half the budget (at least one runs).
        let fit = (0.5 * budget / warm.max(1e-9)).floor() as usize;
        let mut samples = Vec::new();
        let mut on_device = Vec::new();
        for _ in 0..fit.clamp(1, self.grid.repeat) {
            match calls.time(backend, what) {
                Ok((t, d)) => {
                    samples.push(t);
                    on_device.push(d);
                }
                Err(e) => return row(format!("error: {e}"), &[]),
            }
        }
        self.row_timed(what, shape, "ok".into(), &samples, &on_device)
    }
}

/// A forward pass's time at `flops`, from the measured one nearest in size, scaled at its rate.
fn estimate_forward(measured: &[(f64, f64)], flops: f64) -> Option<f64> {
    let distance = |f: f64| (f / flops).ln().abs();
    measured
        .iter()
        .min_by(|a, b| distance(a.0).total_cmp(&distance(b.0)))
        .map(|&(f, t)| t * flops / f)
}

/// Prices one call of a numerical case at `batch` by timing it at a smaller batch and scaling
/// linearly: seconds and how they were found. Fixed costs make the scaled figure an upper
/// bound, loose at batch 1 (the CPU's full strategy runs 2P forward passes of one row, each
/// mostly overhead: 3x over), so a batch-1 price over the budget gets a second look at
/// batch/10, when that probe is affordable (a quarter of the budget at most, by the first).
fn probe(
    backend: &mut dyn Backend,
    train: &data::Dataset,
    what: Work,
    batch: usize,
    budget: f64,
) -> Result<(f64, String)> {
    let at = |backend: &mut dyn Backend, size: usize| -> Result<(f64, String)> {
        let (t, _) = Calls::new(train, size)?.time(backend, what)?;
        let scale = batch as f64 / size as f64;
        Ok((
            t * scale,
            format!("batch-{size} probe {} x {}", secs(t), ratio(scale)),
        ))
    };
    let first = at(backend, 1)?;
    let tenth = batch / 10;
    if 2.0 * first.0 > budget && tenth > 1 && first.0 / batch as f64 * tenth as f64 <= budget / 4.0
    {
        return at(backend, tenth);
    }
    Ok(first)
}

/// Timed calls of one batch size, each on the next batch of a sampler seeded alike for every
/// case, so both devices see the same batches.
struct Calls {
    sampler: Sampler,
    size: usize,
    batch: Vec<u32>,
}

impl Calls {
    fn new(train: &data::Dataset, size: usize) -> Result<Self> {
        let sampler = Sampler::new(SamplerKind::WithReplacement, train.len(), BATCH_SEED)?;
        Ok(Calls {
            sampler,
            size,
            batch: Vec::with_capacity(size),
        })
    }

    /// Seconds of one call: set_batch + the work (drawing the batch is not timed); and the
    /// device's own seconds for it, where it has timestamps (read after the clock stops).
    fn time(&mut self, backend: &mut dyn Backend, what: Work) -> Result<(f64, Option<f64>)> {
        self.sampler.next_batch(self.size, &mut self.batch)?;
        let start = Instant::now();
        what.run_once(backend, &self.batch)?;
        let wall = start.elapsed().as_secs_f64();
        // train-step is two submissions (step, then the loss): the timestamps cover the last.
        let device = backend
            .last_device_seconds()?
            .filter(|_| what != Work::TrainStep);
        Ok((wall, device))
    }
}

fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(0.5 * (sorted[n / 2 - 1] + sorted[n / 2])),
    }
}

/// Mean fraction of nonzero pixels over the training set (prices the incremental gradient).
fn nonzero_fraction(data: &Mnist) -> f64 {
    let images = data.train.images();
    if images.is_empty() {
        return 0.0;
    }
    images.iter().filter(|&&p| p != 0).count() as f64 / images.len() as f64
}

// ---------------------------------------------------------------------------------------------
// Growth and crossover.

/// Least squares of log(time) (and log(ops)) on log(hidden) and log(batch) per (device, work),
/// over the sizes that vary among its measured cases.
fn fits(cases: &[CaseResult]) -> Vec<Fit> {
    let mut keys: Vec<(Device, Work)> = Vec::new();
    for c in cases.iter().filter(|c| c.ok()) {
        if !keys.contains(&(c.device, c.what)) {
            keys.push((c.device, c.what));
        }
    }
    keys.sort();
    keys.into_iter()
        .map(|(device, what)| {
            let pts: Vec<&CaseResult> = cases
                .iter()
                .filter(|c| c.device == device && c.what == what && c.ok())
                .collect();
            let xs: Vec<[f64; 2]> = pts
                .iter()
                .map(|c| [(c.hidden as f64).ln(), (c.batch as f64).ln()])
                .collect();
            let time: Vec<f64> = pts
                .iter()
                .map(|c| c.median_s.unwrap_or(f64::NAN).ln())
                .collect();
            let ops: Vec<f64> = pts.iter().map(|c| c.ops.ln()).collect();
            let [k_hidden, k_batch] = loglog(&xs, &time);
            let [ops_k_hidden, ops_k_batch] = loglog(&xs, &ops);
            Fit {
                device,
                what,
                points: pts.len(),
                k_hidden,
                k_batch,
                ops_k_hidden,
                ops_k_batch,
            }
        })
        .collect()
}

/// Slopes of y on each column of x (with an intercept), for the columns that vary; None for a
/// column that does not, or when the system is degenerate.
fn loglog(x: &[[f64; 2]], y: &[f64]) -> [Option<f64>; 2] {
    let varies = |j: usize| x.iter().any(|r| (r[j] - x[0][j]).abs() > 1e-12);
    let cols: Vec<usize> = (0..2).filter(|&j| varies(j)).collect();
    let mut out = [None, None];
    // Needs more points than unknowns (intercept + slopes) to be a fit at all.
    if cols.is_empty() || x.len() <= cols.len() {
        return out;
    }
    // Normal equations A^T A beta = A^T y, with A = [1, x_cols...].
    let row = |r: &[f64; 2]| -> Vec<f64> {
        std::iter::once(1.0)
            .chain(cols.iter().map(|&j| r[j]))
            .collect()
    };
    let n = cols.len() + 1;
    let mut m = vec![vec![0.0; n + 1]; n];
    for (r, &yi) in x.iter().zip(y) {
        let a = row(r);
        for i in 0..n {
            for j in 0..n {
                m[i][j] += a[i] * a[j];
            }
            m[i][n] += a[i] * yi;
        }
    }
    if let Some(beta) = solve(m) {
        for (k, &j) in cols.iter().enumerate() {
            out[j] = Some(beta[k + 1]).filter(|v| v.is_finite());
        }
    }
    out
}

/// Gaussian elimination with partial pivoting on an augmented n x (n+1) matrix.
fn solve(mut m: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let n = m.len();
    for c in 0..n {
        let p = (c..n).max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))?;
        if m[p][c].abs() < 1e-12 {
            return None;
        }
        m.swap(c, p);
        let pivot = m[c].clone();
        for row in &mut m[c + 1..] {
            let f = row[c] / pivot[c];
            for (x, p) in row[c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| m[r][k] * x[k]).sum();
        x[r] = (m[r][n] - s) / m[r][r];
    }
    Some(x)
}

/// The CPU and GPU rows of one case, when both ran.
fn pair<'a>(cases: &'a [CaseResult], c: &CaseResult) -> Option<(&'a CaseResult, &'a CaseResult)> {
    let find = |d: Device| {
        cases.iter().find(|o| {
            o.device == d
                && o.what == c.what
                && o.batch == c.batch
                && o.hidden == c.hidden
                && o.ok()
        })
    };
    Some((find(Device::Cpu)?, find(Device::Gpu)?))
}

fn crossovers(what: &[Work], cases: &[CaseResult]) -> Vec<Crossover> {
    what.iter()
        .map(|&w| {
            let mut both: Vec<(&CaseResult, &CaseResult)> = cases
                .iter()
                .filter(|c| c.what == w && c.device == Device::Cpu)
                .filter_map(|c| pair(cases, c))
                .collect();
            both.sort_by(|a, b| {
                a.0.ops
                    .total_cmp(&b.0.ops)
                    .then((a.0.batch, a.0.hidden).cmp(&(b.0.batch, b.0.hidden)))
            });
            let first = both.iter().find(|(c, g)| g.median_s < c.median_s);
            Crossover {
                what: w,
                compared: both.len(),
                batch: first.map(|(c, _)| c.batch),
                hidden: first.map(|(c, _)| c.hidden),
                gpu_speedup: first.and_then(|(c, g)| Some(c.median_s? / g.median_s?)),
            }
        })
        .collect()
}

/// "gpu 2.1x faster" / "cpu 3.4x faster" for a case measured on both devices.
fn versus(cases: &[CaseResult], c: &CaseResult) -> Option<String> {
    let (cpu, gpu) = pair(cases, c)?;
    let (tc, tg) = (cpu.median_s?, gpu.median_s?);
    Some(if tg < tc {
        format!("gpu {}x faster", ratio(tc / tg))
    } else {
        format!("cpu {}x faster", ratio(tg / tc))
    })
}

// ---------------------------------------------------------------------------------------------
// The NumPy peer.

/// Runs the chapter's NumPy code for one numerical-gradient step and one backprop step at
/// 784-50-10, batch 100, and compares each with our matching CPU case.
fn run_peer(
    peer: Peer,
    repeat: usize,
    cases: &[CaseResult],
    progress: &Progress,
) -> Vec<PeerResult> {
    let ours = |w: Work| {
        cases
            .iter()
            .find(|c| {
                c.device == Device::Cpu
                    && c.what == w
                    && c.batch == PEER_BATCH
                    && c.hidden == PEER_HIDDEN
            })
            .and_then(|c| c.median_s)
    };
    let ready = python_with_numpy();
    let blas_threads = blas_threads();
    // A NumPy numerical step takes seconds: one run of it, no warm-up (NumPy has no JIT).
    let timed: Vec<(&'static str, usize, std::result::Result<f64, String>)> =
        [("numerical", 1), ("backprop", repeat)]
            .into_iter()
            .map(|(what, repeats)| {
                progress.line(&format!(
                    "peer {}: {what} step, 784-{PEER_HIDDEN}-10 batch {PEER_BATCH}",
                    peer_name(peer)
                ));
                let t = ready
                    .clone()
                    .and_then(|()| run_numpy(what, repeats).map_err(|e| format!("error: {e}")));
                (what, repeats, t)
            })
            .collect();
    // Their numerical step against both of our strategies (the full one, the same algorithm,
    // only when this grid measured it), their backprop step against ours.
    let comparisons = [
        ("numerical", Work::NumericalIncremental),
        ("numerical", Work::NumericalFull),
        ("backprop", Work::Backprop),
    ];
    comparisons
        .into_iter()
        .filter(|&(_, w)| w != Work::NumericalFull || ours(w).is_some())
        .filter_map(|(what, ours_what)| {
            let (_, repeats, t) = timed.iter().find(|(w, ..)| *w == what)?;
            let median_s = t.as_ref().ok().copied();
            let ours_median_s = ours(ours_what);
            Some(PeerResult {
                peer,
                what,
                batch: PEER_BATCH,
                hidden: PEER_HIDDEN,
                repeats: if median_s.is_some() { *repeats } else { 0 },
                median_s,
                status: t.as_ref().map_or_else(|why| why.clone(), |_| "ok".into()),
                blas_threads: blas_threads.clone(),
                ours: ours_what,
                ours_median_s,
                speedup: median_s.zip(ours_median_s).map(|(p, o)| p / o),
            })
        })
        .collect()
}

fn peer_name(peer: Peer) -> &'static str {
    match peer {
        Peer::Numpy => "numpy",
    }
}

/// The thread variables NumPy's BLAS reads, as set, or what it does without them.
fn blas_threads() -> String {
    let set: Vec<String> = ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
        .collect();
    if set.is_empty() {
        "NumPy's default (a BLAS thread per core)".into()
    } else {
        set.join(" ")
    }
}

/// Ok when python3 runs and imports numpy; else the row status saying what is missing.
fn python_with_numpy() -> std::result::Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Err(_) => Err("not run: no python3".into()),
        Ok(s) if !s.success() => Err("not run: python3 has no numpy (pip install numpy)".into()),
        Ok(_) => Ok(()),
    }
}

/// Runs the embedded peer script (`python3 -` reads it from stdin) and returns its median.
fn run_numpy(what: &str, repeats: usize) -> std::result::Result<f64, String> {
    let mut child = Command::new("python3")
        .arg("-")
        .args([
            "--what",
            what,
            "--batch",
            &PEER_BATCH.to_string(),
            "--hidden",
            &PEER_HIDDEN.to_string(),
        ])
        .args(["--repeat", &repeats.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start python3: {e}"))?;
    // The script is small, so writing it all before reading cannot fill a pipe and deadlock.
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(PEER_SCRIPT.as_bytes())
            .map_err(|e| format!("writing the script to python3: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for python3: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(format!(
            "the peer script failed ({}): {last}",
            output.status
        ));
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("the peer script printed no JSON")?;
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("the peer script's JSON: {e}"))?;
    v.get("median_s")
        .and_then(|m| m.as_f64())
        .ok_or_else(|| "the peer script's JSON has no median_s".to_string())
}

// ---------------------------------------------------------------------------------------------
// The header: where and how this was measured.

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown (no \"model name\" in /proc/cpuinfo)".into())
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The command line as typed, quoted where a shell would need it.
fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or(p)
        })
        .unwrap_or_else(|| "gpu-train".into());
    std::iter::once(program)
        .chain(args)
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.,/=:+@%".contains(c));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Now, as "2026-11-23T19:30:05Z".
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to the civil date (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Output.

fn stdout_error(e: std::io::Error) -> Error {
    Error::io("<output>", e)
}

fn write_json(path: &Path, report: &Report) -> Result<()> {
    let text = serde_json::to_string_pretty(report).map_err(|e| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

fn write_header<W: Write + ?Sized>(out: &mut W, r: &Report) -> std::io::Result<()> {
    writeln!(out, "gpu-train bench")?;
    writeln!(out, "command:  {}", r.command)?;
    writeln!(out, "date:     {} (UTC)", r.date_utc)?;
    writeln!(
        out,
        "cpu:      {}, {} rayon threads",
        r.cpu_model, r.threads
    )?;
    if let Some(load) = r.load_avg {
        let busy = if load > r.threads as f64 * 0.5 {
            " (busy: timings are slower and noisier)"
        } else {
            ""
        };
        writeln!(
            out,
            "load:     {load:.2} (1-minute average at the start){busy}"
        )?;
    }
    match (&r.adapter, &r.gpu_unavailable) {
        (Some(a), _) => writeln!(out, "gpu:      {a}")?,
        (None, Some(why)) => writeln!(out, "gpu:      none usable: {why}")?,
        (None, None) => writeln!(out, "gpu:      not requested")?,
    }
    writeln!(out, "data:     {}", r.data)?;
    writeln!(
        out,
        "budget:   {} per case; up to {} timed repeats after one warm-up",
        secs(r.budget_s),
        r.repeat
    )?;
    out.flush()
}

fn write_body<W: Write + ?Sized>(out: &mut W, grid: &Grid, r: &Report) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<6} {:<21} {:>5} {:>6} {:>7} {:>4} {:>10} {:>10} {:>10} {:>11} {:>15}  cpu vs gpu / status",
        "device",
        "what",
        "batch",
        "hidden",
        "params",
        "reps",
        "median¹",
        "min",
        "max",
        "ops²",
        "rate",
    )?;
    let mut last_what = None;
    for c in &r.cases {
        if last_what.is_some_and(|w| w != c.what) {
            writeln!(out)?;
        }
        last_what = Some(c.what);
        let lead = format!(
            "{:<6} {:<21} {:>5} {:>6} {:>7}",
            c.device.name(),
            c.what.name(),
            c.batch,
            c.hidden,
            c.params
        );
        match (c.median_s, c.min_s, c.max_s) {
            (Some(med), Some(min), Some(max)) => {
                let rate = c
                    .rate
                    .map(|v| c.op_unit.rate(v))
                    .unwrap_or_else(|| "-".into());
                let vs = if c.device == Device::Gpu {
                    versus(&r.cases, c).unwrap_or_default()
                } else {
                    String::new()
                };
                let vs = match c.device_median_s {
                    Some(d) => format!("{vs}; kernels {}³", secs(d))
                        .trim_start_matches("; ")
                        .to_string(),
                    None => vs,
                };
                let note = if c.status == "ok" {
                    vs
                } else {
                    format!("{vs}  [{}]", c.status)
                };
                let line = format!(
                    "{lead} {:>4} {:>10} {:>10} {:>10} {:>11} {:>15}  {}",
                    c.repeats,
                    secs(med),
                    secs(min),
                    secs(max),
                    c.op_unit.amount(c.ops),
                    rate,
                    note.trim()
                );
                writeln!(out, "{}", line.trim_end())?;
            }
            _ => writeln!(
                out,
                "{lead} {:>4} {:>10} {:>10} {:>10} {:>11} {:>15}  {}",
                "-",
                "",
                "",
                "",
                c.op_unit.amount(c.ops),
                "",
                c.status
            )?,
        }
    }
    writeln!(out)?;
    writeln!(out, "¹ wall (submit+wait): wall clock around set_batch + the call, median of the timed repeats after")?;
    writeln!(out, "  one warm-up; each call reads its result back, so on the GPU it is submit-and-wait. The ratios")?;
    writeln!(out, "  compare these wall times.")?;
    if r.cases.iter().any(|c| c.device_median_s.is_some()) {
        writeln!(out, "³ kernels: the GPU's own time for the call, from timestamp queries around its work (first kernel")?;
        writeln!(
            out,
            "  to last, same repeats, median): wall minus submission, read-back and host overhead."
        )?;
    } else if r
        .cases
        .iter()
        .any(|c| c.device == Device::Gpu && c.median_s.is_some())
    {
        writeln!(
            out,
            "  This adapter has no timestamp queries: the GPU rows are wall clock only."
        )?;
    }
    writeln!(out, "² forward = 2*B*sum(fan_in*fan_out) FLOPs (bias, activation, softmax and loss are O(B*(H+10)),")?;
    writeln!(out, "  under 1% here, not counted); backprop ~ 3x forward; train-step = backprop + the forward of the loss")?;
    writeln!(out, "  readback = 4x forward (SGD's 2P not counted); numerical-full = 2P forward passes; numerical-incremental")?;
    writeln!(
        out,
        "  in perturbations (2P a step, each O(B*10) work for the samples it reaches)."
    )?;
    if grid.batches.is_none() && grid.what.iter().any(|w| w.is_numerical()) {
        writeln!(out, "  numerical-* run at batch {NUMERICAL_DEFAULT_BATCH} only by default (give --batch to change that).")?;
    }
    writeln!(out, "  A case priced over --budget (warm-up + one repeat; from its op count at this device's forward rate,")?;
    writeln!(out, "  the numerical gradient also by a probe at a smaller batch) is skipped; a slow case gets fewer repeats.")?;

    writeln!(out)?;
    writeln!(out, "growth: time ~ hidden^k_h * batch^k_b, least squares on log-log (the op count's exponents for comparison)")?;
    if r.fits.is_empty() {
        writeln!(out, "  nothing measured")?;
    }
    for f in &r.fits {
        let k = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into());
        writeln!(
            out,
            "  {:<4} {:<21} k_h {:>5}  k_b {:>5}   (ops: k_h {}, k_b {}; {} point{})",
            f.device.name(),
            f.what.name(),
            k(f.k_hidden),
            k(f.k_batch),
            k(f.ops_k_hidden),
            k(f.ops_k_batch),
            f.points,
            if f.points == 1 { "" } else { "s" }
        )?;
    }
    writeln!(out)?;
    writeln!(out, "where the GPU overtakes the CPU (smallest op count at which the gpu median < the cpu median):")?;
    for x in &r.crossovers {
        let text = match (x.compared, x.batch, x.hidden, x.gpu_speedup) {
            (0, ..) => "not compared (not measured on both devices)".to_string(),
            (_, Some(b), Some(h), Some(s)) => {
                format!("batch {b}, hidden {h} (gpu {}x faster there)", ratio(s))
            }
            (n, ..) => format!("not in this range (cpu faster at all {n} sizes)"),
        };
        writeln!(out, "  {:<21} {text}", x.what.name())?;
    }
    if !r.peers.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "peer: the chapter's NumPy code (benches/peers/chapter_numpy.py: f64, random MNIST-shaped data), 784-{PEER_HIDDEN}-10, batch {PEER_BATCH}"
        )?;
        if let Some(p) = r.peers.first() {
            writeln!(out, "  BLAS threads: {} (a busy machine hurts a multi-threaded BLAS most; see benches/peers/README.md)", p.blas_threads)?;
        }
        for p in &r.peers {
            let theirs = match p.median_s {
                Some(t) => format!(
                    "numpy {} ({} repeat{})",
                    secs(t),
                    p.repeats,
                    if p.repeats == 1 { "" } else { "s" }
                ),
                None => format!("numpy {}", p.status),
            };
            let ours = match p.ours_median_s {
                Some(t) => format!("ours (cpu {}) {}", p.ours.name(), secs(t)),
                None => format!(
                    "ours (cpu {}): not in this grid (add --device cpu --what {} --hidden {PEER_HIDDEN})",
                    p.ours.name(),
                    p.ours.name()
                ),
            };
            let speed = match p.speedup {
                Some(s) if s >= 1.0 => format!(" -> ours {}x faster", ratio(s)),
                Some(s) => format!(" -> numpy {}x faster", ratio(1.0 / s)),
                None => String::new(),
            };
            writeln!(
                out,
                "  {:<15} {theirs}; {ours}{speed}",
                format!("{} step:", p.what)
            )?;
        }
    }
    Ok(())
}

/// "12.3 us", "4.56 ms", "1.23 s".
fn secs(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1} us", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else if s < 100.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.0} s")
    }
}

/// "1.5", "23", "610".
fn ratio(r: f64) -> String {
    if r < 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.0}")
    }
}

/// 3 significant digits with an SI prefix and a trailing space: "7.95 M", "39.8 k".
fn si(v: f64) -> String {
    let (scaled, prefix) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|&(f, _)| v.abs() >= f)
        .map(|(f, p)| (v / f, p))
        .unwrap_or((v, ""));
    let digits = if scaled.abs() >= 100.0 {
        0
    } else if scaled.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{scaled:.digits$} {prefix}")
}

/// Progress on stderr when it is a terminal; silent otherwise, so piped output stays clean.
struct Progress {
    on: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            on: std::io::stderr().is_terminal(),
        }
    }
    fn show(&self, device: Device, what: Work, s: &Shape) {
        self.line(&format!(
            "{} {} batch {} hidden {}",
            device.name(),
            what.name(),
            s.batch,
            s.hidden
        ));
    }
    fn line(&self, text: &str) {
        if self.on {
            eprint!("\r\x1b[Kbench: {text} ...");
        }
    }
    fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loglog_recovers_exponents() {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for h in [50.0f64, 100.0, 200.0] {
            for b in [100.0f64, 1000.0] {
                x.push([h.ln(), b.ln()]);
                y.push((3.0 * h.powf(1.5) * b.powf(0.5)).ln());
            }
        }
        let [kh, kb] = loglog(&x, &y);
        assert!((kh.unwrap() - 1.5).abs() < 1e-9 && (kb.unwrap() - 0.5).abs() < 1e-9);
        // One batch size: no batch exponent, the hidden one still fits.
        let [kh, kb] = loglog(
            &x[..1]
                .iter()
                .chain(&x[2..3])
                .chain(&x[4..5])
                .copied()
                .collect::<Vec<_>>(),
            &[y[0], y[2], y[4]],
        );
        assert!((kh.unwrap() - 1.5).abs() < 1e-9 && kb.is_none());
        assert_eq!(loglog(&x[..1], &y[..1]), [None, None]);
    }

    #[test]
    fn formats() {
        assert_eq!(secs(12.3e-6), "12.3 us");
        assert_eq!(secs(0.01456), "14.56 ms");
        assert_eq!(si(7.95e6), "7.95 M");
        assert_eq!(si(79520.0), "79.5 k");
        assert_eq!(ratio(613.4), "613");
        assert!(utc_now().ends_with('Z') && utc_now().len() == 20);
    }

    #[test]
    fn bad_values_name_the_flag_and_the_choices() {
        let e = BenchArgs::try_parse_from(["--what", "sideways"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--what") && e.contains("numerical-incremental") && e.contains("train-step"),
            "{e}"
        );
        let e = BenchArgs::try_parse_from(["--device", "tpu"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--device") && e.contains("cpu") && e.contains("gpu"),
            "{e}"
        );
        let args = BenchArgs::try_parse_from(["--hidden", "0"]).unwrap();
        assert!(Grid::new(&args)
            .err()
            .unwrap()
            .to_string()
            .contains("--hidden"));
        let args = BenchArgs::try_parse_from(["--budget", "-1"]).unwrap();
        assert!(Grid::new(&args)
            .err()
            .unwrap()
            .to_string()
            .contains("--budget"));
    }

    #[test]
    fn numerical_defaults_to_batch_100() {
        let grid = Grid::new(&BenchArgs::try_parse_from(Vec::<String>::new()).unwrap()).unwrap();
        assert_eq!(grid.batches_for(Work::NumericalFull), vec![100]);
        assert_eq!(grid.batches_for(Work::Forward), vec![100, 1000]);
        let grid = Grid::new(&BenchArgs::try_parse_from(["--batch", "10,20"]).unwrap()).unwrap();
        assert_eq!(grid.batches_for(Work::NumericalFull), vec![10, 20]);
    }
}
