//! The numerical gradient of the mean batch loss, (L(theta + h e_p) - L(theta - h e_p)) / 2h for
//! every parameter p, by two strategies, `full` and `incremental` (CPU twin of
//! shaders/numerical.wgsl).

use super::activation::{activation_change, ActivationPoint, ShiftRegime};
use super::cross_entropy::{
    cross_entropy_change, cross_entropy_change_one, cross_entropy_labels, RowShift,
};
use super::forward::{forward, ForwardCache};
use super::real::Real;
use crate::model::MlpSpec;
use rayon::prelude::*;

/// `full`: the chapter's way. Every perturbation runs the whole forward pass on the batch and the
/// two mean losses are subtracted, in f64 whatever T is: two f32 losses near 2.3 that differ by
/// ~1e-6 keep almost no digits (the f32 version of this function was off by 1.9 relative on b1 of
/// 784-50-10), while f64 keeps ~1e-12. The GPU's `full` carries the same passes in double-f32.
pub fn numerical_gradient_full<T: Real>(
    spec: &MlpSpec,
    params: &[T],
    x: &[T],
    labels: &[u8],
    batch: usize,
    h: T,
) -> Vec<T> {
    let params: Vec<f64> = params.iter().map(|v| v.to_f64()).collect();
    let x: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
    let h = h.to_f64();
    let mean_loss = |theta: &[f64]| -> f64 {
        let cache = forward(spec, theta, &x, batch);
        let losses = cross_entropy_labels(&cache.probs, labels, spec.classes);
        losses.iter().sum::<f64>() / batch as f64
    };
    (0..params.len())
        .into_par_iter()
        .map_init(
            || params.clone(),
            |theta, p| {
                let keep = theta[p];
                theta[p] = keep + h;
                let plus = mean_loss(theta);
                theta[p] = keep - h;
                let minus = mean_loss(theta);
                theta[p] = keep;
                T::from_f64((plus - minus) / (h + h))
            },
        )
        .collect()
}

/// Samples per parallel task. Fixed (not derived from the thread count) so the order of the
/// sums, and so every bit of the result, is the same on every machine: resume tests rely on it.
/// Each task sums into a whole gradient vector that is then zeroed, added and freed, so a
/// chapter batch of 100 makes 4 tasks, not 25 (docs/PERFORMANCE.md has the measurement).
const SAMPLES_PER_TASK: usize = 25;

/// `incremental`: exact too, but each perturbation re-computes only what the parameter reaches,
/// from the cached unperturbed pass, and each sample's loss CHANGE is computed directly.
///
/// Perturbing `W_l[i, j]` or `b_l[j]` shifts one pre-activation `a_l[j]` of each sample by h x_i (or
/// h); a zero input shifts nothing and is skipped (81% of MNIST pixels). The shift travels
/// through the layers above as a change vector, and the sample's loss change follows from the
/// cached probabilities (`cross_entropy_change`): O(classes) per sample and perturbation for a
/// one-hidden-layer net, instead of a whole forward pass.
pub fn numerical_gradient_incremental<T: Real>(
    spec: &MlpSpec,
    params: &[T],
    x: &[T],
    labels: &[u8],
    cache: &ForwardCache<T>,
    h: T,
) -> Vec<T> {
    let batch = cache.batch;
    let partials: Vec<Vec<T>> = (0..batch)
        .collect::<Vec<_>>()
        .par_chunks(SAMPLES_PER_TASK)
        .map(|samples| {
            let mut acc = vec![T::ZERO; params.len()];
            let mut scratch = Scratch::new(spec);
            for &b in samples {
                accumulate_sample(spec, params, x, labels, cache, h, b, &mut acc, &mut scratch);
            }
            acc
        })
        .collect();
    let mut grad = vec![T::ZERO; params.len()];
    for part in &partials {
        for (g, &v) in grad.iter_mut().zip(part) {
            *g += v;
        }
    }
    let scale = T::ONE / (T::from_f64(2.0 * batch as f64) * h);
    for g in grad.iter_mut() {
        *g *= scale;
    }
    grad
}

