//! Launcher of shaders/sgd.wgsl. CPU twin: `cpu::sgd::sgd`.

use super::context::Context;
use super::kernels::{groups_1d, word, Dispatch, Kernel, Kernels, Slot};
use crate::error::Result;

pub(crate) const SOURCE: &str = include_str!("../../shaders/sgd.wgsl");

/// The uniform word that holds the learning rate.
const LR_WORD: usize = 1;

#[derive(Debug)]
pub(crate) struct Pipelines {
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
    k: &Kernels,
    ctx: &Context,
    n: usize,
    lr: f32,
    params: &wgpu::Buffer,
    grad: &wgpu::Buffer,
) -> Result<Dispatch> {
    let words = [word("parameters", n)?, lr.to_bits(), 0, 0, 0, 0, 0, 0];
    k.sgd
        .sgd
        .dispatch(ctx, words, &[params, grad], groups_1d(ctx, n))
}

/// Changes the learning rate of an `sgd` launch (effective from the next submission).
pub fn set_lr(ctx: &Context, dispatch: &Dispatch, lr: f32) {
    dispatch.set_param(ctx, LR_WORD, lr.to_bits());
}
