//! Launcher of shaders/backprop.wgsl: the output delta, the activation derivative and the bias
//! gradient; with matmul's A^T B and A B^T they make the gradient of any MLP. CPU twin:
//! `cpu::backprop` (`output_delta`, `backprop`) and `cpu::activation::activate_grad`.

use super::context::Context;
use super::launch::{act_code, groups_1d, kernel_params, word, Dispatch, Kernel, Operand, Slot};
use crate::error::Result;
use crate::model::Activation;

pub(crate) const SOURCE: &str = include_str!("../../shaders/backprop.wgsl");

#[derive(Debug)]
/// The family's pipelines (built once, in `Kernels`).
pub struct Pipelines {
    output_delta: Kernel,
    act_backward: Kernel,
    bias_grad: Kernel,
    bias_grads: Kernel,
}

impl Pipelines {
    pub(crate) fn new(ctx: &Context, module: &wgpu::ShaderModule) -> Self {
        use Slot::*;
        Pipelines {
            output_delta: Kernel::new(
                ctx,
                module,
                "output delta",
                "output_delta",
                &[Read, Read, ReadWrite],
                &[],
            ),
            act_backward: Kernel::new(
                ctx,
                module,
                "activation backward",
                "act_backward",
                &[Read, Read, ReadWrite],
                &[],
            ),
            bias_grad: Kernel::new(
                ctx,
                module,
                "bias gradient",
                "bias_grad",
                &[Read, ReadWrite],
                &[],
            ),
            bias_grads: Kernel::new(
                ctx,
                module,
                "bias gradients of two layers",
                "bias_grads",
                &[Read, ReadWrite, Read],
                &[],
            ),
        }
    }
}

kernel_params! {
    /// shaders/backprop.wgsl's parameters: for act_backward, rows is n (the number of elements)
    /// and cols the activation (1 sigmoid, 2 relu); cols2 and grad_off2 are bias_grads' second
    /// layer.
    struct Dims as "Dims" {
        rows: u32,
        cols: u32,
        grad_off: u32,
        cols2: u32,
        grad_off2: u32,
        _pad2: u32,
        _pad3: u32,
        _pad4: u32,
    }
}

fn dims(rows: u32, cols: u32) -> Dims {
    Dims {
        rows,
        cols,
        ..bytemuck::Zeroable::zeroed()
    }
}

/// delta = c_b (probs - onehot(labels)) / rows, c_b = p_t / (p_t + 1e-7) (rows x cols).
pub fn output_delta(
    k: &Pipelines,
    ctx: &Context,
    rows: usize,
    cols: usize,
    probs: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    delta: &wgpu::Buffer,
) -> Result<Dispatch> {
    let params = dims(word("rows", rows)?, word("cols", cols)?);
    k.output_delta.dispatch(
        ctx,
        &params,
        &[probs, labels, delta],
        groups_1d(ctx, rows * cols),
    )
}

/// d *= act'(pre, post) over `n` elements, in place.
pub fn act_backward(
    k: &Pipelines,
    ctx: &Context,
    n: usize,
    act: Activation,
    pre: &wgpu::Buffer,
    post: &wgpu::Buffer,
    d: &wgpu::Buffer,
) -> Result<Dispatch> {
    let params = dims(word("n", n)?, act_code(act));
    k.act_backward
        .dispatch(ctx, &params, &[pre, post, d], groups_1d(ctx, n))
}

/// grad[offset + n] = sum over the rows of delta[.][n] (rows x cols).
pub fn bias_grad(
    k: &Pipelines,
    ctx: &Context,
    rows: usize,
    cols: usize,
    delta: &wgpu::Buffer,
    grad: Operand,
) -> Result<Dispatch> {
    let params = Dims {
        grad_off: word("gradient offset", grad.offset)?,
        ..dims(word("rows", rows)?, word("cols", cols)?)
    };
    k.bias_grad
        .dispatch(ctx, &params, &[delta, grad.buffer], groups_1d(ctx, cols))
}

/// `bias_grad` of two layers in one launch: grad[first.offset + n] from `first_delta`
/// (rows x first_cols), grad[second.offset + n] from `second_delta` (rows x second_cols).
#[allow(clippy::too_many_arguments)]
pub fn bias_grads(
    k: &Pipelines,
    ctx: &Context,
    rows: usize,
    first_cols: usize,
    first_delta: &wgpu::Buffer,
    first_offset: usize,
    second_cols: usize,
    second_delta: &wgpu::Buffer,
    second_offset: usize,
    grad: &wgpu::Buffer,
) -> Result<Dispatch> {
    let params = Dims {
        grad_off: word("gradient offset", first_offset)?,
        cols2: word("cols", second_cols)?,
        grad_off2: word("gradient offset", second_offset)?,
        ..dims(word("rows", rows)?, word("cols", first_cols)?)
    };
    k.bias_grads.dispatch(
        ctx,
        &params,
        &[first_delta, grad, second_delta],
        groups_1d(ctx, first_cols + second_cols),
    )
}
