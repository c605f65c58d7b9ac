//! The host driver: sampler -> backend -> gradient -> update, with an evaluation over the whole
//! training and test sets every `eval_every` iterations, as the chapter's training loop does.
//!
//! Iterations are handed to the backend in chunks ([`Backend::train_steps`]): a chunk runs from
//! one pause to the next, where a pause is an evaluation, a point an observer asked for (a
//! checkpoint, a reference check) or the end. The sampler is deterministic, so a chunk's batches
//! are drawn up front; a GPU records them all and reads the losses back once.
//!
//! "Iteration N" everywhere means the parameters after N updates: the evaluation at iteration 0
//! is the initial net, and the batch loss of iteration N is step N's loss before its update.

use crate::backend::{Backend, Evaluation, GradMethod, Split};
use crate::data::{Sampler, SamplerKind, SamplerState};
use crate::error::{Error, Result};
use crate::wait::{ready, LocalFuture};
use web_time::Instant;

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
    /// Keep every Nth batch loss in the loss curve (1 = every step, as the chapter's
    /// train_loss_list). Every loss is computed and read back with its chunk either way.
    #[serde(default = "one")]
    pub loss_every: usize,
}

fn one() -> usize {
    1
}

impl Default for TrainConfig {
    /// The chapter's configuration (for full MNIST: 600 iterations are one epoch at batch 100).
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

/// The chapter's `iter_per_epoch = max(train_size / batch_size, 1)`.
pub fn iters_per_epoch(train_size: usize, batch: usize) -> usize {
    (train_size / batch.max(1)).max(1)
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
                    crate::fmt::number(self.lr)
                ),
            ));
        }
        if self.loss_every == 0 {
            return Err(Error::config("--loss-every", "must be at least 1"));
        }
        if self.eval_every == 0 {
            return Err(Error::config(
                "--eval-every",
                "must be at least 1 (the chapter evaluates once an epoch)",
            ));
        }
        if let GradMethod::Numerical { h, .. } = self.grad {
            if !(h.is_finite() && h > 0.0) {
                return Err(Error::config(
                    "--h",
                    format!(
                        "must be a positive number, got {}; the chapter uses 1e-4",
                        crate::fmt::number(h)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// One evaluation: loss and accuracy over the whole splits at iteration `iter`.
#[derive(Debug, Clone, Copy)]
pub struct EvalRecord {
    /// Updates done so far (0: the initial parameters).
    pub iter: usize,
    /// `iter` in epochs of the training set.
    pub epoch: f64,
    /// Mean of the batch losses since the previous evaluation (None at iteration 0).
    pub batch_loss: Option<f64>,
    pub train: Evaluation,
    pub test: Evaluation,
    /// Seconds of training so far (a resumed run continues the count).
    pub seconds: f64,
}

impl EvalRecord {
    /// This evaluation as a `--json` record (the page's records too): the keys of metrics.csv
    /// (docs/SCHEMA.md).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "iteration": self.iter,
            "epoch": self.epoch,
            "seconds": self.seconds,
            "batch_loss": self.batch_loss,
            "train_loss": self.train.loss,
            "train_acc": self.train.accuracy(),
            "test_loss": self.test.loss,
            "test_acc": self.test.accuracy(),
        })
    }
}

/// The batch losses since the last evaluation, not yet averaged into a metrics row: what
/// `batch_loss` at the next evaluation needs. A checkpoint carries it, so a resumed run's
/// next `batch_loss` is the uninterrupted run's. Summed one loss at a time, in order, so the
/// sum does not depend on where chunks (and so checkpoints) fall.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PendingLoss {
    pub sum: f64,
    pub count: usize,
}

impl PendingLoss {
    fn add(&mut self, losses: &[f64]) {
        for &l in losses {
            self.sum += l;
        }
        self.count += losses.len();
    }
    /// The mean, None when there is none.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Every iteration ran.
    Completed,
    /// An observer asked to stop (Ctrl-C).
    Interrupted,
    /// Training diverged at `iteration` (its update made the parameters non-finite, or the
    /// loss sat at its ceiling with accuracy at chance); the parameters are the last good ones.
    Diverged { iteration: usize, why: String },
}

/// What a run ends with.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub evals: Vec<EvalRecord>,
    /// Seconds of training, a resumed run's earlier seconds included.
    pub seconds: f64,
    /// Updates done when the run ended (== iters when completed).
    pub iters: usize,
    pub ending: Ending,
    /// The sampler's state after `iters` updates: what a checkpoint at the end needs.
    pub sampler: SamplerState,
    /// The batch losses after the last evaluation (also for a checkpoint at the end).
    pub pending: PendingLoss,
}

