//! The GPU backend as an engine: chunks of iterations through `train_steps` (many iterations per
//! submission, the losses read back once per chunk), counted with `counters()`; the same losses
//! as the CPU f32 backend; the numerical gradient of the chunked path against the f64 oracle;
//! divergence found at the chunk's read-back and undone. Runs on any adapter, lavapipe included;
//! with CI=true a missing adapter fails instead of skipping.

mod common;
use common::mnist;

use gpu_train::backend::{Backend, DeviceCounters, GradMethod, PerturbStrategy, Split};
use gpu_train::cpu::CpuBackend;
use gpu_train::data::{Sampler, SamplerKind};
use gpu_train::gpu::{Context, GpuBackend, GpuOptions};
use gpu_train::model::{relative_error, Activation, MlpSpec, Params};
use gpu_train::tolerance::{F32_NUMERICAL_VS_F64, GPU_TRAINING_200_STEPS_REL};
use std::sync::Arc;

const NUMERICAL: GradMethod = GradMethod::Numerical {
    strategy: PerturbStrategy::Incremental,
    h: 1e-4,
};

/// `steps` batches of `batch` drawn like the driver draws them, back to back.
fn chunk(sampler: &mut Sampler, steps: usize, batch: usize) -> Vec<u32> {
    let mut all = Vec::with_capacity(steps * batch);
    let mut b = Vec::new();
    for _ in 0..steps {
        sampler.next_batch(batch, &mut b).unwrap();
        all.extend_from_slice(&b);
    }
    all
}

fn sampler(seed: u64) -> Sampler {
    Sampler::new(SamplerKind::WithReplacement, mnist().train.len(), seed).unwrap()
}

/// A backend on a device of its own, so that no other test's work enters its counters.
fn own_device(spec: &MlpSpec, seed: u64) -> Option<GpuBackend> {
    common::context()?;
    let ctx = Context::gpu().unwrap_or_else(|e| panic!("{e}"));
    let mut g = GpuBackend::new(Arc::new(ctx), spec.clone(), mnist()).unwrap();
    g.set_params(&Params::init(spec, seed)).unwrap();
    Some(g)
}

/// What a run of 1,200 iterations costs as the driver runs it (`--eval-every 600`): two chunks
/// of 600, each followed by the evaluation of both splits. Returns each interval's counts and
/// the chunks' own.
fn two_intervals(
    g: &mut GpuBackend,
    method: GradMethod,
    batch: usize,
) -> Vec<(DeviceCounters, DeviceCounters)> {
    let mut s = sampler(5);
    let mut out = Vec::new();
    for _ in 0..2 {
        let batches = chunk(&mut s, 600, batch);
        let before = g.counters().unwrap();
        let mut losses = Vec::new();
        let mut calls = 0;
        let outcome = g
            .train_steps(&batches, batch, method, 0.1, &mut losses, &mut |_| {
                calls += 1;
                true
            })
            .unwrap();
        assert_eq!((outcome.done, outcome.diverged), (600, None));
        assert_eq!(losses.len(), 600);
        assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0));
        assert!(calls >= 600 / 64, "progress heard {calls} times");
        let after_chunk = g.counters().unwrap();
        let train = g.evaluate(Split::Train).unwrap();
        let test = g.evaluate(Split::Test).unwrap();
        assert!(train.count > 0 && test.count > 0);
        let after = g.counters().unwrap();
        out.push((after.since(&before), after_chunk.since(&before)));
    }
    out
}

fn assert_counts(what: &str, intervals: &[(DeviceCounters, DeviceCounters)], per_iteration: u64) {
    for (i, (interval, chunk)) in intervals.iter().enumerate() {
        eprintln!(
            "{what}, interval {i}: {interval:?}; the 600-iteration chunk alone: {chunk:?} \
             ({:.3} dispatches, {:.4} copies, {:.4} waits per iteration)",
            chunk.dispatches as f64 / 600.0,
            chunk.copies as f64 / 600.0,
            chunk.blocking_waits as f64 / 600.0,
        );
        // The chunk waits once (its losses), each evaluation once.
        assert!(
            interval.blocking_waits <= 3,
            "{what}: {} blocking waits in an evaluation interval",
            interval.blocking_waits
        );
        // Per iteration, plus the chunk's final forward pass (gather, hidden layer, head).
        assert!(
            chunk.dispatches <= per_iteration * 600 + 3,
            "{what}: {} dispatches for 600 iterations",
            chunk.dispatches
        );
        // The chunk's indices (one write), its start parameters and its losses, and on the first
        // chunk the learning rate and h: none per iteration.
        assert!(chunk.copies <= 5, "{what}: {} copies", chunk.copies);
        assert!(
            chunk.submissions <= 600 / 64 + 2,
            "{what}: {} submissions",
            chunk.submissions
        );
    }
    assert_eq!(
        intervals[1].0.creations, 0,
        "{what}: creations after the first chunk and its evaluations"
    );
}

