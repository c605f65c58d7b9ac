//! What a run may ask for, checked before anything is allocated from it: the memory a run of a
//! given net, batch and data set needs, against what the machine has; and the gradient check's
//! own flags.
//!
//! [`memory_need`] adds up the large buffers the CPU side of a run holds (a GPU run keeps the same
//! host-side copies of the parameters and the data): every copy of the parameters, the
//! activations of a batch and of an evaluation chunk, the numerical gradient's per-task
//! accumulators, and the data set with its sparse index. It is an estimate from above of the
//! large terms, not an allocator trace: its job is to refuse `--hidden 100000000` or
//! `--batch 1000000000` with a figure in a second, rather than after minutes and gigabytes.
//! [`check_memory`] compares it with the limit: `GPU_TRAIN_MAX_MEMORY_BYTES` when set, else the
//! machine's available memory (`MemAvailable` in `/proc/meminfo`), else
//! [`DEFAULT_MEMORY_LIMIT`].

use crate::error::{Error, Result};
use crate::model::MlpSpec;

/// The environment variable that sets the memory limit in bytes (overriding `/proc/meminfo`).
pub const MEMORY_LIMIT_ENV: &str = "GPU_TRAIN_MAX_MEMORY_BYTES";

/// The limit where the machine's available memory cannot be read: 8 GiB, a typical laptop's.
pub const DEFAULT_MEMORY_LIMIT: u64 = 8 << 30;

/// Copies of the parameter vector a run holds at once, each counted as 8 bytes per parameter:
/// the f64 `Params`, the backend's own copy, its gradient, the checkpoint template and the
/// serialised checkpoint.
const PARAMETER_COPIES: u64 = 5;

/// Bytes per pixel of the data set held in memory: the pixel itself and, for sparse batches, an
/// index of up to 3 bytes per non-zero pixel.
const DATA_BYTES_PER_PIXEL: u64 = 4;

/// Rows of the largest evaluation chunk (the GPU backend's; the CPU's are 500).
const EVAL_ROWS: u64 = 2048;

/// Samples per task of the CPU's incremental numerical gradient, each task with its own
/// parameter-sized accumulator (mirrors `cpu::numerical`).
const NUMERICAL_SAMPLES_PER_TASK: u64 = 4;

/// What a run will hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub parameters: u64,
    pub activations: u64,
    pub numerical: u64,
    pub data: u64,
}

impl Need {
    pub fn total(&self) -> u64 {
        self.parameters
            .saturating_add(self.activations)
            .saturating_add(self.numerical)
            .saturating_add(self.data)
    }
}

/// The memory a run needs (see the module docs): `backends` CPU or GPU backends of `spec` at
/// `batch` samples, with the numerical gradient or not, over `pixels` bytes of images (training
/// and test). Saturates instead of overflowing: a saturated figure is simply refused.
pub fn memory_need(
    spec: &MlpSpec,
    batch: usize,
    pixels: u64,
    numerical: bool,
    backends: usize,
) -> Need {
    let m = |a: u64, b: u64| a.saturating_mul(b);
    let params = spec.checked_num_params().map_or(u64::MAX, |p| p as u64);
    let widths = spec
        .sizes()
        .iter()
        .fold(0u64, |acc, &w| acc.saturating_add(w as u64));
    let batch = batch as u64;
    let backends = backends.max(1) as u64;
    // Pre- and post-activations of every layer, the dense input and the backprop deltas.
    let rows = batch.saturating_add(EVAL_ROWS);
    let activations = m(m(m(rows, widths), 8), 3);
    let numerical = if numerical {
        m(m(batch.div_ceil(NUMERICAL_SAMPLES_PER_TASK), params), 8)
    } else {
        0
    };
    Need {
        parameters: m(m(m(params, 8), PARAMETER_COPIES), backends),
        activations: m(activations, backends),
        numerical,
        data: m(pixels, DATA_BYTES_PER_PIXEL),
    }
}

