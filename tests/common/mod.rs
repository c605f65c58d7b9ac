//! What the test files share: one device per test binary (a missing adapter FAILS with
//! CI=true, and only skips without it), the embedded data set, loaded once, where full MNIST
//! is and whether it must be, a CPU backend with a known-wrong gradient for the checks to
//! catch, and the binary run as a user runs it.
#![allow(dead_code)]

use gpu_train::data::{self, Mnist};
use gpu_train::gpu::Context;
use std::sync::{Arc, OnceLock};

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// One device for the whole binary; None (skip) only without an adapter and without CI=true.
pub fn context() -> Option<Arc<Context>> {
    static CTX: OnceLock<Option<Arc<Context>>> = OnceLock::new();
    CTX.get_or_init(|| match Context::gpu() {
        Ok(ctx) => {
            eprintln!("GPU tests on {}", ctx.describe());
            Some(Arc::new(ctx))
        }
        Err(e) if ci() => panic!("CI=true and no usable GPU adapter: {e}"),
        Err(e) => {
            eprintln!("skipped: no adapter ({e})");
            None
        }
    })
    .clone()
}

/// The device, or return from the test (only possible without CI=true, see `context`).
#[macro_export]
macro_rules! ctx_or_skip {
    () => {
        match common::context() {
            Some(c) => c,
            None => return,
        }
    };
}

pub fn mnist() -> Arc<Mnist> {
    static DATA: OnceLock<Arc<Mnist>> = OnceLock::new();
    DATA.get_or_init(|| Arc::new(data::embedded().unwrap_or_else(|e| panic!("{e}"))))
        .clone()
}

/// Says whether full MNIST must be found (set by .ci/run): `required` or `optional`.
pub const FULL_MNIST_ENV: &str = "GPU_TRAIN_FULL_MNIST";
/// A file each test that did not run for want of full MNIST adds a line to (set by .ci/run,
/// which lists them at the end: cargo hides a passing test's output).
pub const NOT_RUN_LOG_ENV: &str = "GPU_TRAIN_NOT_RUN_LOG";

/// Where full MNIST is for `test`: `$MNIST_DIR`, else ../shared/data/mnist beside the repository
/// (where this project's CI keeps it). Not there: a failure when it is required
/// (GPU_TRAIN_FULL_MNIST=required, or CI=true without the variable: a CI that did not say the
/// data is optional must not pass by skipping); otherwise None, after a NOT RUN line on stderr
/// and in GPU_TRAIN_NOT_RUN_LOG.
pub fn full_mnist(test: &str) -> Option<std::path::PathBuf> {
    let (dir, from) = match std::env::var_os("MNIST_DIR").filter(|d| !d.is_empty()) {
        Some(d) => (std::path::PathBuf::from(d), "MNIST_DIR"),
        None => (
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"),
            "../shared/data/mnist beside the repository",
        ),
    };
    let need = std::env::var(FULL_MNIST_ENV).ok();
    let log = std::env::var_os(NOT_RUN_LOG_ENV).map(std::path::PathBuf::from);
    full_mnist_in(test, &dir, from, need.as_deref(), ci(), log.as_deref())
}

/// `full_mnist` with its inputs given: the folder, where it came from, GPU_TRAIN_FULL_MNIST,
/// CI=true and GPU_TRAIN_NOT_RUN_LOG.
pub fn full_mnist_in(
    test: &str,
    dir: &std::path::Path,
    from: &str,
    need: Option<&str>,
    ci: bool,
    log: Option<&std::path::Path>,
) -> Option<std::path::PathBuf> {
    let required = match need {
        Some("required") => true,
        Some("optional") => false,
        Some(other) => panic!("{FULL_MNIST_ENV}={other:?}: use required or optional"),
        None => ci,
    };
    if dir.is_dir() {
        return Some(dir.to_path_buf());
    }
    assert!(
        !required,
        "{test}: full MNIST is required ({}) but {} ({from}) is not a directory; set MNIST_DIR to a folder with the four IDX files",
        match need {
            Some(_) => format!("{FULL_MNIST_ENV}=required"),
            None => format!("CI=true without {FULL_MNIST_ENV}=optional"),
        },
        dir.display()
    );
    let line = format!("{test}: not found at {} ({from})", dir.display());
    eprintln!("NOT RUN: {line}; set MNIST_DIR to run it");
    if let Some(log) = log {
        use std::io::Write;
        let written = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            panic!("{NOT_RUN_LOG_ENV}={}: {e}", log.display());
        }
    }
    None
}

