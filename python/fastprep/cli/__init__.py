"""The ``fastprep`` command line (click).

``fastprep demo`` runs the whole preparation job on the captioned sample
corpus shipped in the package; ``fastprep prep SOURCE --out DIR`` runs it on
yours; ``vocab``, ``dedup`` and ``bench`` run single stages; ``completion``
prints a shell completion script.

Every error is one line on stderr, ``fastprep COMMAND: error: ...``, with
exit status 2, and every check that can fail (options, source, ``--out``,
option combinations) runs before any work. ``--debug`` (or
``FASTPREP_DEBUG=1``) shows the traceback instead. Ctrl-C stops cleanly
(exit 130; every file is written atomically) and ``--resume`` continues; a
closed pipe (``fastprep demo | head -1``) ends quietly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from fastprep import _core
from fastprep.cli._checks import (
    CommandError,
    check_columns,
    check_no_run,
    check_out_dir,
    check_out_file,
    check_source,
    os_words,
    read_hash_list,
)
from fastprep.cli._help import Group, apply, examples, option
from fastprep.errors import FastprepError, OutputExistsError
from fastprep.images import FILTERS, MODES
from fastprep.privacy import cli as privacy_cli

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "CommandError", "cli", "demo_corpus", "main"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 1  # what click does on EPIPE inside a command

log = logging.getLogger("fastprep.cli")


def demo_corpus() -> str:
    """The captioned sample corpus shipped in the package (a folder source)."""
    return str(Path(__file__).parent.parent / "sample_data" / "corpus")


def demo_eval_set() -> str:
    """The small evaluation set shipped with it (one planted leak)."""
    return str(Path(__file__).parent.parent / "sample_data" / "eval")


# ---------------------------------------------------------------------- options

INPUT, OUTPUT, IMAGES = "Input", "Output", "Images"
CONSENT, DEDUP = "Consent and takedowns", "Near-duplicates and eval-set leaks"
VOCAB, ENGINE, RUN = "Vocabulary", "Engine (where the job runs; outputs do not depend on it)", "Run"

POSITIVE = click.IntRange(min=1)
NON_NEGATIVE = click.IntRange(min=0)
RADIUS = click.IntRange(0, 256)

#: Engine flags: which engine each belongs to (a flag of another engine is an error).
_ENGINE_FLAGS = {
    "threads": ("--threads", "local"),
    "ray_address": ("--ray-address", "ray"),
    "num_cpus": ("--num-cpus", "ray"),
    "concurrency": ("--concurrency", "ray"),
    "spark_master": ("--spark-master", "spark"),
}

_SOURCE_COLUMNS = [
    option("--image-column", group=INPUT, default="jpg",
           help="Parquet sources: the column of encoded image bytes (img2dataset: jpg)."),
    option("--caption-column", group=INPUT, default="caption",
           help="Parquet sources: the caption column."),
    option("--key-column", group=INPUT, default="key", help="Parquet sources: the key column."),
]  # fmt: skip
_BATCH = option("--batch-size", group=INPUT, type=POSITIVE, default=256,
                help="Records per batch read from the source.")  # fmt: skip
_QUIET = option("--quiet", "-q", group=RUN, is_flag=True, help="No progress on stderr.")
_THREADS = option("--threads", group=ENGINE, type=POSITIVE, default=None,
                  show_default="the CPUs this process may use", help="Rust threads.")  # fmt: skip

_PREP_OPTIONS = [
    _BATCH,
    *_SOURCE_COLUMNS,
    option("--sink", group=OUTPUT, type=click.Choice(["parquet", "arrow", "webdataset"]),
           default="parquet",
           help="Shard format: Parquet, Arrow IPC (fastest, memory-mapped) or WebDataset tar."),
    option("--image-format", group=OUTPUT, type=click.Choice(["tensor", "jpeg", "webp", "raw"]),
           default="tensor", show_default="tensor; jpeg with --sink webdataset or --store resized",
           help="How images are stored: decoded pixels (uint8 HxWx3 tensors) or re-encoded "
           "JPEG/WebP without any metadata; raw: --store resized's uncompressed pixels, each "
           "image its own size (a binary PPM, read by any image library)."),
    option("--store", group=OUTPUT, type=click.Choice(["tensor", "resized", "original"]),
           default="tensor",
           help="tensor: every image SIZE x SIZE by --mode (pixels, or --image-format "
           "jpeg/webp); resized: each keeps its aspect, shorter side --short-side and/or "
           "longer side at most --max-side, never upscaled, re-encoded (jpeg unless "
           "--image-format webp), for crops at training time; original: the source bytes, "
           "metadata removed without re-encoding (pixels identical)."),
    option("--short-side", group=OUTPUT, type=POSITIVE, default=None, show_default="none",
           help="--store resized: the shorter side of each stored image."),
    option("--max-side", group=OUTPUT, type=POSITIVE, default=None, show_default="none",
           help="--store resized: the longest side allowed (FFCV's max_resolution)."),
    option("--subsampling", group=OUTPUT, type=click.Choice(["420", "444"]), default="420",
           help="JPEG chroma subsampling of re-encoded images (444 keeps full colour "
           "resolution, ~1.3x the bytes)."),
    option("--quality", group=OUTPUT, type=click.IntRange(1, 100), default=90,
           help="JPEG/WebP quality (only with --image-format jpeg or webp)."),
    option("--records-per-shard", group=OUTPUT, type=POSITIVE, default=10_000,
           help="Records per output shard."),
    option("--row-group-size", group=OUTPUT, type=POSITIVE, default=1_000,
           help="Rows per Parquet row group (only with --sink parquet)."),
    option("--no-report", group=OUTPUT, is_flag=True, help="Do not write report.html."),
    option("--hf-datasets/--no-hf-datasets", group=OUTPUT, default=True,
           help="Shards in the layout Hugging Face datasets loads (images as Image, pixels "
           "as nested fixed-size lists, labels as ClassLabel); --no-hf-datasets writes "
           "Arrow-canonical types (arrow.fixed_shape_tensor pixels, binary images)."),
    option("--size", group=IMAGES, type=POSITIVE, default=224,
           help="Output side in pixels (square)."),
    option("--mode", group=IMAGES, type=click.Choice(MODES), default="center_crop",
           help="How an image becomes SIZE x SIZE: crop the centre, resize (aspect not kept), "
           "letterbox, or a random resized crop."),
    option("--on-damaged", group=IMAGES, type=click.Choice(["keep", "drop"]), default="keep",
           help="Images that decode with warnings (corrupt data, stray bytes between "
           "markers): keep them, their warnings column saying what, or drop them as damaged. "
           "Truncated and undecodable files are always dropped."),
    option("--drop-if", group=CONSENT, multiple=True, metavar="COLUMN=VALUE[:REASON]",
           show_default="is_public=false:not_public, opt_out=true:opt_out",
           help="Consent rule, repeatable: drop a record whose metadata COLUMN is VALUE "
           "(checked before its image is read)."),
    option("--opt-out-list", group=CONSENT, type=click.Path(), default=None, show_default="none",
           help="Takedown list: a file of hex hashes to remove (xxh3-128: 32 digits, PDQ: 64)."),
    option("--opt-out-radius", group=CONSENT, type=RADIUS, default=31,
           help="PDQ Hamming radius of an opt-out match (only with --opt-out-list)."),
    option("--dedup-radius", group=DEDUP, type=RADIUS, default=31,
           help="PDQ Hamming radius of a near-duplicate (0-256 bits)."),
    option("--min-quality", group=DEDUP, type=NON_NEGATIVE, default=50,
           help="PDQ quality below which an image is not matched as a near-duplicate."),
    option("--no-dedup", group=DEDUP, is_flag=True,
           help="Skip near-duplicate removal (exact copies are still dropped)."),
    option("--eval", "eval_source", group=DEDUP, type=click.Path(), default=None,
           show_default="none", help="Evaluation set to check for leaks (any source kind)."),
    option("--eval-radius", group=DEDUP, type=RADIUS, default=31,
           help="PDQ Hamming radius of an eval-set leak (only with --eval)."),
    option("--top-k", group=VOCAB, type=POSITIVE, default=None, show_default="every tag",
           help="Vocabulary size: the K tags on the most images."),
    option("--min-count", group=VOCAB, type=POSITIVE, default=1,
           help="Images a tag needs to enter the vocabulary."),
    option("--keep-unlabeled", group=VOCAB, is_flag=True,
           help="Write records without any vocabulary label too (dropped as no_label by default)."),
    option("--vocabulary", group=VOCAB, type=click.Path(exists=True, dir_okay=False),
           default=None, show_default="built from the corpus",
           help="Label with this vocab.json (from fastprep vocab or an earlier run) instead of "
           "building one."),
    option("--single-pass", group=VOCAB, is_flag=True,
           help="With --vocabulary: read, decide and write each batch as it comes (no pixels "
           "staged; the first copy of duplicates is kept)."),
    *privacy_cli.PREP_OPTIONS,
    option("--engine", group=ENGINE, type=click.Choice(["local", "ray", "spark"]),
           default="local", help="Where the job runs."),
    _THREADS,
    option("--ray-address", group=ENGINE, default=None, show_default="start a local cluster",
           help="ray: the cluster to join (e.g. auto)."),
    option("--num-cpus", group=ENGINE, type=POSITIVE, default=None, show_default="1",
           help="ray: CPUs per task."),
    option("--concurrency", group=ENGINE, type=POSITIVE, default=None,
           show_default="what the cluster allows", help="ray: tasks in flight."),
    option("--spark-master", group=ENGINE, default=None,
           show_default="the active session or local[*]", help="spark: master URL."),
    option("--resume", group=RUN, is_flag=True,
           help="Continue an interrupted run in --out (same settings and source)."),
    option("--overwrite", group=RUN, is_flag=True, help="Replace the run already in --out."),
    option("--allow-empty", group=RUN, is_flag=True,
           help="Exit 0 even when nothing is written or the source cannot be read."),
    _QUIET,
]  # fmt: skip


# ---------------------------------------------------------------------- checks


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user set ``name`` (command line or environment)."""
    return ctx.get_parameter_source(name) in (
        ParameterSource.COMMANDLINE,
        ParameterSource.ENVIRONMENT,
    )


