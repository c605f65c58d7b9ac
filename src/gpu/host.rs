//! `HostGpu`: a net over a batch the caller holds (`crate::host`), on the GPU. The caller's
//! float X rows and labels are written straight into a plan's buffers (`Plan::new` without a
//! split: no gather, no resident data set), its parameters into the parameter buffer, at every
//! call; then ONE command buffer is recorded and submitted and ONE read-back returns what the
//! call asked for: the probabilities (`predict`), the per-sample losses (`loss`, averaged on the
//! host in f64), the correct count (`accuracy`) or the flat gradient.
//!
//! The kernels are the backends' (shaders/*.wgsl through their launchers): the forward pass
//! (matmul + bias + activation, softmax), cross entropy, accuracy, backprop, and the
//! `incremental` numerical gradient's per-parameter kernel (numerical.wgsl) with its careful
//! per-sample loss change. The memo kernels (numerical_memo.wgsl) are off here: their table is
//! indexed by a pixel's u8 value, and these inputs are any floats. CPU twin: `crate::host`'s
//! CPU path (`cpu::forward`, `cpu::backprop`, `cpu::numerical`).
//!
//! Sizes: a gradient's batch is one plan (at most `max_gradient_rows`); a forward-only call of
//! many rows runs in chunks of at most `eval_rows` rows, chunk after chunk in the same command
//! buffer (each chunk's rows copied into the chunk plan's X from one upload buffer), in parts
//! of at most `PART_BYTES` of input, one submission each (a part is the whole call unless X is
//! over 64 MiB).

#[cfg(not(target_arch = "wasm32"))]
use super::adapter::DeviceRequest;
use super::backend::{chunks, DEFAULT_EVAL_ROWS};
#[cfg(not(target_arch = "wasm32"))]
use super::context::AutoChoice;
use super::context::Context;
use super::kernels::Kernels;
use super::launch::record_all;
use super::numerical;
use super::plan::{Plan, Shared};
use crate::backend::{GradMethod, PerturbStrategy};
use crate::error::{Error, Result};
use crate::model::MlpSpec;
use std::collections::HashMap;
use std::sync::Arc;

/// The most input bytes one submission uploads (a part of a forward-only call).
const PART_BYTES: u64 = 64 << 20;

/// Plans kept per net (one per batch size seen); past it the cache starts again, so a caller
/// sweeping batch sizes does not hold a plan of each.
const MAX_PLANS: usize = 8;

/// The gather's grid caps the backends' batches at the portable per-dimension workgroup limit;
/// the host batch keeps the same cap for its gradients.
const MAX_GRADIENT_ROWS: usize = 65535;

/// An open device with its kernels built: what every `HostGpu` on it shares. Opening a device
/// and compiling its pipelines takes seconds on a software adapter, so a process keeps one
/// (`process_gpu`).
#[derive(Debug, Clone)]
pub struct GpuDevice {
    ctx: Arc<Context>,
    kernels: Arc<Kernels>,
}

impl GpuDevice {
    /// Builds the kernels on `ctx`.
    pub fn new(ctx: Arc<Context>) -> Result<GpuDevice> {
        let kernels = Arc::new(Kernels::new(&ctx)?);
        Ok(GpuDevice { ctx, kernels })
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Whether the adapter is a hardware GPU (not a software one such as llvmpipe).
    pub fn is_hardware(&self) -> bool {
        super::adapter::is_hardware(self.ctx.adapter_info())
    }
}

/// The process's GPU, opened on first use and kept (as is the reason when there is none):
/// `DeviceRequest::Gpu` any adapter, best first (`Context::gpu`); `DeviceRequest::Auto` a
/// hardware one only, as the CLI's `--device auto` (without opening a software adapter). The
/// environment's `GPU_TRAIN_ADAPTER` and `GPU_TRAIN_BACKEND` narrow both. Thread-safe: wgpu's
/// device and queue are shared by every net of the process.
#[cfg(not(target_arch = "wasm32"))]
pub fn process_gpu(request: DeviceRequest) -> std::result::Result<GpuDevice, String> {
    type Slot = std::sync::OnceLock<std::result::Result<GpuDevice, String>>;
    static ANY: Slot = Slot::new();
    static HARDWARE: Slot = Slot::new();
    let slot = match request {
        DeviceRequest::Gpu => &ANY,
        DeviceRequest::Auto => &HARDWARE,
    };
    // The reason without the error's "GPU: " (the caller's `Error::Gpu` adds it back).
    let reason = |e: Error| match e {
        Error::Gpu(why) => why,
        other => other.to_string(),
    };
    slot.get_or_init(|| {
        let ctx = match Context::request(request).map_err(reason)? {
            AutoChoice::Gpu(ctx) => ctx,
            AutoChoice::Cpu { reason } => return Err(reason),
        };
        GpuDevice::new(Arc::new(ctx)).map_err(reason)
    })
    .clone()
}

/// Rows of `spec` whose widest activation (or X) one binding of `ctx` holds.
fn rows_per_binding(ctx: &Context, spec: &MlpSpec) -> usize {
    let widest = spec.sizes().into_iter().max().unwrap_or(1).max(1);
    (ctx.max_binding_bytes() as usize / (4 * widest)).max(1)
}

/// What a forward-only call reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// rows x classes probabilities (f32).
    Probs,
    /// One loss per row (f32).
    Losses,
    /// The number of rows whose first largest probability is at the label (u32).
    Correct,
}