#[test]
fn a_numerical_run_costs_5_dispatches_an_iteration_and_one_wait_a_chunk() {
    // A narrow net: the counts do not depend on the width, lavapipe's time does.
    let spec = MlpSpec::two_layer(784, 4, 10).unwrap();
    let Some(mut g) = own_device(&spec, 1) else {
        return;
    };
    let counts = two_intervals(&mut g, NUMERICAL, 20);
    assert_counts("numerical", &counts, 5);
}

#[test]
fn a_backprop_run_costs_8_dispatches_an_iteration_and_one_wait_a_chunk() {
    // As above: the counts do not depend on the size (784-50-10 at batch 100 took 11 s here).
    let spec = MlpSpec::two_layer(784, 8, 10).unwrap();
    let Some(mut g) = own_device(&spec, 2) else {
        return;
    };
    let counts = two_intervals(&mut g, GradMethod::Backprop, 20);
    assert_counts("backprop", &counts, 8);
}

/// 200 iterations through `train_steps`: every loss (before its update) and the parameters at
/// the end agree with the CPU f32 backend's default `train_steps`.
fn losses_agree(spec: &MlpSpec, method: GradMethod, batch: usize) {
    let ctx = ctx_or_skip!();
    let p = Params::init(spec, 3);
    let mut g = GpuBackend::new(ctx, spec.clone(), mnist()).unwrap();
    let mut c = CpuBackend::<f32>::new(spec.clone(), mnist()).unwrap();
    g.set_params(&p).unwrap();
    c.set_params(&p).unwrap();
    let batches = chunk(&mut sampler(4), 200, batch);
    let (mut gl, mut cl) = (Vec::new(), Vec::new());
    let go = &mut |_| true;
    let go2 = &mut |_| true;
    let go_g = g
        .train_steps(&batches, batch, method, 0.1, &mut gl, go)
        .unwrap();
    let go_c = c
        .train_steps(&batches, batch, method, 0.1, &mut cl, go2)
        .unwrap();
    assert_eq!((go_g.done, go_c.done), (200, 200));
    assert_eq!((gl.len(), cl.len()), (200, 200));
    let worst = gl
        .iter()
        .zip(&cl)
        .map(|(a, b)| (a - b).abs() / b.abs())
        .fold(0.0, f64::max);
    let rel = relative_error(&g.params().unwrap().data, &c.params().unwrap().data);
    eprintln!(
        "{} {}: losses {:.4} -> {:.4}, worst loss difference {worst:.2e} relative, parameters {rel:.2e}",
        spec.describe(),
        method.describe(),
        cl[0],
        cl[199]
    );
    assert!(
        worst <= GPU_TRAINING_200_STEPS_REL,
        "losses differ by {worst:e} relative"
    );
    assert!(
        rel <= GPU_TRAINING_200_STEPS_REL,
        "parameters differ by {rel:e} relative"
    );
    assert!(cl[199] < cl[0], "a run that learned nothing");
}

#[test]
fn backprop_losses_of_200_iterations_equal_the_cpu_f32_run() {
    losses_agree(
        &MlpSpec::two_layer(784, 50, 10).unwrap(),
        GradMethod::Backprop,
        100,
    );
}

#[test]
fn numerical_losses_of_200_iterations_equal_the_cpu_f32_run() {
    losses_agree(&MlpSpec::two_layer(784, 10, 10).unwrap(), NUMERICAL, 50);
}

