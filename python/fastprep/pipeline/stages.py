"""Per-batch stages. Each takes and returns Arrow data only, so a distributed
engine can run them on its own workers (Ray ``map_batches``, Spark
``mapInArrow``) exactly as :func:`fastprep.pipeline.prep` runs them here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastprep import _core
from fastprep.errors import SettingsError
from fastprep.hashtags import HashtagNormalizer, extract_hashtags
from fastprep.images import decode_images
from fastprep.options import DEFAULT_MAX_PIXELS, DecodeOptions


@dataclass
class ConsentRule:
    """Drop records whose ``column`` equals one of ``drop_values``; the reason
    recorded is ``reason``. Missing values keep the record unless
    ``drop_missing``."""

    column: str
    drop_values: tuple = (False,)
    reason: str = "not_public"
    drop_missing: bool = False

    @classmethod
    def parse(cls, spec: str) -> ConsentRule:
        """``COLUMN=VALUE[:REASON]`` (the CLI's ``--drop-if``); VALUE is read
        as JSON when it can be (``false``, ``1``), else as text."""
        column, sep, rest = spec.partition("=")
        if not sep or not column:
            raise SettingsError(f"--drop-if expects COLUMN=VALUE[:REASON], got {spec!r}")
        value_text, _, reason = rest.partition(":")
        try:
            value = json.loads(value_text)
        except json.JSONDecodeError:
            value = value_text
        return cls(column, (value,), reason or f"{column}={value_text}")


DEFAULT_RULES = (
    ConsentRule("is_public", (False,), "not_public"),
    ConsentRule("opt_out", (True,), "opt_out"),
)


@dataclass
class ImageStage:
    """Decode, orient, resize and hash one batch's ``image`` column.

    The decode itself is one :class:`fastprep.DecodeOptions` (``options``),
    the value every engine's image stage and the torch loader hand to the
    core; the fields here are the ones the prep job sets, ``extra`` any other
    :func:`fastprep.decode_images` keyword.
    """

    size: int | tuple | None = 224
    mode: str = "center_crop"
    filter: str = "bilinear"
    hashes: tuple = ("xxh3", "pdq")
    max_pixels: int = DEFAULT_MAX_PIXELS
    num_threads: int | None = None
    extra: dict = field(default_factory=dict)
    #: Store encoded bytes instead of pixels: ``(format, quality,
    #: subsampling)``, written as the ``jpg``/``webp`` column.
    encode: tuple[str, int, str] | None = None
    #: Store each record's source bytes, metadata removed losslessly, as the
    #: ``image`` column (no pixels are produced, only hashes).
    keep_source: bool = False

    @property
    def options(self) -> DecodeOptions:
        extra = dict(self.extra)
        if self.keep_source:
            extra["pixels"] = False
        return DecodeOptions.from_kwargs(
            size=self.size, mode=self.mode, filter=self.filter, hashes=tuple(self.hashes),
            max_pixels=self.max_pixels, **extra,
        )  # fmt: skip

    @classmethod
    def from_options(cls, num_threads: int | None = None, **options: Any) -> ImageStage:
        """The stage from :func:`fastprep.decode_images` keywords (unknown
        ones raise ``TypeError``); every engine's image stage is built this
        way, so its options are spelled once."""
        names = {"size", "mode", "filter", "hashes", "max_pixels"}
        fields = {k: v for k, v in options.items() if k in names}
        if "hashes" in fields:
            fields["hashes"] = tuple(fields["hashes"])
        extra = {k: v for k, v in options.items() if k not in names}
        stage = cls(num_threads=num_threads, extra=extra, **fields)
        stage.options  # noqa: B018 (checks every value now, not on the first batch)
        return stage

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        images = batch.column("image")
        if not isinstance(images, pa.Array):
            images = pa.array(images.to_pylist(), pa.binary())
        decoded = decode_images(images, options=self.options, num_threads=self.num_threads)
        if self.encode is not None:
            decoded = self._encoded(decoded)
        if self.keep_source:
            decoded = self._stripped(images, decoded)
        kept = [name for name in batch.schema.names if name != "image"]
        columns = {name: batch.column(name) for name in kept}
        for name in decoded.schema.names:
            columns[name if name not in columns else f"image_{name}"] = decoded.column(name)
        return pa.RecordBatch.from_pydict(columns)

    def _encoded(self, decoded: pa.RecordBatch) -> pa.RecordBatch:
        """The pixel column replaced by its JPEG/WebP encoding."""
        fmt, quality, subsampling = self.encode  # type: ignore[misc]
        pixels = decoded.column("pixels")
        if isinstance(pixels.type, pa.FixedShapeTensorType):  # one size for all
            pixels = pixels.storage  # its frames, read in place by the encoder
        encoded = _core.encode_variable(
            pa.chunked_array([pixels]),
            decoded.column("height").to_pylist(),
            decoded.column("width").to_pylist(),
            fmt, quality, subsampling, self.num_threads,
        )  # fmt: skip
        name = {"jpeg": "jpg"}.get(fmt, fmt)
        return _replace_column(decoded, "pixels", name, encoded)

    def _stripped(self, images: pa.Array, decoded: pa.RecordBatch) -> pa.RecordBatch:
        """The source bytes without metadata (lossless) as the ``image``
        column; an image whose format cannot lose it losslessly (TIFF) is
        stored as PNG of its displayed pixels, its ``format`` saying so."""
        orientations = decoded.column("orientation").to_pylist()
        stripped = _core.strip_images(pa.chunked_array([images]), orientations, self.num_threads)
        ok = decoded.column("error").is_null().to_numpy(zero_copy_only=False)
        redo = [
            i for i, (s, good) in enumerate(zip(stripped.to_pylist(), ok)) if good and s is None
        ]
        formats = decoded.column("format").to_pylist()
        values = stripped.to_pylist()
        if redo:
            full = decode_images(
                images.take(pa.array(redo, pa.int64())),
                options=self.options.replace(pixels=True, size=None, hashes=()),
                num_threads=self.num_threads,
            )
            pngs = _core.encode_variable(
                pa.chunked_array([full.column("pixels")]),
                full.column("height").to_pylist(), full.column("width").to_pylist(),
                "png", 100, "420", self.num_threads,
            ).to_pylist()  # fmt: skip
            for i, png in zip(redo, pngs):
                values[i], formats[i] = png, "png"
        batch = decoded.append_column("image", pa.array(values, pa.binary()))
        return _replace_column(batch, "format", "format", pa.array(formats, pa.string()))


def _replace_column(batch: pa.RecordBatch, old: str, new: str, values: pa.Array) -> pa.RecordBatch:
    """``batch`` with column ``old`` replaced by ``values`` named ``new``, in place."""
    columns = {
        (new if n == old else n): (values if n == old else batch.column(n))
        for n in batch.schema.names
    }
    return pa.RecordBatch.from_pydict(columns)


def consent_reasons(batch: pa.RecordBatch, rules: tuple = DEFAULT_RULES) -> np.ndarray:
    """Per record, the first consent rule that drops it (or None)."""
    reasons = np.full(batch.num_rows, None, dtype=object)
    for rule in rules:
        if rule.column not in batch.schema.names:
            continue
        values = batch.column(rule.column)
        try:
            drop = pa.array(list(rule.drop_values), type=values.type)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            # The column's type differs from the rule's values (e.g. "false"
            # strings against False): compare their JSON spellings.
            values = pc.utf8_lower(pc.cast(values, pa.string()))
            values = pc.utf8_trim(values, '"')
            drop = pa.array([json.dumps(v).lower().strip('"') for v in rule.drop_values])
        hit = pc.is_in(values, value_set=drop)
        hit = pc.fill_null(hit, bool(rule.drop_missing)).to_numpy(zero_copy_only=False)
        reasons[(reasons == None) & hit] = rule.reason  # noqa: E711 (elementwise)
    return reasons


def hashtag_stage(batch: pa.RecordBatch, normalizer: HashtagNormalizer | None = None) -> pa.Array:
    """Normalised hashtag keys of the batch's captions (``list<string>``)."""
    return extract_hashtags(
        batch.column("caption"), normalizer=normalizer or HashtagNormalizer()
    ).combine_chunks()


def with_column(batch: pa.RecordBatch, name: str, values: Any) -> pa.RecordBatch:
    columns = {n: batch.column(n) for n in batch.schema.names}
    columns[name] = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    return pa.RecordBatch.from_pydict(columns)
