//! `gpu-train bench` on a tiny grid: the table lists every case with a positive median and op
//! count, `--json` writes every field, and a GPU case produces a row (on lavapipe in CI; with
//! CI=true a GPU that cannot be found fails the test instead of skipping).

use gpu_train::bench::{self, BenchArgs, Device, Report, Work};
use std::path::PathBuf;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Runs the bench with `flags`; returns the report and what it printed.
fn bench(flags: &[&str]) -> (Report, String) {
    let args = BenchArgs::try_parse_from(flags).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
    let mut out = Vec::new();
    let report = bench::run(&args, &mut out).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
    (report, String::from_utf8(out).expect("the table is UTF-8"))
}

/// The table row of (device, what) at batch 100, hidden 50, split into columns.
fn row<'a>(table: &'a str, device: &str, what: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.len() > 4 && c[0] == device && c[1] == what && c[2] == "100" && c[3] == "50")
        .unwrap_or_else(|| panic!("no {device} {what} row at batch 100, hidden 50 in:\n{table}"))
}

/// A "<number> <unit>" cell starting at column i, as a positive number.
fn positive(cols: &[&str], i: usize, what: &str) -> f64 {
    let v: f64 = cols[i]
        .parse()
        .unwrap_or_else(|_| panic!("{what}: {:?} is not a number in {cols:?}", cols[i]));
    assert!(v > 0.0, "{what} is {v} in {cols:?}");
    v
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn cpu_table_and_json_list_every_case() {
    let json = TempFile(
        std::env::temp_dir().join(format!("gpu-train-bench-test-{}.json", std::process::id())),
    );
    let path = json.0.to_string_lossy().into_owned();
    let flags = [
        "--device",
        "cpu",
        "--hidden",
        "50",
        "--batch",
        "100",
        "--what",
        "forward,backprop,train-step",
        "--repeat",
        "2",
        "--chunk",
        "3",
        "--json",
        &path,
    ];
    let (report, table) = bench(&flags);
    for what in ["forward", "backprop"] {
        let cols = row(&table, "cpu", what);
        // device what batch hidden params reps median unit min unit max unit ops unit rate unit
        assert_eq!(cols[5], "2", "{what}: repeats in {cols:?}");
        positive(&cols, 6, "median");
        positive(&cols, 12, "ops");
        assert!(cols[13].ends_with("FLOP"), "{what}: ops unit in {cols:?}");
    }
    assert!(table.contains("wall (submit+wait)"), "{table}");
    assert_reads_at_a_glance(&table);
    // The train step: per-step figures of chunks of --chunk steps.
    let cols = row(&table, "cpu", "train-step");
    assert_eq!(cols[5], "2", "train-step: chunks timed in {cols:?}");
    positive(&cols, 6, "median");
    // One size per kind of work, one device: no growth to fit, nothing to cross over.
    assert!(
        !table.contains("growth:") && !table.contains("overtakes"),
        "{table}"
    );
    // The CPU has no device time and counts nothing: the fields are there, empty.
    assert!(report
        .cases
        .iter()
        .all(|c| c.device_median_s.is_none() && c.counters_per_step.is_none()));
    assert_eq!(report.cases.len(), 3, "{:?}", report.cases);
    for c in &report.cases {
        assert_eq!(
            (c.device, c.batch, c.hidden, c.repeats, c.status.as_str()),
            (Device::Cpu, 100, 50, 2, "ok")
        );
        let steps = if c.what == Work::TrainStep { 3 } else { 1 };
        assert_eq!(c.steps_per_call, steps, "{c:?}");
        assert!(
            c.median_s.is_some_and(|m| m > 0.0) && c.ops > 0.0 && c.rate.is_some_and(|r| r > 0.0),
            "{c:?}"
        );
    }
    let backprop = report
        .cases
        .iter()
        .find(|c| c.what == Work::Backprop)
        .expect("a backprop case");
    assert_eq!(
        backprop.ops,
        3.0 * 2.0 * 100.0 * (784.0 * 50.0 + 50.0 * 10.0)
    );
    let step = report
        .cases
        .iter()
        .find(|c| c.what == Work::TrainStep)
        .expect("a train-step case");
    assert_eq!(
        step.ops,
        4.0 / 3.0 * backprop.ops,
        "per step, not per chunk"
    );

    let text = std::fs::read_to_string(&json.0).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}\n{text}"));
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{text}");
    assert_eq!(v["chunk"], 3, "{text}");
    for field in [
        "command",
        "date_utc",
        "cpu_model",
        "threads",
        "adapter",
        "data",
        "budget_s",
        "cases",
        "fits",
        "crossovers",
    ] {
        assert!(v.get(field).is_some(), "JSON lacks {field}:\n{text}");
    }
    let cases = v["cases"].as_array().expect("cases is an array");
    assert_eq!(cases.len(), 3);
    for c in cases {
        for field in [
            "device",
            "what",
            "batch",
            "hidden",
            "repeats",
            "median_s",
            "min_s",
            "max_s",
            "ops",
            "op_unit",
            "rate",
            "status",
            "device_median_s",
            "steps_per_call",
            "counters_per_step",
        ] {
            assert!(c.get(field).is_some(), "a case lacks {field}: {c}");
        }
        assert_eq!(c["device"], "cpu");
        assert_eq!(c["status"], "ok");
        assert!(c["median_s"].as_f64().is_some_and(|m| m > 0.0), "{c}");
        assert!(
            c["min_s"].as_f64() <= c["median_s"].as_f64()
                && c["median_s"].as_f64() <= c["max_s"].as_f64(),
            "{c}"
        );
    }
    let whats: Vec<&str> = cases.iter().filter_map(|c| c["what"].as_str()).collect();
    assert_eq!(whats, ["forward", "backprop", "train-step"]);
    assert!(
        cases.iter().all(|c| c["counters_per_step"].is_null()),
        "{text}"
    );
    // One size per device and work: a fit has no exponent to give, and says so with nulls.
    assert!(
        v["fits"]
            .as_array()
            .is_some_and(|f| f.len() == 3 && f.iter().all(|f| f["k_hidden"].is_null())),
        "{text}"
    );
}

