//! The CPU backend: the f64 reference every other path is checked against, and the honest
//! multi-threaded f32 path. Each module is the CPU twin of the GPU kernel family of the same name.

pub mod accuracy;
pub mod activation;
pub mod backprop;
pub mod cross_entropy;
pub mod forward;
pub mod matmul;
pub mod numerical;
pub mod real;
pub mod sgd;
pub mod softmax;
pub mod sparse;

use crate::backend::{Backend, Evaluation, GradMethod, PerturbStrategy, Split};
use crate::data::{Dataset, Mnist};
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Params};
use forward::{forward, forward_with, ForwardCache};
use rayon::prelude::*;
pub use real::Real;
use sparse::{SparseRows, SPARSE_MAX_DENSITY};
use std::sync::Arc;

/// Rows per chunk when evaluating a whole split: bounds the activations' memory.
const EVAL_ROWS_PER_CHUNK: usize = 500;

/// x = pixel / 255 for the given rows of a data set: the data set's own batch fill.
pub fn fill_x<T: Real>(data: &Dataset, indices: &[u32], out: &mut Vec<T>) {
    out.clear();
    out.resize(indices.len() * data.input_width(), T::ZERO);
    data.fill_batch_with(indices, out, T::PIXEL);
}

pub struct CpuBackend<T: Real> {
    spec: MlpSpec,
    data: Arc<Mnist>,
    params: Vec<T>,
    indices: Vec<u32>,
    /// The batch as dense rows, filled on first use (`x_ready`): a backprop step on a sparse
    /// batch never needs it.
    x: Vec<T>,
    x_ready: bool,
    labels: Vec<u8>,
    /// The non-zero entries of the batch, used when it is sparse enough for the first layer's
    /// products to skip the zeros (`sparse_used`).
    sparse: SparseRows<T>,
    sparse_used: bool,
    /// The last step's gradient, kept for its allocation.
    grad_buf: Vec<T>,
    /// The forward pass of the current batch at the current parameters, when computed.
    cache: Option<ForwardCache<T>>,
}

impl<T: Real> CpuBackend<T> {
    pub fn new(spec: MlpSpec, data: Arc<Mnist>) -> Result<Self> {
        crate::backend::check_spec_fits(&spec, &data)?;
        let params = vec![T::ZERO; spec.num_params()];
        Ok(CpuBackend {
            spec,
            data,
            params,
            indices: Vec::new(),
            x: Vec::new(),
            x_ready: false,
            labels: Vec::new(),
            sparse: SparseRows::default(),
            sparse_used: false,
            grad_buf: Vec::new(),
            cache: None,
        })
    }

    fn cache(&mut self) -> Result<&ForwardCache<T>> {
        if self.indices.is_empty() {
            return Err(Error::config(
                "batch",
                "no batch selected: call set_batch first",
            ));
        }
        if self.cache.is_none() {
            if !self.sparse_used {
                self.dense_x();
            }
            let sparse = self.sparse_used.then_some(&self.sparse);
            self.cache = Some(forward_with(
                &self.spec,
                &self.params,
                &self.x,
                self.indices.len(),
                sparse,
            ));
        }
        Ok(self.cache.as_ref().expect("set just above"))
    }

    fn dense_x(&mut self) {
        if !self.x_ready {
            fill_x(&self.data.train, &self.indices, &mut self.x);
            self.x_ready = true;
        }
    }

    /// The gradient in the backend's own precision.
    pub fn gradient_native(&mut self, method: GradMethod) -> Result<Vec<T>> {
        let mut grad = Vec::new();
        self.gradient_into(method, &mut grad)?;
        Ok(grad)
    }

