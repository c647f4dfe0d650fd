"""fastprep on Spark: ``mapInArrow`` stages, distributed hashtag counts and
sharded near-duplicate search for PySpark DataFrames.

Install with ``pip install 'fastprep[spark]'``. ``import fastprep`` never
imports PySpark; this module does, and says how to install it when missing.

Spark has no unsigned, fixed-size binary or tensor types, so the stages
return Spark-friendly columns: ``pixels`` as ``binary`` (row-major ``[H, W,
C]`` uint8, ``height * width * channels`` bytes) with ``height``, ``width``
and ``channels``; hashes as ``binary``; ``uint8`` columns as ``smallint``;
64-bit perceptual hashes as ``bigint`` holding the same 64 bits
(:func:`pixels_to_numpy` and :func:`to_fixed_shape_tensor` convert back)::

    import fastprep.spark as fps

    df = spark.read.parquet("s3://bucket/photos/")            # key, jpg, caption
    decoded = fps.decode_images(df, size=224, image_column="jpg")
    counts = fps.count_hashtags(df)                            # merged on the driver
    vocab = fastprep.build_vocabulary(counts, top_k=17_000)
    labelled = fps.label_captions(decoded, vocab)
    labelled.write.parquet("s3://bucket/prepared/")

fastprep's Rust threads per task follow ``spark.task.cpus`` (set it to the
threads you want per task, and ``spark.executor.cores`` to a multiple of it);
never the executor machine's CPU count. Ship fastprep to the executors as a
packed virtual environment (``spark.archives``); see ``docs/scale-out.md``.
"""

from __future__ import annotations

from fastprep.errors import require_engine

require_engine("pyspark.sql", "PySpark", "spark", "pyspark")  # before any import of it

# ruff: noqa: E402
from fastprep.spark.engine import SparkEngine
from fastprep.spark.join import SparkFrames, deduplicate, leak_report, near_duplicate_pairs
from fastprep.spark.resources import task_cpus, worker_cpus
from fastprep.spark.stages import (
    apply_consent,
    consent_stage,
    count_hashtags,
    decode_images,
    extract_hashtags,
    hashtag_stage,
    image_stage,
    label_captions,
    label_stage,
    split_by_consent,
)
from fastprep.spark.types import pixels_to_numpy, spark_arrow
from fastprep.tensors import to_fixed_shape_tensor

__all__ = [
    "SparkEngine",
    "SparkFrames",
    "apply_consent",
    "consent_stage",
    "count_hashtags",
    "decode_images",
    "deduplicate",
    "extract_hashtags",
    "hashtag_stage",
    "image_stage",
    "label_captions",
    "label_stage",
    "leak_report",
    "near_duplicate_pairs",
    "pixels_to_numpy",
    "spark_arrow",
    "split_by_consent",
    "task_cpus",
    "to_fixed_shape_tensor",
    "worker_cpus",
]
