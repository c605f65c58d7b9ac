//! A PNG or JPEG file into grey levels, nothing in it trusted: the header's claim is checked
//! under a small memory limit before any pixel is decoded (see the parent module's docs).

use std::io::Cursor;
use std::path::Path;

use image::io::Limits;
use image::{DynamicImage, ImageFormat};

use super::jpeg;
use crate::data::{idx, PIXEL_F32};
use crate::error::{Error, Result};

/// The most pixels an image may have (4096 x 4096): a digit needs a few hundred, a phone photo
/// has about 12 million; decoding costs 2 bytes and preparing 4 bytes a pixel.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 24;

/// The largest image file read.
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;

/// The memory the decoder may allocate while reading a header, before the picture's size is
/// known: what ancillary data (a PNG's colour profile, text) may inflate to. Real colour
/// profiles are a few KiB, the largest in use about 1 MiB.
pub const MAX_HEADER_ALLOC: u64 = 4 << 20;

/// The memory the decoder may allocate a pixel (the widest decoded form, 16-bit RGBA, is 8
/// bytes), plus [`MAX_HEADER_ALLOC`]: 16.7 million pixels may take 138 MiB, a 28x28 digit 4 MiB.
pub const DECODE_BYTES_PER_PIXEL: u64 = 8;

/// A grey picture: `pixels` row-major, 0 = black, 1 = white.
#[derive(Debug, Clone, PartialEq)]
pub struct Grey {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f32>,
}

/// Reads a PNG or JPEG file into grey levels: only a regular file of at most
/// [`MAX_IMAGE_BYTES`] (see the `predict` module docs).
pub fn read_image(path: &Path) -> Result<Grey> {
    let bytes = idx::read_regular(path, MAX_IMAGE_BYTES).map_err(|e| match e {
        idx::ReadError::Unreadable(what) => {
            Error::data(path, format!("cannot read the image: {what}"))
        }
        idx::ReadError::TooLarge(size) => Error::data(
            path,
            format!(
                "{size} bytes is larger than the {MAX_IMAGE_BYTES} bytes an image may have; \
                 scale it down (a digit needs a few hundred pixels)"
            ),
        ),
    })?;
    decode_image(path, &bytes)
}

/// Decodes a PNG or JPEG held in memory; `file` is what errors call it.
pub fn decode_image(file: &Path, bytes: &[u8]) -> Result<Grey> {
    let format = image_format(file, bytes)?;
    let kind = if format == ImageFormat::Png {
        "PNG"
    } else {
        "JPEG"
    };
    // A JPEG's scans are checked first and padded so that a short one fails (see `jpeg`).
    let padded;
    let bytes = if format == ImageFormat::Jpeg {
        padded = jpeg::check(bytes).map_err(|what| Error::data(file, format!("JPEG: {what}")))?;
        &padded[..]
    } else {
        bytes
    };
    let (width, height) = header_dimensions(bytes, format).map_err(|e| {
        corrupt(
            file,
            &format!("reading the {kind} header"),
            e,
            MAX_HEADER_ALLOC,
        )
    })?;
    let pixels = checked_pixel_count(file, kind, width, height)?;
    let budget = pixels * DECODE_BYTES_PER_PIXEL + MAX_HEADER_ALLOC;
    let decoded = decode_within(bytes, format, width, height, budget).map_err(|e| {
        corrupt(
            file,
            &format!("decoding the {width}x{height} {kind} image"),
            e,
            budget,
        )
    })?;
    Ok(Grey {
        width: width as usize,
        height: height as usize,
        pixels: grey_levels(decoded),
    })
}

/// PNG or JPEG, from the first bytes; anything else (or nothing) is an error naming `file`.
fn image_format(file: &Path, bytes: &[u8]) -> Result<ImageFormat> {
    let fail = |what: String| Err(Error::data(file, what));
    if bytes.is_empty() {
        return fail("is empty (0 bytes), not an image".into());
    }
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => Ok(f),
        Ok(other) => fail(format!(
            "is a {other:?} image; predict reads PNG and JPEG, convert it to one of those"
        )),
        Err(_) => fail(format!(
            "is not a PNG or JPEG image (it starts with {:02x?})",
            &bytes[..bytes.len().min(8)]
        )),
    }
}

/// The width and height the header claims, read under [`MAX_HEADER_ALLOC`] so that its claim
/// is checked before anything is sized from it. (Not Reader::into_dimensions: it ignores the
/// limits given.)
fn header_dimensions(bytes: &[u8], format: ImageFormat) -> image::ImageResult<(u32, u32)> {
    use image::ImageDecoder;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_HEADER_ALLOC);
    if format == ImageFormat::Png {
        Ok(image::codecs::png::PngDecoder::with_limits(Cursor::new(bytes), limits)?.dimensions())
    } else {
        let mut d = image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes))?;
        d.set_limits(limits)?;
        Ok(d.dimensions())
    }
}

