//! What `gpu-train eval` shows: the confusion matrix with the classes' names, the same as one
//! JSON object, and a picture of misclassified images each labelled "true / predicted".

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor;

use super::plot::{register_font, FONT};
use crate::cpu::ConfusionReport;
use crate::data::{class_name, Dataset};
use crate::error::{Error, Result};

/// The most images a misclassified grid shows (10 a row).
pub const MAX_GRID_IMAGES: usize = 200;

/// Images a row in the grid.
const GRID_COLUMNS: usize = 10;

/// Each image pixel is drawn as a square this many pixels wide.
const GRID_SCALE: u32 = 4;

/// The most characters of a class name drawn in a caption (longer ones end in "…"): a cell is
/// as wide as its caption, so a long name would widen all 200 cells of the picture.
pub const MAX_CAPTION_NAME_CHARS: usize = 24;

/// `name` cut to [`MAX_CAPTION_NAME_CHARS`] characters for a caption, and made printable.
fn caption_name(name: &str) -> String {
    let name = crate::fmt::printable(name);
    if name.chars().count() <= MAX_CAPTION_NAME_CHARS {
        return name.into_owned();
    }
    let mut cut: String = name.chars().take(MAX_CAPTION_NAME_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Loss, accuracy, the confusion matrix and per-class accuracy as text; `names` (in label
/// order) label the rows and the per-class lines when given.
pub fn render(report: &ConfusionReport, names: Option<&[String]>) -> String {
    let classes = report.matrix.len();
    let largest = report.matrix.iter().flatten().copied().max().unwrap_or(0);
    let cell = (largest.to_string().len().max(classes.to_string().len()) + 1).max(6);
    let mut s = format!(
        "loss {:.4} | accuracy {:.4} ({} of {})\n",
        report.loss,
        report.accuracy(),
        report.correct,
        report.count
    );
    s += "confusion matrix (rows: true class, columns: predicted)\n";
    s += &" ".repeat(cell);
    for k in 0..classes {
        s += &format!("{k:>cell$}");
    }
    s += "\n";
    for (k, row) in report.matrix.iter().enumerate() {
        s += &format!("{k:>cell$}");
        for v in row {
            s += &format!("{v:>cell$}");
        }
        if let Some(name) = names.and_then(|n| n.get(k)) {
            s += &format!("  {}", crate::fmt::printable(name));
        }
        s += "\n";
    }
    s += "per-class accuracy\n";
    for (k, a) in report.per_class_accuracy().iter().enumerate() {
        match names.and_then(|n| n.get(k)) {
            Some(name) => s += &format!("  {k} {}: {a:.4}\n", crate::fmt::printable(name)),
            None => s += &format!("  {k}: {a:.4}\n"),
        }
    }
    s
}

/// The same as one JSON object: count, loss, accuracy, per-class accuracy, the matrix
/// (`confusion[true][predicted]`) and the class names (null when the data has none), with the
/// checkpoint and the split it was given.
pub fn to_json(
    report: &ConfusionReport,
    names: Option<&[String]>,
    checkpoint: &Path,
    split: &str,
) -> serde_json::Value {
    serde_json::json!({
        "checkpoint": checkpoint.display().to_string(),
        "split": split,
        "count": report.count,
        "correct": report.correct,
        "loss": report.loss,
        "accuracy": report.accuracy(),
        "classes": report.matrix.len(),
        "per_class_accuracy": report.per_class_accuracy(),
        "confusion": report.matrix,
        "class_names": names,
    })
}

/// Draws the images `indices` of `data` in a grid, 10 a row, dark ink on white, each with the
/// caption "true / predicted" (by name when `names` are given, each cut to
/// [`MAX_CAPTION_NAME_CHARS`]) under it, as a PNG. The picture is drawn in memory and written
/// atomically (temporary file and rename): a failure, or a panic inside the plotting crate,
/// is an error and leaves no file, or the previous one, at `path`.
pub fn misclassified_grid(
    path: &Path,
    data: &Dataset,
    indices: &[usize],
    predicted: &[usize],
    names: Option<&[String]>,
) -> Result<()> {
    assert_eq!(indices.len(), predicted.len(), "one prediction per image");
    if indices.is_empty() || indices.len() > MAX_GRID_IMAGES {
        return Err(Error::config(
            "--misclassified",
            format!(
                "{} images; the grid shows 1 to {MAX_GRID_IMAGES}",
                indices.len()
            ),
        ));
    }
    register_font();
    let captions = captions(data, indices, predicted, names);
    let grid = Grid::new(data, &captions);
    let mut rgb = vec![0u8; grid.size.0 as usize * grid.size.1 as usize * 3];
    // plotters panics on some inputs (text it cannot lay out, a size it cannot handle); that
    // must be an error for this one picture, not the end of the program.
    let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        grid.draw(&mut rgb, data, indices, &captions)
    }))
    .unwrap_or_else(|_| Err("the plotting library panicked".to_string()));
    drawn.map_err(|msg| {
        Error::io(
            path,
            std::io::Error::other(format!("drawing the misclassified images failed: {msg}")),
        )
    })?;
    let png = super::plot::encode_png(path, rgb, grid.size)?;
    crate::checkpoint::write_atomic(path, &png)
}

