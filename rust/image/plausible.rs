//! Cheap checks that a file's data can hold what its header claims, made
//! before any pixel memory is allocated: a 70-byte PNG or a 6 KB JPEG whose
//! header says 13000x13000 is refused in microseconds instead of costing a
//! half-gigabyte allocation and a second of decoding.

use super::error::DecodeError;

/// Deflate expands at most ~1032:1 (a 258-byte match per 2-bit code).
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Bits per pixel of a PNG colour type and bit depth, when valid.
fn png_bits_per_pixel(colour_type: u8, depth: u8) -> Option<u64> {
    let channels = match colour_type {
        0 | 3 => 1,
        2 => 3,
        4 => 2,
        6 => 4,
        _ => return None,
    };
    Some(channels * u64::from(depth))
}

fn corrupt_png(detail: String) -> DecodeError {
    DecodeError::Corrupt {
        format: "PNG",
        detail,
    }
}

/// Checks a PNG's IHDR fields the spec fixes (compression and filter method
/// 0, interlace 0 or 1) and that its IDAT data could inflate to the image
/// its header claims. Chunk CRCs and the pixels are the decoder's business.
pub fn check_png_data(png: &[u8], max_pixels: u64) -> Result<(), DecodeError> {
    let Some(ihdr) = png.get(8..33) else {
        return Ok(()); // too short for a header: the decoder says "truncated"
    };
    if &ihdr[4..8] != b"IHDR" {
        return Ok(());
    }
    let width = u64::from(u32::from_be_bytes(ihdr[8..12].try_into().unwrap()));
    let height = u64::from(u32::from_be_bytes(ihdr[12..16].try_into().unwrap()));
    let (depth, colour_type) = (ihdr[16], ihdr[17]);
    let (compression, filter, interlace) = (ihdr[18], ihdr[19], ihdr[20]);
    if compression != 0 {
        return Err(corrupt_png(format!(
            "unknown compression method {compression}"
        )));
    }
    if filter != 0 {
        return Err(corrupt_png(format!("unknown filter method {filter}")));
    }
    if interlace > 1 {
        return Err(corrupt_png(format!("unknown interlace method {interlace}")));
    }
    let Some(bits) = png_bits_per_pixel(colour_type, depth) else {
        return Ok(()); // the decoder names the bad colour type
    };
    if width == 0 || height == 0 || width * height > max_pixels {
        return Ok(()); // the pixel limit's own message
    }
    // Each row: a filter byte and its packed samples (interlacing adds at
    // most a few bytes per pass row; the bound below has room for it).
    let raw = height * (1 + (width * bits).div_ceil(8));
    let mut idat = 0u64;
    let mut ended = false;
    let mut pos = 8usize;
    while let Some(head) = png.get(pos..pos + 8) {
        let length = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
        match &head[4..8] {
            b"IDAT" => idat += length.min(png.len().saturating_sub(pos + 8)) as u64,
            b"IEND" => {
                ended = true;
                break;
            }
            _ => {}
        }
        pos = match pos.checked_add(12 + length) {
            Some(next) => next,
            None => break,
        };
    }
    if raw <= idat.saturating_mul(MAX_DEFLATE_RATIO) + 4096 {
        return Ok(());
    }
    if !ended {
        return Err(DecodeError::Truncated("PNG"));
    }
    Err(DecodeError::Implausible {
        format: "PNG",
        detail: format!(
            "{width}x{height} from {idat} bytes of compressed data, at most {} inflated",
            idat * MAX_DEFLATE_RATIO
        ),
    })
}

/// A Huffman-coded JPEG spends at least one bit on every 8x8 luma block (its
/// DC code), so `bytes` of file can hold at most `8 * bytes` blocks.
/// Arithmetic coding has no such floor and is not checked.
pub fn check_jpeg_data(width: u32, height: u32, bytes: usize) -> Result<(), DecodeError> {
    let blocks = u64::from(width.div_ceil(8)) * u64::from(height.div_ceil(8));
    let most = (bytes as u64).saturating_mul(8);
    if blocks <= most {
        return Ok(());
    }
    Err(DecodeError::Implausible {
        format: "JPEG",
        detail: format!("{width}x{height} is {blocks} blocks, {bytes} bytes hold at most {most}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8], body: &[u8]) -> Vec<u8> {
        let mut c = (body.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(body);
        c.extend_from_slice(&[0; 4]);
        c
    }

    fn png(width: u32, height: u32, compression: u8, idat: usize, end: bool) -> Vec<u8> {
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, compression, 0, 0]);
        let mut data = b"\x89PNG\r\n\x1a\n".to_vec();
        data.extend(chunk(b"IHDR", &ihdr));
        data.extend(chunk(b"IDAT", &vec![0; idat]));
        if end {
            data.extend(chunk(b"IEND", &[]));
        }
        data
    }

    #[test]
    fn png_headers_the_data_cannot_hold() {
        let limit = crate::image::DEFAULT_MAX_PIXELS;
        assert!(check_png_data(&png(64, 64, 0, 100, true), limit).is_ok());
        // 13000x13000 RGB from 20 bytes of deflate: refused, kind too_large.
        let e = check_png_data(&png(13000, 13000, 0, 20, true), limit).unwrap_err();
        assert_eq!(e.kind(), "too_large");
        assert!(
            e.to_string()
                .starts_with("image too large: implausible PNG"),
            "{e}"
        );
        // Without IEND the file was cut short.
        let e = check_png_data(&png(13000, 13000, 0, 20, false), limit).unwrap_err();
        assert_eq!(e, DecodeError::Truncated("PNG"));
        // Enough data for the claim: left to the decoder.
        let big = 13000u64 * 13001 * 3 / MAX_DEFLATE_RATIO + 10;
        assert!(check_png_data(&png(13000, 13000, 0, big as usize, true), limit).is_ok());
    }

    #[test]
    fn png_unknown_methods_are_corrupt() {
        let limit = crate::image::DEFAULT_MAX_PIXELS;
        let e = check_png_data(&png(8, 8, 1, 10, true), limit).unwrap_err();
        assert_eq!(e.to_string(), "corrupt PNG: unknown compression method 1");
        // Short or odd inputs are left to the decoder, never a panic.
        assert!(check_png_data(b"\x89PNG\r\n\x1a\n", limit).is_ok());
        assert!(check_png_data(&png(8, 8, 0, 10, true)[..40], limit).is_ok());
    }

    #[test]
    fn jpeg_block_floor() {
        assert!(check_jpeg_data(500, 375, 20_000).is_ok());
        // 13000x13000 is 2.6 M blocks: 6 KB cannot hold them.
        let e = check_jpeg_data(13000, 13000, 6_000).unwrap_err();
        assert_eq!(e.kind(), "too_large");
        assert!(check_jpeg_data(13000, 13000, 400_000).is_ok());
    }
}
