//! The trained net saved and loaded as the same safetensors checkpoint the CLI writes and reads
//! (`gpu_train::checkpoint`): `gpu-train eval --weights` and `predict --weights` take a file
//! saved from Python, and a CLI run's checkpoint loads into a `TwoLayerNet`.

use crate::arrays::read_params;
use crate::net::spec_of;
use gpu_train::checkpoint::{self, Checkpoint, StoredPrecision};
use gpu_train::data::{SamplerKind, SamplerState};
use gpu_train::model::{Activation, Params};
use gpu_train::train::{PendingLoss, TrainConfig};
use numpy::ndarray::{Array, IxDyn};
use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::HashMap;
use std::path::PathBuf;

/// Writes `params` (the book's dict) of an input-hidden-output net to `path`, atomically, in
/// f64. `iteration`: the updates made (the metadata's; the chapter's settings are recorded as
/// the run's configuration, with batch 100 draws over `train_size` images).
#[pyfunction]
#[pyo3(signature = (path, params, input_size, hidden_size, output_size, iteration=0, train_size=30000))]
#[allow(clippy::too_many_arguments)]
pub fn save_checkpoint(
    py: Python<'_>,
    path: PathBuf,
    params: &Bound<'_, PyAny>,
    input_size: i64,
    hidden_size: i64,
    output_size: i64,
    iteration: u64,
    train_size: u64,
) -> PyResult<()> {
    let spec = spec_of(input_size, hidden_size, output_size)?;
    let flat = read_params_f64(&spec, params)?;
    if train_size == 0 || iteration > (1 << 40) {
        return Err(PyValueError::new_err(format!(
            "iteration {iteration} / train_size {train_size}: expected iteration <= 2^40 and \
             train_size >= 1"
        )));
    }
    let config = TrainConfig::default();
    let mut sampler = SamplerState::fresh(SamplerKind::WithReplacement, train_size as usize, 0);
    sampler.batches_drawn = iteration;
    sampler.batch_size = if iteration > 0 { config.batch } else { 0 };
    let notes = HashMap::from([("written by".to_string(), "gpu_train (Python)".to_string())]);
    crate::engine(py, move || {
        let ckpt = Checkpoint {
            params: Params::from_vec(&spec, flat)?,
            iteration: iteration as usize,
            sampler,
            config,
            pending: PendingLoss::default(),
            notes,
        };
        checkpoint::save(&path, &ckpt, StoredPrecision::F64)
    })
}

/// The parameters as f64 (the dict's own precision), through the same checks as every call.
fn read_params_f64(
    spec: &gpu_train::model::MlpSpec,
    params: &Bound<'_, PyAny>,
) -> PyResult<Vec<f64>> {
    // Shapes, dtypes and finiteness checked as for a call; then the f64 values themselves.
    read_params(spec, params)?;
    let dict = params.cast::<PyDict>()?;
    let np = params.py().import("numpy")?;
    let mut flat = Vec::with_capacity(spec.num_params());
    for t in spec.tensors() {
        let a = np.call_method1("ascontiguousarray", (dict.get_item(&t.name)?, "float64"))?;
        let a = a.cast::<numpy::PyArrayDyn<f64>>()?.readonly();
        flat.extend(a.as_array().iter().copied());
    }
    Ok(flat)
}

/// (params dict of float64 arrays, input, hidden, output, iteration) from a checkpoint of a
/// one-hidden-layer sigmoid net (the book's TwoLayerNet).
#[pyfunction]
pub fn load_checkpoint(
    py: Python<'_>,
    path: PathBuf,
) -> PyResult<(Bound<'_, PyDict>, usize, usize, usize, usize)> {
    let shown = path.display().to_string();
    let ckpt = crate::engine(py, move || checkpoint::load(&path))?;
    let spec = &ckpt.params.spec;
    if spec.hidden.len() != 1 || spec.activation != Activation::Sigmoid {
        return Err(PyValueError::new_err(format!(
            "{shown}: holds a {} net; TwoLayerNet is one sigmoid hidden layer",
            spec.describe()
        )));
    }
    let out = PyDict::new(py);
    for t in spec.tensors() {
        let values = ckpt.params.data[t.offset..t.offset + t.len].to_vec();
        let a = Array::from_shape_vec(IxDyn(&t.shape), values)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        out.set_item(&t.name, a.into_pyarray(py))?;
    }
    Ok((
        out,
        spec.input,
        spec.hidden[0],
        spec.classes,
        ckpt.iteration,
    ))
}
