"""The ``fastprep`` command line.

``fastprep demo`` runs the whole preparation job on the captioned sample
corpus shipped in the package; ``fastprep prep SOURCE --out DIR`` runs it on
yours. ``vocab``, ``dedup`` and ``bench`` run single stages. Errors are one
line on stderr with a non-zero exit (``FASTPREP_DEBUG=1`` shows the
traceback); Ctrl-C stops cleanly (every file is
written atomically) and ``--resume`` continues.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fastprep import _core
from fastprep.errors import FastprepError
from fastprep.images import FILTERS, MODES, decode_images, sample_images

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class CommandError(FastprepError):
    """A user-facing error: printed as one line, exit status 2."""


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive = _int_at_least(1, "a positive integer")
_non_negative = _int_at_least(0, "an integer >= 0")


def _quality(text: str) -> int:
    value = _positive(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"quality must be within 1-100, got {text!r}")
    return value


def _radius(text: str) -> int:
    value = _non_negative(text)
    if value > 256:
        raise argparse.ArgumentTypeError(f"a PDQ radius is within 0-256 bits, got {text!r}")
    return value


def demo_corpus() -> str:
    """The captioned sample corpus shipped in the package (a folder source)."""
    return str(Path(__file__).with_name("sample_data") / "corpus")


def demo_eval_set() -> str:
    """The small evaluation set shipped with it (one planted leak)."""
    return str(Path(__file__).with_name("sample_data") / "eval")


def _check_source(path: str) -> None:
    if any(c in path for c in "*?[{") or "://" in path:
        return  # a glob, brace pattern or URL: the source reports when nothing matches
    if not os.path.exists(path):
        raise CommandError(f"no such source: {path}")
    if not os.access(path, os.R_OK):
        raise CommandError(f"cannot read source: {path}")


def _read_hash_list(path: str | None) -> list[str]:
    if path is None:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            return [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]
    except OSError as error:
        raise CommandError(f"cannot read opt-out list {path}: {error.strerror}") from None


def _print_result(result, out=sys.stdout) -> None:
    manifest = result.manifest
    totals = manifest["totals"]
    print(
        f"fastprep prep: {totals['input']:,} records in, {totals['written']:,} written "
        f"to {len(manifest['outputs'])} shard(s) in {result.out_dir}",
        file=out,
    )
    for reason, count in totals["dropped"].items():
        print(f"  dropped {count:>7,} {reason}", file=out)
    print(
        f"  vocabulary: {manifest['vocabulary']['size']:,} tags; "
        f"{manifest['records_per_second']:,} records/s",
        file=out,
    )
    print(f"  manifest: {os.path.join(result.out_dir, 'manifest.json')}", file=out)
    if result.report:
        print(f"  report:   {result.report}", file=out)


def _run_options(args: argparse.Namespace) -> dict:
    """How the job runs (not what it writes)."""
    return {
        "resume": args.resume,
        "overwrite": args.overwrite,
        "report": not args.no_report,
        "progress": not args.quiet,
    }


#: Engine flags: which engine each belongs to (a flag of another engine is an error).
_ENGINE_FLAGS = {
    "threads": ("--threads", "local"),
    "ray_address": ("--ray-address", "ray"),
    "num_cpus": ("--num-cpus", "ray"),
    "concurrency": ("--concurrency", "ray"),
    "spark_master": ("--spark-master", "spark"),
}


def _engine(args: argparse.Namespace):
    """The engine ``--engine`` names, configured by its own flags."""
    for name, (flag, owner) in _ENGINE_FLAGS.items():
        if getattr(args, name, None) is not None and owner != args.engine:
            raise CommandError(f"{flag} is not available with --engine {args.engine}")
    if args.engine == "local":
        from fastprep.pipeline import LocalEngine

        return LocalEngine(num_threads=args.threads)
    try:
        if args.engine == "ray":
            from fastprep.ray import RayEngine

            return RayEngine(
                address=args.ray_address, num_cpus=args.num_cpus or 1, concurrency=args.concurrency
            )
        from fastprep.spark import SparkEngine

        return SparkEngine(master=args.spark_master)
    except ImportError as error:
        raise CommandError(
            f"--engine {args.engine} needs {args.engine}: pip install 'fastprep[{args.engine}]' "
            f"({error})"
        ) from None


def _prep(args: argparse.Namespace) -> int:
    from fastprep.pipeline import PrepSettings, prep
    from fastprep.pipeline.prep import empty_run_problem

    _check_source(args.source)
    if args.eval:
        _check_source(args.eval)
    settings = PrepSettings.from_cli(args, _read_hash_list(args.opt_out_list))
    result = prep(args.source, args.out, settings, engine=_engine(args), **_run_options(args))
    _print_result(result)
    problem = empty_run_problem(result.manifest)
    if problem and not args.allow_empty:
        raise CommandError(f"{problem} (--allow-empty accepts it)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fastprep.pipeline import PrepSettings, prep

    settings = PrepSettings.from_cli(args, _read_hash_list(args.opt_out_list))
    settings = settings.replace(eval_source=demo_eval_set())
    options = _run_options(args) | {"overwrite": not args.resume}
    print(f"fastprep demo: preparing the bundled sample corpus {demo_corpus()}")
    result = prep(demo_corpus(), args.out, settings, engine=_engine(args), **options)
    _print_result(result)
    print(
        "  shards:   "
        + ", ".join(os.path.join(args.out, s["file"]) for s in result.manifest["outputs"])
    )
    return 0


def _captions(source: str, batch_size: int, options: dict):
    """Caption columns of a source, without decoding images."""
    import pyarrow as pa

    from fastprep.pipeline import open_source

    for batch in open_source(source, batch_size=batch_size, **options):
        yield pa.chunked_array([batch.column("caption")])


def _vocab(args: argparse.Namespace) -> int:
    from fastprep.hashtags import HashtagCounts, build_vocabulary, save_vocabulary
    from fastprep.pipeline.progress import Progress

    _check_source(args.source)
    counts = HashtagCounts()
    progress = Progress("vocab", enabled=not args.quiet)
    options = {"image_column": args.image_column, "caption_column": args.caption_column}
    for captions in _captions(args.source, args.batch_size, options):
        counts.update(captions, None, args.threads)
        progress.update(len(captions))
    progress.close()
    vocab = build_vocabulary(counts, top_k=args.top_k, min_count=args.min_count)
    save_vocabulary(vocab, args.out)
    print(
        f"fastprep vocab: {counts.captions:,} captions, {len(counts):,} distinct tags, "
        f"vocabulary of {len(vocab):,} written to {args.out}"
    )
    for tag, images in list(zip(vocab.tags, vocab.images))[: args.show]:
        print(f"  {images:>9,}  #{tag}")
    return 0


def _dedup(args: argparse.Namespace) -> int:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from fastprep.dedup import deduplicate, leak_report
    from fastprep.images import hash_images
    from fastprep.pipeline import open_source
    from fastprep.pipeline.progress import Progress

    def hashes_of(source: str, label: str) -> tuple[list, list, list]:
        keys: list[str] = []
        pdq: list[bytes] = []
        errors: list[tuple[str, str]] = []
        progress = Progress(label, enabled=not args.quiet)
        for batch in open_source(source, batch_size=args.batch_size):
            hashed = hash_images(batch.column("image"), hashes=["pdq"], num_threads=args.threads)
            good = pc.is_null(hashed.column("error")).to_numpy(zero_copy_only=False)
            batch_keys = batch.column("key").to_pylist()
            for key, ok, error in zip(batch_keys, good, hashed.column("error").to_pylist()):
                if not ok:
                    errors.append((key, error))
            keys.extend(k for k, ok in zip(batch_keys, good) if ok)
            pdq.extend(pc.filter(hashed.column("pdq"), pa.array(good)).to_pylist())
            progress.update(batch.num_rows)
        progress.close()
        return keys, pdq, errors

    _check_source(args.source)
    keys, pdq, errors = hashes_of(args.source, "dedup: hashing")
    hashes = pa.array(pdq, pa.binary(32))
    records, pairs = deduplicate(hashes, args.radius, keys=keys, num_threads=args.threads)
    pairs = pairs.append_column("key_a", pc.take(pa.array(keys), pairs.column("a")))
    pairs = pairs.append_column("key_b", pc.take(pa.array(keys), pairs.column("b")))
    os.makedirs(args.out, exist_ok=True)
    pq.write_table(pairs, os.path.join(args.out, "duplicate_pairs.parquet"))
    pq.write_table(
        pa.table({"key": keys, "duplicate_of": records.column("duplicate_of")}),
        os.path.join(args.out, "duplicates.parquet"),
    )
    duplicates = int(np.asarray(records.column("is_duplicate")).sum())
    print(
        f"fastprep dedup: {len(keys):,} images hashed ({len(errors)} unreadable), "
        f"{pairs.num_rows:,} pairs within {args.radius} bits, {duplicates:,} duplicates "
        f"-> {args.out}"
    )
    for key, error in errors[:10]:
        print(f"  unreadable {key}: {error}")
    if args.eval:
        _check_source(args.eval)
        eval_keys, eval_pdq, _ = hashes_of(args.eval, "dedup: hashing eval set")
        leaks = leak_report(
            hashes,
            pa.array(eval_pdq, pa.binary(32)),
            args.radius,
            train_keys=keys,
            eval_keys=eval_keys,
            num_threads=args.threads,
        )
        pq.write_table(leaks, os.path.join(args.out, "eval_leaks.parquet"))
        print(f"  eval-set leaks: {leaks.num_rows}")
        for row in leaks.to_pylist()[:10]:
            print(f"    {row['train_key']} ~ {row['eval_key']} ({row['distance']} bits)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    """Decode images repeatedly and report throughput."""
    paths = args.images or sample_images()
    blobs = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                blobs.append(f.read())
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from None
    batch = blobs * args.repeat
    options = {
        "size": args.size,
        "mode": args.mode,
        "filter": args.filter,
        "num_threads": args.threads,
        "hashes": args.hash or (),
    }
    decode_images(blobs, **options)  # warm up threads and caches
    start = time.perf_counter()
    result = decode_images(batch, **options)
    elapsed = time.perf_counter() - start
    threads = args.threads or _core.default_num_threads()
    errors = [e for e in result.column("error").to_pylist() if e is not None]
    print(
        f"fastprep {_core.__version__}: {len(paths)} images x {args.repeat} "
        f"-> {args.size}x{args.size} ({args.mode}, {args.filter})"
        + (f", hashes {', '.join(args.hash)}" if args.hash else "")
    )
    rate = len(batch) / elapsed
    print(
        f"decoded {len(batch):,} images in {elapsed:.3f} s on {threads} thread(s): "
        f"{rate:,.0f} images/s, {rate / threads:,.0f} images/s/core"
    )
    if errors:
        print(f"errors: {len(errors)} (first: {errors[0]})")
    return 1 if errors else 0


def _add_source_columns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image-column", default="jpg", help="Parquet image column (img2dataset: jpg)"
    )
    parser.add_argument("--caption-column", default="caption", help="Parquet caption column")
    parser.add_argument("--key-column", default="key", help="Parquet key column")
    parser.add_argument("--batch-size", type=_positive, default=256, help="records per batch")


def _add_prep_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=_positive, default=224, help="output side in pixels")
    parser.add_argument("--mode", choices=MODES, default="center_crop")
    parser.add_argument("--records-per-shard", type=_positive, default=10_000)
    parser.add_argument("--row-group-size", type=_positive, default=1_000)
    parser.add_argument("--dedup-radius", type=_radius, default=31, help="PDQ Hamming radius")
    parser.add_argument("--no-dedup", action="store_true", help="skip near-duplicate removal")
    parser.add_argument("--min-quality", type=_non_negative, default=50, help="PDQ quality floor")
    parser.add_argument("--eval", help="evaluation set to check for leaks (any source kind)")
    parser.add_argument("--eval-radius", type=_radius, default=31)
    parser.add_argument(
        "--opt-out-list", help="file of hex hashes to remove (xxh3-128: 32 digits, PDQ: 64)"
    )
    parser.add_argument("--opt-out-radius", type=_radius, default=31)
    parser.add_argument(
        "--drop-if",
        action="append",
        metavar="COLUMN=VALUE[:REASON]",
        help="consent rule, repeatable (default: is_public=false:not_public, opt_out=true:opt_out)",
    )
    parser.add_argument("--top-k", type=_positive, default=None, help="vocabulary size")
    parser.add_argument("--min-count", type=_positive, default=1, help="minimum images per tag")
    parser.add_argument("--keep-unlabeled", action="store_true")
    parser.add_argument("--image-format", choices=("tensor", "jpeg", "webp"), default="tensor")
    parser.add_argument("--quality", type=_quality, default=90, help="JPEG/WebP quality")
    parser.add_argument(
        "--sink",
        choices=("parquet", "arrow", "webdataset"),
        default="parquet",
        help="shard format: Parquet, Arrow IPC (fastest, memory-mapped), WebDataset tar",
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run")
    parser.add_argument(
        "--hf-datasets",
        action="store_true",
        help="shards in the layout Hugging Face datasets loads (Image, Array3D, ClassLabel)",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="exit 0 even when nothing is written or the source cannot be read",
    )
    parser.add_argument("--no-report", action="store_true", help="skip report.html")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    engines = parser.add_argument_group("engine (where the job runs; outputs do not depend on it)")
    engines.add_argument("--engine", choices=("local", "ray", "spark"), default="local")
    engines.add_argument("--threads", type=_positive, default=None, help="local: Rust threads")
    engines.add_argument(
        "--ray-address", default=None, help="ray: cluster to join (default: start a local one)"
    )
    engines.add_argument("--num-cpus", type=_positive, default=None, help="ray: CPUs per task")
    engines.add_argument("--concurrency", type=_positive, default=None, help="ray: tasks in flight")
    engines.add_argument(
        "--spark-master",
        default=None,
        help="spark: master URL (default: active session or local[*])",
    )
    _add_source_columns(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastprep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"fastprep {_core.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the whole job on the bundled sample corpus")
    demo.add_argument("--out", default="fastprep-demo", help="output folder (default: %(default)s)")
    _add_prep_options(demo)
    demo.set_defaults(run=_demo, size=224)

    job = sub.add_parser("prep", help="prepare a corpus: consent, dedup, labels, shards, report")
    job.add_argument("source", help="folder, tar shard(s) (path or glob), or Parquet file/folder")
    job.add_argument("--out", required=True, help="output folder")
    _add_prep_options(job)
    job.set_defaults(run=_prep)

    vocab = sub.add_parser("vocab", help="count a source's hashtags and write a vocabulary")
    vocab.add_argument("source")
    vocab.add_argument("--out", required=True, help="vocabulary JSON file to write")
    vocab.add_argument("--top-k", type=_positive, default=None)
    vocab.add_argument("--min-count", type=_positive, default=1)
    vocab.add_argument("--show", type=_non_negative, default=10, help="top tags to print")
    vocab.add_argument("--threads", type=_positive, default=None)
    vocab.add_argument("--quiet", action="store_true")
    _add_source_columns(vocab)
    vocab.set_defaults(run=_vocab)

    dedup = sub.add_parser("dedup", help="find near-duplicate images (PDQ) and eval-set leaks")
    dedup.add_argument("source")
    dedup.add_argument("--out", required=True, help="folder for duplicate_pairs.parquet etc.")
    dedup.add_argument("--radius", type=_radius, default=31)
    dedup.add_argument("--eval", help="evaluation set to check for leaks")
    dedup.add_argument("--threads", type=_positive, default=None)
    dedup.add_argument("--batch-size", type=_positive, default=256)
    dedup.add_argument("--quiet", action="store_true")
    dedup.set_defaults(run=_dedup)

    bench = sub.add_parser("bench", help="decode throughput on sample photos or your files")
    bench.add_argument("images", nargs="*", help="image files (default: the bundled samples)")
    bench.add_argument("--size", type=_positive, default=224)
    bench.add_argument("--mode", choices=MODES, default="center_crop")
    bench.add_argument("--filter", choices=FILTERS, default="bilinear")
    bench.add_argument("--hash", action="append", help="also compute this hash (repeatable)")
    bench.add_argument("--threads", type=_positive, default=None)
    bench.add_argument("--repeat", type=_positive, default=50)
    bench.set_defaults(run=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    name = f"fastprep {args.command}"
    try:
        return run(args)
    except KeyboardInterrupt:
        print(
            f"\n{name}: interrupted; finished files are intact"
            + ("; rerun with --resume to continue" if args.command in ("prep", "demo") else ""),
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except CommandError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except (FastprepError, OSError, ValueError, KeyError) as error:
        # FileNotFoundError, OutputExistsError, ResumeMismatchError, bad columns...
        if os.environ.get("FASTPREP_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{name}: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
