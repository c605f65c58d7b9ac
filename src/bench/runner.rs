//! Timing: one device's pass over the grid, one case at a time (price, warm-up, repeats).

use super::grid::{Grid, Shape};
use super::progress::Progress;
use super::stats::{median, StepCounters};
use super::text::{ratio, secs};
use super::{CaseResult, Device, Work, BATCH_SEED, PARAMS_SEED, TRAIN_LR};
use crate::backend::{Backend, DeviceCounters, GradMethod};
use crate::cpu::CpuBackend;
use crate::data::{self, Mnist, Sampler, SamplerKind};
use crate::error::{Error, Result};
use crate::gpu::{Context, GpuBackend, GpuOptions};
use crate::model::{MlpSpec, Params};
use std::sync::Arc;
use web_time::Instant;

/// Every case of the grid on every device, in table order: kind of work (--what order), batch,
/// hidden, device.
pub(super) fn run_grid(
    grid: &Grid,
    data: &Arc<Mnist>,
    gpu: &std::result::Result<Arc<Context>, String>,
    progress: &Progress,
) -> Vec<CaseResult> {
    let nonzero = nonzero_fraction(data);
    let mut cases = Vec::new();
    for &device in &grid.devices {
        let runner = Runner {
            device,
            grid,
            data,
            nonzero,
            progress,
        };
        let ctx = match device {
            Device::Cpu => Ok(None),
            Device::Gpu => gpu.as_ref().map(Some).map_err(|why| why.as_str()),
        };
        cases.extend(runner.run(ctx));
    }
    let order = |c: &CaseResult| {
        let w = grid.what.iter().position(|&w| w == c.what);
        (w.unwrap_or(usize::MAX), c.batch, c.hidden, c.device)
    };
    cases.sort_by_key(order);
    cases
}

/// Mean fraction of nonzero pixels over the training set (prices the incremental gradient).
fn nonzero_fraction(data: &Mnist) -> f64 {
    let images = data.train.images();
    if images.is_empty() {
        return 0.0;
    }
    images.iter().filter(|&&p| p != 0).count() as f64 / images.len() as f64
}

/// One device's pass over the grid.
struct Runner<'a> {
    device: Device,
    grid: &'a Grid,
    data: &'a Arc<Mnist>,
    nonzero: f64,
    progress: &'a Progress,
}

/// The backends of one net on one device: `timed` brackets its calls with timestamp queries
/// where the GPU has them; the train-step kinds run on `plain`, as training does (no queries,
/// so the counters are training's), opened on first use. On the CPU both are one backend.
struct Backends {
    timed: Box<dyn Backend>,
    plain: Option<Box<dyn Backend>>,
}

