//! The command line: clap commands that call the library. main.rs only calls `run`.

use anyhow::{bail, Context as _, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use gpu_train::backend::{GradKind, PerturbStrategy, DEFAULT_H};
use gpu_train::checkpoint;
use gpu_train::data::{self, SamplerKind};
use gpu_train::gpu;
use gpu_train::model::{Activation, MlpSpec};
use gpu_train::session::{DeviceChoice, Precision, TrainRequest};
use std::io::IsTerminal;
use std::path::PathBuf;
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
    /// What a checkpoint makes of your own pictures (PNG or JPEG, any size): the top classes
    /// with their probabilities. Runs on the CPU.
    Predict(PredictArgs),
    /// List every GPU adapter (name, backend, type, driver, key limits) and which one auto picks.
    Devices,
    /// The chapter's walkthrough in the terminal; with --out, its pictures.
    Demo(DemoArgs),
    /// Numerical gradient (each strategy, each device) against backprop, per parameter tensor:
    /// PASS or FAIL against the tolerance training checks with; exit status 1 on a FAIL.
    Gradcheck(GradcheckArgs),
    /// Time forward, backprop, the numerical gradient and a training step on the CPU and the
    /// GPU over a grid of sizes: median/min/max, op counts, rates, growth, optional NumPy peer.
    Bench(gpu_train::bench::BenchArgs),
    /// Print a shell completion script: `gpu-train completions bash > ~/.local/share/bash-completion/completions/gpu-train`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    pub activation: Activation,
    /// Samples in the batch (the chapter's sequel checks 3).
    #[arg(long, default_value_t = 3)]
    pub batch: usize,
    /// Backprop steps to train before checking (0 = at initialisation).
    #[arg(long, default_value_t = 0)]
    pub steps: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Step of the central difference.
    #[arg(long, default_value_t = DEFAULT_H, allow_hyphen_values = true)]
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
    /// One JSON object on stdout: checkpoint, split, count, loss, accuracy, per-class accuracy,
    /// confusion matrix, class names.
    #[arg(long)]
    pub json: bool,
    /// Draw the first N misclassified images of the split, each labelled "true / predicted",
    /// into DIR/misclassified.png (needs --out).
    #[arg(long, value_name = "N", requires = "out")]
    pub misclassified: Option<usize>,
    /// Where --misclassified writes its picture.
    #[arg(long, value_name = "DIR", requires = "misclassified")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// A checkpoint written by `gpu-train train` (safetensors).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// PNG or JPEG pictures of any size and colour, one figure each: dark on light or light on
    /// dark. Each is cropped to its ink, scaled and centred the way MNIST was made.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to list for each picture, most probable first.
    #[arg(long, default_value_t = 3, value_name = "K")]
    pub top: usize,
    /// One JSON object a picture on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also print what preparation did and the input the net saw, as ASCII art.
    #[arg(long)]
    pub show: bool,
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

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Where to run: auto picks a hardware GPU if there is one, else the CPU. [may change on --resume]
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Gradient: the chapter's numerical gradient, or backprop.
    #[arg(long, value_enum, default_value = "numerical")]
    pub grad: GradKind,
    /// Strategy of the numerical gradient (same result, different cost).
    #[arg(long, value_enum, default_value = "incremental")]
    pub numgrad: PerturbStrategy,
    /// Step h of the central difference (L(theta + h) - L(theta - h)) / 2h.
    #[arg(long, default_value_t = DEFAULT_H, allow_hyphen_values = true)]
    pub h: f64,
    /// Directory with MNIST-style IDX files (the four canonical names, .gz or not). Default:
    /// $MNIST_DIR, else the embedded 30,000/5,000 subset. [may change on --resume]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Number of classes (2 to 256); every label must be below it. Default: the largest
    /// training label + 1.
    #[arg(long, value_name = "N")]
    pub classes: Option<usize>,
    /// Hidden layer sizes, comma-separated: 50, or 100,50 for two hidden layers.
    #[arg(long, value_delimiter = ',', default_value = "50")]
    pub hidden: Vec<usize>,
    /// Hidden-layer activation.
    #[arg(long, value_enum, default_value = "sigmoid")]
    pub activation: Activation,
    /// Mini-batch size.
    #[arg(long, default_value_t = 100, allow_hyphen_values = true)]
    pub batch: usize,
    /// Learning rate of gradient descent.
    #[arg(long, default_value_t = 0.1, allow_hyphen_values = true)]
    pub lr: f64,
    /// Number of iterations (mini-batch steps) in all; with --resume, the run's total.
    /// Default: 10,000 (a resume: the checkpoint's). [may change on --resume]
    #[arg(long, conflicts_with = "epochs")]
    pub iters: Option<usize>,
    /// Train for this many epochs of the training set instead of --iters. [may change on --resume]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub epochs: Option<f64>,
    /// Seed of the initial weights and of the batch sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate loss and accuracy over the WHOLE training and test sets every N iterations.
    /// Default: one epoch, max(training images / batch, 1) (300 on the embedded set, 600 on
    /// full MNIST). [may change on --resume]
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    /// How batches are drawn.
    #[arg(long, value_enum, default_value = "replacement")]
    pub sampler: SamplerKind,
    /// Arithmetic of the CPU backend (the GPU is always f32). [may change on --resume]
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    /// Keep every Nth batch loss in loss.csv (1 = every step). [may change on --resume]
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub loss_every: usize,
    /// The run folder: metrics.csv, loss.csv, config.json, plots, checkpoint. Default:
    /// runs/<UTC time> (a resume: the checkpoint's folder). [may change on --resume]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace the run in --out DIR if it holds one (without it, a folder with a run is refused).
    #[arg(long)]
    pub overwrite: bool,
    /// Also write the checkpoint every N iterations (it is always written at the end, on
    /// Ctrl-C and when a run stops on an error). [may change on --resume]
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Continue a run from its checkpoint: the net, the settings and the batch sequence come from
    /// the file, so the run ends exactly where an uninterrupted one would. Flags marked "may
    /// change on --resume" may be given; any other that contradicts the checkpoint is an error.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// Print only the final line and the run folder.
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
    /// One JSON object per evaluation on stdout, then a final record (other lines go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Re-compute the step's gradient on the f64 CPU reference every N iterations; beyond
    /// tolerance the run stops, naming the step and the tensor. Default: the first step and each
    /// evaluation (not on the f64 CPU reference itself); 0 = never. [may change on --resume]
    #[arg(long, value_name = "N")]
    pub check_every: Option<usize>,
}

