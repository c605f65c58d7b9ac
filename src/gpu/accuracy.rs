//! Launcher of shaders/accuracy.wgsl. CPU twin: `cpu::accuracy::correct_count`.

use super::context::Context;
use super::launch::{decl, groups_1d, kernel_params, word, Dispatch, Kernel, Shader, Slot};
use crate::error::Result;

pub(crate) const SHADER: Shader = Shader {
    file: "accuracy.wgsl",
    body: include_str!("../../shaders/accuracy.wgsl"),
    consts: &[],
    params: &[decl::<Dims>()],
};

#[derive(Debug)]
/// The family's pipelines (built once, in `Kernels`).
pub struct Pipelines {
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

kernel_params! {
    /// shaders/accuracy.wgsl's parameters.
    struct Dims as "Dims" {
        rows: u32,
        cols: u32,
    }
}

/// count += the number of rows whose first largest score is at the label (rows x cols scores,
/// u32 labels, `count` one u32 that the caller zeroes first).
pub fn accuracy(
    k: &Pipelines,
    ctx: &Context,
    rows: usize,
    cols: usize,
    scores: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    count: &wgpu::Buffer,
) -> Result<Dispatch> {
    let dims = Dims {
        rows: word("rows", rows)?,
        cols: word("cols", cols)?,
    };
    k.accuracy
        .dispatch(ctx, &dims, &[scores, labels, count], groups_1d(ctx, rows))
}