impl Runner<'_> {
    /// A backend of `spec` on this device (`ctx`: the GPU, else the CPU).
    fn open(
        &self,
        ctx: Option<&Arc<Context>>,
        spec: &MlpSpec,
        timestamps: bool,
    ) -> Result<Box<dyn Backend>> {
        let data = self.data.clone();
        Ok(match ctx {
            Some(ctx) => {
                let options = GpuOptions {
                    timestamps,
                    ..GpuOptions::default()
                };
                Box::new(GpuBackend::with_options(
                    ctx.clone(),
                    spec.clone(),
                    data,
                    options,
                )?)
            }
            None => Box::new(CpuBackend::<f32>::new(spec.clone(), data)?),
        })
    }

    /// The backend `what` runs on, opening the plain one when first needed.
    fn backend_for<'b>(
        &self,
        backends: &'b mut Backends,
        ctx: Option<&Arc<Context>>,
        spec: &MlpSpec,
        what: Work,
    ) -> Result<&'b mut dyn Backend> {
        if what.train_method().is_none() || ctx.is_none() {
            return Ok(backends.timed.as_mut());
        }
        if backends.plain.is_none() {
            backends.plain = Some(self.open(ctx, spec, false)?);
        }
        Ok(backends.plain.as_deref_mut().expect("opened above"))
    }

    /// The row of one case: its op count, and its timings when it has any.
    fn row(&self, what: Work, shape: &Shape, status: String, samples: &[f64]) -> CaseResult {
        self.row_timed(what, shape, status, samples, &[])
    }

    /// `row`, with the device's own times of the same repeats (all of them, or none is used).
    fn row_timed(
        &self,
        what: Work,
        shape: &Shape,
        status: String,
        samples: &[f64],
        device: &[Option<f64>],
    ) -> CaseResult {
        let cost = what.cost(shape);
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let wall_median = median(&sorted);
        let mut on_device: Vec<f64> = device.iter().flatten().copied().collect();
        on_device.sort_by(f64::total_cmp);
        let all_timed = !on_device.is_empty() && on_device.len() == device.len();
        CaseResult {
            device: self.device,
            what,
            batch: shape.batch,
            hidden: shape.hidden,
            params: shape.params,
            repeats: if status == "ok" { samples.len() } else { 0 },
            steps_per_call: self.grid.steps_per_call(what),
            median_s: wall_median,
            min_s: sorted.first().copied(),
            max_s: sorted.last().copied(),
            device_median_s: if all_timed { median(&on_device) } else { None },
            ops: cost.ops,
            op_unit: cost.unit,
            rate: wall_median.filter(|&m| m > 0.0).map(|m| cost.ops / m),
            rate_unit: cost.unit.rate_unit(),
            counters_per_step: None,
            status,
        }
    }

    /// Every case of the grid with the same status and no timings (no GPU, no backend).
    fn unrun(&self, spec: &MlpSpec, status: &str) -> Vec<CaseResult> {
        let mut rows = Vec::new();
        for batch in self.grid.all_batches() {
            let shape = Shape::new(spec, batch, self.nonzero);
            for what in self.grid.work_at(batch) {
                rows.push(self.row(what, &shape, status.to_string(), &[]));
            }
        }
        rows
    }

    /// Runs every case: per hidden size one backend (on `ctx`, else the CPU); per batch size the
    /// forward pass first (reported if asked for, else only a calibration), because every other
    /// case is priced against it. `ctx` Err: every row says why the GPU did not run.
    fn run(&self, ctx: std::result::Result<Option<&Arc<Context>>, &str>) -> Vec<CaseResult> {
        let mut cases = Vec::new();
        // Measured forward passes on this device: (forward FLOPs, median seconds).
        let mut forwards: Vec<(f64, f64)> = Vec::new();
        for spec in &self.grid.specs {
            let ctx = match ctx {
                Err(why) => {
                    cases.extend(self.unrun(spec, &format!("not run: {why}")));
                    continue;
                }
                Ok(ctx) => ctx,
            };
            let mut backends = match self.open(ctx, spec, true) {
                Ok(timed) => Backends { timed, plain: None },
                Err(e) => {
                    cases.extend(self.unrun(spec, &format!("error: {e}")));
                    continue;
                }
            };
            for batch in self.grid.all_batches() {
                let shape = Shape::new(spec, batch, self.nonzero);
                let rows = self.run_batch(&mut backends, ctx, spec, &shape, &mut forwards);
                cases.extend(rows);
            }
        }
        cases
    }

    /// The cases of one net at one batch size: the forward pass, priced from the nearest
    /// measured one, then the rest priced from it.
    fn run_batch(
        &self,
        backends: &mut Backends,
        ctx: Option<&Arc<Context>>,
        spec: &MlpSpec,
        shape: &Shape,
        forwards: &mut Vec<(f64, f64)>,
    ) -> Vec<CaseResult> {
        let params = Params::init(spec, PARAMS_SEED);
        let here = self.grid.work_at(shape.batch);
        let mut cases = Vec::new();
        let est = estimate_forward(forwards, shape.forward_flops);
        let fwd = self.measure(backends.timed.as_mut(), Work::Forward, shape, &params, est);
        if let Some(t) = fwd.median_s {
            forwards.push((shape.forward_flops, t));
        }
        // When the forward pass itself was over budget, its price prices the rest.
        let forward_s = fwd.median_s.or(est);
        if here.contains(&Work::Forward) {
            cases.push(fwd);
        }
        for &what in here.iter().filter(|&&w| w != Work::Forward) {
            let per_call = what.cost(shape).forwards * self.grid.steps_per_call(what) as f64;
            let est = forward_s.map(|t| t * per_call);
            let row = match self.backend_for(backends, ctx, spec, what) {
                Ok(backend) => self.measure(backend, what, shape, &params, est),
                Err(e) => self.row(what, shape, format!("error: {e}"), &[]),
            };
            cases.push(row);
        }
        cases
    }

    /// Why a case should not run: priced over the budget (by `estimate_s`, and for the
    /// numerical gradient by [`probe`]), or a backend that fails before anything is timed.
    /// Resets the parameters (not timed): train steps move them, and every case should start
    /// from the same net on both devices.
    fn precheck(
        &self,
        backend: &mut dyn Backend,
        what: Work,
        shape: &Shape,
        params: &Params,
        estimate_s: Option<f64>,
    ) -> Option<String> {
        let budget = self.grid.budget;
        let or_chunk = if what.train_method().is_some() {
            " or lower --chunk"
        } else {
            ""
        };
        let skipped = |one: f64, basis: &str| {
            format!(
                "skipped: est. {} > budget {} ({basis}; raise --budget{or_chunk})",
                secs(2.0 * one),
                secs(budget)
            )
        };
        if let Some(est) = estimate_s.filter(|&t| over(t, budget)) {
            return Some(skipped(est, "op count at the forward rate"));
        }
        if let Err(e) = backend.set_params(params) {
            return Some(format!("error: {e}"));
        }
        if what.is_numerical() && shape.batch > 1 {
            let calls = |size| Calls::new(&self.data.train, size, self.grid.chunk);
            match probe(backend, calls, what, shape.batch, budget) {
                Ok((t, basis)) if over(t, budget) => return Some(skipped(t, &basis)),
                Ok(_) => {}
                Err(e) => return Some(format!("error: {e}")),
            }
        }
        None
    }

    /// The one runner: price the case and skip it when over budget; else one warm-up and as
    /// many timed repeats (up to --repeat) as half the budget holds, each on fresh batches.
    ///
    /// The price comes from the op count at the forward pass's measured rate. For the
    /// numerical gradient that model is rough (how well a device runs its perturbation kernels
    /// is not how well it runs a matmul: on lavapipe the incremental kernel took 25x its
    /// price), so a numerical case is also priced by [`probe`]: the same call at a smaller
    /// batch, scaled up.
    fn measure(
        &self,
        backend: &mut dyn Backend,
        what: Work,
        shape: &Shape,
        params: &Params,
        estimate_s: Option<f64>,
    ) -> CaseResult {
        self.progress.show(self.device, what, shape);
        let row = |status: String| self.row(what, shape, status, &[]);
        if let Some(status) = self.precheck(backend, what, shape, params, estimate_s) {
            return row(status);
        }
        let budget = self.grid.budget;
        let mut calls = match Calls::new(&self.data.train, shape.batch, self.grid.chunk) {
            Ok(c) => c,
            Err(e) => return row(format!("error: {e}")),
        };
        let warm = match calls.time(backend, what) {
            Ok((t, _)) => t,
            Err(e) => return row(format!("error: {e}")),
        };
        // The warm-up is the truth where the price was off: when it shows that a timed repeat
        // would take the case past its budget, the warm-up is all this case gets.
        let call = warm * self.grid.steps_per_call(what) as f64;
        if over(call, budget) {
            let status = format!(
                "ok: warm-up only ({}; a repeat would pass the budget {}, raise --budget)",
                secs(call),
                secs(budget)
            );
            let mut r = self.row(what, shape, status, &[warm]);
            r.repeats = 0;
            return r;
        }
        // A slow case gets fewer repeats: they may use half the budget (at least one runs).
        let fit = (0.5 * budget / call.max(1e-9)).floor() as usize;
        self.repeats(
            backend,
            what,
            shape,
            &mut calls,
            fit.clamp(1, self.grid.repeat),
        )
    }

    /// The timed repeats of a case, and for the train-step kinds what they cost the host.
    fn repeats(
        &self,
        backend: &mut dyn Backend,
        what: Work,
        shape: &Shape,
        calls: &mut Calls,
        n: usize,
    ) -> CaseResult {
        let before = backend.counters();
        let mut samples = Vec::new();
        let mut on_device = Vec::new();
        for _ in 0..n {
            match calls.time(backend, what) {
                Ok((t, d)) => {
                    samples.push(t);
                    on_device.push(d);
                }
                Err(e) => return self.row(what, shape, format!("error: {e}"), &[]),
            }
        }
        let mut row = self.row_timed(what, shape, "ok".into(), &samples, &on_device);
        if what.train_method().is_some() {
            let steps = n * self.grid.steps_per_call(what);
            row.counters_per_step = per_step(before, backend.counters(), steps);
        }
        row
    }
}

