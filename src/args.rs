//! The command line's grammar: every command and flag (clap), and which train flags were given
//! on the command line. cli.rs runs the commands; terminal.rs prints a training run.

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand, ValueEnum};
use gpu_train::backend::{GradKind, PerturbStrategy, DEFAULT_H};
use gpu_train::data::SamplerKind;
use gpu_train::model::Activation;
use gpu_train::session::{DeviceChoice, Precision, TrainRequest};
use std::path::PathBuf;

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
    /// Seconds a row may take: a numerical `full` row priced over it (2P forward passes at
    /// the measured forward time, then the same call on one sample) is skipped, as in bench.
    #[arg(long, default_value_t = gpu_train::gradcheck::DEFAULT_BUDGET_S, value_name = "SECONDS", allow_hyphen_values = true)]
    pub budget: f64,
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

fn explicit(m: Option<&ArgMatches>, id: &str) -> bool {
    m.and_then(|m| m.value_source(id)) == Some(ValueSource::CommandLine)
}
