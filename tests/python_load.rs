//! A checkpoint loads in Python with safetensors + NumPy (the README's lines), and its forward
//! pass there agrees with ours. Runs where python3 has both packages; `.ci/run` installs them,
//! so with CI=true their absence fails.

use gpu_train::checkpoint;
use gpu_train::cpu::{forward::forward, Real};
use std::process::Command;

#[test]
fn a_checkpoint_loads_in_python_with_numpy() {
    let has = Command::new("python3")
        .args(["-c", "import numpy, safetensors"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has {
        // .ci/run sets GPU_TRAIN_NO_PYTHON only when it tried to install them and could not.
        assert!(
            std::env::var("CI").as_deref() != Ok("true")
                || std::env::var_os("GPU_TRAIN_NO_PYTHON").is_some(),
            "python3 with numpy and safetensors is required in CI (pip install numpy safetensors)"
        );
        eprintln!(
            "skipped: python3 with numpy and safetensors not found (pip install numpy safetensors)"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("gpu-train-python-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args([
            "train",
            "--device",
            "cpu",
            "--grad",
            "backprop",
            "--iters",
            "200",
            "--eval-every",
            "1000",
            "--out",
        ])
        .arg(&dir)
        .env_remove("MNIST_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ckpt = dir.join("checkpoint.safetensors");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/load_checkpoint.py");
    let py = Command::new("python3")
        .arg(script)
        .arg(&ckpt)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&py.stdout);
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert!(
        text.contains("W1 (784, 50) float32")
            && text.contains("b2 (10,) float32")
            && text.contains("iteration 200"),
        "{text}"
    );
    // The same forward pass here.
    let c = checkpoint::load(&ckpt).unwrap();
    let p: Vec<f32> = c.params.to_f32();
    let cache = forward(&c.params.spec, &p, &vec![0.0f32; 784], 1);
    let ours = &cache.pre[1];
    let theirs: Vec<f64> = text
        .lines()
        .find(|l| l.starts_with("logits"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a.to_f64() - b).abs() < 1e-5, "logits: ours {a}, NumPy {b}");
    }
}
