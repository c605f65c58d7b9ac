//! Hostile input, as issue 11 found it: each case crashed, hung, allocated gigabytes or said
//! the wrong thing, and must now be a clear, prompt error naming the file or flag. (The memory
//! bounds of the readers are measured in tests/fuzz.rs, whose allocator counts.)

use gpu_train::checkpoint::{self, Checkpoint, StoredPrecision};
use gpu_train::cpu::CpuBackend;
use gpu_train::data::{self, Dataset, Mnist, SamplerState};
use gpu_train::model::{MlpSpec, Params};
use gpu_train::train::TrainConfig;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gpu-train-hardening-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Runs the binary with a small memory limit; kills it (and fails) if it has not ended within
/// `limit`: a blocked reader must show up as a failure, not a hung test run.
fn gpu_train(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args(args)
        .env_remove("MNIST_DIR")
        .env("GPU_TRAIN_MAX_MEMORY_BYTES", (4u64 << 30).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[track_caller]
fn fails_with(args: &[&str], needles: &[&str]) -> String {
    let out = gpu_train(args, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    for n in needles {
        assert!(
            stderr.contains(n),
            "{args:?}: stderr lacks {n:?}:\n{stderr}"
        );
    }
    stderr
}

fn images_file(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [0x0803, count, rows, cols] {
        bytes.extend_from_slice(&u32::to_be_bytes(word));
    }
    bytes.extend((0..count * rows * cols).map(|i| i as u8));
    bytes
}

fn labels_file(count: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [0x0801, count] {
        bytes.extend_from_slice(&u32::to_be_bytes(word));
    }
    bytes.extend((0..count).map(|i| (i % 10) as u8));
    bytes
}

/// A data directory of `count` train and test images, of `train` and `test` rows x cols.
fn data_dir(name: &str, count: u32, train: (u32, u32), test: (u32, u32)) -> PathBuf {
    let dir = temp_dir(name);
    let w = |n: &str, b: Vec<u8>| std::fs::write(dir.join(n), b).unwrap();
    w(data::TRAIN_IMAGES, images_file(count, train.0, train.1));
    w(data::TEST_IMAGES, images_file(count, test.0, test.1));
    w(data::TRAIN_LABELS, labels_file(count));
    w(data::TEST_LABELS, labels_file(count));
    dir
}

fn good_checkpoint(params: Params) -> Checkpoint {
    Checkpoint {
        params,
        iteration: 0,
        sampler: SamplerState::fresh(Default::default(), 30_000, 0),
        config: TrainConfig::default(),
        pending: Default::default(),
        notes: HashMap::new(),
    }
}

/// `bytes` (a checkpoint) with metadata `key` set to `value`, re-serialised (the header grows or
/// shrinks as it must).
fn with_meta(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    meta.insert(key.into(), value.into());
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    safetensors::serialize(tensors, Some(meta)).unwrap()
}

#[test]
fn test_images_of_another_size_are_an_error_naming_both_files() {
    // Was: a CPU panic in matmul (exit 101); the GPU accepted it silently.
    let dir = data_dir("sizes", 20, (28, 28), (28, 27));
    let e = data::load(Some(&dir)).unwrap_err().to_string();
    assert!(
        e.contains("t10k-images-idx3-ubyte")
            && e.contains("train-images-idx3-ubyte")
            && e.contains("28x27")
            && e.contains("28x28"),
        "{e}"
    );
    fails_with(
        &[
            "train",
            "--device",
            "cpu",
            "--data",
            dir.to_str().unwrap(),
            "--iters",
            "1",
        ],
        &["28x27", "28x28", "t10k-images-idx3-ubyte"],
    );
    // A data set built in code goes through the backends' own check (the GPU's too).
    let set = |rows, cols| {
        let n = 4usize;
        let labels = vec![1u8; n];
        Dataset::new(vec![0; n * rows * cols], labels, rows, cols, 10, "mem").unwrap()
    };
    let mnist = Arc::new(Mnist {
        train: set(28, 28),
        test: set(20, 20),
        class_names: None,
        class_warning: None,
    });
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    assert!(gpu_train::backend::check_spec_fits(&spec, &mnist).is_err());
    assert!(CpuBackend::<f32>::new(spec, mnist).is_err());
}

#[test]
fn fifos_directories_devices_and_dangling_links_are_named_for_what_they_are() {
    // Was: "MNIST file not found" for each; a FIFO blocked the reader.
    let cases: [(&str, &str); 4] = [
        ("dir", "directory"),
        ("fifo", "FIFO"),
        ("device", "device"),
        ("dangling", "symbolic link"),
    ];
    for (kind, needle) in cases {
        let dir = data_dir(&format!("kind-{kind}"), 4, (2, 2), (2, 2));
        let target = dir.join(data::TRAIN_IMAGES);
        std::fs::remove_file(&target).unwrap();
        match kind {
            "dir" => std::fs::create_dir(&target).unwrap(),
            "fifo" => mkfifo(&target),
            "device" => std::os::unix::fs::symlink("/dev/zero", &target).unwrap(),
            _ => std::os::unix::fs::symlink(dir.join("nowhere"), &target).unwrap(),
        }
        let e = data::load(Some(&dir)).unwrap_err().to_string();
        assert!(
            e.contains(needle) && e.contains(data::TRAIN_IMAGES) && !e.contains("not found"),
            "{kind}: {e}"
        );
    }
    // A link to a regular file is followed.
    let dir = data_dir("kind-link", 4, (2, 2), (2, 2));
    let real = dir.join("real-images");
    std::fs::rename(dir.join(data::TRAIN_IMAGES), &real).unwrap();
    std::os::unix::fs::symlink(&real, dir.join(data::TRAIN_IMAGES)).unwrap();
    assert_eq!(data::load(Some(&dir)).unwrap().train.len(), 4);
}

#[test]
fn weights_that_are_a_fifo_or_dev_zero_are_refused_at_once() {
    // Was: a FIFO blocked forever; /dev/zero grew about 1 GB/s.
    let dir = temp_dir("weights");
    let fifo = dir.join("w.safetensors");
    mkfifo(&fifo);
    for (weights, needle) in [(fifo.to_str().unwrap(), "FIFO"), ("/dev/zero", "device")] {
        let out = gpu_train(&["eval", "--weights", weights], Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(weights) && stderr.contains(needle),
            "{stderr}"
        );
        let e = checkpoint::load(Path::new(weights))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{e}");
    }
}

#[test]
fn a_checkpoint_claiming_a_huge_net_is_an_error_before_any_allocation() {
    // Was: an abort on a 600 GB allocation, or a capacity-overflow panic.
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    let good = checkpoint::to_bytes(
        &good_checkpoint(Params::init(&spec, 1)),
        StoredPrecision::F32,
    )
    .unwrap();
    let path = Path::new("huge.safetensors");
    for (hidden, needle) in [
        ("[100000000000]", "W1 has shape"),
        ("[18446744073709551615]", "more parameters than"),
        ("[4294967296, 4294967296]", "more parameters than"),
        (&format!("[{}]", vec!["1"; 300].join(",")), "hidden layers"),
    ] {
        let spec_json =
            format!(r#"{{"input":784,"hidden":{hidden},"classes":10,"activation":"sigmoid"}}"#);
        let bytes = with_meta(&good, "spec", &spec_json);
        let e = checkpoint::from_bytes(path, &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("huge.safetensors") && e.contains(needle),
            "{hidden}: {e}"
        );
    }
}

#[test]
fn a_checkpoint_whose_header_length_exceeds_the_file_is_named() {
    let spec = MlpSpec::two_layer(4, 3, 10).unwrap();
    let mut bytes = checkpoint::to_bytes(
        &good_checkpoint(Params::init(&spec, 1)),
        StoredPrecision::F32,
    )
    .unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = checkpoint::from_bytes(Path::new("h.safetensors"), &bytes)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("h.safetensors") && e.contains("header claims"),
        "{e}"
    );
}

#[test]
fn non_finite_weights_are_an_error_naming_the_tensor() {
    // Was: eval reported accuracy 0.08 without a word.
    let dir = temp_dir("nan");
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    let mut params = Params::init(&spec, 1);
    let b1 = spec.tensors()[1].offset;
    params.data[b1 + 7] = f64::NAN;
    let path = dir.join("nan.safetensors");
    checkpoint::save(&path, &good_checkpoint(params), StoredPrecision::F32).unwrap();
    let e = checkpoint::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("b1") && e.contains("NaN") && e.contains("[7]"),
        "{e}"
    );
    fails_with(
        &["eval", "--weights", path.to_str().unwrap()],
        &["b1", "NaN"],
    );
}

#[test]
fn runs_that_cannot_fit_in_memory_are_refused_with_the_figure() {
    // Was: aborts, or 12.5 GB / 16.7 GB reached before anything said no.
    for args in [
        &["train", "--device", "cpu", "--hidden", "100000000"][..],
        &["train", "--device", "cpu", "--hidden", "1000000"],
        &["train", "--device", "cpu", "--batch", "1000000000"],
        &["bench", "--device", "cpu", "--batch", "1000000000"],
        &["gradcheck", "--device", "cpu", "--hidden", "1000000"],
    ] {
        fails_with(
            args,
            &["needs about", "4.0 GiB", "GPU_TRAIN_MAX_MEMORY_BYTES"],
        );
    }
}

#[test]
fn gradcheck_flags_are_checked() {
    // Was: --batch 4294967297 wrapped to 1; --h 0/NaN/inf gave a table of NaN.
    fails_with(
        &["gradcheck", "--device", "cpu", "--batch", "4294967297"],
        &["--batch", "4294967297"],
    );
    for h in ["0", "NaN", "inf", "-1e-3"] {
        fails_with(
            &["gradcheck", "--device", "cpu", "--h", h],
            &["--h", "positive"],
        );
    }
}

#[test]
fn negative_float_flags_reach_their_validation() {
    // Was: --lr -1e-3 was taken for a flag.
    fails_with(
        &["train", "--device", "cpu", "--lr", "-1e-3"],
        &["--lr", "positive", "-0.001"],
    );
    fails_with(
        &["train", "--device", "cpu", "--h", "-1e-3"],
        &["--h", "positive"],
    );
    fails_with(
        &["bench", "--device", "cpu", "--budget", "-1e-3"],
        &["--budget", "positive"],
    );
}

#[test]
fn huge_float_flags_are_echoed_briefly() {
    // Was: --lr 1e308 printed with 300 digits.
    let dir = temp_dir("lr");
    let out = dir.join("run");
    let stderr = fails_with(
        &[
            "train",
            "--device",
            "cpu",
            "--grad",
            "backprop",
            "--lr",
            "1e308",
            "--iters",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
        &["1e308"],
    );
    assert!(!stderr.contains("0000000000"), "{stderr}");
    let out = gpu_train(
        &[
            "train",
            "--device",
            "cpu",
            "--grad",
            "backprop",
            "--lr",
            "1e300",
            "--iters",
            "1",
            "--out",
            dir.join("run2").to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("1e300") && !all.contains("0000000000"),
        "{all}"
    );
}
