"""Training-ready stores: keep-aspect resized images (``short_side`` /
``max_side``), original bytes with their metadata removed losslessly, and
the DataLoader reading both back."""

from __future__ import annotations

import io
import json
import struct

import fastprep
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import EXIF_DIR, encode_pil, variable_pixels
from PIL import Image, ImageOps, PngImagePlugin

PHOTO = (EXIF_DIR / "Landscape_1.jpg").read_bytes()


def _photo(size, seed=0) -> Image.Image:
    img = Image.open(io.BytesIO(PHOTO)).convert("RGB").resize(size)
    return img if seed == 0 else img.rotate(seed * 7)


def _torchvision_size(w: int, h: int, short: int | None, cap: int | None) -> tuple[int, int]:
    """torchvision's ``_compute_resized_output_size`` (Resize(short, max_size)),
    written out, plus "never upscale"."""
    s, long = min(w, h), max(w, h)
    ns, nl = s, long
    if short is not None and short < s:
        ns, nl = short, int(short * long / s)
    if cap is not None and nl > cap:
        ns, nl = int(cap * ns / nl), cap
    ns, nl = max(ns, 1), max(nl, 1)
    return (ns, nl) if w <= h else (nl, ns)


# ----------------------------------------------------------------- keep-aspect sizes


@pytest.mark.parametrize(("short", "cap"), [(256, None), (None, 300), (128, 200), (64, 64)])
def test_keep_aspect_sizes_follow_the_rule_and_never_upscale(short, cap):
    sizes = [(500, 375), (375, 500), (200, 150), (1000, 120), (90, 700), (256, 256), (33, 17)]
    data = [encode_pil(_photo(s), "PNG") for s in sizes]
    batch = fastprep.decode_images(data, short_side=short, max_side=cap)
    for i, (w, h) in enumerate(sizes):
        row = {n: batch.column(n)[i].as_py() for n in ("width", "height", "error")}
        expected = _torchvision_size(w, h, short, cap)
        assert (row["width"], row["height"]) == expected, (w, h)
        assert row["width"] <= w and row["height"] <= h, "never upscaled"
        # The same resampling as a plain resize to that size.
        plain = fastprep.decode_images([data[i]], size=expected[::-1], mode="resize")
        np.testing.assert_array_equal(variable_pixels(batch, i), fastprep.pixels_to_numpy(plain)[0])


def test_keep_aspect_options_are_checked():
    with pytest.raises(ValueError, match="exclude"):
        fastprep.DecodeOptions(size=224, short_side=256)
    with pytest.raises(ValueError, match="positive"):
        fastprep.DecodeOptions(short_side=0)


# ------------------------------------------------------------ lossless metadata removal


def _exif_with_gps(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x0132] = "2024:01:02 03:04:05"  # DateTime
    if orientation != 1:
        exif[0x0112] = orientation
    gps = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    exif[0x8825] = gps
    return exif.tobytes()


XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description dc:creator="Jane Doe"/></x:xmpmeta>'


def _jpeg_with_everything(orientation: int = 1) -> bytes:
    img = _photo((160, 120))
    data = encode_pil(img, "JPEG", quality=92, exif=_exif_with_gps(orientation),
                      comment=b"secret comment")  # fmt: skip
    xmp = b"http://ns.adobe.com/xap/1.0/\x00" + XMP
    iptc = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0c\x1c\x02\x50\x00\x08Jane Doe"
    segments = b"".join(
        marker + struct.pack(">H", len(body) + 2) + body
        for marker, body in ((b"\xff\xe1", xmp), (b"\xff\xed", iptc))
    )
    return data[:2] + segments + data[2:] + b"trailing bytes after EOI"


def _no_metadata_left(data: bytes) -> None:
    for needle in (b"CameraMaker", b"2024:01:02", b"Jane Doe", b"secret comment", b"xmpmeta",
                   b"Photoshop 3.0", b"trailing bytes"):  # fmt: skip
        assert needle not in data, needle
    with Image.open(io.BytesIO(data)) as img:
        exif = img.getexif()
        assert set(exif) <= {0x0112}, f"EXIF beyond the orientation: {dict(exif)}"
        assert not exif.get_ifd(0x8825), "GPS"
        assert "xmp" not in img.info and "XML:com.adobe.xmp" not in img.info
        assert "comment" not in img.info
        for key in img.info:
            assert key in ("jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi",
                           "progressive", "progression", "adobe", "adobe_transform",
                           "icc_profile", "exif", "gamma", "transparency", "loop",
                           "duration", "background", "version", "lossless",
                           "srgb"), key  # fmt: skip


