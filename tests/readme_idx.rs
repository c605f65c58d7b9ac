//! The README's Python lines that write an IDX set, run exactly as written there (the block is
//! taken from README.md), and the result read by the Rust reader. Runs where python3 has NumPy;
//! `.ci/run` installs it, so with CI=true its absence fails.

use std::process::Command;

use gpu_train::data;

/// The ```python block of README.md that defines `write_idx`.
fn readme_snippet() -> String {
    let readme = include_str!("../README.md");
    let blocks: Vec<&str> = readme
        .split("```python\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .filter(|code| code.contains("def write_idx"))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "README.md should have one block writing IDX"
    );
    blocks[0].to_string()
}

#[test]
fn the_readme_writes_an_idx_set_that_loads() {
    let has = Command::new("python3")
        .args(["-c", "import numpy"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has {
        assert!(
            std::env::var("CI").as_deref() != Ok("true")
                || std::env::var_os("GPU_TRAIN_NO_PYTHON").is_some(),
            "python3 with numpy is required in CI (pip install numpy)"
        );
        eprintln!("skipped: python3 with numpy not found (pip install numpy)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("gpu-train-readme-idx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let py = Command::new("python3")
        .args(["-c", &readme_snippet()])
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
