"""The files that end a run and the rules of the output folder: the
resume/overwrite checks, the drop table, and the manifest whose totals must
add up (every input record is written or dropped with a reason)."""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

import fastprep
from fastprep.errors import OutputExistsError, ResumeMismatchError
from fastprep.pipeline.io import atomic_json, atomic_parquet

#: Outputs of a run, removed by ``overwrite=True`` (nothing else is touched).
OUTPUT_PATTERNS = (
    "shard-*",
    "manifest.json",
    "vocab.json",
    "hashtag_counts.parquet",
    "dropped.parquet",
    "duplicate_pairs.parquet",
    "eval_leaks.parquet",
    "report.html",
    "report",
    "datasheet.md",
    "erasures.jsonl",
    "_staging",
)
DROP_SCHEMA = pa.schema([("key", pa.string()), ("source", pa.string()), ("reason", pa.string())])


@dataclass
class PrepResult:
    out_dir: str
    manifest: dict

    @property
    def written(self) -> int:
        return self.manifest["totals"]["written"]

    @property
    def dropped(self) -> dict:
        return self.manifest["totals"]["dropped"]

    @property
    def report(self) -> str | None:
        name = self.manifest.get("report")
        return os.path.join(self.out_dir, name) if name else None


def prepare_out_dir(out: str, settings: dict, resume: bool, overwrite: bool) -> str:
    """Creates ``out`` and its staging folder; enforces resume/overwrite rules."""
    staging = os.path.join(out, "_staging")
    existing = [p for pattern in OUTPUT_PATTERNS for p in glob.glob(os.path.join(out, pattern))]
    if existing and overwrite:
        for path in existing:
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        existing = []
    if existing and not resume:
        raise OutputExistsError(
            f"{out} already holds a fastprep run; pass resume=True (--resume) to continue it "
            "or overwrite=True (--overwrite) to replace it"
        )
    for leftover in glob.glob(os.path.join(out, "**", "*.tmp"), recursive=True):
        os.remove(leftover)  # a write interrupted before its rename
    os.makedirs(staging, exist_ok=True)
    settings_path = os.path.join(staging, "settings.json")
    if resume and os.path.exists(settings_path):
        with open(settings_path, encoding="utf-8") as f:
            previous = json.load(f)
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise ResumeMismatchError(
                f"cannot resume {out}: settings differ from the interrupted run ({', '.join(changed)})"
            )
    elif resume and os.path.exists(os.path.join(out, "manifest.json")):
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
            if json.load(f).get("resume_settings") != settings:
                raise ResumeMismatchError(
                    f"cannot resume {out}: it holds a run with other settings"
                )
    atomic_json(settings, settings_path)
    return staging


def drop_table(keys: Any, sources: Any, reasons: Any) -> pa.Table:
    """``key, source, reason`` of dropped records."""
    return pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "source": pa.array(sources, pa.string()),
            "reason": pa.array(list(reasons), pa.string()),
        }
    )


def finished_manifest(out: str, record: dict) -> dict | None:
    """The manifest of a finished run of these settings in ``out``, if any."""
    path = os.path.join(out, "manifest.json")
    if not os.path.exists(path) or os.path.isdir(os.path.join(out, "_staging")):
        return None
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    return manifest if manifest.get("resume_settings") == record else None


def finish_run(
    out: str,
    settings: dict,
    *,
    total: int,
    shards: list[dict],
    vocab_size: int,
    dropped: pa.Table,
    pairs: pa.Table | None,
    leaks: pa.Table | None,
    seconds: float,
    row_group_size: int,
    extra: dict | None = None,
) -> dict:
    """Writes the drop, pair and leak tables; returns the manifest after
    checking that every input record is written or dropped."""
    atomic_parquet(dropped, os.path.join(out, "dropped.parquet"), row_group_size)
    if pairs is not None:
        atomic_parquet(pairs, os.path.join(out, "duplicate_pairs.parquet"), row_group_size)
    if leaks is not None:
        atomic_parquet(leaks, os.path.join(out, "eval_leaks.parquet"), row_group_size)
    reasons = Counter(r.split(":")[0] for r in dropped.column("reason").to_pylist())
    written = sum(s["records"] for s in shards)
    manifest = {
        "fastprep": fastprep.__version__,
        "versions": {"pyarrow": pa.__version__, "numpy": np.__version__},
        "source": settings["source"],
        "settings": {k: v for k, v in settings.items() if k not in ("source", "fastprep")},
        "outputs": shards,
        "vocabulary": {"file": "vocab.json", "size": vocab_size},
        "tables": {
            "hashtag_counts": "hashtag_counts.parquet",
            "dropped": "dropped.parquet",
            "duplicate_pairs": "duplicate_pairs.parquet" if pairs is not None else None,
            "eval_leaks": "eval_leaks.parquet" if leaks is not None else None,
        },
        "totals": {"input": total, "written": written, "dropped": dict(sorted(reasons.items()))},
        "seconds": round(seconds, 3),
        "records_per_second": round(total / seconds, 1) if seconds else None,
        **(extra or {}),
    }
    if total != written + sum(reasons.values()):
        raise AssertionError(f"accounting mismatch: {manifest['totals']}")
    return manifest
