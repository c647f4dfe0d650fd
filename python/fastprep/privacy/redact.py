"""Caption redaction, in the Rust core next to the twitter-text hashtag
scanner (``rust/hashtags/redact.rs``, which documents every rule).

``@mentions``, e-mail addresses, phone numbers and URLs become ``@user``,
``<email>``, ``<phone>`` and ``<url>``; hashtags read exactly the same
afterwards (the core checks it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from fastprep import _core

KINDS = ("mentions", "emails", "phones", "urls")
PLACEHOLDERS = {"mentions": "@user", "emails": "<email>", "phones": "<phone>", "urls": "<url>"}


def redact_captions(
    captions: Any, kinds: Iterable[str] = KINDS, num_threads: int | None = None
) -> tuple[pa.Array, dict[str, int]]:
    """Redacted captions (a pyarrow string array, nulls kept) and the number
    of replacements per kind, plus ``captions`` (how many changed).

    ``captions``: a list of strings or any pyarrow string/binary array.
    ``kinds``: which of ``mentions``, ``emails``, ``phones``, ``urls``.
    """
    kinds = set(kinds)
    unknown = kinds - set(KINDS)
    if unknown:
        raise ValueError(f"redaction kinds are {KINDS}, got {sorted(unknown)}")
    if isinstance(captions, pa.ChunkedArray):
        array: Any = captions
    elif isinstance(captions, pa.Array):
        array = pa.chunked_array([captions])
    else:
        array = pa.chunked_array([pa.array(list(captions), pa.string())])
    redacted, counts = _core.redact_captions(
        array,
        mentions="mentions" in kinds,
        emails="emails" in kinds,
        phones="phones" in kinds,
        urls="urls" in kinds,
        num_threads=num_threads,
    )
    return redacted, dict(counts)


def count_placeholders(texts: Iterable[str | None]) -> dict[str, int]:
    """Placeholders per kind in already-redacted texts (what ``forget``
    subtracts from the manifest's redaction counts)."""
    counts = dict.fromkeys(KINDS, 0)
    changed = 0
    for text in texts:
        if not text:
            continue
        found = {k: text.count(p) for k, p in PLACEHOLDERS.items()}
        for k, n in found.items():
            counts[k] += n
        changed += any(found.values())
    return {**counts, "captions": changed}
