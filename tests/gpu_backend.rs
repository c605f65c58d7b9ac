//! The GPU backend against the CPU f32 backend on the same parameters and batches: one
//! backprop step, 200 training steps, evaluation of the test split (chunked and split data
//! included), a deeper relu net; and the device selection API. Runs on any adapter, lavapipe
//! included; with CI=true a missing adapter fails instead of skipping.

mod common;
use common::mnist;

use gpu_train::backend::{Backend, Evaluation, GradMethod, PerturbStrategy, Split};
use gpu_train::cpu::CpuBackend;
use gpu_train::data::{Sampler, SamplerKind};
use gpu_train::gpu::{self, AutoChoice, Context, GpuBackend, GpuOptions};
use gpu_train::model::{relative_error, Activation, MlpSpec, Params};
use gpu_train::tolerance::{GPU_BACKPROP_REL, GPU_TRAINING_200_STEPS_REL};
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 100;
const LR: f64 = 0.1;

fn two_layer() -> MlpSpec {
    MlpSpec::two_layer(784, 50, 10).unwrap()
}

/// A GPU and a CPU f32 backend on the same initial parameters.
fn pair(
    ctx: Arc<Context>,
    spec: &MlpSpec,
    seed: u64,
    options: GpuOptions,
) -> (GpuBackend, CpuBackend<f32>) {
    let mut g = GpuBackend::with_options(ctx, spec.clone(), mnist(), options)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = CpuBackend::<f32>::new(spec.clone(), mnist()).unwrap();
    let p = Params::init(spec, seed);
    g.set_params(&p).unwrap();
    c.set_params(&p).unwrap();
    (g, c)
}

/// The GPU's evaluation against the CPU f32's: same count, at most 2 samples decided the other way
/// (f32 sums in another order flip near-ties), mean loss to 1e-4 relative.
fn assert_evaluations_agree(ge: &Evaluation, ce: &Evaluation) {
    assert_eq!(ge.count, ce.count);
    assert!(
        ge.correct.abs_diff(ce.correct) <= 2,
        "correct: gpu {} cpu {}",
        ge.correct,
        ce.correct
    );
    assert!(
        (ge.loss - ce.loss).abs() <= 1e-4 * ce.loss,
        "loss: gpu {} cpu {}",
        ge.loss,
        ce.loss
    );
}

fn batches(seed: u64) -> Sampler {
    Sampler::new(SamplerKind::WithReplacement, mnist().train.len(), seed).unwrap()
}

#[test]
fn one_backprop_step_matches_the_cpu_f32_step() {
    let ctx = ctx_or_skip!();
    let spec = two_layer();
    let (mut g, mut c) = pair(ctx, &spec, 1, GpuOptions::default());
    let mut b = Vec::new();
    batches(2).next_batch(BATCH, &mut b).unwrap();
    g.set_batch(&b).unwrap();
    c.set_batch(&b).unwrap();

    let (gl, cl) = (g.batch_loss().unwrap(), c.batch_loss().unwrap());
    eprintln!("batch loss: gpu {gl:.9} cpu {cl:.9}");
    assert!(
        (gl - cl).abs() <= 1e-5 * cl.abs(),
        "batch loss gpu {gl} vs cpu {cl}"
    );

    let gg = g.gradient(GradMethod::Backprop).unwrap();
    let cg = c.gradient(GradMethod::Backprop).unwrap();
    let rel = relative_error(&gg, &cg);
    eprintln!("backprop gradient relative error, 784-50-10 sigmoid: {rel:.2e}");
    assert!(
        rel <= GPU_BACKPROP_REL,
        "gradient relative error {rel:e} > {GPU_BACKPROP_REL:e}"
    );
    for t in spec.tensors() {
        let r = relative_error(
            &gg[t.offset..t.offset + t.len],
            &cg[t.offset..t.offset + t.len],
        );
        assert!(r <= GPU_BACKPROP_REL, "{}: relative error {r:e}", t.name);
    }

    g.step(GradMethod::Backprop, LR).unwrap();
    c.step(GradMethod::Backprop, LR).unwrap();
    let rel = relative_error(&g.params().unwrap().data, &c.params().unwrap().data);
    eprintln!("parameters after one step, relative error {rel:.2e}");
    assert!(
        rel <= 1e-6,
        "parameters after one step: relative error {rel:e}"
    );
    // The loss at the new parameters (same batch: no new gather needed) also agrees.
    let (gl, cl) = (g.batch_loss().unwrap(), c.batch_loss().unwrap());
    assert!(
        (gl - cl).abs() <= 1e-5 * cl.abs(),
        "loss after the step: gpu {gl} vs cpu {cl}"
    );
}

