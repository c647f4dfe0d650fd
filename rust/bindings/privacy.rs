//! Privacy entry points: caption redaction.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::{PyArray, PyChunkedArray};

use super::arrow_input::byte_slices;
use crate::hashtags::{redact_many, RedactKinds};

/// Captions with `@mentions`, e-mails, phone numbers and URLs replaced by
/// `@user`, `<email>`, `<phone>`, `<url>` (hashtags untouched): a string
/// array (nulls stay null; invalid UTF-8 becomes U+FFFD) and the counts
/// per kind (`mentions`, `emails`, `phones`, `urls`, `captions` changed).
#[pyfunction]
#[pyo3(signature = (captions, mentions=true, emails=true, phones=true, urls=true, num_threads=None))]
fn redact_captions<'py>(
    py: Python<'py>,
    captions: PyChunkedArray,
    mentions: bool,
    emails: bool,
    phones: bool,
    urls: bool,
    num_threads: Option<usize>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
    let texts = byte_slices(captions.chunks())?;
    let kinds = RedactKinds {
        mentions,
        emails,
        phones,
        urls,
    };
    let (array, counts) = py.detach(|| redact_many(&texts, kinds, num_threads));
    let exported = PyArray::from_array_ref(Arc::new(array)).into_pyobject(py)?;
    let array = py.import("pyarrow")?.getattr("array")?.call1((exported,))?;
    let dict = PyDict::new(py);
    dict.set_item("mentions", counts.mentions)?;
    dict.set_item("emails", counts.emails)?;
    dict.set_item("phones", counts.phones)?;
    dict.set_item("urls", counts.urls)?;
    dict.set_item("captions", counts.captions)?;
    Ok((array, dict))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(redact_captions, m)?)?;
    Ok(())
}