/// The CPU f32 backend with its b2 gradient 1% too large (every method): what a gradient check
/// must catch.
pub struct WrongB2(pub gpu_train::cpu::CpuBackend<f32>);

impl gpu_train::backend::Backend for WrongB2 {
    fn name(&self) -> String {
        "cpu f32 (wrong b2)".into()
    }
    fn spec(&self) -> &gpu_train::model::MlpSpec {
        self.0.spec()
    }
    fn set_params(&mut self, p: &gpu_train::model::Params) -> gpu_train::Result<()> {
        self.0.set_params(p)
    }
    fn params(&mut self) -> gpu_train::Result<gpu_train::model::Params> {
        self.0.params()
    }
    fn set_batch(&mut self, i: &[u32]) -> gpu_train::Result<()> {
        self.0.set_batch(i)
    }
    fn batch_loss(&mut self) -> gpu_train::Result<f64> {
        self.0.batch_loss()
    }
    fn gradient(&mut self, m: gpu_train::backend::GradMethod) -> gpu_train::Result<Vec<f64>> {
        let mut g = self.0.gradient(m)?;
        let n = g.len();
        for v in &mut g[n - 10..] {
            *v *= 1.01;
        }
        Ok(g)
    }
    fn step(&mut self, m: gpu_train::backend::GradMethod, lr: f64) -> gpu_train::Result<()> {
        self.0.step(m, lr)
    }
    fn evaluate(
        &mut self,
        s: gpu_train::backend::Split,
    ) -> gpu_train::Result<gpu_train::backend::Evaluation> {
        self.0.evaluate(s)
    }
}

/// The one ```python block of README.md containing `marker`, with a list's indentation taken
/// off (what a reader's copy from the rendered page gives).
pub fn readme_python_block(marker: &str) -> String {
    let readme = include_str!("../../README.md");
    let blocks: Vec<&str> = readme
        .split("```python\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .filter(|code| code.contains(marker))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "README.md should have one Python block with {marker:?}"
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

/// Whether python3 imports `modules` (e.g. "numpy, safetensors"). Without them a test may skip
/// only outside CI, or when .ci/run said it could not install them (GPU_TRAIN_NO_PYTHON).
pub fn python_has(modules: &str) -> bool {
    let has = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        assert!(
            !ci() || std::env::var_os("GPU_TRAIN_NO_PYTHON").is_some(),
            "python3 with {modules} is required in CI (pip install {})",
            modules.replace(',', "")
        );
        eprintln!("skipped: python3 with {modules} not found");
    }
    has
}

/// The built `gpu-train` binary run with `args` (without the caller's MNIST_DIR, so the
/// embedded set is the default), to completion.
pub fn gpu_train(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args(args)
        .env_remove("MNIST_DIR")
        .output()
        .expect("the binary runs")
}

/// The standard output of a run that must have succeeded (its stderr in the failure message).
pub fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A fresh, empty directory for one test: `gpu-train-<file>-<pid>-<name>` under the temp dir.
pub fn fresh_dir(file: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-train-{file}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// metrics.csv without its `seconds` column (the one that differs between two runs).
pub fn metrics_without_seconds(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(2);
            f.join(",")
        })
        .collect()
}

/// A PNG chunk: length, type, data, CRC of type and data.
pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}
