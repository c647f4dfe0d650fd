//! PNG, WebP, GIF (first frame), BMP, TIFF (first page), PNM and ICO
//! (largest entry) through the `image` crate's decoders.

use std::io::Cursor;

use image::codecs::{
    bmp::BmpDecoder, gif::GifDecoder, ico::IcoDecoder, png::PngDecoder, pnm::PnmDecoder,
    tiff::TiffDecoder, webp::WebPDecoder,
};
use image::error::LimitErrorKind;
use image::{ColorType, ImageDecoder, ImageError, Limits};

use super::error::{check_pixel_limit, DecodeError};
use super::format::Format;
use super::metadata::{exif_orientation, png_text_orientation, xmp_orientation};
use super::orientation::Orientation;
use super::pixels::{
    pillow_rgb_from_16bit, rgb_dropping_alpha, rgb_from_16bit, rgb_from_8bit, RgbImage, RgbView,
};
use super::plausible::check_png_data;

fn label(format: Format) -> &'static str {
    format.label()
}

/// A decoder's message without Rust `Debug` structures: `ChunkType { type:
/// IDAT, critical: true, .. }` reads `IDAT`, any other `Name { .. }` its name.
pub(crate) fn plain_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(" {") {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let inner = &rest[open + 2..open + close];
        out.push_str(&rest[..open]);
        // A chunk type names itself in its first field.
        if let Some(value) = inner.trim().strip_prefix("type: ") {
            let name = value.split(',').next().unwrap_or("").trim();
            let name_start = out.rfind(|c: char| c.is_whitespace()).map_or(0, |i| i + 1);
            out.truncate(name_start);
            out.push_str(name);
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

fn reason(format: Format, error: ImageError) -> DecodeError {
    let text = plain_text(&error.to_string());
    let lower = text.to_lowercase();
    let eof =
        matches!(&error, ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof);
    match &error {
        ImageError::Limits(l) if matches!(l.kind(), LimitErrorKind::DimensionError) => {
            DecodeError::Implausible {
                format: label(format),
                detail: "dimensions beyond the decoder's limits".into(),
            }
        }
        ImageError::Limits(_) => DecodeError::OutOfMemory,
        // A decoder's own size ceiling (BMP's 65535-pixel sides): "too
        // large", not "corrupt".
        _ if lower.contains("soft limit") || lower.contains("image too large") => {
            DecodeError::Implausible {
                format: label(format),
                detail: text
                    .rsplit_once(": ")
                    .map_or(text.as_str(), |(_, d)| d)
                    .trim_start_matches("Image too large ")
                    .trim_matches(|c| c == '(' || c == ')')
                    .to_string(),
            }
        }
        ImageError::Unsupported(_) => DecodeError::Unsupported {
            format: label(format),
            detail: text,
        },
        _ if eof
            || lower.contains("end of file")
            || lower.contains("eof")
            || lower.contains("truncated") =>
        {
            DecodeError::Truncated(label(format))
        }
        _ => DecodeError::Corrupt {
            format: label(format),
            detail: text,
        },
    }
}

/// A decoder that has read the header: size and orientation are known,
/// no pixel memory is allocated yet.
pub struct Opened<'a> {
    decoder: Box<dyn ImageDecoder + 'a>,
    /// The encoded bytes (a raw PPM's pixels are read from them in place).
    data: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
    format: Format,
}

pub fn open(data: &[u8], format: Format, max_pixels: u64) -> Result<Opened<'_>, DecodeError> {
    let cursor = Cursor::new(data);
    let wrap = |e| reason(format, e);
    if format == Format::Png {
        check_png_data(data, max_pixels)?;
    }
    let mut decoder: Box<dyn ImageDecoder + '_> = match format {
        Format::Png => Box::new(PngDecoder::new(cursor).map_err(wrap)?),
        Format::WebP => Box::new(WebPDecoder::new(cursor).map_err(wrap)?),
        Format::Gif if gif_lacks_palette(data) => {
            // No colour table anywhere: Pillow reads the indices as grey
            // levels; an identity grey table gives the same pixels.
            Box::new(GifDecoder::new(Cursor::new(with_grey_palette(data))).map_err(wrap)?)
        }
        Format::Gif => Box::new(GifDecoder::new(cursor).map_err(wrap)?),
        Format::Bmp => Box::new(BmpDecoder::new(cursor).map_err(wrap)?),
        Format::Tiff => Box::new(TiffDecoder::new(cursor).map_err(wrap)?),
        Format::Pnm => Box::new(PnmDecoder::new(cursor).map_err(wrap)?),
        Format::Ico => match ico_png_entry(data) {
            // A PNG entry decodes as any PNG (the `image` crate's ICO
            // decoder refuses PNG entries that are not RGBA; Pillow does not).
            Some(png) => {
                check_png_data(png, max_pixels)?;
                Box::new(PngDecoder::new(Cursor::new(png)).map_err(wrap)?)
            }
            None => Box::new(IcoDecoder::new(cursor).map_err(wrap)?),
        },
        Format::Jpeg => unreachable!("JPEG goes through libjpeg-turbo"),
    };
    let (width, height) = decoder.dimensions();
    check_pixel_limit(width, height, max_pixels)?;
    // Our pixel limit is the policy; the crate's own allocation cap (512 MiB by
    // default) must not reject an image the limit allows.
    let mut limits = Limits::no_limits();
    limits.max_alloc = Some(decoder.total_bytes().saturating_mul(2).max(512 << 20));
    decoder.set_limits(limits).map_err(wrap)?;
    let orientation = orientation(&mut *decoder, data, format);
    Ok(Opened {
        decoder,
        data,
        width,
        height,
        orientation,
        format,
    })
}

