//! The bench's progress line.

use super::grid::Shape;
use super::{Device, Work};
use std::io::IsTerminal;

/// Progress on stderr when it is a terminal; silent otherwise, so piped output stays clean.
pub(super) struct Progress {
    on: bool,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            on: std::io::stderr().is_terminal(),
        }
    }
    pub fn show(&self, device: Device, what: Work, s: &Shape) {
        self.line(&format!(
            "{} {} batch {} hidden {}",
            device.name(),
            what.name(),
            s.batch,
            s.hidden
        ));
    }
    pub fn line(&self, text: &str) {
        if self.on {
            eprint!("\r\x1b[Kbench: {text} ...");
        }
    }
    pub fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[K");
        }
    }
}