def _refuse_inapplicable(ctx: click.Context, p: dict[str, Any], source: str) -> None:
    """Options that would be ignored are refused, with what they apply to."""
    from fastprep.pipeline.sources import source_kind

    for name, (flag, owner) in _ENGINE_FLAGS.items():
        if p.get(name) is not None and owner != p["engine"]:
            raise CommandError(f"{flag} is not available with --engine {p['engine']}")
    if p["sink"] == "webdataset" and p["image_format"] == "tensor" and _given(ctx, "image_format"):
        raise CommandError(
            "--image-format tensor is not available with --sink webdataset: tar shards hold "
            "encoded images (use --image-format jpeg or webp)"
        )
    if p["store"] != "resized":
        for name, flag in (("short_side", "--short-side"), ("max_side", "--max-side")):
            if _given(ctx, name):
                raise CommandError(f"{flag} applies to --store resized")
    elif p["short_side"] is None and p["max_side"] is None:
        raise CommandError("--store resized needs --short-side and/or --max-side")
    if p["store"] == "original":
        for name, flag in (("quality", "--quality"), ("image_format", "--image-format"),
                           ("subsampling", "--subsampling")):  # fmt: skip
            if _given(ctx, name):
                raise CommandError(f"{flag} does not apply to --store original (no re-encoding)")
    tensor = p["image_format"] == "tensor" and p["sink"] != "webdataset" and p["store"] == "tensor"
    if tensor and _given(ctx, "quality"):
        raise CommandError("--quality applies to --image-format jpeg or webp, not tensor")
    if p["sink"] != "parquet" and _given(ctx, "row_group_size"):
        raise CommandError(f"--row-group-size applies to --sink parquet, not {p['sink']}")
    if p["eval_source"] is None and _given(ctx, "eval_radius"):
        raise CommandError("--eval-radius needs --eval (an evaluation set)")
    if p["opt_out_list"] is None and _given(ctx, "opt_out_radius"):
        raise CommandError("--opt-out-radius needs --opt-out-list")
    if p["vocabulary"] is not None:
        for name, flag in (("top_k", "--top-k"), ("min_count", "--min-count")):
            if _given(ctx, name):
                raise CommandError(f"{flag} shapes a built vocabulary, not a given --vocabulary")
    elif p["single_pass"]:
        raise CommandError("--single-pass needs --vocabulary (building one needs every count)")
    if p["no_dedup"]:
        for name, flag in (("dedup_radius", "--dedup-radius"), ("min_quality", "--min-quality")):
            if _given(ctx, name):
                raise CommandError(f"{flag} is not available with --no-dedup")
    _refuse_columns(ctx, source_kind(source))


