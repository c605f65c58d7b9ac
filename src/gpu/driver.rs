//! The chunked driver of `GpuBackend::train_steps` (nets with one hidden layer): many
//! iterations per command buffer through `chunk::TrainPlan`, one write of the chunk's batches,
//! one read-back of its losses, and the replay that undoes a diverged update.

use super::chunk::{ChunkBuffers, Fits, Iteration, TrainPlan, STEPS_PER_SUBMISSION};
use super::context::Context;
use super::gather::ResidentSplit;
use super::kernels::Kernels;
use super::launch::record_all;
use super::numerical;
use crate::backend::{PerturbStrategy, StepsOutcome};
use crate::error::{Error, Result};
use crate::model::MlpSpec;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// Chunks at least this long fit the buffers made on the first call (the driver's chunks are
/// evaluation intervals, 600 iterations by default), so they are not remade as chunks vary.
const MIN_CHUNK_STEPS: usize = 1024;

/// The device buffers of the chunked path and the launches bound to them, per batch size.
/// Made on the first `train_steps` call; grown (and the plans rebuilt) for a longer chunk only.
#[derive(Debug)]
pub(super) struct ChunkDriver {
    /// Iterations the buffers hold (the chunk's batches, plus one for the final check).
    steps: usize,
    /// Indices (u32 words) the chunk buffer holds.
    words: usize,
    store: ChunkStore,
    plans: HashMap<usize, TrainPlan>,
}

/// The buffers of a chunk.
#[derive(Debug)]
struct ChunkStore {
    /// Word 0 the iteration, then the batches back to back.
    chunk: wgpu::Buffer,
    losses: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// The parameters the chunk started from, put back when an update diverges.
    start: wgpu::Buffer,
}

/// The most iterations of `rows` one chunk buffer holds within the binding limit (at least 1),
/// and at most `limit` (GpuOptions::chunk_steps).
pub(super) fn max_chunk_steps(ctx: &Context, rows: usize, limit: Option<usize>) -> usize {
    let words = (ctx.max_binding_bytes() / 4) as usize;
    let fit = (words.saturating_sub(1) / rows.max(1)).saturating_sub(1);
    fit.min(limit.unwrap_or(usize::MAX)).max(1)
}

/// The driver whose buffers hold `steps` iterations of `rows`, made or grown as needed.
fn ensure<'a>(
    slot: &'a mut Option<ChunkDriver>,
    ctx: &Context,
    spec: &MlpSpec,
    limit: Option<usize>,
    steps: usize,
    rows: usize,
) -> Result<&'a mut ChunkDriver> {
    let words = 1 + (steps + 1) * rows;
    let driver = match slot.take() {
        Some(d) if d.steps >= steps && d.words >= words => d,
        old => {
            // Room for MIN_CHUNK_STEPS (as far as one binding allows) so that varying chunks do
            // not remake the buffers; never less than this chunk needs or than there was.
            let (old_steps, old_words) = old.as_ref().map_or((0, 0), |d| (d.steps, d.words));
            let roomy = 1 + (MIN_CHUNK_STEPS.min(max_chunk_steps(ctx, rows, limit)) + 1) * rows;
            let words = words.max(old_words).max(roomy);
            let steps = steps.max(old_steps).max(MIN_CHUNK_STEPS);
            ChunkDriver {
                steps,
                words,
                store: ChunkStore {
                    chunk: ctx.storage("chunk batches", words)?,
                    losses: ctx.storage("chunk losses", steps + 1)?,
                    staging: ctx.staging("chunk losses read-back", steps + 1),
                    start: ctx.storage("chunk start parameters", spec.num_params())?,
                },
                plans: HashMap::new(),
            }
        }
    };
    Ok(slot.insert(driver))
}

/// The first update of a chunk whose loss turned non-finite (`read` holds the loss before each
/// of the `done` iterations, then the final one), or an error when the chunk's start was broken.
fn first_bad_update(read: &[f32], done: usize) -> Result<Option<usize>> {
    match read[..done].iter().position(|l| !l.is_finite()) {
        Some(0) => Err(Error::Numerics(format!(
            "the parameters a chunk of training started from give a non-finite loss ({}); they were broken before this chunk",
            read[0]
        ))),
        Some(i) => Ok(Some(i - 1)),
        None => Ok((!read[done].is_finite()).then_some(done - 1)),
    }
}

/// The chunk buffer's contents, for one write: the iteration counter, the batches, and the last
/// batch again for the final check's forward pass (which runs at iteration `steps`).
fn chunk_words(batches: &[u32], batch: usize, steps: usize) -> Vec<u32> {
    let mut words = Vec::with_capacity(1 + (steps + 1) * batch);
    words.push(0u32);
    words.extend_from_slice(batches);
    words.extend_from_slice(&batches[(steps - 1) * batch..]);
    words
}

/// Records `count` iterations into `encoder`, in one compute pass.
fn record_iterations(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    one: &Iteration,
    count: usize,
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("training iterations"),
        timestamp_writes: None,
    });
    let mut n = 0;
    for _ in 0..count {
        for d in &one.step {
            n += d.record(&mut pass);
        }
    }
    drop(pass);
    ctx.count_dispatches(n);
}

/// What one chunk's submissions share: the device, its buffers, one iteration's launches and
/// the parameters.
struct ChunkRun<'a> {
    ctx: &'a Context,
    store: &'a ChunkStore,
    one: &'a Iteration<'a>,
    params: &'a wgpu::Buffer,
    param_bytes: u64,
}

