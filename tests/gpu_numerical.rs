//! The numerical gradient on the GPU (both strategies) against the f64 CPU oracle, on random
//! nets and on the chapter's 784-50-10 at init and after 1,000 backprop steps; the chunking of
//! big models into several dispatches; and a training run. Any adapter, lavapipe included; with
//! CI=true a missing adapter FAILS.

mod common;
use common::mnist;

use gpu_train::backend::{Backend, GradMethod, PerturbStrategy};
use gpu_train::cpu::CpuBackend;
use gpu_train::data::{Sampler, SamplerKind};
use gpu_train::gpu::GpuBackend;
use gpu_train::model::{relative_error, Activation, MlpSpec, Params};
use gpu_train::tolerance::{F32_NUMERICAL_VS_F64, GPU_NUMERICAL_FULL_REL};
use rand::{Rng, SeedableRng};

const INCREMENTAL: GradMethod = gpu_train::check::numerical(PerturbStrategy::Incremental);
const FULL: GradMethod = gpu_train::check::numerical(PerturbStrategy::Full);

fn batch(seed: u64, rows: usize) -> Vec<u32> {
    let mut s = Sampler::new(SamplerKind::WithReplacement, mnist().train.len(), seed).unwrap();
    let mut b = Vec::new();
    s.next_batch(rows, &mut b).unwrap();
    b
}

fn grad<B: Backend>(
    backend: &mut B,
    params: &Params,
    indices: &[u32],
    method: GradMethod,
) -> Vec<f64> {
    backend.set_params(params).unwrap();
    backend.set_batch(indices).unwrap();
    backend.gradient(method).unwrap_or_else(|e| panic!("{e}"))
}

fn oracle(spec: &MlpSpec, params: &Params, indices: &[u32]) -> Vec<f64> {
    grad(
        &mut CpuBackend::<f64>::new(spec.clone(), mnist()).unwrap(),
        params,
        indices,
        INCREMENTAL,
    )
}

/// Random parameters large enough that the activations are far from linear.
fn random_params(spec: &MlpSpec, seed: u64) -> Params {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let data = (0..spec.num_params())
        .map(|_| rng.random_range(-0.3..0.3))
        .collect();
    Params::from_vec(spec, data).unwrap()
}

#[test]
fn gpu_numerical_gradient_matches_the_f64_oracle_on_random_nets() {
    let ctx = ctx_or_skip!();
    for seed in 0..2u64 {
        for (hidden, act) in [
            (vec![16], Activation::Sigmoid),
            (vec![12], Activation::Relu),
            (vec![12, 8], Activation::Sigmoid),
            (vec![10, 7], Activation::Relu),
        ] {
            let spec = MlpSpec::new(784, hidden, 10, act).unwrap();
            let params = random_params(&spec, seed);
            let b = batch(seed, 20);
            let want = oracle(&spec, &params, &b);
            let mut gpu = GpuBackend::new(ctx.clone(), spec.clone(), mnist()).unwrap();
            let inc = grad(&mut gpu, &params, &b, INCREMENTAL);
            let rel = relative_error(&inc, &want);
            println!(
                "seed {seed} {}: gpu incremental vs f64 oracle {rel:.2e}",
                spec.describe()
            );
            assert!(
                rel <= F32_NUMERICAL_VS_F64,
                "seed {seed} {}: {rel:e}",
                spec.describe()
            );
        }
    }
}

/// `full` runs a whole forward pass per perturbation: on lavapipe only small nets and batches
/// finish quickly, so this uses 784-8-10 (and 784-6-5-10) on 4 samples.
#[test]
fn gpu_full_matches_the_oracle_and_incremental_to_its_tolerance() {
    let ctx = ctx_or_skip!();
    for (hidden, act) in [
        (vec![8], Activation::Sigmoid),
        (vec![6, 5], Activation::Relu),
    ] {
        let spec = MlpSpec::new(784, hidden, 10, act).unwrap();
        let params = random_params(&spec, 3);
        let b = batch(3, 4);
        let want = oracle(&spec, &params, &b);
        let mut gpu = GpuBackend::new(ctx.clone(), spec.clone(), mnist()).unwrap();
        let full = grad(&mut gpu, &params, &b, FULL);
        let inc = grad(&mut gpu, &params, &b, INCREMENTAL);
        let (rel_full, rel_pair) = (relative_error(&full, &want), relative_error(&full, &inc));
        println!(
            "{}: gpu full vs f64 oracle {rel_full:.2e}, full vs incremental {rel_pair:.2e}",
            spec.describe()
        );
        assert!(
            rel_full <= GPU_NUMERICAL_FULL_REL,
            "{}: {rel_full:e}",
            spec.describe()
        );
        assert!(
            rel_pair <= GPU_NUMERICAL_FULL_REL,
            "{}: {rel_pair:e}",
            spec.describe()
        );
    }
}