/// The chunked path's numerical gradient (its cache written in place by the forward pass) is
/// the f64 oracle's to F32_NUMERICAL_VS_F64.
#[test]
fn the_chunked_numerical_gradient_matches_the_f64_oracle() {
    let ctx = ctx_or_skip!();
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    let p = Params::init(&spec, 7);
    let mut g = GpuBackend::new(ctx, spec.clone(), mnist()).unwrap();
    g.set_params(&p).unwrap();
    let batches = chunk(&mut sampler(8), 1, 100);
    let mut losses = Vec::new();
    g.train_steps(&batches, 100, NUMERICAL, 0.1, &mut losses, &mut |_| true)
        .unwrap();
    let got = g.last_gradient().unwrap();
    let mut oracle = CpuBackend::<f64>::new(spec.clone(), mnist()).unwrap();
    oracle.set_params(&p).unwrap();
    oracle.set_batch(&batches).unwrap();
    let want = oracle.gradient(NUMERICAL).unwrap();
    let loss = oracle.batch_loss().unwrap();
    let rel = relative_error(&got, &want);
    eprintln!(
        "chunked numerical gradient vs the f64 oracle: {rel:.2e}; loss {} vs {loss}",
        losses[0]
    );
    assert!(rel <= F32_NUMERICAL_VS_F64, "relative error {rel:e}");
    assert!((losses[0] - loss).abs() <= 1e-5 * loss);
}

/// Learning rates that blow the relu net's parameters up (f32 overflow) after a few updates of a
/// chunk of 40 (measured: 1.2e20 never, 1.3e20 at the 4th update on both backends): a small one
/// never does, since the saturated net's gradient vanishes, and 2e20 already at the first.
const LATE_BLOW_UP_LRS: [f64; 4] = [1.3e20, 1.5e20, 1.7e20, 1.9e20];

/// The first of `lrs` under which `b` diverges at chunk iteration `min_k` or later: the chunk
/// reports the first update that made the parameters non-finite, keeps the parameters from
/// before it (finite, equal to running only the good updates on `fresh`), and every loss it
/// returns is finite. Returns (lr, k).
fn divergence_is_found_and_undone(
    b: &mut dyn Backend,
    fresh: &mut dyn Backend,
    lrs: &[f64],
    min_k: usize,
) -> (f64, usize) {
    let spec = b.spec().clone();
    let p = Params::init(&spec, 9);
    let batches = chunk(&mut sampler(10), 40, 20);
    for &lr in lrs {
        b.set_params(&p).unwrap();
        let mut losses = vec![1.0];
        let outcome = b
            .train_steps(
                &batches,
                20,
                GradMethod::Backprop,
                lr,
                &mut losses,
                &mut |_| true,
            )
            .unwrap();
        let Some(k) = outcome.diverged.filter(|&k| k >= min_k) else {
            continue;
        };
        assert_eq!(outcome.done, k);
        assert_eq!(losses.len(), 1 + k + 1, "{}", b.name());
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
        let kept = b.params().unwrap();
        assert!(kept.data.iter().all(|v| v.is_finite()));
        // The same k updates on a fresh backend give the same parameters, and no divergence.
        fresh.set_params(&p).unwrap();
        let mut again = Vec::new();
        let o = fresh
            .train_steps(
                &batches[..k * 20],
                20,
                GradMethod::Backprop,
                lr,
                &mut again,
                &mut |_| true,
            )
            .unwrap();
        assert_eq!((o.done, o.diverged), (k, None));
        assert_eq!(kept.data, fresh.params().unwrap().data, "{}", b.name());
        assert_eq!(again[..], losses[1..=k]);
        return (lr, k);
    }
    panic!(
        "{}: no lr of {lrs:?} diverged at iteration {min_k} or later",
        b.name()
    );
}

#[test]
fn divergence_names_the_iteration_and_keeps_finite_parameters_on_both_backends() {
    let ctx = ctx_or_skip!();
    let spec = MlpSpec::new(784, vec![20], 10, Activation::Relu).unwrap();
    let mut c = CpuBackend::<f32>::new(spec.clone(), mnist()).unwrap();
    let mut c2 = CpuBackend::<f32>::new(spec.clone(), mnist()).unwrap();
    let cpu = divergence_is_found_and_undone(&mut c, &mut c2, &LATE_BLOW_UP_LRS, 1);
    let cpu_first = divergence_is_found_and_undone(&mut c, &mut c2, &[1e25], 0);
    let mut g = GpuBackend::new(ctx.clone(), spec.clone(), mnist()).unwrap();
    let mut g2 = GpuBackend::new(ctx, spec.clone(), mnist()).unwrap();
    let gpu = divergence_is_found_and_undone(&mut g, &mut g2, &LATE_BLOW_UP_LRS, 1);
    let gpu_first = divergence_is_found_and_undone(&mut g, &mut g2, &[1e25], 0);
    eprintln!(
        "diverged (lr, at chunk iteration): cpu {cpu:?} {cpu_first:?}, gpu {gpu:?} {gpu_first:?}"
    );
}

