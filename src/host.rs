//! A net over a batch the caller holds: float inputs and labels handed in with each call,
//! parameters too, instead of indices into a resident data set. This is what the Python
//! package's `gpu_train.book.TwoLayerNet` runs on (its inputs are whatever floats the user's
//! script made, its parameters a dict the script updates in place between calls); the
//! training loop stays the caller's.
//!
//! Every call computes in f32 (the engine's fast path) with the same kernels the backends
//! use: the forward pass, the cross entropy with the chapter's 1e-7 delta, backprop, and the
//! `incremental` numerical gradient with its careful per-sample loss change. On the CPU those
//! are `crate::cpu`'s; on the GPU, `gpu::host::HostGpu` runs the WGSL kernels over the same
//! batch (checked here first, so both devices refuse the same inputs with the same errors).

use crate::backend::{GradMethod, PerturbStrategy};
use crate::cpu::{backprop, cross_entropy, forward::forward, numerical};
use crate::error::{Error, Result};
use crate::gpu::host::{GpuDevice, HostGpu};
use crate::model::MlpSpec;
use rayon::prelude::*;
use web_time::Instant;

/// Rows per parallel forward pass when predicting many rows: bounds the activations' memory.
const ROWS_PER_CHUNK: usize = 500;

/// A batch the caller holds: `rows` inputs of `spec.input` floats each, row-major, and, for
/// the loss and the gradients, one label per row.
#[derive(Debug, Clone, Copy)]
pub struct HostBatch<'a> {
    pub x: &'a [f32],
    pub rows: usize,
    pub labels: &'a [u8],
}

/// Checks that `params` (flat, the model's layout), `batch.x` and, when `labelled`,
/// `batch.labels` fit `spec` and hold only finite values and labels below the class count.
pub fn check_inputs(
    spec: &MlpSpec,
    params: &[f32],
    batch: &HostBatch,
    labelled: bool,
) -> Result<()> {
    if params.len() != spec.num_params() {
        return Err(Error::config(
            "params",
            format!(
                "{} values for a {} net that has {}",
                params.len(),
                spec.describe(),
                spec.num_params()
            ),
        ));
    }
    if batch.rows == 0 {
        return Err(Error::config(
            "x",
            "the batch is empty: give at least 1 row",
        ));
    }
    if batch.x.len() != batch.rows * spec.input {
        return Err(Error::config(
            "x",
            format!(
                "{} values do not make {} rows of {}",
                batch.x.len(),
                batch.rows,
                spec.input
            ),
        ));
    }
    if let Some(p) = params.iter().position(|v| !v.is_finite()) {
        return Err(Error::config(
            "params",
            format!("value {p} is {} (not finite)", params[p]),
        ));
    }
    if let Some(i) = batch.x.iter().position(|v| !v.is_finite()) {
        return Err(Error::config(
            "x",
            format!(
                "x[{}, {}] is {} (not finite)",
                i / spec.input,
                i % spec.input,
                batch.x[i]
            ),
        ));
    }
    if labelled {
        check_labels(spec, batch)?;
    }
    Ok(())
}

fn check_labels(spec: &MlpSpec, batch: &HostBatch) -> Result<()> {
    if batch.labels.len() != batch.rows {
        return Err(Error::config(
            "t",
            format!("{} labels for {} rows of x", batch.labels.len(), batch.rows),
        ));
    }
    if let Some(i) = batch
        .labels
        .iter()
        .position(|&l| l as usize >= spec.classes)
    {
        return Err(Error::config(
            "t",
            format!(
                "label {} at row {i} is not below the {} classes",
                batch.labels[i], spec.classes
            ),
        ));
    }
    Ok(())
}

/// Where a [`HostNet`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostDevice {
    /// The CPU's f32 path (rayon threads).
    Cpu,
    /// The GPU backend's kernels through wgpu (any adapter: Vulkan, Metal, DX12, GL).
    Gpu,
}

/// The device's own part of a net: nothing for the CPU; buffers and plans for the GPU.
#[derive(Debug)]
enum Engine {
    Cpu,
    Gpu(Box<HostGpu>),
}

/// The engine behind the book's TwoLayerNet: a net's spec and a device. Parameters and batches
/// come with every call; nothing is kept between calls but the device (on the GPU its buffers
/// and plans, rewritten by each call) and timing.
#[derive(Debug)]
pub struct HostNet {
    spec: MlpSpec,
    engine: Engine,
    last_seconds: f64,
}

