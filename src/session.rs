//! The `train` command's logic, in the library where it can be tested without spawning the
//! binary: choosing a fresh run or a resume (and checking the flags against the checkpoint
//! before anything is touched), the device, the run folder, and the small observers that write
//! metrics, take checkpoints (on a cadence, on Ctrl-C, before a stop) and check the gradient
//! against the f64 reference. The CLI supplies a [`Ui`] (the terminal printer) and the Ctrl-C
//! flag.

use crate::backend::{Backend, GradMethod};
use crate::check::Checker;
use crate::checkpoint::{self, Checkpoint, StoredPrecision};
use crate::cpu::CpuBackend;
use crate::data::{self, Mnist, SamplerKind, SamplerState};
use crate::error::{Error, Result};
use crate::gpu::{Context, GpuBackend};
use crate::model::{Activation, MlpSpec, Params};
use crate::run::RunDir;
use crate::train::{
    iters_per_epoch, train_from, Control, Ending, EvalRecord, Observer, Observers, Start,
    TrainConfig, TrainSummary,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
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
}

/// The reference checks of a run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ChecksSummary {
    pub passed: usize,
    pub worst: Option<f64>,
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
pub fn plan(req: &TrainRequest) -> Result<Plan> {
    if req.checkpoint_every == Some(0) {
        return Err(Error::config(
            "--checkpoint-every",
            "must be at least 1 (or leave it out: the checkpoint is written at the end)",
        ));
    }
    let (ckpt, mnist) = load_data(req)?;
    let train_size = mnist.train.len();
    let flags_spec = MlpSpec::new(
        mnist.train.input_width(),
        req.hidden.clone(),
        mnist.train.classes(),
        req.activation,
    )?;
    if req.resume.is_none() {
        // Before the parameters are allocated: a net that cannot fit is refused with the figure.
        crate::budget::check_memory(
            "train",
            &flags_spec,
            req.batch,
            mnist.pixels(),
            matches!(req.grad, GradMethod::Numerical { .. }),
            2,
        )?;
    }
    let (spec, mut cfg, params, start, default_out) = match (&req.resume, ckpt) {
        (None, _) | (_, None) => {
            let cfg = TrainConfig {
                batch: req.batch,
                lr: req.lr,
                iters: default_iters(),
                seed: req.seed,
                eval_every: 1,
                grad: req.grad,
                sampler: req.sampler,
                loss_every: req.loss_every,
            };
            let params = Params::init(&flags_spec, req.seed);
            (flags_spec, cfg, params, None, None)
        }
        (Some(path), Some(ckpt)) => {
            let r = resumed(req, path, ckpt, &flags_spec, train_size)?;
            (r.spec, r.cfg, r.params, Some(r.start), r.folder)
        }
    };
    if req.resume.is_some() {
        // A resume's net and batch are the checkpoint's (a fresh run was checked above).
        crate::budget::check_memory(
            "train",
            &spec,
            cfg.batch,
            mnist.pixels(),
            matches!(cfg.grad, GradMethod::Numerical { .. }),
            2,
        )?;
    }
    set_length(req, &mut cfg, train_size, start.as_ref())?;
    Ok(Plan {
        data: Arc::new(mnist),
        spec,
        cfg,
        params,
        start,
        out: req.out.clone().or(default_out),
        request: req.clone(),
    })
}

/// A resume's checkpoint (read first: its class count is the data's) and the data.
fn load_data(req: &TrainRequest) -> Result<(Option<Checkpoint>, Mnist)> {
    // A resume's checkpoint is read first: its class count is the data's.
    let ckpt = match &req.resume {
        Some(path) => Some(checkpoint::load(path)?),
        None => None,
    };
    let classes = match &ckpt {
        Some(c) => Some(data::ClassCount {
            count: c.params.spec.classes,
            origin: format!("the checkpoint ({} classes)", c.params.spec.classes),
        }),
        None => req.classes.map(|count| data::ClassCount {
            count,
            origin: format!("--classes {count}"),
        }),
    };
    let mnist = data::load_with(req.data.as_deref(), classes)?;
    Ok((ckpt, mnist))
}

/// What a resume takes from its checkpoint.
struct Resumed {
    spec: MlpSpec,
    cfg: TrainConfig,
    params: Params,
    start: Start,
    /// The checkpoint's run folder, where the resume goes unless --out says otherwise.
    folder: Option<PathBuf>,
}

