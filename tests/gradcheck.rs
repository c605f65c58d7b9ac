//! `gpu-train gradcheck`: a right gradient gives PASS rows and exit status 0, a wrong one (a
//! backend whose b2 gradient is 1% off) gives FAIL rows, a FAIL verdict and a non-zero status;
//! every line fits 100 columns.

mod common;
use common::WrongB2;

use gpu_train::cpu::CpuBackend;
use gpu_train::data::{self, Mnist};
use gpu_train::gradcheck::{self, Config, Devices, Event, Report, WIDTH};
use gpu_train::model::{Activation, MlpSpec};
use std::process::Command;
use std::sync::Arc;

fn config() -> Config {
    Config {
        cpu: true,
        gpu: false,
        hidden: vec![10],
        activation: Activation::Sigmoid,
        batch: 3,
        steps: 2,
        seed: 0,
        h: 1e-4,
        budget: gradcheck::DEFAULT_BUDGET_S,
    }
}

/// Checks `devices` (built on the setup's net) and returns the report with its printed lines.
fn check(build: impl FnOnce(&MlpSpec, &Arc<Mnist>) -> Devices) -> (Report, Vec<String>) {
    let data = Arc::new(data::embedded().unwrap());
    let setup = gradcheck::prepare(&config(), data.clone()).unwrap();
    let mut lines = Vec::new();
    let mut started = 0;
    let rows = gradcheck::check(&setup, build(&setup.spec, &data), &mut |e| match e {
        Event::Started { .. } => started += 1,
        Event::Done(row) => lines.extend(row.render()),
        Event::Header(_) => {}
    });
    assert_eq!(started, rows.len(), "a Started event before every row");
    let report = Report {
        header: setup.header(None),
        rows,
    };
    lines.extend(report.worst_line());
    lines.push(report.verdict_line());
    for l in report.header.iter().chain(&lines) {
        assert!(l.chars().count() <= WIDTH, "over {WIDTH} columns: {l}");
    }
    (report, lines)
}

#[test]
fn a_wrong_gradient_fails_and_a_right_one_passes() {
    let (report, lines) = check(|spec, data| {
        let good = CpuBackend::<f32>::new(spec.clone(), data.clone()).unwrap();
        let bad = WrongB2(CpuBackend::<f32>::new(spec.clone(), data.clone()).unwrap());
        vec![
            ("cpu f32".into(), Box::new(good)),
            ("wrong".into(), Box::new(bad)),
        ]
    });
    let text = lines.join("\n");
    assert_eq!(report.rows.len(), 6, "{text}");
    for row in &report.rows {
        let total = row.total.unwrap_or_else(|| panic!("{row:?}"));
        let b2 = row.tensors.iter().find(|t| t.name == "b2").expect("b2");
        if row.device == "cpu f32" {
            assert!(row.passed && total < 1e-5, "{row:?}");
        } else {
            // 1% of b2: b2's own relative error is 1e-2, beyond either tolerance.
            assert!(!row.passed && (b2.relative - 1e-2).abs() < 1e-4, "{row:?}");
        }
        let first = &row.render()[0];
        let verdict = if row.passed { "PASS" } else { "FAIL" };
        assert!(
            first.contains(verdict) && first.starts_with(&row.device),
            "{first}"
        );
    }
    assert!(!report.passed() && report.exit_code() != 0, "{text}");
    let last = &lines[lines.len() - 2..];
    assert!(
        last[0].starts_with("worst: wrong ") && last[0].contains("b2 1.0"),
        "{last:?}"
    );
    assert_eq!(last[1], "verdict: FAIL, 3 of 6 rows beyond tolerance");
}

#[test]
fn right_gradients_pass_with_exit_status_zero() {
    let (report, lines) = check(|spec, data| {
        let f64 = CpuBackend::<f64>::new(spec.clone(), data.clone()).unwrap();
        vec![("cpu f64".into(), Box::new(f64))]
    });
    assert!(report.passed() && report.exit_code() == 0, "{lines:?}");
    assert!(lines
        .last()
        .unwrap()
        .starts_with("verdict: PASS, all 3 rows"));
}

