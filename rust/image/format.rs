//! Format detection from the leading bytes ("magic numbers"), never file names.

/// Image container formats fastprep decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    WebP,
    Gif,
    Bmp,
    Tiff,
    Pnm,
    Ico,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::WebP => "webp",
            Format::Gif => "gif",
            Format::Bmp => "bmp",
            Format::Tiff => "tiff",
            Format::Pnm => "pnm",
            Format::Ico => "ico",
        }
    }

    /// The name used in error messages ("corrupt PNG: ...").
    pub fn label(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::WebP => "WebP",
            Format::Gif => "GIF",
            Format::Bmp => "BMP",
            Format::Tiff => "TIFF",
            Format::Pnm => "PNM",
            Format::Ico => "ICO",
        }
    }
}

/// PBM/PGM/PPM (`P1`-`P6`) and PAM (`P7`): the magic and then whitespace.
fn is_pnm(data: &[u8]) -> bool {
    matches!(data, [b'P', b'1'..=b'7', w, ..] if w.is_ascii_whitespace())
}

/// An ICO directory: reserved 0, type 1, at least one entry.
fn is_ico(data: &[u8]) -> bool {
    data.len() >= 22 && data[..4] == [0, 0, 1, 0] && data[4..6] != [0, 0]
}

/// Identifies the format from the first bytes, or `None` when unknown.
pub fn sniff(data: &[u8]) -> Option<Format> {
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some(Format::WebP)
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some(Format::Gif)
    } else if data.starts_with(b"BM") && data.len() >= 14 {
        Some(Format::Bmp)
    } else if data.starts_with(b"II*\0") || data.starts_with(b"MM\0*") {
        Some(Format::Tiff)
    } else if is_pnm(data) {
        Some(Format::Pnm)
    } else if is_ico(data) {
        Some(Format::Ico)
    } else {
        None
    }
}

/// What an unrecognised input looks like, for the error message: a format
/// we know but do not decode, or its first bytes.
pub fn describe_unknown(data: &[u8]) -> String {
    let known: &[(&[u8], usize, &str)] = &[
        (b"ftypheic", 4, "HEIC"),
        (b"ftypheix", 4, "HEIC"),
        (b"ftypmif1", 4, "HEIF"),
        (b"ftypavif", 4, "AVIF"),
        (b"ftyp", 4, "an ISO media file (video or HEIF)"),
        (b"\0\0\0\x0cjP  ", 0, "JPEG 2000"),
        (b"\xff\x4f\xff\x51", 0, "a JPEG 2000 codestream"),
        (b"\xff\x0a", 0, "JPEG XL"),
        (b"\0\0\0\x0cJXL ", 0, "JPEG XL"),
        (b"II+\0", 0, "BigTIFF"),
        (b"MM\0+", 0, "BigTIFF"),
        (b"8BPS", 0, "a Photoshop document"),
        (b"%PDF", 0, "PDF"),
        (b"qoif", 0, "QOI"),
        (b"\x76\x2f\x31\x01", 0, "OpenEXR"),
        (b"#?RADIANCE", 0, "Radiance HDR"),
        (b"DDS ", 0, "DDS"),
        (b"\xff\xd8", 0, "a JPEG without a marker after SOI"),
        (b"RIFF", 0, "a RIFF file that is not WebP"),
        (b"PK\x03\x04", 0, "a ZIP archive"),
        (b"\x1f\x8b", 0, "gzip data"),
    ];
    for (magic, at, name) in known {
        if data.get(*at..at + magic.len()) == Some(magic) {
            return (*name).to_string();
        }
    }
    let text = data
        .iter()
        .take(64)
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if text {
        let head = String::from_utf8_lossy(&data[..data.len().min(16)]);
        format!("text starting {:?}", head.trim_start())
    } else {
        let hex: Vec<String> = data.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("data starting {}", hex.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_magic_numbers() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Format::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(Format::Png));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::WebP));
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b"GIF89a"), Some(Format::Gif));
        assert_eq!(sniff(b"BM\0\0\0\0\0\0\0\0\0\0\0\0"), Some(Format::Bmp));
        assert_eq!(sniff(b"BM"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"<html>"), None);
        assert_eq!(sniff(b"II*\0\x08\0\0\0"), Some(Format::Tiff));
        assert_eq!(sniff(b"MM\0*\0\0\0\x08"), Some(Format::Tiff));
        assert_eq!(sniff(b"P6\n3 2\n255\n"), Some(Format::Pnm));
        assert_eq!(sniff(b"P6x"), None);
        assert_eq!(
            sniff(&[0, 0, 1, 0, 1, 0, 16, 16, 0, 0, 1, 0, 32, 0, 0, 0, 0, 0, 22, 0, 0, 0]),
            Some(Format::Ico)
        );
    }

    #[test]
    fn unknown_inputs_are_described() {
        assert_eq!(describe_unknown(b"\0\0\0\x18ftypheic...."), "HEIC");
        assert_eq!(describe_unknown(b"%PDF-1.7"), "PDF");
        assert_eq!(
            describe_unknown(b"<html><body>"),
            "text starting \"<html><body>\""
        );
        assert_eq!(describe_unknown(&[1, 2, 3]), "data starting 01 02 03");
    }
}
