//! `GpuBackend`: the `Backend` trait on a wgpu device.
//!
//! Resident on the device from start-up: both splits as packed u8 (`gather::ResidentSplit`), the
//! flat parameter and gradient vectors, and per batch size a `Plan` (`gpu::plan`: the batch's
//! buffers with every launch already bound), built on first use. A step uploads only the B
//! indices and records gather, forward, backward and SGD into ONE command buffer; nothing is
//! read back unless asked for (`batch_loss`, `gradient`, `params`, `evaluate`). `train_steps`
//! runs many iterations per submission through the chunk state and `gpu::chunk::TrainPlan`
//! where the net allows; the timers bracket batch work with timestamps for the bench.

use super::context::Context;
use super::driver::ChunkDriver;
use super::gather::ResidentSplit;
use super::kernels::Kernels;
use super::launch::{record_all, Dispatch};
use super::numerical;
use super::plan::{Plan, PlanKey, Shared};
use super::sgd;
use super::timer::Timer;
use crate::backend::{
    Backend, DeviceCounters, Evaluation, GradMethod, PerturbStrategy, Split, StepsOutcome,
};
use crate::data::Mnist;
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Params};
use crate::wait::LocalFuture;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

/// Rows per evaluation launch unless the options say otherwise: big enough that a split takes
/// a handful of submissions, small enough that activations stay a few MiB.
pub const DEFAULT_EVAL_ROWS: usize = 2048;

/// The gather's grid has one workgroup row per batch row, so a batch is capped at the
/// portable per-dimension workgroup limit.
const MAX_ROWS: usize = 65535;

/// Knobs for splitting work by size (the defaults follow the device's limits; tests set them
/// small to exercise the split paths on small data), and kernel timing.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuOptions {
    /// Rows per device buffer of a resident split (default: as many as one binding holds).
    pub data_chunk_rows: Option<usize>,
    /// Rows per evaluation launch (default `DEFAULT_EVAL_ROWS`, fewer if the limits require).
    pub eval_chunk_rows: Option<usize>,
    /// Bracket each batch call's work with timestamp queries, where the device has them, for
    /// `last_device_seconds` (the bench). Off by default: training never reads them.
    pub timestamps: bool,
    /// `full` numerical gradients subtract two f32 losses per sample instead of computing the
    /// loss change: only to measure what the careful form buys (tests), never for training.
    pub subtract_losses: bool,
    /// Iterations per device chunk of `train_steps` at most (default: as many as one binding
    /// holds; tests set it small to exercise the split path).
    pub chunk_steps: Option<usize>,
}

/// The selected training batch and its plan (taken out of `plans` while it is selected).
#[derive(Debug)]
struct Batch {
    key: PlanKey,
    plan: Plan,
    /// X and labels of this batch are already on the device (gathered by an earlier submission).
    gathered: bool,
}

/// What one submission on the current batch does after the forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Work {
    Loss,
    Gradient(GradMethod),
    Step(GradMethod),
}

pub struct GpuBackend {
    pub(super) ctx: Arc<Context>,
    pub(super) kernels: Kernels,
    pub(super) spec: MlpSpec,
    pub(super) train: ResidentSplit,
    pub(super) test: ResidentSplit,
    pub(super) params: wgpu::Buffer,
    pub(super) grad: wgpu::Buffer,
    /// The correct-count accumulator of evaluations (one atomic u32).
    pub(super) correct: wgpu::Buffer,
    /// Mean loss of each evaluation chunk.
    pub(super) eval_means: wgpu::Buffer,
    /// Read-back buffer, reused: max(parameters, evaluation chunks + 1) elements.
    pub(super) staging: wgpu::Buffer,
    sgd: Dispatch,
    lr: Option<f32>,
    pub(super) eval_rows: usize,
    /// The plans of every batch size used, but the selected batch's.
    pub(super) plans: HashMap<PlanKey, Plan>,
    batch: Option<Batch>,
    /// The last step's submission, waited for before the next one is submitted, so at most two
    /// steps are queued and an error surfaces one step late at most.
    pub(super) in_flight: Option<wgpu::SubmissionIndex>,
    /// Timestamps around each batch call's work, when asked for (GpuOptions::timestamps) and
    /// the device has them.
    timer: Option<Timer>,
    /// GpuOptions::subtract_losses.
    pub(super) subtract_losses: bool,
    /// GpuOptions::chunk_steps.
    pub(super) chunk_steps: Option<usize>,
    /// The numerical gradient's pipelines, specialized to the model, built on first use of
    /// each strategy.
    pub(super) numerical: HashMap<PerturbStrategy, numerical::Pipelines>,
    /// `train_steps`' buffers and launches (nets with one hidden layer), made on first use.
    pub(super) driver: Option<ChunkDriver>,
    /// The gathers of each evaluation chunk (split, first row, rows), built on first use.
    pub(super) eval_gathers: HashMap<(bool, usize, usize), Vec<Dispatch>>,
}

