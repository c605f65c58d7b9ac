//! The numerical gradient on the GPU (both strategies) against the f64 CPU oracle, on random
//! nets and on the chapter's 784-50-10 at init and after 1,000 backprop steps; what the careful
//! loss change buys `full`; the chunking of big models into several dispatches; and a training
//! run. Any adapter, lavapipe included; with CI=true a missing adapter FAILS.

mod common;
use common::mnist;

use gpu_train::backend::{Backend, GradMethod, PerturbStrategy};
use gpu_train::cpu::CpuBackend;
use gpu_train::data::{Sampler, SamplerKind};
use gpu_train::gpu::{GpuBackend, GpuOptions};
use gpu_train::model::{relative_error, Activation, MlpSpec, Params};
use gpu_train::tolerance::F32_NUMERICAL_VS_F64;
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
        &mut gpu_train::reference::ReferenceBackend::new(spec.clone(), mnist()).unwrap(),
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

/// Both strategies, {1, 2} hidden layers x {sigmoid, relu}, batch 20, seeds 0 and 1 in turn
/// (each net at both seeds cost 2x the time for the same property: on lavapipe a `full`
/// gradient costs about the same at any batch); `full` on these small nets already takes
/// several dispatches.
#[test]
fn gpu_numerical_gradient_matches_the_f64_oracle_on_random_nets() {
    let ctx = ctx_or_skip!();
    for (i, seed) in [0u64, 1].into_iter().cycle().enumerate().take(4) {
        for (hidden, act) in [
            (vec![16], Activation::Sigmoid),
            (vec![12], Activation::Relu),
            (vec![12, 8], Activation::Sigmoid),
            (vec![10, 7], Activation::Relu),
        ]
        .into_iter()
        .skip(i)
        .take(1)
        {
            let spec = MlpSpec::new(784, hidden, 10, act).unwrap();
            let params = random_params(&spec, seed);
            let b = batch(seed, 20);
            let want = oracle(&spec, &params, &b);
            let mut gpu = GpuBackend::new(ctx.clone(), spec.clone(), mnist()).unwrap();
            let inc = grad(&mut gpu, &params, &b, INCREMENTAL);
            let full = grad(&mut gpu, &params, &b, FULL);
            let (rel_inc, rel_full, rel_pair) = (
                relative_error(&inc, &want),
                relative_error(&full, &want),
                relative_error(&full, &inc),
            );
            let dispatches = gpu.numerical_dispatches(PerturbStrategy::Full).unwrap();
            println!(
                "seed {seed} {}: vs f64 oracle: gpu incremental {rel_inc:.2e}, gpu full {rel_full:.2e} ({dispatches} dispatches); full vs incremental {rel_pair:.2e}",
                spec.describe()
            );
            for (what, rel) in [
                ("incremental", rel_inc),
                ("full", rel_full),
                ("full vs incremental", rel_pair),
            ] {
                assert!(
                    rel <= F32_NUMERICAL_VS_F64,
                    "seed {seed} {} {what}: {rel:e}",
                    spec.describe()
                );
            }
            if spec.hidden.len() == 1 {
                assert!(dispatches > 1, "{dispatches}");
            }
        }
    }
}

/// The memo's direct path: at h = 1e-2 no shift is small enough for the 3-term series
/// (numerical_memo.wgsl's SMALL = 1e-3), so every unit's entries come from the per-class sum;
/// a relu net at that h also has units whose kink lies within the shift. Against the f64
/// oracle's numerical gradient at the same h (truncation is the same on both sides).
#[test]
fn the_memo_direct_path_matches_the_f64_oracle_at_a_large_h() {
    let ctx = ctx_or_skip!();
    let method = GradMethod::Numerical {
        strategy: PerturbStrategy::Incremental,
        h: 1e-2,
    };
    for act in [Activation::Sigmoid, Activation::Relu] {
        let spec = MlpSpec::new(784, vec![16], 10, act).unwrap();
        let params = random_params(&spec, 5);
        let b = batch(5, 20);
        let want = grad(
            &mut gpu_train::reference::ReferenceBackend::new(spec.clone(), mnist()).unwrap(),
            &params,
            &b,
            method,
        );
        let mut gpu = GpuBackend::new(ctx.clone(), spec.clone(), mnist()).unwrap();
        let got = grad(&mut gpu, &params, &b, method);
        let rel = relative_error(&got, &want);
        println!(
            "{} h = 1e-2: gpu memo (direct) vs f64 oracle {rel:.2e}",
            spec.describe()
        );
        assert!(rel <= F32_NUMERICAL_VS_F64, "{}: {rel:e}", spec.describe());
    }
}

