"""Hash columns (``decode_images(hashes=...)`` / ``hash_images``) and
near-duplicate search, checked against independent references:

* ``xxh3_128`` / ``blake3``: the ``xxhash`` and ``blake3`` packages on the bytes.
* ``pixel_xxh3_128``: ``xxhash`` on Pillow's ``convert("RGB")`` of the displayed
  picture.
* ``ahash`` / ``dhash`` / ``phash``: bit identity with the ``imagehash`` package
  (default sizes) on what Pillow shows (``ImageOps.exif_transpose(Image.open(f))``).
* ``pdq`` / ``pdq_quality`` / ``pdq_dihedral``: the ``pdqhash`` package (Meta's C++
  core) on the same picture, and Meta's published expected values.
* ``find_near_duplicates`` / ``match_hashes`` / ``deduplicate`` / ``leak_report``:
  a numpy brute force, hand-built examples and real photos with planted copies.

The image corpus (``hash_corpus.py``) is generated at test time from the photos in
``tests/fixtures``. Reference packages: ``pip install xxhash blake3 imagehash
pdqhash`` (the ``[test]`` extra).
"""

from __future__ import annotations

import io
import json
import struct
from functools import cache
from pathlib import Path

import fastprep
import numpy as np
import PIL
import pyarrow as pa
import pytest
from hash_corpus import (
    PDQ_DIR,
    PDQ_IMAGES,
    base_photos,
    displayed,
    displayed_rgb,
    encode,
    hash_corpus,
)
from PIL import Image, ImageEnhance, ImageOps

xxhash = pytest.importorskip("xxhash")
blake3 = pytest.importorskip("blake3")
imagehash = pytest.importorskip("imagehash")
pdqhash = pytest.importorskip("pdqhash")

DIHEDRAL = ("orig", "rot90", "rot180", "rot270", "flipx", "flipy", "flipp", "flipm")
PERCEPTUAL = {
    "ahash": imagehash.average_hash,
    "dhash": imagehash.dhash,
    "phash": imagehash.phash,
}


# --------------------------------------------------------------------------- helpers


def pdq_hex(bits) -> str:
    """``pdqhash``'s bit vector as Meta's hex (python-threatexchange's conversion)."""
    return f"{int(''.join(str(int(b)) for b in bits), 2):064x}"


