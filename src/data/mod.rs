//! MNIST data: the IDX reader, the in-memory [`Dataset`], where the data comes from
//! ([`load`]), the class count and names (`classes.rs`, see [`check_class_labels`]) and
//! mini-batch [`sampler`]s.
//!
//! By default the program trains on an embedded subset (the first 30,000 training and first
//! 5,000 test images of MNIST, about 5.6 MB of gzip compiled into the binary from
//! `src/data/mnist-subset/`), so it runs with no download and no network. The full set is used when
//! a directory is given (`--data DIR`) or `MNIST_DIR` is set.

mod classes;
pub mod idx;
mod nonzero;
pub mod sampler;

use std::fmt;
use std::sync::{Arc, OnceLock};

pub use nonzero::NonZeroPixels;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use classes::first_bad_label;
pub use classes::{
    check_class_labels, check_class_names, class_name, read_class_names, ClassCheck, ClassCount,
    CLASS_NAMES_FILE, MAX_CLASS_NAME_CHARS,
};
pub use idx::{read_images, read_labels, IdxImages};
pub use sampler::{Sampler, SamplerKind, SamplerState};

/// Number of MNIST classes (the digits 0 to 9).
pub const MNIST_CLASSES: usize = 10;

/// The environment variable that points at a directory of full MNIST files.
pub const MNIST_DIR_ENV: &str = "MNIST_DIR";

/// The canonical MNIST file names, each accepted with or without `.gz`.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// What every "where is MNIST" error ends with.
const HOW_TO_POINT: &str = "point `--data DIR` or the MNIST_DIR environment variable at a \
    directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte, \
    t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz), or give neither to \
    use the embedded subset";

/// The prefix of an embedded data set's [`Dataset::source`].
const EMBEDDED_PREFIX: &str = "embedded:src/data/mnist-subset/";

/// The embedded subset's files, compiled in so that the binary never reads them at run time.
const EMBEDDED_TRAIN_IMAGES: &[u8] = include_bytes!("mnist-subset/train-images-idx3-ubyte.gz");
const EMBEDDED_TRAIN_LABELS: &[u8] = include_bytes!("mnist-subset/train-labels-idx1-ubyte.gz");
const EMBEDDED_TEST_IMAGES: &[u8] = include_bytes!("mnist-subset/t10k-images-idx3-ubyte.gz");
const EMBEDDED_TEST_LABELS: &[u8] = include_bytes!("mnist-subset/t10k-labels-idx1-ubyte.gz");

/// `i / 255` for every byte value, as `f32` and `f64`: the book's `x / 255.0` normalisation,
/// bit-for-bit (computed once, by correctly rounded division, at compile time).
pub const PIXEL_F32: [f32; 256] = {
    let mut table = [0.0f32; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = i as f32 / 255.0;
        i += 1;
    }
    table
};
pub const PIXEL_F64: [f64; 256] = {
    let mut table = [0.0f64; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = i as f64 / 255.0;
        i += 1;
    }
    table
};

/// Labelled images held as bytes: pixels 0..=255, row-major, one image after another, and one
/// label per image. Kept as `u8` (a quarter of `f32`) and converted per batch, which is cheap
/// next to a training step.
#[derive(Clone)]
pub struct Dataset {
    images: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
    classes: usize,
    source: String,
    /// `nonzero_pixels`, built on first use (None inside: images too wide to index).
    nonzero: Arc<OnceLock<Option<NonZeroPixels>>>,
}

// By content: the index is derived from the pixels, built or not.
impl PartialEq for Dataset {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.images,
            &self.labels,
            self.rows,
            self.cols,
            self.classes,
            &self.source,
        ) == (
            &other.images,
            &other.labels,
            other.rows,
            other.cols,
            other.classes,
            &other.source,
        )
    }
}

impl Eq for Dataset {}

impl fmt::Debug for Dataset {
    // Summarised: the derived form would print every pixel.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("len", &self.len())
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("classes", &self.classes)
            .field("source", &self.source)
            .finish()
    }
}

