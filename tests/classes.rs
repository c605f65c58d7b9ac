//! Any IDX set, not only MNIST's ten digits: a 26-class set (MNIST images relabelled by a rule,
//! with a classes.txt of letters) trains, checkpoints, evaluates with a 26x26 matrix and
//! predicts by name; a label beyond --classes and a classes.txt of the wrong length are clear
//! errors naming the file.

mod common;
use common::{gpu_train, stdout_of};

use std::io::Write;
use std::path::{Path, PathBuf};

use gpu_train::checkpoint;
use gpu_train::data::{self, Dataset};

fn temp_dir(name: &str) -> PathBuf {
    common::fresh_dir("classes", name)
}

fn write_gz(path: &Path, header: &[u32], body: &[u8]) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for w in header {
        gz.write_all(&w.to_be_bytes()).unwrap();
    }
    gz.write_all(body).unwrap();
    std::fs::write(path, gz.finish().unwrap()).unwrap();
}

/// The rule that makes 26 classes of MNIST's 10 digits: the digit plus 10 times (index mod 3),
/// modulo 26 (so every class from 0 to 25 occurs).
fn letter(digit: u8, index: usize) -> u8 {
    ((digit as usize + 10 * (index % 3)) % 26) as u8
}

/// The first `n` images of `set` with their labels relabelled, as IDX files in `dir`.
fn write_part(dir: &Path, set: &Dataset, n: usize, images: &str, labels: &str) -> Vec<u8> {
    let pixels = &set.images()[..n * 784];
    let relabelled: Vec<u8> = (0..n).map(|i| letter(set.label(i), i)).collect();
    write_gz(
        &dir.join(format!("{images}.gz")),
        &[0x803, n as u32, 28, 28],
        pixels,
    );
    write_gz(
        &dir.join(format!("{labels}.gz")),
        &[0x801, n as u32],
        &relabelled,
    );
    relabelled
}

/// A 26-class set: 3,000 training and 500 test images, with a classes.txt of A to Z.
fn letters_dir(name: &str) -> (PathBuf, Vec<u8>) {
    let mnist = data::embedded().unwrap();
    let dir = temp_dir(name);
    let train = write_part(
        &dir,
        &mnist.train,
        3000,
        data::TRAIN_IMAGES,
        data::TRAIN_LABELS,
    );
    write_part(&dir, &mnist.test, 500, data::TEST_IMAGES, data::TEST_LABELS);
    let names: String = ('A'..='Z').map(|c| format!("{c}\n")).collect();
    std::fs::write(dir.join(data::CLASS_NAMES_FILE), names).unwrap();
    (dir, train)
}

