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
use std::io::{Read, Write};
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
    // Unbuffered: each chunk's rows go to the OS in one write, so a kill loses nothing that was
    // reported, and a checkpoint only has to fsync (see `RunSync`).
    metrics: File,
    losses: File,
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

/// What is at `path` when it is not a regular file a run may write: a symbolic link (never
/// followed: its target may be anything, anywhere), a directory, a FIFO or a device.
fn not_a_run_file(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    let t = meta.file_type();
    let what = if t.is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| format!(" to {}", t.display()))
            .unwrap_or_default();
        format!("is a symbolic link{target}; gpu-train does not write a run's files through links")
    } else if t.is_dir() {
        "is a directory, where the run needs a file".to_string()
    } else if t.is_file() {
        return None;
    } else {
        "is not a regular file (a FIFO, a socket or a device)".to_string()
    };
    Some(format!(
        "{}: {what}; remove it, or choose another --out DIR",
        path.display()
    ))
}

/// Opens one of the run's files without following a symbolic link: checked before the open
/// (to name what is there) and refused by the open itself on unix (`O_NOFOLLOW`, so a link
/// swapped in between is refused too), then checked to be a regular file.
fn open_run_file(folder: &Path, path: &Path, opts: &mut OpenOptions) -> Result<File> {
    let refuse = |what: String| Error::config("--out", what);
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if let Some(what) = not_a_run_file(path, &meta) {
                return Err(refuse(what));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: a FIFO swapped in cannot block the open; it changes nothing for a
        // regular file.
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return refuse(format!(
                "{}: is a symbolic link; gpu-train does not write a run's files through links; \
                 remove it, or choose another --out DIR",
                path.display()
            ));
        }
        if e.kind() == std::io::ErrorKind::IsADirectory {
            return refuse(format!(
                "{}: is a directory, where the run needs a file; remove it, or choose another \
                 --out DIR",
                path.display()
            ));
        }
        out_error(
            folder,
            format!(
                "{} cannot be opened ({e}); the run folder may not be writable: choose another \
                 --out DIR",
                path.display()
            ),
        )
    })?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if let Some(what) = not_a_run_file(path, &meta) {
        return Err(refuse(what));
    }
    Ok(file)
}

/// Takes the folder's lock, or says which run holds it.
fn lock(path: &Path) -> Result<File> {
    let lock_path = path.join(LOCK_FILE);
    let file = open_run_file(
        path,
        &lock_path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
    )?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = (&file).take(4096).read_to_string(&mut holder);
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

/// Opens a CSV file of the run for appending; a new (or empty) one gets its header at once and
/// on the disk, so the file is never without it, however the run ends.
fn open_append(folder: &Path, path: &Path, header: &str) -> Result<File> {
    let mut file = open_run_file(folder, path, OpenOptions::new().create(true).append(true))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        file.write_all(format!("{header}\n").as_bytes())
            .and_then(|_| file.sync_data())
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(file)
}

/// Reads one of the run's files (not through a link); None when it does not exist.
fn read_run_file(folder: &Path, path: &Path) -> Result<Option<String>> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    let mut file = open_run_file(folder, path, OpenOptions::new().read(true))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| Error::io(path, e))?;
    Ok(Some(text))
}