/// The checkpoint checked against the data and the flags.
fn resumed(
    req: &TrainRequest,
    path: &Path,
    ckpt: Checkpoint,
    flags_spec: &MlpSpec,
    train_size: usize,
) -> Result<Resumed> {
    let data_spec = MlpSpec {
        hidden: ckpt.params.spec.hidden.clone(),
        activation: ckpt.params.spec.activation,
        ..flags_spec.clone()
    };
    checkpoint::check_fits(path, &ckpt.params.spec, &data_spec)?;
    check_resume_flags(req, path, &ckpt, flags_spec)?;
    if ckpt.sampler.n != train_size {
        return Err(Error::config(
            "--data",
            format!(
                "{} was trained on {} training images, this data has {train_size}; resume with the same --data",
                path.display(),
                ckpt.sampler.n
            ),
        ));
    }
    let seconds = ckpt
        .notes
        .get("seconds")
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(0.0);
    let start = Start {
        iteration: ckpt.iteration,
        sampler: ckpt.sampler,
        seconds,
    };
    let folder = path
        .parent()
        .filter(|d| d.join("metrics.csv").is_file())
        .map(Path::to_path_buf);
    let cfg = TrainConfig {
        loss_every: req.loss_every,
        ..ckpt.config.clone()
    };
    Ok(Resumed {
        spec: ckpt.params.spec.clone(),
        cfg,
        params: ckpt.params,
        start,
        folder,
    })
}

/// The run's length and evaluation cadence: --epochs or --iters, one epoch between evaluations
/// unless told otherwise (a resume keeps its checkpoint's).
fn set_length(
    req: &TrainRequest,
    cfg: &mut TrainConfig,
    train_size: usize,
    start: Option<&Start>,
) -> Result<()> {
    let per_epoch = iters_per_epoch(train_size, cfg.batch);
    cfg.eval_every = match req.eval_every {
        Some(n) => n,
        None if req.resume.is_some() && !req.given("eval-every") => cfg.eval_every,
        None => per_epoch,
    };
    if let Some(e) = req.epochs {
        if !(e.is_finite() && e > 0.0 && e * per_epoch as f64 <= u32::MAX as f64) {
            return Err(Error::config(
                "--epochs",
                format!(
                    "must be a positive number of epochs, got {}",
                    crate::fmt::number(e)
                ),
            ));
        }
        cfg.iters = (e * per_epoch as f64).ceil() as usize;
    } else if let Some(n) = req.iters {
        cfg.iters = n;
    }
    cfg.validate()?;
    if let Some(s) = start {
        if cfg.iters < s.iteration {
            return Err(Error::config(
                "--iters",
                format!(
                    "the checkpoint is at iteration {}, past --iters {}; --iters is the run's total, so pass more",
                    s.iteration, cfg.iters
                ),
            ));
        }
    }
    Ok(())
}

