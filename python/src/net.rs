//! `Engine`: one net's engine (its spec and device), shared by the calls of a `TwoLayerNet`.
//! Parameters and batches are read from Python at every call, so an in-place edit of the
//! caller's dict is always seen; the device is made once, at construction, and kept.

use crate::arrays::{read_params, read_t, read_x};
use gpu_train::backend::{GradMethod, PerturbStrategy, DEFAULT_H};
use gpu_train::host::{HostBatch, HostNet};
use gpu_train::model::{Activation, MlpSpec, Params};
use numpy::ndarray::{Array, IxDyn};
use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::{Mutex, MutexGuard};

/// The most parameters a net from Python may have (1 GiB of f64 in the caller's dict).
const MAX_PARAMS: u64 = 1 << 27;

/// A size argument: an integer in 1..=max.
fn size(arg: &str, v: i64, min: i64, max: i64) -> PyResult<usize> {
    if v < min || v > max {
        return Err(PyValueError::new_err(format!(
            "{arg}: {v}, expected an integer in {min}..={max}"
        )));
    }
    Ok(v as usize)
}

/// The spec of the book's TwoLayerNet(input_size, hidden_size, output_size), every size
/// checked (and the parameter count bounded) before anything is sized from them.
pub(crate) fn spec_of(input: i64, hidden: i64, output: i64) -> PyResult<MlpSpec> {
    let input = size("input_size", input, 1, 1 << 24)?;
    let hidden = size("hidden_size", hidden, 1, 1 << 24)?;
    // Labels are bytes in the engine; softmax needs two outputs.
    let output = size("output_size", output, 2, 256)?;
    let params = (input as u64 + 1) * hidden as u64 + (hidden as u64 + 1) * output as u64;
    if params > MAX_PARAMS {
        return Err(PyValueError::new_err(format!(
            "a {input}-{hidden}-{output} net has {params} parameters; at most {MAX_PARAMS} are \
             supported"
        )));
    }
    MlpSpec::new(input, vec![hidden], output, Activation::Sigmoid).map_err(crate::to_py)
}

/// The engine of one net: its spec, its device (made once) and the last call's engine time.
#[pyclass(frozen, module = "gpu_train._native")]
pub struct Engine {
    spec: MlpSpec,
    /// One call at a time on the device; the GIL is released while it is held.
    net: Mutex<HostNet>,
    device: String,
    reason: String,
}