/// Splits `n` rows into nearly equal chunks of at most `max` rows: (start, rows) each.
pub(super) fn chunks(n: usize, max: usize) -> Vec<(usize, usize)> {
    let count = n.div_ceil(max.max(1)).max(1);
    let per = n.div_ceil(count).max(1);
    (0..n)
        .step_by(per)
        .map(|start| (start, per.min(n - start)))
        .collect()
}

/// The checks a training batch passes on either path (`set_batch`, and each chunk of
/// `train_steps`): batches of at most `MAX_ROWS` rows, every index (of one batch or of a chunk's
/// batches back to back) inside the training set of `n` rows.
pub(super) fn check_batch(rows: usize, indices: &[u32], n: usize) -> Result<()> {
    if rows > MAX_ROWS {
        return Err(Error::config(
            "--batch",
            format!("{rows} rows; the GPU backend takes at most {MAX_ROWS}"),
        ));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i as usize >= n) {
        return Err(Error::config(
            "batch",
            format!("index {bad} is outside the training set of {n}"),
        ));
    }
    Ok(())
}

/// The numerical gradient's step `h`, checked on either path: a positive finite number.
pub(super) fn check_h(h: f64) -> Result<()> {
    if !(h.is_finite() && h > 0.0) {
        return Err(Error::config(
            "--h",
            format!("must be a positive number, got {h}"),
        ));
    }
    Ok(())
}

impl GpuBackend {
    /// Uploads the data set and builds the kernels; `ctx` is a `Context` or an `Arc` of one
    /// (several backends may share a device).
    pub fn new(ctx: impl Into<Arc<Context>>, spec: MlpSpec, data: Arc<Mnist>) -> Result<Self> {
        Self::with_options(ctx, spec, data, GpuOptions::default())
    }

