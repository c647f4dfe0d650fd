"""The ``fastprep`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time

from fastprep import _core
from fastprep.images import FILTERS, MODES, decode_images, sample_images


def _demo(args: argparse.Namespace) -> int:
    """Decode the bundled sample photos repeatedly and report throughput."""
    paths = args.images or sample_images()
    blobs = []
    for path in paths:
        with open(path, "rb") as f:
            blobs.append(f.read())
    batch = blobs * args.repeat
    options = {
        "size": args.size,
        "mode": args.mode,
        "filter": args.filter,
        "num_threads": args.threads,
    }
    decode_images(blobs, **options)  # warm up threads and caches
    start = time.perf_counter()
    result = decode_images(batch, **options)
    elapsed = time.perf_counter() - start
    threads = args.threads or _core.default_num_threads()
    errors = [e for e in result.column("error").to_pylist() if e is not None]
    print(
        f"fastprep {_core.__version__}: {len(paths)} sample images x {args.repeat} "
        f"-> {args.size}x{args.size} ({args.mode}, {args.filter})"
    )
    for path, fmt, w, h, o in zip(
        paths,
        result.column("format").to_pylist(),
        result.column("source_width").to_pylist(),
        result.column("source_height").to_pylist(),
        result.column("orientation").to_pylist(),
    ):
        print(f"  {os.path.basename(path):20s} {fmt or '-':5s} {w}x{h} orientation={o}")
    rate = len(batch) / elapsed
    print(
        f"decoded {len(batch)} images in {elapsed:.3f} s on {threads} thread(s): "
        f"{rate:,.0f} images/s, {rate / threads:,.0f} images/s/core"
    )
    print(f"pixels: {result.column('pixels').type}, errors: {len(errors)}")
    return 1 if errors else 0


def _prep(args: argparse.Namespace) -> int:
    """Runs the preparation job and prints where its outputs are."""
    from fastprep.pipeline import prep

    if not os.path.exists(args.source) and not any(c in args.source for c in "*?["):
        print(f"fastprep prep: error: no such source: {args.source}", file=sys.stderr)
        return 2
    result = prep(
        args.source,
        args.out,
        size=args.size,
        mode=args.mode,
        records_per_shard=args.records_per_shard,
        dedup_radius=None if args.no_dedup else args.dedup_radius,
        eval_source=args.eval,
        top_k=args.top_k,
        min_count=args.min_count,
        drop_unlabeled=not args.keep_unlabeled,
        image_format=args.image_format,
        jpeg_quality=args.jpeg_quality,
        sink=args.sink,
        num_threads=args.threads,
    )
    totals = result.manifest["totals"]
    print(
        f"fastprep prep: {totals['input']} records in, {totals['written']} written to {result.out_dir}"
    )
    for reason, count in totals["dropped"].items():
        print(f"  dropped {count:>7} {reason}")
    rate = result.manifest["records_per_second"]
    print(f"  {rate} records/s; manifest: {os.path.join(result.out_dir, 'manifest.json')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastprep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="decode the bundled sample photos and print throughput")
    demo.add_argument("images", nargs="*", help="image files (default: the bundled samples)")
    demo.add_argument("--size", type=int, default=224)
    demo.add_argument("--mode", choices=MODES, default="center_crop")
    demo.add_argument("--filter", choices=FILTERS, default="bilinear")
    demo.add_argument("--threads", type=int, default=None)
    demo.add_argument("--repeat", type=int, default=50)
    demo.set_defaults(run=_demo)
    job = sub.add_parser("prep", help="prepare a corpus: dedup, consent, labels, Parquet shards")
    job.add_argument("source", help="folder, tar shard(s) (path or glob), or Parquet dataset")
    job.add_argument("--out", required=True, help="output folder")
    job.add_argument("--size", type=int, default=224)
    job.add_argument("--mode", choices=MODES, default="center_crop")
    job.add_argument("--records-per-shard", type=int, default=10_000)
    job.add_argument("--dedup-radius", type=int, default=31, help="PDQ Hamming radius")
    job.add_argument("--no-dedup", action="store_true")
    job.add_argument("--eval", help="evaluation set to check for leaks (same source kinds)")
    job.add_argument("--top-k", type=int, default=None, help="vocabulary size")
    job.add_argument("--min-count", type=int, default=1)
    job.add_argument("--keep-unlabeled", action="store_true")
    job.add_argument("--image-format", choices=("tensor", "jpeg"), default="tensor")
    job.add_argument("--jpeg-quality", type=int, default=90)
    job.add_argument("--sink", choices=("parquet", "webdataset"), default="parquet")
    job.add_argument("--threads", type=int, default=None)
    job.set_defaults(run=_prep)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