impl ChunkRun<'_> {
    /// Runs the chunk `words` describes (`steps` iterations) in submissions of
    /// STEPS_PER_SUBMISSION, asking `progress` after each; returns the iterations done and the
    /// losses read back (before each, then the final one).
    async fn run(
        &self,
        words: &[u32],
        steps: usize,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<(usize, Vec<f32>)> {
        let (ctx, store) = (self.ctx, self.store);
        ctx.write(&store.chunk, 0, words);
        let mut encoder = ctx.encoder("training chunk");
        ctx.copy(
            &mut encoder,
            self.params,
            0,
            &store.start,
            0,
            self.param_bytes,
        );
        // The loss of the parameters the chunk ends with (the last update is seen by no later
        // iteration), then every loss to the host.
        let finish = |encoder: &mut wgpu::CommandEncoder, done: usize| {
            record_all(ctx, encoder, self.one.loss_only.iter().copied());
            let bytes = ((done + 1) * 4) as u64;
            ctx.copy(encoder, &store.losses, 0, &store.staging, 0, bytes);
        };
        let mut done = 0;
        let index = loop {
            let count = STEPS_PER_SUBMISSION.min(steps - done);
            record_iterations(ctx, &mut encoder, self.one, count);
            done += count;
            let end = done == steps;
            if end {
                finish(&mut encoder, done);
            }
            let index = ctx.submit(encoder, "training")?;
            let go = progress(done);
            if end {
                break index;
            }
            encoder = ctx.encoder("training chunk");
            if !go {
                finish(&mut encoder, done);
                break ctx.submit(encoder, "training")?;
            }
        };
        let read = ctx
            .read_submitted_async(index, &store.staging, done + 1, "reading the losses")
            .await?;
        Ok((done, read))
    }

    /// Back to the chunk's start, then the `k` good updates again (every step is
    /// deterministic): the parameters from before the bad update.
    fn replay(&self, k: usize) -> Result<()> {
        let (ctx, store) = (self.ctx, self.store);
        let mut encoder = ctx.encoder("training chunk replay");
        ctx.copy(
            &mut encoder,
            &store.start,
            0,
            self.params,
            0,
            self.param_bytes,
        );
        ctx.write(&store.chunk, 0, &[0u32]);
        let mut replayed = 0;
        while replayed < k {
            let count = STEPS_PER_SUBMISSION.min(k - replayed);
            record_iterations(ctx, &mut encoder, self.one, count);
            replayed += count;
            if replayed < k {
                ctx.submit(encoder, "training")?;
                encoder = ctx.encoder("training chunk replay");
            }
        }
        ctx.submit(encoder, "training")?;
        Ok(())
    }
}

/// What a chunk binds and needs of the backend: the device, the kernels, the net, the resident
/// training split, the parameters and gradient, and its options.
pub(super) struct Resident<'a> {
    pub ctx: &'a Context,
    pub kernels: &'a Kernels,
    pub spec: &'a MlpSpec,
    pub train: &'a ResidentSplit,
    pub params: &'a wgpu::Buffer,
    pub grad: &'a wgpu::Buffer,
    /// GpuOptions::subtract_losses and ::chunk_steps.
    pub subtract_losses: bool,
    pub chunk_steps: Option<usize>,
}

/// One chunk of `train_steps` (its indices, checked, fit one binding): `batches` back to back,
/// each of `batch` rows, with `numerical`'s strategy, pipelines and h (None: backprop). The
/// losses before each update go to `losses`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn train_chunk(
    slot: &mut Option<ChunkDriver>,
    r: &Resident<'_>,
    numerical: Option<(PerturbStrategy, &numerical::Pipelines, f32)>,
    batches: &[u32],
    batch: usize,
    lr: f64,
    losses: &mut Vec<f64>,
    progress: &mut dyn FnMut(usize) -> bool,
    fits: Fits,
) -> Result<StepsOutcome> {
    let steps = batches.len() / batch;
    if steps == 0 {
        return Ok(StepsOutcome {
            done: 0,
            diverged: None,
        });
    }
    let (ctx, spec) = (r.ctx, r.spec);
    let driver = ensure(slot, ctx, spec, r.chunk_steps, steps, batch)?;
    let buffers = ChunkBuffers {
        chunk: &driver.store.chunk,
        losses: &driver.store.losses,
        params: r.params,
        grad: r.grad,
    };
    let plan = match driver.plans.entry(batch) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(v) => v.insert(TrainPlan::new(
            ctx, r.kernels, spec, r.train, batch, &buffers, fits,
        )?),
    };
    let one = plan.iteration(ctx, spec, numerical, r.subtract_losses, &buffers, lr as f32)?;
    let run = ChunkRun {
        ctx,
        store: &driver.store,
        one: &one,
        params: r.params,
        param_bytes: (spec.num_params() * 4) as u64,
    };
    let words = chunk_words(batches, batch, steps);
    let (done, read) = run.run(&words, steps, progress).await?;
    let Some(k) = first_bad_update(&read, done)? else {
        losses.extend(read[..done].iter().map(|&l| f64::from(l)));
        return Ok(StepsOutcome {
            done,
            diverged: None,
        });
    };
    run.replay(k)?;
    losses.extend(read[..=k].iter().map(|&l| f64::from(l)));
    Ok(StepsOutcome {
        done: k,
        diverged: Some(k),
    })
}
