//! Where a batch's encoded bytes come from: memory (Python bytes, Arrow
//! binary arrays) or files read on the worker threads.

use std::path::PathBuf;

use crate::image::DecodeError;

/// Random access to the encoded bytes of each record.
pub trait RecordSource: Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with record `index`'s bytes, or the reason they are unavailable.
    fn with_bytes<R>(&self, index: usize, f: impl FnOnce(Result<&[u8], DecodeError>) -> R) -> R;
}

/// Borrowed in-memory records; `None` is a null entry.
pub struct BytesSource<'a>(pub Vec<Option<&'a [u8]>>);

impl RecordSource for BytesSource<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn with_bytes<R>(&self, index: usize, f: impl FnOnce(Result<&[u8], DecodeError>) -> R) -> R {
        match self.0[index] {
            Some(bytes) => f(Ok(bytes)),
            None => f(Err(DecodeError::Null)),
        }
    }
}

/// Files, read by the worker that decodes them (I/O overlaps decoding).
pub struct PathSource(pub Vec<PathBuf>);

impl RecordSource for PathSource {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn with_bytes<R>(&self, index: usize, f: impl FnOnce(Result<&[u8], DecodeError>) -> R) -> R {
        let path = &self.0[index];
        match std::fs::read(path) {
            Ok(bytes) => f(Ok(&bytes)),
            Err(e) => f(Err(DecodeError::Io(format!("{}: {e}", path.display())))),
        }
    }
}