    pub fn with_options(
        ctx: impl Into<Arc<Context>>,
        spec: MlpSpec,
        data: Arc<Mnist>,
        options: GpuOptions,
    ) -> Result<Self> {
        let ctx: Arc<Context> = ctx.into();
        crate::backend::check_spec_fits(&spec, &data)?;
        let kernels = Kernels::new(&ctx)?;
        // The non-zero index only where the training plan's sparse first layer can use it
        // (one hidden layer; it is 37 MB for full MNIST).
        let sparse = super::sparse::wanted(&spec, ctx.loop_iteration_cap());
        let train =
            ResidentSplit::upload(&ctx, "train", &data.train, options.data_chunk_rows, sparse)?;
        let test = ResidentSplit::upload(&ctx, "test", &data.test, options.data_chunk_rows, false)?;
        let n = spec.num_params();
        let params = ctx.storage("parameters", n)?;
        let grad = ctx.storage("gradient", n)?;
        let correct = ctx.storage("correct count", 1)?;
        // Evaluation rows: capped so the widest activation of a chunk fits one binding.
        let widest = spec.sizes().into_iter().max().unwrap_or(1);
        let by_limit = (ctx.max_binding_bytes() as usize / (4 * widest)).max(1);
        let eval_rows = options
            .eval_chunk_rows
            .unwrap_or(DEFAULT_EVAL_ROWS)
            .min(by_limit)
            .clamp(1, MAX_ROWS);
        let max_chunks = chunks(train.len(), eval_rows)
            .len()
            .max(chunks(test.len(), eval_rows).len());
        let eval_means = ctx.storage("evaluation chunk losses", max_chunks)?;
        let staging = ctx.staging("read-back", n.max(max_chunks + 1));
        let sgd = sgd::sgd(&kernels.sgd, &ctx, n, 0.0, &params, &grad)?;
        ctx.check("uploading the data set")?;
        let timer = if options.timestamps {
            Timer::new(&ctx)
        } else {
            None
        };
        Ok(GpuBackend {
            ctx,
            kernels,
            spec,
            train,
            test,
            params,
            grad,
            correct,
            eval_means,
            staging,
            sgd,
            lr: None,
            eval_rows,
            plans: HashMap::new(),
            batch: None,
            in_flight: None,
            timer,
            subtract_losses: options.subtract_losses,
            chunk_steps: options.chunk_steps,
            numerical: HashMap::new(),
            driver: None,
            eval_gathers: HashMap::new(),
        })
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Device buffers holding each split (1 unless a split is larger than one binding).
    pub fn data_chunks(&self) -> (usize, usize) {
        (self.train.chunk_count(), self.test.chunk_count())
    }

    /// A new plan for batches of `key`.
    fn new_plan(&self, key: PlanKey) -> Result<Plan> {
        let shared = Shared {
            ctx: &self.ctx,
            kernels: &self.kernels,
            spec: &self.spec,
            params: &self.params,
            grad: &self.grad,
            correct: &self.correct,
        };
        let split = if key.test { &self.test } else { &self.train };
        Plan::new(&shared, Some(split), key.rows, key.backward)
    }

    /// The plan for `key` (an evaluation chunk's), built on first use (once per size).
    pub(super) fn plan(&mut self, key: PlanKey) -> Result<&mut Plan> {
        let plan = match self.plans.remove(&key) {
            Some(plan) => plan,
            None => self.new_plan(key)?,
        };
        Ok(self.plans.entry(key).or_insert(plan))
    }

    /// The selected batch's plan for `key`: the one already selected, else one kept from an
    /// earlier batch of that size (the previous selection goes back to `plans`), else a new one.
    /// A plan that cannot be built leaves the previous selection as it was.
    fn select(&mut self, key: PlanKey) -> Result<Plan> {
        if self.batch.as_ref().is_some_and(|b| b.key == key) {
            if let Some(b) = self.batch.take() {
                return Ok(b.plan);
            }
        }
        let plan = match self.plans.remove(&key) {
            Some(plan) => plan,
            None => self.new_plan(key)?,
        };
        if let Some(b) = self.batch.take() {
            self.plans.insert(b.key, b.plan);
        }
        Ok(plan)
    }

    /// Records the work on the current batch into one encoder: gather (first use of the batch
    /// only), forward, then what `work` needs; the loss (`Work::Loss`) or the gradient
    /// (`Work::Gradient`) is copied into the staging buffer for `submit_and_read`.
    pub(super) fn record_batch(&mut self, work: Work, what: &str) -> Result<wgpu::CommandEncoder> {
        let ctx = &self.ctx;
        let batch = self
            .batch
            .as_mut()
            .ok_or_else(|| Error::config("batch", "no batch selected: call set_batch first"))?;
        let mut encoder = ctx.encoder(what);
        if let Some(t) = &self.timer {
            t.mark(&mut encoder, 0);
        }
        let plan = &mut batch.plan;
        let gather: &[Dispatch] = if batch.gathered { &[] } else { &plan.gather };
        let sgd = matches!(work, Work::Step(_)).then_some(&self.sgd);
        let method = match work {
            Work::Loss => None,
            Work::Gradient(m) | Work::Step(m) => Some(m),
        };
        match method {
            None => record_all(
                ctx,
                &mut encoder,
                gather.iter().chain(&plan.forward).chain(&plan.loss_pass),
            ),
            Some(GradMethod::Backprop) => record_all(
                ctx,
                &mut encoder,
                gather
                    .iter()
                    .chain(&plan.forward)
                    .chain(&plan.backward)
                    .chain(sgd),
            ),
            Some(GradMethod::Numerical { strategy, h }) => {
                check_h(h)?;
                let pipelines = numerical_pipelines(&mut self.numerical, &self.spec, strategy)?;
                let num = numerical::launches(
                    &mut plan.numerical,
                    pipelines,
                    ctx,
                    &self.spec,
                    plan.rows,
                    strategy,
                    h as f32,
                    self.subtract_losses,
                    [&self.params, &plan.x, &self.grad],
                    None,
                )?;
                // The unperturbed pass, then its cache assembled for the perturbation kernels
                // (copies sit between compute passes), then the perturbations and the update.
                record_all(ctx, &mut encoder, gather.iter().chain(&plan.forward));
                num.record_cache_copies(
                    ctx,
                    &mut encoder,
                    &plan.labels,
                    &plan.pre,
                    &plan.post,
                    &plan.probs,
                );
                record_all(ctx, &mut encoder, num.launches().iter().chain(sgd));
            }
        }
        batch.gathered = true;
        if let Some(t) = &mut self.timer {
            t.finish(&mut encoder);
            t.recorded = true;
        }
        match work {
            Work::Loss => ctx.copy(&mut encoder, &plan.loss, 0, &self.staging, 0, 4),
            Work::Gradient(_) => {
                let bytes = (self.spec.num_params() * 4) as u64;
                ctx.copy(&mut encoder, &self.grad, 0, &self.staging, 0, bytes);
            }
            Work::Step(_) => {}
        }
        Ok(encoder)
    }

    /// Submits `encoder` after copying `len` elements of `src` into the staging buffer, and
    /// reads them back.
    pub(super) async fn read_back<T: bytemuck::Pod>(
        ctx: &Context,
        staging: &wgpu::Buffer,
        mut encoder: wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        len: usize,
        what: &str,
    ) -> Result<Vec<T>> {
        ctx.copy(
            &mut encoder,
            src,
            0,
            staging,
            0,
            (len * std::mem::size_of::<T>()) as u64,
        );
        ctx.submit_and_read_async(encoder, staging, len, what).await
    }

    /// Whether training chunks run the first layer over the resident non-zero pixels
    /// (shaders/sparse.wgsl) rather than the dense matmul.
    pub fn sparse_first_layer(&self) -> bool {
        super::sparse::applies(
            &self.spec,
            self.train.nonzero(),
            self.ctx.loop_iteration_cap(),
        )
    }

    /// The dispatches one numerical gradient of the selected batch takes (once built).
    pub fn numerical_dispatches(&self, strategy: PerturbStrategy) -> Option<usize> {
        let batch = self.batch.as_ref()?;
        batch
            .plan
            .numerical
            .get(&strategy)
            .map(|n| n.launches().len())
    }

    /// The gradient buffer as the last step left it (a chunk's last iteration, or `gradient`),
    /// read back: what the chunked path computed, for tests.
    pub fn last_gradient(&mut self) -> Result<Vec<f64>> {
        let n = self.spec.num_params();
        let encoder = self.ctx.encoder("read the gradient");
        let v: Vec<f32> = crate::wait::block(Self::read_back(
            &self.ctx,
            &self.staging,
            encoder,
            &self.grad,
            n,
            "reading the gradient",
        ))?;
        self.in_flight = None;
        Ok(v.into_iter().map(f64::from).collect())
    }
}

/// The numerical pipelines of `strategy`, specialized to `spec`, built on first use.
pub(super) fn numerical_pipelines<'a>(
    pipelines: &'a mut HashMap<PerturbStrategy, numerical::Pipelines>,
    spec: &MlpSpec,
    strategy: PerturbStrategy,
) -> Result<&'a numerical::Pipelines> {
    Ok(match pipelines.entry(strategy) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(v) => v.insert(numerical::pipelines(spec, strategy)?),
    })
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        format!("gpu {}", self.ctx.describe())
    }

    fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    fn set_params(&mut self, params: &Params) -> Result<()> {
        crate::backend::check_params_fit(&self.spec, params)?;
        self.ctx.write(&self.params, 0, &params.to_f32());
        self.ctx.check("uploading the parameters")
    }

    fn params(&mut self) -> Result<Params> {
        crate::wait::block(self.read_params())
    }

    fn set_batch(&mut self, indices: &[u32]) -> Result<()> {
        if indices.is_empty() {
            return Err(Error::config(
                "--batch",
                "the batch is empty; use --batch 1 or more",
            ));
        }
        check_batch(indices.len(), indices, self.train.len())?;
        let key = PlanKey {
            test: false,
            rows: indices.len(),
            backward: true,
        };
        let plan = self.select(key)?;
        self.ctx.write(&plan.indices, 0, indices);
        self.batch = Some(Batch {
            key,
            plan,
            gathered: false,
        });
        Ok(())
    }

    fn batch_loss(&mut self) -> Result<f64> {
        crate::wait::block(self.read_batch_loss())
    }

    fn gradient(&mut self, method: GradMethod) -> Result<Vec<f64>> {
        crate::wait::block(self.read_gradient(method))
    }

    fn step(&mut self, method: GradMethod, lr: f64) -> Result<()> {
        let lr = lr as f32;
        if self.lr != Some(lr) {
            sgd::set_lr(&self.ctx, &self.sgd, lr);
            self.lr = Some(lr);
        }
        let encoder = self.record_batch(Work::Step(method), "training step")?;
        let index = self.ctx.submit(encoder, "training step")?;
        if let Some(previous) = self.in_flight.replace(index) {
            self.ctx.wait(previous, "training step")?;
        }
        Ok(())
    }

    fn train_steps(
        &mut self,
        batches: &[u32],
        batch: usize,
        method: GradMethod,
        lr: f64,
        losses: &mut Vec<f64>,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<StepsOutcome> {
        crate::wait::block(self.run_steps(batches, batch, method, lr, losses, progress))
    }

    fn counters(&self) -> Option<DeviceCounters> {
        Some(self.ctx.counters())
    }

    fn last_device_seconds(&mut self) -> Result<Option<f64>> {
        let Some(t) = &mut self.timer else {
            return Ok(None);
        };
        if !std::mem::take(&mut t.recorded) {
            return Ok(None);
        }
        // The batch call waited for its submission (it read its result back), so the copies
        // into the staging buffer are done; a step still in flight is waited for first.
        if let Some(index) = self.in_flight.take() {
            self.ctx.wait(index, "timestamps")?;
        }
        let ticks: Vec<u64> = self
            .ctx
            .read_finished(&t.staging, 2, "reading the timestamps")?;
        Ok(Some(
            ticks[1].saturating_sub(ticks[0]) as f64 * t.period_ns * 1e-9,
        ))
    }

    fn evaluate(&mut self, split: Split) -> Result<Evaluation> {
        crate::wait::block(self.evaluate_split(split))
    }

    fn params_async(&mut self) -> LocalFuture<'_, Result<Params>> {
        Box::pin(self.read_params())
    }

    fn batch_loss_async(&mut self) -> LocalFuture<'_, Result<f64>> {
        Box::pin(self.read_batch_loss())
    }

    fn gradient_async(&mut self, method: GradMethod) -> LocalFuture<'_, Result<Vec<f64>>> {
        Box::pin(self.read_gradient(method))
    }

    fn evaluate_async(&mut self, split: Split) -> LocalFuture<'_, Result<Evaluation>> {
        Box::pin(self.evaluate_split(split))
    }

    fn train_steps_async<'a>(
        &'a mut self,
        batches: &'a [u32],
        batch: usize,
        method: GradMethod,
        lr: f64,
        losses: &'a mut Vec<f64>,
        progress: &'a mut dyn FnMut(usize) -> bool,
    ) -> LocalFuture<'a, Result<StepsOutcome>> {
        Box::pin(self.run_steps(batches, batch, method, lr, losses, progress))
    }
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunks_cover_every_row_once_in_near_equal_parts() {
        assert_eq!(
            chunks(10000, 2048),
            vec![
                (0, 2000),
                (2000, 2000),
                (4000, 2000),
                (6000, 2000),
                (8000, 2000)
            ]
        );
        assert_eq!(chunks(2000, 2048), vec![(0, 2000)]);
        assert_eq!(chunks(7, 3), vec![(0, 3), (3, 3), (6, 1)]);
        assert_eq!(chunks(1, 5), vec![(0, 1)]);
    }
}
