"""The hashtag engine: extract, normalise and count hashtags; vocabularies,
per-image labels, targets and resampling weights.

Keys are ``casefold(NFKC(tag))`` (Unicode default case folding after
compatibility composition), so ``#Dog``, ``#DOG`` and ``＃ｄｏｇ`` are one key.
A :class:`HashtagNormalizer` adds synonym merging and a stop-list on top.
All heavy work runs in Rust threads over Arrow memory, without Python loops.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, Union

import numpy as np
import pyarrow as pa

from fastprep import _core
from fastprep._core import (
    HashtagCounts,
    HashtagNormalizer,
    PairCounts,
    Vocabulary,
    normalize_hashtag,
)
from fastprep.arrow_input import arrow_column, is_arrow_producer
from fastprep.arrow_input import to_pyarrow as _arrow_pyarrow

#: Vocabulary sizes of the 2018 Instagram study (Mahajan et al.): hashtags
#: matching the ImageNet-1k synsets, the WordNet noun synonyms, and the most
#: frequent of those.
VOCAB_PRESETS = {"imagenet-1.5k": 1_500, "wordnet-17k": 17_000, "frequent-8.5k": 8_500}

Captions = Union[pa.Array, pa.ChunkedArray, "pa.RecordBatch", "pa.Table", Iterable[Any]]

__all__ = [
    "VOCAB_PRESETS",
    "HashtagCounts",
    "HashtagNormalizer",
    "PairCounts",
    "Vocabulary",
    "build_vocabulary",
    "cooccurrence",
    "count_hashtags",
    "extract_hashtags",
    "hashtag_normalizer",
    "label_captions",
    "label_targets",
    "load_vocabulary",
    "normalize_hashtag",
    "sampling_weights",
    "save_vocabulary",
]


def _text_chunks(captions: Any, column: str | None) -> Iterable[pa.ChunkedArray]:
    """Yields caption batches as Arrow arrays, streaming over iterators."""
    if isinstance(captions, (pa.RecordBatch, pa.Table)):
        yield _as_chunked(captions.column(column or "caption"))
    elif isinstance(captions, (pa.Array, pa.ChunkedArray)):
        yield _as_chunked(captions)
    elif isinstance(captions, pa.RecordBatchReader):
        for batch in captions:
            yield _as_chunked(batch.column(column or "caption"))
    elif is_arrow_producer(captions):  # polars, duckdb, arro3, nanoarrow: no copy
        data = _arrow_pyarrow(captions)
        if isinstance(data, (pa.RecordBatch, pa.Table)) or pa.types.is_struct(data.type):
            yield _as_chunked(arrow_column(data, column or "caption"))
        else:
            yield _as_chunked(data)
    elif isinstance(captions, (list, tuple)):
        yield _as_chunked(pa.array(captions, type=_infer_text_type(captions)))
    elif isinstance(captions, (str, bytes)):
        raise TypeError("expected a collection of captions, not a single caption")
    else:  # an iterator of batches, arrays or strings: stream it
        pending: list = []
        for item in captions:
            if isinstance(item, (str, bytes)) or item is None:
                pending.append(item)
                if len(pending) >= 65_536:
                    yield _as_chunked(pa.array(pending, type=_infer_text_type(pending)))
                    pending = []
            else:
                yield from _text_chunks(item, column)
        if pending:
            yield _as_chunked(pa.array(pending, type=_infer_text_type(pending)))


def _infer_text_type(items: Any) -> pa.DataType:
    return pa.binary() if any(isinstance(x, bytes) for x in items) else pa.string()


def _as_chunked(array: Any) -> pa.ChunkedArray:
    if isinstance(array, pa.Array):
        array = pa.chunked_array([array], type=array.type)
    if pa.types.is_dictionary(array.type):  # e.g. categorical caption columns
        array = array.cast(array.type.value_type)
    return array


def hashtag_normalizer(
    canonical: Mapping[str, str] | str | os.PathLike | None = None,
    stoplist: Iterable[str] | str | os.PathLike | None = None,
) -> HashtagNormalizer:
    """Builds a normaliser from a synonym map and a stop-list.

    ``canonical`` maps tags to their canonical tag (``#brownbear ->
    ursusarctos``): a dict, or a path to a JSON object or a two-column TSV.
    ``stoplist`` is an iterable of tags or a path to a file with one per line.
    Both sides are normalised, so case, width and leading ``#`` do not matter.
    """
    mapping: Mapping[str, str]
    if isinstance(canonical, (str, os.PathLike)):
        path = os.fspath(canonical)
        with open(path, encoding="utf-8-sig") as f:  # tolerate a byte-order mark
            if path.endswith(".json"):
                mapping = json.load(f)
            else:
                rows = [r for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#!")]
                mapping = {r[0]: r[1] for r in rows if len(r) >= 2}
    else:
        mapping = canonical or {}
    if isinstance(stoplist, (str, os.PathLike)):
        with open(os.fspath(stoplist), encoding="utf-8-sig") as f:
            stoplist = [line.strip() for line in f if line.strip()]
    pairs = sorted(mapping.items())
    return HashtagNormalizer(pairs, sorted(stoplist or []))


def extract_hashtags(
    captions: Captions,
    *,
    normalize: bool = False,
    normalizer: HashtagNormalizer | None = None,
    column: str | None = None,
    num_threads: int | None = None,
) -> pa.ChunkedArray:
    """The hashtags of each caption as ``list<string>`` (twitter-text rules).

    Raw tag text by default; with ``normalize=True`` (or a ``normalizer``) the
    keys, with synonyms merged and stop-listed tags removed. Null captions give
    null lists; invalid UTF-8 (binary input) is read leniently.
    """
    if normalize and normalizer is None:
        normalizer = HashtagNormalizer()
    chunks = [
        _core.extract_hashtags(c, normalizer, num_threads) for c in _text_chunks(captions, column)
    ]
    return pa.chunked_array(chunks, type=pa.list_(pa.string()))


def count_hashtags(
    captions: Captions,
    *,
    normalizer: HashtagNormalizer | None = None,
    column: str | None = None,
    num_threads: int | None = None,
    into: HashtagCounts | None = None,
) -> HashtagCounts:
    """Counts hashtag keys: occurrences and images (captions) per key.

    Streams: pass a RecordBatchReader or any iterator of batches and memory
    stays bounded by the number of distinct tags. Pass ``into`` to add to an
    existing count; counts from separate shards combine with ``merge``.
    """
    counts = into if into is not None else HashtagCounts()
    for chunk in _text_chunks(captions, column):
        counts.update(chunk, normalizer, num_threads)
    return counts


def build_vocabulary(
    counts: HashtagCounts,
    *,
    top_k: int | None = None,
    min_count: int = 1,
    preset: str | None = None,
    normalizer: HashtagNormalizer | None = None,
) -> Vocabulary:
    """The ``top_k`` tags by image count with at least ``min_count`` images.

    Ties break by occurrences, then by the key's bytes, so the ids are
    deterministic. ``preset`` picks ``top_k`` from :data:`VOCAB_PRESETS`.
    Pass the ``normalizer`` the counts were made with: it is saved with the
    vocabulary so labelling applies the same synonyms and stop-list.
    """
    if preset is not None:
        if preset not in VOCAB_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(VOCAB_PRESETS)}")
        top_k = VOCAB_PRESETS[preset]
    return Vocabulary.from_counts(counts, top_k, min_count, normalizer)


def save_vocabulary(vocab: Vocabulary, path: str | os.PathLike) -> None:
    """Writes the vocabulary as JSON (tags in id order, counts, normaliser)."""
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(vocab.to_json())
    os.replace(tmp, path)


def load_vocabulary(path: str | os.PathLike) -> Vocabulary:
    with open(path, encoding="utf-8") as f:
        return Vocabulary.from_json(f.read())


def label_captions(
    captions: Captions,
    vocab: Vocabulary,
    *,
    column: str | None = None,
    num_threads: int | None = None,
) -> pa.Table:
    """Per-caption labels: ``labels`` (``list<int32>`` of distinct vocabulary
    ids in order of first appearance), ``num_labels`` and ``has_label``
    (False for images the paper drops)."""
    batches = [vocab.label(c, num_threads) for c in _text_chunks(captions, column)]
    if not batches:
        batches = [vocab.label(pa.chunked_array([], type=pa.string()), num_threads)]
    return pa.Table.from_batches(batches)


def _label_lists(labels: Any) -> pa.ListArray:
    if isinstance(labels, (pa.Table, pa.RecordBatch)):
        labels = labels.column("labels")
    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks() if labels.num_chunks != 1 else labels.chunk(0)
    if not pa.types.is_list(labels.type) and not pa.types.is_large_list(labels.type):
        raise TypeError(f"expected list<int32> labels, got {labels.type}")
    return labels


def _rows_and_ids(labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row of each label, label ids, labels per row) without Python loops."""
    lists = _label_lists(labels)
    offsets = lists.offsets.to_numpy(zero_copy_only=False)  # respects slicing
    ids = lists.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
    per_row = np.diff(offsets)
    rows = np.repeat(np.arange(len(lists)), per_row)
    return rows, ids.astype(np.int64, copy=False), per_row