def _refuse_columns(ctx: click.Context, kind: str) -> None:
    if kind == "parquet":
        return
    for name in ("image_column", "caption_column", "key_column"):
        if _given(ctx, name):
            flag = "--" + name.replace("_", "-")
            raise CommandError(f"{flag} applies to Parquet sources, not a {kind} source")


def _settings(p: dict[str, Any]):
    """The job's settings from the options (``PrepSettings.from_cli``)."""
    from fastprep.pipeline import PrepSettings

    args = argparse.Namespace(**{k: v for k, v in p.items() if k != "eval_source"})
    args.eval = p["eval_source"]
    settings = PrepSettings.from_cli(args, read_hash_list(p["opt_out_list"]))
    return settings.replace(**privacy_cli.settings_changes(p))


def _engine(p: dict[str, Any]):
    """The engine ``--engine`` names, configured by its own flags."""
    if p["engine"] == "local":
        from fastprep.pipeline import LocalEngine

        return LocalEngine(num_threads=p["threads"])
    try:
        if p["engine"] == "ray":
            from fastprep.ray import RayEngine

            return RayEngine(
                address=p["ray_address"], num_cpus=p["num_cpus"] or 1, concurrency=p["concurrency"]
            )
        from fastprep.spark import SparkEngine

        return SparkEngine(master=p["spark_master"])
    except ImportError as error:
        raise CommandError(
            f"--engine {p['engine']} needs {p['engine']}: pip install 'fastprep[{p['engine']}]' "
            f"({error})"
        ) from None


