//! Borrowing bytes out of Arrow arrays imported through the C interface.

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use pyo3::exceptions::PyTypeError;
use pyo3::PyResult;

/// Values of every chunk as byte slices (`None` for nulls), without copying.
/// Accepts binary and string arrays in all three offset layouts.
pub fn byte_slices(chunks: &[ArrayRef]) -> PyResult<Vec<Option<&[u8]>>> {
    let mut out = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
    for chunk in chunks {
        match chunk.data_type() {
            DataType::Binary => out.extend(chunk.as_binary::<i32>().iter()),
            DataType::LargeBinary => out.extend(chunk.as_binary::<i64>().iter()),
            DataType::BinaryView => out.extend(chunk.as_binary_view().iter()),
            DataType::Utf8 => out.extend(
                chunk
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.map(str::as_bytes)),
            ),
            DataType::LargeUtf8 => out.extend(
                chunk
                    .as_string::<i64>()
                    .iter()
                    .map(|s| s.map(str::as_bytes)),
            ),
            DataType::Utf8View => {
                out.extend(chunk.as_string_view().iter().map(|s| s.map(str::as_bytes)))
            }
            other => {
                return Err(PyTypeError::new_err(format!(
                    "expected binary or string data, got {other}"
                )))
            }
        }
    }
    Ok(out)
}