/// A flag given with --resume that contradicts the checkpoint is an error naming both values.
fn check_resume_flags(
    req: &TrainRequest,
    path: &Path,
    ckpt: &Checkpoint,
    flags_spec: &MlpSpec,
) -> Result<()> {
    let c = &ckpt.config;
    let (method, strategy, h) = grad_parts(c.grad);
    let (r_method, r_strategy, r_h) = grad_parts(req.grad);
    let pairs: [(&str, String, String); 9] = [
        (
            "hidden",
            join(&flags_spec.hidden),
            join(&ckpt.params.spec.hidden),
        ),
        (
            "activation",
            req.activation.name().into(),
            ckpt.params.spec.activation.name().into(),
        ),
        ("batch", req.batch.to_string(), c.batch.to_string()),
        ("lr", crate::fmt::number(req.lr), crate::fmt::number(c.lr)),
        ("seed", req.seed.to_string(), c.seed.to_string()),
        (
            "sampler",
            req.sampler.as_str().into(),
            c.sampler.as_str().into(),
        ),
        ("grad", r_method.into(), method.into()),
        (
            "numgrad",
            r_strategy.unwrap_or("incremental").into(),
            strategy.unwrap_or("incremental").into(),
        ),
        (
            "h",
            crate::fmt::number(r_h.unwrap_or(crate::backend::DEFAULT_H)),
            crate::fmt::number(h.unwrap_or(crate::backend::DEFAULT_H)),
        ),
    ];
    for (flag, given, stored) in pairs {
        if req.given(flag) && given != stored {
            return Err(Error::config(
                format!("--{flag}"),
                format!(
                    "{given} contradicts the checkpoint {}, which was trained with --{flag} {stored}; a resume continues the same run, so drop --{flag} (or start a fresh run)",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

fn join(v: &[usize]) -> String {
    v.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// (method, strategy, h) as the command line names them.
pub fn grad_parts(g: GradMethod) -> (&'static str, Option<&'static str>, Option<f64>) {
    match g {
        GradMethod::Backprop => ("backprop", None, None),
        GradMethod::Numerical { strategy, h } => ("numerical", Some(strategy.name()), Some(h)),
    }
}

/// Which device a run trains on and why: the sentence printed at start-up, and for `--device
/// auto` every candidate's trial figure (both go into config.json).
#[derive(Debug, Clone, Default)]
pub struct Chosen {
    pub reason: String,
    pub trial: Vec<crate::gpu::auto::TrialFigure>,
}

impl Chosen {
    /// A choice made without a trial (a flag, a test).
    pub fn said(reason: &str) -> Chosen {
        Chosen {
            reason: reason.to_string(),
            trial: Vec::new(),
        }
    }
}

/// Picks the backend for a planned run, saying which and why. `--device auto` times the run's
/// own step on every hardware GPU and on the CPU and trains on the faster (`gpu::auto`).
pub fn make_backend(
    device: DeviceChoice,
    precision: Precision,
    plan: &Plan,
) -> Result<(Box<dyn Backend>, Chosen)> {
    let (spec, data) = (&plan.spec, plan.data.clone());
    let cpu = |why: String| -> Result<(Box<dyn Backend>, Chosen)> {
        let b: Box<dyn Backend> = match precision {
            Precision::F32 => Box::new(CpuBackend::<f32>::new(spec.clone(), data.clone())?),
            Precision::F64 => Box::new(CpuBackend::<f64>::new(spec.clone(), data.clone())?),
        };
        Ok((b, Chosen::said(&why)))
    };
    match (device, precision) {
        (DeviceChoice::Cpu, _) => cpu("--device cpu".into()),
        (DeviceChoice::Gpu, Precision::F64) => Err(Error::config(
            "--precision",
            "f64 runs on the CPU only (the GPU computes in f32); use --device cpu, or drop --precision f64",
        )),
        (DeviceChoice::Auto, Precision::F64) => {
            cpu("--device auto: --precision f64 runs on the CPU".into())
        }
        (DeviceChoice::Gpu, Precision::F32) => {
            let b = GpuBackend::new(Arc::new(Context::gpu()?), spec.clone(), data.clone())?;
            Ok((Box::new(b), Chosen::said("--device gpu")))
        }
        (DeviceChoice::Auto, Precision::F32) => {
            let (cpu_backend, _) = cpu(String::new())?;
            let trial = crate::gpu::auto::TrialSpec {
                method: plan.cfg.grad,
                batch: plan.cfg.batch,
                lr: plan.cfg.lr,
                seed: plan.cfg.seed,
            };
            let pick =
                crate::gpu::auto::auto_device(spec, data.clone(), &plan.params, &trial, cpu_backend)?;
            Ok((
                pick.backend,
                Chosen {
                    reason: pick.reason,
                    trial: pick.figures,
                },
            ))
        }
    }
}

/// Writes the batch losses and the evaluations into the run folder.
struct MetricsWriter<'a> {
    run_dir: &'a mut RunDir,
    loss_every: usize,
}

impl Observer for MetricsWriter<'_> {
    fn on_losses(&mut self, first: usize, losses: &[f64]) -> Result<()> {
        self.run_dir.record_losses(first, losses, self.loss_every)
    }
    fn on_eval(&mut self, rec: &EvalRecord) -> Result<()> {
        self.run_dir.record_eval(rec)
    }
}

/// Checkpoints: every `every` iterations, and at the pause after a Ctrl-C (then it stops the
/// run). Remembers the last pause, where parameters and sampler agree, for a checkpoint
/// written when something stops the run.
struct Checkpointer<'a> {
    every: Option<usize>,
    interrupted: &'a AtomicBool,
    template: Checkpoint,
    precision: StoredPrecision,
    path: PathBuf,
    clock: std::time::Instant,
    seconds0: f64,
    last_pause: (usize, SamplerState),
    written: Option<usize>,
}

impl Checkpointer<'_> {
    fn save(&mut self, done: usize, params: Params, sampler: &SamplerState) -> Result<()> {
        let mut ckpt = self.template.clone();
        ckpt.params = params;
        ckpt.iteration = done;
        ckpt.sampler = *sampler;
        let seconds = self.seconds0 + self.clock.elapsed().as_secs_f64();
        ckpt.notes.insert("seconds".into(), format!("{seconds:.3}"));
        checkpoint::save(&self.path, &ckpt, self.precision)?;
        self.written = Some(done);
        Ok(())
    }
}

impl Observer for Checkpointer<'_> {
    fn next_pause(&self, done: usize) -> Option<usize> {
        self.every.map(|n| (done / n + 1) * n)
    }
    fn progress(&mut self, _done: usize) -> Control {
        if self.interrupted.load(Ordering::SeqCst) {
            Control::Stop
        } else {
            Control::Continue
        }
    }
    fn after_step(
        &mut self,
        done: usize,
        backend: &mut dyn Backend,
        sampler: &SamplerState,
    ) -> Result<Control> {
        self.last_pause = (done, *sampler);
        let stop = self.interrupted.load(Ordering::SeqCst);
        if stop || self.every.is_some_and(|n| done.is_multiple_of(n)) {
            let params = backend.params()?;
            self.save(done, params, sampler)?;
        }
        Ok(if stop {
            Control::Stop
        } else {
            Control::Continue
        })
    }
}

/// Re-computes the step's gradient on the f64 reference when due: at the run's first step and
/// at each evaluation by default, or every `every` steps. The first result is shown; the rest
/// are summed up at the end; a failure stops the run.
struct ReferenceCheck {
    checker: Checker,
    every: Option<usize>,
    eval_every: usize,
    first: usize,
    grad: GradMethod,
    summary: ChecksSummary,
    first_line: Option<String>,
}

impl ReferenceCheck {
    fn due(&self, iter: usize) -> bool {
        match self.every {
            Some(0) => false,
            Some(n) => iter.is_multiple_of(n),
            None => iter == self.first || iter.is_multiple_of(self.eval_every),
        }
    }
}

impl Observer for ReferenceCheck {
    fn next_pause(&self, done: usize) -> Option<usize> {
        match self.every {
            Some(n) if n > 0 => Some((done / n + 1) * n),
            _ => None,
        }
    }
    fn before_step(&mut self, iter: usize, backend: &mut dyn Backend, batch: &[u32]) -> Result<()> {
        if !self.due(iter) {
            return Ok(());
        }
        backend.set_batch(batch)?;
        let (total, tensors) = self.checker.check(iter, backend, batch, self.grad)?;
        self.summary.passed += 1;
        self.summary.worst = Some(self.summary.worst.map_or(total, |w| w.max(total)));
        if self.summary.passed == 1 {
            let parts: Vec<String> = tensors
                .iter()
                .map(|t| format!("{} {:.1e}", t.name, t.relative))
                .collect();
            self.first_line = Some(format!(
                "check at iteration {iter}: gradient vs the f64 reference {total:.1e} ({})",
                parts.join(", ")
            ));
        }
        Ok(())
    }
}

/// The Ui as the run's observer, with the reference check in front of it: the first check's
/// result is shown as soon as it is made.
struct UiWithChecks<'a, 'u> {
    check: &'a mut Option<ReferenceCheck>,
    ui: &'a mut (dyn Ui + 'u),
}

impl Observer for UiWithChecks<'_, '_> {
    fn next_pause(&self, done: usize) -> Option<usize> {
        let c = self.check.as_ref().and_then(|c| c.next_pause(done));
        [c, self.ui.next_pause(done)].into_iter().flatten().min()
    }
    fn before_step(&mut self, iter: usize, b: &mut dyn Backend, batch: &[u32]) -> Result<()> {
        if let Some(c) = self.check.as_mut() {
            c.before_step(iter, b, batch)?;
            if let Some(line) = c.first_line.take() {
                self.ui.say(&line);
            }
        }
        self.ui.before_step(iter, b, batch)
    }
    fn on_losses(&mut self, first: usize, losses: &[f64]) -> Result<()> {
        self.ui.on_losses(first, losses)
    }
    fn on_eval(&mut self, rec: &EvalRecord) -> Result<()> {
        self.ui.on_eval(rec)
    }
    fn progress(&mut self, done: usize) -> Control {
        self.ui.progress(done)
    }
    fn after_step(
        &mut self,
        done: usize,
        b: &mut dyn Backend,
        s: &SamplerState,
    ) -> Result<Control> {
        self.ui.after_step(done, b, s)
    }
}

/// The config.json of a run: the command line's values in one fixed shape (docs/SCHEMA.md).
pub fn config_json(plan: &Plan, device: &str, chosen: &Chosen) -> serde_json::Value {
    let (method, strategy, h) = grad_parts(plan.cfg.grad);
    let req = &plan.request;
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "data": {
            "source": plan.data.describe(),
            "train_size": plan.data.train.len(),
            "test_size": plan.data.test.len(),
        },
        "model": {
            "input": plan.spec.input,
            "hidden": plan.spec.hidden,
            "classes": plan.spec.classes,
            "activation": plan.spec.activation.name(),
            "parameters": plan.spec.num_params(),
        },
        "grad": { "method": method, "strategy": strategy, "h": h },
        "batch": plan.cfg.batch,
        "lr": plan.cfg.lr,
        "iters": plan.cfg.iters,
        "iters_per_epoch": iters_per_epoch(plan.data.train.len(), plan.cfg.batch),
        "eval_every": plan.cfg.eval_every,
        "loss_every": plan.cfg.loss_every,
        "seed": plan.cfg.seed,
        "sampler": plan.cfg.sampler.as_str(),
        "precision": match req.precision { Precision::F32 => "f32", Precision::F64 => "f64" },
        "device": {
            "name": device,
            "choice": chosen.reason,
            "trial": chosen.trial.iter().map(|f| serde_json::json!({
                "device": f.device,
                "seconds_per_step": f.seconds_per_step,
                "steps": f.steps,
            })).collect::<Vec<_>>(),
        },
        "resumed_from": req.resume.as_ref().map(|p| p.display().to_string()),
        "resumed_at": plan.start.map(|s| s.iteration),
    })
}

