"""Deterministic benchmark corpus of real photographs, built into ``benches/.corpus/``.

The source photos are public-domain / CC0 / CC BY images that ship inside two PyPI
wheels, scikit-image and scikit-learn (see ``benches/CORPUS.md`` for each one's
licence). The wheels are fetched with ``pip download`` into a cache folder and
read with :mod:`zipfile`; neither package is installed. From the photos, Pillow
makes two sets of JPEGs with fixed seeds and fixed crops:

* ``imagenet``: 96 files, 500x375 (72) and 375x500 (24), quality 75-95,
  25% progressive, 4:2:0 chroma subsampling, like an ImageNet validation image.
* ``instagram``: 32 files, 1080x1080, quality 85-95, baseline, 4:2:0, like a
  photo served by a social network.

Each file is a different crop (position and scale) of one of the photos, resized
with Lanczos, flipped or not, with light Gaussian grain (fixed seeds) so that
upscaled crops keep the high-frequency content of a real camera photo.

Building is idempotent: ``manifest.json`` records the recipe and each file's
SHA-256; :func:`corpus` rebuilds a set only when a file is missing or differs.
The bytes depend on the Pillow (libjpeg) and numpy versions that built them, so
build once, with the main environment (``benches/run_all.sh`` does).

Usage::

    python benches/corpus.py            # build (or verify) and print a summary
    python benches/corpus.py --force    # rebuild

    from corpus import corpus
    paths = corpus("imagenet")          # list[pathlib.Path], sorted

Environment: ``FASTPREP_BENCH_CORPUS`` moves the corpus folder elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = HERE / ".corpus"

#: Bump when anything below changes what is built.
RECIPE_VERSION = 1

#: Wheels that ship the photos. Pinned, and fetched for one fixed platform tag so
#: that the download does not depend on the interpreter running this script (the
#: photos are identical in every platform's wheel; their SHA-256 is checked below).
WHEELS = {
    "scikit-image": {
        "version": "0.26.0",
        "glob": "scikit_image-0.26.0-*.whl",
    },
    "scikit-learn": {
        "version": "1.9.1",
        "glob": "scikit_learn-1.9.1-*.whl",
    },
}
WHEEL_PLATFORM = [
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--platform",
    "manylinux_2_28_x86_64",
]


class Source(NamedTuple):
    name: str
    wheel: str
    member: str
    sha256: str
    licence: str


#: Colour photographs only (the grayscale and synthetic images in the same folder
#: are left out, and so is motorcycle_left.png, a Middlebury stereo frame whose
#: licence the wheel does not state).
SOURCES = (
    Source(
        "astronaut",
        "scikit-image",
        "skimage/data/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "public domain (NASA)",
    ),
    Source(
        "coffee",
        "scikit-image",
        "skimage/data/coffee.png",
        "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        "CC0 (Rachel Michetti)",
    ),
    Source(
        "chelsea",
        "scikit-image",
        "skimage/data/chelsea.png",
        "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
        "CC0 (Stefan van der Walt)",
    ),
    Source(
        "rocket",
        "scikit-image",
        "skimage/data/rocket.jpg",
        "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
        "public domain (SpaceX)",
    ),
    Source(
        "hubble",
        "scikit-image",
        "skimage/data/hubble_deep_field.jpg",
        "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
        "public domain (NASA)",
    ),
    Source(
        "retina",
        "scikit-image",
        "skimage/data/retina.jpg",
        "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
        "CC0 (Mikael Haggstrom)",
    ),
    Source(
        "china",
        "scikit-learn",
        "sklearn/datasets/images/china.jpg",
        "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29",
        "CC BY 2.0 (danielbuechele on Flickr)",
    ),
    Source(
        "flower",
        "scikit-learn",
        "sklearn/datasets/images/flower.jpg",
        "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638",
        "CC BY 2.0 (vultilion on Flickr)",
    ),
)


class SetSpec(NamedTuple):
    count: int
    min_scale: float  # crop side, as a fraction of the largest crop of that aspect
    quality: tuple  # (low, high), inclusive
    grain: float  # sigma of the Gaussian grain, in 8-bit levels


SETS: dict[str, SetSpec] = {
    "imagenet": SetSpec(count=96, min_scale=0.55, quality=(75, 95), grain=1.5),
    "instagram": SetSpec(count=32, min_scale=0.6, quality=(85, 95), grain=2.5),
}


def _log(message: str) -> None:
    print(f"[corpus] {message}", file=sys.stderr)


def _root(root: os.PathLike | None = None) -> Path:
    if root is not None:
        return Path(root)
    return Path(os.environ.get("FASTPREP_BENCH_CORPUS", DEFAULT_ROOT))


def _wheel(package: str, cache: Path) -> Path:
    spec = WHEELS[package]
    found = sorted(cache.glob(spec["glob"]))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    _log(f"downloading {package}=={spec['version']} (the wheel only, not installed)")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        *WHEEL_PLATFORM,
        "--dest",
        str(cache),
        f"{package}=={spec['version']}",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    found = sorted(cache.glob(spec["glob"]))
    if not found:
        raise RuntimeError(f"pip download left no {spec['glob']} in {cache}")
    return found[0]


def source_photos(cache: Path) -> dict[str, bytes]:
    """The source photos' bytes, by name, checked against their pinned SHA-256."""
    photos = {}
    wheels: dict[str, zipfile.ZipFile] = {}
    try:
        for src in SOURCES:
            if src.wheel not in wheels:
                wheels[src.wheel] = zipfile.ZipFile(_wheel(src.wheel, cache))
            data = wheels[src.wheel].read(src.member)
            digest = hashlib.sha256(data).hexdigest()
            if digest != src.sha256:
                raise RuntimeError(f"{src.member}: sha256 {digest}, expected {src.sha256}")
            photos[src.name] = data
    finally:
        for archive in wheels.values():
            archive.close()
    return photos


