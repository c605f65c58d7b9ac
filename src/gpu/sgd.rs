//! Launcher of shaders/sgd.wgsl. CPU twin: `cpu::sgd::sgd`.

use super::context::Context;
use super::launch::{field_word, groups_1d, kernel_params, word, Dispatch, Kernel, Slot};
use crate::error::Result;

pub(crate) const SOURCE: &str = include_str!("../../shaders/sgd.wgsl");

kernel_params! {
    /// shaders/sgd.wgsl's parameters.
    struct Params as "Params" {
        n: u32,
        lr: f32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
        _pad3: u32,
        _pad4: u32,
        _pad5: u32,
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
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
        _pad3: 0,
        _pad4: 0,
        _pad5: 0,
    };
    k.sgd.dispatch(ctx, &p, &[params, grad], groups_1d(ctx, n))
}

/// Changes the learning rate of an `sgd` launch (effective from the next submission).
pub fn set_lr(ctx: &Context, dispatch: &Dispatch, lr: f32) {
    dispatch.set_params(ctx, field_word!(Params, lr), &[lr.to_bits()]);
}