/// The command that continues an interrupted run, complete: it runs as printed.
pub fn resume_command(req: &TrainRequest, checkpoint: &Path, out: &Path, iters: usize) -> String {
    let mut parts = vec![
        "gpu-train train".to_string(),
        format!("--resume {}", shell_word(&checkpoint.display().to_string())),
        format!("--out {}", shell_word(&out.display().to_string())),
        format!("--iters {iters}"),
    ];
    if let Some(d) = &req.data {
        parts.push(format!("--data {}", shell_word(&d.display().to_string())));
    } else if let Some(d) = std::env::var_os(data::MNIST_DIR_ENV).filter(|d| !d.is_empty()) {
        parts.push(format!(
            "--data {}",
            shell_word(&PathBuf::from(d).display().to_string())
        ));
    }
    if req.device != DeviceChoice::Auto {
        parts.push(format!(
            "--device {}",
            if req.device == DeviceChoice::Cpu {
                "cpu"
            } else {
                "gpu"
            }
        ));
    }
    if req.precision == Precision::F64 {
        parts.push("--precision f64".into());
    }
    parts.join(" ")
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs a planned training: opens the run folder, trains with the observers, writes the final
/// checkpoint and the plots. On an error after training started, the last good checkpoint is
/// written first (where one can be), and the error says what was saved.
pub fn run(
    plan: Plan,
    backend: &mut dyn Backend,
    chosen: &Chosen,
    ui: &mut dyn Ui,
    interrupted: &AtomicBool,
) -> Result<FinalReport> {
    let req = plan.request.clone();
    let mut run_dir = match (&plan.start, &plan.out) {
        (Some(s), Some(out)) => RunDir::resume(out, s.iteration)?,
        (None, Some(out)) => RunDir::create(out, req.overwrite)?,
        (Some(s), None) => RunDir::resume(&crate::run::default_path(), s.iteration)?,
        (None, None) => RunDir::create_default()?,
    };
    let out = run_dir.path.clone();
    ui.opened(&out);
    let device = backend.name();
    run_dir.write_config(&config_json(&plan, &device, chosen))?;
    let cfg = plan.cfg.clone();
    // Every backend, f64 included, is checked against the plain reference (a separate
    // implementation, so the check is never a comparison with itself).
    let mut check = if req.check_every == Some(0) {
        None
    } else {
        Some(ReferenceCheck {
            checker: Checker::new(plan.spec.clone(), plan.data.clone())?,
            every: req.check_every,
            eval_every: cfg.eval_every,
            first: plan.start.map_or(0, |s| s.iteration),
            grad: cfg.grad,
            summary: ChecksSummary::default(),
            first_line: None,
        })
    };
    let train_size = plan.data.train.len();
    let mut checkpointer = checkpointer_for(&plan, &device, &run_dir, interrupted);
    backend.set_params(&plan.params)?;
    let first = plan.start.map_or(0, |s| s.iteration);
    let startup_seconds = crate::time::process_start().elapsed().as_secs_f64();
    ui.start(first, cfg.iters);
    let result = {
        let mut metrics = MetricsWriter {
            run_dir: &mut run_dir,
            loss_every: cfg.loss_every,
        };
        let mut front = UiWithChecks {
            check: &mut check,
            ui: &mut *ui,
        };
        let mut all = Observers(vec![&mut metrics, &mut checkpointer, &mut front]);
        train_from(backend, train_size, &cfg, plan.start, &mut all)
    };
    let checks = check.map(|c| c.summary).unwrap_or_default();
    let clock_seconds = checkpointer.clock.elapsed().as_secs_f64();
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            // Stopped by an error: the last pause's parameters are consistent with its sampler
            // state (an error inside a chunk leaves the device's parameters mid-chunk).
            let saved = save_after_error(backend, &mut checkpointer, &mut run_dir);
            return Err(Error::Stopped {
                cause: Box::new(e),
                saved,
            });
        }
    };
    let steps_here = summary.iters.saturating_sub(first);
    let ips = if clock_seconds > 0.0 {
        steps_here as f64 / clock_seconds
    } else {
        0.0
    };
    run_dir.flush()?;
    // The checkpoint: an interrupted run wrote it at its last pause; a completed or diverged
    // one writes it now (a diverged backend holds the last good parameters).
    if checkpointer.written != Some(summary.iters) {
        let params = backend.params()?;
        checkpointer.save(summary.iters, params, &summary.sampler)?;
    }
    let plots = write_plots(&run_dir).map_err(|e| Error::Stopped {
        cause: Box::new(e),
        saved: format!(
            "the checkpoint of iteration {} is in {}, the metrics in {}; the plots can be drawn again by resuming with the same --iters",
            summary.iters,
            run_dir.checkpoint_path().display(),
            run_dir.path.join("metrics.csv").display()
        ),
    })?;
    let report = report_of(
        &summary,
        &req,
        &cfg,
        train_size,
        ips,
        startup_seconds,
        checks,
        &run_dir,
        plots,
    );
    ui.finish(&report);
    if let Ending::Diverged { iteration, why } = &summary.ending {
        return Err(Error::Numerics(format!(
            "training diverged after iteration {iteration}: {why}; lower the learning rate (--lr {}, now {}). The last good parameters are saved in {}",
            crate::fmt::rounded(cfg.lr / 10.0),
            crate::fmt::number(cfg.lr),
            run_dir.checkpoint_path().display()
        )));
    }
    Ok(report)
}

