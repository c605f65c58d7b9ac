//! The GPU host-batch path (`gpu::host::HostGpu` behind `host::HostNet::gpu`, what the Python
//! package's device="gpu" runs) against the CPU host path (`host::HostNet::cpu`) on the same
//! random float batches and parameters: predict, loss, accuracy, backprop and the `incremental`
//! numerical gradient, at the chapter's sizes and odd ones (hidden 1 and 7, batch 1, input 64,
//! output 26), a forward call of many rows (chunks and parts), and parameters changed between
//! calls. Runs on any adapter, lavapipe included; with CI=true a missing adapter fails.

mod common;

use gpu_train::backend::{GradMethod, PerturbStrategy};
use gpu_train::gpu::host::GpuDevice;
use gpu_train::host::{HostBatch, HostDevice, HostNet};
use gpu_train::model::{relative_error, MlpSpec};
use gpu_train::tolerance::{
    compare, HOST_GPU_VS_CPU_GRAD_REL, HOST_GPU_VS_CPU_LOSS, HOST_GPU_VS_CPU_PROBS,
};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::sync::OnceLock;

const NUMERICAL: GradMethod = GradMethod::Numerical {
    strategy: PerturbStrategy::Incremental,
    h: 1e-4,
};

fn device() -> Option<GpuDevice> {
    static DEV: OnceLock<Option<GpuDevice>> = OnceLock::new();
    DEV.get_or_init(|| {
        let ctx = common::context()?;
        Some(GpuDevice::new(ctx).unwrap_or_else(|e| panic!("{e}")))
    })
    .clone()
}

/// Random parameters (std `scale`), x (normal, a third of it zero, as pixels are often) and
/// labels for `rows` rows of `spec`.
fn random(spec: &MlpSpec, rows: usize, scale: f32, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<u8>) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut normal = move || {
        let (u, v): (f32, f32) = (rng.random_range(1e-7..1.0), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let params = (0..spec.num_params()).map(|_| scale * normal()).collect();
    let x = (0..rows * spec.input)
        .map(|i| if i % 3 == 0 { 0.0 } else { normal() })
        .collect();
    let mut rng = Pcg64::seed_from_u64(seed + 1);
    let labels = (0..rows)
        .map(|_| rng.random_range(0..spec.classes) as u8)
        .collect();
    (params, x, labels)
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| f64::from(a)).collect()
}

/// The probabilities within the bound, and the worst |error| printed.
fn probs_agree(got: &[f32], want: &[f32], what: &str) {
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("{what}: probabilities at most {worst:.2e} apart");
    if let Err(e) = compare(what, &f64s(got), &f64s(want), HOST_GPU_VS_CPU_PROBS) {
        panic!("predict: {e}");
    }
}

/// Every call on both devices; the errors, printed (--nocapture) and held to the bounds.
fn agree(gpu: &mut HostNet, cpu: &mut HostNet, params: &[f32], batch: &HostBatch, what: &str) {
    let probs = gpu.predict(params, batch).unwrap();
    probs_agree(&probs, &cpu.predict(params, batch).unwrap(), what);
    let (l, lw) = (
        gpu.loss(params, batch).unwrap(),
        cpu.loss(params, batch).unwrap(),
    );
    assert!(
        HOST_GPU_VS_CPU_LOSS.accepts(l, lw),
        "{what} loss {l} vs {lw}"
    );
    assert_eq!(
        gpu.correct(params, batch).unwrap(),
        cpu.correct(params, batch).unwrap(),
        "{what} correct"
    );
    let mut worst = 0.0f64;
    for (name, method) in [("backprop", GradMethod::Backprop), ("numerical", NUMERICAL)] {
        let g = gpu.gradient(params, batch, method).unwrap();
        let c = cpu.gradient(params, batch, method).unwrap();
        let rel = relative_error(&f64s(&g), &f64s(&c));
        eprintln!("{what} {name}: GPU vs CPU host path, relative {rel:.2e}");
        assert!(rel <= HOST_GPU_VS_CPU_GRAD_REL, "{what} {name}: {rel:.2e}");
        worst = worst.max(rel);
    }
    eprintln!(
        "{what}: loss {:.2e} apart, gradients at most {worst:.2e}",
        (l - lw).abs()
    );
}

