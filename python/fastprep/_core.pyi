# Type stubs for the Rust extension module. Call it through `fastprep`.

from collections.abc import Sequence
from typing import Any, final

import pyarrow as pa
from typing_extensions import Self

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ERROR_KINDS",
    "FILTERS",
    "HASHES",
    "MODES",
    "GrowingIndex",
    "HashtagCounts",
    "HashtagNormalizer",
    "PairCounts",
    "Vocabulary",
    "__version__",
    "check_decode_options",
    "decode_arrow",
    "decode_bytes",
    "decode_paths",
    "default_num_threads",
    "encode_images",
    "encode_variable",
    "extract_hashtags",
    "near_duplicate_pairs",
    "normalize_hashtag",
    "normalize_into",
    "normalize_pixels",
    "probe_masks",
    "query_pairs",
    "redact_captions",
    "resolve_clusters",
    "slot_entries",
    "slot_plan",
    "slot_values",
    "strip_images",
    "verify_entries",
]

__version__: str

def default_num_threads() -> int: ...

# Images. `options` is `fastprep.DecodeOptions.to_core()`: every key is
# required (see decode_images in fastprep.images for their meaning).
MODES: tuple[str, ...]
FILTERS: tuple[str, ...]
HASHES: tuple[str, ...]
ERROR_KINDS: tuple[str, ...]
DEFAULT_MAX_PIXELS: int

def check_decode_options(options: dict[str, Any]) -> None: ...
def decode_bytes(
    images: list[bytes], options: dict[str, Any], num_threads: int | None = None
) -> pa.RecordBatch: ...
def decode_paths(
    paths: list[str], options: dict[str, Any], num_threads: int | None = None
) -> pa.RecordBatch: ...
def decode_arrow(
    array: pa.ChunkedArray, options: dict[str, Any], num_threads: int | None = None
) -> pa.RecordBatch: ...
def encode_images(
    pixels: pa.ChunkedArray,
    height: int,
    width: int,
    format: str = "jpeg",
    quality: int = 90,
    num_threads: int | None = None,
) -> pa.BinaryArray: ...
def encode_variable(
    pixels: pa.ChunkedArray,
    heights: list[int | None],
    widths: list[int | None],
    format: str = "jpeg",
    quality: int = 90,
    subsampling: str = "420",
    num_threads: int | None = None,
) -> pa.BinaryArray: ...
def strip_images(
    images: pa.ChunkedArray,
    orientations: list[int | None],
    num_threads: int | None = None,
) -> pa.BinaryArray: ...
def normalize_pixels(
    pixels: pa.ChunkedArray,
    channels_first: bool,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    multiply: bool = False,
    num_threads: int | None = None,
) -> pa.FixedSizeListArray: ...
def normalize_into(
    sources: Sequence[tuple[int, int]],
    channels_first: bool,
    out_address: int,
    out_len: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    multiply: bool = False,
    num_threads: int | None = None,
) -> None: ...

# Hashtags (see fastprep.hashtags).
def normalize_hashtag(tag: str) -> str: ...
def extract_hashtags(
    captions: pa.ChunkedArray,
    normalizer: HashtagNormalizer | None = None,
    num_threads: int | None = None,
) -> pa.ListArray: ...

@final
class HashtagNormalizer:
    def __new__(
        cls,
        canonical: list[tuple[str, str]] | None = None,
        stoplist: list[str] | None = None,
    ) -> Self: ...
    def key(self, tag: str) -> str | None: ...
    @property
    def canonical(self) -> list[tuple[str, str]]: ...
    @property
    def stoplist(self) -> list[str]: ...

