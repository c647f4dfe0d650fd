"""fastprep: prepare hashtag-labelled photo corpora for training, fast.

Images are decoded, oriented and resized in parallel Rust threads and come
back as zero-copy :class:`pyarrow.RecordBatch` objects (:func:`decode_images`).
Hashtags are extracted, normalised and counted in Rust too
(:mod:`fastprep.hashtags`).
"""

from __future__ import annotations

from fastprep._core import __version__, default_num_threads
from fastprep.dedup import deduplicate, find_near_duplicates, leak_report, match_hashes
from fastprep.errors import DecodeError
from fastprep.hashtags import (
    VOCAB_PRESETS,
    HashtagCounts,
    HashtagNormalizer,
    PairCounts,
    Vocabulary,
    build_vocabulary,
    cooccurrence,
    count_hashtags,
    extract_hashtags,
    hashtag_normalizer,
    label_captions,
    label_targets,
    load_vocabulary,
    normalize_hashtag,
    sampling_weights,
    save_vocabulary,
)
from fastprep.images import (
    ERROR_KINDS,
    FILTERS,
    HASHES,
    MODES,
    decode_image,
    decode_images,
    hash_images,
    pixels_to_numpy,
    sample_images,
    strip_metadata,
)
from fastprep.options import DecodeOptions

__all__ = [
    "ERROR_KINDS",
    "FILTERS",
    "HASHES",
    "MODES",
    "VOCAB_PRESETS",
    "DecodeError",
    "DecodeOptions",
    "HashtagCounts",
    "HashtagNormalizer",
    "PairCounts",
    "Vocabulary",
    "__version__",
    "build_vocabulary",
    "cooccurrence",
    "count_hashtags",
    "decode_image",
    "decode_images",
    "deduplicate",
    "default_num_threads",
    "extract_hashtags",
    "find_near_duplicates",
    "hash_images",
    "hashtag_normalizer",
    "label_captions",
    "label_targets",
    "leak_report",
    "load_vocabulary",
    "match_hashes",
    "normalize_hashtag",
    "pixels_to_numpy",
    "sample_images",
    "sampling_weights",
    "save_vocabulary",
    "strip_metadata",
]
