//! Encoding for written shards. libjpeg-turbo writes a bare JFIF stream and
//! libwebp a bare VP8 stream (no VP8X/EXIF/XMP chunks): no EXIF, XMP, IPTC,
//! GPS or comments, so re-encoded images carry no metadata from their source.

use std::ffi::CStr;

use turbojpeg_sys as tj;

use crate::error::CoreError;

/// Why a frame could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The pixel buffer does not hold `width` x `height` RGB8 pixels.
    SizeMismatch,
    /// The codec library refused (out of memory, or a limit such as WebP's
    /// 16383-pixel sides).
    Codec(String),
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::SizeMismatch => write!(f, "pixel buffer does not match its size"),
            EncodeError::Codec(detail) => f.write_str(detail),
        }
    }
}

impl std::error::Error for EncodeError {}

struct Compressor(tj::tjhandle);

impl Drop for Compressor {
    fn drop(&mut self) {
        // SAFETY: created by tj3Init, destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

/// Every encoder takes packed RGB8 of exactly `width` x `height` pixels.
fn check_rgb(rgb: &[u8], width: u32, height: u32) -> Result<(), EncodeError> {
    if rgb.len() != width as usize * height as usize * 3 || width == 0 || height == 0 {
        return Err(EncodeError::SizeMismatch);
    }
    Ok(())
}

/// Encodes packed RGB8 as a baseline 4:2:0 JPEG at `quality` (1-100).
pub fn encode_jpeg(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
) -> Result<Vec<u8>, EncodeError> {
    encode_jpeg_sampled(rgb, width, height, quality, false)
}

/// Encodes packed RGB8 as a baseline JPEG, chroma 4:4:4 (`full_chroma`) or 4:2:0.
pub fn encode_jpeg_sampled(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
    full_chroma: bool,
) -> Result<Vec<u8>, EncodeError> {
    check_rgb(rgb, width, height)?;
    // SAFETY: plain constructor; null means out of memory.
    let handle = Compressor(unsafe { tj::tj3Init(tj::TJINIT_TJINIT_COMPRESS as i32) });
    if handle.0.is_null() {
        return Err(EncodeError::Codec("cannot create a JPEG compressor".into()));
    }
    let mut out: *mut u8 = std::ptr::null_mut();
    let mut size: tj::size_t = 0;
    // SAFETY: the handle is live, `rgb` holds width x height packed RGB
    // pixels, and libjpeg-turbo allocates the output, freed below.
    unsafe {
        let h = handle.0;
        let ok = tj::tj3Set(
            h,
            tj::TJPARAM_TJPARAM_QUALITY as i32,
            i32::from(quality.clamp(1, 100)),
        ) == 0
            && tj::tj3Set(
                h,
                tj::TJPARAM_TJPARAM_SUBSAMP as i32,
                if full_chroma {
                    tj::TJSAMP_TJSAMP_444
                } else {
                    tj::TJSAMP_TJSAMP_420
                },
            ) == 0
            && tj::tj3Compress8(
                h,
                rgb.as_ptr(),
                width as i32,
                0,
                height as i32,
                tj::TJPF_TJPF_RGB,
                &mut out,
                &mut size,
            ) == 0;
        if !ok {
            let message = CStr::from_ptr(tj::tj3GetErrorStr(h))
                .to_string_lossy()
                .into_owned();
            tj::tj3Free(out.cast());
            return Err(EncodeError::Codec(format!(
                "JPEG encoding failed: {message}"
            )));
        }
        let bytes = std::slice::from_raw_parts(out, size as usize).to_vec();
        tj::tj3Free(out.cast());
        Ok(bytes)
    }
}

/// Encodes packed RGB8 as a lossy WebP at `quality` (1-100).
pub fn encode_webp(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
) -> Result<Vec<u8>, EncodeError> {
    check_rgb(rgb, width, height)?;
    webp::Encoder::from_rgb(rgb, width, height)
        .encode_simple(false, f32::from(quality.clamp(1, 100)))
        .map(|memory| memory.to_vec())
        .map_err(|e| EncodeError::Codec(format!("WebP encoding failed: {e:?}")))
}

/// Encodes packed RGB8 as a lossless PNG (the `png` crate through `image`).
pub fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, EncodeError> {
    use image::ImageEncoder;

    check_rgb(rgb, width, height)?;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| EncodeError::Codec(format!("PNG encoding failed: {e}")))?;
    Ok(out)
}

/// Output formats for [`encode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeFormat {
    Jpeg,
    Webp,
    /// Lossless; `quality` is ignored.
    Png,
    /// Raw pixels behind a binary PPM (P6) header: no compression at all,
    /// yet self-describing (every image library reads it); `quality` is ignored.
    Ppm,
}

