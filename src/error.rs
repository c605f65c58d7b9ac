//! The library's one error type. Every variant says what went wrong and, where there is one,
//! what to do next; the CLI adds context with `anyhow` on top.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data file is missing, unreadable or malformed. `file` is the path, `what` says what is
    /// wrong and how to fix it.
    #[error("{file}: {what}")]
    Data { file: PathBuf, what: String },

    /// A bad setting (flag or config field); `field` names it, `what` says what is wrong and
    /// the fix.
    #[error("{field}: {what}")]
    Config { field: String, what: String },

    /// The GPU could not be used: no adapter, a limit it cannot give, a lost device, a shader
    /// that failed to build. The message lists what was found and what to try.
    #[error("GPU: {0}")]
    Gpu(String),

    /// A checkpoint that cannot be read or does not fit the model.
    #[error("{file}: {what}")]
    Checkpoint { file: PathBuf, what: String },

    /// Training stopped because something went numerically wrong (NaN/Inf loss, a gradient
    /// check beyond tolerance).
    #[error("{0}")]
    Numerics(String),

    /// Something stopped a run after it started; `saved` says which checkpoint holds its last
    /// good state (or why none could be written).
    #[error("{cause}\n{saved}")]
    Stopped { cause: Box<Error>, saved: String },

    /// An I/O error on a named path. The I/O error's text is part of this message and not also
    /// a `source`, so that a printed error chain (`{:#}`) does not say it twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn config(field: impl Into<String>, what: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            what: what.into(),
        }
    }
    pub fn data(file: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Data {
            file: file.into(),
            what: what.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_is_said_once_in_a_printed_chain() {
        let e = Error::io(
            "/x/loss.csv",
            std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device"),
        );
        let printed = format!("{:#}", anyhow::Error::new(e).context("writing metrics"));
        assert_eq!(
            printed,
            "writing metrics: /x/loss.csv: No space left on device"
        );
    }
}
