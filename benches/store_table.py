"""Loaders on the raw ImageFolder and on fastprep's own short-side-256 q90 store.

Reproduces issue 12's table with a store written by fastprep itself:

1. **Store**: ``fastprep.pipeline.prep`` writes ``benches/.corpus/store-s256-q90/``
   (``store="resized", short_side=256, quality=90, dedup_radius=None,
   drop_unlabeled=False, report=False``) from the loader corpus
   (``benches/.corpus/imagefolder``, see ``corpus.image_folder``). Reused while
   its manifest exists and the corpus, the options and this recipe are the same
   (``store-s256-q90.bench.json`` records them); ``--rebuild`` forces it.
2. **Export**: the store's JPEG bytes (column ``jpg``: a Hugging Face Image
   struct ``{bytes, path}`` or plain binary) back into an ImageFolder with the
   same class folders, ``benches/.corpus/imagefolder-s256/<key>.jpg``, so DALI,
   FFCV (its own ``.beton``, ``benches/.corpus/imagefolder-s256.beton``, holding
   those bytes: ``loader_peers.py ffcv-write``), torch + PIL and
   ``fastprep.decode_images`` read exactly the stored bytes.
3. **Runs** ``loader_table.py``'s contenders on both folders, plus
   ``fastprep-store-t{1,2}``: ``fastprep.torch.DataLoader`` reading the prep
   output folder itself (``loader_peers.py fastprep-store --store``); each in its
   own process and venv, pinned with ``taskset`` to 1 or 2 cores, train
   (RandomResizedCrop 224 + flip) and eval (Resize 256 + CenterCrop 224).

Prints one Markdown table, ``loader | raw 1 core | raw 2 cores | store 1 core |
store 2 cores`` (images/s of the median epoch), the store's size (stored JPEG
bytes / source JPEG bytes, bytes per record) and the peak RSS of each
contender's largest process.

Why the store is not written from the folder path: the ImageFolder holds each
of its 96 photos 4 times (2 classes x 2 copies, hard links), and prep always
drops exact byte copies (xxh3-128; ``dedup_radius=None`` turns off only the
near-duplicate search), which would leave 96 of 384 records. So the folder is
given to prep as Arrow record batches with the columns its folder source makes
(``key`` = path without extension, e.g. ``a/0_000_astronaut_500x375_q81b``,
``source``, ``image``, ``caption`` = null) and each image's bytes made unique by
a JPEG comment (COM) segment naming its key, inserted after SOI. A resized
store re-encodes the pixels, so the comment is not in the stored bytes and the
copies of a photo store identical bytes, as they are in the raw folder. The
size ratio uses the untouched source files.

    .venv/bin/python benches/store_table.py                        # both modes, every contender
    .venv/bin/python benches/store_table.py --mode train --cores 1 --epochs 1 --warmup 0 \\
        --only fastprep-store-t1 dali-t1
    .venv/bin/python benches/store_table.py build                  # only the store and its export

Run on an otherwise idle machine: a compile in the background halves the numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loader_table as lt  # noqa: E402  (benches/ is not a package)

#: Bump when anything below changes what is written (the tagging, the export).
RECIPE_VERSION = 1
STORE_NAME = "store-s256-q90"
EXPORT_NAME = "imagefolder-s256"
PREP_OPTIONS = {
    "store": "resized",
    "short_side": 256,
    "quality": 90,
    "dedup_radius": None,
    "drop_unlabeled": False,
    "report": False,
}
EXTENSIONS = (".jpg", ".jpeg", ".JPG", ".JPEG")

#: The prep-store contenders (the others are loader_table.CONTENDERS).
STORE_CONTENDERS = [
    lt.Contender("fastprep-store-t1", "fastprep-store", "torch", 1),
    lt.Contender("fastprep-store-t2", "fastprep-store", "torch", 2),
]

#: Table rows: label, then the contender giving each core count.
ROWS = [
    ("fastprep.decode_images", {1: "fastprep-decode-t1", 2: "fastprep-decode-t2"}),
    ("fastprep.torch.DataLoader, ImageFolder", {1: "fastprep-loader-t1", 2: "fastprep-loader-t2"}),
    ("fastprep.torch.DataLoader, prep store", {1: "fastprep-store-t1", 2: "fastprep-store-t2"}),
    ("NVIDIA DALI CPU (`image_random_crop`)", {1: "dali-t1", 2: "dali-t2"}),
    ("FFCV 1.0.2 (`.beton`, JPEG bytes)", {1: "ffcv-t1", 2: "ffcv-t2"}),
    ("torch DataLoader + PIL, workers = cores", {1: "torch-pil-w1", 2: "torch-pil-w2"}),
    ("torch DataLoader + PIL, in process", {1: "torch-pil-w0"}),
]


# -- building (in the main venv: fastprep and pyarrow) --------------------------------


def _raw_files(raw: Path) -> list[Path]:
    """The ImageFolder's JPEGs: sorted class folders, sorted files (ImageFolder's order)."""
    files = [
        path
        for label in sorted(d for d in raw.iterdir() if d.is_dir())
        for path in sorted(label.iterdir())
        if path.suffix in EXTENSIONS
    ]
    if not files:
        raise SystemExit(f"no JPEGs in an ImageFolder layout under {raw}")
    return files


def _fingerprint(raw: Path, files: list[Path]) -> str:
    """SHA-256 over each file's relative path and bytes, the options and the recipe."""
    digest = hashlib.sha256(json.dumps([RECIPE_VERSION, PREP_OPTIONS]).encode())
    for path in files:
        digest.update(path.relative_to(raw).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _tagged(data: bytes, key: str) -> bytes:
    """``data`` with a COM segment naming ``key`` after SOI: unique bytes, same pixels."""
    if data[:2] != b"\xff\xd8":
        raise ValueError(f"{key} is not a JPEG")
    payload = f"fastprep bench record {key}".encode()
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def _source_batches(raw: Path, files: list[Path], batch_size: int = 128):
    """Record batches as prep's folder source makes them, with tagged images."""
    import pyarrow as pa

    batches = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        rel = [path.relative_to(raw) for path in chunk]
        keys = [r.with_suffix("").as_posix() for r in rel]
        images = [_tagged(path.read_bytes(), key) for path, key in zip(chunk, keys)]
        batches.append(
            pa.record_batch(
                {
                    "key": pa.array(keys, pa.string()),
                    "source": pa.array([r.as_posix() for r in rel], pa.string()),
                    "image": pa.array(images, pa.binary()),
                    "caption": pa.array([None] * len(chunk), pa.string()),
                }
            )
        )
    return batches


def _image_bytes(column) -> list[bytes]:
    """A shard's image column as bytes: Hugging Face Image struct or plain binary."""
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_struct(column.type):
        column = column.field("bytes")
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        raise TypeError(f"image column of type {column.type}, expected binary or struct<bytes>")
    return column.to_pylist()


def store_records(out: Path) -> list[tuple[str, bytes]]:
    """``(key, stored JPEG bytes)`` of every record of a Parquet prep output."""
    import pyarrow.parquet as pq

    manifest = json.loads((out / "manifest.json").read_text())
    records: list[tuple[str, bytes]] = []
    for output in manifest["outputs"]:
        path = out / output["file"]
        if path.suffix != ".parquet":
            raise SystemExit(f"{path}: only Parquet stores are exported (sink='parquet')")
        names = pq.read_schema(path).names
        column = next((c for c in ("jpg", "image", "webp") if c in names), None)
        if column is None:
            raise SystemExit(f"{path}: no image column (jpg) among {names}")
        table = pq.read_table(path, columns=["key", column])
        records += zip(table.column("key").to_pylist(), _image_bytes(table.column(column)))
    return records


def _export(records: list[tuple[str, bytes]], export: Path) -> bool:
    """Write the records as ``<export>/<key>.jpg`` (an ImageFolder); False if already there."""
    digest = hashlib.sha256()
    for key, data in records:
        digest.update(key.encode() + b"\0" + hashlib.sha256(data).digest())
    marker = export / ".complete"  # loader_peers.ffcv_epochs: a newer marker rewrites a beton
    if marker.exists() and marker.read_text().strip() == digest.hexdigest():
        return False
    tmp = export.with_name(export.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for key, data in records:
        if data[:2] != b"\xff\xd8":
            raise SystemExit(f"record {key}: stored bytes are not a JPEG")
        target = tmp / f"{key}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (tmp / ".complete").write_text(digest.hexdigest() + "\n")
    shutil.rmtree(export, ignore_errors=True)
    tmp.rename(export)
    return True


def build(raw: Path, out: Path, export: Path, rebuild: bool = False) -> dict:
    """The store (prep), its ImageFolder export, and their sizes (see the module doc)."""
    import fastprep
    from fastprep.pipeline import prep

    files = _raw_files(raw)
    fingerprint = _fingerprint(raw, files)
    record = out.with_name(out.name + ".bench.json")
    previous = json.loads(record.read_text()) if record.exists() else {}
    reuse = (
        not rebuild
        and (out / "manifest.json").exists()
        and previous.get("fingerprint") == fingerprint
    )
    prep_seconds = previous.get("prep_seconds")
    footprint = previous.get("footprint", {})
    if not reuse:
        with _Footprint(out / "_staging") as watch:
            result = prep(_source_batches(raw, files), out, overwrite=True, **PREP_OPTIONS)
        totals = result.manifest["totals"]
        if totals["written"] != len(files):
            raise SystemExit(f"prep wrote {totals['written']} of {len(files)} records: {totals}")
        prep_seconds = result.manifest.get("seconds")
        footprint = watch.summary(len(files))
        record.write_text(
            json.dumps(
                {"fingerprint": fingerprint, "prep_seconds": prep_seconds, "footprint": footprint}
            )
        )

    records = store_records(out)
    keys = sorted(key for key, _ in records)
    want = sorted(path.relative_to(raw).with_suffix("").as_posix() for path in files)
    if keys != want:
        raise SystemExit(f"{out}: its {len(keys)} keys are not the corpus's {len(want)} files")
    exported = _export(records, export)
    source_bytes = sum(path.stat().st_size for path in files)
    stored_bytes = sum(len(data) for _, data in records)
    shard_bytes = sum(path.stat().st_size for path in out.glob("shard-*"))
    return {
        "raw": str(raw),
        "store": str(out),
        "export": str(export),
        "store_reused": reuse,
        "export_written": exported,
        "prep_seconds": prep_seconds,
        "prep_options": PREP_OPTIONS,
        "fastprep": fastprep.__version__,
        "records": len(records),
        "source_bytes": source_bytes,
        "stored_jpeg_bytes": stored_bytes,
        "store_vs_source": round(stored_bytes / source_bytes, 4),
        "stored_bytes_per_record": round(stored_bytes / len(records)),
        "shard_bytes": shard_bytes,
        "shard_bytes_per_record": round(shard_bytes / len(records)),
        # Peak staging on disk (``_staging``, sampled every 10 ms) and peak
        # RSS of this build process while prep ran (issue 12: staging holds
        # what will be written, <= 1.2x the written bytes).
        **footprint,
        "peak_staging_vs_shards": (
            round(footprint["peak_staging_bytes"] / shard_bytes, 3)
            if footprint.get("peak_staging_bytes") is not None and shard_bytes
            else None
        ),
    }


class _Footprint:
    """Samples a folder's total size on a thread while a block runs; the
    process's peak RSS comes from ``getrusage`` after it."""

    def __init__(self, folder: Path) -> None:
        import threading

        self.folder = folder
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _size(self) -> int:
        import os

        total = 0
        try:
            for root, _, names in os.walk(self.folder):
                for name in names:
                    try:
                        total += os.stat(os.path.join(root, name)).st_size
                    except FileNotFoundError:
                        pass
        except FileNotFoundError:
            pass
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._size())

    def __enter__(self) -> _Footprint:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, records: int) -> dict:
        import resource

        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "peak_staging_bytes": self.peak,
            "peak_staging_bytes_per_record": round(self.peak / records),
            "peak_rss_mb": round(rss_mb, 1),
            "peak_rss_kb_per_record": round(rss_mb * 1024 / records, 1),
        }


