//! A checkpoint loads in Python with safetensors + NumPy (README's block, run as written), and its forward
//! pass there agrees with ours. Runs where python3 has both packages; `.ci/run` installs them,
//! so with CI=true their absence fails.

use gpu_train::checkpoint;
use gpu_train::cpu::{forward::forward, Real};
use std::process::Command;

/// README's Python block that loads a checkpoint, with the list's indentation taken off (what a
/// reader's copy from the rendered page gives).
fn readme_block() -> String {
    let readme = include_str!("../README.md");
    let blocks: Vec<&str> = readme
        .split("```python\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .filter(|code| code.contains("safe_open"))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "README.md should have one block loading a checkpoint"
    );
    let indent = blocks[0]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    blocks[0]
        .lines()
        .map(|l| if l.len() >= indent { &l[indent..] } else { "" })
        .collect::<Vec<_>>()
        .join("\n")
}

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
        .args(["-c", &readme_block()])
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
