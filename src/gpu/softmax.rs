//! Launcher of shaders/softmax.wgsl. CPU twin: `cpu::softmax::softmax_rows`.

use super::context::Context;
use super::kernels::{groups_1d, word, Dispatch, Kernel, Kernels, Operand, Slot};
use crate::error::Result;

pub(crate) const SOURCE: &str = include_str!("../../shaders/softmax.wgsl");

#[derive(Debug)]
pub(crate) struct Pipelines {
    softmax: Kernel,
}

impl Pipelines {
    pub(crate) fn new(ctx: &Context, module: &wgpu::ShaderModule) -> Self {
        Pipelines {
            softmax: Kernel::new(
                ctx,
                module,
                "softmax",
                "softmax",
                &[Slot::Read, Slot::ReadWrite],
                &[],
            ),
        }
    }
}

/// y = softmax(x) row by row (rows x cols, max-subtracted); x is left as it is.
pub fn softmax(
    k: &Kernels,
    ctx: &Context,
    rows: usize,
    cols: usize,
    x: Operand,
    y: Operand,
) -> Result<Dispatch> {
    let params = [
        word("rows", rows)?,
        word("cols", cols)?,
        word("x offset", x.offset)?,
        word("y offset", y.offset)?,
        0,
        0,
        0,
        0,
    ];
    k.softmax
        .softmax
        .dispatch(ctx, params, &[x.buffer, y.buffer], groups_1d(ctx, rows))
}