impl Output {
    /// 4-byte words read back for `rows` rows of `classes`.
    fn words(self, rows: usize, classes: usize) -> usize {
        match self {
            Output::Probs => rows * classes,
            Output::Losses => rows,
            Output::Correct => 1,
        }
    }
}

/// A buffer kept between calls and replaced by a bigger one when a call needs more.
#[derive(Debug, Default)]
struct Grown {
    buffer: Option<(wgpu::Buffer, usize)>,
}

impl Grown {
    /// The buffer, at least `len` 4-byte elements long; `make` builds a new one.
    fn at_least(
        &mut self,
        len: usize,
        make: impl FnOnce(usize) -> Result<wgpu::Buffer>,
    ) -> Result<&wgpu::Buffer> {
        if self.buffer.as_ref().is_none_or(|(_, n)| *n < len) {
            self.buffer = Some((make(len)?, len));
        }
        match &self.buffer {
            Some((b, _)) => Ok(b),
            None => Err(Error::Gpu("a host buffer was not made".into())),
        }
    }
}

/// One net's buffers and plans on a `GpuDevice`: parameters, gradient and correct count, one
/// plan per batch size seen, the read-back and upload buffers.
#[derive(Debug)]
pub struct HostGpu {
    dev: GpuDevice,
    spec: MlpSpec,
    params: wgpu::Buffer,
    grad: wgpu::Buffer,
    correct: wgpu::Buffer,
    /// (rows, with a backward pass) -> its plan.
    plans: HashMap<(usize, bool), Plan>,
    /// The numerical gradient's pipelines (the per-parameter kernel), built on first use.
    numerical: HashMap<PerturbStrategy, numerical::Pipelines>,
    staging: Grown,
    upload_x: Grown,
    upload_labels: Grown,
    eval_rows: usize,
}

impl HostGpu {
    /// A net of `spec` on `dev`: its parameter and gradient buffers (nothing is uploaded yet).
    pub fn new(dev: &GpuDevice, spec: MlpSpec) -> Result<HostGpu> {
        let ctx = &dev.ctx;
        let n = spec.num_params();
        let params = ctx.storage("host parameters", n)?;
        let grad = ctx.storage("host gradient", n)?;
        let correct = ctx.storage("host correct count", 1)?;
        ctx.check("making a net's buffers")?;
        let eval_rows = DEFAULT_EVAL_ROWS.min(rows_per_binding(ctx, &spec));
        Ok(HostGpu {
            dev: dev.clone(),
            spec,
            params,
            grad,
            correct,
            plans: HashMap::new(),
            numerical: HashMap::new(),
            staging: Grown::default(),
            upload_x: Grown::default(),
            upload_labels: Grown::default(),
            eval_rows,
        })
    }

    /// "gpu llvmpipe (...)": the adapter, as the CLI names it.
    pub fn describe(&self) -> String {
        format!("gpu {}", self.dev.ctx.describe())
    }

    /// The largest batch a gradient takes here: one plan, every buffer within a binding.
    pub fn max_gradient_rows(&self) -> usize {
        rows_per_binding(&self.dev.ctx, &self.spec).min(MAX_GRADIENT_ROWS)
    }

