"""The PNG figures of a report: each written to ``report/`` and embedded in
the page as a ``data:`` URI, so the page stands alone."""

from __future__ import annotations

import base64
import os
import struct

from fastprep.pipeline.io import atomic
from fastprep.pipeline.report.charts import HIDPI
from fastprep.pipeline.report.fmt import esc

__all__ = ["Figures", "atomic_write"]

#: Figure files this package writes into ``report/``; stale ones are removed.
FIGURE_PREFIXES = (
    "rank_frequency",
    "drops",
    "labels_per_record",
    "cluster_",
    "shard_bytes",
    "samples",
    "tag_",
    "resolution",
    "aspect",
    "formats",
    "leaks",
)


def atomic_write(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic(path, write)


class Figures:
    """Collects PNG figures: written to ``directory`` and embedded in the page."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.written: list[str] = []

    def img(self, name: str, png: bytes, alt: str, css: str = "fig", scale: int = HIDPI) -> str:
        """Writes ``png`` as ``name`` and returns its ``<img>`` element.

        The element's size is the PNG's divided by ``scale``: charts are
        rendered at ``HIDPI`` times their displayed size, the strips at 1.
        """
        atomic_write(os.path.join(self.directory, name), png)
        self.written.append(name)
        # width and height are the first fields of the IHDR chunk
        width, height = (v // scale for v in struct.unpack(">II", png[16:24]))
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        return f'<img class="{css}" src="{uri}" width="{width}" height="{height}" alt="{esc(alt)}">'

    def remove_stale(self) -> None:
        """Removes figures of an earlier run that this one did not write
        (e.g. charts after a rerun without matplotlib)."""
        for name in os.listdir(self.directory):
            if (
                name.endswith(".png")
                and name.startswith(FIGURE_PREFIXES)
                and name not in self.written
            ):
                os.remove(os.path.join(self.directory, name))