impl TrainSummary {
    pub fn last(&self) -> Option<&EvalRecord> {
        self.evals.last()
    }
    pub fn interrupted(&self) -> bool {
        self.ending == Ending::Interrupted
    }
    /// The best test accuracy of any evaluation.
    pub fn best_test_accuracy(&self) -> Option<f64> {
        self.evals
            .iter()
            .map(|r| r.test.accuracy())
            .max_by(f64::total_cmp)
    }
}

/// Whether the driver goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// What the driver reports as it runs. The run's own observers (metrics, checkpoints, reference
/// checks, Ctrl-C) and the terminal printer implement it; tests pass a closure over evaluations.
pub trait Observer {
    /// The first iteration count after `done` at which this observer needs the run paused (a
    /// checkpoint, a reference check); None: no wish.
    fn next_pause(&self, _done: usize) -> Option<usize> {
        None
    }
    /// At a pause, before step `iter` runs; `batch` is that step's batch (not yet selected on
    /// the backend).
    fn before_step(
        &mut self,
        _iter: usize,
        _backend: &mut dyn Backend,
        _batch: &[u32],
    ) -> Result<()> {
        Ok(())
    }
    /// `before_step` as a future: what the loop awaits at each pause. The default runs
    /// `before_step`; a front end that must await the device there (the page's gradient check
    /// reads the gradient back) or give its event loop a turn overrides this one.
    fn before_step_async<'a>(
        &'a mut self,
        iter: usize,
        backend: &'a mut dyn Backend,
        batch: &'a [u32],
    ) -> LocalFuture<'a, Result<()>> {
        ready(self.before_step(iter, backend, batch))
    }
    /// The batch losses of steps `first`, `first + 1`, ... (each before its update).
    fn on_losses(&mut self, _first: usize, _losses: &[f64]) -> Result<()> {
        Ok(())
    }
    fn on_eval(&mut self, _rec: &EvalRecord) -> Result<()> {
        Ok(())
    }
    /// During a chunk, after `done` updates were handed to the device; `Stop` ends the chunk
    /// early (Ctrl-C). Must be cheap.
    fn progress(&mut self, _done: usize) -> Control {
        Control::Continue
    }
    /// At a pause, just before [`after_step`](Self::after_step): the batch losses since the
    /// last evaluation (what a checkpoint needs for the next `batch_loss`).
    fn pending_loss(&mut self, _pending: PendingLoss) {}
    /// At a pause after `done` updates, with the sampler's state then (what a checkpoint
    /// needs). `Stop` ends the run cleanly.
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

/// Several observers as one: the earliest pause wins, a stop from any of them stops the run
/// (all of them are still called).
pub struct Observers<'a>(pub Vec<&'a mut dyn Observer>);

