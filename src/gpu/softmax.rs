//! Launcher of shaders/softmax.wgsl. CPU twin: `cpu::softmax::softmax_rows`.

use super::context::Context;
use super::launch::{
    decl, groups_1d, kernel_params, word, Dispatch, Kernel, Operand, Shader, Slot,
};
use crate::error::Result;

pub(crate) const SHADER: Shader = Shader {
    file: "softmax.wgsl",
    body: include_str!("../../shaders/softmax.wgsl"),
    consts: &[],
    params: &[decl::<Dims>()],
};

#[derive(Debug)]
/// The family's pipelines (built once, in `Kernels`).
pub struct Pipelines {
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

kernel_params! {
    /// shaders/softmax.wgsl's parameters.
    struct Dims as "Dims" {
        rows: u32,
        cols: u32,
        x_off: u32,
        y_off: u32,
    }
}

/// y = softmax(x) row by row (rows x cols, max-subtracted); x is left as it is.
pub fn softmax(
    k: &Pipelines,
    ctx: &Context,
    rows: usize,
    cols: usize,
    x: Operand,
    y: Operand,
) -> Result<Dispatch> {
    let dims = Dims {
        rows: word("rows", rows)?,
        cols: word("cols", cols)?,
        x_off: word("x offset", x.offset)?,
        y_off: word("y offset", y.offset)?,
    };
    k.softmax
        .dispatch(ctx, &dims, &[x.buffer, y.buffer], groups_1d(ctx, rows))
}