def hamming_hex(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def u64_hex(value: int | None) -> str | None:
    return None if value is None else f"{value:016x}"


def to_words(hashes: list[bytes]) -> np.ndarray:
    """Big-endian hash bytes -> ``[n, words]`` uint64 (for the numpy brute force)."""
    width = len(hashes[0])
    return np.frombuffer(b"".join(hashes), dtype=">u8").astype(np.uint64).reshape(-1, width // 8)


def brute_pairs(words: np.ndarray, radius: int) -> dict[tuple[int, int], int]:
    """All ``a < b`` within ``radius``: ``{(a, b): distance}``, by numpy brute force."""
    out = {}
    n = len(words)
    for start in range(0, n, 512):
        block = words[start : start + 512]
        dist = np.bitwise_count(block[:, None, :] ^ words[None, :, :]).sum(-1)
        for i, j in zip(*np.nonzero(dist <= radius)):
            a = start + int(i)
            if a < j:
                out[(a, int(j))] = int(dist[i, j])
    return out


def brute_query(queries: np.ndarray, reference: np.ndarray, radius: int) -> dict:
    out = {}
    for start in range(0, len(queries), 512):
        block = queries[start : start + 512]
        dist = np.bitwise_count(block[:, None, :] ^ reference[None, :, :]).sum(-1)
        for i, j in zip(*np.nonzero(dist <= radius)):
            out[(start + int(i), int(j))] = int(dist[i, j])
    return out


def table_pairs(table: pa.Table) -> dict[tuple[int, int], int]:
    cols = [table.column(i).to_pylist() for i in range(3)]
    pairs = {(a, b): d for a, b, d in zip(*cols)}
    assert len(pairs) == table.num_rows, "a pair is reported twice"
    return pairs


# --------------------------------------------------------------------------- corpus


@pytest.fixture(scope="module")
def corpus():
    return hash_corpus()


@pytest.fixture(scope="module")
def engine(corpus):
    """fastprep's hashes of every corpus image, one row per case."""
    batch = fastprep.hash_images([c.data for c in corpus], hashes=list(fastprep.HASHES))
    rows = batch.to_pylist()
    errors = [(c.name, r["error"]) for c, r in zip(corpus, rows) if r["error"]]
    assert not errors, f"fastprep could not decode: {errors}"
    return rows


@pytest.fixture(scope="module")
def reference(corpus):
    """What the reference packages compute on what Pillow shows."""
    out = []
    for case in corpus:
        img = displayed(case.data)
        rgb = img.convert("RGB")
        arr = np.asarray(rgb)
        ref = {"mode": img.mode, "size": img.size, "rgb": arr}
        for name, fn in PERCEPTUAL.items():
            ref[name] = str(fn(img))
            ref[name + "_rgb"] = str(fn(rgb))
        bits, quality = pdqhash.compute(arr)
        ref["pdq"] = pdq_hex(bits)
        ref["pdq_quality"] = int(quality)
        if min(img.size) >= 5:  # pdqhash's dihedral path needs the same minimum
            variants, dquality = pdqhash.compute_dihedral(arr)
            ref["pdq_dihedral"] = [pdq_hex(v) for v in variants]
            ref["pdq_dihedral_quality"] = int(dquality)
        out.append(ref)
    return out


def test_corpus_covers_the_cases_that_matter(corpus, engine, reference):
    assert len(corpus) >= 100
    modes = {r["mode"] for r in reference}
    assert {"RGB", "L", "LA", "RGBA", "P", "I;16", "CMYK", "1"} <= modes, modes
    formats = {r["format"] for r in engine}
    assert {"jpeg", "png", "webp", "gif", "bmp"} <= formats, formats
    assert {r["orientation"] for r in engine} >= set(range(1, 9))
    sizes = {r["size"] for r in reference}
    assert {(1, 1), (7, 9), (37, 1001), (64, 64)} <= sizes


# --------------------------------------------------------------------------- exact hashes


def test_byte_hashes_equal_the_python_packages(corpus, engine):
    for case, row in zip(corpus, engine):
        assert row["xxh3_128"] == xxhash.xxh3_128_digest(case.data), case.name
        assert row["blake3"] == blake3.blake3(case.data).digest(), case.name


def test_byte_hashes_of_undecodable_inputs_and_every_input_kind(tmp_path, corpus):
    data = [b"", b"not an image", corpus[0].data[:2000], corpus[5].data, bytes(range(256)) * 999]
    expect = [(xxhash.xxh3_128_digest(d), blake3.blake3(d).digest()) for d in data]
    paths = []
    for i, d in enumerate(data):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(d)
        paths.append(str(path))
    for images in (data, paths, pa.array(data, pa.binary()), pa.array(data, pa.large_binary())):
        batch = fastprep.hash_images(images, hashes=["xxh3", "blake3"])
        got = list(zip(batch.column("xxh3_128").to_pylist(), batch.column("blake3").to_pylist()))
        assert got == expect, type(images)
        assert batch.schema.field("xxh3_128").type == pa.binary(16)
        assert batch.schema.field("blake3").type == pa.binary(32)
    # Byte hashes survive decode errors; pixel hashes are null there.
    batch = fastprep.hash_images(data[:3], hashes=["xxh3", "phash", "pdq", "pixels"])
    assert batch.column("xxh3_128").null_count == 0
    for name in ("phash", "pdq", "pdq_quality", "pixel_xxh3_128"):
        assert batch.column(name).null_count == 3, name
    assert all(e is not None for e in batch.column("error").to_pylist())


def test_pixel_hash_is_xxh3_of_pillows_rgb_view(corpus, engine, reference):
    bad = []
    for case, row, ref in zip(corpus, engine, reference):
        h, w = ref["rgb"].shape[:2]
        want = xxhash.xxh3_128_digest(struct.pack("<II", w, h) + ref["rgb"].tobytes())
        if row["pixel_xxh3_128"] != want:
            bad.append(f"{case.name} ({ref['mode']} {w}x{h})")
    assert not bad, f"{len(bad)} pixel hashes differ from Pillow's RGB: {bad}"


def test_pixel_hash_ignores_container_and_metadata():
    photo = base_photos()["q0291"]
    exif = Image.Exif()
    exif[0x0112] = 6
    same_picture = [
        encode(photo, "PNG"),
        encode(photo, "PNG", compress_level=1),
        encode(photo, "BMP"),
        encode(photo, "WEBP", lossless=True),
        # Stored rotated, displayed upright through EXIF orientation 6.
        encode(photo.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif.tobytes()),
    ]
    batch = fastprep.hash_images(same_picture, hashes=["pixels", "xxh3", "phash", "pdq"])
    for column in ("pixel_xxh3_128", "phash", "pdq"):
        assert len(set(batch.column(column).to_pylist())) == 1, column
    assert len(set(batch.column("xxh3_128").to_pylist())) == len(same_picture)
    other = fastprep.hash_images([encode(photo.crop((0, 0, 255, 256)), "PNG")], hashes=["pixels"])
    assert other.column("pixel_xxh3_128")[0] != batch.column("pixel_xxh3_128")[0]


HASH_COLUMNS = (
    "xxh3_128",
    "blake3",
    "pixel_xxh3_128",
    "ahash",
    "dhash",
    "phash",
    "pdq",
    "pdq_quality",
    "pdq_dihedral",
    "pdq_fast",
    "pdq_fast_quality",
)


def test_hashes_do_not_depend_on_the_pixel_output_or_threads(corpus):
    data = [c.data for c in corpus[::3]]
    hashes = list(fastprep.HASHES)
    alone = fastprep.hash_images(data, hashes=hashes)
    for options in (
        {"size": 96},
        {"size": (64, 200), "mode": "letterbox"},
        {"size": None, "num_threads": 1},
        {"size": 224, "mode": "random_resized_crop", "seed": 3, "reduced_decode": False},
    ):
        batch = fastprep.decode_images(data, hashes=hashes, **options)
        for column in HASH_COLUMNS:
            assert batch.column(column).equals(alone.column(column)), (options, column)


def test_pdq_fast_is_pdqhash_of_the_dct_scaled_picture():
    """A large JPEG's ``pdq_fast`` is ``pdqhash`` of the picture libjpeg decodes at
    1/4 scale (Pillow's draft mode asks libjpeg for the same DCT scaling), oriented
    as displayed; it stays within PDQ's usual radius of the exact ``pdq``; smaller
    JPEGs and other formats get the exact ``pdq``."""
    folder = Path(__file__).parent / "fixtures" / "exif-orientation"
    names = ["Landscape_1.jpg", "Landscape_6.jpg", "Portrait_3.jpg", "Portrait_8.jpg"]
    data = [(folder / name).read_bytes() for name in names]
    batch = fastprep.hash_images(data, hashes=["pdq", "pdq_fast"]).to_pylist()
    for name, raw, row in zip(names, data, batch):
        img = Image.open(io.BytesIO(raw))
        w, h = img.size
        assert min(w, h) // 4 >= 256 > min(w, h) // 8, (name, img.size)
        img.draft("RGB", (w // 4, h // 4))
        assert img.size == (-(-w // 4), -(-h // 4))
        shown = ImageOps.exif_transpose(img).convert("RGB")
        bits, quality = pdqhash.compute(np.asarray(shown))
        assert row["pdq_fast"].hex() == pdq_hex(bits), name
        assert row["pdq_fast_quality"] == quality, name
        distance = bin(int(row["pdq_fast"].hex(), 16) ^ int(row["pdq"].hex(), 16)).count("1")
        assert 0 < distance <= 31, (name, distance)
    small = Image.open(folder / "Landscape_1.jpg").convert("RGB").resize((450, 300))
    for fmt in ("JPEG", "PNG"):
        out = io.BytesIO()
        small.save(out, fmt)
        (row,) = fastprep.hash_images([out.getvalue()], hashes=["pdq", "pdq_fast"]).to_pylist()
        assert (row["pdq_fast"], row["pdq_fast_quality"]) == (row["pdq"], row["pdq_quality"])


@pytest.mark.parametrize("mode", ["center_crop", "resize", "letterbox"])
def test_asking_for_hashes_does_not_change_the_pixels(corpus, mode):
    """Hashing turns reduced JPEG decoding off; with it already off, the pixels must
    be the same with and without hashes."""
    data = [c.data for c in corpus]
    with_hashes = fastprep.decode_images(data, size=96, mode=mode, hashes=["phash", "pdq"])
    without = fastprep.decode_images(data, size=96, mode=mode, reduced_decode=False)
    a, b = fastprep.pixels_to_numpy(with_hashes), fastprep.pixels_to_numpy(without)
    bad = [
        f"{case.name} (orientation {o}): max diff {int(np.abs(x.astype(int) - y).max())}, "
        f"{np.mean(x != y):.1%} of values"
        for case, o, x, y in zip(corpus, with_hashes.column("orientation").to_pylist(), a, b)
        if not np.array_equal(x, y)
    ]
    assert not bad, f"{len(bad)} images differ:\n" + "\n".join(bad)


# --------------------------------------------------------------------------- imagehash


def test_imagehash_sees_the_same_on_the_mode_native_image_and_its_rgb_view(corpus, reference):
    """The reference's own premise: imagehash converts to "L" itself, and for every
    mode in the corpus that gives the same hashes as going through ``convert("RGB")``
    first (alpha ignored, not composited; 16-bit clipped the same way)."""
    diff = [
        (case.name, ref["mode"], name, ref[name], ref[name + "_rgb"])
        for case, ref in zip(corpus, reference)
        for name in PERCEPTUAL
        if ref[name] != ref[name + "_rgb"]
    ]
    assert not diff


# Pillow 13 resizes with the vertical pass first when the height shrinks by more than
# twice as many pixels as the width (python-pillow/Pillow#9549); earlier versions
# always went horizontal first, so imagehash's own output depends on the version.
@pytest.mark.skipif(
    int(PIL.__version__.split(".")[0]) < 13, reason="fastprep reproduces Pillow 13's resize"
)
@pytest.mark.parametrize("name", list(PERCEPTUAL))
def test_perceptual_hash_is_bit_identical_to_imagehash(name, corpus, engine, reference):
    bad = []
    for case, row, ref in zip(corpus, engine, reference):
        got = u64_hex(row[name])
        if got != ref[name]:
            w, h = ref["size"]
            bits = hamming_hex(got, ref[name]) if got else None
            bad.append(
                f"{case.name} [{ref['mode']} {w}x{h}] fastprep {got} imagehash {ref[name]} ({bits} bits)"
            )
    assert not bad, f"{name}: {len(bad)} of {len(corpus)} differ:\n" + "\n".join(bad)


def test_perceptual_hash_column_types():
    batch = fastprep.hash_images(
        [encode(base_photos()["q0122"], "PNG")], hashes=["ahash", "dhash", "phash"]
    )
    for name in ("ahash", "dhash", "phash"):
        assert batch.schema.field(name).type == pa.uint64()


# --------------------------------------------------------------------------- PDQ


def test_pdq_equals_pdqhash(corpus, engine, reference):
    bad = []
    for case, row, ref in zip(corpus, engine, reference):
        got = row["pdq"].hex()
        if (got, row["pdq_quality"]) != (ref["pdq"], ref["pdq_quality"]):
            w, h = ref["size"]
            bad.append(
                f"{case.name} [{ref['mode']} {w}x{h}] {hamming_hex(got, ref['pdq'])} bits; "
                f"quality {row['pdq_quality']} vs {ref['pdq_quality']}\n"
                f"    fastprep {got}\n    pdqhash  {ref['pdq']}"
            )
    assert not bad, f"pdq: {len(bad)} of {len(corpus)} differ:\n" + "\n".join(bad)


def test_pdq_dihedral_equals_pdqhash_compute_dihedral(corpus, engine, reference):
    bad = []
    for case, row, ref in zip(corpus, engine, reference):
        if "pdq_dihedral" not in ref:
            continue
        got = [h.hex() for h in row["pdq_dihedral"]]
        if got != ref["pdq_dihedral"]:
            diff = [hamming_hex(a, b) for a, b in zip(got, ref["pdq_dihedral"])]
            bad.append(f"{case.name} {ref['size']}: bits per variant {diff}")
        assert got[0] == row["pdq"].hex(), case.name  # "orig" is the pdq column
    assert not bad, f"pdq_dihedral: {len(bad)} differ:\n" + "\n".join(bad)


def test_pdq_column_types():
    batch = fastprep.hash_images(
        [encode(base_photos()["q0122"], "PNG")], hashes=["pdq", "pdq_dihedral"]
    )
    assert batch.schema.field("pdq").type == pa.binary(32)
    assert batch.schema.field("pdq_quality").type == pa.uint8()
    dihedral = batch.schema.field("pdq_dihedral").type
    assert dihedral == pa.list_(pa.binary(32), 8)


def expected_rows(source: str) -> list[dict]:
    rows = json.loads((PDQ_DIR / "expected" / "pdq-expected.json").read_text())
    return [r for r in rows if r["source"] == source and not r.get("preprocess")]


def test_pdq_matches_python_threatexchange_expected_values():
    rows = expected_rows("python-threatexchange")
    assert len(rows) == 4
    batch = fastprep.hash_images([str(PDQ_DIR / r["file"]) for r in rows], hashes=["pdq"])
    for row, got, quality in zip(
        rows, batch.column("pdq").to_pylist(), batch.column("pdq_quality").to_pylist()
    ):
        assert got.hex() == row["hash"], (row["file"], hamming_hex(got.hex(), row["hash"]))
        if row["quality"] is not None:
            assert quality == row["quality"], row["file"]


# How python-threatexchange's `--photo-preprocess=rotations` transforms the pixels.
PIXEL_XFORM = {
    "orig": None,
    "rot90": Image.Transpose.ROTATE_90,
    "rot180": Image.Transpose.ROTATE_180,
    "rot270": Image.Transpose.ROTATE_270,
    "flipx": Image.Transpose.FLIP_TOP_BOTTOM,
    "flipy": Image.Transpose.FLIP_LEFT_RIGHT,
    "flipp": Image.Transpose.TRANSPOSE,
    "flipm": Image.Transpose.TRANSVERSE,
}


def test_pdq_of_rotated_pixels_matches_python_threatexchange_rotations():
    rows = expected_rows("python-threatexchange-rotations")
    assert {r["xform"] for r in rows} == set(DIHEDRAL)
    img = Image.open(PDQ_DIR / rows[0]["file"]).convert("RGB")
    files = []
    for row in rows:
        op = PIXEL_XFORM[row["xform"]]
        files.append(encode(img if op is None else img.transpose(op), "PNG"))
    got = fastprep.hash_images(files, hashes=["pdq"]).column("pdq").to_pylist()
    assert [g.hex() for g in got] == [r["hash"] for r in rows]


def test_pdq_dihedral_of_bridge_matches_the_rotated_files():
    """``pdq_dihedral`` of bridge-1 against the seven pixel-rotated files: the DCT-domain
    variants are close to, not equal to, the hashes of the rotated pictures."""
    original = PDQ_IMAGES / "dih" / "bridge-1-original.jpg"
    batch = fastprep.hash_images([str(original)], hashes=["pdq_dihedral"])
    variants = [h.hex() for h in batch.column("pdq_dihedral")[0].as_py()]
    bits, _ = pdqhash.compute_dihedral(np.asarray(Image.open(original).convert("RGB")))
    assert variants == [pdq_hex(b) for b in bits]
    files = sorted((PDQ_IMAGES / "dih").glob("bridge-*.jpg"))
    assert len(files) == 8
    hashes = fastprep.hash_images([str(f) for f in files], hashes=["pdq"]).column("pdq").to_pylist()
    for index, (path, h) in enumerate(zip(files, hashes)):
        distances = [hamming_hex(h.hex(), v) for v in variants]
        assert distances[index] <= 16, (path.name, distances)
        # ... and far from every other variant.
        assert min(d for i, d in enumerate(distances) if i != index) > 64, (path.name, distances)


# --------------------------------------------------------------------------- search: random


def random_hashes(rng, n: int, words: int) -> np.ndarray:
    return rng.integers(0, 2**64, size=(n, words), dtype=np.uint64, endpoint=False)


def plant(rng, hashes: np.ndarray, copies: int, max_flips: int) -> np.ndarray:
    """Append ``copies`` near-copies of random rows, each with 0..max_flips bits flipped."""
    n, words = hashes.shape
    bits = words * 64
    out = []
    for _ in range(copies):
        h = hashes[rng.integers(0, n)].copy()
        for bit in rng.choice(bits, size=int(rng.integers(0, max_flips + 1)), replace=False):
            h[bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
        out.append(h)
    planted = np.concatenate([hashes, np.array(out, dtype=np.uint64)])
    return planted[rng.permutation(len(planted))]


def as_fixed_binary(words: np.ndarray) -> pa.Array:
    width = words.shape[1] * 8
    data = words.astype(">u8").tobytes()
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(words), [None, pa.py_buffer(data)]
    )


@pytest.mark.parametrize(
    ("words", "n", "radius", "max_flips"),
    [
        (4, 6000, 31, 40),  # PDQ-like: multi-index path
        (4, 300, 31, 40),  # small: brute-force path
        (4, 6000, 8, 12),
        (4, 6000, 63, 70),
        (1, 6000, 8, 12),  # imagehash-like
        (1, 6000, 3, 6),
        (1, 6000, 10, 14),
        (1, 400, 8, 12),
        (2, 3000, 15, 20),  # 128-bit (xxh3 width)
    ],
)
def test_find_near_duplicates_equals_brute_force(words, n, radius, max_flips):
    rng = np.random.default_rng(1000 * words + n + radius)
    hashes = plant(rng, random_hashes(rng, n, words), copies=n // 20, max_flips=max_flips)
    want = brute_pairs(hashes, radius)
    assert sum(1 for d in want.values() if d <= radius) >= n // 50  # the plants are there
    inputs = [as_fixed_binary(hashes)]
    if words == 1:
        inputs += [hashes[:, 0], hashes[:, 0].view(np.int64), pa.array(hashes[:, 0])]
    else:
        inputs += [[bytes(b) for b in hashes.astype(">u8").view(np.uint8).reshape(len(hashes), -1)]]
    for threads in (1, 2):
        for data in inputs:
            got = table_pairs(fastprep.find_near_duplicates(data, radius, num_threads=threads))
            assert got == want, (type(data), threads, len(got), len(want))


@pytest.mark.parametrize(("words", "radius"), [(4, 31), (1, 8), (1, 2)])
def test_match_hashes_equals_brute_force(words, radius):
    rng = np.random.default_rng(7 + words + radius)
    reference = random_hashes(rng, 8000, words)
    queries = plant(rng, reference[:1500], copies=1000, max_flips=radius + 6)[:2000]
    want = brute_query(queries, reference, radius)
    assert len(want) >= 300
    for threads in (1, 2):
        got = table_pairs(
            fastprep.match_hashes(
                as_fixed_binary(queries), as_fixed_binary(reference), radius, num_threads=threads
            )
        )
        assert got == want
    table = fastprep.match_hashes(as_fixed_binary(queries), as_fixed_binary(reference), radius)
    assert table.column_names == ["query", "reference", "distance"]
    keys = list(zip(table.column("query").to_pylist(), table.column("reference").to_pylist()))
    assert keys == sorted(keys)


def test_null_hashes_never_match():
    zero, one = b"\x00" * 8, b"\x00" * 7 + b"\x01"
    hashes = [zero, None, zero, None, one]
    want = {(0, 2): 0, (0, 4): 1, (2, 4): 1}
    assert table_pairs(fastprep.find_near_duplicates(hashes, 64)) == want
    assert table_pairs(fastprep.find_near_duplicates(pa.array(hashes, pa.binary(8)), 64)) == want
    column = pa.array([0, None, 0, None, 1], pa.uint64())
    assert table_pairs(fastprep.find_near_duplicates(column, 64)) == want
    chunked = pa.chunked_array([column[:2], column[2:]])
    assert table_pairs(fastprep.find_near_duplicates(chunked, 64)) == want
    got = table_pairs(fastprep.match_hashes([None, one, None], hashes, 64))
    assert got == {(1, 0): 1, (1, 2): 1, (1, 4): 0}
    assert fastprep.find_near_duplicates([None, None], 64).num_rows == 0


def test_null_hashes_never_match_with_hex_strings():
    z = "00" * 32
    got = table_pairs(fastprep.find_near_duplicates([z, None, z], 31))
    assert got == {(0, 2): 0}


def test_hex_strings_equal_bytes():
    rng = np.random.default_rng(5)
    hashes = plant(rng, random_hashes(rng, 500, 4), copies=50, max_flips=20)
    raw = [bytes(r) for r in hashes.astype(">u8").view(np.uint8).reshape(len(hashes), -1)]
    want = table_pairs(fastprep.find_near_duplicates(raw, 31))
    assert want == brute_pairs(hashes, 31)
    assert table_pairs(fastprep.find_near_duplicates([r.hex() for r in raw], 31)) == want


def test_width_mismatch_raises():
    h64 = np.array([1, 2, 3], dtype=np.uint64)
    h256 = [b"\x00" * 32, b"\x01" * 32]
    with pytest.raises(ValueError, match="width"):
        fastprep.match_hashes(h64, h256, 8)
    with pytest.raises(ValueError, match="width"):
        fastprep.match_hashes(h256, h64, 8)
    with pytest.raises(ValueError, match="width"):
        fastprep.find_near_duplicates([b"\x00" * 8, b"\x00" * 32], 8)
    with pytest.raises(ValueError, match="width"):
        fastprep.leak_report(h256, h64, 8)


def test_radius_zero_is_exact_matching_and_full_radius_is_everything():
    rng = np.random.default_rng(11)
    hashes = random_hashes(rng, 200, 1)
    hashes[50] = hashes[3]
    hashes[120] = hashes[3]
    assert table_pairs(fastprep.find_near_duplicates(hashes[:, 0], 0)) == {
        (3, 50): 0,
        (3, 120): 0,
        (50, 120): 0,
    }
    everything = fastprep.find_near_duplicates(hashes[:40, 0], 64)
    assert everything.num_rows == 40 * 39 // 2


# --------------------------------------------------------------------------- search: photos


NEAR_COPIES = ("jpeg30", "half", "crop5", "bright20")


def near_copies(img: Image.Image) -> dict[str, bytes]:
    w, h = img.size
    dx, dy = round(w * 0.025), round(h * 0.025)
    return {
        "jpeg30": encode(img, "JPEG", quality=30),
        "half": encode(img.resize((w // 2, h // 2), Image.Resampling.LANCZOS), "JPEG", quality=90),
        "crop5": encode(img.crop((dx, dy, w - dx, h - dy)), "JPEG", quality=90),
        "bright20": encode(ImageEnhance.Brightness(img).enhance(1.2), "JPEG", quality=90),
    }


@cache
def photo_families():
    """Distinct photos (whole fixtures and non-overlapping quarters of the big ones),
    each followed by its four near-copies. Returns names, family of each, bytes."""
    photos = dict(base_photos())
    for name, path in (
        ("c", PDQ_IMAGES / "misc-images" / "c.png"),
        ("rgb", PDQ_IMAGES / "python-threatexchange" / "rgb.jpeg"),
        ("LA", PDQ_IMAGES / "python-threatexchange" / "LA.png"),
    ):
        photos[name] = displayed_rgb(path.read_bytes())
    for name in ("landscape", "portrait", "bridge"):
        img = photos[name]
        w, h = img.size
        for i, (x, y) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
            photos[f"{name}-q{i}"] = img.crop(
                (x * w // 2, y * h // 2, (x + 1) * w // 2, (y + 1) * h // 2)
            )
    names, family, data, short_side = [], [], [], []
    for name, img in photos.items():
        for variant, blob in [
            ("original", encode(img, "JPEG", quality=95)),
            *near_copies(img).items(),
        ]:
            names.append(f"{name}:{variant}")
            family.append(name)
            data.append(blob)
            short_side.append(min(img.size))
    return names, np.array(family), data, np.array(short_side)


@pytest.fixture(scope="module")
def photo_hashes():
    names, family, data, short = photo_families()
    batch = fastprep.hash_images(data, hashes=["pdq", "phash", "dhash"])
    assert batch.column("error").null_count == len(data)
    return names, family, short, batch


def planted_distances(names, hashes_words, variant):
    """Distance from each original to its ``variant`` copy."""
    index = {n: i for i, n in enumerate(names)}
    out = {}
    for n, i in index.items():
        if n.endswith(":original"):
            j = index[n.replace(":original", f":{variant}")]
            out[n.split(":")[0]] = int(np.bitwise_count(hashes_words[i] ^ hashes_words[j]).sum())
    return out


@pytest.mark.parametrize(
    ("column", "radius", "always_found"),
    [
        # PDQ is not crop-tolerant, and on 256 px photos a JPEG q30 or a halving
        # moves it 20-44 bits: radius 31 finds the re-encoded, halved and brightened
        # copies of the photos whose shorter side is at least 500 px.
        ("pdq", 31, {"jpeg30": 500, "half": 500, "bright20": 500}),
        # phash at 10 finds re-encoded, halved and brightened copies of every photo.
        ("phash", 10, {"jpeg30": 0, "half": 0, "bright20": 0}),
    ],
)
def test_planted_near_copies_of_real_photos_are_found(photo_hashes, column, radius, always_found):
    names, family, short, batch = photo_hashes
    if column == "pdq":
        words = to_words(batch.column("pdq").to_pylist())
        data = batch.column("pdq")
    else:
        words = batch.column(column).to_numpy().reshape(-1, 1)
        data = batch.column(column)
    pairs = table_pairs(fastprep.find_near_duplicates(data, radius))
    assert pairs == brute_pairs(words, radius)
    # Distinct photos are never paired ...
    wrong = [(names[a], names[b], d) for (a, b), d in pairs.items() if family[a] != family[b]]
    assert not wrong
    # ... and the planted copies are.
    index = {n: i for i, n in enumerate(names)}
    missed = []
    for variant, min_short in always_found.items():
        for i, n in enumerate(names):
            if n.endswith(":original") and short[i] >= min_short:
                j = index[n.replace(":original", f":{variant}")]
                if (i, j) not in pairs:
                    missed.append((n, variant, int(np.bitwise_count(words[i] ^ words[j]).sum())))
    assert not missed


@pytest.mark.parametrize(("column", "floor"), [("pdq", 64), ("phash", 12), ("dhash", 12)])
def test_distinct_photos_are_far_apart(photo_hashes, column, floor):
    _names, family, _, batch = photo_hashes
    if column == "pdq":
        words = to_words(batch.column("pdq").to_pylist())
    else:
        words = batch.column(column).to_numpy().reshape(-1, 1)
    dist = np.bitwise_count(words[:, None, :] ^ words[None, :, :]).sum(-1)
    unrelated = family[:, None] != family[None, :]
    assert int(dist[unrelated].min()) > floor


# --------------------------------------------------------------------------- dedup


def test_deduplicate_clusters_and_keepers_on_a_hand_built_example():
    hashes = np.array(
        [
            0x0,  # 0
            0xFF,  # 1: 8 bits from 0
            0x1,  # 2: 1 bit from 0, 7 from 1
            0xFFFF_FFFF_0000_0000,  # 3
            0xFFFF_FFFF_0000_0003,  # 4: 2 bits from 3
            0x0F0F_0F0F_0F0F_0F0F,  # 5: alone
            0x3FF,  # 6: 2 bits from 1, 10 from 0, 9 from 2
        ],
        dtype=np.uint64,
    )
    rank = [5, 9, 9, 1, 1, 100, 3]
    records, pairs = fastprep.deduplicate(hashes, 2, rank=rank)
    assert table_pairs(pairs) == {(0, 2): 1, (1, 6): 2, (3, 4): 2}
    assert records.column("cluster").to_pylist() == [0, 1, 0, 3, 3, 5, 1]
    # {0, 2}: ranks 5 and 9 -> 2 keeps; {1, 6}: 9 > 3 -> 1; {3, 4}: tie -> earliest, 3.
    assert records.column("duplicate_of").to_pylist() == [2, None, None, None, 3, None, 1]
    assert records.column("is_duplicate").to_pylist() == [
        True,
        False,
        False,
        False,
        True,
        False,
        True,
    ]
    # Radius 8 links 0-1 too: one cluster {0, 1, 2, 6} through union-find (0 and 6
    # are 10 bits apart); ranks 9 and 9 tie between 1 and 2 -> the earlier, 1.
    records, pairs = fastprep.deduplicate(hashes, 8, rank=rank)
    assert records.column("cluster").to_pylist() == [0, 0, 0, 3, 3, 5, 0]
    assert records.column("duplicate_of").to_pylist() == [1, None, 1, None, 3, None, 1]
    # Without rank the earliest record of each cluster keeps.
    records, _ = fastprep.deduplicate(hashes, 8)
    assert records.column("duplicate_of").to_pylist() == [None, 0, 0, None, 3, None, 0]
    # keys: duplicate_of holds the keeper's key.
    keys = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg"]
    records, _ = fastprep.deduplicate(hashes, 8, rank=rank, keys=keys)
    assert records.column("duplicate_of").to_pylist() == [
        "b.jpg",
        None,
        "b.jpg",
        None,
        "d.jpg",
        None,
        "b.jpg",
    ]
    records, _ = fastprep.deduplicate(
        hashes, 8, rank=rank, keys=pa.array([10, 11, 12, 13, 14, 15, 16])
    )
    assert records.column("duplicate_of").to_pylist() == [11, None, 11, None, 13, None, 11]


def test_deduplicate_with_null_hashes_and_rank_checks():
    hashes = [b"\x00" * 32, None, b"\x00" * 31 + b"\x07", None, b"\xff" * 32]
    records, pairs = fastprep.deduplicate(hashes, 31, rank=[1, 99, 2, 99, 0], keys=list("abcde"))
    assert table_pairs(pairs) == {(0, 2): 3}
    assert records.column("cluster").to_pylist() == [0, 1, 0, 3, 4]
    assert records.column("duplicate_of").to_pylist() == ["c", None, None, None, None]
    assert records.num_rows == 5
    with pytest.raises(ValueError, match="rank"):
        fastprep.deduplicate(hashes, 31, rank=[1, 2])


def test_deduplicate_real_photos_one_keeper_per_family(photo_hashes):
    names, family, _, batch = photo_hashes
    # Keep the largest file of each group (ranks are file sizes here).
    _, _, data, _ = photo_families()
    records, _ = fastprep.deduplicate(
        batch.column("phash"), 10, rank=[len(d) for d in data], keys=names
    )
    clusters = records.column("cluster").to_pylist()
    for c in set(clusters):
        members = [i for i, k in enumerate(clusters) if k == c]
        assert len({family[i] for i in members}) == 1  # never across photos
        keepers = [i for i in members if not records.column("is_duplicate")[i].as_py()]
        assert len(keepers) == 1
        assert len(data[keepers[0]]) == max(len(data[i]) for i in members)
        for i in members:
            dup = records.column("duplicate_of")[i].as_py()
            assert dup == (None if i == keepers[0] else names[keepers[0]])


def test_leak_report_returns_exactly_the_planted_copies(photo_hashes):
    names, family, short, batch = photo_hashes
    pdq = batch.column("pdq").to_pylist()
    originals = [i for i, n in enumerate(names) if n.endswith(":original")]
    eval_idx = originals[::2]  # every other photo is in the eval split
    eval_families = {family[i] for i in eval_idx}
    # Train: the other originals, plus copies of eval photos that PDQ is meant to
    # catch (re-encoded / halved / brightened, photos >= 500 px) planted among them.
    train_idx = [i for i in originals if family[i] not in eval_families]
    planted = [
        i
        for i, n in enumerate(names)
        if family[i] in eval_families
        and short[i] >= 500
        and n.split(":")[1] in ("jpeg30", "half", "bright20")
    ]
    rng = np.random.default_rng(3)
    train_idx = [int(i) for i in rng.permutation(train_idx + planted)]
    train = [pdq[i] for i in train_idx]
    evals = [pdq[i] for i in eval_idx]
    report = fastprep.leak_report(
        train,
        evals,
        31,
        train_keys=[names[i] for i in train_idx],
        eval_keys=[names[i] for i in eval_idx],
    )
    assert report.column_names == ["train_index", "eval_index", "distance", "train_key", "eval_key"]
    rows = report.to_pylist()
    got = {(r["train_key"], r["eval_key"]): r["distance"] for r in rows}
    tw, ew = to_words(train), to_words(evals)
    want = {
        (names[train_idx[t]], names[eval_idx[e]]): d
        for (t, e), d in brute_query(tw, ew, 31).items()
    }
    assert got == want
    assert {k[0] for k in got} == {names[i] for i in planted}
    assert all(family[names.index(t)] == family[names.index(e)] for t, e in got)
    for r in rows:
        assert names[train_idx[r["train_index"]]] == r["train_key"]
        assert names[eval_idx[r["eval_index"]]] == r["eval_key"]
    assert [r["train_index"] for r in rows] == sorted(r["train_index"] for r in rows)
    # Without keys: indices only.
    plain = fastprep.leak_report(train, evals, 31)
    assert plain.column_names == ["train_index", "eval_index", "distance"]
    assert plain.num_rows == len(rows)