#[test]
fn the_gpu_host_path_agrees_with_the_cpu_host_path() {
    let Some(dev) = device() else { return };
    // (input, hidden, output, rows, weight scale)
    let sizes = [
        (784, 50, 10, 3, 0.01),
        (784, 50, 10, 100, 0.1),
        (784, 1, 10, 3, 0.3),
        (64, 7, 26, 1, 0.3),
        (64, 7, 26, 9, 0.3),
        (64, 1, 26, 5, 0.3),
        (5, 3, 2, 2, 1.0),
    ];
    for (seed, &(input, hidden, output, rows, scale)) in sizes.iter().enumerate() {
        let spec = MlpSpec::two_layer(input, hidden, output).unwrap();
        let mut gpu = HostNet::gpu(spec.clone(), &dev).unwrap();
        assert_eq!(gpu.device(), HostDevice::Gpu);
        let mut cpu = HostNet::cpu(spec.clone());
        let (params, x, labels) = random(&spec, rows, scale, seed as u64);
        let batch = HostBatch {
            x: &x,
            rows,
            labels: &labels,
        };
        let what = format!("{} batch {rows}", spec.describe());
        agree(&mut gpu, &mut cpu, &params, &batch, &what);
        // New parameters on the same net (its buffers and plans reused): seen.
        let (params2, _, _) = random(&spec, rows, scale * 2.0, seed as u64 + 100);
        agree(
            &mut gpu,
            &mut cpu,
            &params2,
            &batch,
            &format!("{what}, new params"),
        );
    }
}

/// A forward call of many rows: chunks of the plan's rows in one submission, and X over one
/// part's 64 MiB in two submissions; every row's probabilities where the CPU has them.
#[test]
fn many_rows_run_in_chunks_and_parts() {
    let Some(dev) = device() else { return };
    for (input, rows) in [(64, 5000), (3000, 6000)] {
        let spec = MlpSpec::two_layer(input, 7, 10).unwrap();
        let mut gpu = HostNet::gpu(spec.clone(), &dev).unwrap();
        let mut cpu = HostNet::cpu(spec.clone());
        let (params, x, labels) = random(&spec, rows, 0.05, 7);
        let batch = HostBatch {
            x: &x,
            rows,
            labels: &labels,
        };
        let what = format!("{} on {rows} rows", spec.describe());
        let probs = gpu.predict(&params, &batch).unwrap();
        probs_agree(&probs, &cpu.predict(&params, &batch).unwrap(), &what);
        let (l, lw) = (
            gpu.loss(&params, &batch).unwrap(),
            cpu.loss(&params, &batch).unwrap(),
        );
        eprintln!("{what}: loss {:.2e} apart", (l - lw).abs());
        assert!(HOST_GPU_VS_CPU_LOSS.accepts(l, lw), "{what}: {l} vs {lw}");
        assert_eq!(
            gpu.correct(&params, &batch).unwrap(),
            cpu.correct(&params, &batch).unwrap(),
            "{what}"
        );
    }
}

/// Both devices refuse the same bad input with the same error, before any work.
#[test]
fn bad_inputs_are_the_same_errors_on_the_gpu() {
    let Some(dev) = device() else { return };
    let spec = MlpSpec::two_layer(6, 3, 4).unwrap();
    let mut gpu = HostNet::gpu(spec.clone(), &dev).unwrap();
    let mut cpu = HostNet::cpu(spec.clone());
    let (params, mut x, _) = random(&spec, 2, 0.3, 1);
    x[7] = f32::NAN;
    let labels = [0u8, 4];
    let batch = HostBatch {
        x: &x,
        rows: 2,
        labels: &labels,
    };
    let g = gpu.loss(&params, &batch).unwrap_err().to_string();
    assert_eq!(g, cpu.loss(&params, &batch).unwrap_err().to_string());
    assert!(g.contains("x[1, 1]"), "{g}");
}
