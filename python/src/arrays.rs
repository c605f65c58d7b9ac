//! NumPy arrays in, checked: every shape and dtype is looked at before anything is allocated
//! from it, and every error is a `ValueError` that names the argument, the shape or dtype given
//! and the one expected.

use gpu_train::model::MlpSpec;
use numpy::{
    PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// `(784, 50)`, as NumPy prints a shape.
pub fn shape_text(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn value_error(what: String) -> PyErr {
    PyValueError::new_err(what)
}

/// `obj` as a NumPy array (anything `numpy.asarray` takes: an array stays itself).
fn as_array<'py>(arg: &str, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        return Ok(a.clone());
    }
    let np = obj.py().import("numpy")?;
    let a = np
        .call_method1("asarray", (obj,))
        .map_err(|e| value_error(format!("{arg}: cannot be read as a NumPy array ({e})")))?;
    a.cast_into::<PyUntypedArray>()
        .map_err(|_| value_error(format!("{arg}: is not a NumPy array")))
}

/// The values of a real-valued array (float of any width, or integer) as f32, in logical
/// (row-major) order whatever the array's memory order or strides.
fn to_f32(arg: &str, a: &Bound<'_, PyUntypedArray>) -> PyResult<Vec<f32>> {
    let kind = a.dtype().kind();
    if !matches!(kind, b'f' | b'i' | b'u') {
        return Err(value_error(format!(
            "{arg}: dtype {}, expected a float array (float32 or float64; integers are taken as \
             their values)",
            a.dtype()
        )));
    }
    if let Ok(f) = a.cast::<PyArrayDyn<f32>>() {
        return Ok(collect(&f.readonly(), |v| v));
    }
    if let Ok(f) = a.cast::<PyArrayDyn<f64>>() {
        return Ok(collect(&f.readonly(), |v| v as f32));
    }
    // Other widths (float16, longdouble, integers): NumPy converts, exactly where it can.
    let converted = a.call_method1("astype", ("float64",))?;
    let f = converted
        .cast::<PyArrayDyn<f64>>()
        .map_err(|_| value_error(format!("{arg}: could not be converted to float64")))?;
    Ok(collect(&f.readonly(), |v| v as f32))
}

/// The values in logical order: straight from memory only when C-ordered (NumPy's
/// `as_slice` also takes Fortran order, whose memory order is not the logical one).
fn collect<T: numpy::Element + Copy>(
    a: &PyReadonlyArrayDyn<'_, T>,
    f: impl Fn(T) -> f32,
) -> Vec<f32> {
    match a.as_slice() {
        Ok(s) if a.is_c_contiguous() => s.iter().map(|&v| f(v)).collect(),
        _ => a.as_array().iter().map(|&v| f(v)).collect(),
    }
}

/// x: (rows, input) or one sample (input,); returns the values and the row count, and
/// whether x was one sample (the book's predict then returns one row).
pub fn read_x(spec: &MlpSpec, obj: &Bound<'_, PyAny>) -> PyResult<(Vec<f32>, usize, bool)> {
    let a = as_array("x", obj)?;
    let shape = a.shape().to_vec();
    let (rows, single) = match shape.as_slice() {
        [n] if *n == spec.input => (1, true),
        [rows, n] if *n == spec.input && *rows > 0 => (*rows, false),
        _ => {
            return Err(value_error(format!(
                "x: shape {}, expected (batch, {}) with batch >= 1, or ({},) for one sample",
                shape_text(&shape),
                spec.input,
                spec.input
            )))
        }
    };
    let values = to_f32("x", &a)?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        let at = if single {
            format!("x[{i}]")
        } else {
            format!("x[{}, {}]", i / spec.input, i % spec.input)
        };
        return Err(value_error(format!(
            "x: {at} is {} (not finite)",
            values[i]
        )));
    }
    Ok((values, rows, single))
}

/// t: labels (rows,) of integers, or one-hot (rows, classes) (the book's `one_hot_label`),
/// whose rows' first largest entry is the label, as the book's `argmax(axis=1)`.
pub fn read_t(
    spec: &MlpSpec,
    obj: &Bound<'_, PyAny>,
    rows: usize,
    single: bool,
) -> PyResult<Vec<u8>> {
    let a = as_array("t", obj)?;
    let shape = a.shape().to_vec();
    let classes = spec.classes;
    let one_hot = match shape.as_slice() {
        [r, c] if *r == rows && *c == classes => true,
        [c] if single && *c == classes => true,
        [r] if *r == rows => false,
        [] if rows == 1 => false,
        _ => {
            return Err(value_error(format!(
                "t: shape {}, expected ({rows},) labels or ({rows}, {classes}) one-hot rows for \
                 x of {rows} rows",
                shape_text(&shape)
            )))
        }
    };
    if one_hot {
        let v = to_f32("t", &a)?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(value_error(format!(
                "t: entry {i} of the one-hot rows is {} (not finite)",
                v[i]
            )));
        }
        return Ok(v
            .chunks(classes)
            .map(|row| gpu_train::math::argmax(row) as u8)
            .collect());
    }
    if !matches!(a.dtype().kind(), b'i' | b'u') {
        return Err(value_error(format!(
            "t: dtype {} for labels of shape {}, expected integers (or one-hot rows of shape \
             ({rows}, {classes}))",
            a.dtype(),
            shape_text(&shape)
        )));
    }
    let ints = a.call_method1("astype", ("int64",))?;
    let ints = ints
        .cast::<PyArrayDyn<i64>>()
        .map_err(|_| value_error("t: could not be converted to int64".into()))?
        .readonly();
    let view = ints.as_array();
    let mut labels = Vec::with_capacity(rows);
    for (i, &l) in view.iter().enumerate() {
        if l < 0 || l as u64 >= classes as u64 {
            return Err(value_error(format!(
                "t: label {l} at row {i} is outside 0..={} (the net has {classes} outputs)",
                classes - 1
            )));
        }
        labels.push(l as u8);
    }
    Ok(labels)
}

/// The tensors of `params` (a dict with W1, b1, W2, b2 in the book's shapes, any real dtype),
/// read now, as the flat f32 vector in the model's layout.
pub fn read_params(spec: &MlpSpec, params: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    let dict = params.cast::<PyDict>().map_err(|_| {
        value_error(format!(
            "params: a {}, expected a dict of W1, b1, W2, b2",
            params
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let tensors = spec.tensors();
    // Every shape first, then the values: nothing is read or allocated from a wrong one.
    let mut arrays = Vec::with_capacity(tensors.len());
    for t in &tensors {
        let arg = format!("params['{}']", t.name);
        let obj = dict.get_item(&t.name)?.ok_or_else(|| {
            value_error(format!("{arg}: missing (the dict needs W1, b1, W2, b2)"))
        })?;
        let a = as_array(&arg, &obj)?;
        if a.shape() != t.shape.as_slice() {
            return Err(value_error(format!(
                "{arg}: shape {}, expected {}",
                shape_text(a.shape()),
                shape_text(&t.shape)
            )));
        }
        arrays.push((arg, a));
    }
    let mut flat = Vec::with_capacity(spec.num_params());
    for (arg, a) in &arrays {
        let v = to_f32(arg, a)?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(value_error(format!(
                "{arg}: entry {i} (flat) is {} (not finite)",
                v[i]
            )));
        }
        flat.extend_from_slice(&v);
    }
    Ok(flat)
}