#[test]
fn two_hundred_steps_then_evaluation_match_the_cpu_f32_run() {
    let ctx = ctx_or_skip!();
    let spec = two_layer();
    let (mut g, mut c) = pair(ctx, &spec, 3, GpuOptions::default());
    let mut sampler = batches(4);
    let mut b = Vec::new();
    let (mut gpu_time, mut cpu_time) = (0.0, 0.0);
    for _ in 0..200 {
        sampler.next_batch(BATCH, &mut b).unwrap();
        let t = Instant::now();
        g.set_batch(&b).unwrap();
        g.step(GradMethod::Backprop, LR).unwrap();
        gpu_time += t.elapsed().as_secs_f64();
        let t = Instant::now();
        c.set_batch(&b).unwrap();
        c.step(GradMethod::Backprop, LR).unwrap();
        cpu_time += t.elapsed().as_secs_f64();
    }
    let t = Instant::now();
    let gp = g.params().unwrap();
    gpu_time += t.elapsed().as_secs_f64();
    let rel = relative_error(&gp.data, &c.params().unwrap().data);
    eprintln!(
        "200 steps: parameters relative error {rel:.2e}; {:.2} ms/step on the GPU, {:.2} ms/step on the CPU f32",
        gpu_time * 5.0,
        cpu_time * 5.0
    );
    assert!(
        rel <= GPU_TRAINING_200_STEPS_REL,
        "after 200 steps: relative error {rel:e}"
    );

    let t = Instant::now();
    let ge = g.evaluate(Split::Test).unwrap();
    let eval_time = t.elapsed().as_secs_f64();
    let ce = c.evaluate(Split::Test).unwrap();
    eprintln!(
        "test split: gpu {}/{} loss {:.7}, cpu {}/{} loss {:.7} ({:.0} ms on the GPU)",
        ge.correct,
        ge.count,
        ge.loss,
        ce.correct,
        ce.count,
        ce.loss,
        eval_time * 1e3
    );
    assert_evaluations_agree(&ge, &ce);
    // A net that learned something (the chapter's sigmoid net at lr 0.1 is slow to start: its
    // loss falls from ln 10 = 2.303), so the agreement above is not two untouched nets.
    assert!(ge.loss < 2.25, "test loss after 200 steps {}", ge.loss);
}

#[test]
fn evaluation_in_chunks_over_split_data_agrees_with_the_cpu() {
    let ctx = ctx_or_skip!();
    let spec = two_layer();
    // Small evaluation chunks with a short last one, and the data set cut into many buffers:
    // the paths a large data set takes on an adapter with small bindings.
    let options = GpuOptions {
        data_chunk_rows: Some(997),
        eval_chunk_rows: Some(300),
        ..GpuOptions::default()
    };
    let (mut g, mut c) = pair(ctx, &spec, 5, options);
    let (train_chunks, test_chunks) = g.data_chunks();
    assert!(
        train_chunks > 1 && test_chunks > 1,
        "{train_chunks} {test_chunks}"
    );
    let mut b = Vec::new();
    batches(6).next_batch(257, &mut b).unwrap();
    g.set_batch(&b).unwrap();
    c.set_batch(&b).unwrap();
    let rel = relative_error(
        &g.gradient(GradMethod::Backprop).unwrap(),
        &c.gradient(GradMethod::Backprop).unwrap(),
    );
    assert!(
        rel <= GPU_BACKPROP_REL,
        "gradient from split data: relative error {rel:e}"
    );
    // The test split (the train split takes the same path through a bigger buffer set, and
    // 30,000 rows are slow on a software adapter).
    let ge = g.evaluate(Split::Test).unwrap();
    let ce = c.evaluate(Split::Test).unwrap();
    eprintln!(
        "test split in chunks: gpu {} loss {:.7}, cpu {} loss {:.7}",
        ge.correct, ge.loss, ce.correct, ce.loss
    );
    assert_evaluations_agree(&ge, &ce);
    // Evaluation leaves the training batch alone: the gradient is unchanged.
    let again = relative_error(
        &g.gradient(GradMethod::Backprop).unwrap(),
        &c.gradient(GradMethod::Backprop).unwrap(),
    );
    assert!(again <= GPU_BACKPROP_REL, "{again:e}");
}

