//! Metadata removed from encoded images without re-encoding them: the
//! compressed pixel data is copied byte for byte, so the pixels stay exactly
//! the source's.
//!
//! What is kept: what decoding needs (tables, frames, scans, palettes,
//! transparency, animation control), colour (ICC profiles, gamma,
//! chromaticities, sRGB/cICP) and the orientation, re-stated as a one-tag
//! EXIF block so viewers show the picture as the source did. Everything else
//! goes: EXIF (camera, dates, GPS), XMP, IPTC/Photoshop, comments, text
//! chunks, unknown ancillary chunks and bytes after the end of the image.

use super::format::{sniff, Format};
use super::orientation::Orientation;

/// A TIFF-structured EXIF block (no `Exif\0\0` header) holding only the
/// orientation tag, little-endian.
fn orientation_exif(orientation: Orientation) -> Vec<u8> {
    let mut block = b"II*\0\x08\0\0\0".to_vec();
    block.extend_from_slice(&1u16.to_le_bytes()); // one entry
    block.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    block.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    block.extend_from_slice(&1u32.to_le_bytes()); // count
    block.extend_from_slice(&u16::from(orientation.value()).to_le_bytes());
    block.extend_from_slice(&[0, 0]); // value padding
    block.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    block
}

/// `data` without metadata, when its format can lose it losslessly: JPEG,
/// PNG, WebP and GIF are rewritten; BMP, PNM and ICO carry none and are
/// returned as they are. `None` for formats whose metadata cannot be
/// separated from the image without re-encoding (TIFF) and for data too
/// malformed to walk. `orientation` is the one the caller read (re-stated
/// when not the identity).
pub fn strip_metadata(data: &[u8], orientation: Orientation) -> Option<Vec<u8>> {
    match sniff(data)? {
        Format::Jpeg => strip_jpeg(data, orientation),
        Format::Png => strip_png(data, orientation),
        Format::WebP => strip_webp(data, orientation),
        Format::Gif => strip_gif(data),
        Format::Bmp | Format::Pnm | Format::Ico => Some(data.to_vec()),
        Format::Tiff => None,
    }
}

// ---------------------------------------------------------------------- JPEG

/// Segments kept: SOFn, DHT, DAC, DQT, DRI, DNL, SOS (decoding); APP0 JFIF
/// (density), APP2 ICC_PROFILE (colour), APP14 Adobe (colour transform).
fn keep_jpeg_segment(marker: u8, body: &[u8]) -> bool {
    match marker {
        0xC0..=0xCF | 0xDB..=0xDD => true,
        0xE0 => body.starts_with(b"JFIF\0"),
        0xE2 => body.starts_with(b"ICC_PROFILE\0"),
        0xEE => body.starts_with(b"Adobe"),
        _ => false, // APP1 EXIF/XMP, APP13 IPTC, COM, other APPn
    }
}

fn strip_jpeg(data: &[u8], orientation: Orientation) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&data[..2]); // SOI
    let mut exif_written = orientation == Orientation::IDENTITY;
    let mut pos = 2;
    loop {
        // Between segments: fill bytes, or stray bytes (dropped).
        while pos < data.len()
            && !(data[pos] == 0xFF && data.get(pos + 1).is_some_and(|&m| m != 0xFF))
        {
            pos += 1;
        }
        let marker = *data.get(pos + 1)?;
        if marker == 0xD9 {
            out.extend_from_slice(&[0xFF, 0xD9]); // EOI: nothing after it is kept
            return Some(out);
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            out.extend_from_slice(&data[pos..pos + 2]);
            pos += 2;
            continue;
        }
        let length = usize::from(u16::from_be_bytes([
            *data.get(pos + 2)?,
            *data.get(pos + 3)?,
        ]));
        let end = pos + 2 + length;
        let body = data.get(pos + 4..end)?;
        if !exif_written && marker != 0xE0 {
            // The orientation, right after JFIF's APP0 (or SOI).
            let mut app1 = b"Exif\0\0".to_vec();
            app1.extend(orientation_exif(orientation));
            out.extend_from_slice(&[0xFF, 0xE1]);
            out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
            out.extend(app1);
            exif_written = true;
        }
        if keep_jpeg_segment(marker, body) || marker == 0xDA {
            out.extend_from_slice(&data[pos..end]);
        }
        pos = end;
        if marker == 0xDA {
            // Entropy-coded data: copied up to the next marker that is not a
            // stuffed byte or a restart marker.
            let start = pos;
            while pos + 1 < data.len() {
                if data[pos] == 0xFF && !matches!(data[pos + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
                    break;
                }
                pos += 1;
            }
            if pos + 1 >= data.len() {
                return None; // no end marker: truncated
            }
            out.extend_from_slice(&data[start..pos]);
        }
    }
}

