//! Per-record decode errors. Their `Display` text is the reason string users
//! see in the `error` column, so it must be short, specific and stable.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    Null,
    UnsupportedFormat,
    TooLarge {
        width: u64,
        height: u64,
        limit: u64,
    },
    Truncated(&'static str),
    Corrupt {
        format: &'static str,
        detail: String,
    },
    Io(String),
    Internal(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty input"),
            DecodeError::Null => write!(f, "null input"),
            DecodeError::UnsupportedFormat => write!(f, "unsupported format"),
            DecodeError::TooLarge {
                width,
                height,
                limit,
            } => write!(
                f,
                "image too large: {width}x{height} ({} pixels, limit {limit})",
                width * height
            ),
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
