//! The small observers of a run: metrics, checkpoints on a cadence, the reference check, the
//! terminal with its checks.

use super::{ChecksSummary, Ui};
use crate::backend::{Backend, GradMethod};
use crate::check::Checker;
use crate::checkpoint::{self, Checkpoint, StoredPrecision};
use crate::data::SamplerState;
use crate::error::Result;
use crate::model::Params;
use crate::run::{RunDir, RunSync};
use crate::train::{Control, EvalRecord, Observer, PendingLoss};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Writes the batch losses and the evaluations into the run folder.
pub(super) struct MetricsWriter<'a> {
    pub(super) run_dir: &'a mut RunDir,
    pub(super) loss_every: usize,
}

impl Observer for MetricsWriter<'_> {
    fn on_losses(&mut self, first: usize, losses: &[f64]) -> Result<()> {
        self.run_dir.record_losses(first, losses, self.loss_every)
    }
    fn on_eval(&mut self, rec: &EvalRecord) -> Result<()> {
        self.run_dir.record_eval(rec)
    }
}

/// Checkpoints: every `every` iterations, and at the pause after a Ctrl-C (then it stops the
/// run). Remembers the last pause, where parameters and sampler agree, for a checkpoint
/// written when something stops the run.
pub(super) struct Checkpointer<'a> {
    pub(super) every: Option<usize>,
    pub(super) interrupted: &'a AtomicBool,
    pub(super) template: Checkpoint,
    pub(super) precision: StoredPrecision,
    pub(super) path: PathBuf,
    /// The run's CSV files: fsynced before each checkpoint, so that what it covers is on the
    /// disk first and a resume after a kill finds every row up to it.
    pub(super) files: RunSync,
    pub(super) clock: web_time::Instant,
    pub(super) seconds0: f64,
    pub(super) last_pause: (usize, SamplerState),
    /// The batch losses since the last evaluation, as of the last pause.
    pub(super) pending: PendingLoss,
    pub(super) written: Option<usize>,
}

impl Checkpointer<'_> {
    pub(super) fn save(
        &mut self,
        done: usize,
        params: Params,
        sampler: &SamplerState,
    ) -> Result<()> {
        let mut ckpt = self.template.clone();
        ckpt.params = params;
        ckpt.iteration = done;
        ckpt.sampler = *sampler;
        ckpt.pending = self.pending;
        let seconds = self.seconds0 + self.clock.elapsed().as_secs_f64();
        ckpt.notes.insert("seconds".into(), format!("{seconds:.3}"));
        self.files.sync()?;
        checkpoint::save(&self.path, &ckpt, self.precision)?;
        self.written = Some(done);
        Ok(())
    }
}

impl Observer for Checkpointer<'_> {
    fn next_pause(&self, done: usize) -> Option<usize> {
        self.every.map(|n| (done / n + 1) * n)
    }
    fn pending_loss(&mut self, pending: PendingLoss) {
        self.pending = pending;
    }
    fn progress(&mut self, _done: usize) -> Control {
        if self.interrupted.load(Ordering::SeqCst) {
            Control::Stop
        } else {
            Control::Continue
        }
    }
    fn after_step(
        &mut self,
        done: usize,
        backend: &mut dyn Backend,
        sampler: &SamplerState,
    ) -> Result<Control> {
        self.last_pause = (done, *sampler);
        let stop = self.interrupted.load(Ordering::SeqCst);
        if stop || self.every.is_some_and(|n| done.is_multiple_of(n)) {
            let params = backend.params()?;
            self.save(done, params, sampler)?;
        }
        Ok(if stop {
            Control::Stop
        } else {
            Control::Continue
        })
    }
}

/// Re-computes the step's gradient on the f64 reference when due: at the run's first step and
/// at each evaluation by default, or every `every` steps. The first result is shown; the rest
/// are summed up at the end; a failure stops the run.
pub(super) struct ReferenceCheck {
    pub(super) checker: Checker,
    pub(super) every: Option<usize>,
    pub(super) eval_every: usize,
    pub(super) first: usize,
    pub(super) grad: GradMethod,
    pub(super) summary: ChecksSummary,
    pub(super) first_line: Option<String>,
}

impl ReferenceCheck {
    fn due(&self, iter: usize) -> bool {
        match self.every {
            Some(0) => false,
            Some(n) => iter.is_multiple_of(n),
            None => iter == self.first || iter.is_multiple_of(self.eval_every),
        }
    }
}

impl Observer for ReferenceCheck {
    fn next_pause(&self, done: usize) -> Option<usize> {
        match self.every {
            Some(n) if n > 0 => Some((done / n + 1) * n),
            _ => None,
        }
    }
    fn before_step(&mut self, iter: usize, backend: &mut dyn Backend, batch: &[u32]) -> Result<()> {
        if !self.due(iter) {
            return Ok(());
        }
        backend.set_batch(batch)?;
        let (total, tensors) = self.checker.check(iter, backend, batch, self.grad)?;
        self.summary.record(total);
        if self.summary.passed == 1 {
            let parts: Vec<String> = tensors
                .iter()
                .map(|t| format!("{} {:.1e}", t.name, t.relative))
                .collect();
            self.first_line = Some(format!(
                "check at iteration {iter}: gradient vs the f64 reference {total:.1e} ({})",
                parts.join(", ")
            ));
        }
        Ok(())
    }
}

/// The Ui as the run's observer, with the reference check in front of it: the first check's
/// result is shown as soon as it is made.
pub(super) struct UiWithChecks<'a, 'u> {
    pub(super) check: &'a mut Option<ReferenceCheck>,
    pub(super) ui: &'a mut (dyn Ui + 'u),
}

impl Observer for UiWithChecks<'_, '_> {
    fn next_pause(&self, done: usize) -> Option<usize> {
        let c = self.check.as_ref().and_then(|c| c.next_pause(done));
        [c, self.ui.next_pause(done)].into_iter().flatten().min()
    }
    fn before_step(&mut self, iter: usize, b: &mut dyn Backend, batch: &[u32]) -> Result<()> {
        if let Some(c) = self.check.as_mut() {
            c.before_step(iter, b, batch)?;
            if let Some(line) = c.first_line.take() {
                self.ui.say(&line);
            }
        }
        self.ui.before_step(iter, b, batch)
    }
    fn on_losses(&mut self, first: usize, losses: &[f64]) -> Result<()> {
        self.ui.on_losses(first, losses)
    }
    fn on_eval(&mut self, rec: &EvalRecord) -> Result<()> {
        self.ui.on_eval(rec)
    }
    fn progress(&mut self, done: usize) -> Control {
        self.ui.progress(done)
    }
    fn after_step(
        &mut self,
        done: usize,
        b: &mut dyn Backend,
        s: &SamplerState,
    ) -> Result<Control> {
        self.ui.after_step(done, b, s)
    }
}
