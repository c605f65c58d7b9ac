//! Launcher of shaders/sgd.wgsl. CPU twin: `cpu::sgd::sgd`.

use super::context::Context;
use super::launch::{
    decl, field_word, groups_1d, kernel_params, word, Dispatch, Kernel, Shader, Slot,
};
use crate::error::Result;

pub(crate) const SHADER: Shader = Shader {
    file: "sgd.wgsl",
    body: include_str!("../../shaders/sgd.wgsl"),
    consts: &[],
    params: &[decl::<Params>()],
};

kernel_params! {
    /// shaders/sgd.wgsl's parameters.
    struct Params as "Params" {
        n: u32,
        lr: f32,
    }
}

#[derive(Debug)]
/// The family's pipelines (built once, in `Kernels`).
pub struct Pipelines {
    sgd: Kernel,
}

impl Pipelines {
    pub(crate) fn new(ctx: &Context, module: &wgpu::ShaderModule) -> Self {
        Pipelines {
            sgd: Kernel::new(
                ctx,
                module,
                "sgd",
                "sgd",
                &[Slot::ReadWrite, Slot::Read],
                &[],
            ),
        }
    }
}

/// params -= lr * grad over the first `n` elements.
pub fn sgd(
    k: &Pipelines,
    ctx: &Context,
    n: usize,
    lr: f32,
    params: &wgpu::Buffer,
    grad: &wgpu::Buffer,
) -> Result<Dispatch> {
    let p = Params {
        n: word("parameters", n)?,
        lr,
    };
    k.sgd.dispatch(ctx, &p, &[params, grad], groups_1d(ctx, n))
}

/// Changes the learning rate of an `sgd` launch (effective from the next submission).
pub fn set_lr(ctx: &Context, dispatch: &Dispatch, lr: f32) {
    dispatch.set_params(ctx, field_word!(Params, lr), &[lr.to_bits()]);
}