/// "true / predicted" for each of `indices`, by name when `names` are given.
fn captions(
    data: &Dataset,
    indices: &[usize],
    predicted: &[usize],
    names: Option<&[String]>,
) -> Vec<String> {
    indices
        .iter()
        .zip(predicted)
        .map(|(&i, &p)| {
            format!(
                "{} / {}",
                caption_name(&class_name(names, data.label(i) as usize)),
                caption_name(&class_name(names, p))
            )
        })
        .collect()
}

/// The layout of the grid: image size, cell size and the picture's size, in pixels.
struct Grid {
    rows: u32,
    cols: u32,
    cell_w: u32,
    cell_h: u32,
    size: (u32, u32),
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

impl Grid {
    /// Cells as wide as the longest of `captions` needs, one a caption.
    fn new(data: &Dataset, captions: &[String]) -> Grid {
        let (rows, cols) = (data.rows() as u32, data.cols() as u32);
        let longest = captions
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0) as u32;
        // About 8 pixels a character at the caption's size.
        let cell_w = (cols * GRID_SCALE + 16).max(longest * 8 + 12);
        let cell_h = rows * GRID_SCALE + 30;
        let across = captions.len().min(GRID_COLUMNS) as u32;
        let down = captions.len().div_ceil(GRID_COLUMNS) as u32;
        Grid {
            rows,
            cols,
            cell_w,
            cell_h,
            size: (across * cell_w, down * cell_h),
        }
    }