/// A chunk longer than one device chunk holds (big batches: the indices must fit one binding)
/// runs in pieces with the same losses and parameters, and progress counts across them.
#[test]
fn a_chunk_longer_than_the_device_holds_runs_in_pieces() {
    let ctx = ctx_or_skip!();
    let spec = MlpSpec::two_layer(784, 20, 10).unwrap();
    let p = Params::init(&spec, 4);
    let options = GpuOptions {
        chunk_steps: Some(7),
        ..GpuOptions::default()
    };
    let mut pieces = GpuBackend::with_options(ctx.clone(), spec.clone(), mnist(), options).unwrap();
    let mut whole = GpuBackend::new(ctx, spec.clone(), mnist()).unwrap();
    let batches = chunk(&mut sampler(12), 30, 20);
    let mut heard = Vec::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    pieces.set_params(&p).unwrap();
    whole.set_params(&p).unwrap();
    let o = pieces
        .train_steps(&batches, 20, GradMethod::Backprop, 0.1, &mut a, &mut |n| {
            heard.push(n);
            true
        })
        .unwrap();
    whole
        .train_steps(&batches, 20, GradMethod::Backprop, 0.1, &mut b, &mut |_| {
            true
        })
        .unwrap();
    assert_eq!((o.done, o.diverged), (30, None));
    assert_eq!(a, b);
    assert_eq!(pieces.params().unwrap().data, whole.params().unwrap().data);
    assert_eq!(heard, vec![7, 14, 21, 28, 30]);
}

/// Records the backend's counters at every pause of the real driver.
struct CountAtPauses(Vec<(usize, DeviceCounters)>);

impl gpu_train::train::Observer for CountAtPauses {
    fn after_step(
        &mut self,
        done: usize,
        backend: &mut dyn Backend,
        _s: &gpu_train::data::SamplerState,
    ) -> gpu_train::Result<gpu_train::train::Control> {
        self.0.push((done, backend.counters().unwrap()));
        Ok(gpu_train::train::Control::Continue)
    }
}

/// The acceptance run through the real driver: 1,200 numerical iterations, an evaluation every
/// 600, no reference checks. The second interval (no first-chunk creations) makes at most 3
/// blocking waits, the evaluation's own included, 5 dispatches an iteration and no creations.
#[test]
fn the_driver_makes_three_waits_an_evaluation_interval() {
    let spec = MlpSpec::new(784, vec![10], 10, Activation::Sigmoid).unwrap();
    let Some(mut gpu) = own_device(&spec, 4) else {
        return;
    };
    let cfg = gpu_train::train::TrainConfig {
        iters: 1200,
        batch: 20,
        eval_every: 600,
        grad: NUMERICAL,
        ..Default::default()
    };
    let mut counts = CountAtPauses(Vec::new());
    gpu_train::train::train_from(&mut gpu, mnist().train.len(), &cfg, None, &mut counts).unwrap();
    let at: Vec<usize> = counts.0.iter().map(|c| c.0).collect();
    assert_eq!(at, vec![600, 1200]);
    let d = counts.0[1].1.since(&counts.0[0].1);
    // What the evaluation of both splits costs on its own, to tell the iterations' share.
    let before = gpu.counters().unwrap();
    gpu.evaluate(Split::Train).unwrap();
    gpu.evaluate(Split::Test).unwrap();
    let eval = gpu.counters().unwrap().since(&before);
    println!("second interval: {d:?}; of it, the evaluation: {eval:?}");
    assert!(d.blocking_waits <= 3, "{d:?}");
    // 5 an iteration, and one forward pass of the final parameters (divergence check).
    assert!(
        d.dispatches - eval.dispatches <= 5 * 600 + 5,
        "{d:?} {eval:?}"
    );
    // Per chunk: the indices, the parameter snapshot, the loss read-back; none an iteration.
    assert!(d.copies - eval.copies <= 3, "{d:?} {eval:?}");
    assert_eq!(d.creations, 0, "{d:?}");
}

/// Stops the run at `at` updates, keeping what a checkpoint would hold.
struct StopAt {
    at: usize,
    saved: Option<(Params, gpu_train::data::SamplerState)>,
}

