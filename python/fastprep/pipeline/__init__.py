"""The preparation pipeline: sources -> per-batch stages -> shards.

Every stage works on one Arrow record batch (see :mod:`.stages`); the job
(:func:`prep`) is written once and run by an engine (:class:`LocalEngine`
here; :class:`fastprep.ray.RayEngine`, :class:`fastprep.spark.SparkEngine`).
"""

from fastprep.errors import OutputExistsError, ResumeMismatchError
from fastprep.pipeline.decisions import Decision
from fastprep.pipeline.engine import Engine
from fastprep.pipeline.local import LocalEngine
from fastprep.pipeline.outputs import PrepResult
from fastprep.pipeline.prep import prep
from fastprep.pipeline.settings import PrepSettings, ShardSpec
from fastprep.pipeline.sources import (
    count_records,
    folder_source,
    open_source,
    parquet_source,
    tar_source,
)
from fastprep.pipeline.stages import ConsentRule, ImageStage, consent_reasons, hashtag_stage

__all__ = [
    "ConsentRule",
    "Decision",
    "Engine",
    "ImageStage",
    "LocalEngine",
    "OutputExistsError",
    "PrepResult",
    "PrepSettings",
    "ResumeMismatchError",
    "ShardSpec",
    "consent_reasons",
    "count_records",
    "folder_source",
    "hashtag_stage",
    "open_source",
    "parquet_source",
    "prep",
    "tar_source",
]
