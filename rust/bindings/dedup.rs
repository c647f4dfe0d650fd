//! Near-duplicate search and dedup entry points.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3_arrow::{PyChunkedArray, PyRecordBatch};

use crate::dedup::{clusters, keepers, search_pairs, search_query, GrowingIndex, HashSet, Pair};
use crate::pool::run_in_pool;

/// Hashes from an Arrow column without nulls: fixed_size_binary (8, 16, 24
/// or 32 bytes) or 64-bit integers.
fn hash_set(array: &PyChunkedArray) -> PyResult<HashSet> {
    let mut words = None;
    let mut data: Vec<u64> = Vec::new();
    for chunk in array.chunks() {
        if chunk.null_count() > 0 {
            return Err(PyValueError::new_err("hash columns must not contain nulls"));
        }
        let (w, values): (usize, Vec<u64>) = match chunk.data_type() {
            DataType::FixedSizeBinary(width) => {
                let fsb = chunk.as_fixed_size_binary();
                let width = *width as usize;
                let mut bytes = Vec::with_capacity(fsb.len() * width);
                (0..fsb.len()).for_each(|i| bytes.extend_from_slice(fsb.value(i)));
                let set = HashSet::from_bytes(&bytes, width)?;
                (set.words, set.data)
            }
            DataType::UInt64 => (1, chunk.as_primitive::<UInt64Type>().values().to_vec()),
            DataType::Int64 => (
                1,
                chunk
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .map(|&v| v as u64)
                    .collect(),
            ),
            other => {
                return Err(PyTypeError::new_err(format!(
                    "expected fixed_size_binary or uint64 hashes, got {other}"
                )))
            }
        };
        if words.is_some_and(|known| known != w) {
            return Err(PyValueError::new_err("chunks have different hash widths"));
        }
        words = Some(w);
        data.extend(values);
    }
    Ok(HashSet {
        words: words.unwrap_or(1),
        data,
    })
}

fn pairs_batch(pairs: Vec<Pair>, names: (&str, &str)) -> PyResult<RecordBatch> {
    let a = UInt32Array::from_iter_values(pairs.iter().map(|p| p.a));
    let b = UInt32Array::from_iter_values(pairs.iter().map(|p| p.b));
    let d = UInt32Array::from_iter_values(pairs.iter().map(|p| p.distance));
    let schema = Schema::new(vec![
        Field::new(names.0, DataType::UInt32, false),
        Field::new(names.1, DataType::UInt32, false),
        Field::new("distance", DataType::UInt32, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(a) as ArrayRef, Arc::new(b), Arc::new(d)],
    )
    .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// All pairs `a < b` within `radius` (Hamming) in one set of hashes.
#[pyfunction]
#[pyo3(signature = (hashes, radius, num_threads=None))]
fn near_duplicate_pairs<'py>(
    py: Python<'py>,
    hashes: PyChunkedArray,
    radius: u32,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let set = hash_set(&hashes)?;
    let pairs = py.detach(|| run_in_pool(num_threads, || search_pairs(&set, radius)));
    PyRecordBatch::new(pairs_batch(pairs, ("a", "b"))?).into_pyarrow(py)
}

/// Every (query, reference) pair within `radius`.
#[pyfunction]
#[pyo3(signature = (queries, reference, radius, num_threads=None))]
fn query_pairs<'py>(
    py: Python<'py>,
    queries: PyChunkedArray,
    reference: PyChunkedArray,
    radius: u32,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let (q, r) = (hash_set(&queries)?, hash_set(&reference)?);
    let pairs = py.detach(|| run_in_pool(num_threads, || search_query(&q, &r, radius)))?;
    PyRecordBatch::new(pairs_batch(pairs, ("query", "reference"))?).into_pyarrow(py)
}

