//! The analytic gradient of the mean batch loss (CPU twin of shaders/backprop.wgsl).

use super::activation::activate_grad;
use super::forward::ForwardCache;
use super::matmul::{matmul_a_bt, matmul_at_b};
use super::real::Real;
use super::sparse::{sparse_at_b_into, SparseRows};
use crate::backend::CEE_DELTA;
use crate::model::MlpSpec;

/// dLoss/dlogits for the loss AS WRITTEN, -mean ln(p_t + delta): c_b (p - onehot(t)) / B with
/// c_b = p_t / (p_t + delta). The chapter's (p - t) / B drops c_b and is 1e-6 off the function the
/// numerical gradient differentiates; with it, the two agree to the central difference's 1e-9.
pub fn output_delta<T: Real>(probs: &[T], labels: &[u8], classes: usize) -> Vec<T> {
    let batch = labels.len();
    let inv_b = T::ONE / T::from_f64(batch as f64);
    let delta = T::from_f64(CEE_DELTA);
    let mut d = probs.to_vec();
    for (b, &t) in labels.iter().enumerate() {
        let row = &mut d[b * classes..(b + 1) * classes];
        let pt = row[t as usize];
        let c = pt / (pt + delta) * inv_b;
        row[t as usize] -= T::ONE;
        for v in row.iter_mut() {
            *v *= c;
        }
    }
    d
}

/// The flat gradient (same layout as the parameters).
pub fn backprop<T: Real>(
    spec: &MlpSpec,
    params: &[T],
    x: &[T],
    cache: &ForwardCache<T>,
    labels: &[u8],
    batch: usize,
) -> Vec<T> {
    let mut grad = Vec::new();
    backprop_into(spec, params, x, cache, labels, batch, None, &mut grad);
    grad
}

/// `backprop` into `grad`, reusing its allocation, with the first layer's weight gradient over
/// `sparse` (the non-zero entries of `x`) when given.
#[allow(clippy::too_many_arguments)]
pub fn backprop_into<T: Real>(
    spec: &MlpSpec,
    params: &[T],
    x: &[T],
    cache: &ForwardCache<T>,
    labels: &[u8],
    batch: usize,
    sparse: Option<&SparseRows<T>>,
    grad: &mut Vec<T>,
) {
    let layers = spec.layers();
    grad.clear();
    grad.resize(spec.num_params(), T::ZERO);
    let mut delta = output_delta(&cache.probs, labels, spec.classes);
    for l in (0..layers.len()).rev() {
        let layer = layers[l];
        let input = cache.input_of(l, x);
        let dw = &mut grad[layer.w_offset..layer.w_offset + layer.w_len()];
        match sparse {
            Some(sx) if l == 0 => sparse_at_b_into(sx, &delta, layer.fan_out, dw),
            _ => dw.copy_from_slice(&matmul_at_b(
                input,
                &delta,
                batch,
                layer.fan_in,
                layer.fan_out,
            )),
        }
        let db = &mut grad[layer.b_offset..layer.b_offset + layer.fan_out];
        for row in delta.chunks(layer.fan_out) {
            for (g, &d) in db.iter_mut().zip(row) {
                *g += d;
            }
        }
        if l > 0 {
            let w = &params[layer.w_offset..layer.w_offset + layer.w_len()];
            let mut dz = matmul_a_bt(&delta, w, batch, layer.fan_out, layer.fan_in);
            let (a, z) = (&cache.pre[l - 1], &cache.post[l - 1]);
            for ((d, &a), &z) in dz.iter_mut().zip(a).zip(z) {
                *d *= activate_grad(spec.activation, a, z);
            }
            delta = dz;
        }
    }
}