/// The least a case can cost is its warm-up and one timed repeat.
fn over(one_call: f64, budget: f64) -> bool {
    2.0 * one_call > budget
}

/// What `steps` steps cost between two readings of the counters, per step.
fn per_step(
    before: Option<DeviceCounters>,
    after: Option<DeviceCounters>,
    steps: usize,
) -> Option<StepCounters> {
    let d = after?.since(&before?);
    let per = |v: u64| v as f64 / steps.max(1) as f64;
    Some(StepCounters {
        submissions: per(d.submissions),
        blocking_waits: per(d.blocking_waits),
        dispatches: per(d.dispatches),
        copies: per(d.copies),
        creations: per(d.creations),
    })
}

/// A forward pass's time at `flops`, from the measured one nearest in size, scaled at its rate.
fn estimate_forward(measured: &[(f64, f64)], flops: f64) -> Option<f64> {
    let distance = |f: f64| (f / flops).ln().abs();
    measured
        .iter()
        .min_by(|a, b| distance(a.0).total_cmp(&distance(b.0)))
        .map(|&(f, t)| t * flops / f)
}

/// Prices one call of a numerical case at `batch` by timing it at a smaller batch and scaling
/// linearly: seconds and how they were found. Fixed costs make the scaled figure an upper
/// bound, loose at batch 1 (the CPU's full strategy runs 2P forward passes of one row, each
/// mostly overhead: 3x over), so a batch-1 price over the budget gets a second look at
/// batch/10, when that probe is affordable (a quarter of the budget at most, by the first).
/// The train-step kinds are timed per step: the price is of their whole chunk.
fn probe(
    backend: &mut dyn Backend,
    calls: impl Fn(usize) -> Result<Calls>,
    what: Work,
    batch: usize,
    budget: f64,
) -> Result<(f64, String)> {
    let at = |backend: &mut dyn Backend, size: usize| -> Result<(f64, String)> {
        let mut calls = calls(size)?;
        let (t, _) = calls.time(backend, what)?;
        let t = t * calls.steps(what) as f64;
        let scale = batch as f64 / size as f64;
        Ok((
            t * scale,
            format!("batch-{size} probe {} x {}", secs(t), ratio(scale)),
        ))
    };
    let first = at(backend, 1)?;
    let tenth = batch / 10;
    if over(first.0, budget) && tenth > 1 && first.0 / batch as f64 * tenth as f64 <= budget / 4.0 {
        return at(backend, tenth);
    }
    Ok(first)
}

