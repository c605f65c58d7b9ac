//! The async core of `GpuBackend`: every method that reads the device back, as a future (see
//! `crate::wait`). The `Backend` trait's `*_async` methods are these; its blocking methods are
//! `wait::block` over them, so native and browser share one implementation.

use super::backend::{check_batch, check_h, numerical_pipelines, GpuBackend, Work};
use super::chunk;
use super::driver::{self, max_chunk_steps, Resident};
use crate::backend::{train_steps_one_by_one, GradMethod, StepsOutcome};
use crate::error::Result;
use crate::model::Params;

impl GpuBackend {
    /// The parameters, read back.
    pub(super) async fn read_params(&mut self) -> Result<Params> {
        let n = self.spec.num_params();
        let encoder = self.ctx.encoder("read parameters");
        let v: Vec<f32> = Self::read_back(
            &self.ctx,
            &self.staging,
            encoder,
            &self.params,
            n,
            "reading the parameters",
        )
        .await?;
        self.in_flight = None;
        Params::from_vec(&self.spec, v.into_iter().map(f64::from).collect())
    }

    /// The selected batch's mean loss at the current parameters.
    pub(super) async fn read_batch_loss(&mut self) -> Result<f64> {
        let encoder = self.record_batch(Work::Loss, "batch loss")?;
        let v: Vec<f32> = self
            .ctx
            .submit_and_read_async(encoder, &self.staging, 1, "computing the batch loss")
            .await?;
        self.in_flight = None;
        Ok(f64::from(v[0]))
    }

    /// The selected batch's gradient, read back.
    pub(super) async fn read_gradient(&mut self, method: GradMethod) -> Result<Vec<f64>> {
        let n = self.spec.num_params();
        let encoder = self.record_batch(Work::Gradient(method), "gradient")?;
        let v: Vec<f32> = self
            .ctx
            .submit_and_read_async(encoder, &self.staging, n, "computing the gradient")
            .await?;
        self.in_flight = None;
        Ok(v.into_iter().map(f64::from).collect())
    }

    /// `Backend::train_steps`: chunks through the chunked driver where the net allows (one
    /// read-back of the losses a chunk), else one step at a time (blocking: native only).
    pub(super) async fn run_steps(
        &mut self,
        batches: &[u32],
        batch: usize,
        method: GradMethod,
        lr: f64,
        losses: &mut Vec<f64>,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<StepsOutcome> {
        crate::backend::chunk_steps(batches, batch)?;
        let Some(fits) = chunk::fits(&self.spec, batch, self.ctx.loop_iteration_cap()) else {
            // Deeper nets (the numerical cache needs the copies of `record_cache_copies`), and
            // heads too long for the driver's loop cap, keep the step-at-a-time path.
            return train_steps_one_by_one(self, batches, batch, method, lr, losses, progress);
        };
        // A chunk's indices must fit one binding: longer chunks (big batches) go in pieces.
        let most = max_chunk_steps(&self.ctx, batch, self.chunk_steps);
        let mut done = 0;
        for piece in batches.chunks(most * batch) {
            let mut stop = false;
            let mut heard = |n| {
                let go = progress(done + n);
                stop |= !go;
                go
            };
            check_batch(batch, piece, self.train.len())?;
            let numerical = match method {
                GradMethod::Backprop => None,
                GradMethod::Numerical { strategy, h } => {
                    check_h(h)?;
                    let p = numerical_pipelines(&mut self.numerical, &self.spec, strategy)?;
                    Some((strategy, p, h as f32))
                }
            };
            let resident = Resident {
                ctx: &self.ctx,
                kernels: &self.kernels,
                spec: &self.spec,
                train: &self.train,
                params: &self.params,
                grad: &self.grad,
                subtract_losses: self.subtract_losses,
                chunk_steps: self.chunk_steps,
            };
            // Everything submitted before is ordered before this chunk, which is waited for.
            self.in_flight = None;
            let outcome = driver::train_chunk(
                &mut self.driver,
                &resident,
                numerical,
                piece,
                batch,
                lr,
                losses,
                &mut heard,
                fits,
            )
            .await?;
            if let Some(k) = outcome.diverged {
                return Ok(StepsOutcome {
                    done: done + k,
                    diverged: Some(done + k),
                });
            }
            done += outcome.done;
            if stop {
                break;
            }
        }
        Ok(StepsOutcome {
            done,
            diverged: None,
        })
    }
}
