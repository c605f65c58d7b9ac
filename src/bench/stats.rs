//! What the measured cases add up to: medians, growth exponents (least squares on log-log),
//! where the GPU overtakes the CPU, and host costs per training step.

use super::{CaseResult, Device, Work};
use serde::Serialize;

/// What one training step cost the host on average: the backend's counters over the timed
/// repeats, divided by their steps (fractions where a chunk shares a submission).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StepCounters {
    pub submissions: f64,
    pub blocking_waits: f64,
    pub dispatches: f64,
    pub copies: f64,
    pub creations: f64,
}

/// time ~ hidden^k_hidden * batch^k_batch, fitted by least squares on log-log over the cases of
/// one device and kind of work; a size that did not vary has no exponent.
#[derive(Clone, Debug, Serialize)]
pub struct Fit {
    pub device: Device,
    pub what: Work,
    pub points: usize,
    pub k_hidden: Option<f64>,
    pub k_batch: Option<f64>,
    /// The same fit of the op count: what the time would do at a constant rate.
    pub ops_k_hidden: Option<f64>,
    pub ops_k_batch: Option<f64>,
}

/// The smallest case (by op count) at which the GPU's median beats the CPU's, if any.
#[derive(Clone, Debug, Serialize)]
pub struct Crossover {
    pub what: Work,
    /// Sizes measured on both devices.
    pub compared: usize,
    pub batch: Option<usize>,
    pub hidden: Option<usize>,
    /// cpu median / gpu median at that size.
    pub gpu_speedup: Option<f64>,
}

pub(super) fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(0.5 * (sorted[n / 2 - 1] + sorted[n / 2])),
    }
}

/// Least squares of log(time) (and log(ops)) on log(hidden) and log(batch) per (device, work),
/// over the sizes that vary among its measured cases.
pub(super) fn fits(cases: &[CaseResult]) -> Vec<Fit> {
    let mut keys: Vec<(Device, Work)> = Vec::new();
    for c in cases.iter().filter(|c| c.ok()) {
        if !keys.contains(&(c.device, c.what)) {
            keys.push((c.device, c.what));
        }
    }
    keys.sort();
    keys.into_iter()
        .map(|(device, what)| fit(cases, device, what))
        .collect()
}

fn fit(cases: &[CaseResult], device: Device, what: Work) -> Fit {
    let pts: Vec<&CaseResult> = cases
        .iter()
        .filter(|c| c.device == device && c.what == what && c.ok())
        .collect();
    let xs: Vec<[f64; 2]> = pts
        .iter()
        .map(|c| [(c.hidden as f64).ln(), (c.batch as f64).ln()])
        .collect();
    let time: Vec<f64> = pts
        .iter()
        .map(|c| c.median_s.unwrap_or(f64::NAN).ln())
        .collect();
    let ops: Vec<f64> = pts.iter().map(|c| c.ops.ln()).collect();
    let [k_hidden, k_batch] = loglog(&xs, &time);
    let [ops_k_hidden, ops_k_batch] = loglog(&xs, &ops);
    Fit {
        device,
        what,
        points: pts.len(),
        k_hidden,
        k_batch,
        ops_k_hidden,
        ops_k_batch,
    }
}

/// Slopes of y on each column of x (with an intercept), for the columns that vary; None for a
/// column that does not, or when the system is degenerate.
fn loglog(x: &[[f64; 2]], y: &[f64]) -> [Option<f64>; 2] {
    let varies = |j: usize| x.iter().any(|r| (r[j] - x[0][j]).abs() > 1e-12);
    let cols: Vec<usize> = (0..2).filter(|&j| varies(j)).collect();
    let mut out = [None, None];
    // Needs more points than unknowns (intercept + slopes) to be a fit at all.
    if cols.is_empty() || x.len() <= cols.len() {
        return out;
    }
    // Normal equations A^T A beta = A^T y, with A = [1, x_cols...].
    let row = |r: &[f64; 2]| -> Vec<f64> {
        std::iter::once(1.0)
            .chain(cols.iter().map(|&j| r[j]))
            .collect()
    };
    let n = cols.len() + 1;
    let mut m = vec![vec![0.0; n + 1]; n];
    for (r, &yi) in x.iter().zip(y) {
        let a = row(r);
        for i in 0..n {
            for j in 0..n {
                m[i][j] += a[i] * a[j];
            }
            m[i][n] += a[i] * yi;
        }
    }
    if let Some(beta) = solve(m) {
        for (k, &j) in cols.iter().enumerate() {
            out[j] = Some(beta[k + 1]).filter(|v| v.is_finite());
        }
    }
    out
}

