//! The bench's text: the header, the table with its footnotes, growth, crossovers and host costs,
//! the number formats, and the progress line on stderr.

use super::grid::{Grid, NUMERICAL_DEFAULT_BATCH};
use super::stats::gpu_speedup;
use super::text::{ratio, secs};
use super::{CaseResult, Device, Report, Work};
use std::io::{Result, Write};

pub(super) fn write_header<W: Write + ?Sized>(out: &mut W, r: &Report) -> Result<()> {
    writeln!(out, "gpu-train bench (gpu-train {})", r.version)?;
    writeln!(out, "command:  {}", r.command)?;
    writeln!(out, "date:     {} (UTC)", r.date_utc)?;
    writeln!(
        out,
        "cpu:      {}, {} rayon threads",
        r.cpu_model, r.threads
    )?;
    if let Some(load) = r.load_avg {
        let busy = if load > r.threads as f64 * 0.5 {
            " (busy: timings are slower and noisier)"
        } else {
            ""
        };
        writeln!(
            out,
            "load:     {load:.2} (1-minute average at the start){busy}"
        )?;
    }
    match (&r.adapter, &r.gpu_unavailable) {
        (Some(a), _) => writeln!(out, "gpu:      {a}")?,
        (None, Some(why)) => writeln!(out, "gpu:      none usable: {why}")?,
        (None, None) => writeln!(out, "gpu:      not requested")?,
    }
    writeln!(out, "data:     {}", r.data)?;
    writeln!(
        out,
        "budget:   {} per case; up to {} timed repeats after one warm-up; train steps in chunks of {}",
        secs(r.budget_s),
        r.repeat,
        r.chunk
    )?;
    out.flush()
}

pub(super) fn write_body<W: Write + ?Sized>(out: &mut W, grid: &Grid, r: &Report) -> Result<()> {
    writeln!(out)?;
    writeln!(out, "{}", verdict(r))?;
    write_table(out, r)?;
    write_footnotes(out, grid, r)?;
    write_counters(out, r)?;
    write_growth(out, r)?;
    write_crossovers(out, grid, r)?;
    super::peer::write(out, &r.peers)
}

fn write_table<W: Write + ?Sized>(out: &mut W, r: &Report) -> Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<6} {:<21} {:>5} {:>6} {:>7} {:>4} {:>10} {:>10} {:>10} {:>11} {:>15}  cpu vs gpu / status",
        "device", "what", "batch", "hidden", "params", "reps", "median¹", "min", "max", "ops²", "rate",
    )?;
    for c in &r.cases {
        writeln!(out, "{}", row(&r.cases, c).trim_end())?;
    }
    Ok(())
}

/// The kinds of work a verdict prefers, the chapter's step first.
const VERDICT_ORDER: [Work; 6] = [
    Work::NumericalIncremental,
    Work::TrainStepNumerical,
    Work::Backprop,
    Work::TrainStep,
    Work::Forward,
    Work::NumericalFull,
];

/// One line before the (wide) table: the CPU against the GPU on the case that matters most
/// that both measured (the chapter's numerical step at batch 100, hidden 50 where it ran):
/// "verdict: numerical-incremental (batch 100, hidden 50): CPU 1.60 ms, GPU 7.20 ms (GPU 4.5x
/// slower) on <adapter>; CPU: <model>".
pub(super) fn verdict(r: &Report) -> String {
    let measured = |d: Device, w: Work, b: usize, h: usize| {
        r.cases
            .iter()
            .find(|c| (c.device, c.what, c.batch, c.hidden) == (d, w, b, h))
            .and_then(|c| c.median_s)
    };
    let chapter = |c: &&CaseResult| (c.batch != 100, c.hidden != 50);
    let mut pairs = Vec::new();
    for w in VERDICT_ORDER {
        let mut cpu: Vec<&CaseResult> = r
            .cases
            .iter()
            .filter(|c| c.device == Device::Cpu && c.what == w && c.median_s.is_some())
            .collect();
        cpu.sort_by_key(chapter);
        pairs.extend(cpu.into_iter().filter_map(|c| {
            let gpu = measured(Device::Gpu, w, c.batch, c.hidden)?;
            Some((c, c.median_s?, gpu))
        }));
        if !pairs.is_empty() {
            break;
        }
    }
    let cpu_model = &r.cpu_model;
    let Some(&(c, cpu, gpu)) = pairs.first() else {
        let why = match (&r.adapter, &r.gpu_unavailable) {
            (_, Some(why)) => format!("the GPU did not run: {why}"),
            (None, None) => "the GPU was not requested (--device)".to_string(),
            (Some(_), None) => "no case ran on both devices (see the table)".to_string(),
        };
        return format!("verdict: no CPU-vs-GPU comparison ({why}); CPU: {cpu_model}");
    };
    let per = if c.steps_per_call > 1 { " a step" } else { "" };
    let how = if gpu < cpu {
        format!("GPU {}x faster", ratio(cpu / gpu))
    } else {
        format!("GPU {}x slower", ratio(gpu / cpu))
    };
    format!(
        "verdict: {} (batch {}, hidden {}): CPU {}, GPU {}{per} ({how}) on {}; CPU: {cpu_model}",
        c.what.name(),
        c.batch,
        c.hidden,
        secs(cpu),
        secs(gpu),
        r.adapter.as_deref().unwrap_or("the GPU"),
    )
}

