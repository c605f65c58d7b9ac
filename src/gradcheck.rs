//! `gpu-train gradcheck`: every device's gradient (numerical with each strategy, and backprop)
//! against f64 CPU backprop on a few images, per parameter tensor, each row PASS or FAIL against
//! the tolerance its method is held to in training (`check::tolerance_for`).
//!
//! The library computes a [`Report`] and renders its lines (each under 100 columns); the CLI
//! prints them as they come and sets the exit status from [`Report::passed`].
//!
//! A `full` row costs 2P forward passes of the batch (a minute on lavapipe), so it is priced
//! first with `bench`'s first rule (src/bench/runner.rs): its op count at the forward pass's
//! measured time; a row priced over `--budget` is skipped and says so (SKIP, not a failure).
//! Bench's second price, the same call on one sample scaled up, is not used: on lavapipe the
//! 1-sample `full` call took as long as the 3-sample one (55.7 s against 57.2 s), so it would
//! spend the budget it guards. A forward call carries its own launch and read-back, which the
//! `full` kernels share over many perturbations, so this price errs high (135 s for those 57 s).

use crate::backend::{Backend, GradMethod, PerturbStrategy};
use crate::check::{numerical, per_tensor, tolerance_for, verdict, TensorError};
use crate::cpu::CpuBackend;
use crate::data::{Mnist, Sampler, SamplerKind};
use crate::error::{Error, Result};
use crate::gpu::{Context, GpuBackend};
use crate::model::{Activation, MlpSpec, Params};
use std::sync::Arc;
use web_time::Instant;

/// The widest line the report prints.
pub const WIDTH: usize = 100;
/// Where a row's per-tensor figures start.
const INDENT: &str = "         ";
/// Batch and learning rate of the backprop steps taken before checking (`steps`).
const TRAIN_BATCH: usize = 100;
const TRAIN_LR: f64 = 0.1;
/// Seconds one row may take by default (`--budget`): the CPU `full` rows (~2.5 s on this
/// project's 2-core Zen 4) run; the GPU one on lavapipe (57 s, priced 135 s) is skipped.
pub const DEFAULT_BUDGET_S: f64 = 60.0;

/// What to check.
#[derive(Debug, Clone)]
pub struct Config {
    /// Check the CPU backends (f64 and f32).
    pub cpu: bool,
    /// Check the GPU backend (any adapter, lavapipe included).
    pub gpu: bool,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    /// Samples in the batch: the first `batch` training images.
    pub batch: usize,
    /// f32 backprop steps taken before checking (0: at initialisation).
    pub steps: usize,
    pub seed: u64,
    /// Step of the central difference.
    pub h: f64,
    /// Seconds a row may take: one priced over it is skipped (see the module doc).
    pub budget: f64,
}

/// The net, the parameters and the batch every device is checked at, and the reference.
pub struct Setup {
    pub spec: MlpSpec,
    pub params: Params,
    pub indices: Vec<u32>,
    /// f64 CPU backprop's gradient at `params` on `indices`.
    pub reference: Vec<f64>,
    pub config: Config,
}

/// One device's gradient by one method against the reference.
#[derive(Debug, Clone)]
pub struct Row {
    pub device: String,
    pub method: GradMethod,
    /// Relative error of the whole gradient; None when the device failed to compute it.
    pub total: Option<f64>,
    pub tensors: Vec<TensorError>,
    pub tolerance: f64,
    pub passed: bool,
    pub seconds: f64,
    /// The device's error, when it failed.
    pub error: Option<String>,
    /// Why the row was not computed (priced over the budget); such a row neither passes nor
    /// fails.
    pub skipped: Option<String>,
}

/// Every row, and what they were checked at.
#[derive(Debug, Clone)]
pub struct Report {
    /// The header lines (the net, the batch, the reference, the tolerances, the adapter).
    pub header: Vec<String>,
    pub rows: Vec<Row>,
}

