"""The preparation pipeline: sources -> per-batch stages -> shards.

Every stage works on one Arrow record batch (see :mod:`.stages`), so the same
code runs in the local loop of :func:`prep` and on distributed workers.
"""

from fastprep.pipeline.prep import PrepResult, prep
from fastprep.pipeline.sources import folder_source, open_source, parquet_source, tar_source

__all__ = ["PrepResult", "folder_source", "open_source", "parquet_source", "prep", "tar_source"]
