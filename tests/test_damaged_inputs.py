"""Odd and damaged files, judged against Pillow: what Pillow decodes we decode
(to the same pixels), damage we recover from is flagged in ``warnings``, one
rule holds at every output size, headers that cannot be true are refused
before allocating, and errors say what they saw in plain words.

Every file here is made in the test from real photos or by hand."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import fastprep
import numpy as np
import pyarrow as pa
import pytest
from helpers import (
    EXIF_DIR,
    PNG_SIGNATURE,
    encode_pil,
    exif_orientation_block,
    patch_jpeg_dims,
    pil_reference,
    png_chunk,
    psnr,
    rows,
    smooth_rgb,
    variable_pixels,
)
from PIL import Image, ImageOps, PngImagePlugin

PHOTO = (EXIF_DIR / "Landscape_1.jpg").read_bytes()


def _decode(data: bytes, **kwargs) -> dict:
    batch = fastprep.decode_images([data], **kwargs)
    row = rows(batch)[0]
    row["pixels"] = variable_pixels(batch, 0) if "size" not in kwargs else None
    return row


def _pillow_decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        return True
    except Exception:
        return False


def _segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """(offset, marker, total length) of each segment before the first scan."""
    out, pos = [], 2
    while pos + 4 <= len(jpeg):
        marker = jpeg[pos + 1]
        length = struct.unpack(">H", jpeg[pos + 2 : pos + 4])[0]
        out.append((pos, marker, 2 + length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return out


def _photo(size=(160, 120), quality=90, **params) -> bytes:
    img = Image.open(io.BytesIO(PHOTO)).convert("RGB").resize(size)
    return encode_pil(img, "JPEG", quality=quality, **params)


# --------------------------------------------------------------- JPEG header warnings


def _insert(data: bytes, at: int, extra: bytes) -> bytes:
    return data[:at] + extra + data[at:]


def _header_variants() -> dict[str, bytes]:
    jpeg = _photo()
    segs = _segments(jpeg)
    dqt = next(p for p, m, _ in segs if m == 0xDB)
    sof = next((p, n) for p, m, n in segs if m == 0xC0)
    adobe = b"\xff\xee" + struct.pack(">H", 14) + b"Adobe\x00\x64\x00\x00\x00\x00\x01"
    iptc = b"\xff\xed" + struct.pack(">H", 2 + 20) + b"Photoshop 3.0\x008BIM\x04\x04"[:20]
    icc_body = b"ICC_PROFILE\x00\x01\x01" + b"\x00" * 40
    icc = b"\xff\xe2" + struct.pack(">H", 2 + len(icc_body)) + icc_body
    return {
        # Stray bytes between two header segments.
        "stray_bytes": _insert(jpeg, dqt, b"\x00\x00\x00"),
        # An APP14 whose length says one byte less than it holds.
        "app14_short": _insert(jpeg, dqt, adobe[:2] + struct.pack(">H", 13) + adobe[4:]),
        # An APP13 whose length says one byte less than it holds.
        "app13_short": _insert(jpeg, dqt, iptc[:2] + struct.pack(">H", 21) + iptc[4:]),
        # An ICC marker after the frame header (and a bogus profile).
        "icc_after_sof": _insert(jpeg, sof[0] + sof[1], icc),
    }


@pytest.mark.parametrize("name", sorted(_header_variants()))
def test_header_oddities_pillow_accepts_decode_to_pillows_pixels(name):
    data = _header_variants()[name]
    assert _pillow_decodes(data), "the variant must be one Pillow decodes"
    row = _decode(data)
    assert row["error"] is None, row["error"]
    assert psnr(row["pixels"], pil_reference(data)) >= 40
    # Flagged where libjpeg warned, never an error; the crop agrees.
    cropped = _decode(data, size=64, mode="center_crop")
    assert cropped["error"] is None and cropped["warnings"] == row["warnings"]


def test_stray_bytes_are_named():
    row = _decode(_header_variants()["stray_bytes"])
    assert row["warnings"] == ["extraneous bytes before marker"]


# ---------------------------------------------------------------- damage is never silent


def _corrupt_scan(jpeg: bytes, where: float, garbage: bytes) -> bytes:
    scan = next(p + n for p, m, n in _segments(jpeg) if m == 0xDA)
    at = scan + int((len(jpeg) - 2 - scan) * where)
    return jpeg[:at] + garbage + jpeg[at + len(garbage) :]


@pytest.mark.parametrize("progressive", [False, True])
def test_corrupt_entropy_data_decodes_with_a_warning_at_every_size(progressive):
    jpeg = _photo(progressive=progressive)
    flagged = 0
    for seed in range(12):
        garbage = np.random.default_rng(seed).integers(0, 255, 24, dtype=np.uint8).tobytes()
        data = _corrupt_scan(jpeg, 0.3, garbage.replace(b"\xff", b"\xfe"))
        if not _pillow_decodes(data):
            continue
        rows_ = [_decode(data), _decode(data, size=64, mode="center_crop"),
                 _decode(data, size=64, mode="center_crop", hashes=["pdq"])]  # fmt: skip
        outcomes = {(r["error"] is None, tuple(r["warnings"] or ())) for r in rows_}
        assert len(outcomes) == 1, f"seed {seed}: {rows_}"
        ((ok, warnings),) = outcomes
        assert ok, rows_[0]["error"]
        if warnings:
            assert warnings == ("corrupt entropy data",)
            flagged += 1
        else:  # garbage that happens to decode as valid codes: nothing to see
            assert psnr(rows_[0]["pixels"], pil_reference(data)) >= 40
    assert flagged >= 6, "most random garbage breaks Huffman decoding"


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_truncated_jpeg_is_an_error_at_every_size(fraction):
    # A portrait: a centre crop reads the middle rows only, never the cut.
    portrait = _photo(size=(120, 200))
    cut = portrait[: int(len(portrait) * fraction)]
    assert not _pillow_decodes(cut)
    for kwargs in ({}, {"size": 64, "mode": "center_crop"}, {"hashes": ["pdq"]},
                   {"size": 32, "mode": "resize"}):  # fmt: skip
        row = _decode(cut, **kwargs)
        assert row["error_kind"] == "truncated", (kwargs, row["error"])
        assert (row["source_width"], row["source_height"]) == (120, 200), "header still read"
    # Trailing bytes after the end marker are fine (as in Pillow).
    assert _decode(portrait + b"\x00trailer")["error"] is None


# ------------------------------------------------------------------ implausible headers


def _tiny_png(width: int, height: int) -> bytes:
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
    return PNG_SIGNATURE + ihdr + idat + png_chunk(b"IEND", b"")


def test_implausible_headers_are_refused_before_allocating():
    png = _tiny_png(13_000, 13_000)
    jpeg = patch_jpeg_dims(_photo(size=(64, 48), quality=50), 13_000, 13_000)
    assert len(png) < 100 and len(jpeg) < 8_000
    for data, fmt in ((png, "PNG"), (jpeg, "JPEG")):
        for kwargs in ({}, {"size": 224}, {"hashes": ["pdq"]}):
            row = _decode(data, **kwargs)
            assert row["error_kind"] == "too_large", row["error"]
            assert row["error"].startswith(f"image too large: implausible {fmt}"), row["error"]
    # Measured in a fresh process: the refusal allocates nothing like the
    # 507 MB the header claims (peak RSS grows by far less than 150 MB).
    code = (
        "import resource, sys, fastprep\n"
        "data = [open(p, 'rb').read() for p in sys.argv[1:]]\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = fastprep.decode_images(data)\n"
        "assert out.column('error_kind').to_pylist() == ['too_large'] * len(data)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, data in enumerate((png, jpeg)):
            path = f"{tmp}/{i}"
            with open(path, "wb") as f:
                f.write(data)
            paths.append(path)
        grown = subprocess.run([sys.executable, "-c", code, *paths], check=True,
                               capture_output=True, text=True).stdout  # fmt: skip
    assert int(grown) < 150 * 1024, f"peak RSS grew by {int(grown) // 1024} MB"


def test_plausible_large_headers_still_decode():
    # A real, highly compressible 2000x2000 PNG is not "implausible".
    flat = np.full((2000, 2000, 3), 200, np.uint8)
    row = _decode(encode_pil(Image.fromarray(flat), "PNG"), size=16)
    assert row["error"] is None


def test_png_with_unknown_compression_method_is_corrupt():
    data = bytearray(encode_pil(Image.fromarray(smooth_rgb(8, 8)), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 14] = 1  # compression method: only 0 exists
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    row = _decode(bytes(data))
    assert row["error_kind"] == "corrupt"
    assert row["error"] == "corrupt PNG: unknown compression method 1"


# ------------------------------------------------------------------------- clear errors


def test_errors_carry_no_rust_debug_text():
    png = bytearray(encode_pil(Image.fromarray(smooth_rgb(16, 16)), "PNG"))
    png[png.index(b"IDAT") + 6] ^= 0xFF  # CRC mismatch in IDAT
    bad_chunk = PNG_SIGNATURE + png_chunk(b"IHDR", b"\x00" * 13)[:-4] + b"\x00\x00\x00\x00"
    for data in (bytes(png), bad_chunk):
        error = _decode(data)["error"]
        assert error and "{" not in error and "ChunkType" not in error, error


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "unsupported format: HEIC"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "unsupported format: AVIF"),
        (b"%PDF-1.7\n", "unsupported format: PDF"),
        (b"<!DOCTYPE html><html>", 'unsupported format: text starting "<!DOCTYPE html><"'),
        (bytes(range(1, 20)), "unsupported format: data starting 01 02 03 04 05 06 07 08"),
    ],
)
def test_unsupported_format_says_what_it_saw(data, expected):
    row = _decode(data)
    assert (row["error"], row["error_kind"]) == (expected, "unsupported_format")


def test_unsupported_features_are_not_called_corrupt():
    jpeg = bytearray(_photo())
    sof = next(p for p, m, _ in _segments(bytes(jpeg)) if m == 0xC0)
    jpeg[sof + 1] = 0xC1  # extended sequential...
    jpeg[sof + 4] = 12  # ...with 12-bit samples
    row = _decode(bytes(jpeg))
    assert row["error_kind"] == "unsupported", row["error"]
    assert row["error"].startswith("unsupported JPEG: "), row["error"]
    assert "corrupt" not in row["error"]


# -------------------------------------------------------------------- more formats


def _tiff_variants() -> dict[str, bytes]:
    import tifffile

    rgb = smooth_rgb(37, 53, seed=3)
    img = Image.fromarray(rgb)
    out = {
        "strips_raw": encode_pil(img, "TIFF"),
        "lzw": encode_pil(img, "TIFF", compression="tiff_lzw"),
        "deflate": encode_pil(img, "TIFF", compression="tiff_adobe_deflate"),
        "packbits": encode_pil(img, "TIFF", compression="packbits"),
        "jpeg": encode_pil(img, "TIFF", compression="jpeg", quality=95),
        "grey": encode_pil(img.convert("L"), "TIFF"),
        "bilevel": encode_pil(img.convert("1"), "TIFF", compression="group4"),
    }
    for name, kwargs in {
        "tiles": {"tile": (16, 16)},
        "planar_deflate": {"planarconfig": "separate", "compression": "zlib"},
        "tiles_deflate": {"tile": (32, 32), "compression": "zlib"},
    }.items():
        buf = io.BytesIO()
        tifffile.imwrite(buf, rgb, photometric="rgb", **kwargs)
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    tifffile.imwrite(buf, (rgb.astype(np.uint16) * 257), photometric="rgb")
    out["16bit"] = buf.getvalue()
    return out


@pytest.mark.parametrize("name", sorted(_tiff_variants()))
def test_tiff_decodes_like_pillow(name):
    data = _tiff_variants()[name]
    if not _pillow_decodes(data):
        pytest.fail(f"Pillow cannot read the {name} variant: the test file is wrong")
    row = _decode(data)
    assert row["error"] is None, row["error"]
    assert row["format"] == "tiff"
    expected = pil_reference(data)
    assert row["pixels"].shape == expected.shape
    assert psnr(row["pixels"], expected) >= 40, name


@pytest.mark.parametrize("mode", ["1", "L", "RGB"])
def test_pnm_decodes_like_pillow(mode):
    img = Image.fromarray(smooth_rgb(21, 30, seed=5)).convert(mode)
    data = encode_pil(img, "PPM")
    row = _decode(data)
    assert (row["error"], row["format"]) == (None, "pnm")
    np.testing.assert_array_equal(row["pixels"], pil_reference(data))


def test_ico_decodes_its_largest_entry_like_pillow():
    img = Image.fromarray(smooth_rgb(48, 48, seed=9))
    data = encode_pil(img, "ICO", sizes=[(16, 16), (48, 48)])
    row = _decode(data)
    assert (row["error"], row["format"]) == (None, "ico")
    np.testing.assert_array_equal(row["pixels"], pil_reference(data))


def test_tiff_orientation_tag_is_applied():
    img = Image.fromarray(smooth_rgb(20, 30, seed=2))
    data = encode_pil(img, "TIFF", tiffinfo={274: 6})
    row = _decode(data)
    assert row["orientation"] == 6
    np.testing.assert_array_equal(row["pixels"], pil_reference(data))


# ----------------------------------------------------------------------- orientation


def _oriented_expectation(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def test_webp_orientation_with_the_exif_header_prefix():
    img = Image.fromarray(smooth_rgb(24, 40, seed=1))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode_pil(img, "WEBP", lossless=True, exif=exif.tobytes())
    assert b"Exif\x00\x00" in data[: data.index(b"VP8L")] or b"EXIF" in data
    row = _decode(data)
    assert row["orientation"] == 6
    np.testing.assert_array_equal(row["pixels"], _oriented_expectation(data))
    # ...and the perceptual hash is the oriented picture's, as imagehash's.
    import imagehash

    with Image.open(io.BytesIO(data)) as pil:
        expected = int(str(imagehash.phash(ImageOps.exif_transpose(pil))), 16)
    hashed = rows(fastprep.decode_images([data], hashes=["phash"]))[0]
    assert hashed["phash"] == expected


def _png_with_text(chunk: bytes) -> bytes:
    png = encode_pil(Image.fromarray(smooth_rgb(24, 40, seed=4)), "PNG")
    at = png.index(b"IDAT") - 4
    return png[:at] + chunk + png[at:]


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_png_orientation_from_xmp_and_raw_exif_profile(orientation):
    xmp = f'<x:xmpmeta><rdf:Description tiff:Orientation="{orientation}"/></x:xmpmeta>'
    exif = b"Exif\x00\x00" + exif_orientation_block(orientation)
    raw = f"\nexif\n{len(exif):8d}\n{exif.hex()}\n".encode()
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    xmp_png = encode_pil(Image.fromarray(smooth_rgb(24, 40, seed=4)), "PNG", pnginfo=info)
    variants = {
        "xmp": xmp_png,
        "raw_text": _png_with_text(png_chunk(b"tEXt", b"Raw profile type exif\x00" + raw)),
        "raw_ztxt": _png_with_text(
            png_chunk(b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(raw))
        ),
    }
    for name, data in variants.items():
        row = _decode(data)
        assert row["orientation"] == orientation, name
        np.testing.assert_array_equal(row["pixels"], _oriented_expectation(data), name)


def test_jpeg_orientation_from_xmp_only():
    jpeg = _photo()
    xmp = b'http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta tiff:Orientation="8"/>'
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + len(xmp)) + xmp
    data = jpeg[:2] + app1 + jpeg[2:]
    row = _decode(data)
    assert row["orientation"] == 8
    assert psnr(row["pixels"], _oriented_expectation(data)) >= 40


# ------------------------------------------------------------------------- prep policy


def _corpus(tmp_path, damaged: bytes):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        img = Image.fromarray(smooth_rgb(60, 80, seed=10 + i))
        (src / f"ok{i}.jpg").write_bytes(encode_pil(img, "JPEG", quality=90))
        (src / f"ok{i}.txt").write_text(f"#tag{i} #common")
    (src / "hurt.jpg").write_bytes(damaged)
    (src / "hurt.txt").write_text("#common")
    return src


def _damaged_jpeg() -> bytes:
    jpeg = _photo()
    for seed in range(20):
        garbage = np.random.default_rng(seed).integers(0, 255, 24, dtype=np.uint8).tobytes()
        data = _corrupt_scan(jpeg, 0.3, garbage.replace(b"\xff", b"\xfe"))
        if _decode(data)["warnings"]:
            return data
    raise AssertionError("no corruption was flagged")


@pytest.mark.parametrize("policy", ["keep", "drop"])
def test_prep_on_damaged_policy(tmp_path, policy):
    from fastprep.pipeline import prep

    src = _corpus(tmp_path, _damaged_jpeg())
    out = tmp_path / "out"
    result = prep(str(src), str(out), size=32, dedup_radius=None, on_damaged=policy,
                  progress=False)  # fmt: skip
    manifest = result.manifest
    totals = manifest["totals"]
    assert totals["input"] == 5
    assert manifest["damaged"]["policy"] == policy
    import pyarrow.parquet as pq

    table = pa.concat_tables(pq.read_table(out / o["file"]) for o in manifest["outputs"])
    keys = table.column("key").to_pylist()
    if policy == "keep":
        assert totals["written"] == 5 and "hurt" in keys
        warnings = dict(zip(keys, table.column("warnings").to_pylist()))
        assert warnings["hurt"] == ["corrupt entropy data"]
        assert all(warnings[k] is None for k in keys if k != "hurt")
        assert manifest["damaged"]["written_with_warnings"] == {"corrupt entropy data": 1}
    else:
        assert totals["written"] == 4 and "hurt" not in keys
        assert totals["dropped"] == {"damaged": 1}
        assert manifest["damaged"]["written_with_warnings"] == {}
        reasons = pq.read_table(out / "dropped.parquet").to_pylist()
        assert reasons == [{"key": "hurt", "source": "hurt.jpg",
                            "reason": "damaged: corrupt entropy data"}]  # fmt: skip
    report = (out / "report.html").read_text()
    if policy == "keep":
        assert "Written although damaged" in report and "corrupt entropy data: 1" in report


def test_prep_consent_column_of_mixed_types(tmp_path):
    from fastprep.pipeline import prep

    src = tmp_path / "src"
    src.mkdir()
    values = [True, True, "false", "true", False, "False", 1, None]
    for i, value in enumerate(values):
        img = Image.fromarray(smooth_rgb(40, 40, seed=30 + i))
        (src / f"r{i}.jpg").write_bytes(encode_pil(img, "JPEG"))
        meta = {"caption": f"#t{i}"}
        if value is not None:
            meta["is_public"] = value
        (src / f"r{i}.json").write_text(__import__("json").dumps(meta))
    # One record a batch: every batch may see another type.
    result = prep(str(src), str(tmp_path / "out"), size=16, batch_size=1, dedup_radius=None,
                  progress=False)  # fmt: skip
    totals = result.manifest["totals"]
    assert totals["input"] == len(values)
    # "false", False and "False" are all refusals; the rest is kept.
    assert totals["dropped"] == {"not_public": 3}
    assert totals["written"] == len(values) - 3


# ------------------------------------------------------------- prep accounts for all


def _mutations():
    from hypothesis import strategies as st

    img = Image.fromarray(smooth_rgb(24, 32, seed=7))
    seeds = [
        encode_pil(img, "JPEG", quality=80),
        encode_pil(img, "JPEG", quality=80, progressive=True),
        encode_pil(img, "PNG"),
        encode_pil(img, "GIF"),
        encode_pil(img, "WEBP", quality=80),
        encode_pil(img, "TIFF", compression="tiff_lzw"),
    ]

    @st.composite
    def mutated(draw):
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
            at = draw(st.integers(0, max(0, len(data) - 1)))
            if kind == "flip" and data:
                data[at] ^= draw(st.integers(1, 255))
            elif kind == "cut":
                del data[at:]
            elif kind == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=16))
            elif data:
                data[at : at + 8] = b"\x00" * len(data[at : at + 8])
        return bytes(data)

    caption = st.one_of(
        st.text(max_size=40).map(lambda t: ("txt", t.encode("utf-8", "surrogatepass"))),
        st.binary(max_size=40).map(lambda b: ("txt", b)),
        st.sampled_from(
            [
                b'{"caption": "#a", "is_public": "false"}',
                b'{"is_public": 1}',
                b"{not json",
                b'{"caption": ["x"], "is_public": true}',
                b"[1, 2]",
            ]
        ).map(lambda b: ("json", b)),
    )
    files = st.lists(st.tuples(st.one_of(mutated(), st.binary(max_size=64)), caption),
                     min_size=1, max_size=8)  # fmt: skip
    return files


def test_prep_accounts_for_every_random_or_mutated_file(tmp_path_factory):
    from fastprep.pipeline import prep
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=12, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(_mutations())
    def run(files):
        root = tmp_path_factory.mktemp("fuzzprep")
        src = root / "src"
        src.mkdir()
        for i, (data, (kind, side)) in enumerate(files):
            (src / f"f{i:02d}.jpg").write_bytes(data)
            (src / f"f{i:02d}.{kind}").write_bytes(side)
        result = prep(str(src), str(root / "out"), size=16, batch_size=3, dedup_radius=8,
                      drop_unlabeled=False, progress=False)  # fmt: skip
        totals = result.manifest["totals"]
        assert totals["input"] == len(files)
        assert totals["written"] + sum(totals["dropped"].values()) == len(files)
        import pyarrow.parquet as pq

        written = [k for o in result.manifest["outputs"]
                   for k in pq.read_table(root / "out" / o["file"]).column("key").to_pylist()]  # fmt: skip
        dropped = pq.read_table(root / "out" / "dropped.parquet").column("key").to_pylist()
        assert sorted(written + dropped) == [f"f{i:02d}" for i in range(len(files))]

    run()


def test_gif_without_any_colour_table_reads_indices_as_grey_like_pillow():
    img = Image.fromarray((np.arange(48, dtype=np.uint8).reshape(6, 8) * 5), "L").convert("P")
    data = bytearray(encode_pil(img, "GIF"))
    flags = data[10]
    assert flags & 0x80, "Pillow wrote a global table; the test removes it"
    table = 3 * 2 ** ((flags & 7) + 1)
    bare = bytes(data[:10]) + bytes([flags & 0x70]) + bytes(data[11:13]) + bytes(data[13 + table :])
    assert _pillow_decodes(bare)
    row = _decode(bare)
    assert (row["error"], row["format"]) == (None, "gif")
    np.testing.assert_array_equal(row["pixels"], pil_reference(bare))


def test_the_datasheet_states_the_damage_policy(tmp_path):
    from fastprep.pipeline import prep

    src = _corpus(tmp_path, _damaged_jpeg())
    for policy, expected in (
        ("keep", "kept, flagged in `warnings` (corrupt entropy data: 1)"),
        ("drop", "dropped, 1 record(s)"),
    ):
        out = tmp_path / policy
        prep(str(src), str(out), size=16, dedup_radius=None, on_damaged=policy, report=False)
        sheet = (out / "datasheet.md").read_text()
        assert f"- Damaged images (decoded with warnings): {expected}" in sheet, sheet


def test_decoder_size_ceilings_are_too_large_not_corrupt():
    # A BMP header over the BMP decoder's 65535-pixel side (under the pixel limit).
    info = struct.pack("<IiiHHIIiiII", 40, 100_000, 1_000, 1, 24, 0, 0, 0, 0, 0, 0)
    bmp = struct.pack("<2sIHHI", b"BM", 70, 0, 0, 54) + info + b"\0" * 16
    row = _decode(bmp)
    assert row["error_kind"] == "too_large", row["error"]
    assert row["error"].startswith("image too large: "), row["error"]
    assert "corrupt" not in row["error"]
