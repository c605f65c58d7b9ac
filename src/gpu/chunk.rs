//! The training plan of `GpuBackend::train_steps` for nets with one hidden layer (the chapter's):
//! a chunk of iterations recorded many to a command buffer, every launch bound once.
//!
//! One iteration is, numerical: gather, hidden layer (over the batch's non-zero pixels, or the
//! dense matmul, + bias + activation), head (logits, softmax, cross entropy, the batch mean into
//! the chunk's loss buffer), the numerical gradient (the memo's two launches, SGD folded in):
//! 5 dispatches. Backprop: gather, hidden layer, head (with the output delta), d_1 = (d_2
//! W_2^T) * act' (one matmul), dW_2, dW_1, both biases (one launch), SGD: 8 dispatches. No copies:
//! the forward pass writes the numerical gradient's cache in place (`acts`, laid out by
//! `numerical::cache_layout`). The iteration comes from word 0 of the chunk buffer (the gather
//! reads it, the head advances it), so the same bound launches serve every iteration.

use super::context::Context;
use super::gather::{gather_rows, ResidentSplit, Rows};
use super::head::{head, HeadArgs};
use super::kernels::Kernels;
use super::launch::{Dispatch, Operand};
use super::matmul::{matmul, matmul_a_bt_act_grad, Matmul, MatmulArgs};
use super::numerical::{self, NumericalPlan};
use super::sparse::{self, SparseArgs};
use super::{backprop, sgd};
use crate::backend::PerturbStrategy;
use crate::error::{Error, Result};
use crate::model::MlpSpec;
use std::collections::HashMap;

/// Iterations recorded per command buffer: enough that submissions cost little next to the
/// work, few enough that the progress callback (and Ctrl-C) hear from the chunk often.
pub const STEPS_PER_SUBMISSION: usize = 64;

/// The buffers a chunk's launches bind, owned by the backend (grown, never shrunk).
pub(crate) struct ChunkBuffers<'a> {
    /// Word 0 the iteration, then the chunk's batches back to back (and a copy of the last).
    pub chunk: &'a wgpu::Buffer,
    /// The batch loss of each iteration (and of the final parameters, at the end).
    pub losses: &'a wgpu::Buffer,
    pub params: &'a wgpu::Buffer,
    pub grad: &'a wgpu::Buffer,
}

#[derive(Debug)]
pub(crate) struct TrainPlan {
    rows: usize,
    x: wgpu::Buffer,
    acts: wgpu::Buffer,
    /// gather and the hidden layer.
    front: Vec<Dispatch>,
    /// The head without the output delta (numerical; the final check) and with it (backprop).
    head: Dispatch,
    head_delta: Dispatch,
    /// d_1, dW_2, dW_1, both biases.
    backward: Vec<Dispatch>,
    sgd: Dispatch,
    numerical: HashMap<PerturbStrategy, NumericalPlan>,
    /// The learning rate the SGD launch (and a numerical plan that updates itself) applies.
    lr: Option<f32>,
    /// Kept alive for the bound launches.
    #[allow(dead_code)]
    deltas: [wgpu::Buffer; 2],
}

/// Whether `spec` trains through `TrainPlan` on batches of `rows` (one hidden layer, and a head
/// within the driver's loop cap); otherwise the backend steps one by one.
pub fn fits(spec: &MlpSpec, rows: usize, loop_cap: Option<u64>) -> bool {
    spec.hidden.len() == 1
        && loop_cap.is_none_or(|cap| {
            super::head::loop_iterations(rows, spec.hidden[0], spec.classes) <= cap
        })
}

