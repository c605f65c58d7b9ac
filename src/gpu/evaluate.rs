//! `GpuBackend::evaluate`: a whole split's loss and accuracy in one submission, in chunks of
//! `eval_rows` rows that gather their own rows (no indices to upload), one read-back.

use super::backend::{chunks, GpuBackend};
use super::gather::{gather_rows, Rows};
use super::launch::{record_all, Operand};
use super::plan::PlanKey;
use crate::backend::{Evaluation, Split};
use crate::error::Result;

impl GpuBackend {
    pub(super) async fn evaluate_split(&mut self, split: Split) -> Result<Evaluation> {
        let test = split == Split::Test;
        let n = if test {
            self.test.len()
        } else {
            self.train.len()
        };
        if n == 0 {
            return Ok(Evaluation {
                loss: 0.0,
                correct: 0,
                count: 0,
            });
        }
        let parts = chunks(n, self.eval_rows);
        for &(start, rows) in &parts {
            self.eval_launches(test, start, rows)?;
        }
        // Every chunk in one submission: the launches of one command buffer run in order, so
        // the chunks may share buffers.
        let ctx = &self.ctx;
        let mut encoder = ctx.encoder("evaluate");
        encoder.clear_buffer(&self.correct, 0, None);
        for (c, &(start, rows)) in parts.iter().enumerate() {
            let plan = &self.plans[&eval_key(test, rows)];
            let gather = &self.eval_gathers[&(test, start, rows)];
            let launches = gather.iter().chain(&plan.forward).chain(&plan.loss_pass);
            record_all(ctx, &mut encoder, launches.chain([&plan.accuracy]));
            ctx.copy(
                &mut encoder,
                &plan.loss,
                0,
                &self.eval_means,
                (c * 4) as u64,
                4,
            );
        }
        let count = parts.len();
        let means = (count * 4) as u64;
        ctx.copy(&mut encoder, &self.eval_means, 0, &self.staging, 0, means);
        ctx.copy(&mut encoder, &self.correct, 0, &self.staging, means, 4);
        let read = ctx
            .submit_and_read_async::<u32>(encoder, &self.staging, count + 1, "evaluating")
            .await?;
        self.in_flight = None;
        // Chunk means back to a sum in f64, so the total adds no f32 round-off of its own.
        let loss: f64 = parts
            .iter()
            .zip(&read)
            .map(|(&(_, rows), &bits)| f64::from(f32::from_bits(bits)) * rows as f64)
            .sum();
        Ok(Evaluation {
            loss: loss / n as f64,
            correct: read[count] as usize,
            count: n,
        })
    }

    /// Builds (once) the plan of an evaluation chunk's size and the gather of its rows.
    fn eval_launches(&mut self, test: bool, start: usize, rows: usize) -> Result<()> {
        self.plan(eval_key(test, rows))?;
        if !self.eval_gathers.contains_key(&(test, start, rows)) {
            let plan = &self.plans[&eval_key(test, rows)];
            let split = if test { &self.test } else { &self.train };
            let gather = gather_rows(
                &self.kernels.gather,
                &self.ctx,
                split,
                rows,
                Rows::From(start),
                &plan.indices,
                &plan.x,
                Operand::whole(&plan.labels),
            )?;
            self.eval_gathers.insert((test, start, rows), gather);
        }
        Ok(())
    }
}

/// The plan key of an evaluation chunk (no backward pass).
fn eval_key(test: bool, rows: usize) -> PlanKey {
    PlanKey {
        test,
        rows,
        backward: false,
    }
}