def _run_prep(ctx: click.Context, source: str, out: str, p: dict[str, Any], demo: bool):
    """Every check first, then the job."""
    from fastprep.pipeline import prep

    if not demo:
        check_source(source)
    if p["eval_source"] is not None:
        check_source(p["eval_source"], "--eval")
        check_columns(p["eval_source"], "jpg", "caption", "--eval")
    _refuse_inapplicable(ctx, p, source)
    check_columns(source, p["image_column"], p["caption_column"])
    settings = _settings(p)
    if demo:
        settings = settings.replace(eval_source=demo_eval_set())
    overwrite = p["overwrite"] or (demo and not p["resume"])
    check_out_dir(out)
    check_no_run(out, p["resume"], overwrite)
    engine = _engine(p)
    log.info("prep %s -> %s on the %s engine", source, out, p["engine"])
    return prep(
        source,
        out,
        settings,
        engine=engine,
        resume=p["resume"],
        overwrite=overwrite,
        report=not p["no_report"],
        progress=not p["quiet"],
    )


def _print_result(result) -> None:
    manifest = result.manifest
    totals = manifest["totals"]
    click.echo(
        f"fastprep prep: {totals['input']:,} records in, {totals['written']:,} written "
        f"to {len(manifest['outputs'])} shard(s) in {result.out_dir}"
    )
    for reason, count in totals["dropped"].items():
        click.echo(f"  dropped {count:>7,} {reason}")
    rate = manifest.get("records_per_second")
    click.echo(
        f"  vocabulary: {manifest['vocabulary']['size']:,} tags; "
        + (f"{rate:,} records/s" if rate is not None else "")
    )
    click.echo(f"  manifest: {os.path.join(result.out_dir, 'manifest.json')}")
    if result.report:
        click.echo(f"  report:   {result.report}")


# ---------------------------------------------------------------------- commands


@click.group(
    cls=Group,
    help="Prepare hashtag-labelled photo corpora for training: 'demo' runs the whole job on the "
    "bundled sample corpus, 'prep' on yours; 'vocab', 'dedup' and 'bench' run single stages. "
    "Errors are one line with exit status 2; Ctrl-C stops cleanly and --resume continues.",
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True,
                      "max_content_width": 100},
    epilog=examples(
        "fastprep demo",
        "fastprep prep photos/ --out prepared/ --eval eval_photos/",
        "fastprep prep photos/ --help",
        "eval \"$(fastprep completion bash)\"     # shell completion",
    ),
)  # fmt: skip
@click.version_option(_core.__version__, "--version", prog_name="fastprep",
                      message="%(prog)s %(version)s")  # fmt: skip