#[test]
fn deeper_relu_and_sigmoid_nets_match_the_cpu_gradient() {
    let ctx = ctx_or_skip!();
    for (spec, batch) in [
        (
            MlpSpec::new(784, vec![64, 33], 10, Activation::Relu).unwrap(),
            100,
        ),
        (
            MlpSpec::new(784, vec![17, 9, 5], 10, Activation::Sigmoid).unwrap(),
            7,
        ),
        (
            MlpSpec::new(784, vec![40, 20], 10, Activation::Relu).unwrap(),
            1,
        ),
    ] {
        let (mut g, mut c) = pair(ctx.clone(), &spec, 7, GpuOptions::default());
        let mut b = Vec::new();
        batches(8).next_batch(batch, &mut b).unwrap();
        for step in 0..3 {
            g.set_batch(&b).unwrap();
            c.set_batch(&b).unwrap();
            let gg = g.gradient(GradMethod::Backprop).unwrap();
            let cg = c.gradient(GradMethod::Backprop).unwrap();
            let rel = relative_error(&gg, &cg);
            eprintln!(
                "{} batch {batch} step {step}: gradient relative error {rel:.2e}",
                spec.describe()
            );
            assert!(
                rel <= GPU_BACKPROP_REL,
                "{}: gradient relative error {rel:e}",
                spec.describe()
            );
            g.step(GradMethod::Backprop, LR).unwrap();
            c.step(GradMethod::Backprop, LR).unwrap();
        }
    }
}

#[test]
fn parameters_round_trip_and_misuse_is_a_clear_error() {
    let ctx = ctx_or_skip!();
    let spec = two_layer();
    let (mut g, _) = pair(ctx, &spec, 9, GpuOptions::default());
    let p = Params::init(&spec, 9);
    let back = g.params().unwrap();
    let want: Vec<f64> = p.to_f32().into_iter().map(f64::from).collect();
    assert_eq!(
        back.data, want,
        "set_params/params must round-trip f32 values exactly"
    );

    let e = g.batch_loss().unwrap_err().to_string();
    assert!(e.contains("set_batch"), "{e}");
    let e = g
        .set_batch(&[0, mnist().train.len() as u32])
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the training set"), "{e}");
    g.set_batch(&[1, 2, 3]).unwrap();
    // A non-finite step size is refused before anything is dispatched.
    let bad_h = GradMethod::Numerical {
        strategy: PerturbStrategy::Incremental,
        h: f64::NAN,
    };
    assert!(g.gradient(bad_h).is_err());
    let other = MlpSpec::two_layer(784, 20, 10).unwrap();
    assert!(g.set_params(&Params::init(&other, 0)).is_err());
    assert!(g.name().starts_with("gpu "), "{}", g.name());
}

#[test]
fn device_selection_reports_what_it_found() {
    let ctx = ctx_or_skip!();
    assert!(!ctx.describe().is_empty());
    let adapters = gpu::list_adapters();
    assert!(
        !adapters.is_empty(),
        "Context::gpu() found an adapter that list_adapters() does not show"
    );
    let report = gpu::devices_report();
    eprintln!("{report}");
    assert!(report.contains("--device auto picks"), "{report}");
    assert!(
        adapters.iter().any(|a| report.contains(&a.name)),
        "{report}"
    );
    // auto never picks a software adapter: with only those it says CPU, and why.
    let any_hardware = adapters.iter().any(|a| a.hardware && a.problem.is_none());
    match Context::auto().unwrap() {
        AutoChoice::Gpu(c) => {
            assert!(
                any_hardware,
                "auto picked {} although no hardware adapter is usable",
                c.describe()
            )
        }
        AutoChoice::Cpu { reason } => {
            assert!(
                !any_hardware || std::env::var(gpu::ADAPTER_ENV).is_ok(),
                "auto chose the CPU: {reason}"
            );
            assert!(
                reason.contains("software") || reason.contains("no "),
                "{reason}"
            );
        }
    }
}

