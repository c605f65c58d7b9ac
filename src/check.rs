//! Gradient checks: a device's gradient against the f64 CPU reference, per parameter tensor
//! (W1, b1, ...), as the chapter's sequel does its gradient_check.

use crate::backend::{Backend, GradMethod, PerturbStrategy, DEFAULT_H};
use crate::data::Mnist;
use crate::error::{Error, Result};
use crate::model::{relative_error, Activation, MlpSpec};
use crate::reference::ReferenceBackend;
use crate::tolerance::{F32_NUMERICAL_VS_F64, GPU_BACKPROP_REL, GRADIENT_CHECK_ATOL};
use std::sync::Arc;

/// One tensor's comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorError {
    pub name: String,
    pub relative: f64,
    pub max_abs: f64,
}

/// Compares `got` with `reference` tensor by tensor, and over the whole vector.
pub fn per_tensor(spec: &MlpSpec, got: &[f64], reference: &[f64]) -> (Vec<TensorError>, f64) {
    let tensors = spec
        .tensors()
        .into_iter()
        .map(|t| {
            let (g, r) = (
                &got[t.offset..t.offset + t.len],
                &reference[t.offset..t.offset + t.len],
            );
            let max_abs = g
                .iter()
                .zip(r)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            TensorError {
                name: t.name,
                relative: relative_error(g, r),
                max_abs,
            }
        })
        .collect();
    (tensors, relative_error(got, reference))
}

/// The tolerance a device's gradient is held to against the f64 oracle of the same method.
pub fn tolerance_for(method: GradMethod) -> f64 {
    match method {
        GradMethod::Backprop => GPU_BACKPROP_REL,
        GradMethod::Numerical { .. } => F32_NUMERICAL_VS_F64,
    }
}

/// Whether a gradient passes against its reference: the whole vector and every tensor within
/// `tolerance_for(method)` (relative); a NaN fails. gradcheck's PASS/FAIL.
pub fn verdict(method: GradMethod, tensors: &[TensorError], total: f64) -> bool {
    let tol = tolerance_for(method);
    let small = tensors.iter().all(|t| t.max_abs <= GRADIENT_CHECK_ATOL);
    (total <= tol || small) && tensors.iter().all(|t| tensor_passes(method, t))
}

/// One tensor against its reference: within the method's relative tolerance, or every element
/// within the absolute floor `GRADIENT_CHECK_ATOL` (tiny gradients); a NaN fails.
pub fn tensor_passes(method: GradMethod, t: &TensorError) -> bool {
    t.relative <= tolerance_for(method) || t.max_abs <= GRADIENT_CHECK_ATOL
}

/// Re-computes a step's gradient on the f64 CPU reference and compares.
pub struct Checker {
    oracle: ReferenceBackend,
}

impl Checker {
    pub fn new(spec: MlpSpec, data: Arc<Mnist>) -> Result<Self> {
        Ok(Checker {
            oracle: ReferenceBackend::new(spec, data)?,
        })
    }

    /// The device's gradient of the current batch against the oracle's. Backprop is checked
    /// against the reference's backprop. The numerical gradient at the chapter's h (or a smaller
    /// one) is too: the central difference's truncation error there is ~2e-9 relative
    /// (F64_BACKPROP_VS_NUMERICAL's measured figure), far below the 1e-5 it is held to, and the
    /// reference's own numerical gradient costs ~100x a device step, which at every evaluation
    /// would slow the default run by over 20%. A larger h, or relu (whose kink makes a central
    /// difference straddling it differ from the derivative), is checked against the reference's
    /// numerical gradient. An error names the step, the tensor and the error when beyond
    /// tolerance.
    pub fn check(
        &mut self,
        step: usize,
        device: &mut dyn Backend,
        batch: &[u32],
        method: GradMethod,
    ) -> Result<(f64, Vec<TensorError>)> {
        crate::wait::block(self.check_async(step, device, batch, method))
    }

    /// [`check`](Self::check), awaiting the device's read-backs: what the page runs.
    pub async fn check_async(
        &mut self,
        step: usize,
        device: &mut dyn Backend,
        batch: &[u32],
        method: GradMethod,
    ) -> Result<(f64, Vec<TensorError>)> {
        let got = device.gradient_async(method).await?;
        self.oracle.set_params(&device.params_async().await?)?;
        self.oracle.set_batch(batch)?;
        let reference_method = match method {
            GradMethod::Backprop => GradMethod::Backprop,
            GradMethod::Numerical { h, .. }
                if h <= DEFAULT_H && device.spec().activation == Activation::Sigmoid =>
            {
                GradMethod::Backprop
            }
            GradMethod::Numerical { h, .. } => GradMethod::Numerical {
                strategy: PerturbStrategy::Incremental,
                h,
            },
        };
        let reference = self.oracle.gradient(reference_method)?;
        let (tensors, total) = per_tensor(device.spec(), &got, &reference);
        let tol = tolerance_for(method);
        if let Some(worst) = tensors
            .iter()
            .filter(|t| !tensor_passes(method, t))
            .max_by(|a, b| a.relative.total_cmp(&b.relative))
        {
            let name = device.name();
            let advice = if name.starts_with("cpu") {
                "report it with the command that shows it"
            } else {
                "report it, and use --device cpu meanwhile"
            };
            return Err(Error::Numerics(format!(
                "gradient check failed at iteration {step}: {} on {name} differs from the f64 reference by {:.3e} relative \
                 and {:.3e} at most (tolerance {tol:e} relative or {GRADIENT_CHECK_ATOL:.1e} absolute); the {} gradient is wrong: {advice}",
                worst.name,
                worst.relative,
                worst.max_abs,
                method.describe()
            )));
        }
        Ok((total, tensors))
    }
}

/// The numerical gradient with the chapter's h.
pub const fn numerical(strategy: PerturbStrategy) -> GradMethod {
    GradMethod::Numerical {
        strategy,
        h: DEFAULT_H,
    }
}