/// The run's checkpointer: its template (settings, notes, the sampler's start) and precision.
fn checkpointer_for<'a>(
    plan: &Plan,
    device: &str,
    run_dir: &RunDir,
    interrupted: &'a AtomicBool,
) -> Checkpointer<'a> {
    let (req, cfg) = (&plan.request, &plan.cfg);
    let precision = match req.precision {
        Precision::F64 if !device.starts_with("gpu") => StoredPrecision::F64,
        _ => StoredPrecision::F32,
    };
    let train_size = plan.data.train.len();
    let sampler0 = plan.start.map(|s| s.sampler).unwrap_or(SamplerState::fresh(
        cfg.sampler,
        train_size,
        cfg.seed,
    ));
    let notes: HashMap<String, String> = [
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("device", device.to_string()),
        ("data", plan.data.describe()),
    ]
    .into_iter()
    .chain(plan.data.class_names.as_ref().map(|names| {
        (
            crate::predict::CLASS_NAMES_NOTE,
            serde_json::to_string(names).expect("strings serialise"),
        )
    }))
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Checkpointer {
        every: req.checkpoint_every,
        interrupted,
        template: Checkpoint {
            params: plan.params.clone(),
            iteration: 0,
            sampler: sampler0,
            config: cfg.clone(),
            notes,
        },
        precision,
        path: run_dir.checkpoint_path(),
        clock: std::time::Instant::now(),
        seconds0: plan.start.map_or(0.0, |s| s.seconds),
        last_pause: (plan.start.map_or(0, |s| s.iteration), sampler0),
        written: None,
    }
}

