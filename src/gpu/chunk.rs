//! The training plan of `GpuBackend::train_steps` for nets with one hidden layer (the chapter's):
//! a chunk of iterations recorded many to a command buffer, every launch bound once.
//!
//! One iteration is, numerical: gather, hidden layer (over the batch's non-zero pixels, or the
//! dense matmul, + bias + activation), head (logits, softmax, cross entropy, the batch mean into
//! the chunk's loss buffer), the numerical gradient (the memo's two launches, SGD folded in):
//! 5 dispatches. Backprop: gather, hidden layer, head (with the output delta), d_1 = (d_2
//! W_2^T) * act' (one matmul), dW_2, dW_1, both biases (one launch), SGD: 8 dispatches. No copies:
//! the forward pass writes the numerical gradient's cache in place (`acts`, laid out by
//! `cache::cache_layout`). The iteration comes from word 0 of the chunk buffer (the gather
//! reads it, the head advances it), so the same bound launches serve every iteration.

use super::cache::{cache_layout, CacheLayout};
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
use crate::error::Result;
use crate::model::{LayerLayout, MlpSpec};
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

/// Proof that a net and batch size train through `TrainPlan`: made only by `fits`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fits(());

/// Whether `spec` trains through `TrainPlan` on batches of `rows` (one hidden layer, and a head
/// within the driver's loop cap); otherwise the backend steps one by one.
pub(crate) fn fits(spec: &MlpSpec, rows: usize, loop_cap: Option<u64>) -> Option<Fits> {
    (spec.hidden.len() == 1
        && loop_cap.is_none_or(|cap| {
            super::head::loop_iterations(rows, spec.hidden[0], spec.classes) <= cap
        }))
    .then_some(Fits(()))
}

/// What the launches of one plan share: the device, the kernels, the net, its two layers,
/// the batch size, the chunk's buffers, and the plan's own X and forward cache.
struct Parts<'a> {
    ctx: &'a Context,
    k: &'a Kernels,
    spec: &'a MlpSpec,
    layers: [LayerLayout; 2],
    rows: usize,
    b: &'a ChunkBuffers<'a>,
    x: &'a wgpu::Buffer,
    acts: &'a wgpu::Buffer,
    layout: &'a CacheLayout,
}

impl TrainPlan {
    pub(crate) fn new(
        ctx: &Context,
        k: &Kernels,
        spec: &MlpSpec,
        split: &ResidentSplit,
        rows: usize,
        b: &ChunkBuffers,
        _fits: Fits,
    ) -> Result<TrainPlan> {
        let layers = spec.layers();
        let layout = cache_layout(spec, rows)?;
        let x = ctx.storage("chunk batch X", rows * spec.input)?;
        let acts = ctx.storage("chunk forward cache", layout.words)?;
        let deltas = [
            ctx.storage("chunk delta 1", rows * layers[0].fan_out)?,
            ctx.storage("chunk delta 2", rows * layers[1].fan_out)?,
        ];
        let p = Parts {
            ctx,
            k,
            spec,
            layers: [layers[0], layers[1]],
            rows,
            b,
            x: &x,
            acts: &acts,
            layout: &layout,
        };
        let mut front = gather_rows(
            &k.gather,
            ctx,
            split,
            rows,
            Rows::Chunk,
            b.chunk,
            &x,
            Operand::at(&acts, layout.labels_at),
        )?;
        front.push(p.hidden_layer(split)?);
        let head = p.head(None)?;
        let head_delta = p.head(Some(&deltas[1]))?;
        let backward = p.backward(&deltas)?;
        let sgd = sgd::sgd(&k.sgd, ctx, spec.num_params(), 0.0, b.params, b.grad)?;
        ctx.check("building the training chunk's launches")?;
        Ok(TrainPlan {
            rows,
            x,
            acts,
            front,
            head,
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

impl Parts<'_> {
    /// The hidden layer over the batch's non-zero pixels where the split has them resident
    /// (bit-identical to the dense product, a fifth of its work on MNIST), else the dense
    /// matmul; + bias + activation, into the forward cache.
    fn hidden_layer(&self, split: &ResidentSplit) -> Result<Dispatch> {
        let (ctx, k, b, l0) = (self.ctx, self.k, self.b, self.layers[0]);
        let cap = ctx.loop_iteration_cap();
        match split
            .nonzero()
            .filter(|&nz| sparse::applies(self.spec, Some(nz), cap))
        {
            Some(nonzero) => sparse::sparse_layer(
                &k.sparse,
                &k.gather,
                ctx,
                self.spec,
                nonzero,
                &SparseArgs {
                    rows: self.rows,
                    chunk: b.chunk,
                    theta: b.params,
                    acts: self.acts,
                    pre_at: self.layout.pre_at[0],
                    post_at: self.layout.post_at[0],
                },
            ),
            None => matmul(
                &k.matmul,
                ctx,
                Matmul::AddBiasAct(self.spec.activation),
                &MatmulArgs {
                    m: self.rows,
                    k: l0.fan_in,
                    n: l0.fan_out,
                    a: Operand::whole(self.x),
                    b: Operand::at(b.params, l0.w_offset),
                    c: Operand::at(self.acts, self.layout.pre_at[0]),
                    bias: Some(Operand::at(b.params, l0.b_offset)),
                    post: Some(Operand::at(self.acts, self.layout.post_at[0])),
                },
            ),
        }
    }

    /// The head (logits, softmax, cross entropy, the batch mean into the chunk's losses), with
    /// the output delta where `delta` is given (backprop).
    fn head(&self, delta: Option<&wgpu::Buffer>) -> Result<Dispatch> {
        let (l1, layout) = (self.layers[1], self.layout);
        head(
            &self.k.head,
            self.ctx,
            &HeadArgs {
                rows: self.rows,
                inputs: l1.fan_in,
                classes: l1.fan_out,
                theta: self.b.params,
                w_offset: l1.w_offset,
                b_offset: l1.b_offset,
                acts: self.acts,
                in_offset: layout.post_at[0],
                logits_offset: layout.pre_at[1],
                probs_offset: layout.probs_at,
                labels_offset: layout.labels_at,
                chunk: self.b.chunk,
                losses: self.b.losses,
                delta,
            },
        )
    }

    /// d_1, dW_2, dW_1 and both biases, into the gradient buffer.
    fn backward(&self, deltas: &[wgpu::Buffer; 2]) -> Result<Vec<Dispatch>> {
        let (ctx, k, b, rows) = (self.ctx, self.k, self.b, self.rows);
        let [l0, l1] = self.layers;
        let hidden_out = Operand::at(self.acts, self.layout.post_at[0]);
        // d_1 = (d_2 W_2^T) * act'(z_1): W_2 is fan_in x fan_out, i.e. N x K of A B^T.
        let mut backward = vec![matmul_a_bt_act_grad(
            &k.matmul,
            ctx,
            self.spec.activation,
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
            hidden_out,
        )?];
        // dW_2 = z_1^T d_2 and dW_1 = x^T d_1 (input rows x fan_in: K x M of A^T B).
        let inputs = [Operand::whole(self.x), hidden_out];
        for (l, layer) in self.layers.iter().enumerate().rev() {
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
        Ok(backward)
    }
}

/// The launches of one training iteration, and of the forward pass alone (the loss of the
/// current parameters on the chunk's current batch: the chunk's final check).
pub(crate) struct Iteration<'a> {
    pub step: Vec<&'a Dispatch>,
    pub loss_only: Vec<&'a Dispatch>,
}
