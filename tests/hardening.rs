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

// ---- predict, class names and eval's pictures, as issue 12's hostile user found them.

/// A 784-16-10 checkpoint in `dir` (random weights: predictions are beside the point here),
/// with `names` as its class names when given.
fn predict_checkpoint(dir: &Path, names: Option<&[String]>) -> PathBuf {
    let spec = MlpSpec::two_layer(784, 16, 10).unwrap();
    let mut ckpt = good_checkpoint(Params::init(&spec, 1));
    if let Some(names) = names {
        ckpt.notes.insert(
            gpu_train::predict::CLASS_NAMES_NOTE.into(),
            serde_json::to_string(names).unwrap(),
        );
    }
    let path = dir.join("w.safetensors");
    checkpoint::save(&path, &ckpt, StoredPrecision::F32).unwrap();
    path
}

/// A dark stroke on white, `w x h`, encoded as `format`.
fn picture(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        let on = x.abs_diff(w / 2) < w / 8 + 1 && y > h / 5 && y < h - h / 5;
        image::Luma([if on { 10 } else { 245 }])
    });
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

#[test]
fn predict_refuses_special_files_at_once() {
    // Was: /dev/zero (or x.png linked to it) grew about 1 GB/s; a FIFO named x.png hung.
    let dir = temp_dir("predict-special");
    let weights = predict_checkpoint(&dir, None);
    let good = dir.join("good.png");
    std::fs::write(&good, picture(40, 40, image::ImageFormat::Png)).unwrap();
    let zero = dir.join("zero.png");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let fifo = dir.join("fifo.png");
    mkfifo(&fifo);
    let folder = dir.join("folder.png");
    std::fs::create_dir(&folder).unwrap();
    for (path, needle) in [
        (zero.as_path(), "device"),
        (Path::new("/dev/zero"), "device"),
        (&fifo, "FIFO"),
        (&folder, "directory"),
    ] {
        let p = path.to_str().unwrap();
        let out = gpu_train(
            &[
                "predict",
                "--weights",
                weights.to_str().unwrap(),
                p,
                good.to_str().unwrap(),
            ],
            Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{p}: {stderr}");
        let line = stderr.lines().find(|l| l.contains(p)).unwrap_or("");
        assert!(line.contains(needle), "{p}: {stderr}");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with(&format!("{}: ", good.display())),
            "{p}: the good picture is still predicted"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The peak resident memory of the binary run with `args`, in KiB (the child's own, from
/// wait4), with its output.
fn peak_kib(args: &[String]) -> (u64, Output) {
    let child = Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    // Drain the pipes on threads so that a full pipe cannot stall the child.
    let mut child = child;
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut v).unwrap();
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut v).unwrap();
        v
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 writes it for this child, which we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid);
    let out = Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(status),
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    };
    (usage.ru_maxrss as u64, out)
}

#[test]
fn predict_memory_does_not_grow_with_the_number_of_pictures() {
    // Was: every decoded picture was kept to the end (2,000 small PNGs: 259 MB).
    let dir = temp_dir("predict-stream");
    let weights = predict_checkpoint(&dir, None);
    let pic = dir.join("p.png");
    std::fs::write(&pic, picture(300, 200, image::ImageFormat::Png)).unwrap();
    let run = |n: usize| {
        let mut args: Vec<String> = ["predict", "--weights", weights.to_str().unwrap()]
            .map(String::from)
            .to_vec();
        args.extend(std::iter::repeat_n(pic.display().to_string(), n));
        let (kib, out) = peak_kib(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), n);
        kib
    };
    let (few, many) = (run(50), run(1000));
    eprintln!("predict peak RSS: 50 pictures {few} KiB, 1000 pictures {many} KiB");
    // Each 300x200 picture held would add 240 KB: 1000 of them 240 MB. Allow 16 MiB of noise.
    assert!(many < few + 16 * 1024, "50: {few} KiB, 1000: {many} KiB");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A JPEG's SOF0 frame header height set to `height`.