/// The run's last word from its summary.
#[allow(clippy::too_many_arguments)]
fn report_of(
    summary: &TrainSummary,
    req: &TrainRequest,
    cfg: &TrainConfig,
    train_size: usize,
    ips: f64,
    startup_seconds: f64,
    checks: ChecksSummary,
    run_dir: &RunDir,
    plots: Vec<PathBuf>,
) -> FinalReport {
    let out = run_dir.path.clone();
    let last = summary.last();
    FinalReport {
        ending: match summary.ending {
            Ending::Completed => "completed",
            Ending::Interrupted => "interrupted",
            Ending::Diverged { .. } => "diverged",
        },
        iteration: summary.iters,
        epoch: summary.iters as f64 / iters_per_epoch(train_size, cfg.batch) as f64,
        train_loss: last.map(|r| r.train.loss),
        train_acc: last.map(|r| r.train.accuracy()),
        test_loss: last.map(|r| r.test.loss),
        test_acc: last.map(|r| r.test.accuracy()),
        best_test_acc: summary.best_test_accuracy(),
        seconds: summary.seconds,
        iterations_per_second: ips,
        startup_seconds,
        checks,
        run_folder: out.clone(),
        metrics: run_dir.path.join("metrics.csv"),
        loss_curve: run_dir.path.join("loss.csv"),
        plots,
        checkpoint: Some(run_dir.checkpoint_path()),
        resume_command: summary
            .interrupted()
            .then(|| resume_command(req, &run_dir.checkpoint_path(), &out, cfg.iters)),
    }
}

