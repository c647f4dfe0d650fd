"""Single-pass prep (``single_pass=True`` with a given ``vocabulary``): each
source batch is decided and written as it is read. The same outputs as the
two-pass job where both rules keep the same copy, the first copy kept where
they differ, shards cut across batches, pixels never staged, the settings'
rules enforced, and the growing index it dedups with."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import fastprep as fp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastprep.dedup import GrowingIndex, match_hashes
from fastprep.errors import SettingsError
from fastprep.hashtags import load_vocabulary
from fastprep.pipeline import prep
from test_cli import fastprep, one_line_error

SAMPLES = Path(fp.__file__).parent / "sample_data"
CORPUS, EVAL = SAMPLES / "corpus", SAMPLES / "eval"


@pytest.fixture(scope="module")
def two_pass(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two") / "out"
    prep(CORPUS, out, size=32, batch_size=4, records_per_shard=5, eval_source=str(EVAL))
    return out


def _dropped(out: Path) -> dict[str, str]:
    return {d["key"]: d["reason"] for d in pq.read_table(out / "dropped.parquet").to_pylist()}


def test_same_outputs_as_two_passes_when_the_first_copy_is_the_keeper(two_pass, tmp_path):
    """On the sample corpus every duplicate's first copy is also the largest:
    both modes keep the same records, in the same shards (cut at 5 records
    across batches of 4), cell for cell."""
    out = tmp_path / "out"
    result = prep(
        CORPUS, out, size=32, batch_size=4, records_per_shard=5, eval_source=str(EVAL),
        vocabulary=str(two_pass / "vocab.json"), single_pass=True,
    )  # fmt: skip
    one, two = result.manifest, json.loads((two_pass / "manifest.json").read_text())
    assert one["totals"] == two["totals"]
    assert one["totals"]["written"] + sum(one["totals"]["dropped"].values()) == 35
    assert [s["records"] for s in one["outputs"]] == [5, 5, 5, 5, 4]
    assert _dropped(out) == _dropped(two_pass)
    assert {"duplicate_of: chelsea_cat", "eval_leak: launch_night", "opt_out", "no_label"} <= set(
        _dropped(out).values()
    )
    for shard in two["outputs"]:
        assert pq.read_table(out / shard["file"]).equals(pq.read_table(two_pass / shard["file"]))
    for name in ("hashtag_counts.parquet", "eval_leaks.parquet"):
        assert pq.read_table(out / name).equals(pq.read_table(two_pass / name)), name
    assert (out / "vocab.json").read_text() == (two_pass / "vocab.json").read_text()
    assert one["settings"]["single_pass"] is True
    assert Path(result.report).read_text().startswith("<!DOCTYPE html>")
    assert not (out / "_staging").exists()


def _jpeg(image, size: int | None = None, quality: int = 90) -> bytes:
    if size:
        image = image.resize((size, size * image.height // image.width))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_the_first_copy_is_kept_where_two_passes_keep_the_largest(tmp_path):
    from PIL import Image

    photo = Image.open(CORPUS / "espresso_morning.jpg").convert("RGB")
    src = tmp_path / "src"
    src.mkdir()
    # A small copy first, the full-size photo later, an exact copy of the small one last.
    files = {
        "a_small": _jpeg(photo, 160),
        "b_large": _jpeg(photo),
        "c_unlabelled": _jpeg(photo, 120),
    }
    files["d_small_again"] = files["a_small"]
    for key, data in files.items():
        (src / f"{key}.jpg").write_bytes(data)
        (src / f"{key}.txt").write_text("no tags" if key == "c_unlabelled" else "#coffee")
    two = prep(src, tmp_path / "two", size=32, report=False)
    assert _dropped(tmp_path / "two") == {
        "a_small": "duplicate_of: b_large",
        "c_unlabelled": "duplicate_of: b_large",
        "d_small_again": "duplicate_of: a_small",  # an exact copy names its first copy
    }
    vocab = str(tmp_path / "two" / "vocab.json")
    one = prep(src, tmp_path / "one", size=32, report=False, vocabulary=vocab, single_pass=True,
               batch_size=2)  # fmt: skip
    assert _dropped(tmp_path / "one") == {
        "b_large": "duplicate_of: a_small",
        "c_unlabelled": "duplicate_of: a_small",
        "d_small_again": "duplicate_of: a_small",
    }
    assert one.written == two.written == 1
    pairs = pq.read_table(tmp_path / "one" / "duplicate_pairs.parquet").to_pylist()
    assert [(p["key_a"], p["key_b"]) for p in pairs] == [
        ("a_small", "b_large"), ("a_small", "c_unlabelled"), ("a_small", "d_small_again"),
    ]  # fmt: skip
    assert pairs[2]["distance"] == 0 and 0 < pairs[0]["distance"] <= 31


def test_an_unlabelled_first_copy_leaves_the_keeping_to_a_labelled_one(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for key, caption in (("a", "no tags"), ("b", "#coffee"), ("c", "still none")):
        shutil.copy(CORPUS / "espresso_morning.jpg", src / f"{key}.jpg")
        (src / f"{key}.txt").write_text(caption)
    vocab = tmp_path / "vocab.json"
    assert fastprep("vocab", str(src), "--out", str(vocab), "--quiet").returncode == 0
    result = prep(src, tmp_path / "out", size=32, report=False, vocabulary=str(vocab),
                  single_pass=True)  # fmt: skip
    assert result.written == 1
    assert _dropped(tmp_path / "out") == {"a": "no_label", "c": "duplicate_of: b"}


def test_pixels_are_never_staged(two_pass, tmp_path, monkeypatch):
    import fastprep.pipeline.passes as passes
    import fastprep.pipeline.single_pass as single

    staged: list[pa.Schema] = []
    real = single.atomic_arrow
    monkeypatch.setattr(single, "atomic_arrow", lambda t, p: (staged.append(t.schema), real(t, p)))
    monkeypatch.setattr(passes, "atomic_arrow", lambda t, p: pytest.fail("a part was staged"))
    prep(CORPUS, tmp_path / "out", size=32, batch_size=8, vocabulary=str(two_pass / "vocab.json"),
         single_pass=True, report=False)  # fmt: skip
    decided = [s for s in staged if "code" in s.names]
    assert decided, "each part's small columns and outcomes are staged"
    assert all("caption" in s.names and "pdq" in s.names for s in decided)
    assert not any({"pixels", "image", "jpg"} & set(s.names) for s in staged)


class Interrupted(Exception):
    pass


def _batches(stop_after: int | None = None):
    from fastprep.pipeline import folder_source

    for i, batch in enumerate(folder_source(CORPUS, batch_size=4)):
        if stop_after is not None and i == stop_after:
            raise Interrupted
        yield batch


@pytest.mark.parametrize("stop_after", [2, 5, 8])
def test_resume_after_an_interruption_gives_the_uninterrupted_output(
    two_pass, tmp_path, stop_after, monkeypatch
):
    """Stopped after some parts (before any shard, after some, mid-shard):
    resuming keeps the written shards, replays the decided parts without
    decoding them, and ends with the uninterrupted run's outputs."""
    options = {
        "size": 32, "records_per_shard": 5, "eval_source": str(EVAL), "single_pass": True,
        "vocabulary": str(two_pass / "vocab.json"), "batch_size": 4,
    }  # fmt: skip
    whole = tmp_path / "whole"
    prep(_batches(), whole, **options)
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        prep(_batches(stop_after), out, **options)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    assert len(before) == {2: 0, 5: 1, 8: 3}[stop_after], sorted(before)
    assert not (out / "manifest.json").exists()
    import fastprep.pipeline.passes as passes

    decoded = []
    real = passes._processed
    monkeypatch.setattr(passes, "_processed", lambda c, b: (decoded.append(b), real(c, b))[1])
    result = prep(_batches(), out, resume=True, **options)
    parts = -(-35 // 4)
    assert len(decoded) == parts if not before else len(decoded) < parts, len(decoded)
    for name, mtime in before.items():
        assert (out / name).stat().st_mtime_ns == mtime, f"{name} was written again"
    ma = json.loads((whole / "manifest.json").read_text())
    assert result.manifest["totals"] == ma["totals"] and result.manifest["outputs"] == ma["outputs"]
    for name in ("dropped.parquet", "eval_leaks.parquet", "duplicate_pairs.parquet",
                 "hashtag_counts.parquet", *(s["file"] for s in ma["outputs"])):  # fmt: skip
        assert pq.read_table(out / name).equals(pq.read_table(whole / name)), name
    assert not (out / "_staging").exists()


def test_resume_refuses_a_changed_source(two_pass, tmp_path):
    from fastprep.errors import ResumeMismatchError
    from fastprep.pipeline import folder_source

    options = {
        "size": 32, "records_per_shard": 3, "single_pass": True, "batch_size": 4,
        "vocabulary": str(two_pass / "vocab.json"),
    }  # fmt: skip
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        prep(_batches(6), out, **options)
    assert list(out.glob("shard-*")), "shards were written before the interruption"

    def shifted():
        batches = list(folder_source(CORPUS, batch_size=4))
        yield from [batches[1], batches[0], *batches[2:]]

    with pytest.raises(ResumeMismatchError, match="differs"):
        prep(shifted(), out, resume=True, **options)


def test_settings_rules(two_pass, tmp_path):
    vocab = str(two_pass / "vocab.json")
    with pytest.raises(SettingsError, match="needs a given vocabulary"):
        prep(CORPUS, tmp_path / "a", single_pass=True)
    with pytest.raises(SettingsError, match="top_k and min_count"):
        prep(CORPUS, tmp_path / "b", vocabulary=vocab, top_k=3)
    with pytest.raises(SettingsError, match="is not a file"):
        prep(CORPUS, tmp_path / "c", vocabulary=str(tmp_path / "missing.json"))


def test_a_given_vocabulary_labels_a_two_pass_run(two_pass, tmp_path):
    tags = load_vocabulary(two_pass / "vocab.json").tags
    small = {"tags": list(tags[:2])}
    path = tmp_path / "small.json"
    full = json.loads((two_pass / "vocab.json").read_text())
    full.update({k: v[:2] for k, v in full.items() if isinstance(v, list) and len(v) == len(tags)})
    path.write_text(json.dumps(full))
    assert load_vocabulary(path).tags == small["tags"]
    result = prep(CORPUS, tmp_path / "out", size=32, vocabulary=str(path), report=False)
    assert load_vocabulary(tmp_path / "out" / "vocab.json").tags == small["tags"]
    labels = [
        x
        for shard in result.manifest["outputs"]
        for x in pq.read_table(tmp_path / "out" / shard["file"]).column("labels").to_pylist()
    ]
    assert labels and all(set(ids) <= {0, 1} and ids for ids in labels)


def test_cli_single_pass(two_pass, tmp_path):
    vocab = str(two_pass / "vocab.json")
    out = tmp_path / "out"
    proc = fastprep("prep", str(CORPUS), "--out", str(out), "--size", "32", "--vocabulary", vocab,
                    "--single-pass", "--no-report", "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["single_pass"] and manifest["totals"]["written"] > 0
    proc = fastprep("prep", str(CORPUS), "--out", str(tmp_path / "b"), "--single-pass")
    assert "--single-pass needs --vocabulary" in one_line_error(proc, "prep")
    proc = fastprep("prep", str(CORPUS), "--out", str(tmp_path / "c"), "--vocabulary", vocab,
                    "--top-k", "3")  # fmt: skip
    assert "--top-k shapes a built vocabulary" in one_line_error(proc, "prep")


def test_growing_index_answers_as_matching_everything_added():
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 256, (2_600, 32), dtype=np.uint8)
    hashes[2_300:] = hashes[:300]
    hashes[2_300:, 5] ^= 0b10110  # near copies: 3 bits flipped
    column = pa.array([bytes(h) for h in hashes], pa.binary(32))
    index = GrowingIndex()
    for start in range(0, 2_000, 333):  # past the size where it starts slot tables
        index.add(column.slice(start, min(333, 2_000 - start)))
    assert len(index) == 2_000
    queries = column.slice(2_000)
    found = index.match(queries, 31)
    assert found.equals(match_hashes(queries, column.slice(0, 2_000), 31))
    assert found.num_rows >= 300
    with pytest.raises(ValueError, match="null"):
        index.add(pa.array([None], pa.binary(32)))
    with pytest.raises(ValueError):
        index.add(pa.array([b"12345678"], pa.binary(8)))  # another width


@pytest.mark.parametrize(
    "options",
    [
        {"sink": "webdataset"},
        {"sink": "arrow", "hf_datasets": False},
        {"store": "resized", "short_side": 40},
        {"store": "original"},
    ],
    ids=["webdataset", "arrow-canonical", "resized", "original"],
)
def test_every_sink_and_store_gives_the_two_pass_shards(two_pass, tmp_path, options):
    base = {"size": 32, "batch_size": 4, "records_per_shard": 5, "report": False, **options}
    prep(CORPUS, tmp_path / "two", **base)
    result = prep(CORPUS, tmp_path / "one", **base, single_pass=True,
                  vocabulary=str(tmp_path / "two" / "vocab.json"))  # fmt: skip
    two = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert result.manifest["outputs"] == two["outputs"]
    for shard in two["outputs"]:
        name = shard["file"]
        one_path, two_path = tmp_path / "one" / name, tmp_path / "two" / name
        if name.endswith(".arrow"):  # the same table (record batches may be cut differently)
            from fastprep.pipeline.io import read_arrow

            one, two_table = read_arrow(str(one_path)), read_arrow(str(two_path))
            assert one.schema == two_table.schema and one.equals(two_table), name
        elif name.endswith(".parquet"):
            assert pq.read_table(one_path).equals(pq.read_table(two_path)), name
        else:
            assert one_path.read_bytes() == two_path.read_bytes(), name


def test_kept_rows_stay_views_of_their_batch():
    """Survivors are cut out as slices of the decoded batch (no pixel copied)
    unless they are so scattered that the slices would be tiny."""
    from fastprep.pipeline.passes import rows_of

    pixels = pa.array(np.arange(64 * 12, dtype=np.uint8)).cast(pa.uint8())
    table = pa.table({"pixels": pa.FixedSizeListArray.from_arrays(pixels, 12), "i": range(64)})
    address = table.column("pixels").chunk(0).values.buffers()[1].address
    cases = [(np.arange(10, 40), True), (np.r_[0:20, 30:64], True), (np.arange(0, 64, 2), False),
             (np.array([], int), None)]  # fmt: skip
    for rows, views in cases:
        got = rows_of(table, rows)
        assert got.equals(table.take(pa.array(rows, pa.int64()))), rows
        if views is not None:
            chunks = got.column("pixels").chunks
            assert all(c.values.buffers()[1].address == address for c in chunks) == views, rows
