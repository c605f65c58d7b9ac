//! Every figure writes a real 800x600 PNG (or an SVG by extension), the picture follows the
//! data, and a path that cannot be written is an error, not a panic.

use std::path::{Path, PathBuf};

use gpu_train::math;
use gpu_train::report::plot;

fn out_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("plots")
        .join(test);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Checks the PNG signature and reads width and height from the IHDR chunk.
fn assert_png_800x600(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 24,
        "{}: only {} bytes",
        path.display(),
        bytes.len()
    );
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{}: not a PNG",
        path.display()
    );
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), plot::PNG_SIZE);
    assert_eq!((width, height), (800, 600));
}

fn falling_loss(n: usize, rate: f64) -> Vec<(usize, f64)> {
    (0..n)
        .map(|i| {
            (
                i,
                2.3 * (-rate * i as f64).exp() + 0.1 * ((i * 7919) % 13) as f64 / 13.0,
            )
        })
        .collect()
}

fn descent() -> Vec<Vec<f64>> {
    math::gradient_descent(math::function_2, &[-3.0, 4.0], 0.1, 20).1
}

#[test]
fn every_figure_is_an_800x600_png() {
    let dir = out_dir("png");
    let loss = dir.join("loss.png");
    plot::loss_curve(&loss, &falling_loss(1000, 0.005), "training loss").unwrap();
    assert_png_800x600(&loss);

    let acc = dir.join("accuracy.png");
    let epochs: Vec<(f64, f64, f64)> = (0..17)
        .map(|e| {
            (
                e as f64,
                0.1 + 0.85 * (1.0 - (-0.5 * e as f64).exp()),
                0.1 + 0.84 * (1.0 - (-0.5 * e as f64).exp()),
            )
        })
        .collect();
    plot::accuracy_chart(&acc, &epochs).unwrap();
    assert_png_800x600(&acc);

    let field = dir.join("gradient_field.png");
    plot::gradient_field(&field).unwrap();
    assert_png_800x600(&field);

    let path = dir.join("descent_path.png");
    plot::descent_path(&path, &descent()).unwrap();
    assert_png_800x600(&path);
}

#[test]
fn the_picture_follows_the_data() {
    let dir = out_dir("data");
    let (a, b) = (dir.join("a.png"), dir.join("b.png"));
    plot::loss_curve(&a, &falling_loss(500, 0.01), "loss").unwrap();
    plot::loss_curve(&b, &falling_loss(500, 0.002), "loss").unwrap();
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    // A diverging run leaves the box: nothing to draw there, but still a valid figure.
    let diverging = math::gradient_descent(math::function_2, &[-3.0, 4.0], 10.0, 20).1;
    let c = dir.join("diverging.png");
    plot::descent_path(&c, &diverging).unwrap();
    assert_png_800x600(&c);
}

#[test]
fn empty_and_non_finite_data_still_draw() {
    let dir = out_dir("edge");
    plot::loss_curve(dir.join("empty.png"), &[], "no data").unwrap();
    plot::loss_curve(
        dir.join("nan.png"),
        &[(0, 2.3), (1, f64::NAN), (2, f64::INFINITY), (3, 1.0)],
        "nan",
    )
    .unwrap();
    plot::accuracy_chart(dir.join("empty_acc.png"), &[]).unwrap();
    plot::descent_path(dir.join("empty_path.png"), &[]).unwrap();
    for name in ["empty.png", "nan.png", "empty_acc.png", "empty_path.png"] {
        assert_png_800x600(&dir.join(name));
    }
}

#[test]
fn svg_by_extension() {
    let dir = out_dir("svg");
    let files = [
        dir.join("loss.svg"),
        dir.join("acc.svg"),
        dir.join("field.svg"),
        dir.join("path.SVG"),
    ];
    plot::loss_curve(&files[0], &falling_loss(100, 0.02), "loss").unwrap();
    plot::accuracy_chart(&files[1], &[(0.0, 0.1, 0.1), (1.0, 0.8, 0.79)]).unwrap();
    plot::gradient_field(&files[2]).unwrap();
    plot::descent_path(&files[3], &descent()).unwrap();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.starts_with("<svg") || text.starts_with("<?xml"),
            "{}: {}",
            f.display(),
            &text[..40.min(text.len())]
        );
        assert!(
            text.contains("800") && text.contains("600"),
            "{}: size missing",
            f.display()
        );
    }
}

#[test]
fn an_unwritable_path_is_an_error_naming_it() {
    let dir = out_dir("unwritable");
    // A file used as a directory: fails even for root, unlike a read-only directory.
    let blocker = dir.join("not_a_dir");
    std::fs::write(&blocker, b"x").unwrap();
    for name in ["loss.png", "loss.svg"] {
        let target = blocker.join(name);
        let err = plot::loss_curve(&target, &falling_loss(10, 0.1), "loss").unwrap_err();
        assert!(
            err.to_string().contains(&target.display().to_string()),
            "{err}"
        );
    }
    assert!(plot::accuracy_chart(blocker.join("a.png"), &[]).is_err());
    assert!(plot::gradient_field(blocker.join("g.png")).is_err());
    assert!(plot::descent_path(blocker.join("d.png"), &descent()).is_err());
}