/// The binary: PASS rows, the verdict, status 0, every line within 100 columns.
#[test]
fn the_command_prints_pass_rows_and_a_verdict() {
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args(["gradcheck", "--device", "cpu", "--hidden", "10"])
        .env_remove("MNIST_DIR")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passes = stdout.lines().filter(|l| l.contains(" PASS ")).count();
    assert_eq!(passes, 6, "{stdout}");
    assert!(
        stdout.lines().all(|l| l.chars().count() <= WIDTH),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("verdict: PASS")),
        "{stdout}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args(["gradcheck", "--device", "cpu", "--h", "0"])
        .env_remove("MNIST_DIR")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--h"), "{stderr}");
}

/// Runs the binary with `args`, killing it (and failing) past `limit` seconds; (output,
/// seconds).
fn gradcheck_within(args: &[&str], limit: f64) -> (std::process::Output, f64) {
    let clock = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args(args)
        .env_remove("MNIST_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    while child.try_wait().expect("wait").is_none() {
        if clock.elapsed().as_secs_f64() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} did not end within {limit} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (out, clock.elapsed().as_secs_f64())
}

/// `--budget`: a `full` row priced over it is SKIP with its price and the flag to raise; the
/// rows that ran decide the verdict and the exit status.
#[test]
fn a_tiny_budget_skips_the_full_rows() {
    let (out, _) = gradcheck_within(
        &[
            "gradcheck",
            "--device",
            "cpu",
            "--hidden",
            "10",
            "--budget",
            "1e-9",
        ],
        120.0,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let skips: Vec<&str> = stdout.lines().filter(|l| l.contains(" SKIP ")).collect();
    assert_eq!(skips.len(), 2, "{stdout}");
    assert!(
        skips.iter().all(|l| l.contains("numerical full")),
        "{stdout}"
    );
    let whys = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("skipped: est."));
    assert_eq!(whys.count(), 2, "{stdout}");
    assert_eq!(stdout.matches("raise --budget").count(), 2, "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.contains(" PASS ")).count(), 4);
    assert_eq!(
        stdout.lines().last(),
        Some("verdict: PASS, all 4 rows within tolerance (2 skipped: over the budget)")
    );
    assert!(
        stdout.lines().all(|l| l.chars().count() <= WIDTH),
        "{stdout}"
    );
    let (out, _) = gradcheck_within(&["gradcheck", "--device", "cpu", "--budget", "0"], 60.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--budget"),
        "{stderr}"
    );
}

/// The default command (both devices, the chapter's net) ends within its budget here: each
/// device's `full` row is priced and runs or is skipped, and a slow row says what it runs.
/// (Without an adapter: skipped, unless CI=true, where it fails.)
#[test]
fn the_default_gradcheck_ends_in_bounded_time() {
    if common::context().is_none() {
        return;
    }
    // Each device's full row runs only when priced within the budget (the price errs high).
    let bound = 2.0 * gradcheck::DEFAULT_BUDGET_S + 30.0;
    let (out, seconds) = gradcheck_within(&["gradcheck"], bound);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("gpu-train gradcheck: {seconds:.1} s\n{stdout}\n{stderr}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" PASS ") || l.contains(" SKIP "))
        .collect();
    assert_eq!(rows.len(), 9, "{stdout}");
    for line in rows.iter().filter(|l| l.contains("numerical full")) {
        let device = line.split("numerical").next().unwrap_or("").trim();
        let announced = format!("running {device} numerical full (784-50-10, batch 3; est.");
        assert!(
            line.contains(" SKIP ") || stderr.contains(&announced),
            "{announced:?} missing:\n{stderr}"
        );
    }
}