    /// The gradient into `grad` (backprop reuses its allocation; a training step would
    /// otherwise map and fault in a fresh buffer of every parameter each time).
    fn gradient_into(&mut self, method: GradMethod, grad: &mut Vec<T>) -> Result<()> {
        self.cache()?;
        if !(method == GradMethod::Backprop && self.sparse_used) {
            self.dense_x();
        }
        let cache = self.cache.as_ref().expect("computed by cache()");
        let batch = self.indices.len();
        match method {
            GradMethod::Backprop => backprop::backprop_into(
                &self.spec,
                &self.params,
                &self.x,
                cache,
                &self.labels,
                batch,
                self.sparse_used.then_some(&self.sparse),
                grad,
            ),
            GradMethod::Numerical { strategy, h } => {
                let h = T::from_f64(h);
                *grad = match strategy {
                    PerturbStrategy::Full => numerical::numerical_gradient_full(
                        &self.spec,
                        &self.params,
                        &self.x,
                        &self.labels,
                        batch,
                        h,
                    ),
                    PerturbStrategy::Incremental => numerical::numerical_gradient_incremental(
                        &self.spec,
                        &self.params,
                        &self.x,
                        &self.labels,
                        cache,
                        h,
                    ),
                }
            }
        }
        Ok(())
    }
}

impl<T: Real> Backend for CpuBackend<T> {
    fn name(&self) -> String {
        format!("cpu {} ({} threads)", T::NAME, rayon::current_num_threads())
    }

    fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    fn set_params(&mut self, params: &Params) -> Result<()> {
        crate::backend::check_params_fit(&self.spec, params)?;
        self.params = params.data.iter().map(|&v| T::from_f64(v)).collect();
        self.cache = None;
        Ok(())
    }

    fn params(&mut self) -> Result<Params> {
        Params::from_vec(&self.spec, self.params.iter().map(|v| v.to_f64()).collect())
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
        self.indices.clear();
        self.indices.extend_from_slice(indices);
        self.x_ready = false;
        match self.data.train.nonzero_pixels() {
            Some(index) => {
                self.sparse.fill_from_index(index, indices);
                self.sparse_used = self.sparse.density() <= SPARSE_MAX_DENSITY;
            }
            None => self.sparse_used = false,
        }
        self.labels = indices
            .iter()
            .map(|&i| self.data.train.label(i as usize))
            .collect();
        self.cache = None;
        Ok(())
    }

    fn batch_loss(&mut self) -> Result<f64> {
        let classes = self.spec.classes;
        let labels = self.labels.clone();
        let cache = self.cache()?;
        Ok(cross_entropy::mean(&cross_entropy::cross_entropy_labels(
            &cache.probs,
            &labels,
            classes,
        )))
    }

    fn gradient(&mut self, method: GradMethod) -> Result<Vec<f64>> {
        Ok(self
            .gradient_native(method)?
            .iter()
            .map(|v| v.to_f64())
            .collect())
    }

    fn step(&mut self, method: GradMethod, lr: f64) -> Result<()> {
        let mut grad = std::mem::take(&mut self.grad_buf);
        self.gradient_into(method, &mut grad)?;
        sgd::sgd(&mut self.params, &grad, T::from_f64(lr));
        self.grad_buf = grad;
        self.cache = None;
        Ok(())
    }

    fn evaluate(&mut self, split: Split) -> Result<Evaluation> {
        let data = match split {
            Split::Train => &self.data.train,
            Split::Test => &self.data.test,
        };
        let (spec, params) = (&self.spec, &self.params);
        let all: Vec<u32> = (0..data.len() as u32).collect();
        let parts: Vec<(f64, usize)> = all
            .par_chunks(EVAL_ROWS_PER_CHUNK)
            .map(|rows| {
                let mut x = Vec::new();
                fill_x(data, rows, &mut x);
                let labels: Vec<u8> = rows.iter().map(|&i| data.label(i as usize)).collect();
                let cache = forward(spec, params, &x, rows.len());
                let losses =
                    cross_entropy::cross_entropy_labels(&cache.probs, &labels, spec.classes);
                let loss: f64 = losses.iter().map(|v| v.to_f64()).sum();
                (
                    loss,
                    accuracy::correct_count(&cache.probs, &labels, spec.classes),
                )
            })
            .collect();
        let loss: f64 = parts.iter().map(|p| p.0).sum();
        let correct = parts.iter().map(|p| p.1).sum();
        Ok(Evaluation {
            loss: loss / data.len().max(1) as f64,
            correct,
            count: data.len(),
        })
    }
}

/// What `gpu-train eval` prints: loss, accuracy, the confusion matrix and per-class accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfusionReport {
    pub loss: f64,
    pub correct: usize,
    pub count: usize,
    /// `matrix[true][predicted]`
    pub matrix: Vec<Vec<usize>>,
}