/// What the careful loss change buys `full`: the same kernel and passes, but each sample's two
/// f32 losses subtracted (GpuOptions::subtract_losses), as the chapter does.
#[test]
fn full_without_the_careful_loss_change_loses_its_digits() {
    let ctx = ctx_or_skip!();
    for (hidden, act) in [
        (vec![8], Activation::Sigmoid),
        (vec![6, 5], Activation::Relu),
    ] {
        let spec = MlpSpec::new(784, hidden, 10, act).unwrap();
        let params = random_params(&spec, 3);
        let b = batch(3, 4);
        let want = oracle(&spec, &params, &b);
        let mut careful = GpuBackend::new(ctx.clone(), spec.clone(), mnist()).unwrap();
        let mut plain = GpuBackend::with_options(
            ctx.clone(),
            spec.clone(),
            mnist(),
            GpuOptions {
                subtract_losses: true,
                ..Default::default()
            },
        )
        .unwrap();
        let rel_careful = relative_error(&grad(&mut careful, &params, &b, FULL), &want);
        let rel_plain = relative_error(&grad(&mut plain, &params, &b, FULL), &want);
        println!(
            "{}: gpu full vs f64 oracle: careful loss change {rel_careful:.2e}, two f32 losses subtracted {rel_plain:.2e}",
            spec.describe()
        );
        assert!(rel_careful <= F32_NUMERICAL_VS_F64, "{rel_careful:e}");
        assert!(
            rel_plain > 100.0 * rel_careful,
            "{rel_plain:e} vs {rel_careful:e}"
        );
    }
}

/// `incremental` on batch 100 at both points; `full` on 2 samples, after the 1000 steps only,
/// still the chapter's K = 784 (on lavapipe one `full` gradient of 784-50-10 takes ~57 s
/// whatever the batch: the CPU emulates the GPU).
#[test]
fn gpu_numerical_on_784_50_10_at_init_and_after_1000_steps() {
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
        // The memo kernels (numerical_memo.wgsl): the table and the sums.
        assert_eq!(
            gpu.numerical_dispatches(PerturbStrategy::Incremental),
            Some(2)
        );
        if steps == 0 {
            continue;
        }
        let few = &b[..2];
        let want = oracle(&spec, &params, few);
        let full = grad(&mut gpu, &params, few, FULL);
        let inc = grad(&mut gpu, &params, few, INCREMENTAL);
        let (rel_full, rel_pair) = (relative_error(&full, &want), relative_error(&full, &inc));
        println!(
            "784-50-10 {what}, 2 samples: gpu full vs f64 oracle {rel_full:.2e}, full vs incremental {rel_pair:.2e}"
        );
        assert!(rel_full <= F32_NUMERICAL_VS_F64, "{what}: {rel_full:e}");
        assert!(rel_pair <= F32_NUMERICAL_VS_F64, "{what}: {rel_pair:e}");
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
    // `full` streams a single hidden layer, so 1000 units are no error of width; its many more
    // dispatches are checked by chunks_cover_every_parameter_once_and_grow_with_the_model (the
    // lib's unit test), since one `full` gradient of this net is ~1e14 multiply-adds. Where the
    // driver caps loop iterations (lavapipe), the launch is refused, not run wrong.
    gpu.set_batch(&b).unwrap();
    if let Some(cap) = gpu.context().loop_iteration_cap() {
        let e = gpu.gradient(FULL).unwrap_err().to_string();
        assert!(
            e.contains(&cap.to_string()) && e.contains("--numgrad incremental"),
            "{e}"
        );
    }
}

#[test]
fn gpu_numerical_training_follows_the_cpu() {
    let ctx = ctx_or_skip!();
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    let cfg = gpu_train::train::TrainConfig {
        iters: 20,
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
    println!("20 numerical steps, gpu vs cpu f32 parameters: {rel:.2e}");
    assert!(rel <= 1e-5, "{rel:e}");
}