/// The table is one block of rows (no blank lines between them), its footnotes come in order,
/// and no Rust name (a Debug-formatted enum, a type path) leaks into the text.
fn assert_reads_at_a_glance(table: &str) {
    let lines: Vec<&str> = table.lines().collect();
    let head = lines
        .iter()
        .position(|l| l.starts_with("device "))
        .unwrap_or_else(|| panic!("no table header in:\n{table}"));
    let rows = &lines[head + 1..];
    let end = rows.iter().position(|l| l.is_empty()).unwrap_or(rows.len());
    assert!(
        rows[end..]
            .iter()
            .all(|l| !l.starts_with("cpu ") && !l.starts_with("gpu ")),
        "a blank line inside the table:\n{table}"
    );
    let marks: Vec<usize> = ["¹ ", "² ", "³ ", "⁴ "]
        .iter()
        .filter_map(|m| lines.iter().position(|l| l.starts_with(m)))
        .collect();
    assert!(marks.len() >= 2, "footnotes ¹ and ² in:\n{table}");
    assert!(
        marks.windows(2).all(|w| w[0] < w[1]),
        "footnotes out of order:\n{table}"
    );
    for internal in [
        "::",
        "Params",
        "Some(",
        "None",
        "Cpu,",
        "Gpu,",
        "DiscreteGpu",
        "1 sizes",
    ] {
        assert!(!table.contains(internal), "{internal:?} in:\n{table}");
    }
}

#[test]
fn a_gpu_case_produces_a_row() {
    let (report, table) = bench(&[
        "--device",
        "gpu",
        "--hidden",
        "50",
        "--batch",
        "100",
        "--what",
        "forward,train-step",
        "--repeat",
        "1",
        "--chunk",
        "2",
    ]);
    assert_eq!(report.cases.len(), 2, "{table}");
    let case = &report.cases[0];
    assert_eq!((case.device, case.what), (Device::Gpu, Work::Forward));
    if case.status.starts_with("not run") {
        assert!(!ci(), "CI=true and no usable GPU: {}", case.status);
        eprintln!("skipped: {}", case.status);
        let cols = row(&table, "gpu", "forward");
        assert!(cols.contains(&"not"), "the row says why: {cols:?}");
        return;
    }
    assert_eq!(case.status, "ok", "{table}");
    assert_reads_at_a_glance(&table);
    assert!(report.adapter.is_some(), "the header names the adapter");
    assert_train_step_counts(&report, &table);
    let cols = row(&table, "gpu", "forward");
    assert_eq!(cols[5], "1");
    positive(&cols, 6, "median");
    positive(&cols, 12, "ops");
    assert!(table.contains("gpu:      "), "{table}");
    // Kernel time from timestamp queries where the adapter has them (lavapipe does), never more
    // than the wall time around the same call.
    let has_timestamps = gpu_train::gpu::Context::gpu().is_ok_and(|c| c.has_timestamps());
    match case.device_median_s {
        Some(d) => {
            assert!(d > 0.0 && d <= case.median_s.unwrap(), "{case:?}");
            assert!(
                table.contains("kernels") && table.contains("timestamp queries"),
                "{table}"
            );
        }
        None => assert!(
            !has_timestamps,
            "the adapter has timestamps, the row has no kernel time:\n{table}"
        ),
    }
}

