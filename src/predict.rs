//! A picture through a trained net: PNG or JPEG of any size and colour, brought into the form of
//! the training data the way MNIST itself was made, then one forward pass on the CPU.
//!
//! The preparation ([`prepare`]): grey levels (transparency over white); ink bright on a dark
//! background, inverting when the border is light (the border's median decides); the
//! background level taken off; the ink's bounding box cropped; its longer side scaled to 20
//! pixels of a 28-pixel field (the same share of a field of another size), keeping the aspect
//! ratio (area averaging when shrinking, bilinear when growing); placed so that its centre of
//! mass falls on the field's centre; quantised to bytes like the IDX files.
//!
//! Nothing in a file is trusted: only a regular file is read (a FIFO or `/dev/zero` is named
//! as such), its size checked against [`MAX_IMAGE_BYTES`] first; the header is read under a
//! [`MAX_HEADER_ALLOC`] memory limit (a PNG colour profile inflating to a gigabyte is refused
//! at 4 MiB) and its dimensions checked against [`MAX_IMAGE_PIXELS`] before any pixel is
//! decoded, which then runs under a limit of [`DECODE_BYTES_PER_PIXEL`] a pixel; a JPEG's scans
//! are checked to hold the whole picture (`jpeg`). So a small file claiming 100000x100000
//! pixels is an error, not an allocation, and a picture costs at most a fixed amount a pixel.

mod decode;
mod jpeg;

pub use decode::{
    decode_image, grey_from_rgba, read_image, Grey, DECODE_BYTES_PER_PIXEL, MAX_HEADER_ALLOC,
    MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS,
};

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::cpu::{fill_x, forward::forward};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::fmt::printable;
use crate::model::{MlpSpec, Params};

/// MNIST's field and the box its digits were scaled into.
pub const MNIST_FIELD: usize = 28;
pub const MNIST_BOX: usize = 20;

/// Ink at or below this (0..1, above the background) is noise, e.g. a JPEG's ringing or paper
/// grain, and is left out; everything above it is kept. MNIST's own faint edges are 1/255 and
/// up, so a lower value would keep them, but noise too.
pub const INK_THRESHOLD: f32 = 0.05;

/// Ink above this says where the figure ends, for its size: a picture drawn large and smooth
/// has a faint halo (a bilinear 4x enlargement spreads each edge by 2 pixels above 0.05,
/// which would shrink the figure by 5%) that should not count. At 51/255 the first 2,000
/// MNIST test digits still measure 20 pixels on their longer side, so MNIST's own images
/// keep their size.
pub const EXTENT_THRESHOLD: f32 = 0.2;

/// What [`prepare`] made of a picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The field is `side x side`.
    pub side: usize,
    /// The net's input, row-major bytes like an IDX image (ink bright).
    pub pixels: Vec<u8>,
    /// Whether the picture was inverted (its border was light).
    pub inverted: bool,
    /// The ink's bounding box in the picture: x, y, width, height.
    pub ink_box: (usize, usize, usize, usize),
    /// The box's size after scaling.
    pub scaled: (usize, usize),
}

impl Prepared {
    /// One line saying what was done, for people.
    pub fn describe(&self, picture: &Grey) -> String {
        let (x, y, w, h) = self.ink_box;
        format!(
            "{}x{} picture{}, ink {w}x{h} at ({x}, {y}) scaled to {}x{}, centred by mass in {}x{}",
            picture.width,
            picture.height,
            if self.inverted {
                " (light background: inverted)"
            } else {
                ""
            },
            self.scaled.0,
            self.scaled.1,
            self.side,
            self.side
        )
    }

    /// The input as ASCII art, two characters a pixel so that it looks square.
    pub fn ascii_art(&self) -> String {
        ascii_art(&self.pixels, self.side)
    }
}

