//! The forward pass of the MLP (CPU twin of the GPU's matmul + bias + activation, softmax
//! chain), keeping what the backward pass and the incremental numerical gradient reuse.

use super::activation::activate;
use super::matmul::matmul_into;
use super::real::Real;
use super::softmax::softmax_rows;
use super::sparse::{sparse_matmul_add, SparseRows};
use crate::model::MlpSpec;

/// Everything the forward pass computed for one batch.
#[derive(Debug, Clone)]
pub struct ForwardCache<T> {
    pub batch: usize,
    /// Pre-activations a_l = z_{l-1} W_l + b_l, one per layer (batch x fan_out); the last one is
    /// the logits.
    pub pre: Vec<Vec<T>>,
    /// Activations z_l = act(a_l), one per hidden layer (batch x fan_out).
    pub post: Vec<Vec<T>>,
    /// softmax(logits), batch x classes.
    pub probs: Vec<T>,
}

impl<T: Real> ForwardCache<T> {
    /// The input of layer `l`: the batch itself for the first layer, else the previous
    /// layer's activations.
    pub fn input_of<'a>(&'a self, l: usize, x: &'a [T]) -> &'a [T] {
        if l == 0 {
            x
        } else {
            &self.post[l - 1]
        }
    }
}

/// Runs the whole net on `batch` rows of `x` (batch x input).
pub fn forward<T: Real>(spec: &MlpSpec, params: &[T], x: &[T], batch: usize) -> ForwardCache<T> {
    forward_with(spec, params, x, batch, None)
}

/// `forward`, with the first layer's product over `sparse` (the non-zero entries of `x`) when
/// given.
pub fn forward_with<T: Real>(
    spec: &MlpSpec,
    params: &[T],
    x: &[T],
    batch: usize,
    sparse: Option<&SparseRows<T>>,
) -> ForwardCache<T> {
    let layers = spec.layers();
    let mut pre = Vec::with_capacity(layers.len());
    let mut post: Vec<Vec<T>> = Vec::with_capacity(layers.len() - 1);
    for (l, layer) in layers.iter().enumerate() {
        let input: &[T] = if l == 0 { x } else { &post[l - 1] };
        let w = &params[layer.w_offset..layer.w_offset + layer.w_len()];
        let b = &params[layer.b_offset..layer.b_offset + layer.fan_out];
        let mut a = vec![T::ZERO; batch * layer.fan_out];
        match sparse {
            Some(sx) if l == 0 => {
                for row in a.chunks_mut(layer.fan_out) {
                    row.copy_from_slice(b);
                }
                sparse_matmul_add(sx, w, layer.fan_out, &mut a);
            }
            _ => {
                matmul_into(input, w, batch, layer.fan_in, layer.fan_out, &mut a);
                for row in a.chunks_mut(layer.fan_out) {
                    for (v, &bias) in row.iter_mut().zip(b) {
                        *v += bias;
                    }
                }
            }
        }
        if l + 1 < layers.len() {
            post.push(a.iter().map(|&v| activate(spec.activation, v)).collect());
        }
        pre.push(a);
    }
    let mut probs = pre[layers.len() - 1].clone();
    softmax_rows(&mut probs, spec.classes);
    ForwardCache {
        batch,
        pre,
        post,
        probs,
    }
}
