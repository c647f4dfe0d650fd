# Type stubs for the Rust extension module. Call it through `fastprep`.

from typing import Any, final

import pyarrow as pa
from typing_extensions import Self

__all__ = [
    "HashtagCounts",
    "HashtagNormalizer",
    "PairCounts",
    "Vocabulary",
    "__version__",
    "decode_arrow",
    "decode_bytes",
    "decode_paths",
    "default_num_threads",
    "encode_images",
    "extract_hashtags",
    "near_duplicate_pairs",
    "normalize_hashtag",
    "query_pairs",
    "redact_captions",
    "resolve_clusters",
]

__version__: str

def default_num_threads() -> int: ...

# Images (fastprep.images fills every option; see decode_images there).
def decode_bytes(images: list[bytes], **options: Any) -> pa.RecordBatch: ...
def decode_paths(paths: list[str], **options: Any) -> pa.RecordBatch: ...
def decode_arrow(array: pa.ChunkedArray, **options: Any) -> pa.RecordBatch: ...
def encode_images(
    pixels: pa.ChunkedArray,
    height: int,
    width: int,
    format: str = "jpeg",
    quality: int = 90,
    num_threads: int | None = None,
) -> pa.BinaryArray: ...

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
