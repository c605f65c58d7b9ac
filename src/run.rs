//! A run folder: `metrics.csv` (one row per evaluation), `loss.csv` (the loss curve),
//! `config.json` (every setting, the seed, the adapter, the version), the plots and the
//! checkpoint.
//!
//! Nothing in a folder is silently mixed or lost: a fresh run refuses a folder that holds files
//! (unless told to overwrite), a lock keeps a second run out while one is using it, and a resume
//! first drops the rows written after its checkpoint so every iteration appears once.

use crate::checkpoint::write_atomic;
use crate::error::{Error, Result};
use crate::train::EvalRecord;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The loss curve read back: (iteration, loss).
pub type LossCurve = Vec<(usize, f64)>;
/// The evaluations read back: (epoch, train accuracy, test accuracy).
pub type Evaluations = Vec<(f64, f64, f64)>;

/// metrics.csv's columns: constant facts (device, gradient, settings) live in config.json.
pub const METRICS_HEADER: &str =
    "iteration,epoch,seconds,batch_loss,train_loss,train_acc,test_loss,test_acc";
/// loss.csv's columns: the batch loss of step `iteration`, before its update.
pub const LOSS_HEADER: &str = "iteration,batch_loss";
/// The files a run writes (and a fresh run with --overwrite removes).
pub const RUN_FILES: [&str; 6] = [
    "metrics.csv",
    "loss.csv",
    "config.json",
    "loss.png",
    "accuracy.png",
    "checkpoint.safetensors",
];
const LOCK_FILE: &str = ".gpu-train.lock";

pub struct RunDir {
    pub path: PathBuf,
    metrics: BufWriter<File>,
    losses: BufWriter<File>,
    /// Held for the run's lifetime: the OS releases it when the process ends, however it ends.
    _lock: File,
}

/// `runs/<UTC time>`, e.g. runs/2026-11-23T19-30-05Z; see [`RunDir::create_default`].
pub fn default_path() -> PathBuf {
    PathBuf::from("runs").join(crate::time::UtcDateTime::now().format('-'))
}

fn out_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::config("--out", format!("{}: {what}", path.display()))
}