    /// The whole grid into `rgb`, white first.
    fn draw(
        &self,
        rgb: &mut [u8],
        data: &Dataset,
        indices: &[usize],
        captions: &[String],
    ) -> std::result::Result<(), String> {
        let root = BitMapBackend::with_buffer(rgb, self.size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        for (n, (&i, caption)) in indices.iter().zip(captions).enumerate() {
            self.draw_cell(&root, n, data.image(i), caption)?;
        }
        root.present().map_err(|e| e.to_string())
    }

    /// Cell `n`: the image, a grey frame around it and its caption under it.
    fn draw_cell(
        &self,
        root: &Area,
        n: usize,
        image: &[u8],
        caption: &str,
    ) -> std::result::Result<(), String> {
        let (rows, cols) = (self.rows, self.cols);
        let (cx, cy) = (
            (n % GRID_COLUMNS) as u32 * self.cell_w,
            (n / GRID_COLUMNS) as u32 * self.cell_h,
        );
        let left = cx + (self.cell_w - cols * GRID_SCALE) / 2;
        let top = cy + 4;
        for (k, &v) in image.iter().enumerate() {
            if v == 0 {
                continue;
            }
            let (x, y) = (k as u32 % cols, k as u32 / cols);
            let (x0, y0) = (left + x * GRID_SCALE, top + y * GRID_SCALE);
            let shade = 255 - v;
            root.draw(&Rectangle::new(
                [
                    (x0 as i32, y0 as i32),
                    ((x0 + GRID_SCALE) as i32, (y0 + GRID_SCALE) as i32),
                ],
                RGBColor(shade, shade, shade).filled(),
            ))
            .map_err(|e| e.to_string())?;
        }
        root.draw(&Rectangle::new(
            [
                (left as i32 - 1, top as i32 - 1),
                (
                    (left + cols * GRID_SCALE) as i32,
                    (top + rows * GRID_SCALE) as i32,
                ),
            ],
            RGBColor(200, 200, 200).stroke_width(1),
        ))
        .map_err(|e| e.to_string())?;
        let style = TextStyle::from((FONT, 16).into_font())
            .color(&RGBColor(180, 0, 0))
            .pos(text_anchor::Pos::new(
                text_anchor::HPos::Center,
                text_anchor::VPos::Top,
            ));
        root.draw(&Text::new(
            caption.to_string(),
            (
                (cx + self.cell_w / 2) as i32,
                (top + rows * GRID_SCALE + 5) as i32,
            ),
            style,
        ))
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ConfusionReport {
        ConfusionReport {
            loss: 0.5,
            correct: 7,
            count: 10,
            matrix: vec![vec![3, 1, 0], vec![0, 2, 1], vec![1, 0, 2]],
        }
    }

    #[test]
    fn the_matrix_carries_names_when_given() {
        let names: Vec<String> = ["cat", "dog", "bird"].map(String::from).to_vec();
        let text = render(&report(), Some(&names));
        assert!(text.contains("accuracy 0.7000 (7 of 10)"), "{text}");
        assert!(text.contains("     1     0     2     1  dog"), "{text}");
        assert!(text.contains("  2 bird: 0.6667"), "{text}");
        let plain = render(&report(), None);
        assert!(
            plain.contains("  2: 0.6667") && !plain.contains("dog"),
            "{plain}"
        );
        let json = to_json(&report(), Some(&names), Path::new("c.safetensors"), "test");
        assert_eq!(json["confusion"][2][0], 1);
        assert_eq!(json["class_names"][1], "dog");
        assert_eq!(json["classes"], 3);
        assert_eq!(json["per_class_accuracy"][1].as_f64(), Some(2.0 / 3.0));
        assert!(to_json(&report(), None, Path::new("c"), "test")["class_names"].is_null());
    }

    #[test]
    fn the_grid_is_a_png_of_the_right_size() {
        let data = Dataset::new(
            (0..3 * 16).map(|i| i as u8 * 5).collect(),
            vec![0, 1, 2],
            4,
            4,
            3,
            "t",
        )
        .unwrap();
        let path = std::env::temp_dir().join(format!("gpu-train-grid-{}.png", std::process::id()));
        misclassified_grid(&path, &data, &[0, 2], &[1, 0], None).unwrap();
        let img = image::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        // Two cells across, each as wide as its 5-character caption (5 x 8 + 12), one down
        // (4 x 4 + 30 high).
        assert_eq!((img.width(), img.height()), (2 * 52, 46));
        let e = misclassified_grid(&path, &data, &[], &[], None).unwrap_err();
        assert!(e.to_string().contains("--misclassified"));
    }

    #[test]
    fn long_names_are_cut_in_captions_and_escaped_in_the_matrix() {
        assert_eq!(caption_name("Ankle boot"), "Ankle boot");
        let long = "x".repeat(60_000);
        let cut = caption_name(&long);
        assert_eq!(cut.chars().count(), MAX_CAPTION_NAME_CHARS);
        assert!(cut.ends_with('…'));
        let names: Vec<String> = ["c\x1b[2J", "d\n0 forged", "e"].map(String::from).to_vec();
        let text = render(&report(), Some(&names));
        assert!(
            !text.contains('\x1b') && text.contains("c\\u{1b}[2J"),
            "{text}"
        );
        assert!(
            text.contains("d\\n0 forged") && text.lines().count() == 10,
            "{text}"
        );
    }
}