impl Dataset {
    /// Builds a data set, checking that the parts agree: `images` holds exactly one
    /// `rows x cols` image per label and every label is below `classes`. `source` says where
    /// the data came from; errors name it.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u8>,
        rows: usize,
        cols: usize,
        classes: usize,
        source: impl Into<String>,
    ) -> Result<Dataset> {
        let source = source.into();
        let fail = |what: String| Err(Error::data(PathBuf::from(&source), what));
        if rows == 0 || cols == 0 {
            return fail(format!(
                "images of {rows}x{cols} pixels; each needs at least one row and column"
            ));
        }
        if classes == 0 || classes > 256 {
            return fail(format!(
                "{classes} classes; labels are bytes, so 1 to 256 classes"
            ));
        }
        let width = rows * cols;
        if images.len() != labels.len().saturating_mul(width) {
            return fail(format!(
                "{} bytes of pixels do not make {} images of {rows}x{cols} (one per label, {} bytes)",
                images.len(),
                labels.len(),
                labels.len().saturating_mul(width)
            ));
        }
        if let Some((index, label)) = first_bad_label(&labels, classes) {
            return fail(format!(
                "label {label} at index {index} is out of range: there are {classes} classes \
                 (0..={}); the labels are corrupt or for another data set",
                classes - 1
            ));
        }
        Ok(Dataset {
            images,
            labels,
            rows,
            cols,
            classes,
            source,
            nonzero: Arc::new(OnceLock::new()),
        })
    }

    /// Number of images (and labels).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Inputs per image, `rows * cols` (784 for MNIST, but read from the data, never assumed).
    pub fn input_width(&self) -> usize {
        self.rows * self.cols
    }

    /// Number of classes; every label is below it.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The non-zero pixels of every image (3 bytes each), indexed on the first call and shared
    /// by every clone of this data set; None when an image is too wide for u16 columns.
    pub fn nonzero_pixels(&self) -> Option<&NonZeroPixels> {
        self.nonzero
            .get_or_init(|| NonZeroPixels::new(self))
            .as_ref()
    }

    /// All pixels, row-major, image after image.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Where the data came from: a path, or `embedded:...` for the built-in subset.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The pixels of image `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let width = self.input_width();
        &self.images[i * width..(i + 1) * width]
    }

    /// The label of image `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// Writes the images at `indices` into `out`, one row of [`input_width`](Self::input_width)
    /// values per index, scaled to `pixel / 255` in `[0, 1]` (the book's `normalize=True`).
    ///
    /// # Panics
    /// If `out.len() != indices.len() * input_width()` or an index is out of range: both are
    /// bugs in the caller, not bad input.
    pub fn fill_batch_f32(&self, indices: &[u32], out: &mut [f32]) {
        self.fill_batch_with(indices, out, &PIXEL_F32);
    }

    /// [`fill_batch_f32`](Self::fill_batch_f32) in `f64`, for the CPU reference.
    pub fn fill_batch_f64(&self, indices: &[u32], out: &mut [f64]) {
        self.fill_batch_with(indices, out, &PIXEL_F64);
    }

    /// The batch fill of either precision: `table` is [`PIXEL_F32`] or [`PIXEL_F64`], the one
    /// x / 255 every CPU path uses.
    pub fn fill_batch_with<T: Copy>(&self, indices: &[u32], out: &mut [T], table: &[T; 256]) {
        let width = self.input_width();
        assert_eq!(
            out.len(),
            indices.len() * width,
            "fill_batch: output holds {} values, {} images of {width} need {}",
            out.len(),
            indices.len(),
            indices.len() * width
        );
        for (row, &index) in out.chunks_exact_mut(width).zip(indices) {
            for (x, &pixel) in row.iter_mut().zip(self.image(index as usize)) {
                *x = table[pixel as usize];
            }
        }
    }

    /// The labels at `indices`.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn labels_of(&self, indices: &[u32]) -> Vec<u8> {
        indices.iter().map(|&i| self.label(i as usize)).collect()
    }

    /// How many images each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }
}

/// MNIST's training and test sets (or any IDX set laid out like them).
#[derive(Clone, Debug)]
pub struct Mnist {
    pub train: Dataset,
    pub test: Dataset,
    /// The names of the classes in label order, from `classes.txt` beside the files; None
    /// when there is none (the labels are their own names, as MNIST's digits are).
    pub class_names: Option<Vec<String>>,
    /// A warning from [`check_class_labels`] for the front end to show (classes without a
    /// training example under a given count); the library never prints it.
    pub class_warning: Option<String>,
}

impl Mnist {
    /// Whether this is the built-in subset rather than files read from disk.
    pub fn is_embedded(&self) -> bool {
        self.train.source().starts_with(EMBEDDED_PREFIX)
    }

