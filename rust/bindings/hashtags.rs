//! Hashtag engine entry points: extraction, counts, vocabularies, labels.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, Int32Array, ListArray, RecordBatch};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_arrow::{PyArray, PyChunkedArray, PyRecordBatch};

use super::arrow_input::byte_slices;
use crate::hashtags::PairCounts;
use crate::hashtags::{
    count_parallel, extract_lists, label_parallel, normalize_tag, Normalizer, TagCount, TagCounts,
    Vocabulary,
};
use crate::pool::run_in_pool;

/// Synonym map and stop-list applied after key normalisation.
#[pyclass(name = "HashtagNormalizer", module = "fastprep._core", frozen)]
#[derive(Clone)]
pub struct PyNormalizer {
    inner: Normalizer,
}

#[pymethods]
impl PyNormalizer {
    #[new]
    #[pyo3(signature = (canonical=None, stoplist=None))]
    fn new(
        canonical: Option<Vec<(String, String)>>,
        stoplist: Option<Vec<String>>,
    ) -> PyNormalizer {
        let canonical = canonical.unwrap_or_default();
        let stoplist = stoplist.unwrap_or_default();
        PyNormalizer {
            inner: Normalizer::new(
                canonical.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                stoplist.iter().map(String::as_str),
            ),
        }
    }

    /// The label key of one tag (with or without `#`), or None if stop-listed.
    fn key(&self, tag: &str) -> Option<String> {
        let mut scratch = String::new();
        normalize_tag(tag.trim_start_matches(['#', '＃']), &mut scratch);
        self.inner.resolve(&scratch).map(str::to_string)
    }

    #[allow(clippy::type_complexity)]
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Vec<(String, String)>, Vec<String>))> {
        let me = slf.get();
        Ok((slf.get_type().into_any(), (me.canonical(), me.stoplist())))
    }

    #[getter]
    fn canonical(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = self
            .inner
            .canonical_pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pairs.sort();
        pairs
    }

    #[getter]
    fn stoplist(&self) -> Vec<String> {
        let mut tags: Vec<String> = self.inner.stoplist().map(str::to_string).collect();
        tags.sort();
        tags
    }
}

/// `casefold(NFKC(tag))`, the key every count and label uses.
#[pyfunction]
fn normalize_hashtag(tag: &str) -> String {
    let mut out = String::new();
    normalize_tag(tag.trim_start_matches(['#', '＃']), &mut out);
    out
}

/// Hashtags of each caption as `list<string>` (raw, or normalised keys).
#[pyfunction]
#[pyo3(signature = (captions, normalizer=None, num_threads=None))]
fn extract_hashtags<'py>(
    py: Python<'py>,
    captions: PyChunkedArray,
    normalizer: Option<PyRef<'_, PyNormalizer>>,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let texts = byte_slices(captions.chunks())?;
    let normalizer: Option<&Normalizer> = normalizer.as_ref().map(|n| &n.inner);
    let list = py.detach(|| run_in_pool(num_threads, || extract_lists(&texts, normalizer)));
    let exported = PyArray::from_array_ref(Arc::new(list)).into_pyobject(py)?;
    py.import("pyarrow")?.getattr("array")?.call1((exported,))
}

/// Mergeable hashtag counts: occurrences and images (captions) per key.
#[pyclass(name = "HashtagCounts", module = "fastprep._core")]
#[derive(Clone, Default)]
pub struct PyCounts {
    inner: TagCounts,
}

#[pymethods]
impl PyCounts {
    #[new]
    fn new() -> PyCounts {
        PyCounts::default()
    }

