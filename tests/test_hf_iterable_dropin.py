"""Hugging Face ``datasets.IterableDataset`` into fastprep's DataLoader
(issue 13): a plain one (``Dataset.to_iterable_dataset()``, an ``Image``
feature and a label) is read natively from its Arrow rows, keeping every
column, with a torchvision transform run as for any dataset; one whose
``.map`` carries the torchvision transform (this datasets version has no
``with_transform`` on IterableDataset), or ``.shuffle``/formats, is what
torch's loader runs, with one warning. Batch counts and labels match
torch's DataLoader over the same object."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
datasets = pytest.importorskip("datasets")

from fastprep.torch import DataLoader  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader as TorchDataLoader  # noqa: E402

T = torchvision.transforms
FALLBACK = "using torch.utils.data.DataLoader"
N = 11


@pytest.fixture(scope="module")
def images() -> datasets.Dataset:
    rng = np.random.default_rng(2)
    rows = []
    for i in range(N):
        buf = io.BytesIO()
        pixels = rng.integers(0, 256, (24 + i, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buf, "PNG")
        rows.append({"bytes": buf.getvalue(), "path": None})
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=4)}
    )
    labels = [(7 * i) % 4 for i in range(N)]
    return datasets.Dataset.from_dict({"image": rows, "label": labels}, features=features)


def labels_of(batches, key="label"):
    return [b[key].tolist() for b in batches]


def test_plain_iterable_dataset_is_read_natively_with_its_labels(images):
    iterable = images.to_iterable_dataset(num_shards=2)
    tf = T.Compose([T.Resize(20), T.CenterCrop(16), T.ToTensor()])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*" + FALLBACK)
        loader = DataLoader(iterable, batch_size=4, transform=tf)
    assert type(loader) is DataLoader
    ours = list(loader)
    # torch's loader over the same object (PIL images: collate the labels).
    theirs = list(
        TorchDataLoader(
            iterable, batch_size=4, collate_fn=lambda b: torch.tensor([e["label"] for e in b])
        )
    )
    assert len(ours) == len(theirs) == len(loader) == 3
    assert labels_of(ours) == [t.tolist() for t in theirs]
    for b in ours:
        assert set(b) == {"image", "label"}
        assert b["image"].shape == (len(b["label"]), 3, 16, 16)
        assert b["image"].dtype == torch.float32
    # The pixels are those of torch's transform on the PIL images.
    expected = torch.stack([tf(e["image"].convert("RGB")) for e in iterable])
    got = torch.cat([b["image"] for b in ours])
    assert torch.allclose(got.mean((2, 3)), expected.mean((2, 3)), atol=0.03)


def test_iterable_dataset_with_a_torchvision_map_runs_as_torch_does(images):
    tf = T.Compose([T.RandomResizedCrop(16), T.ToTensor()])

    def transform(example):
        return {"pixel_values": tf(example["image"].convert("RGB")), "label": example["label"]}

    mapped = images.to_iterable_dataset().map(transform, remove_columns=["image"])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        loader = DataLoader(mapped, batch_size=4)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and FALLBACK in messages[0] and ".map" in messages[0], messages
    ours = list(loader)
    theirs = list(TorchDataLoader(mapped, batch_size=4))
    assert len(ours) == len(theirs) == 3
    assert (
        labels_of(ours) == labels_of(theirs) == [images["label"][i : i + 4] for i in range(0, N, 4)]
    )
    for o, t in zip(ours, theirs):
        assert set(o) == set(t) == {"pixel_values", "label"}
        assert o["pixel_values"].shape == t["pixel_values"].shape


def test_shuffled_or_formatted_iterable_datasets_are_torchs(images):
    for changed, reason in [
        (images.to_iterable_dataset().shuffle(seed=0, buffer_size=4), ".shuffle"),
        (images.to_iterable_dataset().with_format("torch"), "'torch' format"),
    ]:
        with pytest.warns(UserWarning, match=FALLBACK) as record:
            loader = DataLoader(changed, batch_size=5, collate_fn=lambda b: [e["label"] for e in b])
        assert reason in str(record[0].message)
        assert type(loader) is TorchDataLoader
        assert sorted(t for b in loader for t in b) == sorted(images["label"])
