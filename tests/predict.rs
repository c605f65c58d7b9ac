//! `gpu-train predict` as a user meets it: MNIST images written as PNG come back with eval's
//! predictions; the same images drawn the way a person would (dark on white, large, off-centre,
//! some as JPEG) are recognised about as well; bad pictures are clear errors naming the file.

mod common;
use common::{gpu_train, stdout_of};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gpu_train::data::{self, Dataset};
use gpu_train::{checkpoint, predict};
use image::{imageops, GrayImage, ImageFormat, Luma};

/// How many test images the acceptance checks use.
const IMAGES: usize = 200;

fn temp_dir(name: &str) -> PathBuf {
    common::fresh_dir("predict", name)
}

/// A checkpoint trained quickly (backprop, 3,000 steps, a few seconds) on the embedded set,
/// once per test binary; `GPU_TRAIN_PREDICT_CHECKPOINT=FILE` runs the checks against another
/// (e.g. one from the default `gpu-train train`).
fn checkpoint() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(path) = std::env::var_os("GPU_TRAIN_PREDICT_CHECKPOINT") {
            eprintln!("checkpoint: {}", Path::new(&path).display());
            return PathBuf::from(path);
        }
        let dir = temp_dir("run");
        let out = gpu_train(&[
            "train",
            "--device",
            "cpu",
            "--grad",
            "backprop",
            "--iters",
            "3000",
            "--eval-every",
            "3000",
            "--quiet",
            "--out",
            dir.to_str().unwrap(),
        ]);
        stdout_of(&out);
        dir.join("checkpoint.safetensors")
    })
}

fn test_set() -> Dataset {
    data::embedded().unwrap().test
}

/// Eval's predictions for every image of `set` (the forward pass `gpu-train eval` counts).
fn eval_predictions(set: &Dataset) -> Vec<usize> {
    let ckpt = checkpoint::load(checkpoint()).unwrap();
    let probs = predict::probabilities(&ckpt.params.spec, &ckpt.params, set);
    predict::argmax_rows(&probs, ckpt.params.spec.classes)
}

/// Runs predict --json on `files`; the top class of each, in order.
fn predicted_classes(files: &[PathBuf]) -> Vec<usize> {
    let mut args = vec![
        "predict".to_string(),
        "--json".into(),
        "--weights".into(),
        checkpoint().display().to_string(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = stdout_of(&gpu_train(&args));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), files.len(), "{text}");
    lines
        .iter()
        .zip(files)
        .map(|(obj, file)| {
            assert_eq!(obj["file"], file.display().to_string());
            assert_eq!(obj["top"].as_array().unwrap().len(), 3);
            obj["top"][0]["class"].as_u64().unwrap() as usize
        })
        .collect()
}

fn mnist_image(set: &Dataset, i: usize) -> GrayImage {
    GrayImage::from_raw(28, 28, set.image(i).to_vec()).unwrap()
}