#[test]
fn gpu_incremental_on_784_50_10_at_init_and_after_1000_steps() {
    let ctx = ctx_or_skip!();
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    let mut cpu = CpuBackend::<f32>::new(spec.clone(), mnist()).unwrap();
    cpu.set_params(&Params::init(&spec, 0)).unwrap();
    let mut s = Sampler::new(SamplerKind::WithReplacement, mnist().train.len(), 1).unwrap();
    let mut idx = Vec::new();
    let mut gpu = GpuBackend::new(ctx, spec.clone(), mnist()).unwrap();
    for (what, steps) in [("at init", 0), ("after 1000 backprop steps", 1000)] {
        for _ in 0..steps {
            s.next_batch(100, &mut idx).unwrap();
            cpu.set_batch(&idx).unwrap();
            cpu.step(GradMethod::Backprop, 0.1).unwrap();
        }
        let params = cpu.params().unwrap();
        let b = batch(11, 100);
        let want = oracle(&spec, &params, &b);
        let got = grad(&mut gpu, &params, &b, INCREMENTAL);
        let rel = relative_error(&got, &want);
        println!("784-50-10 {what}: gpu incremental vs f64 oracle {rel:.2e}");
        assert!(rel <= F32_NUMERICAL_VS_F64, "{what}: {rel:e}");
        assert_eq!(
            gpu.numerical_dispatches(PerturbStrategy::Incremental),
            Some(1)
        );
    }
}

#[test]
fn a_784_1000_10_net_runs_in_more_dispatches() {
    let ctx = ctx_or_skip!();
    let spec = MlpSpec::two_layer(784, 1000, 10).unwrap();
    let params = Params::init(&spec, 2);
    let b = batch(5, 100);
    let want = oracle(&spec, &params, &b);
    let mut gpu = GpuBackend::new(ctx, spec.clone(), mnist()).unwrap();
    let got = grad(&mut gpu, &params, &b, INCREMENTAL);
    let dispatches = gpu
        .numerical_dispatches(PerturbStrategy::Incremental)
        .unwrap();
    let rel = relative_error(&got, &want);
    println!("784-1000-10: {dispatches} dispatches, gpu incremental vs f64 oracle {rel:.2e}");
    assert!(dispatches > 1, "{dispatches}");
    assert!(rel <= F32_NUMERICAL_VS_F64, "{rel:e}");
    // `full` keeps whole layers in registers: a 1000-wide one is a clear error, not a wrong answer.
    gpu.set_batch(&b).unwrap();
    let e = gpu.gradient(FULL).unwrap_err().to_string();
    assert!(
        e.contains("at most 256") && e.contains("--numgrad incremental"),
        "{e}"
    );
}

#[test]
fn gpu_numerical_training_follows_the_cpu() {
    let ctx = ctx_or_skip!();
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    let cfg = gpu_train::train::TrainConfig {
        iters: 40,
        eval_every: 1000,
        seed: 4,
        ..Default::default()
    };
    let mut gpu = GpuBackend::new(ctx, spec.clone(), mnist()).unwrap();
    let mut cpu = CpuBackend::<f32>::new(spec.clone(), mnist()).unwrap();
    for b in [&mut gpu as &mut dyn Backend, &mut cpu as &mut dyn Backend] {
        b.set_params(&Params::init(&spec, cfg.seed)).unwrap();
        gpu_train::train::train(
            b,
            mnist().train.len(),
            &cfg,
            |_: &gpu_train::train::EvalRecord| {},
        )
        .unwrap();
    }
    let rel = relative_error(&gpu.params().unwrap().data, &cpu.params().unwrap().data);
    println!("40 numerical steps, gpu vs cpu f32 parameters: {rel:.2e}");
    assert!(rel <= 1e-5, "{rel:e}");
}
