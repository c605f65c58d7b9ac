//! The host driver: sampler -> backend -> gradient -> update, with an evaluation over the whole
//! training and test sets every `eval_every` iterations, as the chapter's training loop does.

use crate::backend::{Backend, Evaluation, GradMethod, Split};
use crate::data::{Sampler, SamplerKind};
use crate::error::{Error, Result};
use std::time::Instant;

/// Everything that decides a run (besides the data, the device and the precision).
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub batch: usize,
    pub lr: f64,
    pub iters: usize,
    pub seed: u64,
    pub eval_every: usize,
    pub grad: GradMethod,
    pub sampler: SamplerKind,
}

impl Default for TrainConfig {
    /// The chapter's configuration.
    fn default() -> Self {
        TrainConfig {
            batch: 100,
            lr: 0.1,
            iters: 10_000,
            seed: 0,
            eval_every: 600,
            grad: GradMethod::Numerical {
                strategy: crate::backend::PerturbStrategy::Incremental,
                h: crate::backend::DEFAULT_H,
            },
            sampler: SamplerKind::WithReplacement,
        }
    }
}

impl TrainConfig {
    /// Rejects settings that cannot train, naming the flag and the fix.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::config("--batch", "must be at least 1 (the chapter uses 100)"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config("--lr", format!("must be a positive number, got {}; the chapter uses 0.1", self.lr)));
        }
        if self.eval_every == 0 {
            return Err(Error::config("--eval-every", "must be at least 1 (the chapter evaluates every 600 iterations)"));
        }
        if let GradMethod::Numerical { h, .. } = self.grad {
            if !(h.is_finite() && h > 0.0) {
                return Err(Error::config("--h", format!("must be a positive number, got {h}; the chapter uses 1e-4")));
            }
        }
        Ok(())
    }
}

/// One evaluation: the batch loss at that iteration and accuracy over the whole splits.
#[derive(Debug, Clone, Copy)]
pub struct EvalRecord {
    /// Iterations done so far (0 = before any update... the chapter evaluates after step i).
    pub iter: usize,
    /// Mean loss of the iteration's batch, after its update (the chapter's train_loss_list).
    pub batch_loss: f64,
    pub train: Evaluation,
    pub test: Evaluation,
    /// Seconds since training started.
    pub seconds: f64,
}

/// What a run ends with.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub evals: Vec<EvalRecord>,
    pub seconds: f64,
    pub iters: usize,
}

impl TrainSummary {
    pub fn last(&self) -> Option<&EvalRecord> {
        self.evals.last()
    }
}

/// Runs the chapter's loop on `backend`, whose parameters must already be set. `on_eval` sees
/// each evaluation as it happens (the CLI prints it).
pub fn train(
    backend: &mut dyn Backend,
    train_size: usize,
    cfg: &TrainConfig,
    mut on_eval: impl FnMut(&EvalRecord),
) -> Result<TrainSummary> {
    cfg.validate()?;
    let mut sampler = Sampler::new(cfg.sampler, train_size, cfg.seed)?;
    let start = Instant::now();
    let mut evals = Vec::new();
    let mut batch = Vec::with_capacity(cfg.batch);
    for i in 0..cfg.iters {
        sampler.next_batch(cfg.batch, &mut batch)?;
        backend.set_batch(&batch)?;
        backend.step(cfg.grad, cfg.lr)?;
        let last = i + 1 == cfg.iters;
        if i % cfg.eval_every == 0 || last {
            let batch_loss = backend.batch_loss()?;
            if !batch_loss.is_finite() {
                return Err(diverged(i, batch_loss, cfg.lr));
            }
            let train = backend.evaluate(Split::Train)?;
            let test = backend.evaluate(Split::Test)?;
            let rec = EvalRecord { iter: i, batch_loss, train, test, seconds: start.elapsed().as_secs_f64() };
            on_eval(&rec);
            evals.push(rec);
        }
    }
    Ok(TrainSummary { evals, seconds: start.elapsed().as_secs_f64(), iters: cfg.iters })
}

fn diverged(iter: usize, loss: f64, lr: f64) -> Error {
    Error::Numerics(format!(
        "training diverged at iteration {iter}: the batch loss is {loss}; lower the learning rate (--lr {}, now {lr})",
        lr / 10.0
    ))
}