fn jpeg_with_height(jpeg: &[u8], height: u16) -> Vec<u8> {
    let at = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG");
    let mut out = jpeg.to_vec();
    out[at + 5..at + 7].copy_from_slice(&height.to_be_bytes());
    out
}

#[test]
fn corrupt_jpegs_are_errors_naming_the_file() {
    // Was: exit status 0 and a prediction made from zeros where the scan ran out.
    let dir = temp_dir("predict-jpeg");
    let weights = predict_checkpoint(&dir, None);
    let whole = picture(64, 64, image::ImageFormat::Jpeg);
    let good = dir.join("good.jpg");
    std::fs::write(&good, &whole).unwrap();
    let mut half = whole[..whole.len() / 2].to_vec();
    half.extend_from_slice(&[0xFF, 0xD9]);
    let big = jpeg_with_height(&whole, 4096);
    let taller = jpeg_with_height(&whole, 72);
    for (name, bytes) in [
        ("half.jpg", half),
        ("cut.jpg", whole[..whole.len() - 40].to_vec()),
        ("big.jpg", big),
        ("taller.jpg", taller),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let stderr = fails_with(
            &[
                "predict",
                "--weights",
                weights.to_str().unwrap(),
                path.to_str().unwrap(),
                good.to_str().unwrap(),
            ],
            &["1 of 2 pictures could not be read"],
        );
        let line = stderr
            .lines()
            .find(|l| l.contains(path.to_str().unwrap()))
            .unwrap_or_else(|| panic!("{name}: {stderr}"));
        assert!(
            line.contains("truncated") || line.contains("corrupt"),
            "{name}: {line}"
        );
        // Also from the library, without the binary.
        let e = gpu_train::predict::read_image(&path)
            .unwrap_err()
            .to_string();
        assert!(e.contains(name), "{e}");
    }
    assert!(gpu_train::predict::read_image(&good).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn names_from_outside_cannot_drive_the_terminal() {
    // Was: ESC sequences, CR, backspace, NUL and U+202E in file and class names reached the
    // terminal raw, and a newline in a file name forged a result line.
    let dir = temp_dir("predict-escapes");
    // (A file name cannot hold NUL; class names can, and are refused below.)
    let hostile = "a\x1b[2J\x1b]0;title\x07\r\x08\u{202e}\n0 99.99%";
    let names: Vec<String> = (0..10).map(|k| format!("c{k}")).collect();
    let weights = predict_checkpoint(&dir, Some(&names));
    let pic = dir.join(format!("{hostile}.png"));
    std::fs::write(&pic, picture(40, 40, image::ImageFormat::Png)).unwrap();
    let missing = dir.join(format!("{hostile}-missing.png"));
    let out = gpu_train(
        &[
            "predict",
            "--weights",
            weights.to_str().unwrap(),
            pic.to_str().unwrap(),
            missing.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    for text in [&stdout, &stderr] {
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
            "{text:?}"
        );
    }
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(
        stdout.contains("\\u{1b}[2J") && stdout.contains("\\n0 99.99%"),
        "{stdout:?}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr:?}");

    // A checkpoint whose class names carry escapes is refused, naming it and the class.
    let mut bad = names.clone();
    bad[3] = "\x1b[2Jcat\0".into();
    let sub = dir.join("bad");
    std::fs::create_dir(&sub).unwrap();
    let w = predict_checkpoint(&sub, Some(&bad));
    let stderr = fails_with(
        &[
            "predict",
            "--weights",
            w.to_str().unwrap(),
            pic.to_str().unwrap(),
        ],
        &["class 3", "control"],
    );
    assert!(
        stderr.contains(w.to_str().unwrap()) && !stderr.contains('\x1b'),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn classes_txt_is_checked_and_read_only_when_it_is_a_regular_file() {
    let dir = data_dir("classes-txt", 4, (2, 2), (2, 2));
    let names = dir.join(data::CLASS_NAMES_FILE);
    let text = |e: gpu_train::Error| e.to_string();
    // A BOM is not part of class 0's name.
    let ten: String = (0..4).map(|k| format!("n{k}\n")).collect();
    std::fs::write(&names, format!("\u{feff}{ten}")).unwrap();
    assert_eq!(
        data::load(Some(&dir)).unwrap().class_names.unwrap()[0],
        "n0"
    );
    for (contents, needles) in [
        ("a\nb\na\n".to_string(), vec!["line 3", "line 1"]),
        ("a\nb\x1b[2J\n".to_string(), vec!["line 2", "U+001B"]),
        ("a\n\u{202e}b\n".to_string(), vec!["line 2", "U+202E"]),
        (
            format!("a\n{}\n", "x".repeat(60_000)),
            vec!["line 2", "60000", "64"],
        ),
    ] {
        std::fs::write(&names, &contents).unwrap();
        let e = data::read_class_names(&names).map_err(text).unwrap_err();
        assert!(e.contains(names.to_str().unwrap()), "{e}");
        for n in needles {
            assert!(e.contains(n), "{e} lacks {n}");
        }
    }
    // Not a regular file: a clear error naming it, never silently ignored.
    for (kind, needle) in [("fifo", "FIFO"), ("dir", "directory"), ("zero", "device")] {
        std::fs::remove_file(&names)
            .or_else(|_| std::fs::remove_dir(&names))
            .unwrap();
        match kind {
            "fifo" => mkfifo(&names),
            "dir" => std::fs::create_dir(&names).unwrap(),
            _ => std::os::unix::fs::symlink("/dev/zero", &names).unwrap(),
        }
        let e = data::load(Some(&dir)).map_err(text).unwrap_err();
        assert!(
            e.contains(data::CLASS_NAMES_FILE) && e.contains(needle),
            "{kind}: {e}"
        );
    }
}

#[test]
fn long_class_names_cost_a_bounded_picture() {
    // Was: a 60,000-character name made --misclassified 20 take 4 GB for a 1.36-gigapixel PNG
    // (and 100 panic inside plotters, leaving a 0-byte file).
    let set = Dataset::new(vec![128; 2 * 784], vec![0, 1], 28, 28, 2, "t").unwrap();
    let names = vec!["x".repeat(6_000), "y".repeat(6_000)];
    let dir = temp_dir("long-names");
    let path = dir.join("misclassified.png");
    gpu_train::report::eval::misclassified_grid(&path, &set, &[0, 1], &[1, 0], Some(&names))
        .unwrap();
    let png = image::open(&path).unwrap();
    // Two cells, each as wide as a caption of two 24-character names: (51 x 8 + 12) pixels.
    assert_eq!((png.width(), png.height()), (2 * 420, 28 * 4 + 30));
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the picture, no temporary file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// GPU_TRAIN_BACKEND that is not UTF-8 was taken as unset (any backend): now an error naming
/// the variable and the values it takes, before any adapter is looked at.
#[cfg(unix)]
#[test]
fn a_backend_variable_that_is_not_utf8_is_an_error() {
    use std::os::unix::ffi::OsStrExt;
    let dir = temp_dir("backend-utf8");
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args([
            "train", "--device", "gpu", "--grad", "backprop", "--iters", "1",
        ])
        .arg("--out")
        .arg(dir.join("run"))
        .env_remove("MNIST_DIR")
        .env(
            "GPU_TRAIN_BACKEND",
            std::ffi::OsStr::from_bytes(b"vulkan\xff"),
        )
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("GPU_TRAIN_BACKEND")
            && stderr.contains("UTF-8")
            && stderr.contains("vulkan, metal, dx12 or gl"),
        "{stderr}"
    );
    assert!(!dir.join("run").exists(), "a run folder was made");
    let _ = std::fs::remove_dir_all(&dir);
}
