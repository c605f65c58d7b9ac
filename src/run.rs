//! A run folder: `metrics.csv` (one row per evaluation), `loss.csv` (the loss curve),
//! `config.json` (every setting, the seed, the adapter, the version), the plots and the
//! checkpoint. Created, and checked writable, before training starts.

use crate::checkpoint::write_atomic;
use crate::error::{Error, Result};
use crate::train::EvalRecord;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub const METRICS_HEADER: &str = "iteration,loss,train_acc,test_acc,seconds,device,gradient";

pub struct RunDir {
    pub path: PathBuf,
    metrics: BufWriter<File>,
    losses: BufWriter<File>,
    device: String,
    gradient: String,
}

/// `runs/<UTC timestamp>`, e.g. runs/2026-11-23T19-30-05Z.
pub fn default_path() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    PathBuf::from("runs").join(format!(
        "{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    ))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn open_csv(path: &Path, header: &str) -> Result<BufWriter<File>> {
    let fresh = !path.exists();
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::new(file);
    if fresh {
        writeln!(w, "{header}").map_err(|e| Error::io(path, e))?;
    }
    Ok(w)
}

impl RunDir {
    /// Creates the folder (or reuses it: a resumed run appends to its CSV files) and fails early,
    /// naming the folder, when it cannot be written.
    pub fn create(path: &Path, device: &str, gradient: &str) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| {
            Error::config(
                "--out",
                format!(
                    "cannot create the run folder {}: {e}; choose a writable --out DIR",
                    path.display()
                ),
            )
        })?;
        let unwritable = |e: Error| {
            Error::config(
                "--out",
                format!(
                    "the run folder {} is not writable ({e}); choose another --out DIR",
                    path.display()
                ),
            )
        };
        let metrics = open_csv(&path.join("metrics.csv"), METRICS_HEADER).map_err(unwritable)?;
        let losses = open_csv(&path.join("loss.csv"), "iteration,loss").map_err(unwritable)?;
        Ok(RunDir {
            path: path.to_path_buf(),
            metrics,
            losses,
            device: csv_field(device),
            gradient: csv_field(gradient),
        })
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join("checkpoint.safetensors")
    }

    pub fn write_config(&self, config: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string_pretty(config).expect("JSON values serialise");
        write_atomic(&self.path.join("config.json"), text.as_bytes())
    }

    pub fn record_loss(&mut self, iter: usize, loss: f64) -> Result<()> {
        writeln!(self.losses, "{iter},{loss}").map_err(|e| Error::io(self.path.join("loss.csv"), e))
    }

    pub fn record_eval(&mut self, r: &EvalRecord) -> Result<()> {
        writeln!(
            self.metrics,
            "{},{},{},{},{:.3},{},{}",
            r.iter,
            r.batch_loss,
            r.train.accuracy(),
            r.test.accuracy(),
            r.seconds,
            self.device,
            self.gradient
        )
        .and_then(|_| self.metrics.flush())
        .map_err(|e| Error::io(self.path.join("metrics.csv"), e))
    }

    pub fn flush(&mut self) -> Result<()> {
        self.losses
            .flush()
            .map_err(|e| Error::io(self.path.join("loss.csv"), e))?;
        self.metrics
            .flush()
            .map_err(|e| Error::io(self.path.join("metrics.csv"), e))
    }

    /// The loss curve and the evaluations read back from this folder's CSV files (so a resumed
    /// run plots its whole history).
    pub fn history(&self) -> Result<(Vec<(usize, f64)>, Vec<(usize, f64, f64)>)> {
        let read = |name: &str| {
            std::fs::read_to_string(self.path.join(name))
                .map_err(|e| Error::io(self.path.join(name), e))
        };
        let losses = read("loss.csv")?
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (i, v) = l.split_once(',')?;
                Some((i.parse().ok()?, v.parse().ok()?))
            })
            .collect();
        let evals = read("metrics.csv")?
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                Some((
                    f.first()?.parse().ok()?,
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                ))
            })
            .collect();
        Ok((losses, evals))
    }
}

/// CSV fields here are free text (an adapter name); commas would split them.
fn csv_field(s: &str) -> String {
    s.replace([',', '\n'], ";")
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_780), (2026, 11, 23));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
