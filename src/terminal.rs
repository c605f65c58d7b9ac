//! The terminal side of `gpu-train train`: the header, a progress bar with a rate and an ETA
//! from a moving window, one line per evaluation, the final line; `--quiet` and `--json`. The
//! run itself is the library's (`gpu_train::session`).

use crate::args::{TrainArgs, EXIT_INTERRUPTED};
use anyhow::Result;
use clap::ArgMatches;
use gpu_train::backend::Backend;
use gpu_train::data::SamplerState;
use gpu_train::session::{self, FinalReport, Ui};
use gpu_train::train::{Control, EvalRecord, Observer};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `gpu-train train`; returns the exit status.
pub fn run_train(args: &TrainArgs, matches: Option<&ArgMatches>) -> Result<i32> {
    // First of all, so that a Ctrl-C during set-up is handled like one during training: the
    // run stops at its first pause and writes a checkpoint. Later presses only say so: every
    // file is written atomically or flushed at a pause, and the run is about to stop anyway.
    let interrupted = ctrl_c_flag();
    let req = args.request(matches);
    let plan = session::plan(&req)?;
    // On stderr, whatever the mode: under --json stdout is for the records.
    if let Some(w) = &plan.data.class_warning {
        eprintln!("warning: {w}");
    }
    let gpu = req.device == session::DeviceChoice::Gpu;
    // On a software GPU (lavapipe) on a slow CPU, building the pipelines and the first
    // evaluation took 26 s with nothing on the screen: say what is happening (on stderr,
    // so stdout and --json stay as they are).
    if gpu && !args.quiet {
        eprintln!("opening the GPU: building its pipelines, uploading the data...");
    }
    let (mut backend, chosen) = session::make_backend(req.device, req.precision, &plan)?;
    let mut printer = Printer::new(args);
    // A resume evaluates nothing before its first step, so only a fresh run waits on iteration 0.
    printer.gpu = gpu && backend.name().starts_with("gpu") && plan.start.is_none();
    print_header(&mut printer, &plan, &req, &backend.name(), &chosen.reason);
    let result = session::run(plan, backend.as_mut(), &chosen, &mut printer, &interrupted);
    printer.clear();
    let report = result?;
    if let Some(cmd) = &report.resume_command {
        eprintln!(
            "interrupted after iteration {}: checkpoint written to {}\nresume with: {cmd}",
            report.iteration,
            report
                .checkpoint
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(0)
}

/// The Ctrl-C flag the run polls at its pauses; a second press only says it is stopping.
fn ctrl_c_flag() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let presses = Arc::new(AtomicUsize::new(0));
    let _ = ctrlc::set_handler(move || {
        flag.store(true, Ordering::SeqCst);
        if presses.fetch_add(1, Ordering::SeqCst) > 0 {
            eprintln!("\nstopping: writing the checkpoint and the plots, one moment");
        }
    });
    interrupted
}

/// The run's header: version and data, classes, device and why, model, settings, resume.
fn print_header(
    printer: &mut Printer,
    plan: &session::Plan,
    req: &gpu_train::session::TrainRequest,
    name: &str,
    why: &str,
) {
    printer.say(&format!(
        "gpu-train {} | data: {}",
        env!("CARGO_PKG_VERSION"),
        plan.data.describe()
    ));
    printer.say(&format!("classes: {}", plan.data.describe_classes()));
    // One short line; a long reason (the measured trial, a driver hint) goes on the next.
    let device = format!("device: {} ({why})", name);
    if device.len() < 100 {
        printer.say(&device);
    } else {
        printer.say(&format!("device: {}", name));
        printer.say(&format!("  {why}"));
    }
    let cfg = &plan.cfg;
    let per_epoch = gpu_train::train::iters_per_epoch(plan.data.train.len(), cfg.batch);
    printer.say(&format!(
        "model: {}, {} parameters | gradient: {}",
        plan.spec.describe(),
        plan.spec.num_params(),
        cfg.grad.describe()
    ));
    printer.say(&format!(
        "batch {}, lr {}, {} iterations ({:.1} epochs of {per_epoch}), evaluate every {}, seed {}",
        cfg.batch,
        gpu_train::fmt::number(cfg.lr),
        cfg.iters,
        cfg.iters as f64 / per_epoch as f64,
        cfg.eval_every,
        cfg.seed
    ));
    if let (Some(path), Some(s)) = (&req.resume, plan.start) {
        printer.say(&format!(
            "resuming {} at iteration {} (settings from the checkpoint)",
            path.display(),
            s.iteration
        ));
    }
}

/// Where lines go: stdout normally, stderr under --json (stdout is for the JSON records), the
/// progress bar's println while a bar is shown; under --quiet only the run folder and the
/// final line.
struct Printer {
    quiet: bool,
    json: bool,
    bar: Option<ProgressBar>,
    /// (when, iterations done) over the last few seconds: the rate and the ETA.
    window: VecDeque<(Instant, usize)>,
    /// The last batch losses, for a running mean on the bar.
    recent: VecDeque<f64>,
    total: usize,
    last_draw: Option<Instant>,
    /// Training on the GPU: the first evaluation also compiles its kernels (said at the start).
    gpu: bool,
}

/// How far back the rate looks: long enough to smooth a pause (an evaluation, a check), short
/// enough to follow a change of speed.
const RATE_WINDOW: Duration = Duration::from_secs(15);
const LOSS_WINDOW: usize = 100;

impl Printer {
    fn new(args: &TrainArgs) -> Self {
        let show_bar = !args.quiet && !args.json && std::io::stdout().is_terminal();
        Printer {
            quiet: args.quiet,
            json: args.json,
            bar: show_bar.then(|| {
                let bar = ProgressBar::new(0);
                bar.set_style(
                    ProgressStyle::with_template("{bar:30} {pos}/{len} | {msg}")
                        .expect("a valid template"),
                );
                bar
            }),
            window: VecDeque::new(),
            recent: VecDeque::new(),
            total: 0,
            last_draw: None,
            gpu: false,
        }
    }

    fn line(&self, text: &str) {
        match (&self.bar, self.json) {
            (_, true) => eprintln!("{text}"),
            (Some(bar), false) => bar.println(text),
            (None, false) => println!("{text}"),
        }
    }

    fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Iterations a second over the window, once it spans a second.
    fn rate(&self) -> Option<f64> {
        let (&(t0, d0), &(t1, d1)) = (self.window.front()?, self.window.back()?);
        let dt = t1.duration_since(t0).as_secs_f64();
        (dt >= 1.0 && d1 > d0).then(|| (d1 - d0) as f64 / dt)
    }

    fn draw(&mut self, done: usize) {
        let Some(bar) = &self.bar else { return };
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(now);
        bar.set_position(done as u64);
        let mut parts = Vec::new();
        if let Some(r) = self.rate() {
            parts.push(format!("{} it/s", short(r)));
            let left = self.total.saturating_sub(done) as f64 / r;
            parts.push(format!("ETA {}", clock(left)));
        }
        if !self.recent.is_empty() {
            let mean = self.recent.iter().sum::<f64>() / self.recent.len() as f64;
            parts.push(format!("batch loss {mean:.3}"));
        }
        bar.set_message(parts.join(" | "));
    }
}

/// A rate in three significant digits at most: 8.41, 84.1, 841.
fn short(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

/// Seconds as 1h02m, 3m05s or 42s.
fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// One evaluation as the terminal shows it.
pub fn format_eval(r: &EvalRecord) -> String {
    format!(
        "iter {:>6} | epoch {:>5.2} | train loss {:.4} acc {:.4} | test loss {:.4} acc {:.4} | {:.1} s",
        r.iter,
        r.epoch,
        r.train.loss,
        r.train.accuracy(),
        r.test.loss,
        r.test.accuracy(),
        r.seconds
    )
}

/// The final line: where the run ended, its last evaluation, the best test accuracy and the
/// speed.
pub fn format_final(r: &FinalReport) -> String {
    let mut s = format!("final: iter {} | epoch {:.2}", r.iteration, r.epoch);
    if let (Some(tl), Some(ta), Some(vl), Some(va)) =
        (r.train_loss, r.train_acc, r.test_loss, r.test_acc)
    {
        s += &format!(" | train loss {tl:.4} acc {ta:.4} | test loss {vl:.4} acc {va:.4}");
    }
    if let Some(b) = r.best_test_acc {
        s += &format!(" | best test acc {b:.4}");
    }
    s += &format!(
        " | {:.1} s, {} it/s, first step {:.2} s after start",
        r.seconds,
        short(r.iterations_per_second),
        r.startup_seconds
    );
    if r.ending != "completed" {
        s += &format!(" | {}", r.ending);
    }
    if let Some(w) = &r.warning {
        s += &format!(" | warning: {w}");
    }
    s
}

impl Observer for Printer {
    fn on_losses(&mut self, _first: usize, losses: &[f64]) -> gpu_train::Result<()> {
        for &l in losses {
            if self.recent.len() == LOSS_WINDOW {
                self.recent.pop_front();
            }
            self.recent.push_back(l);
        }
        Ok(())
    }

    fn on_eval(&mut self, r: &EvalRecord) -> gpu_train::Result<()> {
        if self.json {
            println!("{}", r.to_json());
        }
        if !self.quiet {
            self.line(&format_eval(r));
        }
        Ok(())
    }

    fn progress(&mut self, done: usize) -> Control {
        let now = Instant::now();
        self.window.push_back((now, done));
        while self
            .window
            .front()
            .is_some_and(|&(t, _)| now.duration_since(t) > RATE_WINDOW)
            && self.window.len() > 2
        {
            self.window.pop_front();
        }
        self.draw(done);
        Control::Continue
    }

    fn after_step(
        &mut self,
        done: usize,
        _backend: &mut dyn Backend,
        _sampler: &SamplerState,
    ) -> gpu_train::Result<Control> {
        self.progress(done);
        Ok(Control::Continue)
    }
}

impl Ui for Printer {
    fn say(&mut self, text: &str) {
        if !self.quiet {
            self.line(text);
        }
    }

    fn start(&mut self, first: usize, total: usize) {
        self.total = total;
        self.window.push_back((Instant::now(), first));
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
            bar.set_position(first as u64);
        }
    }

    fn opened(&mut self, run_folder: &Path) {
        // Said even under --quiet: it is where everything of the run goes.
        let text = format!("run folder: {}", run_folder.display());
        if self.quiet {
            println!("{text}");
        } else {
            self.line(&text);
            if self.gpu {
                eprintln!("evaluating iteration 0 (the GPU compiles its kernels on first use)...");
            }
        }
    }

    fn finish(&mut self, r: &FinalReport) {
        self.clear();
        if let Some(worst) = r.checks.worst {
            self.say(&format!(
                "gradient checks: {} passed, worst {worst:.1e} (against the f64 reference)",
                r.checks.passed
            ));
        }
        let line = format_final(r);
        if self.json {
            eprintln!("{line}");
            let mut v = serde_json::to_value(r).expect("the report serialises");
            v["final"] = serde_json::Value::Bool(true);
            println!("{v}");
        } else {
            println!("{line}");
        }
        let mut files = vec![format!("metrics: {}", r.metrics.display())];
        files.push(format!("loss curve: {}", r.loss_curve.display()));
        files.push(format!(
            "plots: {}",
            r.plots
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if let Some(c) = &r.checkpoint {
            files.push(format!("checkpoint: {}", c.display()));
        }
        self.say(&files.join(" | "));
    }
}
