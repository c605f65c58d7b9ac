//! The host driver: sampler -> backend -> gradient -> update, with an evaluation over the whole
//! training and test sets every `eval_every` iterations, as the chapter's training loop does.

use crate::backend::{Backend, Evaluation, GradMethod, Split};
use crate::data::{Sampler, SamplerKind, SamplerState};
use crate::error::{Error, Result};
use std::time::Instant;

/// Everything that decides a run (besides the data, the device and the precision).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub batch: usize,
    pub lr: f64,
    pub iters: usize,
    pub seed: u64,
    pub eval_every: usize,
    pub grad: GradMethod,
    pub sampler: SamplerKind,
    /// Read the batch loss back every N iterations (the loss curve; 1 = every step, as the
    /// chapter's train_loss_list). Evaluations always read it.
    #[serde(default = "one")]
    pub loss_every: usize,
}

fn one() -> usize {
    1
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
            loss_every: 1,
        }
    }
}

impl TrainConfig {
    /// Rejects settings that cannot train, naming the flag and the fix.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::config(
                "--batch",
                "must be at least 1 (the chapter uses 100)",
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config(
                "--lr",
                format!(
                    "must be a positive number, got {}; the chapter uses 0.1",
                    crate::budget::flag_float(self.lr)
                ),
            ));
        }
        if self.loss_every == 0 {
            return Err(Error::config("--loss-every", "must be at least 1"));
        }
        if self.eval_every == 0 {
            return Err(Error::config(
                "--eval-every",
                "must be at least 1 (the chapter evaluates every 600 iterations)",
            ));
        }
        if let GradMethod::Numerical { h, .. } = self.grad {
            if !(h.is_finite() && h > 0.0) {
                return Err(Error::config(
                    "--h",
                    format!(
                        "must be a positive number, got {}; the chapter uses 1e-4",
                        crate::budget::flag_float(h)
                    ),
                ));
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
    /// Steps done when the run ended (== iters unless an observer stopped it).
    pub iters: usize,
    /// True when an observer asked to stop (Ctrl-C) before `iters`.
    pub interrupted: bool,
    /// The sampler's state when the run ended (what its checkpoint needs).
    pub sampler: SamplerState,
}

impl TrainSummary {
    pub fn last(&self) -> Option<&EvalRecord> {
        self.evals.last()
    }
}

/// Whether the driver goes on after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// What the driver reports as it runs. The CLI prints, writes metrics and checkpoints through
/// this; tests pass a closure over evaluations.
pub trait Observer {
    /// Before step `iter` (0-based) runs, with its batch already selected: where a gradient
    /// check looks at the step's gradient.
    fn before_step(
        &mut self,
        _iter: usize,
        _backend: &mut dyn Backend,
        _batch: &[u32],
    ) -> Result<()> {
        Ok(())
    }
    /// The batch loss after step `iter` (0-based), every `loss_every` steps.
    fn on_loss(&mut self, _iter: usize, _loss: f64) -> Result<()> {
        Ok(())
    }
    fn on_eval(&mut self, _rec: &EvalRecord) -> Result<()> {
        Ok(())
    }
    /// After `done` steps, with the sampler's state at that point (what a checkpoint needs).
    /// Returning `Control::Stop` ends the run cleanly.
    fn after_step(
        &mut self,
        _done: usize,
        _backend: &mut dyn Backend,
        _sampler: &SamplerState,
    ) -> Result<Control> {
        Ok(Control::Continue)
    }
}

impl<F: FnMut(&EvalRecord)> Observer for F {
    fn on_eval(&mut self, rec: &EvalRecord) -> Result<()> {
        self(rec);
        Ok(())
    }
}

/// Where a resumed run picks up: steps done and the sampler's state then.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub iteration: usize,
    pub sampler: SamplerState,
}

/// Runs the chapter's loop on `backend`, whose parameters must already be set.
pub fn train(
    backend: &mut dyn Backend,
    train_size: usize,
    cfg: &TrainConfig,
    mut observer: impl Observer,
) -> Result<TrainSummary> {
    train_from(backend, train_size, cfg, None, &mut observer)
}

/// `train`, optionally resuming: with `start`, the sampler continues from its saved state and
/// the loop from the saved iteration, so the run ends exactly where an uninterrupted one would.
pub fn train_from(
    backend: &mut dyn Backend,
    train_size: usize,
    cfg: &TrainConfig,
    start: Option<Start>,
    observer: &mut dyn Observer,
) -> Result<TrainSummary> {
    cfg.validate()?;
    let (first, mut sampler) = match start {
        None => (0, Sampler::new(cfg.sampler, train_size, cfg.seed)?),
        Some(s) => {
            if s.sampler.n != train_size {
                return Err(Error::config(
                    "--resume",
                    format!("the checkpoint sampled from {} training images, this data set has {train_size}: resume with the same data", s.sampler.n),
                ));
            }
            (s.iteration, Sampler::from_state(s.sampler)?)
        }
    };
    let clock = Instant::now();
    let mut evals = Vec::new();
    let mut batch = Vec::with_capacity(cfg.batch);
    let mut done = first;
    for i in first..cfg.iters {
        sampler.next_batch(cfg.batch, &mut batch)?;
        backend.set_batch(&batch)?;
        observer.before_step(i, backend, &batch)?;
        backend.step(cfg.grad, cfg.lr)?;
        done = i + 1;
        let last = done == cfg.iters;
        let evaluate = i % cfg.eval_every == 0 || last;
        if evaluate || i % cfg.loss_every == 0 {
            let batch_loss = backend.batch_loss()?;
            if !batch_loss.is_finite() {
                return Err(diverged(i, batch_loss, cfg.lr));
            }
            observer.on_loss(i, batch_loss)?;
            if evaluate {
                let train = backend.evaluate(Split::Train)?;
                let test = backend.evaluate(Split::Test)?;
                let rec = EvalRecord {
                    iter: i,
                    batch_loss,
                    train,
                    test,
                    seconds: clock.elapsed().as_secs_f64(),
                };
                observer.on_eval(&rec)?;
                evals.push(rec);
            }
        }
        if observer.after_step(done, backend, &sampler.state())? == Control::Stop && !last {
            return Ok(TrainSummary {
                evals,
                seconds: clock.elapsed().as_secs_f64(),
                iters: done,
                interrupted: true,
                sampler: sampler.state(),
            });
        }
    }
    Ok(TrainSummary {
        evals,
        seconds: clock.elapsed().as_secs_f64(),
        iters: done,
        interrupted: false,
        sampler: sampler.state(),
    })
}
fn diverged(iter: usize, loss: f64, lr: f64) -> Error {
    Error::Numerics(format!(
        "training diverged at iteration {iter}: the batch loss is {loss}; lower the learning rate (--lr {}, now {})",
        crate::budget::flag_float(lr / 10.0),
        crate::budget::flag_float(lr)
    ))
}
