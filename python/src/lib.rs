//! `gpu_train._native`: the Python package's bindings over the gpu-train library. A front end,
//! like the CLI: it checks what Python hands it, converts it, runs the engine with the GIL
//! released and turns every error, and every panic, into a Python exception. The training loop
//! is the caller's; `gpu_train/book.py` is the book-shaped class over these.

mod arrays;
mod ckpt;
mod data;
mod net;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The library's error as the Python exception a caller expects: a bad argument is a
/// `ValueError`, a file that cannot be read an `OSError`, the rest a `RuntimeError`.
pub(crate) fn to_py(e: gpu_train::Error) -> PyErr {
    use gpu_train::Error;
    let text = e.to_string();
    match e {
        Error::Config { .. } => PyValueError::new_err(text),
        Error::Data { .. } | Error::Io { .. } | Error::Checkpoint { .. } => {
            PyOSError::new_err(text)
        }
        _ => PyRuntimeError::new_err(text),
    }
}

/// Runs `f` with the GIL released, a panic inside it caught and raised as a `RuntimeError`
/// (never an abort, never a `PanicException` that `except Exception` would miss).
pub(crate) fn engine<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> gpu_train::Result<T> + Send,
) -> PyResult<T> {
    let out = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    match out {
        Ok(r) => r.map_err(to_py),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(PyRuntimeError::new_err(format!(
                "the gpu-train engine failed (a bug: please report it): {what}"
            )))
        }
    }
}

/// Panics inside the engine wrapper, for the test that no panic crosses into Python.
#[pyfunction]
fn _panic_for_tests(py: Python<'_>) -> PyResult<()> {
    engine(py, || -> gpu_train::Result<()> {
        panic!("a deliberate panic")
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<net::Engine>()?;
    m.add_function(wrap_pyfunction!(data::load_mnist_raw, m)?)?;
    m.add_function(wrap_pyfunction!(ckpt::save_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(ckpt::load_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
