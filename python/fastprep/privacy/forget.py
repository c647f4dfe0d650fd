"""``fastprep forget``: erase records from a finished prep output.

Records are selected by key, account id, xxh3-128 (exact) or PDQ (within a
radius). Only the shards that hold one are rewritten; the drop, pair and
leak tables, the hashtag counts, the manifest (records, totals, privacy
counts), the datasheet and the report are updated; vocabulary ids stay as
they are. Each erasure appends one line to ``erasures.jsonl``: when, by
which selector, why, how many records, and the SHA-256 of each erased key
(so a loader can refuse an older copy's records) - never the erased
content, keys, captions or hashes.

Interrupt-safe: everything new is first written under ``_forget/`` with
``plan.json`` last; then the files are moved into place (each an atomic
rename), the log line is appended once, the manifest goes last. A rerun
finishes a pending plan before anything else, so an interrupted ``forget``
rerun gives the same output as one that was never interrupted.

Semantics: a record the prep run dropped as a copy of an erased record stays
dropped (it is a copy of the erased photo); its reason no longer names the
erased key (``duplicate_of: <erased>``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fastprep.errors import SettingsError
from fastprep.pipeline.io import atomic, atomic_arrow, atomic_json, atomic_parquet, read_arrow
from fastprep.privacy.datasheet import shard_totals, write_datasheet
from fastprep.privacy.redact import count_placeholders
from fastprep.privacy.shards import add_stats

LOG = "erasures.jsonl"
WORK = "_forget"
ERASED = "<erased>"


class ErasedRecordsError(ValueError):
    """A dataset holds records an erasure log lists as erased."""


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Selector:
    keys: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    xxh3: tuple[str, ...] = ()
    pdq: tuple[str, ...] = ()
    radius: int = 31

    def describe(self) -> str:
        parts = [
            f"{n}={len(v)}"
            for n, v in (
                ("keys", self.keys),
                ("accounts", self.accounts),
                ("xxh3", self.xxh3),
                ("pdq", self.pdq),
            )
            if v
        ]
        if self.pdq:
            parts.append(f"radius={self.radius}")
        return ", ".join(parts)

    def empty(self) -> bool:
        return not (self.keys or self.accounts or self.xxh3 or self.pdq)


@dataclass
class ForgetResult:
    erased: int
    shards: list[str] = field(default_factory=list)
    entry: dict | None = None


# ---------------------------------------------------------------------- shards


def _read_shard(path: str) -> pa.Table:
    if path.endswith(".parquet"):
        return pq.read_table(path)
    if path.endswith(".arrow"):
        return read_arrow(path)
    rows = []
    with tarfile.open(path) as tar:
        for member in tar:
            if member.name.endswith(".json"):
                data = tar.extractfile(member)
                rows.append(json.loads(data.read()) if data else {})
    return pa.Table.from_pylist(rows) if rows else pa.table({"key": pa.array([], pa.string())})


def _hash_column(table: pa.Table, name: str) -> list[bytes | None]:
    if name not in table.schema.names:
        return [None] * table.num_rows
    values = table.column(name).to_pylist()
    return [bytes.fromhex(v) if isinstance(v, str) else v for v in values]


def _matches(table: pa.Table, selector: Selector, account_column: str | None) -> np.ndarray:
    n = table.num_rows
    hit = np.zeros(n, dtype=bool)
    keys = table.column("key").to_pylist() if "key" in table.schema.names else [None] * n
    if selector.keys:
        wanted = set(selector.keys)
        hit |= np.array([k in wanted for k in keys], dtype=bool)
    if selector.accounts:
        if not account_column or account_column not in table.schema.names:
            raise SettingsError("the output has no account column: it was prepared without one")
        wanted = set(selector.accounts)
        values = table.column(account_column).to_pylist()
        hit |= np.array([v is not None and str(v) in wanted for v in values], dtype=bool)
    if selector.xxh3:
        wanted_b = {bytes.fromhex(h) for h in selector.xxh3}
        hit |= np.array([v in wanted_b for v in _hash_column(table, "xxh3_128")], dtype=bool)
    if selector.pdq and n:
        listed = np.unpackbits(
            np.frombuffer(b"".join(bytes.fromhex(h) for h in selector.pdq), np.uint8).reshape(
                len(selector.pdq), 32
            ),
            axis=1,
        )
        values = _hash_column(table, "pdq")
        for i, value in enumerate(values):
            if value is not None:
                bits = np.unpackbits(np.frombuffer(value, np.uint8))
                hit[i] |= bool(((listed != bits).sum(axis=1) <= selector.radius).any())
    return hit


def _write_filtered(src: str, dst: str, keep: np.ndarray, row_group_size: int) -> None:
    """``src`` without the rows not kept, to ``dst`` (tar members copied as they are)."""
    if src.endswith(".parquet"):
        atomic_parquet(pq.read_table(src).filter(pa.array(keep)), dst, row_group_size)
    elif src.endswith(".arrow"):
        atomic_arrow(read_arrow(src).filter(pa.array(keep)), dst)
    else:

        def write(tmp: str) -> None:
            with tarfile.open(src) as tar, tarfile.open(tmp, "w") as out:
                record = -1
                stem = None
                for member in tar:
                    name_stem = member.name.rsplit("/", 1)[-1].partition(".")[0]
                    if name_stem != stem:
                        stem, record = name_stem, record + 1
                    if keep[record]:
                        data = tar.extractfile(member)
                        out.addfile(member, io.BytesIO(data.read() if data else b""))

        atomic(dst, write)


def _removed_stats(table: pa.Table, rows: np.ndarray) -> dict:
    """The per-shard privacy counts the removed rows contributed."""
    part = table.take(pa.array(np.flatnonzero(rows), pa.int64()))
    stats: dict = {}
    if "caption" in part.schema.names:
        stats["redacted"] = count_placeholders(part.column("caption").to_pylist())
    if "faces" in part.schema.names:
        faces = [int(f or 0) for f in part.column("faces").to_pylist()]
        stats["faces"] = {"images": sum(1 for f in faces if f), "boxes": sum(faces)}
    for name in ("license", "licence"):
        if name in part.schema.names:
            values = ["unknown" if v is None else str(v) for v in part.column(name).to_pylist()]
            stats["licenses"] = dict(Counter(values))
            break
    return stats


def _removed_tags(table: pa.Table, rows: np.ndarray) -> dict[str, tuple[int, int]]:
    """(tag -> [images, occurrences]) of the removed rows' hashtags."""
    images: Counter = Counter()
    occurrences: Counter = Counter()
    if "hashtags" in table.schema.names:
        for tags in pc.filter(table.column("hashtags"), pa.array(rows)).to_pylist():
            tags = tags or []
            occurrences.update(tags)
            images.update(set(tags))
    return {t: (images[t], occurrences[t]) for t in occurrences}


