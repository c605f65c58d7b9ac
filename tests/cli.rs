//! The binary as a user meets it: bad flags give a clear error naming the flag and a non-zero
//! exit, never a panic; --help and --version work.

use std::process::{Command, Output};

fn gpu_train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args(args)
        .env_remove("MNIST_DIR")
        .output()
        .expect("the binary runs")
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = gpu_train(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    for n in needles {
        assert!(
            stderr.contains(n),
            "{args:?}: stderr lacks {n:?}:\n{stderr}"
        );
    }
}

#[test]
fn bad_flags_are_clear_errors() {
    fails_with(&["train", "--batch", "0"], &["--batch", "at least 1"]);
    fails_with(&["train", "--lr", "0"], &["--lr", "positive"]);
    fails_with(&["train", "--lr", "-0.5"], &["--lr", "positive"]);
    fails_with(&["train", "--lr", "NaN"], &["--lr", "positive"]);
    fails_with(&["train", "--hidden", "0"], &["--hidden", "0 units"]);
    fails_with(
        &["train", "--hidden", "50,0"],
        &["--hidden", "hidden layer 2"],
    );
    fails_with(&["train", "--eval-every", "0"], &["--eval-every"]);
    fails_with(&["train", "--h", "0"], &["--h"]);
    fails_with(&["train", "--frobnicate"], &["--frobnicate"]);
    fails_with(
        &["train", "--device", "tpu"],
        &["--device", "auto", "cpu", "gpu"],
    );
    fails_with(&["train", "--batch", "many"], &["--batch"]);
}

#[test]
fn a_missing_data_dir_says_where_it_looked() {
    fails_with(
        &["train", "--data", "/nonexistent/mnist"],
        &["/nonexistent/mnist", "MNIST_DIR"],
    );
}

#[test]
fn help_and_version() {
    let out = gpu_train(&["train", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--device",
        "--grad",
        "--numgrad",
        "--data",
        "--hidden",
        "--activation",
        "--batch",
        "--lr",
        "--iters",
        "--seed",
        "--eval-every",
    ] {
        assert!(help.contains(flag), "help lacks {flag}");
    }
    let out = gpu_train(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_short_run_prints_evaluations_and_the_final_line() {
    let dir = std::env::temp_dir().join(format!("gpu-train-cli-short-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out_dir = dir.to_string_lossy().into_owned();
    let out = gpu_train(&[
        "train",
        "--device",
        "cpu",
        "--grad",
        "backprop",
        "--iters",
        "30",
        "--eval-every",
        "10",
        "--out",
        &out_dir,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("embedded MNIST subset"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("iter ")).count(),
        4,
        "iterations 0, 10, 20, 30:\n{stdout}"
    );
    assert!(stdout.contains("\niter     30 | epoch  0.10 |"), "{stdout}");
    // One check line at the first step, one summary; nothing from a driver; short lines.
    assert_eq!(stdout.matches("check at iteration").count(), 1, "{stdout}");
    assert!(
        stdout.contains("gradient checks: 3 passed, worst "),
        "{stdout}"
    );
    assert!(!stdout.contains("XDG_RUNTIME_DIR"), "{stdout}");
    let device = stdout.lines().find(|l| l.starts_with("device: ")).unwrap();
    assert!(device.len() < 100, "{device}");
    let lines: Vec<&str> = stdout.lines().collect();
    let n = lines.len();
    assert!(
        n >= 2
            && lines[n - 2].starts_with("final: iter 30 | epoch 0.10 | train loss ")
            && lines[n - 2].contains("| best test acc ")
            && lines[n - 2].contains(" it/s"),
        "{stdout}"
    );
    // The last line names the run's files, and they exist.
    assert!(lines[n - 1].starts_with("metrics: "), "{stdout}");
    for file in [
        "metrics.csv",
        "loss.png",
        "accuracy.png",
        "checkpoint.safetensors",
        "config.json",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
        if file != "config.json" {
            assert!(
                lines[n - 1].contains(&dir.join(file).to_string_lossy().into_owned()),
                "{stdout}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--device gpu` when no adapter matches (here: the name filter excludes every one, which is
/// what a machine without a GPU driver looks like) is a clear error and a non-zero exit.
#[test]
fn device_gpu_without_a_usable_adapter_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args([
            "train", "--device", "gpu", "--grad", "backprop", "--iters", "1",
        ])
        .env_remove("MNIST_DIR")
        .env("GPU_TRAIN_ADAPTER", "no-such-adapter-anywhere")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("no adapter matches") && stderr.contains("GPU_TRAIN_ADAPTER"),
        "{stderr}"
    );
}

/// An --out that cannot be created is an error before any training (no "iter" line), naming the
/// flag and the path.
#[test]
fn an_unwritable_out_is_an_error_before_training() {
    let dir = std::env::temp_dir().join(format!("gpu-train-cli-ro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let out_arg = file.join("run").to_string_lossy().into_owned();
    let out = gpu_train(&[
        "train", "--device", "cpu", "--grad", "backprop", "--iters", "10", "--out", &out_arg,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--out") && stderr.contains(&out_arg),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("iter "),
        "trained anyway"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The chapter's epoch: on the embedded set (30,000 images) evaluations fall every 300
/// iterations by default, and --quiet still says where the run went.
#[test]
fn evaluations_fall_once_an_epoch_and_quiet_names_the_run_folder() {
    let dir = std::env::temp_dir().join(format!("gpu-train-cli-epoch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out_dir = dir.to_string_lossy().into_owned();
    let out = gpu_train(&[
        "train", "--device", "cpu", "--grad", "backprop", "--epochs", "2", "--quiet", "--out",
        &out_dir,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>()[0],
        format!("run folder: {out_dir}"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("final: iter 600 | epoch 2.00"),
        "{stdout}"
    );
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let rows: Vec<(String, String)> = metrics
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].to_string())
        })
        .collect();
    let want: Vec<(String, String)> = [("0", "0.0000"), ("300", "1.0000"), ("600", "2.0000")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(rows, want);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_are_printed_for_bash() {
    let out = gpu_train(&["completions", "bash"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("gpu-train") && text.contains("--eval-every"),
        "{text}"
    );
}
