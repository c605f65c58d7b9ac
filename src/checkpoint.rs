//! Checkpoints in safetensors: the tensors W1, b1, W2, b2, ... in the chapter's shapes (so NumPy
//! or PyTorch load them as they are) and, in the metadata, what a resume needs: the spec, the
//! iteration, the sampler state and the settings. Written atomically: a crash mid-write leaves
//! the previous checkpoint intact.

use crate::data::{idx, SamplerState};
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Params};
use crate::train::{PendingLoss, TrainConfig};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The metadata key that marks a gpu-train checkpoint.
const FORMAT: &str = "gpu-train checkpoint 1";
/// The metadata keys of [`Checkpoint::pending`].
const PENDING_SUM: &str = "batch_loss_sum";
const PENDING_COUNT: &str = "batch_loss_count";

/// The precision the tensors are stored in (f64 keeps an f64 run bit-exact across a resume;
/// f32 values of an f32 run are stored exactly as f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoredPrecision {
    F32,
    F64,
}

/// Everything a checkpoint holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub params: Params,
    /// Training steps done.
    pub iteration: usize,
    pub sampler: SamplerState,
    pub config: TrainConfig,
    /// The batch losses since the last evaluation: a resume's next `batch_loss` needs them.
    pub pending: PendingLoss,
    /// Free-form run facts kept for people (device, version, data).
    pub notes: HashMap<String, String>,
}

fn bad(file: &Path, what: impl Into<String>) -> Error {
    Error::Checkpoint {
        file: file.to_path_buf(),
        what: what.into(),
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises to JSON")
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename
/// over the target, fsync the directory. A reader sees the old file or the new one, never half.
/// Nothing is written through a link: the temporary file is new, and the rename replaces a
/// link at `path` itself, never its target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| bad(path, "is not a file path"))?
        .to_string_lossy()
        .into_owned();
    let (tmp, mut f) = create_temp(&dir, &name).map_err(|e| Error::io(path, e))?;
    let result = (|| -> std::io::Result<()> {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once the directory is synced (POSIX).
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// A new temporary file beside the target: created exclusively (O_EXCL never opens an
/// existing file nor follows a link planted at the name) and, on unix, with O_NOFOLLOW; a name
/// already taken gets the next number.
fn create_temp(dir: &Path, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut last = None;
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.custom_flags(libc::O_NOFOLLOW);
        }
        match opts.open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AlreadyExists)))
}

/// Serialises a checkpoint to safetensors bytes.
pub fn to_bytes(ckpt: &Checkpoint, precision: StoredPrecision) -> Result<Vec<u8>> {
    let spec = &ckpt.params.spec;
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = spec
        .tensors()
        .into_iter()
        .map(|t| {
            let values = &ckpt.params.data[t.offset..t.offset + t.len];
            let bytes = match precision {
                StoredPrecision::F32 => values
                    .iter()
                    .flat_map(|&v| (v as f32).to_le_bytes())
                    .collect(),
                StoredPrecision::F64 => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
            };
            (t.name, t.shape, bytes)
        })
        .collect();
    let dtype = match precision {
        StoredPrecision::F32 => Dtype::F32,
        StoredPrecision::F64 => Dtype::F64,
    };
    let mut views = Vec::new();
    for (name, shape, bytes) in &buffers {
        let view = TensorView::new(dtype, shape.clone(), bytes)
            .map_err(|e| Error::Numerics(format!("checkpoint tensor {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let mut meta = ckpt.notes.clone();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("spec".into(), json(spec));
    meta.insert("iteration".into(), ckpt.iteration.to_string());
    meta.insert("sampler".into(), json(&ckpt.sampler));
    meta.insert("config".into(), json(&ckpt.config));
    meta.insert("seed".into(), ckpt.config.seed.to_string());
    // f64's Display is the shortest text that reads back to the same bits.
    meta.insert(PENDING_SUM.into(), ckpt.pending.sum.to_string());
    meta.insert(PENDING_COUNT.into(), ckpt.pending.count.to_string());
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Numerics(format!("serialising a checkpoint: {e}")))
}

/// Saves atomically.
pub fn save(path: &Path, ckpt: &Checkpoint, precision: StoredPrecision) -> Result<()> {
    write_atomic(path, &to_bytes(ckpt, precision)?)
}

/// Loads and validates a checkpoint: a truncated or corrupted file, a file that is not a
/// gpu-train checkpoint, and tensors whose shapes do not match the spec are clear errors.
///
/// Only a regular file is read (opened without blocking and checked through the handle, so a
/// FIFO cannot block and a device such as `/dev/zero` is never read), and only one within the data-size limit
/// ([`max_data_bytes`](crate::data::idx::max_data_bytes), 1 GiB by default: 134 million f64
/// parameters, 268 million f32).
pub fn load(path: &Path) -> Result<Checkpoint> {
    let limit = idx::max_data_bytes()?;
    let bytes = idx::read_regular(path, limit).map_err(|e| match e {
        idx::ReadError::Unreadable(what) => bad(path, format!("cannot read it: {what}")),
        idx::ReadError::TooLarge(len) => bad(
            path,
            format!(
                "is {len} bytes, beyond the {limit}-byte limit on files gpu-train reads; if it \
                 is genuine, raise the limit with {}=<bytes>",
                idx::MAX_DATA_BYTES_ENV
            ),
        ),
    })?;
    from_bytes(path, &bytes)
}

/// Decodes a checkpoint held in memory; `path` is what errors call it. Every number in it is
/// checked before anything is sized from it: the header's length against the bytes, the spec's
/// sizes with checked arithmetic, each tensor's shape against the spec before the parameters
/// are allocated (so they are bounded by the file's own length), and every parameter finite.
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Checkpoint> {
    check_header_len(path, bytes)?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        bad(path, format!("not a readable safetensors file ({e}); it may be truncated or corrupted: use an earlier checkpoint"))
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(path, format!("unreadable header: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(path, "not a gpu-train checkpoint (its metadata has no \"format\": \"gpu-train checkpoint 1\")"));
    }
    let (spec, iteration, sampler, config) = read_metadata(path, &meta)?;
    let pending = read_pending(path, &meta, iteration)?;
    let views = find_tensors(path, &st, &spec)?;
    let data = read_parameters(path, &spec, &views)?;
    let notes = meta
        .into_iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "format"
                    | "spec"
                    | "iteration"
                    | "sampler"
                    | "config"
                    | "seed"
                    | PENDING_SUM
                    | PENDING_COUNT
            )
        })
        .collect();
    Ok(Checkpoint {
        params: Params { spec, data },
        iteration,
        sampler,
        config,
        pending,
        notes,
    })
}

