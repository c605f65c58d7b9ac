//! The chapter's figures: the training loss (fig. 4-11), train/test accuracy per epoch
//! (fig. 4-12), the gradient of x0^2 + x1^2 as arrows (fig. 4-9) and the gradient-descent path
//! over its contours (fig. 4-10).
//!
//! Every function writes SVG when the path ends in `.svg` and PNG otherwise, always
//! [`PNG_SIZE`] pixels. Text uses the embedded DejaVu Sans, so no system fonts are needed.

use std::ops::Range;
use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::math;

/// Width and height of every figure, in pixels (SVG units for `.svg`).
pub const PNG_SIZE: (u32, u32) = (800, 600);

/// matplotlib's first two default colours, so the figures read like the chapter's.
const TAB_BLUE: RGBColor = RGBColor(31, 119, 180);
const TAB_ORANGE: RGBColor = RGBColor(255, 127, 14);
pub(crate) const FONT: &str = "sans-serif";

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type Drawn<DB, T = ()> =
    std::result::Result<T, DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Draws `$draw(&root, args..)` on the backend the extension picks and saves it. A macro
/// because the drawing functions are generic over the backend and a closure cannot be.
macro_rules! render {
    ($path:expr, $draw:ident($($arg:expr),*)) => {{
        let path: &Path = $path;
        register_font();
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg")) {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, PNG_SIZE).into_drawing_area();
                $draw(&root, $($arg),*)
                    .and_then(|()| root.present())
                    .map_err(|e| drawing_error(path, e))?;
            }
            crate::checkpoint::write_atomic(path, svg.as_bytes())
        } else {
            // Drawn in memory and encoded here, then written atomically: a full disk or a kill
            // leaves the previous picture or none, never half of one, and the error is the OS's.
            let (w, h) = PNG_SIZE;
            let mut rgb = vec![0u8; w as usize * h as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, PNG_SIZE).into_drawing_area();
                $draw(&root, $($arg),*)
                    .and_then(|()| root.present())
                    .map_err(|e| drawing_error(path, e))?;
            }
            crate::checkpoint::write_atomic(path, &encode_png(path, rgb, PNG_SIZE)?)
        }
    }};
}

/// A drawing error, in words (plotters' own text is a Debug dump).
fn drawing_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(
        path,
        std::io::Error::other(format!("drawing the figure failed: {e}")),
    )
}

/// RGB pixels as PNG bytes.
pub(crate) fn encode_png(path: &Path, rgb: Vec<u8>, (w, h): (u32, u32)) -> Result<Vec<u8>> {
    let image = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| {
        Error::io(
            path,
            std::io::Error::other("the pixel buffer has the wrong size"),
        )
    })?;
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| {
            Error::io(
                path,
                std::io::Error::other(format!("encoding the PNG failed: {e}")),
            )
        })?;
    Ok(png)
}

/// The training loss per iteration (the chapter's figure 4-11). Non-finite losses are left out
/// of the line rather than breaking the axis range.
pub fn loss_curve(path: impl AsRef<Path>, points: &[(usize, f64)], title: &str) -> Result<()> {
    render!(path.as_ref(), draw_loss_curve(points, title))
}

/// Train and test accuracy per epoch, `(epoch, train, test)`, on a 0..1 axis (figure 4-12).
pub fn accuracy_chart(path: impl AsRef<Path>, epochs: &[(f64, f64, f64)]) -> Result<()> {
    render!(path.as_ref(), draw_accuracy_chart(epochs))
}

/// The negative gradient of x0^2 + x1^2 (by `math::numerical_gradient`) as arrows on the
/// chapter's grid, x0 and x1 from -2 to 2.25 in steps of 0.25 (figure 4-9).
pub fn gradient_field(path: impl AsRef<Path>) -> Result<()> {
    render!(path.as_ref(), draw_gradient_field())
}

/// A gradient-descent path on x0^2 + x1^2 (the points of `math::gradient_descent`, start
/// first) over dashed contour circles, x0 and x1 in [-4, 4] (figure 4-10). Points outside the
/// box (a diverging run) are left out.
pub fn descent_path(path: impl AsRef<Path>, points: &[Vec<f64>]) -> Result<()> {
    render!(path.as_ref(), draw_descent_path(points))
}