    /// Bytes of pixels held, training and test images together.
    pub fn pixels(&self) -> u64 {
        (self.train.images().len() as u64).saturating_add(self.test.images().len() as u64)
    }

    /// One line for the CLI, e.g. `embedded MNIST subset: 30000 train / 5000 test, 28x28` or
    /// `MNIST from /data/mnist: 60000 train / 10000 test, 28x28`.
    pub fn describe(&self) -> String {
        let sizes = format!(
            "{} train / {} test, {}x{}",
            self.train.len(),
            self.test.len(),
            self.train.rows(),
            self.train.cols()
        );
        if self.is_embedded() {
            format!("embedded MNIST subset: {sizes}")
        } else {
            let dir = Path::new(self.train.source())
                .parent()
                .unwrap_or(Path::new(""));
            format!("MNIST from {}: {sizes}", crate::fmt::path(dir))
        }
    }

    /// The classes in one line, e.g. `10 (labels 0..=9)` or `10 (T-shirt/top, Trouser, ...)`.
    pub fn describe_classes(&self) -> String {
        let n = self.train.classes();
        match &self.class_names {
            // Names are checked when read; printable() also guards a Mnist built in code.
            Some(names) => format!("{n} ({})", crate::fmt::printable(&names.join(", "))),
            None => format!("{n} (labels 0..={})", n - 1),
        }
    }

    /// The name of class `k`: its line of `classes.txt`, else the number.
    pub fn class_name(&self, k: usize) -> String {
        class_name(self.class_names.as_deref(), k)
    }
}

/// Loads MNIST from, in order of preference: `dir` when given; the directory in the
/// `MNIST_DIR` environment variable when it is set and not empty; the embedded subset.
///
/// A directory must hold the four canonical files ([`TRAIN_IMAGES`], [`TRAIN_LABELS`],
/// [`TEST_IMAGES`], [`TEST_LABELS`]), each raw or with `.gz` (the raw one is used if both are
/// there), and may hold [`CLASS_NAMES_FILE`]. Errors name the path that was looked at and say
/// how to point at MNIST. The number of classes is the largest training label + 1.
pub fn load(dir: Option<&Path>) -> Result<Mnist> {
    load_with(dir, None)
}

/// [`load`], with the number of classes given (`--classes N`, or a checkpoint's) instead of
/// taken from the training labels; every label of both parts must be below it.
pub fn load_with(dir: Option<&Path>, classes: Option<ClassCount>) -> Result<Mnist> {
    if let Some(c) = &classes {
        if !(2..=256).contains(&c.count) {
            return Err(Error::config(
                &c.origin,
                format!(
                    "{} classes; labels are bytes and softmax needs two, so 2 to 256",
                    c.count
                ),
            ));
        }
    }
    if let Some(dir) = dir {
        return load_dir(dir, "--data", classes);
    }
    match std::env::var_os(MNIST_DIR_ENV) {
        Some(dir) if !dir.is_empty() => load_dir(Path::new(&dir), MNIST_DIR_ENV, classes),
        _ => embedded_with(classes),
    }
}

/// The embedded subset: the first 30,000 training and first 5,000 test images of MNIST.
pub fn embedded() -> Result<Mnist> {
    embedded_with(None)
}

fn embedded_with(classes: Option<ClassCount>) -> Result<Mnist> {
    from_idx_bytes(
        EMBEDDED_PREFIX,
        [
            EMBEDDED_TRAIN_IMAGES,
            EMBEDDED_TRAIN_LABELS,
            EMBEDDED_TEST_IMAGES,
            EMBEDDED_TEST_LABELS,
        ],
        classes,
    )
}

/// The four canonical files (gzip-compressed, as the embedded subset is) already in memory,
/// in the order train images, train labels, test images, test labels: what the page loads over
/// HTTP. `origin` names them in errors (`origin` + the canonical name + `.gz`), so every check
/// of [`load`] holds and an error says which file is at fault.
pub fn from_idx_bytes(
    origin: &str,
    files: [&[u8]; 4],
    classes: Option<ClassCount>,
) -> Result<Mnist> {
    let part = |images_name: &str, images: &[u8], labels_name: &str, labels: &[u8]| {
        let images_name = format!("{origin}{images_name}.gz");
        let labels_name = format!("{origin}{labels_name}.gz");
        let images = idx::images_from_bytes(&images_name, images)?;
        let labels = idx::labels_from_bytes(&labels_name, labels)?;
        pair(
            images,
            PathBuf::from(images_name),
            labels,
            PathBuf::from(labels_name),
        )
    };
    let [train_images, train_labels, test_images, test_labels] = files;
    let train = part(TRAIN_IMAGES, train_images, TRAIN_LABELS, train_labels)?;
    let test = part(TEST_IMAGES, test_images, TEST_LABELS, test_labels)?;
    assemble(train, test, classes, None)
}