/// The batch losses since the last evaluation, checked: a count no larger than the iteration,
/// a finite sum of losses each between 0 and the loss's ceiling. A checkpoint written before
/// they were kept has neither key (its resume's first `batch_loss` covers only the resumed
/// iterations, as it did then); one key alone is corrupt.
fn read_pending(
    path: &Path,
    meta: &HashMap<String, String>,
    iteration: usize,
) -> Result<PendingLoss> {
    let (sum, count) = match (meta.get(PENDING_SUM), meta.get(PENDING_COUNT)) {
        (None, None) => return Ok(PendingLoss::default()),
        (Some(s), Some(c)) => (s, c),
        _ => {
            return Err(bad(
                path,
                format!(
                    "metadata has only one of \"{PENDING_SUM}\" and \"{PENDING_COUNT}\"; the \
                     checkpoint is corrupt: use an earlier one"
                ),
            ))
        }
    };
    let count: usize = count
        .parse()
        .map_err(|_| bad(path, format!("metadata \"{PENDING_COUNT}\" is not a count")))?;
    let sum: f64 = sum
        .parse()
        .map_err(|_| bad(path, format!("metadata \"{PENDING_SUM}\" is not a number")))?;
    // Each batch loss is a mean cross entropy, 0 to -ln(1e-7) (f32 rounding: 1% room).
    let most = count as f64 * crate::train::loss_ceiling() * 1.01;
    if count > iteration || !(sum.is_finite() && (0.0..=most).contains(&sum)) {
        return Err(bad(
            path,
            format!(
                "metadata \"{PENDING_SUM}\" {sum} over \"{PENDING_COUNT}\" {count} batch losses \
                 is impossible at iteration {iteration} (each loss is 0 to {:.1}); the \
                 checkpoint is corrupt: use an earlier one",
                crate::train::loss_ceiling()
            ),
        ));
    }
    Ok(PendingLoss { sum, count })
}

/// The metadata a resume needs, each field checked: the spec (a usable net), the iteration, the
/// sampler state (usable, and at that iteration) and the settings.
fn read_metadata(
    path: &Path,
    meta: &HashMap<String, String>,
) -> Result<(MlpSpec, usize, SamplerState, TrainConfig)> {
    let field = |key: &str| {
        meta.get(key)
            .ok_or_else(|| bad(path, format!("metadata lacks \"{key}\"")))
    };
    let parse_err = |key: &str, e: serde_json::Error| {
        bad(path, format!("metadata \"{key}\" is malformed: {e}"))
    };
    let spec: MlpSpec = serde_json::from_str(field("spec")?).map_err(|e| parse_err("spec", e))?;
    let spec = MlpSpec::new(spec.input, spec.hidden, spec.classes, spec.activation)
        .map_err(|e| bad(path, format!("metadata \"spec\" is not a usable net: {e}")))?;
    let iteration: usize = field("iteration")?
        .parse()
        .map_err(|_| bad(path, "metadata \"iteration\" is not a number"))?;
    let sampler: SamplerState =
        serde_json::from_str(field("sampler")?).map_err(|e| parse_err("sampler", e))?;
    let config: TrainConfig =
        serde_json::from_str(field("config")?).map_err(|e| parse_err("config", e))?;
    sampler
        .check()
        .map_err(|e| bad(path, format!("metadata \"sampler\" is unusable: {e}")))?;
    if sampler.batches_drawn != iteration as u64 {
        return Err(bad(
            path,
            format!(
                "metadata says {iteration} iterations but its sampler drew {} batches; the \
                 checkpoint is corrupt: use an earlier one",
                sampler.batches_drawn
            ),
        ));
    }
    Ok((spec, iteration, sampler, config))
}

