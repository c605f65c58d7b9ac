//! What training leaves behind for a reader: the chapter's figures as PNG or SVG files.

pub mod eval;
pub mod plot;
