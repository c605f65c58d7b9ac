//! The README's Python lines that write an IDX set, run exactly as written there (the block is
//! taken from README.md), and the result read by the Rust reader. Runs where python3 has NumPy;
//! `.ci/run` installs it, so with CI=true its absence fails.

mod common;

use std::process::Command;

use gpu_train::data;

#[test]
fn the_readme_writes_an_idx_set_that_loads() {
    if !common::python_has("numpy") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("gpu-train-readme-idx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let py = Command::new("python3")
        .args(["-c", &common::readme_python_block("def write_idx")])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let set = data::load(Some(&dir)).unwrap();
    assert_eq!((set.train.len(), set.test.len()), (4, 2));
    assert_eq!((set.train.rows(), set.train.cols()), (28, 28));
    assert_eq!(set.train.classes(), 3);
    assert_eq!(set.train.labels(), &[0, 1, 2, 0]);
    assert_eq!(set.test.labels(), &[1, 2]);
    // Pixel k of image i is (i * 784 + k) mod 256.
    for (i, image) in set.train.images().chunks(784).enumerate() {
        assert!(image
            .iter()
            .enumerate()
            .all(|(k, &v)| v as usize == (i * 784 + k) % 256));
    }
    assert_eq!(set.test.image(1)[0], ((5 * 784) % 256) as u8);
    assert_eq!(
        set.class_names.as_deref().unwrap(),
        ["circle", "square", "triangle"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