/// What the checker is doing, for a caller that shows progress.
pub enum Event<'a> {
    /// The header lines, once the reference is computed and the devices are open.
    Header(&'a [String]),
    /// A row is about to be computed (the numerical `full` strategy takes seconds): what it
    /// is priced at, where it was priced.
    Started {
        device: &'a str,
        method: GradMethod,
        estimate_s: Option<f64>,
    },
    /// A row is done.
    Done(&'a Row),
}

/// Checks every device `config` asks for; `on` hears each row start and finish.
pub fn run(config: &Config, data: Arc<Mnist>, on: &mut dyn FnMut(Event)) -> Result<Report> {
    let setup = prepare(config, data.clone())?;
    let (devices, adapter) = open_devices(config, &setup.spec, data)?;
    let mut report = Report {
        header: setup.header(adapter.as_deref()),
        rows: Vec::new(),
    };
    on(Event::Header(&report.header));
    report.rows = check(&setup, devices, on);
    Ok(report)
}

/// The parameters (at init, or after `steps` f32 backprop steps) and the f64 reference.
pub fn prepare(config: &Config, data: Arc<Mnist>) -> Result<Setup> {
    if config.batch == 0 {
        return Err(Error::config(
            "--batch",
            "must be at least 1 (the chapter's gradient check uses 3)",
        ));
    }
    if !(config.budget.is_finite() && config.budget > 0.0) {
        return Err(Error::config(
            "--budget",
            format!(
                "{} is not a positive number of seconds per row (the default is {DEFAULT_BUDGET_S})",
                config.budget
            ),
        ));
    }
    if !(config.h.is_finite() && config.h > 0.0) {
        return Err(Error::config(
            "--h",
            format!(
                "{} is not a positive step (the chapter's is 1e-4)",
                config.h
            ),
        ));
    }
    if config.batch > data.train.len() {
        return Err(Error::config(
            "--batch",
            format!(
                "{} is more than the {} training images",
                config.batch,
                data.train.len()
            ),
        ));
    }
    let spec = MlpSpec::new(
        data.train.input_width(),
        config.hidden.clone(),
        data.train.classes(),
        config.activation,
    )?;
    crate::budget::check_gradcheck(config.batch, config.h, data.train.len())?;
    crate::budget::check_memory("gradcheck", &spec, config.batch, data.pixels(), true, 5)?;
    let params = trained(config, &spec, &data)?;
    let indices: Vec<u32> = (0..config.batch as u32).collect();
    let mut oracle = crate::reference::ReferenceBackend::new(spec.clone(), data)?;
    oracle.set_params(&params)?;
    oracle.set_batch(&indices)?;
    let reference = oracle.gradient(GradMethod::Backprop)?;
    Ok(Setup {
        spec,
        params,
        indices,
        reference,
        config: config.clone(),
    })
}

/// The parameters after `config.steps` f32 backprop steps from the seeded initialisation.
fn trained(config: &Config, spec: &MlpSpec, data: &Arc<Mnist>) -> Result<Params> {
    let mut trainer = CpuBackend::<f32>::new(spec.clone(), data.clone())?;
    trainer.set_params(&Params::init(spec, config.seed))?;
    let kind = SamplerKind::WithReplacement;
    let mut sampler = Sampler::new(kind, data.train.len(), config.seed)?;
    let mut batch = Vec::new();
    for _ in 0..config.steps {
        sampler.next_batch(TRAIN_BATCH, &mut batch)?;
        trainer.set_batch(&batch)?;
        trainer.step(GradMethod::Backprop, TRAIN_LR)?;
    }
    trainer.params()
}

/// The backends to check, labelled for the rows; and the adapter's name when the GPU is one.
pub type Devices = Vec<(String, Box<dyn Backend>)>;

fn open_devices(
    config: &Config,
    spec: &MlpSpec,
    data: Arc<Mnist>,
) -> Result<(Devices, Option<String>)> {
    let mut devices: Devices = Vec::new();
    let mut adapter = None;
    if config.cpu {
        let f64 = CpuBackend::<f64>::new(spec.clone(), data.clone())?;
        devices.push(("cpu f64".into(), Box::new(f64)));
        let f32 = CpuBackend::<f32>::new(spec.clone(), data.clone())?;
        devices.push(("cpu f32".into(), Box::new(f32)));
    }
    if config.gpu {
        let ctx = Context::gpu()?;
        adapter = Some(ctx.adapter_info().name.clone());
        let gpu = GpuBackend::new(Arc::new(ctx), spec.clone(), data)?;
        devices.push(("gpu".into(), Box::new(gpu)));
    }
    Ok((devices, adapter))
}

/// Each device's gradient by each method (numerical incremental, numerical full, backprop)
/// against the reference, in that order.
pub fn check(setup: &Setup, mut devices: Devices, on: &mut dyn FnMut(Event)) -> Vec<Row> {
    let h = setup.config.h;
    let numerical_with = |strategy| GradMethod::Numerical { strategy, h };
    let methods = [
        numerical_with(PerturbStrategy::Incremental),
        numerical_with(PerturbStrategy::Full),
        GradMethod::Backprop,
    ];
    let mut rows = Vec::new();
    for (name, backend) in devices.iter_mut() {
        let ready = backend
            .set_params(&setup.params)
            .and_then(|()| backend.set_batch(&setup.indices));
        for method in methods {
            let price = match &ready {
                Ok(()) => setup.price(backend.as_mut(), method),
                Err(_) => Ok(None),
            };
            let estimate_s = match &price {
                Ok(Some(p)) => Some(p.seconds),
                _ => None,
            };
            let skip = match &price {
                Ok(Some(p)) if p.seconds > setup.config.budget => Some(format!(
                    "est. {} > budget {} ({}; raise --budget)",
                    crate::fmt::seconds(p.seconds),
                    crate::fmt::seconds(setup.config.budget),
                    p.basis
                )),
                _ => None,
            };
            if skip.is_none() {
                on(Event::Started {
                    device: name,
                    method,
                    estimate_s,
                });
            }
            let row = match (&ready, &price, skip) {
                (Err(e), _, _) | (Ok(()), Err(e), _) => failed(name, method, e, 0.0),
                (Ok(()), Ok(_), Some(why)) => skipped(name, method, why),
                (Ok(()), Ok(_), None) => setup.row(name, backend.as_mut(), method),
            };
            on(Event::Done(&row));
            rows.push(row);
        }
    }
    rows
}

/// A row whose device could not compute the gradient: FAIL, with the error.
fn failed(device: &str, method: GradMethod, e: &Error, seconds: f64) -> Row {
    Row {
        device: device.to_string(),
        method,
        total: None,
        tensors: Vec::new(),
        tolerance: tolerance_for(method),
        passed: false,
        seconds,
        error: Some(e.to_string()),
        skipped: None,
    }
}

/// A row priced over the budget: not computed, SKIP, with why.
fn skipped(device: &str, method: GradMethod, why: String) -> Row {
    Row {
        skipped: Some(why),
        error: None,
        ..failed(device, method, &Error::Numerics(String::new()), 0.0)
    }
}

/// What a row should cost, and from what.
struct Price {
    seconds: f64,
    basis: String,
}

impl Setup {
    /// The price of a `full` row (the others cost about a training step; None): 2P forward
    /// passes of the batch at the measured forward time.
    fn price(&self, backend: &mut dyn Backend, method: GradMethod) -> Result<Option<Price>> {
        if !matches!(
            method,
            GradMethod::Numerical {
                strategy: PerturbStrategy::Full,
                ..
            }
        ) {
            return Ok(None);
        }
        // The first call builds what the device needs (pipelines on a GPU): not timed.
        backend.batch_loss()?;
        let clock = Instant::now();
        backend.batch_loss()?;
        let forward = clock.elapsed().as_secs_f64();
        let passes = 2.0 * self.spec.num_params() as f64;
        Ok(Some(Price {
            seconds: forward * passes,
            basis: format!(
                "{passes:.0} forward passes of {}",
                crate::fmt::seconds(forward)
            ),
        }))
    }

    fn row(&self, device: &str, backend: &mut dyn Backend, method: GradMethod) -> Row {
        let clock = Instant::now();
        let got = backend.gradient(method);
        let seconds = clock.elapsed().as_secs_f64();
        let got = match got {
            Ok(g) if g.len() == self.reference.len() => g,
            Ok(g) => {
                let why = format!("{} values, expected {}", g.len(), self.reference.len());
                return failed(device, method, &Error::Numerics(why), seconds);
            }
            Err(e) => return failed(device, method, &e, seconds),
        };
        let (tensors, total) = per_tensor(&self.spec, &got, &self.reference);
        Row {
            device: device.to_string(),
            method,
            total: Some(total),
            passed: verdict(method, &tensors, total),
            tensors,
            tolerance: tolerance_for(method),
            seconds,
            error: None,
            skipped: None,
        }
    }

    /// What every row is checked at, in lines under [`WIDTH`].
    pub fn header(&self, adapter: Option<&str>) -> Vec<String> {
        let c = &self.config;
        let steps = match c.steps {
            0 => "at initialisation".to_string(),
            1 => "after 1 backprop step".to_string(),
            n => format!("after {n} backprop steps"),
        };
        let images = match c.batch {
            1 => "the first training image".to_string(),
            n => format!("the first {n} training images"),
        };
        let mut lines = vec![
            format!("gradient check: {}, {steps}, {images}", self.spec.describe()),
            format!("reference: f64 CPU backprop; central differences with h = {:e}", c.h),
            format!(
                "tolerance (relative, whole gradient and each tensor): numerical {:e}, backprop {:e}",
                tolerance_for(numerical(PerturbStrategy::Incremental)),
                tolerance_for(GradMethod::Backprop)
            ),
            format!(
                "budget: {} a row (a row priced over it is skipped; --budget)",
                crate::fmt::seconds(c.budget)
            ),
        ];
        if let Some(name) = adapter {
            lines.push(format!("gpu: {name}"));
        }
        lines
    }
}

impl Report {
    /// The rows computed (not skipped).
    fn checked(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.skipped.is_none())
    }

    /// Every computed row within its tolerance (and at least one computed row).
    pub fn passed(&self) -> bool {
        self.checked().next().is_some() && self.checked().all(|r| r.passed)
    }

    /// The process's exit status: 0 when every row passed, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.passed() {
            0
        } else {
            1
        }
    }

    /// The row nearest its tolerance (or furthest beyond it), and its worst figure: "worst:
    /// gpu numerical full, W1 1.3e-7 (tolerance 1e-5)".
    pub fn worst_line(&self) -> Option<String> {
        let r = self
            .checked()
            .max_by(|a, b| margin(a).total_cmp(&margin(b)))?;
        let what = format!("worst: {} {}", r.device, short(r.method));
        let tensor = r
            .tensors
            .iter()
            .max_by(|a, b| a.relative.total_cmp(&b.relative));
        Some(match (r.total, tensor) {
            (Some(t), Some(x)) if x.relative > t => {
                format!(
                    "{what}, {} {:.2e} (tolerance {:e})",
                    x.name, x.relative, r.tolerance
                )
            }
            (Some(t), _) => format!("{what}, {t:.2e} (tolerance {:e})", r.tolerance),
            (None, _) => format!("{what}: no gradient (see its row)"),
        })
    }

    /// The final line: PASS or FAIL, and how many rows failed.
    pub fn verdict_line(&self) -> String {
        let failed = self.checked().filter(|r| !r.passed).count();
        let n = self.checked().count();
        let skipped = match self.rows.len() - n {
            0 => String::new(),
            k => format!(" ({k} skipped: over the budget)"),
        };
        match (n, failed) {
            (0, _) => format!("verdict: FAIL (nothing was checked){skipped}"),
            (_, 0) => format!("verdict: PASS, all {n} rows within tolerance{skipped}"),
            _ => format!("verdict: FAIL, {failed} of {n} rows beyond tolerance{skipped}"),
        }
    }
}

