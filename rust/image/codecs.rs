//! PNG, WebP, GIF (first frame) and BMP through the `image` crate's decoders.

use std::io::Cursor;

use image::codecs::{bmp::BmpDecoder, gif::GifDecoder, png::PngDecoder, webp::WebPDecoder};
use image::{ColorType, ImageDecoder, ImageError, Limits};

use super::error::{check_pixel_limit, DecodeError};
use super::format::Format;
use super::orientation::Orientation;
use super::pixels::{
    pillow_rgb_from_16bit, rgb_dropping_alpha, rgb_from_16bit, rgb_from_8bit, RgbImage,
};

fn label(format: Format) -> &'static str {
    match format {
        Format::Png => "PNG",
        Format::WebP => "WebP",
        Format::Gif => "GIF",
        Format::Bmp => "BMP",
        Format::Jpeg => "JPEG",
    }
}

fn reason(format: Format, error: ImageError) -> DecodeError {
    let text = error.to_string();
    let lower = text.to_lowercase();
    let eof =
        matches!(&error, ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof);
    if eof || lower.contains("end of file") || lower.contains("eof") || lower.contains("truncated")
    {
        DecodeError::Truncated(label(format))
    } else {
        DecodeError::Corrupt {
            format: label(format),
            detail: text,
        }
    }
}

/// A decoder that has read the header: size and orientation are known,
/// no pixel memory is allocated yet.
pub struct Opened<'a> {
    decoder: Box<dyn ImageDecoder + 'a>,
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
    format: Format,
}

pub fn open(data: &[u8], format: Format, max_pixels: u64) -> Result<Opened<'_>, DecodeError> {
    let cursor = Cursor::new(data);
    let wrap = |e| reason(format, e);
    let mut decoder: Box<dyn ImageDecoder + '_> = match format {
        Format::Png => Box::new(PngDecoder::new(cursor).map_err(wrap)?),
        Format::WebP => Box::new(WebPDecoder::new(cursor).map_err(wrap)?),
        Format::Gif => Box::new(GifDecoder::new(cursor).map_err(wrap)?),
        Format::Bmp => Box::new(BmpDecoder::new(cursor).map_err(wrap)?),
        Format::Jpeg => unreachable!("JPEG goes through libjpeg-turbo"),
    };
    let (width, height) = decoder.dimensions();
    check_pixel_limit(width, height, max_pixels)?;
    // Our pixel limit is the policy; the crate's own allocation cap (512 MiB by
    // default) must not reject an image the limit allows.
    let mut limits = Limits::no_limits();
    limits.max_alloc = Some(decoder.total_bytes().saturating_mul(2).max(512 << 20));
    decoder.set_limits(limits).map_err(wrap)?;
    // A malformed EXIF block must not fail an otherwise good image.
    let orientation = decoder
        .exif_metadata()
        .ok()
        .flatten()
        .map(|tiff| Orientation::from_exif_block(&tiff))
        .unwrap_or(Orientation::IDENTITY);
    Ok(Opened {
        decoder,
        width,
        height,
        orientation,
        format,
    })
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
            other => {
                return Err(DecodeError::Unsupported {
                    format: label(format),
                    detail: format!("unsupported colour type {other:?}"),
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
