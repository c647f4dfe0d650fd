"""fastprep.torch.DataLoader as a drop-in for real training code (issue 13):
it is a torch DataLoader with torch's attributes, takes any torchvision
transform (the fusable head in Rust, the rest as torchvision code), calls
collate_fn on sample lists, and works under Lightning, Accelerate, DDP
and with Hugging Face datasets. Each test switches only the import and
compares with torch's own loader."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from fastprep.torch import DataLoader  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader as TorchDataLoader  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

T = torchvision.transforms
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FALLBACK = "using torch.utils.data.DataLoader"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dropin")
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog", "fish")):
        (root / name).mkdir()
        for i in range(7):
            h = 36 + 4 * i
            ramp = np.linspace(0, 1, 44)[None, :] * np.linspace(0.3, 1, h)[:, None]
            pixels = np.stack([ramp * rng.uniform(60, 200) for _ in range(3)], axis=-1)
            pixels[..., c] = 230
            pixels = pixels.astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=90)
    return root


class PresetTrain:
    """Like torchvision's reference ClassificationPresetTrain: a preset
    object keeping its Compose in ``.transforms``."""

    def __init__(self, crop: int, v2_api: bool = False, backend: str = "pil"):
        t = v2 if v2_api else T
        steps: list = []
        if backend == "tensor":
            steps.append(t.PILToTensor())
        steps += [t.RandomResizedCrop(crop, antialias=True), t.RandomHorizontalFlip(0.5)]
        steps.append(t.TrivialAugmentWide())
        if backend == "pil":
            steps.append(t.PILToTensor())
        steps.append(
            v2.ToDtype(torch.float, scale=True) if v2_api else T.ConvertImageDtype(torch.float)
        )
        steps += [t.Normalize(MEAN, STD), t.RandomErasing(p=0.5)]
        if v2_api:
            steps.append(v2.ToPureTensor())
        self.transforms = t.Compose(steps)

    def __call__(self, img):
        return self.transforms(img)


class PresetEval:
    def __init__(self, crop: int, resize: int):
        self.transforms = T.Compose(
            [
                T.Compose([T.Resize(resize), T.CenterCrop(crop)]),  # nested
                T.PILToTensor(),
                T.ConvertImageDtype(torch.float),
                T.Normalize(MEAN, STD),
            ]
        )

    def __call__(self, img):
        return self.transforms(img)


def no_fallback():
    """Fails the test if fastprep hands the dataset to torch's loader."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("error", message=".*" + FALLBACK)
    return ctx


def both(dataset, **options):
    """(torch's batches, fastprep's batches) for the same arguments."""
    torch.manual_seed(0)
    theirs = list(TorchDataLoader(dataset, **options))
    ctx = no_fallback()
    try:
        ours = list(DataLoader(dataset, **options))
    finally:
        ctx.__exit__(None, None, None)
    return theirs, ours


def assert_same_structure(theirs, ours):
    assert len(ours) == len(theirs)
    for (xt, yt), (xo, yo) in zip(theirs, ours):
        assert type(xo) is type(xt) is torch.Tensor
        assert xo.shape == xt.shape and xo.dtype == xt.dtype
        assert xo.is_contiguous()
        assert torch.equal(yo, yt), "same targets in the same order"


def test_is_a_torch_dataloader_with_torch_attributes(folder):
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=PresetEval(16, 20))
    loader = DataLoader(dataset, batch_size=4, shuffle=True, drop_last=True, seed=1)
    assert isinstance(loader, TorchDataLoader)
    for name in inspect.signature(TorchDataLoader.__init__).parameters:
        if name != "self":
            assert hasattr(loader, name), name
    assert loader.dataset is dataset
    assert loader.collate_fn is default_collate
    assert isinstance(loader.sampler, torch.utils.data.RandomSampler)
    assert isinstance(loader.batch_sampler, torch.utils.data.BatchSampler)
    assert loader.prefetch_factor is None and loader.multiprocessing_context is None
    # batch_sampler yields exactly the batches the loader decodes
    planned = [list(b) for b in loader.batch_sampler]
    targets = [dataset.targets[i] for b in planned for i in b]
    got = [t for _, y in loader for t in y.tolist()]
    assert len(planned) == len(loader) == 21 // 4
    assert got == targets
    sequential = DataLoader(dataset, batch_size=4)
    assert isinstance(sequential.sampler, torch.utils.data.SequentialSampler)
    # torch's own loader, rebuilt from these attributes (as Accelerate does),
    # gives the same targets
    rebuilt = TorchDataLoader(dataset, batch_sampler=loader.batch_sampler)
    loader.set_epoch(0)
    assert [t for _, y in rebuilt for t in y.tolist()] == targets


