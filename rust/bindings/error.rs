//! The one place core errors become Python exceptions.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;

use crate::error::CoreError;
use crate::image::DecodeError;

mod py {
    // Lazily imported: `fastprep.errors.DecodeError` derives from ValueError
    // and the package's FastprepError, so callers catch it either way.
    pyo3::import_exception!(fastprep.errors, DecodeError);
}

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        let text = e.to_string();
        match e {
            CoreError::Unknown { .. }
            | CoreError::InvalidArgument(_)
            | CoreError::InvalidData(_) => PyValueError::new_err(text),
            CoreError::Decode(DecodeError::Io(_)) => PyOSError::new_err(text),
            CoreError::Decode(_) => py::DecodeError::new_err(text),
        }
    }
}
