//! The command line: clap commands that call the library. main.rs only calls `run`.

use anyhow::{bail, Context as _, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use gpu_train::backend::{Backend, GradMethod, PerturbStrategy, DEFAULT_H};
use gpu_train::checkpoint::{self, Checkpoint, StoredPrecision};
use gpu_train::cpu::CpuBackend;
use gpu_train::data::{self, Mnist, SamplerKind, SamplerState};
use gpu_train::gpu::{self, Context, GpuBackend};
use gpu_train::model::{Activation, MlpSpec, Params};
use gpu_train::run::{self, RunDir};
use gpu_train::train::{train_from, Control, EvalRecord, Observer, Start, TrainConfig};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The exit status after Ctrl-C (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "gpu-train",
    version,
    about = "Chapter 4 of \"Deep Learning from Scratch\", real and fast: train the two-layer MNIST net with the numerical gradient or backprop, on the GPU (WGSL through wgpu) or the CPU.",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train the MLP with mini-batch gradient descent (defaults: the chapter's configuration).
    Train(TrainArgs),
    /// Loss, accuracy, confusion matrix and per-class accuracy of a checkpoint.
    Eval(EvalArgs),
    /// List every GPU adapter (name, backend, type, driver, key limits) and which one auto picks.
    Devices,
    /// The chapter's walkthrough in the terminal; with --out, its pictures.
    Demo(DemoArgs),
    /// Numerical gradient (each strategy, each device) against backprop, per parameter tensor.
    Gradcheck(GradcheckArgs),
    /// Time forward, backprop, the numerical gradient and a training step on the CPU and the
    /// GPU over a grid of sizes: median/min/max, op counts, rates, growth, optional NumPy peer.
    Bench(gpu_train::bench::BenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct GradcheckArgs {
    /// Devices to check: cpu, gpu, or both (gpu = any adapter, lavapipe included).
    #[arg(long, value_enum, default_value = "both")]
    pub device: CheckDeviceArg,
    /// Hidden layer sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "50")]
    pub hidden: Vec<usize>,
    #[arg(long, value_enum, default_value = "sigmoid")]
    pub activation: ActivationArg,
    /// Samples in the batch (the chapter's sequel checks 3).
    #[arg(long, default_value_t = 3)]
    pub batch: usize,
    /// Backprop steps to train before checking (0 = at initialisation).
    #[arg(long, default_value_t = 0)]
    pub steps: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Step of the central difference.
    #[arg(long, default_value_t = DEFAULT_H)]
    pub h: f64,
    /// Directory with full MNIST; default: $MNIST_DIR, else the embedded subset.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckDeviceArg {
    Cpu,
    Gpu,
    Both,
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// A checkpoint written by `gpu-train train` (safetensors).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Directory with full MNIST; default: $MNIST_DIR, else the embedded subset.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Which split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    Train,
    Test,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Also draw the chapter's pictures (gradient field, descent path) into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The best hardware GPU; with only a software adapter or none, the CPU (it says which and why).
    Auto,
    /// The CPU backend.
    Cpu,
    /// Any GPU adapter, software ones (lavapipe) included.
    Gpu,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum GradArg {
    /// The chapter's numerical gradient: two loss evaluations per parameter.
    Numerical,
    /// The analytic gradient (the chapter's sequel).
    Backprop,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum NumGradArg {
    /// Re-compute only what each perturbed parameter reaches, from the cached forward pass.
    Incremental,
    /// Two whole forward passes per perturbation (the chapter's way; slow), carried in f64 on the
    /// CPU and double-f32 on the GPU so their difference keeps its digits.
    Full,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// Single precision: the fast CPU path and what the GPU computes in.
    F32,
    /// Double precision: the CPU reference (oracle).
    F64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActivationArg {
    Sigmoid,
    Relu,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum SamplerArg {
    /// Independent uniform indices per batch, like np.random.choice (the chapter's way).
    Replacement,
    /// Shuffled epochs without replacement.
    Epochs,
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Where to run: auto picks a hardware GPU if there is one, else the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// Gradient: the chapter's numerical gradient, or backprop.
    #[arg(long, value_enum, default_value = "numerical")]
    pub grad: GradArg,
    /// Strategy of the numerical gradient (same result, different cost).
    #[arg(long, value_enum, default_value = "incremental")]
    pub numgrad: NumGradArg,
    /// Step h of the central difference (L(theta + h) - L(theta - h)) / 2h.
    #[arg(long, default_value_t = DEFAULT_H, allow_negative_numbers = true)]
    pub h: f64,
    /// Directory with full MNIST (the four canonical IDX files, .gz or not). Default: $MNIST_DIR,
    /// else the embedded 30,000/5,000 subset.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Hidden layer sizes, comma-separated: 50, or 100,50 for two hidden layers.
    #[arg(long, value_delimiter = ',', default_value = "50")]
    pub hidden: Vec<usize>,
    /// Hidden-layer activation.
    #[arg(long, value_enum, default_value = "sigmoid")]
    pub activation: ActivationArg,
    /// Mini-batch size.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Learning rate of gradient descent.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub lr: f64,
    /// Number of iterations (mini-batch steps).
    #[arg(long, default_value_t = 10_000)]
    pub iters: usize,
    /// Seed of the initial weights and of the batch sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate loss and train/test accuracy over the whole sets every N iterations (600 = one
    /// epoch of the 60,000 images at batch 100).
    #[arg(long, default_value_t = 600, value_name = "N")]
    pub eval_every: usize,
    /// How batches are drawn.
    #[arg(long, value_enum, default_value = "replacement")]
    pub sampler: SamplerArg,
    /// Arithmetic of the CPU backend (the GPU is always f32).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// Read the batch loss back every N iterations for the loss curve (1 = every step).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub loss_every: usize,
    /// The run folder: metrics.csv, loss.csv, config.json, plots, checkpoint. Default:
    /// runs/<UTC timestamp>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write the checkpoint every N iterations (it is always written at the end and on Ctrl-C).
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Continue a run from its checkpoint: the net, the settings and the batch sequence come from
    /// the file, so the run ends exactly where an uninterrupted one would. --iters is the total.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// Print only the final line.
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
    /// One JSON object per evaluation on stdout (the other lines go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Re-compute the step's gradient on the f64 CPU reference every N iterations and print the
    /// relative error; beyond tolerance the run stops, naming the step and the tensor. Default:
    /// the first step and each evaluation (not on the f64 CPU reference itself); 0 = never.
    #[arg(long, value_name = "N")]
    pub check_every: Option<usize>,
}

impl TrainArgs {
    pub fn grad_method(&self) -> GradMethod {
        match self.grad {
            GradArg::Backprop => GradMethod::Backprop,
            GradArg::Numerical => GradMethod::Numerical {
                strategy: match self.numgrad {
                    NumGradArg::Incremental => PerturbStrategy::Incremental,
                    NumGradArg::Full => PerturbStrategy::Full,
                },
                h: self.h,
            },
        }
    }

    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            batch: self.batch,
            lr: self.lr,
            iters: self.iters,
            seed: self.seed,
            eval_every: self.eval_every,
            grad: self.grad_method(),
            sampler: match self.sampler {
                SamplerArg::Replacement => SamplerKind::WithReplacement,
                SamplerArg::Epochs => SamplerKind::Epochs,
            },
            loss_every: self.loss_every,
        }
    }

    pub fn activation(&self) -> Activation {
        match self.activation {
            ActivationArg::Sigmoid => Activation::Sigmoid,
            ActivationArg::Relu => Activation::Relu,
        }
    }
}

/// Parses the command line (keeping where each value came from) and runs it; returns the exit
/// status.
pub fn main_with_args() -> Result<i32> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sub = matches.subcommand().map(|(_, m)| m.clone());
    match cli.command {
        Command::Train(args) => run_train(&args, sub.as_ref()),
        Command::Eval(args) => run_eval(&args).map(|_| 0),
        Command::Devices => {
            print!("{}", gpu::devices_report());
            Ok(0)
        }
        Command::Gradcheck(args) => run_gradcheck(&args).map(|_| 0),
        Command::Bench(args) => {
            let mut out = std::io::stdout().lock();
            gpu_train::bench::run(&args, &mut out)?;
            Ok(0)
        }
        Command::Demo(args) => {
            let mut out = std::io::stdout().lock();
            // demo::run lists the files it wrote itself.
            gpu_train::demo::run(args.out.as_deref(), &mut out)?;
            Ok(0)
        }
    }
}

fn explicit(m: Option<&ArgMatches>, id: &str) -> bool {
    m.and_then(|m| m.value_source(id)) == Some(ValueSource::CommandLine)
}

/// Picks the backend for `--device`, saying which and why.
fn make_backend(
    args: &TrainArgs,
    spec: &MlpSpec,
    data: Arc<Mnist>,
) -> Result<(Box<dyn Backend>, String)> {
    let cpu = |why: String| -> Result<(Box<dyn Backend>, String)> {
        let b: Box<dyn Backend> = match args.precision {
            PrecisionArg::F32 => Box::new(CpuBackend::<f32>::new(spec.clone(), data.clone())?),
            PrecisionArg::F64 => Box::new(CpuBackend::<f64>::new(spec.clone(), data.clone())?),
        };
        Ok((b, why))
    };
    let gpu = |ctx: Context, why: &str| -> Result<(Box<dyn Backend>, String)> {
        let b = GpuBackend::new(Arc::new(ctx), spec.clone(), data.clone())
            .context("setting up the GPU backend")?;
        Ok((Box::new(b), why.to_string()))
    };
    let f64_wanted = args.precision == PrecisionArg::F64;
    match args.device {
        DeviceArg::Cpu => cpu("--device cpu".into()),
        DeviceArg::Gpu if f64_wanted => Err(anyhow::anyhow!(
            "--precision f64 with --device gpu: the GPU computes in f32; use --precision f32, or --device cpu for f64"
        )),
        DeviceArg::Gpu => gpu(Context::gpu()?, "--device gpu"),
        DeviceArg::Auto if f64_wanted => cpu(
            "--device auto: --precision f64 runs on the CPU backend (the GPU computes in f32)".into(),
        ),
        DeviceArg::Auto => {
            // Every hardware GPU and the CPU time the run's own step; the faster trains.
            let (cpu_backend, _) = cpu(String::new())?;
            let trial = gpu_train::gpu::auto::TrialSpec {
                method: args.grad_method(),
                batch: args.batch,
                lr: args.lr,
                seed: args.seed,
            };
            let pick = gpu_train::gpu::auto::auto_device(
                spec,
                data.clone(),
                &Params::init(spec, args.seed),
                &trial,
                cpu_backend,
            )?;
            Ok((pick.backend, pick.reason))
        }
    }
}

/// Where output lines go: stdout normally, stderr under --json (stdout is for the JSON), the
/// progress bar's println while a bar is shown, nowhere under --quiet.
struct Printer {
    quiet: bool,
    json: bool,
    bar: Option<ProgressBar>,
}

impl Printer {
    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match (&self.bar, self.json) {
            (_, true) => eprintln!("{text}"),
            (Some(bar), false) => bar.println(text),
            (None, false) => println!("{text}"),
        }
    }
}

/// The CLI's view of a run: prints, records metrics, writes checkpoints, handles Ctrl-C.
struct CliObserver<'a> {
    printer: &'a Printer,
    run_dir: &'a mut RunDir,
    checkpoint_every: Option<usize>,
    interrupted: &'a AtomicBool,
    /// Written on Ctrl-C (set when it happens).
    interrupt_checkpoint: Option<PathBuf>,
    template: Checkpoint,
    precision: StoredPrecision,
    /// The f64 CPU reference and when to consult it.
    checker: Option<gpu_train::check::Checker>,
    check_every: Option<usize>,
    eval_every: usize,
    first_iter: usize,
    grad: GradMethod,
}

impl CliObserver<'_> {
    fn save(
        &mut self,
        done: usize,
        backend: &mut dyn Backend,
        sampler: &SamplerState,
    ) -> gpu_train::Result<PathBuf> {
        let mut ckpt = self.template.clone();
        ckpt.params = backend.params()?;
        ckpt.iteration = done;
        ckpt.sampler = *sampler;
        let path = self.run_dir.checkpoint_path();
        checkpoint::save(&path, &ckpt, self.precision)?;
        Ok(path)
    }
}

impl Observer for CliObserver<'_> {
    fn before_step(
        &mut self,
        iter: usize,
        backend: &mut dyn Backend,
        batch: &[u32],
    ) -> gpu_train::Result<()> {
        let due = match self.check_every {
            Some(0) => false,
            Some(n) => iter % n == 0,
            None => iter == self.first_iter || iter % self.eval_every == 0,
        };
        if let (true, Some(checker)) = (due, self.checker.as_mut()) {
            let (total, tensors) = checker.check(iter, backend, batch, self.grad)?;
            let parts: Vec<String> = tensors
                .iter()
                .map(|t| format!("{} {:.1e}", t.name, t.relative))
                .collect();
            self.printer.line(&format!(
                "check step {iter}: {} gradient vs the f64 CPU reference: {total:.2e} relative ({})",
                self.grad.describe(),
                parts.join(", ")
            ));
        }
        Ok(())
    }

    fn on_loss(&mut self, iter: usize, loss: f64) -> gpu_train::Result<()> {
        if let Some(bar) = &self.printer.bar {
            bar.set_message(format!("loss {loss:.4}"));
        }
        self.run_dir.record_loss(iter, loss)
    }

    fn on_eval(&mut self, r: &EvalRecord) -> gpu_train::Result<()> {
        self.run_dir.record_eval(r)?;
        if self.printer.json {
            let obj = serde_json::json!({
                "iteration": r.iter, "loss": r.batch_loss, "train_acc": r.train.accuracy(),
                "test_acc": r.test.accuracy(), "train_loss": r.train.loss, "test_loss": r.test.loss,
                "seconds": r.seconds,
            });
            println!("{obj}");
        }
        self.printer.line(&format_eval(r));
        Ok(())
    }

    fn after_step(
        &mut self,
        done: usize,
        backend: &mut dyn Backend,
        sampler: &SamplerState,
    ) -> gpu_train::Result<Control> {
        if let Some(bar) = &self.printer.bar {
            bar.set_position(done as u64);
        }
        if self.interrupted.load(Ordering::SeqCst) {
            self.interrupt_checkpoint = Some(self.save(done, backend, sampler)?);
            return Ok(Control::Stop);
        }
        if self
            .checkpoint_every
            .is_some_and(|n| n > 0 && done % n == 0)
        {
            self.save(done, backend, sampler)?;
        }
        Ok(Control::Continue)
    }
}

fn format_eval(r: &EvalRecord) -> String {
    format!(
        "iter {:>6} | loss {:.4} | train acc {:.4} | test acc {:.4} | {:.1} s",
        r.iter,
        r.batch_loss,
        r.train.accuracy(),
        r.test.accuracy(),
        r.seconds
    )
}

fn run_train(args: &TrainArgs, matches: Option<&ArgMatches>) -> Result<i32> {
    if args.checkpoint_every == Some(0) {
        bail!("--checkpoint-every: must be at least 1 (or leave it out: the checkpoint is written at the end)");
    }
    let mnist = data::load(args.data.as_deref()).context("loading MNIST")?;
    let flags_spec = MlpSpec::new(
        mnist.train.input_width(),
        args.hidden.clone(),
        mnist.train.classes(),
        args.activation(),
    )?;
    // A resumed run takes its net, settings and batch sequence from the checkpoint; only what
    // does not change the trajectory (length, evaluation and logging cadence) comes from flags.
    let (spec, cfg, params, start) = match &args.resume {
        Some(path) => {
            let ckpt = checkpoint::load(path)?;
            let data_spec = MlpSpec {
                hidden: ckpt.params.spec.hidden.clone(),
                activation: ckpt.params.spec.activation,
                ..flags_spec.clone()
            };
            checkpoint::check_fits(path, &ckpt.params.spec, &data_spec)
                .context("the checkpoint does not fit this data")?;
            if explicit(matches, "hidden") || explicit(matches, "activation") {
                checkpoint::check_fits(path, &ckpt.params.spec, &flags_spec)
                    .context("the checkpoint does not fit --hidden/--activation")?;
            }
            let cfg = TrainConfig {
                iters: args.iters,
                eval_every: args.eval_every,
                loss_every: args.loss_every,
                ..ckpt.config.clone()
            };
            let start = Start {
                iteration: ckpt.iteration,
                sampler: ckpt.sampler,
            };
            (ckpt.params.spec.clone(), cfg, ckpt.params, Some(start))
        }
        None => (
            flags_spec.clone(),
            args.config(),
            Params::init(&flags_spec, args.seed),
            None,
        ),
    };
    cfg.validate()?;
    let train_size = mnist.train.len();
    let data_line = mnist.describe();
    let data = Arc::new(mnist);
    let (mut backend, why) = make_backend(args, &spec, data.clone())?;
    // The f64 CPU reference checks every other backend (it would only compare with itself).
    let is_reference = args.device == DeviceArg::Cpu && args.precision == PrecisionArg::F64;
    let checker = if is_reference || args.check_every == Some(0) {
        None
    } else {
        Some(gpu_train::check::Checker::new(spec.clone(), data.clone())?)
    };
    let out_dir = args.out.clone().unwrap_or_else(run::default_path);
    let mut run_dir = RunDir::create(&out_dir, &backend.name(), &cfg.grad.describe())?;

    let show_bar = !args.quiet && !args.json && std::io::stdout().is_terminal();
    let bar = show_bar.then(|| {
        let bar = ProgressBar::new(cfg.iters as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} it | {per_sec} | ETA {eta} | {msg}")
                .expect("a valid template"),
        );
        bar.set_position(start.map_or(0, |s| s.iteration) as u64);
        bar
    });
    let printer = Printer {
        quiet: args.quiet,
        json: args.json,
        bar,
    };
    printer.line(&format!(
        "gpu-train {} | data: {data_line}",
        env!("CARGO_PKG_VERSION")
    ));
    printer.line(&format!("device: {} ({why})", backend.name()));
    printer.line(&format!(
        "model: {}, {} parameters | gradient: {} | batch {}, lr {}, {} iterations, seed {}, evaluate every {}",
        spec.describe(),
        spec.num_params(),
        cfg.grad.describe(),
        cfg.batch,
        cfg.lr,
        cfg.iters,
        cfg.seed,
        cfg.eval_every
    ));
    if let (Some(path), Some(s)) = (&args.resume, start) {
        printer.line(&format!(
            "resuming {} at iteration {} (settings from the checkpoint)",
            path.display(),
            s.iteration
        ));
    }
    printer.line(&format!("run folder: {}", out_dir.display()));

    let precision = match (args.precision, args.device) {
        (PrecisionArg::F64, DeviceArg::Cpu) => StoredPrecision::F64,
        _ => StoredPrecision::F32,
    };
    let notes = [
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("device", backend.name()),
        ("data", data_line.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let sampler0 = SamplerState {
        kind: cfg.sampler,
        n: train_size,
        seed: cfg.seed,
        batches_drawn: 0,
        batch_size: 0,
    };
    let template = Checkpoint {
        params: params.clone(),
        iteration: 0,
        sampler: sampler0,
        config: cfg.clone(),
        notes,
    };
    run_dir.write_config(&serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "device": backend.name(),
        "device_choice": why,
        "data": data_line,
        "model": spec,
        "parameters": spec.num_params(),
        "config": cfg,
        "seed": cfg.seed,
        "precision": format!("{:?}", args.precision).to_lowercase(),
        "resumed_from": args.resume.as_ref().map(|p| p.display().to_string()),
        "resumed_at": start.map(|s| s.iteration),
    }))?;
    backend.set_params(&params)?;

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A first Ctrl-C finishes the step and checkpoints; a second one leaves at once.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(EXIT_INTERRUPTED);
            }
        });
    }
    let mut observer = CliObserver {
        printer: &printer,
        run_dir: &mut run_dir,
        checkpoint_every: args.checkpoint_every,
        interrupted: &interrupted,
        interrupt_checkpoint: None,
        template,
        precision,
        checker,
        check_every: args.check_every,
        eval_every: cfg.eval_every,
        first_iter: start.map_or(0, |s| s.iteration),
        grad: cfg.grad,
    };
    let result = train_from(backend.as_mut(), train_size, &cfg, start, &mut observer);
    let interrupt_checkpoint = observer.interrupt_checkpoint.take();
    let template = observer.template.clone();
    if let Some(bar) = &printer.bar {
        bar.finish_and_clear();
    }
    run_dir.flush()?;
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let ckpt = run_dir.checkpoint_path();
            let kept = if ckpt.exists() {
                format!("the last good checkpoint is kept: {}", ckpt.display())
            } else {
                "no checkpoint was written before it (use --checkpoint-every N)".to_string()
            };
            return Err(anyhow::Error::new(e).context(format!("training stopped; {kept}")));
        }
    };
    if summary.interrupted {
        let path = interrupt_checkpoint.unwrap_or_else(|| run_dir.checkpoint_path());
        eprintln!(
            "interrupted after iteration {}: checkpoint written to {}\nresume with: gpu-train train --resume {} --out {}",
            summary.iters,
            path.display(),
            path.display(),
            out_dir.display()
        );
        return Ok(EXIT_INTERRUPTED);
    }
    // The final checkpoint and the plots.
    let mut ckpt = template;
    ckpt.params = backend.params()?;
    ckpt.iteration = summary.iters;
    ckpt.sampler = SamplerState {
        batches_drawn: summary.iters as u64,
        batch_size: if summary.iters > 0 { cfg.batch } else { 0 },
        ..ckpt.sampler
    };
    let ckpt_path = run_dir.checkpoint_path();
    checkpoint::save(&ckpt_path, &ckpt, precision)?;
    let plots = write_plots(&run_dir, train_size, cfg.batch)?;
    let final_line = match summary.last() {
        Some(last) => format!(
            "final: iteration {} | loss {:.4} | train acc {:.4} | test acc {:.4} | wall {:.1} s",
            summary.iters,
            last.batch_loss,
            last.train.accuracy(),
            last.test.accuracy(),
            summary.seconds
        ),
        None => format!("final: no iterations run | wall {:.1} s", summary.seconds),
    };
    if args.json {
        eprintln!("{final_line}");
    } else {
        println!("{final_line}");
    }
    printer.line(&format!(
        "metrics: {} | plots: {} | checkpoint: {}",
        run_dir.path.join("metrics.csv").display(),
        plots
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        ckpt_path.display()
    ));
    Ok(0)
}