impl TrainPlan {
    pub(crate) fn new(
        ctx: &Context,
        k: &Kernels,
        spec: &MlpSpec,
        split: &ResidentSplit,
        rows: usize,
        b: &ChunkBuffers,
    ) -> Result<TrainPlan> {
        if !fits(spec, rows, ctx.loop_iteration_cap()) {
            return Err(Error::Gpu(format!(
                "the chunked training plan is for one hidden layer, not {} (a bug)",
                spec.describe()
            )));
        }
        let layers = spec.layers();
        let (l0, l1) = (layers[0], layers[1]);
        let layout = numerical::cache_layout(spec, rows)?;
        let x = ctx.storage("chunk batch X", rows * spec.input)?;
        let acts = ctx.storage("chunk forward cache", layout.words)?;
        let deltas = [
            ctx.storage("chunk delta 1", rows * l0.fan_out)?,
            ctx.storage("chunk delta 2", rows * l1.fan_out)?,
        ];
        let gather = gather_rows(
            &k.gather,
            ctx,
            split,
            rows,
            Rows::Chunk,
            b.chunk,
            &x,
            Operand::at(&acts, layout.labels_at),
        )?;
        // Over the batch's non-zero pixels where the split has them resident (bit-identical to
        // the dense product, a fifth of its work on MNIST), else the dense matmul.
        let hidden = match split
            .nonzero()
            .filter(|&nz| sparse::applies(spec, Some(nz), ctx.loop_iteration_cap()))
        {
            Some(nonzero) => sparse::sparse_layer(
                &k.sparse,
                &k.gather,
                ctx,
                spec,
                nonzero,
                &SparseArgs {
                    rows,
                    chunk: b.chunk,
                    theta: b.params,
                    acts: &acts,
                    pre_at: layout.pre_at[0],
                    post_at: layout.post_at[0],
                },
            )?,
            None => matmul(
                &k.matmul,
                ctx,
                Matmul::AddBiasAct(spec.activation),
                &MatmulArgs {
                    m: rows,
                    k: l0.fan_in,
                    n: l0.fan_out,
                    a: Operand::whole(&x),
                    b: Operand::at(b.params, l0.w_offset),
                    c: Operand::at(&acts, layout.pre_at[0]),
                    bias: Some(Operand::at(b.params, l0.b_offset)),
                    post: Some(Operand::at(&acts, layout.post_at[0])),
                },
            )?,
        };
        let head_with = |delta: Option<&wgpu::Buffer>| {
            head(
                &k.head,
                ctx,
                &HeadArgs {
                    rows,
                    inputs: l1.fan_in,
                    classes: l1.fan_out,
                    theta: b.params,
                    w_offset: l1.w_offset,
                    b_offset: l1.b_offset,
                    acts: &acts,
                    in_offset: layout.post_at[0],
                    logits_offset: layout.pre_at[1],
                    probs_offset: layout.probs_at,
                    labels_offset: layout.labels_at,
                    chunk: b.chunk,
                    losses: b.losses,
                    delta,
                },
            )
        };
        let sgd = sgd::sgd(&k.sgd, ctx, spec.num_params(), 0.0, b.params, b.grad)?;
        let mut front = gather;
        front.push(hidden);
        let head_plain = head_with(None)?;
        let head_delta = head_with(Some(&deltas[1]))?;
        let mut backward = Vec::new();
        // d_1 = (d_2 W_2^T) * act'(z_1): W_2 is fan_in x fan_out, i.e. N x K of A B^T.
        backward.push(matmul_a_bt_act_grad(
            &k.matmul,
            ctx,
            spec.activation,
            &MatmulArgs {
                m: rows,
                k: l1.fan_out,
                n: l1.fan_in,
                a: Operand::whole(&deltas[1]),
                b: Operand::at(b.params, l1.w_offset),
                c: Operand::whole(&deltas[0]),
                bias: None,
                post: None,
            },
            Operand::at(&acts, layout.post_at[0]),
        )?);
        // dW_2 = z_1^T d_2 and dW_1 = x^T d_1 (input rows x fan_in: K x M of A^T B).
        let inputs = [Operand::whole(&x), Operand::at(&acts, layout.post_at[0])];
        for (l, layer) in layers.iter().enumerate().rev() {
            backward.push(matmul(
                &k.matmul,
                ctx,
                Matmul::AtB,
                &MatmulArgs {
                    m: layer.fan_in,
                    k: rows,
                    n: layer.fan_out,
                    a: inputs[l],
                    b: Operand::whole(&deltas[l]),
                    c: Operand::at(b.grad, layer.w_offset),
                    bias: None,
                    post: None,
                },
            )?);
        }
        backward.push(backprop::bias_grads(
            &k.backprop,
            ctx,
            rows,
            l0.fan_out,
            &deltas[0],
            l0.b_offset,
            l1.fan_out,
            &deltas[1],
            l1.b_offset,
            b.grad,
        )?);
        ctx.check("building the training chunk's launches")?;
        Ok(TrainPlan {
            rows,
            x,
            acts,
            front,
            head: head_plain,
            head_delta,
            backward,
            sgd,
            numerical: HashMap::new(),
            lr: None,
            deltas,
        })
    }

    /// One iteration's launches, with what it needs built first: for the numerical gradient
    /// (`numerical`: its strategy, pipelines and h) its launches on this plan's cache (once per
    /// strategy), and `lr` applied from the next submission on (the SGD launch, or the memo's
    /// sums, which apply the update themselves: one launch fewer an iteration).
    pub(crate) fn iteration(
        &mut self,
        ctx: &Context,
        spec: &MlpSpec,
        numerical: Option<(PerturbStrategy, &numerical::Pipelines, f32)>,
        subtract_losses: bool,
        b: &ChunkBuffers,
        lr: f32,
    ) -> Result<Iteration<'_>> {
        if self.lr != Some(lr) {
            sgd::set_lr(ctx, &self.sgd, lr);
            self.lr = Some(lr);
        }
        let gradient = match numerical {
            None => None,
            Some((strategy, pipelines, h)) => {
                let plan = numerical::launches(
                    &mut self.numerical,
                    pipelines,
                    ctx,
                    spec,
                    self.rows,
                    strategy,
                    h,
                    subtract_losses,
                    [b.params, &self.x, b.grad],
                    Some(&self.acts),
                )?;
                plan.fuse_update(ctx, Some(lr));
                Some(&*plan)
            }
        };
        let (rest, sgd): (Vec<&Dispatch>, bool) = match gradient {
            None => (
                std::iter::once(&self.head_delta)
                    .chain(&self.backward)
                    .collect(),
                true,
            ),
            Some(n) => (
                std::iter::once(&self.head).chain(n.launches()).collect(),
                !n.updates(),
            ),
        };
        Ok(Iteration {
            step: self
                .front
                .iter()
                .chain(rest)
                .chain(sgd.then_some(&self.sgd))
                .collect(),
            loss_only: self
                .front
                .iter()
                .chain(std::iter::once(&self.head))
                .collect(),
        })
    }
}

/// The launches of one training iteration, and of the forward pass alone (the loss of the
/// current parameters on the chunk's current batch: the chunk's final check).
pub(crate) struct Iteration<'a> {
    pub step: Vec<&'a Dispatch>,
    pub loss_only: Vec<&'a Dispatch>,
}