@click.option("--debug", is_flag=True, envvar="FASTPREP_DEBUG",
              help="Show tracebacks and debug logs (also FASTPREP_DEBUG=1).")  # fmt: skip
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    _STATE["command"] = f"fastprep {ctx.invoked_subcommand}"
    _STATE["debug"] = debug or _STATE["debug"]
    _configure_logging(bool(_STATE["debug"]))


@cli.command(
    short_help="Run the whole prep job on the bundled sample corpus.",
    help="Run the whole prep job on the bundled sample corpus (35 captioned photos with planted "
    "corrupt files, duplicates, private and opted-out records and an eval-set leak).",
    epilog=examples(
        "fastprep demo",
        "fastprep demo --out /tmp/demo --image-format jpeg",
        "fastprep demo --engine ray",
    ),
)
@option("--out", group=OUTPUT, default="fastprep-demo", type=click.Path(),
        help="Output folder (replaced on each run unless --resume).")  # fmt: skip
@apply(_PREP_OPTIONS)
@click.pass_context
def demo(ctx: click.Context, out: str, **p: Any) -> None:
    click.echo(f"fastprep demo: preparing the bundled sample corpus {demo_corpus()}")
    result = _run_prep(ctx, demo_corpus(), out, p, demo=True)
    _print_result(result)
    click.echo(
        "  shards:   " + ", ".join(os.path.join(out, s["file"]) for s in result.manifest["outputs"])
    )


@cli.command(
    short_help="Prepare a corpus: consent, dedup, labels, shards, report.",
    help="Prepare a corpus: consent filtering, decoding and resizing, exact and near-duplicate "
    "removal, eval-set leaks, takedowns, a hashtag vocabulary and labels; writes shards, "
    "dropped.parquet, a manifest and report.html. SOURCE is a folder of images with sidecar "
    ".txt/.json captions, tar shard(s) (a path or a glob), or Parquet (a file or a folder).",
    epilog=examples(
        "fastprep prep photos/ --out prepared/ --eval eval_photos/",
        "fastprep prep 'shards/*.tar' --out prepared/ --sink webdataset",
        "fastprep prep laion/ --out prepared/ --image-column jpg --image-format webp \\",
        "    --quality 85 --top-k 17000 --drop-if is_public=false:not_public \\",
        "    --opt-out-list takedowns.txt",
        "fastprep prep photos/ --out prepared/ --resume          # after Ctrl-C or a crash",
        "fastprep prep corpus/ --out prepared/ --engine ray --ray-address auto --num-cpus 4",
    ),
)
@click.argument("source")
@option("--out", group=OUTPUT, required=True, type=click.Path(),
        help="Output folder (created; must not hold a run unless --resume or --overwrite).")  # fmt: skip
@apply(_PREP_OPTIONS)
@click.pass_context
def prep(ctx: click.Context, source: str, out: str, **p: Any) -> None:
    from fastprep.pipeline.prep import empty_run_problem

    result = _run_prep(ctx, source, out, p, demo=False)
    _print_result(result)
    problem = empty_run_problem(result.manifest)
    if problem and not p["allow_empty"]:
        raise CommandError(f"{problem} (--allow-empty accepts it)")


def _captions(source: str, batch_size: int, options: dict):
    """Caption columns of a source, without decoding images."""
    import pyarrow as pa

    from fastprep.pipeline import open_source

    for batch in open_source(source, batch_size=batch_size, **options):
        yield pa.chunked_array([batch.column("caption")])


@cli.command(
    short_help="Count a source's hashtags and write a vocabulary.",
    help="Count a source's hashtags (captions only, no image decoding) and write a vocabulary.",
    epilog=examples(
        "fastprep vocab photos/ --out vocab.json --top-k 17000",
        "fastprep vocab laion/ --out vocab.json --caption-column text --show 30",
    ),
)
@click.argument("source")
@option("--out", group=OUTPUT, required=True, type=click.Path(),
        help="Vocabulary JSON file to write.")  # fmt: skip
@option("--top-k", group=VOCAB, type=POSITIVE, default=None, show_default="every tag",
        help="Vocabulary size: the K tags on the most images.")  # fmt: skip
