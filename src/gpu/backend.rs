//! `GpuBackend`: the `Backend` trait on a wgpu device.
//!
//! Resident on the device from start-up: both splits as packed u8 (`gather::ResidentSplit`), the
//! flat parameter and gradient vectors, and per batch size a `Plan` (`gpu::plan`: the batch's
//! buffers with every launch already bound), built on first use. A step uploads only the B
//! indices and records gather, forward, backward and SGD into ONE command buffer; nothing is
//! read back unless asked for (`batch_loss`, `gradient`, `params`, `evaluate`). `train_steps`
//! runs many iterations per submission through the chunk state and `gpu::chunk::TrainPlan`
//! where the net allows; the timers bracket batch work with timestamps for the bench.

use super::chunk::{self, ChunkBuffers, TrainPlan, STEPS_PER_SUBMISSION};
use super::context::Context;
use super::gather::{gather_rows, ResidentSplit, Rows};
use super::kernels::Kernels;
use super::launch::{record_all, Dispatch, Operand};
use super::numerical;
use super::plan::{Plan, PlanKey, Shared};
use super::sgd;
use crate::backend::{
    train_steps_one_by_one, Backend, DeviceCounters, Evaluation, GradMethod, PerturbStrategy,
    Split, StepsOutcome,
};
use crate::data::Mnist;
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Params};
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

/// The selected training batch.
#[derive(Debug, Clone, Copy)]
struct Batch {
    key: PlanKey,
    /// X and labels of this batch are already on the device (gathered by an earlier submission).
    gathered: bool,
}

/// What one submission on the current batch does after the forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Work {
    Loss,
    Gradient(GradMethod),
    Step(GradMethod),
}

pub struct GpuBackend {
    ctx: Arc<Context>,
    kernels: Kernels,
    spec: MlpSpec,
    train: ResidentSplit,
    test: ResidentSplit,
    params: wgpu::Buffer,
    grad: wgpu::Buffer,
    /// The correct-count accumulator of evaluations (one atomic u32).
    correct: wgpu::Buffer,
    /// Mean loss of each evaluation chunk.
    eval_means: wgpu::Buffer,
    /// Read-back buffer, reused: max(parameters, evaluation chunks + 1) elements.
    staging: wgpu::Buffer,
    sgd: Dispatch,
    lr: Option<f32>,
    eval_rows: usize,
    plans: HashMap<PlanKey, Plan>,
    batch: Option<Batch>,
    /// The last step's submission, waited for before the next one is submitted, so at most two
    /// steps are queued and an error surfaces one step late at most.
    in_flight: Option<wgpu::SubmissionIndex>,
    /// Timestamps around each batch call's work, when asked for (GpuOptions::timestamps) and
    /// the device has them.
    timer: Option<Timer>,
    /// GpuOptions::subtract_losses.
    subtract_losses: bool,
    /// GpuOptions::chunk_steps.
    chunk_steps: Option<usize>,
    /// The numerical gradient's pipelines, specialized to the model, built on first use of
    /// each strategy.
    numerical: HashMap<PerturbStrategy, numerical::Pipelines>,
    /// `train_steps`' buffers, made on its first call and grown for a longer chunk only.
    chunk: Option<ChunkState>,
    /// `train_steps`' launches per batch size (bound to `chunk`'s buffers).
    train_plans: HashMap<usize, TrainPlan>,
    /// The gathers of each evaluation chunk (split, first row, rows), built on first use.
    eval_gathers: HashMap<(bool, usize, usize), Vec<Dispatch>>,
}

/// The device buffers of a training chunk.
#[derive(Debug)]
struct ChunkState {
    /// Iterations the buffers hold (the chunk's batches, plus one for the final check).
    steps: usize,
    /// Indices (u32 words) the chunk buffer holds.
    words: usize,
    /// Word 0 the iteration, then the batches back to back.
    chunk: wgpu::Buffer,
    losses: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// The parameters the chunk started from, put back when an update diverges.
    start: wgpu::Buffer,
}

/// Chunks at least this long fit the buffers made on the first call (the driver's chunks are
/// evaluation intervals, 600 iterations by default), so they are not remade as chunks vary.
const MIN_CHUNK_STEPS: usize = 1024;