/// Every tensor of the spec, found with the spec's shape and a float type before anything is
/// allocated.
fn find_tensors<'a>(
    path: &Path,
    st: &'a SafeTensors<'a>,
    spec: &MlpSpec,
) -> Result<Vec<TensorView<'a>>> {
    // Every tensor is found with the spec's shape before anything is allocated, so the
    // parameters below are bounded by the file's own length, whatever the spec claims.
    let tensors = spec.tensors();
    let mut views = Vec::with_capacity(tensors.len());
    for t in &tensors {
        let view = st.tensor(&t.name).map_err(|_| {
            bad(
                path,
                format!(
                    "tensor {} is missing (a {} net has {})",
                    t.name,
                    spec.describe(),
                    names(spec)
                ),
            )
        })?;
        if view.shape() != t.shape.as_slice() {
            return Err(bad(
                path,
                format!(
                    "tensor {} has shape {:?}, the spec {} needs {:?}",
                    t.name,
                    view.shape(),
                    spec.describe(),
                    t.shape
                ),
            ));
        }
        if !matches!(view.dtype(), Dtype::F32 | Dtype::F64) {
            return Err(bad(
                path,
                format!(
                    "tensor {} is {:?}; gpu-train stores F32 or F64",
                    t.name,
                    view.dtype()
                ),
            ));
        }
        views.push(view);
    }
    Ok(views)
}

/// The parameters from the tensors, f32 or f64, every one finite.
fn read_parameters(path: &Path, spec: &MlpSpec, views: &[TensorView]) -> Result<Vec<f64>> {
    let tensors = spec.tensors();
    let mut data = vec![0.0; spec.num_params()];
    for (t, view) in tensors.iter().zip(views) {
        let out = &mut data[t.offset..t.offset + t.len];
        match view.dtype() {
            Dtype::F32 => {
                for (o, c) in out.iter_mut().zip(view.data().chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64;
                }
            }
            Dtype::F64 => {
                for (o, c) in out.iter_mut().zip(view.data().chunks_exact(8)) {
                    *o = f64::from_le_bytes(c.try_into().expect("chunks of 8"));
                }
            }
            _ => unreachable!("dtypes checked above"),
        }
        if let Some(at) = out.iter().position(|v| !v.is_finite()) {
            return Err(bad(
                path,
                format!(
                    "tensor {} holds {} at {}; the run that wrote it diverged or the file is \
                     corrupt: use an earlier checkpoint",
                    t.name,
                    out[at],
                    element(&t.shape, at)
                ),
            ));
        }
    }
    Ok(data)
}

/// The safetensors header length (the first 8 bytes, little-endian) must fit in the file.
fn check_header_len(path: &Path, bytes: &[u8]) -> Result<()> {
    let corrupt = "it may be truncated or corrupted: use an earlier checkpoint";
    let Some(first) = bytes.get(..8) else {
        return Err(bad(
            path,
            format!(
                "only {} bytes, too short for a safetensors header; {corrupt}",
                bytes.len()
            ),
        ));
    };
    let claimed = u64::from_le_bytes(first.try_into().expect("8 bytes"));
    let room = (bytes.len() - 8) as u64;
    if claimed > room {
        return Err(bad(
            path,
            format!("its header claims {claimed} bytes but only {room} follow; {corrupt}"),
        ));
    }
    Ok(())
}

/// `[i, j]` of flat index `at` in a tensor of `shape` (row-major).
fn element(shape: &[usize], at: usize) -> String {
    match shape {
        [_, cols] if *cols > 0 => format!("[{}, {}]", at / cols, at % cols),
        _ => format!("[{at}]"),
    }
}

fn names(spec: &MlpSpec) -> String {
    spec.tensors()
        .iter()
        .map(|t| format!("{} {:?}", t.name, t.shape))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that a checkpoint fits the net a run expects; the error names both shapes.
pub fn check_fits(path: &Path, found: &MlpSpec, expected: &MlpSpec) -> Result<()> {
    if found != expected {
        return Err(bad(
            path,
            format!(
                "holds a {} net ({}), but this run needs {} ({})",
                found.describe(),
                names(found),
                expected.describe(),
                names(expected)
            ),
        ));
    }
    Ok(())
}
