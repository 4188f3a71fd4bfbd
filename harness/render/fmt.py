"""Numbers as people read them: the one place that decides how a figure is written (tables, terminal, compare)."""

from __future__ import annotations

import math
from typing import Any

GIB = 2**30


def missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def num(v: Any, pattern: str | None = None) -> str:
    """A number: with `pattern` (e.g. '{:.2f}') exactly so; else 3 significant figures below 10, one decimal above.
    Missing values are '-'; anything else is its str()."""
    if missing(v):
        return "-"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if pattern is not None:
        return pattern.format(v)
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def gib(n_bytes: float | None) -> str:
    return "-" if missing(n_bytes) else f"{n_bytes / GIB:.2f}"  # type: ignore[operator]


def pct(v: float | None, signed: bool = False) -> str:
    return "-" if missing(v) else (f"{v:+.1%}" if signed else f"{v:.1%}")


def interval(low: float | None, high: float | None, pattern: str = "{:.1f}") -> str:
    return "-" if missing(low) or missing(high) else f"{pattern.format(low)}-{pattern.format(high)}"
