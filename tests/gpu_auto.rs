//! `--device auto` measured: the CPU and a GPU (lavapipe standing in for hardware) each time the
//! run's own step, the faster trains, and both figures come back in the reason. Runs on any
//! adapter; with CI=true a missing adapter fails instead of skipping.

mod common;
use common::mnist;

use gpu_train::backend::{Backend, Evaluation, GradMethod, Split};
use gpu_train::cpu::CpuBackend;
use gpu_train::gpu::auto::{pick_faster, TrialSpec};
use gpu_train::gpu::{Context, GpuBackend};
use gpu_train::model::{MlpSpec, Params};

/// The CPU backend, each step slowed by `delay`: a CPU slower than lavapipe, to show the choice
/// follows the figures.
struct Slow {
    inner: CpuBackend<f32>,
    delay: std::time::Duration,
}

impl Backend for Slow {
    fn name(&self) -> String {
        format!("slowed {}", self.inner.name())
    }
    fn spec(&self) -> &MlpSpec {
        self.inner.spec()
    }
    fn set_params(&mut self, p: &Params) -> gpu_train::Result<()> {
        self.inner.set_params(p)
    }
    fn params(&mut self) -> gpu_train::Result<Params> {
        self.inner.params()
    }
    fn set_batch(&mut self, i: &[u32]) -> gpu_train::Result<()> {
        self.inner.set_batch(i)
    }
    fn batch_loss(&mut self) -> gpu_train::Result<f64> {
        self.inner.batch_loss()
    }
    fn gradient(&mut self, m: GradMethod) -> gpu_train::Result<Vec<f64>> {
        self.inner.gradient(m)
    }
    fn step(&mut self, m: GradMethod, lr: f64) -> gpu_train::Result<()> {
        std::thread::sleep(self.delay);
        self.inner.step(m, lr)
    }
    fn evaluate(&mut self, s: Split) -> gpu_train::Result<Evaluation> {
        self.inner.evaluate(s)
    }
}

#[test]
fn auto_picks_the_faster_device_and_reports_both_figures() {
    let ctx = ctx_or_skip!();
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    let params = Params::init(&spec, 0);
    let trial = TrialSpec {
        method: GradMethod::Backprop,
        batch: 100,
        lr: 0.1,
        seed: 0,
    };
    let gpu = || -> Box<dyn Backend> {
        Box::new(GpuBackend::new(ctx.clone(), spec.clone(), mnist()).unwrap())
    };
    let cpu = Box::new(CpuBackend::<f32>::new(spec.clone(), mnist()).unwrap());

    // The real CPU against lavapipe (the same cores, emulating a GPU): the CPU wins.
    let pick = pick_faster(cpu, vec![gpu()], &mnist(), &params, &trial).unwrap();
    eprintln!("{}", pick.reason);
    assert_eq!(pick.figures.len(), 2);
    let (c, g) = (&pick.figures[0], &pick.figures[1]);
    assert!(c.device.starts_with("cpu") && g.device.starts_with("gpu"));
    assert!(c.seconds_per_step > 0.0 && g.seconds_per_step > 0.0);
    let faster = if c.seconds_per_step <= g.seconds_per_step {
        c
    } else {
        g
    };
    assert_eq!(pick.backend.name(), faster.device);
    assert!(pick.reason.contains(&c.device) && pick.reason.contains(&g.device));
    assert!(pick
        .reason
        .ends_with(&format!("{} is faster", faster.device)));
    // The chosen backend holds the run's starting parameters, not the trial's.
    let mut chosen = pick.backend;
    let kept = chosen.params().unwrap().data;
    assert!(
        kept.iter()
            .zip(&params.data)
            .all(|(&a, &b)| a == f64::from(b as f32)),
        "the chosen backend does not hold the starting parameters"
    );

    // A CPU slowed far past lavapipe's step (15-80 ms on two busy cores): the GPU wins.
    let slow = Box::new(Slow {
        inner: CpuBackend::<f32>::new(spec.clone(), mnist()).unwrap(),
        delay: std::time::Duration::from_millis(300),
    });
    let pick = pick_faster(slow, vec![gpu()], &mnist(), &params, &trial).unwrap();
    eprintln!("{}", pick.reason);
    assert!(pick.backend.name().starts_with("gpu"), "{}", pick.reason);
    assert!(pick.figures[0].seconds_per_step > pick.figures[1].seconds_per_step);
}

/// Software adapters are candidates only when allowed (GPU_TRAIN_AUTO_ALLOW_SOFTWARE=1).
#[test]
fn software_adapters_are_candidates_only_when_allowed() {
    let ctx = ctx_or_skip!();
    let allowed = Context::candidates(true).unwrap_or_else(|e| panic!("{e}"));
    assert!(!allowed.is_empty());
    if ctx.adapter_info().device_type == wgpu::DeviceType::Cpu {
        let hardware = Context::candidates(false);
        if let Ok(found) = &hardware {
            assert!(found
                .iter()
                .all(|c| c.adapter_info().device_type != wgpu::DeviceType::Cpu));
        }
    }
}
