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