def label_targets(labels: Any, num_classes: int, kind: str = "softmax") -> np.ndarray:
    """Dense float32 ``[B, num_classes]`` targets from label lists.

    ``softmax``: each of an image's k labels gets 1/k (the paper's target; rows
    without labels are all zero). ``multi_hot``: each label gets 1.
    """
    rows, ids, per_row = _rows_and_ids(labels)
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"label ids must be in [0, {num_classes})")
    out = np.zeros((len(per_row), num_classes), dtype=np.float32)
    if kind == "softmax":
        out[rows, ids] = (1.0 / per_row[rows]).astype(np.float32)
    elif kind == "multi_hot":
        out[rows, ids] = 1.0
    else:
        raise ValueError("kind must be 'softmax' or 'multi_hot'")
    return out


def sampling_weights(labels: Any, vocab: Vocabulary, alpha: float = 0.5) -> np.ndarray:
    """Per-image sampling weights that flatten the Zipfian label distribution.

    An image with labels L gets ``mean(f_l ** -alpha for l in L)``, where
    ``f_l`` is the number of images with label ``l`` in the vocabulary's
    counts; images without labels get 0. A label's total sampling mass is then
    proportional to ``f_l ** (1 - alpha)``: ``alpha=0`` keeps the natural
    distribution, ``0.5`` is square-root sampling, ``1`` makes labels roughly
    uniform. Weights are scaled to mean 1 over labelled images; pass them to a
    weighted sampler (with replacement).
    """
    rows, ids, per_row = _rows_and_ids(labels)
    freq = np.asarray(vocab.images, dtype=np.float64)
    if ids.size and ids.max() >= len(freq):
        raise ValueError("label ids outside the vocabulary")
    per_label = np.maximum(freq[ids], 1.0) ** (-float(alpha))
    sums = np.bincount(rows, weights=per_label, minlength=len(per_row))
    weights = np.divide(sums, per_row, out=np.zeros(len(per_row)), where=per_row > 0)
    labelled = per_row > 0
    if labelled.any():
        weights[labelled] /= weights[labelled].mean()
    return weights