@final
class HashtagCounts:
    def __new__(cls) -> Self: ...
    def update(
        self,
        captions: pa.ChunkedArray,
        normalizer: HashtagNormalizer | None = None,
        num_threads: int | None = None,
    ) -> None: ...
    def merge(self, other: HashtagCounts) -> None: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> HashtagCounts: ...
    def to_arrow(self) -> pa.RecordBatch: ...
    def get(self, key: str) -> tuple[int, int] | None: ...
    def add(self, key: str, occurrences: int, images: int) -> None: ...
    def __len__(self) -> int: ...
    @property
    def captions(self) -> int: ...
    @property
    def captions_with_tags(self) -> int: ...
    @property
    def null_captions(self) -> int: ...
    @property
    def invalid_utf8(self) -> int: ...
    @property
    def total_occurrences(self) -> int: ...

@final
class GrowingIndex:
    def __new__(cls, bytes_per_hash: int = 32) -> Self: ...
    def __len__(self) -> int: ...
    def add(self, hashes: pa.ChunkedArray) -> None: ...
    def query(
        self, queries: pa.ChunkedArray, radius: int, num_threads: int | None = None
    ) -> pa.RecordBatch: ...

@final
class PairCounts:
    def __new__(cls, max_pairs: int = 1_000_000) -> Self: ...
    def top(self, k: int) -> list[tuple[int, int, int]]: ...
    @property
    def error_bound(self) -> int: ...

@final
class Vocabulary:
    @staticmethod
    def from_counts(
        counts: HashtagCounts,
        top_k: int | None = None,
        min_count: int = 1,
        normalizer: HashtagNormalizer | None = None,
    ) -> Vocabulary: ...
    def to_json(self) -> str: ...
    @staticmethod
    def from_json(text: str) -> Vocabulary: ...
    def __len__(self) -> int: ...
    @property
    def tags(self) -> list[str]: ...
    @property
    def images(self) -> list[int]: ...
    @property
    def occurrences(self) -> list[int]: ...
    @property
    def normalizer(self) -> HashtagNormalizer: ...
    def id(self, tag: str) -> int | None: ...
    def label(
        self, captions: pa.ChunkedArray, num_threads: int | None = None
    ) -> pa.RecordBatch: ...
    def count_pairs(
        self, captions: pa.ChunkedArray, pairs: PairCounts, num_threads: int | None = None
    ) -> None: ...

# Near-duplicate search (see fastprep.dedup).
def near_duplicate_pairs(
    hashes: pa.ChunkedArray, radius: int, num_threads: int | None = None
) -> pa.RecordBatch: ...
def query_pairs(
    queries: pa.ChunkedArray,
    reference: pa.ChunkedArray,
    radius: int,
    num_threads: int | None = None,
) -> pa.RecordBatch: ...
def slot_plan(radius: int, bits: int, slot_bits: int) -> tuple[int, int]: ...
def probe_masks(slot_bits: int, t: int) -> list[int]: ...
def slot_values(hashes: pa.ChunkedArray, slot_bits: int) -> pa.UInt64Array: ...
def slot_entries(
    ids: pa.ChunkedArray,
    hashes: pa.ChunkedArray,
    radius: int,
    num_shards: int,
    slot_bits: int = 16,
    role: str = "both",
) -> pa.RecordBatch: ...
def verify_entries(
    slot: pa.ChunkedArray,
    key: pa.ChunkedArray,
    role: pa.ChunkedArray,
    id: pa.ChunkedArray,
    hashes: pa.ChunkedArray,
    radius: int,
    slot_bits: int = 16,
    self_join: bool = True,
    index_min: int = ...,  # 1 << 18 (runtime text stubtest cannot evaluate)
    num_threads: int | None = None,
) -> pa.RecordBatch: ...
def resolve_clusters(
    n: int, a: pa.ChunkedArray, b: pa.ChunkedArray, rank: pa.ChunkedArray
) -> pa.RecordBatch: ...
def redact_captions(
    captions: pa.ChunkedArray,
    mentions: bool = True,
    emails: bool = True,
    phones: bool = True,
    urls: bool = True,
    num_threads: int | None = None,
) -> tuple[pa.Array, dict[str, int]]: ...