/// Loads the four files (and `classes.txt` when there is one) from `dir`; `origin` says where
/// the directory came from, for errors.
fn load_dir(dir: &Path, origin: &str, classes: Option<ClassCount>) -> Result<Mnist> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Error::data(
                dir,
                format!("is not a directory (given by {origin}); {HOW_TO_POINT}"),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::data(
                dir,
                format!("MNIST directory not found (given by {origin}); {HOW_TO_POINT}"),
            ));
        }
        Err(e) => {
            return Err(Error::data(
                dir,
                format!("cannot open the MNIST directory (given by {origin}): {e}"),
            ));
        }
    }
    let part = |images_name: &str, labels_name: &str| {
        let images_path = find_file(dir, images_name)?;
        let labels_path = find_file(dir, labels_name)?;
        let images = idx::read_images(&images_path)?;
        let labels = idx::read_labels(&labels_path)?;
        pair(images, images_path, labels, labels_path)
    };
    let train = part(TRAIN_IMAGES, TRAIN_LABELS)?;
    let test = part(TEST_IMAGES, TEST_LABELS)?;
    let names_path = dir.join(CLASS_NAMES_FILE);
    // Anything at the path is read (and refused when it is not a regular file): a FIFO or a
    // directory named classes.txt is a mistake to report, not a file to ignore.
    let names = if std::fs::symlink_metadata(&names_path).is_ok() {
        Some((read_class_names(&names_path)?, names_path))
    } else {
        None
    };
    let mnist = assemble(train, test, classes, names)?;
    check_same_size(&mnist)?;
    Ok(mnist)
}

/// The training and test images must be of one size: a net has one input width.
pub fn check_same_size(mnist: &Mnist) -> Result<()> {
    let (train, test) = (&mnist.train, &mnist.test);
    if (train.rows(), train.cols()) != (test.rows(), test.cols()) {
        return Err(Error::data(
            test.source(),
            format!(
                "holds images of {}x{} pixels but the training images in {} are {}x{}; the \
                 training and test files must come from the same data set",
                test.rows(),
                test.cols(),
                train.source(),
                train.rows(),
                train.cols()
            ),
        ));
    }
    Ok(())
}

/// `dir/name`, or `dir/name.gz` when only that exists. A path that exists but is not a regular
/// file (a directory, a FIFO, a device, a dangling link) is returned, so that the reader names
/// what it is rather than calling it missing.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let raw = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    for path in [&raw, &gz] {
        if std::fs::symlink_metadata(path).is_ok() {
            return Ok(path.clone());
        }
    }
    Err(Error::data(
        raw,
        format!("MNIST file not found (nor {name}.gz); {HOW_TO_POINT}"),
    ))
}

/// One part's images and labels as read, checked to belong together.
struct Part {
    images: IdxImages,
    images_path: PathBuf,
    labels: Vec<u8>,
    labels_path: PathBuf,
}

/// Pairs an images file with a labels file, with errors that name the file at fault.
fn pair(
    images: IdxImages,
    images_path: PathBuf,
    labels: Vec<u8>,
    labels_path: PathBuf,
) -> Result<Part> {
    if labels.len() != images.count {
        return Err(Error::data(
            labels_path,
            format!(
                "holds {} labels but {} holds {} images; the two must be from the same set \
                 (train-* with train-*, t10k-* with t10k-*), download them again",
                labels.len(),
                images_path.display(),
                images.count
            ),
        ));
    }
    if images.count == 0 {
        return Err(Error::data(
            images_path,
            "holds no images; download the file again",
        ));
    }
    Ok(Part {
        images,
        images_path,
        labels,
        labels_path,
    })
}

