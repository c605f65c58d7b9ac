//! MNIST data: the IDX reader, the in-memory [`Dataset`], where the data comes from
//! ([`load`]) and mini-batch [`sampler`]s.
//!
//! By default the program trains on an embedded subset (the first 30,000 training and first
//! 5,000 test images of MNIST, about 5.6 MB of gzip compiled into the binary from
//! `src/data/mnist-subset/`), so it runs with no download and no network. The full set is used when
//! a directory is given (`--data DIR`) or `MNIST_DIR` is set.

pub mod idx;
mod nonzero;
pub mod sampler;

use std::fmt;
use std::sync::{Arc, OnceLock};

pub use nonzero::NonZeroPixels;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use idx::{read_images, read_labels, IdxImages};
pub use sampler::{Sampler, SamplerKind, SamplerState};

/// Number of MNIST classes (the digits 0 to 9).
pub const MNIST_CLASSES: usize = 10;

/// The optional file of class names beside the IDX files: one name a line, in label order.
pub const CLASS_NAMES_FILE: &str = "classes.txt";

/// The longest `classes.txt` read (256 names of a few words each fit many times over); checked
/// before the file is read.
const MAX_CLASS_NAMES_BYTES: u64 = 64 * 1024;

/// The longest class name, in characters: "T-shirt/top" has 11; a name is printed in every
/// line of eval's matrix and drawn under each picture of the misclassified grid, whose cells
/// are as wide as their captions.
pub const MAX_CLASS_NAME_CHARS: usize = 64;

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