@option("--min-count", group=VOCAB, type=POSITIVE, default=1,
        help="Images a tag needs to enter the vocabulary.")  # fmt: skip
@option("--show", group=OUTPUT, type=NON_NEGATIVE, default=10, help="Top tags to print.")
@apply([_BATCH, *_SOURCE_COLUMNS, _THREADS, _QUIET])
@click.pass_context
def vocab(ctx: click.Context, source: str, out: str, **p: Any) -> None:
    from fastprep.hashtags import HashtagCounts, build_vocabulary, save_vocabulary
    from fastprep.pipeline.progress import Progress
    from fastprep.pipeline.sources import count_records, source_kind

    check_source(source)
    _refuse_columns(ctx, source_kind(source))
    check_columns(source, p["image_column"], p["caption_column"])
    check_out_file(out)
    counts = HashtagCounts()
    options = {k: p[k] for k in ("image_column", "caption_column", "key_column")}
    with Progress(enabled=not p["quiet"]) as progress:
        task = progress.task("vocab: counting hashtags", count_records(source))
        for captions in _captions(source, p["batch_size"], options):
            counts.update(captions, None, p["threads"])
            task.update(len(captions))
    vocabulary = build_vocabulary(counts, top_k=p["top_k"], min_count=p["min_count"])
    save_vocabulary(vocabulary, out)
    click.echo(
        f"fastprep vocab: {counts.captions:,} captions, {len(counts):,} distinct tags, "
        f"vocabulary of {len(vocabulary):,} written to {out}"
    )
    for tag, images in list(zip(vocabulary.tags, vocabulary.images))[: p["show"]]:
        click.echo(f"  {images:>9,}  #{tag}")


@cli.command(
    short_help="Find near-duplicate images (PDQ) and eval-set leaks.",
    help="Find near-duplicate images (PDQ) and, with --eval, eval-set leaks; writes "
    "duplicate_pairs.parquet, duplicates.parquet and eval_leaks.parquet.",
    epilog=examples(
        "fastprep dedup photos/ --out dedup/",
        "fastprep dedup photos/ --out dedup/ --eval eval_photos/ --radius 15",
    ),
)
@click.argument("source")
@option("--out", group=OUTPUT, required=True, type=click.Path(),
        help="Folder for the pair, duplicate and leak tables.")  # fmt: skip
@option("--radius", group=DEDUP, type=RADIUS, default=31,
        help="PDQ Hamming radius of a match (0-256 bits).")  # fmt: skip
@option("--eval", "eval_source", group=DEDUP, type=click.Path(), default=None,
        show_default="none", help="Evaluation set to check for leaks.")  # fmt: skip
@apply([_BATCH, _THREADS, _QUIET])
def dedup(source: str, out: str, **p: Any) -> None:
    check_source(source)
    check_columns(source, "jpg", "caption")
    if p["eval_source"] is not None:
        check_source(p["eval_source"], "--eval")
        check_columns(p["eval_source"], "jpg", "caption", "--eval")
    check_out_dir(out)
    _dedup(source, out, p)