/// `pixels` (`side` wide, bytes, ink bright) as ASCII art from ' ' to '@'.
pub fn ascii_art(pixels: &[u8], side: usize) -> String {
    const RAMP: &[u8] = b" .:-=+*#%@";
    let mut s = String::with_capacity(pixels.len() * 2 + pixels.len() / side.max(1));
    for row in pixels.chunks(side.max(1)) {
        for &p in row {
            let c = RAMP[(p as usize * RAMP.len() / 256).min(RAMP.len() - 1)] as char;
            s.push(c);
            s.push(c);
        }
        s.push('\n');
    }
    s
}

/// The side of the square field a net with `spec.input` inputs reads: 28 for 784.
pub fn field_side(spec: &MlpSpec) -> Result<usize> {
    let side = (spec.input as f64).sqrt().round() as usize;
    if side * side != spec.input {
        return Err(Error::config(
            "--weights",
            format!(
                "the net reads {} inputs, which is not a square image (n x n); predict draws \
                 pictures into a square field, so it needs a net trained on square images",
                spec.input
            ),
        ));
    }
    Ok(side)
}

/// The box the ink's longer side is scaled to in a `side` field: MNIST's 20 of 28.
pub fn box_side(side: usize) -> usize {
    ((side * MNIST_BOX) as f64 / MNIST_FIELD as f64)
        .round()
        .max(1.0) as usize
}

/// Brings a picture into the training data's form in a `side x side` field (see the module
/// docs). A picture with no ink (one flat colour) is an error naming `file`.
pub fn prepare(file: &Path, picture: &Grey, side: usize) -> Result<Prepared> {
    let (w, h) = (picture.width, picture.height);
    if w == 0 || h == 0 {
        return Err(Error::data(
            file,
            format!("is {w}x{h} pixels; a picture needs at least one"),
        ));
    }
    assert_eq!(
        picture.pixels.len(),
        w * h,
        "Grey holds width x height pixels"
    );
    let ink = Ink::from_border(border_median(picture));
    let Some(kept) = ink_box(&picture.pixels, w, |v| ink.level(v) > INK_THRESHOLD) else {
        return Err(Error::data(
            file,
            "has no ink: it is one flat colour (or nearly); draw a dark figure on a light \
             background, or a light one on a dark background",
        ));
    };
    let extent = ink_box(&picture.pixels, w, |v| ink.level(v) > EXTENT_THRESHOLD).unwrap_or(kept);
    let (x0, y0, bw, bh) = kept;
    let crop = |x: usize, y: usize| ink.level(picture.pixels[(y0 + y) * w + x0 + x]);
    let scale = box_scale(kept, extent, side);
    let fit = |len: usize| ((len as f64 * scale - 1e-9).ceil() as usize).clamp(1, side);
    let (sw, sh) = (fit(bw), fit(bh));
    let scaled = resample_by(crop, bw, bh, sw, sh, 1.0 / scale);
    Ok(Prepared {
        side,
        pixels: centred_by_mass(&scaled, sw, sh, side),
        inverted: ink.inverted,
        ink_box: extent,
        scaled: (sw, sh),
    })
}

/// The median of the picture's border, which decides which level is the background: robust
/// to ink that touches the border.
fn border_median(picture: &Grey) -> f32 {
    // A border longer than BORDER_SAMPLES (a picture over 32,768 pixels wide and high together)
    // is sampled evenly, so that a 1 x 16.7-million picture does not cost 134 MB here.
    const BORDER_SAMPLES: usize = 1 << 16;
    let (w, h) = (picture.width, picture.height);
    let on_border = |i: usize| -> f32 {
        if i < 2 * w {
            let x = i / 2;
            picture.pixels[if i.is_multiple_of(2) {
                x
            } else {
                (h - 1) * w + x
            }]
        } else {
            let y = (i - 2 * w) / 2;
            picture.pixels[if i.is_multiple_of(2) {
                y * w
            } else {
                y * w + w - 1
            }]
        }
    };
    let n = 2 * (w + h);
    let mut border: Vec<f32> = if n <= BORDER_SAMPLES {
        (0..n).map(on_border).collect()
    } else {
        (0..BORDER_SAMPLES)
            .map(|k| on_border(k * n / BORDER_SAMPLES))
            .collect()
    };
    border.sort_by(f32::total_cmp);
    border[border.len() / 2]
}

