"""The torchvision "tail" (issue 13): the steps after the fusable head run
as torchvision code on the tensors Rust decoded, not on PIL images and not
silently dropped. Each test checks it ran (spies on the step, or pixel
checks where the step is deterministic) and that batches match torch's own
DataLoader over the same dataset in count, shape, dtype and targets."""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from fastprep.torch import DataLoader  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader as TorchDataLoader  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

T = torchvision.transforms
FALLBACK = "using torch.utils.data.DataLoader"
N = 15


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """3 classes x 5 PNGs of varied sizes, every channel value in 40..220:
    no pixel is 0 or 255, so a zeroed (erased) pixel can only come from a
    tail step."""
    root = tmp_path_factory.mktemp("tails")
    rng = np.random.default_rng(1)
    for c, name in enumerate(("a", "b", "c")):
        (root / name).mkdir()
        for i in range(5):
            h, w = 28 + 3 * i, 34 + 2 * c
            pixels = rng.integers(40, 221, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def folder_with(root: Path, transform) -> torchvision.datasets.ImageFolder:
    return torchvision.datasets.ImageFolder(str(root), transform=transform)


def fast(dataset, **options) -> list:
    """fastprep's batches; fails if it hands the dataset to torch's loader."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*" + FALLBACK)
        loader = DataLoader(dataset, **options)
        assert type(loader) is DataLoader
        return list(loader)


def assert_like_torch(dataset, ours, **options):
    torch.manual_seed(0)
    theirs = list(TorchDataLoader(dataset, **options))
    assert len(ours) == len(theirs)
    for (xt, yt), (xo, yo) in zip(theirs, ours):
        assert type(xo) is type(xt)
        assert xo.shape == xt.shape and xo.dtype == xt.dtype
        assert torch.equal(yo, yt)


class Spy:
    """Records what each call of a torchvision class's ``forward`` gets, in
    this process or a loader's worker processes (a managed list)."""

    def __init__(self, monkeypatch, cls):
        import multiprocessing

        self._manager = multiprocessing.get_context("fork").Manager()
        self.inputs: Any = self._manager.list()
        original = cls.forward

        def forward(step, *args, **kwargs):
            image = args[0]
            self.inputs.append(
                (type(image), tuple(image.shape), image.dtype)
                if torch.is_tensor(image)
                else (type(image), getattr(image, "size", None), getattr(image, "mode", None))
            )
            return original(step, *args, **kwargs)

        monkeypatch.setattr(cls, "forward", forward)


def zero_rectangle(image: torch.Tensor) -> tuple[int, int, int, int] | None:
    """The bounding box of the pixels zero in every channel, if that box is
    all zero (a filled rectangle), else None."""
    zero = (image == 0).all(0)
    if not zero.any():
        return None
    rows, cols = torch.nonzero(zero.any(1)).flatten(), torch.nonzero(zero.any(0)).flatten()
    top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return (top, bottom, left, right) if zero[top : bottom + 1, left : right + 1].all() else None


@pytest.mark.parametrize("api", [T, v2], ids=["v1", "v2"])
def test_random_erasing_after_the_crop_erases_every_decoded_image(folder, api):
    head = [api.RandomResizedCrop(16, scale=(0.5, 1.0)), api.PILToTensor()]
    erase = folder_with(folder, api.Compose([*head, api.RandomErasing(p=1.0, value=0)]))
    plain = folder_with(folder, api.Compose(head))
    erased = fast(erase, batch_size=4, num_workers=2, seed=3)
    untouched = fast(plain, batch_size=4, num_workers=2, seed=3)
    assert_like_torch(erase, erased, batch_size=4)
    assert sum(len(y) for _, y in erased) == N
    for (xe, _), (xp, _) in zip(erased, untouched):
        assert xe.dtype == torch.uint8 and xe.shape[1:] == (3, 16, 16)
        for e, p in zip(xe, xp):
            assert zero_rectangle(p) is None and (p > 0).all(), "no zeros without the tail"
            box = zero_rectangle(e)
            assert box is not None, "an erased rectangle in every image"
            # Outside the rectangle, the same Rust-decoded crop (same seed).
            outside = torch.ones(16, 16, dtype=torch.bool)
            outside[box[0] : box[1] + 1, box[2] : box[3] + 1] = False
            assert torch.equal(e[:, outside], p[:, outside])


AUGMENTS = [
    (T, "TrivialAugmentWide", {}),
    (T, "RandAugment", {}),
    (T, "AutoAugment", {}),
    (T, "AugMix", {}),
    (v2, "TrivialAugmentWide", {}),
    (v2, "RandAugment", {"num_ops": 3}),
    (v2, "AutoAugment", {}),
    (v2, "AugMix", {}),
]


@pytest.mark.parametrize(
    "api,name,kwargs", AUGMENTS, ids=[f"{a.__name__.split('.')[-1]}-{n}" for a, n, _ in AUGMENTS]
)
def test_auto_augment_family_runs_on_the_decoded_crops(folder, monkeypatch, api, name, kwargs):
    cls = getattr(api, name)
    # As torchvision's reference preset (PIL backend) orders them: torch's
    # loader gives the augment a PIL image, and so does fastprep (made from
    # the crop Rust decoded): torchvision's PIL kernels are its fast ones.
    steps = [api.RandomResizedCrop(16), api.RandomHorizontalFlip(), cls(**kwargs)]
    steps += [api.PILToTensor(), api.ConvertImageDtype(torch.float)]
    if api is v2:
        steps[-1] = v2.ToDtype(torch.float32, scale=True)
    dataset = folder_with(folder, api.Compose(steps))
    spy = Spy(monkeypatch, cls)
    ours = fast(dataset, batch_size=4, num_workers=2)
    # Once per sample, each time on the 16x16 RGB crop Rust decoded.
    assert len(spy.inputs) == N
    assert all(issubclass(t, Image.Image) and (s, m) == ((16, 16), "RGB") for t, s, m in spy.inputs)
    ours_inputs = list(spy.inputs)
    del spy.inputs[:]
    assert_like_torch(dataset, ours, batch_size=4)
    assert len(spy.inputs) == N and {t for t, _, _ in spy.inputs} == {
        t for t, _, _ in ours_inputs
    }, "torch's loader gives the same step the same kind of image"
    for x, _ in ours:
        assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1


def deterministic_cases(api):
    """(tail steps, expected output from the head's float image x)."""
    plus = api.Lambda(lambda x: x + 1)
    double = api.Lambda(lambda x: x * 2)
    negate = api.Lambda(lambda x: -x)
    return {
        "lambda": ([plus], lambda x: x + 1),
        "random_apply_p1": ([api.RandomApply([plus, double], p=1.0)], lambda x: (x + 1) * 2),
        "random_apply_p0": ([api.RandomApply([plus, double], p=0.0)], lambda x: x),
        "random_choice_one": ([api.RandomChoice([negate])], lambda x: -x),
        "nested_compose": (
            [api.Compose([plus, api.Compose([double, api.RandomApply([negate], p=1.0)])])],
            lambda x: -((x + 1) * 2),
        ),
    }


@pytest.mark.parametrize("api", [T, v2], ids=["v1", "v2"])
@pytest.mark.parametrize("case", list(deterministic_cases(T)))
def test_deterministic_tails_change_the_pixels_exactly(folder, api, case):
    head = [api.Compose([api.Resize(20), api.CenterCrop(16)])]
    head += [T.ToTensor()] if api is T else [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    steps, expected = deterministic_cases(api)[case]
    dataset = folder_with(folder, api.Compose([*head, *steps]))
    ours = fast(dataset, batch_size=6, num_workers=2)
    base = fast(folder_with(folder, api.Compose(head)), batch_size=6)
    assert_like_torch(dataset, ours, batch_size=6)
    for (x, y), (b, yb) in zip(ours, base):
        assert torch.equal(y, yb)
        assert x.dtype == torch.float32 and x.is_contiguous()
        assert torch.allclose(x, expected(b), atol=1e-6)
        assert 0 <= b.min() and b.max() <= 1, "the head is the fused float image"


def test_random_choice_picks_one_option_per_sample(folder):
    zeros, ones = T.Lambda(torch.zeros_like), T.Lambda(torch.ones_like)
    dataset = folder_with(
        folder, T.Compose([T.RandomResizedCrop(8), T.ToTensor(), T.RandomChoice([zeros, ones])])
    )
    torch.manual_seed(0)
    ours = fast(dataset, batch_size=5, num_workers=2)
    assert_like_torch(dataset, ours, batch_size=5)
    picks = [float(img.flatten()[0]) for x, _ in ours for img in x]
    for x, _ in ours:
        for img in x:
            assert torch.equal(img, torch.full_like(img, img.flatten()[0].item()))
    assert set(picks) <= {0.0, 1.0}


def test_a_recording_lambda_is_called_once_per_sample_with_the_decoded_tensor(folder):
    import multiprocessing

    # Managed: with num_workers >= 2 the calls happen in worker processes.
    manager = multiprocessing.get_context("fork").Manager()
    calls: Any = manager.list()

    def record(x):
        calls.append((tuple(x.shape), x.dtype))
        return x

    dataset = folder_with(
        folder, T.Compose([T.RandomResizedCrop(12), T.PILToTensor(), T.Lambda(record)])
    )
    ours = fast(dataset, batch_size=4, num_workers=3, drop_last=True)
    assert list(calls) == [((3, 12, 12), torch.uint8)] * (N // 4 * 4)
    assert_like_torch(dataset, ours, batch_size=4, drop_last=True)


PIL_FIRST = [
    (
        "Lambda",
        T.Compose(
            [T.Lambda(lambda im: im.convert("L")), T.Resize(20), T.CenterCrop(16), T.ToTensor()]
        ),
    ),
    (
        "ColorJitter",
        v2.Compose([v2.ColorJitter(0.3), v2.RandomResizedCrop(16), v2.PILToTensor()]),
    ),
    # A conversion first does not hide the step that blocks the fused head.
    ("ColorJitter", T.Compose([T.PILToTensor(), T.ColorJitter(0.3), T.RandomResizedCrop(16)])),
    (
        "RandomApply",
        T.Compose(
            [T.RandomApply([T.Grayscale(3)], p=1.0), T.RandomResizedCrop(16), T.PILToTensor()]
        ),
    ),
]


@pytest.mark.parametrize(
    "name,transform", PIL_FIRST, ids=[f"{n}-{i}" for i, (n, _) in enumerate(PIL_FIRST)]
)
def test_steps_that_must_see_the_image_first_fall_back_with_one_warning(folder, name, transform):
    dataset = folder_with(folder, transform)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        loader = DataLoader(dataset, batch_size=4)
        batches = list(loader)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages
    assert FALLBACK in messages[0] and name in messages[0]
    assert type(loader) is TorchDataLoader
    assert_like_torch(dataset, batches, batch_size=4)


def test_worker_init_fn_has_torch_meaning(folder):
    dataset = folder_with(folder, T.Compose([T.RandomResizedCrop(8), T.PILToTensor()]))
    calls: list[int] = []

    def init(worker_id: int) -> None:
        calls.append(worker_id)
        # What per-worker seeding does (e.g. Lightning's seed_everything(workers=True)).
        torch.manual_seed(worker_id)
        random.seed(worker_id)
        np.random.seed(worker_id)

    # num_workers=0: never called, as in torch.
    loader = DataLoader(dataset, batch_size=4, worker_init_fn=init)
    assert loader.worker_init_fn is init
    list(loader)
    assert calls == []
    torch_loader = TorchDataLoader(dataset, batch_size=4, worker_init_fn=init)
    list(torch_loader)
    assert calls == []

    # Once per worker id when a pass starts, before its first batch.
    loader = DataLoader(dataset, batch_size=4, num_workers=3, worker_init_fn=init)
    assert calls == [], "not at construction"
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    it = iter(loader)
    next(it)
    assert calls == [0, 1, 2]
    list(it)
    # The main process's randomness is untouched by the workers' seeding.
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]
    list(loader)
    assert calls == [0, 1, 2] * 2, "new workers each pass"

    calls.clear()
    persistent = DataLoader(
        dataset, batch_size=4, num_workers=2, worker_init_fn=init, persistent_workers=True
    )
    for _ in range(3):
        list(persistent)
    assert calls == [0, 1], "persistent workers start once"

    def broken(worker_id: int) -> None:
        raise ValueError(f"worker {worker_id} cannot start")

    it = iter(DataLoader(dataset, batch_size=4, num_workers=2, worker_init_fn=broken))
    with pytest.raises(ValueError, match="worker 0 cannot start"):
        next(it)


def rgba_png(path: Path) -> np.ndarray:
    """8x12 RGBA: columns 0-3 fully transparent over a stored green,
    4-7 half transparent over that green, 8-11 opaque."""
    pixels = np.zeros((8, 12, 4), np.uint8)
    pixels[:, :, :3] = (10, 200, 30)
    pixels[:, :4, 3] = 0
    pixels[:, 4:8, 3] = 128
    pixels[:, 8:] = (50, 60, 70, 255)
    Image.fromarray(pixels, "RGBA").save(path)
    return pixels


def test_background_colours_transparent_pixels(tmp_path):
    root = tmp_path / "alpha"
    (root / "x").mkdir(parents=True)
    rgba = rgba_png(root / "x" / "0.png")
    transform = T.Compose([T.Resize((8, 12)), T.PILToTensor()])  # same size: no resampling
    dataset = folder_with(root, transform)

    def image(**options) -> np.ndarray:
        x, _ = fast(dataset, batch_size=1, **options)[0]
        assert x.shape == (1, 3, 8, 12) and x.dtype == torch.uint8
        return x[0].permute(1, 2, 0).numpy().astype(int)

    pil, _ = next(iter(TorchDataLoader(dataset, batch_size=1)))
    pil = pil[0].permute(1, 2, 0).numpy().astype(int)
    assert (pil == rgba[:, :, :3]).all(), "PIL's convert('RGB') drops alpha"

    for background in [(0, 0, 255), (255, 255, 255), (0, 0, 0)]:
        got = image(background=background) if background != (255, 255, 255) else image()
        assert (got[:, :4] == background).all(), "transparent: the background colour"
        assert (got[:, 8:] == pil[:, 8:]).all(), "opaque: PIL's pixels exactly"
        over = (np.array([10, 200, 30]) * 128 + np.array(background) * 127) / 255
        assert np.abs(got[:, 4:8] - over).max() <= 1, "half transparent: composited"
        assert np.abs(got[:, 4:8] - pil[:, 4:8]).max() > 20, "not PIL's dropped alpha"
    # The switch also reaches a translated torchvision tail.
    tailed = folder_with(root, T.Compose([*transform.transforms, T.Lambda(lambda x: x // 2)]))
    x, _ = fast(tailed, batch_size=1, background=(0, 0, 255))[0]
    assert (x[0, :, :, :4].permute(1, 2, 0) == torch.tensor([0, 0, 127])).all()


def test_drop_alpha_gives_pils_convert_rgb_pixels_exactly(tmp_path):
    root = tmp_path / "alpha"
    (root / "x").mkdir(parents=True)
    rgba_png(root / "x" / "0.png")
    transform = T.Compose([T.Resize((8, 12)), T.PILToTensor()])  # same size: no resampling
    dataset = folder_with(root, transform)
    pil, _ = next(iter(TorchDataLoader(dataset, batch_size=1)))
    got, _ = fast(dataset, batch_size=1, drop_alpha=True)[0]
    assert torch.equal(got, pil), "stored colours under transparency, as PIL"
    blended, _ = fast(dataset, batch_size=1)[0]
    assert not torch.equal(blended, pil), "the default still composites"
