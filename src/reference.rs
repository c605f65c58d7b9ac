//! The f64 reference every other path is checked against: the chapter's net written out plainly,
//! with nothing shared with the fast paths it judges (no SIMD, no sparse index, no series, no
//! cached-change algebra).
//!
//! - forward: dense `x W + b`, the textbook sigmoid (or relu), softmax and cross entropy;
//! - backprop: the layers' chain rule as the chapter's sequel writes it;
//! - the numerical gradient `full`: the chapter's `numerical_gradient`, a whole forward pass of
//!   the batch for each of the 2P perturbations;
//! - the numerical gradient `incremental`: the same central differences, fast enough for the
//!   training run's checks because perturbing one parameter of layer l moves one pre-activation
//!   `a_l[j]` of each sample, so each sample's perturbed loss is its cached pass re-run from that
//!   one unit up.

use crate::backend::{Backend, Evaluation, GradMethod, PerturbStrategy, Split, CEE_DELTA};
use crate::data::{Dataset, Mnist};
use crate::error::{Error, Result};
use crate::model::{Activation, LayerLayout, MlpSpec, Params};
use rayon::prelude::*;
use std::sync::Arc;

/// Samples per parallel task of the incremental gradient. Fixed, so the order of the sums (and
/// every bit of the result) does not depend on the number of threads.
const SAMPLES_PER_TASK: usize = 10;

/// Rows per parallel task when evaluating a whole split.
const EVAL_ROWS_PER_TASK: usize = 500;

/// The f64 reference backend.
pub struct ReferenceBackend {
    spec: MlpSpec,
    data: Arc<Mnist>,
    params: Vec<f64>,
    /// The batch: inputs (batch x input, pixel / 255) and labels.
    x: Vec<f64>,
    labels: Vec<u8>,
}

/// One forward pass over a set of rows.
struct Pass {
    rows: usize,
    /// Pre-activations a_l = z_{l-1} W_l + b_l of every layer (rows x fan_out); the last are the
    /// logits.
    pre: Vec<Vec<f64>>,
    /// Activations z_l = act(a_l) of every hidden layer (rows x fan_out).
    post: Vec<Vec<f64>>,
    /// softmax(logits), rows x classes.
    probs: Vec<f64>,
}

impl Pass {
    /// The input of layer l: x for the first, the previous layer's activations after.
    fn input<'a>(&'a self, l: usize, x: &'a [f64]) -> &'a [f64] {
        if l == 0 {
            x
        } else {
            &self.post[l - 1]
        }
    }
}

fn sigmoid(a: f64) -> f64 {
    1.0 / (1.0 + (-a).exp())
}

fn activate(act: Activation, a: f64) -> f64 {
    match act {
        Activation::Sigmoid => sigmoid(a),
        Activation::Relu => a.max(0.0),
    }
}