struct Scratch<T> {
    /// Change vectors of the pre-activations of each layer above the perturbed one.
    da: Vec<Vec<T>>,
    dz: Vec<T>,
    /// The current sample's non-zero inputs to the current layer: their indices, each one's
    /// slot in `distinct` (the distinct non-zero values, ascending).
    nz_index: Vec<usize>,
    slot: Vec<u32>,
    distinct: Vec<T>,
    /// Scratch for sorting the non-zero inputs by value.
    order: Vec<(T, u32)>,
    /// One unit's loss changes, one per distinct value.
    column: Vec<T>,
    /// Every unit's loss changes, distinct value x unit.
    table: Vec<T>,
}

impl<T: Real> Scratch<T> {
    fn new(spec: &MlpSpec) -> Self {
        let sizes = spec.sizes();
        let widest = *sizes.iter().max().unwrap_or(&1);
        Scratch {
            da: sizes[1..].iter().map(|&n| vec![T::ZERO; n]).collect(),
            dz: vec![T::ZERO; widest],
            nz_index: Vec::with_capacity(widest),
            slot: Vec::with_capacity(widest),
            distinct: Vec::with_capacity(widest),
            order: Vec::with_capacity(widest),
            column: Vec::with_capacity(widest),
            table: Vec::new(),
        }
    }

    /// Fills `nz_index`, `slot` and `distinct` from one sample's inputs.
    fn distinct_inputs(&mut self, input: &[T]) {
        self.nz_index.clear();
        self.order.clear();
        for (i, &xi) in input.iter().enumerate() {
            if xi != T::ZERO {
                self.order.push((xi, self.nz_index.len() as u32));
                self.nz_index.push(i);
            }
        }
        self.order
            .sort_unstable_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        self.slot.clear();
        self.slot.resize(self.nz_index.len(), 0);
        self.distinct.clear();
        for &(v, k) in &self.order {
            if self.distinct.last() != Some(&v) {
                self.distinct.push(v);
            }
            self.slot[k as usize] = (self.distinct.len() - 1) as u32;
        }
    }
}

/// Adds sample b's loss change L(+e) - L(-e) for every parameter into `acc`.
#[allow(clippy::too_many_arguments)]
fn accumulate_sample<T: Real>(
    spec: &MlpSpec,
    params: &[T],
    x: &[T],
    labels: &[u8],
    cache: &ForwardCache<T>,
    h: T,
    b: usize,
    acc: &mut [T],
    scratch: &mut Scratch<T>,
) {
    let layers = spec.layers();
    let last = layers.len() - 1;
    let t = labels[b] as usize;
    let p = &cache.probs[b * spec.classes..(b + 1) * spec.classes];
    for (l, layer) in layers.iter().enumerate() {
        let input = &cache.input_of(l, x)[b * layer.fan_in..(b + 1) * layer.fan_in];
        if l + 1 == last {
            add_last_hidden_layer(spec, params, cache, p, t, b, l, h, input, acc, scratch);
            continue;
        }
        for j in 0..layer.fan_out {
            if l == last {
                add_unit(acc, layer, j, input, h, |e| {
                    cross_entropy_change_one(p, t, j, e)
                });
            } else {
                add_unit(acc, layer, j, input, h, |e| {
                    unit_shift_change(spec, params, cache, &layers, l, j, b, e, p, t, scratch)
                });
            }
        }
    }
}

