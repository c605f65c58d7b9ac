//! Checkpoints: a resumed run ends bit-exact where an uninterrupted one does (CPU f64), Ctrl-C
//! writes a loadable checkpoint and exits 130, and damaged or mismatched files are clear errors.

mod common;

use gpu_train::backend::{Backend, GradMethod, PerturbStrategy, DEFAULT_H};
use gpu_train::checkpoint::{self, Checkpoint, StoredPrecision};
use gpu_train::cpu::CpuBackend;
use gpu_train::data::{self, Mnist, SamplerState};
use gpu_train::model::{MlpSpec, Params};
use gpu_train::train::{train_from, Control, Observer, Start, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

fn mnist() -> Arc<Mnist> {
    static DATA: OnceLock<Arc<Mnist>> = OnceLock::new();
    DATA.get_or_init(|| Arc::new(data::embedded().unwrap()))
        .clone()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gpu-train-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Stops after `at` steps, keeping the checkpoint a CLI run would write then.
struct StopAt {
    at: usize,
    saved: Option<(Params, SamplerState)>,
}

impl Observer for StopAt {
    fn next_pause(&self, _done: usize) -> Option<usize> {
        Some(self.at)
    }
    fn after_step(
        &mut self,
        done: usize,
        backend: &mut dyn Backend,
        s: &SamplerState,
    ) -> gpu_train::Result<Control> {
        if done == self.at {
            self.saved = Some((backend.params()?, *s));
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    }
}

struct Nothing;
impl Observer for Nothing {}

#[test]
fn a_resumed_run_ends_bit_exact_where_an_uninterrupted_one_does() {
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    for grad in [
        GradMethod::Backprop,
        GradMethod::Numerical {
            strategy: PerturbStrategy::Incremental,
            h: DEFAULT_H,
        },
    ] {
        let cfg = TrainConfig {
            iters: 24,
            eval_every: 10,
            grad,
            seed: 5,
            ..TrainConfig::default()
        };
        let n = mnist().train.len();
        let fresh = || {
            let mut b = CpuBackend::<f64>::new(spec.clone(), mnist()).unwrap();
            b.set_params(&Params::init(&spec, cfg.seed)).unwrap();
            b
        };
        let mut whole = fresh();
        train_from(&mut whole, n, &cfg, None, &mut Nothing).unwrap();

        let mut first = fresh();
        let mut stop = StopAt {
            at: 11,
            saved: None,
        };
        let s = train_from(&mut first, n, &cfg, None, &mut stop).unwrap();
        assert!(s.interrupted() && s.iters == 11);
        // Through the file format, as a real resume goes.
        let (params, sampler) = stop.saved.unwrap();
        let ckpt = Checkpoint {
            params,
            iteration: 11,
            sampler,
            config: cfg.clone(),
            pending: Default::default(),
            notes: Default::default(),
        };
        let bytes = checkpoint::to_bytes(&ckpt, StoredPrecision::F64).unwrap();
        let back = checkpoint::from_bytes(Path::new("mem"), &bytes).unwrap();
        assert_eq!(back, ckpt);
        let mut resumed = CpuBackend::<f64>::new(spec.clone(), mnist()).unwrap();
        resumed.set_params(&back.params).unwrap();
        train_from(
            &mut resumed,
            n,
            &back.config,
            Some(Start {
                iteration: back.iteration,
                sampler: back.sampler,
                seconds: 0.0,
                pending: Default::default(),
            }),
            &mut Nothing,
        )
        .unwrap();
        assert_eq!(
            resumed.params().unwrap().data,
            whole.params().unwrap().data,
            "{grad:?}: resume is not bit-exact"
        );
    }
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gpu-train"));
    c.env_remove("MNIST_DIR");
    c
}

fn run_ok(args: &[&str]) {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cli_resume_equals_uninterrupted_f64() {
    let d = temp_dir("cli-resume");
    let common = [
        "train",
        "--device",
        "cpu",
        "--precision",
        "f64",
        "--grad",
        "backprop",
        "--seed",
        "9",
        "--eval-every",
        "100",
    ];
    let (a, b, c) = (d.join("a"), d.join("b"), d.join("c"));
    run_ok(
        &[
            &common[..],
            &["--iters", "30", "--out", a.to_str().unwrap()],
        ]
        .concat(),
    );
    let a_ckpt = a.join("checkpoint.safetensors");
    run_ok(
        &[
            &common[..],
            &[
                "--iters",
                "70",
                "--resume",
                a_ckpt.to_str().unwrap(),
                "--out",
                b.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    run_ok(
        &[
            &common[..],
            &["--iters", "70", "--out", c.to_str().unwrap()],
        ]
        .concat(),
    );
    let resumed = checkpoint::load(&b.join("checkpoint.safetensors")).unwrap();
    let whole = checkpoint::load(&c.join("checkpoint.safetensors")).unwrap();
    assert_eq!(resumed.iteration, 70);
    assert_eq!(
        resumed.params.data, whole.params.data,
        "resumed run differs from the uninterrupted one"
    );
    // A resume with a net of another shape names the flag and both values.
    let out = bin()
        .args(common)
        .args([
            "--iters",
            "40",
            "--hidden",
            "20",
            "--resume",
            a_ckpt.to_str().unwrap(),
            "--out",
            d.join("e").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("--hidden: 20 contradicts")
            && err.contains("--hidden 50"),
        "{err}"
    );
}

/// A long backprop run into `out`, returned once it trains (the header is out and half a second
/// of steps done), with its stdout: what a Ctrl-C test interrupts.
fn training_child(
    out: &Path,
    extra: &[&str],
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    let mut child = bin()
        .args([
            "train",
            "--device",
            "cpu",
            "--grad",
            "backprop",
            "--iters",
            "10000000",
            "--eval-every",
            "10000000",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("run folder") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0,
            "the run ended before training started"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    (child, stdout)
}

#[test]
fn ctrl_c_finishes_the_step_writes_a_checkpoint_and_exits_130() {
    let d = temp_dir("sigint");
    let out = d.join("run");
    // Interrupted once it trains; `_stdout` keeps the pipe open for the lines still to come.
    let (child, _stdout) = training_child(&out, &["--loss-every", "1000"]);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("checkpoint written to") && stderr.contains("--resume"),
        "{stderr}"
    );
    let ckpt = checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert!(ckpt.iteration > 0);
    assert_eq!(ckpt.sampler.batches_drawn, ckpt.iteration as u64);
    assert!(ckpt.params.data.iter().all(|v| v.is_finite()));
}

fn saved_checkpoint(d: &Path) -> (PathBuf, Vec<u8>) {
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    let sampler = SamplerState::fresh(Default::default(), 30000, 0);
    let ckpt = Checkpoint {
        params: Params::init(&spec, 1),
        iteration: 0,
        sampler,
        config: TrainConfig::default(),
        pending: Default::default(),
        notes: Default::default(),
    };
    let path = d.join("good.safetensors");
    checkpoint::save(&path, &ckpt, StoredPrecision::F32).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

#[test]
fn damaged_checkpoints_are_clear_errors() {
    let d = temp_dir("damaged");
    let (good, bytes) = saved_checkpoint(&d);
    assert!(checkpoint::load(&good).is_ok());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            bytes[..bytes.len() / 2].to_vec(),
            "truncated or corrupted",
        ),
        ("empty", Vec::new(), "truncated or corrupted"),
        (
            "garbage-header",
            {
                let mut b = bytes.clone();
                b[10] = b'#';
                b[11] = b'!';
                b
            },
            "corrupted",
        ),
    ];
    for (name, data, needle) in cases {
        let p = d.join(format!("{name}.safetensors"));
        std::fs::write(&p, data).unwrap();
        let e = checkpoint::load(&p).unwrap_err().to_string();
        assert!(
            e.contains(p.to_str().unwrap()) && e.contains(needle),
            "{name}: {e}"
        );
    }
    let e = checkpoint::load(&d.join("missing.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing.safetensors") && e.contains("cannot read"),
        "{e}"
    );
    // A safetensors file from elsewhere: readable, but not ours.
    let foreign = safetensors::serialize(
        [(
            "w",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0, 0, 0, 0])
                .unwrap(),
        )],
        None,
    )
    .unwrap();
    let p = d.join("foreign.safetensors");
    std::fs::write(&p, foreign).unwrap();
    let e = checkpoint::load(&p).unwrap_err().to_string();
    assert!(e.contains("not a gpu-train checkpoint"), "{e}");
}

#[test]
fn a_checkpoint_of_another_shape_names_both_shapes() {
    let d = temp_dir("shape");
    let (good, _) = saved_checkpoint(&d);
    // eval on data whose images are not 784 wide: both shapes named.
    let small = d.join("small");
    std::fs::create_dir_all(&small).unwrap();
    let images: Vec<u8> = [
        &[0u8, 0, 8, 3][..],
        &3u32.to_be_bytes(),
        &2u32.to_be_bytes(),
        &2u32.to_be_bytes(),
        &[7u8; 12],
    ]
    .concat();
    let labels: Vec<u8> = [&[0u8, 0, 8, 1][..], &3u32.to_be_bytes(), &[1u8, 2, 3]].concat();
    for (name, bytes) in [
        ("train-images-idx3-ubyte", &images),
        ("t10k-images-idx3-ubyte", &images),
        ("train-labels-idx1-ubyte", &labels),
        ("t10k-labels-idx1-ubyte", &labels),
    ] {
        std::fs::write(small.join(name), bytes).unwrap();
    }
    let out = bin()
        .args([
            "eval",
            "--weights",
            good.to_str().unwrap(),
            "--data",
            small.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("784-50-10") && err.contains("4-50-10"),
        "{err}"
    );
    // The tensors themselves disagreeing with the spec in the metadata.
    // Same length, so the header stays well-formed: only the claimed spec changes.
    let mut bytes = std::fs::read(&good).unwrap();
    let needle = br#"\"hidden\":[50]"#;
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the spec is in the header");
    bytes[at + needle.len() - 2] = b'1';
    let p = d.join("lying.safetensors");
    std::fs::write(&p, &bytes).unwrap();
    let e = checkpoint::load(&p).unwrap_err().to_string();
    assert!(e.contains("[784, 50]") && e.contains("[784, 51]"), "{e}");
}

#[test]
fn eval_prints_accuracy_and_the_confusion_matrix() {
    let d = temp_dir("eval");
    let run = d.join("run");
    run_ok(&[
        "train",
        "--device",
        "cpu",
        "--grad",
        "backprop",
        "--iters",
        "900",
        "--eval-every",
        "1000",
        "--out",
        run.to_str().unwrap(),
    ]);
    let out = bin()
        .args([
            "eval",
            "--weights",
            run.join("checkpoint.safetensors").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("confusion matrix")
            && text.contains("per-class accuracy")
            && text.contains("of 5000"),
        "{text}"
    );
    let acc: f64 = text
        .split("accuracy ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc > 0.7, "{text}");
}

/// A second Ctrl-C while the first is handled: still exit 130, every file consistent (the loss
/// curve written, the checkpoint loadable, no temporary file left).
#[test]
fn a_double_ctrl_c_leaves_every_file_consistent() {
    let d = temp_dir("sigint-twice");
    let out = d.join("run");
    let (child, _stdout) = training_child(&out, &[]);
    for _ in 0..2 {
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let ckpt = checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let losses = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    assert_eq!(
        losses.lines().count(),
        ckpt.iteration + 1,
        "one row an iteration"
    );
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".tmp") && !name.contains("partial"),
            "left behind: {name}"
        );
    }
    assert!(out.join("loss.png").is_file() && out.join("accuracy.png").is_file());
}

/// Two runs started in the same second without --out get folders of their own.
#[test]
fn runs_started_together_without_out_get_their_own_folders() {
    let d = temp_dir("same-second");
    let spawn = || {
        bin()
            .args([
                "train", "--device", "cpu", "--grad", "backprop", "--iters", "20", "--quiet",
            ])
            .current_dir(&d)
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let folders: Vec<_> = std::fs::read_dir(d.join("runs")).unwrap().collect();
    assert_eq!(folders.len(), 2, "{folders:?}");
}

/// SIGKILL some time after a periodic checkpoint, then --resume: the checkpoint, the metrics
/// and the loss curve agree, so the resumed run's loss.csv is the uninterrupted run's byte for
/// byte and its metrics.csv too (seconds aside). Before, loss.csv lost the rows still in its
/// buffer at the kill, for good.
#[test]
fn a_kill_9_after_a_checkpoint_then_resume_gives_the_uninterrupted_files() {
    let d = temp_dir("kill9");
    let (whole, killed) = (d.join("whole"), d.join("killed"));
    let args = |out: &Path| {
        let mut c = bin();
        c.args([
            "train",
            "--device",
            "cpu",
            "--grad",
            "backprop",
            "--seed",
            "4",
            "--iters",
            "6000",
            "--eval-every",
            "700",
            "--checkpoint-every",
            "250",
            "--quiet",
            "--out",
        ])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
        c
    };
    let out = args(&whole).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Killed once a checkpoint is in place and some rows past it are written.
    let mut child = args(&killed).spawn().unwrap();
    let ckpt_path = killed.join("checkpoint.safetensors");
    let t0 = std::time::Instant::now();
    // Some checkpoints in: rows reported long before the kill are at stake, not only the last.
    while checkpoint::load(&ckpt_path).map_or(true, |c| c.iteration < 1000) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended first");
        assert!(
            t0.elapsed().as_secs() < 120,
            "no checkpoint at 1000 after 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run ended first");
    child.kill().unwrap(); // SIGKILL on unix
    child.wait().unwrap();
    let at = checkpoint::load(&ckpt_path).unwrap().iteration;
    assert!((1000..6000).contains(&at) && at.is_multiple_of(250), "{at}");
    // Every row the checkpoint covers is there, under the header.
    let losses = std::fs::read_to_string(killed.join("loss.csv")).unwrap();
    assert!(losses.starts_with("iteration,batch_loss\n"), "{losses:.60}");
    assert!(
        losses.lines().count() > at,
        "{} rows at {at}",
        losses.lines().count()
    );
    let out = bin()
        .args(["train", "--device", "cpu", "--quiet", "--resume"])
        .arg(&ckpt_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(killed.join("loss.csv")).unwrap()
            == std::fs::read(whole.join("loss.csv")).unwrap(),
        "loss.csv differs from the uninterrupted run's (killed after checkpoint {at})"
    );
    assert_eq!(
        common::metrics_without_seconds(&killed.join("metrics.csv")),
        common::metrics_without_seconds(&whole.join("metrics.csv")),
        "killed after checkpoint {at}"
    );
}

/// What a kill mid-write can leave, trimmed on resume: a loss row cut mid-number ("15,1" of
/// "15,1.3455") parses, but its line has no newline, so it is dropped; and the CSV files have
/// their headers on the disk from the moment the run folder is open.
#[test]
fn torn_rows_are_trimmed_on_resume_and_a_header_is_always_there() {
    let d = temp_dir("torn");
    let open = gpu_train::run::RunDir::create(&d.join("fresh"), false).unwrap();
    for (name, header) in [
        ("loss.csv", gpu_train::run::LOSS_HEADER),
        ("metrics.csv", gpu_train::run::METRICS_HEADER),
    ] {
        let text = std::fs::read_to_string(open.path.join(name)).unwrap();
        assert_eq!(text, format!("{header}\n"), "{name} while the run is open");
    }
    drop(open);
    let run = d.join("run");
    run_ok(&[
        "train",
        "--device",
        "cpu",
        "--grad",
        "backprop",
        "--iters",
        "20",
        "--eval-every",
        "10",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    let whole = std::fs::read_to_string(run.join("loss.csv")).unwrap();
    let cut: String = whole.lines().take(1 + 15).collect::<Vec<_>>().join("\n") + "\n15,1";
    std::fs::write(run.join("loss.csv"), &cut).unwrap();
    let out = bin()
        .args([
            "train", "--device", "cpu", "--quiet", "--iters", "30", "--resume",
        ])
        .arg(run.join("checkpoint.safetensors"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read_to_string(run.join("loss.csv")).unwrap();
    let iterations: Vec<usize> = after
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    let expected: Vec<usize> = (0..15).chain(20..30).collect();
    assert_eq!(iterations, expected, "{after}");
    assert!(!after.lines().any(|l| l == "15,1"), "{after}");
}