/// d act / d a (relu'(0) = 0).
fn activate_grad(act: Activation, a: f64) -> f64 {
    match act {
        Activation::Sigmoid => sigmoid(a) * (1.0 - sigmoid(a)),
        Activation::Relu => {
            if a > 0.0 {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// softmax of one row, shifted by its maximum so exp never overflows.
fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    let exps: Vec<f64> = logits.iter().map(|&v| (v - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| e / sum).collect()
}

/// The chapter's cross entropy of one sample: -ln(y_t + 1e-7).
fn cross_entropy(probs: &[f64], label: u8) -> f64 {
    -(probs[label as usize] + CEE_DELTA).ln()
}

/// The loss of one sample from its logits.
fn loss_of_logits(logits: &[f64], label: u8) -> f64 {
    cross_entropy(&softmax(logits), label)
}

/// The layer's product with its inputs: a (rows x fan_out) = input (rows x fan_in) . W + b.
fn affine(layer: &LayerLayout, params: &[f64], input: &[f64], rows: usize) -> Vec<f64> {
    let (n_in, n_out) = (layer.fan_in, layer.fan_out);
    let w = &params[layer.w_offset..layer.w_offset + n_in * n_out];
    let b = &params[layer.b_offset..layer.b_offset + n_out];
    let mut out = Vec::with_capacity(rows * n_out);
    for r in 0..rows {
        let mut a = b.to_vec();
        for i in 0..n_in {
            let xi = input[r * n_in + i];
            for j in 0..n_out {
                a[j] += xi * w[i * n_out + j];
            }
        }
        out.extend_from_slice(&a);
    }
    out
}

fn forward(spec: &MlpSpec, params: &[f64], x: &[f64], rows: usize) -> Pass {
    let layers = spec.layers();
    let last = layers.len() - 1;
    let mut pass = Pass {
        rows,
        pre: Vec::new(),
        post: Vec::new(),
        probs: Vec::new(),
    };
    for (l, layer) in layers.iter().enumerate() {
        let a = affine(layer, params, pass.input(l, x), rows);
        if l == last {
            pass.probs = a.chunks(layer.fan_out).flat_map(softmax).collect();
        } else {
            pass.post
                .push(a.iter().map(|&v| activate(spec.activation, v)).collect());
        }
        pass.pre.push(a);
    }
    pass
}

/// The batch's mean loss at `params`.
fn mean_loss(spec: &MlpSpec, params: &[f64], x: &[f64], labels: &[u8]) -> f64 {
    let pass = forward(spec, params, x, labels.len());
    let total: f64 = pass
        .probs
        .chunks(spec.classes)
        .zip(labels)
        .map(|(p, &t)| cross_entropy(p, t))
        .sum();
    total / labels.len() as f64
}

/// Backprop of the batch's mean loss.
///
/// The loss is -ln(y_t + delta), so its derivative by the logits is the chapter's (y - t)
/// scaled by y_t / (y_t + delta); without that factor backprop would differ from the numerical
/// gradient of the same loss by ~1e-6 relative on a freshly initialised net.
fn backprop(spec: &MlpSpec, params: &[f64], x: &[f64], labels: &[u8], pass: &Pass) -> Vec<f64> {
    let layers = spec.layers();
    let rows = pass.rows;
    let mut grad = vec![0.0; params.len()];
    // d loss / d logits, rows x classes.
    let mut delta = vec![0.0; rows * spec.classes];
    for (b, &t) in labels.iter().enumerate() {
        let p = &pass.probs[b * spec.classes..(b + 1) * spec.classes];
        let scale = p[t as usize] / (p[t as usize] + CEE_DELTA) / rows as f64;
        for k in 0..spec.classes {
            let target = if k == t as usize { 1.0 } else { 0.0 };
            delta[b * spec.classes + k] = (p[k] - target) * scale;
        }
    }
    for (l, layer) in layers.iter().enumerate().rev() {
        let (n_in, n_out) = (layer.fan_in, layer.fan_out);
        let input = pass.input(l, x);
        // dW = input^T . delta, db = the column sums of delta.
        for b in 0..rows {
            for i in 0..n_in {
                for j in 0..n_out {
                    grad[layer.w_offset + i * n_out + j] +=
                        input[b * n_in + i] * delta[b * n_out + j];
                }
            }
            for j in 0..n_out {
                grad[layer.b_offset + j] += delta[b * n_out + j];
            }
        }
        if l == 0 {
            break;
        }
        // delta of the layer below: (delta . W^T) * act'(a).
        let w = &params[layer.w_offset..layer.w_offset + n_in * n_out];
        let below = &pass.pre[l - 1];
        let mut next = vec![0.0; rows * n_in];
        for b in 0..rows {
            for i in 0..n_in {
                let mut s = 0.0;
                for j in 0..n_out {
                    s += delta[b * n_out + j] * w[i * n_out + j];
                }
                next[b * n_in + i] = s * activate_grad(spec.activation, below[b * n_in + i]);
            }
        }
        delta = next;
    }
    grad
}

/// The chapter's numerical gradient: for every parameter, the batch's mean loss at theta +- h,
/// each by a whole forward pass.
fn numerical_full(spec: &MlpSpec, params: &[f64], x: &[f64], labels: &[u8], h: f64) -> Vec<f64> {
    (0..params.len())
        .into_par_iter()
        .map_init(
            || params.to_vec(),
            |theta, p| {
                let keep = theta[p];
                theta[p] = keep + h;
                let plus = mean_loss(spec, theta, x, labels);
                theta[p] = keep - h;
                let minus = mean_loss(spec, theta, x, labels);
                theta[p] = keep;
                (plus - minus) / (2.0 * h)
            },
        )
        .collect()
}

/// Sample b's loss when pre-activation a_l[j] moves by e (and nothing else does): unit j's
/// activation changes, so the next layer's pre-activations move by that change times row j of
/// its weights, and the layers above are re-run for this sample.
#[allow(clippy::too_many_arguments)]
fn loss_with_shift(
    spec: &MlpSpec,
    params: &[f64],
    pass: &Pass,
    label: u8,
    b: usize,
    l: usize,
    j: usize,
    e: f64,
) -> f64 {
    let layers = spec.layers();
    let last = layers.len() - 1;
    let row = |v: &[f64], width: usize| v[b * width..(b + 1) * width].to_vec();
    if l == last {
        let mut logits = row(&pass.pre[l], layers[l].fan_out);
        logits[j] += e;
        return loss_of_logits(&logits, label);
    }
    let a = pass.pre[l][b * layers[l].fan_out + j];
    let dz = activate(spec.activation, a + e) - activate(spec.activation, a);
    let next = layers[l + 1];
    let mut pre = row(&pass.pre[l + 1], next.fan_out);
    for (k, v) in pre.iter_mut().enumerate() {
        *v += dz * params[next.w_offset + j * next.fan_out + k];
    }
    for m in l + 1..last {
        let z: Vec<f64> = pre.iter().map(|&v| activate(spec.activation, v)).collect();
        pre = affine(&layers[m + 1], params, &z, 1);
    }
    loss_of_logits(&pre, label)
}

/// The same central differences as `numerical_full`, summed sample by sample: a parameter of
/// layer l moves pre-activation a_l[j] of sample b by h times its input (h for a bias), so
/// L(+h) - L(-h) of that sample is `loss_with_shift` at +-that shift. A zero input moves nothing
/// and adds exactly 0.
fn numerical_incremental(
    spec: &MlpSpec,
    params: &[f64],
    x: &[f64],
    labels: &[u8],
    h: f64,
) -> Vec<f64> {
    let pass = forward(spec, params, x, labels.len());
    let layers = spec.layers();
    let samples: Vec<usize> = (0..labels.len()).collect();
    let parts: Vec<Vec<f64>> = samples
        .par_chunks(SAMPLES_PER_TASK)
        .map(|chunk| {
            let mut diff = vec![0.0; params.len()];
            for &b in chunk {
                for (l, layer) in layers.iter().enumerate() {
                    let input = &pass.input(l, x)[b * layer.fan_in..(b + 1) * layer.fan_in];
                    for j in 0..layer.fan_out {
                        let change = |e: f64| {
                            loss_with_shift(spec, params, &pass, labels[b], b, l, j, e)
                                - loss_with_shift(spec, params, &pass, labels[b], b, l, j, -e)
                        };
                        diff[layer.b_offset + j] += change(h);
                        for (i, &xi) in input.iter().enumerate() {
                            if xi != 0.0 {
                                diff[layer.w_offset + i * layer.fan_out + j] += change(h * xi);
                            }
                        }
                    }
                }
            }
            diff
        })
        .collect();
    let mut grad = vec![0.0; params.len()];
    for part in &parts {
        for (g, d) in grad.iter_mut().zip(part) {
            *g += d;
        }
    }
    let scale = 1.0 / (2.0 * h * labels.len() as f64);
    grad.iter_mut().for_each(|g| *g *= scale);
    grad
}

impl ReferenceBackend {
    pub fn new(spec: MlpSpec, data: Arc<Mnist>) -> Result<Self> {
        crate::backend::check_spec_fits(&spec, &data)?;
        let params = vec![0.0; spec.num_params()];
        Ok(ReferenceBackend {
            spec,
            data,
            params,
            x: Vec::new(),
            labels: Vec::new(),
        })
    }

    fn check_batch(&self) -> Result<()> {
        if self.labels.is_empty() {
            return Err(Error::config(
                "batch",
                "no batch selected: call set_batch first",
            ));
        }
        Ok(())
    }

    /// The gradient of the current batch's mean loss by `method`.
    pub fn gradient_of(&self, method: GradMethod) -> Result<Vec<f64>> {
        self.check_batch()?;
        let (spec, params, x, labels) = (&self.spec, &self.params, &self.x, &self.labels);
        Ok(match method {
            GradMethod::Backprop => backprop(
                spec,
                params,
                x,
                labels,
                &forward(spec, params, x, labels.len()),
            ),
            GradMethod::Numerical { strategy, h } => match strategy {
                PerturbStrategy::Full => numerical_full(spec, params, x, labels, h),
                PerturbStrategy::Incremental => numerical_incremental(spec, params, x, labels, h),
            },
        })
    }
}

/// Loss and correct count over `rows` of `data`.
fn evaluate_rows(spec: &MlpSpec, params: &[f64], data: &Dataset, rows: &[u32]) -> (f64, usize) {
    let mut x = vec![0.0; rows.len() * data.input_width()];
    data.fill_batch_f64(rows, &mut x);
    let pass = forward(spec, params, &x, rows.len());
    let mut loss = 0.0;
    let mut correct = 0;
    for (p, &r) in pass.probs.chunks(spec.classes).zip(rows) {
        let t = data.label(r as usize);
        loss += cross_entropy(p, t);
        if crate::math::argmax(p) == t as usize {
            correct += 1;
        }
    }
    (loss, correct)
}

impl Backend for ReferenceBackend {
    fn name(&self) -> String {
        "cpu f64 reference".to_string()
    }

    fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    fn set_params(&mut self, params: &Params) -> Result<()> {
        crate::backend::check_params_fit(&self.spec, params)?;
        self.params.clone_from(&params.data);
        Ok(())
    }

    fn params(&mut self) -> Result<Params> {
        Params::from_vec(&self.spec, self.params.clone())
    }

    fn set_batch(&mut self, indices: &[u32]) -> Result<()> {
        let n = self.data.train.len();
        if indices.is_empty() {
            return Err(Error::config(
                "--batch",
                "the batch is empty; use --batch 1 or more",
            ));
        }
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= n) {
            return Err(Error::config(
                "batch",
                format!("index {bad} is outside the training set of {n}"),
            ));
        }
        self.x = vec![0.0; indices.len() * self.data.train.input_width()];
        self.data.train.fill_batch_f64(indices, &mut self.x);
        self.labels = self.data.train.labels_of(indices);
        Ok(())
    }

    fn batch_loss(&mut self) -> Result<f64> {
        self.check_batch()?;
        Ok(mean_loss(&self.spec, &self.params, &self.x, &self.labels))
    }

    fn gradient(&mut self, method: GradMethod) -> Result<Vec<f64>> {
        self.gradient_of(method)
    }

    fn step(&mut self, method: GradMethod, lr: f64) -> Result<()> {
        let grad = self.gradient_of(method)?;
        for (p, g) in self.params.iter_mut().zip(grad) {
            *p -= lr * g;
        }
        Ok(())
    }

    fn evaluate(&mut self, split: Split) -> Result<Evaluation> {
        let data = match split {
            Split::Train => &self.data.train,
            Split::Test => &self.data.test,
        };
        let all: Vec<u32> = (0..data.len() as u32).collect();
        let (spec, params) = (&self.spec, &self.params);
        let parts: Vec<(f64, usize)> = all
            .par_chunks(EVAL_ROWS_PER_TASK)
            .map(|rows| evaluate_rows(spec, params, data, rows))
            .collect();
        Ok(Evaluation {
            loss: parts.iter().map(|p| p.0).sum::<f64>() / data.len().max(1) as f64,
            correct: parts.iter().map(|p| p.1).sum(),
            count: data.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::relative_error;
    use crate::tolerance::{F64_BACKPROP_VS_NUMERICAL, F64_FULL_VS_INCREMENTAL};
    use rand::{Rng, SeedableRng};

    /// Random nets large enough that the activations are far from linear, on inputs with many
    /// exact zeros (as MNIST's pixels): the reference's three gradients agree with each other.
    #[test]
    fn full_incremental_and_backprop_agree_on_random_nets() {
        let (mut worst_inc, mut worst_bp) = (0.0f64, 0.0f64);
        for seed in 0..3 {
            for hidden in [vec![9], vec![8, 5], vec![6, 5, 4]] {
                for act in [Activation::Sigmoid, Activation::Relu] {
                    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
                    let spec = MlpSpec::new(23, hidden.clone(), 7, act).unwrap();
                    let params: Vec<f64> = (0..spec.num_params())
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect();
                    let x: Vec<f64> = (0..11 * spec.input)
                        .map(|_| {
                            if rng.random_bool(0.7) {
                                0.0
                            } else {
                                rng.random_range(0.0..1.0)
                            }
                        })
                        .collect();
                    let labels: Vec<u8> = (0..11).map(|_| rng.random_range(0..7u8)).collect();
                    let h = crate::backend::DEFAULT_H;
                    let full = numerical_full(&spec, &params, &x, &labels, h);
                    let inc = numerical_incremental(&spec, &params, &x, &labels, h);
                    let pass = forward(&spec, &params, &x, labels.len());
                    let bp = backprop(&spec, &params, &x, &labels, &pass);
                    let (rel_inc, rel_bp) =
                        (relative_error(&inc, &full), relative_error(&bp, &full));
                    worst_inc = worst_inc.max(rel_inc);
                    worst_bp = worst_bp.max(rel_bp);
                    let what = format!("seed {seed} {}", spec.describe());
                    assert!(rel_inc <= F64_FULL_VS_INCREMENTAL, "{what}: {rel_inc:e}");
                    assert!(rel_bp <= F64_BACKPROP_VS_NUMERICAL, "{what}: {rel_bp:e}");
                }
            }
        }
        println!("reference on random nets: incremental vs full {worst_inc:.2e}, backprop vs full {worst_bp:.2e}");
    }

    #[test]
    fn softmax_and_cross_entropy_are_the_chapters() {
        let p = softmax(&[1010.0, 1000.0, 990.0]);
        assert!((p[0] - 0.999_954_600_070_331).abs() < 1e-15, "{p:?}");
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        // The chapter's worked value: y = [0.1, 0.05, 0.6, 0, 0.05, 0.1, 0, 0.1, 0, 0], t = 2.
        let y = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0];
        assert!((cross_entropy(&y, 2) - 0.510_825_457_099_338_1).abs() < 1e-15);
    }
}