impl EncodeFormat {
    pub fn from_name(name: &str) -> Result<EncodeFormat, CoreError> {
        match name {
            "jpeg" => Ok(EncodeFormat::Jpeg),
            "webp" => Ok(EncodeFormat::Webp),
            "png" => Ok(EncodeFormat::Png),
            "ppm" => Ok(EncodeFormat::Ppm),
            other => Err(CoreError::InvalidArgument(format!(
                "format must be 'jpeg', 'webp', 'png' or 'ppm', got {other:?}"
            ))),
        }
    }
}

/// Encodes packed RGB8 in `format` at `quality` (1-100).
pub fn encode(
    rgb: &[u8],
    width: u32,
    height: u32,
    format: EncodeFormat,
    quality: u8,
) -> Result<Vec<u8>, EncodeError> {
    match format {
        EncodeFormat::Jpeg => encode_jpeg(rgb, width, height, quality),
        EncodeFormat::Webp => encode_webp(rgb, width, height, quality),
        EncodeFormat::Png => encode_png(rgb, width, height),
        EncodeFormat::Ppm => encode_ppm(rgb, width, height),
    }
}

/// Packed RGB8 behind a P6 header (`P6\nW H\n255\n`).
pub fn encode_ppm(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, EncodeError> {
    check_rgb(rgb, width, height)?;
    let header = format!("P6\n{width} {height}\n255\n");
    let mut out = Vec::with_capacity(header.len() + rgb.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(rgb);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{decode, ImageOptions};

    const W: u32 = 40;
    const H: u32 = 24;

    /// A smooth gradient: what a photo looks like to an encoder.
    fn gradient() -> Vec<u8> {
        (0..H)
            .flat_map(|y| (0..W).flat_map(move |x| [(x * 5) as u8, (y * 8) as u8, 128]))
            .collect()
    }

    /// Decodes `encoded` and returns its mean absolute error against `rgb`.
    fn decoded_error(encoded: &[u8], rgb: &[u8]) -> f64 {
        let back = decode(encoded, &ImageOptions::default(), 0).result.unwrap();
        assert_eq!((back.width, back.height), (W, H));
        back.data
            .iter()
            .zip(rgb)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
            .sum::<f64>()
            / rgb.len() as f64
    }

    #[test]
    fn round_trips_without_metadata() {
        let rgb = gradient();
        let jpeg = encode_jpeg(&rgb, W, H, 95).unwrap();
        assert!(jpeg.starts_with(&[0xFF, 0xD8]));
        assert!(!jpeg.windows(4).any(|x| x == b"Exif"), "no EXIF block");
        let err = decoded_error(&jpeg, &rgb);
        assert!(err < 3.0, "mean error {err}");
        assert_eq!(
            encode_jpeg(&rgb, W + 1, H, 90),
            Err(EncodeError::SizeMismatch)
        );
    }

    #[test]
    fn webp_round_trips_without_metadata() {
        let rgb = gradient();
        let webp = encode(&rgb, W, H, EncodeFormat::Webp, 95).unwrap();
        assert_eq!(&webp[..4], b"RIFF");
        assert_eq!(
            &webp[8..16],
            b"WEBPVP8 ",
            "simple lossy file: no VP8X, so no EXIF/XMP"
        );
        let err = decoded_error(&webp, &rgb);
        assert!(err < 4.0, "mean error {err}");
        assert!(encode_webp(&rgb, W, H + 1, 90).is_err());
    }

    #[test]
    fn png_is_lossless() {
        let rgb = gradient();
        let png = encode(&rgb, W, H, EncodeFormat::Png, 1).unwrap();
        let ppm = encode(&rgb, W, H, EncodeFormat::Ppm, 1).unwrap();
        let back = crate::image::decode(&ppm, &Default::default(), 0)
            .result
            .unwrap();
        assert_eq!(back.data, rgb, "PPM round-trips exactly");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(decoded_error(&png, &rgb), 0.0);
        assert!(encode_png(&rgb, W, H + 1).is_err());
    }
}