#[test]
fn timestamps_time_the_batch_work_when_the_adapter_has_them() {
    let ctx = ctx_or_skip!();
    let spec = two_layer();
    let (mut g, _) = pair(
        ctx.clone(),
        &spec,
        3,
        GpuOptions {
            timestamps: true,
            ..GpuOptions::default()
        },
    );
    let mut s = batches(3);
    let mut idx = Vec::new();
    s.next_batch(100, &mut idx).unwrap();
    g.set_batch(&idx).unwrap();
    assert_eq!(
        g.last_device_seconds().unwrap(),
        None,
        "nothing recorded yet"
    );
    for what in ["loss", "gradient"] {
        let start = Instant::now();
        if what == "loss" {
            g.batch_loss().unwrap();
        } else {
            g.gradient(GradMethod::Backprop).unwrap();
        }
        let wall = start.elapsed().as_secs_f64();
        let device = g.last_device_seconds().unwrap();
        eprintln!(
            "{what}: wall {:.3} ms, timestamps {:?} ms",
            wall * 1e3,
            device.map(|d| d * 1e3)
        );
        match device {
            Some(d) => assert!(d > 0.0 && d <= wall, "{what}: device {d} s, wall {wall} s"),
            None => assert!(
                !ctx.has_timestamps(),
                "{what}: the device has timestamps but gave none"
            ),
        }
        // Read once: a second call has nothing new.
        assert_eq!(g.last_device_seconds().unwrap(), None);
    }
    // Off unless asked for: training never reads them.
    let (mut plain, _) = pair(ctx, &spec, 3, GpuOptions::default());
    plain.set_batch(&idx).unwrap();
    plain.gradient(GradMethod::Backprop).unwrap();
    assert_eq!(plain.last_device_seconds().unwrap(), None);
}

/// Listing adapters on a machine without a session prints nothing of the drivers' own (Mesa's
/// "XDG_RUNTIME_DIR is invalid or not set"), and each adapter's line stays one short line.
#[test]
fn listing_adapters_prints_no_driver_noise() {
    let _ctx = ctx_or_skip!();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "stderr: {stderr}");
    for line in stdout.lines().filter(|l| l.starts_with('[')) {
        assert!(line.chars().count() <= 100, "{line}");
    }
}

/// `train --device gpu` says what it does before its first line of figures (on a slow CPU,
/// lavapipe's pipelines and first evaluation took 26 s of silence), on stderr so stdout keeps
/// its header; `--quiet` stays quiet.
#[test]
fn train_on_the_gpu_says_what_it_does_while_it_starts() {
    let _ctx = ctx_or_skip!();
    let dir = std::env::temp_dir().join(format!("gpu-train-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |extra: &[&str], name: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-train"))
            .args([
                "train", "--device", "gpu", "--grad", "backprop", "--iters", "1",
            ])
            .args(["--check-every", "0"])
            .args(extra)
            .arg("--out")
            .arg(dir.join(name))
            .env_remove("MNIST_DIR")
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };
    let (stdout, stderr) = run(&[], "plain");
    assert!(stdout.starts_with("gpu-train "), "{stdout}");
    let status: Vec<&str> = stderr.lines().filter(|l| l.ends_with("...")).collect();
    assert_eq!(
        status,
        [
            "opening the GPU: building its pipelines, uploading the data...",
            "evaluating iteration 0 (the GPU compiles its kernels on first use)...",
        ],
        "{stderr}"
    );
    let (_, quiet) = run(&["--quiet"], "quiet");
    assert!(!quiet.contains("..."), "{quiet}");
    let _ = std::fs::remove_dir_all(&dir);
}
