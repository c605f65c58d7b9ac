//! Launcher of shaders/backprop.wgsl: the output delta, the activation derivative and the bias
//! gradient; with matmul's A^T B and A B^T they make the gradient of any MLP. CPU twin:
//! `cpu::backprop` (`output_delta`, `backprop`) and `cpu::activation::activate_grad`.

use super::context::Context;
use super::launch::{
    act_code, decl, groups_1d, kernel_params, word, Dispatch, Kernel, Operand, Shader, Slot,
};
use crate::error::Result;
use crate::model::Activation;

pub(crate) const SHADER: Shader = Shader {
    file: "backprop.wgsl",
    body: include_str!("../../shaders/backprop.wgsl"),
    consts: &[],
    params: &[
        decl::<DeltaParams>(),
        decl::<ActParams>(),
        decl::<BiasParams>(),
    ],
};

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
    /// The parameters of shaders/backprop.wgsl's `output_delta`: rows x cols probabilities.
    struct DeltaParams as "DeltaParams" {
        rows: u32,
        cols: u32,
    }
}

kernel_params! {
    /// The parameters of shaders/backprop.wgsl's `act_backward`.
    struct ActParams as "ActParams" {
        /// The number of elements.
        n: u32,
        /// The activation (`act_code`: 1 sigmoid, 2 relu).
        act: u32,
    }
}

kernel_params! {
    /// The parameters of shaders/backprop.wgsl's `bias_grad` (the first layer only) and
    /// `bias_grads` (two layers): rows x cols of delta to grad_off, rows x cols2 to grad_off2.
    struct BiasParams as "BiasParams" {
        rows: u32,
        cols: u32,
        grad_off: u32,
        cols2: u32,
        grad_off2: u32,
    }
}

/// delta = c_b (probs - onehot(labels)) / rows, c_b = p_t / (p_t + 1e-7) (rows x cols); a row
/// whose label is not below `cols` gets NaN (never a read past its row).
pub fn output_delta(
    k: &Pipelines,
    ctx: &Context,
    rows: usize,
    cols: usize,
    probs: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    delta: &wgpu::Buffer,
) -> Result<Dispatch> {
    let params = DeltaParams {
        rows: word("rows", rows)?,
        cols: word("cols", cols)?,
    };
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
    let params = ActParams {
        n: word("n", n)?,
        act: act_code(act),
    };
    k.act_backward
        .dispatch(ctx, &params, &[pre, post, d], groups_1d(ctx, n))
}

/// `grad[offset + n] = sum over the rows of delta[.][n]` (rows x cols).
pub fn bias_grad(
    k: &Pipelines,
    ctx: &Context,
    rows: usize,
    cols: usize,
    delta: &wgpu::Buffer,
    grad: Operand,
) -> Result<Dispatch> {
    let params = BiasParams {
        rows: word("rows", rows)?,
        cols: word("cols", cols)?,
        grad_off: word("gradient offset", grad.offset)?,
        cols2: 0,
        grad_off2: 0,
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
    let params = BiasParams {
        rows: word("rows", rows)?,
        cols: word("cols", first_cols)?,
        grad_off: word("gradient offset", first_offset)?,
        cols2: word("cols", second_cols)?,
        grad_off2: word("gradient offset", second_offset)?,
    };
    k.bias_grads.dispatch(
        ctx,
        &params,
        &[first_delta, grad, second_delta],
        groups_1d(ctx, first_cols + second_cols),
    )
}
