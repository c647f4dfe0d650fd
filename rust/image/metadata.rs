//! Where an image states its orientation, read as Pillow's
//! `ImageOps.exif_transpose` reads it: an EXIF block (with or without the
//! `Exif\0\0` header some writers put before the TIFF structure), else an XMP
//! packet's `tiff:Orientation`, else, in PNG, ImageMagick's hex-encoded
//! "Raw profile type exif" text chunk.

use std::io::Read;

use super::orientation::Orientation;

/// The TIFF structure of an EXIF block, past an optional `Exif\0\0` header.
fn tiff_body(block: &[u8]) -> &[u8] {
    block.strip_prefix(b"Exif\0\0").unwrap_or(block)
}

/// The orientation tag of an EXIF block, when it has a valid one.
pub fn exif_orientation(block: &[u8]) -> Option<Orientation> {
    image::metadata::Orientation::from_exif_chunk(tiff_body(block))
        .map(|o| Orientation::from_exif(u16::from(o.to_exif())))
}

/// `tiff:Orientation="N"` or `<tiff:Orientation>N<` in an XMP packet, the
/// pattern Pillow searches for.
pub fn xmp_orientation(xmp: &[u8]) -> Option<Orientation> {
    const TAG: &[u8] = b"tiff:Orientation";
    let mut rest = xmp;
    while let Some(at) = memchr::memmem::find(rest, TAG) {
        let after = &rest[at + TAG.len()..];
        let digit = match after {
            [b'=', b'"', d, ..] | [b'>', d, ..] => Some(*d),
            _ => None,
        };
        if let Some(d @ b'1'..=b'8') = digit {
            return Some(Orientation::from_exif(u16::from(d - b'0')));
        }
        rest = after;
    }
    None
}

/// Orientation from PNG text chunks: an XMP packet (`XML:com.adobe.xmp`) or
/// ImageMagick's "Raw profile type exif"/"APP1" (hex lines, optionally
/// zlib-compressed in `zTXt`/`iTXt`). EXIF wins over XMP, as in Pillow.
pub fn png_text_orientation(png: &[u8]) -> Option<Orientation> {
    let mut xmp = None;
    let mut pos = 8;
    while pos + 8 <= png.len() {
        let length = u32::from_be_bytes(png[pos..pos + 4].try_into().ok()?) as usize;
        let kind = &png[pos + 4..pos + 8];
        let end = pos.checked_add(8 + length)?;
        if kind == b"IDAT" || kind == b"IEND" || end > png.len() {
            break;
        }
        let body = &png[pos + 8..end];
        if let Some((keyword, text)) = text_chunk(kind, body) {
            if keyword.starts_with(b"Raw profile type exif")
                || keyword.starts_with(b"Raw profile type APP1")
            {
                if let Some(o) = raw_profile(&text).as_deref().and_then(exif_orientation) {
                    return Some(o);
                }
            } else if keyword == b"XML:com.adobe.xmp" {
                xmp = xmp.or_else(|| xmp_orientation(&text));
            }
        }
        pos = end + 4; // skip the CRC
    }
    xmp
}

/// (keyword, text) of a tEXt, zTXt or iTXt chunk; compressed text inflated
/// up to a bound (a metadata chunk is never megabytes of orientation).
fn text_chunk(kind: &[u8], body: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let nul = memchr::memchr(0, body)?;
    let keyword = body[..nul].to_vec();
    let rest = &body[nul + 1..];
    let text = match kind {
        b"tEXt" => rest.to_vec(),
        b"zTXt" => inflate(rest.get(1..)?)?,
        b"iTXt" => {
            let (&compressed, rest) = rest.split_first()?;
            let rest = rest.get(1..)?; // compression method
            let lang = memchr::memchr(0, rest)?;
            let rest = &rest[lang + 1..];
            let translated = memchr::memchr(0, rest)?;
            let rest = &rest[translated + 1..];
            if compressed == 1 {
                inflate(rest)?
            } else {
                rest.to_vec()
            }
        }
        _ => return None,
    };
    Some((keyword, text))
}

fn inflate(data: &[u8]) -> Option<Vec<u8>> {
    const LIMIT: u64 = 4 << 20;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(LIMIT)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// ImageMagick's raw profile: "\nexif\n   LENGTH\nHEXHEX...": the hex digits
/// after the third line, as Pillow reads them.
fn raw_profile(text: &[u8]) -> Option<Vec<u8>> {
    let mut lines = text.split(|&b| b == b'\n');
    for _ in 0..3 {
        lines.next()?;
    }
    let digits: Vec<u8> = lines
        .flatten()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    digits
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some(nibble(*hi)? << 4 | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A big-endian TIFF block with one IFD entry: Orientation = `value`.
    pub fn exif_block(value: u8) -> Vec<u8> {
        vec![
            b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, value, 0, 0, 0,
            0, 0, 0,
        ]
    }

    #[test]
    fn exif_with_and_without_the_exif_header() {
        assert_eq!(
            exif_orientation(&exif_block(6)),
            Some(Orientation::from_exif(6))
        );
        let mut prefixed = b"Exif\0\0".to_vec();
        prefixed.extend(exif_block(8));
        assert_eq!(exif_orientation(&prefixed), Some(Orientation::from_exif(8)));
        assert_eq!(exif_orientation(b"Exif\0\0garbage"), None);
    }

    #[test]
    fn xmp_both_spellings() {
        let attr = br#"<rdf:Description tiff:Orientation="6" />"#;
        let element = b"<tiff:Orientation>3</tiff:Orientation>";
        assert_eq!(xmp_orientation(attr), Some(Orientation::from_exif(6)));
        assert_eq!(xmp_orientation(element), Some(Orientation::from_exif(3)));
        assert_eq!(xmp_orientation(b"tiff:Orientation=\"x\""), None);
        assert_eq!(xmp_orientation(b"no orientation here"), None);
    }

    fn chunk(kind: &[u8], body: &[u8]) -> Vec<u8> {
        let mut c = (body.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(body);
        c.extend_from_slice(&[0; 4]); // CRC is not checked here
        c
    }

    fn hex(data: &[u8]) -> String {
        data.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn png_raw_profile_and_xmp() {
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend(exif_block(5));
        let profile = format!("\nexif\n   {}\n{}\n", exif.len(), hex(&exif));
        let mut body = b"Raw profile type exif\0".to_vec();
        body.extend_from_slice(profile.as_bytes());
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &[0; 13]));
        png.extend(chunk(b"tEXt", &body));
        png.extend(chunk(b"IDAT", &[]));
        assert_eq!(png_text_orientation(&png), Some(Orientation::from_exif(5)));

        let mut compressed = b"Raw profile type exif\0\0".to_vec();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, profile.as_bytes()).unwrap();
        compressed.extend(z.finish().unwrap());
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"zTXt", &compressed));
        assert_eq!(png_text_orientation(&png), Some(Orientation::from_exif(5)));

        let mut itxt = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
        itxt.extend_from_slice(br#"<x tiff:Orientation="7"/>"#);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"iTXt", &itxt));
        assert_eq!(png_text_orientation(&png), Some(Orientation::from_exif(7)));
        // Truncated or garbage chunks are no orientation, never a panic.
        assert_eq!(png_text_orientation(&png[..png.len() - 10]), None);
        assert_eq!(
            png_text_orientation(b"\x89PNG\r\n\x1a\n\xff\xff\xff\xff"),
            None
        );
    }
}