/// Timed calls of one batch size, each on the next batches of a sampler seeded alike for every
/// case, so both devices see the same batches.
struct Calls {
    sampler: Sampler,
    size: usize,
    chunk: usize,
    batch: Vec<u32>,
    losses: Vec<f64>,
}

impl Calls {
    fn new(train: &data::Dataset, size: usize, chunk: usize) -> Result<Self> {
        let sampler = Sampler::new(SamplerKind::WithReplacement, train.len(), BATCH_SEED)?;
        Ok(Calls {
            sampler,
            size,
            chunk,
            batch: Vec::with_capacity(size),
            losses: Vec::with_capacity(chunk),
        })
    }

    /// Steps per call of `what`.
    fn steps(&self, what: Work) -> usize {
        if what.train_method().is_some() {
            self.chunk
        } else {
            1
        }
    }

    /// Seconds of one call (per step for the train-step kinds): set_batch + the work (drawing
    /// the batches is not timed); and the device's own seconds for it, where it has timestamps
    /// (read after the clock stops).
    fn time(&mut self, backend: &mut dyn Backend, what: Work) -> Result<(f64, Option<f64>)> {
        if let Some(method) = what.train_method() {
            return self.time_steps(backend, method).map(|t| (t, None));
        }
        self.sampler.next_batch(self.size, &mut self.batch)?;
        let start = Instant::now();
        backend.set_batch(&self.batch)?;
        single_call(backend, what)?;
        let wall = start.elapsed().as_secs_f64();
        Ok((wall, backend.last_device_seconds()?))
    }