/// The hot path of a one-hidden-layer net (layer l feeds the output layer): unit j reaches the
/// logits through row j of the output weights only.
///
/// A parameter W_l[i, j] shifts unit j by h x_i, so its loss change depends on the VALUE x_i
/// only: MNIST's ~150 non-zero pixels of an image take ~67 distinct values, so each unit's
/// change is computed once per distinct value (a table, value x unit) and then added to the
/// gradient's rows pixel by pixel, each row a contiguous run over the units.
#[allow(clippy::too_many_arguments)]
fn add_last_hidden_layer<T: Real>(
    spec: &MlpSpec,
    params: &[T],
    cache: &ForwardCache<T>,
    p: &[T],
    t: usize,
    b: usize,
    l: usize,
    h: T,
    input: &[T],
    acc: &mut [T],
    scratch: &mut Scratch<T>,
) {
    let layers = spec.layers();
    let (layer, out) = (layers[l], layers[l + 1]);
    let units = layer.fan_out;
    scratch.distinct_inputs(input);
    let Scratch {
        nz_index,
        slot,
        distinct,
        column,
        table,
        ..
    } = scratch;
    let e_max = h * distinct.iter().fold(T::ONE, |m, &v| m.max(v.abs()));
    table.clear();
    table.resize(distinct.len() * units, T::ZERO);
    for j in 0..units {
        let unit = ActivationPoint::new(spec.activation, cache.pre[l][b * units + j]);
        let row = RowShift::new(
            p,
            t,
            &params[out.w_offset + j * out.fan_out..][..out.fan_out],
        );
        let g = |e: T| row.change(unit.change(e));
        column.clear();
        match unit.regime(e_max) {
            ShiftRegime::Dead => continue,
            ShiftRegime::Series if row.series_ok(unit.max_change(e_max)) => {
                // Every shift of this unit is small: the same arithmetic as `g`, branch-free
                // over a compact buffer, so it vectorises.
                let g = |e: T| row.change_series(unit.change_series(e));
                acc[layer.b_offset + j] += g(h) - g(-h);
                column.extend(distinct.iter().map(|&xi| {
                    let e = h * xi;
                    g(e) - g(-e)
                }));
            }
            _ => {
                acc[layer.b_offset + j] += g(h) - g(-h);
                column.extend(distinct.iter().map(|&xi| g(h * xi) - g(-(h * xi))));
            }
        }
        for (s, &v) in column.iter().enumerate() {
            table[s * units + j] = v;
        }
    }
    for (&i, &s) in nz_index.iter().zip(slot.iter()) {
        let changes = &table[s as usize * units..][..units];
        let grad_row = &mut acc[layer.w_offset + i * units..][..units];
        for (a, &v) in grad_row.iter_mut().zip(changes) {
            *a += v;
        }
    }
}

/// Adds L(+e) - L(-e) for b_l[j] (shift h) and each W_l[i, j] with a nonzero input x_i (shift
/// h x_i); `change(e)` is the sample's loss change when unit j's pre-activation moves by e.
#[inline]
fn add_unit<T: Real>(
    acc: &mut [T],
    layer: &crate::model::LayerLayout,
    j: usize,
    input: &[T],
    h: T,
    mut change: impl FnMut(T) -> T,
) {
    acc[layer.b_offset + j] += change(h) - change(-h);
    for (i, &xi) in input.iter().enumerate() {
        if xi == T::ZERO {
            continue;
        }
        let e = h * xi;
        acc[layer.w_offset + i * layer.fan_out + j] += change(e) - change(-e);
    }
}

/// Sample b's loss change when pre-activation a_l[j] shifts by e.
#[allow(clippy::too_many_arguments)]
#[inline]
fn unit_shift_change<T: Real>(
    spec: &MlpSpec,
    params: &[T],
    cache: &ForwardCache<T>,
    layers: &[crate::model::LayerLayout],
    l: usize,
    j: usize,
    b: usize,
    e: T,
    p: &[T],
    t: usize,
    scratch: &mut Scratch<T>,
) -> T {
    let last = layers.len() - 1;
    if l == last {
        return cross_entropy_change_one(p, t, j, e);
    }
    let dz = activation_change(spec.activation, cache.pre[l][b * layers[l].fan_out + j], e);
    if dz == T::ZERO {
        return T::ZERO;
    }
    // Layer l + 1: only row j of W_{l+1} is reached.
    let next = layers[l + 1];
    let w_row = &params[next.w_offset + j * next.fan_out..next.w_offset + (j + 1) * next.fan_out];
    for (d, &w) in scratch.da[l + 1].iter_mut().zip(w_row) {
        *d = dz * w;
    }
    // Every layer above that: a dense change vector through activation and weights.
    for m in l + 1..last {
        let (lo, hi) = scratch.da.split_at_mut(m + 1);
        let da_in = &lo[m];
        let da_out = &mut hi[0];
        let n_in = layers[m].fan_out;
        let pre = &cache.pre[m][b * n_in..(b + 1) * n_in];
        for (k, dz) in scratch.dz[..n_in].iter_mut().enumerate() {
            *dz = activation_change(spec.activation, pre[k], da_in[k]);
        }
        let w = layers[m + 1];
        da_out.iter_mut().for_each(|d| *d = T::ZERO);
        for k in 0..n_in {
            let dzk = scratch.dz[k];
            if dzk == T::ZERO {
                continue;
            }
            let row = &params[w.w_offset + k * w.fan_out..w.w_offset + (k + 1) * w.fan_out];
            for (d, &wv) in da_out.iter_mut().zip(row) {
                *d += dzk * wv;
            }
        }
    }
    cross_entropy_change(p, t, &scratch.da[last])
}
