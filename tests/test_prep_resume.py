"""Interrupted and resumed prep runs, output-folder rules, WebP output and
the opt-out list: the pipeline's guarantees beyond one clean run."""

from __future__ import annotations

import importlib
import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastprep import hash_images
from fastprep.pipeline import OutputExistsError, ResumeMismatchError, prep
from fastprep.pipeline.stages import ImageStage
from fastprep.tensors import nested_shape
from PIL import Image
from test_pipeline import corpus_records, write_folder

# Shards are written by the shared I/O module's atomic writers.
job_module = importlib.import_module("fastprep.pipeline.io")

OPTIONS = {"size": 48, "records_per_shard": 3, "batch_size": 4, "min_quality": 0}


def shard_rows(out: Path, manifest: dict) -> list[pa.Table]:
    """Every shard's full content, pixels included."""
    return [pq.read_table(out / shard["file"]) for shard in manifest["outputs"]]


def same_tables(a: list[pa.Table], b: list[pa.Table]) -> bool:
    return len(a) == len(b) and all(x.equals(y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("resume") / "src"
    write_folder(root, corpus_records())
    return str(root)


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    result = prep(source, out, **OPTIONS)
    return out, result.manifest


def comparable(manifest: dict) -> dict:
    return {k: manifest[k] for k in ("outputs", "totals", "vocabulary", "settings")}


def test_interrupted_while_writing_shards_resumes_exactly(source, reference, tmp_path, monkeypatch):
    ref_out, ref_manifest = reference
    assert len(ref_manifest["outputs"]) >= 3, "the corpus must span several shards"
    out = tmp_path / "out"
    real = job_module.atomic_parquet

    def interrupt_third_shard(table, path, row_group_size):
        if os.path.basename(path) == "shard-00002.parquet":
            raise KeyboardInterrupt
        real(table, path, row_group_size)

    monkeypatch.setattr(job_module, "atomic_parquet", interrupt_third_shard)
    with pytest.raises(KeyboardInterrupt):
        prep(source, out, **OPTIONS)
    monkeypatch.setattr(job_module, "atomic_parquet", real)
    finished = sorted(p.name for p in out.glob("shard-*"))
    # A shard is written while the next fills: the ones before the failed one are done.
    assert finished[:2] == ["shard-00000.parquet", "shard-00001.parquet"]
    assert "shard-00002.parquet" not in finished
    assert not list(out.rglob("*.tmp")), "no half-written file"
    assert not (out / "manifest.json").exists()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}

    with pytest.raises(OutputExistsError, match="--resume"):
        prep(source, out, **OPTIONS)
    result = prep(source, out, resume=True, **OPTIONS)

    after = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    assert all(after[name] == before[name] for name in before), "finished shards are kept"
    assert comparable(result.manifest) == comparable(ref_manifest)
    assert same_tables(shard_rows(out, result.manifest), shard_rows(ref_out, ref_manifest))
    assert pq.read_table(out / "dropped.parquet").equals(pq.read_table(ref_out / "dropped.parquet"))


def test_interrupted_while_decoding_redoes_only_unfinished_parts(
    source, reference, tmp_path, monkeypatch
):
    ref_out, ref_manifest = reference
    out = tmp_path / "out"
    real = ImageStage.__call__
    calls = []
    interrupt = [True]

    def stage(self, batch):
        calls.append(batch.num_rows)
        if len(calls) == 3 and interrupt[0]:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(ImageStage, "__call__", stage)
    with pytest.raises(KeyboardInterrupt):
        prep(source, out, **OPTIONS)
    finished = len(list((out / "_staging").glob("part-*.done")))
    assert finished >= 2
    calls.clear()
    interrupt[0] = False
    result = prep(source, out, resume=True, **OPTIONS)
    parts = -(-ref_manifest["totals"]["input"] // OPTIONS["batch_size"])
    assert len(calls) <= parts - finished, "finished parts are not decoded again"
    assert comparable(result.manifest) == comparable(ref_manifest)
    assert same_tables(shard_rows(out, result.manifest), shard_rows(ref_out, ref_manifest))


def test_resume_refuses_other_settings_and_a_changed_source(source, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = ImageStage.__call__
    calls = []

    def stage(self, batch):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(ImageStage, "__call__", stage)
    with pytest.raises(KeyboardInterrupt):
        prep(source, out, **OPTIONS)
    monkeypatch.setattr(ImageStage, "__call__", real)
    with pytest.raises(ResumeMismatchError, match="size"):
        prep(source, out, resume=True, **(OPTIONS | {"size": 64}))
    # Same settings, but the first batch now holds other records.
    changed = tmp_path / "changed"
    changed.mkdir()
    for path in Path(source).iterdir():
        (changed / ("a" + path.name)).write_bytes(path.read_bytes())
    (out / "_staging" / "settings.json").write_text(
        (out / "_staging" / "settings.json").read_text().replace(source, str(changed))
    )
    with pytest.raises(ResumeMismatchError, match="differs"):
        prep(changed, out, resume=True, **OPTIONS)
    # Overwrite starts again from nothing.
    result = prep(source, out, overwrite=True, **OPTIONS)
    assert result.manifest["totals"]["input"] == len(corpus_records())


def test_resume_of_a_finished_run_returns_its_manifest(source, reference, tmp_path):
    out = tmp_path / "out"
    first = prep(source, out, **OPTIONS)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = prep(source, out, resume=True, **OPTIONS)
    assert again.manifest == first.manifest
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_webp_shards_decode_and_carry_no_metadata(source, tmp_path):
    result = prep(source, tmp_path / "out", image_format="webp", quality=80, **OPTIONS)
    table = pa.concat_tables(
        pq.read_table(tmp_path / "out" / s["file"]) for s in result.manifest["outputs"]
    )
    assert "pixels" not in table.schema.names
    assert table.schema.field("webp").type == pa.struct(
        [("bytes", pa.binary()), ("path", pa.string())]
    )
    for image in table.column("webp").to_pylist():  # HF Image structs (the default layout)
        blob = image["bytes"]
        assert blob[:4] == b"RIFF" and blob[8:16] == b"WEBPVP8 ", "simple lossy WebP, no VP8X"
        assert b"EXIF" not in blob and b"XMP " not in blob
        with Image.open(io.BytesIO(blob)) as img:
            assert img.format == "WEBP" and img.size == (48, 48)
            assert not img.getexif()


def test_opt_out_list_matches_re_encoded_copies_by_pdq(source, reference, tmp_path):
    _, ref_manifest = reference
    records = [r for r in corpus_records() if r["fate"] == "written"]
    target = records[3]
    # The requester submits their own copy: re-encoded, slightly smaller.
    img = Image.open(io.BytesIO(target["image"])).convert("RGB")
    img = img.resize((int(img.width * 0.9), int(img.height * 0.9)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=75)
    submitted = hash_images([buf.getvalue()], hashes=["pdq", "xxh3"])
    pdq_hex = submitted.column("pdq")[0].as_py().hex()
    exact_hex = (
        hash_images([records[4]["image"]], hashes=["xxh3"]).column("xxh3_128")[0].as_py().hex()
    )
    result = prep(source, tmp_path / "out", opt_out_hashes=[pdq_hex, exact_hex], **OPTIONS)
    dropped = {
        d["key"]: d["reason"]
        for d in pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    }
    assert dropped[target["key"]] == "opt_out_list"
    assert dropped[records[4]["key"]] == "opt_out_list"
    assert result.manifest["totals"]["dropped"]["opt_out_list"] == 2
    assert result.written == ref_manifest["totals"]["written"] - 2
    with pytest.raises(ValueError, match="neither"):
        prep(source, tmp_path / "bad", opt_out_hashes=["abc"], **OPTIONS)


@pytest.mark.parametrize("hf_datasets", [True, False])
def test_arrow_sink_holds_the_same_records_as_parquet(source, reference, tmp_path, hf_datasets):
    ref_out, ref_manifest = reference  # the default layout (hf_datasets=True)
    if not hf_datasets:  # the Arrow-canonical layout, in both sinks
        ref_out = tmp_path / "reference"
        ref_manifest = prep(source, ref_out, hf_datasets=False, **OPTIONS).manifest
    result = prep(source, tmp_path / "out", sink="arrow", hf_datasets=hf_datasets, **OPTIONS)
    assert [s["file"] for s in result.manifest["outputs"]] == [
        s["file"].replace(".parquet", ".arrow") for s in ref_manifest["outputs"]
    ]
    for mine, theirs in zip(result.manifest["outputs"], ref_manifest["outputs"]):
        with pa.memory_map(str(tmp_path / "out" / mine["file"])) as f:
            table = pa.ipc.open_file(f).read_all()
        pixels = table.schema.field("pixels").type
        if hf_datasets:
            assert nested_shape(pixels) == (48, 48, 3)
        else:
            assert isinstance(pixels, pa.FixedShapeTensorType)
        assert table.equals(pq.read_table(ref_out / theirs["file"]))
