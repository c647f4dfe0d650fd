"""The tail writes its scaled images into shared-memory slots that the
main process reuses (fastprep.torch.slots), in worker processes and on
threads: a slot is written again only once nothing refers to its last
batch, views included."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from fastprep.torch import DataLoader  # noqa: E402
from fastprep.torch.slots import SlotRing  # noqa: E402
from test_tail_workers import dataset, folder  # noqa: E402, F401

pytestmark = pytest.mark.skipif(
    getattr(torch._C, "_storage_Use_Count", None) is None, reason="torch cannot count storage users"
)


def _loader(folder, num_workers):  # noqa: F811
    return DataLoader(
        dataset(folder), batch_size=4, num_workers=num_workers, seed=5, persistent_workers=True
    )


@pytest.fixture(scope="module")
def expected(folder):  # noqa: F811
    """Three epochs' batches from worker processes without slots (their tail
    reseeds per batch: the same pixels every run)."""
    loader = _loader(folder, 2)
    loader._slots.limit = 0
    epochs = [[x for x, _ in loader] for _ in range(3)]
    assert not loader._slots.slots
    return epochs


@pytest.mark.parametrize("num_workers", [2, 1], ids=["processes", "threads"])
def test_dropped_batches_free_their_slots_for_later_ones(folder, expected, num_workers):  # noqa: F811
    loader = _loader(folder, num_workers)
    storages = set()
    for epoch in range(3):
        for b, (x, _) in enumerate(loader):
            if num_workers >= 2:  # threads draw from the global generators: no replay
                assert torch.equal(x, expected[epoch][b]), (epoch, b)
            storages.add(x.untyped_storage().data_ptr())
            del x
    # 15 batches; the first ones before the layout was known, then slots reused
    assert loader._slots.spec == (4, (3, 24, 24), torch.float32)
    assert 1 <= len(loader._slots.slots) <= loader._slots.limit
    assert len(storages) < 15


@pytest.mark.parametrize("num_workers", [2, 1], ids=["processes", "threads"])
def test_a_kept_view_is_never_overwritten(folder, expected, num_workers):  # noqa: F811
    loader = _loader(folder, num_workers)
    kept = []
    for epoch in range(3):
        for b, (x, _) in enumerate(loader):
            kept.append((epoch, b, x[1:3], x[1:3].clone()))  # a view holds the slot
            del x
    for epoch, b, view, received in kept:
        assert torch.equal(view, received), (epoch, b)
        if num_workers >= 2:
            assert torch.equal(view, expected[epoch][b][1:3]), (epoch, b)


def test_a_pass_left_early_does_not_hand_its_slots_out_again(folder, expected):  # noqa: F811
    loader = _loader(folder, 2)
    first = [x.clone() for x, _ in loader]  # epoch 0: layout learnt
    assert all(torch.equal(a, b) for a, b in zip(first, expected[0]))
    for b, (x, _) in enumerate(loader):  # epoch 1, left after one batch
        assert torch.equal(x, expected[1][b])
        break
    loader.set_epoch(1)
    again = [x for x, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(again, expected[1]))


def test_ring_gives_no_slot_before_it_knows_the_layout_and_none_past_its_limit():
    ring = SlotRing(limit=2)
    assert ring.take() is None
    ring.learn(torch.zeros(4, 3, 2, 2))
    a, b = ring.take(), ring.take()
    assert a is not None and b is not None and a.key != b.key
    assert ring.take() is None  # both busy, at the limit
    ring.returned(a.key, a.tensor[:4], True)  # back in its own storage: guarded by the view
    held = a.tensor[:1]
    assert ring.take() is None  # a's view is still held
    del held
    c = ring.take()
    assert c is a
    ring.returned(b.key, torch.zeros(4, 3, 2, 2), True)  # received elsewhere: retired
    assert b not in ring.slots
    d = ring.take()
    ring.returned(d.key, torch.zeros(4, 3, 2, 2), False)  # not written there: free again
    assert d in ring.slots and ring.take() is d


def test_a_dropped_loader_stops_its_persistent_workers_cleanly(folder):  # noqa: F811
    """The loader is freed by the cyclic garbage collector (its sampler refers
    to it); its persistent workers still get torch's stop signal and exit
    by themselves, rather than being terminated after torch's join timeout."""
    import gc
    import multiprocessing

    before = set(multiprocessing.active_children())
    loader = DataLoader(
        dataset(folder), batch_size=4, num_workers=2, seed=5, persistent_workers=True
    )
    list(loader)
    workers = [p for p in multiprocessing.active_children() if p not in before]
    assert len(workers) == 2
    del loader
    gc.collect()
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0, "terminated, not stopped"


def test_threads_take_no_slot_when_the_tail_cannot_write_into_one(folder):  # noqa: F811
    """Without PIL steps the scaling runs on the decoded tensors and the
    tail's outputs are its own: no shared memory is set aside for them."""
    import torchvision.transforms as T

    transform = T.Compose([T.RandomResizedCrop(24), T.ToTensor(), T.RandomErasing(p=1.0)])
    loader = DataLoader(dataset(folder, transform), batch_size=4, num_workers=1, seed=5)
    assert loader._tail is not None and not loader._tail.writes_into_memory_given
    for _ in range(2):
        assert sum(len(y) for _, y in loader) == 18
    assert loader._slots.slots == []