# ---------------------------------------------------------------------- plan


def _plan(out: str, manifest: dict, selector: Selector, reason: str | None) -> dict | None:
    """Writes every new file under ``_forget/`` and returns the plan (None
    when nothing matches)."""
    settings = manifest["settings"]
    account_column = settings.get("account_column")
    row_group_size = int(settings.get("row_group_size", 1000))
    work = os.path.join(out, WORK)
    os.makedirs(work, exist_ok=True)
    erased_keys: list[str] = []
    moves: list[tuple[str, str]] = []
    outputs = []
    removed_written = 0
    tag_delta: dict[str, tuple[int, int]] = {}
    for shard in manifest["outputs"]:
        path = os.path.join(out, shard["file"])
        table = _read_shard(path)
        hit = _matches(table, selector, account_column)
        if not hit.any():
            outputs.append(shard)
            continue
        erased_keys += [k for k, h in zip(table.column("key").to_pylist(), hit) if h]
        removed_written += int(hit.sum())
        for tag, (img, occ) in _removed_tags(table, hit).items():
            old = tag_delta.get(tag, (0, 0))
            tag_delta[tag] = (old[0] + img, old[1] + occ)
        left = shard["records"] - int(hit.sum())
        if left:
            staged = os.path.join(work, shard["file"])
            _write_filtered(path, staged, ~hit, row_group_size)
            moves.append((staged, path))
            privacy = add_stats(shard.get("privacy") or {}, _removed_stats(table, hit), -1)
            if "licenses" in privacy:  # a licence no record has any more goes
                privacy["licenses"] = {k: v for k, v in privacy["licenses"].items() if v}
            outputs.append({**shard, "records": left, "privacy": privacy})
        else:
            moves.append(("", path))  # nothing left: the shard goes
    # Dropped records: by key only (dropped.parquet keeps key, source, reason).
    tables = manifest["tables"]
    dropped = pq.read_table(os.path.join(out, tables["dropped"]))
    drop_hit = np.zeros(dropped.num_rows, dtype=bool)
    if selector.keys and dropped.num_rows:
        drop_hit = np.array(
            [k in set(selector.keys) for k in dropped.column("key").to_pylist()], dtype=bool
        )
    erased_keys += [k for k, h in zip(dropped.column("key").to_pylist(), drop_hit) if h]
    if not erased_keys:
        shutil.rmtree(work, ignore_errors=True)
        return None
    erased = set(erased_keys)
    removed_reasons = Counter(
        r.split(":")[0] for r, h in zip(dropped.column("reason").to_pylist(), drop_hit) if h
    )
    kept = dropped.filter(pa.array(~drop_hit))
    reasons = [_scrub_reason(r, erased) for r in kept.column("reason").to_pylist()]
    kept = kept.set_column(2, "reason", pa.array(reasons, pa.string()))
    staged_drop = os.path.join(work, tables["dropped"])
    atomic_parquet(kept, staged_drop, row_group_size)
    moves.append((staged_drop, os.path.join(out, tables["dropped"])))
    for name, columns in (("duplicate_pairs", ("key_a", "key_b")), ("eval_leaks", ("train_key",))):
        if not tables.get(name):
            continue
        table = pq.read_table(os.path.join(out, tables[name]))
        keep = np.ones(table.num_rows, dtype=bool)
        for column in columns:
            keep &= ~np.array([k in erased for k in table.column(column).to_pylist()], bool)
        staged = os.path.join(work, tables[name])
        atomic_parquet(table.filter(pa.array(keep)), staged, row_group_size)
        moves.append((staged, os.path.join(out, tables[name])))
    counts = pq.read_table(os.path.join(out, tables["hashtag_counts"]))
    rows = []
    for row in counts.to_pylist():
        img, occ = tag_delta.get(row["tag"], (0, 0))
        if row["images"] - img > 0:
            rows.append(
                {**row, "images": row["images"] - img, "occurrences": row["occurrences"] - occ}
            )
    # The order HashtagCounts.to_arrow writes: images, occurrences (both
    # descending), then the tag's bytes.
    rows.sort(key=lambda r: (-r["images"], -r["occurrences"], r["tag"].encode()))
    new_counts = pa.Table.from_pylist(rows, schema=counts.schema)
    staged_counts = os.path.join(work, tables["hashtag_counts"])
    atomic_parquet(new_counts, staged_counts, row_group_size)
    moves.append((staged_counts, os.path.join(out, tables["hashtag_counts"])))
    entry = {
        "id": hashlib.sha256(json.dumps([sorted(erased), time.time()]).encode()).hexdigest()[:16],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "selector": selector.describe(),
        "reason": reason,
        "records": len(erased),
        "written": removed_written,
        "dropped": dict(sorted(removed_reasons.items())),
        "key_sha256": sorted(key_digest(k) for k in erased),
    }
    new = json.loads(json.dumps(manifest))
    new["outputs"] = outputs
    totals = new["totals"]
    totals["written"] -= removed_written
    for r, n in removed_reasons.items():
        totals["dropped"][r] -= n
        if not totals["dropped"][r]:
            del totals["dropped"][r]
    totals["erased"] = totals.get("erased", 0) + len(erased)
    assert totals["input"] == totals["written"] + sum(totals["dropped"].values()) + totals["erased"]
    new.setdefault("erasures", []).append({k: v for k, v in entry.items() if k != "key_sha256"})
    sums = shard_totals(outputs)
    privacy = new.get("privacy") or {}
    if privacy.get("redaction"):
        privacy["redaction"]["counts"] = sums.get("redacted", {})
    if privacy.get("faces"):
        privacy["faces"].update(sums.get("faces", {}))
    if "licenses" in privacy:
        privacy["licenses"] = sums.get("licenses", {})
    plan = {"entry": entry, "moves": moves, "manifest": new}
    atomic_json(plan, os.path.join(work, "plan.json"))  # last: the plan is complete
    return plan