/// One case's line.
fn row(cases: &[CaseResult], c: &CaseResult) -> String {
    let lead = format!(
        "{:<6} {:<21} {:>5} {:>6} {:>7}",
        c.device.name(),
        c.what.name(),
        c.batch,
        c.hidden,
        c.params
    );
    let (Some(med), Some(min), Some(max)) = (c.median_s, c.min_s, c.max_s) else {
        return format!(
            "{lead} {:>4} {:>10} {:>10} {:>10} {:>11} {:>15}  {}",
            "-",
            "",
            "",
            "",
            c.op_unit.amount(c.ops),
            "",
            c.status
        );
    };
    let rate = c.rate.map(|v| c.op_unit.rate(v));
    let mut notes = Vec::new();
    if c.device == Device::Gpu {
        notes.extend(gpu_speedup(cases, c).map(versus));
    }
    notes.extend(c.device_median_s.map(|d| format!("kernels {}³", secs(d))));
    let mut note = notes.join("; ");
    if c.status != "ok" {
        note = format!("{note}  [{}]", c.status);
    }
    format!(
        "{lead} {:>4} {:>10} {:>10} {:>10} {:>11} {:>15}  {}",
        c.repeats,
        secs(med),
        secs(min),
        secs(max),
        c.op_unit.amount(c.ops),
        rate.as_deref().unwrap_or("-"),
        note.trim()
    )
}

/// "gpu 2.1x faster" / "cpu 3.4x faster", from cpu median / gpu median.
fn versus(speedup: f64) -> String {
    if speedup > 1.0 {
        format!("gpu {}x faster", ratio(speedup))
    } else {
        format!("cpu {}x faster", ratio(1.0 / speedup))
    }
}

fn write_footnotes<W: Write + ?Sized>(out: &mut W, grid: &Grid, r: &Report) -> Result<()> {
    writeln!(out)?;
    writeln!(out, "¹ wall (submit+wait): wall clock around set_batch + the call, median of the timed repeats after")?;
    writeln!(out, "  one warm-up; each call reads its result back, so on the GPU it is submit-and-wait. The ratios")?;
    writeln!(out, "  compare these wall times. train-step rows: one train_steps call over a chunk of {} batches", r.chunk)?;
    writeln!(
        out,
        "  (as training runs it), divided by its steps: times, ops and rates are per step."
    )?;
    writeln!(out, "² forward = 2*B*sum(fan_in*fan_out) FLOPs (bias, activation, softmax and loss are O(B*(H+10)),")?;
    writeln!(out, "  under 1% here, not counted); backprop ~ 3x forward; train-step = backprop + a forward for the")?;
    writeln!(
        out,
        "  step's loss = 4x forward (SGD's 2P not counted); numerical-full = 2P forward passes;"
    )?;
    writeln!(out, "  numerical-incremental and train-step-numerical in perturbations (2P a step, each O(B*10) work")?;
    writeln!(out, "  for the samples it reaches).")?;
    if grid.batches.is_none() && grid.what.iter().any(|w| w.is_numerical()) {
        writeln!(out, "  The numerical kinds run at batch {NUMERICAL_DEFAULT_BATCH} only by default (give --batch to change that).")?;
    }
    writeln!(out, "  A case priced over --budget (warm-up + one repeat; from its op count at this device's forward rate,")?;
    writeln!(out, "  the numerical gradient also by a probe at a smaller batch) is skipped; a slow case gets fewer repeats.")?;
    // The train-step kinds never have a kernel time (a chunk is many submissions).
    let gpu_ran = r
        .cases
        .iter()
        .any(|c| c.device == Device::Gpu && c.ok() && c.what.train_method().is_none());
    if r.cases.iter().any(|c| c.device_median_s.is_some()) {
        writeln!(out, "³ kernels: the GPU's own time for the call, from timestamp queries around its work (first kernel")?;
        writeln!(
            out,
            "  to last, same repeats, median): wall minus submission, read-back and host overhead."
        )?;
    } else if gpu_ran {
        writeln!(
            out,
            "³ This adapter has no timestamp queries: the GPU rows are wall clock only."
        )?;
    }
    Ok(())
}