/// Keeps the header and the rows whose first field (the iteration) passes `keep`; rewrites the
/// file atomically. A row that does not parse (a line cut by a kill) is dropped too.
fn keep_rows(folder: &Path, path: &Path, header: &str, keep: impl Fn(usize) -> bool) -> Result<()> {
    let Some(text) = read_run_file(folder, path)? else {
        return Ok(());
    };
    let mut out = String::with_capacity(text.len() + header.len() + 1);
    out.push_str(header);
    out.push('\n');
    let columns = header.split(',').count();
    // Only lines ended by a newline are whole: a kill mid-write can leave "366,1" of
    // "366,1.3455", which parses but is not what was computed.
    let whole = match text.rfind('\n') {
        Some(end) => &text[..end + 1],
        None => "",
    };
    for line in whole.lines().filter(|&l| l != header) {
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

/// Clones of a run folder's CSV files, for the checkpointer: what a checkpoint covers is made
/// durable (fsync) before the checkpoint is renamed into place.
pub struct RunSync {
    files: Vec<(PathBuf, File)>,
}

impl RunSync {
    /// fsyncs the metrics and the loss curve.
    pub fn sync(&self) -> Result<()> {
        for (path, f) in &self.files {
            f.sync_data().map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }
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
        // symlink_metadata: a dangling link is something there too (exists() would say no).
        let present: Vec<&str> = RUN_FILES
            .iter()
            .copied()
            .filter(|f| std::fs::symlink_metadata(path.join(f)).is_ok())
            .collect();
        if !present.is_empty() {
            if !overwrite {
                let checkpoint = path.join("checkpoint.safetensors");
                let advice = if present.contains(&"checkpoint.safetensors") {
                    format!(
                        "continue it with --resume {}, pass --overwrite to replace it",
                        checkpoint.display()
                    )
                } else {
                    // Killed before its first checkpoint: there is nothing to resume.
                    "it has no checkpoint to resume (the run stopped before writing one); pass \
                     --overwrite to replace it"
                        .to_string()
                };
                return Err(out_error(
                    path,
                    format!(
                        "the folder already holds a run ({}); {advice}, or choose another --out DIR",
                        present.join(", "),
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
        keep_rows(path, &path.join("metrics.csv"), METRICS_HEADER, |i| {
            i <= iteration
        })?;
        keep_rows(path, &path.join("loss.csv"), LOSS_HEADER, |i| i < iteration)?;
        Self::open(path, lock)
    }

    fn open(path: &Path, lock: File) -> Result<Self> {
        let metrics = open_append(path, &path.join("metrics.csv"), METRICS_HEADER)?;
        let losses = open_append(path, &path.join("loss.csv"), LOSS_HEADER)?;
        Ok(RunDir {
            path: path.to_path_buf(),
            metrics,
            losses,
            _lock: lock,
        })
    }

    /// Handles on the CSV files for fsyncing them from elsewhere (the checkpointer).
    pub fn syncer(&self) -> Result<RunSync> {
        let mut files = Vec::new();
        for (f, name) in [(&self.losses, "loss.csv"), (&self.metrics, "metrics.csv")] {
            let path = self.path.join(name);
            files.push((path.clone(), f.try_clone().map_err(|e| Error::io(path, e))?));
        }
        Ok(RunSync { files })
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join("checkpoint.safetensors")
    }

    pub fn write_config(&self, config: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string_pretty(config).expect("JSON values serialise");
        write_atomic(&self.path.join("config.json"), text.as_bytes())
    }

    /// The batch losses of steps `first..`, every `every`th step kept, in one write.
    pub fn record_losses(&mut self, first: usize, losses: &[f64], every: usize) -> Result<()> {
        let mut rows = String::new();
        for (k, loss) in losses.iter().enumerate() {
            let i = first + k;
            if i.is_multiple_of(every.max(1)) {
                rows += &format!("{i},{loss}\n");
            }
        }
        self.losses
            .write_all(rows.as_bytes())
            .map_err(|e| Error::io(self.path.join("loss.csv"), e))
    }

    pub fn record_eval(&mut self, r: &EvalRecord) -> Result<()> {
        let row = format!(
            "{},{:.4},{:.3},{},{},{},{},{}\n",
            r.iter,
            r.epoch,
            r.seconds,
            r.batch_loss.map(|l| l.to_string()).unwrap_or_default(),
            r.train.loss,
            r.train.accuracy(),
            r.test.loss,
            r.test.accuracy(),
        );
        self.metrics
            .write_all(row.as_bytes())
            .map_err(|e| Error::io(self.path.join("metrics.csv"), e))
    }

    /// fsyncs both CSV files (at the end; each checkpoint does it through [`RunSync`]).
    pub fn flush(&mut self) -> Result<()> {
        self.syncer()?.sync()
    }

    /// The run's first evaluation in metrics.csv (earlier sessions of a resumed run
    /// included): (iteration, train loss, train accuracy); None without a readable one.
    pub fn first_evaluation(&self) -> Result<Option<(usize, f64, f64)>> {
        let path = self.path.join("metrics.csv");
        let Some(text) = read_run_file(&self.path, &path)? else {
            return Ok(None);
        };
        Ok(text.lines().nth(1).and_then(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(4)?.parse().ok()?,
                f.get(5)?.parse().ok()?,
            ))
        }))
    }

    /// The loss curve and the evaluations (epoch, train accuracy, test accuracy) read back from
    /// this folder's CSV files, so a resumed run plots its whole history.
    pub fn history(&self) -> Result<(LossCurve, Evaluations)> {
        let read = |name: &str| -> Result<String> {
            let path = self.path.join(name);
            read_run_file(&self.path, &path)?
                .ok_or_else(|| Error::io(&path, std::io::Error::from(std::io::ErrorKind::NotFound)))
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