/// The loss curve over iterations and the accuracy per epoch, from the run folder's whole
/// history (a resumed run included).
fn write_plots(run_dir: &RunDir, train_size: usize, batch: usize) -> Result<Vec<PathBuf>> {
    let (losses, evals) = run_dir.history()?;
    let per_epoch = (train_size as f64 / batch as f64).max(1.0);
    let epochs: Vec<(f64, f64, f64)> = evals
        .iter()
        .map(|&(i, tr, te)| (i as f64 / per_epoch, tr, te))
        .collect();
    let loss_png = run_dir.path.join("loss.png");
    let acc_png = run_dir.path.join("accuracy.png");
    gpu_train::report::plot::loss_curve(&loss_png, &losses, "training loss")?;
    gpu_train::report::plot::accuracy_chart(&acc_png, &epochs)?;
    Ok(vec![loss_png, acc_png])
}

fn run_eval(args: &EvalArgs) -> Result<()> {
    let ckpt = checkpoint::load(&args.weights)?;
    let mnist = data::load(args.data.as_deref()).context("loading MNIST")?;
    let spec = &ckpt.params.spec;
    let data_spec = MlpSpec {
        input: mnist.train.input_width(),
        classes: mnist.train.classes(),
        ..spec.clone()
    };
    checkpoint::check_fits(&args.weights, spec, &data_spec)
        .context("the checkpoint does not fit this data")?;
    let split = match args.split {
        SplitArg::Train => &mnist.train,
        SplitArg::Test => &mnist.test,
    };
    let report = gpu_train::cpu::confusion(spec, &ckpt.params, split);
    println!(
        "checkpoint: {} ({}, iteration {})",
        args.weights.display(),
        spec.describe(),
        ckpt.iteration
    );
    println!(
        "data: {} ({:?} split, {} images)",
        mnist.describe(),
        args.split,
        split.len()
    );
    print!("{}", report.render());
    Ok(())
}