#[test]
fn a_26_class_set_trains_evaluates_and_predicts() {
    let (dir, _) = letters_dir("letters");
    let run = dir.join("run");
    let (d, r) = (dir.to_str().unwrap(), run.to_str().unwrap());
    let text = stdout_of(&gpu_train(&[
        "train",
        "--data",
        d,
        "--device",
        "cpu",
        "--grad",
        "backprop",
        "--iters",
        "300",
        "--eval-every",
        "300",
        "--out",
        r,
    ]));
    assert!(
        text.contains("classes: 26 (A, B, C,") && text.contains("784-50-26"),
        "{text}"
    );
    // The checkpoint records the class count (in its spec) and the names.
    let ckpt_path = run.join("checkpoint.safetensors");
    let ckpt = checkpoint::load(&ckpt_path).unwrap();
    assert_eq!(ckpt.params.spec.classes, 26);
    let names = gpu_train::predict::checkpoint_class_names(&ckpt_path, &ckpt)
        .unwrap()
        .unwrap();
    assert_eq!((names[0].as_str(), names[25].as_str()), ("A", "Z"));
    let c = ckpt_path.to_str().unwrap();

    let eval: serde_json::Value = serde_json::from_str(&stdout_of(&gpu_train(&[
        "eval",
        "--json",
        "--weights",
        c,
        "--data",
        d,
    ])))
    .unwrap();
    let matrix = eval["confusion"].as_array().unwrap();
    assert_eq!(matrix.len(), 26);
    assert!(matrix.iter().all(|row| row.as_array().unwrap().len() == 26));
    let total: u64 = matrix
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!((total, eval["count"].as_u64()), (500, Some(500)));
    assert_eq!(eval["class_names"][25], "Z");
    assert_eq!(eval["per_class_accuracy"].as_array().unwrap().len(), 26);
    assert_eq!(eval["split"], "test");

    let grid = dir.join("grid");
    let text = stdout_of(&gpu_train(&[
        "eval",
        "--weights",
        c,
        "--data",
        d,
        "--misclassified",
        "12",
        "--out",
        grid.to_str().unwrap(),
    ]));
    assert!(
        text.contains("   25") && text.contains("  Z\n") && text.contains("25 Z: "),
        "{text}"
    );
    assert!(text.contains("misclassified: the first 12"), "{text}");
    let png = image::open(grid.join("misclassified.png")).unwrap();
    assert_eq!(png.height(), 2 * (28 * 4 + 30));

    // The checkpoint alone (no data) gives predict the names.
    let pic = dir.join("a.png");
    image::GrayImage::from_raw(28, 28, data::embedded().unwrap().test.image(0).to_vec())
        .unwrap()
        .save(&pic)
        .unwrap();
    let out: serde_json::Value = serde_json::from_str(&stdout_of(&gpu_train(&[
        "predict",
        "--json",
        "--top",
        "26",
        "--weights",
        c,
        pic.to_str().unwrap(),
    ])))
    .unwrap();
    let top = out["top"].as_array().unwrap();
    assert_eq!(top.len(), 26);
    let class = top[0]["class"].as_u64().unwrap() as usize;
    assert_eq!(top[0]["name"], names[class]);
    let sum: f64 = top.iter().map(|t| t["probability"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-5, "{sum}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_label_beyond_classes_is_an_error_naming_the_file_and_the_label() {
    let (dir, train) = letters_dir("beyond");
    let d = dir.to_str().unwrap();
    let (index, label) = train
        .iter()
        .enumerate()
        .find(|&(_, &l)| l >= 20)
        .map(|(i, &l)| (i, l))
        .unwrap();
    let out = gpu_train(&[
        "train",
        "--data",
        d,
        "--classes",
        "20",
        "--device",
        "cpu",
        "--iters",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
    let file = dir.join(format!("{}.gz", data::TRAIN_LABELS));
    assert!(
        stderr.contains(&file.display().to_string())
            && stderr.contains(&format!("label {label} at index {index}"))
            && stderr.contains("--classes 20 allows labels 0..=19"),
        "{stderr}"
    );
    // So is a label beyond a checkpoint's classes when it is evaluated.
    let run = dir.join("ten");
    stdout_of(&gpu_train(&[
        "train",
        "--device",
        "cpu",
        "--grad",
        "backprop",
        "--iters",
        "1",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]));
    let ten = run.join("checkpoint.safetensors");
    let out = gpu_train(&["eval", "--weights", ten.to_str().unwrap(), "--data", d]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (index, label) = train.iter().enumerate().find(|&(_, &l)| l >= 10).unwrap();
    assert!(
        !out.status.success()
            && stderr.contains(&file.display().to_string())
            && stderr.contains(&format!("label {label} at index {index}"))
            && stderr.contains("the checkpoint (10 classes) allows labels 0..=9"),
        "{stderr}"
    );
    // A classes.txt of the wrong length names itself.
    let names = dir.join(data::CLASS_NAMES_FILE);
    let short: String = ('A'..='Y').map(|c| format!("{c}\n")).collect();
    std::fs::write(&names, short).unwrap();
    let out = gpu_train(&["train", "--data", d, "--device", "cpu", "--iters", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains(&names.display().to_string())
            && stderr.contains("holds 25 class names but the data has 26 classes"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