/// Gaussian elimination with partial pivoting on an augmented n x (n+1) matrix.
fn solve(mut m: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let n = m.len();
    for c in 0..n {
        let p = (c..n).max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))?;
        if m[p][c].abs() < 1e-12 {
            return None;
        }
        m.swap(c, p);
        let pivot = m[c].clone();
        for row in &mut m[c + 1..] {
            let f = row[c] / pivot[c];
            for (x, p) in row[c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| m[r][k] * x[k]).sum();
        x[r] = (m[r][n] - s) / m[r][r];
    }
    Some(x)
}

/// The CPU and GPU rows of one case, when both ran.
fn pair<'a>(cases: &'a [CaseResult], c: &CaseResult) -> Option<(&'a CaseResult, &'a CaseResult)> {
    let find = |d: Device| {
        cases.iter().find(|o| {
            o.device == d
                && o.what == c.what
                && o.batch == c.batch
                && o.hidden == c.hidden
                && o.ok()
        })
    };
    Some((find(Device::Cpu)?, find(Device::Gpu)?))
}

pub(super) fn crossovers(what: &[Work], cases: &[CaseResult]) -> Vec<Crossover> {
    what.iter()
        .map(|&w| {
            let mut both: Vec<(&CaseResult, &CaseResult)> = cases
                .iter()
                .filter(|c| c.what == w && c.device == Device::Cpu)
                .filter_map(|c| pair(cases, c))
                .collect();
            both.sort_by(|a, b| {
                a.0.ops
                    .total_cmp(&b.0.ops)
                    .then((a.0.batch, a.0.hidden).cmp(&(b.0.batch, b.0.hidden)))
            });
            let first = both.iter().find(|(c, g)| g.median_s < c.median_s);
            Crossover {
                what: w,
                compared: both.len(),
                batch: first.map(|(c, _)| c.batch),
                hidden: first.map(|(c, _)| c.hidden),
                gpu_speedup: first.and_then(|(c, g)| Some(c.median_s? / g.median_s?)),
            }
        })
        .collect()
}

/// cpu median / gpu median for a case measured on both devices.
pub(super) fn gpu_speedup(cases: &[CaseResult], c: &CaseResult) -> Option<f64> {
    let (cpu, gpu) = pair(cases, c)?;
    Some(cpu.median_s? / gpu.median_s?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loglog_recovers_exponents() {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for h in [50.0f64, 100.0, 200.0] {
            for b in [100.0f64, 1000.0] {
                x.push([h.ln(), b.ln()]);
                y.push((3.0 * h.powf(1.5) * b.powf(0.5)).ln());
            }
        }
        let [kh, kb] = loglog(&x, &y);
        assert!((kh.unwrap() - 1.5).abs() < 1e-9 && (kb.unwrap() - 0.5).abs() < 1e-9);
        // One batch size: no batch exponent, the hidden one still fits.
        let [kh, kb] = loglog(
            &x[..1]
                .iter()
                .chain(&x[2..3])
                .chain(&x[4..5])
                .copied()
                .collect::<Vec<_>>(),
            &[y[0], y[2], y[4]],
        );
        assert!((kh.unwrap() - 1.5).abs() < 1e-9 && kb.is_none());
        assert_eq!(loglog(&x[..1], &y[..1]), [None, None]);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, 2.0, 9.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), Some(3.0));
    }
}