    /// Counts one batch of captions (any Arrow string/binary array) in parallel.
    #[pyo3(signature = (captions, normalizer=None, num_threads=None))]
    fn update(
        &mut self,
        py: Python<'_>,
        captions: PyChunkedArray,
        normalizer: Option<PyRef<'_, PyNormalizer>>,
        num_threads: Option<usize>,
    ) -> PyResult<()> {
        let texts = byte_slices(captions.chunks())?;
        // Arrow string columns hold UTF-8 by definition: not checked again.
        let valid_utf8 = captions.chunks().iter().all(|c| {
            matches!(
                c.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        });
        let normalizer = normalizer.map(|n| n.inner.clone()).unwrap_or_default();
        let partial = py.detach(|| {
            run_in_pool(num_threads, || {
                count_parallel(&texts, &normalizer, valid_utf8)
            })
        });
        self.inner.merge(partial);
        Ok(())
    }

    /// Adds another partial count into this one (itself included: doubles).
    fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, Self>) {
        // Copy first: `other` may be `slf`, which is about to be borrowed mutably.
        let addition = other.borrow().inner.clone();
        slf.borrow_mut().inner.merge(addition);
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<PyCounts> {
        TagCounts::from_bytes(data)
            .map(|inner| PyCounts { inner })
            .map_err(PyErr::from)
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let from_bytes = slf.get_type().getattr("from_bytes")?;
        Ok((from_bytes, (slf.borrow().to_bytes(slf.py()),)))
    }

    /// Table `tag, images, occurrences`, most images first (ties: occurrences,
    /// then tag).
    fn to_arrow<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let rows = self.inner.sorted();
        let tags = arrow_array::StringArray::from_iter_values(rows.iter().map(|r| r.0));
        let images = arrow_array::UInt64Array::from_iter_values(rows.iter().map(|r| r.1.images));
        let occurrences =
            arrow_array::UInt64Array::from_iter_values(rows.iter().map(|r| r.1.occurrences));
        let schema = Schema::new(vec![
            Field::new("tag", DataType::Utf8, false),
            Field::new("images", DataType::UInt64, false),
            Field::new("occurrences", DataType::UInt64, false),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(tags) as ArrayRef,
                Arc::new(images),
                Arc::new(occurrences),
            ],
        )
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
        PyRecordBatch::new(batch).into_pyarrow(py)
    }

    /// (occurrences, images) of a normalised key, or None.
    fn get(&self, key: &str) -> Option<(u64, u64)> {
        self.inner.get(key).map(|c| (c.occurrences, c.images))
    }

    /// Adds counts for one key directly.
    fn add(&mut self, key: &str, occurrences: u64, images: u64) {
        self.inner.insert(
            key,
            TagCount {
                occurrences,
                images,
            },
        );
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn captions(&self) -> u64 {
        self.inner.captions
    }

    #[getter]
    fn captions_with_tags(&self) -> u64 {
        self.inner.captions_with_tags
    }

    #[getter]
    fn null_captions(&self) -> u64 {
        self.inner.null_captions
    }

    #[getter]
    fn invalid_utf8(&self) -> u64 {
        self.inner.invalid_utf8
    }

    #[getter]
    fn total_occurrences(&self) -> u64 {
        self.inner.total_occurrences()
    }
}

/// A label vocabulary with stable ids and the normaliser it was built with.
#[pyclass(name = "Vocabulary", module = "fastprep._core", frozen)]
pub struct PyVocabulary {
    inner: Vocabulary,
}

fn list_array(offsets: Vec<i32>, values: Vec<i32>, null: &[bool]) -> ListArray {
    let item = Arc::new(Field::new("item", DataType::Int32, false));
    let validity = null
        .iter()
        .any(|&n| n)
        .then(|| NullBuffer::from_iter(null.iter().map(|&n| !n)));
    ListArray::new(
        item,
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(Int32Array::from(values)),
        validity,
    )
}

#[pymethods]
impl PyVocabulary {
    #[staticmethod]
    #[pyo3(signature = (counts, top_k=None, min_count=1, normalizer=None))]
    fn from_counts(
        counts: &PyCounts,
        top_k: Option<usize>,
        min_count: u64,
        normalizer: Option<PyRef<'_, PyNormalizer>>,
    ) -> PyVocabulary {
        let normalizer = normalizer.map(|n| n.inner.clone()).unwrap_or_default();
        PyVocabulary {
            inner: Vocabulary::from_counts(&counts.inner, top_k, min_count, normalizer),
        }
    }

    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    #[staticmethod]
    fn from_json(text: &str) -> PyResult<PyVocabulary> {
        Vocabulary::from_json(text)
            .map(|inner| PyVocabulary { inner })
            .map_err(PyErr::from)
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        Ok((
            slf.get_type().getattr("from_json")?,
            (slf.get().inner.to_json(),),
        ))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn tags(&self) -> Vec<String> {
        self.inner.tags.clone()
    }

    #[getter]
    fn images(&self) -> Vec<u64> {
        self.inner.images.clone()
    }

    #[getter]
    fn occurrences(&self) -> Vec<u64> {
        self.inner.occurrences.clone()
    }

    #[getter]
    fn normalizer(&self) -> PyNormalizer {
        PyNormalizer {
            inner: self.inner.normalizer.clone(),
        }
    }

    /// Id of a tag (normalised and resolved through the synonym map), or None.
    fn id(&self, tag: &str) -> Option<u32> {
        let mut scratch = String::new();
        normalize_tag(tag.trim_start_matches(['#', '＃']), &mut scratch);
        self.inner
            .normalizer
            .resolve(&scratch)
            .and_then(|key| self.inner.id(key))
    }

    /// Labels captions: a batch `labels: list<int32>, num_labels: int32,
    /// has_label: bool`.
    #[pyo3(signature = (captions, num_threads=None))]
    fn label<'py>(
        &self,
        py: Python<'py>,
        captions: PyChunkedArray,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let texts = byte_slices(captions.chunks())?;
        let vocab = &self.inner;
        let (labels, _) =
            py.detach(|| run_in_pool(num_threads, || label_parallel(&texts, vocab, None)));
        let counts: Vec<i32> = labels.offsets.windows(2).map(|w| w[1] - w[0]).collect();
        let has_label = BooleanArray::from(counts.iter().map(|&c| c > 0).collect::<Vec<_>>());
        let list = list_array(labels.offsets, labels.values, &labels.null);
        let schema = Schema::new(vec![
            Field::new("labels", list.data_type().clone(), true),
            Field::new("num_labels", DataType::Int32, false),
            Field::new("has_label", DataType::Boolean, false),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(list) as ArrayRef,
                Arc::new(Int32Array::from(counts)),
                Arc::new(has_label),
            ],
        )
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
        PyRecordBatch::new(batch).into_pyarrow(py)
    }

