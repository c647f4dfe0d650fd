"""WebDataset and img2dataset layouts survive prep: collision-free keys that
round-trip, extra members (``.cls``, nested JSON) passed through, failed
img2dataset downloads dropped as ``download_failed``, source columns kept
under their own names, and ``source`` relative to the source root."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset
from fastprep.pipeline import prep, tar_source
from fastprep.pipeline.sources import tar_key, untar_key
from test_pipeline import PHOTOS, _jpeg

COLLIDING = ["a/b", "a_b", "a.b", "a%2Fb", "x/y.z"]


def _records(keys: list[str]) -> list[dict]:
    return [
        {"key": k, "image": _jpeg(PHOTOS[i]), "caption": f"shot {i} #nature #cat{i % 2}"}
        for i, k in enumerate(keys)
    ]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_tar_keys_escape_reversibly_without_collisions():
    names = [tar_key(k) for k in COLLIDING]
    assert len(set(names)) == len(names)
    assert all("/" not in n and "." not in n for n in names)
    assert [untar_key(n) for n in names] == COLLIDING
    assert tar_key("a_b") == "a_b"  # plain keys are unchanged


def test_webdataset_round_trip_with_colliding_keys_and_cls(tmp_path):
    records = _records(COLLIDING)
    # A folder source holds all five keys: a/b.jpg, a_b.jpg, a.b.jpg ...
    src = tmp_path / "src"
    for i, r in enumerate(records):
        path = src / f"{r['key']}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(r["image"])
        meta = {"caption": r["caption"], "extra": {"nested": [1, {"deep": i}]}}
        path.with_name(path.name[: -len(".jpg")] + ".json").write_text(json.dumps(meta))
    first = prep(src, tmp_path / "wds1", size=32, sink="webdataset", min_quality=0)
    assert first.written == len(records)
    urls = [str(tmp_path / "wds1" / s["file"]) for s in first.manifest["outputs"]]
    samples = list(webdataset.WebDataset(urls, shardshuffle=False))  # no duplicate names
    assert sorted(json.loads(s["json"])["key"] for s in samples) == sorted(COLLIDING)
    assert sorted(s["__key__"] for s in samples) == sorted(tar_key(k) for k in COLLIDING)
    for s in samples:
        meta = json.loads(s["json"])
        assert json.loads(meta["extra"])["nested"][1]["deep"] == COLLIDING.index(meta["key"])

    # Add .cls members (webdataset's class labels) and an unknown extension,
    # then prep the shards again: keys, .cls and the rest come back as they were.
    shard = tmp_path / "with-cls.tar"
    with tarfile.open(urls[0]) as tar_in, tarfile.open(shard, "w") as tar_out:
        for member in tar_in.getmembers():
            data = tar_in.extractfile(member).read()
            _add(tar_out, member.name, data)
            if member.name.endswith(".txt"):
                stem = member.name[: -len(".txt")]
                cls = str(sorted(COLLIDING).index(untar_key(stem))).encode()
                _add(tar_out, f"{stem}.cls", cls)
                _add(tar_out, f"{stem}.seg.bin", b"\x00\x01" + cls)
    rows = pa.Table.from_batches(list(tar_source(shard))).to_pylist()
    assert sorted(r["key"] for r in rows) == sorted(COLLIDING)
    assert all(r["cls"] == str(sorted(COLLIDING).index(r["key"])).encode() for r in rows)
    assert all(r["source"] == "with-cls.tar" for r in rows)  # relative to its folder
    second = prep(shard, tmp_path / "wds2", size=32, sink="webdataset", min_quality=0)
    assert second.written == len(records)
    urls = [str(tmp_path / "wds2" / s["file"]) for s in second.manifest["outputs"]]
    samples = list(webdataset.WebDataset(urls, shardshuffle=False))
    assert len(samples) == len(records)
    for s in samples:
        key = json.loads(s["json"])["key"]
        assert s["__key__"] == tar_key(key)
        assert s["cls"] == str(sorted(COLLIDING).index(key)).encode()
        assert s["seg.bin"] == b"\x00\x01" + s["cls"]
    # In a Parquet sink the members are binary columns under their own names.
    third = prep(shard, tmp_path / "pq", size=32, min_quality=0)
    table = pq.read_table(tmp_path / "pq" / third.manifest["outputs"][0]["file"])
    assert {"cls", "seg.bin"} <= set(table.schema.names)


def _img2dataset_parquet(path: Path) -> list[dict]:
    """The layout img2dataset writes with output_format=parquet: failed rows
    keep their status and error message, with null image bytes."""
    ok = _records([f"{i:09d}" for i in range(4)])
    rows = []
    for i, r in enumerate(ok):
        rows.append(
            {
                "key": r["key"],
                "jpg": r["image"],
                "caption": r["caption"],
                "url": f"https://example.com/{i}.jpg",
                "status": "success",
                "error_message": None,
                "width": 256 + i,
                "height": 192 + i,
                "original_width": 1024 + i,
                "original_height": 768 + i,
                "sha256": f"{i:064x}",
            }
        )
    for i, (status, message) in enumerate(
        [("failed_to_download", "HTTP Error 404: Not Found"), ("failed_to_resize", None)]
    ):
        rows.append(
            {
                "key": f"1{i:08d}",
                "jpg": None,
                "caption": "#nature gone",
                "url": f"https://example.com/missing{i}.jpg",
                "status": status,
                "error_message": message,
                "width": None,
                "height": None,
                "original_width": None,
                "original_height": None,
                "sha256": None,
            }
        )
    table = pa.Table.from_pylist(rows)
    pq.write_table(table.set_column(1, "jpg", table.column("jpg").cast(pa.binary())), path)
    return rows


def test_img2dataset_parquet_with_failed_rows(tmp_path):
    (tmp_path / "laion").mkdir()
    rows = _img2dataset_parquet(tmp_path / "laion" / "00000.parquet")
    result = prep(tmp_path / "laion", tmp_path / "out", size=32, min_quality=0)
    totals = result.manifest["totals"]
    assert totals["input"] == 6 and totals["written"] == 4
    assert totals["dropped"] == {"download_failed": 2}
    dropped = pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    reasons = {d["key"]: d["reason"] for d in dropped}
    assert reasons == {
        "100000000": "download_failed: HTTP Error 404: Not Found",
        "100000001": "download_failed: failed_to_resize",
    }
    assert all(d["source"] == "00000.parquet" for d in dropped)
    table = pq.read_table(tmp_path / "out" / result.manifest["outputs"][0]["file"])
    written = {r["key"]: r for r in table.to_pylist()}
    for row in rows[:4]:
        got = written[row["key"]]
        # img2dataset's own columns keep their names and values; the decoded
        # output size is image_width/image_height next to them.
        for name in ("width", "height", "original_width", "original_height", "url", "sha256"):
            assert got[name] == row[name], name
        assert (got["image_width"], got["image_height"]) == (32, 32)
        assert got["source"] == "00000.parquet"
    absolute = prep(
        tmp_path / "laion",
        tmp_path / "abs",
        size=32,
        min_quality=0,
        source_options={"absolute_paths": True},
    )
    table = pq.read_table(tmp_path / "abs" / absolute.manifest["outputs"][0]["file"])
    assert set(table.column("source").to_pylist()) == {str(tmp_path / "laion" / "00000.parquet")}


def test_folder_sources_are_relative_to_the_root(tmp_path):
    records = _records(["one", "sub/two"])
    for r in records:
        path = tmp_path / "src" / f"{r['key']}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(r["image"])
        path.with_suffix(".txt").write_text(r["caption"])
    result = prep(tmp_path / "src", tmp_path / "out", size=32, min_quality=0)
    table = pq.read_table(tmp_path / "out" / result.manifest["outputs"][0]["file"])
    assert sorted(table.column("source").to_pylist()) == ["one.jpg", "sub/two.jpg"]


@pytest.mark.parametrize("sink", ["parquet", "webdataset"])
def test_hf_exported_parquet_is_a_source(tmp_path, sink):
    """A Parquet file exported by datasets (image = struct<bytes, path>, text)."""
    datasets = pytest.importorskip("datasets")
    records = _records(["p0", "p1", "p2"])
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": r["image"], "path": None} for r in records],
         "text": [r["caption"] for r in records]},
        features=features,
    )  # fmt: skip
    ds.to_parquet(str(tmp_path / "hf.parquet"))
    result = prep(tmp_path / "hf.parquet", tmp_path / "out", size=32, min_quality=0, sink=sink)
    assert result.manifest["totals"] == {"input": 3, "written": 3, "dropped": {}}
    # The Dataset object itself is a source too (streamed through Arrow).
    direct = prep(ds, tmp_path / "direct", size=32, min_quality=0, sink=sink)
    assert direct.manifest["totals"] == result.manifest["totals"]


def test_cli_exits_non_zero_when_nothing_is_written_unless_allowed(tmp_path, capsys):
    from fastprep.cli import main

    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"this is not a tar archive at all" * 40)
    out = tmp_path / "out"
    assert main(["prep", str(broken), "--out", str(out), "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not be read" in err[0] and "--allow-empty" in err[0]
    assert (out / "manifest.json").exists()  # the run itself is complete and accounted
    args = ["prep", str(broken), "--out", str(tmp_path / "ok"), "--quiet", "--no-report"]
    assert main([*args, "--allow-empty"]) == 0
    # Everything dropped (here: not public) is the same failure, said differently.
    src = tmp_path / "private"
    src.mkdir()
    (src / "a.jpg").write_bytes(_jpeg(PHOTOS[0]))
    (src / "a.json").write_text(json.dumps({"caption": "#x", "is_public": False}))
    assert main(["prep", str(src), "--out", str(tmp_path / "p"), "--quiet", "--no-report"]) == 2
    assert "nothing written" in capsys.readouterr().err


def test_local_brace_patterns_name_shards_in_order(tmp_path):
    records = _records([f"k{i}" for i in range(4)])
    for shard in range(3):
        with tarfile.open(tmp_path / f"shard-{shard:03d}.tar", "w") as tar:
            for r in records[shard : shard + 1]:
                _add(tar, f"{r['key']}.jpg", r["image"])
                _add(tar, f"{r['key']}.txt", r["caption"].encode())
    rows = pa.Table.from_batches(list(tar_source(str(tmp_path / "shard-{002..000}.tar"))))
    assert rows.column("key").to_pylist() == ["k2", "k1", "k0"]
    assert rows.column("source").to_pylist() == ["shard-002.tar", "shard-001.tar", "shard-000.tar"]
    result = prep(str(tmp_path / "shard-{000..001}.tar"), tmp_path / "out", size=32, min_quality=0)
    assert result.manifest["totals"]["input"] == 2