def _plan(name: str, index: int) -> dict:
    """The fixed parameters of file ``index`` of set ``name``."""
    spec = SETS[name]
    rng = random.Random(f"fastprep-corpus-{name}-{index}")  # str seeds are stable
    n_src = len(SOURCES)
    source = SOURCES[index % n_src].name
    k = index // n_src  # how many times this source has come round
    if name == "imagenet":
        portrait = k % 4 == 3  # 25% of the files, spread over every source
        progressive = (k + index % n_src) % 4 == 1  # 25%, independent of orientation
        size = (375, 500) if portrait else (500, 375)
    else:
        progressive = False
        size = (1080, 1080)
    return {
        "source": source,
        "size": size,
        "quality": rng.randint(*spec.quality),
        "progressive": progressive,
        "scale": rng.uniform(spec.min_scale, 1.0),
        "x": rng.random(),
        "y": rng.random(),
        "flip": rng.random() < 0.5,
    }


def _render(photo, plan: dict, grain: float, seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    width, height = photo.size
    out_w, out_h = plan["size"]
    aspect = out_w / out_h
    if width / height > aspect:
        crop_h, crop_w = height, height * aspect
    else:
        crop_w, crop_h = width, width / aspect
    crop_w *= plan["scale"]
    crop_h *= plan["scale"]
    left = plan["x"] * (width - crop_w)
    top = plan["y"] * (height - crop_h)
    box = (left, top, left + crop_w, top + crop_h)
    image = photo.resize((out_w, out_h), Image.LANCZOS, box=box)
    if plan["flip"]:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    if grain > 0:
        rng = np.random.default_rng(seed)
        pixels = np.asarray(image, dtype=np.float32)
        luma = rng.standard_normal((out_h, out_w, 1), dtype=np.float32) * grain
        chroma = rng.standard_normal((out_h, out_w, 3), dtype=np.float32) * (grain / 3)
        pixels = np.clip(np.rint(pixels + luma + chroma), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB")
    out = io.BytesIO()
    image.save(
        out,
        format="JPEG",
        quality=plan["quality"],
        subsampling=2,
        progressive=plan["progressive"],
        optimize=False,
    )
    return out.getvalue()


def _file_name(name: str, index: int, plan: dict) -> str:
    kind = "p" if plan["progressive"] else "b"
    w, h = plan["size"]
    return f"{index:03d}_{plan['source']}_{w}x{h}_q{plan['quality']}{kind}.jpg"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_manifest(root: Path) -> dict:
    try:
        return json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def _verify(root: Path, name: str, manifest: dict) -> list[Path] | None:
    """The set's paths if it is complete and matches the manifest, else None."""
    if manifest.get("recipe") != RECIPE_VERSION:
        return None
    files = manifest.get("sets", {}).get(name)
    if not files or len(files) != SETS[name].count:
        return None
    paths = []
    for rel, digest in sorted(files.items()):
        path = root / rel
        if not path.is_file() or _sha256(path) != digest:
            return None
        paths.append(path)
    on_disk = sorted((root / name).glob("*.jpg"))
    if on_disk != paths:
        return None
    return paths


def build(name: str, root: os.PathLike | None = None, force: bool = False) -> list[Path]:
    """Build set ``name`` (unless it is already there and intact); return its paths."""
    if name not in SETS:
        raise KeyError(f"unknown corpus {name!r}; have {sorted(SETS)}")
    root = _root(root)
    manifest = _load_manifest(root)
    if not force:
        paths = _verify(root, name, manifest)
        if paths is not None:
            return paths

    from PIL import Image

    _log(f"building {name!r} in {root}")
    photos = {
        key: Image.open(io.BytesIO(data)).convert("RGB")
        for key, data in source_photos(root / "cache").items()
    }
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.jpg"):
        stale.unlink()
    spec = SETS[name]
    files = {}
    for index in range(spec.count):
        plan = _plan(name, index)
        seed = zlib.crc32(f"{name}-{index}".encode())
        data = _render(photos[plan["source"]], plan, spec.grain, seed)
        rel = f"{name}/{_file_name(name, index, plan)}"
        (root / rel).write_bytes(data)
        files[rel] = hashlib.sha256(data).hexdigest()

    import PIL

    manifest = _load_manifest(root)
    if manifest.get("recipe") != RECIPE_VERSION:
        manifest = {"recipe": RECIPE_VERSION, "sets": {}}
    manifest["sets"][name] = files
    manifest.setdefault("built_with", {})[name] = {"pillow": PIL.__version__}
    manifest["sources"] = {
        src.name: {
            "file": src.member,
            "wheel": f"{src.wheel}=={WHEELS[src.wheel]['version']}",
            "sha256": src.sha256,
            "licence": src.licence,
        }
        for src in SOURCES
    }
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    tmp.replace(root / "manifest.json")
    paths = _verify(root, name, manifest)
    if paths is None:
        raise RuntimeError(f"corpus {name!r} failed verification right after building it")
    return paths


def corpus(name: str, root: os.PathLike | None = None) -> list[Path]:
    """Paths of the JPEGs in set ``name`` (``imagenet`` or ``instagram``), sorted.

    Builds the set first if it is missing or incomplete.
    """
    return build(name, root=root)


def image_folder(copies: int = 2, root: os.PathLike | None = None) -> Path:
    """The ``imagenet`` set as an ImageFolder tree for the loader benchmarks.

    Two classes (``a``, ``b``), each holding ``copies`` copies of the 96 photos
    (384 files with the default 2), as hard links (no extra disk) next to the set:
    ``<corpus>/imagefolder``. Needs only Pillow and numpy (to build the set).
    """
    photos = corpus("imagenet", root=root)
    folder = photos[0].parent.parent / "imagefolder"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for copy in range(copies):
            for photo in photos:
                target = folder / label / f"{copy}_{photo.name}"
                if not target.exists():
                    try:
                        os.link(photo, target)
                    except OSError:
                        target.write_bytes(photo.read_bytes())
    marker.touch()
    return folder


def _summary(name: str, paths: list[Path]) -> str:
    sizes = [p.stat().st_size for p in paths]
    progressive = sum(p.stem.endswith("p") for p in paths)
    return (
        f"{name}: {len(paths)} files, {sum(sizes) / 1e6:.1f} MB, "
        f"mean {sum(sizes) / len(sizes) / 1e3:.0f} kB, {progressive} progressive"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help=f"corpus folder (default: $FASTPREP_BENCH_CORPUS or {DEFAULT_ROOT})",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if intact")
    parser.add_argument("sets", nargs="*", default=sorted(SETS), help="sets to build")
    args = parser.parse_args(argv)
    for name in args.sets:
        paths = build(name, root=args.root, force=args.force)
        print(_summary(name, paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