/// Builds the two data sets with the class count of [`check_class_labels`], and checks the
/// class names (with the file they came from) against it.
fn assemble(
    train: Part,
    test: Part,
    classes: Option<ClassCount>,
    names: Option<(Vec<String>, PathBuf)>,
) -> Result<Mnist> {
    let check = check_class_labels(
        &train.labels,
        &train.labels_path,
        &test.labels,
        &test.labels_path,
        classes.as_ref(),
    )?;
    let classes = check.classes;
    let build = |part: Part| -> Result<Dataset> {
        Dataset::new(
            part.images.pixels,
            part.labels,
            part.images.rows,
            part.images.cols,
            classes,
            part.images_path.to_string_lossy().into_owned(),
        )
    };
    // Labels first, so that a label beyond the count is reported even when the names disagree.
    let (train, test) = (build(train)?, build(test)?);
    let class_names = match names {
        Some((names, path)) if names.len() != classes => {
            return Err(Error::data(
                &path,
                format!(
                    "holds {} class names but the data has {classes} classes; write one name a \
                     line, in label order",
                    names.len()
                ),
            ));
        }
        Some((names, _)) => Some(names),
        None => None,
    };
    Ok(Mnist {
        train,
        test,
        class_names,
        class_warning: check.warning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_subset_loads() {
        let mnist = embedded().unwrap();
        assert!(mnist.is_embedded());
        assert_eq!((mnist.train.len(), mnist.test.len()), (30_000, 5_000));
        for set in [&mnist.train, &mnist.test] {
            assert_eq!(
                (set.rows(), set.cols(), set.input_width(), set.classes()),
                (28, 28, 784, 10)
            );
            assert_eq!(set.images().len(), set.len() * 784);
        }
        assert_eq!(&mnist.train.labels()[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
        assert_eq!(&mnist.test.labels()[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
        assert_eq!(
            mnist.describe(),
            "embedded MNIST subset: 30000 train / 5000 test, 28x28"
        );
        // Every class is present in both parts.
        assert!(mnist.train.class_counts().iter().all(|&c| c > 500));
        assert!(mnist.test.class_counts().iter().all(|&c| c > 100));
    }

    #[test]
    fn batches_are_scaled_pixels_and_labels() {
        let mnist = embedded().unwrap();
        let train = &mnist.train;
        let indices = [3u32, 0, 3];
        let mut x32 = vec![0f32; 3 * 784];
        let mut x64 = vec![0f64; 3 * 784];
        train.fill_batch_f32(&indices, &mut x32);
        train.fill_batch_f64(&indices, &mut x64);
        for (row, &index) in indices.iter().enumerate() {
            for (k, &pixel) in train.image(index as usize).iter().enumerate() {
                assert_eq!(x32[row * 784 + k], pixel as f32 / 255.0);
                assert_eq!(x64[row * 784 + k], pixel as f64 / 255.0);
            }
        }
        assert!(x32.contains(&1.0) && x32.iter().all(|&x| (0.0..=1.0).contains(&x)));
        assert_eq!(train.labels_of(&indices), vec![1, 5, 1]);
    }

    #[test]
    fn dataset_new_checks_consistency() {
        assert!(Dataset::new(vec![0; 8], vec![1, 2], 2, 2, 3, "ok").is_ok());
        let err = |r: Result<Dataset>| match r {
            Err(e @ Error::Data { .. }) => e.to_string(),
            other => panic!("expected a Data error, got {other:?}"),
        };
        assert!(err(Dataset::new(vec![0; 7], vec![1, 2], 2, 2, 3, "short")).contains("short"));
        assert!(err(Dataset::new(vec![0; 8], vec![1, 3], 2, 2, 3, "lab")).contains("out of range"));
        assert!(err(Dataset::new(vec![], vec![], 0, 2, 3, "zero")).contains("0x2"));
        assert!(err(Dataset::new(vec![], vec![], 1, 1, 0, "none")).contains("classes"));
    }

    #[test]
    fn describe_names_the_directory() {
        let set = |source: &str| Dataset::new(vec![0; 4], vec![0], 2, 2, 10, source).unwrap();
        let mnist = Mnist {
            train: set("/d/train-images-idx3-ubyte.gz"),
            test: set("/d/t10k-images-idx3-ubyte"),
            class_names: None,
            class_warning: None,
        };
        assert!(!mnist.is_embedded());
        assert_eq!(mnist.describe(), "MNIST from /d: 1 train / 1 test, 2x2");
    }
}