    /// The plan of `rows` (with a backward pass or not), built on first use.
    fn plan(&mut self, rows: usize, backward: bool) -> Result<&mut Plan> {
        let key = (rows, backward);
        if !self.plans.contains_key(&key) {
            if self.plans.len() >= MAX_PLANS {
                self.plans.clear();
            }
            let shared = Shared {
                ctx: &self.dev.ctx,
                kernels: &self.dev.kernels,
                spec: &self.spec,
                params: &self.params,
                grad: &self.grad,
                correct: &self.correct,
            };
            let plan = Plan::new(&shared, None, rows, backward)?;
            self.plans.insert(key, plan);
        }
        self.plans
            .get_mut(&key)
            .ok_or_else(|| Error::Gpu("a host plan was not kept".into()))
    }

    /// softmax(net(x)): rows x classes probabilities.
    pub fn predict(&mut self, params: &[f32], x: &[f32], rows: usize) -> Result<Vec<f32>> {
        self.forward_call(params, x, &[], rows, Output::Probs)
            .map(|words| words.into_iter().map(f32::from_bits).collect())
    }

    /// Each row's cross entropy -ln(p_t + 1e-7).
    pub fn losses(
        &mut self,
        params: &[f32],
        x: &[f32],
        labels: &[u8],
        rows: usize,
    ) -> Result<Vec<f32>> {
        self.forward_call(params, x, labels, rows, Output::Losses)
            .map(|words| words.into_iter().map(f32::from_bits).collect())
    }

    /// Rows whose first largest probability is at their label.
    pub fn correct(
        &mut self,
        params: &[f32],
        x: &[f32],
        labels: &[u8],
        rows: usize,
    ) -> Result<usize> {
        let parts = self.forward_call(params, x, labels, rows, Output::Correct)?;
        Ok(parts.iter().map(|&c| c as usize).sum())
    }

    /// A forward-only call: the parameters written, then each part of the rows in one
    /// submission and one read-back (the results of the parts one after the other; for
    /// `Correct`, one count per part).
    fn forward_call(
        &mut self,
        params: &[f32],
        x: &[f32],
        labels: &[u8],
        rows: usize,
        out: Output,
    ) -> Result<Vec<u32>> {
        let input = self.spec.input;
        self.dev.ctx.write(&self.params, 0, params);
        let part_bytes = PART_BYTES.min(self.dev.ctx.max_binding_bytes()) as usize;
        let part_rows = (part_bytes / (4 * input)).max(1);
        let mut got = Vec::with_capacity(out.words(rows, self.spec.classes));
        for (start, n) in chunks(rows, part_rows) {
            let labels = if labels.is_empty() {
                &[][..]
            } else {
                &labels[start..start + n]
            };
            let part = self.forward_part(&x[start * input..(start + n) * input], labels, n, out)?;
            got.extend(part);
        }
        Ok(got)
    }

    /// One part of a forward-only call: its rows in chunks of at most `eval_rows`, one
    /// submission.
    fn forward_part(
        &mut self,
        x: &[f32],
        labels: &[u8],
        rows: usize,
        out: Output,
    ) -> Result<Vec<u32>> {
        let (input, classes) = (self.spec.input, self.spec.classes);
        let parts = chunks(rows, self.eval_rows);
        let labels: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
        let labelled = !labels.is_empty();
        for &(_, n) in &parts {
            self.plan(n, false)?;
        }
        let ctx = self.dev.ctx.clone();
        let single = parts.len() == 1;
        self.write_inputs(x, &labels, rows, single)?;
        let words = out.words(rows, classes);
        let staging = self
            .staging
            .at_least(words, |n| Ok(ctx.staging("host read-back", n)))?;
        let mut encoder = ctx.encoder("host batch");
        if out == Output::Correct {
            encoder.clear_buffer(&self.correct, 0, None);
        }
        for &(start, n) in &parts {
            let plan = &self.plans[&(n, false)];
            if let (false, Some((up_x, _))) = (single, &self.upload_x.buffer) {
                let (at, bytes) = ((start * input * 4) as u64, (n * input * 4) as u64);
                ctx.copy(&mut encoder, up_x, at, &plan.x, 0, bytes);
            }
            if let (false, true, Some((up_l, _))) = (single, labelled, &self.upload_labels.buffer) {
                ctx.copy(
                    &mut encoder,
                    up_l,
                    (start * 4) as u64,
                    &plan.labels,
                    0,
                    (n * 4) as u64,
                );
            }
            // The per-sample losses only: the mean after them (loss_pass[1]) is the backend's.
            let tail = match out {
                Output::Probs => &[][..],
                Output::Losses => &plan.loss_pass[..1],
                Output::Correct => std::slice::from_ref(&plan.accuracy),
            };
            record_all(&ctx, &mut encoder, plan.forward.iter().chain(tail));
            let (src, words, at) = match out {
                Output::Probs => (&plan.probs, n * classes, start * classes),
                Output::Losses => (&plan.losses, n, start),
                Output::Correct => continue,
            };
            ctx.copy(
                &mut encoder,
                src,
                0,
                staging,
                (at * 4) as u64,
                (words * 4) as u64,
            );
        }
        if out == Output::Correct {
            ctx.copy(&mut encoder, &self.correct, 0, staging, 0, 4);
        }
        crate::wait::block(ctx.submit_and_read_async(encoder, staging, words, "host batch"))
    }

