//! Launcher of shaders/sparse.wgsl: a training iteration's first layer over the batch's
//! non-zero pixels only (the resident split's `NonZeroBuffers`), bit-identical to the dense
//! matmul's AddBiasAct. CPU twin: `cpu::sparse` (`sparse_matmul_add`) and `cpu::forward`.

use super::context::Context;
use super::gather::{self, NonZeroBuffers};
use super::launch::{
    act_code, decl, groups_2d, kernel_params, word, Dispatch, Kernel, Shader, Slot,
};
use crate::error::{Error, Result};
use crate::model::MlpSpec;

/// Invocations per workgroup, one hidden unit each (SPARSE_WG in the shader).
pub const SPARSE_WG: u32 = 64;

pub(crate) const SHADER: Shader = Shader {
    file: "sparse.wgsl",
    body: include_str!("../../shaders/sparse.wgsl"),
    consts: &[("SPARSE_WG", SPARSE_WG)],
    params: &[decl::<SparseParams>()],
};

/// The family's pipelines (built once, in `Kernels`).
#[derive(Debug)]
pub struct Pipelines {
    layer: Kernel,
}

impl Pipelines {
    pub(crate) fn new(ctx: &Context, module: &wgpu::ShaderModule) -> Self {
        use Slot::*;
        Pipelines {
            layer: Kernel::new(
                ctx,
                module,
                "sparse first layer",
                "sparse_layer",
                &[Read, Read, Read, Read, Uniform, ReadWrite],
                &[],
            ),
        }
    }
}

kernel_params! {
    /// shaders/sparse.wgsl's parameters.
    struct SparseParams as "Params" {
        rows: u32,
        hidden: u32,
        /// Images in the split: an index past it reads nothing.
        images: u32,
        w_off: u32,
        b_off: u32,
        pre_off: u32,
        post_off: u32,
        /// 1 sigmoid, 2 relu (`act_code`).
        act: u32,
    }
}

/// Loop iterations the busiest invocation runs: one per non-zero pixel of the densest image,
/// at most the input width (for drivers that cap them, `Context::loop_iteration_cap`).
pub fn loop_iterations(spec: &MlpSpec) -> u64 {
    spec.input as u64
}

/// Where the sparse first layer reads and writes.
#[derive(Debug, Clone, Copy)]
pub struct SparseArgs<'a> {
    pub rows: usize,
    /// Word 0 the iteration, then the chunk's batches (the gather's mode 1).
    pub chunk: &'a wgpu::Buffer,
    pub theta: &'a wgpu::Buffer,
    /// The training plan's forward cache: a (rows x hidden) at `pre_at`, act(a) at `post_at`.
    pub acts: &'a wgpu::Buffer,
    pub pre_at: usize,
    pub post_at: usize,
}

/// The first layer of `spec` over the non-zero pixels of the chunk's current batch (fails, a
/// bug in the caller, where `applies` says no).
pub fn sparse_layer(
    k: &Pipelines,
    table: &gather::Pipelines,
    ctx: &Context,
    spec: &MlpSpec,
    nonzero: &NonZeroBuffers,
    a: &SparseArgs,
) -> Result<Dispatch> {
    if !applies(spec, Some(nonzero), ctx.loop_iteration_cap()) {
        return Err(Error::Gpu(format!(
            "the sparse first layer does not serve {} on a {}-pixel index here (a bug: the plan \
             checks `applies` first)",
            spec.describe(),
            nonzero.width
        )));
    }
    let l0 = spec.layers()[0];
    let params = SparseParams {
        rows: word("rows", a.rows)?,
        hidden: word("hidden units", l0.fan_out)?,
        images: word("images", nonzero.images)?,
        w_off: word("parameter offset", l0.w_offset)?,
        b_off: word("parameter offset", l0.b_offset)?,
        pre_off: word("cache offset", a.pre_at)?,
        post_off: word("cache offset", a.post_at)?,
        act: act_code(spec.activation),
    };
    k.layer.dispatch(
        ctx,
        &params,
        &[
            a.chunk,
            &nonzero.starts,
            &nonzero.entries,
            a.theta,
            table.table(),
            a.acts,
        ],
        groups_2d(l0.fan_out, SPARSE_WG, a.rows, 1),
    )
}

/// Whether the sparse first layer can serve `spec` under the driver's loop cap: the training
/// plan's nets (one hidden layer). Decides whether the training split's index is uploaded.
pub fn wanted(spec: &MlpSpec, loop_cap: Option<u64>) -> bool {
    spec.hidden.len() == 1 && loop_cap.is_none_or(|cap| loop_iterations(spec) <= cap)
}

/// Whether the training plan runs `spec`'s first layer sparse over this split's index.
pub fn applies(spec: &MlpSpec, nonzero: Option<&NonZeroBuffers>, loop_cap: Option<u64>) -> bool {
    wanted(spec, loop_cap) && nonzero.is_some_and(|nz| nz.width == spec.input)
}
