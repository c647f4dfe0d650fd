"""End-to-end tests of the prep pipeline on small corpora built here from the
fixture photos: corrupt files, duplicates, private and opted-out records,
unlabelled captions and an eval set with a planted leak."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastprep.pipeline import folder_source, parquet_source, prep, tar_source
from fastprep.tensors import nested_shape
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"
PHOTOS = [
    *sorted((FIXTURES / "pdq" / "images" / "labelme-subset").glob("*.jpg")),
    FIXTURES / "exif-orientation" / "Landscape_1.jpg",
    FIXTURES / "exif-orientation" / "Portrait_1.jpg",
    FIXTURES / "pdq" / "images" / "dih" / "bridge-1-original.jpg",
]


def _jpeg(path: Path, scale: float = 1.0, quality: int = 90) -> bytes:
    img = Image.open(path).convert("RGB")
    if scale != 1.0:
        img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def corpus_records() -> list[dict]:
    """Records with the expected fate of each."""
    records = []
    for i, photo in enumerate(PHOTOS):
        records.append(
            {
                "key": f"photo{i}",
                "image": _jpeg(photo),
                "caption": f"day {i} #Nature #cat{i % 3}",
                "fate": "written",
            }
        )
    # A near-duplicate: the first big photo at half size, re-encoded.
    big = len(PHOTOS) - 1
    records.append(
        {
            "key": "zcopy",
            "image": _jpeg(PHOTOS[big], 0.5, 70),
            "caption": "again #nature",
            "fate": "duplicate_of",
        }
    )
    # Keys sort after the originals, so folder order keeps the originals first.
    records.append(
        {
            "key": "zexact",
            "image": records[big]["image"],
            "caption": "#nature",
            "fate": "duplicate_of",
        }
    )
    records.append(
        {
            "key": "broken",
            "image": records[0]["image"][:500],
            "caption": "#nature",
            "fate": "decode_error",
        }
    )
    records.append(
        {"key": "junk", "image": b"not an image", "caption": "#nature", "fate": "decode_error"}
    )
    records.append(
        {
            "key": "private",
            "image": _jpeg(PHOTOS[1]),
            "caption": "#nature",
            "is_public": False,
            "fate": "not_public",
        }
    )
    records.append(
        {
            "key": "optout",
            "image": _jpeg(PHOTOS[2]),
            "caption": "#nature",
            "opt_out": True,
            "fate": "opt_out",
        }
    )
    noise = Image.effect_noise((96, 64), 80).convert("RGB")
    buf = io.BytesIO()
    noise.save(buf, "JPEG")
    records.append(
        {"key": "untagged", "image": buf.getvalue(), "caption": "no tags here", "fate": "no_label"}
    )
    return records


def write_folder(root: Path, records: list[dict]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for r in records:
        (root / f"{r['key']}.jpg").write_bytes(r["image"])
        meta = {k: v for k, v in r.items() if k in ("caption", "is_public", "opt_out")}
        (root / f"{r['key']}.json").write_text(json.dumps(meta))


def write_tar(path: Path, records: list[dict]) -> None:
    with tarfile.open(path, "w") as tar:
        for r in records:
            for name, data in (
                (f"{r['key']}.jpg", r["image"]),
                (f"{r['key']}.txt", r["caption"].encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            meta = {k: v for k, v in r.items() if k in ("is_public", "opt_out")}
            if meta:
                data = json.dumps(meta).encode()
                info = tarfile.TarInfo(f"{r['key']}.json")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def write_parquet(path: Path, records: list[dict]) -> None:
    table = pa.table(
        {
            "key": [r["key"] for r in records],
            "jpg": pa.array([r["image"] for r in records], pa.binary()),
            "caption": [r["caption"] for r in records],
            "is_public": [r.get("is_public", True) for r in records],
            "opt_out": [r.get("opt_out", False) for r in records],
        }
    )
    pq.write_table(table, path)


def check_outcome(out: Path, records: list[dict], result) -> None:
    fates = {r["key"]: r["fate"] for r in records}
    dropped = pq.read_table(out / "dropped.parquet").to_pylist()
    got = {d["key"]: d["reason"].split(":")[0] for d in dropped}
    assert all(d["source"] for d in dropped), "every drop keeps its provenance"
    shards = [pq.read_table(out / s["file"]) for s in result.manifest["outputs"]]
    written = [k for t in shards for k in t.column("key").to_pylist()]
    for k in written:
        got[k] = "written"
    assert got == fates
    totals = result.manifest["totals"]
    assert totals["input"] == len(records) == totals["written"] + sum(totals["dropped"].values())
    # Shards read back (the default, Hugging Face datasets layout): pixels as
    # [64][64][3] fixed-size lists, labels as list<int64> class ids.
    table = pa.concat_tables(shards)
    assert nested_shape(table.column("pixels").type) == (64, 64, 3)
    assert table.column("labels").type == pa.list_(pa.int64())
    assert all(b"huggingface" in t.schema.metadata for t in shards)
    assert all(n > 0 for n in table.column("num_labels").to_pylist())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"] == totals
    assert not (out / "_staging").exists()
    assert not list(out.glob("*.tmp"))


@pytest.mark.parametrize("kind", ["folder", "tar", "parquet"])
def test_prep_accounts_for_every_record(tmp_path, kind):
    records = corpus_records()
    if kind == "folder":
        write_folder(tmp_path / "src", records)
        source = str(tmp_path / "src")
    elif kind == "tar":
        write_tar(tmp_path / "shard-0.tar", records[:7])
        write_tar(tmp_path / "shard-1.tar", records[7:])
        source = str(tmp_path / "shard-*.tar")
    else:
        write_parquet(tmp_path / "data.parquet", records)
        source = str(tmp_path / "data.parquet")
    result = prep(
        source, tmp_path / "out", size=64, records_per_shard=4, batch_size=5, min_quality=0
    )
    check_outcome(tmp_path / "out", records, result)
    assert max(s["records"] for s in result.manifest["outputs"]) <= 4


def test_eval_leaks_are_dropped_and_reported(tmp_path):
    records = [r for r in corpus_records() if r["fate"] == "written"]
    write_folder(tmp_path / "src", records)
    leaked = records[len(records) - 1]
    eval_dir = tmp_path / "eval"
    write_folder(
        eval_dir, [{"key": "eval-bridge", "image": _jpeg(PHOTOS[-1], 0.8, 80), "caption": ""}]
    )
    result = prep(
        tmp_path / "src", tmp_path / "out", size=32, eval_source=str(eval_dir), min_quality=0
    )
    leaks = pq.read_table(tmp_path / "out" / "eval_leaks.parquet").to_pylist()
    assert [(row["train_key"], row["eval_key"]) for row in leaks] == [
        (leaked["key"], "eval-bridge")
    ]
    assert result.dropped == {"eval_leak": 1}


def test_sources_stream_in_batches(tmp_path):
    records = corpus_records()
    write_folder(tmp_path / "src", records)
    write_tar(tmp_path / "a.tar", records)
    write_parquet(tmp_path / "d.parquet", records)
    for batches in (
        folder_source(tmp_path / "src", batch_size=3),
        tar_source(str(tmp_path / "a.tar"), batch_size=3),
        parquet_source(tmp_path / "d.parquet", batch_size=3),
    ):
        sizes = [b.num_rows for b in batches]
        assert sum(sizes) == len(records) and max(sizes) == 3


def test_cli_prep_runs_and_rejects_a_missing_source(tmp_path):
    import subprocess
    import sys

    write_folder(tmp_path / "src", [r for r in corpus_records() if r["fate"] == "written"])
    run = [
        sys.executable,
        "-m",
        "fastprep",
        "prep",
        str(tmp_path / "src"),
        "--out",
        str(tmp_path / "out"),
    ]
    done = subprocess.run([*run, "--size", "32"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "written to" in done.stdout
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["totals"]["written"] > 0
    missing = [
        sys.executable,
        "-m",
        "fastprep",
        "prep",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "o"),
    ]
    bad = subprocess.run(missing, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no such source" in bad.stderr


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        prep(str(tmp_path / "nope.tar"), tmp_path / "out")


def test_opt_out_list_by_hash(tmp_path):
    records = [r for r in corpus_records() if r["fate"] == "written"]
    write_folder(tmp_path / "src", records)
    import fastprep

    target = (
        fastprep.hash_images([records[0]["image"]], hashes=["xxh3"])
        .column("xxh3_128")[0]
        .as_py()
        .hex()
    )
    result = prep(
        tmp_path / "src", tmp_path / "out", size=32, opt_out_hashes=[target], min_quality=0
    )
    assert result.dropped == {"opt_out_list": 1}
    assert np.sum([s["records"] for s in result.manifest["outputs"]]) == len(records) - 1


def _jpeg_with_gps(path: Path) -> bytes:
    from PIL import ExifTags

    img = Image.open(path).convert("RGB")
    exif = img.getexif()
    exif[ExifTags.Base.Make] = "TestCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 29.0)
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=90)
    data = buf.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(ExifTags.IFD.GPSInfo), (
        "fixture carries GPS"
    )
    return data


def test_written_jpegs_carry_no_exif_or_gps(tmp_path):
    records = [
        {"key": f"gps{i}", "image": _jpeg_with_gps(p), "caption": "#travel", "fate": "written"}
        for i, p in enumerate(PHOTOS[:4])
    ]
    write_folder(tmp_path / "src", records)
    result = prep(tmp_path / "src", tmp_path / "out", size=48, image_format="jpeg", min_quality=0)
    assert result.written == 4
    table = pq.read_table(tmp_path / "out" / result.manifest["outputs"][0]["file"])
    assert "pixels" not in table.column_names
    for image in table.column("jpg").to_pylist():
        data = image["bytes"]  # an HF Image struct (the default layout)
        assert b"Exif" not in data and b"GPS" not in data and b"TestCam" not in data
        img = Image.open(io.BytesIO(data))
        assert img.size == (48, 48) and len(img.getexif()) == 0


def test_webdataset_shards_read_back_with_webdataset(tmp_path):
    webdataset = pytest.importorskip(
        "webdataset", reason="needs the webdataset package (test extra)"
    )
    records = [r for r in corpus_records() if r["fate"] == "written"]
    write_folder(tmp_path / "src", records)
    result = prep(
        tmp_path / "src",
        tmp_path / "out",
        size=32,
        sink="webdataset",
        records_per_shard=3,
        min_quality=0,
    )
    urls = [str(tmp_path / "out" / s["file"]) for s in result.manifest["outputs"]]
    assert all(u.endswith(".tar") for u in urls)
    samples = list(webdataset.WebDataset(urls, shardshuffle=False))
    assert len(samples) == result.written == len(records)
    for sample in samples:
        meta = json.loads(sample["json"])
        assert meta["labels"] and Image.open(io.BytesIO(sample["jpg"])).size == (32, 32)
        assert sample["txt"].decode().startswith("day ")


def test_odd_names_and_broken_or_mixed_metadata_are_accounted_not_fatal(tmp_path):
    """A file name that is not UTF-8, a JSON sidecar that does not parse, and
    consent values of another type than the rule's: every record still ends
    written or dropped with a reason, and an unreadable consent never passes."""
    import os

    records = corpus_records()[:6]
    src = tmp_path / "src"
    write_folder(src, records)
    odd = os.fsdecode(b"\xff\xfeodd")
    (src / f"{odd}.jpg").write_bytes(records[0]["image"][:-10] + b"\xff\xd9")
    (src / f"{odd}.txt").write_text("#nature odd name")
    (src / "photo1.json").write_text('{"caption": "#nature", "is_public": ')  # truncated
    (src / "photo2.json").write_text(json.dumps({"caption": "#nature", "is_public": "false"}))
    (src / "photo3.json").write_text(json.dumps({"caption": "#nature", "is_public": "yes"}))
    result = prep(src, tmp_path / "out", size=32, min_quality=0, dedup_radius=None, report=False)
    dropped = {
        d["key"]: d["reason"]
        for d in pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    }
    assert dropped["photo1"].startswith("bad_metadata: unreadable JSON sidecar")
    assert dropped["photo2"] == "not_public", "'false' as text still refuses consent"
    assert "photo3" not in dropped
    written = [
        k
        for s in result.manifest["outputs"]
        for k in pq.read_table(tmp_path / "out" / s["file"]).column("key").to_pylist()
    ]
    assert "\\xff\\xfeodd" in written + list(dropped), "the odd name keeps its bytes, escaped"
    assert result.manifest["totals"]["input"] == len(records) + 1 == len(written) + len(dropped)


def test_truncated_tar_and_corrupt_parquet_files_do_not_stop_the_run(tmp_path):
    """A shard cut short by a failed download, and a Parquet file that is
    garbage: the readable records are prepared, the unreadable remainder is
    one dropped record with a source_error reason, and the run finishes."""
    records = [r for r in corpus_records() if r["fate"] == "written"][:6]
    write_tar(tmp_path / "a.tar", records[:3])
    write_tar(tmp_path / "b.tar", records[3:])
    data = (tmp_path / "b.tar").read_bytes()
    (tmp_path / "b.tar").write_bytes(data[: len(data) // 2])  # cut mid-shard
    result = prep(str(tmp_path / "*.tar"), tmp_path / "out", size=32, report=False, min_quality=0)
    dropped = pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    errors = [d for d in dropped if d["reason"].startswith("source_error: unreadable tar shard")]
    assert len(errors) == 1 and errors[0]["source"].endswith("b.tar")
    totals = result.manifest["totals"]
    assert totals["input"] == totals["written"] + sum(totals["dropped"].values())
    assert totals["written"] >= 3, "the intact shard and the readable start of the cut one"

    folder = tmp_path / "pq"
    folder.mkdir()
    write_parquet(folder / "0.parquet", records[:3])
    (folder / "1.parquet").write_bytes(b"PAR1 this is not a parquet file PAR1")
    write_parquet(folder / "2.parquet", records[3:])
    result = prep(folder, tmp_path / "out2", size=32, report=False, min_quality=0)
    dropped = pq.read_table(tmp_path / "out2" / "dropped.parquet").to_pylist()
    assert [d["reason"].split(":")[0] for d in dropped] == ["source_error"]
    assert dropped[0]["source"].endswith("1.parquet")
    assert result.manifest["totals"]["written"] == 6


def test_a_duplicate_group_keeps_a_labelled_copy(tmp_path):
    """When the first copy has no hashtag, the labelled copy is the keeper
    (otherwise both would be dropped: one as no_label, one as its duplicate)."""
    photo = _jpeg(PHOTOS[-1])
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(photo)
    (src / "a.txt").write_text("no tags here")
    (src / "b.jpg").write_bytes(photo)
    (src / "b.txt").write_text("#mountain")
    (src / "c.jpg").write_bytes(_jpeg(PHOTOS[-1], 0.5, 70))  # a near-duplicate, unlabelled
    (src / "c.txt").write_text("again, no tags")
    result = prep(src, tmp_path / "out", size=32, report=False, min_quality=0)
    dropped = {
        d["key"]: d["reason"]
        for d in pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    }
    assert result.written == 1
    assert dropped == {"a": "duplicate_of: b", "c": "duplicate_of: b"}
