"""Escaping and number formatting for the report's HTML."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

__all__ = ["esc", "num", "pct"]


def esc(value: Any) -> str:
    """Escapes any value for HTML text and attribute values.

    Keys, hashtags and captions come from untrusted data: every one goes
    through here.
    """
    return html.escape(str(value), quote=True)


def num(value: Any) -> str:
    """Formats a count with thousands separators (``—`` for None)."""
    if value is None:
        return "—"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):,.1f}"
    return esc(value)


def pct(part: float, whole: float) -> str:
    """``part`` as a percentage of ``whole`` (``—`` when ``whole`` is zero)."""
    if not whole:
        return "—"
    return f"{100.0 * part / whole:.1f}%"