/// Takes the folder's lock, or says which run holds it.
fn lock(path: &Path) -> Result<File> {
    let lock_path = path.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| {
            out_error(
                path,
                format!("the run folder is not writable ({e}); choose another --out DIR"),
            )
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
            return Err(out_error(
                path,
                format!(
                    "another gpu-train run is using this folder ({}); wait for it to finish or choose another --out DIR",
                    if holder.trim().is_empty() { "process unknown" } else { holder.trim() }
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(out_error(path, format!("cannot lock the run folder: {e}")))
        }
    }
    let mut f = &file;
    let me = format!(
        "pid {}, {}",
        std::process::id(),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    let _ = f.set_len(0);
    let _ = f.write_all(me.as_bytes());
    Ok(file)
}

fn open_append(path: &Path, header: &str) -> Result<BufWriter<File>> {
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

/// Keeps the header and the rows whose first field (the iteration) passes `keep`; rewrites the
/// file atomically. A row that does not parse (a line cut by a kill) is dropped too.
fn keep_rows(path: &Path, header: &str, keep: impl Fn(usize) -> bool) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(header);
    out.push('\n');
    let columns = header.split(',').count();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let ok = fields.len() == columns
            && fields[0].parse::<usize>().is_ok_and(&keep)
            && fields[1..]
                .iter()
                .all(|f| f.is_empty() || f.parse::<f64>().is_ok());
        if ok {
            out.push_str(line);
            out.push('\n');
        }
    }
    write_atomic(path, out.as_bytes())
}

impl RunDir {
    /// A fresh run's folder. It may exist if it is empty; a folder holding a run's files is
    /// refused (resume into it with --resume, or pass --overwrite) unless `overwrite`.
    pub fn create(path: &Path, overwrite: bool) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| {
            out_error(
                path,
                format!("cannot create the run folder ({e}); choose a writable --out DIR"),
            )
        })?;
        Self::claim(path, overwrite)
    }

    /// A fresh folder under `runs/` named by the time; a name already taken (two runs started
    /// in the same second) gets a suffix, -2, -3, ...: creating the folder is the claim.
    pub fn create_default() -> Result<Self> {
        let base = default_path();
        if let Some(parent) = base.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                out_error(parent, format!("cannot create it ({e}); pass --out DIR"))
            })?;
        }
        for n in 1..1000 {
            let path = if n == 1 {
                base.clone()
            } else {
                PathBuf::from(format!("{}-{n}", base.display()))
            };
            match std::fs::create_dir(&path) {
                Ok(()) => return Self::claim(&path, false),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(out_error(
                        &path,
                        format!("cannot create it ({e}); pass --out DIR"),
                    ))
                }
            }
        }
        Err(out_error(
            &base,
            "999 runs started this second; pass --out DIR",
        ))
    }

    fn claim(path: &Path, overwrite: bool) -> Result<Self> {
        let lock = lock(path)?;
        let present: Vec<&str> = RUN_FILES
            .iter()
            .copied()
            .filter(|f| path.join(f).exists())
            .collect();
        if !present.is_empty() {
            if !overwrite {
                return Err(out_error(
                    path,
                    format!(
                        "the folder already holds a run ({}); continue it with --resume {}, pass --overwrite to replace it, or choose another --out DIR",
                        present.join(", "),
                        path.join("checkpoint.safetensors").display()
                    ),
                ));
            }
            for f in present {
                std::fs::remove_file(path.join(f)).map_err(|e| Error::io(path.join(f), e))?;
            }
        }
        Self::open(path, lock)
    }

    /// The folder of a run resumed at `iteration`: evaluations after it and batch losses from
    /// it on (they will be computed again) are dropped before anything is appended.
    pub fn resume(path: &Path, iteration: usize) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| {
            out_error(
                path,
                format!("cannot create the run folder ({e}); choose a writable --out DIR"),
            )
        })?;
        let lock = lock(path)?;
        keep_rows(&path.join("metrics.csv"), METRICS_HEADER, |i| {
            i <= iteration
        })?;
        keep_rows(&path.join("loss.csv"), LOSS_HEADER, |i| i < iteration)?;
        Self::open(path, lock)
    }

    fn open(path: &Path, lock: File) -> Result<Self> {
        let unwritable = |e: Error| {
            out_error(
                path,
                format!("the run folder is not writable ({e}); choose another --out DIR"),
            )
        };
        let metrics = open_append(&path.join("metrics.csv"), METRICS_HEADER).map_err(unwritable)?;
        let losses = open_append(&path.join("loss.csv"), LOSS_HEADER).map_err(unwritable)?;
        Ok(RunDir {
            path: path.to_path_buf(),
            metrics,
            losses,
            _lock: lock,
        })
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join("checkpoint.safetensors")
    }

    pub fn write_config(&self, config: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string_pretty(config).expect("JSON values serialise");
        write_atomic(&self.path.join("config.json"), text.as_bytes())
    }

    /// The batch losses of steps `first..`, every `every`th step kept.
    pub fn record_losses(&mut self, first: usize, losses: &[f64], every: usize) -> Result<()> {
        for (k, loss) in losses.iter().enumerate() {
            let i = first + k;
            if i.is_multiple_of(every.max(1)) {
                writeln!(self.losses, "{i},{loss}")
                    .map_err(|e| Error::io(self.path.join("loss.csv"), e))?;
            }
        }
        Ok(())
    }

    pub fn record_eval(&mut self, r: &EvalRecord) -> Result<()> {
        writeln!(
            self.metrics,
            "{},{:.4},{:.3},{},{},{},{},{}",
            r.iter,
            r.epoch,
            r.seconds,
            r.batch_loss.map(|l| l.to_string()).unwrap_or_default(),
            r.train.loss,
            r.train.accuracy(),
            r.test.loss,
            r.test.accuracy(),
        )
        .and_then(|_| self.metrics.flush())
        .map_err(|e| Error::io(self.path.join("metrics.csv"), e))
    }

    /// Flushes both CSV files to the disk (at each checkpoint and at the end).
    pub fn flush(&mut self) -> Result<()> {
        for (w, name) in [
            (&mut self.losses, "loss.csv"),
            (&mut self.metrics, "metrics.csv"),
        ] {
            w.flush()
                .and_then(|_| w.get_ref().sync_data())
                .map_err(|e| Error::io(self.path.join(name), e))?;
        }
        Ok(())
    }

    /// The loss curve and the evaluations (epoch, train accuracy, test accuracy) read back from
    /// this folder's CSV files, so a resumed run plots its whole history.
    pub fn history(&self) -> Result<(LossCurve, Evaluations)> {
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
                    f.get(1)?.parse().ok()?,
                    f.get(5)?.parse().ok()?,
                    f.get(7)?.parse().ok()?,
                ))
            })
            .collect();
        Ok((losses, evals))
    }
}