/// Two timestamps bracketing the work recorded for one batch call (an empty compute pass
/// before, one after), resolved and copied out in the same submission.
#[derive(Debug)]
struct Timer {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    staging: wgpu::Buffer,
    period_ns: f64,
    /// Whether the last recorded batch work carried the timestamps.
    recorded: bool,
}

impl Timer {
    fn new(ctx: &Context) -> Option<Timer> {
        if !ctx.has_timestamps() {
            return None;
        }
        let device = ctx.device();
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        Some(Timer {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("batch work timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolved: buffer(
                "timestamps resolved",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            staging: buffer(
                "timestamps read-back",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            period_ns: f64::from(ctx.queue().get_timestamp_period()),
            recorded: false,
        })
    }

    /// An empty compute pass that writes timestamp `index` at its beginning (0) or end (1).
    fn mark(&self, encoder: &mut wgpu::CommandEncoder, index: u32) {
        let _pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("timestamp"),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &self.queries,
                beginning_of_pass_write_index: (index == 0).then_some(0),
                end_of_pass_write_index: (index == 1).then_some(1),
            }),
        });
    }

    fn finish(&self, encoder: &mut wgpu::CommandEncoder) {
        self.mark(encoder, 1);
        encoder.resolve_query_set(&self.queries, 0..2, &self.resolved, 0);
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.staging, 0, 16);
    }
}

