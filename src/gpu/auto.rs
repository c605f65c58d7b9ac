//! `--device auto`, measured: every hardware GPU that can run the kernels and the CPU each run a
//! short trial of the run's own step (after a warm-up; a fraction of a second each), and the
//! faster trains. Whether a GPU beats the CPU depends on the model, the batch, the method and the
//! GPU (an integrated GPU or a software adapter loses to a good CPU on small nets), so it is
//! timed rather than guessed. Software adapters (lavapipe) are candidates only when
//! `GPU_TRAIN_AUTO_ALLOW_SOFTWARE=1` (tests, and anyone curious).

use super::adapter;
use super::backend::GpuBackend;
use super::context::Context;
use crate::backend::{Backend, GradMethod};
use crate::data::{Mnist, Sampler, SamplerKind};
use crate::error::Result;
use crate::model::{MlpSpec, Params};
use std::sync::Arc;
use std::time::Duration;
use web_time::Instant;

/// `1` lets `--device auto` try software adapters too (lavapipe standing in for a GPU in tests).
pub const ALLOW_SOFTWARE_ENV: &str = "GPU_TRAIN_AUTO_ALLOW_SOFTWARE";

/// Timed time per candidate, after its warm-up: long enough to average a few steps, short
/// enough that the whole choice stays well under a second on a real GPU and CPU.
pub const TRIAL_TIME: Duration = Duration::from_millis(150);

/// Steps timed per candidate, at least and at most.
pub const TRIAL_STEPS: (usize, usize) = (2, 40);

/// What the trial runs: the run's own step.
#[derive(Debug, Clone)]
pub struct TrialSpec {
    pub method: GradMethod,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
}

/// One candidate's figure.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialFigure {
    /// The backend's name ("cpu f32 (2 threads)", "gpu NVIDIA H100 (Vulkan, DiscreteGpu)").
    pub device: String,
    /// Median-free mean over the timed steps, seconds per step.
    pub seconds_per_step: f64,
    pub steps: usize,
}

/// The choice: the backend to train on, every figure, and the sentence that says why.
pub struct AutoPick {
    pub backend: Box<dyn Backend>,
    pub figures: Vec<TrialFigure>,
    pub reason: String,
}

impl std::fmt::Debug for AutoPick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoPick")
            .field("backend", &self.backend.name())
            .field("figures", &self.figures)
            .field("reason", &self.reason)
            .finish()
    }
}

/// Whether the environment lets software adapters be candidates.
pub fn allow_software_from_env() -> bool {
    std::env::var(ALLOW_SOFTWARE_ENV).is_ok_and(|v| v.trim() == "1")
}

/// Times `trial` on `backend` from `params`, batches drawn from a training split of `train_len`:
/// one warm-up step (pipelines, buffers), a short probe, then as many steps as fit TRIAL_TIME;
/// the parameters are put back afterwards.
pub fn time_step(
    backend: &mut dyn Backend,
    params: &Params,
    trial: &TrialSpec,
    train_len: usize,
) -> Result<TrialFigure> {
    let mut sampler = Sampler::new(SamplerKind::WithReplacement, train_len, trial.seed ^ 0x7431)?;
    let mut draw = |steps: usize| -> Result<Vec<u32>> {
        let mut all = Vec::with_capacity(steps * trial.batch);
        let mut b = Vec::new();
        for _ in 0..steps {
            sampler.next_batch(trial.batch, &mut b)?;
            all.extend_from_slice(&b);
        }
        Ok(all)
    };
    backend.set_params(params)?;
    let mut losses = Vec::new();
    let mut run = |backend: &mut dyn Backend, steps: usize| -> Result<f64> {
        let batches = draw(steps)?;
        let t = Instant::now();
        backend.train_steps(
            &batches,
            trial.batch,
            trial.method,
            trial.lr,
            &mut losses,
            &mut |_| true,
        )?;
        Ok(t.elapsed().as_secs_f64())
    };
    run(backend, 1)?;
    let probe = run(backend, TRIAL_STEPS.0)? / TRIAL_STEPS.0 as f64;
    let steps =
        ((TRIAL_TIME.as_secs_f64() / probe.max(1e-9)) as usize).clamp(TRIAL_STEPS.0, TRIAL_STEPS.1);
    let seconds = run(backend, steps)?;
    backend.set_params(params)?;
    Ok(TrialFigure {
        device: backend.name(),
        seconds_per_step: seconds / steps as f64,
        steps,
    })
}

/// Times the CPU backend and every GPU backend on `trial`, and keeps the fastest (ties go to the
/// CPU: no device to share, no driver). The others are dropped.
pub fn pick_faster(
    cpu: Box<dyn Backend>,
    gpus: Vec<Box<dyn Backend>>,
    data: &Mnist,
    params: &Params,
    trial: &TrialSpec,
) -> Result<AutoPick> {
    let mut all: Vec<Box<dyn Backend>> = std::iter::once(cpu).chain(gpus).collect();
    let mut figures = Vec::with_capacity(all.len());
    for b in &mut all {
        figures.push(time_step(b.as_mut(), params, trial, data.train.len())?);
    }
    let best = figures
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.seconds_per_step.total_cmp(&b.1.seconds_per_step))
        .map_or(0, |(i, _)| i);
    let listed: Vec<String> = figures
        .iter()
        .map(|f| format!("{} {}", f.device, per_step(f.seconds_per_step)))
        .collect();
    let reason = format!(
        "--device auto: {} per step measured ({}; {} after a warm-up): {} is faster",
        trial.method.describe(),
        listed.join(", "),
        figures
            .iter()
            .map(|f| f.steps.to_string())
            .collect::<Vec<_>>()
            .join("/")
            + " steps",
        figures[best].device
    );
    let backend = all.swap_remove(best);
    Ok(AutoPick {
        backend,
        figures,
        reason,
    })
}

fn per_step(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.0} us", s * 1e6)
    }
}

/// `--device auto` whole: the GPU candidates (hardware adapters that can run the kernels, or any
/// adapter with `GPU_TRAIN_AUTO_ALLOW_SOFTWARE=1`), each timed against `cpu` on the run's own
/// step from `params`; without candidates, `cpu` with the reason (how to expose an NVIDIA GPU to
/// a container among them). The chosen backend holds `params`.
pub fn auto_device(
    spec: &MlpSpec,
    data: Arc<Mnist>,
    params: &Params,
    trial: &TrialSpec,
    cpu: Box<dyn Backend>,
) -> Result<AutoPick> {
    let contexts = match Context::candidates(allow_software_from_env()) {
        Ok(c) => c,
        Err(reason) => {
            let mut cpu = cpu;
            cpu.set_params(params)?;
            return Ok(AutoPick {
                backend: cpu,
                figures: Vec::new(),
                reason: format!("--device auto: {reason}"),
            });
        }
    };
    let mut gpus: Vec<Box<dyn Backend>> = Vec::new();
    for ctx in contexts {
        gpus.push(Box::new(GpuBackend::new(
            Arc::new(ctx),
            spec.clone(),
            data.clone(),
        )?));
    }
    let mut pick = pick_faster(cpu, gpus, &data, params, trial)?;
    pick.backend.set_params(params)?;
    Ok(pick)
}

/// Where `/dev/nvidia*` exists but Vulkan shows no NVIDIA adapter: how to expose it.
pub fn nvidia_hint() -> Option<String> {
    adapter::nvidia_hint()
}