def _dedup(source: str, out: str, p: dict[str, Any]) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from fastprep.dedup import deduplicate, leak_report
    from fastprep.images import hash_images
    from fastprep.pipeline import open_source
    from fastprep.pipeline.progress import Progress
    from fastprep.pipeline.sources import count_records

    progress = Progress(enabled=not p["quiet"])

    def hashes_of(path: str, label: str) -> tuple[list, list, list]:
        keys: list[str] = []
        pdq: list[bytes] = []
        errors: list[tuple[str, str]] = []
        task = progress.task(label, count_records(path))
        for batch in open_source(path, batch_size=p["batch_size"]):
            hashed = hash_images(batch.column("image"), hashes=["pdq"], num_threads=p["threads"])
            good = pc.is_null(hashed.column("error")).to_numpy(zero_copy_only=False)
            batch_keys = batch.column("key").to_pylist()
            for key, ok, error in zip(batch_keys, good, hashed.column("error").to_pylist()):
                if not ok:
                    errors.append((key, error))
            keys.extend(k for k, ok in zip(batch_keys, good) if ok)
            pdq.extend(pc.filter(hashed.column("pdq"), pa.array(good)).to_pylist())
            task.update(batch.num_rows)
        task.close()
        return keys, pdq, errors

    with progress:
        keys, pdq, errors = hashes_of(source, "dedup: hashing")
        hashes = pa.array(pdq, pa.binary(32))
        with progress.step("dedup: near-duplicate search"):
            records, pairs = deduplicate(hashes, p["radius"], keys=keys, num_threads=p["threads"])
        eval_keys: list[str] = []
        eval_pdq: list[bytes] = []
        if p["eval_source"] is not None:
            eval_keys, eval_pdq, _ = hashes_of(p["eval_source"], "dedup: hashing eval set")
    pairs = pairs.append_column("key_a", pc.take(pa.array(keys), pairs.column("a")))
    pairs = pairs.append_column("key_b", pc.take(pa.array(keys), pairs.column("b")))
    os.makedirs(out, exist_ok=True)
    pq.write_table(pairs, os.path.join(out, "duplicate_pairs.parquet"))
    pq.write_table(
        pa.table({"key": keys, "duplicate_of": records.column("duplicate_of")}),
        os.path.join(out, "duplicates.parquet"),
    )
    duplicates = int(np.asarray(records.column("is_duplicate")).sum())
    click.echo(
        f"fastprep dedup: {len(keys):,} images hashed ({len(errors)} unreadable), "
        f"{pairs.num_rows:,} pairs within {p['radius']} bits, {duplicates:,} duplicates "
        f"-> {out}"
    )
    for key, error in errors[:10]:
        click.echo(f"  unreadable {key}: {error}")
    if p["eval_source"] is not None:
        leaks = leak_report(
            hashes,
            pa.array(eval_pdq, pa.binary(32)),
            p["radius"],
            train_keys=keys,
            eval_keys=eval_keys,
            num_threads=p["threads"],
        )
        pq.write_table(leaks, os.path.join(out, "eval_leaks.parquet"))
        click.echo(f"  eval-set leaks: {leaks.num_rows}")
        for row in leaks.to_pylist()[:10]:
            click.echo(f"    {row['train_key']} ~ {row['eval_key']} ({row['distance']} bits)")


@cli.command(
    short_help="Decode throughput on the bundled samples or your files.",
    help="Decode images repeatedly and report the throughput (images/s and per core).",
    epilog=examples(
        "fastprep bench",
        "fastprep bench photos/*.jpg --size 256 --mode resize --threads 1 --hash pdq",
    ),
)
@click.argument("images", nargs=-1, type=click.Path())
@option("--size", group=IMAGES, type=POSITIVE, default=224, help="Output side in pixels.")
@option("--mode", group=IMAGES, type=click.Choice(MODES), default="center_crop",
        help="Resize mode.")  # fmt: skip
@option("--filter", "filter_", group=IMAGES, type=click.Choice(FILTERS), default="bilinear",
        help="Resampling filter.")  # fmt: skip
@option("--hash", "hash_", group=IMAGES, multiple=True, show_default="none",
        type=click.Choice(["xxh3", "blake3", "pixels", "ahash", "dhash", "phash", "pdq", "pdq_fast"]),
        help="Also compute this hash (repeatable).")  # fmt: skip
@option("--repeat", group=RUN, type=POSITIVE, default=50, help="Times each image is decoded.")
@apply([_THREADS])
def bench(images: tuple[str, ...], **p: Any) -> None:
    from fastprep.images import decode_images, sample_images

    paths = list(images) or sample_images()
    blobs = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                blobs.append(f.read())
        except OSError as error:
            raise CommandError(f"cannot read {path}: {os_words(error)}") from None
    batch = blobs * p["repeat"]
    options = {
        "size": p["size"],
        "mode": p["mode"],
        "filter": p["filter_"],
        "num_threads": p["threads"],
        "hashes": p["hash_"] or (),
    }
    decode_images(blobs, **options)  # warm up threads and caches
    start = time.perf_counter()
    result = decode_images(batch, **options)
    elapsed = time.perf_counter() - start
    threads = p["threads"] or _core.default_num_threads()
    errors = [e for e in result.column("error").to_pylist() if e is not None]
    click.echo(
        f"fastprep {_core.__version__}: {len(paths)} images x {p['repeat']} "
        f"-> {p['size']}x{p['size']} ({p['mode']}, {p['filter_']})"
        + (f", hashes {', '.join(p['hash_'])}" if p["hash_"] else "")
    )
    rate = len(batch) / elapsed
    click.echo(
        f"decoded {len(batch):,} images in {elapsed:.3f} s on {threads} thread(s): "
        f"{rate:,.0f} images/s, {rate / threads:,.0f} images/s/core"
    )
    if errors:
        click.echo(f"errors: {len(errors)} (first: {errors[0]})")
        click.get_current_context().exit(1)


