//! Launcher of shaders/cross_entropy.wgsl: per-sample cross entropy (label targets), per-sample
//! sum of squares error, and the mean. CPU twin: `cpu::cross_entropy` (`cross_entropy_labels`,
//! `sum_squares_labels`, `mean`).

use super::context::Context;
use super::launch::{decl, groups_1d, kernel_params, word, Dispatch, Kernel, Shader, Slot};
use crate::error::Result;

pub(crate) const SHADER: Shader = Shader {
    file: "cross_entropy.wgsl",
    body: include_str!("../../shaders/cross_entropy.wgsl"),
    consts: &[],
    params: &[decl::<Dims>(), decl::<MeanParams>()],
};

#[derive(Debug)]
/// The family's pipelines (built once, in `Kernels`).
pub struct Pipelines {
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

kernel_params! {
    /// The parameters of shaders/cross_entropy.wgsl's per-row losses.
    struct Dims as "Dims" {
        rows: u32,
        cols: u32,
    }
}

kernel_params! {
    /// The parameters of shaders/cross_entropy.wgsl's `mean`.
    struct MeanParams as "MeanParams" {
        /// The number of values.
        n: u32,
        /// Where the mean goes in `out`.
        out_index: u32,
    }
}

fn dims(rows: usize, cols: usize) -> Result<Dims> {
    Ok(Dims {
        rows: word("rows", rows)?,
        cols: word("cols", cols)?,
    })
}

/// `losses[b] = -ln(probs[b][t_b] + 1e-7)` for rows x cols probabilities and u32 labels.
pub fn cross_entropy(
    k: &Pipelines,
    ctx: &Context,
    rows: usize,
    cols: usize,
    probs: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    losses: &wgpu::Buffer,
) -> Result<Dispatch> {
    let params = dims(rows, cols)?;
    k.cross_entropy
        .dispatch(ctx, &params, &[probs, labels, losses], groups_1d(ctx, rows))
}

/// `losses[b] = 0.5 * sum_k (probs[b][k] - onehot(t_b)[k])^2`.
pub fn sum_squares(
    k: &Pipelines,
    ctx: &Context,
    rows: usize,
    cols: usize,
    probs: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    losses: &wgpu::Buffer,
) -> Result<Dispatch> {
    let params = dims(rows, cols)?;
    k.sum_squares
        .dispatch(ctx, &params, &[probs, labels, losses], groups_1d(ctx, rows))
}

/// `out[out_index]` = mean of the first `n` values (one workgroup).
pub fn mean(
    k: &Pipelines,
    ctx: &Context,
    n: usize,
    values: &wgpu::Buffer,
    out: &wgpu::Buffer,
    out_index: usize,
) -> Result<Dispatch> {
    let params = MeanParams {
        n: word("n", n)?,
        out_index: word("out index", out_index)?,
    };
    k.mean.dispatch(ctx, &params, &[values, out], [1, 1, 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::launch::{build_source, run, test_context, WORKGROUP_1D};
    use crate::tolerance::{compare, GPU_MEAN};

    /// `mean` is right at any workgroup width the shader is built with: its strided sums and its
    /// tree step by the width, not by a number of their own (a stride of 256 in a narrower
    /// workgroup skips values; a tree from 128 reads slots nobody wrote).
    #[test]
    fn mean_is_right_at_any_workgroup_width() {
        let Some(ctx) = test_context() else { return };
        let values: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 / 7.0).collect();
        let v = ctx.upload("values", &values).unwrap();
        for width in [32, 64, WORKGROUP_1D] {
            let source = SHADER.source_with(width, &[]);
            let k = build_source(&ctx, SHADER.file, &source, Pipelines::new).unwrap();
            for n in [5, 1000] {
                let out = ctx.upload("mean", &[f32::NAN; 2]).unwrap();
                run(&ctx, &[&mean(&k, &ctx, n, &v, &out, 1).unwrap()]).unwrap();
                let got: Vec<f32> = ctx.read(&out, 0, 2).unwrap();
                assert!(got[0].is_nan(), "width {width}: wrote outside out[1]");
                let want = crate::cpu::cross_entropy::mean(&values[..n]);
                let what = format!("mean of {n} at width {width}");
                if let Err(e) = compare(&what, &[f64::from(got[1])], &[want], GPU_MEAN) {
                    panic!("{e}");
                }
            }
        }
    }
}