/// The train flags that change the trajectory or the run, by clap id.
const TRAIN_FLAGS: &[&str] = &[
    "classes",
    "device",
    "grad",
    "numgrad",
    "h",
    "data",
    "hidden",
    "activation",
    "batch",
    "lr",
    "iters",
    "epochs",
    "seed",
    "eval_every",
    "sampler",
    "precision",
    "loss_every",
    "out",
    "checkpoint_every",
    "check_every",
];

impl TrainArgs {
    /// The library's request; `matches` tells which flags were given on the command line.
    pub fn request(&self, matches: Option<&ArgMatches>) -> TrainRequest {
        let explicit = TRAIN_FLAGS
            .iter()
            .filter(|id| explicit(matches, id))
            .map(|id| id.replace('_', "-"))
            .collect();
        TrainRequest {
            device: self.device,
            precision: self.precision,
            data: self.data.clone(),
            classes: self.classes,
            hidden: self.hidden.clone(),
            activation: self.activation,
            batch: self.batch,
            lr: self.lr,
            grad: self.grad.method(self.numgrad, self.h),
            sampler: self.sampler,
            seed: self.seed,
            iters: self.iters,
            epochs: self.epochs,
            eval_every: self.eval_every,
            loss_every: self.loss_every,
            out: self.out.clone(),
            overwrite: self.overwrite,
            checkpoint_every: self.checkpoint_every,
            check_every: self.check_every,
            resume: self.resume.clone(),
            explicit,
        }
    }
}

