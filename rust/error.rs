//! The core's error type for whole calls (as opposed to one record's
//! [`crate::image::DecodeError`], which becomes a row's `error`, not a failure).
//! The bindings map each variant to one Python exception class.

use std::fmt;

use crate::image::DecodeError;

#[derive(Clone, Debug, PartialEq)]
pub enum CoreError {
    /// A name the caller gave is not one we know (mode, filter, hash ...).
    Unknown { what: &'static str, name: String },
    /// An argument is out of range or inconsistent with another.
    InvalidArgument(String),
    /// Serialized data (hash bytes, counts, vocabularies) cannot be read back.
    InvalidData(String),
    /// A single-record call whose record failed.
    Decode(DecodeError),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Unknown { what, name } => write!(f, "unknown {what} {name:?}"),
            CoreError::InvalidArgument(text) | CoreError::InvalidData(text) => f.write_str(text),
            CoreError::Decode(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CoreError {}

impl From<DecodeError> for CoreError {
    fn from(e: DecodeError) -> Self {
        CoreError::Decode(e)
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_wording() {
        let e = CoreError::Unknown {
            what: "filter",
            name: "sinc".into(),
        };
        assert_eq!(e.to_string(), "unknown filter \"sinc\"");
        assert_eq!(
            CoreError::from(DecodeError::Empty).to_string(),
            "empty input"
        );
    }
}
