"""DDP without a sampler, for real (issue 13): two processes join a gloo
process group on localhost, each seeds torch differently (as per-rank
seeding does), and each builds ``fastprep.torch.DataLoader(shuffle=True)``
with no sampler, no rank and no seed. The loader takes its rank from
``torch.distributed`` and its order's seed from rank 0 (a broadcast), so
the two shards are disjoint and together the whole dataset, every epoch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from PIL import Image  # noqa: E402

N = 12  # one image per class, so a target names its sample
WORLD = 2

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch, torch.distributed as dist, torchvision
    from fastprep.torch import DataLoader

    rank, port, root, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    torch.manual_seed(rank * 1000 + 7)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    T = torchvision.transforms
    dataset = torchvision.datasets.ImageFolder(
        root, transform=T.Compose([T.RandomResizedCrop(8), T.PILToTensor()])
    )
    loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=2)
    planned = [i for b in loader.batch_sampler for i in b]
    from accelerate.data_loader import BatchSamplerShard

    resharded = [
        i
        for b in BatchSamplerShard(
            loader.batch_sampler, num_processes=2, process_index=rank, even_batches=False
        )
        for i in b
    ]
    epochs = [[t for _, y in loader for t in y.tolist()] for _ in range(2)]
    loader.set_epoch(0)
    replay = [t for _, y in loader for t in y.tolist()]
    with open(out, "w") as f:
        json.dump(
            {
                "rank": loader.rank,
                "world_size": loader.world_size,
                "seed": loader.seed,
                "len": len(loader),
                "planned": planned,
                "resharded": resharded,
                "epochs": epochs,
                "replay": replay,
            },
            f,
        )
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_per_class(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    for i in range(N):
        (root / f"c{i:02d}").mkdir()
        pixels = np.full((12, 14, 3), 10 + 20 * i, np.uint8)
        Image.fromarray(pixels).save(root / f"c{i:02d}" / "0.png")
    return root


def test_gloo_ranks_seeded_differently_shard_one_shared_order(one_per_class, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = str(_free_port())
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    outs = [tmp_path / f"rank{r}.json" for r in range(WORLD)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), port, str(one_per_class), str(outs[r])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(WORLD)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=120)[0].decode(errors="replace"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    ranks = [json.loads(o.read_text()) for o in outs]

    assert [r["rank"] for r in ranks] == [0, 1], "rank from torch.distributed"
    assert {r["world_size"] for r in ranks} == {WORLD}
    # The broadcast path: both ranks use the seed rank 0 drew from torch's RNG
    # seeded with 0 * 1000 + 7 (not rank 1's, and not a fixed fallback).
    torch.manual_seed(7)
    rank0_draw = int(torch.empty((), dtype=torch.int64).random_().item())
    assert ranks[0]["seed"] == ranks[1]["seed"] == rank0_draw
    assert all(r["len"] == N // WORLD // 4 + (N // WORLD % 4 > 0) for r in ranks)

    for epoch in range(2):
        shards = [r["epochs"][epoch] for r in ranks]
        assert len(shards[0]) == len(shards[1]) == N // WORLD
        assert not set(shards[0]) & set(shards[1]), f"epoch {epoch}: shards overlap"
        assert sorted(shards[0] + shards[1]) == list(range(N)), f"epoch {epoch}: not covered"
    # The batch sampler reads back torch's meaning: the whole shared epoch
    # order on every rank; the loader iterates its rank's share of it.
    assert ranks[0]["planned"] == ranks[1]["planned"]
    assert sorted(ranks[0]["planned"]) == list(range(N))
    for rank, r in enumerate(ranks):
        assert r["epochs"][0] == r["planned"][rank::WORLD]
    # Sharded again by Accelerate: the dataset is split once, not a quarter each.
    resharded = [r["resharded"] for r in ranks]
    assert not set(resharded[0]) & set(resharded[1])
    assert sorted(resharded[0] + resharded[1]) == list(range(N))
    assert [r["epochs"][0] for r in ranks] != [r["epochs"][1] for r in ranks], "reshuffled"
    assert [r["replay"] for r in ranks] == [r["epochs"][0] for r in ranks], "set_epoch(0)"
    # Shuffled: the interleaved order is not the identity.
    assert ranks[0]["epochs"][0] != list(range(0, N, WORLD))
