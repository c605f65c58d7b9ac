//! The walkthrough prints the chapter's worked numbers and, with an output directory, writes
//! the two gradient figures.

use std::path::Path;

fn run(out: Option<&Path>) -> (String, Vec<std::path::PathBuf>) {
    let mut buf = Vec::new();
    let files = gpu_train::demo::run(out, &mut buf).unwrap();
    (String::from_utf8(buf).unwrap(), files)
}

#[test]
fn prints_the_chapters_numbers() {
    let (text, files) = run(None);
    println!("{text}");
    assert!(files.is_empty());
    for want in [
        // SSE and CEE on y2 / y7, the batch in both target forms
        "0.097500000000000",
        "0.597500000000000",
        "0.510825457099338",
        "2.302584092994546",
        "1.406704775046942",
        // softmax
        "9.99954600e-01",
        "4.53978686e-05",
        "2.06106005e-09",
        "0.01821127, 0.24519181, 0.73659691",
        "NaN",
        // numerical differentiation and the vanishing forward difference
        "0.1999999999990898",
        "0.2999999999986347",
        "15.999999999998238",
        "with h = 1e-50: 0.0",
        "2880.00000",
        "6.00000000000378",
        "7.999999999999119",
        // gradient descent, three learning rates
        "-6.1111",
        "e-10",
        "-2589837",
        "-2.999999939999995",
        "3.9999999199999934",
        "converges",
        "diverges",
        "barely moves",
        // simpleNet
        "1.05414809",
        "0.63071653",
        "1.1328074",
        "argmax = 2",
        "0.9280682857864075",
        "0.21924757",
        "0.14356242",
        "-0.36281000",
        "0.32887135",
        "0.21534364",
        "-0.54421500",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn writes_the_figures_into_the_out_dir() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("demo")
        .join("figures");
    let _ = std::fs::remove_dir_all(&dir);
    let (text, files) = run(Some(&dir));
    for name in [
        "gradient_field.png",
        "descent_path.png",
        "gradient_field.svg",
        "descent_path.svg",
    ] {
        let path = dir.join(name);
        assert!(files.contains(&path), "{name} not returned: {files:?}");
        assert!(text.contains(name), "{name} not reported");
    }
    for name in ["gradient_field.png", "descent_path.png"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 800);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 600);
    }
}

#[test]
fn an_unwritable_out_dir_is_a_clear_error() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo");
    std::fs::create_dir_all(&base).unwrap();
    let blocker = base.join("a_file");
    std::fs::write(&blocker, b"x").unwrap();
    let dir = blocker.join("figures");
    let err = gpu_train::demo::run(Some(&dir), &mut Vec::new()).unwrap_err();
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );
}
