//! Image decoding and encoding entry points.

use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt8Type;
use arrow_array::{Array, BinaryArray};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use pyo3_arrow::{PyArray, PyChunkedArray, PyRecordBatch};

use super::arrow_input::byte_slices;
use super::options::PyDecodeOptions;
use crate::batch::{
    decode_batch, encode_batch, encode_frames, normalize_frames, normalize_frames_into_planes,
    BytesSource, Layout, PathSource, RecordSource, Scale,
};
use crate::image::{
    strip_metadata, DecodeOptions, EncodeFormat, Orientation, DEFAULT_MAX_PIXELS, ERROR_KINDS,
    FILTERS, HASHES, MODES,
};
use crate::pool::run_in_pool;

/// Runs the batch without the GIL and returns a `pyarrow.RecordBatch`.
fn run<'py>(
    py: Python<'py>,
    source: impl RecordSource + Send,
    options: PyDecodeOptions,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let options = DecodeOptions::from(options).resolve()?;
    let batch = py.detach(|| {
        run_in_pool(num_threads, || {
            decode_batch(&source, &options).into_record_batch()
        })
    });
    PyRecordBatch::new(batch).into_pyarrow(py)
}

#[pyfunction]
#[pyo3(signature = (images, options, num_threads=None))]
fn decode_bytes<'py>(
    py: Python<'py>,
    images: &Bound<'py, PyList>,
    options: PyDecodeOptions,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let owned: Vec<Bound<'py, PyBytes>> = images
        .iter()
        .map(|item| {
            item.cast_into::<PyBytes>()
                .map_err(|_| PyTypeError::new_err("expected bytes"))
        })
        .collect::<PyResult<_>>()?;
    // Borrowing bytes objects is safe without the GIL: they are immutable and
    // `owned` keeps them alive until the batch is built.
    let slices = owned.iter().map(|b| Some(b.as_bytes())).collect();
    run(py, BytesSource(slices), options, num_threads)
}

#[pyfunction]
#[pyo3(signature = (paths, options, num_threads=None))]
fn decode_paths<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    options: PyDecodeOptions,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    run(py, PathSource(paths), options, num_threads)
}

#[pyfunction]
#[pyo3(signature = (array, options, num_threads=None))]
fn decode_arrow<'py>(
    py: Python<'py>,
    array: PyChunkedArray,
    options: PyDecodeOptions,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let slices = byte_slices(array.chunks())?;
    run(py, BytesSource(slices), options, num_threads)
}

/// Applies every rule of the core's options without decoding anything, so
/// `fastprep.DecodeOptions` rejects what the decode would.
#[pyfunction]
fn check_decode_options(options: PyDecodeOptions) -> PyResult<()> {
    DecodeOptions::from(options).resolve()?;
    Ok(())
}

/// Frames of a `fixed_size_list<uint8>[height*width*3]` column, without copying.
fn rgb_frames(pixels: &PyChunkedArray, frame: usize) -> PyResult<Vec<Option<&[u8]>>> {
    let mut frames = Vec::new();
    for chunk in pixels.chunks() {
        let list = chunk.as_fixed_size_list_opt().ok_or_else(|| {
            PyTypeError::new_err("expected a fixed_size_list<uint8> pixel column")
        })?;
        if list.value_length() as usize != frame {
            return Err(PyValueError::new_err(
                "pixel size does not match height x width x 3",
            ));
        }
        let values = list
            .values()
            .as_primitive_opt::<UInt8Type>()
            .ok_or_else(|| PyTypeError::new_err("pixels must be uint8"))?
            .values();
        for i in 0..list.len() {
            let start = list.value_offset(i) as usize;
            frames.push(list.is_valid(i).then(|| &values[start..start + frame]));
        }
    }
    Ok(frames)
}

/// Encodes fixed-size RGB pixels (a `fixed_size_list<uint8>[height*width*3]`
/// column, e.g. a fixed-shape tensor's storage) as JPEG, lossy WebP or PNG
/// bytes that carry no metadata. Null pixels (or an encoder failure) give null.
#[pyfunction]
#[pyo3(signature = (pixels, height, width, format="jpeg", quality=90, num_threads=None))]
fn encode_images<'py>(
    py: Python<'py>,
    pixels: PyChunkedArray,
    height: u32,
    width: u32,
    format: &str,
    quality: u8,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let format = EncodeFormat::from_name(format)?;
    let frames = rgb_frames(&pixels, height as usize * width as usize * 3)?;
    let encoded = py.detach(|| {
        run_in_pool(num_threads, || {
            encode_batch(&frames, width, height, format, quality)
        })
    });
    let array = BinaryArray::from_iter(encoded.iter().map(|e| e.as_deref()));
    let exported = PyArray::from_array_ref(std::sync::Arc::new(array)).into_pyobject(py)?;
    py.import("pyarrow")?.getattr("array")?.call1((exported,))
}