def cooccurrence(
    captions: Captions,
    vocab: Vocabulary,
    *,
    top: int = 100,
    max_pairs: int = 1_000_000,
    column: str | None = None,
    num_threads: int | None = None,
) -> pa.Table:
    """The ``top`` most frequent co-occurring label pairs (for synonym and spam
    hunting): ``tag_a, tag_b, id_a, id_b, images``. Memory stays near
    ``max_pairs`` pair entries whatever the corpus size; the table metadata's
    ``error_bound`` says by how much a count may fall short once that bound
    was reached (``0``: exact)."""
    pairs = PairCounts(max_pairs)
    for chunk in _text_chunks(captions, column):
        vocab.count_pairs(chunk, pairs, num_threads)
    rows = pairs.top(top)
    tags = vocab.tags
    table = pa.table(
        {
            "tag_a": pa.array([tags[a] for a, _, _ in rows], pa.string()),
            "tag_b": pa.array([tags[b] for _, b, _ in rows], pa.string()),
            "id_a": pa.array([a for a, _, _ in rows], pa.int32()),
            "id_b": pa.array([b for _, b, _ in rows], pa.int32()),
            "images": pa.array([n for _, _, n in rows], pa.uint64()),
        }
    )
    return table.replace_schema_metadata({"error_bound": str(pairs.error_bound)})
