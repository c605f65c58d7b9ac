//! gpu-train: chapter 4 of "Deep Learning from Scratch" (losses, mini-batches, numerical
//! differentiation, the numerical gradient, gradient descent, a two-layer net on MNIST) as a
//! training engine whose heavy passes run as WGSL compute shaders through wgpu, every one of
//! them checked against an f64 CPU reference.

pub mod backend;
pub mod bench;
pub mod budget;
pub mod check;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod demo;
pub mod error;
pub mod fmt;
pub mod gpu;
pub mod gradcheck;
pub mod host;
pub mod math;
pub mod model;
pub mod predict;
pub mod reference;
pub mod report;
pub mod run;
pub mod session;
pub mod time;
pub mod tolerance;
pub mod train;
pub mod wait;

pub use error::{Error, Result};
