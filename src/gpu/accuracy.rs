//! Launcher of shaders/accuracy.wgsl. CPU twin: `cpu::accuracy::correct_count`.

use super::context::Context;
use super::kernels::{groups_1d, word, Dispatch, Kernel, Kernels, Slot};
use crate::error::Result;

pub(crate) const SOURCE: &str = include_str!("../../shaders/accuracy.wgsl");

#[derive(Debug)]
pub(crate) struct Pipelines {
    accuracy: Kernel,
}

impl Pipelines {
    pub(crate) fn new(ctx: &Context, module: &wgpu::ShaderModule) -> Self {
        use Slot::*;
        Pipelines {
            accuracy: Kernel::new(
                ctx,
                module,
                "accuracy",
                "accuracy",
                &[Read, Read, ReadWrite],
                &[],
            ),
        }
    }
}

/// count += the number of rows whose first largest score is at the label (rows x cols scores,
/// u32 labels, `count` one u32 that the caller zeroes first).
pub fn accuracy(
    k: &Kernels,
    ctx: &Context,
    rows: usize,
    cols: usize,
    scores: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    count: &wgpu::Buffer,
) -> Result<Dispatch> {
    let params = [word("rows", rows)?, word("cols", cols)?, 0, 0, 0, 0, 0, 0];
    k.accuracy
        .accuracy
        .dispatch(ctx, params, &[scores, labels, count], groups_1d(ctx, rows))
}