def _shown(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


@pytest.mark.parametrize("orientation", [1, 6])
def test_jpeg_metadata_removed_pixels_and_orientation_kept(orientation):
    source = _jpeg_with_everything(orientation)
    (stripped,) = fastprep.strip_metadata([source], [orientation]).to_pylist()
    _no_metadata_left(stripped)
    with Image.open(io.BytesIO(stripped)) as img:
        assert img.getexif().get(0x0112, 1) == orientation
    np.testing.assert_array_equal(_shown(stripped), _shown(source))


def test_png_webp_gif_metadata_removed_losslessly():
    img = _photo((60, 40))
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe")
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add_text("Comment", "secret comment", zip=True)
    png = encode_pil(img, "PNG", pnginfo=info, exif=_exif_with_gps())
    webp = encode_pil(img, "WEBP", lossless=True, exif=_exif_with_gps(), xmp=XMP)
    gif = encode_pil(img.convert("P"), "GIF", comment=b"secret comment")
    stripped = fastprep.strip_metadata([png, webp, gif]).to_pylist()
    for source, out in zip((png, webp, gif), stripped):
        assert out is not None
        _no_metadata_left(out)
        np.testing.assert_array_equal(_shown(out), _shown(source))


def test_formats_without_lossless_removal_are_null():
    tiff = encode_pil(_photo((20, 10)), "TIFF")
    bmp = encode_pil(_photo((20, 10)), "BMP")
    out = fastprep.strip_metadata([tiff, bmp, b"garbage"]).to_pylist()
    assert out[0] is None and out[1] == bmp and out[2] is None


# --------------------------------------------------------------------- prep stores


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sizes = [(500, 375), (375, 500), (200, 150), (640, 480), (300, 300), (800, 200)]
    for i, size in enumerate(sizes):
        img = _photo(size, seed=i)
        if i == 0:
            data = _jpeg_with_everything(6)
        elif i == 4:
            data = encode_pil(img, "PNG")
        elif i == 5:
            data = encode_pil(img, "TIFF")
        else:
            data = encode_pil(img, "JPEG", quality=90)
        (src / f"p{i}.{'png' if i == 4 else 'tif' if i == 5 else 'jpg'}").write_bytes(data)
        (src / f"p{i}.txt").write_text(f"#tag{i} #common")
    return src


def _bytes(value) -> bytes:
    """An image cell: bytes, or a Hugging Face ``Image`` struct's bytes."""
    return value["bytes"] if isinstance(value, dict) else value


def _written(out) -> pa.Table:
    manifest = json.loads((out / "manifest.json").read_text())
    tables = [pq.read_table(out / o["file"]) for o in manifest["outputs"]]
    return pa.concat_tables(tables).sort_by("key")


@pytest.mark.parametrize(("image_format", "subsampling"), [("jpeg", "420"), ("jpeg", "444"),
                                                           ("webp", "420")])  # fmt: skip
def test_prep_resized_store(tmp_path, corpus, image_format, subsampling):
    from fastprep.pipeline import prep

    out = tmp_path / "out"
    result = prep(str(corpus), str(out), store="resized", short_side=256, max_side=512,
                  image_format=image_format, subsampling=subsampling, dedup_radius=None)  # fmt: skip
    assert result.manifest["totals"] == {"input": 6, "written": 6, "dropped": {}}
    table = _written(out)
    column = "jpg" if image_format == "jpeg" else "webp"
    assert "pixels" not in table.schema.names and column in table.schema.names
    for key, data, w, h, sw, sh in zip(
        *(
            table.column(n).to_pylist()
            for n in ("key", column, "width", "height", "source_width", "source_height")
        )
    ):
        assert (w, h) == _torchvision_size(sw, sh, 256, 512), key
        with Image.open(io.BytesIO(_bytes(data))) as img:
            assert img.size == (w, h) and img.format == image_format.upper()
            assert not img.getexif(), "re-encoded images carry no EXIF"
            if image_format == "jpeg":
                from PIL import JpegImagePlugin

                sampling = JpegImagePlugin.get_sampling(img)
                assert sampling == (0 if subsampling == "444" else 2), sampling


def test_prep_original_store_keeps_pixels_and_drops_metadata(tmp_path, corpus):
    from fastprep.pipeline import prep

    out = tmp_path / "out"
    prep(str(corpus), str(out), store="original", dedup_radius=None)
    table = _written(out)
    assert "pixels" not in table.schema.names
    formats = dict(zip(table.column("key").to_pylist(), table.column("format").to_pylist()))
    assert formats["p4"] == "png" and formats["p1"] == "jpeg"
    assert formats["p5"] == "png", "TIFF metadata cannot go losslessly: stored as PNG"
    for key, data in zip(table.column("key").to_pylist(), table.column("image").to_pylist()):
        data = _bytes(data)
        _no_metadata_left(data)
        source = next(corpus.glob(f"{key}.*[!t]"))  # the image, not its .txt
        np.testing.assert_array_equal(_shown(data), _shown(source.read_bytes()), key)


def test_staging_holds_the_encoded_bytes(corpus):
    """Pass 1 stages what pass 2 writes: encoded bytes, not pixels."""
    from fastprep.pipeline.passes import image_stage
    from fastprep.pipeline.settings import PrepSettings
    from fastprep.pipeline.sources import open_source

    batch = next(iter(open_source(str(corpus), batch_size=8)))
    for settings, column in (
        (PrepSettings(store="resized", short_side=128), "jpg"),
        (PrepSettings(image_format="webp"), "webp"),
        (PrepSettings(store="original"), "image"),
    ):
        staged = image_stage(settings, 1)(batch)
        assert "pixels" not in staged.schema.names, settings.store
        sizes = [len(v) for v in staged.column(column).to_pylist() if v]
        assert len(sizes) == batch.num_rows
        raw = sum(w * h * 3 for w, h in zip(staged.column("source_width").to_pylist(),
                                            staged.column("source_height").to_pylist()))  # fmt: skip
        assert sum(sizes) < raw / 3, "staged bytes are encoded, far below raw pixels"


def test_dataloader_reads_the_stores(tmp_path, corpus):
    torch = pytest.importorskip("torch")
    from fastprep.pipeline import prep
    from fastprep.torch import DataLoader, evaluate, train

    for store, options in (("resized", {"short_side": 256}), ("original", {})):
        out = tmp_path / store
        prep(str(corpus), str(out), store=store, dedup_radius=None, **options)
        table = _written(out)
        column = "jpg" if store == "resized" else "image"
        # Eval: Resize + CenterCrop on the stored bytes, as decode_images does.
        loader = DataLoader(str(out), batch_size=3, transform=evaluate(64), seed=0)
        got = {}
        for batch in loader:
            for key, image in zip(batch["key"], batch["image"]):
                got[key] = image.permute(1, 2, 0).numpy()
        assert sorted(got) == table.column("key").to_pylist()
        expected = fastprep.decode_images(table.column(column), size=64, mode="center_crop")
        for i, key in enumerate(table.column("key").to_pylist()):
            np.testing.assert_array_equal(got[key], fastprep.pixels_to_numpy(expected)[i])
        # Train: per-epoch random crops, deterministic for a seed, resumable.
        loader = DataLoader(str(out), batch_size=2, transform=train(48), seed=3, shuffle=True)
        first = [b["image"].clone() for b in loader]
        again = [b["image"].clone() for b in DataLoader(
            str(out), batch_size=2, transform=train(48), seed=3, shuffle=True)]  # fmt: skip
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        assert sum(len(b) for b in first) == 6 and first[0].shape[1:] == (3, 48, 48)


def test_prep_raw_resized_store_is_exact_and_loadable(tmp_path, corpus):
    """``image_format="raw"``: each image's own keep-aspect pixels, uncompressed
    behind a PPM header (Pillow reads it), equal to decode_images' pixels."""
    from fastprep.pipeline import prep

    out = tmp_path / "raw"
    prep(str(corpus), str(out), store="resized", short_side=96, image_format="raw",
         dedup_radius=None, report=False)  # fmt: skip
    table = _written(out)
    sources = {p.stem: p for p in corpus.iterdir() if p.suffix != ".txt"}
    for key, data in zip(table.column("key").to_pylist(), table.column("ppm").to_pylist()):
        data = _bytes(data)
        assert data.startswith(b"P6\n")
        # prep hashes in the same pass, which decodes at full scale (no DCT shortcut).
        expected = fastprep.decode_images([sources[key].read_bytes()], short_side=96,
                                          hashes=["pdq"])  # fmt: skip
        np.testing.assert_array_equal(_shown(data), variable_pixels(expected, 0), key)
    torch = pytest.importorskip("torch")
    from fastprep.torch import DataLoader, evaluate

    loader = DataLoader(str(out), batch_size=4, transform=evaluate(64))
    images = torch.cat([b["image"] for b in loader])
    assert images.shape == (table.num_rows, 3, 64, 64) and not loader.errors


def test_raw_format_needs_a_resized_store():
    from fastprep.errors import SettingsError
    from fastprep.pipeline.settings import PrepSettings

    with pytest.raises(SettingsError, match="raw"):
        PrepSettings.from_options(image_format="raw")


def test_resume_and_ddp_on_a_store(tmp_path, corpus):
    torch = pytest.importorskip("torch")
    from fastprep.pipeline import prep
    from fastprep.torch import DataLoader, train

    out = tmp_path / "store"
    prep(str(corpus), str(out), store="resized", short_side=64, dedup_radius=None, report=False)
    options = {"batch_size": 2, "transform": train(32), "seed": 7, "shuffle": True}

    def run(loader):
        return [(b["index"].tolist(), b["image"].clone()) for b in loader]

    reference = run(DataLoader(str(out), **options))
    loader = DataLoader(str(out), **options)
    got = []
    for i, b in enumerate(loader):
        got.append((b["index"].tolist(), b["image"].clone()))
        if i == 0:
            state = loader.state_dict()
            break
    resumed = DataLoader(str(out), **(options | {"seed": 999}))  # the seed is in the state
    resumed.load_state_dict(state)
    got += run(resumed)
    assert [g[0] for g in got] == [r[0] for r in reference]
    assert all(torch.equal(a[1], b[1]) for a, b in zip(got, reference))

    # Two ranks: equal batch counts, disjoint shards covering the store.
    seen, counts = [], []
    for rank in range(2):
        batches = run(DataLoader(str(out), rank=rank, world_size=2, **options))
        counts.append(len(batches))
        seen.append({i for idx, _ in batches for i in idx})
    assert counts[0] == counts[1]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(6))