def _scrub_reason(reason: str, erased: set[str]) -> str:
    kind, sep, name = reason.partition(": ")
    return f"{kind}{sep}{ERASED}" if kind == "duplicate_of" and name in erased else reason


# ---------------------------------------------------------------------- apply


def _step(src: str, dst: str) -> None:
    """One move of a plan (a module function so tests can interrupt it)."""
    if not src:
        if os.path.exists(dst):
            os.remove(dst)
    elif os.path.exists(src):
        os.replace(src, dst)


def _apply(out: str, plan: dict) -> None:
    for src, dst in plan["moves"]:
        _step(src, dst)
    manifest = plan["manifest"]
    log = os.path.join(out, LOG)
    done = set()
    if os.path.exists(log):
        with open(log, encoding="utf-8") as f:
            done = {json.loads(line)["id"] for line in f if line.strip()}
    if plan["entry"]["id"] not in done:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(plan["entry"]) + "\n")
    write_datasheet(out, manifest)
    if manifest.get("report"):
        _rewrite_report(out, manifest)
    atomic_json(manifest, os.path.join(out, "manifest.json"))
    shutil.rmtree(os.path.join(out, WORK), ignore_errors=True)


def _rewrite_report(out: str, manifest: dict) -> None:
    """The report from the updated outputs. The duplicate-cluster strips are
    left out (their thumbnails came from the staged images, and may show an
    erased photo)."""
    from fastprep.hashtags import load_vocabulary
    from fastprep.pipeline.report import write_report
    from fastprep.privacy.datasheet import add_report_section

    tables = manifest["tables"]
    counts = pq.read_table(os.path.join(out, tables["hashtag_counts"]))
    vocab = load_vocabulary(os.path.join(out, manifest["vocabulary"]["file"]))
    per_record: list[int] = []
    for shard in manifest["outputs"]:
        table = _read_shard(os.path.join(out, shard["file"]))
        if "num_labels" in table.schema.names:
            per_record += [int(n) for n in table.column("num_labels").to_pylist()]
    in_vocab = set(vocab.tags)
    occ = counts.column("occurrences").to_pylist()
    tags = counts.column("tag").to_pylist()
    no_label = manifest["totals"]["dropped"].get("no_label", 0)
    coverage = {
        "records": len(per_record) + no_label,
        "labeled": sum(1 for n in per_record if n > 0),
        "labels_per_record": np.bincount(per_record).tolist() if per_record else [0],
        "vocab_size": len(vocab),
        "occurrences_in_vocab": int(sum(o for t, o in zip(tags, occ) if t in in_vocab)),
        "occurrences_total": int(sum(occ)),
    }
    leaks = (
        pq.read_table(os.path.join(out, tables["eval_leaks"])) if tables.get("eval_leaks") else None
    )
    path = write_report(
        out, manifest=manifest, counts=counts, coverage=coverage, clusters=[], leaks=leaks
    )
    add_report_section(path, out, manifest)


