//! `load_mnist_raw`: the library's MNIST loader (the embedded subset, or a folder of the four
//! IDX files), handed to Python as uint8 arrays; `gpu_train/book.py` shapes them as the book's
//! `load_mnist` does. It never downloads.

use numpy::ndarray::Array2;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;

/// {"train_images": (N, rows*cols) uint8, "train_labels": (N,) uint8, "test_images",
/// "test_labels", "rows", "cols", "classes", "source"} from `dir`, else `MNIST_DIR`, else the
/// embedded subset.
#[pyfunction]
#[pyo3(signature = (dir=None))]
pub fn load_mnist_raw(py: Python<'_>, dir: Option<PathBuf>) -> PyResult<Bound<'_, PyDict>> {
    let mnist = crate::engine(py, || gpu_train::data::load(dir.as_deref()))?;
    let out = PyDict::new(py);
    for (name, set) in [("train", &mnist.train), ("test", &mnist.test)] {
        let images = Array2::from_shape_vec((set.len(), set.input_width()), set.images().to_vec())
            .expect("a data set holds len x width pixels");
        out.set_item(format!("{name}_images"), images.into_pyarray(py))?;
        out.set_item(
            format!("{name}_labels"),
            set.labels().to_vec().into_pyarray(py),
        )?;
    }
    out.set_item("rows", mnist.train.rows())?;
    out.set_item("cols", mnist.train.cols())?;
    out.set_item("classes", mnist.train.classes())?;
    out.set_item("source", mnist.describe())?;
    Ok(out)
}