/// The GPU's train-step row reports what a step cost the host: figures where the backend counts
/// (a step dispatches something), "n/a" where it does not.
fn assert_train_step_counts(report: &Report, table: &str) {
    let step = report
        .cases
        .iter()
        .find(|c| c.what == Work::TrainStep)
        .expect("a train-step case");
    assert_eq!(
        (step.device, step.status.as_str(), step.steps_per_call),
        (Device::Gpu, "ok", 2),
        "{table}"
    );
    let counts = table
        .lines()
        .skip_while(|l| !l.starts_with("host costs per training step"))
        .find(|l| l.trim_start().starts_with("gpu    train-step"))
        .unwrap_or_else(|| panic!("no host-cost line for the gpu train step in:\n{table}"));
    match step.counters_per_step {
        Some(k) => {
            assert!(k.dispatches > 0.0 && k.submissions > 0.0, "{k:?}");
            assert!(!counts.contains("n/a"), "{counts}");
        }
        None => assert!(counts.contains("n/a"), "{counts}"),
    }
}

#[test]
fn bad_flags_name_the_flag_and_the_choices() {
    let e = BenchArgs::try_parse_from(["--what", "everything"])
        .unwrap_err()
        .to_string();
    for needle in [
        "--what",
        "forward",
        "backprop",
        "numerical-incremental",
        "numerical-full",
        "train-step",
        "train-step-numerical",
    ] {
        assert!(e.contains(needle), "{needle:?} not in: {e}");
    }
    let args = BenchArgs::try_parse_from(["--device", "cpu", "--repeat", "0"]).expect("parses");
    let e = bench::run(&args, &mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("--repeat"), "{e}");
    // Found before anything is measured, not after.
    let args = BenchArgs::try_parse_from(["--json", "/no/such/folder/bench.json"]).expect("parses");
    let e = bench::run(&args, &mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("--json") && e.contains("/no/such/folder"), "{e}");
    // A folder where the FILE should be: named, with the fix, before the (minutes of) bench.
    let dir = std::env::temp_dir();
    let args = BenchArgs::try_parse_from(["--json".as_ref(), dir.as_os_str()]).expect("parses");
    let mut out = Vec::new();
    let e = bench::run(&args, &mut out).unwrap_err().to_string();
    let fix = dir.join("bench.json");
    assert!(
        e.contains("--json") && e.contains("is a folder") && e.contains(&*fix.to_string_lossy()),
        "{e}"
    );
    assert!(out.is_empty(), "measured before refusing --json");
}

/// Before the 160-column table, one line says which device is faster at what, on which
/// adapter and CPU.
#[test]
fn a_one_line_verdict_comes_before_the_table() {
    let (report, table) = bench(&[
        "--device", "cpu,gpu", "--hidden", "10", "--batch", "10", "--what", "forward", "--repeat",
        "1",
    ]);
    let lines: Vec<&str> = table.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("verdict: "));
    let head = lines.iter().position(|l| l.starts_with("device "));
    let (Some(at), Some(head)) = (at, head) else {
        panic!("no verdict or no table in:\n{table}");
    };
    assert!(at < head, "the verdict after the table:\n{table}");
    let verdict = lines[at];
    assert!(
        verdict.ends_with(&format!("; CPU: {}", report.cpu_model)),
        "{verdict}"
    );
    match &report.adapter {
        Some(adapter) if report.cases.iter().all(|c| c.median_s.is_some()) => {
            let cpu = report
                .cases
                .iter()
                .find(|c| c.device == Device::Cpu)
                .unwrap();
            let gpu = report
                .cases
                .iter()
                .find(|c| c.device == Device::Gpu)
                .unwrap();
            let (c, g) = (cpu.median_s.unwrap(), gpu.median_s.unwrap());
            let how = if g < c { "x faster" } else { "x slower" };
            assert!(
                verdict.starts_with("verdict: forward (batch 10, hidden 10): CPU ")
                    && verdict.contains(how)
                    && verdict.contains(&format!(") on {adapter}; CPU: ")),
                "cpu {c} s, gpu {g} s: {verdict}"
            );
        }
        _ => {
            assert!(!ci(), "CI=true and the GPU did not run:\n{table}");
            assert!(verdict.contains("no CPU-vs-GPU comparison"), "{verdict}");
        }
    }
}
