//! Image decoding entry points.

use std::path::PathBuf;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use pyo3_arrow::{PyChunkedArray, PyRecordBatch};

use super::arrow_input::byte_slices;
use crate::batch::{decode_batch, run_in_pool, BytesSource, PathSource, RecordSource};
use crate::image::{Filter, Geometry, HashRequest, ImageOptions};

/// Keyword options shared by the decode entry points, as Python passes them.
struct RawOptions {
    size: Option<(u32, u32)>,
    mode: String,
    resize_shorter: Option<u32>,
    filter: String,
    apply_orientation: bool,
    reduced_decode: bool,
    background: (u8, u8, u8),
    max_pixels: u64,
    num_threads: Option<usize>,
    seed: u64,
    scale: (f64, f64),
    ratio: (f64, f64),
    flip_p: f64,
    hashes: Vec<String>,
    output_pixels: bool,
}

fn image_options(raw: &RawOptions) -> PyResult<ImageOptions> {
    let filter = Filter::from_name(&raw.filter)
        .ok_or_else(|| PyValueError::new_err(format!("unknown filter {:?}", raw.filter)))?;
    let geometry = match raw.size {
        None => Geometry::Original,
        Some((height, width)) => match raw.mode.as_str() {
            "center_crop" => {
                let default = (f64::from(height.max(width)) * 256.0 / 224.0).round() as u32;
                let shorter = raw.resize_shorter.unwrap_or(default);
                if shorter < height.max(width) {
                    return Err(PyValueError::new_err(format!(
                        "resize_shorter ({shorter}) must be at least the crop size ({height}x{width})"
                    )));
                }
                Geometry::CenterCrop {
                    height,
                    width,
                    shorter,
                }
            }
            "resize" => Geometry::Resize { height, width },
            "letterbox" => Geometry::Letterbox { height, width },
            "random_resized_crop" => {
                let (lo, hi) = raw.scale;
                let valid = 0.0 < lo
                    && lo <= hi
                    && hi <= 1.0
                    && 0.0 < raw.ratio.0
                    && raw.ratio.0 <= raw.ratio.1;
                if !valid {
                    return Err(PyValueError::new_err(
                        "scale must be 0 < lo <= hi <= 1 and ratio 0 < lo <= hi",
                    ));
                }
                Geometry::RandomResizedCrop {
                    height,
                    width,
                    scale: raw.scale,
                    ratio: raw.ratio,
                    flip_p: raw.flip_p,
                    seed: raw.seed,
                }
            }
            other => return Err(PyValueError::new_err(format!("unknown mode {other:?}"))),
        },
    };
    let (r, g, b) = raw.background;
    Ok(ImageOptions {
        geometry,
        filter,
        apply_orientation: raw.apply_orientation,
        reduced_decode: raw.reduced_decode,
        background: [r, g, b],
        max_pixels: raw.max_pixels,
        hashes: HashRequest::from_names(raw.hashes.iter().map(String::as_str))
            .map_err(PyValueError::new_err)?,
        output_pixels: raw.output_pixels,
    })
}

/// Runs the batch without the GIL and returns a `pyarrow.RecordBatch`.
fn run<'py>(
    py: Python<'py>,
    source: impl RecordSource + Send,
    raw: &RawOptions,
) -> PyResult<Bound<'py, PyAny>> {
    let options = image_options(raw)?;
    let threads = raw.num_threads;
    let batch = py.detach(|| {
        run_in_pool(threads, || {
            decode_batch(&source, &options).into_record_batch()
        })
    });
    PyRecordBatch::new(batch).into_pyarrow(py)
}

#[pyfunction]
#[pyo3(signature = (images, **options))]
fn decode_bytes<'py>(
    py: Python<'py>,
    images: &Bound<'py, PyList>,
    options: Option<&Bound<'py, pyo3::types::PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let raw: RawOptions = extract_options(options)?;
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
    run(py, BytesSource(slices), &raw)
}

#[pyfunction]
#[pyo3(signature = (paths, **options))]
fn decode_paths<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    options: Option<&Bound<'py, pyo3::types::PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let raw: RawOptions = extract_options(options)?;
    run(py, PathSource(paths), &raw)
}

#[pyfunction]
#[pyo3(signature = (array, **options))]
fn decode_arrow<'py>(
    py: Python<'py>,
    array: PyChunkedArray,
    options: Option<&Bound<'py, pyo3::types::PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let raw: RawOptions = extract_options(options)?;
    let slices = byte_slices(array.chunks())?;
    run(py, BytesSource(slices), &raw)
}

fn extract_options(options: Option<&Bound<'_, pyo3::types::PyDict>>) -> PyResult<RawOptions> {
    let dict = options.ok_or_else(|| PyTypeError::new_err("decode options are required"))?;
    let get = |name: &str| -> PyResult<Bound<'_, PyAny>> {
        dict.get_item(name)?
            .ok_or_else(|| PyTypeError::new_err(format!("missing option {name}")))
    };
    Ok(RawOptions {
        size: get("size")?.extract()?,
        mode: get("mode")?.extract()?,
        resize_shorter: get("resize_shorter")?.extract()?,
        filter: get("filter")?.extract()?,
        apply_orientation: get("apply_orientation")?.extract()?,
        reduced_decode: get("reduced_decode")?.extract()?,
        background: get("background")?.extract()?,
        max_pixels: get("max_pixels")?.extract()?,
        num_threads: get("num_threads")?.extract()?,
        seed: get("seed")?.extract()?,
        scale: get("scale")?.extract()?,
        ratio: get("ratio")?.extract()?,
        flip_p: get("flip_p")?.extract()?,
        hashes: get("hashes")?.extract()?,
        output_pixels: get("output_pixels")?.extract()?,
    })
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
    use crate::image::EncodeFormat;
    use arrow_array::cast::AsArray;
    use arrow_array::{Array, BinaryArray};
    use rayon::prelude::*;

    let format = match format {
        "jpeg" => EncodeFormat::Jpeg,
        "webp" => EncodeFormat::Webp,
        "png" => EncodeFormat::Png,
        other => {
            return Err(PyValueError::new_err(format!(
                "format must be 'jpeg', 'webp' or 'png', got {other:?}"
            )))
        }
    };
    let frame = height as usize * width as usize * 3;
    let mut images: Vec<Option<&[u8]>> = Vec::new();
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
            .as_primitive_opt::<arrow_array::types::UInt8Type>();
        let values = values
            .ok_or_else(|| PyTypeError::new_err("pixels must be uint8"))?
            .values();
        for i in 0..list.len() {
            let start = list.value_offset(i) as usize;
            images.push(list.is_valid(i).then(|| &values[start..start + frame]));
        }
    }
    let encoded: Vec<Option<Vec<u8>>> = py.detach(|| {
        run_in_pool(num_threads, || {
            images
                .par_iter()
                .map(|img| {
                    img.and_then(|rgb| {
                        crate::image::encode(rgb, width, height, format, quality).ok()
                    })
                })
                .collect()
        })
    });
    let array = BinaryArray::from_iter(encoded.iter().map(|e| e.as_deref()));
    let exported =
        pyo3_arrow::PyArray::from_array_ref(std::sync::Arc::new(array)).into_pyobject(py)?;
    py.import("pyarrow")?.getattr("array")?.call1((exported,))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_images, m)?)?;
    m.add_function(wrap_pyfunction!(decode_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(decode_paths, m)?)?;
    m.add_function(wrap_pyfunction!(decode_arrow, m)?)?;
    Ok(())
}
