//! Launcher of shaders/cross_entropy.wgsl: per-sample cross entropy (label targets), per-sample
//! sum of squares error, and the mean. CPU twin: `cpu::cross_entropy` (`cross_entropy_labels`,
//! `sum_squares_labels`, `mean`).

use super::context::Context;
use super::kernels::{groups_1d, word, Dispatch, Kernel, Kernels, Slot};
use crate::error::Result;

pub(crate) const SOURCE: &str = include_str!("../../shaders/cross_entropy.wgsl");

#[derive(Debug)]
pub(crate) struct Pipelines {
    cross_entropy: Kernel,
    sum_squares: Kernel,
    mean: Kernel,
}

impl Pipelines {
    pub(crate) fn new(ctx: &Context, module: &wgpu::ShaderModule) -> Self {
        use Slot::*;
        let per_row = [Read, Read, ReadWrite];
        Pipelines {
            cross_entropy: Kernel::new(
                ctx,
                module,
                "cross entropy",
                "cross_entropy",
                &per_row,
                &[],
            ),
            sum_squares: Kernel::new(ctx, module, "sum of squares", "sum_squares", &per_row, &[]),
            mean: Kernel::new(ctx, module, "mean", "mean", &[Read, ReadWrite], &[]),
        }
    }
}

/// losses[b] = -ln(probs[b][t_b] + 1e-7) for rows x cols probabilities and u32 labels.
pub fn cross_entropy(
    k: &Kernels,
    ctx: &Context,
    rows: usize,
    cols: usize,
    probs: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    losses: &wgpu::Buffer,
) -> Result<Dispatch> {
    let params = [word("rows", rows)?, word("cols", cols)?, 0, 0, 0, 0, 0, 0];
    k.cross_entropy.cross_entropy.dispatch(
        ctx,
        params,
        &[probs, labels, losses],
        groups_1d(ctx, rows),
    )
}

/// losses[b] = 0.5 * sum_k (probs[b][k] - onehot(t_b)[k])^2.
pub fn sum_squares(
    k: &Kernels,
    ctx: &Context,
    rows: usize,
    cols: usize,
    probs: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    losses: &wgpu::Buffer,
) -> Result<Dispatch> {
    let params = [word("rows", rows)?, word("cols", cols)?, 0, 0, 0, 0, 0, 0];
    k.cross_entropy.sum_squares.dispatch(
        ctx,
        params,
        &[probs, labels, losses],
        groups_1d(ctx, rows),
    )
}

/// out[out_index] = mean of the first `n` values (one workgroup).
pub fn mean(
    k: &Kernels,
    ctx: &Context,
    n: usize,
    values: &wgpu::Buffer,
    out: &wgpu::Buffer,
    out_index: usize,
) -> Result<Dispatch> {
    let params = [
        word("n", n)?,
        word("out index", out_index)?,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    k.cross_entropy
        .mean
        .dispatch(ctx, params, &[values, out], [1, 1, 1])
}