/// Encodes RGB images of any sizes: `large_binary` rows (`decode_images`
/// with `size=None` or `short_side`/`max_side`) or a fixed-shape tensor's
/// `fixed_size_list<uint8>` storage, with each row's height and width. `subsampling` "444" keeps full JPEG chroma.
#[pyfunction]
#[pyo3(signature = (pixels, heights, widths, format="jpeg", quality=90, subsampling="420", num_threads=None))]
#[allow(clippy::too_many_arguments)]
fn encode_variable<'py>(
    py: Python<'py>,
    pixels: PyChunkedArray,
    heights: Vec<Option<u32>>,
    widths: Vec<Option<u32>>,
    format: &str,
    quality: u8,
    subsampling: &str,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let format = EncodeFormat::from_name(format)?;
    let full_chroma = match subsampling {
        "420" => false,
        "444" => true,
        other => {
            return Err(PyValueError::new_err(format!(
                "subsampling must be '420' or '444', got {other:?}"
            )))
        }
    };
    // Variable-size rows (large_binary), or a fixed-shape tensor's frames
    // (fixed_size_list<uint8>), both read in place.
    let slices = match pixels.chunks().first().map(|c| c.data_type().clone()) {
        Some(arrow_schema::DataType::FixedSizeList(_, frame)) => {
            rgb_frames(&pixels, frame as usize)?
        }
        _ => byte_slices(pixels.chunks())?,
    };
    if slices.len() != heights.len() || slices.len() != widths.len() {
        return Err(PyValueError::new_err(
            "pixels, heights and widths differ in length",
        ));
    }
    let frames: Vec<_> = slices
        .iter()
        .zip(heights.iter().zip(&widths))
        .map(|(rgb, (h, w))| Some(((*rgb)?, (*w)?, (*h)?)))
        .collect();
    let encoded = py.detach(|| {
        run_in_pool(num_threads, || {
            encode_frames(&frames, format, quality, full_chroma)
        })
    });
    let array = BinaryArray::from_iter(encoded.iter().map(|e| e.as_deref()));
    let exported = PyArray::from_array_ref(std::sync::Arc::new(array)).into_pyobject(py)?;
    py.import("pyarrow")?.getattr("array")?.call1((exported,))
}

/// Fixed-size uint8 RGB frames (a `fixed_size_list<uint8>` column, planes
/// when `channels_first`) as float32 `x / 255`, then `(x - mean) / std` per
/// channel when both are given: torchvision's `ConvertImageDtype(float)` +
/// `Normalize`, bit for bit, in one parallel pass. Returns a
/// `fixed_size_list<float32>` array of the same shape (no validity: the
/// caller's nulls are all-zero frames). `multiply`: scale as v2's
/// `ToDtype(scale=True)` does (times 1/255), not v1's division.
#[pyfunction]
#[pyo3(signature = (pixels, channels_first, mean=None, std=None, multiply=false, num_threads=None))]
#[allow(clippy::too_many_arguments)]
fn normalize_pixels<'py>(
    py: Python<'py>,
    pixels: PyChunkedArray,
    channels_first: bool,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    multiply: bool,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    use arrow_array::{FixedSizeListArray, Float32Array};
    use arrow_buffer::{Buffer, ScalarBuffer};
    use arrow_schema::{DataType, Field};

    let stats = match (mean, std) {
        (Some(m), Some(s)) => Some((m, s)),
        (None, None) => None,
        _ => return Err(PyValueError::new_err("give both mean and std, or neither")),
    };
    let frame = match pixels.chunks().first().map(|c| c.data_type().clone()) {
        Some(DataType::FixedSizeList(_, frame)) if frame % 3 == 0 => frame as usize,
        None => 3,
        _ => {
            return Err(PyTypeError::new_err(
                "expected a fixed_size_list<uint8> column of RGB frames",
            ))
        }
    };
    let frames = rgb_frames(&pixels, frame)?;
    // A single chunk without nulls is one run of bytes, read in place;
    // anything else is gathered first (null frames as zeros).
    let in_place = match pixels.chunks() {
        [chunk] if chunk.null_count() == 0 => chunk.as_fixed_size_list_opt().and_then(|list| {
            let values = list.values().as_primitive_opt::<UInt8Type>()?.values();
            let start = list.value_offset(0).max(0) as usize;
            values.get(start..start + list.len() * frame)
        }),
        _ => None,
    };
    let gathered: Vec<u8>;
    let bytes = match in_place {
        Some(bytes) => bytes,
        None => {
            let zeros = vec![0u8; frame];
            gathered = frames
                .iter()
                .flat_map(|f| f.unwrap_or(&zeros))
                .copied()
                .collect();
            &gathered
        }
    };
    let (layout, scale) = layout_and_scale(channels_first, multiply);
    let values = py.detach(|| {
        run_in_pool(num_threads, || {
            normalize_frames(bytes, frame, layout, scale, stats)
        })
    });
    let item = std::sync::Arc::new(Field::new("item", DataType::Float32, false));
    let values = Float32Array::new(ScalarBuffer::from(Buffer::from_vec(values)), None);
    let array = FixedSizeListArray::new(item, frame as i32, std::sync::Arc::new(values), None);
    let exported = PyArray::from_array_ref(std::sync::Arc::new(array)).into_pyobject(py)?;
    py.import("pyarrow")?.getattr("array")?.call1((exported,))
}

