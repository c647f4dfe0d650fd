"""fastprep: decode, orient, resize and hash images in parallel Rust threads.

Results come back as zero-copy :class:`pyarrow.RecordBatch` objects; see
:func:`decode_images`.
"""

from __future__ import annotations

from fastprep._core import __version__, default_num_threads
from fastprep.images import (
    FILTERS,
    MODES,
    DecodeError,
    decode_image,
    decode_images,
    pixels_to_numpy,
    sample_images,
)

__all__ = [
    "FILTERS",
    "MODES",
    "DecodeError",
    "__version__",
    "decode_image",
    "decode_images",
    "default_num_threads",
    "pixels_to_numpy",
    "sample_images",
]
