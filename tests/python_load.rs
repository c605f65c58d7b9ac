//! A checkpoint loads in Python with safetensors + NumPy (README's block, run as written), and its forward
//! pass there agrees with ours. Runs where python3 has both packages; `.ci/run` installs them,
//! so with CI=true their absence fails.

mod common;

use gpu_train::checkpoint;
use gpu_train::cpu::{forward::forward, Real};
use std::process::Command;

#[test]
fn a_checkpoint_loads_in_python_with_numpy() {
    if !common::python_has("numpy, safetensors") {
        return;
    }
    // The README's block runs in a folder holding runs/first, as after the README's step 2.
    let dir = std::env::temp_dir().join(format!("gpu-train-python-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = dir.join("runs/first");
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
            "--quiet",
            "--out",
        ])
        .arg(&run)
        .env_remove("MNIST_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ckpt = run.join("checkpoint.safetensors");
    let py = Command::new("python3")
        .args(["-c", &common::readme_python_block("safe_open")])
        .current_dir(&dir)
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
