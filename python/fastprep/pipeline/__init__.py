"""The preparation pipeline: sources -> per-batch stages -> shards.

Every stage works on one Arrow record batch (see :mod:`.stages`), so the same
code runs in the local loop of :func:`prep` and on distributed workers.
"""

from fastprep.pipeline.job import OutputExistsError, PrepResult, ResumeMismatchError
from fastprep.pipeline.prep import prep
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
    "ImageStage",
    "OutputExistsError",
    "PrepResult",
    "ResumeMismatchError",
    "consent_reasons",
    "count_records",
    "folder_source",
    "hashtag_stage",
    "open_source",
    "parquet_source",
    "prep",
    "tar_source",
]