@cli.command(
    help="Print the shell completion script for SHELL.",
    epilog=examples(
        'eval "$(fastprep completion bash)"        # in ~/.bashrc',
        'eval "$(fastprep completion zsh)"         # in ~/.zshrc',
        "fastprep completion fish > ~/.config/fish/completions/fastprep.fish",
    ),
)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # every choice has a class
    click.echo(completer(cli, {}, "fastprep", "_FASTPREP_COMPLETE").source())


# ---------------------------------------------------------------------- main


_STATE: dict[str, Any] = {"command": "fastprep", "debug": False}


def _configure_logging(debug: bool) -> None:
    """The library logs to ``fastprep.*``; the CLI shows warnings (all with
    ``--debug``) on stderr, as ``fastprep: LEVEL: message``."""
    logger = logging.getLogger("fastprep")
    if not any(getattr(h, "_fastprep_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("fastprep: %(levelname)s: %(message)s"))
        handler._fastprep_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)


def _usage_line(error: click.UsageError) -> str:
    """click's usage error as one line, argparse-style for bad values."""
    if (
        isinstance(error, click.BadParameter)
        and not isinstance(error, click.MissingParameter)
        and error.param is not None
    ):
        name = (
            error.param.opts[0]
            if isinstance(error.param, click.Option)
            else error.param.human_readable_name
        )
        text = f"argument {name}: {error.message}"
    else:
        text = error.format_message()
    command = error.ctx.command_path if error.ctx is not None else "fastprep"
    text = " ".join(text.split()).rstrip(".")
    return f"{command}: error: {text} (see '{command} --help')"


def _error_text(error: BaseException) -> str:
    if isinstance(error, OutputExistsError):
        return (
            str(error)
            .replace("; pass resume=True (--resume)", ": add --resume")
            .replace(" or overwrite=True (--overwrite)", " or --overwrite")
        )
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, OSError) and error.strerror:
        where = f" {error.filename}" if error.filename else ""
        return f"cannot access{where}: {os_words(error)}"
    return " ".join(str(error).split())


def _quiet_broken_pipe() -> int:
    """stdout's reader has gone (``| head``): stop quietly (exit 1, no message),
    as click does when the pipe breaks inside a command."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


privacy_cli.register(cli)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    _STATE.update(command="fastprep", debug=bool(os.environ.get("FASTPREP_DEBUG")))
    try:
        try:
            status = cli.main(args=argv, prog_name="fastprep", standalone_mode=False)
            sys.stdout.flush()
        except click.exceptions.Abort:
            raise KeyboardInterrupt from None
        return status if isinstance(status, int) else 0
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        name = _STATE["command"]
        print(
            f"{name}: interrupted; finished files are intact"
            + ("; rerun with --resume to continue" if name in ("fastprep prep", "fastprep demo")
               else ""),
            file=sys.stderr,
        )  # fmt: skip
        return EXIT_INTERRUPTED
    except click.UsageError as error:
        print(_usage_line(error), file=sys.stderr)
        return EXIT_ERROR
    except click.ClickException as error:
        print(f"{_STATE['command']}: error: {error.format_message()}", file=sys.stderr)
        return EXIT_ERROR
    except CommandError as error:
        if _STATE["debug"]:
            raise
        print(f"{_STATE['command']}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except (FastprepError, OSError, ValueError, KeyError) as error:
        # FileNotFoundError, ResumeMismatchError, bad columns, corrupt files...
        if _STATE["debug"]:
            raise
        print(f"{_STATE['command']}: error: {_error_text(error)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:
        # Whatever else a library raises (e.g. a remote store's connection
        # error): still one line and exit 2, the traceback with --debug.
        if _STATE["debug"]:
            raise
        print(f"{_STATE['command']}: error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ERROR