    /// One `train_steps` call over `chunk` fresh batches; seconds per step.
    fn time_steps(&mut self, backend: &mut dyn Backend, method: GradMethod) -> Result<f64> {
        let mut batches = Vec::with_capacity(self.chunk * self.size);
        for _ in 0..self.chunk {
            self.sampler.next_batch(self.size, &mut self.batch)?;
            batches.extend_from_slice(&self.batch);
        }
        self.losses.clear();
        let start = Instant::now();
        let outcome = backend.train_steps(
            &batches,
            self.size,
            method,
            TRAIN_LR,
            &mut self.losses,
            &mut |_| true,
        )?;
        let wall = start.elapsed().as_secs_f64();
        std::hint::black_box(&self.losses);
        if let Some(k) = outcome.diverged {
            return Err(Error::Numerics(format!(
                "training diverged at step {k} of a chunk (lr {TRAIN_LR})"
            )));
        }
        Ok(wall / self.chunk as f64)
    }
}

/// The timed call of a single-call kind. Results are passed through `black_box` so nothing is
/// optimised away.
fn single_call(backend: &mut dyn Backend, what: Work) -> Result<()> {
    use crate::backend::PerturbStrategy::{Full, Incremental};
    match what {
        Work::Forward => {
            std::hint::black_box(backend.batch_loss()?);
        }
        Work::Backprop => {
            std::hint::black_box(backend.gradient(GradMethod::Backprop)?);
        }
        Work::NumericalIncremental => {
            std::hint::black_box(backend.gradient(super::numerical(Incremental))?);
        }
        Work::NumericalFull => {
            std::hint::black_box(backend.gradient(super::numerical(Full))?);
        }
        Work::TrainStep | Work::TrainStepNumerical => {
            unreachable!("the train-step kinds are timed by Calls::time_steps")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_costs_are_the_difference_per_step() {
        let before = DeviceCounters {
            submissions: 3,
            blocking_waits: 2,
            dispatches: 40,
            copies: 5,
            creations: 17,
        };
        let after = DeviceCounters {
            submissions: 5,
            blocking_waits: 4,
            dispatches: 240,
            copies: 5,
            creations: 17,
        };
        let k = per_step(Some(before), Some(after), 40).unwrap();
        assert_eq!(
            (
                k.submissions,
                k.blocking_waits,
                k.dispatches,
                k.copies,
                k.creations
            ),
            (0.05, 0.05, 5.0, 0.0, 0.0)
        );
        assert_eq!(per_step(None, None, 40), None);
    }
}