fn run_gradcheck(args: &GradcheckArgs) -> Result<()> {
    use gpu_train::check::{numerical, per_tensor};
    let mnist = Arc::new(data::load(args.data.as_deref()).context("loading MNIST")?);
    let act = match args.activation {
        ActivationArg::Sigmoid => Activation::Sigmoid,
        ActivationArg::Relu => Activation::Relu,
    };
    let spec = MlpSpec::new(
        mnist.train.input_width(),
        args.hidden.clone(),
        mnist.train.classes(),
        act,
    )?;
    if args.batch == 0 {
        bail!("--batch: must be at least 1 (the chapter's gradient check uses 3)");
    }
    // The parameters: at init, or after some f32 backprop steps.
    let mut trainer = CpuBackend::<f32>::new(spec.clone(), mnist.clone())?;
    trainer.set_params(&Params::init(&spec, args.seed))?;
    let mut sampler =
        gpu_train::data::Sampler::new(SamplerKind::WithReplacement, mnist.train.len(), args.seed)?;
    let mut batch = Vec::new();
    for _ in 0..args.steps {
        sampler.next_batch(100, &mut batch)?;
        trainer.set_batch(&batch)?;
        trainer.step(GradMethod::Backprop, 0.1)?;
    }
    let params = trainer.params()?;
    let indices: Vec<u32> = (0..args.batch as u32).collect();
    let mut reference = CpuBackend::<f64>::new(spec.clone(), mnist.clone())?;
    reference.set_params(&params)?;
    reference.set_batch(&indices)?;
    let exact = reference.gradient(GradMethod::Backprop)?;
    println!(
        "gradient check: {} at {} backprop steps, the first {} training images, h = {:e}; reference: f64 CPU backprop",
        spec.describe(),
        args.steps,
        args.batch,
        args.h
    );
    let with_h = |m: GradMethod| match m {
        GradMethod::Numerical { strategy, .. } => GradMethod::Numerical {
            strategy,
            h: args.h,
        },
        other => other,
    };
    let methods = [
        numerical(PerturbStrategy::Incremental),
        numerical(PerturbStrategy::Full),
        GradMethod::Backprop,
    ]
    .map(with_h);
    let mut devices: Vec<(String, Box<dyn Backend>)> = Vec::new();
    if args.device != CheckDeviceArg::Gpu {
        devices.push((
            "cpu f64".into(),
            Box::new(CpuBackend::<f64>::new(spec.clone(), mnist.clone())?),
        ));
        devices.push((
            "cpu f32".into(),
            Box::new(CpuBackend::<f32>::new(spec.clone(), mnist.clone())?),
        ));
    }
    if args.device != CheckDeviceArg::Cpu {
        let ctx = Context::gpu()?;
        let name = format!("gpu {}", ctx.adapter_info().name);
        devices.push((
            name,
            Box::new(GpuBackend::new(Arc::new(ctx), spec.clone(), mnist.clone())?),
        ));
    }
    let names: Vec<String> = spec.tensors().into_iter().map(|t| t.name).collect();
    println!(
        "{:<40} {:<36} {:>10}  {}",
        "device",
        "gradient",
        "all (rel)",
        names.iter().map(|n| format!("{n:>20}")).collect::<String>()
    );
    println!(
        "{:<40} {:<36} {:>10}  {}",
        "",
        "",
        "",
        names
            .iter()
            .map(|_| format!("{:>20}", "rel / max abs"))
            .collect::<String>()
    );
    for (name, backend) in devices.iter_mut() {
        backend.set_params(&params)?;
        backend.set_batch(&indices)?;
        for method in methods {
            let clock = std::time::Instant::now();
            match backend.gradient(method) {
                Ok(g) => {
                    let (tensors, total) = per_tensor(&spec, &g, &exact);
                    let cells: String = tensors
                        .iter()
                        .map(|t| {
                            format!("{:>20}", format!("{:.1e} / {:.1e}", t.relative, t.max_abs))
                        })
                        .collect();
                    println!(
                        "{:<40} {:<36} {:>10.2e}  {cells}  ({:.2} s)",
                        name,
                        method.describe(),
                        total,
                        clock.elapsed().as_secs_f64()
                    );
                }
                Err(e) => println!("{:<40} {:<36} error: {e}", name, method.describe()),
            }
        }
    }
    Ok(())
}