// ----------------------------------------------------------------------- PNG

/// Chunks kept: critical ones, and ancillary ones about decoding, colour,
/// transparency, physical size and animation.
const PNG_KEPT: [&[u8; 4]; 16] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
    b"bKGD", b"pHYs", b"cICP", b"acTL", b"fcTL", b"fdAT",
];

fn png_chunk(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut chunk = (body.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(body);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(body);
    chunk.extend_from_slice(&crc.finalize().to_be_bytes());
    chunk
}

fn strip_png(data: &[u8], orientation: Orientation) -> Option<Vec<u8>> {
    let mut out = data[..8].to_vec();
    let mut pos = 8;
    let mut exif_written = orientation == Orientation::IDENTITY;
    while pos < data.len() {
        let length = u32::from_be_bytes(data.get(pos..pos + 4)?.try_into().ok()?) as usize;
        let kind: [u8; 4] = data.get(pos + 4..pos + 8)?.try_into().ok()?;
        let end = pos.checked_add(12 + length)?;
        let chunk = data.get(pos..end)?;
        if !exif_written && (&kind == b"IDAT" || &kind == b"acTL") {
            out.extend(png_chunk(b"eXIf", &orientation_exif(orientation)));
            exif_written = true;
        }
        // Unknown critical chunks (upper-case first letter) stay: a decoder
        // must see them to refuse the file as the source would be refused.
        if PNG_KEPT.contains(&&kind) || kind[0].is_ascii_uppercase() {
            out.extend_from_slice(chunk);
        }
        pos = end;
        if &kind == b"IEND" {
            return Some(out);
        }
    }
    None // no IEND: truncated
}

// ---------------------------------------------------------------------- WebP

fn strip_webp(data: &[u8], orientation: Orientation) -> Option<Vec<u8>> {
    let riff_end = (u32::from_le_bytes(data.get(4..8)?.try_into().ok()?) as usize)
        .checked_add(8)?
        .min(data.len());
    let mut chunks = Vec::new();
    let mut pos = 12;
    let mut vp8x = None;
    while pos + 8 <= riff_end {
        let kind: [u8; 4] = data[pos..pos + 4].try_into().ok()?;
        let size = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().ok()?) as usize;
        let end = (pos + 8).checked_add(size)?;
        let body = data.get(pos + 8..end)?;
        match &kind {
            b"VP8X" => vp8x = Some(body.to_vec()),
            b"EXIF" | b"XMP " => {}
            b"VP8 " | b"VP8L" | b"ALPH" | b"ANIM" | b"ANMF" | b"ICCP" => chunks.push((kind, body)),
            _ => {} // unknown chunks: dropped
        }
        pos = end + (size & 1); // chunks are padded to even sizes
    }
    let exif = (orientation != Orientation::IDENTITY).then(|| orientation_exif(orientation));
    let mut body = b"WEBP".to_vec();
    let push = |body: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        body.extend_from_slice(kind);
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    };
    match vp8x {
        Some(mut header) if header.len() >= 10 => {
            // Flags: ICC 0x20, alpha 0x10, EXIF 0x08, XMP 0x04, animation 0x02.
            header[0] &= !0x0C;
            if exif.is_some() {
                header[0] |= 0x08;
            }
            push(&mut body, b"VP8X", &header);
        }
        Some(_) => return None,
        None if exif.is_some() => {
            // A simple file gains a VP8X header to carry the orientation.
            let (width, height) = simple_webp_size(&chunks)?;
            let mut header = vec![0x08, 0, 0, 0];
            header.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
            header.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
            push(&mut body, b"VP8X", &header);
        }
        None => {}
    }
    for (kind, data) in &chunks {
        push(&mut body, kind, data);
    }
    if let Some(exif) = &exif {
        push(&mut body, b"EXIF", exif);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend(body);
    Some(out)
}

