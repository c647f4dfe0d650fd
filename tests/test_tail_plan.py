"""How a torchvision tail runs after the fused decode (fastprep.torch.tail):
steps torch's loader gave PIL images get PIL images made from the decoded
crops, the scaling and ``Normalize`` right after the conversion run fused in
Rust with torchvision's exact float32 operations, and the remaining steps run
per sample on the batch. Each test compares with torchvision applied by hand
to the very crops fastprep decoded (the same loader without the tail, same
seed), so any difference in a stage shows."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from fastprep.torch.tail import Tail  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from test_dropin_tails import fast, folder_with  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

T = torchvision.transforms


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes x 5 PNGs of varied sizes."""
    root = tmp_path_factory.mktemp("plan")
    rng = np.random.default_rng(4)
    for c, name in enumerate(("a", "b", "c")):
        (root / name).mkdir()
        for i in range(5):
            pixels = rng.integers(0, 256, (28 + 3 * i, 34 + 2 * c, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def crops(folder, api) -> list[torch.Tensor]:
    """fastprep's decoded uint8 crops, batch by batch (no tail)."""
    head = api.Compose([api.RandomResizedCrop(16), api.RandomHorizontalFlip(), api.PILToTensor()])
    return [x for x, _ in fast(folder_with(folder, head), batch_size=4, seed=11)]


def by_hand(batch: torch.Tensor, steps) -> torch.Tensor:
    """``steps`` applied by torchvision to PIL images of the crops."""
    out = []
    for image in batch:
        pil = Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB")
        for step in steps:
            pil = step(pil)
        out.append(pil)
    return torch.stack([o.as_subclass(torch.Tensor) for o in out])


@pytest.mark.parametrize("api", [T, v2], ids=["v1", "v2"])
def test_pil_steps_then_fused_normalize_equal_torchvision_bit_for_bit(folder, api):
    invert = api.Lambda(lambda image: ImageOps.invert(image))  # a PIL-only step
    to_float = (
        v2.ToDtype(torch.float32, scale=True) if api is v2 else T.ConvertImageDtype(torch.float)
    )
    tail = [invert, api.PILToTensor(), to_float, api.Normalize(MEAN, STD)]
    plan = Tail(tail)
    assert plan.on_pil == [invert] and plan.scale and plan.stats is not None and not plan.after
    steps = [api.RandomResizedCrop(16), api.RandomHorizontalFlip(), *tail]
    ours = [x for x, _ in fast(folder_with(folder, api.Compose(steps)), batch_size=4, seed=11)]
    for got, decoded in zip(ours, crops(folder, api)):
        want = by_hand(decoded, tail)
        assert got.dtype == torch.float32 and got.is_contiguous()
        assert torch.equal(got, want), "the same bits as torchvision's own steps"


def test_v1_and_v2_scaling_differ_and_each_is_matched(folder):
    decoded = crops(folder, T)[0]
    v1 = by_hand(decoded, [T.PILToTensor(), T.ConvertImageDtype(torch.float)])
    two = by_hand(decoded, [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
    assert not torch.equal(v1, two), "division and multiplication by 1/255 differ somewhere"
    for api, want in ((T, v1), (v2, two)):
        to_float = (
            v2.ToDtype(torch.float32, scale=True) if api is v2 else T.ConvertImageDtype(torch.float)
        )
        steps = [api.RandomResizedCrop(16), api.RandomHorizontalFlip(), api.Lambda(lambda i: i)]
        steps += [api.PILToTensor(), to_float]
        got = fast(folder_with(folder, api.Compose(steps)), batch_size=4, seed=11)[0][0]
        assert torch.equal(got, want)


def test_steps_after_the_fused_part_run_per_sample_and_land_in_the_batch(folder):
    erase = T.RandomErasing(p=1.0, value=0)
    tail = [T.TrivialAugmentWide(), T.PILToTensor(), T.ConvertImageDtype(torch.float), erase]
    plan = Tail(tail)
    assert plan.scale and plan.stats is None and [s.step for s in plan.after] == [erase]
    steps = [T.RandomResizedCrop(16), T.RandomHorizontalFlip(), *tail]
    for x, _ in fast(folder_with(folder, T.Compose(steps)), batch_size=4, seed=11):
        assert x.shape[1:] == (3, 16, 16) and x.dtype == torch.float32
        for image in x:
            assert ((image == 0).all(0)).any(), "an erased rectangle in every image"


def test_a_tail_without_conversion_keeps_running_on_tensors(folder):
    plan = Tail([T.RandomErasing(p=1.0)])
    assert not plan.on_pil and plan.to_tensor is None and not plan.scale


def test_head_float_recipe_is_torchvisions_normalize_bit_for_bit(folder):
    head = [T.RandomResizedCrop(16), T.RandomHorizontalFlip()]
    as_float = T.Compose([*head, T.ToTensor(), T.Normalize(MEAN, STD)])
    ours = fast(folder_with(folder, as_float), batch_size=4, seed=11)
    for (got, _), decoded in zip(ours, crops(folder, T)):
        want = by_hand(decoded, [T.ToTensor(), T.Normalize(MEAN, STD)])
        assert got.is_contiguous() and torch.equal(got, want)
    channels_last = fast(
        folder_with(folder, as_float), batch_size=4, seed=11, memory_format=torch.channels_last
    )
    for (got, _), (want, _) in zip(channels_last, ours):
        assert got.is_contiguous(memory_format=torch.channels_last) and torch.equal(got, want)


def test_samples_of_differing_sizes_skip_the_fusion_but_not_the_steps(folder):
    grow = T.Lambda(lambda image: image.resize((16 + image.getpixel((0, 0))[0] % 3, 16)))
    tail = [grow, T.PILToTensor(), T.ConvertImageDtype(torch.float), T.Normalize(MEAN, STD)]
    steps = [T.RandomResizedCrop(16), *tail]
    dataset = folder_with(folder, T.Compose(steps))
    loader = __import__("fastprep.torch", fromlist=["DataLoader"]).DataLoader(
        dataset, batch_size=4, seed=11, collate_fn=lambda samples: samples
    )
    widths = set()
    for samples in loader:
        for image, _ in samples:
            assert image.dtype == torch.float32 and image.shape[:2] == (3, 16)
            widths.add(image.shape[2])
            assert image.min() < 0, "normalised, by torchvision's own steps"
    assert len(widths) > 1


def test_scaled_pictures_are_written_into_the_memory_given(folder):
    """``ToImage`` (v2) then the fused scaling, written straight into ``out``
    (a worker's shared-memory slot, larger than the batch): a view of it,
    with torchvision's bits."""
    invert = v2.Lambda(lambda image: ImageOps.invert(image))
    tail = [invert, v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    plan = Tail(tail)
    decoded = crops(folder, v2)[0]
    out = torch.full((6, 3, 16, 16), float("nan"))
    got = plan(decoded.permute(0, 2, 3, 1).contiguous(), None, 1, out)
    assert got.data_ptr() == out.data_ptr() and got.shape == (4, 3, 16, 16)
    assert torch.equal(got, by_hand(decoded, tail))
    assert out[4:].isnan().all(), "rows past the batch untouched"
    elsewhere = plan(decoded.permute(0, 2, 3, 1).contiguous(), None, 1, torch.empty(6, 3, 8, 8))
    assert torch.equal(elsewhere, got), "memory of another shape is not used"