impl Engine {
    fn lock(&self) -> MutexGuard<'_, HostNet> {
        // A panic inside a call is caught and raised; the net holds no state it could have
        // left half-written (parameters and batches come with each call), so go on using it.
        self.net.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The gradient dict {W1, b1, W2, b2} of float64 arrays from the engine's flat vector.
    fn grad_dict<'py>(&self, py: Python<'py>, flat: Vec<f32>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for t in self.spec.tensors() {
            let values: Vec<f64> = flat[t.offset..t.offset + t.len]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let a = Array::from_shape_vec(IxDyn(&t.shape), values)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            out.set_item(&t.name, a.into_pyarray(py))?;
        }
        Ok(out)
    }

    fn run_gradient<'py>(
        &self,
        py: Python<'py>,
        params: &Bound<'py, PyAny>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        method: GradMethod,
    ) -> PyResult<Bound<'py, PyDict>> {
        let p = read_params(&self.spec, params)?;
        let (x, rows, single) = read_x(&self.spec, x)?;
        let labels = read_t(&self.spec, t, rows, single)?;
        let grad = crate::engine(py, || {
            let batch = HostBatch {
                x: &x,
                rows,
                labels: &labels,
            };
            self.lock().gradient(&p, &batch, method)
        })?;
        self.grad_dict(py, grad)
    }
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (input_size, hidden_size, output_size, device="auto"))]
    fn new(
        py: Python<'_>,
        input_size: i64,
        hidden_size: i64,
        output_size: i64,
        device: &str,
    ) -> PyResult<Self> {
        let spec = spec_of(input_size, hidden_size, output_size)?;
        let (net, reason) = match device {
            "cpu" => (HostNet::cpu(spec.clone()), "device=\"cpu\"".to_string()),
            // Both open the process's device once (it is kept, with its kernels, for every
            // later net), with the GIL released: that takes seconds on a software adapter.
            "auto" => {
                let (net, why) = py.detach(|| HostNet::auto(spec.clone()));
                let why = why.replace("--device gpu", "device=\"gpu\"");
                (net, format!("device=\"auto\": {why}"))
            }
            "gpu" => {
                let net = crate::engine(py, || HostNet::on_process_gpu(spec.clone()))?;
                (net, "device=\"gpu\"".to_string())
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "device: {other:?}, expected \"auto\", \"cpu\" or \"gpu\""
                )))
            }
        };
        let name = net.device_name();
        Ok(Engine {
            spec,
            net: Mutex::new(net),
            device: name,
            reason,
        })
    }

    /// The device the engine computes on, e.g. "cpu f32 (2 threads)".
    #[getter]
    fn device(&self) -> String {
        self.device.clone()
    }

    /// Why this device: the choice `device="auto"` made, or the argument.
    #[getter]
    fn device_reason(&self) -> String {
        self.reason.clone()
    }

    /// Seconds the engine itself spent on the last call (after the checks and conversions).
    #[getter]
    fn last_engine_seconds(&self) -> f64 {
        self.lock().last_seconds()
    }

    /// The chapter's initial parameters from the engine's seeded generator (the CLI's
    /// `--seed`): weights `weight_init_std` x N(0, 1), biases zero, as float64 arrays.
    fn init_params<'py>(
        &self,
        py: Python<'py>,
        weight_init_std: f64,
        seed: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        if !(weight_init_std.is_finite() && weight_init_std >= 0.0) {
            return Err(PyValueError::new_err(format!(
                "weight_init_std: {weight_init_std}, expected a finite number >= 0"
            )));
        }
        let p = Params::init(&self.spec, seed);
        let scale = weight_init_std / gpu_train::model::WEIGHT_INIT_STD;
        let out = PyDict::new(py);
        for t in self.spec.tensors() {
            let values: Vec<f64> = p.data[t.offset..t.offset + t.len]
                .iter()
                .map(|v| v * scale)
                .collect();
            let a = Array::from_shape_vec(IxDyn(&t.shape), values)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            out.set_item(&t.name, a.into_pyarray(py))?;
        }
        Ok(out)
    }

    /// softmax(net(x)) as float64: (batch, output), or (output,) for one sample.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        params: &Bound<'py, PyAny>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let p = read_params(&self.spec, params)?;
        let (x, rows, single) = read_x(&self.spec, x)?;
        let probs = crate::engine(py, || {
            let batch = HostBatch {
                x: &x,
                rows,
                labels: &[],
            };
            self.lock().predict(&p, &batch)
        })?;
        let probs: Vec<f64> = probs.into_iter().map(f64::from).collect();
        let classes = self.spec.classes;
        let a = numpy::PyArray1::from_vec(py, probs);
        Ok(if single {
            a.into_any()
        } else {
            a.reshape([rows, classes])?.into_any()
        })
    }

    /// The mean cross entropy, -ln(p_t + 1e-7) averaged over the batch.
    fn loss(
        &self,
        py: Python<'_>,
        params: &Bound<'_, PyAny>,
        x: &Bound<'_, PyAny>,
        t: &Bound<'_, PyAny>,
    ) -> PyResult<f64> {
        let p = read_params(&self.spec, params)?;
        let (x, rows, single) = read_x(&self.spec, x)?;
        let labels = read_t(&self.spec, t, rows, single)?;
        crate::engine(py, || {
            let batch = HostBatch {
                x: &x,
                rows,
                labels: &labels,
            };
            self.lock().loss(&p, &batch)
        })
    }

    /// (rows whose argmax is the label, rows).
    fn correct(
        &self,
        py: Python<'_>,
        params: &Bound<'_, PyAny>,
        x: &Bound<'_, PyAny>,
        t: &Bound<'_, PyAny>,
    ) -> PyResult<(usize, usize)> {
        let p = read_params(&self.spec, params)?;
        let (x, rows, single) = read_x(&self.spec, x)?;
        let labels = read_t(&self.spec, t, rows, single)?;
        let n = crate::engine(py, || {
            let batch = HostBatch {
                x: &x,
                rows,
                labels: &labels,
            };
            self.lock().correct(&p, &batch)
        })?;
        Ok((n, rows))
    }

    /// The numerical gradient (the engine's `incremental` strategy, step h) as a dict.
    #[pyo3(signature = (params, x, t, h=DEFAULT_H))]
    fn numerical_gradient<'py>(
        &self,
        py: Python<'py>,
        params: &Bound<'py, PyAny>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        h: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let method = GradMethod::Numerical {
            strategy: PerturbStrategy::Incremental,
            h,
        };
        self.run_gradient(py, params, x, t, method)
    }

    /// The backprop gradient as a dict.
    fn gradient<'py>(
        &self,
        py: Python<'py>,
        params: &Bound<'py, PyAny>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.run_gradient(py, params, x, t, GradMethod::Backprop)
    }
}