impl<'a> Opened<'a> {
    /// The pixels of a binary PPM holding exactly 8-bit RGB (``P6``, maxval
    /// 255, nothing after the pixels), as stored: resampled in place, with
    /// no decode. None for every other file (decoded as usual).
    pub fn raw_rgb(&self) -> Option<RgbView<'a>> {
        if self.format != Format::Pnm {
            return None;
        }
        let pixels = ppm_pixels(self.data, self.width, self.height)?;
        Some(RgbView {
            width: self.width,
            height: self.height,
            data: pixels,
        })
    }
}

/// The pixel bytes of a `P6` PPM of `width` x `height` with maxval 255 and
/// no trailing bytes; header comments allowed, as Netpbm allows them.
fn ppm_pixels(data: &[u8], width: u32, height: u32) -> Option<&[u8]> {
    let mut pos = 2;
    if !data.starts_with(b"P6") {
        return None;
    }
    let mut fields = [0u64; 3];
    for field in &mut fields {
        loop {
            match *data.get(pos)? {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => pos += 1,
                b'#' => pos += memchr::memchr(b'\n', &data[pos..])? + 1,
                _ => break,
            }
        }
        let digits = data[pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > 10 {
            return None;
        }
        *field = std::str::from_utf8(&data[pos..pos + digits])
            .ok()?
            .parse()
            .ok()?;
        pos += digits;
    }
    // One whitespace byte ends the header.
    if !data.get(pos)?.is_ascii_whitespace() {
        return None;
    }
    let pixels = &data[pos + 1..];
    let expected = u64::from(width) * u64::from(height) * 3;
    (fields == [u64::from(width), u64::from(height), 255] && pixels.len() as u64 == expected)
        .then_some(pixels)
}

/// Whether a GIF has neither a global colour table nor a local one on its
/// first frame.
fn gif_lacks_palette(data: &[u8]) -> bool {
    let Some(&flags) = data.get(10) else {
        return false;
    };
    if flags & 0x80 != 0 {
        return false;
    }
    let mut pos = 13;
    loop {
        match data.get(pos) {
            Some(0x21) => {
                pos += 2; // introducer, label; then sub-blocks up to a 0 length
                while let Some(&n) = data.get(pos) {
                    pos += 1 + usize::from(n);
                    if n == 0 {
                        break;
                    }
                }
            }
            Some(0x2C) => return data.get(pos + 9).is_some_and(|f| f & 0x80 == 0),
            _ => return false,
        }
    }
}

/// The GIF with a 256-entry grey global colour table (index i is grey i).
fn with_grey_palette(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 768);
    out.extend_from_slice(&data[..10]);
    out.push(data[10] | 0x87); // table present, 2^(7+1) entries
    out.extend_from_slice(&data[11..13]);
    out.extend((0..=255u8).flat_map(|i| [i, i, i]));
    out.extend_from_slice(&data[13..]);
    out
}

