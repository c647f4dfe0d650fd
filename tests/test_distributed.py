"""Engine-neutral scale-out pieces (``fastprep.distributed``): the sharded
multi-index-hashing join equals the single-machine search exactly, cluster
resolution equals ``deduplicate``, partial hashtag counts merge to the whole.
No Ray or Spark needed; the engines' own tests are test_ray.py / test_spark.py."""

from __future__ import annotations

import subprocess
import sys

import fastprep as fp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fastprep import distributed as D


def planted_hashes(n: int, copies: int, bits: int, max_flips: int, seed: int) -> np.ndarray:
    """``n`` random hashes plus ``copies`` near-copies of random ones with
    0..max_flips bits flipped (uint8 matrix, big-endian bytes)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    planted = []
    for _ in range(copies):
        h = base[rng.integers(0, n)].copy()
        for bit in rng.choice(bits, rng.integers(0, max_flips + 1), replace=False):
            h[bit // 8] ^= 1 << (bit % 8)
        planted.append(h)
    return np.vstack([base, *planted]) if planted else base


def as_arrow(matrix: np.ndarray) -> pa.Array:
    width = matrix.shape[1]
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(matrix), [None, pa.py_buffer(matrix.tobytes())]
    )


def sharded_self_join(hashes, radius, *, slot_bits=16, shards=5, ids=None) -> pa.Table:
    ids = np.arange(len(hashes)) if ids is None else ids
    entries = D.slot_entries(ids, hashes, radius, num_shards=shards, slot_bits=slot_bits)
    parts = [
        D.verify_entries(entries.filter(pc.equal(entries["shard"], k)), radius, slot_bits=slot_bits)
        for k in range(shards)
    ]
    return D.sort_pairs(parts)


# Radii on both sides of the pigeonhole steps (t = r // slots changes at 16, 32).
@pytest.mark.parametrize(
    ("radius", "slot_bits"),
    [(0, 16), (5, 16), (15, 16), (16, 16), (24, 16), (31, 16), (31, 8), (40, 8), (7, 32), (15, 32)],
)
def test_sharded_pdq_join_equals_single_machine(radius, slot_bits):
    hashes = as_arrow(planted_hashes(1500, 250, 256, 45, seed=radius))
    expected = fp.find_near_duplicates(hashes, radius)
    got = sharded_self_join(hashes, radius, slot_bits=slot_bits)
    assert got.num_rows == expected.num_rows
    assert got.equals(expected.cast(got.schema))
    if radius >= 15:
        assert got.num_rows > 50  # the planted copies are found, not just noise


@pytest.mark.parametrize("radius", [0, 4, 8, 12])
def test_sharded_64_bit_join_equals_single_machine(radius):
    matrix = planted_hashes(2000, 200, 64, 14, seed=100 + radius)
    words = matrix.view(">u8").reshape(-1).astype(np.uint64)  # phash-style uint64 column
    expected = fp.find_near_duplicates(words, radius)
    got = sharded_self_join(pa.array(words), radius, slot_bits=8)
    assert got.equals(expected.cast(got.schema))


def test_one_shard_many_shards_and_sparse_ids_agree():
    hashes = as_arrow(planted_hashes(800, 120, 256, 31, seed=7))
    expected = fp.find_near_duplicates(hashes, 31)
    ids = np.arange(len(hashes)) * 3 + 1000  # ids need not be positions
    for shards in (1, 2, 64):
        got = sharded_self_join(hashes, 31, shards=shards, ids=ids)
        assert np.array_equal((got["a"].to_numpy() - 1000) // 3, expected["a"].to_numpy())
        assert np.array_equal((got["b"].to_numpy() - 1000) // 3, expected["b"].to_numpy())


def test_nulls_never_match_and_ids_follow_their_records():
    matrix = planted_hashes(300, 60, 256, 20, seed=3)
    values = [bytes(h) for h in matrix]
    values[5] = None
    values[-1] = None
    hashes = pa.array(values, pa.binary(32))
    expected = fp.find_near_duplicates(hashes, 31)
    got = sharded_self_join(hashes, 31)
    assert got.equals(expected.cast(got.schema))


@pytest.mark.parametrize("radius", [8, 31])
def test_sharded_query_join_equals_match_hashes(radius):
    matrix = planted_hashes(1500, 300, 256, 40, seed=11)
    queries, reference = as_arrow(matrix[:1200]), as_arrow(matrix[1200:])
    expected = fp.match_hashes(queries, reference, radius)
    entries = pa.concat_tables(
        [
            D.slot_entries(np.arange(1200), queries, radius, num_shards=4, role="probe"),
            D.slot_entries(
                np.arange(len(matrix) - 1200), reference, radius, num_shards=4, role="index"
            ),
        ]
    )
    parts = [
        D.verify_entries(entries.filter(pc.equal(entries["shard"], k)), radius, self_join=False)
        for k in range(4)
    ]
    got = D.sort_pairs(parts, names=("query", "reference"))
    assert got.num_rows > 0
    assert got.equals(expected.cast(got.schema))


def test_small_candidate_chunks_give_the_same_pairs():
    hashes = as_arrow(planted_hashes(600, 200, 256, 31, seed=5))
    entries = D.slot_entries(np.arange(len(hashes)), hashes, 31, num_shards=1)
    whole = D.verify_entries(entries, 31)
    chunked = D.verify_entries(entries, 31, max_candidates=37)
    assert D.sort_pairs([whole]).equals(D.sort_pairs([chunked]))


def test_resolution_equals_deduplicate():
    matrix = planted_hashes(1000, 300, 256, 31, seed=9)
    hashes = as_arrow(matrix)
    rng = np.random.default_rng(1)
    rank = rng.integers(0, 4, len(matrix))  # many ties: the earliest must win
    keys = [f"k{i}" for i in range(len(matrix))]
    records, pairs = fp.deduplicate(hashes, 31, rank=rank, keys=keys)
    order = rng.permutation(len(matrix))  # the driver gets records in any order
    resolved = D.resolve_duplicates(pairs, order, rank[order], pa.array(keys).take(pa.array(order)))
    ids = resolved["id"].to_numpy()
    assert resolved["duplicate_of_key"].equals(records["duplicate_of"].take(pa.array(ids)))
    assert resolved["cluster"].equals(records["cluster"].take(pa.array(ids)))
    dense, _ = fp.deduplicate(hashes, 31, rank=rank)
    assert resolved["duplicate_of"].equals(dense["duplicate_of"].take(pa.array(ids)))
    # Records outside every pair are keepers of their own cluster.
    outside = np.setdiff1d(np.arange(len(matrix)), ids)
    assert not pc.any(records["is_duplicate"].take(pa.array(outside))).as_py()


def test_partial_counts_merge_to_the_whole():
    captions = [f"#Tag{i % 7} #tag{i % 3} #Ünïcode #猫 text" for i in range(500)] + [None, ""]
    norm = fp.hashtag_normalizer({"tag1": "tag2"}, ["tag0"])
    whole = fp.count_hashtags(captions, normalizer=norm)
    parts = [
        D.partial_counts(pa.array(captions[i : i + 37], pa.string()), norm)
        for i in range(0, len(captions), 37)
    ]
    merged = D.merge_counts(parts)
    assert merged.to_arrow().equals(whole.to_arrow())
    assert merged.captions == whole.captions and merged.null_captions == whole.null_captions
    assert (
        fp.build_vocabulary(merged, top_k=5).to_json()
        == fp.build_vocabulary(whole, top_k=5).to_json()
    )


def test_probe_plan_follows_the_pigeonhole_principle():
    assert D.slot_plan(31, 256, 16) == (16, 1)
    assert D.slot_plan(15, 256, 16) == (16, 0)
    assert D.slot_plan(31, 256, 8) == (32, 0)
    assert len(D.probe_masks(16, 1)) == 17 and len(D.probe_masks(16, 2)) == 137
    with pytest.raises(ValueError, match="slot_bits"):
        D.slot_plan(8, 256, 12)
    with pytest.raises(ValueError, match="use smaller slots"):
        D.probe_masks(32, 6)
    # Slot 0 is the first two bytes, big-endian, as rust/dedup/hashes.rs reads them.
    matrix = np.zeros((1, 32), np.uint8)
    matrix[0, :2] = [0x12, 0x34]
    assert D.slot_values(matrix, 16)[0, 0] == 0x1234


def test_import_fastprep_loads_no_engine():
    code = (
        "import sys, fastprep, fastprep.distributed, fastprep.pipeline; "
        "print(any(m.split('.')[0] in ('ray', 'pyspark') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("module", "engine", "extra"), [("ray", "ray", "ray"), ("spark", "pyspark", "spark")]
)
def test_missing_engine_says_how_to_install(module, engine, extra):
    code = (
        f"import sys; sys.modules[{engine!r}] = None\n"
        "try:\n"
        f"    import fastprep.{module}\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"pip install 'fastprep[{extra}]'" in out.stdout


@pytest.mark.parametrize("rust_min", [1, 1 << 62])
def test_rust_and_numpy_verification_agree(rust_min):
    # Clustered hashes (few slot values): large keys, where Rust takes over.
    rng = np.random.default_rng(4)
    centres = rng.integers(0, 256, (6, 32), dtype=np.uint8)
    matrix = centres[rng.integers(0, 6, 1200)].copy()
    flips = rng.integers(0, 256, (1200, 12))
    for row, bits in enumerate(flips):
        for bit in bits:
            matrix[row, bit // 8] ^= 1 << (bit % 8)
    hashes = as_arrow(matrix)
    expected = fp.find_near_duplicates(hashes, 31)
    entries = D.slot_entries(np.arange(len(matrix)), hashes, 31, num_shards=3)
    parts = [
        D.verify_entries(entries.filter(pc.equal(entries["shard"], k)), 31, rust_min=rust_min)
        for k in range(3)
    ]
    got = D.sort_pairs(parts)
    assert got.num_rows > 10_000
    assert got.equals(expected.cast(got.schema))


def test_broadcast_block_match_equals_match_hashes():
    matrix = planted_hashes(900, 200, 256, 35, seed=17)
    values = [bytes(h) for h in matrix]
    values[3] = None
    queries = pa.array(values[:700], pa.binary())  # Spark hands hashes over as plain binary
    reference = pa.array(values[700:], pa.binary(32))
    expected = fp.match_hashes(pa.array(values[:700], pa.binary(32)), reference, 31)
    got = D.sort_pairs(
        [
            D.match_block(
                np.arange(0, 350),
                queries.slice(0, 350),
                np.arange(len(values) - 700),
                reference,
                31,
            ),
            D.match_block(
                np.arange(350, 700), queries.slice(350), np.arange(len(values) - 700), reference, 31
            ),
        ],
        names=("query", "reference"),
    )
    assert got.num_rows > 20
    assert got.equals(expected.cast(got.schema))
