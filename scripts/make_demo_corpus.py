#!/usr/bin/env python3
# ruff: noqa: RUF001  (full-width hashtag variants in the captions are on purpose)
"""Builds the captioned demo corpus shipped in the package.

Writes ``python/fastprep/sample_data/corpus/`` (a folder source: ``<key>.jpg``
/ ``.png`` / ``.webp`` with a ``<key>.json`` sidecar each) and
``python/fastprep/sample_data/eval/`` (a tiny eval set with one planted leak),
plus their README.md / LICENSES.md, from photos that ship inside public
packages under known licences (public domain, CC0, CC-BY, MIT):

* scikit-image 0.26.0 wheel (``skimage/data``), scikit-learn 1.9.1 wheel
  (``sklearn/datasets/images``), matplotlib 3.11.2 wheel
  (``mpl-data/sample_data``), SciPy 1.9.3 wheel (``scipy/misc``, the last
  release that shipped ``face.dat`` and ``ascent.dat``);
* Debian package ``lomiri-wallpapers-16.04`` 20.04.0-2;
* the EXIF orientation examples already in ``python/fastprep/sample_data``.

Fetch the originals once into a cache folder (default
``/tmp/fastprep-demo-originals``), then run the script::

    python scripts/make_demo_corpus.py --fetch      # pip download + apt-get download
    python scripts/make_demo_corpus.py              # rebuilds both folders

``--fetch`` runs ``pip download --no-deps`` for the four wheels (pinned
versions, forced to the same manylinux/CPython 3.11 builds) and ``apt-get
download lomiri-wallpapers-16.04`` (Debian only). Nothing is installed. Every
original is checked against a pinned SHA-256 before use, and the output is
deterministic for a given Pillow (built with the same libjpeg-turbo / libwebp
/ zlib): the files are written with fixed encoder settings, sorted JSON and no
timestamps. Only Pillow and numpy are needed.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import io
import json
import pickle
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = ROOT / "python" / "fastprep" / "sample_data"
DEFAULT_CACHE = Path("/tmp/fastprep-demo-originals")

LONGEST_SIDE = 400  # pixels, after downscaling (smaller originals are kept as they are)
JPEG_QUALITY = 85

# --------------------------------------------------------------------------
# Archives that hold the originals
# --------------------------------------------------------------------------

# The images inside do not depend on the platform; pinning it makes the same
# files come down everywhere (pip does not widen an explicit --platform).
WHEEL_PLATFORM = [
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux2014_x86_64",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--only-binary=:all:",
]


@dataclass(frozen=True)
class Archive:
    kind: str  # "wheel" or "deb"
    glob: str  # file name pattern in the cache folder
    fetch: tuple  # command that downloads it into the cache folder (cwd)
    label: str  # how the README names it


ARCHIVES = {
    "scikit-image": Archive(
        "wheel",
        "scikit_image-0.26.0-*.whl",
        ("pip", "download", "--no-deps", "scikit-image==0.26.0", *WHEEL_PLATFORM, "-d", "."),
        "scikit-image 0.26.0 wheel (PyPI)",
    ),
    "scikit-learn": Archive(
        "wheel",
        "scikit_learn-1.9.1-*.whl",
        ("pip", "download", "--no-deps", "scikit-learn==1.9.1", *WHEEL_PLATFORM, "-d", "."),
        "scikit-learn 1.9.1 wheel (PyPI)",
    ),
    "matplotlib": Archive(
        "wheel",
        "matplotlib-3.11.2-*.whl",
        ("pip", "download", "--no-deps", "matplotlib==3.11.2", *WHEEL_PLATFORM, "-d", "."),
        "matplotlib 3.11.2 wheel (PyPI)",
    ),
    "scipy": Archive(
        "wheel",
        "scipy-1.9.3-*.whl",
        (
            "pip",
            "download",
            "--no-deps",
            "scipy==1.9.3",
            *WHEEL_PLATFORM,
            "-d",
            ".",
        ),
        "SciPy 1.9.3 wheel (PyPI)",
    ),
    "lomiri": Archive(
        "deb",
        "lomiri-wallpapers-16.04_20.04.0-2_all.deb",
        ("apt-get", "download", "lomiri-wallpapers-16.04=20.04.0-2"),
        "Debian package lomiri-wallpapers-16.04 20.04.0-2",
    ),
    "sample_data": Archive("dir", "", (), "fastprep's own python/fastprep/sample_data"),
}


@dataclass(frozen=True)
class Original:
    archive: str
    member: str
    sha256: str
    author: str
    license: str
    note: str  # where upstream states the licence, credits


LOMIRI_NOTE = (
    "Debian copyright file of lomiri-wallpapers-16.04 (upstream "
    "gitlab.com/ubports/development/core/lomiri-wallpapers, folder 16.04/)"
)
ORIGINALS = {
    "astronaut": Original(
        "scikit-image",
        "skimage/data/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "NASA",
        "public-domain",
        "skimage.data.astronaut: Eileen Collins, NASA Great Images database; "
        "'No known copyright restrictions, released into the public domain.'",
    ),
    "coffee": Original(
        "scikit-image",
        "skimage/data/coffee.png",
        "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        "Rachel Michetti (courtesy of Pikolo Espresso Bar)",
        "CC0-1.0",
        "skimage.data.coffee: 'No copyright restrictions. CC0 by the photographer'",
    ),
    "chelsea": Original(
        "scikit-image",
        "skimage/data/chelsea.png",
        "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
        "Stefan van der Walt",
        "CC0-1.0",
        "skimage.data.chelsea: 'No copyright restrictions. CC0 by the photographer'",
    ),
    "rocket": Original(
        "scikit-image",
        "skimage/data/rocket.jpg",
        "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
        "SpaceX",
        "public-domain",
        "skimage.data.rocket: DSCOVR on Falcon 9, SpaceX Photos on Flickr, "
        "'released in the public domain'",
    ),
    "hubble": Original(
        "scikit-image",
        "skimage/data/hubble_deep_field.jpg",
        "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
        "NASA / ESA (Hubble eXtreme Deep Field)",
        "public-domain",
        "skimage.data.hubble_deep_field: captured by NASA, 'may be freely used in "
        "the public domain'",
    ),
    "camera": Original(
        "scikit-image",
        "skimage/data/camera.png",
        "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
        "Lav Varshney",
        "CC0-1.0",
        "skimage.data.camera: 'No copyright restrictions. CC0 by the photographer'",
    ),
    "brick": Original(
        "scikit-image",
        "skimage/data/brick.png",
        "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
        "CC0Textures (Bricks25)",
        "CC0-1.0",
        "skimage.data.brick: from CC0Textures, 'licensed under the Creative Commons CC0 License'",
    ),
    "grass": Original(
        "scikit-image",
        "skimage/data/grass.png",
        "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
        "linolafett (DeviantArt, Grass-01)",
        "CC0-1.0",
        "skimage.data.grass: 'licensed under the Creative Commons CC0 License'",
    ),
    "gravel": Original(
        "scikit-image",
        "skimage/data/gravel.png",
        "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
        "CC0Textures (Gravel04)",
        "CC0-1.0",
        "skimage.data.gravel: from CC0Textures, 'licensed under the Creative Commons CC0 License'",
    ),
    "clock": Original(
        "scikit-image",
        "skimage/data/clock_motion.png",
        "f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955",
        "Stefan van der Walt",
        "public-domain",
        "skimage.data.clock: 'Released into the public domain by the photographer'",
    ),
    "coins": Original(
        "scikit-image",
        "skimage/data/coins.png",
        "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
        "Brooklyn Museum (Greek coins from Pompeii)",
        "no-known-copyright-restrictions",
        "skimage.data.coins: Brooklyn Museum Open Collection archives, "
        "'No known copyright restrictions.'",
    ),
    "ihc": Original(
        "scikit-image",
        "skimage/data/ihc.png",
        "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
        "Center for Microscopy And Molecular Imaging (CMMI)",
        "no-known-copyright-restrictions",
        "skimage.data.immunohistochemistry: 'No known copyright restrictions.'",
    ),
    "retina": Original(
        "scikit-image",
        "skimage/data/retina.jpg",
        "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
        "Mikael Häggström (Wikimedia Commons, Fundus photograph of normal left eye)",
        "CC0-1.0",
        "skimage.data.retina: 'made available under the Creative Commons CC0 1.0 "
        "Universal Public Domain Dedication'",
    ),
    "china": Original(
        "scikit-learn",
        "sklearn/datasets/images/china.jpg",
        "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29",
        "danielbuechele (Flickr)",
        "CC-BY-2.0",
        "sklearn/datasets/images/README.txt: 'creative commons license' "
        "https://creativecommons.org/licenses/by/2.0/, flickr.com/photos/danielbuechele/6061409035",
    ),
    "grace_hopper": Original(
        "matplotlib",
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
        "U.S. Navy (official portrait of Commodore Grace M. Hopper)",
        "public-domain",
        "Work of the U.S. federal government (U.S. Navy photograph). matplotlib "
        "ships it as sample data without a licence statement of its own",
    ),
    "face": Original(
        "scipy",
        "scipy/misc/face.dat",
        "9d8b0b4d081313e2b485748c770472e5a95ed1738146883d84c7030493e82886",
        "public-domain-image.com (raccoon-procyon-lotor.jpg)",
        "public-domain",
        "scipy.misc.face: 'raccoon-procyon-lotor.jpg at http://www.public-domain-image.com'",
    ),
    "ascent": Original(
        "scipy",
        "scipy/misc/ascent.dat",
        "e8a84939484463ab8051aedc5b40aa262ab33a91d6458a6cd13c6a1cad5a023d",
        "public-domain-image.com (accent-to-the-top.jpg)",
        "public-domain",
        "scipy.misc.ascent: 'derived from accent-to-the-top.jpg at "
        "http://www.public-domain-image.com/people-public-domain-images-pictures/'",
    ),
    "seeding": Original(
        "lomiri",
        "./usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg",
        "a5634d1ab5e41a3568e92d4a894a500c92b891f9ff734e50bd224d6e185a605f",
        "Clemens Engelhardt",
        "CC0-1.0",
        LOMIRI_NOTE,
    ),
    "aitzgorri": Original(
        "lomiri",
        "./usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg",
        "66268e7b48f8854d36a28765fac6e23ec1aee251daa6da1f64715f201020ad36",
        "Aitzol Berasategi",
        "CC-BY-4.0",
        LOMIRI_NOTE,
    ),
    "friends": Original(
        "lomiri",
        "./usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg",
        "cc40e313c74e421edffe3403def413c16878ce14661cce7ec5915baeab35538d",
        "Aitzol Berasategi",
        "CC-BY-4.0",
        LOMIRI_NOTE,
    ),
    "life": Original(
        "lomiri",
        "./usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg",
        "4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05",
        "Aitzol Berasategi",
        "CC-BY-4.0",
        LOMIRI_NOTE,
    ),
    "picos": Original(
        "lomiri",
        "./usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a",
        "Aitzol Berasategi",
        "CC-BY-4.0",
        LOMIRI_NOTE,
    ),
    "sunset": Original(
        "lomiri",
        "./usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg",
        "474dab6a4b9f94dc76c29dfe30e9f5db4af0fd2e33fe5d695f8152b371efca18",
        "Aitzol Berasategi",
        "CC-BY-4.0",
        LOMIRI_NOTE,
    ),
    "fig": Original(
        "lomiri",
        "./usr/share/backgrounds/Picture_0B_by_freespace.jpg",
        "c8c0ab18e48d9e0419fe42881112137f3afafc27dfddc29ec3a6d54c56d225ad",
        'Trevor "Freespace"',
        "CC-BY-4.0",
        LOMIRI_NOTE,
    ),
    "brushes": Original(
        "lomiri",
        "./usr/share/backgrounds/Picture_1A_by_freespace.jpg",
        "89e86af38d04daaef975665dc2127e9fa76f0fd68f4eea105a2d0ae3390b010b",
        'Trevor "Freespace"',
        "CC-BY-4.0",
        LOMIRI_NOTE,
    ),
    "wine": Original(
        "lomiri",
        "./usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg",
        "d2e96e6d4da40dd804b3d0ce295e94de04a2d7d9b6785d42cd9d92ba58bced74",
        "Jakub Mede",
        "CC-BY-4.0",
        LOMIRI_NOTE,
    ),
    "landscape_6": Original(
        "sample_data",
        "landscape_6.jpg",
        "62aa5a8cbd0ad4898821bc55facce06f871b4487d30c24dd4026605d18bc1c1b",
        "Pierre Bouillot (Unsplash); EXIF example by Dave Perrett",
        "MIT",
        "github.com/recurser/exif-orientation-examples (MIT, Copyright (c) 2010 Dave "
        "Perrett), see sample_data/LICENSE and sample_data/README.md",
    ),
    "portrait_5": Original(
        "sample_data",
        "portrait_5.jpg",
        "9e6251d60c16c72a374cc47a8bf81e8fc1dafe43bc196f2df10369f4d6f29fa3",
        "John Salvino (Unsplash); EXIF example by Dave Perrett",
        "MIT",
        "github.com/recurser/exif-orientation-examples (MIT, Copyright (c) 2010 Dave "
        "Perrett), see sample_data/LICENSE and sample_data/README.md",
    ),
}

# --------------------------------------------------------------------------
# The records
# --------------------------------------------------------------------------


@dataclass
class Record:
    key: str
    caption: str
    source: str | None = None  # an ORIGINALS name (None for planted derived files)
    crop: tuple | None = None  # (left, top, right, bottom) in the original's pixels
    ext: str = "jpg"
    is_public: bool = True
    opt_out: bool = False
    planted: str = ""  # "exact_dup", "near_dup", "corrupt", "not_image", "gps", "exif_orientation", "eval_leak"
    of: str | None = None  # the record a planted copy derives from
    expect: str = "written"  # expected outcome in `prep`
    extra: dict = field(default_factory=dict)


TRAIN = [
    Record(
        "astronaut_portrait",
        "Suited up! Official portrait day at the space center 🚀 "
        "#NASA #space #portrait #photooftheday",
        "astronaut",
    ),
    Record(
        "espresso_morning",
        "Morning espresso before work ☕ #coffee #espresso #morning #café #photooftheday",
        "coffee",
    ),
    Record(
        "espresso_morning_repost",
        "Best coffee in town, had to post it again ☕☕ #Coffee #cafe #photooftheday",
        planted="exact_dup",
        of="espresso_morning",
        expect="duplicate_of: espresso_morning",
    ),
    Record(
        "chelsea_cat",
        "Those eyes though 😻 #cat #catsofinstagram #pets #猫 #photooftheday",
        "chelsea",
    ),
    Record(
        "chelsea_cat_reupload",
        "Can't stop posting her #Cat #catsofinstagram #pets",
        planted="near_dup",
        of="chelsea_cat",
        expect="duplicate_of: chelsea_cat",
    ),
    Record(
        "rocket_launchpad",
        "Launch night at the Cape. Go Falcon! #space #SpaceX #launch #nightsky",
        "rocket",
        expect="eval_leak: launch_night (near-copy in the eval set)",
    ),
    Record(
        "hubble_deep_field_a",
        "Thousands of galaxies in a patch of sky the size of a "
        "grain of sand 🌌 #space #astronomy #galaxy #NASA",
        "hubble",
        crop=(0, 0, 400, 400),
    ),
    Record(
        "hubble_deep_field_b",
        "Zooming into the Hubble eXtreme Deep Field #Astronomy #galaxy #universe #space",
        "hubble",
        crop=(600, 0, 1000, 400),
    ),
    Record(
        "hubble_deep_field_c",
        "Every dot is a galaxy. EVERY DOT. #astronomy #nightsky #universe ＃ＳＰＡＣＥ",
        "hubble",
        crop=(0, 472, 400, 872),
        ext="webp",
    ),
    Record(
        "cameraman",
        "Old-school film shoot on the campus lawn #photography #blackandwhite #camera #vintage",
        "camera",
        opt_out=True,
        expect="opt_out",
    ),
    Record(
        "brick_wall",
        "Found the perfect wall for portraits #texture #blackandwhite #architecture",
        "brick",
    ),
    Record("grass_closeup", "Lying in the grass, looking down #nature #texture #summer", "grass"),
    Record(
        "clock_motion",
        "Where did the time go? #blackandwhite #motionblur #photography",
        "clock",
        ext="png",
    ),
    Record(
        "coins_pompeii",
        "Greek coins from Pompeii at the museum today. Tiny, and two thousand years old!",
        "coins",
        expect="no_label (no hashtags)",
    ),
    Record(
        "ihc_slide",
        "Lab day: the staining came out beautifully 🔬 #science #microscopy #lablife",
        "ihc",
        ext="webp",
    ),
    Record(
        "retina_scan",
        "Annual eye check, got a copy of my fundus photo 👁️ #science #medicine",
        "retina",
    ),
    Record(
        "grace_hopper",
        "Amazing Grace: Rear Admiral Grace Hopper, computing pioneer "
        "#history #womenintech #portrait",
        "grace_hopper",
    ),
    Record(
        "raccoon_visitor",
        "Look who showed up in the garden last night 🦝 #raccoon #wildlife #nature #photooftheday",
        "face",
    ),
    Record(
        "dandelion_golden_hour",
        "Golden hour in the meadow ✨ #nature #dandelion #goldenhour #spring #photooftheday",
        "seeding",
        crop=(300, 0, 2700, 2988),
    ),
    Record(
        "dandelion_meadow",
        "Make a wish #Dandelion #spring #nature #naturaleza",
        "seeding",
        crop=(3000, 300, 5312, 2988),
    ),
    Record(
        "aitzgorri_autumn",
        "Autumn colours below Aitzgorri 🍂 #mountains #autumn #hiking #nature #Euskadi #travel",
        "aitzgorri",
    ),
    Record(
        "dogs_window",
        "Waiting for me to come home 🐶🐶 #dogs #pets #cockerspaniel #home",
        "friends",
        is_public=False,
        expect="not_public",
    ),
    Record(
        "forest_stream",
        "Following the stream up the gorge #nature #hiking #waterfall #naturaleza",
        "life",
    ),
    Record(
        "picos_de_europa",
        "Trail day in the Picos de Europa 🥾 #mountains #hiking "
        "#travel #montaña #nature #summer #photooftheday",
        "picos",
    ),
    Record(
        "picos_de_europa_tbt",
        "Throwback to the best hike of the year #Mountains #Montaña #hiking",
        planted="near_dup",
        of="picos_de_europa",
        expect="duplicate_of: picos_de_europa",
    ),
    Record(
        "sunset_summit",
        "Worth every step. Sunset from the summit 🌄 #sunset "
        "#mountains #hiking #goldenhour #photography",
        "sunset",
        planted="gps",
    ),
    Record("fig_bowl", "Fresh figs from the market #food #healthy #foodphotography", "fig"),
    Record(
        "paint_brushes", "Studio mess = happy artist 🎨 #art #painting #photooftheday", "brushes"
    ),
    Record(
        "wine_evening",
        "Friday night in 🍷 #wine #weekend #home",
        "wine",
        crop=(400, 300, 2560, 1900),
        is_public=False,
        expect="not_public",
    ),
    Record(
        "djembe_beanbag",
        "New drum. The neighbours already love it.",
        "wine",
        crop=(0, 1900, 2560, 3837),
        expect="no_label (no hashtags)",
    ),
    Record(
        "summer_palace",
        "Tower of Buddhist Incense, Summer Palace #travel #architecture #Beijing #wanderlust",
        "china",
    ),
    Record(
        "seljalandsfoss",
        "Chasing waterfalls in the south of Iceland #waterfall "
        "#Iceland #travel #nature #photooftheday",
        "landscape_6",
        planted="exif_orientation",
    ),
    Record(
        "seljalandsfoss_behind",
        "Behind the falls 💦 #iceland #waterfall #travel #wanderlust",
        "portrait_5",
        planted="exif_orientation",
    ),
    Record(
        "broken_upload",
        "Hike pics part 2 #hiking #mountains #nature",
        planted="corrupt",
        of="aitzgorri_autumn",
        expect="decode_error (truncated JPEG)",
    ),
    Record(
        "not_an_image",
        "Throwback 📸 #tbt #photooftheday",
        planted="not_image",
        expect="decode_error (an HTML page saved as .jpg)",
    ),
]

EVAL = [
    Record(
        "launch_night",
        "#space #launch",
        planted="eval_leak",
        of="rocket_launchpad",
        expect="matches training record rocket_launchpad",
    ),
    Record("gravel_path", "#texture #gravel", "gravel"),
    Record("stairs_ascent", "#architecture #blackandwhite", "ascent"),
    Record("hubble_deep_field_d", "#astronomy #space", "hubble", crop=(600, 472, 1000, 872)),
]

NOT_AN_IMAGE = (
    b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
    b"<body><h1>Not Found</h1><p>The requested image was not found on this server."
    b"</p></body></html>\n"
)

# A fake position (the demo only needs *some* GPS block to prove stripping).
GPS_EXIF = {
    "Make": "Canon",
    "Model": "Canon EOS 80D",
    "DateTimeOriginal": "2018:10:14 19:02:11",
    "GPSLatitude": ("N", (42.0, 57.0, 41.4)),
    "GPSLongitude": ("W", (2.0, 19.0, 55.2)),
    "GPSAltitude": 1528.0,
}

# --------------------------------------------------------------------------
# Reading the originals
# --------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _deb_member(path: Path, member: str) -> bytes:
    """One file of a .deb (an ar archive holding data.tar.xz)."""
    raw = path.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise ValueError(f"{path} is not a .deb")
    pos = 8
    while pos < len(raw):
        header = raw[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = raw[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                f = tar.extractfile(member)
                if f is None:
                    raise KeyError(member)
                return f.read()
    raise KeyError(f"no data.tar in {path}")


class Originals:
    def __init__(self, cache: Path):
        self.cache = cache
        self._bytes: dict[str, bytes] = {}

    def archive_path(self, name: str) -> Path:
        spec = ARCHIVES[name]
        if spec.kind == "dir":
            return SAMPLE_DATA
        found = sorted(self.cache.glob(spec.glob))
        if not found:
            raise SystemExit(
                f"missing {spec.glob} in {self.cache}: run with --fetch, or download it "
                f"there with: {' '.join(spec.fetch)}"
            )
        return found[0]

    def raw(self, name: str) -> bytes:
        if name not in self._bytes:
            o = ORIGINALS[name]
            path = self.archive_path(o.archive)
            kind = ARCHIVES[o.archive].kind
            if kind == "wheel":
                with zipfile.ZipFile(path) as z:
                    data = z.read(o.member)
            elif kind == "deb":
                data = _deb_member(path, o.member)
            else:
                data = (path / o.member).read_bytes()
            if _sha256(data) != o.sha256:
                raise SystemExit(
                    f"{name}: {o.member} has SHA-256 {_sha256(data)}, expected {o.sha256}"
                )
            self._bytes[name] = data
        return self._bytes[name]

    def image(self, name: str) -> Image.Image:
        data = self.raw(name)
        if name == "face":  # bz2-compressed raw 768x1024x3 uint8
            return Image.fromarray(
                np.frombuffer(bz2.decompress(data), np.uint8).reshape(768, 1024, 3), "RGB"
            )
        if name == "ascent":  # a pickled list of lists: load it without any globals

            class _NoGlobals(pickle.Unpickler):
                def find_class(self, module, name):
                    raise pickle.UnpicklingError("globals are not allowed")

            rows = _NoGlobals(io.BytesIO(data)).load()
            return Image.fromarray(np.array(rows, dtype=np.uint8), "L")
        im = Image.open(io.BytesIO(data))
        im.load()
        return im


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def _downscale(im: Image.Image, longest: int = LONGEST_SIDE) -> Image.Image:
    w, h = im.size
    scale = longest / max(w, h)
    if scale >= 1:
        return im
    return im.resize(
        (max(1, round(w * scale)), max(1, round(h * scale))),
        Image.Resampling.LANCZOS,
        reducing_gap=None,
    )


def _encode(im: Image.Image, ext: str, quality: int = JPEG_QUALITY, exif: bytes = b"") -> bytes:
    out = io.BytesIO()
    if ext == "jpg":
        kwargs = {"quality": quality, "optimize": True, "progressive": False}
        if im.mode == "RGB":
            kwargs["subsampling"] = 2  # 4:2:0
        if exif:
            kwargs["exif"] = exif
        im.save(out, "JPEG", **kwargs)
    elif ext == "png":
        im.save(out, "PNG", optimize=True)
    elif ext == "webp":
        im.save(out, "WEBP", quality=80, method=6, exact=False)
    else:
        raise ValueError(ext)
    return out.getvalue()


def _photo(originals: Originals, r: Record) -> Image.Image:
    im = originals.image(r.source)
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    if r.crop:
        im = im.crop(r.crop)
    return _downscale(im)


def _gps_exif() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = GPS_EXIF["Make"]
    exif[ExifTags.Base.Model] = GPS_EXIF["Model"]
    exif[ExifTags.Base.DateTime] = GPS_EXIF["DateTimeOriginal"]
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = GPS_EXIF["DateTimeOriginal"]
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSVersionID] = b"\x02\x03\x00\x00"
    gps[ExifTags.GPS.GPSLatitudeRef], gps[ExifTags.GPS.GPSLatitude] = GPS_EXIF["GPSLatitude"]
    gps[ExifTags.GPS.GPSLongitudeRef], gps[ExifTags.GPS.GPSLongitude] = GPS_EXIF["GPSLongitude"]
    gps[ExifTags.GPS.GPSAltitudeRef] = b"\x00"
    gps[ExifTags.GPS.GPSAltitude] = GPS_EXIF["GPSAltitude"]
    return exif.tobytes()


def _exif_orientation_copy(originals: Originals, name: str) -> bytes:
    """The stored (un-rotated) pixels scaled to LONGEST_SIDE, EXIF block kept as is."""
    im = originals.image(name)
    exif = im.info["exif"]
    return _encode(_downscale(im.convert("RGB")), "jpg", exif=exif)


def _near_copy(data: bytes, scale: float, quality: int, brightness: float) -> bytes:
    im = Image.open(io.BytesIO(data))
    im.load()
    w, h = im.size
    small = im.resize(
        (round(w * scale), round(h * scale)), Image.Resampling.BICUBIC, reducing_gap=None
    )
    if brightness != 1.0:
        small = ImageEnhance.Brightness(small).enhance(brightness)
    return _encode(small, "jpg", quality=quality)


def build(records: list[Record], originals: Originals, built: dict[str, bytes]) -> dict[str, bytes]:
    """Encodes every record; `built` holds earlier outputs (planted copies refer to them)."""
    files: dict[str, bytes] = {}
    for r in records:
        if r.planted == "exact_dup":
            data = built[r.of]
        elif r.planted == "near_dup":
            data = _near_copy(built[r.of], 0.8, 60, 1.05)
        elif r.planted == "eval_leak":
            data = _near_copy(built[r.of], 0.75, 70, 1.0)
        elif r.planted == "corrupt":
            data = built[r.of][:200]
        elif r.planted == "not_image":
            data = NOT_AN_IMAGE
        elif r.planted == "exif_orientation":
            data = _exif_orientation_copy(originals, r.source)
        elif r.planted == "gps":
            data = _encode(_photo(originals, r), r.ext, exif=_gps_exif())
        else:
            data = _encode(_photo(originals, r), r.ext)
        built[r.key] = data
        files[r.key] = data
    return files


# --------------------------------------------------------------------------
# Sidecars and documentation
# --------------------------------------------------------------------------


def _provenance(r: Record, records: dict[str, Record]) -> tuple[str, str, str, str]:
    """(license, author, origin, how-made) of a record."""
    base = r
    while base.source is None and base.of is not None:
        base = records[base.of]
    if r.planted == "not_image":
        return (
            "Apache-2.0",
            "fastprep contributors",
            "written by scripts/make_demo_corpus.py",
            "an HTML 404 page saved under a .jpg name",
        )
    o = ORIGINALS[base.source]
    origin = f"{ARCHIVES[o.archive].label}: {o.member.lstrip('./')}"
    if base.crop:
        origin += f", crop {base.crop}"
    how = {
        "exact_dup": f"byte-identical copy of {r.of}.jpg",
        "near_dup": f"{r.of}.jpg scaled x0.8 (bicubic), brightness +5%, JPEG quality 60",
        "eval_leak": f"corpus/{r.of}.jpg scaled x0.75 (bicubic), JPEG quality 70",
        "corrupt": f"the first 200 bytes of {r.of}.jpg (truncated upload)",
        "exif_orientation": "stored pixels scaled to 400 px (Lanczos), original EXIF block kept",
        "gps": "scaled to 400 px (Lanczos), EXIF with camera, date and a FAKE GPS position added",
    }.get(r.planted, "")
    if not how:
        how = (f"crop {base.crop}, " if base.crop else "") + (
            f"scaled to at most {LONGEST_SIDE} px on the longest side (Lanczos), "
        )
        how += {"jpg": "JPEG q85", "png": "PNG", "webp": "WebP q80"}[r.ext]
    return o.license, o.author, origin, how


def _sidecar(r: Record, records: dict[str, Record]) -> bytes:
    license_, author, origin, _ = _provenance(r, records)
    meta = {
        "caption": r.caption,
        "is_public": r.is_public,
        "opt_out": r.opt_out,
        "license": license_,
        "author": author,
        "origin": origin,
    }
    return (json.dumps(meta, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


LICENSE_TEXTS = {
    "public-domain": "Public domain (no copyright; see the note per file).",
    "no-known-copyright-restrictions": "No known copyright restrictions, as stated by "
    "scikit-image, which redistributes the image.",
    "CC0-1.0": "Creative Commons CC0 1.0 Universal public domain dedication, "
    "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC-BY-4.0": "Creative Commons Attribution 4.0 International, "
    "https://creativecommons.org/licenses/by/4.0/ . Attribution: the author named per "
    "file. Changes: cropped and/or downscaled and re-encoded as described per file.",
    "CC-BY-2.0": "Creative Commons Attribution 2.0 Generic, "
    "https://creativecommons.org/licenses/by/2.0/ . Attribution: the author named per "
    "file. Changes: downscaled and re-encoded.",
    "MIT": "MIT, Copyright (c) 2010 Dave Perrett; full text below.",
    "Apache-2.0": "fastprep's own licence (see the repository).",
}

MIT_TEXT = (
    (SAMPLE_DATA / "LICENSE").read_text(encoding="utf-8")
    if (SAMPLE_DATA / "LICENSE").exists()
    else ""
)


def _file_name(r: Record) -> str:
    return f"{r.key}.{r.ext}"


def _licenses_md(title: str, records: list[Record], lookup: dict[str, Record]) -> str:
    lines = [
        f"# {title}: licences",
        "",
        "Every image file, where it comes from, who made it and under which licence. "
        "The same licence, author and origin are in each file's `.json` sidecar. "
        "The `.json` and `.md` files and the planted non-image file were written for "
        "fastprep (Apache-2.0, like fastprep).",
        "",
        "| file | licence | author | origin | how it was made |",
        "| --- | --- | --- | --- | --- |",
    ]
    used = set()
    for r in records:
        license_, author, origin, how = _provenance(r, lookup)
        used.add(license_)
        lines.append(f"| `{_file_name(r)}` | {license_} | {author} | {origin} | {how} |")
    lines += ["", "## Upstream licence statements", ""]
    names = []
    for r in records:
        base = r
        while base.source is None and base.of is not None:
            base = lookup[base.of]
        if base.source and base.source not in names:
            names.append(base.source)
    for n in names:
        o = ORIGINALS[n]
        lines.append(f"* `{o.member.lstrip('./')}` ({ARCHIVES[o.archive].label}): {o.note}.")
    lines += ["", "## Licences", ""]
    for lic in sorted(used):
        lines.append(f"* **{lic}**: {LICENSE_TEXTS[lic]}")
    if "MIT" in used and MIT_TEXT:
        lines += [
            "",
            "### MIT licence of the EXIF orientation examples",
            "",
            "```",
            MIT_TEXT.strip(),
            "```",
        ]
    return "\n".join(lines) + "\n"


def _expected_table(records: list[Record]) -> list[str]:
    rows = [
        "| file | public | opt-out | planted | expected in `prep` |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in records:
        rows.append(
            f"| `{_file_name(r)}` | {'yes' if r.is_public else '**no**'} | "
            f"{'**yes**' if r.opt_out else 'no'} | {r.planted or '-'} | {r.expect} |"
        )
    return rows


def _expected_totals() -> dict:
    totals: dict = {}
    for r in TRAIN:
        if r.expect != "written":
            reason = r.expect.split(":")[0].split(" ")[0]
            totals[reason] = totals.get(reason, 0) + 1
    return dict(sorted(totals.items()))


def _readme(files: dict[str, bytes]) -> str:
    n = len(TRAIN)
    dropped = [r for r in TRAIN if r.expect != "written"]
    total = sum(len(b) for b in files.values())
    lines = [
        "# Demo corpus",
        "",
        f"A small captioned photo corpus in the layout of a **folder source**: {n} image "
        "files (`<key>.jpg`, a few `.png` / `.webp`), each with a `<key>.json` sidecar "
        "holding `caption`, `is_public`, `opt_out`, `license`, `author` and `origin` "
        "(the folder source reads `caption` as the caption and turns the other fields "
        "into columns). `fastprep demo` runs the whole preparation pipeline on it, with "
        "`../eval/` as the eval set. Images are downscaled to 400 px on the longest "
        f"side; {total / 1e6:.2f} MB in all.",
        "",
        "Every photo is public domain, CC0, CC-BY or MIT: see `LICENSES.md` for each "
        "file's author, origin and licence. Crops: `hubble_deep_field_a/b/c` (and "
        "`../eval/hubble_deep_field_d`) are the four disjoint 400x400 corners of "
        "scikit-image's 1000x872 Hubble eXtreme Deep Field; `dandelion_golden_hour` and "
        "`dandelion_meadow` are the left (x 300-2700) and right (x 3000-5312) parts of "
        "Clemens Engelhardt's *seeding*; `wine_evening` and `djembe_beanbag` are the top "
        "(y 300-1900) and bottom (y 1900-3837) of Jakub Mede's *Wine*. The crops do not "
        "overlap and are not near-duplicates of each other: with fastprep's PDQ the closest "
        "pair of distinct photos in corpus + eval is 100 bits apart (the match radius is "
        "31), while the planted copies are 0, 12 and 16 bits from their originals and the "
        "eval leak 16. `clock_motion.png` is so blurry that its PDQ quality (34) is under "
        "the default `min_quality` of 50, so it is left out of the near-duplicate search.",
        "",
        "Captions are made-up social-media captions with hashtags reused across posts "
        "(a few tags are frequent, most are rare), including case and Unicode variants "
        "that normalise to one key (`#coffee`/`#Coffee`, `#montaña`/`#Montaña`, "
        "`#space`/`＃ＳＰＡＣＥ`) and ones that stay distinct (`#café` vs `#cafe`), "
        "plus `#猫`.",
        "",
        "## Planted cases",
        "",
        f"{len(dropped)} of the {n} records should be dropped, each for a known reason:",
        "",
        *_expected_table([r for r in TRAIN if r.expect != "written" or r.planted]),
        "",
        "So `prep(corpus, out, eval_source=eval)` with the default settings should report "
        f"`input` {n}, `written` {n - len(dropped)} and `dropped` "
        + json.dumps(_expected_totals())
        + ".",
        "",
        "Two photos keep a non-trivial EXIF orientation (`seljalandsfoss.jpg`: 6, stored "
        "rotated; `seljalandsfoss_behind.jpg`: 5, stored transposed) and "
        "`sunset_summit.jpg` carries EXIF with camera make/model, a date and a **fake** "
        "GPS position (42°57'41\"N 2°19'55\"W, 1528 m), so the demo can show that the "
        "written shards keep none of it. (The two Seljalandsfoss photos still show the "
        "words top/bottom/left/right and the orientation number that the upstream EXIF "
        "examples draw on them.)",
        "",
        "## How it was made",
        "",
        "`scripts/make_demo_corpus.py` builds this folder and `../eval/` from the "
        "originals, deterministically (pinned SHA-256 of every original, fixed encoder "
        "settings):",
        "",
        "```",
        "python scripts/make_demo_corpus.py --fetch   # pip download / apt-get download the originals",
        "python scripts/make_demo_corpus.py           # rebuild corpus/ and eval/",
        "```",
        "",
        "The originals come from the scikit-image 0.26.0, scikit-learn 1.9.1, matplotlib "
        "3.11.2 and SciPy 1.9.3 wheels, the Debian package lomiri-wallpapers-16.04 "
        "20.04.0-2, and fastprep's own `sample_data/` EXIF examples. Nothing here is a "
        "dependency of fastprep.",
    ]
    return "\n".join(lines) + "\n"


def _eval_readme(files: dict[str, bytes]) -> str:
    lines = [
        "# Demo eval set",
        "",
        "Four images in the same folder-source layout as `../corpus/`, used as the eval "
        "set of `fastprep demo`. `launch_night.jpg` is a planted **leak**: a re-encoded, "
        "downscaled (x0.75, JPEG quality 70) copy of the training photo "
        "`corpus/rocket_launchpad.jpg`, so `prep(..., eval_source=...)` must report it "
        "and drop `rocket_launchpad` with reason `eval_leak`. The other three are "
        "unrelated to every training photo.",
        "",
        *_expected_table(EVAL),
        "",
        "Made by `scripts/make_demo_corpus.py` (see `../corpus/README.md`).",
        "",
    ]
    lookup = {r.key: r for r in TRAIN + EVAL}
    lines += ["## Licences of the files", ""]
    lines += _licenses_md("Demo eval set", EVAL, lookup).splitlines()[2:]
    return "\n".join(lines) + "\n"


def write_folder(
    folder: Path, records: list[Record], files: dict[str, bytes], docs: dict[str, str]
) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    lookup = {r.key: r for r in TRAIN + EVAL}
    for r in records:
        (folder / _file_name(r)).write_bytes(files[r.key])
        (folder / f"{r.key}.json").write_bytes(_sidecar(r, lookup))
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")


def fetch(cache: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    for spec in ARCHIVES.values():
        if spec.kind == "dir" or list(cache.glob(spec.glob)):
            continue
        cmd = list(spec.fetch)
        if cmd[0] == "pip":
            cmd = [sys.executable, "-m", *cmd]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=cache, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help="folder with the downloaded wheels and .deb",
    )
    parser.add_argument(
        "--fetch", action="store_true", help="download missing originals into --cache first"
    )
    parser.add_argument(
        "--out", type=Path, default=SAMPLE_DATA, help="where corpus/ and eval/ are written"
    )
    args = parser.parse_args(argv)
    if args.fetch:
        fetch(args.cache)
    originals = Originals(args.cache)
    built: dict[str, bytes] = {}
    train = build(TRAIN, originals, built)
    evals = build(EVAL, originals, built)
    lookup = {r.key: r for r in TRAIN + EVAL}
    write_folder(
        args.out / "corpus",
        TRAIN,
        train,
        {
            "README.md": _readme(train),
            "LICENSES.md": _licenses_md("Demo corpus", TRAIN, lookup),
        },
    )
    write_folder(args.out / "eval", EVAL, evals, {"README.md": _eval_readme(evals)})
    size = sum(len(b) for b in train.values())
    print(f"corpus: {len(train)} images, {size / 1e6:.2f} MB of images -> {args.out / 'corpus'}")
    print(f"eval: {len(evals)} images -> {args.out / 'eval'}")


if __name__ == "__main__":
    main()