/// How close a row came to its tolerance (error / tolerance; a failed row is worst of all).
fn margin(r: &Row) -> f64 {
    let worst_tensor = r.tensors.iter().map(|t| t.relative).fold(0.0, f64::max);
    let e = r.total.unwrap_or(f64::INFINITY).max(worst_tensor);
    if e.is_nan() {
        f64::INFINITY
    } else {
        e / r.tolerance
    }
}

/// "numerical incremental", "numerical full", "backprop": a row's name.
pub fn short(method: GradMethod) -> String {
    match method {
        GradMethod::Backprop => "backprop".into(),
        GradMethod::Numerical { strategy, .. } => format!("numerical {}", strategy.name()),
    }
}

/// The column titles, and the legend of the per-tensor line.
pub fn table_head() -> [String; 2] {
    [
        format!(
            "{:<8} {:<22} {:>10} {:>10}  {:<6} {:>9}",
            "device", "gradient", "error", "tolerance", "result", "time"
        ),
        format!("{INDENT}per tensor: relative error / largest absolute difference"),
    ]
}

impl Row {
    /// The row's line, then its per-tensor figures (or its error) on indented lines, each under
    /// [`WIDTH`] columns.
    pub fn render(&self) -> Vec<String> {
        let error = match self.total {
            Some(t) => format!("{t:.2e}"),
            None => "-".to_string(),
        };
        let verdict = match (&self.skipped, self.passed) {
            (Some(_), _) => "SKIP",
            (None, true) => "PASS",
            (None, false) => "FAIL",
        };
        let first = format!(
            "{:<8} {:<22} {:>10} {:>10}  {:<6} {:>7.2} s",
            self.device,
            short(self.method),
            error,
            format!("{:e}", self.tolerance),
            verdict,
            self.seconds
        );
        let room = WIDTH - INDENT.len();
        let detail = match (&self.skipped, &self.error) {
            (Some(why), _) => wrap(format!("skipped: {why}").split(' '), " ", room),
            (None, Some(e)) => wrap(format!("error: {e}").split(' '), " ", room),
            (None, None) => {
                let cells: Vec<String> = self
                    .tensors
                    .iter()
                    .map(|t| format!("{} {:.1e} / {:.1e}", t.name, t.relative, t.max_abs))
                    .collect();
                wrap(cells.iter().map(String::as_str), "   ", room)
            }
        };
        let mut lines = vec![first];
        lines.extend(detail.into_iter().map(|l| format!("{INDENT}{l}")));
        lines
    }
}

/// Items joined by `sep` into lines of at most `room` characters (an item longer than that
/// gets a line of its own).
fn wrap<'a>(items: impl IntoIterator<Item = &'a str>, sep: &str, room: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for item in items {
        let len = line.chars().count() + sep.len() + item.chars().count();
        if !line.is_empty() && len > room {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push_str(sep);
        }
        line.push_str(item);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wrap_under_the_width() {
        let cells: Vec<String> = (0..9).map(|i| format!("W{i} 1.2e-7 / 3.4e-10")).collect();
        let lines = wrap(cells.iter().map(String::as_str), "   ", 46);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| l.len() <= 46), "{lines:?}");
        assert_eq!(lines[0], "W0 1.2e-7 / 3.4e-10   W1 1.2e-7 / 3.4e-10");
        assert_eq!(lines.join("   "), cells.join("   "));
        assert_eq!(wrap(["a", "bb", "c"], " ", 4), ["a bb", "c"]);
    }
}