/// How a grey level becomes an ink level (0..1, ink bright, the background taken off); the
/// level is computed where it is needed rather than stored, as a second copy of a large
/// picture would double what it costs.
#[derive(Debug, Clone, Copy)]
struct Ink {
    /// The border is light, so the picture is inverted.
    inverted: bool,
    /// The background's level after any inversion.
    background: f32,
    /// What lies between the background and full ink.
    span: f32,
}

impl Ink {
    fn from_border(median: f32) -> Ink {
        let inverted = median > 0.5;
        let background = if inverted { 1.0 - median } else { median };
        Ink {
            inverted,
            background,
            span: 1.0 - background,
        }
    }

    fn level(&self, v: f32) -> f32 {
        let v = if self.inverted { 1.0 - v } else { v };
        if self.span > 0.0 {
            ((v - self.background) / self.span).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// The scale that brings the figure's longer side (`extent`, the ink above
/// [`EXTENT_THRESHOLD`]) to the box of a `side` field, unless everything `kept` would then
/// not fit the field.
fn box_scale(
    kept: (usize, usize, usize, usize),
    extent: (usize, usize, usize, usize),
    side: usize,
) -> f64 {
    let (bw, bh) = (kept.2, kept.3);
    let target = box_side(side) as f64;
    let scale = target / extent.2.max(extent.3) as f64;
    if (bw.max(bh) as f64 * scale).ceil() > side as f64 {
        // Faint ink far from the figure: fit everything kept instead.
        return target / bw.max(bh) as f64;
    }
    scale
}

/// The `sw x sh` ink `scaled` placed in a `side x side` field so that its centre of mass falls
/// on the field's centre (as far as the field allows), quantised to bytes.
fn centred_by_mass(scaled: &[f32], sw: usize, sh: usize, side: usize) -> Vec<u8> {
    // Centre of mass, in pixel-index coordinates; MNIST's digits have theirs at (14, 14) of 28.
    let (mut mass, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &v) in scaled.iter().enumerate() {
        let v = v as f64;
        mass += v;
        mx += v * (i % sw) as f64;
        my += v * (i / sw) as f64;
    }
    let centre = side as f64 / 2.0;
    let place = |com: f64, len: usize| -> usize {
        let at = (centre - com).round().max(0.0) as usize;
        at.min(side - len)
    };
    let (ox, oy) = if mass > 0.0 {
        (place(mx / mass, sw), place(my / mass, sh))
    } else {
        ((side - sw) / 2, (side - sh) / 2)
    };
    let mut pixels = vec![0u8; side * side];
    for y in 0..sh {
        for x in 0..sw {
            pixels[(oy + y) * side + ox + x] = (scaled[y * sw + x] * 255.0).round() as u8;
        }
    }
    pixels
}

/// Resamples a `w x h` picture to `nw x nh`, each axis on its own: area averaging where it
/// shrinks (every source pixel counts by the share of it an output pixel covers; the same size
/// is an exact copy), bilinear where it grows.
pub fn resample(src: &[f32], w: usize, h: usize, nw: usize, nh: usize) -> Vec<f32> {
    let wx = axis_weights(w, nw, w as f64 / nw as f64);
    let wy = axis_weights(h, nh, h as f64 / nh as f64);
    apply(|x, y| src[y * w + x], nw, &wx, &wy)
}

/// [`resample`] of the picture `src(x, y)` with one ratio (source pixels per output pixel) for
/// both axes; output pixels past the source's end see no ink.
fn resample_by(
    src: impl Fn(usize, usize) -> f32,
    w: usize,
    h: usize,
    nw: usize,
    nh: usize,
    ratio: f64,
) -> Vec<f32> {
    let wx = axis_weights(w, nw, ratio);
    let wy = axis_weights(h, nh, ratio);
    apply(src, nw, &wx, &wy)
}

/// The box of the pixels for which `is_ink` holds: x, y, width, height.
fn ink_box(
    pixels: &[f32],
    w: usize,
    is_ink: impl Fn(f32) -> bool,
) -> Option<(usize, usize, usize, usize)> {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (i, &v) in pixels.iter().enumerate() {
        if is_ink(v) {
            let (x, y) = (i % w, i / w);
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    (x0 != usize::MAX).then(|| (x0, y0, x1 - x0 + 1, y1 - y0 + 1))
}

/// The source pixels one output pixel reads along an axis: `len` of them from `start`, the
/// first and last weighted on their own and those between alike. Three numbers instead of a
/// list, so that shrinking 16.7 million pixels to 20 costs no list of 16.7 million weights.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    start: usize,
    len: usize,
    first: f32,
    mid: f32,
    last: f32,
}

impl Span {
    fn weight(&self, k: usize) -> f32 {
        if k == 0 {
            self.first
        } else if k + 1 == self.len {
            self.last
        } else {
            self.mid
        }
    }
}

/// Output row by output row: each source row it reads is resampled across, then added in by
/// its weight, so only one row of `nw` is held besides the output (the same sums, in the same
/// order, as resampling all rows across first).
fn apply(src: impl Fn(usize, usize) -> f32, nw: usize, wx: &[Span], wy: &[Span]) -> Vec<f32> {
    let mut out = vec![0.0f32; nw * wy.len()];
    let mut row = vec![0.0f32; nw];
    for (y, sy) in wy.iter().enumerate() {
        for k in 0..sy.len {
            let (j, c) = (sy.start + k, sy.weight(k));
            for (x, sx) in wx.iter().enumerate() {
                row[x] = (0..sx.len)
                    .map(|i| src(sx.start + i, j) * sx.weight(i))
                    .sum();
            }
            for (o, &r) in out[y * nw..(y + 1) * nw].iter_mut().zip(&row) {
                *o += r * c;
            }
        }
    }
    out
}

/// For each of `to` output positions along an axis of `from` pixels, `ratio` source pixels
/// each, the source pixels it reads: areas when shrinking (weights summing to the share of the
/// output pixel inside the source), bilinear when growing.
fn axis_weights(from: usize, to: usize, ratio: f64) -> Vec<Span> {
    (0..to)
        .map(|i| {
            if ratio >= 1.0 {
                let (a, b) = (i as f64 * ratio, (i + 1) as f64 * ratio);
                let cover = |j: usize| (b.min(j as f64 + 1.0) - a.max(j as f64)) / ratio;
                let mut start = a.floor() as usize;
                // Pixels j with j < b, within the source.
                let mut end = (b.ceil() as usize).min(from);
                // Those between the ends are covered whole: (j + 1 - j) / ratio.
                while start < end && cover(start) <= 0.0 {
                    start += 1;
                }
                while end > start && cover(end - 1) <= 0.0 {
                    end -= 1;
                }
                let len = end.saturating_sub(start);
                Span {
                    start,
                    len,
                    first: cover(start) as f32,
                    mid: (1.0 / ratio) as f32,
                    last: if len > 0 { cover(end - 1) as f32 } else { 0.0 },
                }
            } else {
                let at = ((i as f64 + 0.5) * ratio - 0.5).clamp(0.0, (from - 1) as f64);
                let j = at.floor() as usize;
                let t = at - j as f64;
                if j + 1 < from && t > 0.0 {
                    Span {
                        start: j,
                        len: 2,
                        first: (1.0 - t) as f32,
                        mid: 0.0,
                        last: t as f32,
                    }
                } else {
                    Span {
                        start: j,
                        len: 1,
                        first: 1.0,
                        mid: 0.0,
                        last: 1.0,
                    }
                }
            }
        })
        .collect()
}

/// The class probabilities of every image of `data` (row after row of `spec.classes`), by the
/// same f32 forward pass, in the same chunks, as `gpu-train eval` (`cpu::confusion`).
pub fn probabilities(spec: &MlpSpec, params: &Params, data: &Dataset) -> Vec<f32> {
    probabilities_f32(spec, &params.to_f32(), data)
}

/// [`probabilities`] with the parameters already in f32 (`Params::to_f32`).
pub fn probabilities_f32(spec: &MlpSpec, p: &[f32], data: &Dataset) -> Vec<f32> {
    const ROWS: usize = 500;
    let all: Vec<u32> = (0..data.len() as u32).collect();
    let mut out = Vec::with_capacity(data.len() * spec.classes);
    let mut x = Vec::new();
    for rows in all.chunks(ROWS) {
        fill_x::<f32>(data, rows, &mut x);
        out.extend(forward(spec, p, &x, rows.len()).probs);
    }
    out
}

/// The predicted class of each row of `probs` (the first of equals, as eval counts them).
pub fn argmax_rows(probs: &[f32], classes: usize) -> Vec<usize> {
    probs.chunks(classes).map(crate::math::argmax).collect()
}

/// The `k` most probable classes of one row, most probable first (the lower class first among
/// equals).
pub fn top_k(row: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    order.truncate(k);
    order
}

/// The checkpoint note that holds the class names (a JSON list in label order), written by
/// `gpu-train train` when the data has a `classes.txt`.
pub const CLASS_NAMES_NOTE: &str = "class_names";

/// The class names a checkpoint records, checked against its class count; None when it has
/// none.
pub fn checkpoint_class_names(path: &Path, ckpt: &Checkpoint) -> Result<Option<Vec<String>>> {
    let Some(text) = ckpt.notes.get(CLASS_NAMES_NOTE) else {
        return Ok(None);
    };
    let bad = |what: String| Error::Checkpoint {
        file: path.to_path_buf(),
        what,
    };
    let names: Vec<String> = serde_json::from_str(text)
        .map_err(|e| bad(format!("metadata \"{CLASS_NAMES_NOTE}\" is malformed: {e}")))?;
    crate::data::check_class_names(&names).map_err(|(at, what)| {
        bad(format!(
            "metadata \"{CLASS_NAMES_NOTE}\", class {at}: {what}; retrain with a classes.txt \
             that passes, or remove the metadata"
        ))
    })?;
    if names.len() != ckpt.params.spec.classes {
        return Err(bad(format!(
            "metadata \"{CLASS_NAMES_NOTE}\" holds {} names for a net of {} classes",
            names.len(),
            ckpt.params.spec.classes
        )));
    }
    Ok(Some(names))
}

/// Prepared pictures as a data set (labels all 0), so that they go through the forward pass
/// exactly as a data set's images do.
pub fn as_dataset(prepared: &[Prepared], side: usize, classes: usize) -> Result<Dataset> {
    let pixels = prepared
        .iter()
        .flat_map(|p| p.pixels.iter().copied())
        .collect();
    Dataset::new(
        pixels,
        vec![0; prepared.len()],
        side,
        side,
        classes,
        "pictures given to predict",
    )
}

/// What `gpu-train predict` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Classes listed a picture (at least 1).
    pub top: usize,
    /// One JSON object a picture instead of a line.
    pub json: bool,
    /// Also what preparation did and the net's input as ASCII art (on `err` with `json`).
    pub show: bool,
}

/// `gpu-train predict`: each picture of `images` in turn is read, prepared, put through the
/// net and its result written to `out` before the next is read, so memory does not grow with
/// the number of pictures. A picture that cannot be read is an error line on `err` and the
/// others still run; returns how many failed. File and class names are written through
/// [`printable`], so none can drive the terminal or forge a line.
pub fn run(
    weights: &Path,
    images: &[PathBuf],
    opts: Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<usize> {
    if opts.top == 0 {
        return Err(Error::config(
            "--top",
            "must be at least 1 (the default lists 3 classes)",
        ));
    }
    let ckpt = crate::checkpoint::load(weights)?;
    let spec = &ckpt.params.spec;
    let net = Net {
        spec,
        side: field_side(spec)?,
        names: checkpoint_class_names(weights, &ckpt)?,
        params: ckpt.params.to_f32(),
        top: opts.top.min(spec.classes),
        opts,
    };
    let mut failed = 0;
    for path in images {
        let ready = read_image(path).and_then(|g| Ok((prepare(path, &g, net.side)?, g)));
        match ready {
            Ok((prepared, picture)) => net.predict(path, prepared, picture, out, err)?,
            Err(e) => {
                writeln!(err, "error: {}", printable(&e.to_string())).map_err(stderr)?;
                failed += 1;
            }
        }
    }
    if failed > 0 {
        writeln!(
            err,
            "error: {failed} of {} pictures could not be read (above)",
            images.len()
        )
        .map_err(stderr)?;
    }
    Ok(failed)
}

fn stdout(e: std::io::Error) -> Error {
    Error::io("standard output", e)
}

fn stderr(e: std::io::Error) -> Error {
    Error::io("standard error", e)
}

/// What [`run`] puts each picture through and writes its result with: the loaded net, its
/// field and class names, and the options.
struct Net<'a> {
    spec: &'a MlpSpec,
    side: usize,
    names: Option<Vec<String>>,
    /// The parameters in f32 (`Params::to_f32`).
    params: Vec<f32>,
    /// Classes listed a picture: `opts.top`, at most the net's classes.
    top: usize,
    opts: Options,
}

impl Net<'_> {
    /// One prepared picture through the net, its result (and with `show` its preparation)
    /// written and flushed.
    fn predict(
        &self,
        path: &Path,
        prepared: Prepared,
        picture: Grey,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<()> {
        let set = as_dataset(
            std::slice::from_ref(&prepared),
            self.side,
            self.spec.classes,
        )?;
        let probs = probabilities_f32(self.spec, &self.params, &set);
        drop(set);
        let top = top_k(&probs, self.top);
        let shown = crate::fmt::path(path);
        if self.opts.show {
            let art = format!(
                "{shown}: {}\n{}",
                prepared.describe(&picture),
                prepared.ascii_art()
            );
            if self.opts.json {
                write!(err, "{art}").map_err(stderr)?;
            } else {
                write!(out, "{art}").map_err(stdout)?;
            }
        }
        drop(picture);
        if self.opts.json {
            writeln!(out, "{}", self.json_line(path, &prepared, &top)).map_err(stdout)?;
        } else {
            writeln!(out, "{shown}: {}", self.text_line(&top)).map_err(stdout)?;
        }
        // A line a picture as it is done, also when stdout is a file or a pipe.
        out.flush().map_err(stdout)
    }

    fn name(&self, c: usize) -> String {
        crate::data::class_name(self.names.as_deref(), c)
    }

    /// The result as one JSON object.
    fn json_line(
        &self,
        path: &Path,
        prepared: &Prepared,
        top: &[(usize, f32)],
    ) -> serde_json::Value {
        let (x, y, w, h) = prepared.ink_box;
        // serde_json escapes every control character; the file name is kept as it is.
        serde_json::json!({
            "file": path.display().to_string(),
            "top": top.iter().map(|&(c, p)| serde_json::json!({
                "class": c, "name": self.name(c), "probability": p,
            })).collect::<Vec<_>>(),
            "inverted": prepared.inverted,
            "ink_box": [x, y, w, h],
            "scaled": [prepared.scaled.0, prepared.scaled.1],
            "field": [self.side, self.side],
        })
    }

    /// The result as text, after the file name: "class [name] percent" for each of `top`.
    fn text_line(&self, top: &[(usize, f32)]) -> String {
        let parts: Vec<String> = top
            .iter()
            .map(|&(c, p)| match &self.names {
                Some(_) => format!("{c} {} {:.2}%", printable(&self.name(c)), 100.0 * p),
                None => format!("{c} {:.2}%", 100.0 * p),
            })
            .collect();
        parts.join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::ImageFormat;

    use super::*;

    fn grey(width: usize, height: usize, f: impl Fn(usize, usize) -> f32) -> Grey {
        Grey {
            width,
            height,
            pixels: (0..width * height)
                .map(|i| f(i % width, i / width))
                .collect(),
        }
    }

    fn file() -> &'static Path {
        Path::new("pic.png")
    }

    #[test]
    fn same_size_resampling_is_an_exact_copy() {
        let src: Vec<f32> = (0..20 * 13).map(|i| (i % 256) as f32 / 255.0).collect();
        assert_eq!(resample(&src, 20, 13, 20, 13), src);
    }

    #[test]
    fn shrinking_averages_areas_and_growing_interpolates() {
        // 4x4 blocks of one value each shrink to those values exactly.
        let src: Vec<f32> = (0..8 * 4).map(|i| ((i % 8) / 4) as f32).collect();
        assert_eq!(resample(&src, 8, 4, 2, 1), vec![0.0, 1.0]);
        // 3 -> 2: the middle pixel is shared half and half.
        let out = resample(&[0.0, 0.9, 0.3], 3, 1, 2, 1);
        assert!(
            (out[0] - 0.3).abs() < 1e-6 && (out[1] - 0.5).abs() < 1e-6,
            "{out:?}"
        );
        // 2 -> 4 bilinear: ends kept, the inner points a quarter and three quarters along.
        let out = resample(&[0.0, 1.0], 2, 1, 4, 1);
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
        // Mass is kept when shrinking by any ratio.
        let src: Vec<f32> = (0..37 * 23)
            .map(|i| ((i * 7919) % 101) as f32 / 100.0)
            .collect();
        let out = resample(&src, 37, 23, 20, 12);
        let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        assert!((mean(&src) - mean(&out)).abs() < 1e-5);
    }

    #[test]
    fn a_dark_stroke_on_white_becomes_a_bright_centred_digit() {
        // A black vertical bar, 60 high and 12 wide, at x 100..112, y 30..90 of a white 200x160
        // picture: inverted, scaled to 4x20, its mass (1.5, 9.5) placed at (14, 14) to the pixel
        // (halves round up: columns 13..=16, rows 5..=24).
        let pic = grey(200, 160, |x, y| {
            if (100..112).contains(&x) && (30..90).contains(&y) {
                0.0
            } else {
                1.0
            }
        });
        let p = prepare(file(), &pic, 28).unwrap();
        assert!(p.inverted);
        assert_eq!(p.ink_box, (100, 30, 12, 60));
        assert_eq!(p.scaled, (4, 20));
        let on: Vec<usize> = (0..784).filter(|&i| p.pixels[i] > 0).collect();
        assert_eq!(on.len(), 80);
        assert!(on.iter().all(|&i| p.pixels[i] == 255));
        let (xs, ys): (Vec<usize>, Vec<usize>) = on.iter().map(|&i| (i % 28, i / 28)).unzip();
        assert_eq!((xs.iter().min(), xs.iter().max()), (Some(&13), Some(&16)));
        assert_eq!((ys.iter().min(), ys.iter().max()), (Some(&5), Some(&24)));
    }

    #[test]
    fn an_mnist_shaped_picture_comes_through_unchanged() {
        // Already in the form: bright ink in a 20-pixel box (rows 4..24, columns 11..18), its
        // mass at (14.0, 14.0) to 1e-3 (the heavier bottom row pulls it from 13.5).
        let mut pixels = vec![0u8; 784];
        for y in 4..24 {
            for x in 11..18 {
                pixels[y * 28 + x] = if y == 23 { 211 } else { 100 };
            }
        }
        let pic = grey(28, 28, |x, y| pixels[y * 28 + x] as f32 / 255.0);
        let p = prepare(file(), &pic, 28).unwrap();
        assert!(!p.inverted);
        assert_eq!(p.pixels, pixels);
    }

    #[test]
    fn grey_background_and_noise_are_taken_off() {
        // Grey paper (0.8) with faint noise, a darker (0.2) square: the square is the ink.
        let pic = grey(50, 50, |x, y| {
            if (20..30).contains(&x) && (10..40).contains(&y) {
                0.2
            } else {
                0.8 + 0.02 * (((x * 31 + y * 17) % 3) as f32 - 1.0)
            }
        });
        let p = prepare(file(), &pic, 28).unwrap();
        assert!(p.inverted);
        assert_eq!(p.ink_box, (20, 10, 10, 30));
        assert_eq!(p.scaled, (7, 20));
        // (0.8 - 0.2) / 0.8 of full ink; 10 columns at 20/30 are 6 2/3, so the seventh is
        // two-thirds covered.
        assert!(
            p.pixels.iter().all(|&v| v == 0 || v == 191 || v == 128),
            "{:?}",
            p.pixels
        );
        assert_eq!(p.pixels.iter().filter(|&&v| v == 128).count(), 20);
    }

    #[test]
    fn flat_pictures_are_an_error_naming_the_file() {
        for level in [0.0, 0.5, 1.0] {
            let e = prepare(file(), &grey(9, 7, |_, _| level), 28).unwrap_err();
            assert!(e.to_string().contains("pic.png") && e.to_string().contains("no ink"));
        }
        let e = prepare(file(), &grey(0, 0, |_, _| 0.0), 28).unwrap_err();
        assert!(e.to_string().contains("0x0"));
    }

    #[test]
    fn other_field_sizes_scale_the_box_in_proportion() {
        assert_eq!(box_side(28), 20);
        assert_eq!(box_side(14), 10);
        assert_eq!(box_side(1), 1);
        let pic = grey(30, 30, |x, y| if x == y { 1.0 } else { 0.0 });
        let p = prepare(file(), &pic, 14).unwrap();
        assert_eq!((p.side, p.pixels.len(), p.scaled), (14, 196, (10, 10)));
        let spec = MlpSpec::two_layer(14 * 14, 5, 3).unwrap();
        assert_eq!(field_side(&spec).unwrap(), 14);
        let spec = MlpSpec::two_layer(28 * 27, 5, 3).unwrap();
        assert!(field_side(&spec).unwrap_err().to_string().contains("756"));
    }

    #[test]
    fn png_and_jpeg_decode_to_grey() {
        let mut png = Vec::new();
        let img = image::GrayImage::from_fn(5, 3, |x, y| image::Luma([(x * 50 + y) as u8]));
        img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let g = decode_image(file(), &png).unwrap();
        assert_eq!((g.width, g.height), (5, 3));
        assert_eq!(g.pixels[5 + 2], 101.0 / 255.0);
        // Transparent pixels are white paper.
        let rgba = image::RgbaImage::from_fn(2, 1, |x, _| image::Rgba([0, 0, 0, 255 * x as u8]));
        let mut png = Vec::new();
        rgba.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        assert_eq!(decode_image(file(), &png).unwrap().pixels, vec![1.0, 0.0]);
        let rgb = image::RgbImage::from_fn(16, 8, |_, _| image::Rgb([200, 200, 200]));
        let mut jpg = Vec::new();
        rgb.write_to(&mut Cursor::new(&mut jpg), ImageFormat::Jpeg)
            .unwrap();
        let g = decode_image(Path::new("pic.jpg"), &jpg).unwrap();
        assert_eq!((g.width, g.height), (16, 8));
        assert!(g.pixels.iter().all(|&v| (v - 200.0 / 255.0).abs() < 0.02));
    }

    #[test]
    fn top_k_orders_by_probability_then_class() {
        let row = [0.1, 0.4, 0.1, 0.4];
        assert_eq!(top_k(&row, 3), vec![(1, 0.4), (3, 0.4), (0, 0.1)]);
        assert_eq!(argmax_rows(&row, 4), vec![1]);
        assert_eq!(argmax_rows(&[0.2, 0.8, 0.9, 0.1], 2), vec![1, 0]);
    }
}