/// The memory limit (see the module docs) and where it comes from.
pub fn memory_limit() -> Result<(u64, String)> {
    if let Ok(v) = std::env::var(MEMORY_LIMIT_ENV) {
        if !v.trim().is_empty() {
            let bytes = v.trim().parse::<u64>().map_err(|_| {
                Error::config(
                    MEMORY_LIMIT_ENV,
                    format!("{v:?} is not a number of bytes; give a whole number"),
                )
            })?;
            return Ok((bytes, format!("set by {MEMORY_LIMIT_ENV}")));
        }
    }
    if let Some(bytes) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(mem_available)
    {
        return Ok((bytes, "available on this machine (/proc/meminfo)".into()));
    }
    Ok((
        DEFAULT_MEMORY_LIMIT,
        "the default limit (this machine's free memory is unknown)".into(),
    ))
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Refuses a run whose [`memory_need`] exceeds [`memory_limit`], naming both figures and what
/// to change. `what` says what the run is ("train", "bench", "gradcheck").
pub fn check_memory(
    what: &str,
    spec: &MlpSpec,
    batch: usize,
    pixels: u64,
    numerical: bool,
    backends: usize,
) -> Result<Need> {
    let need = memory_need(spec, batch, pixels, numerical, backends);
    let (limit, source) = memory_limit()?;
    if need.total() > limit {
        return Err(Error::config(
            "memory",
            format!(
                "{what} with a {} net at batch {batch} needs about {} (parameters {}, \
                 activations {}, numerical gradient {}, data {}), more than the {} {source}; \
                 use a smaller --hidden or --batch, or set {MEMORY_LIMIT_ENV}=<bytes> to allow it",
                spec.describe(),
                bytes(need.total()),
                bytes(need.parameters),
                bytes(need.activations),
                bytes(need.numerical),
                bytes(need.data),
                bytes(limit),
            ),
        ));
    }
    Ok(need)
}

/// A byte count for people: "12.5 GiB", "830 MiB", "12 KiB", "7 bytes"; "more than 16 EiB"
/// for a saturated figure.
pub fn bytes(n: u64) -> String {
    if n == u64::MAX {
        return "more than 16 EiB".into();
    }
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `gpu-train bench`'s grid, before anything is measured: its largest net at its largest batch,
/// over the embedded data set (what bench measures on). `batches` None is bench's default.
pub fn check_bench(
    hidden: &[usize],
    batches: Option<&[usize]>,
    work: &[crate::bench::Work],
) -> Result<()> {
    use crate::bench::Work;
    let batch = batches.map_or(1000, |b| b.iter().copied().max().unwrap_or(0));
    let widest = hidden.iter().copied().max().unwrap_or(1).max(1);
    let numerical = work
        .iter()
        .any(|w| matches!(w, Work::NumericalIncremental | Work::NumericalFull));
    let spec = MlpSpec::new(784, vec![widest], 10, crate::model::Activation::Sigmoid)?;
    // The embedded subset: 35,000 images of 28x28.
    check_memory("bench", &spec, batch, 35_000 * 784, numerical, 2).map(|_| ())
}

/// The gradient check's flags: `batch` of the first training images (at least 1, at most the
/// `train_len` there are) and a step `h` that is a positive finite number.
pub fn check_gradcheck(batch: usize, h: f64, train_len: usize) -> Result<()> {
    if batch == 0 {
        return Err(Error::config(
            "--batch",
            "must be at least 1 (the chapter's gradient check uses 3)",
        ));
    }
    if batch > train_len {
        return Err(Error::config(
            "--batch",
            format!(
                "{batch} is more than the {train_len} training images the check can use; the \
                 chapter's gradient check uses 3"
            ),
        ));
    }
    if !(h.is_finite() && h > 0.0) {
        return Err(Error::config(
            "--h",
            format!(
                "must be a positive number, got {}; the chapter uses 1e-4",
                crate::fmt::number(h)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;

    fn spec(hidden: usize) -> MlpSpec {
        MlpSpec::new(784, vec![hidden], 10, Activation::Sigmoid).unwrap()
    }

    #[test]
    fn the_chapters_run_needs_little() {
        // 784-50-10: 39,760 parameters; batch 100; the embedded 35,000 images.
        let need = memory_need(&spec(50), 100, 35_000 * 784, true, 2);
        assert_eq!(need.parameters, 39_760 * 8 * 5 * 2);
        assert_eq!(need.numerical, 25 * 39_760 * 8);
        assert_eq!(need.data, 35_000 * 784 * 4);
        assert_eq!(need.activations, (100 + 2048) * (784 + 50 + 10) * 8 * 3 * 2);
        assert!(need.total() < 200 << 20, "{}", bytes(need.total()));
    }

    #[test]
    fn huge_flags_are_refused_with_the_figure_and_the_limit() {
        let (limit, _) = memory_limit().unwrap();
        for (hidden, batch) in [(100_000_000, 100), (1_000_000, 100), (50, 1_000_000_000)] {
            let need = memory_need(&spec(hidden), batch, 47_000_000, true, 2);
            assert!(
                need.total() > 100 << 30,
                "{hidden} {batch}: {}",
                bytes(need.total())
            );
            if need.total() > limit {
                let e = check_memory("train", &spec(hidden), batch, 47_000_000, true, 2)
                    .unwrap_err()
                    .to_string();
                assert!(
                    e.contains("needs about") && e.contains(MEMORY_LIMIT_ENV) && e.contains("GiB"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let wide = MlpSpec::new(1 << 31, vec![1 << 31], 10, Activation::Relu).unwrap();
        let need = memory_need(&wide, usize::MAX, u64::MAX, true, 5);
        assert_eq!(need.total(), u64::MAX);
        assert_eq!(bytes(need.total()), "more than 16 EiB");
    }

    #[test]
    fn meminfo_is_parsed() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(mem_available(text), Some(20_000_000 * 1024));
        assert_eq!(mem_available("nothing"), None);
    }

    #[test]
    fn gradcheck_flags() {
        assert!(check_gradcheck(3, 1e-4, 100).is_ok());
        // 4294967297 would wrap to 1 as a u32 index count.
        let e = check_gradcheck(4_294_967_297, 1e-4, 30_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--batch") && e.contains("4294967297"), "{e}");
        assert!(check_gradcheck(0, 1e-4, 100).is_err());
        for h in [0.0, -1e-4, f64::NAN, f64::INFINITY] {
            let e = check_gradcheck(3, h, 100).unwrap_err().to_string();
            assert!(e.contains("--h"), "{h}: {e}");
        }
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(7), "7 bytes");
        assert_eq!(bytes(12 * 1024), "12 KiB");
        assert_eq!(bytes(12_500_000_000), "12 GiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
    }
}
