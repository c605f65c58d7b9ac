//! The per-step plan: every launch one batch size needs (gather, forward, loss, accuracy,
//! backward; the numerical gradient's launches per strategy, added on first use) bound to that
//! batch's buffers (X, labels, the forward cache, the backward deltas) and the resident
//! parameters and gradient. A plan is built once per batch size and recorded many times: each
//! step only uploads its indices. `GpuBackend` (`gpu::backend`) owns the plans, one per
//! `PlanKey`, records them and adds the SGD update; the chunked training path of `train_steps`
//! has its own plan, `gpu::chunk::TrainPlan`. A plan without a split (`Plan::new` with None)
//! has no gather: its X and labels are written by the host (`gpu::host`, the caller's batch).

use super::context::Context;
use super::gather::{gather, ResidentSplit};
use super::kernels::Kernels;
use super::launch::{Dispatch, Operand};
use super::matmul::{matmul, Matmul, MatmulArgs};
use super::numerical::NumericalPlan;
use super::{accuracy, backprop, cross_entropy, softmax};
use crate::backend::PerturbStrategy;
use crate::error::Result;
use crate::model::MlpSpec;
use std::collections::HashMap;

/// Which plan: the split its gather reads, its rows, and whether it has a backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PlanKey {
    pub(crate) test: bool,
    pub(crate) rows: usize,
    pub(crate) backward: bool,
}

/// Everything one batch size needs, bound once. The forward cache buffers (`pre`, `post`,
/// `probs`) stay resident so the numerical gradient can reuse the unperturbed pass.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) rows: usize,
    pub(crate) indices: wgpu::Buffer,
    pub(crate) x: wgpu::Buffer,
    pub(crate) labels: wgpu::Buffer,
    /// a_l per layer (rows x fan_out); the last is the logits.
    pub(crate) pre: Vec<wgpu::Buffer>,
    /// z_l = act(a_l) per hidden layer.
    pub(crate) post: Vec<wgpu::Buffer>,
    pub(crate) probs: wgpu::Buffer,
    /// Per-sample losses (the loss launches' first output).
    pub(crate) losses: wgpu::Buffer,
    /// The mean loss (one f32).
    pub(crate) loss: wgpu::Buffer,
    pub(crate) gather: Vec<Dispatch>,
    pub(crate) forward: Vec<Dispatch>,
    pub(crate) loss_pass: Vec<Dispatch>,
    pub(crate) accuracy: Dispatch,
    /// dLoss/da_l per layer (rows x fan_out); empty without a backward pass.
    #[allow(dead_code)]
    deltas: Vec<wgpu::Buffer>,
    pub(crate) backward: Vec<Dispatch>,
    /// The numerical gradient's launches per strategy, built on first use.
    pub(crate) numerical: HashMap<PerturbStrategy, NumericalPlan>,
}

/// The shared buffers a plan binds.
pub(crate) struct Shared<'a> {
    pub(crate) ctx: &'a Context,
    pub(crate) kernels: &'a Kernels,
    pub(crate) spec: &'a MlpSpec,
    pub(crate) params: &'a wgpu::Buffer,
    pub(crate) grad: &'a wgpu::Buffer,
    pub(crate) correct: &'a wgpu::Buffer,
}

/// A batch's activations, by layer: what the forward pass writes and the backward pass reads.
struct Activations<'a> {
    x: &'a wgpu::Buffer,
    /// a_l per layer.
    pre: &'a [wgpu::Buffer],
    /// z_l per hidden layer.
    post: &'a [wgpu::Buffer],
}

impl Activations<'_> {
    /// Layer l's input: X, or the previous hidden layer's z.
    fn input(&self, l: usize) -> &wgpu::Buffer {
        if l == 0 {
            self.x
        } else {
            &self.post[l - 1]
        }
    }
}

