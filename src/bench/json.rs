//! `--json`: the whole report, pretty-printed, one file.

use super::Report;
use crate::error::{Error, Result};
use std::path::Path;

pub(super) fn write(path: &Path, report: &Report) -> Result<()> {
    let text = serde_json::to_string_pretty(report).map_err(|e| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}
