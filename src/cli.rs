//! The command line: runs the commands that args.rs declares by calling the library. main.rs
//! only calls `main_with_args`.

use crate::args::{CheckDeviceArg, Cli, Command, EvalArgs, GradcheckArgs, PredictArgs, SplitArg};
use anyhow::{bail, Context as _, Result};
use clap::{CommandFactory, FromArgMatches};
use gpu_train::checkpoint;
use gpu_train::data;
use gpu_train::gpu;
use gpu_train::model::MlpSpec;
use std::io::IsTerminal;
use std::sync::Arc;

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
        let line = draw_misclassified(n, dir, &ckpt, split, names.as_deref())?;
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    Ok(())
}

/// `eval --misclassified N --out DIR`: the first `n` wrong images of `split` drawn into
/// DIR/misclassified.png; the line that says so.
fn draw_misclassified(
    n: usize,
    dir: &std::path::Path,
    ckpt: &checkpoint::Checkpoint,
    split: &data::Dataset,
    names: Option<&[String]>,
) -> Result<String> {
    use gpu_train::predict;
    let spec = &ckpt.params.spec;
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
        gpu_train::report::eval::misclassified_grid(&path, split, &indices, &wrong, names)?;
        format!(
            "misclassified: the first {} (true / predicted) drawn in {}",
            indices.len(),
            path.display()
        )
    };
    Ok(line)
}

/// `gpu-train predict`: every picture that can be read goes through one forward pass; the
/// others are reported on stderr and make the exit status 1.
fn run_predict(args: &PredictArgs) -> Result<i32> {
    let opts = gpu_train::predict::Options {
        top: args.top,
        json: args.json,
        show: args.show,
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let failed = gpu_train::predict::run(&args.weights, &args.images, opts, &mut out, &mut err)?;
    Ok(if failed > 0 { 1 } else { 0 })
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
        budget: args.budget,
    };
    let terminal = std::io::stderr().is_terminal();
    let hidden: Vec<String> = args.hidden.iter().map(usize::to_string).collect();
    let net = format!(
        "{}-{}-{}",
        mnist.train.input_width(),
        hidden.join("-"),
        mnist.train.classes()
    );
    let report = gradcheck::run(&config, mnist, &mut |event| match event {
        Event::Header(lines) => {
            lines
                .iter()
                .chain(&gradcheck::table_head())
                .for_each(|l| println!("{l}"));
        }
        // A priced (slow) row gets a line of its own, terminal or not: minutes on lavapipe.
        Event::Started {
            device,
            method,
            estimate_s: Some(est),
        } => eprintln!(
            "running {device} {} ({net}, batch {}; est. {})...",
            gradcheck::short(method),
            args.batch,
            gpu_train::fmt::seconds(est)
        ),
        Event::Started { device, method, .. } if terminal => {
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
