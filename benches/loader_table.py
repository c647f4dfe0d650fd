"""Loader benchmark across libraries and virtual environments: a Markdown table.

Runs ``benches/loader_peers.py`` once per contender, each in a fresh process
in its library's venv, pinned to the core budget with ``taskset`` (1 core:
the first CPU this process may use; 2 cores: the first two), and prints
images/s of the median timed epoch (train: RandomResizedCrop(224) + flip;
eval: Resize(256) + CenterCrop(224); batches of 64 uint8 images, 384 JPEGs).

Contenders and the venvs they run in (``--list`` shows them):

* ``torch-pil-w{0,1,2}``: torch DataLoader + PIL, in ``$VENV_TORCH``
  (default ``.venv-test``, else ``.venv`` if it has torchvision);
* ``fastprep-loader-t{1,2}``: ``fastprep.torch.DataLoader``, in ``$VENV_TORCH``;
* ``fastprep-decode-t{1,2}``: bare ``fastprep.decode_images``, in ``$VENV``
  (default ``.venv``);
* ``dali-t{1,2}``: NVIDIA DALI CPU pipeline, in ``$VENV_DALI`` (``.venv-dali``);
* ``ffcv-t{1,2}``: FFCV 1.0.2, in ``$VENV_FFCV`` (``.venv-ffcv``).

A contender whose venv or library is missing is reported as skipped (with the
set-up command), never estimated. Each row also gives the peak RSS of the
contender's largest process (``os.wait4``'s ``ru_maxrss``: the process itself
or the largest of the children it reaped, e.g. torch's workers; not their sum).
``store_table.py`` runs the same contenders on another folder (and on a
fastprep store) through :func:`run_contenders`. Peers' venvs: ``bash benches/setup_loader_peers.sh``.

    python benches/loader_table.py                    # train, every contender
    python benches/loader_table.py --mode both --epochs 10 --json out.json
    python benches/loader_table.py --only dali-t1 ffcv-t1 fastprep-loader-t1

Run on an otherwise idle machine: a compile in the background halves the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNNER = HERE / "loader_peers.py"


class Contender(NamedTuple):
    name: str
    library: str  # loader_peers.py's library argument
    venv: str  # key into venvs()
    cores: int
    extra: tuple[str, ...] = ()


CONTENDERS = [
    Contender("torch-pil-w0", "torch-pil", "torch", 1, ("--workers", "0")),
    Contender("torch-pil-w1", "torch-pil", "torch", 1, ("--workers", "1")),
    Contender("torch-pil-w2", "torch-pil", "torch", 2, ("--workers", "2")),
    Contender("fastprep-loader-t1", "fastprep-loader", "torch", 1),
    Contender("fastprep-loader-t2", "fastprep-loader", "torch", 2),
    Contender("fastprep-decode-t1", "fastprep-decode", "main", 1),
    Contender("fastprep-decode-t2", "fastprep-decode", "main", 2),
    Contender("dali-t1", "dali", "dali", 1),
    Contender("dali-t2", "dali", "dali", 2),
    Contender("ffcv-t1", "ffcv", "ffcv", 1),
    Contender("ffcv-t2", "ffcv", "ffcv", 2),
]

#: What each library needs to import, and how to get it when it is missing.
PROBES = {
    "torch-pil": ("torchvision", "a venv with torch and torchvision (.venv-test)"),
    "fastprep-loader": ("fastprep.torch", "a venv with fastprep, torch and torchvision"),
    "fastprep-store": ("fastprep.torch", "a venv with fastprep, torch and torchvision"),
    "fastprep-decode": ("fastprep", "scripts/setup.sh (.venv)"),
    "dali": ("nvidia.dali", "bash benches/setup_loader_peers.sh dali"),
    "ffcv": ("ffcv.loader", "bash benches/setup_loader_peers.sh ffcv"),
}


def venvs() -> dict[str, Path]:
    main = Path(os.environ.get("VENV", REPO / ".venv"))
    torch_venv = os.environ.get("VENV_TORCH")
    if torch_venv is None:
        test = REPO / ".venv-test"
        torch_venv = test if (test / "bin" / "python").exists() else main
    return {
        "main": main,
        "torch": Path(torch_venv),
        "dali": Path(os.environ.get("VENV_DALI", REPO / ".venv-dali")),
        "ffcv": Path(os.environ.get("VENV_FFCV", REPO / ".venv-ffcv")),
    }


_probed: dict[tuple[Path, str], str | None] = {}


def missing(contender: Contender, envs: dict[str, Path]) -> str | None:
    """Why the contender cannot run here, or None."""
    venv = envs[contender.venv]
    module, how = PROBES[contender.library]
    python = venv / "bin" / "python"
    if not python.exists():
        return f"no venv at {venv} ({how})"
    key = (venv, module)
    if key not in _probed:
        probe = subprocess.run(
            [str(python), "-c", f"import {module}"], capture_output=True, text=True
        )
        _probed[key] = None
        if probe.returncode != 0:
            last = (probe.stderr.strip().splitlines() or ["?"])[-1]
            _probed[key] = f"{module} does not import in {venv.name}: {last} ({how})"
    return _probed[key]


def pin(cores: int) -> list[str]:
    """``taskset -c`` prefix for the first ``cores`` CPUs this process may use."""
    if shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"):
        return []
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < cores:
        return []
    return ["taskset", "-c", ",".join(str(c) for c in cpus[:cores])]


def image_folder(envs: dict[str, Path]) -> Path:
    """Build (or find) benches/.corpus/imagefolder with the main venv's Pillow."""
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); "
        "from corpus import image_folder; print(image_folder())"
    )
    python = envs["main"] / "bin" / "python"
    out = subprocess.run(
        [str(python if python.exists() else sys.executable), "-c", code],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def run(
    contender: Contender,
    envs,
    corpus: Path,
    args,
    beton: Path | None = None,
    store: Path | None = None,
) -> dict:
    """One contender in its own process; ``beton`` (FFCV's file, default
    ``<corpus>.beton``) and ``store`` (fastprep-store's prep output) are passed
    to the contenders that read them."""
    python = envs[contender.venv] / "bin" / "python"
    prefix = [] if args.no_pin else pin(contender.cores)
    cmd = [
        *prefix,
        str(python),
        str(RUNNER),
        contender.library,
        "--corpus",
        str(corpus),
        "--threads",
        str(contender.cores),
        "--epochs",
        str(args.epochs),
        "--warmup",
        str(args.warmup),
        "--mode",
        args.current_mode,
        *contender.extra,
    ]
    if beton is not None and contender.library == "ffcv":
        cmd += ["--beton", str(beton)]
    if store is not None and contender.library == "fastprep-store":
        cmd += ["--store", str(store)]
    code, stdout, stderr, rss_kb = _run_measured(cmd, args.timeout)
    if code is None:
        return {"status": "failed", "reason": f"timed out after {args.timeout} s"}
    if code != 0:
        tail = (stderr.strip().splitlines() or ["?"])[-1]
        return {"status": "failed", "reason": f"exit {code}: {tail}"}
    result = json.loads(stdout.strip().splitlines()[-1])
    result["status"] = "ok"
    result["pinned"] = " ".join(prefix[1:]) if prefix else "no"
    if rss_kb is not None:
        result["peak_rss_mb"] = round(rss_kb / 1024, 1)
    return result


def _run_measured(cmd: list[str], timeout: float) -> tuple[int | None, str, str, int | None]:
    """``(exit code or None on timeout, stdout, stderr, peak RSS in KiB)``.

    Reaped with ``os.wait4`` so that the child's own resource usage comes back
    (``taskset`` execs the runner: same process). Linux reports ``ru_maxrss``
    in KiB: the child's peak, or that of the largest descendant it reaped.
    """
    if not hasattr(os, "wait4"):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, "", "", None
        return proc.returncode, proc.stdout, proc.stderr, None
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9  # reaped here: Popen must not wait for it
                return None, "", "", None
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read(), usage.ru_maxrss


def table(rows: list[dict]) -> str:
    lines = [
        "| contender | mode | cores | images/s | images/s/core | epoch s (min-max) | peak RSS MB "
        "| layout | version |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for row in rows:
        if row["status"] != "ok":
            lines.append(
                f"| {row['contender']} | {row['mode']} | {row['cores']} | "
                f"{row['status']}: {row['reason']} | | | | | |"
            )
            continue
        seconds = row["epoch_seconds"]
        rate = row["images_per_s"]
        lines.append(
            f"| {row['contender']} | {row['mode']} | {row['cores']} | {rate:.0f} | "
            f"{rate / row['cores']:.0f} | {min(seconds):.3f}-{max(seconds):.3f} | "
            f"{row.get('peak_rss_mb', '')} | {row.get('layout', '')} | {row.get('version', '')} |"
        )
    return "\n".join(lines)


def run_contenders(
    chosen: list[Contender],
    envs: dict[str, Path],
    corpus: Path,
    args,
    modes: tuple[str, ...],
    beton: Path | None = None,
    store: Path | None = None,
    tag: str = "loader_table",
) -> list[dict]:
    """Every chosen contender in every mode on ``corpus``: one row each
    (``status`` ok, failed or skipped). ``args`` needs ``epochs``, ``warmup``,
    ``timeout`` and ``no_pin``; ``current_mode`` is set here."""
    rows = []
    for mode in modes:
        args.current_mode = mode
        for contender in chosen:
            base = {"contender": contender.name, "mode": mode, "cores": contender.cores}
            reason = missing(contender, envs)
            if reason is not None:
                row = {**base, "status": "skipped", "reason": reason}
            else:
                print(f"[{tag}] {contender.name} ({mode})", file=sys.stderr)
                row = {**base, **run(contender, envs, corpus, args, beton=beton, store=store)}
                if row["status"] != "ok":
                    print(f"[{tag}] {contender.name}: {row['reason']}", file=sys.stderr)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("train", "eval", "both"), default="train")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per contender")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs first")
    parser.add_argument("--only", nargs="+", default=None, help="contender names")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per contender")
    parser.add_argument("--no-pin", action="store_true", help="no taskset")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here too")
    parser.add_argument("--list", action="store_true", help="list contenders and exit")
    args = parser.parse_args(argv)

    envs = venvs()
    chosen = CONTENDERS
    if args.only:
        unknown = set(args.only) - {c.name for c in CONTENDERS}
        if unknown:
            parser.error(f"unknown contenders: {sorted(unknown)}")
        chosen = [c for c in CONTENDERS if c.name in args.only]
    if args.list:
        for c in CONTENDERS:
            reason = missing(c, envs)
            print(f"{c.name:22} {envs[c.venv]}  {'ok' if reason is None else reason}")
        return 0

    corpus = image_folder(envs)
    modes = ("train", "eval") if args.mode == "both" else (args.mode,)
    rows = run_contenders(chosen, envs, corpus, args, modes)

    cpu = platform_cpu()
    print(f"\nLoader, {corpus} ({cpu}), batch 64 uint8, median of {args.epochs} epochs\n")
    print(table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu, "rows": rows}, indent=1))
    return 0


def platform_cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