/// Canvas size of a VP8 or VP8L bitstream (for a new VP8X header).
fn simple_webp_size(chunks: &[([u8; 4], &[u8])]) -> Option<(u32, u32)> {
    let (kind, data) = chunks.iter().find(|(k, _)| k == b"VP8 " || k == b"VP8L")?;
    if kind == b"VP8 " {
        let w = u16::from_le_bytes(data.get(6..8)?.try_into().ok()?) & 0x3FFF;
        let h = u16::from_le_bytes(data.get(8..10)?.try_into().ok()?) & 0x3FFF;
        Some((u32::from(w), u32::from(h)))
    } else {
        let bits = u32::from_le_bytes(data.get(1..5)?.try_into().ok()?);
        Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
    }
}

// ----------------------------------------------------------------------- GIF

/// Application extensions kept: animation looping.
fn keep_gif_application(id: &[u8]) -> bool {
    id.starts_with(b"NETSCAPE2.0") || id.starts_with(b"ANIMEXTS1.0")
}

/// The sub-blocks starting at `pos` (up to and with the 0 terminator): end.
fn gif_sub_blocks(data: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let n = usize::from(*data.get(pos)?);
        pos += 1 + n;
        if n == 0 {
            return (pos <= data.len()).then_some(pos);
        }
    }
}

fn strip_gif(data: &[u8]) -> Option<Vec<u8>> {
    let flags = *data.get(10)?;
    let table = if flags & 0x80 != 0 {
        3 << ((flags & 7) + 1)
    } else {
        0
    };
    let mut pos = 13 + table;
    let mut out = data.get(..pos)?.to_vec();
    loop {
        match *data.get(pos)? {
            0x3B => {
                out.push(0x3B);
                return Some(out);
            }
            0x2C => {
                let flags = *data.get(pos + 9)?;
                let local = if flags & 0x80 != 0 {
                    3 << ((flags & 7) + 1)
                } else {
                    0
                };
                let end = gif_sub_blocks(data, pos + 10 + local + 1)?;
                out.extend_from_slice(data.get(pos..end)?);
                pos = end;
            }
            0x21 => {
                let label = *data.get(pos + 1)?;
                let end = gif_sub_blocks(data, pos + 2)?;
                let first = data.get(pos + 3..end).unwrap_or(&[]);
                // Graphic control (timing, transparency) and looping stay;
                // comments, plain text and other applications (XMP) go.
                if label == 0xF9 || (label == 0xFF && keep_gif_application(first)) {
                    out.extend_from_slice(&data[pos..end]);
                }
                pos = end;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{decode, ImageOptions};

    const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/exif-orientation/Landscape_6.jpg");

    fn pixels(data: &[u8]) -> Vec<u8> {
        decode(data, &ImageOptions::default(), 0)
            .result
            .unwrap()
            .data
    }

    #[test]
    fn jpeg_keeps_pixels_and_orientation_drops_the_rest() {
        let stripped = strip_metadata(PHOTO, Orientation::from_exif(6)).unwrap();
        assert!(stripped.len() < PHOTO.len());
        assert_eq!(pixels(&stripped), pixels(PHOTO));
        let probe = crate::image::probe(&stripped, &ImageOptions::default());
        assert_eq!(probe.orientation, Orientation::from_exif(6));
        // The only APP1 left is the 1-tag EXIF block.
        let app1 = stripped.windows(2).filter(|w| w == &[0xFF, 0xE1]).count();
        assert!(app1 <= 1);
        // Stripping twice changes nothing more.
        assert_eq!(
            strip_metadata(&stripped, Orientation::from_exif(6)).unwrap(),
            stripped
        );
    }

    #[test]
    fn truncated_and_foreign_inputs() {
        assert_eq!(
            strip_metadata(&PHOTO[..PHOTO.len() / 2], Orientation::IDENTITY),
            None
        );
        assert_eq!(
            strip_metadata(b"II*\0\x08\0\0\0", Orientation::IDENTITY),
            None
        );
        assert_eq!(strip_metadata(b"not an image", Orientation::IDENTITY), None);
    }
}