# ---------------------------------------------------------------------- entry


def forget(
    out_dir: str | os.PathLike,
    *,
    keys: Iterable[str] = (),
    accounts: Iterable[str] = (),
    xxh3: Iterable[str] = (),
    pdq: Iterable[str] = (),
    radius: int = 31,
    reason: str | None = None,
) -> ForgetResult:
    """Erases the selected records from a finished output (module docstring)."""
    out = os.path.abspath(os.fspath(out_dir))
    manifest_path = os.path.join(out, "manifest.json")
    if not os.path.exists(manifest_path) or os.path.isdir(os.path.join(out, "_staging")):
        raise SettingsError(f"{out} holds no finished prep run")
    pending = os.path.join(out, WORK, "plan.json")
    if os.path.exists(pending):  # an interrupted forget: finish it first
        with open(pending, encoding="utf-8") as f:
            _apply(out, json.load(f))
    shutil.rmtree(os.path.join(out, WORK), ignore_errors=True)  # an unfinished plan
    selector = Selector(
        tuple(keys),
        tuple(str(a) for a in accounts),
        tuple(h.strip().lower() for h in xxh3),
        tuple(h.strip().lower() for h in pdq),
        radius,
    )
    if selector.empty():
        raise SettingsError("forget needs at least one key, account, xxh3 or PDQ hash")
    for h in selector.xxh3:
        if len(h) != 32:
            raise SettingsError(f"xxh3-128 hashes have 32 hex digits: {h!r}")
    for h in selector.pdq:
        if len(h) != 64:
            raise SettingsError(f"PDQ hashes have 64 hex digits: {h!r}")
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    plan = _plan(out, manifest, selector, reason)
    if plan is None:
        return ForgetResult(0)
    _apply(out, plan)
    changed = [os.path.basename(dst) for src, dst in plan["moves"] if "shard-" in dst]
    return ForgetResult(plan["entry"]["records"], changed, plan["entry"])


# ---------------------------------------------------------------------- readers


def erased_digests(paths: Iterable[str | os.PathLike]) -> set[str]:
    """SHA-256 digests of every key erased in these logs (or output folders)."""
    found: set[str] = set()
    for path in paths:
        text = os.fspath(path)
        if os.path.isdir(text):
            text = os.path.join(text, LOG)
        if not os.path.exists(text):
            continue
        with open(text, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    found.update(json.loads(line).get("key_sha256", []))
    return found


def screen_erased(table: pa.Table, logs: Iterable[Any], on_erased: str = "refuse") -> pa.Table:
    """``table`` checked against erasure logs: ``refuse`` raises
    :class:`ErasedRecordsError` if it holds an erased record, ``skip``
    leaves those records out."""
    if on_erased not in ("refuse", "skip"):
        raise ValueError("on_erased must be 'refuse' or 'skip'")
    digests = erased_digests(logs)
    if not digests or "key" not in table.schema.names:
        return table
    hit = np.array([key_digest(k or "") in digests for k in table.column("key").to_pylist()])
    if not hit.any():
        return table
    if on_erased == "refuse":
        raise ErasedRecordsError(
            f"{int(hit.sum())} record(s) are listed as erased; use a current copy of the "
            "dataset, or on_erased='skip' to leave them out"
        )
    return table.filter(pa.array(~hit))
