//! Per-record decode errors. Their `Display` text is the reason string users
//! see in the `error` column, so it must be short, specific and stable; their
//! [`DecodeError::kind`] is the machine-readable `error_kind` column, stable
//! across releases so callers can branch on it instead of parsing text.

use std::fmt;

/// Every value [`DecodeError::kind`] can return, in a fixed order.
pub const ERROR_KINDS: [&str; 7] = [
    "empty",
    "unsupported_format",
    "unsupported",
    "truncated",
    "corrupt",
    "too_large",
    "io",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    Null,
    /// Not a format we decode; the text says what it looks like (a format
    /// we know of, or its first bytes).
    UnsupportedFormat(String),
    /// A known format using a feature we do not decode (12-bit JPEG, an odd
    /// colour type): the file may well be valid.
    Unsupported {
        format: &'static str,
        detail: String,
    },
    TooLarge {
        width: u64,
        height: u64,
        limit: u64,
    },
    /// The pixels would not fit in this process's address space.
    OutOfMemory,
    /// The header claims more pixels than the file's data could possibly
    /// hold (or than the decoder accepts): refused before allocating.
    Implausible {
        format: &'static str,
        detail: String,
    },
    Truncated(&'static str),
    Corrupt {
        format: &'static str,
        detail: String,
    },
    Io(String),
    Internal(String),
}

impl DecodeError {
    /// The stable category, one of [`ERROR_KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            // Null and empty both mean "no bytes to decode".
            DecodeError::Empty | DecodeError::Null => "empty",
            DecodeError::UnsupportedFormat(_) => "unsupported_format",
            DecodeError::Unsupported { .. } => "unsupported",
            DecodeError::Truncated(_) => "truncated",
            DecodeError::TooLarge { .. }
            | DecodeError::OutOfMemory
            | DecodeError::Implausible { .. } => "too_large",
            DecodeError::Io(_) => "io",
            // A decoder panic or failed library call on this record: retrying
            // will not help, so callers treat it like unreadable data. The text
            // ("internal error: ...") still tells the two apart.
            DecodeError::Corrupt { .. } | DecodeError::Internal(_) => "corrupt",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty input"),
            DecodeError::Null => write!(f, "null input"),
            DecodeError::UnsupportedFormat(seen) => write!(f, "unsupported format: {seen}"),
            DecodeError::Unsupported { format, detail } => {
                write!(f, "unsupported {format}: {detail}")
            }
            DecodeError::TooLarge {
                width,
                height,
                limit,
            } => write!(
                f,
                "image too large: {width}x{height} ({} pixels, limit {limit})",
                width * height
            ),
            DecodeError::OutOfMemory => write!(f, "image too large: does not fit in memory"),
            DecodeError::Implausible { format, detail } => {
                write!(f, "image too large: implausible {format} header ({detail})")
            }
            DecodeError::Truncated(format) => write!(f, "truncated {format}"),
            DecodeError::Corrupt { format, detail } => write!(f, "corrupt {format}: {detail}"),
            DecodeError::Io(detail) => write!(f, "io error: {detail}"),
            DecodeError::Internal(detail) => write!(f, "internal error: {detail}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Rejects images over the pixel limit before any pixel memory is allocated.
pub fn check_pixel_limit(width: u32, height: u32, limit: u64) -> Result<(), DecodeError> {
    let (w, h) = (u64::from(width), u64::from(height));
    if w == 0 || h == 0 {
        return Err(DecodeError::Corrupt {
            format: "image",
            detail: format!("zero size {w}x{h}"),
        });
    }
    if w * h > limit {
        return Err(DecodeError::TooLarge {
            width: w,
            height: h,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{decode, ImageOptions};

    fn kind_of(data: &[u8], options: &ImageOptions) -> &'static str {
        decode(data, options, 0).result.unwrap_err().kind()
    }

    /// A real 32x24 JPEG (a gradient), from the crate's own encoder.
    fn jpeg() -> Vec<u8> {
        let rgb: Vec<u8> = (0..32 * 24 * 3).map(|i| (i * 7 % 251) as u8).collect();
        crate::image::encode_jpeg(&rgb, 32, 24, 90).unwrap()
    }

    #[test]
    fn every_kind_is_listed() {
        let all = [
            DecodeError::Empty,
            DecodeError::Null,
            DecodeError::UnsupportedFormat("x".into()),
            DecodeError::Implausible {
                format: "PNG",
                detail: "x".into(),
            },
            DecodeError::Unsupported {
                format: "JPEG",
                detail: "x".into(),
            },
            DecodeError::TooLarge {
                width: 2,
                height: 2,
                limit: 1,
            },
            DecodeError::OutOfMemory,
            DecodeError::Truncated("PNG"),
            DecodeError::Corrupt {
                format: "PNG",
                detail: "x".into(),
            },
            DecodeError::Io("x".into()),
            DecodeError::Internal("x".into()),
        ];
        for e in &all {
            assert!(ERROR_KINDS.contains(&e.kind()), "{e:?}");
        }
    }

    #[test]
    fn kinds_of_bad_inputs() {
        let options = ImageOptions::default();
        assert_eq!(kind_of(b"", &options), "empty");
        assert_eq!(
            kind_of(b"not an image at all", &options),
            "unsupported_format"
        );
        let jpeg = jpeg();
        assert!(decode(&jpeg, &options, 0).result.is_ok());
        // Cut inside the entropy-coded scan, past the tables.
        assert_eq!(kind_of(&jpeg[..jpeg.len() - 40], &options), "truncated");
        let small = ImageOptions {
            max_pixels: 10,
            ..Default::default()
        };
        assert_eq!(kind_of(&jpeg, &small), "too_large");
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(b"garbage garbage garbage garbage");
        assert_eq!(kind_of(&png, &options), "corrupt");
    }

    #[test]
    fn unsupported_is_never_called_corrupt() {
        let e = DecodeError::Unsupported {
            format: "JPEG",
            detail: "12-bit precision".into(),
        };
        assert_eq!(e.to_string(), "unsupported JPEG: 12-bit precision");
        assert_eq!(e.kind(), "unsupported");
        let e = DecodeError::UnsupportedFormat("HEIC".into());
        assert_eq!(e.to_string(), "unsupported format: HEIC");
    }
}