impl HostNet {
    /// A net of `spec` computing on the CPU.
    pub fn cpu(spec: MlpSpec) -> HostNet {
        HostNet {
            spec,
            engine: Engine::Cpu,
            last_seconds: 0.0,
        }
    }

    /// A net of `spec` computing on `dev`'s GPU.
    pub fn gpu(spec: MlpSpec, dev: &GpuDevice) -> Result<HostNet> {
        let gpu = HostGpu::new(dev, spec.clone())?;
        Ok(HostNet {
            spec,
            engine: Engine::Gpu(Box::new(gpu)),
            last_seconds: 0.0,
        })
    }

    /// A net on the process's GPU (`gpu::host::process_gpu`: any adapter, software ones
    /// included), or `Error::Gpu` with the reason there is none.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn on_process_gpu(spec: MlpSpec) -> Result<HostNet> {
        let dev =
            crate::gpu::host::process_gpu(crate::gpu::DeviceRequest::Gpu).map_err(Error::Gpu)?;
        HostNet::gpu(spec, &dev)
    }

    /// The automatic choice: the process's hardware GPU when there is one (as the CLI's
    /// `--device auto`, a software adapter is not chosen: it is far slower than the CPU path),
    /// else the CPU; with the reason, e.g. "a hardware GPU" or "the CPU (no hardware GPU, only
    /// software (llvmpipe ...))".
    #[cfg(not(target_arch = "wasm32"))]
    pub fn auto(spec: MlpSpec) -> (HostNet, String) {
        match crate::gpu::host::process_gpu(crate::gpu::DeviceRequest::Auto) {
            Ok(dev) => match HostNet::gpu(spec.clone(), &dev) {
                Ok(net) => (net, "a hardware GPU".to_string()),
                Err(e) => (HostNet::cpu(spec), format!("the CPU (the GPU failed: {e})")),
            },
            Err(reason) => (HostNet::cpu(spec), format!("the CPU ({reason})")),
        }
    }

    pub fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    pub fn device(&self) -> HostDevice {
        match self.engine {
            Engine::Cpu => HostDevice::Cpu,
            Engine::Gpu(_) => HostDevice::Gpu,
        }
    }

    /// A one-line description of the device: "cpu f32 (2 threads)", "gpu llvmpipe (...)".
    pub fn device_name(&self) -> String {
        match &self.engine {
            Engine::Cpu => format!("cpu f32 ({} threads)", rayon::current_num_threads()),
            Engine::Gpu(g) => g.describe(),
        }
    }

    /// Seconds the last call spent computing (after its checks): the engine's own time.
    pub fn last_seconds(&self) -> f64 {
        self.last_seconds
    }

    /// softmax(net(x)): `rows x classes` probabilities, the book's `predict`.
    pub fn predict(&mut self, params: &[f32], batch: &HostBatch) -> Result<Vec<f32>> {
        check_inputs(&self.spec, params, batch, false)?;
        let start = Instant::now();
        let probs = match &mut self.engine {
            Engine::Cpu => self.probs(params, batch),
            Engine::Gpu(g) => g.predict(params, batch.x, batch.rows)?,
        };
        self.last_seconds = start.elapsed().as_secs_f64();
        Ok(probs)
    }

    /// The mean cross entropy -ln(p_t + 1e-7) over the batch, the book's `loss`.
    pub fn loss(&mut self, params: &[f32], batch: &HostBatch) -> Result<f64> {
        check_inputs(&self.spec, params, batch, true)?;
        let start = Instant::now();
        let losses = match &mut self.engine {
            Engine::Cpu => cross_entropy::cross_entropy_labels(
                &self.probs(params, batch),
                batch.labels,
                self.spec.classes,
            ),
            Engine::Gpu(g) => g.losses(params, batch.x, batch.labels, batch.rows)?,
        };
        let loss = cross_entropy::mean(&losses);
        self.last_seconds = start.elapsed().as_secs_f64();
        Ok(loss)
    }

    /// Rows whose largest probability is at their label (the first largest, as argmax).
    pub fn correct(&mut self, params: &[f32], batch: &HostBatch) -> Result<usize> {
        check_inputs(&self.spec, params, batch, true)?;
        let start = Instant::now();
        let correct = match &mut self.engine {
            Engine::Cpu => self.cpu_correct(params, batch),
            Engine::Gpu(g) => g.correct(params, batch.x, batch.labels, batch.rows)?,
        };
        self.last_seconds = start.elapsed().as_secs_f64();
        Ok(correct)
    }

    /// The gradient of the batch's mean loss, in the model's flat layout: backprop, or the
    /// numerical gradient (`incremental`; `full` is refused: it is the chapter's slow way,
    /// for checks, which the CLI's gradcheck runs).
    pub fn gradient(
        &mut self,
        params: &[f32],
        batch: &HostBatch,
        method: GradMethod,
    ) -> Result<Vec<f32>> {
        check_inputs(&self.spec, params, batch, true)?;
        if let GradMethod::Numerical { strategy, h } = method {
            if strategy != PerturbStrategy::Incremental {
                return Err(Error::config(
                    "strategy",
                    "only the incremental numerical gradient runs on a host batch",
                ));
            }
            if !(h.is_finite() && h > 0.0 && h <= 1.0) {
                return Err(Error::config("h", format!("{h} is not a step in (0, 1]")));
            }
        }
        let start = Instant::now();
        let grad = match &mut self.engine {
            Engine::Cpu => self.cpu_gradient(params, batch, method),
            Engine::Gpu(g) => g.gradient(params, batch.x, batch.labels, batch.rows, method)?,
        };
        self.last_seconds = start.elapsed().as_secs_f64();
        Ok(grad)
    }

    fn cpu_correct(&self, params: &[f32], batch: &HostBatch) -> usize {
        self.probs(params, batch)
            .chunks(self.spec.classes)
            .zip(batch.labels)
            .filter(|(row, &t)| crate::math::argmax(row) == t as usize)
            .count()
    }

    fn cpu_gradient(&self, params: &[f32], batch: &HostBatch, method: GradMethod) -> Vec<f32> {
        let spec = &self.spec;
        let cache = forward(spec, params, batch.x, batch.rows);
        match method {
            GradMethod::Backprop => {
                backprop::backprop(spec, params, batch.x, &cache, batch.labels, batch.rows)
            }
            GradMethod::Numerical { h, .. } => numerical::numerical_gradient_incremental(
                spec,
                params,
                batch.x,
                batch.labels,
                &cache,
                h as f32,
            ),
        }
    }

    /// The forward pass over every row, in parallel chunks of `ROWS_PER_CHUNK`.
    fn probs(&self, params: &[f32], batch: &HostBatch) -> Vec<f32> {
        let (spec, width) = (&self.spec, self.spec.input);
        if batch.rows <= ROWS_PER_CHUNK {
            return forward(spec, params, batch.x, batch.rows).probs;
        }
        let parts: Vec<Vec<f32>> = batch
            .x
            .par_chunks(ROWS_PER_CHUNK * width)
            .map(|x| forward(spec, params, x, x.len() / width).probs)
            .collect();
        parts.concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Params;

    fn net_and_batch() -> (HostNet, Vec<f32>, Vec<f32>, Vec<u8>) {
        let spec = MlpSpec::two_layer(6, 3, 4).unwrap();
        let params = Params::init(&spec, 1).to_f32();
        let x: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
        (HostNet::cpu(spec), params, x, vec![0, 3])
    }

    #[test]
    fn numerical_and_backprop_agree_on_float_inputs() {
        let (mut net, params, x, labels) = net_and_batch();
        let batch = HostBatch {
            x: &x,
            rows: 2,
            labels: &labels,
        };
        let num = GradMethod::Numerical {
            strategy: PerturbStrategy::Incremental,
            h: 1e-4,
        };
        let a: Vec<f64> = net
            .gradient(&params, &batch, num)
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect();
        let b: Vec<f64> = net
            .gradient(&params, &batch, GradMethod::Backprop)
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect();
        let err = crate::model::relative_error(&a, &b);
        assert!(err < crate::tolerance::F32_NUMERICAL_VS_F64, "{err}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (mut net, params, mut x, labels) = net_and_batch();
        let bad_label = [0u8, 4];
        let batch = HostBatch {
            x: &x,
            rows: 2,
            labels: &bad_label,
        };
        assert!(net
            .loss(&params, &batch)
            .unwrap_err()
            .to_string()
            .contains("label 4"));
        x[7] = f32::NAN;
        let batch = HostBatch {
            x: &x,
            rows: 2,
            labels: &labels,
        };
        assert!(net
            .predict(&params, &batch)
            .unwrap_err()
            .to_string()
            .contains("x[1, 1]"));
    }
}
