//! `--peer numpy`: the chapter's own NumPy code, timed on the same machine, against our CPU.

use super::progress::Progress;
use super::text::{ratio, secs};
use super::{CaseResult, Device, Peer, Work};
use serde::Serialize;
use std::io::Write;
use std::process::{Command, Stdio};

/// The NumPy peer's configuration: the chapter's 784-50-10 at batch 100.
const PEER_BATCH: usize = 100;
const PEER_HIDDEN: usize = 50;
/// The peer script, embedded so `--peer numpy` works from any directory (python3 reads it on
/// stdin).
const PEER_SCRIPT: &str = include_str!("../../benches/peers/chapter_numpy.py");

/// One peer measurement and how ours compares.
#[derive(Clone, Debug, Serialize)]
pub struct PeerResult {
    pub peer: Peer,
    /// "numerical" (one numerical-gradient step) or "backprop" (one backprop step).
    pub what: &'static str,
    pub batch: usize,
    pub hidden: usize,
    pub repeats: usize,
    pub median_s: Option<f64>,
    pub status: String,
    /// The BLAS thread settings the peer ran with (they decide its speed on a busy machine).
    pub blas_threads: String,
    /// Our CPU case it is compared with, and its median.
    pub ours: Work,
    pub ours_median_s: Option<f64>,
    /// peer median / our median: how many times faster ours is.
    pub speedup: Option<f64>,
}

fn peer_name(peer: Peer) -> &'static str {
    match peer {
        Peer::Numpy => "numpy",
    }
}

/// A peer step: its repeats and its median, or the status saying why there is none.
type Timed = (&'static str, usize, std::result::Result<f64, String>);

/// Runs the chapter's NumPy code for one numerical-gradient step and one backprop step at
/// 784-50-10, batch 100, and compares each with our matching CPU case.
pub(super) fn run(
    peer: Peer,
    repeat: usize,
    cases: &[CaseResult],
    progress: &Progress,
) -> Vec<PeerResult> {
    let ready = python_with_numpy();
    // A NumPy numerical step takes seconds: one run of it, no warm-up (NumPy has no JIT).
    let timed: Vec<Timed> = [("numerical", 1), ("backprop", repeat)]
        .into_iter()
        .map(|(what, repeats)| {
            progress.line(&format!(
                "peer {}: {what} step, 784-{PEER_HIDDEN}-10 batch {PEER_BATCH}",
                peer_name(peer)
            ));
            let t = ready
                .clone()
                .and_then(|()| run_numpy(what, repeats).map_err(|e| format!("error: {e}")));
            (what, repeats, t)
        })
        .collect();
    compare(peer, &timed, cases)
}

/// Their numerical step against both of our strategies (the full one, the same algorithm,
/// only when this grid measured it), their backprop step against ours.
fn compare(peer: Peer, timed: &[Timed], cases: &[CaseResult]) -> Vec<PeerResult> {
    let ours = |w: Work| {
        cases
            .iter()
            .find(|c| {
                c.device == Device::Cpu
                    && c.what == w
                    && c.batch == PEER_BATCH
                    && c.hidden == PEER_HIDDEN
            })
            .and_then(|c| c.median_s)
    };
    let blas_threads = blas_threads();
    let comparisons = [
        ("numerical", Work::NumericalIncremental),
        ("numerical", Work::NumericalFull),
        ("backprop", Work::Backprop),
    ];
    comparisons
        .into_iter()
        .filter(|&(_, w)| w != Work::NumericalFull || ours(w).is_some())
        .filter_map(|(what, ours_what)| {
            let (_, repeats, t) = timed.iter().find(|(w, ..)| *w == what)?;
            let median_s = t.as_ref().ok().copied();
            let ours_median_s = ours(ours_what);
            Some(PeerResult {
                peer,
                what,
                batch: PEER_BATCH,
                hidden: PEER_HIDDEN,
                repeats: if median_s.is_some() { *repeats } else { 0 },
                median_s,
                status: t.as_ref().map_or_else(|why| why.clone(), |_| "ok".into()),
                blas_threads: blas_threads.clone(),
                ours: ours_what,
                ours_median_s,
                speedup: median_s.zip(ours_median_s).map(|(p, o)| p / o),
            })
        })
        .collect()
}

/// The thread variables NumPy's BLAS reads, as set, or what it does without them.
fn blas_threads() -> String {
    let set: Vec<String> = ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
        .collect();
    if set.is_empty() {
        "NumPy's default (a BLAS thread per core)".into()
    } else {
        set.join(" ")
    }
}

/// Ok when python3 runs and imports numpy; else the row status saying what is missing.
fn python_with_numpy() -> std::result::Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Err(_) => Err("not run: no python3".into()),
        Ok(s) if !s.success() => Err("not run: python3 has no numpy (pip install numpy)".into()),
        Ok(_) => Ok(()),
    }
}

