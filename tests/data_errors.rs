//! Malformed, missing and mismatched MNIST files: each must give a `Data` error that names the
//! file and says what is wrong, never a panic or a huge allocation. Plus, when the full MNIST
//! files are at hand, a check that they load with the known counts.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use gpu_train::data::{self, idx, Mnist};
use gpu_train::error::Error;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// A fresh, empty directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "gpu-train-data-errors-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn images_file(count: u32, rows: u32, cols: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [IMAGES_MAGIC, count, rows, cols] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.extend_from_slice(body);
    bytes
}

fn labels_file(count: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [LABELS_MAGIC, count] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.extend_from_slice(body);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// A small, valid set of four MNIST files (`count` train and test images of 2x2) in a temp dir.
fn valid_dir(name: &str, count: u32) -> TempDir {
    let dir = TempDir::new(name);
    let pixels: Vec<u8> = (0..count * 4).map(|i| i as u8).collect();
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    dir.write(data::TRAIN_IMAGES, &images_file(count, 2, 2, &pixels));
    dir.write(
        &format!("{}.gz", data::TRAIN_LABELS),
        &gzip(&labels_file(count, &labels)),
    );
    dir.write(
        &format!("{}.gz", data::TEST_IMAGES),
        &gzip(&images_file(count, 2, 2, &pixels)),
    );
    dir.write(data::TEST_LABELS, &labels_file(count, &labels));
    dir
}

/// Asserts that `result` is a `Data` error about `file` whose message contains one of `words`;
/// returns the message.
#[track_caller]
fn assert_data_error<T: std::fmt::Debug>(
    result: Result<T, Error>,
    file: &Path,
    words: &[&str],
) -> String {
    let message = match result {
        Err(
            ref e @ Error::Data {
                file: ref named, ..
            },
        ) => {
            assert_eq!(named, file, "the error should name {}: {e}", file.display());
            e.to_string()
        }
        other => panic!(
            "expected a Data error about {}, got {other:?}",
            file.display()
        ),
    };
    assert!(
        message.contains(&file.display().to_string()),
        "message does not name the file: {message}"
    );
    assert!(
        words.iter().any(|w| message.to_lowercase().contains(w)),
        "message says none of {words:?}: {message}"
    );
    message
}

#[test]
fn a_valid_directory_loads_raw_and_gzip_files() {
    let dir = valid_dir("valid", 12);
    let mnist: Mnist = data::load(Some(&dir.0)).expect("valid files load");
    assert_eq!((mnist.train.len(), mnist.test.len()), (12, 12));
    assert_eq!(mnist.train.input_width(), 4);
    assert_eq!(mnist.test.label(11), 1);
    assert!(
        mnist.describe().contains(&dir.0.display().to_string()),
        "{}",
        mnist.describe()
    );
}

#[test]
fn truncated_file() {
    let dir = TempDir::new("truncated");
    let path = dir.write("images", &images_file(10, 28, 28, &[0u8; 784 * 3 + 17]));
    assert_data_error(idx::read_images(&path), &path, &["truncated"]);
    // Cut inside the header, too.
    let path = dir.write("header", &images_file(10, 28, 28, &[])[..9]);
    assert_data_error(idx::read_images(&path), &path, &["truncated"]);
    // And a gzip stream cut in half.
    let whole = gzip(&images_file(10, 28, 28, &[7u8; 784 * 10]));
    let path = dir.write("cut.gz", &whole[..whole.len() / 2]);
    assert_data_error(idx::read_images(&path), &path, &["truncated"]);
}

#[test]
fn wrong_magic() {
    let dir = TempDir::new("magic");
    let path = dir.write("labels-as-images", &labels_file(3, &[1, 2, 3]));
    let message = assert_data_error(idx::read_images(&path), &path, &["magic"]);
    assert!(
        message.contains("0x00000803") && message.contains("0x00000801"),
        "{message}"
    );
    assert!(message.contains("label file"), "{message}");
    let path = dir.write("garbage", b"PK\x03\x04 this is a zip file, not IDX");
    assert_data_error(idx::read_labels(&path), &path, &["magic"]);
}

#[test]
fn header_larger_than_the_file() {
    let dir = TempDir::new("huge");
    // Claims 2^31 images of 28x28 (1.6 TB) in a 100-byte file: an error, not an allocation.
    let raw = images_file(1 << 31, 28, 28, &[0u8; 84]);
    assert_eq!(raw.len(), 100);
    let path = dir.write("huge", &raw);
    assert_data_error(idx::read_images(&path), &path, &["truncated"]);
    // Compressed, the claim is refused before anything is inflated: it is beyond the limit.
    let path = dir.write("huge.gz", &gzip(&raw));
    assert_data_error(idx::read_images(&path), &path, &["limit"]);
    let path = dir.write("huge-labels", &labels_file(u32::MAX, &[0u8; 92]));
    assert_data_error(idx::read_labels(&path), &path, &["truncated"]);
}

#[test]
fn label_out_of_range() {
    let dir = valid_dir("label", 5);
    let path = dir.write(data::TEST_LABELS, &labels_file(5, &[0, 1, 10, 3, 4]));
    let message = assert_data_error(data::load(Some(&dir.0)), &path, &["out of range"]);
    assert!(message.contains("label 10 at index 2"), "{message}");
}

#[test]
fn image_and_label_counts_differ() {
    let dir = valid_dir("counts", 5);
    let path = dir.0.join(format!("{}.gz", data::TRAIN_LABELS));
    dir.write(
        &format!("{}.gz", data::TRAIN_LABELS),
        &gzip(&labels_file(4, &[0, 1, 2, 3])),
    );
    let message = assert_data_error(data::load(Some(&dir.0)), &path, &["labels"]);
    assert!(
        message.contains("4 labels") && message.contains("5 images"),
        "{message}"
    );
}

#[test]
fn missing_directory() {
    let dir = TempDir::new("missing-dir");
    let missing = dir.0.join("no-such-dir");
    let message = assert_data_error(data::load(Some(&missing)), &missing, &["not found"]);
    assert!(
        message.contains("MNIST_DIR") && message.contains("--data"),
        "{message}"
    );
    assert!(message.contains(data::TRAIN_IMAGES), "{message}");
}

#[test]
fn missing_file_in_directory() {
    let dir = valid_dir("missing-file", 3);
    std::fs::remove_file(dir.0.join(format!("{}.gz", data::TEST_IMAGES))).expect("remove");
    let looked_at = dir.0.join(data::TEST_IMAGES);
    let message = assert_data_error(data::load(Some(&dir.0)), &looked_at, &["not found"]);
    assert!(
        message.contains(".gz") && message.contains("MNIST_DIR"),
        "{message}"
    );
}

#[test]
fn corrupt_gzip() {
    let dir = TempDir::new("corrupt");
    let mut bytes = gzip(&labels_file(1000, &[3u8; 1000]));
    // Damage the deflate data just after the 10-byte gzip header.
    for byte in &mut bytes[10..16] {
        *byte ^= 0xa5;
    }
    let path = dir.write(&format!("{}.gz", data::TRAIN_LABELS), &bytes);
    assert_data_error(
        idx::read_labels(&path),
        &path,
        &["corrupt", "gzip", "truncated"],
    );
    // A wrong checksum in an otherwise intact stream.
    let mut bytes = gzip(&labels_file(1000, &[3u8; 1000]));
    let crc = bytes.len() - 8;
    bytes[crc] ^= 0xff;
    let path = dir.write("bad-crc.gz", &bytes);
    assert_data_error(idx::read_labels(&path), &path, &["corrupt"]);
}

/// The full MNIST files, from `MNIST_DIR` or `../shared/data/mnist`. Where they are absent the
/// test says NOT RUN, or fails when they are required (`common::full_mnist`).
#[test]
fn full_mnist_loads_with_known_counts() {
    let Some(dir) = common::full_mnist("data_errors::full_mnist_loads_with_known_counts") else {
        return;
    };
    let mnist = data::load(Some(&dir)).expect("full MNIST loads");
    assert!(!mnist.is_embedded());
    assert_eq!((mnist.train.len(), mnist.test.len()), (60_000, 10_000));
    assert_eq!((mnist.train.rows(), mnist.train.cols()), (28, 28));
    assert_eq!(&mnist.train.labels()[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(
        mnist.train.class_counts(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        mnist.test.class_counts(),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // The embedded subset is exactly the leading part of the full set.
    let subset = data::embedded().expect("embedded subset");
    assert_eq!(subset.train.images(), &mnist.train.images()[..30_000 * 784]);
    assert_eq!(subset.train.labels(), &mnist.train.labels()[..30_000]);
    assert_eq!(subset.test.images(), &mnist.test.images()[..5_000 * 784]);
    assert_eq!(subset.test.labels(), &mnist.test.labels()[..5_000]);
}

/// The rule `full_mnist` applies: a folder that is there is used; a missing one fails when the
/// data is required (or under CI=true when nobody said it is optional), and is otherwise
/// reported NOT RUN, one line in the log .ci/run lists at the end.
#[test]
fn full_mnist_is_used_required_or_reported_not_run() {
    let dir = TempDir::new("full-mnist-rule");
    let missing = dir.0.join("no-mnist");
    let log = dir.0.join("not-run.log");
    let find = |at: &Path, need: Option<&str>, ci: bool| {
        std::panic::catch_unwind(|| {
            common::full_mnist_in("t::x", at, "MNIST_DIR", need, ci, Some(&log))
        })
    };
    for (need, ci) in [
        (Some("required"), true),
        (Some("optional"), true),
        (None, false),
    ] {
        assert_eq!(find(&dir.0, need, ci).unwrap(), Some(dir.0.clone()));
    }
    for (need, ci) in [
        (Some("required"), true),
        (Some("required"), false),
        (None, true),
    ] {
        let e = find(&missing, need, ci).unwrap_err();
        let e = e.downcast_ref::<String>().expect("a message");
        assert!(
            e.contains("t::x") && e.contains("no-mnist") && e.contains("MNIST_DIR"),
            "{e}"
        );
    }
    assert!(!log.exists(), "a failure is not a NOT RUN");
    assert_eq!(find(&missing, Some("optional"), true).unwrap(), None);
    assert_eq!(find(&missing, None, false).unwrap(), None);
    let lines = std::fs::read_to_string(&log).expect("the log");
    let want = format!("t::x: not found at {} (MNIST_DIR)\n", missing.display());
    assert_eq!(lines, want.repeat(2));
    assert!(
        find(&missing, Some("yes"), true).is_err(),
        "an unknown value"
    );
}
