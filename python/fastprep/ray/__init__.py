"""fastprep on Ray Data: the pipeline stages as ``map_batches`` callables,
distributed hashtag counting, sharded near-duplicate search, eval-leak
checks, and the ``prep`` job's :class:`RayEngine` (``prep(..., engine=RayEngine())``).

Install with ``pip install 'fastprep[ray]'``. ``import fastprep`` never
imports Ray; this module does, and says how to install it when it is missing.

Every stage takes and returns ``pyarrow`` tables (``batch_format="pyarrow"``)
and sizes fastprep's Rust thread pool to the CPUs Ray granted the task or
actor (``num_cpus=`` of ``map_batches``), never to the machine's CPU count::

    import ray  # noqa: F401
    import fastprep.ray as fpr

    ray.init(address="auto")
    ds = ray.data.read_parquet("s3://bucket/photos/")        # key, jpg, caption
    ds = ds.map_batches(
        fpr.DecodeImages,
        fn_constructor_kwargs={"size": 224, "image_column": "jpg"},
        batch_format="pyarrow", batch_size=256, concurrency=8, num_cpus=4,
    )
    for batch in ds.iter_torch_batches(batch_size=256):
        ...                                                   # batch["pixels"]: uint8 [B,224,224,3]

Pixel columns stay ``arrow.fixed_shape_tensor`` through Ray (through
``map_batches`` with ``batch_format="pyarrow"``, block concatenation, the
object store, ``write_parquet``/``read_parquet``); Ray's numpy and torch
iterators read them as ``[B, H, W, 3]`` arrays (``tests/test_ray.py``
checks all of these). A UDF of yours that returns numpy batches makes Ray
build its own ``ArrowTensorTypeV2`` column instead (Ray 2.60's default
``DataContext.arrow_fixed_shape_tensor_format``): convert it back with
:func:`to_fixed_shape_tensor`, or set that option to
``ray.data._internal.tensor_extensions.arrow.FixedShapeTensorFormat.ARROW_NATIVE``
(Arrow's type, without fastprep's ``H, W, C`` dimension names).
"""

from __future__ import annotations

from fastprep.errors import require_engine

require_engine("ray.data", "Ray Data", "ray", "ray[data]")  # before any import of it

# ruff: noqa: E402
from fastprep.ray.engine import RayEngine, prep_ray
from fastprep.ray.join import RayFrames, deduplicate, leak_report, near_duplicate_pairs
from fastprep.ray.resources import assigned_cpus, worker_cpus
from fastprep.ray.stages import (
    ConsentFilter,
    CountHashtags,
    DecodeImages,
    ExtractHashtags,
    LabelCaptions,
    consent_split,
    count_hashtags,
    decode_images,
    extract_hashtags,
    label_captions,
    split_by_consent,
)
from fastprep.tensors import to_fixed_shape_tensor

__all__ = [
    "ConsentFilter",
    "CountHashtags",
    "DecodeImages",
    "ExtractHashtags",
    "LabelCaptions",
    "RayEngine",
    "RayFrames",
    "assigned_cpus",
    "consent_split",
    "count_hashtags",
    "decode_images",
    "deduplicate",
    "extract_hashtags",
    "label_captions",
    "leak_report",
    "near_duplicate_pairs",
    "prep_ray",
    "split_by_consent",
    "to_fixed_shape_tensor",
    "worker_cpus",
]
