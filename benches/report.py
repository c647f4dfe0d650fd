"""Markdown table from pytest-benchmark JSON files written by ``benches/test_decode_bench.py``.

Usage::

    python benches/report.py results/main.json results/simd.json [--stat median]

One row per benchmark: task, corpus, library/variant, threads, images/s,
images/s/core and how many times faster fastprep on one thread is than that row
(fastprep's one-thread images/s divided by the row's, for the same task and
corpus; single-thread rows only). Several files merge into one table, e.g. the
main venv's run and the Pillow-SIMD venv's run; a row present twice keeps the
later file's numbers. Standard library only, so any venv can run it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TASKS = {
    "decode": "decode (full size)",
    "crop224": "shorter side 256 + centre crop 224",
    "resize224": "resize to 224x224",
    "floor": "entropy-decoding floor (1/8-scale decode)",
}
CORPORA = {"imagenet": "ImageNet-like 500x375", "instagram": "Instagram-like 1080x1080"}
LIBRARY_ORDER = ["fastprep", "Pillow-SIMD", "Pillow", "OpenCV", "simplejpeg", "torchvision"]
VARIANT_ORDER = ["reduced", "plain", "draft"]


def _order(value: str, order: list) -> tuple:
    return (order.index(value), "") if value in order else (len(order), value)


def load_rows(paths: list[Path], stat: str) -> tuple[list[dict], list[dict]]:
    """``(rows, machine_infos)``: one row per benchmark with extra_info from the suite."""
    rows: dict[tuple, dict] = {}
    machines = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        machines.append(data.get("machine_info", {}))
        for bench in data.get("benchmarks", []):
            info = bench.get("extra_info", {})
            stats = bench.get("stats", {})
            if "images" not in info or stat not in stats or not stats[stat]:
                print(
                    f"report: skipping {bench.get('fullname')}: no images/{stat}", file=sys.stderr
                )
                continue
            threads = int(info.get("threads", 1))
            rate = info["images"] / stats[stat]
            row = {
                "task": info.get("task", bench.get("params", {}).get("task", "?")),
                "corpus": info.get("corpus", bench.get("params", {}).get("corpus_name", "?")),
                "library": info.get("library", bench.get("name", "?")),
                "variant": info.get("variant", ""),
                "label": info.get("label") or bench.get("name", "?"),
                "threads": threads,
                "images": info["images"],
                "rounds": stats.get("rounds"),
                "rate": rate,
                "per_core": rate / threads,
                "source": str(path),
            }
            key = (row["task"], row["corpus"], row["label"], threads)
            if key in rows:
                print(f"report: {key} appears again in {path}; keeping that one", file=sys.stderr)
            rows[key] = row
    ordered = sorted(
        rows.values(),
        key=lambda r: (
            _order(r["task"], list(TASKS)),
            _order(r["corpus"], list(CORPORA)),
            _order(r["library"], LIBRARY_ORDER),
            r["label"],
            _order(r["variant"], VARIANT_ORDER),
            r["threads"],
        ),
    )
    return ordered, machines


def _fastprep_base(rows: list[dict]) -> dict:
    """fastprep's one-thread (reduced-decode) images/s by (task, corpus)."""
    base = {}
    for row in rows:
        if row["library"] == "fastprep" and row["threads"] == 1 and row["variant"] == "reduced":
            base[(row["task"], row["corpus"])] = row["rate"]
    return base


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def markdown(rows: list[dict], stat: str) -> str:
    base = _fastprep_base(rows)
    header = (
        "| Task | Corpus | Library / variant | Threads | Images/s | Images/s/core "
        "| fastprep (1 thread) speed-up |"
    )
    lines = [header, "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        fastprep = base.get((row["task"], row["corpus"]))
        if fastprep is None:
            ratio = "n/a"
        elif row["threads"] != 1:
            ratio = "—"
        else:
            ratio = f"{fastprep / row['rate']:.2f}x"
        lines.append(
            f"| {TASKS.get(row['task'], row['task'])} | {CORPORA.get(row['corpus'], row['corpus'])} "
            f"| {row['label']} | {row['threads']} | {_rate(row['rate'])} "
            f"| {_rate(row['per_core'])} | {ratio} |"
        )
    return "\n".join(lines)


def floor_notes(rows: list[dict]) -> list[str]:
    """Per corpus, fastprep's one-thread crop and resize rates as a fraction
    of its entropy-decoding floor (the ``floor`` row), and the best peer's."""
    base = _fastprep_base(rows)
    notes = []
    for corpus in CORPORA:
        floor = base.get(("floor", corpus))
        if floor is None:
            continue
        parts = []
        for task in ("crop224", "resize224"):
            ours = base.get((task, corpus))
            peers = [r["rate"] for r in rows if r["task"] == task and r["corpus"] == corpus
                     and r["library"] != "fastprep" and r["threads"] == 1]  # fmt: skip
            if ours is None:
                continue
            text = f"{task} {ours / floor:.0%} of the floor"
            if peers:
                text += (
                    f" (best peer {max(peers) / floor:.0%}; fastprep {ours / max(peers):.2f}x it)"
                )
            parts.append(text)
        notes.append(f"{CORPORA[corpus]}: floor {_rate(floor)} images/s; " + "; ".join(parts))
    return notes


def _machine_line(machines: list[dict]) -> str:
    seen = []
    for info in machines:
        cpu = info.get("cpu", {}) if isinstance(info.get("cpu"), dict) else {}
        brand = cpu.get("brand_raw") or info.get("processor") or info.get("machine") or "?"
        cores = cpu.get("count")
        python = info.get("python_version", "?")
        text = f"{brand}" + (f", {cores} logical CPUs" if cores else "") + f", Python {python}"
        if info.get("malloc"):
            text += f", malloc: {info['malloc']}"
        if text not in seen:
            seen.append(text)
    return "; ".join(seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "json", nargs="+", type=Path, help="pytest-benchmark --benchmark-json files"
    )
    parser.add_argument(
        "--stat",
        default="median",
        choices=["median", "min", "mean"],
        help="per-round time to turn into images/s (default: median)",
    )
    parser.add_argument("--no-notes", action="store_true", help="print the table alone")
    args = parser.parse_args(argv)
    paths = [p for p in args.json if p.is_file()]
    for missing in sorted(set(args.json) - set(paths)):
        print(f"report: no such file {missing}", file=sys.stderr)
    if not paths:
        return 1
    rows, machines = load_rows(paths, args.stat)
    if not rows:
        print("report: no benchmark rows with images in extra_info", file=sys.stderr)
        return 1
    print(markdown(rows, args.stat))
    if not args.no_notes:
        print()
        print(
            f"Images/s: images in the set ÷ the {args.stat} time of one round over the whole set, "
            "bytes already in memory. Images/s/core divides by the threads used. "
            "fastprep (1 thread) speed-up: fastprep's one-thread images/s ÷ the row's, same task and "
            "corpus. Peers run on one thread. "
            f"Machine: {_machine_line(machines)}."
        )
        for note in floor_notes(rows):
            print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
