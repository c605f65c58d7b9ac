//! The command line: clap commands that call the library. main.rs only calls `run`.

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use gpu_train::backend::{Backend, GradMethod, PerturbStrategy, DEFAULT_H};
use gpu_train::cpu::CpuBackend;
use gpu_train::data::{self, Mnist, SamplerKind};
use gpu_train::model::{Activation, MlpSpec, Params};
use gpu_train::train::{train, EvalRecord, TrainConfig};
use std::path::PathBuf;
use std::sync::Arc;

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
    /// A whole forward pass per perturbation (the chapter's way; slow).
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
    /// else the embedded 10,000/2,000 subset.
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
        }
    }

    pub fn activation(&self) -> Activation {
        match self.activation {
            ActivationArg::Sigmoid => Activation::Sigmoid,
            ActivationArg::Relu => Activation::Relu,
        }
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => run_train(&args),
    }
}

/// Picks the backend for `--device`, saying which and why.
fn make_backend(args: &TrainArgs, spec: &MlpSpec, data: Arc<Mnist>) -> Result<(Box<dyn Backend>, String)> {
    let cpu = |why: String| -> Result<(Box<dyn Backend>, String)> {
        let b: Box<dyn Backend> = match args.precision {
            PrecisionArg::F32 => Box::new(CpuBackend::<f32>::new(spec.clone(), data.clone())?),
            PrecisionArg::F64 => Box::new(CpuBackend::<f64>::new(spec.clone(), data.clone())?),
        };
        Ok((b, why))
    };
    match args.device {
        DeviceArg::Cpu => cpu("--device cpu".into()),
        DeviceArg::Auto => cpu("--device auto: the GPU backend is not built yet, so the CPU runs".into()),
        DeviceArg::Gpu => anyhow::bail!("--device gpu: the GPU backend is not built yet; use --device cpu"),
    }
}

fn run_train(args: &TrainArgs) -> Result<()> {
    let cfg = args.config();
    cfg.validate()?;
    let mnist = data::load(args.data.as_deref()).context("loading MNIST")?;
    println!("gpu-train {} | data: {}", env!("CARGO_PKG_VERSION"), mnist.describe());
    let spec = MlpSpec::new(mnist.train.input_width(), args.hidden.clone(), mnist.train.classes(), args.activation())?;
    let train_size = mnist.train.len();
    let data = Arc::new(mnist);
    let (mut backend, why) = make_backend(args, &spec, data)?;
    println!("device: {} ({why})", backend.name());
    println!(
        "model: {}, {} parameters | gradient: {} | batch {}, lr {}, {} iterations, seed {}, evaluate every {}",
        spec.describe(),
        spec.num_params(),
        cfg.grad.describe(),
        cfg.batch,
        cfg.lr,
        cfg.iters,
        cfg.seed,
        cfg.eval_every
    );
    backend.set_params(&Params::init(&spec, cfg.seed))?;
    let summary = train(backend.as_mut(), train_size, &cfg, print_eval)?;
    match summary.last() {
        Some(last) => println!(
            "final: iteration {} | loss {:.4} | train acc {:.4} | test acc {:.4} | wall {:.1} s",
            summary.iters, last.batch_loss, last.train.accuracy(), last.test.accuracy(), summary.seconds
        ),
        None => println!("final: no iterations run (--iters 0) | wall {:.1} s", summary.seconds),
    }
    Ok(())
}

fn print_eval(r: &EvalRecord) {
    println!(
        "iter {:>6} | loss {:.4} | train acc {:.4} | test acc {:.4} | {:.1} s",
        r.iter, r.batch_loss, r.train.accuracy(), r.test.accuracy(), r.seconds
    );
}