def test_reference_preset_v1_trivialaugment_randomerasing(folder):
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=PresetTrain(24))
    theirs, ours = both(dataset, batch_size=5, num_workers=2)
    assert_same_structure(theirs, ours)
    # Normalized then erased: values are not a uint8 image's
    assert all(x.min() < 0 for x, _ in ours)


@pytest.mark.parametrize("backend", ["pil", "tensor"])
def test_reference_preset_v2_ending_in_topuretensor(folder, backend):
    dataset = torchvision.datasets.ImageFolder(
        str(folder), transform=PresetTrain(24, v2_api=True, backend=backend)
    )
    theirs, ours = both(dataset, batch_size=8, drop_last=True)
    assert_same_structure(theirs, ours)


def test_eval_preset_with_nested_compose_matches_torch_pixels(folder):
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=PresetEval(16, 20))
    theirs, ours = both(dataset, batch_size=7)
    assert_same_structure(theirs, ours)
    for (xt, _), (xo, _) in zip(theirs, ours):
        # Same geometry and normalisation (noise images: resamplers differ per
        # pixel, but far less than two different samples do).
        assert (xt - xo).abs().mean() < 0.4 * (xt - xo.roll(1, 0)).abs().mean()
        assert torch.allclose(xt.mean((2, 3)), xo.mean((2, 3)), atol=0.05)


def test_default_collate_and_mixup_cutmix_collate(folder):
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=PresetEval(16, 20))
    plain = list(DataLoader(dataset, batch_size=6, seed=0))
    explicit = list(DataLoader(dataset, batch_size=6, seed=0, collate_fn=default_collate))
    assert len(plain) == len(explicit) == 4
    for (a, ya), (b, yb) in zip(plain, explicit):
        assert torch.equal(a, b) and torch.equal(ya, yb)

    mix = v2.RandomChoice([v2.MixUp(num_classes=3), v2.CutMix(num_classes=3)])

    def mixup_collate(batch):
        assert isinstance(batch, list) and isinstance(batch[0], tuple)
        return mix(*default_collate(batch))

    theirs, ours = both(dataset, batch_size=6, collate_fn=mixup_collate)
    assert len(ours) == len(theirs)
    for (xt, yt), (xo, yo) in zip(theirs, ours):
        assert xo.shape == xt.shape and yo.shape == yt.shape == (len(yt), 3)
        assert torch.allclose(yo.sum(1), torch.ones(len(yo)))

    def dict_collate(batch):
        return {"pixels": torch.stack([x for x, _ in batch]), "labels": [y for _, y in batch]}

    theirs, ours = both(dataset, batch_size=6, collate_fn=dict_collate)
    assert [b["labels"] for b in ours] == [b["labels"] for b in theirs]


def test_flattening_works_on_the_batch(folder):
    dataset = torchvision.datasets.ImageFolder(
        str(folder), transform=T.Compose([T.RandomResizedCrop(16), T.ToTensor()])
    )
    images, _ = next(iter(DataLoader(dataset, batch_size=4, drop_last=True)))
    assert images.is_contiguous() and images.view(4, -1).shape == (4, 3 * 16 * 16)
    conv = torch.nn.Conv2d(3, 2, 3)
    assert conv(images).shape == (4, 2, 14, 14)
    viewed, _ = next(iter(DataLoader(dataset, batch_size=4, memory_format=torch.channels_last)))
    assert viewed.is_contiguous(memory_format=torch.channels_last)
    assert not viewed.is_contiguous()


