//! Running a planned training: the run folder, the observers, the final checkpoint and plots.

use super::observers::{Checkpointer, MetricsWriter, ReferenceCheck, UiWithChecks};
use super::{
    grad_parts, ChecksSummary, Chosen, DeviceChoice, FinalReport, Plan, Precision, TrainRequest, Ui,
};
use crate::backend::Backend;
use crate::check::Checker;
use crate::checkpoint::{Checkpoint, StoredPrecision};
use crate::data::{self, SamplerState};
use crate::error::{Error, Result};
use crate::run::RunDir;
use crate::train::{iters_per_epoch, train_from, Ending, Observers, TrainConfig, TrainSummary};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

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
    let mut run_dir = open_run_dir(&plan)?;
    ui.opened(&run_dir.path.clone());
    let device = backend.name();
    run_dir.write_config(&config_json(&plan, &device, chosen))?;
    let cfg = plan.cfg.clone();
    let mut check = reference_check(&plan)?;
    let train_size = plan.data.train.len();
    let mut checkpointer = checkpointer_for(&plan, &device, &run_dir, interrupted)?;
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
    let steps_here = summary.iters.saturating_sub(first) as f64;
    let ips = if clock_seconds > 0.0 {
        steps_here / clock_seconds
    } else {
        0.0
    };
    run_dir.flush()?;
    // The checkpoint: an interrupted run wrote it at its last pause; a completed or diverged
    // one writes it now (a diverged backend holds the last good parameters).
    if checkpointer.written != Some(summary.iters) {
        checkpointer.pending = summary.pending;
        let params = backend.params()?;
        checkpointer.save(summary.iters, params, &summary.sampler)?;
    }
    let plots = write_plots(&run_dir).map_err(|e| plots_failed(e, summary.iters, &run_dir))?;
    let warning = got_worse(&run_dir, &summary, &plan);
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
        warning,
    );
    ui.finish(&report);
    if let Ending::Diverged { iteration, why } = &summary.ending {
        return Err(diverged(*iteration, why, cfg.lr, &run_dir));
    }
    Ok(report)
}

/// The error of a diverged run: where, why, a smaller rate, and where the good parameters are.
fn diverged(iteration: usize, why: &str, lr: f64, run_dir: &RunDir) -> Error {
    Error::Numerics(format!(
        "training diverged after iteration {iteration}: {why}; lower the learning rate (--lr {}, now {}). The last good parameters are saved in {}",
        crate::fmt::rounded(lr / 10.0),
        crate::fmt::number(lr),
        run_dir.checkpoint_path().display()
    ))
}

/// Whether the run ended much worse than it began, compared with the first evaluation in
/// metrics.csv, so that a resumed run compares with its start.
fn got_worse(run_dir: &RunDir, summary: &TrainSummary, plan: &Plan) -> Option<String> {
    match (run_dir.first_evaluation().ok().flatten(), summary.last()) {
        (Some(first), Some(last)) => {
            crate::train::got_worse(first, last, plan.spec.classes, plan.cfg.lr)
        }
        _ => None,
    }
}

/// The run folder: resumed where a checkpoint is continued, else made (or overwritten).
fn open_run_dir(plan: &Plan) -> Result<RunDir> {
    match (&plan.start, &plan.out) {
        (Some(s), Some(out)) => RunDir::resume(out, s.iteration),
        (None, Some(out)) => RunDir::create(out, plan.request.overwrite),
        (Some(s), None) => RunDir::resume(&crate::run::default_path(), s.iteration),
        (None, None) => RunDir::create_default(),
    }
}

/// The reference check, unless `--check-every 0`. Every backend, f64 included, is checked
/// against the plain reference (a separate implementation, so the check is never a
/// comparison with itself).
fn reference_check(plan: &Plan) -> Result<Option<ReferenceCheck>> {
    if plan.request.check_every == Some(0) {
        return Ok(None);
    }
    Ok(Some(ReferenceCheck {
        checker: Checker::new(plan.spec.clone(), plan.data.clone())?,
        every: plan.request.check_every,
        eval_every: plan.cfg.eval_every,
        first: plan.start.map_or(0, |s| s.iteration),
        grad: plan.cfg.grad,
        summary: ChecksSummary::default(),
        first_line: None,
    }))
}

/// The error of a run whose plots could not be drawn, saying what is saved.
fn plots_failed(e: Error, iters: usize, run_dir: &RunDir) -> Error {
    Error::Stopped {
        cause: Box::new(e),
        saved: format!(
            "the checkpoint of iteration {iters} is in {}, the metrics in {}; the plots can be drawn again by resuming with the same --iters",
            run_dir.checkpoint_path().display(),
            run_dir.path.join("metrics.csv").display()
        ),
    }
}

/// The run's checkpointer: its template (settings, notes, the sampler's start) and precision.
fn checkpointer_for<'a>(
    plan: &Plan,
    device: &str,
    run_dir: &RunDir,
    interrupted: &'a AtomicBool,
) -> Result<Checkpointer<'a>> {
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
    Ok(Checkpointer {
        every: req.checkpoint_every,
        interrupted,
        template: Checkpoint {
            params: plan.params.clone(),
            iteration: 0,
            sampler: sampler0,
            config: cfg.clone(),
            pending: Default::default(),
            notes,
        },
        precision,
        path: run_dir.checkpoint_path(),
        files: run_dir.syncer()?,
        clock: web_time::Instant::now(),
        seconds0: plan.start.map_or(0.0, |s| s.seconds),
        last_pause: (plan.start.map_or(0, |s| s.iteration), sampler0),
        pending: plan.start.map(|s| s.pending).unwrap_or_default(),
        written: None,
    })
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
    warning: Option<String>,
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
        warning,
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
