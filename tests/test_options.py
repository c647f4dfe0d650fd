"""``fastprep.DecodeOptions``: the keyword surface of ``decode_images`` as one
frozen value, with names and rules taken from the Rust core."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import sys
from pathlib import Path

import fastprep
import numpy as np
import pytest
from fastprep import DecodeOptions, _core
from helpers import encode_pil, rows

# The keyword defaults decode_images had before DecodeOptions existed.
LEGACY_DEFAULTS = {
    "size": None,
    "mode": "center_crop",
    "resize_shorter": None,
    "filter": "bilinear",
    "apply_orientation": True,
    "reduced_decode": True,
    "background": (255, 255, 255),
    "max_pixels": 178_956_970,
    "seed": 0,
    "scale": (0.08, 1.0),
    "ratio": (3 / 4, 4 / 3),
    "flip_p": 0.5,
    "hashes": (),
    "pixels": True,
    # keep-aspect sizes (the store issue): off by default
    "short_side": None,
    "max_side": None,
    "read_to_end": True,
    "channels_first": False,
    "drop_alpha": False,
}


def test_fields_and_defaults_match_the_keywords():
    assert DecodeOptions.field_names() == tuple(LEGACY_DEFAULTS)
    assert dataclasses.asdict(DecodeOptions()) == LEGACY_DEFAULTS


def test_names_come_from_the_core():
    assert fastprep.MODES == _core.MODES == fastprep.images.MODES
    assert fastprep.FILTERS == _core.FILTERS
    assert fastprep.HASHES == _core.HASHES
    assert fastprep.images.DEFAULT_MAX_PIXELS == _core.DEFAULT_MAX_PIXELS == 178_956_970
    assert fastprep.ERROR_KINDS == (
        "empty",
        "unsupported_format",
        "unsupported",
        "truncated",
        "corrupt",
        "too_large",
        "io",
    )


def test_frozen_replace_and_from_kwargs():
    base = DecodeOptions(size=32, hashes=["pdq"])
    assert base.hashes == ("pdq",) and hash(base) == hash(DecodeOptions(size=32, hashes=("pdq",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.size = 64  # type: ignore[misc]
    other = base.replace(mode="resize")
    assert (other.mode, other.size, base.mode) == ("resize", 32, "center_crop")
    assert DecodeOptions.from_kwargs(size=8, flip_p=0.0) == DecodeOptions(size=8, flip_p=0.0)
    with pytest.raises(TypeError, match="colour"):
        DecodeOptions.from_kwargs(colour="red")
    with pytest.raises(TypeError, match="colour"):
        base.replace(colour="red")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "stretch"},
        {"filter": "cubic"},
        {"hashes": ("md5",)},
        {"size": 0},
        {"size": (10, -1)},
        {"background": (0, 0, 256)},
        {"size": 32, "resize_shorter": 16},  # smaller than the crop: a core rule
        {"size": 32, "mode": "random_resized_crop", "scale": (0.9, 0.1)},
    ],
)
def test_bad_values_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        DecodeOptions(**kwargs)
    with pytest.raises(ValueError):
        DecodeOptions().replace(**kwargs)


def test_to_core_is_what_the_core_extracts():
    core = DecodeOptions(size=(20, 30), hashes="xxh3", background=[1, 2, 3]).to_core()
    assert core["size"] == (20, 30) and core["hashes"] == ["xxh3"]
    assert core["background"] == (1, 2, 3)
    assert set(core) == set(DecodeOptions.field_names())
    _core.check_decode_options(core)
    with pytest.raises(ValueError, match="unknown mode"):
        _core.check_decode_options({**core, "mode": "stretch"})


def test_decode_images_keeps_its_keywords_and_takes_options(small_photo):
    data = [encode_pil(small_photo, "PNG"), encode_pil(small_photo, "JPEG")]
    by_keywords = fastprep.decode_images(data, size=24, mode="letterbox", hashes=["dhash"])
    options = DecodeOptions(size=24, mode="letterbox", hashes=("dhash",))
    by_options = fastprep.decode_images(data, options=options)
    assert by_options.equals(by_keywords)
    # Keywords override the fields of `options` they name.
    mixed = fastprep.decode_images(data, options=options.replace(mode="resize"), mode="letterbox")
    assert mixed.equals(by_keywords)
    np.testing.assert_array_equal(
        fastprep.decode_image(data[0], options=options), fastprep.pixels_to_numpy(by_keywords)[0]
    )
    with pytest.raises(TypeError):
        fastprep.decode_images(data, colour="red")
    with pytest.raises(TypeError):
        fastprep.decode_images(data, options={"size": 24})
    with pytest.raises(ValueError):
        fastprep.decode_images(data, options=options, num_threads=0)


def test_hash_images_with_options(small_photo):
    data = [encode_pil(small_photo, "PNG")]
    default = fastprep.hash_images(data)
    assert {"xxh3_128", "pdq"} <= set(default.schema.names) and "pixels" not in default.schema.names
    chosen = fastprep.hash_images(data, options=DecodeOptions(hashes=("phash",)))
    assert "phash" in chosen.schema.names and "pdq" not in chosen.schema.names
    assert rows(fastprep.hash_images(data, ["phash"])) == rows(chosen)
    with pytest.raises(TypeError):
        fastprep.hash_images(data, pixels=True)


def test_signatures_keep_options_keyword_only():
    params = inspect.signature(fastprep.decode_images).parameters
    assert params["options"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["num_threads"].kind is inspect.Parameter.KEYWORD_ONLY


def _transforms_module():
    """fastprep/torch/transforms.py without importing torch (the package's
    __init__ needs it; the recipe module itself does not)."""
    path = Path(fastprep.__file__).with_name("torch") / "transforms.py"
    spec = importlib.util.spec_from_file_location("_fastprep_transforms", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_recipes_build_decode_options():
    transforms = _transforms_module()
    train = transforms.train(size=32, flip_p=0.25).decode_options(seed=7)
    assert isinstance(train, DecodeOptions)
    assert (train.size, train.mode, train.flip_p, train.seed) == (
        (32, 32),
        "random_resized_crop",
        0.25,
        7,
    )
    evaluate = transforms.evaluate(size=(24, 20), resize=40).decode_options()
    assert (evaluate.mode, evaluate.resize_shorter, evaluate.seed) == ("center_crop", 40, 0)
    # Every option the recipe does not set keeps decode_images' default.
    assert evaluate.replace(size=None, resize_shorter=None, flip_p=0.5) == DecodeOptions()