/// Splits `n` rows into nearly equal chunks of at most `max` rows: (start, rows) each.
fn chunks(n: usize, max: usize) -> Vec<(usize, usize)> {
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
fn check_batch(rows: usize, indices: &[u32], n: usize) -> Result<()> {
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
fn check_h(h: f64) -> Result<()> {
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
            chunk: None,
            train_plans: HashMap::new(),
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

    /// The plan for `key`, built on first use (once per batch size).
    fn plan(&mut self, key: PlanKey) -> Result<()> {
        if !self.plans.contains_key(&key) {
            let shared = Shared {
                ctx: &self.ctx,
                kernels: &self.kernels,
                spec: &self.spec,
                params: &self.params,
                grad: &self.grad,
                correct: &self.correct,
            };
            let split = if key.test { &self.test } else { &self.train };
            let plan = Plan::new(&shared, split, key.rows, key.backward)?;
            self.plans.insert(key, plan);
        }
        Ok(())
    }

    /// Records the work on the current batch into one encoder: gather (first use of the batch
    /// only), forward, then what `work` needs.
    fn record_batch(&mut self, work: Work, what: &str) -> Result<(wgpu::CommandEncoder, PlanKey)> {
        let batch = self
            .batch
            .as_mut()
            .ok_or_else(|| Error::config("batch", "no batch selected: call set_batch first"))?;
        let plan = self
            .plans
            .get(&batch.key)
            .ok_or_else(|| Error::Gpu("the batch's plan is missing (a bug)".into()))?;
        let mut encoder = self.ctx.encoder(what);
        if let Some(t) = &self.timer {
            t.mark(&mut encoder, 0);
        }
        let gather: &[Dispatch] = if batch.gathered { &[] } else { &plan.gather };
        let sgd = matches!(work, Work::Step(_)).then_some(&self.sgd);
        match work {
            Work::Loss => record_all(
                &self.ctx,
                &mut encoder,
                gather.iter().chain(&plan.forward).chain(&plan.loss_pass),
            ),
            Work::Gradient(GradMethod::Backprop) | Work::Step(GradMethod::Backprop) => record_all(
                &self.ctx,
                &mut encoder,
                gather
                    .iter()
                    .chain(&plan.forward)
                    .chain(&plan.backward)
                    .chain(sgd),
            ),
            Work::Gradient(GradMethod::Numerical { strategy, .. })
            | Work::Step(GradMethod::Numerical { strategy, .. }) => {
                // The unperturbed pass, then its cache assembled for the perturbation kernels
                // (copies sit between compute passes), then the perturbations and the update.
                let num = plan.numerical.get(&strategy).ok_or_else(|| {
                    Error::Gpu("the numerical gradient's plan is missing (a bug)".into())
                })?;
                record_all(&self.ctx, &mut encoder, gather.iter().chain(&plan.forward));
                num.record_cache_copies(
                    &self.ctx,
                    &mut encoder,
                    &plan.labels,
                    &plan.pre,
                    &plan.post,
                    &plan.probs,
                );
                record_all(&self.ctx, &mut encoder, num.launches().iter().chain(sgd));
            }
        }
        batch.gathered = true;
        if let Some(t) = &mut self.timer {
            t.finish(&mut encoder);
            t.recorded = true;
        }
        Ok((encoder, batch.key))
    }

    /// Submits `encoder` after copying `len` elements of `src` into the staging buffer, and
    /// reads them back.
    fn read_back<T: bytemuck::Pod>(
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
        ctx.submit_and_read(encoder, staging, len, what)
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
        let key = self.batch.as_ref()?.key;
        self.plans
            .get(&key)?
            .numerical
            .get(&strategy)
            .map(|n| n.launches().len())
    }

    /// Builds what `method` needs on the selected batch's plan: the numerical gradient's
    /// launches (once per batch size and strategy), with the current h.
    fn prepare(&mut self, method: GradMethod) -> Result<()> {
        let GradMethod::Numerical { strategy, h } = method else {
            return Ok(());
        };
        check_h(h)?;
        let key = self
            .batch
            .as_ref()
            .ok_or_else(|| Error::config("batch", "no batch selected: call set_batch first"))?
            .key;
        self.numerical_pipelines(strategy)?;
        let kernels = &self.numerical[&strategy];
        let plan = self
            .plans
            .get_mut(&key)
            .ok_or_else(|| Error::Gpu("the batch's plan is missing (a bug)".into()))?;
        if !plan.numerical.contains_key(&strategy) {
            let built = numerical::plan(
                kernels,
                &self.ctx,
                &self.spec,
                plan.rows,
                strategy,
                h as f32,
                self.subtract_losses,
                &self.params,
                &plan.x,
                &self.grad,
                None,
            )?;
            self.ctx
                .check("building the numerical gradient's launches")?;
            plan.numerical.insert(strategy, built);
        }
        if let Some(num) = plan.numerical.get_mut(&strategy) {
            num.set_h(&self.ctx, h as f32);
        }
        Ok(())
    }
}

impl GpuBackend {
    /// Builds the numerical pipeline of `strategy` on first use.
    fn numerical_pipelines(&mut self, strategy: PerturbStrategy) -> Result<()> {
        if !self.numerical.contains_key(&strategy) {
            let p = numerical::pipelines(&self.spec, strategy)?;
            self.numerical.insert(strategy, p);
        }
        Ok(())
    }

    /// The gradient buffer as the last step left it (a chunk's last iteration, or `gradient`),
    /// read back: what the chunked path computed, for tests.
    pub fn last_gradient(&mut self) -> Result<Vec<f64>> {
        let n = self.spec.num_params();
        let encoder = self.ctx.encoder("read the gradient");
        let v: Vec<f32> = Self::read_back(
            &self.ctx,
            &self.staging,
            encoder,
            &self.grad,
            n,
            "reading the gradient",
        )?;
        self.in_flight = None;
        Ok(v.into_iter().map(f64::from).collect())
    }

    /// The most iterations of `rows` one chunk buffer holds within the binding limit (at least 1).
    fn max_chunk_steps(&self, rows: usize) -> usize {
        let words = (self.ctx.max_binding_bytes() / 4) as usize;
        let fit = (words.saturating_sub(1) / rows.max(1)).saturating_sub(1);
        fit.min(self.chunk_steps.unwrap_or(usize::MAX)).max(1)
    }

    /// Makes (or grows) the chunk buffers so that `steps` iterations of `rows` fit; growing drops
    /// the training plans bound to the old ones.
    fn ensure_chunk(&mut self, steps: usize, rows: usize) -> Result<()> {
        let words = 1 + (steps + 1) * rows;
        if let Some(c) = &self.chunk {
            if c.steps >= steps && c.words >= words {
                return Ok(());
            }
        }
        // Room for MIN_CHUNK_STEPS (as far as one binding allows) so that varying chunks do not
        // remake the buffers; never less than this chunk needs or than there was.
        let (old_steps, old_words) = self.chunk.as_ref().map_or((0, 0), |c| (c.steps, c.words));
        let roomy = 1 + (MIN_CHUNK_STEPS.min(self.max_chunk_steps(rows)) + 1) * rows;
        let words = words.max(old_words).max(roomy);
        let steps = steps.max(old_steps).max(MIN_CHUNK_STEPS);
        let ctx = &self.ctx;
        self.chunk = Some(ChunkState {
            steps,
            words,
            chunk: ctx.storage("chunk batches", words)?,
            losses: ctx.storage("chunk losses", steps + 1)?,
            staging: ctx.staging("chunk losses read-back", steps + 1),
            start: ctx.storage("chunk start parameters", self.spec.num_params())?,
        });
        self.train_plans.clear();
        Ok(())
    }

    /// The training plan for batches of `rows`, with what `method` needs and the current lr.
    fn prepare_train(&mut self, rows: usize, method: GradMethod, lr: f32) -> Result<()> {
        let chunk = self
            .chunk
            .as_ref()
            .ok_or_else(|| Error::Gpu("the chunk buffers are missing (a bug)".into()))?;
        let buffers = ChunkBuffers {
            chunk: &chunk.chunk,
            losses: &chunk.losses,
            params: &self.params,
            grad: &self.grad,
        };
        if !self.train_plans.contains_key(&rows) {
            let plan = TrainPlan::new(
                &self.ctx,
                &self.kernels,
                &self.spec,
                &self.train,
                rows,
                &buffers,
            )?;
            self.train_plans.insert(rows, plan);
        }
        if let GradMethod::Numerical { strategy, h } = method {
            check_h(h)?;
            if !self.numerical.contains_key(&strategy) {
                let p = numerical::pipelines(&self.spec, strategy)?;
                self.numerical.insert(strategy, p);
            }
            let plan = self
                .train_plans
                .get_mut(&rows)
                .ok_or_else(|| Error::Gpu("the training plan is missing (a bug)".into()))?;
            plan.prepare_numerical(
                &self.ctx,
                &self.numerical[&strategy],
                &self.spec,
                strategy,
                h as f32,
                self.subtract_losses,
                &buffers,
            )?;
        }
        for plan in self.train_plans.values_mut() {
            plan.set_lr(&self.ctx, lr);
        }
        Ok(())
    }

    /// Records iterations `count` times into `encoder`, in one compute pass.
    fn record_iterations(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        plan: &TrainPlan,
        strategy: Option<PerturbStrategy>,
        count: usize,
    ) -> Result<()> {
        let one = plan.iteration(strategy)?;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("training iterations"),
            timestamp_writes: None,
        });
        let mut n = 0;
        for _ in 0..count {
            for d in &one {
                n += d.record(&mut pass);
            }
        }
        drop(pass);
        self.ctx.count_dispatches(n);
        Ok(())
    }

    /// The chunked `train_steps` (nets with one hidden layer): see `gpu::chunk`.
    #[allow(clippy::too_many_arguments)]
    fn train_chunk(
        &mut self,
        batches: &[u32],
        batch: usize,
        method: GradMethod,
        lr: f64,
        losses: &mut Vec<f64>,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<StepsOutcome> {
        let steps = batches.len() / batch;
        if steps == 0 {
            return Ok(StepsOutcome {
                done: 0,
                diverged: None,
            });
        }
        check_batch(batch, batches, self.train.len())?;
        self.ensure_chunk(steps, batch)?;
        self.prepare_train(batch, method, lr as f32)?;
        // Everything submitted before is ordered before this chunk, which is waited for below.
        self.in_flight = None;
        let strategy = match method {
            GradMethod::Backprop => None,
            GradMethod::Numerical { strategy, .. } => Some(strategy),
        };
        // The chunk in one write: the iteration counter, the batches, and the last batch again
        // for the final check's forward pass (which runs at iteration `steps`).
        let mut words = Vec::with_capacity(1 + (steps + 1) * batch);
        words.push(0u32);
        words.extend_from_slice(batches);
        words.extend_from_slice(&batches[(steps - 1) * batch..]);
        let (Some(state), Some(plan)) = (self.chunk.as_ref(), self.train_plans.get(&batch)) else {
            return Err(Error::Gpu(
                "the training chunk is not prepared (a bug)".into(),
            ));
        };
        self.ctx.write(&state.chunk, 0, &words);
        let param_bytes = (self.spec.num_params() * 4) as u64;
        let mut encoder = self.ctx.encoder("training chunk");
        self.ctx
            .copy(&mut encoder, &self.params, 0, &state.start, 0, param_bytes);
        let mut done = 0;
        let index = loop {
            let count = STEPS_PER_SUBMISSION.min(steps - done);
            self.record_iterations(&mut encoder, plan, strategy, count)?;
            done += count;
            let end = done == steps;
            let finish = |ctx: &Context, encoder: &mut wgpu::CommandEncoder, done: usize| {
                // The loss of the parameters the chunk ends with (the last update is seen by no
                // later iteration), then every loss to the host.
                record_all(ctx, encoder, plan.loss_only());
                ctx.copy(
                    encoder,
                    &state.losses,
                    0,
                    &state.staging,
                    0,
                    ((done + 1) * 4) as u64,
                );
            };
            if end {
                finish(&self.ctx, &mut encoder, done);
            }
            let index = self.ctx.submit(encoder, "training")?;
            let go = progress(done);
            if end {
                break index;
            }
            encoder = self.ctx.encoder("training chunk");
            if !go {
                finish(&self.ctx, &mut encoder, done);
                break self.ctx.submit(encoder, "training")?;
            }
        };
        let read: Vec<f32> =
            self.ctx
                .read_submitted(index, &state.staging, done + 1, "reading the losses")?;
        let bad_update = match read[..done].iter().position(|l| !l.is_finite()) {
            Some(0) => {
                return Err(Error::Numerics(format!(
                    "the parameters a chunk of training started from give a non-finite loss ({}); they were broken before this chunk",
                    read[0]
                )))
            }
            Some(i) => Some(i - 1),
            None => (!read[done].is_finite()).then_some(done - 1),
        };
        let Some(k) = bad_update else {
            losses.extend(read[..done].iter().map(|&l| f64::from(l)));
            return Ok(StepsOutcome {
                done,
                diverged: None,
            });
        };
        // Back to the chunk's start, then the k good updates again (every step is
        // deterministic): the parameters from before the bad update.
        let mut encoder = self.ctx.encoder("training chunk replay");
        self.ctx
            .copy(&mut encoder, &state.start, 0, &self.params, 0, param_bytes);
        self.ctx.write(&state.chunk, 0, &[0u32]);
        let mut replayed = 0;
        while replayed < k {
            let count = STEPS_PER_SUBMISSION.min(k - replayed);
            self.record_iterations(&mut encoder, plan, strategy, count)?;
            replayed += count;
            if replayed < k {
                self.ctx.submit(encoder, "training")?;
                encoder = self.ctx.encoder("training chunk replay");
            }
        }
        self.ctx.submit(encoder, "training")?;
        losses.extend(read[..=k].iter().map(|&l| f64::from(l)));
        Ok(StepsOutcome {
            done: k,
            diverged: Some(k),
        })
    }
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
        let n = self.spec.num_params();
        let encoder = self.ctx.encoder("read parameters");
        let v: Vec<f32> = Self::read_back(
            &self.ctx,
            &self.staging,
            encoder,
            &self.params,
            n,
            "reading the parameters",
        )?;
        self.in_flight = None;
        Params::from_vec(&self.spec, v.into_iter().map(f64::from).collect())
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
        self.plan(key)?;
        let plan = &self.plans[&key];
        self.ctx.write(&plan.indices, 0, indices);
        self.batch = Some(Batch {
            key,
            gathered: false,
        });
        Ok(())
    }

    fn batch_loss(&mut self) -> Result<f64> {
        let (encoder, key) = self.record_batch(Work::Loss, "batch loss")?;
        let loss = &self.plans[&key].loss;
        let v: Vec<f32> = Self::read_back(
            &self.ctx,
            &self.staging,
            encoder,
            loss,
            1,
            "computing the batch loss",
        )?;
        self.in_flight = None;
        Ok(f64::from(v[0]))
    }

    fn gradient(&mut self, method: GradMethod) -> Result<Vec<f64>> {
        self.prepare(method)?;
        let n = self.spec.num_params();
        let (encoder, _) = self.record_batch(Work::Gradient(method), "gradient")?;
        let v: Vec<f32> = Self::read_back(
            &self.ctx,
            &self.staging,
            encoder,
            &self.grad,
            n,
            "computing the gradient",
        )?;
        self.in_flight = None;
        Ok(v.into_iter().map(f64::from).collect())
    }

    fn step(&mut self, method: GradMethod, lr: f64) -> Result<()> {
        self.prepare(method)?;
        let lr = lr as f32;
        if self.lr != Some(lr) {
            sgd::set_lr(&self.ctx, &self.sgd, lr);
            self.lr = Some(lr);
        }
        let (encoder, _) = self.record_batch(Work::Step(method), "training step")?;
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
        crate::backend::chunk_steps(batches, batch)?;
        if !chunk::fits(&self.spec, batch, self.ctx.loop_iteration_cap()) {
            // Deeper nets (the numerical cache needs the copies of `record_cache_copies`), and
            // heads too long for the driver's loop cap, keep the step-at-a-time path.
            return train_steps_one_by_one(self, batches, batch, method, lr, losses, progress);
        }
        // A chunk's indices must fit one binding: longer chunks (big batches) go in pieces.
        let most = self.max_chunk_steps(batch);
        let mut done = 0;
        for piece in batches.chunks(most * batch) {
            let mut stop = false;
            let outcome = self.train_chunk(piece, batch, method, lr, losses, &mut |n| {
                let go = progress(done + n);
                stop |= !go;
                go
            })?;
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
            let key = PlanKey {
                test,
                rows,
                backward: false,
            };
            self.plan(key)?;
            if !self.eval_gathers.contains_key(&(test, start, rows)) {
                let plan = &self.plans[&key];
                let split = if test { &self.test } else { &self.train };
                let g = gather_rows(
                    &self.kernels.gather,
                    &self.ctx,
                    split,
                    rows,
                    Rows::From(start),
                    &plan.indices,
                    &plan.x,
                    Operand::whole(&plan.labels),
                )?;
                self.eval_gathers.insert((test, start, rows), g);
            }
        }
        // Every chunk in one submission: each gathers its own rows (no indices to upload), and
        // the launches of one command buffer run in order, so the chunks may share buffers.
        let mut encoder = self.ctx.encoder("evaluate");
        encoder.clear_buffer(&self.correct, 0, None);
        for (c, &(start, rows)) in parts.iter().enumerate() {
            let plan = &self.plans[&PlanKey {
                test,
                rows,
                backward: false,
            }];
            record_all(
                &self.ctx,
                &mut encoder,
                self.eval_gathers[&(test, start, rows)]
                    .iter()
                    .chain(&plan.forward)
                    .chain(&plan.loss_pass)
                    .chain([&plan.accuracy]),
            );
            self.ctx.copy(
                &mut encoder,
                &plan.loss,
                0,
                &self.eval_means,
                (c * 4) as u64,
                4,
            );
        }
        let count = parts.len();
        self.ctx.copy(
            &mut encoder,
            &self.eval_means,
            0,
            &self.staging,
            0,
            (count * 4) as u64,
        );
        self.ctx.copy(
            &mut encoder,
            &self.correct,
            0,
            &self.staging,
            (count * 4) as u64,
            4,
        );
        let read = Some(self.ctx.submit_and_read::<u32>(
            encoder,
            &self.staging,
            count + 1,
            "evaluating",
        )?);
        self.in_flight = None;
        let read = read.ok_or_else(|| Error::Gpu("evaluation read nothing back (a bug)".into()))?;
        // Chunk means back to a sum in f64, so the total adds no f32 round-off of its own.
        let loss: f64 = parts
            .iter()
            .zip(&read)
            .map(|(&(_, rows), &bits)| f64::from(f32::from_bits(bits)) * rows as f64)
            .sum();
        Ok(Evaluation {
            loss: loss / n as f64,
            correct: read[parts.len()] as usize,
            count: n,
        })
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