    /// Writes a part's X and labels: for one chunk straight into its plan's buffers, else into
    /// the upload buffers the chunks copy their rows from.
    fn write_inputs(&mut self, x: &[f32], labels: &[u32], rows: usize, single: bool) -> Result<()> {
        let ctx = &self.dev.ctx;
        if single {
            let plan = &self.plans[&(rows, false)];
            ctx.write(&plan.x, 0, x);
            ctx.write(&plan.labels, 0, labels);
            return Ok(());
        }
        let up = self
            .upload_x
            .at_least(x.len(), |n| ctx.storage("host X", n))?;
        ctx.write(up, 0, x);
        if !labels.is_empty() {
            let up = self
                .upload_labels
                .at_least(rows, |n| ctx.storage("host labels", n))?;
            ctx.write(up, 0, labels);
        }
        Ok(())
    }

    /// The gradient of the batch's mean loss (backprop, or the `incremental` numerical
    /// gradient at step h), in the model's flat layout: one submission, one read-back.
    pub fn gradient(
        &mut self,
        params: &[f32],
        x: &[f32],
        labels: &[u8],
        rows: usize,
        method: GradMethod,
    ) -> Result<Vec<f32>> {
        let most = self.max_gradient_rows();
        if rows > most {
            return Err(Error::config(
                "x",
                format!(
                    "{rows} rows; a gradient on this GPU takes at most {most} (split the batch, \
                     or use device=\"cpu\")"
                ),
            ));
        }
        let ctx = self.dev.ctx.clone();
        let n = self.spec.num_params();
        self.plan(rows, true)?;
        let staging = self
            .staging
            .at_least(n, |n| Ok(ctx.staging("host read-back", n)))?;
        let plan = self
            .plans
            .get_mut(&(rows, true))
            .ok_or_else(|| Error::Gpu("a host plan was not kept".into()))?;
        ctx.write(&self.params, 0, params);
        ctx.write(&plan.x, 0, x);
        let labels: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
        ctx.write(&plan.labels, 0, &labels);
        let mut encoder = ctx.encoder("host gradient");
        match method {
            GradMethod::Backprop => record_all(
                &ctx,
                &mut encoder,
                plan.forward.iter().chain(&plan.backward),
            ),
            GradMethod::Numerical { strategy, h } => {
                let pipelines = match self.numerical.entry(strategy) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(numerical::pipelines_for_floats(&self.spec, strategy))
                    }
                };
                let num = numerical::launches(
                    &mut plan.numerical,
                    pipelines,
                    &ctx,
                    &self.spec,
                    rows,
                    strategy,
                    h as f32,
                    false,
                    [&self.params, &plan.x, &self.grad],
                    None,
                )?;
                // The unperturbed pass, its cache assembled (copies between compute passes),
                // then the perturbations.
                record_all(&ctx, &mut encoder, &plan.forward);
                num.record_cache_copies(
                    &ctx,
                    &mut encoder,
                    &plan.labels,
                    &plan.pre,
                    &plan.post,
                    &plan.probs,
                );
                record_all(&ctx, &mut encoder, num.launches());
            }
        }
        ctx.copy(&mut encoder, &self.grad, 0, staging, 0, (n * 4) as u64);
        crate::wait::block(ctx.submit_and_read_async(encoder, staging, n, "host gradient"))
    }
}