/// The normaliser's input layout and uint8-to-float rule from the flags the
/// Python side passes.
fn layout_and_scale(channels_first: bool, multiply: bool) -> (Layout, Scale) {
    let layout = if channels_first {
        Layout::Planes
    } else {
        Layout::Interleaved
    };
    let scale = if multiply {
        Scale::Multiply
    } else {
        Scale::Divide
    };
    (layout, scale)
}

/// uint8 RGB frames at raw addresses (``(address, length)``, equal lengths)
/// as normalised float32 planes into the float32 memory at `out_address`
/// (`out_len` values): torch's tail writes a batch straight into its
/// shared-memory slot with it. The caller keeps all that memory alive and
/// untouched during the call (Python's buffer protocol is not in the
/// stable ABI this module targets, hence addresses).
#[pyfunction]
#[pyo3(signature = (sources, channels_first, out_address, out_len, mean=None, std=None, multiply=false, num_threads=None))]
#[allow(clippy::too_many_arguments)]
fn normalize_into(
    py: Python<'_>,
    sources: Vec<(usize, usize)>,
    channels_first: bool,
    out_address: usize,
    out_len: usize,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    multiply: bool,
    num_threads: Option<usize>,
) -> PyResult<()> {
    let stats = match (mean, std) {
        (Some(m), Some(s)) => Some((m, s)),
        (None, None) => None,
        _ => return Err(PyValueError::new_err("give both mean and std, or neither")),
    };
    let frame = sources.first().map_or(0, |s| s.1);
    if frame % 3 != 0
        || sources.iter().any(|s| s.1 != frame || s.0 == 0)
        || out_len != frame * sources.len()
        || out_address == 0
        || out_address % std::mem::align_of::<f32>() != 0
    {
        return Err(PyValueError::new_err(
            "sources must be RGB frames of one length filling the output exactly",
        ));
    }
    let (layout, scale) = layout_and_scale(channels_first, multiply);
    // SAFETY: the caller guarantees these regions are live, of these
    // lengths, and not otherwise accessed during the call.
    let frames: Vec<&[u8]> = sources
        .iter()
        .map(|&(address, len)| unsafe { std::slice::from_raw_parts(address as *const u8, len) })
        .collect();
    let out = unsafe { std::slice::from_raw_parts_mut(out_address as *mut f32, out_len) };
    py.detach(|| {
        run_in_pool(num_threads, || {
            normalize_frames_into_planes(&frames, layout, out, scale, stats)
        })
    });
    Ok(())
}

/// Each image without its metadata, losslessly (see the core's
/// `strip_metadata`), re-stating `orientations` (EXIF values, 1 for none);
/// null where that is impossible without re-encoding (TIFF) or the data is
/// malformed.
#[pyfunction]
#[pyo3(signature = (images, orientations, num_threads=None))]
fn strip_images<'py>(
    py: Python<'py>,
    images: PyChunkedArray,
    orientations: Vec<Option<u8>>,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    use rayon::prelude::*;

    let slices = byte_slices(images.chunks())?;
    if slices.len() != orientations.len() {
        return Err(PyValueError::new_err(
            "images and orientations differ in length",
        ));
    }
    let stripped: Vec<Option<Vec<u8>>> = py.detach(|| {
        run_in_pool(num_threads, || {
            slices
                .par_iter()
                .zip(orientations.par_iter())
                .map(|(data, o)| {
                    let o = Orientation::from_exif(u16::from(o.unwrap_or(1)));
                    strip_metadata((*data)?, o)
                })
                .collect()
        })
    });
    let array = BinaryArray::from_iter(stripped.iter().map(|e| e.as_deref()));
    let exported = PyArray::from_array_ref(std::sync::Arc::new(array)).into_pyobject(py)?;
    py.import("pyarrow")?.getattr("array")?.call1((exported,))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // The names and limits `fastprep.images` and `fastprep.options` check
    // against, defined once in the core.
    m.add("MODES", PyTuple::new(py, MODES)?)?;
    m.add("FILTERS", PyTuple::new(py, FILTERS)?)?;
    m.add("HASHES", PyTuple::new(py, HASHES)?)?;
    m.add("ERROR_KINDS", PyTuple::new(py, ERROR_KINDS)?)?;
    m.add("DEFAULT_MAX_PIXELS", DEFAULT_MAX_PIXELS)?;
    m.add_function(wrap_pyfunction!(check_decode_options, m)?)?;
    m.add_function(wrap_pyfunction!(encode_images, m)?)?;
    m.add_function(wrap_pyfunction!(encode_variable, m)?)?;
    m.add_function(wrap_pyfunction!(strip_images, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_pixels, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_into, m)?)?;
    m.add_function(wrap_pyfunction!(decode_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(decode_paths, m)?)?;
    m.add_function(wrap_pyfunction!(decode_arrow, m)?)?;
    Ok(())
}
