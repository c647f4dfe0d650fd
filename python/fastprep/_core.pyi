from typing import Any

import pyarrow as pa

__version__: str

def decode_bytes(images: list[bytes], **options: Any) -> pa.RecordBatch: ...
def decode_paths(paths: list[str], **options: Any) -> pa.RecordBatch: ...
def decode_arrow(array: pa.ChunkedArray, **options: Any) -> pa.RecordBatch: ...
def default_num_threads() -> int: ...

# Options every decode_* function requires (fastprep.decode_images fills them):
#   size: tuple[int, int] | None (height, width), mode: str,
#   resize_shorter: int | None, filter: str, apply_orientation: bool,
#   reduced_decode: bool, background: tuple[int, int, int], max_pixels: int,
#   num_threads: int | None, seed: int, scale: tuple[float, float],
#   ratio: tuple[float, float], flip_p: float