def test_ddp_ranks_seeded_differently_get_disjoint_shards(folder):
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=PresetEval(16, 20))
    # One target per sample, so the targets each rank gets name its samples.
    dataset.samples = [(path, i) for i, (path, _) in enumerate(dataset.samples)]
    dataset.targets = [i for _, i in dataset.samples]
    seen = []
    for rank in range(3):
        torch.manual_seed(100 + rank)  # as per-rank seeding does
        loader = DataLoader(dataset, batch_size=4, shuffle=True, rank=rank, world_size=3)
        seen.append([i for _, targets in loader for i in targets.tolist()])
        assert len(loader) == 2
    flat = [i for s in seen for i in s]
    assert sorted(flat) == list(range(21)), "disjoint, and together the whole dataset"
    assert seen[0] != list(range(0, 21, 3)), "still shuffled"


def test_pil_first_transforms_and_custom_loaders_fall_back_with_one_warning(folder):
    jitter_first = torchvision.datasets.ImageFolder(
        str(folder),
        transform=T.Compose([T.ColorJitter(0.2), T.RandomResizedCrop(16), T.ToTensor()]),
    )
    with pytest.warns(UserWarning, match="ColorJitter") as record:
        loader = DataLoader(jitter_first, batch_size=5)
    assert sum(FALLBACK in str(w.message) for w in record) == 1
    assert type(loader) is TorchDataLoader and len(list(loader)) == 5

    opened = []

    def gray_loader(path):
        opened.append(path)
        return Image.open(path).convert("L").convert("RGB")

    custom = torchvision.datasets.ImageFolder(
        str(folder), transform=PresetEval(16, 20), loader=gray_loader
    )
    with pytest.warns(UserWarning, match="custom ImageFolder loader"):
        loader = DataLoader(custom, batch_size=7)
    images, _ = next(iter(loader))
    assert len(opened) == 7, "the custom loader is honoured"
    rgb = images * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    assert torch.allclose(rgb[:, 0], rgb[:, 1], atol=1e-5), "its gray images, not fastprep's"


def test_pin_memory_is_honoured_or_said_to_be_impossible(folder):
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=PresetEval(16, 20))
    if torch.cuda.is_available():
        images, targets = next(iter(DataLoader(dataset, batch_size=4, pin_memory=True)))
        assert images.is_pinned() and targets.is_pinned()
    else:
        with pytest.warns(UserWarning, match="no accelerator"):
            DataLoader(dataset, batch_size=4, pin_memory=True)


def test_lightning_trainer_fit_with_validation(folder):
    pl = pytest.importorskip("lightning.pytorch")
    train_set = torchvision.datasets.ImageFolder(str(folder), transform=PresetTrain(16))
    val_set = torchvision.datasets.ImageFolder(str(folder), transform=PresetEval(16, 20))

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
            self.seen = {"train": [], "val": []}
            self.loaders = []

        def training_step(self, batch, _):
            x, y = batch
            self.seen["train"].append(y.tolist())
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.seen["val"].append(y.tolist())
            self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return DataLoader(train_set, batch_size=4, shuffle=True, num_workers=2)

        def val_dataloader(self):
            return DataLoader(val_set, batch_size=5, num_workers=2)

    module = Module()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*" + FALLBACK)
        trainer.fit(module)
    assert isinstance(trainer.train_dataloader, DataLoader)
    assert len(module.seen["train"]) == 2 * len(TorchDataLoader(train_set, batch_size=4))
    epoch = [t for b in module.seen["train"][:6] for t in b]
    assert sorted(epoch) == sorted(train_set.targets), "each epoch is a permutation"
    # sanity check (2 batches) + one validation pass per epoch
    val = [t for b in module.seen["val"][2:] for t in b]
    assert val == val_set.targets * 2


def test_accelerate_prepare(folder):
    accelerate = pytest.importorskip("accelerate")
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=PresetEval(16, 20))
    loader = DataLoader(dataset, batch_size=4, shuffle=False)
    prepared = accelerate.Accelerator(cpu=True).prepare(loader)
    theirs = list(TorchDataLoader(dataset, batch_size=4))
    got = list(prepared)
    assert len(got) == len(theirs) == len(loader)
    for (xt, yt), (xo, yo) in zip(theirs, got):
        assert xo.shape == xt.shape and torch.equal(yo, yt)


