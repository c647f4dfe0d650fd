"""Ray Data stages: fastprep's per-batch steps as ``map_batches``
callables (``batch_format="pyarrow"``), and the dataset-level functions
built on them (the names :mod:`fastprep.spark` uses too)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray.data

import fastprep
from fastprep import distributed
from fastprep.hashtags import HashtagCounts, HashtagNormalizer, Vocabulary
from fastprep.hashtags import label_captions as _label
from fastprep.pipeline.passes import as_batch as _as_batch
from fastprep.pipeline.stages import DEFAULT_RULES, ImageStage, consent_reasons
from fastprep.ray.resources import threads as _threads


def _as_table(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch
    if not isinstance(batch, pa.RecordBatch):
        raise TypeError(f"expected a pyarrow table (batch_format='pyarrow'), got {type(batch)}")
    return pa.Table.from_batches([batch])


class DecodeImages:
    """``map_batches`` stage: decode, orient, resize and hash ``image_column``.

    Output: the input's other columns plus :func:`fastprep.decode_images`'s
    (``pixels`` as ``arrow.fixed_shape_tensor``, ``error`` null or the reason:
    corrupt records stay in the output with their reason). Options are
    :class:`fastprep.pipeline.stages.ImageStage`'s; ``num_threads`` defaults to
    the CPUs Ray granted the actor.
    """

    def __init__(
        self, image_column: str = "image", num_threads: int | None = None, **options: Any
    ) -> None:
        self.image_column = image_column
        self.stage = ImageStage.from_options(num_threads=_threads(num_threads), **options)

    def __call__(self, data: pa.Table) -> pa.Table:
        batch = _as_batch(data)
        if self.image_column != "image":
            names = [
                "image" if n == self.image_column else n
                for n in batch.schema.names
                if n != "image" or self.image_column == "image"
            ]
            keep = [n for n in batch.schema.names if n != "image"]
            batch = pa.RecordBatch.from_arrays([batch.column(n) for n in keep], names=names)
        return _as_table(self.stage(batch))


class ExtractHashtags:
    """``map_batches`` stage: the normalised hashtag keys of ``column`` as a
    ``list<string>`` column ``output``."""

    def __init__(
        self,
        normalizer: HashtagNormalizer | None = None,
        column: str = "caption",
        output: str = "hashtags",
    ) -> None:
        self.normalizer = normalizer or HashtagNormalizer()
        self.column, self.output = column, output

    def __call__(self, data: pa.Table) -> pa.Table:
        table = _as_table(data)
        tags = fastprep.extract_hashtags(table.column(self.column), normalizer=self.normalizer)
        return table.append_column(self.output, tags)


class ConsentFilter:
    """``map_batches`` stage applying consent rules (default: ``is_public ==
    false`` drops as ``not_public``, ``opt_out == true`` as ``opt_out``).

    ``output="kept"`` yields the records no rule drops; ``"dropped"`` yields
    ``key``, ``source`` (when present) and ``reason`` of the others;
    ``"tagged"`` yields every record with a ``drop_reason`` column. Use
    :func:`consent_split` to get both datasets from one pass.
    """

    def __init__(self, rules: tuple = DEFAULT_RULES, output: str = "kept") -> None:
        if output not in ("kept", "dropped", "tagged"):
            raise ValueError("output must be 'kept', 'dropped' or 'tagged'")
        self.rules, self.output = tuple(rules), output

    def __call__(self, data: pa.Table) -> pa.Table:
        table = _as_table(data)
        reasons = consent_reasons(_as_batch(table), self.rules)
        reason = pa.array(reasons.tolist(), pa.string())
        if self.output == "tagged":
            return table.append_column("drop_reason", reason)
        dropped = pc.is_valid(reason)
        if self.output == "kept":
            return table.filter(pc.invert(dropped))
        names = [n for n in ("key", "source") if n in table.column_names]
        return table.select(names).append_column("reason", reason).filter(dropped)


def consent_split(ds: ray.data.Dataset, rules: tuple = DEFAULT_RULES, **map_kwargs: Any):
    """``(kept, dropped)`` datasets from one pass of the consent rules (the
    tagged result is materialised once, then split)."""
    tagged = ds.map_batches(
        ConsentFilter,
        fn_constructor_kwargs={"rules": rules, "output": "tagged"},
        batch_format="pyarrow",
        concurrency=map_kwargs.pop("concurrency", 1),
        **map_kwargs,
    ).materialize()

    def kept(t: pa.Table) -> pa.Table:
        return t.filter(pc.is_null(t.column("drop_reason"))).drop_columns(["drop_reason"])

    def dropped(t: pa.Table) -> pa.Table:
        names = [n for n in ("key", "source") if n in t.column_names]
        t = t.filter(pc.is_valid(t.column("drop_reason")))
        return t.select([*names, "drop_reason"]).rename_columns([*names, "reason"])

    return (
        tagged.map_batches(kept, batch_format="pyarrow"),
        tagged.map_batches(dropped, batch_format="pyarrow"),
    )


class CountHashtags:
    """``map_batches`` stage: one row per batch, ``counts`` (binary): the
    batch's :class:`fastprep.HashtagCounts`, serialised. Merge them with
    :func:`fastprep.distributed.merge_counts` (or use :func:`count_hashtags`)."""

    def __init__(
        self,
        normalizer: HashtagNormalizer | None = None,
        column: str = "caption",
        num_threads: int | None = None,
    ) -> None:
        self.normalizer = normalizer
        self.column = column
        self.num_threads = _threads(num_threads)

    def __call__(self, data: pa.Table) -> pa.Table:
        column = _as_table(data).column(self.column)
        part = distributed.partial_counts(column, self.normalizer, self.num_threads)
        return pa.table({"counts": pa.array([part], pa.binary())})


def count_hashtags(
    ds: ray.data.Dataset,
    *,
    normalizer: HashtagNormalizer | None = None,
    column: str = "caption",
    **map_kwargs: Any,
) -> HashtagCounts:
    """Distributed :func:`fastprep.count_hashtags`: counts per block on the
    workers, merged on the driver; equal to counting the whole dataset in one
    process. Only ``column`` is read."""
    parts = ds.select_columns([column]).map_batches(
        CountHashtags,
        fn_constructor_kwargs={"normalizer": normalizer, "column": column},
        batch_format="pyarrow",
        concurrency=map_kwargs.pop("concurrency", 1),
        **map_kwargs,
    )
    return distributed.merge_counts(row["counts"] for row in parts.iter_rows())


class LabelCaptions:
    """``map_batches`` stage: ``labels`` (``list<int32>``), ``num_labels`` and
    ``has_label`` from ``column`` with a vocabulary (a
    :class:`fastprep.Vocabulary` or its JSON)."""

    def __init__(
        self, vocab: Vocabulary | str, column: str = "caption", num_threads: int | None = None
    ) -> None:
        self.vocab = vocab if isinstance(vocab, Vocabulary) else Vocabulary.from_json(vocab)
        self.column = column
        self.num_threads = _threads(num_threads)

    def __call__(self, data: pa.Table) -> pa.Table:
        table = _as_table(data)
        labels = _label(table.column(self.column), self.vocab, num_threads=self.num_threads)
        for name in labels.column_names:
            table = table.append_column(name, labels.column(name))
        return table


def _map(ds: ray.data.Dataset, stage: type, kwargs: dict, map_kwargs: dict) -> ray.data.Dataset:
    return ds.map_batches(
        stage,
        fn_constructor_kwargs=kwargs,
        batch_format="pyarrow",
        concurrency=map_kwargs.pop("concurrency", 1),
        **map_kwargs,
    )


def decode_images(ds: ray.data.Dataset, map_kwargs: dict | None = None, **options: Any):
    """``ds`` through :class:`DecodeImages` (same options; ``map_kwargs``
    go to ``map_batches``: ``num_cpus``, ``concurrency``, ``batch_size``)."""
    return _map(ds, DecodeImages, options, dict(map_kwargs or {}))


def extract_hashtags(ds: ray.data.Dataset, map_kwargs: dict | None = None, **options: Any):
    """``ds`` through :class:`ExtractHashtags` (same options)."""
    return _map(ds, ExtractHashtags, options, dict(map_kwargs or {}))


def label_captions(ds: ray.data.Dataset, vocab: Vocabulary | str, column: str = "caption",
                   **map_kwargs: Any) -> ray.data.Dataset:  # fmt: skip
    """``ds`` through :class:`LabelCaptions`."""
    return _map(ds, LabelCaptions, {"vocab": vocab, "column": column}, map_kwargs)


#: The name every engine uses: ``(kept, dropped)`` from one pass of the rules.
split_by_consent = consent_split