impl Observer for Observers<'_> {
    fn next_pause(&self, done: usize) -> Option<usize> {
        self.0.iter().filter_map(|o| o.next_pause(done)).min()
    }
    fn before_step(&mut self, iter: usize, b: &mut dyn Backend, batch: &[u32]) -> Result<()> {
        self.0
            .iter_mut()
            .try_for_each(|o| o.before_step(iter, b, batch))
    }
    fn before_step_async<'a>(
        &'a mut self,
        iter: usize,
        backend: &'a mut dyn Backend,
        batch: &'a [u32],
    ) -> LocalFuture<'a, Result<()>> {
        Box::pin(async move {
            for o in self.0.iter_mut() {
                o.before_step_async(iter, &mut *backend, batch).await?;
            }
            Ok(())
        })
    }
    fn on_losses(&mut self, first: usize, losses: &[f64]) -> Result<()> {
        self.0
            .iter_mut()
            .try_for_each(|o| o.on_losses(first, losses))
    }
    fn on_eval(&mut self, rec: &EvalRecord) -> Result<()> {
        self.0.iter_mut().try_for_each(|o| o.on_eval(rec))
    }
    fn pending_loss(&mut self, pending: PendingLoss) {
        for o in self.0.iter_mut() {
            o.pending_loss(pending);
        }
    }
    fn progress(&mut self, done: usize) -> Control {
        let mut c = Control::Continue;
        for o in self.0.iter_mut() {
            if o.progress(done) == Control::Stop {
                c = Control::Stop;
            }
        }
        c
    }
    fn after_step(
        &mut self,
        done: usize,
        b: &mut dyn Backend,
        s: &SamplerState,
    ) -> Result<Control> {
        let mut c = Control::Continue;
        for o in self.0.iter_mut() {
            if o.after_step(done, b, s)? == Control::Stop {
                c = Control::Stop;
            }
        }
        Ok(c)
    }
}

/// Where a resumed run picks up: steps done, the sampler's state then, and the seconds of
/// training already spent.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub iteration: usize,
    pub sampler: SamplerState,
    pub seconds: f64,
    /// The batch losses between the last evaluation and the checkpoint.
    pub pending: PendingLoss,
}

/// The most indices one chunk draws up front (16 MB); a longer stretch between pauses is split.
const MAX_CHUNK_INDICES: usize = 1 << 22;

/// -ln(1e-7): the cross entropy of a sample whose true class has probability 0, the most the
/// chapter's loss can be.
pub fn loss_ceiling() -> f64 {
    -(crate::backend::CEE_DELTA.ln())
}

/// A whole-set loss this close to the ceiling, with accuracy at chance, is a net that has
/// stopped learning (saturated by a far too large learning rate); two such evaluations in a row
/// stop the run. A poor but learning net (--lr 10 on the chapter's net: 80% test accuracy) is
/// far from both.
const STUCK_LOSS_FRACTION: f64 = 0.8;

fn is_stuck(eval: &Evaluation, classes: usize) -> bool {
    !eval.loss.is_finite()
        || (eval.loss >= STUCK_LOSS_FRACTION * loss_ceiling()
            && eval.accuracy() <= 1.5 / classes.max(1) as f64)
}

/// How the run's last evaluation compares with its first, when it is much worse: the loss
/// over the training set at its ceiling (as `is_stuck` means it) or above the first one, or
/// the accuracy fallen to chance. A warning for the final line, with the usual cause and fix
/// (a learning rate too large). `first` is (iteration, train loss, train accuracy) of the
/// run's first evaluation, earlier sessions of a resumed run included; None when the run ended
/// no worse, or where it began.
pub fn got_worse(
    first: (usize, f64, f64),
    last: &EvalRecord,
    classes: usize,
    lr: f64,
) -> Option<String> {
    let (first_iter, first_loss, first_acc) = first;
    if last.iter <= first_iter {
        return None;
    }
    let (loss, acc) = (last.train.loss, last.train.accuracy());
    let chance = 1.5 / classes.max(1) as f64;
    let mut why = Vec::new();
    if !loss.is_finite() || loss >= STUCK_LOSS_FRACTION * loss_ceiling() {
        why.push(format!("at its ceiling ({:.1})", loss_ceiling()));
    } else if loss > first_loss {
        why.push("above where it started".to_string());
    }
    if acc <= chance && acc < first_acc {
        why.push(format!("accuracy fell to chance ({:.1}%)", 100.0 * acc));
    }
    if why.is_empty() {
        return None;
    }
    Some(format!(
        "the run got worse: train loss {loss:.4} at iteration {} against {first_loss:.4} at \
         iteration {first_iter}, {}; the learning rate is likely too large: try a smaller --lr \
         (e.g. {}, now {})",
        last.iter,
        why.join(", "),
        crate::fmt::rounded(lr / 10.0),
        crate::fmt::number(lr)
    ))
}