# -- driver (any Python: the contenders run in their venvs) ---------------------------


def build_in_main_venv(envs: dict[str, Path], raw: Path, rebuild: bool) -> dict:
    python = envs["main"] / "bin" / "python"
    cmd = [str(python if python.exists() else sys.executable), __file__, "build"]
    cmd += ["--raw", str(raw)] + (["--rebuild"] if rebuild else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"building the store failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ensure_beton(envs: dict[str, Path], corpus: Path, beton: Path) -> None:
    """Write ``beton`` from ``corpus`` unless it is newer than the corpus's marker
    (loader_peers.py would write it too, but inside the contender's process)."""
    marker = corpus / ".complete"
    if beton.exists() and not (marker.exists() and marker.stat().st_mtime > beton.stat().st_mtime):
        return
    python = envs["ffcv"] / "bin" / "python"
    cmd = [str(python), str(lt.RUNNER), "ffcv-write", "--corpus", str(corpus)]
    cmd += ["--beton", str(beton), "--threads", "2"]
    print(f"[store_table] writing {beton}", file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _cell(row: dict | None, value) -> str:
    if row is None:
        return ""
    if row["status"] != "ok":
        return row["status"]
    return value(row)


def tables(rows: dict[tuple[str, str, str], dict], modes: tuple[str, ...]) -> tuple[str, str]:
    """(images/s table, peak RSS table); ``rows`` keyed by (corpus, mode, contender)."""
    head = "| loader | raw 1 core | raw 2 cores | store 1 core | store 2 cores |"
    rule = "| --- | ---: | ---: | ---: | ---: |"
    rate, rss = [head, rule], [head.replace("| loader |", "| loader (peak RSS MB) |"), rule]
    for mode in modes:
        for label, by_cores in ROWS:
            found = [
                rows.get((corpus, mode, by_cores.get(cores, "")))
                for corpus in ("raw", "store")
                for cores in (1, 2)
            ]
            if all(row is None for row in found):
                continue
            if label.endswith("prep store"):  # it reads the store only
                found[0] = found[1] = None
            name = f"{label}, {mode}"
            rate.append(
                f"| {name} | "
                + " | ".join(_cell(r, lambda r: f"{r['images_per_s']:,.0f}") for r in found)
                + " |"
            )
            rss.append(
                f"| {name} | "
                + " | ".join(_cell(r, lambda r: f"{r.get('peak_rss_mb', '?')}") for r in found)
                + " |"
            )
    return "\n".join(rate), "\n".join(rss)


def size_line(info: dict) -> str:
    return (
        f"Store `{Path(info['store']).name}` (fastprep prep store=resized short_side=256 "
        f"quality=90): {info['records']} records; stored JPEG bytes "
        f"{info['stored_jpeg_bytes'] / 1e6:.2f} MB = **{info['store_vs_source']:.3f}x** the "
        f"source JPEGs ({info['source_bytes'] / 1e6:.2f} MB); "
        f"{info['stored_bytes_per_record'] / 1e3:.1f} KB per record "
        f"(Parquet shards {info['shard_bytes_per_record'] / 1e3:.1f} KB per record; source "
        f"{info['source_bytes'] / info['records'] / 1e3:.1f} KB)." + _footprint_line(info)
    )


def _footprint_line(info: dict) -> str:
    if info.get("peak_staging_bytes") is None:
        return " Staging footprint: not measured (store reused from before; --rebuild)."
    return (
        f" While prep ran: peak staging {info['peak_staging_bytes_per_record'] / 1e3:.1f} KB "
        f"per record ({info['peak_staging_vs_shards']:.2f}x the written shards), peak RSS "
        f"{info['peak_rss_mb']:.0f} MB ({info['peak_rss_kb_per_record']:.0f} KB per record)."
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["build"]:
        parser = argparse.ArgumentParser(prog="store_table.py build")
        parser.add_argument("--raw", type=Path, default=None, help="ImageFolder (default: corpus)")
        parser.add_argument("--rebuild", action="store_true")
        args = parser.parse_args(argv[1:])
        if args.raw is None:
            from corpus import image_folder

            args.raw = image_folder()
        raw = args.raw.resolve()
        info = build(raw, raw.parent / STORE_NAME, raw.parent / EXPORT_NAME, args.rebuild)
        print(json.dumps(info))
        return 0

    everyone = [*lt.CONTENDERS, *STORE_CONTENDERS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("train", "eval", "both"), default="both")
    parser.add_argument("--cores", type=int, nargs="+", choices=(1, 2), default=[1, 2])
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per contender")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs first")
    parser.add_argument("--only", nargs="+", default=None, help="contender names (--list)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per contender")
    parser.add_argument("--no-pin", action="store_true", help="no taskset")
    parser.add_argument("--rebuild", action="store_true", help="re-run prep and the export")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here too")
    parser.add_argument("--list", action="store_true", help="list contenders and exit")
    args = parser.parse_args(argv)

    envs = lt.venvs()
    if args.list:
        for c in everyone:
            reason = lt.missing(c, envs)
            print(f"{c.name:22} {envs[c.venv]}  {'ok' if reason is None else reason}")
        return 0
    chosen = [c for c in everyone if c.cores in args.cores]
    if args.only:
        unknown = set(args.only) - {c.name for c in everyone}
        if unknown:
            parser.error(f"unknown contenders: {sorted(unknown)}")
        chosen = [c for c in chosen if c.name in args.only]
    folder = [c for c in chosen if c.library != "fastprep-store"]

    raw = lt.image_folder(envs)
    info = build_in_main_venv(envs, raw, args.rebuild)
    store, export = Path(info["store"]), Path(info["export"])
    print(f"[store_table] {size_line(info)}", file=sys.stderr)
    betons = {
        "raw": raw.parent / f"{raw.name}.beton",
        "store": export.parent / f"{export.name}.beton",
    }
    if any(c.library == "ffcv" and lt.missing(c, envs) is None for c in folder):
        ensure_beton(envs, raw, betons["raw"])
        ensure_beton(envs, export, betons["store"])

    modes = ("train", "eval") if args.mode == "both" else (args.mode,)
    rows = lt.run_contenders(
        folder, envs, raw, args, modes, beton=betons["raw"], tag="store_table raw"
    )
    results = {("raw", r["mode"], r["contender"]): r for r in rows}
    rows = lt.run_contenders(
        chosen,
        envs,
        export,
        args,
        modes,
        beton=betons["store"],
        store=store,
        tag="store_table store",
    )
    results.update({("store", r["mode"], r["contender"]): r for r in rows})

    cpu = lt.platform_cpu()
    rate, rss = tables(results, modes)
    print(
        f"\nLoader images/s ({cpu}; taskset-pinned; batch 64 uint8 224x224; train: "
        f"RandomResizedCrop 224 + flip, eval: Resize 256 + CenterCrop 224; median of "
        f"{args.epochs} epochs after {args.warmup} warm-up). raw: `{raw}`; store: the "
        f"prep store `{store}`, exported to `{export}` for the other loaders.\n"
    )
    print(rate)
    print(f"\n{size_line(info)}\n")
    print(rss)
    problems = [
        f"- {corpus} {mode} {name}: {row['status']}: {row['reason']}"
        for (corpus, mode, name), row in results.items()
        if row["status"] != "ok"
    ]
    if problems:
        print("\nNot run:\n" + "\n".join(problems))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        flat = [{"corpus": key[0], **row} for key, row in results.items()]
        args.json.write_text(json.dumps({"cpu": cpu, "store": info, "rows": flat}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
