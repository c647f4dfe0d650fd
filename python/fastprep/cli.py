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
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