impl Plan {
    /// The launches of batches of `rows` from `split` (gathered by the plan), or, with None, of
    /// batches whose X (f32, rows x input) and labels (u32) the host writes into `x` and
    /// `labels` (no gather).
    pub(crate) fn new(
        s: &Shared,
        split: Option<&ResidentSplit>,
        rows: usize,
        with_backward: bool,
    ) -> Result<Plan> {
        let (ctx, k, spec) = (s.ctx, s.kernels, s.spec);
        let classes = spec.classes;
        let indices = ctx.storage("batch indices", rows)?;
        let x = ctx.storage("batch X", rows * spec.input)?;
        let labels = ctx.storage("batch labels", rows)?;
        let pre = spec
            .layers()
            .iter()
            .map(|l| ctx.storage("pre-activation", rows * l.fan_out))
            .collect::<Result<Vec<_>>>()?;
        let post = spec
            .hidden
            .iter()
            .map(|&h| ctx.storage("activation", rows * h))
            .collect::<Result<Vec<_>>>()?;
        let probs = ctx.storage("probabilities", rows * classes)?;
        let losses = ctx.storage("per-sample losses", rows)?;
        let loss = ctx.storage("mean loss", 1)?;
        let acts = Activations {
            x: &x,
            pre: &pre,
            post: &post,
        };
        let gather = match split {
            Some(split) => gather(&k.gather, ctx, split, rows, &indices, &x, &labels)?,
            None => Vec::new(),
        };
        let forward = forward(s, rows, &acts, &probs)?;
        let loss_pass = vec![
            cross_entropy::cross_entropy(
                &k.cross_entropy,
                ctx,
                rows,
                classes,
                &probs,
                &labels,
                &losses,
            )?,
            cross_entropy::mean(&k.cross_entropy, ctx, rows, &losses, &loss, 0)?,
        ];
        let accuracy =
            accuracy::accuracy(&k.accuracy, ctx, rows, classes, &probs, &labels, s.correct)?;
        let (deltas, backward) = if with_backward {
            let deltas = spec
                .layers()
                .iter()
                .map(|l| ctx.storage("delta", rows * l.fan_out))
                .collect::<Result<Vec<_>>>()?;
            let backward = backward(s, rows, &acts, &probs, &labels, &deltas)?;
            (deltas, backward)
        } else {
            (Vec::new(), Vec::new())
        };
        ctx.check("building the step's launches")?;
        Ok(Plan {
            rows,
            indices,
            x,
            labels,
            pre,
            post,
            probs,
            losses,
            loss,
            gather,
            forward,
            loss_pass,
            accuracy,
            deltas,
            backward,
            numerical: HashMap::new(),
        })
    }
}

/// Each layer's matmul + bias (+ activation on hidden layers), then the softmax into `probs`.
fn forward(
    s: &Shared,
    rows: usize,
    acts: &Activations,
    probs: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let (ctx, k, spec) = (s.ctx, s.kernels, s.spec);
    let layers = spec.layers();
    let mut forward = Vec::with_capacity(layers.len() + 1);
    for (l, layer) in layers.iter().enumerate() {
        let hidden = l + 1 < layers.len();
        let args = MatmulArgs {
            m: rows,
            k: layer.fan_in,
            n: layer.fan_out,
            a: Operand::whole(acts.input(l)),
            b: Operand::at(s.params, layer.w_offset),
            c: Operand::whole(&acts.pre[l]),
            bias: Some(Operand::at(s.params, layer.b_offset)),
            post: hidden.then(|| Operand::whole(&acts.post[l])),
        };
        let kind = if hidden {
            Matmul::AddBiasAct(spec.activation)
        } else {
            Matmul::AddBias
        };
        forward.push(matmul(&k.matmul, ctx, kind, &args)?);
    }
    let logits = &acts.pre[layers.len() - 1];
    forward.push(softmax::softmax(
        &k.softmax,
        ctx,
        rows,
        spec.classes,
        Operand::whole(logits),
        Operand::whole(probs),
    )?);
    Ok(forward)
}

/// The output delta, then per layer from the last: dW_l, db_l and the delta below it.
fn backward(
    s: &Shared,
    rows: usize,
    acts: &Activations,
    probs: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    deltas: &[wgpu::Buffer],
) -> Result<Vec<Dispatch>> {
    let (ctx, k, spec) = (s.ctx, s.kernels, s.spec);
    let layers = spec.layers();
    let last = layers.len() - 1;
    let mut backward = vec![backprop::output_delta(
        &k.backprop,
        ctx,
        rows,
        spec.classes,
        probs,
        labels,
        &deltas[last],
    )?];
    for l in (0..layers.len()).rev() {
        let layer = layers[l];
        // dW_l = input_l^T d_l: input_l is rows x fan_in, i.e. K x M of A^T B.
        let dw = MatmulArgs {
            m: layer.fan_in,
            k: rows,
            n: layer.fan_out,
            a: Operand::whole(acts.input(l)),
            b: Operand::whole(&deltas[l]),
            c: Operand::at(s.grad, layer.w_offset),
            bias: None,
            post: None,
        };
        backward.push(matmul(&k.matmul, ctx, Matmul::AtB, &dw)?);
        backward.push(backprop::bias_grad(
            &k.backprop,
            ctx,
            rows,
            layer.fan_out,
            &deltas[l],
            Operand::at(s.grad, layer.b_offset),
        )?);
        if l > 0 {
            // d_{l-1} = (d_l W_l^T) * act'(a_{l-1}): W_l is fan_in x fan_out, i.e. N x K of A B^T.
            let dz = MatmulArgs {
                m: rows,
                k: layer.fan_out,
                n: layer.fan_in,
                a: Operand::whole(&deltas[l]),
                b: Operand::at(s.params, layer.w_offset),
                c: Operand::whole(&deltas[l - 1]),
                bias: None,
                post: None,
            };
            backward.push(matmul(&k.matmul, ctx, Matmul::ABt, &dz)?);
            backward.push(backprop::act_backward(
                &k.backprop,
                ctx,
                rows * layer.fan_in,
                spec.activation,
                &acts.pre[l - 1],
                &acts.post[l - 1],
                &deltas[l - 1],
            )?);
        }
    }
    Ok(backward)
}
