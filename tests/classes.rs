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

/// MNIST's digits (3,000 training, 500 test images) with one training label, or one test
/// label, replaced by 200: a stray label.
fn stray_dir(name: &str, in_train: bool) -> PathBuf {
    let mnist = data::embedded().unwrap();
    let dir = temp_dir(name);
    for (set, n, images, labels, stray) in [
        (
            &mnist.train,
            3000,
            data::TRAIN_IMAGES,
            data::TRAIN_LABELS,
            in_train,
        ),
        (
            &mnist.test,
            500,
            data::TEST_IMAGES,
            data::TEST_LABELS,
            !in_train,
        ),
    ] {
        let mut l = set.labels()[..n].to_vec();
        if stray {
            l[17] = 200;
        }
        write_gz(
            &dir.join(format!("{images}.gz")),
            &[0x803, n as u32, 28, 28],
            &set.images()[..n * 784],
        );
        write_gz(&dir.join(format!("{labels}.gz")), &[0x801, n as u32], &l);
    }
    dir
}

#[test]
fn a_stray_label_is_an_error_unless_classes_says_so() {
    let dir = stray_dir("stray", true);
    let d = dir.to_str().unwrap();
    let train_file = dir.join(format!("{}.gz", data::TRAIN_LABELS));
    let short = ["--device", "cpu", "--grad", "backprop", "--iters", "1"];
    // Inferred: 201 classes, 191 of them empty, is an error with both fixes.
    let out = gpu_train(&[&["train", "--data", d], &short[..]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&train_file.display().to_string())
            && stderr.contains("the training labels are 0-9, 200")
            && stderr.contains("classes 10-199 have no training example")
            && stderr.contains("correct the labels")
            && stderr.contains("--classes 201 to mean it"),
        "{stderr}"
    );
    // Given: a one-line warning on stderr, and the 201-way net it asked for.
    let run = dir.join("run201");
    let out = gpu_train(
        &[
            &["train", "--data", d, "--classes", "201", "--out"],
            &[run.to_str().unwrap()][..],
            &short[..],
        ]
        .concat(),
    );
    let stdout = stdout_of(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with("warning: ")
            && warnings[0].contains(&train_file.display().to_string())
            && warnings[0].contains("classes 10-199 of the 201 (--classes 201)"),
        "{stderr}"
    );
    assert!(stdout.contains("784-50-201"), "{stdout}");
    // eval applies the checkpoint's count the same way: a warning, then the report.
    let ckpt = run.join("checkpoint.safetensors");
    let out = gpu_train(&["eval", "--weights", ckpt.to_str().unwrap(), "--data", d]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("warning: ")
            && stderr.contains("classes 10-199 of the 201 (the checkpoint (201 classes))"),
        "{stderr}"
    );
    // A stray test label is checked against the training labels' count, naming the test file.
    let dir = stray_dir("stray-test", false);
    let out = gpu_train(&[&["train", "--data", dir.to_str().unwrap()], &short[..]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let test_file = dir.join(format!("{}.gz", data::TEST_LABELS));
    assert!(
        out.status.code() == Some(1)
            && stderr.contains(&test_file.display().to_string())
            && stderr.contains("label 200 at index 17")
            && stderr.contains("largest training label is 9"),
        "{stderr}"
    );
}