/// Parses the command line (keeping where each value came from) and runs it; returns the exit
/// status.
pub fn main_with_args() -> Result<i32> {
    gpu_train::time::process_start();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sub = matches.subcommand().map(|(_, m)| m.clone());
    match cli.command {
        Command::Train(args) => crate::terminal::run_train(&args, sub.as_ref()),
        Command::Eval(args) => run_eval(&args).map(|_| 0),
        Command::Predict(args) => run_predict(&args),
        Command::Devices => {
            print!("{}", gpu::devices_report());
            Ok(0)
        }
        Command::Gradcheck(args) => run_gradcheck(&args),
        Command::Bench(args) => {
            gpu_train::budget::check_bench(&args.hidden, args.batch.as_deref(), &args.what)?;
            let mut out = std::io::stdout().lock();
            gpu_train::bench::run(&args, &mut out)?;
            Ok(0)
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "gpu-train", &mut std::io::stdout());
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

fn run_eval(args: &EvalArgs) -> Result<()> {
    let ckpt = checkpoint::load(&args.weights)?;
    let spec = &ckpt.params.spec;
    // The checkpoint's class count is the one every label must fit.
    let classes = data::ClassCount {
        count: spec.classes,
        origin: format!("the checkpoint ({} classes)", spec.classes),
    };
    let mnist = data::load_with(args.data.as_deref(), Some(classes)).context("loading the data")?;
    if let Some(w) = &mnist.class_warning {
        eprintln!("warning: {w}");
    }
    let data_spec = MlpSpec {
        input: mnist.train.input_width(),
        classes: mnist.train.classes(),
        ..spec.clone()
    };
    checkpoint::check_fits(&args.weights, spec, &data_spec)
        .context("the checkpoint does not fit this data")?;
    let names = match &mnist.class_names {
        Some(names) => Some(names.clone()),
        None => gpu_train::predict::checkpoint_class_names(&args.weights, &ckpt)?,
    };
    let (split, split_name) = match args.split {
        SplitArg::Train => (&mnist.train, "train"),
        SplitArg::Test => (&mnist.test, "test"),
    };
    let report = gpu_train::cpu::confusion(spec, &ckpt.params, split);
    if args.json {
        let obj =
            gpu_train::report::eval::to_json(&report, names.as_deref(), &args.weights, split_name);
        println!("{obj}");
    } else {
        println!(
            "checkpoint: {} ({}, iteration {})",
            args.weights.display(),
            spec.describe(),
            ckpt.iteration
        );
        println!(
            "data: {} ({split_name} split, {} images)",
            mnist.describe(),
            split.len()
        );
        print!(
            "{}",
            gpu_train::report::eval::render(&report, names.as_deref())
        );
    }
    if let (Some(n), Some(dir)) = (args.misclassified, &args.out) {
        use gpu_train::predict;
        if n == 0 || n > gpu_train::report::eval::MAX_GRID_IMAGES {
            bail!(
                "--misclassified: {n} images; the grid shows 1 to {}",
                gpu_train::report::eval::MAX_GRID_IMAGES
            );
        }
        let probs = predict::probabilities(spec, &ckpt.params, split);
        let predicted = predict::argmax_rows(&probs, spec.classes);
        let (indices, wrong): (Vec<usize>, Vec<usize>) = predicted
            .iter()
            .enumerate()
            .filter(|&(i, &p)| p != split.label(i) as usize)
            .map(|(i, &p)| (i, p))
            .take(n)
            .unzip();
        let line = if indices.is_empty() {
            "misclassified: none in this split, no picture written".to_string()
        } else {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--out: cannot create {}", dir.display()))?;
            let path = dir.join("misclassified.png");
            gpu_train::report::eval::misclassified_grid(
                &path,
                split,
                &indices,
                &wrong,
                names.as_deref(),
            )?;
            format!(
                "misclassified: the first {} (true / predicted) drawn in {}",
                indices.len(),
                path.display()
            )
        };
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    Ok(())
}

/// `gpu-train predict`: every picture that can be read goes through one forward pass; the
/// others are reported on stderr and make the exit status 1.
fn run_predict(args: &PredictArgs) -> Result<i32> {
    use gpu_train::predict;
    if args.top == 0 {
        bail!("--top: must be at least 1 (the default lists 3 classes)");
    }
    let ckpt = checkpoint::load(&args.weights)?;
    let spec = &ckpt.params.spec;
    let side = predict::field_side(spec)?;
    let names = predict::checkpoint_class_names(&args.weights, &ckpt)?;
    let mut ready = Vec::new();
    let mut failed = 0;
    for path in &args.images {
        match predict::read_image(path).and_then(|g| Ok((predict::prepare(path, &g, side)?, g))) {
            Ok((prepared, picture)) => ready.push((path, prepared, picture)),
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if !ready.is_empty() {
        let prepared: Vec<_> = ready.iter().map(|r| r.1.clone()).collect();
        let set = predict::as_dataset(&prepared, side, spec.classes)?;
        let probs = predict::probabilities(spec, &ckpt.params, &set);
        let k = args.top.min(spec.classes);
        let name = |c: usize| data::class_name(names.as_deref(), c);
        for ((path, prepared, picture), row) in ready.iter().zip(probs.chunks(spec.classes)) {
            let top = predict::top_k(row, k);
            if args.show {
                let art = format!(
                    "{}: {}\n{}",
                    path.display(),
                    prepared.describe(picture),
                    prepared.ascii_art()
                );
                if args.json {
                    eprint!("{art}");
                } else {
                    print!("{art}");
                }
            }
            if args.json {
                let (x, y, w, h) = prepared.ink_box;
                let obj = serde_json::json!({
                    "file": path.display().to_string(),
                    "top": top.iter().map(|&(c, p)| serde_json::json!({
                        "class": c, "name": name(c), "probability": p,
                    })).collect::<Vec<_>>(),
                    "inverted": prepared.inverted,
                    "ink_box": [x, y, w, h],
                    "scaled": [prepared.scaled.0, prepared.scaled.1],
                    "field": [side, side],
                });
                println!("{obj}");
            } else {
                let parts: Vec<String> = top
                    .iter()
                    .map(|&(c, p)| match &names {
                        Some(_) => format!("{c} {} {:.2}%", name(c), 100.0 * p),
                        None => format!("{c} {:.2}%", 100.0 * p),
                    })
                    .collect();
                println!("{}: {}", path.display(), parts.join(" | "));
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} pictures could not be read (above)",
            args.images.len()
        );
        return Ok(1);
    }
    Ok(0)
}

/// Prints the rows as they come (on a terminal, which one is being computed meanwhile) and
/// the verdict; the exit status is 1 when a row fails.
fn run_gradcheck(args: &GradcheckArgs) -> Result<i32> {
    use gpu_train::gradcheck::{self, Event};
    let mnist = Arc::new(data::load(args.data.as_deref()).context("loading MNIST")?);
    let config = gradcheck::Config {
        cpu: args.device != CheckDeviceArg::Gpu,
        gpu: args.device != CheckDeviceArg::Cpu,
        hidden: args.hidden.clone(),
        activation: args.activation,
        batch: args.batch,
        steps: args.steps,
        seed: args.seed,
        h: args.h,
    };
    let terminal = std::io::stderr().is_terminal();
    let report = gradcheck::run(&config, mnist, &mut |event| match event {
        Event::Header(lines) => {
            lines
                .iter()
                .chain(&gradcheck::table_head())
                .for_each(|l| println!("{l}"));
        }
        Event::Started { device, method } if terminal => {
            eprint!("\rcomputing {device} {} ...", method.describe());
        }
        Event::Started { .. } => {}
        Event::Done(row) => {
            if terminal {
                eprint!("\r\x1b[K");
            }
            row.render().iter().for_each(|l| println!("{l}"));
        }
    })?;
    report.worst_line().iter().for_each(|l| println!("{l}"));
    println!("{}", report.verdict_line());
    Ok(report.exit_code())
}