    /// Adds the label pairs co-occurring in `captions` to `pairs`.
    #[pyo3(signature = (captions, pairs, num_threads=None))]
    fn count_pairs(
        &self,
        py: Python<'_>,
        captions: PyChunkedArray,
        pairs: &mut PyPairCounts,
        num_threads: Option<usize>,
    ) -> PyResult<()> {
        let texts = byte_slices(captions.chunks())?;
        let vocab = &self.inner;
        let bound = pairs.max_pairs;
        let (_, counted) =
            py.detach(|| run_in_pool(num_threads, || label_parallel(&texts, vocab, Some(bound))));
        if let Some(counted) = counted {
            pairs.inner.merge(counted);
        }
        Ok(())
    }
}

/// Co-occurrence counts of label pairs, bounded to about `max_pairs` entries.
#[pyclass(name = "PairCounts", module = "fastprep._core")]
pub struct PyPairCounts {
    inner: PairCounts,
    max_pairs: usize,
}

#[pymethods]
impl PyPairCounts {
    #[new]
    #[pyo3(signature = (max_pairs=1_000_000))]
    fn new(max_pairs: usize) -> PyPairCounts {
        PyPairCounts {
            inner: PairCounts::new(max_pairs),
            max_pairs,
        }
    }

    /// The `k` most frequent pairs `(id_a, id_b, images)`, `id_a < id_b`.
    fn top(&self, k: usize) -> Vec<(i32, i32, u64)> {
        self.inner.top(k)
    }

    /// How much any reported count may fall short (0 while exact).
    #[getter]
    fn error_bound(&self) -> u64 {
        self.inner.error_bound
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyNormalizer>()?;
    m.add_class::<PyCounts>()?;
    m.add_class::<PyVocabulary>()?;
    m.add_class::<PyPairCounts>()?;
    m.add_function(wrap_pyfunction!(normalize_hashtag, m)?)?;
    m.add_function(wrap_pyfunction!(extract_hashtags, m)?)?;
    Ok(())
}