fn save_after_error(
    backend: &mut dyn Backend,
    checkpointer: &mut Checkpointer,
    run_dir: &mut RunDir,
) -> String {
    let _ = run_dir.flush();
    let (done, sampler) = checkpointer.last_pause;
    if checkpointer.written == Some(done) {
        return format!(
            "the checkpoint of iteration {done} is in {}",
            checkpointer.path.display()
        );
    }
    let attempt = backend.params().and_then(|p| {
        if p.data.iter().all(|v| v.is_finite()) {
            checkpointer.save(done, p, &sampler)
        } else {
            Err(Error::Numerics("the parameters are not finite".into()))
        }
    });
    match attempt {
        Ok(()) => format!(
            "the last good parameters (iteration {done}) are saved in {}",
            checkpointer.path.display()
        ),
        Err(e) => match checkpointer.written {
            Some(i) => format!(
                "no new checkpoint could be written ({e}); the one of iteration {i} is in {}",
                checkpointer.path.display()
            ),
            None => format!("no checkpoint could be written ({e})"),
        },
    }
}

/// The loss curve over iterations and the accuracy per epoch (the chapter's figures 4-11 and
/// 4-12), from the run folder's whole history (a resumed run included), written atomically.
pub fn write_plots(run_dir: &RunDir) -> Result<Vec<PathBuf>> {
    let (losses, evals) = run_dir.history()?;
    let loss_png = run_dir.path.join("loss.png");
    let acc_png = run_dir.path.join("accuracy.png");
    crate::report::plot::loss_curve(&loss_png, &losses, "training loss (batch)")?;
    crate::report::plot::accuracy_chart(&acc_png, &evals)?;
    Ok(vec![loss_png, acc_png])
}