/// Runs the embedded peer script (`python3 -` reads it from stdin) and returns its median.
fn run_numpy(what: &str, repeats: usize) -> std::result::Result<f64, String> {
    let mut child = Command::new("python3")
        .arg("-")
        .args(["--what", what])
        .args(["--batch", &PEER_BATCH.to_string()])
        .args(["--hidden", &PEER_HIDDEN.to_string()])
        .args(["--repeat", &repeats.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start python3: {e}"))?;
    // The script is small, so writing it all before reading cannot fill a pipe and deadlock.
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(PEER_SCRIPT.as_bytes())
            .map_err(|e| format!("writing the script to python3: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for python3: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(format!(
            "the peer script failed ({}): {last}",
            output.status
        ));
    }
    median_from_json(&String::from_utf8_lossy(&output.stdout))
}

/// The `median_s` of the last JSON line the peer script printed.
fn median_from_json(stdout: &str) -> std::result::Result<f64, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("the peer script printed no JSON")?;
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("the peer script's JSON: {e}"))?;
    v.get("median_s")
        .and_then(|m| m.as_f64())
        .ok_or_else(|| "the peer script's JSON has no median_s".to_string())
}

/// The peer section of the table.
pub(super) fn write<W: Write + ?Sized>(out: &mut W, peers: &[PeerResult]) -> std::io::Result<()> {
    let Some(first) = peers.first() else {
        return Ok(());
    };
    writeln!(out)?;
    writeln!(
        out,
        "peer: the chapter's NumPy code (benches/peers/chapter_numpy.py: f64, random MNIST-shaped data), 784-{PEER_HIDDEN}-10, batch {PEER_BATCH}"
    )?;
    writeln!(out, "  BLAS threads: {} (a busy machine hurts a multi-threaded BLAS most; see benches/peers/README.md)", first.blas_threads)?;
    for p in peers {
        writeln!(
            out,
            "  {:<15} {}; {}{}",
            format!("{} step:", p.what),
            theirs(p),
            ours(p),
            faster(p)
        )?;
    }
    Ok(())
}

fn theirs(p: &PeerResult) -> String {
    match p.median_s {
        Some(t) => format!(
            "numpy {} ({} repeat{})",
            secs(t),
            p.repeats,
            if p.repeats == 1 { "" } else { "s" }
        ),
        None => format!("numpy {}", p.status),
    }
}

fn ours(p: &PeerResult) -> String {
    match p.ours_median_s {
        Some(t) => format!("ours (cpu {}) {}", p.ours.name(), secs(t)),
        None => format!(
            "ours (cpu {}): not in this grid (add --device cpu --what {} --hidden {PEER_HIDDEN})",
            p.ours.name(),
            p.ours.name()
        ),
    }
}

fn faster(p: &PeerResult) -> String {
    match p.speedup {
        Some(s) if s >= 1.0 => format!(" -> ours {}x faster", ratio(s)),
        Some(s) => format!(" -> numpy {}x faster", ratio(1.0 / s)),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_peer_median_is_read_from_its_last_json_line() {
        let out =
            "warming up\n{\"median_s\": 0.5}\n{\"median_s\": 1.25, \"what\": \"numerical\"}\n";
        assert_eq!(super::median_from_json(out), Ok(1.25));
        assert!(super::median_from_json("no json").is_err());
        assert!(super::median_from_json("{\"mean\": 1}").is_err());
    }
}