/// The header's pixel count, refused when it is 0 or over [`MAX_IMAGE_PIXELS`].
fn checked_pixel_count(file: &Path, kind: &str, width: u32, height: u32) -> Result<u64> {
    if width == 0 || height == 0 {
        return Err(Error::data(
            file,
            format!("the {kind} header says {width}x{height} pixels; an image needs at least one"),
        ));
    }
    let pixels = width as u64 * height as u64;
    if pixels > MAX_IMAGE_PIXELS {
        return Err(Error::data(
            file,
            format!(
                "the {kind} header says {width}x{height} pixels ({pixels}), more than the \
                 {MAX_IMAGE_PIXELS} predict accepts; scale it down (a digit needs a few hundred)"
            ),
        ));
    }
    Ok(pixels)
}

/// The whole picture, decoded under `budget` bytes and held to the header's size.
fn decode_within(
    bytes: &[u8],
    format: ImageFormat,
    width: u32,
    height: u32,
    budget: u64,
) -> image::ImageResult<DynamicImage> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(budget);
    let mut reader = image::io::Reader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    reader.decode()
}

/// What a failure of the decoder at `stage` says: a memory limit hit (under `budget`) reads
/// differently from a plain decoding error.
fn corrupt(file: &Path, stage: &str, e: image::ImageError, budget: u64) -> Error {
    match e {
        image::ImageError::Limits(_) => Error::data(
            file,
            format!(
                "{stage} needs more than the {budget} bytes of memory predict allows it \
                 (ancillary data such as a PNG colour profile is capped at {MAX_HEADER_ALLOC} \
                 bytes, pixels at {DECODE_BYTES_PER_PIXEL} bytes each); the file is corrupt or \
                 built to exhaust memory"
            ),
        ),
        e => Error::data(
            file,
            format!("{stage} failed: {e}; the file is truncated or corrupt"),
        ),
    }
}

/// An RGBA picture already in memory (a canvas's `getImageData`, `width x height` pixels of 4
/// bytes) into grey levels by the same conversion as a decoded PNG: what the page's drawing
/// goes through before [`prepare`](super::prepare). `what` names it in errors.
pub fn grey_from_rgba(what: &Path, width: usize, height: usize, rgba: Vec<u8>) -> Result<Grey> {
    let wrong = |why: String| Error::data(what, why);
    if width == 0 || height == 0 {
        return Err(wrong(format!(
            "is {width}x{height} pixels; a picture needs at least one"
        )));
    }
    let pixels = width
        .checked_mul(height)
        .filter(|&n| n as u64 <= MAX_IMAGE_PIXELS);
    let Some(pixels) = pixels else {
        return Err(wrong(format!(
            "is {width}x{height} pixels, over the {MAX_IMAGE_PIXELS} a picture may have"
        )));
    };
    if rgba.len() != pixels * 4 {
        return Err(wrong(format!(
            "holds {} bytes; {width}x{height} RGBA pixels are {}",
            rgba.len(),
            pixels * 4
        )));
    }
    let (w, h) = (width as u32, height as u32);
    let Some(img) = image::RgbaImage::from_raw(w, h, rgba) else {
        return Err(wrong(format!("is not {width}x{height} RGBA pixels")));
    };
    Ok(Grey {
        width,
        height,
        pixels: grey_levels(DynamicImage::ImageRgba8(img)),
    })
}

/// A pixel's grey level (0..1) from its luma and alpha bytes: transparent parts are paper,
/// composited over white.
fn paper(l: u8, a: u8) -> f32 {
    let (l, a) = (PIXEL_F32[usize::from(l)], PIXEL_F32[usize::from(a)]);
    l * a + (1.0 - a)
}

/// The decoded picture as grey levels, without an intermediate copy where it is grey already.
fn grey_levels(decoded: DynamicImage) -> Vec<f32> {
    match decoded {
        DynamicImage::ImageLuma8(img) => img.as_raw().iter().map(|&l| paper(l, 255)).collect(),
        DynamicImage::ImageLumaA8(img) => img
            .as_raw()
            .chunks_exact(2)
            .map(|p| paper(p[0], p[1]))
            .collect(),
        other => {
            let la = other.to_luma_alpha8();
            drop(other);
            la.as_raw()
                .chunks_exact(2)
                .map(|p| paper(p[0], p[1]))
                .collect()
        }
    }
}
