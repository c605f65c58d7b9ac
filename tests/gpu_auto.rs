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

/// The binary's `--device auto`, with lavapipe allowed as a candidate: config.json records both
/// trial figures and the reason that names them, and the final line says when the first step
/// began.
#[test]
fn auto_records_both_trial_figures_in_config_json() {
    let _ctx = ctx_or_skip!();
    let out = std::env::temp_dir().join(format!("gpu-train-auto-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args([
            "train", "--device", "auto", "--iters", "20", "--grad", "backprop",
        ])
        .args(["--eval-every", "20", "--check-every", "0", "--out"])
        .arg(&out)
        .env("GPU_TRAIN_AUTO_ALLOW_SOFTWARE", "1")
        .env_remove("MNIST_DIR")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let device = &config["device"];
    let trial = device["trial"].as_array().expect("device.trial is a list");
    assert!(trial.len() >= 2, "{device}");
    assert!(
        trial[0]["device"].as_str().unwrap().starts_with("cpu"),
        "{device}"
    );
    assert!(
        trial[1..]
            .iter()
            .all(|t| t["device"].as_str().unwrap().starts_with("gpu")),
        "{device}"
    );
    for t in trial {
        let s = t["seconds_per_step"].as_f64().unwrap();
        assert!(s > 0.0 && s < 10.0, "{t}");
        assert!(t["steps"].as_u64().unwrap() >= 2, "{t}");
    }
    let choice = device["choice"].as_str().unwrap();
    assert!(
        choice.contains("per step measured") && choice.contains("is faster"),
        "{choice}"
    );
    let fastest = trial
        .iter()
        .min_by(|a, b| {
            a["seconds_per_step"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["seconds_per_step"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(
        device["name"], fastest["device"],
        "the faster trains: {device}"
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("final:"))
        .unwrap();
    assert!(last.contains("s after start"), "{last}");
    let _ = std::fs::remove_dir_all(&out);
}