/// The train-step rows that ran on the GPU (or on any backend that counts): what a step cost
/// the host.
fn write_counters<W: Write + ?Sized>(out: &mut W, r: &Report) -> Result<()> {
    let rows: Vec<&CaseResult> = r
        .cases
        .iter()
        .filter(|c| c.what.train_method().is_some() && c.ok())
        .filter(|c| c.device == Device::Gpu || c.counters_per_step.is_some())
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "host costs per training step⁴ (over the timed chunks):"
    )?;
    writeln!(
        out,
        "  {:<6} {:<21} {:>5} {:>6} {:>8} {:>8} {:>10} {:>8} {:>9}",
        "device",
        "what",
        "batch",
        "hidden",
        "submits",
        "waits",
        "dispatches",
        "copies",
        "creations"
    )?;
    for c in rows {
        let lead = format!(
            "  {:<6} {:<21} {:>5} {:>6}",
            c.device.name(),
            c.what.name(),
            c.batch,
            c.hidden
        );
        match c.counters_per_step {
            Some(k) => writeln!(
                out,
                "{lead} {:>8} {:>8} {:>10} {:>8} {:>9}",
                count(k.submissions),
                count(k.blocking_waits),
                count(k.dispatches),
                count(k.copies),
                count(k.creations)
            )?,
            None => writeln!(out, "{lead} {:>8}  (this backend counts nothing)", "n/a")?,
        }
    }
    writeln!(out, "⁴ submissions of command buffers, blocking waits on the device (map + poll), compute dispatches,")?;
    writeln!(out, "  buffer copies and queue writes, and creations of buffers, bind groups and pipelines, from the")?;
    writeln!(
        out,
        "  backend's counters before and after the timed chunks, divided by their steps."
    )
}

/// A per-step count: whole numbers plainly, fractions (a chunk sharing one) to 3 digits.
fn count(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Only the fits with an exponent: a kind of work measured at two sizes or more.
fn write_growth<W: Write + ?Sized>(out: &mut W, r: &Report) -> Result<()> {
    let k = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
    let fits: Vec<_> = r
        .fits
        .iter()
        .filter(|f| f.points >= 2 && (f.k_hidden.is_some() || f.k_batch.is_some()))
        .collect();
    if fits.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "growth (least squares on log-log: time ~ hidden^k_h * batch^k_b; the op count's for comparison):")?;
    let partial = fits
        .iter()
        .any(|f| f.k_hidden.is_none() || f.k_batch.is_none());
    for f in &fits {
        writeln!(
            out,
            "  {:<4} {:<21} k_h {:>5}  k_b {:>5}   (ops: k_h {}, k_b {}; {} points)",
            f.device.name(),
            f.what.name(),
            k(f.k_hidden),
            k(f.k_batch),
            k(f.ops_k_hidden),
            k(f.ops_k_batch),
            f.points,
        )?;
    }
    if partial {
        writeln!(out, "  (- where that size did not vary)")?;
    }
    Ok(())
}

/// Only when both devices were asked for.
fn write_crossovers<W: Write + ?Sized>(out: &mut W, grid: &Grid, r: &Report) -> Result<()> {
    if !(grid.devices.contains(&Device::Cpu) && grid.devices.contains(&Device::Gpu)) {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "where the GPU overtakes the CPU (smallest op count at which the gpu median < the cpu median):")?;
    for x in &r.crossovers {
        let text = match (x.compared, x.batch, x.hidden, x.gpu_speedup) {
            (0, ..) => "not compared (not measured on both devices)".to_string(),
            (_, Some(b), Some(h), Some(s)) => {
                format!("batch {b}, hidden {h} (gpu {}x faster there)", ratio(s))
            }
            (1, ..) => "not at the one size compared (the cpu was faster)".to_string(),
            (n, ..) => format!("not in this range (the cpu was faster at all {n} sizes compared)"),
        };
        writeln!(out, "  {:<21} {text}", x.what.name())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(versus(2.0), "gpu 2.0x faster");
        assert_eq!(versus(0.25), "cpu 4.0x faster");
        assert_eq!(count(2.0), "2");
        assert_eq!(count(0.05), "0.050");
    }
}