/// The largest entry of an ICO directory (then the deepest, as Pillow picks),
/// when that entry is a PNG.
fn ico_png_entry(data: &[u8]) -> Option<&[u8]> {
    let count = usize::from(u16::from_le_bytes([*data.get(4)?, *data.get(5)?]));
    let side = |b: u8| if b == 0 { 256u32 } else { u32::from(b) };
    let best = (0..count)
        .filter_map(|i| data.get(6 + 16 * i..22 + 16 * i))
        .max_by_key(|e| {
            let bits = u16::from_le_bytes([e[6], e[7]]);
            (side(e[0]) * side(e[1]), bits)
        })?;
    let size = u32::from_le_bytes(best[8..12].try_into().ok()?) as usize;
    let offset = u32::from_le_bytes(best[12..16].try_into().ok()?) as usize;
    let entry = data.get(offset..offset.checked_add(size)?.min(data.len()))?;
    entry.starts_with(b"\x89PNG\r\n\x1a\n").then_some(entry)
}

/// The stated orientation, looked up as Pillow's `exif_transpose` does (see
/// [`super::metadata`]); malformed metadata never fails an otherwise good
/// image, it just states nothing.
fn orientation(decoder: &mut dyn ImageDecoder, data: &[u8], format: Format) -> Orientation {
    let exif = match format {
        // TIFF's orientation is a tag of the image's own IFD.
        Format::Tiff => decoder
            .orientation()
            .ok()
            .map(|o| Orientation::from_exif(u16::from(o.to_exif())))
            .filter(|o| *o != Orientation::IDENTITY),
        _ => decoder
            .exif_metadata()
            .ok()
            .flatten()
            .and_then(|block| exif_orientation(&block)),
    };
    exif.or_else(|| match format {
        Format::Png => png_text_orientation(data),
        _ => decoder
            .xmp_metadata()
            .ok()
            .flatten()
            .and_then(|xmp| xmp_orientation(&xmp)),
    })
    .unwrap_or(Orientation::IDENTITY)
}

impl Opened<'_> {
    /// Decodes the pixels to RGB8, compositing alpha onto `background`. With
    /// `pillow_view`, also returns the RGB Pillow's `convert("RGB")` would give
    /// when it differs (alpha dropped, 16-bit reduced Pillow's way), for hashing.
    pub fn decode(
        self,
        background: [u8; 3],
        pillow_view: bool,
    ) -> Result<(RgbImage, Option<RgbImage>), DecodeError> {
        let color = self.decoder.color_type();
        let size =
            usize::try_from(self.decoder.total_bytes()).map_err(|_| DecodeError::OutOfMemory)?;
        let mut buf = vec![0u8; size];
        let format = self.format;
        self.decoder
            .read_image_boxed(&mut buf)
            .map_err(|e| reason(format, e))?;
        let channels = usize::from(color.channel_count());
        let (rgb, pillow) = match color {
            ColorType::L8 | ColorType::La8 | ColorType::Rgb8 | ColorType::Rgba8 => {
                let differs = pillow_view && color.has_alpha();
                (
                    rgb_from_8bit(&buf, channels, background),
                    differs.then(|| rgb_dropping_alpha(&buf, channels)),
                )
            }
            ColorType::L16 | ColorType::La16 | ColorType::Rgb16 | ColorType::Rgba16 => {
                let samples: Vec<u16> = buf
                    .chunks_exact(2)
                    .map(|b| u16::from_ne_bytes([b[0], b[1]]))
                    .collect();
                let pillow = pillow_view.then(|| pillow_rgb_from_16bit(&samples, channels));
                (rgb_from_16bit(&samples, channels, background), pillow)
            }
            ColorType::Rgb32F | ColorType::Rgba32F => {
                // Floating-point TIFFs: 0.0-1.0 scaled to 8 bits.
                let samples: Vec<u8> = buf
                    .chunks_exact(4)
                    .map(|b| {
                        let v = f32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                        (v.clamp(0.0, 1.0) * 255.0).round() as u8
                    })
                    .collect();
                let differs = pillow_view && color.has_alpha();
                (
                    rgb_from_8bit(&samples, channels, background),
                    differs.then(|| rgb_dropping_alpha(&samples, channels)),
                )
            }
            other => {
                return Err(DecodeError::Unsupported {
                    format: label(format),
                    detail: format!("colour type {other:?}"),
                })
            }
        };
        let (w, h) = (self.width, self.height);
        Ok((
            RgbImage::new(w, h, rgb),
            pillow.map(|p| RgbImage::new(w, h, p)),
        ))
    }
}