def test_hugging_face_imagefolder_with_set_transform(folder, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    ds = datasets.load_dataset(
        "imagefolder", data_dir=str(folder), split="train", cache_dir=str(tmp_path)
    )
    tf = T.Compose([T.Resize(20), T.CenterCrop(16), T.ToTensor(), T.Normalize(MEAN, STD)])

    def transforms(examples):
        examples["pixel_values"] = [tf(img.convert("RGB")) for img in examples["image"]]
        del examples["image"]
        return examples

    ds.set_transform(transforms)
    theirs, ours = both(ds, batch_size=6)
    assert len(ours) == len(theirs) == 4
    for t, o in zip(theirs, ours):
        assert set(o) == set(t) == {"pixel_values", "label"}
        assert o["pixel_values"].shape == t["pixel_values"].shape
        assert torch.equal(o["label"], t["label"])
        xt, xo = t["pixel_values"], o["pixel_values"]
        assert torch.allclose(xt.mean((2, 3)), xo.mean((2, 3)), atol=0.05)
    shuffled = ds.shuffle(seed=3)
    labels = [b["label"].tolist() for b in DataLoader(shuffled, batch_size=6)]
    assert labels == [b["label"].tolist() for b in TorchDataLoader(shuffled, batch_size=6)]


def test_exif_orientation_switch_reproduces_pil(tmp_path):
    root = tmp_path / "rotated"
    (root / "a").mkdir(parents=True)
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:, :24] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.fromarray(pixels).save(root / "a" / "0.jpg", exif=exif.tobytes(), quality=95)
    dataset = torchvision.datasets.ImageFolder(
        str(root), transform=T.Compose([T.Resize((32, 48)), T.PILToTensor()])
    )
    theirs, _ = next(iter(TorchDataLoader(dataset, batch_size=1)))
    like_pil, _ = next(iter(DataLoader(dataset, batch_size=1, apply_orientation=False)))
    rotated, _ = next(iter(DataLoader(dataset, batch_size=1)))
    assert (like_pil.float() - theirs.float()).abs().mean() < 8
    assert (rotated.float() - theirs.float()).abs().mean() > 60, "default: EXIF applied"


def test_lightning_reinstantiates_it_with_a_distributed_sampler(folder):
    data = pytest.importorskip("lightning.pytorch.utilities.data")
    from torch.utils.data.distributed import DistributedSampler

    dataset = torchvision.datasets.ImageFolder(str(folder), transform=PresetEval(16, 20))
    loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=2)
    assert data._is_dataloader_shuffled(loader)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True)
    rebuilt = data._update_dataloader(loader, sampler)
    assert type(rebuilt) is DataLoader and rebuilt.sampler is sampler
    targets = [t for _, y in rebuilt for t in y.tolist()]
    assert targets == [dataset.targets[i] for i in sampler]
    assert len(rebuilt) == len(TorchDataLoader(dataset, batch_size=4, sampler=sampler))


def test_reduced_decode_switch_gives_pils_full_decode(tmp_path):
    """By default a JPEG much larger than the output is decoded at a reduced
    scale in the DCT domain; ``reduced_decode=False`` decodes every pixel as
    PIL does, and the eval pixels then match torch's loader within 1/255."""
    root = tmp_path / "large"
    (root / "a").mkdir(parents=True)
    rng = np.random.default_rng(2)
    y, x = np.mgrid[0:300, 0:400]
    for i in range(3):
        smooth = np.stack([(x + 40 * i) % 256, (y * 2) % 256, (x + y) % 256], -1)
        noisy = smooth + rng.integers(-30, 30, smooth.shape)
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(
            root / "a" / f"{i}.jpg", quality=90
        )
    eval_tf = T.Compose([T.Resize(64), T.CenterCrop(64), T.PILToTensor()])
    dataset = torchvision.datasets.ImageFolder(str(root), transform=eval_tf)
    theirs, _ = next(iter(TorchDataLoader(dataset, batch_size=3)))
    full = DataLoader(dataset, batch_size=3, reduced_decode=False)
    assert full.recipe.reduced_decode is False
    exact, _ = next(iter(full))
    reduced, _ = next(iter(DataLoader(dataset, batch_size=3)))
    assert (exact.int() - theirs.int()).abs().max() <= 1
    assert not torch.equal(reduced, exact), "the default took the reduced decode"
    assert (reduced.float() - theirs.float()).abs().mean() < 4
