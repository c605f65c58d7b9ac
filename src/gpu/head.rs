//! Launcher of shaders/head.wgsl: a training iteration's last layer in one launch (logits,
//! softmax, cross entropy, the batch mean into the chunk's loss buffer, and for backprop the
//! output delta). CPU twins: `cpu::forward` for the logits and probabilities,
//! `cpu::cross_entropy` for the loss, `cpu::backprop::output_delta` for the delta.

use super::context::Context;
use super::launch::{
    decl, kernel_params, word, Dispatch, Kernel, Operand, Shader, Slot, WORKGROUP_1D,
};
use crate::error::Result;

pub(crate) const SHADER: Shader = Shader {
    file: "head.wgsl",
    body: include_str!("../../shaders/head.wgsl"),
    consts: &[],
    params: &[decl::<HeadParams>()],
};

/// Loop iterations the head's busiest invocation runs (every loop of the shader counted; its one
/// workgroup is `WORKGROUP_1D` wide), for drivers that cap them (`Context::loop_iteration_cap`).
pub fn loop_iterations(rows: usize, inputs: usize, classes: usize) -> u64 {
    let per_row = (classes * (inputs + 1) + 4 * classes) as u64;
    (rows as u64).div_ceil(u64::from(WORKGROUP_1D)) * (per_row + 1) + 9
}

#[derive(Debug)]
/// The family's pipelines (built once, in `Kernels`).
pub struct Pipelines {
    head: Kernel,
    /// Bound as the delta when the head writes none (a numerical iteration).
    unused_write: wgpu::Buffer,
}

impl Pipelines {
    pub(crate) fn new(ctx: &Context, module: &wgpu::ShaderModule) -> Result<Self> {
        use Slot::*;
        Ok(Pipelines {
            head: Kernel::new(
                ctx,
                module,
                "head: logits, softmax, cross entropy, mean",
                "head",
                &[Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
                &[],
            ),
            unused_write: ctx.storage("head: unused delta binding", 1)?,
        })
    }
}

kernel_params! {
    /// shaders/head.wgsl's parameters.
    struct HeadParams as "Params" {
        rows: u32,
        inputs: u32,
        classes: u32,
        w_off: u32,
        b_off: u32,
        in_off: u32,
        logits_off: u32,
        probs_off: u32,
        labels_off: u32,
        /// 1: write the output delta.
        delta: u32,
    }
}

/// Where the head finds and puts things: offsets in elements.
#[derive(Debug, Clone, Copy)]
pub struct HeadArgs<'a> {
    pub rows: usize,
    pub inputs: usize,
    pub classes: usize,
    pub theta: &'a wgpu::Buffer,
    pub w_offset: usize,
    pub b_offset: usize,
    /// The forward cache: activations in, logits, probabilities and labels.
    pub acts: &'a wgpu::Buffer,
    pub in_offset: usize,
    pub logits_offset: usize,
    pub probs_offset: usize,
    pub labels_offset: usize,
    /// Word 0: the iteration (read, then advanced).
    pub chunk: &'a wgpu::Buffer,
    /// The loss of iteration s goes to element s.
    pub losses: &'a wgpu::Buffer,
    /// The output delta (rows x classes), written when given.
    pub delta: Option<&'a wgpu::Buffer>,
}

pub fn head(k: &Pipelines, ctx: &Context, a: &HeadArgs) -> Result<Dispatch> {
    let delta = a.delta.map(Operand::whole);
    let params = HeadParams {
        rows: word("rows", a.rows)?,
        inputs: word("inputs", a.inputs)?,
        classes: word("classes", a.classes)?,
        w_off: word("weight offset", a.w_offset)?,
        b_off: word("bias offset", a.b_offset)?,
        in_off: word("activation offset", a.in_offset)?,
        logits_off: word("logits offset", a.logits_offset)?,
        probs_off: word("probabilities offset", a.probs_offset)?,
        labels_off: word("labels offset", a.labels_offset)?,
        delta: u32::from(delta.is_some()),
    };
    let delta = delta.map_or(&k.unused_write, |d| d.buffer);
    k.head.dispatch(
        ctx,
        &params,
        &[a.theta, a.acts, a.chunk, a.losses, delta],
        [1, 1, 1],
    )
}
