//! Deciding a run before anything is written: fresh or resumed, the flags checked against the
//! checkpoint, the data loaded.

use super::{default_iters, grad_parts, Plan, TrainRequest};
use crate::backend::GradMethod;
use crate::checkpoint::{self, Checkpoint};
use crate::data::{self, Mnist};
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Params};
use crate::train::{iters_per_epoch, Start, TrainConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        pending: ckpt.pending,
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