/// plotters has no font registry on wasm32 (it draws text through the browser's canvas there);
/// the page draws its own curves, so the run folder's figures are native only in practice.
#[cfg(target_arch = "wasm32")]
pub(crate) fn register_font() {}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // A failure here cannot be fixed at run time and would surface as a drawing error anyway.
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("DejaVuSans.ttf"),
        );
    });
}

/// The setup every figure shares: white background, caption, axis labels and a light grid.
/// `square` narrows the plot so one unit is as long on both axes (circles stay round).
fn chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: Range<f64>,
    y: Range<f64>,
    (x_desc, y_desc): (&str, &str),
    square: bool,
) -> Drawn<DB, Chart<'a, DB>> {
    root.fill(&WHITE)?;
    let side = if square {
        20 + (PNG_SIZE.0 - PNG_SIZE.1) / 2
    } else {
        20
    };
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 24))
        .margin(20)
        .margin_left(side)
        .margin_right(side)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 18))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.04))
        .draw()?;
    Ok(chart)
}

/// Tick labels without float noise or a trailing ".0": 100, 0.5, -4 (and never "-0").
fn tick(v: &f64) -> String {
    format!("{}", (v * 1e6).round() / 1e6 + 0.0)
}

fn draw_loss_curve<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[(usize, f64)],
    title: &str,
) -> Drawn<DB> {
    let line: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|&(i, l)| (i as f64, l))
        .collect();
    let x_max = line.iter().map(|p| p.0).fold(1.0, f64::max);
    let y_min = line.iter().map(|p| p.1).fold(0.0, f64::min);
    let y_max = line
        .iter()
        .map(|p| p.1 * 1.05)
        .fold(f64::MIN_POSITIVE, f64::max);
    let mut chart = chart(
        root,
        title,
        0.0..x_max,
        y_min..y_max,
        ("iteration", "loss"),
        false,
    )?;
    chart.draw_series(LineSeries::new(line, TAB_BLUE.stroke_width(1)))?;
    Ok(())
}

fn draw_accuracy_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    epochs: &[(f64, f64, f64)],
) -> Drawn<DB> {
    let x_max = epochs.iter().map(|e| e.0).fold(1.0, f64::max);
    let mut chart = chart(
        root,
        "accuracy per epoch",
        0.0..x_max,
        0.0..1.0,
        ("epochs", "accuracy"),
        false,
    )?;
    // As in the chapter: train solid with circles, test dashed with squares.
    let train = TAB_BLUE.stroke_width(2);
    chart
        .draw_series(LineSeries::new(epochs.iter().map(|e| (e.0, e.1)), train))?
        .label("train acc")
        .legend(move |c| {
            EmptyElement::at(c)
                + PathElement::new([(0, 0), (24, 0)], train)
                + Circle::new((12, 0), 4, train.filled())
        });
    chart.draw_series(
        epochs
            .iter()
            .map(|e| Circle::new((e.0, e.1), 4, train.filled())),
    )?;

    let test = TAB_ORANGE.stroke_width(2);
    let square = || Rectangle::new([(-4, -4), (4, 4)], test.filled());
    chart
        .draw_series(DashedLineSeries::new(
            epochs.iter().map(|e| (e.0, e.2)),
            8,
            5,
            test,
        ))?
        .label("test acc")
        .legend(move |c| {
            EmptyElement::at(c)
                + PathElement::new([(0, 0), (24, 0)], test)
                + Rectangle::new([(8, -4), (16, 4)], test.filled())
        });
    chart.draw_series(
        epochs
            .iter()
            .map(|e| EmptyElement::at((e.0, e.2)) + square()),
    )?;

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
}

