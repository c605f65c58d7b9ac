//! Which backend a run trains on, and why.

use super::{DeviceChoice, Plan, Precision};
use crate::backend::{Backend, GradMethod};
use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::gpu::{Context, GpuBackend};
use std::sync::Arc;

/// (method, strategy, h) as the command line names them.
pub fn grad_parts(g: GradMethod) -> (&'static str, Option<&'static str>, Option<f64>) {
    match g {
        GradMethod::Backprop => ("backprop", None, None),
        GradMethod::Numerical { strategy, h } => ("numerical", Some(strategy.name()), Some(h)),
    }
}

/// Which device a run trains on and why: the sentence printed at start-up, and for `--device
/// auto` every candidate's trial figure (both go into config.json).
#[derive(Debug, Clone, Default)]
pub struct Chosen {
    pub reason: String,
    pub trial: Vec<crate::gpu::auto::TrialFigure>,
}

impl Chosen {
    /// A choice made without a trial (a flag, a test).
    pub fn said(reason: &str) -> Chosen {
        Chosen {
            reason: reason.to_string(),
            trial: Vec::new(),
        }
    }
}

/// Picks the backend for a planned run, saying which and why. `--device auto` times the run's
/// own step on every hardware GPU and on the CPU and trains on the faster (`gpu::auto`).
pub fn make_backend(
    device: DeviceChoice,
    precision: Precision,
    plan: &Plan,
) -> Result<(Box<dyn Backend>, Chosen)> {
    let (spec, data) = (&plan.spec, plan.data.clone());
    let cpu = |why: String| -> Result<(Box<dyn Backend>, Chosen)> {
        let b: Box<dyn Backend> = match precision {
            Precision::F32 => Box::new(CpuBackend::<f32>::new(spec.clone(), data.clone())?),
            Precision::F64 => Box::new(CpuBackend::<f64>::new(spec.clone(), data.clone())?),
        };
        Ok((b, Chosen::said(&why)))
    };
    match (device, precision) {
        (DeviceChoice::Cpu, _) => cpu("--device cpu".into()),
        (DeviceChoice::Gpu, Precision::F64) => Err(Error::config(
            "--precision",
            "f64 runs on the CPU only (the GPU computes in f32); use --device cpu, or drop --precision f64",
        )),
        (DeviceChoice::Auto, Precision::F64) => {
            cpu("--device auto: --precision f64 runs on the CPU".into())
        }
        (DeviceChoice::Gpu, Precision::F32) => {
            let b = GpuBackend::new(Arc::new(Context::gpu()?), spec.clone(), data.clone())?;
            Ok((Box::new(b), Chosen::said("--device gpu")))
        }
        (DeviceChoice::Auto, Precision::F32) => {
            let (cpu_backend, _) = cpu(String::new())?;
            let trial = crate::gpu::auto::TrialSpec {
                method: plan.cfg.grad,
                batch: plan.cfg.batch,
                lr: plan.cfg.lr,
                seed: plan.cfg.seed,
            };
            let pick =
                crate::gpu::auto::auto_device(spec, data.clone(), &plan.params, &trial, cpu_backend)?;
            Ok((
                pick.backend,
                Chosen {
                    reason: pick.reason,
                    trial: pick.figures,
                },
            ))
        }
    }
}