/// One chunk, steps `done..end`: its batches drawn up front, the observers' look before it, the
/// steps on the backend, the losses reported. When the chunk stops early (Ctrl-C, divergence),
/// the sampler goes back to where the kept steps end.
async fn run_chunk(
    backend: &mut dyn Backend,
    sampler: &mut Sampler,
    cfg: &TrainConfig,
    (done, end): (usize, usize),
    observer: &mut dyn Observer,
    batches: &mut Vec<u32>,
    losses: &mut Vec<f64>,
) -> Result<crate::backend::StepsOutcome> {
    let before = sampler.clone();
    let mut one = Vec::with_capacity(cfg.batch);
    batches.clear();
    for _ in done..end {
        sampler.next_batch(cfg.batch, &mut one)?;
        batches.extend_from_slice(&one);
    }
    observer
        .before_step_async(done, &mut *backend, &batches[..cfg.batch])
        .await?;
    let outcome = {
        let mut progress = |k: usize| observer.progress(done + k) == Control::Continue;
        backend
            .train_steps_async(batches, cfg.batch, cfg.grad, cfg.lr, losses, &mut progress)
            .await?
    };
    observer.on_losses(done, losses)?;
    if outcome.done < end - done {
        *sampler = before;
        for _ in 0..outcome.done {
            sampler.next_batch(cfg.batch, &mut one)?;
        }
    }
    Ok(outcome)
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
/// The native blocking wrapper over [`train_from_async`], the one loop.
pub fn train_from(
    backend: &mut dyn Backend,
    train_size: usize,
    cfg: &TrainConfig,
    start: Option<Start>,
    observer: &mut dyn Observer,
) -> Result<TrainSummary> {
    crate::wait::block(train_from_async(backend, train_size, cfg, start, observer))
}

/// The chapter's loop, awaiting the backend's read-backs (and the observer at each pause): what
/// the page runs in the browser, and what `train_from` blocks on natively.
pub async fn train_from_async(
    backend: &mut dyn Backend,
    train_size: usize,
    cfg: &TrainConfig,
    start: Option<Start>,
    observer: &mut dyn Observer,
) -> Result<TrainSummary> {
    cfg.validate()?;
    let (first, mut sampler, seconds0, mut since_eval) = starting_point(start, train_size, cfg)?;
    let classes = backend.spec().classes;
    let max_chunk = (MAX_CHUNK_INDICES / cfg.batch).max(1);
    let clock = Clock {
        per_epoch: iters_per_epoch(train_size, cfg.batch) as f64,
        seconds0,
        started: Instant::now(),
    };
    let mut evals = Vec::new();
    let mut stuck = 0;
    if first == 0 {
        evals.push(
            clock
                .evaluate(backend, 0, &mut since_eval, observer)
                .await?,
        );
    }
    let mut done = first;
    let mut batches = Vec::new();
    let mut losses = Vec::new();
    let ending = loop {
        if done >= cfg.iters {
            break Ending::Completed;
        }
        let end = chunk_end(done, cfg, max_chunk, observer.next_pause(done));
        losses.clear();
        let outcome = run_chunk(
            &mut *backend,
            &mut sampler,
            cfg,
            (done, end),
            &mut *observer,
            &mut batches,
            &mut losses,
        )
        .await?;
        since_eval.add(&losses[..outcome.done.min(losses.len())]);
        done += outcome.done;
        if let Some(k) = outcome.diverged {
            break diverged_update(done, losses.get(k).copied());
        }
        if done % cfg.eval_every == 0 || done == cfg.iters {
            let rec = clock
                .evaluate(&mut *backend, done, &mut since_eval, &mut *observer)
                .await?;
            evals.push(rec);
            stuck = if is_stuck(&rec.train, classes) {
                stuck + 1
            } else {
                0
            };
            if stuck >= 2 {
                break saturated(done, &rec);
            }
        }
        observer.pending_loss(since_eval);
        let stop = observer.after_step(done, backend, &sampler.state())? == Control::Stop;
        if (stop || outcome.done < end - done) && done < cfg.iters {
            break Ending::Interrupted;
        }
    };
    Ok(TrainSummary {
        evals,
        seconds: clock.seconds(),
        iters: done,
        ending,
        sampler: sampler.state(),
        pending: since_eval,
    })
}

/// Where the chunk from `done` ends: the next evaluation, the run's end, the longest chunk or
/// the observers' next pause, whichever comes first.
fn chunk_end(done: usize, cfg: &TrainConfig, max_chunk: usize, pause: Option<usize>) -> usize {
    let next_eval = (done / cfg.eval_every + 1) * cfg.eval_every;
    let end = next_eval.min(cfg.iters).min(done + max_chunk);
    pause.filter(|&p| p > done).map_or(end, |p| end.min(p))
}

/// Where a run starts: iteration, sampler, seconds so far and the batch losses since the last
/// evaluation; fresh, or from a checkpoint's `start` (which must have sampled from this set).
fn starting_point(
    start: Option<Start>,
    train_size: usize,
    cfg: &TrainConfig,
) -> Result<(usize, Sampler, f64, PendingLoss)> {
    let Some(s) = start else {
        let sampler = Sampler::new(cfg.sampler, train_size, cfg.seed)?;
        return Ok((0, sampler, 0.0, PendingLoss::default()));
    };
    if s.sampler.n != train_size {
        return Err(Error::config(
            "--resume",
            format!("the checkpoint sampled from {} training images, this data set has {train_size}: resume with the same data", s.sampler.n),
        ));
    }
    Ok((
        s.iteration,
        Sampler::from_state(s.sampler)?,
        s.seconds,
        s.pending,
    ))
}

/// The run's clock (seconds of earlier sessions included) and its evaluations.
struct Clock {
    per_epoch: f64,
    seconds0: f64,
    started: Instant,
}

impl Clock {
    fn seconds(&self) -> f64 {
        self.seconds0 + self.started.elapsed().as_secs_f64()
    }

    /// Both splits evaluated after `done` iterations, the batch losses since the last
    /// evaluation averaged (and reset), the observer told.
    async fn evaluate(
        &self,
        backend: &mut dyn Backend,
        done: usize,
        since_eval: &mut PendingLoss,
        observer: &mut dyn Observer,
    ) -> Result<EvalRecord> {
        let rec = EvalRecord {
            iter: done,
            epoch: done as f64 / self.per_epoch,
            batch_loss: since_eval.mean(),
            train: backend.evaluate_async(Split::Train).await?,
            test: backend.evaluate_async(Split::Test).await?,
            seconds: self.seconds(),
        };
        *since_eval = PendingLoss::default();
        observer.on_eval(&rec)?;
        Ok(rec)
    }
}

/// The ending of a run whose update after iteration `done` made the parameters non-finite.
fn diverged_update(done: usize, loss_before: Option<f64>) -> Ending {
    Ending::Diverged {
        iteration: done,
        why: format!(
            "the update after it made the parameters non-finite (the batch loss before that update was {:.4})",
            loss_before.unwrap_or(f64::NAN)
        ),
    }
}

/// The ending of a run whose loss sat at its ceiling with accuracy at chance.
fn saturated(done: usize, rec: &EvalRecord) -> Ending {
    Ending::Diverged {
        iteration: done,
        why: format!(
            "the loss over the training set is {:.2}, at its ceiling ({:.1}), with accuracy at chance ({:.1}%) for two evaluations",
            rec.train.loss,
            loss_ceiling(),
            100.0 * rec.train.accuracy()
        ),
    }
}