impl ConfusionReport {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count.max(1) as f64
    }

    /// Recall per true class: the diagonal over the row sums.
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        self.matrix
            .iter()
            .enumerate()
            .map(|(k, row)| row[k] as f64 / row.iter().sum::<usize>().max(1) as f64)
            .collect()
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "loss {:.4} | accuracy {:.4} ({} of {})\n",
            self.loss,
            self.accuracy(),
            self.correct,
            self.count
        );
        s += "confusion matrix (rows: true class, columns: predicted)\n      ";
        for k in 0..self.matrix.len() {
            s += &format!("{k:>6}");
        }
        s += "\n";
        for (k, row) in self.matrix.iter().enumerate() {
            s += &format!("{k:>6}");
            for v in row {
                s += &format!("{v:>6}");
            }
            s += "\n";
        }
        s += "per-class accuracy\n";
        for (k, a) in self.per_class_accuracy().iter().enumerate() {
            s += &format!("  {k}: {a:.4}\n");
        }
        s
    }
}

/// Evaluates `params` on every row of `data` (f32, in parallel chunks) into a confusion report.
pub fn confusion(spec: &MlpSpec, params: &Params, data: &Dataset) -> ConfusionReport {
    let p: Vec<f32> = params.to_f32();
    let classes = spec.classes;
    let all: Vec<u32> = (0..data.len() as u32).collect();
    let parts: Vec<(f64, Vec<Vec<usize>>)> = all
        .par_chunks(EVAL_ROWS_PER_CHUNK)
        .map(|rows| {
            let mut x = Vec::new();
            fill_x::<f32>(data, rows, &mut x);
            let labels: Vec<u8> = rows.iter().map(|&i| data.label(i as usize)).collect();
            let cache = forward(spec, &p, &x, rows.len());
            let loss = cross_entropy::cross_entropy_labels(&cache.probs, &labels, classes)
                .iter()
                .map(|&v| v as f64)
                .sum();
            let mut m = vec![vec![0usize; classes]; classes];
            for (b, &t) in labels.iter().enumerate() {
                let row = &cache.probs[b * classes..(b + 1) * classes];
                m[t as usize][crate::math::argmax(row)] += 1;
            }
            (loss, m)
        })
        .collect();
    let mut matrix = vec![vec![0usize; classes]; classes];
    let mut loss = 0.0;
    for (l, m) in parts {
        loss += l;
        for (row, mrow) in matrix.iter_mut().zip(m) {
            for (a, b) in row.iter_mut().zip(mrow) {
                *a += b;
            }
        }
    }
    let correct = (0..classes).map(|k| matrix[k][k]).sum();
    ConfusionReport {
        loss: loss / data.len().max(1) as f64,
        correct,
        count: data.len(),
        matrix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dense batch and the sparse rows take x = pixel / 255 from the data set's one table,
    /// in both precisions: the same bits as `Dataset::fill_batch_f32` / `_f64`.
    #[test]
    fn every_cpu_batch_scales_pixels_as_the_data_set_does() {
        let mnist = crate::data::embedded().unwrap();
        let (data, rows) = (&mnist.train, [0u32, 5, 7]);
        let width = data.input_width();
        let mut want = vec![0.0; rows.len() * width];
        data.fill_batch_f64(&rows, &mut want);
        let mut dense = Vec::new();
        fill_x::<f64>(data, &rows, &mut dense);
        assert_eq!(dense, want);
        let mut want32 = vec![0.0f32; rows.len() * width];
        data.fill_batch_f32(&rows, &mut want32);
        let mut dense32 = Vec::new();
        fill_x::<f32>(data, &rows, &mut dense32);
        assert_eq!(dense32, want32);
        let mut sparse = SparseRows::<f64>::default();
        sparse.fill_from_index(data.nonzero_pixels().unwrap(), &rows);
        for r in 0..rows.len() {
            let (a, b) = (sparse.starts[r], sparse.starts[r + 1]);
            let row = &want[r * width..(r + 1) * width];
            assert_eq!(b - a, row.iter().filter(|&&v| v != 0.0).count());
            for (&c, &v) in sparse.cols[a..b].iter().zip(&sparse.vals[a..b]) {
                assert_eq!(v, row[c as usize]);
            }
        }
    }
}