#[test]
fn mnist_images_written_as_png_get_evals_predictions() {
    let set = test_set();
    let dir = temp_dir("roundtrip");
    let files: Vec<PathBuf> = (0..IMAGES)
        .map(|i| {
            let path = dir.join(format!("{i:03}.png"));
            mnist_image(&set, i).save(&path).unwrap();
            path
        })
        .collect();
    let got = predicted_classes(&files);
    let expected = eval_predictions(&set);
    let differ: Vec<usize> = (0..IMAGES).filter(|&i| got[i] != expected[i]).collect();
    assert!(differ.is_empty(), "predict differs from eval on {differ:?}");
    // And eval itself counts those same predictions.
    let eval: serde_json::Value = serde_json::from_str(&stdout_of(&gpu_train(&[
        "eval",
        "--json",
        "--weights",
        checkpoint().to_str().unwrap(),
    ])))
    .unwrap();
    let correct = (0..set.len())
        .filter(|&i| expected[i] == set.label(i) as usize)
        .count();
    assert_eq!(eval["correct"].as_u64(), Some(correct as u64));
    assert_eq!(eval["count"].as_u64(), Some(set.len() as u64));
    eprintln!("round trip: predict agrees with eval on {IMAGES} of {IMAGES}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Image `i` as a person would draw it: black ink on white, 4x larger (smoothly), somewhere
/// off-centre on a 200x160 canvas.
fn drawn(set: &Dataset, i: usize) -> GrayImage {
    let mut ink = mnist_image(set, i);
    imageops::invert(&mut ink);
    let big = imageops::resize(&ink, 112, 112, imageops::FilterType::Triangle);
    let mut canvas = GrayImage::from_pixel(200, 160, Luma([255]));
    let (x, y) = ((i * 37) % 89, (i * 23) % 49);
    imageops::replace(&mut canvas, &big, x as i64, y as i64);
    canvas
}

#[test]
fn the_same_digits_drawn_by_hand_are_recognised_as_well() {
    let set = test_set();
    let dir = temp_dir("drawn");
    let files: Vec<PathBuf> = (0..IMAGES)
        .map(|i| {
            // Every fourth one as JPEG.
            let ext = if i % 4 == 3 { "jpg" } else { "png" };
            let path = dir.join(format!("{i:03}.{ext}"));
            drawn(&set, i).save(&path).unwrap();
            path
        })
        .collect();
    let got = predicted_classes(&files);
    let expected = eval_predictions(&set);
    let right = |pred: &[usize]| {
        (0..IMAGES)
            .filter(|&i| pred[i] == set.label(i) as usize)
            .count()
    };
    let (drawn_right, eval_right) = (right(&got), right(&expected));
    eprintln!(
        "drawn: {drawn_right} of {IMAGES} right; eval on the originals: {eval_right} of {IMAGES}"
    );
    // Within 2 points of 200 images: 4 images.
    assert!(
        drawn_right.abs_diff(eval_right) * 100 <= 2 * IMAGES,
        "drawn {drawn_right} vs originals {eval_right} of {IMAGES}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn show_prints_the_input_and_text_lists_the_top_classes() {
    let set = test_set();
    let dir = temp_dir("show");
    let path = dir.join("seven.png");
    drawn(&set, 0).save(&path).unwrap();
    let text = stdout_of(&gpu_train(&[
        "predict",
        "--show",
        "--top",
        "2",
        "--weights",
        checkpoint().to_str().unwrap(),
        path.to_str().unwrap(),
    ]));
    // Test image 0 is a 7.
    assert!(
        text.contains("200x160 picture (light background: inverted)"),
        "{text}"
    );
    let art: Vec<&str> = text.lines().filter(|l| l.len() == 56).collect();
    assert_eq!(art.len(), 28, "{text}");
    assert!(art.iter().any(|l| l.contains("@@")), "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("{}: 7 ", path.display())) && last.matches('%').count() == 2,
        "{last}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A PNG whose header claims `width x height` grey pixels, with a tiny body.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(common::png_chunk(b"IHDR", &ihdr));
    png.extend(common::png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(common::png_chunk(b"IEND", &[]));
    png
}

#[test]
fn bad_pictures_are_clear_errors_naming_the_file() {
    let set = test_set();
    let dir = temp_dir("bad");
    let good = dir.join("good.png");
    mnist_image(&set, 0).save(&good).unwrap();
    let mut whole = Vec::new();
    drawn(&set, 1)
        .write_to(&mut std::io::Cursor::new(&mut whole), ImageFormat::Png)
        .unwrap();
    let cases: [(&str, Vec<u8>, &[&str]); 6] = [
        (
            "notes.png",
            b"this is text, not a picture\n".to_vec(),
            &["not a PNG or JPEG"],
        ),
        (
            "truncated.png",
            whole[..whole.len() / 2].to_vec(),
            &["truncated or corrupt"],
        ),
        ("empty.png", Vec::new(), &["empty"]),
        (
            "zero.png",
            png_claiming(0, 0),
            &["truncated or corrupt", "0x0"],
        ),
        (
            "huge.png",
            png_claiming(100_000, 100_000),
            &["100000x100000", "scale it down"],
        ),
        (
            "blank.png",
            {
                let mut b = Vec::new();
                GrayImage::from_pixel(30, 30, Luma([255]))
                    .write_to(&mut std::io::Cursor::new(&mut b), ImageFormat::Png)
                    .unwrap();
                b
            },
            &["no ink"],
        ),
    ];
    for (name, bytes, words) in &cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = gpu_train(&[
            "predict",
            "--weights",
            checkpoint().to_str().unwrap(),
            path.to_str().unwrap(),
            good.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains(&path.display().to_string()))
            .unwrap_or_else(|| panic!("{name}: no error names the file: {stderr}"));
        assert!(
            words.iter().any(|w| line.contains(w)),
            "{name}: {line} says none of {words:?}"
        );
        assert!(
            stderr.contains("1 of 2 pictures could not be read"),
            "{stderr}"
        );
        // The good picture is still predicted.
        assert!(
            stdout.starts_with(&format!("{}: 7 ", good.display())),
            "{stdout}"
        );
    }
    let out = gpu_train(&[
        "predict",
        "--weights",
        checkpoint().to_str().unwrap(),
        "--top",
        "0",
        good.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--top"));
    let _ = std::fs::remove_dir_all(&dir);
}