/// Clusters of `n` records linked by pairs (`a`, `b` uint32 arrays) and, per
/// record, its keeper (highest `rank`, then earliest) or null for keepers.
#[pyfunction]
fn resolve_clusters<'py>(
    py: Python<'py>,
    n: usize,
    a: PyChunkedArray,
    b: PyChunkedArray,
    rank: PyChunkedArray,
) -> PyResult<Bound<'py, PyAny>> {
    let ids = |arr: &PyChunkedArray| -> PyResult<Vec<u32>> {
        let mut out = Vec::new();
        for c in arr.chunks() {
            let c = c
                .as_primitive_opt::<arrow_array::types::UInt32Type>()
                .ok_or_else(|| PyTypeError::new_err("pair indices must be uint32"))?;
            out.extend(c.values().iter().copied());
        }
        Ok(out)
    };
    let (a, b) = (ids(&a)?, ids(&b)?);
    if a.len() != b.len() || a.iter().chain(&b).any(|&i| i as usize >= n) {
        return Err(PyValueError::new_err(
            "pair indices must be in range and of equal length",
        ));
    }
    let mut ranks: Vec<u64> = Vec::with_capacity(n);
    for c in rank.chunks() {
        let c = c
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| PyTypeError::new_err("rank must be uint64"))?;
        ranks.extend(c.values().iter().copied());
    }
    if ranks.len() != n {
        return Err(PyValueError::new_err("rank must have one value per record"));
    }
    let pairs: Vec<Pair> = a
        .iter()
        .zip(&b)
        .map(|(&a, &b)| Pair { a, b, distance: 0 })
        .collect();
    let (cluster, keeper) = py.detach(|| {
        let c = clusters(n, &pairs);
        let k = keepers(&c, &ranks);
        (c.cluster, k)
    });
    let schema = Schema::new(vec![
        Field::new("cluster", DataType::UInt32, false),
        Field::new("duplicate_of", DataType::UInt32, true),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(UInt32Array::from(cluster)) as ArrayRef,
            Arc::new(UInt32Array::from(keeper)),
        ],
    )
    .map_err(|e| PyValueError::new_err(e.to_string()))?;
    PyRecordBatch::new(batch).into_pyarrow(py)
}

/// A hash index that grows batch by batch (single-pass dedup): `add` gives
/// hashes the next ids; `query` finds every added hash within a radius.
#[pyclass(name = "GrowingIndex", module = "fastprep._core")]
struct PyGrowingIndex {
    index: GrowingIndex,
}

#[pymethods]
impl PyGrowingIndex {
    #[new]
    #[pyo3(signature = (bytes_per_hash=32))]
    fn new(bytes_per_hash: usize) -> PyResult<Self> {
        if bytes_per_hash == 0 || bytes_per_hash % 8 != 0 {
            return Err(PyValueError::new_err(
                "bytes_per_hash must be a positive multiple of 8",
            ));
        }
        Ok(PyGrowingIndex {
            index: GrowingIndex::new(bytes_per_hash / 8)?,
        })
    }

    fn __len__(&self) -> usize {
        self.index.len()
    }

    fn add(&mut self, py: Python<'_>, hashes: PyChunkedArray) -> PyResult<()> {
        let set = hash_set(&hashes)?;
        if set.is_empty() {
            return Ok(()); // an empty column has no width to check
        }
        let index = &mut self.index;
        py.detach(|| index.add(&set))?;
        Ok(())
    }

    #[pyo3(signature = (queries, radius, num_threads=None))]
    fn query<'py>(
        &self,
        py: Python<'py>,
        queries: PyChunkedArray,
        radius: u32,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let set = hash_set(&queries)?;
        let index = &self.index;
        let pairs = if set.is_empty() {
            Vec::new()
        } else {
            py.detach(|| run_in_pool(num_threads, || index.query(&set, radius)))?
        };
        PyRecordBatch::new(pairs_batch(pairs, ("query", "reference"))?).into_pyarrow(py)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGrowingIndex>()?;
    m.add_function(wrap_pyfunction!(near_duplicate_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(query_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_clusters, m)?)?;
    Ok(())
}
