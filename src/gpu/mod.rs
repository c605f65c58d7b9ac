//! The GPU backend: WGSL compute shaders (`shaders/*.wgsl`, one file per kernel family) run
//! through wgpu, each checked against its CPU twin of the same name in `crate::cpu`.
//!
//! - `adapter`: adapter choice (`--device auto|gpu`, `GPU_TRAIN_ADAPTER`, `GPU_TRAIN_BACKEND`),
//!   the limits a run needs, the hints, the devices report.
//! - `context`: `Context`, the open device: error capture, counters, buffer and read-back helpers.
//! - `pipeline_cache`: wgpu's pipeline cache on disk (`GPU_TRAIN_CACHE_DIR`), so a second run on
//!   the same adapter builds its pipelines faster.
//! - `launch`: what every launcher uses (`Kernel`, `Dispatch` a bound launch, `KernelParams`
//!   each kernel's parameter struct, `build`); `kernels`: `Kernels`, every pipeline built once.
//! - one launcher per kernel family: `gather`, `matmul`, `sparse` (the training plan's first
//!   layer over the non-zero pixels), `softmax`, `cross_entropy`, `head`, `backprop`, `sgd`,
//!   `accuracy`, `numerical` and `numerical_memo` (the numerical gradient).
//! - `backend`: `GpuBackend`, the `Backend` trait with the data set and parameters resident.
//! - `plan`: `Plan`, the launches of one batch size, built once and recorded every step.
//! - `chunk`: the training plan of `train_steps` (one hidden layer): many iterations per
//!   submission, 5 launches a numerical and 8 a backprop iteration, no copies; `head`: the
//!   fused last layer (logits, softmax, cross entropy, batch mean, output delta) it uses.
//! - `host`: `HostGpu`, the net over a batch the caller holds (`crate::host`): float X rows and
//!   labels written into a plan's buffers, parameters with every call; `GpuDevice`, a device
//!   with its kernels, and `process_gpu`, the one a process keeps.
//! - `auto`: `--device auto` measured: the CPU and each hardware GPU time the run's own step.

pub mod accuracy;
pub mod adapter;
pub mod auto;
pub mod backend;
pub mod backprop;
mod cache;
pub mod chunk;
pub mod context;
mod core;
pub mod cross_entropy;
mod driver;
mod evaluate;
pub mod gather;
pub mod head;
pub mod host;
pub mod kernels;
pub mod launch;
mod mapping;
pub mod matmul;
pub mod numerical;
pub mod numerical_memo;
pub mod pipeline_cache;
pub mod plan;
pub mod sgd;
pub mod softmax;
pub mod sparse;
mod timer;

pub use adapter::{
    devices_report, list_adapters, AdapterSummary, DeviceRequest, ADAPTER_ENV, BACKEND_ENV,
};
pub use backend::{GpuBackend, GpuOptions, DEFAULT_EVAL_ROWS};
pub use context::{AutoChoice, Context};
pub use kernels::Kernels;
pub use launch::{record_all, run, Dispatch, Operand};
pub use pipeline_cache::{PipelineCacheFile, CACHE_DIR_ENV};
