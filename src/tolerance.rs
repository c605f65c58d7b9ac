//! Every tolerance the project checks against, in one place, each with why it is what it is.
//!
//! Element-wise checks use `atol + rtol * |ref|`; whole-tensor checks use the relative error
//! ||out - ref|| / ||ref|| (`model::relative_error`).

/// An element-wise tolerance: |out - ref| <= atol + rtol * |ref|.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
}

impl Tolerance {
    pub const fn new(atol: f64, rtol: f64) -> Self {
        Tolerance { atol, rtol }
    }
    pub fn accepts(&self, out: f64, reference: f64) -> bool {
        (out - reference).abs() <= self.atol + self.rtol * reference.abs()
    }
}

/// Compares `out` with `reference` element by element. On failure the error lists the first few
/// (ref, out) pairs beyond tolerance and the worst error, so a failing test says where it broke.
pub fn compare(what: &str, out: &[f64], reference: &[f64], tol: Tolerance) -> Result<(), String> {
    if out.len() != reference.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            out.len(),
            reference.len()
        ));
    }
    let mut bad = Vec::new();
    let mut worst = (0usize, 0.0f64);
    for (i, (&o, &r)) in out.iter().zip(reference).enumerate() {
        let err = (o - r).abs();
        // A NaN error counts as the worst.
        if err.is_nan() || err > worst.1 || o.is_nan() {
            worst = (i, if err.is_nan() { f64::INFINITY } else { err });
        }
        if !tol.accepts(o, r) || !o.is_finite() {
            bad.push(i);
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    let pairs: Vec<String> = bad
        .iter()
        .take(6)
        .map(|&i| format!("[{i}] ref {:.9e} out {:.9e}", reference[i], out[i]))
        .collect();
    Err(format!(
        "{what}: {} of {} values beyond atol {:e} + rtol {:e} * |ref|; first: {}; worst at [{}]: |err| = {:.3e} (ref {:.9e}, out {:.9e})",
        bad.len(),
        out.len(),
        tol.atol,
        tol.rtol,
        pairs.join(", "),
        worst.0,
        worst.1,
        reference[worst.0],
        out[worst.0]
    ))
}

// ---- The chapter's worked values (the rows in src/math.rs's tests) ----

/// 1e-12 relative unless a row says otherwise: f64 round-off of short sums is ~1e-16, and the
/// worked values are quoted to ~15 digits. Not re-measured against each row.
pub const SEED_VALUE_RTOL: f64 = 1e-12;

// ---- CPU numerical gradient against the f64 oracle ----

/// f64 backprop vs f64 numerical gradient (h = 1e-4), relative: the central difference's
/// truncation error, O(h^2) times the loss's third derivative. Measured: 1.4e-9 (784-50-10 at
/// init) and 1.6e-9 (after 100 steps), 6.0e-9 on the random nets of the reference's tests: the
/// bound is 17x the worst. Backprop models the chapter's 1e-7 delta, otherwise the two differ
/// by 1.06e-6.
pub const F64_BACKPROP_VS_NUMERICAL: f64 = 1e-7;

/// The parameters after 300 training steps by the f64 numerical gradient against 300 by f64
/// backprop: the per-step difference above, carried through the steps. Measured 3.8e-9; 27x.
pub const F64_NUMERICAL_VS_BACKPROP_TRAINED: f64 = 1e-7;

/// f64 `full` vs `incremental`: the same function evaluated two ways; what separates them is
/// f64 round-off of losses near 1 divided by 2h, about 1e-16 / 1e-4 = 1e-12 per element, more
/// where an element's gradient is small. Measured 6.1e-11 on the reference's random nets
/// (1.6x).
pub const F64_FULL_VS_INCREMENTAL: f64 = 1e-10;

/// f32 numerical gradient vs the f64 oracle, every device and strategy: `incremental` computes
/// each sample's loss change from the cached pass (f32 round-off of a change ~1e-7 relative);
/// `full` carries its two whole passes in double-f32 on the GPU (their logits' difference keeps
/// ~1e-9 of itself, then the same careful loss change) and in f64 on the CPU (two f64 losses
/// subtract with digits to spare). The truncation error of the central difference is shared
/// with the oracle (or, where the checker compares with the oracle's backprop, 2e-9). Measured
/// on the CPU: 1.45e-7 at init, 4.6e-7 after 2,000 steps, 1.9e-7..3.4e-7 in a training run's
/// checks; lavapipe 1e-7..5e-7. The bound is 22x the worst.
pub const F32_NUMERICAL_VS_F64: f64 = 1e-5;

// ---- GPU kernels against the f64 oracle (f32 on the device) ----
// Measured on lavapipe (tests/gpu_kernels.rs prints them with --nocapture): each comment gives
// the worst seen, so the margin is visible. Re-measured 2026-12-01 with the bounds below, the
// worst element of each kernel used this share of its bound: bias gradient 28%, cross entropy
// 21%, sum of squares 19%, softmax 16%, output delta 14%, matmul 9%, SGD 9%, activation
// derivative 8%, mean 4%: every bound within 30x of what it guards.

/// Matmul (and fused bias + activation): f32 accumulation over K terms. With unit inputs the
/// partial sums reach ~sqrt(K), so the absolute error grows like K * 2^-24 * |terms|: measured
/// max |err| 3.6e-5 at K = 784 (whole-tensor relative 5e-7), hence an absolute floor of 1e-4
/// for elements that cancel to near zero. In the net (x in [0, 1], W ~ 0.01) it is far smaller.
pub const GPU_MATMUL: Tolerance = Tolerance::new(1e-4, 1e-4);

/// Softmax: exp and one division per element, plus a sum over the row; a few ulps. Measured
/// max |err| 2e-7 (relative 1.5e-7); [1010, 1000, 990] exact to 1.9e-8. Probabilities are at
/// most 1, so the bound is at most 1.3e-6: 6.5x.
pub const GPU_SOFTMAX: Tolerance = Tolerance::new(1e-6, 3e-7);

/// Cross entropy (and the sum of squares): a log of an f32 probability; a few ulps of ln's
/// argument. Measured max |err| 7.4e-7 on losses up to ~15 (relative 4e-8): the bound, at most
/// 1e-6 + 15 x 3e-7 = 5.5e-6, is 7x.
pub const GPU_CROSS_ENTROPY: Tolerance = Tolerance::new(1e-6, 3e-7);

/// Mean of per-sample values (one workgroup: strided f32 sums, then a tree): about log2(n)
/// ulps. Measured max |err| 1.3e-7 on means ~3 (relative 4e-8) up to n = 1000.
pub const GPU_MEAN: Tolerance = Tolerance::new(1e-7, 1e-6);

/// The same numerical gradient (`full`) from shaders built at two workgroup widths: the same
/// per-sample terms, only summed in another order (a tree over 32 or 64 partial sums instead of
/// 256), so a few f32 ulps of the sums: measured 1.5e-8 (64) and 3.4e-8 (32) on lavapipe, the
/// bound 30x. A reduction that ignored the width would drop samples: errors of order 1.
pub const GPU_REDUCTION_WIDTH_REL: f64 = 1e-6;

/// Output delta c_b (p - t) / B: a division and two products per element. Measured relative
/// 6.5e-8; the floor covers deltas of probabilities near zero.
pub const GPU_OUTPUT_DELTA: Tolerance = Tolerance::new(1e-9, 1e-6);

/// Bias gradient: f32 column sums over the batch (K = B terms). Measured max |err| 8.1e-6 on
/// sums of 257 unit values (relative 3e-7): the absolute floor is 1.2x it, the relative term
/// 10x.
pub const GPU_BIAS_GRAD: Tolerance = Tolerance::new(1e-5, 3e-6);

/// Activation derivative d * act'(a, z): two or three f32 operations; relu is exact. Measured
/// max |err| 2.4e-8 (relative 4e-8): 4x and 25x.
pub const GPU_ACTIVATION_GRAD: Tolerance = Tolerance::new(1e-7, 1e-6);

/// SGD params -= lr * grad: one f32 product and difference (possibly fused). Measured max |err|
/// 1.0e-7 on values ~1, i.e. one ulp: the bound on values ~1 is 1.1e-6, 11x.
pub const GPU_SGD: Tolerance = Tolerance::new(1e-7, 1e-6);

/// Backprop gradient, whole-vector relative error against the CPU f32 backprop: a chain of f32
/// matmuls (K up to the batch) summed in a different order. The checker holds every device's
/// backprop to it against the f64 reference: CPU f32 measured 2.1e-7 there (784-50-10, batch
/// 100, `gpu-train gradcheck --device cpu --batch 100`). The GPU's figure was not re-measured
/// with these changes, so the bound stays where it was.
pub const GPU_BACKPROP_REL: f64 = 1e-4;

/// 200 training steps on the GPU against the same 200 steps on the CPU f32 path (issue 3).
pub const GPU_TRAINING_200_STEPS_REL: f64 = 1e-4;

/// The absolute floor of a run's gradient check (`--check-every`, gradcheck): a tensor passes
/// when its relative error is within the method's tolerance OR no element is off by more than
/// this. f32 resolves each sample's loss change to ~eps_f32 of itself, i.e. each sample's
/// gradient to ~eps_f32 * |g_i|, and a per-sample gradient w.r.t. a logit is |p_k - t_k| <= 1;
/// the batch mean keeps that absolute error even when it is itself small by cancellation, as in
/// a net that has memorised its data (measured: b2 off by 1.26e-8 absolute, 1.27e-5 relative, at
/// step 3600 of a 100-image run). A wrong gradient (b2 1% off: ~1e-3 absolute) stays far above.
pub const GRADIENT_CHECK_ATOL: f64 = f32::EPSILON as f64;

// ---- The page (web/): the browser against the native CPU path ----

/// The loss at each evaluation of a page run (WebGPU in the browser, or the wasm CPU path)
/// against `gpu-train train --device cpu` natively, same seed, data and settings. Both are f32
/// runs of the same steps; what separates them is each device's round-off (summation order,
/// fused multiply-adds), carried through up to 1,000 updates, as GPU_TRAINING_200_STEPS_REL is
/// for parameters. Measured on SwiftShader and the wasm CPU path (300 numerical and 1,000
/// backprop iterations): at most 6.6e-8 and 1.8e-9. The bound is 150x the worst, room for a
/// hardware GPU's other summation orders (its reductions split the batch differently).
pub const WEB_LOSS_VS_NATIVE_CPU_REL: f64 = 1e-5;

/// The page's gradient checks against the f64 reference (whole vector, relative): the issue's
/// bound, 1e-6, tighter than F32_NUMERICAL_VS_F64 (which covers every device and net) because
/// the page trains only the chapter's sigmoid net at the chapter's h, whose checks measure
/// 1e-7..5e-7 on the CPU and lavapipe.
pub const WEB_NUMERICAL_CHECK_REL: f64 = 1e-6;

// ---- The GPU host-batch path (gpu::host, the Python package's device="gpu") vs the CPU host
// path (host.rs), same f32 inputs (tests/gpu_host.rs; measured on lavapipe) ----

/// Probabilities: two f32 forward passes whose sums run in different orders (the GPU's tiled
/// matmul, the CPU's `matrixmultiply`), K up to 3000 terms of normal inputs, then softmax (a few
/// ulps). Probabilities are at most 1; measured max |err| 2.4e-7 (784-50-10, batch 100, weights
/// of std 0.2), 1e-8..9e-8 elsewhere: the bound, at most 2e-6, is 4x the worst at its floor.
pub const HOST_GPU_VS_CPU_PROBS: Tolerance = Tolerance::new(1e-6, 1e-6);

/// The mean loss: the per-sample -ln(p_t + 1e-7) of those probabilities (relative error of p_t
/// becomes absolute error of the loss, ~1e-7 at a few ulps), averaged in f64 on both sides.
/// Measured max |err| 4.9e-7 (losses of a few units at weights of std 2), 2e-8..8e-8 at the
/// chapter's scales: the floor alone is 4x the worst.
pub const HOST_GPU_VS_CPU_LOSS: Tolerance = Tolerance::new(2e-6, 1e-6);

/// Gradients, whole-vector relative: each device's f32 gradient is within ~3e-7 of the f64
/// one (backprop: f32 matmuls; numerical: the careful per-sample loss change), so the two
/// differ by about as much. Measured 6e-8..6.4e-7 (worst: 784-1-10 at weights of std 0.6), the
/// chapter's 784-50-10 at batch 100 2.3e-7..3.5e-7: the bound is 16x the worst, and the same
/// as each path's own against f64 (`F32_NUMERICAL_VS_F64`).
pub const HOST_GPU_VS_CPU_GRAD_REL: f64 = 1e-5;