fn draw_gradient_field<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>) -> Drawn<DB> {
    // The chapter's np.arange(-2, 2.5, 0.25): 18 values, 2.5 excluded.
    let axis: Vec<f64> = (0..18).map(|i| -2.0 + 0.25 * i as f64).collect();
    let field: Vec<([f64; 2], [f64; 2])> = axis
        .iter()
        .flat_map(|&x0| axis.iter().map(move |&x1| [x0, x1]))
        .map(|mut p| {
            let g = math::numerical_gradient(math::function_2, &mut p);
            (p, [-g[0], -g[1]])
        })
        .collect();
    // Scale so the longest arrow spans 1.6 grid steps: long enough to read, little overlap.
    let longest = field
        .iter()
        .map(|(_, d)| d[0].hypot(d[1]))
        .fold(0.0, f64::max);
    let scale = 1.6 * 0.25 / longest;
    let arrows: Vec<Arrow> = field
        .iter()
        .filter_map(|&(p, d)| Arrow::new(p, [d[0] * scale, d[1] * scale]))
        .collect();

    let mut chart = chart(
        root,
        "−∇f of f(x0, x1) = x0^2 + x1^2",
        -2.5..2.5,
        -2.5..2.5,
        ("x0", "x1"),
        true,
    )?;
    let ink = BLACK.stroke_width(1);
    chart.draw_series(
        arrows
            .iter()
            .map(|a| PathElement::new([a.tail, a.base], ink)),
    )?;
    chart.draw_series(
        arrows
            .iter()
            .map(|a| Polygon::new(a.head.to_vec(), BLACK.filled())),
    )?;
    chart.draw_series([Circle::new((0.0, 0.0), 4, RED.filled())])?;
    Ok(())
}

/// A quiver arrow in data units: shaft from `tail` to `base`, filled head triangle `head`.
struct Arrow {
    tail: (f64, f64),
    base: (f64, f64),
    head: [(f64, f64); 3],
}

impl Arrow {
    /// The arrow from `p` along `d`; its head is a third of its length, like matplotlib's
    /// quiver (the chart is square, so heads keep their shape). None at the minimum (d = 0).
    fn new(p: [f64; 2], d: [f64; 2]) -> Option<Self> {
        let len = d[0].hypot(d[1]);
        if len < 1e-12 {
            return None;
        }
        let (ux, uy) = (d[0] / len, d[1] / len);
        let tip = (p[0] + d[0], p[1] + d[1]);
        let back = len / 3.0;
        let base = (tip.0 - ux * back, tip.1 - uy * back);
        let half = back / 2.5;
        let head = [
            tip,
            (base.0 - uy * half, base.1 + ux * half),
            (base.0 + uy * half, base.1 - ux * half),
        ];
        Some(Arrow {
            tail: (p[0], p[1]),
            base,
            head,
        })
    }
}

fn draw_descent_path<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[Vec<f64>],
) -> Drawn<DB> {
    const R: f64 = 4.0;
    let mut chart = chart(
        root,
        "gradient descent on f(x0, x1) = x0^2 + x1^2",
        -R..R,
        -R..R,
        ("x0", "x1"),
        true,
    )?;
    let dashed = BLACK.mix(0.35).stroke_width(1);
    // Contours f = r^2; r = 5 passes through the chapter's start (-3, 4).
    for r in [0.5, 1.0, 2.0, 3.0, 4.0, 5.0] {
        let circle = (0..=180).map(|i| {
            let a = i as f64 * std::f64::consts::TAU / 180.0;
            (r * a.cos(), r * a.sin())
        });
        // Clip by hand: plotters draws outside the plot box otherwise.
        let inside: Vec<_> = circle
            .filter(|p| p.0.abs() <= R && p.1.abs() <= R)
            .collect();
        for run in inside.chunk_by(|a, b| (a.0 - b.0).abs() + (a.1 - b.1).abs() < 0.5) {
            chart.draw_series(DashedLineSeries::new(run.iter().copied(), 6, 4, dashed))?;
        }
    }
    for axis in [[(-R, 0.0), (R, 0.0)], [(0.0, -R), (0.0, R)]] {
        chart.draw_series(DashedLineSeries::new(
            axis,
            8,
            6,
            TAB_BLUE.mix(0.6).stroke_width(1),
        ))?;
    }
    let in_box = |p: &&Vec<f64>| p.len() >= 2 && p[0].abs() <= R && p[1].abs() <= R;
    let visible: Vec<(f64, f64)> = points.iter().filter(in_box).map(|p| (p[0], p[1])).collect();
    chart.draw_series(LineSeries::new(visible.iter().copied(), TAB_BLUE.mix(0.35)))?;
    chart.draw_series(
        visible
            .iter()
            .map(|&p| Circle::new(p, 5, TAB_BLUE.filled())),
    )?;
    if let Some(start) = points.first().filter(in_box).map(|p| (p[0], p[1])) {
        let label = format!("start ({}, {})", tick(&start.0), tick(&start.1));
        chart.draw_series([EmptyElement::at(start) + Text::new(label, (12, -6), (FONT, 16))])?;
    }
    Ok(())
}