fn first_bad_label(labels: &[u8], classes: usize) -> Option<(usize, u8)> {
    labels
        .iter()
        .copied()
        .enumerate()
        .find(|&(_, label)| label as usize >= classes)
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

/// The name of class `k` among `names` (in label order), or the number when there are none.
pub fn class_name(names: Option<&[String]>, k: usize) -> String {
    names
        .and_then(|n| n.get(k))
        .cloned()
        .unwrap_or_else(|| k.to_string())
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

/// A number of classes given rather than taken from the labels, and who gave it (for errors:
/// `--classes 26`, `the checkpoint (10 classes)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassCount {
    pub count: usize,
    pub origin: String,
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
    let part = |images_name: &str, images: &[u8], labels_name: &str, labels: &[u8]| {
        let images_name = format!("{EMBEDDED_PREFIX}{images_name}.gz");
        let labels_name = format!("{EMBEDDED_PREFIX}{labels_name}.gz");
        let images = idx::images_from_bytes(&images_name, images)?;
        let labels = idx::labels_from_bytes(&labels_name, labels)?;
        pair(
            images,
            PathBuf::from(images_name),
            labels,
            PathBuf::from(labels_name),
        )
    };
    let train = part(
        TRAIN_IMAGES,
        EMBEDDED_TRAIN_IMAGES,
        TRAIN_LABELS,
        EMBEDDED_TRAIN_LABELS,
    )?;
    let test = part(
        TEST_IMAGES,
        EMBEDDED_TEST_IMAGES,
        TEST_LABELS,
        EMBEDDED_TEST_LABELS,
    )?;
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

/// Reads a `classes.txt`: one non-empty name a line, in label order (a final newline is
/// optional; surrounding spaces, a Windows `\r` and a UTF-8 byte-order mark are dropped). Each
/// name is checked by [`check_class_names`]. Only a regular file of at most 64 KiB is read.
pub fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let bytes = idx::read_regular(path, MAX_CLASS_NAMES_BYTES).map_err(|e| match e {
        idx::ReadError::Unreadable(what) => {
            Error::data(path, format!("cannot read the class names: {what}"))
        }
        idx::ReadError::TooLarge(size) => Error::data(
            path,
            format!(
                "{size} bytes is too long for a list of class names (at most \
                 {MAX_CLASS_NAMES_BYTES}); it should hold one name a line"
            ),
        ),
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::data(path, "is not UTF-8 text; write one class name a line"))?;
    // Editors on Windows start UTF-8 files with a BOM; it is not part of class 0's name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines: Vec<&str> = text.lines().map(str::trim).collect();
    while lines.last() == Some(&"") {
        lines.pop();
    }
    let names: Vec<String> = lines.into_iter().map(str::to_string).collect();
    check_class_names(&names)
        .map_err(|(at, what)| Error::data(path, format!("line {}: {what}", at + 1)))?;
    Ok(names)
}

/// Checks class names from outside (a `classes.txt`, a checkpoint): each non-empty, at most
/// [`MAX_CLASS_NAME_CHARS`] characters, free of control and invisible format characters (which
/// would drive a terminal or hide text, see [`crate::fmt::is_unsafe_char`]), and no two alike.
/// The error is the index of the first bad name and what is wrong with it, with the fix.
pub fn check_class_names(names: &[String]) -> std::result::Result<(), (usize, String)> {
    let mut seen = std::collections::HashMap::new();
    for (at, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err((
                at,
                "the name is empty; write one class name a line, in label order (line 1 \
                 names label 0)"
                    .into(),
            ));
        }
        let chars = name.chars().count();
        if chars > MAX_CLASS_NAME_CHARS {
            return Err((
                at,
                format!(
                    "the name is {chars} characters long, more than the \
                     {MAX_CLASS_NAME_CHARS} a class name may have; shorten it"
                ),
            ));
        }
        if let Some(c) = name.chars().find(|&c| crate::fmt::is_unsafe_char(c)) {
            return Err((
                at,
                format!(
                    "the name {} holds the control or invisible character U+{:04X}; class \
                     names are printed and drawn, so write them in visible characters",
                    crate::fmt::printable(name),
                    c as u32
                ),
            ));
        }
        if let Some(first) = seen.insert(name.as_str(), at) {
            return Err((
                at,
                format!(
                    "the name {name:?} is also that of line {} (label {first}); each class \
                     needs its own name",
                    first + 1
                ),
            ));
        }
    }
    Ok(())
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

/// The number of classes the labels make, and what is wrong with them, in one rule that every
/// front end (the CLI's train and eval, and those to come) shares:
///
/// * the count is `given` (`--classes N`, a checkpoint's) or else the largest training label + 1;
/// * every training and test label must be below it (the error names the file and the label);
/// * a class without a single training example is an error when the count was inferred (a
///   stray label 200 among 0..=9 would silently train a 201-way net), naming the file, the
///   labels seen, the empty classes and both fixes; with a given count it is a warning,
///   returned in [`ClassCheck::warning`] for the caller to show.
pub fn check_class_labels(
    train_labels: &[u8],
    train_file: &Path,
    test_labels: &[u8],
    test_file: &Path,
    given: Option<&ClassCount>,
) -> Result<ClassCheck> {
    let mut seen = [false; 256];
    for &label in train_labels {
        seen[label as usize] = true;
    }
    let largest = train_labels.iter().copied().max().unwrap_or(0) as usize;
    let (classes, why) = match given {
        Some(c) => (
            c.count,
            format!(
                "{} allows labels 0..={}",
                c.origin,
                c.count.saturating_sub(1)
            ),
        ),
        None => (
            largest + 1,
            format!(
                "the largest training label is {largest}, so there are {} classes (0..={largest})",
                largest + 1
            ),
        ),
    };
    if classes < 2 {
        return Err(Error::data(
            train_file,
            "every label is 0, but a classifier needs at least 2 classes; check the labels or \
             pass --classes N",
        ));
    }
    for (labels, file) in [(train_labels, train_file), (test_labels, test_file)] {
        if let Some((index, label)) = first_bad_label(labels, classes) {
            return Err(Error::data(
                file,
                format!(
                    "label {label} at index {index} is out of range: {why}; pass --classes N \
                     (more than {label}) or fix the labels"
                ),
            ));
        }
    }
    let empty: Vec<usize> = (0..classes).filter(|&k| !seen[k]).collect();
    if empty.is_empty() {
        return Ok(ClassCheck {
            classes,
            warning: None,
        });
    }
    let labels_seen = ranges((0..256).filter(|&k| seen[k]));
    let plural = if empty.len() == 1 { "class" } else { "classes" };
    match given {
        None => Err(Error::data(
            train_file,
            format!(
                "the training labels are {labels_seen}, so {classes} classes would be inferred, \
                 but {plural} {} {} no training example (a stray or corrupt label?); correct the \
                 labels, or pass --classes {classes} to mean it",
                ranges(empty.iter().copied()),
                if empty.len() == 1 { "has" } else { "have" },
            ),
        )),
        Some(c) => Ok(ClassCheck {
            classes,
            warning: Some(format!(
                "{}: {plural} {} of the {} ({}) {} no training example (labels seen: \
                 {labels_seen}); the net cannot learn {}",
                train_file.display(),
                ranges(empty.iter().copied()),
                classes,
                c.origin,
                if empty.len() == 1 { "has" } else { "have" },
                if empty.len() == 1 { "it" } else { "them" },
            )),
        }),
    }
}

/// The class count [`check_class_labels`] settled on, and a warning to show (classes without
/// a training example under a given count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassCheck {
    pub classes: usize,
    pub warning: Option<String>,
}

/// Ascending numbers in a short range form: `0-9, 200`.
fn ranges(numbers: impl Iterator<Item = usize>) -> String {
    let mut parts: Vec<(usize, usize)> = Vec::new();
    for n in numbers {
        match parts.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => parts.push((n, n)),
        }
    }
    parts
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
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

    /// A directory of four raw IDX files: `train` and `test` labels, 1x2 images.
    fn idx_dir(name: &str, train: &[u8], test: &[u8]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gpu-train-classes-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (images, labels, set) in [
            (TRAIN_IMAGES, TRAIN_LABELS, train),
            (TEST_IMAGES, TEST_LABELS, test),
        ] {
            let n = set.len() as u32;
            let mut img = [idx::IMAGES_MAGIC, n, 1, 2]
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect::<Vec<u8>>();
            img.extend(std::iter::repeat_n(7u8, set.len() * 2));
            std::fs::write(dir.join(images), img).unwrap();
            let mut lab = [idx::LABELS_MAGIC, n]
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect::<Vec<u8>>();
            lab.extend_from_slice(set);
            std::fs::write(dir.join(labels), lab).unwrap();
        }
        dir
    }

    #[test]
    fn classes_come_from_the_largest_training_label_or_are_given() {
        let every: Vec<u8> = (0..26).rev().collect();
        let dir = idx_dir("count", &every, &[1, 2]);
        let set = load(Some(&dir)).unwrap();
        assert_eq!((set.train.classes(), set.test.classes()), (26, 26));
        assert_eq!(set.describe_classes(), "26 (labels 0..=25)");
        assert_eq!(set.class_warning, None);
        let given = |count: usize| {
            load_with(
                Some(&dir),
                Some(ClassCount {
                    count,
                    origin: format!("--classes {count}"),
                }),
            )
        };
        let thirty = given(30).unwrap();
        assert_eq!(thirty.train.classes(), 30);
        assert!(
            thirty
                .class_warning
                .as_deref()
                .is_some_and(|w| w.contains("classes 26-29 of the 30 (--classes 30)")),
            "{:?}",
            thirty.class_warning
        );
        let message = given(20).unwrap_err().to_string();
        assert!(
            message.contains(&dir.join(TRAIN_LABELS).display().to_string())
                && message.contains("label 25 at index 0")
                && message.contains("--classes 20 allows labels 0..=19"),
            "{message}"
        );
        assert!(given(1).unwrap_err().to_string().contains("--classes 1"));
        assert!(given(257).unwrap_err().to_string().contains("2 to 256"));
        // A test label beyond the training labels' range names the test file.
        let dir = idx_dir("beyond", &[0, 1, 2, 3, 4], &[1, 5]);
        let message = load(Some(&dir)).unwrap_err().to_string();
        assert!(
            message.contains(&dir.join(TEST_LABELS).display().to_string())
                && message.contains("label 5 at index 1")
                && message.contains("largest training label is 4"),
            "{message}"
        );
        // An inferred count with classes no training image has is an error naming them.
        let dir = idx_dir("gaps", &[0, 25, 3, 1], &[1, 2]);
        let message = load(Some(&dir)).unwrap_err().to_string();
        assert!(
            message.contains(&dir.join(TRAIN_LABELS).display().to_string())
                && message.contains("the training labels are 0-1, 3, 25")
                && message.contains("classes 2, 4-24 have no training example")
                && message.contains("--classes 26 to mean it"),
            "{message}"
        );
        assert_eq!(ranges([7].into_iter()), "7");
        assert_eq!(ranges([0, 1, 2, 9, 10, 200].into_iter()), "0-2, 9-10, 200");
        let dir = idx_dir("zeros", &[0, 0], &[0]);
        assert!(load(Some(&dir))
            .unwrap_err()
            .to_string()
            .contains("at least 2 classes"));
    }

    #[test]
    fn class_names_come_from_classes_txt_and_must_match_the_count() {
        let dir = idx_dir("names", &[0, 2, 1], &[1]);
        std::fs::write(dir.join(CLASS_NAMES_FILE), "cat\r\n dog \nbird\n\n").unwrap();
        let set = load(Some(&dir)).unwrap();
        assert_eq!(set.class_names.as_deref().unwrap(), ["cat", "dog", "bird"]);
        assert_eq!(set.class_name(1), "dog");
        assert_eq!(set.describe_classes(), "3 (cat, dog, bird)");
        let names = dir.join(CLASS_NAMES_FILE);
        std::fs::write(&names, "cat\ndog\n").unwrap();
        let message = load(Some(&dir)).unwrap_err().to_string();
        assert!(
            message.contains(&names.display().to_string())
                && message.contains("holds 2 class names but the data has 3 classes"),
            "{message}"
        );
        std::fs::write(&names, "cat\n\ndog\nbird\n").unwrap();
        let message = load(Some(&dir)).unwrap_err().to_string();
        assert!(message.contains("line 2: the name is empty"), "{message}");
        std::fs::write(&names, [0xff, 0xfe, b'\n']).unwrap();
        assert!(load(Some(&dir)).unwrap_err().to_string().contains("UTF-8"));
        assert_eq!(class_name(None, 7), "7");
    }
}
