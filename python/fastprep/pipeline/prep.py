"""The `prep` job: raw photo+caption corpus -> deduplicated, labelled shards.

Written once; an engine (:mod:`fastprep.pipeline.engine`) says where it
runs. Pass 1 streams the source once: consent filter, then decode + resize
+ hash (one decode per record) and hashtag extraction, staging each part on
disk (``_staging/part-N``) and returning only keys and hashes to the driver,
as Arrow arrays. The corpus-wide decisions follow
(:mod:`fastprep.pipeline.decisions`: opt-out list, exact and near
duplicates, eval-set leaks, vocabulary). Pass 2 cuts the survivors into
shards and writes each from the staged parts.

With a given vocabulary and ``single_pass``, the source is read, decided
and written in one pass instead (:mod:`fastprep.pipeline.single_pass`).

Every file is written under a temporary name and renamed, so an interrupted
run leaves no half-written file. A staged part is complete once its
``.done`` marker exists, and shards are numbered deterministically, so
``resume=True`` skips the staged parts and the shards already written, on
every engine. Every input record ends up written or dropped with a reason,
and the manifest's totals must add up.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time
from collections import Counter
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastprep.errors import OutputExistsError, SettingsError
from fastprep.hashtags import (
    HashtagCounts,
    Vocabulary,
    build_vocabulary,
    load_vocabulary,
    save_vocabulary,
)
from fastprep.pipeline.decisions import Decision, Decisions, decide, shard_plan
from fastprep.pipeline.engine import Engine
from fastprep.pipeline.first_seen import FirstSeen
from fastprep.pipeline.io import (
    arrow_schema,
    atomic_json,
    atomic_parquet,
    run_schema,
)
from fastprep.pipeline.local import LocalEngine
from fastprep.pipeline.outputs import (
    PrepResult,
    drop_table,
    finish_run,
    finished_manifest,
    prepare_out_dir,
)
from fastprep.pipeline.passes import (
    LabelContext,
    PartResult,
    PassContext,
    PassTotals,
    WriteContext,
    hash_eval_part,
    label_part,
    stage_part,
    write_planned_shard,
)
from fastprep.pipeline.progress import Progress
from fastprep.pipeline.remote import is_remote, local_workdir, remote_has_run, upload_run
from fastprep.pipeline.settings import PrepSettings
from fastprep.pipeline.single_pass import run_single_pass
from fastprep.pipeline.sources import count_records, is_table_source, table_source
from fastprep.privacy.shards import PrivacySpec

#: Duplicate clusters shown (with thumbnails) in the report.
REPORT_CLUSTERS = 12

log = logging.getLogger(__name__)


def prep(
    source: Any,
    out_dir: str | os.PathLike,
    settings: PrepSettings | None = None,
    *,
    engine: Engine | None = None,
    resume: bool = False,
    overwrite: bool = False,
    report: bool = True,
    progress: bool = False,
    num_threads: int | None = None,
    **options: Any,
) -> PrepResult:
    """Runs the whole job (see the module docstring) and returns the manifest.

    Args:
        source: folder, tar shard(s) or Parquet (see :func:`open_source`), any
            iterable of record batches with ``key``, ``source``, ``image`` and
            ``caption`` columns, a table source (a pyarrow table or reader,
            any ``__arrow_c_stream__`` producer, a Hugging Face
            ``Dataset``/``IterableDataset``; see :func:`table_source`), or
            what the engine reads itself (a ``ray.data.Dataset`` on
            :class:`fastprep.ray.RayEngine`).
        out_dir: output folder (on a distributed engine, a path every worker
            can write), or an fsspec URL (``s3://bucket/prepared/``): prepared
            locally, then uploaded with the manifest last
            (:mod:`fastprep.pipeline.remote`); the result's ``out_dir`` is then
            the URL. It must not hold a run already unless ``resume``
            (continue an interrupted run with the same settings and source:
            staged parts and written shards are kept) or ``overwrite``.
        settings: a :class:`PrepSettings`; or pass its fields as keyword
            ``options`` (``size=``, ``sink=``, ``dedup_radius=`` ...; see
            :class:`PrepSettings` for each). Not both.
        engine: where the job runs; default :class:`LocalEngine` with
            ``num_threads`` Rust threads. Outputs do not depend on it.
        report: write ``report.html`` (figures need ``fastprep[report]``).
        progress: show records/s and ETA on stderr.
    """
    if settings is not None and options:
        raise TypeError("pass either settings= or setting keywords, not both")
    settings = settings if settings is not None else PrepSettings.from_options(**options)
    settings.validate()
    if engine is None:
        engine = LocalEngine(num_threads=num_threads)
    elif num_threads is not None:
        raise SettingsError("num_threads is the local engine's option: LocalEngine(num_threads=)")
    if is_table_source(source):  # Arrow producers, HF datasets: streamed in batches
        source = table_source(source, batch_size=settings.batch_size, **settings.source_options)
    remote_out = os.fspath(out_dir) if is_remote(os.fspath(out_dir)) else None
    if remote_out is not None:
        # Prepared in a local working folder, then uploaded, manifest last.
        storage = settings.source_options.get("storage_options")
        if remote_has_run(remote_out, storage) and not (overwrite or resume):
            raise OutputExistsError(
                f"{remote_out} already holds a fastprep run; pass resume=True (--resume) "
                "or overwrite=True (--overwrite)"
            )
        out_dir = local_workdir(remote_out)
        if not resume:
            shutil.rmtree(out_dir, ignore_errors=True)
    job = _Job(source, os.path.abspath(os.fspath(out_dir)), settings, engine, resume, progress)
    engine.start()
    try:
        result = job.run(overwrite=overwrite, report=report)
    finally:
        engine.stop()
    if remote_out is not None:
        upload_run(result.out_dir, remote_out, settings.source_options.get("storage_options"))
        return PrepResult(remote_out, result.manifest)  # the local folder is only a cache
    return result


def empty_run_problem(manifest: dict) -> str | None:
    """Why a finished run should not count as a success, in one line: its
    source held nothing, could not be read at all, or it wrote nothing
    (None when it wrote records). The CLI exits non-zero on it unless
    ``--allow-empty``."""
    totals = manifest["totals"]
    if totals["written"]:
        return None
    dropped = totals["dropped"]
    if not totals["input"]:
        return "the source holds no records"
    if set(dropped) == {"source_error"}:
        return (
            f"the source could not be read ({dropped['source_error']} unreadable part(s), "
            "see dropped.parquet)"
        )
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items()))
    return f"nothing written: all {totals['input']} records were dropped ({reasons})"


def source_label(source: Any) -> str:
    """How the settings record names a source (resume compares it)."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        return text if is_remote(text) else os.path.abspath(text)
    if type(source).__module__.startswith("ray.data"):
        return "<dataset>"
    return "<batches>"


class _Job:
    """One run: the steps of :func:`prep`, in order."""

    def __init__(self, source, out, settings, engine, resume, progress) -> None:
        self.source, self.out, self.settings, self.engine = source, out, settings, engine
        self.resume, self.progress = resume, progress
        self.record = settings.to_record(source_label(source))
        self.staging = os.path.join(out, "_staging")
        self.started = time.perf_counter()
        self.board = Progress(enabled=False)

    def run(self, *, overwrite: bool, report: bool) -> PrepResult:
        with Progress(enabled=self.progress) as self.board:
            return self._run(overwrite=overwrite, report=report)

    def _run(self, *, overwrite: bool, report: bool) -> PrepResult:
        if self.resume:
            manifest = finished_manifest(self.out, self.record)
            if manifest is not None:
                log.info("%s already holds this run, finished", self.out)
                return PrepResult(self.out, manifest)  # already complete
        os.makedirs(self.out, exist_ok=True)
        prepare_out_dir(self.out, self.record, self.resume, overwrite)
        if self.settings.single_pass:
            first, num_labels, decisions, shards = self.single_pass()
            state, vocab = first.state(), load_vocabulary(self.settings.vocabulary)
        else:
            first = self.pass1()
            state = first.state()
            vocab = self.vocabulary(first.counts)
            num_labels = self.labels(first.parts, vocab)
            eval_hashes = self.eval_hashes() if state.num_rows else None
            decisions = decide(
                state,
                num_labels,
                self.settings,
                near_pairs=self.engine.near_pairs,
                match=self.engine.match,
                eval_hashes=eval_hashes,
                step=lambda name: self.board.step(f"prep decisions: {name}"),
            )
        save_vocabulary(vocab, os.path.join(self.out, "vocab.json"))
        counts_table = first.counts.to_arrow()
        path = os.path.join(self.out, "hashtag_counts.parquet")
        atomic_parquet(counts_table, path, self.settings.row_group_size)
        if not self.settings.single_pass:
            shards = self.pass2(first, decisions, vocab)
        manifest = self.finish(first, state, decisions, shards, len(vocab))
        from fastprep.privacy.datasheet import finish_privacy

        finish_privacy(self.out, manifest, self.settings)  # privacy totals, datasheet.md
        if report:
            with self.board.step("prep report"):
                manifest["report"] = self.report(
                    manifest, first, state, decisions, num_labels, counts_table, vocab
                )
        atomic_json(manifest, os.path.join(self.out, "manifest.json"))
        shutil.rmtree(self.staging, ignore_errors=True)
        return PrepResult(self.out, manifest)

    # ------------------------------------------------------------------ passes

    def pass1(self) -> PassTotals:
        settings = self.settings
        context = PassContext(
            self.staging, settings, self.resume, self.engine.task_threads(), "<dataset>"
        )
        from_path = isinstance(self.source, (str, os.PathLike))
        total = count_records(self.source) if from_path else None
        # Parts a resumed run finds finished are read back, not decoded:
        # they count as done but not towards the rate.
        finished = set()
        if self.resume:
            for marker in glob.glob(os.path.join(glob.escape(self.staging), "part-*.done")):
                finished.add(int(os.path.basename(marker)[len("part-") : -len(".done")]))
        task = self.board.task("prep 1/2 decode+hash", total)
        # Readers write `source` relative to the source root (no local paths
        # in what is written) unless absolute paths are asked for.
        options = dict(settings.source_options)
        options.setdefault("absolute_paths", settings.absolute_sources)
        parts = self.engine.parts(self.source, settings.batch_size, options)
        first = PassTotals()
        step = partial(_stage_numbered, context)
        for result in self.engine.map(step, enumerate(parts)):
            first.add(result, self.staging)
            task.update(result.input, skipped=result.part in finished)
        task.close()
        log.info("pass 1: %d records, %d parts resumed", first.total, len(finished))
        return first

    def vocabulary(self, counts: HashtagCounts) -> Vocabulary:
        """The given vocabulary, else one built from the corpus's counts."""
        if self.settings.vocabulary is not None:
            return load_vocabulary(self.settings.vocabulary)
        with self.board.step("prep vocabulary"):
            vocab = build_vocabulary(
                counts,
                top_k=self.settings.top_k,
                min_count=self.settings.min_count,
                normalizer=self.settings.hashtag_normalizer,
            )
        log.info("vocabulary: %d of %d tags", len(vocab), len(counts))
        return vocab

    def single_pass(self) -> tuple[PassTotals, np.ndarray, Decisions, list[dict]]:
        """Reads, decides and writes in one pass over the source
        (:mod:`fastprep.pipeline.single_pass`)."""
        settings = self.settings
        vocab = load_vocabulary(settings.vocabulary)
        threads = self.engine.task_threads()
        from_path = isinstance(self.source, (str, os.PathLike))
        task = self.board.task(
            "prep decode+hash+write", count_records(self.source) if from_path else None
        )
        options = dict(settings.source_options)
        options.setdefault("absolute_paths", settings.absolute_sources)
        done = run_single_pass(
            engine=self.engine,
            parts=self.engine.parts(self.source, settings.batch_size, options),
            context=PassContext(self.staging, settings, self.resume, threads, "<dataset>"),
            write=WriteContext(
                self.out,
                (),
                pa.schema([]),
                settings.shards,
                vocab.to_json(),
                num_threads=threads,
                privacy=PrivacySpec.from_settings(settings),
            ),
            vocab=vocab,
            decider=FirstSeen(settings, eval_hashes=self.eval_hashes()),
            resume=self.resume,
            task=task,
        )
        task.close()
        log.info("single pass: %d records, %d shards", done.totals.total, len(done.shards))
        decisions = done.decider.decisions(done.totals.state())
        return done.totals, done.num_labels, decisions, done.shards

    def labels(self, parts: list[str], vocab: Vocabulary) -> np.ndarray:
        context = LabelContext(vocab.to_json(), self.engine.task_threads())
        found = []
        with self.board.step("prep labels", len(parts), unit="parts") as task:
            for labels in self.engine.map(partial(label_part, context), parts):
                found.append(labels)
                task.update(1)
        return np.concatenate(found) if found else np.zeros(0, np.int32)

    def eval_hashes(self) -> tuple[list[str], pa.Array] | None:
        if self.settings.eval_source is None:
            return None
        keys: list[str] = []
        hashes: list[pa.Array] = []
        step = partial(hash_eval_part, self.engine.task_threads())
        source = self.settings.eval_source
        with self.board.step("prep eval hashing", unit="images hashed") as task:
            for part_keys, pdq in self.engine.map(step, self.engine.parts(source, 256, {})):
                keys.extend(part_keys)
                hashes.append(pdq)
                task.update(len(part_keys))
        pdq = pa.concat_arrays(hashes) if hashes else pa.array([], pa.binary(32))
        return keys, pdq

    def pass2(self, first: PassTotals, decisions: Decisions, vocab: Vocabulary) -> list[dict]:
        if not first.parts:
            return []
        starts = np.cumsum([0, *first.part_rows])
        keep = [
            decisions.code[starts[i] : starts[i + 1]] == Decision.KEEP
            for i in range(len(first.parts))
        ]
        plan = shard_plan(keep, self.settings.records_per_shard)
        context = WriteContext(
            self.out,
            tuple(first.parts),
            run_schema([arrow_schema(p) for p in first.parts]),
            self.settings.shards,
            vocab.to_json(),
            self.resume,
            self.engine.task_threads(),
            privacy=PrivacySpec.from_settings(self.settings),
        )
        # Shards a resumed run finds written are kept: done, not in the rate.
        spec = self.settings.shards
        kept = {
            s.index
            for s in plan
            if self.resume and os.path.exists(os.path.join(self.out, spec.shard_name(s.index)))
        }
        task = self.board.task("prep 2/2 write", sum(s.records for s in plan))
        shards = []
        for planned, shard in zip(
            plan, self.engine.map(partial(write_planned_shard, context), plan)
        ):
            shards.append(shard)
            task.update(shard["records"], skipped=planned.index in kept)
        task.close()
        return shards

    # ------------------------------------------------------------------ outputs

    def finish(self, first, state, decisions, shards, vocab_size) -> dict:
        rows, reasons = decisions.reasons(state.column("key"))
        index = pa.array(rows, pa.int64())
        corpus_drops = drop_table(
            pc.take(state.column("key"), index), pc.take(state.column("source"), index), reasons
        )
        manifest = finish_run(
            self.out,
            self.record,
            total=first.total,
            shards=shards,
            vocab_size=vocab_size,
            dropped=pa.concat_tables([first.dropped(), corpus_drops]),
            pairs=decisions.pairs,
            leaks=decisions.leaks,
            seconds=time.perf_counter() - self.started,
            row_group_size=self.settings.row_group_size,
            extra={"resume_settings": self.record, "engine": self.engine.describe()},
        )
        manifest["damaged"] = damaged_totals(shards, self.settings.on_damaged)
        return manifest

    def report(self, manifest, first, state, decisions, num_labels, counts, vocab) -> str | None:
        """Writes report.html; returns its name (relative to the output folder)."""
        from fastprep.pipeline.report import write_report
        from fastprep.pipeline.report.gather import gather

        code = decisions.code
        considered = (code == Decision.KEEP) | (code == Decision.NO_LABEL)
        written = num_labels[code == Decision.KEEP]
        clusters = decisions.duplicate_clusters(REPORT_CLUSTERS)
        thumbnails = _thumbnails(first, sorted({i for c in clusters for i in c}))
        keys = state.column("key")
        in_vocab = set(vocab.tags)
        occurrences = counts.column("occurrences").to_numpy()
        mask = np.array([t in in_vocab for t in counts.column("tag").to_pylist()], dtype=bool)
        coverage = {
            "records": int(considered.sum()),
            "labeled": int((considered & (num_labels > 0)).sum()),
            "labels_per_record": np.bincount(written).tolist() if len(written) else [0],
            "vocab_size": len(vocab),
            "occurrences_in_vocab": int(occurrences[mask].sum()) if len(mask) else 0,
            "occurrences_total": int(occurrences.sum()),
        }
        path = write_report(
            self.out,
            manifest=manifest,
            counts=counts,
            coverage=coverage,
            clusters=[
                {
                    "keeper": keys[m[0]].as_py(),
                    "members": [keys[i].as_py() for i in m],
                    "thumbnails": [thumbnails[i] for i in m if i in thumbnails],
                }
                for m in clusters
            ],
            leaks=decisions.leaks,
            dropped=first.dropped(),
            **gather(
                parts=first.parts,
                part_rows=first.part_rows,
                keep=code == Decision.KEEP,
                state=state,
                vocab=vocab,
                leaks=decisions.leaks,
                eval_source=self.settings.eval_source,
                size=self.settings.size,
                mode=self.settings.mode,
            ),
        )
        from fastprep.privacy.datasheet import add_report_section

        add_report_section(path, self.out, manifest)
        return os.path.relpath(path, self.out)


def damaged_totals(shards: list[dict], policy: str) -> dict:
    """The manifest's ``damaged`` section: written records that decoded with
    warnings, by warning, and the policy (with ``drop`` they are counted
    under ``totals.dropped.damaged`` instead)."""
    by_warning: Counter = Counter()
    for shard in shards:
        by_warning.update(shard.get("damaged") or {})
    return {"policy": policy, "written_with_warnings": dict(sorted(by_warning.items()))}


def _stage_numbered(context: PassContext, numbered: tuple[int, Any]) -> PartResult:
    part, data = numbered
    return stage_part(context, part, data)


def _thumbnails(first: PassTotals, rows: list[int]) -> dict[int, np.ndarray]:
    """Pixels of the given staged records (thumbnails of encoded stores)."""
    from fastprep.pipeline.report.gather import staged_rows

    found = staged_rows(first.parts, first.part_rows, rows, ["pixels"])
    return {r: v["pixels"] for r, v in found.items() if v.get("pixels") is not None}
