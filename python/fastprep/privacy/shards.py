"""What the prep job does to every shard before it is written (pass 2, on
any engine): captions redacted, faces obfuscated. Hashtags and labels were
taken from the original text before this runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fastprep.privacy.redact import KINDS, redact_captions


@dataclass(frozen=True)
class PrivacySpec:
    """``redact``: kinds replaced in ``redact_columns``; ``blur_faces``:
    ``"blur"``, ``"pixelate"`` or None."""

    redact: tuple[str, ...] = KINDS
    redact_columns: tuple[str, ...] = ("caption",)
    blur_faces: str | None = None

    @classmethod
    def from_settings(cls, settings) -> PrivacySpec:
        return cls(settings.redact, settings.redact_columns, settings.blur_faces)


def empty_stats(spec: PrivacySpec) -> dict:
    stats: dict = {"redacted": dict.fromkeys((*KINDS, "captions"), 0)}
    if spec.blur_faces:
        stats["faces"] = {"images": 0, "boxes": 0}
    return stats


def add_stats(total: dict, more: dict, sign: int = 1) -> dict:
    """``total + sign * more``, key by key (nested one level)."""
    out = {k: dict(v) for k, v in total.items()}
    for group, values in more.items():
        target = out.setdefault(group, {})
        for k, v in values.items():
            target[k] = target.get(k, 0) + sign * v
    return out


def _with_pixels(table: pa.Table, pixels: np.ndarray) -> pa.Table:
    column = table.column("pixels")
    kind = column.type
    flat = pa.array(pixels.reshape(-1), pa.uint8())
    storage = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(pixels.shape[1:])))
    array = pa.ExtensionArray.from_storage(kind, storage)
    return table.set_column(table.schema.get_field_index("pixels"), "pixels", array)


def privatize(
    table: pa.Table, spec: PrivacySpec, num_threads: int | None = None
) -> tuple[pa.Table, dict, list[list]]:
    """The shard's records as written, the counts, and the face boxes found
    per record (empty lists without ``blur_faces``)."""
    stats = empty_stats(spec)
    if spec.redact:
        for name in spec.redact_columns:
            if name not in table.schema.names:
                continue
            column = table.column(name)
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                continue
            redacted, counts = redact_captions(column, spec.redact, num_threads)
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, redacted.cast(column.type))
            stats = add_stats(stats, {"redacted": counts})
    for name in ("license", "licence"):
        if name in table.schema.names:
            values = ["unknown" if v is None else str(v) for v in table.column(name).to_pylist()]
            stats["licenses"] = {v: values.count(v) for v in sorted(set(values))}
            break
    boxes: list[list] = [[] for _ in range(table.num_rows)]
    if spec.blur_faces and table.num_rows:
        from fastprep.privacy.faces import obfuscate_faces

        pixels = table.column("pixels").combine_chunks().to_numpy_ndarray()
        blurred, boxes = obfuscate_faces(pixels, spec.blur_faces)
        table = _with_pixels(table, blurred)
        faces = pa.array([len(b) for b in boxes], pa.int32())
        table = table.append_column("faces", faces)
        stats["faces"] = {
            "images": int(sum(1 for b in boxes if b)),
            "boxes": int(sum(len(b) for b in boxes)),
        }
    return table, stats, boxes