impl gpu_train::train::Observer for StopAt {
    fn next_pause(&self, _done: usize) -> Option<usize> {
        Some(self.at)
    }
    fn after_step(
        &mut self,
        done: usize,
        backend: &mut dyn Backend,
        s: &gpu_train::data::SamplerState,
    ) -> gpu_train::Result<gpu_train::train::Control> {
        if done == self.at {
            self.saved = Some((backend.params()?, *s));
            return Ok(gpu_train::train::Control::Stop);
        }
        Ok(gpu_train::train::Control::Continue)
    }
}

/// Resume on the GPU ends bit-exact where an uninterrupted GPU run does (other chunk
/// boundaries, the same arithmetic step by step).
#[test]
fn a_resumed_gpu_run_ends_bit_exact_with_an_uninterrupted_one() {
    use gpu_train::train::{train_from, Start, TrainConfig};
    // Bit-exactness does not depend on the size: a narrow net and small batches.
    let spec = MlpSpec::two_layer(784, 16, 10).unwrap();
    let cfg = TrainConfig {
        iters: 250,
        batch: 20,
        eval_every: 100,
        grad: GradMethod::Backprop,
        seed: 8,
        ..Default::default()
    };
    let n = mnist().train.len();
    let Some(mut whole) = own_device(&spec, cfg.seed) else {
        return;
    };
    whole.set_params(&Params::init(&spec, cfg.seed)).unwrap();
    train_from(
        &mut whole,
        n,
        &cfg,
        None,
        &mut |_: &gpu_train::train::EvalRecord| {},
    )
    .unwrap();
    let mut first = own_device(&spec, cfg.seed).unwrap();
    first.set_params(&Params::init(&spec, cfg.seed)).unwrap();
    let mut stop = StopAt {
        at: 130,
        saved: None,
    };
    let s = train_from(&mut first, n, &cfg, None, &mut stop).unwrap();
    assert!(s.interrupted() && s.iters == 130);
    let (params, sampler) = stop.saved.unwrap();
    let mut resumed = own_device(&spec, cfg.seed).unwrap();
    resumed.set_params(&params).unwrap();
    let start = Start {
        iteration: 130,
        sampler,
        seconds: 0.0,
        pending: Default::default(),
    };
    train_from(
        &mut resumed,
        n,
        &cfg,
        Some(start),
        &mut |_: &gpu_train::train::EvalRecord| {},
    )
    .unwrap();
    assert_eq!(
        resumed.params().unwrap().data,
        whole.params().unwrap().data,
        "the resumed GPU run differs"
    );
}

/// The sparse first layer (shaders/sparse.wgsl, over the resident non-zero pixels) is
/// bit-identical to the dense matmul it replaces: the same fma chain in the same order. A split
/// cut into several device chunks has no resident non-zero index, so it trains through the
/// dense product; both runs must agree to the last bit, numerical and backprop, sigmoid and relu.
#[test]
fn the_sparse_first_layer_trains_bit_identically_to_the_dense_one() {
    let ctx = ctx_or_skip!();
    for (act, method) in [
        (Activation::Sigmoid, NUMERICAL),
        (Activation::Relu, GradMethod::Backprop),
    ] {
        let spec = MlpSpec::new(784, vec![20], 10, act).unwrap();
        let p = Params::init(&spec, 6);
        let dense_options = GpuOptions {
            data_chunk_rows: Some(7_000),
            ..GpuOptions::default()
        };
        let mut sparse = GpuBackend::new(ctx.clone(), spec.clone(), mnist()).unwrap();
        let mut dense =
            GpuBackend::with_options(ctx.clone(), spec.clone(), mnist(), dense_options).unwrap();
        assert!(
            sparse.sparse_first_layer(),
            "the embedded set should be resident sparse"
        );
        assert!(
            !dense.sparse_first_layer(),
            "a split in chunks should train dense"
        );
        let batches = chunk(&mut sampler(13), 40, 50);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        sparse.set_params(&p).unwrap();
        dense.set_params(&p).unwrap();
        sparse
            .train_steps(&batches, 50, method, 0.1, &mut a, &mut |_| true)
            .unwrap();
        dense
            .train_steps(&batches, 50, method, 0.1, &mut b, &mut |_| true)
            .unwrap();
        assert_eq!(a, b, "{act:?} losses");
        assert_eq!(
            sparse.params().unwrap().data,
            dense.params().unwrap().data,
            "{act:?} parameters"
        );
    }
}
